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

#include "base/buf.h"
#include "compare/compare.h"
#include "capture/record.h"
#include "replay/report.h"
#include "base/util.h"

#define ID(n) "01920000-0000-7000-8000-00000000000" #n

/* A case as replay would hand it over: the caller owns it. */
static record *mkcase(const char *id, const char *method, const char *path, const char *query,
                      int status, int64_t started_at_us)
{
    record *r = record_new();
    snprintf(r->id, sizeof r->id, "%s", id);
    r->method = xstrdup(method);
    r->path = xstrdup(path);
    r->query = query ? xstrdup(query) : NULL;
    r->status = status;
    r->started_at_us = started_at_us;
    return r;
}

/* Adds an outcome for a throw-away case (the report must not keep pointers
 * into it: it is freed at once). */
static void add(report *rp, outcome_kind k, const char *id, const char *method, const char *path,
                const char *query, int status, int64_t t, unsigned loop, const compare_result *res,
                const char *detail, int64_t lat)
{
    record *c = mkcase(id, method, path, query, status, t);
    report_add(rp, k, c, loop, res, detail, lat);
    record_free(c);
}

static char *summary_text(const report *rp, size_t max_listed)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    report_summary(rp, f, max_listed);
    fclose(f);
    return text;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    buf b = BUF_INIT;
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        buf_append(&b, tmp, n);
    fclose(f);
    *len = b.len;
    return b.data ? buf_detach(&b) : xstrdup("");
}

static void tmp_path(char *out, size_t len, const char *ext)
{
    snprintf(out, len, "/tmp/restspy-report-XXXXXX");
    int fd = mkstemp(out);
    assert_true(fd >= 0);
    close(fd);
    unlink(out);
    strncat(out, ext, len - strlen(out) - 1);
}

/* The JSON report of rp, written to a file and read back (the file is
 * removed). Owned by the caller. */
static json_t *written_json(const report *rp)
{
    char path[64], err[200];
    tmp_path(path, sizeof path, ".json");
    assert_int_equal(report_write_json(rp, path, err, sizeof err), 0);
    json_t *j = json_load_file(path, 0, NULL);
    assert_non_null(j);
    unlink(path);
    return j;
}

/* ---- counts and exit codes --------------------------------------------- */

typedef struct mix {
    size_t n[OUTCOME_SENT + 1];
    int exit_code;
} mix;

static void test_counts_and_exit_codes(void **state)
{
    (void)state;
    /* match, mismatch, error, unreplayable, sent */
    const mix mixes[] = {
        {{0, 0, 0, 0, 0}, 0}, {{3, 0, 0, 0, 0}, 0}, {{2, 0, 0, 0, 2}, 0}, {{0, 0, 0, 0, 1}, 0},
        {{5, 1, 0, 0, 0}, 1}, {{5, 0, 0, 1, 0}, 1}, {{1, 2, 0, 3, 1}, 1}, {{0, 0, 1, 0, 0}, 2},
        {{4, 1, 1, 0, 0}, 2}, {{1, 1, 1, 1, 1}, 2}, {{0, 0, 7, 2, 0}, 2},
    };
    for (size_t m = 0; m < sizeof mixes / sizeof mixes[0]; m++) {
        report *rp = report_new("http://t:1");
        size_t total = 0;
        for (int k = OUTCOME_MATCH; k <= OUTCOME_SENT; k++) {
            for (size_t i = 0; i < mixes[m].n[k]; i++) {
                compare_result res = {
                    .diffs = NULL, .ndiffs = 0, .ndiffs_total = 0, .text_diff = NULL};
                /* sent: nothing recorded to compare with */
                add(rp, (outcome_kind)k, ID(1), "GET", "/x", NULL, k == OUTCOME_SENT ? 0 : 200,
                    (int64_t)i, 0, k == OUTCOME_MISMATCH ? &res : NULL,
                    k == OUTCOME_ERROR ? "timeout" : NULL, 10);
                total++;
            }
        }
        for (int k = OUTCOME_MATCH; k <= OUTCOME_SENT; k++)
            assert_int_equal(report_count(rp, (outcome_kind)k), mixes[m].n[k]);
        if (report_exit_code(rp) != mixes[m].exit_code)
            fail_msg("mix %zu: exit code %d, want %d", m, report_exit_code(rp), mixes[m].exit_code);
        char *s = summary_text(rp, 10);
        char want[200];
        snprintf(want, sizeof want, "%zu request%s: %zu matched, %zu mismatched, %zu error%s, ",
                 total, total == 1 ? "" : "s", mixes[m].n[OUTCOME_MATCH],
                 mixes[m].n[OUTCOME_MISMATCH], mixes[m].n[OUTCOME_ERROR],
                 mixes[m].n[OUTCOME_ERROR] == 1 ? "" : "s");
        assert_memory_equal(s, want, strlen(want));
        assert_true((strstr(s, "sent without recorded response") != NULL) ==
                    (mixes[m].n[OUTCOME_SENT] > 0));
        free(s);
        report_free(rp);
    }
}

/* ---- summary ----------------------------------------------------------- */

/* The fixed report of the exact-summary test, added in answer order (not in
 * recorded order, as with concurrency). */
