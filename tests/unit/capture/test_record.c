#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <string.h>

#include "http/coding.h"
#include "capture/record.h"
#include "base/util.h"

/* 2026-11-27T05:46:18.123456Z */
#define T0 1795758378123456LL

static record *sample(void)
{
    record *r = record_new();
    r->node = xstrdup("node-a");
    r->started_at_us = T0;
    r->duration_us = 1500;
    r->upstream_us = 1200;
    r->client_addr = xstrdup("10.1.2.3:54321");
    r->method = xstrdup("POST");
    r->scheme = xstrdup("http");
    r->host = xstrdup("api.example");
    r->path = xstrdup("/v1/items");
    r->query = xstrdup("a=1&b=2");
    r->http_minor = 1;
    http_headers_add(&r->req_headers, "Content-Type", 12, "application/json", 16);
    http_headers_add(&r->req_headers, "User-Agent", 10, "curl/8.0 \"x\"", 12);
    http_headers_add(&r->req_headers, "X-Dup", 5, "1", 1);
    http_headers_add(&r->req_headers, "X-Dup", 5, "2", 1);
    buf_append_str(&r->req_body, "{\"k\":\"v\"}");
    r->req_body_size = 9;
    r->status = 201;
    http_headers_add(&r->resp_headers, "Content-Length", 14, "2", 1);
    buf_append_str(&r->resp_body, "ok");
    r->resp_body_size = 2;
    r->resp_bytes_sent = 123;
    r->rule = xstrdup("default");
    return r;
}

static json_t *parse(const buf *b)
{
    json_error_t e;
    json_t *j = json_loadb(b->data, b->len, 0, &e);
    if (!j)
        fail_msg("invalid JSON (%s): %s", e.text, b->data);
    return j;
}

static void test_new_free(void **state)
{
    (void)state;
    record *r = record_new();
    assert_true(uuid7_time_ms(r->id) > 0);
    assert_string_equal(r->origin, "local");
    assert_int_equal(r->upstream_us, -1);
    assert_null(r->method);
    assert_int_equal(r->status, 0);
    record *r2 = record_new();
    assert_true(strcmp(r->id, r2->id) < 0);
    record_free(r);
    record_free(r2);
    record_free(NULL);
    record_free(sample()); /* valgrind: everything released */
}

static void test_headers(void **state)
{
    (void)state;
    http_headers h = {0};
    assert_null(http_headers_get(&h, "x"));
    for (int i = 0; i < 40; i++)
        http_headers_add(&h, "X-N", 3, "v", 1);
    http_headers_add(&h, "Content-Type", 12, "text/plain; x", 10); /* value cut by len */
    assert_int_equal(h.len, 41);
    assert_string_equal(http_headers_get(&h, "content-type"), "text/plain");
    assert_string_equal(http_headers_get(&h, "CONTENT-TYPE"), "text/plain");
    assert_null(http_headers_get(&h, "content-typ"));
    http_headers_free(&h);
    assert_int_equal(h.len, 0);
    assert_null(h.v);
}

static void test_json_fields(void **state)
{
    (void)state;
    record *r = sample();
    buf b = BUF_INIT;
    record_to_json(r, 0, &b);
    json_t *j = parse(&b);
    assert_string_equal(json_string_value(json_object_get(j, "id")), r->id);
    assert_string_equal(json_string_value(json_object_get(j, "node")), "node-a");
    assert_string_equal(json_string_value(json_object_get(j, "time")),
                        "2026-11-27T05:46:18.123456Z");
    assert_int_equal(json_integer_value(json_object_get(j, "started_at")), T0);
    assert_int_equal(json_integer_value(json_object_get(j, "duration_us")), 1500);
    assert_int_equal(json_integer_value(json_object_get(j, "upstream_us")), 1200);
    assert_string_equal(json_string_value(json_object_get(j, "client_addr")), "10.1.2.3:54321");
    assert_string_equal(json_string_value(json_object_get(j, "method")), "POST");
    assert_string_equal(json_string_value(json_object_get(j, "scheme")), "http");
    assert_string_equal(json_string_value(json_object_get(j, "host")), "api.example");
    assert_string_equal(json_string_value(json_object_get(j, "path")), "/v1/items");
    assert_string_equal(json_string_value(json_object_get(j, "query")), "a=1&b=2");
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 201);
    assert_int_equal(json_integer_value(json_object_get(j, "req_body_size")), 9);
    assert_true(json_is_false(json_object_get(j, "req_truncated")));
    assert_int_equal(json_integer_value(json_object_get(j, "resp_body_size")), 2);
    assert_true(json_is_false(json_object_get(j, "resp_truncated")));
    assert_string_equal(json_string_value(json_object_get(j, "rule")), "default");
    assert_string_equal(json_string_value(json_object_get(j, "origin")), "local");
    assert_true(json_is_null(json_object_get(j, "error")));
    /* no flags: no headers, no bodies */
    assert_null(json_object_get(j, "req_headers"));
    assert_null(json_object_get(j, "req_body"));
    assert_null(json_object_get(j, "resp_body_b64"));
    assert_int_equal(json_object_size(j), 20);
    json_decref(j);
    buf_free(&b);
    record_free(r);
}

