/* admin_status: the admin routes that report (health, counters, metrics)
 * and switch (flags); see admin_internal.h. */
#include "proxy/admin_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "base/util.h"
#include "proxy/metrics.h"
#include "replication/repl_status.h"
#include "proxy/stats.h"

void admin_flags_json(admin *a, buf *b)
{
    buf_appendf(b, "{\"log\":%s,\"persist\":%s,\"replicate\":%s,\"log_format\":\"%s\"}",
                atomic_load(&g_flags.log) ? "true" : "false",
                atomic_load(&g_flags.persist) ? "true" : "false",
                atomic_load(&g_flags.replicate) ? "true" : "false",
                logsink_format(a->sh->log) == LOG_FORMAT_COMBINED ? "combined" : "json");
}

/* "replication": the publisher's state and the outbox as the store sees it
 * (null when replication is off). */
/* The publisher's state as JSON members (no braces); replication is on. */
static void publisher_members(admin *a, buf *b)
{
    outbox_stats os;
    outbox_get_stats(a->ob, &os);
    buf_appendf(b,
                "\"enabled\":%s,\"connected\":%s,\"published\":%llu,"
                "\"confirmed\":%llu,\"reconnects\":%llu,\"nacks\":%llu,"
                "\"last_confirmed_us\":%lld,\"down_since_us\":%lld,\"failed_attempts\":%llu,"
                "\"returned\":%llu,\"unroutable_since_us\":%lld",
                atomic_load(&g_flags.replicate) ? "true" : "false", os.connected ? "true" : "false",
                (unsigned long long)os.published, (unsigned long long)os.confirmed,
                (unsigned long long)os.reconnects, (unsigned long long)os.nacks,
                (long long)os.last_confirmed_us, (long long)os.down_since_us,
                (unsigned long long)os.failed_attempts, (unsigned long long)os.returned,
                (long long)os.unroutable_since_us);
    buf_json_add_str(b, "last_error", os.last_error[0] ? os.last_error : NULL);
}

static void append_replication(admin *a, buf *b)
{
    if (!a->ob) {
        buf_append_str(b, ",\"replication\":null");
        return;
    }
    buf_append_str(b, ",\"replication\":{");
    publisher_members(a, b);
    store_repl_stats rs;
    char err[256];
    if (a->sh->store && store_repl_stats_get(a->sh->store, &rs, err, sizeof err) == 0)
        buf_appendf(b,
                    ",\"outbox_depth\":%lld,\"oldest_unpublished_us\":%lld,"
                    "\"not_replicated\":%lld",
                    (long long)rs.outbox_depth, (long long)rs.oldest_unpublished_us,
                    (long long)rs.not_replicated);
    buf_append_char(b, '}');
}

/* Why the proxy is degraded: each reason as a JSON string appended to b,
 * comma-separated. Returns how many. Degraded is still serving: requests
 * are proxied and captured, something behind them is not right. */
static int append_degraded(admin *a, buf *b)
{
    int n = 0;
    if (a->ob) {
        outbox_stats os;
        outbox_get_stats(a->ob, &os);
        if (!os.connected) {
            char why[400];
            if (os.last_error[0])
                snprintf(why, sizeof why,
                         "replication: broker unreachable for %.1fs (%s); new records wait in "
                         "the outbox",
                         (double)(util_now_us() - os.down_since_us) / 1e6, os.last_error);
            else
                snprintf(why, sizeof why, "replication: connecting to the broker");
            buf_append_json_str(b, why, strlen(why));
            n++;
        } else if (os.unroutable_since_us) {
            char why[400];
            snprintf(why, sizeof why,
                     "replication: the broker returns publishes as unroutable for %.1fs (no "
                     "queue bound to restspy.requests: run restspy federate); new records wait "
                     "in the outbox",
                     (double)(util_now_us() - os.unroutable_since_us) / 1e6);
            buf_append_json_str(b, why, strlen(why));
            n++;
        }
    }
    return n;
}

