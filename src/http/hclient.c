/* hclient: the HTTP client (see hclient.h), libcurl's multi interface on
 * libuv.
 *
 * libcurl tells which sockets to watch (socket_cb: one uv_poll_t each) and
 * when to wake it (timer_cb: one uv_timer_t); each wake-up is a
 * curl_multi_socket_action, after which finished transfers are read and
 * their callbacks called. Easy handles are pooled: the options every
 * request shares (TLS, callbacks, HTTP version) are set once per handle,
 * and a request sets only its URL, headers, method, body and timeout.
 * What stays ours: the request's checks (a header that would inject
 * another, a target with blanks), the headers libcurl must not add or
 * duplicate (Host, Content-Length, Accept, Expect), the size limits, and
 * the error texts callers classify. Trade-off: libcurl reads answers more
 * leniently than llhttp's strict mode (a bare LF, a doubled Content-Length
 * with one value); the proxy, which relays answers, keeps llhttp. */
#include "http/hclient.h"

#include <assert.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/url.h"
#include "base/util.h"
#include "http/httpmsg.h"

#define HCLIENT_MAX_HEADERS (256u << 10) /* whole header section */
#define HCLIENT_KEEP_BODY (1u << 20)     /* a pooled body buffer above is freed */
#define HCLIENT_DEFAULT_TIMEOUT_MS 30000

/* One socket libcurl asked to watch, from then until libcurl closes it
 * (close_cb): a kept-alive connection between two requests keeps its poll
 * handle, so that a request on it costs no epoll_ctl and no allocation. */
typedef struct hsock {
    uv_poll_t poll;
    hclient *c;
    curl_socket_t fd;
    int events; /* what the poll handle watches; 0 when stopped */
    bool idle;  /* libcurl does not watch it now (between requests) */
    struct hsock *prev, *next;
} hsock;

/* One easy handle and the state of the request it carries; pooled. */
typedef struct hreq {
    hclient *c;
    CURL *easy;
    struct hreq *prev, *next; /* on c->busy or c->pool */
    hclient_cb cb;
    void *ud;
    hclient_result res;
    size_t header_bytes;
    bool too_big;    /* a limit was passed: the callbacks stopped the transfer */
    bool bad_header; /* a header name that is not a token */
    char errbuf[CURL_ERROR_SIZE];
    char errtext[CURL_ERROR_SIZE + 64];
} hreq;

struct hclient {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer; /* libcurl's timeout, when it is not 0 */
    uv_idle_t kick;   /* libcurl's timeout of 0: see timer_cb */
    hsock *socks;
    hsock **byfd; /* socks by descriptor (nbyfd of them); owned */
    size_t nbyfd;
    hreq *busy, *pool;
    char *url_base;                       /* "scheme://host:port" for each request URL; owned */
    char *host_header;                    /* "host:port" as given in the base URL; owned */
    char *auth;                           /* "Basic ..." or NULL; owned */
    struct curl_slist *connect_to;        /* CURLOPT_CONNECT_TO, or NULL; owned */
    char *ca_file, *cert_file, *key_file; /* owned copies, or NULL */
    bool insecure, https;
    uint64_t timeout_ms;
    size_t max_body;
    unsigned dispatching;  /* > 0 while finished requests' callbacks run */
    bool free_pending;     /* hclient_free was called from a callback */
    bool closing;          /* handles are closing: libcurl's calls are ignored */
    unsigned open_handles; /* uv handles not yet closed (timer, polls) */
};

struct hclient_msg {
    char *url;                  /* owned */
    struct curl_slist *headers; /* owned */
    char *method;               /* owned */
    char *body;                 /* owned copy, or NULL */
    size_t len;
    bool head, with_body;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

/* curl_global_init is not thread-safe; replicator threads make clients. */
static void global_init(void)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        abort(); /* no TLS library, no memory: nothing can work */
}

/* ------------------------------------------------------------------ */
/* handles                                                             */

static void destroy(hclient *c);

