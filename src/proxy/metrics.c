/* metrics: see metrics.h. */
#include "proxy/metrics.h"

#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/util.h"
#include "capture/rules.h"
#include "pipeline/stats.h"

/* ---- the exposition's pieces ---- */

static void head(buf *out, const char *name, const char *type, const char *help)
{
    buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(buf *out, const char *name, unsigned long long v)
{
    buf_appendf(out, "%s %llu\n", name, v);
}

static void one(buf *out, const char *name, const char *type, const char *help,
                unsigned long long v)
{
    head(out, name, type, help);
    sample(out, name, v);
}

static void onef(buf *out, const char *name, const char *type, const char *help, double v)
{
    head(out, name, type, help);
    buf_appendf(out, "%s %.6f\n", name, v);
}

#define LOAD(x) ((unsigned long long)atomic_load_explicit(&(x), memory_order_relaxed))

static void snapshot(buf *out, const char *name, const char *help, const hist_snapshot *s)
{
    head(out, name, "histogram", help);
    for (size_t i = 0; i < HIST_BUCKETS; i++)
        buf_appendf(out, "%s_bucket{le=\"%g\"} %llu\n", name, hist_le[i],
                    (unsigned long long)s->cum[i]);
    buf_appendf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                (unsigned long long)s->count, name, s->sum_s, name, (unsigned long long)s->count);
}

static void histogram(buf *out, const char *name, const char *help, const hist *h)
{
    hist_snapshot hs;
    hist_read(h, &hs);
    snapshot(out, name, help, &hs);
}

static void requests(buf *out)
{
    head(out, "restspy_requests_total", "counter",
         "Requests ended (answered, refused or cut), by method and status class (none: no "
         "answer was sent).");
    for (size_t m = 0; m < STATS_METHODS; m++)
        for (size_t k = 0; k < STATS_CLASSES; k++)
            buf_appendf(out, "restspy_requests_total{method=\"%s\",code=\"%s\"} %llu\n",
                        stats_method_names[m], stats_class_names[k], LOAD(g_requests.by[m][k]));
    one(out, "restspy_request_errors_total", "counter",
        "Requests whose record has an error (upstream failure, timeout, refused request, ...).",
        LOAD(g_stats.errors));
    histogram(out, "restspy_request_duration_seconds",
              "From a request's first byte to the end of its answer.", &g_requests.duration);
    histogram(out, "restspy_upstream_duration_seconds",
              "From sending a request upstream to the end of the upstream's answer.",
              &g_requests.upstream);
}

static void connections(buf *out)
{
    one(out, "restspy_received_bytes_total", "counter", "Bytes read from clients.",
        LOAD(g_stats.bytes_in));
    one(out, "restspy_sent_bytes_total", "counter", "Bytes written to clients.",
        LOAD(g_stats.bytes_out));
    one(out, "restspy_connections_total", "counter", "Client connections accepted.",
        LOAD(g_stats.connections));
    head(out, "restspy_active_connections", "gauge", "Client connections open now.");
    buf_appendf(out, "restspy_active_connections %lld\n",
                (long long)atomic_load_explicit(&g_stats.active_connections, memory_order_relaxed));
    one(out, "restspy_refused_connections_total", "counter",
        "Client connections refused over max_connections.", LOAD(g_stats.refused_connections));
    one(out, "restspy_tls_handshakes_total", "counter",
        "TLS handshakes completed on the proxy listener.", LOAD(g_stats.tls_handshakes));
    one(out, "restspy_tls_resumed_total", "counter", "Of those, handshakes that resumed a session.",
        LOAD(g_stats.tls_resumed));
    one(out, "restspy_tls_handshake_failures_total", "counter",
        "TLS handshakes that failed or timed out on the proxy listener.",
        LOAD(g_stats.tls_handshake_failures));
    one(out, "restspy_upstream_connects_total", "counter", "New connections to the upstream.",
        LOAD(g_stats.upstream_connects));
    one(out, "restspy_upstream_reused_total", "counter",
        "Requests sent on a pooled upstream connection.", LOAD(g_stats.upstream_reused));
    one(out, "restspy_upstream_errors_total", "counter",
        "Requests answered 502 or 504 because of the upstream.", LOAD(g_stats.upstream_errors));
    one(out, "restspy_upgrades_total", "counter", "Upgrade requests tunneled (WebSocket).",
        LOAD(g_stats.upgrades));
}

