/* report: collected replay outcomes and their three renderings (summary,
 * JSON, JUnit XML). See report.h. */
#include "replay/report.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/util.h"

/* Offsets into report.strs; NOSTR stands for a NULL string. */
#define NOSTR SIZE_MAX

/* Only mismatches carry differences; kept out of line so that the common
 * case (a match) costs no allocation of its own. */
typedef struct rp_mismatch {
    diff *diffs; /* deep copies, owned */
    size_t ndiffs;
    size_t ndiffs_total;
    char *text_diff; /* owned, or NULL */
} rp_mismatch;

typedef struct rp_item {
    char id[UUID7_STR_LEN + 1];
    outcome_kind kind;
    unsigned loop;                      /* 0-based, as report_add got it */
    int status_expected;                /* 0: no recorded response */
    int status_actual;                  /* -1: unknown */
    int64_t latency_us;                 /* -1: unknown */
    int64_t started_at_us;              /* recorded time: the output order */
    size_t redacted;                    /* fields not compared: redacted at capture */
    size_t method, path, query, detail; /* offsets into report.strs */
    rp_mismatch *mm;                    /* owned, or NULL */
    corr_subs subs;                     /* replay --correlate: values substituted */
} rp_item;

struct report {
    char *target; /* owned, or NULL */
    double elapsed_s;
    rp_item *items; /* in the order they were added */
    size_t n, cap;
    /* Every string of every item, NUL-terminated, one after the other: one
     * growing block instead of three or four mallocs per request, because
     * report_add runs once per answer at load-generator rates. Items hold
     * offsets, not pointers, since the block moves when it grows. */
    buf strs;
    size_t counts[OUTCOME_LAST + 1];
    size_t redacted_fields, redacted_requests;
    size_t sent_recorded;       /* OUTCOME_SENT with a recorded response: --no-compare */
    size_t nsubs, sub_requests; /* substitutions, and the requests that had some */
    unsigned max_loop;
};

report *report_new(const char *target)
{
    report *rp = xcalloc(1, sizeof *rp);
    rp->target = target ? xstrdup(target) : NULL;
    buf_init(&rp->strs);
    return rp;
}

static void mismatch_free(rp_mismatch *mm)
{
    if (!mm)
        return;
    for (size_t i = 0; i < mm->ndiffs; i++) {
        free(mm->diffs[i].path);
        free(mm->diffs[i].expected);
        free(mm->diffs[i].actual);
    }
    free(mm->diffs);
    free(mm->text_diff);
    free(mm);
}

void report_free(report *rp)
{
    if (!rp)
        return;
    for (size_t i = 0; i < rp->n; i++) {
        mismatch_free(rp->items[i].mm);
        corr_subs_free(&rp->items[i].subs);
    }
    free(rp->items);
    buf_free(&rp->strs);
    free(rp->target);
    free(rp);
}

static size_t str_put(report *rp, const char *s)
{
    if (!s)
        return NOSTR;
    size_t off = rp->strs.len;
    buf_append(&rp->strs, s, strlen(s) + 1);
    return off;
}

