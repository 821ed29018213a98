/* bench_publish: messages/s of restspy's outbox publisher (publisher
 * confirms) against a plain rabbitmq-c confirm loop on the same broker
 * (issue 5), one mode per run, one JSON object on stdout.
 *
 * The message: what the proxy makes for a POST of bench/run
 * (repl_msg_from_record of the record in bench_common.h, signed with
 * --secret): persistent, app_id, message_id, timestamp, content_type and
 * the x-restspy-* headers, routing key <node>.POST.api.items, to the topic
 * exchange restspy.requests. restspy publishes mandatory: a message no
 * queue takes is returned and stays in the outbox, so --mode restspy needs
 * --sink-queue (limits.py always passes it). With --sink-queue Q a durable
 * classic queue Q bound with "#" stands in for one peer's out queue
 * (restspy.out.<peer>, as restspy federate declares it): purged before,
 * checked to hold every message and deleted after.
 *
 * --mode restspy: --rows records with an outbox message are submitted through
 * the store (proxy defaults, like configuration 8 of bench/run) and
 * committed before the clock starts. Then outbox_start with the proxy's
 * settings (--in-flight, default 256 as in server.c); the clock runs until
 * outbox_get_stats reports every row confirmed (polled every 1 ms); the
 * time until the writer has deleted them all (outbox empty) is reported too.
 * The clock includes the publisher's connect, topology declaration and
 * confirm.select; seconds_after_connect starts when it reports connected.
 * CPU: the whole process, and the publisher and store writer threads alone
 * (schedstat), over the timed window.
 *
 * --mode plain: the limit. One rabbitmq-c connection (same frame_max and
 * heartbeat as restspy), exchange.declare restspy.requests (topic,
 * durable), confirm.select, then one properties block and body reused for
 * every publish (only message_id changes), at most --in-flight unconfirmed:
 * publish while there is room, read the acks already there (waiting only
 * when the window is full or everything is sent), basic.ack multiple
 * honoured. Clock: connect to last ack; seconds_after_connect from
 * confirm.select-ok. A nack or a lost connection is fatal in both modes. */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "capture/config.h"
#include "replication/outbox.h"
#include "formats/repl_msg.h"
#include "store/store.h"
#include "base/util.h"

#define PROG "bench_publish"
#define EXCHANGE "restspy.requests"
#define NODE "bench"
#define FRAME_MAX 131072 /* as mq.c */
#define TIMEOUT_S 600

typedef struct opts {
    const char *mode;
    const char *url;
    const char *db;
    const char *sink;
    const char *secret;
    uint64_t rows;
    uint64_t in_flight;
    uint64_t pause_ms; /* restspy: sleep between the fill and the clock */
} opts;

static void usage(void)
{
    fprintf(stderr, "usage: bench_publish --mode restspy|plain --amqp URL [--db PATH] [--rows N]\n"
                    "                     [--in-flight W] [--sink-queue Q] [--secret S]\n"
                    "                     [--pause-ms MS]\n"
                    "  --db PATH        restspy: a fresh SQLite file for the store (required)\n"
                    "  --rows N         messages (default 100000)\n"
                    "  --in-flight W    unconfirmed publishes at once (default 256, as the proxy)\n"
                    "  --sink-queue Q   bind a durable classic queue Q to restspy.requests\n"
                    "  --secret S       replicate_secret the messages are signed with\n"
                    "                   (default bench-secret; empty: unsigned)\n"
                    "  --pause-ms MS    restspy: say so on stderr and sleep MS between the fill\n"
                    "                   and the clock (time to attach a profiler)\n"
                    "Prints one JSON object on stdout.\n");
    exit(2);
}

static double secs(int64_t from_us, int64_t to_us)
{
    return (double)(to_us - from_us) / 1e6;
}

static void nap_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* The message the proxy would publish for one bench record. */
static repl_msg *make_msg(const char *secret, record **rec_out)
{
    record *r = bench_make_record(NODE);
    buf body = BUF_INIT;
    buf_append(&body, r->req_body.data, r->req_body.len);
    repl_msg *m = repl_msg_from_record(r, NODE, &body, NULL);
    buf_free(&body);
    repl_msg_sign(m, secret);
    if (rec_out)
        *rec_out = r;
    else
        record_free(r);
    return m;
}

