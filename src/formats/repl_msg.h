/* repl_msg: the replication message, what a proxy publishes for a write
 * request and what a replicator applies, with its canonical form and its
 * HMAC-SHA256 signature. docs/protocol.md is the normative description; this
 * module is its reference implementation.
 *
 * Owns every field of a repl_msg (heap, freed by repl_msg_free). Promises:
 * the canonical form covers every field that changes what is applied, so a
 * message altered in any of them fails repl_msg_verify; verification runs in
 * constant time with respect to the signature. */
#ifndef RESTSPY_REPL_MSG_H
#define RESTSPY_REPL_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "capture/record.h"
#include "base/uuid7.h"

typedef struct repl_msg {
    char id[UUID7_STR_LEN + 1]; /* message_id property = the capture id */
    int64_t timestamp;          /* timestamp property: Unix seconds */
    char *origin;               /* header x-restspy-origin: origin node */
    char *method;               /* header x-restspy-method */
    char *target;               /* header x-restspy-target: path, then '?' query if any */
    char *headers;              /* header x-restspy-headers: JSON [["Name","value"],...] */
    char *content_type;         /* content_type property; NULL when none */
    char *signature;            /* header x-restspy-signature: 64 lowercase hex; NULL = unsigned */
    char *routing_key;          /* <origin>.<METHOD>.<segments> */
    /* Version 2 (docs/protocol.md section 2): the origin's answer. Both NULL
     * in a version-1 message; origin_digest may be NULL in a version-2 one
     * (the captured response body was cut, so it is no digest of the body). */
    char *origin_status; /* header x-restspy-origin-status: 3 digits, "201" */
    char *origin_digest; /* header x-restspy-origin-digest: 64 lowercase hex */
    /* Version 2, optional: header x-restspy-origin-body, the origin's
     * response body as its store holds it (decoded, redacted), when it is
     * whole and at most replicate_origin_body_max bytes; empty = not
     * carried. The replicator compares its own answer with it through the
     * comparison engine and the site's noise rules (replication/). */
    buf origin_body;
    buf body; /* the raw request body (complete, not the capture copy) */
} repl_msg;

repl_msg *repl_msg_new(void);
void repl_msg_free(repl_msg *m);
/* The heap bytes m holds, itself included (as record_mem counts). */
size_t repl_msg_mem(const repl_msg *m);

/* Builds the message for a captured request. Must run before redaction: it
 * carries the real header values. body (the full request body) is moved into
 * the message and left empty. Headers left out: hop-by-hop ones (and those
 * named by Connection), Host, Content-Length, Transfer-Encoding, Expect, and
 * those in drop (NULL-terminated lower-case names; may be NULL). The
 * content_type is the request's Content-Type. Not signed yet. */
repl_msg *repl_msg_from_record(const record *r, const char *origin, buf *body, char *const *drop);

/* <origin>.<METHOD>.<path segments joined by '.'>: empty segments are
 * skipped; '.', '*' and '#' inside a segment become '_' (they are special in
 * topic routing); the result is cut to 255 bytes (the AMQP limit). The query
 * is not part of it. Caller frees. */
char *repl_routing_key(const char *origin, const char *method, const char *path);

/* Records the origin's answer in m (making it a version-2 message):
 * status (100-599) and, when body is not NULL, the SHA-256 of its bytes
 * (the whole response body as captured, before content decoding; NULL when
 * the capture does not hold all of it). Call before repl_msg_sign. */
void repl_msg_set_answer(repl_msg *m, int status, const buf *body);

/* Carries data[0..len) as the origin's body (copied; len 0 carries
 * nothing). m must carry the origin's answer already (repl_msg_set_answer);
 * call before repl_msg_sign: the canonical form covers it. */
void repl_msg_set_origin_body(repl_msg *m, const void *data, size_t len);

/* The protocol version of m: 2 when it carries the origin's answer, else 1. */
int repl_msg_version(const repl_msg *m);

/* The SHA-256 of data[0..len) as 64 lowercase hex digits plus a NUL: the
 * body digest of the canonical form and of the origin's answer. */
#define REPL_DIGEST_HEX 64
void repl_sha256_hex(const void *data, size_t len, char hex[REPL_DIGEST_HEX + 1]);

/* Appends the canonical form that is signed (see docs/protocol.md): tagged
 * restspy-v1, or restspy-v2 with the origin's answer appended (and the
 * SHA-256 of the origin's body when one is carried). */
void repl_msg_canonical(const repl_msg *m, buf *out);

/* Sets m->signature from secret; a NULL or empty secret leaves the message
 * unsigned (signature NULL). */
void repl_msg_sign(repl_msg *m, const char *secret);

/* 0 when m carries a valid signature for secret. -1 with a reason in why
 * ("unsigned message", "bad signature", "malformed message: no
 * x-restspy-method") otherwise. A NULL/empty secret accepts any well-formed
 * message. */
int repl_msg_verify(const repl_msg *m, const char *secret, char *why, size_t whylen);

/* The HMAC-SHA256 of data[0..len) keyed with secret (non-empty), as 64
 * lowercase hex digits plus a NUL in hex: the signature of a message (over
 * its canonical form) and of a receipt (formats/receipt.h). */
#define REPL_SIG_HEX 64
void repl_hmac_hex(const char *secret, const void *data, size_t len, char hex[REPL_SIG_HEX + 1]);

/* Checks sig (as carried, NULL = none) against the HMAC-SHA256 of
 * canonical for secret, in constant time with respect to the content. 0
 * when it matches or secret is NULL/empty; -1 with why "unsigned <what>"
 * (sig absent or empty) or "bad signature". */
int repl_sig_check(const char *secret, const buf *canonical, const char *sig, const char *what,
                   char *why, size_t whylen);

/* Parses m->headers back into h (appending). 0 or -1. */
int repl_msg_headers(const repl_msg *m, http_headers *h);

#endif
