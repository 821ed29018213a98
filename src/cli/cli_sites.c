/* cli_sites: `restspy sites compare`, have two or more sites converged?
 *
 * GETs the same resources (literal paths, or globs expanded against the GET
 * paths recorded in the store) from every site, one hclient_sync per site,
 * and compares each site's answer with the first site's through the replay
 * comparison engine (compare.h) and its noise rules, so that "equal" means
 * the same thing here as in `restspy replay`. Owns the answers it fetched
 * until the resource is reported; holds one resource's answers at a time.
 * Promises: exit 0 when every site answered every path alike (up to the
 * noise rules), 1 when one differed or could not be read (each difference
 * listed as a JSON path per path and site pair), 2 on usage errors (one
 * line on stderr). */
#include "cli/cli.h"

#include <assert.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/url.h"
#include "base/util.h"
#include "cli/cliutil.h"
#include "http/hclient.h"
#include "compare/compare.h"
#include "replay/replay.h"

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_MAX_PATHS 200
#define MAX_SITES 16

static const char cmd[] = "sites compare";

static const char usage[] =
    "usage: restspy sites compare --site NAME=URL --site NAME=URL --path P [options]\n"
    "\n"
    "GETs the same resources from two or more sites and compares every site's\n"
    "answer with the first site's, as `restspy replay` compares (status and body;\n"
    "JSON structurally, with the same noise rules): the check that sites have\n"
    "converged. Exit code: 0 all sites agree, 1 a site differs (the differing\n"
    "JSON paths are listed per path and site pair) or could not be read, 2 usage\n"
    "error.\n"
    "\n"
    "Sites and paths:\n"
    "  --site NAME=URL      a site: a name (letters, digits, '.', '_', '-') and its\n"
    "                       base URL http[s]://host:port (repeatable, 2 to 16; the\n"
    "                       first is the reference)\n"
    "  --path P             a path to GET from every site (repeatable): a literal\n"
    "                       path (/api/sites/?page=2), or a glob ('*' within a\n"
    "                       segment, '**' any depth) standing for every distinct\n"
    "                       GET path recorded in the store that it matches\n"
    "  --store URL          the store globs are matched against (default: the\n"
    "                       store setting, sqlite:restspy.db)\n"
    "  --config FILE        config file whose store setting to use\n"
    "  --max-paths N        most paths one glob may stand for (default 200)\n"
    "\n"
    "Sending:\n"
    "  -H, --header 'N: v'  request header sent to every site (repeatable), e.g.\n"
    "                       'Authorization: Bearer ...'\n"
    "  --timeout DUR        per request, connect and answer (default 10s)\n" CLIUTIL_TLS_HELP "\n"
    "Comparing (the noise rules of restspy replay):\n"
    "  --ignore PATH        ignore a JSON path: $.updated_at, $..id, $.items[*].ts\n"
    "  --ignore-header N    ignore a response header\n"
    "  --ignore-regex RE    two differing values that both match RE are equal\n"
    "  --noise FILE         noise rules from FILE, one per line (repeatable), the\n"
    "                       format of restspy replay --noise\n"
    "\n"
    "Output:\n"
    "  --json               one JSON document: sites, paths, per path each site's\n"
    "                       status and each differing pair's differences\n"
    "  -h, --help           show this help\n";

typedef struct site {
    const char *name; /* points into argv, cut at '=' in a copy: owned */
    const char *url;  /* into argv */
    hclient_sync *client;
    record *got;   /* this path's answer (owned), NULL on error */
    char err[256]; /* this path's error, when got is NULL */
} site;

typedef struct args {
    cliutil_read_opts ro; /* --store, --config, --json */
    hclient_tls tls;
    site sites[MAX_SITES];
    size_t nsites;
    const char **paths; /* --path values, into argv */
    size_t npaths;
    http_headers headers;
    noise *noise;
    uint64_t timeout_ms;
    size_t max_paths;
} args;

static void args_free(args *a)
{
    for (size_t i = 0; i < a->nsites; i++) {
        free((char *)a->sites[i].name);
        hclient_sync_free(a->sites[i].client);
        record_free(a->sites[i].got);
    }
    free(a->paths);
    http_headers_free(&a->headers);
    noise_free(a->noise);
}

/* ---- parsing ---- */

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

