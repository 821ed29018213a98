/* pg_repl: the PostgreSQL backend's replication reads (outbox, ledger,
 * figures, stuck messages, lag, receipts) and the claims that let several
 * restspy instances share one database (store.h has the contracts; the
 * writes are the writer's, pg_writer.c).
 *
 * Publishers: each outbox row is published by one instance. A fetch claims
 * rows nobody holds with SELECT ... FOR UPDATE SKIP LOCKED (two instances
 * claiming at once take disjoint rows, neither waits) and marks them with
 * this handle's claimer id, a lease (claimed_until, store_claim_lease ahead)
 * and claim_seq, the claim's order from one sequence. The seq a fetch gives
 * the publisher is claim_seq: its cursor then walks this instance's claims
 * in claim order, whatever the order in which the writers of several
 * instances committed their rows (an outbox seq is taken at INSERT, so a
 * cursor over it would pass a row committed late), and a confirm deletes
 * only this instance's claims up to it. Fetches renew the lease of the
 * claims held (every third of the lease); a publisher that crashed (or
 * lost the database for longer than the lease) stops renewing, and its
 * unconfirmed rows are claimed by whichever instance fetches next. The
 * lease is a column rather than a transaction held while publishing: a
 * claim must survive the publisher's reconnects to the broker and outlast
 * a connection pooler's idle limits, and it costs no open transaction.
 *
 * Replicators: a message is applied by one instance. The lookup
 * (pg_ledger_has) claims the message in table `applying` with INSERT ... ON
 * CONFLICT (taking over a claim that ran out, or renewing its own) and then
 * reads the ledger again in a statement of its own: the claim of another
 * instance is deleted only in the transaction that commits that instance's
 * ledger row (pg_writer.c), so whoever wins a claim afterwards sees the row.
 * A message claimed by another instance is a failed lookup for now (-1,
 * "being applied by another instance"): the replicator retries it, and
 * then finds it in the ledger. The ledger row itself is INSERT ... ON
 * CONFLICT DO NOTHING as well.
 *
 * Reads run on the read connection (pg_each_row, under rlock); each is one
 * statement, so its parts see one snapshot. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "store/pg_internal.h"

/* How often an idle publisher's store_outbox_wait lets it fetch anyway:
 * the rows other instances commit (and the claims to take over) wake
 * nobody here. */
#define PG_OUTBOX_POLL_US 100000

/* The lag of a ledger row, as lag_of in sqlite_repl.c: from the time in its
 * UUIDv7 message_id to applied_at, skew counted as 0; NULL when the id is
 * not a UUIDv7 (as uuid7_time_ms). */
#define PG_LAG                                                                                     \
    "(CASE WHEN message_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-"            \
    "[0-9a-f]{12}$' THEN greatest(applied_at - ('x' || substr(message_id, 1, 8) || "               \
    "substr(message_id, 10, 4))::bit(48)::bigint * 1000, 0) END)"

#define PG_OUTBOX_COLUMNS(p)                                                                       \
    p "claim_seq, " p "message_id, " p "timestamp, " p "origin, " p "method, " p "target, " p      \
      "headers, " p "content_type, " p "signature, " p "routing_key, " p "body, " p                \
      "origin_status, " p "origin_digest, " p "origin_body"
enum {
    PO_SEQ,
    PO_ID,
    PO_TIMESTAMP,
    PO_ORIGIN,
    PO_METHOD,
    PO_TARGET,
    PO_HEADERS,
    PO_CTYPE,
    PO_SIG,
    PO_RKEY,
    PO_BODY,
    PO_OSTATUS,
    PO_ODIGEST,
    PO_OBODY
};

/* Integer parameters' text. */
typedef struct num {
    char s[24];
} num;

static const char *num_of(num *n, int64_t v)
{
    snprintf(n->s, sizeof n->s, "%lld", (long long)v);
    return n->s;
}

/* A row callback that keeps the one row's first column as an integer. */
static int int_row(const PGresult *r, void *ud)
{
    *(int64_t *)ud = pg_get_int(r, 0);
    return 0;
}

/* ---- the outbox ---- */

typedef struct fetch_ctx {
    store_outbox_row *rows;
    size_t n, max;
} fetch_ctx;