static void test_json_nulls(void **state)
{
    (void)state;
    record *r = record_new();
    r->started_at_us = 0;
    r->error = xstrdup("upstream timeout");
    r->req_truncated = true;
    buf b = BUF_INIT;
    record_to_json(r, RECORD_JSON_HEADERS | RECORD_JSON_BODIES, &b);
    json_t *j = parse(&b);
    const char *nullable[] = {"node", "client_addr", "method", "scheme",
                              "host", "path",        "query",  "rule"};
    for (size_t i = 0; i < sizeof nullable / sizeof *nullable; i++)
        assert_true(json_is_null(json_object_get(j, nullable[i])));
    assert_string_equal(json_string_value(json_object_get(j, "time")),
                        "1970-01-01T00:00:00.000000Z");
    assert_string_equal(json_string_value(json_object_get(j, "error")), "upstream timeout");
    assert_int_equal(json_integer_value(json_object_get(j, "upstream_us")), -1);
    assert_true(json_is_true(json_object_get(j, "req_truncated")));
    /* empty bodies are empty strings, empty headers empty arrays */
    assert_string_equal(json_string_value(json_object_get(j, "req_body")), "");
    assert_string_equal(json_string_value(json_object_get(j, "resp_body")), "");
    assert_int_equal(json_array_size(json_object_get(j, "req_headers")), 0);
    assert_true(json_is_array(json_object_get(j, "resp_headers")));
    json_decref(j);
    buf_free(&b);
    record_free(r);
}

static void test_json_headers_bodies(void **state)
{
    (void)state;
    record *r = sample();
    /* binary response body, including NUL and high bytes */
    static const unsigned char bin[] = {0x00, 0xff, 0x10, 0x80, 'a', 0xc3};
    buf_reset(&r->resp_body);
    buf_append(&r->resp_body, bin, sizeof bin);
    /* invalid UTF-8 in a header value must still give valid JSON */
    http_headers_add(&r->resp_headers, "X-Bad", 5, "a\xff\xfe\"b", 5);
    buf b = BUF_INIT;
    record_to_json(r, RECORD_JSON_HEADERS | RECORD_JSON_BODIES, &b);
    json_t *j = parse(&b);

    json_t *rh = json_object_get(j, "req_headers");
    assert_int_equal(json_array_size(rh), 4);
    assert_string_equal(json_string_value(json_array_get(json_array_get(rh, 1), 0)), "User-Agent");
    assert_string_equal(json_string_value(json_array_get(json_array_get(rh, 1), 1)),
                        "curl/8.0 \"x\"");
    assert_string_equal(json_string_value(json_array_get(json_array_get(rh, 3), 1)), "2");
    json_t *sh = json_object_get(j, "resp_headers");
    assert_int_equal(json_array_size(sh), 2);
    assert_string_equal(json_string_value(json_array_get(json_array_get(sh, 1), 0)), "X-Bad");

    assert_string_equal(json_string_value(json_object_get(j, "req_body")), "{\"k\":\"v\"}");
    assert_null(json_object_get(j, "resp_body"));
    const char *b64 = json_string_value(json_object_get(j, "resp_body_b64"));
    assert_non_null(b64);
    assert_string_equal(b64, "AP8QgGHD");
    json_decref(j);

    /* headers JSON round trip */
    buf hb = BUF_INIT;
    http_headers_to_json(&r->req_headers, &hb);
    assert_string_equal(hb.data, "[[\"Content-Type\",\"application/json\"],[\"User-Agent\","
                                 "\"curl/8.0 \\\"x\\\"\"],[\"X-Dup\",\"1\"],[\"X-Dup\",\"2\"]]");
    http_headers h = {0};
    assert_int_equal(http_headers_from_json(&h, hb.data, hb.len), 0);
    assert_int_equal(h.len, 4);
    for (size_t i = 0; i < h.len; i++) {
        assert_string_equal(h.v[i].name, r->req_headers.v[i].name);
        assert_string_equal(h.v[i].value, r->req_headers.v[i].value);
    }
    http_headers_free(&h);
    buf_free(&hb);
    buf_free(&b);
    record_free(r);
}

