/* Unit tests for hclient (its blocking form, then the async one) against a scripted server thread
 * on 127.0.0.1:0: body framings, keep-alive reuse and the retry on a connection the server closed,
 * bad answers, timeouts, refused connections. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "http/hclient.h"
#include "base/util.h"

/* ---- the scripted server ---- */

typedef struct srv srv;
/* Serves one accepted connection (conn_no counts from 0); the fd is closed
 * after it returns. */
typedef void (*srv_handler)(srv *s, int fd, int conn_no);

struct srv {
    int lfd;
    int port;
    int conns; /* connections to accept before the thread ends */
    int accepted;
    srv_handler handler;
    buf requests; /* every request received, concatenated */
    int nrequests;
    volatile int quit; /* set by the test: stop waiting for connections */
    pthread_t th;
};

static void *srv_main(void *arg)
{
    srv *s = arg;
    for (int i = 0; i < s->conns; i++) {
        int ready = 0;
        for (int w = 0; w < 50 && !s->quit && !ready; w++) {
            struct pollfd p = {.fd = s->lfd, .events = POLLIN};
            ready = poll(&p, 1, 100) == 1;
        }
        if (!ready)
            break;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            break;
        s->accepted++;
        s->handler(s, fd, i);
        close(fd);
    }
    return NULL;
}

static srv *srv_start(srv_handler h, int conns)
{
    srv *s = xcalloc(1, sizeof *s);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->lfd, 8), 0);
    socklen_t al = sizeof a;
    getsockname(s->lfd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    s->conns = conns;
    s->handler = h;
    pthread_create(&s->th, NULL, srv_main, s);
    return s;
}

/* Frees s once its thread has ended (srv_stop, or accepted_after). */
static void srv_free(srv *s)
{
    close(s->lfd);
    buf_free(&s->requests);
    free(s);
}

/* Joins the thread (after the client is done) and frees. */
static void srv_stop(srv *s)
{
    s->quit = 1;
    pthread_join(s->th, NULL);
    srv_free(s);
}

static char *base_url(const srv *s, const char *userinfo)
{
    char u[128];
    snprintf(u, sizeof u, "http://%s%s127.0.0.1:%d/ignored/path", userinfo ? userinfo : "",
             userinfo ? "@" : "", s->port);
    return xstrdup(u);
}

/* Reads one request (head and Content-Length body) into s->requests. 0, or
 * -1 when the client closed first. */
static int read_request(srv *s, int fd)
{
    buf r = BUF_INIT;
    char tmp[4096];
    size_t need = 0;
    for (;;) {
        if (need == 0 && r.len) {
            char *end = strstr(r.data, "\r\n\r\n");
            if (end) {
                size_t headlen = (size_t)(end - r.data) + 4;
                char *cl = strcasestr(r.data, "\r\nContent-Length:");
                size_t bl = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
                need = headlen + bl;
            }
        }
        if (need && r.len >= need)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) != 1)
            break;
        ssize_t n = recv(fd, tmp, sizeof tmp, 0);
        if (n <= 0) {
            buf_free(&r);
            return -1;
        }
        buf_append(&r, tmp, (size_t)n);
    }
    buf_append(&s->requests, r.data, r.len);
    s->nrequests++;
    buf_free(&r);
    return 0;
}

