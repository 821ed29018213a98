#include "replay/replay.h"

#include <assert.h>
#include <llhttp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "http/coding.h"
#include "http/httpmsg.h"
#include "base/iostream.h"
#include "capture/redact.h"
#include "base/util.h"

/* How a run goes: every case is serialized once into one arena; then
 * `concurrency` connections each take the next job (loop-major: all cases of
 * loop 0, then loop 1, ...; with ordered, the next case of the ready client
 * whose next case comes first), wait for its time when pacing, write it,
 * parse the answer and hand it over, and take the next job on the same
 * socket while the server keeps it alive. One request per connection at a
 * time, one loop in the calling thread: the callback never needs a lock.
 * Per answer the only allocations are its header strings (the record and
 * its body buffer are reused when the callback leaves them); timeouts are
 * checked by one sweeping timer, so nothing is armed per request. */

#define READBUF_LEN (64 * 1024)
#define PROGRESS_MS 200
/* A Content-Length above this is not trusted for preallocating the body. */
#define PREALLOC_MAX (1024 * 1024)

/* ------------------------------------------------------------------ */
/* stop: shared with signal handlers and other threads                 */

static atomic_int g_stop;
/* The running replay's wake-up handle. g_senders counts replay_stop calls
 * between reading g_async and sending on it, so the run can wait for them
 * before closing the handle (a signal handler on the run's own thread always
 * finishes before the run resumes, so the wait never deadlocks). */
static _Atomic(uv_async_t *) g_async;
static atomic_int g_senders;

void replay_stop(void)
{
    atomic_store(&g_stop, 1);
    atomic_fetch_add(&g_senders, 1);
    uv_async_t *a = atomic_load(&g_async);
    if (a)
        uv_async_send(a);
    atomic_fetch_sub(&g_senders, 1);
}

/* ------------------------------------------------------------------ */
/* state                                                               */

/* One case, prepared once before the run. */
typedef struct rcase {
    const record *rec; /* the caller's */
    record *view;      /* shallow copy as sent (own path and headers), or NULL */
    bool own_path;     /* view->path is ours */
    const char *wire;  /* the whole request, in run.wires */
    size_t woff, wlen;
    size_t index;   /* in the caller's array */
    int64_t due_us; /* pacing offset from the start of a loop */
    size_t part;    /* ordered: partition */
    bool head;
} rcase;

/* Ordered mode: the cases of one client, in recorded order. */
typedef struct rpart {
    size_t *pos; /* indexes into run.cases */
    size_t n;
    uint64_t next; /* jobs handed out (across loops) */
    uint64_t total;
} rpart;

typedef enum { C_IDLE, C_WAIT, C_CONNECTING, C_BUSY } cstate;
/* What to do once the socket has closed. */
typedef enum { AFTER_NOTHING, AFTER_NEXT, AFTER_GO } cafter;

typedef struct run run;

typedef struct conn {
    run *r;
    uv_tcp_t tcp;
    uv_timer_t timer; /* pacing wait; reports a connect that failed at once */
    uv_connect_t creq;
    cstate st;
    cafter after;
    bool tcp_open;  /* tcp initialized and not yet closed */
    bool closing;   /* uv_close called, close callback pending */
    bool connected; /* open and usable */
    bool in_idle;   /* on run.idle */
    bool has_job;
    bool retried;
    bool resp_started; /* a byte of the answer has arrived */
    bool resp_done;
    bool keep_alive;
    int sync_err;     /* a connect error to report from the timer */
    unsigned served;  /* answers completed on this socket */
    size_t ci;        /* job's case */
    unsigned loop;    /* job's loop */
    int64_t t_send;   /* mono µs when the request was written */
    int64_t deadline; /* mono µs when the job times out; 0 when none runs */
    llhttp_t parser;
    buf hname, hval; /* the header being parsed; reused for the whole run */
    record *got;     /* the answer being built (owned until delivered) */
    record *spare;   /* a delivered answer the callback left, emptied for reuse */
    char err[160];
} conn;

struct run {
    uv_loop_t loop;
    const replay_opts *o;
    replay_cb cb;
    void *ud;
    replay_progress_cb pcb;
    void *pud;
    struct sockaddr_storage addr;
    rcase *cases; /* the replayable ones, in the caller's order */
    buf wires;    /* every case's request bytes, one after the other, in order:
                     one allocation, read sequentially as the run goes */
    size_t ncases;
    unsigned loops;
    uint64_t total, taken, done, errors;
    uint64_t timeout_ms;
    uint64_t max_decoded; /* decoded bytes kept of a compressed answer */
    int64_t loop_span_us; /* pacing: one loop's length */
    int64_t t0;           /* mono µs at start */
    int64_t wall0;        /* wall-clock µs at start */
    conn *conns;
    unsigned nconns;
    conn **idle; /* ordered: connections waiting for a partition */
    unsigned nidle;
    /* ordered */
    rpart *parts;
    size_t nparts;
    size_t *heap; /* ready partitions, min-heap by their next job's global index */
    size_t nheap;
    uv_timer_t ptimer;
    uv_timer_t sweep; /* request timeouts, checked for every connection at once */
    uv_async_t async;
    bool stopping, finishing;
    char readbuf[READBUF_LEN];
};

static llhttp_settings_t resp_settings;

static void conn_next(conn *c);
static void conn_go(conn *c);

