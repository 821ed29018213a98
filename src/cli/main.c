/* restspy: a reverse proxy that logs, persists (and later replicates and
 * replays) every REST request it forwards. This file only dispatches to the
 * command modules. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "replication/replicator.h"
#include "proxy/server.h"

extern char **environ;

static void usage(FILE *f)
{
    fprintf(f, "usage: restspy <command> [options]\n\n"
               "commands:\n"
               "  proxy      run the proxy in front of an upstream API\n"
               "  collect    take request/response pairs from local apps (Django) on a Unix\n"
               "             socket and capture them as the proxy does\n"
               "  requests   list captured requests\n"
               "  show ID    show one captured request in full\n"
               "  replicate  apply peers' replicated requests to the local upstream\n"
               "  federate   set up a site's RabbitMQ for replication\n"
               "  replication status|dead|diverged   replication figures, dead letters, and\n"
               "             applied writes whose answer differed from the origin's\n"
               "  replay     replay captured requests against a server and compare the answers\n"
               "  sites compare  GET the same resources from two or more sites and list\n"
               "             where they differ: have the sites converged?\n"
               "  export     write captured requests as HAR, JSON lines or curl command lines\n"
               "  import     store the requests of a HAR or JSON lines file\n\n"
               "`restspy <command> --help` describes each command.\n"
               "Exit codes: 0 success, 1 runtime failure, 2 usage error.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("restspy %s\n", RESTSPY_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "proxy"))
        return server_main(argc - 1, argv + 1, environ);
    if (!strcmp(cmd, "collect"))
        return cli_collect(argc - 1, argv + 1, environ);
    if (!strcmp(cmd, "requests"))
        return cli_requests(argc - 1, argv + 1, environ);
    if (!strcmp(cmd, "show"))
        return cli_show(argc - 1, argv + 1, environ);
    if (!strcmp(cmd, "replicate"))
        return replicator_main(argc - 1, argv + 1, environ);
    if (!strcmp(cmd, "federate"))
        return cli_federate(argc - 1, argv + 1, environ);
    if (!strcmp(cmd, "replication"))
        return cli_replication(argc - 1, argv + 1, environ);
    if (!strcmp(cmd, "replay"))
        return cli_replay(argc - 1, argv + 1, environ);
    if (!strcmp(cmd, "sites"))
        return cli_sites(argc - 1, argv + 1, environ);
    if (!strcmp(cmd, "export"))
        return cli_export(argc - 1, argv + 1, environ);
    if (!strcmp(cmd, "import"))
        return cli_import(argc - 1, argv + 1, environ);
    fprintf(stderr, "restspy: unknown command '%s' (see restspy --help)\n", cmd);
    return 2;
}
