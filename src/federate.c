/* federate: `restspy federate`, a site's broker set up for replication
 * through the RabbitMQ management HTTP API (or printed as commands).
 *
 * Every step is idempotent, so the command can be re-run at any time (after
 * adding a peer, after a broker was rebuilt): exchanges and queues are
 * declared with PUT (RabbitMQ answers 204 when an equivalent one exists and
 * 400 "inequivalent arg" when it differs, which is reported as is),
 * bindings are looked up before they are created, and upstreams and the
 * policy are PUT by name. The declarations are the ones mq_declare_topology
 * makes over AMQP: both must stay identical, or the later declaration fails
 * with PRECONDITION_FAILED. */
#include "federate.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cliutil.h"
#include "config.h"
#include "httpc.h"
#include "mq.h"
#include "record.h"
#include "util.h"

#define CMD "federate"
#define API_TIMEOUT_MS 15000
#define POLICY_NAME "restspy-inbound"
#define POLICY_PATTERN "^restspy\\.inbound$"
#define EXCERPT_MAX 300

static const char usage_text[] =
    "usage: restspy federate --mgmt URL --peer NAME=AMQP_URL [--peer ...] [options]\n"
    "\n"
    "Sets up this site's RabbitMQ broker for replication through its management\n"
    "HTTP API, idempotently (safe to run again, e.g. after adding a peer):\n"
    "  - topic exchanges restspy.requests, restspy.inbound and restspy.dead;\n"
    "  - queue restspy.apply.<node> bound to restspy.inbound with '#', dead-lettering\n"
    "    to restspy.dead, and queue restspy.dead.<node> bound to restspy.dead;\n"
    "  - one federation upstream per peer (the peer's restspy.requests, ack-mode\n"
    "    on-confirm) and the policy restspy-inbound federating restspy.inbound\n"
    "    from all upstreams of the vhost.\n"
    "Needs the rabbitmq_management and rabbitmq_federation plugins.\n"
    "\n"
    "  --mgmt URL           management API of this site's broker,\n"
    "                       http://user:pass@host:15672 (required)\n"
    "  --node NAME          this node (default: the node setting, else the host name)\n"
    "  --peer NAME=URL      a peer site: its node name and the AMQP URL at which\n"
    "                       this broker reaches the peer's broker,\n"
    "                       amqp://user:pass@host:5672 (repeat for each peer)\n"
    "  --queue-type T       classic (default) or quorum, for restspy.apply.<node>\n"
    "  --vhost V            virtual host (default /)\n"
    "  --config FILE        config file whose node and queue_type settings to use\n"
    "  --print              print the equivalent commands (curl calls to the\n"
    "                       management API, rabbitmqctl set_parameter/set_policy)\n"
    "                       instead of running them\n"
    "  -h, --help           show this help\n"
    "\n"
    "Exit codes: 0 done, 1 the broker refused or could not be reached (its answer\n"
    "is shown), 2 usage error. See docs/replication.md.\n";

typedef struct peer {
    char *name; /* owned */
    char *uri;  /* owned */
} peer;

typedef struct fed {
    char *base;     /* scheme://host:port (no credentials); owned */
    char *user;     /* decoded; NULL when the URL has none; owned */
    char *pass;     /* decoded; owned */
    char *auth_url; /* scheme://user:pass@host:port for httpc; owned */
    char *prefix;   /* path prefix before /api ("" or "/rabbitmq"); owned */
    const char *node;
    int queue_type;
    const char *vhost;
    char *vh; /* vhost percent-encoded for paths; owned */
    peer *peers;
    size_t npeers;
    bool print;
    httpc *http;
} fed;

/* ---- text helpers ---- */

/* Percent-encodes everything but RFC 3986 unreserved characters: a vhost or
 * an object name becomes one path segment ("/" -> "%2F"). */
static void append_pct(buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            buf_append_char(b, (char)c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_append(b, e, 3);
        }
    }
}

/* Percent-decodes s[0..n) (user and password of a URL). Caller frees. */
static char *pct_decode(const char *s, size_t n)
{
    buf b = BUF_INIT;
    buf_append_pct_decoded(&b, s, n, 0);
    buf_append_str(&b, ""); /* an empty input still yields a string */
    return buf_detach(&b);
}

