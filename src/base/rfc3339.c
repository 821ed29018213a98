#include "base/rfc3339.h"

#include <assert.h>
#include <string.h>

#include "base/util.h"

void rfc3339_digits(char *p, unsigned v, int n)
{
    while (n-- > 0) {
        p[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

void rfc3339_split(int64_t us, struct tm *tm, unsigned *frac_us)
{
    int64_t sec = us / 1000000;
    int64_t rem = us % 1000000;
    if (rem < 0) {
        rem += 1000000;
        sec--;
    }
    time_t t = (time_t)sec;
    if (!gmtime_r(&t, tm))
        memset(tm, 0, sizeof *tm);
    *frac_us = (unsigned)rem;
}

size_t rfc3339_format(int64_t us, int frac_digits, char *out)
{
    assert(frac_digits == 0 || frac_digits == 3 || frac_digits == 6);
    struct tm tm;
    unsigned frac;
    rfc3339_split(us, &tm, &frac);
    rfc3339_digits(out, (unsigned)(tm.tm_year + 1900), 4);
    out[4] = '-';
    rfc3339_digits(out + 5, (unsigned)(tm.tm_mon + 1), 2);
    out[7] = '-';
    rfc3339_digits(out + 8, (unsigned)tm.tm_mday, 2);
    out[10] = 'T';
    rfc3339_digits(out + 11, (unsigned)tm.tm_hour, 2);
    out[13] = ':';
    rfc3339_digits(out + 14, (unsigned)tm.tm_min, 2);
    out[16] = ':';
    rfc3339_digits(out + 17, (unsigned)tm.tm_sec, 2);
    size_t n = 19;
    if (frac_digits) {
        out[n++] = '.';
        rfc3339_digits(out + n, frac_digits == 3 ? frac / 1000 : frac, frac_digits);
        n += (size_t)frac_digits;
    }
    out[n++] = 'Z';
    out[n] = '\0';
    assert(n < RFC3339_MAX);
    return n;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int month_days(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* Exactly n digits at *p: their value, *p advanced; -1 otherwise. */
static int take(const char **p, int n)
{
    int v = util_digits(*p, n);
    if (v >= 0)
        *p += n;
    return v;
}

static int parse_clock(const char **pp, rfc3339_time *t)
{
    const char *p = *pp;
    if ((t->hour = take(&p, 2)) < 0 || t->hour > 23 || *p++ != ':' || (t->min = take(&p, 2)) < 0 ||
        t->min > 59)
        return -1;
    if (*p == ':') {
        p++;
        if ((t->sec = take(&p, 2)) < 0 || t->sec > 60)
            return -1;
        t->has_seconds = true;
        if (*p == '.') {
            p++;
            int n = 0;
            for (; *p >= '0' && *p <= '9'; p++, n++)
                if (n < 6)
                    t->frac_us = t->frac_us * 10 + (unsigned)(*p - '0');
            if (n == 0)
                return -1;
            for (; n < 6; n++)
                t->frac_us *= 10;
        }
    }
    *pp = p;
    return 0;
}

static int parse_zone(const char **pp, rfc3339_time *t)
{
    const char *p = *pp;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '+' ? 1 : -1;
        int oh, om;
        if ((oh = take(&p, 2)) < 0 || oh > 23 || *p++ != ':' || (om = take(&p, 2)) < 0 || om > 59)
            return -1;
        t->offset_s = sign * (oh * 3600 + om * 60);
    } else {
        return 0; /* no zone */
    }
    t->has_zone = true;
    *pp = p;
    return 0;
}

int rfc3339_parse(const char *s, rfc3339_time *out)
{
    rfc3339_time t;
    memset(&t, 0, sizeof t);
    const char *p = s;
    if ((t.year = take(&p, 4)) < 0 || *p++ != '-' || (t.month = take(&p, 2)) < 1 || t.month > 12 ||
        *p++ != '-' || (t.day = take(&p, 2)) < 1 || t.day > month_days(t.year, t.month))
        return -1;
    if (*p) {
        if (*p != 'T' && *p != 't' && *p != ' ')
            return -1;
        p++;
        t.has_time = true;
        if (parse_clock(&p, &t) != 0 || parse_zone(&p, &t) != 0 || *p)
            return -1;
    }
    *out = t;
    return 0;
}

int64_t rfc3339_utc_us(const rfc3339_time *t)
{
    int64_t s = days_from_civil(t->year, (unsigned)t->month, (unsigned)t->day) * 86400 +
                (int64_t)t->hour * 3600 + (int64_t)t->min * 60 + t->sec - t->offset_s;
    return s * 1000000 + t->frac_us;
}
