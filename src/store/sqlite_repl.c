/* sqlite_repl: the SQLite backend's replication reads (outbox, ledger,
 * figures, stuck messages, apply lag) and the CLI's ledger skip. */
#include <assert.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "store/sqlite_internal.h"

/* ---- replication reads ----
 *
 * All on the read connection under rlock: the publisher, the replicator's
 * workers and the admin thread may call them at once, and none of them may
 * wait for the writer (WAL readers never do). A reader of a version 1 file
 * sees no outbox, an empty ledger and zero figures. */

static repl_msg *row_to_msg(sqlite3_stmt *st)
{
    repl_msg *m = repl_msg_new();
    const unsigned char *id = sqlite3_column_text(st, O_ID);
    snprintf(m->id, sizeof m->id, "%s", id ? (const char *)id : "");
    m->timestamp = sqlite3_column_int64(st, O_TIMESTAMP);
    sq_set_str(&m->origin, st, O_ORIGIN);
    sq_set_str(&m->method, st, O_METHOD);
    sq_set_str(&m->target, st, O_TARGET);
    sq_set_str(&m->headers, st, O_HEADERS);
    sq_set_str(&m->content_type, st, O_CTYPE);
    sq_set_str(&m->signature, st, O_SIG);
    sq_set_str(&m->routing_key, st, O_RKEY);
    sq_set_body(&m->body, st, O_BODY);
    sq_set_str(&m->origin_status, st, O_OSTATUS);
    sq_set_str(&m->origin_digest, st, O_ODIGEST);
    sq_set_body(&m->origin_body, st, O_OBODY);
    return m;
}

