/* Unit tests for util: the case-insensitive name comparison, addresses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "base/util.h"

/* util_ieq decides which headers are hop-by-hop and which are redacted: a
 * prefix or a longer name must never match. */
static void test_ieq(void **state)
{
    (void)state;
    assert_true(util_ieq("Connection", 10, "connection"));
    assert_true(util_ieq("X-API-KEY", 9, "x-api-key"));
    assert_true(util_ieq("", 0, ""));
    assert_false(util_ieq("Connection", 9, "connection"));   /* s is a prefix */
    assert_false(util_ieq("Connections", 11, "connection")); /* lit is a prefix */
    assert_false(util_ieq("Authorization", 13, "authorisation"));
    assert_false(util_ieq("a", 1, ""));
    assert_false(util_ieq("", 0, "a"));
    /* Only ASCII letters fold: '@' (0x40) is not '`' (0x60). */
    assert_false(util_ieq("@", 1, "`"));
    assert_false(util_ieq("[", 1, "{"));
}

/* Listen addresses as other servers take them (issue 9 item 14): a bare port
 * is loopback, ":port" every interface; the result is always host:port. */
static void test_listen_addr(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out; /* out NULL: refused */
    } cases[] = {
        {"23100", "127.0.0.1:23100"},
        {":23100", "0.0.0.0:23100"},
        {"127.0.0.1:8080", "127.0.0.1:8080"},
        {"localhost:8080", "localhost:8080"},
        {"[::1]:8080", "[::1]:8080"},
        {"[::]:8080", "[::]:8080"},
        {"0", "127.0.0.1:0"},
        {"65535", "127.0.0.1:65535"},
        {"65536", NULL},
        {":65536", NULL},
        {"", NULL},
        {":", NULL},
        {"::", NULL},
        {"localhost", NULL},
        {"localhost:", NULL},
        {":http", NULL},
        {"-1", NULL},
        {": 80", NULL},
        {":+80", NULL},
        {"80 ", NULL},
        {"[::1]", NULL},
        {"[::1]8080", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[64] = "unchanged";
        int rc = util_listen_addr(cases[i].in, out, sizeof out);
        if (cases[i].out == NULL) {
            if (rc != -1)
                fail_msg("accepted '%s' as '%s'", cases[i].in, out);
            continue;
        }
        if (rc != 0)
            fail_msg("refused '%s'", cases[i].in);
        assert_string_equal(out, cases[i].out);
    }
    /* A result that does not fit is refused, never cut. */
    char small[10];
    assert_int_equal(util_listen_addr("23100", small, sizeof small), -1);
    assert_int_equal(util_listen_addr("1.2.3.4:5", small, sizeof small), 0);
    assert_string_equal(small, "1.2.3.4:5");
}

/* Host header values: the port is optional (issue 9 item 28's Host check). */
static void test_split_host(void **state)
{
    (void)state;
    char h[64];
    int port;
    assert_int_equal(util_split_host("example.com", 80, h, sizeof h, &port), 0);
    assert_string_equal(h, "example.com");
    assert_int_equal(port, 80);
    assert_int_equal(util_split_host("example.com:8081", 80, h, sizeof h, &port), 0);
    assert_string_equal(h, "example.com");
    assert_int_equal(port, 8081);
    assert_int_equal(util_split_host("[::1]", -1, h, sizeof h, &port), 0);
    assert_string_equal(h, "::1");
    assert_int_equal(port, -1);
    assert_int_equal(util_split_host("[::1]:9", 80, h, sizeof h, &port), 0);
    assert_string_equal(h, "::1");
    assert_int_equal(port, 9);
    static const char *const bad[] = {"", "[]", "[::1", "x:", ":80", "x:y", "x:80x", "[::1]x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (util_split_host(bad[i], 80, h, sizeof h, &port) != -1)
            fail_msg("accepted '%s'", bad[i]);
    char small[4];
    assert_int_equal(util_split_host("abcd", 80, small, sizeof small, &port), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ieq),
        cmocka_unit_test(test_listen_addr),
        cmocka_unit_test(test_split_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