static void capture(buf *out, const metrics_sources *src)
{
    one(out, "restspy_log_lines_total", "counter", "Access log lines written.",
        (unsigned long long)logsink_lines(src->log));
    one(out, "restspy_log_errors_total", "counter", "Access log lines that could not be written.",
        (unsigned long long)logsink_errors(src->log));
    one(out, "restspy_captured_total", "counter", "Records handed to the store.",
        LOAD(g_stats.captured));
    if (!src->store)
        return;
    store_stats s;
    store_get_stats(src->store, &s);
    one(out, "restspy_capture_queue_depth", "gauge", "Records waiting for the store's writer.",
        (unsigned long long)s.queued);
    one(out, "restspy_capture_queue_bytes", "gauge",
        "What the records waiting for the store's writer hold (store_queue_bytes bounds it).",
        (unsigned long long)s.queued_bytes);
    one(out, "restspy_capture_dropped_total", "counter",
        "Records the store refused (store_on_full=drop, or SQLite refused them); should stay 0.",
        (unsigned long long)s.dropped);
    one(out, "restspy_capture_blocked_total", "counter",
        "Captures that waited for room in the store's queue (store_on_full=block).",
        (unsigned long long)s.blocked);
    one(out, "restspy_store_rows_written_total", "counter", "Records committed to the store.",
        (unsigned long long)s.written);
    one(out, "restspy_store_batches_total", "counter", "Store transactions committed.",
        (unsigned long long)s.batches);
    one(out, "restspy_store_errors_total", "counter", "Store commits that failed (retried).",
        (unsigned long long)s.errors);
    one(out, "restspy_store_pruned_total", "counter", "Rows deleted by retention.",
        (unsigned long long)s.pruned);
    one(out, "restspy_store_connected", "gauge",
        "1 while the store's writer has its database (0: a PostgreSQL server lost, captures "
        "queue).",
        s.disconnected ? 0ULL : 1ULL);
    one(out, "restspy_store_reconnects_total", "counter",
        "Times the store's writer got its lost database server back.",
        (unsigned long long)s.reconnects);
    snapshot(out, "restspy_store_commit_seconds",
             "The store writer's transactions, from BEGIN to the end of COMMIT.", &s.commit_time);
    snapshot(out, "restspy_store_latency_seconds",
             "From a record's submission to its commit (the writer's queue included).", &s.latency);
}

static void replication(buf *out, const metrics_sources *src)
{
    if (!src->ob)
        return;
    outbox_stats os;
    outbox_get_stats(src->ob, &os);
    one(out, "restspy_replication_connected", "gauge",
        "1 when the publisher is connected to the broker.", os.connected ? 1 : 0);
    one(out, "restspy_replication_published_total", "counter",
        "Publishes sent to the broker (republishes included).", (unsigned long long)os.published);
    one(out, "restspy_replication_confirmed_total", "counter", "Outbox rows the broker confirmed.",
        (unsigned long long)os.confirmed);
    one(out, "restspy_replication_nacks_total", "counter", "Publishes the broker refused.",
        (unsigned long long)os.nacks);
    one(out, "restspy_replication_returned_total", "counter",
        "Publishes the broker returned as unroutable (kept in the outbox).",
        (unsigned long long)os.returned);
    one(out, "restspy_replication_reconnects_total", "counter",
        "Connections to the broker made again.", (unsigned long long)os.reconnects);
    store_repl_stats rs;
    char err[256];
    if (store_repl_stats_get(src->store, &rs, err, sizeof err) != 0)
        return; /* a busy store: the backlog is left out of this scrape */
    one(out, "restspy_outbox_backlog", "gauge", "Outbox rows not yet confirmed by the broker.",
        (unsigned long long)rs.outbox_depth);
    onef(out, "restspy_outbox_oldest_unpublished_age_seconds", "gauge",
         "Age of the oldest unconfirmed outbox row (0 when none).",
         rs.oldest_unpublished_us ? (double)(util_now_us() - rs.oldest_unpublished_us) / 1e6 : 0);
    one(out, "restspy_replication_not_replicated_total", "counter",
        "Replicable writes not replicated (a body over replicate_max_body, ...).",
        (unsigned long long)rs.not_replicated);
}

/* ---- the replicator's applies, by origin node ----
 *
 * The replicator (another process) writes each apply into the store's
 * ledger; the proxy sharing the store reads the ledger incrementally: at
 * the first scrape the counts per origin and the ledger's end, then at each
 * scrape the applies after the last one read (METRICS_LEDGER_ROWS at most,
 * the rest at the next scrape), each added to its origin's histogram. The
 * histograms count the applies since the proxy started; the counters count
 * the whole ledger. Only the admin's loop scrapes, so this state has one
 * thread and no lock. */

static struct {
    store *store; /* whose ledger is read; NULL before the first scrape */
    int64_t pos;  /* the last ledger position read */
    size_t n;
    struct {
        char name[METRICS_ORIGIN_LEN + 1];
        uint64_t applied;
        hist lag;
    } o[METRICS_ORIGINS_MAX + 1]; /* the last: METRICS_ORIGIN_OTHER */
} g_applies;

