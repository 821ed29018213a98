/* correlate: the looks-like rule, learning from JSON bodies, Location,
 * Set-Cookie and ETag, substituting in path, query, headers, JSON and form
 * bodies, mapping the recorded answer, and the explicit rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "replay/correlate.h"

static bool looks(const char *key, const char *v, bool number)
{
    return corr_looks_like(key, key ? strlen(key) : 0, v, strlen(v), number);
}

static void test_looks_like(void **state)
{
    (void)state;
    /* id-like members: any integer, any slug */
    assert_true(looks("id", "1", true));
    assert_true(looks("site_id", "17", true));
    assert_true(looks("postId", "3", true));
    assert_true(looks("slug", "alpha-2", false));
    assert_true(looks("csrftoken", "abc", false));
    assert_true(looks("sessionid", "x1", false));
    /* elsewhere: large integers, UUIDs, long tokens */
    assert_true(looks(NULL, "1000", true));
    assert_true(looks("count", "123456", false));
    assert_true(looks(NULL, "0f8fad5b-d9cb-469f-a165-70867728950e", false));
    assert_true(looks("token_value", "0123456789abcdef0123", false));
    assert_true(looks("access", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-_x1", false));
    /* never */
    assert_false(looks(NULL, "1", true));
    assert_false(looks("count", "999", true));
    assert_false(looks("status", "ok", false));
    assert_false(looks("id", "true", false));
    assert_false(looks("flag", "false", false));
    assert_false(looks("id", "", false));
    assert_false(looks("id", "0.5", true));
    assert_false(looks("name", "abcdefghijklmnopqrst", false)); /* no digit */
    assert_false(looks("name", "0123456789012345x7", true));    /* a number that is no integer */
    assert_false(looks("title", "hello world 1234567890", false));
    assert_false(looks("id", "a b", false));
    assert_false(looks(NULL, "short1", false));
}

/* A record with request (method, path, query, body) and response. */
static record *mk(const char *method, const char *path, const char *query, const char *req_body,
                  const char *resp_body)
{
    record *r = record_new();
    r->method = xstrdup(method);
    r->path = xstrdup(path);
    r->query = query ? xstrdup(query) : NULL;
    r->status = 200;
    if (req_body)
        buf_append_str(&r->req_body, req_body);
    r->req_body_size = r->req_body.len;
    if (resp_body)
        buf_append_str(&r->resp_body, resp_body);
    r->resp_body_size = r->resp_body.len;
    return r;
}

static void req_hdr(record *r, const char *n, const char *v)
{
    http_headers_add(&r->req_headers, n, strlen(n), v, strlen(v));
}

static void resp_hdr(record *r, const char *n, const char *v)
{
    http_headers_add(&r->resp_headers, n, strlen(n), v, strlen(v));
}

/* A run's mappings over cases c[0..n), having learned from got as the
 * answer to c[0] (want: how many values that taught). */
static corr *learned(const noise *rules, record **c, size_t n, const char *client,
                     const record *got, size_t want)
{
    corr *k = corr_new(rules);
    corr_scan(k, c, n);
    assert_int_equal(corr_learn(k, client, 0, c[0], got), want);
    return k;
}

/* corr_apply of rec must substitute exactly want values. */
static record *applied(const corr *k, const char *client, const record *rec, corr_subs *subs,
                       size_t want)
{
    record *s = corr_apply(k, client, rec, subs);
    assert_non_null(s);
    assert_int_equal(subs->n, want);
    return s;
}

static void free_all(record **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        record_free(v[i]);
}

/* Learning from a JSON create, then every place of a later request. */
static void test_json_learn_and_substitute(void **state)
{
    (void)state;
    record *c[3];
    c[0] = mk("POST", "/api/sites/", NULL, "{\"name\":\"a\"}",
              "{\"id\":17,\"name\":\"a\",\"owner\":{\"uuid\":\"0f8fad5b-d9cb-469f-a165-"
              "70867728950e\"},\"count\":1,\"ok\":true}");
    c[1] = mk("PATCH", "/api/sites/17/", "site_id=17&page=17",
              "{\"site_id\":17,\"ref_id\":\"17\",\"n\":17}", "{\"id\":17,\"count\":17}");
    req_hdr(c[1], "X-Owner", "0f8fad5b-d9cb-469f-a165-70867728950e");
    c[2] = mk("POST", "/form", NULL, "site_id=17&x=17", NULL);
    req_hdr(c[2], "Content-Type", "application/x-www-form-urlencoded");

    record *got = mk("POST", "/api/sites/", NULL, NULL,
                     "{\"id\":23,\"name\":\"a\",\"owner\":{\"uuid\":\"11111111-2222-4333-8444-"
                     "555555555555\"},\"count\":2,\"ok\":false}");
    /* id and uuid; not count (1 is no identifier) */
    corr *k = learned(NULL, c, 3, "c1", got, 2);

    corr_subs subs = {0};
    record *s = applied(k, "c1", c[1], &subs, 5);
    assert_string_equal(s->path, "/api/sites/23/");
    /* a small number is an identifier only under an id-like key */
    assert_string_equal(s->query, "site_id=23&page=17");
    assert_string_equal(http_headers_get(&s->req_headers, "x-owner"),
                        "11111111-2222-4333-8444-555555555555");
    /* a number stays a number, a string a string */
    assert_string_equal(s->req_body.data, "{\"site_id\":23,\"ref_id\":\"23\",\"n\":17}");
    assert_string_equal(subs.v[0].place, "path");
    assert_string_equal(subs.v[0].from, "17");
    assert_string_equal(subs.v[0].to, "23");
    assert_string_equal(subs.v[1].place, "query");
    assert_string_equal(subs.v[2].place, "header X-Owner");
    assert_string_equal(subs.v[3].place, "body $.site_id");
    assert_string_equal(subs.v[4].place, "body $.ref_id");
    corr_subs_free(&subs);
    record_free(s);

    s = applied(k, "c1", c[2], &subs, 1);
    assert_string_equal(s->req_body.data, "site_id=23&x=17");
    assert_string_equal(subs.v[0].place, "form");
    corr_subs_free(&subs);
    record_free(s);

    /* Another client finds the value through the global mapping. */
    s = corr_apply(k, "c2", c[2], NULL);
    assert_non_null(s);
    record_free(s);

    /* The recorded answer mapped: 17 -> 23, so the comparison sees equal. */
    record *e = corr_expected(k, "c1", c[1]);
    assert_non_null(e);
    assert_string_equal(e->resp_body.data, "{\"id\":23,\"count\":17}");
    record_free(e);

    record_free(got);
    corr_free(k);
    free_all(c, 3);
}

/* Large numbers and long tokens only when a later request uses them;
 * identifiers by name or shape always; identical values never. */
static void test_used_later_only(void **state)
{
    (void)state;
    record *c[2];
    c[0] = mk("GET", "/api/a/5000/", NULL, NULL,
              "{\"total\":5000,\"blob\":\"0123456789abcdef0123\",\"same_id\":3}");
    c[1] = mk("POST", "/api/b/", NULL, NULL, "{\"n\":8}");
    record *got = mk("GET", "/", NULL, NULL,
                     "{\"total\":7000,\"blob\":\"9999999999abcdef0123\",\"same_id\":3}");
    /* 5000 was used by c[0] itself, not later; the blob never */
    corr *k = learned(NULL, c, 2, NULL, got, 0);
    assert_null(corr_apply(k, NULL, c[1], NULL));
    assert_null(corr_expected(k, NULL, c[0]));
    record_free(got);
    /* A server-assigned id never used again is learned: its answer
     * compares equal. */
    got = mk("GET", "/", NULL, NULL, "{\"total\":5000,\"blob\":\"x\",\"same_id\":4}");
    assert_int_equal(corr_learn(k, NULL, 0, c[0], got), 1);
    record *e = corr_expected(k, NULL, c[0]);
    assert_non_null(e);
    assert_string_equal(e->resp_body.data,
                        "{\"total\":5000,\"blob\":\"0123456789abcdef0123\",\"same_id\":4}");
    record_free(e);
    assert_true(corr_named_id("userId", 6, "x", 1));
    assert_true(corr_named_id(NULL, 0, "0f8fad5b-d9cb-469f-a165-70867728950e", 36));
    assert_false(corr_named_id("total", 5, "5000", 4));
    record_free(got);
    corr_free(k);
    free_all(c, 2);
}

/* Location (an integer segment is an id), ETag and Set-Cookie. */
static void test_headers(void **state)
{
    (void)state;
    record *c[2];
    c[0] = mk("POST", "/api/sites/", NULL, NULL, NULL);
    resp_hdr(c[0], "Location", "http://old:8000/api/sites/17/");
    resp_hdr(c[0], "ETag", "W/\"v1a\"");
    resp_hdr(c[0], "Set-Cookie", "session=abc123; Path=/; HttpOnly");
    resp_hdr(c[0], "Set-Cookie", "csrftoken=\"tok9\"; Path=/");
    c[1] = mk("PUT", "/api/sites/17/", NULL, NULL, NULL);
    req_hdr(c[1], "If-Match", "W/\"v1a\"");
    req_hdr(c[1], "Cookie", "lang=en; session=abc123; csrftoken=tok9");
    req_hdr(c[1], "X-CSRFToken", "tok9");
    resp_hdr(c[1], "Location", "http://old:8000/api/sites/17/");
    resp_hdr(c[1], "ETag", "\"v1a\"");
    resp_hdr(c[1], "Set-Cookie", "session=abc123; Path=/");

    record *got = mk("POST", "/", NULL, NULL, NULL);
    resp_hdr(got, "Location", "http://new:9000/api/sites/23/");
    resp_hdr(got, "ETag", "\"v2b\"");
    resp_hdr(got, "Set-Cookie", "session=zzz999; Path=/");
    resp_hdr(got, "Set-Cookie", "csrftoken=tok7; Path=/");
    corr *k = learned(NULL, c, 2, "c", got, 4);

    corr_subs subs = {0};
    record *s = applied(k, "c", c[1], &subs, 5);
    assert_string_equal(s->path, "/api/sites/23/");
    assert_string_equal(http_headers_get(&s->req_headers, "if-match"), "W/\"v2b\"");
    assert_string_equal(http_headers_get(&s->req_headers, "cookie"),
                        "lang=en; session=zzz999; csrftoken=tok7");
    assert_string_equal(http_headers_get(&s->req_headers, "x-csrftoken"), "tok7");
    corr_subs_free(&subs);
    record_free(s);

    record *e = corr_expected(k, "c", c[1]);
    assert_non_null(e);
    assert_string_equal(http_headers_get(&e->resp_headers, "location"),
                        "http://old:8000/api/sites/23/");
    assert_string_equal(http_headers_get(&e->resp_headers, "etag"), "\"v2b\"");
    assert_string_equal(http_headers_get(&e->resp_headers, "set-cookie"), "session=zzz999; Path=/");
    record_free(e);
    record_free(got);
    corr_free(k);
    free_all(c, 2);
}

/* Bearer tokens from a JSON login; JSON URLs; an explicit path rule; a
 * header kept out. */
static void test_rules(void **state)
{
    (void)state;
    noise *n = noise_new();
    char err[256];
    assert_int_equal(noise_add(n, "correlate: $.data.code", err, sizeof err), 0);
    assert_int_equal(noise_add(n, "no-correlate-header: X-Skip", err, sizeof err), 0);
    assert_true(noise_has(n, "correlate:   $.data.code"));
    assert_true(noise_has(n, "NO-CORRELATE-HEADER: x-skip"));
    assert_int_equal(noise_add(n, "correlate: data", err, sizeof err), -1);
    assert_non_null(strstr(err, "after 'correlate:'"));
    assert_int_equal(noise_add(n, "no-correlate-header:", err, sizeof err), -1);
    /* A noise file keeps them: saved and loaded back. */
    char path[] = "/tmp/restspy-correlate-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(noise_save(n, path, err, sizeof err), 0);
    noise *back = noise_new();
    assert_int_equal(noise_load(back, path, err, sizeof err), 0);
    unlink(path);
    assert_int_equal(noise_count(back), 2);
    assert_true(noise_has(back, "correlate: $.data.code"));
    assert_true(noise_has(back, "no-correlate-header: X-Skip"));
    /* They are no comparison rules. */
    assert_false(noise_header_ignored(back, "X-Skip"));
    assert_false(noise_has_regex(back));
    noise_free(back);

    record *c[2];
    c[0] = mk("POST", "/login", NULL, NULL,
              "{\"token\":\"3f2a9c1b7d\",\"data\":{\"code\":\"7\"},\"next\":\"/api/p/"
              "12345/\"}");
    c[1] = mk("GET", "/api/p/12345/", "c=7", NULL, NULL);
    req_hdr(c[1], "Authorization", "Bearer 3f2a9c1b7d");
    req_hdr(c[1], "X-Skip", "3f2a9c1b7d");
    record *got =
        mk("POST", "/", NULL, NULL,
           "{\"token\":\"aa11bb22cc\",\"data\":{\"code\":\"8\"},\"next\":\"/api/p/54321/\"}");
    /* token (id-like member), the explicit code, the URL's segment */
    corr *k = learned(n, c, 2, "c", got, 3);
    corr_subs subs = {0};
    record *s = applied(k, "c", c[1], &subs, 3);
    assert_string_equal(s->path, "/api/p/54321/");
    assert_string_equal(s->query, "c=8");
    assert_string_equal(http_headers_get(&s->req_headers, "authorization"), "Bearer aa11bb22cc");
    assert_string_equal(http_headers_get(&s->req_headers, "x-skip"), "3f2a9c1b7d");
    corr_subs_free(&subs);
    record_free(s);
    record_free(got);
    corr_free(k);
    free_all(c, 2);
    noise_free(n);
}

/* A read that answers another id than the learned one does not remap it:
 * the comparison reports it. A write does. */
static void test_reads_do_not_remap(void **state)
{
    (void)state;
    record *c[3];
    c[0] = mk("POST", "/api/sites/", NULL, NULL, "{\"id\":17}");
    c[1] = mk("GET", "/api/sites/17/", NULL, NULL, "{\"id\":17}");
    c[2] = mk("PUT", "/api/sites/17/", NULL, NULL, "{\"id\":17}");
    record *got = mk("POST", "/", NULL, NULL, "{\"id\":23}");
    corr *k = learned(NULL, c, 3, "c", got, 1);
    record_free(got);
    got = mk("GET", "/", NULL, NULL, "{\"id\":99}");
    assert_int_equal(corr_learn(k, "c", 1, c[1], got), 0);
    record *e = corr_expected(k, "c", c[1]);
    assert_string_equal(e->resp_body.data, "{\"id\":23}"); /* compared with 99: a mismatch */
    record_free(e);
    assert_int_equal(corr_learn(k, "c", 2, c[2], got), 1);
    e = corr_expected(k, "c", c[2]);
    assert_string_equal(e->resp_body.data, "{\"id\":99}");
    record_free(e);
    record_free(got);
    corr_free(k);
    free_all(c, 3);
}

/* A replayed value that is not URL-safe is percent-encoded in a path. */
static void test_encoding(void **state)
{
    (void)state;
    record *c[2];
    c[0] = mk("POST", "/", NULL, NULL, "{\"key\":\"k1\"}");
    c[1] = mk("GET", "/obj/k1", NULL, NULL, NULL);
    record *got = mk("POST", "/", NULL, NULL, "{\"key\":\"a/b+c\"}");
    corr *k = learned(NULL, c, 2, "c", got, 1);
    record *s = corr_apply(k, "c", c[1], NULL);
    assert_non_null(s);
    assert_string_equal(s->path, "/obj/a%2Fb%2Bc");
    record_free(s);
    record_free(got);
    corr_free(k);
    free_all(c, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_looks_like),      cmocka_unit_test(test_json_learn_and_substitute),
        cmocka_unit_test(test_used_later_only), cmocka_unit_test(test_headers),
        cmocka_unit_test(test_rules),           cmocka_unit_test(test_reads_do_not_remap),
        cmocka_unit_test(test_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
