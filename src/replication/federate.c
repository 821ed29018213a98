/* federate: a site's broker set up for replication through the RabbitMQ
 * management HTTP API (or printed as commands); `restspy federate`, its
 * command line, is cli/cli_federate.c.
 *
 * What it sets up (docs/replication.md, "Topology"): this node's exchanges,
 * queues and bindings as mq_declare_topology declares them; for each peer a
 * durable queue restspy.out.<peer> bound to restspy.requests with "#" (it
 * holds every write made here until that peer's broker has it) and a
 * dynamic shovel restspy-to-<peer> that moves it to the peer's
 * restspy.inbound, acking here only once the peer's broker confirmed
 * (ack-mode on-confirm). Queues and shovels belong to restspy, not to a
 * link's lifecycle: a graceful stop, a restart or an upgrade of either
 * broker leaves them, and with them every message not yet delivered.
 *
 * Before a shovel may deliver, the peer's broker needs restspy.apply.<peer>
 * bound to restspy.inbound (a shovel does not publish as mandatory: an
 * exchange with no queue would drop what it brings). So each peer's broker
 * is looked at over AMQP with the peer's URL, and its topology is declared
 * there, as the peer's own restspy would, when that queue is missing.
 *
 * Sites set up by the restspy of before (exchange federation: an upstream
 * per peer and the policy restspy-inbound) are moved over in place: an old
 * upstream is removed once its peer holds this site's writes in its own
 * restspy.out.<this node> (it ran this version of federate), so that nothing
 * arrives twice for longer than the move and nothing is dropped meanwhile;
 * the policy goes with the last of them.
 *
 * Every step is idempotent, so the command can be re-run at any time (after
 * adding a peer, after a broker was rebuilt, on a live site): exchanges,
 * queues and shovels are PUT (RabbitMQ answers 204 when an equivalent one
 * exists and 400 "inequivalent arg" when it differs, which is reported as
 * is; an unchanged shovel keeps running), bindings are looked up before they
 * are created. The declarations must stay identical to mq_declare_topology's,
 * or the later declaration fails with PRECONDITION_FAILED. */
#include "replication/federate.h"

#include <assert.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "capture/config.h"
#include "replication/mgmt.h"
#include "replication/mq.h"
#include "base/util.h"

#define OLD_POLICY "restspy-inbound" /* restspy's federation policy (before issue 10) */
#define SHOVEL_RECONNECT_S 5
#define PEER_HEARTBEAT_S 10

/* One declaration, in the order they are made: a PUT of an exchange or a
 * queue, or a binding (looked up first, then POSTed). */
typedef struct step {
    char *path;      /* PUT: the object; binding: .../bindings/<vh>/e/<ex>/q/<q>; owned */
    char *body;      /* owned */
    char *what;      /* for the output; owned */
    const char *key; /* binding key; NULL for a PUT */
} step;

typedef struct fed {
    mgmt *g; /* the caller's */
    const federate_opts *o;
    const char *node;
    int queue_type;
    const federate_peer *peers; /* the caller's */
    size_t npeers;
    step *steps; /* owned */
    size_t nsteps;
} fed;

static const char *qtype_name(int t)
{
    return t == QUEUE_QUORUM ? "quorum" : "classic";
}

static void fed_free(fed *f)
{
    for (size_t i = 0; i < f->nsteps; i++) {
        free(f->steps[i].path);
        free(f->steps[i].body);
        free(f->steps[i].what);
    }
    free(f->steps);
}

/* ---- the declarations ---- */

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
    return dump(json_pack("{s:b, s:b, s:{s:s, s:s, s:s}}", "durable", 1, "auto_delete", 0,
                          "arguments", "x-queue-type", qtype_name(f->queue_type),
                          "x-dead-letter-exchange", MQ_EXCHANGE_DEAD, "x-dead-letter-routing-key",
                          f->node));
}

/* The dead queue and the out queues: the apply queue's type (as
 * mq_declare_topology): messages waiting for a peer or a person deserve the
 * durability that quorum was chosen for. No dead-lettering on the out
 * queues: nothing rejects there, the shovel requeues what it could not
 * deliver. */
static char *plain_queue_body(const fed *f)
{
    return dump(json_pack("{s:b, s:b, s:{s:s}}", "durable", 1, "auto_delete", 0, "arguments",
                          "x-queue-type", qtype_name(f->queue_type)));
}

static char *binding_body(const char *key)
{
    return dump(json_pack("{s:s, s:{}}", "routing_key", key, "arguments"));
}

static void add_put(fed *f, const char *kind, const char *name, char *body, const char *label)
{
    f->steps = xrealloc(f->steps, (f->nsteps + 1) * sizeof *f->steps);
    step *s = &f->steps[f->nsteps++];
    s->path = mgmt_path(f->g, kind, name);
    s->body = body;
    buf w = BUF_INIT;
    buf_appendf(&w, "%s %s", label, name);
    s->what = buf_detach(&w);
    s->key = NULL;
}

