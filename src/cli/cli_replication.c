/* cli_replication: `restspy replication status` and `restspy replication dead`.
 *
 * status reads the store (opened read-only, so it runs next to the proxy
 * and the replicator that write the same file): the figures, the apply lag
 * and the writes the replicator keeps failing to apply; with --mgmt, also
 * what this site's broker holds for each peer (its queue restspy.out.<peer>
 * and the shovel draining it, through the management API). dead talks to
 * the broker: it takes every message of restspy.dead.<node> with basic.get
 * and no ack, lists or shows them, and gives each back (reject with
 * requeue) unless it is being retried or skipped; a retried message is
 * republished to restspy.apply.<node> and acked out of the dead queue only
 * once the broker confirmed the republish, so a crash at any point leaves
 * it in one queue or the other (at worst in both: the replicator's ledger
 * makes that harmless); a skipped one is acked only once its skip is
 * committed in the store's ledger, so it is never lost unrecorded. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/buf.h"
#include "cli/cliutil.h"
#include "capture/config.h"
#include "replication/mgmt.h"
#include "replication/mq.h"
#include "formats/repl_msg.h"
#include "store/store.h"
#include "base/util.h"

#define CONFIRM_WAIT_MS 10000    /* how long a retry waits for the broker's confirms */
#define LAG_WINDOW_MS 300000     /* status: the apply lag over the last 5 minutes ... */
#define LAG_SAMPLES_MAX 100000   /* ... of the newest applies at most */
#define STUCK_LIST_MAX 20        /* status: stuck messages listed (all are counted) */
#define SHOW_BODY_MAX (64 << 10) /* dead --show: bytes of a body printed */

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
    "this site's replicator applied, skipped as duplicates and dead-lettered;\n"
    "the apply lag (origin to apply here, p50/p99 over a recent window); and\n"
    "the writes the replicator keeps failing to apply (stuck), with their\n"
    "attempts and last answer, before their retry budget dead-letters them.\n"
    "With --mgmt, also what this site's broker holds for each peer: the writes\n"
    "in its queue restspy.out.<peer> that the peer's broker does not have yet,\n"
    "since when (the oldest one's time), and the state of the shovel moving\n"
    "them (the management API's figures are a few seconds old).\n"
    "\n"
    "  --store URL     store to read (default: the store setting, sqlite:restspy.db)\n"
    "  --config FILE   config file whose store setting to use\n"
    "  --window DUR    the lag's window (default 5m: the applies of the last 5 minutes)\n"
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
            util_fmt_duration(now - e->oldest_us, a, sizeof a);
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

/* "2026-11-27 05:46:18 (12.3s ago)" or "never". */
static void when(int64_t us, int64_t now, char *out, size_t len)
{
    if (!us) {
        snprintf(out, len, "never");
        return;
    }
    char t[32], a[32];
    cliutil_fmt_local(us, false, t, sizeof t, NULL);
    util_fmt_duration(now - us, a, sizeof a);
    snprintf(out, len, "%s (%s ago)", t, a);
}

/* ---- status: how the applies go (lag, stuck writes) ---- */

/* What status reads besides store_repl_stats: the apply lag over the
 * window and the writes the replicator keeps failing to apply. */
typedef struct apply_status {
    int64_t window_us;
    store_repl_lag lag;
    store_stuck *stuck; /* oldest failure first, STUCK_LIST_MAX at most */
    size_t nstuck;
    int64_t stuck_total;
} apply_status;

static int read_apply_status(store *s, int64_t window_us, int64_t now, apply_status *x, char *err,
                             size_t errlen)
{
    memset(x, 0, sizeof *x);
    x->window_us = window_us;
    if (store_repl_lag_get(s, now - window_us, LAG_SAMPLES_MAX, &x->lag, err, errlen) != 0)
        return -1;
    return store_stuck_list(s, STUCK_LIST_MAX, &x->stuck, &x->nstuck, &x->stuck_total, err, errlen);
}

static void apply_status_free(apply_status *x)
{
    store_stuck_free(x->stuck, x->nstuck);
    x->stuck = NULL;
    x->nstuck = 0;
}

static void json_seconds(buf *b, const char *key, int64_t us)
{
    buf_appendf(b, ",\"%s\":%.3f", key, (double)us / 1e6);
}

