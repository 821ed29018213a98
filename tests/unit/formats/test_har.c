#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/har.h"
#include "capture/record.h"
#include "base/util.h"

/* 2026-11-27T05:46:18.123456Z */
#define T0 1795758378123456LL

/* ---- fixtures ---- */

static void hdr(http_headers *h, const char *n, const char *v)
{
    http_headers_add(h, n, strlen(n), v, strlen(v));
}

/* POST with a UTF-8 JSON body, repeated headers, cookies, an encoded query,
 * truncated flags and every optional column set. */
static record *rec_utf8(void)
{
    record *r = record_new();
    r->node = xstrdup("node-a");
    r->started_at_us = T0;
    r->duration_us = 1500;
    r->upstream_us = 1200;
    r->client_addr = xstrdup("10.1.2.3:54321");
    r->method = xstrdup("POST");
    r->scheme = xstrdup("http");
    r->host = xstrdup("api.example:8080");
    r->path = xstrdup("/v1/it%C3%A9ms");
    r->query = xstrdup("q=a%20b%26c&x=%E2%9C%93&plus=1+2&flag&bad=%zz");
    hdr(&r->req_headers, "Host", "api.example:8080");
    hdr(&r->req_headers, "Content-Type", "application/json");
    hdr(&r->req_headers, "X-Dup", "1");
    hdr(&r->req_headers, "X-Dup", "2");
    hdr(&r->req_headers, "Cookie", "a=1; b=two");
    buf_append_str(&r->req_body, "{\"name\":\"caf\xc3\xa9 \xe2\x9c\x93\"}");
    r->req_body_size = 4096; /* more on the wire than captured */
    r->req_truncated = true;
    r->status = 302;
    hdr(&r->resp_headers, "Content-Type", "text/plain; charset=utf-8");
    hdr(&r->resp_headers, "Set-Cookie", "sid=abc; Path=/; HttpOnly");
    hdr(&r->resp_headers, "Set-Cookie", "lang=fr");
    hdr(&r->resp_headers, "Location", "/v1/items/7");
    buf_append_str(&r->resp_body, "moved \xe2\x86\x92 here");
    r->resp_body_size = 99999;
    r->resp_truncated = true;
    r->rule = xstrdup("api");
    r->replication = xstrdup("queued");
    return r;
}

static const unsigned char BIN_REQ[] = {0x00, 0x01, '%', '\\', '\'', 0xff, 'A', '\n'};
static const unsigned char BIN_RESP[] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0x00};

static record *rec_binary(void)
{
    record *r = record_new();
    r->started_at_us = T0 + 1;
    r->duration_us = 10;
    r->upstream_us = 20; /* more than duration: HAR timings must still add up */
    r->method = xstrdup("PUT");
    r->scheme = xstrdup("http");
    r->host = xstrdup("files.example");
    r->path = xstrdup("/blob");
    hdr(&r->req_headers, "Content-Type", "application/octet-stream");
    buf_append(&r->req_body, BIN_REQ, sizeof BIN_REQ);
    r->req_body_size = sizeof BIN_REQ;
    r->status = 200;
    hdr(&r->resp_headers, "Content-Type", "image/png");
    buf_append(&r->resp_body, BIN_RESP, sizeof BIN_RESP);
    r->resp_body_size = sizeof BIN_RESP;
    return r;
}

/* GET, empty bodies, no Host header and no host, an empty query. */
static record *rec_empty(void)
{
    record *r = record_new();
    r->started_at_us = T0 + 2;
    r->method = xstrdup("GET");
    r->path = xstrdup("/");
    r->query = xstrdup("");
    r->status = 204;
    free(r->origin);
    r->origin = xstrdup("replicated");
    return r;
}

/* The upstream never answered. */
static record *rec_noresp(void)
{
    record *r = record_new();
    r->started_at_us = T0 + 3;
    r->duration_us = 30000000;
    r->method = xstrdup("DELETE");
    r->scheme = xstrdup("http");
    r->host = xstrdup("api.example");
    r->path = xstrdup("/v1/items/7");
    hdr(&r->req_headers, "Host", "api.example");
    r->status = 0;
    r->error = xstrdup("upstream timeout");
    return r;
}

/* A request that was never parsed (the proxy answered 400): no method, no path. */
static record *rec_unparsed(void)
{
    record *r = record_new();
    r->started_at_us = T0 + 4;
    r->status = 400;
    r->error = xstrdup("invalid request: bad method");
    r->client_addr = xstrdup("[::1]:4000");
    return r;
}

/* "OPTIONS *": a target that is not a path. */
static record *rec_asterisk(void)
{
    record *r = record_new();
    r->started_at_us = T0 + 5;
    r->method = xstrdup("OPTIONS");
    r->path = xstrdup("*");
    r->host = xstrdup("api.example");
    hdr(&r->req_headers, "Host", "api.example");
    r->status = 200;
    return r;
}

/* Compressed on the wire, stored decoded (issue 9 item 4). */
static record *rec_coded(void)
{
    record *r = record_new();
    r->started_at_us = T0 + 6;
    r->method = xstrdup("POST");
    r->path = xstrdup("/c");
    hdr(&r->req_headers, "Content-Type", "application/x-www-form-urlencoded");
    hdr(&r->req_headers, "Content-Encoding", "gzip");
    buf_append_str(&r->req_body, "x=1");
    r->req_body_size = 23;
    r->req_encoding = xstrdup("gzip");
    r->status = 200;
    hdr(&r->resp_headers, "Content-Type", "text/plain");
    hdr(&r->resp_headers, "Content-Encoding", "br");
    for (int i = 0; i < 1000; i++)
        buf_append_char(&r->resp_body, 'a');
    r->resp_body_size = 12;
    r->resp_encoding = xstrdup("br");
    return r;
}

/* Bodies that could not be decoded: the request's dropped (redaction on),
 * the response's kept as received. */
static record *rec_undecodable(void)
{
    record *r = record_new();
    r->started_at_us = T0 + 7;
    r->method = xstrdup("PUT");
    r->path = xstrdup("/u");
    hdr(&r->req_headers, "Content-Encoding", "gzip");
    r->req_body_size = 50;
    r->req_encoding = xstrdup("gzip");
    r->req_body_note = xstrdup("dropped: gzip: incorrect header check");
    r->status = 200;
    hdr(&r->resp_headers, "Content-Encoding", "br");
    buf_append(&r->resp_body, "\x8b\x00\xff", 3);
    r->resp_body_size = 3;
    r->resp_encoding = xstrdup("br");
    r->resp_body_note = xstrdup("undecoded: br: damaged stream");
    return r;
}

typedef record *(*maker)(void);
static const maker MAKERS[] = {rec_utf8,     rec_binary,   rec_empty, rec_noresp,
                               rec_unparsed, rec_asterisk, rec_coded, rec_undecodable};
#define NMAKERS (sizeof MAKERS / sizeof MAKERS[0])

/* ---- helpers ---- */

