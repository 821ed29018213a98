/* pg_internal: what the files of the PostgreSQL backend share (private to
 * them: store_pg.c, pg_schema.c, pg_writer.c, pg_query.c): the handle, the
 * column list and the helpers each part offers the others (pg_retention.c
 * too). Threads and
 * ownership: see store_pg.c. */
#ifndef RESTSPY_PG_INTERNAL_H
#define RESTSPY_PG_INTERNAL_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "store/backend.h"
#include "store/store.h"
#include "store/writeq.h"

/* The schema version this build writes: the same numbering as SQLite's
 * (STORE_SQLITE_SCHEMA_VERSION), so that one number names one logical
 * schema whichever the backend (pg_schema.c). */
#define PG_SCHEMA_VERSION 7

/* Column order shared by the INSERT and every SELECT: SQLite's (SQ_COLUMNS),
 * so that both backends read a row the same way. */
#define PG_COLUMNS                                                                                 \
    "id, node, started_at, duration_us, upstream_us, client_addr, method, scheme, host, path, "    \
    "query, req_headers, req_body, req_body_size, req_truncated, status, resp_headers, "           \
    "resp_body, resp_body_size, resp_truncated, rule, origin, error, replication, req_encoding, "  \
    "req_body_note, resp_encoding, resp_body_note"

enum {
    PG_C_ID,
    PG_C_NODE,
    PG_C_STARTED_AT,
    PG_C_DURATION,
    PG_C_UPSTREAM,
    PG_C_CLIENT,
    PG_C_METHOD,
    PG_C_SCHEME,
    PG_C_HOST,
    PG_C_PATH,
    PG_C_QUERY,
    PG_C_REQ_HEADERS,
    PG_C_REQ_BODY,
    PG_C_REQ_BODY_SIZE,
    PG_C_REQ_TRUNC,
    PG_C_STATUS,
    PG_C_RESP_HEADERS,
    PG_C_RESP_BODY,
    PG_C_RESP_BODY_SIZE,
    PG_C_RESP_TRUNC,
    PG_C_RULE,
    PG_C_ORIGIN,
    PG_C_ERROR,
    PG_C_REPLICATION,
    PG_C_REQ_ENCODING,
    PG_C_REQ_BODY_NOTE,
    PG_C_RESP_ENCODING,
    PG_C_RESP_BODY_NOTE,
    PG_C_COUNT
};

typedef struct pg_store {
    writeq_store w;    /* first: a store * is a pg_store *; the queue and writer */
    char *conninfo;    /* the URL as libpq takes it (owned; may hold a password) */
    char *where;       /* "database D on H:P" for messages, no password (owned) */
    store_options opt; /* copy; opt.url is not kept */

    PGconn *db; /* the writer's connection (the opener's before store_start),
                 * or the read-only store's only one */

    pthread_mutex_t rlock; /* serializes queries on rdb */
    PGconn *rdb;           /* == db when read_only; else opened on first read */

    /* writer-only */
    bool prepared;        /* the INSERTs are prepared on db (again after a reconnect) */
    int64_t lost_mono_us; /* when the writer lost db (monotonic); 0 while it has it */
    int64_t next_age_prune_mono_us, next_rows_prune_mono_us; /* retention's next checks */
    buf reqh, resph; /* header JSON of the record being sent */
} pg_store;

static inline pg_store *pgs(store *s)
{
    return (pg_store *)s;
}

/* ---- store_pg.c ---- */

/* A connection to s's database; NULL with err ("cannot connect to the
 * PostgreSQL store (WHERE): why"). */
PGconn *pg_connect(const pg_store *s, char *err, size_t errlen);
/* The first line of c's last error (libpq's messages end in newlines). */
const char *pg_errmsg(const PGconn *c, char *line, size_t len);
/* Runs sql (no parameters, no rows) on c outside pipeline mode. 0, or -1
 * with err. */
int pg_exec(PGconn *c, const char *sql, char *err, size_t errlen);

/* ---- pg_schema.c ---- */

/* Brings the database to PG_SCHEMA_VERSION in one transaction under a
 * transaction-scoped advisory lock (instances starting together migrate
 * once; the others wait, then find nothing to do). 0, or -1 with err. */
int pg_migrate(pg_store *s, char *err, size_t errlen);
/* The database's schema version for a reader: 0 when it holds no restspy
 * store. 0 with *v, or -1 with err. */
int pg_schema_version(PGconn *c, int64_t *v, char *err, size_t errlen);

/* ---- pg_writer.c ---- */

/* The writer's connection, reset when it broke (logging the loss and the
 * return once each), its statements prepared. Writer thread only. 0, or -1
 * with e. */
int pg_writer_conn(pg_store *s, char *e, size_t elen);
/* writeq's commit hook (writeq_hooks.commit): one batch, pipelined. */
int pg_commit_batch(void *ctx, writeq_item *b, size_t n, const writeq_ops *ops, size_t *bad,
                    int64_t *max_seq, char *e, size_t elen);

/* ---- pg_retention.c ---- */

/* What the PostgreSQL backend plugs into its writeq: pg_commit_batch and
 * retention (store_max_rows, store_max_age). */
extern const writeq_hooks pg_writeq_hooks;

/* ---- pg_query.c ---- */

int pg_query_each(store *base, const store_query *q, int (*fn)(const record *r, void *ud), void *ud,
                  char *err, size_t errlen);
int pg_get(store *base, const char *id, record **out, char *err, size_t errlen);
int pg_ids_each(store *base, int (*fn)(const char *id, size_t len, void *ud), void *ud, char *err,
                size_t errlen);

#endif
