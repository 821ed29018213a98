/* cli_replay: `restspy replay`, captured traffic as a repeatable test.
 *
 * Loads the cases (store, HAR or JSON lines, through the `requests`
 * filters), hands them to the replay engine, compares every answer with the
 * recorded one in the answer callback and collects the outcomes in a
 * report. The callback runs at load-generator rates (it is on the path the
 * bench measures), so it does no more than compare_responses (whose equal-
 * bytes fast path parses nothing) and report_add. With --learn-noise the
 * cases are replayed twice and what differed between the two answers
 * becomes noise rules. */
#include "cli/cli.h"

#include <errno.h>
#include <math.h> /* isfinite: a macro, no libm */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli/cliutil.h"
#include "compare/compare.h"
#include "formats/har.h"
#include "http/httpmsg.h"
#include "replay/replay.h"
#include "replay/report.h"
#include "base/url.h"
#include "base/util.h"

#define DEFAULT_CONCURRENCY 8
#define MAX_CONCURRENCY 10000
#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_MAX_LISTED 20
#define BAR_WIDTH 30
/* Without a terminal, one progress line this often (a CI log stays short). */
#define PLAIN_EVERY_US 5000000
/* --learn-noise keeps every difference: each one may be a rule. */
#define LEARN_MAX_DIFFS 100000

static const char cmd[] = "replay";

static const char usage[] =
    "usage: restspy replay [source] [filters] --target http[s]://host:port [options]\n"
    "\n"
    "Replays captured requests against a server and compares its answers with\n"
    "the recorded ones. Exit code: 0 nothing differed, 1 mismatches (or requests\n"
    "that could not be replayed), 2 could not run (errors, no answers, interrupted).\n"
    "An answer whose recorded body is incomplete (cut at the capture cap) or was not\n"
    "stored is reported as partly compared, never as matched.\n"
    "\n"
    "Source (one of; default: the store):\n"
    "  --store URL          store to read (default: the store setting, sqlite:restspy.db)\n"
    "  --har FILE           a HAR 1.2 file (browsers' devtools, Charles, Postman, restspy)\n"
    "  --jsonl FILE         restspy's JSON lines (restspy export --jsonl)\n"
    "  --keep-cached        also replay a HAR's browser cache hits (left out by\n"
    "                       default: no request went out for them)\n"
    "  --config FILE        config file whose store setting to use\n"
    "\n"
    "Filters (as `restspy requests`; they apply to every source):\n" CLIUTIL_FILTERS_HELP
    "  --id ID              only this request (repeatable; an id, or a unique start or end of 4+)\n"
    "  --limit N            only the newest N (default: all)\n"
    "\n"
    "Sending:\n"
    "  --target URL         where to send them: http://host:port or https://host:port\n"
    "                       (required, with the scheme); HTTP/1.1, or HTTP/2 when an\n"
    "                       https target offers it\n" CLIUTIL_TLS_HELP
    "  --set-header 'N: v'  add or replace a request header (repeatable), e.g. fresh\n"
    "                       credentials for values redacted at capture\n"
    "  --drop-header N      remove a request header (repeatable)\n"
    "  --rewrite-path F=T   replace the path prefix F with T (repeatable; first match wins)\n"
    "  --speed S            max (default: as fast as the target answers), or 2x, 0.5x:\n"
    "                       the recorded spacing, scaled\n"
    "  --concurrency N      connections, kept alive (default 8)\n"
    "  --loop N             replay everything N times (default 1)\n"
    "  --ordered            each client's requests one after the other, in recorded\n"
    "                       order (writes land before the reads that saw them)\n"
    "  --timeout DUR        per request, connect and answer (default 10s)\n"
    "\n"
    "Correlating (on by default with --ordered):\n"
    "  --correlate          learn the values the target assigns (ids, tokens, ETags,\n"
    "                       cookies, Location) in place of the recorded ones, put them\n"
    "                       in each client's later requests, and compare through them\n"
    "                       (implies --ordered)\n"
    "  --no-correlate       send every request as recorded\n"
    "  --correlate-path P   always track the JSON value at P, e.g. '$.data.id' (repeatable)\n"
    "  --no-correlate-header N  never learn from nor substitute in header N (repeatable)\n"
    "  --correlate-client-header N  requests with header N belong to the client it\n"
    "                       names (default: the recorded client IP)\n"
    "\n"
    "Comparing (on by default when the requests have recorded responses):\n"
    "  --compare            compare status, selected headers and body\n"
    "  --no-compare         only send, do not compare\n"
    "  --compare-header N   also compare this response header (repeatable)\n"
    "  --max-decoded SIZE   a compressed answer (gzip, deflate, br) is compared decoded,\n"
    "                       as recorded bodies are stored; at most SIZE of it (default\n"
    "                       64M), the rest as for a body truncated at capture\n"
    "  --ignore PATH        ignore a JSON path: $.updated_at, $..id, $.items[*].ts\n"
    "  --ignore-header N    ignore a response header\n"
    "  --ignore-regex RE    two differing values that both match RE are equal (JSON\n"
    "                       values, header values, words of text bodies)\n"
    "  --noise FILE         noise rules from FILE, one per line (repeatable): $.path,\n"
    "                       header: NAME, regex: RE, $.path ~ RE, text: RE (words of\n"
    "                       text bodies); binary bodies are compared byte for byte;\n"
    "                       correlate: $.path, no-correlate-header: NAME\n"
    "  --learn-noise FILE   replay every request twice and write what differed between\n"
    "                       the two answers into FILE as rules (added to what FILE has):\n"
    "                       JSON paths, headers, and text: rules for words of text bodies\n"
    "\n"
    "Reporting:\n"
    "  --report json FILE   every outcome as JSON\n"
    "  --report junit FILE  JUnit XML, one test case per request\n"
    "  --max-listed N       mismatches shown in detail in the summary (default 20)\n"
    "  -h, --help           show this help\n"
    "\n"
    "A request whose replayed headers or body would still contain a value\n"
    "redacted at capture ([redacted]) is reported as not replayable and never\n"
    "sent; --set-header or --drop-header cure a redacted header.\n";