static const char *str_get(const report *rp, size_t off)
{
    return off == NOSTR ? NULL : rp->strs.data + off;
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static rp_mismatch *mismatch_copy(const compare_result *res)
{
    rp_mismatch *mm = xcalloc(1, sizeof *mm);
    if (res->ndiffs) {
        mm->diffs = xcalloc(res->ndiffs, sizeof *mm->diffs);
        for (size_t i = 0; i < res->ndiffs; i++) {
            const diff *d = &res->diffs[i];
            mm->diffs[i].kind = d->kind;
            mm->diffs[i].path = xstrdup(d->path ? d->path : "");
            mm->diffs[i].expected = dup_or_null(d->expected);
            mm->diffs[i].actual = dup_or_null(d->actual);
        }
    }
    mm->ndiffs = res->ndiffs;
    mm->ndiffs_total = res->ndiffs_total > res->ndiffs ? res->ndiffs_total : res->ndiffs;
    mm->text_diff = dup_or_null(res->text_diff);
    return mm;
}

/* The status the target answered, as far as the outcome tells: the recorded
 * one for a match or for a mismatch without a status difference, the
 * difference's actual value otherwise. */
static int actual_status(outcome_kind k, int expected, const rp_mismatch *mm)
{
    if (k == OUTCOME_MATCH)
        return expected;
    if (k != OUTCOME_MISMATCH)
        return -1;
    if (mm) {
        for (size_t i = 0; i < mm->ndiffs; i++) {
            if (mm->diffs[i].kind != DIFF_STATUS)
                continue;
            const char *a = mm->diffs[i].actual;
            if (!a)
                return -1;
            char *end;
            long v = strtol(a, &end, 10);
            return end != a && v > 0 && v < 1000 ? (int)v : -1;
        }
        /* A status difference cut off by max_diffs would leave us guessing. */
        if (mm->ndiffs_total > mm->ndiffs)
            return -1;
    }
    return expected;
}

void report_add(report *rp, outcome_kind k, const record *c, unsigned loop,
                const compare_result *res, const char *detail, int64_t latency_us)
{
    if ((unsigned)k > OUTCOME_LAST)
        k = OUTCOME_ERROR;
    if (rp->n == rp->cap) {
        rp->cap = rp->cap ? rp->cap * 2 : 256;
        rp->items = xrealloc(rp->items, rp->cap * sizeof *rp->items);
    }
    rp_item *it = &rp->items[rp->n++];
    memset(it, 0, sizeof *it);
    if (c) {
        memcpy(it->id, c->id, sizeof it->id);
        it->id[sizeof it->id - 1] = '\0';
    }
    it->kind = k;
    it->loop = loop;
    it->status_expected = c ? c->status : 0;
    it->latency_us = latency_us >= 0 ? latency_us : -1;
    it->started_at_us = c ? c->started_at_us : 0;
    it->method = str_put(rp, c && c->method ? c->method : "?");
    it->path = str_put(rp, c && c->path ? c->path : "/");
    it->query = str_put(rp, c ? c->query : NULL);
    it->detail = str_put(rp, detail);
    it->mm = k == OUTCOME_MISMATCH && res ? mismatch_copy(res) : NULL;
    it->status_actual = actual_status(k, it->status_expected, it->mm);
    if (k == OUTCOME_SENT && it->status_expected > 0)
        rp->sent_recorded++;
    it->redacted = res ? res->nredacted : 0;
    if (it->redacted) {
        rp->redacted_fields += it->redacted;
        rp->redacted_requests++;
    }
    rp->counts[k]++;
    if (loop > rp->max_loop)
        rp->max_loop = loop;
}

void report_add_subs(report *rp, const corr_sub *subs, size_t n)
{
    assert(rp->n > 0); /* after the report_add of their request */
    if (n == 0)
        return;
    corr_subs *dst = &rp->items[rp->n - 1].subs;
    for (size_t i = 0; i < n; i++)
        corr_subs_add(dst, subs[i].place, subs[i].from, subs[i].to);
    if (dst->n == n)
        rp->sub_requests++;
    rp->nsubs += n;
}

void report_set_elapsed(report *rp, double seconds)
{
    rp->elapsed_s = seconds > 0 ? seconds : 0;
}

size_t report_count(const report *rp, outcome_kind k)
{
    return (unsigned)k <= OUTCOME_LAST ? rp->counts[k] : 0;
}

int report_exit_code(const report *rp)
{
    if (rp->counts[OUTCOME_ERROR])
        return 2;
    if (rp->counts[OUTCOME_MISMATCH] || rp->counts[OUTCOME_UNREPLAYABLE])
        return 1;
    return 0;
}

/* ---- ordering ---------------------------------------------------------- */

/* Outputs list outcomes loop by loop in recorded order, not in the order the
 * answers came back: with concurrency that order changes from run to run,
 * and two reports of the same suite should diff cleanly in CI. */
static int item_cmp(const void *a, const void *b)
{
    const rp_item *x = *(const rp_item *const *)a, *y = *(const rp_item *const *)b;
    if (x->loop != y->loop)
        return x->loop < y->loop ? -1 : 1;
    if (x->started_at_us != y->started_at_us)
        return x->started_at_us < y->started_at_us ? -1 : 1;
    int c = strcmp(x->id, y->id);
    if (c)
        return c;
    /* Items live in insertion order, so the addresses keep the sort stable. */
    return x < y ? -1 : x > y;
}

/* The items in output order; caller frees the array (not the items). */
static const rp_item **sorted_items(const report *rp)
{
    const rp_item **v = xmalloc((rp->n ? rp->n : 1) * sizeof *v);
    for (size_t i = 0; i < rp->n; i++)
        v[i] = &rp->items[i];
    qsort(v, rp->n, sizeof *v, item_cmp);
    return v;
}

/* ---- shared text pieces ------------------------------------------------ */

static const char *plural(size_t n)
{
    return n == 1 ? "" : "s";
}

static void append_target(const report *rp, const rp_item *it, buf *b)
{
    buf_append_str(b, str_get(rp, it->method));
    buf_append_char(b, ' ');
    buf_append_str(b, str_get(rp, it->path));
    const char *q = str_get(rp, it->query);
    if (q) {
        buf_append_char(b, '?');
        buf_append_str(b, q);
    }
}

static void append_more_diffs(const rp_mismatch *mm, buf *b)
{
    if (mm->ndiffs_total > mm->ndiffs) {
        size_t more = mm->ndiffs_total - mm->ndiffs;
        buf_appendf(b, "... and %zu more difference%s", more, plural(more));
    }
}

/* ---- summary ----------------------------------------------------------- */

/* Appends s for a terminal: bytes that would move the cursor, change colours
 * or end the line (a server's answer can hold any of them: C0 and C1 controls,
 * DEL) and bytes that are not UTF-8 are shown as \xNN, so that each
 * difference stays on its own line and cannot rewrite the screen. */
static void append_term(buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0;
    while (i < n) {
        unsigned char c = p[i];
        size_t l = 1;
        bool plain;
        if (c >= 0x80) {
            l = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            /* U+0080..U+009F (C2 80..C2 9F) are the C1 controls. */
            plain = l <= n - i && utf8_valid(s + i, l) && !(c == 0xC2 && p[i + 1] < 0xA0);
            if (!plain)
                l = 1;
        } else {
            plain = (c >= 0x20 && c != 0x7f) || c == '\t';
        }
        if (plain) {
            i += l;
            run += l;
            continue;
        }
        buf_append(b, s + i - run, run);
        run = 0;
        char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
        buf_append(b, esc, 4);
        i++;
    }
    buf_append(b, s + n - run, run);
}

/* Appends text one indented line per line of it. */
static void append_term_lines(buf *b, const char *indent, const char *s)
{
    while (*s) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        buf_append_str(b, indent);
        append_term(b, s, len);
        buf_append_char(b, '\n');
        s += len + (nl ? 1 : 0);
    }
}

