/* replicator_apply: the replicator's workers: one attempt at an item each
 * time (verification, ledger lookup, the HTTP apply, the capture row and its
 * ledger row committed together), handed back to the main thread. */
#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "capture/config.h"
#include "capture/record.h"
#include "capture/redact.h"
#include "compare/compare.h"
#include "formats/repl_msg.h"
#include "http/hclient.h"
#include "replication/replicator_internal.h"
#include "store/store.h"

#define CAPTURE_CAP (64u << 10) /* bytes of each body kept in the capture row */
#define DETAIL_MAX 300          /* bytes of the first body difference kept in an outcome */

/* ---- workers ---- */

static void on_committed(void *ud, int status)
{
    worker *w = ud;
    pthread_mutex_lock(&w->cmu);
    w->cdone = true;
    w->cstatus = status;
    pthread_cond_signal(&w->ccv);
    pthread_mutex_unlock(&w->cmu);
}

static void copy_capped(buf *dst, const void *data, size_t len, bool *truncated)
{
    size_t n = len < CAPTURE_CAP ? len : CAPTURE_CAP;
    if (n)
        buf_append(dst, data, n);
    *truncated = len > n;
}

/* Builds the capture row of an applied message; takes the headers (sent)
 * and the response. */
static record *capture(repl *r, const repl_msg *m, http_headers *sent, hclient_response *resp,
                       int64_t started_us, int64_t dur_us)
{
    record *rec = record_new();
    /* The origin's capture id: both sites' rows of one write share it. */
    memcpy(rec->id, m->id, sizeof rec->id);
    free(rec->origin);
    rec->origin = xstrdup("replicated");
    rec->node = xstrdup(m->origin);
    rec->started_at_us = started_us;
    rec->duration_us = dur_us;
    rec->upstream_us = dur_us;
    rec->method = xstrdup(m->method);
    rec->scheme = xstrdup("http");
    record_set_target(rec, m->target, strlen(m->target));
    rec->http_minor = 1;
    rec->req_headers = *sent;
    memset(sent, 0, sizeof *sent);
    copy_capped(&rec->req_body, m->body.data, m->body.len, &rec->req_truncated);
    rec->req_body_size = m->body.len;
    rec->status = resp->status;
    rec->resp_headers = resp->headers;
    memset(&resp->headers, 0, sizeof resp->headers);
    copy_capped(&rec->resp_body, resp->body.data, resp->body.len, &rec->resp_truncated);
    rec->resp_body_size = resp->body.len;
    rec->rule = xstrdup("replicated");
    rec->do_persist = true;
    record_decode_bodies(rec, CAPTURE_CAP, CAPTURE_CAP, !redact_bodies(r->cfg));
    /* What is applied carries real credentials (--set-header); the row must
     * not. */
    redact_record(r->cfg, rec);
    return rec;
}

/* ---- divergence: the answer here against the origin's ---- */

/* Appends "body " and the first difference of cr (cut at DETAIL_MAX bytes,
 * on a character boundary), and how many more there are. */
static void body_detail(const compare_result *cr, buf *out)
{
    buf d = BUF_INIT;
    if (cr->ndiffs)
        diff_format(&cr->diffs[0], &d);
    size_t n = d.len;
    if (n > DETAIL_MAX) {
        n = DETAIL_MAX;
        while (n && ((unsigned char)d.data[n] & 0xC0) == 0x80)
            n--; /* not inside a UTF-8 sequence */
    }
    buf_append_str(out, "body");
    if (n) {
        buf_append_char(out, ' ');
        buf_append(out, d.data, n);
        if (n < d.len)
            buf_append_str(out, "...");
    }
    if (cr->ndiffs_total > 1)
        buf_appendf(out, " (and %zu more)", cr->ndiffs_total - 1);
    buf_free(&d);
}

/* Does the body here match the origin's? With the origin's stored body in
 * the message: the comparison engine under the site's noise rules, against
 * rec (the capture row: decoded and redacted as the origin's is). Else by
 * the digest of the bytes on the wire. Appends the difference to out and
 * returns false when they differ; true (out untouched) when they match or
 * nothing tells (a body the origin's capture cut). */
