#include "proxy/stats.h"

stats g_stats;
runtime_flags g_flags = {true, true, false};

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