/* ------------------------------------------------------------------ */
/* preparing the cases                                                  */

static bool name_in_list(char *const *names, const char *n)
{
    if (!names)
        return false;
    for (; *names; names++)
        if (strcasecmp(*names, n) == 0)
            return true;
    return false;
}

/* Framing and routing headers replay writes itself. Expect is dropped as the
 * body is sent right away. */
static bool is_own_header(const char *n)
{
    return strcasecmp(n, "content-length") == 0 || strcasecmp(n, "transfer-encoding") == 0 ||
           strcasecmp(n, "host") == 0 || strcasecmp(n, "expect") == 0;
}

/* True when the recorded header goes on the wire as it is. */
static bool header_kept(const replay_opts *o, const http_headers *h, const char *n)
{
    if (httpmsg_drop_header(h, n) || is_own_header(n) || name_in_list(o->drop_headers, n))
        return false;
    return !(o->set_headers && http_headers_get(o->set_headers, n));
}

static bool set_header_sent(const char *n)
{
    return !httpmsg_is_hop_by_hop(n, strlen(n)) && strcasecmp(n, "content-length") != 0 &&
           strcasecmp(n, "transfer-encoding") != 0;
}

/* snprintf into out when there is one; returns out, or fallback without it. */
static const char *reason(char *out, size_t len, const char *fallback, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static const char *reason(char *out, size_t len, const char *fallback, const char *fmt, ...)
{
    if (!out || len == 0)
        return fallback;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, len, fmt, ap);
    va_end(ap);
    return out;
}

const char *replay_body_unfaithful(const record *c, char *out, size_t len)
{
    const char *note = c->req_body_note;
    if (note && strncmp(note, "dropped", 7) == 0)
        return reason(out, len, "request body was not stored", "request body was not stored (%s)",
                      note);
    if (c->req_truncated)
        return reason(out, len, "request body is incomplete",
                      "request body is incomplete: %zu of %llu bytes recorded", c->req_body.len,
                      (unsigned long long)c->req_body_size);
    char err[128];
    coding_kind k[CODING_MAX_LAYERS];
    if (c->req_encoding && !note && c->req_body.len &&
        coding_parse(c->req_encoding, k, err, sizeof err) < 0)
        return reason(out, len, "request body cannot be encoded as it was sent",
                      "request body cannot be encoded as it was sent: %s", err);
    return NULL;
}

const buf *replay_wire_body(const record *c, buf *tmp)
{
    assert(!replay_body_unfaithful(c, NULL, 0));
    if (!c->req_encoding || c->req_body_note || c->req_body.len == 0)
        return &c->req_body;
    /* coding_parse accepted it (replay_body_unfaithful): cannot fail. */
    int rc = coding_encode(c->req_encoding, c->req_body.data, c->req_body.len, tmp, NULL, 0);
    assert(rc == 0);
    (void)rc;
    return tmp;
}

const char *replay_unreplayable(const replay_opts *o, const record *c, char *out, size_t len)
{
    const char *body = replay_body_unfaithful(c, out, len);
    if (body)
        return body;
    static const char prefix[] = "contains redacted values";
    size_t off = 0;
    bool found = false;
#define ADD_NAME(s)                                                                                \
    do {                                                                                           \
        if (out && len > 0) {                                                                      \
            int w_ = snprintf(out + off, len - off, "%s%s", found ? ", " : ": ", (s));             \
            if (w_ > 0)                                                                            \
                off = off + (size_t)w_ < len ? off + (size_t)w_ : len - 1;                         \
        }                                                                                          \
        found = true;                                                                              \
    } while (0)
    if (out && len > 0) {
        int w = snprintf(out, len, "%s", prefix);
        off = w > 0 && (size_t)w < len ? (size_t)w : len - 1;
    }
    for (size_t i = 0; i < c->req_headers.len; i++) {
        const http_header *h = &c->req_headers.v[i];
        if (strstr(h->value, REDACTED) && header_kept(o, &c->req_headers, h->name))
            ADD_NAME(h->name);
    }
    if (c->query && strstr(c->query, REDACTED))
        ADD_NAME("query");
    if (c->req_body.len && memmem(c->req_body.data, c->req_body.len, REDACTED, sizeof REDACTED - 1))
        ADD_NAME("body");
#undef ADD_NAME
    if (!found)
        return NULL;
    return out && len > 0 ? out : prefix;
}

static const replay_rewrite *rewrite_for(const replay_opts *o, const char *path)
{
    for (size_t i = 0; i < o->nrewrites; i++) {
        const char *from = o->rewrites[i].from;
        if (from && strncmp(path, from, strlen(from)) == 0)
            return &o->rewrites[i];
    }
    return NULL;
}

static void wire_header(buf *w, const char *n, const char *v)
{
    /* Cases may come from files (HAR, JSON lines): a name or value that
     * would break the framing of the request is left out. */
    if (!httpmsg_is_token(n, strlen(n)) || strpbrk(v, "\r\n"))
        return;
    buf_append_str(w, n);
    buf_append(w, ": ", 2);
    buf_append_str(w, v);
    buf_append(w, "\r\n", 2);
}

/* Appends k's request bytes to w and, when the options change what is
 * sent, makes its view. */
