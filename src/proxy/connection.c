#include "proxy/proxy.h"

#include <llhttp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http/httpmsg.h"
#include "base/iostream.h"
#include "capture/redact.h"
#include "formats/repl_msg.h"
#include "capture/rules.h"
#include "proxy/stats.h"
#include "base/util.h"

/* Where a connection is in its current request. */
/* Most pipelined bytes kept unparsed before the client's reads pause. */
#define PENDING_MAX (64 * 1024)

typedef enum {
    PH_IDLE,   /* waiting for the first byte of a request */
    PH_HEAD,   /* receiving the request line and headers */
    PH_BODY,   /* headers forwarded, receiving the request body */
    PH_WAIT,   /* request complete, waiting for the response to finish */
    PH_TUNNEL, /* after 101: raw bytes both ways */
    PH_COMMIT, /* answered but for its last bytes: waiting for the store's commit */
} phase;

struct conn {
    uv_tcp_t tcp;
    uv_timer_t ctimer; /* idle / header / body-read timeout (client side) */
    uv_timer_t utimer; /* upstream response timeout */
    uv_shutdown_t sreq;
    proxy_worker *w;
    conn *next, *prev;
    int open_handles;
    bool closing;
    bool reading;       /* uv_read_start is active on the client */
    bool paused_bp;     /* client reads paused: upstream is not keeping up */
    bool in_feed;       /* inside client_feed (llhttp_execute on the stack) */
    bool parser_paused; /* a request is complete; later bytes wait in pending */
    bool client_eof;    /* client half-closed after its request */
    char client_ip[64];
    char client_addr[80];
    io_cork ccork; /* toward the client, on while a response is parsed */
    io_cork ucork; /* toward the upstream, on while a request is parsed */

    llhttp_t cp; /* request parser, lives as long as the connection */
    buf pending; /* bytes read but not parsed yet (pipelined requests) */

    /* request parsing scratch */
    buf url, hname, hval;
    size_t header_bytes;
    const char *feed_end; /* end of the bytes llhttp_execute has, in callbacks */
    bool hval_cut;        /* the header value so far ends where a read ended */
    unsigned req_crlf;    /* bytes of a chunk's closing CRLF still to check */

    /* the request in flight (rec != NULL) */
    phase ph;
    record *rec;
    config *cfg; /* reference held for the request: rule points into it */
    const rule *rule;
    int64_t t0;    /* monotonic µs at the first byte */
    int64_t up_t0; /* monotonic µs when the request went upstream */
    bool keep_alive, head_req, upgrade_req, req_chunked, req_done;
    bool cap_req, cap_resp;
    int err_status; /* set by parser callbacks before returning HPE_USER */
    const char *err_text;

    /* upstream side of the request */
    upstream_conn *up;
    bool up_ready;  /* connected and the head is written */
    bool up_paused; /* upstream reads paused: the client is not keeping up */
    buf upq;        /* bytes for the upstream while it is connecting */
    llhttp_t rp;    /* response parser */
    buf rhname, rhval, reason;
    const char *rfeed_end;  /* as feed_end, for the response parser */
    unsigned resp_crlf;     /* as req_crlf, for the response */
    size_t resp_head_bytes; /* of the response head being parsed */
    uint64_t interim;       /* 1xx answers relayed for this request */
    const char *resp_err;   /* why a response callback refused it (502) */
    bool resp_started, resp_done, up_keepalive;
    httpmsg_body resp_mode;
    buf uphead; /* copy of a bodyless request's head sent on a pooled
                   connection, to retry once if that connection was dead */
    bool retried;
    bool body_drain; /* answered before the request body ended: the rest is
                        read and captured, not forwarded */

    /* replication of the request in flight */
    bool repl;                    /* candidate (rule, flag, method, amqp); may be dropped later */
    bool repl_too_big;            /* its body passed replicate_max_body */
    bool repl_status_ok;          /* the upstream answered as replicate_on wants */
    bool hold;                    /* sync durability: the last client write waits */
    buf repl_body;                /* the whole request body, up to replicate_max_body */
    buf held;                     /* the last bytes written to the client, not sent yet */
    bool again;                   /* after the commit: go on with the next request */
    struct commit_ticket *ticket; /* the commit being waited for */
};

/* Commits reported by the store's writer thread reach the worker's loop
 * through this mailbox. It outlives the worker when commits are still in
 * flight at shutdown (reference count), and once closed it drops what comes. */
struct commit_box {
    pthread_mutex_t lock;
    int refs;
    bool open;
    uv_async_t *async;
    struct commit_ticket *head;
};

typedef struct commit_ticket {
    conn *c; /* NULL once the connection is gone */
    int status;
    commit_box *box;
    struct commit_ticket *next;
} commit_ticket;

static void conn_close(conn *c, bool graceful);
static void txn_fail(conn *c, int status, const char *error, const char *detail);
static void txn_finish(conn *c);
static void client_feed(conn *c, const char *data, size_t len);
static void client_resume_reading(conn *c);
static void client_pause_reading(conn *c);

static const upstream_handler up_handler;
static llhttp_settings_t req_settings;
static llhttp_settings_t resp_settings;
static uv_once_t settings_once = UV_ONCE_INIT;

/* ------------------------------------------------------------------ */
/* config and sinks                                                    */

void proxy_shared_set_config(proxy_shared *sh, config *cfg)
{
    config_ref(cfg);
    pthread_mutex_lock(&sh->cfg_lock);
    config *old = sh->cfg;
    sh->cfg = cfg;
    atomic_fetch_add(&sh->cfg_gen, 1);
    pthread_mutex_unlock(&sh->cfg_lock);
    config_unref(old);
}

/* The worker's current config; a reload is picked up here, between requests. */
static config *worker_config(proxy_worker *w)
{
    uint64_t gen = atomic_load_explicit(&w->sh->cfg_gen, memory_order_acquire);
    if (gen != w->cfg_gen || !w->cfg) {
        pthread_mutex_lock(&w->sh->cfg_lock);
        config *n = w->sh->cfg;
        config_ref(n);
        w->cfg_gen = atomic_load(&w->sh->cfg_gen);
        pthread_mutex_unlock(&w->sh->cfg_lock);
        config_unref(w->cfg);
        w->cfg = n;
    }
    return w->cfg;
}

