/* cli_repl_dead: `restspy replication dead`: lists, shows, retries or skips
 * the dead letters of restspy.dead.<node>. The arguments and the printing
 * only: replication/dead.h does the work (and says how a crash at any point
 * leaves each message in one queue or the other). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/util.h"
#include "capture/config.h"
#include "cli/cli_repl.h"
#include "cli/cliutil.h"
#include "formats/repl_msg.h"
#include "replication/dead.h"

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

static void print_dead_json(const dead_letter *d, bool whole)
{
    buf b = BUF_INIT;
    dead_json(d, whole, &b);
    puts(b.data);
    buf_free(&b);
}

static void print_dead_table(const dead_result *l)
{
    printf("%-*s  %-19s  %-12s  %-7s  %-30s  %s\n", UUID7_STR_LEN, "ID", "TIME", "ORIGIN", "METHOD",
           "TARGET", "REASON");
    for (size_t i = 0; i < l->len; i++) {
        const dead_letter *d = &l->v[i];
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

/* --show: one dead letter whole, as one JSON object with its headers and
 * its body (dead_json) or as text, control bytes escaped. */
static void print_dead_show(const dead_letter *d, bool json)
{
    if (json) {
        print_dead_json(d, true);
        return;
    }
    const repl_msg *m = d->ev.msg;
    http_headers h = {0};
    bool headers_ok = m->headers && repl_msg_headers(m, &h) == 0;
    size_t shown = m->body.len < DEAD_SHOW_BODY_MAX ? m->body.len : DEAD_SHOW_BODY_MAX;
    buf b = BUF_INIT;
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
    http_headers_free(&h);
    buf_free(&b);
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

/* The operation o asks for, and the id it names (NULL for none). */
static dead_op dead_op_of(const dead_opts *o, const char **id)
{
    *id = o->retry_id ? o->retry_id : o->skip_id ? o->skip_id : o->show_id;
    return o->all        ? DEAD_RETRY_ALL
           : o->retry_id ? DEAD_RETRY
           : o->skip_id  ? DEAD_SKIP
           : o->show_id  ? DEAD_SHOW
                         : DEAD_LIST;
}

/* Prints what dead_run did (it succeeded): the list, the message shown,
 * and on stderr each message retried or skipped. */
static void dead_print(const dead_opts *o, const dead_result *r)
{
    if (r->stuck_id) {
        fprintf(stderr,
                "skipped %s: recorded in the ledger as skipped; the replicator drops it at its "
                "next attempt\n",
                r->stuck_id);
        return;
    }
    if (o->show_id) {
        print_dead_show(&r->v[r->named], o->json);
    } else if (o->json) {
        for (size_t i = 0; i < r->len; i++)
            print_dead_json(&r->v[i], false);
    } else if (r->len) {
        print_dead_table(r);
    } else if (isatty(STDOUT_FILENO)) {
        fprintf(stderr, "no dead letters in %s\n", r->queue);
    }
    for (size_t i = 0; !o->json && i < r->len; i++) {
        if (r->v[i].retry && r->v[i].confirmed)
            fprintf(stderr, "retried %s: republished to %s\n", r->v[i].ev.msg->id, r->apply_queue);
        if (r->v[i].skipped)
            fprintf(stderr, "skipped %s: recorded in the ledger as skipped, removed from %s\n",
                    r->v[i].ev.msg->id, r->queue);
    }
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
    const char *id;
    dead_op op = dead_op_of(&o, &id);
    dead_result r = {0};
    char err[512];
    int drc = dead_run(c, op, id, "restspy replication dead", &r, err, sizeof err);
    if (drc == DEAD_ENOSTORE) {
        cliutil_errorf(cmd, "--skip needs the replicator's store (give --store URL): the skip is "
                            "recorded in its ledger");
        rc = 1;
    } else if (drc != DEAD_OK) {
        cliutil_errorf(cmd, "%s", err);
        rc = 1;
    } else {
        dead_print(&o, &r);
        if (cliutil_flush_stdout(cmd))
            rc = 1;
    }
    dead_result_free(&r);
    config_unref(c);
    return rc;
}
