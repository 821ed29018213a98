#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compare/compare.h"
#include "base/util.h"

/* A response record: status, optional Content-Type (NULL: none) and body. */
static record *mk(int status, const char *ct, const char *body)
{
    record *r = record_new();
    r->status = status;
    if (ct)
        http_headers_add(&r->resp_headers, "Content-Type", 12, ct, strlen(ct));
    if (body)
        buf_append_str(&r->resp_body, body);
    r->resp_body_size = r->resp_body.len;
    return r;
}

static record *mkbin(const char *body, size_t len)
{
    record *r = mk(200, "application/octet-stream", NULL);
    buf_append(&r->resp_body, body, len);
    return r;
}

static void hdr(record *r, const char *name, const char *value)
{
    http_headers_add(&r->resp_headers, name, strlen(name), value, strlen(value));
}

/* Every diff formatted, one per line (no trailing newline). */
static char *diffs_text(const compare_result *res)
{
    buf b = BUF_INIT;
    for (size_t i = 0; i < res->ndiffs; i++) {
        if (i)
            buf_append_char(&b, '\n');
        diff_format(&res->diffs[i], &b);
    }
    return buf_detach(&b);
}

/* Compares two bodies (both with content type ct) and checks the formatted
 * diffs are exactly want ("" = match). */
static void check_with(const compare_opts *o, const char *ct, const char *e, const char *a,
                       const char *want)
{
    record *re = mk(200, ct, e), *ra = mk(200, ct, a);
    compare_result res;
    compare_responses(o, re, ra, &res);
    char *got = diffs_text(&res);
    if (strcmp(got, want) != 0)
        fail_msg("compare\n  expected body: %s\n  actual body:   %s\n  want:\n%s\n  got:\n%s", e, a,
                 want, got);
    assert_int_equal(res.match, want[0] == '\0');
    assert_int_equal(res.ndiffs, res.ndiffs_total);
    free(got);
    compare_result_free(&res);
    record_free(re);
    record_free(ra);
}

static void check_json(const noise *n, const char *e, const char *a, const char *want)
{
    compare_opts o = {n, NULL, 100};
    check_with(&o, "application/json", e, a, want);
}

static noise *rules(const char *const *list)
{
    noise *n = noise_new();
    char err[256];
    for (; *list; list++)
        if (noise_add(n, *list, err, sizeof err) != 0)
            fail_msg("noise_add(%s): %s", *list, err);
    return n;
}

/* Do two answers whose only difference is header name (ev -> av) match
 * under n? */
static bool header_match(const noise *n, const char *name, const char *ev, const char *av)
{
    char *hs[] = {(char *)name, NULL};
    record *e = mk(200, NULL, "x"), *a = mk(200, NULL, "x");
    hdr(e, name, ev);
    hdr(a, name, av);
    compare_opts o = {n, hs, 0};
    compare_result res;
    compare_responses(&o, e, a, &res);
    bool match = res.match;
    compare_result_free(&res);
    record_free(e);
    record_free(a);
    return match;
}

static void test_json_equal(void **state)
{
    (void)state;
    check_json(NULL, "{\"a\":1,\"b\":[1,2,{\"c\":null}]}",
               "{ \"b\" : [1, 2, {\"c\": null}], \"a\": 1 }", "");
    check_json(NULL, "{\"n\":1,\"m\":[1.0,2]}", "{\"n\":1.0,\"m\":[1e0,2.0]}", "");
    check_json(NULL, "{\"n\":-0.5}", "{\"n\":-5e-1}", "");
    check_json(NULL, "[]", "[ ]", "");
    check_json(NULL, "\"s\"", " \"s\"\n", "");
    check_json(NULL, "{\"t\":true,\"f\":false,\"z\":null}", "{\"z\":null,\"f\":false,\"t\":true}",
               "");
    /* integers beyond double precision compare as integers */
    check_json(NULL, "{\"id\":9007199254740993}", "{\"id\":9007199254740992}",
               "$.id: 9007199254740993 -> 9007199254740992");
    check_json(NULL, "{\"id\":9007199254740993}", "{\"id\":9007199254740993}", "");
    /* strings with NUL bytes are compared over their full length */
    check_json(NULL, "{\"s\":\"a\\u0000b\"}", "{\"s\":\"a\\u0000c\"}",
               "$.s: \"a\\u0000b\" -> \"a\\u0000c\"");
}

static void test_json_paths(void **state)
{
    (void)state;
    check_json(NULL, "{\"a\":1}", "{\"a\":2}", "$.a: 1 -> 2");
    check_json(NULL, "{\"a\":{\"b\":{\"c\":\"x\"}},\"d\":1}",
               "{\"a\":{\"b\":{\"c\":\"y\"}},\"d\":1}", "$.a.b.c: \"x\" -> \"y\"");
    check_json(NULL,
               "{\"items\":[{\"status\":\"ok\"},{\"status\":\"ok\"},{\"status\":\"ok\"},"
               "{\"status\":\"ok\"}]}",
               "{\"items\":[{\"status\":\"ok\"},{\"status\":\"ok\"},{\"status\":\"ok\"},"
               "{\"status\":\"down\"}]}",
               "$.items[3].status: \"ok\" -> \"down\"");
    /* absent on either side, then a type change, a real and an object value */
    check_json(NULL, "{\"a\":1,\"b\":{\"x\":[1,2]},\"c\":true,\"r\":1.1}",
               "{\"c\":\"true\",\"r\":2.5,\"e\":{\"k\":null}}",
               "$.a: 1 -> (absent)\n"
               "$.b: {\"x\":[1,2]} -> (absent)\n"
               "$.c: true -> \"true\"\n"
               "$.r: 1.1 -> 2.5\n"
               "$.e: (absent) -> {\"k\":null}");
    check_json(NULL, "{\"a\":null}", "{}", "$.a: null -> (absent)");
    check_json(NULL, "{\"r\":1.0}", "{\"r\":\"1\"}", "$.r: 1.0 -> \"1\"");
    /* different top-level values */
    check_json(NULL, "[1]", "{\"a\":1}", "$: [1] -> {\"a\":1}");
    check_json(NULL, "1", "2", "$: 1 -> 2");
}

static void test_json_arrays(void **state)
{
    (void)state;
    check_json(NULL, "{\"l\":[1,2,3]}", "{\"l\":[1,2]}", "$.l[2]: 3 -> (absent)");
    check_json(NULL, "{\"l\":[1]}", "{\"l\":[1,{\"a\":2},\"x\"]}",
               "$.l[1]: (absent) -> {\"a\":2}\n$.l[2]: (absent) -> \"x\"");
    check_json(NULL, "[[1,2],[3]]", "[[1,5],[3,4]]", "$[0][1]: 2 -> 5\n$[1][1]: (absent) -> 4");
    check_json(NULL, "{\"l\":[]}", "{\"l\":[null]}", "$.l[0]: (absent) -> null");
}

static void test_json_weird_keys(void **state)
{
    (void)state;
    check_json(NULL, "{\"weird key\":1}", "{\"weird key\":2}", "$[\"weird key\"]: 1 -> 2");
    check_json(NULL, "{\"a-b\":{\"c.d\":1}}", "{\"a-b\":{\"c.d\":2}}",
               "$[\"a-b\"][\"c.d\"]: 1 -> 2");
    check_json(NULL, "{\"1x\":1,\"_ok9\":1}", "{\"1x\":2,\"_ok9\":2}",
               "$[\"1x\"]: 1 -> 2\n$._ok9: 1 -> 2");
    check_json(NULL, "{\"q\\\"\":1,\"\":1,\"\xc3\xa9t\xc3\xa9\":1}",
               "{\"q\\\"\":2,\"\":2,\"\xc3\xa9t\xc3\xa9\":2}",
               "$[\"q\\\"\"]: 1 -> 2\n$[\"\"]: 1 -> 2\n$[\"\xc3\xa9t\xc3\xa9\"]: 1 -> 2");
}

