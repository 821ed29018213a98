/* replay_slot: the slots of a run (see replay_run.h): each takes a job,
 * waits for its time when pacing, hands the case's prepared request to the
 * run's hclient (which keeps the connections alive, retries a reused one
 * the server had closed, and bounds the request by its timeout), and
 * delivers the answer, decoded of its Content-Encoding up to max_decoded,
 * or one error text. */
#include "replay/replay_run.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "base/util.h"
#include "replay/replay.h"

/* A body buffer above this is not kept for the next answer. */
#define RECYCLE_MAX (1024 * 1024)

static void slot_go(slot *s);

/* ------------------------------------------------------------------ */
/* jobs                                                                */

/* Hands the next job to s. False when none is available now. */
static bool take_job(run *r, slot *s)
{
    assert(!s->has_job); /* one request per slot at a time */
    if (r->stopping || r->taken >= r->total)
        return false;
    /* Nothing in flight (replay_slot_next): the last substituted request
     * can go. */
    assert(!s->inflight);
    replay_slot_sub_free(s);
    if (r->parts) {
        if (r->nheap == 0)
            return false;
        size_t pi = replay_parts_pop(r);
        rpart *p = &r->parts[pi];
        s->loop = (unsigned)(p->next / p->n);
        s->ci = p->pos[p->next % p->n];
        p->next++;
    } else {
        s->loop = (unsigned)(r->taken / r->ncases);
        s->ci = (size_t)(r->taken % r->ncases);
    }
    r->taken++;
    s->has_job = true;
    return true;
}

void replay_run_progress(run *r)
{
    if (!r->pcb)
        return;
    replay_progress p = {r->total, r->done, r->errors, (double)(util_mono_us() - r->t0) / 1e6};
    r->pcb(r->pud, &p);
}

/* Keeps an answer the callback did not take for the slot's next one: a
 * steady run then allocates only the header strings per answer. Anything
 * unusual (a field the callback set, a big body) is simply freed. */
static void recycle(slot *s, record *g)
{
    if (!s || s->spare || g->node || g->client_addr || g->method || g->scheme || g->host ||
        g->path || g->query || g->rule || g->origin || g->error || g->replication ||
        g->req_headers.v || g->req_body.data || g->resp_encoding || g->resp_body_note ||
        g->headers_json[0].data || g->headers_json[1].data || g->resp_body.cap > RECYCLE_MAX) {
        record_free(g);
        return;
    }
    http_headers h = g->resp_headers;
    http_headers_reset(&h);
    buf b = g->resp_body;
    buf_reset(&b);
    memset(g, 0, sizeof *g);
    g->resp_headers = h;
    g->resp_body = b;
    g->upstream_us = -1;
    s->spare = g;
}

/* correlate: what the answer to k teaches, then the recorded response as
 * the target should have given it (a new record, or NULL when nothing in
 * it was mapped). */
static record *correlate_answer(run *r, const rcase *k, const record *sent, const record *got)
{
    if (!r->o->correlate || !r->parts || !got)
        return NULL;
    const char *client = r->parts[k->part].client;
    corr_learn(r->o->correlate, client, k->index, k->rec, got);
    return corr_expected(r->o->correlate, client, sent);
}

void replay_deliver(run *r, slot *s, size_t ci, unsigned loop, record *got, const char *error)
{
    assert(r->done < r->total); /* exactly one callback per case and loop */
    rcase *k = &r->cases[ci];
    /* The slot's substituted request, when this is its job's. */
    const rcase *sent = s && s->sub.rec ? &s->sub : k;
    replay_answer a = {sent->view ? sent->view : sent->rec, got, error, k->index, loop, NULL, 0};
    if (sent != k) {
        a.subs = s->subs.v;
        a.nsubs = s->subs.n;
    }
    record *expected = correlate_answer(r, k, a.sent, got);
    if (expected)
        a.sent = expected;
    r->done++;
    if (error)
        r->errors++;
    r->cb(r->ud, &a);
    record_free(expected);
    if (a.got)
        recycle(s, a.got);
    if (r->parts) {
        rpart *p = &r->parts[k->part];
        if (p->next < p->total && !r->stopping)
            replay_parts_push(r, k->part);
    }
    if (r->done == r->total)
        replay_close_all(r);
}

/* Ends s's job; the slot is free for the next one. */
static void slot_deliver(slot *s, record *got, const char *error)
{
    assert(s->has_job);
    s->has_job = false;
    if (s->waiting) {
        uv_timer_stop(&s->timer); /* stopped while waiting for its time */
        s->waiting = false;
    }
    replay_deliver(s->r, s, s->ci, s->loop, got, error);
}

void replay_slot_drop(slot *s, const char *error)
{
    if (s->has_job)
        slot_deliver(s, NULL, error);
}

/* Wakes slots waiting for a partition while some are ready. */
static void wake_idle(run *r)
{
    while (r->nidle && r->nheap && !r->stopping && !r->finishing) {
        slot *s = r->idle[--r->nidle];
        s->in_idle = false;
        replay_slot_next(s);
    }
}

/* ------------------------------------------------------------------ */
/* answers                                                             */

/* replay's words for two of hclient's failures (its reports and tests
 * name them so); the others as hclient says them. */