/* The slot of origin: its own while there is room and it is a node name
 * (letters, digits, '-' and '_': a label value as is), else the shared one
 * labelled METRICS_ORIGIN_OTHER. */
static size_t origin_slot(const char *origin)
{
    size_t len = strlen(origin);
    bool named = len && len <= METRICS_ORIGIN_LEN &&
                 origin[strspn(origin, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                       "0123456789-_")] == '\0';
    for (size_t i = 0; named && i < g_applies.n; i++)
        if (strcmp(g_applies.o[i].name, origin) == 0)
            return i;
    if (!named || g_applies.n == METRICS_ORIGINS_MAX)
        return METRICS_ORIGINS_MAX;
    memcpy(g_applies.o[g_applies.n].name, origin, len + 1);
    return g_applies.n++;
}

static int apply_read(const store_ledger_row *row, void *ud)
{
    (void)ud;
    size_t k = origin_slot(row->origin);
    g_applies.o[k].applied++;
    if (row->lag_us >= 0)
        hist_observe_us(&g_applies.o[k].lag, row->lag_us);
    g_applies.pos = row->pos;
    return 0;
}

/* Brings the figures up to the ledger of s. A store that cannot be read
 * now leaves them as they are (read at the next scrape). */
static void applies_update(store *s)
{
    char err[256];
    if (g_applies.store != s) {
        store_repl_origin *v;
        size_t n;
        int64_t total, end;
        if (store_repl_origins_get(s, 0, 0, METRICS_ORIGINS_MAX, &v, &n, &total, &end, err,
                                   sizeof err) != 0)
            return;
        memset(&g_applies, 0, sizeof g_applies);
        g_applies.store = s;
        g_applies.pos = end;
        for (size_t i = 0; i < n; i++)
            g_applies.o[origin_slot(v[i].origin)].applied += (uint64_t)v[i].applied;
        store_repl_origins_free(v, n);
        return;
    }
    store_ledger_each(s, g_applies.pos, METRICS_LEDGER_ROWS, apply_read, NULL, err, sizeof err);
}

static void applies(buf *out, store *s)
{
    applies_update(s);
    if (g_applies.store != s)
        return;
    size_t slots[METRICS_ORIGINS_MAX + 1], n = 0;
    for (size_t i = 0; i < g_applies.n; i++)
        slots[n++] = i;
    if (g_applies.o[METRICS_ORIGINS_MAX].applied)
        slots[n++] = METRICS_ORIGINS_MAX;
    head(out, "restspy_replication_applied_total", "counter",
         "Writes the replicator applied from each origin node (the store's ledger).");
    for (size_t i = 0; i < n; i++) {
        size_t k = slots[i];
        buf_appendf(out, "restspy_replication_applied_total{origin=\"%s\"} %llu\n",
                    k == METRICS_ORIGINS_MAX ? METRICS_ORIGIN_OTHER : g_applies.o[k].name,
                    (unsigned long long)g_applies.o[k].applied);
    }
    static const char lag[] = "restspy_replication_apply_lag_seconds";
    head(out, lag, "histogram",
         "From a write at its origin node to its apply here, for the applies since the "
         "proxy started.");
    for (size_t i = 0; i < n; i++) {
        size_t k = slots[i];
        const char *name = k == METRICS_ORIGINS_MAX ? METRICS_ORIGIN_OTHER : g_applies.o[k].name;
        hist_snapshot hs;
        hist_read(&g_applies.o[k].lag, &hs);
        for (size_t b = 0; b < HIST_BUCKETS; b++)
            buf_appendf(out, "%s_bucket{origin=\"%s\",le=\"%g\"} %llu\n", lag, name, hist_le[b],
                        (unsigned long long)hs.cum[b]);
        buf_appendf(out,
                    "%s_bucket{origin=\"%s\",le=\"+Inf\"} %llu\n%s_sum{origin=\"%s\"} %.6f\n"
                    "%s_count{origin=\"%s\"} %llu\n",
                    lag, name, (unsigned long long)hs.count, lag, name, hs.sum_s, lag, name,
                    (unsigned long long)hs.count);
    }
}

/* ---- process_*, as Prometheus' own clients export them ---- */

static long long boot_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    char line[256];
    long long bt = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "btime %lld", &bt) == 1)
            break;
    if (f)
        fclose(f);
    return bt;
}

static unsigned long long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    unsigned long long n = 0;
    if (!d)
        return 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n > 3 ? n - 3 : 0; /* ".", ".." and the directory's own descriptor */
}