/* ---- plain rabbitmq-c ---- */

static void check_reply(amqp_connection_state_t conn, const char *what)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        bench_die(PROG, "%s: %s", what, amqp_error_string2(r.library_error));
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            const amqp_channel_close_t *c = r.reply.decoded;
            bench_die(PROG, "%s: channel closed: %u %.*s", what, c->reply_code,
                      (int)c->reply_text.len, (const char *)c->reply_text.bytes);
        }
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            const amqp_connection_close_t *c = r.reply.decoded;
            bench_die(PROG, "%s: connection closed: %u %.*s", what, c->reply_code,
                      (int)c->reply_text.len, (const char *)c->reply_text.bytes);
        }
        bench_die(PROG, "%s: unexpected method 0x%08x", what, (unsigned)r.reply.id);
    default:
        bench_die(PROG, "%s: no reply", what);
    }
}

/* Connects, logs in and opens channel 1. */
static amqp_connection_state_t plain_connect(const char *url, int heartbeat_s)
{
    char *copy = xstrdup(url);
    struct amqp_connection_info ci;
    if (amqp_parse_url(copy, &ci) != AMQP_STATUS_OK)
        bench_die(PROG, "bad AMQP URL %s", url);
    amqp_connection_state_t conn = amqp_new_connection();
    if (!conn)
        bench_die(PROG, "cannot allocate an AMQP connection");
    amqp_socket_t *sock = amqp_tcp_socket_new(conn);
    if (!sock)
        bench_die(PROG, "cannot allocate an AMQP socket");
    int rc = amqp_socket_open(sock, ci.host, ci.port);
    if (rc != AMQP_STATUS_OK)
        bench_die(PROG, "connect to %s:%d: %s", ci.host, ci.port, amqp_error_string2(rc));
    amqp_rpc_reply_t r = amqp_login(conn, ci.vhost[0] ? ci.vhost : "/", 0, FRAME_MAX, heartbeat_s,
                                    AMQP_SASL_METHOD_PLAIN, ci.user, ci.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL)
        bench_die(PROG, "AMQP login to %s:%d failed", ci.host, ci.port);
    amqp_channel_open(conn, 1);
    check_reply(conn, "channel.open");
    free(copy);
    return conn;
}

static void plain_close(amqp_connection_state_t conn)
{
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
}

/* restspy.requests as mq_declare_topology declares it. */
static void declare_exchange(amqp_connection_state_t conn)
{
    amqp_exchange_declare(conn, 1, amqp_cstring_bytes(EXCHANGE), amqp_cstring_bytes("topic"), 0, 1,
                          0, 0, amqp_empty_table);
    check_reply(conn, "exchange.declare " EXCHANGE);
}

/* The sink queue: declared, bound and purged (before a run). */
static void sink_setup(const char *url, const char *q)
{
    amqp_connection_state_t conn = plain_connect(url, 0);
    declare_exchange(conn);
    amqp_table_entry_t arg;
    arg.key = amqp_cstring_bytes("x-queue-type");
    arg.value.kind = AMQP_FIELD_KIND_UTF8;
    arg.value.value.bytes = amqp_cstring_bytes("classic");
    amqp_table_t args = {.num_entries = 1, .entries = &arg};
    amqp_queue_declare(conn, 1, amqp_cstring_bytes(q), 0, 1, 0, 0, args);
    check_reply(conn, "queue.declare");
    amqp_queue_bind(conn, 1, amqp_cstring_bytes(q), amqp_cstring_bytes(EXCHANGE),
                    amqp_cstring_bytes("#"), amqp_empty_table);
    check_reply(conn, "queue.bind");
    amqp_queue_purge(conn, 1, amqp_cstring_bytes(q));
    check_reply(conn, "queue.purge");
    plain_close(conn);
}

