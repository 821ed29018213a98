/* reqfilter: see reqfilter.h. Moved here from the CLI so that the admin
 * API selects requests with the same code. */
#include "store/reqfilter.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/glob.h"
#include "base/rfc3339.h"
#include "base/util.h"
#include "base/uuid7.h"
#include "capture/config.h"
#include "http/httpmsg.h"

const char *const reqfilter_names[] = {"method", "path",   "status", "since",
                                       "until",  "origin", "node",   "replication",
                                       "limit",  "id",     NULL};

/* The single-valued filters: a bit each in reqfilter.seen (reqfilter_names
 * up to "id"). */
enum { SINGLE = 9 };

/* What the replication filter takes: the one outcome worth a filter of its
 * own (a write applied here "same" as at its origin is the normal case). */
#define DIVERGED "diverged"

/* Parses a since/until value into µs since the epoch: an age ("10m",
 * meaning now minus that), a date (local midnight) or an RFC 3339 time
 * (local when it has no zone). A day the month does not have (02-30) is
 * an error, not the next month's. 0 or -1. */
static int parse_time(const char *s, int64_t now_us, int64_t *out)
{
    uint64_t ms;
    if (util_parse_duration_ms(s, false, &ms) == 0) {
        *out = now_us - (int64_t)ms * 1000;
        return 0;
    }
    rfc3339_time t;
    if (rfc3339_parse(s, &t) != 0)
        return -1;
    if (t.has_zone) {
        *out = rfc3339_utc_us(&t);
        return 0;
    }
    struct tm tm = {.tm_year = t.year - 1900,
                    .tm_mon = t.month - 1,
                    .tm_mday = t.day,
                    .tm_hour = t.hour,
                    .tm_min = t.min,
                    .tm_sec = t.sec,
                    .tm_isdst = -1};
    time_t lt = mktime(&tm);
    if (lt == (time_t)-1)
        return -1;
    *out = (int64_t)lt * 1000000 + t.frac_us;
    return 0;
}

#define STATUS_MIN 100 /* the status codes HTTP defines (RFC 9110 15) */
#define STATUS_MAX 599

/* "5xx", "404" or "200-299", within STATUS_MIN..STATUS_MAX. 0 or -1. */
static int parse_status(const char *s, int *lo, int *hi)
{
    size_t n = strlen(s);
    int a, b;
    if (n == 3 && (s[1] == 'x' || s[1] == 'X') && (s[2] == 'x' || s[2] == 'X') &&
        (a = util_digits(s, 1)) >= STATUS_MIN / 100 && a <= STATUS_MAX / 100) {
        *lo = a * 100;
        *hi = a * 100 + 99;
        return 0;
    }
    if (n == 3 && (a = util_digits(s, 3)) >= STATUS_MIN && a <= STATUS_MAX) {
        *lo = *hi = a;
        return 0;
    }
    if (n == 7 && s[3] == '-' && (a = util_digits(s, 3)) >= STATUS_MIN &&
        (b = util_digits(s + 4, 3)) >= a && b <= STATUS_MAX) {
        *lo = a;
        *hi = b;
        return 0;
    }
    return -1;
}

/* The origins a record can have (record.h). */
static const char *const origins[] = {"local", "replicated", "imported", NULL};

static int bad(char *err, size_t errlen, const char *label, const char *v, const char *why)
{
    util_seterr(err, errlen, "bad value for %s: '%s' (%s)", label, v, why);
    return -1;
}

/* Why a text filter's value is one no record can have, or NULL. */
static const char *text_refusal(const char *name, const char *v, char *e, size_t elen)
{
    if (strcmp(name, "method") == 0)
        return httpmsg_is_token(v, strlen(v)) ? NULL : "expected a method such as GET";
    if (strcmp(name, "path") == 0)
        return v[0] == '/' || v[0] == '*' ? NULL : "expected a path glob starting with / or *";
    if (strcmp(name, "origin") == 0) {
        size_t k = 0;
        while (origins[k] && strcmp(origins[k], v) != 0)
            k++;
        return origins[k] ? NULL : "expected local, replicated or imported";
    }
    /* node: what the node setting takes, nothing else is stored. */
    assert(strcmp(name, "node") == 0);
    const char *why = NULL;
    config *c = config_new();
    if (config_set(c, "node", v, e, elen) != 0) {
        why = strstr(e, "(expected ");
        if (why) {
            why++;
            e[strlen(e) - 1] = '\0'; /* the closing parenthesis */
        } else {
            why = "expected a node name";
        }
    }
    config_unref(c);
    return why;
}

