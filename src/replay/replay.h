/* Folder replay/ (this is its main header): sending recorded requests again
 * and judging the answers: the engine, comparison, noise rules, diffs and
 * reports. Promises: uses base/ to store/; not the proxy or replication.
 *
 * replay: sends recorded requests to a target as fast as it allows (or at
 * the recorded pace) and hands every answer back for comparison.
 *
 * Owns its event loop, its client of the target (hclient: at most
 * concurrency keep-alive connections, one request in flight per slot; an
 * https:// target verified with opts.tls) and the answers until the
 * callback returns. Promises: every case of every loop gets exactly one
 * callback, with the response or with an error ("connect: connection
 * refused", "timeout", "connection closed", "invalid response: ...",
 * "tls: ..."); a target that
 * dies or hangs never hangs replay (every wait is bounded by timeout_ms);
 * with ordered, the requests of one client (client_addr's IP, or the value
 * of the header client_header names when a request has it) are sent one
 * after the other in recorded order, clients in parallel. Request bytes are
 * serialized once per case, not per loop. With ordered and correlate, each
 * answer teaches correlate its values (correlate.h), each request is sent
 * with the values learned so far substituted (serialized again when one
 * was), and the answer is handed over with the recorded response mapped
 * the same way (replay_answer.sent) and the substitutions listed. */
#ifndef RESTSPY_REPLAY_H
#define RESTSPY_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "capture/record.h"
#include "http/hclient.h"
#include "replay/correlate.h"

/* Default for replay_opts.max_decoded: 64 MiB. */
#define REPLAY_MAX_DECODED (64u << 20)

typedef struct replay_rewrite {
    const char *from; /* path prefix */
    const char *to;
} replay_rewrite;

typedef struct replay_opts {
    const char *target;   /* http[s]://host:port */
    unsigned concurrency; /* connections (>= 1) */
    double speed;         /* 0 = as fast as possible; else recorded spacing / speed */
    unsigned loops;       /* >= 1 */
    bool ordered;
    uint64_t timeout_ms;             /* per request: connect + answer */
    uint64_t max_decoded;            /* a compressed answer is decoded up to this many
                                        bytes (0 = REPLAY_MAX_DECODED); beyond, the
                                        answer is marked truncated */
    const http_headers *set_headers; /* replace/add (may be NULL) */
    char *const *drop_headers;       /* lower-case names (may be NULL) */
    const replay_rewrite *rewrites;  /* first matching prefix wins */
    size_t nrewrites;
    hclient_tls tls;           /* an https target: CA, --insecure, client certificate */
    corr *correlate;           /* with ordered: learns and substitutes (the caller's,
                                  filled by corr_scan over the same cases); NULL = off */
    const char *client_header; /* with ordered: the request header that names
                                  a client (NULL: the client IP only) */
} replay_opts;

typedef struct replay_answer {
    const record *sent;   /* the case as sent (after rewrites and
                             substitutions), with correlate its recorded
                             response mapped through what was learned; owned
                             by replay */
    record *got;          /* status, resp_headers, resp_body, upstream_us = latency;
                             NULL on error. resp_body is the whole body, decoded
                             when it had a Content-Encoding (resp_encoding then
                             says which; resp_truncated when cut at max_decoded;
                             resp_body_note "undecoded: ..." when it could not
                             be decoded and is as received). The callback may
                             keep it (set the pointer to NULL) or leave it to be
                             freed. */
    const char *error;    /* NULL on success */
    size_t index;         /* case index */
    unsigned loop;        /* 0-based */
    const corr_sub *subs; /* correlate: the values substituted in the
                             request (owned by replay), or NULL */
    size_t nsubs;
} replay_answer;

typedef void (*replay_cb)(void *ud, replay_answer *a);

typedef struct replay_progress {
    uint64_t total, done, errors;
    double elapsed_s;
} replay_progress;

/* Called about 5 times a second from the replay loop (may be NULL). */
typedef void (*replay_progress_cb)(void *ud, const replay_progress *p);

/* The cases that cannot be replayed as they were recorded: a body
 * record_req_body_unfaithful refuses, or "[redacted]" in a header value, the
 * query or the body that --set-header/--drop-header did not replace. NULL
 * when replayable, else the reason (in out when given, else a static
 * text: "contains redacted values: Authorization"): such cases are
 * reported, never sent. */
const char *replay_unreplayable(const replay_opts *o, const record *c, char *out, size_t len);

/* Runs the cases (those replay_unreplayable refuses are skipped: the caller
 * reports them). Returns 0 when it ran to the end (whatever the answers), -1
 * with err when it could not run at all (bad target). */
int replay_run(const replay_opts *o, record *const *cases, size_t n, replay_cb cb, void *ud,
               replay_progress_cb pcb, void *pud, char *err, size_t errlen);

/* Stops a run from another thread or a signal handler: pending cases get
 * error "stopped". */
void replay_stop(void);

#endif
