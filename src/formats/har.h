/* Folder formats/ (this is its main header): records as text that leaves
 * restspy: HAR, JSON lines, curl, and the replication message with its
 * signature (docs/protocol.md). Promises: uses base/, http/ and capture/.
 *
 * har: captured traffic as files: HAR 1.2 (browsers' devtools, Charles,
 * Postman, restspy itself), restspy's JSON lines, and curl command lines.
 *
 * Owns nothing beyond the call. Promises: har_write produces valid HAR 1.2
 * (every required field of log, creator, entries, request, response,
 * content, cache and timings), with base64 ("encoding": "base64") for
 * bodies that are not UTF-8 text; har_read accepts any valid HAR 1.2 and
 * reads back what har_write wrote with nothing lost (restspy keeps its own
 * fields under "_restspy"); a JSON line is record_to_json with headers and
 * bodies, and jsonl_read reads it back. Readers turn every entry into a
 * record (origin "imported" unless the file says otherwise). */
#ifndef RESTSPY_HAR_H
#define RESTSPY_HAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "capture/record.h"

typedef struct har_writer har_writer;

/* Starts a HAR document on f (the caller owns f). */
har_writer *har_begin(FILE *f);
/* Appends one entry. */
void har_add(har_writer *w, const record *r);
/* Closes the document; 0, or -1 when a write failed. Frees w. */
int har_end(har_writer *w);

/* Reads the entries of a HAR file into *out (a heap array of records the
 * caller frees with records_free). A browser's cache hit (the answer came
 * from its cache, no request went out: _fromCache, _fetchType "... Cache",
 * _transferSize 0, or no network timing at all) is left out unless
 * keep_cached, and counted in *ncached (may be NULL). An entry without a
 * restspy id gets one derived from its content and time (the same on every
 * read). -1 with err ("FILE: not a HAR 1.2 document: ...", "FILE: entry 3:
 * request.url missing"). */
int har_read(const char *path, bool keep_cached, record ***out, size_t *n, size_t *ncached,
             char *err, size_t errlen);

/* One JSON object per line (record_to_json with headers and bodies). */
void jsonl_write(FILE *f, const record *r);
int jsonl_read(const char *path, record ***out, size_t *n, char *err, size_t errlen);

/* One curl command line reproducing the request against base
 * ("http://host:port"), shell-quoted so that any body round-trips byte for
 * byte: one-line text as a quoted argument, anything else (binary, NUL
 * bytes, several lines, a leading '@') through --data-binary @- fed by a
 * printf of escapes. A body stored decoded is sent encoded again with its
 * recorded Content-Encoding (record_req_wire_body). A request whose body cannot
 * be sent as recorded (record_req_body_unfaithful: not stored, incomplete) is
 * written as a comment line saying why, never as a command sending another
 * body; false then, true for a command. */
bool curl_write(FILE *f, const record *r, const char *base);

/* The base curl_write takes, from what a user gave (--target, target=): an
 * http:// or https:// URL with a host, its trailing slashes dropped (they
 * would double every path's). Owned by the caller; NULL with err "expected
 * http://host:port" when it is not one. */
char *curl_base(const char *target, char *err, size_t errlen);

void records_free(record **v, size_t n);

#endif
