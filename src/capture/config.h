/* config: every setting of restspy, where it comes from, and its checks.
 *
 * Owns the config struct and its rule list. Each setting has one key name,
 * used verbatim in the INI file (top level or [restspy] section), as a flag
 * (--key-with-dashes) and as an environment variable (RESTSPY_KEY_UPPER).
 * Precedence: built-in default < file < environment < flags.
 *
 * A config is immutable once loaded and shared between threads by reference
 * count: the proxy takes a reference per worker and a SIGHUP reload builds a
 * new one, so readers never see a half-changed config. */
#ifndef RESTSPY_CONFIG_H
#define RESTSPY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "capture/rules.h"

enum { LOG_FORMAT_JSON = 0, LOG_FORMAT_COMBINED = 1 };
enum { STORE_FULL_BLOCK = 0, STORE_FULL_DROP = 1 };
enum { REPL_SYNC = 0, REPL_ASYNC = 1 };
enum { REPL_ON_2XX = 0, REPL_ON_ANY = 1 };
enum { REPL_REFUSED_DIVERGED = 0, REPL_REFUSED_DEAD_LETTER = 1 };
enum { QUEUE_CLASSIC = 0, QUEUE_QUORUM = 1 };
/* apply_order: what a replicated write waits for (docs/replication.md) */
enum { APPLY_ORDER_RESOURCE = 0, APPLY_ORDER_STRICT = 1, APPLY_ORDER_ORIGIN = 2 };

typedef struct config {
    /* where */
    char *listen;                /* "127.0.0.1:8080" */
    char *upstream;              /* "http://127.0.0.1:8000" (required by `proxy`) */
    char *socket;                /* Unix socket path (required by `collect`) */
    uint64_t collect_max_frame;  /* largest collect frame body */
    uint64_t collect_timeout_ms; /* a partial collect frame's longest pause */
    char *config_path;           /* file it was loaded from, or NULL */
    char *store;                 /* "sqlite:restspy.db" or "off" */
    char *log;                   /* "-" stdout, a path, or "off" */
    int log_format;              /* LOG_FORMAT_* */
    bool log_headers;            /* JSON log lines include headers */
    bool log_bodies;             /* JSON log lines include bodies */
    char *admin;                 /* "127.0.0.1:8081" or "off" */
    char *admin_token;           /* bearer token or NULL */
    int workers;                 /* event loops; 0 = number of cores */
    char *node;                  /* node name: letters, digits, '-', '_'; default: host name */
    /* Without admin_token, more Host names the admin API answers:
     * NULL-terminated, lower case, "name" or "name:port"; NULL = none. */
    char **admin_hosts;

    /* TLS (docs: README "TLS"). Listener certificates: the Nth key belongs
     * to the Nth certificate; a certificate file without its key file holds
     * both. NULL-terminated lists of paths; NULL = plain HTTP. */
    char **tls_cert;
    char **tls_key;
    char *admin_tls_cert; /* the admin listener's; NULL = plain HTTP */
    char *admin_tls_key;
    uint64_t tls_handshake_timeout_ms; /* accept to handshake done */
    /* an https:// upstream: verification (on unless upstream_insecure)
     * against the system store plus upstream_ca; SNI and the name checked
     * are upstream_sni or the upstream's host; optional client certificate */
    char *upstream_ca;
    bool upstream_insecure;
    char *upstream_sni;
    char *upstream_cert;
    char *upstream_key;

    /* limits and timeouts (ms) */
    uint64_t max_header_size;             /* bytes of the whole header section -> 431 */
    uint64_t max_request_line;            /* bytes of the request target -> 414 */
    uint64_t max_body_size;               /* request body; 0 = unlimited -> 413 */
    uint64_t header_timeout_ms;           /* first byte to end of headers -> 408 */
    uint64_t client_timeout_ms;           /* between reads of a request body */
    uint64_t idle_timeout_ms;             /* keep-alive connection with no request */
    uint64_t upstream_connect_timeout_ms; /* -> 504 */
    uint64_t upstream_timeout_ms;         /* waiting for/between response reads -> 504 */
    uint64_t grace_period_ms;             /* SIGTERM: how long in-flight requests get */
    uint64_t max_connections;             /* per worker; beyond it new ones are refused */
    uint64_t upstream_keepalive;          /* idle upstream connections kept per worker */
    uint64_t max_upstream_header_size;    /* bytes of an upstream response head -> 502 */
    uint64_t upstream_header_timeout_ms;  /* request complete to final response head -> 504 */
    uint64_t max_interim_responses;       /* 1xx answers relayed per request -> 502 */

    /* store */
    uint64_t store_queue;       /* records waiting for the writer */
    uint64_t store_queue_bytes; /* what they may hold; 0 = no limit */
    uint64_t store_batch;       /* records per transaction at most */
    int store_on_full;          /* STORE_FULL_* */
    uint64_t max_rows;          /* retention; 0 = unlimited */
    uint64_t max_age_ms;        /* retention; 0 = unlimited */
    uint64_t busy_timeout_ms;
    uint64_t store_commit_delay_ms;       /* group commit window of the writer */
    uint64_t replicate_ledger_max_age_ms; /* ledger and receipts retention; 0 = for ever */
    uint64_t store_claim_lease_ms;        /* PostgreSQL: outbox and apply claims' lease */
    uint64_t store_checkpoint_pages;      /* background WAL checkpoint threshold; 0 = SQLite's */
    bool store_init;                      /* add the tables to a foreign SQLite file */

    /* redaction */
    bool redact;
    char **redact_headers; /* NULL-terminated, lower-case names */
    char **redact_fields;  /* NULL-terminated, lower-case JSON/form field names */

    /* replication (see docs/replication.md) */
    char *amqp;                         /* amqp://user:pass@host:port/vhost; NULL = off */
    char *replicate_secret;             /* HMAC-SHA256 key; NULL = unsigned */
    int replicate_durability;           /* REPL_SYNC or REPL_ASYNC */
    int replicate_on;                   /* REPL_ON_2XX or REPL_ON_ANY */
    uint64_t replicate_max_body;        /* larger request bodies are not replicated */
    uint64_t replicate_origin_body_max; /* the origin's response body travels with its
                                           write up to this size (0 = never) */
    int replicate_refused;              /* REPL_REFUSED_*: a 4xx here, 2xx/3xx there */
    char *replicate_noise;              /* noise rules file the replicator compares its
                                           answer with the origin's under; NULL = none */
    char **replicate_drop_headers;      /* NULL-terminated, lower case: not replicated */
    int queue_type;                     /* QUEUE_CLASSIC or QUEUE_QUORUM */
    uint64_t amqp_heartbeat_ms;
    uint64_t amqp_log_interval_ms; /* the proxy's broker outage lines on stderr */
    int healthz_degraded_status;   /* /healthz while degraded: 200 (default) or e.g. 503 */
    char
        *mgmt; /* this site's broker's management API, http[s]://user:pass@host:port; NULL = none */
    /* the replicator (`restspy replicate`) */
    int concurrency;       /* requests applied at once; order per apply_order */
    int prefetch;          /* deliveries unacked at once (at least concurrency) */
    uint64_t retry_min_ms; /* backoff after a 5xx/unreachable upstream ... */
    uint64_t retry_max_ms; /* ... doubling up to this */
    /* The retry budget of a write that keeps failing: dead-lettered once
     * its first failed answer is this old, or after this many failed
     * answers (0 = no limit on that count). */
    uint64_t retry_max_age_ms;
    uint64_t retry_max_attempts;
    int apply_order;         /* APPLY_ORDER_* */
    uint64_t stuck_after_ms; /* failing this long (others applied): holds its resource only */
    char **set_headers;      /* "Name: value" added to applied requests; NULL-terminated */

    /* rules in file order, then the default rule (always last, always
     * matches; named "default", set by the top-level keys log_requests etc.) */
    rule *rules;
    size_t rules_len;
} config;

