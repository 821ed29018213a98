#include "proxy/admin_internal.h"

#include <arpa/inet.h>
#include <assert.h>
#include <llhttp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "base/iostream.h"
#include "http/headers.h"
#include "http/httpmsg.h"
#include "proxy/console.h"
#include "proxy/listener.h"
#include "base/util.h"

/* ---- work off the loop ----
 * A job lives from admin_offload to its after-work callback, which always
 * runs (libuv keeps the loop alive for it, even past admin_stop). Its
 * connection may go first: aconn_close and admin_stop clear job->c, and the
 * job then finishes without anyone to answer. A job is on its admin's list
 * (to be detached by admin_stop) while job->a is set. */
struct admin_job {
    uv_work_t req;
    admin *a; /* NULL once admin_stop detached it */
    aconn *c; /* NULL once the connection is gone */
    admin_work_fn work;
    admin_done_fn done;
    void *ud;
    struct admin_job *next;
};

static void aconn_closed(uv_handle_t *h)
{
    aconn *c = h->data;
    if (--c->open_handles > 0)
        return;
    buf_free(&c->url);
    httpmsg_hcollect_free(&c->hc);
    http_headers_free(&c->headers);
    buf_free(&c->body);
    tls_conn_free(c->tls);
    free(c);
}

static void aconn_close(aconn *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    if (c->job) { /* its work finishes without it */
        c->job->c = NULL;
        c->job = NULL;
    }
    admin_live_drop(c);
    uv_close((uv_handle_t *)&c->timer, aconn_closed);
    uv_close((uv_handle_t *)&c->tcp, aconn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    aconn_close(req->handle->data);
    free(req);
}

static void on_timeout(uv_timer_t *t)
{
    aconn_close(t->data);
}

int admin_write(aconn *c, const char *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    return c->tls ? tls_conn_write(c->tls, &b, 1, NULL)
                  : io_write((uv_stream_t *)&c->tcp, &b, 1, NULL);
}

void admin_close(aconn *c)
{
    aconn_close(c);
}

void admin_reply_with(aconn *c, int status, const char *reason, const char *ctype,
                      const char *headers, const char *body, size_t len)
{
    buf out = BUF_INIT;
    buf_appendf(&out,
                "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                "%s%sConnection: close\r\n\r\n",
                status, reason, ctype, len, headers,
                status == 401 ? "WWW-Authenticate: Bearer realm=\"restspy\"\r\n" : "");
    buf_append(&out, body, len);
    admin_write(c, out.data, out.len);
    if (c->tls)
        tls_conn_close_notify(c->tls);
    buf_free(&out);
    c->done = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_shutdown_t *req = xmalloc(sizeof *req);
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        free(req);
        aconn_close(c);
    }
}

void admin_reply_as(aconn *c, int status, const char *reason, const char *ctype, const char *body,
                    size_t len)
{
    admin_reply_with(c, status, reason, ctype, "Cache-Control: no-store\r\n", body, len);
}

void admin_reply(aconn *c, int status, const char *reason, const char *json, size_t len)
{
    buf b = BUF_INIT;
    buf_append(&b, json, len);
    buf_append_char(&b, '\n');
    admin_reply_as(c, status, reason, "application/json", b.data, b.len);
    buf_free(&b);
}

void admin_reply_error(aconn *c, int status, const char *reason, const char *msg)
{
    buf b = BUF_INIT;
    buf_append_str(&b, "{\"error\":");
    buf_append_json_str(&b, msg, strlen(msg));
    buf_append_char(&b, '}');
    admin_reply(c, status, reason, b.data, b.len);
    buf_free(&b);
}

void admin_reply_store_failed(aconn *c, const char *why)
{
    buf m = BUF_INIT;
    buf_appendf(&m, ADMIN_STORE_FAILED "%s", why);
    admin_reply_error(c, 503, "Service Unavailable", m.data);
    buf_free(&m);
}

