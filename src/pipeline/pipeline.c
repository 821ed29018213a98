/* pipeline: a finished pair's way to the sinks (see pipeline.h). Moved out
 * of the proxy's txn.c and commit.c so that `restspy collect` runs the very
 * same code. */
#include "pipeline/pipeline.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "base/uuid7.h"
#include "capture/redact.h"
#include "capture/rules.h"
#include "pipeline/stats.h"

/* ------------------------------------------------------------------ */
/* the sinks                                                           */

/* The outbox's broker connection lines (publisher thread; one fprintf per
 * line, so lines of several threads never mix). */
static void log_replication(void *ud, const char *line)
{
    (void)ud;
    fprintf(stderr, "restspy: replication: %s\n", line);
}

/* The store, when cfg has one (p->store stays NULL otherwise). */
static int open_store(pipeline_sinks *p, const config *cfg, char *err, size_t errlen)
{
    if (strcmp(cfg->store, "off") == 0)
        return 0;
    store_options o;
    store_options_from_config(&o, cfg);
    char why[512] = "";
    p->store = store_open(&o, why, sizeof why);
    if (p->store && cfg->amqp && store_check_replication(p->store, why, sizeof why) < 0) {
        util_seterr(err, errlen, "--amqp: %s", why);
        return -1;
    }
    if (!p->store || store_start(p->store, why, sizeof why) < 0) {
        util_seterr(err, errlen, "store: %s", why);
        return -1;
    }
    return 0;
}

/* The outbox's publisher, when cfg has a broker. */
static int open_outbox(pipeline_sinks *p, const config *cfg, char *err, size_t errlen)
{
    if (!cfg->amqp)
        return 0;
    if (!p->store) {
        util_seterr(err, errlen, "replication (amqp) needs a store for its outbox");
        return -1;
    }
    outbox_options oo = {
        .amqp_url = cfg->amqp,
        .node = cfg->node,
        .queue_type = cfg->queue_type,
        .heartbeat_s = (unsigned)(cfg->amqp_heartbeat_ms / 1000),
        .max_in_flight = 256,
        .retry_min_ms = cfg->retry_min_ms,
        .retry_max_ms = cfg->retry_max_ms,
        .log = log_replication,
        .log_interval_ms = cfg->amqp_log_interval_ms,
    };
    char why[512] = "";
    p->ob = outbox_start(p->store, &oo, why, sizeof why);
    if (!p->ob) {
        util_seterr(err, errlen, "outbox: %s", why);
        return -1;
    }
    p->replicating = true;
    return 0;
}

int pipeline_open(pipeline_sinks *p, const config *cfg, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    unsigned jflags =
        (cfg->log_headers ? RECORD_JSON_HEADERS : 0u) | (cfg->log_bodies ? RECORD_JSON_BODIES : 0u);
    char why[512] = "";
    p->log = logsink_open(cfg->log, cfg->log_format, jflags, why, sizeof why);
    if (!p->log) {
        util_seterr(err, errlen, "log: %s", why);
        return -1;
    }
    if (open_store(p, cfg, err, errlen) < 0 || open_outbox(p, cfg, err, errlen) < 0) {
        pipeline_close(p);
        return -1;
    }
    atomic_store(&g_flags.log, strcmp(cfg->log, "off") != 0);
    atomic_store(&g_flags.persist, p->store != NULL);
    atomic_store(&g_flags.replicate, p->replicating);
    return 0;
}

void pipeline_close(pipeline_sinks *p)
{
    outbox_stop(p->ob);    /* unconfirmed rows stay in the outbox for the next start */
    store_close(p->store); /* commits every record still queued */
    logsink_close(p->log);
    p->ob = NULL;
    p->store = NULL;
    p->log = NULL;
    p->replicating = false;
}

/* ------------------------------------------------------------------ */
/* the decision and the outbox message                                 */

/* A replicator applies a write with Idempotency-Key: <message id>, and
 * records its own capture row under that id. When the write reaches a front
 * end on its way to the app (a proxy between the replicator and the app, or
 * the Django adapter's daemon recording the view), the front end's row takes
 * the same id, so the store keeps one row per applied write (inserts ignore
 * an id already stored) instead of two. The trade-off: a client that forges
 * both headers chooses its row's id, and an id already stored keeps its
 * row; forging X-Restspy-Replicated-From already keeps a write from
 * replicating, which is why replicators should sign (replicate_secret). */
