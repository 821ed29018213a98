/* correlate: the mappings of replay --correlate (see correlate.h).
 *
 * The maps and the pre-scan's index are jansson objects used as hash tables
 * (string keys, the project's one hash table): last_use maps a request
 * token to the last case index that used it; global and each client's map
 * (in maps, by client key) map a recorded value's text to the target's
 * value (a JSON string or integer, so that a number stays a number). */
#include "replay/correlate.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "base/buf.h"
#include "base/util.h"

#define JSON_FLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL)
/* JSON deeper than this is not walked (learning nor substituting). */
#define MAX_DEPTH 64

/* Token separators: in URLs (paths, Location, query strings, form bodies)
 * and in header values. */
#define URL_DELIMS "/?&=#"
#define PATH_DELIMS "/"
#define QUERY_DELIMS "&="
#define HEADER_DELIMS " \t,;\""

struct corr {
    const noise *rules; /* not owned, may be NULL */
    json_t *last_use;   /* token -> last case index using it */
    json_t *global;     /* recorded text -> target value */
    json_t *maps;       /* client -> (recorded text -> target value) */
    json_t *vouched;    /* recorded texts learned by an explicit rule or from
                           an ETag: replaced wherever they appear */
};

/* ------------------------------------------------------------------ */
/* what looks like an identifier                                        */

static bool ends_with_ci(const char *k, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n >= l && strncasecmp(k + n - l, lit, l) == 0;
}

static bool id_like_key(const char *k, size_t n)
{
    static const char *const exact[] = {"pk", "cursor", "etag", NULL};
    static const char *const tails[] = {"id", "uuid", "token", "key", "slug", "session", NULL};
    if (!k)
        return false;
    for (size_t i = 0; exact[i]; i++)
        if (util_ieq(k, n, exact[i]))
            return true;
    for (size_t i = 0; tails[i]; i++)
        if (ends_with_ci(k, n, tails[i]))
            return true;
    return false;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* All digits (an optional leading '-'), 1..19 of them. */
static bool is_integer(const char *v, size_t n, long long *out)
{
    size_t i = n && v[0] == '-' ? 1 : 0;
    if (n == i || n - i > 18)
        return false;
    long long x = 0;
    for (size_t j = i; j < n; j++) {
        if (!is_digit(v[j]))
            return false;
        x = x * 10 + (v[j] - '0');
    }
    *out = i ? -x : x;
    return true;
}

static bool is_uuid(const char *v, size_t n)
{
    if (n != 36)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? v[i] != '-' : !is_hex(v[i]))
            return false;
    }
    return true;
}

static bool token_byte(char c, bool slash)
{
    return is_digit(c) || is_alpha(c) || c == '_' || c == '.' || c == '~' || c == '+' || c == '=' ||
           c == '-' || (slash && (c == '/' || c == ':'));
}

bool corr_looks_like(const char *key, size_t klen, const char *v, size_t n, bool number)
{
    if (!v || n == 0 || n > CORR_MAX_VALUE)
        return false;
    if (util_ieq(v, n, "true") || util_ieq(v, n, "false") || util_ieq(v, n, "null"))
        return false;
    long long x;
    bool integer = is_integer(v, n, &x);
    if (number && !integer)
        return false; /* 0.5, 1e3: measurements, not identifiers */
    bool idkey = id_like_key(key, klen);
    if (integer)
        return idkey || x >= CORR_MIN_INT || x <= -CORR_MIN_INT;
    if (is_uuid(v, n))
        return true;
    bool digit = false, letter = false;
    for (size_t i = 0; i < n; i++) {
        if (!token_byte(v[i], idkey))
            return false;
        digit |= is_digit(v[i]);
        letter |= is_alpha(v[i]);
    }
    return idkey || (n >= CORR_MIN_TOKEN && digit && letter);
}

bool corr_named_id(const char *key, size_t klen, const char *v, size_t n)
{
    return id_like_key(key, klen) || is_uuid(v, n);
}

