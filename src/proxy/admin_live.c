/* admin_live: GET /api/live, the requests captured from now on as
 * Server-Sent Events, for the console's Live view (see admin_internal.h).
 *
 * Each stream has its own filters (reqfilter, as /api/requests) and its own
 * budget: a token bucket of rate events a second. What is over the budget,
 * or meets a client whose socket already holds LIVE_QUEUE_MAX unsent bytes,
 * is skipped and counted, and a note says how many each second: a console
 * can never slow the proxy down or make the admin hold memory for it. */
#include "proxy/admin_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/iostream.h"
#include "base/util.h"
#include "capture/record.h"

#define LIVE_RATE_DEFAULT 20
#define LIVE_RATE_MAX 1000
/* Unsent bytes a stream may have before its events are skipped. */
#define LIVE_QUEUE_MAX (1024 * 1024)
/* A comment line this often keeps proxies in between from closing an idle
 * stream. */
#define LIVE_PING_S 15

typedef struct live {
    aconn *c;
    reqfilter f;
    double tokens;
    int64_t rate;
    int64_t refilled_us;
    uint64_t skipped;
    struct live *next, *prev;
} live;

static void refill(live *l, int64_t now)
{
    l->tokens += (double)(now - l->refilled_us) * (double)l->rate / 1e6;
    if (l->tokens > (double)l->rate)
        l->tokens = (double)l->rate;
    l->refilled_us = now;
}

/* What the workers may copy for the streams each second: twice what the
 * streams may send together (a filter passes only some of what is copied;
 * what is not copied is counted and told as skipped). */
static void allow(admin *a)
{
    int64_t n = 0;
    for (live *l = a->lives; l; l = l->next)
        n += 2 * l->rate;
    tap_allow(a->tap, n);
}

/* Each second: the budget, the skipped counts, and now and then a
 * keep-alive comment. */
static void on_tap_ready(void *ud);

static void on_live_timer(uv_timer_t *t)
{
    admin *a = t->data;
    on_tap_ready(a); /* what was dropped over the budget wakes nobody: collect it */
    allow(a);
    static const char ping[] = ": ping\n\n";
    int64_t tick = util_mono_us() / 1000000;
    for (live *l = a->lives; l; l = l->next) {
        if (l->skipped) {
            char note[96];
            int n = snprintf(note, sizeof note, "event: skipped\ndata: {\"count\":%llu}\n\n",
                             (unsigned long long)l->skipped);
            admin_write(l->c, note, (size_t)n);
            l->skipped = 0;
        } else if (tick % LIVE_PING_S == 0) {
            admin_write(l->c, ping, sizeof ping - 1);
        }
    }
}

/* The tap has records: each goes to the streams whose filters take it. */
static void on_tap_ready(void *ud)
{
    admin *a = ud;
    record **v;
    size_t n;
    uint64_t dropped = tap_take(a->tap, &v, &n);
    int64_t now = util_mono_us();
    buf ev = BUF_INIT;
    for (live *l = a->lives; l; l = l->next) {
        l->skipped += dropped;
        refill(l, now);
    }
    for (size_t i = 0; i < n; i++) {
        buf_reset(&ev);
        for (live *l = a->lives; l; l = l->next) {
            if (!reqfilter_match(&l->f, v[i]))
                continue;
            if (l->tokens < 1 || io_queued((uv_stream_t *)&l->c->tcp) > LIVE_QUEUE_MAX) {
                l->skipped++;
                continue;
            }
            if (!ev.len) { /* encoded once, for the first stream that takes it */
                buf_append_str(&ev, "event: request\ndata: ");
                record_to_json(v[i], 0, &ev);
                buf_append_str(&ev, "\n\n");
            }
            l->tokens -= 1;
            admin_write(l->c, ev.data, ev.len);
        }
        record_free(v[i]);
    }
    free(v);
    buf_free(&ev);
}

void admin_live_start(aconn *c, const char *query)
{
    admin *a = c->a;
    if (!a->tap) {
        admin_reply_error(c, 404, "Not Found", "no live stream here");
        return;
    }
    live *l = xcalloc(1, sizeof *l);
    l->rate = LIVE_RATE_DEFAULT;
    admin_number nums[] = {{"rate", 1, LIVE_RATE_MAX, &l->rate}};
    char err[512];
    int rc = admin_parse_query(query, &l->f, nums, 1, err, sizeof err);
    if (rc == 0 && l->f.q.limit) {
        snprintf(err, sizeof err, "limit does not apply to a live stream (use rate)");
        rc = -1;
    }
    if (rc < 0) {
        reqfilter_free(&l->f);
        free(l);
        admin_reply_error(c, 400, "Bad Request", err);
        return;
    }
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                               "Cache-Control: no-store\r\nX-Accel-Buffering: no\r\n"
                               "Connection: close\r\n\r\n: restspy live\n\n";
    c->done = true; /* no more requests on it: what the client sends is ignored */
    uv_timer_stop(&c->timer);
    if (admin_write(c, head, sizeof head - 1) < 0) {
        reqfilter_free(&l->f);
        free(l);
        admin_close(c);
        return;
    }
    l->c = c;
    l->tokens = (double)l->rate;
    l->refilled_us = util_mono_us();
    l->next = a->lives;
    if (a->lives)
        a->lives->prev = l;
    a->lives = l;
    c->live = l;
    tap_listen(a->tap, 1);
    allow(a);
    if (!a->live_timer_on) {
        uv_timer_start(&a->live_timer, on_live_timer, 1000, 1000);
        a->live_timer_on = true;
    }
}

void admin_live_drop(aconn *c)
{
    live *l = c->live;
    if (!l)
        return;
    admin *a = c->a;
    if (l->prev)
        l->prev->next = l->next;
    else
        a->lives = l->next;
    if (l->next)
        l->next->prev = l->prev;
    c->live = NULL;
    reqfilter_free(&l->f);
    free(l);
    tap_listen(a->tap, -1);
    if (!a->lives && a->live_timer_on) {
        uv_timer_stop(&a->live_timer);
        a->live_timer_on = false;
    }
}

void admin_live_stop(admin *a)
{
    while (a->lives) {
        aconn *c = a->lives->c;
        admin_live_drop(c);
        admin_close(c);
    }
    if (a->tap)
        tap_on_ready(a->tap, NULL, NULL);
}

void admin_live_init(admin *a)
{
    if (a->tap)
        tap_on_ready(a->tap, on_tap_ready, a);
}
