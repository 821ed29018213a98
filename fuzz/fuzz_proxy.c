/* fuzz_proxy: restspy's proxy on one event loop, between a client and an
 * upstream whose bytes both come from the fuzzer: request parsing, the head
 * checks, chunked bodies both ways (their pieces split at every position),
 * response parsing, content decoding, redaction and the JSON log line (to
 * /dev/null), all under ASan and UBSan.
 *
 * Input: byte 0 sets the size of the client's writes (1 to 64 bytes, so
 * that framing is seen split across reads); the rest is the client's bytes,
 * then FUZZ_SEP, then the upstream's answer (a plain 200 when there is no
 * separator). The client half-closes after its bytes and the upstream closes
 * after its answer, so every run ends within the short timeouts set below. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "capture/config.h"
#include "capture/logsink.h"
#include "proxy/proxy.h"
#include "pipeline/stats.h"
#include "proxy/upstream.h"
#include "base/util.h"

#define FUZZ_SEP "\n@@@\n"
#define DEFAULT_ANSWER "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
#define RUN_LIMIT_MS 500 /* a run that has not ended by then is stopped */

typedef struct fuzz_run {
    uv_loop_t loop;
    proxy_worker pw;
    char readbuf[64 * 1024];
    uv_tcp_t listener, up_listener, client, up_side;
    uv_timer_t limit;
    uv_connect_t creq;
    uv_write_t wreq[64];
    uv_shutdown_t sreq, up_sreq;
    const uint8_t *cdata, *udata;
    size_t clen, ulen, piece, sent;
    bool up_accepted, up_answered, client_done;
} fuzz_run;

static proxy_shared g_sh;
static char g_ubuf[64 * 1024];

static void on_nop_close(uv_handle_t *h)
{
    (void)h;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)h;
    (void)suggested;
    *b = uv_buf_init(g_ubuf, sizeof g_ubuf);
}

/* ---- the upstream: answers once it has read anything, then closes ---- */

static void on_up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    fuzz_run *f = s->data;
    if (n < 0 || f->up_answered) {
        if (n < 0 && !uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, on_nop_close);
        return;
    }
    f->up_answered = true;
    uv_buf_t ans = uv_buf_init((char *)f->udata, (unsigned)f->ulen);
    uv_try_write(s, &ans, 1);
    uv_shutdown(&f->up_sreq, s, NULL);
}

static void on_up_conn(uv_stream_t *server, int status)
{
    fuzz_run *f = server->data;
    if (status < 0 || f->up_accepted)
        return;
    uv_tcp_init(&f->loop, &f->up_side);
    f->up_side.data = f;
    if (uv_accept(server, (uv_stream_t *)&f->up_side) == 0) {
        f->up_accepted = true;
        uv_read_start((uv_stream_t *)&f->up_side, on_alloc, on_up_read);
    } else {
        uv_close((uv_handle_t *)&f->up_side, on_nop_close);
    }
}

/* ---- the client: writes its bytes in pieces, half-closes, reads to EOF ---- */

static void client_end(fuzz_run *f)
{
    if (f->client_done)
        return;
    f->client_done = true;
    uv_close((uv_handle_t *)&f->client, on_nop_close);
    proxy_drain(&f->pw);
}

static void on_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    if (n < 0)
        client_end(s->data);
}

static void on_connected(uv_connect_t *req, int status)
{
    fuzz_run *f = req->data;
    if (status < 0) {
        client_end(f);
        return;
    }
    unsigned k = 0;
    for (size_t off = 0; off < f->clen && k < 63; off += f->piece, k++) {
        size_t n = f->clen - off < f->piece ? f->clen - off : f->piece;
        if (k == 62)
            n = f->clen - off; /* the rest in one write */
        uv_buf_t b = uv_buf_init((char *)f->cdata + off, (unsigned)n);
        uv_write(&f->wreq[k], (uv_stream_t *)&f->client, &b, 1, NULL);
        if (k == 62)
            break;
    }
    uv_shutdown(&f->sreq, (uv_stream_t *)&f->client, NULL);
    uv_read_start((uv_stream_t *)&f->client, on_alloc, on_client_read);
}

static void on_proxy_conn(uv_stream_t *server, int status)
{
    fuzz_run *f = server->data;
    if (status == 0)
        proxy_accept(&f->pw, server);
}

static void on_limit(uv_timer_t *t)
{
    fuzz_run *f = t->data;
    client_end(f);
    proxy_abort_all(&f->pw);
}

static void on_pool_closed(void *ud)
{
    (void)ud;
}

/* Closes the handles the harness made; the proxy and the pool close theirs
 * (closing another owner's handle races with its own close: a connect that
 * completes after it closes the handle a second time). */