static void on_handle_closed(uv_handle_t *h)
{
    hclient *c = h->data;
    if (h->type == UV_POLL)
        free(h); /* the hsock it is the first member of */
    assert(c->open_handles > 0);
    if (--c->open_handles > 0)
        return;
    curl_slist_free_all(c->connect_to);
    free(c->byfd);
    free(c->url_base);
    free(c->host_header);
    if (c->auth)
        memset(c->auth, 0, strlen(c->auth)); /* a secret: not left in freed heap */
    free(c->auth);
    free(c->ca_file);
    free(c->cert_file);
    free(c->key_file);
    free(c);
}

static void sock_close(hclient *c, hsock *h)
{
    assert((size_t)h->fd < c->nbyfd && c->byfd[h->fd] == h);
    c->byfd[h->fd] = NULL;
    if (h->prev)
        h->prev->next = h->next;
    else
        c->socks = h->next;
    if (h->next)
        h->next->prev = h->prev;
    h->poll.data = c;
    uv_close((uv_handle_t *)&h->poll, on_handle_closed);
}

/* After every libcurl wake-up: the finished requests get their callbacks. */
static void check_done(hclient *c);

static void on_poll(uv_poll_t *p, int status, int events)
{
    hsock *h = p->data;
    hclient *c = h->c;
    if (h->idle) {
        /* A kept-alive socket between requests: the server closed it or
         * sent what nobody asked for; libcurl finds out when it reuses it. */
        uv_poll_stop(p);
        h->events = 0;
        return;
    }
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(c->multi, h->fd, flags, &running);
    check_done(c);
}

static void on_timer(uv_timer_t *t)
{
    hclient *c = t->data;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(c);
}

static hsock *sock_find(const hclient *c, curl_socket_t fd)
{
    return fd >= 0 && (size_t)fd < c->nbyfd ? c->byfd[fd] : NULL;
}

static hsock *sock_open(hclient *c, curl_socket_t fd)
{
    hsock *h = xcalloc(1, sizeof *h);
    if (uv_poll_init_socket(c->loop, &h->poll, fd) < 0) {
        free(h);
        return NULL;
    }
    h->c = c;
    h->fd = fd;
    h->poll.data = h;
    h->next = c->socks;
    if (c->socks)
        c->socks->prev = h;
    c->socks = h;
    c->open_handles++;
    if ((size_t)fd >= c->nbyfd) {
        size_t n = (size_t)fd * 2 + 16;
        c->byfd = xrealloc(c->byfd, n * sizeof *c->byfd);
        memset(c->byfd + c->nbyfd, 0, (n - c->nbyfd) * sizeof *c->byfd);
        c->nbyfd = n;
    }
    c->byfd[fd] = h;
    return h;
}

static int socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)e;
    (void)socketp;
    hclient *c = userp;
    hsock *h = sock_find(c, fd);
    if (what == CURL_POLL_REMOVE) {
        /* Between two requests of a kept-alive connection: the handle stays
         * (and keeps its events, which a quiet socket never raises). */
        if (h)
            h->idle = true;
        return 0;
    }
    if (c->closing)
        return 0;
    if (!h && !(h = sock_open(c, fd)))
        return -1;
    h->idle = false;
    int ev = 0;
    if (what & CURL_POLL_IN)
        ev |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        ev |= UV_WRITABLE;
    if (ev != h->events) {
        uv_poll_start(&h->poll, ev, on_poll);
        h->events = ev;
    }
    return 0;
}

/* libcurl closes a socket: its poll handle goes first, so that a socket
 * opened later on the same descriptor gets a handle of its own. */
static int close_cb(void *clientp, curl_socket_t fd)
{
    hclient *c = clientp;
    hsock *h = sock_find(c, fd);
    if (h)
        sock_close(c, h);
    return close(fd);
}

static void on_kick(uv_idle_t *k)
{
    uv_idle_stop(k);
    on_timer(&((hclient *)k->data)->timer);
}

