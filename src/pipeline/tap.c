/* tap: see tap.h. */
#include "pipeline/tap.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "base/util.h"

struct tap {
    uv_async_t async;
    void (*ready)(void *ud);
    void *ud;
    atomic_int listeners;
    /* Records that may still be copied this second (tap_allow): over it a
     * publish is only counted, so a console's sampling costs the workers
     * nothing for what it would skip anyway. */
    _Atomic int64_t budget;
    _Atomic uint64_t over_budget;
    pthread_mutex_t mu;
    record **q; /* the queue, under mu */
    size_t n, cap;
    uint64_t dropped; /* under mu */
};

static void on_async(uv_async_t *a)
{
    tap *t = a->data;
    if (t->ready)
        t->ready(t->ud);
}

tap *tap_new(uv_loop_t *loop)
{
    tap *t = xcalloc(1, sizeof *t);
    atomic_init(&t->listeners, 0);
    pthread_mutex_init(&t->mu, NULL);
    uv_async_init(loop, &t->async, on_async);
    t->async.data = t;
    return t;
}

static void on_closed(uv_handle_t *h)
{
    tap *t = h->data;
    for (size_t i = 0; i < t->n; i++)
        record_free(t->q[i]);
    free(t->q);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

void tap_on_ready(tap *t, void (*ready)(void *ud), void *ud)
{
    t->ready = ready;
    t->ud = ud;
}

void tap_free(tap *t)
{
    if (t)
        uv_close((uv_handle_t *)&t->async, on_closed);
}

void tap_listen(tap *t, int delta)
{
    int now = atomic_fetch_add(&t->listeners, delta) + delta;
    assert(now >= 0);
    (void)now;
}

bool tap_wanted(const tap *t)
{
    return t && atomic_load_explicit(&t->listeners, memory_order_relaxed) > 0;
}

void tap_allow(tap *t, int64_t n)
{
    atomic_store(&t->budget, n);
}

void tap_publish(tap *t, const record *r)
{
    if (atomic_fetch_sub_explicit(&t->budget, 1, memory_order_relaxed) <= 0) {
        atomic_fetch_add_explicit(&t->over_budget, 1, memory_order_relaxed);
        return;
    }
    record *c = record_copy_light(r);
    pthread_mutex_lock(&t->mu);
    if (t->n == TAP_QUEUE_MAX) {
        t->dropped++;
        pthread_mutex_unlock(&t->mu);
        record_free(c);
        return;
    }
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->q = xrealloc(t->q, t->cap * sizeof *t->q);
    }
    t->q[t->n++] = c;
    pthread_mutex_unlock(&t->mu);
    uv_async_send(&t->async); /* coalesced by libuv: one wake for many */
}

uint64_t tap_take(tap *t, record ***out, size_t *n)
{
    pthread_mutex_lock(&t->mu);
    *out = t->q;
    *n = t->n;
    uint64_t dropped = t->dropped;
    t->q = NULL;
    t->n = t->cap = 0;
    t->dropped = 0;
    pthread_mutex_unlock(&t->mu);
    return dropped + atomic_exchange(&t->over_budget, 0);
}
