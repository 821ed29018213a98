/* sqlite_writer: the SQLite backend's write side: the bounded queue that
 * store_submit_unit fills, the operations other threads leave for the next
 * transaction (counters, outbox confirms, stuck rows), the writer thread
 * that commits units in batches (group commit, retries, callbacks after the
 * COMMIT) and retention between batches. */
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
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 1000
#define CLOSE_MAX_FAILURES 10 /* at shutdown a dead disk must not hang us forever */

#define QUEUE_INITIAL 1024

/* Frees what a unit owns (store_unit). */
void sq_unit_free(store_unit *u)
{
    record_free(u->rec);
    repl_msg_free(u->outbox);
    free(u->applied_id);
    memset(u, 0, sizeof *u);
}

/* ---- intake ---- */

/* A unit that is not queued: its owner learns at once, and it is freed. */
static int refuse(store_unit *u, store_done_fn done, void *ud)
{
    if (done)
        done(ud, -1);
    sq_unit_free(u);
    return -1;
}

/* What a unit holds in memory while it waits: its record and its outbox
 * message, every allocation by capacity (record_mem). Counting only the
 * bodies and the headers' JSON, as this did first, let a queue bounded at
 * 64 MiB hold 190 MiB of records of small answers (about 4.5 KiB each:
 * the record, its header blocks, its buffers' spare room). */
static size_t unit_bytes(const store_unit *u)
{
    return (u->rec ? record_mem(u->rec) : 0) + (u->outbox ? repl_msg_mem(u->outbox) : 0);
}

/* No room for a unit of ub bytes: the queue is at queue_max records, or
 * its bytes would pass queue_max_bytes (an empty queue always takes one). */
static bool full(const sq_store *s, size_t ub)
{
    return s->count == s->cap || (s->max_bytes && s->count && s->bytes + ub > s->max_bytes);
}

int sq_submit(store *base, const store_unit *unit, store_done_fn done, void *ud)
{
    sq_store *s = sq(base);
    store_unit u = *unit; /* ours from here on */
    record *r = u.rec;
    if (s->opt.read_only)
        return refuse(&u, done, ud);
    /* The headers' JSON is encoded here, on the submitting thread, unless
     * the caller already did (for its log line): the writer is one thread
     * for every worker, so what can be done before the queue is done in
     * parallel (about a sixth of the writer's time per row, perf). */
    if (u.rec_row && !r->headers_json[0].len)
        record_cache_headers_json(r);
    size_t ub = unit_bytes(&u);
    pthread_mutex_lock(&s->mu);
    if (full(s, ub) && !s->closing) {
        if (s->opt.drop_when_full) {
            s->st.dropped++;
            pthread_mutex_unlock(&s->mu);
            return refuse(&u, done, ud);
        }
        s->st.blocked++;
        while (full(s, ub) && !s->closing)
            pthread_cond_wait(&s->room, &s->mu);
    }
    if (s->closing) {
        s->st.dropped++;
        pthread_mutex_unlock(&s->mu);
        return refuse(&u, done, ud);
    }
    if (s->count == s->ring_alloc) {
        /* Grow (in order) instead of allocating queue_max slots up front. */
        size_t n = s->ring_alloc ? s->ring_alloc * 2 : QUEUE_INITIAL;
        if (n > s->cap)
            n = s->cap;
        sq_item *nr = xmalloc(n * sizeof *nr);
        for (size_t i = 0; i < s->count; i++)
            nr[i] = s->ring[(s->head + i) % s->ring_alloc];
        free(s->ring);
        s->ring = nr;
        s->ring_alloc = n;
        s->head = 0;
    }
    sq_item *it = &s->ring[(s->head + s->count) % s->ring_alloc];
    it->u = u;
    it->done = done;
    it->ud = ud;
    it->t_us = util_mono_us();
    it->bytes = ub;
    s->bytes += ub;
    s->count++;
    s->st.submitted++;
    if (done)
        s->waiting++;
    /* While the writer gathers a batch, waking it for every record would
     * cost a context switch each: it wakes when the window ends or the
     * batch is full, or at once for a record someone waits for. */
    if (!s->gathering || done || s->count >= (s->opt.batch_max ? s->opt.batch_max : 1))
        pthread_cond_signal(&s->nonempty);
    /* Two committed units freed per unit submitted: the parked ones cannot
     * pile up while units keep coming. */
    store_unit gone[2];
    size_t ngone = 0;
    while (ngone < 2 && s->nparked)
        gone[ngone++] = s->parked[--s->nparked];
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < ngone; i++)
        sq_unit_free(&gone[i]);
    return 0;
}

