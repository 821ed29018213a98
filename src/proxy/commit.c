/* commit: the capture commit of a request (see proxy.h).
 *
 * Owns the proxy's side of the finished record's way to the sinks: it hands
 * the record and, when the request is replicated, its outbox message to the
 * capture pipeline (pipeline/pipeline.h: redaction, log, store, the same
 * code `restspy collect` runs); and, in sync durability, the wait for the
 * store's commit before the held end of the response goes out (the
 * worker's pipeline_box). */
#include "proxy/proxy_internal.h"

#include <assert.h>

#include "pipeline/pipeline.h"

/* Hands the finished record to the sinks; they own or drop it after this.
 * In hold mode it starts the wait for the commit (c->txn.ticket). */
void sink_record(conn *c)
{
    record *r = c->txn.rec;
    assert(r && !c->txn.ticket);
    c->txn.rec = NULL;
    const pipeline_sinks *p = &c->w->sh->pl;
    struct txn *t = &c->txn;
    repl_msg *msg = pipeline_outbox(p, t->cfg, r, t->repl, t->repl_too_big,
                                    t->req_done && t->repl_status_ok, &t->repl_body);
    /* Only a held response waits, and only for a write that replicates. */
    pipeline_box *box = t->hold && msg ? c->w->commits : NULL;
    t->ticket = pipeline_sink(p, t->cfg, t->rule, r, msg, box, c);
}

/* The store has committed (status 0) or lost (-1) the record of a held
 * response (the worker's pipeline_box delivers it; owner is the conn). */
static void conn_committed(void *owner, int status)
{
    conn *c = owner;
    assert(c->ph == PH_COMMIT && c->txn.ticket && !c->txn.rec);
    c->txn.ticket = NULL;
    if (status != 0) {
        /* Never complete the answer to a write that is not durable: the
         * client sees a cut response, as if restspy had crashed. */
        conn_close(c, false);
        return;
    }
    flush_held(c);
    c->txn.hold = false;
    txn_continue(c);
}

void proxy_worker_init(proxy_worker *w)
{
    w->commits = pipeline_box_open(w->loop, &w->commit_async, conn_committed);
}

void proxy_worker_close(proxy_worker *w)
{
    pipeline_box_close(w->commits);
    w->commits = NULL;
}