static int timer_cb(CURLM *m, long ms, void *userp)
{
    (void)m;
    hclient *c = userp;
    if (c->closing)
        return 0;
    /* Never act from here (libcurl's rule): the loop's next turn does. A
     * timeout of 0 (a request was added) runs from an idle handle, not a
     * 0 ms timer: libuv runs a timer restarted at 0 within the same timer
     * phase, so a run of requests answered at once would starve every
     * socket and async handle of the loop. */
    uv_timer_stop(&c->timer);
    uv_idle_stop(&c->kick);
    if (ms == 0)
        uv_idle_start(&c->kick, on_kick);
    else if (ms > 0)
        uv_timer_start(&c->timer, on_timer, (uint64_t)ms, 0);
    return 0;
}

/* ------------------------------------------------------------------ */
/* the answer, as libcurl hands it over                                */

/* One header line ("Name: value\r\n"), a status line or the blank line. A
 * status line starts a message: an interim 1xx's headers are dropped when
 * the final status line comes. */
static size_t on_header(char *at, size_t size, size_t n, void *ud)
{
    hreq *q = ud;
    size_t len = size * n;
    q->header_bytes += len;
    if (q->header_bytes > HCLIENT_MAX_HEADERS) {
        q->too_big = true;
        return 0;
    }
    if (len >= 5 && memcmp(at, "HTTP/", 5) == 0) {
        http_headers_reset(&q->res.headers);
        return len;
    }
    size_t end = len;
    while (end && (at[end - 1] == '\n' || at[end - 1] == '\r'))
        end--;
    if (end == 0)
        return len; /* the blank line */
    const char *colon = memchr(at, ':', end);
    if (!colon || !httpmsg_is_token(at, (size_t)(colon - at))) {
        q->bad_header = true;
        return 0;
    }
    const char *v = colon + 1;
    size_t vlen = end - (size_t)(v - at);
    util_trim(&v, &vlen);
    http_headers_add(&q->res.headers, at, (size_t)(colon - at), v, vlen);
    return len;
}

