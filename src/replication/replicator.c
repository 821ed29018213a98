/* replicator: `restspy replicate`.
 *
 * Threads: the main thread owns the AMQP connection (rabbitmq-c is
 * single-threaded) and does every broker call, and it alone orders the
 * work: it keeps every delivery it took in a pending list (arrival order),
 * starts each one as soon as no earlier pending write holds it back
 * (repl_waits_for: apply_order), puts failed ones back after their backoff,
 * and acks or dead-letters what the workers finished. Workers take started
 * items from one run queue, make one attempt each (ledger lookup, the HTTP
 * apply, waiting for the store commit) and hand them back: a write waiting
 * for its backoff occupies no worker, so a write that keeps failing delays
 * only the writes that must wait for it. A signal thread turns
 * SIGTERM/SIGINT into a flag, so no other thread ever sees EINTR in the
 * middle of a broker or HTTP exchange.
 *
 * The retry budget: a failure that says something about the message (a
 * 5xx, 408 or 429 answer, a timeout or reset after the request was sent)
 * counts; an upstream that cannot be reached at all does not (every write
 * waits then). Once a write has failed for retry_max_age since its first
 * counted failure, or retry_max_attempts times, it is dead-lettered with
 * its last answer. Each failure is noted in the store's `stuck` table (what
 * `replication status` shows, and the budget spent, which a restart does
 * not reset).
 *
 * Connection generations: delivery tags belong to one channel. Every
 * reconnect starts a new generation; work of an older one is abandoned or,
 * if already applied, simply not acked (the broker redelivers it and the
 * ledger turns the redelivery into a skip). An old copy still being applied
 * stays in the pending list until its worker hands it back, and a
 * redelivered copy (same message id) always waits for it, so two copies are
 * never applied side by side. */
#include "replication/replicator.h"

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

#include "capture/config.h"
#include "http/httpc.h"
#include "replication/mq.h"
#include "capture/record.h"
#include "capture/redact.h"
#include "formats/repl_msg.h"
#include "replication/replicator_internal.h"
#include "store/store.h"
#include "base/util.h"

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

char *repl_resource_key(const char *target)
{
    buf b = BUF_INIT;
    const char *p = target ? target : "";
    while (*p && *p != '?') {
        while (*p == '/')
            p++;
        const char *seg = p;
        while (*p && *p != '/' && *p != '?')
            p++;
        if (p > seg) {
            buf_append_char(&b, '/');
            buf_append(&b, seg, (size_t)(p - seg));
        }
    }
    if (!b.len)
        buf_append_char(&b, '/');
    return buf_detach(&b);
}

/* Whether key a is b or a resource above it ("/a" is above "/a/b"; "/"
 * above everything). */
static bool key_covers(const char *a, const char *b)
{
    if (strcmp(a, "/") == 0)
        return true;
    size_t n = strlen(a);
    return strncmp(a, b, n) == 0 && (b[n] == '\0' || b[n] == '/');
}

bool repl_waits_for(const repl_okey *later, const repl_okey *earlier, int order, bool earlier_stuck)
{
    if (strcmp(later->id, earlier->id) == 0)
        return true; /* two copies are never applied side by side */
    if (order == APPLY_ORDER_ORIGIN)
        return strcmp(later->origin, earlier->origin) == 0;
    bool relaxed = order == APPLY_ORDER_RESOURCE;
    if (strcmp(later->key, earlier->key) == 0)
        return !(relaxed && later->post && earlier->post);
    if (earlier_stuck)
        return false;
    if (key_covers(earlier->key, later->key))
        return true; /* e.g. a member's write after a create in its collection */
    if (key_covers(later->key, earlier->key))
        return !(relaxed && later->post && !earlier->del);
    return false;
}

bool repl_stuck(int64_t first_failed_us, int64_t ok_us, int64_t now_us, uint64_t stuck_after_ms)
{
    if (!first_failed_us || ok_us <= first_failed_us)
        return false;
    return now_us - first_failed_us >= (int64_t)(stuck_after_ms * 1000);
}