/* Hands the finished record to the sinks; they own or drop it after this. */
static void on_commit_thread(void *ud, int status);

/* The outbox message, when the request is to be replicated. Runs before
 * redaction: peers must get the real request. */
static void attach_outbox(conn *c, record *r)
{
    if (!c->repl)
        return;
    if (c->repl_too_big) {
        r->replication = xstrdup("skipped: body over replicate_max_body");
        store_counter_add(c->w->sh->store, "not_replicated", 1);
        return;
    }
    if (!c->req_done || !c->repl_status_ok)
        return;
    r->outbox =
        repl_msg_from_record(r, c->cfg->node, &c->repl_body, c->cfg->replicate_drop_headers);
    repl_msg_sign(r->outbox, c->cfg->replicate_secret);
    r->replication = xstrdup("queued");
}

/* Hands the finished record to the sinks; they own or drop it after this.
 * In hold mode it starts the wait for the commit (c->ticket). */
static void sink_record(conn *c)
{
    record *r = c->rec;
    c->rec = NULL;
    attach_outbox(c, r);
    if (r->do_log || r->do_persist) {
        /* Redaction must see the decoded bodies (and the outbox above kept
         * the request as it was sent). */
        const config *cfg = c->cfg;
        const rule *ru = c->rule ? c->rule : &cfg->rules[cfg->rules_len - 1];
        record_decode_bodies(r, ru->req_body_cap, ru->resp_body_cap, !redact_bodies(cfg));
        redact_record(cfg, r);
    }
    /* Logged as JSON and persisted: encode the headers once for both. */
    if (r->do_log && r->do_persist && c->w->sh->store && logsink_wants_headers_json(c->w->sh->log))
        record_cache_headers_json(r);
    if (r->do_log) {
        logsink_write(c->w->sh->log, r);
        STAT_INC(logged);
    }
    store *st = c->w->sh->store;
    if (!st || (!r->do_persist && !r->outbox)) {
        record_free(r);
        return;
    }
    r->outbox_only = !r->do_persist;
    if (r->do_persist)
        STAT_INC(captured);
    if (c->hold && r->outbox) {
        commit_box *b = c->w->commits;
        commit_ticket *t = xcalloc(1, sizeof *t);
        t->c = c;
        t->box = b;
        pthread_mutex_lock(&b->lock);
        b->refs++;
        pthread_mutex_unlock(&b->lock);
        c->ticket = t;
        store_submit_cb(st, r, on_commit_thread, t); /* may wait (backpressure) */
    } else {
        store_submit(st, r); /* takes ownership, may wait (backpressure) */
    }
}

/* ------------------------------------------------------------------ */
/* writing                                                             */

static void on_client_written(uv_stream_t *s, int status)
{
    conn *c = s->data;
    if (status < 0) {
        if (!c->closing)
            conn_close(c, false);
        return;
    }
    if (c->up_paused && c->up && io_queued(s) < IO_LOW_WATER) {
        c->up_paused = false;
        upstream_resume(c->up);
        if (c->ph != PH_TUNNEL && !c->resp_done)
            uv_timer_again(&c->utimer);
    }
}

static void client_send(conn *c, const uv_buf_t *bufs, unsigned n);

/* Sends the bytes held back in hold mode. */
static void flush_held(conn *c)
{
    if (!c->held.len)
        return;
    uv_buf_t b = uv_buf_init(c->held.data, (unsigned)c->held.len);
    client_send(c, &b, 1);
    buf_reset(&c->held);
}

/* Writes to the client. In hold mode every write is delayed by one: what
 * was held goes out and the new bytes are held, so the response's last
 * bytes are still held when it completes (a copy per write, for replicated
 * requests in sync durability only). */
static void client_write(conn *c, const uv_buf_t *bufs, unsigned n)
{
    if (!c->hold) {
        client_send(c, bufs, n);
        return;
    }
    flush_held(c);
    for (unsigned i = 0; i < n; i++)
        buf_append(&c->held, bufs[i].base, bufs[i].len);
}

/* Writes bufs[0..n) (n <= 3) behind what the client cork holds; while the
 * cork is on, small pieces only join it. */
static void client_send(conn *c, const uv_buf_t *bufs, unsigned n)
{
    if (c->closing || io_cork_take(&c->ccork, bufs, n))
        return;
    uv_buf_t v[4];
    unsigned m = io_cork_gather(&c->ccork, bufs, n, v);
    size_t total = 0;
    for (unsigned i = 0; i < m; i++)
        total += v[i].len;
    STAT_ADD(bytes_out, total);
    int rc = io_write((uv_stream_t *)&c->tcp, v, m, on_client_written);
    io_cork_clear(&c->ccork);
    if (rc < 0) {
        conn_close(c, false);
        return;
    }
    /* Backpressure: a slow client pauses the upstream instead of letting
     * its response pile up in memory. */
    if (c->up && !c->up_paused && io_queued((uv_stream_t *)&c->tcp) >= IO_HIGH_WATER) {
        c->up_paused = true;
        upstream_pause(c->up);
        uv_timer_stop(&c->utimer);
    }
}

/* Sends what the client cork gathered and turns it off. */
static void client_uncork(conn *c)
{
    c->ccork.on = false;
    if (c->ccork.b.len)
        client_send(c, NULL, 0);
}

static void client_write_buf(conn *c, const buf *b)
{
    uv_buf_t ub = uv_buf_init(b->data, (unsigned)b->len);
    client_write(c, &ub, 1);
}

/* Empties the connect queue. Its memory is kept for the next request's head
 * (regrowing it cost four reallocations per request), unless a body that
 * queued while the upstream connected made it large. */
static void upq_clear(conn *c)
{
    if (c->upq.cap > 16 * 1024)
        buf_free(&c->upq);
    else
        buf_reset(&c->upq);
}

/* Sends bytes (n <= 3 pieces) toward the upstream, queueing them while it
 * connects and gathering them while the upstream cork is on. */
static void upstream_send(conn *c, const uv_buf_t *bufs, unsigned n)
{
    if (c->body_drain)
        return;
    if (!c->up_ready) {
        for (unsigned i = 0; i < n; i++)
            buf_append(&c->upq, bufs[i].base, bufs[i].len);
        return;
    }
    if (io_cork_take(&c->ucork, bufs, n))
        return;
    uv_buf_t v[4];
    unsigned m = io_cork_gather(&c->ucork, bufs, n, v);
    int rc = upstream_write(c->up, v, m);
    io_cork_clear(&c->ucork);
    if (rc < 0)
        txn_fail(c, 502, "upstream unreachable", "write failed");
}

