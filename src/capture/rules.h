/* rules: which capture rule applies to a request (the "view filter").
 *
 * Owns nothing; reads a config's rule list. Promises: first match in file
 * order wins and the default rule (last) matches everything, so rules_match
 * never returns NULL. Matching allocates nothing (it runs per request). */
#ifndef RESTSPY_RULES_H
#define RESTSPY_RULES_H

#include <stdbool.h>
#include <stddef.h>

#include "base/glob.h"
#include "capture/config.h"

/* The RULE_M_* bit of a method name (length n); RULE_M_OTHER if unknown. */
unsigned rules_method_bit(const char *method, size_t n);

/* Longest path glob a rule may have: config rejects longer ones (glob_match
 * would never match them). */
#define RULES_GLOB_MAX GLOB_MAX

/* The rule for a request. host may be NULL (no Host header); its ":port" is
 * ignored. path may still carry its "?query": matching stops at the '?'. */
const rule *rules_match(const config *c, const char *method, size_t mlen, const char *host,
                        const char *path, size_t plen);

#endif
