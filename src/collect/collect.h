/* Folder collect/ (this is its main header): `restspy collect`, the daemon
 * that takes finished request/response pairs from local processes (the
 * Django adapter, adapters/django) over a Unix socket and runs them through
 * the proxy's capture pipeline (src/pipeline/). docs/collect-protocol.md is
 * the protocol; frame.h its codec; daemon.c the process (socket, sinks,
 * admin API, signals); conn.c one client connection; view.c the views.
 *
 * Promises: every PAIR gets exactly one answer, in the order of its
 * connection's frames; a `committed` ACK is sent only after the store has
 * committed the record (and its outbox row); a connection's bad input never
 * touches another connection; nothing acked is lost on SIGTERM (the store's
 * queue is flushed before the exit). */
#ifndef RESTSPY_COLLECT_H
#define RESTSPY_COLLECT_H

#include "capture/config.h"

/* Runs the daemon with cfg (loaded and validated, socket set; borrowed)
 * until SIGTERM/SIGINT. Returns the exit code: 0 clean stop, 1 runtime
 * failure (the socket is a non-socket file or another daemon answers on it,
 * the store or the admin listener cannot be opened); errors are one line on
 * stderr. */
int collect_run(config *cfg);

#endif
