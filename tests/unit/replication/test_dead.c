/* Unit tests for replication/dead without a broker: how an id or a prefix
 * names a dead letter, the two JSON forms the CLI and the admin share, and
 * the failures dead_run reports before any message is touched (a broker
 * that refuses, a skip with the store off). The broker paths are
 * tests/integration/test_replication_cli.py and test_console_dead.py. */
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
#include "capture/config.h"
#include "formats/repl_msg.h"
#include "replication/dead.h"
#include "testutil.h"

static void test_find_id(void **state)
{
    (void)state;
    const char *ids[] = {
        "0190a0b0-aaaa-7000-8000-000000000001",
        "0190a0b0-aaaa-7000-8000-000000000002",
        "0190a0b0-bbbb-7000-8000-000000000003",
    };
    /* whole, in any case */
    assert_int_equal(dead_find_id(ids, 3, ids[1]), 1);
    assert_int_equal(dead_find_id(ids, 3, "0190A0B0-BBBB-7000-8000-000000000003"), 2);
    /* a unique prefix of 8+ */
    assert_int_equal(dead_find_id(ids, 3, "0190a0b0-b"), 2);
    assert_int_equal(dead_find_id(ids, 3, "0190a0b0-aaaa-7000-8000-000000000001"), 0);
    /* ambiguous */
    assert_int_equal(dead_find_id(ids, 3, "0190a0b0-aaaa"), -2);
    assert_int_equal(dead_find_id(ids, 3, "0190a0b0"), -2);
    /* too short to be a prefix, or nothing starts so */
    assert_int_equal(dead_find_id(ids, 3, "0190a0b"), -1);
    assert_int_equal(dead_find_id(ids, 3, "0190a0b0-cccc"), -1);
    assert_int_equal(dead_find_id(ids, 0, "0190a0b0"), -1);
    /* a whole id wins over being the prefix of another */
    const char *nested[] = {"0190a0b0-aaaa-x", "0190a0b0-aaaa"};
    assert_int_equal(dead_find_id(nested, 2, "0190a0b0-aaaa"), 1);
}

/* A dead letter as mq_get gives it. */
static void make_letter(dead_letter *d, const char *headers, size_t body_len)
{
    memset(d, 0, sizeof *d);
    repl_msg *m = repl_msg_new();
    snprintf(m->id, sizeof m->id, "%s", "0190a0b0-aaaa-7000-8000-000000000001");
    m->timestamp = 1700000000;
    m->origin = strdup("peer");
    m->method = strdup("PUT");
    m->target = strdup("/api/sites/1/?x=\"y\"");
    m->headers = headers ? strdup(headers) : NULL;
    for (size_t i = 0; i < body_len; i++)
        buf_append_char(&m->body, (char)('a' + i % 26));
    d->ev.kind = MQ_DELIVERY;
    d->ev.msg = m;
    d->ev.reason = strdup("upstream answered 409: conflict");
}

static void free_letter(dead_letter *d)
{
    repl_msg_free(d->ev.msg);
    free(d->ev.reason);
}

static json_t *json_of(const dead_letter *d, bool whole)
{
    buf b = BUF_INIT;
    dead_json(d, whole, &b);
    json_error_t jerr;
    json_t *j = json_loadb(b.data, b.len, 0, &jerr);
    assert_non_null(j);
    buf_free(&b);
    return j;
}

static void test_json_list_form(void **state)
{
    (void)state;
    dead_letter d;
    make_letter(&d, NULL, 7);
    json_t *j = json_of(&d, false);
    assert_string_equal(json_string_value(json_object_get(j, "id")), d.ev.msg->id);
    assert_string_equal(json_string_value(json_object_get(j, "target")), "/api/sites/1/?x=\"y\"");
    assert_string_equal(json_string_value(json_object_get(j, "reason")),
                        "upstream answered 409: conflict");
    assert_int_equal(json_integer_value(json_object_get(j, "timestamp")), 1700000000);
    assert_int_equal(json_integer_value(json_object_get(j, "body_size")), 7);
    assert_true(json_is_false(json_object_get(j, "retried")));
    assert_true(json_is_false(json_object_get(j, "skipped")));
    assert_null(json_object_get(j, "body")); /* the list form has no body */
    json_decref(j);

    /* retried only once the broker confirmed the republish */
    d.retry = true;
    j = json_of(&d, false);
    assert_true(json_is_false(json_object_get(j, "retried")));
    json_decref(j);
    d.confirmed = true;
    d.skipped = true;
    j = json_of(&d, false);
    assert_true(json_is_true(json_object_get(j, "retried")));
    assert_true(json_is_true(json_object_get(j, "skipped")));
    json_decref(j);

    /* a field the message lacks is null */
    free(d.ev.reason);
    d.ev.reason = NULL;
    j = json_of(&d, false);
    assert_true(json_is_null(json_object_get(j, "reason")));
    json_decref(j);
    free_letter(&d);
}

