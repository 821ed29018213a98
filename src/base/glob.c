/* glob: the path glob matcher (see glob.h), moved from rules.c unchanged. */
#include "base/glob.h"

#include <stdint.h>
#include <string.h>

/* The glob is run as an NFA whose states are positions in the glob (state i:
 * glob[0..i) has matched). Simulating every state at once instead of
 * backtracking keeps the cost linear in the path for a given glob, so a long
 * crafted path cannot turn a "**a**a**b" rule into a CPU sink. The state sets
 * live on the stack, which is why the glob length is bounded. */
#define GLOB_WORDS ((GLOB_MAX + 1 + 63) / 64)

typedef struct {
    uint64_t w[GLOB_WORDS];
} stateset;

static void set_add(stateset *s, size_t i)
{
    s->w[i / 64] |= (uint64_t)1 << (i % 64);
}

static bool set_has(const stateset *s, size_t i)
{
    return (s->w[i / 64] >> (i % 64)) & 1;
}

static bool is_double_star(const char *g, size_t i)
{
    return g[i] == '*' && g[i + 1] == '*';
}

/* Adds the states reachable without consuming a character. Every such move
 * goes forward, so one ascending pass reaches the fixed point. */
static void closure(const char *g, size_t m, stateset *s)
{
    for (size_t i = 0; i < m; i++) {
        if (!set_has(s, i))
            continue;
        if (is_double_star(g, i))
            set_add(s, i + 2);
        else if (g[i] == '*')
            set_add(s, i + 1);
        else if (g[i] == '/' && is_double_star(g, i + 1) && (g[i + 3] == '\0' || g[i + 3] == '/'))
            /* A slash followed by a globstar may stand for no segment at
             * all, so a rule for everything under /api also takes "/api". */
            set_add(s, i + 3);
    }
}

bool glob_match(const char *glob, const char *path, size_t n)
{
    size_t m = strlen(glob);
    if (m > GLOB_MAX)
        return false;
    size_t nw = (m + 1 + 63) / 64;
    stateset cur, next;
    memset(&cur, 0, sizeof cur);
    set_add(&cur, 0);
    closure(glob, m, &cur);
    for (size_t p = 0; p < n; p++) {
        char c = path[p];
        bool any = false;
        memset(&next, 0, sizeof next);
        for (size_t i = 0; i < m; i++) {
            if (!set_has(&cur, i))
                continue;
            if (is_double_star(glob, i)) {
                set_add(&next, i);
            } else if (glob[i] == '*') {
                if (c != '/')
                    set_add(&next, i);
            } else if (glob[i] == c) {
                set_add(&next, i + 1);
            } else {
                continue;
            }
            any = true;
        }
        if (!any)
            return false;
        closure(glob, m, &next);
        memcpy(cur.w, next.w, nw * sizeof cur.w[0]);
    }
    return set_has(&cur, m);
}
