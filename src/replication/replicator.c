/* replicator: `restspy replicate`: the main thread (the broker side, the
 * pending list and its order), signals and the command line. The workers
 * are in replicator_apply.c, the pure decisions in replicator_policy.c;
 * replicator_state.h holds the state they share.
 *
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

#include <assert.h>
#include <pthread.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "capture/config.h"
#include "replication/mq.h"
#include "formats/receipt.h"
#include "formats/repl_msg.h"
#include "replication/replicator_internal.h"
#include "store/store.h"
#include "base/util.h"

#define POLL_BUSY_MS                                                                               \
    1 /* mq_poll wait while workers may finish work: their                                         \
         acks go out between polls */
#define POLL_IDLE_MS 200

static atomic_int g_stop; /* set by the signal thread */
static atomic_int g_sig_exit;

void repl_logf(const char *fmt, ...)
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
    if (it->state == ST_RUN) {
        assert(r->inflight > 0); /* every ST_RUN item is counted */
        r->inflight--;
    }
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
    assert(it->state == ST_WAIT || it->state == ST_BACKOFF); /* started once per attempt */
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
int64_t repl_schedule_locked(repl *r)
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
    int64_t next = repl_schedule_locked(r);
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

/* Forgets the dead letters waiting for their confirm (their originals come
 * back by redelivery) and the receipts they owed. */
static void pend_drop(repl *r)
{
    for (size_t i = 0; i < r->npend; i++)
        repl_msg_free(r->pend[i].receipt);
    r->npend = 0;
}

static void lose_connection(repl *r, const char *err)
{
    if (!r->m)
        return;
    repl_logf("broker connection lost: %s; reconnecting", err);
    mq_close(r->m);
    r->m = NULL;
    pend_drop(r);
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

/* ---- receipts (formats/receipt.h, docs/protocol.md section 10) ----
 *
 * Once the outcome of a peer's write is acked (applied, skipped, or
 * dead-lettered and the dead letter confirmed), the replicator tells the
 * write's origin with a receipt on its own restspy.requests, which the out
 * queues and shovels carry to every peer. Best effort: the channel is in
 * confirm mode, but nothing waits for a receipt's confirm or publishes it
 * again, and a receipt never delays or holds back a write's ack. */

/* The carrier of the receipt it owes its origin, or NULL when none. */
static repl_msg *receipt_of(const repl *r, const item *it)
{
    if (it->receipt < 0)
        return NULL;
    receipt rc = {.origin = it->msg->origin,
                  .node = r->cfg->node,
                  .outcome = (receipt_outcome)it->receipt,
                  .status = it->status,
                  .at_us = it->receipt_at_us ? it->receipt_at_us : util_now_us()};
    snprintf(rc.message_id, sizeof rc.message_id, "%s", it->msg->id);
    return receipt_to_msg(&rc, r->cfg->replicate_secret);
}

/* Publishes a receipt's carrier and frees it. A failed publish means a
 * dead connection: it is dropped like any other. */
static void send_receipt(repl *r, repl_msg *carrier)
{
    if (!carrier || !r->m) {
        repl_msg_free(carrier);
        return;
    }
    char err[512] = "";
    int rc = mq_publish_receipt(r->m, carrier, NULL, err, sizeof err);
    repl_msg_free(carrier);
    if (rc != 0) {
        lose_connection(r, err);
        return;
    }
    r->pub_seq++; /* its confirm has a tag too; nothing waits for it */
}

/* A receipt delivered to this node: recorded when it is about one of this
 * node's writes and authentic, then acked; any other is acked and dropped.
 * Never applied. Takes carrier. */
static void take_receipt(repl *r, repl_msg *carrier, uint64_t tag)
{
    receipt rc;
    char why[256] = "";
    if (receipt_from_msg(carrier, &rc, why, sizeof why) != 0) {
        repl_logf("dropped a receipt from %s: %s",
                  carrier->routing_key ? carrier->routing_key : "?", why);
    } else if (strcmp(rc.origin, r->cfg->node) == 0) {
        if (receipt_verify(carrier, r->cfg->replicate_secret, why, sizeof why) != 0) {
            repl_logf("dropped a receipt for %s from %s: %s", rc.message_id, rc.node, why);
        } else {
            store_receipt row = {.node = rc.node,
                                 .outcome = (char *)receipt_outcome_name(rc.outcome),
                                 .status = rc.status,
                                 .at_us = rc.at_us};
            snprintf(row.message_id, sizeof row.message_id, "%s", rc.message_id);
            store_receipt_put(r->st, &row);
        }
    }
    receipt_free(&rc);
    repl_msg_free(carrier);
    char err[512] = "";
    if (mq_ack(r->m, tag, err, sizeof err) != 0)
        lose_connection(r, err);
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
    repl_logf("dead-lettered %s %s %s from %s: %s", it->msg->id,
              it->msg->method ? it->msg->method : "-", it->msg->target ? it->msg->target : "-",
              it->msg->origin ? it->msg->origin : "-", it->reason);
    /* A crash before the confirm dead-letters it twice, never zero times. */
    if (r->npend == r->cappend) {
        r->cappend = r->cappend ? r->cappend * 2 : 8;
        r->pend = xrealloc(r->pend, r->cappend * sizeof *r->pend);
    }
    r->pend[r->npend++] = (pending_dead){++r->pub_seq, it->tag, receipt_of(r, it)};
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
            it->receipt = RECEIPT_DEAD_LETTERED;
            dead_letter(r, it);
            finish(r, it);
            return;
        }
    }
    uint64_t ms = repl_backoff_ms(it->tries - 1, cfg->retry_min_ms, cfg->retry_max_ms);
    repl_logf("apply %s %s %s: %s; retrying in %llu ms (%lld failed attempt%s counted)", m->id,
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
    assert(it->state == ST_RUN && r->inflight > 0); /* handed back by its worker */
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
            if (mq_ack(r->m, it->tag, err, sizeof err) != 0) {
                lose_connection(r, err);
            } else {
                if (it->counter)
                    store_counter_add(r->st, it->counter, 1);
                send_receipt(r, receipt_of(r, it));
            }
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
    /* The dead letters this confirm settles leave r->pend first, so that a
     * connection lost while they are handled cannot touch them twice. */
    size_t j = 0, nhit = 0;
    pending_dead *hit = xmalloc((r->npend ? r->npend : 1) * sizeof *hit);
    for (size_t i = 0; i < r->npend; i++) {
        pending_dead p = r->pend[i];
        if (ev->multiple ? p.pub_tag <= ev->tag : p.pub_tag == ev->tag)
            hit[nhit++] = p;
        else
            r->pend[j++] = p;
    }
    r->npend = j;
    for (size_t i = 0; i < nhit; i++) {
        pending_dead p = hit[i];
        hit[i].receipt = NULL;
        char err[512] = "";
        int rc = -1;
        if (!r->m) {
            repl_msg_free(p.receipt); /* the connection went while the others were handled */
            continue;
        }
        if (ev->nack) {
            /* The broker refused the dead letter: keep the original (it
             * comes back and is dead-lettered again). */
            repl_logf("broker refused a dead letter; requeueing the original");
            rc = mq_reject(r->m, p.delivery_tag, true, err, sizeof err);
            repl_msg_free(p.receipt);
        } else {
            rc = mq_ack(r->m, p.delivery_tag, err, sizeof err);
            if (rc == 0) {
                store_counter_add(r->st, "dead_lettered", 1);
                send_receipt(r, p.receipt);
            } else {
                repl_msg_free(p.receipt);
            }
        }
        if (rc != 0)
            lose_connection(r, err);
    }
    free(hit);
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
        if (ev.msg && take && ev.receipt)
            take_receipt(r, ev.msg, ev.tag);
        else if (ev.msg && take)
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
    if (r->wake_fd >= 0)
        mq_set_wake(m, r->wake_fd);
    r->pub_seq = 0;
    pend_drop(r);
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
        util_sleep_ms(50);
}

