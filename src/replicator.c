/* replicator: `restspy replicate`.
 *
 * Threads: the main thread owns the AMQP connection (rabbitmq-c is
 * single-threaded) and does every broker call: it takes deliveries, hands
 * each to the worker of its partition, and acks or dead-letters what the
 * workers finished. Workers own one httpc each and do the slow parts
 * (ledger lookup, the HTTP apply, waiting for the store commit). A signal
 * thread turns SIGTERM/SIGINT into a flag, so no other thread ever sees
 * EINTR in the middle of a broker or HTTP exchange.
 *
 * Connection generations: delivery tags belong to one channel. Every
 * reconnect starts a new generation; work of an older one is abandoned or,
 * if already applied, simply not acked (the broker redelivers it and the
 * ledger turns the redelivery into a skip). Since a redelivered message has
 * the same path, it lands on the same worker behind any old copy still in
 * flight, so two copies are never applied side by side. */
#include "replicator.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "httpc.h"
#include "mq.h"
#include "record.h"
#include "redact.h"
#include "repl_msg.h"
#include "replicator_internal.h"
#include "store.h"
#include "util.h"

#define CAPTURE_CAP (64u << 10) /* bytes of each body kept in the capture row */
#define REASON_EXCERPT 200      /* bytes of a 4xx body in a dead-letter reason */
#define POLL_BUSY_MS                                                                               \
    1 /* mq_poll wait while workers may finish work: their                                         \
         acks go out between polls */
#define POLL_IDLE_MS 200

/* ---- pure helpers (replicator_internal.h) ---- */

uint64_t repl_backoff_ms(unsigned attempt, uint64_t min_ms, uint64_t max_ms)
{
    if (min_ms == 0)
        min_ms = 1;
    if (max_ms < min_ms)
        max_ms = min_ms;
    uint64_t d = min_ms;
    for (unsigned i = 0; i < attempt && d < max_ms; i++)
        d = d > max_ms / 2 ? max_ms : d * 2;
    return d < max_ms ? d : max_ms;
}

unsigned repl_partition(const char *target, unsigned n)
{
    if (n <= 1 || !target)
        return 0;
    /* FNV-1a over the path: cheap, and well spread for similar paths. */
    uint32_t h = 2166136261u;
    for (const char *p = target; *p && *p != '?'; p++) {
        h ^= (unsigned char)*p;
        h *= 16777619u;
    }
    return h % n;
}

void repl_headers_remove(record_headers *h, const char *name)
{
    size_t nl = strlen(name), j = 0;
    for (size_t i = 0; i < h->len; i++) {
        if (util_ieq(h->v[i].name, strlen(h->v[i].name), name) && strlen(h->v[i].name) == nl) {
            record_header_clear(&h->v[i]);
        } else {
            h->v[j++] = h->v[i];
        }
    }
    h->len = j;
}

static void headers_set(record_headers *h, const char *name, const char *value)
{
    repl_headers_remove(h, name);
    record_headers_add(h, name, strlen(name), value, strlen(value));
}

int repl_apply_headers(const repl_msg *m, char *const *set_headers, record_headers *out)
{
    if (m->headers && repl_msg_headers(m, out) != 0)
        return -1;
    if (m->content_type && *m->content_type && !record_headers_get(out, "Content-Type"))
        record_headers_add(out, "Content-Type", 12, m->content_type, strlen(m->content_type));
    headers_set(out, "Idempotency-Key", m->id);
    headers_set(out, "X-Restspy-Replicated-From", m->origin ? m->origin : "");
    for (size_t i = 0; set_headers && set_headers[i]; i++) {
        const char *s = set_headers[i], *colon = strchr(s, ':');
        if (!colon || colon == s)
            continue; /* config.c has checked the form already */
        char *name = xstrndup(s, (size_t)(colon - s));
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t vl = strlen(v);
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        repl_headers_remove(out, name);
        record_headers_add(out, name, strlen(name), v, vl);
        free(name);
    }
    return 0;
}

char *repl_dead_reason(int status, const buf *body)
{
    buf b = BUF_INIT;
    buf_appendf(&b, "upstream answered %d", status);
    size_t n = body && body->len < REASON_EXCERPT ? body->len : REASON_EXCERPT;
    if (body && n) {
        buf_append_str(&b, ": ");
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)body->data[i];
            buf_append_char(&b, c < 0x20 || c == 0x7f ? ' ' : (char)c);
        }
        if (body->len > n)
            buf_append_str(&b, "...");
    }
    return buf_detach(&b);
}

