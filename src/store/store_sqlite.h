/* store_sqlite: the SQLite backend of store.h (its vtable, store_sqlite_backend,
 * is declared in store/backend.h with the other backends).
 *
 * Private to the store module: only the backend's own files and the store
 * unit test include this.
 *
 * The SQLite backend owns one read-write connection (used by the writer
 * thread only once store_start has run), plus a lazily opened read-only
 * connection for queries on a store that is also being written (and for the
 * replication reads: outbox, ledger, figures), guarded by a mutex because the
 * publisher thread and the admin thread may read at once.
 *
 * Several processes may write one file (a site's proxy and its replicator):
 * every write transaction is BEGIN IMMEDIATE under the busy timeout, and one
 * that still finds the file locked is retried with backoff, never dropped. */
#ifndef RESTSPY_STORE_SQLITE_H
#define RESTSPY_STORE_SQLITE_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

/* The schema version this build writes (PRAGMA user_version). */
#define STORE_SQLITE_SCHEMA_VERSION 9

/* TEST ONLY: the most rows a path glob's literal-prefix range may hold for
 * store_query_each to read it through the path index rather than walk the
 * requests newest first (default 10000; process-wide). Tests set it to 0 and
 * back to force each plan and compare their answers. */
void store_sqlite_test_glob_index_max(int64_t max);

/* TEST ONLY: whether s (an open sqlite store) runs a background
 * checkpointer (store_options.checkpoint_pages and started), and how many
 * checkpoints it has run (*runs) and how many a reader or the writer held
 * up (*busy). */
bool store_sqlite_test_checkpoints(store *s, uint64_t *runs, uint64_t *busy);

#endif
