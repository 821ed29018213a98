#include "capture/redact.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/util.h"

#define REDACTED_JSON "\"" REDACTED "\""

/* ---- headers ---- */

static bool name_listed(char *const *names, const char *s, size_t n)
{
    if (!names)
        return false;
    for (size_t i = 0; names[i]; i++)
        if (util_ieq(s, n, names[i]))
            return true;
    return false;
}

bool redact_headers(char *const *names, http_headers *h)
{
    bool changed = false;
    for (size_t i = 0; i < h->len; i++) {
        http_header *e = &h->v[i];
        if (!name_listed(names, e->name, strlen(e->name)) || strcmp(e->value, REDACTED) == 0)
            continue;
        http_header_set_value(h, i, REDACTED);
        changed = true;
    }
    return changed;
}

/* ---- rewriting ---- */

/* A rewrite of src into out: bytes before src[copied] are already in out.
 * out stays empty until the first replacement, so an untouched body costs no
 * copy. */
typedef struct rewrite {
    const char *src;
    size_t len;
    size_t copied;
    buf out;
    bool changed;
} rewrite;

static void rw_replace_n(rewrite *w, size_t from, size_t to, const char *with, size_t wlen)
{
    assert(from >= w->copied && to >= from && to <= w->len);
    buf_append(&w->out, w->src + w->copied, from - w->copied);
    buf_append(&w->out, with, wlen);
    w->copied = to;
    w->changed = true;
}

static void rw_replace(rewrite *w, size_t from, size_t to, const char *with)
{
    rw_replace_n(w, from, to, with, strlen(with));
}

/* Finishes the rewrite: when something changed, out holds the whole result. */
static bool rw_finish(rewrite *w)
{
    if (!w->changed) {
        buf_free(&w->out);
        return false;
    }
    buf_append(&w->out, w->src + w->copied, w->len - w->copied);
    return true;
}

/* ---- JSON ---- */

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_ws(const char *s, size_t n, size_t i)
{
    while (i < n && is_ws(s[i]))
        i++;
    return i;
}

/* s[i] is '"': the index just past the closing quote, or n when the string
 * runs to the end (truncated body). *closed (may be NULL) tells which. */
static size_t string_end(const char *s, size_t n, size_t i, bool *closed)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\') {
            i++;
        } else if (s[i] == '"') {
            if (closed)
                *closed = true;
            return i + 1;
        }
    }
    if (closed)
        *closed = false;
    return n;
}

/* Extent of the value starting at s[i] (not whitespace), as far as needed to
 * hide it: a string to its closing quote, an object or array to its matching
 * bracket (any bracket kind counts, so broken nesting errs on hiding more),
 * anything else up to the next ',', '}' or ']' with trailing whitespace left
 * out. Each runs to n when the body is cut inside the value. */
static size_t value_end(const char *s, size_t n, size_t i)
{
    if (s[i] == '"')
        return string_end(s, n, i, NULL);
    if (s[i] == '{' || s[i] == '[') {
        size_t depth = 0;
        while (i < n) {
            char c = s[i];
            if (c == '"') {
                i = string_end(s, n, i, NULL);
                continue;
            }
            if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0)
                    return i + 1;
            }
            i++;
        }
        return n;
    }
    size_t e = i;
    while (e < n && s[e] != ',' && s[e] != '}' && s[e] != ']')
        e++;
    while (e > i && is_ws(s[e - 1]))
        e--;
    return e;
}

static int hex4(const char *p, const char *end)
{
    if (end - p < 4)
        return -1;
    int v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v << 4 | d;
    }
    return v;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Field names are short; a key longer than this cannot be listed. */
#define KEY_MAX 256

/* Is the JSON string content p[0..n) (between the quotes, still escaped) a
 * listed field? Escapes are decoded first, so "pass\u0077ord" is caught. */
