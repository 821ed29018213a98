/* cliutil: command-line plumbing shared by the commands (see cliutil.h). */
#include "cli/cliutil.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http/httpmsg.h"
#include "base/glob.h"
#include "base/rfc3339.h"
#include "base/util.h"

void cliutil_errorf(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "restspy %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

bool cliutil_is_help(const char *arg)
{
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

int cliutil_flag_value(const char *cmd, int argc, char **argv, int *i, const char *name,
                       const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        cliutil_errorf(cmd, "%s needs a value", name);
        return -1;
    }
    *val = argv[++*i];
    return 1;
}

int cliutil_tls_flag(const char *cmd, int argc, char **argv, int *i, hclient_tls *t)
{
    const char *a = argv[*i];
    if (strcmp(a, "--insecure") == 0 || strcmp(a, "-k") == 0) {
        t->insecure = true;
        return 1;
    }
    static const char *const names[] = {"--cacert", "--cert", "--key"};
    const char **vals[] = {&t->ca_file, &t->cert_file, &t->key_file};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        int m = cliutil_flag_value(cmd, argc, argv, i, names[k], vals[k]);
        if (m < 0)
            return -1;
        if (m == 0)
            continue;
        /* Read now: libcurl would otherwise fail every request alike. */
        if (access(*vals[k], R_OK) != 0) {
            cliutil_errorf(cmd, "cannot read %s %s: %s", names[k], *vals[k], strerror(errno));
            return -1;
        }
        return 1;
    }
    return 0;
}

int cliutil_read_opt(const char *cmd, int argc, char **argv, int *i, cliutil_read_opts *o)
{
    if (strcmp(argv[*i], "--json") == 0) {
        o->json = true;
        return 1;
    }
    int m;
    if ((m = cliutil_flag_value(cmd, argc, argv, i, "--store", &o->store_url)) ||
        (m = cliutil_flag_value(cmd, argc, argv, i, "--config", &o->config_file)))
        return m;
    return 0;
}

int cliutil_bad_arg(const char *cmd, const char *arg)
{
    if (arg[0] == '-')
        cliutil_errorf(cmd, "unknown option %s (see restspy %s --help)", arg, cmd);
    else
        cliutil_errorf(cmd, "unexpected argument '%s' (see restspy %s --help)", arg, cmd);
    return 2;
}

int cliutil_config_load(const char *cmd, char *const *envp, const char *const *flags, size_t nflags,
                        config **out)
{
    /* config_load takes an argv: only the flags that were given go in, so
     * that the file and the environment fill in the rest. It does not
     * modify its argv, hence the casts. */
    char *av[16];
    int ac = 0;
    for (size_t i = 0; i + 1 < nflags && ac + 2 <= 16; i += 2) {
        if (!flags[i + 1])
            continue;
        av[ac++] = (char *)flags[i];
        av[ac++] = (char *)flags[i + 1];
    }
    char err[512];
    if (config_load(out, ac, av, envp, NULL, NULL, err, sizeof err) != 0) {
        cliutil_errorf(cmd, "%s", err);
        return 2;
    }
    return 0;
}

int cliutil_open_store(const char *cmd, const cliutil_read_opts *o, char *const *envp,
                       const char *why_off, store **out)
{
    const char *flags[] = {"--config", o->config_file, "--store", o->store_url};
    config *c = NULL;
    int rc = cliutil_config_load(cmd, envp, flags, 4, &c);
    if (rc)
        return rc;
    if (!c->store || strcmp(c->store, "off") == 0) {
        cliutil_errorf(cmd, "the store is off (store = off): %s", why_off);
        config_unref(c);
        return 1;
    }
    store_options so = {0};
    so.url = c->store;
    so.queue_max = 1;
    so.batch_max = 1;
    so.busy_timeout_ms = c->busy_timeout_ms;
    so.read_only = true;
    char err[512];
    *out = store_open(&so, err, sizeof err);
    config_unref(c);
    if (!*out) {
        cliutil_errorf(cmd, "%s", err);
        return 1;
    }
    return 0;
}

void cliutil_append_safe(buf *b, const char *s, size_t n, bool multiline)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && !(multiline && (c == '\n' || c == '\t'))) || c == 0x7f) {
            char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            buf_append(b, e, 4);
        } else {
            buf_append_char(b, (char)c);
        }
    }
}

