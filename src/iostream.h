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

#include <uv.h>

typedef void (*io_done_cb)(uv_stream_t *s, int status);

/* Writes bufs[0..n). 0 or a libuv error (the stream is then unusable). */
int io_write(uv_stream_t *s, const uv_buf_t *bufs, unsigned n, io_done_cb done);

/* Bytes queued and not yet written. */
size_t io_queued(const uv_stream_t *s);

/* Above this many queued bytes a reader feeding s should pause. */
#define IO_HIGH_WATER (256 * 1024)
/* Resume the paused reader once the queue is below this. */
#define IO_LOW_WATER (64 * 1024)

#endif