static void case_prepare(rcase *k, const replay_opts *o, const char *hostport, buf *w)
{
    const record *c = k->rec;
    const char *method = c->method && *c->method ? c->method : "GET";
    const char *path = c->path && *c->path ? c->path : "/";
    char *newpath = NULL;
    const replay_rewrite *rw = rewrite_for(o, path);
    if (rw) {
        const char *to = rw->to ? rw->to : "";
        size_t fl = strlen(rw->from), tl = strlen(to);
        newpath = xmalloc(tl + strlen(path + fl) + 1);
        memcpy(newpath, to, tl);
        strcpy(newpath + tl, path + fl);
        path = newpath;
    }
    k->head = strcasecmp(method, "HEAD") == 0;

    k->woff = w->len;
    buf_append_str(w, method);
    buf_append_char(w, ' ');
    buf_append_str(w, path);
    if (c->query) {
        buf_append_char(w, '?');
        buf_append_str(w, c->query);
    }
    buf_append(w, " HTTP/1.1\r\n", 11);
    const char *host = o->set_headers ? http_headers_get(o->set_headers, "host") : NULL;
    wire_header(w, "Host", host ? host : hostport);

    bool changed = false;
    for (size_t i = 0; i < c->req_headers.len; i++) {
        const http_header *h = &c->req_headers.v[i];
        if (header_kept(o, &c->req_headers, h->name))
            wire_header(w, h->name, h->value);
        else if (name_in_list(o->drop_headers, h->name))
            changed = true;
    }
    if (o->set_headers) {
        for (size_t i = 0; i < o->set_headers->len; i++) {
            const http_header *h = &o->set_headers->v[i];
            if (strcasecmp(h->name, "host") != 0 && set_header_sent(h->name))
                wire_header(w, h->name, h->value);
            changed = true;
        }
    }
    bool body_method = strcasecmp(method, "POST") == 0 || strcasecmp(method, "PUT") == 0 ||
                       strcasecmp(method, "PATCH") == 0;
    /* The body as it was sent: a decoded recording goes out encoded again,
     * under the Content-Encoding header it was recorded with. */
    buf encoded = BUF_INIT;
    const buf *body = replay_wire_body(c, &encoded);
    if (body->len || body_method) {
        buf_append(w, "Content-Length: ", 16);
        buf_append_u64(w, body->len);
        buf_append(w, "\r\n", 2);
    }
    buf_append(w, "\r\n", 2);
    if (body->len)
        buf_append(w, body->data, body->len);
    buf_free(&encoded);
    k->wlen = w->len - k->woff;

    if (!newpath && !changed)
        return;
    /* A shallow copy: everything but the path and the headers is the
     * caller's, so only those two are freed with it. */
    record *v = xmalloc(sizeof *v);
    *v = *c;
    memset(&v->req_headers, 0, sizeof v->req_headers);
    if (newpath) {
        v->path = newpath;
        k->own_path = true;
    }
    for (size_t i = 0; i < c->req_headers.len; i++) {
        const http_header *h = &c->req_headers.v[i];
        if (name_in_list(o->drop_headers, h->name))
            continue;
        if (o->set_headers && http_headers_get(o->set_headers, h->name))
            continue;
        http_headers_add(&v->req_headers, h->name, strlen(h->name), h->value, strlen(h->value));
    }
    if (o->set_headers)
        for (size_t i = 0; i < o->set_headers->len; i++) {
            const http_header *h = &o->set_headers->v[i];
            http_headers_add(&v->req_headers, h->name, strlen(h->name), h->value, strlen(h->value));
        }
    k->view = v;
}

static void case_free(rcase *k)
{
    if (k->view) {
        if (k->own_path)
            free(k->view->path);
        http_headers_free(&k->view->req_headers);
        free(k->view);
    }
}

/* ordered: partitions by client IP --------------------------------- */

static char *client_ip(const record *c)
{
    if (!c->client_addr)
        return xstrdup("");
    char host[256];
    int port;
    if (util_split_hostport(c->client_addr, host, sizeof host, &port) == 0)
        return xstrdup(host);
    return xstrdup(c->client_addr);
}

typedef struct ipkey {
    char *ip;
    size_t pos;
} ipkey;

static int ipkey_cmp(const void *a, const void *b)
{
    const ipkey *x = a, *y = b;
    int d = strcmp(x->ip, y->ip);
    if (d)
        return d;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static void build_parts(run *r)
{
    ipkey *keys = xmalloc((r->ncases ? r->ncases : 1) * sizeof *keys);
    for (size_t i = 0; i < r->ncases; i++) {
        keys[i].ip = client_ip(r->cases[i].rec);
        keys[i].pos = i;
    }
    /* Sorting by (ip, position) groups each client with its cases in order. */
    qsort(keys, r->ncases, sizeof *keys, ipkey_cmp);
    r->parts = xcalloc(r->ncases ? r->ncases : 1, sizeof *r->parts);
    size_t *all = xmalloc((r->ncases ? r->ncases : 1) * sizeof *all);
    for (size_t i = 0; i < r->ncases; i++) {
        if (i == 0 || strcmp(keys[i].ip, keys[i - 1].ip) != 0) {
            r->parts[r->nparts].pos = all + i;
            r->nparts++;
        }
        rpart *p = &r->parts[r->nparts - 1];
        p->pos[p->n++] = keys[i].pos;
        r->cases[keys[i].pos].part = r->nparts - 1;
    }
    for (size_t i = 0; i < r->ncases; i++)
        free(keys[i].ip);
    free(keys);
    if (r->nparts == 0)
        free(all);
    r->heap = xmalloc((r->nparts ? r->nparts : 1) * sizeof *r->heap);
    for (size_t i = 0; i < r->nparts; i++)
        r->parts[i].total = (uint64_t)r->parts[i].n * r->loops;
}

static uint64_t part_key(const run *r, size_t pi)
{
    const rpart *p = &r->parts[pi];
    uint64_t loop = p->next / p->n;
    return loop * r->ncases + p->pos[p->next % p->n];
}

static void heap_push(run *r, size_t pi)
{
    size_t i = r->nheap++;
    r->heap[i] = pi;
    uint64_t k = part_key(r, pi);
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (part_key(r, r->heap[up]) <= k)
            break;
        r->heap[i] = r->heap[up];
        r->heap[up] = pi;
        i = up;
    }
}

