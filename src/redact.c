#include "redact.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

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

bool redact_headers(char *const *names, record_headers *h)
{
    bool changed = false;
    for (size_t i = 0; i < h->len; i++) {
        record_header *e = &h->v[i];
        if (!name_listed(names, e->name, strlen(e->name)) || strcmp(e->value, REDACTED) == 0)
            continue;
        record_header_set_value(h, i, REDACTED);
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

static void rw_replace(rewrite *w, size_t from, size_t to, const char *with)
{
    buf_append(&w->out, w->src + w->copied, from - w->copied);
    buf_append_str(&w->out, with);
    w->copied = to;
    w->changed = true;
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

static void form_scan(char *const *fields, rewrite *w)
{
    const char *s = w->src;
    size_t n = w->len;
    size_t i = 0;
    while (i < n) {
        const char *amp = memchr(s + i, '&', n - i);
        size_t end = amp ? (size_t)(amp - s) : n;
        const char *eq = memchr(s + i, '=', end - i);
        if (eq && form_name_listed(fields, s + i, (size_t)(eq - s) - i)) {
            size_t v = (size_t)(eq - s) + 1;
            if (!util_ieq(s + v, end - v, REDACTED))
                rw_replace(w, v, end, REDACTED);
        }
        i = end + 1;
    }
}

bool redact_form(char *const *fields, buf *body)
{
    if (!fields || !fields[0] || body->len == 0)
        return false;
    rewrite w = {body->data, body->len, 0, BUF_INIT, false};
    form_scan(fields, &w);
    if (!rw_finish(&w))
        return false;
    buf_free(body);
    *body = w.out;
    return true;
}

bool redact_query(char *const *fields, char **query)
{
    if (!fields || !fields[0] || !*query || !**query)
        return false;
    rewrite w = {*query, strlen(*query), 0, BUF_INIT, false};
    form_scan(fields, &w);
    if (!rw_finish(&w))
        return false;
    free(*query);
    *query = buf_detach(&w.out);
    return true;
}

/* ---- record ---- */

enum { BODY_OTHER, BODY_JSON, BODY_FORM };

static int body_kind(const record_headers *h, const buf *b)
{
    const char *ct = record_headers_get(h, "content-type");
    if (!ct) {
        size_t i = skip_ws(b->data, b->len, 0);
        if (i < b->len && (b->data[i] == '{' || b->data[i] == '['))
            return BODY_JSON;
        return BODY_OTHER;
    }
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, "; \t");
    if (util_ieq(ct, n, "application/json") || util_ieq(ct, n, "text/json") ||
        (n >= 5 && util_ieq(ct + n - 5, 5, "+json")))
        return BODY_JSON;
    if (util_ieq(ct, n, "application/x-www-form-urlencoded"))
        return BODY_FORM;
    return BODY_OTHER;
}

static void redact_body(char *const *fields, int kind, buf *b)
{
    if (kind == BODY_JSON)
        redact_json(fields, b);
    else if (kind == BODY_FORM)
        redact_form(fields, b);
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
    int req_kind = body_kind(&r->req_headers, &r->req_body);
    int resp_kind = body_kind(&r->resp_headers, &r->resp_body);
    redact_headers(c->redact_headers, &r->req_headers);
    redact_headers(c->redact_headers, &r->resp_headers);
    if (!c->redact_fields)
        return;
    redact_query(c->redact_fields, &r->query);
    redact_body(c->redact_fields, req_kind, &r->req_body);
    redact_body(c->redact_fields, resp_kind, &r->resp_body);
}
