/* config_keys: the settings table and one setter per type (see
 * config_internal.h). Defaults are applied through the same setters as files,
 * the environment and flags, so the documented default is the real one. */
#include "capture/config_internal.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/url.h"
#include "base/util.h"
#include "http/httpmsg.h"
#include "capture/rules.h"

#define CFG(field) false, offsetof(config, field)
#define RUL(field) true, offsetof(rule, field)
#define NOLIMIT 0, UINT64_MAX

static const char *const log_formats[] = {"json", "combined", NULL};
static const char *const full_policies[] = {"block", "drop", NULL};
static const char *const durabilities[] = {"sync", "async", NULL};
static const char *const repl_ons[] = {"2xx", "any", NULL};
static const char *const repl_refuseds[] = {"diverged", "dead-letter", NULL};
static const char *const queue_types[] = {"classic", "quorum", NULL};
static const char *const apply_orders[] = {"resource", "strict", "origin", NULL};

/* Built-in values of a rule; the same literals back the default rule's
 * top-level keys, so both tables agree by construction. */
#define RULE_DEF_LOG "on"
#define RULE_DEF_PERSIST "on"
#define RULE_DEF_REPLICATE "on"
#define RULE_DEF_REPLICATE_METHODS "POST, PUT, PATCH, DELETE"
#define RULE_DEF_CAP "64K"
#define CAP_MAX (1024ULL * 1024 * 1024)

