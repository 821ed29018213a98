/* Folder replication/ (this is its main header): moving writes between
 * sites: the AMQP connection, the outbox publisher, the replicator, the
 * federation setup and the management API client. Promises: uses
 * everything below it (base/ to store/), never cli/ (`restspy replicate`'s
 * flags are the replicator's own, through the settings table).
 *
 * replicator: `restspy replicate`, which applies peers' requests to the local
 * upstream.
 *
 * Owns the consumer of queue restspy.apply.<node> (manual acks), the apply
 * workers and their HTTP connections to the upstream. For each message:
 * verify the signature (a replicator with a secret dead-letters unsigned or
 * forged messages with the reason), skip its own origin, skip a message
 * already in the `applied` ledger (ack; applied before: counted as
 * deduplicated; skipped by an operator: not applied), otherwise apply it
 * with Idempotency-Key: <message_id>, X-Restspy-Replicated-From: <origin>
 * and the --set-header overrides. 2xx/3xx: capture it (origin
 * "replicated") and write the ledger row in one transaction, then ack. A
 * 4xx other than 408 and 429: dead-letter with the status and a body
 * excerpt, then ack. 5xx, 408, 429, a timeout or a reset: retry with capped
 * exponential backoff until the retry budget (retry_max_age,
 * retry_max_attempts) is spent, then dead-letter with the last answer; an
 * upstream that refuses connections is retried without spending it.
 * Order (apply_order): by default a write waits only for earlier writes to
 * its resource, to the resources above it and below it; a stuck write
 * (failing while the upstream applies others) holds back only its own
 * resource. Once a write's outcome is acked (applied, skipped, or its dead
 * letter confirmed) it sends the write's origin an apply receipt (best
 * effort, formats/receipt.h); a receipt it receives is never applied: it is
 * recorded in the store when it is about one of this node's writes and
 * authentic, and acked either way. Promises: a message is acked only after
 * its effect and its ledger row are committed, so a crash at any point
 * leads to a redelivery that the ledger turns into a skip: exactly-once
 * effect (but for the window docs/replication.md describes, which
 * Idempotency-Key closes). */
#ifndef RESTSPY_REPLICATOR_H
#define RESTSPY_REPLICATOR_H

/* argv[0] is "replicate". Exit code: 0 clean stop (SIGTERM/SIGINT), 1
 * runtime failure (store cannot be opened), 2 usage error. A broker or an
 * upstream that is down is not a failure: it waits and retries. */
int replicator_main(int argc, char **argv, char *const *envp);

#endif