/* ------------------------------------------------------------------ */
/* life                                                                 */

corr *corr_new(const noise *rules)
{
    corr *c = xcalloc(1, sizeof *c);
    c->rules = rules;
    c->last_use = json_object();
    c->global = json_object();
    c->maps = json_object();
    c->vouched = json_object();
    return c;
}

void corr_free(corr *c)
{
    if (!c)
        return;
    json_decref(c->last_use);
    json_decref(c->global);
    json_decref(c->maps);
    json_decref(c->vouched);
    free(c);
}

void corr_subs_free(corr_subs *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].place);
        free(s->v[i].from);
        free(s->v[i].to);
    }
    free(s->v);
    memset(s, 0, sizeof *s);
}

void corr_subs_add(corr_subs *s, const char *place, const char *from, const char *to)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4;
        s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n].place = xstrdup(place);
    s->v[s->n].from = xstrdup(from);
    s->v[s->n].to = xstrdup(to);
    s->n++;
}

/* ------------------------------------------------------------------ */
/* tokens                                                               */

typedef void (*tok_fn)(void *ud, const char *t, size_t n);

/* Calls fn for every non-empty token of s[0..n) between bytes of delims;
 * with after_eq also for the part after the first '=' of a token. */
static void each_token(const char *s, size_t n, const char *delims, bool after_eq, tok_fn fn,
                       void *ud)
{
    size_t i = 0;
    while (i < n) {
        size_t b = i;
        while (i < n && !strchr(delims, s[i]))
            i++;
        if (i > b) {
            fn(ud, s + b, i - b);
            const char *eq = after_eq ? memchr(s + b, '=', i - b) : NULL;
            if (eq && eq + 1 < s + i)
                fn(ud, eq + 1, (size_t)(s + i - eq - 1));
        }
        i++;
    }
}

/* The text a scalar is tracked by: a string's value, an integer's decimal
 * form; NULL for anything else. tmp holds the integer's text. */
static const char *scalar_text(const json_t *j, char *tmp, size_t len, size_t *n)
{
    if (json_is_string(j)) {
        *n = json_string_length(j);
        return memchr(json_string_value(j), '\0', *n) ? NULL : json_string_value(j);
    }
    if (json_is_integer(j)) {
        int w = snprintf(tmp, len, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        *n = (size_t)w;
        return tmp;
    }
    return NULL;
}

/* Calls fn for every scalar leaf of j (a JSON string's URL tokens too). */
static void each_json_scalar(const json_t *j, int depth, tok_fn fn, void *ud)
{
    if (depth > MAX_DEPTH)
        return;
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            each_json_scalar(v, depth + 1, fn, ud);
        }
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
        {
            each_json_scalar(v, depth + 1, fn, ud);
        }
    } else {
        char tmp[32];
        size_t n;
        const char *t = scalar_text(j, tmp, sizeof tmp, &n);
        if (t) {
            fn(ud, t, n);
            each_token(t, n, URL_DELIMS, false, fn, ud);
        }
    }
}

static bool is_form(const record *r)
{
    const char *ct = http_headers_get(&r->req_headers, "content-type");
    return ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0;
}