/* Sends what the upstream cork gathered and turns it off. */
static void upstream_uncork(conn *c)
{
    c->ucork.on = false;
    if (c->ucork.b.len && c->up_ready && !c->closing)
        upstream_send(c, NULL, 0);
    io_cork_clear(&c->ucork);
}

/* Forwards one piece of request body, re-framed when chunked. */
static void upstream_send_body(conn *c, const char *at, size_t len)
{
    if (!c->req_chunked) {
        uv_buf_t b = uv_buf_init((char *)at, (unsigned)len);
        upstream_send(c, &b, 1);
        return;
    }
    char head[24];
    int hl = snprintf(head, sizeof head, "%zx\r\n", len);
    uv_buf_t b[3] = {uv_buf_init(head, (unsigned)hl), uv_buf_init((char *)at, (unsigned)len),
                     uv_buf_init("\r\n", 2)};
    upstream_send(c, b, 3);
}

/* Backpressure the other way: stop reading the client while the upstream
 * (or the connect queue) holds more than the high-water mark. */
static void check_client_backpressure(conn *c)
{
    if (c->ph != PH_BODY && c->ph != PH_TUNNEL)
        return;
    size_t queued = c->up_ready ? upstream_queued(c->up) : c->upq.len;
    if (queued >= IO_HIGH_WATER && !c->paused_bp) {
        c->paused_bp = true;
        client_pause_reading(c);
        uv_timer_stop(&c->ctimer); /* the wait is ours, not the client's */
    }
}

/* ------------------------------------------------------------------ */
/* upstream events                                                     */

static void start_upstream_timer(conn *c);

static void on_ctimer(uv_timer_t *t);

/* Ends a backpressure pause of the client's reads. */
static void unpause_client(conn *c)
{
    if (!c->paused_bp)
        return;
    c->paused_bp = false;
    if (c->ph == PH_BODY)
        uv_timer_start(&c->ctimer, on_ctimer, c->cfg->client_timeout_ms, 0);
    client_resume_reading(c);
}

static void on_up_connect(void *owner, upstream_conn *up, int status)
{
    conn *c = owner;
    (void)up;
    if (status < 0) {
        c->up = NULL; /* already closed by the pool */
        if (status == UV_ETIMEDOUT)
            txn_fail(c, 504, "upstream timeout", "connect");
        else
            txn_fail(c, 502, "upstream unreachable", uv_strerror(status));
        return;
    }
    c->up_ready = true;
    c->up_t0 = util_mono_us();
    /* Through the cork: a pooled connection is ready while the request is
     * still being parsed, and its head then leaves with the body. */
    uv_buf_t b = uv_buf_init(c->upq.data, (unsigned)c->upq.len);
    upstream_send(c, &b, 1); /* copies what it does not write at once */
    upq_clear(c);
    if (c->closing)
        return; /* the write failed: answered 502 */
    start_upstream_timer(c);
    if (upstream_queued(c->up) < IO_LOW_WATER)
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

static void start_tunnel(conn *c, const char *rest, size_t restlen);

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
    if (c->req_done || c->upgrade_req) {
        txn_finish(c);
        return;
    }
    uv_timer_stop(&c->utimer);
    if (c->up) {
        upstream_release(c->up, false);
        c->up = NULL;
    }
    c->up_ready = false;
    c->up_paused = false;
    buf_free(&c->upq);
    io_cork_clear(&c->ucork);
    c->body_drain = true;
    unpause_client(c);
}

static void on_up_data(void *owner, upstream_conn *up, const char *data, size_t len)
{
    conn *c = owner;
    (void)up;
    if (c->ph == PH_TUNNEL) {
        tunnel_from_upstream(c, data, len);
        return;
    }
    if (c->resp_done)
        return; /* bytes after a complete response: ignored, not reused */
    uv_timer_again(&c->utimer);
    if (c->resp_crlf && !httpmsg_chunk_crlf(&c->resp_crlf, data, len)) {
        c->up_keepalive = false;
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
        c->up_keepalive = false;
        const char *why = c->resp_err ? c->resp_err : "upstream sent an invalid response";
        const char *detail = c->resp_err ? NULL : llhttp_get_error_reason(&c->rp);
        txn_fail(c, c->resp_started ? 0 : 502, why, detail);
        return;
    }
    if (c->resp_done)
        resp_complete(c);
}

static void on_up_eof(void *owner, upstream_conn *up, int status)
{
    conn *c = owner;
    (void)up;
    if (c->ph == PH_TUNNEL) {
        conn_close(c, true);
        return;
    }
    c->up_keepalive = false;
    if (status == UV_EOF && c->resp_started && !c->resp_done) {
        /* A body delimited by the close completes here. */
        llhttp_errno_t err = llhttp_finish(&c->rp);
        if (c->closing)
            return;
        if (err == HPE_OK && c->resp_done) {
            resp_complete(c);
            return;
        }
    }
    if (c->resp_done) {
        resp_complete(c);
        return;
    }
    if (!c->resp_started && !c->retried && c->uphead.len && c->req_done) {
        /* A pooled connection the backend had closed: the request had no
         * body, so send it once more on a fresh connection. */
        c->retried = true;
        upstream_release(c->up, false);
        uv_timer_stop(&c->utimer);
        buf_free(&c->upq);
        c->upq = c->uphead;
        buf_init(&c->uphead);
        llhttp_init(&c->rp, HTTP_RESPONSE, &resp_settings);
        c->rp.data = c;
        http_headers_free(&c->rec->resp_headers);
        buf_reset(&c->reason);
        c->resp_head_bytes = 0;
        c->up_ready = false;
        bool ready;
        c->up = upstream_acquire(c->w->pool, &up_handler, c, true, &ready);
        return;
    }
    const char *what = status == UV_EOF ? "connection closed" : uv_strerror(status);
    txn_fail(c, c->resp_started ? 0 : 502, "upstream unreachable", what);
}

static const upstream_handler up_handler = {on_up_connect, on_up_data, on_up_eof, on_up_drain};