static void json_str_or_null(buf *b, const char *key, const char *v)
{
    buf_appendf(b, ",\"%s\":", key);
    if (v)
        buf_append_json_str(b, v, strlen(v));
    else
        buf_append_str(b, "null");
}

static void append_apply_json(buf *b, const store_repl_stats *st, const apply_status *x,
                              int64_t now)
{
    buf_appendf(b, ",\"skipped\":%lld", (long long)st->skipped);
    buf_append_str(b, ",\"lag\":{");
    buf_appendf(b, "\"window_s\":%.3f,\"applies\":%lld", (double)x->window_us / 1e6,
                (long long)x->lag.n);
    if (x->lag.n) {
        json_seconds(b, "p50_s", x->lag.p50_us);
        json_seconds(b, "p99_s", x->lag.p99_us);
        json_seconds(b, "max_s", x->lag.max_us);
    } else {
        buf_append_str(b, ",\"p50_s\":null,\"p99_s\":null,\"max_s\":null");
    }
    buf_append_char(b, '}');
    if (st->retry_max_age_ms >= 0)
        json_seconds(b, "retry_max_age_s", st->retry_max_age_ms * 1000);
    else
        buf_append_str(b, ",\"retry_max_age_s\":null");
    if (st->retry_max_attempts >= 0)
        buf_appendf(b, ",\"retry_max_attempts\":%lld", (long long)st->retry_max_attempts);
    else
        buf_append_str(b, ",\"retry_max_attempts\":null");
    buf_appendf(b, ",\"stuck_total\":%lld,\"stuck\":[", (long long)x->stuck_total);
    for (size_t i = 0; i < x->nstuck; i++) {
        const store_stuck *k = &x->stuck[i];
        buf_append_str(b, i ? ",{\"id\":" : "{\"id\":");
        buf_append_json_str(b, k->message_id, strlen(k->message_id));
        json_str_or_null(b, "origin", k->origin);
        json_str_or_null(b, "method", k->method);
        json_str_or_null(b, "target", k->target);
        int64_t ms = uuid7_time_ms(k->message_id);
        if (ms >= 0)
            json_seconds(b, "age_s", now - ms * 1000);
        else
            buf_append_str(b, ",\"age_s\":null");
        buf_appendf(b, ",\"attempts\":%lld", (long long)k->attempts);
        json_time(b, "first_failed_us", k->first_failed_us);
        json_time(b, "last_failed_us", k->last_failed_us);
        json_str_or_null(b, "last_answer", k->last_answer);
        buf_append_char(b, '}');
    }
    buf_append_char(b, ']');
}

/* "1h00m or 5 failed attempts", "no limit" */
static void fmt_budget(const store_repl_stats *st, char *out, size_t len)
{
    char age[32] = "";
    if (st->retry_max_age_ms > 0)
        util_fmt_duration(st->retry_max_age_ms * 1000, age, sizeof age);
    if (st->retry_max_age_ms > 0 && st->retry_max_attempts > 0)
        snprintf(out, len, "%s or %lld failed attempts", age, (long long)st->retry_max_attempts);
    else if (st->retry_max_age_ms > 0)
        snprintf(out, len, "%s", age);
    else if (st->retry_max_attempts > 0)
        snprintf(out, len, "%lld failed attempts", (long long)st->retry_max_attempts);
    else
        snprintf(out, len, "no limit");
}

static void print_stuck_table(const apply_status *x, int64_t now)
{
    printf("  %-*s  %-12s  %-7s  %-30s  %8s  %8s  %11s  %s\n", UUID7_STR_LEN, "ID", "ORIGIN",
           "METHOD", "TARGET", "AGE", "ATTEMPTS", "FAILING FOR", "LAST ANSWER");
    for (size_t i = 0; i < x->nstuck; i++) {
        const store_stuck *k = &x->stuck[i];
        char age[32] = "-", failing[32] = "-";
        int64_t ms = uuid7_time_ms(k->message_id);
        if (ms >= 0)
            util_fmt_duration(now - ms * 1000, age, sizeof age);
        if (k->first_failed_us)
            util_fmt_duration(now - k->first_failed_us, failing, sizeof failing);
        buf id = BUF_INIT, origin = BUF_INIT, method = BUF_INIT, target = BUF_INIT,
            answer = BUF_INIT;
        append_safe(&id, k->message_id);
        append_safe(&origin, k->origin);
        append_safe(&method, k->method);
        append_safe(&target, k->target);
        append_safe(&answer, k->last_answer);
        printf("  %-*s  %-12s  %-7s  %-30s  %8s  %8lld  %11s  %s\n", UUID7_STR_LEN, id.data,
               origin.data, method.data, target.data, age, (long long)k->attempts, failing,
               answer.data);
        buf_free(&id);
        buf_free(&origin);
        buf_free(&method);
        buf_free(&target);
        buf_free(&answer);
    }
    if (x->stuck_total > (int64_t)x->nstuck)
        printf("  ... and %lld more\n", (long long)(x->stuck_total - (int64_t)x->nstuck));
}

