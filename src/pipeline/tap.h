/* tap: the captured requests as they complete, for the admin's live
 * consoles (GET /api/live, Server-Sent Events).
 *
 * Owns a bounded queue of light record copies (no headers, no bodies:
 * record_copy_light) between the workers, which publish, and the admin's
 * loop, which drains. Promises: a worker never waits on a console: while
 * nobody listens a request costs one relaxed atomic load; while someone
 * does, a copy and one short locked push, for as many requests a second as
 * the consoles can take (tap_allow); beyond that, or when the queue is
 * full, the request is only counted as dropped (the consoles are told how
 * many).
 * Records are published after redaction, as the log and the store get
 * them. */
#ifndef RESTSPY_TAP_H
#define RESTSPY_TAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "capture/record.h"

typedef struct tap tap;

/* Most records waiting for the admin's loop. */
#define TAP_QUEUE_MAX 4096

/* A tap whose async handle lives on loop (the admin's). */
tap *tap_new(uv_loop_t *loop);
/* ready(ud) runs on loop after publishes (several coalesce into one). */
void tap_on_ready(tap *t, void (*ready)(void *ud), void *ud);
/* Closes its handle and frees it (on the admin's loop, workers stopped). */
void tap_free(tap *t);

/* The number of listeners changes by delta (admin's loop). */
void tap_listen(tap *t, int delta);
/* Whether anyone listens (any thread; t may be NULL). */
bool tap_wanted(const tap *t);

/* Lets the next n publishes be copied (the admin's loop sets it each
 * second from what its streams can send); the publishes beyond it are
 * counted as dropped. */
void tap_allow(tap *t, int64_t n);

/* Queues a light copy of r (any thread), or counts it as dropped when the
 * queue is full or the budget spent. */
void tap_publish(tap *t, const record *r);

/* Takes what is queued (admin's loop): *out (owned by the caller, each
 * record and the array) holds *n records, oldest first; returns how many
 * were dropped since the last call. */
uint64_t tap_take(tap *t, record ***out, size_t *n);

#endif
