/* Unit tests for replay against an in-test HTTP server thread on
 * 127.0.0.1:0 that echoes every request as JSON (method, target, headers,
 * body) and misbehaves on chosen paths: chunked and close-delimited answers,
 * interim 100, a close without answer, a connection that dies on its second
 * request, an answer that never comes, garbage, delayed answers, and a server
 * that dies after N answers. Every run is bounded by timeout_ms, so a hang
 * fails the test instead of blocking it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http/coding.h"
#include "capture/record.h"
#include "replay/replay.h"
#include "base/util.h"

/* ------------------------------------------------------------------ */
/* the echo server                                                     */

#define SRV_MAXC 64
#define SRV_MAXREQ 2048

typedef struct sconn {
    int fd; /* -1 when free */
    int id;
    buf in;
    int nreq;    /* requests seen on this connection */
    bool hold;   /* never answer again (/sleep) */
    int64_t due; /* delayed answer: mono ms, 0 none */
    buf out;     /* the delayed answer */
    bool close_after;
    int req_no; /* index in srv.reqs of the delayed request */
} sconn;

typedef struct srv_req {
    char target[256];
    int conn_id;
    int64_t t_arrive, t_answer; /* mono µs */
} srv_req;

typedef struct srv {
    int lfd, port;
    int wake[2];
    pthread_t th;
    int die_after; /* answers before the server closes everything (0: never) */
    pthread_mutex_t mu;
    int accepted;
    int nreqs;
    int answered;
    srv_req reqs[SRV_MAXREQ];
    sconn c[SRV_MAXC];
} srv;