/* The cached headers JSON (shared by the log line and the store row) is
 * exactly what the line would have without it. */
static void test_cached_headers_json(void **state)
{
    (void)state;
    record *r = sample();
    buf plain = BUF_INIT, cached = BUF_INIT;
    record_to_json(r, RECORD_JSON_HEADERS | RECORD_JSON_BODIES, &plain);
    record_cache_headers_json(r);
    assert_true(r->headers_json[0].len > 0);
    assert_true(r->headers_json[1].len > 0);
    record_to_json(r, RECORD_JSON_HEADERS | RECORD_JSON_BODIES, &cached);
    assert_string_equal(plain.data, cached.data);
    buf hb = BUF_INIT, hc = BUF_INIT;
    http_headers_to_json(&r->resp_headers, &hb);
    record_append_headers_json(r, 1, &hc);
    assert_string_equal(hb.data, hc.data);
    buf_free(&hb);
    buf_free(&hc);
    buf_free(&plain);
    buf_free(&cached);
    record_free(r); /* frees the cache too (valgrind) */
}

static void test_headers_from_json_bad(void **state)
{
    (void)state;
    http_headers h = {0};
    http_headers_add(&h, "A", 1, "1", 1);
    const char *bad[] = {"",
                         "{}",
                         "[[\"a\"]]",
                         "[[\"a\",1]]",
                         "[[\"a\",\"b\"],3]",
                         "[[\"a\",\"b\"",
                         "[[\"a\",\"b\",\"c\"]]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(http_headers_from_json(&h, bad[i], strlen(bad[i])), -1);
        assert_int_equal(h.len, 1); /* untouched */
    }
    assert_int_equal(http_headers_from_json(&h, "[]", 2), 0);
    const char *nul = "[[\"B\",\"x\\u0000y\"]]";
    assert_int_equal(http_headers_from_json(&h, nul, strlen(nul)), 0);
    assert_int_equal(h.len, 2);
    assert_string_equal(h.v[1].name, "B");
    assert_string_equal(h.v[1].value, "x"); /* NUL inside: C string stops there */
    http_headers_free(&h);
}

/* Ids read from files are stored in one canonical form, so that `show`
 * finds an id whatever case the file used; what is not a UUID is refused. */
static void test_json_id_canonical(void **state)
{
    (void)state;
    char err[128];
    const char *up = "{\"id\":\"01A23FCC-9BDA-7472-A5D2-E214FC0FE428\",\"method\":\"GET\"}";
    record *r = record_from_json(up, strlen(up), err, sizeof err);
    assert_non_null(r);
    assert_string_equal(r->id, "01a23fcc-9bda-7472-a5d2-e214fc0fe428");
    record_free(r);
    const char *bad[] = {"{\"id\":\"01a23fcc-9bda-7472-a5d2-e214fc0fe42g\"}",
                         "{\"id\":\"01a23fcc+9bda-7472-a5d2-e214fc0fe428\"}",
                         "{\"id\":\"01a23fcc\"}", "{\"id\":7}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_null(record_from_json(bad[i], strlen(bad[i]), err, sizeof err));
        assert_string_equal(err, "id: expected a UUID (8-4-4-4-12 hex digits)");
    }
}

static void test_set_target(void **state)
{
    (void)state;
    record *r = record_new();
    record_set_target(r, "/a/b?x=1&y", 10);
    assert_string_equal(r->path, "/a/b");
    assert_string_equal(r->query, "x=1&y");
    record_set_target(r, "/a?", 3); /* an empty query is not a missing one */
    assert_string_equal(r->path, "/a");
    assert_string_equal(r->query, "");
    record_set_target(r, "/q1?token=s", 3); /* n bounds the target */
    assert_string_equal(r->path, "/q1");
    assert_null(r->query);
    record_free(r);
}

/* Compressed bodies are stored decoded; what cannot be decoded is dropped
 * or kept as received, with the reason. */
