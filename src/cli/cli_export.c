/* cli_export: `restspy export` (captured requests out as HAR 1.2, JSON lines
 * or curl command lines) and `restspy import` (HAR or JSON lines into the
 * store, origin "imported").
 *
 * Export reads the store read-only (it runs next to a proxy writing the same
 * file) and streams: without --limit or --id, records go from the query to
 * the file one at a time, whatever the store's size. A file is written to a
 * temporary name and renamed, so a reader never sees half an export. */
#include "cli/cli.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cliutil.h"
#include "formats/har.h"
#include "store/store.h"
#include "base/url.h"
#include "base/util.h"

#define DEFAULT_CURL_BASE "http://localhost"

/* ---- `restspy export` ---- */

static const char export_usage[] =
    "usage: restspy export (--har FILE | --jsonl FILE | --curl) [filters] [options]\n"
    "\n"
    "Writes captured requests, oldest first, in one of three forms (FILE may be\n"
    "'-' for standard output; a file is written whole or not at all):\n"
    "\n"
    "  --har FILE           HAR 1.2 (timings, headers, bodies; base64 for binary bodies),\n"
    "                       readable by browsers' devtools and `restspy replay --har`\n"
    "  --jsonl FILE         one JSON object per line, with headers and bodies\n"
    "                       (`restspy replay --jsonl`, `restspy import --jsonl`)\n"
    "  --curl               one curl command line per request, on standard output (the\n"
    "                       bodies byte for byte; a request whose body was not stored or\n"
    "                       is incomplete becomes a '# restspy:' comment line saying why)\n"
    "  --target URL         the server the curl lines call (default http://localhost)\n"
    "  --store URL          store to read (default: the store setting, sqlite:restspy.db)\n"
    "  --config FILE        config file whose store setting to use\n"
    "\n"
    "Filters (as `restspy requests`):\n" CLIUTIL_FILTERS_HELP
    "  --id ID              only this request (repeatable; an id, or a unique start or end of 4+)\n"
    "  --limit N            only the newest N (default: all)\n"
    "  -h, --help           show this help\n"
    "\n"
    "Values redacted at capture stay redacted ([redacted]) in every form.\n";

typedef enum { OUT_NONE, OUT_HAR, OUT_JSONL, OUT_CURL } out_kind;

typedef struct export_ctx {
    out_kind kind;
    FILE *f;
    har_writer *har;
    const char *base;
    size_t n;
    size_t commented; /* curl: requests written as comments, not commands */
} export_ctx;

static int export_one(const record *r, void *ud)
{
    export_ctx *x = ud;
    if (x->kind == OUT_HAR)
        har_add(x->har, r);
    else if (x->kind == OUT_JSONL)
        jsonl_write(x->f, r);
    else if (!curl_write(x->f, r, x->base))
        x->commented++;
    x->n++;
    /* A closed pipe or a full disk: stop reading the store. */
    return ferror(x->f) ? 1 : 0;
}

static bool set_kind(const char *cmd, out_kind *kind, out_kind k)
{
    if (*kind != OUT_NONE && *kind != k) {
        cliutil_errorf(cmd, "one output only: --har, --jsonl or --curl");
        return false;
    }
    *kind = k;
    return true;
}