typedef struct group {
    const char *text;
    size_t count;
} group;

static int str_ptr_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int group_cmp(const void *a, const void *b)
{
    const group *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return strcmp(x->text, y->text);
}

/* "LABEL detail: N requests" for every distinct detail of kind k, the most
 * frequent first: a dead target gives thousands of identical errors, and one
 * line says it better than thousands. */
static void append_groups(const report *rp, outcome_kind k, const char *label, const char *unknown,
                          buf *b)
{
    size_t n = rp->counts[k];
    if (!n)
        return;
    const char **texts = xmalloc(n * sizeof *texts);
    size_t m = 0;
    for (size_t i = 0; i < rp->n; i++) {
        if (rp->items[i].kind != k)
            continue;
        const char *d = str_get(rp, rp->items[i].detail);
        texts[m++] = d && *d ? d : unknown;
    }
    qsort(texts, m, sizeof *texts, str_ptr_cmp);
    group *groups = xmalloc(m * sizeof *groups);
    size_t ng = 0;
    for (size_t i = 0; i < m; i++) {
        if (ng && strcmp(groups[ng - 1].text, texts[i]) == 0) {
            groups[ng - 1].count++;
        } else {
            groups[ng].text = texts[i];
            groups[ng].count = 1;
            ng++;
        }
    }
    qsort(groups, ng, sizeof *groups, group_cmp);
    for (size_t i = 0; i < ng; i++) {
        buf_append_str(b, label);
        buf_append_char(b, ' ');
        append_term(b, groups[i].text, strlen(groups[i].text));
        buf_appendf(b, ": %zu request%s\n", groups[i].count, plural(groups[i].count));
    }
    free(groups);
    free(texts);
}

