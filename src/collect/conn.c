/* conn: one client connection of `restspy collect`: its input buffer, its
 * protocol state (HELLO first, then PAIRs) and the answers it owes, in the
 * order of its frames.
 *
 * Owns the connection's buffers and its answer queue. An answer is ready at
 * once (WELCOME, ERROR, ACK accepted) or when the store commits its pair
 * (ACK committed: the box delivers it); the queue goes out from its head
 * while the head is ready, so an async pair's ACK never overtakes an
 * earlier sync pair's. A connection that closes forgets its tickets: the
 * records still commit, nobody is told. */
#include "collect/collect_internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "pipeline/stats.h"

typedef struct answer {
    struct answer *next;
    cconn *c;
    pipeline_ticket *ticket; /* the commit it waits for, or NULL */
    bool ready;              /* frame holds the answer */
    bool close;              /* an ERROR close:true: the connection ends after it */
    uint32_t seq;
    char id[UUID7_STR_LEN + 1]; /* the record's, for an ACK */
    buf frame;                  /* owned */
} answer;

struct cconn {
    uv_pipe_t pipe;
    uv_timer_t timer; /* collect_timeout, while a frame is partial */
    int open_handles; /* pipe and timer: freed when both are closed */
    collect *d;
    cconn *prev, *next;
    buf in;          /* bytes read and not yet taken as frames; owned */
    uint8_t version; /* negotiated; 0 until the HELLO */
    answer *head, *tail;
    bool reading; /* false after a close:true error, or when stopping */
    bool closing;
    bool close_done; /* close once the answers owed are sent */
    size_t writes;   /* in flight */
};

typedef struct wreq {
    uv_write_t req;
    cconn *c;
    buf data; /* owned */
} wreq;

static void conn_close(cconn *c);

/* ---- answers ---- */

static answer *answer_push(cconn *c, uint32_t seq)
{
    answer *a = xcalloc(1, sizeof *a);
    a->c = c;
    a->seq = seq;
    if (c->tail)
        c->tail->next = a;
    else
        c->head = a;
    c->tail = a;
    return a;
}

static void answer_free(answer *a)
{
    buf_free(&a->frame);
    free(a);
}

static void on_written(uv_write_t *req, int status)
{
    wreq *w = (wreq *)req;
    cconn *c = w->c;
    buf_free(&w->data);
    free(w);
    c->writes--;
    if (c->closing)
        return;
    if (status < 0 || (c->close_done && !c->head && !c->writes))
        conn_close(c);
}

/* Sends the ready answers at the head of the queue, in order. */
static void conn_flush(cconn *c)
{
    if (c->closing)
        return;
    buf out = BUF_INIT;
    while (c->head && c->head->ready) {
        answer *a = c->head;
        c->head = a->next;
        if (!c->head)
            c->tail = NULL;
        buf_append(&out, a->frame.data, a->frame.len);
        bool last = a->close;
        answer_free(a);
        if (last) {
            /* Nothing after a close:true error is answered. */
            c->close_done = true;
            while (c->head) {
                answer *rest = c->head;
                c->head = rest->next;
                if (rest->ticket)
                    pipeline_ticket_forget(rest->ticket);
                answer_free(rest);
            }
            c->tail = NULL;
        }
    }
    if (out.len) {
        wreq *w = xcalloc(1, sizeof *w);
        w->c = c;
        w->data = out; /* moved */
        uv_buf_t b = uv_buf_init(w->data.data, (unsigned)w->data.len);
        c->writes++;
        if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, on_written) < 0) {
            c->writes--;
            buf_free(&w->data);
            free(w);
            conn_close(c);
            return;
        }
    }
    if (c->close_done && !c->head && !c->writes)
        conn_close(c);
}

/* Makes a ready: its frame of type with body (a JSON object, borrowed), in
 * the connection's version (version 1 until the HELLO is answered). */
static void answer_set(answer *a, uint8_t type, const buf *body)
{
    uint8_t v = a->c->version ? a->c->version : FRAME_VERSION;
    frame_append(&a->frame, v, type, a->seq, body->data, body->len);
    a->ready = true;
}

/* An ACK; "id" only for a PAIR's (a FLUSH's has none). */
static void answer_ack(answer *a, const char *status)
{
    buf b = BUF_INIT;
    buf_append_str(&b, "{\"status\":");
    buf_append_json_str(&b, status, strlen(status));
    if (a->id[0]) {
        buf_append_str(&b, ",\"id\":");
        buf_append_json_str(&b, a->id, strlen(a->id));
    }
    buf_append_char(&b, '}');
    answer_set(a, FRAME_ACK, &b);
    buf_free(&b);
}

static void answer_error(answer *a, const char *why, bool close)
{
    buf b = BUF_INIT;
    buf_append_str(&b, "{\"error\":");
    buf_append_json_str(&b, why, strlen(why));
    buf_appendf(&b, ",\"close\":%s}", close ? "true" : "false");
    answer_set(a, FRAME_ERROR, &b);
    a->close = close;
    buf_free(&b);
}