static report *fixed_report(void)
{
    report *rp = report_new("http://127.0.0.1:8000");
    diff d1[] = {
        {DIFF_JSON, "$.name", "\"Paris\"", "\"Paris!\""},
        {DIFF_JSON, "$.visits", "3", "4"},
    };
    compare_result r1 = {.diffs = d1, .ndiffs = 2, .ndiffs_total = 3, .text_diff = NULL};
    diff d2[] = {{DIFF_STATUS, "status", "201", "500"}};
    compare_result r2 = {.diffs = d2,
                         .ndiffs = 1,
                         .ndiffs_total = 1,
                         .text_diff = "--- expected\n+++ actual\n-ok\n+fail\n"};

    add(rp, OUTCOME_ERROR, ID(4), "GET", "/a", NULL, 200, 4000, 0, NULL,
        "connect: connection refused", -1);
    add(rp, OUTCOME_MISMATCH, ID(3), "POST", "/api/checks/", "site=3", 201, 3000, 0, &r2, NULL,
        900);
    add(rp, OUTCOME_MATCH, ID(1), "GET", "/api/sites/", NULL, 200, 1000, 0, NULL, NULL, 1500);
    add(rp, OUTCOME_ERROR, ID(6), "GET", "/c", NULL, 200, 500, 0, NULL, "timeout", -1);
    add(rp, OUTCOME_MISMATCH, ID(2), "GET", "/api/sites/paris/", NULL, 200, 2000, 0, &r1, NULL,
        1200);
    add(rp, OUTCOME_UNREPLAYABLE, ID(7), "PUT", "/d", NULL, 200, 6000, 0, NULL,
        "request body was truncated at capture", -1);
    add(rp, OUTCOME_ERROR, ID(5), "GET", "/b", NULL, 200, 5000, 0, NULL,
        "connect: connection refused", -1);
    report_set_elapsed(rp, 2.0);
    return rp;
}

static void test_summary_exact(void **state)
{
    (void)state;
    report *rp = fixed_report();
    char *s = summary_text(rp, 10);
    assert_string_equal(
        s, "7 requests: 1 matched, 2 mismatched, 3 errors, 1 not replayable in 2.00 s (1.5 "
           "requests/s)\n"
           "MISMATCH GET /api/sites/paris/ (id " ID(
               2) "):\n"
                  "    $.name: \"Paris\" -> \"Paris!\"\n"
                  "    $.visits: 3 -> 4\n"
                  "    ... and 1 more difference\n"
                  "MISMATCH POST /api/checks/?site=3 (id " ID(
                      3) "):\n"
                         "    status: 201 -> 500\n"
                         "      --- expected\n"
                         "      +++ actual\n"
                         "      -ok\n"
                         "      +fail\n"
                         "ERROR connect: connection refused: 2 requests\n"
                         "ERROR timeout: 1 request\n"
                         "NOT REPLAYABLE request body was truncated at capture: 1 request\n");
    free(s);

    /* Only the first mismatch in recorded order is listed; the rest counted. */
    s = summary_text(rp, 1);
    assert_non_null(strstr(s, "MISMATCH GET /api/sites/paris/"));
    assert_null(strstr(s, "MISMATCH POST"));
    assert_non_null(strstr(s, "    $.visits: 3 -> 4\n    ... and 1 more difference\n"
                              "... and 1 more (see --report json)\nERROR connect"));
    free(s);
    s = summary_text(rp, 0);
    assert_null(strstr(s, "MISMATCH"));
    assert_non_null(strstr(s, "\n... and 2 more (see --report json)\n"));
    free(s);
    report_free(rp);
}

static void test_summary_sent_loops_and_escapes(void **state)
{
    (void)state;
    report *rp = report_new(NULL);
    /* A server's answer may hold terminal escapes and newlines: shown, not
     * obeyed, and each difference stays on one line. */
    diff d[] = {{DIFF_HEADER, "header: X-Evil", "a", "\x1b[2J\r\nfake line"},
                {DIFF_BODY, "body", "caf\xc3\xa9 \xe2\x82\xac",
                 "\xff\xc2\x9b"
                 "1m \xe2\x82"}};
    compare_result r = {
        .diffs = d, .ndiffs = 2, .ndiffs_total = 2, .text_diff = "-x\x1b]0;title\x07\n+y"};
    add(rp, OUTCOME_SENT, ID(1), "POST", "/p", NULL, 0, 1, 0, NULL, NULL, 5);
    add(rp, OUTCOME_MISMATCH, ID(2), "GET", "/q", "a=1", 200, 2, 1, &r, NULL, 5);
    add(rp, OUTCOME_ERROR, ID(3), "GET", "/z", NULL, 200, 3, 1, NULL, NULL, -1);
    char *s = summary_text(rp, 5);
    assert_string_equal(
        s, "3 requests: 0 matched, 1 mismatched, 1 error, 0 not replayable, 1 "
           "sent without recorded response\n"
           "MISMATCH GET /q?a=1 (id " ID(
               2) ", loop 2):\n"
                  "    header: X-Evil: a -> \\x1b[2J\\x0d\\x0afake line\n"
                  "    body: caf\xc3\xa9 \xe2\x82\xac -> \\xff\\xc2\\x9b1m \\xe2\\x82\n"
                  "      -x\\x1b]0;title\\x07\n"
                  "      +y\n"
                  "ERROR unknown error: 1 request\n");
    assert_int_equal(report_exit_code(rp), 2);
    free(s);
    report_free(rp);
}

/* Issue 9 item 5: fields redacted at capture are counted apart. */
static void test_redacted_counts(void **state)
{
    (void)state;
    report *rp = report_new("http://t:1");
    compare_result m = {.match = true, .nredacted = 2};
    diff d[] = {{DIFF_JSON, "$.n", "1", "2"}};
    compare_result mm = {.diffs = d, .ndiffs = 1, .ndiffs_total = 1, .nredacted = 1};
    add(rp, OUTCOME_MATCH, ID(1), "GET", "/u", NULL, 200, 1, 0, &m, NULL, 5);
    add(rp, OUTCOME_MATCH, ID(2), "GET", "/v", NULL, 200, 2, 0, NULL, NULL, 5);
    add(rp, OUTCOME_MISMATCH, ID(3), "GET", "/w", NULL, 200, 3, 0, &mm, NULL, 5);
    char *s = summary_text(rp, 5);
    assert_string_equal(s, "3 requests: 2 matched, 1 mismatched, 0 errors, 0 not replayable\n"
                           "redacted: 3 fields not compared (redacted at capture), in 2 "
                           "requests\n"
                           "MISMATCH GET /w (id " ID(3) "):\n"
                                                        "    $.n: 1 -> 2\n");
    free(s);
    json_t *j = written_json(rp);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "counts"), "redacted_fields")), 3);
    json_t *res = json_object_get(j, "results");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(res, 0), "redacted_fields")),
                     2);
    assert_null(json_object_get(json_array_get(res, 1), "redacted_fields"));
    json_decref(j);
    assert_int_equal(report_exit_code(rp), 1);
    report_free(rp);
}