/* NAME=URL. 0, or -1 after reporting. */
static int parse_site(args *a, const char *v)
{
    const char *eq = strchr(v, '=');
    size_t nl = eq ? (size_t)(eq - v) : 0;
    bool name_ok = nl > 0;
    for (size_t k = 0; k < nl; k++)
        name_ok = name_ok && is_name_char(v[k]);
    if (!name_ok) {
        cliutil_errorf(cmd, "bad value for --site: '%s' (expected NAME=http[s]://host:port)", v);
        return -1;
    }
    const char *u = eq + 1;
    url_parts up;
    if (url_parse(u, strlen(u), &up, NULL) < 0 || !(url_is(&up, "http") || url_is(&up, "https")) ||
        up.query || (up.path_len > 1)) {
        cliutil_errorf(cmd, "bad value for --site: '%s' (expected NAME=http[s]://host:port)", v);
        return -1;
    }
    for (size_t i = 0; i < a->nsites; i++)
        if (strlen(a->sites[i].name) == nl && memcmp(a->sites[i].name, v, nl) == 0) {
            cliutil_errorf(cmd, "--site %.*s given twice", (int)nl, v);
            return -1;
        }
    if (a->nsites == MAX_SITES) {
        cliutil_errorf(cmd, "at most %d --site", MAX_SITES);
        return -1;
    }
    site *s = &a->sites[a->nsites++];
    s->name = xstrndup(v, nl);
    s->url = u;
    return 0;
}

static int parse_path(args *a, const char *v)
{
    if (v[0] != '/' && v[0] != '*') {
        cliutil_errorf(cmd, "bad value for --path: '%s' (expected a path or glob starting with /)",
                       v);
        return -1;
    }
    /* Sent as the request target: what would break the request line is
     * the user's mistake, not a site's failure. */
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p <= ' ' || *p == 0x7f) {
            cliutil_errorf(cmd,
                           "bad value for --path: a blank or control character (percent-encode "
                           "it: %%20)");
            return -1;
        }
    a->paths = xrealloc(a->paths, (a->npaths + 1) * sizeof *a->paths);
    a->paths[a->npaths++] = v;
    return 0;
}

/* The flags that take a value. 1 matched, 0 not one, -1 reported. */
static int value_opt(int argc, char **argv, int *i, args *a)
{
    const char *v;
    int m;
    if ((m = cliutil_flag_value(cmd, argc, argv, i, "--site", &v)))
        return m < 0 || parse_site(a, v) < 0 ? -1 : 1;
    if ((m = cliutil_flag_value(cmd, argc, argv, i, "--path", &v)))
        return m < 0 || parse_path(a, v) < 0 ? -1 : 1;
    if ((m = cliutil_flag_value(cmd, argc, argv, i, "--header", &v)) ||
        (m = cliutil_flag_value(cmd, argc, argv, i, "-H", &v)))
        return m < 0 || cliutil_header_arg(cmd, "--header", v, &a->headers) < 0 ? -1 : 1;
    if ((m = cliutil_flag_value(cmd, argc, argv, i, "--timeout", &v)))
        return m < 0 || cliutil_duration_arg(cmd, "--timeout", v, &a->timeout_ms) < 0 ? -1 : 1;
    if ((m = cliutil_flag_value(cmd, argc, argv, i, "--max-paths", &v))) {
        if (m < 0)
            return -1;
        char *end;
        unsigned long long n = strtoull(v, &end, 10);
        if (end == v || *end || v[0] == '-' || n == 0 || n > 1000000) {
            cliutil_errorf(
                cmd, "bad value for --max-paths: '%s' (expected a number from 1 to 1000000)", v);
            return -1;
        }
        a->max_paths = (size_t)n;
        return 1;
    }
    if ((m = cliutil_read_opt(cmd, argc, argv, i, &a->ro)) ||
        (m = cliutil_tls_flag(cmd, argc, argv, i, &a->tls)) ||
        (m = cliutil_noise_opt(cmd, argc, argv, i, a->noise)))
        return m;
    return 0;
}

/* What no single flag checks. 0, or 2 after reporting. */
static int check_args(const args *a)
{
    if (a->nsites < 2) {
        cliutil_errorf(cmd, "at least two --site NAME=URL are needed (see restspy sites --help)");
        return 2;
    }
    if (a->npaths == 0) {
        cliutil_errorf(cmd, "--path is required (a path such as /api/sites/, or a glob)");
        return 2;
    }
    bool all_https = true;
    for (size_t i = 0; i < a->nsites; i++)
        all_https = all_https && strncmp(a->sites[i].url, "https:", 6) == 0;
    return cliutil_tls_check(cmd, &a->tls, all_https, "--site", "the sites'");
}

