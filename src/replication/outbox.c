/* outbox: the publisher thread (see outbox.h).
 *
 * One session = one AMQP connection: declare the topology, confirm.select,
 * then publish rows after `sent` (the last seq handed to the broker) while
 * fewer than max_in_flight are unconfirmed, and read confirms. In-flight
 * publishes sit in a ring in publish order; within a session delivery tags
 * are consecutive, so a tag finds its entry by subtraction. Only the
 * contiguous confirmed prefix is reported to the store: rows are deleted in
 * seq order and a restart resumes after the last reported seq.
 *
 * Any failure ends the session: `sent` goes back to `confirmed`, and the
 * next session republishes everything not confirmed (at least once; the
 * replicators dedupe by message_id).
 *
 * Publishes are mandatory: one that no queue takes (no peer's
 * restspy.out.<peer> is bound to restspy.requests: `restspy federate` was
 * not run, or its queues were deleted) comes back as a basic.return, just
 * before the broker acks it. The ack then means nothing is held, so the
 * returned row must stay: the ring is cut at that row (its ack and those of
 * the later publishes, "given up", are ignored), `sent` goes back to the
 * row before it, and publishing pauses for a hold that doubles from
 * retry_min to retry_max while the returns go on, then resumes in seq
 * order. The connection stays up: the broker is fine, its routing is not.
 *
 * Threads: the publisher thread owns the mq and the ring. `mu` guards the
 * stats, the stop flag and `cur` (the live connection, so that outbox_stop
 * can mq_interrupt a publish blocked on a full socket).
 *
 * Telling the operator: an outage is told at once (a proxy whose broker is
 * down must not look healthy), then every log_interval while it lasts; a
 * new outage less than log_interval after the last told one stays quiet
 * until the interval has passed, so a broker that accepts and drops
 * connections in a loop costs a line or two per interval, not one per
 * retry. The connection coming back is told only after a told outage. */
#include "replication/outbox.h"

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "replication/mq.h"
#include "base/util.h"

#define OUTBOX_DEFAULT_IN_FLIGHT 256
#define OUTBOX_DEFAULT_RETRY_MIN_MS 500
#define OUTBOX_DEFAULT_RETRY_MAX_MS 30000
/* How long an idle publisher sleeps in store_outbox_wait between heartbeat
 * services; well under any heartbeat interval worth configuring. */
#define OUTBOX_IDLE_WAIT_MS 200
/* While publishes wait for their confirm, how long the publisher listens to
 * the broker before it looks for new outbox rows: a persistent message's
 * confirm can take a disk flush, and new rows must not wait for it (they
 * did, up to 200 ms: the replication lag p99 of bench/repl_lag.py). */
#define OUTBOX_CONFIRM_POLL_MS 2
/* On stop, in-flight publishes get this long to be confirmed (fewer
 * republished duplicates after a restart); outbox_stop promises ~1 s. */
#define OUTBOX_STOP_DRAIN_MS 300
#define OUTBOX_STOP_GRACE_MS 600
#define OUTBOX_DEFAULT_LOG_INTERVAL_MS 60000

typedef struct inflight {
    uint64_t tag;
    int64_t seq;
    bool acked;
    char id[UUID7_STR_LEN + 1];
} inflight;

struct outbox {
    store *s;
    char *url;
    char *node;
    char conn_name[160];
    int queue_type;
    unsigned heartbeat_s;
    unsigned max_in_flight;
    uint64_t retry_min_ms, retry_max_ms;
    void (*log)(void *ud, const char *line);
    void *log_ud;
    uint64_t log_interval_ms;

    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond; /* stop requested, thread exited */
    bool stop;
    bool exited;
    mq *cur;
    outbox_stats st;

