/* replicator_internal: the replicator's pure decisions (backoff, order,
 * retry budget, applied headers, dead-letter reasons), apart from its
 * threads and sockets so that unit tests can pin them down. Implemented by
 * replicator_policy.c; private to the replicator's files and
 * tests/unit/replication/test_replicator.c. */
#ifndef RESTSPY_REPLICATOR_INTERNAL_H
#define RESTSPY_REPLICATOR_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "capture/record.h"
#include "formats/repl_msg.h"

/* Wait before retry number attempt (0-based): min_ms doubled attempt
 * times, capped at max_ms (never below min_ms, never overflowing). */
uint64_t repl_backoff_ms(unsigned attempt, uint64_t min_ms, uint64_t max_ms);

/* ---- order (docs/replication.md, "Order") ---- */

/* The resource a target addresses, as writes are ordered by it: the path
 * without the query, empty segments dropped, no trailing '/'
 * ("/api/sites/x/?a=1" gives "/api/sites/x", "/" and "" give "/").
 * Percent-encoding is kept as it is. Caller frees. */
char *repl_resource_key(const char *target);

/* What the ordering knows of one write; the strings are borrowed. */
typedef struct repl_okey {
    const char *id;     /* message_id */
    const char *origin; /* origin node */
    const char *key;    /* repl_resource_key of its target */
    bool post;          /* method POST: a create when it goes to a collection */
    bool del;           /* method DELETE */
} repl_okey;

/* Whether later must wait until earlier (taken from the queue before it,
 * not finished yet) is applied, dead-lettered or skipped, under apply_order
 * order (APPLY_ORDER_*):
 *  - another copy of the same message (same id): always;
 *  - origin: every earlier write from the same origin;
 *  - strict: a write to the same resource, or to one above or below it (a
 *    collection and its members: /a/b and /a, /a/b and /a/b/c; not /a/b
 *    and /a/bc);
 *  - resource: as strict, but two POSTs to the same path do not wait for
 *    each other (creates in one collection), and a POST waits for the
 *    writes below it only when they are DELETEs (a re-create after a
 *    delete; a create does not depend on the updates of other members);
 *  - a stuck earlier write (failing while the upstream applies others)
 *    holds back, under resource and strict, only the writes to its own
 *    resource: so one bad create does not stall a whole collection. */
bool repl_waits_for(const repl_okey *later, const repl_okey *earlier, int order,
                    bool earlier_stuck);

/* Whether a failing write is stuck: it has been failing (failures that
 * spend its budget) for stuck_after_ms since first_failed_us, and the
 * upstream has answered another write (an attempt started at ok_us) since
 * that first failure: the upstream works, this write fails on its own.
 * All wall clock, µs; first_failed_us 0 = not failing. A write failing for
 * less long keeps the whole order: most failures are short (an
 * application restarting, a database lock), and releasing the writes that
 * follow it would apply them too early; when nothing was answered since it
 * began failing, the upstream may be down for all. */
bool repl_stuck(int64_t first_failed_us, int64_t ok_us, int64_t now_us, uint64_t stuck_after_ms);

/* ---- the retry budget ---- */

/* Whether httpc's error for a failed attempt says that the upstream could
 * not be reached at all ("connect: ...", "resolve ..."): nothing was sent,
 * so the failure says nothing about the message and does not spend its
 * budget. */
bool repl_unreachable(const char *err);

/* Whether a write that has failed attempts times, the first of them at
 * first_failed_us, has spent its budget at now_us: max_age_ms (0 = no
 * limit) since the first failure, or max_attempts (0 = no limit)
 * failures. Never before its first failure. */
bool repl_budget_spent(int64_t attempts, int64_t first_failed_us, int64_t now_us,
                       uint64_t max_age_ms, uint64_t max_attempts);

/* The dead-letter reason of a write whose budget is spent: "retry budget
 * spent: 5 failed attempts in 2.1s; last: <last answer>". Caller frees. */
char *repl_budget_reason(int64_t attempts, int64_t first_failed_us, int64_t now_us,
                         const char *last_answer);

/* The headers a message is applied with, appended to out: the message's own
 * headers, its Content-Type when they lack one, Idempotency-Key: <id>,
 * X-Restspy-Replicated-From: <origin> (replacing any that came with the
 * message) and the set_headers ("Name: value", NULL-terminated, may be NULL)
 * replacing same-named ones. -1 when the message's header JSON is bad. */
int repl_apply_headers(const repl_msg *m, char *const *set_headers, http_headers *out);

/* Removes every header named name (case-insensitive) from h. */
void repl_headers_remove(http_headers *h, const char *name);

/* The dead-letter reason for an upstream answer: "upstream answered 404:
 * <first bytes of the body, control bytes as spaces>". Caller frees. */
char *repl_dead_reason(int status, const buf *body);

#endif