static void on_utimer(uv_timer_t *t)
{
    conn *c = t->data;
    if (c->rec && !c->resp_done)
        txn_fail(c, c->resp_started ? 0 : 504, "upstream timeout", NULL);
}

static void start_upstream_timer(conn *c)
{
    uint64_t ms = c->cfg->upstream_timeout_ms;
    uv_timer_start(&c->utimer, on_utimer, ms, ms);
}

/* ------------------------------------------------------------------ */
/* response parsing (upstream -> client)                               */

/* A callback can close the connection (a write to a client that has gone
 * fails) while llhttp still holds the rest of the buffer: every callback
 * then stops the parser instead of touching the request that is gone. */
#define PARSER_STOP(c) ((c)->closing || !(c)->rec)

/* Refuses the response being parsed: 502 with why (or a cut answer once
 * it has started). */
static int resp_refuse(conn *c, const char *why)
{
    c->resp_err = why;
    return -1;
}

/* The response head's size, like the request's: without a bound an
 * upstream could make restspy keep, log and store megabytes of headers. */
static int resp_head_budget(conn *c, size_t len)
{
    c->resp_head_bytes += len;
    if (c->resp_head_bytes > c->cfg->max_upstream_header_size)
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
    buf_append(&c->rhname, at, len);
    return resp_head_budget(c, len + 4); /* ": " and CRLF count too */
}

static int r_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    buf_append(&c->rhval, at, len);
    return resp_head_budget(c, len);
}

static int r_on_header_value_complete(llhttp_t *p)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    if (!httpmsg_is_token(c->rhname.data, c->rhname.len))
        return -1; /* an invalid response: 502 */
    http_headers_add(&c->rec->resp_headers, c->rhname.data ? c->rhname.data : "", c->rhname.len,
                     c->rhval.data ? c->rhval.data : "", c->rhval.len);
    buf_reset(&c->rhname);
    buf_reset(&c->rhval);
    return 0;
}

static int r_on_headers_complete(llhttp_t *p)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    record *r = c->rec;
    int status = p->status_code;
    bool http10 = r->http_minor == 0;

    c->resp_head_bytes = 0;
    if (status >= 100 && status < 200 && status != 101) {
        /* Interim answer: relay it (HTTP/1.1 clients only; 100 Continue was
         * already answered by restspy itself), then expect the final one.
         * Their number is bounded: each one restarts the upstream timeout. */
        if (++c->interim > c->cfg->max_interim_responses)
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
    if (c->repl) {
        c->repl_status_ok = c->cfg->replicate_on == REPL_ON_ANY || (status >= 200 && status < 300);
        c->hold =
            c->repl_status_ok && !c->repl_too_big && c->cfg->replicate_durability == REPL_SYNC;
    }
    httpmsg_body mode;
    if (status == 101) {
        if (!c->upgrade_req)
            return -1; /* a 101 nobody asked for */
        mode = HTTPMSG_BODY_UPGRADE;
    } else if (c->head_req || status == 204 || status == 304) {
        mode = HTTPMSG_BODY_NONE;
    } else if ((p->flags & F_CONTENT_LENGTH) && !(p->flags & F_CHUNKED)) {
        mode = HTTPMSG_BODY_LENGTH;
    } else {
        mode = http10 ? HTTPMSG_BODY_CLOSE : HTTPMSG_BODY_CHUNKED;
    }
    c->resp_mode = mode;
    if (mode == HTTPMSG_BODY_CLOSE || c->upgrade_req)
        c->keep_alive = false;
    buf head = BUF_INIT;
    httpmsg_response_head(&head, status, c->reason.data, c->reason.len, &r->resp_headers, mode,
                          c->keep_alive, http10);
    c->resp_started = true;
    client_write_buf(c, &head);
    buf_free(&head);
    if (status == 101)
        return 2; /* no body; llhttp_execute returns HPE_PAUSED_UPGRADE */
    return c->head_req ? 1 : 0;
}

static int r_on_body(llhttp_t *p, const char *at, size_t len)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    record *r = c->rec;
    if (c->cap_resp && r->resp_body.len < c->rule->resp_body_cap) {
        size_t room = (size_t)(c->rule->resp_body_cap - r->resp_body.len);
        buf_append(&r->resp_body, at, len < room ? len : room);
    }
    r->resp_body_size += len;
    r->resp_bytes_sent += len;
    if ((p->flags & F_CHUNKED) && p->content_length == 0) {
        /* This chunk's data ends here: its CRLF follows (maybe in the next
         * read). Checked before the data is relayed. */
        c->resp_crlf = 2;
        if (!httpmsg_chunk_crlf(&c->resp_crlf, at + len, (size_t)(c->rfeed_end - (at + len))))
            return resp_refuse(c, "upstream sent an invalid response (no CRLF after chunk data)");
    }
    if (c->resp_mode == HTTPMSG_BODY_CHUNKED) {
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
    if (!c->resp_started)
        return 0; /* end of an interim (1xx) answer: the final one follows */
    if (c->resp_mode == HTTPMSG_BODY_CHUNKED) {
        uv_buf_t b = uv_buf_init("0\r\n\r\n", 5);
        client_write(c, &b, 1);
        if (PARSER_STOP(c))
            return -1; /* the client is gone: the write closed the connection */
    }
    c->resp_done = true;
    c->up_keepalive = llhttp_should_keep_alive(p);
    c->rec->resp_truncated = c->rec->resp_body_size > c->rec->resp_body.len && c->cap_resp;
    return c->rec->status == 101 ? 0 : HPE_PAUSED;
}

/* ------------------------------------------------------------------ */
/* request parsing (client -> upstream)                                */

static int fail_cb(conn *c, int status, const char *text)
{
    c->err_status = status;
    c->err_text = text;
    return -1;
}

