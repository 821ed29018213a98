/* Unit tests for buf: growth, JSON string escaping, base64, UTF-8 checks and
 * percent-decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"

static void test_append_and_detach(void **state)
{
    (void)state;
    buf b = BUF_INIT;
    for (int i = 0; i < 1000; i++)
        buf_append_str(&b, "ab");
    assert_int_equal(b.len, 2000);
    assert_int_equal(b.data[b.len], '\0');
    buf_reset(&b);
    buf_appendf(&b, "%s-%d", "x", 42);
    buf_append_u64(&b, 18446744073709551615ULL);
    buf_append_i64(&b, -9223372036854775807LL - 1);
    assert_string_equal(b.data, "x-4218446744073709551615-9223372036854775808");
    char *s = buf_detach(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    free(s);
    buf empty = BUF_INIT;
    s = buf_detach(&empty);
    assert_string_equal(s, "");
    free(s);
}

static void test_json_str(void **state)
{
    (void)state;
    buf b = BUF_INIT;
    const char in[] = "a\"b\\c\n\t\x01\x7f caf\xc3\xa9 \xff";
    buf_append_json_str(&b, in, sizeof in - 1);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\t\\u0001\\u007f caf\xc3\xa9 \\u00ff\"");
    buf_free(&b);
}

static void test_base64_and_utf8(void **state)
{
    (void)state;
    const char *cases[][2] = {
        {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf b = BUF_INIT;
        buf_append_base64(&b, cases[i][0], strlen(cases[i][0]));
        assert_string_equal(b.data ? b.data : "", cases[i][1]);
        buf_free(&b);
    }
    assert_true(utf8_valid("caf\xc3\xa9", 5));
    assert_false(utf8_valid("\xc3", 1));         /* cut */
    assert_false(utf8_valid("\xc0\xaf", 2));     /* overlong */
    assert_false(utf8_valid("\xed\xa0\x80", 3)); /* surrogate */
    assert_false(utf8_valid("a\0b", 3));         /* NUL */
}

static void test_pct_decoding(void **state)
{
    (void)state;
    assert_int_equal(hex_digit('0'), 0);
    assert_int_equal(hex_digit('f'), 15);
    assert_int_equal(hex_digit('F'), 15);
    assert_int_equal(hex_digit('g'), -1);
    buf b = BUF_INIT;
    const char *in = "a%20b+c%2Bd%zz%4";
    buf_append_pct_decoded(&b, in, strlen(in), 0);
    assert_string_equal(b.data, "a b+c+d%zz%4");
    buf_reset(&b);
    buf_append_pct_decoded(&b, in, strlen(in), 1);
    assert_string_equal(b.data, "a b c+d%zz%4");
    buf_reset(&b);
    buf_append_pct_decoded(&b, "%00x", 4, 0);
    assert_int_equal(b.len, 2);
    assert_int_equal(b.data[0], '\0');
    buf_free(&b);
}

/* Decoding takes what encoding writes back, and what MIME and URL-safe
 * writers produce; any other byte fails. */
static void test_base64_decoding(void **state)
{
    (void)state;
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        buf enc = BUF_INIT, dec = BUF_INIT;
        buf_append_base64(&enc, plain[i], strlen(plain[i]));
        assert_int_equal(buf_append_base64_decoded(&dec, enc.data ? enc.data : "", enc.len), 0);
        assert_int_equal(dec.len, strlen(plain[i]));
        if (dec.len)
            assert_memory_equal(dec.data, plain[i], dec.len);
        buf_free(&enc);
        buf_free(&dec);
    }
    buf d = BUF_INIT;
    assert_int_equal(buf_append_base64_decoded(&d, "Zm9v\r\nYmFy", 10), 0); /* MIME break */
    assert_int_equal(d.len, 6);
    assert_memory_equal(d.data, "foobar", 6);
    buf_reset(&d);
    assert_int_equal(buf_append_base64_decoded(&d, "_-8", 3), 0); /* URL-safe, no padding */
    assert_int_equal(d.len, 2);
    assert_memory_equal(d.data, "\xff\xef", 2);
    buf_reset(&d);
    assert_int_equal(buf_append_base64_decoded(&d, "Zm9v!", 5), -1);
    assert_int_equal(buf_append_base64_decoded(&d, "Zg==Zg", 6), -1); /* data after padding */
    buf_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_detach), cmocka_unit_test(test_json_str),
        cmocka_unit_test(test_base64_and_utf8),   cmocka_unit_test(test_base64_decoding),
        cmocka_unit_test(test_pct_decoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
