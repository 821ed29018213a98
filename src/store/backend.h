/* store/backend: the interface between the generic store front (store.c)
 * and each backend.
 *
 * Every backend fills one store_backend (a vtable: store.c parses the URL and
 * forwards each store_* call of store.h through it) and starts its handle
 * with struct store. Each function has the contract of the store.h function
 * of the same name. This header knows store.h's types by their struct tags
 * only, so that store.c can include it without a cycle: a backend includes
 * store.h for them, and never the other way round. */
#ifndef RESTSPY_STORE_BACKEND_H
#define RESTSPY_STORE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct store store; /* as in store.h */
struct record;
struct store_options;
struct store_unit;
struct store_stats;
struct store_query;
struct store_outbox_row;
struct store_repl_stats;
struct store_stuck;
struct store_repl_lag;
struct store_repl_origin;
struct store_receipt;
struct store_ledger_row;
struct store_ledger_entry;

typedef struct store_backend {
    const char *scheme; /* URL scheme before the ':' ("sqlite") */
    /* NULL when the backend offers replication (the outbox, the ledger);
     * else the one line store_check_replication gives. */
    const char *no_replication;
    /* target: the URL after "scheme:". Same contract as store_open. */
    store *(*open)(const char *target, const struct store_options *o, char *err, size_t errlen);
    int (*start)(store *s, char *err, size_t errlen);
    /* done may be NULL. Same contract as store_submit_unit. */
    int (*submit)(store *s, const struct store_unit *u, void (*done)(void *ud, int status),
                  void *ud);
    void (*get_stats)(store *s, struct store_stats *out);
    void (*close)(store *s);
    int (*query_each)(store *s, const struct store_query *q,
                      int (*fn)(const struct record *r, void *ud), void *ud, char *err,
                      size_t errlen);
    /* One record by its whole id (lower case): 1 found, 0 not, -1 error.
     * store.c resolves prefixes and suffixes with ids_each. */
    int (*get)(store *s, const char *id, struct record **out, char *err, size_t errlen);
    /* Calls fn for every stored id, in id order, until fn returns non-zero.
     * 0, or -1 with err. */
    int (*ids_each)(store *s, int (*fn)(const char *id, size_t len, void *ud), void *ud, char *err,
                    size_t errlen);
    /* replication (schema version 2); same contracts as store.h */
    int (*outbox_fetch)(store *s, int64_t after_seq, size_t max, struct store_outbox_row *rows,
                        size_t *n, char *err, size_t errlen);
    int (*outbox_wait)(store *s, int64_t after_seq, int timeout_ms);
    void (*outbox_confirmed)(store *s, int64_t upto, const char *last_id);
    int (*ledger_has)(store *s, const char *message_id, char *err, size_t errlen);
    /* set: false adds value to the counter, true replaces it */
    void (*counter)(store *s, const char *name, int64_t value, bool set);
    int (*repl_stats_get)(store *s, struct store_repl_stats *out, char *err, size_t errlen);
    /* the replicator's failing writes, skips and lag (schema version 4) */
    void (*stuck_set)(store *s, const struct store_stuck *row);
    void (*stuck_clear)(store *s, const char *message_id);
    int (*stuck_get)(store *s, const char *message_id, struct store_stuck *out, char *err,
                     size_t errlen);
    int (*stuck_list)(store *s, size_t max, struct store_stuck **out, size_t *n, int64_t *total,
                      char *err, size_t errlen);
    int (*ledger_skip)(store *s, const char *message_id, const char *origin, char *err,
                       size_t errlen);
    int (*repl_lag_get)(store *s, int64_t since_us, size_t max_samples, struct store_repl_lag *out,
                        char *err, size_t errlen);
    /* the ledger by origin (schema version 5 indexes it) */
    int (*repl_origins_get)(store *s, int64_t since_us, size_t max_samples, size_t max_origins,
                            struct store_repl_origin **out, size_t *n, int64_t *total,
                            int64_t *ledger_end, char *err, size_t errlen);
    int64_t (*ledger_each)(store *s, int64_t after, size_t max,
                           int (*fn)(const struct store_ledger_row *row, void *ud), void *ud,
                           char *err, size_t errlen);
    /* the record of one replicated write (schema version 6) */
    void (*receipt_put)(store *s, const struct store_receipt *r);
    int (*receipts_get)(store *s, const char *message_id, struct store_receipt **out, size_t *n,
                        char *err, size_t errlen);
    int (*ledger_get)(store *s, const char *message_id, struct store_ledger_entry *out, char *err,
                      size_t errlen);
    int (*outbox_has)(store *s, const char *message_id, char *err, size_t errlen);
} store_backend;

/* First member of every backend's handle, so that a `store *` can be cast
 * to the backend's own struct. */
struct store {
    const store_backend *be;
};

/* The backends of this build, defined each in its own files (store.c picks
 * one by the URL's scheme). */
extern const store_backend store_sqlite_backend;
/* PostgreSQL, under both of libpq's URI schemes. */
extern const store_backend store_pg_backend;
extern const store_backend store_postgres_backend;

#endif