void admin_peer(aconn *c, char *out, size_t len)
{
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) != 0 ||
        uv_ip_name((struct sockaddr *)&ss, out, len) != 0)
        snprintf(out, len, "?");
}

static void job_work(uv_work_t *req)
{
    struct admin_job *j = req->data;
    j->work(j->ud);
}

static void job_unlink(struct admin_job *j)
{
    admin *a = j->a;
    if (!a)
        return;
    for (struct admin_job **p = &a->jobs; *p; p = &(*p)->next) {
        if (*p == j) {
            *p = j->next;
            a->njobs--;
            break;
        }
    }
    j->a = NULL;
}

static void job_after(uv_work_t *req, int status)
{
    (void)status; /* never cancelled */
    struct admin_job *j = req->data;
    job_unlink(j);
    aconn *c = j->c;
    if (c) {
        assert(c->job == j);
        c->job = NULL;
        uv_timer_start(&c->timer, on_timeout, ADMIN_TIMEOUT_MS, 0);
    }
    j->done(c, j->ud);
    free(j);
}

int admin_offload(aconn *c, admin_work_fn work, admin_done_fn done, void *ud)
{
    admin *a = c->a;
    assert(!c->job && !c->done);
    if (a->njobs >= ADMIN_JOBS_MAX) {
        static const char busy[] =
            "{\"error\":\"busy: other admin requests are running, try again\"}\n";
        admin_reply_with(c, 503, "Service Unavailable", "application/json",
                         "Cache-Control: no-store\r\nRetry-After: 1\r\n", busy, sizeof busy - 1);
        return -1;
    }
    struct admin_job *j = xcalloc(1, sizeof *j);
    *j = (struct admin_job){.a = a, .c = c, .work = work, .done = done, .ud = ud, .next = a->jobs};
    j->req.data = j;
    a->jobs = j;
    a->njobs++;
    c->job = j;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_stop(&c->timer);
    int rc = uv_queue_work(c->tcp.loop, &j->req, job_work, job_after);
    assert(rc == 0); /* fails only without callbacks */
    (void)rc;
    return 0;
}

/* Constant-time comparison: the token must not leak through timing. */
static bool token_ok(const admin *a, const char *auth)
{
    if (!a->token)
        return true;
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return false;
    const char *v = auth + 7;
    size_t n = strlen(v), m = strlen(a->token);
    unsigned char diff = (unsigned char)(n != m);
    for (size_t i = 0; i < m; i++)
        diff |= (unsigned char)(a->token[i] ^ (i < n ? v[i] : 0));
    return diff == 0;
}

/* ---- the Host check ----
 * Without a token, a web page the operator opens could reach the loopback
 * listener through DNS rebinding (the page's own name resolving to
 * 127.0.0.1) and switch capture off; the browser then sends that name as
 * Host. So without a token only a Host naming this listener is served: its
 * address as configured, its numeric address, or localhost (without a
 * token the listener is on loopback: config_validate), at its port; or a
 * name in admin_hosts ("name" at any port, "name:port" at that one). A
 * request without Host is served: browsers always send one. */

static bool host_in_list(char *const *names, const char *host, int port)
{
    for (char *const *e = names; e && *e; e++) {
        char h[256];
        int p;
        if (util_split_host(*e, -1, h, sizeof h, &p) == 0 && strcasecmp(h, host) == 0 &&
            (p == -1 || p == port))
            return true;
    }
    return false;
}

static bool host_ok(const admin *a, const char *value, size_t len)
{
    char host[256];
    int port;
    /* A header with a NUL byte in it would compare as a shorter name. */
    if (strlen(value) != len || util_split_host(value, 80, host, sizeof host, &port) != 0)
        return false;
    if (port == a->port &&
        (strcasecmp(host, a->bind_host) == 0 || strcasecmp(host, a->bind_numeric) == 0 ||
         strcasecmp(host, "localhost") == 0))
        return true;
    /* The admin runs on the main loop, the thread that replaces sh->cfg on
     * a reload: it reads the current config as is. */
    return host_in_list(a->sh->cfg->admin_hosts, host, port);
}

