/* txn: the request/response transaction on a connection (see proxy.h).
 *
 * Owns the request in flight from its first byte to its end: the request
 * parser's callbacks and their checks (sizes, framing, target, refusals
 * before anything is forwarded), the rule and the capture decision, the
 * forwarding decisions (keep-alive, Expect, the head sent upstream), the
 * JSON error answers, and the request's end (timings, the record to
 * commit.c, the next request or the close). */
#include "proxy/proxy_internal.h"

#include <assert.h>
#include <string.h>
#include <strings.h>

#include "base/url.h"
#include "base/util.h"
#include "pipeline/stats.h"

/* ------------------------------------------------------------------ */
/* request parsing (client -> upstream)                                */

static int fail_cb(conn *c, int status, const char *text)
{
    c->txn.err_status = status;
    c->txn.err_text = text;
    return -1;
}

/* Starts a request: the previous one has let go of its record, config,
 * upstream connection and commit (txn_close_record, conn_committed), so
 * only the replication copy of its body is left to free before the
 * transaction is zeroed whole. */
static void txn_begin(conn *c)
{
    struct txn *t = &c->txn;
    assert(!t->rec && !t->cfg && !t->up && !t->ticket && !t->hold);
    buf_free(&t->repl_body);
    /* A copy of a zero struct, not (struct txn){0}: GCC makes the latter a
     * rep stos (about 12 ns, five times the field-by-field reset it
     * replaces), the copy eleven vector moves (about 2.5 ns, the same). */
    static const struct txn zero;
    *t = zero;
    t->rec = record_new();
    t->cfg = worker_config(c->w);
    config_ref(t->cfg);
    t->rec->started_at_us = util_now_us();
    t->rec->node = xstrdup(t->cfg->node);
    t->rec->client_addr = xstrdup(c->client_addr);
    t->rec->scheme = xstrdup(c->tls ? "https" : "http");
    t->t0 = util_mono_us();
    c->ph = PH_HEAD;
    buf_reset(&c->url);
    httpmsg_hcollect_reset(&c->hc);
    buf_reset(&c->uphead);
    buf_reset(&c->held);
}

static int q_on_message_begin(llhttp_t *p)
{
    conn *c = p->data;
    if (c->closing)
        return -1;
    if (!c->txn.rec)
        txn_begin(c);
    uv_timer_start(&c->ctimer, on_ctimer, c->txn.cfg->header_timeout_ms, 0);
    return 0;
}

static int q_on_method_complete(llhttp_t *p)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    c->txn.rec->method = xstrdup(llhttp_method_name(llhttp_get_method(p)));
    return 0;
}

static int q_on_url(llhttp_t *p, const char *at, size_t len)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    if (c->url.len + len > c->txn.cfg->max_request_line)
        return fail_cb(c, 414, "uri too long");
    buf_append(&c->url, at, len);
    return 0;
}

static int header_budget(conn *c, size_t len)
{
    c->txn.header_bytes += len;
    if (c->txn.header_bytes > c->txn.cfg->max_header_size)
        return fail_cb(c, 431, "request header fields too large");
    return 0;
}

static int q_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    httpmsg_hcollect_name(&c->hc, at, len);
    return header_budget(c, len + 4); /* ": " and CRLF count too */
}

static int q_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    /* A piece that does not continue one cut by the end of a read is
     * obsolete line folding (see httpmsg_hcollect_value): refused. */
    if (httpmsg_hcollect_value(&c->hc, at, len, c->feed_end) != 0)
        return fail_cb(c, 400, "bad request: obsolete line folding in a header");
    return header_budget(c, len);
}

static int q_on_header_value_complete(llhttp_t *p)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    if (httpmsg_hcollect_done(&c->hc, &c->txn.rec->req_headers) != 0)
        return fail_cb(c, 400, "bad request: invalid header name");
    return 0;
}

/* A request target byte llhttp's default build lets through but RFC 9112
 * does not: controls (a raw TAB among them) and DEL. Raw bytes >= 0x80
 * stay allowed: clients send UTF-8 paths and backends accept them. */
static bool target_byte_bad(unsigned char ch)
{
    return ch < 0x21 || ch == 0x7f;
}

/* Splits the request target into path and query (RFC 9112 §3.2), or
 * returns why it is refused. An absolute-form target (http[s]://host/path)
 * is reduced to its path, and its authority wins over the Host header
 * (§3.2.2): it becomes the Host forwarded and recorded. */
