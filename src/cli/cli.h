/* Folder cli/ (this is its main header): main.c and one file per command,
 * with the plumbing they share (cliutil.h). The only folder that may use
 * every other one.
 *
 * cli: the commands that read what was captured (`restspy requests`,
 * `restspy show`, `restspy replication`). Each takes the arguments after its command name
 * (argv[0] is the command name) and returns the process exit code:
 * 0 success, 1 runtime failure (store cannot be opened, record not found),
 * 2 usage error (unknown flag, bad value); errors are one line on stderr. */
#ifndef RESTSPY_CLI_H
#define RESTSPY_CLI_H

int cli_requests(int argc, char **argv, char *const *envp);
/* `restspy replication diverged`: the requests listing of the replicated
 * writes whose ledger outcome is not "same" (issue 16). */
int cli_repl_diverged(int argc, char **argv, char *const *envp);
int cli_show(int argc, char **argv, char *const *envp);

/* `restspy replication status|dead [--retry ID|--all]`: outbox depth and
 * age, last confirmed publish, replicator lag, applied / deduplicated /
 * dead-lettered counts (from the store); dead letters listed from and
 * requeued out of the broker's restspy.dead.<node> queue. */
int cli_replication(int argc, char **argv, char *const *envp);

/* `restspy federate`: sets up this site's broker for replication
 * (replication/federate.h). Exit code: 0 done, 1 the broker refused or
 * could not be reached, 2 usage error. */
int cli_federate(int argc, char **argv, char *const *envp);

/* `restspy replay`: replays requests from the store (the `requests` filters),
 * a HAR file or a JSON lines file against --target and compares the answers
 * with the recorded ones (compare.h, report.h). Exit code: 0 all matched, 1
 * mismatches, 2 could not run (or no answers). */
int cli_replay(int argc, char **argv, char *const *envp);

/* `restspy export --har FILE | --jsonl FILE | --curl` with the `requests`
 * filters; `restspy import --har FILE` stores a HAR's entries as records
 * (origin "imported"). */
/* `restspy collect --socket PATH`: the collect daemon (collect/collect.h)
 * until SIGTERM. Exit code: 0 clean stop, 1 runtime failure (socket taken
 * or not a socket, store, admin), 2 usage error. */
int cli_collect(int argc, char **argv, char *const *envp);

/* `restspy sites compare`: GETs the same paths (literal, or globs over the
 * GET paths in the store) from two or more sites and compares the answers
 * with the first site's (compare.h, noise.h). Exit code: 0 all agree, 1 a
 * site differs or could not be read, 2 usage error. */
int cli_sites(int argc, char **argv, char *const *envp);

int cli_export(int argc, char **argv, char *const *envp);
int cli_import(int argc, char **argv, char *const *envp);

#endif
