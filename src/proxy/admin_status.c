/* admin_status: the admin routes that report (health, counters, metrics)
 * and switch (flags); see admin_internal.h. */
#include "proxy/admin_internal.h"

#include <assert.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "capture/rules.h"
#include "proxy/metrics.h"
#include "replication/mq.h"
#include "replication/repl_peers.h"
#include "replication/repl_status.h"
#include "pipeline/stats.h"

/* "log":B,"persist":B,"replicate":B of sw (RULE_SW_* bits). */
static void append_switches(buf *b, unsigned sw)
{
    buf_appendf(b, "\"log\":%s,\"persist\":%s,\"replicate\":%s",
                sw & RULE_SW_LOG ? "true" : "false", sw & RULE_SW_PERSIST ? "true" : "false",
                sw & RULE_SW_REPLICATE ? "true" : "false");
}

/* "rules":[...]: each rule of the current config in its order (the default
 * rule last), its switches now and as configured. The admin runs on the
 * main loop, the thread that replaces sh->cfg on a reload. */
static void append_rules(admin *a, buf *b)
{
    const config *cfg = a->sh->cfg;
    buf_append_str(b, ",\"rules\":[");
    for (size_t i = 0; i < cfg->rules_len; i++) {
        const rule *r = &cfg->rules[i];
        buf_append_str(b, i ? ",{\"name\":" : "{\"name\":");
        buf_append_json_str(b, r->name, strlen(r->name));
        buf_append_char(b, ',');
        append_switches(b, rules_switches(r));
        buf_append_str(b, ",\"configured\":{");
        append_switches(b, rules_configured(r));
        buf_append_str(b, "}}");
    }
    buf_append_char(b, ']');
}

void admin_flags_json(admin *a, buf *b)
{
    unsigned global = (atomic_load(&g_flags.log) ? RULE_SW_LOG : 0u) |
                      (atomic_load(&g_flags.persist) ? RULE_SW_PERSIST : 0u) |
                      (atomic_load(&g_flags.replicate) ? RULE_SW_REPLICATE : 0u);
    buf_append_char(b, '{');
    append_switches(b, global);
    buf_appendf(b, ",\"log_format\":\"%s\"",
                logsink_format(a->sh->pl.log) == LOG_FORMAT_COMBINED ? "combined" : "json");
    append_rules(a, b);
    buf_append_char(b, '}');
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
    if (!a->sh->pl.store) {
        /* no store, no outbox figures */
    } else if (store_repl_stats_get(a->sh->pl.store, &rs, err, sizeof err) == 0) {
        buf_appendf(b,
                    ",\"outbox_depth\":%lld,\"oldest_unpublished_us\":%lld,"
                    "\"not_replicated\":%lld",
                    (long long)rs.outbox_depth, (long long)rs.oldest_unpublished_us,
                    (long long)rs.not_replicated);
    } else {
        /* The members stay (null), with the reason: a monitor that reads
         * outbox_depth must not mistake a failed read for a missing key. */
        char why[sizeof ADMIN_STORE_FAILED + sizeof err];
        snprintf(why, sizeof why, ADMIN_STORE_FAILED "%s", err);
        buf_append_str(b, ",\"outbox_depth\":null,\"oldest_unpublished_us\":null,"
                          "\"not_replicated\":null");
        buf_json_add_str(b, "store_error", why);
    }
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
                (unsigned long long)logsink_lines(a->sh->pl.log),
                (unsigned long long)logsink_errors(a->sh->pl.log));
    if (a->sh->pl.store) {
        store_stats s;
        store_get_stats(a->sh->pl.store, &s);
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
        .store = a->sh->pl.store,
        .ob = a->ob,
        .log = a->sh->pl.log,
        .node = a->sh->cfg->node, /* read as is: see host_ok */
        .cfg = a->sh->cfg,
        .workers = a->workers,
    };
    buf b = BUF_INIT;
    metrics_render(&b, &src);
    admin_reply_as(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    buf_free(&b);
}

/* Whether j (a PUT /flags body or one of its rules) switches name on. */
static bool switches_on(const json_t *j, const char *name)
{
    return json_is_true(json_object_get(j, name));
}

/* Whether the rules of a checked PUT /flags "rules" member switch the
 * switch name on for a rule whose config does not have it on: restoring what
 * the file says is never refused (it is how the rule started). */
static bool rules_switch_on(const config *cfg, json_t *rules, const char *name)
{
    unsigned bit = rules_switch_bit(name, strlen(name));
    const char *rname;
    json_t *sw;
    json_object_foreach(rules, rname, sw)
    {
        const rule *r = rules_find(cfg->rules, cfg->rules_len, rname);
        if (switches_on(sw, name) && !(rules_configured(r) & bit))
            return true;
    }
    return false;
}

