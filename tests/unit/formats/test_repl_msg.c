/* Unit tests for repl_msg: routing keys, the replicated header list, the
 * canonical form, and signatures (including a known answer computed outside
 * restspy, so the docs/protocol.md example is checked independently). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "formats/repl_msg.h"

/* The worked example of docs/protocol.md. */
#define EX_ID "01936b2a-5c3e-7d4f-8a1b-2c3d4e5f6a7b"
#define EX_BODY "{\"name\":\"example\",\"url\":\"https://example.com/\"}"
#define EX_HEADERS                                                                                 \
    "[[\"Content-Type\",\"application/json\"],[\"Accept\",\"*/*\"],[\"X-Trace\",\"a\"],"           \
    "[\"X-Trace\",\"b\"]]"
#define EX_CANONICAL                                                                               \
    "restspy-v1\n" EX_ID "\n"                                                                      \
    "1732669758\n"                                                                                 \
    "paris\n"                                                                                      \
    "POST\n"                                                                                       \
    "/api/sites/?dry_run=1\n"                                                                      \
    "application/json\n" EX_HEADERS "\n"                                                           \
    "510bd44e5f48f431802c0bb16c13ef1d1ac1f81657d57940a715efd5435d0123"
/* Computed independently of restspy, with:
 *   python3 -c 'import hmac,hashlib,sys; print(hmac.new(b"s3cret",
 *     sys.stdin.buffer.read(), hashlib.sha256).hexdigest())'
 * fed the canonical text above (no trailing newline); the body hash with
 *   printf %s "$EX_BODY" | sha256sum */
#define EX_SIGNATURE "0aac00eea82ece239e2ae46f6dd639de34f5ec30779eb333f27112619a4367e8"

static void add(http_headers *h, const char *n, const char *v)
{
    http_headers_add(h, n, strlen(n), v, strlen(v));
}

/* The request of the worked example, as the proxy captures it. */
static record *example_record(void)
{
    record *r = record_new();
    memcpy(r->id, EX_ID, sizeof r->id);
    r->started_at_us = 1732669758526123LL;
    r->method = strdup("POST");
    r->path = strdup("/api/sites/");
    r->query = strdup("dry_run=1");
    http_headers *h = &r->req_headers;
    add(h, "Host", "api.example.com");
    add(h, "Content-Type", "application/json");
    add(h, "Content-Length", "47");
    add(h, "Connection", "keep-alive, X-Hop");
    add(h, "X-Hop", "1");
    add(h, "Accept", "*/*");
    add(h, "Authorization", "Bearer t0ken");
    add(h, "X-Trace", "a");
    add(h, "Expect", "100-continue");
    add(h, "X-Trace", "b");
    return r;
}

static char *const example_drop[] = {"authorization", NULL};

static repl_msg *example_msg(void)
{
    record *r = example_record();
    buf body = BUF_INIT;
    buf_append_str(&body, EX_BODY);
    repl_msg *m = repl_msg_from_record(r, "paris", &body, example_drop);
    assert_int_equal(body.len, 0); /* moved into the message */
    buf_free(&body);
    record_free(r);
    return m;
}

static char *canonical(const repl_msg *m)
{
    buf c = BUF_INIT;
    repl_msg_canonical(m, &c);
    return buf_detach(&c);
}

/* ---- routing keys ---- */

static void check_key(const char *origin, const char *method, const char *path, const char *want)
{
    char *k = repl_routing_key(origin, method, path);
    assert_string_equal(k, want);
    free(k);
}

