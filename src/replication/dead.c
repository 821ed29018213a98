/* dead: lists, retries and skips the dead letters of restspy.dead.<node>;
 * see dead.h for what it promises about each message. */
#include "replication/dead.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/util.h"
#include "formats/repl_msg.h"
#include "http/headers.h"
#include "store/store.h"

void dead_result_free(dead_result *r)
{
    for (size_t i = 0; i < r->len; i++) {
        repl_msg_free(r->v[i].ev.msg);
        free(r->v[i].ev.reason);
    }
    free(r->v);
    free(r->stuck_id);
    r->v = NULL;
    r->len = r->cap = 0;
    r->stuck_id = NULL;
}

long dead_find_id(const char *const *ids, size_t n, const char *id)
{
    size_t len = strlen(id);
    long found = -1;
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(ids[i], id) == 0)
            return (long)i;
        if (len >= DEAD_PREFIX_MIN && strncasecmp(ids[i], id, len) == 0) {
            if (found >= 0)
                return -2;
            found = (long)i;
        }
    }
    return found;
}

/* dead_find_id over the dead letters of r. */
static long find_dead(const dead_result *r, const char *id)
{
    const char **ids = xcalloc(r->len + 1, sizeof *ids);
    for (size_t i = 0; i < r->len; i++)
        ids[i] = r->v[i].ev.msg->id;
    long k = dead_find_id(ids, r->len, id);
    free(ids);
    return k;
}