/* Issue 9 item 17: the summary says what happened. */
static void test_summary_wording(void **state)
{
    (void)state;
    /* Every connection refused: no rate, nothing was answered. */
    report *rp = report_new("http://127.0.0.1:1");
    for (int i = 0; i < 3; i++)
        add(rp, OUTCOME_ERROR, ID(1), "GET", "/x", NULL, 200, i, 0, NULL,
            "connect: connection refused", -1);
    report_set_elapsed(rp, 0.004);
    char *s = summary_text(rp, 5);
    assert_string_equal(s, "3 requests: 0 matched, 0 mismatched, 3 errors, 0 not replayable in "
                           "0.00 s\nERROR connect: connection refused: 3 requests\n");
    free(s);
    report_free(rp);

    /* --no-compare with recorded responses: sent, not compared; only what
     * had no recorded response is "without recorded response". */
    rp = report_new("http://t:1");
    add(rp, OUTCOME_SENT, ID(1), "GET", "/a", NULL, 200, 1, 0, NULL, "not compared (--no-compare)",
        5);
    add(rp, OUTCOME_SENT, ID(2), "GET", "/b", NULL, 200, 2, 0, NULL, "not compared (--no-compare)",
        5);
    s = summary_text(rp, 5);
    assert_string_equal(s, "2 requests: 0 matched, 0 mismatched, 0 errors, 0 not replayable, 2 "
                           "sent, not compared\n");
    free(s);
    add(rp, OUTCOME_SENT, ID(3), "POST", "/c", NULL, 0, 3, 0, NULL, "no recorded response", 5);
    report_set_elapsed(rp, 1.0);
    s = summary_text(rp, 5);
    assert_string_equal(s, "3 requests: 0 matched, 0 mismatched, 0 errors, 0 not replayable, 1 "
                           "sent without recorded response, 2 sent, not compared in 1.00 s (3.0 "
                           "requests/s)\n");
    free(s);
    report_free(rp);
}

/* Issue 9 item 16: a partly compared answer is never counted as matched. */
static void test_partial(void **state)
{
    (void)state;
    report *rp = report_new("http://t:1");
    const char *why = "recorded body incomplete (65536 of 120271 bytes recorded): only those "
                      "compared";
    add(rp, OUTCOME_MATCH, ID(1), "GET", "/small", NULL, 200, 1, 0, NULL, NULL, 5);
    add(rp, OUTCOME_PARTIAL, ID(2), "GET", "/big", NULL, 200, 2, 0, NULL, why, 5);
    char *s = summary_text(rp, 5);
    assert_string_equal(s, "2 requests: 1 matched, 0 mismatched, 0 errors, 0 not replayable, "
                           "1 partly compared\n"
                           "PARTLY COMPARED recorded body incomplete (65536 of 120271 bytes "
                           "recorded): only those compared: 1 request\n");
    free(s);
    assert_int_equal(report_count(rp, OUTCOME_MATCH), 1);
    assert_int_equal(report_count(rp, OUTCOME_PARTIAL), 1);
    assert_int_equal(report_exit_code(rp), 0);
    char path[64], err[200];
    tmp_path(path, sizeof path, ".json");
    assert_int_equal(report_write_json(rp, path, err, sizeof err), 0);
    json_t *j = json_load_file(path, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "counts"), "partial")),
                     1);
    json_t *r = json_array_get(json_object_get(j, "results"), 1);
    assert_string_equal(json_string_value(json_object_get(r, "outcome")), "partial");
    assert_string_equal(json_string_value(json_object_get(r, "detail")), why);
    json_decref(j);
    unlink(path);
    tmp_path(path, sizeof path, ".xml");
    assert_int_equal(report_write_junit(rp, path, err, sizeof err), 0);
    size_t len;
    char *xml = read_all(path, &len);
    assert_non_null(strstr(xml, "<system-out>partly compared: recorded body incomplete"));
    assert_non_null(strstr(xml, " tests=\"2\" failures=\"0\" errors=\"0\" skipped=\"0\""));
    free(xml);
    unlink(path);
    report_free(rp);
}

