#include "proxy/admin.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <llhttp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "base/iostream.h"
#include "http/headers.h"
#include "http/httpmsg.h"
#include "proxy/listener.h"
#include "proxy/stats.h"
#include "base/util.h"

/* An admin request is small: anything larger is refused. */
#define ADMIN_MAX_REQUEST (64 * 1024)
/* A client that has not sent its whole request by then is dropped, so an
 * idle or slow connection can neither pin memory nor delay a stop. */
#define ADMIN_TIMEOUT_MS 10000

struct admin {
    uv_tcp_t server;
    proxy_shared *sh;
    outbox *ob; /* NULL when replication is off */
    char *token;
    tls_server *tls; /* a reference, or NULL (plain HTTP) */
    /* The names of the listener for the Host check: as configured and as
     * a numeric address (IPv6 without brackets), and its port. */
    char bind_host[256];
    char bind_numeric[INET6_ADDRSTRLEN];
    int port;
    int workers;
    int64_t started_us;
    bool closing;
};

typedef struct aconn {
    uv_tcp_t tcp;
    tls_conn *tls; /* owned; NULL on a plain listener */
    uv_timer_t timer;
    int open_handles;
    admin *a;
    llhttp_t p;
    buf url, body;
    httpmsg_hcollect hc;
    http_headers headers; /* the request's, owned */
    size_t total;
    bool done;
} aconn;

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

static void reply(aconn *c, int status, const char *reason, const char *json, size_t len)
{
    buf out = BUF_INIT;
    buf_appendf(&out,
                "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n",
                status, reason, len + 1,
                status == 401 ? "WWW-Authenticate: Bearer realm=\"restspy\"\r\n" : "");
    buf_append(&out, json, len);
    buf_append_char(&out, '\n');
    uv_buf_t b = uv_buf_init(out.data, (unsigned)out.len);
    if (c->tls) {
        tls_conn_write(c->tls, &b, 1, NULL);
        tls_conn_close_notify(c->tls);
    } else {
        io_write((uv_stream_t *)&c->tcp, &b, 1, NULL);
    }
    buf_free(&out);
    c->done = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_shutdown_t *req = xmalloc(sizeof *req);
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        free(req);
        aconn_close(c);
    }
}

static void reply_error(aconn *c, int status, const char *reason, const char *msg)
{
    buf b = BUF_INIT;
    buf_append_str(&b, "{\"error\":");
    buf_append_json_str(&b, msg, strlen(msg));
    buf_append_char(&b, '}');
    reply(c, status, reason, b.data, b.len);
    buf_free(&b);
}

static void flags_json(admin *a, buf *b)
{
    buf_appendf(b, "{\"log\":%s,\"persist\":%s,\"replicate\":%s,\"log_format\":\"%s\"}",
                atomic_load(&g_flags.log) ? "true" : "false",
                atomic_load(&g_flags.persist) ? "true" : "false",
                atomic_load(&g_flags.replicate) ? "true" : "false",
                logsink_format(a->sh->log) == LOG_FORMAT_COMBINED ? "combined" : "json");
}

/* "replication": the publisher's state and the outbox as the store sees it
 * (null when replication is off). */
static void append_replication(admin *a, buf *b)
{
    if (!a->ob) {
        buf_append_str(b, ",\"replication\":null");
        return;
    }
    outbox_stats os;
    outbox_get_stats(a->ob, &os);
    buf_appendf(b,
                ",\"replication\":{\"enabled\":%s,\"connected\":%s,\"published\":%llu,"
                "\"confirmed\":%llu,\"reconnects\":%llu,\"nacks\":%llu,"
                "\"last_confirmed_us\":%lld,\"down_since_us\":%lld,\"failed_attempts\":%llu,"
                "\"returned\":%llu,\"unroutable_since_us\":%lld,\"last_error\":",
                atomic_load(&g_flags.replicate) ? "true" : "false", os.connected ? "true" : "false",
                (unsigned long long)os.published, (unsigned long long)os.confirmed,
                (unsigned long long)os.reconnects, (unsigned long long)os.nacks,
                (long long)os.last_confirmed_us, (long long)os.down_since_us,
                (unsigned long long)os.failed_attempts, (unsigned long long)os.returned,
                (long long)os.unroutable_since_us);
    if (os.last_error[0])
        buf_append_json_str(b, os.last_error, strlen(os.last_error));
    else
        buf_append_str(b, "null");
    store_repl_stats rs;
    char err[256];
    if (a->sh->store && store_repl_stats_get(a->sh->store, &rs, err, sizeof err) == 0)
        buf_appendf(b,
                    ",\"outbox_depth\":%lld,\"oldest_unpublished_us\":%lld,"
                    "\"not_replicated\":%lld",
                    (long long)rs.outbox_depth, (long long)rs.oldest_unpublished_us,
                    (long long)rs.not_replicated);
    buf_append_char(b, '}');
}

/* Why the proxy is degraded: each reason as a JSON string appended to b,
 * comma-separated. Returns how many. Degraded is still serving: requests
 * are proxied and captured, something behind them is not right. */