static void print_apply_text(const store_repl_stats *st, const apply_status *x, int64_t now)
{
    char w[96], win[32];
    printf("skipped              %lld\n", (long long)st->skipped);
    util_fmt_duration(x->window_us, win, sizeof win);
    if (x->lag.n) {
        char p50[32], p99[32], max[32];
        util_fmt_duration(x->lag.p50_us, p50, sizeof p50);
        util_fmt_duration(x->lag.p99_us, p99, sizeof p99);
        util_fmt_duration(x->lag.max_us, max, sizeof max);
        printf("apply lag            p50 %s, p99 %s, max %s (%lld applies in the last %s)\n", p50,
               p99, max, (long long)x->lag.n, win);
    } else {
        printf("apply lag            - (nothing applied in the last %s)\n", win);
    }
    when(st->last_applied_us, now, w, sizeof w);
    printf("last applied         %s\n", w);
    printf("stuck                %lld", (long long)x->stuck_total);
    if (st->retry_max_age_ms >= 0 && st->retry_max_attempts >= 0) {
        fmt_budget(st, w, sizeof w);
        printf(" (retry budget: %s, then dead-lettered)", w);
    }
    putchar('\n');
    if (x->nstuck)
        print_stuck_table(x, now);
}

/* peers: NULL without --mgmt. */
static void print_status_json(const store_repl_stats *st, const apply_status *x,
                              const peer_holds *peers, int64_t now)
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
    json_time(&b, "last_applied_us", st->last_applied_us);
    json_age(&b, "last_applied_age_s", st->last_applied_us, now);
    json_time(&b, "last_applied_msg_us", st->last_applied_msg_us);
    append_apply_json(&b, st, x, now);
    if (peers)
        peers_append_json(&b, peers, now);
    buf_append_char(&b, '}');
    puts(b.data);
    buf_free(&b);
}