static const keydef keys[] = {
    {"listen", K_LISTEN, CFG(listen), NOLIMIT, NULL, "127.0.0.1:8080", NULL,
     "address the proxy listens on: host:port, :port (all interfaces) or port (loopback)"},
    {"upstream", K_UPSTREAM, CFG(upstream), NOLIMIT, NULL, NULL, "(none; proxy requires it)",
     "backend requests are forwarded to: http://host:port or https://host:port"},
    {"socket", K_SOCKET, CFG(socket), NOLIMIT, NULL, NULL, "(none; collect requires it)",
     "Unix socket `restspy collect` listens on (mode 0660; docs/collect-protocol.md)"},
    {"collect_max_frame", K_SIZE, CFG(collect_max_frame), 64, UINT32_MAX, NULL, "16M", NULL,
     "largest frame body `restspy collect` accepts; a longer one closes its connection"},
    {"collect_timeout", K_DUR, CFG(collect_timeout_ms), 1, UINT64_MAX, NULL, "10s", NULL,
     "how long `restspy collect` waits for the rest of a frame it has begun to read"},
    {"tls_cert", K_FILES, CFG(tls_cert), NOLIMIT, NULL, NULL, "(none: plain HTTP)",
     "PEM certificate chain the proxy listener serves over TLS; repeat for more names "
     "(chosen by SNI, the first is the default)"},
    {"tls_key", K_FILES, CFG(tls_key), NOLIMIT, NULL, NULL, "(in the tls_cert file)",
     "PEM private key of the tls_cert in the same position; repeat as tls_cert"},
    {"admin_tls_cert", K_FILE, CFG(admin_tls_cert), NOLIMIT, NULL, NULL, "(none: plain HTTP)",
     "PEM certificate chain the admin listener serves over TLS"},
    {"admin_tls_key", K_FILE, CFG(admin_tls_key), NOLIMIT, NULL, NULL, "(in admin_tls_cert)",
     "PEM private key of admin_tls_cert"},
    {"tls_handshake_timeout", K_DUR, CFG(tls_handshake_timeout_ms), 1, UINT64_MAX, NULL, "10s",
     NULL, "time a client has to finish its TLS handshake"},
    {"upstream_ca", K_FILE, CFG(upstream_ca), NOLIMIT, NULL, NULL, "(system store only)",
     "PEM CA certificates trusted for an https upstream, besides the system store"},
    {"upstream_insecure", K_BOOL, CFG(upstream_insecure), NOLIMIT, NULL, "off", NULL,
     "do not verify an https upstream's certificate (logged once at start)"},
    {"upstream_sni", K_HOST, CFG(upstream_sni), NOLIMIT, NULL, NULL, "(the upstream's host)",
     "name sent as SNI to an https upstream and checked in its certificate"},
    {"upstream_cert", K_FILE, CFG(upstream_cert), NOLIMIT, NULL, NULL, "(none)",
     "PEM client certificate presented to an https upstream (mutual TLS)"},
    {"upstream_key", K_FILE, CFG(upstream_key), NOLIMIT, NULL, NULL, "(in upstream_cert)",
     "PEM private key of upstream_cert"},
    {"config", K_CONFIG, CFG(config_path), NOLIMIT, NULL, NULL, "(none)",
     "INI file to load (flag or RESTSPY_CONFIG; not valid inside a file)"},
    {"store", K_STORE, CFG(store), NOLIMIT, NULL, "sqlite:restspy.db", NULL,
     "where records are persisted: sqlite:PATH, postgresql://[user@]host[:port]/db or off"},
    {"log", K_LOG, CFG(log), NOLIMIT, NULL, "-", NULL,
     "access log destination: - (stdout), a file path, or off"},
    {"log_format", K_CHOICE, CFG(log_format), NOLIMIT, log_formats, "json", NULL,
     "access log line format: json or combined"},
    {"log_headers", K_BOOL, CFG(log_headers), NOLIMIT, NULL, "on", NULL,
     "include request and response headers in JSON log lines"},
    {"log_bodies", K_BOOL, CFG(log_bodies), NOLIMIT, NULL, "off", NULL,
     "include captured bodies in JSON log lines"},
    {"admin", K_ADMIN, CFG(admin), NOLIMIT, NULL, "127.0.0.1:8081", NULL,
     "admin API listener: host:port, :port, port (as listen), or off"},
    {"admin_token", K_TOKEN, CFG(admin_token), NOLIMIT, NULL, NULL, "(none)",
     "bearer token the admin listener requires (needed off loopback)"},
    {"admin_hosts", K_HOSTS, CFG(admin_hosts), NOLIMIT, NULL, NULL, "(none)",
     "without admin_token, Host names the admin API answers besides its own address "
     "(comma-separated host or host:port)"},
    {"workers", K_INT, CFG(workers), 0, 256, NULL, "0", NULL,
     "event-loop threads; 0 = one per CPU core"},
    {"node", K_NODE, CFG(node), NOLIMIT, NULL, NULL, "(host name)",
     "node name stored in every record"},
    {"max_header_size", K_SIZE, CFG(max_header_size), 1, UINT64_MAX, NULL, "16K", NULL,
     "largest request header section; beyond it the answer is 431"},
    {"max_request_line", K_SIZE, CFG(max_request_line), 1, UINT64_MAX, NULL, "8K", NULL,
     "longest request target; beyond it the answer is 414"},
    {"max_body_size", K_SIZE, CFG(max_body_size), NOLIMIT, NULL, "0", NULL,
     "largest request body accepted (0 = unlimited); beyond it 413"},
    {"header_timeout", K_DUR, CFG(header_timeout_ms), 1, UINT64_MAX, NULL, "10s", NULL,
     "time from a request's first byte to the end of its headers (408)"},
    {"client_timeout", K_DUR, CFG(client_timeout_ms), 1, UINT64_MAX, NULL, "30s", NULL,
     "longest pause between reads of a request body"},
    {"idle_timeout", K_DUR, CFG(idle_timeout_ms), 1, UINT64_MAX, NULL, "60s", NULL,
     "how long an idle keep-alive client connection is kept"},
    {"upstream_connect_timeout", K_DUR, CFG(upstream_connect_timeout_ms), 1, UINT64_MAX, NULL, "5s",
     NULL, "time allowed to connect to the upstream (504)"},
    {"upstream_timeout", K_DUR, CFG(upstream_timeout_ms), 1, UINT64_MAX, NULL, "60s", NULL,
     "longest wait for or between upstream response reads (504)"},
    {"grace_period", K_DUR, CFG(grace_period_ms), NOLIMIT, NULL, "10s", NULL,
     "on SIGTERM, how long in-flight requests may finish"},
    {"max_connections", K_COUNT, CFG(max_connections), 1, UINT64_MAX, NULL, "10000", NULL,
     "client connections per worker; further ones are refused"},
    {"upstream_keepalive", K_COUNT, CFG(upstream_keepalive), NOLIMIT, NULL, "64", NULL,
     "idle upstream connections kept per worker"},
    {"max_upstream_header_size", K_SIZE, CFG(max_upstream_header_size), 1, UINT64_MAX, NULL, "64K",
     NULL,
     "largest upstream response head (status line and headers); beyond it the answer is 502 "
     "\"upstream sent too big header\""},
    {"upstream_header_timeout", K_DUR, CFG(upstream_header_timeout_ms), 1, UINT64_MAX, NULL, "60s",
     NULL,
     "time from a complete request to the upstream's final response head, however it trickles in "
     "(504)"},
    {"max_interim_responses", K_COUNT, CFG(max_interim_responses), NOLIMIT, NULL, "16", NULL,
     "1xx answers (102 Processing, 103 Early Hints) relayed per request; one more is a 502"},
    {"store_queue", K_COUNT, CFG(store_queue), 1, UINT64_MAX, NULL, "65536", NULL,
     "records that may wait for the store writer"},
    {"store_queue_bytes", K_SIZE, CFG(store_queue_bytes), NOLIMIT, NULL, "64M", NULL,
     "memory the records waiting for the store writer may hold (the records, their bodies, "
     "headers and outbox messages), 0 = no limit; past it store_on_full applies, as for "
     "store_queue"},
    {"store_batch", K_COUNT, CFG(store_batch), 1, UINT64_MAX, NULL, "512", NULL,
     "most records written per transaction"},
    {"store_on_full", K_CHOICE, CFG(store_on_full), NOLIMIT, full_policies, "block", NULL,
     "when the store queue is full: block or drop"},
    {"max_rows", K_COUNT, CFG(max_rows), NOLIMIT, NULL, "0", NULL,
     "retention: most records kept (0 = unlimited)"},
    {"max_age", K_DUR, CFG(max_age_ms), NOLIMIT, NULL, "0", NULL,
     "retention: oldest record kept, e.g. 7d (0 = unlimited)"},
    {"busy_timeout", K_DUR, CFG(busy_timeout_ms), NOLIMIT, NULL, "5s", NULL,
     "how long SQLite waits for a lock held by another process (also at start, while another "
     "process creates the same store)"},
    {"store_init", K_BOOL, CFG(store_init), NOLIMIT, NULL, "off", NULL,
     "add restspy's tables to an SQLite file that already holds other tables"},
    {"store_commit_delay", K_DUR, CFG(store_commit_delay_ms), 0, 1000, NULL, "1ms", NULL,
     "group commit: how long the store writer waits to fill a batch (0 = never)"},
    {"store_claim_lease", K_DUR, CFG(store_claim_lease_ms), 1000, UINT64_MAX, NULL, "30s", NULL,
     "PostgreSQL store shared by several instances: how long an outbox row being published or a "
     "message being applied stays claimed by an instance that stops renewing it (it crashed or "
     "lost the database) before another instance takes it over"},
    {"store_checkpoint_pages", K_COUNT, CFG(store_checkpoint_pages), 0, 1000000000, NULL, "10000",
     NULL,
     "WAL pages a background thread copies into the SQLite file at once (0 = SQLite's own "
     "checkpoint in the commit that passes 1000 pages)"},
    {"redact", K_BOOL, CFG(redact), NOLIMIT, NULL, "on", NULL,
     "hide secret headers and fields in captured records"},
    {"redact_headers", K_LIST, CFG(redact_headers), NOLIMIT, NULL,
     "authorization,proxy-authorization,cookie,set-cookie,x-api-key", NULL,
     "comma-separated header names whose values are redacted"},
    {"redact_fields", K_LIST, CFG(redact_fields), NOLIMIT, NULL,
     "password,passwd,secret,token,access_token,refresh_token,api_key,apikey,signature", NULL,
     "comma-separated JSON/form/query field names whose values are redacted"},
    {"amqp", K_AMQP, CFG(amqp), NOLIMIT, NULL, NULL, "(none: replication off)",
     "RabbitMQ URL amqp://user:pass@host:port/vhost for replication"},
    {"replicate_secret", K_TOKEN, CFG(replicate_secret), NOLIMIT, NULL, NULL, "(none: unsigned)",
     "shared HMAC-SHA256 key signing replicated messages (flag also --secret)"},
    {"replicate_durability", K_CHOICE, CFG(replicate_durability), NOLIMIT, durabilities, "sync",
     NULL, "sync: answer the client once the outbox row is on disk; async: at once"},
    {"replicate_on", K_CHOICE, CFG(replicate_on), NOLIMIT, repl_ons, "2xx", NULL,
     "replicate requests the upstream answered with 2xx, or any status"},
    {"replicate_max_body", K_SIZE, CFG(replicate_max_body), 0, CAP_MAX, NULL, "16M", NULL,
     "larger request bodies are not replicated (recorded and counted)"},
    {"replicate_origin_body_max", K_SIZE, CFG(replicate_origin_body_max), 0, CAP_MAX, NULL, "16K",
     NULL,
     "a replicated write carries its answer's body as stored (decoded, redacted) up to this "
     "size, so a peer can compare its own answer under noise rules; larger ones go as a digest "
     "only, 0 = never"},
    {"replicate_refused", K_CHOICE, CFG(replicate_refused), NOLIMIT, repl_refuseds, "diverged",
     NULL,
     "replicator: a peer's write the app here refuses (4xx) though the origin's accepted it: "
     "diverged records it in the ledger as diverged and acks it (restspy replication "
     "diverged); dead-letter sends it to the dead letters, to retry once the cause is fixed"},
    {"replicate_noise", K_FILE, CFG(replicate_noise), NOLIMIT, NULL, NULL, "(none)",
     "replicator: noise rules file (replay's format) under which its answer is compared with "
     "the origin's: differences it covers are not divergence"},
    {"replicate_ledger_max_age", K_DUR, CFG(replicate_ledger_max_age_ms), NOLIMIT, NULL, "30d",
     NULL,
     "how long a site remembers the peers' writes it applied or skipped, and the apply receipts "
     "of its own (older ones are deleted: a copy of such a write arriving later would be applied "
     "again), 0 = for ever"},
    {"replicate_drop_headers", K_LIST, CFG(replicate_drop_headers), NOLIMIT, NULL,
     "authorization,proxy-authorization,cookie,x-api-key,x-forwarded-for,x-forwarded-proto,"
     "x-real-ip",
     NULL,
     "comma-separated request headers not replicated (end-user credentials stay at their "
     "site: a peer's replicator authenticates with its own set_header)"},
    {"queue_type", K_CHOICE, CFG(queue_type), NOLIMIT, queue_types, "classic", NULL,
     "type of the replicator's queue restspy.apply.<node>: classic or quorum"},
    {"amqp_heartbeat", K_DUR, CFG(amqp_heartbeat_ms), 1000, 3600000, NULL, "30s", NULL,
     "AMQP heartbeat interval negotiated with the broker"},
    {"amqp_log_interval", K_DUR, CFG(amqp_log_interval_ms), 100, UINT64_MAX, NULL, "60s", NULL,
     "proxy: while the broker is unreachable, how often stderr says so again (and the "
     "least time between two outage lines)"},
    {"mgmt", K_MGMT, CFG(mgmt), NOLIMIT, NULL, NULL, "(none)",
     "management API of this site's broker, http://user:pass@host:15672: what it holds for "
     "each peer (replication status; the CLI's --mgmt overrides)"},
    {"healthz_degraded_status", K_INT, CFG(healthz_degraded_status), 200, 599, NULL, "200", NULL,
     "HTTP status of /healthz while degraded (e.g. broker unreachable); 503 takes the node "
     "out of a load balancer"},
    {"concurrency", K_INT, CFG(concurrency), 1, 64, NULL, "1", NULL,
     "replicator: requests applied at once (order kept as apply_order says)"},
    {"apply_order", K_CHOICE, CFG(apply_order), NOLIMIT, apply_orders, "resource", NULL,
     "replicator: what a write waits for: resource (earlier writes to its path and the paths "
     "above and below it, but POSTs to one path run side by side and a POST waits for no "
     "write below it but a DELETE), strict (all of those) or origin (every earlier write from "
     "its site)"},
    {"prefetch", K_INT, CFG(prefetch), 1, 65535, NULL, "64", NULL,
     "replicator: messages taken from the broker ahead of their apply (each may hold a body "
     "up to replicate_max_body)"},
    {"retry_min", K_DUR, CFG(retry_min_ms), 1, UINT64_MAX, NULL, "200ms", NULL,
     "replicator: first wait before re-applying after a 5xx or unreachable upstream"},
    {"retry_max", K_DUR, CFG(retry_max_ms), 1, UINT64_MAX, NULL, "30s", NULL,
     "replicator: longest wait between re-applies (the wait doubles up to it)"},
    {"stuck_after", K_DUR, CFG(stuck_after_ms), NOLIMIT, NULL, "30s", NULL,
     "replicator: a write failing this long while the upstream applies others is stuck: from "
     "then on it holds back only the later writes to its own resource"},
    {"retry_max_age", K_DUR, CFG(retry_max_age_ms), NOLIMIT, NULL, "1h", NULL,
     "replicator: a write still failing this long after its first failed answer is "
     "dead-lettered (0 = no limit)"},
    {"retry_max_attempts", K_COUNT, CFG(retry_max_attempts), NOLIMIT, NULL, "0", NULL,
     "replicator: a write whose apply failed this many times is dead-lettered (0 = no limit: "
     "retry_max_age decides)"},
    {"set_header", K_HEADERS, CFG(set_headers), NOLIMIT, NULL, NULL, "(none)",
     "replicator: 'Name: value' set on applied requests; repeat to add more"},
    {"log_requests", K_BOOL, RUL(log), NOLIMIT, NULL, RULE_DEF_LOG, NULL,
     "default rule: write requests to the access log"},
    {"persist_requests", K_BOOL, RUL(persist), NOLIMIT, NULL, RULE_DEF_PERSIST, NULL,
     "default rule: persist requests in the store"},
    {"replicate_requests", K_BOOL, RUL(replicate), NOLIMIT, NULL, RULE_DEF_REPLICATE, NULL,
     "default rule: replicate requests to other nodes (needs amqp)"},
    {"replicate_methods", K_METHODS, RUL(replicate_methods), NOLIMIT, NULL,
     RULE_DEF_REPLICATE_METHODS, NULL, "default rule: methods that are replicated"},
    {"req_body_cap", K_SIZE, RUL(req_body_cap), 0, CAP_MAX, NULL, RULE_DEF_CAP, NULL,
     "default rule: bytes of each request body kept in the record"},
    {"resp_body_cap", K_SIZE, RUL(resp_body_cap), 0, CAP_MAX, NULL, RULE_DEF_CAP, NULL,
     "default rule: bytes of each response body kept in the record"},
};

