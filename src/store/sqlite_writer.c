/* sqlite_writer: the SQLite backend's write side: what one transaction of
 * the writer thread does (a batch of units and the pending operations, in
 * SQL) and retention between batches, plugged into the queue and writer
 * thread all backends share (store/writeq.h). */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/util.h"
#include "base/uuid7.h"
#include "store/sqlite_internal.h"
#include "store/store_sqlite.h"

#define PRUNE_CHUNK 1000
#define AGE_PRUNE_EVERY_US 1000000 /* age retention runs at most once a second */

/* ---- writer ---- */

int sq_bind_text(sqlite3_stmt *st, int col, const char *v)
{
    if (!v)
        return sqlite3_bind_null(st, col + 1);
    return sqlite3_bind_text(st, col + 1, v, -1, SQLITE_STATIC);
}

static int bind_body(sqlite3_stmt *st, int col, const buf *b)
{
    /* An empty body is a zero-length BLOB, never NULL (NULL would read back
     * as "unknown"). */
    if (!b->len)
        return sqlite3_bind_zeroblob(st, col + 1, 0);
    return sqlite3_bind_blob64(st, col + 1, b->data, b->len, SQLITE_STATIC);
}

#define B(x)                                                                                       \
    do {                                                                                           \
        int brc_ = (x);                                                                            \
        if (rc == SQLITE_OK)                                                                       \
            rc = brc_;                                                                             \
    } while (0)

/* Binds r to the INSERT. The statement refers to r's memory and to reqh/resph
 * (SQLITE_STATIC), so they must stay unchanged until the step is done. */
static int bind_record(sq_store *s, const record *r)
{
    sqlite3_stmt *st = s->ins;
    buf_reset(&s->reqh);
    buf_reset(&s->resph);
    record_append_headers_json(r, 0, &s->reqh);
    record_append_headers_json(r, 1, &s->resph);
    int rc = SQLITE_OK;
    B(sqlite3_bind_text(st, C_ID + 1, r->id, -1, SQLITE_STATIC));
    B(sq_bind_text(st, C_NODE, r->node));
    B(sqlite3_bind_int64(st, C_STARTED_AT + 1, r->started_at_us));
    B(sqlite3_bind_int64(st, C_DURATION + 1, r->duration_us));
    B(sqlite3_bind_int64(st, C_UPSTREAM + 1, r->upstream_us < 0 ? -1 : r->upstream_us));
    B(sq_bind_text(st, C_CLIENT, r->client_addr));
    B(sq_bind_text(st, C_METHOD, r->method));
    B(sq_bind_text(st, C_SCHEME, r->scheme));
    B(sq_bind_text(st, C_HOST, r->host));
    B(sq_bind_text(st, C_PATH, r->path));
    B(sq_bind_text(st, C_QUERY, r->query));
    B(sqlite3_bind_text64(st, C_REQ_HEADERS + 1, s->reqh.data ? s->reqh.data : "[]",
                          s->reqh.data ? s->reqh.len : 2, SQLITE_STATIC, SQLITE_UTF8));
    B(bind_body(st, C_REQ_BODY, &r->req_body));
    B(sqlite3_bind_int64(st, C_REQ_BODY_SIZE + 1, (sqlite3_int64)r->req_body_size));
    B(sqlite3_bind_int(st, C_REQ_TRUNC + 1, r->req_truncated));
    B(sqlite3_bind_int(st, C_STATUS + 1, r->status));
    B(sqlite3_bind_text64(st, C_RESP_HEADERS + 1, s->resph.data ? s->resph.data : "[]",
                          s->resph.data ? s->resph.len : 2, SQLITE_STATIC, SQLITE_UTF8));
    B(bind_body(st, C_RESP_BODY, &r->resp_body));
    B(sqlite3_bind_int64(st, C_RESP_BODY_SIZE + 1, (sqlite3_int64)r->resp_body_size));
    B(sqlite3_bind_int(st, C_RESP_TRUNC + 1, r->resp_truncated));
    B(sq_bind_text(st, C_RULE, r->rule));
    B(sq_bind_text(st, C_ORIGIN, r->origin));
    B(sq_bind_text(st, C_ERROR, r->error));
    B(sq_bind_text(st, C_REPLICATION, r->replication));
    B(sq_bind_text(st, C_REQ_ENCODING, r->req_encoding));
    B(sq_bind_text(st, C_REQ_BODY_NOTE, r->req_body_note));
    B(sq_bind_text(st, C_RESP_ENCODING, r->resp_encoding));
    B(sq_bind_text(st, C_RESP_BODY_NOTE, r->resp_body_note));
    return rc;
}

