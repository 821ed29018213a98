#include "capture/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "capture/rules.h"
#include "base/util.h"

/* The public struct is embedded so the header can stay a plain struct
 * (readers use fields directly) while the reference count stays private. */
typedef struct config_box {
    config pub;
    atomic_int refs;
} config_box;

#define BOX(c) ((config_box *)(void *)((char *)(c)-offsetof(config_box, pub)))

/* ---- the key table: the one place a key's name, type, default and help live.
 * config_new applies every default through the same setter as the file, the
 * environment and the flags, so the documented default is the real one. */

typedef enum {
    K_LISTEN,   /* char*, host:port ("port", ":port" stored as host:port) */
    K_ADMIN,    /* char*, as K_LISTEN, or "off" */
    K_UPSTREAM, /* char*, normalized to http://host:port; "" unsets */
    K_CONFIG,   /* char*, a path; "" unsets */
    K_STORE,    /* char*, "off" or "sqlite:PATH" */
    K_LOG,      /* char*, "-", "off" or a path */
    K_TOKEN,    /* char*, any text; "" unsets */
    K_NODE,     /* char*, non-empty */
    K_CHOICE,   /* int, index into choices */
    K_BOOL,     /* bool */
    K_SIZE,     /* uint64_t bytes, K/M/G suffixes */
    K_DUR,      /* uint64_t ms, plain number = seconds */
    K_COUNT,    /* uint64_t whole number */
    K_INT,      /* int whole number */
    K_LIST,     /* char**, NULL-terminated */
    K_METHODS,  /* unsigned RULE_M_* bits */
    K_GLOB,     /* char*, path glob; NULL = any */
    K_HOST,     /* char*, host name; NULL = any */
    K_AMQP,     /* char*, amqp://...; "" unsets */
    K_HEADERS,  /* char**, "Name: value" items; each setting appends one */
    K_HOSTS,    /* char**, host or host:port names, lower case, NULL-terminated */
} key_kind;

typedef struct keydef {
    const char *name;
    key_kind kind;
    bool on_rule; /* off is into the (default) rule, not the config */
    size_t off;
    uint64_t min, max;
    const char *const *choices; /* K_CHOICE, NULL-terminated */
    const char *def;            /* applied by config_new; NULL = not a literal */
    const char *note;           /* shown as the default when def is NULL */
    const char *help;
} keydef;

#define CFG(field) false, offsetof(config, field)
#define RUL(field) true, offsetof(rule, field)
#define NOLIMIT 0, UINT64_MAX

static const char *const log_formats[] = {"json", "combined", NULL};
static const char *const full_policies[] = {"block", "drop", NULL};
static const char *const durabilities[] = {"sync", "async", NULL};
static const char *const repl_ons[] = {"2xx", "any", NULL};
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
     "backend requests are forwarded to: http://host:port"},
    {"config", K_CONFIG, CFG(config_path), NOLIMIT, NULL, NULL, "(none)",
     "INI file to load (flag or RESTSPY_CONFIG; not valid inside a file)"},
    {"store", K_STORE, CFG(store), NOLIMIT, NULL, "sqlite:restspy.db", NULL,
     "where records are persisted: sqlite:PATH or off"},
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
     NULL, "largest upstream response head; beyond it the answer is 502"},
    {"upstream_header_timeout", K_DUR, CFG(upstream_header_timeout_ms), 1, UINT64_MAX, NULL, "60s",
     NULL, "time from a complete request to the upstream's final response head (504)"},
    {"max_interim_responses", K_COUNT, CFG(max_interim_responses), NOLIMIT, NULL, "16", NULL,
     "1xx answers relayed per request; one more is a 502"},
    {"store_queue", K_COUNT, CFG(store_queue), 1, UINT64_MAX, NULL, "65536", NULL,
     "records that may wait for the store writer"},
    {"store_batch", K_COUNT, CFG(store_batch), 1, UINT64_MAX, NULL, "512", NULL,
     "most records written per transaction"},
    {"store_on_full", K_CHOICE, CFG(store_on_full), NOLIMIT, full_policies, "block", NULL,
     "when the store queue is full: block or drop"},
    {"max_rows", K_COUNT, CFG(max_rows), NOLIMIT, NULL, "0", NULL,
     "retention: most records kept (0 = unlimited)"},
    {"max_age", K_DUR, CFG(max_age_ms), NOLIMIT, NULL, "0", NULL,
     "retention: oldest record kept, e.g. 7d (0 = unlimited)"},
    {"busy_timeout", K_DUR, CFG(busy_timeout_ms), NOLIMIT, NULL, "5s", NULL,
     "how long SQLite waits for a lock held by another process"},
    {"store_init", K_BOOL, CFG(store_init), NOLIMIT, NULL, "off", NULL,
     "add restspy's tables to an SQLite file that already holds other tables"},
    {"store_commit_delay", K_DUR, CFG(store_commit_delay_ms), 0, 1000, NULL, "1ms", NULL,
     "group commit: how long the store writer waits to fill a batch (0 = never)"},
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

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Key names compare case-insensitively with '-' and '_' equal, so
 * "--log-format", "log_format" and RESTSPY_LOG_FORMAT all name one key. */
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

