/* proxy: the reverse proxy proper, the main header of src/proxy/. One client
 * connection, from its first byte to its close, and every request on it:
 * parse (llhttp, strict), choose the rule, forward to the upstream while
 * streaming bodies both ways, capture the record, hand it to the sinks.
 * A request's path reads connection.c -> txn.c -> relay.c -> commit.c (see
 * proxy_internal.h); upstream.c is the backend connection pool, listener.c
 * the worker threads, admin.c the operators' API, server.c the command.
 *
 * Owns client connections and the requests in flight on them. Runs entirely
 * on its worker's event loop (no locks except inside the sinks). Promises:
 * requests on a connection are answered in order, one at a time (pipelined
 * ones wait, unparsed, in the connection's pending buffer); bodies are never
 * held whole, only the capture copy up to the rule's cap; every request that
 * started (even one that failed to parse) yields exactly one record.
 *
 * Replication: a request its rule replicates (and that the upstream answers
 * as replicate_on wants) leaves with its record an outbox message built from
 * the full request body (buffered up to replicate_max_body). With
 * replicate_durability = sync the last bytes of its response are held back
 * until the store has committed record and outbox row: a client never sees a
 * complete answer to a write that could still be lost. */
#ifndef RESTSPY_PROXY_H
#define RESTSPY_PROXY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "base/tls.h"
#include "capture/config.h"
#include "pipeline/pipeline.h"
#include "proxy/upstream.h"

/* What every worker shares: sinks, the current config and the upstream.
 * `restspy collect` fills one too, without the upstream, for the admin API
 * it shares with the proxy. */
typedef struct proxy_shared {
    pipeline_sinks pl; /* store, log, outbox, tap: the capture pipeline's */
    struct sockaddr_storage upstream_addr;
    char upstream_host[300]; /* "host:port", the Host for clients that sent none */
    tls_client *up_tls;      /* an https upstream's TLS context, or NULL (plain http) */
    pthread_mutex_t cfg_lock;
    config *cfg;              /* current config; replaced on reload */
    tls_server *tls;          /* the listener's certificates with cfg, or NULL (plain) */
    _Atomic uint64_t cfg_gen; /* bumped on every replacement */
} proxy_shared;

typedef struct conn conn;

/* One event loop's share of the proxy. */
typedef struct proxy_worker {
    uv_loop_t *loop;
    proxy_shared *sh;
    upstream_pool *pool;
    char *readbuf; /* the loop's read buffer, shared by all its sockets */
    size_t readbuf_len;
    config *cfg;     /* this loop's reference to the current config */
    tls_server *tls; /* and to its certificates (NULL: plain HTTP) */
    uint64_t cfg_gen;
    conn *conns; /* list of open client connections */
    size_t nconns;
    bool draining;
    void (*on_drained)(struct proxy_worker *w); /* draining and no connection left */
    uv_async_t commit_async; /* the store's commits (sync durability) wake the loop */
    pipeline_box *commits;   /* their mailbox (pipeline.h) */
} proxy_worker;

/* Sets up the worker's own handles on its loop (after loop, sh and pool). */
void proxy_worker_init(proxy_worker *w);
/* Closes them; commits that arrive later are dropped safely. */
void proxy_worker_close(proxy_worker *w);

/* Installs cfg and the listener's certificates made from it (NULL: plain
 * HTTP) as the current ones (takes a reference to each) and bumps the
 * generation: each worker picks them up before its next request or
 * connection. Connections keep the certificates they started with. */
void proxy_shared_set_config(proxy_shared *sh, config *cfg, tls_server *tls);

/* Accepts one pending connection from listener (refuses it past
 * max_connections). */
void proxy_accept(proxy_worker *w, uv_stream_t *listener);

/* Stops keep-alive: idle connections close now, busy ones after their
 * current request (and its commit, in sync durability). on_drained runs
 * once none is left (maybe at once). */
void proxy_drain(proxy_worker *w);

/* Grace period over: closes every connection now; unfinished requests are
 * captured with error "shutdown". */
void proxy_abort_all(proxy_worker *w);

#endif
