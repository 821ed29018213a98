/* Unit tests for rfc3339: times as text, both ways. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "base/rfc3339.h"

static void test_format(void **state)
{
    (void)state;
    char s[RFC3339_MAX];
    int64_t us = 1795758378123456LL; /* 2026-11-27T05:46:18.123456Z */
    assert_int_equal(rfc3339_format(us, 6, s), 27);
    assert_string_equal(s, "2026-11-27T05:46:18.123456Z");
    assert_int_equal(rfc3339_format(us, 3, s), 24);
    assert_string_equal(s, "2026-11-27T05:46:18.123Z");
    assert_int_equal(rfc3339_format(us, 0, s), 20);
    assert_string_equal(s, "2026-11-27T05:46:18Z");
    rfc3339_format(0, 6, s);
    assert_string_equal(s, "1970-01-01T00:00:00.000000Z");
    rfc3339_format(-1, 6, s); /* floored: one µs before the epoch */
    assert_string_equal(s, "1969-12-31T23:59:59.999999Z");
}

static void test_round_trip(void **state)
{
    (void)state;
    static const int64_t times[] = {0,
                                    1,
                                    999999,
                                    1000000,
                                    951782400000000LL /* 2000-02-29 */,
                                    1795758378123456LL,
                                    -86400000000LL};
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        char s[RFC3339_MAX];
        rfc3339_format(times[i], 6, s);
        rfc3339_time t;
        assert_int_equal(rfc3339_parse(s, &t), 0);
        assert_true(t.has_time && t.has_seconds && t.has_zone);
        assert_int_equal(rfc3339_utc_us(&t), times[i]);
    }
}

static void test_parse_forms(void **state)
{
    (void)state;
    rfc3339_time t;
    assert_int_equal(rfc3339_parse("2026-11-27T06:46:18.5+01:00", &t), 0);
    assert_int_equal(t.offset_s, 3600);
    assert_int_equal(t.frac_us, 500000);
    assert_int_equal(rfc3339_utc_us(&t), 1795758378500000LL);
    assert_int_equal(rfc3339_parse("2026-11-27 05:46:18.1234567z", &t), 0);
    assert_int_equal(t.frac_us, 123456); /* beyond µs: cut */
    assert_int_equal(rfc3339_parse("2026-11-27", &t), 0);
    assert_false(t.has_time);
    assert_int_equal(rfc3339_parse("2026-11-27t05:46", &t), 0);
    assert_true(t.has_time);
    assert_false(t.has_seconds);
    assert_false(t.has_zone);
    assert_int_equal(rfc3339_parse("2024-02-29T00:00:00Z", &t), 0); /* leap day */
    assert_int_equal(rfc3339_parse("2026-11-27T05:46:18-05:30", &t), 0);
    assert_int_equal(t.offset_s, -(5 * 3600 + 30 * 60));
}

static void test_parse_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "2026",
        "2026-11",
        "2026-13-01",
        "2026-00-10",
        "2026-02-30",
        "2025-02-29",
        "2026-11-31",
        "2026-11-27X05:46:18Z",
        "2026-11-27T24:00:00Z",
        "2026-11-27T05:60:00Z",
        "2026-11-27T05:46:61Z",
        "2026-11-27T05:46:18.Z",
        "2026-11-27T05:46:18+1:00",
        "2026-11-27T05:46:18+01",
        "2026-11-27T05:46:18Z ",
        "2026-11-27T5:46:18Z",
        "26-11-27T05:46:18Z",
        "2026-11-27T05:46:18ZZ",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rfc3339_time t;
        if (rfc3339_parse(bad[i], &t) != -1)
            fail_msg("accepted '%s'", bad[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_parse_forms),
        cmocka_unit_test(test_parse_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
