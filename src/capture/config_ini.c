/* config_ini: reading an INI file into a config (see config.h,
 * config_load_file). Keys go through the settings table (config_internal.h)
 * like flags and environment variables do. */
#include "capture/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "capture/config_internal.h"

/* ---- INI files ----
 * inih parses the key = value lines; a custom reader feeds it line by line
 * so we know the line number of each key (inih's handler is built without
 * one) and see every section header, including those of empty sections and
 * repeated ones, which the key handler alone would miss.
 *
 * Comments: a line whose first non-blank character is '#' or ';', and the
 * rest of a line from a '#' or ';' that follows whitespace (so a secret
 * "ab#cd" keeps its '#'). A value in double quotes is taken whole, quotes
 * removed: "..." keeps leading and trailing blanks and " #" or " ;". The
 * reader cuts comments itself before inih sees the line, because what inih
 * cuts is a build option (Debian's libinih: ';' only; others: none, or
 * both) and would also cut into a quoted value; the quoted value is handed
 * to the key handler from the reader's copy for the same reason. */

#define INI_SECTION_MAX 49 /* inih truncates longer section names silently */

enum { SECT_MAIN, SECT_RULE, SECT_BAD };

typedef struct ini_state {
    config *c;
    FILE *f;
    char *line;
    size_t linecap;
    int lineno;
    bool prev_key; /* mirrors inih: an indented line after a key continues it */
    char *quoted;  /* the current line's value when it is "quoted", without quotes */
    size_t quoted_cap;
    bool have_quoted; /* quoted holds the value of the line inih is parsing */
    int sect;
    size_t rule_idx;
    char sect_raw[INI_SECTION_MAX + 1]; /* section text as inih will report it */
    int err_line;                       /* first error; 0 = none */
    char err[512];
} ini_state;

static void ini_error(ini_state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void ini_error(ini_state *st, const char *fmt, ...)
{
    if (st->err_line)
        return;
    st->err_line = st->lineno;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->err, sizeof st->err, fmt, ap);
    va_end(ap);
}

static void add_rule(ini_state *st, const char *name)
{
    config *c = st->c;
    for (size_t i = 0; i < c->rules_len; i++) {
        if (strcmp(c->rules[i].name, name) == 0) {
            ini_error(st, "duplicate rule name '%s'", name);
            st->sect = SECT_BAD;
            return;
        }
    }
    config_rule_init(config_rule_slot(c), name);
    st->rule_idx = c->rules_len - 2;
    st->sect = SECT_RULE;
}

/* A "[...]" line: raw is the text between the brackets. */
static void open_section(ini_state *st, const char *raw, size_t n)
{
    st->sect = SECT_BAD;
    if (n > INI_SECTION_MAX) {
        ini_error(st, "section header too long (at most %d characters)", INI_SECTION_MAX);
        return;
    }
    memcpy(st->sect_raw, raw, n);
    st->sect_raw[n] = '\0';
    util_trim(&raw, &n);
    if (n == 7 && memcmp(raw, "restspy", 7) == 0) {
        st->sect = SECT_MAIN;
        return;
    }
    if (n >= 4 && memcmp(raw, "rule", 4) == 0 && (n == 4 || isspace((unsigned char)raw[4]))) {
        const char *name = raw + 4;
        size_t len = n - 4;
        util_trim(&name, &len);
        if (len >= 2 && name[0] == '"' && name[len - 1] == '"') {
            name++;
            len -= 2;
        } else if (len && (name[0] == '"' || name[len - 1] == '"')) {
            ini_error(st, "bad rule section [%s] (expected [rule \"name\"])", st->sect_raw);
            return;
        }
        if (len == 0) {
            ini_error(st, "rule name must not be empty");
            return;
        }
        char rname[INI_SECTION_MAX + 1];
        memcpy(rname, name, len);
        rname[len] = '\0';
        add_rule(st, rname);
        return;
    }
    ini_error(st, "unknown section [%s] (expected [restspy] or [rule \"name\"])", st->sect_raw);
}

/* The closing quote of a value that opens with the quote at q: the first
 * '"' after it that only blanks or a comment follow. NULL when none does. */
static const char *quote_end(const char *q)
{
    for (const char *p = strchr(q + 1, '"'); p; p = strchr(p + 1, '"')) {
        const char *after = p + 1;
        while (*after && isspace((unsigned char)*after))
            after++;
        if (!*after || ((*after == '#' || *after == ';') && after > p + 1))
            return p;
    }
    return NULL;
}

static void keep_quoted(ini_state *st, const char *v, size_t n)
{
    if (n + 1 > st->quoted_cap) {
        st->quoted_cap = n + 1;
        st->quoted = xrealloc(st->quoted, st->quoted_cap);
    }
    memcpy(st->quoted, v, n);
    st->quoted[n] = '\0';
    st->have_quoted = true;
}

/* Cuts the inline comment off s, a line without its leading blanks, in
 * place. The value starts at s on a continuation line, after the first '='
 * or ':' (inih's split) on any other; a quoted value is kept whole. */