/* The report deep-copies: the caller frees its result right after adding. */
static void test_deep_copy(void **state)
{
    (void)state;
    report *rp = report_new("http://x:2");
    record *c = mkcase(ID(1), "DELETE", "/items/9", "force=1", 204, 7);
    compare_result r = {.diffs = xcalloc(2, sizeof(diff)),
                        .ndiffs = 2,
                        .ndiffs_total = 2,
                        .text_diff = xstrdup("-a\n+b\n")};
    r.diffs[0] = (diff){DIFF_STATUS, xstrdup("status"), xstrdup("204"), xstrdup("404")};
    r.diffs[1] = (diff){DIFF_JSON, xstrdup("$.gone"), NULL, xstrdup("true")};
    char *detail = xstrdup("some detail");
    report_add(rp, OUTCOME_MISMATCH, c, 0, &r, detail, 33);
    for (size_t i = 0; i < r.ndiffs; i++) {
        memset(r.diffs[i].path, 'X', strlen(r.diffs[i].path));
        free(r.diffs[i].path);
        free(r.diffs[i].expected);
        free(r.diffs[i].actual);
    }
    free(r.diffs);
    free(r.text_diff);
    free(detail);
    memset(c->path, 'Y', strlen(c->path));
    record_free(c);
    /* Many more adds move the string block several times. */
    for (int i = 0; i < 5000; i++)
        add(rp, OUTCOME_MATCH, ID(2), "GET", "/a/rather/long/path/to/make/the/block/grow", "q=1",
            200, 100 + i, 0, NULL, NULL, i);
    char *s = summary_text(rp, 5);
    assert_non_null(strstr(s,
                           "MISMATCH DELETE /items/9?force=1 (id " ID(1) "):\n"
                                                                         "    status: 204 -> 404\n"
                                                                         "    $.gone: "));
    assert_non_null(strstr(s, "      -a\n      +b\n"));
    free(s);
    report_free(rp);
}

/* What compare.c produces goes through unchanged: the real comparison of a
 * renamed field, freed by its owner right after report_add. */
static void test_from_compare(void **state)
{
    (void)state;
    record *exp = mkcase(ID(1), "GET", "/api/sites/paris/", NULL, 200, 1);
    buf_append_str(&exp->resp_body, "{\"name\":\"Paris\",\"up\":true}");
    record *got = record_new();
    got->status = 200;
    buf_append_str(&got->resp_body, "{\"up\":true,\"name\":\"Paris!\"}");
    compare_opts o = {NULL, NULL, 0};
    compare_result res;
    compare_responses(&o, exp, got, &res);
    assert_false(res.match);
    report *rp = report_new("http://t:1");
    report_add(rp, OUTCOME_MISMATCH, exp, 0, &res, NULL, 10);
    compare_result_free(&res);
    record_free(got);
    record_free(exp);
    char *s = summary_text(rp, 5);
    assert_non_null(strstr(
        s, "MISMATCH GET /api/sites/paris/ (id " ID(1) "):\n"
                                                       "    $.name: \"Paris\" -> \"Paris!\"\n"));
    free(s);
    report_free(rp);
}

/* ---- JSON -------------------------------------------------------------- */

static json_t *result_by_id(json_t *results, const char *id, unsigned loop)
{
    size_t i;
    json_t *r;
    json_array_foreach(results, i, r)
    {
        if (strcmp(json_string_value(json_object_get(r, "id")), id) == 0 &&
            json_integer_value(json_object_get(r, "loop")) == loop)
            return r;
    }
    fail_msg("no result %s loop %u", id, loop);
    return NULL;
}

static void test_json(void **state)
{
    (void)state;
    report *rp = fixed_report();
    diff d[] = {{DIFF_JSON, "$.gone", NULL, "\"x\\u0000y\""}, {DIFF_BODY, "body", "\xff", NULL}};
    compare_result r = {.diffs = d, .ndiffs = 2, .ndiffs_total = 2, .text_diff = NULL};
    add(rp, OUTCOME_MISMATCH, ID(8), "GET", "/e", NULL, 200, 7000, 1, &r, NULL, 77);
    add(rp, OUTCOME_SENT, ID(9), "POST", "/f", NULL, 0, 8000, 0, NULL, NULL, 12);
    char path[64], err[256];
    tmp_path(path, sizeof path, ".json");
    assert_int_equal(report_write_json(rp, path, err, sizeof err), 0);

    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j)
        fail_msg("report JSON does not parse: %s (line %d)", je.text, je.line);
    assert_string_equal(json_string_value(json_object_get(j, "target")), "http://127.0.0.1:8000");
    assert_true(json_real_value(json_object_get(j, "elapsed_s")) == 2.0);
    json_t *counts = json_object_get(j, "counts");
    assert_int_equal(json_integer_value(json_object_get(counts, "requests")), 9);
    assert_int_equal(json_integer_value(json_object_get(counts, "matched")),
                     report_count(rp, OUTCOME_MATCH));
    assert_int_equal(json_integer_value(json_object_get(counts, "mismatched")), 3);
    assert_int_equal(json_integer_value(json_object_get(counts, "errors")), 3);
    assert_int_equal(json_integer_value(json_object_get(counts, "unreplayable")), 1);
    assert_int_equal(json_integer_value(json_object_get(counts, "sent")), 1);

    json_t *results = json_object_get(j, "results");
    assert_int_equal(json_array_size(results), 9);
    /* Recorded order, loop by loop; the loop-2 case last. */
    assert_string_equal(json_string_value(json_object_get(json_array_get(results, 0), "id")),
                        ID(6));
    assert_string_equal(json_string_value(json_object_get(json_array_get(results, 1), "id")),
                        ID(1));
    assert_string_equal(json_string_value(json_object_get(json_array_get(results, 8), "id")),
                        ID(8));

    json_t *m = result_by_id(results, ID(1), 1);
    assert_string_equal(json_string_value(json_object_get(m, "outcome")), "match");
    assert_string_equal(json_string_value(json_object_get(m, "method")), "GET");
    assert_string_equal(json_string_value(json_object_get(m, "path")), "/api/sites/");
    assert_int_equal(json_integer_value(json_object_get(m, "status_expected")), 200);
    assert_int_equal(json_integer_value(json_object_get(m, "status_actual")), 200);
    assert_int_equal(json_integer_value(json_object_get(m, "latency_us")), 1500);
    /* Compact: a match has no diff members. */
    assert_null(json_object_get(m, "diffs"));
    assert_null(json_object_get(m, "detail"));
    assert_null(json_object_get(m, "query"));

    json_t *mm = result_by_id(results, ID(3), 1);
    assert_string_equal(json_string_value(json_object_get(mm, "outcome")), "mismatch");
    assert_string_equal(json_string_value(json_object_get(mm, "query")), "site=3");
    assert_int_equal(json_integer_value(json_object_get(mm, "status_expected")), 201);
    assert_int_equal(json_integer_value(json_object_get(mm, "status_actual")), 500);
    assert_string_equal(json_string_value(json_object_get(mm, "text_diff")),
                        "--- expected\n+++ actual\n-ok\n+fail\n");
    json_t *d0 = json_array_get(json_object_get(mm, "diffs"), 0);
    assert_string_equal(json_string_value(json_object_get(d0, "path")), "status");
    assert_string_equal(json_string_value(json_object_get(d0, "expected")), "201");
    assert_string_equal(json_string_value(json_object_get(d0, "actual")), "500");
    assert_string_equal(json_string_value(json_object_get(d0, "kind")), "status");

    mm = result_by_id(results, ID(2), 1);
    /* A status difference may be among the ones cut off: unknown, not guessed. */
    assert_null(json_object_get(mm, "status_actual"));
    assert_int_equal(json_array_size(json_object_get(mm, "diffs")), 2);
    assert_int_equal(json_integer_value(json_object_get(mm, "diffs_total")), 3);
    d0 = json_array_get(json_object_get(mm, "diffs"), 0);
    assert_string_equal(json_string_value(json_object_get(d0, "expected")), "\"Paris\"");
    assert_string_equal(json_string_value(json_object_get(d0, "kind")), "json");

    mm = result_by_id(results, ID(8), 2);
    /* Every difference kept and none is the status: the status matched. */
    assert_int_equal(json_integer_value(json_object_get(mm, "status_actual")), 200);
    json_t *dd = json_object_get(mm, "diffs");
    assert_true(json_is_null(json_object_get(json_array_get(dd, 0), "expected")));
    assert_string_equal(json_string_value(json_object_get(json_array_get(dd, 0), "actual")),
                        "\"x\\u0000y\"");
    assert_string_equal(json_string_value(json_object_get(json_array_get(dd, 1), "kind")), "body");
    assert_true(json_is_null(json_object_get(json_array_get(dd, 1), "actual")));

    json_t *e = result_by_id(results, ID(4), 1);
    assert_string_equal(json_string_value(json_object_get(e, "outcome")), "error");
    assert_string_equal(json_string_value(json_object_get(e, "detail")),
                        "connect: connection refused");
    assert_null(json_object_get(e, "latency_us"));
    assert_null(json_object_get(e, "status_actual"));
    json_t *u = result_by_id(results, ID(7), 1);
    assert_string_equal(json_string_value(json_object_get(u, "outcome")), "unreplayable");
    assert_string_equal(json_string_value(json_object_get(u, "detail")),
                        "request body was truncated at capture");
    json_t *snt = result_by_id(results, ID(9), 1);
    assert_string_equal(json_string_value(json_object_get(snt, "outcome")), "sent");
    assert_null(json_object_get(snt, "status_expected"));

    json_decref(j);
    unlink(path);
    report_free(rp);
}

