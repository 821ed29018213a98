/* sqlite_internal: what the files of the SQLite backend share (private to
 * them: store_sqlite.c, sqlite_schema.c, sqlite_writer.c, sqlite_query.c,
 * sqlite_repl.c, sqlite_receipts.c): the column lists, the handle and the helpers each part
 * offers the others. Threads and ownership: see store_sqlite.c. */
#ifndef RESTSPY_SQLITE_INTERNAL_H
#define RESTSPY_SQLITE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "store/backend.h"
#include "store/store.h"
#include "store/writeq.h"

/* Column order shared by the INSERT and every SELECT. A reader of a version
 * 1 file selects NULL for the columns added since (see select_columns). */
#define SQ_COLUMNS_V1                                                                              \
    "id, node, started_at, duration_us, upstream_us, client_addr, method, scheme, host, path, "    \
    "query, req_headers, req_body, req_body_size, req_truncated, status, resp_headers, "           \
    "resp_body, resp_body_size, resp_truncated, rule, origin, error"
#define SQ_COLUMNS_V2 SQ_COLUMNS_V1 ", replication"
#define SQ_COLUMNS_V3 ", req_encoding, req_body_note, resp_encoding, resp_body_note"
#define SQ_COLUMNS SQ_COLUMNS_V2 SQ_COLUMNS_V3

enum {
    C_ID,
    C_NODE,
    C_STARTED_AT,
    C_DURATION,
    C_UPSTREAM,
    C_CLIENT,
    C_METHOD,
    C_SCHEME,
    C_HOST,
    C_PATH,
    C_QUERY,
    C_REQ_HEADERS,
    C_REQ_BODY,
    C_REQ_BODY_SIZE,
    C_REQ_TRUNC,
    C_STATUS,
    C_RESP_HEADERS,
    C_RESP_BODY,
    C_RESP_BODY_SIZE,
    C_RESP_TRUNC,
    C_RULE,
    C_ORIGIN,
    C_ERROR,
    C_REPLICATION,
    C_REQ_ENCODING,
    C_REQ_BODY_NOTE,
    C_RESP_ENCODING,
    C_RESP_BODY_NOTE,
    C_COUNT
};

/* INSERT OR IGNORE: a record arriving twice (replication redelivers) is kept
 * once instead of wedging the writer on a constraint error. */
#define SQ_INSERT                                                                                  \
    "INSERT OR IGNORE INTO requests (" SQ_COLUMNS ") VALUES "                                      \
    "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"

#define SQ_OUTBOX_COLUMNS                                                                          \
    "seq, message_id, timestamp, origin, method, target, headers, content_type, signature, "       \
    "routing_key, body, origin_status, origin_digest, origin_body"
enum {
    O_SEQ,
    O_ID,
    O_TIMESTAMP,
    O_ORIGIN,
    O_METHOD,
    O_TARGET,
    O_HEADERS,
    O_CTYPE,
    O_SIG,
    O_RKEY,
    O_BODY,
    O_OSTATUS,
    O_ODIGEST,
    O_OBODY
};

#define SQ_INSERT_OUTBOX                                                                           \
    "INSERT INTO outbox (message_id, created_at, timestamp, origin, method, target, headers, "     \
    "content_type, signature, routing_key, body, origin_status, origin_digest, origin_body) "      \
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"

/* OR IGNORE: two replicators racing on one message keep the first row. */
#define SQ_INSERT_APPLIED                                                                          \
    "INSERT OR IGNORE INTO applied (message_id, origin, applied_at, status, outcome) VALUES "      \
    "(?,?,?,?,?)"

/* One statement for both counter operations: ?3 true sets, false adds. */
#define SQ_COUNTER                                                                                 \
    "INSERT INTO counters (name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET "          \
    "value = CASE WHEN ?3 THEN excluded.value ELSE value + excluded.value END"

#define SQ_DELETE_OUTBOX "DELETE FROM outbox WHERE seq <= ?"

#define SQ_STUCK_SET                                                                               \
    "INSERT INTO stuck (message_id, origin, method, target, first_failed_at, last_failed_at, "     \
    "attempts, last_answer) VALUES (?1,?2,?3,?4,?5,?6,?7,?8) ON CONFLICT(message_id) DO UPDATE "   \
    "SET origin = ?2, method = ?3, target = ?4, first_failed_at = ?5, last_failed_at = ?6, "       \
    "attempts = ?7, last_answer = ?8"

#define SQ_STUCK_DELETE "DELETE FROM stuck WHERE message_id = ?1"

