#include "proxy/listener.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"

#define READBUF_LEN (64 * 1024)
/* Accept queue of each listening socket. */
#define LISTEN_BACKLOG 511
/* How long a start waits for another restspy's start on the same port to
 * finish its binds (they take well under a millisecond), and how often it
 * looks. */
#define STARTUP_LOCK_WAIT_MS 5000
#define STARTUP_LOCK_POLL_MS 2

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

/* ---- one port for one process ----
 * Each worker has its own socket in a SO_REUSEPORT group. Linux lets any
 * socket of the same user join such a group, so a second restspy on the
 * same port would start and take part of the traffic. Before its binds, a
 * start therefore binds a probe socket without SO_REUSEPORT: the kernel
 * refuses it next to any listener on the address (a reuseport group
 * included, and a wildcard address overlapping it), which is the "address
 * already in use" a plain bind gives, while SO_REUSEADDR lets it past the
 * TIME_WAIT leftovers of an earlier run. The probe is closed before the
 * workers bind, so two starts at the same moment could both pass it: a
 * startup lock, held from the probe until every socket listens, orders
 * them, and the second one's probe meets the first one's listeners. */

static int addr_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static socklen_t addr_len(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* The startup lock of a port: an abstract Unix socket name, which is per
 * network namespace like the port itself, and which the kernel frees when
 * its holder exits or dies, so a crash never leaves it taken. Returns the
 * descriptor that holds it (close it to unlock), or -1 with err. */
static int startup_lock(int port, const char *addr, char *err, size_t errlen)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    /* sun_path[0] stays NUL: that makes the name abstract. */
    int n = snprintf(un.sun_path + 1, sizeof un.sun_path - 1, "restspy/listen/%d", port);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    int64_t deadline = util_mono_us() + (int64_t)STARTUP_LOCK_WAIT_MS * 1000;
    while (bind(fd, (const struct sockaddr *)&un, len) < 0) {
        if (errno != EADDRINUSE || util_mono_us() > deadline) {
            snprintf(err, errlen, "cannot listen on %s: %s", addr,
                     errno == EADDRINUSE ? "another restspy is still starting on that port"
                                         : strerror(errno));
            close(fd);
            return -1;
        }
        util_sleep_ms(STARTUP_LOCK_POLL_MS);
    }
    return fd;
}

static int new_socket(const struct sockaddr_storage *ss, bool reuseport, char *err, size_t errlen)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
        snprintf(err, errlen, "SO_REUSEPORT: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* 0 when nothing listens on ss, else -1 with the bind error in err. */
static int probe_free(const struct sockaddr_storage *ss, const char *addr, char *err, size_t errlen)
{
    int fd = new_socket(ss, false, err, errlen);
    if (fd < 0)
        return -1;
    int rc = bind(fd, (const struct sockaddr *)ss, addr_len(ss));
    if (rc < 0)
        snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(errno));
    close(fd);
    return rc < 0 ? -1 : 0;
}

/* A listening socket of one worker, in the process's SO_REUSEPORT group. */
static int listen_socket(const struct sockaddr_storage *ss, const char *addr, char *err,
                         size_t errlen)
{
    int fd = new_socket(ss, true, err, errlen);
    if (fd < 0)
        return -1;
    if (bind(fd, (const struct sockaddr *)ss, addr_len(ss)) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Opens every worker's listening socket (w[i]->fd), or none: -1 with err,
 * "address already in use" when anything, another restspy included,
 * listens there already. */
static int open_sockets(listener *l, const struct sockaddr_storage *ss, const char *addr, char *err,
                        size_t errlen)
{
    int lock = startup_lock(addr_port(ss), addr, err, errlen);
    if (lock < 0)
        return -1;
    int rc = probe_free(ss, addr, err, errlen);
    for (int i = 0; rc == 0 && i < l->n; i++) {
        l->w[i]->fd = listen_socket(ss, addr, err, errlen);
        if (l->w[i]->fd < 0)
            rc = -1;
    }
    close(lock);
    return rc;
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
    for (int i = 0; i < nworkers; i++) {
        l->w[i] = xcalloc(1, sizeof *l->w[i]);
        l->w[i]->fd = -1;
    }
    /* Every socket first: a port in use fails the start, not a thread. */
    if (open_sockets(l, &ss, listen_addr, err, errlen) < 0) {
        for (int i = 0; i < nworkers; i++)
            worker_free(l->w[i]);
        free(l->w);
        free(l);
        return NULL;
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
        w->pw.pool =
            upstream_pool_new(&w->loop, (const struct sockaddr *)&sh->upstream_addr,
                              cfg->upstream_keepalive, cfg->upstream_connect_timeout_ms,
                              cfg->idle_timeout_ms, sh->up_tls, w->readbuf, sizeof w->readbuf);
        proxy_worker_init(&w->pw);
        uv_tcp_init(&w->loop, &w->server);
        w->server.data = w;
        int rc = uv_tcp_open(&w->server, w->fd);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&w->server, LISTEN_BACKLOG, on_connection);
        if (rc < 0) {
            snprintf(err, errlen, "cannot listen on %s: %s", listen_addr, uv_strerror(rc));
            abort(); /* the socket listens already: a programming error */
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
        tls_server_unref(w->pw.tls);
        uv_loop_close(&w->loop);
        worker_free(w);
    }
    free(l->w);
    free(l);
}