/* dead_find_id over the stuck rows v[0..n). */
static long find_stuck(const store_stuck *v, size_t n, const char *id)
{
    const char **ids = xcalloc(n + 1, sizeof *ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = v[i].message_id;
    long k = dead_find_id(ids, n, id);
    free(ids);
    return k;
}

/* Appends "headers":[[name,value],...] (null when m has none readable). */
static void json_headers(const repl_msg *m, buf *b)
{
    http_headers h = {0};
    buf_append_str(b, ",\"headers\":");
    if (!m->headers || repl_msg_headers(m, &h) != 0) {
        buf_append_str(b, "null");
        http_headers_free(&h);
        return;
    }
    buf_append_char(b, '[');
    for (size_t i = 0; i < h.len; i++) {
        buf_append_str(b, i ? ",[" : "[");
        buf_append_json_str(b, h.v[i].name, strlen(h.v[i].name));
        buf_append_char(b, ',');
        buf_append_json_str(b, h.v[i].value, strlen(h.v[i].value));
        buf_append_char(b, ']');
    }
    buf_append_char(b, ']');
    http_headers_free(&h);
}

void dead_json(const dead_letter *d, bool whole, buf *b)
{
    const repl_msg *m = d->ev.msg;
    buf_append_str(b, "{\"id\":");
    buf_append_json_str(b, m->id, strlen(m->id));
    buf_json_add_str(b, "origin", m->origin);
    buf_json_add_str(b, "method", m->method);
    buf_json_add_str(b, "target", m->target);
    buf_appendf(b, ",\"timestamp\":%lld", (long long)m->timestamp);
    buf_json_add_str(b, "reason", d->ev.reason);
    if (!whole) {
        buf_appendf(b, ",\"body_size\":%zu,\"retried\":%s,\"skipped\":%s}", m->body.len,
                    d->retry && d->confirmed ? "true" : "false", d->skipped ? "true" : "false");
        return;
    }
    size_t shown = m->body.len < DEAD_SHOW_BODY_MAX ? m->body.len : DEAD_SHOW_BODY_MAX;
    buf_json_add_str(b, "content_type", m->content_type);
    buf_appendf(b, ",\"signed\":%s", m->signature ? "true" : "false");
    json_headers(m, b);
    buf_appendf(b, ",\"body_size\":%zu,\"body\":", m->body.len);
    buf_append_json_str(b, m->body.data ? m->body.data : "", shown);
    buf_appendf(b, ",\"body_truncated\":%s}", shown < m->body.len ? "true" : "false");
}

/* Takes every message of r->queue (unacked, so that a crash gives them
 * back) into r. 0, or -1 with err. */
static int take_all(mq *m, dead_result *r, char *err, size_t errlen)
{
    for (;;) {
        mq_event ev;
        int got = mq_get(m, r->queue, &ev, err, errlen);
        if (got <= 0)
            return got;
        if (r->len == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 16;
            r->v = xrealloc(r->v, r->cap * sizeof *r->v);
        }
        memset(&r->v[r->len], 0, sizeof r->v[0]);
        r->v[r->len++].ev = ev;
    }
}

/* Records the skip of id in c->store's ledger: a dead letter's (origin
 * given), or, origin NULL, a write the replicator still retries, named by
 * its id or a unique prefix of it among the stuck rows (r->stuck_id gets
 * its whole id). DEAD_OK or a DEAD_E* code with err. */
static int skip_in_ledger(const config *c, const char *id, const char *origin, dead_result *r,
                          char *err, size_t errlen)
{
    store_options o = {
        .url = c->store,
        .queue_max = 1,
        .batch_max = 1,
        .busy_timeout_ms = c->busy_timeout_ms,
    };
    /* Opened without its writer: the skip commits its own transaction. */
    store *st = store_open(&o, err, errlen);
    if (!st)
        return DEAD_ESTORE;
    store_stuck *v = NULL;
    size_t n = 0;
    int64_t total = 0;
    long k = 0;
    int rc = DEAD_OK;
    bool stuck = !origin;
    if (!origin && store_stuck_list(st, SIZE_MAX, &v, &n, &total, err, errlen) < 0) {
        rc = DEAD_ESTORE;
    } else if (!origin && (k = find_stuck(v, n, id)) < 0) {
        if (k == -2) {
            util_seterr(err, errlen, "id prefix %s is ambiguous", id);
            rc = DEAD_EAMBIGUOUS;
        } else {
            util_seterr(err, errlen, "no dead letter in %s and no stuck write with id %s", r->queue,
                        id);
            rc = DEAD_ENOTFOUND;
        }
    } else {
        if (!origin) {
            id = v[k].message_id;
            origin = v[k].origin;
        }
        if (store_ledger_skip(st, id, origin, err, errlen) < 0)
            rc = DEAD_ESTORE;
        else if (stuck)
            r->stuck_id = xstrdup(id);
    }
    store_stuck_free(v, n);
    store_close(st);
    return rc;
}

/* Answers the confirm ev for the republishes of r; *waiting and *nacked
 * count down and up. */
static void on_confirm(dead_result *r, const mq_event *ev, size_t *waiting, size_t *nacked)
{
    for (size_t i = 0; i < r->len; i++) {
        dead_letter *d = &r->v[i];
        if (!d->retry || d->confirmed || !d->pub_tag)
            continue;
        if (d->pub_tag == ev->tag || (ev->multiple && d->pub_tag < ev->tag)) {
            d->pub_tag = 0; /* answered */
            (*waiting)--;
            if (ev->nack || d->returned)
                (*nacked)++;
            else
                d->confirmed = true;
        }
    }
}

/* Republishes the messages marked retry to r->apply_queue, with publisher
 * confirms, and waits for the broker to confirm them (d->confirmed). 0, or
 * -1 with err (a message left unconfirmed stays in the dead queue). */
static int republish(mq *m, dead_result *r, char *err, size_t errlen)
{
    if (mq_confirm_select(m, err, errlen) < 0)
        return -1;
    uint64_t tag = 0;
    size_t waiting = 0, nacked = 0;
    for (size_t i = 0; i < r->len; i++) {
        dead_letter *d = &r->v[i];
        if (!d->retry)
            continue;
        if (mq_publish_to_queue(m, r->apply_queue, d->ev.msg, err, errlen) < 0)
            return -1;
        d->pub_tag = ++tag; /* confirms number publishes from 1 on the channel */
        waiting++;
    }
    int64_t deadline = util_mono_us() + DEAD_CONFIRM_WAIT_MS * 1000LL;
    while (waiting) {
        int64_t left_ms = (deadline - util_mono_us()) / 1000;
        if (left_ms <= 0) {
            util_seterr(err, errlen, "the broker did not confirm %zu republished message(s)",
                        waiting);
            return -1;
        }
        mq_event ev;
        if (mq_poll(m, (int)left_ms, &ev, err, errlen) < 0)
            return -1;
        if (ev.kind == MQ_RETURN) {
            /* The apply queue is gone: its ack will follow, but nothing
             * holds the message, so it must stay in the dead queue. */
            for (size_t i = 0; i < r->len; i++)
                if (r->v[i].retry && ev.msg && strcmp(r->v[i].ev.msg->id, ev.msg->id) == 0)
                    r->v[i].returned = true;
        } else if (ev.kind == MQ_CONFIRM) {
            on_confirm(r, &ev, &waiting, &nacked);
        }
        /* MQ_DELIVERY is not expected: nothing is consumed */
        repl_msg_free(ev.msg);
        free(ev.reason);
    }
    if (nacked) {
        util_seterr(err, errlen,
                    "the broker refused or could not route %zu republished message(s) (is %s "
                    "there? the replicator declares it when it starts); they stay dead-lettered",
                    nacked, r->apply_queue);
        return -1;
    }
    return 0;
}

/* Marks (and for a skip, records) what op asks on the messages of r.
 * DEAD_OK or a DEAD_E* code with err. */
static int decide(const config *c, dead_op op, const char *id, dead_result *r, char *err,
                  size_t errlen)
{
    if (op == DEAD_LIST)
        return DEAD_OK;
    if (op == DEAD_RETRY_ALL) {
        for (size_t i = 0; i < r->len; i++)
            r->v[i].retry = true;
        return DEAD_OK;
    }
    long k = find_dead(r, id);
    if (k == -2) {
        util_seterr(err, errlen, "id prefix %s is ambiguous", id);
        return DEAD_EAMBIGUOUS;
    }
    if (k < 0 && op == DEAD_SKIP)
        return skip_in_ledger(c, id, NULL, r, err, errlen);
    if (k < 0) {
        util_seterr(err, errlen, "no dead letter with id %s in %s%s", id, r->queue,
                    strlen(id) < DEAD_PREFIX_MIN ? " (a prefix needs 8 characters or more)" : "");
        return DEAD_ENOTFOUND;
    }
    r->named = k;
    dead_letter *d = &r->v[k];
    if (op == DEAD_RETRY)
        d->retry = true;
    if (op == DEAD_SKIP) {
        int rc = skip_in_ledger(c, d->ev.msg->id, d->ev.msg->origin, r, err, errlen);
        if (rc != DEAD_OK)
            return rc;
        d->skipped = true; /* recorded: only now may it leave the dead queue */
    }
    return DEAD_OK;
}

/* Confirmed republishes and recorded skips leave the dead queue; everything
 * else goes back as it was. 0, or -1 with err (after a connection failure
 * the broker requeues whatever was not acked by itself). */
static int give_back(mq *m, const dead_result *r, char *err, size_t errlen)
{
    for (size_t i = 0; i < r->len; i++) {
        const dead_letter *d = &r->v[i];
        int rc = (d->retry && d->confirmed) || d->skipped
                     ? mq_ack(m, d->ev.tag, err, errlen)
                     : mq_reject(m, d->ev.tag, true, err, errlen);
        if (rc < 0)
            return -1;
    }
    return 0;
}

int dead_run(const config *c, dead_op op, const char *id, const char *client_name, dead_result *out,
             char *err, size_t errlen)
{
    assert(op == DEAD_LIST || op == DEAD_RETRY_ALL || (id && *id));
    assert(c->amqp && *c->amqp);
    out->named = -1;
    snprintf(out->queue, sizeof out->queue, "restspy.dead.%s", c->node);
    snprintf(out->apply_queue, sizeof out->apply_queue, "restspy.apply.%s", c->node);
    if (op == DEAD_SKIP && (!c->store || strcmp(c->store, "off") == 0)) {
        util_seterr(err, errlen, "a skip is recorded in the store's ledger, and the store is off");
        return DEAD_ENOSTORE;
    }
    mq *m = mq_connect(c->amqp, (unsigned)(c->amqp_heartbeat_ms / 1000), client_name, err, errlen);
    if (!m)
        return DEAD_EBROKER;
    int rc = take_all(m, out, err, errlen) < 0 ? DEAD_EBROKER : DEAD_OK;
    if (rc == DEAD_OK)
        rc = decide(c, op, id, out, err, errlen);
    bool any_retry = false;
    for (size_t i = 0; i < out->len; i++)
        any_retry |= out->v[i].retry;
    if (rc == DEAD_OK && any_retry &&
        (mq_declare_topology(m, c->node, c->queue_type, err, errlen) < 0 ||
         republish(m, out, err, errlen) < 0))
        rc = DEAD_EBROKER;
    /* The first error is the one to tell: give_back writes its own only
     * when there was none. */
    char gerr[256];
    if (give_back(m, out, gerr, sizeof gerr) < 0 && rc == DEAD_OK) {
        util_seterr(err, errlen, "%s", gerr);
        rc = DEAD_EBROKER;
    }
    mq_close(m);
    return rc;
}
