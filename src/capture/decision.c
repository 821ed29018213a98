#include "capture/decision.h"

#include <assert.h>

#include "capture/rules.h"

capture_decision capture_decide(const config *cfg, const capture_input *in)
{
    capture_decision d = {0};
    d.rule = in->rule ? in->rule : rules_default(cfg->rules, cfg->rules_len);
    assert(d.rule);
    d.log = (in->rule_switches & RULE_SW_LOG) && in->flag_log;
    d.persist = (in->rule_switches & RULE_SW_PERSIST) && in->flag_persist && in->have_store;
    if (!in->rule)
        return d; /* never got through its headers: nothing to replicate, no body */
    d.replicate = (in->rule_switches & RULE_SW_REPLICATE) && in->flag_replicate;
    d.bodies = d.persist || (d.log && in->log_bodies);
    /* A request a replicator applied is never replicated again, even when
     * the replicator was pointed at a proxy. */
    d.outbox = d.replicate && in->have_amqp &&
               (d.rule->replicate_methods & rules_method_bit(in->method, in->method_len)) &&
               !in->from_peer && !in->upgrade;
    return d;
}