static int64_t filter_now(reqfilter *f)
{
    if (!f->now_us)
        f->now_us = util_now_us();
    return f->now_us;
}

static int set_time(reqfilter *f, const char *label, const char *v, int64_t *out, char **text,
                    char *err, size_t errlen)
{
    if (parse_time(v, filter_now(f), out) != 0)
        return bad(err, errlen, label, v,
                   "expected 2026-11-27T05:00:00Z, 2026-11-27 or an age like 10m");
    free(*text);
    *text = xstrdup(v);
    return 1;
}

static int set_id(reqfilter *f, const char *label, const char *v, char *err, size_t errlen)
{
    if (strlen(v) < STORE_ID_MIN || strlen(v) > UUID7_STR_LEN) {
        char why[120];
        snprintf(why, sizeof why,
                 "expected an id, or a start or end of one of at least %d characters",
                 STORE_ID_MIN);
        return bad(err, errlen, label, v, why);
    }
    f->ids = xrealloc(f->ids, (f->nids + 1) * sizeof *f->ids);
    f->ids[f->nids++] = xstrdup(v);
    return 1;
}

int reqfilter_set(reqfilter *f, const char *name, const char *label, const char *value, char *err,
                  size_t errlen)
{
    size_t k = 0;
    while (reqfilter_names[k] && strcmp(reqfilter_names[k], name) != 0)
        k++;
    if (!reqfilter_names[k])
        return 0;
    if (k < SINGLE) {
        if (f->seen & (1u << k)) {
            util_seterr(err, errlen, "%s given twice (it takes one value)", label);
            return -1;
        }
        f->seen |= 1u << k;
    }
    store_query *q = &f->q;
    const char *const text_names[] = {"method", "path", "origin", "node"};
    const char **text_fields[] = {&q->method, &q->path_glob, &q->origin, &q->node};
    for (size_t t = 0; t < 4; t++) {
        if (strcmp(name, text_names[t]) != 0)
            continue;
        char e[400];
        const char *why = text_refusal(name, value, e, sizeof e);
        if (why)
            return bad(err, errlen, label, value, why);
        free(f->owned[t]);
        f->owned[t] = xstrdup(value);
        *text_fields[t] = f->owned[t];
        return 1;
    }
    if (strcmp(name, "status") == 0) {
        if (parse_status(value, &q->status_min, &q->status_max) < 0) {
            char why[120];
            snprintf(why, sizeof why,
                     "expected a class like 5xx, a code like 404 or a range like 200-299, "
                     "within %d-%d",
                     STATUS_MIN, STATUS_MAX);
            return bad(err, errlen, label, value, why);
        }
        return 1;
    }
    if (strcmp(name, "since") == 0)
        return set_time(f, label, value, &q->since_us, &f->since_text, err, errlen);
    if (strcmp(name, "until") == 0)
        return set_time(f, label, value, &q->until_us, &f->until_text, err, errlen);
    if (strcmp(name, "replication") == 0) {
        if (strcmp(value, DIVERGED) != 0)
            return bad(err, errlen, label, value,
                       "expected diverged: the replicated writes whose answer here differed "
                       "from the origin's");
        q->diverged = true;
        return 1;
    }
    if (strcmp(name, "limit") == 0) {
        char *end;
        errno = 0;
        long long n = strtoll(value, &end, 10);
        if (errno || end == value || *end || n < 0)
            return bad(err, errlen, label, value, "expected a number, 0 = all");
        q->limit = n;
        return 1;
    }
    assert(strcmp(name, "id") == 0);
    return set_id(f, label, value, err, errlen);
}

int reqfilter_check(const reqfilter *f, const char *since_label, const char *until_label, char *err,
                    size_t errlen)
{
    if (f->since_text && f->until_text && f->q.since_us >= f->q.until_us) {
        util_seterr(err, errlen, "%s %s is not before %s %s: no request can match", since_label,
                    f->since_text, until_label, f->until_text);
        return -1;
    }
    return 0;
}

static bool str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