/* A NULL-terminated list of owned strings. */
typedef struct strlist {
    char **v;
    size_t n;
} strlist;

static void strlist_add(strlist *l, char *s)
{
    l->v = xrealloc(l->v, (l->n + 2) * sizeof *l->v);
    l->v[l->n++] = s;
    l->v[l->n] = NULL;
}

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

typedef struct args {
    cliutil_read_opts ro; /* --store, --config */
    hclient_tls tls;      /* --cacert, --insecure, --cert, --key */
    const char *har, *jsonl;
    cliutil_filter f;
    const char *target;
    http_headers set_headers;
    strlist drop;     /* lower-case names */
    strlist rw_texts; /* owns the rewrites' strings */
    replay_rewrite *rewrites;
    size_t nrewrites;
    double speed;
    unsigned concurrency, loops;
    bool loops_given;
    bool ordered;
    int correlate; /* -1 default (on with --ordered), 0 --no-correlate, 1 --correlate */
    const char *client_header;
    bool keep_cached;
    int compare; /* -1 default, 0 --no-compare, 1 --compare */
    strlist cmp_headers;
    noise *noise;
    const char *learn;
    const char *report_json, *report_junit;
    uint64_t timeout_ms;
    uint64_t max_decoded;
    size_t max_listed;
} args;

static void args_free(args *a)
{
    reqfilter_free(&a->f);
    http_headers_free(&a->set_headers);
    strlist_free(&a->drop);
    strlist_free(&a->rw_texts);
    free(a->rewrites);
    strlist_free(&a->cmp_headers);
    noise_free(a->noise);
}

/* ---- parsing ---- */

/* A decimal number in [min, max]. 0, or -1 after reporting. */
static int parse_count(const char *flag, const char *v, unsigned long long min,
                       unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-' || n < min || n > max) {
        cliutil_errorf(cmd, "bad value for %s: '%s' (expected a number from %llu to %llu)", flag, v,
                       min, max);
        return -1;
    }
    *out = n;
    return 0;
}

/* "max" (0), or a factor: "2x", "0.5x", "3". */
static int parse_speed(const char *v, double *out)
{
    if (strcmp(v, "max") == 0) {
        *out = 0;
        return 0;
    }
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end != v && (*end == 'x' || *end == 'X'))
        end++;
    if (errno || end == v || *end || !isfinite(d) || d <= 0 || d > 1e6) {
        cliutil_errorf(cmd, "bad value for --speed: '%s' (expected max, 2x or 0.5x)", v);
        return -1;
    }
    *out = d;
    return 0;
}

