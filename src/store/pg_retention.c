/* pg_retention: retention on the PostgreSQL backend (store_max_rows,
 * store_max_age), run by the writer thread between batches through
 * writeq's prune hooks, on the writer's connection.
 *
 * Promises: rows go oldest first (started_at, then seq: insertion order),
 * at most PG_PRUNE_CHUNK rows per statement, each chunk its own short
 * transaction (no long locks: the inserts of every instance go on between
 * chunks); several instances on one database never prune at the same time
 * (each chunk's transaction first tries an advisory lock, and an instance
 * that does not get it leaves the work to the one that has it).
 *
 * Unlike SQLite's, this retention cannot count the rows it wrote: other
 * instances write to the same table. store_max_rows therefore finds its
 * edge (the newest row past the limit) by walking the started_at index
 * from the newest row, max_rows entries, once per PG_PRUNE_EVERY_US at
 * most (while there is nothing to delete), then deletes up to it;
 * store_max_age is one index range.
 *
 * Replication's memory goes the same way: the ledger (applied and skipped
 * writes older than replicate_ledger_max_age, by applied_at) and the apply
 * receipts (by message_id: a UUIDv7 begins with its capture's time, and
 * the canonical lowercase text sorts by it in any collation, since the
 * dashes stand at the same places), and the replicators' claims in
 * `applying` that ran out (a claim is deleted with the ledger row it led
 * to, but the claim of a message that went to the dead letters, or of an
 * instance that died, would stay for ever; once run out it means nothing,
 * so it goes, checked once per claim lease). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "base/uuid7.h"
#include "store/pg_internal.h"

#define PG_PRUNE_CHUNK 1000 /* rows per statement; the SQL's LIMIT below */
#define PG_STR_(x) #x
#define PG_STR(x) PG_STR_(x)
#define PG_PRUNE_EVERY_US 1000000 /* a check at most once a second */
/* The advisory lock of retention, beside the migrations' ("restspy"+1). */
#define PG_PRUNE_LOCK "31084464474616954"

/* The newest row past the newest $1 (max_rows' edge): no row when the
 * table holds no more. A statement of its own: joined into the DELETE, an
 * empty edge made PostgreSQL walk the whole table (1.8 s at 1M rows). */
#define PG_ROWS_EDGE                                                                               \
    "SELECT started_at, seq FROM requests ORDER BY started_at DESC, seq DESC OFFSET $1 LIMIT 1"
/* The oldest chunk of the rows up to the edge ($1 started_at, $2 seq). */
#define PG_PRUNE_UPTO                                                                              \
    "DELETE FROM requests WHERE id IN (SELECT id FROM requests WHERE (started_at, seq) <= ($1, "   \
    "$2) ORDER BY started_at, seq LIMIT " PG_STR(PG_PRUNE_CHUNK) ")"
/* The oldest chunk of the rows started before $1 (µs since the epoch). */
#define PG_PRUNE_AGE                                                                               \
    "DELETE FROM requests WHERE id IN (SELECT id FROM requests WHERE started_at < $1 ORDER BY "    \
    "started_at, seq LIMIT " PG_STR(PG_PRUNE_CHUNK) ")"

/* The oldest chunk of the ledger's rows applied before $1. */
#define PG_PRUNE_LEDGER                                                                            \
    "DELETE FROM applied WHERE message_id IN (SELECT message_id FROM applied WHERE applied_at < "  \
    "$1 ORDER BY applied_at LIMIT " PG_STR(PG_PRUNE_CHUNK) ")"
/* The oldest chunk of the receipts whose message_id sorts before $1. */
#define PG_PRUNE_RECEIPTS                                                                          \
    "DELETE FROM receipts WHERE (message_id, node) IN (SELECT message_id, node FROM receipts "     \
    "WHERE message_id < $1 ORDER BY message_id LIMIT " PG_STR(PG_PRUNE_CHUNK) ")"