/* The token and Host checks. Replies and returns false when the request is
 * refused; else *details says whether it may see more than liveness: a
 * request to an open route (/healthz, the console's files) without any
 * Authorization header is admitted when a token is set (a load balancer's
 * probe often cannot send one) and /healthz then gets the status alone,
 * never the reasons. */
/* A request that changes something must come from the console's own page
 * (or from a tool, which sends no Origin): a browser on another site can
 * send a simple POST to a loopback admin without any preflight, and the
 * bearer token, when there is one, is not the only defence worth having.
 * Reads are not checked: the answers are not readable cross-site (no
 * CORS headers are ever sent). */
static bool same_origin(aconn *c)
{
    const char *site = http_headers_get(&c->headers, "sec-fetch-site");
    if (site && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0)
        return false;
    const char *origin = http_headers_get(&c->headers, "origin");
    if (!origin)
        return true;
    const char *host = http_headers_get(&c->headers, "host");
    buf own = BUF_INIT;
    buf_appendf(&own, "%s://%s", c->tls ? "https" : "http", host ? host : "");
    bool ok = strcasecmp(origin, own.data) == 0;
    buf_free(&own);
    return ok;
}

static bool admitted(aconn *c, bool open, bool *details)
{
    const char *method = llhttp_method_name(llhttp_get_method(&c->p));
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 && !same_origin(c)) {
        admin_reply_error(c, 403, "Forbidden",
                          "cross-site request refused: the admin API changes things only for "
                          "its own page or a tool");
        return false;
    }
    const char *auth = http_headers_get(&c->headers, "authorization");
    *details = token_ok(c->a, auth);
    if (!*details && !(open && !auth)) {
        admin_reply_error(c, 401, "Unauthorized", "unauthorized: admin_token required");
        return false;
    }
    if (c->a->token)
        return true; /* the token is the defence: any Host */
    if (http_headers_count(&c->headers, "host") > 1) {
        admin_reply_error(c, 400, "Bad Request", "several Host headers");
        return false;
    }
    const char *host = http_headers_get(&c->headers, "host");
    if (host && !host_ok(c->a, host, strlen(host))) {
        buf m = BUF_INIT;
        buf_appendf(&m,
                    "Host '%.200s' does not name this admin listener; add the name to "
                    "admin_hosts or set admin_token",
                    host);
        admin_reply_error(c, 421, "Misdirected Request", m.data);
        buf_free(&m);
        return false;
    }
    return true;
}

/* A route's handlers get what follows its path (prefix routes: "" for an
 * exact one), the query string (after '?', "" when none) and whether the
 * client may see details (see admitted). */
typedef void (*route_fn)(aconn *c, const char *rest, const char *query, bool details);

static void get_healthz(aconn *c, const char *rest, const char *query, bool details)
{
    (void)rest, (void)query;
    admin_healthz(c, details);
}

static void get_stats(aconn *c, const char *rest, const char *query, bool details)
{
    (void)rest, (void)query, (void)details;
    admin_stats(c);
}

static void get_metrics(aconn *c, const char *rest, const char *query, bool details)
{
    (void)rest, (void)query, (void)details;
    admin_metrics(c);
}

static void get_flags(aconn *c, const char *rest, const char *query, bool details)
{
    (void)rest, (void)query, (void)details;
    buf b = BUF_INIT;
    admin_flags_json(c->a, &b);
    admin_reply(c, 200, "OK", b.data, b.len);
    buf_free(&b);
}

static void put_flags(aconn *c, const char *rest, const char *query, bool details)
{
    (void)rest, (void)query, (void)details;
    admin_flags_put(c);
}

static void get_requests(aconn *c, const char *rest, const char *query, bool details)
{
    (void)rest, (void)details;
    admin_api_requests(c, query);
}

static void get_replication(aconn *c, const char *rest, const char *query, bool details)
{
    (void)rest, (void)details;
    admin_replication(c, query);
}