static void print_status_text(const store_repl_stats *st, const apply_status *x, int64_t now)
{
    char w[96], a[32];
    printf("outbox depth         %lld\n", (long long)st->outbox_depth);
    if (st->oldest_unpublished_us) {
        util_fmt_duration(now - st->oldest_unpublished_us, a, sizeof a);
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
    print_apply_text(st, x, now);
}

static int cmd_status(int argc, char **argv, char *const *envp)
{
    static const char cmd[] = "replication status";
    cliutil_read_opts ro = {0};
    const char *mgmt_url = NULL, *vhost = "/";
    uint64_t window_ms = LAG_WINDOW_MS;
    for (int i = 1; i < argc; i++) {
        int m;
        const char *window = NULL;
        if (cliutil_is_help(argv[i])) {
            fputs(status_usage, stdout);
            return 0;
        }
        if ((m = cliutil_read_opt(cmd, argc, argv, &i, &ro)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--window", &window)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--mgmt", &mgmt_url)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--vhost", &vhost))) {
            if (m < 0)
                return 2;
            if (window && (util_parse_duration_ms(window, false, &window_ms) != 0 ||
                           window_ms == 0 || window_ms > INT64_MAX / 1000)) {
                cliutil_errorf(cmd,
                               "bad value for --window: '%s' (expected a duration such as "
                               "5m, 90s or 1h)",
                               window);
                return 2;
            }
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
    apply_status x;
    int64_t now = util_now_us();
    rc = store_repl_stats_get(s, &st, err, sizeof err);
    if (rc == 0)
        rc = read_apply_status(s, (int64_t)window_ms * 1000, now, &x, err, sizeof err);
    store_close(s);
    if (rc != 0) {
        cliutil_errorf(cmd, "%s", err);
        return 1;
    }
    peer_holds peers = {0};
    if (mgmt_url && (rc = peers_collect(cmd, mgmt_url, vhost, &peers)) != 0) {
        peers_free(&peers);
        apply_status_free(&x);
        return rc;
    }
    if (ro.json) {
        print_status_json(&st, &x, mgmt_url ? &peers : NULL, now);
    } else {
        print_status_text(&st, &x, now);
        if (mgmt_url)
            peers_print_text(&peers, now);
    }
    peers_free(&peers);
    apply_status_free(&x);
    return cliutil_flush_stdout(cmd);
}

/* ---- dead ---- */

static const char dead_usage[] =
    "usage: restspy replication dead [options]\n"
    "\n"
    "Lists the messages this node's replicator dead-lettered (queue\n"
    "restspy.dead.<node>) and leaves them there, shows one whole, retries\n"
    "them or skips one. A retried message goes back to restspy.apply.<node>\n"
    "and leaves the dead queue once the broker confirmed it. A skipped one is\n"
    "recorded in the store's ledger as skipped, then leaves the dead queue:\n"
    "it is never applied here, even if it arrives again. --skip also takes\n"
    "a write the replicator is still retrying (restspy replication status\n"
    "lists them as stuck): the replicator drops it at its next attempt.\n"
    "\n"
    "  --amqp URL      broker (default: the amqp setting)\n"
    "  --node NAME     whose dead letters (default: the node setting)\n"
    "  --store URL     the replicator's store, for --skip (default: the store setting)\n"
    "  --config FILE   config file to take amqp, node and store from\n"
    "  --show ID       print the message with this id (or a unique prefix of 8+) whole\n"
    "  --retry ID      retry the message with this id (or a unique prefix of 8+)\n"
    "  --all           retry every dead letter\n"
    "  --skip ID       acknowledge the message without applying it\n"
    "  --json          one JSON object per message\n"
    "  -h, --help      show this help\n";

typedef struct dead {
    mq_event ev; /* owns ev.msg and ev.reason */
    bool retry;
    bool confirmed; /* the republish was confirmed by the broker */
    bool returned;  /* the broker could not route the republish: it stays dead */
    bool skipped;   /* recorded in the ledger as skipped */
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

/* Index of the id of ids[0..n) that is id or starts with it (8+ chars,
 * case-insensitive). -1 none, -2 ambiguous. */
static long find_id(const char *const *ids, size_t n, const char *id)
{
    size_t len = strlen(id);
    long found = -1;
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(ids[i], id) == 0)
            return (long)i;
        if (len >= 8 && strncasecmp(ids[i], id, len) == 0) {
            if (found >= 0)
                return -2;
            found = (long)i;
        }
    }
    return found;
}

/* find_id over the dead letters of l. */
static long find_dead(const deadlist *l, const char *id)
{
    const char **ids = xcalloc(l->len + 1, sizeof *ids);
    for (size_t i = 0; i < l->len; i++)
        ids[i] = l->v[i].ev.msg->id;
    long k = find_id(ids, l->len, id);
    free(ids);
    return k;
}

/* Opens a dead letter's JSON object with the fields every form of it
 * has: {"id", "origin", "method", "target", "timestamp", "reason". */
static void json_dead_open(buf *b, const dead *d)
{
    const repl_msg *m = d->ev.msg;
    buf_append_str(b, "{\"id\":");
    buf_append_json_str(b, m->id, strlen(m->id));
    json_str_or_null(b, "origin", m->origin);
    json_str_or_null(b, "method", m->method);
    json_str_or_null(b, "target", m->target);
    buf_appendf(b, ",\"timestamp\":%lld", (long long)m->timestamp);
    json_str_or_null(b, "reason", d->ev.reason);
}

static void print_dead_json(const dead *d)
{
    const repl_msg *m = d->ev.msg;
    buf b = BUF_INIT;
    json_dead_open(&b, d);
    buf_appendf(&b, ",\"body_size\":%zu,\"retried\":%s,\"skipped\":%s}", m->body.len,
                d->retry && d->confirmed ? "true" : "false", d->skipped ? "true" : "false");
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
               d->retry && d->confirmed ? "  (retried)"
               : d->skipped             ? "  (skipped)"
                                        : "");
        buf_free(&id);
        buf_free(&origin);
        buf_free(&method);
        buf_free(&target);
        buf_free(&reason);
    }
}