static int64_t mono_ms(void)
{
    return util_mono_us() / 1000;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void sconn_close(sconn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    buf_free(&c->in);
    buf_free(&c->out);
}

static void answer_now(srv *s, sconn *c, int req_no)
{
    write_all(c->fd, c->out.data, c->out.len);
    buf_reset(&c->out);
    c->due = 0;
    pthread_mutex_lock(&s->mu);
    s->reqs[req_no].t_answer = util_mono_us();
    s->answered++;
    pthread_mutex_unlock(&s->mu);
    if (c->close_after)
        sconn_close(c);
}

/* Handles the complete request in c->in[0..hlen+blen); returns false when the
 * connection was closed. */
static bool handle(srv *s, sconn *c, size_t hlen, size_t blen)
{
    char *head = c->in.data;
    char method[16] = "", target[256] = "";
    sscanf(head, "%15s %255s", method, target);
    c->nreq++;
    pthread_mutex_lock(&s->mu);
    int req_no = s->nreqs < SRV_MAXREQ ? s->nreqs++ : SRV_MAXREQ - 1;
    srv_req *q = &s->reqs[req_no];
    snprintf(q->target, sizeof q->target, "%s", target);
    q->conn_id = c->id;
    q->t_arrive = util_mono_us();
    pthread_mutex_unlock(&s->mu);

    json_t *hdrs = json_array();
    char *line = strstr(head, "\r\n") + 2;
    while (line < head + hlen - 2) {
        char *eol = strstr(line, "\r\n");
        char *colon = memchr(line, ':', (size_t)(eol - line));
        if (colon) {
            char *v = colon + 1;
            while (*v == ' ')
                v++;
            json_array_append_new(
                hdrs, json_pack("[s#s#]", line, (int)(colon - line), v, (int)(eol - v)));
        }
        line = eol + 2;
    }
    /* A compressed request body is echoed decoded (as received when it is
     * not gzip after all), with its size on the wire. */
    buf dec = BUF_INIT;
    const char *ce = strcasestr(head, "\r\ncontent-encoding: gzip");
    if (!ce || ce > head + hlen ||
        coding_decode("gzip", head + hlen, blen, 1 << 20, &dec, NULL, 0) != CODING_OK) {
        buf_reset(&dec);
        buf_append(&dec, head + hlen, blen);
    }
    json_t *o = json_pack("{sssssoss#si}", "method", method, "target", target, "headers", hdrs,
                          "body", dec.data ? dec.data : "", (int)dec.len, "wire", (int)blen);
    buf_free(&dec);
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    size_t bl = strlen(body);
    bool head_req = strcmp(method, "HEAD") == 0;
    buf_reset(&c->out);
    c->close_after = false;

    if (strncmp(target, "/close", 6) == 0) {
        free(body);
        sconn_close(c);
        return false;
    }
    if (strncmp(target, "/flaky", 6) == 0 && c->nreq > 1) {
        free(body);
        sconn_close(c);
        return false;
    }
    if (strncmp(target, "/sleep", 6) == 0) {
        free(body);
        c->hold = true;
        return true;
    }
    if (strncmp(target, "/garbage", 8) == 0) {
        buf_append_str(&c->out, "HELLO THERE\r\n\r\n");
        c->close_after = true;
    } else if (strncmp(target, "/chunked", 8) == 0) {
        size_t half = bl / 2;
        buf_appendf(&c->out, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n");
        buf_appendf(&c->out, "%zx\r\n%.*s\r\n%zx\r\n%s\r\n0\r\n\r\n", half, (int)half, body,
                    bl - half, body + half);
    } else if (strncmp(target, "/gzip", 5) == 0 || strncmp(target, "/badgzip", 8) == 0) {
        buf z = BUF_INIT;
        if (target[1] == 'g')
            assert_int_equal(coding_encode("gzip", body, bl, &z, NULL, 0), 0);
        else
            buf_append_str(&z, "not gzip");
        buf_appendf(&c->out,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    "Content-Encoding: gzip\r\nContent-Length: %zu\r\n\r\n",
                    z.len);
        buf_append(&c->out, z.data, z.len);
        buf_free(&z);
    } else if (strncmp(target, "/eofbody", 8) == 0) {
        buf_appendf(&c->out, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n%s", body);
        c->close_after = true;
    } else {
        int status = 200;
        if (strncmp(target, "/status/", 8) == 0)
            status = atoi(target + 8);
        if (strncmp(target, "/interim", 8) == 0)
            buf_append_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
        bool cclose = strncmp(target, "/conn-close", 11) == 0;
        buf_appendf(&c->out,
                    "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nX-Conn: %d\r\n"
                    "%sContent-Length: %zu\r\n\r\n",
                    status, c->id, cclose ? "Connection: close\r\n" : "", bl);
        if (!head_req)
            buf_append(&c->out, body, bl);
        c->close_after = cclose;
    }
    free(body);
    const char *d = strstr(target, "delay=");
    if (d) {
        c->due = mono_ms() + atoi(d + 6);
        c->req_no = req_no;
        return true;
    }
    int fd_before = c->fd;
    answer_now(s, c, req_no);
    return c->fd == fd_before && c->fd >= 0;
}

/* Parses as many complete requests as c->in holds. */
static void process(srv *s, sconn *c)
{
    while (c->fd >= 0 && !c->hold && !c->due) {
        char *e = c->in.len ? strstr(c->in.data, "\r\n\r\n") : NULL;
        if (!e)
            return;
        size_t hlen = (size_t)(e + 4 - c->in.data);
        size_t blen = 0;
        char *cl = strcasestr(c->in.data, "\r\ncontent-length:");
        if (cl && cl < e)
            blen = (size_t)atol(cl + 17);
        if (c->in.len < hlen + blen)
            return;
        if (!handle(s, c, hlen, blen))
            return;
        memmove(c->in.data, c->in.data + hlen + blen, c->in.len - hlen - blen);
        c->in.len -= hlen + blen;
        c->in.data[c->in.len] = '\0';
    }
}

static bool srv_dying(srv *s)
{
    pthread_mutex_lock(&s->mu);
    bool d = s->die_after && s->answered >= s->die_after;
    pthread_mutex_unlock(&s->mu);
    return d;
}

static void *srv_main(void *arg)
{
    srv *s = arg;
    for (;;) {
        struct pollfd p[SRV_MAXC + 2];
        int idx[SRV_MAXC + 2];
        int n = 0;
        p[n].fd = s->wake[0];
        p[n++].events = POLLIN;
        p[n].fd = s->lfd;
        p[n++].events = POLLIN;
        int64_t now = mono_ms(), tmo = 1000;
        for (int i = 0; i < SRV_MAXC; i++) {
            if (s->c[i].fd < 0)
                continue;
            if (s->c[i].due && s->c[i].due - now < tmo)
                tmo = s->c[i].due - now < 0 ? 0 : s->c[i].due - now;
            idx[n] = i;
            p[n].fd = s->c[i].fd;
            p[n++].events = POLLIN;
        }
        poll(p, (nfds_t)n, (int)tmo);
        if (p[0].revents)
            break;
        if (p[1].revents & POLLIN) {
            int fd = accept(s->lfd, NULL, NULL);
            if (fd >= 0) {
                int i = 0;
                while (i < SRV_MAXC && s->c[i].fd >= 0)
                    i++;
                if (i == SRV_MAXC) {
                    close(fd);
                } else {
                    pthread_mutex_lock(&s->mu);
                    s->c[i].id = s->accepted++;
                    pthread_mutex_unlock(&s->mu);
                    s->c[i].fd = fd;
                    s->c[i].nreq = 0;
                    s->c[i].hold = false;
                    s->c[i].due = 0;
                }
            }
        }
        for (int k = 2; k < n; k++) {
            sconn *c = &s->c[idx[k]];
            if (c->fd < 0 || !(p[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char tmp[8192];
            ssize_t r = read(c->fd, tmp, sizeof tmp);
            if (r <= 0) {
                sconn_close(c);
                continue;
            }
            buf_append(&c->in, tmp, (size_t)r);
            process(s, c);
        }
        now = mono_ms();
        for (int i = 0; i < SRV_MAXC; i++) {
            sconn *c = &s->c[i];
            if (c->fd >= 0 && c->due && c->due <= now) {
                answer_now(s, c, c->req_no);
                process(s, c);
            }
        }
        if (srv_dying(s))
            break;
    }
    /* Dying or stopping: every socket goes, the listener too. */
    for (int i = 0; i < SRV_MAXC; i++)
        sconn_close(&s->c[i]);
    close(s->lfd);
    s->lfd = -1;
    return NULL;
}

static int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 128) < 0)
        return -1;
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return fd;
}

static srv *srv_start(int die_after)
{
    srv *s = calloc(1, sizeof *s);
    s->lfd = listen_any(&s->port);
    assert_true(s->lfd >= 0);
    assert_int_equal(pipe(s->wake), 0);
    s->die_after = die_after;
    pthread_mutex_init(&s->mu, NULL);
    for (int i = 0; i < SRV_MAXC; i++)
        s->c[i].fd = -1;
    pthread_create(&s->th, NULL, srv_main, s);
    return s;
}

static void srv_stop(srv *s)
{
    assert_int_equal(write(s->wake[1], "x", 1), 1);
    pthread_join(s->th, NULL);
    close(s->wake[0]);
    close(s->wake[1]);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ------------------------------------------------------------------ */
/* cases and answers                                                   */

static record *mk(const char *method, const char *path, const char *query, const char *client,
                  int64_t at_us)
{
    record *r = record_new();
    r->method = xstrdup(method);
    r->path = xstrdup(path);
    r->query = query ? xstrdup(query) : NULL;
    r->client_addr = xstrdup(client ? client : "10.0.0.1:5000");
    r->started_at_us = at_us;
    r->status = 200;
    return r;
}

static void hdr(http_headers *h, const char *n, const char *v)
{
    http_headers_add(h, n, strlen(n), v, strlen(v));
}

typedef struct got_t {
    int status;
    char *body;
    char *error;
    char *sent_path;
    size_t index;
    unsigned loop;
    int64_t latency;
    size_t nheaders;
    size_t nsubs;    /* correlate: values substituted */
    char *sent_resp; /* the recorded response body as handed over */
} got_t;

typedef struct col {
    got_t *v;
    size_t n, cap;
    unsigned *seen; /* callbacks per (loop, index) */
    size_t ncases;
    unsigned loops;
    uint64_t last_done, last_total;
    int progress_calls;
    int stop_after; /* call replay_stop after this many answers (0: never) */
    record **kept;  /* keep_odd: the answers of odd indexes, taken from replay */
} col;

static void on_answer(void *ud, replay_answer *a)
{
    col *c = ud;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->v = xrealloc(c->v, c->cap * sizeof *c->v);
    }
    got_t *g = &c->v[c->n++];
    memset(g, 0, sizeof *g);
    g->index = a->index;
    g->loop = a->loop;
    g->sent_path = xstrdup(a->sent->path);
    g->nsubs = a->nsubs;
    g->sent_resp =
        xstrndup(a->sent->resp_body.data ? a->sent->resp_body.data : "", a->sent->resp_body.len);
    if (a->error) {
        assert_null(a->got);
        g->error = xstrdup(a->error);
    } else {
        assert_non_null(a->got);
        g->status = a->got->status;
        g->body =
            xstrndup(a->got->resp_body.data ? a->got->resp_body.data : "", a->got->resp_body.len);
        g->latency = a->got->upstream_us;
        g->nheaders = a->got->resp_headers.len;
        if (c->kept && a->index % 2) {
            c->kept[a->index] = a->got; /* ours now */
            a->got = NULL;
        }
    }
    assert_true(a->index < c->ncases);
    assert_true(a->loop < c->loops);
    c->seen[a->loop * c->ncases + a->index]++;
    if (c->stop_after && (int)c->n == c->stop_after)
        replay_stop();
}

static void on_progress(void *ud, const replay_progress *p)
{
    col *c = ud;
    c->progress_calls++;
    c->last_done = p->done;
    c->last_total = p->total;
}

static void col_init(col *c, size_t ncases, unsigned loops)
{
    memset(c, 0, sizeof *c);
    c->ncases = ncases;
    c->loops = loops;
    c->seen = xcalloc(ncases * loops + 1, sizeof *c->seen);
}

static void col_free(col *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].body);
        free(c->v[i].error);
        free(c->v[i].sent_path);
        free(c->v[i].sent_resp);
    }
    free(c->v);
    free(c->seen);
}

