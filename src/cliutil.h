/* cliutil: the command-line plumbing shared by the commands that are not the
 * proxy (`restspy requests`, `show`, `replication`, `federate`, ...).
 *
 * Owns nothing: every buffer and result is the caller's. Promises one
 * behaviour for every command: errors are one line on stderr,
 * "restspy <cmd>: <message>"; a flag takes its value as `--flag value` or
 * `--flag=value`; settings come through config_load, so --config,
 * RESTSPY_* variables and the config file work, with the same precedence,
 * for every command; exit codes are 0 success, 1 runtime failure, 2 usage
 * error. */
#ifndef RESTSPY_CLIUTIL_H
#define RESTSPY_CLIUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "store.h"

/* Prints "restspy <cmd>: <fmt...>\n" on stderr. cmd is what the user typed
 * after restspy ("requests", "replication status"). */
void cliutil_errorf(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True when arg asks for help: -h or --help. */
bool cliutil_is_help(const char *arg);

/* Matches argv[*i] against the flag name ("--store"): "--store VALUE" (the
 * value is the next argument, *i is advanced past it) or "--store=VALUE".
 * 1 matched (*val points into argv), 0 not this flag (a longer flag such as
 * --stores is not this one), -1 the value is missing (reported as
 * "<name> needs a value"; the caller exits with 2). */
int cliutil_flag_value(const char *cmd, int argc, char **argv, int *i, const char *name,
                       const char **val);

/* The options of every command that reads the store. */
typedef struct cliutil_read_opts {
    const char *store_url;   /* --store URL; NULL when not given */
    const char *config_file; /* --config FILE; NULL when not given */
    bool json;               /* --json */
} cliutil_read_opts;

/* Matches argv[*i] against --store, --config (as cliutil_flag_value) and
 * --json, filling o. 1 matched, 0 none of them, -1 a value is missing
 * (reported; the caller exits with 2). */
int cliutil_read_opt(const char *cmd, int argc, char **argv, int *i, cliutil_read_opts *o);

/* Reports an argument the command does not take: "unknown option ARG" when
 * it starts with '-', else "unexpected argument 'ARG'", both followed by
 * "(see restspy <cmd> --help)". Returns 2, the exit code. */
int cliutil_bad_arg(const char *cmd, const char *arg);

/* Loads the config for a command from the file, the environment and the
 * given flags: nflags entries of flags are pairs of flag name ("--store")
 * and value, a NULL value meaning not given (at most 8 pairs are used).
 * Precedence and validation are config_load's. Returns 0 with *out (one
 * reference, the caller's), or 2 after reporting config_load's error. */
int cliutil_config_load(const char *cmd, char *const *envp, const char *const *flags, size_t nflags,
                        config **out);

/* Opens read-only (so that it works next to a proxy writing the same file)
 * the store named by o->store_url / o->config_file / RESTSPY_STORE / the
 * config file. Returns 0 with *out (the caller closes it), 2 when the config
 * is bad, 1 when the store is off (reported as "the store is off (store =
 * off): <why_off>") or cannot be opened, each reported. */
int cliutil_open_store(const char *cmd, const cliutil_read_opts *o, char *const *envp,
                       const char *why_off, store **out);

/* Appends s[0..n) with every control byte and DEL as \xHH, so that text that
 * came from the outside (paths, headers, bodies, broker reasons) cannot drive
 * the user's terminal; newline and tab are kept when multiline. */
void cliutil_append_safe(buf *b, const char *s, size_t n, bool multiline);

/* Formats us (µs since the epoch, rounded down to the second) in local time
 * as "YYYY-MM-DD HH:MM:SS", followed by ".mmm" (the milliseconds) when
 * with_ms. When today is not NULL, *today tells whether the date is today's
 * (local). 32 bytes of out are always enough. */
void cliutil_fmt_local(int64_t us, bool with_ms, char *out, size_t len, bool *today);

/* Flushes stdout. 0, or 1 (the exit code) after reporting "cannot write
 * output: <reason>" (a closed pipe, a full disk). */
int cliutil_flush_stdout(const char *cmd);

#endif