/* Binds m to the outbox INSERT (SQLITE_STATIC: m must not change until the
 * step is done). A missing required field binds NULL, which the NOT NULL
 * constraints turn into a refusal of the record (see record_error). */
static int bind_outbox(sqlite3_stmt *st, const repl_msg *m, int64_t now_us)
{
    int rc = SQLITE_OK;
    B(sqlite3_bind_text(st, 1, m->id, -1, SQLITE_STATIC));
    B(sqlite3_bind_int64(st, 2, now_us));
    B(sqlite3_bind_int64(st, 3, m->timestamp));
    B(sq_bind_text(st, 3, m->origin));
    B(sq_bind_text(st, 4, m->method));
    B(sq_bind_text(st, 5, m->target));
    B(sq_bind_text(st, 6, m->headers));
    B(sq_bind_text(st, 7, m->content_type));
    B(sq_bind_text(st, 8, m->signature));
    B(sq_bind_text(st, 9, m->routing_key));
    B(bind_body(st, 10, &m->body));
    B(sq_bind_text(st, 11, m->origin_status));
    B(sq_bind_text(st, 12, m->origin_digest));
    B(m->origin_body.len ? bind_body(st, 13, &m->origin_body) : sqlite3_bind_null(st, 14));
    return rc;
}

#undef B

/* Steps a bound writer statement to completion and makes it ready for the
 * next row. *changes (may be NULL) gets the rows it changed. */
int sq_run(sq_store *s, sqlite3_stmt *st, int64_t *changes, char *e, size_t elen)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
        if (changes)
            *changes = sqlite3_changes(s->db);
    } else {
        snprintf(e, elen, "%s", sqlite3_errmsg(s->db));
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* Errors caused by one record's content: retrying cannot help, so that
 * record alone is set aside. Everything else (busy, I/O, disk full) is
 * retried with the whole batch. */
static bool record_error(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_TOOBIG:
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
        return true;
    default:
        return false;
    }
}

/* Writes every row of one unit: its request, its outbox message (*max_seq
 * raised to its seq), its ledger entry. The ledger's origin is r->node: a
 * replicator's capture carries the origin node there. */
static int insert_unit(sq_store *s, const store_unit *u, int64_t now_us, int64_t *inserted,
                       int64_t *max_seq, char *e, size_t elen)
{
    const record *r = u->rec;
    int64_t changes = 0;
    int rc = SQLITE_OK;
    if (u->rec_row) {
        rc = bind_record(s, r);
        if (rc == SQLITE_OK)
            rc = sq_run(s, s->ins, &changes, e, elen);
        else
            snprintf(e, elen, "%s", sqlite3_errstr(rc));
        if (rc != SQLITE_OK)
            return rc;
    }
    *inserted += changes;
    if (u->outbox) {
        rc = bind_outbox(s->ins_outbox, u->outbox, now_us);
        if (rc == SQLITE_OK)
            rc = sq_run(s, s->ins_outbox, NULL, e, elen);
        else
            snprintf(e, elen, "%s", sqlite3_errstr(rc));
        if (rc != SQLITE_OK)
            return rc;
        int64_t seq = sqlite3_last_insert_rowid(s->db);
        if (seq > *max_seq)
            *max_seq = seq;
    }
    if (u->applied_id) {
        sqlite3_stmt *st = s->ins_applied;
        sqlite3_bind_text(st, 1, u->applied_id, -1, SQLITE_STATIC);
        sq_bind_text(st, 1, r->node);
        sqlite3_bind_int64(st, 3, now_us);
        sqlite3_bind_int(st, 4, r->status);
        sq_bind_text(st, 4, r->replication); /* the outcome (store.h) */
        rc = sq_run(s, st, NULL, e, elen);
        /* Applied: no longer stuck, in the same transaction. */
        if (rc == SQLITE_OK) {
            sqlite3_bind_text(s->stuck_del, 1, u->applied_id, -1, SQLITE_STATIC);
            rc = sq_run(s, s->stuck_del, NULL, e, elen);
        }
    }
    return rc;
}