/* The request body as JSON (object or array), or NULL. */
static json_t *req_json(const record *r)
{
    if (!r->req_body.len || r->req_truncated || r->req_body_note)
        return NULL;
    json_t *j = json_loadb(r->req_body.data, r->req_body.len, JSON_FLAGS, NULL);
    if (j && !json_is_object(j) && !json_is_array(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* ------------------------------------------------------------------ */
/* the pre-scan                                                         */

typedef struct scan_ctx {
    corr *c;
    size_t index;
} scan_ctx;

static void scan_token(void *ud, const char *t, size_t n)
{
    scan_ctx *x = ud;
    if (n > CORR_MAX_VALUE || memchr(t, '\0', n))
        return;
    char *key = xstrndup(t, n);
    json_object_set_new(x->c->last_use, key, json_integer((json_int_t)x->index));
    free(key);
}

void corr_scan(corr *c, record *const *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const record *r = cases[i];
        scan_ctx x = {c, i};
        if (r->path)
            each_token(r->path, strlen(r->path), PATH_DELIMS, false, scan_token, &x);
        if (r->query)
            each_token(r->query, strlen(r->query), QUERY_DELIMS, false, scan_token, &x);
        for (size_t h = 0; h < r->req_headers.len; h++) {
            const char *v = r->req_headers.v[h].value;
            if (!noise_correlate_header_off(c->rules, r->req_headers.v[h].name))
                each_token(v, strlen(v), HEADER_DELIMS, true, scan_token, &x);
        }
        json_t *j = req_json(r);
        if (j)
            each_json_scalar(j, 0, scan_token, &x);
        else if (is_form(r) && r->req_body.len)
            each_token(r->req_body.data, r->req_body.len, QUERY_DELIMS, false, scan_token, &x);
        json_decref(j);
    }
}

static bool used_later(const corr *c, const char *t, size_t index)
{
    json_t *u = json_object_get(c->last_use, t);
    return u && json_integer_value(u) > (json_int_t)index;
}

/* ------------------------------------------------------------------ */
/* learning                                                             */

typedef struct learn_ctx {
    corr *c;
    json_t *map; /* the client's */
    size_t index;
    bool read; /* the answer to a GET, HEAD or OPTIONS */
    size_t learned;
} learn_ctx;

/* Maps from (NUL-terminated) to the value to (a new reference taken). A
 * read never changes what a value maps to: a read that answers another id
 * than the one learned is a difference to report, not a new mapping (a
 * write, or the next loop, may create a new object). */
static void learn_value(learn_ctx *x, const char *from, json_t *to, bool explicit)
{
    if (x->read && (json_object_get(x->map, from) || json_object_get(x->c->global, from)))
        return;
    json_object_set(x->map, from, to);
    json_object_set(x->c->global, from, to);
    if (explicit)
        json_object_set_new(x->c->vouched, from, json_true());
    x->learned++;
}

/* A differing pair of texts at the same place: learned when explicit, or
 * when it looks like an identifier and is used later or is one by its name
 * or shape (corr_named_id). to_json: the target's value, or NULL to take
 * to[0..tn) as a string. */
static void learn_pair(learn_ctx *x, const char *key, size_t klen, const char *from, size_t fn,
                       const char *to, size_t tn, json_t *to_json, bool number, bool explicit)
{
    if (fn == tn && memcmp(from, to, fn) == 0)
        return;
    if (fn == 0 || fn > CORR_MAX_VALUE || tn > CORR_MAX_VALUE || memchr(to, '\0', tn))
        return;
    char *f = xstrndup(from, fn);
    if (explicit || (corr_looks_like(key, klen, from, fn, number) &&
                     (corr_named_id(key, klen, from, fn) || used_later(x->c, f, x->index)))) {
        json_t *v = to_json ? json_incref(to_json) : json_stringn(to, tn);
        if (v)
            learn_value(x, f, v, explicit);
        json_decref(v);
    }
    free(f);
}

typedef struct toks {
    const char **p;
    size_t *n;
    size_t len, cap;
} toks;

static void toks_add(void *ud, const char *t, size_t n)
{
    toks *k = ud;
    if (k->len == k->cap) {
        k->cap = k->cap ? k->cap * 2 : 8;
        k->p = xrealloc(k->p, k->cap * sizeof *k->p);
        k->n = xrealloc(k->n, k->cap * sizeof *k->n);
    }
    k->p[k->len] = t;
    k->n[k->len++] = n;
}

static void toks_free(toks *k)
{
    free(k->p);
    free(k->n);
}

/* Moves s past "scheme://authority": the host and port of two servers
 * differ by design and are no identifier. */
static void url_skip_origin(const char **s, size_t *n)
{
    const char *p = *n > 3 ? memmem(*s, *n, "://", 3) : NULL;
    if (!p)
        return;
    const char *q = p + 3, *end = *s + *n;
    while (q < end && *q != '/')
        q++;
    *n = (size_t)(end - q);
    *s = q;
}

/* Two URLs (or paths) at the same place, token by token when they have as
 * many tokens. An integer segment of a URL counts as an identifier. */
static void learn_url(learn_ctx *x, const char *a, size_t an, const char *b, size_t bn)
{
    url_skip_origin(&a, &an);
    url_skip_origin(&b, &bn);
    toks ta = {0}, tb = {0};
    each_token(a, an, URL_DELIMS, false, toks_add, &ta);
    each_token(b, bn, URL_DELIMS, false, toks_add, &tb);
    if (ta.len == tb.len)
        for (size_t i = 0; i < ta.len; i++)
            learn_pair(x, "id", 2, ta.p[i], ta.n[i], tb.p[i], tb.n[i], NULL, false, false);
    toks_free(&ta);
    toks_free(&tb);
}

static bool looks_like_url(const char *s, size_t n)
{
    return (n > 1 && s[0] == '/') || (n > 7 && strncmp(s, "http://", 7) == 0) ||
           (n > 8 && strncmp(s, "https://", 8) == 0);
}

/* The member a value at path[0..depth) was found under (for an element of
 * an array, the array's), or NULL at the top. */
static const noise_step *step_named(const noise_step *path, size_t depth)
{
    for (size_t i = depth; i > 0; i--)
        if (path[i - 1].key)
            return &path[i - 1];
    return NULL;
}

/* Walks the recorded (r) and target (g) JSON at the same places. */
static void learn_json(learn_ctx *x, const json_t *r, json_t *g, noise_step *path, size_t depth)
{
    if (depth >= MAX_DEPTH)
        return;
    if (json_is_object(r) && json_is_object(g)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)r, k, v)
        {
            json_t *w = json_object_get(g, k);
            if (!w)
                continue;
            path[depth] = (noise_step){k, strlen(k), 0};
            learn_json(x, v, w, path, depth + 1);
        }
        return;
    }
    if (json_is_array(r) && json_is_array(g)) {
        size_t n =
            json_array_size(r) < json_array_size(g) ? json_array_size(r) : json_array_size(g);
        for (size_t i = 0; i < n; i++) {
            path[depth] = (noise_step){NULL, 0, i};
            learn_json(x, json_array_get(r, i), json_array_get(g, i), path, depth + 1);
        }
        return;
    }
    char t1[32], t2[32];
    size_t n1, n2;
    const char *a = scalar_text(r, t1, sizeof t1, &n1), *b = scalar_text(g, t2, sizeof t2, &n2);
    if (!a || !b)
        return;
    const noise_step *named = step_named(path, depth);
    bool explicit = noise_correlate_path(x->c->rules, path, depth);
    learn_pair(x, named ? named->key : NULL, named ? named->klen : 0, a, n1, b, n2, g,
               json_is_integer(r), explicit);
    if (json_is_string(r) && json_is_string(g) && looks_like_url(a, n1) && looks_like_url(b, n2))
        learn_url(x, a, n1, b, n2);
}