static void txn_begin(conn *c)
{
    proxy_worker *w = c->w;
    c->rec = record_new();
    c->cfg = worker_config(w);
    config_ref(c->cfg);
    c->rule = NULL;
    c->rec->started_at_us = util_now_us();
    c->rec->node = xstrdup(c->cfg->node);
    c->rec->client_addr = xstrdup(c->client_addr);
    c->rec->scheme = xstrdup("http");
    c->t0 = util_mono_us();
    c->up_t0 = 0;
    c->ph = PH_HEAD;
    c->keep_alive = false;
    c->head_req = c->upgrade_req = c->req_chunked = c->req_done = false;
    c->cap_req = c->cap_resp = false;
    c->resp_started = c->resp_done = c->up_keepalive = false;
    c->err_status = 0;
    c->err_text = NULL;
    c->header_bytes = 0;
    c->req_crlf = c->resp_crlf = 0;
    c->resp_head_bytes = 0;
    c->interim = 0;
    c->resp_err = NULL;
    buf_reset(&c->url);
    buf_reset(&c->hname);
    buf_reset(&c->hval);
    buf_reset(&c->uphead);
    c->retried = false;
    c->body_drain = false;
    c->repl = c->repl_too_big = c->repl_status_ok = c->hold = false;
    buf_free(&c->repl_body);
    buf_reset(&c->held);
}

static int q_on_message_begin(llhttp_t *p)
{
    conn *c = p->data;
    if (c->closing)
        return -1;
    if (!c->rec)
        txn_begin(c);
    uv_timer_start(&c->ctimer, on_ctimer, c->cfg->header_timeout_ms, 0);
    return 0;
}

static int q_on_method_complete(llhttp_t *p)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    c->rec->method = xstrdup(llhttp_method_name(llhttp_get_method(p)));
    return 0;
}

static int q_on_url(llhttp_t *p, const char *at, size_t len)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    if (c->url.len + len > c->cfg->max_request_line)
        return fail_cb(c, 414, "uri too long");
    buf_append(&c->url, at, len);
    return 0;
}

static int header_budget(conn *c, size_t len)
{
    c->header_bytes += len;
    if (c->header_bytes > c->cfg->max_header_size)
        return fail_cb(c, 431, "request header fields too large");
    return 0;
}

static int q_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    buf_append(&c->hname, at, len);
    return header_budget(c, len + 4); /* ": " and CRLF count too */
}

static int q_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    /* A value comes in pieces when a read ends inside it; a piece that
     * follows one ending before the read did is obsolete line folding
     * (llhttp joins the lines). RFC 9112 §5.2 allows refusing it, as nginx
     * and HAProxy do: a folded line can hide a header from one hop. */
    if (c->hval.len && !c->hval_cut)
        return fail_cb(c, 400, "bad request: obsolete line folding in a header");
    buf_append(&c->hval, at, len);
    c->hval_cut = at + len == c->feed_end;
    return header_budget(c, len);
}

static int q_on_header_value_complete(llhttp_t *p)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    if (!httpmsg_is_token(c->hname.data, c->hname.len))
        return fail_cb(c, 400, "bad request: invalid header name");
    http_headers_add(&c->rec->req_headers, c->hname.data ? c->hname.data : "", c->hname.len,
                     c->hval.data ? c->hval.data : "", c->hval.len);
    buf_reset(&c->hname);
    buf_reset(&c->hval);
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
    record *r = c->rec;
    const char *u = c->url.data ? c->url.data : "";
    size_t n = c->url.len;
    for (size_t i = 0; i < n; i++)
        if (target_byte_bad((unsigned char)u[i]))
            return "bad request: invalid character in request target";
    size_t skip = n >= 7 && strncasecmp(u, "http://", 7) == 0    ? 7
                  : n >= 8 && strncasecmp(u, "https://", 8) == 0 ? 8
                                                                 : 0;
    if (skip) {
        const char *auth = u + skip;
        const char *slash = memchr(auth, '/', n - skip);
        size_t alen = slash ? (size_t)(slash - auth) : n - skip;
        if (alen == 0 || memchr(auth, '?', alen) || memchr(auth, '@', alen))
            return "bad request: invalid request target";
        free(r->host);
        r->host = xstrndup(auth, alen);
        http_headers *h = &r->req_headers;
        bool had = false;
        for (size_t i = 0; i < h->len; i++) {
            if (util_ieq(h->v[i].name, strlen(h->v[i].name), "host")) {
                http_header_set_value(h, i, r->host);
                had = true;
            }
        }
        if (!had) /* an HTTP/1.0 request may have none */
            http_headers_add(h, "Host", 4, r->host, alen);
        u = slash ? slash : "/";
        n = slash ? n - skip - alen : 1;
    }
    if (n == 0 || (u[0] != '/' && !(n == 1 && u[0] == '*')))
        return "bad request: invalid request target";
    record_set_target(r, u, n);
    return NULL;
}

static int q_on_headers_complete(llhttp_t *p)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    proxy_worker *w = c->w;
    record *r = c->rec;
    const config *cfg = c->cfg;
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
    c->rule = rules_match(cfg, r->method, strlen(r->method), r->host, r->path, strlen(r->path));
    r->rule = xstrdup(c->rule->name);
    r->do_log = c->rule->log && atomic_load_explicit(&g_flags.log, memory_order_relaxed);
    r->do_persist = c->rule->persist && w->sh->store &&
                    atomic_load_explicit(&g_flags.persist, memory_order_relaxed);
    r->do_replicate =
        c->rule->replicate && atomic_load_explicit(&g_flags.replicate, memory_order_relaxed);
    c->cap_req = c->cap_resp = r->do_persist || (r->do_log && cfg->log_bodies);
    /* A request a replicator applied is never replicated again, even when
     * the replicator was pointed at a proxy. */
    c->repl = r->do_replicate && w->sh->replicating &&
              (c->rule->replicate_methods & rules_method_bit(r->method, strlen(r->method))) &&
              !http_headers_get(&r->req_headers, "x-restspy-replicated-from") && p->upgrade == 0;
    c->repl_too_big =
        c->repl && (p->flags & F_CONTENT_LENGTH) && p->content_length > cfg->replicate_max_body;

    c->keep_alive = llhttp_should_keep_alive(p) && !w->draining;
    c->head_req = llhttp_get_method(p) == HTTP_HEAD;
    c->upgrade_req = p->upgrade != 0;
    c->req_chunked = (p->flags & F_CHUNKED) != 0;
    bool has_body = c->req_chunked || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
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
        .chunked = c->req_chunked,
        .upgrade = c->upgrade_req,
        .strip_expect = strip_expect,
    };
    buf_reset(&c->upq);
    httpmsg_request q = {r->method, r->path, r->query, &r->req_headers};
    httpmsg_request_head(&c->upq, &q, &o);

    llhttp_init(&c->rp, HTTP_RESPONSE, &resp_settings);
    c->rp.data = c;
    buf_reset(&c->reason);
    buf_reset(&c->rhname);
    buf_reset(&c->rhval);
    bool ready;
    c->up_ready = false;
    c->up = upstream_acquire(w->pool, &up_handler, c, false, &ready);
    if (ready && !has_body && !c->upgrade_req)
        buf_append(&c->uphead, c->upq.data, c->upq.len);
    if (ready)
        on_up_connect(c, c->up, 0);

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
    record *r = c->rec;
    r->req_body_size += len;
    if (c->cfg->max_body_size && r->req_body_size > c->cfg->max_body_size)
        return fail_cb(c, 413, "payload too large");
    if (c->req_chunked && p->content_length == 0) {
        c->req_crlf = 2;
        if (!httpmsg_chunk_crlf(&c->req_crlf, at + len, (size_t)(c->feed_end - (at + len))))
            return fail_cb(c, 400, "bad request: invalid chunked body (no CRLF after chunk data)");
    }
    if (c->cap_req && r->req_body.len < c->rule->req_body_cap) {
        size_t room = (size_t)(c->rule->req_body_cap - r->req_body.len);
        buf_append(&r->req_body, at, len < room ? len : room);
    }
    if (c->repl && !c->repl_too_big) {
        if (c->repl_body.len + len > c->cfg->replicate_max_body) {
            c->repl_too_big = true;
            buf_free(&c->repl_body);
        } else {
            buf_append(&c->repl_body, at, len);
        }
    }
    upstream_send_body(c, at, len);
    return c->closing ? -1 : 0;
}