static void get_replication_peers(aconn *c, const char *rest, const char *query, bool details)
{
    (void)rest, (void)query, (void)details;
    admin_replication_peers(c);
}

static void get_live(aconn *c, const char *rest, const char *query, bool details)
{
    (void)rest, (void)details;
    admin_live_start(c, query);
}

static void post_request(aconn *c, const char *rest, const char *query, bool details)
{
    (void)details;
    admin_api_request_post(c, rest, query);
}

static void get_request(aconn *c, const char *rest, const char *query, bool details)
{
    (void)details;
    admin_api_request(c, rest, query);
}

static void get_dead(aconn *c, const char *rest, const char *query, bool details)
{
    (void)query, (void)details;
    admin_dead_get(c, rest);
}

static void post_dead(aconn *c, const char *rest, const char *query, bool details)
{
    (void)query, (void)details;
    admin_dead_post(c, rest);
}

/* The web console's files (console.h): no data in them, so served
 * without the token (the page asks for it); the Host check still applies. */
static void get_console(aconn *c, const char *rest, const char *query, bool details)
{
    (void)rest, (void)query, (void)details;
    const char *path = c->url.data ? c->url.data : "/";
    const console_file *f = console_find(path, strcspn(path, "?"));
    if (!f) {
        admin_reply_error(c, 404, "Not Found", "no such file of the console");
        return;
    }
    buf h = BUF_INIT;
    console_headers(&h);
    admin_reply_with(c, 200, "OK", f->type, h.data, (const char *)f->data, f->len);
    buf_free(&h);
}

static const struct route {
    const char *path;
    bool prefix; /* path is followed by an argument ("/api/requests/ID") */
    route_fn get, put, post;
    bool open;           /* served to a request without Authorization (see admitted) */
    const char *post_to; /* what POST takes, for a 405 */
} routes[] = {
    {"/healthz", false, get_healthz, NULL, NULL, true, NULL},
    {"/stats", false, get_stats, NULL, NULL, false, NULL},
    {"/metrics", false, get_metrics, NULL, NULL, false, NULL},
    {"/flags", false, get_flags, put_flags, NULL, false, NULL},
    {"/api/requests", false, get_requests, NULL, NULL, false, NULL},
    {"/api/requests/", true, get_request, NULL, post_request, false, "ID/replay"},
    {"/api/live", false, get_live, NULL, NULL, false, NULL},
    {"/api/replication", false, get_replication, NULL, NULL, false, NULL},
    {"/api/replication/peers", false, get_replication_peers, NULL, NULL, false, NULL},
    {"/api/dead", false, get_dead, NULL, NULL, false, NULL},
    {"/api/dead/", true, get_dead, NULL, post_dead, false, "ID/retry or ID/skip"},
    {"/", false, get_console, NULL, NULL, true, NULL},
    {"/console/", true, get_console, NULL, NULL, true, NULL},
};

static void route(aconn *c)
{
    const char *method = llhttp_method_name(llhttp_get_method(&c->p));
    const char *path = c->url.data ? c->url.data : "/";
    size_t plen = strcspn(path, "?");
    bool details;
    const struct route *rt = NULL;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0] && !rt; i++) {
        size_t n = strlen(routes[i].path);
        if (routes[i].prefix ? plen > n && strncasecmp(path, routes[i].path, n) == 0
                             : util_ieq(path, plen, routes[i].path))
            rt = &routes[i];
    }
    if (!admitted(c, rt && rt->open, &details))
        return;
    if (!rt) {
        admin_reply_error(
            c, 404, "Not Found",
            "no such endpoint (try /healthz, /stats, /metrics, /flags, "
            "/api/requests, /api/live, /api/replication, /api/replication/peers, /api/dead)");
        return;
    }
    /* The argument and the query, NUL-terminated copies. */
    size_t n = strlen(rt->path);
    char *rest = xstrndup(path + (rt->prefix ? n : plen), rt->prefix ? plen - n : 0);
    const char *query = path[plen] == '?' ? path + plen + 1 : "";
    route_fn fn = !strcmp(method, "GET")                               ? rt->get
                  : !strcmp(method, "PUT") || !strcmp(method, "PATCH") ? rt->put
                  : !strcmp(method, "POST")                            ? rt->post
                                                                       : NULL;
    if (fn) {
        fn(c, rest, query, details);
    } else if (rt->post) {
        buf m = BUF_INIT;
        buf_appendf(&m, "use GET, or POST to %s", rt->post_to);
        admin_reply_error(c, 405, "Method Not Allowed", m.data);
        buf_free(&m);
    } else {
        admin_reply_error(c, 405, "Method Not Allowed", rt->put ? "use GET or PUT" : "use GET");
    }
    free(rest);
}

