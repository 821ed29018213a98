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
 * connection for queries on a store that is also being written. */
#ifndef RESTSPY_STORE_SQLITE_H
#define RESTSPY_STORE_SQLITE_H

#include <stdbool.h>
#include <stddef.h>

#include "store.h"

typedef struct store_backend {
    const char *scheme; /* URL scheme before the ':' ("sqlite") */
    /* target: the URL after "scheme:". Same contract as store_open. */
    store *(*open)(const char *target, const store_options *o, char *err, size_t errlen);
    int (*start)(store *s, char *err, size_t errlen);
    int (*submit)(store *s, record *r);
    void (*get_stats)(store *s, store_stats *out);
    void (*close)(store *s);
    int (*query_each)(store *s, const store_query *q, int (*fn)(const record *r, void *ud),
                      void *ud, char *err, size_t errlen);
    int (*get)(store *s, const char *id, record **out, char *err, size_t errlen);
} store_backend;

/* First member of every backend's handle. */
struct store {
    const store_backend *be;
};

extern const store_backend store_sqlite_backend;

/* The schema version this build writes (PRAGMA user_version). */
#define STORE_SQLITE_SCHEMA_VERSION 1

/* TEST ONLY: while paused, the writer thread takes nothing from the queue, so
 * a test can fill the queue deterministically (DROP and BLOCK policies).
 * store_close unpauses. s must be an open sqlite store. */
void store_sqlite_test_pause(store *s, bool paused);

#endif
