/* listener: the worker threads that accept and serve client connections.
 *
 * Owns N threads, each with its own libuv loop, its own listening socket on
 * the shared address (SO_REUSEPORT: the kernel spreads connections across
 * them, no accept lock), its own upstream pool and read buffer. Promises:
 * every socket listens before listener_start returns, so an address in use
 * is reported there; the port belongs to this process alone: a start fails
 * with "address already in use" when anything listens there already,
 * another restspy (which SO_REUSEPORT alone would let in) included, even
 * when both start at the same moment; listener_stop drains every worker
 * (in-flight requests finish, at most grace_ms) and joins the threads
 * before it returns. */
#ifndef RESTSPY_LISTENER_H
#define RESTSPY_LISTENER_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/proxy.h"

typedef struct listener listener;

/* Resolves "host:port" into ss (numeric or a name). 0 or -1 with err. */
int listener_resolve(const char *hostport, struct sockaddr_storage *ss, char *err, size_t errlen);

/* Binds nworkers sockets on listen_addr ("host:port") and starts a thread
 * for each. NULL with err ("cannot listen on ADDR: Address already in use")
 * when the address cannot be had. */
listener *listener_start(proxy_shared *sh, const char *listen_addr, int nworkers, char *err,
                         size_t errlen);

/* Stops accepting, lets requests in flight finish for up to grace_ms, closes
 * what is left (captured with error "shutdown"), joins, frees. */
void listener_stop(listener *l, uint64_t grace_ms);

#endif