static void append_mismatch(const report *rp, const rp_item *it, buf *b, buf *tmp)
{
    buf_reset(tmp);
    append_target(rp, it, tmp);
    buf_append_str(b, "MISMATCH ");
    append_term(b, tmp->data, tmp->len);
    buf_appendf(b, " (id %s", it->id);
    if (rp->max_loop > 0)
        buf_appendf(b, ", loop %u", it->loop + 1);
    buf_append_str(b, "):\n");
    const rp_mismatch *mm = it->mm;
    if (!mm)
        return;
    for (size_t i = 0; i < mm->ndiffs; i++) {
        buf_reset(tmp);
        diff_format(&mm->diffs[i], tmp);
        buf_append_str(b, "    ");
        append_term(b, tmp->data, tmp->len);
        buf_append_char(b, '\n');
    }
    buf_reset(tmp);
    append_more_diffs(mm, tmp);
    if (tmp->len) {
        buf_append_str(b, "    ");
        buf_append(b, tmp->data, tmp->len);
        buf_append_char(b, '\n');
    }
    if (mm->text_diff)
        append_term_lines(b, "      ", mm->text_diff);
}

/* "place: recorded -> replayed", one line per substitution of it. */
static void append_item_subs(const rp_item *it, const char *indent, buf *b, buf *tmp)
{
    for (size_t i = 0; i < it->subs.n; i++) {
        const corr_sub *s = &it->subs.v[i];
        buf_reset(tmp);
        buf_appendf(tmp, "%s: %s -> %s", s->place, s->from, s->to);
        buf_append_str(b, indent);
        append_term(b, tmp->data, tmp->len);
        buf_append_char(b, '\n');
    }
}

/* The substitutions of the first max_listed requests that had some. */
static void append_subs(const report *rp, buf *b, buf *tmp, size_t max_listed)
{
    const rp_item **v = sorted_items(rp);
    size_t listed = 0;
    for (size_t i = 0; i < rp->n && listed < max_listed; i++) {
        if (!v[i]->subs.n)
            continue;
        buf_reset(tmp);
        append_target(rp, v[i], tmp);
        buf_append_str(b, "SUBSTITUTED ");
        append_term(b, tmp->data, tmp->len);
        buf_appendf(b, " (id %s", v[i]->id);
        if (rp->max_loop > 0)
            buf_appendf(b, ", loop %u", v[i]->loop + 1);
        buf_append_str(b, "):\n");
        append_item_subs(v[i], "    ", b, tmp);
        listed++;
    }
    free(v);
    if (rp->sub_requests > listed)
        buf_appendf(b, "... and %zu more (see --report json)\n", rp->sub_requests - listed);
}

