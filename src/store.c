/* store: URL dispatch and the generic front over the backends.
 *
 * Everything here is a thin forward through the backend vtable (see
 * store_sqlite.h); the only logic is picking the backend from the URL. "off"
 * is not a URL: callers that honour store = off must not call store_open, and
 * store_open("off") fails with a message saying so. */
#include "store.h"

#include <stdio.h>
#include <string.h>

#include "store_sqlite.h"

static const store_backend *const backends[] = {
    &store_sqlite_backend,
};

store *store_open(const store_options *o, char *err, size_t errlen)
{
    const char *url = o->url;
    if (!url || !*url) {
        snprintf(err, errlen, "no store URL given (expected sqlite:PATH)");
        return NULL;
    }
    if (strcmp(url, "off") == 0) {
        snprintf(err, errlen, "the store is off (store = off)");
        return NULL;
    }
    const char *colon = strchr(url, ':');
    if (colon && colon[1]) {
        size_t slen = (size_t)(colon - url);
        for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
            const store_backend *be = backends[i];
            if (strlen(be->scheme) == slen && strncmp(url, be->scheme, slen) == 0)
                return be->open(colon + 1, o, err, errlen);
        }
    }
    snprintf(err, errlen, "unsupported store URL '%s' (expected sqlite:PATH)", url);
    return NULL;
}

int store_start(store *s, char *err, size_t errlen)
{
    return s->be->start(s, err, errlen);
}

int store_submit(store *s, record *r)
{
    return s->be->submit_cb(s, r, NULL, NULL);
}

int store_submit_cb(store *s, record *r, store_done_fn done, void *ud)
{
    return s->be->submit_cb(s, r, done, ud);
}

void store_get_stats(store *s, store_stats *out)
{
    s->be->get_stats(s, out);
}

void store_close(store *s)
{
    if (s)
        s->be->close(s);
}

int store_query_each(store *s, const store_query *q, int (*fn)(const record *r, void *ud), void *ud,
                     char *err, size_t errlen)
{
    return s->be->query_each(s, q, fn, ud, err, errlen);
}

int store_get(store *s, const char *id, record **out, char *err, size_t errlen)
{
    return s->be->get(s, id, out, err, errlen);
}

int store_outbox_fetch(store *s, int64_t after_seq, size_t max, store_outbox_row *rows, size_t *n,
                       char *err, size_t errlen)
{
    return s->be->outbox_fetch(s, after_seq, max, rows, n, err, errlen);
}

void store_outbox_rows_free(store_outbox_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        repl_msg_free(rows[i].msg);
        rows[i].msg = NULL;
    }
}

int store_outbox_wait(store *s, int64_t after_seq, int timeout_ms)
{
    return s->be->outbox_wait(s, after_seq, timeout_ms);
}

void store_outbox_confirmed(store *s, int64_t upto, const char *last_id)
{
    s->be->outbox_confirmed(s, upto, last_id);
}

int store_ledger_has(store *s, const char *message_id, char *err, size_t errlen)
{
    return s->be->ledger_has(s, message_id, err, errlen);
}

void store_counter_add(store *s, const char *name, int64_t delta)
{
    s->be->counter(s, name, delta, false);
}

void store_counter_set(store *s, const char *name, int64_t value)
{
    s->be->counter(s, name, value, true);
}

int store_repl_stats_get(store *s, store_repl_stats *out, char *err, size_t errlen)
{
    return s->be->repl_stats_get(s, out, err, errlen);
}
