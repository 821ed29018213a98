/* replay_conn: the connections of a run to the target (see replay_run.h):
 * each takes a job, waits for its time when pacing, connects or reuses its
 * keep-alive socket, writes the request, parses the answer (decoding its
 * Content-Encoding up to max_decoded) and delivers it; timeouts, retries of
 * a reused socket the server had closed, and errors end a job with one
 * error text. */
#include "replay/replay_run.h"

#include <assert.h>
#include <llhttp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "base/iostream.h"
#include "base/util.h"
#include "http/httpmsg.h"
#include "replay/replay.h"

/* A Content-Length above this is not trusted for preallocating the body. */
#define PREALLOC_MAX (1024 * 1024)

static llhttp_settings_t resp_settings;

static void conn_go(conn *c);

/* ------------------------------------------------------------------ */
/* jobs                                                                */

/* Hands the next job to c. False when none is available now. */
static bool take_job(run *r, conn *c)
{
    assert(!c->has_job); /* one request per connection at a time */
    if (r->stopping || r->taken >= r->total)
        return false;
    if (r->parts) {
        if (r->nheap == 0)
            return false;
        size_t pi = replay_parts_pop(r);
        rpart *p = &r->parts[pi];
        c->loop = (unsigned)(p->next / p->n);
        c->ci = p->pos[p->next % p->n];
        p->next++;
    } else {
        c->loop = (unsigned)(r->taken / r->ncases);
        c->ci = (size_t)(r->taken % r->ncases);
    }
    r->taken++;
    c->has_job = true;
    c->retried = false;
    return true;
}

void replay_run_progress(run *r)
{
    if (!r->pcb)
        return;
    replay_progress p = {r->total, r->done, r->errors, (double)(util_mono_us() - r->t0) / 1e6};
    r->pcb(r->pud, &p);
}

/* Keeps an answer the callback did not take for the connection's next one:
 * a steady run then allocates only the header strings per answer. Anything
 * unusual (a field the callback set, a big body) is simply freed. */
static void recycle(conn *c, record *g)
{
    if (!c || c->spare || g->node || g->client_addr || g->method || g->scheme || g->host ||
        g->path || g->query || g->rule || g->origin || g->error || g->replication ||
        g->req_headers.v || g->req_body.data || g->resp_encoding || g->resp_body_note ||
        g->headers_json[0].data || g->headers_json[1].data || g->resp_body.cap > PREALLOC_MAX) {
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
    c->spare = g;
}

/* Hands the answer to the caller; the job is over. c: the connection that
 * got it (NULL when none did). */
void replay_deliver(run *r, conn *c, size_t ci, unsigned loop, record *got, const char *error)
{
    assert(r->done < r->total); /* exactly one callback per case and loop */
    rcase *k = &r->cases[ci];
    replay_answer a = {k->view ? k->view : k->rec, got, error, k->index, loop};
    r->done++;
    if (error)
        r->errors++;
    r->cb(r->ud, &a);
    if (a.got)
        recycle(c, a.got);
    if (r->parts) {
        rpart *p = &r->parts[k->part];
        if (p->next < p->total && !r->stopping)
            replay_parts_push(r, k->part);
    }
    if (r->done == r->total)
        replay_close_all(r);
}

void replay_conn_deliver(conn *c, const char *error)
{
    assert(c->has_job);
    record *got = error ? NULL : c->got;
    if (error && c->got)
        recycle(c, c->got);
    c->got = NULL;
    c->has_job = false;
    if (c->st == C_WAIT)
        uv_timer_stop(&c->timer); /* stopped while waiting for its time */
    c->st = C_IDLE;
    c->deadline = 0;
    replay_deliver(c->r, c, c->ci, c->loop, got, error);
}

/* Wakes connections waiting for a partition while some are ready. */
static void wake_idle(run *r)
{
    while (r->nidle && r->nheap && !r->stopping && !r->finishing) {
        conn *c = r->idle[--r->nidle];
        c->in_idle = false;
        replay_conn_next(c);
    }
}

/* ------------------------------------------------------------------ */
/* sockets                                                             */

void replay_conn_on_closed(uv_handle_t *h)
{
    conn *c = h->data;
    c->tcp_open = false;
    c->closing = false;
    cafter after = c->after;
    c->after = AFTER_NOTHING;
    if (c->r->finishing)
        return;
    if (after == AFTER_GO)
        conn_go(c);
    else if (after == AFTER_NEXT)
        replay_conn_next(c);
}

void replay_conn_close(conn *c, cafter after)
{
    c->after = after;
    c->connected = false;
    if (!c->tcp_open || c->closing) {
        if (!c->tcp_open) {
            c->after = AFTER_NOTHING;
            if (after == AFTER_GO)
                conn_go(c);
            else if (after == AFTER_NEXT)
                replay_conn_next(c);
        }
        return;
    }
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, replay_conn_on_closed);
}