static int fetch_row(const PGresult *r, void *ud)
{
    fetch_ctx *x = ud;
    if (x->n >= x->max)
        return 1;
    repl_msg *m = repl_msg_new();
    snprintf(m->id, sizeof m->id, "%s", PQgetvalue(r, 0, PO_ID));
    m->timestamp = pg_get_int(r, PO_TIMESTAMP);
    pg_set_str(&m->origin, r, PO_ORIGIN);
    pg_set_str(&m->method, r, PO_METHOD);
    pg_set_str(&m->target, r, PO_TARGET);
    pg_set_str(&m->headers, r, PO_HEADERS);
    pg_set_str(&m->content_type, r, PO_CTYPE);
    pg_set_str(&m->signature, r, PO_SIG);
    pg_set_str(&m->routing_key, r, PO_RKEY);
    pg_set_body(&m->body, r, PO_BODY);
    pg_set_str(&m->origin_status, r, PO_OSTATUS);
    pg_set_str(&m->origin_digest, r, PO_ODIGEST);
    pg_set_body(&m->origin_body, r, PO_OBODY);
    x->rows[x->n].seq = pg_get_int(r, PO_SEQ);
    x->rows[x->n].msg = m;
    x->n++;
    return 0;
}

static int row_cmp(const void *a, const void *b)
{
    int64_t x = ((const store_outbox_row *)a)->seq, y = ((const store_outbox_row *)b)->seq;
    return (x > y) - (x < y);
}

int64_t pg_claim_lease_us(const pg_store *s)
{
    return s->opt.claim_lease_ms ? (int64_t)s->opt.claim_lease_ms * 1000 : 30 * 1000000LL;
}

/* Extends the lease of this handle's claims when a third of it has
 * passed. 0, or -1 with err. */
static int renew_claims(pg_store *s, int64_t now, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->rlock);
    bool due = now - s->renewed_us >= pg_claim_lease_us(s) / 3;
    if (due)
        s->renewed_us = now;
    pthread_mutex_unlock(&s->rlock);
    if (!due)
        return 0;
    num until = {""};
    const char *v[] = {s->claimer, num_of(&until, now + pg_claim_lease_us(s))};
    int64_t renewed = 0;
    return pg_each_row(s,
                       "WITH u AS (UPDATE outbox SET claimed_until = $2 WHERE claimed_by = $1 "
                       "RETURNING 1) SELECT count(*) FROM u",
                       2, v, int_row, &renewed, err, errlen);
}

/* Notes the time of a fetch and the writer's outbox position before it, for
 * pg_outbox_wait. */
static void note_fetch(pg_store *s)
{
    writeq *q = &s->w.q;
    pthread_mutex_lock(&q->mu);
    int64_t local = q->outbox_seq;
    pthread_mutex_unlock(&q->mu);
    pthread_mutex_lock(&s->rlock);
    s->fetched_local = local;
    s->fetched_mono_us = util_mono_us();
    pthread_mutex_unlock(&s->rlock);
}

int pg_outbox_fetch(store *base, int64_t after_seq, size_t max, store_outbox_row *rows, size_t *n,
                    char *err, size_t errlen)
{
    pg_store *s = pgs(base);
    *n = 0;
    if (max == 0)
        return 0;
    note_fetch(s);
    int64_t now = util_now_us();
    if (renew_claims(s, now, err, errlen) < 0)
        return -1;
    fetch_ctx x = {.rows = rows, .max = max};
    num after = {""}, lim = {""}, t = {""}, until = {""};
    /* This instance's claims after the cursor (handed out again after a
     * broker session ended), then new claims: their claim_seq are higher. */
    const char *mine[] = {s->claimer, num_of(&after, after_seq),
                          num_of(&lim, max > INT64_MAX ? INT64_MAX : (int64_t)max)};
    int ret = pg_each_row(s,
                          "SELECT " PG_OUTBOX_COLUMNS("") " FROM outbox WHERE claimed_by = $1 AND "
                                                          "claim_seq > $2 ORDER BY claim_seq "
                                                          "LIMIT $3",
                          3, mine, fetch_row, &x, err, errlen);
    size_t first_new = x.n;
    if (ret == 0 && x.n < max) {
        const char *claim[] = {s->claimer, num_of(&t, now), num_of(&lim, (int64_t)(max - x.n)),
                               num_of(&until, now + pg_claim_lease_us(s))};
        ret = pg_each_row(
            s,
            "WITH c AS (SELECT seq FROM outbox WHERE claimed_until < $2 ORDER BY seq LIMIT $3 "
            "FOR UPDATE SKIP LOCKED) UPDATE outbox o SET claimed_by = $1, claimed_until = $4, "
            "claim_seq = nextval('outbox_claim_seq') FROM c WHERE o.seq = c.seq "
            "RETURNING " PG_OUTBOX_COLUMNS("o."),
            4, claim, fetch_row, &x, err, errlen);
        /* RETURNING gives no order: the claims are handed out in claim
         * order, the cursor's. */
        if (x.n > first_new)
            qsort(rows + first_new, x.n - first_new, sizeof *rows, row_cmp);
    }
    if (ret < 0) {
        snprintf(err + strlen(err), errlen - strlen(err), " (the outbox)");
        store_outbox_rows_free(rows, x.n);
        return -1;
    }
    *n = x.n;
    return 0;
}

