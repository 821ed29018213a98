/* Unit tests for the replicator's pure decisions: backoff, the order of
 * writes, the retry budget, the headers a message is applied with,
 * dead-letter reasons, and the command's usage errors (which need no
 * broker). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "capture/config.h"
#include "capture/record.h"
#include "formats/repl_msg.h"
#include "replication/replicator.h"
#include "replication/replicator_internal.h"
#include "base/util.h"

static void test_backoff(void **state)
{
    (void)state;
    assert_int_equal(repl_backoff_ms(0, 200, 30000), 200);
    assert_int_equal(repl_backoff_ms(1, 200, 30000), 400);
    assert_int_equal(repl_backoff_ms(2, 200, 30000), 800);
    assert_int_equal(repl_backoff_ms(7, 200, 30000), 25600);
    assert_int_equal(repl_backoff_ms(8, 200, 30000), 30000);
    assert_int_equal(repl_backoff_ms(1000, 200, 30000), 30000);
    /* No overflow with huge bounds. */
    assert_int_equal(repl_backoff_ms(200, 1, UINT64_MAX), UINT64_MAX);
    /* max below min: min wins; min 0 is taken as 1. */
    assert_int_equal(repl_backoff_ms(3, 500, 100), 500);
    assert_int_equal(repl_backoff_ms(0, 0, 10), 1);
}

static void test_resource_key(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"/api/sites/a/", "/api/sites/a"},
        {"/api/sites/a/?x=1", "/api/sites/a"},
        {"/api/sites/a", "/api/sites/a"},
        {"//api///sites//", "/api/sites"},
        {"/", "/"},
        {"", "/"},
        {"/?q=/a/b", "/"},
        {"/a%2Fb/c", "/a%2Fb/c"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *k = repl_resource_key(cases[i][0]);
        assert_string_equal(k, cases[i][1]);
        free(k);
    }
    char *k = repl_resource_key(NULL);
    assert_string_equal(k, "/");
    free(k);
}

static repl_okey okey(const char *id, const char *origin, const char *method, const char *key)
{
    return (repl_okey){id, origin, key, strcmp(method, "POST") == 0, strcmp(method, "DELETE") == 0};
}

static void test_waits_for(void **state)
{
    (void)state;
    enum { R = APPLY_ORDER_RESOURCE, S = APPLY_ORDER_STRICT, O = APPLY_ORDER_ORIGIN };
    repl_okey create = okey("1", "a", "POST", "/api/sites");
    repl_okey create2 = okey("2", "a", "POST", "/api/sites");
    repl_okey patch_x = okey("3", "a", "PATCH", "/api/sites/x");
    repl_okey patch_x2 = okey("4", "b", "PATCH", "/api/sites/x");
    repl_okey metric_x = okey("5", "a", "POST", "/api/sites/x/metrics");
    repl_okey patch_xy = okey("6", "a", "PATCH", "/api/sites/xy");
    repl_okey other = okey("7", "a", "PUT", "/api/users/u");
    repl_okey other_b = okey("8", "b", "PUT", "/api/users/u");
    repl_okey root = okey("9", "a", "PUT", "/");
    repl_okey del_x = okey("10", "a", "DELETE", "/api/sites/x");
    repl_okey copy = okey("1", "a", "POST", "/api/sites");

    /* One resource keeps its order, whatever the origin. */
    assert_true(repl_waits_for(&patch_x2, &patch_x, R, false));
    /* A member waits for a create in its collection, a sub-collection for
     * its parent, everything for a write to the root. */
    assert_true(repl_waits_for(&patch_x, &create, R, false));
    assert_true(repl_waits_for(&metric_x, &patch_x, R, false));
    assert_true(repl_waits_for(&metric_x, &create, R, false));
    assert_true(repl_waits_for(&other, &root, R, false));
    /* A write to a resource waits for the writes below it (a delete of a
     * site after the creates of its metrics)... */
    assert_true(repl_waits_for(&del_x, &metric_x, R, false));
    assert_true(repl_waits_for(&patch_x, &metric_x, R, false));
    /* ... but a create only for the deletes below it (a re-create), not for
     * the updates of other members; strict waits for all. */
    assert_true(repl_waits_for(&create, &del_x, R, false));
    assert_false(repl_waits_for(&create, &patch_x, R, false));
    assert_true(repl_waits_for(&create, &patch_x, S, false));
    /* Siblings and unrelated resources do not wait; "/api/sites/xy" is not
     * under "/api/sites/x". */
    assert_false(repl_waits_for(&patch_xy, &patch_x, R, false));
    assert_false(repl_waits_for(&metric_x, &patch_xy, S, false));
    assert_false(repl_waits_for(&other, &patch_x, S, false));
    /* Creates in one collection run side by side, unless strict. */
    assert_false(repl_waits_for(&create2, &create, R, false));
    assert_true(repl_waits_for(&create2, &create, S, false));
    /* A stuck write holds back its own resource only. */
    assert_false(repl_waits_for(&patch_x, &create, R, true));
    assert_false(repl_waits_for(&metric_x, &patch_x, S, true));
    assert_false(repl_waits_for(&create, &del_x, R, true));
    assert_true(repl_waits_for(&patch_x2, &patch_x, R, true));
    assert_true(repl_waits_for(&create2, &create, S, true));
    /* Two copies of one message never run side by side. */
    assert_true(repl_waits_for(&copy, &create, R, true));
    assert_true(repl_waits_for(&copy, &create, O, true));
    /* origin: everything from the site, stuck or not; nothing else. */
    assert_true(repl_waits_for(&other, &patch_x, O, false));
    assert_true(repl_waits_for(&other, &patch_x, O, true));
    assert_false(repl_waits_for(&other_b, &patch_x, O, false));
    assert_false(repl_waits_for(&patch_x2, &patch_x, O, false));
}