static void test_write_errors(void **state)
{
    (void)state;
    report *rp = fixed_report();
    char err[256] = "";
    assert_int_equal(report_write_json(rp, "/nonexistent-restspy/r.json", err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot write /nonexistent-restspy/r.json"));
    err[0] = '\0';
    assert_int_equal(report_write_junit(rp, "/nonexistent-restspy/r.xml", err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot write /nonexistent-restspy/r.xml"));
    /* A full disk is noticed (at close), and a device is never removed. */
    if (access("/dev/full", W_OK) == 0) {
        err[0] = '\0';
        assert_int_equal(report_write_json(rp, "/dev/full", err, sizeof err), -1);
        assert_non_null(strstr(err, "cannot write /dev/full"));
        assert_int_equal(access("/dev/full", F_OK), 0);
    }
    report_free(rp);
}

/* ---- JUnit ------------------------------------------------------------- */

typedef struct xml_stats {
    size_t testcases, failures, errors, skipped;
    char suites_attrs[512]; /* the attributes of <testsuites ...> */
    char suite_attrs[512];  /* of <testsuite ...> */
} xml_stats;

static int name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.' || c == ':';
}

/* Checks an entity or character reference at s (which starts with '&');
 * returns its length or 0. Character references must name XML characters. */
static size_t xml_ref(const char *s)
{
    static const char *const named[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
    for (size_t i = 0; i < 5; i++)
        if (strncmp(s, named[i], strlen(named[i])) == 0)
            return strlen(named[i]);
    if (s[1] != '#')
        return 0;
    const char *p = s + 2;
    int hex = *p == 'x';
    if (hex)
        p++;
    char *end;
    unsigned long cp = strtoul(p, &end, hex ? 16 : 10);
    if (end == p || *end != ';')
        return 0;
    if (!(cp == 9 || cp == 10 || cp == 13 || (cp >= 0x20 && cp <= 0xD7FF) ||
          (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF)))
        return 0;
    return (size_t)(end + 1 - s);
}

/* A strict well-formedness check of the XML subset report writes: the XML
 * declaration, then one element tree with quoted attributes, escaped text and
 * valid references; the whole file UTF-8 holding only XML 1.0 characters,
 * with &, <, > escaped in text and ", ', <, & in attribute values.
 * NULL when fine, else what is wrong. */
static const char *xml_check(const char *s, size_t n, xml_stats *st)
{
    static char why[160];
    memset(st, 0, sizeof *st);
    if (!utf8_valid(s, n))
        return "not UTF-8, or a NUL byte";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            return "control character";
        if (c == 0xEF && i + 2 < n && (unsigned char)s[i + 1] == 0xBF &&
            (unsigned char)s[i + 2] >= 0xBE)
            return "U+FFFE/U+FFFF";
    }
    const char *decl = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";
    if (strncmp(s, decl, strlen(decl)) != 0)
        return "no XML declaration";
    const char *p = s + strlen(decl), *e = s + n;
    char stack[16][32];
    int depth = 0, roots = 0;
    while (p < e) {
        if (*p != '<') {
            if (depth == 0 && *p != ' ' && *p != '\n' && *p != '\t' && *p != '\r')
                return "text outside the root element";
            if (*p == '>')
                return "unescaped > in text";
            if (*p == '&') {
                size_t l = xml_ref(p);
                if (!l)
                    return "bad reference in text";
                p += l;
                continue;
            }
            p++;
            continue;
        }
        p++;
        int closing = *p == '/';
        if (closing)
            p++;
        const char *name = p;
        while (p < e && name_char((unsigned char)*p))
            p++;
        size_t nl = (size_t)(p - name);
        if (!nl || nl >= sizeof stack[0])
            return "bad element name";
        if (closing) {
            if (depth == 0 || strlen(stack[depth - 1]) != nl ||
                strncmp(stack[depth - 1], name, nl) != 0) {
                snprintf(why, sizeof why, "unbalanced </%.*s>", (int)nl, name);
                return why;
            }
            depth--;
            while (p < e && *p == ' ')
                p++;
            if (p >= e || *p != '>')
                return "bad end tag";
            p++;
            continue;
        }
        if (depth == 0 && roots++)
            return "more than one root element";
        const char *attrs = p;
        for (;;) {
            while (p < e && (*p == ' ' || *p == '\n' || *p == '\t'))
                p++;
            if (p >= e)
                return "unterminated tag";
            if (*p == '>' || (*p == '/' && p + 1 < e && p[1] == '>'))
                break;
            const char *an = p;
            while (p < e && name_char((unsigned char)*p))
                p++;
            if (p == an || p >= e || *p != '=' || (p[1] != '"' && p[1] != '\''))
                return "bad attribute";
            char q = p[1];
            p += 2;
            while (p < e && *p != q) {
                if (*p == '<' || *p == '"' || *p == '\'')
                    return "unescaped special in attribute";
                if (*p == '&') {
                    size_t l = xml_ref(p);
                    if (!l)
                        return "bad reference in attribute";
                    p += l;
                    continue;
                }
                p++;
            }
            if (p >= e)
                return "unterminated attribute";
            p++;
        }
        size_t alen = (size_t)(p - attrs);
        if (nl == 10 && strncmp(name, "testsuites", 10) == 0)
            snprintf(st->suites_attrs, sizeof st->suites_attrs, "%.*s", (int)alen, attrs);
        else if (nl == 9 && strncmp(name, "testsuite", 9) == 0)
            snprintf(st->suite_attrs, sizeof st->suite_attrs, "%.*s", (int)alen, attrs);
        else if (nl == 8 && strncmp(name, "testcase", 8) == 0)
            st->testcases++;
        else if (nl == 7 && strncmp(name, "failure", 7) == 0)
            st->failures++;
        else if (nl == 5 && strncmp(name, "error", 5) == 0)
            st->errors++;
        else if (nl == 7 && strncmp(name, "skipped", 7) == 0)
            st->skipped++;
        if (*p == '/') {
            p += 2;
            continue;
        }
        p++;
        if (depth == 16)
            return "too deep";
        snprintf(stack[depth++], sizeof stack[0], "%.*s", (int)nl, name);
    }
    if (depth)
        return "unclosed element";
    if (roots != 1)
        return "no root element";
    return NULL;
}

static size_t attr_num(const char *attrs, const char *name)
{
    char key[32];
    snprintf(key, sizeof key, " %s=\"", name);
    const char *p = strstr(attrs, key);
    if (!p)
        fail_msg("attribute %s missing in:%s", name, attrs);
    return (size_t)strtoul(p + strlen(key), NULL, 10);
}

static void check_counts(const char *attrs, const report *rp)
{
    size_t total = 0;
    for (int k = OUTCOME_MATCH; k <= OUTCOME_SENT; k++)
        total += report_count(rp, (outcome_kind)k);
    assert_int_equal(attr_num(attrs, "tests"), total);
    assert_int_equal(attr_num(attrs, "failures"), report_count(rp, OUTCOME_MISMATCH));
    assert_int_equal(attr_num(attrs, "errors"), report_count(rp, OUTCOME_ERROR));
    assert_int_equal(attr_num(attrs, "skipped"), report_count(rp, OUTCOME_UNREPLAYABLE));
}

static void test_xml_checker_rejects(void **state)
{
    (void)state;
    /* The checker itself must catch what it is there to catch. */
    const char *bad[] = {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a><b></a></b>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a x=\"<\"/>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>&</a>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>&#1;</a>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>\x01</a>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>\xff</a>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>\xef\xbf\xbe</a>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>x > y</a>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a x='it's'/>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a/><b/>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>",
    };
    xml_stats st;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (!xml_check(bad[i], strlen(bad[i]), &st))
            fail_msg("checker accepted: %s", bad[i]);
    const char *good = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<a x=\"&amp;&#10;\">"
                       "<testcase/>t&lt;\xc3\xa9</a>\n";
    assert_null(xml_check(good, strlen(good), &st));
    assert_int_equal(st.testcases, 1);
}

static void test_junit_hostile_bytes(void **state)
{
    (void)state;
    report *rp = report_new("http://h:1/<&>\"'");
    /* Everything a server or a recorded request can put in a report: markup
     * characters, quotes, control characters, a NUL byte (which a C string
     * ends at), invalid UTF-8, surrogates, non-characters and a cut sequence. */
    char nul_text[] = "-before\0after\n+x\n";
    diff d[] = {
        {DIFF_JSON, "$.a<b>[\"&\"]", "\"x&y <z>\"", "\"it's \\\"q\\\"\""},
        {DIFF_BODY, "body", "bin\x01\x02\x1b\x7f\x0b\x0c tab\there\r\n",
         "bad\xff\xfe utf8 \xc3\x28 \xed\xa0\x80 \xef\xbf\xbe end \xe2\x82"},
        {DIFF_HEADER, "header: X-Weird", "]]>", "\xc0\xaf \xf4\x90\x80\x80 ok \xf0\x9f\x98\x80"},
    };
    compare_result r = {.diffs = d, .ndiffs = 3, .ndiffs_total = 5, .text_diff = nul_text};
    add(rp, OUTCOME_MISMATCH, ID(1), "GET", "/q<&>\"'", "a=1&b=<2>", 200, 1, 0, &r, NULL, 1234);
    add(rp, OUTCOME_MATCH, ID(2), "GET", "/ok\x01\xff", NULL, 200, 2, 0, NULL, NULL, 10);
    add(rp, OUTCOME_ERROR, ID(3), "POST", "/e", NULL, 200, 3, 0, NULL,
        "invalid response: \x01<bad> & \"quoted\"\n\xff", 5);
    add(rp, OUTCOME_UNREPLAYABLE, ID(4), "PUT", "/u", NULL, 200, 4, 0, NULL,
        "contains redacted values: Authorization & 'Cookie'", -1);
    add(rp, OUTCOME_SENT, ID(5), "POST", "/s", NULL, 0, 5, 0, NULL, NULL, 9);
    add(rp, OUTCOME_ERROR, ID(6), "GET", "/e2", NULL, 200, 6, 0, NULL, NULL, -1);
    report_set_elapsed(rp, 1.25);

    char path[64], err[256];
    tmp_path(path, sizeof path, ".xml");
    assert_int_equal(report_write_junit(rp, path, err, sizeof err), 0);
    size_t len;
    char *x = read_all(path, &len);
    xml_stats st;
    const char *why = xml_check(x, len, &st);
    if (why)
        fail_msg("JUnit not well-formed: %s\n%s", why, x);
    check_counts(st.suites_attrs, rp);
    check_counts(st.suite_attrs, rp);
    assert_int_equal(st.testcases, 6);
    assert_int_equal(st.failures, report_count(rp, OUTCOME_MISMATCH));
    assert_int_equal(st.errors, report_count(rp, OUTCOME_ERROR));
    assert_int_equal(st.skipped, report_count(rp, OUTCOME_UNREPLAYABLE));
    assert_non_null(strstr(st.suites_attrs, " time=\"1.250\""));

    /* Escaped, not dropped; the bad bytes replaced, the good ones kept. */
    assert_non_null(strstr(x, "name=\"restspy replay http://h:1/&lt;&amp;&gt;&quot;&apos;\""));
    assert_non_null(strstr(x, "name=\"GET /q&lt;&amp;&gt;&quot;&apos;?a=1&amp;b=&lt;2&gt; #" ID(
                                  1) "\" time=\"0.001234\""));
    assert_non_null(strstr(x, "<failure message=\"5 differences\" type=\"mismatch\">"));
    assert_non_null(strstr(x, "$.a&lt;b&gt;[&quot;&amp;&quot;]: &quot;x&amp;y &lt;z&gt;&quot;"));
    assert_non_null(strstr(x, "bin\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\x7f"));
    assert_non_null(strstr(x, "tab\there&#13;\n"));
    assert_non_null(strstr(x, "\xf0\x9f\x98\x80")); /* valid 4-byte UTF-8 kept */
    assert_non_null(strstr(x, "]]&gt;"));
    assert_non_null(strstr(x, "... and 2 more differences"));
    assert_non_null(strstr(x, "-before"));
    assert_null(strstr(x, "after")); /* past the NUL: never part of the C string */
    assert_non_null(strstr(x, "<error message=\"invalid response: \xef\xbf\xbd&lt;bad&gt; &amp; "
                              "&quot;quoted&quot;&#10;\xef\xbf\xbd\" type=\"error\"/>"));
    assert_non_null(strstr(x, "<error message=\"unknown error\" type=\"error\"/>"));
    assert_non_null(strstr(x, "<skipped message=\"contains redacted values: Authorization &amp; "
                              "&apos;Cookie&apos;\"/>"));
    assert_non_null(strstr(x, "name=\"POST /s #" ID(5) "\" time=\"0.000009\"/>"));

    /* An independent parser agrees (when there is one). */
    if (system("command -v python3 >/dev/null 2>&1") == 0) {
        char cmd[640];
        snprintf(cmd, sizeof cmd,
                 "python3 -c \"import xml.dom.minidom,sys; xml.dom.minidom.parse(sys.argv[1])\" "
                 "%s",
                 path);
        if (system(cmd) != 0)
            fail_msg("python3 minidom rejects the JUnit file:\n%s", x);
        /* ...and reads the same counts. */
        snprintf(cmd, sizeof cmd,
                 "python3 -c \"import xml.dom.minidom,sys; d=xml.dom.minidom.parse(sys.argv[1]); "
                 "s=d.getElementsByTagName('testsuite')[0]; "
                 "sys.exit(0 if (s.getAttribute('tests'),s.getAttribute('failures'),"
                 "s.getAttribute('errors'),s.getAttribute('skipped'))==('6','1','2','1') and "
                 "len(d.getElementsByTagName('testcase'))==6 else 1)\" %s",
                 path);
        assert_int_equal(system(cmd), 0);
    } else {
        print_message("python3 missing: minidom check skipped\n");
    }
    free(x);
    unlink(path);
    report_free(rp);
}

/* The JUnit report of rp, written to a file, read back and checked to be
 * well-formed XML (st: what it holds; the file is removed). Owned by the
 * caller. */
static char *written_junit(const report *rp, xml_stats *st)
{
    char path[64], err[200];
    tmp_path(path, sizeof path, ".xml");
    assert_int_equal(report_write_junit(rp, path, err, sizeof err), 0);
    size_t len;
    char *x = read_all(path, &len);
    assert_null(xml_check(x, len, st));
    unlink(path);
    return x;
}

/* replay --correlate's substitutions: in the summary, the JSON (per result
 * and counted) and the JUnit output, with a partial outcome's note. */
static void test_substitutions(void **state)
{
    (void)state;
    report *rp = report_new("http://t:1");
    add(rp, OUTCOME_MATCH, ID(1), "POST", "/s/", NULL, 201, 1, 0, NULL, NULL, 5);
    add(rp, OUTCOME_MATCH, ID(2), "GET", "/s/23/", NULL, 200, 2, 0, NULL, NULL, 5);
    corr_sub subs[] = {{"path", "17", "23"}, {"header If-Match", "\"a<b\"", "\"c\""}};
    report_add_subs(rp, subs, 2);
    add(rp, OUTCOME_PARTIAL, ID(3), "GET", "/s/23/big", NULL, 200, 3, 0, NULL, "cut", 5);
    report_add_subs(rp, subs, 1);
    char *s = summary_text(rp, 5);
    assert_string_equal(
        s, "3 requests: 2 matched, 0 mismatched, 0 errors, 0 not replayable, "
           "1 partly compared\n"
           "correlated: 3 values substituted in 2 requests\n"
           "SUBSTITUTED GET /s/23/ (id " ID(2) "):\n"
                                               "    path: 17 -> 23\n"
                                               "    header If-Match: \"a<b\" -> \"c\"\n"
                                               "SUBSTITUTED GET /s/23/big (id " ID(
                                                   3) "):\n"
                                                      "    path: 17 -> 23\n"
                                                      "PARTLY COMPARED cut: 1 request\n");
    free(s);
    s = summary_text(rp, 1);
    assert_non_null(strstr(s, "... and 1 more (see --report json)\n"));
    free(s);

    json_t *j = written_json(rp);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "counts"), "substitutions")), 3);
    json_t *results = json_object_get(j, "results");
    assert_null(json_object_get(json_array_get(results, 0), "substitutions"));
    json_t *v = json_object_get(json_array_get(results, 1), "substitutions");
    assert_int_equal(json_array_size(v), 2);
    json_t *one = json_array_get(v, 1);
    assert_string_equal(json_string_value(json_object_get(one, "place")), "header If-Match");
    assert_string_equal(json_string_value(json_object_get(one, "recorded")), "\"a<b\"");
    assert_string_equal(json_string_value(json_object_get(one, "replayed")), "\"c\"");
    json_decref(j);

    xml_stats st;
    char *x = written_junit(rp, &st);
    assert_int_equal(st.testcases, 3);
    assert_non_null(strstr(x, "time=\"0.000005\"/>\n")); /* the first: no output */
    assert_non_null(
        strstr(x, "<system-out>substituted path: 17 -&gt; 23\nsubstituted header "
                  "If-Match: &quot;a&lt;b&quot; -&gt; &quot;c&quot;</system-out>\n</testcase>"));
    assert_non_null(strstr(x, "<system-out>partly compared: cut\nsubstituted path: 17 -&gt; "
                              "23</system-out>"));
    free(x);
    report_free(rp);
}