static void tmp_path(char *out, size_t len, const char *tag)
{
    snprintf(out, len, "/tmp/restspy-har-%s-XXXXXX", tag);
    int fd = mkstemp(out);
    assert_true(fd >= 0);
    close(fd);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void str_eq(const char *field, const char *a, const char *b)
{
    if (!a || !b) {
        if (a != b)
            fail_msg("%s: \"%s\" != \"%s\"", field, a ? a : "(null)", b ? b : "(null)");
        return;
    }
    if (strcmp(a, b) != 0)
        fail_msg("%s: \"%s\" != \"%s\"", field, a, b);
}

static void headers_eq(const char *field, const http_headers *a, const http_headers *b)
{
    if (a->len != b->len)
        fail_msg("%s: %zu headers != %zu", field, a->len, b->len);
    for (size_t i = 0; i < a->len; i++) {
        str_eq(field, a->v[i].name, b->v[i].name);
        str_eq(field, a->v[i].value, b->v[i].value);
    }
}

static void body_eq(const char *field, const buf *a, const buf *b)
{
    if (a->len != b->len)
        fail_msg("%s: %zu bytes != %zu", field, a->len, b->len);
    if (a->len && memcmp(a->data, b->data, a->len) != 0)
        fail_msg("%s: bytes differ", field);
}

enum { EQ_REPLICATION = 1 };

/* Field by field, with the field's name in the failure message. */
static void records_eq(const record *a, const record *b, unsigned what)
{
    str_eq("id", a->id, b->id);
    str_eq("node", a->node, b->node);
    assert_int_equal(a->started_at_us, b->started_at_us);
    assert_int_equal(a->duration_us, b->duration_us);
    assert_int_equal(a->upstream_us, b->upstream_us);
    str_eq("client_addr", a->client_addr, b->client_addr);
    str_eq("method", a->method, b->method);
    str_eq("scheme", a->scheme, b->scheme);
    str_eq("host", a->host, b->host);
    str_eq("path", a->path, b->path);
    str_eq("query", a->query, b->query);
    headers_eq("req_headers", &a->req_headers, &b->req_headers);
    body_eq("req_body", &a->req_body, &b->req_body);
    assert_int_equal(a->req_body_size, b->req_body_size);
    assert_int_equal(a->req_truncated, b->req_truncated);
    assert_int_equal(a->status, b->status);
    headers_eq("resp_headers", &a->resp_headers, &b->resp_headers);
    body_eq("resp_body", &a->resp_body, &b->resp_body);
    assert_int_equal(a->resp_body_size, b->resp_body_size);
    assert_int_equal(a->resp_truncated, b->resp_truncated);
    str_eq("rule", a->rule, b->rule);
    str_eq("origin", a->origin, b->origin);
    str_eq("error", a->error, b->error);
    str_eq("req_encoding", a->req_encoding, b->req_encoding);
    str_eq("req_body_note", a->req_body_note, b->req_body_note);
    str_eq("resp_encoding", a->resp_encoding, b->resp_encoding);
    str_eq("resp_body_note", a->resp_body_note, b->resp_body_note);
    if (what & EQ_REPLICATION)
        str_eq("replication", a->replication, b->replication);
}

static void write_har(const char *path, record *const *v, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    har_writer *w = har_begin(f);
    for (size_t i = 0; i < n; i++)
        har_add(w, v[i]);
    assert_int_equal(har_end(w), 0);
    fclose(f);
}

static json_t *load(const char *path)
{
    json_error_t e;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &e);
    if (!j)
        fail_msg("%s: invalid JSON: %s (line %d)", path, e.text, e.line);
    return j;
}

static json_t *get(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    if (!v)
        fail_msg("missing member \"%s\"", k);
    return v;
}

#define REQUIRE(o, k, is) assert_true(is(get((o), (k))))

/* ---- record_from_json ---- */

static void test_record_json_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < NMAKERS; i++) {
        record *r = MAKERS[i]();
        for (unsigned flags = 0; flags < 4; flags++) {
            buf b = BUF_INIT;
            record_to_json(r, flags, &b);
            char err[128] = "";
            record *back = record_from_json(b.data, b.len, err, sizeof err);
            if (!back)
                fail_msg("record %zu flags %u: %s", i, flags, err);
            if (flags == (RECORD_JSON_HEADERS | RECORD_JSON_BODIES)) {
                records_eq(r, back, 0);
            } else {
                /* without the flag, headers/bodies are absent, the rest is there */
                str_eq("id", r->id, back->id);
                assert_int_equal(back->req_body_size, r->req_body_size);
                assert_int_equal(back->status, r->status);
                if (!(flags & RECORD_JSON_BODIES))
                    assert_int_equal(back->req_body.len, 0);
                if (!(flags & RECORD_JSON_HEADERS))
                    assert_int_equal(back->req_headers.len, 0);
            }
            record_free(back);
            buf_free(&b);
        }
        record_free(r);
    }
}

static void test_record_json_time_and_defaults(void **state)
{
    (void)state;
    char err[128];
    const char *j1 = "{\"time\":\"2026-11-27T05:46:18.123456Z\",\"method\":\"GET\"}";
    record *r = record_from_json(j1, strlen(j1), err, sizeof err);
    assert_non_null(r);
    assert_int_equal(r->started_at_us, T0);
    assert_true(uuid7_time_ms(r->id) > 0); /* no id: a fresh one */
    assert_int_equal(r->upstream_us, -1);
    assert_null(r->origin);
    assert_null(r->query);
    assert_int_equal(r->http_minor, 1);
    record_free(r);

    /* offsets, fewer or more fraction digits; started_at wins over time */
    const char *j2 = "{\"time\":\"2026-11-27T06:46:18.1234567+01:00\"}";
    r = record_from_json(j2, strlen(j2), err, sizeof err);
    assert_non_null(r);
    assert_int_equal(r->started_at_us, T0);
    record_free(r);
    const char *j3 = "{\"time\":\"2026-11-27T05:46:18Z\",\"started_at\":5}";
    r = record_from_json(j3, strlen(j3), err, sizeof err);
    assert_non_null(r);
    assert_int_equal(r->started_at_us, 5);
    record_free(r);
    const char *j4 = "{\"time\":\"1969-12-31T23:59:59.5Z\"}";
    r = record_from_json(j4, strlen(j4), err, sizeof err);
    assert_non_null(r);
    assert_int_equal(r->started_at_us, -500000);
    record_free(r);
}

