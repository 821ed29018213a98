/* Unit tests for httpmsg: hop-by-hop rules and the heads restspy writes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/httpmsg.h"

/* A request to write a head for; its headers are filled by the test. */
typedef struct req {
    httpmsg_request q;
    http_headers h;
} req;

static req *req_new(const char *method, const char *path, const char *query)
{
    req *r = calloc(1, sizeof *r);
    r->q = (httpmsg_request){method, path, query, &r->h};
    return r;
}

static void req_free(req *r)
{
    http_headers_free(&r->h);
    free(r);
}

static void add(http_headers *h, const char *n, const char *v)
{
    http_headers_add(h, n, strlen(n), v, strlen(v));
}

static void test_hop_by_hop(void **state)
{
    (void)state;
    assert_true(httpmsg_is_hop_by_hop("Connection", 10));
    assert_true(httpmsg_is_hop_by_hop("KEEP-ALIVE", 10));
    assert_true(httpmsg_is_hop_by_hop("transfer-encoding", 17));
    assert_true(httpmsg_is_hop_by_hop("TE", 2));
    assert_false(httpmsg_is_hop_by_hop("Content-Length", 14));
    assert_false(httpmsg_is_hop_by_hop("Tee", 3));
    assert_true(httpmsg_is_hop_by_hop("Trailer", 7));
    assert_true(httpmsg_is_hop_by_hop("upgrade", 7));
    assert_true(httpmsg_is_hop_by_hop("Proxy-Connection", 16));
    assert_false(httpmsg_is_hop_by_hop("Upgrades", 8));
    assert_false(httpmsg_is_hop_by_hop("Connectio", 9));
    assert_false(httpmsg_is_hop_by_hop("X-Request", 9));
    http_headers h = {0};
    add(&h, "Connection", "keep-alive, X-Secret-Hop ,Foo");
    assert_true(httpmsg_connection_has(&h, "x-secret-hop"));
    assert_true(httpmsg_connection_has(&h, "foo"));
    assert_false(httpmsg_connection_has(&h, "fo"));
    assert_true(httpmsg_drop_header(&h, "X-Secret-Hop"));
    assert_false(httpmsg_drop_header(&h, "X-Other"));
    http_headers_free(&h);
}

static void test_token(void **state)
{
    (void)state;
    assert_true(httpmsg_is_token("X-Request-Id", 12));
    assert_true(httpmsg_is_token("a!#$%&'*+-.^_`|~9", 17));
    assert_false(httpmsg_is_token("X-Bad ", 6));
    assert_false(httpmsg_is_token("X\tBad", 5));
    assert_false(httpmsg_is_token("", 0));
    assert_false(httpmsg_is_token("a:b", 3));
    assert_false(httpmsg_is_token("a\0b", 3));
    assert_false(httpmsg_is_token("caf\xc3\xa9", 5));
}

static void test_request_head(void **state)
{
    (void)state;
    req *r = req_new("POST", "/api/x", "a=1&b=2");
    add(&r->h, "Host", "example.test");
    add(&r->h, "Connection", "keep-alive, Foo");
    add(&r->h, "Foo", "dropped");
    add(&r->h, "Keep-Alive", "timeout=5");
    add(&r->h, "X-Multi", "1");
    add(&r->h, "X-Multi", "2");
    add(&r->h, "X-Forwarded-For", "10.0.0.1");
    add(&r->h, "Transfer-Encoding", "chunked");
    add(&r->h, "Expect", "100-continue");
    buf out = BUF_INIT;
    httpmsg_req_opts o = {.client_ip = "127.0.0.1",
                          .request_id = "rid",
                          .default_host = "up:80",
                          .chunked = true,
                          .strip_expect = true};
    httpmsg_request_head(&out, &r->q, &o);
    assert_string_equal(out.data, "POST /api/x?a=1&b=2 HTTP/1.1\r\n"
                                  "Host: example.test\r\n"
                                  "X-Multi: 1\r\n"
                                  "X-Multi: 2\r\n"
                                  "X-Forwarded-For: 10.0.0.1, 127.0.0.1\r\n"
                                  "X-Forwarded-Proto: http\r\n"
                                  "X-Request-Id: rid\r\n"
                                  "Transfer-Encoding: chunked\r\n"
                                  "\r\n");
    buf_free(&out);
    req_free(r);
}

