/* Unit tests for the replicator's pure decisions: backoff, partitioning,
 * the headers a message is applied with, dead-letter reasons, and the
 * command's usage errors (which need no broker). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "record.h"
#include "repl_msg.h"
#include "replicator.h"
#include "replicator_internal.h"
#include "util.h"

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

static void test_partition(void **state)
{
    (void)state;
    assert_int_equal(repl_partition("/api/sites/a/", 1), 0);
    assert_int_equal(repl_partition(NULL, 8), 0);
    /* The query does not change the partition: one resource, one worker. */
    for (unsigned n = 2; n < 9; n++) {
        unsigned p = repl_partition("/api/sites/a/", n);
        assert_true(p < n);
        assert_int_equal(repl_partition("/api/sites/a/?x=1", n), p);
    }
    /* Different paths spread over the workers. */
    unsigned seen[4] = {0};
    for (int i = 0; i < 64; i++) {
        char path[64];
        snprintf(path, sizeof path, "/api/sites/site-%d/", i);
        seen[repl_partition(path, 4)]++;
    }
    for (int i = 0; i < 4; i++)
        assert_true(seen[i] > 4);
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

static size_t count_named(const record_headers *h, const char *name)
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
    record_headers h = {0};
    assert_int_equal(repl_apply_headers(m, set, &h), 0);
    assert_string_equal(record_headers_get(&h, "Accept"), "*/*");
    assert_string_equal(record_headers_get(&h, "Content-Type"), "application/json");
    assert_string_equal(record_headers_get(&h, "Idempotency-Key"), m->id);
    assert_int_equal(count_named(&h, "Idempotency-Key"), 1);
    assert_string_equal(record_headers_get(&h, "X-Restspy-Replicated-From"), "site-a");
    assert_int_equal(count_named(&h, "X-Restspy-Replicated-From"), 1);
    /* --set-header replaces, and its value is trimmed. */
    assert_string_equal(record_headers_get(&h, "Authorization"), "Bearer site-b-token");
    assert_int_equal(count_named(&h, "Authorization"), 1);
    assert_string_equal(record_headers_get(&h, "X-Extra"), "1");
    record_headers_free(&h);
    repl_msg_free(m);

    /* The message's own Content-Type is kept as is. */
    m = sample_msg("[[\"content-type\",\"text/plain\"]]");
    assert_int_equal(repl_apply_headers(m, NULL, &h), 0);
    assert_int_equal(count_named(&h, "Content-Type"), 1);
    assert_string_equal(record_headers_get(&h, "Content-Type"), "text/plain");
    record_headers_free(&h);
    repl_msg_free(m);

    /* No header JSON at all is fine; bad JSON is not. */
    m = sample_msg(NULL);
    assert_int_equal(repl_apply_headers(m, NULL, &h), 0);
    assert_int_equal(h.len, 3);
    record_headers_free(&h);
    repl_msg_free(m);
    m = sample_msg("[[\"A\"");
    assert_int_equal(repl_apply_headers(m, NULL, &h), -1);
    record_headers_free(&h);
    repl_msg_free(m);
}

static void test_headers_remove(void **state)
{
    (void)state;
    record_headers h = {0};
    record_headers_add(&h, "A", 1, "1", 1);
    record_headers_add(&h, "AB", 2, "2", 1);
    record_headers_add(&h, "a", 1, "3", 1);
    repl_headers_remove(&h, "a");
    assert_int_equal(h.len, 1);
    assert_string_equal(h.v[0].name, "AB");
    record_headers_free(&h);
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
        cmocka_unit_test(test_backoff),       cmocka_unit_test(test_partition),
        cmocka_unit_test(test_apply_headers), cmocka_unit_test(test_headers_remove),
        cmocka_unit_test(test_dead_reason),   cmocka_unit_test(test_usage_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
