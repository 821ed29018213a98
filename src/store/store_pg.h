/* store_pg: the PostgreSQL backend of store.h (its vtables,
 * store_pg_backend and store_postgres_backend, are declared in
 * store/backend.h with the other backends; its parts share
 * store/pg_internal.h).
 *
 * Private to the store module: only the backend's own files and the store
 * unit test include this. */
#ifndef RESTSPY_STORE_PG_H
#define RESTSPY_STORE_PG_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

/* TEST ONLY: for s (an open postgresql store), how many batches the writer
 * sent their request rows with COPY and committed (*copied), and how many
 * COPYs the server refused, their batch then going again through the
 * INSERTs (*refused: a duplicate id, a value it rejects). false when s is
 * not a PostgreSQL store. */
bool store_pg_test_copies(store *s, uint64_t *copied, uint64_t *refused);

#endif