/* A receipt replaces the row of its (message_id, node) unless that row is
 * newer (store_receipt_put). */
#define SQ_RECEIPT_PUT                                                                             \
    "INSERT INTO receipts (message_id, node, outcome, status, at) VALUES (?1,?2,?3,?4,?5) ON "     \
    "CONFLICT(message_id, node) DO UPDATE SET outcome = excluded.outcome, status = "               \
    "excluded.status, at = excluded.at WHERE excluded.at >= receipts.at"

#define SQ_STUCK_COLUMNS                                                                           \
    "message_id, origin, method, target, first_failed_at, last_failed_at, attempts, last_answer"

typedef struct sq_store {
    writeq_store w; /* first: a store * is a sq_store *; the queue and writer */
    char *path;
    store_options opt; /* copy; opt.url is not kept */
    int64_t schema;    /* the file's version: a reader may see an older one */

    sqlite3 *db; /* read-write (writer) or the read-only connection */

    pthread_mutex_t rlock; /* serializes queries on rdb */
    sqlite3 *rdb;          /* == db when read_only; else lazily opened */
    /* The queries made once per message (the publisher's fetch, the
     * replicator's ledger lookup), prepared once on rdb: preparing was three
     * quarters of the publisher's instructions (callgrind). Under rlock. */
    sqlite3_stmt *r_outbox_fetch, *r_ledger_has, *r_stuck_get;
    struct sq_ckpt *ckpt; /* background checkpoints (opt.checkpoint_pages), or NULL */

    /* writer-only */
    sqlite3_stmt *ins, *ins_outbox, *ins_applied, *counter, *del_outbox, *stuck_set, *stuck_del,
        *receipt_put;
    buf reqh, resph;                   /* header JSON of the record being inserted */
    int64_t rows;                      /* row count, tracked for max_rows (counted on open) */
    int64_t next_age_prune_mono_us;    /* now when the last age chunk was full */
    int64_t next_ledger_prune_mono_us; /* the same for ledger_max_age */
    int64_t rows_hold_until_mono_us;   /* after a failed delete: not before */
} sq_store;

static inline sq_store *sq(store *s)
{
    return (sq_store *)s;
}

/* ---- store_sqlite.c: small SQLite helpers, connections ---- */

/* sqlite3_exec; err (may be NULL) gets the message. SQLite's rc. */
int sq_exec(sqlite3 *db, const char *sql, char *err, size_t errlen);
/* The first column of sql's first row in *out. SQLite's rc, err on error. */
int sq_int_query(sqlite3 *db, const char *sql, int64_t *out, char *err, size_t errlen);
/* A connection to path (read-write and created, or read-only) with the busy
 * timeout set; NULL with err. */
sqlite3 *sq_connect(const char *path, bool read_only, uint64_t busy_ms, char *err, size_t errlen);

/* ---- sqlite_schema.c ---- */

/* Puts the file in WAL mode, waiting for other openers until deadline_us.
 * SQLITE_OK, or SQLite's code with err. */
int sq_set_wal(sqlite3 *db, int64_t deadline_us, char *err, size_t errlen);
/* Brings the file to STORE_SQLITE_SCHEMA_VERSION in one transaction (or
 * refuses a file that is not a store). 0, or -1 with err. */
int sq_migrate(sqlite3 *db, const char *path, bool init_foreign, int64_t deadline_us, char *err,
               size_t errlen);
/* 1 when db has a `requests` table, 0 when not, -1 with err. */
int sq_has_requests(sqlite3 *db, char *err, size_t errlen);
/* What db holds ("tables a, b; view v") appended to what; the number of
 * objects, or -1 with err. */
int64_t sq_describe(sqlite3 *db, buf *what, char *err, size_t errlen);
/* The error for a file that is not a restspy store. Always -1. */
int sq_not_a_store(sqlite3 *db, const char *path, int64_t v, const char *hint, char *err,
                   size_t errlen);
/* The error for a file of a newer schema. Always -1. */
int sq_newer_schema(int64_t v, char *err, size_t errlen);

/* ---- sqlite_checkpoint.c ---- */

/* The background checkpointer of a writer connection (see the file's
 * comment): from now on writer's commits only append to the WAL, and a
 * thread with its own connection to path copies it into the main file each
 * time it holds `pages` frames (> 0). Call before the writer's thread
 * starts. busy_ms: how long its first read of path may wait for other
 * processes. NULL with err (then writer keeps SQLite's own checkpoints). */
typedef struct sq_ckpt sq_ckpt;
sq_ckpt *sq_ckpt_start(const char *path, sqlite3 *writer, int pages, uint64_t busy_ms, char *err,
                       size_t errlen);
