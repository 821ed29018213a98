/* cli_repl_status: `restspy replication status`: the figures, the apply lag
 * and the stuck writes from the store (opened read-only, so it runs next to
 * the proxy and the replicator that write the same file), and with --mgmt
 * what this site's broker holds for each peer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/util.h"
#include "capture/config.h"
#include "cli/cli_repl.h"
#include "cli/cliutil.h"
#include "formats/repl_msg.h"
#include "replication/federate.h"
#include "replication/repl_peers.h"
#include "replication/repl_status.h"
#include "store/store.h"

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
    "                  http://user:pass@host:15672 (as restspy federate;\n"
    "                  default: the mgmt setting, RESTSPY_MGMT)\n"
    "  --vhost V       its virtual host (default /)\n"
    "  --json          one JSON object\n"
    "  -h, --help      show this help\n";

/* ---- status: what the broker holds for each peer (--mgmt) ---- */

/* "running", "starting", "terminated (reason)", "none" or "unknown". */
static void shovel_state(const repl_peers *h, const repl_peer *e, buf *out)
{
    if (!h->shovels_known) {
        buf_append_str(out, "unknown (shovel management plugin not enabled)");
        return;
    }
    if (!e->shovel) {
        buf_append_str(out, "none (run restspy federate)");
        return;
    }
    cli_repl_append_safe(out, e->shovel);
    if (e->reason && strcmp(e->shovel, "running") != 0) {
        buf_append_str(out, " (");
        cli_repl_append_safe(out, e->reason);
        buf_append_char(out, ')');
    }
}

static void peers_print_text(const repl_peers *h, int64_t now)
{
    if (h->n == 0) {
        printf("peers                none (no " FEDERATE_OUT_PREFIX
               "<peer> queue: run restspy federate)\n");
        return;
    }
    for (size_t i = 0; i < h->n; i++) {
        const repl_peer *e = &h->v[i];
        buf line = BUF_INIT;
        buf_append_str(&line, "peer ");
        cli_repl_append_safe(&line, e->peer);
        while (line.len < 21)
            buf_append_char(&line, ' ');
        if (!e->has_queue)
            buf_append_str(&line,
                           "held -, no queue " FEDERATE_OUT_PREFIX "<peer> (run restspy federate)");
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

static void print_stuck_table(const repl_status *x, int64_t now)
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
        cli_repl_append_safe(&id, k->message_id);
        cli_repl_append_safe(&origin, k->origin);
        cli_repl_append_safe(&method, k->method);
        cli_repl_append_safe(&target, k->target);
        cli_repl_append_safe(&answer, k->last_answer);
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

/* One line per origin node: "origin a   applied 11, last 2026-... (3.0s
 * ago), lag now 10ms, p50 5ms, p99 10ms, max 10ms (10 in the last 5m)". */
static void print_origins_text(const repl_status *x, int64_t now)
{
    char win[32];
    util_fmt_duration(x->window_us, win, sizeof win);
    for (size_t i = 0; i < x->norigins; i++) {
        const store_repl_origin *o = &x->origins[i];
        char w[96], d[4][32];
        buf line = BUF_INIT;
        buf_append_str(&line, "origin ");
        cli_repl_append_safe(&line, o->origin[0] ? o->origin : "(none)");
        while (line.len < 21)
            buf_append_char(&line, ' ');
        when(o->last_applied_us, now, w, sizeof w);
        buf_appendf(&line, "applied %lld, last %s, lag now ", (long long)o->applied, w);
        if (o->last_lag_us >= 0)
            util_fmt_duration(o->last_lag_us, d[0], sizeof d[0]);
        buf_append_str(&line, o->last_lag_us >= 0 ? d[0] : "-");
        if (o->lag.n) {
            util_fmt_duration(o->lag.p50_us, d[1], sizeof d[1]);
            util_fmt_duration(o->lag.p99_us, d[2], sizeof d[2]);
            util_fmt_duration(o->lag.max_us, d[3], sizeof d[3]);
            buf_appendf(&line, ", p50 %s, p99 %s, max %s (%lld applies in the last %s)", d[1], d[2],
                        d[3], (long long)o->lag.n, win);
        } else {
            buf_appendf(&line, " (nothing applied in the last %s)", win);
        }
        puts(line.data);
        buf_free(&line);
    }
    if (x->origins_total > (int64_t)x->norigins)
        printf("  ... and %lld more origins\n",
               (long long)(x->origins_total - (int64_t)x->norigins));
}

static void print_apply_text(const store_repl_stats *st, const repl_status *x, int64_t now)
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
    print_origins_text(x, now);
}

/* peers: NULL without --mgmt. */
static void print_status_text(const store_repl_stats *st, const repl_status *x, int64_t now)
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
        cli_repl_append_safe(&b, st->last_confirmed_id);
        printf(", id %s", b.data);
        buf_free(&b);
    }
    printf("\npublished            %lld\n", (long long)st->published);
    printf("not replicated       %lld\n", (long long)st->not_replicated);
    printf("applied              %lld\n", (long long)st->applied);
    printf("deduplicated         %lld\n", (long long)st->deduplicated);
    printf("dead-lettered        %lld\n", (long long)st->dead_lettered);
    printf("diverged             %lld%s\n", (long long)st->diverged,
           st->diverged ? " (restspy replication diverged lists them)" : "");
    print_apply_text(st, x, now);
}

