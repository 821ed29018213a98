#include "capture/rules.h"

#include <stdint.h>
#include <string.h>

#include "base/util.h"

unsigned rules_method_bit(const char *method, size_t n)
{
    /* HTTP methods are case-sensitive (RFC 9110 9.1): "get" is not GET. */
    static const struct {
        const char *name;
        unsigned bit;
    } known[] = {
        {"GET", RULE_M_GET},         {"HEAD", RULE_M_HEAD},   {"POST", RULE_M_POST},
        {"PUT", RULE_M_PUT},         {"PATCH", RULE_M_PATCH}, {"DELETE", RULE_M_DELETE},
        {"OPTIONS", RULE_M_OPTIONS},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strlen(known[i].name) == n && memcmp(known[i].name, method, n) == 0)
            return known[i].bit;
    return RULE_M_OTHER;
}

/* The glob is run as an NFA whose states are positions in the glob (state i:
 * glob[0..i) has matched). Simulating every state at once instead of
 * backtracking keeps the cost linear in the path for a given glob, so a long
 * crafted path cannot turn a "**a**a**b" rule into a CPU sink. The state sets
 * live on the stack, which is why the glob length is bounded. */
#define GLOB_WORDS ((RULES_GLOB_MAX + 1 + 63) / 64)

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

bool rules_glob_match(const char *glob, const char *path, size_t n)
{
    size_t m = strlen(glob);
    if (m > RULES_GLOB_MAX)
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

/* Host header without its ":port" (and IPv6 literals keep their brackets). */
static size_t host_len_without_port(const char *host)
{
    if (host[0] == '[') {
        const char *rb = strchr(host, ']');
        return rb ? (size_t)(rb - host) + 1 : strlen(host);
    }
    const char *colon = strchr(host, ':');
    return colon ? (size_t)(colon - host) : strlen(host);
}

static bool rule_matches(const rule *r, unsigned mbit, const char *host, const char *path,
                         size_t plen)
{
    if (!(r->methods & mbit))
        return false;
    if (r->host) {
        if (!host || !util_ieq(host, host_len_without_port(host), r->host))
            return false;
    }
    if (r->path && !rules_glob_match(r->path, path, plen))
        return false;
    return true;
}

const rule *rules_default(const config *c)
{
    /* Only reached with a config that lost its default rule, which
     * config_new never produces; it keeps the never-NULL promise anyway. */
    static const rule fallback = {.name = "default",
                                  .methods = RULE_METHOD_ANY,
                                  .log = true,
                                  .persist = true,
                                  .req_body_cap = 64 * 1024,
                                  .resp_body_cap = 64 * 1024};
    return c->rules_len ? &c->rules[c->rules_len - 1] : &fallback;
}

const rule *rules_match(const config *c, const char *method, size_t mlen, const char *host,
                        const char *path, size_t plen)
{
    const char *q = memchr(path, '?', plen);
    if (q)
        plen = (size_t)(q - path);
    unsigned mbit = rules_method_bit(method, mlen);
    for (size_t i = 0; i < c->rules_len; i++)
        if (rule_matches(&c->rules[i], mbit, host, path, plen))
            return &c->rules[i];
    return rules_default(c);
}