static size_t heap_pop(run *r)
{
    size_t top = r->heap[0];
    size_t last = r->heap[--r->nheap];
    size_t i = 0, n = r->nheap;
    if (n) {
        uint64_t k = part_key(r, last);
        for (;;) {
            size_t l = 2 * i + 1, m = i;
            uint64_t mk = k;
            if (l < n && part_key(r, r->heap[l]) < mk) {
                m = l;
                mk = part_key(r, r->heap[l]);
            }
            if (l + 1 < n && part_key(r, r->heap[l + 1]) < mk)
                m = l + 1;
            if (m == i)
                break;
            r->heap[i] = r->heap[m];
            i = m;
        }
        r->heap[i] = last;
    }
    return top;
}

/* ------------------------------------------------------------------ */
/* jobs                                                                */

/* Hands the next job to c. False when none is available now. */
static bool take_job(run *r, conn *c)
{
    if (r->stopping || r->taken >= r->total)
        return false;
    if (r->parts) {
        if (r->nheap == 0)
            return false;
        size_t pi = heap_pop(r);
        rpart *p = &r->parts[pi];
        c->loop = (unsigned)(p->next / p->n);
        c->ci = p->pos[p->next % p->n];
        p->next++;
    } else {
        c->loop = (unsigned)(r->taken / r->ncases);
        c->ci = (size_t)(r->taken % r->ncases);
    }
    r->taken++;
    c->has_job = true;
    c->retried = false;
    return true;
}

static void progress(run *r)
{
    if (!r->pcb)
        return;
    replay_progress p = {r->total, r->done, r->errors, (double)(util_mono_us() - r->t0) / 1e6};
    r->pcb(r->pud, &p);
}

static void close_all(run *r);

/* Keeps an answer the callback did not take for the connection's next one:
 * a steady run then allocates only the header strings per answer. Anything
 * unusual (a field the callback set, a big body) is simply freed. */
static void recycle(conn *c, record *g)
{
    if (!c || c->spare || g->node || g->client_addr || g->method || g->scheme || g->host ||
        g->path || g->query || g->rule || g->origin || g->error || g->replication ||
        g->req_headers.v || g->req_body.data || g->resp_encoding || g->resp_body_note ||
        g->headers_json[0].data || g->headers_json[1].data || g->resp_body.cap > PREALLOC_MAX) {
        record_free(g);
        return;
    }
    http_headers h = g->resp_headers;
    http_headers_reset(&h);
    buf b = g->resp_body;
    buf_reset(&b);
    memset(g, 0, sizeof *g);
    g->resp_headers = h;
    g->resp_body = b;
    g->upstream_us = -1;
    c->spare = g;
}

/* Hands the answer to the caller; the job is over. c: the connection that
 * got it (NULL when none did). */
static void deliver(run *r, conn *c, size_t ci, unsigned loop, record *got, const char *error)
{
    rcase *k = &r->cases[ci];
    replay_answer a = {k->view ? k->view : k->rec, got, error, k->index, loop};
    r->done++;
    if (error)
        r->errors++;
    r->cb(r->ud, &a);
    if (a.got)
        recycle(c, a.got);
    if (r->parts) {
        rpart *p = &r->parts[k->part];
        if (p->next < p->total && !r->stopping)
            heap_push(r, k->part);
    }
    if (r->done == r->total)
        close_all(r);
}

static void conn_deliver(conn *c, const char *error)
{
    record *got = error ? NULL : c->got;
    if (error && c->got)
        recycle(c, c->got);
    c->got = NULL;
    c->has_job = false;
    if (c->st == C_WAIT)
        uv_timer_stop(&c->timer); /* stopped while waiting for its time */
    c->st = C_IDLE;
    c->deadline = 0;
    deliver(c->r, c, c->ci, c->loop, got, error);
}

/* Wakes connections waiting for a partition while some are ready. */
static void wake_idle(run *r)
{
    while (r->nidle && r->nheap && !r->stopping && !r->finishing) {
        conn *c = r->idle[--r->nidle];
        c->in_idle = false;
        conn_next(c);
    }
}

/* ------------------------------------------------------------------ */
/* sockets                                                             */

static void on_tcp_closed(uv_handle_t *h)
{
    conn *c = h->data;
    c->tcp_open = false;
    c->closing = false;
    cafter after = c->after;
    c->after = AFTER_NOTHING;
    if (c->r->finishing)
        return;
    if (after == AFTER_GO)
        conn_go(c);
    else if (after == AFTER_NEXT)
        conn_next(c);
}