int sq_outbox_fetch(store *base, int64_t after_seq, size_t max, store_outbox_row *rows, size_t *n,
                    char *err, size_t errlen)
{
    sq_store *s = sq(base);
    *n = 0;
    if (max == 0)
        return 0;
    sqlite3_stmt *st;
    int ret = sq_reader_begin(s, &s->r_outbox_fetch,
                              "SELECT " SQ_OUTBOX_COLUMNS
                              " FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                              "outbox", &st, err, errlen);
    if (ret > 0) {
        ret = 0;
        sqlite3_bind_int64(st, 1, after_seq);
        sqlite3_bind_int64(st, 2, max > INT64_MAX ? INT64_MAX : (int64_t)max);
        int rc = SQLITE_DONE;
        while (*n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            rows[*n].seq = sqlite3_column_int64(st, O_SEQ);
            rows[*n].msg = row_to_msg(st);
            (*n)++;
        }
        if (*n < max && rc != SQLITE_DONE) {
            snprintf(err, errlen, "cannot read the outbox: %s",
                     sqlite3_errmsg(sqlite3_db_handle(st)));
            store_outbox_rows_free(rows, *n);
            *n = 0;
            ret = -1;
        }
    }
    sq_reader_end(s, st);
    return ret;
}

int sq_ledger_has(store *base, const char *message_id, char *err, size_t errlen)
{
    sq_store *s = sq(base);
    sqlite3_stmt *st;
    int ret = sq_reader_begin(s, &s->r_ledger_has,
                              s->schema >= 4
                                  ? "SELECT state IS NOT NULL FROM applied WHERE message_id = ?1"
                                  : "SELECT 0 FROM applied WHERE message_id = ?1",
                              "applied ledger", &st, err, errlen);
    if (ret > 0) {
        sqlite3_bind_text(st, 1, message_id, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        ret = rc == SQLITE_ROW ? 1 + sqlite3_column_int(st, 0) : 0;
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            snprintf(err, errlen, "cannot read the applied ledger: %s",
                     sqlite3_errmsg(sqlite3_db_handle(st)));
            ret = -1;
        }
    }
    sq_reader_end(s, st);
    return ret;
}

/* The figures, each query a step of one read transaction so that they agree
 * with each other (a confirm moves rows from depth to published at once). */
static int repl_stats_read(sqlite3 *db, int64_t schema, store_repl_stats *out)
{
    /* Since version 4 a ledger row may be a skip (state 'skipped'): it is
     * counted apart and is not the last apply. */
    const char *const sql[] = {
        "SELECT count(*) FROM outbox",
        "SELECT created_at FROM outbox ORDER BY seq LIMIT 1",
        "SELECT name, value FROM counters",
        schema >= 4 ? "SELECT count(*) - count(state), count(state) FROM applied"
                    : "SELECT count(*), 0 FROM applied",
        schema >= 4 ? "SELECT message_id, applied_at FROM applied WHERE state IS NULL "
                      "ORDER BY applied_at DESC LIMIT 1"
                    : "SELECT message_id, applied_at FROM applied ORDER BY applied_at DESC LIMIT 1",
    };
    out->retry_max_age_ms = out->retry_max_attempts = -1;
    for (size_t q = 0; q < sizeof sql / sizeof sql[0]; q++) {
        sqlite3_stmt *st;
        int rc = sqlite3_prepare_v2(db, sql[q], -1, &st, NULL);
        if (rc != SQLITE_OK)
            return rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            int64_t v = sqlite3_column_int64(st, q == 2 ? 1 : 0);
            if (q == 0) {
                out->outbox_depth = v;
            } else if (q == 1) {
                out->oldest_unpublished_us = v;
            } else if (q == 3) {
                out->applied = v;
                out->skipped = sqlite3_column_int64(st, 1);
            } else if (q == 4) {
                const char *id = (const char *)sqlite3_column_text(st, 0);
                int64_t ms = id ? uuid7_time_ms(id) : -1;
                out->last_applied_msg_us = ms >= 0 ? ms * 1000 : 0;
                out->last_applied_us = sqlite3_column_int64(st, 1);
            } else {
                const char *name = (const char *)sqlite3_column_text(st, 0);
                if (!name)
                    continue;
                if (strcmp(name, "published") == 0)
                    out->published = v;
                else if (strcmp(name, "not_replicated") == 0)
                    out->not_replicated = v;
                else if (strcmp(name, "deduplicated") == 0)
                    out->deduplicated = v;
                else if (strcmp(name, "dead_lettered") == 0)
                    out->dead_lettered = v;
                else if (strcmp(name, "diverged") == 0)
                    out->diverged = v;
                else if (strcmp(name, "last_confirmed_us") == 0)
                    out->last_confirmed_us = v;
                else if (strcmp(name, "retry_max_age_ms") == 0)
                    out->retry_max_age_ms = v;
                else if (strcmp(name, "retry_max_attempts") == 0)
                    out->retry_max_attempts = v;
                else if (strcmp(name, "last_confirmed_id") == 0) {
                    const unsigned char *t = sqlite3_column_text(st, 1);
                    snprintf(out->last_confirmed_id, sizeof out->last_confirmed_id, "%s",
                             t ? (const char *)t : "");
                }
            }
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE)
            return rc;
    }
    return SQLITE_OK;
}

int sq_repl_stats_get(store *base, store_repl_stats *out, char *err, size_t errlen)
{
    sq_store *s = sq(base);
    memset(out, 0, sizeof *out);
    int ret = 0;
    pthread_mutex_lock(&s->rlock);
    sqlite3 *db = sq_reader(s, err, errlen);
    if (!db) {
        ret = -1;
    } else if (s->schema >= 2) {
        char e[256];
        int rc = sq_exec(db, "BEGIN", e, sizeof e);
        if (rc == SQLITE_OK)
            rc = repl_stats_read(db, s->schema, out);
        if (rc != SQLITE_OK) {
            snprintf(err, errlen, "cannot read replication figures: %s", sqlite3_errmsg(db));
            memset(out, 0, sizeof *out);
            ret = -1;
        }
        if (!sqlite3_get_autocommit(db))
            sq_exec(db, "COMMIT", NULL, 0);
    }
    pthread_mutex_unlock(&s->rlock);
    return ret;
}

/* ---- the replicator's failing writes, skips and lag ---- */

/* Fills row's fields but message_id from a statement that selects
 * SQ_STUCK_COLUMNS: origin is column first (message_id before it). */