static got_t *col_find(col *c, size_t index, unsigned loop)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i].index == index && c->v[i].loop == loop)
            return &c->v[i];
    return NULL;
}

static void free_cases(record **cs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        record_free(cs[i]);
}

static void target_of(char *t, size_t len, int port)
{
    snprintf(t, len, "http://127.0.0.1:%d", port);
}

static replay_opts base_opts(const char *target)
{
    replay_opts o;
    memset(&o, 0, sizeof o);
    o.target = target;
    o.concurrency = 4;
    o.loops = 1;
    o.timeout_ms = 3000;
    return o;
}

/* Runs and checks the promise: one callback per case and loop. */
static int64_t run_checked(const replay_opts *o, record **cs, size_t n, col *c)
{
    char err[200] = "";
    int64_t t0 = util_mono_us();
    int rc = replay_run(o, cs, n, on_answer, c, on_progress, c, err, sizeof err);
    int64_t el = util_mono_us() - t0;
    assert_int_equal(rc, 0);
    assert_int_equal(c->n, n * (o->loops ? o->loops : 1));
    for (size_t i = 0; i < n * c->loops; i++)
        assert_int_equal(c->seen[i], 1);
    assert_int_equal(c->last_done, c->last_total);
    assert_int_equal(c->last_total, n * c->loops);
    return el;
}

static json_t *echo_of(const got_t *g)
{
    assert_null(g->error);
    json_t *j = json_loads(g->body, 0, NULL);
    assert_non_null(j);
    return j;
}

/* Value of the echoed header name; NULL when absent; counts occurrences. */
static const char *echo_header(json_t *j, const char *name, int *count)
{
    const char *v = NULL;
    int n = 0;
    size_t i;
    json_t *h;
    json_array_foreach(json_object_get(j, "headers"), i, h)
    {
        if (strcasecmp(json_string_value(json_array_get(h, 0)), name) == 0) {
            v = json_string_value(json_array_get(h, 1));
            n++;
        }
    }
    if (count)
        *count = n;
    return v;
}

/* ------------------------------------------------------------------ */
/* tests                                                               */