static int a_on_url(llhttp_t *p, const char *at, size_t len)
{
    aconn *c = p->data;
    buf_append(&c->url, at, len);
    return 0;
}

static int a_on_field(llhttp_t *p, const char *at, size_t len)
{
    aconn *c = p->data;
    httpmsg_hcollect_name(&c->hc, at, len);
    return 0;
}

static int a_on_value(llhttp_t *p, const char *at, size_t len)
{
    aconn *c = p->data;
    return httpmsg_hcollect_value(&c->hc, at, len, NULL);
}

static int a_on_value_complete(llhttp_t *p)
{
    aconn *c = p->data;
    return httpmsg_hcollect_done(&c->hc, &c->headers); /* -1: not a token, 400 */
}

static int a_on_body(llhttp_t *p, const char *at, size_t len)
{
    aconn *c = p->data;
    buf_append(&c->body, at, len);
    return 0;
}

static int a_on_complete(llhttp_t *p)
{
    aconn *c = p->data;
    route(c);
    return HPE_PAUSED;
}

static llhttp_settings_t admin_settings;
static uv_once_t admin_once = UV_ONCE_INIT;

static void admin_settings_init(void)
{
    llhttp_settings_init(&admin_settings);
    admin_settings.on_url = a_on_url;
    admin_settings.on_header_field = a_on_field;
    admin_settings.on_header_value = a_on_value;
    admin_settings.on_header_value_complete = a_on_value_complete;
    admin_settings.on_body = a_on_body;
    admin_settings.on_message_complete = a_on_complete;
}

static void a_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)h;
    (void)suggested;
    static char rb[16384]; /* the main loop is single-threaded */
    *b = uv_buf_init(rb, sizeof rb);
}

/* Request bytes (decrypted, on a TLS listener); non-zero once answered. */
static int a_data(void *ud, const char *data, size_t n)
{
    aconn *c = ud;
    c->total += n;
    if (c->total > ADMIN_MAX_REQUEST) {
        admin_reply_error(c, 413, "Content Too Large", "admin request too large");
        return 1;
    }
    llhttp_errno_t e = llhttp_execute(&c->p, data, n);
    if (e != HPE_OK && e != HPE_PAUSED && !c->done)
        admin_reply_error(c, 400, "Bad Request", llhttp_get_error_reason(&c->p));
    return c->done;
}

static void a_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    aconn *c = s->data;
    if (n < 0) {
        aconn_close(c); /* also how a live stream learns its client left */
        return;
    }
    if (c->done || n == 0)
        return;
    if (!c->tls) {
        a_data(c, b->base, (size_t)n);
        return;
    }
    char err[256];
    int rc = tls_conn_feed(c->tls, b->base, (size_t)n, a_data, c, err, sizeof err);
    if (rc == TLS_NOT_TLS) {
        tls_conn_free(c->tls); /* answered in plain text, as the request came */
        c->tls = NULL;
        admin_reply_error(c, 400, "Bad Request", "plain HTTP request sent to an HTTPS port");
    } else if (rc != TLS_OK && !c->done) {
        aconn_close(c);
    }
}