static void test_decode_bodies(void **state)
{
    (void)state;
    const char *doc = "{\"password\":\"s3cret\"}";
    record *r = record_new();
    http_headers_add(&r->resp_headers, "Content-Encoding", 16, "gzip", 4);
    char err[100];
    assert_int_equal(coding_encode("gzip", doc, strlen(doc), &r->resp_body, err, sizeof err), 0);
    r->resp_body_size = r->resp_body.len;
    http_headers_add(&r->req_headers, "Content-Encoding", 16, "br", 2);
    buf_append_str(&r->req_body, "not brotli");
    record_decode_bodies(r, 1000, 1000, false);
    assert_string_equal(r->resp_body.data, doc);
    assert_string_equal(r->resp_encoding, "gzip");
    assert_null(r->resp_body_note);
    assert_false(r->resp_truncated);
    assert_int_equal(r->req_body.len, 0);
    assert_string_equal(r->req_encoding, "br");
    assert_non_null(strstr(r->req_body_note, "dropped: br: "));
    record_free(r);

    /* Kept as received when asked; cut at the cap otherwise. */
    r = record_new();
    http_headers_add(&r->req_headers, "Content-Encoding", 16, "zstd", 4);
    buf_append_str(&r->req_body, "zzz");
    http_headers_add(&r->resp_headers, "Content-Encoding", 16, "deflate", 7);
    assert_int_equal(coding_encode("deflate", doc, strlen(doc), &r->resp_body, err, sizeof err), 0);
    record_decode_bodies(r, 1000, 5, true);
    assert_string_equal(r->req_body.data, "zzz");
    assert_string_equal(r->req_body_note, "undecoded: unsupported content coding 'zstd'");
    assert_int_equal(r->resp_body.len, 5);
    assert_true(r->resp_truncated);
    assert_null(r->resp_body_note);
    record_free(r);

    /* A copy cut at the cap mid-stream is a short body, not a damaged one. */
    r = record_new();
    http_headers_add(&r->resp_headers, "Content-Encoding", 16, "gzip", 4);
    assert_int_equal(coding_encode("gzip", doc, strlen(doc), &r->resp_body, err, sizeof err), 0);
    r->resp_body.len -= 6;
    r->resp_truncated = true;
    record_decode_bodies(r, 1000, 1000, false);
    assert_null(r->resp_body_note);
    assert_true(r->resp_truncated);
    record_free(r);
}

static void test_combined(void **state)
{
    (void)state;
    record *r = sample();
    http_headers_add(&r->req_headers, "Referer", 7, "http://a/\x01\\", 11);
    buf b = BUF_INIT;
    record_to_combined(r, &b);
    assert_string_equal(b.data,
                        "10.1.2.3 - - [27/Nov/2026:05:46:18 +0000] \"POST /v1/items?a=1&b=2 "
                        "HTTP/1.1\" 201 123 \"http://a/\\x01\\x5C\" \"curl/8.0 \\x22x\\x22\"");
    buf_free(&b);
    record_free(r);

    /* minimal record: IPv6 client, no query, no headers, nothing sent */
    r = record_new();
    r->client_addr = xstrdup("[::1]:8080");
    r->method = xstrdup("GET");
    r->path = xstrdup("/");
    r->http_minor = 0;
    r->status = 404;
    r->started_at_us = T0;
    record_to_combined(r, &b);
    assert_string_equal(
        b.data, "::1 - - [27/Nov/2026:05:46:18 +0000] \"GET / HTTP/1.0\" 404 - \"-\" \"-\"");
    buf_free(&b);
    record_free(r);

    /* nothing parsed at all */
    r = record_new();
    r->status = 400;
    r->started_at_us = 0;
    record_to_combined(r, &b);
    assert_string_equal(b.data, "- - - [01/Jan/1970:00:00:00 +0000] \"-\" 400 - \"-\" \"-\"");
    buf_free(&b);
    record_free(r);
}

/* record_mem counts what a record holds: itself, each string, header
 * blocks and buffers by capacity (the store's queue bound relies on it). */
static void test_record_mem(void **state)
{
    (void)state;
    record *r = record_new();
    size_t base = record_mem(r);
    assert_true(base >= sizeof(record) + 32); /* the struct and "local" */
    r->path = xstrdup("/api/items/1");
    size_t with_path = record_mem(r);
    assert_true(with_path >= base + 13 && with_path <= base + 13 + 32);
    http_headers_add(&r->resp_headers, "Content-Type", 12, "application/json", 16);
    size_t with_header = record_mem(r);
    assert_true(with_header >= with_path + 1024); /* a whole string block */
    buf_reserve(&r->resp_body, 8000);
    assert_true(record_mem(r) >= with_header + 8000); /* capacity, not length */
    record_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_free),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_json_fields),
        cmocka_unit_test(test_json_nulls),
        cmocka_unit_test(test_json_headers_bodies),
        cmocka_unit_test(test_cached_headers_json),
        cmocka_unit_test(test_headers_from_json_bad),
        cmocka_unit_test(test_combined),
        cmocka_unit_test(test_set_target),
        cmocka_unit_test(test_json_id_canonical),
        cmocka_unit_test(test_decode_bodies),
        cmocka_unit_test(test_record_mem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