static void test_routing_key(void **state)
{
    (void)state;
    check_key("paris", "POST", "/api/sites/", "paris.POST.api.sites");
    check_key("paris", "DELETE", "/api/sites/42", "paris.DELETE.api.sites.42");
    /* root path and empty path: no trailing dot */
    check_key("paris", "PUT", "/", "paris.PUT");
    check_key("paris", "PUT", "", "paris.PUT");
    /* empty segments are skipped */
    check_key("a", "PATCH", "//x///y//", "a.PATCH.x.y");
    /* topic-special bytes inside a segment (and in origin/method) */
    check_key("a", "POST", "/v1.2/f*o/#/b.c.d", "a.POST.v1_2.f_o._.b_c_d");
    check_key("eu.west", "POST", "/x", "eu_west.POST.x");
    check_key("n#1", "P*T", "/x", "n_1.P_T.x");
    /* percent-encoding is kept as is */
    check_key("a", "GET", "/a%2Fb/c%20d", "a.GET.a%2Fb.c%20d");
}

static void test_routing_key_cut(void **state)
{
    (void)state;
    char path[600];
    /* "o.M." is 4 bytes, then 300 'x': cut to exactly 255 bytes. */
    path[0] = '/';
    memset(path + 1, 'x', 300);
    path[301] = '\0';
    char *k = repl_routing_key("o", "M", path);
    assert_int_equal(strlen(k), 255);
    assert_memory_equal(k, "o.M.xxx", 7);
    free(k);

    /* A cut that would leave a trailing '.' drops it (no empty last word). */
    memset(path, 0, sizeof path);
    path[0] = '/';
    memset(path + 1, 'y', 250); /* o.M. + 250 = 254 bytes, then ".z..." */
    strcat(path, "/zzzz");
    k = repl_routing_key("o", "M", path);
    assert_int_equal(strlen(k), 254);
    assert_int_equal(k[253], 'y');
    free(k);

    /* A cut never splits a UTF-8 character: 2-byte "é" across byte 255. */
    memset(path, 0, sizeof path);
    path[0] = '/';
    memset(path + 1, 'w', 250); /* 254 bytes so far; é = bytes 255..256 */
    strcat(path, "\xc3\xa9tail");
    k = repl_routing_key("o", "M", path);
    assert_int_equal(strlen(k), 254);
    free(k);

    /* exactly 255: kept whole */
    memset(path, 0, sizeof path);
    path[0] = '/';
    memset(path + 1, 'v', 251);
    k = repl_routing_key("o", "M", path);
    assert_int_equal(strlen(k), 255);
    assert_int_equal(k[254], 'v');
    free(k);
}

/* ---- building ---- */

static void test_from_record(void **state)
{
    (void)state;
    repl_msg *m = example_msg();
    assert_string_equal(m->id, EX_ID);
    assert_int_equal(m->timestamp, 1732669758);
    assert_string_equal(m->origin, "paris");
    assert_string_equal(m->method, "POST");
    assert_string_equal(m->target, "/api/sites/?dry_run=1");
    assert_string_equal(m->content_type, "application/json");
    assert_string_equal(m->routing_key, "paris.POST.api.sites");
    assert_string_equal(m->headers, EX_HEADERS);
    assert_null(m->signature);
    assert_int_equal(m->body.len, strlen(EX_BODY));
    assert_memory_equal(m->body.data, EX_BODY, m->body.len);
    repl_msg_free(m);

    /* No query, no Content-Type, no body, no drop list. */
    record *r = record_new();
    r->started_at_us = 1999999;
    r->method = strdup("DELETE");
    r->path = strdup("/api/sites/7");
    add(&r->req_headers, "Accept", "*/*");
    m = repl_msg_from_record(r, "b", NULL, NULL);
    assert_string_equal(m->target, "/api/sites/7");
    assert_null(m->content_type);
    assert_int_equal(m->timestamp, 1);
    assert_int_equal(m->body.len, 0);
    assert_string_equal(m->headers, "[[\"Accept\",\"*/*\"]]");
    char *c = canonical(m);
    assert_non_null(strstr(c, "\n/api/sites/7\n\n[[")); /* empty content_type line */
    free(c);
    repl_msg_free(m);

    /* An empty query is kept as "?" (the target is what the client sent). */
    free(r->query);
    r->query = strdup("");
    m = repl_msg_from_record(r, "b", NULL, NULL);
    assert_string_equal(m->target, "/api/sites/7?");
    repl_msg_free(m);
    record_free(r);
}