/* Parses argv (argv[0] is "compare"). 0 to go on, 1 help was printed, 2
 * usage error (reported). */
static int parse_args(int argc, char **argv, args *a)
{
    a->timeout_ms = DEFAULT_TIMEOUT_MS;
    a->max_paths = DEFAULT_MAX_PATHS;
    a->noise = noise_new();
    for (int i = 1; i < argc; i++) {
        if (cliutil_is_help(argv[i])) {
            fputs(usage, stdout);
            return 1;
        }
        int m = value_opt(argc, argv, &i, a);
        if (m < 0)
            return 2;
        if (m == 0)
            return cliutil_bad_arg(cmd, argv[i]);
    }
    return check_args(a);
}

/* ---- the paths ---- */

typedef struct pathlist {
    char **v; /* owned */
    size_t n;
    size_t max;  /* a glob's limit */
    size_t from; /* where this glob's paths start */
    bool over;   /* the glob matched more than max */
} pathlist;

static void pathlist_free(pathlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

static void pathlist_add(pathlist *l, const char *p)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], p) == 0)
            return;
    l->v = xrealloc(l->v, (l->n + 1) * sizeof *l->v);
    l->v[l->n++] = xstrdup(p);
}

/* A recorded GET's path (the query is left out: it may hold values redacted
 * at capture, and a glob matches paths only). */
static int add_recorded(const record *r, void *ud)
{
    pathlist *l = ud;
    size_t before = l->n;
    pathlist_add(l, r->path);
    if (l->n > before && l->n - l->from > l->max) {
        l->over = true;
        return 1;
    }
    return 0;
}

/* Adds the GET paths of the store that glob matches. 0, or 2 after
 * reporting (bad glob, no store, no match, too many). *s is opened on the
 * first glob and kept for the next ones. */
static int expand_glob(const args *a, char *const *envp, const char *glob, store **s, pathlist *l)
{
    /* Only a glob needs the store: say so when it is not there. */
    if (!*s) {
        buf what = BUF_INIT;
        buf_appendf(&what, "--path %s is a glob over the GET paths in the store", glob);
        int rc = cliutil_open_store_for(cmd, &a->ro, envp, what.data, what.data, s);
        buf_free(&what);
        if (rc)
            return 2;
    }
    reqfilter f = {0};
    char err[512];
    int rc = 2;
    if (reqfilter_set(&f, "method", "--path", "GET", err, sizeof err) < 0 ||
        reqfilter_set(&f, "path", "--path", glob, err, sizeof err) < 0) {
        cliutil_errorf(cmd, "%s", err);
        goto out;
    }
    l->from = l->n;
    l->over = false;
    if (cliutil_filter_each(cmd, *s, &f, add_recorded, l))
        goto out;
    if (l->over) {
        cliutil_errorf(cmd, "--path %s stands for more than %zu GET paths (--max-paths raises it)",
                       glob, l->max);
        goto out;
    }
    if (l->n == l->from) {
        cliutil_errorf(cmd, "--path %s matches no GET path recorded in the store", glob);
        goto out;
    }
    rc = 0;
out:
    reqfilter_free(&f);
    return rc;
}

/* Every path to compare, in the order given (a glob's in recorded order).
 * 0, or 2 after reporting. */
static int collect_paths(const args *a, char *const *envp, pathlist *l)
{
    store *s = NULL;
    int rc = 0;
    l->max = a->max_paths;
    for (size_t i = 0; i < a->npaths && rc == 0; i++) {
        if (strchr(a->paths[i], '*'))
            rc = expand_glob(a, envp, a->paths[i], &s, l);
        else
            pathlist_add(l, a->paths[i]);
    }
    if (s)
        store_close(s);
    return rc;
}

/* ---- fetching and comparing ---- */

/* One client per site. 0, or 2 after reporting a bad URL or TLS option. */
static int open_clients(args *a)
{
    for (size_t i = 0; i < a->nsites; i++) {
        hclient_opts o = {0};
        o.base = a->sites[i].url;
        o.timeout_ms = a->timeout_ms;
        o.tls = a->tls;
        char err[256];
        a->sites[i].client = hclient_sync_new(&o, err, sizeof err);
        if (!a->sites[i].client) {
            cliutil_errorf(cmd, "--site %s: %s", a->sites[i].name, err);
            return 2;
        }
    }
    return 0;
}