void cliutil_fmt_local(int64_t us, bool with_ms, char *out, size_t len, bool *today)
{
    /* Round down, also before 1970: -0.5 s is 23:59:59.500 of the day before. */
    time_t t = (time_t)(us / 1000000);
    int ms = (int)((us % 1000000) / 1000);
    if (us < 0 && us % 1000000) {
        t--;
        ms = (int)((us % 1000000 + 1000000) / 1000);
    }
    struct tm tm = {0};
    localtime_r(&t, &tm);
    if (today) {
        struct tm now_tm;
        time_t now = time(NULL);
        localtime_r(&now, &now_tm);
        *today = tm.tm_year == now_tm.tm_year && tm.tm_yday == now_tm.tm_yday;
    }
    /* 24 bytes hold any year an int64_t of µs can reach (6 digits and a sign). */
    char tmp[24];
    if (strftime(tmp, sizeof tmp, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(tmp, sizeof tmp, "-");
    if (with_ms)
        snprintf(out, len, "%s.%03d", tmp, ms);
    else
        snprintf(out, len, "%s", tmp);
}

int cliutil_flush_stdout(const char *cmd)
{
    if (fflush(stdout) != 0) {
        cliutil_errorf(cmd, "cannot write output: %s", strerror(errno));
        return 1;
    }
    return 0;
}

/* ---- selecting captured requests ---- */

/* Parses n decimal digits at s. -1 if any is not a digit. */
/* Parses a --since/--until value into µs since the epoch: an age ("10m",
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

/* parse_time for the value v of flag (--since, --until). 0, or -1 after
 * reporting. */
static int time_value(const char *cmd, const char *flag, const char *v, int64_t now_us,
                      int64_t *out)
{
    if (parse_time(v, now_us, out) == 0)
        return 0;
    cliutil_errorf(cmd,
                   "bad value for %s: '%s' (expected 2026-11-27T05:00:00Z, 2026-11-27 or an age "
                   "like 10m)",
                   flag, v);
    return -1;
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

/* The single-valued filter flags, a bit each in cliutil_filter.seen. */
static const char *const single_flags[] = {"--method", "--path", "--status", "--since", "--until",
                                           "--origin", "--node", "--limit",  NULL};

/* Reports a flag given twice. 0 the first time, -1 after reporting. */
static int once(const char *cmd, cliutil_filter *f, const char *flag)
{
    for (unsigned b = 0; single_flags[b]; b++) {
        if (strcmp(single_flags[b], flag) != 0)
            continue;
        if (f->seen & (1u << b)) {
            cliutil_errorf(cmd, "%s given twice (it takes one value)", flag);
            return -1;
        }
        f->seen |= 1u << b;
        return 0;
    }
    assert(0 && "not a single-valued filter flag");
    return 0;
}

/* Checks the value v of a flag that takes plain text (the pointer is kept
 * in f): a value no record can have is refused. 0, or -1 after reporting. */
static int check_text(const char *cmd, const char *flag, const char *v)
{
    const char *why = NULL;
    char e[400];
    if (strcmp(flag, "--method") == 0) {
        if (!httpmsg_is_token(v, strlen(v)))
            why = "expected a method such as GET";
    } else if (strcmp(flag, "--path") == 0) {
        if (v[0] != '/' && v[0] != '*')
            why = "expected a path glob starting with / or *";
    } else if (strcmp(flag, "--origin") == 0) {
        size_t k = 0;
        while (origins[k] && strcmp(origins[k], v) != 0)
            k++;
        if (!origins[k])
            why = "expected local, replicated or imported";
    } else {
        /* --node: what the node setting takes, nothing else is stored. */
        assert(strcmp(flag, "--node") == 0);
        config *c = config_new();
        if (config_set(c, "node", v, e, sizeof e) != 0) {
            why = strstr(e, "(expected ");
            why = why ? why + 1 : "expected a node name";
            e[strlen(e) - 1] = '\0'; /* the closing parenthesis */
        }
        config_unref(c);
    }
    if (!why)
        return 0;
    cliutil_errorf(cmd, "bad value for %s: '%s' (%s)", flag, v, why);
    return -1;
}

static int64_t filter_now(cliutil_filter *f)
{
    if (!f->now_us)
        f->now_us = util_now_us();
    return f->now_us;
}

int cliutil_filter_opt(const char *cmd, int argc, char **argv, int *i, cliutil_filter *f,
                       bool with_ids)
{
    store_query *q = &f->q;
    const char *v;
    int m;
    const char *const text_flags[] = {"--method", "--path", "--origin", "--node"};
    const char **text_fields[] = {&q->method, &q->path_glob, &q->origin, &q->node};
    for (size_t k = 0; k < sizeof text_flags / sizeof text_flags[0]; k++) {
        if ((m = cliutil_flag_value(cmd, argc, argv, i, text_flags[k], &v))) {
            if (m < 0 || once(cmd, f, text_flags[k]) < 0 || check_text(cmd, text_flags[k], v) < 0)
                return -1;
            *text_fields[k] = v;
            return 1;
        }
    }
    if ((m = cliutil_flag_value(cmd, argc, argv, i, "--status", &v))) {
        if (m < 0 || once(cmd, f, "--status") < 0)
            return -1;
        if (parse_status(v, &q->status_min, &q->status_max) < 0) {
            cliutil_errorf(cmd,
                           "bad value for --status: '%s' (expected a class like 5xx, a code like "
                           "404 or a range like 200-299, within %d-%d)",
                           v, STATUS_MIN, STATUS_MAX);
            return -1;
        }
        return 1;
    }
    if ((m = cliutil_flag_value(cmd, argc, argv, i, "--since", &v))) {
        if (m < 0 || once(cmd, f, "--since") < 0 ||
            time_value(cmd, "--since", v, filter_now(f), &q->since_us) < 0)
            return -1;
        f->since_text = v;
        return 1;
    }
    if ((m = cliutil_flag_value(cmd, argc, argv, i, "--until", &v))) {
        if (m < 0 || once(cmd, f, "--until") < 0 ||
            time_value(cmd, "--until", v, filter_now(f), &q->until_us) < 0)
            return -1;
        f->until_text = v;
        return 1;
    }
    if ((m = cliutil_flag_value(cmd, argc, argv, i, "--limit", &v))) {
        if (m < 0 || once(cmd, f, "--limit") < 0)
            return -1;
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (errno || end == v || *end || n < 0) {
            cliutil_errorf(cmd, "bad value for --limit: '%s' (expected a number, 0 = all)", v);
            return -1;
        }
        q->limit = n;
        return 1;
    }
    if (with_ids && (m = cliutil_flag_value(cmd, argc, argv, i, "--id", &v))) {
        if (m < 0)
            return -1;
        if (strlen(v) < STORE_ID_MIN || strlen(v) > UUID7_STR_LEN) {
            cliutil_errorf(cmd,
                           "bad value for --id: '%s' (expected an id, or a start or end of "
                           "one of at least %d characters)",
                           v, STORE_ID_MIN);
            return -1;
        }
        f->ids = xrealloc(f->ids, (f->nids + 1) * sizeof *f->ids);
        f->ids[f->nids++] = v;
        return 1;
    }
    return 0;
}

int cliutil_filter_check(const char *cmd, const cliutil_filter *f)
{
    if (f->since_text && f->until_text && f->q.since_us >= f->q.until_us) {
        cliutil_errorf(cmd, "--since %s is not before --until %s: no request can match",
                       f->since_text, f->until_text);
        return 2;
    }
    return 0;
}

static bool str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

bool cliutil_filter_match(const cliutil_filter *f, const record *r)
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

void cliutil_filter_apply(const cliutil_filter *f, record **v, size_t *n)
{
    ranked *k = xmalloc((*n ? *n : 1) * sizeof *k);
    size_t kept = 0;
    for (size_t i = 0; i < *n; i++) {
        if (cliutil_filter_match(f, v[i])) {
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

void cliutil_filter_free(cliutil_filter *f)
{
    free(f->ids);
    f->ids = NULL;
    f->nids = 0;
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void copy_headers(http_headers *dst, const http_headers *src)
{
    for (size_t i = 0; i < src->len; i++)
        http_headers_add(dst, src->v[i].name, strlen(src->v[i].name), src->v[i].value,
                         strlen(src->v[i].value));
}

static void copy_buf(buf *dst, const buf *src)
{
    buf_init(dst);
    if (src->len)
        buf_append(dst, src->data, src->len);
}

record *cliutil_record_copy(const record *r)
{
    record *c = xmalloc(sizeof *c);
    *c = *r;
    c->node = dup_or_null(r->node);
    c->client_addr = dup_or_null(r->client_addr);
    c->method = dup_or_null(r->method);
    c->scheme = dup_or_null(r->scheme);
    c->host = dup_or_null(r->host);
    c->path = dup_or_null(r->path);
    c->query = dup_or_null(r->query);
    c->rule = dup_or_null(r->rule);
    c->origin = dup_or_null(r->origin);
    c->error = dup_or_null(r->error);
    c->replication = dup_or_null(r->replication);
    c->req_encoding = dup_or_null(r->req_encoding);
    c->req_body_note = dup_or_null(r->req_body_note);
    c->resp_encoding = dup_or_null(r->resp_encoding);
    c->resp_body_note = dup_or_null(r->resp_body_note);
    memset(&c->req_headers, 0, sizeof c->req_headers);
    memset(&c->resp_headers, 0, sizeof c->resp_headers);
    copy_headers(&c->req_headers, &r->req_headers);
    copy_headers(&c->resp_headers, &r->resp_headers);
    copy_buf(&c->req_body, &r->req_body);
    copy_buf(&c->resp_body, &r->resp_body);
    return c;
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
    c->v[c->n++] = cliutil_record_copy(r);
    return 0;
}

int cliutil_filter_each(const char *cmd, store *s, const cliutil_filter *f,
                        int (*fn)(const record *r, void *ud), void *ud)
{
    char err[512];
    if (!f->nids && f->q.limit <= 0) {
        /* Everything, oldest first: streamed, whatever the store's size. */
        store_query q = f->q;
        q.limit = 0;
        q.newest_first = false;
        if (store_query_each(s, &q, fn, ud, err, sizeof err) != 0) {
            cliutil_errorf(cmd, "%s", err);
            return 1;
        }
        return 0;
    }
    collected c = {0};
    int rc = 0;
    if (f->nids) {
        for (size_t i = 0; i < f->nids && rc == 0; i++) {
            record *r = NULL;
            int found = store_get(s, f->ids[i], &r, err, sizeof err);
            if (found < 0) {
                cliutil_errorf(cmd, "%s", err);
                rc = 1;
            } else if (found == 0) {
                cliutil_errorf(cmd, "no request with id %s", f->ids[i]);
                rc = 1;
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
        if (store_query_each(s, &q, collect, &c, err, sizeof err) != 0) {
            cliutil_errorf(cmd, "%s", err);
            rc = 1;
        }
    }
    if (rc == 0) {
        cliutil_filter_apply(f, c.v, &c.n);
        for (size_t i = 0; i < c.n; i++)
            if (fn(c.v[i], ud))
                break;
    }
    for (size_t i = 0; i < c.n; i++)
        record_free(c.v[i]);
    free(c.v);
    return rc;
}

/* ---- writing files whole ---- */

int cliutil_out_open(const char *cmd, const char *path, cliutil_out *o)
{
    memset(o, 0, sizeof *o);
    o->path = path;
    if (strcmp(path, "-") == 0) {
        o->f = stdout;
        return 0;
    }
    buf t = BUF_INIT;
    buf_appendf(&t, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(t.data);
    if (fd < 0) {
        cliutil_errorf(cmd, "cannot write %s: %s", path, strerror(errno));
        buf_free(&t);
        return -1;
    }
    /* mkstemp makes the file private; the result gets the usual mode. */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    o->tmp = buf_detach(&t);
    o->f = fdopen(fd, "w");
    if (!o->f) {
        cliutil_errorf(cmd, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        unlink(o->tmp);
        free(o->tmp);
        o->tmp = NULL;
        return -1;
    }
    return 0;
}

int cliutil_out_close(const char *cmd, cliutil_out *o, bool discard)
{
    errno = 0;
    int e = 0;
    if (fflush(o->f) != 0 || ferror(o->f))
        e = errno ? errno : EIO;
    if (!o->tmp) {
        /* stdout: nothing to rename or remove */
        if (e && !discard) {
            cliutil_errorf(cmd, "cannot write output: %s", strerror(e));
            return -1;
        }
        return 0;
    }
    if (fclose(o->f) != 0 && !e)
        e = errno;
    o->f = NULL;
    if (!e && !discard && rename(o->tmp, o->path) != 0)
        e = errno;
    int rc = 0;
    if (e || discard) {
        unlink(o->tmp);
        if (e && !discard) {
            cliutil_errorf(cmd, "cannot write %s: %s", o->path, strerror(e));
            rc = -1;
        }
    }
    free(o->tmp);
    o->tmp = NULL;
    return rc;
}
