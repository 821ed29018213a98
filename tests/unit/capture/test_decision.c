/* capture_decide: the whole table of rule x runtime switches x request. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "capture/decision.h"

/* A config of two rules, the second the default (rules_default: the last). */
static rule g_rules[2];
static config g_cfg;

static int setup(void **state)
{
    (void)state;
    memset(g_rules, 0, sizeof g_rules);
    g_rules[0] =
        (rule){.name = "api",
               .methods = RULE_METHOD_ANY,
               .log = true,
               .persist = true,
               .replicate = true,
               .replicate_methods = RULE_M_POST | RULE_M_PUT | RULE_M_PATCH | RULE_M_DELETE};
    g_rules[1] =
        (rule){.name = "default", .methods = RULE_METHOD_ANY, .log = true, .persist = false};
    memset(&g_cfg, 0, sizeof g_cfg);
    g_cfg.rules = g_rules;
    g_cfg.rules_len = 2;
    return 0;
}

/* Everything on: a POST to the api rule, logged without bodies; the rule's
 * switches are what it has now (its config, as switched at run time). */
static capture_input all_on(const char *method)
{
    return (capture_input){.rule = &g_rules[0],
                           .method = method,
                           .method_len = strlen(method),
                           .flag_log = true,
                           .flag_persist = true,
                           .flag_replicate = true,
                           .rule_switches = rules_switches(&g_rules[0]),
                           .have_store = true,
                           .have_amqp = true};
}

static void test_everything_on(void **state)
{
    (void)state;
    capture_input in = all_on("POST");
    capture_decision d = capture_decide(&g_cfg, &in);
    assert_ptr_equal(d.rule, &g_rules[0]);
    assert_true(d.log);
    assert_true(d.persist);
    assert_true(d.replicate);
    assert_true(d.outbox);
    assert_true(d.bodies);
}

/* Each runtime switch turns off its own output and only that (bodies follow
 * persist, the outbox follows replicate). */
static void test_each_switch(void **state)
{
    (void)state;
    capture_input in = all_on("PUT");
    in.flag_log = false;
    capture_decision d = capture_decide(&g_cfg, &in);
    assert_false(d.log);
    assert_true(d.persist && d.replicate && d.outbox && d.bodies);

    in = all_on("PUT");
    in.flag_persist = false;
    d = capture_decide(&g_cfg, &in);
    assert_false(d.persist);
    assert_false(d.bodies); /* logged without log_bodies: no body kept */
    assert_true(d.log && d.replicate && d.outbox);

    in = all_on("PUT");
    in.have_store = false;
    d = capture_decide(&g_cfg, &in);
    assert_false(d.persist);
    assert_true(d.log && d.replicate && d.outbox);

    in = all_on("PUT");
    in.flag_replicate = false;
    d = capture_decide(&g_cfg, &in);
    assert_false(d.replicate);
    assert_false(d.outbox);
    assert_true(d.log && d.persist && d.bodies);

    /* No broker: the rule and the flag still want it (the record says so),
     * but no outbox message is built. */
    in = all_on("PUT");
    in.have_amqp = false;
    d = capture_decide(&g_cfg, &in);
    assert_true(d.replicate);
    assert_false(d.outbox);
}

/* The rule's own switches, with every global flag on. */
static void test_rule_switches(void **state)
{
    (void)state;
    capture_input in = all_on("DELETE");
    in.rule_switches = RULE_SW_PERSIST | RULE_SW_REPLICATE;
    capture_decision d = capture_decide(&g_cfg, &in);
    assert_false(d.log);
    assert_true(d.persist && d.bodies && d.outbox);

    in.rule_switches = RULE_SW_REPLICATE;
    d = capture_decide(&g_cfg, &in);
    assert_false(d.log || d.persist || d.bodies);
    assert_true(d.replicate && d.outbox); /* replicated, not captured */

    in.rule_switches = 0;
    d = capture_decide(&g_cfg, &in);
    assert_false(d.log || d.persist || d.bodies || d.replicate || d.outbox);
    assert_ptr_equal(d.rule, &g_rules[0]);
}

/* The whole table: each output is on exactly when its global flag and the
 * rule's switch are both on, whatever the other switches are. */
static void test_global_and_rule_table(void **state)
{
    (void)state;
    for (unsigned rule_sw = 0; rule_sw <= RULE_SW_ALL; rule_sw++) {
        for (unsigned global = 0; global <= RULE_SW_ALL; global++) {
            capture_input in = all_on("POST");
            in.rule_switches = rule_sw;
            in.flag_log = global & RULE_SW_LOG;
            in.flag_persist = global & RULE_SW_PERSIST;
            in.flag_replicate = global & RULE_SW_REPLICATE;
            capture_decision d = capture_decide(&g_cfg, &in);
            unsigned on = rule_sw & global;
            assert_int_equal(d.log, (on & RULE_SW_LOG) != 0);
            assert_int_equal(d.persist, (on & RULE_SW_PERSIST) != 0);
            assert_int_equal(d.replicate, (on & RULE_SW_REPLICATE) != 0);
            assert_int_equal(d.outbox, d.replicate);
            assert_int_equal(d.bodies, d.persist);
        }
    }
}

/* A rule switched at run time decides by its switches, not its config:
 * the api rule (configured all on) with persist switched off, and the
 * default rule (persist off in its config) with persist switched on. */
