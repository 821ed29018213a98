/* bench_growth: does restspy's store keep its speed as it grows (issue 14)?
 * One run, one fresh file, one JSON object on stdout (progress on stderr);
 * bench/growth.py runs it and makes the table and the chart.
 *
 * The rows go in through the store API, the proxy's own writer: store_open
 * and store_start with the proxy's defaults (config_new: store_queue,
 * store_batch, store_commit_delay, busy_timeout; on_full block), this
 * thread submitting with store_submit_unit under backpressure. No HTTP. The
 * rows are shaped like an API's traffic (gen_row): ~300,000 distinct paths
 * (/api/items/<n>/, /api/orders/<n>/, /api/users/<n>/orders/, a few list
 * and search paths), 70% GET and the rest POST/PUT/PATCH/DELETE, statuses
 * by method with 4% 404, 1% 400 and 2% 5xx, started_at spread evenly over
 * --days days ending now (the ids are UUIDv7s of the same times, as the
 * proxy's are), 8 request and 8 response headers, small JSON bodies.
 *
 * Measured:
 *  - insert throughput at several fill levels: a window of --batch rows
 *    submitted into an idle writer (queue drained first) starting with 0,
 *    rows/10, rows/2 and rows rows in the store; clock from the first
 *    submit to the commit of the window's last row (its done callback: the
 *    writer commits in queue order). Also CPU µs per row of the process
 *    and of the writer thread (schedstat): steadier on a shared machine.
 *  - the queries `restspy requests` / `restspy show` make, on a read-only
 *    store opened as the CLI opens it, each --reps times (median, max):
 *    the store_query shapes are the CLI's (newest first, one more than the
 *    limit; the CLI's default limit is 100; a query slower than
 *    SLOW_QUERY_MS runs once); the one-minute range is
 *    around the planted probe row, a third into the timeline.
 *  - retention: the writer reopened twice at full size, once without
 *    retention (control) and once with max_rows = its row count (every
 *    batch then deletes as many old rows as it adds); one window each.
 *
 * Every figure is checked for sense: each query must find its rows (the
 * generator plants them), the store must hold what was submitted, the
 * pruning run must have pruned. A failed check is one line on stderr and
 * exit 1. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_common.h"
#include "base/util.h"
#include "base/uuid7.h"
#include "capture/config.h"
#include "capture/record.h"
#include "store/store.h"

#define PROG "bench_growth"
#define HEADERS 8 /* request and response headers per row */
#define PROBE_PATH "/api/items/4242/"
#define MAX_REPS 50
/* A query this slow runs once: at 10M rows a full scan takes minutes, and
 * once says it. */
#define SLOW_QUERY_MS 5000.0

typedef struct opts {
    const char *db;
    uint64_t rows;  /* the store's size for the last fill level */
    uint64_t batch; /* rows per measured window */
    uint64_t days;  /* the time the rows span */
    uint64_t reps;  /* runs of each query */
} opts;

static void usage(void)
{
    fprintf(stderr, "usage: bench_growth --db PATH [--rows N] [--batch B] [--days D] [--reps R]\n"
                    "  --rows N   rows in the store at the last fill level (default 10000000)\n"
                    "  --batch B  rows per measured insert window (default 200000)\n"
                    "  --days D   days the rows' timestamps span, ending now (default 7)\n"
                    "  --reps R   runs of each query, median reported (default 5)\n"
                    "PATH must not exist (and is left in place: remove it). Prints one JSON\n"
                    "object on stdout, progress on stderr.\n");
    exit(2);
}

/* ---- the rows ---- */

/* The generator: row i of total gets started_at t_start + i * step, so that
 * the timeline is the same however the rows are split into windows. */
typedef struct gen {
    uint64_t next;      /* index of the next row */
    uint64_t probe_at;  /* the row that is GET PROBE_PATH 200 (show by id, globs) */
    int64_t t_start_us; /* started_at of row 0 */
    double step_us;     /* between two rows */
    uint64_t rng;       /* xorshift64 state */
    char probe_id[UUID7_STR_LEN + 1];
    int64_t probe_us; /* its started_at: the one-minute range is around it */
} gen;