int cli_export(int argc, char **argv, char *const *envp)
{
    static const char cmd[] = "export";
    cliutil_read_opts ro = {0};
    cliutil_filter f = {0};
    out_kind kind = OUT_NONE;
    const char *path = NULL, *base = NULL, *v;
    char *trimmed = NULL; /* the curl base, owned */
    int rc = 2;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int m;
        if (cliutil_is_help(a)) {
            fputs(export_usage, stdout);
            rc = 0;
            goto out;
        }
        if (strcmp(a, "--curl") == 0) {
            if (!set_kind(cmd, &kind, OUT_CURL))
                goto out;
            continue;
        }
        if ((m = cliutil_flag_value(cmd, argc, argv, &i, "--har", &v))) {
            if (m < 0 || !set_kind(cmd, &kind, OUT_HAR))
                goto out;
            path = v;
            continue;
        }
        if ((m = cliutil_flag_value(cmd, argc, argv, &i, "--jsonl", &v))) {
            if (m < 0 || !set_kind(cmd, &kind, OUT_JSONL))
                goto out;
            path = v;
            continue;
        }
        if ((m = cliutil_flag_value(cmd, argc, argv, &i, "--store", &ro.store_url)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--config", &ro.config_file)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--target", &base)) ||
            (m = cliutil_filter_opt(cmd, argc, argv, &i, &f, true))) {
            if (m < 0)
                goto out;
            continue;
        }
        rc = cliutil_bad_arg(cmd, a);
        goto out;
    }
    if (cliutil_filter_check(cmd, &f))
        goto out;
    if (kind == OUT_NONE) {
        cliutil_errorf(cmd, "what to write: --har FILE, --jsonl FILE or --curl (see restspy "
                            "export --help)");
        goto out;
    }
    if (kind != OUT_CURL && !*path) {
        cliutil_errorf(cmd, "bad value for --%s: empty (a file, or - for standard output)",
                       kind == OUT_HAR ? "har" : "jsonl");
        goto out;
    }
    if (base && kind != OUT_CURL) {
        cliutil_errorf(cmd, "--target only applies to --curl");
        goto out;
    }
    char err[128];
    if (base && !(trimmed = curl_base(base, err, sizeof err))) {
        cliutil_errorf(cmd, "bad value for --target: '%s' (%s)", base, err);
        goto out;
    }

    store *s = NULL;
    rc = cliutil_open_store(cmd, &ro, envp, "nothing was persisted to export", &s);
    if (rc)
        goto out;
    cliutil_out o;
    if (cliutil_out_open(cmd, kind == OUT_CURL ? "-" : path, &o) < 0) {
        store_close(s);
        rc = 1;
        goto out;
    }
    export_ctx x = {kind, o.f, NULL, trimmed ? trimmed : DEFAULT_CURL_BASE, 0, 0};
    if (kind == OUT_HAR)
        x.har = har_begin(o.f);
    rc = cliutil_filter_each(cmd, s, &f, export_one, &x);
    store_close(s);
    if (kind == OUT_HAR)
        har_end(x.har); /* a failed write leaves the stream's error set */
    /* A store error discards the file; a write error is reported here. */
    if (cliutil_out_close(cmd, &o, rc != 0) < 0)
        rc = 1;
    if (rc == 0 && x.commented)
        fprintf(stderr,
                "restspy export: %zu request%s written as a comment, not a command: %s body "
                "cannot be sent as recorded (the '# restspy:' lines say why)\n",
                x.commented, x.commented == 1 ? "" : "s", x.commented == 1 ? "its" : "their");
    if (rc == 0 && kind != OUT_CURL && strcmp(path, "-") != 0) {
        printf("exported %zu request%s to %s\n", x.n, x.n == 1 ? "" : "s", path);
        rc = cliutil_flush_stdout(cmd);
    }
out:
    free(trimmed);
    reqfilter_free(&f);
    return rc;
}

/* ---- `restspy import` ---- */

static const char import_usage[] =
    "usage: restspy import (--har FILE | --jsonl FILE) [options]\n"
    "\n"
    "Stores the requests of a HAR 1.2 file (browsers' devtools, Charles, Postman,\n"
    "restspy export) or of restspy's JSON lines as records with origin\n"
    "\"imported\", replayable with `restspy replay`.\n"
    "\n"
    "  --har FILE      a HAR 1.2 file\n"
    "  --jsonl FILE    JSON lines (restspy export --jsonl); both may be given\n"
    "  --keep-cached   also store a HAR's browser cache hits (left out by default:\n"
    "                  no request went out for them)\n"
    "  --store URL     store to write (default: the store setting, sqlite:restspy.db)\n"
    "  --config FILE   config file whose store setting to use\n"
    "  -h, --help      show this help\n"
    "\n"
    "A record keeps its id: the file's, or for a HAR entry without one (a\n"
    "browser's) an id derived from the entry's content and time, the same on\n"
    "every import. A request whose id is already in the store (a store's own\n"
    "export, the same file twice) is skipped and counted, never stored twice.\n";

/* Written by the store's writer thread, read after store_close. */
typedef struct import_ctx {
    atomic_ullong stored, refused;
} import_ctx;

static void on_committed(void *ud, int status)
{
    import_ctx *x = ud;
    if (status == 0)
        atomic_fetch_add(&x->stored, 1);
    else
        atomic_fetch_add(&x->refused, 1);
}

typedef struct ranked_id {
    const char *id;
    size_t pos;
} ranked_id;

