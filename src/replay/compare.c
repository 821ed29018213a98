/* compare: response comparison and noise rules (see compare.h).
 *
 * The fast path is what replay lives on: identical status, compared headers
 * and body bytes are a match with no allocation and no parsing. Only a
 * mismatch pays for JSON parsing, path building and value formatting. */
#include "replay/compare.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "capture/redact.h"
#include "base/util.h"

#define VALUE_MAX 80      /* bytes of a value shown in a diff before "…" */
#define TEXT_LINE_MAX 160 /* bytes of a line shown in a unified diff */
#define TEXT_DIFF_LINES 40
#define TEXT_CONTEXT 2
/* Line or word comparisons one edit script may make (diff_middle): a bound
 * on the time a pathological pair of bodies costs. */
#define DIFF_MAX_WORK (1u << 24)
#define JSON_FLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL)

static const char ellipsis[] = "\xe2\x80\xa6"; /* "…" */

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Length of s[0..n) cut to at most max bytes on a UTF-8 character
 * boundary, so a shortened value never ends in half a character. */
static size_t utf8_cut_len(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    return max;
}

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
 * JSON paths
 * ---------------------------------------------------------------------- */

typedef enum {
    SEG_KEY,   /* .name or ["name"] */
    SEG_DESC,  /* ..name: that member at any depth below */
    SEG_INDEX, /* [3] */
    SEG_ANY,   /* [*] or .*: any element or member */
} seg_kind;

typedef struct seg {
    seg_kind kind;
    char *key; /* SEG_KEY, SEG_DESC: owned, may hold NULs (klen) */
    size_t klen;
    size_t index; /* SEG_INDEX */
} seg;

/* One step of the path being compared; keys point into the parsed JSON. */
typedef struct comp {
    const char *key; /* NULL for an array index */
    size_t klen;
    size_t index;
} comp;

