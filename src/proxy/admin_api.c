/* admin_api: the captured requests as JSON for the console (issue 13):
 * a page of the history with the filters `restspy requests` takes (one
 * implementation: reqfilter), and one request whole. See admin_internal.h.
 *
 * Queries run on the admin's loop (the main thread), never on a worker:
 * the store answers them on its own read connection, so the proxy keeps
 * serving while a page is read. The replay of one request, which waits for
 * its target, runs on the thread pool (admin_offload). */
#include "proxy/admin_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rfc3339.h"
#include "base/util.h"
#include "capture/record.h"
#include "formats/har.h"
#include "replay/replay.h"
#include "replay/report.h"

/* How long the replay of one request from the console may take (on the
 * thread pool: the admin's loop goes on meanwhile). */
#define REPLAY_TIMEOUT_MS 10000

/* A page holds at most this many requests (limit=), 50 when not said. */
#define PAGE_DEFAULT 50
#define PAGE_MAX 1000

typedef struct page {
    buf out;
    int64_t n, want;
    int64_t last_us; /* started_at of the last request written */
    bool more;
} page;

static int page_add(const record *r, void *ud)
{
    page *p = ud;
    if (p->n == p->want) {
        p->more = true; /* the one past the page, read only to know */
        return 1;
    }
    if (p->n++)
        buf_append_char(&p->out, ',');
    record_to_json(r, 0, &p->out);
    p->last_us = r->started_at_us;
    return 0;
}

bool admin_query_next(const char **q, buf *name, buf *value)
{
    while (*q && **q) {
        const char *p = *q;
        size_t n = strcspn(p, "&");
        const char *eq = memchr(p, '=', n);
        size_t nl = eq ? (size_t)(eq - p) : n;
        *q = p + n + (p[n] == '&');
        if (nl == 0)
            continue; /* "&&" or "=x": nothing named */
        buf_reset(name);
        buf_reset(value);
        buf_append_pct_decoded(name, p, nl, 1);
        if (eq)
            buf_append_pct_decoded(value, eq + 1, n - nl - 1, 1);
        buf_append_char(name, '\0');
        buf_append_char(value, '\0');
        return true;
    }
    return false;
}

char *admin_query_value(const char *q, const char *name)
{
    buf n = BUF_INIT, v = BUF_INIT;
    char *out = NULL;
    while (!out && admin_query_next(&q, &n, &v))
        if (strcmp(n.data, name) == 0)
            out = xstrdup(v.data);
    buf_free(&n);
    buf_free(&v);
    return out;
}

/* A whole number parameter within lo..hi. 0, or -1 with err. */
static int number(const char *name, const char *v, int64_t lo, int64_t hi, int64_t *out, char *err,
                  size_t errlen)
{
    char *end;
    long long n = strtoll(v, &end, 10);
    if (end == v || *end || n < lo || n > hi) {
        util_seterr(err, errlen, "bad value for %s: '%s' (expected %lld to %lld)", name, v,
                    (long long)lo, (long long)hi);
        return -1;
    }
    *out = n;
    return 0;
}

int admin_parse_query(const char *q, reqfilter *f, const admin_number *nums, size_t nnums,
                      char *err, size_t errlen)
{
    int rc = 0;
    buf name = BUF_INIT, value = BUF_INIT;
    while (rc == 0 && admin_query_next(&q, &name, &value)) {
        size_t k = 0;
        while (k < nnums && strcmp(nums[k].name, name.data) != 0)
            k++;
        if (k < nnums) {
            rc = number(name.data, value.data, nums[k].lo, nums[k].hi, nums[k].out, err, errlen);
            continue;
        }
        int s = reqfilter_set(f, name.data, name.data, value.data, err, errlen);
        if (s == 0) {
            buf also = BUF_INIT;
            for (size_t i = 0; i < nnums; i++)
                buf_appendf(&also, ", %s", nums[i].name);
            util_seterr(err, errlen,
                        "unknown parameter '%s' (filters: method, path, status, since, until, "
                        "origin, node, id%s)",
                        name.data, also.len ? also.data : "");
            buf_free(&also);
            rc = -1;
        } else if (s < 0) {
            rc = -1;
        }
    }
    buf_free(&name);
    buf_free(&value);
    if (rc == 0)
        rc = reqfilter_check(f, "since", "until", err, errlen);
    return rc;
}