static int append_degraded(admin *a, buf *b)
{
    int n = 0;
    if (a->ob) {
        outbox_stats os;
        outbox_get_stats(a->ob, &os);
        if (!os.connected) {
            char why[400];
            if (os.last_error[0])
                snprintf(why, sizeof why,
                         "replication: broker unreachable for %.1fs (%s); new records wait in "
                         "the outbox",
                         (double)(util_now_us() - os.down_since_us) / 1e6, os.last_error);
            else
                snprintf(why, sizeof why, "replication: connecting to the broker");
            buf_append_json_str(b, why, strlen(why));
            n++;
        } else if (os.unroutable_since_us) {
            char why[400];
            snprintf(why, sizeof why,
                     "replication: the broker returns publishes as unroutable for %.1fs (no "
                     "queue bound to restspy.requests: run restspy federate); new records wait "
                     "in the outbox",
                     (double)(util_now_us() - os.unroutable_since_us) / 1e6);
            buf_append_json_str(b, why, strlen(why));
            n++;
        }
    }
    return n;
}

/* GET /healthz: {"status":"ok"}, or {"status":"degraded"} with the reasons
 * when details may be shown, answered with healthz_degraded_status. */
static void handle_healthz(aconn *c, bool details)
{
    buf reasons = BUF_INIT, b = BUF_INIT;
    int n = append_degraded(c->a, &reasons);
    buf_appendf(&b, "{\"status\":\"%s\"", n ? "degraded" : "ok");
    if (n && details)
        buf_appendf(&b, ",\"reasons\":[%s]", reasons.data);
    buf_append_char(&b, '}');
    /* Read as is: see host_ok. */
    int status = n ? c->a->sh->cfg->healthz_degraded_status : 200;
    reply(c, status,
          status == 200   ? "OK"
          : status == 503 ? "Service Unavailable"
                          : "Degraded",
          b.data, b.len);
    buf_free(&reasons);
    buf_free(&b);
}

static void handle_stats(aconn *c)
{
    admin *a = c->a;
    buf b = BUF_INIT;
    buf_append_char(&b, '{');
    stats_append_json(&b);
    buf_appendf(&b, ",\"workers\":%d,\"uptime_s\":%lld", a->workers,
                (long long)((util_now_us() - a->started_us) / 1000000));
    buf_appendf(&b, ",\"log\":{\"lines\":%llu,\"errors\":%llu}",
                (unsigned long long)logsink_lines(a->sh->log),
                (unsigned long long)logsink_errors(a->sh->log));
    if (a->sh->store) {
        store_stats s;
        store_get_stats(a->sh->store, &s);
        buf_appendf(&b,
                    ",\"store\":{\"submitted\":%llu,\"written\":%llu,\"dropped\":%llu,"
                    "\"queued\":%llu,\"batches\":%llu,\"errors\":%llu,\"pruned\":%llu,"
                    "\"blocked\":%llu}",
                    (unsigned long long)s.submitted, (unsigned long long)s.written,
                    (unsigned long long)s.dropped, (unsigned long long)s.queued,
                    (unsigned long long)s.batches, (unsigned long long)s.errors,
                    (unsigned long long)s.pruned, (unsigned long long)s.blocked);
    } else {
        buf_append_str(&b, ",\"store\":null");
    }
    append_replication(a, &b);
    buf_append_str(&b, ",\"flags\":");
    flags_json(a, &b);
    buf_append_char(&b, '}');
    reply(c, 200, "OK", b.data, b.len);
    buf_free(&b);
}

/* Why a valid PUT /flags body cannot be applied, or NULL: a flag switched on
 * whose machinery this process does not have (it is set up at start). */
static const char *flags_conflict(const admin *a, const json_t *j)
{
    if (json_is_true(json_object_get(j, "persist")) && !a->sh->store)
        return "cannot switch persist on: the store is off (set store and restart)";
    if (json_is_true(json_object_get(j, "replicate")) && !a->sh->replicating)
        return "cannot switch replicate on: no broker is configured (set amqp and restart)";
    return NULL;
}