/* text NULL: the integer value; else the text (last_confirmed_id). */
static int counter_op(sq_store *s, const char *name, const char *text, int64_t value, bool set,
                      char *e, size_t elen)
{
    sqlite3_stmt *st = s->counter;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (text)
        sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, 2, value);
    sqlite3_bind_int(st, 3, set);
    return sq_run(s, st, NULL, e, elen);
}

/* The stuck-table changes of o. They run before the batch's records, so
 * that a record's ledger row (which clears its stuck row) has the last
 * word over a failure noted just before its apply. */
static int apply_stuck_ops(sq_store *s, const writeq_ops *o, char *e, size_t elen)
{
    int rc = SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && i < o->slen; i++) {
        const store_stuck *row = &o->sv[i].row;
        sqlite3_stmt *st = o->sv[i].set ? s->stuck_set : s->stuck_del;
        sqlite3_bind_text(st, 1, row->message_id, -1, SQLITE_STATIC);
        if (o->sv[i].set) {
            sq_bind_text(st, 1, row->origin);
            sq_bind_text(st, 2, row->method);
            sq_bind_text(st, 3, row->target);
            sqlite3_bind_int64(st, 5, row->first_failed_us);
            sqlite3_bind_int64(st, 6, row->last_failed_us);
            sqlite3_bind_int64(st, 7, row->attempts);
            sq_bind_text(st, 7, row->last_answer);
        }
        rc = sq_run(s, st, NULL, e, elen);
    }
    return rc;
}

static int apply_ops(sq_store *s, const writeq_ops *o, char *e, size_t elen)
{
    int rc = SQLITE_OK;
    if (o->confirm_upto > 0) {
        int64_t deleted = 0;
        sqlite3_bind_int64(s->del_outbox, 1, o->confirm_upto);
        rc = sq_run(s, s->del_outbox, &deleted, e, elen);
        if (rc == SQLITE_OK)
            rc = counter_op(s, "published", NULL, deleted, false, e, elen);
        if (rc == SQLITE_OK)
            rc = counter_op(s, "last_confirmed_us", NULL, o->confirm_us, true, e, elen);
        if (rc == SQLITE_OK && o->confirm_id[0])
            rc = counter_op(s, "last_confirmed_id", o->confirm_id, 0, true, e, elen);
    }
    for (size_t i = 0; rc == SQLITE_OK && i < o->len; i++)
        rc = counter_op(s, o->v[i].name, NULL, o->v[i].value, o->v[i].set, e, elen);
    return rc;
}

/* One attempt at committing b[0..n) and ops. SQLITE_OK, or an error with
 * *bad set to the index of the offending record when it is a record_error (n
 * when the ops are at fault). The caller rolls back. *inserted: request rows
 * actually added (duplicates are ignored); *max_seq: the highest outbox seq
 * written, 0 for none. */