static size_t inflight(repl *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->inflight;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* How long the next broker poll may wait: until the next backoff ends,
 * POLL_IDLE_MS at most (a worker that hands an item back cuts it short
 * through wake_fd); without wake_fd, only a moment while workers may
 * finish work (their acks go out between polls). */
static int poll_wait_ms(repl *r, int64_t next_due_mono)
{
    if (r->wake_fd < 0 && inflight(r))
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
                    repl_logf("broker: %s; retrying (every %llu ms at most)", err,
                              (unsigned long long)r->cfg->retry_max_ms);
                snprintf(last_err, sizeof last_err, "%s", err);
                sleep_interruptible(ms);
                continue;
            }
            attempt = 0;
            last_err[0] = '\0';
            if (!announced)
                repl_logf("node %s: applying restspy.apply.%s to %s (concurrency %u)", r->cfg->node,
                          r->cfg->node, r->cfg->upstream, r->nw);
            else
                repl_logf("reconnected to the broker");
            announced = true;
        }
        handle_done(r);
        int64_t next = r->m ? schedule(r) : INT64_MAX;
        if (r->m)
            poll_once(r, poll_wait_ms(r, next), true);
    }

    /* Stop: no new work; what is being applied finishes (bounded by the
     * upstream timeout) and is acked; queued work is left unacked. */
    repl_logf("stopping: finishing the requests being applied");
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
            util_sleep_ms(POLL_BUSY_MS);
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
    "replicate_refused",
    "replicate_noise",
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

