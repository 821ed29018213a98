/* cli_replication: `restspy replication status` and `restspy replication dead`.
 *
 * status reads the store (opened read-only, so it runs next to the proxy
 * and the replicator that write the same file) and, with --mgmt, what this
 * site's broker holds for each peer (its queue restspy.out.<peer> and the
 * shovel draining it, through the management API). dead talks to the broker: it
 * takes every message of restspy.dead.<node> with basic.get and no ack, lists
 * them, and gives each back (reject with requeue) unless it is being retried;
 * a retried message is republished to restspy.apply.<node> and acked out of
 * the dead queue only once the broker confirmed the republish, so a crash at
 * any point leaves it in one queue or the other (at worst in both: the
 * replicator's ledger makes that harmless). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "buf.h"
#include "cliutil.h"
#include "config.h"
#include "mgmt.h"
#include "mq.h"
#include "repl_msg.h"
#include "store.h"
#include "util.h"

#define CONFIRM_WAIT_MS 10000 /* how long a retry waits for the broker's confirms */

/* A duration in µs as "850ms", "12.3s", "4m05s", "3h12m", "2d04h". */
static void fmt_age(int64_t us, char *out, size_t len)
{
    if (us < 0)
        us = 0;
    int64_t s = us / 1000000;
    if (us < 1000000)
        snprintf(out, len, "%lldms", (long long)(us / 1000));
    else if (s < 60)
        snprintf(out, len, "%.1fs", (double)us / 1e6);
    else if (s < 3600)
        snprintf(out, len, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
    else if (s < 86400)
        snprintf(out, len, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
    else
        snprintf(out, len, "%lldd%02lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
}

/* Appends s (NULL: "-") with control bytes as \xHH, so broker-supplied text
 * (a reason quoting an upstream body) cannot drive the terminal. */
static void append_safe(buf *b, const char *s)
{
    if (s)
        cliutil_append_safe(b, s, strlen(s), false);
    else
        buf_append_char(b, '-');
}

/* ---- status ---- */

static const char status_usage[] =
    "usage: restspy replication status [options]\n"
    "\n"
    "Shows the replication figures kept in the store: the outbox (requests\n"
    "waiting for the broker), the last publish the broker confirmed, and what\n"
    "this site's replicator applied, skipped as duplicates and dead-lettered.\n"
    "With --mgmt, also what this site's broker holds for each peer: the writes\n"
    "in its queue restspy.out.<peer> that the peer's broker does not have yet,\n"
    "since when (the oldest one's time), and the state of the shovel moving\n"
    "them (the management API's figures are a few seconds old).\n"
    "\n"
    "  --store URL     store to read (default: the store setting, sqlite:restspy.db)\n"
    "  --config FILE   config file whose store setting to use\n"
    "  --mgmt URL      management API of this site's broker,\n"
    "                  http://user:pass@host:15672 (as restspy federate)\n"
    "  --vhost V       its virtual host (default /)\n"
    "  --json          one JSON object\n"
    "  -h, --help      show this help\n";

/* Appends "key": value, or null when the figure is unknown (0 = never). */
static void json_time(buf *b, const char *key, int64_t us)
{
    buf_appendf(b, ",\"%s\":", key);
    if (us)
        buf_append_i64(b, us);
    else
        buf_append_str(b, "null");
}

static void json_age(buf *b, const char *key, int64_t since_us, int64_t now)
{
    buf_appendf(b, ",\"%s\":", key);
    if (since_us)
        buf_appendf(b, "%.3f", (double)(now - since_us) / 1e6);
    else
        buf_append_str(b, "null");
}

/* ---- status: what the broker holds for each peer (--mgmt) ---- */

#define OUT_PREFIX "restspy.out."
#define SHOVEL_PREFIX "restspy-to-"

typedef struct peer_hold {
    char *peer;        /* owned */
    bool has_queue;    /* restspy.out.<peer> exists */
    int64_t held;      /* messages in it (ready + unacked); -1 = not counted yet */
    int64_t oldest_us; /* timestamp of its first message; 0 = none or unknown */
    char *shovel;      /* restspy-to-<peer>'s state; NULL = no such shovel; owned */
    char *reason;      /* why a shovel is not running, when told; owned */
} peer_hold;

typedef struct peer_holds {
    peer_hold *v;
    size_t n;
    bool shovels_known; /* false: the shovel management plugin did not answer */
} peer_holds;

static void peers_free(peer_holds *h)
{
    for (size_t i = 0; i < h->n; i++) {
        free(h->v[i].peer);
        free(h->v[i].shovel);
        free(h->v[i].reason);
    }
    free(h->v);
}

/* The entry of peer (added when new). */
static peer_hold *peer_entry(peer_holds *h, const char *peer)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->v[i].peer, peer) == 0)
            return &h->v[i];
    h->v = xrealloc(h->v, (h->n + 1) * sizeof *h->v);
    peer_hold *e = &h->v[h->n++];
    memset(e, 0, sizeof *e);
    e->peer = xstrdup(peer);
    e->held = -1;
    return e;
}

