/* cli_requests: `restspy requests` (list captures), `restspy show ID`, and
 * `restspy replication diverged` (the same listing, of the replicated writes
 * whose ledger outcome is not "same", with that outcome as its last column).
 *
 * All only read: the store is opened read-only, so they can run while a
 * proxy writes to the same file (WAL). Text that came off the wire (paths,
 * headers, bodies) is printed with control bytes escaped, so a captured
 * request cannot drive the user's terminal. */
#include "cli/cli.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "cli/cliutil.h"
#include "capture/record.h"
#include "store/store.h"
#include "base/util.h"

#define DEFAULT_LIMIT 100

/* ---- printing what came off the wire ---- */

static void put_safe(FILE *f, const char *s, size_t n, bool multiline)
{
    buf b = BUF_INIT;
    cliutil_append_safe(&b, s, n, multiline);
    if (b.len)
        fwrite(b.data, 1, b.len, f);
    buf_free(&b);
}

static void put_safe_str(FILE *f, const char *s)
{
    put_safe(f, s ? s : "-", s ? strlen(s) : 1, false);
}

/* ---- `restspy requests` ---- */

static const char requests_usage[] =
    "usage: restspy requests [options]\n"
    "\n"
    "Lists captured requests, oldest first (the newest --limit of them), and\n"
    "their count (\"0 requests\" when none match). The ID column shows the end\n"
    "of each id, as long as it takes to be unique in the store: `restspy show`\n"
    "takes it as it is. A filter value no request can have is an error.\n"
    "\n"
    "  --store URL          store to read (default: the store setting, sqlite:restspy.db)\n"
    "  --config FILE        config file whose store setting to use\n" CLIUTIL_FILTERS_HELP
    "  --limit N            at most N requests, the newest ones (default 100; 0 = all)\n"
    "  --json               one JSON object per line, with headers and bodies\n"
    "  -h, --help           show this help\n"
    "\n"
    "The store also comes from RESTSPY_STORE or the config file (RESTSPY_CONFIG).\n";

static const char diverged_usage[] =
    "usage: restspy replication diverged [options]\n"
    "\n"
    "Lists the peers' writes this site applied whose answer here differed from\n"
    "the origin's (another status, or a body that differs under the\n"
    "replicate_noise rules), oldest first (the newest --limit of them), with\n"
    "how they differed: \"diverged: status 201 -> 409\", \"diverged: body\n"
    "$.id: 17 -> 23\". The filters are those of `restspy requests`; `restspy\n"
    "show ID` shows one whole. Exit status 0 whether or not any are listed.\n"
    "\n"
    "  --store URL          store to read (default: the store setting, sqlite:restspy.db)\n"
    "  --config FILE        config file whose store setting to use\n" CLIUTIL_FILTERS_HELP
    "  --limit N            at most N writes, the newest ones (default 100; 0 = all)\n"
    "  --json               one JSON object per line (the outcome in \"replication\")\n"
    "  -h, --help           show this help\n";

/* What a listing is: `restspy requests`, or the replicated writes that
 * diverged (the same table, the ledger outcome in the last column). */
typedef struct listing {
    const char *cmd;
    const char *usage;
    bool diverged;
} listing;

/* One line of output (text already escaped for printing), collected so the newest-first query can
 * be printed oldest first. */
typedef struct row {
    char time[40];
    bool today;
    char id[UUID7_STR_LEN + 1];
    char *method;
    int status;
    int64_t duration_us;
    char *target; /* path?query */
    char *error;  /* or, for a diverged listing, the outcome */
    char *json;   /* --json: the whole line */
} row;

typedef struct rowlist {
    row *v;
    size_t len, cap;
    bool json;
    bool outcome;  /* the last column is the ledger outcome (r->replication) */
    size_t id_len; /* characters of each id shown: its end, unique in the store */
} rowlist;

/* A copy of s that is safe to print (see cliutil_append_safe). */
static char *safe_dup(const char *s)
{
    buf b = BUF_INIT;
    cliutil_append_safe(&b, s, strlen(s), false);
    return buf_detach(&b);
}