static void test_basic_keepalive(void **state)
{
    (void)state;
    srv *s = srv_start(0);
    char t[64];
    target_of(t, sizeof t, s->port);
    enum { N = 40 };
    record *cs[N];
    for (int i = 0; i < N; i++) {
        char p[32];
        snprintf(p, sizeof p, "/items/%d", i);
        cs[i] = mk("GET", p, i % 2 ? "a=1&b=2" : NULL, NULL, 0);
    }
    replay_opts o = base_opts(t);
    col c;
    col_init(&c, N, 1);
    record *kept[N] = {0};
    c.kept = kept;
    run_checked(&o, cs, N, &c);
    for (int i = 0; i < N; i++) {
        if (i % 2) {
            /* A kept answer is whole and stays valid after the run. */
            assert_non_null(kept[i]);
            assert_int_equal(kept[i]->status, 200);
            assert_string_equal(http_headers_get(&kept[i]->resp_headers, "content-type"),
                                "application/json");
            assert_true(kept[i]->resp_body.len > 0);
            assert_int_equal(kept[i]->resp_body_size, kept[i]->resp_body.len);
            assert_true(kept[i]->started_at_us > 1600000000000000LL);
            assert_true(strstr(kept[i]->resp_body.data, "/items/") != NULL);
            record_free(kept[i]);
        }
        got_t *g = col_find(&c, (size_t)i, 0);
        assert_non_null(g);
        assert_int_equal(g->status, 200);
        assert_true(g->latency >= 0);
        /* Content-Type, X-Conn, Content-Length: nothing left over from the
         * answer before on the same connection. */
        assert_int_equal(g->nheaders, 3);
        json_t *j = echo_of(g);
        char want[64];
        snprintf(want, sizeof want, "/items/%d%s", i, i % 2 ? "?a=1&b=2" : "");
        assert_string_equal(json_string_value(json_object_get(j, "target")), want);
        assert_string_equal(json_string_value(json_object_get(j, "method")), "GET");
        assert_null(echo_header(j, "content-length", NULL)); /* GET without body */
        char host[64];
        snprintf(host, sizeof host, "127.0.0.1:%d", s->port);
        int hc;
        assert_string_equal(echo_header(j, "host", &hc), host);
        assert_int_equal(hc, 1);
        json_decref(j);
    }
    assert_true(s->accepted >= 1);
    assert_true(s->accepted <= 4); /* keep-alive: one socket per connection slot */
    col_free(&c);
    free_cases(cs, N);
    srv_stop(s);
}

static void test_headers_rewrites_bodies(void **state)
{
    (void)state;
    srv *s = srv_start(0);
    char t[64];
    target_of(t, sizeof t, s->port);
    record *cs[3];
    cs[0] = mk("POST", "/api/items", "x=1", NULL, 0);
    hdr(&cs[0]->req_headers, "Host", "recorded.example");
    hdr(&cs[0]->req_headers, "Authorization", "Bearer old");
    hdr(&cs[0]->req_headers, "X-Drop", "1");
    hdr(&cs[0]->req_headers, "Connection", "keep-alive, X-Hop");
    hdr(&cs[0]->req_headers, "X-Hop", "1");
    hdr(&cs[0]->req_headers, "Transfer-Encoding", "chunked");
    hdr(&cs[0]->req_headers, "Content-Length", "999");
    hdr(&cs[0]->req_headers, "Accept", "*/*");
    hdr(&cs[0]->req_headers, "Content-Type", "application/json");
    hdr(&cs[0]->req_headers, "X-Evil", "a\r\nX-Injected: 1"); /* from a crafted file */
    hdr(&cs[0]->req_headers, "Bad Name", "1");
    buf_append_str(&cs[0]->req_body, "{\"name\":\"x\"}");
    cs[0]->req_body_size = cs[0]->req_body.len;
    cs[1] = mk("PUT", "/api", NULL, NULL, 0); /* empty body: Content-Length: 0 */
    cs[2] = mk("DELETE", "/other/api/x", NULL, NULL, 0);

    http_headers set = {0};
    hdr(&set, "Authorization", "Bearer new");
    hdr(&set, "X-Extra", "yes");
    char *drop[] = {"x-drop", NULL};
    replay_rewrite rw[] = {{"/api/", "/v2/"}, {"/api", "/v1"}};
    replay_opts o = base_opts(t);
    o.set_headers = &set;
    o.drop_headers = drop;
    o.rewrites = rw;
    o.nrewrites = 2;
    col c;
    col_init(&c, 3, 1);
    run_checked(&o, cs, 3, &c);

    got_t *g = col_find(&c, 0, 0);
    assert_string_equal(g->sent_path, "/v2/items");
    json_t *j = echo_of(g);
    assert_string_equal(json_string_value(json_object_get(j, "method")), "POST");
    assert_string_equal(json_string_value(json_object_get(j, "target")), "/v2/items?x=1");
    assert_string_equal(json_string_value(json_object_get(j, "body")), "{\"name\":\"x\"}");
    int n;
    assert_string_equal(echo_header(j, "authorization", &n), "Bearer new");
    assert_int_equal(n, 1);
    assert_string_equal(echo_header(j, "x-extra", NULL), "yes");
    assert_null(echo_header(j, "x-drop", NULL));
    assert_null(echo_header(j, "x-hop", NULL));
    assert_null(echo_header(j, "connection", NULL));
    assert_null(echo_header(j, "transfer-encoding", NULL));
    assert_string_equal(echo_header(j, "content-length", &n), "12");
    assert_int_equal(n, 1);
    assert_string_equal(echo_header(j, "accept", NULL), "*/*");
    assert_null(echo_header(j, "x-evil", NULL));
    assert_null(echo_header(j, "x-injected", NULL));
    assert_null(echo_header(j, "bad name", NULL));
    assert_string_equal(echo_header(j, "content-type", NULL), "application/json");
    char host[64];
    snprintf(host, sizeof host, "127.0.0.1:%d", s->port);
    assert_string_equal(echo_header(j, "host", &n), host);
    assert_int_equal(n, 1);
    json_decref(j);

    g = col_find(&c, 1, 0);
    assert_string_equal(g->sent_path, "/v1");
    j = echo_of(g);
    assert_string_equal(json_string_value(json_object_get(j, "target")), "/v1");
    assert_string_equal(echo_header(j, "content-length", NULL), "0");
    json_decref(j);

    g = col_find(&c, 2, 0);
    assert_string_equal(g->sent_path, "/other/api/x"); /* prefixes only */
    j = echo_of(g);
    assert_string_equal(json_string_value(json_object_get(j, "target")), "/other/api/x");
    json_decref(j);

    /* The caller's cases are untouched. */
    assert_string_equal(cs[0]->path, "/api/items");
    assert_string_equal(http_headers_get(&cs[0]->req_headers, "authorization"), "Bearer old");
    http_headers_free(&set);
    col_free(&c);
    free_cases(cs, 3);
    srv_stop(s);
}