    /* publisher thread only */
    inflight *ring; /* max_in_flight entries */
    size_t head, count;
    int64_t sent;      /* last seq published in this session */
    int64_t confirmed; /* last seq reported to the store */
    unsigned rand_seed;
    bool told_down;                /* an outage was told and no connection came since */
    int64_t told_at_us;            /* monotonic time of the last outage line; 0 = none yet */
    uint64_t last_tag;             /* delivery tag of the newest publish of this session */
    uint64_t given_up;             /* publishes up to this tag were cut off by a return */
    int64_t hold_until_us;         /* monotonic: no publish before this (after a return) */
    uint64_t hold_ms;              /* the next hold */
    bool unroutable;               /* a return came and no publish was routed since */
    bool told_unroutable;          /* returns were told and no publish was routed since */
    int64_t unroutable_told_at_us; /* monotonic time of the last such line */
};

static bool stopping(outbox *o)
{
    pthread_mutex_lock(&o->mu);
    bool s = o->stop;
    pthread_mutex_unlock(&o->mu);
    return s;
}

static void set_error(outbox *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_error(outbox *o, const char *fmt, ...)
{
    pthread_mutex_lock(&o->mu);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->st.last_error, sizeof o->st.last_error, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&o->mu);
}

/* ---- telling the operator (see the top of the file) ---- */

static void tell(outbox *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void tell(outbox *o, const char *fmt, ...)
{
    if (!o->log)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    o->log(o->log_ud, line);
}

/* The rate limit of the lines about a state that lasts (an outage, returns):
 * true when a line may be told now, none having been told within
 * log_interval; *told_at_us (monotonic, 0 = never) then records it. */
static bool may_tell(outbox *o, int64_t *told_at_us)
{
    int64_t now = util_mono_us();
    if (*told_at_us != 0 && now - *told_at_us < (int64_t)o->log_interval_ms * 1000)
        return false;
    *told_at_us = now;
    return true;
}

/* A connection attempt failed (lost: a connection that worked was lost);
 * st.last_error says why. */
static void went_down(outbox *o, bool lost)
{
    pthread_mutex_lock(&o->mu);
    int64_t wall = util_now_us();
    if (o->st.down_since_us == 0)
        o->st.down_since_us = wall;
    uint64_t attempts = ++o->st.failed_attempts;
    double down_s = (double)(wall - o->st.down_since_us) / 1e6;
    char why[sizeof o->st.last_error];
    memcpy(why, o->st.last_error, sizeof why);
    pthread_mutex_unlock(&o->mu);

    if (!may_tell(o, &o->told_at_us))
        return;
    if (o->told_down)
        tell(o, "broker still unreachable after %.1fs (%llu attempts): %s", down_s,
             (unsigned long long)attempts, why);
    else
        tell(o, "broker %s: %s; retrying, new records wait in the outbox",
             lost ? "connection lost" : "unreachable", why);
    o->told_down = true;
}

/* A connection is up (first: the first one since the start). */
static void came_up(outbox *o, bool first)
{
    pthread_mutex_lock(&o->mu);
    double down_s = (double)(util_now_us() - o->st.down_since_us) / 1e6;
    uint64_t attempts = o->st.failed_attempts;
    o->st.connected = true;
    o->st.last_error[0] = '\0';
    o->st.down_since_us = 0;
    o->st.failed_attempts = 0;
    if (!first)
        o->st.reconnects++;
    pthread_mutex_unlock(&o->mu);
    if (o->told_down)
        tell(o,
             "broker connection restored after %.1fs (%llu failed attempts); sending the "
             "outbox",
             down_s, (unsigned long long)attempts);
    else if (first)
        tell(o, "connected to the broker");
    o->told_down = false;
}

/* The backoff after ms: doubled, at most retry_max. */
static uint64_t doubled(const outbox *o, uint64_t ms)
{
    return ms * 2 > o->retry_max_ms ? o->retry_max_ms : ms * 2;
}

/* Sleeps ms unless a stop is requested first. */
static void nap(outbox *o, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&o->mu);
    while (!o->stop && pthread_cond_timedwait(&o->cond, &o->mu, &ts) == 0)
        ;
    pthread_mutex_unlock(&o->mu);
}

