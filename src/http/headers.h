/* headers: a list of HTTP header fields as received, the one header
 * collection of restspy (requests, responses, records, replicated messages).
 *
 * Owns its entry array and the strings (in blocks, see below). Promises:
 * order and repeats are kept, names and values are kept byte for byte (a
 * lookup is case-insensitive), and the JSON form ([["Name","value"],...],
 * the text stored in the req_headers/resp_headers columns) round-trips
 * exactly. */
#ifndef RESTSPY_HEADERS_H
#define RESTSPY_HEADERS_H

#include <stddef.h>

#include "base/buf.h"

/* The strings live in blocks owned by their list (http_headers.blocks),
 * never moved, freed with the list: a request carries a dozen headers or
 * more, and an allocation (and a free, often on the store's writer thread)
 * for each was a large part of the per-request cost. Change them only
 * through the functions below. */
typedef struct http_header {
    char *name;  /* as received, NUL-terminated */
    char *value; /* as received (after trimming OWS), NUL-terminated */
} http_header;

struct http_hblock;

typedef struct http_headers {
    http_header *v;
    size_t len;
    size_t cap;
    struct http_hblock *blocks; /* the strings' storage */
} http_headers;

/* Appends a copy of (name, value). */
void http_headers_add(http_headers *h, const char *name, size_t nlen, const char *value,
                      size_t vlen);
/* First header named name (case-insensitive) or NULL. */
const char *http_headers_get(const http_headers *h, const char *name);

/* How many headers of h are named name (case-insensitive): a message with
 * several Host headers is refused by whoever reads it. */
size_t http_headers_count(const http_headers *h, const char *name);
/* Replaces the value of h's entry i with a copy of value. */
void http_header_set_value(http_headers *h, size_t i, const char *value);
/* Forgets e's strings (for callers removing entries from a list; their
 * memory goes with the list's). */
void http_header_clear(http_header *e);
/* Empties h, keeping its entry array for reuse. */
void http_headers_reset(http_headers *h);
void http_headers_free(http_headers *h);
/* The bytes h holds on the heap (its entry array and string blocks, by
 * capacity): what it costs to keep h, for memory bounds. */
size_t http_headers_mem(const http_headers *h);

/* Appends h as JSON: [["Name","value"],...]. */
void http_headers_to_json(const http_headers *h, buf *out);
/* Parses that JSON text back into h (appending). 0, or -1 on bad input. */
int http_headers_from_json(http_headers *h, const char *json, size_t len);

#endif
