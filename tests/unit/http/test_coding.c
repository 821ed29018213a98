/* Unit tests for coding: Content-Encoding parsing, round trips through each
 * coding and stacks of them, streaming in small pieces, the decoded-size cap
 * against a decompression bomb, and damaged or cut streams. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/coding.h"

static void test_parse(void **state)
{
    (void)state;
    coding_kind k[CODING_MAX_LAYERS];
    char err[100];
    assert_int_equal(coding_parse(NULL, k, err, sizeof err), 0);
    assert_int_equal(coding_parse("", k, err, sizeof err), 0);
    assert_int_equal(coding_parse("identity", k, err, sizeof err), 0);
    assert_int_equal(coding_parse("GZIP", k, err, sizeof err), 1);
    assert_int_equal(k[0], CODING_GZIP);
    assert_int_equal(coding_parse(" gzip , br,identity", k, err, sizeof err), 2);
    assert_int_equal(k[0], CODING_GZIP);
    assert_int_equal(k[1], CODING_BR);
    assert_int_equal(coding_parse("x-gzip, deflate", k, err, sizeof err), 2);
    assert_int_equal(k[1], CODING_DEFLATE);
    assert_int_equal(coding_parse("gzip, zstd", k, err, sizeof err), -1);
    assert_string_equal(err, "unsupported content coding 'zstd'");
    assert_int_equal(coding_parse("br,br,br,br,br", k, err, sizeof err), -1);
}

/* A JSON-ish text long enough to compress well. */
static void sample(buf *b, size_t n)
{
    while (b->len < n)
        buf_appendf(b, "{\"id\":%zu,\"password\":\"hunter2\"},", b->len);
    b->len = n;
    b->data[n] = '\0';
}

static void roundtrip(const char *enc, size_t piece)
{
    buf plain = BUF_INIT, wire = BUF_INIT, back = BUF_INIT;
    sample(&plain, 100000);
    char err[160];
    assert_int_equal(coding_encode(enc, plain.data, plain.len, &wire, err, sizeof err), 0);
    assert_true(wire.len < plain.len);
    coding_decoder *d = coding_decoder_new(enc, &back, 1 << 20, err, sizeof err);
    assert_non_null(d);
    for (size_t off = 0; off < wire.len; off += piece) {
        size_t n = wire.len - off < piece ? wire.len - off : piece;
        assert_int_equal(coding_decoder_feed(d, wire.data + off, n), CODING_OK);
    }
    assert_int_equal(coding_decoder_finish(d), CODING_OK);
    assert_null(coding_decoder_error(d));
    coding_decoder_free(d);
    assert_int_equal(back.len, plain.len);
    assert_memory_equal(back.data, plain.data, plain.len);
    buf_free(&plain);
    buf_free(&wire);
    buf_free(&back);
}

static void test_roundtrips(void **state)
{
    (void)state;
    const char *encs[] = {"gzip", "deflate", "br", "gzip, br", "br, deflate, gzip"};
    for (size_t i = 0; i < sizeof encs / sizeof encs[0]; i++) {
        roundtrip(encs[i], 1);
        roundtrip(encs[i], 1000);
        roundtrip(encs[i], 1 << 20);
    }
}

/* Some servers send raw RFC 1951 data as "deflate". */
static void test_raw_deflate(void **state)
{
    (void)state;
    /* zlib "hello hello hello" with -15 window bits (raw deflate). */
    static const unsigned char raw[] = {0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x57, 0xc8, 0x40, 0x90, 0x00};
    buf out = BUF_INIT;
    char err[160];
    assert_int_equal(
        coding_decode("deflate", (const char *)raw, sizeof raw, 100, &out, err, sizeof err),
        CODING_OK);
    assert_string_equal(out.data, "hello hello hello");
    buf_free(&out);
}

static void test_bomb_capped_by_decoded_size(void **state)
{
    (void)state;
    /* 16 MiB of zeros compress to about 16 KiB: decoding stops at the cap. */
    size_t big = 16u << 20;
    char *zeros = calloc(1, big);
    assert_non_null(zeros);
    const char *encs[] = {"gzip", "br", "gzip, gzip"};
    for (size_t i = 0; i < 3; i++) {
        buf wire = BUF_INIT, out = BUF_INIT;
        char err[160];
        assert_int_equal(coding_encode(encs[i], zeros, big, &wire, err, sizeof err), 0);
        assert_int_equal(coding_decode(encs[i], wire.data, wire.len, 4096, &out, err, sizeof err),
                         CODING_FULL);
        assert_int_equal(out.len, 4096);
        assert_true(out.cap < 64 * 1024);
        buf_free(&wire);
        buf_free(&out);
    }
    free(zeros);
}

static void test_damaged_and_cut(void **state)
{
    (void)state;
    buf plain = BUF_INIT, wire = BUF_INIT, out = BUF_INIT;
    sample(&plain, 5000);
    char err[160];
    /* Not gzip at all. */
    assert_int_equal(coding_decode("gzip", "hello, world", 12, 1000, &out, err, sizeof err),
                     CODING_ERROR);
    assert_string_equal(err, "gzip: incorrect header check");
    buf_reset(&out);
    assert_int_equal(coding_decode("br", "\xff\xff\xff\xff", 4, 1000, &out, err, sizeof err),
                     CODING_ERROR);
    assert_true(strncmp(err, "br: ", 4) == 0);
    buf_reset(&out);
    /* Cut in the middle: an error at finish, not a silent partial body. */
    const char *encs[] = {"gzip", "deflate", "br"};
    for (size_t i = 0; i < 3; i++) {
        buf_reset(&wire);
        buf_reset(&out);
        assert_int_equal(coding_encode(encs[i], plain.data, plain.len, &wire, err, sizeof err), 0);
        assert_int_equal(
            coding_decode(encs[i], wire.data, wire.len / 2, 1 << 20, &out, err, sizeof err),
            CODING_ERROR);
        assert_non_null(strstr(err, "ends before"));
    }
    /* Garbage after a complete stream. */
    buf_reset(&wire);
    buf_reset(&out);
    assert_int_equal(coding_encode("br", plain.data, plain.len, &wire, err, sizeof err), 0);
    buf_append(&wire, "junk", 4);
    assert_int_equal(coding_decode("br", wire.data, wire.len, 1 << 20, &out, err, sizeof err),
                     CODING_ERROR);
    /* Two gzip members are one body (RFC 1952). */
    buf_reset(&wire);
    buf_reset(&out);
    assert_int_equal(coding_encode("gzip", "ab", 2, &wire, err, sizeof err), 0);
    assert_int_equal(coding_encode("gzip", "cd", 2, &wire, err, sizeof err), 0);
    assert_int_equal(coding_decode("gzip", wire.data, wire.len, 100, &out, err, sizeof err),
                     CODING_OK);
    assert_string_equal(out.data, "abcd");
    /* Unknown coding: no decoder. */
    assert_null(coding_decoder_new("compress", &out, 10, err, sizeof err));
    assert_string_equal(err, "unsupported content coding 'compress'");
    /* An empty body is fine (HEAD, 204). */
    buf_reset(&out);
    assert_int_equal(coding_decode("gzip", "", 0, 10, &out, err, sizeof err), CODING_OK);
    buf_free(&plain);
    buf_free(&wire);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),           cmocka_unit_test(test_roundtrips),
        cmocka_unit_test(test_raw_deflate),     cmocka_unit_test(test_bomb_capped_by_decoded_size),
        cmocka_unit_test(test_damaged_and_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
