#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "base/uuid7.h"

static void check_format(const char *id)
{
    assert_int_equal(strlen(id), UUID7_STR_LEN);
    for (int i = 0; i < UUID7_STR_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            assert_int_equal(id[i], '-');
        } else {
            assert_true((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'));
        }
    }
    assert_int_equal(id[14], '7');           /* version */
    assert_non_null(strchr("89ab", id[19])); /* variant 10xx */
}

static void test_format_and_time(void **state)
{
    (void)state;
    char id[UUID7_STR_LEN + 1];
    int64_t before = util_now_us() / 1000;
    uuid7_generate(id);
    int64_t after = util_now_us() / 1000;
    check_format(id);
    int64_t t = uuid7_time_ms(id);
    /* The counter may borrow a few ms forward under load, never backwards. */
    assert_true(t >= before);
    assert_true(t <= after + 1000);
}

static void test_strictly_increasing(void **state)
{
    (void)state;
    enum { N = 100000 };
    char prev[UUID7_STR_LEN + 1], cur[UUID7_STR_LEN + 1];
    uuid7_generate(prev);
    for (int i = 0; i < N; i++) {
        uuid7_generate(cur);
        if (strcmp(prev, cur) >= 0)
            fail_msg("not increasing at %d: %s then %s", i, prev, cur);
        if ((i & 1023) == 0)
            check_format(cur);
        memcpy(prev, cur, sizeof cur);
    }
}

static void test_time_ms_parse(void **state)
{
    (void)state;
    assert_int_equal(uuid7_time_ms("01890a5d-ac96-774b-bcce-b302099a8057"), 0x01890a5dac96LL);
    assert_int_equal(uuid7_time_ms("01890A5D-AC96-774B-BCCE-B302099A8057"), 0x01890a5dac96LL);
    /* version 4 */
    assert_int_equal(uuid7_time_ms("01890a5d-ac96-474b-bcce-b302099a8057"), -1);
    /* bad variant */
    assert_int_equal(uuid7_time_ms("01890a5d-ac96-774b-7cce-b302099a8057"), -1);
    /* bad hyphen, bad hex, short, long, NULL */
    assert_int_equal(uuid7_time_ms("01890a5dxac96-774b-bcce-b302099a8057"), -1);
    assert_int_equal(uuid7_time_ms("01890a5d-ac96-774b-bcce-b302099a805g"), -1);
    assert_int_equal(uuid7_time_ms("01890a5d-ac96-774b-bcce-b302099a805"), -1);
    assert_int_equal(uuid7_time_ms("01890a5d-ac96-774b-bcce-b302099a80577"), -1);
    assert_int_equal(uuid7_time_ms(""), -1);
    assert_int_equal(uuid7_time_ms(NULL), -1);
}

enum { THREADS = 4, PER_THREAD = 20000 };

static void *gen_thread(void *arg)
{
    char *ids = arg;
    for (int i = 0; i < PER_THREAD; i++)
        uuid7_generate(ids + (size_t)i * (UUID7_STR_LEN + 1));
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_threads_unique(void **state)
{
    (void)state;
    size_t stride = UUID7_STR_LEN + 1;
    char *all = calloc((size_t)THREADS * PER_THREAD, stride);
    assert_non_null(all);
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(
            pthread_create(&th[t], NULL, gen_thread, all + (size_t)t * PER_THREAD * stride), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < THREADS; t++) {
        char *ids = all + (size_t)t * PER_THREAD * stride;
        for (int i = 1; i < PER_THREAD; i++)
            assert_true(strcmp(ids + (size_t)(i - 1) * stride, ids + (size_t)i * stride) < 0);
    }
    qsort(all, (size_t)THREADS * PER_THREAD, stride, cmp_id);
    for (size_t i = 1; i < (size_t)THREADS * PER_THREAD; i++)
        if (strcmp(all + (i - 1) * stride, all + i * stride) == 0)
            fail_msg("duplicate id %s", all + i * stride);
    free(all);
}

/* uuid7_floor: the smallest id of a millisecond; ids of that millisecond
 * sort at or after it, of the one before strictly before. */
static void test_floor(void **state)
{
    (void)state;
    char f[UUID7_STR_LEN + 1], id[UUID7_STR_LEN + 1];
    uuid7_floor(0x0190abcdef01LL, f);
    assert_string_equal(f, "0190abcd-ef01-0000-0000-000000000000");
    static const unsigned char seed[10] = {0xff, 0xff, 0xff, 0xff, 0xff,
                                           0xff, 0xff, 0xff, 0xff, 0xff};
    uuid7_derive(0x0190abcdef01LL, seed, id);
    assert_true(strcmp(f, id) < 0);
    uuid7_derive(0x0190abcdef00LL, seed, id);
    assert_true(strcmp(id, f) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_and_time), cmocka_unit_test(test_strictly_increasing),
        cmocka_unit_test(test_time_ms_parse),   cmocka_unit_test(test_threads_unique),
        cmocka_unit_test(test_floor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
