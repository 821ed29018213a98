/* receipt: the apply receipt, what a replicator publishes once it has
 * settled a peer's write (applied it, dead-lettered it, or skipped it) so
 * that the write's origin learns what became of it at each peer.
 * docs/protocol.md (section 10) is the normative description; this module
 * is its reference implementation.
 *
 * A receipt travels as a repl_msg "carrier" (so that mq publishes and reads
 * it like any message): its own fresh message_id (never the write's id: an
 * operator acting on a receipt by its id can never touch the write), the
 * AMQP type "restspy.receipt", a JSON body holding the receipt's fields and,
 * when a secret is set, an HMAC-SHA256 signature over a canonical form of
 * its own ("restspy-receipt-v1", so a write's signature never verifies a
 * receipt nor the other way round). The carrier has no x-restspy-origin,
 * -method or -target header: a replicator that predates receipts finds it
 * malformed and dead-letters it; it can never apply it.
 *
 * Owns the strings of a receipt (heap, freed by receipt_free). */
#ifndef RESTSPY_RECEIPT_H
#define RESTSPY_RECEIPT_H

#include <stdint.h>

#include "base/uuid7.h"
#include "formats/repl_msg.h"

/* The AMQP `type` property that tells a receipt from a write. */
#define RECEIPT_TYPE "restspy.receipt"

typedef enum {
    RECEIPT_APPLIED = 0,   /* the app answered 2xx/3xx; the ledger has it */
    RECEIPT_DEAD_LETTERED, /* the app refused it, or its retry budget was spent */
    RECEIPT_SKIPPED,       /* acknowledged without being applied (an operator's skip) */
    RECEIPT_DIVERGED,      /* applied (the ledger has it), but the app's answer differed
                              from the origin's (status is the app's): issue 16 */
} receipt_outcome;

typedef struct receipt {
    char message_id[UUID7_STR_LEN + 1]; /* the write's id (its capture id) */
    char *origin;                       /* the write's origin node: whom the receipt is for */
    char *node;                         /* the node that settled it */
    receipt_outcome outcome;
    int status;    /* the app's HTTP status; 0 = none (no answer, or a skip) */
    int64_t at_us; /* when the outcome was committed at node (its wall clock, µs) */
} receipt;

/* "applied", "dead-lettered", "skipped", "diverged". */
const char *receipt_outcome_name(receipt_outcome o);

/* The outcome named s (as receipt_outcome_name writes it): 0 with *o, or -1. */
int receipt_outcome_parse(const char *s, receipt_outcome *o);

/* Frees the strings of r (and sets them NULL); r itself is the caller's. */
void receipt_free(receipt *r);

/* The routing key of a receipt: "<origin>.@receipt.<node>", each word as in
 * a write's key ('.', '*', '#' become '_'), cut to 255 bytes. No write's key
 * has '@' in its second word (a method is a token). Caller frees. */
char *receipt_routing_key(const char *origin, const char *node);

/* The carrier of r: a new message_id, timestamp at_us in seconds,
 * content_type application/json, the JSON body, the routing key, and the
 * signature when secret is set (NULL/empty: unsigned). Caller frees. */
repl_msg *receipt_to_msg(const receipt *r, const char *secret);

/* Appends the canonical form that is signed: "restspy-receipt-v1", '\n',
 * the carrier's message_id, '\n', the body bytes as carried. */
void receipt_canonical(const repl_msg *carrier, buf *out);

/* Reads the receipt a carrier holds into *out (fields owned by the caller:
 * receipt_free). Does not check the signature. 0, or -1 with why ("receipt
 * body is not JSON", "receipt has no origin", ...), *out then empty. */
int receipt_from_msg(const repl_msg *carrier, receipt *out, char *why, size_t whylen);

/* 0 when the carrier is signed for secret (any carrier when secret is
 * NULL/empty); -1 with why "unsigned receipt" or "bad signature". */
int receipt_verify(const repl_msg *carrier, const char *secret, char *why, size_t whylen);

#endif