/* A chunk of the claims that ran out before $1. */
#define PG_PRUNE_CLAIMS                                                                            \
    "DELETE FROM applying WHERE message_id IN (SELECT message_id FROM applying WHERE "             \
    "claimed_until < $1 LIMIT " PG_STR(PG_PRUNE_CHUNK) ")"

/* A failed step: rolled back, logged, counted. -1. */
static int64_t prune_failed(pg_store *s, const char *e)
{
    if (PQstatus(s->db) == CONNECTION_OK && PQtransactionStatus(s->db) != PQTRANS_IDLE)
        pg_exec(s->db, "ROLLBACK", NULL, 0);
    fprintf(stderr, "restspy: store: retention: %s\n", e);
    pthread_mutex_lock(&s->w.q.mu);
    s->w.q.st.errors++;
    pthread_mutex_unlock(&s->w.q.mu);
    return -1;
}

/* A statement's parameters: up to two integers, or one text. */
typedef struct prune_args {
    int n;
    const char *v[2];
    char num[2][24];
} prune_args;

static const prune_args *ints(prune_args *a, int n, const int64_t *v)
{
    assert(n <= 2);
    a->n = n;
    for (int i = 0; i < n; i++) {
        snprintf(a->num[i], sizeof a->num[i], "%lld", (long long)v[i]);
        a->v[i] = a->num[i];
    }
    return a;
}

static const prune_args *text(prune_args *a, const char *v)
{
    a->n = 1;
    a->v[0] = v;
    return a;
}

/* Under the lock, in a transaction of its own: sql with its parameters.
 * The rows deleted; 0 when another instance holds the lock; -1 on an
 * error (logged, counted). Rows of requests count as pruned, replication's
 * rows (counted false) do not. */
static int64_t prune_chunk(pg_store *s, const char *sql, const prune_args *a, bool counted)
{
    char e[256];
    if (pg_writer_conn(s, e, sizeof e) < 0)
        return -1; /* the writer's own retries log the lost connection */
    if (pg_exec(s->db, "BEGIN", e, sizeof e) < 0)
        return prune_failed(s, e);
    PGresult *r = PQexec(s->db, "SELECT pg_try_advisory_xact_lock(" PG_PRUNE_LOCK ")");
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    bool locked = ok && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (!ok)
        return prune_failed(s, pg_errmsg(s->db, e, sizeof e));
    if (!locked) {
        pg_exec(s->db, "ROLLBACK", NULL, 0);
        return 0;
    }
    r = PQexecParams(s->db, sql, a->n, NULL, a->v, NULL, NULL, 0);
    int64_t deleted =
        PQresultStatus(r) == PGRES_COMMAND_OK ? strtoll(PQcmdTuples(r), NULL, 10) : -1;
    PQclear(r);
    if (deleted < 0 || pg_exec(s->db, "COMMIT", e, sizeof e) < 0)
        return prune_failed(s, pg_errmsg(s->db, e, sizeof e));
    if (counted) {
        pthread_mutex_lock(&s->w.q.mu);
        s->w.q.st.pruned += (uint64_t)deleted;
        pthread_mutex_unlock(&s->w.q.mu);
    }
    return deleted;
}

/* One chunk of max_rows: the edge, then the oldest rows up to it. As
 * prune_chunk; 0 too when the table holds no more than keep rows. */
static int64_t prune_rows(pg_store *s, int64_t keep)
{
    char e[256];
    if (pg_writer_conn(s, e, sizeof e) < 0)
        return -1;
    prune_args a;
    PGresult *r = PQexecParams(s->db, PG_ROWS_EDGE, 1, NULL, ints(&a, 1, &keep)->v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        return prune_failed(s, pg_errmsg(s->db, e, sizeof e));
    }
    int64_t edge[2] = {0, 0};
    bool over = PQntuples(r) == 1;
    if (over) {
        edge[0] = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        edge[1] = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    }
    PQclear(r);
    return over ? prune_chunk(s, PG_PRUNE_UPTO, ints(&a, 2, edge), true) : 0;
}

