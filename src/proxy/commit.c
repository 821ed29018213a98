/* commit: the capture commit of a request (see proxy.h).
 *
 * Owns the finished record's way to the sinks: its outbox message when the
 * request is replicated, decoding and redaction, the log sink, the store;
 * and, in sync durability, the wait for the store's commit before the held
 * end of the response goes out (a mailbox from the store's writer thread to
 * the worker's loop that outlives the worker while commits are in flight). */
#include "proxy/tap.h"
#include "proxy/proxy_internal.h"

#include <assert.h>
#include <stdlib.h>

#include "base/util.h"
#include "capture/redact.h"
#include "formats/repl_msg.h"
#include "proxy/stats.h"

/* ------------------------------------------------------------------ */
/* the record to the sinks                                             */

static void on_commit_thread(void *ud, int status);

/* The outbox message, when the request is to be replicated. Runs before
 * redaction: peers must get the real request. */
static repl_msg *outbox_message(conn *c, record *r)
{
    if (!c->txn.repl)
        return NULL;
    if (c->txn.repl_too_big) {
        r->replication = xstrdup("skipped: body over replicate_max_body");
        store_counter_add(c->w->sh->store, "not_replicated", 1);
        return NULL;
    }
    if (!c->txn.req_done || !c->txn.repl_status_ok)
        return NULL;
    repl_msg *m = repl_msg_from_record(r, c->txn.cfg->node, &c->txn.repl_body,
                                       c->txn.cfg->replicate_drop_headers);
    repl_msg_sign(m, c->txn.cfg->replicate_secret);
    r->replication = xstrdup("queued");
    return m;
}

/* Hands the finished record to the sinks; they own or drop it after this.
 * In hold mode it starts the wait for the commit (c->txn.ticket). */
void sink_record(conn *c)
{
    record *r = c->txn.rec;
    assert(r && !c->txn.ticket);
    c->txn.rec = NULL;
    repl_msg *outbox = outbox_message(c, r);
    if (r->do_log || r->do_persist) {
        /* Redaction must see the decoded bodies (and the outbox above kept
         * the request as it was sent). */
        const config *cfg = c->txn.cfg;
        const rule *ru = c->txn.rule; /* set by the decision that set do_log and do_persist */
        assert(ru);
        record_decode_bodies(r, ru->req_body_cap, ru->resp_body_cap, !redact_bodies(cfg));
        redact_record(cfg, r);
    }
    /* A live console sees what the log and the store get. */
    if ((r->do_log || r->do_persist) && tap_wanted(c->w->sh->tap))
        tap_publish(c->w->sh->tap, r);
    /* Logged as JSON and persisted: encode the headers once for both. */
    if (r->do_log && r->do_persist && c->w->sh->store && logsink_wants_headers_json(c->w->sh->log))
        record_cache_headers_json(r);
    if (r->do_log) {
        logsink_write(c->w->sh->log, r);
        STAT_INC(logged);
    }
    store *st = c->w->sh->store;
    if (!st || (!r->do_persist && !outbox)) {
        record_free(r);
        repl_msg_free(outbox);
        return;
    }
    /* The record and its outbox row commit together (store_unit). */
    store_unit u = {.rec = r, .rec_row = r->do_persist, .outbox = outbox};
    if (r->do_persist)
        STAT_INC(captured);
    if (c->txn.hold && outbox) {
        commit_box *b = c->w->commits;
        commit_ticket *t = xcalloc(1, sizeof *t);
        t->c = c;
        t->box = b;
        pthread_mutex_lock(&b->lock);
        b->refs++;
        pthread_mutex_unlock(&b->lock);
        c->txn.ticket = t;
        store_submit_unit(st, &u, on_commit_thread, t); /* may wait (backpressure) */
    } else {
        store_submit_unit(st, &u, NULL, NULL); /* takes ownership, may wait (backpressure) */
    }
}

/* The store has committed (status 0) or lost (-1) the record of a held
 * response. */
static void conn_committed(conn *c, int status)
{
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

/* ------------------------------------------------------------------ */
/* commits (sync durability)                                           */

static void box_unref(commit_box *b)
{
    pthread_mutex_lock(&b->lock);
    int left = --b->refs;
    pthread_mutex_unlock(&b->lock);
    if (left == 0) {
        while (b->head) {
            commit_ticket *t = b->head;
            b->head = t->next;
            free(t);
        }
        pthread_mutex_destroy(&b->lock);
        free(b);
    }
}

/* On the store's writer thread: post the ticket to its worker's loop. */
static void on_commit_thread(void *ud, int status)
{
    commit_ticket *t = ud;
    commit_box *b = t->box;
    pthread_mutex_lock(&b->lock);
    if (b->open) {
        t->status = status;
        t->next = b->head;
        b->head = t;
        uv_async_send(b->async);
    } else {
        free(t);
    }
    pthread_mutex_unlock(&b->lock);
    box_unref(b);
}

static void on_commit_async(uv_async_t *a)
{
    proxy_worker *w = a->data;
    commit_box *b = w->commits;
    pthread_mutex_lock(&b->lock);
    commit_ticket *list = b->head;
    b->head = NULL;
    pthread_mutex_unlock(&b->lock);
    /* The list is newest first; answer in commit order. */
    commit_ticket *rev = NULL;
    while (list) {
        commit_ticket *next = list->next;
        list->next = rev;
        rev = list;
        list = next;
    }
    while (rev) {
        commit_ticket *t = rev;
        rev = t->next;
        if (t->c)
            conn_committed(t->c, t->status);
        free(t);
    }
}

void proxy_worker_init(proxy_worker *w)
{
    commit_box *b = xcalloc(1, sizeof *b);
    pthread_mutex_init(&b->lock, NULL);
    b->refs = 1;
    b->open = true;
    b->async = &w->commit_async;
    w->commits = b;
    uv_async_init(w->loop, &w->commit_async, on_commit_async);
    w->commit_async.data = w;
}

void proxy_worker_close(proxy_worker *w)
{
    commit_box *b = w->commits;
    pthread_mutex_lock(&b->lock);
    b->open = false;
    b->async = NULL;
    pthread_mutex_unlock(&b->lock);
    uv_close((uv_handle_t *)&w->commit_async, NULL);
    box_unref(b);
    w->commits = NULL;
}