static void usage(void)
{
    printf("usage: restspy replicate --amqp URL --upstream URL --node NAME [options]\n\n"
           "Applies the requests that peer sites replicated (queue restspy.apply.NAME)\n"
           "to the local upstream, each exactly once: a message is acked only after\n"
           "its effect and its row in the store's `applied` ledger are committed.\n"
           "The ledger row says how the upstream's answer compared with the\n"
           "origin's, which the message carries: same, or diverged (restspy\n"
           "replication diverged lists those). Upstream answers 4xx other than 408\n"
           "and 429 to a write the origin accepted: recorded as diverged and acked\n"
           "(--replicate-refused dead-letter: dead-lettered instead); to a message\n"
           "that does not say what the origin answered (protocol version 1):\n"
           "dead-lettered to restspy.dead.NAME at once, with the status and a body\n"
           "excerpt. 5xx, 408,\n"
           "429, a timeout or a reset: retried with backoff until the retry budget\n"
           "(--retry-max-age, --retry-max-attempts) is spent, then dead-lettered with\n"
           "the last answer. An upstream that refuses connections is retried without\n"
           "spending the budget. A write waits only for the earlier writes its\n"
           "--apply-order names; one that keeps failing holds back its own resource\n"
           "only. SIGTERM/SIGINT stop it cleanly.\n"
           "Every option is also a config-file key and a RESTSPY_<KEY> variable.\n\n"
           "options:\n");
    config_print_keys(stdout, help_keys, false);
    printf("  %-28s %s\n", "--secret S", "same as --replicate-secret");
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
    config *cfg = NULL;
    int rc = config_load_command(&cfg, "replicate", argc, argv, envp);
    if (rc)
        return rc;
    if (!cfg->amqp) {
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
    r.wake_fd = -1;
    r.cfg = cfg;
    r.nw = cfg->concurrency > 0 ? (unsigned)cfg->concurrency : 1;
    r.w = xcalloc(r.nw, sizeof *r.w);
    /* An https upstream: the proxy's settings, under the same names. */
    hclient_opts ho = {.base = cfg->upstream,
                       .timeout_ms = cfg->upstream_timeout_ms,
                       .tls = {.ca_file = cfg->upstream_ca,
                               .insecure = cfg->upstream_insecure,
                               .cert_file = cfg->upstream_cert,
                               .key_file = cfg->upstream_key,
                               .sni = cfg->upstream_sni}};
    if (cfg->upstream_insecure && strncmp(cfg->upstream, "https:", 6) == 0)
        repl_logf("warning: upstream_insecure: the upstream's certificate is NOT verified");
    if (cfg->replicate_noise) {
        /* Read once: a rule file that cannot be used stops the start, as
         * any other bad setting, rather than report noise as divergence. */
        r.noise = noise_new();
        if (noise_load(r.noise, cfg->replicate_noise, err, sizeof err) != 0) {
            fprintf(stderr, "restspy replicate: replicate_noise: %s\n", err);
            noise_free(r.noise);
            free(r.w);
            config_unref(cfg);
            return 2;
        }
    }
    for (unsigned i = 0; i < r.nw; i++) {
        r.w[i].hc = hclient_sync_new(&ho, err, sizeof err);
        if (!r.w[i].hc) {
            fprintf(stderr, "restspy replicate: upstream: %s\n", err);
            for (unsigned j = 0; j < i; j++)
                hclient_sync_free(r.w[j].hc);
            free(r.w);
            noise_free(r.noise);
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

    store_options o;
    store_options_from_config(&o, cfg);
    o.drop_when_full = false; /* a ledger row is never dropped */
    r.st = store_open(&o, err, sizeof err);
    if (!r.st || store_check_replication(r.st, err, sizeof err) != 0 ||
        store_start(r.st, err, sizeof err) != 0) {
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
    r.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    for (unsigned i = 0; i < r.nw; i++) {
        worker *w = &r.w[i];
        w->r = &r;
        pthread_mutex_init(&w->cmu, NULL);
        pthread_cond_init(&w->ccv, NULL);
        pthread_create(&w->th, NULL, repl_worker_main, w);
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
    if (r.wake_fd >= 0)
        close(r.wake_fd);
    repl_logf("stopped");
    rc = 0;

out_sig:
    atomic_store(&g_sig_exit, 1);
    pthread_kill(sigth, SIGTERM); /* wakes sigwait: the thread sees g_sig_exit */
    pthread_join(sigth, NULL);
    sigaction(SIGPIPE, &oldpipe, NULL);
    pthread_sigmask(SIG_SETMASK, &oldset, NULL);
    for (unsigned i = 0; i < r.nw; i++)
        hclient_sync_free(r.w[i].hc);
    free(r.w);
    pend_drop(&r);
    free(r.pend);
    noise_free(r.noise);
    config_unref(cfg);
    return rc;
}