static const char *split_target(conn *c)
{
    record *r = c->txn.rec;
    const char *u = c->url.data ? c->url.data : "";
    size_t n = c->url.len;
    for (size_t i = 0; i < n; i++)
        if (target_byte_bad((unsigned char)u[i]))
            return "bad request: invalid character in request target";
    if (n && u[0] != '/' && u[0] != '*') {
        url_parts t;
        if (url_parse(u, n, &t, NULL) != 0 || !(url_is(&t, "http") || url_is(&t, "https")) ||
            t.userinfo || (t.path_len == 0 && t.query))
            return "bad request: invalid request target";
        free(r->host);
        r->host = xstrndup(t.authority, t.authority_len);
        http_headers *h = &r->req_headers;
        bool had = false;
        for (size_t i = 0; i < h->len; i++) {
            if (util_ieq(h->v[i].name, strlen(h->v[i].name), "host")) {
                http_header_set_value(h, i, r->host);
                had = true;
            }
        }
        if (!had) /* an HTTP/1.0 request may have none */
            http_headers_add(h, "Host", 4, r->host, t.authority_len);
        /* the rest of the target after the authority: path, query (and
         * whatever followed, as before) */
        const char *end = u + n;
        u = t.path_len ? t.path : "/";
        n = t.path_len ? (size_t)(end - t.path) : 1;
    }
    if (n == 0 || (u[0] != '/' && !(n == 1 && u[0] == '*')))
        return "bad request: invalid request target";
    record_set_target(r, u, n);
    return NULL;
}

/* The capture decision for the request in flight, made once: matched is
 * its rule, or NULL when it never got through its headers (txn_fail). Sets
 * the rule the request is captured by, the record's do_* and what the
 * transaction keeps (bodies, the replication copy). */
static void txn_decide(conn *c, const rule *matched, bool from_peer, bool upgrade)
{
    struct txn *t = &c->txn;
    record *r = t->rec;
    assert(!t->rule && !r->rule);
    capture_decision d = pipeline_decide(&c->w->sh->pl, t->cfg, r, matched, from_peer, upgrade);
    t->rule = d.rule;
    t->cap_req = t->cap_resp = d.bodies;
    t->repl = d.outbox;
}

static int q_on_headers_complete(llhttp_t *p)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    proxy_worker *w = c->w;
    record *r = c->txn.rec;
    const config *cfg = c->txn.cfg;
    STAT_INC(requests);

    r->http_minor = p->http_minor;
    const char *h = http_headers_get(&r->req_headers, "host");
    if (h)
        r->host = xstrdup(h);
    if (llhttp_get_method(p) == HTTP_CONNECT) {
        /* An authority-form target: restspy is not a forward proxy. */
        r->path = xstrndup(c->url.data ? c->url.data : "", c->url.len);
        return fail_cb(c, 405, "method not allowed: CONNECT");
    }
    /* Everything that refuses the request comes before anything of it is
     * forwarded (below): llhttp's own checks that run after this callback
     * (an unknown Transfer-Encoding) are repeated here for that reason. */
    const char *why;
    int refuse = httpmsg_check_request(&r->req_headers, p->http_major, p->http_minor, &why);
    if (!refuse && (why = split_target(c)) != NULL)
        refuse = 400;
    if (refuse)
        return fail_cb(c, refuse, why);
    txn_decide(c,
               rules_match(cfg->rules, cfg->rules_len, r->method, strlen(r->method), r->host,
                           r->path, strlen(r->path)),
               http_headers_get(&r->req_headers, "x-restspy-replicated-from") != NULL,
               p->upgrade != 0);
    c->txn.repl_too_big =
        c->txn.repl && (p->flags & F_CONTENT_LENGTH) && p->content_length > cfg->replicate_max_body;

    c->txn.keep_alive = llhttp_should_keep_alive(p) && !w->draining;
    c->txn.head_req = llhttp_get_method(p) == HTTP_HEAD;
    c->txn.upgrade_req = p->upgrade != 0;
    c->txn.req_chunked = (p->flags & F_CHUNKED) != 0;
    bool has_body = c->txn.req_chunked || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
    if (cfg->max_body_size && (p->flags & F_CONTENT_LENGTH) &&
        p->content_length > cfg->max_body_size)
        return fail_cb(c, 413, "payload too large");

    bool strip_expect = false;
    const char *expect = http_headers_get(&r->req_headers, "expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 && p->http_minor >= 1) {
        /* Answer it ourselves, like nginx: the body is streamed as soon as
         * it comes, so there is no reason to make the client wait. */
        strip_expect = true;
        if (has_body) {
            uv_buf_t b = uv_buf_init("HTTP/1.1 100 Continue\r\n\r\n", 25);
            client_write(c, &b, 1);
            if (PARSER_STOP(c))
                return -1; /* the client is gone: r was sunk with it */
        }
    }

    httpmsg_req_opts o = {
        .client_ip = c->client_ip,
        .request_id = r->id,
        .default_host = w->sh->upstream_host,
        .proto = c->tls ? "https" : "http",
        .chunked = c->txn.req_chunked,
        .upgrade = c->txn.upgrade_req,
        .strip_expect = strip_expect,
    };
    buf_reset(&c->upq);
    httpmsg_request q = {r->method, r->path, r->query, &r->req_headers};
    httpmsg_request_head(&c->upq, &q, &o);

    relay_open(c, has_body);

    c->ph = PH_BODY;
    if (has_body)
        uv_timer_start(&c->ctimer, on_ctimer, cfg->client_timeout_ms, 0);
    else
        uv_timer_stop(&c->ctimer);
    return 0;
}