/* An ETag's opaque part: W/ and the quotes removed. */
static void etag_opaque(const char *v, const char **p, size_t *n)
{
    if (strncmp(v, "W/", 2) == 0)
        v += 2;
    size_t l = strlen(v);
    if (l >= 2 && v[0] == '"' && v[l - 1] == '"') {
        v++;
        l -= 2;
    }
    *p = v;
    *n = l;
}

/* name=value of a Set-Cookie (up to the first ';'). */
static bool cookie_pair(const char *sc, const char **name, size_t *nl, const char **val, size_t *vl)
{
    const char *eq = strchr(sc, '=');
    const char *semi = strchr(sc, ';');
    if (!eq || (semi && semi < eq))
        return false;
    *name = sc;
    *nl = (size_t)(eq - sc);
    util_trim(name, nl);
    *val = eq + 1;
    *vl = semi ? (size_t)(semi - eq - 1) : strlen(eq + 1);
    util_trim(val, vl);
    if (*vl >= 2 && (*val)[0] == '"' && (*val)[*vl - 1] == '"') {
        (*val)++;
        *vl -= 2;
    }
    return *nl > 0;
}

static void learn_cookies(learn_ctx *x, const record *rec, const record *got)
{
    for (size_t i = 0; i < rec->resp_headers.len; i++) {
        const http_header *h = &rec->resp_headers.v[i];
        const char *n1, *v1;
        size_t l1, w1;
        if (strcasecmp(h->name, "set-cookie") != 0 || !cookie_pair(h->value, &n1, &l1, &v1, &w1))
            continue;
        for (size_t j = 0; j < got->resp_headers.len; j++) {
            const http_header *g = &got->resp_headers.v[j];
            const char *n2, *v2;
            size_t l2, w2;
            if (strcasecmp(g->name, "set-cookie") == 0 &&
                cookie_pair(g->value, &n2, &l2, &v2, &w2) && l1 == l2 && memcmp(n1, n2, l1) == 0) {
                learn_pair(x, n1, l1, v1, w1, v2, w2, NULL, false, false);
                break;
            }
        }
    }
}

