#include "capture/rules.h"

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