/* Stops it (NULL: nothing) once writer's thread is done; writer is back on
 * SQLite's own checkpoints. */
void sq_ckpt_stop(sq_ckpt *c, sqlite3 *writer);
/* Checkpoints run so far, and those a reader or the writer held up. */
void sq_ckpt_counts(sq_ckpt *c, uint64_t *runs, uint64_t *busy);

/* ---- sqlite_writer.c ---- */

/* What the SQLite backend plugs into its writeq: its transaction and
 * retention. */
extern const writeq_hooks sq_writeq_hooks;
/* Binds v (NULL: SQL NULL) to the 0-based column col (SQLITE_STATIC). */
int sq_bind_text(sqlite3_stmt *st, int col, const char *v);
/* Steps a bound writer statement to completion and resets it; *changes (may
 * be NULL) gets the rows changed; e gets the error. */
int sq_run(sq_store *s, sqlite3_stmt *st, int64_t *changes, char *e, size_t elen);

/* ---- sqlite_query.c ---- */

/* Column readers: a copy of the text (NULL for SQL NULL) into *dst
 * (replacing it), the blob appended to b. */
void sq_set_str(char **dst, sqlite3_stmt *st, int col);
void sq_set_body(buf *b, sqlite3_stmt *st, int col);
/* The read connection (opened on first use); called with rlock held. */
sqlite3 *sq_reader(sq_store *s, char *err, size_t errlen);
/* A per-message query on the read connection, its statement prepared once
 * into *slot: 1 ready (*st), 0 the file predates replication, -1 error.
 * Always followed by sq_reader_end (rlock is held in between). */
int sq_reader_begin(sq_store *s, sqlite3_stmt **slot, const char *sql, const char *what,
                    sqlite3_stmt **st, char *err, size_t errlen);
void sq_reader_end(sq_store *s, sqlite3_stmt *st);
/* A one-off query on the read connection: 0 with *st, or -1 with err.
 * Always followed by sq_oneoff_end, which reports a failed step (rc) and
 * returns ret or -1. */
int sq_oneoff_begin(sq_store *s, const char *sql, sqlite3_stmt **st, char *err, size_t errlen);
int sq_oneoff_end(sq_store *s, sqlite3_stmt *st, int rc, int ret, char *err, size_t errlen);
int sq_query_each(store *base, const store_query *q, int (*fn)(const record *r, void *ud), void *ud,
                  char *err, size_t errlen);
int sq_get(store *base, const char *id, record **out, char *err, size_t errlen);
int sq_ids_each(store *base, int (*fn)(const char *id, size_t len, void *ud), void *ud, char *err,
                size_t errlen);

/* ---- sqlite_repl.c ---- */

int sq_outbox_fetch(store *base, int64_t after_seq, size_t max, store_outbox_row *rows, size_t *n,
                    char *err, size_t errlen);
int sq_ledger_has(store *base, const char *message_id, char *err, size_t errlen);
int sq_repl_stats_get(store *base, store_repl_stats *out, char *err, size_t errlen);
int sq_stuck_get(store *base, const char *message_id, store_stuck *out, char *err, size_t errlen);
int sq_stuck_list(store *base, size_t max, store_stuck **out, size_t *n, int64_t *total, char *err,
                  size_t errlen);
int sq_ledger_skip(store *base, const char *message_id, const char *origin, char *err,
                   size_t errlen);
int sq_repl_lag_get(store *base, int64_t since_us, size_t max_samples, store_repl_lag *out,
                    char *err, size_t errlen);
int sq_repl_origins_get(store *base, int64_t since_us, size_t max_samples, size_t max_origins,
                        store_repl_origin **out, size_t *n, int64_t *total, int64_t *ledger_end,
                        char *err, size_t errlen);
int64_t sq_ledger_each(store *base, int64_t after, size_t max,
                       int (*fn)(const store_ledger_row *row, void *ud), void *ud, char *err,
                       size_t errlen);

/* ---- sqlite_receipts.c ---- */

/* Writes the queued receipts of o in the writer's transaction. SQLite's rc,
 * e on error. */
int sq_receipts_write(sq_store *s, const writeq_ops *o, char *e, size_t elen);
int sq_receipts_get(store *base, const char *message_id, store_receipt **out, size_t *n, char *err,
                    size_t errlen);
int sq_ledger_get(store *base, const char *message_id, store_ledger_entry *out, char *err,
                  size_t errlen);
int sq_outbox_has(store *base, const char *message_id, char *err, size_t errlen);

#endif