/* Keys of a [rule "name"] section; a missing key keeps the built-in value. */
static const keydef rule_keys[] = {
    {"methods", K_METHODS, RUL(methods), NOLIMIT, NULL, "*", NULL,
     "comma-separated methods (GET, POST, ...) or *"},
    {"path", K_GLOB, RUL(path), NOLIMIT, NULL, NULL, "(any)",
     "path glob: * one segment, ** any depth"},
    {"host", K_HOST, RUL(host), NOLIMIT, NULL, NULL, "(any)", "Host header, port ignored"},
    {"log", K_BOOL, RUL(log), NOLIMIT, NULL, RULE_DEF_LOG, NULL, "write to the access log"},
    {"persist", K_BOOL, RUL(persist), NOLIMIT, NULL, RULE_DEF_PERSIST, NULL,
     "persist in the store"},
    {"replicate", K_BOOL, RUL(replicate), NOLIMIT, NULL, RULE_DEF_REPLICATE, NULL,
     "replicate to other nodes (needs amqp)"},
    {"replicate_methods", K_METHODS, RUL(replicate_methods), NOLIMIT, NULL,
     RULE_DEF_REPLICATE_METHODS, NULL, "methods of matching requests that are replicated"},
    {"req_body_cap", K_SIZE, RUL(req_body_cap), 0, CAP_MAX, NULL, RULE_DEF_CAP, NULL,
     "bytes of request body kept"},
    {"resp_body_cap", K_SIZE, RUL(resp_body_cap), 0, CAP_MAX, NULL, RULE_DEF_CAP, NULL,
     "bytes of response body kept"},
};