static void add_binding(fed *f, const char *ex, const char *queue, const char *key)
{
    f->steps = xrealloc(f->steps, (f->nsteps + 1) * sizeof *f->steps);
    step *s = &f->steps[f->nsteps++];
    buf b = BUF_INIT;
    buf_appendf(&b, "%s/api/bindings/%s/e/", f->g->prefix, f->g->vh);
    mgmt_append_pct(&b, ex);
    buf_append_str(&b, "/q/");
    mgmt_append_pct(&b, queue);
    s->path = buf_detach(&b);
    s->body = binding_body(key);
    buf_appendf(&b, "binding %s -> %s (%s)", ex, queue, key);
    s->what = buf_detach(&b);
    s->key = key;
}

/* The steps in the order mq_declare_topology makes them, restspy.inbound
 * last and bound at once (peers' shovels publish into it), then the out
 * queues and their bindings. */
static void plan(fed *f, const char *apply_q, const char *dead_q)
{
    add_put(f, "exchanges", MQ_EXCHANGE_REQUESTS, exchange_body(), "exchange");
    add_put(f, "exchanges", MQ_EXCHANGE_DEAD, exchange_body(), "exchange");
    add_put(f, "queues", apply_q, apply_queue_body(f), "queue");
    add_put(f, "queues", dead_q, plain_queue_body(f), "queue");
    add_binding(f, MQ_EXCHANGE_DEAD, dead_q, f->node);
    add_put(f, "exchanges", MQ_EXCHANGE_INBOUND, exchange_body(), "exchange");
    add_binding(f, MQ_EXCHANGE_INBOUND, apply_q, "#");
    for (size_t i = 0; i < f->npeers; i++) {
        char q[128];
        snprintf(q, sizeof q, FEDERATE_OUT_PREFIX "%s", f->peers[i].name);
        add_put(f, "queues", q, plain_queue_body(f), "queue");
        add_binding(f, MQ_EXCHANGE_REQUESTS, q, "#");
    }
}

/* The shovel's source: this broker, by a direct (in-node) connection to the
 * vhost. Caller frees. */
static char *local_uri(const fed *f)
{
    if (strcmp(f->g->vhost, "/") == 0)
        return xstrdup("amqp://");
    buf b = BUF_INIT;
    buf_append_str(&b, "amqp:///");
    mgmt_append_pct(&b, f->g->vhost);
    return buf_detach(&b);
}

/* The shovel of peer p: restspy.out.<peer> here to the peer's
 * restspy.inbound, routing key and properties unchanged (no forward
 * headers: the protocol's headers only), acked here once the peer's broker
 * confirmed, never deleted, reconnecting by itself. */
static json_t *shovel_value(const fed *f, const federate_peer *p)
{
    char q[128];
    snprintf(q, sizeof q, FEDERATE_OUT_PREFIX "%s", p->name);
    char *src = local_uri(f);
    json_t *v = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:b}", "src-protocol",
                          "amqp091", "src-uri", src, "src-queue", q, "src-delete-after", "never",
                          "dest-protocol", "amqp091", "dest-uri", p->uri, "dest-exchange",
                          MQ_EXCHANGE_INBOUND, "ack-mode", "on-confirm", "reconnect-delay",
                          SHOVEL_RECONNECT_S, "dest-add-forward-headers", 0);
    free(src);
    return v;
}

/* ---- the peers' brokers (API mode only) ---- */

/* Whether queue exists on the peer's broker: 1, 0, -1 with err. One
 * connection per question: a "no" closes the channel. */
static int peer_has(const char *url, const char *queue, char *err, size_t errlen)
{
    mq *m = mq_connect(url, PEER_HEARTBEAT_S, "restspy federate", err, errlen);
    if (!m)
        return -1;
    int rc = mq_queue_exists(m, queue, err, errlen);
    mq_close(m);
    return rc;
}

/* Makes sure the peer's broker has somewhere to put what the shovel brings
 * (see the top of the file), and tells whether it holds this site's writes
 * already (*holds_ours: its restspy.out.<node> exists). 0, or -1 when the
 * peer could not be looked at (the reason in err). */
