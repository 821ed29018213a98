/* Unit tests for outbox: a real SQLite store in /tmp and a real RabbitMQ node
 * started by the test (rmq_testnode.h) on a free port of 5701-5704. Rows
 * submitted with an outbox message reach restspy.requests in order and leave the
 * outbox once confirmed; a broker stopped mid-way and restarted, a broker
 * that nacks, and a broker that is not there lose nothing. Skipped when the
 * broker is not installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "capture/config.h"
#include "replication/mq.h"
#include "replication/outbox.h"
#include "capture/record.h"
#include "formats/repl_msg.h"
#include "rmq_testnode.h"
#include "store/store.h"
#include "testutil.h"
#include "base/util.h"

/* ---- fixtures ---- */

static rmq_testnode B;

static int group_setup(void **state)
{
    (void)state;
    return rmq_testnode_group_setup(&B, 1);
}

static int group_teardown(void **state)
{
    (void)state;
    return rmq_testnode_group_teardown(&B);
}

#define NEED_BROKER() RMQ_TESTNODE_NEED(&B)

#define FX_MAX 4000

typedef struct fx {
    testutil_tmpdb db;
    store *s;
    int n;                          /* records submitted */
    size_t pad;                     /* bytes of 'x' after "body <i>" */
    char (*ids)[UUID7_STR_LEN + 1]; /* their ids, in submission order */
} fx;

static int fx_setup(void **state)
{
    fx *f = xcalloc(1, sizeof *f);
    if (testutil_tmpdb_make(&f->db, "outbox") != 0)
        return -1;
    store_options o = {0};
    o.url = f->db.url;
    o.queue_max = 10000;
    o.batch_max = 50;
    o.busy_timeout_ms = 1000;
    char err[256] = "";
    f->s = store_open(&o, err, sizeof err);
    if (!f->s || store_start(f->s, err, sizeof err) != 0) {
        fprintf(stderr, "store: %s\n", err);
        return -1;
    }
    f->ids = xcalloc(FX_MAX, sizeof *f->ids);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    store_close(f->s);
    testutil_tmpdb_remove(&f->db);
    free(f->ids);
    free(f);
    return 0;
}

/* Submits one replicated request: its body is "body <i>". Returns
 * store_submit's answer (no cmocka assert: the feeder thread calls it). */
static int submit_rc(fx *f)
{
    int i = f->n;
    if (i >= FX_MAX)
        return -1;
    record *r = record_new();
    char tmp[128];
    r->node = xstrdup("site-a");
    r->started_at_us = util_now_us();
    r->method = xstrdup("PUT");
    r->scheme = xstrdup("http");
    snprintf(tmp, sizeof tmp, "/api/items/%d", i);
    r->path = xstrdup(tmp);
    r->status = 200;
    r->replication = xstrdup("queued");
    repl_msg *m = repl_msg_new();
    memcpy(m->id, r->id, sizeof m->id);
    memcpy(f->ids[i], r->id, sizeof m->id);
    m->timestamp = r->started_at_us / 1000000;
    m->origin = xstrdup("site-a");
    m->method = xstrdup("PUT");
    snprintf(tmp, sizeof tmp, "/api/items/%d?v=1", i);
    m->target = xstrdup(tmp);
    m->headers = xstrdup("[[\"Content-Type\",\"text/plain\"]]");
    m->content_type = xstrdup("text/plain");
    snprintf(tmp, sizeof tmp, "site-a.PUT.api.items.%d", i);
    m->routing_key = xstrdup(tmp);
    buf_appendf(&m->body, "body %d", i);
    for (size_t k = 0; k < f->pad; k++)
        buf_append_char(&m->body, 'x');
    f->n++;
    return store_submit_unit(f->s, &(store_unit){.rec = r, .rec_row = true, .outbox = m}, NULL,
                             NULL);
}

static void submit(fx *f)
{
    assert_int_equal(submit_rc(f), 0);
}