static int parse_rewrite(const char *v, args *a)
{
    const char *eq = strchr(v, '=');
    if (!eq || eq == v || v[0] != '/' || (eq[1] && eq[1] != '/')) {
        cliutil_errorf(cmd, "bad value for --rewrite-path: '%s' (expected FROM=TO, e.g. /v1/=/v2/)",
                       v);
        return -1;
    }
    char *from = xstrndup(v, (size_t)(eq - v));
    char *to = xstrdup(eq + 1);
    strlist_add(&a->rw_texts, from);
    strlist_add(&a->rw_texts, to);
    a->rewrites = xrealloc(a->rewrites, (a->nrewrites + 1) * sizeof *a->rewrites);
    a->rewrites[a->nrewrites].from = from;
    a->rewrites[a->nrewrites].to = to;
    a->nrewrites++;
    return 0;
}

static char *lower_dup(const char *s)
{
    char *d = xstrdup(s);
    for (char *p = d; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return d;
}

/* Parses everything. 0 to go on, 1 help was printed, 2 usage error (reported). */
static int parse_args(int argc, char **argv, args *a)
{
    a->concurrency = DEFAULT_CONCURRENCY;
    a->loops = 1;
    a->compare = -1;
    a->correlate = -1;
    a->timeout_ms = DEFAULT_TIMEOUT_MS;
    a->max_listed = DEFAULT_MAX_LISTED;
    a->noise = noise_new();
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *v;
        unsigned long long n;
        int m;
        if (cliutil_is_help(arg)) {
            fputs(usage, stdout);
            return 1;
        }
        if (strcmp(arg, "--ordered") == 0) {
            a->ordered = true;
            continue;
        }
        if (strcmp(arg, "--correlate") == 0 || strcmp(arg, "--no-correlate") == 0) {
            a->correlate = arg[2] == 'c';
            continue;
        }
        if (strcmp(arg, "--keep-cached") == 0) {
            a->keep_cached = true;
            continue;
        }
        if (strcmp(arg, "--compare") == 0 || strcmp(arg, "--no-compare") == 0) {
            a->compare = arg[2] == 'c';
            continue;
        }
        if ((m = cliutil_flag_value(cmd, argc, argv, &i, "--store", &a->ro.store_url)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--config", &a->ro.config_file)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--har", &a->har)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--jsonl", &a->jsonl)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--target", &a->target)) ||
            (m = cliutil_tls_flag(cmd, argc, argv, &i, &a->tls)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--learn-noise", &a->learn)) ||
            (m = cliutil_filter_opt(cmd, argc, argv, &i, &a->f, true))) {
            if (m < 0)
                return 2;
            continue;
        }
        if ((m = cliutil_flag_value(cmd, argc, argv, &i, "--set-header", &v))) {
            if (m < 0 || cliutil_header_arg(cmd, "--set-header", v, &a->set_headers) < 0)
                return 2;
            continue;
        }
        if ((m = cliutil_flag_value(cmd, argc, argv, &i, "--drop-header", &v))) {
            if (m < 0)
                return 2;
            if (!httpmsg_is_token(v, strlen(v))) {
                cliutil_errorf(cmd, "bad value for --drop-header: '%s' (expected a header name)",
                               v);
                return 2;
            }
            strlist_add(&a->drop, lower_dup(v));
            continue;
        }
        if ((m = cliutil_flag_value(cmd, argc, argv, &i, "--rewrite-path", &v))) {
            if (m < 0 || parse_rewrite(v, a) < 0)
                return 2;
            continue;
        }
        if ((m = cliutil_flag_value(cmd, argc, argv, &i, "--speed", &v))) {
            if (m < 0 || parse_speed(v, &a->speed) < 0)
                return 2;
            continue;
        }
        if ((m = cliutil_flag_value(cmd, argc, argv, &i, "--concurrency", &v))) {
            if (m < 0 || parse_count("--concurrency", v, 1, MAX_CONCURRENCY, &n) < 0)
                return 2;
            a->concurrency = (unsigned)n;
            continue;
        }
        if ((m = cliutil_flag_value(cmd, argc, argv, &i, "--loop", &v))) {
            if (m < 0 || parse_count("--loop", v, 1, 1000000, &n) < 0)
                return 2;
            a->loops = (unsigned)n;
            a->loops_given = true;
            continue;
        }
        if ((m = cliutil_flag_value(cmd, argc, argv, &i, "--max-listed", &v))) {
            if (m < 0 || parse_count("--max-listed", v, 0, SIZE_MAX, &n) < 0)
                return 2;
            a->max_listed = (size_t)n;
            continue;
        }
        if ((m = cliutil_flag_value(cmd, argc, argv, &i, "--timeout", &v))) {
            if (m < 0 || cliutil_duration_arg(cmd, "--timeout", v, &a->timeout_ms) < 0)
                return 2;
            continue;
        }
        if ((m = cliutil_flag_value(cmd, argc, argv, &i, "--max-decoded", &v))) {
            if (m < 0)
                return 2;
            if (util_parse_size(v, &a->max_decoded) < 0 || a->max_decoded == 0) {
                cliutil_errorf(cmd, "bad value for --max-decoded: '%s' (expected a size like 64M)",
                               v);
                return 2;
            }
            continue;
        }
        if ((m = cliutil_flag_value(cmd, argc, argv, &i, "--compare-header", &v))) {
            if (m < 0)
                return 2;
            if (!httpmsg_is_token(v, strlen(v))) {
                cliutil_errorf(cmd, "bad value for --compare-header: '%s' (expected a header name)",
                               v);
                return 2;
            }
            strlist_add(&a->cmp_headers, xstrdup(v));
            continue;
        }
        if ((m = cliutil_flag_value(cmd, argc, argv, &i, "--correlate-path", &v))) {
            if (m < 0 || cliutil_noise_rule(cmd, a->noise, "correlate: ", v) < 0)
                return 2;
            continue;
        }
        if ((m = cliutil_flag_value(cmd, argc, argv, &i, "--no-correlate-header", &v))) {
            if (m < 0 || cliutil_noise_rule(cmd, a->noise, "no-correlate-header: ", v) < 0)
                return 2;
            continue;
        }
        if ((m = cliutil_flag_value(cmd, argc, argv, &i, "--correlate-client-header", &v))) {
            if (m < 0)
                return 2;
            if (!httpmsg_is_token(v, strlen(v))) {
                cliutil_errorf(cmd,
                               "bad value for --correlate-client-header: '%s' (expected a header "
                               "name)",
                               v);
                return 2;
            }
            a->client_header = v;
            continue;
        }
        if ((m = cliutil_noise_opt(cmd, argc, argv, &i, a->noise))) {
            if (m < 0)
                return 2;
            continue;
        }
        if ((m = cliutil_flag_value(cmd, argc, argv, &i, "--report", &v))) {
            if (m < 0)
                return 2;
            bool json = strcmp(v, "json") == 0, junit = strcmp(v, "junit") == 0;
            if (!json && !junit) {
                cliutil_errorf(cmd,
                               "bad value for --report: '%s' (expected json FILE or junit "
                               "FILE)",
                               v);
                return 2;
            }
            if (i + 1 >= argc) {
                cliutil_errorf(cmd, "--report %s needs a file", v);
                return 2;
            }
            *(json ? &a->report_json : &a->report_junit) = argv[++i];
            continue;
        }
        return cliutil_bad_arg(cmd, arg);
    }
    if (cliutil_filter_check(cmd, &a->f))
        return 2;
    if ((a->ro.store_url != NULL) + (a->har != NULL) + (a->jsonl != NULL) > 1) {
        cliutil_errorf(cmd, "one source only: --store, --har or --jsonl");
        return 2;
    }
    /* "host:port" alone would be taken for a URL scheme by some and a host
     * by others: say what is expected. Only the scheme is checked here (a
     * parse error still fills it); the engine says what else is wrong. */
    url_parts tu;
    if (a->target)
        url_parse(a->target, strlen(a->target), &tu, NULL);
    bool https = a->target && url_is(&tu, "https");
    if (a->target && !https && !url_is(&tu, "http")) {
        cliutil_errorf(cmd,
                       "bad value for --target: '%s' (expected http://host:port or "
                       "https://host:port)",
                       a->target);
        return 2;
    }
    if (cliutil_tls_check(cmd, &a->tls, https, "--target", "the target's"))
        return 2;
    if (a->keep_cached && !a->har) {
        cliutil_errorf(cmd, "--keep-cached only applies to --har");
        return 2;
    }
    if (!a->target) {
        cliutil_errorf(cmd, "--target is required (e.g. --target http://127.0.0.1:8000)");
        return 2;
    }
    /* Correlation follows each client's requests in order: --correlate
     * implies --ordered, and --ordered correlates unless told not to. */
    if (a->correlate == 1)
        a->ordered = true;
    if (a->correlate == -1)
        a->correlate = a->ordered;
    if (a->learn && (a->report_json || a->report_junit || a->loops_given)) {
        cliutil_errorf(cmd, "--learn-noise replays every request twice: --report and --loop do "
                            "not apply");
        return 2;
    }
    return 0;
}