static void conn_close(conn *c, cafter after)
{
    c->after = after;
    c->connected = false;
    if (!c->tcp_open || c->closing) {
        if (!c->tcp_open) {
            c->after = AFTER_NOTHING;
            if (after == AFTER_GO)
                conn_go(c);
            else if (after == AFTER_NEXT)
                conn_next(c);
        }
        return;
    }
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
}

/* The job failed: report it, drop the socket, go on with the next job. */
static void conn_fail(conn *c, const char *error)
{
    if (error != c->err)
        snprintf(c->err, sizeof c->err, "%s", error);
    conn_deliver(c, c->err);
    if (c->r->finishing)
        return;
    conn_close(c, AFTER_NEXT);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    conn *c = h->data;
    *b = uv_buf_init(c->r->readbuf, READBUF_LEN);
}

static void conn_complete(conn *c, bool reusable)
{
    record *got = c->got;
    got->upstream_us = util_mono_us() - c->t_send;
    /* Recordings hold decoded bodies: a compressed answer is compared,
     * learned from and reported decoded too (resp_encoding says it was
     * compressed; one that cannot be decoded stays as received, with an
     * "undecoded: ..." note). After the latency: decoding is not the
     * target's time. Only compressed answers pay for it. */
    if (got->resp_body.len && http_headers_get(&got->resp_headers, "content-encoding"))
        record_decode_bodies(got, 0, c->r->max_decoded, true);
    got->duration_us = got->upstream_us;
    got->started_at_us = c->r->wall0 + (c->t_send - c->r->t0);
    c->served++;
    conn_deliver(c, NULL);
    if (c->r->finishing)
        return;
    if (reusable && c->connected)
        conn_next(c);
    else
        conn_close(c, AFTER_NEXT);
}

/* A kept-alive socket the server closed before answering: once, on a new one. */
static bool conn_maybe_retry(conn *c)
{
    if (c->resp_started || c->served == 0 || c->retried || c->st != C_BUSY)
        return false;
    c->retried = true;
    recycle(c, c->got);
    c->got = NULL;
    conn_close(c, AFTER_GO);
    return true;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn *c = s->data;
    if (n == 0)
        return;
    if (c->st != C_BUSY) {
        /* Idle or waiting: the server closed the socket or sent bytes
         * nobody asked for; either way it is not reused. */
        conn_close(c, AFTER_NOTHING);
        return;
    }
    if (n < 0) {
        c->connected = false;
        if (n == UV_EOF && c->resp_started) {
            /* A body delimited by the close ends here. */
            llhttp_errno_t e = llhttp_finish(&c->parser);
            if ((e == HPE_OK || e == HPE_PAUSED) && c->resp_done) {
                conn_complete(c, false);
                return;
            }
        }
        if (conn_maybe_retry(c))
            return;
        if (n == UV_EOF)
            conn_fail(c, "connection closed");
        else {
            snprintf(c->err, sizeof c->err, "read: %s", uv_strerror((int)n));
            conn_fail(c, c->err);
        }
        return;
    }
    if (!c->resp_started) {
        /* The callback will read the recorded answer (to compare): start
         * loading it while the parser runs; with 100,000 cases it is rarely
         * in the cache any more. */
        const rcase *k = &c->r->cases[c->ci];
        const char *rec = (const char *)(k->view ? k->view : k->rec);
        for (size_t off = 0; off < sizeof(record); off += 64)
            __builtin_prefetch(rec + off);
    }
    c->resp_started = true;
    llhttp_errno_t e = llhttp_execute(&c->parser, b->base, (size_t)n);
    if (e == HPE_PAUSED && c->resp_done) {
        /* Bytes after the answer: the socket's framing cannot be trusted. */
        const char *pos = llhttp_get_error_pos(&c->parser);
        bool extra = pos && pos < b->base + n;
        conn_complete(c, c->keep_alive && !extra);
        return;
    }
    if (e != HPE_OK) {
        snprintf(c->err, sizeof c->err, "invalid response: %s",
                 llhttp_get_error_reason(&c->parser) ? llhttp_get_error_reason(&c->parser)
                                                     : llhttp_errno_name(e));
        conn_fail(c, c->err);
    }
}

static void conn_send(conn *c, int64_t now)
{
    run *r = c->r;
    rcase *k = &r->cases[c->ci];
    llhttp_init(&c->parser, HTTP_RESPONSE, &resp_settings);
    c->parser.data = c;
    c->resp_started = c->resp_done = false;
    buf_reset(&c->hname);
    buf_reset(&c->hval);
    if (c->spare) {
        c->got = c->spare;
        c->spare = NULL;
    } else {
        c->got = xcalloc(1, sizeof *c->got);
        c->got->upstream_us = -1;
    }
    c->st = C_BUSY;
    c->t_send = now;
    uv_buf_t b = uv_buf_init((char *)k->wire, (unsigned)k->wlen); /* only read */
    int rc = io_write((uv_stream_t *)&c->tcp, &b, 1, NULL);
    if (rc < 0) {
        c->connected = false;
        if (conn_maybe_retry(c))
            return;
        snprintf(c->err, sizeof c->err, "write: %s", uv_strerror(rc));
        conn_fail(c, c->err);
    }
}