int cli_repl_status(int argc, char **argv, char *const *envp)
{
    static const char cmd[] = "replication status";
    cliutil_read_opts ro = {0};
    const char *mgmt_url = NULL, *vhost = "/";
    uint64_t window_ms = REPL_STATUS_WINDOW_MS;
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

    /* --mgmt (checked by mgmt_init, as federate's), else the mgmt setting
     * (config file, RESTSPY_MGMT). */
    const char *flags[] = {"--config", ro.config_file, "--store", ro.store_url};
    config *c = NULL;
    int rc = cliutil_config_load(cmd, envp, flags, 4, &c);
    if (rc)
        return rc;
    char *mgmt_set = xstrdup(mgmt_url ? mgmt_url : c->mgmt ? c->mgmt : "");
    config_unref(c);
    mgmt_url = *mgmt_set ? mgmt_set : NULL;
    store *s = NULL;
    rc = cliutil_open_store(cmd, &ro, envp, "there are no replication figures", &s);
    if (rc) {
        free(mgmt_set);
        return rc;
    }
    char err[512];
    repl_status x;
    rc = repl_status_read(s, (int64_t)window_ms * 1000, &x, err, sizeof err);
    store_close(s);
    if (rc != 0) {
        cliutil_errorf(cmd, "%s", err);
        repl_status_free(&x);
        free(mgmt_set);
        return 1;
    }
    int64_t now = x.now_us;
    repl_peers peers = {0};
    if (mgmt_url && (rc = repl_peers_collect(mgmt_url, vhost, NULL, &peers, err, sizeof err))) {
        cliutil_errorf(cmd, "%s", err);
        repl_peers_free(&peers);
        repl_status_free(&x);
        free(mgmt_set);
        return rc;
    }
    if (ro.json) {
        buf b = BUF_INIT;
        buf_append_char(&b, '{');
        repl_status_json(&x, &b);
        if (mgmt_url) {
            buf_append_str(&b, ",\"peers\":");
            repl_peers_json(&peers, now, &b);
        }
        buf_append_char(&b, '}');
        puts(b.data);
        buf_free(&b);
    } else {
        print_status_text(&x.st, &x, now);
        if (mgmt_url)
            peers_print_text(&peers, now);
    }
    repl_peers_free(&peers);
    repl_status_free(&x);
    free(mgmt_set);
    return cliutil_flush_stdout(cmd);
}