/* Appends s quoted for a POSIX shell: '...' with each ' as '\''. */
static void append_sq(buf *b, const char *s)
{
    buf_append_char(b, '\'');
    for (; *s; s++) {
        if (*s == '\'')
            buf_append_str(b, "'\\''");
        else
            buf_append_char(b, *s);
    }
    buf_append_char(b, '\'');
}

/* A URL for display: the password (between ':' and '@' of the userinfo)
 * replaced by "***". Caller frees. */
static char *mask_url(const char *url)
{
    const char *auth = strstr(url, "://");
    if (!auth)
        return xstrdup(url);
    auth += 3;
    size_t hostlen = strcspn(auth, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < hostlen; i++)
        if (auth[i] == '@')
            at = auth + i; /* the last '@' ends the userinfo */
    if (!at)
        return xstrdup(url);
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    if (!colon)
        return xstrdup(url);
    buf b = BUF_INIT;
    buf_append(&b, url, (size_t)(colon + 1 - url));
    buf_append_str(&b, "***");
    buf_append_str(&b, at);
    return buf_detach(&b);
}

/* The part of an answer body worth showing on one line: the "reason" of
 * RabbitMQ's JSON errors (whose HTML escapes are undone), else the start of
 * the body; control bytes become spaces. Caller frees. */
static char *body_excerpt(const buf *body)
{
    const char *s = body->data ? body->data : "";
    size_t n = body->len;
    char *reason = NULL;
    json_t *j = n ? json_loadb(s, n, 0, NULL) : NULL;
    if (json_is_object(j)) {
        const char *r = json_string_value(json_object_get(j, "reason"));
        const char *e = json_string_value(json_object_get(j, "error"));
        if (r || e)
            reason = xstrdup(r ? r : e);
    }
    json_decref(j);
    if (reason) {
        s = reason;
        n = strlen(reason);
    }
    static const struct {
        const char *from;
        char to;
    } ents[] = {{"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&#39;", '\''}, {"&amp;", '&'}};
    buf b = BUF_INIT;
    bool space = false;
    for (size_t i = 0; i < n && b.len < EXCERPT_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        if (reason && c == '&') {
            size_t k;
            for (k = 0; k < sizeof ents / sizeof ents[0]; k++) {
                size_t el = strlen(ents[k].from);
                if (n - i >= el && memcmp(s + i, ents[k].from, el) == 0) {
                    buf_append_char(&b, ents[k].to);
                    i += el - 1;
                    break;
                }
            }
            if (k < sizeof ents / sizeof ents[0]) {
                space = false;
                continue;
            }
        }
        if (c < 0x20 || c == 0x7f) {
            /* Runs of newlines and tabs collapse into one space. */
            if (!space && b.len)
                buf_append_char(&b, ' ');
            space = true;
            continue;
        }
        space = false;
        buf_append_char(&b, (char)c);
    }
    while (b.len && b.data[b.len - 1] == ' ')
        b.data[--b.len] = '\0';
    if (b.len >= EXCERPT_MAX)
        buf_append_str(&b, "...");
    free(reason);
    buf_append_str(&b, "");
    return buf_detach(&b);
}

/* ---- the management URL ---- */

/* Splits http://[user:pass@]host:port[/prefix] into f's fields. 0 or -1
 * (reported). */