static void cut_comment(ini_state *st, char *s, bool continuation)
{
    bool at_value = continuation; /* the next non-blank character starts the value */
    bool seen_sep = continuation;
    bool was_space = false;
    for (char *p = s; *p; p++) {
        if (at_value && !isspace((unsigned char)*p)) {
            at_value = false;
            const char *close = *p == '"' ? quote_end(p) : NULL;
            if (close) {
                keep_quoted(st, p + 1, (size_t)(close - p - 1));
                p += close - p; /* the loop goes on after the closing quote */
                was_space = false;
                continue;
            }
        }
        if ((*p == '#' || *p == ';') && was_space) {
            *p = '\0';
            return;
        }
        if (!seen_sep && (*p == '=' || *p == ':'))
            seen_sep = at_value = true;
        was_space = isspace((unsigned char)*p) != 0;
    }
}

/* Watches the line inih is about to parse, following inih's own order of
 * checks (comment, continuation, section, key), and cuts its comment. */
static void watch_line(ini_state *st, char *line)
{
    char *start = line;
    st->have_quoted = false;
    if (st->lineno == 1 && memcmp(start, "\xEF\xBB\xBF", 3) == 0)
        start += 3;
    while (*start && isspace((unsigned char)*start))
        start++;
    if (*start == '\0' || *start == ';' || *start == '#')
        return;
    bool continuation = st->prev_key && start > line;
    cut_comment(st, start, continuation);
    if (continuation)
        return; /* continuation of the previous value */
    size_t n = strlen(start);
    while (n && isspace((unsigned char)start[n - 1]))
        n--;
    if (*start == '[') {
        const char *rb = memchr(start, ']', n);
        if (rb) {
            st->prev_key = false;
            open_section(st, start + 1, (size_t)(rb - start - 1));
        }
        return; /* no ']': inih reports the syntax error */
    }
    if (memchr(start, '=', n) || memchr(start, ':', n))
        st->prev_key = true;
}

static char *read_line(char *str, int num, void *stream)
{
    ini_state *st = stream;
    ssize_t len = getline(&st->line, &st->linecap, st->f);
    if (len < 0)
        return NULL;
    st->lineno++;
    /* Room for the line, "\n" and NUL is what inih's buffer needs; longer
     * lines would be split into two by inih, so refuse them here. */
    if (num < 3 || (size_t)len + 2 > (size_t)num) {
        ini_error(st, "line too long (at most %d bytes)", num - 3);
        snprintf(str, (size_t)num, "\n");
        return str;
    }
    memcpy(str, st->line, (size_t)len + 1);
    watch_line(st, str);
    return str;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    ini_state *st = user;
    if (st->err_line)
        return 1; /* keep only the first error; inih keeps going regardless */
    if (st->sect == SECT_BAD)
        return 1;
    if (strcmp(section, st->sect_raw) != 0) {
        ini_error(st, "cannot parse section header [%s]", section);
        return 1;
    }
    if (st->have_quoted) {
        value = st->quoted; /* inih's copy may be cut at a ';' inside the quotes */
        st->have_quoted = false;
    }
    char msg[400];
    if (st->sect == SECT_RULE) {
        const keydef *k = config_key_find(true, name, strlen(name));
        rule *r = &st->c->rules[st->rule_idx];
        if (!k)
            ini_error(st, "unknown key '%s' in [rule \"%s\"]", name, r->name);
        else if (config_key_apply(k, r, value, msg, sizeof msg) != 0)
            ini_error(st, "%s", msg);
        return 1;
    }
    const keydef *k = config_key_find(false, name, strlen(name));
    if (!k)
        ini_error(st, "unknown key '%s'", name);
    else if (k->kind == K_CONFIG)
        ini_error(st, "key 'config' cannot be set inside a config file");
    else if (config_set(st->c, name, value, msg, sizeof msg) != 0)
        ini_error(st, "%s", msg);
    return 1;
}

int config_load_file(config *c, const char *path, char *err, size_t errlen)
{
    ini_state st;
    memset(&st, 0, sizeof st);
    st.c = c;
    st.sect = SECT_MAIN;
    st.f = fopen(path, "r");
    if (!st.f) {
        util_seterr(err, errlen, "cannot read config file '%s': %s", path, strerror(errno));
        return -1;
    }
    int rc = ini_parse_stream(read_line, &st, on_key, &st);
    bool read_failed = ferror(st.f) != 0;
    fclose(st.f);
    free(st.line);
    free(st.quoted);
    if (read_failed) {
        util_seterr(err, errlen, "cannot read config file '%s'", path);
        return -1;
    }
    if (rc > 0 && (!st.err_line || rc < st.err_line)) {
        util_seterr(err, errlen, "%s:%d: syntax error (expected key = value or [section])", path,
                    rc);
        return -1;
    }
    if (rc < 0) {
        util_seterr(err, errlen, "cannot parse config file '%s'", path);
        return -1;
    }
    if (st.err_line) {
        util_seterr(err, errlen, "%s:%d: %s", path, st.err_line, st.err);
        return -1;
    }
    free(c->config_path);
    c->config_path = xstrdup(path);
    return 0;
}
