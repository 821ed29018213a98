/* connection: a client connection, from accept to close (see proxy.h).
 *
 * Owns the connection's socket, its timers, its read and write paths and its
 * place in the worker's list: reading (with the parser paused between
 * requests, pipelined bytes wait in c->pending), writing (corked, held back
 * by one write in hold mode), backpressure both ways, keep-alive and the
 * close (graceful or not, capturing a request still in flight). What a
 * request does is txn.c's; the upstream side is relay.c's. */
#include "proxy/proxy_internal.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "base/util.h"
#include "pipeline/stats.h"

/* ------------------------------------------------------------------ */
/* config                                                              */

void proxy_shared_set_config(proxy_shared *sh, config *cfg, tls_server *tls)
{
    config_ref(cfg);
    if (tls)
        tls_server_ref(tls);
    pthread_mutex_lock(&sh->cfg_lock);
    config *old = sh->cfg;
    tls_server *old_tls = sh->tls;
    sh->cfg = cfg;
    sh->tls = tls;
    atomic_fetch_add(&sh->cfg_gen, 1);
    pthread_mutex_unlock(&sh->cfg_lock);
    config_unref(old);
    tls_server_unref(old_tls);
}

config *worker_config(proxy_worker *w)
{
    uint64_t gen = atomic_load_explicit(&w->sh->cfg_gen, memory_order_acquire);
    if (gen != w->cfg_gen || !w->cfg) {
        pthread_mutex_lock(&w->sh->cfg_lock);
        config *n = w->sh->cfg;
        tls_server *t = w->sh->tls;
        config_ref(n);
        if (t)
            tls_server_ref(t);
        w->cfg_gen = atomic_load(&w->sh->cfg_gen);
        pthread_mutex_unlock(&w->sh->cfg_lock);
        config_unref(w->cfg);
        tls_server_unref(w->tls);
        w->cfg = n;
        w->tls = t;
    }
    return w->cfg;
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
    if (c->txn.up_paused && c->txn.up && io_queued(s) < IO_LOW_WATER) {
        c->txn.up_paused = false;
        upstream_resume(c->txn.up);
        if (c->ph != PH_TUNNEL && !c->txn.resp_done)
            uv_timer_again(&c->utimer);
    }
}

static void client_send(conn *c, const uv_buf_t *bufs, unsigned n);