/* GET /healthz: {"status":"ok"}, or {"status":"degraded"} with the reasons
 * when details may be shown, answered with healthz_degraded_status. */
void admin_healthz(aconn *c, bool details)
{
    buf reasons = BUF_INIT, b = BUF_INIT;
    int n = append_degraded(c->a, &reasons);
    buf_appendf(&b, "{\"status\":\"%s\"", n ? "degraded" : "ok");
    if (n && details)
        buf_appendf(&b, ",\"reasons\":[%s]", reasons.data);
    buf_append_char(&b, '}');
    /* Read as is: see host_ok. */
    int status = n ? c->a->sh->cfg->healthz_degraded_status : 200;
    admin_reply(c, status,
                status == 200   ? "OK"
                : status == 503 ? "Service Unavailable"
                                : "Degraded",
                b.data, b.len);
    buf_free(&reasons);
    buf_free(&b);
}

void admin_stats(aconn *c)
{
    admin *a = c->a;
    buf b = BUF_INIT;
    buf_append_char(&b, '{');
    stats_append_json(&b);
    buf_appendf(&b, ",\"workers\":%d,\"uptime_s\":%lld", a->workers,
                (long long)((util_now_us() - a->started_us) / 1000000));
    buf_appendf(&b, ",\"log\":{\"lines\":%llu,\"errors\":%llu}",
                (unsigned long long)logsink_lines(a->sh->log),
                (unsigned long long)logsink_errors(a->sh->log));
    if (a->sh->store) {
        store_stats s;
        store_get_stats(a->sh->store, &s);
        buf_appendf(&b,
                    ",\"store\":{\"submitted\":%llu,\"written\":%llu,\"dropped\":%llu,"
                    "\"queued\":%llu,\"batches\":%llu,\"errors\":%llu,\"pruned\":%llu,"
                    "\"blocked\":%llu}",
                    (unsigned long long)s.submitted, (unsigned long long)s.written,
                    (unsigned long long)s.dropped, (unsigned long long)s.queued,
                    (unsigned long long)s.batches, (unsigned long long)s.errors,
                    (unsigned long long)s.pruned, (unsigned long long)s.blocked);
    } else {
        buf_append_str(&b, ",\"store\":null");
    }
    append_replication(a, &b);
    buf_append_str(&b, ",\"flags\":");
    admin_flags_json(a, &b);
    buf_append_char(&b, '}');
    admin_reply(c, 200, "OK", b.data, b.len);
    buf_free(&b);
}

