/* store_sqlite: the SQLite backend of store.h, and the backend interface.
 *
 * Private to the store module: only store.c, store_sqlite.c and the store
 * unit test include this. It defines the small vtable every backend fills
 * (store.c parses the URL and forwards each store_* call through it) and the
 * base struct every backend's handle starts with, so a `store *` can be cast
 * to the backend's own struct. When a second backend (PostgreSQL) arrives,
 * the interface part moves to its own store_backend.h unchanged.
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
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

typedef struct store_backend {
    const char *scheme; /* URL scheme before the ':' ("sqlite") */
    /* target: the URL after "scheme:". Same contract as store_open. */
    store *(*open)(const char *target, const store_options *o, char *err, size_t errlen);
    int (*start)(store *s, char *err, size_t errlen);
    /* done may be NULL. Same contract as store_submit_unit. */
    int (*submit)(store *s, const store_unit *u, store_done_fn done, void *ud);
    void (*get_stats)(store *s, store_stats *out);
    void (*close)(store *s);
    int (*query_each)(store *s, const store_query *q, int (*fn)(const record *r, void *ud),
                      void *ud, char *err, size_t errlen);
    /* One record by its whole id (lower case): 1 found, 0 not, -1 error.
     * store.c resolves prefixes and suffixes with ids_each. */
    int (*get)(store *s, const char *id, record **out, char *err, size_t errlen);
    /* Calls fn for every stored id, in id order, until fn returns non-zero.
     * 0, or -1 with err. */
    int (*ids_each)(store *s, int (*fn)(const char *id, size_t len, void *ud), void *ud, char *err,
                    size_t errlen);
    /* replication (schema version 2); same contracts as store.h */
    int (*outbox_fetch)(store *s, int64_t after_seq, size_t max, store_outbox_row *rows, size_t *n,
                        char *err, size_t errlen);
    int (*outbox_wait)(store *s, int64_t after_seq, int timeout_ms);
    void (*outbox_confirmed)(store *s, int64_t upto, const char *last_id);
    int (*ledger_has)(store *s, const char *message_id, char *err, size_t errlen);
    /* set: false adds value to the counter, true replaces it */
    void (*counter)(store *s, const char *name, int64_t value, bool set);
    int (*repl_stats_get)(store *s, store_repl_stats *out, char *err, size_t errlen);
    /* the replicator's failing writes, skips and lag (schema version 4) */
    void (*stuck_set)(store *s, const store_stuck *row);
    void (*stuck_clear)(store *s, const char *message_id);
    int (*stuck_get)(store *s, const char *message_id, store_stuck *out, char *err, size_t errlen);
    int (*stuck_list)(store *s, size_t max, store_stuck **out, size_t *n, int64_t *total, char *err,
                      size_t errlen);
    int (*ledger_skip)(store *s, const char *message_id, const char *origin, char *err,
                       size_t errlen);
    int (*repl_lag_get)(store *s, int64_t since_us, size_t max_samples, store_repl_lag *out,
                        char *err, size_t errlen);
} store_backend;

/* First member of every backend's handle. */
struct store {
    const store_backend *be;
};

extern const store_backend store_sqlite_backend;

/* The schema version this build writes (PRAGMA user_version). */
#define STORE_SQLITE_SCHEMA_VERSION 4

/* TEST ONLY: while paused, the writer thread takes nothing from the queue, so
 * a test can fill the queue deterministically (DROP and BLOCK policies).
 * store_close unpauses. s must be an open sqlite store. */
void store_sqlite_test_pause(store *s, bool paused);

#endif