/* ---- state ---- */

enum { OUT_ABANDON = 0, OUT_ACK, OUT_DEAD };

/* One delivery on its way through a worker and back. Owned by whichever
 * queue holds it; the main thread frees it at the end. */
typedef struct item {
    struct item *next;
    repl_msg *msg;
    uint64_t tag;
    uint64_t gen;
    int outcome;
    char *reason;        /* OUT_DEAD: heap */
    const char *counter; /* OUT_ACK: counter to bump once acked, or NULL */
} item;

typedef struct repl repl;

typedef struct worker {
    repl *r;
    unsigned idx;
    pthread_t th;
    item *head, *tail; /* under r->mu */
    httpc *hc;
    /* store commit of the current capture: set by the writer thread */
    pthread_mutex_t cmu;
    pthread_cond_t ccv;
    bool cdone;
    int cstatus;
} worker;

typedef struct pending_dead {
    uint64_t pub_tag;      /* confirm tag of the dead-letter publish */
    uint64_t delivery_tag; /* the original, acked once that is confirmed */
} pending_dead;

struct repl {
    config *cfg;
    store *st;
    pthread_mutex_t ledger_mu; /* store_ledger_has is not promised thread-safe */

    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;  /* workers: new item, new generation, stopping */
    item *done_head, *done_tail;
    uint64_t gen;
    bool stopping;
    size_t inflight; /* dispatched and not yet back in the done list */

    worker *w;
    unsigned nw;

    /* main thread only */
    mq *m;
    uint64_t pub_seq;
    pending_dead *pend;
    size_t npend, cappend;
};

static atomic_int g_stop; /* set by the signal thread */
static atomic_int g_sig_exit;

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void logf_(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "restspy replicate: %s\n", line);
}

static void item_free(item *it)
{
    if (!it)
        return;
    repl_msg_free(it->msg);
    free(it->reason);
    free(it);
}

/* ---- workers ---- */

static bool abandoned(repl *r, const item *it)
{
    pthread_mutex_lock(&r->mu);
    bool a = r->stopping || it->gen != r->gen;
    pthread_mutex_unlock(&r->mu);
    return a;
}

/* Sleeps ms unless the item is abandoned first. false when abandoned. */
static bool backoff_wait(repl *r, const item *it, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&r->mu);
    while (!r->stopping && it->gen == r->gen) {
        if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT)
            break;
    }
    bool ok = !r->stopping && it->gen == r->gen;
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static void on_committed(void *ud, int status)
{
    worker *w = ud;
    pthread_mutex_lock(&w->cmu);
    w->cdone = true;
    w->cstatus = status;
    pthread_cond_signal(&w->ccv);
    pthread_mutex_unlock(&w->cmu);
}

static void copy_capped(buf *dst, const void *data, size_t len, bool *truncated)
{
    size_t n = len < CAPTURE_CAP ? len : CAPTURE_CAP;
    if (n)
        buf_append(dst, data, n);
    *truncated = len > n;
}

/* Builds the capture row of an applied message; takes the headers (sent)
 * and the response. */
static record *capture(repl *r, const repl_msg *m, record_headers *sent, httpc_response *resp,
                       int64_t started_us, int64_t dur_us)
{
    record *rec = record_new();
    /* The origin's capture id: both sites' rows of one write share it. */
    memcpy(rec->id, m->id, sizeof rec->id);
    free(rec->origin);
    rec->origin = xstrdup("replicated");
    rec->node = xstrdup(m->origin);
    rec->started_at_us = started_us;
    rec->duration_us = dur_us;
    rec->upstream_us = dur_us;
    rec->method = xstrdup(m->method);
    rec->scheme = xstrdup("http");
    record_set_target(rec, m->target, strlen(m->target));
    rec->http_minor = 1;
    rec->req_headers = *sent;
    memset(sent, 0, sizeof *sent);
    copy_capped(&rec->req_body, m->body.data, m->body.len, &rec->req_truncated);
    rec->req_body_size = m->body.len;
    rec->status = resp->status;
    rec->resp_headers = resp->headers;
    memset(&resp->headers, 0, sizeof resp->headers);
    copy_capped(&rec->resp_body, resp->body.data, resp->body.len, &rec->resp_truncated);
    rec->resp_body_size = resp->body.len;
    rec->rule = xstrdup("replicated");
    rec->do_persist = true;
    rec->applied_id = xstrdup(m->id);
    record_decode_bodies(rec, CAPTURE_CAP, CAPTURE_CAP, !redact_bodies(r->cfg));
    /* What is applied carries real credentials (--set-header); the row must
     * not. */
    redact_record(r->cfg, rec);
    return rec;
}

