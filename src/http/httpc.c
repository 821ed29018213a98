/* httpc: blocking HTTP/1.1 client over one keep-alive connection.
 *
 * The socket is non-blocking and every wait goes through poll() against one
 * deadline per call, so no call can outlive its timeout whatever the peer
 * does (slow connect, a trickle of bytes, silence). */
#include "http/httpc.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/httpmsg.h"
#include "base/url.h"
#include "base/util.h"

#define HTTPC_MAX_BODY (16u << 20)     /* 16 MiB: API answers, not downloads */
#define HTTPC_MAX_HEADERS (256u << 10) /* whole header section */

struct httpc {
    char host[256];    /* for getaddrinfo, without brackets */
    char port[8];      /* as text, for getaddrinfo */
    char *host_header; /* "host:port" as given in the base URL; owned */
    char *auth;        /* "Basic ..." or NULL; owned */
    uint64_t timeout_ms;
    int fd;    /* -1 when not connected */
    bool used; /* fd already carried a complete exchange */
};

/* Parser state of one response; lives on httpc_request's stack. */
typedef struct rstate {
    httpc_response *out;
    httpmsg_hcollect hc;
    size_t header_bytes;
    bool head_req;
    bool interim;   /* current message is a 1xx: its headers are dropped */
    bool done;      /* the final response is complete */
    bool keepalive; /* llhttp's verdict at the end of the response */
    bool too_big;
    bool bad_header;
} rstate;

httpc *httpc_new(const char *base, uint64_t timeout_ms, char *err, size_t errlen)
{
    url_parts u;
    const char *why = NULL;
    if (!base || url_parse(base, strlen(base), &u, &why) != 0 || !url_is(&u, "http")) {
        util_seterr(err, errlen, "bad URL '%s' (%s)", base ? base : "",
                    why && strcmp(why, "no host") == 0 ? "no host" : "expected http://host:port");
        return NULL;
    }
    httpc *c = xcalloc(1, sizeof *c);
    static_assert(sizeof c->host == sizeof u.host, "url hosts fit");
    memcpy(c->host, u.host, sizeof c->host);
    snprintf(c->port, sizeof c->port, "%d", u.port);
    c->host_header = xstrndup(u.authority, u.authority_len);
    if (u.userinfo) {
        buf cred = BUF_INIT, b = BUF_INIT;
        buf_append_pct_decoded(&cred, u.userinfo, u.userinfo_len, 0);
        buf_append_str(&b, "Basic ");
        buf_append_base64(&b, cred.data ? cred.data : "", cred.len);
        c->auth = buf_detach(&b);
        /* The decoded password is a secret: do not leave it in freed heap. */
        if (cred.data)
            memset(cred.data, 0, cred.len);
        buf_free(&cred);
    }
    c->timeout_ms = timeout_ms;
    c->fd = -1;
    return c;
}

static void conn_close(httpc *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->used = false;
}

void httpc_free(httpc *c)
{
    if (!c)
        return;
    conn_close(c);
    free(c->host_header);
    free(c->auth);
    free(c);
}

void httpc_response_free(httpc_response *r)
{
    if (!r)
        return;
    http_headers_free(&r->headers);
    buf_free(&r->body);
    r->status = 0;
}

/* Milliseconds left until deadline (µs, monotonic), at least 0. */
static int remaining_ms(int64_t deadline)
{
    int64_t left = (deadline - util_mono_us() + 999) / 1000;
    if (left < 0)
        return 0;
    if (left > 1 << 30)
        return 1 << 30;
    return (int)left;
}

/* Waits for events on fd until deadline. 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int ms = remaining_ms(deadline);
        int n = poll(&p, 1, ms);
        if (n > 0)
            return 1;
        if (n == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

static int try_connect(const struct addrinfo *ai, int64_t deadline, int *fd_out, int *err_out,
                       bool *timed_out)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        *err_out = errno;
        return -1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            *err_out = errno;
            close(fd);
            return -1;
        }
        int w = wait_fd(fd, POLLOUT, deadline);
        if (w <= 0) {
            *err_out = w == 0 ? ETIMEDOUT : errno;
            *timed_out = w == 0;
            close(fd);
            return -1;
        }
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            *err_out = soerr ? soerr : errno;
            close(fd);
            return -1;
        }
    }
    int one = 1;
    /* Requests are written head then body: without this, Nagle would hold
     * the body back until the server acks the head. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *fd_out = fd;
    return 0;
}

static int conn_open(httpc *c, int64_t deadline, char *err, size_t errlen)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int g = getaddrinfo(c->host, c->port, &hints, &res);
    if (g != 0) {
        util_seterr(err, errlen, "resolve %s: %s", c->host, gai_strerror(g));
        return -1;
    }
    int last = ECONNREFUSED;
    bool timed_out = false;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd;
        if (try_connect(ai, deadline, &fd, &last, &timed_out) == 0) {
            freeaddrinfo(res);
            c->fd = fd;
            c->used = false;
            return 0;
        }
        if (timed_out)
            break;
    }
    freeaddrinfo(res);
    if (timed_out)
        util_seterr(err, errlen, "timeout");
    else
        util_seterr(err, errlen, "connect: %s", strerror(last));
    return -1;
}

/* An idle kept-alive connection that is readable has been closed by the
 * server (or sent junk): either way it cannot carry a request. */
