/* linediff: line diffs (see linediff.h).
 *
 * Owns the edit script algorithm (Myers, below) and the unified diff text.
 * The lines and tokens it aligns point into the caller's bodies. */
#include "compare/linediff.h"

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "base/buf.h"
#include "base/util.h"

#define TEXT_LINE_MAX 160 /* bytes of a line shown in a unified diff */
#define TEXT_DIFF_LINES 40
#define TEXT_CONTEXT 2
/* Line or word comparisons one edit script may make (linediff_script): a
 * bound on the time a pathological pair of bodies costs. */
#define DIFF_MAX_WORK (1u << 24)

static const char ellipsis[] = "\xe2\x80\xa6"; /* "…" */

static linediff_line *split_lines(const char *s, size_t n, size_t *count)
{
    size_t cap = 16, k = 0;
    linediff_line *v = xmalloc(cap * sizeof *v);
    size_t i = 0;
    while (i < n) {
        const char *nl = memchr(s + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - s) : n;
        if (k == cap) {
            cap *= 2;
            v = xrealloc(v, cap * sizeof *v);
        }
        v[k++] = (linediff_line){s + i, end - i, nl != NULL};
        i = nl ? end + 1 : n;
    }
    *count = k;
    return v;
}

bool linediff_eq(const linediff_line *a, const linediff_line *b)
{
    return a->len == b->len && a->nl == b->nl && memcmp(a->p, b->p, a->len) == 0;
}

static void ops_add(linediff_ops *o, char kind, size_t ei, size_t ai)
{
    if (o->len == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 64;
        o->v = xrealloc(o->v, o->cap * sizeof *o->v);
    }
    o->v[o->len++] = (linediff_op){kind, ei, ai};
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
    const linediff_line *e, *a;
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
    return linediff_eq(&m->e[i], &m->a[j]);
}

/* The middle snake of e[x0..x0+n) against a[y0..y0+k) (both non-empty, no
 * common first or last line): *sx, *sy, relative to x0, y0, is a point on an
 * optimal path. False when they have no line in common, or when the work
 * bound is hit (m->exact is then cleared). */
static bool myers_split(myers *m, ptrdiff_t x0, ptrdiff_t n, ptrdiff_t y0, ptrdiff_t k,
                        ptrdiff_t *sx, ptrdiff_t *sy)
{
    assert(n > 0 && k > 0);
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
    while (x0 < x1 && y0 < y1 && linediff_eq(&m->e[x0], &m->a[y0])) {
        x0++;
        y0++;
    }
    while (x0 < x1 && y0 < y1 && linediff_eq(&m->e[x1 - 1], &m->a[y1 - 1])) {
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
bool linediff_script(const linediff_line *e, size_t ne, const linediff_line *a, size_t na,
                     size_t e0, size_t a0, linediff_ops *o)
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

static void tout_line(tout *t, char kind, const linediff_line *l)
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
void linediff_common_ends(const linediff_line *e, size_t ne, const linediff_line *a, size_t na,
                          size_t *pre, size_t *suf)
{
    size_t p = 0, s = 0;
    while (p < ne && p < na && linediff_eq(&e[p], &a[p]))
        p++;
    while (s < ne - p && s < na - p && linediff_eq(&e[ne - 1 - s], &a[na - 1 - s]))
        s++;
    *pre = p;
    *suf = s;
}

char *linediff_unified(const char *es, size_t el, const char *as, size_t al)
{
    size_t ne, na, pre, suf;
    linediff_line *e = split_lines(es, el, &ne), *a = split_lines(as, al, &na);
    linediff_common_ends(e, ne, a, na, &pre, &suf);

    linediff_ops o = {NULL, 0, 0};
    size_t ctx0 = pre > TEXT_CONTEXT ? pre - TEXT_CONTEXT : 0;
    for (size_t i = ctx0; i < pre; i++)
        ops_add(&o, ' ', i, i);
    bool exact = linediff_script(e + pre, ne - pre - suf, a + pre, na - pre - suf, pre, pre, &o);
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
