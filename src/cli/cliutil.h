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
#include <stdio.h>

#include "base/buf.h"
#include "capture/config.h"
#include "http/hclient.h"
#include "compare/noise.h"
#include "store/reqfilter.h"
#include "store/store.h"

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
/* Matches argv[*i] against the TLS flags of an outgoing client, curl's
 * names: --cacert FILE, --insecure (-k), --cert FILE, --key FILE, filling
 * t (values point into argv). 1 matched, 0 not one of them, -1 a value is
 * missing (reported). */
int cliutil_tls_flag(const char *cmd, int argc, char **argv, int *i, hclient_tls *t);

/* The help lines of those flags, for a usage text. */
#define CLIUTIL_TLS_HELP                                                                           \
    "  --cacert FILE        CA certificates (PEM) trusted for an https:// server,\n"               \
    "                       besides the system's\n"                                                \
    "  -k, --insecure       do not verify the server's certificate (logged)\n"                     \
    "  --cert FILE          client certificate (PEM) for mutual TLS\n"                             \
    "  --key FILE           its private key (PEM; default: in --cert's file)\n"

/* After parsing: TLS flags only make sense for an https:// server
 * (https: does the URL flag, named flag, e.g. "--target", say https), and
 * --key needs --cert. 0, or 2 (the exit code) after reporting "--cacert,
 * --insecure, --cert and --key need an https:// FLAG". With --insecure,
 * warns (one line) that whose ("the target's") certificate is not
 * verified. */
int cliutil_tls_check(const char *cmd, const hclient_tls *t, bool https, const char *flag,
                      const char *whose);

/* Parses a request header given on the command line, 'Name: value' (blanks
 * around the value trimmed), and adds it to h. 0, or -1 after reporting
 * "bad value for FLAG: 'V' (expected 'Name: value')" (no name, a name that
 * is not a token, a CR or LF anywhere). */
int cliutil_header_arg(const char *cmd, const char *flag, const char *v, http_headers *h);

/* Parses a duration flag's value ("10s", "500ms", more than 0) into *ms. 0,
 * or -1 after reporting "bad value for FLAG: 'V' (expected a duration like
 * 10s or 500ms)". */
int cliutil_duration_arg(const char *cmd, const char *flag, const char *v, uint64_t *ms);

/* Adds the noise rule prefix + v ("header: " + "Date") to n. 0, or -1
 * after reporting noise_add's error. */
int cliutil_noise_rule(const char *cmd, noise *n, const char *prefix, const char *v);

/* Matches argv[*i] against the noise flags of the commands that compare
 * answers (replay, sites compare): --ignore PATH, --ignore-header N,
 * --ignore-regex RE and --noise FILE (noise.h's rule file), adding to n.
 * 1 matched, 0 none of them, -1 a value is missing or bad (reported). */
int cliutil_noise_opt(const char *cmd, int argc, char **argv, int *i, noise *n);

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

/* As cliutil_open_store, with a store that cannot be opened reported as
 * "WHAT: <why>" (what the store was needed for) when what is not NULL. */
int cliutil_open_store_for(const char *cmd, const cliutil_read_opts *o, char *const *envp,
                           const char *why_off, const char *what, store **out);

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

/* ---- selecting captured requests (`requests`, `replay`, `export`) ---- */

/* The filters of every command that selects captured requests: the store's
 * reqfilter (the admin API uses the same one), reported the CLI's way. */
typedef reqfilter cliutil_filter;

/* The --help lines of the filters every command that reads the store
 * takes (cliutil_filter_opt), in one place so the commands agree; options
 * are in a 21-column field. --id and --limit differ per command. */
#define CLIUTIL_FILTERS_HELP                                                                       \
    "  --method M           only this method (case-insensitive)\n"                                 \
    "  --path GLOB          only paths matching GLOB ('*' within a segment, '**' any depth)\n"     \
    "  --status S           recorded status: a class (5xx), a code (404) or a range (200-299)\n"   \
    "  --since T            started at or after T: RFC 3339 (2026-11-27T05:00:00Z),\n"             \
    "                       a local date (2026-11-27) or an age (90s, 10m, 2h, 1d ago)\n"          \
    "  --until T            started before T (same forms as --since)\n"                            \
    "  --origin O           only this origin (local, replicated, imported)\n"                      \
    "  --node N             only requests captured by node N\n"                                    \
    "  --replication diverged\n"                                                                   \
    "                       only replicated writes whose answer here differed from the\n"          \
    "                       origin's (restspy replication diverged lists them)\n"

/* Matches argv[*i] against the filter flags (--method, --path, --status,
 * --since, --until, --origin, --node, --replication, --limit and, when with_ids, --id,
 * repeatable), filling f. A value no request can have is refused rather
 * than matching nothing: a method that is not an HTTP token, a path glob
 * not starting with / or *, a status outside 100-599 (5xx, 404, 200-299),
 * an origin other than local, replicated or imported, a node name the node
 * setting would refuse, a date that does not exist; so is a single-valued
 * flag given twice. 1 matched, 0 none of them, -1 a value is missing or
 * bad (reported; the caller exits with 2). */
int cliutil_filter_opt(const char *cmd, int argc, char **argv, int *i, cliutil_filter *f,
                       bool with_ids);

/* What no single flag can check: --since not before --until. 0, or 2 after
 * reporting. */
int cliutil_filter_check(const char *cmd, const cliutil_filter *f);

/* Calls fn for each request of s that f selects, oldest first; with a
 * limit, only the newest q.limit of them (still oldest first). fn must not
 * keep r; returning non-zero stops. --id values are looked up one by one
 * (store_get: an id, or a start or end naming one request). 0, or 1 after
 * reporting the store's error (an ambiguous id) or "no request with id ID". */
int cliutil_filter_each(const char *cmd, store *s, const cliutil_filter *f,
                        int (*fn)(const record *r, void *ud), void *ud);

/* Matching, applying to requests read from files, freeing and copying
 * records are reqfilter's and record's own: reqfilter_match,
 * reqfilter_apply, reqfilter_free, record_copy. */

/* Writes a file whole or not at all: cliutil_out_open returns a stream on a
 * temporary file next to path (stdout when path is "-"), cliutil_out_close
 * flushes it and renames it to path, or removes it when anything failed (or
 * when discard). 0, or -1 after reporting "cannot write PATH: reason". */
typedef struct cliutil_out {
    FILE *f;
    const char *path; /* the caller's */
    char *tmp;        /* owned; NULL for stdout */
} cliutil_out;

int cliutil_out_open(const char *cmd, const char *path, cliutil_out *o);
int cliutil_out_close(const char *cmd, cliutil_out *o, bool discard);

#endif