static bool same_body(const repl *r, const repl_msg *m, const buf *wire, const record *rec,
                      buf *out)
{
    if (m->origin_body.len) {
        record *want = record_new();
        want->status = rec->status;
        buf_append(&want->resp_body, m->origin_body.data, m->origin_body.len);
        want->resp_body_size = m->origin_body.len;
        compare_opts o = {.noise = r->noise, .headers = NULL, .max_diffs = 1};
        compare_result cr;
        compare_responses(&o, want, rec, &cr);
        if (!cr.match)
            body_detail(&cr, out);
        bool same = cr.match;
        compare_result_free(&cr);
        record_free(want);
        return same;
    }
    if (!m->origin_digest)
        return true;
    char hex[REPL_DIGEST_HEX + 1];
    repl_sha256_hex(wire->data, wire->len, hex);
    if (strcmp(hex, m->origin_digest) == 0)
        return true;
    buf_append_str(out, "body (its SHA-256 differs; the origin sent no body to compare under "
                        "noise rules)");
    return false;
}

/* The ledger outcome of an apply answered with status and wire (its body
 * as received) and captured as rec: "same" or "diverged: status 201 -> 409"
 * / "diverged: body $.id: 17 -> 23" (heap), or NULL for a version-1
 * message, which does not say what the origin answered. */
static char *outcome_of(const repl *r, const repl_msg *m, int status, const buf *wire,
                        const record *rec)
{
    if (!m->origin_status)
        return NULL;
    int origin = atoi(m->origin_status); /* 3 digits: repl_msg_verify checked */
    buf o = BUF_INIT;
    buf_append_str(&o, "diverged: ");
    if (status != origin)
        buf_appendf(&o, "status %d -> %d", origin, status);
    else if (same_body(r, m, wire, rec, &o)) {
        buf_free(&o);
        return xstrdup("same");
    }
    return buf_detach(&o);
}

/* Whether a refusal (4xx) here goes to the dead letters. A version-1
 * message does not say what the origin answered: the refusal is the
 * message's fault as far as can be told. With version 2 it is an outcome
 * like any other (recorded as diverged, or the same refusal as at the
 * origin, and acked: never retried blindly), unless the site wants such
 * writes dead-lettered to retry them once the cause is fixed
 * (replicate_refused = dead-letter). */
static bool dead_letters(const config *cfg, const repl_msg *m, int status)
{
    if (!m->origin_status)
        return true;
    int origin = atoi(m->origin_status);
    return cfg->replicate_refused == REPL_REFUSED_DEAD_LETTER && origin < 400 && origin != status;
}

/* The dead letter's reason for a refusal: what the app answered, after
 * what the origin's did when the message says (heap). */
static char *refused_reason(const repl_msg *m, int status, const buf *body)
{
    char *why = repl_dead_reason(status, body);
    if (!m->origin_status)
        return why;
    buf b = BUF_INIT;
    buf_appendf(&b, "diverged: status %s -> %d; %s", m->origin_status, status, why);
    free(why);
    return buf_detach(&b);
}

/* A failed attempt: the item is tried again later; spend says whether the
 * failure spends its retry budget. Takes answer (heap). */
static void failed(item *it, char *answer, bool spend)
{
    it->outcome = OUT_RETRY;
    free(it->answer);
    it->answer = answer;
    it->spend = spend;
}

/* At the item's first failure in this process: the budget it spent in an
 * earlier run (its stuck row), so that restarting the replicator does not
 * give a failing write a fresh budget. */
static void load_budget(repl *r, item *it)
{
    if (it->loaded)
        return;
    store_stuck row;
    char err[256] = "";
    pthread_mutex_lock(&r->ledger_mu);
    int rc = store_stuck_get(r->st, it->msg->id, &row, err, sizeof err);
    pthread_mutex_unlock(&r->ledger_mu);
    if (rc < 0) {
        repl_logf("reading the retry budget of %s failed: %s", it->msg->id, err);
        return; /* read again at its next failure */
    }
    it->loaded = true;
    if (rc == 1) {
        it->attempts = row.attempts;
        it->first_failed_us = row.first_failed_us;
        store_stuck_row_free(&row);
    }
}

