/* compare: response comparison (see compare.h).
 *
 * Owns the comparison itself: status, headers, JSON bodies structurally,
 * text bodies word by word, binary and truncated bodies, and the results.
 * The noise rules it applies are noise.c's (noise.h); line and word
 * alignment and the unified diff are linediff.c's.
 *
 * The fast path is what replay lives on: identical status, compared headers
 * and body bytes are a match with no allocation and no parsing. Only a
 * mismatch pays for JSON parsing, path building and value formatting. */
#include "compare/compare.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "base/util.h"
#include "capture/redact.h"
#include "compare/linediff.h"
#include "compare/noise.h"

#define VALUE_MAX 80 /* bytes of a value shown in a diff before "…" */
#define JSON_FLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL)

static const char ellipsis[] = "\xe2\x80\xa6"; /* "…" */

/* Cuts b to at most max bytes and marks the cut with "…". */
static void cut_utf8(buf *b, size_t max)
{
    if (b->len <= max)
        return;
    b->len = utf8_cut_len(b->data, b->len, max);
    b->data[b->len] = '\0';
    buf_append_str(b, ellipsis);
}

/* ------------------------------------------------------------------------
 * Comparison
 * ---------------------------------------------------------------------- */

typedef struct cmpctx {
    const noise *n;
    compare_result *out;
    size_t max; /* diffs kept */
    size_t dcap;
    noise_step *path; /* current JSON path, for rules and diff paths */
    size_t depth, pcap;
} cmpctx;

static bool want_diff(cmpctx *c)
{
    c->out->ndiffs_total++;
    c->out->match = false;
    return c->out->ndiffs < c->max;
}

/* Adds a diff taking ownership of path, e and a. Call after want_diff. */
static void add_diff(cmpctx *c, diff_kind k, char *path, char *e, char *a)
{
    compare_result *o = c->out;
    assert(o->ndiffs < c->max); /* want_diff said there is room */
    if (o->ndiffs == c->dcap) {
        c->dcap = c->dcap ? c->dcap * 2 : 4;
        if (c->dcap > c->max)
            c->dcap = c->max;
        o->diffs = xrealloc(o->diffs, c->dcap * sizeof *o->diffs);
    }
    o->diffs[o->ndiffs++] = (diff){k, path, e, a};
}

/* Shortest "%g" that reads back to the same double; jansson's own 17 digits
 * would show 1.1 as 1.1000000000000001. */
static void append_real(buf *b, double d)
{
    char s[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, d);
        if (strtod(s, NULL) == d)
            break;
    }
    buf_append_str(b, s);
    if (!strpbrk(s, ".eEn")) /* keep it a real: 1.0, not 1 */
        buf_append_str(b, ".0");
}

/* Compact JSON of v; stops early once past limit (the caller cuts). */
static void dump_value(buf *b, const json_t *v, size_t limit)
{
    if (b->len > limit)
        return;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        size_t kl;
        json_t *m;
        bool first = true;
        buf_append_char(b, '{');
        json_object_keylen_foreach((json_t *)v, k, kl, m)
        {
            if (b->len > limit)
                return;
            if (!first)
                buf_append_char(b, ',');
            first = false;
            buf_append_json_str(b, k, kl);
            buf_append_char(b, ':');
            dump_value(b, m, limit);
        }
        buf_append_char(b, '}');
        break;
    }
    case JSON_ARRAY:
        buf_append_char(b, '[');
        for (size_t i = 0; i < json_array_size(v) && b->len <= limit; i++) {
            if (i)
                buf_append_char(b, ',');
            dump_value(b, json_array_get(v, i), limit);
        }
        buf_append_char(b, ']');
        break;
    case JSON_STRING:
        buf_append_json_str(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        buf_append_i64(b, (long long)json_integer_value(v));
        break;
    case JSON_REAL:
        append_real(b, json_real_value(v));
        break;
    case JSON_TRUE:
        buf_append_str(b, "true");
        break;
    case JSON_FALSE:
        buf_append_str(b, "false");
        break;
    case JSON_NULL:
        buf_append_str(b, "null");
        break;
    }
}