static void test_value_cut(void **state)
{
    (void)state;
    /* 100 'a's: shown as the first 80 bytes of the JSON text, then "…" */
    char e[256], want[256];
    char as[101];
    memset(as, 'a', 100);
    as[100] = '\0';
    snprintf(e, sizeof e, "{\"s\":\"%s\"}", as);
    snprintf(want, sizeof want, "$.s: \"%.79s\xe2\x80\xa6 -> \"b\"", as);
    check_json(NULL, e, "{\"s\":\"b\"}", want);
    /* a cut never splits a UTF-8 character: "é" is 2 bytes, byte 80 would be
     * its second byte */
    buf big = BUF_INIT, w = BUF_INIT;
    buf_append_str(&big, "{\"s\":\"");
    buf_append_str(&w, "$.s: \"");
    for (int i = 0; i < 60; i++)
        buf_append_str(&big, "\xc3\xa9");
    for (int i = 0; i < 39; i++)
        buf_append_str(&w, "\xc3\xa9");
    buf_append_str(&big, "\"}");
    buf_append_str(&w, "\xe2\x80\xa6 -> 1");
    check_json(NULL, big.data, "{\"s\":1}", w.data);
    buf_free(&big);
    buf_free(&w);
}

static void test_max_diffs(void **state)
{
    (void)state;
    buf e = BUF_INIT, a = BUF_INIT;
    buf_append_char(&e, '[');
    buf_append_char(&a, '[');
    for (int i = 0; i < 30; i++) {
        buf_appendf(&e, "%s%d", i ? "," : "", i);
        buf_appendf(&a, "%s%d", i ? "," : "", i + 1);
    }
    buf_append_char(&e, ']');
    buf_append_char(&a, ']');
    record *re = mk(200, "application/json", e.data), *ra = mk(500, "application/json", a.data);
    compare_opts o = {NULL, NULL, 0}; /* 0: 20 kept */
    compare_result res;
    compare_responses(&o, re, ra, &res);
    assert_false(res.match);
    assert_int_equal(res.ndiffs, 20);
    assert_int_equal(res.ndiffs_total, 31);
    assert_int_equal(res.diffs[0].kind, DIFF_STATUS);
    assert_string_equal(res.diffs[0].path, "status");
    assert_string_equal(res.diffs[1].path, "$[0]");
    assert_int_equal(res.diffs[1].kind, DIFF_JSON);
    assert_null(res.text_diff);
    compare_result_free(&res);
    o.max_diffs = 2;
    compare_responses(&o, re, ra, &res);
    assert_int_equal(res.ndiffs, 2);
    assert_int_equal(res.ndiffs_total, 31);
    compare_result_free(&res);
    /* NULL options work too */
    compare_responses(NULL, re, ra, &res);
    assert_int_equal(res.ndiffs, 20);
    compare_result_free(&res);
    record_free(re);
    record_free(ra);
    buf_free(&e);
    buf_free(&a);
}

static void test_ignore_paths(void **state)
{
    (void)state;
    const char *const r1[] = {"$.updated_at", "$.meta[\"request id\"]", "$.l[1]", NULL};
    noise *n = rules(r1);
    check_json(
        n, "{\"a\":1,\"updated_at\":\"x\",\"meta\":{\"request id\":1,\"v\":1},\"l\":[1,2,3]}",
        "{\"a\":1,\"updated_at\":\"y\",\"meta\":{\"request id\":2,\"v\":1},\"l\":[1,9,3]}", "");
    /* the ignored member may be absent on one side; siblings still count */
    check_json(n, "{\"a\":1,\"updated_at\":\"x\"}", "{\"a\":2}", "$.a: 1 -> 2");
    /* an ignored member hides its subtree; the index rule hides only [1] */
    check_json(n, "{\"updated_at\":{\"s\":1},\"l\":[1,2,3]}",
               "{\"updated_at\":{\"s\":2},\"l\":[1,2,4]}", "$.l[2]: 3 -> 4");
    /* not a prefix of a longer member name */
    check_json(n, "{\"updated_at2\":1}", "{\"updated_at2\":2}", "$.updated_at2: 1 -> 2");
    noise_free(n);

    const char *const r2[] = {"$..id", NULL};
    n = rules(r2);
    check_json(n,
               "{\"id\":1,\"a\":{\"id\":2,\"b\":[{\"id\":3,\"k\":1},{\"c\":{\"id\":4}}]},\"x\":1}",
               "{\"id\":9,\"a\":{\"id\":8,\"b\":[{\"id\":7,\"k\":2},{\"c\":{\"id\":6}}]},\"x\":1}",
               "$.a.b[0].k: 1 -> 2");
    /* "id" as a value, or "ids", is not ignored */
    check_json(n, "{\"ids\":[1],\"n\":\"id\"}", "{\"ids\":[2],\"n\":\"idx\"}",
               "$.ids[0]: 1 -> 2\n$.n: \"id\" -> \"idx\"");
    noise_free(n);

    const char *const r3[] = {"$.items[*].ts", "$.m.*.v", "$..a.b", NULL};
    n = rules(r3);
    check_json(
        n,
        "{\"items\":[{\"ts\":1,\"s\":\"ok\"},{\"ts\":2,\"s\":\"ok\"}],\"m\":{\"x\":{\"v\":1},"
        "\"y\":{\"v\":1,\"w\":1}},\"z\":{\"a\":{\"b\":1}}}",
        "{\"items\":[{\"ts\":5,\"s\":\"ok\"},{\"ts\":6,\"s\":\"down\"}],\"m\":{\"x\":{\"v\":2},"
        "\"y\":{\"v\":2,\"w\":2}},\"z\":{\"a\":{\"b\":2}}}",
        "$.items[1].s: \"ok\" -> \"down\"\n$.m.y.w: 1 -> 2");
    /* [*] does not match a missing level: $.items.ts is a different path */
    check_json(n, "{\"items\":{\"ts\":1}}", "{\"items\":{\"ts\":2}}", "$.items.ts: 1 -> 2");
    noise_free(n);

    /* "$" ignores the whole body */
    const char *const r4[] = {"$", NULL};
    n = rules(r4);
    check_json(n, "{\"a\":1}", "[2]", "");
    noise_free(n);
}

static void test_ignore_headers_and_selected(void **state)
{
    (void)state;
    char *hs[] = {"Content-Type", "X-Version", "Date", "X-Absent", NULL};
    record *e = mk(200, "application/json", "{}"), *a = mk(200, "application/json", "{}");
    hdr(e, "Date", "Mon, 01 Jan 2024 00:00:00 GMT");
    hdr(a, "date", "Tue, 02 Jan 2024 00:00:00 GMT");
    hdr(e, "X-Version", "1");
    hdr(a, "X-VERSION", "2");
    hdr(e, "X-Not-Compared", "a");
    hdr(a, "X-Not-Compared", "b");
    compare_opts o = {NULL, hs, 0};
    compare_result res;
    compare_responses(&o, e, a, &res);
    char *got = diffs_text(&res);
    assert_string_equal(got, "header: X-Version: 1 -> 2\n"
                             "header: Date: Mon, 01 Jan 2024 00:00:00 GMT -> Tue, 02 Jan 2024 "
                             "00:00:00 GMT");
    assert_int_equal(res.diffs[0].kind, DIFF_HEADER);
    free(got);
    compare_result_free(&res);

    const char *const r[] = {"header: date", "header:x-version  # build number", NULL};
    noise *n = rules(r);
    o.noise = n;
    compare_responses(&o, e, a, &res);
    assert_true(res.match);
    assert_int_equal(res.ndiffs_total, 0);
    compare_result_free(&res);
    noise_free(n);
    o.noise = NULL;

    /* absent on one side; repeated headers are one comma-joined list */
    char *hs2[] = {"Vary", "X-Only", NULL};
    o.headers = hs2;
    hdr(e, "Vary", "Accept");
    hdr(e, "Vary", "Origin");
    hdr(a, "Vary", "Accept, Origin");
    hdr(a, "X-Only", "here");
    compare_responses(&o, e, a, &res);
    got = diffs_text(&res);
    assert_string_equal(got, "header: X-Only: (absent) -> here");
    assert_null(res.diffs[0].expected);
    free(got);
    compare_result_free(&res);
    hdr(a, "Vary", "Cookie");
    compare_responses(&o, e, a, &res);
    got = diffs_text(&res);
    assert_string_equal(got, "header: Vary: Accept, Origin -> Accept, Origin, Cookie\n"
                             "header: X-Only: (absent) -> here");
    free(got);
    compare_result_free(&res);
    record_free(e);
    record_free(a);
}