static int collect_row(const record *r, void *ud)
{
    rowlist *l = ud;
    if (l->len == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    row *w = &l->v[l->len++];
    memset(w, 0, sizeof *w);
    if (l->json) {
        buf b = BUF_INIT;
        record_to_json(r, RECORD_JSON_HEADERS | RECORD_JSON_BODIES, &b);
        w->json = buf_detach(&b);
        return 0;
    }
    cliutil_fmt_local(r->started_at_us, true, w->time, sizeof w->time, &w->today);
    memcpy(w->id, r->id, sizeof w->id);
    w->method = safe_dup(r->method ? r->method : "-");
    w->status = r->status;
    w->duration_us = r->duration_us;
    buf t = BUF_INIT;
    const char *path = r->path ? r->path : "-";
    cliutil_append_safe(&t, path, strlen(path), false);
    if (r->query) {
        buf_append_char(&t, '?');
        cliutil_append_safe(&t, r->query, strlen(r->query), false);
    }
    w->target = buf_detach(&t);
    const char *last = l->outcome ? r->replication : r->error;
    w->error = last ? safe_dup(last) : NULL;
    return 0;
}

static void row_free(row *w)
{
    free(w->method);
    free(w->target);
    free(w->error);
    free(w->json);
}

static void rowlist_free(rowlist *l)
{
    for (size_t i = 0; i < l->len; i++)
        row_free(&l->v[i]);
    free(l->v);
}

static int terminal_width(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    const char *c = getenv("COLUMNS");
    int n = c ? atoi(c) : 0;
    return n > 0 ? n : 80;
}

/* Display width of s: code points (close enough for paths). */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

/* Prints s cut to at most width columns ("..." marks the cut), padded to
 * width when pad. */
static void put_cell(const char *s, size_t width, bool pad)
{
    size_t w = text_width(s);
    size_t shown = w;
    size_t bytes = strlen(s);
    if (w > width) {
        size_t keep = width > 3 ? width - 3 : 0;
        size_t cols = 0;
        bytes = 0;
        while (s[bytes] && cols < keep) {
            bytes++;
            while (((unsigned char)s[bytes] & 0xC0) == 0x80)
                bytes++;
            cols++;
        }
        fwrite(s, 1, bytes, stdout);
        fputs(width >= 3 ? "..." : "", stdout);
        shown = cols + (width >= 3 ? 3 : 0);
    } else {
        fputs(s, stdout);
    }
    if (pad)
        for (; shown < width; shown++)
            fputc(' ', stdout);
}

/* The short ids of l's rows (store_id_abbrev): 0, or 1 after reporting. */
static int abbreviate_ids(const char *cmd, store *s, rowlist *l)
{
    const char **ids = xmalloc((l->len ? l->len : 1) * sizeof *ids);
    for (size_t i = 0; i < l->len; i++)
        ids[i] = l->v[i].id;
    char err[512];
    int rc = store_id_abbrev(s, ids, l->len, &l->id_len, err, sizeof err);
    free(ids);
    if (rc != 0) {
        cliutil_errorf(cmd, "%s", err);
        return 1;
    }
    return 0;
}

static void print_table(const rowlist *l, bool reversed, bool tty)
{
    int iw = (int)l->id_len;
    size_t tw = 4, mw = 6, dw = 8, pw = 4;
    bool any_error = false;
    bool all_today = true;
    for (size_t i = 0; i < l->len; i++)
        all_today &= l->v[i].today;
    for (size_t i = 0; i < l->len; i++) {
        const row *w = &l->v[i];
        size_t t = all_today ? 12 : strlen(w->time);
        tw = t > tw ? t : tw;
        size_t m = text_width(w->method);
        mw = m > mw ? m : mw;
        char d[32];
        size_t dl = (size_t)snprintf(d, sizeof d, "%.1fms", (double)w->duration_us / 1000.0);
        dw = dl > dw ? dl : dw;
        size_t p = text_width(w->target);
        pw = p > pw ? p : pw;
        any_error |= w->error != NULL;
    }
    size_t ew = 0;
    for (size_t i = 0; i < l->len; i++)
        if (l->v[i].error && text_width(l->v[i].error) > ew)
            ew = text_width(l->v[i].error);
    if (tty) {
        /* Fit the line to the terminal by cutting the path (errors are
         * short and more useful whole). */
        size_t width = (size_t)terminal_width();
        size_t fixed = tw + 2 + l->id_len + 2 + mw + 2 + 6 + 2 + dw + 2;
        size_t rest = any_error ? ew + 2 : 0;
        size_t avail = width > fixed + rest ? width - fixed - rest : 0;
        if (avail < 20)
            avail = 20;
        if (pw > avail)
            pw = avail;
    }
    printf("%-*s  %-*s  %-*s  %-6s  %*s  ", (int)tw, "TIME", iw, "ID", (int)mw, "METHOD", "STATUS",
           (int)dw, "DURATION");
    if (any_error)
        printf("%-*s  %s\n", (int)pw, "PATH", l->outcome ? "OUTCOME" : "ERROR");
    else
        printf("PATH\n");
    for (size_t k = 0; k < l->len; k++) {
        const row *w = &l->v[reversed ? l->len - 1 - k : k];
        const char *t = all_today ? w->time + 11 : w->time;
        size_t idl = strlen(w->id);
        printf("%-*s  %-*s  ", (int)tw, t, iw, w->id + (idl > l->id_len ? idl - l->id_len : 0));
        put_cell(w->method, mw, true);
        char st[16], d[32];
        if (w->status)
            snprintf(st, sizeof st, "%d", w->status);
        else
            snprintf(st, sizeof st, "-");
        snprintf(d, sizeof d, "%.1fms", (double)w->duration_us / 1000.0);
        printf("  %-6s  %*s  ", st, (int)dw, d);
        put_cell(w->target, pw, w->error != NULL);
        if (w->error)
            printf("  %s", w->error);
        fputc('\n', stdout);
    }
}

/* The command, with the filter f its caller frees on every path. */
static int run(const listing *ls, int argc, char **argv, char *const *envp, cliutil_filter *f)
{
    const char *cmd = ls->cmd;
    cliutil_read_opts ro = {0};

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int m;
        if (cliutil_is_help(a)) {
            fputs(ls->usage, stdout);
            return 0;
        }
        if ((m = cliutil_read_opt(cmd, argc, argv, &i, &ro)) ||
            (m = cliutil_filter_opt(cmd, argc, argv, &i, f, false))) {
            if (m < 0)
                return 2;
            continue;
        }
        return cliutil_bad_arg(cmd, a);
    }
    if (cliutil_filter_check(cmd, f))
        return 2;
    store_query q = f->q;
    q.diverged = q.diverged || ls->diverged; /* --replication diverged, or the listing's */

    store *s = NULL;
    int rc = cliutil_open_store(cmd, &ro, envp, "nothing was persisted", &s);
    if (rc)
        return rc;
    /* "The newest N, oldest first": fetch newest first, print reversed;
     * one more than N tells whether the limit left some out. */
    q.newest_first = q.limit > 0;
    if (q.limit > 0 && q.limit < INT64_MAX)
        q.limit++;
    rowlist l = {0};
    l.json = ro.json;
    l.outcome = ls->diverged;
    char err[512];
    if (store_query_each(s, &q, collect_row, &l, err, sizeof err) != 0) {
        cliutil_errorf(cmd, "%s", err);
        rowlist_free(&l);
        store_close(s);
        return 1;
    }
    bool more = f->q.limit > 0 && l.len > (uint64_t)f->q.limit;
    if (more)
        row_free(&l.v[--l.len]); /* the oldest, fetched only to know */
    rc = ro.json ? 0 : abbreviate_ids(cmd, s, &l);
    store_close(s);
    if (rc) {
        rowlist_free(&l);
        return rc;
    }
    if (ro.json) {
        for (size_t k = 0; k < l.len; k++)
            puts(l.v[q.newest_first ? l.len - 1 - k : k].json);
    } else {
        /* The header and the count even for none: an empty answer is
         * stated, not left for the user to guess. */
        print_table(&l, q.newest_first, isatty(STDOUT_FILENO));
        if (ls->diverged)
            printf("%zu diverged write%s", l.len, l.len == 1 ? "" : "s");
        else
            printf("%zu request%s", l.len, l.len == 1 ? "" : "s");
        if (more)
            printf(" (the newest; more match: --limit 0 lists all)");
        putchar('\n');
    }
    rowlist_free(&l);
    return cliutil_flush_stdout(cmd);
}