/* ---- loading ---- */

typedef struct caselist {
    record **v;
    size_t n, cap;
} caselist;

static int keep_copy(const record *r, void *ud)
{
    caselist *l = ud;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = record_copy(r);
    return 0;
}

/* The cases, in recorded order. 0, or 2 after reporting. */
static int load_cases(const args *a, char *const *envp, caselist *out)
{
    char err[512];
    if (a->har || a->jsonl) {
        size_t cached = 0;
        int rc = a->har
                     ? har_read(a->har, a->keep_cached, &out->v, &out->n, &cached, err, sizeof err)
                     : jsonl_read(a->jsonl, &out->v, &out->n, err, sizeof err);
        if (rc < 0) {
            cliutil_errorf(cmd, "%s", err);
            return 2;
        }
        if (cached)
            fprintf(stderr,
                    "restspy replay: %zu browser cache hit%s in %s left out: no request went "
                    "out (--keep-cached replays them)\n",
                    cached, cached == 1 ? "" : "s", a->har);
        out->cap = out->n;
        reqfilter_apply(&a->f, out->v, &out->n);
        return 0;
    }
    store *s = NULL;
    if (cliutil_open_store(cmd, &a->ro, envp, "nothing was persisted to replay", &s))
        return 2;
    int rc = cliutil_filter_each(cmd, s, &a->f, keep_copy, out);
    store_close(s);
    return rc ? 2 : 0;
}