/* The job failed: report it, drop the socket, go on with the next job. */
static void conn_fail(conn *c, const char *error)
{
    if (error != c->err)
        snprintf(c->err, sizeof c->err, "%s", error);
    replay_conn_deliver(c, c->err);
    if (c->r->finishing)
        return;
    replay_conn_close(c, AFTER_NEXT);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    conn *c = h->data;
    *b = uv_buf_init(c->r->readbuf, READBUF_LEN);
}

static void conn_complete(conn *c, bool reusable)
{
    record *got = c->got;
    got->upstream_us = util_mono_us() - c->t_send;
    /* Recordings hold decoded bodies: a compressed answer is compared,
     * learned from and reported decoded too (resp_encoding says it was
     * compressed; one that cannot be decoded stays as received, with an
     * "undecoded: ..." note). After the latency: decoding is not the
     * target's time. Only compressed answers pay for it. */
    if (got->resp_body.len && http_headers_get(&got->resp_headers, "content-encoding"))
        record_decode_bodies(got, 0, c->r->max_decoded, true);
    got->duration_us = got->upstream_us;
    got->started_at_us = c->r->wall0 + (c->t_send - c->r->t0);
    c->served++;
    replay_conn_deliver(c, NULL);
    if (c->r->finishing)
        return;
    if (reusable && c->connected)
        replay_conn_next(c);
    else
        replay_conn_close(c, AFTER_NEXT);
}

/* A kept-alive socket the server closed before answering: once, on a new one. */
static bool conn_maybe_retry(conn *c)
{
    if (c->resp_started || c->served == 0 || c->retried || c->st != C_BUSY)
        return false;
    c->retried = true;
    recycle(c, c->got);
    c->got = NULL;
    replay_conn_close(c, AFTER_GO);
    return true;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn *c = s->data;
    if (n == 0)
        return;
    if (c->st != C_BUSY) {
        /* Idle or waiting: the server closed the socket or sent bytes
         * nobody asked for; either way it is not reused. */
        replay_conn_close(c, AFTER_NOTHING);
        return;
    }
    assert(c->has_job && c->got); /* C_BUSY: the answer is being built */
    if (n < 0) {
        c->connected = false;
        if (n == UV_EOF && c->resp_started) {
            /* A body delimited by the close ends here. */
            llhttp_errno_t e = llhttp_finish(&c->parser);
            if ((e == HPE_OK || e == HPE_PAUSED) && c->resp_done) {
                conn_complete(c, false);
                return;
            }
        }
        if (conn_maybe_retry(c))
            return;
        if (n == UV_EOF)
            conn_fail(c, "connection closed");
        else {
            snprintf(c->err, sizeof c->err, "read: %s", uv_strerror((int)n));
            conn_fail(c, c->err);
        }
        return;
    }
    if (!c->resp_started) {
        /* The callback will read the recorded answer (to compare): start
         * loading it while the parser runs; with 100,000 cases it is rarely
         * in the cache any more. */
        const rcase *k = &c->r->cases[c->ci];
        const char *rec = (const char *)(k->view ? k->view : k->rec);
        for (size_t off = 0; off < sizeof(record); off += 64)
            __builtin_prefetch(rec + off);
    }
    c->resp_started = true;
    llhttp_errno_t e = llhttp_execute(&c->parser, b->base, (size_t)n);
    if (e == HPE_PAUSED && c->resp_done) {
        /* Bytes after the answer: the socket's framing cannot be trusted. */
        const char *pos = llhttp_get_error_pos(&c->parser);
        bool extra = pos && pos < b->base + n;
        conn_complete(c, c->keep_alive && !extra);
        return;
    }
    if (e != HPE_OK) {
        snprintf(c->err, sizeof c->err, "invalid response: %s",
                 llhttp_get_error_reason(&c->parser) ? llhttp_get_error_reason(&c->parser)
                                                     : llhttp_errno_name(e));
        conn_fail(c, c->err);
    }
}

