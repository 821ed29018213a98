/* metrics: GET /metrics on the admin listener, in Prometheus' text format
 * (version 0.0.4), for the monitoring operators already run.
 *
 * Owns nothing: it reads the process-wide counters and histograms of stats
 * (requests by method and status class, durations, bytes, connections,
 * TLS), the store's, the log sink's and the outbox's counters, and the
 * process_* facts Prometheus clients export (CPU, memory, file
 * descriptors, start time). Names are stable, under restspy_, with few
 * labels; docs/metrics.md documents each one. Promises: the output passes
 * `promtool check metrics`; counters never go down while the process
 * lives. */
#ifndef RESTSPY_METRICS_H
#define RESTSPY_METRICS_H

#include "base/buf.h"
#include "capture/logsink.h"
#include "replication/outbox.h"
#include "store/store.h"

typedef struct metrics_sources {
    store *store; /* NULL when the store is off */
    outbox *ob;   /* NULL when replication is off */
    logsink *log; /* never NULL */
    const char *node;
    int workers;
} metrics_sources;

/* Appends the whole exposition to out. Runs on the admin's loop: the store
 * figures it reads are counters in memory plus one small query for the
 * outbox backlog. */
void metrics_render(buf *out, const metrics_sources *src);

#endif