static void test_headers_filter(void **state)
{
    (void)state;
    record *r = record_new();
    r->method = strdup("PUT");
    r->path = strdup("/x");
    http_headers *h = &r->req_headers;
    add(h, "HOST", "h");
    add(h, "X-First", "1");
    add(h, "content-length", "3");
    add(h, "Transfer-Encoding", "chunked");
    add(h, "Keep-Alive", "timeout=5");
    add(h, "Proxy-Connection", "keep-alive");
    add(h, "TE", "trailers");
    add(h, "Trailer", "X-Sum");
    add(h, "Upgrade", "h2c");
    add(h, "Connection", "Upgrade, x-conn-named");
    add(h, "X-Conn-Named", "gone");
    add(h, "EXPECT", "100-continue");
    add(h, "Cookie", "a=1");
    add(h, "X-Secret", "s");
    add(h, "X-Rep", "one");
    add(h, "x-rep", "two");
    add(h, "Content-Type", "text/plain; charset=utf-8");
    add(h, "X-Quote", "say \"hi\"\\");
    add(h, "X-Rep", "three");
    char *const drop[] = {"cookie", "x-secret", NULL};
    repl_msg *m = repl_msg_from_record(r, "o", NULL, drop);
    assert_string_equal(m->headers, "[[\"X-First\",\"1\"],[\"X-Rep\",\"one\"],[\"x-rep\",\"two\"],"
                                    "[\"Content-Type\",\"text/plain; charset=utf-8\"],"
                                    "[\"X-Quote\",\"say \\\"hi\\\"\\\\\"],[\"X-Rep\",\"three\"]]");
    assert_string_equal(m->content_type, "text/plain; charset=utf-8");

    /* Parsed back: same names, values, order and repeats. */
    http_headers back = {0};
    assert_int_equal(repl_msg_headers(m, &back), 0);
    assert_int_equal(back.len, 6);
    assert_string_equal(back.v[0].name, "X-First");
    assert_string_equal(back.v[1].value, "one");
    assert_string_equal(back.v[2].name, "x-rep");
    assert_string_equal(back.v[4].value, "say \"hi\"\\");
    assert_string_equal(back.v[5].value, "three");
    http_headers_free(&back);
    repl_msg_free(m);

    /* Nothing left: an empty array. Without a drop list Cookie stays. */
    http_headers_free(h);
    add(h, "Host", "h");
    add(h, "Cookie", "a=1");
    m = repl_msg_from_record(r, "o", NULL, drop);
    assert_string_equal(m->headers, "[]");
    assert_int_equal(repl_msg_headers(m, &back), 0);
    assert_int_equal(back.len, 0);
    repl_msg_free(m);
    m = repl_msg_from_record(r, "o", NULL, NULL);
    assert_string_equal(m->headers, "[[\"Cookie\",\"a=1\"]]");
    repl_msg_free(m);
    record_free(r);
}

static void test_headers_parse_errors(void **state)
{
    (void)state;
    repl_msg *m = repl_msg_new();
    http_headers h = {0};
    assert_int_equal(repl_msg_headers(m, &h), -1); /* absent */
    m->headers = strdup("[[\"A\",\"1\"],[\"B\"]]");
    assert_int_equal(repl_msg_headers(m, &h), -1);
    assert_int_equal(h.len, 0);
    free(m->headers);
    m->headers = strdup("{\"A\":\"1\"}");
    assert_int_equal(repl_msg_headers(m, &h), -1);
    free(m->headers);
    m->headers = strdup("[[\"A\",\"1\"]]");
    add(&h, "Pre", "x");
    assert_int_equal(repl_msg_headers(m, &h), 0); /* appends */
    assert_int_equal(h.len, 2);
    assert_string_equal(h.v[1].name, "A");
    http_headers_free(&h);
    repl_msg_free(m);
}