/* GETs path from site s into s->got (decoded of its Content-Encoding, as
 * replay compares answers), or s->err. */
static void fetch(const args *a, site *s, const char *path)
{
    record_free(s->got);
    s->got = NULL;
    hclient_response resp = {0};
    if (hclient_sync_request(s->client, "GET", path, &a->headers, NULL, 0, &resp, s->err,
                             sizeof s->err) == 0) {
        record *r = record_new();
        r->status = resp.status;
        http_headers tmp = r->resp_headers;
        r->resp_headers = resp.headers;
        resp.headers = tmp;
        buf btmp = r->resp_body;
        r->resp_body = resp.body;
        resp.body = btmp;
        if (r->resp_body.len && http_headers_get(&r->resp_headers, "content-encoding"))
            record_decode_bodies(r, 0, REPLAY_MAX_DECODED, true);
        s->got = r;
    }
    hclient_response_free(&resp);
}

/* What one path gave: per site pair (the first site with site k), the
 * comparison, when both answered. */
typedef struct outcome {
    compare_result res[MAX_SITES]; /* [k] the first site against site k (k >= 1) */
    bool compared[MAX_SITES];
    bool agree; /* every site answered, every pair matched */
} outcome;

static void compare_path(const args *a, outcome *o)
{
    compare_opts co = {.noise = a->noise};
    const record *ref = a->sites[0].got;
    o->agree = ref != NULL;
    for (size_t k = 1; k < a->nsites; k++) {
        o->compared[k] = ref && a->sites[k].got;
        if (o->compared[k]) {
            compare_responses(&co, ref, a->sites[k].got, &o->res[k]);
            o->agree = o->agree && o->res[k].match;
        } else {
            o->agree = false;
        }
    }
}

static void outcome_free(const args *a, outcome *o)
{
    for (size_t k = 1; k < a->nsites; k++)
        if (o->compared[k])
            compare_result_free(&o->res[k]);
}

/* ---- reporting ---- */

static void print_text(const args *a, const char *path, const outcome *o)
{
    buf b = BUF_INIT;
    cliutil_append_safe(&b, path, strlen(path), false);
    for (size_t i = 0; i < a->nsites; i++) {
        const site *s = &a->sites[i];
        if (s->got)
            buf_appendf(&b, "  %s %d", s->name, s->got->status);
        else
            buf_appendf(&b, "  %s error", s->name);
    }
    buf_append_str(&b, o->agree ? "  agree\n" : "  DIFFER\n");
    for (size_t i = 0; i < a->nsites; i++)
        if (!a->sites[i].got) {
            buf_appendf(&b, "  %s: ", a->sites[i].name);
            cliutil_append_safe(&b, a->sites[i].err, strlen(a->sites[i].err), false);
            buf_append_char(&b, '\n');
        }
    for (size_t k = 1; k < a->nsites; k++) {
        if (!o->compared[k])
            continue;
        const compare_result *r = &o->res[k];
        for (size_t d = 0; d < r->ndiffs; d++) {
            buf line = BUF_INIT;
            diff_format(&r->diffs[d], &line);
            buf_appendf(&b, "  %s vs %s: ", a->sites[0].name, a->sites[k].name);
            cliutil_append_safe(&b, line.data, line.len, false);
            buf_append_char(&b, '\n');
            buf_free(&line);
        }
        if (r->ndiffs_total > r->ndiffs)
            buf_appendf(&b, "  %s vs %s: %zu more differences\n", a->sites[0].name,
                        a->sites[k].name, r->ndiffs_total - r->ndiffs);
        if (r->partial)
            buf_appendf(&b, "  %s vs %s: partly compared: %s\n", a->sites[0].name, a->sites[k].name,
                        r->partial);
    }
    fwrite(b.data, 1, b.len, stdout);
    buf_free(&b);
}