#define NKEYS (sizeof keys / sizeof keys[0])
#define NRULE_KEYS (sizeof rule_keys / sizeof rule_keys[0])

static bool name_eq(const char *s, size_t n, const char *key)
{
    size_t i = 0;
    for (; i < n && key[i]; i++) {
        char a = (char)tolower((unsigned char)s[i]);
        if (a == '-')
            a = '_';
        if (a != key[i])
            return false;
    }
    return i == n && key[i] == '\0';
}

static const keydef *find_in(const keydef *table, size_t len, const char *s, size_t n)
{
    for (size_t i = 0; i < len; i++)
        if (name_eq(s, n, table[i].name))
            return &table[i];
    return NULL;
}

/* ---- value parsers; each leaves the target untouched on error ---- */

static void fmt_size(char *out, size_t len, uint64_t v)
{
    static const char suffix[] = "GMK";
    for (int i = 0; i < 3; i++) {
        uint64_t unit = 1ULL << (10 * (3 - i));
        if (v >= unit && v % unit == 0) {
            snprintf(out, len, "%llu%c", (unsigned long long)(v / unit), suffix[i]);
            return;
        }
    }
    snprintf(out, len, "%llu", (unsigned long long)v);
}

/* "(expected ...)" text for a numeric key, ranges included when set. */
static void expected_text(const keydef *k, char *out, size_t len)
{
    char lo[32], hi[32];
    const char *what;
    switch (k->kind) {
    case K_SIZE:
        what = "a size like 512, 64K or 1M";
        fmt_size(lo, sizeof lo, k->min);
        fmt_size(hi, sizeof hi, k->max);
        break;
    case K_DUR:
        what = "a duration like 10, 10s, 500ms or 2m";
        snprintf(lo, sizeof lo, "%llums", (unsigned long long)k->min);
        snprintf(hi, sizeof hi, "%llums", (unsigned long long)k->max);
        break;
    default:
        what = "a whole number";
        snprintf(lo, sizeof lo, "%llu", (unsigned long long)k->min);
        snprintf(hi, sizeof hi, "%llu", (unsigned long long)k->max);
        break;
    }
    if (k->max != UINT64_MAX && (k->kind == K_COUNT || k->kind == K_INT))
        snprintf(out, len, "a whole number %s-%s", lo, hi);
    else if (k->max != UINT64_MAX)
        snprintf(out, len, "%s, at most %s", what, hi);
    else if (k->min > 0)
        snprintf(out, len, "%s, at least %s", what, lo);
    else
        snprintf(out, len, "%s", what);
}