/* ---- canonical form and signatures ---- */

static void test_canonical_exact(void **state)
{
    (void)state;
    repl_msg *m = example_msg();
    char *c = canonical(m);
    assert_string_equal(c, EX_CANONICAL);
    free(c);
    /* Appends, and does not depend on the signature or the routing key. */
    buf out = BUF_INIT;
    buf_append_str(&out, "prefix:");
    m->signature = strdup("whatever");
    free(m->routing_key);
    m->routing_key = strdup("other");
    repl_msg_canonical(m, &out);
    assert_string_equal(out.data, "prefix:" EX_CANONICAL);
    buf_free(&out);
    repl_msg_free(m);
}

static void test_known_answer(void **state)
{
    (void)state;
    repl_msg *m = example_msg();
    repl_msg_sign(m, "s3cret");
    assert_non_null(m->signature);
    assert_string_equal(m->signature, EX_SIGNATURE);
    char why[128] = "";
    assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), 0);
    repl_msg_free(m);

    /* A message received from a foreign producer, field by field. */
    m = repl_msg_new();
    memcpy(m->id, EX_ID, sizeof m->id);
    m->timestamp = 1732669758;
    m->origin = strdup("paris");
    m->method = strdup("POST");
    m->target = strdup("/api/sites/?dry_run=1");
    m->content_type = strdup("application/json");
    m->headers = strdup(EX_HEADERS);
    buf_append_str(&m->body, EX_BODY);
    m->signature = strdup(EX_SIGNATURE);
    assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), 0);
    assert_int_equal(repl_msg_verify(m, "s3cret2", why, sizeof why), -1);
    assert_string_equal(why, "bad signature");
    repl_msg_free(m);
}

static void test_sign_verify_roundtrip(void **state)
{
    (void)state;
    repl_msg *m = example_msg();
    char why[128];
    repl_msg_sign(m, "k");
    assert_int_equal(strlen(m->signature), 64);
    for (const char *p = m->signature; *p; p++)
        assert_non_null(strchr("0123456789abcdef", *p));
    assert_int_equal(repl_msg_verify(m, "k", why, sizeof why), 0);
    /* Signing again replaces the signature (no leak, new key wins). */
    repl_msg_sign(m, "other");
    assert_int_equal(repl_msg_verify(m, "other", why, sizeof why), 0);
    assert_int_equal(repl_msg_verify(m, "k", why, sizeof why), -1);
    assert_string_equal(why, "bad signature");
    /* A NULL or empty secret leaves the message unsigned. */
    repl_msg_sign(m, "");
    assert_null(m->signature);
    repl_msg_sign(m, "k");
    repl_msg_sign(m, NULL);
    assert_null(m->signature);
    repl_msg_free(m);

    /* Binary body (NUL bytes) and no Content-Type. */
    m = example_msg();
    buf_reset(&m->body);
    buf_append(&m->body, "\0\1\2\0", 4);
    free(m->content_type);
    m->content_type = NULL;
    repl_msg_sign(m, "k");
    assert_int_equal(repl_msg_verify(m, "k", why, sizeof why), 0);
    m->body.data[3] = 1;
    assert_int_equal(repl_msg_verify(m, "k", why, sizeof why), -1);
    repl_msg_free(m);
}

typedef void (*tamper_fn)(repl_msg *m);

static void replace(char **field, const char *v)
{
    free(*field);
    *field = v ? strdup(v) : NULL;
}

