/* decision: what restspy does with a request's record (log it, persist it,
 * replicate it, keep its bodies), from its rule and the runtime switches.
 *
 * Owns nothing. capture_decide is a pure function of its inputs (no
 * globals, no allocation, no I/O): the proxy gathers the switches (the
 * admin API's global flags and the deciding rule's run-time switches,
 * whether a store and a broker are configured) and calls it once per
 * request, so the whole table is pinned by a unit test. Each output is on
 * when both its global flag and the rule's switch are on. */
#ifndef RESTSPY_DECISION_H
#define RESTSPY_DECISION_H

#include <stdbool.h>
#include <stddef.h>

#include "capture/config.h"

typedef struct capture_input {
    /* The rule the request matched, or NULL when it never got through its
     * headers (refused or cut before): the default rule decides then. */
    const rule *rule;
    const char *method; /* the request's method (method_len bytes); unused without a rule */
    size_t method_len;
    bool from_peer; /* carries X-Restspy-Replicated-From: a replicator applied it */
    bool upgrade;   /* asks for a protocol upgrade */
    /* runtime switches */
    bool flag_log, flag_persist, flag_replicate; /* the admin API's global flags */
    /* The deciding rule's (rule, or the default rule when rule is NULL)
     * switches now: rules_switches, RULE_SW_* bits. They decide in place
     * of the rule's configured log, persist, replicate. */
    unsigned rule_switches;
    bool have_store; /* a store is configured */
    bool have_amqp;  /* replication is configured (a broker and a store for the outbox) */
    bool log_bodies; /* log lines carry bodies (config log_bodies) */
} capture_input;

typedef struct capture_decision {
    const rule *rule; /* the rule that decided: the matched one or the default; never NULL */
    bool log;         /* write the record to the log sink */
    bool persist;     /* store the record */
    bool replicate;   /* the rule's switch and the flag want it replicated */
    bool outbox;      /* an outbox message is built for it (replicate, broker,
                         method in the rule's replicate_methods, not from a peer,
                         not an upgrade); may still be dropped later (body too
                         big, status not as replicate_on wants) */
    bool bodies;      /* keep request and response bodies (persisted, or logged with bodies) */
} capture_decision;

/* The decision for one request. cfg gives the default rule (its last) when
 * in->rule is NULL; a request without a rule is never replicated and has no
 * body to keep. */
capture_decision capture_decide(const config *cfg, const capture_input *in);

#endif