static int parse_count(const char *s, uint64_t *out)
{
    if (!isdigit((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static void free_list(char **list)
{
    if (!list)
        return;
    for (char **p = list; *p; p++)
        free(*p);
    free(list);
}

/* "a, B ,,c" -> {"a", "b", "c", NULL}; "" -> {NULL}. Never fails. */
/* Appends a copy of v to the NULL-terminated list *list (NULL = empty). */
static void list_append(char ***list, const char *v)
{
    size_t n = 0;
    while (*list && (*list)[n])
        n++;
    *list = xrealloc(*list, (n + 2) * sizeof **list);
    (*list)[n] = xstrdup(v);
    (*list)[n + 1] = NULL;
}

static char **parse_list(const char *s)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    char **list = xcalloc(cap + 1, sizeof *list);
    size_t n = 0;
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        const char *item = s;
        util_trim(&item, &len);
        if (len) {
            char *v = xstrndup(item, len);
            for (char *q = v; *q; q++)
                *q = (char)tolower((unsigned char)*q);
            list[n++] = v;
        }
        s = comma ? comma + 1 : s + strlen(s);
    }
    return list;
}

static int parse_methods(const char *s, unsigned *out)
{
    unsigned bits = 0;
    bool any_item = false;
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        const char *item = s;
        util_trim(&item, &len);
        if (len == 1 && *item == '*') {
            bits |= RULE_METHOD_ANY;
        } else if (len) {
            char up[32];
            if (len >= sizeof up)
                return -1;
            for (size_t i = 0; i < len; i++) {
                if (!isalpha((unsigned char)item[i]))
                    return -1;
                up[i] = (char)toupper((unsigned char)item[i]);
            }
            bits |= rules_method_bit(up, len);
        }
        any_item |= len > 0;
        s = comma ? comma + 1 : s + strlen(s);
    }
    if (!any_item)
        return -1;
    *out = bits;
    return 0;
}

/* "http://host[:port][/]" -> "http://host:port" (port 80 when absent), so
 * that every reader can take host and port from it without re-validating.
 * NULL when s is not of that form (a path, a query or credentials). */
static char *normalize_upstream(const char *s)
{
    url_parts u;
    if (url_parse(s, strlen(s), &u, NULL) != 0 || !(url_is(&u, "http") || url_is(&u, "https")) ||
        u.userinfo || u.query || (u.path_len > 1) || (u.path_len == 1 && u.path[0] != '/') ||
        u.path + u.path_len != s + strlen(s))
        return NULL;
    char hp[300];
    if (url_hostport(&u, hp, sizeof hp) != 0)
        return NULL;
    char out[320]; /* "https://" and hp */
    snprintf(out, sizeof out, "%s://%s", url_is(&u, "https") ? "https" : "http", hp);
    return xstrdup(out);
}

static bool valid_host_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || strpbrk(s, "/"))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
            return false; /* spaces and control bytes are in no host name */
    if (s[0] == '[')
        return n > 2 && s[n - 1] == ']';
    return strchr(s, ':') == NULL; /* a port would never match: requests' ports are ignored */
}

