/* rules: what a capture rule is, which one applies to a request (the
 * "view filter"), and a rule's run-time switches.
 *
 * Owns nothing; reads a rule list it is given (config owns the list and
 * builds it from [rule "name"] sections). Promises: first match in list
 * order wins, and a list ends with the default rule, which matches
 * everything, so rules_match never returns NULL. Matching and reading the
 * switches allocate nothing and take no lock (they run per request).
 *
 * A rule is read-only once its config is installed (but for a rule added
 * at run time by config_add_rule, see rules_set_configured), except for one
 * field: `flipped`, its run-time switches (the admin API's per-rule flags). They
 * are kept as the configured switches turned the other way, so a fresh
 * config (all zero) is its file, and "switched at run time" is a bit that
 * is set. One thread writes them (the admin's, the main loop, which also
 * installs configs on reload); workers read them with one relaxed load, as
 * they read the global flags. */
#ifndef RESTSPY_RULES_H
#define RESTSPY_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/glob.h"

/* Method bits for rule matching; RULE_METHOD_ANY when none given. */
enum {
    RULE_M_GET = 1 << 0,
    RULE_M_HEAD = 1 << 1,
    RULE_M_POST = 1 << 2,
    RULE_M_PUT = 1 << 3,
    RULE_M_PATCH = 1 << 4,
    RULE_M_DELETE = 1 << 5,
    RULE_M_OPTIONS = 1 << 6,
    RULE_M_OTHER = 1 << 7, /* any other method (TRACE, PROPFIND, ...) */
    RULE_METHOD_ANY = 0xff,
};

typedef struct rule {
    char *name;
    unsigned methods; /* RULE_M_* bits */
    char *path;       /* glob; "*" one segment, "**" any depth; NULL = any */
    char *host;       /* exact host (port ignored, case-insensitive); NULL = any */
    bool log;
    bool persist;
    bool replicate;             /* replicate matching requests whose method is in: */
    unsigned replicate_methods; /* RULE_M_* bits; default POST, PUT, PATCH, DELETE */
    uint64_t req_body_cap;      /* bytes of request body kept in the record */
    uint64_t resp_body_cap;     /* bytes of response body kept */
    /* The one mutable part: the RULE_SW_* switches turned away from log,
     * persist, replicate above at run time (rules_switches reads it). */
    _Atomic unsigned flipped;
} rule;

/* A rule's switches as bits: what capture_decide is given. */
enum {
    RULE_SW_LOG = 1 << 0,
    RULE_SW_PERSIST = 1 << 1,
    RULE_SW_REPLICATE = 1 << 2,
    RULE_SW_ALL = RULE_SW_LOG | RULE_SW_PERSIST | RULE_SW_REPLICATE,
};

/* The RULE_M_* bit of a method name (length n); RULE_M_OTHER if unknown. */
unsigned rules_method_bit(const char *method, size_t n);

/* Longest path glob a rule may have: config rejects longer ones (glob_match
 * would never match them). */
#define RULES_GLOB_MAX GLOB_MAX

/* The default rule of rules[0..n): the last, which matches everything
 * (never NULL, even for an empty list). */
const rule *rules_default(const rule *rules, size_t n);

/* The rule for a request among rules[0..n), the last being the default
 * rule. host may be NULL (no Host header); its ":port" is ignored. path may
 * still carry its "?query": matching stops at the '?'. */
const rule *rules_match(const rule *rules, size_t n, const char *method, size_t mlen,
                        const char *host, const char *path, size_t plen);

/* The rule named name among rules[0..n), or NULL. */
rule *rules_find(rule *rules, size_t n, const char *name);

/* The RULE_SW_* switches r's config gives it (log, persist, replicate). */
unsigned rules_configured(const rule *r);

/* The RULE_SW_* switches r has now: its configured ones, as the admin API
 * switched them. Any thread; no lock, no allocation. */
unsigned rules_switches(const rule *r);

/* Makes sw (RULE_SW_* bits) r's run-time switches; they take effect with
 * the next request that r decides. One writer (see the top). */
void rules_set_switches(rule *r, unsigned sw);

/* Makes sw (RULE_SW_* bits) r's configured switches (its log, persist,
 * replicate), keeping what was switched at run time as it was switched: a
 * switch the admin API turned stays where it was turned, the others follow
 * sw. For a rule added at run time (config_add_rule: `restspy collect`'s
 * views, whose configured switches are the latest pair's), on the one
 * thread that reads its config's rules; never for a rule workers share. */
void rules_set_configured(rule *r, unsigned sw);

/* The RULE_SW_* bit of a switch name ("log", "persist", "replicate"; n
 * bytes), or 0 when it is none of them. */
unsigned rules_switch_bit(const char *name, size_t n);

/* On a reload: each rule of from[0..nfrom) (the running config) that was
 * switched at run time hands the switches it had switched to the rule of
 * the same name in to[0..nto) (the config about to be installed, read by
 * nobody yet); a switch nobody touched follows the new file. Appends to
 * note (text, "; "-separated) what was kept ("api keeps persist off") and
 * which switched rules are gone ("old is gone, ..."). Returns how many
 * rules of to kept something. */
size_t rules_carry_switches(rule *to, size_t nto, const rule *from, size_t nfrom, buf *note);

#endif