static void learn_headers(learn_ctx *x, const record *rec, const record *got)
{
    const noise *rules = x->c->rules;
    const char *a, *b;
    if (!noise_correlate_header_off(rules, "location") &&
        (a = http_headers_get(&rec->resp_headers, "location")) &&
        (b = http_headers_get(&got->resp_headers, "location")))
        learn_url(x, a, strlen(a), b, strlen(b));
    if (!noise_correlate_header_off(rules, "etag") &&
        (a = http_headers_get(&rec->resp_headers, "etag")) &&
        (b = http_headers_get(&got->resp_headers, "etag"))) {
        const char *p, *q;
        size_t pn, qn;
        etag_opaque(a, &p, &pn);
        etag_opaque(b, &q, &qn);
        /* An ETag is opaque by definition: no looks-like test. */
        char *f = xstrndup(p, pn);
        if (used_later(x->c, f, x->index))
            learn_pair(x, NULL, 0, p, pn, q, qn, NULL, false, true);
        free(f);
    }
    if (!noise_correlate_header_off(rules, "set-cookie"))
        learn_cookies(x, rec, got);
}

static json_t *resp_json(const record *r)
{
    if (!r->resp_body.len || r->resp_truncated || r->resp_body_note)
        return NULL;
    return json_loadb(r->resp_body.data, r->resp_body.len, JSON_FLAGS, NULL);
}

/* The client's map, made on first use. */
static json_t *client_map(corr *c, const char *client)
{
    const char *k = client ? client : "";
    json_t *m = json_object_get(c->maps, k);
    if (!m) {
        m = json_object();
        json_object_set_new(c->maps, k, m);
    }
    return m;
}

size_t corr_learn(corr *c, const char *client, size_t index, const record *recorded,
                  const record *got)
{
    const char *m = recorded->method ? recorded->method : "GET";
    bool read = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "OPTIONS") == 0;
    learn_ctx x = {c, client_map(c, client), index, read, 0};
    learn_headers(&x, recorded, got);
    json_t *r = resp_json(recorded);
    json_t *g = r ? resp_json(got) : NULL;
    if (r && g) {
        noise_step path[MAX_DEPTH];
        learn_json(&x, r, g, path, 0);
    }
    json_decref(r);
    json_decref(g);
    return x.learned;
}

/* ------------------------------------------------------------------ */
/* substituting                                                         */

typedef struct map_ctx {
    const corr *c;
    const json_t *map; /* the client's, or NULL */
    corr_subs *subs;   /* where substitutions are listed, or NULL */
    size_t n;          /* substitutions made */
} map_ctx;

