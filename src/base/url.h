/* url: the one parser of absolute URLs,
 * scheme://[userinfo@]host[:port][/path][?query][#fragment].
 *
 * Owns nothing: a parsed url points into the text it was parsed from
 * (userinfo, authority, path and query are views, valid while that text
 * is), except scheme and host, which are copied so that they can be
 * compared and handed to getaddrinfo as they are. Promises: what parses has
 * a scheme of letters, digits, '+', '-', '.', a non-empty host (an IPv6
 * literal in brackets, kept without them), a port of digits only in 1-65535
 * when given, and no byte below 0x21 or DEL anywhere; every reader of a URL
 * in restspy (upstream, replay target, management API, HAR entries, the
 * proxy's absolute-form targets) goes through it, so they agree on what a
 * URL is. */
#ifndef RESTSPY_URL_H
#define RESTSPY_URL_H

#include <stdbool.h>
#include <stddef.h>

typedef struct url_parts {
    char scheme[16];      /* lower case: "http", "https", "amqp", ... */
    const char *userinfo; /* "user:pass" before '@', still %-encoded; NULL when none */
    size_t userinfo_len;
    const char *authority; /* "host[:port]" as written (a Host header's value) */
    size_t authority_len;
    char host[256]; /* NUL-terminated; an IPv6 literal without its brackets */
    bool ipv6;      /* host was a [bracketed] literal */
    int port;       /* as given, else the scheme's default (http 80, https 443,
                     * amqp 5672, amqps 5671), else 0 */
    bool port_given;
    const char *path;  /* from the '/' after the authority to '?', '#' or the end */
    size_t path_len;   /* 0 when the URL has no path */
    const char *query; /* after '?', up to '#'; NULL when none */
    size_t query_len;
} url_parts;

/* Parses the absolute URL s (length n) into u. 0, or -1 with *why (may be
 * NULL) pointing to a short static reason: "expected scheme://",
 * "no host", "bad port", "bad character", "put an IPv6 address in
 * brackets" ... On error u is partly filled,
 * for better messages: scheme when one was read (else ""), authority when
 * the parse reached it (else NULL). */
int url_parse(const char *s, size_t n, url_parts *u, const char **why);

/* Whether u's scheme is scheme (lower case literal). */
bool url_is(const url_parts *u, const char *scheme);

/* Writes "host:port" ("[v6]:port" for IPv6) for connecting, NUL-terminated.
 * 0, or -1 when it does not fit in len or u has no port. */
int url_hostport(const url_parts *u, char *out, size_t len);

#endif
