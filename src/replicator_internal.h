/* replicator_internal: the replicator's pure decisions, apart from its
 * threads and sockets so that unit tests can pin them down. Private to
 * replicator.c and tests/unit/test_replicator.c. */
#ifndef RESTSPY_REPLICATOR_INTERNAL_H
#define RESTSPY_REPLICATOR_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "record.h"
#include "repl_msg.h"

/* Wait before retry number attempt (0-based): min_ms doubled attempt
 * times, capped at max_ms (never below min_ms, never overflowing). */
uint64_t repl_backoff_ms(unsigned attempt, uint64_t min_ms, uint64_t max_ms);

/* Worker (0..n-1) that applies a message for target: a hash of the path
 * (the query is left out), so one resource always lands on one worker and
 * keeps its order. NULL target: 0. */
unsigned repl_partition(const char *target, unsigned n);

/* The headers a message is applied with, appended to out: the message's own
 * headers, its Content-Type when they lack one, Idempotency-Key: <id>,
 * X-Restspy-Replicated-From: <origin> (replacing any that came with the
 * message) and the set_headers ("Name: value", NULL-terminated, may be NULL)
 * replacing same-named ones. -1 when the message's header JSON is bad. */
int repl_apply_headers(const repl_msg *m, char *const *set_headers, record_headers *out);

/* Removes every header named name (case-insensitive) from h. */
void repl_headers_remove(record_headers *h, const char *name);

/* The dead-letter reason for an upstream answer: "upstream answered 404:
 * <first bytes of the body, control bytes as spaces>". Caller frees. */
char *repl_dead_reason(int status, const buf *body);

#endif