void sq_get_stats(store *base, store_stats *out)
{
    sq_store *s = sq(base);
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->queued = s->count + s->inflight;
    out->queued_bytes = s->bytes;
    pthread_mutex_unlock(&s->mu);
    hist_read(&s->commit_time, &out->commit_time);
    hist_read(&s->latency, &out->latency);
}

void store_sqlite_test_pause(store *base, bool paused)
{
    sq_store *s = sq(base);
    pthread_mutex_lock(&s->mu);
    s->paused = paused;
    pthread_cond_broadcast(&s->nonempty);
    pthread_mutex_unlock(&s->mu);
}

/* Counter updates and outbox confirms come from other threads (the
 * publisher, the replicator's workers) that must never wait for a disk: they
 * are queued under mu, and the writer applies them in its next transaction
 * (a transaction of their own when no records are waiting). */
void sq_counter(store *base, const char *name, int64_t value, bool set)
{
    sq_store *s = sq(base);
    if (s->opt.read_only || !name)
        return;
    pthread_mutex_lock(&s->mu);
    sq_ops *o = &s->ops;
    /* One pending op per name, so a writer held up by a locked file does not
     * pile up one entry per replicated message: set then add is a set of the
     * sum, add then add an add of the sum, anything then set a set. */
    size_t i = 0;
    while (i < o->len && strcmp(o->v[i].name, name) != 0)
        i++;
    if (i < o->len) {
        o->v[i].value = set ? value : o->v[i].value + value;
        o->v[i].set = set || o->v[i].set;
    } else {
        if (o->len == o->cap) {
            o->cap = o->cap ? o->cap * 2 : 8;
            o->v = xrealloc(o->v, o->cap * sizeof *o->v);
        }
        o->v[o->len].name = xstrdup(name);
        o->v[o->len].value = value;
        o->v[o->len].set = set;
        o->len++;
    }
    pthread_cond_signal(&s->nonempty);
    pthread_mutex_unlock(&s->mu);
}

void sq_outbox_confirmed(store *base, int64_t upto, const char *last_id)
{
    sq_store *s = sq(base);
    if (s->opt.read_only || upto <= 0)
        return;
    int64_t now = util_now_us();
    pthread_mutex_lock(&s->mu);
    sq_ops *o = &s->ops;
    if (upto > o->confirm_upto)
        o->confirm_upto = upto;
    o->confirm_us = now;
    snprintf(o->confirm_id, sizeof o->confirm_id, "%s", last_id ? last_id : "");
    pthread_cond_signal(&s->nonempty);
    pthread_mutex_unlock(&s->mu);
}

/* Queues a stuck-table change, replacing any pending one for the same
 * message (the latest state is the one that matters). */
static void stuck_op(sq_store *s, bool set, const store_stuck *row, const char *message_id)
{
    if (s->opt.read_only || !message_id || !*message_id)
        return;
    pthread_mutex_lock(&s->mu);
    sq_ops *o = &s->ops;
    size_t i = 0;
    while (i < o->slen && strcmp(o->sv[i].row.message_id, message_id) != 0)
        i++;
    if (i == o->slen) {
        if (o->slen == o->scap) {
            o->scap = o->scap ? o->scap * 2 : 8;
            o->sv = xrealloc(o->sv, o->scap * sizeof *o->sv);
        }
        memset(&o->sv[i], 0, sizeof o->sv[i]);
        o->slen++;
    } else {
        store_stuck_row_free(&o->sv[i].row);
    }
    sq_stuck_op *op = &o->sv[i];
    op->set = set;
    if (set) {
        op->row = *row;
        op->row.origin = row->origin ? xstrdup(row->origin) : NULL;
        op->row.method = row->method ? xstrdup(row->method) : NULL;
        op->row.target = row->target ? xstrdup(row->target) : NULL;
        op->row.last_answer = row->last_answer ? xstrdup(row->last_answer) : NULL;
    }
    snprintf(op->row.message_id, sizeof op->row.message_id, "%s", message_id);
    pthread_cond_signal(&s->nonempty);
    pthread_mutex_unlock(&s->mu);
}

void sq_stuck_set(store *base, const store_stuck *row)
{
    stuck_op(sq(base), true, row, row->message_id);
}

void sq_stuck_clear(store *base, const char *message_id)
{
    stuck_op(sq(base), false, NULL, message_id);
}

int sq_outbox_wait(store *base, int64_t after_seq, int timeout_ms)
{
    sq_store *s = sq(base);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (timeout_ms > 0) {
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&s->mu);
    s->outbox_waiters++;
    while (s->outbox_seq <= after_seq && !s->closing && timeout_ms > 0)
        if (pthread_cond_timedwait(&s->outbox, &s->mu, &ts) == ETIMEDOUT)
            break;
    int ret = s->outbox_seq > after_seq;
    if (--s->outbox_waiters == 0 && s->closing)
        pthread_cond_broadcast(&s->outbox);
    pthread_mutex_unlock(&s->mu);
    return ret;
}

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
static int apply_stuck_ops(sq_store *s, const sq_ops *o, char *e, size_t elen)
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

