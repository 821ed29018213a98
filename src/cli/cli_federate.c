/* cli_federate: `restspy federate`, the command line of federate.h: its
 * flags and usage, the peers as given (--peer NAME=URL, checked here), this
 * node and queue type from the configuration; the setup itself is
 * replication/federate.c. Exit codes: 0 done, 1 the broker refused or could
 * not be reached (its answer is shown), 2 usage error. */
#include "cli/cli.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "capture/config.h"
#include "cli/cliutil.h"
#include "replication/federate.h"
#include "replication/mgmt.h"

#define CMD "federate"

static const char usage_text[] =
    "usage: restspy federate --mgmt URL --peer NAME=AMQP_URL [--peer ...] [options]\n"
    "\n"
    "Sets up this site's RabbitMQ broker for replication through its management\n"
    "HTTP API, idempotently (safe to run again at any time, e.g. after adding a\n"
    "peer, on a live site):\n"
    "  - topic exchanges restspy.requests, restspy.inbound and restspy.dead;\n"
    "  - queue restspy.apply.<node> bound to restspy.inbound with '#', dead-lettering\n"
    "    to restspy.dead, and queue restspy.dead.<node> bound to restspy.dead;\n"
    "  - per peer: queue restspy.out.<peer> bound to restspy.requests with '#' (it\n"
    "    holds this site's writes until the peer's broker has them) and the shovel\n"
    "    restspy-to-<peer> moving it to the peer's restspy.inbound (ack-mode\n"
    "    on-confirm). A peer's broker without restspy.apply.<peer> gets its\n"
    "    topology declared there (over AMQP, with the peer's URL);\n"
    "  - the federation upstreams and policy of an older restspy are removed once\n"
    "    each peer holds this site's writes (run federate on every site, then\n"
    "    once more where it says so).\n"
    "A peer added later gets the writes made after this run, not older ones.\n"
    "Needs the rabbitmq_management, rabbitmq_shovel and rabbitmq_shovel_management\n"
    "plugins.\n"
    "\n"
    "  --mgmt URL           management API of this site's broker,\n"
    "                       http[s]://user:pass@host:15672 (required)\n" CLIUTIL_TLS_HELP
    "  --node NAME          this node (default: the node setting, else the host name)\n"
    "  --peer NAME=URL      a peer site: its node name and the AMQP URL at which\n"
    "                       this broker reaches the peer's broker,\n"
    "                       amqp://user:pass@host:5672 (repeat for each peer)\n"
    "  --queue-type T       classic (default) or quorum, for this node's queues\n"
    "  --vhost V            this broker's virtual host (default /); a peer's is\n"
    "                       the one in its URL\n"
    "  --config FILE        config file whose node and queue_type settings to use\n"
    "  --print              print the equivalent commands (curl calls to the\n"
    "                       management API, rabbitmqctl set_parameter shovel)\n"
    "                       instead of running them\n"
    "  -h, --help           show this help\n"
    "\n"
    "Exit codes: 0 done, 1 the broker refused or could not be reached (its answer\n"
    "is shown), 2 usage error. See docs/replication.md.\n";

/* What the command line gathers: the peers (owned) and the options that
 * borrow them. */
typedef struct fed_args {
    federate_peer *peers;
    size_t npeers;
    federate_opts o;
} fed_args;

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
static int add_peer(fed_args *f, const char *arg)
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
     * shovel plugin follows it (the shovel then fails with a bare
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

/* Tells a warning of federate_run as one line on stderr. */
static void warn_line(void *ud, const char *line)
{
    (void)ud;
    cliutil_errorf(CMD, "%s", line);
}

static void fed_args_free(fed_args *f)
{
    for (size_t i = 0; i < f->npeers; i++) {
        free(f->peers[i].name);
        free(f->peers[i].uri);
    }
    free(f->peers);
}

int cli_federate(int argc, char **argv, char *const *envp)
{
    fed_args f = {0};
    mgmt g = {0};
    const char *mgmt_url = NULL, *node = NULL, *qtype = NULL, *config_file = NULL, *v;
    const char *vhost = "/";
    hclient_tls tls = {0};
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
            f.o.print = true;
            continue;
        }
        if ((m = cliutil_tls_flag(CMD, argc, argv, &i, &tls)) ||
            (m = cliutil_flag_value(CMD, argc, argv, &i, "--mgmt", &mgmt_url)) ||
            (m = cliutil_flag_value(CMD, argc, argv, &i, "--node", &node)) ||
            (m = cliutil_flag_value(CMD, argc, argv, &i, "--queue-type", &qtype)) ||
            (m = cliutil_flag_value(CMD, argc, argv, &i, "--vhost", &vhost)) ||
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
    if (!mgmt_url) {
        cliutil_errorf(CMD, "--mgmt URL is required (see restspy federate --help)");
        goto out;
    }
    if (!*vhost) {
        cliutil_errorf(CMD, "bad value for --vhost: empty");
        goto out;
    }
    if (mgmt_init(&g, mgmt_url, vhost) != 0) {
        cliutil_errorf(CMD, "%s", g.err);
        goto out;
    }
    g.tls = tls;
    if (tls.insecure)
        cliutil_errorf(CMD,
                       "warning: --insecure: the management API's certificate is not verified");
    if ((rc = load_settings(config_file, node, qtype, envp, &c)) != 0)
        goto out;
    f.o.node = c->node;
    f.o.queue_type = c->queue_type;
    rc = 2;
    for (size_t i = 0; i < f.npeers; i++) {
        if (strcmp(f.peers[i].name, f.o.node) == 0) {
            cliutil_errorf(CMD, "peer %s is this node: a site does not replicate to itself",
                           f.o.node);
            goto out;
        }
    }
    f.o.peers = f.peers;
    f.o.npeers = f.npeers;
    f.o.warn = warn_line;
    rc = federate_run(&g, &f.o);
    if (rc != 0 && g.err)
        cliutil_errorf(CMD, "%s", g.err);
    if (fflush(stdout) != 0 && rc == 0) {
        cliutil_errorf(CMD, "cannot write output");
        rc = 1;
    }
out:
    config_unref(c);
    fed_args_free(&f);
    mgmt_free(&g);
    return rc;
}
