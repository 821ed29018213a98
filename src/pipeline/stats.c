#include "pipeline/stats.h"

#include <string.h>

stats g_stats;
stats_requests g_requests;
runtime_flags g_flags = {true, true, false};

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
    hist_observe_us(&g_requests.duration, duration_us);
    if (upstream_us >= 0)
        hist_observe_us(&g_requests.upstream, upstream_us);
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
