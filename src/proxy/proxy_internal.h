/* proxy_internal: what the files of proxy/ share about a client connection
 * and the request in flight on it. Not for use outside src/proxy/.
 *
 * A request's path through the folder, one file per step:
 *   connection.c  the client connection: accept, reads and writes,
 *                 keep-alive, pipelining, timeouts, close, drain
 *   txn.c         the transaction: request parsing and its checks, the
 *                 rule, forwarding decisions, error answers, the request's end
 *   relay.c       the upstream side: connect, send the head and body, parse
 *                 and relay the response, upgrades (tunnels)
 *   commit.c      the capture commit: the record and its outbox message
 *                 handed to the capture pipeline (pipeline/pipeline.h, which
 *                 `restspy collect` shares), sync-durability commit waits
 * Everything runs on the worker's loop. */
#ifndef RESTSPY_PROXY_INTERNAL_H
#define RESTSPY_PROXY_INTERNAL_H

#include <llhttp.h>

#include "base/iostream.h"
#include "capture/record.h"
#include "capture/rules.h"
#include "http/httpmsg.h"
#include "proxy/proxy.h"

/* Most pipelined bytes kept unparsed before the client's reads pause. */
#define PENDING_MAX (64 * 1024)

/* Where a connection is in its current request. */
typedef enum {
    PH_IDLE,   /* waiting for the first byte of a request */
    PH_HEAD,   /* receiving the request line and headers */
    PH_BODY,   /* headers forwarded, receiving the request body */
    PH_WAIT,   /* request complete, waiting for the response to finish */
    PH_TUNNEL, /* after 101: raw bytes both ways */
    PH_COMMIT, /* answered but for its last bytes: waiting for the store's commit */
} phase;

/* The request in flight on a connection: everything that lives for one
 * request. txn_begin frees what the previous one still owned and then
 * zeroes it whole (one store of the struct, no field left behind).
 * Ownership: rec is owned from txn_begin until sink_record hands it to the
 * sinks (NULL outside a request); cfg is a reference taken by txn_begin and
 * dropped by txn_close_record; rule points into cfg; up is lent by the pool
 * until txn_close_record releases it (a tunnel keeps it to the close);
 * repl_body is owned here (freed by the next txn_begin or the close); ticket
 * is shared with the store's writer thread until the commit arrives. */
struct txn {
    record *rec;
    config *cfg;
    const rule *rule; /* NULL until the headers are in */
    int64_t t0;       /* monotonic µs at the first byte */
    int64_t up_t0;    /* monotonic µs when the request went upstream */
    bool keep_alive, head_req, upgrade_req, req_chunked, req_done;
    bool cap_req, cap_resp;
    int err_status; /* set by parser callbacks before returning HPE_USER */
    const char *err_text;
    size_t header_bytes;
    unsigned req_crlf; /* bytes of a chunk's closing CRLF still to check */

    /* upstream side of the request */
    upstream_conn *up;
    bool up_ready;          /* connected and the head is written */
    bool up_paused;         /* upstream reads paused: the client is not keeping up */
    unsigned resp_crlf;     /* as req_crlf, for the response */
    size_t resp_head_bytes; /* of the response head being parsed */
    uint64_t interim;       /* 1xx answers relayed for this request */
    const char *resp_err;   /* why a response callback refused it (502) */
    bool resp_started, resp_done, up_keepalive;
    httpmsg_body resp_mode;
    bool retried;    /* a bodyless request resent once on a fresh connection */
    bool body_drain; /* answered before the request body ended: the rest is
                        read and captured, not forwarded */

    /* replication of the request */
    bool repl;               /* candidate (rule, flag, method, amqp); may be dropped later */
    bool repl_too_big;       /* its body passed replicate_max_body */
    bool repl_status_ok;     /* the upstream answered as replicate_on wants */
    bool hold;               /* sync durability: the last client write waits */
    buf repl_body;           /* the whole request body, up to replicate_max_body */
    bool again;              /* after the commit: go on with the next request */
    pipeline_ticket *ticket; /* the commit being waited for */
};

struct conn {
    uv_tcp_t tcp;
    tls_conn *tls;     /* NULL on a plain HTTP listener; owned, freed with the connection */
    uv_timer_t ctimer; /* idle / header / body-read timeout (client side) */
    uv_timer_t utimer; /* upstream response timeout */
    uv_shutdown_t sreq;
    proxy_worker *w;
    conn *next, *prev;
    int open_handles;
    bool closing;
    bool reading;       /* uv_read_start is active on the client */
    bool paused_bp;     /* client reads paused: upstream is not keeping up */
    bool in_feed;       /* inside client_feed (llhttp_execute on the stack) */
    bool parser_paused; /* a request is complete; later bytes wait in pending */
    bool client_eof;    /* client half-closed after its request */
    char client_ip[64];
    char client_addr[80];
    io_cork ccork; /* toward the client, on while a response is parsed */
    io_cork ucork; /* toward the upstream, on while a request is parsed */