static void test_json_whole_form(void **state)
{
    (void)state;
    dead_letter d;
    make_letter(&d, "[[\"X-Trace\",\"t1\"],[\"Accept\",\"*/*\"]]", 7);
    json_t *j = json_of(&d, true);
    json_t *h = json_object_get(j, "headers");
    assert_int_equal(json_array_size(h), 2);
    assert_string_equal(json_string_value(json_array_get(json_array_get(h, 0), 0)), "X-Trace");
    assert_string_equal(json_string_value(json_array_get(json_array_get(h, 1), 1)), "*/*");
    assert_string_equal(json_string_value(json_object_get(j, "body")), "abcdefg");
    assert_true(json_is_false(json_object_get(j, "body_truncated")));
    assert_true(json_is_false(json_object_get(j, "signed")));
    assert_true(json_is_null(json_object_get(j, "content_type")));
    json_decref(j);
    free_letter(&d);

    /* unreadable headers are null; a body past the cap is cut */
    make_letter(&d, "not json", DEAD_SHOW_BODY_MAX + 10);
    j = json_of(&d, true);
    assert_true(json_is_null(json_object_get(j, "headers")));
    assert_int_equal(json_string_length(json_object_get(j, "body")), DEAD_SHOW_BODY_MAX);
    assert_int_equal(json_integer_value(json_object_get(j, "body_size")), DEAD_SHOW_BODY_MAX + 10);
    assert_true(json_is_true(json_object_get(j, "body_truncated")));
    json_decref(j);
    free_letter(&d);
}

static config *config_with(const char *amqp, const char *store)
{
    config *c = config_new();
    char err[256];
    assert_int_equal(config_set(c, "amqp", amqp, err, sizeof err), 0);
    assert_int_equal(config_set(c, "store", store, err, sizeof err), 0);
    assert_int_equal(config_set(c, "node", "unit", err, sizeof err), 0);
    return c;
}

static void test_run_failures(void **state)
{
    (void)state;
    int fd;
    int port = testutil_refusing_port(&fd);
    assert_true(port > 0);
    char url[64];
    snprintf(url, sizeof url, "amqp://guest:guest@127.0.0.1:%d/", port);

    /* a broker that refuses: nothing taken */
    config *c = config_with(url, "sqlite:/nonexistent/dir/x.db");
    dead_result r = {0};
    char err[512] = "";
    assert_int_equal(dead_run(c, DEAD_LIST, NULL, "unit", &r, err, sizeof err), DEAD_EBROKER);
    assert_non_null(strstr(err, "AMQP"));
    assert_string_equal(r.queue, "restspy.dead.unit");
    assert_string_equal(r.apply_queue, "restspy.apply.unit");
    assert_int_equal(r.len, 0);
    assert_int_equal(r.named, -1);
    dead_result_free(&r);
    config_unref(c);

    /* a skip with the store off: refused before the broker is asked */
    c = config_with(url, "off");
    err[0] = '\0';
    assert_int_equal(dead_run(c, DEAD_SKIP, "0190a0b0-aaaa", "unit", &r, err, sizeof err),
                     DEAD_ENOSTORE);
    assert_non_null(strstr(err, "store is off"));
    dead_result_free(&r);
    config_unref(c);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_id),
        cmocka_unit_test(test_json_list_form),
        cmocka_unit_test(test_json_whole_form),
        cmocka_unit_test(test_run_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