void admin_api_requests(aconn *c, const char *query)
{
    store *s = c->a->sh->pl.store;
    if (!s) {
        admin_reply_error(c, 404, "Not Found", "the store is off: no request is kept");
        return;
    }
    reqfilter f = {0};
    int64_t limit = PAGE_DEFAULT;
    char err[512];
    admin_number nums[] = {{"limit", 1, PAGE_MAX, &limit}};
    if (admin_parse_query(query, &f, nums, 1, err, sizeof err) < 0) {
        admin_reply_error(c, 400, "Bad Request", err);
        reqfilter_free(&f);
        return;
    }
    page p = {.want = limit};
    buf_append_str(&p.out, "{\"requests\":[");
    int rc;
    if (f.nids) {
        /* Named requests: all of them, oldest first, as the CLI gives them. */
        p.want = INT64_MAX;
        rc = reqfilter_each(s, &f, page_add, &p, err, sizeof err);
    } else {
        /* Newest first, one more than the page to know whether there are. */
        store_query q = f.q;
        q.newest_first = true;
        q.limit = limit + 1;
        rc = store_query_each(s, &q, page_add, &p, err, sizeof err) ? STORE_FAILED : 0;
    }
    if (rc == STORE_FAILED) {
        admin_reply_store_failed(c, err);
    } else if (rc != 0) {
        admin_reply_error(c, strstr(err, "no request with id") ? 404 : 400,
                          strstr(err, "no request with id") ? "Not Found" : "Bad Request", err);
    } else {
        /* The next page: the same filters with until= the last one's time
         * (requests started in the very same microsecond as the last one
         * of a page are on neither page: a trade for a cursor people can
         * read and type). */
        buf_appendf(&p.out, "],\"more\":%s,\"next_until\":", p.more ? "true" : "false");
        if (p.more) {
            char t[RFC3339_MAX];
            rfc3339_format(p.last_us, 6, t);
            buf_appendf(&p.out, "\"%s\"}", t);
        } else {
            buf_append_str(&p.out, "null}");
        }
        admin_reply(c, 200, "OK", p.out.data, p.out.len);
    }
    buf_free(&p.out);
    reqfilter_free(&f);
}

/* The base the curl lines call by default: this proxy's own listener
 * (a wildcard address as loopback). Owned by the caller. */
static char *own_base(const config *cfg)
{
    char host[256];
    int port;
    if (util_split_hostport(cfg->listen, host, sizeof host, &port) != 0)
        return xstrdup("http://localhost");
    bool any = strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
    bool v6 = !any && strchr(host, ':');
    buf b = BUF_INIT;
    buf_appendf(&b, "%s://%s%s%s:%d", cfg->tls_cert ? "https" : "http", v6 ? "[" : "",
                any ? "127.0.0.1" : host, v6 ? "]" : "", port);
    return buf_detach(&b);
}

/* Writes r as HAR or as a curl line (into memory, then the answer). */
static void send_as(aconn *c, const record *r, bool har, const char *query)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        admin_reply_error(c, 500, "Internal Server Error", "out of memory");
        return;
    }
    char *target = NULL, *base = NULL;
    char err[160];
    if (har) {
        har_writer *w = har_begin(f);
        har_add(w, r);
        har_end(w);
    } else {
        target = admin_query_value(query, "target");
        base = target ? curl_base(target, err, sizeof err) : own_base(c->a->sh->cfg);
        if (base) {
            curl_write(f, r, base);
        }
    }
    fclose(f);
    if (!har && !base) {
        buf m = BUF_INIT;
        buf_appendf(&m, "bad value for target: '%.200s' (%s)", target, err);
        admin_reply_error(c, 400, "Bad Request", m.data);
        buf_free(&m);
    } else if (har) {
        char disp[200];
        snprintf(disp, sizeof disp,
                 "Cache-Control: no-store\r\n"
                 "Content-Disposition: attachment; filename=\"restspy-%s.har\"\r\n",
                 r->id);
        admin_reply_with(c, 200, "OK", "application/json", disp, text, len);
    } else {
        admin_reply_as(c, 200, "OK", "text/plain; charset=utf-8", text, len);
    }
    free(text);
    free(target);
    free(base);
}