/* Sends the bytes held back in hold mode. */
void flush_held(conn *c)
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
void client_write(conn *c, const uv_buf_t *bufs, unsigned n)
{
    if (!c->txn.hold) {
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
    int rc = c->tls ? tls_conn_write(c->tls, v, m, on_client_written)
                    : io_write((uv_stream_t *)&c->tcp, v, m, on_client_written);
    io_cork_clear(&c->ccork);
    if (rc < 0) {
        conn_close(c, false);
        return;
    }
    /* Backpressure: a slow client pauses the upstream instead of letting
     * its response pile up in memory. */
    if (c->txn.up && !c->txn.up_paused && io_queued((uv_stream_t *)&c->tcp) >= IO_HIGH_WATER) {
        c->txn.up_paused = true;
        upstream_pause(c->txn.up);
        uv_timer_stop(&c->utimer);
    }
}

/* Sends what the client cork gathered and turns it off. */
void client_uncork(conn *c)
{
    c->ccork.on = false;
    if (c->ccork.b.len)
        client_send(c, NULL, 0);
}

void client_write_buf(conn *c, const buf *b)
{
    uv_buf_t ub = uv_buf_init(b->data, (unsigned)b->len);
    client_write(c, &ub, 1);
}

/* Backpressure the other way: stop reading the client while the upstream
 * (or the connect queue) holds more than the high-water mark. */
static void client_pause_reading(conn *c);
static void client_feed(conn *c, const char *data, size_t len);
static void on_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

static void check_client_backpressure(conn *c)
{
    if (c->ph != PH_BODY && c->ph != PH_TUNNEL)
        return;
    size_t queued = c->txn.up_ready ? upstream_queued(c->txn.up) : c->upq.len;
    if (queued >= IO_HIGH_WATER && !c->paused_bp) {
        c->paused_bp = true;
        client_pause_reading(c);
        uv_timer_stop(&c->ctimer); /* the wait is ours, not the client's */
    }
}

/* Ends a backpressure pause of the client's reads. */
void unpause_client(conn *c)
{
    if (!c->paused_bp)
        return;
    c->paused_bp = false;
    if (c->ph == PH_BODY)
        uv_timer_start(&c->ctimer, on_ctimer, c->txn.cfg->client_timeout_ms, 0);
    client_resume_reading(c);
}

/* Parses the bytes kept back while a request was answered. */
void feed_pending(conn *c)
{
    if (!c->pending.len)
        return;
    buf tmp = c->pending;
    buf_init(&c->pending);
    client_feed(c, tmp.data, tmp.len);
    buf_free(&tmp);
}

/* ------------------------------------------------------------------ */
/* client connection                                                   */

void on_ctimer(uv_timer_t *t)
{
    conn *c = t->data;
    switch (c->ph) {
    case PH_IDLE:
        if (c->tls && !tls_conn_ready(c->tls))
            STAT_INC(tls_handshake_failures); /* tls_handshake_timeout */
        conn_close(c, false);
        break;
    case PH_HEAD:
    case PH_BODY:
        assert(c->txn.rec);
        txn_fail(c, c->txn.resp_started ? 0 : 408, "request timeout", NULL);
        break;
    case PH_WAIT:
        if (!c->txn.resp_started)
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

static void tunnel_from_client(conn *c, const char *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    if (upstream_write(c->txn.up, &b, 1) < 0)
        conn_close(c, false);
    else
        check_client_backpressure(c);
}

static void client_feed(conn *c, const char *data, size_t len)
{
    if (c->txn.req_crlf && !httpmsg_chunk_crlf(&c->txn.req_crlf, data, len)) {
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
    relay_uncork(c);
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
        if (c->txn.body_drain && c->txn.rec && c->txn.resp_done)
            txn_finish(c); /* answered early; the body has now ended too */
        return;
    }
    if (err != HPE_OK) {
        /* A callback's own answer (431, 413, ...): llhttp reports it as
         * HPE_USER or as the failing callback's code (HPE_CB_*). */
        if (c->txn.err_status)
            txn_fail(c, c->txn.err_status, c->txn.err_text, NULL);
        else
            txn_fail(c, 400, "bad request", llhttp_get_error_reason(&c->cp));
        return;
    }
    if (c->ph == PH_BODY)
        uv_timer_again(&c->ctimer);
    check_client_backpressure(c);
}

/* Bytes of the client's stream (decrypted, on a TLS listener). */
static void client_data(conn *c, const char *data, size_t len)
{
    if (c->ph == PH_TUNNEL) {
        tunnel_from_client(c, data, len);
        return;
    }
    if (c->parser_paused) {
        /* Pipelined bytes: parsed once the request in flight is answered. */
        buf_append(&c->pending, data, len);
        if (c->pending.len >= PENDING_MAX)
            client_pause_reading(c);
        return;
    }
    client_feed(c, data, len);
}

static int on_client_plain(void *ud, const char *data, size_t len)
{
    conn *c = ud;
    client_data(c, data, len);
    return c->closing;
}

/* A plain HTTP request on a TLS port gets a plain answer that says so (as
 * nginx's 497), not a handshake failure the client cannot read. */
static void refuse_plain(conn *c)
{
    static const char body[] = "{\"error\":\"plain HTTP request sent to an HTTPS port\"}\n";
    char out[256];
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     sizeof body - 1, body);
    assert(n > 0 && (size_t)n < sizeof out);
    uv_buf_t b = uv_buf_init(out, (unsigned)n);
    STAT_INC(bad_requests);
    if (io_write((uv_stream_t *)&c->tcp, &b, 1, NULL) < 0) {
        conn_close(c, false);
        return;
    }
    tls_conn_free(c->tls); /* the close must not send a TLS alert */
    c->tls = NULL;
    conn_close(c, true);
}

/* Ciphertext from a client of a TLS listener. The handshake runs under its
 * own timeout; once it is done the idle timeout takes over. */
static void tls_read(conn *c, const char *data, size_t len)
{
    bool was_ready = tls_conn_ready(c->tls);
    char err[256];
    int rc = tls_conn_feed(c->tls, data, len, on_client_plain, c, err, sizeof err);
    if (c->closing)
        return;
    if (rc == TLS_NOT_TLS) {
        refuse_plain(c);
        return;
    }
    if (rc == TLS_ERROR) {
        STAT_INC(tls_handshake_failures);
        conn_close(c, false);
        return;
    }
    if (rc == TLS_CLOSED) {
        on_client_read((uv_stream_t *)&c->tcp, UV_EOF, NULL);
        return;
    }
    if (was_ready || !tls_conn_ready(c->tls))
        return;
    STAT_INC(tls_handshakes);
    if (tls_conn_resumed(c->tls))
        STAT_INC(tls_resumed);
    if (c->ph == PH_IDLE && !c->txn.rec)
        uv_timer_start(&c->ctimer, on_ctimer, worker_config(c->w)->idle_timeout_ms, 0);
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
        } else if (c->ph == PH_WAIT || (c->txn.req_done && c->txn.rec)) {
            c->client_eof = true; /* half-close: still deliver the answer */
        } else {
            txn_fail(c, 0, "client closed connection", n == UV_EOF ? NULL : uv_strerror((int)n));
        }
        return;
    }
    STAT_ADD(bytes_in, (uint64_t)n);
    if (c->tls)
        tls_read(c, b->base, (size_t)n);
    else
        client_data(c, b->base, (size_t)n);
}