static void peer_id(record *r)
{
    const char *key = http_headers_get(&r->req_headers, "idempotency-key");
    char id[UUID7_STR_LEN + 1];
    if (key && uuid7_canonical(key, strlen(key), id) == 0)
        memcpy(r->id, id, sizeof r->id);
}

capture_decision pipeline_decide(const pipeline_sinks *p, const config *cfg, record *r,
                                 const rule *matched, bool from_peer, bool upgrade)
{
    assert(!r->rule);
    const rule *deciding = matched ? matched : rules_default(cfg->rules, cfg->rules_len);
    capture_input in = {
        .rule = matched,
        .method = r->method,
        .method_len = r->method ? strlen(r->method) : 0,
        .from_peer = from_peer,
        .upgrade = upgrade,
        .flag_log = atomic_load_explicit(&g_flags.log, memory_order_relaxed),
        .flag_persist = atomic_load_explicit(&g_flags.persist, memory_order_relaxed),
        .flag_replicate = atomic_load_explicit(&g_flags.replicate, memory_order_relaxed),
        .rule_switches = rules_switches(deciding),
        .have_store = p->store != NULL,
        .have_amqp = p->replicating,
        .log_bodies = cfg->log_bodies,
    };
    capture_decision d = capture_decide(cfg, &in);
    r->rule = xstrdup(d.rule->name);
    if (from_peer) {
        /* A peer's replicator applied it: its own record, never ours. */
        free(r->origin);
        r->origin = xstrdup("replicated");
        peer_id(r);
    }
    r->do_log = d.log;
    r->do_persist = d.persist;
    r->do_replicate = d.replicate;
    return d;
}

bool pipeline_status_replicates(const config *cfg, int status)
{
    return cfg->replicate_on == REPL_ON_ANY || (status >= 200 && status < 300);
}

/* The origin's answer in m (protocol version 2), so a peer can tell when
 * its own answer differs. The digest covers the response body as captured
 * here, before content decoding, and only when the capture holds all of it
 * (the SHA-256 of a prefix would report every long body as diverged); the
 * hash is paid only by writes that replicate. */
static void set_answer(repl_msg *m, const record *r)
{
    if (r->status < 100 || r->status > 599)
        return; /* no answer (replicate_on = any): a version-1 message */
    bool whole = !r->resp_truncated && r->resp_body.len == r->resp_body_size;
    repl_msg_set_answer(m, r->status, whole ? &r->resp_body : NULL);
}

repl_msg *pipeline_outbox(const pipeline_sinks *p, const config *cfg, record *r, bool wanted,
                          bool too_big, bool complete, buf *body)
{
    if (!wanted)
        return NULL;
    if (too_big) {
        r->replication = xstrdup("skipped: body over replicate_max_body");
        store_counter_add(p->store, "not_replicated", 1);
        return NULL;
    }
    if (!complete)
        return NULL;
    repl_msg *m = repl_msg_from_record(r, cfg->node, body, cfg->replicate_drop_headers);
    set_answer(m, r);
    r->replication = xstrdup("queued");
    return m;
}

/* ------------------------------------------------------------------ */
/* commits (sync durability)                                           */

struct pipeline_box {
    pthread_mutex_t lock;
    int refs;
    bool open;
    uv_async_t *async;
    pipeline_deliver_fn deliver;
    pipeline_ticket *head; /* newest first */
};

struct pipeline_ticket {
    void *owner; /* NULL once the owner is gone */
    int status;
    pipeline_box *box;
    pipeline_ticket *next;
};

static void box_unref(pipeline_box *b)
{
    pthread_mutex_lock(&b->lock);
    int left = --b->refs;
    pthread_mutex_unlock(&b->lock);
    if (left == 0) {
        while (b->head) {
            pipeline_ticket *t = b->head;
            b->head = t->next;
            free(t);
        }
        pthread_mutex_destroy(&b->lock);
        free(b);
    }
}

/* On the store's writer thread: post the ticket to its box's loop. */
static void on_commit_thread(void *ud, int status)
{
    pipeline_ticket *t = ud;
    pipeline_box *b = t->box;
    pthread_mutex_lock(&b->lock);
    if (b->open) {
        t->status = status;
        t->next = b->head;
        b->head = t;
        uv_async_send(b->async);
    } else {
        free(t);
    }
    pthread_mutex_unlock(&b->lock);
    box_unref(b);
}