static void test_stuck(void **state)
{
    (void)state;
    const int64_t t0 = 1700000000000000, s = 1000000;
    /* Failing for 30 s, and the upstream answered another write since its
     * first failure: stuck. */
    assert_true(repl_stuck(t0, t0 + 1, t0 + 30 * s, 30000));
    assert_true(repl_stuck(t0, t0 + 29 * s, t0 + 30 * s, 30000));
    /* Not long enough: a short failure keeps the whole order. */
    assert_false(repl_stuck(t0, t0 + 1, t0 + 29 * s, 30000));
    /* Nothing answered since it began failing (the upstream may be down). */
    assert_false(repl_stuck(t0, t0, t0 + 60 * s, 30000));
    assert_false(repl_stuck(t0, t0 - s, t0 + 60 * s, 30000));
    /* Not failing. */
    assert_false(repl_stuck(0, t0, t0, 0));
    /* stuck_after 0: as soon as another write is answered. */
    assert_true(repl_stuck(t0, t0 + 1, t0 + 1, 0));
}

static void test_unreachable(void **state)
{
    (void)state;
    assert_true(repl_unreachable("connect: Connection refused"));
    assert_true(repl_unreachable("resolve nope.invalid: Name or service not known"));
    assert_false(repl_unreachable("timeout"));
    assert_false(repl_unreachable("recv: Connection reset by peer"));
    assert_false(repl_unreachable("invalid response: connection closed without a response"));
    assert_false(repl_unreachable(""));
}

static void test_budget(void **state)
{
    (void)state;
    const int64_t t0 = 1700000000000000, s = 1000000;
    /* Nothing failed yet: never spent. */
    assert_false(repl_budget_spent(0, 0, t0, 1, 1));
    assert_false(repl_budget_spent(3, 0, t0, 1, 1));
    /* The age. */
    assert_false(repl_budget_spent(1, t0, t0 + 3599 * s, 3600000, 0));
    assert_true(repl_budget_spent(1, t0, t0 + 3600 * s, 3600000, 0));
    /* The attempts. */
    assert_false(repl_budget_spent(4, t0, t0 + 1, 0, 5));
    assert_true(repl_budget_spent(5, t0, t0 + 1, 0, 5));
    /* Both limits: the first reached decides; 0 and 0 retries for ever. */
    assert_true(repl_budget_spent(5, t0, t0 + 1, 3600000, 5));
    assert_true(repl_budget_spent(2, t0, t0 + 7200 * s, 3600000, 5));
    assert_false(repl_budget_spent(1000000, t0, t0 + 1000000 * s, 0, 0));

    char *r = repl_budget_reason(5, t0, t0 + 2100000, "upstream answered 500: dup");
    assert_string_equal(r, "retry budget spent: 5 failed attempts in 2.1s; last: upstream "
                           "answered 500: dup");
    free(r);
    r = repl_budget_reason(1, t0, t0 + 3600 * s, NULL);
    assert_string_equal(r, "retry budget spent: 1 failed attempt in 1h00m; last: -");
    free(r);
}

static repl_msg *sample_msg(const char *headers_json)
{
    repl_msg *m = repl_msg_new();
    snprintf(m->id, sizeof m->id, "%s", "0190a0b0-c0d0-7000-8000-000000000001");
    m->origin = xstrdup("site-a");
    m->method = xstrdup("PUT");
    m->target = xstrdup("/api/sites/x/");
    m->headers = headers_json ? xstrdup(headers_json) : NULL;
    m->content_type = xstrdup("application/json");
    return m;
}

static size_t count_named(const http_headers *h, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < h->len; i++)
        if (strcasecmp(h->v[i].name, name) == 0)
            n++;
    return n;
}