static int q_on_body(llhttp_t *p, const char *at, size_t len)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    record *r = c->txn.rec;
    r->req_body_size += len;
    if (c->txn.cfg->max_body_size && r->req_body_size > c->txn.cfg->max_body_size)
        return fail_cb(c, 413, "payload too large");
    if (c->txn.req_chunked && p->content_length == 0) {
        c->txn.req_crlf = 2;
        if (!httpmsg_chunk_crlf(&c->txn.req_crlf, at + len, (size_t)(c->feed_end - (at + len))))
            return fail_cb(c, 400, "bad request: invalid chunked body (no CRLF after chunk data)");
    }
    if (c->txn.cap_req && r->req_body.len < c->txn.rule->req_body_cap) {
        size_t room = (size_t)(c->txn.rule->req_body_cap - r->req_body.len);
        buf_append(&r->req_body, at, len < room ? len : room);
    }
    if (c->txn.repl && !c->txn.repl_too_big) {
        if (c->txn.repl_body.len + len > c->txn.cfg->replicate_max_body) {
            c->txn.repl_too_big = true;
            buf_free(&c->txn.repl_body);
        } else {
            buf_append(&c->txn.repl_body, at, len);
        }
    }
    relay_send_body(c, at, len);
    return c->closing ? -1 : 0;
}

static int q_on_message_complete(llhttp_t *p)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    c->txn.req_done = true;
    c->txn.rec->req_truncated =
        c->txn.cap_req && c->txn.rec->req_body_size > c->txn.rec->req_body.len;
    if (c->txn.req_chunked) {
        uv_buf_t b = uv_buf_init("0\r\n\r\n", 5);
        relay_send(c, &b, 1);
    }
    if (c->ph == PH_BODY)
        c->ph = PH_WAIT;
    uv_timer_stop(&c->ctimer);
    /* From here the upstream has upstream_header_timeout for its final
     * head, however slowly it trickles in (each read restarts utimer). */
    if (c->ph == PH_WAIT && !c->txn.resp_started)
        uv_timer_start(&c->ctimer, on_ctimer, c->txn.cfg->upstream_header_timeout_ms, 0);
    /* Pause so that a pipelined request waits until this one is answered;
     * an Upgrade request pauses by itself (HPE_PAUSED_UPGRADE). */
    return c->txn.upgrade_req ? 0 : HPE_PAUSED;
}

const llhttp_settings_t txn_request_settings = {
    .on_message_begin = q_on_message_begin,
    .on_method_complete = q_on_method_complete,
    .on_url = q_on_url,
    .on_header_field = q_on_header_field,
    .on_header_value = q_on_header_value,
    .on_header_value_complete = q_on_header_value_complete,
    .on_headers_complete = q_on_headers_complete,
    .on_body = q_on_body,
    .on_message_complete = q_on_message_complete,
};

/* ------------------------------------------------------------------ */
/* the request's end                                                   */

/* Ends the request in flight: record timings, give back the upstream
 * connection, sink the record. */
