/* view: a view name is a rule name (docs/collect-protocol.md, "Views and
 * flags"). A view with a [rule] section is that rule; one without gets a
 * rule on first sight, whose configured switches are the decorator's flags
 * of the latest pair, so a redeploy that changes them takes effect, while
 * what an operator switched at run time (PUT /flags) stays switched. */
#include "collect/collect_internal.h"

#include <assert.h>
#include <stdio.h>

#include "capture/rules.h"

/* The RULE_SW_* bits of a pair's flags. */
static unsigned pair_switches(const frame_pair *p)
{
    return (p->log ? RULE_SW_LOG : 0u) | (p->persist ? RULE_SW_PERSIST : 0u) |
           (p->replicate ? RULE_SW_REPLICATE : 0u);
}

/* "log on, persist off, replicate on" */
static void say_new_view(const char *name, unsigned sw, bool from_pair)
{
    fprintf(stderr, "restspy collect: view %s: new rule (log %s, persist %s, replicate %s%s)\n",
            name, sw & RULE_SW_LOG ? "on" : "off", sw & RULE_SW_PERSIST ? "on" : "off",
            sw & RULE_SW_REPLICATE ? "on" : "off", from_pair ? "" : "; the default rule's");
}

const rule *collect_view(collect *d, const frame_pair *p, const char **why)
{
    config *cfg = d->cfg;
    rule *r = rules_find(cfg->rules, cfg->rules_len, p->view);
    if (!r) {
        if (d->nviews >= COLLECT_VIEWS_MAX) {
            *why = "view: too many views (at most 1000 without a [rule] section)";
            return NULL;
        }
        unsigned sw = p->has_flags ? pair_switches(p)
                                   : rules_configured(rules_default(cfg->rules, cfg->rules_len));
        say_new_view(p->view, sw, p->has_flags);
        d->nviews++;
        return config_add_rule(cfg, p->view, sw);
    }
    size_t i = (size_t)(r - cfg->rules);
    assert(i < cfg->rules_len);
    bool on_sight = i >= d->nfile && i + 1 < cfg->rules_len;
    if (on_sight && p->has_flags && rules_configured(r) != pair_switches(p))
        rules_set_configured(r, pair_switches(p));
    return r;
}