static char *value_text(const json_t *v)
{
    if (!v)
        return NULL;
    buf b = BUF_INIT;
    dump_value(&b, v, VALUE_MAX);
    cut_utf8(&b, VALUE_MAX);
    return buf_detach(&b);
}

static char *cut_text(const char *s, size_t n)
{
    buf b = BUF_INIT;
    buf_append(&b, s, n);
    cut_utf8(&b, VALUE_MAX);
    return buf_detach(&b);
}

/* The text a regex sees: a string's content, a number's JSON text. */
static const char *regex_subject(const json_t *v, char *tmp, size_t tmplen)
{
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(tmp, tmplen, "%lld", (long long)json_integer_value(v));
        return tmp;
    }
    if (json_is_real(v)) {
        buf b = BUF_INIT;
        append_real(&b, json_real_value(v));
        snprintf(tmp, tmplen, "%s", b.data);
        buf_free(&b);
        return tmp;
    }
    return NULL;
}

static bool json_regex_equal(const cmpctx *c, const json_t *e, const json_t *a)
{
    if (!noise_has_regex(c->n))
        return false;
    char te[48], ta[48];
    return noise_regex_equal(c->n, c->path, c->depth, regex_subject(e, te, sizeof te),
                             regex_subject(a, ta, sizeof ta), true);
}

static void json_diff(cmpctx *c, const json_t *e, const json_t *a)
{
    if (noise_json_ignored(c->n, c->path, c->depth))
        return;
    if (want_diff(c))
        add_diff(c, DIFF_JSON, noise_path_format(c->path, c->depth), value_text(e), value_text(a));
}

static void push(cmpctx *c, const char *key, size_t klen, size_t index)
{
    if (c->depth == c->pcap) {
        c->pcap = c->pcap ? c->pcap * 2 : 16;
        c->path = xrealloc(c->path, c->pcap * sizeof *c->path);
    }
    c->path[c->depth++] = (noise_step){key, klen, index};
}

static bool numbers_equal(const json_t *e, const json_t *a)
{
    /* Two integers compare exactly: ids beyond 2^53 must not collapse. */
    if (json_is_integer(e) && json_is_integer(a))
        return json_integer_value(e) == json_integer_value(a);
    return json_number_value(e) == json_number_value(a);
}

static bool is_marker(const char *s, size_t n)
{
    return n == sizeof REDACTED - 1 && memcmp(s, REDACTED, n) == 0;
}

/* A recorded value that is the redaction marker was hidden by restspy at
 * capture: it says nothing about the answer, so any present value is equal
 * to it, and counted as not compared (unless it is the marker as well). */
static bool redacted_equal(cmpctx *c, const char *e, size_t el, const char *a, size_t al)
{
    if (!is_marker(e, el))
        return false;
    if (!is_marker(a, al))
        c->out->nredacted++;
    return true;
}

/* The same for JSON, where the answer's value may be of any type. */
static bool json_redacted(cmpctx *c, const json_t *e, const json_t *a)
{
    if (!json_is_string(e) || !is_marker(json_string_value(e), json_string_length(e)))
        return false;
    if (!json_is_string(a) || !is_marker(json_string_value(a), json_string_length(a)))
        c->out->nredacted++;
    return true;
}