/* Issue 9 item 5: a value restspy redacted at capture matches anything and
 * is counted apart, never reported as a difference. */
static void test_redacted(void **state)
{
    (void)state;
    compare_opts o = {NULL, NULL, 100};
    static const struct {
        const char *e, *a, *want;
        size_t nredacted;
    } cases[] = {
        {"[{\"u\":\"a\",\"password\":\"[redacted]\"}]", "[{\"u\":\"a\",\"password\":\"hunter2\"}]",
         "", 1},
        /* any type: the recorded string stood for whatever was there */
        {"{\"token\":\"[redacted]\",\"k\":{\"secret\":\"[redacted]\"}}",
         "{\"token\":12345,\"k\":{\"secret\":{\"x\":[1]}}}", "", 2},
        /* the marker on both sides is not "not compared" */
        {"{\"password\":\"[redacted]\",\"n\":1}", "{\"password\":\"[redacted]\",\"n\":1.0}", "", 0},
        /* a member gone from the answer is still a difference */
        {"{\"password\":\"[redacted]\"}", "{}", "$.password: \"[redacted]\" -> (absent)", 0},
        /* only the recorded side is trusted: "[redacted]" in the answer is a value */
        {"{\"password\":\"x\"}", "{\"password\":\"[redacted]\"}",
         "$.password: \"x\" -> \"[redacted]\"", 0},
        /* a marker inside a longer string is text like any other */
        {"{\"n\":\"a [redacted] b\"}", "{\"n\":\"a x b\"}", "$.n: \"a [redacted] b\" -> \"a x b\"",
         0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        record *re = mk(200, "application/json", cases[i].e);
        record *ra = mk(200, "application/json", cases[i].a);
        compare_result res;
        compare_responses(&o, re, ra, &res);
        char *got = diffs_text(&res);
        if (strcmp(got, cases[i].want) != 0 || res.nredacted != cases[i].nredacted)
            fail_msg("case %zu: diffs \"%s\" (want \"%s\"), %zu redacted (want %zu)", i, got,
                     cases[i].want, res.nredacted, cases[i].nredacted);
        free(got);
        compare_result_free(&res);
        record_free(re);
        record_free(ra);
    }

    /* A redacted header value, compared with --compare-header. */
    char *hs[] = {"Set-Cookie", NULL};
    o.headers = hs;
    record *e = mk(200, "text/plain", "same"), *a = mk(200, "text/plain", "same");
    hdr(e, "Set-Cookie", "[redacted]");
    hdr(a, "Set-Cookie", "sid=abc; Path=/");
    compare_result res;
    compare_responses(&o, e, a, &res);
    assert_true(res.match);
    assert_int_equal(res.nredacted, 1);
    compare_result_free(&res);
    record_free(e);
    record_free(a);
}

static void test_regex_rules(void **state)
{
    (void)state;
    /* global: both ISO timestamps, anywhere (also in header values) */
    const char *const r1[] = {"regex: ^\\d{4}-\\d\\d-\\d\\dT", NULL};
    noise *n = rules(r1);
    check_json(n, "{\"a\":{\"t\":\"2024-01-01T00:00:00Z\"},\"l\":[\"2024-05-05T01:02:03\"]}",
               "{\"a\":{\"t\":\"2025-12-31T23:59:59Z\"},\"l\":[\"2026-01-01T00:00:00\"]}", "");
    /* only one side matches: still a difference */
    check_json(n, "{\"t\":\"2024-01-01T00:00:00Z\"}", "{\"t\":\"yesterday\"}",
               "$.t: \"2024-01-01T00:00:00Z\" -> \"yesterday\"");
    /* \d is digits only */
    check_json(n, "{\"t\":\"abcd-01-01T\"}", "{\"t\":\"2024-01-01T\"}",
               "$.t: \"abcd-01-01T\" -> \"2024-01-01T\"");
    assert_true(header_match(n, "Last-Modified", "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"));
    noise_free(n);

    /* per path: only at that path; numbers are matched by their text */
    const char *const r2[] = {"$.token ~ ^[0-9a-f]+$", "$.l[*].n ~ ^\\d+$",
                              "$.s ~ ^[\\d.]+\\s[\\w]+$", NULL};
    n = rules(r2);
    check_json(n, "{\"token\":\"abc123\",\"other\":\"abc\",\"l\":[{\"n\":1},{\"n\":\"7\"}]}",
               "{\"token\":\"ff00\",\"other\":\"ff\",\"l\":[{\"n\":2},{\"n\":\"8\"}]}",
               "$.other: \"abc\" -> \"ff\"");
    check_json(n, "{\"token\":\"abc\"}", "{\"token\":\"XYZ\"}", "$.token: \"abc\" -> \"XYZ\"");
    check_json(n, "{\"l\":[{\"n\":1.5}]}", "{\"l\":[{\"n\":2}]}", "$.l[0].n: 1.5 -> 2");
    check_json(n, "{\"s\":\"1.5 kg\"}", "{\"s\":\"20\\tlb\"}", "");
    check_json(n, "{\"s\":\"1.5 kg\"}", "{\"s\":\"20 l-b\"}", "$.s: \"1.5 kg\" -> \"20 l-b\"");
    noise_free(n);

    /* POSIX classes, negated translations and ordinary escapes survive */
    const char *const r3[] = {"$.a ~ ^[[:alpha:]\\d]+$", "$.b ~ ^\\D+\\.[^\\d]$",
                              "$.c ~ ^\\S+\\s\\W$", NULL};
    n = rules(r3);
    check_json(n, "{\"a\":\"abc123\",\"b\":\"ab.c\",\"c\":\"xy !\"}",
               "{\"a\":\"Z9\",\"b\":\"x.y\",\"c\":\"zz\\t-\"}", "");
    check_json(n, "{\"a\":\"abc\",\"b\":\"ab.c\",\"c\":\"xy !\"}",
               "{\"a\":\"a-b\",\"b\":\"a1.c\",\"c\":\"x y_\"}",
               "$.a: \"abc\" -> \"a-b\"\n$.b: \"ab.c\" -> \"a1.c\"\n$.c: \"xy !\" -> \"x y_\"");
    noise_free(n);
}

static void check_bad_rule(const char *rule, const char *want_err);

/* Regexes are PCRE2: the patterns users write (\d, \s, lookahead, anchors,
 * UTF-8) work as in Perl; \d and \s stay ASCII; a bad one is refused. */
static void test_regex_pcre2(void **state)
{
    (void)state;
    const char *const r[] = {
        "$.d ~ ^\\d+$",                 /* digits only */
        "$.s ~ ^\\w+\\s\\w+$",          /* one blank between two words */
        "$.k ~ ^(?=.*\\d)[a-z\\d]{8}$", /* lookahead: at least one digit */
        "$.n ~ ^(?!admin)[a-z]+$",      /* negative lookahead */
        "$.u ~ \\d{4}",                 /* unanchored: anywhere */
        "$.c ~ ^caf.$",                 /* '.' is one UTF-8 character */
        "$.g ~ ^\\x{3b1}+\\d$",         /* a code point by number */
        NULL,
    };
    noise *n = rules(r);
    check_json(n, "{\"d\":\"123\"}", "{\"d\":\"4567\"}", "");
    check_json(n, "{\"d\":\"123\"}", "{\"d\":\"12a\"}", "$.d: \"123\" -> \"12a\"");
    /* \d is ASCII: an Arabic-Indic digit is not one */
    check_json(n, "{\"d\":\"1\"}", "{\"d\":\"\xd9\xa1\"}", "$.d: \"1\" -> \"\xd9\xa1\"");
    check_json(n, "{\"s\":\"a b\"}", "{\"s\":\"c\\td\"}", "");
    check_json(n, "{\"s\":\"a b\"}", "{\"s\":\"ab\"}", "$.s: \"a b\" -> \"ab\"");
    check_json(n, "{\"k\":\"abcd1234\"}", "{\"k\":\"zzzz9999\"}", "");
    check_json(n, "{\"k\":\"abcd1234\"}", "{\"k\":\"abcdefgh\"}",
               "$.k: \"abcd1234\" -> \"abcdefgh\"");
    check_json(n, "{\"n\":\"alice\"}", "{\"n\":\"bob\"}", "");
    check_json(n, "{\"n\":\"alice\"}", "{\"n\":\"admin\"}", "$.n: \"alice\" -> \"admin\"");
    check_json(n, "{\"u\":\"at 2024 ok\"}", "{\"u\":\"at 2025 then\"}", "");
    check_json(n, "{\"u\":\"at 2024\"}", "{\"u\":\"at 202\"}", "$.u: \"at 2024\" -> \"at 202\"");
    check_json(n, "{\"c\":\"caf\xc3\xa9\"}", "{\"c\":\"caf\xc3\xa8\"}", "");
    check_json(n, "{\"c\":\"caf\xc3\xa9\"}", "{\"c\":\"cafe!\"}",
               "$.c: \"caf\xc3\xa9\" -> \"cafe!\"");
    check_json(n,
               "{\"g\":\"\xce\xb1\xce\xb1"
               "1\"}",
               "{\"g\":\"\xce\xb1"
               "2\"}",
               "");
    noise_free(n);

    /* a header value that is not UTF-8 is still searched */
    const char *const rh[] = {"regex: ^v=\\d+", NULL};
    n = rules(rh);
    assert_true(header_match(n, "X-V", "v=1 \xff\xfe", "v=22 \xff"));
    assert_false(header_match(n, "X-V", "v=1 \xff", "w=2 \xff"));
    noise_free(n);

    /* text: rules on words of a text body, with a lookahead */
    const char *const rt[] = {"text: ^(?=[0-9a-f]*[a-f])[0-9a-f]{6}$", NULL};
    n = rules(rt);
    compare_opts o = {n, NULL, 0};
    check_with(&o, "text/plain", "token 1a2b3c ok\n", "token ffee00 ok\n", "");
    check_with(&o, "text/plain", "token 123456 ok\n", "token 654321 ok\n",
               "text line 1: \"123456\" -> \"654321\"");
    noise_free(n);

    /* bad patterns: one clear line, what PCRE2 says and where */
    check_bad_rule("regex: a(b",
                   "bad noise rule 'regex: a(b': missing closing parenthesis at offset 3");
    check_bad_rule("$.x ~ [z-a]", "bad noise rule '$.x ~ [z-a]': range out of order in character "
                                  "class at offset 3");
    check_bad_rule("text: x{2,1}",
                   "bad noise rule 'text: x{2,1}': numbers out of order in {} quantifier at "
                   "offset 5");
    check_bad_rule("regex: \xff", "bad noise rule 'regex: \xff': UTF-8 error: illegal byte (0xfe "
                                  "or 0xff) at offset 0");
}

static void test_text_diff(void **state)
{
    (void)state;
    const char *e = "l1\nl2\nl3\nl4\nl5\nl6\nl7\nl8\nl9\nl10\nl11\nl12\n";
    const char *a = "l1\nl2\nl3\nL4\nl5\nl6\nl7\nl8\nl9\nl10\nl11\nl12\nl13\n";
    record *re = mk(200, "text/plain", e), *ra = mk(200, "text/plain", a);
    compare_result res;
    compare_responses(NULL, re, ra, &res);
    assert_false(res.match);
    assert_int_equal(res.ndiffs, 2);
    assert_int_equal(res.diffs[0].kind, DIFF_TEXT);
    assert_int_equal(res.diffs[1].kind, DIFF_BODY);
    char *got = diffs_text(&res);
    assert_string_equal(got, "text line 4: \"l4\" -> \"L4\"\nbody: 39 bytes -> 43 bytes");
    free(got);
    assert_non_null(res.text_diff);
    assert_string_equal(res.text_diff, "--- expected\n"
                                       "+++ actual\n"
                                       "@@ -2,5 +2,5 @@\n"
                                       " l2\n"
                                       " l3\n"
                                       "-l4\n"
                                       "+L4\n"
                                       " l5\n"
                                       " l6\n"
                                       "@@ -11,2 +11,3 @@\n"
                                       " l11\n"
                                       " l12\n"
                                       "+l13\n");
    compare_result_free(&res);
    record_free(re);
    record_free(ra);

    /* close changes share a hunk; a missing final newline is marked */
    re = mk(200, "text/html", "a\nb\nc\nd\ne\n");
    ra = mk(200, "text/html", "A\nb\nc\nd\nE");
    compare_responses(NULL, re, ra, &res);
    assert_string_equal(res.text_diff, "--- expected\n"
                                       "+++ actual\n"
                                       "@@ -1,5 +1,5 @@\n"
                                       "-a\n"
                                       "+A\n"
                                       " b\n"
                                       " c\n"
                                       " d\n"
                                       "-e\n"
                                       "+E\n"
                                       "\\ No newline at end of file\n");
    compare_result_free(&res);
    record_free(re);
    record_free(ra);

    /* a long diff is cut at 40 lines */
    buf be = BUF_INIT, ba = BUF_INIT;
    for (int i = 0; i < 200; i++) {
        buf_appendf(&be, "line %d\n", i);
        buf_appendf(&ba, "LINE %d\n", i);
    }
    re = mk(200, "text/plain", be.data);
    ra = mk(200, "text/plain", ba.data);
    compare_responses(NULL, re, ra, &res);
    size_t lines = 0;
    for (const char *p = res.text_diff; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 41);
    assert_non_null(strstr(res.text_diff, "@@ -1,200 +1,200 @@\n-line 0\n-line 1\n"));
    assert_non_null(strstr(res.text_diff, "\xe2\x80\xa6 (diff cut)\n"));
    compare_result_free(&res);
    record_free(re);
    record_free(ra);
    buf_free(&be);
    buf_free(&ba);

    /* invalid JSON under a JSON content type falls back to bytes */
    re = mk(200, "application/json", "{\"a\":");
    ra = mk(200, "application/json", "{\"a\":1}");
    compare_responses(NULL, re, ra, &res);
    assert_string_equal(res.diffs[0].path, "body");
    assert_string_equal(res.text_diff, "--- expected\n+++ actual\n@@ -1,1 +1,1 @@\n"
                                       "-{\"a\":\n\\ No newline at end of file\n"
                                       "+{\"a\":1}\n\\ No newline at end of file\n");
    compare_result_free(&res);
    record_free(re);
    record_free(ra);
}

/* text_diff of two text/plain bodies (NULL when they match). */
static char *text_diff_of(const char *e, const char *a)
{
    record *re = mk(200, "text/plain", e), *ra = mk(200, "text/plain", a);
    compare_result res;
    compare_responses(NULL, re, ra, &res);
    char *d = res.text_diff ? xstrdup(res.text_diff) : NULL;
    compare_result_free(&res);
    record_free(re);
    record_free(ra);
    return d;
}

static void check_text_diff(const char *e, const char *a, const char *want)
{
    char *got = text_diff_of(e, a);
    if (!got || strcmp(got, want) != 0)
        fail_msg("text diff\n  want:\n%s\n  got:\n%s", want, got ? got : "(none)");
    free(got);
}

/* The line diff is Myers' (minimal, linear space): edge cases. */
static void test_text_diff_edges(void **state)
{
    (void)state;
    /* empty sides */
    check_text_diff("", "a\nb\n", "--- expected\n+++ actual\n@@ -0,0 +1,2 @@\n+a\n+b\n");
    check_text_diff("a\nb\n", "", "--- expected\n+++ actual\n@@ -1,2 +0,0 @@\n-a\n-b\n");
    /* identical: no diff at all */
    assert_null(text_diff_of("a\nb\n", "a\nb\n"));
    /* all different: removed lines first, then the added ones */
    check_text_diff("a\nb\nc\n", "x\ny\n",
                    "--- expected\n+++ actual\n@@ -1,3 +1,2 @@\n-a\n-b\n-c\n+x\n+y\n");
    /* Myers' own example (ABCABBA against CBABAC): D = 5, a longest
     * common part (b a b a) kept */
    check_text_diff("a\nb\nc\na\nb\nb\na\n", "c\nb\na\nb\na\nc\n",
                    "--- expected\n+++ actual\n@@ -1,7 +1,6 @@\n-a\n+c\n b\n-c\n a\n b\n-b\n"
                    " a\n+c\n");

    /* long bodies (3,000 lines: beyond the old 1M-cell LCS table) with two
     * small changes far apart: two exact hunks, not one replaced block */
    buf be = BUF_INIT, ba = BUF_INIT;
    for (int i = 0; i < 3000; i++) {
        buf_appendf(&be, "line %d\n", i);
        buf_appendf(&ba, i == 1500 ? "LINE %d\n" : "line %d\n", i);
        if (i == 2500)
            buf_append_str(&ba, "inserted\n");
    }
    check_text_diff(be.data, ba.data,
                    "--- expected\n+++ actual\n@@ -1499,5 +1499,5 @@\n line 1498\n line 1499\n"
                    "-line 1500\n+LINE 1500\n line 1501\n line 1502\n@@ -2500,4 +2500,5 @@\n"
                    " line 2499\n line 2500\n+inserted\n line 2501\n line 2502\n");
    /* the same at word level: the changed word is paired and listed */
    buf_reset(&be);
    buf_reset(&ba);
    for (int i = 0; i < 3000; i++) {
        buf_appendf(&be, "w%d ", i);
        buf_appendf(&ba, i == 10 ? "W%d " : "w%d ", i);
        if (i == 2000)
            buf_append_str(&ba, "extra ");
    }
    record *re = mk(200, "text/plain", be.data), *ra = mk(200, "text/plain", ba.data);
    compare_result res;
    compare_responses(NULL, re, ra, &res);
    char *got = diffs_text(&res);
    assert_string_equal(got, "text line 1: \"w10\" -> \"W10\"\nbody: 16890 bytes -> 16896 bytes");
    free(got);
    compare_result_free(&res);
    record_free(re);
    record_free(ra);

    /* beyond the work bound (6,000 lines against 6,000 others): the diff
     * says it is not minimal, and words are not paired */
    buf_reset(&be);
    buf_reset(&ba);
    for (int i = 0; i < 6000; i++) {
        buf_appendf(&be, "e%d\n", i);
        buf_appendf(&ba, "a%d\n", i);
    }
    buf_append_str(&ba, "one more\n");
    got = text_diff_of(be.data, ba.data);
    assert_non_null(got);
    assert_non_null(strstr(got, "--- expected\n+++ actual\n(too many differences for a minimal "
                                "diff: some changed blocks are shown whole)\n@@ -1,6000 "
                                "+1,6001 @@\n-e0\n-e1\n"));
    free(got);
    buf_free(&be);
    buf_free(&ba);
}

#define PAGE                                                                                       \
    "<html><body>\n<h1>Welcome</h1>\n<form><input type=\"hidden\" name=\"csrf\" value=\"%s\">"     \
    "</form>\n<footer>Generated %s by app</footer>\n</body></html>\n"

static record *page(const char *token, const char *ts)
{
    buf b = BUF_INIT;
    buf_appendf(&b, PAGE, token, ts);
    record *r = mk(200, "text/html; charset=utf-8", b.data);
    buf_free(&b);
    return r;
}

/* Two pages differing by a 32-hex-digit token: learning gives exactly the
 * one hex rule. */
static void learns_one_hex_rule(const compare_opts *o, const char *t1, const char *t2)
{
    record *h1 = page(t1, "2026-01-02T03:04:05Z"), *h2 = page(t2, "2026-01-02T03:04:05Z");
    compare_result res;
    compare_responses(o, h1, h2, &res);
    noise *n = noise_new();
    assert_int_equal(noise_learn(n, &res), 1);
    assert_true(noise_has(n, "text: ^[0-9a-f]{32}$"));
    noise_free(n);
    compare_result_free(&res);
    record_free(h1);
    record_free(h2);
}

/* Issue 9 item 8: noise on HTML and other text bodies, word by word. */
static void test_text_noise(void **state)
{
    (void)state;
    record *p1 = page("a8f7e3b9c0d1e2f3a4b5c6d7e8f90123", "2026-01-02T03:04:05Z");
    record *p2 = page("9c1d22e3f4a5b6c7d8e9f0a1b2c3d4e5", "2026-01-02T03:04:07Z");
    compare_opts o = {NULL, NULL, 100};
    compare_result res;
    compare_responses(&o, p1, p2, &res);
    char *got = diffs_text(&res);
    assert_string_equal(got, "text line 3: \"a8f7e3b9c0d1e2f3a4b5c6d7e8f90123\" -> "
                             "\"9c1d22e3f4a5b6c7d8e9f0a1b2c3d4e5\"\n"
                             "text line 4: \"2026-01-02T03:04:05Z\" -> \"2026-01-02T03:04:07Z\"");
    free(got);
    assert_non_null(res.text_diff);
    /* --learn-noise: the two words' shapes */
    noise *n = noise_new();
    assert_int_equal(noise_learn(n, &res), 2);
    assert_true(noise_has(n, "text: ^[0-9a-f]{32}$"));
    assert_true(noise_has(n, "text: ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"));
    compare_result_free(&res);

    /* learnt, they hide the next page's token and time, not a real change */
    o.noise = n;
    record *p3 = page("0123456789abcdef0123456789abcdef", "2027-11-30T23:59:59Z");
    compare_responses(&o, p1, p3, &res);
    assert_true(res.match);
    compare_result_free(&res);
    buf_reset(&p3->resp_body);
    buf_appendf(&p3->resp_body, PAGE, "0123456789abcdef0123456789abcdef", "2027-11-30T23:59:59Z");
    memcpy(strstr(p3->resp_body.data, "Welcome"), "Goodbye", 7);
    compare_responses(&o, p1, p3, &res);
    got = diffs_text(&res);
    assert_string_equal(got, "text line 2: \"Welcome\" -> \"Goodbye\"");
    free(got);
    compare_result_free(&res);
    /* a token of another shape (upper case, longer) is still a difference */
    record_free(p3);
    p3 = page("0123456789ABCDEF0123456789ABCDEF00", "2027-11-30T23:59:59Z");
    compare_responses(&o, p1, p3, &res);
    assert_false(res.match);
    assert_int_equal(res.ndiffs, 1);
    compare_result_free(&res);
    noise_free(n);

    /* --ignore-regex (a regex: rule) applies to the words of text bodies */
    const char *const rx[] = {"regex: ^[0-9a-f]{32}$", "regex: ^\\d{4}-", NULL};
    n = rules(rx);
    o.noise = n;
    compare_responses(&o, p1, p2, &res);
    assert_true(res.match);
    compare_result_free(&res);
    noise_free(n);
    o.noise = NULL;

    /* words added or removed: the body differs; paired words are listed */
    check_with(&o, "text/plain", "id 17 at 10:00\nok\n", "id 18 at 10:00\nok, with warnings\n",
               "text line 1: \"17\" -> \"18\"\nbody: 18 bytes -> 33 bytes");
    /* a form answer with a value restspy redacted */
    check_with(&o, "application/x-www-form-urlencoded", "user=ann&password=[redacted]&n=1",
               "user=ann&password=hunter2&n=1", "");

    /* two tokens whose digit and letter runs alternate alike (as random
     * hex sometimes does) still give the one hex rule, not a rule of their
     * accidental runs */
    learns_one_hex_rule(&o, "123ab4c56d7e8f90a1b2c3d4e5f6a7b8", "456cd7e89f0a1b23c4d5e6f7a8b9c0d1");

    /* ... nor when they also share a hex letter at the same place (the
     * "b" after the same runs): a letter that is a hex digit is no shape */
    learns_one_hex_rule(&o, "12ac34b56de78fa90cd12ef34ab56cd7", "98fd76b54ca32ec10fa98db76ce54af3");

    /* no shape in common: nothing learnt rather than a rule hiding all */
    record *t1 = mk(200, "text/plain", "v=abc-1"), *t2 = mk(200, "text/plain", "v=ab.12");
    compare_responses(&o, t1, t2, &res);
    assert_false(res.match);
    n = noise_new();
    assert_int_equal(noise_learn(n, &res), 0);
    noise_free(n);
    compare_result_free(&res);
    record_free(t1);
    record_free(t2);
    record_free(p1);
    record_free(p2);
    record_free(p3);
}

static void test_sniff_and_content_type(void **state)
{
    (void)state;
    /* no content type: '{' or '[' makes it JSON */
    check_with(NULL, NULL, " {\"a\":1,\"b\":2}", "{\"b\":2,\"a\":1}", "");
    check_with(NULL, NULL, "[1]", "[2]", "$[0]: 1 -> 2");
    /* a non-JSON content type compares text, even for JSON text */
    check_with(NULL, "text/plain", "{\"a\":1,\"b\":2}", "{\"b\":2,\"a\":1}",
               "text line 1: \"a\" -> \"b\"\ntext line 1: \":1\" -> \":2\"\n"
               "text line 1: \"b\" -> \"a\"\ntext line 1: \":2\" -> \":1\"");
    /* vendor JSON types count */
    check_with(NULL, "application/problem+json; charset=utf-8", "{\"a\":1}", "{\"a\": 1.0}", "");
    /* text that is not JSON-looking */
    check_with(NULL, NULL, "ok", "okay", "text line 1: \"ok\" -> \"okay\"");
    /* empty bodies are equal; empty vs not is a body diff */
    check_with(NULL, "application/json", "", "", "");
    check_with(NULL, "application/json", "", "{}", "body: 0 bytes -> 2 bytes");
}

static void test_binary(void **state)
{
    (void)state;
    char e[64], a[70];
    for (int i = 0; i < 64; i++)
        e[i] = (char)(i * 7);
    memcpy(a, e, 64);
    memset(a + 64, 0, 6);
    a[17] = 'x';
    record *re = mkbin(e, 64), *ra = mkbin(a, 70);
    compare_result res;
    compare_responses(NULL, re, ra, &res);
    assert_false(res.match);
    char *got = diffs_text(&res);
    assert_string_equal(got, "body: 64 bytes -> 70 bytes");
    free(got);
    assert_string_equal(res.text_diff,
                        "binary bodies differ: 64 vs 70 bytes, first difference at byte 17");
    compare_result_free(&res);
    record_free(ra);
    /* one a prefix of the other: the difference is where the shorter ends */
    ra = mkbin(e, 40);
    compare_responses(NULL, re, ra, &res);
    assert_string_equal(res.text_diff,
                        "binary bodies differ: 64 vs 40 bytes, first difference at byte 40");
    compare_result_free(&res);
    /* identical binary bodies match */
    record_free(ra);
    ra = mkbin(e, 64);
    compare_responses(NULL, re, ra, &res);
    assert_true(res.match);
    assert_null(res.text_diff);
    assert_null(res.diffs);
    compare_result_free(&res);
    record_free(re);
    record_free(ra);
}

static void test_truncated(void **state)
{
    (void)state;
    record *re = mk(200, "application/json", "{\"items\":[1,2"); /* capped capture */
    re->resp_truncated = true;
    re->resp_body_size = 100;
    record *ra = mk(200, "application/json", "{\"items\":[1,2,3]}");
    compare_result res;
    compare_responses(NULL, re, ra, &res);
    /* a match of the recorded part only, which the result says (issue 9
     * item 16) */
    assert_true(res.match);
    assert_string_equal(res.partial,
                        "recorded body incomplete (13 of 100 bytes recorded): only those compared");
    compare_result_free(&res);
    /* the answer cut at --max-decoded: the same, from the other side */
    record *rb = mk(200, "application/json", "{\"items\":[1,2,3]}");
    rb->resp_truncated = true;
    rb->resp_body.len = 5;
    compare_responses(NULL, ra, rb, &res);
    assert_true(res.match);
    assert_string_equal(res.partial,
                        "answer decoded up to 5 bytes (--max-decoded): only those compared");
    compare_result_free(&res);
    record_free(rb);
    /* whole bodies: nothing partial */
    compare_responses(NULL, ra, ra, &res);
    assert_null(res.partial);
    compare_result_free(&res);
    record_free(ra);

    /* a recorded body that was not stored is not compared at all */
    record *rd = mk(200, "application/json", NULL);
    rd->resp_body_note = xstrdup("dropped: not in the HAR file (500 bytes announced)");
    ra = mk(200, "application/json", "{\"a\":1}");
    compare_responses(NULL, rd, ra, &res);
    assert_true(res.match);
    assert_string_equal(res.partial, "recorded body not compared (dropped: not in the HAR file "
                                     "(500 bytes announced))");
    compare_result_free(&res);
    record_free(ra);
    record_free(rd);

    ra = mk(200, "application/json", "{\"items\":[1,3,3]}");
    compare_responses(NULL, re, ra, &res);
    assert_false(res.match);
    char *got = diffs_text(&res);
    assert_string_equal(got, "body: 13 bytes (truncated) -> 17 bytes");
    free(got);
    assert_string_equal(res.text_diff,
                        "recorded body was truncated at 13 bytes; bodies differ at byte 12");
    compare_result_free(&res);
    record_free(ra);

    /* the actual body must be at least as long as the recorded prefix */
    ra = mk(200, "application/json", "{\"items\"");
    compare_responses(NULL, re, ra, &res);
    assert_false(res.match);
    assert_string_equal(res.text_diff, "replayed body (8 bytes) is shorter than the truncated "
                                       "recorded one (13 bytes)");
    compare_result_free(&res);
    record_free(ra);
    record_free(re);
}

static void test_status(void **state)
{
    (void)state;
    record *re = mk(200, "application/json", "{\"a\":1}"),
           *ra = mk(404, "application/json", "{\"a\":1}");
    compare_result res;
    compare_responses(NULL, re, ra, &res);
    assert_false(res.match);
    assert_int_equal(res.ndiffs, 1);
    assert_int_equal(res.diffs[0].kind, DIFF_STATUS);
    char *got = diffs_text(&res);
    assert_string_equal(got, "status: 200 -> 404");
    free(got);
    compare_result_free(&res);
    /* status is compared even when everything is ignored */
    const char *const r[] = {"$", NULL};
    noise *n = rules(r);
    compare_opts o = {n, NULL, 0};
    compare_responses(&o, re, ra, &res);
    assert_false(res.match);
    assert_int_equal(res.ndiffs, 1);
    compare_result_free(&res);
    noise_free(n);
    record_free(re);
    record_free(ra);
}

static void check_bad_rule(const char *rule, const char *want_err)
{
    noise *n = noise_new();
    char err[256] = "";
    assert_int_equal(noise_add(n, rule, err, sizeof err), -1);
    if (strcmp(err, want_err) != 0)
        fail_msg("noise_add(%s)\n  want: %s\n  got:  %s", rule, want_err, err);
    assert_int_equal(noise_count(n), 0);
    noise_free(n);
}

static void test_rule_syntax(void **state)
{
    (void)state;
    check_bad_rule("", "bad noise rule '': empty rule");
    check_bad_rule("updated_at",
                   "bad noise rule 'updated_at': expected a JSON path ('$...'), 'header: NAME', "
                   "'regex: REGEX' or 'text: REGEX'");
    check_bad_rule("$.a[", "bad noise rule '$.a[': expected '*', an index or a quoted name after "
                           "'['");
    check_bad_rule("$.a[1", "bad noise rule '$.a[1': expected ']'");
    check_bad_rule("$.a[\"x]", "bad noise rule '$.a[\"x]': unterminated string");
    check_bad_rule("$.", "bad noise rule '$.': expected a member name after '.'");
    check_bad_rule("$..*", "bad noise rule '$..*': '..*' is not supported");
    check_bad_rule("$.a b", "bad noise rule '$.a b': unexpected text after the path");
    check_bad_rule("$.a ~ ", "bad noise rule '$.a ~': expected a regex after '~'");
    check_bad_rule("header:", "bad noise rule 'header:': expected a header name after 'header:'");
    check_bad_rule("header: X Y",
                   "bad noise rule 'header: X Y': a header name has no spaces or ':'");
    check_bad_rule("regex:  ", "bad noise rule 'regex:': expected a regex after 'regex:'");
    check_bad_rule("regex: a\nb", "bad noise rule 'regex: a\nb': a rule is one line");
    check_bad_rule("text:", "bad noise rule 'text:': expected a regex after 'text:'");
    noise *n = noise_new();
    char err[256];
    assert_int_equal(noise_add(n, "regex: a(b", err, sizeof err), -1);
    assert_non_null(strstr(err, "bad noise rule 'regex: a(b': "));
    assert_int_equal(noise_add(n, "$.x ~ [z-a]", err, sizeof err), -1);
    assert_non_null(strstr(err, "bad noise rule '$.x ~ [z-a]': "));
    /* NULL err is allowed */
    assert_int_equal(noise_add(n, "nope", NULL, 0), -1);
    assert_int_equal(noise_count(n), 0);

    /* canonical forms: equivalent spellings are one rule */
    assert_int_equal(noise_add(n, "  $[\"updated_at\"]  ", err, sizeof err), 0);
    assert_true(noise_has(n, "$.updated_at"));
    assert_int_equal(noise_add(n, "$.updated_at", err, sizeof err), 0);
    assert_int_equal(noise_count(n), 1);
    assert_int_equal(noise_add(n, "$.a.*", err, sizeof err), 0);
    assert_true(noise_has(n, "$.a[*]"));
    assert_int_equal(noise_add(n, "$..[\"x y\"]", err, sizeof err), 0);
    assert_true(noise_has(n, "$..[\"x y\"]"));
    assert_false(noise_has(n, "$..x"));
    assert_int_equal(noise_add(n, "HEADER:   Date", err, sizeof err), 0);
    assert_true(noise_has(n, "header: date"));
    assert_true(noise_has(n, "header:DATE"));
    assert_false(noise_has(n, "header: Dates"));
    assert_false(noise_has(n, "$.updated"));
    assert_false(noise_has(n, "garbage"));
    assert_int_equal(noise_count(n), 4);
    /* text: is a kind of its own, not another spelling of regex: */
    assert_int_equal(noise_add(n, "TEXT:  ^a$", err, sizeof err), 0);
    assert_true(noise_has(n, "text: ^a$"));
    assert_false(noise_has(n, "regex: ^a$"));
    assert_int_equal(noise_count(n), 5);
    noise_free(n);
    noise_free(NULL);
    assert_int_equal(noise_count(NULL), 0);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    buf b = BUF_INIT;
    char tmp[512];
    size_t k;
    while ((k = fread(tmp, 1, sizeof tmp, f)) > 0)
        buf_append(&b, tmp, k);
    fclose(f);
    return buf_detach(&b);
}

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_noise_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/restspy-compare-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char p1[64], p2[64];
    snprintf(p1, sizeof p1, "%s/a.noise", dir);
    snprintf(p2, sizeof p2, "%s/b.noise", dir);
    spit(p1, "# timestamps\n"
             "\n"
             "$.updated_at\n"
             "   # indented comment\n"
             "$..id   # any id\n"
             "$.items[*].ts\r\n"
             "header: Date\n"
             "regex: ^\\d{4}-\\d\\d  \n"
             "$.token ~ ^#?[0-9a-f]+$\n"
             "$[\"weird key\"][2]\n");
    noise *n = noise_new();
    char err[300];
    if (noise_load(n, p1, err, sizeof err) != 0)
        fail_msg("noise_load: %s", err);
    assert_int_equal(noise_count(n), 7);
    assert_true(noise_has(n, "$..id"));
    assert_true(noise_has(n, "regex: ^\\d{4}-\\d\\d"));
    assert_true(noise_has(n, "$.token ~ ^#?[0-9a-f]+$"));
    assert_int_equal(noise_save(n, p2, err, sizeof err), 0);
    char *saved = slurp(p2);
    /* comments first, then the canonical rules in order */
    const char *rules_text = "$.updated_at\n"
                             "$..id\n"
                             "$.items[*].ts\n"
                             "header: Date\n"
                             "regex: ^\\d{4}-\\d\\d\n"
                             "$.token ~ ^#?[0-9a-f]+$\n"
                             "$[\"weird key\"][2]\n";
    assert_int_equal(saved[0], '#');
    assert_non_null(strstr(saved, rules_text));
    assert_string_equal(saved + strlen(saved) - strlen(rules_text), rules_text);
    free(saved);
    /* read back: the same rules; loading twice adds nothing */
    noise *m = noise_new();
    assert_int_equal(noise_load(m, p2, err, sizeof err), 0);
    assert_int_equal(noise_count(m), 7);
    assert_int_equal(noise_load(m, p2, err, sizeof err), 0);
    assert_int_equal(noise_count(m), 7);
    assert_int_equal(noise_save(m, p1, err, sizeof err), 0);
    char *a = slurp(p1), *b = slurp(p2);
    assert_string_equal(a, b);
    free(a);
    free(b);
    noise_free(m);

    /* the loaded rules work */
    compare_opts o = {n, NULL, 0};
    check_with(&o, "application/json",
               "{\"id\":1,\"updated_at\":\"x\",\"items\":[{\"ts\":1}],\"token\":\"ab\","
               "\"weird key\":[0,0,1]}",
               "{\"id\":2,\"updated_at\":\"y\",\"items\":[{\"ts\":2}],\"token\":\"cd\","
               "\"weird key\":[0,0,2]}",
               "");

    /* errors: FILE:LINE, and nothing from a bad file is added */
    spit(p1, "# ok\n$.a\n\n$.b[\n");
    size_t before = noise_count(n);
    assert_int_equal(noise_load(n, p1, err, sizeof err), -1);
    char want[300];
    snprintf(want, sizeof want,
             "%s:4: bad noise rule '$.b[': expected '*', an index or a quoted name after '['", p1);
    assert_string_equal(err, want);
    assert_int_equal(noise_count(n), before);
    assert_false(noise_has(n, "$.a"));
    spit(p1, "header: A B\n");
    assert_int_equal(noise_load(n, p1, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:1: bad noise rule 'header: A B'", p1);
    assert_int_equal(strncmp(err, want, strlen(want)), 0);

    char p3[80];
    snprintf(p3, sizeof p3, "%s/missing", dir);
    assert_int_equal(noise_load(n, p3, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: No such file or directory", p3);
    assert_string_equal(err, want);
    snprintf(p3, sizeof p3, "%s/no/dir", dir);
    assert_int_equal(noise_save(n, p3, err, sizeof err), -1);
    assert_non_null(strstr(err, "No such file or directory"));
    noise_free(n);

    /* an empty rule set saves as comments only and loads back empty */
    n = noise_new();
    assert_int_equal(noise_save(n, p2, err, sizeof err), 0);
    assert_int_equal(noise_load(n, p2, err, sizeof err), 0);
    assert_int_equal(noise_count(n), 0);
    noise_free(n);

    unlink(p1);
    unlink(p2);
    assert_int_equal(rmdir(dir), 0);
}

static void test_learn(void **state)
{
    (void)state;
    /* two replies to the same request */
    record *r1 =
        mk(200, "application/json",
           "{\"items\":[{\"ts\":1,\"n\":\"a\"},{\"ts\":1,\"n\":\"b\"},{\"ts\":1,\"n\":\"c\"},"
           "{\"ts\":1,\"n\":\"d\"}],\"updated_at\":\"t1\",\"weird key\":[1],\"same\":1}");
    record *r2 =
        mk(200, "application/json",
           "{\"items\":[{\"ts\":2,\"n\":\"a\"},{\"ts\":1,\"n\":\"b\"},{\"ts\":1,\"n\":\"c\"},"
           "{\"ts\":5,\"n\":\"d\"}],\"updated_at\":\"t2\",\"weird key\":[2],\"same\":1}");
    hdr(r1, "Date", "d1");
    hdr(r2, "Date", "d2");
    hdr(r1, "ETag", "e");
    hdr(r2, "ETag", "e");
    char *hs[] = {"date", "ETag", NULL};
    compare_opts o = {NULL, hs, 100};
    compare_result res;
    compare_responses(&o, r1, r2, &res);
    char *got = diffs_text(&res);
    assert_string_equal(got, "header: date: d1 -> d2\n"
                             "$.items[0].ts: 1 -> 2\n"
                             "$.items[3].ts: 1 -> 5\n"
                             "$.updated_at: \"t1\" -> \"t2\"\n"
                             "$[\"weird key\"][0]: 1 -> 2");
    free(got);

    noise *n = noise_new();
    char err[128];
    assert_int_equal(noise_add(n, "$.updated_at", err, sizeof err), 0);
    assert_int_equal(noise_learn(n, &res), 3);
    assert_int_equal(noise_count(n), 4);
    assert_true(noise_has(n, "header: date"));
    assert_true(noise_has(n, "$.items[*].ts"));
    assert_true(noise_has(n, "$.updated_at"));
    assert_true(noise_has(n, "$[\"weird key\"][*]"));
    assert_false(noise_has(n, "$.items[0].ts"));
    /* learning the same result again adds nothing */
    assert_int_equal(noise_learn(n, &res), 0);
    assert_int_equal(noise_count(n), 4);
    compare_result_free(&res);

    /* with the learnt rules the two replies match, and so does a third
     * reply that differs in another item's timestamp */
    o.noise = n;
    compare_responses(&o, r1, r2, &res);
    assert_true(res.match);
    compare_result_free(&res);
    record_free(r2);
    r2 = mk(200, "application/json",
            "{\"items\":[{\"ts\":9,\"n\":\"a\"},{\"ts\":9,\"n\":\"b\"},{\"ts\":1,\"n\":\"c\"},"
            "{\"ts\":1,\"n\":\"d\"}],\"updated_at\":\"t3\",\"weird key\":[3],\"same\":1}");
    hdr(r2, "Date", "d3");
    hdr(r2, "ETag", "e");
    compare_responses(&o, r1, r2, &res);
    assert_true(res.match);
    compare_result_free(&res);

    /* status and binary bodies give no rule */
    record *t1 = mkbin("\xff", 1), *t2 = mkbin("\xfe", 1);
    t2->status = 201;
    o.noise = NULL;
    compare_responses(&o, t1, t2, &res);
    assert_int_equal(res.ndiffs, 2);
    assert_int_equal(noise_learn(n, &res), 0);
    assert_int_equal(noise_count(n), 4);
    compare_result_free(&res);
    record_free(t1);
    record_free(t2);

    /* a root-level difference becomes "$" */
    check_json(NULL, "1", "2", "$: 1 -> 2");
    record *j1 = mk(200, "application/json", "1"), *j2 = mk(200, "application/json", "2");
    compare_responses(&o, j1, j2, &res);
    assert_int_equal(noise_learn(n, &res), 1);
    assert_true(noise_has(n, "$"));
    compare_result_free(&res);
    record_free(j1);
    record_free(j2);

    noise_free(n);
    record_free(r1);
    record_free(r2);
}

static void test_equal_fast_path(void **state)
{
    (void)state;
    /* identical bytes: a match even when the "JSON" would not parse */
    char *hs[] = {"Content-Type", NULL};
    record *re = mk(200, "application/json", "{not json"),
           *ra = mk(200, "application/json", "{not json");
    compare_opts o = {NULL, hs, 0};
    compare_result res;
    compare_responses(&o, re, ra, &res);
    assert_true(res.match);
    assert_int_equal(res.ndiffs_total, 0);
    assert_null(res.diffs);
    assert_null(res.text_diff);
    compare_result_free(&res);
    compare_result_free(&res); /* freeing twice is harmless: it zeroes */
    compare_result_free(NULL);
    record_free(re);
    record_free(ra);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_equal),
        cmocka_unit_test(test_json_paths),
        cmocka_unit_test(test_json_arrays),
        cmocka_unit_test(test_json_weird_keys),
        cmocka_unit_test(test_value_cut),
        cmocka_unit_test(test_max_diffs),
        cmocka_unit_test(test_ignore_paths),
        cmocka_unit_test(test_ignore_headers_and_selected),
        cmocka_unit_test(test_redacted),
        cmocka_unit_test(test_regex_rules),
        cmocka_unit_test(test_regex_pcre2),
        cmocka_unit_test(test_text_diff),
        cmocka_unit_test(test_text_diff_edges),
        cmocka_unit_test(test_text_noise),
        cmocka_unit_test(test_sniff_and_content_type),
        cmocka_unit_test(test_binary),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_rule_syntax),
        cmocka_unit_test(test_noise_file),
        cmocka_unit_test(test_learn),
        cmocka_unit_test(test_equal_fast_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