static int parse_mgmt(fed *f, const char *url)
{
    const char *p;
    if (strncmp(url, "http://", 7) == 0) {
        p = url + 7;
    } else if (strncmp(url, "https://", 8) == 0) {
        cliutil_errorf(CMD,
                       "bad value for --mgmt: https is not supported; use the plain http listener "
                       "(e.g. http://user:pass@host:15672)");
        return -1;
    } else {
        cliutil_errorf(CMD, "bad value for --mgmt: '%s' (expected http://user:pass@host:15672)",
                       url);
        return -1;
    }
    size_t authlen = strcspn(p, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < authlen; i++)
        if (p[i] == '@')
            at = p + i;
    const char *host = at ? at + 1 : p;
    size_t hostlen = authlen - (size_t)(host - p);
    if (hostlen == 0) {
        cliutil_errorf(CMD, "bad value for --mgmt: '%s' has no host", url);
        return -1;
    }
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *uend = colon ? colon : at;
        f->user = pct_decode(p, (size_t)(uend - p));
        f->pass = colon ? pct_decode(colon + 1, (size_t)(at - colon - 1)) : xstrdup("");
    }
    buf b = BUF_INIT;
    buf_append_str(&b, "http://");
    buf_append(&b, host, hostlen);
    f->base = buf_detach(&b);
    buf_append_str(&b, "http://");
    buf_append(&b, p, authlen);
    f->auth_url = buf_detach(&b);

    /* A path is a prefix (the API behind a reverse proxy); a trailing
     * "/api" or "/" is dropped so that ".../api/" works too. */
    const char *path = p + authlen;
    size_t plen = strcspn(path, "?#");
    while (plen && path[plen - 1] == '/')
        plen--;
    if (plen >= 4 && memcmp(path + plen - 4, "/api", 4) == 0)
        plen -= 4;
    while (plen && path[plen - 1] == '/')
        plen--;
    f->prefix = xstrndup(path, plen);
    return 0;
}

/* Node names: letters, digits, '-' and '_' (as the node setting). */
static bool valid_name(const char *s)
{
    if (!*s || strlen(s) > 64)
        return false;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* NAME=amqp://... into f->peers. 0 or -1 (reported). */
static int add_peer(fed *f, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq) {
        cliutil_errorf(CMD, "bad value for --peer: '%s' (expected NAME=amqp://user:pass@host:5672)",
                       arg);
        return -1;
    }
    char *name = xstrndup(arg, (size_t)(eq - arg));
    const char *uri = eq + 1;
    if (!valid_name(name)) {
        cliutil_errorf(CMD, "bad peer name '%s' (letters, digits, '-' and '_', at most 64)", name);
        free(name);
        return -1;
    }
    bool amqp = strncmp(uri, "amqp://", 7) == 0 && uri[7];
    bool amqps = strncmp(uri, "amqps://", 8) == 0 && uri[8];
    if (!amqp && !amqps) {
        cliutil_errorf(CMD, "bad URL for peer %s: '%s' (expected amqp://user:pass@host:5672)", name,
                       uri);
        free(name);
        return -1;
    }
    /* "amqp://host:5672/" names the empty vhost in the AMQP URI spec, and the
     * federation plugin follows it (the link then fails with a bare
     * "not_allowed"), while restspy's own --amqp reads it as the default
     * vhost. The trailing '/' is dropped so that one URL means the same
     * thing everywhere. */
    size_t ulen = strlen(uri);
    const char *slash = strchr(uri + (amqp ? 7 : 8), '/');
    if (slash && slash == uri + ulen - 1)
        ulen--;
    for (size_t i = 0; i < f->npeers; i++) {
        if (strcmp(f->peers[i].name, name) == 0) {
            cliutil_errorf(CMD, "peer %s is given twice", name);
            free(name);
            return -1;
        }
    }
    f->peers = xrealloc(f->peers, (f->npeers + 1) * sizeof *f->peers);
    f->peers[f->npeers].name = name;
    f->peers[f->npeers].uri = xstrndup(uri, ulen);
    f->npeers++;
    return 0;
}

static void fed_free(fed *f)
{
    for (size_t i = 0; i < f->npeers; i++) {
        free(f->peers[i].name);
        free(f->peers[i].uri);
    }
    free(f->peers);
    free(f->base);
    free(f->user);
    free(f->pass);
    free(f->auth_url);
    free(f->prefix);
    free(f->vh);
    httpc_free(f->http);
}

/* ---- the declarations ---- */

/* "/api/<kind>/<vhost>/<name>" under f's prefix. Caller frees. */
static char *api_path(const fed *f, const char *kind, const char *name)
{
    buf b = BUF_INIT;
    buf_appendf(&b, "%s/api/%s/%s", f->prefix, kind, f->vh);
    if (name) {
        buf_append_char(&b, '/');
        append_pct(&b, name);
    }
    return buf_detach(&b);
}

/* Compact JSON of j (consumed). Caller frees. */
static char *dump(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!s)
        abort(); /* only on OOM: like x*alloc */
    return s;
}