static void on_commit_async(uv_async_t *a)
{
    pipeline_box *b = a->data;
    pthread_mutex_lock(&b->lock);
    pipeline_ticket *list = b->head;
    b->head = NULL;
    pthread_mutex_unlock(&b->lock);
    /* The list is newest first; answer in commit order. */
    pipeline_ticket *rev = NULL;
    while (list) {
        pipeline_ticket *next = list->next;
        list->next = rev;
        rev = list;
        list = next;
    }
    while (rev) {
        pipeline_ticket *t = rev;
        rev = t->next;
        if (t->owner)
            b->deliver(t->owner, t->status);
        free(t);
    }
}

pipeline_box *pipeline_box_open(uv_loop_t *loop, uv_async_t *async, pipeline_deliver_fn deliver)
{
    pipeline_box *b = xcalloc(1, sizeof *b);
    pthread_mutex_init(&b->lock, NULL);
    b->refs = 1;
    b->open = true;
    b->async = async;
    b->deliver = deliver;
    uv_async_init(loop, async, on_commit_async);
    async->data = b;
    return b;
}

void pipeline_box_close(pipeline_box *b)
{
    pthread_mutex_lock(&b->lock);
    b->open = false;
    uv_async_t *async = b->async;
    b->async = NULL;
    pthread_mutex_unlock(&b->lock);
    uv_close((uv_handle_t *)async, NULL);
    box_unref(b);
}

void pipeline_ticket_forget(pipeline_ticket *t)
{
    t->owner = NULL;
}

/* A ticket for owner's commit: the box stays until it is reported. */
static pipeline_ticket *ticket_new(pipeline_box *b, void *owner)
{
    pipeline_ticket *t = xcalloc(1, sizeof *t);
    t->owner = owner;
    t->box = b;
    pthread_mutex_lock(&b->lock);
    b->refs++;
    pthread_mutex_unlock(&b->lock);
    return t;
}

/* ------------------------------------------------------------------ */
/* the record to the sinks                                             */

/* Whether msg will carry the origin's body: a version-2 message and a
 * setting that allows it. The body itself is known only after redaction. */
static bool wants_origin_body(const config *cfg, const repl_msg *msg)
{
    return msg && cfg->replicate_origin_body_max && repl_msg_version(msg) == 2;
}

/* The origin's body in msg, as the store keeps it (decoded and redacted:
 * what goes to a peer's broker holds no more secrets than the store), when
 * it is whole and small enough; then the signature, which covers it. */
static void finish_msg(const config *cfg, const record *r, repl_msg *msg)
{
    if (wants_origin_body(cfg, msg) && !r->resp_truncated && !r->resp_body_note &&
        r->resp_body.len <= cfg->replicate_origin_body_max)
        repl_msg_set_origin_body(msg, r->resp_body.data, r->resp_body.len);
    repl_msg_sign(msg, cfg->replicate_secret);
}

pipeline_ticket *pipeline_sink(const pipeline_sinks *p, const config *cfg, const rule *ru,
                               record *r, repl_msg *msg, pipeline_box *box, void *owner)
{
    if (r->do_log || r->do_persist || wants_origin_body(cfg, msg)) {
        /* Redaction must see the decoded bodies (and the msg message
         * kept the request as it was sent). */
        assert(ru); /* the decision that set do_log and do_persist set it */
        record_decode_bodies(r, ru->req_body_cap, ru->resp_body_cap, !redact_bodies(cfg));
        redact_record(cfg, r);
    }
    if (msg)
        finish_msg(cfg, r, msg);
    /* A live console sees what the log and the store get. */
    if ((r->do_log || r->do_persist) && tap_wanted(p->tap))
        tap_publish(p->tap, r);
    /* Logged as JSON and persisted: encode the headers once for both. */
    if (r->do_log && r->do_persist && p->store && logsink_wants_headers_json(p->log))
        record_cache_headers_json(r);
    if (r->do_log) {
        logsink_write(p->log, r);
        STAT_INC(logged);
    }
    if (!p->store || (!r->do_persist && !msg)) {
        record_free(r);
        repl_msg_free(msg);
        return NULL;
    }
    /* The record and its msg row commit together (store_unit). */
    store_unit u = {.rec = r, .rec_row = r->do_persist, .outbox = msg};
    if (r->do_persist)
        STAT_INC(captured);
    if (!box) {
        store_submit_unit(p->store, &u, NULL, NULL); /* takes ownership, may wait */
        return NULL;
    }
    /* The ticket exists before the submit: the writer may commit before
     * store_submit_unit returns. */
    pipeline_ticket *t = ticket_new(box, owner);
    store_submit_unit(p->store, &u, on_commit_thread, t); /* may wait (backpressure) */
    return t;
}
