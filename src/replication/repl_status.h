/* repl_status: a site's replication figures as the store keeps them: the
 * outbox and the broker's confirms, what the replicator applied, skipped
 * and dead-lettered, the apply lag over a recent window, and the writes it
 * keeps failing to apply (stuck), and the same per origin node (how many
 * applies from each, its newest and the lag). One reading and one JSON form for
 * `restspy replication status --json` and the admin's GET
 * /api/replication (the console's Replication view).
 *
 * Owns the stuck and origin lists it read (repl_status_free). */
#ifndef RESTSPY_REPL_STATUS_H
#define RESTSPY_REPL_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "store/store.h"

#define REPL_STATUS_WINDOW_MS 300000   /* the lag's window by default: 5 minutes ... */
#define REPL_STATUS_LAG_SAMPLES 100000 /* ... of the newest applies at most */
#define REPL_STATUS_STUCK_MAX 20       /* stuck writes listed (all are counted) */
#define REPL_STATUS_ORIGINS_MAX 64     /* origin nodes listed (all are counted) */

typedef struct repl_status {
    int64_t now_us; /* when it was read */
    store_repl_stats st;
    int64_t window_us;
    store_repl_lag lag;
    store_stuck *stuck; /* oldest failure first, REPL_STATUS_STUCK_MAX at most */
    size_t nstuck;
    int64_t stuck_total;
    store_repl_origin *origins; /* in name order, REPL_STATUS_ORIGINS_MAX at most */
    size_t norigins;
    int64_t origins_total;
} repl_status;

/* Reads the figures of s, the lag over the last window_us. 0, or -1 with
 * err (the store's). */
int repl_status_read(store *s, int64_t window_us, repl_status *x, char *err, size_t errlen);
void repl_status_free(repl_status *x);

/* Appends the figures as members of a JSON object, without its braces
 * (callers add theirs: the CLI its peers), starting with "outbox_depth". */
void repl_status_json(const repl_status *x, buf *b);

#endif