static void on_connected(uv_connect_t *req, int status)
{
    conn *c = req->data;
    if (c->st != C_CONNECTING || c->closing || c->r->finishing)
        return; /* timed out or stopped meanwhile */
    if (status < 0) {
        snprintf(c->err, sizeof c->err, "connect: %s", uv_strerror(status));
        conn_fail(c, c->err);
        return;
    }
    c->connected = true;
    c->served = 0;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    conn_send(c, util_mono_us());
}

static void on_timer(uv_timer_t *t)
{
    conn *c = t->data;
    if (c->st == C_WAIT) {
        conn_go(c);
        return;
    }
    if (c->sync_err) {
        snprintf(c->err, sizeof c->err, "connect: %s", uv_strerror(c->sync_err));
        c->sync_err = 0;
        conn_fail(c, c->err);
        return;
    }
}

static void on_sweep(uv_timer_t *t)
{
    run *r = t->data;
    int64_t now = util_mono_us();
    for (unsigned i = 0; i < r->nconns && !r->finishing; i++) {
        conn *c = &r->conns[i];
        if (c->deadline && now >= c->deadline && (c->st == C_CONNECTING || c->st == C_BUSY))
            conn_fail(c, "timeout");
    }
}

/* Sends c's job now: on the open socket, or after connecting. */
static void conn_go(conn *c)
{
    run *r = c->r;
    if (r->finishing || !c->has_job)
        return;
    if (r->stopping) {
        conn_deliver(c, "stopped");
        return;
    }
    if (c->closing) {
        c->after = AFTER_GO;
        return;
    }
    /* The timeout covers connect and answer; a retry keeps the first one's. */
    int64_t now = util_mono_us();
    if (!c->deadline)
        c->deadline = now + (int64_t)r->timeout_ms * 1000;
    if (c->connected) {
        conn_send(c, now);
        return;
    }
    c->st = C_CONNECTING;
    uv_tcp_init(&r->loop, &c->tcp);
    c->tcp.data = c;
    c->tcp_open = true;
    c->creq.data = c;
    int rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&r->addr, on_connected);
    if (rc < 0) {
        /* Reported from the timer, never from here: a target refusing at
         * once must not recurse through every remaining job. */
        c->sync_err = rc;
        uv_timer_start(&c->timer, on_timer, 0, 0);
    }
}

/* Takes the next job, waits for its time when pacing, then sends it. */
static void conn_next(conn *c)
{
    run *r = c->r;
    if (r->finishing || c->has_job)
        return;
    if (!take_job(r, c)) {
        if (r->parts && r->taken < r->total && !r->stopping) {
            if (!c->in_idle) {
                c->in_idle = true;
                r->idle[r->nidle++] = c;
            }
        } else if (c->tcp_open && !c->closing) {
            conn_close(c, AFTER_NOTHING); /* nothing left for it */
        }
        return;
    }
    wake_idle(r);
    if (r->o->speed > 0) {
        rcase *k = &r->cases[c->ci];
        int64_t due = r->t0 + k->due_us + (int64_t)c->loop * r->loop_span_us;
        int64_t now = util_mono_us();
        if (due > now) {
            c->st = C_WAIT;
            uv_timer_start(&c->timer, on_timer, (uint64_t)((due - now + 999) / 1000), 0);
            return;
        }
    }
    conn_go(c);
}

/* ------------------------------------------------------------------ */
/* response parsing                                                    */

static int r_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    conn *c = p->data;
    buf_append(&c->hname, at, len);
    return 0;
}

static int r_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    conn *c = p->data;
    buf_append(&c->hval, at, len);
    return 0;
}

static int r_on_header_value_complete(llhttp_t *p)
{
    conn *c = p->data;
    http_headers_add(&c->got->resp_headers, c->hname.data, c->hname.len,
                     c->hval.data ? c->hval.data : "", c->hval.len);
    buf_reset(&c->hname);
    buf_reset(&c->hval);
    return 0;
}

static int r_on_headers_complete(llhttp_t *p)
{
    conn *c = p->data;
    int status = p->status_code;
    if (status >= 100 && status < 200) {
        if (status == 101)
            return -1; /* nobody asked for an upgrade */
        /* Interim answer: the final one follows. */
        http_headers_free(&c->got->resp_headers);
        return 0;
    }
    c->got->status = status;
    if (p->content_length > 0 && p->content_length <= PREALLOC_MAX &&
        (p->flags & F_CONTENT_LENGTH) && !c->r->cases[c->ci].head)
        buf_reserve(&c->got->resp_body, (size_t)p->content_length);
    return c->r->cases[c->ci].head ? 1 : 0;
}

static int r_on_body(llhttp_t *p, const char *at, size_t len)
{
    conn *c = p->data;
    buf_append(&c->got->resp_body, at, len);
    return 0;
}

static int r_on_message_complete(llhttp_t *p)
{
    conn *c = p->data;
    if (c->got->status == 0)
        return 0; /* end of an interim answer */
    c->got->resp_body_size = c->got->resp_body.len;
    c->resp_done = true;
    c->keep_alive = llhttp_should_keep_alive(p);
    return HPE_PAUSED;
}

static void settings_init(void)
{
    llhttp_settings_init(&resp_settings);
    resp_settings.on_header_field = r_on_header_field;
    resp_settings.on_header_value = r_on_header_value;
    resp_settings.on_header_value_complete = r_on_header_value_complete;
    resp_settings.on_headers_complete = r_on_headers_complete;
    resp_settings.on_body = r_on_body;
    resp_settings.on_message_complete = r_on_message_complete;
}