static size_t on_body(char *at, size_t size, size_t n, void *ud)
{
    hreq *q = ud;
    size_t len = size * n;
    if (q->res.body.len + len > q->c->max_body) {
        q->too_big = true;
        return 0;
    }
    if (q->res.body.len == 0) {
        /* One allocation for the whole body when its length is announced. */
        curl_off_t cl = -1;
        curl_easy_getinfo(q->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        if (cl > 0 && (uint64_t)cl <= q->c->max_body && (uint64_t)cl <= HCLIENT_KEEP_BODY)
            buf_reserve(&q->res.body, (size_t)cl);
    }
    buf_append(&q->res.body, at, len);
    return len;
}

/* ------------------------------------------------------------------ */
/* the client                                                          */

/* What every request of c shares, set once per easy handle. */
static void easy_setup(hclient *c, hreq *q)
{
    CURL *e = q->easy;
    curl_easy_setopt(e, CURLOPT_PRIVATE, q);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     c->https ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for resolves */
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, q->errbuf);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, q);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, c->https ? "https" : "http");
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_cb);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, c);
    if (c->connect_to)
        curl_easy_setopt(e, CURLOPT_CONNECT_TO, c->connect_to);
    if (!c->https)
        return;
    /* h2: wait for a connection that may multiplex rather than open more. */
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    if (c->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    if (c->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (c->cert_file)
        curl_easy_setopt(e, CURLOPT_SSLCERT, c->cert_file);
    if (c->key_file)
        curl_easy_setopt(e, CURLOPT_SSLKEY, c->key_file);
}

static char *dup_or_null(const char *s)
{
    return s && *s ? xstrdup(s) : NULL;
}

/* Fills c's URL parts from o->base: the base for request URLs, the Host
 * header, Basic authorization, and where to connect when that is not the
 * URL's host (a fixed address, or the real host behind an SNI name). */
static int parse_base(hclient *c, const hclient_opts *o, char *err, size_t errlen)
{
    url_parts u;
    const char *why = NULL;
    if (!o->base || url_parse(o->base, strlen(o->base), &u, &why) != 0 ||
        !(url_is(&u, "http") || url_is(&u, "https"))) {
        util_seterr(err, errlen, "bad URL '%s' (%s)", o->base ? o->base : "",
                    why && strcmp(why, "no host") == 0 ? "no host"
                                                       : "expected http[s]://host:port");
        return -1;
    }
    c->https = url_is(&u, "https");
    const char *sni = c->https ? o->tls.sni : NULL;
    buf b = BUF_INIT;
    if (sni && *sni)
        buf_appendf(&b, "%s://%s:%d", u.scheme, sni, u.port);
    else
        buf_appendf(&b, "%s://%.*s", u.scheme, (int)u.authority_len, u.authority);
    c->url_base = buf_detach(&b);
    c->host_header = xstrndup(u.authority, u.authority_len);
    const char *to = o->connect_addr && *o->connect_addr ? o->connect_addr : NULL;
    if (to || (sni && *sni)) {
        /* "urlhost:port:connecthost:port"; "::" empties mean "as is". */
        const char *host = to ? to : u.host;
        bool v6 = strchr(host, ':') != NULL;
        buf_appendf(&b, "::%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", u.port);
        c->connect_to = curl_slist_append(NULL, b.data);
        buf_free(&b);
    }
    if (u.userinfo) {
        buf cred = BUF_INIT;
        buf_append_pct_decoded(&cred, u.userinfo, u.userinfo_len, 0);
        buf_append_str(&b, "Basic ");
        buf_append_base64(&b, cred.data ? cred.data : "", cred.len);
        c->auth = buf_detach(&b);
        if (cred.data)
            memset(cred.data, 0, cred.len); /* the password: not left in freed heap */
        buf_free(&cred);
    }
    return 0;
}

hclient *hclient_new(uv_loop_t *loop, const hclient_opts *o, char *err, size_t errlen)
{
    assert(loop && o);
    if (o->tls.key_file && *o->tls.key_file && !(o->tls.cert_file && *o->tls.cert_file)) {
        util_seterr(err, errlen, "--key needs --cert");
        return NULL;
    }
    pthread_once(&global_once, global_init);
    hclient *c = xcalloc(1, sizeof *c);
    if (parse_base(c, o, err, errlen) < 0) {
        free(c->url_base);
        free(c->host_header);
        free(c);
        return NULL;
    }
    c->loop = loop;
    c->timeout_ms = o->timeout_ms ? o->timeout_ms : HCLIENT_DEFAULT_TIMEOUT_MS;
    c->max_body = o->max_body ? o->max_body : HCLIENT_MAX_BODY;
    c->ca_file = dup_or_null(o->tls.ca_file);
    c->cert_file = dup_or_null(o->tls.cert_file);
    c->key_file = dup_or_null(o->tls.key_file);
    c->insecure = o->tls.insecure;
    c->multi = curl_multi_init();
    if (!c->multi)
        abort();
    long conns = o->max_conns ? (long)o->max_conns : 1L;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, conns);
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, conns);
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING,
                      c->https ? (long)CURLPIPE_MULTIPLEX : (long)CURLPIPE_NOTHING);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    uv_idle_init(loop, &c->kick);
    c->kick.data = c;
    c->open_handles = 2;
    return c;
}

static void hreq_free(hreq *q)
{
    curl_easy_cleanup(q->easy);
    http_headers_free(&q->res.headers);
    buf_free(&q->res.body);
    free(q);
}

static void destroy(hclient *c)
{
    c->closing = true;
    while (c->busy) {
        hreq *q = c->busy;
        c->busy = q->next;
        curl_multi_remove_handle(c->multi, q->easy);
        hreq_free(q);
    }
    while (c->pool) {
        hreq *q = c->pool;
        c->pool = q->next;
        hreq_free(q);
    }
    curl_multi_cleanup(c->multi); /* closes the kept-alive connections */
    while (c->socks)
        sock_close(c, c->socks);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->kick, on_handle_closed);
}

