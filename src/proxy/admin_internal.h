/* admin_internal: what the files of the admin API share (inside proxy/):
 * admin.c (the listener, its connections, the token and Host checks, the
 * routes and the work sent off the loop), admin_status.c (health, counters,
 * metrics and flags), admin_api.c (the captured requests, for the console),
 * admin_live.c (the live stream) and admin_dead.c (the dead letters).
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
#include "pipeline/tap.h"
#include "store/reqfilter.h"

/* Blocking work running off the loop for a request (admin_offload). */
struct admin_job;

/* An admin request is small: anything larger is refused. */
#define ADMIN_MAX_REQUEST (64 * 1024)
/* A client that has not sent its whole request by then is dropped, so an
 * idle or slow connection can neither pin memory nor delay a stop. */
#define ADMIN_TIMEOUT_MS 10000
/* At most this many requests have work on libuv's thread pool (4 threads,
 * shared with the rest of the process) at once; more get 503. */
#define ADMIN_JOBS_MAX 2

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
    /* the live consoles (admin_live.c) */
    tap *tap;              /* the server's; NULL when there is none */
    struct live *lives;    /* the subscribed connections */
    uv_timer_t live_timer; /* skipped-event notes and keep-alive comments */
    bool live_timer_on;
    int open_handles;       /* the server and live_timer: freed when both are closed */
    struct admin_job *jobs; /* the work running for connections (admin_offload) */
    int njobs;
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
    struct live *live;     /* set while the connection is a live stream */
    struct admin_job *job; /* the work running for it (admin_offload), or NULL */
} aconn;

/* Writes raw bytes to the connection (through TLS when it has it). */
int admin_write(aconn *c, const char *data, size_t len);
/* Closes the connection now (no graceful end). */
void admin_close(aconn *c);

/* Answers with body (of type ctype, copied), not to be cached, and closes
 * the connection. */
void admin_reply_as(aconn *c, int status, const char *reason, const char *ctype, const char *body,
                    size_t len);
/* admin_reply_as with headers (CRLF-terminated lines, "" for none) in
 * place of its Cache-Control: no-store. */
void admin_reply_with(aconn *c, int status, const char *reason, const char *ctype,
                      const char *headers, const char *body, size_t len);
/* Answers with a JSON body (a newline is added). */
void admin_reply(aconn *c, int status, const char *reason, const char *json, size_t len);
/* Answers {"error": msg}. */
void admin_reply_error(aconn *c, int status, const char *reason, const char *msg);
/* How a failed read of the store is named to an admin client, before why. */
#define ADMIN_STORE_FAILED "cannot read the store: "

/* Answers 503 {"error": "cannot read the store: why"}: a read the store
 * failed (STORE_FAILED; its database went away) is the server's trouble,
 * not the request's, and may pass (the PostgreSQL writer reconnects). */
void admin_reply_store_failed(aconn *c, const char *why);
/* The client's address ("?" when unknown) into out: who changed something,
 * for the log line that records it. */
void admin_peer(aconn *c, char *out, size_t len);

/* Runs on a thread of libuv's pool: blocking work (a broker, a replay)
 * that must not hold up the admin's loop. It sees only ud: never the
 * connection, the admin nor the loop. */
typedef void (*admin_work_fn)(void *ud);
/* Runs on the loop once the work is done: answers c and frees ud. c is
 * NULL when the connection is gone meanwhile (the admin stopped): then
 * there is nobody to answer, ud is freed all the same. */
typedef void (*admin_done_fn)(aconn *c, void *ud);
/* Runs work(ud) on libuv's thread pool, then done(c, ud) on the loop. c
 * waits for it: it reads nothing more and its ADMIN_TIMEOUT_MS timer is
 * stopped (the work bounds its own time), restarted when done runs, so
 * that a reply the client does not take cannot pin it. 0, or -1 after
 * answering 503 when ADMIN_JOBS_MAX requests have work running (ud stays
 * the caller's). */