static void test_record_json_errors(void **state)
{
    (void)state;
    static const struct {
        const char *json, *msg;
    } cases[] = {
        {"{", "invalid JSON"},
        {"[1]", "not a JSON object"},
        {"{\"id\":\"short\"}", "id: expected"},
        {"{\"status\":\"200\"}", "status: expected an integer"},
        {"{\"status\":1000}", "status: out of range"},
        {"{\"method\":7}", "method: expected a string"},
        {"{\"req_truncated\":1}", "req_truncated: expected true or false"},
        {"{\"req_headers\":[[\"a\"]]}", "req_headers: expected [[name, value]"},
        {"{\"resp_headers\":{}}", "resp_headers: expected"},
        {"{\"req_body_b64\":\"!!!\"}", "req_body_b64: not valid base64"},
        {"{\"resp_body\":3}", "resp_body: expected a string"},
        {"{\"resp_body_size\":-1}", "resp_body_size: negative size"},
        {"{\"time\":\"2026-13-01T00:00:00Z\"}", "time: expected an RFC 3339 time"},
        {"{\"time\":\"2026-11-27 05:46:18\"}", "time: expected an RFC 3339 time"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[128] = "";
        record *r = record_from_json(cases[i].json, strlen(cases[i].json), err, sizeof err);
        if (r)
            fail_msg("%s: accepted", cases[i].json);
        if (!strstr(err, cases[i].msg))
            fail_msg("%s: error \"%s\", want \"%s\"", cases[i].json, err, cases[i].msg);
    }
}

static void test_record_json_base64_tolerant(void **state)
{
    (void)state;
    char err[128];
    /* MIME line breaks and missing padding, as some tools write them */
    const char *j = "{\"resp_body_b64\":\"aGVs\\r\\nbG8\",\"req_body_b64\":\"\"}";
    record *r = record_from_json(j, strlen(j), err, sizeof err);
    assert_non_null(r);
    assert_int_equal(r->resp_body.len, 5);
    assert_memory_equal(r->resp_body.data, "hello", 5);
    assert_int_equal(r->resp_body_size, 5);
    assert_int_equal(r->req_body.len, 0);
    record_free(r);
}

/* ---- HAR ---- */

static void test_har_round_trip(void **state)
{
    (void)state;
    record *v[NMAKERS];
    for (size_t i = 0; i < NMAKERS; i++)
        v[i] = MAKERS[i]();
    char path[64];
    tmp_path(path, sizeof path, "rt");
    write_har(path, v, NMAKERS);

    record **got;
    size_t n;
    char err[256];
    if (har_read(path, false, &got, &n, NULL, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(n, NMAKERS);
    for (size_t i = 0; i < n; i++)
        records_eq(v[i], got[i], EQ_REPLICATION);
    records_free(got, n);

    /* an empty export is a valid document too */
    write_har(path, NULL, 0);
    assert_int_equal(har_read(path, false, &got, &n, NULL, err, sizeof err), 0);
    assert_int_equal(n, 0);
    records_free(got, n);

    for (size_t i = 0; i < NMAKERS; i++)
        record_free(v[i]);
    unlink(path);
}

static void check_name_values(json_t *a)
{
    assert_true(json_is_array(a));
    size_t i;
    json_t *x;
    json_array_foreach(a, i, x)
    {
        REQUIRE(x, "name", json_is_string);
        REQUIRE(x, "value", json_is_string);
    }
}

/* Every required HAR 1.2 field, with its JSON type. */
static void check_har_entry(json_t *e)
{
    const char *ts = json_string_value(get(e, "startedDateTime"));
    assert_non_null(ts);
    assert_int_equal(strlen(ts), 24); /* 2026-11-27T05:46:18.123Z */
    assert_int_equal(ts[10], 'T');
    assert_int_equal(ts[19], '.');
    assert_int_equal(ts[23], 'Z');
    REQUIRE(e, "time", json_is_number);

    json_t *q = get(e, "request");
    REQUIRE(q, "method", json_is_string);
    REQUIRE(q, "url", json_is_string);
    assert_true(strstr(json_string_value(get(q, "url")), "://") != NULL);
    REQUIRE(q, "httpVersion", json_is_string);
    check_name_values(get(q, "cookies"));
    check_name_values(get(q, "headers"));
    check_name_values(get(q, "queryString"));
    REQUIRE(q, "headersSize", json_is_integer);
    REQUIRE(q, "bodySize", json_is_integer);
    json_t *pd = json_object_get(q, "postData");
    if (pd) {
        REQUIRE(pd, "mimeType", json_is_string);
        REQUIRE(pd, "text", json_is_string);
    }

    json_t *s = get(e, "response");
    REQUIRE(s, "status", json_is_integer);
    REQUIRE(s, "statusText", json_is_string);
    REQUIRE(s, "httpVersion", json_is_string);
    check_name_values(get(s, "cookies"));
    check_name_values(get(s, "headers"));
    json_t *c = get(s, "content");
    REQUIRE(c, "size", json_is_integer);
    REQUIRE(c, "mimeType", json_is_string);
    if (json_object_get(c, "text"))
        REQUIRE(c, "text", json_is_string);
    REQUIRE(s, "redirectURL", json_is_string);
    REQUIRE(s, "headersSize", json_is_integer);
    REQUIRE(s, "bodySize", json_is_integer);

    assert_true(json_is_object(get(e, "cache")));
    json_t *t = get(e, "timings");
    double sum = 0;
    const char *parts[] = {"send", "wait", "receive"};
    for (size_t i = 0; i < 3; i++) {
        REQUIRE(t, parts[i], json_is_number);
        double v = json_number_value(get(t, parts[i]));
        assert_true(v >= 0);
        sum += v;
    }
    double time = json_number_value(get(e, "time"));
    assert_true(sum > time - 1e-6 && sum < time + 1e-6);
}

/* Issue 9 item 16: a body over the capture cap says so where any HAR
 * reader looks, not only in restspy's private fields. */
static void test_har_truncated_comment(void **state)
{
    (void)state;
    record *r = rec_utf8(); /* both bodies cut at capture */
    char path[64];
    tmp_path(path, sizeof path, "trunc");
    write_har(path, &r, 1);
    json_t *root = load(path);
    json_t *e = json_array_get(get(get(root, "log"), "entries"), 0);
    json_t *c = get(get(e, "response"), "content");
    assert_int_equal(json_integer_value(get(c, "size")), 99999);
    assert_string_equal(json_string_value(get(c, "comment")),
                        "restspy: body incomplete: text holds the first 14 of its 99999 bytes");
    json_t *pd = get(get(e, "request"), "postData");
    assert_string_equal(json_string_value(get(pd, "comment")),
                        "restspy: body incomplete: text holds the first 20 of its 4096 bytes");
    json_decref(root);
    record_free(r);
    unlink(path);
}

static void test_har_required_fields(void **state)
{
    (void)state;
    record *v[NMAKERS];
    for (size_t i = 0; i < NMAKERS; i++)
        v[i] = MAKERS[i]();
    char path[64];
    tmp_path(path, sizeof path, "fields");
    write_har(path, v, NMAKERS);
    json_t *doc = load(path);
    json_t *log = get(doc, "log");
    assert_string_equal(json_string_value(get(log, "version")), "1.2");
    json_t *creator = get(log, "creator");
    assert_string_equal(json_string_value(get(creator, "name")), "restspy");
    REQUIRE(creator, "version", json_is_string);
    json_t *entries = get(log, "entries");
    assert_int_equal(json_array_size(entries), NMAKERS);
    for (size_t i = 0; i < NMAKERS; i++)
        check_har_entry(json_array_get(entries, i));

    /* values of the first (UTF-8) entry */
    json_t *e = json_array_get(entries, 0);
    assert_string_equal(json_string_value(get(e, "startedDateTime")), "2026-11-27T05:46:18.123Z");
    assert_true(json_number_value(get(e, "time")) == 1.5);
    assert_true(json_number_value(get(get(e, "timings"), "wait")) == 1.2);
    json_t *q = get(e, "request");
    assert_string_equal(json_string_value(get(q, "url")),
                        "http://api.example:8080/v1/it%C3%A9ms?"
                        "q=a%20b%26c&x=%E2%9C%93&plus=1+2&flag&bad=%zz");
    json_t *qs = get(q, "queryString");
    assert_int_equal(json_array_size(qs), 5);
    assert_string_equal(json_string_value(get(json_array_get(qs, 0), "value")), "a b&c");
    assert_string_equal(json_string_value(get(json_array_get(qs, 1), "value")), "\xe2\x9c\x93");
    assert_string_equal(json_string_value(get(json_array_get(qs, 2), "value")), "1 2");
    assert_string_equal(json_string_value(get(json_array_get(qs, 3), "name")), "flag");
    assert_string_equal(json_string_value(get(json_array_get(qs, 3), "value")), "");
    assert_string_equal(json_string_value(get(json_array_get(qs, 4), "value")), "%zz");
    json_t *ck = get(q, "cookies");
    assert_int_equal(json_array_size(ck), 2);
    assert_string_equal(json_string_value(get(json_array_get(ck, 1), "name")), "b");
    assert_string_equal(json_string_value(get(json_array_get(ck, 1), "value")), "two");
    assert_int_equal(json_array_size(get(q, "headers")), 5);
    assert_string_equal(json_string_value(get(get(q, "postData"), "mimeType")), "application/json");
    assert_null(json_object_get(get(q, "postData"), "_encoding"));
    assert_int_equal(json_integer_value(get(q, "bodySize")), 4096);
    json_t *s = get(e, "response");
    assert_int_equal(json_integer_value(get(s, "status")), 302);
    assert_string_equal(json_string_value(get(s, "statusText")), "Found");
    assert_string_equal(json_string_value(get(s, "redirectURL")), "/v1/items/7");
    json_t *sc = get(s, "cookies");
    assert_int_equal(json_array_size(sc), 2);
    assert_string_equal(json_string_value(get(json_array_get(sc, 0), "value")), "abc");
    assert_string_equal(json_string_value(get(json_array_get(sc, 0), "path")), "/");
    assert_true(json_is_true(get(json_array_get(sc, 0), "httpOnly")));
    assert_string_equal(json_string_value(get(json_array_get(sc, 1), "name")), "lang");
    assert_null(json_object_get(get(s, "content"), "encoding"));

    /* binary: base64 with the encoding marked */
    e = json_array_get(entries, 1);
    json_t *pd = get(get(e, "request"), "postData");
    assert_string_equal(json_string_value(get(pd, "_encoding")), "base64");
    assert_string_equal(json_string_value(get(pd, "text")), "AAElXCf/QQo=");
    json_t *c = get(get(e, "response"), "content");
    assert_string_equal(json_string_value(get(c, "encoding")), "base64");
    assert_string_equal(json_string_value(get(c, "mimeType")), "image/png");
    assert_true(json_number_value(get(get(e, "timings"), "wait")) == 0.01);

    /* empty: no postData, no content text, localhost when nothing names a host */
    e = json_array_get(entries, 2);
    assert_null(json_object_get(get(e, "request"), "postData"));
    assert_null(json_object_get(get(get(e, "response"), "content"), "text"));
    assert_string_equal(json_string_value(get(get(e, "request"), "url")), "http://localhost/?");

    /* no response: status 0 and the reason where browsers put it */
    s = get(json_array_get(entries, 3), "response");
    assert_int_equal(json_integer_value(get(s, "status")), 0);
    assert_string_equal(json_string_value(get(s, "_error")), "upstream timeout");

    json_decref(doc);
    for (size_t i = 0; i < NMAKERS; i++)
        record_free(v[i]);
    unlink(path);
}

/* Trimmed from a Chrome export (HTTP/2 pseudo-headers, a failed request with
 * status 0, base64 content) plus Firefox habits (offset times, form params). */
static const char CHROME_HAR[] =
    "{\"log\":{\"version\":\"1.2\",\"creator\":{\"name\":\"WebInspector\",\"version\":\"537.36\"},"
    "\"pages\":[],\"entries\":["
    "{\"_initiator\":{\"type\":\"script\"},\"_priority\":\"High\",\"cache\":{},"
    " \"connection\":\"443\",\"pageref\":\"page_1\","
    " \"request\":{\"method\":\"GET\","
    "  \"url\":\"https://user:pw@shop.example/api/items?page=2&q=a%20b#frag\","
    "  \"httpVersion\":\"http/2.0\",\"headers\":["
    "   {\"name\":\":authority\",\"value\":\"shop.example\"},"
    "   {\"name\":\":method\",\"value\":\"GET\"},"
    "   {\"name\":\"accept\",\"value\":\"application/json\"},"
    "   {\"name\":\"cookie\",\"value\":\"sid=1\"}],"
    "  \"queryString\":[{\"name\":\"page\",\"value\":\"2\"}],\"cookies\":[],"
    "  \"headersSize\":-1,\"bodySize\":0},"
    " \"response\":{\"status\":200,\"statusText\":\"\",\"httpVersion\":\"http/2.0\","
    "  \"headers\":[{\"name\":\"content-type\",\"value\":\"application/json\"}],"
    "  \"cookies\":[],\"content\":{\"size\":11,\"mimeType\":\"application/json\","
    "  \"text\":\"{\\\"ok\\\":true}\"},\"redirectURL\":\"\",\"headersSize\":-1,"
    "  \"bodySize\":-1,\"_transferSize\":120,\"_error\":null},"
    " \"serverIPAddress\":\"93.184.216.34\",\"startedDateTime\":\"2026-11-27T05:46:18.123Z\","
    " \"time\":123.4567,\"timings\":{\"blocked\":1.5,\"dns\":-1,\"ssl\":-1,\"connect\":-1,"
    "  \"send\":0.25,\"wait\":100,\"receive\":2.5,\"_blocked_queueing\":1}},"
    "{\"cache\":{},\"request\":{\"method\":\"POST\",\"url\":\"http://shop.example:8000/upload\","
    "  "
    "\"httpVersion\":\"HTTP/"
    "1.1\",\"headers\":[{\"name\":\"Host\",\"value\":\"shop.example:8000\"}],"
    "  \"queryString\":[],\"cookies\":[],\"headersSize\":-1,\"bodySize\":3,"
    "  \"postData\":{\"mimeType\":\"text/plain\",\"text\":\"abc\"}},"
    " \"response\":{\"status\":201,\"statusText\":\"Created\",\"httpVersion\":\"HTTP/1.1\","
    "  \"headers\":[],\"cookies\":[],\"content\":{\"size\":4,\"mimeType\":\"image/gif\","
    "  \"text\":\"R0lGOA==\",\"encoding\":\"base64\"},\"redirectURL\":\"\",\"headersSize\":-1,"
    "  \"bodySize\":4},"
    " \"startedDateTime\":\"2026-11-27T06:46:18.5+01:00\",\"time\":1,"
    " \"timings\":{\"send\":0,\"wait\":1,\"receive\":0}},"
    "{\"cache\":{},\"request\":{\"method\":\"GET\",\"url\":\"http://down.example/x\","
    "  \"httpVersion\":\"\",\"headers\":[],\"queryString\":[],\"cookies\":[],"
    "  \"headersSize\":-1,\"bodySize\":0},"
    " \"response\":{\"status\":0,\"statusText\":\"\",\"httpVersion\":\"\",\"headers\":[],"
    "  \"cookies\":[],\"content\":{\"size\":0,\"mimeType\":\"x-unknown\"},\"redirectURL\":\"\","
    "  \"headersSize\":-1,\"bodySize\":-1,\"_error\":\"net::ERR_CONNECTION_REFUSED\"},"
    " \"startedDateTime\":\"2026-11-27T05:46:19.000Z\",\"time\":0,"
    " \"timings\":{\"blocked\":-1,\"dns\":-1,\"connect\":-1,\"send\":0,\"wait\":0,\"receive\":0}},"
    "{\"request\":{\"method\":\"POST\",\"url\":\"http://shop.example/form\","
    "  \"httpVersion\":\"HTTP/1.0\",\"headers\":[],\"queryString\":[],\"cookies\":[],"
    "  \"headersSize\":-1,\"bodySize\":-1,"
    "  \"postData\":{\"mimeType\":\"application/x-www-form-urlencoded\","
    "   \"params\":[{\"name\":\"a b\",\"value\":\"1&2\"},{\"name\":\"c\",\"value\":\"\\u00e9\"}]}},"
    " \"response\":{\"status\":200,\"statusText\":\"OK\",\"httpVersion\":\"HTTP/1.0\","
    "  \"headers\":[],\"cookies\":[],\"content\":{\"size\":500,\"mimeType\":\"text/html\"},"
    "  \"redirectURL\":\"\",\"headersSize\":-1,\"bodySize\":500},"
    " \"startedDateTime\":\"2026-11-27T05:46:20.000Z\",\"time\":5,\"timings\":{\"send\":-1,"
    "  \"wait\":-1,\"receive\":-1},\"cache\":{}}"
    "]}}";

static void test_har_foreign(void **state)
{
    (void)state;
    char path[64];
    tmp_path(path, sizeof path, "chrome");
    write_text(path, CHROME_HAR);
    record **v;
    size_t n;
    char err[256];
    if (har_read(path, false, &v, &n, NULL, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(v[i]->origin, "imported");
        assert_true(uuid7_time_ms(v[i]->id) > 0);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(v[i]->id, v[j]->id);
        assert_null(v[i]->node);
        assert_null(v[i]->client_addr);
    }

    record *r = v[0];
    assert_int_equal(r->started_at_us, T0 - 456);
    assert_int_equal(r->duration_us, 123457);
    assert_int_equal(r->upstream_us, 102750);
    assert_string_equal(r->method, "GET");
    assert_string_equal(r->scheme, "https");
    assert_string_equal(r->host, "shop.example");
    assert_string_equal(r->path, "/api/items");
    assert_string_equal(r->query, "page=2&q=a%20b");
    assert_int_equal(r->req_headers.len, 2); /* pseudo-headers dropped */
    assert_string_equal(r->req_headers.v[0].name, "accept");
    assert_string_equal(http_headers_get(&r->req_headers, "Cookie"), "sid=1");
    assert_int_equal(r->req_body.len, 0);
    assert_int_equal(r->status, 200);
    assert_string_equal(http_headers_get(&r->resp_headers, "Content-Type"), "application/json");
    assert_int_equal(r->resp_body.len, 11);
    assert_memory_equal(r->resp_body.data, "{\"ok\":true}", 11);
    assert_int_equal(r->resp_body_size, 11);
    assert_false(r->resp_truncated);
    assert_null(r->error);

    r = v[1];
    assert_int_equal(r->started_at_us, T0 + 376544); /* 06:46:18.5+01:00 */
    assert_string_equal(r->host, "shop.example:8000");
    assert_string_equal(r->path, "/upload");
    assert_null(r->query);
    assert_int_equal(r->req_body.len, 3);
    assert_memory_equal(r->req_body.data, "abc", 3);
    assert_int_equal(r->req_body_size, 3);
    assert_false(r->req_truncated);
    assert_int_equal(r->status, 201);
    assert_int_equal(r->resp_body.len, 4);
    assert_memory_equal(r->resp_body.data, "GIF8", 4);

    r = v[2];
    assert_int_equal(r->status, 0);
    assert_string_equal(r->error, "net::ERR_CONNECTION_REFUSED");
    assert_int_equal(r->resp_body.len, 0);
    assert_false(r->resp_truncated);

    r = v[3];
    assert_int_equal(r->http_minor, 0);
    assert_string_equal(r->req_body.data, "a+b=1%262&c=%C3%A9");
    assert_int_equal(r->upstream_us, -1);
    /* exported without content: 500 bytes announced, none in the file,
     * which is not a truncation at capture (issue 9 item 17) */
    assert_int_equal(r->resp_body.len, 0);
    assert_int_equal(r->resp_body_size, 500);
    assert_false(r->resp_truncated);
    assert_string_equal(r->resp_body_note, "dropped: not in the HAR file (500 bytes announced)");

    records_free(v, n);
    unlink(path);
}

/* Issue 9 item 4: HAR holds decoded bodies (as browsers write them) with
 * the Content-Encoding header kept, sizes that say so, and a comment for a
 * body that is not the whole decoded one; a foreign HAR's body under a
 * Content-Encoding is read as decoded. */
static void test_har_codings(void **state)
{
    (void)state;
    record *v[2] = {rec_coded(), rec_undecodable()};
    char path[64];
    tmp_path(path, sizeof path, "codings");
    write_har(path, v, 2);
    json_t *root = load(path);
    json_t *entries = get(get(root, "log"), "entries");

    json_t *q = get(json_array_get(entries, 0), "request");
    json_t *s = get(json_array_get(entries, 0), "response");
    assert_string_equal(json_string_value(get(get(q, "postData"), "text")), "x=1");
    assert_null(json_object_get(get(q, "postData"), "comment"));
    assert_null(json_object_get(get(q, "postData"), "comment"));
    assert_int_equal(json_integer_value(get(q, "bodySize")), 23);
    json_t *c = get(s, "content");
    assert_int_equal(json_string_length(get(c, "text")), 1000);
    assert_null(json_object_get(c, "encoding"));
    assert_int_equal(json_integer_value(get(c, "size")), 1000);
    assert_int_equal(json_integer_value(get(c, "compression")), 988);
    assert_int_equal(json_integer_value(get(s, "bodySize")), 12);
    assert_null(json_object_get(c, "comment"));
    json_t *h = json_array_get(get(s, "headers"), 1);
    assert_string_equal(json_string_value(get(h, "name")), "Content-Encoding");
    assert_string_equal(json_string_value(get(h, "value")), "br");

    q = get(json_array_get(entries, 1), "request");
    s = get(json_array_get(entries, 1), "response");
    assert_string_equal(json_string_value(get(get(q, "postData"), "text")), "");
    assert_string_equal(json_string_value(get(get(q, "postData"), "comment")),
                        "restspy: body not stored (dropped: gzip: incorrect header check)");
    c = get(s, "content");
    assert_string_equal(json_string_value(get(c, "comment")),
                        "restspy: body as received, still br-encoded (undecoded: br: damaged "
                        "stream)");
    assert_int_equal(json_integer_value(get(c, "size")), 3);
    assert_null(json_object_get(c, "compression"));
    json_decref(root);

    /* A foreign file: text is decoded, the header says how it travelled;
     * an encoded request's bodySize is its size on the wire, not a sign of
     * truncation. */
    write_text(path, "{\"log\":{\"version\":\"1.2\",\"entries\":[{\"startedDateTime\":"
                     "\"2026-11-27T05:46:18.123Z\",\"time\":1,\"request\":{\"method\":\"POST\","
                     "\"url\":\"http://a/p\",\"headers\":[{\"name\":\"Content-Encoding\","
                     "\"value\":\"gzip\"}],\"postData\":{\"mimeType\":\"text/plain\",\"text\":"
                     "\"abc\"},\"bodySize\":23},\"response\":{\"status\":200,\"headers\":"
                     "[{\"name\":\"content-encoding\",\"value\":\"br\"}],\"content\":{\"size\":"
                     "11,\"mimeType\":\"application/json\",\"text\":\"{\\\"ok\\\":true}\"},"
                     "\"bodySize\":9}}]}}");
    record **got;
    size_t n;
    char err[256];
    if (har_read(path, false, &got, &n, NULL, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(n, 1);
    assert_string_equal(got[0]->req_encoding, "gzip");
    assert_null(got[0]->req_body_note);
    assert_false(got[0]->req_truncated);
    assert_int_equal(got[0]->req_body_size, 23);
    assert_string_equal(got[0]->resp_encoding, "br");
    assert_false(got[0]->resp_truncated);
    assert_int_equal(got[0]->resp_body.len, 11);
    records_free(got, n);
    for (size_t i = 0; i < 2; i++)
        record_free(v[i]);
    unlink(path);
}

/* Issue 9 item 7: an entry without a restspy id gets one derived from its
 * content and time, the same on every read, so a second import skips it. */
static void test_har_stable_ids(void **state)
{
    (void)state;
    char path[64];
    tmp_path(path, sizeof path, "ids");
    write_text(path, CHROME_HAR);
    record **a, **b;
    size_t na, nb;
    char err[256];
    assert_int_equal(har_read(path, false, &a, &na, NULL, err, sizeof err), 0);
    assert_int_equal(har_read(path, false, &b, &nb, NULL, err, sizeof err), 0);
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        assert_string_equal(a[i]->id, b[i]->id);
        /* UUIDv7-shaped, with the entry's own time: ids sort by time */
        assert_int_equal(uuid7_time_ms(a[i]->id), a[i]->started_at_us / 1000);
    }
    records_free(b, nb);

    /* The same entries written another way (key order, spacing) and twice
     * the first one (two identical requests in one millisecond): the same
     * ids, and the copy gets its own, stable too. */
    json_t *root = load(path);
    json_t *entries = get(get(root, "log"), "entries");
    json_array_append(entries, json_array_get(entries, 0));
    char *txt = json_dumps(root, JSON_INDENT(3) | JSON_SORT_KEYS);
    json_decref(root);
    write_text(path, txt);
    free(txt);
    assert_int_equal(har_read(path, false, &b, &nb, NULL, err, sizeof err), 0);
    assert_int_equal(nb, na + 1);
    for (size_t i = 0; i < na; i++)
        assert_string_equal(a[i]->id, b[i]->id);
    assert_string_not_equal(b[na]->id, b[0]->id);
    assert_int_equal(uuid7_time_ms(b[na]->id), uuid7_time_ms(b[0]->id));
    record **c;
    size_t nc;
    assert_int_equal(har_read(path, false, &c, &nc, NULL, err, sizeof err), 0);
    assert_string_equal(c[na]->id, b[na]->id);
    records_free(c, nc);
    records_free(b, nb);

    /* A restspy id in the file is kept as it is. */
    record *r = rec_empty();
    write_har(path, &r, 1);
    assert_int_equal(har_read(path, false, &b, &nb, NULL, err, sizeof err), 0);
    assert_string_equal(b[0]->id, r->id);
    records_free(b, nb);
    record_free(r);
    records_free(a, na);
    unlink(path);
}

/* One HAR entry for GET http://a<url> answered 200, with extra members
 * (each ending in ',') and timings (the members after "timings"). */
static void hit_entry(buf *b, const char *url, const char *extra, const char *timings)
{
    buf_appendf(b,
                "%s{\"startedDateTime\":\"2026-11-27T05:46:18.123Z\",%s\"request\":"
                "{\"method\":\"GET\",\"url\":\"http://a%s\"},\"response\":{\"status\":%d,"
                "\"content\":{\"size\":2,\"text\":\"ok\"}},\"timings\":%s}",
                b->data[b->len - 1] == '[' ? "" : ",", extra, url, strcmp(url, "/failed") ? 200 : 0,
                timings);
}

/* Issue 9 item 9: a browser's cache hits are left out unless asked for. */
static void test_har_cache_hits(void **state)
{
    (void)state;
    static const char net[] = "{\"send\":0.1,\"wait\":5,\"receive\":1},\"time\":6.1";
    static const char nonet[] = "{\"send\":0,\"wait\":0,\"receive\":0},\"time\":0";
    buf text = BUF_INIT;
    buf_append_str(&text, "{\"log\":{\"version\":\"1.2\",\"entries\":[");
    hit_entry(&text, "/net", "", net);
    hit_entry(&text, "/memory", "\"_fromCache\":\"memory\",", net);
    hit_entry(&text, "/disk", "", "{\"send\":0,\"wait\":0.2,\"receive\":0.1},\"_transferSize\":0");
    hit_entry(&text, "/webkit", "\"_fetchType\":\"Disk Cache\",", net);
    hit_entry(&text, "/firefox", "", nonet);
    /* a failed request (no answer) has no transfer either: kept */
    hit_entry(&text, "/failed", "\"_transferSize\":0,", nonet);
    /* restspy's own entries came from the wire, whatever their times */
    hit_entry(&text, "/restspy", "\"_restspy\":{\"started_at\":1},", nonet);
    buf_append_str(&text, "]}}");
    char path[64], err[256];
    tmp_path(path, sizeof path, "cache");
    write_text(path, text.data);
    buf_free(&text);
    record **v;
    size_t n, cached = 99;
    assert_int_equal(har_read(path, false, &v, &n, &cached, err, sizeof err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(cached, 4);
    assert_string_equal(v[0]->path, "/net");
    assert_string_equal(v[1]->path, "/failed");
    assert_string_equal(v[2]->path, "/restspy");
    records_free(v, n);
    assert_int_equal(har_read(path, true, &v, &n, &cached, err, sizeof err), 0);
    assert_int_equal(n, 7);
    assert_int_equal(cached, 0);
    records_free(v, n);
    unlink(path);
}

static void expect_har_error(const char *text, const char *want)
{
    char path[64];
    tmp_path(path, sizeof path, "bad");
    write_text(path, text);
    record **v = (record **)1;
    size_t n = 99;
    char err[256] = "";
    assert_int_equal(har_read(path, false, &v, &n, NULL, err, sizeof err), -1);
    assert_null(v);
    assert_int_equal(n, 0);
    if (strncmp(err, path, strlen(path)) != 0 || !strstr(err, want))
        fail_msg("error \"%s\", want \"%s: ...%s...\"", err, path, want);
    unlink(path);
}

#define ENTRY_OK                                                                                   \
    "{\"startedDateTime\":\"2026-11-27T05:46:18.123Z\",\"time\":1,"                                \
    "\"request\":{\"method\":\"GET\",\"url\":\"http://a/\"}}"

static void test_har_errors(void **state)
{
    (void)state;
    expect_har_error("", "not a HAR 1.2 document");
    expect_har_error("{\"log\":", "not a HAR 1.2 document");
    expect_har_error("[]", "not a HAR 1.2 document: no \"log\" object");
    expect_har_error("{\"log\":{\"entries\":{}}}", "log.entries is not an array");
    expect_har_error("{\"log\":{\"entries\":[" ENTRY_OK ",{\"request\":{\"method\":\"GET\"},"
                     "\"startedDateTime\":\"2026-11-27T05:46:18.123Z\"}]}}",
                     ": entry 2: request.url missing");
    expect_har_error("{\"log\":{\"entries\":[3]}}", "entry 1: not an object");
    expect_har_error("{\"log\":{\"entries\":[{\"startedDateTime\":\"x\"}]}}",
                     "entry 1: request missing");
    expect_har_error("{\"log\":{\"entries\":[{\"request\":{\"url\":\"http://a/\"}}]}}",
                     "entry 1: request.method missing");
    expect_har_error("{\"log\":{\"entries\":[{\"request\":{\"method\":\"GET\","
                     "\"url\":\"http://a/\"}}]}}",
                     "entry 1: startedDateTime missing");
    expect_har_error("{\"log\":{\"entries\":[{\"request\":{\"method\":\"GET\","
                     "\"url\":\"http://a/\"},\"startedDateTime\":\"yesterday\"}]}}",
                     "entry 1: startedDateTime: not an ISO 8601");
    expect_har_error("{\"log\":{\"entries\":[{\"request\":{\"method\":\"GET\","
                     "\"url\":\"not a url\"},\"startedDateTime\":\"2026-11-27T05:46:18Z\"}]}}",
                     "entry 1: request.url is not a URL");
    expect_har_error(
        "{\"log\":{\"entries\":[{\"request\":{\"method\":\"GET\",\"url\":\"http://a/\","
        "\"headers\":[{\"name\":\"x\"}]},\"startedDateTime\":\"2026-11-27T05:46:18Z\"}]}}",
        "entry 1: request.headers[0]: expected");
    expect_har_error(
        "{\"log\":{\"entries\":[{\"request\":{\"method\":\"GET\",\"url\":\"http://a/\"},"
        "\"response\":{\"status\":\"200\"},"
        "\"startedDateTime\":\"2026-11-27T05:46:18Z\"}]}}",
        "entry 1: response.status: expected a number");
    expect_har_error(
        "{\"log\":{\"entries\":[{\"request\":{\"method\":\"GET\",\"url\":\"http://a/\"},"
        "\"response\":{\"status\":200,\"content\":{\"text\":\"***\","
        "\"encoding\":\"base64\"}},\"startedDateTime\":\"2026-11-27T05:46:18Z\"}]}}",
        "entry 1: resp_body_b64: not valid base64");
    expect_har_error("{\"log\":{\"entries\":[" ENTRY_OK ",{\"request\":{\"method\":\"GET\","
                     "\"url\":\"http://a/\"},\"_restspy\":{\"started_at\":\"soon\"}}]}}",
                     "entry 2: started_at: expected an integer");

    char err[256];
    record **v;
    size_t n;
    assert_int_equal(har_read("/nonexistent/x.har", false, &v, &n, NULL, err, sizeof err), -1);
    assert_string_equal(err, "/nonexistent/x.har: No such file or directory");
}

/* ---- JSON lines ---- */

static void test_jsonl_round_trip(void **state)
{
    (void)state;
    char path[64];
    tmp_path(path, sizeof path, "jsonl");
    record *v[NMAKERS];
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < NMAKERS; i++) {
        v[i] = MAKERS[i]();
        jsonl_write(f, v[i]);
    }
    fclose(f);

    /* one object per line, nothing else */
    f = fopen(path, "rb");
    int c, lines = 0;
    while ((c = fgetc(f)) != EOF)
        lines += c == '\n';
    fclose(f);
    assert_int_equal(lines, NMAKERS);

    record **got;
    size_t n;
    char err[256];
    if (jsonl_read(path, &got, &n, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(n, NMAKERS);
    /* record_to_json has no replication column: not compared */
    for (size_t i = 0; i < n; i++)
        records_eq(v[i], got[i], 0);
    records_free(got, n);
    for (size_t i = 0; i < NMAKERS; i++)
        record_free(v[i]);
    unlink(path);
}

static void test_jsonl_read_lines(void **state)
{
    (void)state;
    char path[64], err[256];
    record **v;
    size_t n;
    tmp_path(path, sizeof path, "jsonl");

    /* blank lines and CRLF are fine; no origin -> imported */
    write_text(path, "\n{\"method\":\"GET\",\"path\":\"/a\",\"started_at\":1}\r\n\n"
                     "{\"method\":\"GET\",\"path\":\"/b\",\"origin\":\"local\"}");
    assert_int_equal(jsonl_read(path, &v, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0]->path, "/a");
    assert_string_equal(v[0]->origin, "imported");
    assert_string_equal(v[1]->origin, "local");
    records_free(v, n);

    write_text(path, "");
    assert_int_equal(jsonl_read(path, &v, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    records_free(v, n);

    char want[160];
    write_text(path, "{}\n\n{\"status\":\"x\"}\n");
    assert_int_equal(jsonl_read(path, &v, &n, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:3: status: expected an integer", path);
    assert_string_equal(err, want);
    assert_null(v);

    write_text(path, "{}\n{\"method\":\"GET\"\n");
    assert_int_equal(jsonl_read(path, &v, &n, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:2: invalid JSON", path);
    assert_true(strncmp(err, want, strlen(want)) == 0);

    assert_int_equal(jsonl_read("/nonexistent/x.jsonl", &v, &n, err, sizeof err), -1);
    assert_string_equal(err, "/nonexistent/x.jsonl: No such file or directory");
    unlink(path);
}

/* ---- curl ---- */

static char *curl_line(const record *r, const char *base)
{
    char *s = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&s, &len);
    assert_non_null(f);
    curl_write(f, r, base);
    fclose(f);
    return s;
}

static void expect_curl(const record *r, const char *base, const char *want)
{
    char *s = curl_line(r, base);
    assert_string_equal(s, want);
    free(s);
}

/* Runs the printf part of a piped curl line through /bin/sh, then through
 * filter (a command, or ""): the bytes must be the body. */
static void check_piped_bytes(const char *line, const char *filter, const void *body, size_t n)
{
    const char *bar = strstr(line, " | curl ");
    assert_non_null(bar);
    buf cmd = BUF_INIT;
    buf_append(&cmd, line, (size_t)(bar - line));
    buf_append_str(&cmd, filter);
    FILE *p = popen(cmd.data, "r");
    assert_non_null(p);
    unsigned char got[256];
    size_t m = fread(got, 1, sizeof got, p);
    assert_int_equal(pclose(p), 0);
    assert_int_equal(m, n);
    assert_memory_equal(got, body, n);
    buf_free(&cmd);
}

static void check_printf_bytes(const char *line, const void *body, size_t n)
{
    check_piped_bytes(line, "", body, n);
}

static void test_curl(void **state)
{
    (void)state;
    record *r = record_new();
    r->method = xstrdup("GET");
    r->path = xstrdup("/api/items");
    r->query = xstrdup("a=1&b=it's");
    hdr(&r->req_headers, "Host", "api.example");
    hdr(&r->req_headers, "Accept", "*/*");
    hdr(&r->req_headers, "X-Note", "it's \"quoted\"");
    hdr(&r->req_headers, "X-Empty", "");
    expect_curl(r, "http://127.0.0.1:9000/",
                "curl -sS -X GET 'http://127.0.0.1:9000/api/items?a=1&b=it'\\''s'"
                " -H 'Accept: */*' -H 'X-Note: it'\\''s \"quoted\"' -H 'X-Empty;'\n");
    /* without a base: the recorded host */
    expect_curl(r, NULL,
                "curl -sS -X GET 'http://api.example/api/items?a=1&b=it'\\''s'"
                " -H 'Accept: */*' -H 'X-Note: it'\\''s \"quoted\"' -H 'X-Empty;'\n");
    record_free(r);

    r = record_new();
    r->method = xstrdup("POST");
    r->path = xstrdup("/v1/items");
    hdr(&r->req_headers, "Content-Type", "application/json");
    hdr(&r->req_headers, "Content-Length", "15");
    buf_append_str(&r->req_body, "{\"a\":\"it's\"}");
    expect_curl(r, "http://h:1",
                "curl -sS -X POST 'http://h:1/v1/items' -H 'Content-Type: application/json'"
                " --data-binary '{\"a\":\"it'\\''s\"}'\n");
    record_free(r);

    /* binary body through printf; no Content-Type recorded -> none sent */
    r = record_new();
    r->method = xstrdup("PUT");
    r->path = xstrdup("/bin");
    buf_append(&r->req_body, BIN_REQ, sizeof BIN_REQ);
    char *line = curl_line(r, "http://h:1");
    assert_string_equal(line, "printf '\\000\\001%%\\\\\\047\\377A\\012' | curl -sS -X PUT "
                              "'http://h:1/bin' -H 'Content-Type:' --data-binary @-\n");
    check_printf_bytes(line, BIN_REQ, sizeof BIN_REQ);
    free(line);
    record_free(r);

    /* text on several lines, or starting with '@', also goes through printf */
    r = record_new();
    r->method = xstrdup("POST");
    r->path = xstrdup("/t");
    hdr(&r->req_headers, "Content-Type", "text/plain");
    buf_append_str(&r->req_body, "@home\nline 2 \xc3\xa9");
    line = curl_line(r, "http://h:1");
    assert_string_equal(line, "printf '@home\\012line 2 \\303\\251' | curl -sS -X POST "
                              "'http://h:1/t' -H 'Content-Type: text/plain' --data-binary @-\n");
    check_printf_bytes(line, "@home\nline 2 \xc3\xa9", 15);
    free(line);
    record_free(r);

    /* HEAD, globbing characters, dot segments, a truncated body */
    r = record_new();
    r->method = xstrdup("HEAD");
    r->path = xstrdup("/a/../b");
    r->query = xstrdup("ids[]=1");
    expect_curl(r, "http://h:1", "curl -sS -I -g --path-as-is 'http://h:1/a/../b?ids[]=1'\n");
    free(r->method);
    r->method = xstrdup("PATCH");
    free(r->query);
    r->query = NULL;
    free(r->path);
    r->path = xstrdup("/x");
    buf_append_str(&r->req_body, "abc");
    r->req_body_size = 10;
    r->req_truncated = true;
    /* an incomplete body: a comment saying so, never a command sending
     * another body (issue 9 item 3) */
    expect_curl(r, "http://h:1",
                "# restspy: not exported as a command, request body is incomplete: 3 of 10 "
                "bytes recorded: curl -sS -X PATCH 'http://h:1/x'\n");
    record_free(r);
}

/* Issue 9 item 3: any byte sequence round-trips through the curl line, a
 * body starting with '-' (every multipart body) included. */
static void test_curl_bodies(void **state)
{
    (void)state;
    static const char multipart[] = "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n"
                                    "1\r\n--XyZ--\r\n";
    record *r = record_new();
    r->method = xstrdup("POST");
    r->path = xstrdup("/up");
    hdr(&r->req_headers, "Content-Type", "multipart/form-data; boundary=XyZ");
    buf_append_str(&r->req_body, multipart);
    char *line = curl_line(r, "http://h:1");
    assert_true(strncmp(line, "printf '\\055-XyZ\\015\\012", 20) == 0);
    check_printf_bytes(line, multipart, strlen(multipart));
    free(line);

    /* NUL bytes and a leading '-' on one line */
    static const char nul[] = {'-', '-', 0, 'x', 0};
    buf_reset(&r->req_body);
    buf_append(&r->req_body, nul, sizeof nul);
    line = curl_line(r, "http://h:1");
    check_printf_bytes(line, nul, sizeof nul);
    free(line);

    /* one-line text starting with '-': a quoted argument, which curl takes
     * as the value of --data-binary */
    buf_reset(&r->req_body);
    buf_append_str(&r->req_body, "-v \xc3\xa9");
    expect_curl(r, "http://h:1",
                "curl -sS -X POST 'http://h:1/up' -H 'Content-Type: multipart/form-data; "
                "boundary=XyZ' --data-binary '-v \xc3\xa9'\n");

    /* an empty body the client announced is sent as one */
    buf_reset(&r->req_body);
    hdr(&r->req_headers, "Content-Length", "0");
    expect_curl(r, "http://h:1",
                "curl -sS -X POST 'http://h:1/up' -H 'Content-Type: multipart/form-data; "
                "boundary=XyZ' --data-binary ''\n");
    record_free(r);

    /* a body stored decoded goes out encoded again, under its header */
    r = record_new();
    r->method = xstrdup("PUT");
    r->path = xstrdup("/z");
    hdr(&r->req_headers, "Content-Encoding", "gzip");
    buf_append_str(&r->req_body, "{\"a\":1}");
    r->req_encoding = xstrdup("gzip");
    line = curl_line(r, "http://h:1");
    assert_true(strncmp(line, "printf '\\037\\213", 14) == 0);
    assert_non_null(strstr(line, " -H 'Content-Encoding: gzip' "));
    check_piped_bytes(line, " | gzip -dc", "{\"a\":1}", 7);
    free(line);

    /* not stored: a comment, on one line whatever the headers hold */
    r->req_body_note = xstrdup("dropped: gzip: incorrect header check");
    buf_reset(&r->req_body);
    hdr(&r->req_headers, "X-Evil", "a\nrm -rf /");
    expect_curl(r, "http://h:1",
                "# restspy: not exported as a command, request body was not stored (dropped: "
                "gzip: incorrect header check): curl -sS -X PUT 'http://h:1/z' -H "
                "'Content-Encoding: gzip'\n");
    /* stored as received (undecodable, redaction off): sent as it is */
    free(r->req_body_note);
    r->req_body_note = xstrdup("undecoded: gzip: incorrect header check");
    buf_append_str(&r->req_body, "raw");
    expect_curl(r, "http://h:1",
                "curl -sS -X PUT 'http://h:1/z' -H 'Content-Encoding: gzip' -H 'Content-Type:' "
                "--data-binary 'raw'\n");
    record_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_json_round_trip),
        cmocka_unit_test(test_record_json_time_and_defaults),
        cmocka_unit_test(test_record_json_errors),
        cmocka_unit_test(test_record_json_base64_tolerant),
        cmocka_unit_test(test_har_round_trip),
        cmocka_unit_test(test_har_required_fields),
        cmocka_unit_test(test_har_truncated_comment),
        cmocka_unit_test(test_har_foreign),
        cmocka_unit_test(test_har_codings),
        cmocka_unit_test(test_har_stable_ids),
        cmocka_unit_test(test_har_cache_hits),
        cmocka_unit_test(test_har_errors),
        cmocka_unit_test(test_jsonl_round_trip),
        cmocka_unit_test(test_jsonl_read_lines),
        cmocka_unit_test(test_curl),
        cmocka_unit_test(test_curl_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