static void test_apply_headers(void **state)
{
    (void)state;
    repl_msg *m = sample_msg("[[\"Accept\",\"*/*\"],[\"Idempotency-Key\",\"client-own\"],"
                             "[\"Authorization\",\"Bearer site-a-token\"],"
                             "[\"X-Restspy-Replicated-From\",\"forged\"]]");
    char *set[] = {"Authorization: Bearer site-b-token ", "X-Extra:1", NULL};
    http_headers h = {0};
    assert_int_equal(repl_apply_headers(m, set, &h), 0);
    assert_string_equal(http_headers_get(&h, "Accept"), "*/*");
    assert_string_equal(http_headers_get(&h, "Content-Type"), "application/json");
    assert_string_equal(http_headers_get(&h, "Idempotency-Key"), m->id);
    assert_int_equal(count_named(&h, "Idempotency-Key"), 1);
    assert_string_equal(http_headers_get(&h, "X-Restspy-Replicated-From"), "site-a");
    assert_int_equal(count_named(&h, "X-Restspy-Replicated-From"), 1);
    /* --set-header replaces, and its value is trimmed. */
    assert_string_equal(http_headers_get(&h, "Authorization"), "Bearer site-b-token");
    assert_int_equal(count_named(&h, "Authorization"), 1);
    assert_string_equal(http_headers_get(&h, "X-Extra"), "1");
    http_headers_free(&h);
    repl_msg_free(m);

    /* The message's own Content-Type is kept as is. */
    m = sample_msg("[[\"content-type\",\"text/plain\"]]");
    assert_int_equal(repl_apply_headers(m, NULL, &h), 0);
    assert_int_equal(count_named(&h, "Content-Type"), 1);
    assert_string_equal(http_headers_get(&h, "Content-Type"), "text/plain");
    http_headers_free(&h);
    repl_msg_free(m);

    /* No header JSON at all is fine; bad JSON is not. */
    m = sample_msg(NULL);
    assert_int_equal(repl_apply_headers(m, NULL, &h), 0);
    assert_int_equal(h.len, 3);
    http_headers_free(&h);
    repl_msg_free(m);
    m = sample_msg("[[\"A\"");
    assert_int_equal(repl_apply_headers(m, NULL, &h), -1);
    http_headers_free(&h);
    repl_msg_free(m);
}

static void test_headers_remove(void **state)
{
    (void)state;
    http_headers h = {0};
    http_headers_add(&h, "A", 1, "1", 1);
    http_headers_add(&h, "AB", 2, "2", 1);
    http_headers_add(&h, "a", 1, "3", 1);
    repl_headers_remove(&h, "a");
    assert_int_equal(h.len, 1);
    assert_string_equal(h.v[0].name, "AB");
    http_headers_free(&h);
}

static void test_dead_reason(void **state)
{
    (void)state;
    buf b = BUF_INIT;
    buf_append_str(&b, "{\"slug\":[\"already\nexists\"]}");
    char *r = repl_dead_reason(400, &b);
    assert_string_equal(r, "upstream answered 400: {\"slug\":[\"already exists\"]}");
    free(r);
    buf_reset(&b);
    for (int i = 0; i < 300; i++)
        buf_append_char(&b, 'x');
    r = repl_dead_reason(413, &b);
    assert_int_equal(strlen(r), strlen("upstream answered 413: ") + 200 + 3);
    assert_string_equal(r + strlen(r) - 3, "...");
    free(r);
    r = repl_dead_reason(404, NULL);
    assert_string_equal(r, "upstream answered 404");
    free(r);
    buf_free(&b);
}

static int run_main(const char *const *args)
{
    char *argv[16];
    int argc = 0;
    for (; args[argc]; argc++)
        argv[argc] = (char *)args[argc];
    argv[argc] = NULL;
    char *envp[] = {NULL};
    return replicator_main(argc, argv, envp);
}

static void test_usage_errors(void **state)
{
    (void)state;
    const char *no_amqp[] = {"replicate", "--upstream", "http://127.0.0.1:1", NULL};
    assert_int_equal(run_main(no_amqp), 2);
    const char *no_up[] = {"replicate", "--amqp", "amqp://127.0.0.1:1/", NULL};
    assert_int_equal(run_main(no_up), 2);
    const char *store_off[] = {
        "replicate", "--amqp", "amqp://127.0.0.1:1/", "--upstream", "http://127.0.0.1:1", "--store",
        "off",       NULL};
    assert_int_equal(run_main(store_off), 2);
    const char *bad_up[] = {"replicate",  "--amqp",  "amqp://127.0.0.1:1/",
                            "--upstream", "ftp://x", NULL};
    assert_int_equal(run_main(bad_up), 2);
    const char *extra[] = {
        "replicate", "--amqp", "amqp://127.0.0.1:1/", "--upstream", "http://127.0.0.1:1",
        "surplus",   NULL};
    assert_int_equal(run_main(extra), 2);
    const char *unknown[] = {"replicate", "--no-such-flag", "1", NULL};
    assert_int_equal(run_main(unknown), 2);
    const char *bad_store[] = {
        "replicate",          "--amqp",  "amqp://127.0.0.1:1/",          "--upstream",
        "http://127.0.0.1:1", "--store", "sqlite:/nonexistent/dir/x.db", NULL};
    assert_int_equal(run_main(bad_store), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff),       cmocka_unit_test(test_resource_key),
        cmocka_unit_test(test_waits_for),     cmocka_unit_test(test_stuck),
        cmocka_unit_test(test_unreachable),   cmocka_unit_test(test_budget),
        cmocka_unit_test(test_apply_headers), cmocka_unit_test(test_headers_remove),
        cmocka_unit_test(test_dead_reason),   cmocka_unit_test(test_usage_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
