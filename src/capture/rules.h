/* rules: what a capture rule is, and which one applies to a request (the
 * "view filter").
 *
 * Owns nothing; reads a rule list it is given (config owns the list and
 * builds it from [rule "name"] sections). Promises: first match in list
 * order wins, and a list ends with the default rule, which matches
 * everything, so rules_match never returns NULL. Matching allocates nothing
 * (it runs per request). */
#ifndef RESTSPY_RULES_H
#define RESTSPY_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
} rule;

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

#endif
