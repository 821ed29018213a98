#include "replay/replay.h"

#include <assert.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "base/url.h"
#include "base/util.h"
#include "replay/replay_run.h"

/* How a run goes: every case's request is prepared once (URL, header list,
 * body: hclient_msg); then `concurrency` slots each take the next job
 * (loop-major: all cases of loop 0, then loop 1, ...; with ordered, the
 * next case of the ready client whose next case comes first), wait for its
 * time when pacing, and hand it to the run's hclient, which libcurl's
 * multi interface carries on at most `concurrency` kept-alive connections
 * (HTTP/1.1; an https target that offers HTTP/2 gets it). One request per
 * slot at a time, one loop in the calling thread: the callback never needs
 * a lock. Per answer the only allocations are its header strings (the
 * record, its body buffer and libcurl's easy handle are reused).
 * The run's pieces: replay_case.c prepares the cases, replay_slot.c drives
 * the slots; this file starts, stops and ends a run. */

#define PROGRESS_MS 200

/* ------------------------------------------------------------------ */
/* stop: shared with signal handlers and other threads                 */

static atomic_int g_stop;
/* The running replay's wake-up handle. g_senders counts replay_stop calls
 * between reading g_async and sending on it, so the run can wait for them
 * before closing the handle (a signal handler on the run's own thread always
 * finishes before the run resumes, so the wait never deadlocks). */
static _Atomic(uv_async_t *) g_async;
static atomic_int g_senders;

void replay_stop(void)
{
    atomic_store(&g_stop, 1);
    atomic_fetch_add(&g_senders, 1);
    uv_async_t *a = atomic_load(&g_async);
    if (a)
        uv_async_send(a);
    atomic_fetch_sub(&g_senders, 1);
}

/* ------------------------------------------------------------------ */
/* run                                                                 */

/* Every job not yet answered gets "stopped"; then the run ends. */
static void do_stop(run *r)
{
    if (r->stopping || r->finishing)
        return;
    r->stopping = true;
    for (unsigned i = 0; i < r->nslots && !r->finishing; i++)
        replay_slot_drop(&r->slots[i], "stopped");
    if (r->parts) {
        for (size_t pi = 0; pi < r->nparts && !r->finishing; pi++) {
            rpart *p = &r->parts[pi];
            while (p->next < p->total && !r->finishing) {
                size_t ci = p->pos[p->next % p->n];
                unsigned loop = (unsigned)(p->next / p->n);
                p->next++;
                r->taken++;
                replay_deliver(r, NULL, ci, loop, NULL, "stopped");
            }
        }
    } else {
        while (r->taken < r->total && !r->finishing) {
            uint64_t j = r->taken++;
            replay_deliver(r, NULL, (size_t)(j % r->ncases), (unsigned)(j / r->ncases), NULL,
                           "stopped");
        }
    }
}

static void on_async(uv_async_t *a)
{
    run *r = a->data;
    if (atomic_load(&g_stop))
        do_stop(r);
}

static void on_progress(uv_timer_t *t)
{
    run *r = t->data;
    if (atomic_load(&g_stop))
        do_stop(r);
    if (!r->finishing)
        replay_run_progress(r);
}

static void noop_close(uv_handle_t *h)
{
    (void)h;
}

/* The last answer is in: close every handle so that uv_run returns. */
void replay_close_all(run *r)
{
    if (r->finishing)
        return;
    r->finishing = true;
    for (unsigned i = 0; i < r->nslots; i++)
        uv_close((uv_handle_t *)&r->slots[i].timer, noop_close);
    uv_close((uv_handle_t *)&r->ptimer, noop_close);
    hclient_free(r->client); /* requests in flight end unheard */
    r->client = NULL;
    /* No replay_stop may be between reading g_async and sending on it. */
    atomic_store(&g_async, NULL);
    while (atomic_load(&g_senders) > 0)
        ;
    uv_close((uv_handle_t *)&r->async, noop_close);
}

/* Checks "http[s]://host[:port][/]" and resolves its host once, into addr
 * (numeric, for every connection of the run: no resolve per connection,
 * and a name that does not resolve fails the run, not each case). 0 or -1
 * with err. */
static int resolve_target(uv_loop_t *loop, const char *target, char *addr, size_t addrlen,
                          char *err, size_t errlen)
{
    if (!target || !*target) {
        snprintf(err, errlen, "no target given");
        return -1;
    }
    url_parts u;
    const char *why = NULL;
    if (url_parse(target, strlen(target), &u, &why) != 0 ||
        !(url_is(&u, "http") || url_is(&u, "https"))) {
        if (u.scheme[0] && !url_is(&u, "http") && !url_is(&u, "https"))
            why = "only http:// and https:// are supported";
        else if (!strstr(target, "://"))
            why = "expected http[s]://host:port";
        else if (strcmp(why, "bad port") != 0 &&
                 strcmp(why, "put an IPv6 address in brackets") != 0)
            why = "bad host";
        snprintf(err, errlen, "target %s: %s", target, why);
        return -1;
    }
    if (u.path_len > 1 || u.query || u.userinfo) {
        snprintf(err, errlen, "target %s: a path is not supported (use --rewrite-path)", target);
        return -1;
    }
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", u.port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    uv_getaddrinfo_t req;
    int rc = uv_getaddrinfo(loop, &req, NULL, u.host, portstr, &hints);
    if (rc < 0) {
        snprintf(err, errlen, "target %s: %s", target, uv_strerror(rc));
        return -1;
    }
    /* IPv4 first: "localhost" often resolves to ::1 first while development
     * servers listen on 127.0.0.1 only. */
    struct addrinfo *pick = req.addrinfo;
    for (struct addrinfo *ai = req.addrinfo; ai; ai = ai->ai_next)
        if (ai->ai_family == AF_INET) {
            pick = ai;
            break;
        }
    uv_ip_name(pick->ai_addr, addr, addrlen);
    uv_freeaddrinfo(req.addrinfo);
    return 0;
}