/* After a run: the sink must hold every message; then it is deleted. */
static void sink_check(const char *url, const char *q, uint64_t want)
{
    amqp_connection_state_t conn = plain_connect(url, 0);
    uint32_t n = 0;
    for (int i = 0; i < 100; i++) {
        amqp_queue_declare_ok_t *ok =
            amqp_queue_declare(conn, 1, amqp_cstring_bytes(q), 1, 0, 0, 0, amqp_empty_table);
        check_reply(conn, "queue.declare passive");
        n = ok->message_count;
        if (n >= want)
            break;
        nap_us(20000);
    }
    amqp_queue_delete(conn, 1, amqp_cstring_bytes(q), 0, 0);
    check_reply(conn, "queue.delete");
    plain_close(conn);
    if (n != want)
        bench_die(PROG, "sink queue %s holds %u messages, expected %llu", q, n,
                  (unsigned long long)want);
}

static amqp_table_entry_t hdr(const char *key, const char *value)
{
    amqp_table_entry_t e;
    e.key = amqp_cstring_bytes(key);
    e.value.kind = AMQP_FIELD_KIND_UTF8;
    e.value.value.bytes = amqp_cstring_bytes(value);
    return e;
}

static void run_plain(const opts *o, unsigned heartbeat_s)
{
    repl_msg *m = make_msg(o->secret, NULL);
    /* The properties mq.c's publish sets, built once. */
    amqp_table_entry_t h[5];
    int nh = 0;
    h[nh++] = hdr("x-restspy-origin", m->origin);
    h[nh++] = hdr("x-restspy-method", m->method);
    h[nh++] = hdr("x-restspy-target", m->target);
    h[nh++] = hdr("x-restspy-headers", m->headers);
    if (m->signature)
        h[nh++] = hdr("x-restspy-signature", m->signature);
    char msg_id[UUID7_STR_LEN + 1];
    memcpy(msg_id, m->id, sizeof msg_id);
    amqp_basic_properties_t p;
    memset(&p, 0, sizeof p);
    p._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_HEADERS_FLAG |
               AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
    p.delivery_mode = 2;
    p.app_id = amqp_cstring_bytes("restspy");
    p.timestamp = (uint64_t)m->timestamp;
    p.headers.num_entries = nh;
    p.headers.entries = h;
    p.message_id = amqp_cstring_bytes(msg_id);
    if (m->content_type) {
        p._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
        p.content_type = amqp_cstring_bytes(m->content_type);
    }
    amqp_bytes_t body = {.len = m->body.len, .bytes = m->body.data};
    amqp_bytes_t exchange = amqp_cstring_bytes(EXCHANGE);
    amqp_bytes_t rkey = amqp_cstring_bytes(m->routing_key);

    if (o->sink)
        sink_setup(o->url, o->sink);

    uint64_t w = o->in_flight;
    bool *acked = xcalloc(w, sizeof *acked);
    uint64_t next = 1; /* delivery tag of the next publish */
    uint64_t done = 0; /* every tag <= done is confirmed */
    uint64_t acks = 0, multiple = 0;

    double q0 = 0, q1 = 0;
    bench_tid_sched_s((int)getpid(), &q0); /* the main thread publishes */
    double c0 = bench_cpu_s();
    int64_t t0 = util_mono_us();
    amqp_connection_state_t conn = plain_connect(o->url, (int)heartbeat_s);
    declare_exchange(conn);
    amqp_confirm_select(conn, 1);
    check_reply(conn, "confirm.select");
    int64_t tc = util_mono_us();
    int64_t deadline = t0 + (int64_t)TIMEOUT_S * 1000000;

    while (done < o->rows) {
        while (next - 1 - done < w && next <= o->rows) {
            /* message_id: the capture id with the publish number in its
             * last 12 hex digits (unique, same length). */
            static const char hex[] = "0123456789abcdef";
            for (int k = 0; k < 12; k++)
                msg_id[UUID7_STR_LEN - 1 - k] = hex[(next >> (4 * k)) & 15];
            int rc = amqp_basic_publish(conn, 1, exchange, rkey, 0, 0, &p, body);
            if (rc != AMQP_STATUS_OK)
                bench_die(PROG, "publish: %s", amqp_error_string2(rc));
            acked[next % w] = false;
            next++;
        }
        /* Wait for the broker only when nothing else can be done. */
        bool must_wait = next - 1 - done == w || next > o->rows;
        amqp_maybe_release_buffers(conn);
        for (;;) {
            amqp_frame_t f;
            struct timeval tv = {0, 0};
            if (must_wait) {
                int64_t left = deadline - util_mono_us();
                if (left <= 0)
                    bench_die(PROG, "timed out after %d s with %llu of %llu confirmed", TIMEOUT_S,
                              (unsigned long long)done, (unsigned long long)o->rows);
                tv.tv_sec = (time_t)(left / 1000000);
                tv.tv_usec = (suseconds_t)(left % 1000000);
            }
            int rc = amqp_simple_wait_frame_noblock(conn, &f, &tv);
            if (rc == AMQP_STATUS_TIMEOUT)
                break;
            if (rc != AMQP_STATUS_OK)
                bench_die(PROG, "AMQP connection lost: %s", amqp_error_string2(rc));
            must_wait = false;
            if (f.frame_type != AMQP_FRAME_METHOD)
                continue;
            if (f.payload.method.id == AMQP_BASIC_NACK_METHOD)
                bench_die(PROG, "the broker nacked a publish");
            if (f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
                f.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD)
                bench_die(PROG, "the broker closed the channel");
            if (f.payload.method.id != AMQP_BASIC_ACK_METHOD)
                continue;
            const amqp_basic_ack_t *a = f.payload.method.decoded;
            acks++;
            if (a->delivery_tag >= next || a->delivery_tag == 0)
                bench_die(PROG, "ack for unknown delivery tag %llu",
                          (unsigned long long)a->delivery_tag);
            if (a->multiple) {
                multiple++;
                for (uint64_t t = done + 1; t <= a->delivery_tag; t++)
                    acked[t % w] = true;
            } else if (a->delivery_tag > done) {
                acked[a->delivery_tag % w] = true;
            }
            while (done + 1 < next && acked[(done + 1) % w])
                done++;
        }
    }
    int64_t t1 = util_mono_us();
    double c1 = bench_cpu_s();
    bench_tid_sched_s((int)getpid(), &q1);
    plain_close(conn);
    if (o->sink)
        sink_check(o->url, o->sink, o->rows);

    double s = secs(t0, t1);
    printf("{\"mode\":\"plain\",\"rows\":%llu,\"seconds\":%.6f,\"rows_per_s\":%.1f,"
           "\"seconds_after_connect\":%.6f,\"rows_per_s_after_connect\":%.1f,\"in_flight\":%llu,"
           "\"acks\":%llu,\"multiple_acks\":%llu,\"cpu_seconds\":%.6f,\"cpu_us_per_row\":%.3f,"
           "\"runq_seconds\":%.6f,"
           "\"body_bytes\":%zu,\"sink_queue\":%s}\n",
           (unsigned long long)o->rows, s, (double)o->rows / s, secs(tc, t1),
           (double)o->rows / secs(tc, t1), (unsigned long long)w, (unsigned long long)acks,
           (unsigned long long)multiple, c1 - c0, (c1 - c0) * 1e6 / (double)o->rows, q1 - q0,
           m->body.len, o->sink ? "true" : "false");
    free(acked);
    repl_msg_free(m);
}