bool repl_unreachable(const char *err)
{
    return strncmp(err, "connect: ", 9) == 0 || strncmp(err, "resolve ", 8) == 0;
}

bool repl_budget_spent(int64_t attempts, int64_t first_failed_us, int64_t now_us,
                       uint64_t max_age_ms, uint64_t max_attempts)
{
    if (attempts <= 0 || !first_failed_us)
        return false;
    if (max_attempts && (uint64_t)attempts >= max_attempts)
        return true;
    return max_age_ms && now_us - first_failed_us >= (int64_t)(max_age_ms * 1000);
}

char *repl_budget_reason(int64_t attempts, int64_t first_failed_us, int64_t now_us,
                         const char *last_answer)
{
    char d[32];
    util_fmt_duration(now_us - first_failed_us, d, sizeof d);
    buf b = BUF_INIT;
    buf_appendf(&b, "retry budget spent: %lld failed attempt%s in %s; last: %s",
                (long long)attempts, attempts == 1 ? "" : "s", d, last_answer ? last_answer : "-");
    return buf_detach(&b);
}

void repl_headers_remove(http_headers *h, const char *name)
{
    size_t nl = strlen(name), j = 0;
    for (size_t i = 0; i < h->len; i++) {
        if (util_ieq(h->v[i].name, strlen(h->v[i].name), name) && strlen(h->v[i].name) == nl) {
            http_header_clear(&h->v[i]);
        } else {
            h->v[j++] = h->v[i];
        }
    }
    h->len = j;
}

static void headers_set(http_headers *h, const char *name, const char *value)
{
    repl_headers_remove(h, name);
    http_headers_add(h, name, strlen(name), value, strlen(value));
}

