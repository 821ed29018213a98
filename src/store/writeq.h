/* writeq: the write side every store backend shares (store.h, "Writing"):
 * the bounded queue store_submit_unit fills (records and bytes, the drop
 * or wait policy), the operations other threads leave for the writer's
 * next transaction (counters, outbox confirms, stuck rows, receipts), the
 * writer thread that takes batches from the queue (group commit), retries a
 * failed commit with backoff, sets aside a unit its database refuses, runs
 * the done callbacks after the COMMIT in submit order, and wakes
 * outbox_wait. What a transaction does in SQL, and retention, is the
 * backend's: it plugs them in through writeq_hooks.
 *
 * Owns the queued units (and frees them: parked on the submitters' threads
 * once committed, or refused), the pending ops and the writer thread.
 * Threads: everything under `mu`; the hooks run on the writer thread only
 * (or on the closing thread for a store never started). */
#ifndef RESTSPY_STORE_WRITEQ_H
#define RESTSPY_STORE_WRITEQ_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/hist.h"
#include "store/backend.h"
#include "store/store.h"

/* A queued unit and whom to tell once it is committed or dropped. */
typedef struct writeq_item {
    store_unit u; /* owns what store_unit says */
    store_done_fn done;
    void *ud;
    int64_t t_us; /* monotonic, when submitted */
    size_t bytes; /* what it counts against queue_max_bytes */
} writeq_item;

/* A counter operation waiting for the writer's next transaction. */
typedef struct writeq_counter_op {
    char *name; /* owned */
    int64_t value;
    bool set; /* false: add */
} writeq_counter_op;

/* A change of the `stuck` table waiting for the writer's next transaction:
 * set (upsert row) or clear (delete the message's row). */
typedef struct writeq_stuck_op {
    bool set;
    store_stuck row; /* owns its strings; only message_id when clearing */
} writeq_stuck_op;

/* Work for the writer's next transaction besides records: counter updates
 * (at most one per name), stuck-table changes (at most one per message, the
 * latest), receipts, and outbox confirms merged into one (deleting seq <=
 * the highest confirmed is the same as deleting each range in turn). */
typedef struct writeq_ops {
    writeq_counter_op *v;
    size_t len, cap;
    writeq_stuck_op *sv;
    size_t slen, scap;
    store_receipt *rv; /* receipts to write, in arrival order (owned) */
    size_t rlen, rcap;
    int64_t confirm_upto; /* 0 = nothing confirmed */
    int64_t confirm_us;   /* wall clock of the latest confirm */
    char confirm_id[UUID7_STR_LEN + 1];
} writeq_ops;

void writeq_ops_free(writeq_ops *o);
bool writeq_ops_pending(const writeq_ops *o);

/* What a backend plugs in; ctx is writeq_init's. */
typedef struct writeq_hooks {
    /* One attempt at committing b[0..n) and ops in one transaction, rolled
     * back by the hook when it fails. 0; or -1 with e, and *bad the index of
     * the unit at fault when retrying cannot help (its content), n when the
     * ops are at fault, left SIZE_MAX when the database is (retried).
     * *max_seq: the highest outbox seq written, 0 for none. */
    int (*commit)(void *ctx, writeq_item *b, size_t n, const writeq_ops *ops, size_t *bad,
                  int64_t *max_seq, char *e, size_t elen);
    /* Monotonic time at which retention next has work, INT64_MAX for never;
     * and one step of it (short transactions). May be NULL: no retention. */
    int64_t (*prune_wake_at)(void *ctx);
    void (*prune_step)(void *ctx);
    /* At close, after the last batch: what retention still has to do.
     * May be NULL. */
    void (*prune_finish)(void *ctx);
} writeq_hooks;

typedef struct writeq {
    const writeq_hooks *hooks;
    void *ctx;
    uint64_t batch_max, commit_delay_us;
    bool drop_when_full, read_only;

    pthread_mutex_t mu;
    pthread_cond_t nonempty; /* writer waits (CLOCK_MONOTONIC) */
    pthread_cond_t room;     /* submitters wait for room (not drop_when_full) */
    pthread_cond_t outbox;   /* outbox_wait (CLOCK_MONOTONIC); broadcast on commit */
    writeq_item *ring;       /* owns the queued units */
    size_t ring_alloc;       /* grows up to cap as needed */
    size_t cap;              /* queue_max */
    size_t head, count;
    size_t bytes, max_bytes; /* held by the queued units; queue_max_bytes (0 = none) */
    size_t inflight;         /* taken by the writer, not yet committed */
    bool closing, paused, started;
    bool gathering; /* the writer collects a batch: submitters need not wake it */
    size_t waiting; /* queued records whose submitter waits for the commit */
    /* Committed units waiting to be freed by the next submitters: the
     * threads that allocated them free them on their own heaps, cheaply,
     * where the writer's frees took the allocator's locks (a tenth of the
     * writer's time per row, perf). Owned. */
    store_unit *parked;
    size_t nparked, parked_cap;
    store_stats st;
    hist commit_time, latency; /* the writer's; read into st by get_stats */
    writeq_ops ops;            /* pending for the next transaction */
    int64_t outbox_seq;        /* highest committed outbox seq known to this process */
    int outbox_waiters;        /* threads in outbox_wait: close waits for them to leave */
    pthread_t thread;
} writeq;

/* Sets up q for a store opened with o; hooks and ctx are the backend's. */
void writeq_init(writeq *q, const store_options *o, const writeq_hooks *hooks, void *ctx);
/* Refuses (done -1) what is still queued, frees everything q owns. */
void writeq_destroy(writeq *q);

/* Frees what a unit owns (store_unit). */
void writeq_unit_free(store_unit *u);

/* Starts the writer thread. 0 or -1 with err. */
int writeq_start(writeq *q, char *err, size_t errlen);
/* Stops intake, commits what is queued (on the writer thread, or here for a
 * queue never started), joins the writer, waits for outbox_wait callers to
 * leave. */
void writeq_close(writeq *q);
/* Whether the writer thread was started. */
bool writeq_started(writeq *q);

/* The head of the handle of a backend that writes through writeq (its
 * struct begins with one): a store * of such a backend is a writeq_store *,
 * so that the functions below serve as its vtable's. */
typedef struct writeq_store {
    store base; /* first: a store * is a writeq_store * */
    writeq q;
} writeq_store;

/* The store.h functions of the same names, for the vtable of a backend
 * whose handle begins with a writeq_store. */
int writeq_submit(store *s, const store_unit *unit, store_done_fn done, void *ud);
void writeq_get_stats(store *s, store_stats *out);
void writeq_counter(store *s, const char *name, int64_t value, bool set);
void writeq_outbox_confirmed(store *s, int64_t upto, const char *last_id);
void writeq_stuck_set(store *s, const store_stuck *row);
void writeq_stuck_clear(store *s, const char *message_id);
void writeq_receipt_put(store *s, const store_receipt *r);
int writeq_outbox_wait(store *s, int64_t after_seq, int timeout_ms);

/* For the stats (disconnected, reconnects): a backend with a server
 * tells, from its writer, that it lost it (up false) or has it back (up
 * true, counted as a reconnect when it was lost). */
void writeq_connection(writeq *q, bool up);

/* TEST ONLY: while paused, the writer of s (a writeq_store) takes nothing
 * from the queue, so a test can fill it deterministically; store_close
 * unpauses. */
void writeq_pause(store *s, bool paused);

#endif