static int q_on_message_complete(llhttp_t *p)
{
    conn *c = p->data;
    if (PARSER_STOP(c))
        return -1;
    c->req_done = true;
    c->rec->req_truncated = c->cap_req && c->rec->req_body_size > c->rec->req_body.len;
    if (c->req_chunked) {
        uv_buf_t b = uv_buf_init("0\r\n\r\n", 5);
        upstream_send(c, &b, 1);
    }
    if (c->ph == PH_BODY)
        c->ph = PH_WAIT;
    uv_timer_stop(&c->ctimer);
    /* From here the upstream has upstream_header_timeout for its final
     * head, however slowly it trickles in (each read restarts utimer). */
    if (c->ph == PH_WAIT && !c->resp_started)
        uv_timer_start(&c->ctimer, on_ctimer, c->cfg->upstream_header_timeout_ms, 0);
    /* Pause so that a pipelined request waits until this one is answered;
     * an Upgrade request pauses by itself (HPE_PAUSED_UPGRADE). */
    return c->upgrade_req ? 0 : HPE_PAUSED;
}

static void settings_init(void)
{
    llhttp_settings_init(&req_settings);
    req_settings.on_message_begin = q_on_message_begin;
    req_settings.on_method_complete = q_on_method_complete;
    req_settings.on_url = q_on_url;
    req_settings.on_header_field = q_on_header_field;
    req_settings.on_header_value = q_on_header_value;
    req_settings.on_header_value_complete = q_on_header_value_complete;
    req_settings.on_headers_complete = q_on_headers_complete;
    req_settings.on_body = q_on_body;
    req_settings.on_message_complete = q_on_message_complete;

    llhttp_settings_init(&resp_settings);
    resp_settings.on_status = r_on_status;
    resp_settings.on_header_field = r_on_header_field;
    resp_settings.on_header_value = r_on_header_value;
    resp_settings.on_header_value_complete = r_on_header_value_complete;
    resp_settings.on_headers_complete = r_on_headers_complete;
    resp_settings.on_body = r_on_body;
    resp_settings.on_message_complete = r_on_message_complete;
}

/* ------------------------------------------------------------------ */
/* the request's end                                                   */

static void count_status(int status)
{
    if (status >= 500)
        STAT_INC(responses_5xx);
    else if (status >= 400)
        STAT_INC(responses_4xx);
    else if (status >= 300)
        STAT_INC(responses_3xx);
    else if (status >= 200)
        STAT_INC(responses_2xx);
    else if (status >= 100)
        STAT_INC(responses_1xx);
}

/* Ends the request in flight: record timings, give back the upstream
 * connection, sink the record. */
static void txn_close_record(conn *c, bool upstream_reusable)
{
    uv_timer_stop(&c->utimer);
    if (c->up) {
        upstream_release(c->up, upstream_reusable);
        c->up = NULL;
    }
    c->up_ready = false;
    c->up_paused = false;
    upq_clear(c);
    io_cork_clear(&c->ucork);
    record *r = c->rec;
    int64_t now = util_mono_us();
    r->duration_us = now - c->t0;
    r->upstream_us = c->up_t0 ? now - c->up_t0 : -1;
    count_status(r->status);
    if (r->error)
        STAT_INC(errors);
    sink_record(c);
    config_unref(c->cfg);
    c->cfg = NULL;
    c->rule = NULL;
}

/* Parses the bytes kept back while a request was answered. */
static void feed_pending(conn *c)
{
    if (!c->pending.len)
        return;
    buf tmp = c->pending;
    buf_init(&c->pending);
    client_feed(c, tmp.data, tmp.len);
    buf_free(&tmp);
}

static void txn_continue(conn *c);

static void txn_finish(conn *c)
{
    bool reusable = c->up_keepalive && c->req_done && c->resp_done && !c->rec->error;
    /* After a half-close, requests already received are still answered. */
    c->again = c->keep_alive && c->req_done && (!c->client_eof || c->pending.len) &&
               c->resp_mode != HTTPMSG_BODY_CLOSE;
    txn_close_record(c, reusable);
    if (c->ticket) {
        c->ph = PH_COMMIT; /* txn_continue runs once the commit is in */
        return;
    }
    flush_held(c); /* hold mode without an outbox row (e.g. store refused) */
    c->hold = false;
    txn_continue(c);
}

/* The store has committed (status 0) or lost (-1) the record of a held
 * response. */
static void conn_committed(conn *c, int status)
{
    c->ticket = NULL;
    if (status != 0) {
        /* Never complete the answer to a write that is not durable: the
         * client sees a cut response, as if restspy had crashed. */
        conn_close(c, false);
        return;
    }
    flush_held(c);
    c->hold = false;
    txn_continue(c);
}

