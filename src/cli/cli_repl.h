/* cli_repl: what the files of `restspy replication` share (private to
 * cli_replication.c, cli_repl_status.c and cli_repl_dead.c). */
#ifndef RESTSPY_CLI_REPL_H
#define RESTSPY_CLI_REPL_H

#include "base/buf.h"

/* Appends s (NULL: "-") with control bytes as \xHH, so broker-supplied text
 * (a reason quoting an upstream body) cannot drive the terminal. */
void cli_repl_append_safe(buf *b, const char *s);

/* `restspy replication status`, argv[0] "status". The exit status. */
int cli_repl_status(int argc, char **argv, char *const *envp);

/* `restspy replication dead`, argv[0] "dead". The exit status. */
int cli_repl_dead(int argc, char **argv, char *const *envp);

#endif