static void t_origin(repl_msg *m)
{
    replace(&m->origin, "lyon");
}
static void t_method(repl_msg *m)
{
    replace(&m->method, "PUT");
}
static void t_target(repl_msg *m)
{
    replace(&m->target, "/api/sites/?dry_run=0");
}
static void t_headers(repl_msg *m)
{
    replace(&m->headers, "[[\"Content-Type\",\"application/json\"],[\"Accept\",\"*/*\"]]");
}
static void t_headers_order(repl_msg *m)
{
    replace(&m->headers, "[[\"Accept\",\"*/*\"],[\"Content-Type\",\"application/json\"],"
                         "[\"X-Trace\",\"a\"],[\"X-Trace\",\"b\"]]");
}
static void t_content_type(repl_msg *m)
{
    replace(&m->content_type, "text/plain");
}
static void t_content_type_removed(repl_msg *m)
{
    replace(&m->content_type, NULL);
}
static void t_body(repl_msg *m)
{
    m->body.data[2] = 'N';
}
static void t_body_extended(repl_msg *m)
{
    buf_append_char(&m->body, ' ');
}
static void t_id(repl_msg *m)
{
    m->id[35] = m->id[35] == 'b' ? 'c' : 'b';
}
static void t_timestamp(repl_msg *m)
{
    m->timestamp++;
}
/* Moving text between two adjacent fields keeps the concatenation but not
 * the canonical form (fields are separated). */
static void t_shift(repl_msg *m)
{
    replace(&m->origin, "parisP");
    replace(&m->method, "OST");
}

static void test_tampering(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        tamper_fn fn;
    } cases[] = {
        {"origin", t_origin},
        {"method", t_method},
        {"target", t_target},
        {"headers", t_headers},
        {"headers order", t_headers_order},
        {"content_type", t_content_type},
        {"content_type removed", t_content_type_removed},
        {"body", t_body},
        {"body extended", t_body_extended},
        {"id", t_id},
        {"timestamp", t_timestamp},
        {"field boundary", t_shift},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        repl_msg *m = example_msg();
        repl_msg_sign(m, "s3cret");
        char why[128] = "";
        assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), 0);
        cases[i].fn(m);
        if (repl_msg_verify(m, "s3cret", why, sizeof why) != -1)
            fail_msg("tampered %s still verifies", cases[i].what);
        assert_string_equal(why, "bad signature");
        /* Without a secret the (well-formed) tampered message is accepted. */
        assert_int_equal(repl_msg_verify(m, NULL, why, sizeof why), 0);
        repl_msg_free(m);
    }

    /* A tampered signature: one hex digit, case, length. */
    repl_msg *m = example_msg();
    repl_msg_sign(m, "s3cret");
    char why[128];
    m->signature[63] = m->signature[63] == '0' ? '1' : '0';
    assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), -1);
    assert_string_equal(why, "bad signature");
    replace(&m->signature, EX_SIGNATURE "00");
    assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), -1);
    assert_string_equal(why, "bad signature");
    replace(&m->signature, "0aac00eea82ece239e2ae46f6dd639de34f5ec30779eb333f27112619a4367e");
    assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), -1);
    assert_string_equal(why, "bad signature");
    replace(&m->signature, "0AAC00EEA82ECE239E2AE46F6DD639DE34F5EC30779EB333F27112619A4367E8");
    assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), -1);
    assert_string_equal(why, "bad signature");
    repl_msg_free(m);
}

static void test_unsigned(void **state)
{
    (void)state;
    repl_msg *m = example_msg();
    char why[128] = "";
    assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), -1);
    assert_string_equal(why, "unsigned message");
    replace(&m->signature, "");
    assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), -1);
    assert_string_equal(why, "unsigned message");
    /* No secret: unsigned and signed messages are both accepted. */
    assert_int_equal(repl_msg_verify(m, NULL, why, sizeof why), 0);
    assert_int_equal(repl_msg_verify(m, "", why, sizeof why), 0);
    replace(&m->signature, "garbage");
    assert_int_equal(repl_msg_verify(m, NULL, why, sizeof why), 0);
    /* A small why buffer is truncated, not overrun. */
    replace(&m->signature, NULL);
    char small[5];
    assert_int_equal(repl_msg_verify(m, "s3cret", small, sizeof small), -1);
    assert_string_equal(small, "unsi");
    repl_msg_free(m);
}

