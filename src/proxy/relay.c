/* relay: the upstream side of a request (see proxy.h).
 *
 * Owns what goes to and comes from the upstream for the request in flight:
 * a connection from the pool (upstream.c), the request head and body sent
 * (queued while it connects, corked while a read is parsed), the response
 * parsed and relayed to the client (re-framed when chunked), the upstream
 * timeout, one retry of a bodyless request on a pooled connection found
 * dead, and after a 101 the tunnel's upstream half. */
#include "proxy/proxy_internal.h"

#include <assert.h>
#include <stdio.h>

#include "base/util.h"
#include "pipeline/stats.h"

/* ------------------------------------------------------------------ */
/* sending (client -> upstream)                                        */

/* Empties the connect queue. Its memory is kept for the next request's head
 * (regrowing it cost four reallocations per request), unless a body that
 * queued while the upstream connected made it large. */
void upq_clear(conn *c)
{
    if (c->upq.cap > 16 * 1024)
        buf_free(&c->upq);
    else
        buf_reset(&c->upq);
}

/* Sends bytes (n <= 3 pieces) toward the upstream, queueing them while it
 * connects and gathering them while the upstream cork is on. */
void relay_send(conn *c, const uv_buf_t *bufs, unsigned n)
{
    if (c->txn.body_drain)
        return;
    assert(!c->txn.up_ready || c->txn.up);
    if (!c->txn.up_ready) {
        for (unsigned i = 0; i < n; i++)
            buf_append(&c->upq, bufs[i].base, bufs[i].len);
        return;
    }
    if (io_cork_take(&c->ucork, bufs, n))
        return;
    uv_buf_t v[4];
    unsigned m = io_cork_gather(&c->ucork, bufs, n, v);
    int rc = upstream_write(c->txn.up, v, m);
    io_cork_clear(&c->ucork);
    if (rc < 0)
        txn_fail(c, 502, "upstream unreachable", "write failed");
}

/* Sends what the upstream cork gathered and turns it off. */
void relay_uncork(conn *c)
{
    c->ucork.on = false;
    if (c->ucork.b.len && c->txn.up_ready && !c->closing)
        relay_send(c, NULL, 0);
    io_cork_clear(&c->ucork);
}

/* Forwards one piece of request body, re-framed when chunked. */
void relay_send_body(conn *c, const char *at, size_t len)
{
    if (!c->txn.req_chunked) {
        uv_buf_t b = uv_buf_init((char *)at, (unsigned)len);
        relay_send(c, &b, 1);
        return;
    }
    char head[24];
    int hl = snprintf(head, sizeof head, "%zx\r\n", len);
    uv_buf_t b[3] = {uv_buf_init(head, (unsigned)hl), uv_buf_init((char *)at, (unsigned)len),
                     uv_buf_init("\r\n", 2)};
    relay_send(c, b, 3);
}

/* ------------------------------------------------------------------ */
/* upstream events                                                     */

static void start_upstream_timer(conn *c);

/* TLS with the upstream failed: the error names the upstream and says why
 * ("upstream certificate verify failed: ..."); a response already started
 * is cut instead. */
static void fail_tls(conn *c, const char *why)
{
    char e[300];
    snprintf(e, sizeof e, "upstream %s", why);
    txn_fail(c, c->txn.resp_started ? 0 : 502, e, NULL);
}

static void on_up_connect(void *owner, upstream_conn *up, int status, const char *why)
{
    conn *c = owner;
    (void)up;
    if (status < 0) {
        c->txn.up = NULL; /* already closed by the pool */
        if (why)
            fail_tls(c, why);
        else if (status == UV_ETIMEDOUT)
            txn_fail(c, 504, "upstream timeout", "connect");
        else
            txn_fail(c, 502, "upstream unreachable", uv_strerror(status));
        return;
    }
    c->txn.up_ready = true;
    c->txn.up_t0 = util_mono_us();
    /* Through the cork: a pooled connection is ready while the request is
     * still being parsed, and its head then leaves with the body. */
    uv_buf_t b = uv_buf_init(c->upq.data, (unsigned)c->upq.len);
    relay_send(c, &b, 1); /* copies what it does not write at once */
    upq_clear(c);
    if (c->closing)
        return; /* the write failed: answered 502 */
    start_upstream_timer(c);
    if (upstream_queued(c->txn.up) < IO_LOW_WATER)
        unpause_client(c);
}

static void on_up_drain(void *owner, upstream_conn *up)
{
    conn *c = owner;
    (void)up;
    unpause_client(c);
}