static char *exchange_body(void)
{
    return dump(json_pack("{s:s, s:b, s:b, s:b, s:{}}", "type", "topic", "durable", 1,
                          "auto_delete", 0, "internal", 0, "arguments"));
}

/* The apply queue: its dead letters (rejected, or over a limit a user set)
 * go to restspy.dead with this node as routing key, into restspy.dead.<node>. */
static char *apply_queue_body(const fed *f)
{
    return dump(json_pack(
        "{s:b, s:b, s:{s:s, s:s, s:s}}", "durable", 1, "auto_delete", 0, "arguments",
        "x-queue-type", f->queue_type == QUEUE_QUORUM ? "quorum" : "classic",
        "x-dead-letter-exchange", MQ_EXCHANGE_DEAD, "x-dead-letter-routing-key", f->node));
}

/* Same type as the apply queue (as mq_declare_topology): dead letters
 * deserve the durability that quorum was chosen for. */
static char *dead_queue_body(const fed *f)
{
    return dump(json_pack("{s:b, s:b, s:{s:s}}", "durable", 1, "auto_delete", 0, "arguments",
                          "x-queue-type", f->queue_type == QUEUE_QUORUM ? "quorum" : "classic"));
}

static char *binding_body(const char *key)
{
    return dump(json_pack("{s:s, s:{}}", "routing_key", key, "arguments"));
}

/* The upstream's value: the peer's restspy.requests (never its inbound
 * exchange, so nothing is forwarded twice and no mesh can loop), acked to
 * the peer only once this broker has confirmed it (no loss on a crash
 * between the two), max-hops 1 (the default, spelled out: a message crosses
 * one link at most). trust-user-id off: the peer cannot vouch for users. */
static json_t *upstream_value(const peer *p)
{
    return json_pack("{s:s, s:s, s:s, s:i, s:b}", "uri", p->uri, "exchange", MQ_EXCHANGE_REQUESTS,
                     "ack-mode", "on-confirm", "max-hops", 1, "trust-user-id", 0);
}

static json_t *policy_definition(void)
{
    return json_pack("{s:s}", "federation-upstream-set", "all");
}

/* ---- running them ---- */

typedef struct call {
    const char *method;
    char *path; /* owned */
    char *body; /* owned; NULL = none */
    char *what; /* "exchange restspy.requests" for the output; owned */
} call;

static void call_free(call *c)
{
    free(c->path);
    free(c->body);
    free(c->what);
}

/* Sends one request; 2xx: 0 (and *out filled when out is given, else
 * freed). Anything else: reported as one line, -1. */
static int api_send(fed *f, const char *method, const char *path, const char *body,
                    httpc_response *out)
{
    record_headers h = {0};
    static const char ct[] = "Content-Type", json_ct[] = "application/json";
    static const char acc[] = "Accept";
    if (body)
        record_headers_add(&h, ct, sizeof ct - 1, json_ct, sizeof json_ct - 1);
    record_headers_add(&h, acc, sizeof acc - 1, json_ct, sizeof json_ct - 1);
    httpc_response r = {0};
    char err[256];
    int rc = httpc_request(f->http, method, path, &h, body, body ? strlen(body) : 0, &r, err,
                           sizeof err);
    record_headers_free(&h);
    if (rc != 0) {
        cliutil_errorf(CMD, "%s %s%s: %s", method, f->base, path, err);
        httpc_response_free(&r);
        return -1;
    }
    if (r.status / 100 != 2) {
        char *ex = body_excerpt(&r.body);
        const char *hint = "";
        if (r.status == 401)
            hint = " (check the user and password in --mgmt)";
        else if (strstr(ex, "component federation-upstream not found"))
            hint = " (enable the plugin: rabbitmq-plugins enable rabbitmq_federation "
                   "rabbitmq_federation_management)";
        else if (r.status == 404 && strstr(path, "/api/vhosts/"))
            hint = " (no such vhost: create it or give --vhost)";
        else if (strstr(ex, "inequivalent arg"))
            hint = " (it was declared differently before: delete it or keep its settings)";
        cliutil_errorf(CMD, "%s %s: %d %s%s", method, path, r.status, *ex ? ex : "(empty answer)",
                       hint);
        free(ex);
        httpc_response_free(&r);
        return -1;
    }
    if (out)
        *out = r;
    else
        httpc_response_free(&r);
    return 0;
}

