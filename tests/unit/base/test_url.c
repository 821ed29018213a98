/* Unit tests for url: the one parser of absolute URLs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "base/url.h"

static url_parts parse_ok(const char *s)
{
    url_parts u;
    const char *why = NULL;
    if (url_parse(s, strlen(s), &u, &why) != 0)
        fail_msg("refused '%s': %s", s, why);
    return u;
}

static void test_parts(void **state)
{
    (void)state;
    url_parts u = parse_ok("HTTP://user:p%40ss@Example.com:8080/a/b?x=1&y=2#frag");
    assert_string_equal(u.scheme, "http");
    assert_int_equal(u.userinfo_len, 11);
    assert_memory_equal(u.userinfo, "user:p%40ss", 11);
    assert_int_equal(u.authority_len, 16);
    assert_memory_equal(u.authority, "Example.com:8080", 16);
    assert_string_equal(u.host, "Example.com");
    assert_int_equal(u.port, 8080);
    assert_true(u.port_given);
    assert_int_equal(u.path_len, 4);
    assert_memory_equal(u.path, "/a/b", 4);
    assert_int_equal(u.query_len, 7);
    assert_memory_equal(u.query, "x=1&y=2", 7);
    assert_true(url_is(&u, "http"));
    char hp[64];
    assert_int_equal(url_hostport(&u, hp, sizeof hp), 0);
    assert_string_equal(hp, "Example.com:8080");
}

static void test_defaults(void **state)
{
    (void)state;
    url_parts u = parse_ok("http://127.0.0.1");
    assert_int_equal(u.port, 80);
    assert_false(u.port_given);
    assert_int_equal(u.path_len, 0);
    assert_null(u.query);
    assert_null(u.userinfo);
    assert_int_equal(parse_ok("https://h/").port, 443);
    assert_int_equal(parse_ok("amqp://guest:guest@h/vhost").port, 5672);
    assert_int_equal(parse_ok("amqps://h").port, 5671);
    assert_int_equal(parse_ok("ftp://h").port, 0); /* no default known */
    url_parts q = parse_ok("http://h?only=query");
    assert_int_equal(q.path_len, 0);
    assert_int_equal(q.query_len, 10);
    url_parts e = parse_ok("http://h/p?");
    assert_non_null(e.query);
    assert_int_equal(e.query_len, 0);
    char hp[8];
    assert_int_equal(url_hostport(&u, hp, sizeof hp), -1); /* "127.0.0.1:80" does not fit */
}

static void test_ipv6(void **state)
{
    (void)state;
    url_parts u = parse_ok("http://[::1]:9000/x");
    assert_true(u.ipv6);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 9000);
    char hp[64];
    assert_int_equal(url_hostport(&u, hp, sizeof hp), 0);
    assert_string_equal(hp, "[::1]:9000");
    assert_int_equal(parse_ok("http://[fe80::1]").port, 80);
}

static void test_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "example.com",
        "http:/x",
        "://h",
        "1http://h",
        "http://",
        "http:///path",
        "http://:80",
        "http://h:",
        "http://h:0",
        "http://h:65536",
        "http://h:8o",
        "http://h:+80",
        "http://[::1",
        "http://[::1]x",
        "http://h/a b",
        "http://h/\t",
        "http://h\x7f/",
        "http://user@",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        url_parts u;
        const char *why = NULL;
        if (url_parse(bad[i], strlen(bad[i]), &u, &why) != -1)
            fail_msg("accepted '%s'", bad[i]);
        assert_non_null(why);
    }
    /* an unbracketed IPv6 address says how to write it */
    const char *why = NULL;
    url_parts v6;
    assert_int_equal(url_parse("http://::1:80/", 14, &v6, &why), -1);
    assert_string_equal(why, "put an IPv6 address in brackets");
    /* a host longer than the buffer is refused, not truncated */
    char longu[400] = "http://";
    memset(longu + 7, 'a', 300);
    url_parts u;
    assert_int_equal(url_parse(longu, strlen(longu), &u, NULL), -1);
    /* n bounds the parse: the text need not be NUL-terminated */
    assert_int_equal(url_parse("http://h:80garbage", 11, &u, NULL), 0);
    assert_int_equal(u.port, 80);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parts),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