static void tunnel_from_upstream(conn *c, const char *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    client_write(c, &b, 1);
}

void start_tunnel(conn *c, const char *rest, size_t restlen)
{
    /* The handshake is the record (logged, never persisted: what follows is
     * not HTTP). */
    assert(c->txn.rec && c->txn.upgrade_req && c->txn.up);
    c->ph = PH_TUNNEL;
    STAT_INC(upgrades);
    c->txn.rec->do_persist = false;
    upstream_conn *up = c->txn.up;
    c->txn.up = NULL; /* keep the connection out of txn_close_record */
    txn_close_record(c, false);
    c->txn.up = up;
    c->txn.up_ready = true;
    if (restlen)
        tunnel_from_upstream(c, rest, restlen);
    if (c->pending.len) {
        uv_buf_t b = uv_buf_init(c->pending.data, (unsigned)c->pending.len);
        upstream_write(c->txn.up, &b, 1);
        buf_free(&c->pending);
    }
    uv_timer_stop(&c->ctimer);
    client_resume_reading(c);
}

static const upstream_handler up_handler;
static const llhttp_settings_t resp_settings;

/* The response is complete. Usually so is the request; but an upstream may
 * answer before the request body has all arrived (an endpoint that ignores
 * the body). The request still ends where its body ends: the rest of the
 * body is read and captured (and kept for replication) but no longer
 * forwarded, the upstream connection (which expected it) is closed, and the
 * transaction ends in client_feed once the body is complete. Ending it here
 * would capture a partial body, skip its replication although the client
 * was answered, and close the client's connection. */
static void resp_complete(conn *c)
{
    if (c->txn.req_done || c->txn.upgrade_req) {
        txn_finish(c);
        return;
    }
    uv_timer_stop(&c->utimer);
    if (c->txn.up) {
        upstream_release(c->txn.up, false);
        c->txn.up = NULL;
    }
    c->txn.up_ready = false;
    c->txn.up_paused = false;
    buf_free(&c->upq);
    io_cork_clear(&c->ucork);
    c->txn.body_drain = true;
    unpause_client(c);
}

static void on_up_data(void *owner, upstream_conn *up, const char *data, size_t len)
{
    conn *c = owner;
    (void)up;
    assert(up == c->txn.up); /* the pool reports only to the current owner */
    if (c->ph == PH_TUNNEL) {
        tunnel_from_upstream(c, data, len);
        return;
    }
    if (c->txn.resp_done)
        return; /* bytes after a complete response: ignored, not reused */
    uv_timer_again(&c->utimer);
    if (c->txn.resp_crlf && !httpmsg_chunk_crlf(&c->txn.resp_crlf, data, len)) {
        c->txn.up_keepalive = false;
        txn_fail(c, 0, "upstream sent an invalid response", "no CRLF after chunk data");
        return;
    }
    c->ccork.on = true;
    c->rfeed_end = data + len;
    llhttp_errno_t err = llhttp_execute(&c->rp, data, len);
    client_uncork(c);
    if (c->closing)
        return;
    if (err == HPE_PAUSED_UPGRADE) {
        const char *pos = llhttp_get_error_pos(&c->rp);
        start_tunnel(c, pos, (size_t)(data + len - pos));
        return;
    }
    if (err != HPE_OK && err != HPE_PAUSED) {
        c->txn.up_keepalive = false;
        const char *why = c->txn.resp_err ? c->txn.resp_err : "upstream sent an invalid response";
        const char *detail = c->txn.resp_err ? NULL : llhttp_get_error_reason(&c->rp);
        txn_fail(c, c->txn.resp_started ? 0 : 502, why, detail);
        return;
    }
    if (c->txn.resp_done)
        resp_complete(c);
}