static void test_framings(void **state)
{
    (void)state;
    srv *s = srv_start(0);
    char t[64];
    target_of(t, sizeof t, s->port);
    const char *paths[] = {"/chunked", "/interim", "/head",       "/status/404", "/conn-close",
                           "/eofbody", "/plain",   "/conn-close", "/plain"};
    enum { N = 9 };
    record *cs[N];
    for (int i = 0; i < N; i++)
        cs[i] = mk(i == 2 ? "HEAD" : "GET", paths[i], NULL, NULL, 0);
    replay_opts o = base_opts(t);
    o.concurrency = 2;
    col c;
    col_init(&c, N, 1);
    run_checked(&o, cs, N, &c);
    for (int i = 0; i < N; i++) {
        got_t *g = col_find(&c, (size_t)i, 0);
        assert_null(g->error);
        if (i == 2) {
            assert_int_equal(g->status, 200);
            assert_string_equal(g->body, ""); /* HEAD: no body despite Content-Length */
            continue;
        }
        assert_int_equal(g->status, i == 3 ? 404 : 200);
        json_t *j = echo_of(g);
        assert_string_equal(json_string_value(json_object_get(j, "target")), paths[i]);
        json_decref(j);
    }
    col_free(&c);
    free_cases(cs, N);
    srv_stop(s);
}

static void test_loops(void **state)
{
    (void)state;
    srv *s = srv_start(0);
    char t[64];
    target_of(t, sizeof t, s->port);
    enum { N = 5, L = 3 };
    record *cs[N];
    for (int i = 0; i < N; i++)
        cs[i] = mk("GET", "/l", NULL, NULL, 0);
    replay_opts o = base_opts(t);
    o.loops = L;
    o.concurrency = 3;
    col c;
    col_init(&c, N, L);
    run_checked(&o, cs, N, &c);
    for (size_t i = 0; i < c.n; i++)
        assert_int_equal(c.v[i].status, 200);
    assert_int_equal(s->nreqs, N * L);
    col_free(&c);
    free_cases(cs, N);
    srv_stop(s);
}

static void test_ordered(void **state)
{
    (void)state;
    srv *s = srv_start(0);
    char t[64];
    target_of(t, sizeof t, s->port);
    /* Two clients interleaved, each request answered after 60 ms. */
    enum { N = 8 };
    record *cs[N];
    for (int i = 0; i < N; i++) {
        char p[32];
        snprintf(p, sizeof p, "/%c/%d", i % 2 ? 'b' : 'a', i / 2);
        /* Same IP, other ports: still one client. */
        char ca[32];
        snprintf(ca, sizeof ca, "10.0.0.%d:%d", 1 + i % 2, 5000 + i);
        cs[i] = mk("GET", p, "delay=60", ca, 0);
    }
    replay_opts o = base_opts(t);
    o.ordered = true;
    o.concurrency = 8;
    col c;
    col_init(&c, N, 1);
    int64_t el = run_checked(&o, cs, N, &c);
    assert_int_equal(s->nreqs, N);
    /* Per client: request k arrives only after request k-1 was answered. */
    for (int cl = 0; cl < 2; cl++) {
        int64_t prev_answer = -1;
        int prev_k = -1;
        for (int i = 0; i < s->nreqs; i++) {
            srv_req *q = &s->reqs[i];
            if (q->target[1] != (cl ? 'b' : 'a'))
                continue;
            int k = atoi(q->target + 3);
            assert_int_equal(k, prev_k + 1);
            if (prev_answer >= 0)
                assert_true(q->t_arrive >= prev_answer);
            prev_answer = q->t_answer;
            prev_k = k;
        }
        assert_int_equal(prev_k, N / 2 - 1);
    }
    /* Clients in parallel: 4 sequential steps of 60 ms, not 8. */
    assert_true(el >= 4 * 60 * 1000);
    assert_true(el < 8 * 60 * 1000);
    col_free(&c);
    free_cases(cs, N);
    srv_stop(s);
}

/* ordered + correlate: the echo answers "target": "/new/9999" where the
 * recording had "/new/1234"; the client's next request goes out with 9999
 * in its path, query and header, and its recorded answer is handed over
 * mapped the same way. */
static void test_correlate(void **state)
{
    (void)state;
    srv *s = srv_start(0);
    char t[64];
    target_of(t, sizeof t, s->port);
    record *cs[2];
    cs[0] = mk("GET", "/new/9999", NULL, "10.0.0.1:1", 1);
    buf_append_str(&cs[0]->resp_body, "{\"target\":\"/new/1234\"}");
    cs[1] = mk("GET", "/item/1234", "ref=1234", "10.0.0.1:2", 2);
    hdr(&cs[1]->req_headers, "X-Ref", "1234");
    buf_append_str(&cs[1]->resp_body, "{\"target\":\"/item/1234?ref=1234\"}");
    replay_opts o = base_opts(t);
    o.ordered = true;
    o.correlate = corr_new(NULL);
    corr_scan(o.correlate, cs, 2);
    col c;
    col_init(&c, 2, 1);
    run_checked(&o, cs, 2, &c);
    assert_int_equal(s->nreqs, 2);
    assert_string_equal(s->reqs[1].target, "/item/9999?ref=9999");
    got_t *g = col_find(&c, 1, 0);
    assert_non_null(g);
    assert_string_equal(g->sent_path, "/item/9999");
    assert_int_equal(g->nsubs, 3);
    assert_non_null(strstr(g->body, "[\"X-Ref\",\"9999\"]"));
    assert_string_equal(g->sent_resp, "{\"target\":\"/item/9999?ref=9999\"}");
    g = col_find(&c, 0, 0);
    assert_int_equal(g->nsubs, 0);
    /* learned from its own answer: mapped too */
    assert_string_equal(g->sent_resp, "{\"target\":\"/new/9999\"}");
    col_free(&c);
    free_cases(cs, 2);
    corr_free(o.correlate);
    srv_stop(s);
}

