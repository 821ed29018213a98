/* upstream: connections to the backend, and a per-worker keep-alive pool.
 *
 * Owns upstream sockets, their connect timers and the idle list. One pool
 * per event loop (no locks). Promises: a connection is lent to one owner at a
 * time and reports to it only through its handler; after upstream_release the
 * owner never hears from it again. Idle connections keep reading so that a
 * backend closing one is noticed at once and it is never lent out dead; any
 * byte from an idle connection is a protocol error and closes it. */
#ifndef RESTSPY_UPSTREAM_H
#define RESTSPY_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "base/tls.h"

typedef struct upstream_pool upstream_pool;
typedef struct upstream_conn upstream_conn;

typedef struct upstream_handler {
    /* The connect (and for an https upstream, the TLS handshake) finished:
     * status 0, UV_ETIMEDOUT (connect timeout, which covers the handshake),
     * UV_EPROTO with why ("certificate verify failed: ...", "handshake
     * failed: ...") when TLS failed, or another libuv error (why NULL). On
     * error the connection is already gone. */
    void (*on_connect)(void *owner, upstream_conn *up, int status, const char *why);
    /* Bytes read; data lives only for the call. */
    void (*on_data)(void *owner, upstream_conn *up, const char *data, size_t len);
    /* The backend closed (UV_EOF) or the socket failed. */
    void (*on_eof)(void *owner, upstream_conn *up, int status);
    /* Queued writes dropped below IO_LOW_WATER after having been above it. */
    void (*on_drain)(void *owner, upstream_conn *up);
} upstream_handler;

/* readbuf (owned by the caller, outliving the pool) is the loop's shared read
 * buffer: reads are handed to on_data and must be consumed during the call.
 * tls (the caller's, outliving the pool; NULL for plain http): every
 * connection is TLS with it, and is lent as connected only once its
 * handshake is done; the owner reads and writes plaintext as before. */
upstream_pool *upstream_pool_new(uv_loop_t *loop, const struct sockaddr *addr,
                                 uint64_t keepalive_max, uint64_t connect_timeout_ms,
                                 uint64_t idle_timeout_ms, tls_client *tls, char *readbuf,
                                 size_t readbuf_len);

/* Lends a connection to owner. *ready is true for a pooled connection that
 * can be written at once; otherwise it is connecting and on_connect follows
 * (never from inside this call). fresh: never take a pooled one (a retry). */
upstream_conn *upstream_acquire(upstream_pool *p, const upstream_handler *h, void *owner,
                                bool fresh, bool *ready);

/* Writes (see io_write). 0 or a libuv error. */
int upstream_write(upstream_conn *up, const uv_buf_t *bufs, unsigned n);
/* Why TLS failed on the connection after its handshake ("TLS failed:
 * tlsv13 alert certificate required"), for on_eof's UV_EPROTO; else NULL. */
const char *upstream_tls_error(const upstream_conn *up);
/* Bytes queued on the socket. */
size_t upstream_queued(const upstream_conn *up);
void upstream_pause(upstream_conn *up);
void upstream_resume(upstream_conn *up);

/* The owner is done. reusable: the exchange ended cleanly and the backend
 * allows keep-alive, so it may go back to the pool (if there is room);
 * otherwise it is closed. */
void upstream_release(upstream_conn *up, bool reusable);

/* Closes idle connections and frees the pool once every lent connection has
 * been released and closed. done runs when all handles are closed. */
void upstream_pool_close(upstream_pool *p, void (*done)(void *ud), void *ud);

#endif