static void process(buf *out)
{
    FILE *f = fopen("/proc/self/stat", "r");
    char st[1024] = "";
    if (f) {
        if (!fgets(st, sizeof st, f))
            st[0] = '\0';
        fclose(f);
    }
    /* The fields after the command's closing parenthesis (which may hold
     * spaces), from the state (field 3) on. */
    const char *p = strrchr(st, ')');
    unsigned long long ut = 0, stime = 0, start = 0, vsize = 0;
    long long rss = 0;
    if (p && sscanf(p + 2,
                    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d "
                    "%*d %llu %llu %lld",
                    &ut, &stime, &start, &vsize, &rss) != 5)
        ut = stime = start = vsize = 0, rss = 0;
    double hz = (double)sysconf(_SC_CLK_TCK);
    onef(out, "process_cpu_seconds_total", "counter",
         "Total user and system CPU time spent in seconds.", (double)(ut + stime) / hz);
    one(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
        (unsigned long long)(rss * sysconf(_SC_PAGESIZE)));
    one(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", vsize);
    onef(out, "process_start_time_seconds", "gauge",
         "Start time of the process since unix epoch in seconds.",
         (double)boot_time() + (double)start / hz);
    one(out, "process_open_fds", "gauge", "Number of open file descriptors.", open_fds());
    struct rlimit rl;
    one(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
        getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (unsigned long long)rl.rlim_cur : 0);
}

/* A label value in the text format: backslash, double quote and newline
 * escaped (a rule's name is whatever the config file says). */
static void label_value(buf *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            buf_append_char(out, '\\');
        if (*s == '\n')
            buf_append_str(out, "\\n");
        else
            buf_append_char(out, *s);
    }
}

/* Each rule's run-time switches (the per-rule flags of PUT /flags): a
 * request is captured when the global switch and its rule's are on. */
static void rule_flags(buf *out, const config *cfg)
{
    static const struct {
        const char *name;
        unsigned bit;
    } sw[] = {{"log", RULE_SW_LOG}, {"persist", RULE_SW_PERSIST}, {"replicate", RULE_SW_REPLICATE}};
    head(out, "restspy_rule_flag", "gauge",
         "Each rule's run-time switches (1 on, 0 off), as PUT /flags sets them; the default "
         "rule included.");
    for (size_t i = 0; i < cfg->rules_len; i++) {
        unsigned on = rules_switches(&cfg->rules[i]);
        for (size_t k = 0; k < sizeof sw / sizeof sw[0]; k++) {
            buf_append_str(out, "restspy_rule_flag{rule=\"");
            label_value(out, cfg->rules[i].name);
            buf_appendf(out, "\",name=\"%s\"} %d\n", sw[k].name, on & sw[k].bit ? 1 : 0);
        }
    }
}

/* What the replicator (sharing the store) did besides applying: its
 * counters in the store. A busy store leaves them out of this scrape. */
static void replicator_counters(buf *out, store *s)
{
    store_repl_stats rs;
    char err[256];
    if (store_repl_stats_get(s, &rs, err, sizeof err) != 0)
        return;
    one(out, "restspy_replication_dead_lettered_total", "counter",
        "Writes the replicator dead-lettered (refused by the app, forged, or out of retries).",
        (unsigned long long)rs.dead_lettered);
    one(out, "restspy_replication_deduplicated_total", "counter",
        "Messages the replicator found in its ledger already (redeliveries), acked unapplied.",
        (unsigned long long)rs.deduplicated);
    one(out, "restspy_replication_diverged_total", "counter",
        "Writes applied here whose answer differed from the origin's (status, or body under "
        "replicate_noise): restspy replication diverged lists them.",
        (unsigned long long)rs.diverged);
    one(out, "restspy_replication_skipped_total", "counter",
        "Writes an operator skipped (replication dead --skip, the console's Discard).",
        (unsigned long long)rs.skipped);
}

void metrics_render(buf *out, const metrics_sources *src)
{
    head(out, "restspy_info", "gauge", "Constant 1, labelled with the version and node.");
    buf_appendf(out, "restspy_info{version=\"%s\",node=\"%s\"} 1\n", RESTSPY_VERSION, src->node);
    one(out, "restspy_workers", "gauge", "Event-loop threads of the proxy.",
        (unsigned long long)src->workers);
    head(out, "restspy_flag", "gauge", "Runtime switches (1 on, 0 off), as PUT /flags sets them.");
    buf_appendf(out,
                "restspy_flag{name=\"log\"} %d\nrestspy_flag{name=\"persist\"} %d\n"
                "restspy_flag{name=\"replicate\"} %d\n",
                atomic_load(&g_flags.log) ? 1 : 0, atomic_load(&g_flags.persist) ? 1 : 0,
                atomic_load(&g_flags.replicate) ? 1 : 0);
    rule_flags(out, src->cfg);
    requests(out);
    connections(out);
    capture(out, src);
    replication(out, src);
    if (src->store) {
        applies(out, src->store);
        replicator_counters(out, src->store);
    }
    process(out);
}