    llhttp_t cp; /* request parser, lives as long as the connection */
    llhttp_t rp; /* response parser, re-initialised for each request */
    buf pending; /* bytes read but not parsed yet (pipelined requests) */

    /* Scratch buffers, owned by the connection and freed with it: each
     * request resets them but keeps their memory (regrowing them cost
     * reallocations per request). */
    buf url;               /* request target being parsed */
    httpmsg_hcollect hc;   /* request header being parsed */
    httpmsg_hcollect rhc;  /* response header being parsed */
    buf reason;            /* response reason phrase */
    buf upq;               /* bytes for the upstream while it is connecting */
    buf uphead;            /* copy of a bodyless request's head sent on a pooled
                              connection, to retry once if that connection was dead */
    buf held;              /* hold mode: the last bytes written to the client, not sent yet */
    const char *feed_end;  /* end of the bytes llhttp_execute has, in callbacks */
    const char *rfeed_end; /* as feed_end, for the response parser */

    phase ph;
    struct txn txn; /* the request in flight (txn.rec != NULL) */
};

/* A callback can close the connection (a write to a client that has gone
 * fails) while llhttp still holds the rest of the buffer: every callback
 * then stops the parser instead of touching the request that is gone. */
#define PARSER_STOP(c) ((c)->closing || !(c)->txn.rec)

/* ---- connection.c: the client side */

/* The worker's current config; a reload is picked up here, between requests. */
config *worker_config(proxy_worker *w);
/* Writes to the client (held back by one write in hold mode). */
void client_write(conn *c, const uv_buf_t *bufs, unsigned n);
void client_write_buf(conn *c, const buf *b);
/* Sends what the client cork gathered and turns it off. */
void client_uncork(conn *c);
/* Sends the bytes held back in hold mode. */
void flush_held(conn *c);
void client_resume_reading(conn *c);
/* Ends a backpressure pause of the client's reads. */
void unpause_client(conn *c);
/* Parses the bytes kept back while a request was answered. */
void feed_pending(conn *c);
/* The client timer: idle, request head, request body, response head. */
void on_ctimer(uv_timer_t *t);
/* Closes the connection (graceful: what is queued reaches the client
 * first); a request still in flight is captured. Idempotent. */
void conn_close(conn *c, bool graceful);

/* ---- txn.c: the request/response transaction */

/* The request parser's callbacks. */
extern const llhttp_settings_t txn_request_settings;
/* Answers the request in flight with a JSON error (status != 0), or, when
 * the response has already started (status 0), aborts the connection. */
void txn_fail(conn *c, int status, const char *error, const char *detail);
/* Request and response complete: close the record, then the next request
 * (or the wait for the commit, in hold mode). */
void txn_finish(conn *c);
/* Ends the request in flight: timings, the upstream connection back, the
 * record to the sinks. */
void txn_close_record(conn *c, bool upstream_reusable);
/* After a request: the next one on the connection, or the close. */
void txn_continue(conn *c);

/* ---- relay.c: the upstream side */

/* Opens the upstream side of the request whose head is in c->upq: a fresh
 * response parser and a connection from the pool (a ready one gets the head
 * at once). has_body: a bodyless head is kept to retry once on a fresh
 * connection if the pooled one was dead. */
void relay_open(conn *c, bool has_body);
/* Sends bytes (n <= 3 pieces) toward the upstream. */
void relay_send(conn *c, const uv_buf_t *bufs, unsigned n);
/* Forwards one piece of request body, re-framed when chunked. */
void relay_send_body(conn *c, const char *at, size_t len);
/* Sends what the upstream cork gathered and turns it off. */
void relay_uncork(conn *c);
/* Empties the connect queue (its memory kept unless large). */
void upq_clear(conn *c);
/* After a 101: raw bytes both ways; rest (restlen) came after the head. */
void start_tunnel(conn *c, const char *rest, size_t restlen);

/* ---- commit.c: the capture commit */

/* Hands the finished record to the sinks; they own or drop it after this.
 * In hold mode it starts the wait for the commit (c->ticket). */
void sink_record(conn *c);

#endif
