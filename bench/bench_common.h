/* bench_common: what bench_store.c and bench_publish.c share: the capture
 * record they feed to restspy (shaped like the ones the proxy makes for the
 * POSTs of bench/run), a one-line fatal error, and option parsing.
 *
 * The record: every column of `requests` carries a value; 15 request and 15
 * response headers (typical browser/API ones, Authorization already
 * redacted as restspy stores it), the 53-byte request body of bench/run and
 * its backend's 92-byte JSON answer. error is filled too (a successful
 * exchange leaves it NULL) so that no column is empty. Everything is on the
 * heap and owned by the record, as in the proxy. Header-only: static inline
 * so that each program includes it whole without unused-function warnings. */
#ifndef RESTSPY_BENCH_COMMON_H
#define RESTSPY_BENCH_COMMON_H

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "base/buf.h"
#include "capture/config.h"
#include "capture/record.h"
#include "base/util.h"
#include "store/store.h"

#define BENCH_REQ_BODY "{\"name\":\"gadget\",\"qty\":3,\"note\":\"bench request body\"}"
#define BENCH_RESP_BODY                                                                            \
    "{\"id\":1,\"name\":\"widget\",\"price\":9.99,\"tags\":[\"a\",\"b\"],\"ok\":true,"             \
    "\"note\":\"fixed bench answer\"}"

static const char *const bench_req_headers[15][2] = {
    {"Host", "api.example.test"},
    {"User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"},
    {"Accept", "application/json, text/plain, */*"},
    {"Accept-Encoding", "gzip, deflate, br"},
    {"Accept-Language", "en-US,en;q=0.9,de;q=0.8"},
    {"Content-Type", "application/json"},
    {"Content-Length", "53"},
    {"Connection", "keep-alive"},
    {"Authorization", "[REDACTED]"},
    {"X-Request-Id", "0b7c2f5e-3f1a-4c1d-9a43-2c6f0e8d1b77"},
    {"X-Forwarded-For", "203.0.113.17"},
    {"Cookie", "session=3f9a1c7e5b2d4a6f8e0c1b3d5f7a9c2e; theme=dark"},
    {"Cache-Control", "no-cache"},
    {"Origin", "https://app.example.test"},
    {"Referer", "https://app.example.test/items?page=2"},
};

static const char *const bench_resp_headers[15][2] = {
    {"Server", "nginx/1.22.1"},
    {"Date", "Fri, 27 Nov 2026 07:49:45 GMT"},
    {"Content-Type", "application/json"},
    {"Content-Length", "92"},
    {"Connection", "keep-alive"},
    {"Cache-Control", "no-store, max-age=0"},
    {"ETag", "\"5f3c-9a1b2c3d4e5f\""},
    {"Vary", "Accept-Encoding, Origin"},
    {"X-Request-Id", "0b7c2f5e-3f1a-4c1d-9a43-2c6f0e8d1b77"},
    {"X-Content-Type-Options", "nosniff"},
    {"X-Frame-Options", "DENY"},
    {"Strict-Transport-Security", "max-age=31536000; includeSubDomains"},
    {"Access-Control-Allow-Origin", "https://app.example.test"},
    {"Last-Modified", "Fri, 27 Nov 2026 07:40:00 GMT"},
    {"Set-Cookie", "csrf=a1b2c3d4e5f60718; Path=/; HttpOnly; SameSite=Lax"},
};

/* A new record like the proxy hands to the store for one POST. */
static inline record *bench_make_record(const char *node)
{
    record *r = record_new();
    r->node = xstrdup(node);
    r->started_at_us = util_now_us();
    r->duration_us = 850;
    r->upstream_us = 610;
    r->client_addr = xstrdup("127.0.0.1:54321");
    r->method = xstrdup("POST");
    r->scheme = xstrdup("http");
    r->host = xstrdup("api.example.test");
    r->path = xstrdup("/api/items");
    r->query = xstrdup("page=2&sort=name");
    r->http_minor = 1;
    for (size_t i = 0; i < 15; i++)
        http_headers_add(&r->req_headers, bench_req_headers[i][0], strlen(bench_req_headers[i][0]),
                         bench_req_headers[i][1], strlen(bench_req_headers[i][1]));
    buf_append_str(&r->req_body, BENCH_REQ_BODY);
    r->req_body_size = r->req_body.len;
    r->status = 200;
    for (size_t i = 0; i < 15; i++)
        http_headers_add(&r->resp_headers, bench_resp_headers[i][0],
                         strlen(bench_resp_headers[i][0]), bench_resp_headers[i][1],
                         strlen(bench_resp_headers[i][1]));
    buf_append_str(&r->resp_body, BENCH_RESP_BODY);
    r->resp_body_size = r->resp_body.len;
    r->resp_bytes_sent = r->resp_body.len + 400;
    r->rule = xstrdup("default");
    r->error = xstrdup("none");
    r->replication = xstrdup("queued");
    r->do_log = true;
    r->do_persist = true;
    return r;
}

