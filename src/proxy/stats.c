#include "proxy/stats.h"

#include <string.h>

stats g_stats;
stats_requests g_requests;
runtime_flags g_flags = {true, true, false};

/* Prometheus' client defaults, with 1 ms and 2.5 ms added below (a proxy's
 * own share is sub-millisecond) and 30 s and 60 s above (upstream_timeout). */
const double stats_bucket_le[STATS_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                               0.25,  0.5,    1,     2.5,  5,     10,   60};
const char *const stats_method_names[STATS_METHODS] = {"GET",   "HEAD",   "POST",    "PUT",
                                                       "PATCH", "DELETE", "OPTIONS", "OTHER"};
const char *const stats_class_names[STATS_CLASSES] = {"1xx", "2xx", "3xx", "4xx", "5xx", "none"};

static size_t method_index(const char *m)
{
    for (size_t i = 0; i + 1 < STATS_METHODS; i++)
        if (m && strcmp(m, stats_method_names[i]) == 0)
            return i;
    return STATS_METHODS - 1;
}

static void observe(stats_hist *h, int64_t us)
{
    if (us < 0)
        us = 0;
    double s = (double)us / 1e6;
    size_t i = 0;
    while (i < STATS_BUCKETS && s > stats_bucket_le[i])
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (uint64_t)us, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

void stats_request_done(const char *method, int status, int64_t duration_us, int64_t upstream_us)
{
    size_t cls = status >= 100 && status < 600 ? (size_t)(status / 100 - 1) : STATS_CLASSES - 1;
    static _Atomic uint64_t *const by_class[] = {
        &g_stats.responses_1xx, &g_stats.responses_2xx, &g_stats.responses_3xx,
        &g_stats.responses_4xx, &g_stats.responses_5xx,
    };
    if (cls < STATS_CLASSES - 1)
        atomic_fetch_add_explicit(by_class[cls], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&g_requests.by[method_index(method)][cls], 1, memory_order_relaxed);
    observe(&g_requests.duration, duration_us);
    if (upstream_us >= 0)
        observe(&g_requests.upstream, upstream_us);
}

#define FIELD(name)                                                                                \
    do {                                                                                           \
        buf_append_str(out, first ? "\"" #name "\":" : ",\"" #name "\":");                         \
        buf_append_u64(                                                                            \
            out, (unsigned long long)atomic_load_explicit(&g_stats.name, memory_order_relaxed));   \
        first = 0;                                                                                 \
    } while (0)

void stats_append_json(buf *out)
{
    int first = 1;
    FIELD(requests);
    FIELD(responses_1xx);
    FIELD(responses_2xx);
    FIELD(responses_3xx);
    FIELD(responses_4xx);
    FIELD(responses_5xx);
    FIELD(errors);
    FIELD(upstream_errors);
    FIELD(bad_requests);
    FIELD(bytes_in);
    FIELD(bytes_out);
    FIELD(connections);
    buf_append_str(out, ",\"active_connections\":");
    buf_append_i64(
        out, (long long)atomic_load_explicit(&g_stats.active_connections, memory_order_relaxed));
    FIELD(refused_connections);
    FIELD(tls_handshakes);
    FIELD(tls_resumed);
    FIELD(tls_handshake_failures);
    FIELD(upstream_connects);
    FIELD(upstream_reused);
    FIELD(upgrades);
    FIELD(logged);
    FIELD(captured);
}