/* ---- restspy's outbox ---- */

typedef struct filled {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int status; /* 1 committed, -1 dropped, 0 waiting */
} filled;

static void on_filled(void *ud, int status)
{
    filled *f = ud;
    pthread_mutex_lock(&f->mu);
    f->status = status == 0 ? 1 : -1;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->mu);
}

static int64_t outbox_depth(store *s)
{
    store_repl_stats rs;
    char err[256] = "";
    if (store_repl_stats_get(s, &rs, err, sizeof err) != 0)
        bench_die(PROG, "store_repl_stats_get: %s", err);
    return rs.outbox_depth;
}

static void run_restspy(const opts *o)
{
    if (!o->db)
        bench_die(PROG, "--mode restspy needs --db PATH");
    if (access(o->db, F_OK) == 0)
        bench_die(PROG, "%s exists: give a fresh path", o->db);
    char url[4096], err[512] = "";
    store_options so;
    bench_proxy_store_options(o->db, url, sizeof url, &so);
    store *s = store_open(&so, err, sizeof err);
    if (!s)
        bench_die(PROG, "store_open: %s", err);
    int writer = bench_store_start(PROG, s);

    /* Fill the outbox the way the proxy does (outbox_message). */
    filled fl = {.status = 0};
    pthread_mutex_init(&fl.mu, NULL);
    pthread_cond_init(&fl.cond, NULL);
    size_t body_len = 0;
    int64_t tf = util_mono_us();
    for (uint64_t i = 0; i < o->rows; i++) {
        record *r = NULL;
        repl_msg *m = make_msg(o->secret, &r);
        body_len = m->body.len;
        store_unit u = {.rec = r, .rec_row = true, .outbox = m};
        int rc = i + 1 < o->rows ? store_submit_unit(s, &u, NULL, NULL)
                                 : store_submit_unit(s, &u, on_filled, &fl);
        if (rc != 0)
            bench_die(PROG, "store_submit refused record %llu", (unsigned long long)i);
    }
    pthread_mutex_lock(&fl.mu);
    while (fl.status == 0)
        pthread_cond_wait(&fl.cond, &fl.mu);
    pthread_mutex_unlock(&fl.mu);
    if (fl.status < 0)
        bench_die(PROG, "the store dropped a record");
    double fill_s = secs(tf, util_mono_us());
    int64_t depth = outbox_depth(s);
    if (depth != (int64_t)o->rows)
        bench_die(PROG, "outbox holds %lld rows, expected %llu", (long long)depth,
                  (unsigned long long)o->rows);
    if (o->sink)
        sink_setup(o->url, o->sink);
    if (o->pause_ms) {
        fprintf(stderr, "%s: filled (pid %ld), publishing in %llu ms\n", PROG, (long)getpid(),
                (unsigned long long)o->pause_ms);
        nap_us((long)o->pause_ms * 1000);
    }

    config *c = config_new();
    outbox_options oo = {0};
    oo.amqp_url = o->url;
    oo.node = NODE;
    oo.queue_type = c->queue_type;
    oo.heartbeat_s = (unsigned)(c->amqp_heartbeat_ms / 1000);
    oo.max_in_flight = (unsigned)o->in_flight;
    oo.retry_min_ms = c->retry_min_ms;
    oo.retry_max_ms = c->retry_max_ms;
    config_unref(c);

    int tids[256];
    size_t ntids = bench_tids(tids, 256);
    double c0 = bench_cpu_s(), c1 = 0, w0 = bench_tid_cpu_s(writer), w1 = 0, p1 = 0, pq1 = 0;
    int64_t t0 = util_mono_us(), tc = 0, t1 = 0, t2 = 0;
    outbox *ob = outbox_start(s, &oo, err, sizeof err);
    if (!ob)
        bench_die(PROG, "outbox_start: %s", err);
    int publisher = bench_new_tid(tids, ntids);
    int64_t deadline = t0 + (int64_t)TIMEOUT_S * 1000000;
    outbox_stats st;
    for (;;) {
        outbox_get_stats(ob, &st);
        int64_t now = util_mono_us();
        if (!tc && st.connected)
            tc = now;
        if (st.confirmed >= o->rows) {
            t1 = now;
            c1 = bench_cpu_s();
            w1 = bench_tid_cpu_s(writer);
            p1 = bench_tid_sched_s(publisher, &pq1);
            break;
        }
        if (st.nacks || st.reconnects || (!st.connected && st.last_error[0]))
            bench_die(PROG, "publisher failed (nacks %llu, reconnects %llu): %s",
                      (unsigned long long)st.nacks, (unsigned long long)st.reconnects,
                      st.last_error);
        if (now > deadline)
            bench_die(PROG, "timed out after %d s with %llu of %llu confirmed", TIMEOUT_S,
                      (unsigned long long)st.confirmed, (unsigned long long)o->rows);
        nap_us(1000);
    }
    while (outbox_depth(s) > 0) {
        if (util_mono_us() > deadline)
            bench_die(PROG, "the outbox did not empty within %d s", TIMEOUT_S);
        nap_us(1000);
    }
    t2 = util_mono_us();
    outbox_stop(ob);
    if (!tc)
        tc = t0;
    store_close(s);
    pthread_cond_destroy(&fl.cond);
    pthread_mutex_destroy(&fl.mu);
    if (o->sink)
        sink_check(o->url, o->sink, o->rows);

    double sec = secs(t0, t1);
    printf("{\"mode\":\"restspy\",\"rows\":%llu,\"seconds\":%.6f,\"rows_per_s\":%.1f,"
           "\"seconds_after_connect\":%.6f,\"rows_per_s_after_connect\":%.1f,"
           "\"seconds_outbox_empty\":%.6f,\"in_flight\":%llu,\"published\":%llu,"
           "\"confirmed\":%llu,\"fill_seconds\":%.3f,\"cpu_seconds\":%.6f,\"cpu_us_per_row\":%.3f,"
           "\"publisher_cpu_us_per_row\":%.3f,\"publisher_runq_seconds\":%.6f,"
           "\"writer_cpu_us_per_row\":%.3f,"
           "\"body_bytes\":%zu,\"sink_queue\":%s}\n",
           (unsigned long long)o->rows, sec, (double)o->rows / sec, secs(tc, t1),
           (double)o->rows / secs(tc, t1), secs(t0, t2), (unsigned long long)o->in_flight,
           (unsigned long long)st.published, (unsigned long long)st.confirmed, fill_s, c1 - c0,
           (c1 - c0) * 1e6 / (double)o->rows, p1 * 1e6 / (double)o->rows, pq1,
           (w1 - w0) * 1e6 / (double)o->rows, body_len, o->sink ? "true" : "false");
}