void report_summary(const report *rp, FILE *f, size_t max_listed)
{
    buf b = BUF_INIT, tmp = BUF_INIT;
    const size_t *c = rp->counts;
    buf_appendf(&b, "%zu request%s: %zu matched, %zu mismatched, %zu error%s, %zu not replayable",
                rp->n, plural(rp->n), c[OUTCOME_MATCH], c[OUTCOME_MISMATCH], c[OUTCOME_ERROR],
                plural(c[OUTCOME_ERROR]), c[OUTCOME_UNREPLAYABLE]);
    /* Sent without comparing: because nothing was recorded to compare
     * with, or because --no-compare said so. */
    size_t unrecorded = c[OUTCOME_SENT] - rp->sent_recorded;
    if (unrecorded)
        buf_appendf(&b, ", %zu sent without recorded response", unrecorded);
    if (rp->sent_recorded)
        buf_appendf(&b, ", %zu sent, not compared", rp->sent_recorded);
    if (c[OUTCOME_PARTIAL])
        buf_appendf(&b, ", %zu partly compared", c[OUTCOME_PARTIAL]);
    if (rp->elapsed_s > 0) {
        /* The rate is of answers: errors (a refused connection answers
         * nothing, at any speed) and unreplayable cases are no load done. */
        size_t answered =
            c[OUTCOME_MATCH] + c[OUTCOME_MISMATCH] + c[OUTCOME_SENT] + c[OUTCOME_PARTIAL];
        double rate = (double)answered / rp->elapsed_s;
        buf_appendf(&b, " in %.2f s", rp->elapsed_s);
        if (answered)
            buf_appendf(&b, " (%.*f requests/s)", rate < 10 ? 1 : 0, rate);
    }
    buf_append_char(&b, '\n');
    /* Apart from the differences: a match over hidden values is a match on
     * the rest only, and the reader should know how much was hidden. */
    if (rp->redacted_fields)
        buf_appendf(&b,
                    "redacted: %zu field%s not compared (redacted at capture), in %zu request%s\n",
                    rp->redacted_fields, plural(rp->redacted_fields), rp->redacted_requests,
                    plural(rp->redacted_requests));

    if (rp->nsubs) {
        buf_appendf(&b, "correlated: %zu value%s substituted in %zu request%s\n", rp->nsubs,
                    plural(rp->nsubs), rp->sub_requests, plural(rp->sub_requests));
        append_subs(rp, &b, &tmp, max_listed);
    }
    if (c[OUTCOME_MISMATCH]) {
        const rp_item **v = sorted_items(rp);
        size_t listed = 0;
        for (size_t i = 0; i < rp->n && listed < max_listed; i++) {
            if (v[i]->kind != OUTCOME_MISMATCH)
                continue;
            append_mismatch(rp, v[i], &b, &tmp);
            listed++;
        }
        free(v);
        if (c[OUTCOME_MISMATCH] > listed)
            buf_appendf(&b, "... and %zu more (see --report json)\n", c[OUTCOME_MISMATCH] - listed);
    }
    append_groups(rp, OUTCOME_ERROR, "ERROR", "unknown error", &b);
    append_groups(rp, OUTCOME_UNREPLAYABLE, "NOT REPLAYABLE", "unknown reason", &b);
    append_groups(rp, OUTCOME_PARTIAL, "PARTLY COMPARED", "body not compared", &b);

    fwrite(b.data, 1, b.len, f);
    fflush(f);
    buf_free(&tmp);
    buf_free(&b);
}

/* ---- file output ------------------------------------------------------- */

static FILE *open_out(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    if (!f)
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    return f;
}

/* Closes f; on any write error removes the partial file, so that a CI step
 * never reads half a report as if it were whole. */
static int close_out(FILE *f, const char *path, char *err, size_t errlen)
{
    int bad = ferror(f);
    int e = bad ? EIO : 0;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (!bad)
        return 0;
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(e));
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) /* never a device or a pipe */
        unlink(path);
    return -1;
}

static void flush_to(buf *b, FILE *f)
{
    if (b->len)
        fwrite(b->data, 1, b->len, f);
    buf_reset(b);
}

/* ---- JSON -------------------------------------------------------------- */

static const char *const outcome_names[] = {"match",        "mismatch", "error",
                                            "unreplayable", "sent",     "partial"};
static const char *const diff_kind_names[] = {"status", "header", "json", "body", "text"};

static void json_str(buf *b, const char *s)
{
    if (s)
        buf_append_json_str(b, s, strlen(s));
    else
        buf_append_str(b, "null");
}

static void json_counts(const report *rp, buf *b)
{
    const size_t *c = rp->counts;
    buf_appendf(b,
                "{\"requests\":%zu,\"matched\":%zu,\"mismatched\":%zu,\"errors\":%zu,"
                "\"unreplayable\":%zu,\"sent\":%zu,\"partial\":%zu,\"redacted_fields\":%zu,"
                "\"substitutions\":%zu}",
                rp->n, c[OUTCOME_MATCH], c[OUTCOME_MISMATCH], c[OUTCOME_ERROR],
                c[OUTCOME_UNREPLAYABLE], c[OUTCOME_SENT], c[OUTCOME_PARTIAL], rp->redacted_fields,
                rp->nsubs);
}

/* One result object. Members that would be null are left out (a match is
 * most of a report and jq reads a missing member as null), except inside
 * diffs, where "expected": null means "absent" and must stay visible. Diff
 * values are always JSON strings, even JSON text: an embedded null could
 * not be told apart from an absent member. */