static void on_up_eof(void *owner, upstream_conn *up, int status)
{
    conn *c = owner;
    (void)up;
    assert(up == c->txn.up);
    if (c->ph == PH_TUNNEL) {
        conn_close(c, true);
        return;
    }
    c->txn.up_keepalive = false;
    if (status == UV_EOF && c->txn.resp_started && !c->txn.resp_done) {
        /* A body delimited by the close completes here. */
        llhttp_errno_t err = llhttp_finish(&c->rp);
        if (c->closing)
            return;
        if (err == HPE_OK && c->txn.resp_done) {
            resp_complete(c);
            return;
        }
    }
    if (c->txn.resp_done) {
        resp_complete(c);
        return;
    }
    if (!c->txn.resp_started && !c->txn.retried && c->uphead.len && c->txn.req_done) {
        /* A pooled connection the backend had closed: the request had no
         * body, so send it once more on a fresh connection. */
        c->txn.retried = true;
        upstream_release(c->txn.up, false);
        uv_timer_stop(&c->utimer);
        buf_free(&c->upq);
        c->upq = c->uphead;
        buf_init(&c->uphead);
        llhttp_init(&c->rp, HTTP_RESPONSE, &resp_settings);
        c->rp.data = c;
        http_headers_free(&c->txn.rec->resp_headers);
        buf_reset(&c->reason);
        c->txn.resp_head_bytes = 0;
        c->txn.up_ready = false;
        bool ready;
        c->txn.up = upstream_acquire(c->w->pool, &up_handler, c, true, &ready);
        return;
    }
    const char *tls_err = upstream_tls_error(up);
    if (tls_err) {
        fail_tls(c, tls_err);
        return;
    }
    const char *what = status == UV_EOF ? "connection closed" : uv_strerror(status);
    txn_fail(c, c->txn.resp_started ? 0 : 502, "upstream unreachable", what);
}

static const upstream_handler up_handler = {on_up_connect, on_up_data, on_up_eof, on_up_drain};

static void on_utimer(uv_timer_t *t)
{
    conn *c = t->data;
    if (c->txn.rec && !c->txn.resp_done)
        txn_fail(c, c->txn.resp_started ? 0 : 504, "upstream timeout", NULL);
}

static void start_upstream_timer(conn *c)
{
    uint64_t ms = c->txn.cfg->upstream_timeout_ms;
    uv_timer_start(&c->utimer, on_utimer, ms, ms);
}

/* ------------------------------------------------------------------ */
/* response parsing (upstream -> client)                               */

/* Refuses the response being parsed: 502 with why (or a cut answer once
 * it has started). */
static int resp_refuse(conn *c, const char *why)
{
    c->txn.resp_err = why;
    return -1;
}

/* The response head's size, like the request's: without a bound an
 * upstream could make restspy keep, log and store megabytes of headers. */
static int resp_head_budget(conn *c, size_t len)
{
    c->txn.resp_head_bytes += len;
    if (c->txn.resp_head_bytes > c->txn.cfg->max_upstream_header_size)
        return resp_refuse(c, "upstream sent too big header");
    return 0;
}

static int r_on_status(llhttp_t *p, const char *at, size_t len)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    buf_append(&c->reason, at, len);
    return resp_head_budget(c, len + 14); /* "HTTP/1.1 200 " and CRLF */
}

static int r_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    httpmsg_hcollect_name(&c->rhc, at, len);
    return resp_head_budget(c, len + 4); /* ": " and CRLF count too */
}

static int r_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    httpmsg_hcollect_value(&c->rhc, at, len, NULL);
    return resp_head_budget(c, len);
}

static int r_on_header_value_complete(llhttp_t *p)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    return httpmsg_hcollect_done(&c->rhc, &c->txn.rec->resp_headers); /* -1: invalid, 502 */
}

static int r_on_headers_complete(llhttp_t *p)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    record *r = c->txn.rec;
    int status = p->status_code;
    bool http10 = r->http_minor == 0;

    c->txn.resp_head_bytes = 0;
    if (status >= 100 && status < 200 && status != 101) {
        /* Interim answer: relay it (HTTP/1.1 clients only; 100 Continue was
         * already answered by restspy itself), then expect the final one.
         * Their number is bounded: each one restarts the upstream timeout. */
        if (++c->txn.interim > c->txn.cfg->max_interim_responses)
            return resp_refuse(c, "upstream sent too many interim responses");
        if (status != 100 && !http10) {
            buf head = BUF_INIT;
            httpmsg_response_head(&head, status, c->reason.data, c->reason.len, &r->resp_headers,
                                  HTTPMSG_BODY_NONE, true, false);
            /* A 1xx has no Connection: close of its own. */
            client_write_buf(c, &head);
            buf_free(&head);
            if (PARSER_STOP(c))
                return -1; /* the client is gone: r was sunk with it */
        }
        http_headers_free(&r->resp_headers);
        buf_reset(&c->reason);
        return 0;
    }

    r->status = status;
    if (c->ph == PH_WAIT)
        uv_timer_stop(&c->ctimer); /* the response head timeout */
    if (c->txn.repl) {
        c->txn.repl_status_ok = pipeline_status_replicates(c->txn.cfg, status);
        c->txn.hold = c->txn.repl_status_ok && !c->txn.repl_too_big &&
                      c->txn.cfg->replicate_durability == REPL_SYNC;
    }
    httpmsg_body mode;
    if (status == 101) {
        if (!c->txn.upgrade_req)
            return -1; /* a 101 nobody asked for */
        mode = HTTPMSG_BODY_UPGRADE;
    } else if (c->txn.head_req || status == 204 || status == 304) {
        mode = HTTPMSG_BODY_NONE;
    } else if ((p->flags & F_CONTENT_LENGTH) && !(p->flags & F_CHUNKED)) {
        mode = HTTPMSG_BODY_LENGTH;
    } else {
        mode = http10 ? HTTPMSG_BODY_CLOSE : HTTPMSG_BODY_CHUNKED;
    }
    c->txn.resp_mode = mode;
    if (mode == HTTPMSG_BODY_CLOSE || c->txn.upgrade_req)
        c->txn.keep_alive = false;
    buf head = BUF_INIT;
    httpmsg_response_head(&head, status, c->reason.data, c->reason.len, &r->resp_headers, mode,
                          c->txn.keep_alive, http10);
    c->txn.resp_started = true;
    client_write_buf(c, &head);
    buf_free(&head);
    if (status == 101)
        return 2; /* no body; llhttp_execute returns HPE_PAUSED_UPGRADE */
    return c->txn.head_req ? 1 : 0;
}