static void put(int fd, const char *text)
{
    size_t n = strlen(text);
    while (n) {
        ssize_t w = send(fd, text, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        text += w;
        n -= (size_t)w;
    }
}

/* ---- handlers ---- */

static void h_length(srv *s, int fd, int no)
{
    (void)no;
    if (read_request(s, fd) == 0)
        put(fd, "HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-A: b\r\nX-A: c\r\n\r\nhello");
}

static void h_chunked(srv *s, int fd, int no)
{
    (void)no;
    if (read_request(s, fd) == 0)
        put(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
}

static void h_close(srv *s, int fd, int no)
{
    (void)no;
    if (read_request(s, fd) == 0)
        put(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbye ");
    usleep(20000); /* the body arrives in two pieces */
    put(fd, "bye");
}

static void h_two(srv *s, int fd, int no)
{
    (void)no;
    for (int i = 0; i < 2; i++)
        if (read_request(s, fd) == 0)
            put(fd, i == 0 ? "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"
                           : "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo");
}

/* First connection: answers one request, reads the second and closes
 * without a word (a server's idle timeout racing the reuse). */
static void h_race(srv *s, int fd, int no)
{
    if (read_request(s, fd) != 0)
        return;
    if (no == 0) {
        put(fd, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none");
        read_request(s, fd);
        return;
    }
    put(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nagain");
}

/* First connection: answers, then closes at once (idle close noticed before
 * reuse). */
static void h_idle_close(srv *s, int fd, int no)
{
    (void)no;
    if (read_request(s, fd) == 0)
        put(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
}

static void h_silent_close(srv *s, int fd, int no)
{
    (void)no;
    read_request(s, fd);
}

static void h_garbage(srv *s, int fd, int no)
{
    (void)no;
    if (read_request(s, fd) == 0)
        put(fd, "HTTP/1.1 2OO NOPE\r\n\r\n");
}

static void h_hang(srv *s, int fd, int no)
{
    (void)no;
    if (read_request(s, fd) == 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        poll(&p, 1, 3000); /* until the client gives up and closes */
    }
}

static void h_head_then_get(srv *s, int fd, int no)
{
    (void)no;
    if (read_request(s, fd) == 0)
        put(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
    if (read_request(s, fd) == 0)
        put(fd, "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
    if (read_request(s, fd) == 0)
        put(fd, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n");
}

static void h_huge(srv *s, int fd, int no)
{
    (void)no;
    if (read_request(s, fd) != 0)
        return;
    put(fd, "HTTP/1.1 200 OK\r\nContent-Length: 17825792\r\n\r\n");
    static char chunk[65536];
    memset(chunk, 'x', sizeof chunk);
    for (int i = 0; i < 272; i++)
        if (send(fd, chunk, sizeof chunk, MSG_NOSIGNAL) <= 0)
            return;
}

/* ---- tests ---- */

/* The blocking client on base, as the replicator makes it. */
static hclient_sync *mk(const char *base, uint64_t timeout_ms, char *err, size_t errlen)
{
    hclient_opts o = {.base = base, .timeout_ms = timeout_ms};
    return hclient_sync_new(&o, err, errlen);
}

static void test_content_length_and_request(void **state)
{
    (void)state;
    srv *s = srv_start(h_length, 1);
    char *base = base_url(s, "us%65r:p%40ss");
    char err[256];
    hclient_sync *c = mk(base, 2000, err, sizeof err);
    assert_non_null(c);
    http_headers h = {0};
    http_headers_add(&h, "X-Test", 6, "1", 1);
    http_headers_add(&h, "Content-Length", 14, "999", 3); /* replaced by the real one */
    hclient_response r;
    int rc = hclient_sync_request(c, "POST", "/api/x?y=1", &h, "{\"a\":1}", 7, &r, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(r.status, 201);
    assert_int_equal(r.body.len, 5);
    assert_memory_equal(r.body.data, "hello", 5);
    assert_int_equal(r.headers.len, 3);
    assert_string_equal(http_headers_get(&r.headers, "x-a"), "b");
    hclient_response_free(&r);
    hclient_sync_free(c);
    pthread_join(s->th, NULL);
    const char *q = s->requests.data;
    assert_non_null(strstr(q, "POST /api/x?y=1 HTTP/1.1\r\n"));
    char host[64];
    snprintf(host, sizeof host, "\r\nHost: 127.0.0.1:%d\r\n", s->port);
    assert_non_null(strstr(q, host));
    assert_non_null(strstr(q, "\r\nX-Test: 1\r\n"));
    assert_non_null(strstr(q, "\r\nContent-Length: 7\r\n"));
    assert_null(strstr(q, "999"));
    /* "user:p@ss" */
    assert_non_null(strstr(q, "\r\nAuthorization: Basic dXNlcjpwQHNz\r\n"));
    assert_non_null(strstr(q, "\r\n\r\n{\"a\":1}"));
    srv_free(s);
    http_headers_free(&h);
    free(base);
}

static void test_chunked(void **state)
{
    (void)state;
    srv *s = srv_start(h_chunked, 1);
    char *base = base_url(s, NULL);
    char err[256];
    hclient_sync *c = mk(base, 2000, err, sizeof err);
    hclient_response r;
    assert_int_equal(hclient_sync_request(c, "GET", "/", NULL, NULL, 0, &r, err, sizeof err), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 11);
    assert_memory_equal(r.body.data, "hello world", 11);
    hclient_response_free(&r);
    hclient_sync_free(c);
    srv_stop(s);
    free(base);
}

static void test_close_delimited(void **state)
{
    (void)state;
    srv *s = srv_start(h_close, 1);
    char *base = base_url(s, NULL);
    char err[256];
    hclient_sync *c = mk(base, 2000, err, sizeof err);
    hclient_response r;
    assert_int_equal(hclient_sync_request(c, "GET", "/", NULL, NULL, 0, &r, err, sizeof err), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 7);
    assert_memory_equal(r.body.data, "bye bye", 7);
    hclient_response_free(&r);
    hclient_sync_free(c);
    srv_stop(s);
    free(base);
}

static int accepted_after(srv *s)
{
    s->quit = 1;
    pthread_join(s->th, NULL);
    int n = s->accepted;
    s->conns = 0;
    return n;
}

static void test_keepalive_reuse(void **state)
{
    (void)state;
    srv *s = srv_start(h_two, 2);
    char *base = base_url(s, NULL);
    char err[256];
    hclient_sync *c = mk(base, 2000, err, sizeof err);
    hclient_response r;
    const char *want[] = {"one", "two"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(hclient_sync_request(c, "GET", "/", NULL, NULL, 0, &r, err, sizeof err),
                         0);
        assert_int_equal(r.body.len, 3);
        assert_memory_equal(r.body.data, want[i], 3);
        hclient_response_free(&r);
    }
    hclient_sync_free(c);
    /* Both requests went over the first connection. */
    assert_int_equal(accepted_after(s), 1);
    assert_int_equal(s->nrequests, 2);
    srv_free(s);
    free(base);
}

static void test_retry_after_server_close(void **state)
{
    (void)state;
    srv *s = srv_start(h_race, 2);
    char *base = base_url(s, NULL);
    char err[256];
    hclient_sync *c = mk(base, 2000, err, sizeof err);
    hclient_response r;
    assert_int_equal(hclient_sync_request(c, "GET", "/a", NULL, NULL, 0, &r, err, sizeof err), 0);
    hclient_response_free(&r);
    int rc = hclient_sync_request(c, "PUT", "/b", NULL, "x", 1, &r, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body.data, "again", 5);
    hclient_response_free(&r);
    hclient_sync_free(c);
    assert_int_equal(accepted_after(s), 2);
    assert_int_equal(s->nrequests, 3); /* /a, /b lost, /b again */
    srv_free(s);
    free(base);
}

static void test_idle_close_reconnects(void **state)
{
    (void)state;
    srv *s = srv_start(h_idle_close, 2);
    char *base = base_url(s, NULL);
    char err[256];
    hclient_sync *c = mk(base, 2000, err, sizeof err);
    hclient_response r;
    assert_int_equal(hclient_sync_request(c, "GET", "/a", NULL, NULL, 0, &r, err, sizeof err), 0);
    hclient_response_free(&r);
    usleep(50000); /* let the close arrive */
    assert_int_equal(hclient_sync_request(c, "GET", "/b", NULL, NULL, 0, &r, err, sizeof err), 0);
    assert_memory_equal(r.body.data, "ok", 2);
    hclient_response_free(&r);
    hclient_sync_free(c);
    assert_int_equal(accepted_after(s), 2);
    assert_int_equal(s->nrequests, 2);
    srv_free(s);
    free(base);
}

static void test_fresh_connection_closed_is_an_error(void **state)
{
    (void)state;
    srv *s = srv_start(h_silent_close, 2);
    char *base = base_url(s, NULL);
    char err[256];
    hclient_sync *c = mk(base, 2000, err, sizeof err);
    hclient_response r;
    assert_int_equal(hclient_sync_request(c, "GET", "/", NULL, NULL, 0, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "invalid response"));
    hclient_response_free(&r);
    hclient_sync_free(c);
    assert_int_equal(accepted_after(s), 1); /* not retried: it was not a reused one */
    srv_free(s);
    free(base);
}

static void test_garbage(void **state)
{
    (void)state;
    srv *s = srv_start(h_garbage, 1);
    char *base = base_url(s, NULL);
    char err[256];
    hclient_sync *c = mk(base, 2000, err, sizeof err);
    hclient_response r;
    assert_int_equal(hclient_sync_request(c, "GET", "/", NULL, NULL, 0, &r, err, sizeof err), -1);
    assert_true(strncmp(err, "invalid response", 16) == 0);
    hclient_response_free(&r);
    hclient_sync_free(c);
    srv_stop(s);
    free(base);
}

static void test_timeout(void **state)
{
    (void)state;
    srv *s = srv_start(h_hang, 1);
    char *base = base_url(s, NULL);
    char err[256];
    hclient_sync *c = mk(base, 200, err, sizeof err);
    hclient_response r;
    int64_t t0 = util_mono_us();
    assert_int_equal(hclient_sync_request(c, "GET", "/", NULL, NULL, 0, &r, err, sizeof err), -1);
    int64_t took = util_mono_us() - t0;
    assert_string_equal(err, "timeout");
    assert_true(took >= 150000 && took < 2000000);
    hclient_response_free(&r);
    hclient_sync_free(c);
    srv_stop(s);
    free(base);
}

static void test_refused(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&a, sizeof a);
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd); /* nobody listens there now */
    char base[64], err[256];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", ntohs(a.sin_port));
    hclient_sync *c = mk(base, 1000, err, sizeof err);
    hclient_response r;
    assert_int_equal(hclient_sync_request(c, "GET", "/", NULL, NULL, 0, &r, err, sizeof err), -1);
    assert_string_equal(err, "connect: Connection refused");
    hclient_response_free(&r);
    hclient_sync_free(c);
}

static void test_no_body_answers(void **state)
{
    (void)state;
    srv *s = srv_start(h_head_then_get, 1);
    char *base = base_url(s, NULL);
    char err[256];
    hclient_sync *c = mk(base, 2000, err, sizeof err);
    hclient_response r;
    /* HEAD: Content-Length 5 but no body follows. */
    assert_int_equal(hclient_sync_request(c, "HEAD", "/", NULL, NULL, 0, &r, err, sizeof err), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 0);
    hclient_response_free(&r);
    assert_int_equal(hclient_sync_request(c, "DELETE", "/", NULL, NULL, 0, &r, err, sizeof err), 0);
    assert_int_equal(r.status, 204);
    hclient_response_free(&r);
    /* An interim 100 is skipped; the 304 has no body. */
    assert_int_equal(hclient_sync_request(c, "GET", "/", NULL, NULL, 0, &r, err, sizeof err), 0);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.headers.len, 1);
    assert_string_equal(http_headers_get(&r.headers, "ETag"), "\"x\"");
    hclient_response_free(&r);
    hclient_sync_free(c);
    assert_int_equal(accepted_after(s), 1);
    assert_null(strstr(s->requests.data, "Content-Length")); /* none for HEAD/DELETE/GET */
    srv_free(s);
    free(base);
}

static void test_body_too_large(void **state)
{
    (void)state;
    srv *s = srv_start(h_huge, 1);
    char *base = base_url(s, NULL);
    char err[256];
    hclient_sync *c = mk(base, 10000, err, sizeof err);
    hclient_response r;
    assert_int_equal(hclient_sync_request(c, "GET", "/", NULL, NULL, 0, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "larger than 16777216"));
    hclient_response_free(&r);
    hclient_sync_free(c);
    srv_stop(s);
    free(base);
}

static void test_bad_input(void **state)
{
    (void)state;
    char err[256];
    assert_null(mk("ftp://x:1", 1000, err, sizeof err));
    assert_non_null(strstr(err, "bad URL"));
    hclient_sync *tls = mk("https://x:1", 1000, err, sizeof err); /* https is accepted */
    assert_non_null(tls);
    hclient_sync_free(tls);
    hclient_opts ko = {.base = "https://x:1", .tls = {.key_file = "k.pem"}};
    assert_null(hclient_sync_new(&ko, err, sizeof err));
    assert_string_equal(err, "--key needs --cert");
    assert_null(mk("http://", 1000, err, sizeof err));
    assert_null(mk("http://host:99999", 1000, err, sizeof err));
    hclient_sync *c = mk("http://[::1]:9", 1000, err, sizeof err);
    assert_non_null(c);
    hclient_sync_free(c);
    c = mk("http://127.0.0.1:9", 1000, err, sizeof err);
    http_headers h = {0};
    http_headers_add(&h, "X-Evil", 6, "a\r\nX-Injected: 1", 17);
    hclient_response r;
    assert_int_equal(hclient_sync_request(c, "POST", "/", &h, "", 0, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "invalid request"));
    hclient_response_free(&r);
    http_headers_free(&h);
    assert_int_equal(hclient_sync_request(c, "GET", "/a b", NULL, NULL, 0, &r, err, sizeof err),
                     -1);
    hclient_response_free(&r);
    hclient_sync_free(c);
}

/* ---- the async form ---- */

static void h_three(srv *s, int fd, int no)
{
    (void)no;
    for (int i = 0; i < 3; i++)
        if (read_request(s, fd) == 0)
            put(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nk");
}

typedef struct got {
    int n;
    int status[4];
    char body[4];
    char *error[4];
    hclient *free_in_cb; /* freed from the callback of the answer that ends the test */
} got;

static void on_got(void *ud, hclient_result *res)
{
    got *g = ud;
    assert_true(g->n < 4);
    g->status[g->n] = res->status;
    g->body[g->n] = res->body.len == 1 ? res->body.data[0] : '?';
    g->error[g->n] = res->error ? xstrdup(res->error) : NULL;
    if (res->error)
        assert_int_not_equal(res->fail, HCLIENT_OK);
    else
        assert_true(res->total_us > 0 && res->started_us > 0);
    g->n++;
    if (g->free_in_cb && g->n == 3)
        hclient_free(g->free_in_cb);
}

/* Three requests started at once on one connection: queued by libcurl,
 * answered in order over the kept-alive connection; the host name is never
 * resolved (connect_addr), the Host header still carries it; the client is
 * freed from the last callback. */
static void test_async_queue_and_connect_addr(void **state)
{
    (void)state;
    srv *s = srv_start(h_three, 2);
    char base[96], err[256];
    snprintf(base, sizeof base, "http://api.example.invalid:%d", s->port);
    uv_loop_t loop;
    uv_loop_init(&loop);
    hclient_opts o = {
        .base = base, .timeout_ms = 2000, .max_conns = 1, .connect_addr = "127.0.0.1"};
    hclient *c = hclient_new(&loop, &o, err, sizeof err);
    assert_non_null(c);
    hclient_msg *m = hclient_msg_new(c, "GET", "/q", NULL, NULL, NULL, 0, err, sizeof err);
    hclient_msg *mh = hclient_msg_new(c, "GET", "/h", NULL, "other:1", NULL, 0, err, sizeof err);
    assert_non_null(m);
    assert_null(hclient_msg_new(c, "GET", "/x", NULL, "a\r\nB: c", NULL, 0, err, sizeof err));
    assert_non_null(strstr(err, "invalid request"));
    got g = {.free_in_cb = c};
    hclient_start(c, m, 0, on_got, &g);
    hclient_start(c, mh, 0, on_got, &g);
    hclient_start(c, m, 0, on_got, &g);
    assert_int_equal(g.n, 0); /* never from hclient_start */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(g.n, 3);
    for (int i = 0; i < 3; i++) {
        assert_null(g.error[i]);
        assert_int_equal(g.status[i], 200);
        assert_int_equal(g.body[i], 'k');
    }
    assert_int_equal(uv_loop_close(&loop), 0);
    hclient_msg_free(m);
    hclient_msg_free(mh);
    assert_int_equal(accepted_after(s), 1);
    assert_int_equal(s->nrequests, 3);
    char host[64];
    snprintf(host, sizeof host, "\r\nHost: api.example.invalid:%d\r\n", s->port);
    assert_non_null(strstr(s->requests.data, host));
    assert_non_null(strstr(s->requests.data, "GET /h HTTP/1.1\r\nHost: other:1\r\n"));
    srv_free(s);
}

/* A per-request timeout shorter than the client's; a refused connect says
 * its errno; freeing the client with a request in flight calls nothing. */
static void test_async_errors(void **state)
{
    (void)state;
    srv *s = srv_start(h_hang, 1);
    char base[64], err[256];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", s->port);
    uv_loop_t loop;
    uv_loop_init(&loop);
    hclient_opts o = {.base = base, .timeout_ms = 10000};
    hclient *c = hclient_new(&loop, &o, err, sizeof err);
    hclient_msg *m = hclient_msg_new(c, "GET", "/", NULL, NULL, NULL, 0, err, sizeof err);
    got g = {0};
    int64_t t0 = util_mono_us();
    hclient_start(c, m, 150, on_got, &g);
    while (g.n < 1)
        uv_run(&loop, UV_RUN_ONCE);
    assert_true(util_mono_us() - t0 < 2000000);
    assert_string_equal(g.error[0], "timeout");
    hclient_start(c, m, 0, on_got, &g); /* in flight when freed */
    uv_run(&loop, UV_RUN_NOWAIT);
    hclient_free(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(g.n, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    hclient_msg_free(m);
    free(g.error[0]);
    srv_stop(s);
}

/* ---- https: a real TLS server, `openssl s_server -www`, with
 * certificates from the test CA (tests/integration/tlsca.py) ---- */

/* The test CA's files in a new directory under /tmp (dir, 64 bytes). */
static void make_pki(char *dir)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(n > 0);
    exe[n] = '\0';
    /* build/test_hclient: the source tree is the build directory's parent. */
    for (int up = 0; up < 2; up++)
        *strrchr(exe, '/') = '\0';
    snprintf(dir, 64, "/tmp/hclient-pki-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "python3 %s/tests/integration/tlsca.py %s/pki >/dev/null", exe, dir);
    assert_int_equal(system(cmd), 0);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    return ntohs(a.sin_port);
}

/* Starts s_server on 127.0.0.1 with certificate name; with client_ca it
 * requires a client certificate. Returns when it accepts connections. */
static pid_t tls_server(const char *dir, const char *name, bool client_ca, int *port)
{
    *port = free_port();
    char acc[32], cert[128], key[128], ca[128];
    snprintf(acc, sizeof acc, "127.0.0.1:%d", *port);
    snprintf(cert, sizeof cert, "%s/pki/%s.pem", dir, name);
    snprintf(key, sizeof key, "%s/pki/%s.key", dir, name);
    snprintf(ca, sizeof ca, "%s/pki/ca.pem", dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (client_ca)
            execlp("openssl", "openssl", "s_server", "-quiet", "-accept", acc, "-cert", cert,
                   "-key", key, "-www", "-Verify", "1", "-CAfile", ca, (char *)NULL);
        else
            execlp("openssl", "openssl", "s_server", "-quiet", "-accept", acc, "-cert", cert,
                   "-key", key, "-www", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)*port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok)
            return pid;
        usleep(50000);
    }
    fail_msg("openssl s_server did not start");
    return pid;
}

static void tls_server_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

/* One GET over https with tls; 0 with the status in *status, or -1 with err. */
static int https_get(const char *host, int port, hclient_tls tls, int *status, char *err,
                     size_t errlen)
{
    char base[96];
    snprintf(base, sizeof base, "https://%s:%d", host, port);
    hclient_opts o = {.base = base, .timeout_ms = 5000, .tls = tls};
    hclient_sync *c = hclient_sync_new(&o, err, errlen);
    assert_non_null(c);
    hclient_response r;
    int rc = hclient_sync_request(c, "GET", "/", NULL, NULL, 0, &r, err, errlen);
    *status = r.status;
    if (rc == 0)
        assert_true(r.body.len > 0);
    hclient_response_free(&r);
    hclient_sync_free(c);
    return rc;
}

/* Verification against --cacert, its failure without it, --insecure; the
 * SNI and host name override; a client certificate the server requires. */
static void test_https(void **state)
{
    (void)state;
    char dir[64], err[512], ca[128], ccert[128], ckey[128];
    make_pki(dir);
    snprintf(ca, sizeof ca, "%s/pki/ca.pem", dir);
    snprintf(ccert, sizeof ccert, "%s/pki/client.pem", dir);
    snprintf(ckey, sizeof ckey, "%s/pki/client.key", dir);
    int port, status;

    pid_t pid = tls_server(dir, "server", false, &port);
    assert_int_equal(
        https_get("localhost", port, (hclient_tls){.ca_file = ca}, &status, err, sizeof err), 0);
    assert_int_equal(status, 200);
    assert_int_equal(https_get("localhost", port, (hclient_tls){0}, &status, err, sizeof err), -1);
    assert_true(strncmp(err, "tls: ", 5) == 0);
    assert_non_null(strstr(err, "certificate"));
    assert_int_equal(
        https_get("localhost", port, (hclient_tls){.insecure = true}, &status, err, sizeof err), 0);
    tls_server_stop(pid);

    /* A certificate for other.test only, reached at 127.0.0.1. */
    pid = tls_server(dir, "other", false, &port);
    assert_int_equal(
        https_get("127.0.0.1", port, (hclient_tls){.ca_file = ca}, &status, err, sizeof err), -1);
    assert_true(strncmp(err, "tls: ", 5) == 0);
    assert_int_equal(https_get("127.0.0.1", port, (hclient_tls){.ca_file = ca, .sni = "other.test"},
                               &status, err, sizeof err),
                     0);
    assert_int_equal(status, 200);
    tls_server_stop(pid);

    pid = tls_server(dir, "server", true, &port);
    assert_int_equal(
        https_get("localhost", port, (hclient_tls){.ca_file = ca}, &status, err, sizeof err), -1);
    hclient_tls mutual = {.ca_file = ca, .cert_file = ccert, .key_file = ckey};
    assert_int_equal(https_get("localhost", port, mutual, &status, err, sizeof err), 0);
    assert_int_equal(status, 200);
    tls_server_stop(pid);

    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    assert_int_equal(system(rm), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length_and_request),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_close_delimited),
        cmocka_unit_test(test_keepalive_reuse),
        cmocka_unit_test(test_retry_after_server_close),
        cmocka_unit_test(test_idle_close_reconnects),
        cmocka_unit_test(test_fresh_connection_closed_is_an_error),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_no_body_answers),
        cmocka_unit_test(test_body_too_large),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_async_queue_and_connect_addr),
        cmocka_unit_test(test_async_errors),
        cmocka_unit_test(test_https),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