/* Why a valid PUT /flags body cannot be applied, or NULL: a flag switched on
 * (globally, or for a rule beyond its config) whose machinery this process
 * does not have (it is set up at start). */
static const char *flags_conflict(const admin *a, const config *cfg, json_t *j)
{
    json_t *rules = json_object_get(j, "rules");
    if (!a->sh->pl.store && (switches_on(j, "persist") || rules_switch_on(cfg, rules, "persist")))
        return "cannot switch persist on: the store is off (set store and restart)";
    if (!a->sh->pl.replicating &&
        (switches_on(j, "replicate") || rules_switch_on(cfg, rules, "replicate")))
        return "cannot switch replicate on: no broker is configured (set amqp and restart)";
    return NULL;
}

/* Checks the "rules" member of a PUT /flags body, {"NAME": {"persist":
 * false, ...}, ...}, against the current config. 0 when it is valid, else
 * -1 with the reason in why. */
static int rules_put_check(const config *cfg, json_t *rules, buf *why)
{
    if (!json_is_object(rules)) {
        buf_append_str(why, "rules is an object of rule names to switches, e.g. "
                            "{\"rules\":{\"default\":{\"persist\":false}}}");
        return -1;
    }
    const char *name, *key;
    json_t *sw, *v;
    json_object_foreach(rules, name, sw)
    {
        if (!rules_find(cfg->rules, cfg->rules_len, name)) {
            buf_appendf(why, "unknown rule '%s' (rules:", name);
            for (size_t i = 0; i < cfg->rules_len; i++)
                buf_appendf(why, "%s %s", i ? "," : "", cfg->rules[i].name);
            buf_append_char(why, ')');
            return -1;
        }
        if (!json_is_object(sw)) {
            buf_appendf(why, "rule '%s': expected an object of switches (log, persist, replicate)",
                        name);
            return -1;
        }
        json_object_foreach(sw, key, v)
        {
            if (!rules_switch_bit(key, strlen(key))) {
                buf_appendf(why,
                            "unknown switch '%s' in rule '%s' (known: log, persist, replicate)",
                            key, name);
                return -1;
            }
            if (!json_is_boolean(v)) {
                buf_appendf(why, "rule '%s': switches log, persist, replicate are booleans", name);
                return -1;
            }
        }
    }
    return 0;
}

/* Applies a checked "rules" member (rules_put_check) to cfg's rules. */
static void rules_put_apply(config *cfg, json_t *rules)
{
    const char *name, *key;
    json_t *sw, *v;
    json_object_foreach(rules, name, sw)
    {
        rule *r = rules_find(cfg->rules, cfg->rules_len, name);
        assert(r);
        unsigned now = rules_switches(r);
        json_object_foreach(sw, key, v)
        {
            unsigned bit = rules_switch_bit(key, strlen(key));
            now = json_is_true(v) ? now | bit : now & ~bit;
        }
        rules_set_switches(r, now);
    }
}

/* Checks a PUT /flags body's members but "rules"; 0, or -1 with the reason
 * in why. *fmt is the log format asked for, or -1. */
