#include "base/uuid7.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <errno.h>

#include "base/buf.h"
#include "base/util.h"

/* The last issued (unix_ms << 12 | counter). One 64-bit word so a single CAS
 * makes ids strictly increasing across threads without a lock: incrementing
 * it carries a counter overflow into the millisecond (borrowing time from the
 * future, as RFC 9562 section 6.2 allows), which keeps the order. */
static _Atomic uint64_t g_last;

/* Per-thread pool of OS randomness: one getrandom(2) per 512 bytes instead of
 * one per id, which matters at tens of thousands of ids a second. */
static _Thread_local unsigned char t_pool[512];
static _Thread_local size_t t_pool_pos = sizeof t_pool;

static void fill_random(unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            /* Without an entropy source ids would silently collide across
             * processes; refuse like an allocation failure does. */
            fprintf(stderr, "restspy: getrandom failed\n");
            abort();
        }
        p += got;
        n -= (size_t)got;
    }
}

static void random_bytes(unsigned char *out, size_t n)
{
    if (t_pool_pos + n > sizeof t_pool) {
        fill_random(t_pool, sizeof t_pool);
        t_pool_pos = 0;
    }
    memcpy(out, t_pool + t_pool_pos, n);
    t_pool_pos += n;
}

/* Next state after old at wall time now_ms. A fresh millisecond starts the
 * counter at a random value below 2048, so at least 2048 ids fit in it before
 * the carry borrows the next millisecond. */
static uint64_t next_state(uint64_t old, uint64_t now_ms, unsigned seed)
{
    if (now_ms > (old >> 12))
        return now_ms << 12 | (seed & 0x7ff);
    return old + 1;
}

/* The text of the id made of a 48-bit Unix ms time, a 12-bit rand_a and
 * the 62 low bits of rand_b (its first byte's top two bits become the
 * variant). */
static void format_id(uint64_t ms, unsigned rand_a, const unsigned char rand_b[8],
                      char out[UUID7_STR_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | ((rand_a >> 8) & 0x0f));
    b[7] = (unsigned char)(rand_a & 0xff);
    b[8] = (unsigned char)(0x80 | (rand_b[0] & 0x3f));
    memcpy(b + 9, rand_b + 1, 7);

    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = '\0';
}

void uuid7_derive(int64_t unix_ms, const unsigned char seed[10], char out[UUID7_STR_LEN + 1])
{
    uint64_t ms = unix_ms > 0 ? (uint64_t)unix_ms & 0xffffffffffffULL : 0;
    format_id(ms, (unsigned)seed[0] << 4 | seed[1] >> 4, seed + 2, out);
}

void uuid7_floor(int64_t unix_ms, char out[UUID7_STR_LEN + 1])
{
    static const unsigned char zero[10];
    uuid7_derive(unix_ms, zero, out);
    memcpy(out + 14, "0000-0000-000000000000", 22);
}

void uuid7_generate(char out[UUID7_STR_LEN + 1])
{
    unsigned char rnd[10];
    random_bytes(rnd, sizeof rnd);

    uint64_t now_ms = (uint64_t)(util_now_us() / 1000) & 0xffffffffffffULL;
    unsigned seed = (unsigned)rnd[8] << 8 | rnd[9];
    uint64_t old = atomic_load_explicit(&g_last, memory_order_relaxed);
    uint64_t st;
    do {
        st = next_state(old, now_ms, seed);
    } while (!atomic_compare_exchange_weak_explicit(&g_last, &old, st, memory_order_relaxed,
                                                    memory_order_relaxed));

    format_id(st >> 12, (unsigned)(st & 0xfff), rnd, out);
}

int64_t uuid7_time_ms(const char *id)
{
    if (!id)
        return -1;
    int64_t ms = 0;
    int digits = 0;
    for (int i = 0; i < UUID7_STR_LEN; i++) {
        char c = id[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return -1;
            continue;
        }
        int v = hex_digit(c);
        if (v < 0)
            return -1;
        if (i == 14 && v != 7)
            return -1;
        if (i == 19 && (v & 0xc) != 0x8)
            return -1;
        if (digits < 12)
            ms = ms << 4 | v;
        digits++;
    }
    if (id[UUID7_STR_LEN] != '\0')
        return -1;
    return ms;
}

int uuid7_canonical(const char *s, size_t n, char out[UUID7_STR_LEN + 1])
{
    if (n != UUID7_STR_LEN)
        return -1;
    char tmp[UUID7_STR_LEN + 1];
    for (size_t i = 0; i < n; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : hex_digit(s[i]) < 0)
            return -1;
        tmp[i] = (char)(s[i] >= 'A' && s[i] <= 'F' ? s[i] + ('a' - 'A') : s[i]);
    }
    tmp[n] = '\0';
    memcpy(out, tmp, sizeof tmp);
    return 0;
}