static void test_junit_loops_and_empty(void **state)
{
    (void)state;
    report *rp = report_new("http://t:9");
    char path[64], err[256];
    tmp_path(path, sizeof path, ".xml");
    size_t len;
    xml_stats st;
    char *x = written_junit(rp, &st);
    assert_int_equal(st.testcases, 0);
    check_counts(st.suite_attrs, rp);
    free(x);

    add(rp, OUTCOME_MATCH, ID(1), "GET", "/a", NULL, 200, 1, 1, NULL, NULL, 2000000);
    add(rp, OUTCOME_MATCH, ID(1), "GET", "/a", NULL, 200, 1, 0, NULL, NULL, 1000000);
    add(rp, OUTCOME_MISMATCH, ID(2), "GET", "/b", NULL, 200, 2, 0, NULL, NULL, 1);
    assert_int_equal(report_write_junit(rp, path, err, sizeof err), 0);
    x = read_all(path, &len);
    assert_null(xml_check(x, len, &st));
    check_counts(st.suites_attrs, rp);
    const char *l1 = strstr(x, "name=\"GET /a #" ID(1) " (loop 1)\" time=\"1.000000\"/>");
    const char *l2 = strstr(x, "name=\"GET /a #" ID(1) " (loop 2)\" time=\"2.000000\"/>");
    assert_non_null(l1);
    assert_non_null(l2);
    assert_true(l1 < l2);
    /* A mismatch added without its comparison still makes a failure. */
    assert_non_null(strstr(x, "<failure message=\"0 differences\" type=\"mismatch\"></failure>"));
    free(x);
    unlink(path);
    report_free(rp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_and_exit_codes),
        cmocka_unit_test(test_summary_exact),
        cmocka_unit_test(test_summary_sent_loops_and_escapes),
        cmocka_unit_test(test_redacted_counts),
        cmocka_unit_test(test_partial),
        cmocka_unit_test(test_substitutions),
        cmocka_unit_test(test_summary_wording),
        cmocka_unit_test(test_deep_copy),
        cmocka_unit_test(test_from_compare),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_xml_checker_rejects),
        cmocka_unit_test(test_junit_hostile_bytes),
        cmocka_unit_test(test_junit_loops_and_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
