/* linediff (inside replay/): the edit script between two sequences of lines
 * or words, and the unified diff of two texts, for compare.c.
 *
 * Promises: the script is minimal (Myers' O(ND) algorithm, linear space)
 * unless a pair of inputs would cost more than a fixed bound of comparisons;
 * then the blocks still unsolved are shown as wholly replaced (still a
 * correct script) and the caller is told. Within a changed block, removed
 * lines come before added ones. Nothing here copies the texts: lines point
 * into them. */
#ifndef RESTSPY_LINEDIFF_H
#define RESTSPY_LINEDIFF_H

#include <stdbool.h>
#include <stddef.h>

/* A line (or a word, or a run of delimiters: compare's tokens) of a text
 * owned by the caller. */
typedef struct linediff_line {
    const char *p;
    size_t len;
    bool nl; /* ends with '\n' (a token: is a run of delimiters) */
} linediff_line;

typedef struct linediff_op {
    char kind;     /* ' ', '-', '+' */
    size_t ei, ai; /* line index in expected / actual (next one for '+'/'-') */
} linediff_op;

/* An edit script; v is owned (free(v)). */
typedef struct linediff_ops {
    linediff_op *v;
    size_t len, cap;
} linediff_ops;

/* Same bytes and same nl. */
bool linediff_eq(const linediff_line *a, const linediff_line *b);

/* How many lines (or tokens) e and a share at their start (*pre) and,
 * after those, at their end (*suf). */
void linediff_common_ends(const linediff_line *e, size_t ne, const linediff_line *a, size_t na,
                          size_t *pre, size_t *suf);

/* Appends the edit script of e[0..ne) against a[0..na) to o (indexes offset
 * by e0, a0). True when minimal; false when the work bound made some block
 * wholly replaced instead. */
bool linediff_script(const linediff_line *e, size_t ne, const linediff_line *a, size_t na,
                     size_t e0, size_t a0, linediff_ops *o);

/* A short unified diff ("--- expected", "+++ actual", hunks with two lines
 * of context, at most 40 lines, long lines cut) of two texts; it says so
 * when the script is not minimal. Owned by the caller. */
char *linediff_unified(const char *es, size_t el, const char *as, size_t al);

#endif