static int try_batch(sq_store *s, writeq_item *b, size_t n, const writeq_ops *ops, size_t *bad,
                     int64_t *inserted, int64_t *max_seq, char *e, size_t elen)
{
    *inserted = 0;
    *max_seq = 0;
    int rc = sq_exec(s->db, "BEGIN IMMEDIATE", e, elen);
    if (rc != SQLITE_OK)
        return rc;
    int64_t now = util_now_us();
    rc = apply_stuck_ops(s, ops, e, elen);
    if (rc == SQLITE_OK)
        rc = sq_receipts_write(s, ops, e, elen);
    if (rc != SQLITE_OK) {
        if (record_error(rc))
            *bad = n;
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        rc = insert_unit(s, &b[i].u, now, inserted, max_seq, e, elen);
        if (rc != SQLITE_OK) {
            if (record_error(rc))
                *bad = i;
            return rc;
        }
    }
    rc = apply_ops(s, ops, e, elen);
    if (rc != SQLITE_OK) {
        if (record_error(rc))
            *bad = n;
        return rc;
    }
    return sq_exec(s->db, "COMMIT", e, elen);
}

/* writeq's commit hook: try_batch, rolled back when it fails; the rows it
 * added counted for max_rows once committed. */
static int commit_batch(void *ctx, writeq_item *b, size_t n, const writeq_ops *ops, size_t *bad,
                        int64_t *max_seq, char *e, size_t elen)
{
    sq_store *s = ctx;
    int64_t inserted = 0;
    if (try_batch(s, b, n, ops, bad, &inserted, max_seq, e, elen) != SQLITE_OK) {
        if (sqlite3_get_autocommit(s->db) == 0)
            sq_exec(s->db, "ROLLBACK", NULL, 0);
        return -1;
    }
    s->rows += inserted;
    return 0;
}

static bool rows_excess(const sq_store *s)
{
    return s->opt.max_rows && s->rows > (int64_t)s->opt.max_rows;
}

/* Monotonic time at which retention next has work, INT64_MAX for never. A
 * failed delete (the file is locked by another process) holds retention off
 * for a while instead of spinning. */
static int64_t prune_wake_at(const sq_store *s)
{
    int64_t t = INT64_MAX;
    if (rows_excess(s))
        t = s->rows_hold_until_mono_us;
    if (s->opt.max_age_ms && s->next_age_prune_mono_us < t)
        t = s->next_age_prune_mono_us;
    if (s->opt.ledger_max_age_ms && s->next_ledger_prune_mono_us < t)
        t = s->next_ledger_prune_mono_us;
    return t;
}

static bool prune_due(const sq_store *s, int64_t now_mono)
{
    return now_mono >= prune_wake_at(s);
}

/* Runs one DELETE chunk in its own (short) transaction, its parameter ?1
 * the text text or, when text is NULL, the integer arg; rows deleted or -1.
 * Deleted requests count in the stats' pruned; ledger rows do not. */
static int64_t prune_chunk_of(sq_store *s, const char *sql, int64_t arg, const char *text,
                              bool requests)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "restspy: store: retention: %s\n", sqlite3_errmsg(s->db));
        return -1;
    }
    if (text)
        sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, 1, arg);
    int rc = sqlite3_step(st);
    int64_t n = rc == SQLITE_DONE ? sqlite3_changes(s->db) : -1;
    if (n < 0)
        fprintf(stderr, "restspy: store: retention: %s\n", sqlite3_errmsg(s->db));
    sqlite3_finalize(st);
    pthread_mutex_lock(&s->w.q.mu);
    if (n < 0)
        s->w.q.st.errors++;
    else if (requests)
        s->w.q.st.pruned += (uint64_t)n;
    pthread_mutex_unlock(&s->w.q.mu);
    return n;
}

static int64_t prune_chunk(sq_store *s, const char *sql, int64_t arg)
{
    return prune_chunk_of(s, sql, arg, NULL, true);
}