static int list(const listing *ls, int argc, char **argv, char *const *envp)
{
    cliutil_filter f = {0};
    f.q.limit = DEFAULT_LIMIT;
    int rc = run(ls, argc, argv, envp, &f);
    reqfilter_free(&f);
    return rc;
}

int cli_requests(int argc, char **argv, char *const *envp)
{
    static const listing ls = {"requests", requests_usage, false};
    return list(&ls, argc, argv, envp);
}

int cli_repl_diverged(int argc, char **argv, char *const *envp)
{
    static const listing ls = {"replication diverged", diverged_usage, true};
    return list(&ls, argc, argv, envp);
}

/* ---- `restspy show` ---- */

static const char show_usage[] =
    "usage: restspy show ID [options]\n"
    "\n"
    "Shows one captured request and its response in full. ID is the request id\n"
    "(the X-Request-Id), or any start or end of it that no other stored id\n"
    "starts or ends with (at least 4 characters; `restspy requests` shows such\n"
    "ends). An ambiguous ID is an error that lists the requests it matches.\n"
    "\n"
    "  --store URL     store to read (default: the store setting, sqlite:restspy.db)\n"
    "  --config FILE   config file whose store setting to use\n"
    "  --json          the record as JSON, with headers and bodies\n"
    "  -h, --help      show this help\n";