/* One chunk of the ledger and one of the receipts older than
 * replicate_ledger_max_age. The larger count (a full chunk: more to do). */
static int64_t prune_ledger(pg_store *s)
{
    int64_t cutoff = util_now_us() - (int64_t)s->opt.ledger_max_age_ms * 1000;
    prune_args a;
    int64_t n = prune_chunk(s, PG_PRUNE_LEDGER, ints(&a, 1, &cutoff), false);
    char first[UUID7_STR_LEN + 1];
    uuid7_floor(cutoff / 1000, first);
    int64_t r = prune_chunk(s, PG_PRUNE_RECEIPTS, text(&a, first), false);
    return n > r ? n : r;
}

/* When the next check of one kind is due: at once after a full chunk
 * (there is more), else after PG_PRUNE_EVERY_US (nothing more, the lock was
 * another instance's, or an error). */
static int64_t next_check(int64_t now_mono, int64_t deleted)
{
    return deleted == PG_PRUNE_CHUNK ? now_mono : now_mono + PG_PRUNE_EVERY_US;
}

static int64_t prune_wake_at(void *ctx)
{
    const pg_store *s = ctx;
    int64_t t = INT64_MAX;
    if (s->opt.max_age_ms)
        t = s->next_age_prune_mono_us;
    if (s->opt.max_rows && s->next_rows_prune_mono_us < t)
        t = s->next_rows_prune_mono_us;
    if (s->opt.ledger_max_age_ms && s->next_ledger_prune_mono_us < t)
        t = s->next_ledger_prune_mono_us;
    if (s->next_claims_prune_mono_us < t)
        t = s->next_claims_prune_mono_us;
    return t;
}

/* One step: at most one chunk of each kind, so that batches get in
 * between. */
static void prune_step(void *ctx)
{
    pg_store *s = ctx;
    int64_t now_mono = util_mono_us();
    prune_args a;
    if (s->opt.max_age_ms && now_mono >= s->next_age_prune_mono_us) {
        int64_t cutoff = util_now_us() - (int64_t)s->opt.max_age_ms * 1000;
        s->next_age_prune_mono_us =
            next_check(now_mono, prune_chunk(s, PG_PRUNE_AGE, ints(&a, 1, &cutoff), true));
    }
    if (s->opt.ledger_max_age_ms && now_mono >= s->next_ledger_prune_mono_us)
        s->next_ledger_prune_mono_us = next_check(now_mono, prune_ledger(s));
    if (now_mono >= s->next_claims_prune_mono_us) {
        int64_t now = util_now_us();
        int64_t n = prune_chunk(s, PG_PRUNE_CLAIMS, ints(&a, 1, &now), false);
        s->next_claims_prune_mono_us =
            n == PG_PRUNE_CHUNK ? now_mono : now_mono + pg_claim_lease_us(s);
    }
    if (s->opt.max_rows && now_mono >= s->next_rows_prune_mono_us) {
        int64_t keep = s->opt.max_rows > INT64_MAX ? INT64_MAX : (int64_t)s->opt.max_rows;
        s->next_rows_prune_mono_us = next_check(now_mono, prune_rows(s, keep));
    }
}

/* Closing: what is due now, chunk after chunk, until a chunk is not full
 * (or fails, or the lock is another's), which puts the next check in the
 * future and ends the loop. */
static void prune_finish(void *ctx)
{
    pg_store *s = ctx;
    s->next_age_prune_mono_us = s->next_rows_prune_mono_us = s->next_ledger_prune_mono_us = 0;
    while (util_mono_us() >= prune_wake_at(s))
        prune_step(s);
}

const writeq_hooks pg_writeq_hooks = {
    .commit = pg_commit_batch,
    .prune_wake_at = prune_wake_at,
    .prune_step = prune_step,
    .prune_finish = prune_finish,
};
