/* noise: the noise rules (see noise.h).
 *
 * Owns rule sets (each rule's canonical text, parsed path and PCRE2 regex)
 * and the JSON path syntax ($.a, $..id, $.items[*].ts, ["odd key"]) both
 * ways, for rules and for the paths of differences. */
#include "compare/noise.h"

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

#include "base/util.h"

#define JSON_FLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL)

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

char *noise_path_format(const noise_step *c, size_t n)
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
static bool path_match(const seg *s, size_t ns, const noise_step *c, size_t nc, bool prefix)
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

/* RULE_TEXT: a regex for the tokens of text (non-JSON) bodies only.
 * RULE_CORR_PATH and RULE_NO_CORR_HEADER are not comparison rules: they are
 * correlate.h's explicit rules, kept here so that one file holds both. */
typedef enum {
    RULE_PATH,
    RULE_HEADER,
    RULE_REGEX,
    RULE_PATH_REGEX,
    RULE_TEXT,
    RULE_CORR_PATH,
    RULE_NO_CORR_HEADER
} rule_kind;

typedef struct nrule {
    rule_kind kind;
    char *text; /* canonical text: what noise_save writes, noise_has compares */
    seg *segs;  /* RULE_PATH, RULE_PATH_REGEX */
    size_t nsegs;
    const char *header; /* RULE_HEADER, RULE_NO_CORR_HEADER: points into text */
    pcre2_code *re;     /* RULE_REGEX, RULE_PATH_REGEX, RULE_TEXT: compiled once,
                           when the rule is added (NULL before); owned */
} nrule;

