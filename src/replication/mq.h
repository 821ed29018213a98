/* mq: restspy's use of RabbitMQ (rabbitmq-c 0.11), behind a few calls.
 *
 * Owns one AMQP connection and one channel (rabbitmq-c connections are not
 * thread-safe: each mq belongs to one thread). Every call is blocking with a
 * bounded wait; heartbeats are serviced whenever a call waits for frames, so
 * a caller that is otherwise idle must call mq_poll regularly. Promises: any
 * failure is reported as -1 with a one-line err, after which the mq is dead
 * (the caller closes it and reconnects); nothing here retries on its own.
 *
 * Topology (docs/replication.md), declared idempotently by
 * mq_declare_topology: topic exchanges restspy.requests (local proxies
 * publish here), restspy.inbound (the peers' shovels publish here),
 * restspy.dead; queue restspy.apply.<node> bound to restspy.inbound with
 * "#" and dead-lettering to restspy.dead with routing key <node>; queue
 * restspy.dead.<node> bound to restspy.dead with <node>. The per-peer
 * queues restspy.out.<peer> and the shovels are `restspy federate`'s: only
 * it knows the peers. */
#ifndef RESTSPY_MQ_H
#define RESTSPY_MQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/repl_msg.h"

#define MQ_EXCHANGE_REQUESTS "restspy.requests"
#define MQ_EXCHANGE_INBOUND "restspy.inbound"
#define MQ_EXCHANGE_DEAD "restspy.dead"

typedef struct mq mq;

/* url: amqp://user:pass@host:port/vhost (percent-encoded parts; defaults
 * guest/guest, port 5672, vhost "/"). name is shown in the broker's
 * connection list. NULL with err on failure. */
mq *mq_connect(const char *url, unsigned heartbeat_s, const char *name, char *err, size_t errlen);

/* The virtual host url names (the same reading as mq_connect: "/" when it
 * names none), owned by the caller; NULL when url is not an amqp:// URL. */
char *mq_url_vhost(const char *url);
void mq_close(mq *m); /* NULL is fine */

/* The one call another thread may make: shuts m's socket down so that a
 * call blocked on it (a publish into a full TCP window: rabbitmq-c writes
 * without a deadline) returns -1 at once. The caller guarantees that m is
 * not being closed meanwhile. NULL is fine. */
void mq_interrupt(mq *m);

/* queue_type: QUEUE_CLASSIC or QUEUE_QUORUM (config.h). */
int mq_declare_topology(mq *m, const char *node, int queue_type, char *err, size_t errlen);

/* Whether queue exists (a passive declare): 1 yes, 0 no, -1 error. The
 * broker answers "no" by closing the channel, so after 0 (as after -1) m is
 * dead: only mq_close is left. */
int mq_queue_exists(mq *m, const char *queue, char *err, size_t errlen);

/* Publisher confirms: after mq_confirm_select, the n-th publish has delivery
 * tag n (1-based), and mq_poll reports the broker's acks and nacks. */
int mq_confirm_select(mq *m, char *err, size_t errlen);

/* Publishes msg persistently (delivery_mode 2, app_id restspy, message_id,
 * timestamp, content_type, x-restspy-* headers) with msg->routing_key, as
 * mandatory: when no queue takes it, the broker gives it back (an
 * MQ_RETURN event from mq_poll, which comes before the confirm of that
 * publish) instead of dropping it while confirming it. *tag (may be NULL)
 * gets its delivery tag when confirms are on. */
int mq_publish(mq *m, const char *exchange, const repl_msg *msg, uint64_t *tag, char *err,
               size_t errlen);

/* Publishes a receipt's carrier (formats/receipt.h) on restspy.requests,
 * persistently, with the AMQP type "restspy.receipt" and its routing key,
 * NOT mandatory: a receipt no queue takes is dropped (receipts are
 * informational; nothing may come back to be taken for a returned dead
 * letter). *tag (may be NULL) gets its delivery tag when confirms are on. */
int mq_publish_receipt(mq *m, const repl_msg *carrier, uint64_t *tag, char *err, size_t errlen);

/* Dead-letters msg: publishes it to restspy.dead with routing key node and
 * header x-restspy-reason = reason (plus x-restspy-dead-at, Unix seconds).
 * Mandatory, as every publish that hands a message over: when
 * restspy.dead.<node> is gone, it comes back as MQ_RETURN and the caller
 * must keep the original. */
int mq_publish_dead(mq *m, const char *node, const repl_msg *msg, const char *reason, char *err,
                    size_t errlen);

/* Starts consuming queue with manual acks and the given prefetch. */
int mq_consume(mq *m, const char *queue, uint16_t prefetch, char *err, size_t errlen);

typedef enum {
    MQ_NONE = 0, /* timeout: nothing arrived (heartbeats were serviced) */
    MQ_CONFIRM,  /* a publisher confirm: tag, multiple, nack */
    MQ_DELIVERY, /* a consumed message: msg (caller frees), tag, redelivered */
    MQ_RETURN,   /* a mandatory publish no queue took: msg (caller frees; its id
                  * tells which publish, a return carries no delivery tag),
                  * reply_code and reason (312 "NO_ROUTE"). Its confirm (an ack)
                  * follows it: the ack says the broker is done with the
                  * publish, not that anything holds it. */
} mq_event_kind;

typedef struct mq_event {
    mq_event_kind kind;
    uint64_t tag;
    bool multiple;       /* MQ_CONFIRM: the ack covers every tag <= tag */
    bool nack;           /* MQ_CONFIRM: the broker refused */
    bool redelivered;    /* MQ_DELIVERY */
    bool receipt;        /* MQ_DELIVERY, MQ_RETURN: the AMQP type is "restspy.receipt":
                          * msg is a receipt's carrier (formats/receipt.h), not a write */
    uint16_t reply_code; /* MQ_RETURN */
    repl_msg *msg;       /* MQ_DELIVERY, MQ_RETURN: fields that are absent stay NULL;
                          * msg->routing_key is the one it was published with */
    char *reason;        /* caller frees. MQ_DELIVERY: x-restspy-reason when present;
                          * MQ_RETURN: the broker's reply text */
} mq_event;

/* Lets another thread cut mq_poll's wait short: while fd (non-blocking,
 * readable when something is written to it: an eventfd or a pipe's read
 * end; not owned, -1 for none) is readable, mq_poll drains it and returns
 * at once with MQ_NONE. So a caller that waits on the broker and on its own
 * workers needs no short polling interval. */
void mq_set_wake(mq *m, int fd);

/* Waits up to timeout_ms for the next event. 0 (ev->kind may be MQ_NONE) or
 * -1 with err when the connection is lost or the broker closed the channel. */
int mq_poll(mq *m, int timeout_ms, mq_event *ev, char *err, size_t errlen);

int mq_ack(mq *m, uint64_t tag, char *err, size_t errlen);
/* requeue false: the broker dead-letters it (queue's DLX). */
int mq_reject(mq *m, uint64_t tag, bool requeue, char *err, size_t errlen);

/* basic.get from queue without auto-ack: 1 with *ev filled (MQ_DELIVERY),
 * 0 when the queue is empty, -1 error. */
int mq_get(mq *m, const char *queue, mq_event *ev, char *err, size_t errlen);

/* Publishes msg to the default exchange with routing key queue (a requeue
 * of a dead letter straight into an apply queue); mandatory, as above. */
int mq_publish_to_queue(mq *m, const char *queue, const repl_msg *msg, char *err, size_t errlen);

#endif