static void test_unordered_overlaps(void **state)
{
    (void)state;
    srv *s = srv_start(0);
    char t[64];
    target_of(t, sizeof t, s->port);
    enum { N = 4 };
    record *cs[N];
    for (int i = 0; i < N; i++)
        cs[i] = mk("GET", "/a", "delay=80", "10.0.0.1:1", 0);
    replay_opts o = base_opts(t);
    o.concurrency = 4;
    col c;
    col_init(&c, N, 1);
    int64_t el = run_checked(&o, cs, N, &c);
    assert_true(el < 4 * 80 * 1000); /* in parallel: the ordered check above means something */
    col_free(&c);
    free_cases(cs, N);
    srv_stop(s);
}

static void test_refused(void **state)
{
    (void)state;
    int port;
    int fd = listen_any(&port);
    close(fd); /* nobody listens there now */
    char t[64];
    target_of(t, sizeof t, port);
    enum { N = 30 };
    record *cs[N];
    for (int i = 0; i < N; i++)
        cs[i] = mk("GET", "/x", NULL, NULL, 0);
    replay_opts o = base_opts(t);
    o.loops = 2;
    col c;
    col_init(&c, N, 2);
    int64_t el = run_checked(&o, cs, N, &c);
    for (size_t i = 0; i < c.n; i++) {
        assert_non_null(c.v[i].error);
        assert_string_equal(c.v[i].error, "connect: connection refused");
    }
    assert_true(el < 2000 * 1000);
    col_free(&c);
    free_cases(cs, N);
}

static void test_bad_target(void **state)
{
    (void)state;
    record *cs[1] = {mk("GET", "/", NULL, NULL, 0)};
    const char *bad[] = {"ftp://127.0.0.1:1", /* https is a target now (issue 12) */
                         "127.0.0.1:1",       /* the scheme is required (issue 9 item 17) */
                         "http://",
                         "http://127.0.0.1:99999",
                         "http://127.0.0.1:80/base",
                         "http://no-such-host.invalid:80",
                         NULL};
    for (int i = 0; bad[i]; i++) {
        replay_opts o = base_opts(bad[i]);
        col c;
        col_init(&c, 1, 1);
        char err[200] = "";
        assert_int_equal(replay_run(&o, cs, 1, on_answer, &c, NULL, NULL, err, sizeof err), -1);
        assert_true(strlen(err) > 0);
        assert_int_equal(c.n, 0);
        col_free(&c);
    }
    free_cases(cs, 1);
}

static void test_errors_timeout_retry(void **state)
{
    (void)state;
    srv *s = srv_start(0);
    char t[64];
    target_of(t, sizeof t, s->port);
    /* One connection, so that /flaky always arrives on a kept-alive one. */
    const char *paths[] = {"/ok", "/flaky", "/flaky", "/close", "/garbage", "/ok", "/sleep", "/ok"};
    enum { N = 8 };
    record *cs[N];
    for (int i = 0; i < N; i++)
        cs[i] = mk("GET", paths[i], NULL, NULL, 0);
    replay_opts o = base_opts(t);
    o.concurrency = 1;
    o.timeout_ms = 300;
    col c;
    col_init(&c, N, 1);
    int64_t el = run_checked(&o, cs, N, &c);
    assert_null(col_find(&c, 0, 0)->error);
    /* Closed before any byte on a kept-alive connection: retried once. */
    assert_null(col_find(&c, 1, 0)->error);
    assert_null(col_find(&c, 2, 0)->error);
    /* /close: on a reused connection, retried, then fails on the fresh one. */
    assert_string_equal(col_find(&c, 3, 0)->error, "connection closed");
    assert_true(strncmp(col_find(&c, 4, 0)->error, "invalid response", 16) == 0);
    assert_null(col_find(&c, 5, 0)->error);
    assert_string_equal(col_find(&c, 6, 0)->error, "timeout");
    assert_null(col_find(&c, 7, 0)->error);
    assert_true(el >= 290 * 1000);
    assert_true(el < 3000 * 1000);
    col_free(&c);
    free_cases(cs, N);
    srv_stop(s);
}

static void test_target_dies(void **state)
{
    (void)state;
    srv *s = srv_start(20);
    char t[64];
    target_of(t, sizeof t, s->port);
    enum { N = 200 };
    record *cs[N];
    for (int i = 0; i < N; i++)
        cs[i] = mk("GET", "/x", NULL, NULL, 0);
    replay_opts o = base_opts(t);
    o.concurrency = 32;
    o.timeout_ms = 2000;
    col c;
    col_init(&c, N, 1);
    int64_t el = run_checked(&o, cs, N, &c);
    size_t ok = 0, errs = 0;
    for (size_t i = 0; i < c.n; i++) {
        if (c.v[i].error)
            errs++;
        else
            ok++;
    }
    assert_true(ok >= 1);
    assert_true(ok <= 20 + 32);
    assert_true(errs >= N - 20 - 32);
    assert_true(el < 2500 * 1000);
    col_free(&c);
    free_cases(cs, N);
    srv_stop(s);
}