static uint64_t rnd(gen *g)
{
    g->rng ^= g->rng << 13;
    g->rng ^= g->rng >> 7;
    g->rng ^= g->rng << 17;
    return g->rng;
}

static uint32_t pct(gen *g)
{
    return (uint32_t)(rnd(g) % 100);
}

static char *fmt_dup(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *fmt_dup(const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    return xstrdup(tmp);
}

static const char *pick_method(gen *g)
{
    uint32_t p = pct(g);
    return p < 70 ? "GET" : p < 85 ? "POST" : p < 92 ? "PUT" : p < 96 ? "PATCH" : "DELETE";
}

/* A path of an API with ids in it: ~300,000 distinct ones. */
static char *pick_path(gen *g)
{
    uint32_t p = pct(g);
    unsigned n = (unsigned)(rnd(g) % 100000) + 1;
    if (p < 50)
        return fmt_dup("/api/items/%u/", n);
    if (p < 70)
        return fmt_dup("/api/orders/%u/", n);
    if (p < 90)
        return fmt_dup("/api/users/%u/orders/", n);
    if (p < 97)
        return xstrdup("/api/items/");
    return xstrdup("/api/search");
}

/* The status an API answers: by method when it works, else 404, 400, 5xx. */
static int pick_status(gen *g, const char *method)
{
    uint32_t p = pct(g);
    if (p < 4)
        return 404;
    if (p < 5)
        return 400;
    if (p < 7)
        return p == 5 ? 500 : 503;
    if (strcmp(method, "POST") == 0)
        return 201;
    if (strcmp(method, "DELETE") == 0)
        return 204;
    return 200;
}

static void add_headers(http_headers *h, const char *const (*src)[2], size_t body_len)
{
    char len[24];
    snprintf(len, sizeof len, "%zu", body_len);
    for (size_t i = 0; i < HEADERS; i++) {
        const char *v = strcmp(src[i][0], "Content-Length") == 0 ? len : src[i][1];
        http_headers_add(h, src[i][0], strlen(src[i][0]), v, strlen(v));
    }
}

/* Row g->next, as the proxy would hand it to the store (owned by the
 * caller, then by the store). */
static record *gen_row(gen *g)
{
    uint64_t i = g->next++;
    record *r = record_new();
    r->started_at_us = g->t_start_us + (int64_t)((double)i * g->step_us);
    /* The id the proxy would have given it: a UUIDv7 of that time, unique
     * through the row's index in the seed. */
    unsigned char seed[10];
    for (int k = 0; k < 8; k++)
        seed[k] = (unsigned char)(i >> (56 - 8 * k));
    seed[8] = (unsigned char)rnd(g);
    seed[9] = (unsigned char)rnd(g);
    uuid7_derive(r->started_at_us / 1000, seed, r->id);
    r->node = xstrdup("bench");
    r->duration_us = 200 + (int64_t)(rnd(g) % 5000);
    r->upstream_us = r->duration_us - 120;
    r->client_addr = fmt_dup("10.0.%u.%u:%u", (unsigned)(rnd(g) % 8), (unsigned)(rnd(g) % 250),
                             40000 + (unsigned)(rnd(g) % 20000));
    if (i == g->probe_at) {
        r->method = xstrdup("GET");
        r->path = xstrdup(PROBE_PATH);
        r->status = 200;
        memcpy(g->probe_id, r->id, sizeof g->probe_id);
        g->probe_us = r->started_at_us;
    } else {
        r->method = xstrdup(pick_method(g));
        r->path = pick_path(g);
        r->status = pick_status(g, r->method);
    }
    r->scheme = xstrdup("http");
    r->host = xstrdup("api.example.test");
    if (strcmp(r->path, "/api/search") == 0)
        r->query =
            fmt_dup("q=widget%u&page=%u", (unsigned)(rnd(g) % 1000), (unsigned)(rnd(g) % 5) + 1);
    r->http_minor = 1;
    bool body = strcmp(r->method, "GET") != 0 && strcmp(r->method, "DELETE") != 0;
    if (body)
        buf_appendf(&r->req_body, "{\"name\":\"gadget %llu\",\"qty\":%u,\"note\":\"bench\"}",
                    (unsigned long long)i, (unsigned)(rnd(g) % 20));
    r->req_body_size = r->req_body.len;
    add_headers(&r->req_headers, bench_req_headers, r->req_body.len);
    if (r->status == 200 || r->status == 201)
        buf_appendf(&r->resp_body, "{\"id\":%llu,\"name\":\"widget\",\"price\":9.99,\"ok\":true}",
                    (unsigned long long)i);
    else if (r->status != 204)
        buf_appendf(&r->resp_body, "{\"error\":\"%d\",\"detail\":\"bench answer\"}", r->status);
    r->resp_body_size = r->resp_body.len;
    add_headers(&r->resp_headers, bench_resp_headers, r->resp_body.len);
    r->resp_bytes_sent = r->resp_body.len + 250;
    r->rule = xstrdup("default");
    r->do_log = true;
    r->do_persist = true;
    return r;
}

/* ---- writing ---- */

typedef struct writer {
    store *s;
    int tid; /* the writer thread, for its CPU time */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool done;
    int status;
    double open_ms; /* store_open: on an existing file, counting its rows */
} writer;

static void on_done(void *ud, int status)
{
    writer *w = ud;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    w->status = status;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

static void writer_open(writer *w, const opts *o, uint64_t max_rows)
{
    char url[4096], err[512] = "";
    store_options so;
    bench_proxy_store_options(o->db, url, sizeof url, &so);
    so.max_rows = max_rows;
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cond, NULL);
    int64_t t0 = util_mono_us();
    w->s = store_open(&so, err, sizeof err);
    w->open_ms = (double)(util_mono_us() - t0) / 1e3;
    if (!w->s)
        bench_die(PROG, "store_open: %s", err);
    w->tid = bench_store_start(PROG, w->s);
}

/* Store stats after close, checked: nothing dropped, nothing failed. */
static void writer_close(writer *w, store_stats *st)
{
    store_get_stats(w->s, st);
    store_close(w->s);
    w->s = NULL;
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
    if (st->dropped || st->errors || st->written != st->submitted)
        bench_die(PROG, "the store wrote %llu of %llu rows (dropped %llu, errors %llu)",
                  (unsigned long long)st->written, (unsigned long long)st->submitted,
                  (unsigned long long)st->dropped, (unsigned long long)st->errors);
}

/* Submits n rows; returns when the last one is committed. */
static void submit_rows(writer *w, gen *g, uint64_t n)
{
    if (n == 0)
        return;
    w->done = false;
    for (uint64_t i = 0; i < n; i++) {
        store_unit u = {.rec = gen_row(g), .rec_row = true};
        bool last = i + 1 == n;
        if (store_submit_unit(w->s, &u, last ? on_done : NULL, last ? w : NULL) != 0)
            bench_die(PROG, "the store refused row %llu", (unsigned long long)(g->next - 1));
    }
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cond, &w->mu);
    int status = w->status;
    pthread_mutex_unlock(&w->mu);
    if (status != 0)
        bench_die(PROG, "the store dropped a row");
}