/* A JSON integer field, or dflt when absent or not a number. */
static int64_t json_i64(const json_t *o, const char *key, int64_t dflt)
{
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? (int64_t)json_number_value(v) : dflt;
}

/* The out queues: their depth and the timestamp of their first message
 * (the message's timestamp property, the write's time at its origin: the
 * management API's head_message_timestamp, in seconds). */
static int peers_queues(mgmt *g, peer_holds *h)
{
    char *path = mgmt_path(g, "queues", NULL);
    buf b = BUF_INIT;
    buf_appendf(&b, "%s?columns=name,messages,head_message_timestamp", path);
    free(path);
    json_t *list = NULL;
    int rc = mgmt_get_json(g, b.data, false, &list);
    buf_free(&b);
    if (rc != 0)
        return -1;
    size_t i;
    json_t *q;
    json_array_foreach(list, i, q)
    {
        const char *name = json_string_value(json_object_get(q, "name"));
        if (!name || strncmp(name, OUT_PREFIX, strlen(OUT_PREFIX)) != 0)
            continue;
        peer_hold *e = peer_entry(h, name + strlen(OUT_PREFIX));
        e->has_queue = true;
        e->held = json_i64(q, "messages", -1);
        int64_t ts = json_i64(q, "head_message_timestamp", 0);
        e->oldest_us = ts > 0 ? ts * 1000000 : 0;
    }
    json_decref(list);
    return 0;
}

/* The shovels restspy-to-<peer> and their states (none known when the
 * shovel management plugin is not there: 404). */
static int peers_shovels(mgmt *g, peer_holds *h)
{
    char *path = mgmt_path(g, "shovels", NULL);
    json_t *list = NULL;
    int rc = mgmt_get_json(g, path, true, &list);
    free(path);
    if (rc < 0)
        return -1;
    h->shovels_known = rc == 0;
    size_t i;
    json_t *sh;
    json_array_foreach(list, i, sh)
    {
        const char *name = json_string_value(json_object_get(sh, "name"));
        const char *state = json_string_value(json_object_get(sh, "state"));
        if (!name || strncmp(name, SHOVEL_PREFIX, strlen(SHOVEL_PREFIX)) != 0)
            continue;
        peer_hold *e = peer_entry(h, name + strlen(SHOVEL_PREFIX));
        free(e->shovel);
        e->shovel = xstrdup(state ? state : "unknown");
        const char *why = json_string_value(json_object_get(sh, "reason"));
        free(e->reason);
        e->reason = why ? xstrdup(why) : NULL;
    }
    json_decref(list);
    return 0;
}

static int peer_cmp(const void *a, const void *b)
{
    return strcmp(((const peer_hold *)a)->peer, ((const peer_hold *)b)->peer);
}

/* Fills h from the broker's management API. 0, 1 (the API failed) or 2 (a
 * bad URL), told. */
static int peers_collect(const char *cmd, const char *url, const char *vhost, peer_holds *h)
{
    mgmt g;
    int rc = 2;
    if (mgmt_init(&g, cmd, url, vhost) == 0 && mgmt_connect(&g) == 0)
        rc = peers_queues(&g, h) == 0 && peers_shovels(&g, h) == 0 ? 0 : 1;
    mgmt_free(&g);
    if (h->n > 1)
        qsort(h->v, h->n, sizeof *h->v, peer_cmp);
    return rc;
}

