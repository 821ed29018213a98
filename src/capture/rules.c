#include "capture/rules.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "base/glob.h"
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
    if (r->path && !glob_match(r->path, path, plen))
        return false;
    return true;
}

const rule *rules_default(const rule *rules, size_t n)
{
    /* Only reached with a config that lost its default rule, which
     * config_new never produces; it keeps the never-NULL promise anyway. */
    static const rule fallback = {.name = "default",
                                  .methods = RULE_METHOD_ANY,
                                  .log = true,
                                  .persist = true,
                                  .req_body_cap = 64 * 1024,
                                  .resp_body_cap = 64 * 1024};
    return n ? &rules[n - 1] : &fallback;
}

const rule *rules_match(const rule *rules, size_t n, const char *method, size_t mlen,
                        const char *host, const char *path, size_t plen)
{
    const char *q = memchr(path, '?', plen);
    if (q)
        plen = (size_t)(q - path);
    unsigned mbit = rules_method_bit(method, mlen);
    for (size_t i = 0; i < n; i++)
        if (rule_matches(&rules[i], mbit, host, path, plen))
            return &rules[i];
    return rules_default(rules, n);
}

/* The switches by name, in the order the admin API and the notes show them. */
static const struct {
    const char *name;
    unsigned bit;
} switch_names[] = {
    {"log", RULE_SW_LOG},
    {"persist", RULE_SW_PERSIST},
    {"replicate", RULE_SW_REPLICATE},
};

unsigned rules_switch_bit(const char *name, size_t n)
{
    for (size_t i = 0; i < sizeof switch_names / sizeof switch_names[0]; i++)
        if (strlen(switch_names[i].name) == n && memcmp(switch_names[i].name, name, n) == 0)
            return switch_names[i].bit;
    return 0;
}

unsigned rules_configured(const rule *r)
{
    return (r->log ? RULE_SW_LOG : 0u) | (r->persist ? RULE_SW_PERSIST : 0u) |
           (r->replicate ? RULE_SW_REPLICATE : 0u);
}

unsigned rules_switches(const rule *r)
{
    /* Relaxed, as the global flags: a switch needs no ordering with other
     * memory, only to be seen by the requests that follow it. */
    return rules_configured(r) ^ atomic_load_explicit(&r->flipped, memory_order_relaxed);
}

void rules_set_switches(rule *r, unsigned sw)
{
    assert((sw & ~(unsigned)RULE_SW_ALL) == 0);
    atomic_store_explicit(&r->flipped, sw ^ rules_configured(r), memory_order_relaxed);
}

void rules_set_configured(rule *r, unsigned sw)
{
    assert((sw & ~(unsigned)RULE_SW_ALL) == 0);
    unsigned touched = atomic_load_explicit(&r->flipped, memory_order_relaxed);
    unsigned now = rules_switches(r);
    r->log = sw & RULE_SW_LOG;
    r->persist = sw & RULE_SW_PERSIST;
    r->replicate = sw & RULE_SW_REPLICATE;
    rules_set_switches(r, (sw & ~touched) | (now & touched));
}

rule *rules_find(rule *rules, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(rules[i].name, name) == 0)
            return &rules[i];
    return NULL;
}

/* "persist off, log on": the switches of which, as they are in sw. */
static void append_switches(buf *b, unsigned sw, unsigned which)
{
    const char *sep = "";
    for (size_t i = 0; i < sizeof switch_names / sizeof switch_names[0]; i++) {
        if (!(which & switch_names[i].bit))
            continue;
        buf_appendf(b, "%s%s %s", sep, switch_names[i].name,
                    sw & switch_names[i].bit ? "on" : "off");
        sep = ", ";
    }
}

size_t rules_carry_switches(rule *to, size_t nto, const rule *from, size_t nfrom, buf *note)
{
    size_t kept = 0;
    for (size_t i = 0; i < nfrom; i++) {
        unsigned touched = atomic_load_explicit(&from[i].flipped, memory_order_relaxed);
        if (!touched)
            continue;
        buf_appendf(note, "%s%s ", note->len ? "; " : "", from[i].name);
        rule *t = rules_find(to, nto, from[i].name);
        if (!t) {
            buf_append_str(note, "is gone, with its run-time switches");
            continue;
        }
        unsigned now = rules_switches(&from[i]);
        rules_set_switches(t, (rules_switches(t) & ~touched) | (now & touched));
        buf_append_str(note, "keeps ");
        append_switches(note, now, touched);
        kept++;
    }
    return kept;
}