static const keydef *find_key(const keydef *table, size_t len, const char *s, size_t n)
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

static void trim(const char **s, size_t *n)
{
    while (*n && isspace((unsigned char)**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n && isspace((unsigned char)(*s)[*n - 1]))
        (*n)--;
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
        trim(&item, &len);
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
        trim(&item, &len);
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
 * the proxy can split it with util_split_hostport without re-validating.
 * NULL when s is not of that form. */
static char *normalize_upstream(const char *s)
{
    if (strncasecmp(s, "http://", 7) != 0)
        return NULL;
    const char *hp = s + 7;
    size_t n = strlen(hp);
    if (n && hp[n - 1] == '/')
        n--;
    if (n == 0 || memchr(hp, '/', n) || memchr(hp, '?', n) || memchr(hp, '@', n))
        return NULL;
    char buf[300];
    if (n + 4 >= sizeof buf - 7)
        return NULL;
    bool has_port;
    if (hp[0] == '[') {
        const char *rb = memchr(hp, ']', n);
        if (!rb)
            return NULL;
        has_port = (size_t)(rb - hp) + 1 < n;
    } else {
        has_port = memchr(hp, ':', n) != NULL;
    }
    snprintf(buf, sizeof buf, "http://%.*s%s", (int)n, hp, has_port ? "" : ":80");
    char host[256];
    int port;
    if (util_split_hostport(buf + 7, host, sizeof host, &port) != 0 || port == 0)
        return NULL;
    return xstrdup(buf);
}

static bool valid_host_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || strpbrk(s, " \t/"))
        return false;
    if (s[0] == '[')
        return n > 2 && s[n - 1] == ']';
    return strchr(s, ':') == NULL; /* a port would never match: requests' ports are ignored */
}

static void set_str(char **field, char *v)
{
    free(*field);
    *field = v;
}

/* Parses value for key k into base (a config or a rule). msg gets the
 * "bad value" line on error. */
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

