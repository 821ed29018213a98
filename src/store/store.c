/* store: URL dispatch and the generic front over the backends.
 *
 * Everything here is a thin forward through the backend vtable (see
 * store/backend.h), except picking the backend from the URL and resolving the
 * ids people type (store_get's prefixes and suffixes, store_id_abbrev). "off"
 * is not a URL: callers that honour store = off must not call store_open, and
 * store_open("off") fails with a message saying so. */
#include "store/store.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/util.h"
#include "capture/config.h"
#include "store/backend.h"

static const store_backend *const backends[] = {
    &store_sqlite_backend,
    &store_pg_backend,
    &store_postgres_backend,
};

void store_options_from_config(store_options *o, const config *cfg)
{
    memset(o, 0, sizeof *o);
    o->url = cfg->store;
    o->queue_max = cfg->store_queue;
    o->queue_max_bytes = cfg->store_queue_bytes;
    o->batch_max = cfg->store_batch;
    o->drop_when_full = cfg->store_on_full == STORE_FULL_DROP;
    o->max_rows = cfg->max_rows;
    o->max_age_ms = cfg->max_age_ms;
    o->busy_timeout_ms = cfg->busy_timeout_ms;
    o->commit_delay_us = cfg->store_commit_delay_ms * 1000;
    o->checkpoint_pages = cfg->store_checkpoint_pages;
    o->claim_lease_ms = cfg->store_claim_lease_ms;
    o->ledger_max_age_ms = cfg->replicate_ledger_max_age_ms;
    o->init_foreign = cfg->store_init;
}