/* The replication record of r (docs/replication.md, "The life of one
 * write"): its replication column, whether its outbox row still waits for
 * the broker, the receipts its peers sent, and for a write applied here
 * from a peer, its ledger row. */
static int replication_json(store *s, const record *r, buf *out, char *err, size_t errlen)
{
    store_receipt *rv = NULL;
    size_t n = 0;
    store_ledger_entry led;
    bool queued = r->replication && strcmp(r->replication, "queued") == 0;
    int in_outbox = queued ? store_outbox_has(s, r->id, err, errlen) : 0;
    int has_led = in_outbox < 0 ? -1 : store_ledger_get(s, r->id, &led, err, errlen);
    if (has_led < 0 || store_receipts_get(s, r->id, &rv, &n, err, errlen) < 0) {
        if (has_led > 0)
            store_ledger_entry_free(&led);
        return -1;
    }
    buf_append_str(out, "{\"id\":");
    buf_append_json_str(out, r->id, strlen(r->id));
    buf_append_str(out, ",\"state\":");
    if (r->replication)
        buf_append_json_str(out, r->replication, strlen(r->replication));
    else
        buf_append_str(out, "null");
    buf_append_str(out, !queued     ? ",\"outbox\":null"
                        : in_outbox ? ",\"outbox\":\"waiting\""
                                    : ",\"outbox\":\"confirmed\"");
    buf_append_str(out, ",\"applied\":[");
    for (size_t i = 0; i < n; i++) {
        buf_append_str(out, i ? ",{\"node\":" : "{\"node\":");
        buf_append_json_str(out, rv[i].node, strlen(rv[i].node));
        buf_append_str(out, ",\"outcome\":");
        buf_append_json_str(out, rv[i].outcome, strlen(rv[i].outcome));
        if (rv[i].status > 0)
            buf_appendf(out, ",\"status\":%d", rv[i].status);
        else
            buf_append_str(out, ",\"status\":null");
        buf_appendf(out, ",\"at_us\":%lld}", (long long)rv[i].at_us);
    }
    buf_append_str(out, "],\"applied_here\":");
    if (has_led > 0) {
        buf_append_str(out, "{\"origin\":");
        if (led.origin)
            buf_append_json_str(out, led.origin, strlen(led.origin));
        else
            buf_append_str(out, "null");
        buf_append_str(out, ",\"message_id\":");
        buf_append_json_str(out, r->id, strlen(r->id));
        buf_appendf(out, ",\"at_us\":%lld,\"state\":\"%s\",\"outcome\":", (long long)led.at_us,
                    led.skipped ? "skipped" : "applied");
        if (led.outcome)
            buf_append_json_str(out, led.outcome, strlen(led.outcome));
        else
            buf_append_str(out, "null");
        buf_append_char(out, '}');
        store_ledger_entry_free(&led);
    } else {
        buf_append_str(out, "null");
    }
    buf_append_char(out, '}');
    store_receipts_free(rv, n);
    return 0;
}

static void send_replication(aconn *c, store *s, const record *r)
{
    buf out = BUF_INIT;
    char err[512] = "";
    if (replication_json(s, r, &out, err, sizeof err) < 0)
        admin_reply_store_failed(c, err);
    else
        admin_reply(c, 200, "OK", out.data, out.len);
    buf_free(&out);
}

/* The request named by rest[0..idl) (an id, or a start or end of one,
 * percent-encoded), or NULL after answering 404 or 400 (ambiguous). Owned
 * by the caller. */
static record *load_named(aconn *c, store *s, const char *rest, size_t idl)
{
    buf key = BUF_INIT;
    buf_append_pct_decoded(&key, rest, idl, 0);
    buf_append_char(&key, '\0');
    record *r = NULL;
    char err[512];
    int found = store_get(s, key.data, &r, err, sizeof err);
    if (found == STORE_FAILED) {
        admin_reply_store_failed(c, err);
    } else if (found < 0) {
        admin_reply_error(c, 400, "Bad Request", err);
    } else if (found == 0) {
        snprintf(err, sizeof err, "no request with id %.100s", key.data);
        admin_reply_error(c, 404, "Not Found", err);
    }
    buf_free(&key);
    return found > 0 ? r : NULL;
}