/* ------------------------------------------------------------------ */
/* run                                                                 */

/* Every job not yet answered gets "stopped"; then the run ends. */
static void do_stop(run *r)
{
    if (r->stopping || r->finishing)
        return;
    r->stopping = true;
    for (unsigned i = 0; i < r->nconns && !r->finishing; i++) {
        conn *c = &r->conns[i];
        if (c->has_job) {
            conn_deliver(c, "stopped");
            if (!r->finishing)
                conn_close(c, AFTER_NOTHING);
        }
    }
    if (r->parts) {
        for (size_t pi = 0; pi < r->nparts && !r->finishing; pi++) {
            rpart *p = &r->parts[pi];
            while (p->next < p->total && !r->finishing) {
                size_t ci = p->pos[p->next % p->n];
                unsigned loop = (unsigned)(p->next / p->n);
                p->next++;
                r->taken++;
                deliver(r, NULL, ci, loop, NULL, "stopped");
            }
        }
    } else {
        while (r->taken < r->total && !r->finishing) {
            uint64_t j = r->taken++;
            deliver(r, NULL, (size_t)(j % r->ncases), (unsigned)(j / r->ncases), NULL, "stopped");
        }
    }
}

static void on_async(uv_async_t *a)
{
    run *r = a->data;
    if (atomic_load(&g_stop))
        do_stop(r);
}

static void on_progress(uv_timer_t *t)
{
    run *r = t->data;
    if (atomic_load(&g_stop))
        do_stop(r);
    if (!r->finishing)
        progress(r);
}

static void noop_close(uv_handle_t *h)
{
    (void)h;
}

/* The last answer is in: close every handle so that uv_run returns. */
static void close_all(run *r)
{
    if (r->finishing)
        return;
    r->finishing = true;
    for (unsigned i = 0; i < r->nconns; i++) {
        conn *c = &r->conns[i];
        c->after = AFTER_NOTHING;
        if (c->tcp_open && !c->closing) {
            c->closing = true;
            uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
        }
        uv_close((uv_handle_t *)&c->timer, noop_close);
    }
    uv_close((uv_handle_t *)&r->ptimer, noop_close);
    uv_close((uv_handle_t *)&r->sweep, noop_close);
    /* No replay_stop may be between reading g_async and sending on it. */
    atomic_store(&g_async, NULL);
    while (atomic_load(&g_senders) > 0)
        ;
    uv_close((uv_handle_t *)&r->async, noop_close);
}

/* Parses "http://host[:port][/]" into r->addr and hostport ("host:port" as
 * the Host header); the scheme is required. 0 or -1 with err. */
static int resolve_target(run *r, const char *target, char *hostport, size_t hplen, char *err,
                          size_t errlen)
{
    if (!target || !*target) {
        snprintf(err, errlen, "no target given");
        return -1;
    }
    const char *s = target;
    if (strncasecmp(s, "http://", 7) == 0) {
        s += 7;
    } else {
        snprintf(err, errlen, "target %s: %s", target,
                 strstr(s, "://") ? "only http:// is supported" : "expected http://host:port");
        return -1;
    }
    size_t hl = strcspn(s, "/?#");
    if (s[hl] == '/' && s[hl + 1] != '\0') {
        snprintf(err, errlen, "target %s: a path is not supported (use --rewrite-path)", target);
        return -1;
    }
    char host[256];
    if (hl == 0 || hl >= sizeof host) {
        snprintf(err, errlen, "target %s: bad host", target);
        return -1;
    }
    const char *hs = s, *he = s + hl, *colon = NULL;
    if (*s == '[') {
        /* [IPv6] or [IPv6]:port */
        const char *rb = memchr(s, ']', hl);
        if (!rb || (rb + 1 < he && rb[1] != ':')) {
            snprintf(err, errlen, "target %s: bad host", target);
            return -1;
        }
        hs = s + 1;
        colon = rb + 1 < he ? rb + 1 : NULL;
        he = rb;
    } else {
        colon = memchr(s, ':', hl);
        if (colon && memchr(colon + 1, ':', (size_t)(s + hl - colon - 1))) {
            snprintf(err, errlen, "target %s: put an IPv6 address in brackets", target);
            return -1;
        }
        if (colon)
            he = colon;
    }
    int port = 80;
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (end != s + hl || p <= 0 || p > 65535 || colon + 1 == end) {
            snprintf(err, errlen, "target %s: bad port", target);
            return -1;
        }
        port = (int)p;
    }
    if (he == hs) {
        snprintf(err, errlen, "target %s: bad host", target);
        return -1;
    }
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';
    snprintf(hostport, hplen, "%.*s", (int)hl, s);
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    uv_getaddrinfo_t req;
    int rc = uv_getaddrinfo(&r->loop, &req, NULL, host, portstr, &hints);
    if (rc < 0) {
        snprintf(err, errlen, "target %s: %s", target, uv_strerror(rc));
        return -1;
    }
    /* IPv4 first: "localhost" often resolves to ::1 first while development
     * servers listen on 127.0.0.1 only. */
    struct addrinfo *pick = req.addrinfo;
    for (struct addrinfo *ai = req.addrinfo; ai; ai = ai->ai_next)
        if (ai->ai_family == AF_INET) {
            pick = ai;
            break;
        }
    memcpy(&r->addr, pick->ai_addr, pick->ai_addrlen);
    uv_freeaddrinfo(req.addrinfo);
    return 0;
}

