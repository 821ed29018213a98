#include "base/util.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static void oom(size_t n)
{
    fprintf(stderr, "restspy: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        oom(count * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

size_t util_str_mem(const char *s)
{
    return s ? (strlen(s) + 2 * UTIL_MALLOC_OVERHEAD) / UTIL_MALLOC_OVERHEAD * UTIL_MALLOC_OVERHEAD
             : 0;
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

int64_t util_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t util_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline unsigned char ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

bool util_ieq(const char *s, size_t n, const char *lit)
{
    /* Called for every header against every listed name: most calls fail
     * on the first byte, so no strlen first. */
    for (size_t i = 0; i < n; i++)
        if (!lit[i] || ascii_lower((unsigned char)s[i]) != ascii_lower((unsigned char)lit[i]))
            return false;
    return lit[n] == 0;
}

int util_parse_bool(const char *s, bool *out)
{
    static const char *yes[] = {"on", "true", "yes", "1"};
    static const char *no[] = {"off", "false", "no", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

int util_parse_size(const char *s, uint64_t *out)
{
    char *end;
    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    uint64_t mul = 1;
    if (*end) {
        switch (toupper((unsigned char)*end)) {
        case 'K':
            mul = 1024ULL;
            break;
        case 'M':
            mul = 1024ULL * 1024;
            break;
        case 'G':
            mul = 1024ULL * 1024 * 1024;
            break;
        default:
            return -1;
        }
        end++;
        if (toupper((unsigned char)*end) == 'B' || toupper((unsigned char)*end) == 'I')
            end++;
        if (*end == 'B')
            end++;
        if (*end)
            return -1;
    }
    if (v > UINT64_MAX / mul)
        return -1;
    *out = (uint64_t)v * mul;
    return 0;
}

int util_parse_duration_ms(const char *s, bool default_ms, uint64_t *out)
{
    char *end;
    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || v < 0)
        return -1;
    double mul;
    if (*end == '\0')
        mul = default_ms ? 1 : 1000;
    else if (strcmp(end, "ms") == 0)
        mul = 1;
    else if (strcmp(end, "s") == 0)
        mul = 1000;
    else if (strcmp(end, "m") == 0)
        mul = 60e3;
    else if (strcmp(end, "h") == 0)
        mul = 3600e3;
    else if (strcmp(end, "d") == 0)
        mul = 86400e3;
    else
        return -1;
    double ms = v * mul;
    if (ms > 1e15)
        return -1;
    *out = (uint64_t)ms;
    return 0;
}

int util_split_hostport(const char *s, char *host_out, size_t hostlen, int *port_out)
{
    const char *colon;
    const char *h = s;
    size_t hl;
    if (*s == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':')
            return -1;
        h = s + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= hostlen)
        return -1;
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    /* Digits only: strtol would also take " 80" or "+80". */
    if (errno || *end || !isdigit((unsigned char)colon[1]) || p > 65535)
        return -1;
    memcpy(host_out, h, hl);
    host_out[hl] = '\0';
    *port_out = (int)p;
    return 0;
}

int util_split_host(const char *s, int default_port, char *host_out, size_t hostlen, int *port_out)
{
    bool has_port = s[0] == '[' ? strstr(s, "]:") != NULL : strchr(s, ':') != NULL;
    if (has_port)
        return util_split_hostport(s, host_out, hostlen, port_out);
    const char *h = s;
    size_t n = strlen(s);
    if (s[0] == '[') {
        if (n < 2 || s[n - 1] != ']')
            return -1;
        h++;
        n -= 2;
    }
    if (n == 0 || n >= hostlen)
        return -1;
    memcpy(host_out, h, n);
    host_out[n] = '\0';
    *port_out = default_port;
    return 0;
}

int util_listen_addr(const char *s, char *out, size_t outlen)
{
    /* A bare port is all digits; anything else must name its host. */
    const char *host = NULL;
    if (s[0] == ':')
        host = "0.0.0.0";
    else if (s[0] && s[strspn(s, "0123456789")] == '\0')
        host = "127.0.0.1";
    int n = host ? snprintf(out, outlen, "%s:%s", host, s + (s[0] == ':'))
                 : snprintf(out, outlen, "%s", s);
    if (n < 0 || (size_t)n >= outlen)
        return -1;
    char h[256];
    int port;
    return util_split_hostport(out, h, sizeof h, &port);
}

void util_fmt_duration(int64_t us, char *out, size_t len)
{
    if (us < 0)
        us = 0;
    int64_t s = us / 1000000;
    if (us < 1000000)
        snprintf(out, len, "%lldms", (long long)(us / 1000));
    else if (s < 60)
        snprintf(out, len, "%.1fs", (double)us / 1e6);
    else if (s < 3600)
        snprintf(out, len, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
    else if (s < 86400)
        snprintf(out, len, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
    else
        snprintf(out, len, "%lldd%02lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
}

void util_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void util_sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

void util_trim(const char **s, size_t *n)
{
    while (*n && isspace((unsigned char)**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n && isspace((unsigned char)(*s)[*n - 1]))
        (*n)--;
}

int util_digits(const char *s, int n)
{
    assert(n >= 0 && n <= 9); /* the header's promise: no int overflow */
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}