static void expect_malformed(repl_msg *m, const char *want)
{
    char why[160] = "";
    /* Malformed wins over any signature, with a secret or without. */
    assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), -1);
    assert_string_equal(why, want);
    why[0] = '\0';
    assert_int_equal(repl_msg_verify(m, NULL, why, sizeof why), -1);
    assert_string_equal(why, want);
}

static void test_malformed(void **state)
{
    (void)state;
    repl_msg *m;
#define CASE(stmt, want)                                                                           \
    do {                                                                                           \
        m = example_msg();                                                                         \
        repl_msg_sign(m, "s3cret");                                                                \
        stmt;                                                                                      \
        expect_malformed(m, "malformed message: " want);                                           \
        repl_msg_free(m);                                                                          \
    } while (0)

    CASE(m->id[0] = '\0', "no message_id");
    CASE(m->id[5] = '\n', "bad character in message_id");
    CASE(replace(&m->origin, NULL), "no x-restspy-origin");
    CASE(replace(&m->origin, ""), "no x-restspy-origin");
    CASE(replace(&m->origin, "par\nis"), "bad character in x-restspy-origin");
    CASE(replace(&m->method, NULL), "no x-restspy-method");
    CASE(replace(&m->method, "PO\nST"), "bad character in x-restspy-method");
    CASE(replace(&m->method, "POST /x"), "bad character in x-restspy-method");
    CASE(replace(&m->target, NULL), "no x-restspy-target");
    CASE(replace(&m->target, "/a\nb"), "bad character in x-restspy-target");
    CASE(replace(&m->target, "/a\rb"), "bad character in x-restspy-target");
    CASE(replace(&m->target, "/a b"), "bad character in x-restspy-target");
    CASE(replace(&m->content_type, "text/plain\nX: y"), "bad character in content_type");
    CASE(replace(&m->headers, NULL), "no x-restspy-headers");
    CASE(replace(&m->headers, "[[\"A\",\"1\"]]\n"), /* JSON allows it, the canonical form not */
         "bad character in x-restspy-headers");
    CASE(replace(&m->headers, "not json"),
         "x-restspy-headers is not a JSON array of [name, value] strings");
    CASE(replace(&m->headers, "[[\"A\",1]]"),
         "x-restspy-headers is not a JSON array of [name, value] strings");
    CASE(replace(&m->headers, "[[\"A B\",\"1\"]]"), "x-restspy-headers has an invalid header name");
    CASE(replace(&m->headers, "[[\"\",\"1\"]]"), "x-restspy-headers has an invalid header name");
    CASE(replace(&m->headers, "[[\"A\",\"1\\r\\nEvil: 1\"]]"),
         "x-restspy-headers has a CR or LF in a value");
    CASE(replace(&m->origin_digest,
                 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
         "x-restspy-origin-digest without x-restspy-origin-status");
    CASE(replace(&m->origin_status, "20"),
         "x-restspy-origin-status is not a status code (100-599)");
    CASE(replace(&m->origin_status, "600"),
         "x-restspy-origin-status is not a status code (100-599)");
    CASE(replace(&m->origin_status, "2x1"),
         "x-restspy-origin-status is not a status code (100-599)");
    CASE((replace(&m->origin_status, "201"), replace(&m->origin_digest, "ABC")),
         "x-restspy-origin-digest is not 64 lowercase hex digits");
#undef CASE

    /* Allowed: a tab or spaces in Content-Type, a space in origin, "[]". */
    m = example_msg();
    replace(&m->content_type, "text/plain;\tcharset=utf-8");
    replace(&m->origin, "site one");
    replace(&m->headers, "[]");
    repl_msg_sign(m, "s3cret");
    char why[64];
    assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), 0);
    repl_msg_free(m);
}

/* ---- version 2: the origin's answer ---- */