/* Fills the store up to row index upto, saying how it goes. */
static void fill_to(writer *w, gen *g, uint64_t upto)
{
    const uint64_t chunk = 1000000;
    while (g->next < upto) {
        uint64_t n = upto - g->next < chunk ? upto - g->next : chunk;
        int64_t t0 = util_mono_us();
        submit_rows(w, g, n);
        double s = (double)(util_mono_us() - t0) / 1e6;
        fprintf(stderr, "%s: filled to %llu rows (%.0f rows/s)\n", PROG,
                (unsigned long long)g->next, (double)n / s);
    }
}

typedef struct window {
    uint64_t rows_before; /* rows in the store when it started */
    double rows_per_s;
    double cpu_us_per_row;        /* whole process: this thread's generating too */
    double writer_cpu_us_per_row; /* the writer thread alone */
    double avg_batch;
    uint64_t pruned;
} window;

/* One measured window of batch rows into a drained writer. */
static window measure(writer *w, gen *g, uint64_t batch, uint64_t rows_before)
{
    store_stats a, b;
    store_get_stats(w->s, &a);
    double c0 = bench_cpu_s(), w0 = bench_tid_cpu_s(w->tid);
    int64_t t0 = util_mono_us();
    submit_rows(w, g, batch);
    int64_t t1 = util_mono_us();
    double c1 = bench_cpu_s(), w1 = bench_tid_cpu_s(w->tid);
    store_get_stats(w->s, &b);
    window x = {.rows_before = rows_before};
    x.rows_per_s = (double)batch / ((double)(t1 - t0) / 1e6);
    x.cpu_us_per_row = (c1 - c0) * 1e6 / (double)batch;
    x.writer_cpu_us_per_row = (w1 - w0) * 1e6 / (double)batch;
    uint64_t nb = b.batches - a.batches;
    x.avg_batch = nb ? (double)(b.written - a.written) / (double)nb : 0.0;
    x.pruned = b.pruned - a.pruned;
    fprintf(stderr, "%s: %llu rows in store: %.0f rows/s, writer %.1f µs/row%s\n", PROG,
            (unsigned long long)rows_before, x.rows_per_s, x.writer_cpu_us_per_row,
            x.pruned ? " (pruning)" : "");
    return x;
}