/* An ERROR for seq; with close, the stream is lost: reading stops, what
 * was read is dropped, and the connection closes once the error is out. */
static void conn_error(cconn *c, uint32_t seq, const char *why, bool close)
{
    answer_error(answer_push(c, seq), why, close);
    if (close) {
        c->reading = false;
        uv_read_stop((uv_stream_t *)&c->pipe);
        uv_timer_stop(&c->timer);
        buf_reset(&c->in);
    }
    conn_flush(c);
}

void collect_committed(void *owner, int status)
{
    answer *a = owner;
    assert(a->ticket && !a->ready);
    a->ticket = NULL;
    if (status == 0)
        answer_ack(a, "committed");
    else
        answer_error(a, "store: the pair could not be committed (nothing of it was stored)", false);
    conn_flush(a->c);
}

/* ---- frames ---- */

/* Keeps the captured copy of the bodies as the proxy does: none when the
 * decision keeps no body, else at most the rule's caps (the rest counted
 * in *_body_size, the copy marked truncated). */
static void keep_bodies(record *r, const capture_decision *dec)
{
    if (!dec->bodies) {
        buf_free(&r->req_body);
        buf_free(&r->resp_body);
        return;
    }
    if (r->req_body.len > dec->rule->req_body_cap) {
        r->req_body.len = (size_t)dec->rule->req_body_cap;
        r->req_truncated = true;
    }
    if (r->resp_body.len > dec->rule->resp_body_cap) {
        r->resp_body.len = (size_t)dec->rule->resp_body_cap;
        r->resp_truncated = true;
    }
}

/* A PAIR: decided, sunk, answered (at once, or when it commits). In
 * version 2 an async pair is answered only when it asks (FRAME_FLAG_ACK) or
 * is refused: the client learns of the others from the next answer, which
 * comes after theirs would have (docs/collect-protocol.md). */
static void on_pair(cconn *c, const frame_header *h, const char *body)
{
    collect *d = c->d;
    const config *cfg = d->cfg;
    const pipeline_sinks *pl = &d->sh.pl;
    char err[256];
    frame_pair p;
    if (frame_pair_decode(body, h->length, c->version, &p, err, sizeof err) < 0) {
        conn_error(c, h->seq, err, false);
        return;
    }
    const char *why = NULL;
    const rule *view = collect_view(d, &p, &why);
    if (!view) {
        frame_pair_free(&p);
        conn_error(c, h->seq, why, false);
        return;
    }
    record *r = p.rec;
    p.rec = NULL;
    r->node = xstrdup(cfg->node);
    STAT_INC(requests);
    capture_decision dec = pipeline_decide(pl, cfg, r, view, p.from_peer, false);
    keep_bodies(r, &dec);
    stats_request_done(r->method, r->status, r->duration_us, -1);
    bool too_big = dec.outbox && p.req_full.len > cfg->replicate_max_body;
    repl_msg *msg = pipeline_outbox(pl, cfg, r, dec.outbox, too_big,
                                    pipeline_status_replicates(cfg, r->status), &p.req_full);
    int durability = p.durability >= 0 ? p.durability : cfg->replicate_durability;
    bool answered = durability == REPL_SYNC || c->version < 2 || (h->flags & FRAME_FLAG_ACK);
    frame_pair_free(&p);
    if (!answered) {
        pipeline_sink(pl, cfg, dec.rule, r, msg, NULL, NULL); /* owns r and msg */
        return;
    }
    answer *a = answer_push(c, h->seq);
    memcpy(a->id, r->id, sizeof a->id);
    pipeline_box *box = durability == REPL_SYNC ? d->box : NULL;
    a->ticket = pipeline_sink(pl, cfg, dec.rule, r, msg, box, a); /* owns r and msg */
    if (!a->ticket)
        answer_ack(a, "accepted"); /* async, or nothing of it goes to the store */
    conn_flush(c);
}

/* Version 2's FLUSH: answered once every earlier frame is (answers go in
 * order), so the client knows the fate of every pair it sent before. */
static void on_flush(cconn *c, const frame_header *h)
{
    answer_ack(answer_push(c, h->seq), "accepted");
    conn_flush(c);
}

static void on_hello(cconn *c, const frame_header *h, const char *body)
{
    const char *why = NULL;
    uint8_t v = frame_hello_version(body, h->length, &why);
    if (!v) {
        conn_error(c, h->seq, why, true);
        return;
    }
    const config *cfg = c->d->cfg;
    buf b = BUF_INIT;
    buf_appendf(&b, "{\"version\":%u,\"max_frame\":%llu,\"node\":", (unsigned)v,
                (unsigned long long)cfg->collect_max_frame);
    buf_append_json_str(&b, cfg->node, strlen(cfg->node));
    buf_append_char(&b, '}');
    answer_set(answer_push(c, h->seq), FRAME_WELCOME, &b); /* in version 1, as the HELLO */
    buf_free(&b);
    c->version = v; /* every later frame, both ways */
    conn_flush(c);
}

