/* Folder capture/ (this is its main header): what is captured and how: the
 * record, the rules and the capture decision, redaction, the access log,
 * and every setting. Promises: uses base/ and http/ only; knows nothing of
 * where records go (store, replication).
 *
 * record: the capture record, one per proxied request, and its encodings.
 *
 * A record owns every string, header and body buffer it points to (all heap,
 * released by record_free). The proxy fills one while a request is in flight,
 * then hands it to the sinks: the log sink formats it (and does not keep it),
 * the store takes ownership of it. Bodies hold at most the rule's capture cap;
 * *_body_size is always the real size on the wire (after de-chunking). */
#ifndef RESTSPY_RECORD_H
#define RESTSPY_RECORD_H

#include <stdbool.h>
#include <stdint.h>

#include "base/buf.h"
#include "http/headers.h"
#include "base/uuid7.h"

typedef struct record {
    char id[UUID7_STR_LEN + 1]; /* UUIDv7 text, also the X-Request-Id */
    char *node;
    int64_t started_at_us; /* Unix epoch, µs, when the first byte arrived */
    int64_t duration_us;   /* first byte in to last byte out */
    int64_t upstream_us;   /* upstream request sent to response complete; -1 none */
    char *client_addr;     /* "ip:port" */
    char *method;
    char *scheme;   /* "http" */
    char *host;     /* Host header, or NULL */
    char *path;     /* raw request-target path, percent-encoding kept */
    char *query;    /* after '?', without it; NULL when the target had none */
    int http_minor; /* client's HTTP/1.x minor version (for the combined log) */
    http_headers req_headers;
    buf req_body;
    uint64_t req_body_size;
    bool req_truncated;
    int status; /* 0 when no response was sent */
    http_headers resp_headers;
    buf resp_body;
    uint64_t resp_body_size;
    bool resp_truncated;
    uint64_t resp_bytes_sent; /* bytes written to the client (combined log) */

    /* Content codings (record_decode_bodies). *_encoding: the
     * Content-Encoding the body had on the wire, or NULL when it had none;
     * the stored body is then the decoded one. *_body_note: NULL when the
     * body is stored decoded (or had no coding); otherwise why it is not:
     * "undecoded: <reason>" (stored as received, still encoded) or
     * "dropped: <reason>" (not stored: it could not be redacted). */
    char *req_encoding;
    char *req_body_note;
    char *resp_encoding;
    char *resp_body_note;
    char *rule;   /* name of the matched rule */
    char *origin; /* "local", "replicated", "imported" */
    char *error;  /* NULL on success, else a short text ("upstream timeout") */

    /* http_headers_to_json of req_headers [0] and resp_headers [1], when
     * record_cache_headers_json has run (empty otherwise): the log line and
     * the store row then share one encoding. Valid only while the headers
     * do not change. */
    buf headers_json[2];

    /* Decisions taken when the request started (rule AND runtime flags). */
    bool do_log;
    bool do_persist;
    bool do_replicate;

    /* requests.replication, filled only where replication applies: NULL,
     * "queued", "skipped: ...". What commits with the record (its outbox
     * message, its ledger entry) is the store's unit of work (store.h). */
    char *replication;
} record;

/* A zeroed record with a fresh id, origin "local" and upstream_us -1. */
record *record_new(void);
/* The bytes r holds on the heap, itself included: its strings, its
 * headers (http_headers_mem) and its buffers by capacity, each allocation
 * counted with the allocator's per-block overhead. What a queue of
 * records costs, for its memory bound (store_queue_bytes). */
size_t record_mem(const record *r);

/* A deep copy of r (every string, header and body its own), owned by the
 * caller (record_free); without replication's outbox message and ledger
 * id, which belong to the row being written, not to the request. */
record *record_copy(const record *r);
/* As record_copy, without headers and bodies (empty): what a list shows and
 * a filter reads, cheap enough to take per request. */
record *record_copy_light(const record *r);
void record_free(record *r);

/* Replaces each captured body that has a Content-Encoding (gzip, deflate,
 * br, or a stack of them) by its decoded form, keeping at most req_cap /
 * resp_cap decoded bytes (a body cut there is marked truncated), and records
 * the wire coding in *_encoding. A body that cannot be decoded (damaged, or
 * an unknown coding) is kept as received with an "undecoded: ..." note when
 * keep_undecodable, else emptied with a "dropped: ..." note: a caller that
 * redacts must not store what it cannot read. The captured copy may itself
 * be a prefix of the wire body (*_truncated already set, or r->error for a
 * transfer that failed): a stream cut there is a short body, not a damaged
 * one. *_body_size stays the size
 * on the wire. */
void record_decode_bodies(record *r, uint64_t req_cap, uint64_t resp_cap, bool keep_undecodable);

/* Sets r->path and r->query (replacing them) from a request target
 * target[0..n): the query is what follows the first '?' (without it), NULL
 * when there is none. The one place a target is split, so a target stored
 * from a failed request has its query apart (and redacted) like any other. */
void record_set_target(record *r, const char *target, size_t n);

/* Encodes both header lists once into r->headers_json (after redaction:
 * the headers must not change afterwards). */
void record_cache_headers_json(record *r);
/* Appends the JSON of r's request (which 0) or response (1) headers, from
 * the cache when it is there. */
void record_append_headers_json(const record *r, int which, buf *out);

/* JSON encoding flags. */
enum {
    RECORD_JSON_HEADERS = 1 << 0, /* include req_headers and resp_headers */
    RECORD_JSON_BODIES = 1 << 1,  /* include req_body and resp_body */
};

/* Appends r as one JSON object (no newline) to out. Field names are the
 * column names of the store. Headers are arrays of [name, value] pairs (order
 * and repeats kept). A body that is valid UTF-8 is a JSON string under
 * "req_body"/"resp_body"; any other body is base64 under
 * "req_body_b64"/"resp_body_b64". started_at is also given as
 * "time": RFC 3339 UTC with microseconds. */
void record_to_json(const record *r, unsigned flags, buf *out);

/* Appends r in the Apache/nginx "combined" log format (no newline):
 * client - - [27/Nov/2026:05:46:18 +0000] "GET /p?q HTTP/1.1" 200 123 "referer" "ua" */
void record_to_combined(const record *r, buf *out);

/* Parses what record_to_json wrote (any flags) back into a new record, or
 * NULL with err. Unknown members are ignored; "time" is not needed when
 * "started_at" is there. */
record *record_from_json(const char *json, size_t len, char *err, size_t errlen);

/* Why c's request body cannot be sent as it was recorded, or NULL: a body
 * not stored ("dropped: ..." note: it could not be redacted, or the imported
 * file did not hold it), one incomplete (cut at the capture cap, or shorter
 * in the imported file than announced), or a decoded body whose
 * Content-Encoding restspy cannot apply again. The reason is written into
 * out when given ("request body was not stored (dropped: gzip: ...)",
 * "request body is incomplete: 65536 of 120271 bytes recorded") and
 * returned; without out a static text is. Shared by replay and `export
 * --curl`, so that neither sends a body other than the one recorded. */
const char *record_req_body_unfaithful(const record *c, char *out, size_t len);

/* c's request body as it went on the wire, for a c that
 * record_req_body_unfaithful accepts: the stored bytes, or, when the stored body
 * is the decoded form of a req_encoding body, those bytes encoded again
 * (into tmp, which the caller owns and frees). Returns &c->req_body or tmp. */
const buf *record_req_wire_body(const record *c, buf *tmp);

#endif
