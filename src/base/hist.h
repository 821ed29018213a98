/* hist: a latency histogram with fixed buckets, for Prometheus.
 *
 * Owns nothing beyond its counters. Promises: hist_observe_us may be called
 * from any thread at once (relaxed atomics, no lock: one bucket search and
 * two additions); hist_read gives a snapshot whose cumulative buckets end
 * with its count, even while others observe. The buckets are Prometheus'
 * client defaults with 1 ms and 2.5 ms added below (a proxy's own share is
 * sub-millisecond) and 60 s above (the default upstream_timeout). */
#ifndef RESTSPY_HIST_H
#define RESTSPY_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#define HIST_BUCKETS 14

/* Upper bounds, in seconds, of the buckets (+Inf aside). */
extern const double hist_le[HIST_BUCKETS];

typedef struct hist {
    _Atomic uint64_t bucket[HIST_BUCKETS + 1]; /* per bucket, not cumulative; the last is +Inf */
    _Atomic uint64_t sum_us;
} hist;

/* Counts one duration (negative counts as 0). */
void hist_observe_us(hist *h, int64_t us);

typedef struct hist_snapshot {
    uint64_t cum[HIST_BUCKETS + 1]; /* cumulative; cum[HIST_BUCKETS] == count */
    uint64_t count;
    double sum_s;
} hist_snapshot;

void hist_read(const hist *h, hist_snapshot *out);

#endif