static void *stopper(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 150 * 1000000L};
    nanosleep(&ts, NULL);
    replay_stop();
    return NULL;
}

static void test_stop(void **state)
{
    (void)state;
    srv *s = srv_start(0);
    char t[64];
    target_of(t, sizeof t, s->port);
    enum { N = 50 };
    record *cs[N];
    for (int i = 0; i < N; i++)
        cs[i] = mk("GET", i < 2 ? "/ok" : "/sleep", NULL, NULL, 0);
    replay_opts o = base_opts(t);
    o.concurrency = 4;
    o.timeout_ms = 10000;
    o.loops = 2;
    col c;
    col_init(&c, N, 2);
    pthread_t th;
    pthread_create(&th, NULL, stopper, NULL);
    int64_t el = run_checked(&o, cs, N, &c);
    pthread_join(th, NULL);
    assert_true(el < 2000 * 1000);
    size_t stopped = 0;
    for (size_t i = 0; i < c.n; i++)
        if (c.v[i].error && strcmp(c.v[i].error, "stopped") == 0)
            stopped++;
    assert_true(stopped >= 2 * N - 2);
    col_free(&c);

    /* From the callback itself, on the loop's thread; the next run is not
     * affected by the previous stop. */
    col_init(&c, N, 1);
    for (int i = 0; i < N; i++) {
        free(cs[i]->path);
        cs[i]->path = xstrdup("/ok");
    }
    o.loops = 1;
    o.concurrency = 1;
    c.stop_after = 3;
    run_checked(&o, cs, N, &c);
    stopped = 0;
    for (size_t i = 0; i < c.n; i++)
        if (c.v[i].error && strcmp(c.v[i].error, "stopped") == 0)
            stopped++;
    assert_true(stopped >= N - 5);
    assert_true(stopped <= N - 3);
    col_free(&c);
    free_cases(cs, N);
    srv_stop(s);
}

static void test_pacing(void **state)
{
    (void)state;
    srv *s = srv_start(0);
    char t[64];
    target_of(t, sizeof t, s->port);
    record *cs[3];
    int64_t base = 1700000000000000LL;
    for (int i = 0; i < 3; i++)
        cs[i] = mk("GET", "/p", NULL, NULL, base + i * 200000);
    replay_opts o = base_opts(t);
    o.speed = 2.0;
    o.concurrency = 3;
    col c;
    col_init(&c, 3, 1);
    int64_t t0 = util_mono_us();
    int64_t el = run_checked(&o, cs, 3, &c);
    /* Only lower bounds are exact: pacing promises that no request leaves
     * before its time. Upper bounds are loose on purpose (this machine is
     * shared and the suite runs under valgrind): they only catch a run that
     * paced at the recorded speed (400 ms) or not at all. */
    assert_true(el >= 195 * 1000);
    assert_true(el < 5 * 1000 * 1000);
    /* None arrived before its time (0, 100 and 200 ms into the run). Counted
     * from the run's start, not from the first arrival: on a loaded machine
     * the first request's connection can take longer than the others'. */
    assert_int_equal(s->nreqs, 3);
    assert_true(s->reqs[1].t_arrive - t0 >= 100 * 1000);
    assert_true(s->reqs[2].t_arrive - t0 >= 200 * 1000);
    col_free(&c);

    /* As fast as possible without speed: paced at the recorded speed the
     * last request would arrive 400 ms after the first. */
    o.speed = 0;
    col_init(&c, 3, 1);
    run_checked(&o, cs, 3, &c);
    assert_int_equal(s->nreqs, 6);
    assert_true(s->reqs[5].t_arrive - s->reqs[3].t_arrive < 300 * 1000);
    col_free(&c);
    free_cases(cs, 3);
    srv_stop(s);
}

/* Issue 9 item 4: a compressed answer is handed over decoded (recordings
 * hold decoded bodies), capped at max_decoded; a request recorded decoded
 * is sent encoded again, as it was on the wire. */
static void test_codings(void **state)
{
    (void)state;
    srv *s = srv_start(0);
    char t[64];
    target_of(t, sizeof t, s->port);
    record *cs[4];
    cs[0] = mk("POST", "/gzip", NULL, NULL, 0);
    hdr(&cs[0]->req_headers, "Content-Type", "application/json");
    hdr(&cs[0]->req_headers, "Content-Encoding", "gzip");
    buf_append_str(&cs[0]->req_body, "{\"sent\":\"decoded in the store\"}");
    cs[0]->req_encoding = xstrdup("gzip");
    cs[1] = mk("GET", "/badgzip", NULL, NULL, 0);
    cs[2] = mk("GET", "/gzip", "long=1", NULL, 0);
    cs[3] = mk("POST", "/plain", NULL, NULL, 0);
    hdr(&cs[3]->req_headers, "Content-Encoding", "gzip");
    buf_append_str(&cs[3]->req_body, "stored as received");
    cs[3]->req_encoding = xstrdup("gzip");
    cs[3]->req_body_note = xstrdup("undecoded: gzip: incorrect header check");
    replay_opts o = base_opts(t);
    o.concurrency = 1;
    col c;
    col_init(&c, 4, 1);
    record *kept[4] = {0};
    c.kept = kept;
    run_checked(&o, cs, 4, &c);

    /* The request went out gzipped and came back decoded: the echo is
     * JSON, not gzip bytes. */
    got_t *g = col_find(&c, 0, 0);
    json_t *j = echo_of(g);
    assert_string_equal(json_string_value(json_object_get(j, "body")),
                        "{\"sent\":\"decoded in the store\"}");
    assert_int_not_equal(json_integer_value(json_object_get(j, "wire")), 31);
    assert_string_equal(echo_header(j, "content-encoding", NULL), "gzip");
    json_decref(j);

    /* Undecodable: kept as received, with the reason. */
    assert_non_null(kept[1]);
    assert_int_equal(kept[1]->resp_body.len, 8);
    assert_string_equal(kept[1]->resp_encoding, "gzip");
    assert_non_null(kept[1]->resp_body_note);
    assert_true(strncmp(kept[1]->resp_body_note, "undecoded: gzip", 15) == 0);
    assert_false(kept[1]->resp_truncated);
    record_free(kept[1]);

    /* Stored as received: sent as it is, not encoded twice. */
    assert_non_null(kept[3]);
    j = json_loadb(kept[3]->resp_body.data, kept[3]->resp_body.len, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "body")), "stored as received");
    json_decref(j);
    record_free(kept[3]);
    col_free(&c);

    /* Capped: the first max_decoded bytes, marked truncated. */
    o.max_decoded = 10;
    col_init(&c, 4, 1);
    c.kept = kept;
    memset(kept, 0, sizeof kept);
    run_checked(&o, cs, 4, &c);
    assert_non_null(kept[1]);
    record_free(kept[1]);
    assert_non_null(kept[3]);
    record_free(kept[3]);
    g = col_find(&c, 2, 0);
    assert_int_equal(strlen(g->body), 10);
    assert_memory_equal(g->body, "{\"method\":", 10);
    col_free(&c);
    free_cases(cs, 4);
    srv_stop(s);
}

