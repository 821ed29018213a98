/* test_frame: the collect protocol's codec (src/collect/frame.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "capture/config.h"
#include "collect/frame.h"

/* A PAIR body: u32 meta length, meta, then the bodies. */
static void pair_body(buf *out, const char *meta, const char *bodies, size_t blen)
{
    size_t m = strlen(meta);
    unsigned char l[4] = {(unsigned char)(m >> 24), (unsigned char)(m >> 16),
                          (unsigned char)(m >> 8), (unsigned char)m};
    buf_append(out, l, 4);
    buf_append(out, meta, m);
    buf_append(out, bodies, blen);
}

static void test_roundtrip(void **state)
{
    (void)state;
    buf b = BUF_INIT;
    frame_append(&b, FRAME_VERSION, FRAME_ACK, 7, "{}", 2);
    frame_append(&b, FRAME_VERSION, FRAME_ERROR, 8, "x", 1);
    assert_int_equal(b.len, 2 * FRAME_HEADER_LEN + 3);
    size_t off = 0;
    frame_header h;
    const char *body, *why = NULL;
    assert_int_equal(frame_take(&b, &off, FRAME_VERSION, 1024, &h, &body, &why), FRAME_OK);
    assert_int_equal(h.type, FRAME_ACK);
    assert_int_equal(h.seq, 7);
    assert_int_equal(h.length, 2);
    assert_memory_equal(body, "{}", 2);
    assert_int_equal(frame_take(&b, &off, FRAME_VERSION, 1024, &h, &body, &why), FRAME_OK);
    assert_int_equal(h.seq, 8);
    assert_int_equal(off, b.len);
    assert_int_equal(frame_take(&b, &off, FRAME_VERSION, 1024, &h, &body, &why), FRAME_MORE);
    buf_free(&b);
}

/* Every cut of a frame is "more", never a frame or an error. */
static void test_truncated(void **state)
{
    (void)state;
    buf whole = BUF_INIT;
    frame_append(&whole, FRAME_VERSION, FRAME_PAIR, 1, "0123456789", 10);
    for (size_t n = 0; n < whole.len; n++) {
        buf part = BUF_INIT;
        buf_append(&part, whole.data, n);
        size_t off = 0;
        frame_header h;
        const char *body, *why = NULL;
        assert_int_equal(frame_take(&part, &off, FRAME_VERSION, 1024, &h, &body, &why), FRAME_MORE);
        assert_int_equal(off, 0);
        buf_free(&part);
    }
    buf_free(&whole);
}

/* A bad header is refused from its 16 bytes: magic, version, type, flags,
 * a length over the limit (before any of the body is there). */