/* ---- progress ---- */

typedef struct progress {
    bool tty;
    bool drawn;            /* a bar is on the screen */
    int64_t last_plain_us; /* elapsed µs at the last plain line */
    const uint64_t *mismatches;
    const char *what; /* "replay", "learn-noise pass 1/2" */
} progress;

static void fmt_eta(double secs, char *out, size_t len)
{
    unsigned long long s = (unsigned long long)secs + 1; /* rounded up */
    if (s >= 3600)
        snprintf(out, len, "%lluh%02llum", s / 3600, s / 60 % 60);
    else if (s >= 60)
        snprintf(out, len, "%llum%02llus", s / 60, s % 60);
    else
        snprintf(out, len, "%llus", s);
}

static void on_progress(void *ud, const replay_progress *p)
{
    progress *g = ud;
    /* Answers per second: errors are no load done (a refused connection
     * "completes" at any speed). */
    double rate = p->elapsed_s > 0 ? (double)(p->done - p->errors) / p->elapsed_s : 0;
    uint64_t mm = g->mismatches ? *g->mismatches : 0;
    if (!g->tty) {
        int64_t el = (int64_t)(p->elapsed_s * 1e6);
        if (el - g->last_plain_us < PLAIN_EVERY_US || p->done >= p->total)
            return;
        g->last_plain_us = el;
        fprintf(stderr, "%s: %llu/%llu done, %.0f req/s, %llu mismatch%s, %llu error%s\n", g->what,
                (unsigned long long)p->done, (unsigned long long)p->total, rate,
                (unsigned long long)mm, mm == 1 ? "" : "es", (unsigned long long)p->errors,
                p->errors == 1 ? "" : "s");
        return;
    }
    char bar[BAR_WIDTH + 1];
    size_t fill = p->total ? (size_t)(p->done * BAR_WIDTH / p->total) : BAR_WIDTH;
    for (size_t i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[BAR_WIDTH] = '\0';
    char eta[32] = "-";
    if (rate > 0 && p->done < p->total)
        fmt_eta((double)(p->total - p->done) / rate, eta, sizeof eta);
    else if (p->done >= p->total)
        snprintf(eta, sizeof eta, "0s");
    fprintf(stderr, "\r[%s] %llu/%llu  %.0f req/s  %llu mismatch%s  %llu error%s  ETA %s\033[K",
            bar, (unsigned long long)p->done, (unsigned long long)p->total, rate,
            (unsigned long long)mm, mm == 1 ? "" : "es", (unsigned long long)p->errors,
            p->errors == 1 ? "" : "s", eta);
    fflush(stderr);
    g->drawn = true;
}

static void progress_clear(progress *g)
{
    if (g->drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        g->drawn = false;
    }
}

/* ---- signals ---- */

static volatile sig_atomic_t g_interrupted;

static void on_signal(int sig)
{
    (void)sig;
    g_interrupted = 1;
    replay_stop(); /* atomics and uv_async_send: async-signal-safe */
}

typedef struct saved_signals {
    struct sigaction intr, term;
} saved_signals;

static void signals_catch(saved_signals *old)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    g_interrupted = 0;
    sigaction(SIGINT, &sa, &old->intr);
    sigaction(SIGTERM, &sa, &old->term);
}

