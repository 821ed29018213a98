/* admin_internal: what the files of the admin API share (inside proxy/):
 * admin.c (the listener, its connections, the token and Host checks and
 * the routes), admin_status.c (health, counters, metrics and flags) and
 * admin_api.c (the captured requests, for the console).
 * Nothing outside the admin module includes it. */
#ifndef RESTSPY_ADMIN_INTERNAL_H
#define RESTSPY_ADMIN_INTERNAL_H

#include <arpa/inet.h>
#include <llhttp.h>
#include <stdbool.h>

#include "base/buf.h"
#include "base/tls.h"
#include "http/headers.h"
#include "http/httpmsg.h"
#include "proxy/admin.h"

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

/* Answers with body (of type ctype, copied) and closes the connection. */
void admin_reply_as(aconn *c, int status, const char *reason, const char *ctype, const char *body,
                    size_t len);
/* Answers with a JSON body (a newline is added). */
void admin_reply(aconn *c, int status, const char *reason, const char *json, size_t len);
/* Answers {"error": msg}. */
void admin_reply_error(aconn *c, int status, const char *reason, const char *msg);

/* ---- admin_status.c: the routes that report and switch */

/* GET /healthz: {"status":"ok"}, or "degraded" with the reasons when
 * details may be shown. */
void admin_healthz(aconn *c, bool details);
/* GET /stats: the counters as JSON. */
void admin_stats(aconn *c);
/* GET /metrics: Prometheus' text format (metrics.h). */
void admin_metrics(aconn *c);
/* The runtime flags as a JSON object. */
void admin_flags_json(admin *a, buf *b);
/* PUT /flags: switches flags at run time. */
void admin_flags_put(aconn *c);

/* ---- admin_api.c: the captured requests for the console */

/* GET /api/requests?FILTERS: {"requests":[...], "more":bool,
 * "next_until":"RFC 3339"|null}, newest first, a page (limit=, 50 by
 * default, at most 1000) at a time; FILTERS are reqfilter's (method, path,
 * status, since, until, origin, node, id). 400 with why for a bad one. */
void admin_api_requests(aconn *c, const char *query);
/* GET /api/requests/ID: the request whole (headers and bodies), ID an id
 * or a start or end of one (store_get); 404 or 400 (ambiguous). */
void admin_api_request(aconn *c, const char *id);

#endif