bool reqfilter_match(const reqfilter *f, const record *r)
{
    const store_query *q = &f->q;
    if (q->method && !(r->method && strcasecmp(q->method, r->method) == 0))
        return false;
    if (q->path_glob && !(r->path && glob_match(q->path_glob, r->path, strlen(r->path))))
        return false;
    if (q->status_min && r->status < q->status_min)
        return false;
    if (q->status_max && r->status > q->status_max)
        return false;
    if (q->since_us && r->started_at_us < q->since_us)
        return false;
    if (q->until_us && r->started_at_us >= q->until_us)
        return false;
    if (q->origin && !str_eq(q->origin, r->origin))
        return false;
    if (q->node && !str_eq(q->node, r->node))
        return false;
    /* A replicated write's record holds its ledger outcome (store.h). */
    if (q->diverged && !(str_eq(r->origin, "replicated") && r->replication &&
                         strncmp(r->replication, DIVERGED, strlen(DIVERGED)) == 0))
        return false;
    if (!f->nids)
        return true;
    size_t idl = strlen(r->id);
    for (size_t i = 0; i < f->nids; i++) {
        size_t n = strlen(f->ids[i]);
        if (n <= idl && (strncasecmp(r->id, f->ids[i], n) == 0 ||
                         strncasecmp(r->id + idl - n, f->ids[i], n) == 0))
            return true;
    }
    return false;
}

/* Stable order by recorded time: ties keep their position. */
typedef struct ranked {
    record *r;
    size_t pos;
} ranked;

static int ranked_cmp(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->r->started_at_us != y->r->started_at_us)
        return x->r->started_at_us < y->r->started_at_us ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

void reqfilter_apply(const reqfilter *f, record **v, size_t *n)
{
    ranked *k = xmalloc((*n ? *n : 1) * sizeof *k);
    size_t kept = 0;
    for (size_t i = 0; i < *n; i++) {
        if (reqfilter_match(f, v[i])) {
            k[kept].r = v[i];
            k[kept].pos = i;
            kept++;
        } else {
            record_free(v[i]);
        }
    }
    qsort(k, kept, sizeof *k, ranked_cmp);
    size_t skip = f->q.limit > 0 && (uint64_t)f->q.limit < kept ? kept - (size_t)f->q.limit : 0;
    for (size_t i = 0; i < skip; i++)
        record_free(k[i].r);
    for (size_t i = skip; i < kept; i++)
        v[i - skip] = k[i].r;
    *n = kept - skip;
    free(k);
}

void reqfilter_free(reqfilter *f)
{
    for (size_t i = 0; i < f->nids; i++)
        free(f->ids[i]);
    free(f->ids);
    for (size_t i = 0; i < sizeof f->owned / sizeof f->owned[0]; i++)
        free(f->owned[i]);
    free(f->since_text);
    free(f->until_text);
    memset(f, 0, sizeof *f);
}

/* The records a query must hold before it can hand them over oldest first. */
typedef struct collected {
    record **v;
    size_t n, cap;
} collected;

static int collect(const record *r, void *ud)
{
    collected *c = ud;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->v = xrealloc(c->v, c->cap * sizeof *c->v);
    }
    c->v[c->n++] = record_copy(r);
    return 0;
}

int reqfilter_each(store *s, const reqfilter *f, int (*fn)(const record *r, void *ud), void *ud,
                   char *err, size_t errlen)
{
    if (!f->nids && f->q.limit <= 0) {
        /* Everything, oldest first: streamed, whatever the store's size. */
        store_query q = f->q;
        q.limit = 0;
        q.newest_first = false;
        return store_query_each(s, &q, fn, ud, err, errlen) != 0 ? STORE_FAILED : 0;
    }
    collected c = {0};
    int rc = 0;
    if (f->nids) {
        for (size_t i = 0; i < f->nids && rc == 0; i++) {
            record *r = NULL;
            int found = store_get(s, f->ids[i], &r, err, errlen);
            if (found < 0) {
                rc = found;
            } else if (found == 0) {
                util_seterr(err, errlen, "no request with id %s", f->ids[i]);
                rc = -1;
            } else {
                /* The same request named twice (an id and its prefix) is
                 * selected once. */
                bool dup = false;
                for (size_t k = 0; k < c.n && !dup; k++)
                    dup = strcmp(c.v[k]->id, r->id) == 0;
                if (dup) {
                    record_free(r);
                    continue;
                }
                if (c.n == c.cap) {
                    c.cap = c.cap ? c.cap * 2 : 8;
                    c.v = xrealloc(c.v, c.cap * sizeof *c.v);
                }
                c.v[c.n++] = r;
            }
        }
    } else {
        /* The newest N: read newest first, hand over reversed. */
        store_query q = f->q;
        q.newest_first = true;
        if (store_query_each(s, &q, collect, &c, err, errlen) != 0)
            rc = STORE_FAILED;
    }
    if (rc == 0) {
        reqfilter_apply(f, c.v, &c.n);
        for (size_t i = 0; i < c.n; i++)
            if (fn(c.v[i], ud))
                break;
    }
    for (size_t i = 0; i < c.n; i++)
        record_free(c.v[i]);
    free(c.v);
    return rc;
}
