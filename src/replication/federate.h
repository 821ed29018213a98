/* federate: `restspy federate`, which sets up a site's broker for
 * replication through the RabbitMQ management HTTP API, idempotently:
 * the exchanges, this node's queues and bindings (as mq_declare_topology),
 * and per peer a durable queue restspy.out.<peer> bound to restspy.requests
 * and a shovel moving it to the peer's restspy.inbound (ack-mode
 * on-confirm); it removes the exchange federation an older restspy set up
 * once the peers hold this site's writes. --print prints the equivalent
 * commands instead of calling the API. */
#ifndef RESTSPY_FEDERATE_H
#define RESTSPY_FEDERATE_H

/* argv[0] is "federate". Exit code: 0 done, 1 the API failed (its answer is
 * shown), 2 usage error. */
int federate_main(int argc, char **argv, char *const *envp);

#endif