static void json_cmp(cmpctx *c, const json_t *e, const json_t *a)
{
    if (!e || !a) {
        json_diff(c, e, a);
        return;
    }
    if (json_redacted(c, e, a))
        return;
    if (json_is_number(e) && json_is_number(a)) {
        if (!numbers_equal(e, a) && !json_regex_equal(c, e, a))
            json_diff(c, e, a);
        return;
    }
    if (json_typeof(e) != json_typeof(a)) {
        json_diff(c, e, a);
        return;
    }
    switch (json_typeof(e)) {
    case JSON_OBJECT: {
        const char *k;
        size_t kl;
        json_t *m;
        json_object_keylen_foreach((json_t *)e, k, kl, m)
        {
            push(c, k, kl, 0);
            json_cmp(c, m, json_object_getn(a, k, kl));
            c->depth--;
        }
        json_object_keylen_foreach((json_t *)a, k, kl, m)
        {
            if (json_object_getn(e, k, kl))
                continue;
            push(c, k, kl, 0);
            json_diff(c, NULL, m);
            c->depth--;
        }
        break;
    }
    case JSON_ARRAY: {
        size_t ne = json_array_size(e), na = json_array_size(a);
        for (size_t i = 0; i < ne || i < na; i++) {
            push(c, NULL, 0, i);
            json_cmp(c, i < ne ? json_array_get(e, i) : NULL, i < na ? json_array_get(a, i) : NULL);
            c->depth--;
        }
        break;
    }
    case JSON_STRING:
        if (json_string_length(e) != json_string_length(a) ||
            memcmp(json_string_value(e), json_string_value(a), json_string_length(e)) != 0) {
            if (!json_regex_equal(c, e, a))
                json_diff(c, e, a);
        }
        break;
    default: /* true, false, null: equal types are equal values */
        break;
    }
}

/* ---- headers ---- */

/* All values of name joined with ", " (repeats are one list in HTTP), or
 * NULL when absent. Owned by the caller. */
static char *header_join(const http_headers *h, const char *name)
{
    buf b = BUF_INIT;
    bool found = false;
    for (size_t i = 0; i < h->len; i++) {
        if (strcasecmp(h->v[i].name, name) != 0)
            continue;
        if (found)
            buf_append_str(&b, ", ");
        buf_append_str(&b, h->v[i].value);
        found = true;
    }
    if (!found)
        return NULL;
    return buf_detach(&b);
}

/* Equal without allocating in the common case: the same values in the same
 * order (a single header each, usually). */
static bool headers_same(const http_headers *e, const http_headers *a, const char *name)
{
    size_t i = 0, j = 0;
    for (;;) {
        while (i < e->len && strcasecmp(e->v[i].name, name) != 0)
            i++;
        while (j < a->len && strcasecmp(a->v[j].name, name) != 0)
            j++;
        if (i == e->len || j == a->len)
            return i == e->len && j == a->len;
        if (strcmp(e->v[i].value, a->v[j].value) != 0)
            return false;
        i++;
        j++;
    }
}

static void compare_header(cmpctx *c, const record *e, const record *a, const char *name)
{
    if (noise_header_ignored(c->n, name) || headers_same(&e->resp_headers, &a->resp_headers, name))
        return;
    char *ev = header_join(&e->resp_headers, name);
    char *av = header_join(&a->resp_headers, name);
    bool same = (ev && av && strcmp(ev, av) == 0) ||
                (ev && av && redacted_equal(c, ev, strlen(ev), av, strlen(av))) ||
                noise_regex_equal(c->n, c->path, c->depth, ev, av, false);
    if (!same && want_diff(c)) {
        buf p = BUF_INIT;
        buf_appendf(&p, "header: %s", name);
        add_diff(c, DIFF_HEADER, buf_detach(&p), ev ? cut_text(ev, strlen(ev)) : NULL,
                 av ? cut_text(av, strlen(av)) : NULL);
    }
    free(ev);
    free(av);
}

static size_t first_difference(const char *e, size_t el, const char *a, size_t al)
{
    size_t n = el < al ? el : al, i = 0;
    while (i < n && e[i] == a[i])
        i++;
    return i;
}

static char *bytes_text(size_t n, const char *suffix)
{
    buf b = BUF_INIT;
    buf_appendf(&b, "%zu bytes%s", n, suffix);
    return buf_detach(&b);
}

/* Binary bodies (not UTF-8): compared byte for byte, no rule applies. */
static void body_diff(cmpctx *c, const char *e, size_t el, const char *a, size_t al)
{
    if (!want_diff(c))
        return;
    add_diff(c, DIFF_BODY, xstrdup("body"), bytes_text(el, ""), bytes_text(al, ""));
    buf b = BUF_INIT;
    buf_appendf(&b, "binary bodies differ: %zu vs %zu bytes, first difference at byte %zu", el, al,
                first_difference(e, el, a, al));
    c->out->text_diff = buf_detach(&b);
}

