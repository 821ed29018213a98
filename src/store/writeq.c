/* writeq: the write side every store backend shares: see writeq.h. The
 * queue logic was sqlite_writer.c's; the SQL of a transaction and retention
 * stay with each backend (writeq_hooks). */
#include "store/writeq.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/util.h"

#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 1000
#define CLOSE_MAX_FAILURES 10 /* at shutdown a dead disk must not hang us forever */

#define QUEUE_INITIAL 1024

static writeq *wq(store *base)
{
    return &((writeq_store *)base)->q;
}

/* Frees what a unit owns (store_unit). */
void writeq_unit_free(store_unit *u)
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
    writeq_unit_free(u);
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
static bool full(const writeq *s, size_t ub)
{
    return s->count == s->cap || (s->max_bytes && s->count && s->bytes + ub > s->max_bytes);
}

int writeq_submit(store *base, const store_unit *unit, store_done_fn done, void *ud)
{
    writeq *s = wq(base);
    store_unit u = *unit; /* ours from here on */
    record *r = u.rec;
    if (s->read_only)
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
        if (s->drop_when_full) {
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
        writeq_item *nr = xmalloc(n * sizeof *nr);
        for (size_t i = 0; i < s->count; i++)
            nr[i] = s->ring[(s->head + i) % s->ring_alloc];
        free(s->ring);
        s->ring = nr;
        s->ring_alloc = n;
        s->head = 0;
    }
    writeq_item *it = &s->ring[(s->head + s->count) % s->ring_alloc];
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
    if (!s->gathering || done || s->count >= (s->batch_max ? s->batch_max : 1))
        pthread_cond_signal(&s->nonempty);
    /* Two committed units freed per unit submitted: the parked ones cannot
     * pile up while units keep coming. */
    store_unit gone[2];
    size_t ngone = 0;
    while (ngone < 2 && s->nparked)
        gone[ngone++] = s->parked[--s->nparked];
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < ngone; i++)
        writeq_unit_free(&gone[i]);
    return 0;
}

void writeq_get_stats(store *base, store_stats *out)
{
    writeq *s = wq(base);
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->queued = s->count + s->inflight;
    out->queued_bytes = s->bytes;
    pthread_mutex_unlock(&s->mu);
    hist_read(&s->commit_time, &out->commit_time);
    hist_read(&s->latency, &out->latency);
}

void writeq_connection(writeq *q, bool up)
{
    pthread_mutex_lock(&q->mu);
    if (up && q->st.disconnected)
        q->st.reconnects++;
    q->st.disconnected = up ? 0 : 1;
    pthread_mutex_unlock(&q->mu);
}

void writeq_pause(store *base, bool paused)
{
    writeq *s = wq(base);
    pthread_mutex_lock(&s->mu);
    s->paused = paused;
    pthread_cond_broadcast(&s->nonempty);
    pthread_mutex_unlock(&s->mu);
}

/* Counter updates and outbox confirms come from other threads (the
 * publisher, the replicator's workers) that must never wait for a disk: they
 * are queued under mu, and the writer applies them in its next transaction
 * (a transaction of their own when no records are waiting). */
