#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture/config.h"
#include "capture/rules.h"
#include "base/util.h"

static void test_method_bits(void **state)
{
    (void)state;
    assert_int_equal(rules_method_bit("GET", 3), RULE_M_GET);
    assert_int_equal(rules_method_bit("HEAD", 4), RULE_M_HEAD);
    assert_int_equal(rules_method_bit("POST", 4), RULE_M_POST);
    assert_int_equal(rules_method_bit("PUT", 3), RULE_M_PUT);
    assert_int_equal(rules_method_bit("PATCH", 5), RULE_M_PATCH);
    assert_int_equal(rules_method_bit("DELETE", 6), RULE_M_DELETE);
    assert_int_equal(rules_method_bit("OPTIONS", 7), RULE_M_OPTIONS);
    assert_int_equal(rules_method_bit("TRACE", 5), RULE_M_OTHER);
    assert_int_equal(rules_method_bit("PROPFIND", 8), RULE_M_OTHER);
    /* Methods are case-sensitive, and the length is honoured (no NUL). */
    assert_int_equal(rules_method_bit("get", 3), RULE_M_OTHER);
    assert_int_equal(rules_method_bit("GETX", 3), RULE_M_GET);
    assert_int_equal(rules_method_bit("GE", 2), RULE_M_OTHER);
    assert_int_equal(rules_method_bit("", 0), RULE_M_OTHER);
}

/* A config of the [rule] sections in text, then the default rule. */
static config *from_text(const char *text)
{
    config *c = config_new();
    char path[] = "/tmp/test_rules_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    char err[256] = "";
    int rc = config_load_file(c, path, err, sizeof err);
    unlink(path);
    if (rc != 0)
        fail_msg("%s", err);
    return c;
}

/* A config with rules set up by hand (the file loader is tested in
 * test_config). */
static config *with_rules(void)
{
    config *c = from_text("[rule \"health\"]\n"
                          "path = /health\n"
                          "log = off\n"
                          "[rule \"writes\"]\n"
                          "methods = POST, PUT, DELETE\n"
                          "path = /api/**\n"
                          "replicate = on\n"
                          "[rule \"admin-host\"]\n"
                          "host = Admin.Example.com\n"
                          "persist = off\n"
                          "[rule \"api-all\"]\n"
                          "path = /api/**\n"
                          "replicate = off\n"
                          "req_body_cap = 1K\n"
                          "[rule \"odd\"]\n"
                          "methods = TRACE\n");
    assert_int_equal(c->rules_len, 6);
    return c;
}

static const char *match(const config *c, const char *method, const char *host, const char *path)
{
    const rule *r =
        rules_match(c->rules, c->rules_len, method, strlen(method), host, path, strlen(path));
    assert_non_null(r);
    return r->name;
}

static void test_match_order_and_fields(void **state)
{
    (void)state;
    config *c = with_rules();
    /* first match wins: /health also matches nothing else, any method */
    assert_string_equal(match(c, "GET", NULL, "/health"), "health");
    assert_string_equal(match(c, "POST", "x", "/health"), "health");
    /* writes before api-all */
    assert_string_equal(match(c, "POST", NULL, "/api/users"), "writes");
    assert_string_equal(match(c, "DELETE", NULL, "/api"), "writes");
    assert_string_equal(match(c, "GET", NULL, "/api/users"), "api-all");
    assert_string_equal(match(c, "PATCH", NULL, "/api/users/1"), "api-all");
    /* query string is not part of the path */
    assert_string_equal(match(c, "GET", NULL, "/health?verbose=1"), "health");
    assert_string_equal(match(c, "GET", NULL, "/healthz?x=/health"), "default");
    /* default rule catches everything else and is last */
    assert_string_equal(match(c, "GET", NULL, "/other"), "default");
    assert_string_equal(match(c, "GET", NULL, ""), "default");
    const rule *d = rules_match(c->rules, c->rules_len, "GET", 3, NULL, "/x", 2);
    assert_ptr_equal(d, &c->rules[c->rules_len - 1]);
    /* the default rule replicates writes only (issue 3) */
    assert_true(d->log && d->persist && d->replicate);
    assert_int_equal(d->replicate_methods, RULE_M_POST | RULE_M_PUT | RULE_M_PATCH | RULE_M_DELETE);
    assert_int_equal(d->methods, RULE_METHOD_ANY);
    /* the fields come along */
    const rule *w = rules_match(c->rules, c->rules_len, "PUT", 3, NULL, "/api/x", 6);
    assert_true(w->replicate);
    assert_int_equal(w->req_body_cap, 64 * 1024);
    const rule *a = rules_match(c->rules, c->rules_len, "GET", 3, NULL, "/api/x", 6);
    assert_int_equal(a->req_body_cap, 1024);
    assert_false(a->replicate);
    config_unref(c);
}