/* ---- text bodies, token by token ----
 * HTML, plain text, forms: noise there is a token (a CSRF token in a value
 * attribute, a timestamp in a footer), so text is split into tokens and the
 * two token lists are aligned (common ends trimmed, then the edit script of
 * the middle, as for lines). A word that differs is a difference unless a
 * text: or regex: rule matches both words, or the recorded one is the
 * redaction marker; anything the alignment cannot pair (words added or
 * removed, different punctuation or spacing) is a difference of the body.
 * The tokens reuse linediff's line type: nl marks a run of delimiters. */

static bool is_delim(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\f' || ch == '\v' ||
           (ch && strchr("\"'`<>=&;,(){}", ch));
}

/* Maximal runs of delimiters and of other bytes, alternating. Words keep
 * ':', '-', '.', '/', '[', ']': a timestamp, a URL path, the redaction
 * marker stay one word. */
static linediff_line *split_tokens(const char *s, size_t n, size_t *count)
{
    size_t cap = 16, k = 0, i = 0;
    linediff_line *v = xmalloc(cap * sizeof *v);
    while (i < n) {
        bool d = is_delim((unsigned char)s[i]);
        size_t j = i + 1;
        while (j < n && is_delim((unsigned char)s[j]) == d)
            j++;
        if (k == cap) {
            cap *= 2;
            v = xrealloc(v, cap * sizeof *v);
        }
        v[k++] = (linediff_line){s + i, j - i, d};
        i = j;
    }
    *count = k;
    return v;
}

static bool all_in(const char *s, size_t n, const char *set)
{
    for (size_t i = 0; i < n; i++)
        if (!s[i] || !strchr(set, s[i]))
            return false;
    return true;
}

/* The class of an alphanumeric run for a learned rule: the narrowest that
 * holds both runs. */