void hclient_free(hclient *c)
{
    if (!c)
        return;
    if (c->dispatching) {
        c->free_pending = true; /* check_done finishes it */
        return;
    }
    destroy(c);
}

/* ------------------------------------------------------------------ */
/* requests                                                            */

static bool value_ok(const char *v)
{
    return strpbrk(v, "\r\n") == NULL;
}

/* Headers the client writes itself (from the base URL and the body) or
 * that belong to one hop. */
static bool skip_header(const char *name)
{
    size_t n = strlen(name);
    return util_ieq(name, n, "host") || util_ieq(name, n, "content-length") ||
           util_ieq(name, n, "transfer-encoding") || util_ieq(name, n, "connection") ||
           util_ieq(name, n, "expect");
}

/* The header list for libcurl, or NULL with err when a header cannot be
 * sent as is (a name that is not a token, a value with CR or LF). */
static struct curl_slist *header_list(const hclient *c, const http_headers *h, const char *host,
                                      char *err, size_t errlen)
{
    struct curl_slist *list = NULL;
    buf line = BUF_INIT;
    bool has_auth = false, has_accept = false;
    if (host && !value_ok(host)) {
        util_seterr(err, errlen, "invalid request: bad header 'Host'");
        return NULL;
    }
    buf_appendf(&line, "Host: %s", host ? host : c->host_header);
    list = curl_slist_append(list, line.data);
    for (size_t i = 0; h && i < h->len; i++) {
        const char *n = h->v[i].name, *v = h->v[i].value;
        if (!httpmsg_is_token(n, strlen(n)) || !value_ok(v)) {
            util_seterr(err, errlen, "invalid request: bad header '%.40s'", n);
            curl_slist_free_all(list);
            buf_free(&line);
            return NULL;
        }
        if (skip_header(n))
            continue;
        has_auth |= util_ieq(n, strlen(n), "authorization");
        has_accept |= util_ieq(n, strlen(n), "accept");
        buf_reset(&line);
        /* "Name;" is libcurl's way to send a header with an empty value. */
        if (*v)
            buf_appendf(&line, "%s: %s", n, v);
        else
            buf_appendf(&line, "%s;", n);
        list = curl_slist_append(list, line.data);
    }
    if (c->auth && !has_auth) {
        buf_reset(&line);
        buf_appendf(&line, "Authorization: %s", c->auth);
        list = curl_slist_append(list, line.data);
        memset(line.data, 0, line.len);
    }
    /* libcurl's own additions, which the caller did not ask for. */
    if (!has_accept)
        list = curl_slist_append(list, "Accept:");
    list = curl_slist_append(list, "Expect:");
    buf_free(&line);
    if (!list)
        abort(); /* curl_slist_append fails only without memory */
    return list;
}

hclient_msg *hclient_msg_new(const hclient *c, const char *method, const char *target,
                             const http_headers *headers, const char *host, const void *body,
                             size_t len, char *err, size_t errlen)
{
    if (!method || !httpmsg_is_token(method, strlen(method)) || !target || target[0] != '/' ||
        strpbrk(target, " \r\n\t")) {
        util_seterr(err, errlen, "invalid request: bad method or target");
        return NULL;
    }
    struct curl_slist *hl = header_list(c, headers, host, err, errlen);
    if (!hl)
        return NULL;
    hclient_msg *m = xcalloc(1, sizeof *m);
    m->headers = hl;
    buf u = BUF_INIT;
    buf_appendf(&u, "%s%s", c->url_base, target);
    m->url = buf_detach(&u);
    m->method = xstrdup(method);
    size_t ml = strlen(method);
    m->head = util_ieq(method, ml, "HEAD");
    /* A body, or a method that always carries one (Content-Length: 0). */
    m->with_body = !m->head && (len > 0 || util_ieq(method, ml, "POST") ||
                                util_ieq(method, ml, "PUT") || util_ieq(method, ml, "PATCH"));
    if (len) {
        m->body = xmalloc(len);
        memcpy(m->body, body, len);
        m->len = len;
    }
    return m;
}