/* What t maps to, or NULL. A value that looks like an identifier only by
 * its member name (a small number, a short slug: 1 was learned from "id")
 * is replaced only where it is one again: under an id-like key, or
 * anywhere (a URL path segment, an explicit path), unless an explicit rule
 * or an ETag taught it; so "page=1" or "quantity": 1 stay as they are. */
static json_t *lookup(const map_ctx *m, const char *t, size_t n, const char *key, size_t klen,
                      bool anywhere)
{
    if (n == 0 || n > CORR_MAX_VALUE || memchr(t, '\0', n))
        return NULL;
    char *k = xstrndup(t, n);
    json_t *v = m->map ? json_object_get(m->map, k) : NULL;
    if (!v)
        v = json_object_get(m->c->global, k);
    if (v && !anywhere && !id_like_key(key, klen) && !corr_looks_like(NULL, 0, t, n, false) &&
        !json_object_get(m->c->vouched, k))
        v = NULL;
    free(k);
    return v;
}

/* Appends v's text, percent-encoded outside the unreserved characters when
 * it goes into a URL or a form. */
static void append_value(buf *out, const json_t *v, bool encode)
{
    char tmp[32];
    size_t n;
    const char *t = scalar_text(v, tmp, sizeof tmp, &n);
    assert(t); /* maps hold strings and integers only */
    for (size_t i = 0; i < n; i++) {
        char ch = t[i];
        if (!encode || is_digit(ch) || is_alpha(ch) || ch == '-' || ch == '.' || ch == '_' ||
            ch == '~')
            buf_append_char(out, ch);
        else
            buf_appendf(out, "%%%02X", (unsigned char)ch);
    }
}

static void note_sub(map_ctx *m, const char *place, const char *from, size_t fn, const json_t *to)
{
    m->n++;
    if (!m->subs)
        return;
    char *f = xstrndup(from, fn);
    buf t = BUF_INIT;
    append_value(&t, to, false);
    corr_subs_add(m->subs, place, f, t.data ? t.data : "");
    buf_free(&t);
    free(f);
}

/* Where a text is mapped, and how. */
typedef struct text_place {
    const char *place;  /* for the list of substitutions */
    const char *delims; /* token separators */
    bool after_eq;      /* also the part after a token's first '=' (cookies) */
    bool encode;        /* percent-encode what is put in (URLs, forms) */
    const char *key;    /* the key of every token (a header's), or NULL */
    bool anywhere;      /* every token is a place for an identifier (paths) */
} text_place;

/* s[0..n) with every mapped token replaced, into out. A token after '='
 * has the token before it as its key ("site_id=17"). Returns the count. */
static size_t map_text(map_ctx *m, const text_place *tp, const char *s, size_t n, buf *out)
{
    size_t before = m->n, i = 0, pb = 0, pn = 0; /* the previous token */
    while (i <= n) {
        size_t b = i;
        while (i < n && !strchr(tp->delims, s[i]))
            i++;
        const char *key = tp->key;
        size_t klen = key ? strlen(key) : 0;
        if (b > 0 && s[b - 1] == '=') {
            key = s + pb;
            klen = pn;
        }
        const char *eq = tp->after_eq ? memchr(s + b, '=', i - b) : NULL;
        json_t *v = lookup(m, s + b, i - b, key, klen, tp->anywhere);
        if (v) {
            note_sub(m, tp->place, s + b, i - b, v);
            append_value(out, v, tp->encode);
        } else if (eq && (v = lookup(m, eq + 1, (size_t)(s + i - eq - 1), s + b,
                                     (size_t)(eq - (s + b)), tp->anywhere))) {
            buf_append(out, s + b, (size_t)(eq + 1 - (s + b)));
            note_sub(m, tp->place, eq + 1, (size_t)(s + i - eq - 1), v);
            append_value(out, v, tp->encode);
        } else {
            buf_append(out, s + b, i - b);
        }
        if (i < n)
            buf_append_char(out, s[i]);
        pb = b;
        pn = i - b;
        i++;
    }
    return m->n - before;
}