/* Ledger retention (ledger_max_age): one chunk of the replicator's ledger
 * (applied and skipped writes, by applied_at) and one of the apply
 * receipts (by message_id: a UUIDv7 begins with its capture's time, so the
 * primary key orders them by age). Returns true when a chunk was full. */
static bool prune_ledger(sq_store *s)
{
    int64_t cutoff_us = util_now_us() - (int64_t)s->opt.ledger_max_age_ms * 1000;
    int64_t a = prune_chunk_of(s,
                               "DELETE FROM applied WHERE rowid IN (SELECT rowid FROM applied "
                               "WHERE applied_at < ?1 ORDER BY applied_at LIMIT 1000)",
                               cutoff_us, NULL, false);
    /* The smallest id of the cutoff's millisecond: every id before it is older. */
    char first[UUID7_STR_LEN + 1];
    uuid7_floor(cutoff_us / 1000, first);
    int64_t r = prune_chunk_of(s,
                               "DELETE FROM receipts WHERE message_id IN (SELECT message_id FROM "
                               "receipts WHERE message_id < ?1 ORDER BY message_id LIMIT 1000)",
                               0, first, false);
    return a == PRUNE_CHUNK || r == PRUNE_CHUNK;
}

/* One step of retention: at most one chunk per kind, so new batches get in
 * between chunks. Rows are deleted oldest first by started_at. */
static void prune_step(sq_store *s)
{
    int64_t now_mono = util_mono_us();
    if (s->opt.max_age_ms && now_mono >= s->next_age_prune_mono_us) {
        int64_t cutoff = util_now_us() - (int64_t)s->opt.max_age_ms * 1000;
        int64_t n = prune_chunk(s,
                                "DELETE FROM requests WHERE rowid IN (SELECT rowid FROM requests "
                                "WHERE started_at < ?1 ORDER BY started_at LIMIT 1000)",
                                cutoff);
        if (n > 0)
            s->rows -= n;
        /* A full chunk means there is more: go on right after the next batch. */
        s->next_age_prune_mono_us = n == PRUNE_CHUNK ? now_mono : now_mono + AGE_PRUNE_EVERY_US;
    }
    if (s->opt.ledger_max_age_ms && now_mono >= s->next_ledger_prune_mono_us)
        s->next_ledger_prune_mono_us = prune_ledger(s) ? now_mono : now_mono + AGE_PRUNE_EVERY_US;
    if (rows_excess(s) && now_mono >= s->rows_hold_until_mono_us) {
        int64_t excess = s->rows - (int64_t)s->opt.max_rows;
        int64_t n = prune_chunk(s,
                                "DELETE FROM requests WHERE rowid IN (SELECT rowid FROM requests "
                                "ORDER BY started_at LIMIT ?1)",
                                excess > PRUNE_CHUNK ? PRUNE_CHUNK : excess);
        if (n > 0)
            s->rows -= n;
        else if (n == 0) /* the table is smaller than we thought (deleted by hand) */
            s->rows = (int64_t)s->opt.max_rows;
        s->rows_hold_until_mono_us = n < 0 ? now_mono + AGE_PRUNE_EVERY_US : 0;
    }
}

/* Closing: finishes retention (one more age pass, then whatever chunks
 * are left), still one short transaction per chunk; a failure holds it off
 * into the future, which ends the loop. */
static void prune_finish(void *ctx)
{
    sq_store *s = ctx;
    s->next_age_prune_mono_us = 0;
    while (prune_due(s, util_mono_us()))
        prune_step(s);
}

static int64_t prune_wake_hook(void *ctx)
{
    return prune_wake_at(ctx);
}

static void prune_step_hook(void *ctx)
{
    prune_step(ctx);
}

const writeq_hooks sq_writeq_hooks = {
    .commit = commit_batch,
    .prune_wake_at = prune_wake_hook,
    .prune_step = prune_step_hook,
    .prune_finish = prune_finish,
};
