/* compare: does a replayed response match the recorded one, and if not,
 * exactly where not.
 *
 * Owns comparison results. Promises: JSON bodies are compared structurally
 * (object key order ignored, numbers compared as numbers: 1, 1.0 and 1e0
 * are equal), and every difference is reported as a
 * JSON path with both values ("$.items[3].status: \"ok\" -> \"down\"");
 * text (UTF-8) bodies word by word (HTML, forms, plain text: a word that
 * differs is "text line 12: \"a8f7\" -> \"9c1d\"", words added or removed
 * or other punctuation make the body differ), with a short unified diff;
 * binary bodies byte-wise.
 * A recorded value that restspy redacted at capture ("[redacted]": a JSON
 * string, a whole header value) is equal to any value and counted apart
 * (compare_result.nredacted), never reported as a difference.
 * Identical bytes are a match without parsing (the fast path replay lives
 * on). Noise rules remove expected differences: ignored JSON paths, ignored
 * headers, and regexes that make two values (JSON values, header values,
 * words of text bodies) equal when both match. Noise cannot cover binary
 * bodies, nor bodies cut at the capture cap (compared as a prefix).
 * The noise rules themselves (syntax, rule sets) are noise.h's. */
#ifndef RESTSPY_COMPARE_H
#define RESTSPY_COMPARE_H

#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"
#include "capture/record.h"
#include "compare/noise.h"

typedef struct compare_opts {
    const noise *noise;   /* may be NULL */
    char *const *headers; /* response headers compared (NULL-terminated,
                             case-insensitive); NULL = none */
    size_t max_diffs;     /* differences kept per response (0 = 20) */
} compare_opts;

typedef enum {
    DIFF_STATUS, /* path "status" */
    DIFF_HEADER, /* path "header: Name" */
    DIFF_JSON,   /* path "$.a.b[2]" */
    DIFF_BODY,   /* body: path "body" (binary, or text that does not align) */
    DIFF_TEXT,   /* a word of a text body: path "text line 12", values quoted */
} diff_kind;

typedef struct diff {
    diff_kind kind;
    char *path;     /* as above */
    char *expected; /* JSON text for JSON values, else the text; NULL = absent */
    char *actual;   /* idem */
} diff;

typedef struct compare_result {
    bool match;
    diff *diffs;
    size_t ndiffs;
    size_t ndiffs_total; /* before max_diffs cut */
    char *text_diff;     /* short unified diff of non-JSON text bodies, or NULL */
    size_t nredacted;    /* recorded values that were the redaction marker
                            "[redacted]" (hidden at capture), taken as equal
                            to whatever the answer had there: not compared */
    char **rules;        /* text: rules that would hide the words of text
                            bodies that differed (their shape), for
                            noise_learn; owned */
    size_t nrules;
    char *partial; /* NULL when the bodies were compared whole; else why
                      only part of them was ("recorded body incomplete
                      (65536 of 120271 bytes recorded): only those
                      compared", "recorded body not compared (dropped:
                      ...)"): a match is then a match of that part only.
                      Owned. */
} compare_result;

/* Compares actual against expected (both records: status, resp_headers,
 * resp_body, resp_truncated, resp_body_note are read). A truncated body
 * (the recorded one cut at capture, the answer cut at --max-decoded) only
 * has to be a prefix of the other; a recorded body with a note (not
 * stored, or not decoded) is not compared. Either way out->partial says so. */
void compare_responses(const compare_opts *o, const record *expected, const record *actual,
                       compare_result *out);
void compare_result_free(compare_result *r);

/* "$.a: 1 -> 2" */
void diff_format(const diff *d, buf *out);

/* Learning noise: every difference between two replies to the same request
 * becomes a rule (a JSON path with array indexes turned into [*] when the
 * same member differs in several elements; a header rule for headers; a
 * text: rule with the common shape of two words of a text body). The
 * rules not already in n are added. Returns how many were added. */
size_t noise_learn(noise *n, const compare_result *r);

#endif