int pg_outbox_wait(store *base, int64_t after_seq, int timeout_ms)
{
    /* after_seq is a claim order here (pg_outbox_fetch): what may be new
     * is a row this process's writer committed since the last fetch, or
     * one of another instance's, which only a fetch finds (every
     * PG_OUTBOX_POLL_US). */
    (void)after_seq;
    pg_store *s = pgs(base);
    pthread_mutex_lock(&s->rlock);
    int64_t local = s->fetched_local;
    int64_t due = s->fetched_mono_us + PG_OUTBOX_POLL_US;
    pthread_mutex_unlock(&s->rlock);
    int64_t left_ms = (due - util_mono_us() + 999) / 1000;
    if (left_ms <= 0)
        return 1;
    bool poll = left_ms <= timeout_ms; /* the wait ends when a fetch is due */
    if (writeq_outbox_wait(base, local, poll ? (int)left_ms : timeout_ms) > 0)
        return 1;
    return poll ? 1 : 0;
}

int pg_outbox_has(store *base, const char *message_id, char *err, size_t errlen)
{
    int64_t found = 0;
    const char *v[] = {message_id};
    if (pg_each_row(pgs(base), "SELECT 1 FROM outbox WHERE message_id = $1 LIMIT 1", 1, v, int_row,
                    &found, err, errlen) < 0)
        return -1;
    return found ? 1 : 0;
}

/* ---- the ledger and the replicators' claims ---- */

/* What the ledger says of $1 (0 none, 1 applied, 2 skipped); a claim of
 * $2's on a message the ledger holds is let go. */
#define PG_LEDGER_LOOK                                                                             \
    "WITH a AS (SELECT CASE WHEN state IS NULL THEN 1 ELSE 2 END AS has FROM applied WHERE "       \
    "message_id = $1), d AS (DELETE FROM applying WHERE message_id = $1 AND claimed_by = $2 AND "  \
    "EXISTS (SELECT 1 FROM a) RETURNING 1) SELECT coalesce((SELECT has FROM a), 0), (SELECT "      \
    "count(*) FROM d)"

int pg_ledger_has(store *base, const char *message_id, char *err, size_t errlen)
{
    pg_store *s = pgs(base);
    int64_t has = 0, claimed = 0, now = util_now_us();
    num t = {""}, until = {""};
    const char *look[] = {message_id, s->claimer};
    const char *claim[] = {message_id, s->claimer, num_of(&until, now + pg_claim_lease_us(s)),
                           num_of(&t, now)};
    if (pg_each_row(s, PG_LEDGER_LOOK, 2, look, int_row, &has, err, errlen) < 0)
        goto fail;
    if (has)
        return (int)has;
    if (pg_each_row(s,
                    "INSERT INTO applying (message_id, claimed_by, claimed_until) VALUES ($1, $2, "
                    "$3) ON CONFLICT (message_id) DO UPDATE SET claimed_by = excluded.claimed_by, "
                    "claimed_until = excluded.claimed_until WHERE applying.claimed_by = "
                    "excluded.claimed_by OR applying.claimed_until < $4 RETURNING 1",
                    4, claim, int_row, &claimed, err, errlen) < 0)
        goto fail;
    if (!claimed) {
        snprintf(err, errlen,
                 "message %s is being applied by another instance on this database (its claim "
                 "runs out within %lld s)",
                 message_id, (long long)(pg_claim_lease_us(s) / 1000000));
        return -1;
    }
    /* Claimed: a ledger row committed before the claim is seen now. */
    if (pg_each_row(s, PG_LEDGER_LOOK, 2, look, int_row, &has, err, errlen) < 0)
        goto fail;
    return (int)has;
fail:
    snprintf(err + strlen(err), errlen - strlen(err), " (the applied ledger)");
    return -1;
}