/* --show: one dead letter whole, as text (control bytes escaped) or as
 * one JSON object with its headers and its body. */
static void print_dead_show(const dead *d, bool json)
{
    const repl_msg *m = d->ev.msg;
    http_headers h = {0};
    bool headers_ok = m->headers && repl_msg_headers(m, &h) == 0;
    size_t shown = m->body.len < SHOW_BODY_MAX ? m->body.len : SHOW_BODY_MAX;
    buf b = BUF_INIT;
    if (json) {
        json_dead_open(&b, d);
        json_str_or_null(&b, "content_type", m->content_type);
        buf_appendf(&b, ",\"signed\":%s,\"headers\":", m->signature ? "true" : "false");
        if (headers_ok) {
            buf_append_char(&b, '[');
            for (size_t i = 0; i < h.len; i++) {
                buf_append_str(&b, i ? ",[" : "[");
                buf_append_json_str(&b, h.v[i].name, strlen(h.v[i].name));
                buf_append_char(&b, ',');
                buf_append_json_str(&b, h.v[i].value, strlen(h.v[i].value));
                buf_append_char(&b, ']');
            }
            buf_append_char(&b, ']');
        } else {
            buf_append_str(&b, "null");
        }
        buf_appendf(&b, ",\"body_size\":%zu,\"body\":", m->body.len);
        buf_append_json_str(&b, m->body.data ? m->body.data : "", shown);
        buf_appendf(&b, ",\"body_truncated\":%s}", shown < m->body.len ? "true" : "false");
        puts(b.data);
    } else {
        char t[32];
        cliutil_fmt_local(m->timestamp * 1000000, false, t, sizeof t, NULL);
        buf_append_str(&b, "id            ");
        append_safe(&b, m->id[0] ? m->id : NULL);
        buf_append_str(&b, "\norigin        ");
        append_safe(&b, m->origin);
        buf_append_str(&b, "\nrequest       ");
        append_safe(&b, m->method);
        buf_append_char(&b, ' ');
        append_safe(&b, m->target);
        buf_appendf(&b, "\ntime          %s\ncontent type  ", t);
        append_safe(&b, m->content_type);
        buf_appendf(&b, "\nsigned        %s\nreason        ", m->signature ? "yes" : "no");
        append_safe(&b, d->ev.reason);
        buf_append_str(&b, "\nheaders");
        if (!headers_ok)
            buf_append_str(&b, "       (none or unreadable)");
        for (size_t i = 0; i < h.len; i++) {
            buf_append_str(&b, "\n  ");
            append_safe(&b, h.v[i].name);
            buf_append_str(&b, ": ");
            append_safe(&b, h.v[i].value);
        }
        buf_appendf(&b, "\nbody          %zu bytes", m->body.len);
        if (shown < m->body.len)
            buf_appendf(&b, " (the first %zu shown)", shown);
        buf_append_char(&b, '\n');
        if (shown) {
            cliutil_append_safe(&b, m->body.data, shown, true);
            buf_append_char(&b, '\n');
        }
        fputs(b.data, stdout);
    }
    http_headers_free(&h);
    buf_free(&b);
}

/* Opens the store for writing without starting its writer (the skip
 * commits its own transaction). 0 with *out, or 1 after reporting. */
static int open_ledger(const char *cmd, const config *c, store **out)
{
    if (!c->store || strcmp(c->store, "off") == 0) {
        cliutil_errorf(cmd, "--skip needs the replicator's store (give --store URL): the skip is "
                            "recorded in its ledger");
        return 1;
    }
    store_options o = {
        .url = c->store,
        .queue_max = 1,
        .batch_max = 1,
        .busy_timeout_ms = c->busy_timeout_ms,
    };
    char err[512] = "";
    *out = store_open(&o, err, sizeof err);
    if (!*out) {
        cliutil_errorf(cmd, "%s", err);
        return 1;
    }
    return 0;
}