static const char *run_class(const char *x, size_t xl, const char *y, size_t yl)
{
    static const struct {
        const char *set, *re;
    } classes[] = {
        {"0123456789", "[0-9]"},
        {"0123456789abcdef", "[0-9a-f]"},
        {"0123456789ABCDEF", "[0-9A-F]"},
        {"abcdefghijklmnopqrstuvwxyz", "[a-z]"},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "[A-Z]"},
        {"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "[A-Za-z]"},
    };
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
        if (all_in(x, xl, classes[i].set) && all_in(y, yl, classes[i].set))
            return classes[i].re;
    return "[A-Za-z0-9]";
}

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static bool is_letter(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

/* Length of the run at s: letters and digits together, or (fine) only
 * digits or only letters. */
static size_t word_run(const char *s, size_t n, bool fine)
{
    size_t i = 0;
    if (fine) {
        bool d = n && is_digit(s[0]);
        while (i < n && (d ? is_digit(s[i]) : is_letter(s[i])))
            i++;
        return i;
    }
    while (i < n && (is_digit(s[i]) || is_letter(s[i])))
        i++;
    return i;
}

/* shape_rule's work at one grain (see there). */
static bool shape_at(const linediff_line *x, const linediff_line *y, bool fine, buf *out)
{
    buf_append_str(out, "text: ^");
    size_t i = 0, j = 0;
    bool literal = false; /* a byte kept as it is: the fine grain found a shape */
    while (i < x->len || j < y->len) {
        size_t rx = word_run(x->p + i, x->len - i, fine);
        size_t ry = word_run(y->p + j, y->len - j, fine);
        if (rx && ry && fine && rx == ry && memcmp(x->p + i, y->p + j, rx) == 0 &&
            is_letter(x->p[i])) {
            buf_append(out, x->p + i, rx); /* the same letters: the T of a time */
            /* Letters that are hex digits too are a shape only beside
             * others: two random hex tokens share a "b" at the same place
             * now and then (about one replay in twenty of test_replay_bodies
             * learned such a token's accidental runs). */
            literal = literal || !all_in(x->p + i, rx, "abcdefABCDEF");
        } else if (rx && ry && (!fine || is_digit(x->p[i]) == is_digit(y->p[j]))) {
            buf_append_str(out, run_class(x->p + i, rx, y->p + j, ry));
            if (rx != ry)
                buf_append_char(out, '+');
            else if (rx > 1)
                buf_appendf(out, "{%zu}", rx);
        } else if (!rx && !ry && i < x->len && j < y->len && x->p[i] == y->p[j]) {
            if (strchr(".[]()*+?{}|^$\\", x->p[i]))
                buf_append_char(out, '\\');
            buf_append_char(out, x->p[i]);
            literal = true;
            rx = ry = 1;
        } else {
            return false;
        }
        i += rx;
        j += ry;
    }
    /* At the fine grain, two words of letters and digits only whose runs
     * happen to alternate alike (random hex tokens do, now and then) have
     * no shape worth a rule of their own: the coarse grain's one class
     * ([0-9a-f]{32}) is the rule. */
    if (fine && !literal)
        return false;
    buf_append_char(out, '$');
    return true;
}

/* A text: rule for two words that differed between two answers to the same
 * request: their common shape, anchored. First at the finer grain, where
 * digits and letters are runs of their own and the same letters stay
 * literal ("2026-01-02T03:04:05Z" and "...:07Z" give
 * ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$), else with
 * letters and digits as one run (two CSRF tokens give ^[0-9a-f]{32}$).
 * Runs become a class with their length ({n}, or + when it varies); other
 * bytes stay literal and must be the same in both words. False when they
 * are not: no rule is better than one that hides everything. */
static bool shape_rule(const linediff_line *x, const linediff_line *y, buf *out)
{
    if (shape_at(x, y, true, out))
        return true;
    buf_reset(out);
    return shape_at(x, y, false, out);
}

static void add_learnable(compare_result *r, const linediff_line *e, const linediff_line *a)
{
    buf b = BUF_INIT;
    if (!shape_rule(e, a, &b)) {
        buf_free(&b);
        return;
    }
    r->rules = xrealloc(r->rules, (r->nrules + 1) * sizeof *r->rules);
    r->rules[r->nrules++] = buf_detach(&b);
}

static char *quoted_token(const linediff_line *t)
{
    buf b = BUF_INIT;
    buf_append_json_str(&b, t->p, t->len);
    cut_utf8(&b, VALUE_MAX);
    return buf_detach(&b);
}

/* Walks the expected text once, so that line numbers cost O(size). */
typedef struct line_cursor {
    const char *pos;
    size_t line;
} line_cursor;

static size_t line_of(line_cursor *lc, const char *p)
{
    for (; lc->pos < p; lc->pos++)
        lc->line += *lc->pos == '\n';
    return lc->line;
}

/* One aligned pair of tokens. False when it is a difference of structure. */
static bool token_pair(cmpctx *c, line_cursor *lc, const linediff_line *e, const linediff_line *a,
                       bool *differs)
{
    if (linediff_eq(e, a))
        return true;
    if (e->nl || a->nl)
        return false; /* punctuation or spacing */
    if (redacted_equal(c, e->p, e->len, a->p, a->len) ||
        noise_text_equal(c->n, e->p, e->len, a->p, a->len))
        return true;
    *differs = true;
    if (want_diff(c)) {
        add_learnable(c->out, e, a); /* only as many as the diffs kept */
        buf p = BUF_INIT;
        buf_appendf(&p, "text line %zu", line_of(lc, e->p));
        add_diff(c, DIFF_TEXT, buf_detach(&p), quoted_token(e), quoted_token(a));
    }
    return true;
}

/* Pairs the middle's replaced runs of equal length; false when a run
 * adds or removes tokens. */
static bool pair_runs(cmpctx *c, line_cursor *lc, const linediff_line *e, const linediff_line *a,
                      const linediff_ops *o, bool *differs)
{
    bool ok = true;
    size_t k = 0;
    while (k < o->len) {
        if (o->v[k].kind == ' ') {
            k++;
            continue;
        }
        size_t start = k, nd = 0, ni = 0;
        while (k < o->len && o->v[k].kind != ' ') {
            nd += o->v[k].kind == '-';
            ni += o->v[k].kind == '+';
            k++;
        }
        if (nd != ni) {
            ok = false;
            continue;
        }
        /* The m-th removal of the run against its m-th addition (they may
         * come interleaved). */
        size_t di = start, ai = start;
        for (size_t m = 0; m < nd; m++, di++, ai++) {
            while (o->v[di].kind != '-')
                di++;
            while (o->v[ai].kind != '+')
                ai++;
            ok &= token_pair(c, lc, &e[o->v[di].ei], &a[o->v[ai].ai], differs);
        }
    }
    return ok;
}

static void text_compare(cmpctx *c, const char *es, size_t el, const char *as, size_t al)
{
    size_t ne, na, pre, suf;
    linediff_line *e = split_tokens(es, el, &ne), *a = split_tokens(as, al, &na);
    linediff_common_ends(e, ne, a, na, &pre, &suf);
    size_t me = ne - pre - suf, ma = na - pre - suf;
    line_cursor lc = {es, 1};
    bool ok = true, differs = false;
    if (me == ma) {
        /* The same number of tokens: noise changes words, not structure. */
        for (size_t i = 0; i < me; i++)
            ok &= token_pair(c, &lc, &e[pre + i], &a[pre + i], &differs);
    } else if (me && ma) {
        /* Words are paired only along a minimal script: a cut one could
         * pair words that do not belong together. */
        linediff_ops o = {NULL, 0, 0};
        ok = linediff_script(e + pre, me, a + pre, ma, pre, pre, &o) &&
             pair_runs(c, &lc, e, a, &o, &differs);
        free(o.v);
    } else {
        ok = false;
    }
    if (!ok && want_diff(c))
        add_diff(c, DIFF_BODY, xstrdup("body"), bytes_text(el, ""), bytes_text(al, ""));
    if ((!ok || differs) && !c->out->text_diff)
        c->out->text_diff = linediff_unified(es, el, as, al);
    free(e);
    free(a);
}

/* A capped capture holds only the first bytes: the complete side must be at
 * least as long and start with them. Structure cannot be compared. */
static void truncated_diff(cmpctx *c, const record *er, const record *ar, const char *e, size_t el,
                           const char *a, size_t al)
{
    bool et = er->resp_truncated, at = ar->resp_truncated;
    size_t n = el < al ? el : al;
    bool ok = memcmp(e, a, n) == 0 && (at || al >= el) && (et || el >= al);
    if (ok) {
        /* Equal as far as both go: a match of that part only. */
        buf b = BUF_INIT;
        if (et)
            buf_appendf(&b,
                        "recorded body incomplete (%zu of %llu bytes recorded): only those "
                        "compared",
                        el, (unsigned long long)er->resp_body_size);
        else
            buf_appendf(&b, "answer decoded up to %zu bytes (--max-decoded): only those compared",
                        al);
        c->out->partial = buf_detach(&b);
        return;
    }
    if (!want_diff(c))
        return;
    add_diff(c, DIFF_BODY, xstrdup("body"), bytes_text(el, et ? " (truncated)" : ""),
             bytes_text(al, at ? " (truncated)" : ""));
    buf b = BUF_INIT;
    size_t d = first_difference(e, el, a, al);
    if (d < n)
        buf_appendf(&b, "%s body was truncated at %zu bytes; bodies differ at byte %zu",
                    et ? "recorded" : "replayed", et ? el : al, d);
    else
        buf_appendf(&b, "%s body (%zu bytes) is shorter than the truncated %s one (%zu bytes)",
                    et ? "replayed" : "recorded", et ? al : el, et ? "recorded" : "replayed",
                    et ? el : al);
    c->out->text_diff = buf_detach(&b);
}

static bool looks_json(const record *r)
{
    const char *ct = http_headers_get(&r->resp_headers, "Content-Type");
    if (ct)
        return strcasestr(ct, "json") != NULL;
    const char *s = r->resp_body.data;
    size_t i = 0, n = r->resp_body.len;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
        i++;
    return i < n && (s[i] == '{' || s[i] == '[');
}

static void compare_body(cmpctx *c, const record *er, const record *ar)
{
    const char *e = er->resp_body.data ? er->resp_body.data : "";
    const char *a = ar->resp_body.data ? ar->resp_body.data : "";
    size_t el = er->resp_body.len, al = ar->resp_body.len;
    if (er->resp_body_note) {
        /* Not stored, or stored still encoded: nothing to hold the answer's
         * body against. */
        buf b = BUF_INIT;
        buf_appendf(&b, "recorded body not compared (%s)", er->resp_body_note);
        c->out->partial = buf_detach(&b);
        return;
    }
    if (er->resp_truncated || ar->resp_truncated) {
        truncated_diff(c, er, ar, e, el, a, al);
        return;
    }
    if (el == al && memcmp(e, a, el) == 0)
        return;
    if (looks_json(er) && looks_json(ar)) {
        json_t *je = json_loadb(e, el, JSON_FLAGS, NULL);
        json_t *ja = je ? json_loadb(a, al, JSON_FLAGS, NULL) : NULL;
        if (je && ja) {
            json_cmp(c, je, ja);
            json_decref(je);
            json_decref(ja);
            return;
        }
        json_decref(je);
        json_decref(ja);
    }
    if (utf8_valid(e, el) && utf8_valid(a, al))
        text_compare(c, e, el, a, al);
    else
        body_diff(c, e, el, a, al);
}

void compare_responses(const compare_opts *o, const record *expected, const record *actual,
                       compare_result *out)
{
    memset(out, 0, sizeof *out);
    out->match = true;
    cmpctx c = {o ? o->noise : NULL, out, o && o->max_diffs ? o->max_diffs : 20, 0, NULL, 0, 0};

    if (expected->status != actual->status && want_diff(&c)) {
        buf e = BUF_INIT, a = BUF_INIT;
        buf_append_i64(&e, expected->status);
        buf_append_i64(&a, actual->status);
        add_diff(&c, DIFF_STATUS, xstrdup("status"), buf_detach(&e), buf_detach(&a));
    }
    for (char *const *h = o ? o->headers : NULL; h && *h; h++)
        compare_header(&c, expected, actual, *h);
    compare_body(&c, expected, actual);
    free(c.path);
}

void compare_result_free(compare_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nrules; i++)
        free(r->rules[i]);
    free(r->rules);
    for (size_t i = 0; i < r->ndiffs; i++) {
        free(r->diffs[i].path);
        free(r->diffs[i].expected);
        free(r->diffs[i].actual);
    }
    free(r->diffs);
    free(r->text_diff);
    free(r->partial);
    memset(r, 0, sizeof *r);
}

