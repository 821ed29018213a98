#include "base/url.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int default_port(const char *scheme)
{
    static const struct {
        const char *scheme;
        int port;
    } ports[] = {{"http", 80}, {"https", 443}, {"amqp", 5672}, {"amqps", 5671}};
    for (size_t i = 0; i < sizeof ports / sizeof ports[0]; i++)
        if (strcmp(scheme, ports[i].scheme) == 0)
            return ports[i].port;
    return 0;
}

static int fail(const char **why, const char *reason)
{
    if (why)
        *why = reason;
    return -1;
}

/* "scheme:" at s: copies it lower-cased. Returns its length, or 0. */
static size_t take_scheme(const char *s, size_t n, url_parts *u)
{
    size_t i = 0;
    while (i < n && i + 1 < sizeof u->scheme &&
           (isalnum((unsigned char)s[i]) || (i > 0 && strchr("+-.", s[i]))))
        i++;
    if (i == 0 || !isalpha((unsigned char)s[0]) || n - i < 3 || memcmp(s + i, "://", 3) != 0)
        return 0;
    for (size_t j = 0; j < i; j++)
        u->scheme[j] = (char)tolower((unsigned char)s[j]);
    u->scheme[i] = '\0';
    return i;
}

/* host[:port] (hp, length n) into u->host, u->port. */
static int take_hostport(const char *hp, size_t n, url_parts *u, const char **why)
{
    const char *colon = NULL;
    const char *h = hp;
    size_t hl = n;
    if (n && hp[0] == '[') {
        const char *rb = memchr(hp, ']', n);
        if (!rb)
            return fail(why, "unclosed [ in host");
        h = hp + 1;
        hl = (size_t)(rb - h);
        u->ipv6 = true;
        if ((size_t)(rb - hp) + 1 < n) {
            if (rb[1] != ':')
                return fail(why, "bad character after ]");
            colon = rb + 1;
        }
    } else {
        colon = memchr(hp, ':', n);
        if (colon && memchr(colon + 1, ':', n - (size_t)(colon + 1 - hp)))
            return fail(why, "put an IPv6 address in brackets");
        if (colon)
            hl = (size_t)(colon - hp);
    }
    if (hl == 0)
        return fail(why, "no host");
    if (hl >= sizeof u->host)
        return fail(why, "host too long");
    memcpy(u->host, h, hl);
    u->host[hl] = '\0';
    u->port = default_port(u->scheme);
    if (colon) {
        const char *p = colon + 1;
        size_t pl = n - (size_t)(p - hp);
        long v = 0;
        if (pl == 0 || pl > 5)
            return fail(why, "bad port");
        for (size_t i = 0; i < pl; i++) {
            if (!isdigit((unsigned char)p[i]))
                return fail(why, "bad port");
            v = v * 10 + (p[i] - '0');
        }
        if (v < 1 || v > 65535)
            return fail(why, "bad port");
        u->port = (int)v;
        u->port_given = true;
    }
    return 0;
}

int url_parse(const char *s, size_t n, url_parts *u, const char **why)
{
    memset(u, 0, sizeof *u);
    size_t sl = take_scheme(s, n, u); /* first: callers word errors by scheme */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return fail(why, "bad character");
    if (!sl)
        return fail(why, "expected scheme://");
    const char *auth = s + sl + 3;
    const char *end = s + n;
    size_t alen = 0;
    while (auth + alen < end && !strchr("/?#", auth[alen]))
        alen++;
    const char *at = NULL;
    for (size_t i = 0; i < alen; i++)
        if (auth[i] == '@')
            at = auth + i; /* the last '@', as browsers take it: a raw '@' in a
                            * password stays in the userinfo */
    if (at) {
        u->userinfo = auth;
        u->userinfo_len = (size_t)(at - auth);
        alen -= (size_t)(at + 1 - auth);
        auth = at + 1;
    }
    u->authority = auth;
    u->authority_len = alen;
    if (take_hostport(auth, alen, u, why) != 0)
        return -1;
    const char *p = auth + alen;
    const char *hash = memchr(p, '#', (size_t)(end - p));
    if (hash)
        end = hash;
    const char *q = memchr(p, '?', (size_t)(end - p));
    u->path = p;
    u->path_len = (size_t)((q ? q : end) - p);
    if (q) {
        u->query = q + 1;
        u->query_len = (size_t)(end - q - 1);
    }
    return 0;
}

bool url_is(const url_parts *u, const char *scheme)
{
    return strcmp(u->scheme, scheme) == 0;
}

int url_hostport(const url_parts *u, char *out, size_t len)
{
    if (u->port <= 0)
        return -1;
    int w = snprintf(out, len, u->ipv6 ? "[%s]:%d" : "%s:%d", u->host, u->port);
    return w < 0 || (size_t)w >= len ? -1 : 0;
}