static void row_to_stuck(sqlite3_stmt *st, int first, store_stuck *row)
{
    sq_set_str(&row->origin, st, first);
    sq_set_str(&row->method, st, first + 1);
    sq_set_str(&row->target, st, first + 2);
    row->first_failed_us = sqlite3_column_int64(st, first + 3);
    row->last_failed_us = sqlite3_column_int64(st, first + 4);
    row->attempts = sqlite3_column_int64(st, first + 5);
    sq_set_str(&row->last_answer, st, first + 6);
}

int sq_stuck_get(store *base, const char *message_id, store_stuck *out, char *err, size_t errlen)
{
    sq_store *s = sq(base);
    memset(out, 0, sizeof *out);
    if (s->schema < 4)
        return 0;
    sqlite3_stmt *st;
    int ret = sq_reader_begin(s, &s->r_stuck_get,
                              "SELECT " SQ_STUCK_COLUMNS " FROM stuck WHERE message_id = ?1",
                              "stuck messages", &st, err, errlen);
    if (ret > 0) {
        sqlite3_bind_text(st, 1, message_id, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        ret = rc == SQLITE_ROW ? 1 : 0;
        if (rc == SQLITE_ROW) {
            snprintf(out->message_id, sizeof out->message_id, "%s", message_id);
            row_to_stuck(st, 1, out);
        } else if (rc != SQLITE_DONE) {
            snprintf(err, errlen, "cannot read the stuck messages: %s",
                     sqlite3_errmsg(sqlite3_db_handle(st)));
            ret = -1;
        }
    }
    sq_reader_end(s, st);
    return ret;
}

int sq_stuck_list(store *base, size_t max, store_stuck **out, size_t *n, int64_t *total, char *err,
                  size_t errlen)
{
    sq_store *s = sq(base);
    *out = NULL;
    *n = 0;
    *total = 0;
    if (s->schema < 4)
        return 0;
    /* A row whose message is in the ledger is history (a skip recorded
     * while the replicator was noting a failure of it): not listed. The
     * table is small (what the replicator holds), so it is read whole. */
    sqlite3_stmt *st;
    int rc = SQLITE_OK;
    int ret = sq_oneoff_begin(s,
                              "SELECT " SQ_STUCK_COLUMNS " FROM stuck WHERE message_id NOT IN "
                              "(SELECT message_id FROM applied) ORDER BY first_failed_at = 0, "
                              "first_failed_at, last_failed_at",
                              &st, err, errlen);
    size_t cap = 0;
    store_stuck *v = NULL;
    while (ret == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        (*total)++;
        if (*n >= max)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            v = xrealloc(v, cap * sizeof *v);
        }
        store_stuck *row = &v[(*n)++];
        memset(row, 0, sizeof *row);
        const unsigned char *id = sqlite3_column_text(st, 0);
        snprintf(row->message_id, sizeof row->message_id, "%s", id ? (const char *)id : "");
        row_to_stuck(st, 1, row);
    }
    if (sq_oneoff_end(s, st, rc, ret, err, errlen) < 0) {
        store_stuck_free(v, *n);
        *n = 0;
        *total = 0;
        return -1;
    }
    *out = v;
    return 0;
}