int replay_run(const replay_opts *o, record *const *cases, size_t n, replay_cb cb, void *ud,
               replay_progress_cb pcb, void *pud, char *err, size_t errlen)
{
    atomic_store(&g_stop, 0);

    run *r = xcalloc(1, sizeof *r);
    r->o = o;
    r->cb = cb;
    r->ud = ud;
    r->pcb = pcb;
    r->pud = pud;
    r->loops = o->loops ? o->loops : 1;
    uv_loop_init(&r->loop);
    r->timeout_ms = o->timeout_ms ? o->timeout_ms : 30000;
    r->max_decoded = o->max_decoded ? o->max_decoded : REPLAY_MAX_DECODED;
    char addr[64];
    if (resolve_target(&r->loop, o->target, addr, sizeof addr, err, errlen) < 0)
        goto fail;
    unsigned conc = o->concurrency ? o->concurrency : 1;
    /* An answer's raw body is kept up to max_decoded, at least 64 MiB (a
     * compressed one is cut at max_decoded once decoded). */
    hclient_opts ho = {
        .base = o->target,
        .timeout_ms = r->timeout_ms,
        .max_conns = conc,
        .max_body =
            (size_t)(r->max_decoded > REPLAY_MAX_DECODED ? r->max_decoded : REPLAY_MAX_DECODED),
        .connect_addr = addr,
        .tls = o->tls};
    r->client = hclient_new(&r->loop, &ho, err, errlen);
    if (!r->client)
        goto fail;

    /* Prepare every replayable case once; loops reuse it. */
    r->cases = xcalloc(n ? n : 1, sizeof *r->cases);
    int64_t first = INT64_MAX, last = INT64_MIN;
    for (size_t i = 0; i < n; i++) {
        if (replay_unreplayable(o, cases[i], NULL, 0))
            continue;
        rcase *k = &r->cases[r->ncases++];
        k->rec = cases[i];
        k->index = i;
        replay_case_prepare(k, o, r->client);
        if (cases[i]->started_at_us < first)
            first = cases[i]->started_at_us;
        if (cases[i]->started_at_us > last)
            last = cases[i]->started_at_us;
    }
    if (o->speed > 0 && r->ncases) {
        for (size_t i = 0; i < r->ncases; i++)
            r->cases[i].due_us =
                (int64_t)((double)(r->cases[i].rec->started_at_us - first) / o->speed);
        /* The next loop starts one mean gap after this one's last case. */
        int64_t span = (int64_t)((double)(last - first) / o->speed);
        r->loop_span_us = span + (r->ncases > 1 ? span / (int64_t)(r->ncases - 1) : 0);
    }
    r->total = (uint64_t)r->ncases * r->loops;
    if (o->ordered)
        replay_parts_build(r);

    uint64_t width = r->parts ? r->nparts : r->total;
    r->nslots = width < conc ? (unsigned)width : conc;
    r->slots = xcalloc(r->nslots ? r->nslots : 1, sizeof *r->slots);
    r->idle = xcalloc(r->nslots ? r->nslots : 1, sizeof *r->idle);

    /* A target that closes while we write must give an error, not SIGPIPE. */
    struct sigaction ign, oldpipe;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &oldpipe);

    uv_timer_init(&r->loop, &r->ptimer);
    r->ptimer.data = r;
    uv_async_init(&r->loop, &r->async, on_async);
    r->async.data = r;
    atomic_store(&g_async, &r->async);
    r->t0 = util_mono_us();
    if (r->parts)
        for (size_t i = 0; i < r->nparts; i++)
            replay_parts_push(r, i);

    if (r->total == 0) {
        replay_close_all(r);
    } else {
        uv_timer_start(&r->ptimer, on_progress, PROGRESS_MS, PROGRESS_MS);
        for (unsigned i = 0; i < r->nslots; i++) {
            slot *s = &r->slots[i];
            s->r = r;
            uv_timer_init(&r->loop, &s->timer);
            s->timer.data = s;
        }
        for (unsigned i = 0; i < r->nslots && !r->finishing; i++)
            replay_slot_next(&r->slots[i]);
        if (atomic_load(&g_stop))
            do_stop(r);
    }
    uv_run(&r->loop, UV_RUN_DEFAULT);
    replay_run_progress(r);
    sigaction(SIGPIPE, &oldpipe, NULL);

    for (unsigned i = 0; i < r->nslots; i++) {
        record_free(r->slots[i].spare);
        replay_slot_sub_free(&r->slots[i]); /* hclient is gone: nothing in flight */
    }
    for (size_t i = 0; i < r->ncases; i++)
        replay_case_free(&r->cases[i]);
    if (r->parts) {
        if (r->nparts)
            free(r->parts[0].pos);
        for (size_t i = 0; i < r->nparts; i++)
            free(r->parts[i].client);
        free(r->parts);
        free(r->heap);
    }
    free(r->idle);
    free(r->slots);
    free(r->cases);
    int closed = uv_loop_close(&r->loop);
    assert(closed == 0); /* every handle closed */
    (void)closed;
    free(r);
    return 0;
fail:
    /* Before any case or handle of the run's own. */
    hclient_free(r->client);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    uv_loop_close(&r->loop);
    free(r);
    return -1;
}
