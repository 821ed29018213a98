/* federate: a site's broker set up for replication through the RabbitMQ
 * management API, idempotently: the exchanges, this node's queues and
 * bindings (as mq_declare_topology), and per peer a durable queue
 * restspy.out.<peer> bound to restspy.requests and a shovel moving it to the
 * peer's restspy.inbound (ack-mode on-confirm); it removes the exchange
 * federation an older restspy set up once the peers hold this site's writes.
 * With print, the equivalent commands are printed instead. `restspy
 * federate` (cli/cli_federate.c) is its command line. */
#ifndef RESTSPY_FEDERATE_H
#define RESTSPY_FEDERATE_H

#include <stdbool.h>
#include <stddef.h>

#include "replication/mgmt.h"

/* The names federate gives per peer: this site's queue of the writes the
 * peer does not have yet, and the shovel moving them (repl_peers reads
 * both back). */
#define FEDERATE_OUT_PREFIX "restspy.out."
#define FEDERATE_SHOVEL_PREFIX "restspy-to-"

/* A peer site, as the command line checked it. */
typedef struct federate_peer {
    char *name; /* its node name (letters, digits, '-' and '_'), not this node's */
    char *uri;  /* amqp[s]://... at which this broker reaches the peer's, no trailing '/' */
} federate_peer;

typedef struct federate_opts {
    const char *node;           /* this node */
    int queue_type;             /* QUEUE_* for this node's queues */
    const federate_peer *peers; /* borrowed */
    size_t npeers;
    bool print; /* print the commands instead of calling the API */
    /* Tells one line (no command name) about something that does not stop
     * the run (a peer's broker that could not be looked at); may be NULL. */
    void (*warn)(void *ud, const char *line);
    void *warn_ud;
} federate_opts;

/* Sets up (or prints) this site's broker through g (mgmt_init done; its
 * vhost is this broker's; the caller frees it). Progress on stdout, one line
 * per step. 0 done; 1 the broker refused or could not be reached; 2
 * mgmt_connect refused the URL. On 1 and 2, g->err is the failure (ONE
 * line). */
int federate_run(mgmt *g, const federate_opts *o);

#endif
