/* replicator: `restspy replicate`, which applies peers' requests to the local
 * upstream.
 *
 * Owns the consumer of queue restspy.apply.<node> (manual acks), the apply
 * workers and their HTTP connections to the upstream. For each message:
 * verify the signature (a replicator with a secret dead-letters unsigned or
 * forged messages with the reason), skip its own origin, skip a message
 * already in the `applied` ledger (ack, count as deduplicated), otherwise
 * apply it with Idempotency-Key: <message_id>, X-Restspy-Replicated-From:
 * <origin> and the --set-header overrides; 2xx/3xx: capture it (origin
 * "replicated") and write the ledger row in one transaction, then ack; 4xx:
 * dead-letter with the status and a body excerpt, then ack; 5xx, 408, 429
 * or unreachable: retry with capped exponential backoff, keeping order and
 * acking nothing meanwhile. Order: one message at a time by default; with
 * --concurrency N messages are partitioned by path, so requests to one
 * resource keep their order. Promises: a message is acked only after its
 * effect and its ledger row are committed, so a crash at any point leads to
 * a redelivery that the ledger turns into a skip: exactly-once effect. */
#ifndef RESTSPY_REPLICATOR_H
#define RESTSPY_REPLICATOR_H

/* argv[0] is "replicate". Exit code: 0 clean stop (SIGTERM/SIGINT), 1
 * runtime failure (store cannot be opened), 2 usage error. A broker or an
 * upstream that is down is not a failure: it waits and retries. */
int replicator_main(int argc, char **argv, char *const *envp);

#endif