/* "running", "starting", "terminated (reason)", "none" or "unknown". */
static void shovel_state(const peer_holds *h, const peer_hold *e, buf *out)
{
    if (!h->shovels_known) {
        buf_append_str(out, "unknown (shovel management plugin not enabled)");
        return;
    }
    if (!e->shovel) {
        buf_append_str(out, "none (run restspy federate)");
        return;
    }
    append_safe(out, e->shovel);
    if (e->reason && strcmp(e->shovel, "running") != 0) {
        buf_append_str(out, " (");
        append_safe(out, e->reason);
        buf_append_char(out, ')');
    }
}

static void peers_print_text(const peer_holds *h, int64_t now)
{
    if (h->n == 0) {
        printf("peers                none (no " OUT_PREFIX "<peer> queue: run restspy federate)\n");
        return;
    }
    for (size_t i = 0; i < h->n; i++) {
        const peer_hold *e = &h->v[i];
        buf line = BUF_INIT;
        buf_append_str(&line, "peer ");
        append_safe(&line, e->peer);
        while (line.len < 21)
            buf_append_char(&line, ' ');
        if (!e->has_queue)
            buf_append_str(&line, "held -, no queue " OUT_PREFIX "<peer> (run restspy federate)");
        else if (e->held < 0)
            buf_append_str(&line, "held - (not counted yet)");
        else
            buf_appendf(&line, "held %lld", (long long)e->held);
        if (e->held > 0 && e->oldest_us) {
            char a[32];
            fmt_age(now - e->oldest_us, a, sizeof a);
            buf_appendf(&line, ", oldest %s", a);
        }
        buf_append_str(&line, ", shovel ");
        shovel_state(h, e, &line);
        puts(line.data);
        buf_free(&line);
    }
}

/* ,"peers":[{...}, ...] */
static void peers_append_json(buf *b, const peer_holds *h, int64_t now)
{
    buf_append_str(b, ",\"peers\":[");
    for (size_t i = 0; i < h->n; i++) {
        const peer_hold *e = &h->v[i];
        if (i)
            buf_append_char(b, ',');
        buf_append_str(b, "{\"peer\":");
        buf_append_json_str(b, e->peer, strlen(e->peer));
        buf_append_str(b, ",\"held\":");
        if (e->has_queue && e->held >= 0)
            buf_append_i64(b, e->held);
        else
            buf_append_str(b, "null");
        bool oldest = e->held > 0 && e->oldest_us;
        json_time(b, "oldest_us", oldest ? e->oldest_us : 0);
        json_age(b, "oldest_age_s", oldest ? e->oldest_us : 0, now);
        buf_append_str(b, ",\"queue\":");
        buf_append_str(b, e->has_queue ? "true" : "false");
        buf_append_str(b, ",\"shovel\":");
        if (h->shovels_known && e->shovel)
            buf_append_json_str(b, e->shovel, strlen(e->shovel));
        else
            buf_append_str(b, "null");
        buf_append_str(b, ",\"shovel_reason\":");
        if (e->reason)
            buf_append_json_str(b, e->reason, strlen(e->reason));
        else
            buf_append_str(b, "null");
        buf_append_char(b, '}');
    }
    buf_append_char(b, ']');
}

/* peers: NULL without --mgmt. */
static void print_status_json(const store_repl_stats *st, const peer_holds *peers, int64_t now)
{
    buf b = BUF_INIT;
    buf_appendf(&b, "{\"outbox_depth\":%lld", (long long)st->outbox_depth);
    json_time(&b, "oldest_unpublished_us", st->oldest_unpublished_us);
    json_age(&b, "oldest_unpublished_age_s", st->oldest_unpublished_us, now);
    json_time(&b, "last_confirmed_us", st->last_confirmed_us);
    buf_append_str(&b, ",\"last_confirmed_id\":");
    if (st->last_confirmed_id[0])
        buf_append_json_str(&b, st->last_confirmed_id, strlen(st->last_confirmed_id));
    else
        buf_append_str(&b, "null");
    buf_appendf(&b,
                ",\"published\":%lld,\"not_replicated\":%lld,\"applied\":%lld,"
                "\"deduplicated\":%lld,\"dead_lettered\":%lld",
                (long long)st->published, (long long)st->not_replicated, (long long)st->applied,
                (long long)st->deduplicated, (long long)st->dead_lettered);
    json_age(&b, "replicator_lag_s", st->last_applied_msg_us, now);
    json_time(&b, "last_applied_us", st->last_applied_us);
    json_time(&b, "last_applied_msg_us", st->last_applied_msg_us);
    if (peers)
        peers_append_json(&b, peers, now);
    buf_append_char(&b, '}');
    puts(b.data);
    buf_free(&b);
}