/* A scalar of a JSON body: *nv gets its replacement when it is mapped (a
 * string stays a string; a number takes the target's value as it is) or,
 * for a string that is a URL, when one of its tokens is. */
static bool map_json_scalar(map_ctx *m, const json_t *v, const noise_step *path, size_t depth,
                            json_t **nv)
{
    char tmp[32];
    size_t n;
    const char *t = scalar_text(v, tmp, sizeof tmp, &n);
    if (!t)
        return false;
    buf place = BUF_INIT;
    if (m->subs) {
        char *p = noise_path_format(path, depth);
        buf_appendf(&place, "body %s", p);
        free(p);
    }
    const char *pl = place.data ? place.data : "body";
    const noise_step *named = step_named(path, depth);
    bool anywhere = noise_correlate_path(m->c->rules, path, depth);
    json_t *to = lookup(m, t, n, named ? named->key : NULL, named ? named->klen : 0, anywhere);
    if (to) {
        note_sub(m, pl, t, n, to);
        if (json_is_string(v)) {
            buf out = BUF_INIT;
            append_value(&out, to, false);
            *nv = json_stringn(out.data ? out.data : "", out.len);
            buf_free(&out);
        } else {
            *nv = json_deep_copy(to);
        }
    } else if (json_is_string(v) && looks_like_url(t, n)) {
        buf out = BUF_INIT;
        text_place tp = {pl, URL_DELIMS, false, false, NULL, true};
        if (map_text(m, &tp, t, n, &out))
            *nv = json_stringn(out.data, out.len);
        buf_free(&out);
    }
    buf_free(&place);
    return *nv != NULL;
}

/* Replaces mapped scalars of j in place (strings that are URLs token by
 * token). place: "body" or NULL (no list). Returns the count. */
static size_t map_json(map_ctx *m, json_t *j, noise_step *path, size_t depth)
{
    size_t before = m->n;
    if (depth >= MAX_DEPTH)
        return 0;
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v)
        {
            path[depth] = (noise_step){k, strlen(k), 0};
            if (json_is_object(v) || json_is_array(v)) {
                map_json(m, v, path, depth + 1);
                continue;
            }
            json_t *nv = NULL;
            if (map_json_scalar(m, v, path, depth + 1, &nv))
                json_object_set_new(j, k, nv);
        }
    } else if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++) {
            json_t *v = json_array_get(j, i);
            path[depth] = (noise_step){NULL, 0, i};
            json_t *nv = NULL;
            if (json_is_object(v) || json_is_array(v))
                map_json(m, v, path, depth + 1);
            else if (map_json_scalar(m, v, path, depth + 1, &nv))
                json_array_set_new(j, i, nv);
        }
    }
    return m->n - before;
}

/* A JSON body with its mapped values replaced, into out; false when none
 * was (or the body is no JSON object or array). */
static bool map_body(map_ctx *m, const char *s, size_t n, buf *out)
{
    json_t *j = json_loadb(s, n, JSON_FLAGS, NULL);
    bool changed = false;
    if (j && (json_is_object(j) || json_is_array(j))) {
        noise_step path[MAX_DEPTH];
        if (map_json(m, j, path, 0)) {
            char *d = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
            buf_append_str(out, d);
            free(d);
            changed = true;
        }
    }
    json_decref(j);
    return changed;
}

static void set_str(char **field, buf *b)
{
    free(*field);
    *field = buf_detach(b);
}

static void set_body(buf *body, buf *b)
{
    buf_free(body);
    *body = *b;
    buf_init(b);
}

/* The key a header's tokens have: conditional requests carry ETags,
 * Authorization tokens, and a header named like an identifier (ETag,
 * X-CSRFToken, X-Request-Id) its own name. */
