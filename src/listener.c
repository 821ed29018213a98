#include "listener.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util.h"

#define READBUF_LEN (64 * 1024)

typedef struct worker {
    proxy_worker pw;
    listener *l;
    uv_loop_t loop;
    uv_tcp_t server;
    uv_async_t wake;
    uv_timer_t grace;
    uv_thread_t thread;
    int fd;
    uint64_t grace_ms;
    char readbuf[READBUF_LEN];
} worker;

struct listener {
    proxy_shared *sh;
    worker **w;
    int n;
};

int listener_resolve(const char *hostport, struct sockaddr_storage *ss, char *err, size_t errlen)
{
    char host[256];
    int port;
    if (util_split_hostport(hostport, host, sizeof host, &port) < 0) {
        snprintf(err, errlen, "bad address '%s' (expected host:port)", hostport);
        return -1;
    }
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "cannot resolve '%s': %s", host, gai_strerror(rc));
        return -1;
    }
    memset(ss, 0, sizeof *ss);
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static void on_connection(uv_stream_t *server, int status)
{
    worker *w = server->data;
    if (status < 0)
        return;
    proxy_accept(&w->pw, server);
}

static void on_closed_nop(uv_handle_t *h)
{
    (void)h;
}

static void on_pool_closed(void *ud)
{
    worker *w = ud;
    w->pw.pool = NULL;
}

/* Every connection is gone: close what is left so the loop can end. */
static void on_drained(proxy_worker *pw)
{
    worker *w = (worker *)pw;
    uv_timer_stop(&w->grace);
    uv_close((uv_handle_t *)&w->grace, on_closed_nop);
    uv_close((uv_handle_t *)&w->wake, on_closed_nop);
    proxy_worker_close(&w->pw);
    upstream_pool_close(w->pw.pool, on_pool_closed, w);
}

static void on_grace_over(uv_timer_t *t)
{
    worker *w = t->data;
    proxy_abort_all(&w->pw);
}

static void on_wake(uv_async_t *a)
{
    worker *w = a->data;
    if (w->pw.draining)
        return;
    uv_close((uv_handle_t *)&w->server, on_closed_nop);
    w->pw.on_drained = on_drained;
    uv_timer_start(&w->grace, on_grace_over, w->grace_ms, 0);
    proxy_drain(&w->pw);
}

static void worker_main(void *arg)
{
    worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

/* A listening socket of its own for each worker, bound with SO_REUSEPORT. */
static int bind_socket(const struct sockaddr_storage *ss, char *err, size_t errlen,
                       const char *addr)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
        snprintf(err, errlen, "SO_REUSEPORT: %s", strerror(errno));
        close(fd);
        return -1;
    }
    socklen_t len =
        ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, (const struct sockaddr *)ss, len) < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void worker_free(worker *w)
{
    if (w->fd >= 0)
        close(w->fd);
    free(w);
}

listener *listener_start(proxy_shared *sh, const char *listen_addr, int nworkers, char *err,
                         size_t errlen)
{
    struct sockaddr_storage ss;
    if (listener_resolve(listen_addr, &ss, err, errlen) < 0)
        return NULL;
    listener *l = xcalloc(1, sizeof *l);
    l->sh = sh;
    l->n = nworkers;
    l->w = xcalloc((size_t)nworkers, sizeof *l->w);
    /* Bind all first: a port in use fails the start, not a thread. */
    for (int i = 0; i < nworkers; i++) {
        worker *w = xcalloc(1, sizeof *w);
        l->w[i] = w;
        w->fd = bind_socket(&ss, err, errlen, listen_addr);
        if (w->fd < 0) {
            for (int j = 0; j <= i; j++)
                worker_free(l->w[j]);
            free(l->w);
            free(l);
            return NULL;
        }
    }
    for (int i = 0; i < nworkers; i++) {
        worker *w = l->w[i];
        w->l = l;
        uv_loop_init(&w->loop);
        w->pw.loop = &w->loop;
        w->pw.sh = sh;
        w->pw.readbuf = w->readbuf;
        w->pw.readbuf_len = sizeof w->readbuf;
        config *cfg = sh->cfg;
        w->pw.pool = upstream_pool_new(&w->loop, (const struct sockaddr *)&sh->upstream_addr,
                                       cfg->upstream_keepalive, cfg->upstream_connect_timeout_ms,
                                       cfg->idle_timeout_ms, w->readbuf, sizeof w->readbuf);
        proxy_worker_init(&w->pw);
        uv_tcp_init(&w->loop, &w->server);
        w->server.data = w;
        int rc = uv_tcp_open(&w->server, w->fd);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&w->server, 511, on_connection);
        if (rc < 0) {
            snprintf(err, errlen, "cannot listen on %s: %s", listen_addr, uv_strerror(rc));
            abort(); /* bind succeeded, so this is a programming error */
        }
        w->fd = -1; /* now owned by the loop */
        uv_async_init(&w->loop, &w->wake, on_wake);
        w->wake.data = w;
        uv_timer_init(&w->loop, &w->grace);
        w->grace.data = w;
        uv_thread_create(&w->thread, worker_main, w);
    }
    return l;
}

void listener_stop(listener *l, uint64_t grace_ms)
{
    if (!l)
        return;
    for (int i = 0; i < l->n; i++) {
        l->w[i]->grace_ms = grace_ms;
        uv_async_send(&l->w[i]->wake);
    }
    for (int i = 0; i < l->n; i++) {
        worker *w = l->w[i];
        uv_thread_join(&w->thread);
        config_unref(w->pw.cfg);
        uv_loop_close(&w->loop);
        worker_free(w);
    }
    free(l->w);
    free(l);
}