static bool json_key_listed(char *const *fields, const char *p, size_t n)
{
    char key[KEY_MAX + 4];
    size_t k = 0;
    const char *end = p + n;
    while (p < end) {
        if (k >= KEY_MAX)
            return false;
        char c = *p++;
        if (c != '\\' || p == end) {
            key[k++] = c;
            continue;
        }
        c = *p++;
        switch (c) {
        case 'b':
            key[k++] = '\b';
            break;
        case 'f':
            key[k++] = '\f';
            break;
        case 'n':
            key[k++] = '\n';
            break;
        case 'r':
            key[k++] = '\r';
            break;
        case 't':
            key[k++] = '\t';
            break;
        case 'u': {
            int v = hex4(p, end);
            if (v < 0) {
                key[k++] = 'u';
                break;
            }
            p += 4;
            unsigned cp = (unsigned)v;
            if (cp >= 0xd800 && cp < 0xdc00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                int lo = hex4(p + 2, end);
                if (lo >= 0xdc00 && lo < 0xe000) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + ((unsigned)lo - 0xdc00);
                    p += 6;
                }
            }
            k += put_utf8(key + k, cp);
            break;
        }
        default:
            key[k++] = c; /* \" \\ \/ and unknown escapes */
        }
    }
    return name_listed(fields, key, k);
}

/* Fallback for input the tokenizer cannot follow: every '"' is tried as the
 * start of a key followed by ':', whatever the quoting phase, so a listed
 * key's value is hidden even when earlier garbage confused string
 * boundaries. It may hide more than needed, never less. */
static void json_textual_scan(char *const *fields, rewrite *w)
{
    const char *s = w->src;
    size_t n = w->len;
    /* Bound each key scan by the longest field (an escaped char is at most
     * 6 bytes), so a body of escaped quotes cannot make this quadratic. */
    size_t longest = 0;
    for (size_t f = 0; fields[f]; f++)
        if (strlen(fields[f]) > longest)
            longest = strlen(fields[f]);
    size_t bound = longest * 6 + 2;
    size_t i = 0;
    while (i < n) {
        const char *q = memchr(s + i, '"', n - i);
        if (!q)
            break;
        size_t start = (size_t)(q - s);
        size_t lim = n - start > bound ? start + bound : n;
        bool closed;
        size_t e = string_end(s, lim, start, &closed);
        i = start + 1;
        if (!closed)
            continue;
        size_t colon = skip_ws(s, n, e);
        if (colon >= n || s[colon] != ':')
            continue;
        if (!json_key_listed(fields, s + start + 1, e - start - 2))
            continue;
        size_t v = skip_ws(s, n, colon + 1);
        if (v >= n)
            break;
        size_t ve = value_end(s, n, v);
        if (ve > v) {
            rw_replace(w, v, ve, REDACTED_JSON);
            i = ve;
        } else {
            i = v;
        }
    }
}

enum {
    J_VALUE,       /* a value is expected (top level, after ':' or ',' in arrays) */
    J_OBJ_FIRST,   /* after '{': a key or '}' */
    J_KEY,         /* after ',' in an object */
    J_COLON,       /* after a key */
    J_ARR_FIRST,   /* after '[': a value or ']' */
    J_AFTER_VALUE, /* ',' or the closing bracket (or, at top level, another value) */
};

static bool is_scalar_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '+' || c == '.';
}

/* Follows the JSON structure and replaces the values of listed keys. Returns
 * false when the input stops making sense (then the caller falls back). A
 * body that ends anywhere is fine: that is just the capture cap. */
