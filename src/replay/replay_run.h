/* replay_run (inside replay/): the state of one replay run, shared by the
 * three files that make it: replay.c (the run: start, stop, progress, end),
 * replay_case.c (preparing the cases and, with ordered, the clients'
 * partitions) and replay_slot.c (the slots: jobs, pacing, answers). The
 * connections themselves are hclient's (libcurl's multi interface on the
 * run's loop). Nothing outside replay/ includes it.
 *
 * Ownership: the run owns its cases (their views and prepared requests),
 * its client and the answers until they are delivered; one run lives in
 * the calling thread, so none of this is locked. */
#ifndef RESTSPY_REPLAY_RUN_H
#define RESTSPY_REPLAY_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"
#include "capture/record.h"
#include "http/hclient.h"
#include "replay/correlate.h"

/* replay.h's types, named by their tags: replay.c includes this header, so
 * this header does not include replay.h (no include cycle). */
struct replay_opts;
struct replay_answer;
struct replay_progress;

/* One case, prepared once before the run. */
typedef struct rcase {
    const record *rec; /* the caller's */
    record *view;      /* shallow copy as sent (own path and headers), or NULL */
    bool own_path;     /* view->path is ours */
    hclient_msg *msg;  /* the request, sent once per loop; NULL when it
                          cannot be sent (bad: why) */
    char *bad;         /* owned, or NULL */
    size_t index;      /* in the caller's array */
    int64_t due_us;    /* pacing offset from the start of a loop */
    size_t part;       /* ordered: partition */
} rcase;

/* Ordered mode: the cases of one client, in recorded order. */
typedef struct rpart {
    size_t *pos; /* indexes into run.cases */
    size_t n;
    uint64_t next; /* jobs handed out (across loops) */
    uint64_t total;
    char *client; /* its key (IP or client header value), owned */
} rpart;

typedef struct run run;

/* One of the `concurrency` lanes of the run: at most one request in
 * flight, which libcurl carries on one of its kept-alive connections. */
typedef struct slot {
    run *r;
    uv_timer_t timer; /* pacing wait; reports a case that cannot be sent */
    bool has_job;
    bool waiting;  /* for its time (pacing) or to report a bad case */
    bool inflight; /* hclient has its request: its callback is due */
    bool in_idle;  /* on run.idle */
    size_t ci;     /* job's case */
    unsigned loop; /* job's loop */
    record *spare; /* a delivered answer the callback left, emptied for reuse */
    /* correlate: the job's request with learned values substituted (sub.rec
     * is owned: a copy), prepared like any case; kept until the slot's next
     * job or the end of the run, as hclient needs its message until the
     * callback. subs: what was substituted. */
    rcase sub;
    corr_subs subs;
    char err[160];
} slot;

struct run {
    uv_loop_t loop;
    const struct replay_opts *o;
    void (*cb)(void *ud, struct replay_answer *a); /* replay_cb */
    void *ud;
    void (*pcb)(void *ud, const struct replay_progress *p); /* replay_progress_cb */
    void *pud;
    hclient *client;
    rcase *cases; /* the replayable ones, in the caller's order */
    size_t ncases;
    unsigned loops;
    uint64_t total, taken, done, errors;
    uint64_t timeout_ms;
    uint64_t max_decoded; /* decoded bytes kept of a compressed answer */
    int64_t loop_span_us; /* pacing: one loop's length */
    int64_t t0;           /* mono µs at start */
    slot *slots;
    unsigned nslots;
    slot **idle; /* ordered: slots waiting for a partition */
    unsigned nidle;
    /* ordered */
    rpart *parts;
    size_t nparts;
    size_t *heap; /* ready partitions, min-heap by their next job's global index */
    size_t nheap;
    uv_timer_t ptimer;
    uv_async_t async;
    bool stopping, finishing;
};

/* ---- replay_case.c ---- */

/* Prepares k's request on client c and, when the options change what is
 * sent, makes its view (k->rec must be set). */
void replay_case_prepare(rcase *k, const struct replay_opts *o, const hclient *c);
/* Frees what replay_case_prepare made for k (not k). */
void replay_case_free(rcase *k);
/* Frees s's substituted request and its list (the slot's job is over and
 * its request is not in flight, or the run has ended). */
void replay_slot_sub_free(slot *s);
/* Ordered: partitions r's cases by client IP, each in recorded order, and
 * pushes every partition on the ready heap. */
void replay_parts_build(run *r);
/* Puts partition pi back on the heap of ready partitions. */
void replay_parts_push(run *r, size_t pi);
/* Takes the ready partition whose next job comes first (the heap is not
 * empty). */
size_t replay_parts_pop(run *r);

/* ---- replay_slot.c ---- */

/* Takes the next job for s (or leaves s idle), waits for its time when
 * pacing, then starts it. */
void replay_slot_next(slot *s);
/* Ends s's job with error, now (do_stop: "stopped"); a request in flight
 * is left to end on its own, unheard. */
void replay_slot_drop(slot *s, const char *error);
/* Hands an answer (or error) for case ci of loop to the caller; the job is
 * over. s: the slot that got it (NULL when none did). */
void replay_deliver(run *r, slot *s, size_t ci, unsigned loop, record *got, const char *error);
/* Calls the progress callback, if any. */
void replay_run_progress(run *r);

/* ---- replay.c ---- */

/* The last answer is in: closes every handle so that uv_run returns. */
void replay_close_all(run *r);

#endif