void client_resume_reading(conn *c)
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
    httpmsg_hcollect_free(&c->hc);
    buf_free(&c->upq);
    httpmsg_hcollect_free(&c->rhc);
    buf_free(&c->reason);
    buf_free(&c->uphead);
    buf_free(&c->txn.repl_body);
    buf_free(&c->held);
    io_cork_free(&c->ccork);
    io_cork_free(&c->ucork);
    tls_conn_free(c->tls);
    free(c);
    proxy_check_drained(w);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    conn *c = req->data;
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
}

void conn_close(conn *c, bool graceful)
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
    if (c->txn.rec) {
        /* A request still in flight: capture it before it goes. */
        if (!c->txn.rec->error)
            c->txn.rec->error = xstrdup(c->w->draining ? "shutdown" : "connection closed");
        txn_close_record(c, false);
    }
    if (c->txn.up) {
        upstream_release(c->txn.up, false);
        c->txn.up = NULL;
    }
    if (c->txn.ticket) {
        pipeline_ticket_forget(c->txn.ticket); /* its commit is dropped when it arrives */
        c->txn.ticket = NULL;
    }
    /* Nothing of a request is left to the connection's memory. */
    assert(!c->txn.rec && !c->txn.cfg && !c->txn.up && !c->txn.ticket);
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
    if (graceful && c->tls)
        tls_conn_close_notify(c->tls);
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
    llhttp_init(&c->cp, HTTP_REQUEST, &txn_request_settings);
    c->cp.data = c;
    c->ph = PH_IDLE;
    if (w->tls)
        c->tls = tls_conn_server(w->tls, (uv_stream_t *)&c->tcp);
    uv_timer_start(&c->ctimer, on_ctimer,
                   c->tls ? cfg->tls_handshake_timeout_ms : cfg->idle_timeout_ms, 0);
    client_resume_reading(c);
}

void proxy_drain(proxy_worker *w)
{
    w->draining = true;
    conn *c = w->conns;
    while (c) {
        conn *next = c->next;
        if (c->ph == PH_IDLE && !c->txn.rec)
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