static bool json_tokenize(char *const *fields, rewrite *w)
{
    const char *s = w->src;
    size_t n = w->len;
    /* Nesting stack: one byte per level, '{' or '['. */
    buf stack = BUF_INIT;
    int st = J_VALUE;
    bool hide_next = false;
    bool ok = true;
    size_t i = 0;
    for (;;) {
        i = skip_ws(s, n, i);
        if (i >= n)
            break;
        char c = s[i];
        char top = stack.len ? stack.data[stack.len - 1] : 0;
        switch (st) {
        case J_OBJ_FIRST:
        case J_KEY:
            if (c == '}' && st == J_OBJ_FIRST) {
                stack.len--;
                i++;
                st = J_AFTER_VALUE;
            } else if (c == '"') {
                bool closed;
                size_t e = string_end(s, n, i, &closed);
                if (!closed)
                    goto done; /* cut inside the key */
                hide_next = json_key_listed(fields, s + i + 1, e - i - 2);
                i = e;
                st = J_COLON;
            } else {
                ok = false;
                goto done;
            }
            break;
        case J_COLON:
            if (c != ':') {
                ok = false;
                goto done;
            }
            i++;
            st = J_VALUE;
            break;
        case J_ARR_FIRST:
            if (c == ']') {
                stack.len--;
                i++;
                st = J_AFTER_VALUE;
                break;
            }
            /* fall through */
        case J_VALUE:
            if (hide_next) {
                hide_next = false;
                size_t e = value_end(s, n, i);
                if (e == i) {
                    ok = false;
                    goto done;
                }
                rw_replace(w, i, e, REDACTED_JSON);
                i = e;
                st = J_AFTER_VALUE;
            } else if (c == '"') {
                i = string_end(s, n, i, NULL);
                st = J_AFTER_VALUE;
            } else if (c == '{' || c == '[') {
                buf_append_char(&stack, c);
                i++;
                st = c == '{' ? J_OBJ_FIRST : J_ARR_FIRST;
            } else if (is_scalar_char(c)) {
                while (i < n && is_scalar_char(s[i]))
                    i++;
                st = J_AFTER_VALUE;
            } else {
                ok = false;
                goto done;
            }
            break;
        case J_AFTER_VALUE:
            if (!top) {
                /* Several top-level values (JSON lines): keep going. */
                st = J_VALUE;
            } else if (c == ',') {
                i++;
                st = top == '{' ? J_KEY : J_VALUE;
            } else if ((c == '}' && top == '{') || (c == ']' && top == '[')) {
                stack.len--;
                i++;
            } else {
                ok = false;
                goto done;
            }
            break;
        }
    }
done:
    buf_free(&stack);
    return ok;
}

bool redact_json(char *const *fields, buf *body)
{
    if (!fields || !fields[0] || body->len == 0)
        return false;
    rewrite w = {body->data, body->len, 0, BUF_INIT, false};
    if (!json_tokenize(fields, &w)) {
        /* The textual scan finds every key the tokenizer found (a listed key
         * is always '"key" ws :'), so restarting from scratch loses nothing. */
        buf_free(&w.out);
        w.copied = 0;
        w.changed = false;
        json_textual_scan(fields, &w);
    }
    if (!rw_finish(&w))
        return false;
    buf_free(body);
    *body = w.out;
    return true;
}

/* ---- form / query ---- */

/* Is the form-encoded name p[0..n) a listed field once '+' and %XX are
 * decoded? */
static bool form_name_listed(char *const *fields, const char *p, size_t n)
{
    char name[KEY_MAX];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k >= sizeof name)
            return false;
        char c = p[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%' && i + 2 < n) {
            int hi = hex_digit(p[i + 1]);
            int lo = hex_digit(p[i + 2]);
            if (hi >= 0 && lo >= 0) {
                c = (char)(hi << 4 | lo);
                i += 2;
            }
        }
        name[k++] = c;
    }
    return name_listed(fields, name, k);
}

/* Hides the value of the name=value pair s[from..end) of w when its name is
 * listed (a query or form field, a path parameter). */
static void pair_scan(char *const *fields, rewrite *w, size_t from, size_t end)
{
    const char *s = w->src;
    const char *eq = memchr(s + from, '=', end - from);
    if (!eq || !form_name_listed(fields, s + from, (size_t)(eq - s) - from))
        return;
    size_t v = (size_t)(eq - s) + 1;
    if (!util_ieq(s + v, end - v, REDACTED))
        rw_replace(w, v, end, REDACTED);
}

static void form_scan(char *const *fields, rewrite *w, const void *arg)
{
    (void)arg;
    size_t n = w->len;
    size_t i = 0;
    while (i < n) {
        const char *amp = memchr(w->src + i, '&', n - i);
        size_t end = amp ? (size_t)(amp - w->src) : n;
        pair_scan(fields, w, i, end);
        i = end + 1;
    }
}

