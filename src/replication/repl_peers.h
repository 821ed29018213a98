/* repl_peers: what this site's broker holds for each peer, read through
 * the RabbitMQ management API (mgmt.h): per peer the writes in its queue
 * restspy.out.<peer> that the peer's broker does not have yet, the time of
 * the oldest, and the state of the shovel restspy-to-<peer> moving them (as
 * `restspy federate` set them up). One reading and one JSON form for
 * `restspy replication status --mgmt` and the admin's replication view.
 * The management API's figures are a few seconds old.
 *
 * Owns the peers it read (repl_peers_free). Thread-safety: every call
 * makes its own management API client (its own connection and private
 * loop), so calls may run on several threads at once; they block (two
 * HTTP requests, each up to MGMT_TIMEOUT_MS) and belong on a worker or
 * command-line thread, never on an event loop. */
#ifndef RESTSPY_REPL_PEERS_H
#define RESTSPY_REPL_PEERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "http/hclient.h"

typedef struct repl_peer {
    char *peer;        /* owned */
    bool has_queue;    /* restspy.out.<peer> exists */
    int64_t held;      /* messages in it (ready + unacked); -1 = not counted yet */
    int64_t oldest_us; /* timestamp of its first message; 0 = none or unknown */
    char *shovel;      /* restspy-to-<peer>'s state; NULL = no such shovel; owned */
    char *reason;      /* why a shovel is not running, when told; owned */
} repl_peer;

typedef struct repl_peers {
    repl_peer *v; /* in peer name order */
    size_t n;
    bool shovels_known; /* false: the shovel management plugin did not answer */
} repl_peers;

/* Reads the peers from the management API at mgmt_url
 * (http[s]://user:pass@host:port[/prefix], as mgmt_init) for vhost, tls
 * (may be NULL) applying to an https URL. out is zeroed first; free it with
 * repl_peers_free whatever the result. 0; 1 the API failed (unreachable,
 * refused, an unusable answer); 2 a bad URL; on 1 and 2 err is ONE line
 * (mgmt.h's, credentials kept out). */
int repl_peers_collect(const char *mgmt_url, const char *vhost, const hclient_tls *tls,
                       repl_peers *out, char *err, size_t errlen);

void repl_peers_free(repl_peers *h);

/* Appends the peers as a JSON array: [{"peer", "held" (null: no queue or
 * not counted yet), "oldest_us", "oldest_age_s" (null: nothing held or no
 * time), "queue" (bool), "shovel" (its state; null: no such shovel or the
 * plugin is not there), "shovel_reason"}, ...]; ages as of now_us. */
void repl_peers_json(const repl_peers *h, int64_t now_us, buf *b);

/* repl_peers_collect, then the whole answer for an API into json_out (the
 * caller's buf, appended to): {"shovels_known": bool, "peers": [...]}.
 * 0, or 1 / 2 with err as repl_peers_collect (json_out untouched). */
int repl_peers_read(const char *mgmt_url, const char *vhost, const hclient_tls *tls, buf *json_out,
                    char *err, size_t errlen);

#endif