/* "2026-11-27 05:46:18 (12.3s ago)" or "never". */
static void when(int64_t us, int64_t now, char *out, size_t len)
{
    if (!us) {
        snprintf(out, len, "never");
        return;
    }
    char t[32], a[32];
    cliutil_fmt_local(us, false, t, sizeof t, NULL);
    fmt_age(now - us, a, sizeof a);
    snprintf(out, len, "%s (%s ago)", t, a);
}

static void print_status_text(const store_repl_stats *st, int64_t now)
{
    char w[96], a[32];
    printf("outbox depth         %lld\n", (long long)st->outbox_depth);
    if (st->oldest_unpublished_us) {
        fmt_age(now - st->oldest_unpublished_us, a, sizeof a);
        printf("oldest unpublished   %s\n", a);
    } else {
        printf("oldest unpublished   -\n");
    }
    when(st->last_confirmed_us, now, w, sizeof w);
    printf("last confirmed       %s", w);
    if (st->last_confirmed_id[0]) {
        buf b = BUF_INIT;
        append_safe(&b, st->last_confirmed_id);
        printf(", id %s", b.data);
        buf_free(&b);
    }
    printf("\npublished            %lld\n", (long long)st->published);
    printf("not replicated       %lld\n", (long long)st->not_replicated);
    printf("applied              %lld\n", (long long)st->applied);
    printf("deduplicated         %lld\n", (long long)st->deduplicated);
    printf("dead-lettered        %lld\n", (long long)st->dead_lettered);
    if (st->last_applied_msg_us) {
        fmt_age(now - st->last_applied_msg_us, a, sizeof a);
        printf("replicator lag       %s\n", a);
    } else {
        printf("replicator lag       -\n");
    }
    when(st->last_applied_us, now, w, sizeof w);
    printf("last applied         %s\n", w);
}

static int cmd_status(int argc, char **argv, char *const *envp)
{
    static const char cmd[] = "replication status";
    cliutil_read_opts ro = {0};
    const char *mgmt_url = NULL, *vhost = "/";
    for (int i = 1; i < argc; i++) {
        int m;
        if (cliutil_is_help(argv[i])) {
            fputs(status_usage, stdout);
            return 0;
        }
        if ((m = cliutil_read_opt(cmd, argc, argv, &i, &ro)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--mgmt", &mgmt_url)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--vhost", &vhost))) {
            if (m < 0)
                return 2;
            continue;
        }
        return cliutil_bad_arg(cmd, argv[i]);
    }
    if (!*vhost) {
        cliutil_errorf(cmd, "bad value for --vhost: empty");
        return 2;
    }

    store *s = NULL;
    int rc = cliutil_open_store(cmd, &ro, envp, "there are no replication figures", &s);
    if (rc)
        return rc;
    char err[512];
    store_repl_stats st;
    rc = store_repl_stats_get(s, &st, err, sizeof err);
    store_close(s);
    if (rc != 0) {
        cliutil_errorf(cmd, "%s", err);
        return 1;
    }
    peer_holds peers = {0};
    if (mgmt_url && (rc = peers_collect(cmd, mgmt_url, vhost, &peers)) != 0) {
        peers_free(&peers);
        return rc;
    }
    int64_t now = util_now_us();
    if (ro.json) {
        print_status_json(&st, mgmt_url ? &peers : NULL, now);
    } else {
        print_status_text(&st, now);
        if (mgmt_url)
            peers_print_text(&peers, now);
    }
    peers_free(&peers);
    return cliutil_flush_stdout(cmd);
}