/* A binding from exchange ex to queue q with key is created unless one with
 * that key exists (RabbitMQ treats a repeated binding as the same one, but
 * looking first keeps the output truthful and never relies on it). */
static int ensure_binding(fed *f, const char *ex, const char *q, const char *key)
{
    buf b = BUF_INIT;
    buf_appendf(&b, "%s/api/bindings/%s/e/", f->prefix, f->vh);
    append_pct(&b, ex);
    buf_append_str(&b, "/q/");
    append_pct(&b, q);
    char *path = buf_detach(&b);
    httpc_response r = {0};
    if (api_send(f, "GET", path, NULL, &r) != 0) {
        free(path);
        return -1;
    }
    json_t *list = json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, NULL);
    httpc_response_free(&r);
    bool present = false;
    if (!json_is_array(list)) {
        cliutil_errorf(CMD, "GET %s: the answer is not a JSON list", path);
        json_decref(list);
        free(path);
        return -1;
    }
    size_t i;
    json_t *it;
    json_array_foreach(list, i, it)
    {
        const char *k = json_string_value(json_object_get(it, "routing_key"));
        if (k && strcmp(k, key) == 0)
            present = true;
    }
    json_decref(list);
    int rc = 0;
    if (present) {
        printf("binding %s -> %s (%s): already there\n", ex, q, key);
    } else {
        char *body = binding_body(key);
        rc = api_send(f, "POST", path, body, NULL);
        free(body);
        if (rc == 0)
            printf("binding %s -> %s (%s): created\n", ex, q, key);
    }
    free(path);
    return rc;
}

static int run_api(fed *f, const call *ex, size_t nex, const call *qs, size_t nq,
                   const char *apply_q, const char *dead_q)
{
    char err[256];
    f->http = httpc_new(f->auth_url, API_TIMEOUT_MS, err, sizeof err);
    if (!f->http) {
        cliutil_errorf(CMD, "bad value for --mgmt: %s", err);
        return 2;
    }
    /* The vhost first: its absence would otherwise show up as a puzzling
     * 404 on the first exchange. */
    char *vpath = api_path(f, "vhosts", NULL);
    int rc = api_send(f, "GET", vpath, NULL, NULL);
    free(vpath);
    if (rc != 0)
        return 1;
    for (size_t i = 0; i < nex; i++) {
        if (api_send(f, ex[i].method, ex[i].path, ex[i].body, NULL) != 0)
            return 1;
        printf("%s: declared\n", ex[i].what);
    }
    for (size_t i = 0; i < nq; i++) {
        if (api_send(f, qs[i].method, qs[i].path, qs[i].body, NULL) != 0)
            return 1;
        printf("%s: declared (%s)\n", qs[i].what,
               f->queue_type == QUEUE_QUORUM ? "quorum" : "classic");
    }
    if (ensure_binding(f, MQ_EXCHANGE_INBOUND, apply_q, "#") != 0 ||
        ensure_binding(f, MQ_EXCHANGE_DEAD, dead_q, f->node) != 0)
        return 1;
    for (size_t i = 0; i < f->npeers; i++) {
        const peer *p = &f->peers[i];
        char *path = api_path(f, "parameters/federation-upstream", p->name);
        char *body =
            dump(json_pack("{s:s, s:s, s:s, s:o}", "vhost", f->vhost, "component",
                           "federation-upstream", "name", p->name, "value", upstream_value(p)));
        rc = api_send(f, "PUT", path, body, NULL);
        free(path);
        free(body);
        if (rc != 0)
            return 1;
        char *shown = mask_url(p->uri);
        printf("upstream %s: %s (exchange %s)\n", p->name, shown, MQ_EXCHANGE_REQUESTS);
        free(shown);
    }
    char *ppath = api_path(f, "policies", POLICY_NAME);
    char *pbody = dump(json_pack("{s:s, s:o, s:s, s:i}", "pattern", POLICY_PATTERN, "definition",
                                 policy_definition(), "apply-to", "exchanges", "priority", 0));
    rc = api_send(f, "PUT", ppath, pbody, NULL);
    free(ppath);
    free(pbody);
    if (rc != 0)
        return 1;
    printf("policy %s: %s federated from all upstreams of vhost %s\n", POLICY_NAME,
           MQ_EXCHANGE_INBOUND, f->vhost);
    return 0;
}

