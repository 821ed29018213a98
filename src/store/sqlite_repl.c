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
    pthread_mutex_lock(&s->mu);
    bool started = s->started;
    pthread_mutex_unlock(&s->mu);
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
        const char *id = (const char *)sqlite3_column_text(st, 0);
        int64_t ms = id ? uuid7_time_ms(id) : -1;
        if (ms < 0)
            continue; /* not a restspy id: no origin time */
        int64_t lag = sqlite3_column_int64(st, 1) - ms * 1000;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            v = xrealloc(v, cap * sizeof *v);
        }
        v[n++] = lag > 0 ? lag : 0;
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