/* ---- dead ---- */

static const char dead_usage[] =
    "usage: restspy replication dead [options]\n"
    "\n"
    "Lists the messages this node's replicator dead-lettered (queue\n"
    "restspy.dead.<node>) and leaves them there, or retries them: a retried\n"
    "message goes back to restspy.apply.<node> and leaves the dead queue once\n"
    "the broker confirmed it.\n"
    "\n"
    "  --amqp URL      broker (default: the amqp setting)\n"
    "  --node NAME     whose dead letters (default: the node setting)\n"
    "  --config FILE   config file to take amqp and node from\n"
    "  --retry ID      retry the message with this id (or a unique prefix of 8+)\n"
    "  --all           retry every dead letter\n"
    "  --json          one JSON object per message\n"
    "  -h, --help      show this help\n";

typedef struct dead {
    mq_event ev; /* owns ev.msg and ev.reason */
    bool retry;
    bool confirmed; /* the republish was confirmed by the broker */
    uint64_t pub_tag;
} dead;

typedef struct deadlist {
    dead *v;
    size_t len, cap;
} deadlist;

static void deadlist_free(deadlist *l)
{
    for (size_t i = 0; i < l->len; i++) {
        repl_msg_free(l->v[i].ev.msg);
        free(l->v[i].ev.reason);
    }
    free(l->v);
}

/* Index of the message whose id is id or starts with it (8+ chars,
 * case-insensitive). -1 none, -2 ambiguous. */
static long find_dead(const deadlist *l, const char *id)
{
    size_t n = strlen(id);
    long found = -1;
    for (size_t i = 0; i < l->len; i++) {
        const char *mid = l->v[i].ev.msg->id;
        if (strcasecmp(mid, id) == 0)
            return (long)i;
        if (n >= 8 && strncasecmp(mid, id, n) == 0) {
            if (found >= 0)
                return -2;
            found = (long)i;
        }
    }
    return found;
}

static void print_dead_json(const dead *d)
{
    const repl_msg *m = d->ev.msg;
    buf b = BUF_INIT;
    buf_append_str(&b, "{\"id\":");
    buf_append_json_str(&b, m->id, strlen(m->id));
#define JSTR(key, v)                                                                               \
    do {                                                                                           \
        buf_append_str(&b, ",\"" key "\":");                                                       \
        if (v)                                                                                     \
            buf_append_json_str(&b, (v), strlen(v));                                               \
        else                                                                                       \
            buf_append_str(&b, "null");                                                            \
    } while (0)
    JSTR("origin", m->origin);
    JSTR("method", m->method);
    JSTR("target", m->target);
    buf_appendf(&b, ",\"timestamp\":%lld", (long long)m->timestamp);
    JSTR("reason", d->ev.reason);
#undef JSTR
    buf_appendf(&b, ",\"body_size\":%zu,\"retried\":%s}", m->body.len,
                d->retry && d->confirmed ? "true" : "false");
    puts(b.data);
    buf_free(&b);
}

static void print_dead_table(const deadlist *l)
{
    printf("%-*s  %-19s  %-12s  %-7s  %-30s  %s\n", UUID7_STR_LEN, "ID", "TIME", "ORIGIN", "METHOD",
           "TARGET", "REASON");
    for (size_t i = 0; i < l->len; i++) {
        const dead *d = &l->v[i];
        const repl_msg *m = d->ev.msg;
        char t[32];
        cliutil_fmt_local(m->timestamp * 1000000, false, t, sizeof t, NULL);
        buf id = BUF_INIT, origin = BUF_INIT, method = BUF_INIT, target = BUF_INIT,
            reason = BUF_INIT;
        append_safe(&id, m->id[0] ? m->id : NULL);
        append_safe(&origin, m->origin);
        append_safe(&method, m->method);
        append_safe(&target, m->target);
        append_safe(&reason, d->ev.reason);
        printf("%-*s  %-19s  %-12s  %-7s  %-30s  %s%s\n", UUID7_STR_LEN, id.data, t, origin.data,
               method.data, target.data, reason.data,
               d->retry && d->confirmed ? "  (retried)" : "");
        buf_free(&id);
        buf_free(&origin);
        buf_free(&method);
        buf_free(&target);
        buf_free(&reason);
    }
}