/* After a request: the next one on the connection, or the close. */
static void txn_continue(conn *c)
{
    if (c->closing)
        return; /* a failed write of the held bytes closed it */
    if (!c->again || c->w->draining || c->in_feed || (c->client_eof && !c->pending.len)) {
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
        if (c->rec)
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
static void txn_fail(conn *c, int status, const char *error, const char *detail)
{
    if (c->closing)
        return;
    if (!c->rec)
        txn_begin(c);
    record *r = c->rec;
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
    if (!c->rule) {
        /* The request never got through its headers: capture what there is,
         * by the default rule. */
        const config *cfg = c->cfg;
        const rule *d = &cfg->rules[cfg->rules_len - 1];
        /* Split like any target, so that its query is redacted. */
        if (!r->path)
            record_set_target(r, c->url.data ? c->url.data : "", c->url.len);
        if (!r->rule)
            r->rule = xstrdup(d->name);
        r->do_log = d->log && atomic_load(&g_flags.log);
        r->do_persist = d->persist && c->w->sh->store && atomic_load(&g_flags.persist);
    }
    if (status && !c->resp_started && !c->closing) {
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
        c->resp_started = true;
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

/* ------------------------------------------------------------------ */
/* client connection                                                   */

static void on_ctimer(uv_timer_t *t)
{
    conn *c = t->data;
    switch (c->ph) {
    case PH_IDLE:
        conn_close(c, false);
        break;
    case PH_HEAD:
    case PH_BODY:
        txn_fail(c, c->resp_started ? 0 : 408, "request timeout", NULL);
        break;
    case PH_WAIT:
        if (!c->resp_started)
            txn_fail(c, 504, "upstream timeout", "no response head within upstream_header_timeout");
        break;
    default:
        break;
    }
}

static void on_client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    conn *c = h->data;
    *b = uv_buf_init(c->w->readbuf, (unsigned)c->w->readbuf_len);
}

static void start_tunnel(conn *c, const char *rest, size_t restlen)
{
    /* The handshake is the record (logged, never persisted: what follows is
     * not HTTP). */
    c->ph = PH_TUNNEL;
    STAT_INC(upgrades);
    c->rec->do_persist = false;
    upstream_conn *up = c->up;
    c->up = NULL; /* keep the connection out of txn_close_record */
    txn_close_record(c, false);
    c->up = up;
    c->up_ready = true;
    if (restlen)
        tunnel_from_upstream(c, rest, restlen);
    if (c->pending.len) {
        uv_buf_t b = uv_buf_init(c->pending.data, (unsigned)c->pending.len);
        upstream_write(c->up, &b, 1);
        buf_free(&c->pending);
    }
    uv_timer_stop(&c->ctimer);
    client_resume_reading(c);
}

static void tunnel_from_client(conn *c, const char *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    if (upstream_write(c->up, &b, 1) < 0)
        conn_close(c, false);
    else
        check_client_backpressure(c);
}

static void client_feed(conn *c, const char *data, size_t len)
{
    if (c->req_crlf && !httpmsg_chunk_crlf(&c->req_crlf, data, len)) {
        txn_fail(c, 400, "bad request: invalid chunked body (no CRLF after chunk data)", NULL);
        return;
    }
    c->in_feed = true;
    c->ucork.on = true;
    c->feed_end = data + len;
    llhttp_errno_t err = llhttp_execute(&c->cp, data, len);
    c->in_feed = false;
    /* A request that fails to parse sends nothing that this read gathered
     * for the upstream: the connection to it is closed below, unused. */
    if (err != HPE_OK && err != HPE_PAUSED && err != HPE_PAUSED_UPGRADE)
        io_cork_clear(&c->ucork);
    upstream_uncork(c);
    if (c->closing)
        return;
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        /* The request is complete: keep what follows for later. Reading
         * goes on (stopping and restarting it would cost two epoll_ctl calls
         * per request) until PENDING_MAX bytes wait. */
        c->parser_paused = true;
        const char *pos = llhttp_get_error_pos(&c->cp);
        size_t rest = (size_t)(data + len - pos);
        if (rest)
            buf_append(&c->pending, pos, rest);
        if (c->pending.len >= PENDING_MAX)
            client_pause_reading(c);
        if (c->body_drain && c->rec && c->resp_done)
            txn_finish(c); /* answered early; the body has now ended too */
        return;
    }
    if (err != HPE_OK) {
        /* A callback's own answer (431, 413, ...): llhttp reports it as
         * HPE_USER or as the failing callback's code (HPE_CB_*). */
        if (c->err_status)
            txn_fail(c, c->err_status, c->err_text, NULL);
        else
            txn_fail(c, 400, "bad request", llhttp_get_error_reason(&c->cp));
        return;
    }
    if (c->ph == PH_BODY)
        uv_timer_again(&c->ctimer);
    check_client_backpressure(c);
}

static void on_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn *c = s->data;
    if (n == 0 || c->closing)
        return;
    if (n < 0) {
        c->reading = false;
        uv_read_stop(s);
        if (c->ph == PH_COMMIT) {
            c->client_eof = true; /* the held answer still goes out */
        } else if (c->ph == PH_TUNNEL || c->ph == PH_IDLE) {
            conn_close(c, c->ph == PH_TUNNEL);
        } else if (c->ph == PH_WAIT || (c->req_done && c->rec)) {
            c->client_eof = true; /* half-close: still deliver the answer */
        } else {
            txn_fail(c, 0, "client closed connection", n == UV_EOF ? NULL : uv_strerror((int)n));
        }
        return;
    }
    STAT_ADD(bytes_in, (uint64_t)n);
    if (c->ph == PH_TUNNEL) {
        tunnel_from_client(c, b->base, (size_t)n);
        return;
    }
    if (c->parser_paused) {
        /* Pipelined bytes: parsed once the request in flight is answered. */
        buf_append(&c->pending, b->base, (size_t)n);
        if (c->pending.len >= PENDING_MAX)
            client_pause_reading(c);
        return;
    }
    client_feed(c, b->base, (size_t)n);
}

static void client_resume_reading(conn *c)
{
    if (!c->reading && !c->closing && !c->paused_bp && !c->client_eof) {
        c->reading = true;
        uv_read_start((uv_stream_t *)&c->tcp, on_client_alloc, on_client_read);
    }
}

static void client_pause_reading(conn *c)
{
    if (c->reading) {
        c->reading = false;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

static void proxy_check_drained(proxy_worker *w)
{
    if (w->draining && w->nconns == 0 && w->on_drained) {
        void (*cb)(proxy_worker *) = w->on_drained;
        w->on_drained = NULL; /* once */
        cb(w);
    }
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    proxy_worker *w = c->w;
    buf_free(&c->pending);
    buf_free(&c->url);
    buf_free(&c->hname);
    buf_free(&c->hval);
    buf_free(&c->upq);
    buf_free(&c->rhname);
    buf_free(&c->rhval);
    buf_free(&c->reason);
    buf_free(&c->uphead);
    buf_free(&c->repl_body);
    buf_free(&c->held);
    io_cork_free(&c->ccork);
    io_cork_free(&c->ucork);
    free(c);
    proxy_check_drained(w);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    conn *c = req->data;
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
}

static void conn_close(conn *c, bool graceful)
{
    if (c->closing)
        return;
    /* What the client cork holds is the end of an answer (an error body, a
     * response's last bytes): it goes out before a graceful close. */
    if (graceful) {
        client_uncork(c);
        if (c->closing)
            return; /* that write failed and closed the connection */
    }
    c->ccork.on = false;
    io_cork_clear(&c->ccork);
    if (c->rec) {
        /* A request still in flight: capture it before it goes. */
        if (!c->rec->error)
            c->rec->error = xstrdup(c->w->draining ? "shutdown" : "connection closed");
        txn_close_record(c, false);
    }
    if (c->up) {
        upstream_release(c->up, false);
        c->up = NULL;
    }
    if (c->ticket) {
        c->ticket->c = NULL; /* its commit is dropped when it arrives */
        c->ticket = NULL;
    }
    c->closing = true;
    client_pause_reading(c);
    proxy_worker *w = c->w;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    atomic_fetch_sub_explicit(&g_stats.active_connections, 1, memory_order_relaxed);
    uv_close((uv_handle_t *)&c->ctimer, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->utimer, on_conn_handle_closed);
    /* Graceful: let queued bytes (an error answer, the end of a response)
     * reach the client, then close. */
    if (graceful && uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) == 0)
        return;
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
}

static void format_peer(conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    c->client_ip[0] = '\0';
    int port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, c->client_ip, sizeof c->client_ip);
            port = ntohs(a->sin6_port);
            snprintf(c->client_addr, sizeof c->client_addr, "[%s]:%d", c->client_ip, port);
            return;
        }
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        uv_ip4_name(a, c->client_ip, sizeof c->client_ip);
        port = ntohs(a->sin_port);
    }
    snprintf(c->client_addr, sizeof c->client_addr, "%s:%d", c->client_ip, port);
}