struct noise {
    nrule *v;
    size_t len, cap;
    size_t npaths, nheaders, nregex, ntext; /* lets compare skip whole kinds */
    size_t ncorr;                           /* correlation rules */
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
    bool nocorr = prefix_ieq(s, "no-correlate-header:");
    if (nocorr || prefix_ieq(s, "header:")) {
        const char *label = nocorr ? "no-correlate-header:" : "header:";
        s = skip_ws(s + strlen(label));
        const char *b = s;
        while (*s && *s != ' ' && *s != '\t' && *s != ':' && *s != '#')
            s++;
        if (s == b) {
            *why = nocorr ? "expected a header name after 'no-correlate-header:'"
                          : "expected a header name after 'header:'";
            goto out;
        }
        size_t nlen = (size_t)(s - b);
        s = skip_ws(s);
        if (*s && !(*s == '#' && s > b + nlen)) {
            *why = "a header name has no spaces or ':'";
            goto out;
        }
        r->kind = nocorr ? RULE_NO_CORR_HEADER : RULE_HEADER;
        buf_append_str(&canon, label);
        buf_append_char(&canon, ' ');
        buf_append(&canon, b, nlen);
        r->text = buf_detach(&canon);
        r->header = r->text + strlen(label) + 1;
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
    bool corr = prefix_ieq(s, "correlate:");
    if (corr)
        s = skip_ws(s + 10);
    if (*s != '$') {
        /* The comparison rules are what a mistyped rule most likely meant. */
        *why = corr ? "expected a JSON path ('$...') after 'correlate:'"
                    : "expected a JSON path ('$...'), 'header: NAME', 'regex: REGEX' or 'text: "
                      "REGEX'";
        goto out;
    }
    if (parse_path(&s, &r->segs, &r->nsegs, why) < 0)
        goto out;
    const char *end = s;
    s = skip_ws(s);
    if (corr)
        buf_append_str(&canon, "correlate: ");
    segs_format(r->segs, r->nsegs, &canon);
    if (corr) {
        if (*s && !(*s == '#' && s > end)) {
            *why = "unexpected text after the path";
            goto out;
        }
        r->kind = RULE_CORR_PATH;
    } else if (*s == '~') {
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
    if (a->kind == RULE_HEADER || a->kind == RULE_NO_CORR_HEADER)
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
    else if (r->kind == RULE_CORR_PATH || r->kind == RULE_NO_CORR_HEADER)
        n->ncorr++;
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
        util_seterr(err, errlen, "bad noise rule '%.*s': %s", (int)(len > 100 ? 100 : len),
                    rule_text, why);
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
        util_seterr(err, errlen, "%s: %s", path, strerror(errno));
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
            util_seterr(err, errlen, "%s:%zu: %s", path, lineno, e);
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        util_seterr(err, errlen, "%s: %s", path, strerror(errno));
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
        util_seterr(err, errlen, "%s: %s", tmpname.data, strerror(errno));
        buf_free(&tmpname);
        return -1;
    }
    fputs("# restspy noise rules: one per line (JSON path, 'header: NAME', 'regex: RE',\n"
          "# 'text: RE' for text bodies, or 'PATH ~ RE'; for replay --correlate\n"
          "# 'correlate: PATH' and 'no-correlate-header: NAME'); lines starting with '#' are\n"
          "# comments\n",
          f);
    for (size_t i = 0; n && i < n->len; i++) {
        fputs(n->v[i].text, f);
        fputc('\n', f);
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        util_seterr(err, errlen, "%s: %s", tmpname.data, strerror(errno ? errno : EIO));
        unlink(tmpname.data);
        buf_free(&tmpname);
        return -1;
    }
    if (rename(tmpname.data, path) != 0) {
        util_seterr(err, errlen, "%s: %s", path, strerror(errno));
        unlink(tmpname.data);
        buf_free(&tmpname);
        return -1;
    }
    buf_free(&tmpname);
    return 0;
}

/* ------------------------------------------------------------------------
 * What compare asks
 * ---------------------------------------------------------------------- */

/* Does a rule of kind k match path[0..depth) (with prefix, or a member
 * above it)? */
static bool has_path_rule(const noise *n, rule_kind k, const noise_step *path, size_t depth,
                          bool prefix)
{
    for (size_t i = 0; i < n->len; i++)
        if (n->v[i].kind == k && path_match(n->v[i].segs, n->v[i].nsegs, path, depth, prefix))
            return true;
    return false;
}

/* Does a rule of kind k name the header (case-insensitive)? */
static bool has_header_rule(const noise *n, rule_kind k, const char *name)
{
    for (size_t i = 0; i < n->len; i++)
        if (n->v[i].kind == k && strcasecmp(n->v[i].header, name) == 0)
            return true;
    return false;
}

bool noise_json_ignored(const noise *n, const noise_step *path, size_t depth)
{
    return n && n->npaths && has_path_rule(n, RULE_PATH, path, depth, true);
}

bool noise_header_ignored(const noise *n, const char *name)
{
    return n && n->nheaders && has_header_rule(n, RULE_HEADER, name);
}

bool noise_correlate_path(const noise *n, const noise_step *path, size_t depth)
{
    return n && n->ncorr && has_path_rule(n, RULE_CORR_PATH, path, depth, false);
}

bool noise_correlate_header_off(const noise *n, const char *name)
{
    return n && n->ncorr && has_header_rule(n, RULE_NO_CORR_HEADER, name);
}

bool noise_has_regex(const noise *n)
{
    return n && n->nregex > 0;
}

bool noise_regex_equal(const noise *n, const noise_step *path, size_t depth, const char *e,
                       const char *a, bool json)
{
    if (!n || n->nregex == 0 || !e || !a)
        return false;
    for (size_t i = 0; i < n->len; i++) {
        const nrule *r = &n->v[i];
        if (r->kind == RULE_PATH_REGEX) {
            if (!json || !path_match(r->segs, r->nsegs, path, depth, false))
                continue;
        } else if (r->kind != RULE_REGEX) {
            continue;
        }
        if (rule_matches(r, e, strlen(e)) && rule_matches(r, a, strlen(a)))
            return true;
    }
    return false;
}

bool noise_text_equal(const noise *n, const char *e, size_t el, const char *a, size_t al)
{
    if (!n || n->ntext + n->nregex == 0)
        return false;
    bool eq = false;
    for (size_t i = 0; i < n->len && !eq; i++) {
        const nrule *r = &n->v[i];
        eq = (r->kind == RULE_TEXT || r->kind == RULE_REGEX) && rule_matches(r, e, el) &&
             rule_matches(r, a, al);
    }
    return eq;
}

bool noise_path_any_index(const char *path, buf *out)
{
    const char *p = path, *why;
    seg *s;
    size_t ns;
    if (parse_path(&p, &s, &ns, &why) < 0)
        return false;
    if (*p) {
        segs_free(s, ns);
        return false;
    }
    for (size_t k = 0; k < ns; k++)
        if (s[k].kind == SEG_INDEX)
            s[k].kind = SEG_ANY;
    segs_format(s, ns, out);
    segs_free(s, ns);
    return true;
}