static int peer_prepare(const fed *f, const federate_peer *p, bool *holds_ours, char *err,
                        size_t errlen)
{
    *holds_ours = false;
    if (strncmp(p->uri, "amqps://", 8) == 0) {
        snprintf(err, errlen, "amqps:// is not supported by restspy's own client");
        return -1;
    }
    /* The URL the shovel uses: the same broker and vhost. */
    const char *url = p->uri;
    char apply_q[128], ours[128];
    snprintf(apply_q, sizeof apply_q, "restspy.apply.%s", p->name);
    snprintf(ours, sizeof ours, FEDERATE_OUT_PREFIX "%s", f->node);
    int rc = -1;
    int has = peer_has(url, apply_q, err, errlen);
    if (has == 0) {
        mq *m = mq_connect(url, PEER_HEARTBEAT_S, "restspy federate", err, errlen);
        if (m && mq_declare_topology(m, p->name, f->queue_type, err, errlen) == 0) {
            printf("peer %s: declared %s on its broker (%s, bound to %s)\n", p->name, apply_q,
                   qtype_name(f->queue_type), MQ_EXCHANGE_INBOUND);
            has = 1;
        }
        mq_close(m);
    } else if (has == 1) {
        printf("peer %s: %s is there\n", p->name, apply_q);
    }
    if (has == 1) {
        int h = peer_has(url, ours, err, errlen);
        if (h >= 0) {
            *holds_ours = h == 1;
            rc = 0;
        }
    }
    return rc;
}

/* ---- running them ---- */

