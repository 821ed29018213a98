/* rules: which capture rule applies to a request (the "view filter").
 *
 * Owns nothing; reads a config's rule list. Promises: first match in file
 * order wins and the default rule (last) matches everything, so rules_match
 * never returns NULL. Matching allocates nothing (it runs per request). */
#ifndef RESTSPY_RULES_H
#define RESTSPY_RULES_H

#include <stdbool.h>
#include <stddef.h>

#include "capture/config.h"

/* The RULE_M_* bit of a method name (length n); RULE_M_OTHER if unknown. */
unsigned rules_method_bit(const char *method, size_t n);

/* Longest glob rules_glob_match accepts; config rejects longer path globs. */
#define RULES_GLOB_MAX 1023

/* Glob match of a path (length n, query excluded): '*' matches one segment
 * or part of one (no '/'), '**' any number of segments (including none, so
 * a '/' followed by '**' also matches nothing: the glob for everything under
 * /api matches "/api" itself), other characters literally. Runs in
 * O(len(glob) * n) whatever the input, so a hostile path cannot make it
 * backtrack; a glob longer than RULES_GLOB_MAX never matches. */
bool rules_glob_match(const char *glob, const char *path, size_t n);

/* The default rule: the config's last, which matches everything (never NULL). */
const rule *rules_default(const config *c);

/* The rule for a request. host may be NULL (no Host header); its ":port" is
 * ignored. path may still carry its "?query": matching stops at the '?'. */
const rule *rules_match(const config *c, const char *method, size_t mlen, const char *host,
                        const char *path, size_t plen);

#endif