int sq_ledger_skip(store *base, const char *message_id, const char *origin, char *err,
                   size_t errlen)
{
    sq_store *s = sq(base);
    bool started = writeq_started(&s->w.q);
    /* The writer thread owns db once started: this is for the CLI only. */
    assert(!started && !s->opt.read_only);
    if (started || s->opt.read_only) {
        snprintf(err, errlen, "cannot record a skip on this store");
        return -1;
    }
    char e[256] = "";
    int64_t inserted = 0;
    sqlite3_stmt *ins = NULL, *del = NULL;
    int rc = sq_exec(s->db, "BEGIN IMMEDIATE", e, sizeof e);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(s->db,
                                "INSERT OR IGNORE INTO applied (message_id, origin, applied_at, "
                                "status, state) VALUES (?1, ?2, ?3, NULL, 'skipped')",
                                -1, &ins, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(ins, 1, message_id, -1, SQLITE_STATIC);
        sq_bind_text(ins, 1, origin);
        sqlite3_bind_int64(ins, 3, util_now_us());
        rc = sq_run(s, ins, &inserted, e, sizeof e);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(s->db, SQ_STUCK_DELETE, -1, &del, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(del, 1, message_id, -1, SQLITE_STATIC);
        rc = sq_run(s, del, NULL, e, sizeof e);
    }
    if (rc == SQLITE_OK)
        rc = sq_exec(s->db, "COMMIT", e, sizeof e);
    if (rc != SQLITE_OK && !e[0])
        snprintf(e, sizeof e, "%s", sqlite3_errmsg(s->db));
    sqlite3_finalize(ins);
    sqlite3_finalize(del);
    if (rc != SQLITE_OK) {
        if (!sqlite3_get_autocommit(s->db))
            sq_exec(s->db, "ROLLBACK", NULL, 0);
        snprintf(err, errlen, "cannot record the skip of %s in the ledger: %s", message_id, e);
        return -1;
    }
    return inserted > 0 ? 1 : 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile p (0-100] of the ascending v[0..n), n > 0. */
static int64_t percentile(const int64_t *v, size_t n, unsigned p)
{
    size_t k = (n * p + 99) / 100;
    return v[k ? k - 1 : 0];
}

/* The lag of the ledger row whose message_id and applied_at are columns
 * id_col and at_col of st: from the time in its UUIDv7 id to its commit
 * here, clock skew counted as 0; -1 when the id holds no time. */
static int64_t lag_of(sqlite3_stmt *st, int id_col, int at_col)
{
    const char *id = (const char *)sqlite3_column_text(st, id_col);
    int64_t ms = id ? uuid7_time_ms(id) : -1;
    if (ms < 0)
        return -1;
    int64_t lag = sqlite3_column_int64(st, at_col) - ms * 1000;
    return lag > 0 ? lag : 0;
}

int sq_repl_lag_get(store *base, int64_t since_us, size_t max_samples, store_repl_lag *out,
                    char *err, size_t errlen)
{
    sq_store *s = sq(base);
    memset(out, 0, sizeof *out);
    if (s->schema < 2 || max_samples == 0)
        return 0;
    sqlite3_stmt *st;
    if (sq_oneoff_begin(s,
                        s->schema >= 4
                            ? "SELECT message_id, applied_at FROM applied WHERE applied_at "
                              ">= ?1 AND state IS NULL ORDER BY applied_at DESC LIMIT ?2"
                            : "SELECT message_id, applied_at FROM applied WHERE applied_at "
                              ">= ?1 ORDER BY applied_at DESC LIMIT ?2",
                        &st, err, errlen) < 0)
        return sq_oneoff_end(s, st, SQLITE_OK, -1, err, errlen);
    sqlite3_bind_int64(st, 1, since_us);
    sqlite3_bind_int64(st, 2, max_samples > INT64_MAX ? INT64_MAX : (int64_t)max_samples);
    int64_t *v = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t lag = lag_of(st, 0, 1);
        if (lag < 0)
            continue; /* not a restspy id: no origin time */
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            v = xrealloc(v, cap * sizeof *v);
        }
        v[n++] = lag;
    }
    int ret = sq_oneoff_end(s, st, rc, 0, err, errlen);
    if (ret == 0 && n) {
        qsort(v, n, sizeof *v, cmp_i64);
        out->n = (int64_t)n;
        out->p50_us = percentile(v, n, 50);
        out->p99_us = percentile(v, n, 99);
        out->max_us = v[n - 1];
    }
    free(v);
    return ret;
}

/* ---- the ledger by origin ----
 *
 * A ledger position is the row's rowid: the one writer of a file gives each
 * new row the highest rowid so far plus one, and nothing deletes ledger
 * rows, so positions grow in commit order. */

/* Leaves the skips out of a ledger query on a file of schema version v
 * (before version 4 every row is an apply). */