store *store_open(const store_options *o, char *err, size_t errlen)
{
    const char *url = o->url;
    if (!url || !*url) {
        snprintf(err, errlen, "no store URL given (" STORE_URL_FORMS ")");
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
    snprintf(err, errlen, "unsupported store URL '%s' (" STORE_URL_FORMS ")", url);
    return NULL;
}

int store_check_replication(store *s, char *err, size_t errlen)
{
    if (!s->be->no_replication)
        return 0;
    snprintf(err, errlen, "%s", s->be->no_replication);
    return -1;
}

int store_start(store *s, char *err, size_t errlen)
{
    return s->be->start(s, err, errlen);
}

int store_submit_unit(store *s, const store_unit *u, store_done_fn done, void *ud)
{
    assert(u->rec); /* every unit has its record (store_unit) */
    return s->be->submit(s, u, done, ud);
}

int store_submit(store *s, record *r)
{
    store_unit u = {.rec = r, .rec_row = true};
    return store_submit_unit(s, &u, NULL, NULL);
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

/* ---- ids as people type them ----
 *
 * Generic over the backends: they only list their ids (ids_each) and load a
 * record by its whole id (get). A key's prefix and suffix matches need one
 * pass over the ids either way (a suffix has no index), so store_get makes
 * that pass, and store_id_abbrev sorts the ids' ends once to find, for each
 * id shown, the longest end it shares with another. */

#define AMBIGUOUS_LISTED 4

/* The ids a key names (see store.h): the first AMBIGUOUS_LISTED of them,
 * in id order, and how many in all. */
typedef struct id_match {
    const char *key;
    size_t klen;
    char found[AMBIGUOUS_LISTED][UUID7_STR_LEN + 1];
    int64_t count;
} id_match;

static int match_id(const char *id, size_t len, void *ud)
{
    id_match *m = ud;
    if (len < m->klen || len > UUID7_STR_LEN ||
        (memcmp(id, m->key, m->klen) != 0 && memcmp(id + len - m->klen, m->key, m->klen) != 0))
        return 0;
    if (m->count < AMBIGUOUS_LISTED) {
        memcpy(m->found[m->count], id, len);
        m->found[m->count][len] = '\0';
    }
    m->count++;
    return 0;
}

/* The error for a key that names several ids. Always -1. */
static int ambiguous(const char *key, const id_match *m, char *err, size_t errlen)
{
    buf b = BUF_INIT;
    buf_appendf(&b, "id %s is ambiguous: it matches %lld requests (", key, (long long)m->count);
    for (int64_t i = 0; i < m->count && i < AMBIGUOUS_LISTED; i++)
        buf_appendf(&b, "%s%s", i ? ", " : "", m->found[i]);
    if (m->count > AMBIGUOUS_LISTED)
        buf_appendf(&b, " and %lld more", (long long)(m->count - AMBIGUOUS_LISTED));
    buf_append_str(&b, "); give more characters");
    snprintf(err, errlen, "%s", b.data);
    buf_free(&b);
    return -1;
}

/* The backend's get, its failure told apart from a key's (store.h). */
static int get_whole(store *s, const char *id, record **out, char *err, size_t errlen)
{
    int rc = s->be->get(s, id, out, err, errlen);
    return rc < 0 ? STORE_FAILED : rc;
}

int store_get(store *s, const char *id, record **out, char *err, size_t errlen)
{
    *out = NULL;
    size_t n = strlen(id);
    if (n > UUID7_STR_LEN)
        return 0;
    /* Ids are stored in lower case (uuid7.h); accept them pasted in upper. */
    char key[UUID7_STR_LEN + 1];
    for (size_t i = 0; i <= n; i++)
        key[i] = (char)tolower((unsigned char)id[i]);
    if (n == UUID7_STR_LEN)
        return get_whole(s, key, out, err, errlen);
    if (n < STORE_ID_MIN) {
        snprintf(err, errlen, "id %s is too short (give at least %d characters)", id, STORE_ID_MIN);
        return -1;
    }
    id_match m = {.key = key, .klen = n};
    if (s->be->ids_each(s, match_id, &m, err, errlen) < 0)
        return STORE_FAILED;
    if (m.count > 1)
        return ambiguous(id, &m, err, errlen);
    /* 0 when the one match went (retention) since the pass. */
    if (!m.count)
        return 0;
    return get_whole(s, m.found[0], out, err, errlen);
}

/* Characters of each id's start and end store_id_abbrev keeps: a UUID's
 * random last group. Ids whose ends agree on all of them are shown whole. */
#define END_KEEP 12

/* The most ids store_id_abbrev reads to find the shortest ends (about 30 ms
 * of ids and sorting on the developers' machine). A larger store gets the
 * whole random group, END_KEEP characters, unchecked: reading ten million
 * ids took 3.3 s and sorting their ends 30 s more for a listing of 50 (issue
 * 14: the newest 50 must answer in 200 ms). 48 random bits make another
 * stored id ending alike practically impossible (below one in 28 million
 * for one shown id among ten million), and store_get still refuses a key
 * two ids share, so an unchecked end can never show the wrong request. */
#define ABBREV_READ_MAX 100000

/* The ends and starts of every stored id, END_KEEP bytes each (an end
 * reversed, last character first, so that common ends sort together;
 * NUL-padded). Both arrays owned. */
typedef struct id_ends {
    char *ends, *starts;
    size_t n, cap;
    bool too_many; /* more than ABBREV_READ_MAX ids: not all read */
} id_ends;

static int collect_ends(const char *id, size_t len, void *ud)
{
    id_ends *e = ud;
    if (e->n == ABBREV_READ_MAX) {
        e->too_many = true; /* store_id_abbrev shows END_KEEP characters */
        return 1;
    }
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 1024;
        e->ends = xrealloc(e->ends, e->cap * END_KEEP);
        e->starts = xrealloc(e->starts, e->cap * END_KEEP);
    }
    char *end = e->ends + e->n * END_KEEP, *start = e->starts + e->n * END_KEEP;
    for (size_t i = 0; i < END_KEEP; i++) {
        end[i] = i < len ? id[len - 1 - i] : '\0';
        start[i] = i < len ? id[i] : '\0';
    }
    e->n++;
    return 0;
}

static int cmp_keep(const void *a, const void *b)
{
    return memcmp(a, b, END_KEEP);
}

/* The first of the sorted v[0..n) (END_KEEP bytes each) whose first len
 * bytes are not below p's. */
static size_t lower_bound(const char *v, size_t n, const char *p, size_t len)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (memcmp(v + mid * END_KEEP, p, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* How many of the sorted v[0..n) begin with p[0..len). */
static size_t count_beginning(const char *v, size_t n, const char *p, size_t len)
{
    size_t i = lower_bound(v, n, p, len), c = 0;
    while (i + c < n && memcmp(v + (i + c) * END_KEEP, p, len) == 0)
        c++;
    return c;
}

static size_t common_start(const char *a, const char *b)
{
    size_t i = 0;
    while (i < END_KEEP && a[i] == b[i])
        i++;
    return i;
}

/* The shortest end of id, at least STORE_ID_SHORT long, that no other id
 * of e ends or begins with; UUID7_STR_LEN when none of END_KEEP characters
 * or fewer is. */
static size_t end_needed(const id_ends *e, const char *id)
{
    size_t len = strlen(id);
    char mine[END_KEEP];
    for (size_t i = 0; i < END_KEEP; i++)
        mine[i] = i < len ? id[len - 1 - i] : '\0';
    /* Another id that ends as this one does for k characters sorts next to
     * it (whether or not the id itself is still stored). */
    size_t at = lower_bound(e->ends, e->n, mine, END_KEEP);
    size_t self = count_beginning(e->ends, e->n, mine, END_KEEP);
    if (self > 1)
        return UUID7_STR_LEN;
    size_t shared = 0;
    if (at > 0)
        shared = common_start(e->ends + (at - 1) * END_KEEP, mine);
    size_t next = at + self;
    if (next < e->n) {
        size_t c = common_start(e->ends + next * END_KEEP, mine);
        shared = c > shared ? c : shared;
    }
    for (size_t l = shared + 1 > STORE_ID_SHORT ? shared + 1 : STORE_ID_SHORT;
         l <= END_KEEP && l <= len; l++) {
        const char *end = id + len - l;
        size_t starting = count_beginning(e->starts, e->n, end, l);
        if (starting > 0 && memcmp(id, end, l) == 0)
            starting--; /* its own start */
        if (starting == 0)
            return l;
    }
    return UUID7_STR_LEN;
}

int store_id_abbrev(store *s, const char *const *ids, size_t n, size_t *len, char *err,
                    size_t errlen)
{
    *len = STORE_ID_SHORT;
    if (n == 0)
        return 0;
    id_ends e = {0};
    int rc = s->be->ids_each(s, collect_ends, &e, err, errlen);
    if (rc == 0 && e.too_many) {
        *len = END_KEEP;
    } else if (rc == 0) {
        qsort(e.ends, e.n, END_KEEP, cmp_keep);
        qsort(e.starts, e.n, END_KEEP, cmp_keep);
        for (size_t i = 0; i < n && *len < UUID7_STR_LEN; i++) {
            size_t l = end_needed(&e, ids[i]);
            *len = l > *len ? l : *len;
        }
    }
    free(e.ends);
    free(e.starts);
    return rc;
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

void store_stuck_set(store *s, const store_stuck *row)
{
    s->be->stuck_set(s, row);
}

void store_stuck_clear(store *s, const char *message_id)
{
    s->be->stuck_clear(s, message_id);
}

int store_stuck_get(store *s, const char *message_id, store_stuck *out, char *err, size_t errlen)
{
    return s->be->stuck_get(s, message_id, out, err, errlen);
}

int store_stuck_list(store *s, size_t max, store_stuck **out, size_t *n, int64_t *total, char *err,
                     size_t errlen)
{
    return s->be->stuck_list(s, max, out, n, total, err, errlen);
}

void store_stuck_row_free(store_stuck *row)
{
    free(row->origin);
    free(row->method);
    free(row->target);
    free(row->last_answer);
    row->origin = row->method = row->target = row->last_answer = NULL;
}

void store_stuck_free(store_stuck *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        store_stuck_row_free(&v[i]);
    free(v);
}

int store_ledger_skip(store *s, const char *message_id, const char *origin, char *err,
                      size_t errlen)
{
    return s->be->ledger_skip(s, message_id, origin, err, errlen);
}

int store_repl_lag_get(store *s, int64_t since_us, size_t max_samples, store_repl_lag *out,
                       char *err, size_t errlen)
{
    return s->be->repl_lag_get(s, since_us, max_samples, out, err, errlen);
}

void store_repl_origins_free(store_repl_origin *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i].origin);
    free(v);
}

int store_repl_origins_get(store *s, int64_t since_us, size_t max_samples, size_t max_origins,
                           store_repl_origin **out, size_t *n, int64_t *total, int64_t *ledger_end,
                           char *err, size_t errlen)
{
    return s->be->repl_origins_get(s, since_us, max_samples, max_origins, out, n, total, ledger_end,
                                   err, errlen);
}

int64_t store_ledger_each(store *s, int64_t after, size_t max,
                          int (*fn)(const store_ledger_row *row, void *ud), void *ud, char *err,
                          size_t errlen)
{
    return s->be->ledger_each(s, after, max, fn, ud, err, errlen);
}

void store_receipts_free(store_receipt *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].node);
        free(v[i].outcome);
    }
    free(v);
}

void store_receipt_put(store *s, const store_receipt *r)
{
    s->be->receipt_put(s, r);
}

int store_receipts_get(store *s, const char *message_id, store_receipt **out, size_t *n, char *err,
                       size_t errlen)
{
    return s->be->receipts_get(s, message_id, out, n, err, errlen);
}

int store_ledger_get(store *s, const char *message_id, store_ledger_entry *out, char *err,
                     size_t errlen)
{
    return s->be->ledger_get(s, message_id, out, err, errlen);
}

void store_ledger_entry_free(store_ledger_entry *e)
{
    free(e->origin);
    free(e->outcome);
    memset(e, 0, sizeof *e);
}

int store_outbox_has(store *s, const char *message_id, char *err, size_t errlen)
{
    return s->be->outbox_has(s, message_id, err, errlen);
}