static void test_match_host(void **state)
{
    (void)state;
    config *c = with_rules();
    assert_string_equal(match(c, "GET", "admin.example.com", "/x"), "admin-host");
    assert_string_equal(match(c, "GET", "ADMIN.EXAMPLE.COM:8080", "/x"), "admin-host");
    assert_string_equal(match(c, "GET", "admin.example.com.evil", "/x"), "default");
    assert_string_equal(match(c, "GET", "admin.example.co", "/x"), "default");
    assert_string_equal(match(c, "GET", NULL, "/x"), "default");
    assert_string_equal(match(c, "GET", "", "/x"), "default");
    /* an earlier rule still wins over the host rule */
    assert_string_equal(match(c, "GET", "admin.example.com", "/health"), "health");
    config_unref(c);
}

static void test_match_other_methods(void **state)
{
    (void)state;
    config *c = with_rules();
    assert_string_equal(match(c, "TRACE", NULL, "/x"), "odd");
    assert_string_equal(match(c, "PROPFIND", NULL, "/x"), "odd");
    assert_string_equal(match(c, "OPTIONS", NULL, "/x"), "default");
    config_unref(c);
}

static void test_match_ipv6_host(void **state)
{
    (void)state;
    config *c = config_new();
    char err[256];
    char path[] = "/tmp/test_rules_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fputs("[rule \"v6\"]\nhost = [::1]\n", f);
    fclose(f);
    assert_int_equal(config_load_file(c, path, err, sizeof err), 0);
    unlink(path);
    assert_string_equal(match(c, "GET", "[::1]:8080", "/"), "v6");
    assert_string_equal(match(c, "GET", "[::1]", "/"), "v6");
    assert_string_equal(match(c, "GET", "[::2]:8080", "/"), "default");
    config_unref(c);
}

static void test_default_only(void **state)
{
    (void)state;
    config *c = config_new();
    assert_int_equal(c->rules_len, 1);
    const rule *r = rules_match(c->rules, c->rules_len, "GET", 3, NULL, "/", 1);
    assert_string_equal(r->name, "default");
    r = rules_match(c->rules, c->rules_len, "BREW", 4, "teapot", "/coffee", 7);
    assert_string_equal(r->name, "default");
    config_unref(c);
}

/* A rule's run-time switches start as configured, change without touching
 * its config, and read back as set. */
static void test_switches(void **state)
{
    (void)state;
    config *c = with_rules();
    rule *health = &c->rules[0], *writes = &c->rules[1];
    assert_int_equal(rules_configured(health), RULE_SW_PERSIST | RULE_SW_REPLICATE);
    assert_int_equal(rules_switches(health), RULE_SW_PERSIST | RULE_SW_REPLICATE);
    assert_int_equal(rules_switches(writes), RULE_SW_ALL);
    assert_int_equal(rules_switches(&c->rules[5]), RULE_SW_ALL); /* default */

    rules_set_switches(health, RULE_SW_LOG);
    assert_int_equal(rules_switches(health), RULE_SW_LOG);
    assert_false(health->log); /* the config says what the file says */
    assert_true(health->persist);
    assert_int_equal(rules_switches(writes), RULE_SW_ALL);           /* per rule */
    rules_set_switches(health, RULE_SW_PERSIST | RULE_SW_REPLICATE); /* as configured */
    assert_int_equal(health->flipped, 0);

    /* The built-in default rule of an empty list has its own switches. */
    assert_int_equal(rules_switches(rules_default(NULL, 0)), RULE_SW_LOG | RULE_SW_PERSIST);

    assert_int_equal(rules_switch_bit("log", 3), RULE_SW_LOG);
    assert_int_equal(rules_switch_bit("persist", 7), RULE_SW_PERSIST);
    assert_int_equal(rules_switch_bit("replicate", 9), RULE_SW_REPLICATE);
    assert_int_equal(rules_switch_bit("persistent", 10), 0);
    assert_int_equal(rules_switch_bit("persist", 4), 0);
    assert_int_equal(rules_switch_bit("", 0), 0);
    config_unref(c);
}

/* A reload: a rule switched at run time keeps what was switched when a rule
 * of its name is still configured; what nobody switched follows the new
 * file; a switched rule that is gone is said to be gone. */