static void signals_restore(const saved_signals *old)
{
    sigaction(SIGINT, &old->intr, NULL);
    sigaction(SIGTERM, &old->term, NULL);
}

/* ---- running ---- */

typedef struct run_ctx {
    report *rp;
    compare_opts copts;
    bool compare;
    uint64_t mismatches;
    /* --learn-noise */
    unsigned pass;  /* 1 or 2 */
    record **first; /* pass 1's answer per case index (owned), NULL on error */
    noise *learned;
    size_t nlearned;
    uint64_t pairs; /* cases answered in both passes */
} run_ctx;

static void on_answer(void *ud, replay_answer *a)
{
    run_ctx *x = ud;
    if (report_answer(x->rp, &x->copts, x->compare, a) == OUTCOME_MISMATCH)
        x->mismatches++;
}

static void on_learn_answer(void *ud, replay_answer *a)
{
    run_ctx *x = ud;
    if (a->error)
        return;
    if (x->pass == 1) {
        x->first[a->index] = a->got; /* kept for pass 2 */
        a->got = NULL;
        return;
    }
    const record *first = x->first[a->index];
    if (!first)
        return;
    compare_result res;
    compare_responses(&x->copts, first, a->got, &res);
    x->nlearned += noise_learn(x->learned, &res);
    compare_result_free(&res);
    x->pairs++;
}

static void fill_replay_opts(const args *a, replay_opts *o)
{
    memset(o, 0, sizeof *o);
    o->target = a->target;
    o->concurrency = a->concurrency;
    o->speed = a->speed;
    o->loops = a->loops;
    o->ordered = a->ordered;
    o->timeout_ms = a->timeout_ms;
    o->max_decoded = a->max_decoded;
    o->set_headers = a->set_headers.len ? &a->set_headers : NULL;
    o->drop_headers = a->drop.v;
    o->rewrites = a->rewrites;
    o->nrewrites = a->nrewrites;
    o->tls = a->tls;
    o->client_header = a->client_header;
}

/* --learn-noise FILE: two passes, then the rules. */
static int learn_noise(const args *a, const caselist *cl)
{
    char err[512];
    noise *learned = noise_new();
    if (access(a->learn, F_OK) == 0) {
        /* What the file already has is kept and is noise for this run too. */
        if (noise_load(learned, a->learn, err, sizeof err) < 0 ||
            noise_load(a->noise, a->learn, err, sizeof err) < 0) {
            cliutil_errorf(cmd, "%s", err);
            noise_free(learned);
            return 2;
        }
    }
    replay_opts o;
    fill_replay_opts(a, &o);
    o.loops = 1;
    size_t skipped = 0;
    for (size_t i = 0; i < cl->n; i++)
        skipped += replay_unreplayable(&o, cl->v[i], NULL, 0) != NULL;

    run_ctx x = {0};
    x.copts.noise = a->noise;
    x.copts.headers = a->cmp_headers.v;
    x.copts.max_diffs = LEARN_MAX_DIFFS;
    x.first = xcalloc(cl->n ? cl->n : 1, sizeof *x.first);
    x.learned = learned;
    progress g = {isatty(STDERR_FILENO) == 1, false, 0, NULL, NULL};
    saved_signals old;
    signals_catch(&old);
    int rc = 0;
    for (x.pass = 1; x.pass <= 2 && rc == 0 && !g_interrupted; x.pass++) {
        g.what = x.pass == 1 ? "learn-noise pass 1/2" : "learn-noise pass 2/2";
        if (replay_run(&o, cl->v, cl->n, on_learn_answer, &x, on_progress, &g, err, sizeof err) <
            0) {
            cliutil_errorf(cmd, "%s", err);
            rc = 2;
        }
        progress_clear(&g);
    }
    signals_restore(&old);
    if (rc == 0 && g_interrupted) {
        cliutil_errorf(cmd, "interrupted: nothing learned");
        rc = 2;
    }
    if (rc == 0 && x.pairs == 0) {
        cliutil_errorf(cmd, "no request was answered twice by %s: nothing to learn from",
                       a->target);
        rc = 2;
    }
    if (rc == 0 && noise_save(learned, a->learn, err, sizeof err) < 0) {
        cliutil_errorf(cmd, "%s", err);
        rc = 2;
    }
    if (rc == 0) {
        if (skipped)
            fprintf(stderr, "restspy replay: %zu request%s not replayable (skipped)\n", skipped,
                    skipped == 1 ? "" : "s");
        if (x.pairs < cl->n - skipped)
            fprintf(stderr, "restspy replay: %llu request%s not answered twice (skipped)\n",
                    (unsigned long long)(cl->n - skipped - x.pairs),
                    cl->n - skipped - x.pairs == 1 ? "" : "s");
        printf("learned %zu rule%s into %s\n", x.nlearned, x.nlearned == 1 ? "" : "s", a->learn);
        if (cliutil_flush_stdout(cmd))
            rc = 2;
    }
    for (size_t i = 0; i < cl->n; i++)
        record_free(x.first[i]);
    free(x.first);
    noise_free(learned);
    return rc;
}