void admin_api_request(aconn *c, const char *rest, const char *query)
{
    store *s = c->a->sh->pl.store;
    if (!s) {
        admin_reply_error(c, 404, "Not Found", "the store is off: no request is kept");
        return;
    }
    size_t idl = strcspn(rest, "/");
    const char *as = rest[idl] ? rest + idl + 1 : "";
    if (*as && strcmp(as, "har") != 0 && strcmp(as, "curl") != 0 &&
        strcmp(as, "replication") != 0) {
        admin_reply_error(c, 404, "Not Found",
                          "no such endpoint (try /api/requests/ID, ID/har, ID/curl or "
                          "ID/replication)");
        return;
    }
    record *r = load_named(c, s, rest, idl);
    if (!r)
        return;
    if (strcmp(as, "replication") == 0) {
        send_replication(c, s, r);
    } else if (*as) {
        send_as(c, r, strcmp(as, "har") == 0, query);
    } else {
        buf out = BUF_INIT;
        record_to_json(r, RECORD_JSON_HEADERS | RECORD_JSON_BODIES, &out);
        admin_reply(c, 200, "OK", out.data, out.len);
        buf_free(&out);
    }
    record_free(r);
}

static void on_replayed(void *ud, replay_answer *a)
{
    compare_opts co = {0};
    report_answer(ud, &co, true, a);
}

/* One replay from the console: the request and its target (read on the
 * loop), the report (written on the pool's thread, read on the loop). */
typedef struct replay_job {
    record *r;    /* owned */
    char *target; /* owned */
    report *rp;   /* owned */
    int rc;
    char err[512];
} replay_job;

/* replay_run keeps its stop handle in a global: one run at a time. */
static pthread_mutex_t replay_lock = PTHREAD_MUTEX_INITIALIZER;

/* Replays j->r against j->target into j->rp (one result): match, mismatch
 * with its differences, error, or why it cannot be replayed. */
static void replay_work(void *ud)
{
    replay_job *j = ud;
    replay_opts o = {
        .target = j->target,
        .concurrency = 1,
        .loops = 1,
        .timeout_ms = REPLAY_TIMEOUT_MS,
    };
    char why[256];
    const char *no = replay_unreplayable(&o, j->r, why, sizeof why);
    if (no) {
        report_add(j->rp, OUTCOME_UNREPLAYABLE, j->r, 0, NULL, no, -1);
        return;
    }
    pthread_mutex_lock(&replay_lock);
    int64_t t0 = util_mono_us();
    j->rc = replay_run(&o, &j->r, 1, on_replayed, j->rp, NULL, NULL, j->err, sizeof j->err);
    report_set_elapsed(j->rp, (double)(util_mono_us() - t0) / 1e6);
    pthread_mutex_unlock(&replay_lock);
}

static void replay_job_free(replay_job *j)
{
    report_free(j->rp);
    record_free(j->r);
    free(j->target);
    free(j);
}

/* Answers with the report `restspy replay --report json` writes. */
static void replay_done(aconn *c, void *ud)
{
    replay_job *j = ud;
    if (c && j->rc != 0) {
        admin_reply_error(c, 400, "Bad Request", j->err);
    } else if (c) {
        buf out = BUF_INIT;
        report_json(j->rp, &out);
        admin_reply_as(c, 200, "OK", "application/json", out.data, out.len);
        buf_free(&out);
    }
    replay_job_free(j);
}

/* Replays r (taken) against target= on the thread pool. */
static void replay_one(aconn *c, record *r, const char *query)
{
    char *target = admin_query_value(query, "target");
    if (!target || !*target) {
        admin_reply_error(c, 400, "Bad Request",
                          "target=URL is needed: the server to replay the request against");
        free(target);
        record_free(r);
        return;
    }
    replay_job *j = xcalloc(1, sizeof *j);
    j->r = r;
    j->target = target;
    j->rp = report_new(target);
    if (admin_offload(c, replay_work, replay_done, j) < 0)
        replay_job_free(j);
}

void admin_api_request_post(aconn *c, const char *rest, const char *query)
{
    store *s = c->a->sh->pl.store;
    size_t idl = strcspn(rest, "/");
    if (!s || strcmp(rest + idl, "/replay") != 0) {
        admin_reply_error(c, 404, "Not Found",
                          s ? "no such endpoint (POST /api/requests/ID/replay?target=URL)"
                            : "the store is off: no request is kept");
        return;
    }
    record *r = load_named(c, s, rest, idl);
    if (r)
        replay_one(c, r, query);
}