static void set_str(char **field, char *v)
{
    free(*field);
    *field = v;
}

/* "expected a, b or c" for a NULL-terminated list of choices. */
static void choices_text(const char *const *choices, char *out, size_t len)
{
    size_t n = 0;
    while (choices[n])
        n++;
    int w = snprintf(out, len, "expected");
    for (size_t i = 0; i < n && w >= 0 && (size_t)w < len; i++)
        w += snprintf(out + w, len - (size_t)w, "%s%s",
                      i == 0       ? " "
                      : i + 1 == n ? " or "
                                   : ", ",
                      choices[i]);
}

/* ---- setters: one per type. Each parses value into field, or fills
 * expect ("expected ...") and leaves the field untouched. ---- */

typedef int key_setter(const keydef *k, void *field, const char *value, char *expect, size_t elen);

static int set_addr(const keydef *k, void *field, const char *value, char *expect, size_t elen)
{
    if (k->kind == K_ADMIN && strcasecmp(value, "off") == 0) {
        set_str(field, xstrdup("off"));
        return 0;
    }
    /* Stored as host:port, so that every reader (the listeners, the
     * loopback check, the admin's Host check) sees one form. */
    char addr[300];
    if (util_listen_addr(value, addr, sizeof addr) != 0) {
        snprintf(expect, elen, "expected host:port, :port (all interfaces)%s",
                 k->kind == K_ADMIN ? ", port (loopback) or off"
                                    : " or port (loopback), e.g. 127.0.0.1:8080");
        return -1;
    }
    set_str(field, xstrdup(addr));
    return 0;
}

static int set_upstream(const keydef *k, void *field, const char *value, char *expect, size_t elen)
{
    (void)k;
    if (!*value) {
        set_str(field, NULL);
        return 0;
    }
    char *norm = normalize_upstream(value);
    if (!norm) {
        snprintf(expect, elen, "expected http://host:port or https://host:port");
        return -1;
    }
    set_str(field, norm);
    return 0;
}

static int set_text(const keydef *k, void *field, const char *value, char *expect, size_t elen)
{
    (void)k, (void)expect, (void)elen;
    set_str(field, *value ? xstrdup(value) : NULL);
    return 0;
}

static int set_store(const keydef *k, void *field, const char *value, char *expect, size_t elen)
{
    (void)k;
    if (strcasecmp(value, "off") == 0) {
        set_str(field, xstrdup("off"));
        return 0;
    }
    /* The store checks the rest when it opens (store_open). */
    bool pg = strncmp(value, "postgresql://", 13) == 0 || strncmp(value, "postgres://", 11) == 0;
    if (!pg && (strncmp(value, "sqlite:", 7) != 0 || value[7] == '\0')) {
        snprintf(expect, elen, "expected sqlite:PATH, postgresql://[user@]host[:port]/db or off");
        return -1;
    }
    set_str(field, xstrdup(value));
    return 0;
}

static int set_log(const keydef *k, void *field, const char *value, char *expect, size_t elen)
{
    (void)k;
    if (!*value) {
        snprintf(expect, elen, "expected -, a file path, or off");
        return -1;
    }
    set_str(field, xstrdup(strcasecmp(value, "off") == 0 ? "off" : value));
    return 0;
}

static int set_node(const keydef *k, void *field, const char *value, char *expect, size_t elen)
{
    (void)k;
    /* The name goes into routing keys and queue names. */
    if (!*value ||
        value[strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                            "0123456789-_")] != '\0' ||
        strlen(value) > 64) {
        snprintf(expect, elen, "expected a name of letters, digits, '-' and '_' (at most 64)");
        return -1;
    }
    set_str(field, xstrdup(value));
    return 0;
}

static int set_socket(const keydef *k, void *field, const char *value, char *expect, size_t elen)
{
    (void)k;
    /* sun_path holds 108 bytes with its NUL on Linux. */
    bool ok = strlen(value) < 108;
    for (const char *p = value; ok && *p; p++)
        ok = (unsigned char)*p >= 0x20 && *p != 0x7f;
    if (!ok) {
        snprintf(expect, elen, "expected a socket path (at most 107 bytes, no control characters)");
        return -1;
    }
    set_str(field, *value ? xstrdup(value) : NULL);
    return 0;
}