static bool is_ident(const char *k, size_t n)
{
    if (n == 0 || !((k[0] >= 'A' && k[0] <= 'Z') || (k[0] >= 'a' && k[0] <= 'z') || k[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++) {
        char c = k[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

/* ".name" for identifiers, ["weird key"] otherwise (prefix "." or ".."). */
static void append_key(buf *b, const char *dots, const char *k, size_t n)
{
    if (is_ident(k, n)) {
        buf_append_str(b, dots);
        buf_append(b, k, n);
    } else {
        if (dots[1] == '.')
            buf_append_str(b, ".."); /* $..["x y"]: the dots say "any depth" */
        buf_append_char(b, '[');
        buf_append_json_str(b, k, n);
        buf_append_char(b, ']');
    }
}

static void segs_format(const seg *s, size_t n, buf *b)
{
    buf_append_char(b, '$');
    for (size_t i = 0; i < n; i++) {
        switch (s[i].kind) {
        case SEG_KEY:
            append_key(b, ".", s[i].key, s[i].klen);
            break;
        case SEG_DESC:
            append_key(b, "..", s[i].key, s[i].klen);
            break;
        case SEG_INDEX:
            buf_appendf(b, "[%zu]", s[i].index);
            break;
        case SEG_ANY:
            buf_append_str(b, "[*]");
            break;
        }
    }
}

static void segs_free(seg *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s[i].key);
    free(s);
}

static char *comps_format(const comp *c, size_t n)
{
    buf b = BUF_INIT;
    buf_append_char(&b, '$');
    for (size_t i = 0; i < n; i++) {
        if (c[i].key)
            append_key(&b, ".", c[i].key, c[i].klen);
        else
            buf_appendf(&b, "[%zu]", c[i].index);
    }
    return buf_detach(&b);
}

/* Bytes allowed in a dotted member name: everything that cannot start the
 * next step, the regex separator or a comment. */
static bool name_byte(char c)
{
    return c && c != '.' && c != '[' && c != ']' && c != ' ' && c != '\t' && c != '~' && c != '#' &&
           c != '\r' && c != '\n';
}

/* Parses a JSON string literal at *p (just after '[') up to its closing
 * quote; the key is decoded by jansson so every JSON escape works. */
static int parse_quoted(const char **p, char **key, size_t *klen, const char **why)
{
    const char *s = *p, *q = s + 1;
    while (*q && *q != '"') {
        if (*q == '\\' && q[1])
            q++;
        q++;
    }
    if (*q != '"') {
        *why = "unterminated string";
        return -1;
    }
    json_t *j = json_loadb(s, (size_t)(q - s + 1), JSON_FLAGS, NULL);
    if (!j || !json_is_string(j)) {
        json_decref(j);
        *why = "bad string";
        return -1;
    }
    *klen = json_string_length(j);
    *key = xmalloc(*klen + 1);
    memcpy(*key, json_string_value(j), *klen + 1);
    json_decref(j);
    *p = q + 1;
    return 0;
}

/* Parses a path starting at *p ('$'). On success *p points after it. */
static int parse_path(const char **p, seg **out, size_t *nout, const char **why)
{
    const char *s = *p;
    seg *v = NULL;
    size_t n = 0, cap = 0;
    if (*s != '$') {
        *why = "a path starts with '$'";
        return -1;
    }
    s++;
    for (;;) {
        seg g = {SEG_KEY, NULL, 0, 0};
        if (*s == '.') {
            s++;
            bool desc = *s == '.';
            if (desc) {
                s++;
                g.kind = SEG_DESC;
            }
            if (desc && *s == '[' && s[1] == '"') {
                s++;
                if (parse_quoted(&s, &g.key, &g.klen, why) < 0)
                    goto fail;
                if (*s != ']') {
                    free(g.key);
                    *why = "expected ']'";
                    goto fail;
                }
                s++;
            } else {
                const char *b = s;
                while (name_byte(*s))
                    s++;
                if (s == b) {
                    *why = "expected a member name after '.'";
                    goto fail;
                }
                if (s - b == 1 && *b == '*') {
                    if (desc) {
                        *why = "'..*' is not supported";
                        goto fail;
                    }
                    g.kind = SEG_ANY;
                } else {
                    g.key = xstrndup(b, (size_t)(s - b));
                    g.klen = (size_t)(s - b);
                }
            }
        } else if (*s == '[') {
            s++;
            if (*s == '*') {
                g.kind = SEG_ANY;
                s++;
            } else if (*s == '"') {
                if (parse_quoted(&s, &g.key, &g.klen, why) < 0)
                    goto fail;
            } else if (*s >= '0' && *s <= '9') {
                g.kind = SEG_INDEX;
                while (*s >= '0' && *s <= '9') {
                    if (g.index > (SIZE_MAX - 9) / 10) {
                        *why = "index too big";
                        goto fail;
                    }
                    g.index = g.index * 10 + (size_t)(*s++ - '0');
                }
            } else {
                *why = "expected '*', an index or a quoted name after '['";
                goto fail;
            }
            if (*s != ']') {
                free(g.key);
                *why = "expected ']'";
                goto fail;
            }
            s++;
        } else {
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            v = xrealloc(v, cap * sizeof *v);
        }
        v[n++] = g;
    }
    *p = s;
    *out = v;
    *nout = n;
    return 0;
fail:
    segs_free(v, n);
    return -1;
}

/* Does the rule path match the compared path? With prefix, a match of the
 * first steps is enough: an ignored member hides its whole subtree. */
static bool path_match(const seg *s, size_t ns, const comp *c, size_t nc, bool prefix)
{
    for (; ns > 0; s++, ns--, c++, nc--) {
        switch (s->kind) {
        case SEG_DESC:
            for (size_t i = 0; i < nc; i++)
                if (c[i].key && c[i].klen == s->klen && memcmp(c[i].key, s->key, s->klen) == 0 &&
                    path_match(s + 1, ns - 1, c + i + 1, nc - i - 1, prefix))
                    return true;
            return false;
        case SEG_KEY:
            if (nc == 0 || !c->key || c->klen != s->klen || memcmp(c->key, s->key, s->klen) != 0)
                return false;
            break;
        case SEG_INDEX:
            if (nc == 0 || c->key || c->index != s->index)
                return false;
            break;
        case SEG_ANY:
            if (nc == 0)
                return false;
            break;
        }
    }
    return prefix || nc == 0;
}

/* ------------------------------------------------------------------------
 * Noise rules
 * ---------------------------------------------------------------------- */

/* RULE_TEXT: a regex for the tokens of text (non-JSON) bodies only. */
typedef enum { RULE_PATH, RULE_HEADER, RULE_REGEX, RULE_PATH_REGEX, RULE_TEXT } rule_kind;

typedef struct nrule {
    rule_kind kind;
    char *text; /* canonical text: what noise_save writes, noise_has compares */
    seg *segs;  /* RULE_PATH, RULE_PATH_REGEX */
    size_t nsegs;
    const char *header; /* RULE_HEADER: points into text */
    pcre2_code *re;     /* RULE_REGEX, RULE_PATH_REGEX, RULE_TEXT: compiled once,
                           when the rule is added (NULL before); owned */
} nrule;

struct noise {
    nrule *v;
    size_t len, cap;
    size_t npaths, nheaders, nregex, ntext; /* lets compare skip whole kinds */
};

noise *noise_new(void)
{
    return xcalloc(1, sizeof(noise));
}

static void rule_free(nrule *r)
{
    free(r->text);
    segs_free(r->segs, r->nsegs);
    pcre2_code_free(r->re);
}

void noise_free(noise *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->len; i++)
        rule_free(&n->v[i]);
    free(n->v);
    free(n);
}

size_t noise_count(const noise *n)
{
    return n ? n->len : 0;
}

/* Regexes are PCRE2 (Perl syntax: \d, \s, \w, lookaround, lazy
 * quantifiers), what users write, compiled once in UTF mode so that '.' is
 * one character of a UTF-8 value. MATCH_INVALID_UTF lets a header value that
 * is not UTF-8 be searched rather than refused. Without UCP, \d, \s and \w
 * stay ASCII ([0-9] for ids and timestamps), as before. */
static int compile_regex(nrule *r, const char *pat, const char **why, char *msg, size_t msglen)
{
    int code;
    PCRE2_SIZE off;
    r->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &code, &off, NULL);
    if (!r->re) {
        PCRE2_UCHAR text[120];
        pcre2_get_error_message(code, text, sizeof text); /* cut when longer */
        snprintf(msg, msglen, "%s at offset %zu", (const char *)text, (size_t)off);
        *why = msg;
        return -1;
    }
    return 0;
}

/* Does r's regex match somewhere in s[0..n)? A match that fails with an
 * error (PCRE2's backtracking limit reached) counts as no match: the two
 * values then stay a difference, never hidden by accident. */
static bool rule_matches(const nrule *r, const char *s, size_t n)
{
    assert(r->re); /* noise_add compiles every regex rule it keeps */
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    int rc = pcre2_match(r->re, (PCRE2_SPTR)s, n, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

static const char *skip_ws(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* Length of s without trailing blanks (and CR/LF, for lines of a file). */
static size_t trimmed_len(const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        n--;
    return n;
}

static bool prefix_ieq(const char *s, const char *lit)
{
    return strncasecmp(s, lit, strlen(lit)) == 0;
}

/* Parses rule text into r (canonical text included). The regex is compiled
 * only when compile is set: noise_has needs the text alone. */
static int rule_parse(const char *text, nrule *r, bool compile, const char **why, char *msg,
                      size_t msglen)
{
    memset(r, 0, sizeof *r);
    char *line = xstrdup(skip_ws(text));
    line[trimmed_len(line)] = '\0';
    const char *s = line;
    buf canon = BUF_INIT;
    int rc = -1;
    if (*s == '\0') {
        *why = "empty rule";
        goto out;
    }
    if (strpbrk(s, "\r\n")) {
        *why = "a rule is one line"; /* noise_save could not write it back */
        goto out;
    }
    if (prefix_ieq(s, "header:")) {
        s = skip_ws(s + 7);
        const char *b = s;
        while (*s && *s != ' ' && *s != '\t' && *s != ':' && *s != '#')
            s++;
        if (s == b) {
            *why = "expected a header name after 'header:'";
            goto out;
        }
        size_t nlen = (size_t)(s - b);
        s = skip_ws(s);
        if (*s && !(*s == '#' && s > b + nlen)) {
            *why = "a header name has no spaces or ':'";
            goto out;
        }
        r->kind = RULE_HEADER;
        buf_append_str(&canon, "header: ");
        buf_append(&canon, b, nlen);
        r->text = buf_detach(&canon);
        r->header = r->text + 8;
        rc = 0;
        goto out;
    }
    if (prefix_ieq(s, "regex:") || prefix_ieq(s, "text:")) {
        bool words = (*s | 0x20) == 't';
        s = skip_ws(s + (words ? 5 : 6));
        if (!*s) {
            *why = words ? "expected a regex after 'text:'" : "expected a regex after 'regex:'";
            goto out;
        }
        if (compile && compile_regex(r, s, why, msg, msglen) < 0)
            goto out;
        r->kind = words ? RULE_TEXT : RULE_REGEX;
        buf_append_str(&canon, words ? "text: " : "regex: ");
        buf_append_str(&canon, s);
        r->text = buf_detach(&canon);
        rc = 0;
        goto out;
    }
    if (*s != '$') {
        *why = "expected a JSON path ('$...'), 'header: NAME', 'regex: REGEX' or 'text: REGEX'";
        goto out;
    }
    if (parse_path(&s, &r->segs, &r->nsegs, why) < 0)
        goto out;
    const char *end = s;
    s = skip_ws(s);
    segs_format(r->segs, r->nsegs, &canon);
    if (*s == '~') {
        s = skip_ws(s + 1);
        if (!*s) {
            *why = "expected a regex after '~'";
            goto out;
        }
        if (compile && compile_regex(r, s, why, msg, msglen) < 0)
            goto out;
        r->kind = RULE_PATH_REGEX;
        buf_append_str(&canon, " ~ ");
        buf_append_str(&canon, s);
    } else if (*s == '\0' || (*s == '#' && s > end)) {
        r->kind = RULE_PATH;
    } else {
        *why = "unexpected text after the path";
        goto out;
    }
    r->text = buf_detach(&canon);
    rc = 0;
out:
    if (rc < 0) {
        buf_free(&canon);
        rule_free(r);
        memset(r, 0, sizeof *r);
    }
    free(line);
    return rc;
}

static bool rule_same(const nrule *a, const nrule *b)
{
    if (a->kind != b->kind)
        return false;
    if (a->kind == RULE_HEADER)
        return strcasecmp(a->header, b->header) == 0;
    return strcmp(a->text, b->text) == 0;
}

static bool noise_has_rule(const noise *n, const nrule *r)
{
    for (size_t i = 0; i < n->len; i++)
        if (rule_same(&n->v[i], r))
            return true;
    return false;
}

/* Takes r (moved in) unless n already has it, then frees it. */
static void noise_take(noise *n, nrule *r)
{
    if (noise_has_rule(n, r)) {
        rule_free(r);
        return;
    }
    if (n->len == n->cap) {
        n->cap = n->cap ? n->cap * 2 : 8;
        n->v = xrealloc(n->v, n->cap * sizeof *n->v);
    }
    n->v[n->len++] = *r;
    if (r->kind == RULE_PATH)
        n->npaths++;
    else if (r->kind == RULE_HEADER)
        n->nheaders++;
    else if (r->kind == RULE_TEXT)
        n->ntext++;
    else
        n->nregex++;
}

int noise_add(noise *n, const char *rule_text, char *err, size_t errlen)
{
    nrule r;
    const char *why = "";
    char msg[160];
    if (rule_parse(rule_text, &r, true, &why, msg, sizeof msg) < 0) {
        size_t len = trimmed_len(rule_text);
        seterr(err, errlen, "bad noise rule '%.*s': %s", (int)(len > 100 ? 100 : len), rule_text,
               why);
        return -1;
    }
    noise_take(n, &r);
    return 0;
}

bool noise_has(const noise *n, const char *rule_text)
{
    nrule r;
    const char *why;
    char msg[8];
    if (!n || rule_parse(rule_text, &r, false, &why, msg, sizeof msg) < 0)
        return false;
    bool has = noise_has_rule(n, &r);
    rule_free(&r);
    return has;
}

int noise_load(noise *n, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        seterr(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    /* All or nothing: a file with a bad line adds no rule at all. */
    noise *tmp = noise_new();
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    int rc = 0;
    char e[300];
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        const char *s = skip_ws(line);
        if (*s == '#' || trimmed_len(s) == 0)
            continue;
        if (noise_add(tmp, s, e, sizeof e) < 0) {
            seterr(err, errlen, "%s:%zu: %s", path, lineno, e);
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        seterr(err, errlen, "%s: %s", path, strerror(errno));
        rc = -1;
    }
    free(line);
    fclose(f);
    if (rc == 0)
        for (size_t i = 0; i < tmp->len; i++)
            noise_take(n, &tmp->v[i]);
    else
        for (size_t i = 0; i < tmp->len; i++)
            rule_free(&tmp->v[i]);
    tmp->len = 0;
    noise_free(tmp);
    return rc;
}

int noise_save(const noise *n, const char *path, char *err, size_t errlen)
{
    /* Written to a temporary file and renamed, so a crash never leaves a
     * half-written rule file that the next run would reject. */
    buf tmpname = BUF_INIT;
    buf_appendf(&tmpname, "%s.tmp", path);
    FILE *f = fopen(tmpname.data, "w");
    if (!f) {
        seterr(err, errlen, "%s: %s", tmpname.data, strerror(errno));
        buf_free(&tmpname);
        return -1;
    }
    fputs("# restspy noise rules: one per line (JSON path, 'header: NAME', 'regex: RE',\n"
          "# 'text: RE' for text bodies, or 'PATH ~ RE'); lines starting with '#' are comments\n",
          f);
    for (size_t i = 0; n && i < n->len; i++) {
        fputs(n->v[i].text, f);
        fputc('\n', f);
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        seterr(err, errlen, "%s: %s", tmpname.data, strerror(errno ? errno : EIO));
        unlink(tmpname.data);
        buf_free(&tmpname);
        return -1;
    }
    if (rename(tmpname.data, path) != 0) {
        seterr(err, errlen, "%s: %s", path, strerror(errno));
        unlink(tmpname.data);
        buf_free(&tmpname);
        return -1;
    }
    buf_free(&tmpname);
    return 0;
}

/* ------------------------------------------------------------------------
 * Comparison
 * ---------------------------------------------------------------------- */

typedef struct cmpctx {
    const noise *n;
    compare_result *out;
    size_t max; /* diffs kept */
    size_t dcap;
    comp *path; /* current JSON path, for rules and diff paths */
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

static bool json_ignored(const cmpctx *c)
{
    const noise *n = c->n;
    if (!n || n->npaths == 0)
        return false;
    for (size_t i = 0; i < n->len; i++)
        if (n->v[i].kind == RULE_PATH &&
            path_match(n->v[i].segs, n->v[i].nsegs, c->path, c->depth, true))
            return true;
    return false;
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

/* Two differing values are equal when one regex rule that applies here
 * (global, or for exactly this path) matches both. path NULL: not JSON. */
static bool regex_equal(const cmpctx *c, const char *e, const char *a, bool json)
{
    const noise *n = c->n;
    if (!n || n->nregex == 0 || !e || !a)
        return false;
    for (size_t i = 0; i < n->len; i++) {
        const nrule *r = &n->v[i];
        if (r->kind == RULE_PATH_REGEX) {
            if (!json || !path_match(r->segs, r->nsegs, c->path, c->depth, false))
                continue;
        } else if (r->kind != RULE_REGEX) {
            continue;
        }
        if (rule_matches(r, e, strlen(e)) && rule_matches(r, a, strlen(a)))
            return true;
    }
    return false;
}

static bool json_regex_equal(const cmpctx *c, const json_t *e, const json_t *a)
{
    if (!c->n || c->n->nregex == 0)
        return false;
    char te[48], ta[48];
    return regex_equal(c, regex_subject(e, te, sizeof te), regex_subject(a, ta, sizeof ta), true);
}

static void json_diff(cmpctx *c, const json_t *e, const json_t *a)
{
    if (json_ignored(c))
        return;
    if (want_diff(c))
        add_diff(c, DIFF_JSON, comps_format(c->path, c->depth), value_text(e), value_text(a));
}

static void push(cmpctx *c, const char *key, size_t klen, size_t index)
{
    if (c->depth == c->pcap) {
        c->pcap = c->pcap ? c->pcap * 2 : 16;
        c->path = xrealloc(c->path, c->pcap * sizeof *c->path);
    }
    c->path[c->depth++] = (comp){key, klen, index};
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

static bool header_ignored(const noise *n, const char *name)
{
    if (!n || n->nheaders == 0)
        return false;
    for (size_t i = 0; i < n->len; i++)
        if (n->v[i].kind == RULE_HEADER && strcasecmp(n->v[i].header, name) == 0)
            return true;
    return false;
}

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
    if (header_ignored(c->n, name) || headers_same(&e->resp_headers, &a->resp_headers, name))
        return;
    char *ev = header_join(&e->resp_headers, name);
    char *av = header_join(&a->resp_headers, name);
    bool same = (ev && av && strcmp(ev, av) == 0) ||
                (ev && av && redacted_equal(c, ev, strlen(ev), av, strlen(av))) ||
                regex_equal(c, ev, av, false);
    if (!same && want_diff(c)) {
        buf p = BUF_INIT;
        buf_appendf(&p, "header: %s", name);
        add_diff(c, DIFF_HEADER, buf_detach(&p), ev ? cut_text(ev, strlen(ev)) : NULL,
                 av ? cut_text(av, strlen(av)) : NULL);
    }
    free(ev);
    free(av);
}

/* ---- text bodies ---- */

typedef struct line {
    const char *p;
    size_t len;
    bool nl; /* ends with '\n' */
} line;

static line *split_lines(const char *s, size_t n, size_t *count)
{
    size_t cap = 16, k = 0;
    line *v = xmalloc(cap * sizeof *v);
    size_t i = 0;
    while (i < n) {
        const char *nl = memchr(s + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - s) : n;
        if (k == cap) {
            cap *= 2;
            v = xrealloc(v, cap * sizeof *v);
        }
        v[k++] = (line){s + i, end - i, nl != NULL};
        i = nl ? end + 1 : n;
    }
    *count = k;
    return v;
}

static bool line_eq(const line *a, const line *b)
{
    return a->len == b->len && a->nl == b->nl && memcmp(a->p, b->p, a->len) == 0;
}

typedef struct op {
    char kind;     /* ' ', '-', '+' */
    size_t ei, ai; /* line index in expected / actual (next one for '+'/'-') */
} op;

typedef struct ops {
    op *v;
    size_t len, cap;
} ops;

static void ops_add(ops *o, char kind, size_t ei, size_t ai)
{
    if (o->len == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 64;
        o->v = xrealloc(o->v, o->cap * sizeof *o->v);
    }
    o->v[o->len++] = (op){kind, ei, ai};
}

/* Edit scripts: Myers' O(ND) algorithm in linear space (E. W. Myers, "An
 * O(ND) Difference Algorithm and Its Variations", Algorithmica 1986, §4b).
 * The middle snake of the furthest-reaching forward and backward paths
 * splits a problem into two smaller ones, so memory is O(N+M) and time
 * O((N+M)·D) for D lines removed or added: a long body with few changes
 * costs little, whatever its length. Work is bounded: after DIFF_MAX_WORK
 * comparisons, the parts still unsolved are shown as wholly replaced (a
 * correct but not minimal script) and the caller is told. */

typedef struct myers {
    const line *e, *a;
    bool *gone;         /* gone[i]: e[i] is removed */
    bool *added;        /* added[j]: a[j] is added */
    ptrdiff_t *vf, *vb; /* furthest x on each diagonal, forward / backward */
    size_t work;        /* comparisons left */
    bool exact;         /* false once the work bound was hit */
} myers;

static bool myers_eq(myers *m, ptrdiff_t i, ptrdiff_t j)
{
    if (m->work)
        m->work--;
    return line_eq(&m->e[i], &m->a[j]);
}

/* The middle snake of e[x0..x0+n) against a[y0..y0+k) (both non-empty, no
 * common first or last line): *sx, *sy, relative to x0, y0, is a point on an
 * optimal path. False when they have no line in common, or when the work
 * bound is hit (m->exact is then cleared). */
static bool myers_split(myers *m, ptrdiff_t x0, ptrdiff_t n, ptrdiff_t y0, ptrdiff_t k,
                        ptrdiff_t *sx, ptrdiff_t *sy)
{
    ptrdiff_t maxd = (n + k + 1) / 2, off = maxd, vlen = 2 * maxd + 2;
    ptrdiff_t *vf = m->vf, *vb = m->vb;
    for (ptrdiff_t i = 0; i < vlen; i++)
        vf[i] = vb[i] = -1;
    vf[off + 1] = vb[off + 1] = 0;
    ptrdiff_t delta = n - k;
    bool front = delta % 2 != 0; /* odd: the forward paths meet the backward ones */
    ptrdiff_t fstart = 0, fend = 0, bstart = 0, bend = 0;
    for (ptrdiff_t d = 0; d < maxd; d++) {
        /* the diagonals visited count as work too */
        size_t visits = 2 * (size_t)d + 2;
        m->work = m->work > visits ? m->work - visits : 0;
        if (m->work == 0) {
            m->exact = false;
            return false;
        }
        for (ptrdiff_t kf = -d + fstart; kf <= d - fend; kf += 2) {
            ptrdiff_t i = off + kf;
            ptrdiff_t x =
                kf == -d || (kf != d && vf[i - 1] < vf[i + 1]) ? vf[i + 1] : vf[i - 1] + 1;
            ptrdiff_t y = x - kf;
            while (x < n && y < k && myers_eq(m, x0 + x, y0 + y)) {
                x++;
                y++;
            }
            vf[i] = x;
            if (x > n) {
                fend += 2; /* off the right edge */
            } else if (y > k) {
                fstart += 2; /* off the bottom edge */
            } else if (front) {
                ptrdiff_t j = off + delta - kf;
                if (j >= 0 && j < vlen && vb[j] != -1 && x >= n - vb[j]) {
                    *sx = x;
                    *sy = y;
                    return true;
                }
            }
        }
        for (ptrdiff_t kb = -d + bstart; kb <= d - bend; kb += 2) {
            ptrdiff_t i = off + kb;
            ptrdiff_t x =
                kb == -d || (kb != d && vb[i - 1] < vb[i + 1]) ? vb[i + 1] : vb[i - 1] + 1;
            ptrdiff_t y = x - kb;
            while (x < n && y < k && myers_eq(m, x0 + n - x - 1, y0 + k - y - 1)) {
                x++;
                y++;
            }
            vb[i] = x;
            if (x > n) {
                bend += 2;
            } else if (y > k) {
                bstart += 2;
            } else if (!front) {
                ptrdiff_t j = off + delta - kb;
                if (j >= 0 && j < vlen && vf[j] != -1 && vf[j] >= n - x) {
                    *sx = vf[j];
                    *sy = vf[j] - (j - off);
                    return true;
                }
            }
        }
    }
    return false;
}

/* Marks what e[x0..x1) against a[y0..y1) removes and adds. */
static void myers_solve(myers *m, ptrdiff_t x0, ptrdiff_t x1, ptrdiff_t y0, ptrdiff_t y1)
{
    while (x0 < x1 && y0 < y1 && line_eq(&m->e[x0], &m->a[y0])) {
        x0++;
        y0++;
    }
    while (x0 < x1 && y0 < y1 && line_eq(&m->e[x1 - 1], &m->a[y1 - 1])) {
        x1--;
        y1--;
    }
    ptrdiff_t sx, sy;
    if (x0 == x1 || y0 == y1 || !myers_split(m, x0, x1 - x0, y0, y1 - y0, &sx, &sy)) {
        for (ptrdiff_t i = x0; i < x1; i++)
            m->gone[i] = true;
        for (ptrdiff_t j = y0; j < y1; j++)
            m->added[j] = true;
        return;
    }
    /* Each half has fewer differences than the whole: the recursion is
     * O(log D) deep. */
    myers_solve(m, x0, x0 + sx, y0, y0 + sy);
    myers_solve(m, x0 + sx, x1, y0 + sy, y1);
}

/* Appends the edit script of e[0..ne) against a[0..na) to o (indexes offset
 * by e0, a0): kept lines ' ', and in each changed block its removed lines
 * '-' before its added ones '+'. True when minimal; false when the work
 * bound made some block wholly replaced instead. */
static bool diff_middle(const line *e, size_t ne, const line *a, size_t na, size_t e0, size_t a0,
                        ops *o)
{
    size_t vlen = ne + na + 3;
    myers m = {e,
               a,
               xcalloc(ne + 1, sizeof(bool)),
               xcalloc(na + 1, sizeof(bool)),
               xmalloc(vlen * sizeof(ptrdiff_t)),
               xmalloc(vlen * sizeof(ptrdiff_t)),
               DIFF_MAX_WORK,
               true};
    myers_solve(&m, 0, (ptrdiff_t)ne, 0, (ptrdiff_t)na);
    size_t i = 0, j = 0;
    while (i < ne || j < na) {
        if (i < ne && j < na && !m.gone[i] && !m.added[j]) {
            ops_add(o, ' ', e0 + i++, a0 + j++);
            continue;
        }
        while (i < ne && m.gone[i])
            ops_add(o, '-', e0 + i++, a0 + j);
        while (j < na && m.added[j])
            ops_add(o, '+', e0 + i, a0 + j++);
    }
    free(m.gone);
    free(m.added);
    free(m.vf);
    free(m.vb);
    return m.exact;
}

typedef struct tout {
    buf b;
    size_t lines;
    bool full;
} tout;

static void tout_line(tout *t, char kind, const line *l)
{
    if (t->full)
        return;
    if (t->lines >= TEXT_DIFF_LINES) {
        buf_append_str(&t->b, ellipsis);
        buf_append_str(&t->b, " (diff cut)\n");
        t->full = true;
        return;
    }
    size_t n = utf8_cut_len(l->p, l->len, TEXT_LINE_MAX);
    buf_append_char(&t->b, kind);
    buf_append(&t->b, l->p, n);
    if (n < l->len)
        buf_append_str(&t->b, ellipsis);
    buf_append_char(&t->b, '\n');
    t->lines++;
    if (!l->nl && !t->full) {
        buf_append_str(&t->b, "\\ No newline at end of file\n");
        t->lines++;
    }
}

/* How many lines (or tokens) e and a share at their start (*pre) and,
 * after those, at their end (*suf). */
static void common_ends(const line *e, size_t ne, const line *a, size_t na, size_t *pre,
                        size_t *suf)
{
    size_t p = 0, s = 0;
    while (p < ne && p < na && line_eq(&e[p], &a[p]))
        p++;
    while (s < ne - p && s < na - p && line_eq(&e[ne - 1 - s], &a[na - 1 - s]))
        s++;
    *pre = p;
    *suf = s;
}

static char *unified_diff(const char *es, size_t el, const char *as, size_t al)
{
    size_t ne, na, pre, suf;
    line *e = split_lines(es, el, &ne), *a = split_lines(as, al, &na);
    common_ends(e, ne, a, na, &pre, &suf);

    ops o = {NULL, 0, 0};
    size_t ctx0 = pre > TEXT_CONTEXT ? pre - TEXT_CONTEXT : 0;
    for (size_t i = ctx0; i < pre; i++)
        ops_add(&o, ' ', i, i);
    bool exact = diff_middle(e + pre, ne - pre - suf, a + pre, na - pre - suf, pre, pre, &o);
    for (size_t k = 0; k < suf && k < TEXT_CONTEXT; k++)
        ops_add(&o, ' ', ne - suf + k, na - suf + k);

    tout t = {BUF_INIT, 2, false};
    buf_append_str(&t.b, "--- expected\n+++ actual\n");
    if (!exact) {
        buf_append_str(&t.b, "(too many differences for a minimal diff: some changed blocks "
                             "are shown whole)\n");
        t.lines++;
    }
    size_t k = 0;
    while (k < o.len && !t.full) {
        while (k < o.len && o.v[k].kind == ' ')
            k++;
        if (k == o.len)
            break;
        /* A hunk: context before, changes, and runs of context shorter than
         * two contexts joined into it. */
        size_t start = k > TEXT_CONTEXT ? k - TEXT_CONTEXT : 0;
        size_t end = k; /* one past the last change */
        for (size_t m = k; m < o.len; m++) {
            if (o.v[m].kind != ' ')
                end = m + 1;
            else if (m - end >= 2 * TEXT_CONTEXT)
                break;
        }
        size_t stop = end + TEXT_CONTEXT < o.len ? end + TEXT_CONTEXT : o.len;
        size_t ecount = 0, acount = 0;
        for (size_t m = start; m < stop; m++) {
            ecount += o.v[m].kind != '+';
            acount += o.v[m].kind != '-';
        }
        size_t estart = o.v[start].ei + (ecount ? 1 : 0);
        size_t astart = o.v[start].ai + (acount ? 1 : 0);
        if (t.lines < TEXT_DIFF_LINES) {
            buf_appendf(&t.b, "@@ -%zu,%zu +%zu,%zu @@\n", estart, ecount, astart, acount);
            t.lines++;
        }
        for (size_t m = start; m < stop; m++)
            tout_line(&t, o.v[m].kind, o.v[m].kind == '+' ? &a[o.v[m].ai] : &e[o.v[m].ei]);
        k = stop;
    }
    free(o.v);
    free(e);
    free(a);
    return buf_detach(&t.b);
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
 * The tokens reuse the line type: nl marks a run of delimiters. */

static bool is_delim(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\f' || ch == '\v' ||
           (ch && strchr("\"'`<>=&;,(){}", ch));
}

/* Maximal runs of delimiters and of other bytes, alternating. Words keep
 * ':', '-', '.', '/', '[', ']': a timestamp, a URL path, the redaction
 * marker stay one word. */
static line *split_tokens(const char *s, size_t n, size_t *count)
{
    size_t cap = 16, k = 0, i = 0;
    line *v = xmalloc(cap * sizeof *v);
    while (i < n) {
        bool d = is_delim((unsigned char)s[i]);
        size_t j = i + 1;
        while (j < n && is_delim((unsigned char)s[j]) == d)
            j++;
        if (k == cap) {
            cap *= 2;
            v = xrealloc(v, cap * sizeof *v);
        }
        v[k++] = (line){s + i, j - i, d};
        i = j;
    }
    *count = k;
    return v;
}

/* Does a text: or regex: rule match both words? */
static bool text_rule_equal(const cmpctx *c, const line *e, const line *a)
{
    const noise *n = c->n;
    if (!n || n->ntext + n->nregex == 0)
        return false;
    bool eq = false;
    for (size_t i = 0; i < n->len && !eq; i++) {
        const nrule *r = &n->v[i];
        eq = (r->kind == RULE_TEXT || r->kind == RULE_REGEX) && rule_matches(r, e->p, e->len) &&
             rule_matches(r, a->p, a->len);
    }
    return eq;
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
static bool shape_at(const line *x, const line *y, bool fine, buf *out)
{
    buf_append_str(out, "text: ^");
    size_t i = 0, j = 0;
    while (i < x->len || j < y->len) {
        size_t rx = word_run(x->p + i, x->len - i, fine);
        size_t ry = word_run(y->p + j, y->len - j, fine);
        if (rx && ry && fine && rx == ry && memcmp(x->p + i, y->p + j, rx) == 0 &&
            is_letter(x->p[i])) {
            buf_append(out, x->p + i, rx); /* the same letters: the T of a time */
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
            rx = ry = 1;
        } else {
            return false;
        }
        i += rx;
        j += ry;
    }
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
static bool shape_rule(const line *x, const line *y, buf *out)
{
    if (shape_at(x, y, true, out))
        return true;
    buf_reset(out);
    return shape_at(x, y, false, out);
}

static void add_learnable(compare_result *r, const line *e, const line *a)
{
    buf b = BUF_INIT;
    if (!shape_rule(e, a, &b)) {
        buf_free(&b);
        return;
    }
    r->rules = xrealloc(r->rules, (r->nrules + 1) * sizeof *r->rules);
    r->rules[r->nrules++] = buf_detach(&b);
}

static char *quoted_token(const line *t)
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
static bool token_pair(cmpctx *c, line_cursor *lc, const line *e, const line *a, bool *differs)
{
    if (line_eq(e, a))
        return true;
    if (e->nl || a->nl)
        return false; /* punctuation or spacing */
    if (redacted_equal(c, e->p, e->len, a->p, a->len) || text_rule_equal(c, e, a))
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
static bool pair_runs(cmpctx *c, line_cursor *lc, const line *e, const line *a, const ops *o,
                      bool *differs)
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
    line *e = split_tokens(es, el, &ne), *a = split_tokens(as, al, &na);
    common_ends(e, ne, a, na, &pre, &suf);
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
        ops o = {NULL, 0, 0};
        ok = diff_middle(e + pre, me, a + pre, ma, pre, pre, &o) &&
             pair_runs(c, &lc, e, a, &o, &differs);
        free(o.v);
    } else {
        ok = false;
    }
    if (!ok && want_diff(c))
        add_diff(c, DIFF_BODY, xstrdup("body"), bytes_text(el, ""), bytes_text(al, ""));
    if ((!ok || differs) && !c->out->text_diff)
        c->out->text_diff = unified_diff(es, el, as, al);
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
            const char *p = d->path, *why;
            seg *s;
            size_t ns;
            if (parse_path(&p, &s, &ns, &why) < 0 || *p)
                continue; /* not a path this module wrote */
            for (size_t k = 0; k < ns; k++)
                if (s[k].kind == SEG_INDEX)
                    s[k].kind = SEG_ANY;
            segs_format(s, ns, &text);
            segs_free(s, ns);
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
