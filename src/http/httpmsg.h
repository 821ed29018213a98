/* Folder http/ (this is its main header): HTTP/1.1 as text and on the wire,
 * without capture: header lists, the one header collector, message heads,
 * hop-by-hop rules, reason phrases, content codings, a blocking client.
 * Promises: uses base/ only.
 *
 * httpmsg: the HTTP/1.1 text restspy writes (heads for upstream requests and
 * client responses, JSON error answers) and the header rules of RFC 9110.
 *
 * Owns nothing and does no I/O, so every rule here is unit-tested on its own.
 * Promises: hop-by-hop headers (Connection, Keep-Alive, Proxy-Connection, TE,
 * Trailer, Transfer-Encoding, Upgrade, and every header the Connection header
 * names) are never copied from one hop to the next; framing headers are
 * written by restspy itself, so what a peer reads is always self-consistent. */
#ifndef RESTSPY_HTTPMSG_H
#define RESTSPY_HTTPMSG_H

#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"
#include "http/headers.h"

/* True when s[0..n) is a non-empty RFC 9110 token (a valid header name).
 * llhttp's default build lets a space before the colon through ("X-A : 1");
 * RFC 9112 says to reject it, as it is a request smuggling vector. */
bool httpmsg_is_token(const char *s, size_t n);

/* Splits a header given on a command line or in a setting ("Name: value",
 * blanks around the colon and at the end ignored) into *name / *nlen and
 * *value / *vlen, pointers into line. -1 (nothing set) when there is no
 * colon, the name is no token, or line holds a CR or LF. */
int httpmsg_header_line(const char *line, const char **name, size_t *nlen, const char **value,
                        size_t *vlen);

/* True for the fixed hop-by-hop names (case-insensitive). */
bool httpmsg_is_hop_by_hop(const char *name, size_t n);

/* True when a Connection header of h lists token (case-insensitive). */
bool httpmsg_connection_has(const http_headers *h, const char *token);

/* True when header name must not be forwarded: fixed hop-by-hop names and
 * every name listed by a Connection header of h. */
bool httpmsg_drop_header(const http_headers *h, const char *name);

/* Checks the framing and Host rules of RFC 9112 on a parsed request head,
 * before any of it is forwarded (a request restspy refuses must never reach
 * the upstream). Returns 0 when the head may go on, else the status to
 * answer with *why set to a static text:
 *  - 505: a version other than HTTP/1.x (llhttp reads "HTTP/2.0" and
 *    "HTTP/0.9" request lines as versions; restspy speaks HTTP/1.1);
 *  - 400: an HTTP/1.1 request without Host, or with several (§3.2); an
 *    empty Transfer-Encoding, chunked applied twice, or Transfer-Encoding
 *    in an HTTP/1.0 request (§6.1: its framing is faulty);
 *  - 501: a transfer coding other than chunked (§6.1; as nginx answers),
 *    which restspy does not implement: llhttp would otherwise read such a
 *    body as absent and the bytes as the next request. */
int httpmsg_check_request(const http_headers *h, int http_major, int http_minor, const char **why);

typedef struct httpmsg_req_opts {
    const char *client_ip;    /* appended to X-Forwarded-For */
    const char *request_id;   /* X-Request-Id when the client sent none */
    const char *default_host; /* Host when the client sent none */
    const char *proto;        /* X-Forwarded-Proto when the client sent none: "http", "https" */
    bool chunked;             /* body is forwarded with chunked framing */
    bool upgrade;             /* keep Upgrade, send Connection: upgrade */
    bool strip_expect;        /* restspy answered Expect: 100-continue itself */
} httpmsg_req_opts;

/* The request a head is written for: what the client sent, as parsed. */
typedef struct httpmsg_request {
    const char *method;
    const char *path;  /* raw, percent-encoding kept */
    const char *query; /* after '?', without it; NULL when none */
    const http_headers *headers;
} httpmsg_request;

/* Appends the upstream request head (request line, headers, blank line) for
 * q. Content-Length is kept unless chunked. */