/* The receipt of a message the ledger already holds: the first apply's
 * status and time again (its receipt may have been lost: the replicator
 * stopped between the commit and the receipt), or a skip. */
static void ledger_receipt(repl *r, item *it, bool skipped)
{
    store_ledger_entry row;
    char err[256] = "";
    pthread_mutex_lock(&r->ledger_mu);
    int rc = store_ledger_get(r->st, it->msg->id, &row, err, sizeof err);
    pthread_mutex_unlock(&r->ledger_mu);
    if (rc < 0)
        repl_logf("reading the ledger row of %s failed: %s", it->msg->id, err);
    bool diverged = rc == 1 && row.outcome && strcmp(row.outcome, "same") != 0;
    it->receipt = skipped ? RECEIPT_SKIPPED : diverged ? RECEIPT_DIVERGED : RECEIPT_APPLIED;
    it->status = rc == 1 && !skipped ? row.status : 0;
    it->receipt_at_us = rc == 1 ? row.at_us : 0;
    if (rc == 1)
        store_ledger_entry_free(&row);
}

/* The ledger lookup and the HTTP request of one attempt, with the headers
 * it is applied with. */
static void apply(worker *w, item *it, const http_headers *hdrs)
{
    repl *r = w->r;
    repl_msg *m = it->msg;
    char err[512] = "";
    pthread_mutex_lock(&r->ledger_mu);
    int has = store_ledger_has(r->st, m->id, err, sizeof err);
    pthread_mutex_unlock(&r->ledger_mu);
    if (has < 0) {
        buf a = BUF_INIT;
        buf_appendf(&a, "ledger lookup failed: %s", err);
        failed(it, buf_detach(&a), false);
        return;
    }
    if (has > 0) {
        /* Applied before (a redelivery), or skipped by an operator. */
        it->outcome = OUT_ACK;
        it->counter = has == 1 ? "deduplicated" : NULL;
        ledger_receipt(r, it, has == 2);
        return;
    }
    hclient_response resp;
    int64_t t0 = util_now_us(), m0 = util_mono_us();
    int rc = hclient_sync_request(w->hc, m->method, m->target, hdrs, m->body.data, m->body.len,
                                  &resp, err, sizeof err);
    int64_t dur = util_mono_us() - m0;
    if (rc != 0) {
        /* Unreachable: nothing was sent, the message is not at fault. A
         * failure after the request went out (timeout, reset) may be. */
        failed(it, xstrdup(err), !repl_unreachable(err));
        hclient_response_free(&resp);
        return;
    }
    it->status = resp.status;
    /* 408 and 429 say "later", not "never": retried like a 5xx. */
    if (resp.status >= 500 || resp.status == 408 || resp.status == 429) {
        failed(it, repl_dead_reason(resp.status, &resp.body), true);
        hclient_response_free(&resp);
        return;
    }
    it->answered = true;
    if (resp.status >= 400 && dead_letters(r->cfg, m, resp.status)) {
        it->outcome = OUT_DEAD;
        it->receipt = RECEIPT_DEAD_LETTERED;
        it->reason = refused_reason(m, resp.status, &resp.body);
        hclient_response_free(&resp);
        return;
    }
    /* Applied: the capture row and the ledger row commit together, and
     * only then may the message be acked. */
    http_headers sent = {0};
    for (size_t i = 0; i < hdrs->len; i++)
        http_headers_add(&sent, hdrs->v[i].name, strlen(hdrs->v[i].name), hdrs->v[i].value,
                         strlen(hdrs->v[i].value));
    record *rec = capture(r, m, &sent, &resp, t0, dur);
    rec->replication = outcome_of(r, m, resp.status, &resp.body, rec); /* the ledger's too */
    bool diverged = rec->replication && strcmp(rec->replication, "same") != 0;
    if (diverged)
        repl_logf("%s %s from %s diverged: %s", m->method, m->target, m->origin,
                  rec->replication + strlen("diverged: "));
    hclient_response_free(&resp);
    pthread_mutex_lock(&w->cmu);
    w->cdone = false;
    pthread_mutex_unlock(&w->cmu);
    int status = -1;
    store_unit u = {.rec = rec, .rec_row = true, .applied_id = xstrdup(m->id)};
    if (store_submit_unit(r->st, &u, on_committed, w) == 0) {
        pthread_mutex_lock(&w->cmu);
        while (!w->cdone)
            pthread_cond_wait(&w->ccv, &w->cmu);
        status = w->cstatus;
        pthread_mutex_unlock(&w->cmu);
    }
    if (status == 0) {
        it->outcome = OUT_ACK;
        /* Counted once acked (a redelivery is deduplicated, not counted
         * again); a replicator stopped between the commit and the ack leaves
         * the ledger row without the count: the ledger is the record. */
        it->counter = diverged ? "diverged" : NULL;
        it->receipt = diverged ? RECEIPT_DIVERGED : RECEIPT_APPLIED;
        it->receipt_at_us = util_now_us();
        return;
    }
    /* Not recorded: apply again (same Idempotency-Key) rather than ack
     * something the ledger does not know. Not the message's fault. */
    failed(it, xstrdup("the store did not commit the ledger row"), false);
}