static void test_unreplayable(void **state)
{
    (void)state;
    replay_opts o = base_opts("http://127.0.0.1:1");
    char b[128];
    record *r = mk("POST", "/x", NULL, NULL, 0);
    hdr(&r->req_headers, "Accept", "*/*");
    assert_null(replay_unreplayable(&o, r, b, sizeof b));

    r->req_truncated = true;
    r->req_body_size = 70000;
    assert_string_equal(replay_unreplayable(&o, r, b, sizeof b),
                        "request body is incomplete: 0 of 70000 bytes recorded");
    r->req_truncated = false;
    /* not stored (issue 9 item 3): never sent with an empty body instead */
    r->req_body_note = xstrdup("dropped: br: damaged stream");
    assert_string_equal(replay_unreplayable(&o, r, b, sizeof b),
                        "request body was not stored (dropped: br: damaged stream)");
    free(r->req_body_note);
    r->req_body_note = NULL;

    hdr(&r->req_headers, "Authorization", "[redacted]");
    hdr(&r->req_headers, "Cookie", "a=[redacted]");
    assert_string_equal(replay_unreplayable(&o, r, b, sizeof b),
                        "contains redacted values: Authorization, Cookie");
    assert_non_null(replay_unreplayable(&o, r, NULL, 0));

    /* --set-header replaces one, --drop-header removes the other. */
    http_headers set = {0};
    hdr(&set, "authorization", "Bearer fresh");
    char *drop[] = {"cookie", NULL};
    o.set_headers = &set;
    assert_string_equal(replay_unreplayable(&o, r, b, sizeof b),
                        "contains redacted values: Cookie");
    o.drop_headers = drop;
    assert_null(replay_unreplayable(&o, r, b, sizeof b));

    /* A hop-by-hop header is never sent, so it does not count. */
    hdr(&r->req_headers, "Connection", "X-Secret");
    hdr(&r->req_headers, "X-Secret", "[redacted]");
    assert_null(replay_unreplayable(&o, r, b, sizeof b));

    buf_append_str(&r->req_body, "{\"password\":\"[redacted]\"}");
    assert_string_equal(replay_unreplayable(&o, r, b, sizeof b), "contains redacted values: body");
    buf_reset(&r->req_body);
    r->query = xstrdup("token=[redacted]");
    assert_string_equal(replay_unreplayable(&o, r, b, sizeof b), "contains redacted values: query");
    /* A small buffer truncates, never overflows. */
    char tiny[10];
    const char *t = replay_unreplayable(&o, r, tiny, sizeof tiny);
    assert_non_null(t);
    assert_true(strlen(t) < sizeof tiny);
    http_headers_free(&set);
    record_free(r);
}

static void test_unreplayable_skipped(void **state)
{
    (void)state;
    srv *s = srv_start(0);
    char t[64];
    target_of(t, sizeof t, s->port);
    record *cs[3];
    cs[0] = mk("GET", "/a", NULL, NULL, 0);
    cs[1] = mk("GET", "/b", NULL, NULL, 0);
    hdr(&cs[1]->req_headers, "Authorization", "[redacted]");
    cs[2] = mk("GET", "/c", NULL, NULL, 0);
    replay_opts o = base_opts(t);
    col c;
    col_init(&c, 3, 1);
    char err[100];
    assert_int_equal(replay_run(&o, cs, 3, on_answer, &c, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(c.n, 2); /* never sent, no callback: the caller reports it */
    assert_int_equal(s->nreqs, 2);
    assert_non_null(col_find(&c, 0, 0));
    assert_null(col_find(&c, 1, 0));
    assert_non_null(col_find(&c, 2, 0));
    col_free(&c);
    free_cases(cs, 3);
    srv_stop(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_keepalive),
        cmocka_unit_test(test_headers_rewrites_bodies),
        cmocka_unit_test(test_framings),
        cmocka_unit_test(test_loops),
        cmocka_unit_test(test_ordered),
        cmocka_unit_test(test_correlate),
        cmocka_unit_test(test_unordered_overlaps),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_bad_target),
        cmocka_unit_test(test_errors_timeout_retry),
        cmocka_unit_test(test_target_dies),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_pacing),
        cmocka_unit_test(test_codings),
        cmocka_unit_test(test_unreplayable),
        cmocka_unit_test(test_unreplayable_skipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
