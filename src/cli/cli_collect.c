/* cli_collect: `restspy collect`, the command line of the collect daemon
 * (collect/collect.h runs it): its help, its settings (the one settings
 * table, through config_load: flags, RESTSPY_* variables, the config file)
 * and the checks a daemon needs before it starts. */
#include "cli/cli.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cliutil.h"
#include "collect/collect.h"

#define CMD "collect"

/* The settings collect reads, in the order --help shows them. */
static const char *const help_keys[] = {
    "socket",
    "collect_max_frame",
    "collect_timeout",
    "config",
    "node",
    "store",
    "log",
    "log_format",
    "log_headers",
    "log_bodies",
    "admin",
    "admin_token",
    "admin_hosts",
    "admin_tls_cert",
    "admin_tls_key",
    "max_connections",
    "grace_period",
    "store_queue",
    "store_queue_bytes",
    "store_batch",
    "store_on_full",
    "store_commit_delay",
    "max_rows",
    "max_age",
    "busy_timeout",
    "store_init",
    "redact",
    "redact_headers",
    "redact_fields",
    "amqp",
    "replicate_secret",
    "replicate_durability",
    "replicate_on",
    "replicate_max_body",
    "replicate_drop_headers",
    "queue_type",
    "amqp_heartbeat",
    "amqp_log_interval",
    "healthz_degraded_status",
    "log_requests",
    "persist_requests",
    "replicate_requests",
    "replicate_methods",
    "req_body_cap",
    "resp_body_cap",
    NULL,
};

static void usage(void)
{
    printf("usage: restspy collect --socket PATH [options]\n\n"
           "Takes finished request/response pairs from local processes (the Django\n"
           "adapter) on a Unix socket (mode 0660) and runs them through the proxy's\n"
           "capture pipeline: rules and flags, redaction, log, store, outbox and\n"
           "publisher. A view name is a rule name: a [rule \"NAME\"] section declares a\n"
           "view's switches, else the view gets a rule of its name on first sight with\n"
           "the flags its pairs carry. docs/collect-protocol.md is the protocol.\n"
           "SIGTERM/SIGINT answer the pairs in flight, flush the store and exit 0;\n"
           "SIGHUP reopens the log. Every option is also a config-file key and a\n"
           "RESTSPY_<KEY> variable (flags beat env beat file).\n\n"
           "options:\n");
    config_print_keys(stdout, help_keys, false);
}

int cli_collect(int argc, char **argv, char *const *envp)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (cliutil_is_help(argv[i])) {
            usage();
            return 0;
        }
    }
    config *cfg = NULL;
    int rc = config_load_command(&cfg, CMD, argc, argv, envp);
    if (rc)
        return rc;
    if (!cfg->socket) {
        cliutil_errorf(CMD, "--socket is required (e.g. --socket /run/restspy/collect.sock)");
        config_unref(cfg);
        return 2;
    }
    rc = collect_run(cfg);
    config_unref(cfg);
    return rc;
}
