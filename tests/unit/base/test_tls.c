/* tls: a real TLS server and client, both made of tls_conn filters over
 * libuv TCP handles on one loop, with a self-signed certificate the openssl
 * command makes at test time. Checks the handshake, data both ways (a large
 * write too), close_notify, the plain-HTTP detection, verification failures
 * and their messages, and the start-time checks of tls_server_new. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/buf.h"
#include "base/tls.h"

static char g_dir[64];
static char g_cert[128], g_key[128], g_key2[128];

/* One side of a connection: its handle, its filter, what it received. */
typedef struct side {
    uv_tcp_t tcp;
    tls_conn *tls;
    buf got;
    int last_rc; /* of tls_conn_feed */
    char err[256];
    bool eof;
} side;

typedef struct pair {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_connect_t creq;
    side srv, cli;
    tls_server *ts;
    tls_client *tc;
    const char *plain_first; /* the client sends these bytes raw instead of TLS */
    int handles;
} pair;

static char readbuf[64 * 1024];

static void on_alloc(uv_handle_t *h, size_t n, uv_buf_t *b)
{
    (void)h, (void)n;
    *b = uv_buf_init(readbuf, sizeof readbuf);
}

static int on_plain(void *ud, const char *data, size_t len)
{
    side *s = ud;
    buf_append(&s->got, data, len);
    return 0;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    side *s = st->data;
    if (n < 0) {
        s->eof = true;
        uv_read_stop(st);
        return;
    }
    if (n == 0 || !s->tls)
        return;
    s->last_rc = tls_conn_feed(s->tls, b->base, (size_t)n, on_plain, s, s->err, sizeof s->err);
    if (s->last_rc != TLS_OK)
        uv_read_stop(st);
}

static void on_accept(uv_stream_t *l, int status)
{
    pair *p = l->data;
    assert_int_equal(status, 0);
    uv_tcp_init(&p->loop, &p->srv.tcp);
    p->srv.tcp.data = &p->srv;
    p->handles++;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&p->srv.tcp), 0);
    p->srv.tls = tls_conn_server(p->ts, (uv_stream_t *)&p->srv.tcp);
    uv_read_start((uv_stream_t *)&p->srv.tcp, on_alloc, on_read);
}

static void on_connect(uv_connect_t *req, int status)
{
    pair *p = req->data;
    assert_int_equal(status, 0);
    if (p->plain_first) {
        uv_buf_t b = uv_buf_init((char *)p->plain_first, (unsigned)strlen(p->plain_first));
        assert_int_equal(io_write((uv_stream_t *)&p->cli.tcp, &b, 1, NULL), 0);
    } else {
        p->cli.tls = tls_conn_client(p->tc, (uv_stream_t *)&p->cli.tcp);
    }
    uv_read_start((uv_stream_t *)&p->cli.tcp, on_alloc, on_read);
}

/* Runs the loop until pred holds (or 5 s of loop turns). */
static bool run_until(pair *p, bool (*pred)(pair *))
{
    for (int i = 0; i < 5000 && !pred(p); i++) {
        uv_run(&p->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    return pred(p);
}

static bool both_ready(pair *p)
{
    return p->srv.tls && p->cli.tls && tls_conn_ready(p->srv.tls) && tls_conn_ready(p->cli.tls);
}

static void pair_start(pair *p, const tls_client_opts *co, const char *plain_first)
{
    memset(p, 0, sizeof *p);
    char err[256] = "";
    char *certs[] = {g_cert}, *keys[] = {g_key};
    p->ts = tls_server_new(certs, 1, keys, 1, err, sizeof err);
    assert_non_null(p->ts);
    if (co) {
        p->tc = tls_client_new(co, err, sizeof err);
        assert_non_null(p->tc);
    }
    p->plain_first = plain_first;
    uv_loop_init(&p->loop);
    uv_tcp_init(&p->loop, &p->listener);
    p->listener.data = p;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&p->listener, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&p->listener, 4, on_accept), 0);
    int len = sizeof a;
    uv_tcp_getsockname(&p->listener, (struct sockaddr *)&a, &len);
    uv_tcp_init(&p->loop, &p->cli.tcp);
    p->cli.tcp.data = &p->cli;
    p->creq.data = p;
    assert_int_equal(uv_tcp_connect(&p->creq, &p->cli.tcp, (const struct sockaddr *)&a, on_connect),
                     0);
}

static void pair_free(pair *p)
{
    uv_close((uv_handle_t *)&p->listener, NULL);
    uv_close((uv_handle_t *)&p->cli.tcp, NULL);
    if (p->handles)
        uv_close((uv_handle_t *)&p->srv.tcp, NULL);
    uv_run(&p->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&p->loop), 0);
    tls_conn_free(p->srv.tls);
    tls_conn_free(p->cli.tls);
    tls_server_unref(p->ts);
    tls_client_free(p->tc);
    buf_free(&p->srv.got);
    buf_free(&p->cli.got);
}

static size_t g_want;
static bool srv_has_all(pair *p)
{
    return p->srv.got.len >= g_want;
}
static bool cli_has_all(pair *p)
{
    return p->cli.got.len >= g_want;
}
static bool cli_closed(pair *p)
{
    return p->cli.last_rc == TLS_CLOSED;
}

