/* hist: buckets by upper bound (inclusive), cumulative snapshots ending
 * with the count, the sum, negative durations, and observations from
 * several threads at once adding up. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/hist.h"

static void test_buckets(void **state)
{
    (void)state;
    hist h;
    memset(&h, 0, sizeof h);
    hist_observe_us(&h, 1000);     /* exactly 1 ms: the first bucket (le is inclusive) */
    hist_observe_us(&h, 1001);     /* just over: the second */
    hist_observe_us(&h, -5);       /* counted as 0 */
    hist_observe_us(&h, 61000000); /* over 60 s: +Inf only */
    hist_snapshot s;
    hist_read(&h, &s);
    assert_int_equal(s.count, 4);
    assert_int_equal(s.cum[0], 2);
    assert_int_equal(s.cum[1], 3);
    assert_int_equal(s.cum[HIST_BUCKETS - 1], 3);
    assert_int_equal(s.cum[HIST_BUCKETS], 4);
    assert_true(s.sum_s > 61.0019 && s.sum_s < 61.0021);
    for (int i = 1; i < HIST_BUCKETS; i++)
        assert_true(hist_le[i] > hist_le[i - 1]);
}

static hist shared;

static void *worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100000; i++)
        hist_observe_us(&shared, i % 3000);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    hist_snapshot s;
    hist_read(&shared, &s);
    assert_int_equal(s.count, 400000);
    assert_int_equal(s.cum[HIST_BUCKETS], 400000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
