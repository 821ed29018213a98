/* Unit tests for util: the case-insensitive name comparison. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "util.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ieq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