static const char *error_text(slot *s, const hclient_result *res)
{
    if (res->fail == HCLIENT_CONNECT && res->oserr) {
        snprintf(s->err, sizeof s->err, "connect: %s",
                 uv_strerror(uv_translate_sys_error(res->oserr)));
        return s->err;
    }
    if (res->fail == HCLIENT_CLOSED)
        return "connection closed";
    snprintf(s->err, sizeof s->err, "%s", res->error);
    return s->err;
}

/* The answer, taken from hclient into a record of the slot's own. */
static record *take_answer(slot *s, hclient_result *res)
{
    run *r = s->r;
    record *got = s->spare;
    s->spare = NULL;
    if (!got) {
        got = xcalloc(1, sizeof *got);
        got->upstream_us = -1;
    }
    /* Swap: hclient keeps the record's emptied buffers for its next one. */
    http_headers h = got->resp_headers;
    got->resp_headers = res->headers;
    res->headers = h;
    buf b = got->resp_body;
    got->resp_body = res->body;
    res->body = b;
    got->status = res->status;
    got->resp_body_size = got->resp_body.len;
    got->upstream_us = res->total_us;
    /* Recordings hold decoded bodies: a compressed answer is compared,
     * learned from and reported decoded too (resp_encoding says it was
     * compressed; one that cannot be decoded stays as received, with an
     * "undecoded: ..." note). After the latency: decoding is not the
     * target's time. Only compressed answers pay for it. */
    if (got->resp_body.len && http_headers_get(&got->resp_headers, "content-encoding"))
        record_decode_bodies(got, 0, r->max_decoded, true);
    got->duration_us = got->upstream_us;
    got->started_at_us = res->started_us;
    return got;
}

static void on_answer(void *ud, hclient_result *res)
{
    slot *s = ud;
    run *r = s->r;
    assert(s->inflight);
    s->inflight = false;
    if (!s->has_job || r->finishing)
        return; /* stopped meanwhile: its "stopped" was delivered */
    if (res->error)
        slot_deliver(s, NULL, error_text(s, res));
    else
        slot_deliver(s, take_answer(s, res), NULL);
    replay_slot_next(s);
}

/* ------------------------------------------------------------------ */
/* pacing and starting                                                 */

/* Ends s's job with why it cannot be sent (s->err), and goes on. */
static void slot_fail(slot *s)
{
    slot_deliver(s, NULL, s->err);
    replay_slot_next(s);
}

static void on_timer(uv_timer_t *t)
{
    slot *s = t->data;
    s->waiting = false;
    if (!s->has_job)
        return;
    rcase *k = &s->r->cases[s->ci];
    if (!k->msg) {
        snprintf(s->err, sizeof s->err, "%s", k->bad);
        slot_fail(s);
        return;
    }
    slot_go(s);
}

/* A request that its substitutions made unsendable (a value that would
 * break the framing): its job ends with why. */
static void on_substituted_bad(uv_timer_t *t)
{
    slot *s = t->data;
    s->waiting = false;
    if (s->has_job)
        slot_fail(s);
}

/* The message to send for k: its prepared one, or with correlate the
 * request with the values learned so far substituted (prepared into
 * s->sub), or NULL when that one cannot be sent (s->sub.bad says why). */
static const hclient_msg *correlate_request(slot *s, rcase *k)
{
    run *r = s->r;
    if (!r->o->correlate || !r->parts)
        return k->msg;
    record *sub = corr_apply(r->o->correlate, r->parts[k->part].client, k->rec, &s->subs);
    if (!sub)
        return k->msg;
    s->sub.rec = sub;
    s->sub.index = k->index;
    s->sub.part = k->part;
    replay_case_prepare(&s->sub, r->o, r->client);
    return s->sub.msg;
}

/* Starts s's job now. */
static void slot_go(slot *s)
{
    run *r = s->r;
    if (r->finishing || !s->has_job)
        return;
    if (r->stopping) {
        slot_deliver(s, NULL, "stopped");
        return;
    }
    rcase *k = &r->cases[s->ci];
    if (!k->msg) {
        /* Reported from the timer, never from here: a run of unsendable
         * cases must not recurse through every remaining job. */
        s->waiting = true;
        uv_timer_start(&s->timer, on_timer, 0, 0);
        return;
    }
    assert(!s->inflight); /* the last request's callback came */
    const hclient_msg *msg = correlate_request(s, k);
    if (!msg) {
        snprintf(s->err, sizeof s->err, "%s", s->sub.bad);
        s->waiting = true; /* reported from the timer, as above */
        uv_timer_start(&s->timer, on_substituted_bad, 0, 0);
        return;
    }
    s->inflight = true;
    hclient_start(r->client, msg, r->timeout_ms, on_answer, s);
}

void replay_slot_next(slot *s)
{
    run *r = s->r;
    if (r->finishing || s->has_job || s->inflight)
        return;
    if (!take_job(r, s)) {
        if (r->parts && r->taken < r->total && !r->stopping && !s->in_idle) {
            s->in_idle = true;
            r->idle[r->nidle++] = s;
        }
        return;
    }
    wake_idle(r);
    if (r->o->speed > 0) {
        rcase *k = &r->cases[s->ci];
        int64_t due = r->t0 + k->due_us + (int64_t)s->loop * r->loop_span_us;
        int64_t now = util_mono_us();
        if (due > now) {
            s->waiting = true;
            uv_timer_start(&s->timer, on_timer, (uint64_t)((due - now + 999) / 1000), 0);
            return;
        }
    }
    slot_go(s);
}