/* ---- the ring of unconfirmed publishes ---- */

static inflight *ring_at(outbox *o, size_t i)
{
    assert(i < o->max_in_flight); /* the ring holds max_in_flight entries */
    return &o->ring[(o->head + i) % o->max_in_flight];
}

/* ---- publishes no queue took (see the top of the file) ---- */

/* The broker returned the publish of row id: see the top of the file. */
static void on_return(outbox *o, const mq_event *ev)
{
    size_t k = 0;
    while (k < o->count && strcmp(ring_at(o, k)->id, ev->msg->id) != 0)
        k++;
    if (k == o->count)
        return; /* already cut off by an earlier return */
    o->sent = k > 0 ? ring_at(o, k - 1)->seq : o->confirmed;
    o->count = k;
    o->given_up = o->last_tag;
    o->unroutable = true;
    o->hold_until_us = util_mono_us() + (int64_t)o->hold_ms * 1000;
    o->hold_ms = doubled(o, o->hold_ms);

    const char *rk = ev->msg->routing_key ? ev->msg->routing_key : "";
    pthread_mutex_lock(&o->mu);
    int64_t wall = util_now_us();
    if (o->st.unroutable_since_us == 0)
        o->st.unroutable_since_us = wall;
    uint64_t returned = ++o->st.returned;
    double for_s = (double)(wall - o->st.unroutable_since_us) / 1e6;
    snprintf(o->st.last_error, sizeof o->st.last_error,
             "unroutable: no queue bound to " MQ_EXCHANGE_REQUESTS
             " took routing key %.80s (%u %.40s): run restspy federate",
             rk, (unsigned)ev->reply_code, ev->reason ? ev->reason : "");
    pthread_mutex_unlock(&o->mu);

    if (!may_tell(o, &o->unroutable_told_at_us))
        return;
    if (o->told_unroutable)
        tell(o,
             "publishes still unroutable after %.1fs (%llu returned): no queue bound "
             "to " MQ_EXCHANGE_REQUESTS "; run restspy federate",
             for_s, (unsigned long long)returned);
    else
        tell(o,
             "the broker returned a publish as unroutable (%u %.40s, routing key %.80s): no "
             "peer's queue is bound to " MQ_EXCHANGE_REQUESTS
             "; run restspy federate; the records stay in the outbox and are retried",
             (unsigned)ev->reply_code, ev->reason ? ev->reason : "", rk);
    o->told_unroutable = true;
}

/* A publish made after the last return was confirmed: routing works. */
static void routed_again(outbox *o)
{
    o->unroutable = false;
    o->hold_ms = o->retry_min_ms;
    pthread_mutex_lock(&o->mu);
    int64_t since = o->st.unroutable_since_us;
    uint64_t returned = o->st.returned;
    o->st.unroutable_since_us = 0;
    if (since && strncmp(o->st.last_error, "unroutable: ", 12) == 0)
        o->st.last_error[0] = '\0';
    pthread_mutex_unlock(&o->mu);
    if (since && o->told_unroutable)
        tell(o, "publishes are routed again after %.1fs (%llu returned); sending the outbox",
             (double)(util_now_us() - since) / 1e6, (unsigned long long)returned);
    o->told_unroutable = false;
}

/* Pops the contiguous confirmed prefix and tells the store. */
static void advance(outbox *o)
{
    uint64_t n = 0;
    const inflight *last = NULL;
    while (o->count > 0 && ring_at(o, 0)->acked) {
        last = ring_at(o, 0);
        o->confirmed = last->seq;
        o->head = (o->head + 1) % o->max_in_flight;
        o->count--;
        n++;
    }
    if (n == 0)
        return;
    /* last points into the ring; nothing has overwritten it yet. */
    store_outbox_confirmed(o->s, o->confirmed, last->id);
    pthread_mutex_lock(&o->mu);
    o->st.confirmed += n;
    o->st.last_confirmed_us = util_now_us();
    pthread_mutex_unlock(&o->mu);
    if (o->unroutable && last->tag > o->given_up)
        routed_again(o);
}

