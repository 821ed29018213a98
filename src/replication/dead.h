/* dead: the dead letters of this node's replicator (queue
 * restspy.dead.<node>) and what an operator does with them: list them, show
 * one whole, retry one or all (back to restspy.apply.<node>), or skip one
 * (recorded in the store's ledger, never applied here). One implementation
 * for `restspy replication dead` and the admin API's /api/dead (the
 * console's Replication view), and one JSON form of a dead letter for both.
 *
 * Every call is blocking (rabbitmq-c, SQLite): the admin runs it on libuv's
 * thread pool, never on its loop. Promises about the messages, whatever
 * happens (docs/replication.md): dead_run takes every message of the dead
 * queue unacked, so a crash or a lost connection gives them all back; a
 * retried message leaves the dead queue only once the broker confirmed its
 * republish into the apply queue (declared first: a missing apply queue
 * would have the default exchange drop the republish while confirming it;
 * the republish is mandatory, so a queue deleted in between makes it stay
 * dead); a skipped one only once its skip is committed to the ledger;
 * everything else is rejected with requeue, as it was. Two operations on
 * the same queue at once (two operators) see each other's messages as
 * missing while they run: nothing is lost, an id may be "not found". */
#ifndef RESTSPY_DEAD_H
#define RESTSPY_DEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "capture/config.h"
#include "replication/mq.h"

/* How long a retry waits for the broker's confirms. */
#define DEAD_CONFIRM_WAIT_MS 10000
/* The whole form of a dead letter carries at most this many body bytes. */
#define DEAD_SHOW_BODY_MAX (64 << 10)
/* An id is named in full or by a unique prefix of at least this many
 * characters (case-insensitive). */
#define DEAD_PREFIX_MIN 8

/* What dead_run's callers get besides 0. */
enum {
    DEAD_OK = 0,
    DEAD_EBROKER = -1,    /* unreachable, refused, or did not confirm: err says which */
    DEAD_ENOTFOUND = -2,  /* no dead letter (nor, for a skip, stuck write) with that id */
    DEAD_EAMBIGUOUS = -3, /* the prefix names several */
    DEAD_ESTORE = -4,     /* the store could not be opened or written */
    DEAD_ENOSTORE = -5,   /* a skip without a store (store off): nowhere to record it */
};

typedef enum {
    DEAD_LIST,      /* take them all and give them all back */
    DEAD_SHOW,      /* the same; result.named is the one id names */
    DEAD_RETRY,     /* republish the one id names */
    DEAD_RETRY_ALL, /* republish every one */
    DEAD_SKIP,      /* record the one id names as skipped: a dead letter, or
                     * a write the replicator still retries (a stuck row) */
} dead_op;

/* One message of the dead queue and what happened to it. */
typedef struct dead_letter {
    mq_event ev;    /* owns ev.msg and ev.reason (x-restspy-reason) */
    bool retry;     /* to be republished */
    bool confirmed; /* the republish was confirmed: it left the dead queue */
    bool returned;  /* the broker could not route the republish: it stays dead */
    bool skipped;   /* recorded in the ledger as skipped: it left the dead queue */
    uint64_t pub_tag;
} dead_letter;

/* What dead_run did. Owns v (dead_result_free); zero it before the call. */
typedef struct dead_result {
    dead_letter *v; /* every message the dead queue held, oldest first */
    size_t len, cap;
    long named;      /* index in v of the message id named, or -1 */
    char *stuck_id;  /* DEAD_SKIP of a stuck write: its whole id (owned); else NULL */
    char queue[300]; /* restspy.dead.<node> */
    char apply_queue[300];
} dead_result;

/* Does op on the dead letters of c->node through the broker c->amqp
 * (heartbeat, queue type from c), client_name shown in the broker's
 * connection list; id (DEAD_SHOW, DEAD_RETRY, DEAD_SKIP) a whole id or a
 * unique prefix of DEAD_PREFIX_MIN+ characters; a skip records in c->store
 * (its own connection, opened for the skip and closed). Fills *out (also
 * on failure: the messages taken, in their final state) and returns
 * DEAD_OK, or one of the DEAD_E* codes with a one-line err. */
int dead_run(const config *c, dead_op op, const char *id, const char *client_name, dead_result *out,
             char *err, size_t errlen);

void dead_result_free(dead_result *r);

/* The index of ids[0..n) that is id (case-insensitive), or the one that
 * starts with id when id has DEAD_PREFIX_MIN+ characters; -1 none, -2
 * ambiguous. */
long dead_find_id(const char *const *ids, size_t n, const char *id);

/* Appends d as one JSON object: whole false, the list form {"id", "origin",
 * "method", "target", "timestamp", "reason", "body_size", "retried",
 * "skipped"}; whole true, {"id", "origin", "method", "target",
 * "timestamp", "reason", "content_type", "signed", "headers" ([[name,
 * value], ...] or null when unreadable), "body_size", "body" (its first
 * DEAD_SHOW_BODY_MAX bytes), "body_truncated"}. Absent fields are null. */
void dead_json(const dead_letter *d, bool whole, buf *b);

#endif
