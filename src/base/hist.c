/* hist: see hist.h. */
#include "base/hist.h"

const double hist_le[HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                      0.25,  0.5,    1,     2.5,  5,     10,   60};

void hist_observe_us(hist *h, int64_t us)
{
    if (us < 0)
        us = 0;
    double s = (double)us / 1e6;
    unsigned i = 0;
    while (i < HIST_BUCKETS && s > hist_le[i])
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (uint64_t)us, memory_order_relaxed);
}

void hist_read(const hist *h, hist_snapshot *out)
{
    uint64_t cum = 0;
    for (unsigned i = 0; i <= HIST_BUCKETS; i++) {
        cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        out->cum[i] = cum;
    }
    out->count = cum;
    out->sum_s = (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6;
}