static void close_own(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, on_nop_close);
}

static int listen_any(uv_loop_t *loop, uv_tcp_t *t, void *data, uv_connection_cb cb,
                      struct sockaddr_storage *bound)
{
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(loop, t);
    t->data = data;
    int len = sizeof *bound;
    if (uv_tcp_bind(t, (const struct sockaddr *)&a, 0) < 0 ||
        uv_listen((uv_stream_t *)t, 8, cb) < 0 ||
        uv_tcp_getsockname(t, (struct sockaddr *)bound, &len) < 0)
        return -1;
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    char err[256];
    config *cfg = config_new();
    /* Short limits so that every run ends fast; small caps so that the
     * capture and decoding limits are reached. */
    const char *set[][2] = {
        {"header_timeout", "100ms"},
        {"client_timeout", "100ms"},
        {"idle_timeout", "100ms"},
        {"upstream_timeout", "200ms"},
        {"upstream_header_timeout", "200ms"},
        {"upstream_connect_timeout", "200ms"},
        {"req_body_cap", "4K"},
        {"resp_body_cap", "4K"},
        {"max_header_size", "8K"},
        {"max_upstream_header_size", "8K"},
        {"log_bodies", "on"},
        {"store", "off"},
    };
    for (size_t i = 0; i < sizeof set / sizeof set[0]; i++)
        if (config_set(cfg, set[i][0], set[i][1], err, sizeof err) < 0)
            abort();
    pthread_mutex_init(&g_sh.cfg_lock, NULL);
    g_sh.pl.log = logsink_open("/dev/null", LOG_FORMAT_JSON,
                               RECORD_JSON_HEADERS | RECORD_JSON_BODIES, err, sizeof err);
    if (!g_sh.pl.log)
        abort();
    snprintf(g_sh.upstream_host, sizeof g_sh.upstream_host, "upstream.test");
    atomic_store(&g_flags.log, true);
    proxy_shared_set_config(&g_sh, cfg, NULL);
    config_unref(cfg);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    fuzz_run *f = xcalloc(1, sizeof *f);
    f->piece = (size_t)(data[0] % 64) + 1;
    data++;
    size--;
    const uint8_t *sep = memmem(data, size, FUZZ_SEP, sizeof FUZZ_SEP - 1);
    f->cdata = data;
    f->clen = sep ? (size_t)(sep - data) : size;
    f->udata = sep ? sep + sizeof FUZZ_SEP - 1 : (const uint8_t *)DEFAULT_ANSWER;
    f->ulen = sep ? size - f->clen - (sizeof FUZZ_SEP - 1) : sizeof DEFAULT_ANSWER - 1;

    uv_loop_init(&f->loop);
    struct sockaddr_storage up_addr, proxy_addr;
    if (listen_any(&f->loop, &f->up_listener, f, on_up_conn, &up_addr) < 0 ||
        listen_any(&f->loop, &f->listener, f, on_proxy_conn, &proxy_addr) < 0)
        abort();
    g_sh.upstream_addr = up_addr;
    f->pw.loop = &f->loop;
    f->pw.sh = &g_sh;
    f->pw.readbuf = f->readbuf;
    f->pw.readbuf_len = sizeof f->readbuf;
    f->pw.pool = upstream_pool_new(&f->loop, (const struct sockaddr *)&up_addr, 4, 200, 100, NULL,
                                   f->readbuf, sizeof f->readbuf);
    proxy_worker_init(&f->pw);

    uv_tcp_init(&f->loop, &f->client);
    f->client.data = f;
    f->creq.data = f;
    uv_tcp_connect(&f->creq, &f->client, (const struct sockaddr *)&proxy_addr, on_connected);
    uv_timer_init(&f->loop, &f->limit);
    f->limit.data = f;
    uv_timer_start(&f->limit, on_limit, RUN_LIMIT_MS, 0);

    /* Until the client has its answer (or gave up) and the proxy's
     * connection is gone. */
    while (uv_run(&f->loop, UV_RUN_ONCE) && (!f->client_done || f->pw.nconns))
        ;
    proxy_worker_close(&f->pw);
    upstream_pool_close(f->pw.pool, on_pool_closed, NULL);
    close_own((uv_handle_t *)&f->listener);
    close_own((uv_handle_t *)&f->up_listener);
    close_own((uv_handle_t *)&f->limit);
    close_own((uv_handle_t *)&f->client);
    if (f->up_accepted)
        close_own((uv_handle_t *)&f->up_side);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    /* Every handle is closed now: one left open is a leak of the proxy's. */
    if (uv_loop_close(&f->loop) != 0)
        abort();
    config_unref(f->pw.cfg);
    free(f);
    return 0;
}