static void json_item(const report *rp, const rp_item *it, buf *b)
{
    buf_append_str(b, "{\"id\":");
    json_str(b, it->id);
    buf_append_str(b, ",\"method\":");
    json_str(b, str_get(rp, it->method));
    buf_append_str(b, ",\"path\":");
    json_str(b, str_get(rp, it->path));
    if (it->query != NOSTR) {
        buf_append_str(b, ",\"query\":");
        json_str(b, str_get(rp, it->query));
    }
    buf_appendf(b, ",\"loop\":%u,\"outcome\":\"%s\"", it->loop + 1, outcome_names[it->kind]);
    if (it->status_expected > 0)
        buf_appendf(b, ",\"status_expected\":%d", it->status_expected);
    if (it->status_actual > 0)
        buf_appendf(b, ",\"status_actual\":%d", it->status_actual);
    if (it->latency_us >= 0)
        buf_appendf(b, ",\"latency_us\":%lld", (long long)it->latency_us);
    if (it->redacted)
        buf_appendf(b, ",\"redacted_fields\":%zu", it->redacted);
    if (it->detail != NOSTR) {
        buf_append_str(b, ",\"detail\":");
        json_str(b, str_get(rp, it->detail));
    }
    const rp_mismatch *mm = it->mm;
    if (mm && mm->ndiffs) {
        buf_append_str(b, ",\"diffs\":[");
        for (size_t i = 0; i < mm->ndiffs; i++) {
            const diff *d = &mm->diffs[i];
            buf_append_str(b, i ? ",{\"path\":" : "{\"path\":");
            json_str(b, d->path);
            buf_append_str(b, ",\"expected\":");
            json_str(b, d->expected);
            buf_append_str(b, ",\"actual\":");
            json_str(b, d->actual);
            buf_appendf(b, ",\"kind\":\"%s\"}",
                        (unsigned)d->kind <= DIFF_TEXT ? diff_kind_names[d->kind] : "body");
        }
        buf_append_char(b, ']');
    }
    if (mm && mm->ndiffs_total > mm->ndiffs)
        buf_appendf(b, ",\"diffs_total\":%zu", mm->ndiffs_total);
    if (mm && mm->text_diff) {
        buf_append_str(b, ",\"text_diff\":");
        json_str(b, mm->text_diff);
    }
    for (size_t i = 0; i < it->subs.n; i++) {
        const corr_sub *s = &it->subs.v[i];
        buf_append_str(b, i ? ",{\"place\":" : ",\"substitutions\":[{\"place\":");
        json_str(b, s->place);
        buf_append_str(b, ",\"recorded\":");
        json_str(b, s->from);
        buf_append_str(b, ",\"replayed\":");
        json_str(b, s->to);
        buf_append_str(b, i + 1 < it->subs.n ? "}" : "}]");
    }
    buf_append_char(b, '}');
}

/* The report as JSON into b, flushed to f (when not NULL) as it grows. */
static void json_report(const report *rp, buf *b, FILE *f)
{
    buf_append_str(b, "{\"target\":");
    json_str(b, rp->target);
    buf_appendf(b, ",\"elapsed_s\":%.6f,\"counts\":", rp->elapsed_s);
    json_counts(rp, b);
    buf_append_str(b, ",\"results\":[");
    /* One result per line: a line-based diff of two reports then shows
     * exactly the requests whose outcome changed. */
    const rp_item **v = sorted_items(rp);
    for (size_t i = 0; i < rp->n; i++) {
        buf_append_str(b, i ? ",\n" : "\n");
        json_item(rp, v[i], b);
        if (f && b->len >= 1 << 16)
            flush_to(b, f);
    }
    free(v);
    buf_append_str(b, "\n]}\n");
}

int report_write_json(const report *rp, const char *path, char *err, size_t errlen)
{
    FILE *f = open_out(path, err, errlen);
    if (!f)
        return -1;
    buf b = BUF_INIT;
    json_report(rp, &b, f);
    flush_to(&b, f);
    buf_free(&b);
    return close_out(f, path, err, errlen);
}