static inline void bench_die(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/* CPU time (user + system) this process has used so far, all threads, in
 * seconds: on a shared machine, CPU per row is steadier than wall time. */
static inline double bench_cpu_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0.0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Thread ids of this process (up to max); how many. */
static inline size_t bench_tids(int *out, size_t max)
{
    size_t n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max)
        if (e->d_name[0] >= '0' && e->d_name[0] <= '9')
            out[n++] = atoi(e->d_name);
    closedir(d);
    return n;
}

/* The thread started since before[0..nb) was taken (the only new one), or
 * -1: how the benches find restspy's writer and publisher threads. */
static inline int bench_new_tid(const int *before, size_t nb)
{
    int now[256];
    size_t n = bench_tids(now, 256);
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < nb && before[j] != now[i])
            j++;
        if (j == nb)
            return now[i];
    }
    return -1;
}

/* Seconds thread tid has spent on a CPU so far and (*runq_s, may be NULL)
 * runnable but waiting for one (schedstat), or 0 when unknown. */
static inline double bench_tid_sched_s(int tid, double *runq_s)
{
    char path[64];
    unsigned long long ns = 0, wait = 0;
    if (runq_s)
        *runq_s = 0.0;
    if (tid < 0)
        return 0.0;
    snprintf(path, sizeof path, "/proc/self/task/%d/schedstat", tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0.0;
    if (fscanf(f, "%llu %llu", &ns, &wait) != 2)
        ns = wait = 0;
    fclose(f);
    if (runq_s)
        *runq_s = (double)wait / 1e9;
    return (double)ns / 1e9;
}

static inline double bench_tid_cpu_s(int tid)
{
    return bench_tid_sched_s(tid, NULL);
}

/* One line on stderr, exit 1. */
static inline void bench_die(const char *prog, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* The store options the proxy runs with by default (config_new through
 * store_options_from_config) for the SQLite file db; so->url points into
 * url (the caller's buffer of urllen bytes). */
static inline void bench_proxy_store_options(const char *db, char *url, size_t urllen,
                                             store_options *so)
{
    config *c = config_new();
    snprintf(url, urllen, "sqlite:%s", db);
    store_options_from_config(so, c);
    so->url = url;
    config_unref(c);
}

/* store_start of s, or a fatal error; the writer thread's id (for its CPU
 * time, bench_tid_cpu_s), -1 when it cannot be told. */
static inline int bench_store_start(const char *prog, store *s)
{
    char err[512] = "";
    int tids[256];
    size_t ntids = bench_tids(tids, 256);
    if (store_start(s, err, sizeof err) != 0)
        bench_die(prog, "store_start: %s", err);
    return bench_new_tid(tids, ntids);
}

/* A whole decimal number in [min, max], or a fatal error naming opt. */
static inline uint64_t bench_num(const char *prog, const char *opt, const char *s, uint64_t min,
                                 uint64_t max)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s ? s : "", &end, 10);
    if (!s || !*s || *end || errno || *s == '-' || v < min || v > max)
        bench_die(prog, "bad value for %s: '%s' (expected %llu..%llu)", opt, s ? s : "",
                  (unsigned long long)min, (unsigned long long)max);
    return (uint64_t)v;
}

/* The value after option argv[*i], or a fatal error. */
static inline const char *bench_arg(const char *prog, int argc, char **argv, int *i)
{
    if (*i + 1 >= argc)
        bench_die(prog, "%s needs a value", argv[*i]);
    return argv[++*i];
}

#endif
