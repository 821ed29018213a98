/* rfc3339: times as text, both ways ("2026-11-27T05:46:18.123456Z").
 *
 * Owns nothing and never consults the process' time zone for UTC times
 * (no timegm, which is not C11 and follows TZ handling). Promises: what
 * rfc3339_format writes, rfc3339_parse reads back to the same µs; the
 * record's JSON, the access log, HAR files and the CLI's --since/--until
 * all read and write times here, so they agree. */
#ifndef RESTSPY_RFC3339_H
#define RESTSPY_RFC3339_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Longest text rfc3339_format writes, NUL included. */
#define RFC3339_MAX 28

/* Writes the UTC time us (µs since the epoch) as "YYYY-MM-DDThh:mm:ss" with
 * frac_digits (0, 3 or 6) fraction digits and "Z", NUL-terminated, into out
 * (at least RFC3339_MAX bytes). Written by hand: snprintf/strftime showed
 * up in profiles of the log line path. Returns the length. */
size_t rfc3339_format(int64_t us, int frac_digits, char *out);

/* Splits us into broken-down UTC time and the µs remainder (floored, so
 * times before 1970 still read forwards). */
void rfc3339_split(int64_t us, struct tm *tm, unsigned *frac_us);

/* Writes v as exactly n decimal digits at p (no NUL), zero-padded. */
void rfc3339_digits(char *p, unsigned v, int n);

/* A date or date-time as read by rfc3339_parse. */
typedef struct rfc3339_time {
    int year, month, day, hour, min, sec;
    unsigned frac_us;
    bool has_time;    /* more than a date */
    bool has_seconds; /* ":ss" was given */
    bool has_zone;    /* "Z" or an offset was given */
    int offset_s;     /* the offset, east of UTC */
} rfc3339_time;

/* Reads "YYYY-MM-DD", optionally followed by 'T', 't' or ' ' and
 * "hh:mm[:ss[.fraction]]" (any number of fraction digits, µs kept) and
 * optionally "Z", "z" or "+hh:mm"/"-hh:mm". The day must exist in its
 * month (02-30 is refused, not read as March 2). 0, or -1 on anything
 * else, trailing text included. */
int rfc3339_parse(const char *s, rfc3339_time *out);

/* µs since the epoch of t, its offset applied (none: read as UTC). */
int64_t rfc3339_utc_us(const rfc3339_time *t);

#endif