static json_t *jstr_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *pair_json(const args *a, size_t k, const compare_result *r)
{
    json_t *diffs = json_array();
    for (size_t d = 0; d < r->ndiffs; d++) {
        const diff *df = &r->diffs[d];
        /* The values under the site names, apart from "path": a site may
         * be called "path". */
        json_t *values = json_object();
        json_object_set_new(values, a->sites[0].name, jstr_or_null(df->expected));
        json_object_set_new(values, a->sites[k].name, jstr_or_null(df->actual));
        json_t *jd = json_object();
        json_object_set_new(jd, "path", json_string(df->path));
        json_object_set_new(jd, "values", values);
        json_array_append_new(diffs, jd);
    }
    json_t *p = json_object();
    json_object_set_new(p, "sites", json_pack("[ss]", a->sites[0].name, a->sites[k].name));
    json_object_set_new(p, "agree", json_boolean(r->match));
    json_object_set_new(p, "differences", diffs);
    json_object_set_new(p, "differences_total", json_integer((json_int_t)r->ndiffs_total));
    if (r->partial)
        json_object_set_new(p, "partial", json_string(r->partial));
    return p;
}

static json_t *path_json(const args *a, const char *path, const outcome *o)
{
    json_t *sites = json_object();
    for (size_t i = 0; i < a->nsites; i++) {
        const site *s = &a->sites[i];
        json_object_set_new(sites, s->name,
                            s->got ? json_pack("{si}", "status", s->got->status)
                                   : json_pack("{ss}", "error", s->err));
    }
    json_t *pairs = json_array();
    for (size_t k = 1; k < a->nsites; k++)
        if (o->compared[k])
            json_array_append_new(pairs, pair_json(a, k, &o->res[k]));
    json_t *j = json_object();
    json_object_set_new(j, "path", json_string(path));
    json_object_set_new(j, "agree", json_boolean(o->agree));
    json_object_set_new(j, "sites", sites);
    json_object_set_new(j, "pairs", pairs);
    return j;
}

static void print_json(const args *a, json_t *paths, size_t differ)
{
    json_t *sites = json_array();
    for (size_t i = 0; i < a->nsites; i++)
        json_array_append_new(
            sites, json_pack("{ssss}", "name", a->sites[i].name, "url", a->sites[i].url));
    json_t *doc = json_object();
    json_object_set_new(doc, "agree", json_boolean(differ == 0));
    json_object_set_new(doc, "sites", sites);
    json_object_set_new(doc, "paths", json_incref(paths));
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (text)
        puts(text);
    free(text);
    json_decref(doc);
}

/* Fetches and compares every path. 0 all agree, 1 not. */
static int compare_all(args *a, const pathlist *l)
{
    json_t *jpaths = a->ro.json ? json_array() : NULL;
    size_t differ = 0;
    for (size_t p = 0; p < l->n; p++) {
        for (size_t i = 0; i < a->nsites; i++)
            fetch(a, &a->sites[i], l->v[p]);
        outcome o;
        memset(&o, 0, sizeof o);
        compare_path(a, &o);
        differ += !o.agree;
        if (jpaths)
            json_array_append_new(jpaths, path_json(a, l->v[p], &o));
        else
            print_text(a, l->v[p], &o);
        outcome_free(a, &o);
    }
    if (jpaths) {
        print_json(a, jpaths, differ);
        json_decref(jpaths);
    } else {
        printf("%zu path%s, %zu sites: %zu agree, %zu differ\n", l->n, l->n == 1 ? "" : "s",
               a->nsites, l->n - differ, differ);
    }
    return differ ? 1 : 0;
}

static int sites_compare(int argc, char **argv, char *const *envp)
{
    args a;
    memset(&a, 0, sizeof a);
    pathlist l = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc == 1) {
        rc = 0;
        goto out;
    }
    if (rc || (rc = collect_paths(&a, envp, &l)) || (rc = open_clients(&a)))
        goto out;
    assert(l.n > 0);
    rc = compare_all(&a, &l);
    if (cliutil_flush_stdout(cmd))
        rc = 2;
out:
    pathlist_free(&l);
    args_free(&a);
    return rc;
}

int cli_sites(int argc, char **argv, char *const *envp)
{
    if (argc >= 2 && cliutil_is_help(argv[1])) {
        fputs(usage, stdout); /* compare is its one subcommand */
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "compare") == 0)
        return sites_compare(argc - 1, argv + 1, envp);
    if (argc < 2) {
        cliutil_errorf("sites", "a subcommand is needed: compare (see restspy sites --help)");
        return 2;
    }
    cliutil_errorf("sites", "unknown subcommand '%s' (expected compare; see restspy sites --help)",
                   argv[1]);
    return 2;
}