static void test_request_head_defaults(void **state)
{
    (void)state;
    req *r = req_new("GET", "/", NULL);
    add(&r->h, "X-Request-Id", "client-id");
    add(&r->h, "X-Forwarded-Proto", "https");
    add(&r->h, "Content-Length", "0");
    buf out = BUF_INIT;
    httpmsg_req_opts o = {.client_ip = "::1", .request_id = "rid", .default_host = "up:8000"};
    httpmsg_request_head(&out, &r->q, &o);
    assert_string_equal(out.data, "GET / HTTP/1.1\r\n"
                                  "X-Request-Id: client-id\r\n"
                                  "X-Forwarded-Proto: https\r\n"
                                  "Content-Length: 0\r\n"
                                  "Host: up:8000\r\n"
                                  "X-Forwarded-For: ::1\r\n"
                                  "\r\n");
    buf_free(&out);
    req_free(r);
}

static void test_upgrade_head(void **state)
{
    (void)state;
    req *r = req_new("GET", "/ws", NULL);
    add(&r->h, "Host", "h");
    add(&r->h, "Connection", "Upgrade");
    add(&r->h, "Upgrade", "websocket");
    buf out = BUF_INIT;
    httpmsg_req_opts o = {.client_ip = "1.2.3.4", .request_id = "r", .upgrade = true};
    httpmsg_request_head(&out, &r->q, &o);
    assert_non_null(strstr(out.data, "\r\nUpgrade: websocket\r\n"));
    assert_non_null(strstr(out.data, "\r\nConnection: upgrade\r\n\r\n"));
    buf_free(&out);
    req_free(r);
}

static void test_response_head(void **state)
{
    (void)state;
    http_headers h = {0};
    add(&h, "Content-Type", "application/json");
    add(&h, "Content-Length", "12");
    add(&h, "Connection", "close");
    add(&h, "Transfer-Encoding", "chunked");
    buf out = BUF_INIT;
    httpmsg_response_head(&out, 200, "OK", 2, &h, HTTPMSG_BODY_LENGTH, true, false);
    assert_string_equal(out.data, "HTTP/1.1 200 OK\r\n"
                                  "Content-Type: application/json\r\n"
                                  "Content-Length: 12\r\n"
                                  "\r\n");
    buf_reset(&out);
    httpmsg_response_head(&out, 201, NULL, 0, &h, HTTPMSG_BODY_CHUNKED, false, false);
    assert_string_equal(out.data, "HTTP/1.1 201 Created\r\n"
                                  "Content-Type: application/json\r\n"
                                  "Transfer-Encoding: chunked\r\n"
                                  "Connection: close\r\n"
                                  "\r\n");
    buf_reset(&out);
    httpmsg_response_head(&out, 200, "Fine", 4, &h, HTTPMSG_BODY_LENGTH, true, true);
    assert_non_null(strstr(out.data, "HTTP/1.1 200 Fine\r\n"));
    assert_non_null(strstr(out.data, "Connection: keep-alive\r\n\r\n"));
    buf_free(&out);
    http_headers_free(&h);
}

/* A header the upstream names in its Connection header is hop-by-hop too;
 * one it does not name goes through. */
static void test_response_connection_listed(void **state)
{
    (void)state;
    http_headers h = {0};
    add(&h, "X-Hop", "private");
    add(&h, "Connection", "X-Hop");
    add(&h, "X-Kept", "1");
    add(&h, "Content-Length", "0");
    buf out = BUF_INIT;
    httpmsg_response_head(&out, 204, NULL, 0, &h, HTTPMSG_BODY_NONE, true, false);
    assert_string_equal(out.data, "HTTP/1.1 204 No Content\r\n"
                                  "X-Kept: 1\r\n"
                                  "Content-Length: 0\r\n"
                                  "\r\n");
    buf_free(&out);
    http_headers_free(&h);
}

static void test_error_response(void **state)
{
    (void)state;
    buf out = BUF_INIT;
    httpmsg_error_response(&out, 502, "upstream unreachable", "0192-id", false);
    const char *body = "{\"error\":\"upstream unreachable\",\"request_id\":\"0192-id\"}\n";
    char expect[512];
    snprintf(expect, sizeof expect,
             "HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\nX-Request-Id: 0192-id\r\nConnection: close\r\n\r\n%s",
             strlen(body), body);
    assert_string_equal(out.data, expect);
    buf_free(&out);
    assert_string_equal(httpmsg_reason(431), "Request Header Fields Too Large");
    assert_string_equal(httpmsg_reason(599), "Unknown");
    /* the one table (HAR's statusText uses it too): RFC 9110 phrases */
    assert_string_equal(httpmsg_reason_lookup(203), "Non-Authoritative Information");
    assert_string_equal(httpmsg_reason_lookup(303), "See Other");
    assert_string_equal(httpmsg_reason_lookup(410), "Gone");
    assert_string_equal(httpmsg_reason_lookup(413), "Content Too Large");
    assert_string_equal(httpmsg_reason_lookup(414), "URI Too Long");
    assert_string_equal(httpmsg_reason_lookup(422), "Unprocessable Content");
    assert_string_equal(httpmsg_reason_lookup(505), "HTTP Version Not Supported");
    assert_null(httpmsg_reason_lookup(0));
    assert_null(httpmsg_reason_lookup(306));
    assert_null(httpmsg_reason_lookup(599));
    buf_init(&out);
    httpmsg_chunk_header(&out, 0x1a2);
    assert_string_equal(out.data, "1a2\r\n");
    buf_free(&out);
}