static const char *applies_only(int64_t v)
{
    return v >= 4 ? " AND state IS NULL" : "";
}

/* Prepares a ledger query: fmt's one %s is where applies_only(schema)
 * goes. SQLite's rc. */
static int ledger_prepare(sqlite3 *db, const char *fmt, int64_t schema, sqlite3_stmt **st)
{
    char sql[256];
    int len = snprintf(sql, sizeof sql, fmt, applies_only(schema));
    assert(len > 0 && (size_t)len < sizeof sql);
    (void)len;
    return sqlite3_prepare_v2(db, sql, -1, st, NULL);
}

/* NULL (an origin the row does not name) sorts first, as in SQLite. */
static int origin_cmp(const char *a, const char *b)
{
    if (!a || !b)
        return (a != NULL) - (b != NULL);
    return strcmp(a, b);
}

/* One apply of the window: its origin's index in the list, its lag. */
typedef struct win_sample {
    size_t o;
    int64_t lag;
} win_sample;

static int sample_cmp(const void *a, const void *b)
{
    const win_sample *x = a, *y = b;
    if (x->o != y->o)
        return (x->o > y->o) - (x->o < y->o);
    return (x->lag > y->lag) - (x->lag < y->lag);
}

/* The index of origin in the sorted v[0..n), or n when it is not there. */
static size_t origin_find(const store_repl_origin *v, size_t n, const char *origin)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = origin_cmp(v[mid].origin, origin);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return n;
}

/* The origins, their counts and newest applies (one covering index scan,
 * then one index search per origin), max of them in *v. SQLite's rc. */
static int origins_list(sqlite3 *db, int64_t schema, size_t max, store_repl_origin **v, size_t *n,
                        int64_t *total)
{
    sqlite3_stmt *st;
    int rc = ledger_prepare(db,
                            "SELECT origin, count(*), max(applied_at) FROM applied WHERE 1%s "
                            "GROUP BY origin ORDER BY origin",
                            schema, &st);
    if (rc != SQLITE_OK)
        return rc;
    size_t cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        (*total)++;
        if (*n >= max)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            *v = xrealloc(*v, cap * sizeof **v);
        }
        store_repl_origin *o = &(*v)[(*n)++];
        memset(o, 0, sizeof *o);
        sq_set_str(&o->origin, st, 0);
        o->applied = sqlite3_column_int64(st, 1);
        o->last_applied_us = sqlite3_column_int64(st, 2);
        o->last_lag_us = -1;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return rc;
    rc = ledger_prepare(db,
                        "SELECT message_id, applied_at FROM applied WHERE origin IS ?1%s ORDER "
                        "BY applied_at DESC LIMIT 1",
                        schema, &st);
    for (size_t i = 0; rc == SQLITE_OK && i < *n; i++) {
        store_repl_origin *o = &(*v)[i];
        sq_bind_text(st, 0, o->origin);
        if ((rc = sqlite3_step(st)) == SQLITE_ROW)
            o->last_lag_us = lag_of(st, 0, 1);
        if (rc == SQLITE_ROW || rc == SQLITE_DONE)
            rc = sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return rc;
}

/* Each origin's lag over the applies since since_us (the newest max of
 * them over all origins), from one range of the applied_at index. */