/* One body as stored: size is its size on the wire; enc its Content-Encoding
 * when it had one (the stored body is then the decoded one, unless note
 * says otherwise); note NULL, "undecoded: why" (stored as received) or
 * "dropped: why" (not stored). */
static void show_body(const buf *b, uint64_t size, bool truncated, const char *enc,
                      const char *note)
{
    const char *d = b->data ? b->data : "";
    if (b->len == 0) {
        if (note) {
            printf("(%llu bytes, Content-Encoding ", (unsigned long long)size);
            put_safe_str(stdout, enc);
            fputs(", not stored: ", stdout);
            put_safe_str(stdout, note);
            fputs(")\n", stdout);
        } else if (size) {
            printf("(%llu bytes, not captured)\n", (unsigned long long)size);
        } else {
            printf("(no body)\n");
        }
        return;
    }
    /* What the bytes below are, before them: a decoded body is not what
     * went over the wire. */
    if (enc || note) {
        fputs(note ? "(" : "(decoded from ", stdout);
        put_safe_str(stdout, note ? note : enc);
        if (note) {
            fputs("; shown as received, Content-Encoding ", stdout);
            put_safe_str(stdout, enc);
        }
        printf(", %llu bytes on the wire)\n", (unsigned long long)size);
    }
    if (utf8_valid(d, b->len)) {
        size_t i = 0;
        while (i < b->len && isspace((unsigned char)d[i]))
            i++;
        json_t *j = NULL;
        if (i < b->len && (d[i] == '{' || d[i] == '['))
            j = json_loadb(d, b->len, 0, NULL);
        if (j) {
            char *pretty = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            json_decref(j);
            if (pretty) {
                put_safe(stdout, pretty, strlen(pretty), true);
                fputc('\n', stdout);
                free(pretty);
            }
        } else {
            put_safe(stdout, d, b->len, true);
            if (d[b->len - 1] != '\n')
                fputc('\n', stdout);
        }
    } else {
        printf("(%zu bytes of binary data, base64:)\n", b->len);
        buf e = BUF_INIT;
        buf_append_base64(&e, d, b->len);
        for (size_t i = 0; i < e.len; i += 76)
            printf("%.*s\n", (int)(e.len - i < 76 ? e.len - i : 76), e.data + i);
        buf_free(&e);
    }
    if (truncated && enc && !note)
        printf("(truncated: the first %zu bytes of the decoded body)\n", b->len);
    else if (truncated)
        printf("(truncated: first %zu of %llu bytes)\n", b->len, (unsigned long long)size);
}

