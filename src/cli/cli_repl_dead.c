/* cli_repl_dead: `restspy replication dead`: lists, shows, retries or skips
 * the dead letters of restspy.dead.<node> (see cli_replication.c for how a
 * crash at any point leaves each message in one queue or the other). */
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
#include "replication/mgmt.h"
#include "replication/mq.h"
#include "store/store.h"

#define CONFIRM_WAIT_MS 10000    /* how long a retry waits for the broker's confirms */
#define SHOW_BODY_MAX (64 << 10) /* dead --show: bytes of a body printed */

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
    buf_json_add_str(b, "origin", m->origin);
    buf_json_add_str(b, "method", m->method);
    buf_json_add_str(b, "target", m->target);
    buf_appendf(b, ",\"timestamp\":%lld", (long long)m->timestamp);
    buf_json_add_str(b, "reason", d->ev.reason);
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
        cli_repl_append_safe(&id, m->id[0] ? m->id : NULL);
        cli_repl_append_safe(&origin, m->origin);
        cli_repl_append_safe(&method, m->method);
        cli_repl_append_safe(&target, m->target);
        cli_repl_append_safe(&reason, d->ev.reason);
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
        buf_json_add_str(&b, "content_type", m->content_type);
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
        cli_repl_append_safe(&b, m->id[0] ? m->id : NULL);
        buf_append_str(&b, "\norigin        ");
        cli_repl_append_safe(&b, m->origin);
        buf_append_str(&b, "\nrequest       ");
        cli_repl_append_safe(&b, m->method);
        buf_append_char(&b, ' ');
        cli_repl_append_safe(&b, m->target);
        buf_appendf(&b, "\ntime          %s\ncontent type  ", t);
        cli_repl_append_safe(&b, m->content_type);
        buf_appendf(&b, "\nsigned        %s\nreason        ", m->signature ? "yes" : "no");
        cli_repl_append_safe(&b, d->ev.reason);
        buf_append_str(&b, "\nheaders");
        if (!headers_ok)
            buf_append_str(&b, "       (none or unreadable)");
        for (size_t i = 0; i < h.len; i++) {
            buf_append_str(&b, "\n  ");
            cli_repl_append_safe(&b, h.v[i].name);
            buf_append_str(&b, ": ");
            cli_repl_append_safe(&b, h.v[i].value);
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

int cli_repl_dead(int argc, char **argv, char *const *envp)
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
