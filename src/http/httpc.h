/* httpc: the blocking HTTP/1.1 client of restspy's own tools (the
 * replicator applying messages, `federate` and `replication status` talking
 * to the RabbitMQ management API), on libcurl.
 *
 * Owns one libcurl handle and so one keep-alive connection to one http://
 * origin, reconnecting when the server closed it. Promises: every call is
 * bounded by the timeout; a response body is read whole into memory up to
 * 16 MiB (then it fails), which suits API answers, not bulk transfers; the
 * request carries exactly the caller's headers plus Host, Content-Length
 * and the base URL's Basic authorization. Not thread-safe: one httpc per
 * thread. */
#ifndef RESTSPY_HTTPC_H
#define RESTSPY_HTTPC_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "http/headers.h"

typedef struct httpc httpc;

/* base: "http://[user:pass@]host:port" (a path is ignored; user:pass adds
 * HTTP Basic authorization to every request). NULL with err if malformed. */
httpc *httpc_new(const char *base, uint64_t timeout_ms, char *err, size_t errlen);
void httpc_free(httpc *c);

typedef struct httpc_response {
    int status;
    http_headers headers;
    buf body;
} httpc_response;

void httpc_response_free(httpc_response *r);

/* Sends one request (target = path and query) with headers (may be NULL),
 * Host and Content-Length added, and reads the response into *out (freed by
 * the caller with httpc_response_free, also after a failure). Retries once
 * on a fresh connection when a reused one turns out closed before any
 * response byte. 0, or -1 with err: "connect: Connection refused",
 * "timeout", "invalid response: ...". */
int httpc_request(httpc *c, const char *method, const char *target, const http_headers *headers,
                  const void *body, size_t len, httpc_response *out, char *err, size_t errlen);

#endif