static void conn_send(conn *c, int64_t now)
{
    run *r = c->r;
    rcase *k = &r->cases[c->ci];
    /* a job on an open socket; the last answer was delivered or recycled */
    assert(c->has_job && c->connected && !c->got);
    llhttp_init(&c->parser, HTTP_RESPONSE, &resp_settings);
    c->parser.data = c;
    c->resp_started = c->resp_done = false;
    httpmsg_hcollect_reset(&c->hc);
    if (c->spare) {
        c->got = c->spare;
        c->spare = NULL;
    } else {
        c->got = xcalloc(1, sizeof *c->got);
        c->got->upstream_us = -1;
    }
    c->st = C_BUSY;
    c->t_send = now;
    uv_buf_t b = uv_buf_init((char *)k->wire, (unsigned)k->wlen); /* only read */
    int rc = io_write((uv_stream_t *)&c->tcp, &b, 1, NULL);
    if (rc < 0) {
        c->connected = false;
        if (conn_maybe_retry(c))
            return;
        snprintf(c->err, sizeof c->err, "write: %s", uv_strerror(rc));
        conn_fail(c, c->err);
    }
}

static void on_connected(uv_connect_t *req, int status)
{
    conn *c = req->data;
    if (c->st != C_CONNECTING || c->closing || c->r->finishing)
        return; /* timed out or stopped meanwhile */
    if (status < 0) {
        snprintf(c->err, sizeof c->err, "connect: %s", uv_strerror(status));
        conn_fail(c, c->err);
        return;
    }
    c->connected = true;
    c->served = 0;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    conn_send(c, util_mono_us());
}

static void on_timer(uv_timer_t *t)
{
    conn *c = t->data;
    if (c->st == C_WAIT) {
        conn_go(c);
        return;
    }
    if (c->sync_err) {
        snprintf(c->err, sizeof c->err, "connect: %s", uv_strerror(c->sync_err));
        c->sync_err = 0;
        conn_fail(c, c->err);
        return;
    }
}

void replay_on_sweep(uv_timer_t *t)
{
    run *r = t->data;
    int64_t now = util_mono_us();
    for (unsigned i = 0; i < r->nconns && !r->finishing; i++) {
        conn *c = &r->conns[i];
        if (c->deadline && now >= c->deadline && (c->st == C_CONNECTING || c->st == C_BUSY))
            conn_fail(c, "timeout");
    }
}

