/* noise: the rules that make expected differences between a recorded and
 * a replayed response disappear, and the JSON paths they name.
 *
 * Owns rule sets: each rule's canonical text, its parsed path and its regex,
 * compiled once when the rule is added (a set is only read while
 * comparing). compare.c asks its questions through the second half of this
 * header; every question takes a NULL set as "no rules".
 *
 * Noise rule syntax (one per line in a file, '#' starts a comment; the same
 * text as the --ignore* flags):
 *   $.updated_at            ignore that member
 *   $..id                   ignore every member named id, at any depth
 *   $.items[*].ts, $.a[2]   array wildcards and indexes
 *   header: Date            ignore a response header (case-insensitive)
 *   regex: ^\d{4}-\d\d-\d\dT   two differing string values that both match
 *                              are equal (anywhere)
 *   $.token ~ ^[0-9a-f]+$   the same, only at that path
 *   text: ^[0-9a-f]{32}$    the same, only for words of text bodies
 *   correlate: $.data.id    replay --correlate: always track the value at
 *                           this path (correlate.h), whatever it looks like
 *   no-correlate-header: Date  replay --correlate: never learn from nor
 *                              substitute in this header
 * Regexes are PCRE2 (Perl syntax: \d, \s, \w, lookaround) over UTF-8,
 * found anywhere unless anchored; \d, \s and \w are ASCII. A pattern PCRE2
 * refuses makes noise_add fail ("... at offset N"). */
#ifndef RESTSPY_NOISE_H
#define RESTSPY_NOISE_H

#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"

typedef struct noise noise;

noise *noise_new(void);
void noise_free(noise *n);
/* Adds one rule (syntax above). -1 with err ("bad noise rule '...': ..."). */
int noise_add(noise *n, const char *rule, char *err, size_t errlen);
/* Adds every rule of a file. -1 with err ("FILE:LINE: ..."). */
int noise_load(noise *n, const char *path, char *err, size_t errlen);
/* Writes the rules, one per line, in a form noise_load reads back. */
int noise_save(const noise *n, const char *path, char *err, size_t errlen);
size_t noise_count(const noise *n);
/* True when n already has exactly this rule (learn-noise dedupes with it). */
bool noise_has(const noise *n, const char *rule);

/* Appends to out the rule for a difference's JSON path with every index
 * turned into [*] ("$.items[3].ts" gives "$.items[*].ts": a value that
 * differed in one element will differ in the others next time). False
 * when path is not one noise_path_format writes. */
bool noise_path_any_index(const char *path, buf *out);

/* ---- what compare.c asks while it compares ---- */

/* One step of the JSON path being compared; keys point into the parsed
 * JSON (not owned). */
typedef struct noise_step {
    const char *key; /* NULL for an array index */
    size_t klen;
    size_t index;
} noise_step;

/* path[0..depth) as a difference's path ("$.items[3].status", ["odd key"]
 * for keys that are not identifiers). Owned by the caller. */
char *noise_path_format(const noise_step *path, size_t depth);

/* Does a path rule ignore path[0..depth), or a member above it? */
bool noise_json_ignored(const noise *n, const noise_step *path, size_t depth);

/* Does a header rule ignore the response header name (case-insensitive)? */
bool noise_header_ignored(const noise *n, const char *name);

/* replay --correlate (correlate.h): does a "correlate: PATH" rule name
 * exactly path[0..depth)? */
bool noise_correlate_path(const noise *n, const noise_step *path, size_t depth);

/* replay --correlate: does a "no-correlate-header: NAME" rule name this
 * header (case-insensitive)? */
bool noise_correlate_header_off(const noise *n, const char *name);

/* True when n has regex: or "PATH ~" rules (JSON and header values). */
bool noise_has_regex(const noise *n);

/* Two differing values (e, a: NUL-terminated; either NULL gives false) are
 * equal when one regex: rule, or (json) one "PATH ~" rule for exactly
 * path[0..depth), matches both. */
bool noise_regex_equal(const noise *n, const noise_step *path, size_t depth, const char *e,
                       const char *a, bool json);

/* Two differing words of a text body are equal when one text: or regex:
 * rule matches both e[0..el) and a[0..al). */
bool noise_text_equal(const noise *n, const char *e, size_t el, const char *a, size_t al);

#endif