static bool idle_conn_dead(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) != 0;
}

/* ---- response parsing ---- */

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    rstate *s = p->data;
    s->header_bytes += len;
    if (s->header_bytes > HTTPC_MAX_HEADERS) {
        s->too_big = true;
        return -1;
    }
    httpmsg_hcollect_name(&s->hc, at, len);
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    rstate *s = p->data;
    s->header_bytes += len;
    if (s->header_bytes > HTTPC_MAX_HEADERS) {
        s->too_big = true;
        return -1;
    }
    return httpmsg_hcollect_value(&s->hc, at, len, NULL);
}

static int on_header_value_complete(llhttp_t *p)
{
    rstate *s = p->data;
    if (httpmsg_hcollect_done(&s->hc, &s->out->headers) != 0) {
        s->bad_header = true;
        return -1;
    }
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    rstate *s = p->data;
    int status = p->status_code;
    s->interim = status >= 100 && status < 200 && status != 101;
    s->out->status = status;
    /* llhttp knows 1xx/204/304 carry no body; a HEAD answer it cannot know. */
    return s->head_req && !s->interim ? 1 : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    rstate *s = p->data;
    if (s->out->body.len + len > HTTPC_MAX_BODY) {
        s->too_big = true;
        return -1;
    }
    buf_append(&s->out->body, at, len);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    rstate *s = p->data;
    if (s->interim) {
        /* 100 Continue and friends: the final answer follows. */
        http_headers_free(&s->out->headers);
        s->out->status = 0;
        s->interim = false;
        return 0;
    }
    s->done = true;
    s->keepalive = llhttp_should_keep_alive(p);
    return HPE_PAUSED; /* bytes after the response are not ours */
}

static llhttp_settings_t settings;
static pthread_once_t settings_once = PTHREAD_ONCE_INIT;

static void settings_init(void)
{
    llhttp_settings_init(&settings);
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_header_value_complete = on_header_value_complete;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
}

/* ---- one exchange ---- */

static bool value_ok(const char *v)
{
    for (; *v; v++)
        if (*v == '\r' || *v == '\n')
            return false;
    return true;
}

static bool skip_header(const char *name)
{
    size_t n = strlen(name);
    return util_ieq(name, n, "host") || util_ieq(name, n, "content-length") ||
           util_ieq(name, n, "transfer-encoding") || util_ieq(name, n, "connection");
}

/* Builds the request head; -1 with err when a header cannot be sent as is
 * (a name that is not a token, a value with CR or LF: header injection). */
static int build_head(httpc *c, buf *out, const char *method, const char *target,
                      const http_headers *h, size_t len, char *err, size_t errlen)
{
    if (!httpmsg_is_token(method, strlen(method)) || !*target || strpbrk(target, " \r\n\t")) {
        util_seterr(err, errlen, "invalid request: bad method or target");
        return -1;
    }
    buf_appendf(out, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, c->host_header);
    bool has_auth = false;
    for (size_t i = 0; h && i < h->len; i++) {
        const char *n = h->v[i].name, *v = h->v[i].value;
        if (!httpmsg_is_token(n, strlen(n)) || !value_ok(v)) {
            util_seterr(err, errlen, "invalid request: bad header '%.40s'", n);
            return -1;
        }
        if (skip_header(n))
            continue;
        if (util_ieq(n, strlen(n), "authorization"))
            has_auth = true;
        buf_appendf(out, "%s: %s\r\n", n, v);
    }
    if (c->auth && !has_auth)
        buf_appendf(out, "Authorization: %s\r\n", c->auth);
    size_t ml = strlen(method);
    if (len > 0 || util_ieq(method, ml, "POST") || util_ieq(method, ml, "PUT") ||
        util_ieq(method, ml, "PATCH"))
        buf_appendf(out, "Content-Length: %zu\r\n", len);
    buf_append_str(out, "\r\n");
    return 0;
}

/* Writes all of data. 0, or -1 with *sys_err set (ETIMEDOUT on timeout). */
static int send_all(int fd, const char *data, size_t len, int64_t deadline, int *sys_err)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = wait_fd(fd, POLLOUT, deadline);
            if (w <= 0) {
                *sys_err = w == 0 ? ETIMEDOUT : errno;
                return -1;
            }
            continue;
        }
        *sys_err = n < 0 ? errno : EPIPE;
        return -1;
    }
    return 0;
}