int admin_offload(aconn *c, admin_work_fn work, admin_done_fn done, void *ud);

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
/* GET /api/replication[?window=5m]: {"publisher": {...}|null, then the
 * figures `restspy replication status --json` prints (repl_status)}. */
void admin_replication(aconn *c, const char *query);
/* GET /api/replication/peers: what this site's broker holds for each peer
 * ({"shovels_known", "peers": [...]}, repl_peers), read from the management
 * API (setting mgmt; 409 without it, 502 when it fails) on the thread pool
 * (admin_offload). */
void admin_replication_peers(aconn *c);

/* ---- admin_api.c: the captured requests for the console */

/* A whole-number query parameter besides the filters (limit=, rate=). */
typedef struct admin_number {
    const char *name;
    int64_t lo, hi;
    int64_t *out;
} admin_number;

/* The next name=value of the query string *q (advanced past it), both
 * percent-decoded and NUL-terminated into name and value (a name without
 * '=' has an empty value); false at its end. The one query-string reader
 * of the admin API. */
bool admin_query_next(const char **q, buf *name, buf *value);
/* The value of the first parameter called name, decoded (owned), or NULL. */
char *admin_query_value(const char *q, const char *name);

/* Fills f from the query string q (name=value&..., percent-encoded): the
 * filters of reqfilter and the numbers nums[0..nnums). 0, or -1 with err
 * naming the parameter ("unknown parameter 'x' (filters: ...)"). */
int admin_parse_query(const char *q, reqfilter *f, const admin_number *nums, size_t nnums,
                      char *err, size_t errlen);

/* GET /api/requests?FILTERS: {"requests":[...], "more":bool,
 * "next_until":"RFC 3339"|null}, newest first, a page (limit=, 50 by
 * default, at most 1000) at a time; FILTERS are reqfilter's (method, path,
 * status, since, until, origin, node, id). 400 with why for a bad one. */
void admin_api_requests(aconn *c, const char *query);
/* GET /api/requests/ID: the request whole (headers and bodies), ID an id
 * or a start or end of one (store_get); 404 or 400 (ambiguous).
 * ID/har: a HAR 1.2 file of it (as `restspy export --har`, an attachment);
 * ID/curl: the curl command line `restspy export --curl` writes, against
 * target= (default: this proxy's listener). */
void admin_api_request(aconn *c, const char *rest, const char *query);
/* POST /api/requests/ID/replay?target=URL: sends the request to target
 * (at most 10 s, on the thread pool: admin_offload) and answers with the
 * report `restspy replay --report json` writes for it. */
void admin_api_request_post(aconn *c, const char *rest, const char *query);

/* ---- admin_dead.c: the dead letters, for the console (replication/dead.h) */

/* GET /api/dead: {"queue": "restspy.dead.NODE", "dead": [the list form of
 * each]}. GET /api/dead/ID: one whole (ID or a unique prefix of 8+). 409
 * when replication is off (no amqp), 404 no such id, 400 ambiguous, 502
 * the broker unreachable. On the thread pool (admin_offload). */
void admin_dead_get(aconn *c, const char *rest);
/* POST /api/dead/ID/retry: {"retried": ID}; POST /api/dead/ID/skip:
 * {"skipped": ID} (recorded in the store's ledger; also a stuck write),
 * each logged on stderr with who asked. Errors as admin_dead_get, 502 also
 * for a republish the broker did not confirm. */
void admin_dead_post(aconn *c, const char *rest);

/* ---- admin_live.c: GET /api/live, Server-Sent Events */

/* Makes c a live stream of the requests captured from now on that the
 * query's filters select, at most rate= events a second (20 by default, at
 * most 1000); beyond it, and when the client reads too slowly, events are
 * skipped and counted in an "event: skipped" note each second. 400 for a
 * bad parameter, 404 without a tap. */
void admin_live_start(aconn *c, const char *query);
/* Hands the tap's records to the streams (admin_start, on the loop). */
void admin_live_init(admin *a);
/* Forgets c's subscription (its connection closes). */
void admin_live_drop(aconn *c);
/* Ends every live stream (the admin stops). */
void admin_live_stop(admin *a);

#endif
