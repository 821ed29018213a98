/* Unit tests for mq against a real RabbitMQ node that the test starts itself
 * (rmq_testnode.h) on a free port of 5701-5704. Skipped when the broker is
 * not installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "capture/config.h"
#include "replication/mq.h"
#include "formats/repl_msg.h"
#include "rmq_testnode.h"
#include "testutil.h"
#include "base/util.h"

/* ---- fixtures ---- */

static rmq_testnode B;

static int group_setup(void **state)
{
    (void)state;
    return rmq_testnode_group_setup(&B, 0);
}

static int group_teardown(void **state)
{
    (void)state;
    return rmq_testnode_group_teardown(&B);
}

#define NEED_BROKER() RMQ_TESTNODE_NEED(&B)

static mq *conn(void)
{
    char err[256] = "";
    mq *m = mq_connect(B.url, 10, "test_mq", err, sizeof err);
    if (m == NULL)
        fail_msg("connect: %s", err);
    return m;
}

/* A message with every field set; the body has NUL bytes and spans several
 * frames when big. */
static repl_msg *make_msg(const char *rk, size_t body_len, bool full)
{
    repl_msg *m = repl_msg_new();
    uuid7_generate(m->id);
    m->timestamp = 1700000000 + (int64_t)body_len;
    m->origin = xstrdup("siteA");
    m->method = xstrdup("POST");
    m->target = xstrdup("/api/items?x=1&y=%C3%A9");
    m->headers = xstrdup("[[\"Content-Type\",\"application/json\"],[\"X-Tr\\u00e9\",\"v\"]]");
    if (full) {
        m->content_type = xstrdup("application/json; charset=utf-8");
        m->signature = xstrdup("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
    }
    m->routing_key = xstrdup(rk);
    for (size_t i = 0; i < body_len; i++) {
        char c = (char)(i % 251);
        buf_append(&m->body, &c, 1);
    }
    return m;
}

static void assert_str_eq_or_null(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

static void assert_same_msg(const repl_msg *want, const repl_msg *got)
{
    assert_string_equal(want->id, got->id);
    assert_int_equal(want->timestamp, got->timestamp);
    assert_str_eq_or_null(want->origin, got->origin);
    assert_str_eq_or_null(want->method, got->method);
    assert_str_eq_or_null(want->target, got->target);
    assert_str_eq_or_null(want->headers, got->headers);
    assert_str_eq_or_null(want->content_type, got->content_type);
    assert_str_eq_or_null(want->signature, got->signature);
    assert_int_equal(want->body.len, got->body.len);
    if (want->body.len)
        assert_memory_equal(want->body.data, got->body.data, want->body.len);
}

static void free_event(mq_event *ev)
{
    repl_msg_free(ev->msg);
    free(ev->reason);
    memset(ev, 0, sizeof *ev);
}

/* Polls until an event of kind arrives (others are collected into *acked
 * when they are confirms); fails the test after 10 s, or at once on a
 * return that was not asked for (a publish no queue took). */
static void poll_for(mq *m, mq_event_kind kind, mq_event *ev, uint64_t *acked_upto)
{
    char err[256] = "";
    int64_t until = util_mono_us() + 10 * 1000000LL;
    while (util_mono_us() < until) {
        if (mq_poll(m, 200, ev, err, sizeof err) < 0)
            fail_msg("poll: %s", err);
        if (ev->kind == MQ_CONFIRM && acked_upto) {
            assert_false(ev->nack);
            if (ev->tag > *acked_upto)
                *acked_upto = ev->tag;
        }
        if (ev->kind == kind)
            return;
        if (ev->kind == MQ_RETURN)
            fail_msg("publish %s returned: %s", ev->msg->id, ev->reason);
        free_event(ev);
    }
    fail_msg("no event of kind %d within 10 s", (int)kind);
}

/* ---- tests without a broker ---- */

static void test_bad_urls(void **state)
{
    (void)state;
    char err[256];
    const char *bad[] = {"http://localhost/",
                         "amqp://h:99999/",
                         "amqp://h:12x/",
                         "amqp://u:p@h:5672/a/b",
                         "amqp://h/%zz",
                         "amqps://h/",
                         ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_null(mq_connect(bad[i], 10, "t", err, sizeof err));
        assert_true(err[0] != '\0');
    }
    assert_null(mq_connect(NULL, 10, "t", err, sizeof err));
    mq_close(NULL);
    mq_interrupt(NULL);
}

static void test_refused(void **state)
{
    (void)state;
    /* A port that is bound but not listening refuses at once. */
    int fd;
    int port = testutil_refusing_port(&fd);
    assert_true(port > 0);
    char url[96], err[256] = "";
    snprintf(url, sizeof url, "amqp://127.0.0.1:%d/", port);
    int64_t t0 = util_mono_us();
    assert_null(mq_connect(url, 10, "t", err, sizeof err));
    assert_true(util_mono_us() - t0 < 3000000);
    assert_non_null(strstr(err, "connect"));
    close(fd);
}

/* ---- tests with the broker ---- */

static void test_bad_login(void **state)
{
    (void)state;
    NEED_BROKER();
    char url[128], err[256] = "";
    snprintf(url, sizeof url, "amqp://guest:wrong@127.0.0.1:%d/", B.port);
    assert_null(mq_connect(url, 10, "t", err, sizeof err));
    assert_non_null(strstr(err, "login"));
    snprintf(url, sizeof url, "amqp://guest:guest@127.0.0.1:%d/novhost", B.port);
    err[0] = '\0';
    assert_null(mq_connect(url, 10, "t", err, sizeof err));
    assert_true(err[0] != '\0');
    /* %2F is the default vhost spelled out. */
    snprintf(url, sizeof url, "amqp://guest:guest@127.0.0.1:%d/%%2F", B.port);
    mq *m = mq_connect(url, 10, "t", err, sizeof err);
    assert_non_null(m);
    mq_close(m);
}

static void test_declare_twice(void **state)
{
    (void)state;
    NEED_BROKER();
    char err[256] = "";
    mq *m = conn();
    assert_int_equal(mq_declare_topology(m, "n1", QUEUE_CLASSIC, err, sizeof err), 0);
    assert_int_equal(mq_declare_topology(m, "n1", QUEUE_CLASSIC, err, sizeof err), 0);
    mq_close(m);
    m = conn(); /* and again from a new connection */
    assert_int_equal(mq_declare_topology(m, "n1", QUEUE_CLASSIC, err, sizeof err), 0);
    /* A different queue type for an existing queue: the broker refuses and
     * says why; the mq is dead afterwards. */
    assert_int_equal(mq_declare_topology(m, "n1", QUEUE_QUORUM, err, sizeof err), -1);
    assert_non_null(strstr(err, "PRECONDITION_FAILED"));
    assert_non_null(strstr(err, "restspy.apply.n1"));
    assert_int_equal(mq_confirm_select(m, err, sizeof err), -1);
    mq_close(m);

    m = conn();
    assert_int_equal(mq_declare_topology(m, "", QUEUE_CLASSIC, err, sizeof err), -1);
    mq_close(m);
}

static void test_publish_confirms(void **state)
{
    (void)state;
    NEED_BROKER();
    char err[256] = "";
    mq *m = conn();
    assert_int_equal(mq_declare_topology(m, "pc", QUEUE_CLASSIC, err, sizeof err), 0);
    assert_int_equal(mq_confirm_select(m, err, sizeof err), 0);
    repl_msg *msg = make_msg("siteA.POST.api.items", 10, true);
    for (uint64_t i = 1; i <= 20; i++) {
        uint64_t tag = 0;
        assert_int_equal(mq_publish(m, MQ_EXCHANGE_REQUESTS, msg, &tag, err, sizeof err), 0);
        assert_int_equal(tag, i);
    }
    /* No queue is bound to restspy.requests: every publish comes back (a
     * return, with the message), and its return comes before the ack that
     * ends it, so a publisher can tell "confirmed" from "held". Every tag
     * gets acked (possibly several at once with multiple). */
    uint64_t upto = 0;
    int returned = 0;
    int64_t until = util_mono_us() + 10 * 1000000LL;
    while (upto < 20 && util_mono_us() < until) {
        mq_event ev;
        assert_int_equal(mq_poll(m, 200, &ev, err, sizeof err), 0);
        if (ev.kind == MQ_RETURN) {
            returned++;
            assert_string_equal(ev.msg->id, msg->id);
            assert_same_msg(msg, ev.msg);
            assert_string_equal(ev.msg->routing_key, "siteA.POST.api.items");
            assert_int_equal(ev.reply_code, 312);
            assert_string_equal(ev.reason, "NO_ROUTE");
        }
        if (ev.kind == MQ_CONFIRM) {
            assert_false(ev.nack);
            assert_true(ev.tag <= 20);
            if (ev.multiple || ev.tag == upto + 1)
                upto = ev.tag > upto ? ev.tag : upto;
            assert_true((uint64_t)returned >= upto);
        }
        free_event(&ev);
    }
    assert_int_equal(upto, 20);
    assert_int_equal(returned, 20);
    /* A publish a queue takes (restspy.inbound -> restspy.apply.pc) is
     * acked and not returned. */
    assert_int_equal(mq_publish(m, MQ_EXCHANGE_INBOUND, msg, NULL, err, sizeof err), 0);
    mq_event ev;
    poll_for(m, MQ_CONFIRM, &ev, &upto);
    assert_int_equal(ev.tag, 21);
    free_event(&ev);
    /* Nothing more: a poll times out with MQ_NONE in about its timeout. */
    int64_t t0 = util_mono_us();
    assert_int_equal(mq_poll(m, 300, &ev, err, sizeof err), 0);
    assert_int_equal(ev.kind, MQ_NONE);
    assert_true(util_mono_us() - t0 >= 250000);
    /* A publish to an exchange that does not exist closes the channel: the
     * next poll reports the broker's reason. */
    assert_int_equal(mq_publish(m, "no.such.exchange", msg, NULL, err, sizeof err), 0);
    assert_int_equal(mq_poll(m, 5000, &ev, err, sizeof err), -1);
    assert_non_null(strstr(err, "NOT_FOUND"));
    assert_int_equal(mq_publish(m, MQ_EXCHANGE_REQUESTS, msg, NULL, err, sizeof err), -1);
    repl_msg_free(msg);
    mq_close(m);
}

static void test_round_trip(void **state)
{
    (void)state;
    NEED_BROKER();
    char err[256] = "";
    mq *m = conn();
    assert_int_equal(mq_declare_topology(m, "rt", QUEUE_CLASSIC, err, sizeof err), 0);
    assert_int_equal(mq_confirm_select(m, err, sizeof err), 0);
    assert_int_equal(mq_consume(m, "restspy.apply.rt", 10, err, sizeof err), 0);

    /* Confirms and deliveries interleave on the one connection. */
    repl_msg *sent[3] = {make_msg("siteA.POST.api.items", 0, false),
                         make_msg("siteA.PUT.api.items.1", 300000, true),
                         make_msg("siteA.DELETE.x", 17, true)};
    for (int i = 0; i < 3; i++) {
        uint64_t tag;
        assert_int_equal(mq_publish(m, MQ_EXCHANGE_INBOUND, sent[i], &tag, err, sizeof err), 0);
        assert_int_equal(tag, (uint64_t)i + 1);
    }
    uint64_t acked = 0;
    for (int i = 0; i < 3; i++) {
        mq_event ev;
        poll_for(m, MQ_DELIVERY, &ev, &acked);
        assert_non_null(ev.msg);
        assert_null(ev.reason);
        assert_false(ev.redelivered);
        assert_same_msg(sent[i], ev.msg);
        assert_string_equal(ev.msg->routing_key, sent[i]->routing_key);
        assert_int_equal(mq_ack(m, ev.tag, err, sizeof err), 0);
        free_event(&ev);
    }
    int64_t until = util_mono_us() + 5000000;
    while (acked < 3 && util_mono_us() < until) {
        mq_event ev;
        assert_int_equal(mq_poll(m, 100, &ev, err, sizeof err), 0);
        if (ev.kind == MQ_CONFIRM && ev.tag > acked)
            acked = ev.tag;
        free_event(&ev);
    }
    assert_int_equal(acked, 3);
    for (int i = 0; i < 3; i++)
        repl_msg_free(sent[i]);
    mq_close(m);

    /* Acked: nothing is left in the queue. */
    m = conn();
    mq_event ev;
    assert_int_equal(mq_get(m, "restspy.apply.rt", &ev, err, sizeof err), 0);
    /* A consumer on a queue that does not exist: the broker's reason. */
    assert_int_equal(mq_consume(m, "restspy.apply.nope", 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "NOT_FOUND"));
    mq_close(m);
}

static void test_reject_and_dead(void **state)
{
    (void)state;
    NEED_BROKER();
    char err[256] = "";
    mq *m = conn();
    assert_int_equal(mq_declare_topology(m, "dl", QUEUE_CLASSIC, err, sizeof err), 0);
    assert_int_equal(mq_consume(m, "restspy.apply.dl", 1, err, sizeof err), 0);
    repl_msg *msg = make_msg("siteB.PATCH.a.b", 1000, true);
    assert_int_equal(mq_publish(m, MQ_EXCHANGE_INBOUND, msg, NULL, err, sizeof err), 0);

    /* requeue: delivered again, marked redelivered. */
    mq_event ev;
    poll_for(m, MQ_DELIVERY, &ev, NULL);
    assert_int_equal(mq_reject(m, ev.tag, true, err, sizeof err), 0);
    free_event(&ev);
    poll_for(m, MQ_DELIVERY, &ev, NULL);
    assert_true(ev.redelivered);
    /* requeue false: the queue's DLX moves it to restspy.dead.dl, key dl. */
    assert_int_equal(mq_reject(m, ev.tag, false, err, sizeof err), 0);
    free_event(&ev);
    mq_close(m);

    m = conn();
    int r = 0;
    for (int i = 0; i < 50 && r == 0; i++) {
        r = mq_get(m, "restspy.dead.dl", &ev, err, sizeof err);
        if (r == 0)
            testutil_sleep_ms(100);
    }
    assert_int_equal(r, 1);
    assert_int_equal(ev.kind, MQ_DELIVERY);
    assert_same_msg(msg, ev.msg);
    assert_string_equal(ev.msg->routing_key, "dl");
    assert_null(ev.reason);
    assert_int_equal(mq_ack(m, ev.tag, err, sizeof err), 0);
    free_event(&ev);

    /* mq_publish_dead: straight to restspy.dead with the reason. */
    assert_int_equal(mq_publish_dead(m, "dl", msg, "upstream answered 422: {\"error\":\"bad\"}",
                                     err, sizeof err),
                     0);
    r = 0;
    for (int i = 0; i < 50 && r == 0; i++) {
        r = mq_get(m, "restspy.dead.dl", &ev, err, sizeof err);
        if (r == 0)
            testutil_sleep_ms(100);
    }
    assert_int_equal(r, 1);
    assert_same_msg(msg, ev.msg);
    assert_string_equal(ev.msg->routing_key, "dl");
    assert_string_equal(ev.reason, "upstream answered 422: {\"error\":\"bad\"}");
    /* Not acked: a nack-requeue puts it back (how `replication dead` lists). */
    assert_int_equal(mq_reject(m, ev.tag, true, err, sizeof err), 0);
    free_event(&ev);
    assert_int_equal(mq_get(m, "restspy.dead.dl", &ev, err, sizeof err), 1);
    assert_non_null(ev.reason);
    assert_int_equal(mq_ack(m, ev.tag, err, sizeof err), 0);
    free_event(&ev);
    assert_int_equal(mq_get(m, "restspy.dead.dl", &ev, err, sizeof err), 0);

    /* mq_publish_to_queue: through the default exchange into a queue. */
    assert_int_equal(mq_publish_to_queue(m, "restspy.apply.dl", msg, err, sizeof err), 0);
    r = 0;
    for (int i = 0; i < 50 && r == 0; i++) {
        r = mq_get(m, "restspy.apply.dl", &ev, err, sizeof err);
        if (r == 0)
            testutil_sleep_ms(100);
    }
    assert_int_equal(r, 1);
    assert_same_msg(msg, ev.msg);
    assert_string_equal(ev.msg->routing_key, "restspy.apply.dl");
    assert_int_equal(mq_ack(m, ev.tag, err, sizeof err), 0);
    free_event(&ev);

    /* basic.get on a missing queue: the broker's reason, then dead. */
    assert_int_equal(mq_get(m, "restspy.dead.nope", &ev, err, sizeof err), -1);
    assert_non_null(strstr(err, "NOT_FOUND"));
    assert_int_equal(mq_ack(m, 1, err, sizeof err), -1);
    repl_msg_free(msg);
    mq_close(m);
}

static void test_quorum(void **state)
{
    (void)state;
    NEED_BROKER();
    char err[256] = "";
    mq *m = conn();
    assert_int_equal(mq_declare_topology(m, "q1", QUEUE_QUORUM, err, sizeof err), 0);
    assert_int_equal(mq_declare_topology(m, "q1", QUEUE_QUORUM, err, sizeof err), 0);
    assert_int_equal(mq_consume(m, "restspy.apply.q1", 5, err, sizeof err), 0);
    repl_msg *msg = make_msg("siteC.PUT.q", 5000, true);
    assert_int_equal(mq_publish(m, MQ_EXCHANGE_INBOUND, msg, NULL, err, sizeof err), 0);
    mq_event ev;
    poll_for(m, MQ_DELIVERY, &ev, NULL);
    assert_same_msg(msg, ev.msg);
    /* Quorum queues dead-letter too. */
    assert_int_equal(mq_reject(m, ev.tag, false, err, sizeof err), 0);
    free_event(&ev);
    mq_close(m);
    m = conn();
    int r = 0;
    for (int i = 0; i < 50 && r == 0; i++) {
        r = mq_get(m, "restspy.dead.q1", &ev, err, sizeof err);
        if (r == 0)
            testutil_sleep_ms(100);
    }
    assert_int_equal(r, 1);
    assert_same_msg(msg, ev.msg);
    assert_string_equal(ev.msg->routing_key, "q1");
    assert_int_equal(mq_ack(m, ev.tag, err, sizeof err), 0);
    free_event(&ev);
    repl_msg_free(msg);
    mq_close(m);
}

/* An idle connection with a 1 s heartbeat survives as long as its owner
 * polls; the broker would close it after two missed heartbeats. */
static void test_heartbeat(void **state)
{
    (void)state;
    NEED_BROKER();
    char err[256] = "";
    mq *m = mq_connect(B.url, 1, "test_mq heartbeat", err, sizeof err);
    assert_non_null(m);
    int64_t until = util_mono_us() + 3500000;
    while (util_mono_us() < until) {
        mq_event ev;
        assert_int_equal(mq_poll(m, 300, &ev, err, sizeof err), 0);
        assert_int_equal(ev.kind, MQ_NONE);
    }
    assert_int_equal(mq_declare_topology(m, "hb", QUEUE_CLASSIC, err, sizeof err), 0);
    mq_close(m);
}

/* mq_interrupt (what another thread calls) makes a waiting call fail at once. */
static void test_interrupt(void **state)
{
    (void)state;
    NEED_BROKER();
    char err[256] = "";
    mq *m = conn();
    mq_interrupt(m);
    mq_event ev;
    int64_t t0 = util_mono_us();
    assert_int_equal(mq_poll(m, 5000, &ev, err, sizeof err), -1);
    assert_true(util_mono_us() - t0 < 2000000);
    mq_close(m);
}

/* mq_set_wake: a write to the descriptor ends the wait at once (and is
 * drained); deliveries still come through the same wait, and the
 * heartbeats are kept while the wait is the wake path's own poll(2). */
static void test_wake(void **state)
{
    (void)state;
    NEED_BROKER();
    char err[256] = "";
    mq *m = mq_connect(B.url, 1, "test_mq wake", err, sizeof err);
    assert_non_null(m);
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(fd >= 0);
    mq_set_wake(m, fd);
    mq_event ev;

    uint64_t one = 1;
    assert_int_equal(write(fd, &one, sizeof one), (ssize_t)sizeof one);
    int64_t t0 = util_mono_us();
    assert_int_equal(mq_poll(m, 5000, &ev, err, sizeof err), 0);
    assert_int_equal(ev.kind, MQ_NONE);
    assert_true(util_mono_us() - t0 < 2000000);
    uint64_t v;
    assert_true(read(fd, &v, sizeof v) < 0); /* drained */

    int64_t until = util_mono_us() + 3500000; /* past two heartbeat intervals */
    while (util_mono_us() < until) {
        assert_int_equal(mq_poll(m, 300, &ev, err, sizeof err), 0);
        assert_int_equal(ev.kind, MQ_NONE);
    }
    assert_int_equal(mq_declare_topology(m, "wk", QUEUE_CLASSIC, err, sizeof err), 0);
    assert_int_equal(mq_consume(m, "restspy.apply.wk", 10, err, sizeof err), 0);
    repl_msg *sent = make_msg("siteA.POST.api.items", 10, false);
    assert_int_equal(mq_publish(m, MQ_EXCHANGE_INBOUND, sent, NULL, err, sizeof err), 0);
    until = util_mono_us() + 5000000;
    do {
        assert_int_equal(mq_poll(m, 1000, &ev, err, sizeof err), 0);
        if (ev.kind == MQ_DELIVERY)
            break;
        free_event(&ev);
    } while (util_mono_us() < until);
    assert_int_equal(ev.kind, MQ_DELIVERY);
    assert_same_msg(sent, ev.msg);
    free_event(&ev);
    repl_msg_free(sent);
    mq_close(m);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_urls),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_bad_login),
        cmocka_unit_test(test_declare_twice),
        cmocka_unit_test(test_publish_confirms),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_reject_and_dead),
        cmocka_unit_test(test_quorum),
        cmocka_unit_test(test_heartbeat),
        cmocka_unit_test(test_interrupt),
        cmocka_unit_test(test_wake),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
