/* iostream: writing to libuv streams without copying in the common case.
 *
 * Owns the copies of data it could not write at once. Promises: bytes are
 * written in call order; a call first tries uv_try_write (on loopback and
 * healthy peers this writes everything, with no allocation and no copy); only
 * the unwritten tail is copied into one heap block owned by the queued write
 * request and freed when the write completes, so callers may reuse their
 * buffers as soon as io_write returns. done (may be NULL) runs after a queued
 * write completes, with its status, so the owner can resume a paused reader
 * once the queue drains (backpressure). */
#ifndef RESTSPY_IOSTREAM_H
#define RESTSPY_IOSTREAM_H

#include <stdbool.h>
#include <uv.h>

#include "base/buf.h"

typedef void (*io_done_cb)(uv_stream_t *s, int status);

/* Writes bufs[0..n). 0 or a libuv error (the stream is then unusable). */
int io_write(uv_stream_t *s, const uv_buf_t *bufs, unsigned n, io_done_cb done);

/* Bytes queued and not yet written. */
size_t io_queued(const uv_stream_t *s);

/* Above this many queued bytes a reader feeding s should pause. */
#define IO_HIGH_WATER (256 * 1024)
/* Resume the paused reader once the queue is below this. */
#define IO_LOW_WATER (64 * 1024)

/* A cork gathers the small writes made while one read is handled, so that
 * a message's head and body leave in one write(2) call instead of one per
 * piece (syscalls are most of a proxy's cost on small messages). It owns
 * the copies it holds; pieces too big to copy cheaply are not taken, and
 * the caller writes them behind what the cork holds, in one call. */
typedef struct io_cork {
    buf b;
    bool on;
} io_cork;

/* Largest number of bytes a cork copies. */
#define IO_CORK_MAX (16 * 1024)

/* When k is on and bufs[0..n) fit, copies them into k and returns true;
 * otherwise returns false and leaves k as it is. */
bool io_cork_take(io_cork *k, const uv_buf_t *bufs, unsigned n);

/* Fills out with what k holds (when anything) followed by bufs[0..n);
 * returns the number of entries (at most n + 1). The cork's bytes stay
 * valid until io_cork_clear. */
unsigned io_cork_gather(const io_cork *k, const uv_buf_t *bufs, unsigned n, uv_buf_t *out);

/* Forgets what k holds (keeps its memory for the next use). */
void io_cork_clear(io_cork *k);

/* Frees k's memory. */
void io_cork_free(io_cork *k);

#endif