/* find_id over the stuck rows v[0..n). */
static long find_stuck(const store_stuck *v, size_t n, const char *id)
{
    const char **ids = xcalloc(n + 1, sizeof *ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = v[i].message_id;
    long k = find_id(ids, n, id);
    free(ids);
    return k;
}

/* Records the skip of message id in the store's ledger: a dead letter's
 * (origin given), or, origin NULL, a write the replicator still retries,
 * named by its id or a unique prefix of it among the stuck rows. 0, or 1
 * after reporting. */
static int skip_in_ledger(const char *cmd, const config *c, const char *id, const char *origin,
                          const char *dead_q)
{
    store *st = NULL;
    int rc = open_ledger(cmd, c, &st);
    if (rc)
        return rc;
    char err[512] = "";
    store_stuck *v = NULL;
    size_t n = 0;
    int64_t total = 0;
    long k = 0;
    bool stuck = !origin;
    if (!origin && store_stuck_list(st, SIZE_MAX, &v, &n, &total, err, sizeof err) < 0) {
        cliutil_errorf(cmd, "%s", err);
        rc = 1;
    } else if (!origin && (k = find_stuck(v, n, id)) < 0) {
        if (k == -2)
            cliutil_errorf(cmd, "id prefix %s is ambiguous", id);
        else
            cliutil_errorf(cmd, "no dead letter in %s and no stuck write with id %s", dead_q, id);
        rc = 1;
    } else {
        if (!origin) {
            id = v[k].message_id;
            origin = v[k].origin;
        }
        if (store_ledger_skip(st, id, origin, err, sizeof err) < 0) {
            cliutil_errorf(cmd, "%s", err);
            rc = 1;
        } else if (stuck) {
            fprintf(stderr,
                    "skipped %s: recorded in the ledger as skipped; the replicator drops it at "
                    "its next attempt\n",
                    id);
        }
    }
    store_stuck_free(v, n);
    store_close(st);
    return rc;
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
        if (ev.kind == MQ_RETURN) {
            /* The apply queue is gone: its ack will follow, but nothing
             * holds the message, so it must stay in the dead queue. */
            for (size_t i = 0; i < l->len; i++)
                if (l->v[i].retry && ev.msg && strcmp(l->v[i].ev.msg->id, ev.msg->id) == 0)
                    l->v[i].returned = true;
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
                if (ev.nack || d->returned)
                    nacked++;
                else
                    d->confirmed = true;
            }
        }
    }
    if (nacked) {
        snprintf(err, errlen,
                 "the broker refused or could not route %zu republished message(s) (is %s "
                 "there? the replicator declares it when it starts); they stay dead-lettered",
                 nacked, queue);
        return -1;
    }
    return 0;
}

/* What `replication dead` was asked to do (values point into argv). */
typedef struct dead_opts {
    const char *amqp, *node, *store, *config_file;
    const char *retry_id, *skip_id, *show_id; /* at most one of them, or all */
    bool json, all;
} dead_opts;

/* 0 parsed, 1 help printed (exit 0), 2 usage error reported. */
static int dead_parse(const char *cmd, int argc, char **argv, dead_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int m;
        if (cliutil_is_help(a)) {
            fputs(dead_usage, stdout);
            return 1;
        }
        if (strcmp(a, "--json") == 0) {
            o->json = true;
            continue;
        }
        if (strcmp(a, "--all") == 0) {
            o->all = true;
            continue;
        }
        if ((m = cliutil_flag_value(cmd, argc, argv, &i, "--amqp", &o->amqp)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--node", &o->node)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--store", &o->store)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--config", &o->config_file)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--retry", &o->retry_id)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--skip", &o->skip_id)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--show", &o->show_id))) {
            if (m < 0)
                return 2;
            continue;
        }
        return cliutil_bad_arg(cmd, a);
    }
    if ((o->retry_id != NULL) + (o->skip_id != NULL) + (o->show_id != NULL) + o->all > 1) {
        cliutil_errorf(cmd, "--retry, --all, --skip and --show exclude each other");
        return 2;
    }
    const char *const ids[][2] = {
        {"--retry", o->retry_id}, {"--skip", o->skip_id}, {"--show", o->show_id}};
    for (size_t i = 0; i < 3; i++) {
        if (ids[i][1] && !*ids[i][1]) {
            cliutil_errorf(cmd, "bad value for %s: empty", ids[i][0]);
            return 2;
        }
    }
    return 0;
}

/* Takes every message of queue (unacked, so that a crash of this command
 * gives them back) into l. 0, or -1 with err. */