/* Republishes the messages marked retry to queue, with publisher confirms,
 * and waits for the broker to confirm them (d->confirmed). 0, or -1 with err
 * (a message left unconfirmed stays in the dead queue). */
static int republish(mq *m, deadlist *l, const char *queue, char *err, size_t errlen)
{
    if (mq_confirm_select(m, err, errlen) < 0)
        return -1;
    uint64_t tag = 0;
    size_t waiting = 0;
    for (size_t i = 0; i < l->len; i++) {
        dead *d = &l->v[i];
        if (!d->retry)
            continue;
        if (mq_publish_to_queue(m, queue, d->ev.msg, err, errlen) < 0)
            return -1;
        d->pub_tag = ++tag; /* confirms number publishes from 1 on the channel */
        waiting++;
    }
    int64_t deadline = util_mono_us() + CONFIRM_WAIT_MS * 1000LL;
    size_t nacked = 0;
    while (waiting) {
        int64_t left_ms = (deadline - util_mono_us()) / 1000;
        if (left_ms <= 0) {
            snprintf(err, errlen, "the broker did not confirm %zu republished message(s)", waiting);
            return -1;
        }
        mq_event ev;
        if (mq_poll(m, (int)left_ms, &ev, err, errlen) < 0)
            return -1;
        if (ev.kind == MQ_DELIVERY) { /* not expected: nothing is consumed */
            repl_msg_free(ev.msg);
            free(ev.reason);
            continue;
        }
        if (ev.kind != MQ_CONFIRM)
            continue;
        for (size_t i = 0; i < l->len; i++) {
            dead *d = &l->v[i];
            if (!d->retry || d->confirmed || !d->pub_tag)
                continue;
            if (d->pub_tag == ev.tag || (ev.multiple && d->pub_tag < ev.tag)) {
                d->pub_tag = 0; /* answered */
                waiting--;
                if (ev.nack)
                    nacked++;
                else
                    d->confirmed = true;
            }
        }
    }
    if (nacked) {
        snprintf(err, errlen, "the broker refused %zu republished message(s)", nacked);
        return -1;
    }
    return 0;
}