typedef struct entry_ctx {
    store_ledger_entry *out;
    int found;
} entry_ctx;

static int entry_row(const PGresult *r, void *ud)
{
    entry_ctx *x = ud;
    pg_set_str(&x->out->origin, r, 0);
    x->out->at_us = pg_get_int(r, 1);
    x->out->status = (int)pg_get_int(r, 2);
    x->out->skipped = PQgetvalue(r, 0, 3)[0] == 't';
    pg_set_str(&x->out->outcome, r, 4);
    x->found = 1;
    return 0;
}

int pg_ledger_get(store *base, const char *message_id, store_ledger_entry *out, char *err,
                  size_t errlen)
{
    memset(out, 0, sizeof *out);
    entry_ctx x = {.out = out};
    const char *v[] = {message_id};
    if (pg_each_row(pgs(base),
                    "SELECT origin, applied_at, coalesce(status, 0), state IS NOT NULL, outcome "
                    "FROM applied WHERE message_id = $1",
                    1, v, entry_row, &x, err, errlen) < 0) {
        store_ledger_entry_free(out);
        return -1;
    }
    return x.found;
}

int pg_ledger_skip(store *base, const char *message_id, const char *origin, char *err,
                   size_t errlen)
{
    pg_store *s = pgs(base);
    bool started = writeq_started(&s->w.q);
    /* The writer thread owns db once started: this is for the CLI only. */
    if (started || s->opt.read_only) {
        snprintf(err, errlen, "cannot record a skip on this store");
        return -1;
    }
    num now = {""};
    const char *v[] = {message_id, origin, num_of(&now, util_now_us())};
    char e[256] = "";
    int ret = -1;
    PGresult *r = NULL;
    if (pg_exec(s->db, "BEGIN", e, sizeof e) < 0)
        goto out;
    r = PQexecParams(s->db,
                     "INSERT INTO applied (message_id, origin, applied_at, status, state) VALUES "
                     "($1, $2, $3, NULL, 'skipped') ON CONFLICT (message_id) DO NOTHING",
                     3, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        pg_errmsg(s->db, e, sizeof e);
        goto out;
    }
    int inserted = atoi(PQcmdTuples(r));
    PQclear(r);
    /* Neither stuck nor being applied any more. */
    r = PQexecParams(s->db,
                     "WITH d AS (DELETE FROM stuck WHERE message_id = $1) DELETE FROM applying "
                     "WHERE message_id = $1",
                     1, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        pg_errmsg(s->db, e, sizeof e);
        goto out;
    }
    if (pg_exec(s->db, "COMMIT", e, sizeof e) == 0)
        ret = inserted > 0 ? 1 : 0;
out:
    PQclear(r);
    if (ret < 0) {
        pg_exec(s->db, "ROLLBACK", NULL, 0);
        snprintf(err, errlen, "cannot record the skip of %s in the ledger: %s", message_id, e);
    }
    return ret;
}

/* ---- the figures ---- */

static int stats_row(const PGresult *r, void *ud)
{
    store_repl_stats *out = ud;
    out->outbox_depth = pg_get_int(r, 0);
    out->oldest_unpublished_us = pg_get_int(r, 1);
    out->applied = pg_get_int(r, 2);
    out->skipped = pg_get_int(r, 3);
    const char *id = PQgetisnull(r, 0, 4) ? NULL : PQgetvalue(r, 0, 4);
    int64_t ms = id ? uuid7_time_ms(id) : -1;
    out->last_applied_msg_us = ms >= 0 ? ms * 1000 : 0;
    out->last_applied_us = pg_get_int(r, 5);
    out->published = pg_get_int(r, 6);
    out->not_replicated = pg_get_int(r, 7);
    out->deduplicated = pg_get_int(r, 8);
    out->dead_lettered = pg_get_int(r, 9);
    out->last_confirmed_us = pg_get_int(r, 10);
    out->retry_max_age_ms = pg_get_int(r, 11);
    out->retry_max_attempts = pg_get_int(r, 12);
    snprintf(out->last_confirmed_id, sizeof out->last_confirmed_id, "%s",
             PQgetisnull(r, 0, 13) ? "" : PQgetvalue(r, 0, 13));
    out->diverged = pg_get_int(r, 14);
    return 0;
}