static void test_handshake_and_data(void **state)
{
    (void)state;
    pair p;
    tls_client_opts co = {.ca_file = g_cert, .name = "localhost"};
    pair_start(&p, &co, NULL);
    assert_true(run_until(&p, both_ready));
    assert_false(tls_conn_resumed(p.cli.tls));

    /* client -> server: several pieces become one record's plaintext */
    uv_buf_t parts[] = {uv_buf_init("GET / HTTP/1.1\r\n", 16), uv_buf_init("Host: x\r\n\r\n", 11)};
    assert_int_equal(tls_conn_write(p.cli.tls, parts, 2, NULL), 0);
    g_want = 27;
    assert_true(run_until(&p, srv_has_all));
    assert_memory_equal(p.srv.got.data, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);

    /* server -> client: 1 MiB in one call (many records), then a small one
     * after the write buffer was replaced */
    size_t big = 1024 * 1024;
    char *data = malloc(big);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)('a' + i % 26);
    uv_buf_t b = uv_buf_init(data, (unsigned)big);
    assert_int_equal(tls_conn_write(p.srv.tls, &b, 1, NULL), 0);
    uv_buf_t tail = uv_buf_init("END", 3);
    assert_int_equal(tls_conn_write(p.srv.tls, &tail, 1, NULL), 0);
    g_want = big + 3;
    assert_true(run_until(&p, cli_has_all));
    assert_memory_equal(p.cli.got.data, data, big);
    assert_memory_equal(p.cli.got.data + big, "END", 3);
    free(data);

    /* close_notify reaches the client as TLS_CLOSED */
    tls_conn_close_notify(p.srv.tls);
    assert_true(run_until(&p, cli_closed));
    pair_free(&p);
}

static bool cli_failed(pair *p)
{
    return p->cli.last_rc == TLS_ERROR;
}

static void test_verify_failures(void **state)
{
    (void)state;
    pair p;
    /* the self-signed certificate is in no system store */
    tls_client_opts untrusted = {.name = "localhost"};
    pair_start(&p, &untrusted, NULL);
    assert_true(run_until(&p, cli_failed));
    assert_string_equal(p.cli.err, "certificate verify failed: self-signed certificate");
    pair_free(&p);

    tls_client_opts wrong = {.ca_file = g_cert, .name = "other.test"};
    pair_start(&p, &wrong, NULL);
    assert_true(run_until(&p, cli_failed));
    assert_string_equal(p.cli.err, "certificate verify failed: hostname mismatch");
    pair_free(&p);

    tls_client_opts ip = {.ca_file = g_cert, .name = "127.0.0.2"};
    pair_start(&p, &ip, NULL);
    assert_true(run_until(&p, cli_failed));
    assert_string_equal(p.cli.err, "certificate verify failed: IP address mismatch");
    pair_free(&p);

    /* insecure: anything goes */
    tls_client_opts insecure = {.insecure = true, .name = "other.test"};
    pair_start(&p, &insecure, NULL);
    assert_true(run_until(&p, both_ready));
    pair_free(&p);
}

static bool srv_refused(pair *p)
{
    return p->srv.last_rc == TLS_NOT_TLS;
}

static void test_plain_http_detected(void **state)
{
    (void)state;
    pair p;
    pair_start(&p, NULL, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(run_until(&p, srv_refused));
    pair_free(&p);
}

static void test_server_checks(void **state)
{
    (void)state;
    char err[256];
    char *certs[] = {g_cert}, *wrong[] = {g_key2}, *none[] = {NULL};
    assert_null(tls_server_new(certs, 1, wrong, 1, err, sizeof err));
    assert_non_null(strstr(err, "cannot load key"));
    assert_non_null(strstr(err, "key values mismatch"));
    char *missing[] = {"/nonexistent/cert.pem"};
    assert_null(tls_server_new(missing, 1, none, 0, err, sizeof err));
    assert_non_null(strstr(err, "cannot load certificate /nonexistent/cert.pem"));
    /* a key file is not a certificate */
    char *keyascert[] = {g_key};
    assert_null(tls_server_new(keyascert, 1, none, 0, err, sizeof err));
    assert_non_null(strstr(err, "no start line"));
    tls_client_opts co = {.ca_file = g_key, .name = "x"};
    assert_null(tls_client_new(&co, err, sizeof err));
    assert_non_null(strstr(err, "cannot load CA file"));
    /* a key in the certificate's file */
    char both[160];
    snprintf(both, sizeof both, "%s/both.pem", g_dir);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cat %s %s > %s", g_cert, g_key, both);
    assert_int_equal(system(cmd), 0);
    char *bothv[] = {both};
    tls_server *s = tls_server_new(bothv, 1, none, 0, err, sizeof err);
    assert_non_null(s);
    tls_server_unref(s);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/restspy-test-tls-XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    snprintf(g_cert, sizeof g_cert, "%s/cert.pem", g_dir);
    snprintf(g_key, sizeof g_key, "%s/key.pem", g_dir);
    snprintf(g_key2, sizeof g_key2, "%s/key2.pem", g_dir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
             "-keyout %s -out %s 2>/dev/null && "
             "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s 2>/dev/null",
             g_key, g_cert, g_key2);
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_and_data),
        cmocka_unit_test(test_verify_failures),
        cmocka_unit_test(test_plain_http_detected),
        cmocka_unit_test(test_server_checks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