/* ---- reading ---- */

typedef struct qctx {
    store *s;
    const gen *g;
    int64_t newest_us; /* started_at of the newest row */
    int64_t minute_us; /* start of a minute a third into the timeline */
    const char *ids[64];
    size_t nids;
} qctx;

static int count_row(const record *r, void *ud)
{
    (void)r;
    (*(int64_t *)ud)++;
    return 0;
}

static int64_t run_query(qctx *c, const store_query *q)
{
    char err[512] = "";
    int64_t n = 0;
    if (store_query_each(c->s, q, count_row, &n, err, sizeof err) != 0)
        bench_die(PROG, "query: %s", err);
    return n;
}

/* The CLI's shape of `restspy requests [filters]`: newest first, one more
 * than the limit (to know whether there are more). */
static store_query cli_query(int64_t limit)
{
    store_query q = {0};
    q.newest_first = true;
    q.limit = limit + 1;
    return q;
}

static int64_t q_show_id(qctx *c)
{
    char err[512] = "";
    record *r = NULL;
    int found = store_get(c->s, c->g->probe_id, &r, err, sizeof err);
    if (found != 1)
        bench_die(PROG, "show %s: %s", c->g->probe_id, found < 0 ? err : "not found");
    record_free(r);
    return 1;
}

static int64_t q_show_short(qctx *c)
{
    char err[512] = "";
    record *r = NULL;
    const char *key = c->g->probe_id + UUID7_STR_LEN - 8;
    int found = store_get(c->s, key, &r, err, sizeof err);
    if (found < 0)
        bench_die(PROG, "show %s: %s", key, err);
    record_free(r);
    return found;
}

static int64_t q_newest(qctx *c)
{
    store_query q = cli_query(50);
    return run_query(c, &q);
}

static int64_t q_abbrev(qctx *c)
{
    char err[512] = "";
    size_t len = 0;
    if (store_id_abbrev(c->s, c->ids, c->nids, &len, err, sizeof err) != 0)
        bench_die(PROG, "store_id_abbrev: %s", err);
    return (int64_t)c->nids;
}

static int64_t q_minute(qctx *c)
{
    store_query q = cli_query(100);
    q.since_us = c->minute_us;
    q.until_us = c->minute_us + 60 * 1000000LL;
    return run_query(c, &q);
}

static int64_t q_5xx_hour(qctx *c)
{
    store_query q = cli_query(100);
    q.status_min = 500;
    q.status_max = 599;
    q.since_us = c->newest_us - 3600 * 1000000LL;
    return run_query(c, &q);
}

static int64_t q_glob(qctx *c)
{
    store_query q = cli_query(100);
    q.path_glob = "/api/items/4242/*";
    return run_query(c, &q);
}

static int64_t q_method_glob(qctx *c)
{
    store_query q = cli_query(100);
    q.method = "GET";
    q.path_glob = "/api/items/4242/*";
    return run_query(c, &q);
}

static int64_t q_broad_glob(qctx *c)
{
    store_query q = cli_query(50);
    q.path_glob = "/api/users/*/orders/";
    return run_query(c, &q);
}

