/* stats: process-wide counters and runtime flags, shared by every thread.
 *
 * Owns one global table of relaxed atomic counters (cheap enough to bump per
 * request on two cores) and the runtime flags that PUT /flags switches
 * without a restart. Promises: every counter only grows, except the gauges
 * (active_connections). */
#ifndef RESTSPY_STATS_H
#define RESTSPY_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/hist.h"

typedef struct stats {
    _Atomic uint64_t requests; /* requests whose headers were parsed */
    _Atomic uint64_t responses_1xx, responses_2xx, responses_3xx, responses_4xx, responses_5xx;
    _Atomic uint64_t errors;          /* requests that ended with an error */
    _Atomic uint64_t upstream_errors; /* 502/504 */
    _Atomic uint64_t bad_requests;    /* 400/408/413/414/431 */
    _Atomic uint64_t bytes_in;        /* from clients */
    _Atomic uint64_t bytes_out;       /* to clients */
    _Atomic uint64_t connections;     /* accepted */
    _Atomic int64_t active_connections;
    _Atomic uint64_t refused_connections;    /* over max_connections */
    _Atomic uint64_t upstream_connects;      /* new upstream connections */
    _Atomic uint64_t upstream_reused;        /* requests on a pooled connection */
    _Atomic uint64_t upgrades;               /* tunneled Upgrade requests */
    _Atomic uint64_t tls_handshakes;         /* TLS listener: handshakes completed */
    _Atomic uint64_t tls_resumed;            /* of which resumed a session */
    _Atomic uint64_t tls_handshake_failures; /* failed or timed out */
    _Atomic uint64_t logged;
    _Atomic uint64_t captured; /* records handed to the store */
} stats;

extern stats g_stats;

/* Request methods and status classes the per-request counters keep apart
 * (few labels: anything else is "OTHER"; status 0, no answer, is "none"). */
#define STATS_METHODS 8
#define STATS_CLASSES 6
extern const char *const stats_method_names[STATS_METHODS];
extern const char *const stats_class_names[STATS_CLASSES];

typedef struct stats_requests {
    _Atomic uint64_t by[STATS_METHODS][STATS_CLASSES];
    hist duration; /* first byte to the end of the answer */
    hist upstream; /* request sent upstream to the end of its answer */
} stats_requests;

extern stats_requests g_requests;

/* Counts a finished request: its status class (responses_Nxx too), its
 * method and class, and its durations (upstream_us < 0: it never went
 * upstream). Any thread. */
void stats_request_done(const char *method, int status, int64_t duration_us, int64_t upstream_us);

#define STAT_INC(field) atomic_fetch_add_explicit(&g_stats.field, 1, memory_order_relaxed)
#define STAT_ADD(field, n) atomic_fetch_add_explicit(&g_stats.field, (n), memory_order_relaxed)

/* Runtime flags (start from the config, switched by the admin API). */
typedef struct runtime_flags {
    _Atomic bool log;
    _Atomic bool persist;
    _Atomic bool replicate;
} runtime_flags;

extern runtime_flags g_flags;

/* Appends the counters as a JSON object's members (no braces), e.g.
 * "requests":12,"responses_2xx":10,... */
void stats_append_json(buf *out);

#endif