static int64_t depth(fx *f)
{
    store_repl_stats rs;
    char err[256] = "";
    if (store_repl_stats_get(f->s, &rs, err, sizeof err) != 0)
        fail_msg("repl stats: %s", err);
    return rs.outbox_depth;
}

static void wait_depth_zero(fx *f, int seconds)
{
    int64_t until = util_mono_us() + (int64_t)seconds * 1000000;
    while (util_mono_us() < until) {
        store_stats ss;
        store_get_stats(f->s, &ss);
        if (ss.queued == 0 && depth(f) == 0)
            return;
        testutil_sleep_ms(50);
    }
    fail_msg("outbox depth still %lld after %d s", (long long)depth(f), seconds);
}

/* Raw rabbitmq-c for what mq does not offer: a test queue bound to
 * restspy.requests (arguments optional), and deleting it. */
static amqp_connection_state_t raw_open(void)
{
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t *s = amqp_tcp_socket_new(c);
    assert_int_equal(amqp_socket_open(s, "127.0.0.1", B.port), 0);
    assert_int_equal(
        amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest").reply_type,
        AMQP_RESPONSE_NORMAL);
    amqp_channel_open(c, 1);
    assert_int_equal(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
    return c;
}

static void raw_close(amqp_connection_state_t c)
{
    amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
}

static void queue_on_requests(const char *q, int max_length)
{
    amqp_connection_state_t c = raw_open();
    amqp_exchange_declare(c, 1, amqp_cstring_bytes(MQ_EXCHANGE_REQUESTS),
                          amqp_cstring_bytes("topic"), 0, 1, 0, 0, amqp_empty_table);
    assert_int_equal(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
    amqp_table_entry_t e[2];
    e[0].key = amqp_cstring_bytes("x-max-length");
    e[0].value.kind = AMQP_FIELD_KIND_I64;
    e[0].value.value.i64 = max_length;
    e[1].key = amqp_cstring_bytes("x-overflow");
    e[1].value.kind = AMQP_FIELD_KIND_UTF8;
    e[1].value.value.bytes = amqp_cstring_bytes("reject-publish");
    amqp_table_t args = {.num_entries = max_length > 0 ? 2 : 0, .entries = e};
    amqp_queue_declare(c, 1, amqp_cstring_bytes(q), 0, 1, 0, 0, args);
    assert_int_equal(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
    amqp_queue_bind(c, 1, amqp_cstring_bytes(q), amqp_cstring_bytes(MQ_EXCHANGE_REQUESTS),
                    amqp_cstring_bytes("#"), amqp_empty_table);
    assert_int_equal(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
    raw_close(c);
}

static void queue_delete(const char *q)
{
    amqp_connection_state_t c = raw_open();
    amqp_queue_delete(c, 1, amqp_cstring_bytes(q), 0, 0);
    assert_int_equal(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
    raw_close(c);
}

/* Drains q and checks that every submitted record arrived, each with its
 * fields, first occurrences in submission order (redeliveries of a
 * republish are allowed after them). Returns the duplicate count. */
static int check_arrivals(fx *f, const char *q)
{
    char err[256] = "";
    mq *m = mq_connect(B.url, 10, "test_outbox reader", err, sizeof err);
    if (!m)
        fail_msg("connect: %s", err);
    int *seen = xcalloc((size_t)f->n, sizeof *seen);
    int next = 0, dups = 0, total = 0;
    for (;;) {
        mq_event ev;
        int r = mq_get(m, q, &ev, err, sizeof err);
        if (r < 0)
            fail_msg("get: %s", err);
        if (r == 0)
            break;
        total++;
        int i = -1;
        if (sscanf(ev.msg->body.data ? ev.msg->body.data : "", "body %d", &i) != 1 || i < 0 ||
            i >= f->n || strcmp(f->ids[i], ev.msg->id) != 0)
            fail_msg("unknown message %s", ev.msg->id);
        char tmp[64];
        snprintf(tmp, sizeof tmp, "body %d", i);
        assert_int_equal(ev.msg->body.len, strlen(tmp) + f->pad);
        assert_memory_equal(ev.msg->body.data, tmp, strlen(tmp));
        snprintf(tmp, sizeof tmp, "/api/items/%d?v=1", i);
        assert_string_equal(ev.msg->target, tmp);
        snprintf(tmp, sizeof tmp, "site-a.PUT.api.items.%d", i);
        assert_string_equal(ev.msg->routing_key, tmp);
        assert_string_equal(ev.msg->origin, "site-a");
        assert_string_equal(ev.msg->method, "PUT");
        assert_string_equal(ev.msg->content_type, "text/plain");
        assert_null(ev.msg->signature);
        if (seen[i]++) {
            dups++;
        } else {
            if (i != next)
                fail_msg("message %d arrived first where %d was expected", i, next);
            next++;
        }
        assert_int_equal(mq_ack(m, ev.tag, err, sizeof err), 0);
        repl_msg_free(ev.msg);
        free(ev.reason);
    }
    for (int k = 0; k < f->n; k++)
        if (!seen[k])
            fail_msg("message %d (%s) never arrived (%d received)", k, f->ids[k], total);
    free(seen);
    mq_close(m);
    print_message("%d messages, %d arrived, %d duplicates, 0 lost\n", f->n, total, dups);
    return dups;
}

/* The lines the outbox tells (its log callback), kept in order. */
#define TOLD_MAX 64

typedef struct told {
    pthread_mutex_t mu;
    int n;
    char lines[TOLD_MAX][512];
} told;

static void told_line(void *ud, const char *line)
{
    told *t = ud;
    pthread_mutex_lock(&t->mu);
    if (t->n < TOLD_MAX)
        snprintf(t->lines[t->n], sizeof t->lines[0], "%s", line);
    t->n++;
    pthread_mutex_unlock(&t->mu);
}

static void print_told(const told *t)
{
    for (int i = 0; i < t->n && i < TOLD_MAX; i++)
        print_message("told: %s\n", t->lines[i]);
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static outbox *start_opts(fx *f, outbox_options *o)
{
    char err[256] = "";
    outbox *ob = outbox_start(f->s, o, err, sizeof err);
    if (!ob)
        fail_msg("outbox_start: %s", err);
    return ob;
}

/* The options of these tests; t (may be NULL) gets the told lines. */
static outbox_options options(const char *url, unsigned in_flight, told *t)
{
    outbox_options o = {0};
    o.amqp_url = url;
    o.node = "site-a";
    o.queue_type = QUEUE_CLASSIC;
    o.heartbeat_s = 2;
    o.max_in_flight = in_flight;
    o.retry_min_ms = 100;
    o.retry_max_ms = 800;
    o.log = t ? told_line : NULL;
    o.log_ud = t;
    return o;
}

static outbox *start(fx *f, const char *url, unsigned in_flight)
{
    outbox_options o = options(url, in_flight, NULL);
    char err[256] = "";
    outbox *ob = outbox_start(f->s, &o, err, sizeof err);
    if (!ob)
        fail_msg("outbox_start: %s", err);
    return ob;
}

/* Stops ob; fails when that took longer than outbox_stop's promise allows.
 * then (may be NULL) runs before the check, so that a slow stop cannot leave
 * the shared broker stopped for the tests that follow. */
static void stop_timed_then(outbox *ob, void (*then)(void))
{
    int64_t t0 = util_mono_us();
    outbox_stop(ob);
    int64_t took = util_mono_us() - t0;
    if (then)
        then();
    if (took > 1500000)
        fail_msg("outbox_stop took %lld ms", (long long)(took / 1000));
}

static void stop_timed(outbox *ob)
{
    stop_timed_then(ob, NULL);
}

/* ---- tests ---- */

static void test_bad_options(void **state)
{
    fx *f = *state;
    char err[256] = "";
    outbox_options o = {0};
    assert_null(outbox_start(f->s, &o, err, sizeof err));
    assert_true(err[0] != '\0');
    o.amqp_url = "amqp://127.0.0.1:1/";
    assert_null(outbox_start(f->s, &o, err, sizeof err));
    o.node = "n";
    assert_null(outbox_start(NULL, &o, err, sizeof err));
    outbox_stop(NULL);
}

/* Rows published in order and deleted once confirmed; the ring (8 in
 * flight) wraps many times. */
static void test_drains_in_order(void **state)
{
    NEED_BROKER();
    fx *f = *state;
    queue_on_requests("outbox.t1", 0);
    for (int i = 0; i < 50; i++)
        submit(f);
    outbox *ob = start(f, B.url, 8);
    for (int i = 0; i < 150; i++) {
        submit(f);
        if (i % 20 == 0)
            testutil_sleep_ms(20);
    }
    wait_depth_zero(f, 20);
    outbox_stats st;
    outbox_get_stats(ob, &st);
    assert_true(st.connected);
    assert_int_equal(st.confirmed, 200);
    assert_int_equal(st.published, 200);
    assert_int_equal(st.nacks, 0);
    assert_int_equal(st.reconnects, 0);
    assert_true(st.last_confirmed_us > 0);
    assert_string_equal(st.last_error, "");
    /* Idle with a 2 s heartbeat for longer than the broker tolerates
     * without one: still connected, and a new row still goes out. */
    testutil_sleep_ms(4500);
    outbox_get_stats(ob, &st);
    assert_true(st.connected);
    assert_int_equal(st.reconnects, 0);
    submit(f);
    wait_depth_zero(f, 10);
    stop_timed(ob);
    assert_int_equal(check_arrivals(f, "outbox.t1"), 0);
    queue_delete("outbox.t1");
}

/* Submits a record every 10 ms until told to stop, from its own thread
 * (as the proxy would), timing each store_submit. */
typedef struct feeder {
    fx *f;
    pthread_t th;
    pthread_mutex_t mu;
    bool stop;
    int failures;
    int64_t slowest_us;
} feeder;

static void *feed(void *arg)
{
    feeder *fd = arg;
    for (;;) {
        pthread_mutex_lock(&fd->mu);
        bool stop = fd->stop;
        pthread_mutex_unlock(&fd->mu);
        if (stop)
            break;
        int64_t t0 = util_mono_us();
        int rc = submit_rc(fd->f);
        int64_t took = util_mono_us() - t0;
        pthread_mutex_lock(&fd->mu);
        if (rc != 0)
            fd->failures++;
        if (took > fd->slowest_us)
            fd->slowest_us = took;
        pthread_mutex_unlock(&fd->mu);
        testutil_sleep_ms(10);
    }
    return NULL;
}

/* The broker stops in the middle of a stream of writes and comes back:
 * every row arrives (duplicates allowed), and the request path never
 * waited for the broker. */
static void broker_restart(void **state, bool hard)
{
    NEED_BROKER();
    fx *f = *state;
    queue_on_requests("outbox.t2", 0);
    told t = {.mu = PTHREAD_MUTEX_INITIALIZER};
    outbox_options o = options(B.url, 32, &t);
    outbox *ob = start_opts(f, &o);
    feeder fd = {.f = f, .mu = PTHREAD_MUTEX_INITIALIZER};
    assert_int_equal(pthread_create(&fd.th, NULL, feed, &fd), 0);
    testutil_sleep_ms(500);
    if (hard) {
        /* No goodbye: publishes in flight are neither confirmed nor
         * refused, and the socket just dies. */
        kill(-B.pid, SIGKILL);
        waitpid(B.pid, NULL, 0);
        B.pid = 0;
    } else {
        rmq_testnode_stop(&B);
    }
    /* While it is down: disconnected, with the reason. */
    outbox_stats st;
    int64_t until = util_mono_us() + 5000000;
    do {
        testutil_sleep_ms(100);
        outbox_get_stats(ob, &st);
    } while ((st.connected || st.last_error[0] == '\0') && util_mono_us() < until);
    assert_false(st.connected);
    assert_true(st.last_error[0] != '\0');
    print_message("while down: %s\n", st.last_error);
    testutil_sleep_ms(1000);
    assert_true(depth(f) > 0);

    assert_int_equal(rmq_testnode_start(&B, false), 0);
    testutil_sleep_ms(500);
    pthread_mutex_lock(&fd.mu);
    fd.stop = true;
    pthread_mutex_unlock(&fd.mu);
    pthread_join(fd.th, NULL);
    assert_int_equal(fd.failures, 0);
    print_message("%d submitted, slowest store_submit %lld us\n", f->n, (long long)fd.slowest_us);
    outbox_get_stats(ob, &st);
    /* A durable queue of a restarted broker takes publishes again once the
     * node accepts connections; a return here would be held, not lost. */
    print_message("returned as unroutable: %llu\n", (unsigned long long)st.returned);
    assert_true(fd.slowest_us < 500000);
    wait_depth_zero(f, 20);
    outbox_get_stats(ob, &st);
    assert_true(st.connected);
    assert_true(st.reconnects >= 1);
    assert_true(st.confirmed >= (uint64_t)f->n);
    assert_true(st.published >= (uint64_t)f->n);
    assert_int_equal(st.down_since_us, 0);
    assert_int_equal(st.failed_attempts, 0);
    stop_timed(ob);
    /* Told (issue 9 item 6): connected, the outage once (the retries in it
     * say nothing within log_interval), and its end. */
    print_told(&t);
    assert_int_equal(t.n, 3);
    assert_string_equal(t.lines[0], "connected to the broker");
    assert_true(starts_with(t.lines[1], "broker connection lost: ") ||
                starts_with(t.lines[1], "broker unreachable: "));
    assert_non_null(strstr(t.lines[1], "; retrying, new records wait in the outbox"));
    assert_true(starts_with(t.lines[2], "broker connection restored after "));
    check_arrivals(f, "outbox.t2");
    queue_delete("outbox.t2");
}

static void test_broker_restart(void **state)
{
    broker_restart(state, false);
}

static void test_broker_killed(void **state)
{
    broker_restart(state, true);
}

/* A queue that refuses publishes when full makes the broker nack: the
 * outbox reconnects and republishes until the refusal ends. */
static void test_nack_republishes(void **state)
{
    NEED_BROKER();
    fx *f = *state;
    queue_on_requests("outbox.t3", 0);
    queue_on_requests("outbox.t3.limited", 5);
    for (int i = 0; i < 12; i++)
        submit(f);
    outbox *ob = start(f, B.url, 4);
    outbox_stats st;
    int64_t until = util_mono_us() + 10000000;
    do {
        testutil_sleep_ms(50);
        outbox_get_stats(ob, &st);
    } while (st.nacks == 0 && util_mono_us() < until);
    assert_true(st.nacks > 0);
    assert_non_null(strstr(st.last_error, "nack"));
    testutil_sleep_ms(300);
    assert_true(depth(f) > 0);
    /* Only the contiguous confirmed prefix left the outbox: 5 went into
     * the limited queue, so at most 5 rows are gone. */
    assert_true(depth(f) >= 12 - 5);
    queue_delete("outbox.t3.limited");
    wait_depth_zero(f, 10);
    stop_timed(ob);
    check_arrivals(f, "outbox.t3");
    queue_delete("outbox.t3");
}

static void broker_resume(void)
{
    kill(-B.pid, SIGCONT);
}

/* A broker that stops reading (SIGSTOP: as under a resource alarm) leaves
 * a publish blocked on a full socket: outbox_stop still returns at once,
 * and the rows are all there for the next start. */
static void test_stalled_broker(void **state)
{
    NEED_BROKER();
    fx *f = *state;
    queue_on_requests("outbox.t5", 0);
    f->pad = 256 << 10; /* 32 of them fill any loopback socket buffer */
    outbox *ob = start(f, B.url, 64);
    outbox_stats st;
    /* One message through first: then the thread is set up (channel,
     * confirms) and what the stall below blocks is a publish. Connected
     * alone is not enough: under valgrind the broker was stopped while the
     * channel was still being set up, and no publish was ever blocked. */
    submit(f);
    int64_t until = util_mono_us() + 20000000;
    do {
        testutil_sleep_ms(50);
        outbox_get_stats(ob, &st);
    } while (st.confirmed < 1 && util_mono_us() < until);
    assert_true(st.confirmed >= 1);
    uint64_t first = st.published;
    kill(-B.pid, SIGSTOP);
    for (int i = 0; i < 32; i++)
        submit(f);
    /* The promise is about a publish blocked on a full socket: wait until
     * publishing has stopped moving for 1.5 s (under valgrind on a busy
     * machine reading the 1 MiB rows takes a while). */
    uint64_t before = 0;
    until = util_mono_us() + 20000000;
    do {
        before = st.published;
        testutil_sleep_ms(1500);
        outbox_get_stats(ob, &st);
    } while (st.published != before && st.published < first + 32 && util_mono_us() < until);
    print_message("stalled after %llu publishes\n", (unsigned long long)(st.published - first));
    if (st.published >= first + 32)
        broker_resume();
    assert_true(st.published < first + 32);
    stop_timed_then(ob, broker_resume);
    assert_true(depth(f) > 0);
    ob = start(f, B.url, 64);
    wait_depth_zero(f, 30);
    stop_timed(ob);
    check_arrivals(f, "outbox.t5");
    queue_delete("outbox.t5");
}

/* No queue is bound to restspy.requests (no peer set up with restspy
 * federate, or its queue deleted): the broker returns every publish and
 * then acks it. Before issue 10 the ack deleted the rows and the writes
 * were gone; now they stay, the returns are counted, told and retried with
 * backoff, and once a queue is bound everything arrives, in order. */
static void test_unroutable_kept(void **state)
{
    NEED_BROKER();
    fx *f = *state;
    for (int i = 0; i < 20; i++)
        submit(f);
    told t = {.mu = PTHREAD_MUTEX_INITIALIZER};
    outbox_options o = options(B.url, 8, &t);
    o.retry_min_ms = 50;
    o.retry_max_ms = 200;
    o.log_interval_ms = 60000;
    outbox *ob = start_opts(f, &o);
    outbox_stats st;
    int64_t until = util_mono_us() + 10000000;
    do {
        testutil_sleep_ms(50);
        outbox_get_stats(ob, &st);
    } while (st.returned < 3 && util_mono_us() < until);
    print_message("returned %llu, confirmed %llu: %s\n", (unsigned long long)st.returned,
                  (unsigned long long)st.confirmed, st.last_error);
    assert_true(st.returned >= 3); /* retried, not once and forgotten */
    assert_true(st.connected);     /* the broker is fine; its routing is not */
    assert_true(st.unroutable_since_us > 0);
    assert_non_null(strstr(st.last_error, "unroutable: no queue bound to restspy.requests"));
    assert_non_null(strstr(st.last_error, "run restspy federate"));
    assert_int_equal(st.confirmed, 0);
    assert_int_equal(depth(f), 20);
    /* More rows meanwhile wait behind the first one. */
    for (int i = 0; i < 10; i++)
        submit(f);
    testutil_sleep_ms(300);
    assert_int_equal(depth(f), 30);

    queue_on_requests("outbox.t6", 0);
    wait_depth_zero(f, 10);
    outbox_get_stats(ob, &st);
    assert_int_equal(st.unroutable_since_us, 0);
    assert_string_equal(st.last_error, "");
    assert_int_equal(st.confirmed, 30);
    assert_int_equal(st.reconnects, 0);
    stop_timed(ob);
    print_told(&t);
    /* Told once (the retries within log_interval say nothing), and the end. */
    assert_int_equal(t.n, 3);
    assert_string_equal(t.lines[0], "connected to the broker");
    assert_true(starts_with(t.lines[1], "the broker returned a publish as unroutable (312 "
                                        "NO_ROUTE, routing key site-a.PUT.api.items.0)"));
    assert_true(starts_with(t.lines[2], "publishes are routed again after "));
    assert_int_equal(check_arrivals(f, "outbox.t6"), 0);
    queue_delete("outbox.t6");
}

/* No broker: the outage is told at once, then once per log_interval
 * however often it retries, and the stats say since when (issue 9 item
 * 6). */
static void test_outage_told_rate_limited(void **state)
{
    fx *f = *state;
    int fd;
    int port = testutil_refusing_port(&fd);
    assert_true(port > 0);
    char url[96], want[128];
    snprintf(url, sizeof url, "amqp://guest:s3cret@127.0.0.1:%d/", port);
    told t = {.mu = PTHREAD_MUTEX_INITIALIZER};
    outbox_options o = options(url, 0, &t);
    o.retry_min_ms = 10;
    o.retry_max_ms = 20;
    o.log_interval_ms = 400;
    int64_t t0 = util_now_us();
    outbox *ob = start_opts(f, &o);
    testutil_sleep_ms(1000);
    outbox_stats st;
    outbox_get_stats(ob, &st);
    stop_timed(ob);
    close(fd);
    assert_false(st.connected);
    assert_true(st.down_since_us >= t0 && st.down_since_us <= util_now_us());
    print_told(&t);
    print_message("%llu failed attempts, %d lines\n", (unsigned long long)st.failed_attempts, t.n);
    /* ~1000 / (10..20 ms) attempts; lines at 0, 400 and 800 ms. */
    assert_true(st.failed_attempts >= 20);
    assert_true(t.n >= 2 && t.n <= 4);
    snprintf(want, sizeof want, "broker unreachable: AMQP connect to 127.0.0.1:%d: ", port);
    assert_true(starts_with(t.lines[0], want));
    for (int i = 1; i < t.n; i++)
        assert_true(starts_with(t.lines[i], "broker still unreachable after "));
    for (int i = 0; i < t.n; i++)
        assert_null(strstr(t.lines[i], "s3cret"));
}

/* No broker at all: the thread keeps trying, reports why, stops at once,
 * and the rows wait for the next start. */
static void test_no_broker_then_start(void **state)
{
    fx *f = *state;
    int fd;
    int port = testutil_refusing_port(&fd);
    assert_true(port > 0);
    char url[96];
    snprintf(url, sizeof url, "amqp://127.0.0.1:%d/", port);
    for (int i = 0; i < 10; i++)
        submit(f);
    outbox *ob = start(f, url, 0);
    testutil_sleep_ms(700);
    outbox_stats st;
    outbox_get_stats(ob, &st);
    assert_false(st.connected);
    assert_non_null(strstr(st.last_error, "connect"));
    assert_int_equal(st.published, 0);
    stop_timed(ob);
    close(fd);
    assert_int_equal(depth(f), 10);

    if (!B.available)
        return;
    queue_on_requests("outbox.t4", 0);
    ob = start(f, B.url, 0);
    wait_depth_zero(f, 10);
    stop_timed(ob);
    assert_int_equal(check_arrivals(f, "outbox.t4"), 0);
    queue_delete("outbox.t4");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_options, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_drains_in_order, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_nack_republishes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_no_broker_then_start, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_outage_told_rate_limited, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_stalled_broker, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_unroutable_kept, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_broker_restart, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_broker_killed, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