#define PG_COUNTER_LAST(name, dflt)                                                                \
    "coalesce((SELECT value FROM counters WHERE name = '" name "'), " dflt ")"
#define PG_COUNTER(name, dflt) PG_COUNTER_LAST(name, dflt) ", "

int pg_repl_stats_get(store *base, store_repl_stats *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    /* One statement: one snapshot, so the figures agree with each other. */
    int ret = pg_each_row(
        pgs(base),
        "WITH last AS (SELECT message_id, applied_at FROM applied WHERE state IS NULL ORDER BY "
        "applied_at DESC LIMIT 1) SELECT (SELECT count(*) FROM outbox), coalesce((SELECT "
        "created_at FROM outbox ORDER BY seq LIMIT 1), 0), (SELECT count(*) - count(state) FROM "
        "applied), (SELECT count(state) FROM applied), (SELECT message_id FROM last), "
        "coalesce((SELECT applied_at FROM last), 0), " PG_COUNTER("published", "0")
            PG_COUNTER("not_replicated", "0") PG_COUNTER("deduplicated", "0")
                PG_COUNTER("dead_lettered", "0") PG_COUNTER("last_confirmed_us", "0")
                    PG_COUNTER("retry_max_age_ms", "-1")
                        PG_COUNTER("retry_max_attempts",
                                   "-1") "(SELECT text_value FROM counters WHERE name = "
                                         "'last_confirmed_id'), " PG_COUNTER_LAST("diverged", "0"),
        0, NULL, stats_row, out, err, errlen);
    if (ret < 0) {
        memset(out, 0, sizeof *out);
        snprintf(err + strlen(err), errlen - strlen(err), " (replication figures)");
    }
    return ret;
}

/* ---- the replicator's failing writes ---- */

#define PG_STUCK_COLUMNS                                                                           \
    "message_id, origin, method, target, first_failed_at, last_failed_at, attempts, last_answer"

static void row_to_stuck(const PGresult *r, store_stuck *row)
{
    snprintf(row->message_id, sizeof row->message_id, "%s", PQgetvalue(r, 0, 0));
    pg_set_str(&row->origin, r, 1);
    pg_set_str(&row->method, r, 2);
    pg_set_str(&row->target, r, 3);
    row->first_failed_us = pg_get_int(r, 4);
    row->last_failed_us = pg_get_int(r, 5);
    row->attempts = pg_get_int(r, 6);
    pg_set_str(&row->last_answer, r, 7);
}

typedef struct stuck_ctx {
    store_stuck *v;
    size_t n, cap, max;
    int64_t total;
} stuck_ctx;

static int stuck_row(const PGresult *r, void *ud)
{
    stuck_ctx *x = ud;
    x->total++;
    if (x->n >= x->max)
        return 0;
    if (x->n == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 16;
        x->v = xrealloc(x->v, x->cap * sizeof *x->v);
    }
    store_stuck *row = &x->v[x->n++];
    memset(row, 0, sizeof *row);
    row_to_stuck(r, row);
    return 0;
}

int pg_stuck_get(store *base, const char *message_id, store_stuck *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    stuck_ctx x = {.max = 1};
    const char *v[] = {message_id};
    int ret = pg_each_row(pgs(base), "SELECT " PG_STUCK_COLUMNS " FROM stuck WHERE message_id = $1",
                          1, v, stuck_row, &x, err, errlen);
    if (ret < 0 || x.n == 0) {
        store_stuck_free(x.v, x.n);
        return ret;
    }
    *out = x.v[0];
    free(x.v);
    return 1;
}