/* GET /metrics: Prometheus' text format (metrics.h). */
void admin_metrics(aconn *c)
{
    admin *a = c->a;
    metrics_sources src = {
        .store = a->sh->store,
        .ob = a->ob,
        .log = a->sh->log,
        .node = a->sh->cfg->node, /* read as is: see host_ok */
        .workers = a->workers,
    };
    buf b = BUF_INIT;
    metrics_render(&b, &src);
    admin_reply_as(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    buf_free(&b);
}

/* Why a valid PUT /flags body cannot be applied, or NULL: a flag switched on
 * whose machinery this process does not have (it is set up at start). */
static const char *flags_conflict(const admin *a, const json_t *j)
{
    if (json_is_true(json_object_get(j, "persist")) && !a->sh->store)
        return "cannot switch persist on: the store is off (set store and restart)";
    if (json_is_true(json_object_get(j, "replicate")) && !a->sh->replicating)
        return "cannot switch replicate on: no broker is configured (set amqp and restart)";
    return NULL;
}

/* Applies a PUT /flags body; all or nothing. */
void admin_flags_put(aconn *c)
{
    json_error_t jerr;
    json_t *j = json_loadb(c->body.data ? c->body.data : "", c->body.len, 0, &jerr);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        admin_reply_error(c, 400, "Bad Request", "body must be a JSON object");
        return;
    }
    const char *key;
    json_t *v;
    int fmt = -1;
    json_object_foreach(j, key, v)
    {
        if (!strcmp(key, "log") || !strcmp(key, "persist") || !strcmp(key, "replicate")) {
            if (!json_is_boolean(v)) {
                json_decref(j);
                admin_reply_error(c, 400, "Bad Request",
                                  "flags log, persist, replicate are booleans");
                return;
            }
        } else if (!strcmp(key, "log_format")) {
            const char *s = json_string_value(v);
            if (s && !strcmp(s, "json"))
                fmt = LOG_FORMAT_JSON;
            else if (s && !strcmp(s, "combined"))
                fmt = LOG_FORMAT_COMBINED;
            else {
                json_decref(j);
                admin_reply_error(c, 400, "Bad Request", "log_format is \"json\" or \"combined\"");
                return;
            }
        } else {
            buf m = BUF_INIT;
            buf_appendf(&m, "unknown flag '%s' (known: log, persist, replicate, log_format)", key);
            json_decref(j);
            admin_reply_error(c, 400, "Bad Request", m.data);
            buf_free(&m);
            return;
        }
    }
    const char *why = flags_conflict(c->a, j);
    if (why) {
        json_decref(j);
        admin_reply_error(c, 409, "Conflict", why);
        return;
    }
    if ((v = json_object_get(j, "log")))
        atomic_store(&g_flags.log, json_is_true(v));
    if ((v = json_object_get(j, "persist")))
        atomic_store(&g_flags.persist, json_is_true(v));
    if ((v = json_object_get(j, "replicate")))
        atomic_store(&g_flags.replicate, json_is_true(v));
    if (fmt >= 0)
        logsink_set_format(c->a->sh->log, fmt);
    json_decref(j);
    buf b = BUF_INIT;
    admin_flags_json(c->a, &b);
    /* A switch that changes what is captured is itself on the record. */
    char peer[INET6_ADDRSTRLEN + 8] = "?";
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0)
        uv_ip_name((struct sockaddr *)&ss, peer, sizeof peer);
    fprintf(stderr, "restspy: flags set by %s: %s\n", peer, b.data);
    admin_reply(c, 200, "OK", b.data, b.len);
    buf_free(&b);
}

void admin_replication(aconn *c, const char *query)
{
    admin *a = c->a;
    if (!a->sh->store) {
        admin_reply_error(c, 404, "Not Found",
                          "the store is off: there are no replication figures");
        return;
    }
    uint64_t window_ms = REPL_STATUS_WINDOW_MS;
    char err[512];
    buf name = BUF_INIT, value = BUF_INIT;
    bool bad = false;
    while (!bad && admin_query_next(&query, &name, &value))
        bad = strcmp(name.data, "window") != 0 ||
              util_parse_duration_ms(value.data, false, &window_ms) != 0 || window_ms == 0 ||
              window_ms > INT64_MAX / 1000;
    buf_free(&name);
    buf_free(&value);
    if (bad) {
        admin_reply_error(c, 400, "Bad Request",
                          "expected window=DURATION (5m, 90s, 1h) or nothing");
        return;
    }
    repl_status x;
    if (repl_status_read(a->sh->store, (int64_t)window_ms * 1000, &x, err, sizeof err) != 0) {
        repl_status_free(&x);
        admin_reply_error(c, 500, "Internal Server Error", err);
        return;
    }
    buf b = BUF_INIT;
    buf_append_str(&b, "{\"publisher\":");
    if (a->ob) {
        buf_append_char(&b, '{');
        publisher_members(a, &b);
        buf_append_char(&b, '}');
    } else {
        buf_append_str(&b, "null");
    }
    buf_append_char(&b, ',');
    repl_status_json(&x, &b);
    buf_append_char(&b, '}');
    admin_reply(c, 200, "OK", b.data, b.len);
    buf_free(&b);
    repl_status_free(&x);
}