int repl_apply_headers(const repl_msg *m, char *const *set_headers, http_headers *out)
{
    if (m->headers && repl_msg_headers(m, out) != 0)
        return -1;
    if (m->content_type && *m->content_type && !http_headers_get(out, "Content-Type"))
        http_headers_add(out, "Content-Type", 12, m->content_type, strlen(m->content_type));
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
        http_headers_add(out, name, strlen(name), v, vl);
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

enum { OUT_ABANDON = 0, OUT_ACK, OUT_DEAD, OUT_RETRY };

/* Where an item is: waiting for an earlier write (ST_WAIT), in the run
 * queue or being applied (ST_RUN: a worker's until it is back in the done
 * list), or waiting to be tried again (ST_BACKOFF). */
enum { ST_WAIT = 0, ST_RUN, ST_BACKOFF };

/* One delivery, from its arrival to its ack, dead letter or abandonment.
 * Allocated by dispatch, freed by the main thread. Its place in the order
 * (the fields marked "mu") is under r->mu. While ST_RUN and not settled it
 * belongs to the worker that took it (the fields "set by the worker");
 * otherwise to the main thread. */
typedef struct item {
    struct item *next;          /* mu: run queue or done list */
    struct item *pprev, *pnext; /* mu: the pending list */
    repl_msg *msg;
    char *key;    /* repl_resource_key of the target (heap) */
    repl_okey ok; /* borrows msg and key */
    uint64_t tag;
    uint64_t gen;
    int state;            /* mu */
    bool settled;         /* mu: applied or refused: holds nothing back any more */
    struct item *blocker; /* mu: ST_WAIT: the earlier item it was last seen waiting for */
    int64_t due_mono;     /* mu: ST_BACKOFF: when to try again */
    int64_t fail_since;   /* mu: first_failed_us, for the order's stuck test */
    unsigned tries;       /* attempts made in this process (the backoff's exponent) */
    /* the retry budget, from the stuck table at the first failure on */
    bool loaded;
    int64_t attempts;        /* failures that spent the budget */
    int64_t first_failed_us; /* wall clock; 0 = none yet */
    /* set by the worker */
    int outcome;
    char *reason;        /* OUT_DEAD: heap */
    const char *counter; /* OUT_ACK: counter to bump once acked, or NULL */
    char *answer;        /* OUT_RETRY: what the attempt got (heap) */
    bool spend;          /* OUT_RETRY: the failure spends the budget */
    bool answered;       /* the upstream gave an answer that is not a failure */
    int64_t started_us;  /* wall clock: when the attempt started */
} item;

typedef struct repl repl;

typedef struct worker {
    repl *r;
    pthread_t th;
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

    pthread_mutex_t mu; /* guards everything below, up to the main thread's part */
    pthread_cond_t cv;  /* workers: new item, new generation, stopping */
    item *run_head, *run_tail;
    item *done_head, *done_tail;
    uint64_t gen;
    bool stopping;
    /* The order: both the main thread (deliveries, backoffs, the end of an
     * item) and a worker (the moment its item is settled, so that what
     * waited for it starts without a round trip through the main thread)
     * schedule. */
    item *phead, *ptail; /* pending: every live delivery, in arrival order */
    size_t inflight;     /* items ST_RUN the main thread has not taken back */
    bool dirty;          /* the pending list changed: schedule again */
    int64_t ok_us;       /* start of the latest attempt the upstream answered (wall clock) */
    int64_t now_us;      /* wall clock of the current schedule pass */

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
    free(it->key);
    free(it->reason);
    free(it->answer);
    free(it);
}

/* ---- workers ---- */

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
static record *capture(repl *r, const repl_msg *m, http_headers *sent, httpc_response *resp,
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
    record_decode_bodies(rec, CAPTURE_CAP, CAPTURE_CAP, !redact_bodies(r->cfg));
    /* What is applied carries real credentials (--set-header); the row must
     * not. */
    redact_record(r->cfg, rec);
    return rec;
}

/* A failed attempt: the item is tried again later; spend says whether the
 * failure spends its retry budget. Takes answer (heap). */
static void failed(item *it, char *answer, bool spend)
{
    it->outcome = OUT_RETRY;
    free(it->answer);
    it->answer = answer;
    it->spend = spend;
}

/* At the item's first failure in this process: the budget it spent in an
 * earlier run (its stuck row), so that restarting the replicator does not
 * give a failing write a fresh budget. */
static void load_budget(repl *r, item *it)
{
    if (it->loaded)
        return;
    store_stuck row;
    char err[256] = "";
    pthread_mutex_lock(&r->ledger_mu);
    int rc = store_stuck_get(r->st, it->msg->id, &row, err, sizeof err);
    pthread_mutex_unlock(&r->ledger_mu);
    if (rc < 0) {
        logf_("reading the retry budget of %s failed: %s", it->msg->id, err);
        return; /* read again at its next failure */
    }
    it->loaded = true;
    if (rc == 1) {
        it->attempts = row.attempts;
        it->first_failed_us = row.first_failed_us;
        store_stuck_row_free(&row);
    }
}

/* The ledger lookup and the HTTP request of one attempt, with the headers
 * it is applied with. */
static void apply(worker *w, item *it, const http_headers *hdrs)
{
    repl *r = w->r;
    repl_msg *m = it->msg;
    char err[512] = "";
    pthread_mutex_lock(&r->ledger_mu);
    int has = store_ledger_has(r->st, m->id, err, sizeof err);
    pthread_mutex_unlock(&r->ledger_mu);
    if (has < 0) {
        buf a = BUF_INIT;
        buf_appendf(&a, "ledger lookup failed: %s", err);
        failed(it, buf_detach(&a), false);
        return;
    }
    if (has > 0) {
        /* Applied before (a redelivery), or skipped by an operator. */
        it->outcome = OUT_ACK;
        it->counter = has == 1 ? "deduplicated" : NULL;
        return;
    }
    httpc_response resp;
    int64_t t0 = util_now_us(), m0 = util_mono_us();
    int rc = httpc_request(w->hc, m->method, m->target, hdrs, m->body.data, m->body.len, &resp, err,
                           sizeof err);
    int64_t dur = util_mono_us() - m0;
    if (rc != 0) {
        /* Unreachable: nothing was sent, the message is not at fault. A
         * failure after the request went out (timeout, reset) may be. */
        failed(it, xstrdup(err), !repl_unreachable(err));
        httpc_response_free(&resp);
        return;
    }
    /* 408 and 429 say "later", not "never": retried like a 5xx. */
    if (resp.status >= 500 || resp.status == 408 || resp.status == 429) {
        failed(it, repl_dead_reason(resp.status, &resp.body), true);
        httpc_response_free(&resp);
        return;
    }
    it->answered = true;
    if (resp.status >= 400) {
        it->outcome = OUT_DEAD;
        it->reason = repl_dead_reason(resp.status, &resp.body);
        httpc_response_free(&resp);
        return;
    }
    /* Applied: the capture row and the ledger row commit together, and
     * only then may the message be acked. */
    http_headers sent = {0};
    for (size_t i = 0; i < hdrs->len; i++)
        http_headers_add(&sent, hdrs->v[i].name, strlen(hdrs->v[i].name), hdrs->v[i].value,
                         strlen(hdrs->v[i].value));
    record *rec = capture(r, m, &sent, &resp, t0, dur);
    httpc_response_free(&resp);
    pthread_mutex_lock(&w->cmu);
    w->cdone = false;
    pthread_mutex_unlock(&w->cmu);
    int status = -1;
    store_unit u = {.rec = rec, .rec_row = true, .applied_id = xstrdup(m->id)};
    if (store_submit_unit(r->st, &u, on_committed, w) == 0) {
        pthread_mutex_lock(&w->cmu);
        while (!w->cdone)
            pthread_cond_wait(&w->ccv, &w->cmu);
        status = w->cstatus;
        pthread_mutex_unlock(&w->cmu);
    }
    if (status == 0) {
        it->outcome = OUT_ACK;
        return;
    }
    /* Not recorded: apply again (same Idempotency-Key) rather than ack
     * something the ledger does not know. Not the message's fault. */
    failed(it, xstrdup("the store did not commit the ledger row"), false);
}

/* Makes one attempt at applying the item's message; sets it->outcome (and
 * reason, counter or answer). */
static void attempt(worker *w, item *it)
{
    repl *r = w->r;
    const config *cfg = r->cfg;
    repl_msg *m = it->msg;
    char why[256] = "";
    it->outcome = OUT_ABANDON;
    it->answered = false;
    it->started_us = util_now_us();

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
    http_headers hdrs = {0};
    if (repl_apply_headers(m, cfg->set_headers, &hdrs) != 0) {
        http_headers_free(&hdrs);
        it->outcome = OUT_DEAD;
        it->reason = xstrdup("malformed message: bad x-restspy-headers");
        return;
    }
    apply(w, it, &hdrs);
    http_headers_free(&hdrs);
    if (it->outcome == OUT_RETRY)
        load_budget(r, it);
}

static int64_t schedule_locked(repl *r);

static void *worker_main(void *arg)
{
    worker *w = arg;
    repl *r = w->r;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->run_head && !r->stopping)
            pthread_cond_wait(&r->cv, &r->mu);
        item *it = r->run_head;
        if (!it)
            break; /* stopping with nothing queued */
        r->run_head = it->next;
        if (!r->run_head)
            r->run_tail = NULL;
        it->next = NULL;
        bool skip = r->stopping || it->gen != r->gen;
        pthread_mutex_unlock(&r->mu);
        if (!skip)
            attempt(w, it);
        else
            it->outcome = OUT_ABANDON;
        pthread_mutex_lock(&r->mu);
        if (r->done_tail)
            r->done_tail->next = it;
        else
            r->done_head = it;
        r->done_tail = it;
        if (it->answered && it->started_us > r->ok_us)
            r->ok_us = it->started_us;
        if (it->outcome == OUT_ACK || it->outcome == OUT_DEAD) {
            /* Its effect is committed (or it is refused): what waited for
             * it may start now; the main thread acks it later. */
            it->settled = true;
            r->dirty = true;
            schedule_locked(r);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- the pending list and its order (under r->mu) ---- */

static void pending_add(repl *r, item *it)
{
    it->pprev = r->ptail;
    it->pnext = NULL;
    if (r->ptail)
        r->ptail->pnext = it;
    else
        r->phead = it;
    r->ptail = it;
    r->dirty = true;
}

/* Takes it out of the pending list and frees it. Main thread, mu held. */
static void finish_locked(repl *r, item *it)
{
    if (it->state == ST_RUN)
        r->inflight--;
    if (it->pprev)
        it->pprev->pnext = it->pnext;
    else
        r->phead = it->pnext;
    if (it->pnext)
        it->pnext->pprev = it->pprev;
    else
        r->ptail = it->pprev;
    for (item *p = r->phead; p; p = p->pnext)
        if (p->blocker == it)
            p->blocker = NULL;
    r->dirty = true;
    item_free(it);
}

static bool stuck(const repl *r, const item *it)
{
    return repl_stuck(it->fail_since, r->ok_us, r->now_us, r->cfg->stuck_after_ms);
}

static bool waits(const repl *r, const item *later, const item *earlier)
{
    return !earlier->settled &&
           repl_waits_for(&later->ok, &earlier->ok, r->cfg->apply_order, stuck(r, earlier));
}

static void run_item(repl *r, item *it)
{
    it->state = ST_RUN;
    r->inflight++;
    it->next = NULL;
    if (r->run_tail)
        r->run_tail->next = it;
    else
        r->run_head = it;
    r->run_tail = it;
    pthread_cond_signal(&r->cv);
}

/* Starts every pending item that may run now: a waiting one that no
 * earlier pending item holds back (apply_order), a backed-off one whose
 * time has come. Returns the monotonic time of the next backoff to end,
 * INT64_MAX for none. A waiting item remembers what held it back, so that
 * a long list is not scanned again and again. */
static int64_t schedule_locked(repl *r)
{
    int64_t now = util_mono_us(), next = INT64_MAX;
    r->now_us = util_now_us();
    bool dirty = r->dirty;
    r->dirty = false;
    for (item *it = r->phead; it; it = it->pnext) {
        if (it->state == ST_BACKOFF) {
            if (it->due_mono <= now)
                run_item(r, it);
            else if (it->due_mono < next)
                next = it->due_mono;
            continue;
        }
        if (it->state != ST_WAIT || !dirty)
            continue;
        if (it->blocker && waits(r, it, it->blocker))
            continue;
        it->blocker = NULL;
        for (item *e = r->phead; e != it; e = e->pnext) {
            if (waits(r, it, e)) {
                it->blocker = e;
                break;
            }
        }
        if (!it->blocker)
            run_item(r, it);
    }
    return next;
}

static int64_t schedule(repl *r)
{
    pthread_mutex_lock(&r->mu);
    int64_t next = schedule_locked(r);
    pthread_mutex_unlock(&r->mu);
    return next;
}

static void finish(repl *r, item *it)
{
    pthread_mutex_lock(&r->mu);
    finish_locked(r, it);
    pthread_mutex_unlock(&r->mu);
}

/* ---- the broker side (main thread) ---- */

static void dispatch(repl *r, repl_msg *msg, uint64_t tag)
{
    item *it = xcalloc(1, sizeof *it);
    it->msg = msg;
    it->tag = tag;
    it->key = repl_resource_key(msg->target);
    it->ok = (repl_okey){msg->id, msg->origin ? msg->origin : "", it->key,
                         msg->method && strcmp(msg->method, "POST") == 0,
                         msg->method && strcmp(msg->method, "DELETE") == 0};
    pthread_mutex_lock(&r->mu);
    it->gen = r->gen;
    it->state = ST_WAIT;
    pending_add(r, it);
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
    /* Their delivery tags died with the channel: the broker redelivers
     * them. Those a worker holds are dropped when they come back. */
    for (item *it = r->phead, *nx; it; it = nx) {
        nx = it->pnext;
        if (it->state != ST_RUN)
            finish_locked(r, it);
    }
    pthread_mutex_unlock(&r->mu);
}

/* Publishes the dead letter of it (reason set); its original is acked
 * once the broker confirms it. */
static void dead_letter(repl *r, item *it)
{
    char err[512] = "";
    if (mq_publish_dead(r->m, r->cfg->node, it->msg, it->reason, err, sizeof err) != 0) {
        lose_connection(r, err);
        return;
    }
    logf_("dead-lettered %s %s %s from %s: %s", it->msg->id,
          it->msg->method ? it->msg->method : "-", it->msg->target ? it->msg->target : "-",
          it->msg->origin ? it->msg->origin : "-", it->reason);
    /* A crash before the confirm dead-letters it twice, never zero times. */
    if (r->npend == r->cappend) {
        r->cappend = r->cappend ? r->cappend * 2 : 8;
        r->pend = xrealloc(r->pend, r->cappend * sizeof *r->pend);
    }
    r->pend[r->npend++] = (pending_dead){++r->pub_seq, it->tag};
    store_stuck_clear(r->st, it->msg->id);
}

/* A failed attempt: counted against the budget, then tried again after
 * the backoff, or dead-lettered with its last answer once the budget is
 * spent. */
static void retry_later(repl *r, item *it)
{
    const config *cfg = r->cfg;
    const repl_msg *m = it->msg;
    int64_t now = util_now_us();
    it->tries++;
    if (it->spend) {
        it->attempts++;
        if (!it->first_failed_us)
            it->first_failed_us = now;
        if (repl_budget_spent(it->attempts, it->first_failed_us, now, cfg->retry_max_age_ms,
                              cfg->retry_max_attempts)) {
            it->reason = repl_budget_reason(it->attempts, it->first_failed_us, now, it->answer);
            dead_letter(r, it);
            finish(r, it);
            return;
        }
    }
    uint64_t ms = repl_backoff_ms(it->tries - 1, cfg->retry_min_ms, cfg->retry_max_ms);
    logf_("apply %s %s %s: %s; retrying in %llu ms (%lld failed attempt%s counted)", m->id,
          m->method, m->target, it->answer ? it->answer : "-", (unsigned long long)ms,
          (long long)it->attempts, it->attempts == 1 ? "" : "s");
    store_stuck row = {.origin = m->origin,
                       .method = m->method,
                       .target = m->target,
                       .first_failed_us = it->first_failed_us,
                       .last_failed_us = now,
                       .attempts = it->attempts,
                       .last_answer = it->answer};
    snprintf(row.message_id, sizeof row.message_id, "%s", m->id);
    store_stuck_set(r->st, &row);
    pthread_mutex_lock(&r->mu);
    it->state = ST_BACKOFF;
    it->due_mono = util_mono_us() + (int64_t)(ms > INT64_MAX / 1000 ? INT64_MAX / 1000 : ms) * 1000;
    r->inflight--;
    it->fail_since = it->first_failed_us;
    r->dirty = true; /* its failure may make it stuck */
    pthread_mutex_unlock(&r->mu);
}

/* Acks, dead-letters or schedules again what the workers finished. */
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
        it->next = NULL;
        char err[512] = "";
        if (!r->m || it->gen != gen || it->outcome == OUT_ABANDON) {
            /* Unacked on a channel that is gone: the broker redelivers it. */
            finish(r, it);
        } else if (it->outcome == OUT_ACK) {
            if (mq_ack(r->m, it->tag, err, sizeof err) != 0)
                lose_connection(r, err);
            else if (it->counter)
                store_counter_add(r->st, it->counter, 1);
            if (it->tries)
                store_stuck_clear(r->st, it->msg->id); /* an apply clears it already */
            finish(r, it);
        } else if (it->outcome == OUT_DEAD) {
            dead_letter(r, it);
            finish(r, it);
        } else {
            retry_later(r, it);
        }
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
    } else if (ev.kind == MQ_RETURN) {
        /* A dead letter no queue took (restspy.dead.<node> was deleted):
         * its confirm will be an ack, which must not ack the original.
         * Dropping the connection leaves every original unacked (the
         * broker redelivers them) and the reconnect declares the topology,
         * so the next dead-lettering is kept. */
        char why[600];
        snprintf(why, sizeof why,
                 "dead letter %s returned by the broker (%s): declaring %s.%s again",
                 ev.msg && ev.msg->id[0] ? ev.msg->id : "?", ev.reason ? ev.reason : "unroutable",
                 MQ_EXCHANGE_DEAD, r->cfg->node);
        repl_msg_free(ev.msg);
        free(ev.reason);
        lose_connection(r, why);
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
     * capping one worker near 800 applies/s (bench/repl_lag.py). A write
     * held back behind another (apply_order) or backing off counts against
     * it too. */
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

static size_t inflight(repl *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->inflight;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* How long the next broker poll may wait: a moment while workers may
 * finish work (their acks go out between polls), else until the next
 * backoff ends, POLL_IDLE_MS at most. */
static int poll_wait_ms(repl *r, int64_t next_due_mono)
{
    if (inflight(r))
        return POLL_BUSY_MS;
    if (next_due_mono == INT64_MAX)
        return POLL_IDLE_MS;
    int64_t left = (next_due_mono - util_mono_us() + 999) / 1000;
    return left < 1 ? 1 : left > POLL_IDLE_MS ? POLL_IDLE_MS : (int)left;
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
        int64_t next = r->m ? schedule(r) : INT64_MAX;
        if (r->m)
            poll_once(r, poll_wait_ms(r, next), true);
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
    "amqp",
    "upstream",
    "node",
    "store",
    "config",
    "replicate_secret",
    "set_header",
    "concurrency",
    "apply_order",
    "prefetch",
    "retry_min",
    "retry_max",
    "stuck_after",
    "retry_max_age",
    "retry_max_attempts",
    "upstream_timeout",
    "amqp_heartbeat",
    "queue_type",
    "busy_timeout",
    "store_queue",
    "store_batch",
    "redact",
    "redact_headers",
    "redact_fields",
    NULL,
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
           "Upstream answers 4xx other than 408 and 429: dead-lettered to\n"
           "restspy.dead.NAME at once, with the status and a body excerpt. 5xx, 408,\n"
           "429, a timeout or a reset: retried with backoff until the retry budget\n"
           "(--retry-max-age, --retry-max-attempts) is spent, then dead-lettered with\n"
           "the last answer. An upstream that refuses connections is retried without\n"
           "spending the budget. A write waits only for the earlier writes its\n"
           "--apply-order names; one that keeps failing holds back its own resource\n"
           "only. SIGTERM/SIGINT stop it cleanly.\n"
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
        .drop_when_full = false, /* a ledger row is never dropped */
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

    /* The budget, for `restspy replication status` to say when a stuck
     * write will be dead-lettered. */
    store_counter_set(r.st, "retry_max_age_ms", (int64_t)cfg->retry_max_age_ms);
    store_counter_set(r.st, "retry_max_attempts", (int64_t)cfg->retry_max_attempts);
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
    /* What is left waits unacked: the broker redelivers it. */
    while (r.phead)
        finish(&r, r.phead);
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