static void on_admin_conn(uv_stream_t *server, int status)
{
    admin *a = server->data;
    if (status < 0)
        return;
    aconn *c = xcalloc(1, sizeof *c);
    c->a = a;
    c->tcp.data = c->timer.data = c;
    uv_tcp_init(server->loop, &c->tcp);
    uv_timer_init(server->loop, &c->timer);
    c->open_handles = 2;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        aconn_close(c);
        return;
    }
    if (a->tls)
        c->tls = tls_conn_server(a->tls, (uv_stream_t *)&c->tcp);
    uv_timer_start(&c->timer, on_timeout, ADMIN_TIMEOUT_MS, 0);
    llhttp_init(&c->p, HTTP_REQUEST, &admin_settings);
    c->p.data = c;
    uv_read_start((uv_stream_t *)&c->tcp, a_alloc, a_read);
}

int admin_tls_new(const config *cfg, tls_server **out, char *err, size_t errlen)
{
    *out = NULL;
    char *const cert[] = {cfg->admin_tls_cert}, *const key[] = {cfg->admin_tls_key};
    if (cfg->admin_tls_cert &&
        !(*out = tls_server_new(cert, 1, key, cfg->admin_tls_key ? 1 : 0, err, errlen)))
        return -1;
    return 0;
}

void admin_set_tls(admin *a, tls_server *tls)
{
    if (tls)
        tls_server_ref(tls);
    tls_server_unref(a->tls);
    a->tls = tls;
}

admin *admin_start(uv_loop_t *loop, const char *addr, const char *token, tls_server *tls,
                   proxy_shared *sh, outbox *ob, int workers, char *err, size_t errlen)
{
    uv_once(&admin_once, admin_settings_init);
    struct sockaddr_storage ss;
    if (listener_resolve(addr, &ss, err, errlen) < 0)
        return NULL;
    admin *a = xcalloc(1, sizeof *a);
    a->sh = sh;
    a->ob = ob;
    a->token = token ? xstrdup(token) : NULL;
    admin_set_tls(a, tls);
    /* addr resolved above, so it splits. */
    if (util_split_hostport(addr, a->bind_host, sizeof a->bind_host, &a->port) != 0)
        abort();
    const void *num = ss.ss_family == AF_INET6
                          ? (const void *)&((const struct sockaddr_in6 *)&ss)->sin6_addr
                          : (const void *)&((const struct sockaddr_in *)&ss)->sin_addr;
    inet_ntop(ss.ss_family, num, a->bind_numeric, sizeof a->bind_numeric);
    a->workers = workers;
    a->started_us = util_now_us();
    uv_tcp_init(loop, &a->server);
    a->server.data = a;
    uv_timer_init(loop, &a->live_timer);
    a->live_timer.data = a;
    a->open_handles = 2;
    a->tap = sh->pl.tap;
    admin_live_init(a);
    int rc = uv_tcp_bind(&a->server, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&a->server, 64, on_admin_conn);
    if (rc < 0) {
        snprintf(err, errlen, "cannot listen on admin address %s: %s", addr, uv_strerror(rc));
        admin_stop(a);
        return NULL;
    }
    return a;
}

static void admin_closed(uv_handle_t *h)
{
    admin *a = h->data;
    if (--a->open_handles > 0)
        return;
    tls_server_unref(a->tls);
    free(a->token);
    free(a);
}

void admin_stop(admin *a)
{
    if (!a || a->closing)
        return;
    a->closing = true;
    admin_live_stop(a);
    /* Work still running finishes on its own, answering nobody: its
     * connection closes now, and the admin may be freed before it ends. */
    while (a->jobs) {
        struct admin_job *j = a->jobs;
        a->jobs = j->next;
        j->a = NULL;
        if (j->c)
            aconn_close(j->c);
    }
    a->njobs = 0;
    uv_close((uv_handle_t *)&a->live_timer, admin_closed);
    uv_close((uv_handle_t *)&a->server, admin_closed);
}
