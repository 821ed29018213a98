/* replicator_state: the state the replicator's main thread (replicator.c)
 * and its workers (replicator_apply.c) share: the items, the workers, the
 * replicator itself, and who owns what when (see each struct). Private to
 * those two files. */
#ifndef RESTSPY_REPLICATOR_STATE_H
#define RESTSPY_REPLICATOR_STATE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "capture/config.h"
#include "formats/repl_msg.h"
#include "http/httpc.h"
#include "replication/mq.h"
#include "replication/replicator_internal.h"
#include "store/store.h"

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
    int64_t started_us;  /* wall clock: when the attempt started */
} item;

typedef struct repl repl;

typedef struct worker {
    repl *r;
    pthread_t th;
    httpc *hc;
    /* store commit of the current capture: set by the writer thread */
    pthread_mutex_t cmu;
    pthread_cond_t ccv;
    bool cdone;
    int cstatus;
} worker;

typedef struct pending_dead {
    uint64_t pub_tag;      /* confirm tag of the dead-letter publish */
    uint64_t delivery_tag; /* the original, acked once that is confirmed */
} pending_dead;

struct repl {
    config *cfg;
    store *st;
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