static int origins_window(sqlite3 *db, int64_t schema, int64_t since_us, size_t max,
                          store_repl_origin *v, size_t n)
{
    sqlite3_stmt *st;
    int rc = ledger_prepare(db,
                            "SELECT origin, message_id, applied_at FROM applied WHERE applied_at "
                            ">= ?1%s ORDER BY applied_at DESC LIMIT ?2",
                            schema, &st);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_bind_int64(st, 1, since_us);
    sqlite3_bind_int64(st, 2, max > INT64_MAX ? INT64_MAX : (int64_t)max);
    win_sample *w = NULL;
    size_t nw = 0, cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        size_t o = origin_find(v, n, (const char *)sqlite3_column_text(st, 0));
        int64_t lag = lag_of(st, 1, 2);
        if (o == n || lag < 0)
            continue; /* an origin beyond the list, or no origin time */
        if (nw == cap) {
            cap = cap ? cap * 2 : 256;
            w = xrealloc(w, cap * sizeof *w);
        }
        w[nw++] = (win_sample){o, lag};
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
        if (nw)
            qsort(w, nw, sizeof *w, sample_cmp);
        int64_t *lags = xmalloc((nw ? nw : 1) * sizeof *lags);
        for (size_t i = 0; i < nw;) {
            size_t j = i;
            for (; j < nw && w[j].o == w[i].o; j++)
                lags[j - i] = w[j].lag;
            store_repl_lag *l = &v[w[i].o].lag;
            l->n = (int64_t)(j - i);
            l->p50_us = percentile(lags, j - i, 50);
            l->p99_us = percentile(lags, j - i, 99);
            l->max_us = lags[j - i - 1];
            i = j;
        }
        free(lags);
    }
    free(w);
    return rc;
}

int sq_repl_origins_get(store *base, int64_t since_us, size_t max_samples, size_t max_origins,
                        store_repl_origin **out, size_t *n, int64_t *total, int64_t *ledger_end,
                        char *err, size_t errlen)
{
    sq_store *s = sq(base);
    *out = NULL;
    *n = 0;
    *total = 0;
    if (ledger_end)
        *ledger_end = 0;
    if (s->schema < 2)
        return 0;
    int ret = 0;
    pthread_mutex_lock(&s->rlock);
    sqlite3 *db = sq_reader(s, err, errlen);
    if (!db) {
        ret = -1;
    } else {
        /* One read transaction: the counts, the window and the end agree. */
        int64_t end = 0;
        int rc = sq_exec(db, "BEGIN", NULL, 0);
        if (rc == SQLITE_OK)
            rc = sq_int_query(db, "SELECT coalesce(max(rowid), 0) FROM applied", &end, NULL, 0);
        if (rc == SQLITE_OK)
            rc = origins_list(db, s->schema, max_origins, out, n, total);
        if (rc == SQLITE_OK && max_samples)
            rc = origins_window(db, s->schema, since_us, max_samples, *out, *n);
        if (rc != SQLITE_OK) {
            snprintf(err, errlen, "cannot read the applied ledger: %s", sqlite3_errmsg(db));
            store_repl_origins_free(*out, *n);
            *out = NULL;
            *n = 0;
            *total = 0;
            ret = -1;
        } else {
            for (size_t i = 0; i < *n; i++)
                if (!(*out)[i].origin)
                    (*out)[i].origin = xstrdup("");
            if (ledger_end)
                *ledger_end = end;
        }
        if (!sqlite3_get_autocommit(db))
            sq_exec(db, "COMMIT", NULL, 0);
    }
    pthread_mutex_unlock(&s->rlock);
    return ret;
}

int64_t sq_ledger_each(store *base, int64_t after, size_t max,
                       int (*fn)(const store_ledger_row *row, void *ud), void *ud, char *err,
                       size_t errlen)
{
    sq_store *s = sq(base);
    if (s->schema < 2 || max == 0)
        return 0;
    char sql[192];
    snprintf(sql, sizeof sql,
             "SELECT rowid, origin, message_id, applied_at FROM applied WHERE rowid > ?1%s "
             "ORDER BY rowid LIMIT ?2",
             applies_only(s->schema));
    sqlite3_stmt *st;
    if (sq_oneoff_begin(s, sql, &st, err, errlen) < 0)
        return sq_oneoff_end(s, st, SQLITE_OK, -1, err, errlen);
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, max > INT64_MAX ? INT64_MAX : (int64_t)max);
    int64_t n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *origin = (const char *)sqlite3_column_text(st, 1);
        store_ledger_row row = {.pos = sqlite3_column_int64(st, 0),
                                .origin = origin ? origin : "",
                                .lag_us = lag_of(st, 2, 3)};
        n++;
        if (fn(&row, ud) != 0)
            break;
    }
    return sq_oneoff_end(s, st, rc, 0, err, errlen) < 0 ? -1 : n;
}