static int replay_and_report(const args *a, const caselist *cl)
{
    replay_opts o;
    fill_replay_opts(a, &o);
    if (a->correlate == 1) {
        o.correlate = corr_new(a->noise);
        corr_scan(o.correlate, cl->v, cl->n);
    }
    run_ctx x = {0};
    x.rp = report_new(a->target);
    x.copts.noise = a->noise;
    x.copts.headers = a->cmp_headers.v;
    x.compare = a->compare != 0;

    /* Never sent, so reported up front: once per loop, like every case. */
    char why[256];
    for (size_t i = 0; i < cl->n; i++) {
        const char *reason = replay_unreplayable(&o, cl->v[i], why, sizeof why);
        if (reason)
            for (unsigned l = 0; l < o.loops; l++)
                report_add(x.rp, OUTCOME_UNREPLAYABLE, cl->v[i], l, NULL, reason, -1);
    }

    progress g = {isatty(STDERR_FILENO) == 1, false, 0, &x.mismatches, "replay"};
    char err[512];
    saved_signals old;
    signals_catch(&old);
    int64_t t0 = util_mono_us();
    int rc = replay_run(&o, cl->v, cl->n, on_answer, &x, on_progress, &g, err, sizeof err);
    int64_t t1 = util_mono_us();
    signals_restore(&old);
    progress_clear(&g);
    corr_free(o.correlate);
    if (rc < 0) {
        cliutil_errorf(cmd, "%s", err);
        report_free(x.rp);
        return 2;
    }
    report_set_elapsed(x.rp, (double)(t1 - t0) / 1e6);

    report_summary(x.rp, stdout, a->max_listed);
    int exit_code = report_exit_code(x.rp);
    if (a->report_json && report_write_json(x.rp, a->report_json, err, sizeof err) < 0) {
        cliutil_errorf(cmd, "%s", err);
        exit_code = 2;
    }
    if (a->report_junit && report_write_junit(x.rp, a->report_junit, err, sizeof err) < 0) {
        cliutil_errorf(cmd, "%s", err);
        exit_code = 2;
    }
    if (g_interrupted) {
        cliutil_errorf(cmd, "interrupted: the requests not yet answered are reported as errors");
        exit_code = 2;
    }
    if (cliutil_flush_stdout(cmd))
        exit_code = 2;
    report_free(x.rp);
    return exit_code;
}

int cli_replay(int argc, char **argv, char *const *envp)
{
    args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc) {
        args_free(&a);
        return rc == 1 ? 0 : 2;
    }
    caselist cl = {0};
    rc = load_cases(&a, envp, &cl);
    if (rc == 0 && cl.n == 0) {
        cliutil_errorf(cmd, "no requests to replay");
        rc = 2;
    }
    if (rc == 0)
        rc = a.learn ? learn_noise(&a, &cl) : replay_and_report(&a, &cl);
    records_free(cl.v, cl.n);
    args_free(&a);
    return rc;
}