typedef struct query_def {
    const char *name; /* as `restspy` is asked */
    int64_t (*fn)(qctx *c);
} query_def;

static const query_def queries[] = {
    {"show <whole id>", q_show_id},
    {"show <last 8 chars of the id>", q_show_short},
    {"requests --limit 50 (newest 50)", q_newest},
    {"short ids of those 50 (store_id_abbrev)", q_abbrev},
    {"requests --since T --until T+1min", q_minute},
    {"requests --status 5xx --since 1h", q_5xx_hour},
    {"requests --path '/api/items/4242/*'", q_glob},
    {"requests --method GET --path '/api/items/4242/*'", q_method_glob},
    {"requests --path '/api/users/*/orders/' --limit 50", q_broad_glob},
};
#define NQUERIES (sizeof queries / sizeof queries[0])

typedef struct qresult {
    double median_ms, max_ms;
    int64_t rows;
    uint64_t runs;
} qresult;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int collect_id(const record *r, void *ud)
{
    qctx *c = ud;
    if (c->nids < 64)
        c->ids[c->nids++] = xstrdup(r->id);
    return 0;
}

static void run_queries(const opts *o, const gen *g, int64_t newest_us, qresult *out)
{
    config *cfg = config_new();
    char url[4096], err[512] = "";
    snprintf(url, sizeof url, "sqlite:%s", o->db);
    store_options so = {0}; /* as cliutil_open_store opens it */
    so.url = url;
    so.queue_max = 1;
    so.batch_max = 1;
    so.busy_timeout_ms = cfg->busy_timeout_ms;
    so.read_only = true;
    config_unref(cfg);
    qctx c = {.g = g, .newest_us = newest_us};
    c.s = store_open(&so, err, sizeof err);
    if (!c.s)
        bench_die(PROG, "store_open (read only): %s", err);
    c.minute_us = g->probe_us - 30 * 1000000LL;
    store_query q = cli_query(49);
    if (store_query_each(c.s, &q, collect_id, &c, err, sizeof err) != 0)
        bench_die(PROG, "query: %s", err);
    for (size_t i = 0; i < NQUERIES; i++) {
        double t[MAX_REPS];
        uint64_t k = 0;
        while (k < o->reps && (k == 0 || t[0] < SLOW_QUERY_MS)) {
            int64_t t0 = util_mono_us();
            out[i].rows = queries[i].fn(&c);
            t[k++] = (double)(util_mono_us() - t0) / 1e3;
        }
        if (out[i].rows <= 0)
            bench_die(PROG, "%s found nothing: the generator planted rows for it", queries[i].name);
        qsort(t, k, sizeof t[0], cmp_double);
        out[i].runs = k;
        out[i].median_ms = t[k / 2];
        out[i].max_ms = t[k - 1];
        fprintf(stderr, "%s: %s: %.2f ms (%lld rows)\n", PROG, queries[i].name, out[i].median_ms,
                (long long)out[i].rows);
    }
    for (size_t i = 0; i < c.nids; i++)
        free((char *)c.ids[i]);
    store_close(c.s);
}

/* ---- the run ---- */

/* One window as a JSON object, as member key when key is not NULL. */

static long long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : 0;
}

static void print_window(const char *key, const window *x, bool comma)
{
    if (key)
        printf("%s\"%s\":", comma ? "," : "", key);
    else if (comma)
        putchar(',');
    printf("{\"rows_in_store\":%llu,\"rows_per_s\":%.1f,\"cpu_us_per_row\":%.3f,"
           "\"writer_cpu_us_per_row\":%.3f,\"avg_batch\":%.1f,\"pruned\":%llu}",
           (unsigned long long)x->rows_before, x->rows_per_s, x->cpu_us_per_row,
           x->writer_cpu_us_per_row, x->avg_batch, (unsigned long long)x->pruned);
}

