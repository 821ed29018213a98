/* reqfilter: the one filter of the CLI and the admin API. Values no request
 * can have are refused with why (under the caller's label), single-valued
 * filters given twice are refused, since/until are checked together, and
 * match/apply select as promised. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/util.h"
#include "store/reqfilter.h"

static int set(reqfilter *f, const char *name, const char *v, char *err)
{
    char label[32];
    snprintf(label, sizeof label, "--%s", name);
    return reqfilter_set(f, name, label, v, err, 256);
}

static void test_values(void **state)
{
    (void)state;
    reqfilter f = {0};
    char err[256];
    assert_int_equal(set(&f, "method", "get", err), 1);
    assert_string_equal(f.q.method, "get");
    assert_int_equal(set(&f, "status", "5xx", err), 1);
    assert_int_equal(f.q.status_min, 500);
    assert_int_equal(f.q.status_max, 599);
    assert_int_equal(set(&f, "path", "/api/**", err), 1);
    assert_int_equal(set(&f, "origin", "replicated", err), 1);
    assert_int_equal(set(&f, "node", "site-b", err), 1);
    assert_false(f.q.diverged);
    assert_int_equal(set(&f, "replication", "diverged", err), 1);
    assert_true(f.q.diverged);
    assert_int_equal(set(&f, "replication", "diverged", err), -1);
    assert_string_equal(err, "--replication given twice (it takes one value)");
    assert_int_equal(set(&f, "limit", "20", err), 1);
    assert_int_equal(f.q.limit, 20);
    assert_int_equal(set(&f, "id", "01a2b3", err), 1);
    assert_int_equal(set(&f, "id", "c4d5e6", err), 1); /* id repeats */
    assert_int_equal(f.nids, 2);
    assert_int_equal(reqfilter_set(&f, "colour", "colour", "red", err, sizeof err), 0);

    assert_int_equal(set(&f, "method", "POST", err), -1);
    assert_string_equal(err, "--method given twice (it takes one value)");
    reqfilter_free(&f);

    struct {
        const char *name, *value, *why;
    } bad[] = {
        {"method", "GE T", "expected a method such as GET"},
        {"path", "api", "expected a path glob starting with / or *"},
        {"status", "600", "within 100-599"},
        {"status", "2xx-3xx", "a range like 200-299"},
        {"origin", "remote", "expected local, replicated or imported"},
        {"node", "a b", "expected"},
        {"replication", "same", "expected diverged: the replicated writes whose answer"},
        {"replication", "", "expected diverged"},
        {"since", "2026-02-30", "expected 2026-11-27T05:00:00Z"},
        {"limit", "-1", "expected a number, 0 = all"},
        {"id", "abc", "at least 4 characters"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        reqfilter g = {0};
        /* the label is the caller's: a URL's parameter here */
        assert_int_equal(reqfilter_set(&g, bad[i].name, bad[i].name, bad[i].value, err, sizeof err),
                         -1);
        char head[128];
        snprintf(head, sizeof head, "bad value for %s: '%s' (", bad[i].name, bad[i].value);
        if (strncmp(err, head, strlen(head)) != 0 || !strstr(err, bad[i].why))
            fail_msg("%s=%s: %s", bad[i].name, bad[i].value, err);
        reqfilter_free(&g);
    }
}

static void test_since_until(void **state)
{
    (void)state;
    reqfilter f = {0};
    char err[256];
    assert_int_equal(set(&f, "since", "1h", err), 1);
    assert_int_equal(set(&f, "until", "2h", err), 1); /* two hours ago: before since */
    assert_int_equal(reqfilter_check(&f, "since", "until", err, sizeof err), -1);
    assert_string_equal(err, "since 1h is not before until 2h: no request can match");
    reqfilter_free(&f);
    assert_int_equal(set(&f, "since", "2026-11-27", err), 1);
    assert_int_equal(set(&f, "until", "2026-11-28T00:00:00Z", err), 1);
    assert_int_equal(reqfilter_check(&f, "--since", "--until", err, sizeof err), 0);
    reqfilter_free(&f);
}

static record *rec(const char *id, const char *method, const char *path, int status, int64_t t)
{
    record *r = record_new();
    snprintf(r->id, sizeof r->id, "%s", id);
    r->method = xstrdup(method);
    r->path = xstrdup(path);
    r->status = status;
    r->started_at_us = t;
    return r;
}

static void test_match_and_apply(void **state)
{
    (void)state;
    reqfilter f = {0};
    char err[256];
    assert_int_equal(set(&f, "method", "GET", err), 1);
    assert_int_equal(set(&f, "path", "/api/*/items", err), 1);
    assert_int_equal(set(&f, "status", "200-299", err), 1);
    record *v[4] = {
        rec("0000000a-0000-7000-8000-000000000001", "GET", "/api/x/items", 200, 30),
        rec("0000000a-0000-7000-8000-000000000002", "get", "/api/y/items", 204, 10),
        rec("0000000a-0000-7000-8000-000000000003", "POST", "/api/x/items", 201, 20),
        rec("0000000a-0000-7000-8000-000000000004", "GET", "/api/x/items", 500, 40),
    };
    assert_true(reqfilter_match(&f, v[0]));
    assert_true(reqfilter_match(&f, v[1])); /* methods compare without case */
    assert_false(reqfilter_match(&f, v[2]));
    assert_false(reqfilter_match(&f, v[3]));
    assert_int_equal(set(&f, "limit", "1", err), 1);
    size_t n = 4;
    reqfilter_apply(&f, v, &n); /* the newest one of the two that match */
    assert_int_equal(n, 1);
    assert_int_equal(v[0]->started_at_us, 30);
    record_free(v[0]);
    reqfilter_free(&f);

    /* ids: a start or an end of one, any case */
    record *r = rec("0000000a-0000-7000-8000-0000000000ff", "GET", "/", 200, 1);
    assert_int_equal(set(&f, "id", "00000FF", err), 1);
    assert_true(reqfilter_match(&f, r));
    reqfilter_free(&f);
    assert_int_equal(set(&f, "id", "0000000B", err), 1);
    assert_false(reqfilter_match(&f, r));
    reqfilter_free(&f);
    record_free(r);
}

/* replication=diverged: replicated writes whose record holds a "diverged"
 * outcome; not a local write whose replication state says something else,
 * not a replicated one applied "same". */
static void test_match_diverged(void **state)
{
    (void)state;
    reqfilter f = {0};
    char err[256];
    assert_int_equal(set(&f, "replication", "diverged", err), 1);
    struct {
        const char *origin, *replication;
        bool match;
    } cases[] = {
        {"replicated", "diverged: status 201 -> 409", true},
        {"replicated", "diverged: body $.id: 1 -> 2", true},
        {"replicated", "same", false},
        {"replicated", NULL, false},
        {"local", "diverged: status 201 -> 409", false}, /* not a ledger outcome */
        {"local", "published", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        record *r = rec("0000000a-0000-7000-8000-000000000001", "POST", "/a", 201, 1);
        free(r->origin);
        r->origin = xstrdup(cases[i].origin);
        r->replication = cases[i].replication ? xstrdup(cases[i].replication) : NULL;
        if (reqfilter_match(&f, r) != cases[i].match)
            fail_msg("%s %s: expected %d", cases[i].origin, cases[i].replication, cases[i].match);
        record_free(r);
    }
    reqfilter_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_since_until),
        cmocka_unit_test(test_match_and_apply),
        cmocka_unit_test(test_match_diverged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