void hclient_msg_free(hclient_msg *m)
{
    if (!m)
        return;
    curl_slist_free_all(m->headers);
    free(m->url);
    free(m->method);
    free(m->body);
    free(m);
}

static hreq *hreq_take(hclient *c)
{
    hreq *q = c->pool;
    if (q) {
        c->pool = q->next;
    } else {
        q = xcalloc(1, sizeof *q);
        q->c = c;
        q->easy = curl_easy_init();
        if (!q->easy)
            abort();
        easy_setup(c, q);
    }
    q->prev = NULL;
    q->next = c->busy;
    if (c->busy)
        c->busy->prev = q;
    c->busy = q;
    return q;
}

void hclient_start(hclient *c, const hclient_msg *m, uint64_t timeout_ms, hclient_cb cb, void *ud)
{
    assert(c && m && cb && !c->closing && !c->free_pending);
    hreq *q = hreq_take(c);
    q->cb = cb;
    q->ud = ud;
    q->header_bytes = 0;
    q->too_big = q->bad_header = false;
    q->errbuf[0] = '\0';
    q->res.started_us = util_now_us();
    CURL *e = q->easy;
    curl_easy_setopt(e, CURLOPT_URL, m->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, m->headers);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(timeout_ms ? timeout_ms : c->timeout_ms));
    if (m->head) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
        if (m->with_body) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)m->len);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, m->body ? m->body : "");
        } else {
            curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        }
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m->method);
    }
    curl_multi_add_handle(c->multi, e); /* arms the timer: starts on the next turn */
}

/* The error text callers classify, from libcurl's code. */
static void describe(hreq *q, CURLcode rc)
{
    hclient_result *r = &q->res;
    long oserr = 0;
    char *t = q->errtext;
    size_t tl = sizeof q->errtext;
    const char *why = q->errbuf[0] ? q->errbuf : curl_easy_strerror(rc);
    r->error = t;
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        r->fail = HCLIENT_TIMEOUT;
        snprintf(t, tl, "timeout");
        return;
    case CURLE_COULDNT_CONNECT:
        curl_easy_getinfo(q->easy, CURLINFO_OS_ERRNO, &oserr);
        r->fail = HCLIENT_CONNECT;
        r->oserr = oserr ? (int)oserr : ECONNREFUSED;
        snprintf(t, tl, "connect: %s", strerror(r->oserr));
        return;
    case CURLE_COULDNT_RESOLVE_HOST:
        r->fail = HCLIENT_RESOLVE;
        snprintf(t, tl, "resolve %s: %s", q->c->host_header, why);
        return;
    case CURLE_GOT_NOTHING:
        r->fail = HCLIENT_CLOSED;
        snprintf(t, tl, "invalid response: connection closed without a response");
        return;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ENGINE_INITFAILED:
        r->fail = HCLIENT_TLS;
        snprintf(t, tl, "tls: %s", why);
        return;
    case CURLE_WRITE_ERROR:
        r->fail = HCLIENT_INVALID;
        if (q->too_big) {
            snprintf(t, tl, "invalid response: larger than %zu bytes",
                     q->header_bytes > HCLIENT_MAX_HEADERS ? (size_t)HCLIENT_MAX_HEADERS
                                                           : q->c->max_body);
            return;
        }
        if (q->bad_header) {
            snprintf(t, tl, "invalid response: bad header name");
            return;
        }
        break;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
        curl_easy_getinfo(q->easy, CURLINFO_OS_ERRNO, &oserr);
        r->fail = HCLIENT_IO;
        snprintf(t, tl, "%s: %s", rc == CURLE_SEND_ERROR ? "send" : "recv",
                 oserr ? strerror((int)oserr) : why);
        return;
    default:
        break;
    }
    r->fail = HCLIENT_INVALID;
    snprintf(t, tl, "invalid response: %s", why);
}

