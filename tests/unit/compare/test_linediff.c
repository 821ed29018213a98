#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "compare/linediff.h"

/* Lines of one byte each, from a three-letter alphabet (many ties). */
static void mk_lines(linediff_line *v, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        v[i] = (linediff_line){s + i, 1, true};
}

/* Length of a longest common subsequence, the O(n*m) way. */
static size_t lcs_len(const char *x, size_t n, const char *y, size_t m)
{
    size_t *t = calloc((n + 1) * (m + 1), sizeof *t);
    assert_non_null(t);
    for (size_t i = n; i-- > 0;)
        for (size_t j = m; j-- > 0;) {
            size_t down = t[(i + 1) * (m + 1) + j], right = t[i * (m + 1) + j + 1];
            t[i * (m + 1) + j] =
                x[i] == y[j] ? t[(i + 1) * (m + 1) + j + 1] + 1 : (down > right ? down : right);
        }
    size_t r = t[0];
    free(t);
    return r;
}

/* The script turns x into y, keeps only equal lines, is minimal, and lists
 * a changed block's removals before its additions. */
static void check_script(const char *x, size_t n, const char *y, size_t m)
{
    linediff_line e[64], a[64];
    mk_lines(e, x, n);
    mk_lines(a, y, m);
    linediff_ops o = {NULL, 0, 0};
    assert_true(linediff_script(e, n, a, m, 0, 0, &o));
    size_t i = 0, j = 0, edits = 0;
    char prev = ' ';
    for (size_t k = 0; k < o.len; k++) {
        const linediff_op *op = &o.v[k];
        assert_int_equal(op->ei, i);
        assert_int_equal(op->ai, j);
        if (op->kind == ' ') {
            assert_true(i < n && j < m && x[i] == y[j]);
            i++;
            j++;
        } else if (op->kind == '-') {
            assert_true(prev != '+');
            assert_true(i < n);
            i++;
            edits++;
        } else {
            assert_int_equal(op->kind, '+');
            assert_true(j < m);
            j++;
            edits++;
        }
        prev = op->kind;
    }
    assert_int_equal(i, n);
    assert_int_equal(j, m);
    assert_int_equal(edits, n + m - 2 * lcs_len(x, n, y, m));
    free(o.v);
}

static void test_script_edges(void **state)
{
    (void)state;
    check_script("", 0, "", 0);
    check_script("", 0, "abc", 3);
    check_script("abc", 3, "", 0);
    check_script("abc", 3, "abc", 3);
    check_script("aaa", 3, "bbbb", 4);
    check_script("abcabba", 7, "cbabac", 6); /* Myers' example, D = 5 */
    check_script("a", 1, "ba", 2);
    check_script("ab", 2, "a", 1);
}

static void test_script_random(void **state)
{
    (void)state;
    uint32_t seed = 12345;
    char x[64], y[64];
    for (int round = 0; round < 3000; round++) {
        seed = seed * 1103515245u + 12345u;
        size_t n = (seed >> 16) % 40;
        seed = seed * 1103515245u + 12345u;
        size_t m = (seed >> 16) % 40;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            x[i] = (char)('a' + (seed >> 16) % 3);
        }
        for (size_t i = 0; i < m; i++) {
            seed = seed * 1103515245u + 12345u;
            y[i] = (char)('a' + (seed >> 16) % 3);
        }
        check_script(x, n, y, m);
    }
}

static void test_common_ends(void **state)
{
    (void)state;
    linediff_line e[8], a[8];
    mk_lines(e, "abxcd", 5);
    mk_lines(a, "abcd", 4);
    size_t pre, suf;
    linediff_common_ends(e, 5, a, 4, &pre, &suf);
    assert_int_equal(pre, 2);
    assert_int_equal(suf, 2);
    /* the suffix never reaches back into the prefix */
    mk_lines(e, "aaa", 3);
    mk_lines(a, "aa", 2);
    linediff_common_ends(e, 3, a, 2, &pre, &suf);
    assert_int_equal(pre, 2);
    assert_int_equal(suf, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_script_edges),
        cmocka_unit_test(test_script_random),
        cmocka_unit_test(test_common_ends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