/* 0, or -1 when the session must end (a nack, a tag we never sent). */
static int on_confirm(outbox *o, const mq_event *ev)
{
    uint64_t first = o->count ? ring_at(o, 0)->tag : 0;
    uint64_t last = o->count ? first + o->count - 1 : 0;
    /* About publishes cut off by a return only: they go out again anyway. */
    bool given_up = ev->tag <= o->given_up && (o->count == 0 || ev->tag > last);
    if (ev->nack) {
        if (given_up && !ev->multiple)
            return 0;
        pthread_mutex_lock(&o->mu);
        o->st.nacks++;
        pthread_mutex_unlock(&o->mu);
        set_error(o, "broker nacked publish %llu: republishing", (unsigned long long)ev->tag);
        return -1;
    }
    if (o->count == 0)
        return 0; /* already popped (a multiple ack repeating a range) */
    if (ev->tag > last && !given_up) {
        set_error(o, "broker confirmed unknown delivery tag %llu", (unsigned long long)ev->tag);
        return -1;
    }
    if (ev->multiple) {
        for (size_t i = 0; i < o->count && ring_at(o, i)->tag <= ev->tag; i++)
            ring_at(o, i)->acked = true;
    } else if (ev->tag >= first) {
        ring_at(o, (size_t)(ev->tag - first))->acked = true;
    }
    advance(o);
    return 0;
}

/* Reads every event already there, waiting up to timeout_ms for the first.
 * 0, or -1 when the session must end. */
static int pump(outbox *o, mq *m, int timeout_ms)
{
    char err[256];
    for (;;) {
        mq_event ev;
        if (mq_poll(m, timeout_ms, &ev, err, sizeof err) < 0) {
            set_error(o, "%s", err);
            return -1;
        }
        if (ev.kind == MQ_NONE)
            return 0;
        int rc = 0;
        if (ev.kind == MQ_CONFIRM)
            rc = on_confirm(o, &ev);
        else if (ev.kind == MQ_RETURN && ev.msg != NULL)
            on_return(o, &ev);
        repl_msg_free(ev.msg);
        free(ev.reason);
        if (rc < 0)
            return -1;
        timeout_ms = 0;
    }
}

/* Publishes up to the free room in the ring. Returns the number published,
 * or -1 when the session must end. *store_failed tells a read error apart
 * (the session goes on; the store is retried after a pause). */
static int fill(outbox *o, mq *m, bool *store_failed)
{
    *store_failed = false;
    size_t room = o->max_in_flight - o->count;
    if (room == 0)
        return 0;
    store_outbox_row *rows = xcalloc(room, sizeof *rows);
    size_t n = 0;
    char err[256];
    if (store_outbox_fetch(o->s, o->sent, room, rows, &n, err, sizeof err) < 0) {
        set_error(o, "reading the outbox: %s", err);
        free(rows);
        *store_failed = true;
        return 0;
    }
    int published = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t tag = 0;
        if (mq_publish(m, MQ_EXCHANGE_REQUESTS, rows[i].msg, &tag, err, sizeof err) < 0) {
            set_error(o, "%s", err);
            published = -1;
            break;
        }
        assert(o->count < o->max_in_flight); /* the ring is never overfilled */
        inflight *f = ring_at(o, o->count++);
        f->tag = tag;
        o->last_tag = tag;
        f->seq = rows[i].seq;
        f->acked = false;
        snprintf(f->id, sizeof f->id, "%s", rows[i].msg->id);
        o->sent = rows[i].seq;
        published++;
        pthread_mutex_lock(&o->mu);
        o->st.published++;
        pthread_mutex_unlock(&o->mu);
    }
    store_outbox_rows_free(rows, n);
    free(rows);
    return published;
}