/* Request q is over (rc): its callback, then q goes back to the pool. */
static void finish(hclient *c, hreq *q, CURLcode rc)
{
    curl_multi_remove_handle(c->multi, q->easy);
    if (q->prev)
        q->prev->next = q->next;
    else
        c->busy = q->next;
    if (q->next)
        q->next->prev = q->prev;
    hclient_result *r = &q->res;
    r->error = NULL;
    r->fail = HCLIENT_OK;
    r->oserr = 0;
    r->status = 0;
    curl_off_t total = 0;
    curl_easy_getinfo(q->easy, CURLINFO_TOTAL_TIME_T, &total);
    r->total_us = (int64_t)total;
    if (rc == CURLE_OK) {
        long status = 0;
        curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status);
        r->status = (int)status;
    } else {
        describe(q, rc);
    }
    q->cb(q->ud, r);
    http_headers_reset(&r->headers);
    if (r->body.cap > HCLIENT_KEEP_BODY)
        buf_free(&r->body);
    buf_reset(&r->body);
    q->next = c->pool;
    c->pool = q;
}

static void check_done(hclient *c)
{
    c->dispatching++;
    CURLMsg *msg;
    int left;
    while (!c->free_pending && (msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        hreq *q = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&q);
        assert(q && q->easy == msg->easy_handle);
        finish(c, q, msg->data.result);
    }
    if (--c->dispatching == 0 && c->free_pending)
        destroy(c);
}

/* ------------------------------------------------------------------ */
/* blocking                                                            */

struct hclient_sync {
    uv_loop_t loop;
    hclient *c;
};

/* What the loop hands back to hclient_sync_request. */
typedef struct sync_wait {
    bool done;
    hclient_response *out;
    char *err;
    size_t errlen;
    int rc;
} sync_wait;

hclient_sync *hclient_sync_new(const hclient_opts *o, char *err, size_t errlen)
{
    hclient_sync *s = xcalloc(1, sizeof *s);
    uv_loop_init(&s->loop);
    hclient_opts one = *o;
    one.max_conns = 1;
    s->c = hclient_new(&s->loop, &one, err, errlen);
    if (!s->c) {
        uv_loop_close(&s->loop);
        free(s);
        return NULL;
    }
    return s;
}

void hclient_sync_free(hclient_sync *s)
{
    if (!s)
        return;
    hclient_free(s->c);
    uv_run(&s->loop, UV_RUN_DEFAULT); /* the handles' close callbacks */
    int rc = uv_loop_close(&s->loop);
    assert(rc == 0); /* every handle closed */
    (void)rc;
    free(s);
}

void hclient_response_free(hclient_response *r)
{
    if (!r)
        return;
    http_headers_free(&r->headers);
    buf_free(&r->body);
    r->status = 0;
}

static void on_sync_done(void *ud, hclient_result *res)
{
    sync_wait *w = ud;
    w->done = true;
    if (res->error) {
        util_seterr(w->err, w->errlen, "%s", res->error);
        w->rc = -1;
        return;
    }
    w->out->status = res->status;
    /* Take the answer: the client keeps the empty ones. */
    http_headers h = w->out->headers;
    w->out->headers = res->headers;
    res->headers = h;
    buf b = w->out->body;
    w->out->body = res->body;
    res->body = b;
}

int hclient_sync_request(hclient_sync *s, const char *method, const char *target,
                         const http_headers *headers, const void *body, size_t len,
                         hclient_response *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (err && errlen)
        err[0] = '\0';
    hclient_msg *m = hclient_msg_new(s->c, method, target, headers, NULL, body, len, err, errlen);
    if (!m)
        return -1;
    sync_wait w = {.out = out, .err = err, .errlen = errlen};
    hclient_start(s->c, m, 0, on_sync_done, &w);
    while (!w.done)
        uv_run(&s->loop, UV_RUN_ONCE);
    hclient_msg_free(m);
    return w.rc;
}