/* Applies a PUT /flags body; all or nothing. */
static void handle_put_flags(aconn *c)
{
    json_error_t jerr;
    json_t *j = json_loadb(c->body.data ? c->body.data : "", c->body.len, 0, &jerr);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        reply_error(c, 400, "Bad Request", "body must be a JSON object");
        return;
    }
    const char *key;
    json_t *v;
    int fmt = -1;
    json_object_foreach(j, key, v)
    {
        if (!strcmp(key, "log") || !strcmp(key, "persist") || !strcmp(key, "replicate")) {
            if (!json_is_boolean(v)) {
                json_decref(j);
                reply_error(c, 400, "Bad Request", "flags log, persist, replicate are booleans");
                return;
            }
        } else if (!strcmp(key, "log_format")) {
            const char *s = json_string_value(v);
            if (s && !strcmp(s, "json"))
                fmt = LOG_FORMAT_JSON;
            else if (s && !strcmp(s, "combined"))
                fmt = LOG_FORMAT_COMBINED;
            else {
                json_decref(j);
                reply_error(c, 400, "Bad Request", "log_format is \"json\" or \"combined\"");
                return;
            }
        } else {
            buf m = BUF_INIT;
            buf_appendf(&m, "unknown flag '%s' (known: log, persist, replicate, log_format)", key);
            json_decref(j);
            reply_error(c, 400, "Bad Request", m.data);
            buf_free(&m);
            return;
        }
    }
    const char *why = flags_conflict(c->a, j);
    if (why) {
        json_decref(j);
        reply_error(c, 409, "Conflict", why);
        return;
    }
    if ((v = json_object_get(j, "log")))
        atomic_store(&g_flags.log, json_is_true(v));
    if ((v = json_object_get(j, "persist")))
        atomic_store(&g_flags.persist, json_is_true(v));
    if ((v = json_object_get(j, "replicate")))
        atomic_store(&g_flags.replicate, json_is_true(v));
    if (fmt >= 0)
        logsink_set_format(c->a->sh->log, fmt);
    json_decref(j);
    buf b = BUF_INIT;
    flags_json(c->a, &b);
    reply(c, 200, "OK", b.data, b.len);
    buf_free(&b);
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
 * request to /healthz without any Authorization header is admitted when a
 * token is set (a load balancer's probe often cannot send one) and gets the
 * status alone, never the reasons. */
static bool admitted(aconn *c, bool healthz, bool *details)
{
    const char *auth = http_headers_get(&c->headers, "authorization");
    *details = token_ok(c->a, auth);
    if (!*details && !(healthz && !auth)) {
        reply_error(c, 401, "Unauthorized", "unauthorized: admin_token required");
        return false;
    }
    if (c->a->token)
        return true; /* the token is the defence: any Host */
    if (http_headers_count(&c->headers, "host") > 1) {
        reply_error(c, 400, "Bad Request", "several Host headers");
        return false;
    }
    const char *host = http_headers_get(&c->headers, "host");
    if (host && !host_ok(c->a, host, strlen(host))) {
        buf m = BUF_INIT;
        buf_appendf(&m,
                    "Host '%.200s' does not name this admin listener; add the name to "
                    "admin_hosts or set admin_token",
                    host);
        reply_error(c, 421, "Misdirected Request", m.data);
        buf_free(&m);
        return false;
    }
    return true;
}

static void route(aconn *c)
{
    const char *method = llhttp_method_name(llhttp_get_method(&c->p));
    const char *path = c->url.data ? c->url.data : "/";
    size_t plen = strcspn(path, "?");
    bool details;
    if (!admitted(c, util_ieq(path, plen, "/healthz"), &details))
        return;
    bool get = !strcmp(method, "GET");
    if (util_ieq(path, plen, "/healthz")) {
        if (get)
            handle_healthz(c, details);
        else
            reply_error(c, 405, "Method Not Allowed", "use GET");
    } else if (util_ieq(path, plen, "/stats")) {
        if (get)
            handle_stats(c);
        else
            reply_error(c, 405, "Method Not Allowed", "use GET");
    } else if (util_ieq(path, plen, "/flags")) {
        if (get) {
            buf b = BUF_INIT;
            flags_json(c->a, &b);
            reply(c, 200, "OK", b.data, b.len);
            buf_free(&b);
        } else if (!strcmp(method, "PUT") || !strcmp(method, "PATCH")) {
            handle_put_flags(c);
        } else {
            reply_error(c, 405, "Method Not Allowed", "use GET or PUT");
        }
    } else {
        reply_error(c, 404, "Not Found", "no such endpoint (try /healthz, /stats, /flags)");
    }
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
        reply_error(c, 413, "Content Too Large", "admin request too large");
        return 1;
    }
    llhttp_errno_t e = llhttp_execute(&c->p, data, n);
    if (e != HPE_OK && e != HPE_PAUSED && !c->done)
        reply_error(c, 400, "Bad Request", llhttp_get_error_reason(&c->p));
    return c->done;
}

static void a_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    aconn *c = s->data;
    if (c->done || n == 0)
        return;
    if (n < 0) {
        aconn_close(c);
        return;
    }
    if (!c->tls) {
        a_data(c, b->base, (size_t)n);
        return;
    }
    char err[256];
    int rc = tls_conn_feed(c->tls, b->base, (size_t)n, a_data, c, err, sizeof err);
    if (rc == TLS_NOT_TLS) {
        tls_conn_free(c->tls); /* answered in plain text, as the request came */
        c->tls = NULL;
        reply_error(c, 400, "Bad Request", "plain HTTP request sent to an HTTPS port");
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
    tls_server_unref(a->tls);
    free(a->token);
    free(a);
}

void admin_stop(admin *a)
{
    if (!a || a->closing)
        return;
    a->closing = true;
    uv_close((uv_handle_t *)&a->server, admin_closed);
}