/* A scan over a rewrite: finds what to hide and rw_replaces it. */
typedef void (*scan_fn)(char *const *fields, rewrite *w, const void *arg);

/* Runs scan over body and, when it changed something, puts the result in
 * its place. */
static bool rewrite_buf(char *const *fields, buf *body, scan_fn scan, const void *arg)
{
    if (!fields || !fields[0] || body->len == 0)
        return false;
    rewrite w = {body->data, body->len, 0, BUF_INIT, false};
    scan(fields, &w, arg);
    if (!rw_finish(&w))
        return false;
    buf_free(body);
    *body = w.out;
    return true;
}

/* The same over a heap string (freed and replaced when changed). */
static bool rewrite_str(char *const *fields, char **str, scan_fn scan)
{
    if (!fields || !fields[0] || !*str || !**str)
        return false;
    rewrite w = {*str, strlen(*str), 0, BUF_INIT, false};
    scan(fields, &w, NULL);
    if (!rw_finish(&w))
        return false;
    free(*str);
    *str = buf_detach(&w.out);
    return true;
}

bool redact_form(char *const *fields, buf *body)
{
    return rewrite_buf(fields, body, form_scan, NULL);
}

bool redact_query(char *const *fields, char **query)
{
    return rewrite_str(fields, query, form_scan);
}

/* Matrix parameters (RFC 3986 §3.3 path parameters, "/s;token=abc/x"):
 * within each segment, ';name=value' pairs up to the next ';' or '/'. */
static void path_params_scan(char *const *fields, rewrite *w, const void *arg)
{
    (void)arg;
    const char *s = w->src;
    size_t n = w->len;
    size_t i = 0;
    while (i < n) {
        const char *semi = memchr(s + i, ';', n - i);
        if (!semi)
            break;
        size_t name = (size_t)(semi - s) + 1;
        size_t end = name;
        while (end < n && s[end] != ';' && s[end] != '/')
            end++;
        pair_scan(fields, w, name, end);
        i = end;
    }
}

bool redact_path(char *const *fields, char **path)
{
    return rewrite_str(fields, path, path_params_scan);
}

/* ---- record ---- */

enum { BODY_OTHER, BODY_JSON, BODY_FORM, BODY_MULTIPART };

/* A multipart boundary is at most 70 characters (RFC 2046 §5.1.1). */
#define BOUNDARY_MAX 72

/* How a body is read for redaction. The declared Content-Type comes first
 * where it names a structure restspy can follow (JSON, form, multipart);
 * otherwise the content decides: a body that starts like JSON is redacted
 * as JSON whatever its declared type (a client sending JSON as text/plain
 * still sends secrets), and an undeclared or text/plain body that looks
 * like name=value pairs as a form. Hiding too much is the safe error. */
typedef struct body_class {
    int kind;
    char boundary[BOUNDARY_MAX + 1]; /* BODY_MULTIPART */
} body_class;

static bool looks_like_json(const char *p, size_t n)
{
    size_t i = skip_ws(p, n, 0);
    return i < n && (p[i] == '{' || p[i] == '[');
}

/* name=value pairs: printable ASCII without spaces, and an '='. */
static bool looks_like_form(const char *p, size_t n)
{
    bool eq = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch < 0x21 || ch > 0x7e)
            return false;
        eq = eq || ch == '=';
    }
    return eq;
}

/* The boundary parameter of a multipart Content-Type's parameters (after
 * the media type), quoted or not; false when there is none (or it is too
 * long to be one). */
static bool multipart_boundary(const char *params, char *out)
{
    const char *p = params;
    while ((p = strchr(p, ';')) != NULL) {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncasecmp(p, "boundary=", 9) != 0)
            continue;
        p += 9;
        size_t n;
        if (*p == '"') {
            p++;
            n = strcspn(p, "\"");
        } else {
            n = strcspn(p, "; \t");
        }
        if (n == 0 || n > BOUNDARY_MAX)
            return false;
        memcpy(out, p, n);
        out[n] = '\0';
        return true;
    }
    return false;
}