/* Applies one message; sets it->outcome (and reason/counter). */
static void process(worker *w, item *it)
{
    repl *r = w->r;
    const config *cfg = r->cfg;
    repl_msg *m = it->msg;
    char why[256] = "";
    it->outcome = OUT_ABANDON;

    if (repl_msg_verify(m, cfg->replicate_secret, why, sizeof why) != 0) {
        it->outcome = OUT_DEAD;
        it->reason = xstrdup(why[0] ? why : "malformed message");
        return;
    }
    if (!m->id[0] || !m->origin || !m->method || !m->target || m->target[0] != '/') {
        /* Without an id there is no ledger entry and no Idempotency-Key. */
        it->outcome = OUT_DEAD;
        it->reason = xstrdup("malformed message: no message_id, origin, method or target");
        return;
    }
    if (strcmp(m->origin, cfg->node) == 0) {
        it->outcome = OUT_ACK;
        it->counter = "skipped_own";
        return;
    }
    record_headers hdrs = {0};
    if (repl_apply_headers(m, cfg->set_headers, &hdrs) != 0) {
        record_headers_free(&hdrs);
        it->outcome = OUT_DEAD;
        it->reason = xstrdup("malformed message: bad x-restspy-headers");
        return;
    }

    for (unsigned attempt = 0;; attempt++) {
        if (attempt > 0) {
            uint64_t ms = repl_backoff_ms(attempt - 1, cfg->retry_min_ms, cfg->retry_max_ms);
            if (!backoff_wait(r, it, ms))
                break;
        }
        if (abandoned(r, it))
            break;
        char err[512] = "";
        pthread_mutex_lock(&r->ledger_mu);
        int has = store_ledger_has(r->st, m->id, err, sizeof err);
        pthread_mutex_unlock(&r->ledger_mu);
        if (has < 0) {
            logf_("ledger lookup for %s failed: %s; retrying", m->id, err);
            continue;
        }
        if (has == 1) {
            it->outcome = OUT_ACK;
            it->counter = "deduplicated";
            break;
        }
        httpc_response resp;
        int64_t t0 = util_now_us(), m0 = util_mono_us();
        int rc = httpc_request(w->hc, m->method, m->target, &hdrs, m->body.data, m->body.len, &resp,
                               err, sizeof err);
        int64_t dur = util_mono_us() - m0;
        /* 408 and 429 say "later", not "never": retried like a 5xx. */
        if (rc != 0 || resp.status >= 500 || resp.status == 408 || resp.status == 429) {
            if (rc == 0)
                snprintf(err, sizeof err, "upstream answered %d", resp.status);
            logf_(
                "apply %s %s %s: %s; retrying in %llu ms", m->id, m->method, m->target, err,
                (unsigned long long)repl_backoff_ms(attempt, cfg->retry_min_ms, cfg->retry_max_ms));
            httpc_response_free(&resp);
            continue;
        }
        if (resp.status >= 400) {
            it->outcome = OUT_DEAD;
            it->reason = repl_dead_reason(resp.status, &resp.body);
            httpc_response_free(&resp);
            break;
        }
        /* Applied: the capture row and the ledger row commit together, and
         * only then may the message be acked. */
        record_headers sent = {0};
        for (size_t i = 0; i < hdrs.len; i++)
            record_headers_add(&sent, hdrs.v[i].name, strlen(hdrs.v[i].name), hdrs.v[i].value,
                               strlen(hdrs.v[i].value));
        record *rec = capture(r, m, &sent, &resp, t0, dur);
        httpc_response_free(&resp);
        pthread_mutex_lock(&w->cmu);
        w->cdone = false;
        pthread_mutex_unlock(&w->cmu);
        int status = -1;
        if (store_submit_cb(r->st, rec, on_committed, w) == 0) {
            pthread_mutex_lock(&w->cmu);
            while (!w->cdone)
                pthread_cond_wait(&w->ccv, &w->cmu);
            status = w->cstatus;
            pthread_mutex_unlock(&w->cmu);
        }
        if (status == 0) {
            it->outcome = OUT_ACK;
            break;
        }
        /* Not recorded: apply again (same Idempotency-Key) rather than ack
         * something the ledger does not know. */
        logf_("apply %s: the store did not commit the ledger row; retrying", m->id);
    }
    record_headers_free(&hdrs);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    repl *r = w->r;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!w->head && !r->stopping)
            pthread_cond_wait(&r->cv, &r->mu);
        item *it = w->head;
        if (!it)
            break; /* stopping with nothing queued */
        w->head = it->next;
        if (!w->head)
            w->tail = NULL;
        it->next = NULL;
        bool skip = r->stopping || it->gen != r->gen;
        pthread_mutex_unlock(&r->mu);
        if (!skip)
            process(w, it);
        else
            it->outcome = OUT_ABANDON;
        pthread_mutex_lock(&r->mu);
        if (r->done_tail)
            r->done_tail->next = it;
        else
            r->done_head = it;
        r->done_tail = it;
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- the broker side (main thread) ---- */