void writeq_counter(store *base, const char *name, int64_t value, bool set)
{
    writeq *s = wq(base);
    if (s->read_only || !name)
        return;
    pthread_mutex_lock(&s->mu);
    writeq_ops *o = &s->ops;
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

void writeq_outbox_confirmed(store *base, int64_t upto, const char *last_id)
{
    writeq *s = wq(base);
    if (s->read_only || upto <= 0)
        return;
    int64_t now = util_now_us();
    pthread_mutex_lock(&s->mu);
    writeq_ops *o = &s->ops;
    if (upto > o->confirm_upto)
        o->confirm_upto = upto;
    o->confirm_us = now;
    snprintf(o->confirm_id, sizeof o->confirm_id, "%s", last_id ? last_id : "");
    pthread_cond_signal(&s->nonempty);
    pthread_mutex_unlock(&s->mu);
}

/* Queues a stuck-table change, replacing any pending one for the same
 * message (the latest state is the one that matters). */
static void stuck_op(writeq *s, bool set, const store_stuck *row, const char *message_id)
{
    if (s->read_only || !message_id || !*message_id)
        return;
    pthread_mutex_lock(&s->mu);
    writeq_ops *o = &s->ops;
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
    writeq_stuck_op *op = &o->sv[i];
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

void writeq_stuck_set(store *base, const store_stuck *row)
{
    stuck_op(wq(base), true, row, row->message_id);
}

void writeq_stuck_clear(store *base, const char *message_id)
{
    stuck_op(wq(base), false, NULL, message_id);
}

int writeq_outbox_wait(store *base, int64_t after_seq, int timeout_ms)
{
    writeq *s = wq(base);
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

/* At most this many committed records wait for the submitters (a few MiB
 * at most; two store batches). */
#define PARKED_MAX 1024

/* Hands committed units to the submitters to free (see `parked`); with
 * no submitters coming (too many parked), the writer frees them itself. */
static void park_units(writeq *s, writeq_item *b, size_t n)
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
        writeq_unit_free(&b[i].u);
}

/* Commits b[0..n) and ops, then tells each record's owner (in submit order)
 * and frees the records; retries until it succeeds (see store.h: a failed
 * commit is never a reason to lose captures). */
static void write_batch(writeq *s, writeq_item *b, size_t n, writeq_ops *ops)
{
    unsigned backoff = BACKOFF_MIN_MS;
    unsigned failures = 0;
    int64_t max_seq = 0;
    bool committed = false;
    while (n || writeq_ops_pending(ops)) {
        char e[256] = "";
        size_t bad = SIZE_MAX;
        int64_t t0 = util_mono_us();
        int rc = s->hooks->commit(s->ctx, b, n, ops, &bad, &max_seq, e, sizeof e);
        if (rc == 0) {
            committed = true;
            hist_observe_us(&s->commit_time, util_mono_us() - t0);
            break;
        }
        if (bad == n) {
            fprintf(stderr, "restspy: store: cannot update replication counters (dropped): %s\n",
                    e);
            writeq_ops_free(ops);
            pthread_mutex_lock(&s->mu);
            s->st.errors++;
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        if (bad != SIZE_MAX) {
            fprintf(stderr, "restspy: store: cannot store request %s (dropped): %s\n",
                    b[bad].u.rec->id, e);
            writeq_item it = b[bad];
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
                    writeq_ops_pending(ops) ? " and replication counters" : "", e);
        if (closing && failures >= CLOSE_MAX_FAILURES) {
            fprintf(stderr, "restspy: store: giving up on %zu requests at shutdown: %s\n", n, e);
            writeq_ops_free(ops);
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
    writeq_ops_free(ops);
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

/* Monotonic time at which the backend's retention has work (INT64_MAX:
 * never, or no retention). */
static int64_t prune_wake_at(const writeq *s)
{
    return s->hooks->prune_wake_at ? s->hooks->prune_wake_at(s->ctx) : INT64_MAX;
}

static bool prune_due(const writeq *s, int64_t now_mono)
{
    return now_mono >= prune_wake_at(s);
}

static void *writer_main(void *arg)
{
    writeq *s = arg;
    size_t bmax = s->batch_max ? (size_t)s->batch_max : 1;
    if (bmax > s->cap)
        bmax = s->cap;
    writeq_item *batch = xmalloc(bmax * sizeof *batch);
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
                writeq_unit_free(&v[i]);
            free(v);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        while (!s->closing && (s->count == 0 || s->paused) && !writeq_ops_pending(&s->ops) &&
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
        if (s->closing && s->count == 0 && !writeq_ops_pending(&s->ops))
            break;
        if (s->commit_delay_us && !s->closing && !s->paused && s->count < bmax && !s->waiting) {
            /* Group commit: one transaction costs about the same for 1 record
             * as for 100, so under load a short wait makes batches (and
             * throughput) much larger. Not when a submitter waits for the
             * commit (a held answer, a replicator's ack): its batch is what
             * queued while the previous transaction was written. */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t ns = (int64_t)ts.tv_nsec + (int64_t)s->commit_delay_us * 1000;
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
        writeq_ops ops = s->ops; /* the next transaction takes every pending op */
        memset(&s->ops, 0, sizeof s->ops);
        pthread_mutex_unlock(&s->mu);
        if (n || writeq_ops_pending(&ops))
            write_batch(s, batch, n, &ops);
        writeq_ops_free(&ops);
        if (prune_due(s, util_mono_us()))
            s->hooks->prune_step(s->ctx);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    free(batch);
    /* Closing: the backend finishes retention. */
    if (s->hooks->prune_finish)
        s->hooks->prune_finish(s->ctx);
    return NULL;
}

/* ---- life ---- */

void writeq_init(writeq *q, const store_options *o, const writeq_hooks *hooks, void *ctx)
{
    memset(q, 0, sizeof *q);
    q->hooks = hooks;
    q->ctx = ctx;
    q->batch_max = o->batch_max;
    q->commit_delay_us = o->commit_delay_us;
    q->drop_when_full = o->drop_when_full;
    q->read_only = o->read_only;
    q->cap = o->queue_max ? (size_t)o->queue_max : 1;
    q->max_bytes = o->queue_max_bytes > SIZE_MAX ? SIZE_MAX : (size_t)o->queue_max_bytes;
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->nonempty, &ca);
    pthread_cond_init(&q->outbox, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&q->room, NULL);
}

void writeq_destroy(writeq *q)
{
    for (size_t i = 0; i < q->nparked; i++)
        writeq_unit_free(&q->parked[i]);
    free(q->parked);
    /* Only reached with queued records when a closing store gave up. */
    for (size_t i = 0; i < q->count; i++) {
        writeq_item *it = &q->ring[(q->head + i) % q->ring_alloc];
        if (it->done)
            it->done(it->ud, -1);
        writeq_unit_free(&it->u);
    }
    free(q->ring);
    writeq_ops_free(&q->ops);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->nonempty);
    pthread_cond_destroy(&q->room);
    pthread_cond_destroy(&q->outbox);
}

bool writeq_started(writeq *q)
{
    pthread_mutex_lock(&q->mu);
    bool started = q->started;
    pthread_mutex_unlock(&q->mu);
    return started;
}

int writeq_start(writeq *q, char *err, size_t errlen)
{
    if (writeq_started(q)) {
        snprintf(err, errlen, "store writer already started");
        return -1;
    }
    int rc = pthread_create(&q->thread, NULL, writer_main, q);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start store writer: %s", strerror(rc));
        return -1;
    }
    pthread_mutex_lock(&q->mu);
    q->started = true;
    pthread_mutex_unlock(&q->mu);
    return 0;
}

void writeq_close(writeq *q)
{
    pthread_mutex_lock(&q->mu);
    q->closing = true;
    q->paused = false;
    bool started = q->started;
    pthread_cond_broadcast(&q->nonempty);
    pthread_cond_broadcast(&q->room);
    pthread_cond_broadcast(&q->outbox);
    pthread_mutex_unlock(&q->mu);
    if (started)
        pthread_join(q->thread, NULL);
    else if (!q->read_only)
        writer_main(q); /* never started: drain what was queued right here */
    /* A thread woken in outbox_wait still holds on to the store until it
     * returns. */
    pthread_mutex_lock(&q->mu);
    while (q->outbox_waiters)
        pthread_cond_wait(&q->outbox, &q->mu);
    pthread_mutex_unlock(&q->mu);
}

void writeq_ops_free(writeq_ops *o)
{
    for (size_t i = 0; i < o->len; i++)
        free(o->v[i].name);
    free(o->v);
    for (size_t i = 0; i < o->slen; i++)
        store_stuck_row_free(&o->sv[i].row);
    free(o->sv);
    store_receipts_free(o->rv, o->rlen);
    memset(o, 0, sizeof *o);
}

bool writeq_ops_pending(const writeq_ops *o)
{
    return o->len || o->slen || o->rlen || o->confirm_upto > 0;
}

void writeq_receipt_put(store *base, const store_receipt *r)
{
    writeq *q = wq(base);
    if (q->read_only || !r->message_id[0] || !r->node || !r->outcome)
        return;
    pthread_mutex_lock(&q->mu);
    writeq_ops *o = &q->ops;
    if (o->rlen == o->rcap) {
        o->rcap = o->rcap ? o->rcap * 2 : 8;
        o->rv = xrealloc(o->rv, o->rcap * sizeof *o->rv);
    }
    store_receipt *c = &o->rv[o->rlen++];
    *c = *r;
    c->node = xstrdup(r->node);
    c->outcome = xstrdup(r->outcome);
    pthread_cond_signal(&q->nonempty);
    pthread_mutex_unlock(&q->mu);
}