void proxy_accept(proxy_worker *w, uv_stream_t *listener)
{
    uv_once(&settings_once, settings_init);
    conn *c = xcalloc(1, sizeof *c);
    c->w = w;
    c->tcp.data = c->ctimer.data = c->utimer.data = c->sreq.data = c;
    uv_tcp_init(w->loop, &c->tcp);
    c->open_handles = 1;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
        return;
    }
    config *cfg = worker_config(w);
    if (w->draining || w->nconns >= cfg->max_connections) {
        STAT_INC(refused_connections);
        uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
        return;
    }
    uv_timer_init(w->loop, &c->ctimer);
    uv_timer_init(w->loop, &c->utimer);
    c->open_handles = 3;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    STAT_INC(connections);
    atomic_fetch_add_explicit(&g_stats.active_connections, 1, memory_order_relaxed);
    uv_tcp_nodelay(&c->tcp, 1);
    format_peer(c);
    llhttp_init(&c->cp, HTTP_REQUEST, &req_settings);
    c->cp.data = c;
    c->ph = PH_IDLE;
    uv_timer_start(&c->ctimer, on_ctimer, cfg->idle_timeout_ms, 0);
    client_resume_reading(c);
}

void proxy_drain(proxy_worker *w)
{
    w->draining = true;
    conn *c = w->conns;
    while (c) {
        conn *next = c->next;
        if (c->ph == PH_IDLE && !c->rec)
            conn_close(c, true);
        c = next;
    }
    proxy_check_drained(w);
}

void proxy_abort_all(proxy_worker *w)
{
    w->draining = true;
    conn *c = w->conns;
    while (c) {
        conn *next = c->next;
        conn_close(c, false);
        c = next;
    }
}

/* ------------------------------------------------------------------ */
/* commits (sync durability)                                           */

static void box_unref(commit_box *b)
{
    pthread_mutex_lock(&b->lock);
    int left = --b->refs;
    pthread_mutex_unlock(&b->lock);
    if (left == 0) {
        while (b->head) {
            commit_ticket *t = b->head;
            b->head = t->next;
            free(t);
        }
        pthread_mutex_destroy(&b->lock);
        free(b);
    }
}

/* On the store's writer thread: post the ticket to its worker's loop. */
static void on_commit_thread(void *ud, int status)
{
    commit_ticket *t = ud;
    commit_box *b = t->box;
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
    proxy_worker *w = a->data;
    commit_box *b = w->commits;
    pthread_mutex_lock(&b->lock);
    commit_ticket *list = b->head;
    b->head = NULL;
    pthread_mutex_unlock(&b->lock);
    /* The list is newest first; answer in commit order. */
    commit_ticket *rev = NULL;
    while (list) {
        commit_ticket *next = list->next;
        list->next = rev;
        rev = list;
        list = next;
    }
    while (rev) {
        commit_ticket *t = rev;
        rev = t->next;
        if (t->c)
            conn_committed(t->c, t->status);
        free(t);
    }
}

void proxy_worker_init(proxy_worker *w)
{
    commit_box *b = xcalloc(1, sizeof *b);
    pthread_mutex_init(&b->lock, NULL);
    b->refs = 1;
    b->open = true;
    b->async = &w->commit_async;
    w->commits = b;
    uv_async_init(w->loop, &w->commit_async, on_commit_async);
    w->commit_async.data = w;
}

void proxy_worker_close(proxy_worker *w)
{
    commit_box *b = w->commits;
    pthread_mutex_lock(&b->lock);
    b->open = false;
    b->async = NULL;
    pthread_mutex_unlock(&b->lock);
    uv_close((uv_handle_t *)&w->commit_async, NULL);
    box_unref(b);
    w->commits = NULL;
}