/* ---- --print ---- */

static void print_curl(const fed *f, const char *method, const char *path, const char *body)
{
    buf b = BUF_INIT;
    buf_appendf(&b, "curl -fsS -X %s", method);
    if (f->user) {
        buf_append_str(&b, " -u ");
        buf c = BUF_INIT;
        buf_appendf(&c, "%s:%s", f->user, f->pass);
        append_sq(&b, c.data);
        buf_free(&c);
    }
    if (body)
        buf_append_str(&b, " -H 'Content-Type: application/json'");
    buf_append_char(&b, ' ');
    buf c = BUF_INIT;
    buf_appendf(&c, "%s%s", f->base, path);
    append_sq(&b, c.data);
    buf_free(&c);
    if (body) {
        buf_append_str(&b, " -d ");
        append_sq(&b, body);
    }
    puts(b.data);
    buf_free(&b);
}

static void run_print(const fed *f, const call *ex, size_t nex, const call *qs, size_t nq,
                      const char *apply_q, const char *dead_q)
{
    printf("# restspy federate: node %s, vhost %s. Every command is idempotent.\n", f->node,
           f->vhost);
    printf("# exchanges, queues and bindings (management API):\n");
    for (size_t i = 0; i < nex; i++)
        print_curl(f, ex[i].method, ex[i].path, ex[i].body);
    for (size_t i = 0; i < nq; i++)
        print_curl(f, qs[i].method, qs[i].path, qs[i].body);
    /* A repeated POST of the same binding is a no-op in RabbitMQ, so the
     * printed form needs no look-up. */
    const char *bind[2][3] = {{MQ_EXCHANGE_INBOUND, apply_q, "#"},
                              {MQ_EXCHANGE_DEAD, dead_q, f->node}};
    for (size_t i = 0; i < 2; i++) {
        buf b = BUF_INIT;
        buf_appendf(&b, "%s/api/bindings/%s/e/", f->prefix, f->vh);
        append_pct(&b, bind[i][0]);
        buf_append_str(&b, "/q/");
        append_pct(&b, bind[i][1]);
        char *body = binding_body(bind[i][2]);
        print_curl(f, "POST", b.data, body);
        free(body);
        buf_free(&b);
    }
    printf("# federation (run on this site's broker):\n");
    for (size_t i = 0; i < f->npeers; i++) {
        buf b = BUF_INIT;
        buf_append_str(&b, "rabbitmqctl set_parameter -p ");
        append_sq(&b, f->vhost);
        buf_append_str(&b, " federation-upstream ");
        append_sq(&b, f->peers[i].name);
        buf_append_char(&b, ' ');
        char *v = dump(upstream_value(&f->peers[i]));
        append_sq(&b, v);
        free(v);
        puts(b.data);
        buf_free(&b);
    }
    buf b = BUF_INIT;
    buf_append_str(&b, "rabbitmqctl set_policy -p ");
    append_sq(&b, f->vhost);
    buf_append_str(&b, " --apply-to exchanges --priority 0 " POLICY_NAME " ");
    append_sq(&b, POLICY_PATTERN);
    buf_append_char(&b, ' ');
    char *d = dump(policy_definition());
    append_sq(&b, d);
    free(d);
    puts(b.data);
    buf_free(&b);
}

/* ---- main ---- */

/* node and queue_type through config_load, so that --config, RESTSPY_NODE
 * and RESTSPY_QUEUE_TYPE work as for every command. 0 or 2 (reported). */
static int load_settings(const char *config_file, const char *node, const char *qtype,
                         char *const *envp, config **out)
{
    const char *flags[] = {"--config", config_file, "--node", node, "--queue-type", qtype};
    if (cliutil_config_load(CMD, envp, flags, 6, out) != 0)
        return 2;
    if (!(*out)->node || !valid_name((*out)->node)) {
        cliutil_errorf(CMD, "no usable node name ('%s'): give --node NAME",
                       (*out)->node ? (*out)->node : "");
        config_unref(*out);
        *out = NULL;
        return 2;
    }
    return 0;
}

