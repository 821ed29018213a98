/* replicator_internal: what the replicator's files share, private to them
 * and tests/unit/replication/test_replicator.c:
 *  - its pure decisions (backoff, order, retry budget, applied headers,
 *    dead-letter reasons), apart from its threads and sockets so that unit
 *    tests can pin them down; implemented by replicator_policy.c;
 *  - the state the main thread (replicator.c) and its workers
 *    (replicator_apply.c) share: the items, the workers, the replicator
 *    itself, and who owns what when (see each struct). */
#ifndef RESTSPY_REPLICATOR_INTERNAL_H
#define RESTSPY_REPLICATOR_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "capture/record.h"
#include "compare/noise.h"
#include "formats/receipt.h"
#include "formats/repl_msg.h"
#include "capture/config.h"
#include "http/hclient.h"
#include "replication/mq.h"
#include "store/store.h"

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

/* Whether hclient's error for a failed attempt says that the upstream could
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

/* ---- the state the main thread (replicator.c) and its workers
 * (replicator_apply.c) share ---- */
/* ---- state ---- */

enum { OUT_ABANDON = 0, OUT_ACK, OUT_DEAD, OUT_RETRY };

/* Where an item is: waiting for an earlier write (ST_WAIT), in the run
 * queue or being applied (ST_RUN: a worker's until it is back in the done
 * list), or waiting to be tried again (ST_BACKOFF). */
enum { ST_WAIT = 0, ST_RUN, ST_BACKOFF };

/* One delivery, from its arrival to its ack, dead letter or abandonment.
 * Allocated by dispatch, freed by the main thread. Its place in the order
 * (the fields marked "mu") is under r->mu. While ST_RUN and not settled it
 * belongs to the worker that took it (the fields "set by the worker");
 * otherwise to the main thread. */
typedef struct item {
    struct item *next;          /* mu: run queue or done list */
    struct item *pprev, *pnext; /* mu: the pending list */
    repl_msg *msg;
    char *key;    /* repl_resource_key of the target (heap) */
    repl_okey ok; /* borrows msg and key */
    uint64_t tag;
    uint64_t gen;
    int state;            /* mu */
    bool settled;         /* mu: applied or refused: holds nothing back any more */
    struct item *blocker; /* mu: ST_WAIT: the earlier item it was last seen waiting for */
    int64_t due_mono;     /* mu: ST_BACKOFF: when to try again */
    int64_t fail_since;   /* mu: first_failed_us, for the order's stuck test */
    unsigned tries;       /* attempts made in this process (the backoff's exponent) */
    /* the retry budget, from the stuck table at the first failure on */
    bool loaded;
    int64_t attempts;        /* failures that spent the budget */
    int64_t first_failed_us; /* wall clock; 0 = none yet */
    /* set by the worker */
    int outcome;
    char *reason;        /* OUT_DEAD: heap */
    const char *counter; /* OUT_ACK: counter to bump once acked, or NULL */
    char *answer;        /* OUT_RETRY: what the attempt got (heap) */
    bool spend;          /* OUT_RETRY: the failure spends the budget */
    bool answered;       /* the upstream gave an answer that is not a failure */
    int status;          /* the upstream's status in the latest answer; 0 = none */
    /* The receipt owed to the write's origin once the outcome is acked
     * (formats/receipt.h): -1 none (not verified, or our own write), else
     * a receipt_outcome; at_us 0 = the time it is sent. */
    int receipt;
    int64_t receipt_at_us;
    int64_t started_us; /* wall clock: when the attempt started */
} item;

typedef struct repl repl;

typedef struct worker {
    repl *r;
    pthread_t th;
    hclient_sync *hc;
    /* store commit of the current capture: set by the writer thread */
    pthread_mutex_t cmu;
    pthread_cond_t ccv;
    bool cdone;
    int cstatus;
} worker;

typedef struct pending_dead {
    uint64_t pub_tag;      /* confirm tag of the dead-letter publish */
    uint64_t delivery_tag; /* the original, acked once that is confirmed */
    repl_msg *receipt;     /* owned: the carrier of its receipt, published once the
                            * original is acked; NULL when none is owed */
} pending_dead;

struct repl {
    config *cfg;
    store *st;
    noise *noise; /* replicate_noise's rules (read-only once loaded), or NULL */
    /* An eventfd a worker writes when it hands an item back, so that the
     * main thread's wait on the broker ends at once (mq_set_wake); -1 when
     * it could not be made (the main thread then polls every
     * POLL_BUSY_MS while items run). */
    int wake_fd;
    pthread_mutex_t ledger_mu; /* store_ledger_has is not promised thread-safe */

    pthread_mutex_t mu; /* guards everything below, up to the main thread's part */
    pthread_cond_t cv;  /* workers: new item, new generation, stopping */
    item *run_head, *run_tail;
    item *done_head, *done_tail;
    uint64_t gen;
    bool stopping;
    /* The order: both the main thread (deliveries, backoffs, the end of an
     * item) and a worker (the moment its item is settled, so that what
     * waited for it starts without a round trip through the main thread)
     * schedule. */
    item *phead, *ptail; /* pending: every live delivery, in arrival order */
    size_t inflight;     /* items ST_RUN the main thread has not taken back */
    bool dirty;          /* the pending list changed: schedule again */
    int64_t ok_us;       /* start of the latest attempt the upstream answered (wall clock) */
    int64_t now_us;      /* wall clock of the current schedule pass */

    worker *w;
    unsigned nw;

    /* main thread only */
    mq *m;
    uint64_t pub_seq;
    pending_dead *pend;
    size_t npend, cappend;
};

/* One line on stderr, "restspy replicate: ...". */
void repl_logf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A worker thread (arg: its worker): takes ST_RUN items from the run queue,
 * makes one attempt at each and puts it in the done list. */
void *repl_worker_main(void *arg);

/* Starts what may start in the pending list (under r->mu); the monotonic
 * time of the next backoff's end, or INT64_MAX. */
int64_t repl_schedule_locked(repl *r);

#endif