void httpmsg_request_head(buf *out, const httpmsg_request *q, const httpmsg_req_opts *o);

typedef enum {
    HTTPMSG_BODY_NONE,    /* no body (HEAD, 1xx, 204, 304): headers kept as-is */
    HTTPMSG_BODY_LENGTH,  /* the upstream's Content-Length is kept */
    HTTPMSG_BODY_CHUNKED, /* restspy re-frames the body as chunked */
    HTTPMSG_BODY_CLOSE,   /* delimited by closing the connection (HTTP/1.0 client) */
    HTTPMSG_BODY_UPGRADE, /* 101: Upgrade and Connection: upgrade are kept */
} httpmsg_body;

/* Appends the client response head. reason may be NULL (a standard phrase is
 * used). keep_alive false adds Connection: close; true with http10 adds
 * Connection: keep-alive. */
void httpmsg_response_head(buf *out, int status, const char *reason, size_t reason_len,
                           const http_headers *h, httpmsg_body body, bool keep_alive, bool http10);

/* Appends a whole JSON error answer: {"error":"...","request_id":"..."}. */
void httpmsg_error_response(buf *out, int status, const char *error, const char *request_id,
                            bool keep_alive);

/* The one reason-phrase table: the standard phrase of status ("Not Found",
 * RFC 9110 §15 and the registered codes beside it), or NULL for a code
 * without one. The string is static. */
const char *httpmsg_reason_lookup(int status);

/* httpmsg_reason_lookup(status), or "Unknown" for a code without a phrase
 * (a status line needs some text). */
const char *httpmsg_reason(int status);

/* Checks the CRLF that must follow each chunk's data (RFC 9112 §7.1),
 * which llhttp's default build skips without looking at it (so that
 * "3\r\nabcXY0\r\n\r\n" would pass): *need is how many of its bytes are
 * still to be seen (set it to 2 where a chunk's data ends), p[0..n) the
 * bytes that follow. Looks at up to *need of them and lowers *need by as
 * many; false on a byte that is not the expected one. */
bool httpmsg_chunk_crlf(unsigned *need, const char *p, size_t n);

/* Appends the chunk-size line for a chunk of n bytes ("1a2\r\n"). */
void httpmsg_chunk_header(buf *out, size_t n);

/* The one header collector: llhttp reports a header name or value in
 * pieces (a read can end inside either), and every parser in restspy (the
 * proxy's both ways, the admin API, the HTTP client, replay) gathers them
 * through this, so all agree on what a valid header is. Zero-initialized
 * means empty; name and value are owned and reset after each header. */
typedef struct httpmsg_hcollect {
    buf name, value;
    bool value_cut; /* the last value piece ended where its read did */
} httpmsg_hcollect;

/* Appends a piece of the header name. */
void httpmsg_hcollect_name(httpmsg_hcollect *hc, const char *at, size_t len);

/* Appends a piece of the value. feed_end is the end of the bytes handed to
 * llhttp in this call, or NULL to accept any split. With feed_end, a piece
 * that continues a value whose last piece did NOT end with its read is
 * obsolete line folding (llhttp joins folded lines): -1, nothing appended
 * (RFC 9112 §5.2 allows refusing it, as nginx and HAProxy do: a folded
 * line can hide a header from one hop). 0 otherwise. */
int httpmsg_hcollect_value(httpmsg_hcollect *hc, const char *at, size_t len, const char *feed_end);

/* Ends the current header: when its name is a token (httpmsg_is_token),
 * appends it to into (when not NULL) and returns 0; else -1 with nothing
 * appended. Either way the collector is empty again. */
int httpmsg_hcollect_done(httpmsg_hcollect *hc, http_headers *into);

/* Empties the collector (a new message), keeping its buffers. */
void httpmsg_hcollect_reset(httpmsg_hcollect *hc);

/* Frees the collector's buffers. */
void httpmsg_hcollect_free(httpmsg_hcollect *hc);

#endif