static int set_choice(const keydef *k, void *field, const char *value, char *expect, size_t elen)
{
    for (int i = 0; k->choices[i]; i++) {
        if (strcasecmp(value, k->choices[i]) == 0) {
            *(int *)field = i;
            return 0;
        }
    }
    choices_text(k->choices, expect, elen);
    return -1;
}

static int set_bool(const keydef *k, void *field, const char *value, char *expect, size_t elen)
{
    (void)k;
    bool b;
    if (util_parse_bool(value, &b) != 0) {
        snprintf(expect, elen, "expected on or off");
        return -1;
    }
    *(bool *)field = b;
    return 0;
}

/* Sizes, durations and counts: parsed by type, then checked against the
 * key's range, which the "expected" text states. */
static int set_number(const keydef *k, void *field, const char *value, char *expect, size_t elen)
{
    uint64_t u = 0;
    bool ok = k->kind == K_SIZE  ? util_parse_size(value, &u) == 0
              : k->kind == K_DUR ? util_parse_duration_ms(value, false, &u) == 0
                                 : parse_count(value, &u) == 0;
    if (ok && u >= k->min && u <= k->max) {
        if (k->kind == K_INT)
            *(int *)field = (int)u;
        else
            *(uint64_t *)field = u;
        return 0;
    }
    char e[128];
    expected_text(k, e, sizeof e);
    snprintf(expect, elen, "expected %s", e);
    return -1;
}

static int set_list(const keydef *k, void *field, const char *value, char *expect, size_t elen)
{
    (void)k, (void)expect, (void)elen;
    free_list(*(char ***)field);
    *(char ***)field = parse_list(value);
    return 0;
}

static int set_methods(const keydef *k, void *field, const char *value, char *expect, size_t elen)
{
    (void)k;
    unsigned bits;
    if (parse_methods(value, &bits) != 0) {
        snprintf(expect, elen, "expected methods like GET, POST or *");
        return -1;
    }
    *(unsigned *)field = bits;
    return 0;
}

static int set_glob(const keydef *k, void *field, const char *value, char *expect, size_t elen)
{
    (void)k;
    if ((value[0] != '/' && value[0] != '*') || strlen(value) > RULES_GLOB_MAX) {
        snprintf(expect, elen, "expected a path glob starting with /, at most %d bytes",
                 RULES_GLOB_MAX);
        return -1;
    }
    set_str(field, xstrdup(value));
    return 0;
}

/* value starts with scheme ("amqp://") and has something after it. */
static bool has_scheme(const char *value, const char *scheme)
{
    size_t n = strlen(scheme);
    return strncmp(value, scheme, n) == 0 && value[n] != '\0';
}

/* K_AMQP and K_MGMT: a URL of the key's scheme; "" unsets. What is after
 * the scheme is checked where the URL is used (a connection's error names
 * the part that is wrong). */
static int set_url(const keydef *k, void *field, const char *value, char *expect, size_t elen)
{
    if (!*value) {
        set_str(field, NULL);
        return 0;
    }
    bool amqp = k->kind == K_AMQP;
    if (amqp ? !has_scheme(value, "amqp://")
             : !has_scheme(value, "http://") && !has_scheme(value, "https://")) {
        snprintf(expect, elen, "expected %s",
                 amqp ? "amqp://user:pass@host:port/vhost" : "http[s]://user:pass@host:port");
        return -1;
    }
    set_str(field, xstrdup(value));
    return 0;
}

static int set_header(const keydef *k, void *field, const char *value, char *expect, size_t elen)
{
    (void)k;
    const char *n, *v;
    size_t nl, vl;
    if (httpmsg_header_line(value, &n, &nl, &v, &vl) != 0) {
        snprintf(expect, elen, "expected 'Name: value' (a token, no CR or LF)");
        return -1;
    }
    list_append(field, value);
    return 0;
}

/* A file is checked for readability when it is set, so that a typo fails
 * with the key's name; what is in it is checked where it is used (TLS). */
