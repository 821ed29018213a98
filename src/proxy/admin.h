/* admin: the small HTTP API for operators, on its own address.
 *
 * Owns its listening socket and its connections, on the main thread's loop
 * (never a worker's, so a busy proxy cannot starve it). Serves
 *   GET /healthz        {"status":"ok"}, or {"status":"degraded","reasons":[..]}
 *                       (the broker unreachable) with healthz_degraded_status
 *   GET /stats          counters (stats.h) plus store, log and replication figures
 *   GET /flags          {"log":..,"persist":..,"replicate":..,"log_format":".."}
 *   PUT /flags          JSON with any of those keys: switches them at run time,
 *                       all or nothing; 409 for persist or replicate on when
 *                       the store or the broker is not configured
 * One request per connection (Connection: close). Promises: with a token set,
 * every request needs "Authorization: Bearer <token>" (compared in constant
 * time) or gets 401, except GET /healthz without any Authorization header,
 * which gets the status alone (liveness for load balancers); without one, a request whose Host does
 * not name the listener (or a name in admin_hosts) gets 421, against DNS rebinding; errors are JSON
 * {"error":"..."}. */
#ifndef RESTSPY_ADMIN_H
#define RESTSPY_ADMIN_H

#include <stddef.h>
#include <uv.h>

#include "replication/outbox.h"
#include "proxy/proxy.h"

typedef struct admin admin;

/* Binds addr ("host:port"). NULL with err on failure. token may be NULL.
 * tls (may be NULL: plain HTTP): the admin listener's certificates (a
 * reference is taken). */
admin *admin_start(uv_loop_t *loop, const char *addr, const char *token, tls_server *tls,
                   proxy_shared *sh, outbox *ob, int workers, char *err, size_t errlen);

/* The admin listener's certificates from cfg (admin_tls_cert and
 * admin_tls_key) into *out (one reference, the caller's), or NULL when the
 * admin speaks plain HTTP. -1 with err when a file does not hold what it
 * should. Shared by `restspy proxy` and `restspy collect`. */
int admin_tls_new(const config *cfg, tls_server **out, char *err, size_t errlen);

/* Serves tls (a reference is taken; NULL: plain HTTP) to the connections
 * accepted from now on (SIGHUP's certificate reload). */
void admin_set_tls(admin *a, tls_server *tls);

/* Closes the listener and every admin connection; frees when closed. */
void admin_stop(admin *a);

#endif