static void test_carry_switches(void **state)
{
    (void)state;
    config *old = with_rules();
    rules_set_switches(&old->rules[0], RULE_SW_ALL);                     /* health: log on */
    rules_set_switches(&old->rules[1], RULE_SW_LOG | RULE_SW_REPLICATE); /* writes: persist off */
    rules_set_switches(&old->rules[4], RULE_SW_LOG | RULE_SW_REPLICATE); /* odd: persist off */
    config *now = from_text("[rule \"writes\"]\n"
                            "replicate = off\n"
                            "[rule \"health\"]\n"
                            "log = off\n"
                            "persist = off\n"
                            "[rule \"api-all\"]\n"
                            "log = off\n");
    assert_int_equal(now->rules_len, 4);
    buf note = BUF_INIT;
    size_t kept =
        rules_carry_switches(now->rules, now->rules_len, old->rules, old->rules_len, &note);
    assert_int_equal(kept, 2);
    assert_string_equal(note.data, "health keeps log on; writes keeps persist off; odd is gone, "
                                   "with its run-time switches");
    /* writes: persist kept off, replicate as the new file says (off). */
    assert_int_equal(rules_switches(&now->rules[0]), RULE_SW_LOG);
    assert_true(now->rules[0].persist); /* its config is the file's */
    /* health: log kept on, persist as the new file says (off). */
    assert_int_equal(rules_switches(&now->rules[1]), RULE_SW_LOG | RULE_SW_REPLICATE);
    /* api-all, never switched: the new file. */
    assert_int_equal(rules_switches(&now->rules[2]), RULE_SW_PERSIST | RULE_SW_REPLICATE);
    assert_int_equal(now->rules[2].flipped, 0);
    assert_int_equal(rules_switches(&now->rules[3]), RULE_SW_ALL);

    /* Nothing switched: nothing kept, nothing said. */
    buf none = BUF_INIT;
    config *fresh = with_rules();
    assert_int_equal(
        rules_carry_switches(now->rules, now->rules_len, fresh->rules, fresh->rules_len, &none), 0);
    assert_int_equal(none.len, 0);
    buf_free(&none);
    buf_free(&note);
    config_unref(fresh);
    config_unref(now);
    config_unref(old);
}

/* A view's rule added at run time: before the default rule, matching
 * everything, with the default's caps; its configured switches follow the
 * latest pair, except those switched at run time. */
static void test_add_rule(void **state)
{
    (void)state;
    config *c = with_rules();
    size_t n = c->rules_len;
    rule *def = &c->rules[n - 1];
    def->req_body_cap = 123;
    def->resp_body_cap = 456;
    rule *r = config_add_rule(c, "orders", RULE_SW_LOG | RULE_SW_REPLICATE);
    assert_int_equal(c->rules_len, n + 1);
    assert_ptr_equal(r, &c->rules[n - 1]);
    assert_string_equal(r->name, "orders");
    assert_string_equal(c->rules[n].name, "default"); /* still last */
    assert_int_equal(c->rules[n].req_body_cap, 123);
    assert_int_equal(r->req_body_cap, 123);
    assert_int_equal(r->resp_body_cap, 456);
    assert_int_equal(r->methods, RULE_METHOD_ANY);
    assert_null(r->path);
    assert_null(r->host);
    assert_int_equal(rules_configured(r), RULE_SW_LOG | RULE_SW_REPLICATE);
    assert_int_equal(rules_switches(r), RULE_SW_LOG | RULE_SW_REPLICATE);
    assert_ptr_equal(rules_find(c->rules, c->rules_len, "orders"), r);
    /* The rules before it are where they were. */
    assert_string_equal(c->rules[0].name, "health");

    /* The next pair's flags win ... */
    rules_set_configured(r, RULE_SW_PERSIST);
    assert_int_equal(rules_switches(r), RULE_SW_PERSIST);
    assert_int_equal(r->flipped, 0);
    /* ... but not over a switch turned at run time: replicate turned on
     * stays on, persist and log follow the pairs. */
    rules_set_switches(r, RULE_SW_PERSIST | RULE_SW_REPLICATE);
    rules_set_configured(r, RULE_SW_LOG);
    assert_int_equal(rules_configured(r), RULE_SW_LOG);
    assert_int_equal(rules_switches(r), RULE_SW_LOG | RULE_SW_REPLICATE);
    rules_set_configured(r, RULE_SW_ALL);
    assert_int_equal(rules_switches(r), RULE_SW_ALL);
    assert_int_equal(r->flipped, 0);

    /* A second one goes after the first, before the default. */
    rule *s = config_add_rule(c, "users", 0);
    assert_string_equal(c->rules[n - 1].name, "orders");
    assert_ptr_equal(s, &c->rules[n]);
    assert_string_equal(c->rules[n + 1].name, "default");
    assert_int_equal(rules_switches(s), 0);
    config_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_method_bits),     cmocka_unit_test(test_match_order_and_fields),
        cmocka_unit_test(test_match_host),      cmocka_unit_test(test_match_other_methods),
        cmocka_unit_test(test_match_ipv6_host), cmocka_unit_test(test_default_only),
        cmocka_unit_test(test_switches),        cmocka_unit_test(test_carry_switches),
        cmocka_unit_test(test_add_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
