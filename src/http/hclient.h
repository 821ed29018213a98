/* hclient: restspy's one outgoing HTTP client (replay, the replicator,
 * `federate` and `replication status` talking to the RabbitMQ management
 * API), on libcurl's multi interface driven by a libuv loop.
 *
 * Owns, per hclient: one libcurl multi handle on the caller's loop (its
 * sockets as uv_poll_t, its timer as a uv_timer_t), the keep-alive
 * connections to ONE origin (http:// or https://, at most max_conns of
 * them) and a pool of easy handles reused request after request.
 * Promises: every request ends in exactly one callback, with the answer or
 * with one error text ("connect: Connection refused", "resolve ...",
 * "timeout", "invalid response: ...", "tls: ..."); every request is bounded
 * by its timeout; a body is read whole into memory up to max_body; a
 * request carries exactly the caller's headers plus Host, Content-Length
 * and the base URL's Basic authorization (libcurl adds no Accept or
 * Expect); a reused connection the server closed before answering is
 * retried once on a new one (libcurl). Plain http:// speaks HTTP/1.1;
 * https:// offers HTTP/2 by ALPN and multiplexes when the server takes it.
 * Not thread-safe: an hclient lives in its loop's thread.
 *
 * hclient_sync wraps one hclient on a private loop for the blocking callers
 * (one per thread). */
#ifndef RESTSPY_HCLIENT_H
#define RESTSPY_HCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"
#include "http/headers.h"

/* Default of hclient_opts.max_body: 16 MiB. */
#define HCLIENT_MAX_BODY (16u << 20)

/* TLS to an https:// origin, with curl's own option names. Strings are the
 * caller's and must outlive hclient_new only (libcurl copies them). */
typedef struct hclient_tls {
    const char *ca_file;   /* --cacert: PEM CAs trusted besides the system store
                              (Debian's libcurl keeps its CA path /etc/ssl/certs
                              when a CA file is set), or NULL */
    bool insecure;         /* --insecure: no certificate or host name check */
    const char *cert_file; /* --cert: client certificate (PEM), or NULL */
    const char *key_file;  /* --key: its key (PEM); NULL: in cert_file */
    const char *sni;       /* name for SNI and the certificate check instead of
                              the URL's host, or NULL */
} hclient_tls;

typedef struct hclient_opts {
    const char *base;         /* "http[s]://[user:pass@]host:port" (a path is ignored) */
    uint64_t timeout_ms;      /* per request, connect and answer (0: 30 s) */
    unsigned max_conns;       /* connections to the origin (0: 1) */
    size_t max_body;          /* answer bodies above fail (0: HCLIENT_MAX_BODY) */
    const char *connect_addr; /* numeric address to connect to instead of
                                 resolving the host for every connection, or NULL */
    hclient_tls tls;
} hclient_opts;

typedef struct hclient hclient;

/* An hclient on loop (which must outlive it). NULL with err when the base
 * URL or the options are bad ("bad URL 'x' (expected http[s]://host:port)",
 * "--key needs --cert"). TLS files are read when the first connection is
 * made: a bad one fails each request with "tls: ...". */
hclient *hclient_new(uv_loop_t *loop, const hclient_opts *o, char *err, size_t errlen);

/* Ends every request in flight without its callback, then releases the
 * client; its handles close on the loop's next turn, so the caller runs the
 * loop once more before closing it. May be called from a callback. */
void hclient_free(hclient *c);

/* A request prepared once and sent any number of times (replay sends one
 * case per loop): its URL, header list and a copy of its body. */
typedef struct hclient_msg hclient_msg;

/* method (a token), target ("/path?query", no blanks), headers (may be NULL;
 * Host, Content-Length, Transfer-Encoding, Connection and Expect in it are
 * ignored), host: the Host header (NULL: the base URL's host:port), body
 * (copied; POST, PUT and PATCH always send a Content-Length). NULL with
 * err "invalid request: ..." when a header or the target would break the
 * request's framing. */
hclient_msg *hclient_msg_new(const hclient *c, const char *method, const char *target,
                             const http_headers *headers, const char *host, const void *body,
                             size_t len, char *err, size_t errlen);
void hclient_msg_free(hclient_msg *m);

/* Why a request failed, for callers that classify (replay words a refused
 * connect and a closed connection its own way). */
typedef enum hclient_fail {
    HCLIENT_OK = 0,
    HCLIENT_CONNECT, /* oserr says why */
    HCLIENT_RESOLVE,
    HCLIENT_TIMEOUT,
    HCLIENT_CLOSED, /* closed without an answer */
    HCLIENT_TLS,    /* handshake or certificate */
    HCLIENT_IO,     /* send or receive error */
    HCLIENT_INVALID /* a malformed or too large answer */
} hclient_fail;

/* A request's outcome, valid during the callback only. The callback may take
 * headers and body (swap them with empty ones of its own); what it leaves is
 * emptied and reused for the next request. */
typedef struct hclient_result {
    const char *error; /* NULL on success, else the error text */
    hclient_fail fail;
    int oserr; /* errno of a connect failure, else 0 */
    int status;
    http_headers headers; /* the final answer's (an interim 1xx's are dropped) */
    buf body;
    int64_t started_us; /* wall clock when it was started */
    int64_t total_us;   /* start to last byte of the answer */
} hclient_result;

typedef void (*hclient_cb)(void *ud, hclient_result *res);

/* Starts m (which must live until the callback) with timeout_ms (0: the
 * client's); cb is called from the loop, never from here. */
void hclient_start(hclient *c, const hclient_msg *m, uint64_t timeout_ms, hclient_cb cb, void *ud);

/* ---- blocking ---- */

typedef struct hclient_sync hclient_sync;

typedef struct hclient_response {
    int status;
    http_headers headers;
    buf body;
} hclient_response;

/* One hclient (one connection) on a private loop; o as for hclient_new
 * (max_conns is 1). NULL with err when malformed. */
hclient_sync *hclient_sync_new(const hclient_opts *o, char *err, size_t errlen);
void hclient_sync_free(hclient_sync *s);

/* Sends one request and waits for the answer, read into *out (freed by the
 * caller with hclient_response_free, also after a failure). 0, or -1 with
 * err: the texts of hclient_result.error, or "invalid request: ...". */
int hclient_sync_request(hclient_sync *s, const char *method, const char *target,
                         const http_headers *headers, const void *body, size_t len,
                         hclient_response *out, char *err, size_t errlen);
void hclient_response_free(hclient_response *r);

#endif