/* Makes one attempt at applying the item's message; sets it->outcome (and
 * reason, counter or answer). */
static void attempt(worker *w, item *it)
{
    repl *r = w->r;
    const config *cfg = r->cfg;
    repl_msg *m = it->msg;
    char why[256] = "";
    it->outcome = OUT_ABANDON;
    it->answered = false;
    it->status = 0;
    it->receipt = -1; /* none until the message is verified and not ours */
    it->receipt_at_us = 0;
    it->started_us = util_now_us();

    if (repl_msg_verify(m, cfg->replicate_secret, why, sizeof why) != 0) {
        it->outcome = OUT_DEAD;
        it->reason = xstrdup(why[0] ? why : "malformed message");
        return;
    }
    if (!m->id[0] || !m->origin || !m->method || !m->target || m->target[0] != '/') {
        /* Without an id there is no ledger entry and no Idempotency-Key. */
        it->outcome = OUT_DEAD;
        it->reason = xstrdup("malformed message: no message_id, origin, method or target");
        return;
    }
    if (strcmp(m->origin, cfg->node) == 0) {
        it->outcome = OUT_ACK;
        it->counter = "skipped_own";
        return;
    }
    http_headers hdrs = {0};
    if (repl_apply_headers(m, cfg->set_headers, &hdrs) != 0) {
        http_headers_free(&hdrs);
        it->outcome = OUT_DEAD;
        it->reason = xstrdup("malformed message: bad x-restspy-headers");
        return;
    }
    apply(w, it, &hdrs);
    http_headers_free(&hdrs);
    if (it->outcome == OUT_RETRY)
        load_budget(r, it);
}

void *repl_worker_main(void *arg)
{
    worker *w = arg;
    repl *r = w->r;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->run_head && !r->stopping)
            pthread_cond_wait(&r->cv, &r->mu);
        item *it = r->run_head;
        if (!it)
            break; /* stopping with nothing queued */
        r->run_head = it->next;
        if (!r->run_head)
            r->run_tail = NULL;
        it->next = NULL;
        assert(it->state == ST_RUN); /* the run queue holds started items only */
        bool skip = r->stopping || it->gen != r->gen;
        pthread_mutex_unlock(&r->mu);
        if (!skip)
            attempt(w, it);
        else
            it->outcome = OUT_ABANDON;
        pthread_mutex_lock(&r->mu);
        if (r->done_tail)
            r->done_tail->next = it;
        else
            r->done_head = it;
        r->done_tail = it;
        if (r->wake_fd >= 0) {
            /* Ends the main thread's wait on the broker: it acks this one
             * now. A full counter (never, at 2^64 - 2) would only delay. */
            uint64_t one = 1;
            ssize_t n = write(r->wake_fd, &one, sizeof one);
            (void)n;
        }
        if (it->answered && it->started_us > r->ok_us)
            r->ok_us = it->started_us;
        if (it->outcome == OUT_ACK || it->outcome == OUT_DEAD) {
            /* Its effect is committed (or it is refused): what waited for
             * it may start now; the main thread acks it later. */
            it->settled = true;
            r->dirty = true;
            repl_schedule_locked(r);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}