static int apply_key(const keydef *k, void *base, const char *value, char *msg, size_t msglen)
{
    void *field = (char *)base + k->off;
    char expect[160];
    expect[0] = '\0';
    uint64_t u = 0;
    bool ok = true;

    switch (k->kind) {
    case K_LISTEN:
    case K_ADMIN: {
        if (k->kind == K_ADMIN && strcasecmp(value, "off") == 0) {
            set_str(field, xstrdup("off"));
            return 0;
        }
        /* Stored as host:port, so that every reader (the listeners, the
         * loopback check, the admin's Host check) sees one form. */
        char addr[300];
        if (util_listen_addr(value, addr, sizeof addr) != 0) {
            snprintf(expect, sizeof expect, "expected host:port, :port (all interfaces)%s",
                     k->kind == K_ADMIN ? ", port (loopback) or off"
                                        : " or port (loopback), e.g. 127.0.0.1:8080");
            break;
        }
        set_str(field, xstrdup(addr));
        return 0;
    }
    case K_UPSTREAM: {
        if (!*value) {
            set_str(field, NULL);
            return 0;
        }
        if (strncasecmp(value, "https://", 8) == 0) {
            snprintf(expect, sizeof expect,
                     "https upstreams are not supported; use http://host:port");
            break;
        }
        char *norm = normalize_upstream(value);
        if (!norm) {
            snprintf(expect, sizeof expect, "expected http://host:port");
            break;
        }
        set_str(field, norm);
        return 0;
    }
    case K_CONFIG:
    case K_TOKEN:
        set_str(field, *value ? xstrdup(value) : NULL);
        return 0;
    case K_STORE:
        if (strcasecmp(value, "off") == 0) {
            set_str(field, xstrdup("off"));
            return 0;
        }
        if (strncmp(value, "sqlite:", 7) != 0 || value[7] == '\0') {
            snprintf(expect, sizeof expect, "expected sqlite:PATH or off");
            break;
        }
        set_str(field, xstrdup(value));
        return 0;
    case K_LOG:
        if (!*value) {
            snprintf(expect, sizeof expect, "expected -, a file path, or off");
            break;
        }
        set_str(field, xstrdup(strcasecmp(value, "off") == 0 ? "off" : value));
        return 0;
    case K_NODE:
        /* The name goes into routing keys and queue names. */
        if (!*value ||
            value[strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "0123456789-_")] != '\0' ||
            strlen(value) > 64) {
            snprintf(expect, sizeof expect,
                     "expected a name of letters, digits, '-' and '_' (at most 64)");
            break;
        }
        set_str(field, xstrdup(value));
        return 0;
    case K_CHOICE:
        for (int i = 0; k->choices[i]; i++) {
            if (strcasecmp(value, k->choices[i]) == 0) {
                *(int *)field = i;
                return 0;
            }
        }
        choices_text(k->choices, expect, sizeof expect);
        break;
    case K_BOOL: {
        bool b;
        if (util_parse_bool(value, &b) != 0) {
            snprintf(expect, sizeof expect, "expected on or off");
            break;
        }
        *(bool *)field = b;
        return 0;
    }
    case K_SIZE:
        ok = util_parse_size(value, &u) == 0;
        break;
    case K_DUR:
        ok = util_parse_duration_ms(value, false, &u) == 0;
        break;
    case K_COUNT:
    case K_INT:
        ok = parse_count(value, &u) == 0;
        break;
    case K_LIST:
        free_list(*(char ***)field);
        *(char ***)field = parse_list(value);
        return 0;
    case K_METHODS: {
        unsigned bits;
        if (parse_methods(value, &bits) != 0) {
            snprintf(expect, sizeof expect, "expected methods like GET, POST or *");
            break;
        }
        *(unsigned *)field = bits;
        return 0;
    }
    case K_GLOB:
        if ((value[0] != '/' && value[0] != '*') || strlen(value) > RULES_GLOB_MAX) {
            snprintf(expect, sizeof expect,
                     "expected a path glob starting with /, at most %d bytes", RULES_GLOB_MAX);
            break;
        }
        set_str(field, xstrdup(value));
        return 0;
    case K_AMQP:
        if (!*value) {
            set_str(field, NULL);
            return 0;
        }
        if (strncmp(value, "amqp://", 7) != 0 || value[7] == '\0') {
            snprintf(expect, sizeof expect, "expected amqp://user:pass@host:port/vhost");
            break;
        }
        set_str(field, xstrdup(value));
        return 0;
    case K_HEADERS: {
        const char *colon = strchr(value, ':');
        size_t nlen = colon ? (size_t)(colon - value) : 0;
        bool good = nlen > 0;
        for (size_t i = 0; good && i < nlen; i++)
            good = isalnum((unsigned char)value[i]) || strchr("!#$%&'*+-.^_`|~", value[i]);
        if (!good) {
            snprintf(expect, sizeof expect, "expected 'Name: value'");
            break;
        }
        char ***list = field;
        size_t n = 0;
        while (*list && (*list)[n])
            n++;
        *list = xrealloc(*list, (n + 2) * sizeof **list);
        (*list)[n] = xstrdup(value);
        (*list)[n + 1] = NULL;
        return 0;
    }
    case K_HOSTS: {
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
            snprintf(expect, sizeof expect,
                     "expected comma-separated host names, each with an optional :port");
            break;
        }
        free_list(*(char ***)field);
        *(char ***)field = list;
        return 0;
    }
    case K_HOST:
        if (!valid_host_name(value)) {
            snprintf(expect, sizeof expect, "expected a host name without port");
            break;
        }
        set_str(field, xstrdup(value));
        return 0;
    }

    if (!expect[0]) {
        /* numeric kinds */
        if (ok && u >= k->min && u <= k->max) {
            if (k->kind == K_INT)
                *(int *)field = (int)u;
            else
                *(uint64_t *)field = u;
            return 0;
        }
        char e[128];
        expected_text(k, e, sizeof e);
        snprintf(expect, sizeof expect, "expected %s", e);
    }
    seterr(msg, msglen, "bad value for %s: '%s' (%s)", k->name, value, expect);
    return -1;
}