int federate_main(int argc, char **argv, char *const *envp)
{
    fed f = {0};
    const char *mgmt = NULL, *node = NULL, *qtype = NULL, *config_file = NULL, *v;
    f.vhost = "/";
    int rc = 2;
    config *c = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int m;
        if (cliutil_is_help(a)) {
            fputs(usage_text, stdout);
            rc = 0;
            goto out;
        }
        if (strcmp(a, "--print") == 0) {
            f.print = true;
            continue;
        }
        if ((m = cliutil_flag_value(CMD, argc, argv, &i, "--mgmt", &mgmt)) ||
            (m = cliutil_flag_value(CMD, argc, argv, &i, "--node", &node)) ||
            (m = cliutil_flag_value(CMD, argc, argv, &i, "--queue-type", &qtype)) ||
            (m = cliutil_flag_value(CMD, argc, argv, &i, "--vhost", &f.vhost)) ||
            (m = cliutil_flag_value(CMD, argc, argv, &i, "--config", &config_file))) {
            if (m < 0)
                goto out;
            continue;
        }
        if ((m = cliutil_flag_value(CMD, argc, argv, &i, "--peer", &v))) {
            if (m < 0 || add_peer(&f, v) != 0)
                goto out;
            continue;
        }
        cliutil_bad_arg(CMD, a);
        goto out;
    }
    if (!mgmt) {
        cliutil_errorf(CMD, "--mgmt URL is required (see restspy federate --help)");
        goto out;
    }
    if (!*f.vhost) {
        cliutil_errorf(CMD, "bad value for --vhost: empty");
        goto out;
    }
    if (parse_mgmt(&f, mgmt) != 0)
        goto out;
    if ((rc = load_settings(config_file, node, qtype, envp, &c)) != 0)
        goto out;
    f.node = c->node;
    f.queue_type = c->queue_type;
    rc = 2;
    for (size_t i = 0; i < f.npeers; i++) {
        if (strcmp(f.peers[i].name, f.node) == 0) {
            cliutil_errorf(CMD, "peer %s is this node: a site does not federate from itself",
                           f.node);
            goto out;
        }
    }
    buf vb = BUF_INIT;
    append_pct(&vb, f.vhost);
    f.vh = buf_detach(&vb);

    char apply_q[128], dead_q[128];
    snprintf(apply_q, sizeof apply_q, "restspy.apply.%s", f.node);
    snprintf(dead_q, sizeof dead_q, "restspy.dead.%s", f.node);
    const char *exn[3] = {MQ_EXCHANGE_REQUESTS, MQ_EXCHANGE_INBOUND, MQ_EXCHANGE_DEAD};
    call ex[3], qs[2];
    for (size_t i = 0; i < 3; i++) {
        ex[i].method = "PUT";
        ex[i].path = api_path(&f, "exchanges", exn[i]);
        ex[i].body = exchange_body();
        buf w = BUF_INIT;
        buf_appendf(&w, "exchange %s", exn[i]);
        ex[i].what = buf_detach(&w);
    }
    const char *qn[2] = {apply_q, dead_q};
    for (size_t i = 0; i < 2; i++) {
        qs[i].method = "PUT";
        qs[i].path = api_path(&f, "queues", qn[i]);
        qs[i].body = i == 0 ? apply_queue_body(&f) : dead_queue_body(&f);
        buf w = BUF_INIT;
        buf_appendf(&w, "queue %s", qn[i]);
        qs[i].what = buf_detach(&w);
    }

    if (f.print) {
        run_print(&f, ex, 3, qs, 2, apply_q, dead_q);
        rc = 0;
    } else {
        rc = run_api(&f, ex, 3, qs, 2, apply_q, dead_q);
    }
    for (size_t i = 0; i < 3; i++)
        call_free(&ex[i]);
    for (size_t i = 0; i < 2; i++)
        call_free(&qs[i]);
    if (fflush(stdout) != 0 && rc == 0) {
        cliutil_errorf(CMD, "cannot write output");
        rc = 1;
    }
out:
    config_unref(c);
    fed_free(&f);
    return rc;
}