int pg_stuck_list(store *base, size_t max, store_stuck **out, size_t *n, int64_t *total, char *err,
                  size_t errlen)
{
    *out = NULL;
    *n = 0;
    *total = 0;
    /* As SQLite's: a row whose message is in the ledger is history. */
    stuck_ctx x = {.max = max};
    if (pg_each_row(pgs(base),
                    "SELECT " PG_STUCK_COLUMNS " FROM stuck WHERE message_id NOT IN (SELECT "
                    "message_id FROM applied) ORDER BY first_failed_at = 0, first_failed_at, "
                    "last_failed_at",
                    0, NULL, stuck_row, &x, err, errlen) < 0) {
        store_stuck_free(x.v, x.n);
        return -1;
    }
    *out = x.v;
    *n = x.n;
    *total = x.total;
    return 0;
}

/* ---- lag ----
 *
 * Nearest-rank percentiles are percentile_disc: the first value whose
 * cumulative share reaches p, as sqlite_repl.c's percentile. */

#define PG_LAG_FIGURES                                                                             \
    "count(lag) AS ln, coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY lag), 0) AS p50, "     \
    "coalesce(percentile_disc(0.99) WITHIN GROUP (ORDER BY lag), 0) AS p99, coalesce(max(lag), "   \
    "0) AS mx"

static void lag_from(const PGresult *r, int col, store_repl_lag *l)
{
    l->n = pg_get_int(r, col);
    l->p50_us = pg_get_int(r, col + 1);
    l->p99_us = pg_get_int(r, col + 2);
    l->max_us = pg_get_int(r, col + 3);
}

static int lag_row(const PGresult *r, void *ud)
{
    lag_from(r, 0, ud);
    return 0;
}

int pg_repl_lag_get(store *base, int64_t since_us, size_t max_samples, store_repl_lag *out,
                    char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (max_samples == 0)
        return 0;
    num since = {""}, lim = {""};
    const char *v[] = {num_of(&since, since_us),
                       num_of(&lim, max_samples > INT64_MAX ? INT64_MAX : (int64_t)max_samples)};
    int ret = pg_each_row(pgs(base),
                          "SELECT " PG_LAG_FIGURES " FROM (SELECT " PG_LAG
                          " AS lag FROM applied WHERE applied_at >= $1 AND state IS NULL ORDER "
                          "BY applied_at DESC LIMIT $2) w",
                          2, v, lag_row, out, err, errlen);
    if (ret < 0)
        memset(out, 0, sizeof *out);
    return ret;
}

typedef struct origins_ctx {
    store_repl_origin *v;
    size_t n, cap, max;
    int64_t total, end;
} origins_ctx;

static int origin_row(const PGresult *r, void *ud)
{
    origins_ctx *x = ud;
    x->end = pg_get_int(r, 0);
    if (PQgetisnull(r, 0, 2))
        return 0; /* no applies: only the ledger's end */
    x->total++;
    if (x->n >= x->max)
        return 0;
    if (x->n == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 8;
        x->v = xrealloc(x->v, x->cap * sizeof *x->v);
    }
    store_repl_origin *o = &x->v[x->n++];
    memset(o, 0, sizeof *o);
    o->origin = xstrdup(PQgetisnull(r, 0, 1) ? "" : PQgetvalue(r, 0, 1));
    o->applied = pg_get_int(r, 2);
    o->last_applied_us = pg_get_int(r, 3);
    o->last_lag_us = PQgetisnull(r, 0, 4) ? -1 : pg_get_int(r, 4);
    lag_from(r, 5, &o->lag);
    return 0;
}

