/* Unit tests for glob: the path glob matcher (literal text, '*' within a
 * segment, '**' across segments, linear time on hostile input, the length
 * limit). Moved from test_rules.c with the matcher. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base/glob.h"
#include "base/util.h"

static bool g(const char *glob, const char *path)
{
    return glob_match(glob, path, strlen(path));
}

static void test_glob_literal(void **state)
{
    (void)state;
    assert_true(g("/health", "/health"));
    assert_false(g("/health", "/healthz"));
    assert_false(g("/health", "/health/"));
    assert_false(g("/health", "/healt"));
    assert_false(g("/health", ""));
    assert_true(g("", ""));
    assert_false(g("", "/"));
    /* The length bounds the path: bytes past n are not part of it. */
    assert_true(glob_match("/a", "/a?x=1", 2));
    assert_false(glob_match("/a?x=1", "/a?x=1", 2));
}

static void test_glob_single_star(void **state)
{
    (void)state;
    assert_true(g("/api/*/metrics", "/api/x/metrics"));
    assert_true(g("/api/*/metrics", "/api/long-name/metrics"));
    assert_false(g("/api/*/metrics", "/api/x/y/metrics"));
    assert_false(g("/api/*/metrics", "/api/x/metricsz"));
    assert_true(g("/api/*", "/api/users"));
    assert_true(g("/api/*", "/api/")); /* '*' may be empty */
    assert_false(g("/api/*", "/api"));
    assert_false(g("/api/*", "/api/users/1"));
    /* part of a segment */
    assert_true(g("/files/*.json", "/files/a.json"));
    assert_true(g("/files/*.json", "/files/.json"));
    assert_false(g("/files/*.json", "/files/a.jsonx"));
    assert_false(g("/files/*.json", "/files/sub/a.json"));
    assert_true(g("/v*/users", "/v2/users"));
    assert_true(g("/*/*", "/a/b"));
    assert_false(g("/*/*", "/a/b/c"));
    assert_true(g("*", "abc"));
    assert_false(g("*", "/abc"));
    /* backtracking inside a segment */
    assert_true(g("/*ab", "/aab"));
    assert_true(g("/*a*b", "/xaxxb"));
    assert_false(g("/*a*b", "/xaxx/b"));
}

static void test_glob_double_star(void **state)
{
    (void)state;
    assert_true(g("/api/**", "/api"));
    assert_true(g("/api/**", "/api/"));
    assert_true(g("/api/**", "/api/a"));
    assert_true(g("/api/**", "/api/a/b/c"));
    assert_false(g("/api/**", "/apix"));
    assert_false(g("/api/**", "/apix/y"));
    assert_false(g("/api/**", "/other/api/x"));
    assert_true(g("/**", "/"));
    assert_true(g("/**", "/anything/at/all"));
    assert_true(g("/**", ""));
    assert_true(g("**", ""));
    assert_true(g("**", "/x/y"));
    /* between segments: zero or more segments */
    assert_true(g("/a/**/b", "/a/b"));
    assert_true(g("/a/**/b", "/a/x/b"));
    assert_true(g("/a/**/b", "/a/x/y/z/b"));
    assert_false(g("/a/**/b", "/a/x/bc"));
    assert_false(g("/a/**/b", "/ab"));
    assert_true(g("/**/metrics", "/metrics"));
    assert_true(g("/**/metrics", "/svc/v1/metrics"));
    assert_false(g("/**/metrics", "/svc/v1/metrics/x"));
    /* mixed with single stars */
    assert_true(g("/**/*.json", "/a/b/c.json"));
    assert_true(g("/**/*.json", "/c.json"));
    assert_false(g("/**/*.json", "/a/b/c.xml"));
    assert_true(g("/api/**/items/*", "/api/v1/x/items/42"));
    assert_false(g("/api/**/items/*", "/api/v1/x/items/42/y"));
    /* "**" inside a segment just matches anything, slashes included */
    assert_true(g("/api**", "/api/v1"));
    assert_true(g("/a/**.json", "/a/b/c.json"));
}

static void test_glob_pathological_is_fast(void **state)
{
    (void)state;
    /* A backtracking matcher would take ages on this; the NFA is linear. */
    size_t n = 8192;
    char *path = xmalloc(n + 1);
    memset(path, 'a', n);
    path[n] = '\0';
    int64_t t0 = util_mono_us();
    assert_false(g("**a**a**a**a**a**a**b", path));
    assert_false(g("/*a*a*a*a*a*a*a*b", path));
    assert_true(g("**a**a**a**a**a**a**", path));
    int64_t dt = util_mono_us() - t0;
    assert_true(dt < 2 * 1000 * 1000);
    free(path);
}

static void test_glob_too_long(void **state)
{
    (void)state;
    char glob[GLOB_MAX + 2];
    memset(glob, 'a', sizeof glob - 1);
    glob[sizeof glob - 1] = '\0';
    assert_false(glob_match(glob, glob, strlen(glob)));
    glob[GLOB_MAX] = '\0'; /* exactly at the limit works */
    assert_true(glob_match(glob, glob, strlen(glob)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_glob_literal),     cmocka_unit_test(test_glob_single_star),
        cmocka_unit_test(test_glob_double_star), cmocka_unit_test(test_glob_pathological_is_fast),
        cmocka_unit_test(test_glob_too_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