static rule *default_rule(config *c)
{
    return &c->rules[c->rules_len - 1];
}

static void rule_init(rule *r, const char *name)
{
    memset(r, 0, sizeof *r);
    r->name = xstrdup(name);
    for (size_t i = 0; i < NRULE_KEYS; i++) {
        if (rule_keys[i].def && apply_key(&rule_keys[i], r, rule_keys[i].def, NULL, 0) != 0)
            abort(); /* a built-in default that does not parse is a bug */
    }
}

static void rule_free(rule *r)
{
    free(r->name);
    free(r->path);
    free(r->host);
}

config *config_new(void)
{
    config_box *box = xcalloc(1, sizeof *box);
    atomic_init(&box->refs, 1);
    config *c = &box->pub;
    c->rules = xcalloc(1, sizeof *c->rules);
    c->rules_len = 1;
    rule_init(&c->rules[0], "default");
    for (size_t i = 0; i < NKEYS; i++) {
        const keydef *k = &keys[i];
        if (!k->def)
            continue;
        void *base = k->on_rule ? (void *)default_rule(c) : (void *)c;
        if (apply_key(k, base, k->def, NULL, 0) != 0)
            abort();
    }
    char host[256];
    if (gethostname(host, sizeof host) == 0 && host[0]) {
        host[sizeof host - 1] = '\0';
        /* A node name must fit routing keys: the first label, cleaned. */
        host[strcspn(host, ".")] = '\0';
        for (char *p = host; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
                *p = '_';
        host[64] = '\0';
        c->node = xstrdup(host[0] ? host : "restspy");
    } else {
        c->node = xstrdup("restspy");
    }
    return c;
}

void config_ref(config *c)
{
    if (c)
        atomic_fetch_add_explicit(&BOX(c)->refs, 1, memory_order_relaxed);
}

void config_unref(config *c)
{
    if (!c)
        return;
    /* acq_rel: the last owner must see every other owner's writes before it
     * frees (the usual reference-count pairing). */
    if (atomic_fetch_sub_explicit(&BOX(c)->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(c->listen);
    free(c->upstream);
    free(c->config_path);
    free(c->store);
    free(c->log);
    free(c->admin);
    free(c->admin_token);
    free_list(c->admin_hosts);
    free(c->node);
    free_list(c->redact_headers);
    free_list(c->redact_fields);
    free(c->amqp);
    free(c->replicate_secret);
    free_list(c->replicate_drop_headers);
    free_list(c->set_headers);
    for (size_t i = 0; i < c->rules_len; i++)
        rule_free(&c->rules[i]);
    free(c->rules);
    free(BOX(c));
}

int config_set(config *c, const char *key, const char *value, char *err, size_t errlen)
{
    const keydef *k = find_key(keys, NKEYS, key, strlen(key));
    if (!k) {
        seterr(err, errlen, "unknown key '%s'", key);
        return -1;
    }
    return apply_key(k, k->on_rule ? (void *)default_rule(c) : (void *)c, value, err, errlen);
}

/* ---- INI files ----
 * inih parses the key = value lines; a custom reader feeds it line by line
 * so we know the line number of each key (inih's handler is built without
 * one) and see every section header, including those of empty sections and
 * repeated ones, which the key handler alone would miss.
 *
 * Comments: a line whose first non-blank character is '#' or ';', and the
 * rest of a line from a '#' or ';' that follows whitespace (so a secret
 * "ab#cd" keeps its '#'). A value in double quotes is taken whole, quotes
 * removed: "..." keeps leading and trailing blanks and " #" or " ;". The
 * reader cuts comments itself before inih sees the line, because what inih
 * cuts is a build option (Debian's libinih: ';' only; others: none, or
 * both) and would also cut into a quoted value; the quoted value is handed
 * to the key handler from the reader's copy for the same reason. */

#define INI_SECTION_MAX 49 /* inih truncates longer section names silently */

enum { SECT_MAIN, SECT_RULE, SECT_BAD };

typedef struct ini_state {
    config *c;
    FILE *f;
    char *line;
    size_t linecap;
    int lineno;
    bool prev_key; /* mirrors inih: an indented line after a key continues it */
    char *quoted;  /* the current line's value when it is "quoted", without quotes */
    size_t quoted_cap;
    bool have_quoted; /* quoted holds the value of the line inih is parsing */
    int sect;
    size_t rule_idx;
    char sect_raw[INI_SECTION_MAX + 1]; /* section text as inih will report it */
    int err_line;                       /* first error; 0 = none */
    char err[512];
} ini_state;

static void ini_error(ini_state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void ini_error(ini_state *st, const char *fmt, ...)
{
    if (st->err_line)
        return;
    st->err_line = st->lineno;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->err, sizeof st->err, fmt, ap);
    va_end(ap);
}

static void add_rule(ini_state *st, const char *name)
{
    config *c = st->c;
    for (size_t i = 0; i < c->rules_len; i++) {
        if (strcmp(c->rules[i].name, name) == 0) {
            ini_error(st, "duplicate rule name '%s'", name);
            st->sect = SECT_BAD;
            return;
        }
    }
    /* The default rule stays last: the new rule takes its slot. */
    c->rules = xrealloc(c->rules, (c->rules_len + 1) * sizeof *c->rules);
    c->rules[c->rules_len] = c->rules[c->rules_len - 1];
    rule_init(&c->rules[c->rules_len - 1], name);
    st->rule_idx = c->rules_len - 1;
    c->rules_len++;
    st->sect = SECT_RULE;
}

/* A "[...]" line: raw is the text between the brackets. */
static void open_section(ini_state *st, const char *raw, size_t n)
{
    st->sect = SECT_BAD;
    if (n > INI_SECTION_MAX) {
        ini_error(st, "section header too long (at most %d characters)", INI_SECTION_MAX);
        return;
    }
    memcpy(st->sect_raw, raw, n);
    st->sect_raw[n] = '\0';
    trim(&raw, &n);
    if (n == 7 && memcmp(raw, "restspy", 7) == 0) {
        st->sect = SECT_MAIN;
        return;
    }
    if (n >= 4 && memcmp(raw, "rule", 4) == 0 && (n == 4 || isspace((unsigned char)raw[4]))) {
        const char *name = raw + 4;
        size_t len = n - 4;
        trim(&name, &len);
        if (len >= 2 && name[0] == '"' && name[len - 1] == '"') {
            name++;
            len -= 2;
        } else if (len && (name[0] == '"' || name[len - 1] == '"')) {
            ini_error(st, "bad rule section [%s] (expected [rule \"name\"])", st->sect_raw);
            return;
        }
        if (len == 0) {
            ini_error(st, "rule name must not be empty");
            return;
        }
        char rname[INI_SECTION_MAX + 1];
        memcpy(rname, name, len);
        rname[len] = '\0';
        add_rule(st, rname);
        return;
    }
    ini_error(st, "unknown section [%s] (expected [restspy] or [rule \"name\"])", st->sect_raw);
}

/* The closing quote of a value that opens with the quote at q: the first
 * '"' after it that only blanks or a comment follow. NULL when none does. */
static const char *quote_end(const char *q)
{
    for (const char *p = strchr(q + 1, '"'); p; p = strchr(p + 1, '"')) {
        const char *after = p + 1;
        while (*after && isspace((unsigned char)*after))
            after++;
        if (!*after || ((*after == '#' || *after == ';') && after > p + 1))
            return p;
    }
    return NULL;
}

static void keep_quoted(ini_state *st, const char *v, size_t n)
{
    if (n + 1 > st->quoted_cap) {
        st->quoted_cap = n + 1;
        st->quoted = xrealloc(st->quoted, st->quoted_cap);
    }
    memcpy(st->quoted, v, n);
    st->quoted[n] = '\0';
    st->have_quoted = true;
}

/* Cuts the inline comment off s, a line without its leading blanks, in
 * place. The value starts at s on a continuation line, after the first '='
 * or ':' (inih's split) on any other; a quoted value is kept whole. */
static void cut_comment(ini_state *st, char *s, bool continuation)
{
    bool at_value = continuation; /* the next non-blank character starts the value */
    bool seen_sep = continuation;
    bool was_space = false;
    for (char *p = s; *p; p++) {
        if (at_value && !isspace((unsigned char)*p)) {
            at_value = false;
            const char *close = *p == '"' ? quote_end(p) : NULL;
            if (close) {
                keep_quoted(st, p + 1, (size_t)(close - p - 1));
                p += close - p; /* the loop goes on after the closing quote */
                was_space = false;
                continue;
            }
        }
        if ((*p == '#' || *p == ';') && was_space) {
            *p = '\0';
            return;
        }
        if (!seen_sep && (*p == '=' || *p == ':'))
            seen_sep = at_value = true;
        was_space = isspace((unsigned char)*p) != 0;
    }
}

/* Watches the line inih is about to parse, following inih's own order of
 * checks (comment, continuation, section, key), and cuts its comment. */
static void watch_line(ini_state *st, char *line)
{
    char *start = line;
    st->have_quoted = false;
    if (st->lineno == 1 && memcmp(start, "\xEF\xBB\xBF", 3) == 0)
        start += 3;
    while (*start && isspace((unsigned char)*start))
        start++;
    if (*start == '\0' || *start == ';' || *start == '#')
        return;
    bool continuation = st->prev_key && start > line;
    cut_comment(st, start, continuation);
    if (continuation)
        return; /* continuation of the previous value */
    size_t n = strlen(start);
    while (n && isspace((unsigned char)start[n - 1]))
        n--;
    if (*start == '[') {
        const char *rb = memchr(start, ']', n);
        if (rb) {
            st->prev_key = false;
            open_section(st, start + 1, (size_t)(rb - start - 1));
        }
        return; /* no ']': inih reports the syntax error */
    }
    if (memchr(start, '=', n) || memchr(start, ':', n))
        st->prev_key = true;
}

static char *read_line(char *str, int num, void *stream)
{
    ini_state *st = stream;
    ssize_t len = getline(&st->line, &st->linecap, st->f);
    if (len < 0)
        return NULL;
    st->lineno++;
    /* Room for the line, "\n" and NUL is what inih's buffer needs; longer
     * lines would be split into two by inih, so refuse them here. */
    if (num < 3 || (size_t)len + 2 > (size_t)num) {
        ini_error(st, "line too long (at most %d bytes)", num - 3);
        snprintf(str, (size_t)num, "\n");
        return str;
    }
    memcpy(str, st->line, (size_t)len + 1);
    watch_line(st, str);
    return str;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    ini_state *st = user;
    if (st->err_line)
        return 1; /* keep only the first error; inih keeps going regardless */
    if (st->sect == SECT_BAD)
        return 1;
    if (strcmp(section, st->sect_raw) != 0) {
        ini_error(st, "cannot parse section header [%s]", section);
        return 1;
    }
    if (st->have_quoted) {
        value = st->quoted; /* inih's copy may be cut at a ';' inside the quotes */
        st->have_quoted = false;
    }
    char msg[400];
    if (st->sect == SECT_RULE) {
        const keydef *k = find_key(rule_keys, NRULE_KEYS, name, strlen(name));
        rule *r = &st->c->rules[st->rule_idx];
        if (!k)
            ini_error(st, "unknown key '%s' in [rule \"%s\"]", name, r->name);
        else if (apply_key(k, r, value, msg, sizeof msg) != 0)
            ini_error(st, "%s", msg);
        return 1;
    }
    const keydef *k = find_key(keys, NKEYS, name, strlen(name));
    if (!k)
        ini_error(st, "unknown key '%s'", name);
    else if (k->kind == K_CONFIG)
        ini_error(st, "key 'config' cannot be set inside a config file");
    else if (config_set(st->c, name, value, msg, sizeof msg) != 0)
        ini_error(st, "%s", msg);
    return 1;
}

int config_load_file(config *c, const char *path, char *err, size_t errlen)
{
    ini_state st;
    memset(&st, 0, sizeof st);
    st.c = c;
    st.sect = SECT_MAIN;
    st.f = fopen(path, "r");
    if (!st.f) {
        seterr(err, errlen, "cannot read config file '%s': %s", path, strerror(errno));
        return -1;
    }
    int rc = ini_parse_stream(read_line, &st, on_key, &st);
    bool read_failed = ferror(st.f) != 0;
    fclose(st.f);
    free(st.line);
    free(st.quoted);
    if (read_failed) {
        seterr(err, errlen, "cannot read config file '%s'", path);
        return -1;
    }
    if (rc > 0 && (!st.err_line || rc < st.err_line)) {
        seterr(err, errlen, "%s:%d: syntax error (expected key = value or [section])", path, rc);
        return -1;
    }
    if (rc < 0) {
        seterr(err, errlen, "cannot parse config file '%s'", path);
        return -1;
    }
    if (st.err_line) {
        seterr(err, errlen, "%s:%d: %s", path, st.err_line, st.err);
        return -1;
    }
    set_str(&c->config_path, xstrdup(path));
    return 0;
}

/* ---- environment and flags ---- */

#define ENV_PREFIX "RESTSPY_"

int config_apply_env(config *c, char *const *envp, char *err, size_t errlen)
{
    size_t plen = strlen(ENV_PREFIX);
    for (size_t i = 0; envp && envp[i]; i++) {
        const char *e = envp[i];
        const char *eq = strchr(e, '=');
        if (!eq || strncmp(e, ENV_PREFIX, plen) != 0)
            continue;
        const char *name = e + plen;
        size_t n = (size_t)(eq - name);
        /* Names are upper case with '_' only; other RESTSPY_* variables
         * (RESTSPY_BIN in tests, ...) belong to someone else. */
        bool upper = true;
        for (size_t j = 0; j < n; j++)
            if (islower((unsigned char)name[j]) || name[j] == '-')
                upper = false;
        const keydef *k = upper ? find_key(keys, NKEYS, name, n) : NULL;
        if (!k)
            continue;
        char msg[400];
        if (config_set(c, k->name, eq + 1, msg, sizeof msg) != 0) {
            seterr(err, errlen, "%.*s: %s", (int)(eq - e), e, msg);
            return -1;
        }
    }
    return 0;
}

static const char *env_get(char *const *envp, const char *name)
{
    size_t n = strlen(name);
    const char *found = NULL;
    for (size_t i = 0; envp && envp[i]; i++)
        if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=')
            found = envp[i] + n + 1; /* the last one wins, as in config_apply_env */
    return found;
}

/* One flag at argv[*i]: its key and value. Advances *i past a separate
 * value. A boolean key given bare (last, or followed by something that is
 * not on/off) is on. -1 with err for an unknown option or a missing value. */
static int next_flag(int argc, char **argv, int *i, const keydef **k, const char **value, char *err,
                     size_t errlen)
{
    const char *arg = argv[*i] + 2;
    const char *eq = strchr(arg, '=');
    size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
    *k = find_key(keys, NKEYS, arg, n);
    if (!*k && name_eq(arg, n, "secret"))
        *k = find_key(keys, NKEYS, "replicate_secret", 16); /* the documented short form */
    if (!*k) {
        seterr(err, errlen, "unknown option --%.*s", (int)n, arg);
        return -1;
    }
    bool ignored;
    if (eq) {
        *value = eq + 1;
    } else if ((*k)->kind == K_BOOL &&
               (*i + 1 >= argc || util_parse_bool(argv[*i + 1], &ignored) != 0)) {
        *value = "on"; /* a bare switch: --store-init */
    } else if (*i + 1 < argc) {
        *value = argv[++*i];
    } else {
        seterr(err, errlen, "option --%.*s needs a value", (int)n, arg);
        return -1;
    }
    return 0;
}

static bool is_flag(const char *a)
{
    return a[0] == '-' && a[1] == '-';
}

int config_load(config **out, int argc, char **argv, char *const *envp, int *positional,
                int *npositional, char *err, size_t errlen)
{
    *out = NULL;
    int npos = 0;
    const char *file = NULL;
    bool have_file_flag = false;

    /* Pass 1 checks every flag and finds --config: the file has to be read
     * before the flags are applied, since flags override it. */
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            for (i++; i < argc; i++) {
                if (positional)
                    positional[npos] = i;
                npos++;
            }
            break;
        }
        if (!is_flag(argv[i])) {
            if (positional)
                positional[npos] = i;
            npos++;
            continue;
        }
        const keydef *k;
        const char *v;
        if (next_flag(argc, argv, &i, &k, &v, err, errlen) != 0)
            return -1;
        if (k->kind == K_CONFIG) {
            file = v;
            have_file_flag = true;
        }
    }
    if (npositional)
        *npositional = npos;
    if (!have_file_flag)
        file = env_get(envp, ENV_PREFIX "CONFIG");

    config *c = config_new();
    if (file && *file && config_load_file(c, file, err, errlen) != 0)
        goto fail;
    if (config_apply_env(c, envp, err, errlen) != 0)
        goto fail;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (!is_flag(argv[i]))
            continue;
        const keydef *k;
        const char *v;
        if (next_flag(argc, argv, &i, &k, &v, err, errlen) != 0 ||
            config_set(c, k->name, v, err, errlen) != 0)
            goto fail;
    }
    *out = c;
    return 0;
fail:
    config_unref(c);
    return -1;
}