int pg_repl_origins_get(store *base, int64_t since_us, size_t max_samples, size_t max_origins,
                        store_repl_origin **out, size_t *n, int64_t *total, int64_t *ledger_end,
                        char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    *total = 0;
    if (ledger_end)
        *ledger_end = 0;
    origins_ctx x = {.max = max_origins};
    num since = {""}, lim = {""};
    const char *v[] = {num_of(&since, since_us),
                       num_of(&lim, max_samples > INT64_MAX ? INT64_MAX : (int64_t)max_samples)};
    /* One statement (one snapshot): the end, then per origin (NULL first,
     * byte order, as SQLite) its count, newest apply and that apply's lag,
     * and its lag over the window of the newest max_samples applies. */
    int ret = pg_each_row(
        pgs(base),
        "WITH g AS (SELECT origin, count(*) AS n, max(applied_at) AS last FROM applied WHERE "
        "state IS NULL GROUP BY origin), l AS (SELECT DISTINCT ON (origin) origin, " PG_LAG
        " AS lag FROM applied WHERE state IS NULL ORDER BY origin, applied_at DESC), w AS (SELECT "
        "origin, " PG_LAG " AS lag FROM applied WHERE applied_at >= $1 AND state IS NULL ORDER BY "
        "applied_at DESC LIMIT $2), ws AS (SELECT origin, " PG_LAG_FIGURES
        " FROM w GROUP BY origin) SELECT e.pos, g.origin, g.n, g.last, l.lag, coalesce(ws.ln, 0), "
        "coalesce(ws.p50, 0), coalesce(ws.p99, 0), coalesce(ws.mx, 0) "
        "FROM (SELECT coalesce(max(pos), 0) AS pos FROM applied) e LEFT JOIN g ON true LEFT JOIN "
        "l ON l.origin IS NOT DISTINCT FROM g.origin LEFT JOIN ws ON ws.origin IS NOT DISTINCT "
        "FROM g.origin ORDER BY g.origin COLLATE \"C\" NULLS FIRST",
        2, v, origin_row, &x, err, errlen);
    if (ret < 0) {
        store_repl_origins_free(x.v, x.n);
        return -1;
    }
    *out = x.v;
    *n = x.n;
    *total = x.total;
    if (ledger_end)
        *ledger_end = x.end;
    return 0;
}

typedef struct each_ctx {
    int (*fn)(const store_ledger_row *row, void *ud);
    void *ud;
    int64_t n;
} each_ctx;

static int each_ledger_row(const PGresult *r, void *ud)
{
    each_ctx *x = ud;
    store_ledger_row row = {.pos = pg_get_int(r, 0),
                            .origin = PQgetisnull(r, 0, 1) ? "" : PQgetvalue(r, 0, 1),
                            .lag_us = PQgetisnull(r, 0, 2) ? -1 : pg_get_int(r, 2)};
    x->n++;
    return x->fn(&row, x->ud);
}

int64_t pg_ledger_each(store *base, int64_t after, size_t max,
                       int (*fn)(const store_ledger_row *row, void *ud), void *ud, char *err,
                       size_t errlen)
{
    if (max == 0)
        return 0;
    each_ctx x = {.fn = fn, .ud = ud};
    num a = {""}, lim = {""};
    const char *v[] = {num_of(&a, after), num_of(&lim, max > INT64_MAX ? INT64_MAX : (int64_t)max)};
    if (pg_each_row(pgs(base),
                    "SELECT pos, origin, " PG_LAG " FROM applied WHERE pos > $1 AND state IS NULL "
                    "ORDER BY pos LIMIT $2",
                    2, v, each_ledger_row, &x, err, errlen) < 0)
        return -1;
    return x.n;
}

/* ---- receipts ---- */

typedef struct receipts_ctx {
    const char *message_id;
    store_receipt *v;
    size_t n, cap;
} receipts_ctx;

static int receipt_row(const PGresult *r, void *ud)
{
    receipts_ctx *x = ud;
    if (x->n == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 4;
        x->v = xrealloc(x->v, x->cap * sizeof *x->v);
    }
    store_receipt *rc = &x->v[x->n++];
    memset(rc, 0, sizeof *rc);
    snprintf(rc->message_id, sizeof rc->message_id, "%s", x->message_id);
    pg_set_str(&rc->node, r, 0);
    pg_set_str(&rc->outcome, r, 1);
    rc->status = (int)pg_get_int(r, 2);
    rc->at_us = pg_get_int(r, 3);
    return 0;
}

int pg_receipts_get(store *base, const char *message_id, store_receipt **out, size_t *n, char *err,
                    size_t errlen)
{
    *out = NULL;
    *n = 0;
    receipts_ctx x = {.message_id = message_id};
    const char *v[] = {message_id};
    if (pg_each_row(pgs(base),
                    "SELECT node, outcome, coalesce(status, 0), at FROM receipts WHERE message_id "
                    "= $1 ORDER BY node COLLATE \"C\"",
                    1, v, receipt_row, &x, err, errlen) < 0) {
        store_receipts_free(x.v, x.n);
        return -1;
    }
    *out = x.v;
    *n = x.n;
    return 0;
}
