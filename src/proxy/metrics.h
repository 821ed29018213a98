/* metrics: GET /metrics on the admin listener, in Prometheus' text format
 * (version 0.0.4), for the monitoring operators already run.
 *
 * Owns nothing: it reads the process-wide counters and histograms of stats
 * (requests by method and status class, durations, bytes, connections,
 * TLS), the store's, the log sink's and the outbox's counters, the
 * replicator's applies by origin node (read incrementally from the store's
 * ledger, which the replicator sharing the store writes), and the
 * process_* facts Prometheus clients export (CPU, memory, file
 * descriptors, start time). Names are stable, under restspy_, with few
 * labels; docs/metrics.md documents each one. Promises: the output passes
 * `promtool check metrics`; counters never go down while the process
 * lives. */
#ifndef RESTSPY_METRICS_H
#define RESTSPY_METRICS_H

#include "base/buf.h"
#include "capture/config.h"
#include "capture/logsink.h"
#include "replication/outbox.h"
#include "store/store.h"

/* Origin nodes given series of their own; the applies of further ones,
 * and of origins that are not node names, are counted under
 * origin="(other)". */
#define METRICS_ORIGINS_MAX 64
#define METRICS_ORIGIN_LEN 64 /* a node name's longest (the node setting) */
#define METRICS_ORIGIN_OTHER "(other)"
/* Ledger rows read per scrape at most; the rest wait for the next one. */
#define METRICS_LEDGER_ROWS 10000

typedef struct metrics_sources {
    store *store; /* NULL when the store is off */
    outbox *ob;   /* NULL when replication is off */
    logsink *log; /* never NULL */
    const char *node;
    const config *cfg; /* its rules' run-time switches */
    int workers;
} metrics_sources;

/* Appends the whole exposition to out. Runs on the admin's loop, the only
 * caller (the applies' incremental state is process-wide, one thread's):
 * the store figures it reads are counters in memory, one small query for
 * the outbox backlog and one for the ledger rows added since the last
 * scrape (by position, METRICS_LEDGER_ROWS at most); the first scrape
 * counts the ledger by origin once, from an index. */
void metrics_render(buf *out, const metrics_sources *src);

#endif