static void dispatch(repl *r, repl_msg *msg, uint64_t tag)
{
    item *it = xcalloc(1, sizeof *it);
    it->msg = msg;
    it->tag = tag;
    worker *w = &r->w[repl_partition(msg->target, r->nw)];
    pthread_mutex_lock(&r->mu);
    it->gen = r->gen;
    if (w->tail)
        w->tail->next = it;
    else
        w->head = it;
    w->tail = it;
    r->inflight++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void lose_connection(repl *r, const char *err)
{
    if (!r->m)
        return;
    logf_("broker connection lost: %s; reconnecting", err);
    mq_close(r->m);
    r->m = NULL;
    r->npend = 0; /* their originals come back by redelivery */
    pthread_mutex_lock(&r->mu);
    r->gen++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Acks or dead-letters what the workers finished. */
static void handle_done(repl *r)
{
    pthread_mutex_lock(&r->mu);
    item *list = r->done_head;
    r->done_head = r->done_tail = NULL;
    uint64_t gen = r->gen;
    pthread_mutex_unlock(&r->mu);
    while (list) {
        item *it = list;
        list = it->next;
        pthread_mutex_lock(&r->mu);
        r->inflight--;
        pthread_mutex_unlock(&r->mu);
        char err[512] = "";
        if (!r->m || it->gen != gen || it->outcome == OUT_ABANDON) {
            /* Unacked on a channel that is gone: the broker redelivers it. */
        } else if (it->outcome == OUT_ACK) {
            if (mq_ack(r->m, it->tag, err, sizeof err) != 0)
                lose_connection(r, err);
            else if (it->counter)
                store_counter_add(r->st, it->counter, 1);
        } else if (mq_publish_dead(r->m, r->cfg->node, it->msg, it->reason, err, sizeof err) != 0) {
            lose_connection(r, err);
        } else {
            logf_("dead-lettered %s %s %s from %s: %s", it->msg->id,
                  it->msg->method ? it->msg->method : "-", it->msg->target ? it->msg->target : "-",
                  it->msg->origin ? it->msg->origin : "-", it->reason);
            /* The original is acked once the broker confirms the dead
             * letter: a crash in between dead-letters it twice, never zero
             * times. */
            if (r->npend == r->cappend) {
                r->cappend = r->cappend ? r->cappend * 2 : 8;
                r->pend = xrealloc(r->pend, r->cappend * sizeof *r->pend);
            }
            r->pend[r->npend++] = (pending_dead){++r->pub_seq, it->tag};
        }
        item_free(it);
    }
}

static void handle_confirm(repl *r, const mq_event *ev)
{
    size_t j = 0;
    for (size_t i = 0; i < r->npend; i++) {
        pending_dead p = r->pend[i];
        bool hit = ev->multiple ? p.pub_tag <= ev->tag : p.pub_tag == ev->tag;
        if (!hit) {
            r->pend[j++] = p;
            continue;
        }
        if (!r->m)
            continue;
        char err[512] = "";
        int rc;
        if (ev->nack) {
            /* The broker refused the dead letter: keep the original (it
             * comes back and is dead-lettered again). */
            logf_("broker refused a dead letter; requeueing the original");
            rc = mq_reject(r->m, p.delivery_tag, true, err, sizeof err);
        } else {
            rc = mq_ack(r->m, p.delivery_tag, err, sizeof err);
            if (rc == 0)
                store_counter_add(r->st, "dead_lettered", 1);
        }
        if (rc != 0) {
            lose_connection(r, err);
            return;
        }
    }
    r->npend = j;
}

static size_t inflight(repl *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->inflight;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* One wait on the broker: deliveries are dispatched (or, while stopping,
 * dropped unacked), confirms resolved. */
static void poll_once(repl *r, int ms, bool take)
{
    mq_event ev;
    memset(&ev, 0, sizeof ev);
    char err[512] = "";
    if (mq_poll(r->m, ms, &ev, err, sizeof err) != 0) {
        lose_connection(r, err);
        return;
    }
    if (ev.kind == MQ_DELIVERY) {
        free(ev.reason);
        if (ev.msg && take)
            dispatch(r, ev.msg, ev.tag);
        else
            repl_msg_free(ev.msg); /* stays unacked: redelivered later */
    } else if (ev.kind == MQ_CONFIRM) {
        handle_confirm(r, &ev);
    }
}

static int connect_broker(repl *r, char *err, size_t errlen)
{
    const config *cfg = r->cfg;
    char name[160];
    snprintf(name, sizeof name, "restspy replicate %s", cfg->node);
    unsigned hb = (unsigned)(cfg->amqp_heartbeat_ms / 1000);
    mq *m = mq_connect(cfg->amqp, hb ? hb : 1, name, err, errlen);
    if (!m)
        return -1;
    char queue[300];
    snprintf(queue, sizeof queue, "restspy.apply.%s", cfg->node);
    /* Deliveries ahead of the applies: with too few (it was 4 per worker),
     * a worker finished them all and idled until the loop's poll timed out,
     * capping one worker near 800 applies/s (bench/repl_lag.py). Order
     * within a partition is the broker's. */
    unsigned pf = cfg->prefetch > 0 ? (unsigned)cfg->prefetch : 64;
    if (pf < r->nw)
        pf = r->nw;
    uint16_t prefetch = (uint16_t)(pf > 65535 ? 65535 : pf);
    if (mq_declare_topology(m, cfg->node, cfg->queue_type, err, errlen) != 0 ||
        mq_confirm_select(m, err, errlen) != 0 ||
        mq_consume(m, queue, prefetch, err, errlen) != 0) {
        mq_close(m);
        return -1;
    }
    r->m = m;
    r->pub_seq = 0;
    r->npend = 0;
    pthread_mutex_lock(&r->mu);
    r->gen++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return 0;
}

/* Sleeps ms in small steps, returning early on a stop signal. */
static void sleep_interruptible(uint64_t ms)
{
    int64_t end = util_mono_us() + (int64_t)ms * 1000;
    while (!atomic_load(&g_stop) && util_mono_us() < end)
        usleep(50000);
}

static void run(repl *r)
{
    unsigned attempt = 0;
    bool announced = false;
    char last_err[512] = "";
    while (!atomic_load(&g_stop)) {
        if (!r->m) {
            char err[512] = "";
            if (connect_broker(r, err, sizeof err) != 0) {
                uint64_t ms = repl_backoff_ms(
                    attempt++, r->cfg->retry_min_ms < 500 ? 500 : r->cfg->retry_min_ms,
                    r->cfg->retry_max_ms);
                if (strcmp(err, last_err) != 0) /* one line per kind of failure */
                    logf_("broker: %s; retrying (every %llu ms at most)", err,
                          (unsigned long long)r->cfg->retry_max_ms);
                snprintf(last_err, sizeof last_err, "%s", err);
                sleep_interruptible(ms);
                continue;
            }
            attempt = 0;
            last_err[0] = '\0';
            if (!announced)
                logf_("node %s: applying restspy.apply.%s to %s (concurrency %u)", r->cfg->node,
                      r->cfg->node, r->cfg->upstream, r->nw);
            else
                logf_("reconnected to the broker");
            announced = true;
        }
        handle_done(r);
        if (r->m)
            poll_once(r, inflight(r) ? POLL_BUSY_MS : POLL_IDLE_MS, true);
    }

    /* Stop: no new work; what is being applied finishes (bounded by the
     * upstream timeout) and is acked; queued work is left unacked. */
    logf_("stopping: finishing the requests being applied");
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    int64_t deadline = util_mono_us() + (int64_t)(r->cfg->upstream_timeout_ms + 10000) * 1000;
    while ((inflight(r) || r->npend) && util_mono_us() < deadline) {
        handle_done(r);
        if (r->m)
            poll_once(r, POLL_BUSY_MS, false);
        else if (inflight(r))
            usleep(POLL_BUSY_MS * 1000);
        else
            break;
    }
}

/* ---- signals ---- */

static void *signal_main(void *arg)
{
    sigset_t *set = arg;
    for (;;) {
        int sig = 0;
        if (sigwait(set, &sig) != 0)
            continue;
        if (atomic_load(&g_sig_exit))
            return NULL;
        atomic_store(&g_stop, 1); /* a second signal changes nothing */
    }
}

/* ---- command line ---- */

static const char *const help_keys[] = {
    "amqp",           "upstream",      "node",
    "store",          "config",        "replicate_secret",
    "set_header",     "concurrency",   "prefetch",
    "retry_min",      "retry_max",     "upstream_timeout",
    "amqp_heartbeat", "queue_type",    "busy_timeout",
    "store_queue",    "store_batch",   "redact",
    "redact_headers", "redact_fields", NULL,
};

static void print_key(const char *key, const char *def, const char *help, void *ud)
{
    (void)ud;
    for (size_t i = 0; help_keys[i]; i++) {
        if (strcmp(help_keys[i], key) != 0)
            continue;
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", key);
        for (char *p = flag + 2; *p; p++)
            if (*p == '_')
                *p = '-';
        printf("  %-26s %s (default: %s)\n", flag, help, def && *def ? def : "none");
    }
}

static void usage(void)
{
    printf("usage: restspy replicate --amqp URL --upstream URL --node NAME [options]\n\n"
           "Applies the requests that peer sites replicated (queue restspy.apply.NAME)\n"
           "to the local upstream, each exactly once: a message is acked only after\n"
           "its effect and its row in the store's `applied` ledger are committed.\n"
           "Upstream 5xx, 408, 429 or unreachable: retried with backoff, in order;\n"
           "other 4xx: dead-lettered\n"
           "to restspy.dead.NAME with the reason. SIGTERM/SIGINT stop it cleanly.\n"
           "Every option is also a config-file key and a RESTSPY_<KEY> variable.\n\n"
           "options:\n");
    config_each_key(print_key, NULL);
    printf("  %-26s %s\n", "--secret S", "same as --replicate-secret");
}

static bool wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            break;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return true;
    }
    return false;
}

static int load_config(int argc, char **argv, char *const *envp, config **out)
{
    char err[512] = "";
    int npos = 0;
    int *pos = xcalloc((size_t)argc + 1, sizeof *pos);
    config *cfg = NULL;
    int rc = 0;
    if (config_load(&cfg, argc - 1, argv + 1, envp, pos, &npos, err, sizeof err) != 0 ||
        config_validate(cfg, err, sizeof err) != 0) {
        fprintf(stderr, "restspy replicate: %s\n", err);
        rc = 2;
    } else if (npos > 0) {
        fprintf(stderr,
                "restspy replicate: unexpected argument '%s' (see restspy replicate --help)\n",
                argv[1 + pos[0]]);
        rc = 2;
    } else if (!cfg->amqp) {
        fprintf(stderr, "restspy replicate: --amqp is required (e.g. --amqp "
                        "amqp://guest:guest@127.0.0.1:5672/)\n");
        rc = 2;
    } else if (!cfg->upstream) {
        fprintf(stderr, "restspy replicate: --upstream is required (e.g. --upstream "
                        "http://127.0.0.1:8000)\n");
        rc = 2;
    } else if (!cfg->store || strcmp(cfg->store, "off") == 0) {
        fprintf(stderr, "restspy replicate: the store cannot be off: its `applied` ledger is "
                        "what makes every apply happen once\n");
        rc = 2;
    }
    free(pos);
    if (rc) {
        config_unref(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int replicator_main(int argc, char **argv, char *const *envp)
{
    if (wants_help(argc, argv)) {
        usage();
        return 0;
    }
    config *cfg = NULL;
    int rc = load_config(argc, argv, envp, &cfg);
    if (rc)
        return rc;
    char err[512] = "";
    repl r = {0};
    r.cfg = cfg;
    r.nw = cfg->concurrency > 0 ? (unsigned)cfg->concurrency : 1;
    r.w = xcalloc(r.nw, sizeof *r.w);
    for (unsigned i = 0; i < r.nw; i++) {
        r.w[i].hc = httpc_new(cfg->upstream, cfg->upstream_timeout_ms, err, sizeof err);
        if (!r.w[i].hc) {
            fprintf(stderr, "restspy replicate: upstream: %s\n", err);
            for (unsigned j = 0; j < i; j++)
                httpc_free(r.w[j].hc);
            free(r.w);
            config_unref(cfg);
            return 2;
        }
    }

    /* Signals go to one thread only: block them before any thread starts
     * (the store writer included) so that all of them inherit the mask. */
    sigset_t set, oldset;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, &oldset);
    struct sigaction ign = {0}, oldpipe;
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &oldpipe);
    atomic_store(&g_stop, 0);
    atomic_store(&g_sig_exit, 0);
    pthread_t sigth;
    pthread_create(&sigth, NULL, signal_main, &set);

    store_options o = {
        .url = cfg->store,
        .queue_max = cfg->store_queue,
        .batch_max = cfg->store_batch,
        .on_full = STORE_FULL_BLOCK, /* a ledger row is never dropped */
        .max_rows = cfg->max_rows,
        .max_age_ms = cfg->max_age_ms,
        .busy_timeout_ms = cfg->busy_timeout_ms,
        .commit_delay_us = cfg->store_commit_delay_ms * 1000,
        .init_foreign = cfg->store_init,
    };
    r.st = store_open(&o, err, sizeof err);
    if (!r.st || store_start(r.st, err, sizeof err) != 0) {
        fprintf(stderr, "restspy replicate: store: %s\n", err);
        store_close(r.st);
        rc = 1;
        goto out_sig;
    }

    pthread_mutex_init(&r.mu, NULL);
    pthread_mutex_init(&r.ledger_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r.cv, &ca);
    pthread_condattr_destroy(&ca);
    for (unsigned i = 0; i < r.nw; i++) {
        worker *w = &r.w[i];
        w->r = &r;
        w->idx = i;
        pthread_mutex_init(&w->cmu, NULL);
        pthread_cond_init(&w->ccv, NULL);
        pthread_create(&w->th, NULL, worker_main, w);
    }

    run(&r);

    pthread_mutex_lock(&r.mu);
    r.stopping = true;
    pthread_cond_broadcast(&r.cv);
    pthread_mutex_unlock(&r.mu);
    for (unsigned i = 0; i < r.nw; i++)
        pthread_join(r.w[i].th, NULL);
    handle_done(&r); /* last acks */
    /* Anything still queued belongs to no worker now. */
    for (unsigned i = 0; i < r.nw; i++) {
        while (r.w[i].head) {
            item *it = r.w[i].head;
            r.w[i].head = it->next;
            item_free(it);
        }
    }
    mq_close(r.m);
    r.m = NULL;
    store_close(r.st);
    for (unsigned i = 0; i < r.nw; i++) {
        pthread_mutex_destroy(&r.w[i].cmu);
        pthread_cond_destroy(&r.w[i].ccv);
    }
    pthread_mutex_destroy(&r.mu);
    pthread_mutex_destroy(&r.ledger_mu);
    pthread_cond_destroy(&r.cv);
    logf_("stopped");
    rc = 0;

out_sig:
    atomic_store(&g_sig_exit, 1);
    pthread_kill(sigth, SIGTERM); /* wakes sigwait: the thread sees g_sig_exit */
    pthread_join(sigth, NULL);
    sigaction(SIGPIPE, &oldpipe, NULL);
    pthread_sigmask(SIG_SETMASK, &oldset, NULL);
    for (unsigned i = 0; i < r.nw; i++)
        httpc_free(r.w[i].hc);
    free(r.w);
    free(r.pend);
    config_unref(cfg);
    return rc;
}