static int flags_put_check(json_t *j, int *fmt, buf *why)
{
    const char *key;
    json_t *v;
    *fmt = -1;
    json_object_foreach(j, key, v)
    {
        if (!strcmp(key, "log") || !strcmp(key, "persist") || !strcmp(key, "replicate")) {
            if (!json_is_boolean(v)) {
                buf_append_str(why, "flags log, persist, replicate are booleans");
                return -1;
            }
        } else if (!strcmp(key, "log_format")) {
            const char *s = json_string_value(v);
            if (s && !strcmp(s, "json"))
                *fmt = LOG_FORMAT_JSON;
            else if (s && !strcmp(s, "combined"))
                *fmt = LOG_FORMAT_COMBINED;
            else {
                buf_append_str(why, "log_format is \"json\" or \"combined\"");
                return -1;
            }
        } else if (strcmp(key, "rules") != 0) {
            buf_appendf(
                why, "unknown flag '%s' (known: log, persist, replicate, log_format, rules)", key);
            return -1;
        }
    }
    return 0;
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
    config *cfg = c->a->sh->cfg; /* the main loop's, as append_rules says */
    json_t *rules = json_object_get(j, "rules");
    buf why = BUF_INIT;
    int fmt;
    if (flags_put_check(j, &fmt, &why) < 0 || (rules && rules_put_check(cfg, rules, &why) < 0)) {
        json_decref(j);
        admin_reply_error(c, 400, "Bad Request", why.data);
        buf_free(&why);
        return;
    }
    const char *conflict = flags_conflict(c->a, cfg, j);
    if (conflict) {
        json_decref(j);
        admin_reply_error(c, 409, "Conflict", conflict);
        return;
    }
    json_t *v;
    if ((v = json_object_get(j, "log")))
        atomic_store(&g_flags.log, json_is_true(v));
    if ((v = json_object_get(j, "persist")))
        atomic_store(&g_flags.persist, json_is_true(v));
    if ((v = json_object_get(j, "replicate")))
        atomic_store(&g_flags.replicate, json_is_true(v));
    if (rules)
        rules_put_apply(cfg, rules);
    if (fmt >= 0)
        logsink_set_format(c->a->sh->pl.log, fmt);
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

/* One GET /api/replication: the publisher's members read on the loop (the
 * outbox's figures live there), the store's figures on the pool's thread
 * through a read-only store of its own (counting the ledger by origin
 * takes ~0.2 s per million applies: the loop and its live streams must not
 * wait, and the proxy's own store handle is the loop's), then answered on
 * the loop. */
typedef struct repl_job {
    char *store_url; /* owned copy */
    uint64_t busy_timeout_ms;
    int64_t window_us;
    buf out; /* the answer so far: {"publisher":...,  */
    int rc;
    char err[512];
} repl_job;

static void repl_work(void *ud)
{
    repl_job *j = ud;
    store_options o = {
        .url = j->store_url, .read_only = true, .busy_timeout_ms = j->busy_timeout_ms};
    store *st = store_open(&o, j->err, sizeof j->err);
    if (!st) {
        j->rc = -1;
        return;
    }
    repl_status x;
    j->rc = repl_status_read(st, j->window_us, &x, j->err, sizeof j->err);
    if (j->rc == 0) {
        repl_status_json(&x, &j->out);
        buf_append_char(&j->out, '}');
    }
    repl_status_free(&x);
    store_close(st);
}

static void repl_job_free(repl_job *j)
{
    free(j->store_url);
    buf_free(&j->out);
    free(j);
}

static void repl_done(aconn *c, void *ud)
{
    repl_job *j = ud;
    if (c && j->rc == 0)
        admin_reply(c, 200, "OK", j->out.data, j->out.len);
    else if (c)
        admin_reply_store_failed(c, j->err);
    repl_job_free(j);
}

void admin_replication(aconn *c, const char *query)
{
    admin *a = c->a;
    const config *cfg = a->sh->cfg; /* current: the admin runs on the loop that replaces it */
    if (!a->sh->pl.store) {
        admin_reply_error(c, 404, "Not Found",
                          "the store is off: there are no replication figures");
        return;
    }
    uint64_t window_ms = REPL_STATUS_WINDOW_MS;
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
    repl_job *j = xcalloc(1, sizeof *j);
    j->store_url = xstrdup(cfg->store);
    j->busy_timeout_ms = cfg->busy_timeout_ms;
    j->window_us = (int64_t)window_ms * 1000;
    buf_append_str(&j->out, "{\"publisher\":");
    if (a->ob) {
        buf_append_char(&j->out, '{');
        publisher_members(a, &j->out);
        buf_append_char(&j->out, '}');
    } else {
        buf_append_str(&j->out, "null");
    }
    buf_append_char(&j->out, ',');
    if (admin_offload(c, repl_work, repl_done, j) < 0)
        repl_job_free(j);
}

/* ---- GET /api/replication/peers ---- */

/* One request's reading of the management API: asked on the loop, done on
 * the pool's thread (two HTTP requests of up to 15 s each), answered on
 * the loop. */
typedef struct peers_job {
    char *url, *vhost; /* owned copies: the config may be replaced meanwhile */
    buf out;
    int rc;
    char err[512];
} peers_job;

static void peers_work(void *ud)
{
    peers_job *j = ud;
    j->rc = repl_peers_read(j->url, j->vhost, NULL, &j->out, j->err, sizeof j->err);
}

static void peers_job_free(peers_job *j)
{
    free(j->url);
    free(j->vhost);
    buf_free(&j->out);
    free(j);
}

static void peers_done(aconn *c, void *ud)
{
    peers_job *j = ud;
    if (c && j->rc == 0)
        admin_reply(c, 200, "OK", j->out.data, j->out.len);
    else if (c)
        admin_reply_error(c, 502, "Bad Gateway", j->err);
    peers_job_free(j);
}

void admin_replication_peers(aconn *c)
{
    const config *cfg = c->a->sh->cfg; /* current: the admin runs on the loop that replaces it */
    if (!cfg->mgmt || !*cfg->mgmt) {
        admin_reply_error(c, 409, "Conflict",
                          "no management API is configured: set mgmt (this broker's management "
                          "API, http://user:pass@host:15672) to see what it holds for each peer");
        return;
    }
    peers_job *j = xcalloc(1, sizeof *j);
    j->url = xstrdup(cfg->mgmt);
    /* The vhost replication uses on this broker: amqp's; "/" without it. */
    j->vhost = mq_url_vhost(cfg->amqp);
    if (!j->vhost)
        j->vhost = xstrdup("/");
    if (admin_offload(c, peers_work, peers_done, j) < 0)
        peers_job_free(j);
}
