/* repl_status: see repl_status.h. */
#include "replication/repl_status.h"

#include <string.h>

#include "base/util.h"
#include "base/uuid7.h"

int repl_status_read(store *s, int64_t window_us, repl_status *x, char *err, size_t errlen)
{
    memset(x, 0, sizeof *x);
    x->now_us = util_now_us();
    x->window_us = window_us;
    if (store_repl_stats_get(s, &x->st, err, errlen) != 0 ||
        store_repl_lag_get(s, x->now_us - window_us, REPL_STATUS_LAG_SAMPLES, &x->lag, err,
                           errlen) != 0)
        return -1;
    if (store_stuck_list(s, REPL_STATUS_STUCK_MAX, &x->stuck, &x->nstuck, &x->stuck_total, err,
                         errlen) != 0)
        return -1;
    return store_repl_origins_get(s, x->now_us - window_us, REPL_STATUS_LAG_SAMPLES,
                                  REPL_STATUS_ORIGINS_MAX, &x->origins, &x->norigins,
                                  &x->origins_total, NULL, err, errlen);
}

void repl_status_free(repl_status *x)
{
    store_stuck_free(x->stuck, x->nstuck);
    x->stuck = NULL;
    x->nstuck = 0;
    store_repl_origins_free(x->origins, x->norigins);
    x->origins = NULL;
    x->norigins = 0;
}

/* "p50_s", "p99_s" and "max_s" of l, null when it counts nothing. */
static void lag_members(buf *b, const store_repl_lag *l)
{
    if (l->n) {
        buf_json_add_seconds(b, "p50_s", l->p50_us);
        buf_json_add_seconds(b, "p99_s", l->p99_us);
        buf_json_add_seconds(b, "max_s", l->max_us);
    } else {
        buf_append_str(b, ",\"p50_s\":null,\"p99_s\":null,\"max_s\":null");
    }
}

/* ,"origins_total":N,"origins":[{"origin", "applied", "last_applied_us",
 * "lag": {"applies", "now_s" (the newest apply's), "p50_s", "p99_s",
 * "max_s" (over the window)}}, ...] */
static void origins_json(buf *b, const repl_status *x)
{
    buf_appendf(b, ",\"origins_total\":%lld,\"origins\":[", (long long)x->origins_total);
    for (size_t i = 0; i < x->norigins; i++) {
        const store_repl_origin *o = &x->origins[i];
        buf_append_str(b, i ? ",{\"origin\":" : "{\"origin\":");
        buf_append_json_str(b, o->origin, strlen(o->origin));
        buf_appendf(b, ",\"applied\":%lld", (long long)o->applied);
        buf_json_add_us(b, "last_applied_us", o->last_applied_us);
        buf_appendf(b, ",\"lag\":{\"applies\":%lld", (long long)o->lag.n);
        if (o->last_lag_us >= 0)
            buf_json_add_seconds(b, "now_s", o->last_lag_us);
        else
            buf_append_str(b, ",\"now_s\":null");
        lag_members(b, &o->lag);
        buf_append_str(b, "}}");
    }
    buf_append_char(b, ']');
}

static void apply_json(buf *b, const repl_status *x)
{
    const store_repl_stats *st = &x->st;
    int64_t now = x->now_us;
    buf_appendf(b, ",\"skipped\":%lld", (long long)st->skipped);
    buf_append_str(b, ",\"lag\":{");
    buf_appendf(b, "\"window_s\":%.3f,\"applies\":%lld", (double)x->window_us / 1e6,
                (long long)x->lag.n);
    lag_members(b, &x->lag);
    buf_append_char(b, '}');
    if (st->retry_max_age_ms >= 0)
        buf_json_add_seconds(b, "retry_max_age_s", st->retry_max_age_ms * 1000);
    else
        buf_append_str(b, ",\"retry_max_age_s\":null");
    if (st->retry_max_attempts >= 0)
        buf_appendf(b, ",\"retry_max_attempts\":%lld", (long long)st->retry_max_attempts);
    else
        buf_append_str(b, ",\"retry_max_attempts\":null");
    buf_appendf(b, ",\"stuck_total\":%lld,\"stuck\":[", (long long)x->stuck_total);
    for (size_t i = 0; i < x->nstuck; i++) {
        const store_stuck *k = &x->stuck[i];
        buf_append_str(b, i ? ",{\"id\":" : "{\"id\":");
        buf_append_json_str(b, k->message_id, strlen(k->message_id));
        buf_json_add_str(b, "origin", k->origin);
        buf_json_add_str(b, "method", k->method);
        buf_json_add_str(b, "target", k->target);
        int64_t ms = uuid7_time_ms(k->message_id);
        if (ms >= 0)
            buf_json_add_seconds(b, "age_s", now - ms * 1000);
        else
            buf_append_str(b, ",\"age_s\":null");
        buf_appendf(b, ",\"attempts\":%lld", (long long)k->attempts);
        buf_json_add_us(b, "first_failed_us", k->first_failed_us);
        buf_json_add_us(b, "last_failed_us", k->last_failed_us);
        buf_json_add_str(b, "last_answer", k->last_answer);
        buf_append_char(b, '}');
    }
    buf_append_char(b, ']');
    origins_json(b, x);
}

void repl_status_json(const repl_status *x, buf *b)
{
    const store_repl_stats *st = &x->st;
    int64_t now = x->now_us;
    buf_appendf(b, "\"outbox_depth\":%lld", (long long)st->outbox_depth);
    buf_json_add_us(b, "oldest_unpublished_us", st->oldest_unpublished_us);
    buf_json_add_age(b, "oldest_unpublished_age_s", st->oldest_unpublished_us, now);
    buf_json_add_us(b, "last_confirmed_us", st->last_confirmed_us);
    buf_append_str(b, ",\"last_confirmed_id\":");
    if (st->last_confirmed_id[0])
        buf_append_json_str(b, st->last_confirmed_id, strlen(st->last_confirmed_id));
    else
        buf_append_str(b, "null");
    buf_appendf(b,
                ",\"published\":%lld,\"not_replicated\":%lld,\"applied\":%lld,"
                "\"deduplicated\":%lld,\"dead_lettered\":%lld,\"diverged\":%lld",
                (long long)st->published, (long long)st->not_replicated, (long long)st->applied,
                (long long)st->deduplicated, (long long)st->dead_lettered, (long long)st->diverged);
    buf_json_add_us(b, "last_applied_us", st->last_applied_us);
    buf_json_add_age(b, "last_applied_age_s", st->last_applied_us, now);
    buf_json_add_us(b, "last_applied_msg_us", st->last_applied_msg_us);
    apply_json(b, x);
}