static void classify(const char *ct, const char *body, size_t len, body_class *bc)
{
    bc->kind = BODY_OTHER;
    size_t n = 0;
    if (ct) {
        while (*ct == ' ' || *ct == '\t')
            ct++;
        n = strcspn(ct, "; \t");
        if (n > 10 && strncasecmp(ct, "multipart/", 10) == 0 &&
            multipart_boundary(ct + n, bc->boundary)) {
            bc->kind = BODY_MULTIPART;
            return;
        }
        if (util_ieq(ct, n, "application/json") || util_ieq(ct, n, "text/json") ||
            (n >= 5 && util_ieq(ct + n - 5, 5, "+json"))) {
            bc->kind = BODY_JSON;
            return;
        }
        if (util_ieq(ct, n, "application/x-www-form-urlencoded")) {
            bc->kind = BODY_FORM;
            return;
        }
    }
    if (looks_like_json(body, len))
        bc->kind = BODY_JSON;
    else if ((!ct || util_ieq(ct, n, "text/plain")) && looks_like_form(body, len))
        bc->kind = BODY_FORM;
}

static void redact_body(char *const *fields, const body_class *bc, buf *b);

/* The value of a part header line's name= parameter (not filename=). */
static void disposition_name(const char *line, size_t ll, const char **name, size_t *nlen)
{
    for (size_t k = 20; k + 5 <= ll; k++) {
        if (strncasecmp(line + k, "name=", 5) != 0 ||
            (line[k - 1] != ' ' && line[k - 1] != ';' && line[k - 1] != '\t'))
            continue;
        size_t v = k + 5;
        bool quoted = v < ll && line[v] == '"';
        if (quoted)
            v++;
        size_t ve = v;
        while (ve < ll && (quoted ? line[ve] != '"' : line[ve] != ';' && line[ve] != ' '))
            ve++;
        *name = line + v;
        *nlen = ve - v;
        return;
    }
}

/* The Content-Disposition name and the Content-Type (copied into ctype) of
 * a part whose header lines are h[0..n). */
static void part_headers(const char *h, size_t n, const char **name, size_t *nlen, char *ctype,
                         size_t ctcap)
{
    *name = NULL;
    *nlen = 0;
    ctype[0] = '\0';
    size_t i = 0;
    while (i < n) {
        const char *eol = memchr(h + i, '\n', n - i);
        size_t e = eol ? (size_t)(eol - h) : n;
        const char *line = h + i;
        size_t ll = e - i;
        if (ll && line[ll - 1] == '\r')
            ll--;
        if (ll > 13 && strncasecmp(line, "content-type:", 13) == 0) {
            size_t v = 13;
            while (v < ll && (line[v] == ' ' || line[v] == '\t'))
                v++;
            size_t cl = ll - v < ctcap - 1 ? ll - v : ctcap - 1;
            memcpy(ctype, line + v, cl);
            ctype[cl] = '\0';
        } else if (ll > 20 && strncasecmp(line, "content-disposition:", 20) == 0) {
            disposition_name(line, ll, name, nlen);
        }
        i = e + 1;
    }
}

/* Redacts one part's content s[from..to): hidden whole when its name is
 * listed, else by its own Content-Type or content. */
static void multipart_part(char *const *fields, rewrite *w, const char *head, size_t hlen,
                           size_t from, size_t to)
{
    const char *s = w->src;
    const char *name;
    size_t nlen;
    char ctype[128];
    part_headers(head, hlen, &name, &nlen, ctype, sizeof ctype);
    if (name && name_listed(fields, name, nlen)) {
        if (!util_ieq(s + from, to - from, REDACTED))
            rw_replace(w, from, to, REDACTED);
        return;
    }
    if (to == from)
        return;
    body_class bc;
    classify(ctype[0] ? ctype : NULL, s + from, to - from, &bc);
    if (bc.kind == BODY_OTHER || bc.kind == BODY_MULTIPART)
        return; /* nested multipart is not followed */
    buf part = BUF_INIT;
    buf_append(&part, s + from, to - from);
    redact_body(fields, &bc, &part);
    if (part.len != to - from || memcmp(part.data, s + from, part.len) != 0)
        rw_replace_n(w, from, to, part.data, part.len);
    buf_free(&part);
}