static void test_switched_at_run_time(void **state)
{
    (void)state;
    rules_set_switches(&g_rules[0], RULE_SW_LOG | RULE_SW_REPLICATE);
    capture_input in = all_on("POST");
    capture_decision d = capture_decide(&g_cfg, &in);
    assert_true(d.log && d.replicate && d.outbox);
    assert_false(d.persist || d.bodies);
    assert_true(g_rules[0].persist); /* the config is as it was */

    rules_set_switches(&g_rules[1], RULE_SW_LOG | RULE_SW_PERSIST);
    in.rule = NULL; /* refused before its headers: the default rule decides */
    in.rule_switches = rules_switches(&g_rules[1]);
    d = capture_decide(&g_cfg, &in);
    assert_ptr_equal(d.rule, &g_rules[1]);
    assert_true(d.log && d.persist);
    assert_false(g_rules[1].persist);
}

/* Bodies are kept when persisted, or when logged with log_bodies. */
static void test_bodies(void **state)
{
    (void)state;
    g_rules[0].persist = false;
    capture_input in = all_on("GET");
    capture_decision d = capture_decide(&g_cfg, &in);
    assert_true(d.log);
    assert_false(d.bodies);
    in.log_bodies = true;
    d = capture_decide(&g_cfg, &in);
    assert_true(d.bodies);
    in.flag_log = false;
    d = capture_decide(&g_cfg, &in);
    assert_false(d.bodies);
}

/* Only the rule's replicate_methods get an outbox message; unknown methods
 * are RULE_M_OTHER, the method's length is honoured. */
static void test_methods(void **state)
{
    (void)state;
    static const char *const yes[] = {"POST", "PUT", "PATCH", "DELETE"};
    static const char *const no[] = {"GET", "HEAD", "OPTIONS", "PROPFIND", "post"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        capture_input in = all_on(yes[i]);
        assert_true(capture_decide(&g_cfg, &in).outbox);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        capture_input in = all_on(no[i]);
        capture_decision d = capture_decide(&g_cfg, &in);
        assert_false(d.outbox);
        assert_true(d.replicate); /* the rule and the flag: the method is the outbox's test */
        assert_true(d.log && d.persist);
    }
    capture_input in = all_on("POSTX");
    in.method_len = 4; /* "POST" */
    assert_true(capture_decide(&g_cfg, &in).outbox);
    g_rules[0].replicate_methods = RULE_M_OTHER;
    in = all_on("PROPFIND");
    assert_true(capture_decide(&g_cfg, &in).outbox);
}

/* A write a replicator applied, or an upgrade, never leaves an outbox
 * message; it is captured all the same. */
static void test_from_peer_and_upgrade(void **state)
{
    (void)state;
    capture_input in = all_on("POST");
    in.from_peer = true;
    capture_decision d = capture_decide(&g_cfg, &in);
    assert_false(d.outbox);
    assert_true(d.replicate && d.log && d.persist);
    in = all_on("POST");
    in.upgrade = true;
    d = capture_decide(&g_cfg, &in);
    assert_false(d.outbox);
    assert_true(d.log && d.persist);
}

/* No rule (the request never got through its headers): the default rule
 * decides log and persist; nothing is replicated and no body is kept, even
 * when the default rule replicates. */
static void test_no_rule_uses_default(void **state)
{
    (void)state;
    capture_input in = all_on("POST");
    in.rule = NULL;
    in.method = NULL;
    in.method_len = 0;
    in.log_bodies = true;
    in.rule_switches = rules_switches(&g_rules[1]);
    capture_decision d = capture_decide(&g_cfg, &in);
    assert_ptr_equal(d.rule, &g_rules[1]);
    assert_string_equal(d.rule->name, "default");
    assert_true(d.log);
    assert_false(d.persist);
    assert_false(d.replicate || d.outbox || d.bodies);

    g_rules[1].persist = true;
    g_rules[1].replicate = true;
    g_rules[1].replicate_methods = RULE_METHOD_ANY;
    in.rule_switches = rules_switches(&g_rules[1]);
    d = capture_decide(&g_cfg, &in);
    assert_true(d.log && d.persist);
    assert_false(d.replicate || d.outbox || d.bodies);
    in.flag_log = false;
    in.have_store = false;
    d = capture_decide(&g_cfg, &in);
    assert_false(d.log || d.persist);
}

/* A config without rules (config_new never makes one) still decides, by the
 * built-in default rule: rules_default never returns NULL. */
static void test_no_rules_at_all(void **state)
{
    (void)state;
    g_cfg.rules_len = 0;
    capture_input in = all_on("GET");
    in.rule = NULL;
    in.rule_switches = rules_switches(rules_default(g_cfg.rules, 0));
    capture_decision d = capture_decide(&g_cfg, &in);
    assert_non_null(d.rule);
    assert_string_equal(d.rule->name, "default");
    assert_true(d.log && d.persist);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_everything_on, setup),
        cmocka_unit_test_setup(test_each_switch, setup),
        cmocka_unit_test_setup(test_rule_switches, setup),
        cmocka_unit_test_setup(test_global_and_rule_table, setup),
        cmocka_unit_test_setup(test_switched_at_run_time, setup),
        cmocka_unit_test_setup(test_bodies, setup),
        cmocka_unit_test_setup(test_methods, setup),
        cmocka_unit_test_setup(test_from_peer_and_upgrade, setup),
        cmocka_unit_test_setup(test_no_rule_uses_default, setup),
        cmocka_unit_test_setup(test_no_rules_at_all, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