/* A config with every default; rules holds just the default rule. */
config *config_new(void);
void config_ref(config *c);
/* Drops a reference; frees on the last one. NULL is fine. */
void config_unref(config *c);

/* A rule added at run time (`restspy collect`'s views, on first sight):
 * appends a rule named name just before the default rule, matching every
 * request (no path, no host, every method), with the default rule's body
 * caps and replicate_methods, sw (RULE_SW_* bits) as its configured
 * switches and none switched at run time. name must not be a rule of c yet
 * (asserted). Returns the new rule.
 *
 * The list may move: every pointer into c->rules taken before (rules_find,
 * rules_match, &c->rules[i]) is invalid after it, and c is not immutable
 * any more. So only for a config that one thread reads the rules of: the
 * caller's loop, the one that runs the admin API too (restspy collect), and
 * that no worker thread shares. */
rule *config_add_rule(config *c, const char *name, unsigned sw);

/* Sets one key from text. Unknown key or bad value: -1 with a one-line
 * message in err ("bad value for workers: 'x' (expected a number)"). */
int config_set(config *c, const char *key, const char *value, char *err, size_t errlen);

/* Loads an INI file: top-level keys and [restspy] as config_set keys,
 * [rule "name"] sections appended as rules in order. -1 with err. */
int config_load_file(config *c, const char *path, char *err, size_t errlen);

/* Applies every RESTSPY_* variable of envp that names a key. -1 with err. */
int config_apply_env(config *c, char *const *envp, char *err, size_t errlen);

/* Full load for a command: defaults, then the file (path from --config,
 * else RESTSPY_CONFIG, else none), env, then flags from argv[0..argc).
 * Flags are --key value or --key=value; non-flag arguments are left: their
 * indexes are written to positional (may be NULL) and counted in *npositional.
 * -1 with err on any bad key or value. The result has one reference. */
int config_load(config **out, int argc, char **argv, char *const *envp, int *positional,
                int *npositional, char *err, size_t errlen);

/* config_load and config_validate for a command's whole argv (argv[0] is
 * the command's name, cmd as the user typed it: "proxy", "collect"),
 * refusing positional arguments. 0 with *out (one reference), or 2 (the
 * usage-error exit code) after one line on stderr: "restspy CMD: why". */
int config_load_command(config **out, const char *cmd, int argc, char **argv, char *const *envp);

/* Checks cross-key constraints (e.g. admin on a non-loopback address needs
 * admin_token; caps and limits in range). -1 with err. */
int config_validate(const config *c, char *err, size_t errlen);

/* Calls fn for each key, in table order, with its name, default as text
 * and one-line description. */
void config_each_key(void (*fn)(const char *key, const char *def, const char *help, void *ud),
                     void *ud);

/* Key documentation, from the settings table: writes the keys named in
 * only (NULL-terminated; NULL = every key, in table order) to f as --help
 * lines ("  --key-name   what it does (default: x)"), or, when markdown, as
 * the settings table of the README (key | default | meaning), which
 * `restspy proxy --help --markdown` prints and test_docs compares. */
void config_print_keys(FILE *f, const char *const *only, bool markdown);

#endif