static int cmd_dead(int argc, char **argv, char *const *envp)
{
    static const char cmd[] = "replication dead";
    const char *amqp = NULL, *node = NULL, *config_file = NULL, *retry_id = NULL;
    bool json = false, all = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int m;
        if (cliutil_is_help(a)) {
            fputs(dead_usage, stdout);
            return 0;
        }
        if (strcmp(a, "--json") == 0) {
            json = true;
            continue;
        }
        if (strcmp(a, "--all") == 0) {
            all = true;
            continue;
        }
        if ((m = cliutil_flag_value(cmd, argc, argv, &i, "--amqp", &amqp)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--node", &node)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--config", &config_file)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--retry", &retry_id))) {
            if (m < 0)
                return 2;
            continue;
        }
        return cliutil_bad_arg(cmd, a);
    }
    if (retry_id && all) {
        cliutil_errorf(cmd, "--retry and --all exclude each other");
        return 2;
    }
    if (retry_id && !*retry_id) {
        cliutil_errorf(cmd, "bad value for --retry: empty");
        return 2;
    }

    const char *flags[] = {"--config", config_file, "--amqp", amqp, "--node", node};
    config *c = NULL;
    int rc = cliutil_config_load(cmd, envp, flags, 6, &c);
    if (rc)
        return rc;
    if (!c->amqp || !*c->amqp) {
        cliutil_errorf(cmd, "no broker: give --amqp URL (or amqp in the config, RESTSPY_AMQP)");
        config_unref(c);
        return 2;
    }
    char dead_q[300], apply_q[300], err[512];
    snprintf(dead_q, sizeof dead_q, "restspy.dead.%s", c->node);
    snprintf(apply_q, sizeof apply_q, "restspy.apply.%s", c->node);
    unsigned hb = (unsigned)(c->amqp_heartbeat_ms / 1000);
    mq *m = mq_connect(c->amqp, hb, "restspy replication dead", err, sizeof err);
    if (!m) {
        cliutil_errorf(cmd, "%s", err);
        config_unref(c);
        return 1;
    }

    /* Take them all (unacked, so a crash of this command gives them back),
     * then decide. */
    deadlist l = {0};
    rc = 0;
    for (;;) {
        mq_event ev;
        int got = mq_get(m, dead_q, &ev, err, sizeof err);
        if (got < 0) {
            cliutil_errorf(cmd, "%s", err);
            rc = 1;
            goto out;
        }
        if (got == 0)
            break;
        if (l.len == l.cap) {
            l.cap = l.cap ? l.cap * 2 : 16;
            l.v = xrealloc(l.v, l.cap * sizeof *l.v);
        }
        memset(&l.v[l.len], 0, sizeof l.v[0]);
        l.v[l.len++].ev = ev;
    }

    if (retry_id) {
        long k = find_dead(&l, retry_id);
        if (k == -2) {
            cliutil_errorf(cmd, "id prefix %s is ambiguous", retry_id);
            rc = 1;
        } else if (k < 0) {
            cliutil_errorf(cmd, "no dead letter with id %s in %s", retry_id, dead_q);
            rc = 1;
        } else {
            l.v[k].retry = true;
        }
    } else if (all) {
        for (size_t i = 0; i < l.len; i++)
            l.v[i].retry = true;
    }
    bool any_retry = false;
    for (size_t i = 0; i < l.len; i++)
        any_retry |= l.v[i].retry;
    if (rc == 0 && any_retry) {
        /* The apply queue must exist, or the default exchange would drop
         * the republish while confirming it. */
        if (mq_declare_topology(m, c->node, c->queue_type, err, sizeof err) < 0 ||
            republish(m, &l, apply_q, err, sizeof err) < 0) {
            cliutil_errorf(cmd, "%s", err);
            rc = 1;
        }
    }
    /* Confirmed republishes leave the dead queue; everything else goes back
     * as it was. After a connection failure the broker requeues whatever
     * was not acked by itself. */
    for (size_t i = 0; i < l.len; i++) {
        dead *d = &l.v[i];
        int r = d->retry && d->confirmed ? mq_ack(m, d->ev.tag, err, sizeof err)
                                         : mq_reject(m, d->ev.tag, true, err, sizeof err);
        if (r < 0) {
            if (rc == 0)
                cliutil_errorf(cmd, "%s", err);
            rc = 1;
            break;
        }
    }
    if (rc != 0) {
        /* the error line says it all */
    } else if (json) {
        for (size_t i = 0; i < l.len; i++)
            print_dead_json(&l.v[i]);
    } else if (l.len) {
        print_dead_table(&l);
    } else if (isatty(STDOUT_FILENO)) {
        fprintf(stderr, "no dead letters in %s\n", dead_q);
    }
    if (!json && rc == 0)
        for (size_t i = 0; i < l.len; i++)
            if (l.v[i].retry && l.v[i].confirmed)
                fprintf(stderr, "retried %s: republished to %s\n", l.v[i].ev.msg->id, apply_q);
    if (cliutil_flush_stdout(cmd))
        rc = 1;
out:
    deadlist_free(&l);
    mq_close(m);
    config_unref(c);
    return rc;
}

/* ---- dispatch ---- */

static const char usage[] =
    "usage: restspy replication status [options]   replication figures from the store\n"
    "       restspy replication dead [options]     list (and retry) dead letters\n"
    "\n"
    "See restspy replication status --help and restspy replication dead --help.\n";

int cli_replication(int argc, char **argv, char *const *envp)
{
    if (argc < 2) {
        cliutil_errorf("replication",
                       "missing subcommand: status or dead (see restspy replication --help)");
        return 2;
    }
    const char *sub = argv[1];
    if (cliutil_is_help(sub) || strcmp(sub, "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(sub, "status") == 0)
        return cmd_status(argc - 1, argv + 1, envp);
    if (strcmp(sub, "dead") == 0)
        return cmd_dead(argc - 1, argv + 1, envp);
    cliutil_errorf("replication", "unknown subcommand '%s' (expected status or dead)", sub);
    return 2;
}