/* Tells o->warn (if any) one line: something that does not stop the run. */
static void warn(const fed *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void warn(const fed *f, const char *fmt, ...)
{
    if (!f->o->warn)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    f->o->warn(f->o->warn_ud, line);
}

/* A binding is created unless one with that key exists (RabbitMQ treats a
 * repeated binding as the same one, but looking first keeps the output
 * truthful and never relies on it). */
static int ensure_binding(fed *f, const step *s)
{
    json_t *list = NULL;
    if (mgmt_get_json(f->g, s->path, false, &list) != 0)
        return -1;
    if (!json_is_array(list)) {
        mgmt_fail(f->g, "GET %s: the answer is not a JSON list", s->path);
        json_decref(list);
        return -1;
    }
    bool present = false;
    size_t i;
    json_t *it;
    json_array_foreach(list, i, it)
    {
        const char *k = json_string_value(json_object_get(it, "routing_key"));
        if (k && strcmp(k, s->key) == 0)
            present = true;
    }
    json_decref(list);
    if (present) {
        printf("%s: already there\n", s->what);
        return 0;
    }
    if (mgmt_send(f->g, "POST", s->path, s->body, false, NULL) != 0)
        return -1;
    printf("%s: created\n", s->what);
    return 0;
}

static int put_shovel(fed *f, const federate_peer *p)
{
    char name[128];
    snprintf(name, sizeof name, FEDERATE_SHOVEL_PREFIX "%s", p->name);
    char *path = mgmt_path(f->g, "parameters/shovel", name);
    char *body = dump(json_pack("{s:s, s:s, s:s, s:o}", "vhost", f->g->vhost, "component", "shovel",
                                "name", name, "value", shovel_value(f, p)));
    int rc = mgmt_send(f->g, "PUT", path, body, false, NULL);
    free(path);
    free(body);
    if (rc != 0)
        return -1;
    char *shown = mgmt_mask_url(p->uri);
    printf("shovel %s: " FEDERATE_OUT_PREFIX "%s -> %s %s (ack-mode on-confirm)\n", name, p->name,
           shown, MQ_EXCHANGE_INBOUND);
    free(shown);
    return 0;
}

/* Removes the federation of an older restspy (see the top of the file):
 * each upstream on restspy.requests whose peer holds our writes already,
 * then the policy once none is left. 0 or -1 (told). */
static int retire_federation(fed *f, const bool *holds_ours)
{
    char *path = mgmt_path(f->g, "parameters/federation-upstream", NULL);
    json_t *list = NULL;
    int rc = mgmt_get_json(f->g, path, true, &list);
    free(path);
    if (rc < 0)
        return -1;
    size_t kept = 0, i;
    json_t *it;
    json_array_foreach(list, i, it) /* a NULL or non-array list: no iteration */
    {
        const char *name = json_string_value(json_object_get(it, "name"));
        const char *ex =
            json_string_value(json_object_get(json_object_get(it, "value"), "exchange"));
        if (!name || !ex || strcmp(ex, MQ_EXCHANGE_REQUESTS) != 0)
            continue; /* not restspy's */
        size_t k = 0;
        while (k < f->npeers && strcmp(f->peers[k].name, name) != 0)
            k++;
        if (k == f->npeers) {
            printf("federation upstream %s (older restspy): not a --peer here, left as is\n", name);
            kept++;
        } else if (!holds_ours[k]) {
            printf("federation upstream %s (older restspy): kept until %s runs this restspy "
                   "federate (its writes still come through it); run restspy federate here "
                   "again then\n",
                   name, name);
            kept++;
        } else {
            char *up = mgmt_path(f->g, "parameters/federation-upstream", name);
            rc = mgmt_send(f->g, "DELETE", up, NULL, true, NULL);
            free(up);
            if (rc < 0)
                break;
            printf("federation upstream %s (older restspy): removed (%s's writes come through "
                   "its shovel now)\n",
                   name, name);
        }
    }
    json_decref(list);
    if (rc < 0)
        return -1;
    if (kept == 0) {
        char *pp = mgmt_path(f->g, "policies", OLD_POLICY);
        rc = mgmt_send(f->g, "DELETE", pp, NULL, true, NULL);
        free(pp);
        if (rc < 0)
            return -1;
        if (rc == 0)
            printf("policy %s (older restspy's federation): removed\n", OLD_POLICY);
    }
    return 0;
}

static int run_api(fed *f)
{
    if (mgmt_connect(f->g) != 0)
        return 2;
    /* The vhost first: its absence would otherwise show up as a puzzling
     * 404 on the first exchange. */
    char *vpath = mgmt_path(f->g, "vhosts", NULL);
    int rc = mgmt_send(f->g, "GET", vpath, NULL, false, NULL);
    free(vpath);
    if (rc != 0)
        return 1;
    for (size_t i = 0; i < f->nsteps; i++) {
        const step *s = &f->steps[i];
        if (s->key) {
            if (ensure_binding(f, s) != 0)
                return 1;
        } else {
            if (mgmt_send(f->g, "PUT", s->path, s->body, false, NULL) != 0)
                return 1;
            printf("%s: declared\n", s->what);
        }
    }
    bool *holds_ours = xcalloc(f->npeers ? f->npeers : 1, sizeof *holds_ours);
    rc = 0;
    for (size_t i = 0; i < f->npeers && rc == 0; i++) {
        char err[512];
        if (peer_prepare(f, &f->peers[i], &holds_ours[i], err, sizeof err) != 0)
            warn(f,
                 "peer %s: its broker was not looked at (%s); the shovel delivers once it "
                 "answers, provided restspy.apply.%s exists there (run restspy federate there)",
                 f->peers[i].name, err, f->peers[i].name);
        if (put_shovel(f, &f->peers[i]) != 0)
            rc = 1;
    }
    if (rc == 0 && retire_federation(f, holds_ours) != 0)
        rc = 1;
    free(holds_ours);
    return rc;
}

/* ---- --print ---- */

static void run_print(const fed *f)
{
    printf("# restspy federate: node %s, vhost %s. Every command is idempotent.\n", f->node,
           f->g->vhost);
    printf("# exchanges, queues and bindings (management API):\n");
    /* A repeated POST of the same binding is a no-op in RabbitMQ, so the
     * printed form needs no look-up. */
    for (size_t i = 0; i < f->nsteps; i++)
        mgmt_print_curl(f->g, f->steps[i].key ? "POST" : "PUT", f->steps[i].path, f->steps[i].body);
    if (f->npeers)
        printf("# shovels (run on this site's broker). Before they deliver, each peer's\n"
               "# broker needs restspy.apply.<peer> bound to restspy.inbound (restspy\n"
               "# federate or restspy replicate ran there).\n");
    for (size_t i = 0; i < f->npeers; i++) {
        buf b = BUF_INIT;
        buf_append_str(&b, "rabbitmqctl set_parameter -p ");
        mgmt_append_sq(&b, f->g->vhost);
        buf_appendf(&b, " shovel " FEDERATE_SHOVEL_PREFIX "%s ", f->peers[i].name);
        char *v = dump(shovel_value(f, &f->peers[i]));
        mgmt_append_sq(&b, v);
        free(v);
        puts(b.data);
        buf_free(&b);
    }
    printf("# moving from an older restspy's federation: once a peer's broker has\n"
           "# restspy.out.%s (federate ran there), remove its upstream, then the policy:\n"
           "#   rabbitmqctl clear_parameter -p '%s' federation-upstream PEER\n"
           "#   rabbitmqctl clear_policy -p '%s' " OLD_POLICY "\n",
           f->node, f->g->vhost, f->g->vhost);
}

/* ---- the entry ---- */

int federate_run(mgmt *g, const federate_opts *o)
{
    assert(o->node && (o->peers || !o->npeers));
    fed f = {.g = g,
             .o = o,
             .node = o->node,
             .queue_type = o->queue_type,
             .peers = o->peers,
             .npeers = o->npeers};
    char apply_q[128], dead_q[128];
    snprintf(apply_q, sizeof apply_q, "restspy.apply.%s", f.node);
    snprintf(dead_q, sizeof dead_q, "restspy.dead.%s", f.node);
    plan(&f, apply_q, dead_q);
    int rc = 0;
    if (o->print)
        run_print(&f);
    else
        rc = run_api(&f);
    fed_free(&f);
    return rc;
}