static const char *header_key(const char *name)
{
    if (strcasecmp(name, "if-match") == 0 || strcasecmp(name, "if-none-match") == 0)
        return "etag";
    if (strcasecmp(name, "authorization") == 0 || strcasecmp(name, "proxy-authorization") == 0)
        return "token";
    return name;
}

/* Maps rec's request headers (resp: its response headers) into *cp (a
 * copy of rec, made on the first change). A Location is a URL (every path
 * segment a place for an identifier); other values are tokens. */
static void map_headers(map_ctx *m, const record *rec, bool resp, record **cp)
{
    const http_headers *hs = resp ? &rec->resp_headers : &rec->req_headers;
    buf v = BUF_INIT, place = BUF_INIT;
    for (size_t i = 0; i < hs->len; i++) {
        const http_header *h = &hs->v[i];
        if (noise_correlate_header_off(m->c->rules, h->name))
            continue;
        buf_reset(&v);
        buf_reset(&place);
        buf_appendf(&place, "header %s", h->name);
        text_place tp = {place.data, HEADER_DELIMS, true, false, header_key(h->name), false};
        if (resp && strcasecmp(h->name, "location") == 0)
            tp = (text_place){place.data, URL_DELIMS, false, false, NULL, true};
        if (!map_text(m, &tp, h->value, strlen(h->value), &v))
            continue;
        if (!*cp)
            *cp = record_copy(rec);
        http_header_set_value(resp ? &(*cp)->resp_headers : &(*cp)->req_headers, i, v.data);
    }
    buf_free(&v);
    buf_free(&place);
}

record *corr_apply(const corr *c, const char *client, const record *rec, corr_subs *subs)
{
    if (json_object_size(c->global) == 0)
        return NULL; /* nothing learned yet: nothing to look for */
    map_ctx m = {c, json_object_get(c->maps, client ? client : ""), subs, 0};
    record *cp = NULL;
    buf b = BUF_INIT;
    static const text_place path = {"path", PATH_DELIMS, false, true, NULL, true};
    static const text_place query = {"query", QUERY_DELIMS, false, true, NULL, false};
    static const text_place form = {"form", QUERY_DELIMS, false, true, NULL, false};
    if (rec->path && map_text(&m, &path, rec->path, strlen(rec->path), &b)) {
        cp = record_copy(rec);
        set_str(&cp->path, &b);
    }
    buf_reset(&b);
    if (rec->query && map_text(&m, &query, rec->query, strlen(rec->query), &b)) {
        if (!cp)
            cp = record_copy(rec);
        set_str(&cp->query, &b);
    }
    buf_reset(&b);
    map_headers(&m, rec, false, &cp);
    bool body = false;
    if (rec->req_body.len && !rec->req_truncated && !rec->req_body_note) {
        if (is_form(rec))
            body = map_text(&m, &form, rec->req_body.data, rec->req_body.len, &b) > 0;
        else
            body = map_body(&m, rec->req_body.data, rec->req_body.len, &b);
    }
    if (body) {
        if (!cp)
            cp = record_copy(rec);
        set_body(&cp->req_body, &b);
        cp->req_body_size = cp->req_body.len;
    }
    buf_free(&b);
    return cp;
}

record *corr_expected(const corr *c, const char *client, const record *rec)
{
    map_ctx m = {c, json_object_get(c->maps, client ? client : ""), NULL, 0};
    if (json_object_size(c->global) == 0)
        return NULL; /* nothing learned: the common case costs nothing */
    record *cp = NULL;
    buf b = BUF_INIT;
    if (rec->resp_body.len && !rec->resp_truncated && !rec->resp_body_note &&
        map_body(&m, rec->resp_body.data, rec->resp_body.len, &b)) {
        cp = record_copy(rec);
        set_body(&cp->resp_body, &b);
        cp->resp_body_size = cp->resp_body.len;
    }
    buf_free(&b);
    map_headers(&m, rec, true, &cp);
    return cp;
}