/* RFC 9112 §3.2 and §6.1 checks made before a request is forwarded. */
static void test_check_request(void **state)
{
    (void)state;
    struct {
        const char *headers[4][2];
        int minor;
        int status;
        const char *why;
        int major; /* 0: 1 */
    } cases[] = {
        {{{"Host", "a"}}, 0, 505, "http version not supported", 2},
        {{{"Host", "a"}}, 9, 505, "http version not supported", 9},
        {{{"Host", "a"}}, 1, 0, NULL, 0},
        {{{"Host", "a"}, {"Transfer-Encoding", "chunked"}}, 1, 0, NULL, 0},
        {{{"Host", "a"}, {"transfer-encoding", " Chunked "}}, 1, 0, NULL, 0},
        {{{"X", "1"}}, 0, 0, NULL, 0}, /* HTTP/1.0 needs no Host */
        {{{"X", "1"}}, 1, 400, "bad request: missing Host header", 0},
        {{{"Host", "a"}, {"HOST", "b"}}, 1, 400, "bad request: several Host headers", 0},
        {{{"Host", "a"}, {"Host", "a"}}, 0, 400, "bad request: several Host headers", 0},
        {{{"Host", "a"}, {"Transfer-Encoding", ""}},
         1,
         400,
         "bad request: empty Transfer-Encoding",
         0},
        {{{"Host", "a"}, {"Transfer-Encoding", "xchunked"}},
         1,
         501,
         "not implemented: transfer coding other than chunked",
         0},
        {{{"Host", "a"}, {"Transfer-Encoding", "gzip, chunked"}},
         1,
         501,
         "not implemented: transfer coding other than chunked",
         0},
        {{{"Host", "a"}, {"Transfer-Encoding", "identity"}},
         1,
         501,
         "not implemented: transfer coding other than chunked",
         0},
        {{{"Host", "a"}, {"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}},
         1,
         400,
         "bad request: chunked applied more than once",
         0},
        {{{"Host", "a"}, {"Transfer-Encoding", "chunked"}},
         0,
         400,
         "bad request: Transfer-Encoding in an HTTP/1.0 request",
         0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http_headers h = {0};
        for (int k = 0; k < 4 && cases[i].headers[k][0]; k++)
            add(&h, cases[i].headers[k][0], cases[i].headers[k][1]);
        const char *why = NULL;
        int st =
            httpmsg_check_request(&h, cases[i].major ? cases[i].major : 1, cases[i].minor, &why);
        if (st != cases[i].status)
            fail_msg("case %zu: status %d, want %d", i, st, cases[i].status);
        if (cases[i].why)
            assert_string_equal(why, cases[i].why);
        http_headers_free(&h);
    }
}

/* The CRLF after chunk data, seen whole or split across reads. */
static void test_chunk_crlf(void **state)
{
    (void)state;
    unsigned need = 2;
    assert_true(httpmsg_chunk_crlf(&need, "\r\n5\r\n", 6));
    assert_int_equal(need, 0);
    need = 2;
    assert_true(httpmsg_chunk_crlf(&need, "", 0));
    assert_int_equal(need, 2);
    assert_true(httpmsg_chunk_crlf(&need, "\r", 1));
    assert_int_equal(need, 1);
    assert_true(httpmsg_chunk_crlf(&need, "\n0", 2));
    assert_int_equal(need, 0);
    need = 2;
    assert_false(httpmsg_chunk_crlf(&need, "YY0\r\n", 5));
    need = 2;
    assert_true(httpmsg_chunk_crlf(&need, "\r", 1));
    assert_false(httpmsg_chunk_crlf(&need, "X", 1));
    need = 2;
    assert_false(httpmsg_chunk_crlf(&need, "\n\r", 2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_request_head),
        cmocka_unit_test(test_request_head_defaults),
        cmocka_unit_test(test_upgrade_head),
        cmocka_unit_test(test_response_head),
        cmocka_unit_test(test_response_connection_listed),
        cmocka_unit_test(test_error_response),
        cmocka_unit_test(test_check_request),
        cmocka_unit_test(test_chunk_crlf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