enum { XCH_OK = 0, XCH_FAIL = -1, XCH_RETRY = -2 };

/* One attempt on the current connection. XCH_RETRY: the connection was a
 * reused one and died before any response byte (the caller may resend). */
static int exchange(httpc *c, const char *method, const buf *head, const void *body, size_t len,
                    httpc_response *out, int64_t deadline, char *err, size_t errlen)
{
    bool reused = c->used;
    int se = 0;
    if (send_all(c->fd, head->data, head->len, deadline, &se) != 0 ||
        (len && send_all(c->fd, body, len, deadline, &se) != 0)) {
        if (se == ETIMEDOUT) {
            util_seterr(err, errlen, "timeout");
            return XCH_FAIL;
        }
        if (reused)
            return XCH_RETRY;
        util_seterr(err, errlen, "send: %s", strerror(se));
        return XCH_FAIL;
    }

    pthread_once(&settings_once, settings_init);
    rstate s = {0};
    s.out = out;
    s.head_req = util_ieq(method, strlen(method), "HEAD");
    llhttp_t p;
    llhttp_init(&p, HTTP_RESPONSE, &settings);
    p.data = &s;
    size_t got = 0;
    char rb[16384];
    int rc = XCH_FAIL;
    for (;;) {
        ssize_t n = recv(c->fd, rb, sizeof rb, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = wait_fd(c->fd, POLLIN, deadline);
            if (w == 0) {
                util_seterr(err, errlen, "timeout");
                goto out;
            }
            if (w < 0) {
                util_seterr(err, errlen, "poll: %s", strerror(errno));
                goto out;
            }
            continue;
        }
        if (n < 0) {
            if (got == 0 && reused) {
                rc = XCH_RETRY;
                goto out;
            }
            util_seterr(err, errlen, "recv: %s", strerror(errno));
            goto out;
        }
        if (n == 0) {
            if (got == 0) {
                if (reused) {
                    rc = XCH_RETRY;
                    goto out;
                }
                util_seterr(err, errlen, "invalid response: connection closed without a response");
                goto out;
            }
            /* A body delimited by the close ends here. */
            llhttp_errno_t e = llhttp_finish(&p);
            if ((e == HPE_OK || e == HPE_PAUSED) && s.done) {
                s.keepalive = false;
                rc = XCH_OK;
                goto out;
            }
            util_seterr(err, errlen,
                        "invalid response: connection closed before the end of the response");
            goto out;
        }
        got += (size_t)n;
        llhttp_errno_t e = llhttp_execute(&p, rb, (size_t)n);
        if (e == HPE_PAUSED) {
            /* Bytes beyond the response: the connection is out of step. */
            const char *pos = llhttp_get_error_pos(&p);
            if (pos && pos < rb + n)
                s.keepalive = false;
            rc = XCH_OK;
            goto out;
        }
        if (e != HPE_OK) {
            if (s.too_big)
                util_seterr(err, errlen, "invalid response: larger than %u bytes",
                            s.header_bytes > HTTPC_MAX_HEADERS ? HTTPC_MAX_HEADERS
                                                               : HTTPC_MAX_BODY);
            else if (s.bad_header)
                util_seterr(err, errlen, "invalid response: bad header name");
            else
                util_seterr(err, errlen, "invalid response: %s", llhttp_get_error_reason(&p));
            goto out;
        }
        if (s.done) {
            rc = XCH_OK;
            goto out;
        }
    }
out:
    httpmsg_hcollect_free(&s.hc);
    if (rc == XCH_OK && s.keepalive)
        c->used = true;
    else
        conn_close(c);
    return rc;
}

int httpc_request(httpc *c, const char *method, const char *target, const http_headers *headers,
                  const void *body, size_t len, httpc_response *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (err && errlen)
        err[0] = '\0';
    buf head = BUF_INIT;
    if (build_head(c, &head, method, target, headers, len, err, errlen) != 0) {
        buf_free(&head);
        return -1;
    }
    int64_t deadline = util_mono_us() + (int64_t)(c->timeout_ms * 1000);
    int rc = XCH_FAIL;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (c->fd >= 0 && c->used && idle_conn_dead(c->fd))
            conn_close(c);
        if (c->fd < 0 && conn_open(c, deadline, err, errlen) != 0) {
            rc = XCH_FAIL;
            break;
        }
        rc = exchange(c, method, &head, body, len, out, deadline, err, errlen);
        if (rc != XCH_RETRY)
            break;
        /* The server closed a kept-alive connection just as it was reused;
         * nothing was answered, so the request goes once more on a new one. */
        httpc_response_free(out);
    }
    buf_free(&head);
    if (rc == XCH_RETRY) {
        conn_close(c);
        rc = XCH_FAIL;
    }
    return rc == XCH_OK ? 0 : -1;
}