/* Sends c's job now: on the open socket, or after connecting. */
static void conn_go(conn *c)
{
    run *r = c->r;
    if (r->finishing || !c->has_job)
        return;
    if (r->stopping) {
        replay_conn_deliver(c, "stopped");
        return;
    }
    if (c->closing) {
        c->after = AFTER_GO;
        return;
    }
    /* The timeout covers connect and answer; a retry keeps the first one's. */
    int64_t now = util_mono_us();
    if (!c->deadline)
        c->deadline = now + (int64_t)r->timeout_ms * 1000;
    if (c->connected) {
        conn_send(c, now);
        return;
    }
    c->st = C_CONNECTING;
    uv_tcp_init(&r->loop, &c->tcp);
    c->tcp.data = c;
    c->tcp_open = true;
    c->creq.data = c;
    int rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&r->addr, on_connected);
    if (rc < 0) {
        /* Reported from the timer, never from here: a target refusing at
         * once must not recurse through every remaining job. */
        c->sync_err = rc;
        uv_timer_start(&c->timer, on_timer, 0, 0);
    }
}

/* Takes the next job, waits for its time when pacing, then sends it. */
void replay_conn_next(conn *c)
{
    run *r = c->r;
    if (r->finishing || c->has_job)
        return;
    if (!take_job(r, c)) {
        if (r->parts && r->taken < r->total && !r->stopping) {
            if (!c->in_idle) {
                c->in_idle = true;
                r->idle[r->nidle++] = c;
            }
        } else if (c->tcp_open && !c->closing) {
            replay_conn_close(c, AFTER_NOTHING); /* nothing left for it */
        }
        return;
    }
    wake_idle(r);
    if (r->o->speed > 0) {
        rcase *k = &r->cases[c->ci];
        int64_t due = r->t0 + k->due_us + (int64_t)c->loop * r->loop_span_us;
        int64_t now = util_mono_us();
        if (due > now) {
            c->st = C_WAIT;
            uv_timer_start(&c->timer, on_timer, (uint64_t)((due - now + 999) / 1000), 0);
            return;
        }
    }
    conn_go(c);
}

/* ------------------------------------------------------------------ */
/* response parsing                                                    */

static int r_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    conn *c = p->data;
    httpmsg_hcollect_name(&c->hc, at, len);
    return 0;
}

static int r_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    conn *c = p->data;
    return httpmsg_hcollect_value(&c->hc, at, len, NULL);
}

static int r_on_header_value_complete(llhttp_t *p)
{
    conn *c = p->data;
    return httpmsg_hcollect_done(&c->hc, &c->got->resp_headers); /* -1: not a token */
}

static int r_on_headers_complete(llhttp_t *p)
{
    conn *c = p->data;
    int status = p->status_code;
    if (status >= 100 && status < 200) {
        if (status == 101)
            return -1; /* nobody asked for an upgrade */
        /* Interim answer: the final one follows. */
        http_headers_free(&c->got->resp_headers);
        return 0;
    }
    c->got->status = status;
    if (p->content_length > 0 && p->content_length <= PREALLOC_MAX &&
        (p->flags & F_CONTENT_LENGTH) && !c->r->cases[c->ci].head)
        buf_reserve(&c->got->resp_body, (size_t)p->content_length);
    return c->r->cases[c->ci].head ? 1 : 0;
}

static int r_on_body(llhttp_t *p, const char *at, size_t len)
{
    conn *c = p->data;
    buf_append(&c->got->resp_body, at, len);
    return 0;
}

static int r_on_message_complete(llhttp_t *p)
{
    conn *c = p->data;
    if (c->got->status == 0)
        return 0; /* end of an interim answer */
    c->got->resp_body_size = c->got->resp_body.len;
    c->resp_done = true;
    c->keep_alive = llhttp_should_keep_alive(p);
    return HPE_PAUSED;
}

void replay_conn_settings_init(void)
{
    llhttp_settings_init(&resp_settings);
    resp_settings.on_header_field = r_on_header_field;
    resp_settings.on_header_value = r_on_header_value;
    resp_settings.on_header_value_complete = r_on_header_value_complete;
    resp_settings.on_headers_complete = r_on_headers_complete;
    resp_settings.on_body = r_on_body;
    resp_settings.on_message_complete = r_on_message_complete;
}
