/* federate: `restspy federate`, which sets up a site's broker for
 * replication through the RabbitMQ management HTTP API, idempotently:
 * the exchanges, this node's queues and bindings (as mq_declare_topology),
 * one federation upstream per peer (exchange restspy.requests, ack-mode
 * on-confirm) and the policy federating restspy.inbound from all of them.
 * --print prints the equivalent rabbitmqctl commands instead of calling the
 * API. */
#ifndef RESTSPY_FEDERATE_H
#define RESTSPY_FEDERATE_H

/* argv[0] is "federate". Exit code: 0 done, 1 the API failed (its answer is
 * shown), 2 usage error. */
int federate_main(int argc, char **argv, char *const *envp);

#endif