static int r_on_body(llhttp_t *p, const char *at, size_t len)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    record *r = c->txn.rec;
    if (c->txn.cap_resp && r->resp_body.len < c->txn.rule->resp_body_cap) {
        size_t room = (size_t)(c->txn.rule->resp_body_cap - r->resp_body.len);
        buf_append(&r->resp_body, at, len < room ? len : room);
    }
    r->resp_body_size += len;
    r->resp_bytes_sent += len;
    if ((p->flags & F_CHUNKED) && p->content_length == 0) {
        /* This chunk's data ends here: its CRLF follows (maybe in the next
         * read). Checked before the data is relayed. */
        c->txn.resp_crlf = 2;
        if (!httpmsg_chunk_crlf(&c->txn.resp_crlf, at + len, (size_t)(c->rfeed_end - (at + len))))
            return resp_refuse(c, "upstream sent an invalid response (no CRLF after chunk data)");
    }
    if (c->txn.resp_mode == HTTPMSG_BODY_CHUNKED) {
        char head[24];
        int hl = snprintf(head, sizeof head, "%zx\r\n", len);
        uv_buf_t b[3] = {uv_buf_init(head, (unsigned)hl), uv_buf_init((char *)at, (unsigned)len),
                         uv_buf_init("\r\n", 2)};
        client_write(c, b, 3);
    } else {
        uv_buf_t b = uv_buf_init((char *)at, (unsigned)len);
        client_write(c, &b, 1);
    }
    return 0;
}

static int r_on_message_complete(llhttp_t *p)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    if (!c->txn.resp_started)
        return 0; /* end of an interim (1xx) answer: the final one follows */
    if (c->txn.resp_mode == HTTPMSG_BODY_CHUNKED) {
        uv_buf_t b = uv_buf_init("0\r\n\r\n", 5);
        client_write(c, &b, 1);
        if (PARSER_STOP(c))
            return -1; /* the client is gone: the write closed the connection */
    }
    c->txn.resp_done = true;
    c->txn.up_keepalive = llhttp_should_keep_alive(p);
    c->txn.rec->resp_truncated =
        c->txn.rec->resp_body_size > c->txn.rec->resp_body.len && c->txn.cap_resp;
    return c->txn.rec->status == 101 ? 0 : HPE_PAUSED;
}

static const llhttp_settings_t resp_settings = {
    .on_status = r_on_status,
    .on_header_field = r_on_header_field,
    .on_header_value = r_on_header_value,
    .on_header_value_complete = r_on_header_value_complete,
    .on_headers_complete = r_on_headers_complete,
    .on_body = r_on_body,
    .on_message_complete = r_on_message_complete,
};

void relay_open(conn *c, bool has_body)
{
    llhttp_init(&c->rp, HTTP_RESPONSE, &resp_settings);
    c->rp.data = c;
    buf_reset(&c->reason);
    httpmsg_hcollect_reset(&c->rhc);
    bool ready;
    c->txn.up_ready = false;
    c->txn.up = upstream_acquire(c->w->pool, &up_handler, c, false, &ready);
    if (ready && !has_body && !c->txn.upgrade_req)
        buf_append(&c->uphead, c->upq.data, c->upq.len);
    if (ready)
        on_up_connect(c, c->txn.up, 0, NULL);
}