int main(int argc, char **argv)
{
    opts o = {.rows = 10000000, .batch = 200000, .days = 7, .reps = 5};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--db") == 0)
            o.db = bench_arg(PROG, argc, argv, &i);
        else if (strcmp(a, "--rows") == 0)
            o.rows = bench_num(PROG, a, bench_arg(PROG, argc, argv, &i), 1000, 1000000000);
        else if (strcmp(a, "--batch") == 0)
            o.batch = bench_num(PROG, a, bench_arg(PROG, argc, argv, &i), 100, 100000000);
        else if (strcmp(a, "--days") == 0)
            o.days = bench_num(PROG, a, bench_arg(PROG, argc, argv, &i), 1, 3650);
        else if (strcmp(a, "--reps") == 0)
            o.reps = bench_num(PROG, a, bench_arg(PROG, argc, argv, &i), 1, MAX_REPS);
        else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            usage();
        else
            bench_die(PROG, "unknown option %s (see --help)", a);
    }
    if (!o.db)
        bench_die(PROG, "--db is required (see --help)");
    if (access(o.db, F_OK) == 0)
        bench_die(PROG, "%s exists: give a fresh path", o.db);

    /* The timeline: rows + batch rows (the fill and its last window) end
     * now; the two retention windows after them run on into the next
     * hours at the same pace. */
    gen g = {.rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)util_now_us()};
    int64_t now = util_now_us();
    int64_t span = (int64_t)o.days * 86400 * 1000000LL;
    g.step_us = (double)span / (double)(o.rows + o.batch);
    g.t_start_us = now - span;
    g.probe_at = o.rows / 3;

    uint64_t levels[] = {0, o.rows / 10, o.rows / 2, o.rows};
    window win[4];
    writer w;
    writer_open(&w, &o, 0);
    int64_t f0 = util_mono_us();
    for (size_t i = 0; i < 4; i++) {
        if (levels[i] > g.next)
            fill_to(&w, &g, levels[i]);
        win[i] = measure(&w, &g, o.batch, g.next);
    }
    double fill_s = (double)(util_mono_us() - f0) / 1e6;
    store_stats st;
    int64_t c0 = util_mono_us();
    writer_close(&w, &st);
    double close_ms = (double)(util_mono_us() - c0) / 1e3;
    uint64_t filled = g.next;
    int64_t newest_us = g.t_start_us + (int64_t)((double)(filled - 1) * g.step_us);

    qresult qr[NQUERIES];
    run_queries(&o, &g, newest_us, qr);

    /* Retention: the same window without it and with max_rows at the
     * current size, each on a freshly opened writer. */
    writer_open(&w, &o, 0);
    double open_ms = w.open_ms;
    window control = measure(&w, &g, o.batch, g.next);
    writer_close(&w, &st);
    uint64_t keep = g.next;
    writer_open(&w, &o, keep);
    double open_counting_ms = w.open_ms;
    window prune = measure(&w, &g, o.batch, g.next);
    writer_close(&w, &st);
    if (prune.pruned == 0)
        bench_die(PROG, "max_rows %llu pruned nothing", (unsigned long long)keep);

    printf("{\"rows\":%llu,\"batch\":%llu,\"days\":%llu,\"reps\":%llu,\"rows_written\":%llu,"
           "\"fill_seconds\":%.1f,\"close_ms\":%.1f,\"open_ms\":%.1f,\"open_max_rows_ms\":%.1f,"
           "\"db_bytes\":%lld,\"levels\":[",
           (unsigned long long)o.rows, (unsigned long long)o.batch, (unsigned long long)o.days,
           (unsigned long long)o.reps, (unsigned long long)g.next, fill_s, close_ms, open_ms,
           open_counting_ms, file_size(o.db));
    for (size_t i = 0; i < 4; i++)
        print_window(NULL, &win[i], i > 0);
    printf("],\"queries\":[");
    for (size_t i = 0; i < NQUERIES; i++)
        printf("%s{\"name\":\"%s\",\"median_ms\":%.3f,\"max_ms\":%.3f,\"rows\":%lld,"
               "\"runs\":%llu}",
               i ? "," : "", queries[i].name, qr[i].median_ms, qr[i].max_ms, (long long)qr[i].rows,
               (unsigned long long)qr[i].runs);
    printf("],\"retention\":{\"max_rows\":%llu", (unsigned long long)keep);
    print_window("control", &control, true);
    print_window("pruning", &prune, true);
    printf("}}\n");
    return 0;
}