void diff_format(const diff *d, buf *out)
{
    buf_append_str(out, d->path);
    buf_append_str(out, ": ");
    buf_append_str(out, d->expected ? d->expected : "(absent)");
    buf_append_str(out, " -> ");
    buf_append_str(out, d->actual ? d->actual : "(absent)");
}

size_t noise_learn(noise *n, const compare_result *r)
{
    size_t added = 0;
    for (size_t i = 0; i < r->ndiffs; i++) {
        const diff *d = &r->diffs[i];
        buf text = BUF_INIT;
        if (d->kind == DIFF_HEADER) {
            buf_append_str(&text, d->path);
        } else if (d->kind == DIFF_JSON) {
            /* Every index becomes [*]: a timestamp that differed in one list
             * item will differ in the others next time. */
            if (!noise_path_any_index(d->path, &text))
                continue; /* not a path this module wrote */
        } else {
            continue; /* status and bodies: no rule; text words: r->rules */
        }
        if (!noise_has(n, text.data) && noise_add(n, text.data, NULL, 0) == 0)
            added++;
        buf_free(&text);
    }
    for (size_t i = 0; i < r->nrules; i++)
        if (!noise_has(n, r->rules[i]) && noise_add(n, r->rules[i], NULL, 0) == 0)
            added++;
    return added;
}