int main(int argc, char **argv)
{
    opts o = {.rows = 100000, .in_flight = 256, .secret = "bench-secret"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--mode") == 0)
            o.mode = bench_arg(PROG, argc, argv, &i);
        else if (strcmp(a, "--amqp") == 0)
            o.url = bench_arg(PROG, argc, argv, &i);
        else if (strcmp(a, "--db") == 0)
            o.db = bench_arg(PROG, argc, argv, &i);
        else if (strcmp(a, "--sink-queue") == 0)
            o.sink = bench_arg(PROG, argc, argv, &i);
        else if (strcmp(a, "--secret") == 0)
            o.secret = bench_arg(PROG, argc, argv, &i);
        else if (strcmp(a, "--rows") == 0)
            o.rows = bench_num(PROG, a, bench_arg(PROG, argc, argv, &i), 1, 100000000);
        else if (strcmp(a, "--in-flight") == 0)
            o.in_flight = bench_num(PROG, a, bench_arg(PROG, argc, argv, &i), 1, 65535);
        else if (strcmp(a, "--pause-ms") == 0)
            o.pause_ms = bench_num(PROG, a, bench_arg(PROG, argc, argv, &i), 0, 600000);
        else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            usage();
        else
            bench_die(PROG, "unknown option %s (see --help)", a);
    }
    if (!o.mode || !o.url)
        bench_die(PROG, "--mode and --amqp are required (see --help)");
    if (o.sink && !*o.sink)
        bench_die(PROG, "--sink-queue needs a queue name");
    if (strcmp(o.mode, "restspy") == 0) {
        if (!o.sink)
            bench_die(PROG, "--mode restspy needs --sink-queue: restspy publishes mandatory, "
                            "and a message no queue takes stays in the outbox");
        run_restspy(&o);
    } else if (strcmp(o.mode, "plain") == 0) {
        config *c = config_new();
        unsigned hb = (unsigned)(c->amqp_heartbeat_ms / 1000);
        config_unref(c);
        run_plain(&o, hb);
    } else {
        bench_die(PROG, "--mode must be restspy or plain, not '%s'", o.mode);
    }
    return 0;
}
