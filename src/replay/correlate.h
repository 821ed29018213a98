/* correlate: replay that follows the state it creates (replay --correlate).
 *
 * A recorded POST answered {"id": 17} and Location /api/sites/17/; replayed,
 * the target answers 23. correlate learns "17 -> 23" from the two answers
 * and puts 23 wherever 17 appears in the client's later requests, and
 * compares the recorded answers through the same mapping, so that 17 and 23
 * are no mismatch.
 *
 * Owns the mappings of one run: one per client (a key the engine gives:
 * the recorded client IP, or the value of a header the user names) plus a
 * global one. Every value learned goes into its client's mapping and into
 * the global one; a lookup tries the client's mapping first, then the
 * global one, so that a server-wide resource one client created is found
 * by another (clients run in parallel: only as reliably as the recorded
 * order between them is kept, which one connection does). A value
 * learned again from the answer to a write (POST, PUT, PATCH, DELETE...;
 * the next --loop's create) replaces what it mapped to; the answer to a
 * read (GET, HEAD, OPTIONS) never changes a mapping: a read that answers
 * another id than the one learned is a difference to report.
 *
 * Where values are learned from (recorded answer vs target answer, at the
 * same place): JSON bodies (every scalar at any depth, objects by member
 * name, arrays by index); Location and JSON strings that are URLs or paths
 * (token by token, split at / ? & = when both have as many tokens);
 * Set-Cookie (cookie by name); ETag (the opaque value, W/ and quotes
 * removed). Where they are substituted: path segments, query values, header
 * values (tokens split at blanks , ; and quotes, and the part after the
 * first '=' of a token: Cookie: a=V, Bearer V, If-Match "V"), JSON request
 * bodies (scalars: a number stays a number when the target's value is one)
 * and form bodies (application/x-www-form-urlencoded values). A value that
 * is an identifier only by the member it came from (a number below
 * CORR_MIN_INT, a short slug) is replaced only where it is one again: a
 * URL path segment, a query, form or cookie value or JSON member with an
 * id-like name, an If-Match/If-None-Match/Authorization token, a header
 * named like an identifier, or a "correlate:" path; so "page=1" and
 * "quantity": 1 stay as recorded. Values an explicit rule or an ETag
 * taught are replaced wherever they appear. The recorded answer is mapped
 * by the same rules before it is compared (corr_expected).
 *
 * What is learned (corr_looks_like): only values that look like
 * identifiers or tokens, and of those only the ones the recorded requests
 * use after the answer that taught them (any client: the pre-scan of
 * corr_scan), unless they are identifiers by name or shape
 * (corr_named_id): a server-assigned id that the client never used again
 * is still learned, so that the answer that carried it compares equal,
 * while a large number or a long token in any other member is learned only
 * when a later request shows it was one. A recorded value maps to one
 * replayed value, the last learned (two objects that both had id 1 when
 * recorded cannot be told apart). A "correlate: PATH" noise rule tracks
 * its JSON path always;
 * a "no-correlate-header: NAME" rule keeps a header out of both learning
 * and substitution. */
#ifndef RESTSPY_CORRELATE_H
#define RESTSPY_CORRELATE_H

#include <stdbool.h>
#include <stddef.h>

#include "capture/record.h"
#include "compare/noise.h"

/* Values longer than this are never tracked. */
#define CORR_MAX_VALUE 4096
/* An integer counts as an identifier anywhere from this value up; below it
 * only in an id-like member (or a URL path segment). */
#define CORR_MIN_INT 1000
/* A token (hex, base64url, JWT) counts from this many characters up. */
#define CORR_MIN_TOKEN 16

/* Does v[0..n) look like an identifier or token worth tracking? key[0..klen)
 * is the member or cookie name it was found under (may be NULL). number:
 * it was a JSON number. The rule:
 *  - an id-like key (case-insensitive: id, pk, uuid, slug, key, token,
 *    cursor, etag, or ending in id, uuid, token, key, slug, session): any
 *    integer, or any string of 1+ characters from [A-Za-z0-9_.:~+/=-];
 *  - else an integer >= CORR_MIN_INT (a JSON number or a string of digits);
 *  - else a UUID (8-4-4-4-12 hex digits);
 *  - else a token of >= CORR_MIN_TOKEN characters from [A-Za-z0-9_.~+/=-]
 *    with at least one digit and one letter (hex, base64url, JWTs).
 * Never: an empty value, true/false/null, a value longer than
 * CORR_MAX_VALUE, or one with other characters (spaces, words). */
bool corr_looks_like(const char *key, size_t klen, const char *v, size_t n, bool number);

/* Is v[0..n), found under key, an identifier by its member name (the
 * id-like keys above) or its shape (a UUID)? Such values are learned even
 * when no later request uses them. */
bool corr_named_id(const char *key, size_t klen, const char *v, size_t n);

/* One substitution made in a request. */
typedef struct corr_sub {
    char *place; /* "path", "query id", "header Authorization", "body $.site",
                    "form site" */
    char *from;  /* the recorded value */
    char *to;    /* the value sent */
} corr_sub;

typedef struct corr_subs {
    corr_sub *v; /* owned, with their strings */
    size_t n, cap;
} corr_subs;

/* Appends one substitution (the strings copied). */
void corr_subs_add(corr_subs *s, const char *place, const char *from, const char *to);
void corr_subs_free(corr_subs *s);

typedef struct corr corr;

/* A run's mappings, with the explicit rules of rules (kept, may be NULL). */
corr *corr_new(const noise *rules);
void corr_free(corr *c);

/* Reads every request of cases[0..n) (in recorded order: the indexes are
 * those learn gets) once, to know where each value is used last. */
void corr_scan(corr *c, record *const *cases, size_t n);

/* Learns from the answer got to case index (recorded: the case with its
 * recorded answer), for client. Returns the number of values learned. */
size_t corr_learn(corr *c, const char *client, size_t index, const record *recorded,
                  const record *got);

/* The request of rec with every mapped value of client substituted: a new
 * record (record_free) with each substitution appended to subs, or NULL
 * when nothing was substituted. */
record *corr_apply(const corr *c, const char *client, const record *rec, corr_subs *subs);

/* The recorded answer of rec as the target should give it: a new record
 * (record_free) whose JSON response body and response headers (Location as
 * a URL, the others token by token: ETag, Set-Cookie, any header
 * --compare-header compares) have every mapped value of client replaced,
 * or NULL when nothing was (a body cut at capture or not stored is left as
 * it is). */
record *corr_expected(const corr *c, const char *client, const record *rec);

#endif
