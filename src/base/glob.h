/* glob: matching a URL path against a path glob, the one matcher of the
 * rules (capture) and of the query filters (store, CLI).
 *
 * Owns nothing, allocates nothing (the matcher's state lives on the stack),
 * so it may run per request. */
#ifndef RESTSPY_GLOB_H
#define RESTSPY_GLOB_H

#include <stdbool.h>
#include <stddef.h>

/* Longest glob glob_match accepts. */
#define GLOB_MAX 1023

/* Glob match of a path (length n, query excluded; path need not be
 * NUL-terminated): '*' matches one segment or part of one (no '/'), '**'
 * any number of segments (including none, so a '/' followed by '**' also
 * matches nothing: the glob for everything under /api matches "/api"
 * itself), other characters literally. glob is NUL-terminated. Runs in
 * O(len(glob) * n) whatever the input, so a hostile path cannot make it
 * backtrack; a glob longer than GLOB_MAX never matches. */
bool glob_match(const char *glob, const char *path, size_t n);

#endif