/* Runs one connection until it fails or a stop is requested. true when the
 * session confirmed something (the backoff starts over). */
static bool session(outbox *o, mq *m)
{
    uint64_t confirmed_before = o->st.confirmed; /* written by this thread only */
    o->head = 0;
    o->count = 0;
    o->sent = o->confirmed;
    o->last_tag = 0; /* tags start again on each channel */
    o->given_up = 0;
    o->hold_until_us = 0;
    for (;;) {
        if (stopping(o)) {
            /* Give what is in flight a moment to be confirmed. */
            int64_t until = util_mono_us() + OUTBOX_STOP_DRAIN_MS * 1000;
            while (o->count > 0 && util_mono_us() < until)
                if (pump(o, m, 50) < 0)
                    break;
            break;
        }
        bool store_failed = false;
        /* With publishes in flight, read the outbox only when the writer
         * committed something new (a counter check, not a query). */
        int n = 0;
        int64_t hold_left_ms = (o->hold_until_us - util_mono_us()) / 1000;
        bool hold = o->hold_until_us != 0 && hold_left_ms > 0;
        if (!hold && (o->count == 0 || store_outbox_wait(o->s, o->sent, 0) > 0))
            n = fill(o, m, &store_failed);
        if (n < 0)
            break;
        int rc;
        if (store_failed) {
            rc = pump(o, m, OUTBOX_IDLE_WAIT_MS);
        } else if (n > 0 && o->count < o->max_in_flight) {
            rc = pump(o, m, 0); /* more rows may be waiting: fetch again */
        } else if (o->count > 0) {
            rc = pump(o, m, OUTBOX_CONFIRM_POLL_MS);
        } else if (hold) {
            /* After a return: listen (heartbeats) until the hold is over. */
            rc = pump(o, m,
                      hold_left_ms < OUTBOX_IDLE_WAIT_MS ? (int)hold_left_ms : OUTBOX_IDLE_WAIT_MS);
        } else {
            /* Idle: wait for the writer, then keep the connection alive. */
            store_outbox_wait(o->s, o->sent, OUTBOX_IDLE_WAIT_MS);
            rc = pump(o, m, 0);
        }
        if (rc < 0)
            break;
    }
    return o->st.confirmed > confirmed_before;
}

static void *outbox_main(void *arg)
{
    outbox *o = arg;
    uint64_t backoff = o->retry_min_ms;
    bool ever_connected = false;
    char err[256];
    while (!stopping(o)) {
        mq *m = mq_connect(o->url, o->heartbeat_s, o->conn_name, err, sizeof err);
        if (m != NULL) {
            /* Published before the RPCs below so that outbox_stop can
             * interrupt them too. */
            pthread_mutex_lock(&o->mu);
            o->cur = m;
            pthread_mutex_unlock(&o->mu);
            if (mq_declare_topology(m, o->node, o->queue_type, err, sizeof err) < 0 ||
                mq_confirm_select(m, err, sizeof err) < 0) {
                pthread_mutex_lock(&o->mu);
                o->cur = NULL;
                pthread_mutex_unlock(&o->mu);
                mq_close(m);
                m = NULL;
            }
        }
        bool progressed = false;
        if (m == NULL) {
            set_error(o, "%s", err);
            went_down(o, false);
        } else {
            came_up(o, !ever_connected);
            ever_connected = true;

            progressed = session(o, m);

            pthread_mutex_lock(&o->mu);
            o->cur = NULL;
            o->st.connected = false;
            pthread_mutex_unlock(&o->mu);
            mq_close(m);
            if (!stopping(o))
                went_down(o, true); /* a session ends on a failure or a stop */
        }
        if (stopping(o))
            break;
        if (progressed)
            backoff = o->retry_min_ms;
        /* Jitter (half to all of the backoff) keeps several proxies from
         * hammering a broker that comes back in lockstep. */
        uint64_t half = backoff / 2;
        uint64_t delay = half + (half ? (uint64_t)rand_r(&o->rand_seed) % (half + 1) : 0);
        nap(o, delay);
        backoff = doubled(o, backoff);
    }
    pthread_mutex_lock(&o->mu);
    o->exited = true;
    pthread_cond_broadcast(&o->cond);
    pthread_mutex_unlock(&o->mu);
    return NULL;
}