void txn_close_record(conn *c, bool upstream_reusable)
{
    assert(c->txn.rec && c->txn.cfg);
    uv_timer_stop(&c->utimer);
    if (c->txn.up) {
        upstream_release(c->txn.up, upstream_reusable);
        c->txn.up = NULL;
    }
    c->txn.up_ready = false;
    c->txn.up_paused = false;
    upq_clear(c);
    io_cork_clear(&c->ucork);
    record *r = c->txn.rec;
    int64_t now = util_mono_us();
    r->duration_us = now - c->txn.t0;
    r->upstream_us = c->txn.up_t0 ? now - c->txn.up_t0 : -1;
    stats_request_done(r->method, r->status, r->duration_us, r->upstream_us);
    if (r->error)
        STAT_INC(errors);
    sink_record(c);
    config_unref(c->txn.cfg);
    c->txn.cfg = NULL;
    c->txn.rule = NULL;
}

void txn_finish(conn *c)
{
    assert(c->txn.rec && c->txn.resp_done);
    bool reusable =
        c->txn.up_keepalive && c->txn.req_done && c->txn.resp_done && !c->txn.rec->error;
    /* After a half-close, requests already received are still answered. */
    c->txn.again = c->txn.keep_alive && c->txn.req_done && (!c->client_eof || c->pending.len) &&
                   c->txn.resp_mode != HTTPMSG_BODY_CLOSE;
    txn_close_record(c, reusable);
    if (c->txn.ticket) {
        c->ph = PH_COMMIT; /* txn_continue runs once the commit is in */
        return;
    }
    flush_held(c); /* hold mode without an outbox row (e.g. store refused) */
    c->txn.hold = false;
    txn_continue(c);
}

/* After a request: the next one on the connection, or the close. */
void txn_continue(conn *c)
{
    if (c->closing)
        return; /* a failed write of the held bytes closed it */
    if (!c->txn.again || c->w->draining || c->in_feed || (c->client_eof && !c->pending.len)) {
        conn_close(c, true);
        return;
    }
    /* Next request: parse what is pending, then read more. */
    c->ph = PH_IDLE;
    uv_timer_start(&c->ctimer, on_ctimer, worker_config(c->w)->idle_timeout_ms, 0);
    llhttp_resume(&c->cp);
    c->parser_paused = false;
    feed_pending(c);
    if (c->closing)
        return;
    if (c->client_eof && !c->parser_paused) {
        /* The client is gone and no complete request is left. */
        if (c->txn.rec)
            txn_fail(c, 0, "client closed connection", NULL);
        else
            conn_close(c, true);
        return;
    }
    if (c->pending.len < PENDING_MAX)
        client_resume_reading(c);
}

/* Answers the request in flight with a JSON error (status != 0), or, when
 * the response has already started (status 0), aborts the connection. The
 * record keeps the error either way. */
void txn_fail(conn *c, int status, const char *error, const char *detail)
{
    if (c->closing)
        return;
    if (!c->txn.rec)
        txn_begin(c);
    record *r = c->txn.rec;
    if (!r->error) {
        buf e = BUF_INIT;
        buf_append_str(&e, error);
        if (detail && *detail) {
            buf_append(&e, " (", 2);
            buf_append_str(&e, detail);
            buf_append_char(&e, ')');
        }
        r->error = buf_detach(&e);
    }
    if (status >= 500)
        STAT_INC(upstream_errors);
    else if (status >= 400)
        STAT_INC(bad_requests);
    if (!c->txn.rule) {
        /* The request never got through its headers: capture what there is,
         * by the default rule. Split like any target, so that its query is
         * redacted. */
        if (!r->path)
            record_set_target(r, c->url.data ? c->url.data : "", c->url.len);
        txn_decide(c, NULL, false, false);
    }
    if (status && !c->txn.resp_started && !c->closing) {
        buf out = BUF_INIT;
        httpmsg_error_response(&out, status, error, r->id, false);
        r->status = status;
        const char *body = strstr(out.data, "\r\n\r\n") + 4;
        r->resp_body_size = out.len - (size_t)(body - out.data);
        r->resp_bytes_sent = r->resp_body_size;
        /* The record holds what the client got: not the upstream's refused
         * (maybe huge) head or a 1xx's headers. */
        http_headers_reset(&r->resp_headers);
        buf_reset(&r->resp_body);
        buf_append(&r->resp_body, body, r->resp_body_size);
        http_headers_add(&r->resp_headers, "Content-Type", 12, "application/json", 16);
        c->txn.resp_started = true;
        client_write_buf(c, &out);
        buf_free(&out);
        if (c->closing)
            return; /* the write failed: conn_close has sunk the record */
        txn_close_record(c, false);
        conn_close(c, true);
    } else {
        txn_close_record(c, false);
        conn_close(c, false);
    }
}