static void show_headers(const http_headers *h)
{
    for (size_t i = 0; i < h->len; i++) {
        put_safe_str(stdout, h->v[i].name);
        fputs(": ", stdout);
        put_safe_str(stdout, h->v[i].value);
        fputc('\n', stdout);
    }
}

static void show_record(const record *r)
{
    char t[40];
    cliutil_fmt_local(r->started_at_us, true, t, sizeof t, NULL);
    char tz[16] = "";
    time_t secs = (time_t)(r->started_at_us / 1000000);
    struct tm tm;
    localtime_r(&secs, &tm);
    strftime(tz, sizeof tz, "%z", &tm);

    printf("ID        %s\n", r->id);
    printf("Time      %s %s\n", t, tz);
    printf("Node      ");
    put_safe_str(stdout, r->node);
    printf("\nClient    ");
    put_safe_str(stdout, r->client_addr);
    printf("\nRequest   ");
    put_safe_str(stdout, r->method);
    fputc(' ', stdout);
    if (r->host) {
        put_safe_str(stdout, r->scheme ? r->scheme : "http");
        fputs("://", stdout);
        put_safe_str(stdout, r->host);
    }
    put_safe_str(stdout, r->path);
    if (r->query) {
        fputc('?', stdout);
        put_safe_str(stdout, r->query);
    }
    if (r->status)
        printf("\nStatus    %d\n", r->status);
    else
        printf("\nStatus    - (no response)\n");
    printf("Duration  %.3f ms", (double)r->duration_us / 1000.0);
    if (r->upstream_us >= 0)
        printf(" (upstream %.3f ms)", (double)r->upstream_us / 1000.0);
    printf("\nRule      ");
    put_safe_str(stdout, r->rule);
    printf("\nOrigin    ");
    put_safe_str(stdout, r->origin);
    if (r->error) {
        printf("\nError     ");
        put_safe_str(stdout, r->error);
    }
    printf("\n\n--- request ---\n");
    show_headers(&r->req_headers);
    fputc('\n', stdout);
    show_body(&r->req_body, r->req_body_size, r->req_truncated, r->req_encoding, r->req_body_note);
    printf("\n--- response ---\n");
    if (r->status) {
        show_headers(&r->resp_headers);
        fputc('\n', stdout);
        show_body(&r->resp_body, r->resp_body_size, r->resp_truncated, r->resp_encoding,
                  r->resp_body_note);
    } else {
        printf("(none)\n");
    }
}

int cli_show(int argc, char **argv, char *const *envp)
{
    static const char cmd[] = "show";
    const char *id = NULL;
    cliutil_read_opts ro = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int m;
        if (cliutil_is_help(a)) {
            fputs(show_usage, stdout);
            return 0;
        }
        if ((m = cliutil_read_opt(cmd, argc, argv, &i, &ro))) {
            if (m < 0)
                return 2;
            continue;
        }
        if (a[0] == '-')
            return cliutil_bad_arg(cmd, a);
        if (id) {
            cliutil_errorf(cmd, "unexpected argument '%s' (one ID only)", a);
            return 2;
        }
        id = a;
    }
    if (!id) {
        cliutil_errorf(cmd, "missing request ID (see restspy show --help)");
        return 2;
    }

    store *s = NULL;
    int rc = cliutil_open_store(cmd, &ro, envp, "nothing was persisted", &s);
    if (rc)
        return rc;
    record *r = NULL;
    char err[512];
    int found = store_get(s, id, &r, err, sizeof err);
    store_close(s);
    if (found < 0) {
        cliutil_errorf(cmd, "%s", err);
        return 1;
    }
    if (found == 0) {
        cliutil_errorf(cmd, "no request with id %s", id);
        return 1;
    }
    if (ro.json) {
        buf b = BUF_INIT;
        record_to_json(r, RECORD_JSON_HEADERS | RECORD_JSON_BODIES, &b);
        json_t *j = json_loadb(b.data, b.len, JSON_ALLOW_NUL, NULL);
        char *pretty = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        puts(pretty ? pretty : b.data);
        free(pretty);
        json_decref(j);
        buf_free(&b);
    } else {
        show_record(r);
    }
    record_free(r);
    return cliutil_flush_stdout(cmd);
}
