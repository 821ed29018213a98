/* replay_run (inside replay/): the state of one replay run, shared by the
 * three files that make it: replay.c (the run: start, stop, progress, end),
 * replay_case.c (preparing the cases and, with ordered, the clients'
 * partitions) and replay_conn.c (the connections to the target: jobs,
 * sockets, response parsing). Nothing outside replay/ includes it.
 *
 * Ownership: the run owns its cases (their views and wire bytes), its
 * connections and the answers until they are delivered; one run lives in
 * the calling thread, so none of this is locked. */
#ifndef RESTSPY_REPLAY_RUN_H
#define RESTSPY_REPLAY_RUN_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"
#include "capture/record.h"
#include "http/httpmsg.h"

/* replay.h's types, named by their tags: replay.c includes this header, so
 * this header does not include replay.h (no include cycle). */
struct replay_opts;
struct replay_answer;
struct replay_progress;

#define READBUF_LEN (64 * 1024)

/* One case, prepared once before the run. */
typedef struct rcase {
    const record *rec; /* the caller's */
    record *view;      /* shallow copy as sent (own path and headers), or NULL */
    bool own_path;     /* view->path is ours */
    const char *wire;  /* the whole request, in run.wires */
    size_t woff, wlen;
    size_t index;   /* in the caller's array */
    int64_t due_us; /* pacing offset from the start of a loop */
    size_t part;    /* ordered: partition */
    bool head;
} rcase;

/* Ordered mode: the cases of one client, in recorded order. */
typedef struct rpart {
    size_t *pos; /* indexes into run.cases */
    size_t n;
    uint64_t next; /* jobs handed out (across loops) */
    uint64_t total;
} rpart;

typedef enum { C_IDLE, C_WAIT, C_CONNECTING, C_BUSY } cstate;
/* What to do once the socket has closed. */
typedef enum { AFTER_NOTHING, AFTER_NEXT, AFTER_GO } cafter;

typedef struct run run;

typedef struct conn {
    run *r;
    uv_tcp_t tcp;
    uv_timer_t timer; /* pacing wait; reports a connect that failed at once */
    uv_connect_t creq;
    cstate st;
    cafter after;
    bool tcp_open;  /* tcp initialized and not yet closed */
    bool closing;   /* uv_close called, close callback pending */
    bool connected; /* open and usable */
    bool in_idle;   /* on run.idle */
    bool has_job;
    bool retried;
    bool resp_started; /* a byte of the answer has arrived */
    bool resp_done;
    bool keep_alive;
    int sync_err;     /* a connect error to report from the timer */
    unsigned served;  /* answers completed on this socket */
    size_t ci;        /* job's case */
    unsigned loop;    /* job's loop */
    int64_t t_send;   /* mono µs when the request was written */
    int64_t deadline; /* mono µs when the job times out; 0 when none runs */
    llhttp_t parser;
    httpmsg_hcollect hc; /* the header being parsed; reused for the whole run */
    record *got;         /* the answer being built (owned until delivered) */
    record *spare;       /* a delivered answer the callback left, emptied for reuse */
    char err[160];
} conn;

struct run {
    uv_loop_t loop;
    const struct replay_opts *o;
    void (*cb)(void *ud, struct replay_answer *a); /* replay_cb */
    void *ud;
    void (*pcb)(void *ud, const struct replay_progress *p); /* replay_progress_cb */
    void *pud;
    struct sockaddr_storage addr;
    rcase *cases; /* the replayable ones, in the caller's order */
    buf wires;    /* every case's request bytes, one after the other, in order:
                     one allocation, read sequentially as the run goes */
    size_t ncases;
    unsigned loops;
    uint64_t total, taken, done, errors;
    uint64_t timeout_ms;
    uint64_t max_decoded; /* decoded bytes kept of a compressed answer */
    int64_t loop_span_us; /* pacing: one loop's length */
    int64_t t0;           /* mono µs at start */
    int64_t wall0;        /* wall-clock µs at start */
    conn *conns;
    unsigned nconns;
    conn **idle; /* ordered: connections waiting for a partition */
    unsigned nidle;
    /* ordered */
    rpart *parts;
    size_t nparts;
    size_t *heap; /* ready partitions, min-heap by their next job's global index */
    size_t nheap;
    uv_timer_t ptimer;
    uv_timer_t sweep; /* request timeouts, checked for every connection at once */
    uv_async_t async;
    bool stopping, finishing;
    char readbuf[READBUF_LEN];
};

/* ---- replay_case.c ---- */

/* Appends k's request bytes to w and, when the options change what is
 * sent, makes its view (k->rec must be set). */
void replay_case_prepare(rcase *k, const struct replay_opts *o, const char *hostport, buf *w);
/* Frees what replay_case_prepare made for k (not k). */
void replay_case_free(rcase *k);
/* Ordered: partitions r's cases by client IP, each in recorded order, and
 * pushes every partition on the ready heap. */
void replay_parts_build(run *r);
/* Puts partition pi back on the heap of ready partitions. */
void replay_parts_push(run *r, size_t pi);
/* Takes the ready partition whose next job comes first (the heap is not
 * empty). */
size_t replay_parts_pop(run *r);

/* ---- replay_conn.c ---- */

/* Once, before any run: the response parser's callbacks. */
void replay_conn_settings_init(void);
/* Takes the next job for c (or leaves c idle), waits for its time when
 * pacing, then connects or sends. */
void replay_conn_next(conn *c);
/* Closes c's socket; after says what c does once it has closed. */
void replay_conn_close(conn *c, cafter after);
/* uv_close callback of a connection's socket. */
void replay_conn_on_closed(uv_handle_t *h);
/* Ends c's job with error (or with its answer when error is NULL). */
void replay_conn_deliver(conn *c, const char *error);
/* Hands an answer (or error) for case ci of loop to the caller; the job is
 * over. c: the connection that got it (NULL when none did). */
void replay_deliver(run *r, conn *c, size_t ci, unsigned loop, record *got, const char *error);
/* Calls the progress callback, if any. */
void replay_run_progress(run *r);
/* The sweeping timer: fails every job past its deadline. */
void replay_on_sweep(uv_timer_t *t);

/* ---- replay.c ---- */

/* The last answer is in: closes every handle so that uv_run returns. */
void replay_close_all(run *r);

#endif