static void test_v2_answer(void **state)
{
    (void)state;
    repl_msg *m = example_msg();
    char *v1 = canonical(m);
    assert_int_equal(repl_msg_version(m), 1);
    buf abc = BUF_INIT;
    buf_append_str(&abc, "abc");
    repl_msg_set_answer(m, 201, &abc);
    buf_free(&abc);
    assert_int_equal(repl_msg_version(m), 2);
    assert_string_equal(m->origin_status, "201");
    /* FIPS 180-2 test vector: SHA-256("abc") */
    assert_string_equal(m->origin_digest,
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* The v2 form is the v1 form under its own tag, plus status and digest. */
    char *v2 = canonical(m);
    buf want = BUF_INIT;
    buf_append_str(&want, "restspy-v2");
    buf_append_str(&want, v1 + strlen("restspy-v1"));
    buf_append_str(&want,
                   "\n201\nba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_string_equal(v2, want.data);
    buf_free(&want);
    free(v1);
    free(v2);

    char why[160] = "";
    repl_msg_sign(m, "s3cret");
    assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), 0);
    /* Both fields are signed: a changed status or digest, or a v2 message
     * passed off as v1 (fields stripped), fails. */
    replace(&m->origin_status, "409");
    assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), -1);
    assert_string_equal(why, "bad signature");
    replace(&m->origin_status, "201");
    replace(&m->origin_digest, NULL);
    assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), -1);
    replace(&m->origin_status, NULL);
    assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), -1);

    /* A cut body: status only, still version 2 and verifiable. */
    repl_msg_set_answer(m, 409, NULL);
    assert_null(m->origin_digest);
    repl_msg_sign(m, "s3cret");
    assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), 0);
    assert_int_equal(repl_msg_version(m), 2);
    repl_msg_free(m);
}

/* The origin's body: a twelfth line (its SHA-256) only when carried, so a
 * version-2 message without one keeps its form; the body is signed, so a
 * changed, stripped or added body fails. */
static void test_v2_origin_body(void **state)
{
    (void)state;
    repl_msg *m = example_msg();
    buf abc = BUF_INIT;
    buf_append_str(&abc, "abc");
    repl_msg_set_answer(m, 201, &abc);
    char *eleven = canonical(m);
    repl_msg_set_origin_body(m, abc.data, abc.len);
    char *twelve = canonical(m);
    buf want = BUF_INIT;
    buf_append_str(&want, eleven);
    buf_append_str(&want, "\nba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_string_equal(twelve, want.data);
    buf_free(&want);
    free(eleven);
    free(twelve);

    char why[160] = "";
    repl_msg_sign(m, "s3cret");
    assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), 0);
    buf_reset(&m->origin_body);
    buf_append_str(&m->origin_body, "abd");
    assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), -1);
    assert_string_equal(why, "bad signature");
    buf_reset(&m->origin_body); /* stripped */
    assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), -1);
    repl_msg_sign(m, "s3cret");
    assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), 0);
    buf_append_str(&m->origin_body, "abc"); /* added */
    assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), -1);
    /* Carried without the origin's status: malformed. */
    replace(&m->origin_status, NULL);
    replace(&m->origin_digest, NULL);
    assert_int_equal(repl_msg_verify(m, "s3cret", why, sizeof why), -1);
    assert_string_equal(why,
                        "malformed message: x-restspy-origin-body without x-restspy-origin-status");
    /* Setting an empty body carries none. */
    repl_msg_set_answer(m, 201, NULL);
    repl_msg_set_origin_body(m, "", 0);
    assert_int_equal(m->origin_body.len, 0);
    buf_free(&abc);
    repl_msg_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routing_key),
        cmocka_unit_test(test_routing_key_cut),
        cmocka_unit_test(test_from_record),
        cmocka_unit_test(test_headers_filter),
        cmocka_unit_test(test_headers_parse_errors),
        cmocka_unit_test(test_canonical_exact),
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_sign_verify_roundtrip),
        cmocka_unit_test(test_tampering),
        cmocka_unit_test(test_unsigned),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_v2_answer),
        cmocka_unit_test(test_v2_origin_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
