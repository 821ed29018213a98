/* pipeline: what happens to a finished request/response pair, whichever
 * front end saw it: the proxy (src/proxy/), which captured it on the wire,
 * or `restspy collect` (src/collect/), which was handed it by the process
 * that served it. One pipeline, so that both decide, redact, log, store and
 * replicate a pair the same way.
 *
 * Owns nothing but the commit mailboxes (pipeline_box). Its steps, in the
 * order a front end calls them:
 *   pipeline_decide   the capture decision (capture_decide) from the rule,
 *                     the admin API's global flags and the rule's run-time
 *                     switches, and which sinks are configured
 *   pipeline_outbox   the outbox message of a replicated pair (before
 *                     redaction: peers get the real request)
 *   pipeline_sink     bodies decoded and redacted, the live tap, the log
 *                     line, one store_unit (record and outbox row commit
 *                     together)
 *   pipeline_box/_ticket  sync durability: the store's commit, reported on
 *                     the writer thread, delivered on the front end's loop.
 * The process's counters and runtime flags (stats.h) and the live tap
 * (tap.h) live in this folder too: both front ends feed them and the admin
 * API reads them. */
#ifndef RESTSPY_PIPELINE_H
#define RESTSPY_PIPELINE_H

#include <stdbool.h>
#include <uv.h>

#include "base/buf.h"
#include "capture/config.h"
#include "capture/decision.h"
#include "capture/logsink.h"
#include "capture/record.h"
#include "formats/repl_msg.h"
#include "replication/outbox.h"
#include "store/store.h"
#include "pipeline/tap.h"

/* The sinks of a process: set up by its front end's command, shared by its
 * threads, read-only while requests flow. */
typedef struct pipeline_sinks {
    store *store;     /* NULL when the store is off */
    bool replicating; /* amqp configured and a store to hold the outbox */
    logsink *log;     /* never NULL ("off" is a sink that drops) */
    outbox *ob;       /* the outbox's publisher, NULL when replication is off */
    struct tap *tap;  /* the live consoles' feed (admin on), or NULL; the
                         front end makes it, with its admin loop */
} pipeline_sinks;

/* Opens cfg's sinks into p (zeroed first): the log, the store (started),
 * the outbox's publisher when amqp is set (it connects by itself: a broker
 * down now is not an error); sets the global flags (stats.h) from what is
 * configured. 0, or -1 with err naming the sink ("store: ...") and what was
 * opened closed again. */
int pipeline_open(pipeline_sinks *p, const config *cfg, char *err, size_t errlen);
/* Stops the publisher (unconfirmed rows stay in the outbox for the next
 * start), commits what the store still queues and closes it, closes the
 * log. The tap is the front end's. */
void pipeline_close(pipeline_sinks *p);

/* The capture decision for r (its method set) under cfg: matched is the
 * rule it matched, or NULL when it never got through its headers (the
 * default rule decides then); from_peer: it carries the replicator's
 * X-Restspy-Replicated-From header (recorded with origin "replicated",
 * never republished; its Idempotency-Key, when a UUID, becomes r->id: the
 * replicator's own capture row of that write has the same id, so one row
 * stays). Reads the global flags (stats.h) and the deciding
 * rule's switches; sets r->rule (owned by r), r->do_log, r->do_persist,
 * r->do_replicate, and r->origin (and maybe r->id) when from_peer. */
capture_decision pipeline_decide(const pipeline_sinks *p, const config *cfg, record *r,
                                 const rule *matched, bool from_peer, bool upgrade);

/* Whether an answer of this status lets its request replicate
 * (replicate_on: any status, or 2xx only). */
bool pipeline_status_replicates(const config *cfg, int status);

/* The outbox message of r (owned by the caller), or NULL: wanted is the
 * decision's outbox; too_big says its body passed replicate_max_body (then
 * r->replication says it was skipped, and the store counts it); complete
 * says the request arrived whole and its status replicates. body is the
 * whole request body (not the record's capped copy). Not signed yet:
 * pipeline_sink adds the origin's body (after redaction) and signs it with
 * replicate_secret. body is moved into the message (left empty) when one
 * is built. Call it before pipeline_sink (redaction). */
repl_msg *pipeline_outbox(const pipeline_sinks *p, const config *cfg, record *r, bool wanted,
                          bool too_big, bool complete, buf *body);

typedef struct pipeline_box pipeline_box;
typedef struct pipeline_ticket pipeline_ticket;

/* Hands r and msg, its outbox message (both owned by the callee from here, in every case)
 * to the sinks as r's do_* say; msg gets the origin's body (replicate_origin_body_max) and
 * its signature here; ru is the rule that decided (its body
 * caps). With box (not NULL) and a unit that goes to the store, the commit
 * is waited for: returns its ticket, whose owner is owner (box's deliver
 * gets owner and the status on box's loop). Otherwise NULL. May wait for
 * room in the store's queue (store_on_full = block). */
pipeline_ticket *pipeline_sink(const pipeline_sinks *p, const config *cfg, const rule *ru,
                               record *r, repl_msg *msg, pipeline_box *box, void *owner);

/* A commit reported for owner: status 0 committed, -1 lost. */
typedef void (*pipeline_deliver_fn)(void *owner, int status);

/* A mailbox from the store's writer thread to loop: async (the caller's,
 * initialised here, closed by pipeline_box_close) wakes it, and deliver
 * runs there for each commit whose owner is still there, in commit order.
 * It outlives pipeline_box_close while commits are in flight (reference
 * count); after it, what arrives is dropped. */
pipeline_box *pipeline_box_open(uv_loop_t *loop, uv_async_t *async, pipeline_deliver_fn deliver);
/* Closes async and lets go of b (on its loop). */
void pipeline_box_close(pipeline_box *b);
/* The owner of t is gone (on the box's loop): its commit, when it comes,
 * is dropped. t must not be used after this. */
void pipeline_ticket_forget(pipeline_ticket *t);

#endif
