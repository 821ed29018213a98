/* config_internal: the settings table (private to the config module:
 * config.c, config_keys.c, config_ini.c).
 *
 * Owns the one table of settings: for each key its name, type, where it
 * lands (config or default rule), limits, default and one-line doc, and
 * for each type its setter. config.c (defaults, flags, environment, --help,
 * the README's settings table) and config_ini.c (files) read keys only
 * through here, so a key added to the table is parsed, checked, documented
 * and freed everywhere at once. */
#ifndef RESTSPY_CONFIG_INTERNAL_H
#define RESTSPY_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "capture/config.h"

/* A key's type: which setter parses it and what its field holds. */
typedef enum {
    K_LISTEN,   /* char*, host:port ("port", ":port" stored as host:port) */
    K_ADMIN,    /* char*, as K_LISTEN, or "off" */
    K_UPSTREAM, /* char*, normalized to http://host:port; "" unsets */
    K_CONFIG,   /* char*, a path; "" unsets */
    K_STORE,    /* char*, "off" or "sqlite:PATH" */
    K_LOG,      /* char*, "-", "off" or a path */
    K_TOKEN,    /* char*, any text; "" unsets */
    K_NODE,     /* char*, non-empty */
    K_CHOICE,   /* int, index into choices */
    K_BOOL,     /* bool */
    K_SIZE,     /* uint64_t bytes, K/M/G suffixes */
    K_DUR,      /* uint64_t ms, plain number = seconds */
    K_COUNT,    /* uint64_t whole number */
    K_INT,      /* int whole number */
    K_LIST,     /* char**, NULL-terminated */
    K_METHODS,  /* unsigned RULE_M_* bits */
    K_GLOB,     /* char*, path glob; NULL = any */
    K_HOST,     /* char*, host name; NULL = any */
    K_AMQP,     /* char*, amqp://...; "" unsets */
    K_MGMT,     /* char*, http[s]://... (a management API); "" unsets */
    K_HEADERS,  /* char**, "Name: value" items; each setting appends one */
    K_HOSTS,    /* char**, host or host:port names, lower case, NULL-terminated */
    K_FILE,     /* char*, a path that must be readable; "" unsets */
    K_FILES,    /* char**, readable paths; each setting appends one, "" empties */
    K_SOCKET,   /* char*, a Unix socket path (fits sun_path, no control bytes); "" unsets */
    K_NKINDS
} key_kind;

typedef struct keydef {
    const char *name;
    key_kind kind;
    bool on_rule; /* off is into the (default) rule, not the config */
    size_t off;
    uint64_t min, max;
    const char *const *choices; /* K_CHOICE, NULL-terminated */
    const char *def;            /* applied by config_new; NULL = not a literal */
    const char *note;           /* shown as the default when def is NULL */
    const char *help;
} keydef;

/* The top-level key (in_rule false) or [rule] section key (in_rule true)
 * named s, length n: case-insensitive, '-' and '_' equal, so "--log-format",
 * "log_format" and RESTSPY_LOG_FORMAT all name one key. NULL if none. */
const keydef *config_key_find(bool in_rule, const char *s, size_t n);

/* Parses value into base (a config, or a rule for keys with on_rule) with
 * k's setter; the field is untouched on error and err gets "bad value for
 * KEY: 'VALUE' (expected ...)". 0 or -1. */
int config_key_apply(const keydef *k, void *base, const char *value, char *err, size_t errlen);

/* Every top-level key in table order, for --help and the docs. */
const keydef *config_keys(size_t *n);
/* Every [rule] section key in table order. */
const keydef *config_rule_keys(size_t *n);

/* Initializes r as a rule named name with every rule default. */
void config_rule_init(rule *r, const char *name);
/* Makes room for one more rule in c just before the default rule (which
 * moves one slot down) and returns the slot (uninitialised: the caller
 * fills it). Pointers into c->rules are invalid after it. */
rule *config_rule_slot(config *c);
/* Frees what r owns (name, globs, ...); r itself is the caller's. */
void config_rule_free(rule *r);

/* Applies every top-level default to c (whose default rule exists). */
void config_keys_defaults(config *c);
/* Frees every string and list setting c owns, through the table. */
void config_keys_free(config *c);

#endif
