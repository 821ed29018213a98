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
#include "base/uuid7.h"
#include "store/backend.h"
#include "store/store.h"
#include "store/writeq.h"

/* The schema version this build writes: the same numbering as SQLite's
 * (STORE_SQLITE_SCHEMA_VERSION), so that one number names one logical
 * schema whichever the backend (pg_schema.c). */
#define PG_SCHEMA_VERSION 9

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

    /* The claims of this handle (pg_repl.c): a UUIDv7 made at open, so
     * that a restarted process claims afresh and its predecessor's claims
     * run out. */
    char claimer[UUID7_STR_LEN + 1];
    /* under rlock: when the outbox claims were last renewed (wall clock),
     * and what outbox_wait compares against (pg_outbox_wait) */
    int64_t renewed_us;
    int64_t fetched_mono_us; /* monotonic time of the last fetch */
    int64_t fetched_local;   /* the writeq's outbox_seq at the last fetch */

    /* under w.q.mu: batches whose request rows went by COPY, and COPYs
     * refused (store_pg_test_copies) */
    uint64_t copies, copies_refused;

    /* writer-only */
    bool prepared;        /* the INSERTs are prepared on db (again after a reconnect) */
    int64_t lost_mono_us; /* when the writer lost db (monotonic); 0 while it has it */
    int64_t next_age_prune_mono_us, next_rows_prune_mono_us; /* retention's next checks */
    int64_t next_ledger_prune_mono_us; /* replicate_ledger_max_age's next check */
    int64_t next_claims_prune_mono_us; /* the run-out claims' next check (0: at the start) */
    buf reqh, resph;                   /* header JSON of the record being sent */
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
/* Checks that the database holds every table and column the current
 * schema has (a database that says PG_SCHEMA_VERSION but lost a column
 * would take no row while the proxy answered 200): the reference is the
 * migrations themselves, run into this session's temporary schema in a
 * transaction rolled back, so there is no second list to keep. 0; -1 with
 * err naming what is missing ("... lacks requests.status, applied.state").
 * A check that cannot run (no TEMPORARY privilege) is a warning on stderr,
 * not a refusal. */
int pg_schema_check(pg_store *s, char *err, size_t errlen);
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

/* The read connection, opened on first use; called with rlock held. A
 * broken one (the server restarted) is reset first. NULL with err. */
PGconn *pg_reader(pg_store *s, char *err, size_t errlen);
/* Runs sql with the text params v[0..n) on the read connection in
 * single-row mode, calling row(r, ud) for each row until it returns
 * non-zero. 0, or -1 with err. rlock is taken here. */
int pg_each_row(pg_store *s, const char *sql, int n, const char *const *v,
                int (*row)(const PGresult *r, void *ud), void *ud, char *err, size_t errlen);
/* Column col of the single-row result r: a heap copy in *dst (the old
 * value freed; NULL for NULL), or an integer (0 for NULL). */
void pg_set_str(char **dst, const PGresult *r, int col);
int64_t pg_get_int(const PGresult *r, int col);
/* A bytea column (text result: hex) appended to b. */
void pg_set_body(buf *b, const PGresult *r, int col);

int pg_query_each(store *base, const store_query *q, int (*fn)(const record *r, void *ud), void *ud,
                  char *err, size_t errlen);
int pg_get(store *base, const char *id, record **out, char *err, size_t errlen);
int pg_ids_each(store *base, int (*fn)(const char *id, size_t len, void *ud), void *ud, char *err,
                size_t errlen);

/* ---- pg_repl.c: replication (see there for the claims) ---- */

/* How long a claim (an outbox row being published, a message being
 * applied) holds before another instance may take it over: the setting
 * store_claim_lease (store_options.claim_lease_ms), 30 s when unset. */
int64_t pg_claim_lease_us(const pg_store *s);

int pg_outbox_fetch(store *base, int64_t after_seq, size_t max, store_outbox_row *rows, size_t *n,
                    char *err, size_t errlen);
int pg_outbox_wait(store *base, int64_t after_seq, int timeout_ms);
int pg_ledger_has(store *base, const char *message_id, char *err, size_t errlen);
int pg_repl_stats_get(store *base, store_repl_stats *out, char *err, size_t errlen);
int pg_stuck_get(store *base, const char *message_id, store_stuck *out, char *err, size_t errlen);
int pg_stuck_list(store *base, size_t max, store_stuck **out, size_t *n, int64_t *total, char *err,
                  size_t errlen);
int pg_ledger_skip(store *base, const char *message_id, const char *origin, char *err,
                   size_t errlen);
int pg_repl_lag_get(store *base, int64_t since_us, size_t max_samples, store_repl_lag *out,
                    char *err, size_t errlen);
int pg_repl_origins_get(store *base, int64_t since_us, size_t max_samples, size_t max_origins,
                        store_repl_origin **out, size_t *n, int64_t *total, int64_t *ledger_end,
                        char *err, size_t errlen);
int64_t pg_ledger_each(store *base, int64_t after, size_t max,
                       int (*fn)(const store_ledger_row *row, void *ud), void *ud, char *err,
                       size_t errlen);
int pg_receipts_get(store *base, const char *message_id, store_receipt **out, size_t *n, char *err,
                    size_t errlen);
int pg_ledger_get(store *base, const char *message_id, store_ledger_entry *out, char *err,
                  size_t errlen);
int pg_outbox_has(store *base, const char *message_id, char *err, size_t errlen);

#endif