void report_json(const report *rp, buf *out)
{
    json_report(rp, out, NULL);
}

outcome_kind report_answer(report *rp, const compare_opts *co, bool compare, const replay_answer *a)
{
    const record *c = a->sent;
    if (a->error) {
        report_add(rp, OUTCOME_ERROR, c, a->loop, NULL, a->error, -1);
        report_add_subs(rp, a->subs, a->nsubs);
        return OUTCOME_ERROR;
    }
    int64_t lat = a->got->upstream_us;
    if (!compare || c->status == 0) {
        report_add(rp, OUTCOME_SENT, c, a->loop, NULL,
                   c->status ? "not compared (--no-compare)" : "no recorded response", lat);
        report_add_subs(rp, a->subs, a->nsubs);
        return OUTCOME_SENT;
    }
    compare_result res;
    compare_responses(co, c, a->got, &res);
    outcome_kind k = res.match && res.partial ? OUTCOME_PARTIAL
                     : res.match              ? OUTCOME_MATCH
                                              : OUTCOME_MISMATCH;
    report_add(rp, k, c, a->loop, &res, k == OUTCOME_PARTIAL ? res.partial : NULL, lat);
    report_add_subs(rp, a->subs, a->nsubs);
    compare_result_free(&res);
    return k;
}

/* ---- JUnit XML --------------------------------------------------------- */

/* Appends s[0..n) as XML 1.0 text. Markup characters become entities, and
 * what XML 1.0 cannot hold at all (control characters other than tab, LF
 * and CR; bytes that are not UTF-8; U+FFFE and U+FFFF) becomes U+FFFD: one
 * odd byte in a server's answer must not make a CI system reject the whole
 * file. In attributes tab, LF and CR are character references, which
 * attribute-value normalization would otherwise turn into spaces. */
static void xml_append(buf *b, const char *s, size_t n, bool attr)
{
    static const char fffd[] = "\xEF\xBF\xBD";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0;
    while (i < n) {
        unsigned char c = p[i];
        const char *rep = NULL;
        size_t l = 1;
        if (c >= 0x80) {
            l = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            if (l > n - i || !utf8_valid(s + i, l)) {
                rep = fffd;
                l = 1;
            } else if (l == 3 && c == 0xEF && p[i + 1] == 0xBF && p[i + 2] >= 0xBE) {
                rep = fffd; /* U+FFFE, U+FFFF: not XML characters */
            }
        } else if (c == '&') {
            rep = "&amp;";
        } else if (c == '<') {
            rep = "&lt;";
        } else if (c == '>') {
            rep = "&gt;";
        } else if (c == '"') {
            rep = "&quot;";
        } else if (c == '\'') {
            rep = "&apos;";
        } else if (c == '\t' || c == '\n' || c == '\r') {
            if (attr || c == '\r') /* a raw CR would be read back as LF */
                rep = c == '\t' ? "&#9;" : c == '\n' ? "&#10;" : "&#13;";
        } else if (c < 0x20) {
            rep = fffd;
        }
        if (!rep) {
            i += l;
            run += l;
            continue;
        }
        buf_append(b, s + i - run, run);
        run = 0;
        buf_append_str(b, rep);
        i += l;
    }
    buf_append(b, s + n - run, run);
}

static void xml_str(buf *b, const char *s, bool attr)
{
    xml_append(b, s, strlen(s), attr);
}

static void junit_counts(const report *rp, buf *b)
{
    const size_t *c = rp->counts;
    buf_appendf(b, " tests=\"%zu\" failures=\"%zu\" errors=\"%zu\" skipped=\"%zu\" time=\"%.3f\"",
                rp->n, c[OUTCOME_MISMATCH], c[OUTCOME_ERROR], c[OUTCOME_UNREPLAYABLE],
                rp->elapsed_s);
}

/* The test case's output: "partly compared: ..." and the substitutions
 * made in its request (one per line); nothing when it has neither. */