/* memmem over h[0..hn) that is never called on an empty haystack (GCC's
 * sanitizer build cannot prove the pointer non-null inside the scan). */
static const char *find(const char *h, size_t hn, const char *needle, size_t nn)
{
    if (!h || hn < nn)
        return NULL;
    return memmem(h, hn, needle, nn);
}

/* multipart/form-data and its kin (RFC 7578, RFC 2046). A body cut at the
 * capture cap is handled up to its end. */
static void multipart_scan(char *const *fields, rewrite *w, const void *arg)
{
    const char *boundary = arg;
    const char *s = w->src;
    size_t n = w->len;
    size_t blen = strlen(boundary);
    if (blen == 0 || blen > BOUNDARY_MAX || s == NULL || n == 0)
        return; /* not a boundary (RFC 2046): nothing can be delimited */
    char delim[BOUNDARY_MAX + 8];
    size_t dl = (size_t)snprintf(delim, sizeof delim, "\n--%s", boundary);
    /* The first delimiter may open the body without a line break. */
    size_t i;
    if (n >= dl - 1 && memcmp(s, delim + 1, dl - 1) == 0) {
        i = dl - 1;
    } else {
        const char *d = find(s, n, delim, dl);
        if (!d)
            return;
        i = (size_t)(d - s) + dl;
    }
    while (i < n) {
        if (n - i >= 2 && s[i] == '-' && s[i + 1] == '-')
            return; /* the closing delimiter */
        const char *hend = find(s + i, n - i, "\r\n\r\n", 4);
        size_t hl = 4;
        const char *lf = find(s + i, n - i, "\n\n", 2);
        if (lf && (!hend || lf < hend)) {
            hend = lf;
            hl = 2;
        }
        if (!hend)
            return; /* cut inside the part's headers */
        size_t cstart = (size_t)(hend - s) + hl;
        const char *next = find(s + cstart, n - cstart, delim, dl);
        size_t cend = next ? (size_t)(next - s) : n;
        if (next && cend > cstart && s[cend - 1] == '\r')
            cend--;
        multipart_part(fields, w, s + i, (size_t)(hend - s) - i, cstart, cend);
        if (!next)
            return;
        i = (size_t)(next - s) + dl;
    }
}

bool redact_multipart(char *const *fields, const char *boundary, buf *body)
{
    return rewrite_buf(fields, body, multipart_scan, boundary);
}

static void redact_body(char *const *fields, const body_class *bc, buf *b)
{
    if (bc->kind == BODY_JSON)
        redact_json(fields, b);
    else if (bc->kind == BODY_FORM)
        redact_form(fields, b);
    else if (bc->kind == BODY_MULTIPART)
        redact_multipart(fields, bc->boundary, b);
}

bool redact_bodies(const config *c)
{
    return c && c->redact && c->redact_fields && c->redact_fields[0];
}

void redact_record(const config *c, record *r)
{
    if (!c || !c->redact)
        return;
    /* Classify the bodies before the headers are touched: Content-Type may
     * itself be listed in redact_headers. */
    body_class req, resp;
    classify(http_headers_get(&r->req_headers, "content-type"), r->req_body.data, r->req_body.len,
             &req);
    classify(http_headers_get(&r->resp_headers, "content-type"), r->resp_body.data,
             r->resp_body.len, &resp);
    redact_headers(c->redact_headers, &r->req_headers);
    redact_headers(c->redact_headers, &r->resp_headers);
    if (!c->redact_fields)
        return;
    redact_query(c->redact_fields, &r->query);
    redact_path(c->redact_fields, &r->path);
    redact_body(c->redact_fields, &req, &r->req_body);
    redact_body(c->redact_fields, &resp, &r->resp_body);
}
