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

/* How a run goes: every case is serialized once into one arena; then
 * `concurrency` connections each take the next job (loop-major: all cases of
 * loop 0, then loop 1, ...; with ordered, the next case of the ready client
 * whose next case comes first), wait for its time when pacing, write it,
 * parse the answer and hand it over, and take the next job on the same
 * socket while the server keeps it alive. One request per connection at a
 * time, one loop in the calling thread: the callback never needs a lock.
 * Per answer the only allocations are its header strings (the record and
 * its body buffer are reused when the callback leaves them); timeouts are
 * checked by one sweeping timer, so nothing is armed per request.
 * The run's pieces: replay_case.c prepares the cases, replay_conn.c drives
 * the connections; this file starts, stops and ends a run. */

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
    for (unsigned i = 0; i < r->nconns && !r->finishing; i++) {
        conn *c = &r->conns[i];
        if (c->has_job) {
            replay_conn_deliver(c, "stopped");
            if (!r->finishing)
                replay_conn_close(c, AFTER_NOTHING);
        }
    }
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
    for (unsigned i = 0; i < r->nconns; i++) {
        conn *c = &r->conns[i];
        c->after = AFTER_NOTHING;
        if (c->tcp_open && !c->closing) {
            c->closing = true;
            uv_close((uv_handle_t *)&c->tcp, replay_conn_on_closed);
        }
        uv_close((uv_handle_t *)&c->timer, noop_close);
    }
    uv_close((uv_handle_t *)&r->ptimer, noop_close);
    uv_close((uv_handle_t *)&r->sweep, noop_close);
    /* No replay_stop may be between reading g_async and sending on it. */
    atomic_store(&g_async, NULL);
    while (atomic_load(&g_senders) > 0)
        ;
    uv_close((uv_handle_t *)&r->async, noop_close);
}

/* Parses "http://host[:port][/]" into r->addr and hostport ("host:port" as
 * the Host header); the scheme is required. 0 or -1 with err. */
static int resolve_target(run *r, const char *target, char *hostport, size_t hplen, char *err,
                          size_t errlen)
{
    if (!target || !*target) {
        snprintf(err, errlen, "no target given");
        return -1;
    }
    url_parts u;
    const char *why = NULL;
    if (url_parse(target, strlen(target), &u, &why) != 0 || !url_is(&u, "http")) {
        if (u.scheme[0] && !url_is(&u, "http"))
            why = "only http:// is supported";
        else if (!strstr(target, "://"))
            why = "expected http://host:port";
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
    const char *host = u.host;
    int port = u.port;
    snprintf(hostport, hplen, "%.*s", (int)u.authority_len, u.authority);
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    uv_getaddrinfo_t req;
    int rc = uv_getaddrinfo(&r->loop, &req, NULL, host, portstr, &hints);
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
    memcpy(&r->addr, pick->ai_addr, pick->ai_addrlen);
    uv_freeaddrinfo(req.addrinfo);
    return 0;
}

int replay_run(const replay_opts *o, record *const *cases, size_t n, replay_cb cb, void *ud,
               replay_progress_cb pcb, void *pud, char *err, size_t errlen)
{
    static uv_once_t once = UV_ONCE_INIT;
    uv_once(&once, replay_conn_settings_init);
    atomic_store(&g_stop, 0);

    run *r = xcalloc(1, sizeof *r);
    r->o = o;
    r->cb = cb;
    r->ud = ud;
    r->pcb = pcb;
    r->pud = pud;
    r->loops = o->loops ? o->loops : 1;
    uv_loop_init(&r->loop);
    char hostport[300];
    if (resolve_target(r, o->target, hostport, sizeof hostport, err, errlen) < 0) {
        uv_loop_close(&r->loop);
        free(r);
        return -1;
    }

    /* Serialize every replayable case once; loops reuse the bytes. */
    r->cases = xcalloc(n ? n : 1, sizeof *r->cases);
    int64_t first = INT64_MAX, last = INT64_MIN;
    for (size_t i = 0; i < n; i++) {
        if (replay_unreplayable(o, cases[i], NULL, 0))
            continue;
        rcase *k = &r->cases[r->ncases++];
        k->rec = cases[i];
        k->index = i;
        replay_case_prepare(k, o, hostport, &r->wires);
        if (cases[i]->started_at_us < first)
            first = cases[i]->started_at_us;
        if (cases[i]->started_at_us > last)
            last = cases[i]->started_at_us;
    }
    for (size_t i = 0; i < r->ncases; i++)
        r->cases[i].wire = r->wires.data + r->cases[i].woff;
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
    unsigned conc = o->concurrency ? o->concurrency : 1;
    r->nconns = width < conc ? (unsigned)width : conc;
    r->conns = xcalloc(r->nconns ? r->nconns : 1, sizeof *r->conns);
    r->idle = xcalloc(r->nconns ? r->nconns : 1, sizeof *r->idle);

    /* A target that closes while we write must give an error, not SIGPIPE. */
    struct sigaction ign, oldpipe;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &oldpipe);

    uv_timer_init(&r->loop, &r->ptimer);
    r->ptimer.data = r;
    uv_timer_init(&r->loop, &r->sweep);
    r->sweep.data = r;
    r->timeout_ms = o->timeout_ms ? o->timeout_ms : 30000;
    r->max_decoded = o->max_decoded ? o->max_decoded : REPLAY_MAX_DECODED;
    uv_async_init(&r->loop, &r->async, on_async);
    r->async.data = r;
    atomic_store(&g_async, &r->async);
    r->t0 = util_mono_us();
    r->wall0 = util_now_us();
    if (r->parts)
        for (size_t i = 0; i < r->nparts; i++)
            replay_parts_push(r, i);

    if (r->total == 0) {
        replay_close_all(r);
    } else {
        uv_timer_start(&r->ptimer, on_progress, PROGRESS_MS, PROGRESS_MS);
        /* Checked a few times per timeout: a timeout fires at most a quarter
         * late, and no timer is touched per request. */
        uint64_t every = r->timeout_ms / 4;
        every = every < 5 ? 5 : every > 100 ? 100 : every;
        uv_timer_start(&r->sweep, replay_on_sweep, every, every);
        for (unsigned i = 0; i < r->nconns; i++) {
            conn *c = &r->conns[i];
            c->r = r;
            uv_timer_init(&r->loop, &c->timer);
            c->timer.data = c;
        }
        for (unsigned i = 0; i < r->nconns && !r->finishing; i++)
            replay_conn_next(&r->conns[i]);
        if (atomic_load(&g_stop))
            do_stop(r);
    }
    uv_run(&r->loop, UV_RUN_DEFAULT);
    replay_run_progress(r);
    sigaction(SIGPIPE, &oldpipe, NULL);

    for (unsigned i = 0; i < r->nconns; i++) {
        httpmsg_hcollect_free(&r->conns[i].hc);
        record_free(r->conns[i].got);
        record_free(r->conns[i].spare);
    }
    for (size_t i = 0; i < r->ncases; i++)
        replay_case_free(&r->cases[i]);
    if (r->parts) {
        if (r->nparts)
            free(r->parts[0].pos);
        free(r->parts);
        free(r->heap);
    }
    free(r->idle);
    free(r->conns);
    free(r->cases);
    buf_free(&r->wires);
    uv_loop_close(&r->loop);
    free(r);
    return 0;
}