static bool readable(const char *path, char *expect, size_t elen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(expect, elen, "cannot read it: %s", strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

static int set_file(const keydef *k, void *field, const char *value, char *expect, size_t elen)
{
    (void)k;
    if (*value && !readable(value, expect, elen))
        return -1;
    set_str(field, *value ? xstrdup(value) : NULL);
    return 0;
}

static int set_files(const keydef *k, void *field, const char *value, char *expect, size_t elen)
{
    (void)k;
    char ***list = field;
    if (!*value) {
        free_list(*list);
        *list = NULL;
        return 0;
    }
    if (!readable(value, expect, elen))
        return -1;
    list_append(list, value);
    return 0;
}

static int set_hosts(const keydef *k, void *field, const char *value, char *expect, size_t elen)
{
    (void)k;
    char **list = parse_list(value);
    bool good = true;
    for (char **p = list; good && *p; p++) {
        char h[256];
        int port;
        good = util_split_host(*p, 0, h, sizeof h, &port) == 0 &&
               h[strspn(h, "abcdefghijklmnopqrstuvwxyz0123456789.-_:")] == '\0';
    }
    if (!good) {
        free_list(list);
        snprintf(expect, elen, "expected comma-separated host names, each with an optional :port");
        return -1;
    }
    free_list(*(char ***)field);
    *(char ***)field = list;
    return 0;
}

static int set_host(const keydef *k, void *field, const char *value, char *expect, size_t elen)
{
    (void)k;
    if (!valid_host_name(value)) {
        snprintf(expect, elen, "expected a host name without port");
        return -1;
    }
    set_str(field, xstrdup(value));
    return 0;
}

/* The setter of each type, and whether its field is an owned string
 * (freed by config_keys_free) or an owned NULL-terminated list. */
static const struct {
    key_setter *set;
    enum { OWNS_NONE, OWNS_STR, OWNS_LIST } owns;
} kinds[K_NKINDS] = {
    [K_LISTEN] = {set_addr, OWNS_STR},       [K_ADMIN] = {set_addr, OWNS_STR},
    [K_UPSTREAM] = {set_upstream, OWNS_STR}, [K_CONFIG] = {set_text, OWNS_STR},
    [K_STORE] = {set_store, OWNS_STR},       [K_LOG] = {set_log, OWNS_STR},
    [K_TOKEN] = {set_text, OWNS_STR},        [K_NODE] = {set_node, OWNS_STR},
    [K_CHOICE] = {set_choice, OWNS_NONE},    [K_BOOL] = {set_bool, OWNS_NONE},
    [K_SIZE] = {set_number, OWNS_NONE},      [K_DUR] = {set_number, OWNS_NONE},
    [K_COUNT] = {set_number, OWNS_NONE},     [K_INT] = {set_number, OWNS_NONE},
    [K_LIST] = {set_list, OWNS_LIST},        [K_METHODS] = {set_methods, OWNS_NONE},
    [K_GLOB] = {set_glob, OWNS_STR},         [K_HOST] = {set_host, OWNS_STR},
    [K_AMQP] = {set_url, OWNS_STR},          [K_HEADERS] = {set_header, OWNS_LIST},
    [K_HOSTS] = {set_hosts, OWNS_LIST},      [K_FILE] = {set_file, OWNS_STR},
    [K_FILES] = {set_files, OWNS_LIST},      [K_SOCKET] = {set_socket, OWNS_STR},
    [K_MGMT] = {set_url, OWNS_STR},
};

int config_key_apply(const keydef *k, void *base, const char *value, char *err, size_t errlen)
{
    assert(k->kind < K_NKINDS && kinds[k->kind].set);
    char expect[160] = "";
    if (kinds[k->kind].set(k, (char *)base + k->off, value, expect, sizeof expect) == 0)
        return 0;
    util_seterr(err, errlen, "bad value for %s: '%s' (%s)", k->name, value, expect);
    return -1;
}

const keydef *config_key_find(bool in_rule, const char *s, size_t n)
{
    return in_rule ? find_in(rule_keys, NRULE_KEYS, s, n) : find_in(keys, NKEYS, s, n);
}

const keydef *config_keys(size_t *n)
{
    *n = NKEYS;
    return keys;
}

const keydef *config_rule_keys(size_t *n)
{
    *n = NRULE_KEYS;
    return rule_keys;
}

/* ---- rules and whole configs ---- */

void config_rule_init(rule *r, const char *name)
{
    memset(r, 0, sizeof *r);
    r->name = xstrdup(name);
    for (size_t i = 0; i < NRULE_KEYS; i++) {
        if (rule_keys[i].def && config_key_apply(&rule_keys[i], r, rule_keys[i].def, NULL, 0) != 0)
            abort(); /* a built-in default that does not parse is a bug */
    }
}

void config_rule_free(rule *r)
{
    free(r->name);
    free(r->path);
    free(r->host);
}

void config_keys_defaults(config *c)
{
    assert(c->rules_len > 0); /* the default rule, last */
    for (size_t i = 0; i < NKEYS; i++) {
        const keydef *k = &keys[i];
        if (!k->def)
            continue;
        void *base = k->on_rule ? (void *)&c->rules[c->rules_len - 1] : (void *)c;
        if (config_key_apply(k, base, k->def, NULL, 0) != 0)
            abort(); /* a built-in default that does not parse is a bug */
    }
}

void config_keys_free(config *c)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const keydef *k = &keys[i];
        if (k->on_rule)
            continue; /* freed with the rules */
        void *field = (char *)c + k->off;
        if (kinds[k->kind].owns == OWNS_STR)
            set_str(field, NULL);
        else if (kinds[k->kind].owns == OWNS_LIST)
            free_list(*(char ***)field), *(char ***)field = NULL;
    }
    for (size_t i = 0; i < c->rules_len; i++)
        config_rule_free(&c->rules[i]);
    free(c->rules);
    c->rules = NULL;
    c->rules_len = 0;
}
