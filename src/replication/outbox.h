/* outbox: the publisher thread that moves outbox rows to RabbitMQ.
 *
 * Owns one thread and its AMQP connection (mq). The outbox table, written by
 * the store in the same transaction as the capture record, is the source of
 * truth: this thread reads rows in seq order, publishes them to
 * restspy.requests with publisher confirms (several in flight), and tells the
 * store which rows the broker confirmed so they are deleted. Promises: a row
 * leaves the outbox only after the broker confirmed it AND a queue took it
 * (publishes are mandatory: one the broker returns as unroutable stays, is
 * counted in `returned`, told, and retried with backoff); after any failure
 * (broker down, connection lost, a nack) it reconnects with backoff and
 * republishes everything not confirmed, so delivery is at least once (the
 * replicators dedupe by message_id). A broker that is down or slow never
 * touches the proxy's request path: the outbox grows and drains later.
 * The connection's state changes are told through the log callback, one
 * line each and rate-limited: the first connection, an outage (at once,
 * unless an earlier one was told less than log_interval ago: a flapping
 * broker), "still unreachable" every log_interval while it lasts, and the
 * connection coming back after an outage that was told. */
#ifndef RESTSPY_OUTBOX_H
#define RESTSPY_OUTBOX_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

typedef struct outbox outbox;

typedef struct outbox_options {
    const char *amqp_url;
    const char *node;
    int queue_type; /* QUEUE_* (declares this node's topology too) */
    unsigned heartbeat_s;
    unsigned max_in_flight; /* unconfirmed publishes at once (default 256) */
    uint64_t retry_min_ms;  /* reconnect backoff */
    uint64_t retry_max_ms;
    /* Called on the publisher thread with one line (no newline, no
     * password) per state change worth telling; NULL: none. */
    void (*log)(void *ud, const char *line);
    void *log_ud;
    uint64_t log_interval_ms; /* see above; 0 = 60 s */
} outbox_options;

typedef struct outbox_stats {
    bool connected;
    uint64_t published; /* publishes sent (republishes included) */
    uint64_t confirmed; /* rows confirmed by the broker */
    uint64_t reconnects;
    uint64_t nacks;
    int64_t last_confirmed_us;   /* wall clock of the last confirm, 0 = none */
    int64_t down_since_us;       /* wall clock since when it is not connected; 0 = connected */
    uint64_t failed_attempts;    /* connections failed or lost since the last good one */
    uint64_t returned;           /* publishes the broker returned as unroutable (kept) */
    int64_t unroutable_since_us; /* wall clock of the first return since the last
                                  * publish that was routed; 0 = routing works */
    char last_error[256];        /* empty when none */
} outbox_stats;

/* Starts the thread (it connects by itself; a broker that is down is not an
 * error here). The store must outlive the outbox. */
outbox *outbox_start(store *s, const outbox_options *o, char *err, size_t errlen);

void outbox_get_stats(outbox *o, outbox_stats *out);

/* Stops the thread and closes the connection; rows not confirmed stay in the
 * outbox for the next start. NULL is fine. */
void outbox_stop(outbox *o);

#endif