static int apply_ops(sq_store *s, const sq_ops *o, char *e, size_t elen)
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
static int try_batch(sq_store *s, sq_item *b, size_t n, const sq_ops *ops, size_t *bad,
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

/* Commits b[0..n) and ops, then tells each record's owner (in submit order)
 * and frees the records; retries until it succeeds (see store.h: a failed
 * commit is never a reason to lose captures). */
/* At most this many committed records wait for the submitters (a few MiB
 * at most; two store batches). */
#define PARKED_MAX 1024

/* Hands committed units to the submitters to free (see `parked`); with
 * no submitters coming (too many parked), the writer frees them itself. */
static void park_units(sq_store *s, sq_item *b, size_t n)
{
    pthread_mutex_lock(&s->mu);
    assert(s->nparked <= PARKED_MAX);
    size_t room = PARKED_MAX - s->nparked; /* nparked never passes PARKED_MAX */
    size_t keep = n < room ? n : room;
    if (keep && s->nparked + keep > s->parked_cap) {
        s->parked_cap = s->parked_cap ? s->parked_cap * 2 : 1024;
        while (s->parked_cap < s->nparked + keep)
            s->parked_cap *= 2;
        s->parked = xrealloc(s->parked, s->parked_cap * sizeof *s->parked);
    }
    for (size_t i = 0; i < keep; i++)
        s->parked[s->nparked++] = b[i].u;
    pthread_mutex_unlock(&s->mu);
    for (size_t i = keep; i < n; i++)
        sq_unit_free(&b[i].u);
}

static void write_batch(sq_store *s, sq_item *b, size_t n, sq_ops *ops)
{
    unsigned backoff = BACKOFF_MIN_MS;
    unsigned failures = 0;
    int64_t inserted = 0, max_seq = 0;
    bool committed = false;
    while (n || sq_ops_pending(ops)) {
        char e[256] = "";
        size_t bad = SIZE_MAX;
        int64_t t0 = util_mono_us();
        int rc = try_batch(s, b, n, ops, &bad, &inserted, &max_seq, e, sizeof e);
        if (rc == SQLITE_OK) {
            committed = true;
            hist_observe_us(&s->commit_time, util_mono_us() - t0);
            break;
        }
        if (sqlite3_get_autocommit(s->db) == 0)
            sq_exec(s->db, "ROLLBACK", NULL, 0);
        if (bad == n) {
            fprintf(stderr, "restspy: store: cannot update replication counters (dropped): %s\n",
                    e);
            sq_ops_free(ops);
            pthread_mutex_lock(&s->mu);
            s->st.errors++;
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        if (bad != SIZE_MAX) {
            fprintf(stderr, "restspy: store: cannot store request %s (dropped): %s\n",
                    b[bad].u.rec->id, e);
            sq_item it = b[bad];
            memmove(b + bad, b + bad + 1, (n - bad - 1) * sizeof *b);
            n--;
            pthread_mutex_lock(&s->mu);
            s->st.errors++;
            s->st.dropped++;
            assert(s->inflight > 0); /* the refused unit was taken by the writer */
            s->inflight--;
            pthread_mutex_unlock(&s->mu);
            refuse(&it.u, it.done, it.ud);
            continue;
        }
        pthread_mutex_lock(&s->mu);
        s->st.errors++;
        bool closing = s->closing;
        pthread_mutex_unlock(&s->mu);
        failures++;
        if (failures == 1 || failures % 10 == 0)
            fprintf(stderr, "restspy: store: commit of %zu requests%s failed (%s), retrying\n", n,
                    sq_ops_pending(ops) ? " and replication counters" : "", e);
        if (closing && failures >= CLOSE_MAX_FAILURES) {
            fprintf(stderr, "restspy: store: giving up on %zu requests at shutdown: %s\n", n, e);
            sq_ops_free(ops);
            pthread_mutex_lock(&s->mu);
            s->st.dropped += n;
            s->inflight = 0;
            pthread_mutex_unlock(&s->mu);
            for (size_t i = 0; i < n; i++)
                refuse(&b[i].u, b[i].done, b[i].ud);
            return;
        }
        util_sleep_ms(backoff);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    sq_ops_free(ops);
    if (committed)
        s->rows += inserted;
    pthread_mutex_lock(&s->mu);
    if (committed && n) {
        s->st.written += n;
        s->st.batches++;
    }
    if (committed && max_seq > s->outbox_seq) {
        s->outbox_seq = max_seq;
        pthread_cond_broadcast(&s->outbox);
    }
    s->inflight = 0;
    pthread_mutex_unlock(&s->mu);
    if (committed) {
        int64_t now = util_mono_us();
        for (size_t i = 0; i < n; i++)
            hist_observe_us(&s->latency, now - b[i].t_us);
    }
    /* After the commit, in submit order: a sync-durability proxy releases
     * each response only now that its outbox row is on disk. */
    for (size_t i = 0; i < n; i++)
        if (b[i].done)
            b[i].done(b[i].ud, 0);
    park_units(s, b, n);
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
    pthread_mutex_lock(&s->mu);
    if (n < 0)
        s->st.errors++;
    else if (requests)
        s->st.pruned += (uint64_t)n;
    pthread_mutex_unlock(&s->mu);
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
    static const unsigned char zero[10];
    char first[UUID7_STR_LEN + 1];
    uuid7_derive(cutoff_us / 1000, zero, first);
    memcpy(first + 14, "0000-0000-000000000000", 22);
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

void *sq_writer_main(void *arg)
{
    sq_store *s = arg;
    size_t bmax = s->opt.batch_max ? (size_t)s->opt.batch_max : 1;
    if (bmax > s->cap)
        bmax = s->cap;
    sq_item *batch = xmalloc(bmax * sizeof *batch);
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (s->count == 0 && s->nparked) {
            /* Idle: no submitter will free the parked records soon. */
            store_unit *v = s->parked;
            size_t nv = s->nparked;
            s->parked = NULL;
            s->nparked = s->parked_cap = 0;
            pthread_mutex_unlock(&s->mu);
            for (size_t i = 0; i < nv; i++)
                sq_unit_free(&v[i]);
            free(v);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        while (!s->closing && (s->count == 0 || s->paused) && !sq_ops_pending(&s->ops) &&
               !prune_due(s, util_mono_us())) {
            int64_t t = prune_wake_at(s);
            if (t != INT64_MAX) {
                /* Wake up for retention even when no traffic arrives. */
                struct timespec ts;
                ts.tv_sec = (time_t)(t / 1000000);
                ts.tv_nsec = (long)(t % 1000000) * 1000;
                pthread_cond_timedwait(&s->nonempty, &s->mu, &ts);
            } else {
                pthread_cond_wait(&s->nonempty, &s->mu);
            }
        }
        if (s->closing && s->count == 0 && !sq_ops_pending(&s->ops))
            break;
        if (s->opt.commit_delay_us && !s->closing && !s->paused && s->count < bmax && !s->waiting) {
            /* Group commit: one transaction costs about the same for 1 record
             * as for 100, so under load a short wait makes batches (and
             * throughput) much larger. Not when a submitter waits for the
             * commit (a held answer, a replicator's ack): its batch is what
             * queued while the previous transaction was written. */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t ns = (int64_t)ts.tv_nsec + (int64_t)s->opt.commit_delay_us * 1000;
            ts.tv_sec += (time_t)(ns / 1000000000);
            ts.tv_nsec = (long)(ns % 1000000000);
            s->gathering = true;
            while (!s->closing && s->count < bmax && !s->waiting)
                if (pthread_cond_timedwait(&s->nonempty, &s->mu, &ts) == ETIMEDOUT)
                    break;
            s->gathering = false;
        }
        size_t n = 0;
        if (!s->paused) {
            while (n < bmax && s->count) {
                if (s->ring[s->head].done) {
                    assert(s->waiting > 0); /* counts the queued units with a callback */
                    s->waiting--;
                }
                batch[n++] = s->ring[s->head];
                s->bytes -= s->ring[s->head].bytes;
                s->head = (s->head + 1) % s->ring_alloc;
                s->count--;
            }
            s->inflight = n;
            if (n)
                pthread_cond_broadcast(&s->room);
        }
        sq_ops ops = s->ops; /* the next transaction takes every pending op */
        memset(&s->ops, 0, sizeof s->ops);
        pthread_mutex_unlock(&s->mu);
        if (n || sq_ops_pending(&ops))
            write_batch(s, batch, n, &ops);
        sq_ops_free(&ops);
        if (prune_due(s, util_mono_us()))
            prune_step(s);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    free(batch);
    /* Closing: finish retention (one more age pass, then whatever chunks are
     * left), still one short transaction per chunk; a failure holds it off
     * into the future, which ends the loop. */
    s->next_age_prune_mono_us = 0;
    while (prune_due(s, util_mono_us()))
        prune_step(s);
    return NULL;
}
