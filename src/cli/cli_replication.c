/* cli_replication: `restspy replication status` and `restspy replication dead`:
 * the dispatch and what both share. The subcommands are in
 * cli_repl_status.c and cli_repl_dead.c (cli_repl.h joins them).
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
#include <string.h>

#include "base/buf.h"
#include "cli/cli_repl.h"
#include "cli/cliutil.h"

/* Appends s (NULL: "-") with control bytes as \xHH, so broker-supplied text
 * (a reason quoting an upstream body) cannot drive the terminal. */
void cli_repl_append_safe(buf *b, const char *s)
{
    if (s)
        cliutil_append_safe(b, s, strlen(s), false);
    else
        buf_append_char(b, '-');
}

/* ---- dispatch ---- */

static const char usage[] =
    "usage: restspy replication status [options]   replication figures from the store\n"
    "       restspy replication dead [options]     list, show, retry or skip dead letters\n"
    "       restspy replication diverged [options] applied writes whose answer differed\n"
    "                                              from the origin's\n"
    "\n"
    "See restspy replication SUBCOMMAND --help.\n";

int cli_replication(int argc, char **argv, char *const *envp)
{
    if (argc < 2) {
        cliutil_errorf("replication",
                       "missing subcommand: status, dead or diverged (see restspy replication "
                       "--help)");
        return 2;
    }
    const char *sub = argv[1];
    if (cliutil_is_help(sub) || strcmp(sub, "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(sub, "status") == 0)
        return cli_repl_status(argc - 1, argv + 1, envp);
    if (strcmp(sub, "dead") == 0)
        return cli_repl_dead(argc - 1, argv + 1, envp);
    if (strcmp(sub, "diverged") == 0)
        return cli_repl_diverged(argc - 1, argv + 1, envp);
    cliutil_errorf("replication", "unknown subcommand '%s' (expected status, dead or diverged)",
                   sub);
    return 2;
}
