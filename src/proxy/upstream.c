#include "proxy/upstream.h"

#include <string.h>

#include "base/iostream.h"
#include "pipeline/stats.h"
#include "base/util.h"

struct upstream_conn {
    uv_tcp_t tcp;
    tls_conn *tls;     /* https upstream: owned, freed with the struct */
    char tls_err[200]; /* why TLS failed after the handshake ("" if it did not) */
    uv_timer_t timer;  /* connect timeout, then idle timeout */
    uv_connect_t creq;
    upstream_pool *pool;
    const upstream_handler *h;
    void *owner;
    upstream_conn *next, *prev; /* idle list */
    int open_handles;
    int connect_err; /* a connect that failed at once, reported on the next tick */
    bool connecting, idle, closing, reading, above_high;
};

struct upstream_pool {
    uv_loop_t *loop;
    struct sockaddr_storage addr;
    uint64_t keepalive_max, connect_timeout_ms, idle_timeout_ms;
    tls_client *tls;
    char *readbuf;
    size_t readbuf_len;
    upstream_conn idle; /* sentinel of the idle list */
    size_t nidle;
    size_t live; /* connections not yet fully closed */
    bool closing;
    void (*done)(void *);
    void *done_ud;
};

static void pool_maybe_done(upstream_pool *p)
{
    if (p->closing && p->live == 0) {
        void (*done)(void *) = p->done;
        void *ud = p->done_ud;
        free(p);
        if (done)
            done(ud);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    upstream_conn *up = h->data;
    if (--up->open_handles > 0)
        return;
    upstream_pool *p = up->pool;
    tls_conn_free(up->tls);
    free(up);
    p->live--;
    pool_maybe_done(p);
}

static void idle_unlink(upstream_conn *up)
{
    if (!up->idle)
        return;
    up->prev->next = up->next;
    up->next->prev = up->prev;
    up->idle = false;
    up->pool->nidle--;
}

/* Closes the socket and the timer; the struct is freed when both are. */
static void up_close(upstream_conn *up)
{
    if (up->closing)
        return;
    up->closing = true;
    up->owner = NULL;
    up->h = NULL;
    idle_unlink(up);
    uv_close((uv_handle_t *)&up->timer, on_handle_closed);
    uv_close((uv_handle_t *)&up->tcp, on_handle_closed);
}

upstream_pool *upstream_pool_new(uv_loop_t *loop, const struct sockaddr *addr,
                                 uint64_t keepalive_max, uint64_t connect_timeout_ms,
                                 uint64_t idle_timeout_ms, tls_client *tls, char *readbuf,
                                 size_t readbuf_len)
{
    upstream_pool *p = xcalloc(1, sizeof *p);
    p->loop = loop;
    memcpy(&p->addr, addr,
           addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    p->keepalive_max = keepalive_max;
    p->connect_timeout_ms = connect_timeout_ms;
    p->idle_timeout_ms = idle_timeout_ms;
    p->tls = tls;
    p->readbuf = readbuf;
    p->readbuf_len = readbuf_len;
    p->idle.next = p->idle.prev = &p->idle;
    return p;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    upstream_conn *up = h->data;
    *b = uv_buf_init(up->pool->readbuf, (unsigned)up->pool->readbuf_len);
}

static void tls_read(upstream_conn *up, const char *data, size_t len);
static void handshake_done(upstream_conn *up, const char *why);

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    upstream_conn *up = s->data;
    if (n == 0)
        return;
    if (up->tls && n > 0) {
        tls_read(up, b->base, (size_t)n);
        return;
    }
    if (up->tls && up->connecting) {
        /* Closed in the middle of the handshake: the owner is still
         * waiting for on_connect, which says so. */
        char why[sizeof up->tls_err];
        snprintf(why, sizeof why, "handshake failed: %s",
                 n == UV_EOF ? "connection closed" : uv_strerror((int)n));
        handshake_done(up, why);
        return;
    }
    if (!up->owner) {
        /* Idle: the backend closed, or sent bytes nobody asked for. */
        up_close(up);
        return;
    }
    if (n < 0) {
        const upstream_handler *h = up->h;
        void *owner = up->owner;
        uv_read_stop(s);
        up->reading = false;
        h->on_eof(owner, up, (int)n);
        return;
    }
    up->h->on_data(up->owner, up, b->base, (size_t)n);
}

/* The handshake is over (why NULL) or failed. */
static void handshake_done(upstream_conn *up, const char *why)
{
    const upstream_handler *h = up->h;
    void *owner = up->owner;
    up->connecting = false;
    uv_timer_stop(&up->timer);
    if (why)
        up_close(up);
    h->on_connect(owner, up, why ? UV_EPROTO : 0, why);
}

static int on_plain(void *ud, const char *data, size_t len)
{
    upstream_conn *up = ud;
    if (!up->owner) {
        up_close(up); /* idle: bytes nobody asked for */
        return 1;
    }
    up->h->on_data(up->owner, up, data, len);
    return up->closing;
}

/* Ciphertext from an https upstream. */
static void tls_read(upstream_conn *up, const char *data, size_t len)
{
    char why[sizeof up->tls_err];
    int rc = tls_conn_feed(up->tls, data, len, on_plain, up, why, sizeof why);
    if (up->closing)
        return;
    if (up->connecting) {
        if (rc != TLS_OK)
            handshake_done(up, rc == TLS_ERROR ? why : "handshake failed: connection closed");
        else if (tls_conn_ready(up->tls))
            handshake_done(up, NULL);
        return;
    }
    if (rc == TLS_OK)
        return;
    if (!up->owner) {
        up_close(up);
        return;
    }
    const upstream_handler *h = up->h;
    void *owner = up->owner;
    uv_read_stop((uv_stream_t *)&up->tcp);
    up->reading = false;
    if (rc == TLS_ERROR)
        memcpy(up->tls_err, why, sizeof why);
    h->on_eof(owner, up, rc == TLS_CLOSED ? UV_EOF : UV_EPROTO);
}

static void start_reading(upstream_conn *up)
{
    if (!up->reading && !up->closing) {
        up->reading = true;
        uv_read_start((uv_stream_t *)&up->tcp, on_alloc, on_read);
    }
}

static void on_connect_timeout(uv_timer_t *t)
{
    upstream_conn *up = t->data;
    const upstream_handler *h = up->h;
    void *owner = up->owner;
    up->connecting = false;
    up_close(up); /* the pending connect completes with UV_ECANCELED */
    if (h)
        h->on_connect(owner, up, up->connect_err ? up->connect_err : UV_ETIMEDOUT, NULL);
}

static void on_connected(uv_connect_t *req, int status)
{
    upstream_conn *up = req->data;
    if (!up->connecting)
        return; /* timed out or released meanwhile */
    const upstream_handler *h = up->h;
    void *owner = up->owner;
    if (status < 0) {
        up->connecting = false;
        uv_timer_stop(&up->timer);
        up_close(up);
        h->on_connect(owner, up, status, NULL);
        return;
    }
    uv_tcp_nodelay(&up->tcp, 1);
    if (up->pool->tls) {
        /* Still connecting until the handshake is done, under the same
         * connect timeout. */
        up->tls = tls_conn_client(up->pool->tls, (uv_stream_t *)&up->tcp);
        start_reading(up);
        return;
    }
    up->connecting = false;
    uv_timer_stop(&up->timer);
    start_reading(up);
    h->on_connect(owner, up, 0, NULL);
}

static void on_idle_timeout(uv_timer_t *t)
{
    up_close(t->data);
}

upstream_conn *upstream_acquire(upstream_pool *p, const upstream_handler *h, void *owner,
                                bool fresh, bool *ready)
{
    if (p->nidle && !fresh) {
        /* Most recently used first: it is the least likely to have been
         * closed by the backend's own keep-alive timeout. */
        upstream_conn *up = p->idle.next;
        idle_unlink(up);
        uv_timer_stop(&up->timer);
        up->h = h;
        up->owner = owner;
        *ready = true;
        STAT_INC(upstream_reused);
        return up;
    }
    upstream_conn *up = xcalloc(1, sizeof *up);
    up->pool = p;
    up->h = h;
    up->owner = owner;
    up->tcp.data = up->timer.data = up->creq.data = up;
    uv_tcp_init(p->loop, &up->tcp);
    uv_timer_init(p->loop, &up->timer);
    up->open_handles = 2;
    p->live++;
    up->connecting = true;
    *ready = false;
    STAT_INC(upstream_connects);
    int rc = uv_tcp_connect(&up->creq, &up->tcp, (const struct sockaddr *)&p->addr, on_connected);
    if (rc < 0) {
        /* Report asynchronously, as promised: a zero timeout fires on the
         * next loop iteration with the error remembered. */
        up->connect_err = rc;
        uv_timer_start(&up->timer, on_connect_timeout, 0, 0);
        return up;
    }
    uv_timer_start(&up->timer, on_connect_timeout, p->connect_timeout_ms, 0);
    return up;
}

static void on_write_done(uv_stream_t *s, int status)
{
    upstream_conn *up = s->data;
    if (status < 0 || !up->owner)
        return; /* a failed write also fails the read side: on_eof reports it */
    if (up->above_high && io_queued(s) < IO_LOW_WATER) {
        up->above_high = false;
        up->h->on_drain(up->owner, up);
    }
}

int upstream_write(upstream_conn *up, const uv_buf_t *bufs, unsigned n)
{
    int rc = up->tls ? tls_conn_write(up->tls, bufs, n, on_write_done)
                     : io_write((uv_stream_t *)&up->tcp, bufs, n, on_write_done);
    if (rc == 0 && io_queued((uv_stream_t *)&up->tcp) >= IO_HIGH_WATER)
        up->above_high = true;
    return rc;
}

const char *upstream_tls_error(const upstream_conn *up)
{
    return up->tls_err[0] ? up->tls_err : NULL;
}

size_t upstream_queued(const upstream_conn *up)
{
    return io_queued((const uv_stream_t *)&up->tcp);
}

void upstream_pause(upstream_conn *up)
{
    if (up->reading) {
        uv_read_stop((uv_stream_t *)&up->tcp);
        up->reading = false;
    }
}

void upstream_resume(upstream_conn *up)
{
    start_reading(up);
}

void upstream_release(upstream_conn *up, bool reusable)
{
    upstream_pool *p = up->pool;
    up->owner = NULL;
    up->h = NULL;
    if (!reusable || up->connecting || up->closing || p->closing || p->nidle >= p->keepalive_max ||
        io_queued((uv_stream_t *)&up->tcp) > 0) {
        up->connecting = false;
        up_close(up);
        return;
    }
    start_reading(up);
    up->idle = true;
    up->next = p->idle.next;
    up->prev = &p->idle;
    p->idle.next->prev = up;
    p->idle.next = up;
    p->nidle++;
    uv_timer_start(&up->timer, on_idle_timeout, p->idle_timeout_ms, 0);
}

void upstream_pool_close(upstream_pool *p, void (*done)(void *ud), void *ud)
{
    p->closing = true;
    p->done = done;
    p->done_ud = ud;
    while (p->nidle)
        up_close(p->idle.next);
    pool_maybe_done(p);
}