outbox *outbox_start(store *s, const outbox_options *opt, char *err, size_t errlen)
{
    if (s == NULL || opt == NULL || opt->amqp_url == NULL || opt->amqp_url[0] == '\0' ||
        opt->node == NULL || opt->node[0] == '\0') {
        snprintf(err, errlen, "outbox: a store, an AMQP URL and a node name are required");
        return NULL;
    }
    outbox *o = xcalloc(1, sizeof *o);
    o->s = s;
    o->url = xstrdup(opt->amqp_url);
    o->node = xstrdup(opt->node);
    snprintf(o->conn_name, sizeof o->conn_name, "restspy outbox %s", opt->node);
    o->queue_type = opt->queue_type;
    o->heartbeat_s = opt->heartbeat_s;
    o->max_in_flight = opt->max_in_flight ? opt->max_in_flight : OUTBOX_DEFAULT_IN_FLIGHT;
    o->retry_min_ms = opt->retry_min_ms ? opt->retry_min_ms : OUTBOX_DEFAULT_RETRY_MIN_MS;
    o->retry_max_ms = opt->retry_max_ms ? opt->retry_max_ms : OUTBOX_DEFAULT_RETRY_MAX_MS;
    if (o->retry_max_ms < o->retry_min_ms)
        o->retry_max_ms = o->retry_min_ms;
    o->log = opt->log;
    o->log_ud = opt->log_ud;
    o->log_interval_ms =
        opt->log_interval_ms ? opt->log_interval_ms : OUTBOX_DEFAULT_LOG_INTERVAL_MS;
    o->st.down_since_us = util_now_us(); /* not connected yet */
    o->hold_ms = o->retry_min_ms;
    o->ring = xcalloc(o->max_in_flight, sizeof *o->ring);
    o->rand_seed = (unsigned)util_mono_us() ^ (unsigned)(uintptr_t)o;
    pthread_mutex_init(&o->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&o->cond, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&o->thread, NULL, outbox_main, o);
    if (rc != 0) {
        snprintf(err, errlen, "outbox: cannot start thread: %s", strerror(rc));
        pthread_cond_destroy(&o->cond);
        pthread_mutex_destroy(&o->mu);
        free(o->ring);
        free(o->url);
        free(o->node);
        free(o);
        return NULL;
    }
    return o;
}

void outbox_get_stats(outbox *o, outbox_stats *out)
{
    pthread_mutex_lock(&o->mu);
    *out = o->st;
    pthread_mutex_unlock(&o->mu);
}

void outbox_stop(outbox *o)
{
    if (o == NULL)
        return;
    pthread_mutex_lock(&o->mu);
    o->stop = true;
    pthread_cond_broadcast(&o->cond);
    /* Every wait in the thread is short, except a publish blocked on a full
     * socket (a broker that stopped reading): after a grace period the
     * socket is shut down under it. A connect in progress is bounded by
     * mq's connect timeout. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += OUTBOX_STOP_GRACE_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    while (!o->exited && pthread_cond_timedwait(&o->cond, &o->mu, &ts) == 0)
        ;
    if (!o->exited)
        mq_interrupt(o->cur);
    pthread_mutex_unlock(&o->mu);
    pthread_join(o->thread, NULL);
    pthread_cond_destroy(&o->cond);
    pthread_mutex_destroy(&o->mu);
    free(o->ring);
    free(o->url);
    free(o->node);
    free(o);
}
