/* Folder base/ (this is its main header): what every other folder stands on
 * and that knows nothing of HTTP or capture: allocation, buffers, the URL
 * parser, RFC 3339 times, globs, UUIDv7 ids, the write stream over libuv
 * and TLS over it.
 * Promises: uses libc, libuv and OpenSSL only, includes no other folder of
 * src/.
 *
 * util: allocation that never returns NULL, time, and small string helpers.
 *
 * Owns nothing. Promises: x*alloc abort the process with a message on
 * out-of-memory (like Redis' zmalloc), so callers never check for NULL; every
 * returned pointer is owned by the caller and released with free(). */
#ifndef RESTSPY_UTIL_H
#define RESTSPY_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* glibc's malloc keeps 16 bytes before each block and rounds sizes up to
 * 16 (a string of a few bytes costs 32): what memory bounds count per
 * allocation. */
#define UTIL_MALLOC_OVERHEAD 16
/* The heap bytes a string of xstrdup holds (0 for NULL), overhead included. */
size_t util_str_mem(const char *s);
char *xstrndup(const char *s, size_t n);

/* Wall-clock time since the Unix epoch, in microseconds. */
int64_t util_now_us(void);
/* Monotonic clock in microseconds (durations). */
int64_t util_mono_us(void);

/* A duration in µs as people read it: "850ms", "12.3s", "4m05s", "3h12m",
 * "2d04h" (negative as 0). */
void util_fmt_duration(int64_t us, char *out, size_t len);

/* ASCII case-insensitive comparison of s (length n) with NUL-terminated lit. */
bool util_ieq(const char *s, size_t n, const char *lit);

/* Parses "on/off/true/false/yes/no/1/0". Returns 0 and sets *out, or -1. */
int util_parse_bool(const char *s, bool *out);

/* Parses a size with optional K/M/G suffix (powers of 1024). 0 or -1. */
int util_parse_size(const char *s, uint64_t *out);

/* Parses a duration: a number with suffix ms, s, m, h or d (no suffix: ms
 * when default_ms is true, else seconds). Result in milliseconds. 0 or -1. */
int util_parse_duration_ms(const char *s, bool default_ms, uint64_t *out);

/* Splits "host:port" (IPv4, name, or [IPv6]:port). host_out gets a
 * NUL-terminated host of at most hostlen-1 bytes. 0 or -1. */
int util_split_hostport(const char *s, char *host_out, size_t hostlen, int *port_out);

/* Splits "host[:port]" (a name, IPv4, or [IPv6] with an optional :port),
 * as in a Host header: *port_out is default_port when the port is absent.
 * host_out as util_split_hostport (IPv6 without brackets). 0 or -1. */
int util_split_host(const char *s, int default_port, char *host_out, size_t hostlen, int *port_out);

/* A listen address as servers take it: "host:port" ([IPv6]:port too),
 * ":port" (every IPv4 interface: 0.0.0.0) or a bare "port" (loopback:
 * 127.0.0.1). Writes the "host:port" form, NUL-terminated, to out. 0, or -1
 * when s is none of these or the result does not fit in outlen. */
int util_listen_addr(const char *s, char *out, size_t outlen);

/* The value of exactly n decimal digits at s, or -1 when one of them is
 * not a digit. n at most 9. */
int util_digits(const char *s, int n);

/* Narrows the text (*s, *n) to drop leading and trailing whitespace. */
void util_trim(const char **s, size_t *n);

/* The one way an error message reaches a caller's (err, errlen) buffer:
 * printf-style, truncated to fit. err may be NULL or errlen 0 (the caller
 * wants no text): then it does nothing. */
void util_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sleeps ms milliseconds, resuming after signals, so a handled signal
 * (SIGHUP, SIGTERM with its flag set) cannot cut a back-off short. */
void util_sleep_ms(uint64_t ms);

#endif