static void test_bad_headers(void **state)
{
    (void)state;
    struct {
        size_t at;
        unsigned char byte;
        const char *why;
    } cases[] = {
        {0, 'X', "bad magic"},        {4, 3, "unsupported protocol version"},
        {5, 0, "unknown frame type"}, {5, 6, "unknown frame type"},
        {7, 1, "reserved flags"},     {12, 0x7f, "over collect_max_frame"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf b = BUF_INIT;
        frame_append(&b, FRAME_VERSION, FRAME_PAIR, 1, "", 0);
        b.data[cases[i].at] = (char)cases[i].byte;
        size_t off = 0;
        frame_header h;
        const char *body, *why = NULL;
        assert_int_equal(frame_take(&b, &off, FRAME_VERSION, 1024, &h, &body, &why), FRAME_BAD);
        assert_non_null(strstr(why, cases[i].why));
        buf_free(&b);
    }
}

static void test_hello(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(frame_hello_version("{\"versions\":[3,1]}", 18, &why), 1);
    assert_int_equal(frame_hello_version("{\"versions\":[1,2]}", 18, &why), 2);
    assert_int_equal(frame_hello_version("{\"versions\":[2]}", 16, &why), 2);
    assert_int_equal(frame_hello_version("{\"versions\":[3]}", 16, &why), 0);
    assert_non_null(strstr(why, "no protocol version in common"));
    assert_int_equal(frame_hello_version("nope", 4, &why), 0);
    assert_non_null(strstr(why, "expected"));
}

static void test_pair(void **state)
{
    (void)state;
    buf b = BUF_INIT;
    pair_body(&b,
              "{\"view\":\"orders\",\"method\":\"POST\",\"path\":\"/api/orders\",\"query\":\"a=1\","
              "\"host\":\"site\",\"status\":201,\"req_headers\":[[\"Content-Type\",\"x\"],"
              "[\"X-Restspy-Replicated-From\",\"b\"]],\"resp_headers\":[[\"A\",\"1\"]],"
              "\"req_body_length\":3,\"resp_body_length\":2,\"flags\":{\"log\":true,"
              "\"replicate\":true},\"durability\":\"async\",\"duration_us\":5}",
              "a\0bok", 5);
    frame_pair p;
    char err[200];
    assert_int_equal(frame_pair_decode(b.data, b.len, 1, &p, err, sizeof err), 0);
    assert_string_equal(p.view, "orders");
    assert_string_equal(p.rec->method, "POST");
    assert_string_equal(p.rec->path, "/api/orders");
    assert_string_equal(p.rec->query, "a=1");
    assert_string_equal(p.rec->host, "site");
    assert_int_equal(p.rec->status, 201);
    assert_int_equal(p.rec->req_body.len, 3);
    assert_memory_equal(p.rec->req_body.data, "a\0b", 3); /* binary-safe */
    assert_memory_equal(p.req_full.data, "a\0b", 3);
    assert_memory_equal(p.rec->resp_body.data, "ok", 2);
    assert_true(p.has_flags && p.log && !p.persist && p.replicate);
    assert_int_equal(p.durability, REPL_ASYNC);
    assert_true(p.from_peer);
    assert_string_equal(p.rec->origin, "local"); /* pipeline_decide makes it "replicated" */
    assert_int_equal(p.rec->duration_us, 5);
    frame_pair_free(&p);
    buf_free(&b);
}

/* A wrong pair is refused whole, with a reason. */
static void test_pair_refused(void **state)
{
    (void)state;
    const char *metas[] = {
        "{\"method\":\"GET\",\"path\":\"/\",\"status\":200}",                 /* no view */
        "{\"view\":\"v\",\"method\":\"GET\",\"path\":\"x\",\"status\":200}",  /* path */
        "{\"view\":\"v\",\"method\":\"GET\",\"path\":\"/\",\"status\":1000}", /* status */
        "{\"view\":\"v\",\"method\":\"GET\",\"path\":\"/\",\"status\":200,"
        "\"req_body_length\":1}", /* lengths do not add up */
        "{\"view\":\"v\",\"method\":\"GET\",\"path\":\"/\",\"status\":200,"
        "\"req_headers\":[[\"a\"]]}", /* header pair */
        "{\"view\":\"v\",\"method\":\"GET\",\"path\":\"/\",\"status\":200,"
        "\"durability\":\"soon\"}",
        "[1]",
        "{\"view\":",
    };
    for (size_t i = 0; i < sizeof metas / sizeof metas[0]; i++) {
        buf b = BUF_INIT;
        pair_body(&b, metas[i], "", 0);
        frame_pair p;
        char err[200] = "";
        assert_int_equal(frame_pair_decode(b.data, b.len, 1, &p, err, sizeof err), -1);
        assert_non_null(strstr(err, "pair: "));
        assert_null(p.rec);
        buf_free(&b);
    }
    frame_pair p;
    char err[200];
    assert_int_equal(frame_pair_decode("\0\0\0\x09{}", 6, 1, &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "past the frame"));
    assert_int_equal(frame_pair_decode("ab", 2, 1, &p, err, sizeof err), -1);
}

/* Version 2: the ACK flag on a PAIR only, FLUSH known; version 1 knows
 * neither. */
static void test_v2_headers(void **state)
{
    (void)state;
    struct {
        uint8_t version, type;
        uint16_t flags;
        frame_status want;
    } cases[] = {
        {2, FRAME_PAIR, FRAME_FLAG_ACK, FRAME_OK},
        {1, FRAME_PAIR, FRAME_FLAG_ACK, FRAME_BAD},
        {2, FRAME_PAIR, 2, FRAME_BAD},
        {2, FRAME_FLUSH, 0, FRAME_OK},
        {1, FRAME_FLUSH, 0, FRAME_BAD},
        {2, FRAME_FLUSH, FRAME_FLAG_ACK, FRAME_BAD},
        {2, FRAME_FLUSH + 1, 0, FRAME_BAD},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf b = BUF_INIT;
        frame_append(&b, cases[i].version, cases[i].type, 9, "", 0);
        b.data[6] = (char)(cases[i].flags >> 8);
        b.data[7] = (char)cases[i].flags;
        size_t off = 0;
        frame_header h;
        const char *body, *why = NULL;
        assert_int_equal(frame_take(&b, &off, cases[i].version, 1024, &h, &body, &why),
                         cases[i].want);
        if (cases[i].want == FRAME_OK)
            assert_int_equal(h.flags, cases[i].flags);
        buf_free(&b);
    }
}

/* A version-2 PAIR: the meta's scalars, then the header blocks ("Name:
 * value" lines, blanks after the colon skipped, values kept whole), then
 * the bodies. */
static void test_pair_v2(void **state)
{
    (void)state;
    const char blocks[] = "Content-Type: application/json\r\nX-Restspy-Replicated-From:b\r\n"
                          "A: 1 2\r\n"
                          "a\0bok";
    buf b = BUF_INIT;
    pair_body(&b,
              "{\"view\":\"orders\",\"method\":\"POST\",\"path\":\"/o\",\"status\":201,"
              "\"req_headers_length\":61,\"resp_headers_length\":8,\"req_body_length\":3,"
              "\"resp_body_length\":2}",
              blocks, sizeof blocks - 1);
    frame_pair p;
    char err[200];
    assert_int_equal(frame_pair_decode(b.data, b.len, 2, &p, err, sizeof err), 0);
    assert_int_equal(p.rec->req_headers.len, 2);
    assert_string_equal(http_headers_get(&p.rec->req_headers, "content-type"), "application/json");
    assert_string_equal(http_headers_get(&p.rec->req_headers, "x-restspy-replicated-from"), "b");
    assert_true(p.from_peer);
    assert_int_equal(p.rec->resp_headers.len, 1);
    assert_string_equal(http_headers_get(&p.rec->resp_headers, "A"), "1 2");
    assert_memory_equal(p.rec->req_body.data, "a\0b", 3);
    assert_memory_equal(p.rec->resp_body.data, "ok", 2);
    frame_pair_free(&p);
    buf_free(&b);

    /* Refused: headers as JSON in version 2, a line without CRLF, a name
     * that is no token, a bare LF inside a value, lengths that do not add
     * up. */
    struct {
        const char *meta, *rest;
    } bad[] = {
        {"{\"view\":\"v\",\"method\":\"GET\",\"path\":\"/\",\"status\":200,"
         "\"req_headers\":[]}",
         ""},
        {"{\"view\":\"v\",\"method\":\"GET\",\"path\":\"/\",\"status\":200,"
         "\"req_headers_length\":4}",
         "A: 1"},
        {"{\"view\":\"v\",\"method\":\"GET\",\"path\":\"/\",\"status\":200,"
         "\"req_headers_length\":8}",
         "A B: 1\r\n"},
        {"{\"view\":\"v\",\"method\":\"GET\",\"path\":\"/\",\"status\":200,"
         "\"resp_headers_length\":8}",
         "A: 1\n2\r\n"},
        {"{\"view\":\"v\",\"method\":\"GET\",\"path\":\"/\",\"status\":200,"
         "\"req_headers_length\":5}",
         "A: 1\r\n"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        buf x = BUF_INIT;
        pair_body(&x, bad[i].meta, bad[i].rest, strlen(bad[i].rest));
        err[0] = '\0';
        assert_int_equal(frame_pair_decode(x.data, x.len, 2, &p, err, sizeof err), -1);
        assert_non_null(strstr(err, "pair: "));
        assert_null(p.rec);
        buf_free(&x);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),   cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_bad_headers), cmocka_unit_test(test_hello),
        cmocka_unit_test(test_pair),        cmocka_unit_test(test_pair_refused),
        cmocka_unit_test(test_v2_headers),  cmocka_unit_test(test_pair_v2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