/* One whole frame. */
static void on_frame(cconn *c, const frame_header *h, const char *body)
{
    if (!c->version) {
        if (h->type == FRAME_HELLO)
            on_hello(c, h, body);
        else
            conn_error(c, h->seq, "expected HELLO first", true);
        return;
    }
    switch (h->type) {
    case FRAME_PAIR:
        on_pair(c, h, body);
        return;
    case FRAME_FLUSH:
        on_flush(c, h);
        return;
    case FRAME_HELLO:
        conn_error(c, h->seq, "HELLO twice on one connection", true);
        return;
    default:
        conn_error(c, h->seq, "a client sends only HELLO, PAIR and FLUSH frames", true);
        return;
    }
}

static void on_timeout(uv_timer_t *t)
{
    cconn *c = t->data;
    conn_error(c, 0, "timeout: a partial frame waited longer than collect_timeout", true);
}

/* Takes every whole frame out of c->in, then keeps the rest (a partial
 * frame, timed by collect_timeout). */
static void conn_input(cconn *c)
{
    const config *cfg = c->d->cfg;
    size_t off = 0;
    while (c->reading && !c->closing) {
        frame_header h = {0};
        const char *body = NULL, *why = NULL;
        uint8_t version = c->version ? c->version : FRAME_VERSION;
        frame_status st =
            frame_take(&c->in, &off, version, (uint32_t)cfg->collect_max_frame, &h, &body, &why);
        if (st == FRAME_MORE)
            break;
        if (st == FRAME_BAD) {
            conn_error(c, h.seq, why, true);
            return; /* the input is dropped */
        }
        on_frame(c, &h, body);
    }
    if (!c->reading || c->closing)
        return;
    /* Keep the partial frame at the front. */
    if (off) {
        memmove(c->in.data, c->in.data + off, c->in.len - off);
        c->in.len -= off;
    }
    if (c->in.len)
        uv_timer_start(&c->timer, on_timeout, cfg->collect_timeout_ms, 0);
    else
        uv_timer_stop(&c->timer);
}

/* ---- the connection ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    cconn *c = h->data;
    *b = uv_buf_init(c->d->readbuf, sizeof c->d->readbuf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    cconn *c = s->data;
    if (n < 0) {
        /* EOF or an error: a partial frame is dropped, nothing of it kept;
         * answers still owed have nobody to go to. */
        conn_close(c);
        return;
    }
    if (n == 0 || !c->reading)
        return;
    buf_append(&c->in, b->base, (size_t)n);
    conn_input(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    cconn *c = h->data;
    if (--c->open_handles > 0)
        return;
    collect *d = c->d;
    if (c->prev)
        c->prev->next = c->next;
    else
        d->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    d->nconns--;
    buf_free(&c->in);
    free(c);
    if (d->stopping && !d->conns)
        collect_drained(d);
}

static void conn_close(cconn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->reading = false;
    while (c->head) {
        answer *a = c->head;
        c->head = a->next;
        if (a->ticket)
            pipeline_ticket_forget(a->ticket);
        answer_free(a);
    }
    c->tail = NULL;
    atomic_fetch_sub_explicit(&g_stats.active_connections, 1, memory_order_relaxed);
    uv_close((uv_handle_t *)&c->pipe, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

void collect_accept(collect *d)
{
    cconn *c = xcalloc(1, sizeof *c);
    c->d = d;
    uv_pipe_init(d->loop, &c->pipe, 0);
    uv_timer_init(d->loop, &c->timer);
    c->pipe.data = c->timer.data = c;
    c->open_handles = 2;
    c->next = d->conns;
    if (d->conns)
        d->conns->prev = c;
    d->conns = c;
    d->nconns++;
    STAT_INC(connections);
    atomic_fetch_add_explicit(&g_stats.active_connections, 1, memory_order_relaxed);
    if (uv_accept((uv_stream_t *)&d->server, (uv_stream_t *)&c->pipe) < 0) {
        conn_close(c);
        return;
    }
    if (d->nconns > d->cfg->max_connections) {
        STAT_INC(refused_connections);
        conn_close(c);
        return;
    }
    c->reading = true;
    uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

void collect_drain_all(collect *d)
{
    for (cconn *c = d->conns, *next; c; c = next) {
        next = c->next;
        if (c->closing)
            continue;
        c->reading = false;
        uv_read_stop((uv_stream_t *)&c->pipe);
        uv_timer_stop(&c->timer);
        c->close_done = true;
        conn_flush(c); /* closes it when nothing is owed */
    }
}

void collect_close_all(collect *d)
{
    for (cconn *c = d->conns, *next; c; c = next) {
        next = c->next;
        conn_close(c);
    }
}