static int take_all(mq *m, const char *queue, deadlist *l, char *err, size_t errlen)
{
    for (;;) {
        mq_event ev;
        int got = mq_get(m, queue, &ev, err, errlen);
        if (got <= 0)
            return got;
        if (l->len == l->cap) {
            l->cap = l->cap ? l->cap * 2 : 16;
            l->v = xrealloc(l->v, l->cap * sizeof *l->v);
        }
        memset(&l->v[l->len], 0, sizeof l->v[0]);
        l->v[l->len++].ev = ev;
    }
}

/* Marks (and for a skip, records) what o asks on the messages of l; *shown
 * gets the message to show, *handled true when a stuck write was skipped
 * instead (nothing of l is concerned). 0, or 1 after reporting. */
static int dead_decide(const char *cmd, const config *c, const dead_opts *o, deadlist *l,
                       const char *dead_q, long *shown, bool *handled)
{
    *shown = -1;
    *handled = false;
    if (o->all) {
        for (size_t i = 0; i < l->len; i++)
            l->v[i].retry = true;
        return 0;
    }
    const char *id = o->retry_id ? o->retry_id : o->skip_id ? o->skip_id : o->show_id;
    if (!id)
        return 0;
    long k = find_dead(l, id);
    if (k == -2) {
        cliutil_errorf(cmd, "id prefix %s is ambiguous", id);
        return 1;
    }
    if (k < 0 && o->skip_id) {
        *handled = true;
        return skip_in_ledger(cmd, c, id, NULL, dead_q);
    }
    if (k < 0) {
        cliutil_errorf(cmd, "no dead letter with id %s in %s", id, dead_q);
        return 1;
    }
    dead *d = &l->v[k];
    if (o->retry_id)
        d->retry = true;
    if (o->show_id)
        *shown = k;
    if (o->skip_id) {
        if (skip_in_ledger(cmd, c, d->ev.msg->id, d->ev.msg->origin, dead_q) != 0)
            return 1;
        d->skipped = true; /* recorded: only now may it leave the dead queue */
    }
    return 0;
}

static int cmd_dead(int argc, char **argv, char *const *envp)
{
    static const char cmd[] = "replication dead";
    dead_opts o = {0};
    int rc = dead_parse(cmd, argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc;

    const char *flags[] = {"--config", o.config_file, "--amqp",  o.amqp,
                           "--node",   o.node,        "--store", o.store};
    config *c = NULL;
    rc = cliutil_config_load(cmd, envp, flags, 8, &c);
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

    deadlist l = {0};
    long shown = -1;
    bool handled = false;
    if (take_all(m, dead_q, &l, err, sizeof err) < 0) {
        cliutil_errorf(cmd, "%s", err);
        rc = 1;
        goto out;
    }
    rc = dead_decide(cmd, c, &o, &l, dead_q, &shown, &handled);
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
    /* Confirmed republishes and recorded skips leave the dead queue;
     * everything else goes back as it was. After a connection failure the
     * broker requeues whatever was not acked by itself. */
    for (size_t i = 0; i < l.len; i++) {
        dead *d = &l.v[i];
        int r = (d->retry && d->confirmed) || d->skipped
                    ? mq_ack(m, d->ev.tag, err, sizeof err)
                    : mq_reject(m, d->ev.tag, true, err, sizeof err);
        if (r < 0) {
            if (rc == 0)
                cliutil_errorf(cmd, "%s", err);
            rc = 1;
            break;
        }
    }
    if (rc != 0 || handled) {
        /* the error line, or skip_in_ledger's, says it all */
    } else if (shown >= 0) {
        print_dead_show(&l.v[shown], o.json);
    } else if (o.json) {
        for (size_t i = 0; i < l.len; i++)
            print_dead_json(&l.v[i]);
    } else if (l.len) {
        print_dead_table(&l);
    } else if (isatty(STDOUT_FILENO)) {
        fprintf(stderr, "no dead letters in %s\n", dead_q);
    }
    for (size_t i = 0; !o.json && rc == 0 && i < l.len; i++) {
        if (l.v[i].retry && l.v[i].confirmed)
            fprintf(stderr, "retried %s: republished to %s\n", l.v[i].ev.msg->id, apply_q);
        if (l.v[i].skipped)
            fprintf(stderr, "skipped %s: recorded in the ledger as skipped, removed from %s\n",
                    l.v[i].ev.msg->id, dead_q);
    }
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
    "       restspy replication dead [options]     list, show, retry or skip dead letters\n"
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
