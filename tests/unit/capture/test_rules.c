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

/* A config with rules set up by hand (the file loader is tested in
 * test_config). */
static config *with_rules(void)
{
    config *c = config_new();
    const char *text = "[rule \"health\"]\n"
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
                       "methods = TRACE\n";
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_method_bits),     cmocka_unit_test(test_match_order_and_fields),
        cmocka_unit_test(test_match_host),      cmocka_unit_test(test_match_other_methods),
        cmocka_unit_test(test_match_ipv6_host), cmocka_unit_test(test_default_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