/* ---- cross-key checks ---- */

static bool is_loopback(const char *host)
{
    if (strcasecmp(host, "localhost") == 0)
        return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a6.s6_addr, v4mapped, 12) == 0)
            return a6.s6_addr[12] == 127;
        return memcmp(&a6, &in6addr_loopback, sizeof a6) == 0;
    }
    return false;
}

int config_validate(const config *c, char *err, size_t errlen)
{
    if (c->admin && strcmp(c->admin, "off") != 0 && !c->admin_token) {
        char host[256];
        int port;
        if (util_split_hostport(c->admin, host, sizeof host, &port) != 0 || !is_loopback(host)) {
            seterr(err, errlen,
                   "refusing to bind the admin listener to %s without admin_token "
                   "(set admin_token or use a loopback address)",
                   c->admin);
            return -1;
        }
    }
    if (c->store_batch > c->store_queue) {
        seterr(err, errlen, "store_batch (%llu) must not exceed store_queue (%llu)",
               (unsigned long long)c->store_batch, (unsigned long long)c->store_queue);
        return -1;
    }
    if (c->rules_len == 0 || strcmp(c->rules[c->rules_len - 1].name, "default") != 0) {
        seterr(err, errlen, "the default rule is missing");
        return -1;
    }
    return 0;
}

void config_each_key(void (*fn)(const char *key, const char *def, const char *help, void *ud),
                     void *ud)
{
    for (size_t i = 0; i < NKEYS; i++)
        fn(keys[i].name, keys[i].def ? keys[i].def : keys[i].note, keys[i].help, ud);
}