/* By id, then by position in the files (qsort is not stable). */
static int id_cmp(const void *a, const void *b)
{
    const ranked_id *x = a, *y = b;
    int d = strcmp(x->id, y->id);
    if (d)
        return d;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Opens the store for writing, as the proxy does, but never dropping. */
static store *open_writer(const char *cmd, const cliutil_read_opts *ro, char *const *envp, int *rc)
{
    const char *flags[] = {"--config", ro->config_file, "--store", ro->store_url};
    config *c = NULL;
    *rc = cliutil_config_load(cmd, envp, flags, 4, &c);
    if (*rc)
        return NULL;
    if (!c->store || strcmp(c->store, "off") == 0) {
        cliutil_errorf(cmd, "the store is off (store = off): nowhere to import into");
        config_unref(c);
        *rc = 1;
        return NULL;
    }
    store_options so;
    store_options_from_config(&so, c);
    so.drop_when_full = false; /* an import waits for room, never drops */
    char err[512];
    store *s = store_open(&so, err, sizeof err);
    config_unref(c);
    if (!s || store_start(s, err, sizeof err) < 0) {
        cliutil_errorf(cmd, "%s", err);
        store_close(s);
        *rc = 1;
        return NULL;
    }
    return s;
}

int cli_import(int argc, char **argv, char *const *envp)
{
    static const char cmd[] = "import";
    cliutil_read_opts ro = {0};
    const char *har = NULL, *jsonl = NULL;
    bool keep_cached = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int m;
        if (cliutil_is_help(a)) {
            fputs(import_usage, stdout);
            return 0;
        }
        if (strcmp(a, "--keep-cached") == 0) {
            keep_cached = true;
            continue;
        }
        if ((m = cliutil_flag_value(cmd, argc, argv, &i, "--har", &har)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--jsonl", &jsonl)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--store", &ro.store_url)) ||
            (m = cliutil_flag_value(cmd, argc, argv, &i, "--config", &ro.config_file))) {
            if (m < 0)
                return 2;
            continue;
        }
        return cliutil_bad_arg(cmd, a);
    }
    if (!har && !jsonl) {
        cliutil_errorf(cmd, "what to import: --har FILE or --jsonl FILE (see restspy import "
                            "--help)");
        return 2;
    }
    if (keep_cached && !har) {
        cliutil_errorf(cmd, "--keep-cached only applies to --har");
        return 2;
    }

    /* Every file is read before the store is touched: a bad file imports
     * nothing. */
    record **v = NULL, **w = NULL;
    size_t n = 0, nw = 0, cached = 0;
    char err[512];
    if ((har && har_read(har, keep_cached, &v, &n, &cached, err, sizeof err) < 0) ||
        (jsonl && jsonl_read(jsonl, &w, &nw, err, sizeof err) < 0)) {
        cliutil_errorf(cmd, "%s", err);
        records_free(v, n);
        return 1;
    }
    if (nw) {
        v = xrealloc(v, (n + nw) * sizeof *v);
        memcpy(v + n, w, nw * sizeof *w);
        n += nw;
    }
    free(w);

    int rc = 0;
    store *s = open_writer(cmd, &ro, envp, &rc);
    if (!s) {
        records_free(v, n);
        return rc;
    }
    /* Ids already stored, or twice in the files, are skipped: the store's
     * INSERT OR IGNORE would keep the old row anyway, and the count must
     * say what really went in. Of equal ids in the files, the first wins. */
    bool *dup = xcalloc(n ? n : 1, sizeof *dup);
    ranked_id *byid = xmalloc((n ? n : 1) * sizeof *byid);
    for (size_t i = 0; i < n; i++) {
        byid[i].id = v[i]->id;
        byid[i].pos = i;
    }
    qsort(byid, n, sizeof *byid, id_cmp);
    for (size_t i = 1; i < n; i++)
        if (strcmp(byid[i].id, byid[i - 1].id) == 0)
            dup[byid[i].pos] = true;
    free(byid);
    size_t present = 0;
    import_ctx x;
    atomic_init(&x.stored, 0);
    atomic_init(&x.refused, 0);
    for (size_t i = 0; i < n && rc == 0; i++) {
        record *r = v[i];
        v[i] = NULL;
        record *old = NULL;
        int found = dup[i] ? 1 : store_get(s, r->id, &old, err, sizeof err);
        record_free(old);
        if (found < 0) {
            cliutil_errorf(cmd, "%s", err);
            record_free(r);
            rc = 1;
        } else if (found == 1) {
            present++;
            record_free(r);
        } else {
            free(r->origin);
            r->origin = xstrdup("imported");
            /* The row being written is this store's: no replication state. */
            free(r->replication);
            r->replication = NULL;
            r->do_persist = true;
            store_submit_unit(s, &(store_unit){.rec = r, .rec_row = true}, on_committed, &x);
        }
    }
    free(dup);
    for (size_t i = 0; i < n; i++)
        record_free(v[i]);
    free(v);
    store_close(s);
    unsigned long long stored = atomic_load(&x.stored), refused = atomic_load(&x.refused);
    printf("imported %llu request%s", stored, stored == 1 ? "" : "s");
    if (present)
        printf(" (%zu already in the store, skipped)", present);
    if (cached)
        printf(" (%zu browser cache hit%s left out: no request went out; --keep-cached keeps "
               "them)",
               cached, cached == 1 ? "" : "s");
    putchar('\n');
    if (refused) {
        cliutil_errorf(cmd, "%llu request%s could not be stored", refused, refused == 1 ? "" : "s");
        rc = 1;
    }
    int frc = cliutil_flush_stdout(cmd);
    return rc ? rc : frc;
}