int replay_run(const replay_opts *o, record *const *cases, size_t n, replay_cb cb, void *ud,
               replay_progress_cb pcb, void *pud, char *err, size_t errlen)
{
    static uv_once_t once = UV_ONCE_INIT;
    uv_once(&once, settings_init);
    atomic_store(&g_stop, 0);

    run *r = xcalloc(1, sizeof *r);
    r->o = o;
    r->cb = cb;
    r->ud = ud;
    r->pcb = pcb;
    r->pud = pud;
    r->loops = o->loops ? o->loops : 1;
    uv_loop_init(&r->loop);
    char hostport[300];
    if (resolve_target(r, o->target, hostport, sizeof hostport, err, errlen) < 0) {
        uv_loop_close(&r->loop);
        free(r);
        return -1;
    }

    /* Serialize every replayable case once; loops reuse the bytes. */
    r->cases = xcalloc(n ? n : 1, sizeof *r->cases);
    int64_t first = INT64_MAX, last = INT64_MIN;
    for (size_t i = 0; i < n; i++) {
        if (replay_unreplayable(o, cases[i], NULL, 0))
            continue;
        rcase *k = &r->cases[r->ncases++];
        k->rec = cases[i];
        k->index = i;
        case_prepare(k, o, hostport, &r->wires);
        if (cases[i]->started_at_us < first)
            first = cases[i]->started_at_us;
        if (cases[i]->started_at_us > last)
            last = cases[i]->started_at_us;
    }
    for (size_t i = 0; i < r->ncases; i++)
        r->cases[i].wire = r->wires.data + r->cases[i].woff;
    if (o->speed > 0 && r->ncases) {
        for (size_t i = 0; i < r->ncases; i++)
            r->cases[i].due_us =
                (int64_t)((double)(r->cases[i].rec->started_at_us - first) / o->speed);
        /* The next loop starts one mean gap after this one's last case. */
        int64_t span = (int64_t)((double)(last - first) / o->speed);
        r->loop_span_us = span + (r->ncases > 1 ? span / (int64_t)(r->ncases - 1) : 0);
    }
    r->total = (uint64_t)r->ncases * r->loops;
    if (o->ordered)
        build_parts(r);

    uint64_t width = r->parts ? r->nparts : r->total;
    unsigned conc = o->concurrency ? o->concurrency : 1;
    r->nconns = width < conc ? (unsigned)width : conc;
    r->conns = xcalloc(r->nconns ? r->nconns : 1, sizeof *r->conns);
    r->idle = xcalloc(r->nconns ? r->nconns : 1, sizeof *r->idle);

    /* A target that closes while we write must give an error, not SIGPIPE. */
    struct sigaction ign, oldpipe;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &oldpipe);

    uv_timer_init(&r->loop, &r->ptimer);
    r->ptimer.data = r;
    uv_timer_init(&r->loop, &r->sweep);
    r->sweep.data = r;
    r->timeout_ms = o->timeout_ms ? o->timeout_ms : 30000;
    r->max_decoded = o->max_decoded ? o->max_decoded : REPLAY_MAX_DECODED;
    uv_async_init(&r->loop, &r->async, on_async);
    r->async.data = r;
    atomic_store(&g_async, &r->async);
    r->t0 = util_mono_us();
    r->wall0 = util_now_us();
    if (r->parts)
        for (size_t i = 0; i < r->nparts; i++)
            heap_push(r, i);

    if (r->total == 0) {
        close_all(r);
    } else {
        uv_timer_start(&r->ptimer, on_progress, PROGRESS_MS, PROGRESS_MS);
        /* Checked a few times per timeout: a timeout fires at most a quarter
         * late, and no timer is touched per request. */
        uint64_t every = r->timeout_ms / 4;
        every = every < 5 ? 5 : every > 100 ? 100 : every;
        uv_timer_start(&r->sweep, on_sweep, every, every);
        for (unsigned i = 0; i < r->nconns; i++) {
            conn *c = &r->conns[i];
            c->r = r;
            uv_timer_init(&r->loop, &c->timer);
            c->timer.data = c;
        }
        for (unsigned i = 0; i < r->nconns && !r->finishing; i++)
            conn_next(&r->conns[i]);
        if (atomic_load(&g_stop))
            do_stop(r);
    }
    uv_run(&r->loop, UV_RUN_DEFAULT);
    progress(r);
    sigaction(SIGPIPE, &oldpipe, NULL);

    for (unsigned i = 0; i < r->nconns; i++) {
        buf_free(&r->conns[i].hname);
        buf_free(&r->conns[i].hval);
        record_free(r->conns[i].got);
        record_free(r->conns[i].spare);
    }
    for (size_t i = 0; i < r->ncases; i++)
        case_free(&r->cases[i]);
    if (r->parts) {
        if (r->nparts)
            free(r->parts[0].pos);
        free(r->parts);
        free(r->heap);
    }
    free(r->idle);
    free(r->conns);
    free(r->cases);
    buf_free(&r->wires);
    uv_loop_close(&r->loop);
    free(r);
    return 0;
}