static void junit_output(const rp_item *it, const char *partial, buf *b, buf *tmp)
{
    if (!partial && !it->subs.n)
        return;
    buf_reset(tmp);
    if (partial)
        buf_appendf(tmp, "partly compared: %s%s", partial, it->subs.n ? "\n" : "");
    for (size_t i = 0; i < it->subs.n; i++) {
        const corr_sub *s = &it->subs.v[i];
        buf_appendf(tmp, "substituted %s: %s -> %s%s", s->place, s->from, s->to,
                    i + 1 < it->subs.n ? "\n" : "");
    }
    buf_append_str(b, "<system-out>");
    xml_append(b, tmp->data, tmp->len, false);
    buf_append_str(b, "</system-out>\n");
}

static void junit_item(const report *rp, const rp_item *it, buf *b, buf *tmp)
{
    buf_reset(tmp);
    append_target(rp, it, tmp);
    buf_appendf(tmp, " #%s", it->id);
    if (rp->max_loop > 0)
        buf_appendf(tmp, " (loop %u)", it->loop + 1);
    buf_append_str(b, "<testcase classname=\"restspy.replay\" name=\"");
    xml_append(b, tmp->data, tmp->len, true);
    buf_appendf(b, "\" time=\"%.6f\"", it->latency_us > 0 ? (double)it->latency_us / 1e6 : 0.0);
    const char *detail = str_get(rp, it->detail);
    const char *partial = NULL;
    switch (it->kind) {
    case OUTCOME_MISMATCH: {
        const rp_mismatch *mm = it->mm;
        size_t total = mm ? mm->ndiffs_total : 0;
        buf_appendf(b, ">\n<failure message=\"%zu difference%s\" type=\"mismatch\">", total,
                    plural(total));
        buf_reset(tmp);
        for (size_t i = 0; mm && i < mm->ndiffs; i++) {
            diff_format(&mm->diffs[i], tmp);
            buf_append_char(tmp, '\n');
        }
        if (mm) {
            append_more_diffs(mm, tmp);
            if (mm->ndiffs_total > mm->ndiffs)
                buf_append_char(tmp, '\n');
            if (mm->text_diff)
                buf_append_str(tmp, mm->text_diff);
        }
        xml_append(b, tmp->data, tmp->len, false);
        buf_append_str(b, "</failure>\n");
        break;
    }
    case OUTCOME_ERROR:
        buf_append_str(b, ">\n<error message=\"");
        xml_str(b, detail && *detail ? detail : "unknown error", true);
        buf_append_str(b, "\" type=\"error\"/>\n");
        break;
    case OUTCOME_UNREPLAYABLE:
        buf_append_str(b, ">\n<skipped message=\"");
        xml_str(b, detail && *detail ? detail : "not replayable", true);
        buf_append_str(b, "\"/>\n");
        break;
    case OUTCOME_PARTIAL:
        /* It passed as far as it could be compared: JUnit has no outcome
         * for that, so a passing test case says it on its output. */
        partial = detail && *detail ? detail : "body not compared";
        buf_append_str(b, ">\n");
        break;
    default:
        if (!it->subs.n) {
            buf_append_str(b, "/>\n");
            return;
        }
        buf_append_str(b, ">\n");
        break;
    }
    junit_output(it, partial, b, tmp);
    buf_append_str(b, "</testcase>\n");
}

int report_write_junit(const report *rp, const char *path, char *err, size_t errlen)
{
    FILE *f = open_out(path, err, errlen);
    if (!f)
        return -1;
    buf b = BUF_INIT, tmp = BUF_INIT;
    buf_append_str(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"restspy "
                       "replay\"");
    junit_counts(rp, &b);
    buf_append_str(&b, ">\n<testsuite name=\"restspy replay");
    if (rp->target) {
        buf_append_char(&b, ' ');
        xml_str(&b, rp->target, true);
    }
    buf_append_char(&b, '"');
    junit_counts(rp, &b);
    buf_append_str(&b, ">\n");
    const rp_item **v = sorted_items(rp);
    for (size_t i = 0; i < rp->n; i++) {
        junit_item(rp, v[i], &b, &tmp);
        if (b.len >= 1 << 16)
            flush_to(&b, f);
    }
    free(v);
    buf_append_str(&b, "</testsuite>\n</testsuites>\n");
    flush_to(&b, f);
    buf_free(&tmp);
    buf_free(&b);
    return close_out(f, path, err, errlen);
}
