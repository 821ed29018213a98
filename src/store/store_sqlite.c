/* store_sqlite: the SQLite backend (see store.h for the promises).
 *
 * Threads: the submitting threads only touch the queue under `mu`. The writer
 * thread owns `db` (and everything marked writer-only) once store_start has
 * run; before that, the opening thread used it for the migration. Queries run
 * on `rdb` under `rlock`: the same connection as `db` for a read-only store,
 * a second read-only connection for a store that is also being written (WAL
 * lets it read while the writer commits).
 *
 * Replication: each record's request, outbox and ledger rows go into its
 * batch's transaction; counter updates and outbox confirms from other
 * threads wait in `ops` (under mu) for the next transaction, so no caller
 * ever waits for the disk. Done callbacks run on the writer thread after the
 * COMMIT, in submit order. The writer's statements are prepared once per
 * table and reused. */
#include "store/store_sqlite.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/glob.h"
#include "base/util.h"
#include "store/backend.h"
#include "store/store.h"

/* Schema migrations, oldest first: migrations[i] takes user_version i to
 * i + 1. The missing ones run in one transaction together with the version
 * bump (sq_migrate), so a crash leaves the file at a well-defined version.
 * Only ever append. */
static const char *const migrations[] = {
    /* 0 -> 1: the initial schema. */
    "CREATE TABLE requests ("
    " id TEXT PRIMARY KEY,"
    " node TEXT,"
    " started_at INTEGER,"
    " duration_us INTEGER,"
    " upstream_us INTEGER,"
    " client_addr TEXT,"
    " method TEXT,"
    " scheme TEXT,"
    " host TEXT,"
    " path TEXT,"
    " query TEXT,"
    " req_headers TEXT,"
    " req_body BLOB,"
    " req_body_size INTEGER,"
    " req_truncated INTEGER,"
    " status INTEGER,"
    " resp_headers TEXT,"
    " resp_body BLOB,"
    " resp_body_size INTEGER,"
    " resp_truncated INTEGER,"
    " rule TEXT,"
    " origin TEXT,"
    " error TEXT);"
    "CREATE INDEX requests_started_at ON requests(started_at);"
    "CREATE INDEX requests_method_path ON requests(method, path);"
    "CREATE INDEX requests_status ON requests(status);",
    /* 1 -> 2: replication. outbox: messages waiting for the broker's confirm,
     * written in the transaction of their request row. applied: the
     * replicator's ledger (origin is the record's node, which for a
     * replicated capture is the origin node). counters: figures shared
     * between processes and restarts (value is an integer, except
     * last_confirmed_id whose value SQLite keeps as TEXT). */
    "ALTER TABLE requests ADD COLUMN replication TEXT;"
    "CREATE TABLE outbox ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " message_id TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " timestamp INTEGER NOT NULL,"
    " origin TEXT NOT NULL,"
    " method TEXT NOT NULL,"
    " target TEXT NOT NULL,"
    " headers TEXT NOT NULL,"
    " content_type TEXT,"
    " signature TEXT,"
    " routing_key TEXT NOT NULL,"
    " body BLOB NOT NULL);"
    "CREATE TABLE applied ("
    " message_id TEXT PRIMARY KEY,"
    " origin TEXT,"
    " applied_at INTEGER NOT NULL,"
    " status INTEGER);"
    "CREATE INDEX applied_applied_at ON applied(applied_at);"
    "CREATE TABLE counters ("
    " name TEXT PRIMARY KEY,"
    " value INTEGER NOT NULL);",
    /* 2 -> 3: content codings. *_encoding: the Content-Encoding a body had
     * on the wire (the stored body is decoded); *_body_note: why a body is
     * stored undecoded or was dropped (record.h). */
    "ALTER TABLE requests ADD COLUMN req_encoding TEXT;"
    "ALTER TABLE requests ADD COLUMN req_body_note TEXT;"
    "ALTER TABLE requests ADD COLUMN resp_encoding TEXT;"
    "ALTER TABLE requests ADD COLUMN resp_body_note TEXT;",
    /* 3 -> 4: the replicator's failing writes and skips (store.h). stuck:
     * the messages it failed to apply and still holds, with the retry
     * budget they spent; applied.state: NULL applied, 'skipped'
     * acknowledged without being applied. */
    "ALTER TABLE applied ADD COLUMN state TEXT;"
    "CREATE TABLE stuck ("
    " message_id TEXT PRIMARY KEY,"
    " origin TEXT,"
    " method TEXT,"
    " target TEXT,"
    " first_failed_at INTEGER NOT NULL,"
    " last_failed_at INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL,"
    " last_answer TEXT);",
};

_Static_assert(sizeof migrations / sizeof migrations[0] == STORE_SQLITE_SCHEMA_VERSION,
               "STORE_SQLITE_SCHEMA_VERSION must equal the number of migrations");

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
    "routing_key, body"
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
    O_BODY
};

#define SQ_INSERT_OUTBOX                                                                           \
    "INSERT INTO outbox (message_id, created_at, timestamp, origin, method, target, headers, "     \
    "content_type, signature, routing_key, body) VALUES (?,?,?,?,?,?,?,?,?,?,?)"

/* OR IGNORE: two replicators racing on one message keep the first row. */
#define SQ_INSERT_APPLIED                                                                          \
    "INSERT OR IGNORE INTO applied (message_id, origin, applied_at, status) VALUES (?,?,?,?)"

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

#define SQ_STUCK_COLUMNS                                                                           \
    "message_id, origin, method, target, first_failed_at, last_failed_at, attempts, last_answer"

#define PRUNE_CHUNK 1000
#define AGE_PRUNE_EVERY_US 1000000 /* age retention runs at most once a second */
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 1000
#define CLOSE_MAX_FAILURES 10 /* at shutdown a dead disk must not hang us forever */
#define QUEUE_INITIAL 1024

/* A queued unit and whom to tell once it is committed or dropped. */
typedef struct sq_item {
    store_unit u; /* owns what store_unit says */
    store_done_fn done;
    void *ud;
} sq_item;

/* A counter operation waiting for the writer's next transaction. */
typedef struct sq_op {
    char *name; /* owned */
    int64_t value;
    bool set; /* false: add */
} sq_op;

/* A change of the `stuck` table waiting for the writer's next transaction:
 * set (upsert row) or clear (delete the message's row). */
typedef struct sq_stuck_op {
    bool set;
    store_stuck row; /* owns its strings; only message_id when clearing */
} sq_stuck_op;

/* Work for the writer's next transaction besides records: counter updates
 * (at most one per name, see sq_counter), stuck-table changes (at most one
 * per message, the latest), and outbox confirms merged into one (deleting
 * seq <= the highest confirmed is the same as deleting each range in turn). */
typedef struct sq_ops {
    sq_op *v;
    size_t len, cap;
    sq_stuck_op *sv;
    size_t slen, scap;
    int64_t confirm_upto; /* 0 = nothing confirmed */
    int64_t confirm_us;   /* wall clock of the latest confirm */
    char confirm_id[UUID7_STR_LEN + 1];
} sq_ops;

typedef struct sq_store {
    store base; /* first: a store * is a sq_store * */
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

    /* queue, guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t nonempty; /* writer waits (CLOCK_MONOTONIC) */
    pthread_cond_t room;     /* submitters wait for room (not drop_when_full) */
    pthread_cond_t outbox;   /* outbox_wait (CLOCK_MONOTONIC); broadcast on commit */
    sq_item *ring;           /* owns the queued units */
    size_t ring_alloc;       /* grows up to cap as needed */
    size_t cap;              /* queue_max */
    size_t head, count;
    size_t inflight; /* taken by the writer, not yet committed */
    bool closing, paused, started;
    bool gathering; /* the writer collects a batch: submitters need not wake it */
    size_t waiting; /* queued records whose submitter waits for the commit */
    /* Committed units waiting to be freed by the next submitters: the
     * threads that allocated them free them on their own heaps, cheaply,
     * where the writer's frees took the allocator's locks (a tenth of the
     * writer's time per row, perf). Owned. */
    store_unit *parked;
    size_t nparked, parked_cap;
    store_stats st;
    sq_ops ops;         /* pending for the next transaction */
    int64_t outbox_seq; /* highest committed outbox seq known to this process */
    int outbox_waiters; /* threads in outbox_wait: close waits for them to leave */
    pthread_t thread;

    /* writer-only */
    sqlite3_stmt *ins, *ins_outbox, *ins_applied, *counter, *del_outbox, *stuck_set, *stuck_del;
    buf reqh, resph;                 /* header JSON of the record being inserted */
    int64_t rows;                    /* row count, tracked for max_rows (counted on open) */
    int64_t next_age_prune_mono_us;  /* now when the last age chunk was full */
    int64_t rows_hold_until_mono_us; /* after a failed delete: not before */
} sq_store;

static sq_store *sq(store *s)
{
    return (sq_store *)s;
}

/* Frees what a unit owns (store_unit). */
static void unit_free(store_unit *u)
{
    record_free(u->rec);
    repl_msg_free(u->outbox);
    free(u->applied_id);
    memset(u, 0, sizeof *u);
}

/* ---- small SQLite helpers ---- */

static int sq_exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK && err)
        snprintf(err, errlen, "%s", msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return rc;
}

static int sq_int_query(sqlite3 *db, const char *sql, int64_t *out, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        }
    }
    if (rc != SQLITE_OK)
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* ---- opening beside other processes ----
 *
 * SQLite does not call the busy handler where waiting could deadlock: a
 * journal mode switch that meets another connection's lock answers
 * SQLITE_BUSY at once, and so may a BEGIN IMMEDIATE racing a switch. At open
 * that is only another process creating or opening the same file (a proxy
 * and a replicator started together), which is done within milliseconds, so
 * the opener waits and tries again, up to the busy timeout, as the handler
 * would have. */

/* SQLITE_BUSY or SQLITE_LOCKED, extended codes included. */
static bool sq_busy(int rc)
{
    return (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED;
}

/* After a busy rc: sleeps *nap_ms (1 ms at first, doubling to 32 ms) and
 * returns true while the monotonic clock is before deadline_us; false
 * (no sleep) once it is past, or when rc is not busy. */
static bool sq_open_retry(int rc, int64_t deadline_us, unsigned *nap_ms)
{
    if (!sq_busy(rc) || util_mono_us() >= deadline_us)
        return false;
    sleep_ms(*nap_ms);
    *nap_ms = *nap_ms >= 32 ? 32 : *nap_ms * 2;
    return true;
}

/* Puts the file in WAL mode (a no-op when it is already). SQLITE_OK, or
 * SQLite's code with err after the deadline or on any other error. A file
 * system without the shared memory WAL needs keeps its mode (SQLite answers
 * the old one): the store still works there, only readers wait for the
 * writer. */
static int sq_set_wal(sqlite3 *db, int64_t deadline_us, char *err, size_t errlen)
{
    unsigned nap = 1;
    for (;;) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
            if (rc == SQLITE_ROW)
                rc = SQLITE_OK;
        }
        if (rc != SQLITE_OK)
            snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        if (rc == SQLITE_OK || !sq_open_retry(rc, deadline_us, &nap))
            return rc;
    }
}

/* ---- files that are not restspy's ----
 *
 * A restspy store has a user_version of 1 or more and a `requests` table. A
 * file with tables of its own but neither is someone else's database: a
 * reader says what it holds, and a writer adds restspy's tables to it only
 * when asked (store_options.init_foreign), never silently. */

#define DESCRIBE_MAX 8 /* names listed per kind; the rest are counted */

/* Appends the names of one kind ("table", "view") of db's own objects to
 * what, as "tables a, b" or "view v" (DESCRIBE_MAX at most, then "and N
 * more"); control bytes in a name are shown as '?'. The count, or -1. */
static int64_t describe_kind(sqlite3 *db, const char *kind, buf *what)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "SELECT name FROM sqlite_master WHERE type = ?1 AND name NOT LIKE "
                           "'sqlite\\_%' ESCAPE '\\' ORDER BY name",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
    buf names = BUF_INIT;
    int64_t n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (++n > DESCRIBE_MAX)
            continue;
        if (n > 1)
            buf_append_str(&names, ", ");
        const unsigned char *name = sqlite3_column_text(st, 0);
        for (; name && *name; name++)
            buf_append_char(&names, *name < 0x20 || *name == 0x7f ? '?' : (char)*name);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE && n > 0) {
        buf_appendf(what, "%s%s%s %.*s", what->len ? "; " : "", kind, n > 1 ? "s" : "",
                    (int)names.len, names.data);
        if (n > DESCRIBE_MAX)
            buf_appendf(what, " and %lld more", (long long)(n - DESCRIBE_MAX));
    }
    buf_free(&names);
    return rc == SQLITE_DONE ? n : -1;
}

/* What db holds besides SQLite's own objects: "tables a, b; view v", or
 * "" when nothing. *what is the caller's (a fresh buf). The number of
 * objects, or -1 with err. */
static int64_t sq_describe(sqlite3 *db, buf *what, char *err, size_t errlen)
{
    int64_t t = describe_kind(db, "table", what);
    int64_t v = t < 0 ? -1 : describe_kind(db, "view", what);
    if (v < 0) {
        snprintf(err, errlen, "cannot read the schema: %s", sqlite3_errmsg(db));
        return -1;
    }
    return t + v;
}

/* 1 when db has a `requests` table, 0 when not, -1 with err. */
static int sq_has_requests(sqlite3 *db, char *err, size_t errlen)
{
    int64_t n;
    char e[256];
    if (sq_int_query(db,
                     "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = "
                     "'requests'",
                     &n, e, sizeof e) != SQLITE_OK) {
        snprintf(err, errlen, "cannot read the schema: %s", e);
        return -1;
    }
    return n > 0;
}

/* The error for a file that is not a restspy store (version v), ending with
 * hint (may be ""). Always -1. */
static int not_a_store(sqlite3 *db, const char *path, int64_t v, const char *hint, char *err,
                       size_t errlen)
{
    buf what = BUF_INIT;
    if (sq_describe(db, &what, err, errlen) < 0) {
        buf_free(&what);
        return -1;
    }
    if (!what.len)
        buf_append_str(&what, "no tables");
    if (v)
        buf_appendf(&what, " (user_version %lld)", (long long)v);
    snprintf(err, errlen, "%s is not a restspy store: it holds %.*s%s", path, (int)what.len,
             what.data, hint);
    buf_free(&what);
    return -1;
}

/* Checks, in the migration's transaction, that the file at version v is a
 * restspy store, or one restspy may make into one: empty, or (init_foreign)
 * someone else's at version 0. 0, or -1 with err. */
static int sq_check_own(sqlite3 *db, const char *path, int64_t v, bool init_foreign, char *err,
                        size_t errlen)
{
    if (v > 0) {
        int has = sq_has_requests(db, err, errlen);
        if (has != 0)
            return has > 0 ? 0 : -1;
        return not_a_store(db, path, v, "", err, errlen);
    }
    buf what = BUF_INIT;
    int64_t n = sq_describe(db, &what, err, errlen);
    buf_free(&what);
    if (n <= 0 || init_foreign)
        return n < 0 ? -1 : 0;
    return not_a_store(db, path, 0,
                       "; restspy adds its tables to a database that holds others only when "
                       "asked (store_init = on, --store-init)",
                       err, errlen);
}

/* ---- schema ---- */

static int newer_schema(int64_t v, char *err, size_t errlen)
{
    snprintf(err, errlen, "store schema version %lld is newer than this restspy (%d)", (long long)v,
             STORE_SQLITE_SCHEMA_VERSION);
    return -1;
}

/* Applies the missing migrations in one IMMEDIATE transaction together with
 * the version bump, so that a crash leaves the file as it was or current,
 * two processes opening a fresh file at once cannot both migrate, and a
 * foreign file whose names clash with restspy's is left untouched. One that
 * finds the file busy waits until deadline_us (see sq_open_retry). */
static int sq_migrate(sqlite3 *db, const char *path, bool init_foreign, int64_t deadline_us,
                      char *err, size_t errlen)
{
    char e[256];
    unsigned nap = 1;
    int rc;
    while ((rc = sq_exec(db, "BEGIN IMMEDIATE", e, sizeof e)) != SQLITE_OK) {
        if (!sq_open_retry(rc, deadline_us, &nap)) {
            snprintf(err, errlen, "cannot migrate store: %s", e);
            return -1;
        }
    }
    int64_t v;
    if (sq_int_query(db, "PRAGMA user_version", &v, e, sizeof e) != SQLITE_OK) {
        snprintf(err, errlen, "cannot read store schema version: %s", e);
        goto fail;
    }
    if (v > STORE_SQLITE_SCHEMA_VERSION) {
        newer_schema(v, err, errlen);
        goto fail;
    }
    if (sq_check_own(db, path, v, init_foreign, err, errlen) < 0)
        goto fail;
    if (v == STORE_SQLITE_SCHEMA_VERSION) {
        sq_exec(db, "COMMIT", NULL, 0);
        return 0;
    }
    for (int64_t m = v; m < STORE_SQLITE_SCHEMA_VERSION; m++) {
        if (sq_exec(db, migrations[m], e, sizeof e) != SQLITE_OK) {
            snprintf(err, errlen, "cannot migrate store %s to version %lld: %s", path,
                     (long long)m + 1, e);
            goto fail;
        }
    }
    char bump[64];
    snprintf(bump, sizeof bump, "PRAGMA user_version = %d", STORE_SQLITE_SCHEMA_VERSION);
    if (sq_exec(db, bump, e, sizeof e) != SQLITE_OK ||
        sq_exec(db, "COMMIT", e, sizeof e) != SQLITE_OK) {
        snprintf(err, errlen, "cannot migrate store %s: %s", path, e);
        goto fail;
    }
    return 0;
fail:
    sq_exec(db, "ROLLBACK", NULL, 0);
    return -1;
}

/* ---- open / start / close ---- */

/* Before SQLite's first use: no global memory statistics. With them on,
 * every allocation SQLite makes takes a process-wide mutex (a tenth of the
 * writer's instructions per row, callgrind). */
static void sq_global_init(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

static pthread_once_t sq_once = PTHREAD_ONCE_INIT;

static sqlite3 *sq_connect(const char *path, bool read_only, uint64_t busy_ms, char *err,
                           size_t errlen)
{
    pthread_once(&sq_once, sq_global_init);
    sqlite3 *db = NULL;
    /* The read-write connection is the writer thread's alone (the opener's
     * before store_start): no per-call locking. Readers keep SQLite's. */
    int flags = read_only ? SQLITE_OPEN_READONLY
                          : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &db, flags, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open store %s: %s", path,
                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, busy_ms > INT_MAX ? INT_MAX : (int)busy_ms);
    return db;
}

static void ops_free(sq_ops *o)
{
    for (size_t i = 0; i < o->len; i++)
        free(o->v[i].name);
    free(o->v);
    for (size_t i = 0; i < o->slen; i++)
        store_stuck_row_free(&o->sv[i].row);
    free(o->sv);
    memset(o, 0, sizeof *o);
}

static bool ops_pending(const sq_ops *o)
{
    return o->len || o->slen || o->confirm_upto > 0;
}

static void finalize_writer_stmts(sq_store *s)
{
    sqlite3_stmt **v[] = {&s->ins,        &s->ins_outbox, &s->ins_applied, &s->counter,
                          &s->del_outbox, &s->stuck_set,  &s->stuck_del};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        sqlite3_finalize(*v[i]);
        *v[i] = NULL;
    }
}

static void sq_free(sq_store *s)
{
    for (size_t i = 0; i < s->nparked; i++)
        unit_free(&s->parked[i]);
    free(s->parked);
    finalize_writer_stmts(s);
    sqlite3_finalize(s->r_outbox_fetch);
    sqlite3_finalize(s->r_ledger_has);
    sqlite3_finalize(s->r_stuck_get);
    if (s->rdb && s->rdb != s->db)
        sqlite3_close(s->rdb);
    sqlite3_close(s->db);
    /* Only reached with queued records when a closing store gave up. */
    for (size_t i = 0; i < s->count; i++) {
        sq_item *it = &s->ring[(s->head + i) % s->ring_alloc];
        if (it->done)
            it->done(it->ud, -1);
        unit_free(&it->u);
    }
    free(s->ring);
    ops_free(&s->ops);
    buf_free(&s->reqh);
    buf_free(&s->resph);
    pthread_mutex_destroy(&s->rlock);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->nonempty);
    pthread_cond_destroy(&s->room);
    pthread_cond_destroy(&s->outbox);
    free(s->path);
    free(s);
}

/* Writer statements are prepared once and reused for every row. */
static int prepare(sq_store *s, const char *sql, sqlite3_stmt **st, char *err, size_t errlen)
{
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot prepare store statement: %s", sqlite3_errmsg(s->db));
        return -1;
    }
    return 0;
}

static int sq_open_rw(sq_store *s, char *err, size_t errlen)
{
    char e[256];
    s->db = sq_connect(s->path, false, s->opt.busy_timeout_ms, err, errlen);
    if (!s->db)
        return -1;
    /* WAL: readers (the CLI) never block the writer and vice versa;
     * synchronous=NORMAL is durable across process crashes, which is what a
     * capture log needs, at a fraction of the fsyncs of FULL. */
    int64_t deadline =
        util_mono_us() +
        (int64_t)(s->opt.busy_timeout_ms > INT_MAX ? INT_MAX : s->opt.busy_timeout_ms) * 1000;
    int rc = sq_set_wal(s->db, deadline, e, sizeof e);
    if (rc == SQLITE_OK)
        rc = sq_exec(s->db, "PRAGMA synchronous=NORMAL", e, sizeof e);
    if (rc != SQLITE_OK) {
        if ((rc & 0xff) == SQLITE_NOTADB)
            snprintf(err, errlen, "%s is not a restspy store: not an SQLite database", s->path);
        else
            snprintf(err, errlen, "cannot open store %s: %s", s->path, e);
        return -1;
    }
    if (sq_migrate(s->db, s->path, s->opt.init_foreign, deadline, err, errlen) < 0)
        return -1;
    s->schema = STORE_SQLITE_SCHEMA_VERSION;
    if (prepare(s, SQ_INSERT, &s->ins, err, errlen) < 0 ||
        prepare(s, SQ_INSERT_OUTBOX, &s->ins_outbox, err, errlen) < 0 ||
        prepare(s, SQ_INSERT_APPLIED, &s->ins_applied, err, errlen) < 0 ||
        prepare(s, SQ_COUNTER, &s->counter, err, errlen) < 0 ||
        prepare(s, SQ_DELETE_OUTBOX, &s->del_outbox, err, errlen) < 0 ||
        prepare(s, SQ_STUCK_SET, &s->stuck_set, err, errlen) < 0 ||
        prepare(s, SQ_STUCK_DELETE, &s->stuck_del, err, errlen) < 0)
        return -1;
    if (s->opt.max_rows &&
        sq_int_query(s->db, "SELECT count(*) FROM requests", &s->rows, e, sizeof e) != SQLITE_OK) {
        snprintf(err, errlen, "cannot count stored requests: %s", e);
        return -1;
    }
    /* outbox_wait compares with the newest row still waiting, so a publisher
     * starting from seq 0 is woken for the rows a previous run left. */
    if (sq_int_query(s->db, "SELECT coalesce(max(seq), 0) FROM outbox", &s->outbox_seq, e,
                     sizeof e) != SQLITE_OK) {
        snprintf(err, errlen, "cannot read the outbox: %s", e);
        return -1;
    }
    return 0;
}

static int sq_open_ro(sq_store *s, char *err, size_t errlen)
{
    struct stat sb;
    if (stat(s->path, &sb) != 0) {
        snprintf(err, errlen, "no store at %s", s->path);
        return -1;
    }
    s->db = sq_connect(s->path, true, s->opt.busy_timeout_ms, err, errlen);
    if (!s->db)
        return -1;
    s->rdb = s->db;
    char e[256];
    int64_t v;
    int rc = sq_int_query(s->db, "PRAGMA user_version", &v, e, sizeof e);
    if ((rc & 0xff) == SQLITE_NOTADB) {
        snprintf(err, errlen, "%s is not a restspy store: not an SQLite database", s->path);
        return -1;
    }
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot read store %s: %s", s->path, e);
        return -1;
    }
    if (v > STORE_SQLITE_SCHEMA_VERSION)
        return newer_schema(v, err, errlen);
    int has = sq_has_requests(s->db, err, errlen);
    if (has < 0)
        return -1;
    if (!has) {
        buf what = BUF_INIT;
        int64_t n = sq_describe(s->db, &what, err, errlen);
        buf_free(&what);
        if (n < 0)
            return -1;
        if (n == 0 && v == 0) {
            snprintf(err, errlen, "no store at %s (the database is empty)", s->path);
            return -1;
        }
        return not_a_store(s->db, s->path, v, "", err, errlen);
    }
    /* A reader must not migrate: an older file is read as it is, and what
     * later versions added reads as empty (select_columns, the replication
     * readers). */
    s->schema = v;
    return 0;
}

static store *sq_open(const char *path, const store_options *o, char *err, size_t errlen)
{
    sq_store *s = xcalloc(1, sizeof *s);
    s->base.be = &store_sqlite_backend;
    s->path = xstrdup(path);
    s->opt = *o;
    s->opt.url = NULL;
    s->cap = o->queue_max ? (size_t)o->queue_max : 1;
    pthread_mutex_init(&s->rlock, NULL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->nonempty, &ca);
    pthread_cond_init(&s->outbox, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&s->room, NULL);
    buf_init(&s->reqh);
    buf_init(&s->resph);

    if ((o->read_only ? sq_open_ro(s, err, errlen) : sq_open_rw(s, err, errlen)) < 0) {
        sq_free(s);
        return NULL;
    }
    return &s->base;
}

static void *sq_writer_main(void *arg);

static int sq_start(store *base, char *err, size_t errlen)
{
    sq_store *s = sq(base);
    if (s->opt.read_only) {
        snprintf(err, errlen, "store %s was opened read-only", s->path);
        return -1;
    }
    pthread_mutex_lock(&s->mu);
    bool already = s->started;
    pthread_mutex_unlock(&s->mu);
    if (already) {
        snprintf(err, errlen, "store writer already started");
        return -1;
    }
    int rc = pthread_create(&s->thread, NULL, sq_writer_main, s);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start store writer: %s", strerror(rc));
        return -1;
    }
    pthread_mutex_lock(&s->mu);
    s->started = true;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static void sq_close(store *base)
{
    sq_store *s = sq(base);
    pthread_mutex_lock(&s->mu);
    s->closing = true;
    s->paused = false;
    bool started = s->started;
    pthread_cond_broadcast(&s->nonempty);
    pthread_cond_broadcast(&s->room);
    pthread_cond_broadcast(&s->outbox);
    pthread_mutex_unlock(&s->mu);
    if (started)
        pthread_join(s->thread, NULL);
    else if (!s->opt.read_only)
        sq_writer_main(s); /* never started: drain what was queued right here */
    if (!s->opt.read_only) {
        finalize_writer_stmts(s);
        /* Fold the WAL back into the main file so a copied .db is complete. */
        sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    }
    /* A thread woken in outbox_wait still holds on to s until it returns. */
    pthread_mutex_lock(&s->mu);
    while (s->outbox_waiters)
        pthread_cond_wait(&s->outbox, &s->mu);
    pthread_mutex_unlock(&s->mu);
    sq_free(s);
}

/* ---- intake ---- */

/* A unit that is not queued: its owner learns at once, and it is freed. */
static int refuse(store_unit *u, store_done_fn done, void *ud)
{
    if (done)
        done(ud, -1);
    unit_free(u);
    return -1;
}

static int sq_submit(store *base, const store_unit *unit, store_done_fn done, void *ud)
{
    sq_store *s = sq(base);
    store_unit u = *unit; /* ours from here on */
    record *r = u.rec;
    if (s->opt.read_only)
        return refuse(&u, done, ud);
    /* The headers' JSON is encoded here, on the submitting thread, unless
     * the caller already did (for its log line): the writer is one thread
     * for every worker, so what can be done before the queue is done in
     * parallel (about a sixth of the writer's time per row, perf). */
    if (u.rec_row && !r->headers_json[0].len)
        record_cache_headers_json(r);
    pthread_mutex_lock(&s->mu);
    if (s->count == s->cap && !s->closing) {
        if (s->opt.drop_when_full) {
            s->st.dropped++;
            pthread_mutex_unlock(&s->mu);
            return refuse(&u, done, ud);
        }
        s->st.blocked++;
        while (s->count == s->cap && !s->closing)
            pthread_cond_wait(&s->room, &s->mu);
    }
    if (s->closing) {
        s->st.dropped++;
        pthread_mutex_unlock(&s->mu);
        return refuse(&u, done, ud);
    }
    if (s->count == s->ring_alloc) {
        /* Grow (in order) instead of allocating queue_max slots up front. */
        size_t n = s->ring_alloc ? s->ring_alloc * 2 : QUEUE_INITIAL;
        if (n > s->cap)
            n = s->cap;
        sq_item *nr = xmalloc(n * sizeof *nr);
        for (size_t i = 0; i < s->count; i++)
            nr[i] = s->ring[(s->head + i) % s->ring_alloc];
        free(s->ring);
        s->ring = nr;
        s->ring_alloc = n;
        s->head = 0;
    }
    sq_item *it = &s->ring[(s->head + s->count) % s->ring_alloc];
    it->u = u;
    it->done = done;
    it->ud = ud;
    s->count++;
    s->st.submitted++;
    if (done)
        s->waiting++;
    /* While the writer gathers a batch, waking it for every record would
     * cost a context switch each: it wakes when the window ends or the
     * batch is full, or at once for a record someone waits for. */
    if (!s->gathering || done || s->count >= (s->opt.batch_max ? s->opt.batch_max : 1))
        pthread_cond_signal(&s->nonempty);
    /* Two committed units freed per unit submitted: the parked ones cannot
     * pile up while units keep coming. */
    store_unit gone[2];
    size_t ngone = 0;
    while (ngone < 2 && s->nparked)
        gone[ngone++] = s->parked[--s->nparked];
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < ngone; i++)
        unit_free(&gone[i]);
    return 0;
}

static void sq_get_stats(store *base, store_stats *out)
{
    sq_store *s = sq(base);
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->queued = s->count + s->inflight;
    pthread_mutex_unlock(&s->mu);
}

void store_sqlite_test_pause(store *base, bool paused)
{
    sq_store *s = sq(base);
    pthread_mutex_lock(&s->mu);
    s->paused = paused;
    pthread_cond_broadcast(&s->nonempty);
    pthread_mutex_unlock(&s->mu);
}

/* Counter updates and outbox confirms come from other threads (the
 * publisher, the replicator's workers) that must never wait for a disk: they
 * are queued under mu, and the writer applies them in its next transaction
 * (a transaction of their own when no records are waiting). */
static void sq_counter(store *base, const char *name, int64_t value, bool set)
{
    sq_store *s = sq(base);
    if (s->opt.read_only || !name)
        return;
    pthread_mutex_lock(&s->mu);
    sq_ops *o = &s->ops;
    /* One pending op per name, so a writer held up by a locked file does not
     * pile up one entry per replicated message: set then add is a set of the
     * sum, add then add an add of the sum, anything then set a set. */
    size_t i = 0;
    while (i < o->len && strcmp(o->v[i].name, name) != 0)
        i++;
    if (i < o->len) {
        o->v[i].value = set ? value : o->v[i].value + value;
        o->v[i].set = set || o->v[i].set;
    } else {
        if (o->len == o->cap) {
            o->cap = o->cap ? o->cap * 2 : 8;
            o->v = xrealloc(o->v, o->cap * sizeof *o->v);
        }
        o->v[o->len].name = xstrdup(name);
        o->v[o->len].value = value;
        o->v[o->len].set = set;
        o->len++;
    }
    pthread_cond_signal(&s->nonempty);
    pthread_mutex_unlock(&s->mu);
}

static void sq_outbox_confirmed(store *base, int64_t upto, const char *last_id)
{
    sq_store *s = sq(base);
    if (s->opt.read_only || upto <= 0)
        return;
    int64_t now = util_now_us();
    pthread_mutex_lock(&s->mu);
    sq_ops *o = &s->ops;
    if (upto > o->confirm_upto)
        o->confirm_upto = upto;
    o->confirm_us = now;
    snprintf(o->confirm_id, sizeof o->confirm_id, "%s", last_id ? last_id : "");
    pthread_cond_signal(&s->nonempty);
    pthread_mutex_unlock(&s->mu);
}

/* Queues a stuck-table change, replacing any pending one for the same
 * message (the latest state is the one that matters). */
static void stuck_op(sq_store *s, bool set, const store_stuck *row, const char *message_id)
{
    if (s->opt.read_only || !message_id || !*message_id)
        return;
    pthread_mutex_lock(&s->mu);
    sq_ops *o = &s->ops;
    size_t i = 0;
    while (i < o->slen && strcmp(o->sv[i].row.message_id, message_id) != 0)
        i++;
    if (i == o->slen) {
        if (o->slen == o->scap) {
            o->scap = o->scap ? o->scap * 2 : 8;
            o->sv = xrealloc(o->sv, o->scap * sizeof *o->sv);
        }
        memset(&o->sv[i], 0, sizeof o->sv[i]);
        o->slen++;
    } else {
        store_stuck_row_free(&o->sv[i].row);
    }
    sq_stuck_op *op = &o->sv[i];
    op->set = set;
    if (set) {
        op->row = *row;
        op->row.origin = row->origin ? xstrdup(row->origin) : NULL;
        op->row.method = row->method ? xstrdup(row->method) : NULL;
        op->row.target = row->target ? xstrdup(row->target) : NULL;
        op->row.last_answer = row->last_answer ? xstrdup(row->last_answer) : NULL;
    }
    snprintf(op->row.message_id, sizeof op->row.message_id, "%s", message_id);
    pthread_cond_signal(&s->nonempty);
    pthread_mutex_unlock(&s->mu);
}

static void sq_stuck_set(store *base, const store_stuck *row)
{
    stuck_op(sq(base), true, row, row->message_id);
}

static void sq_stuck_clear(store *base, const char *message_id)
{
    stuck_op(sq(base), false, NULL, message_id);
}

static int sq_outbox_wait(store *base, int64_t after_seq, int timeout_ms)
{
    sq_store *s = sq(base);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (timeout_ms > 0) {
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&s->mu);
    s->outbox_waiters++;
    while (s->outbox_seq <= after_seq && !s->closing && timeout_ms > 0)
        if (pthread_cond_timedwait(&s->outbox, &s->mu, &ts) == ETIMEDOUT)
            break;
    int ret = s->outbox_seq > after_seq;
    if (--s->outbox_waiters == 0 && s->closing)
        pthread_cond_broadcast(&s->outbox);
    pthread_mutex_unlock(&s->mu);
    return ret;
}

/* ---- writer ---- */

static int bind_text(sqlite3_stmt *st, int col, const char *v)
{
    if (!v)
        return sqlite3_bind_null(st, col + 1);
    return sqlite3_bind_text(st, col + 1, v, -1, SQLITE_STATIC);
}

static int bind_body(sqlite3_stmt *st, int col, const buf *b)
{
    /* An empty body is a zero-length BLOB, never NULL (NULL would read back
     * as "unknown"). */
    if (!b->len)
        return sqlite3_bind_zeroblob(st, col + 1, 0);
    return sqlite3_bind_blob64(st, col + 1, b->data, b->len, SQLITE_STATIC);
}

#define B(x)                                                                                       \
    do {                                                                                           \
        int brc_ = (x);                                                                            \
        if (rc == SQLITE_OK)                                                                       \
            rc = brc_;                                                                             \
    } while (0)

/* Binds r to the INSERT. The statement refers to r's memory and to reqh/resph
 * (SQLITE_STATIC), so they must stay unchanged until the step is done. */
static int bind_record(sq_store *s, const record *r)
{
    sqlite3_stmt *st = s->ins;
    buf_reset(&s->reqh);
    buf_reset(&s->resph);
    record_append_headers_json(r, 0, &s->reqh);
    record_append_headers_json(r, 1, &s->resph);
    int rc = SQLITE_OK;
    B(sqlite3_bind_text(st, C_ID + 1, r->id, -1, SQLITE_STATIC));
    B(bind_text(st, C_NODE, r->node));
    B(sqlite3_bind_int64(st, C_STARTED_AT + 1, r->started_at_us));
    B(sqlite3_bind_int64(st, C_DURATION + 1, r->duration_us));
    B(sqlite3_bind_int64(st, C_UPSTREAM + 1, r->upstream_us < 0 ? -1 : r->upstream_us));
    B(bind_text(st, C_CLIENT, r->client_addr));
    B(bind_text(st, C_METHOD, r->method));
    B(bind_text(st, C_SCHEME, r->scheme));
    B(bind_text(st, C_HOST, r->host));
    B(bind_text(st, C_PATH, r->path));
    B(bind_text(st, C_QUERY, r->query));
    B(sqlite3_bind_text64(st, C_REQ_HEADERS + 1, s->reqh.data ? s->reqh.data : "[]",
                          s->reqh.data ? s->reqh.len : 2, SQLITE_STATIC, SQLITE_UTF8));
    B(bind_body(st, C_REQ_BODY, &r->req_body));
    B(sqlite3_bind_int64(st, C_REQ_BODY_SIZE + 1, (sqlite3_int64)r->req_body_size));
    B(sqlite3_bind_int(st, C_REQ_TRUNC + 1, r->req_truncated));
    B(sqlite3_bind_int(st, C_STATUS + 1, r->status));
    B(sqlite3_bind_text64(st, C_RESP_HEADERS + 1, s->resph.data ? s->resph.data : "[]",
                          s->resph.data ? s->resph.len : 2, SQLITE_STATIC, SQLITE_UTF8));
    B(bind_body(st, C_RESP_BODY, &r->resp_body));
    B(sqlite3_bind_int64(st, C_RESP_BODY_SIZE + 1, (sqlite3_int64)r->resp_body_size));
    B(sqlite3_bind_int(st, C_RESP_TRUNC + 1, r->resp_truncated));
    B(bind_text(st, C_RULE, r->rule));
    B(bind_text(st, C_ORIGIN, r->origin));
    B(bind_text(st, C_ERROR, r->error));
    B(bind_text(st, C_REPLICATION, r->replication));
    B(bind_text(st, C_REQ_ENCODING, r->req_encoding));
    B(bind_text(st, C_REQ_BODY_NOTE, r->req_body_note));
    B(bind_text(st, C_RESP_ENCODING, r->resp_encoding));
    B(bind_text(st, C_RESP_BODY_NOTE, r->resp_body_note));
    return rc;
}

/* Binds m to the outbox INSERT (SQLITE_STATIC: m must not change until the
 * step is done). A missing required field binds NULL, which the NOT NULL
 * constraints turn into a refusal of the record (see record_error). */
static int bind_outbox(sqlite3_stmt *st, const repl_msg *m, int64_t now_us)
{
    int rc = SQLITE_OK;
    B(sqlite3_bind_text(st, 1, m->id, -1, SQLITE_STATIC));
    B(sqlite3_bind_int64(st, 2, now_us));
    B(sqlite3_bind_int64(st, 3, m->timestamp));
    B(bind_text(st, 3, m->origin));
    B(bind_text(st, 4, m->method));
    B(bind_text(st, 5, m->target));
    B(bind_text(st, 6, m->headers));
    B(bind_text(st, 7, m->content_type));
    B(bind_text(st, 8, m->signature));
    B(bind_text(st, 9, m->routing_key));
    B(bind_body(st, 10, &m->body));
    return rc;
}

#undef B

/* Steps a bound writer statement to completion and makes it ready for the
 * next row. *changes (may be NULL) gets the rows it changed. */
static int run(sq_store *s, sqlite3_stmt *st, int64_t *changes, char *e, size_t elen)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
        if (changes)
            *changes = sqlite3_changes(s->db);
    } else {
        snprintf(e, elen, "%s", sqlite3_errmsg(s->db));
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* Errors caused by one record's content: retrying cannot help, so that
 * record alone is set aside. Everything else (busy, I/O, disk full) is
 * retried with the whole batch. */
static bool record_error(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_TOOBIG:
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
        return true;
    default:
        return false;
    }
}

/* Writes every row of one unit: its request, its outbox message (*max_seq
 * raised to its seq), its ledger entry. The ledger's origin is r->node: a
 * replicator's capture carries the origin node there. */
static int insert_unit(sq_store *s, const store_unit *u, int64_t now_us, int64_t *inserted,
                       int64_t *max_seq, char *e, size_t elen)
{
    const record *r = u->rec;
    int64_t changes = 0;
    int rc = SQLITE_OK;
    if (u->rec_row) {
        rc = bind_record(s, r);
        if (rc == SQLITE_OK)
            rc = run(s, s->ins, &changes, e, elen);
        else
            snprintf(e, elen, "%s", sqlite3_errstr(rc));
        if (rc != SQLITE_OK)
            return rc;
    }
    *inserted += changes;
    if (u->outbox) {
        rc = bind_outbox(s->ins_outbox, u->outbox, now_us);
        if (rc == SQLITE_OK)
            rc = run(s, s->ins_outbox, NULL, e, elen);
        else
            snprintf(e, elen, "%s", sqlite3_errstr(rc));
        if (rc != SQLITE_OK)
            return rc;
        int64_t seq = sqlite3_last_insert_rowid(s->db);
        if (seq > *max_seq)
            *max_seq = seq;
    }
    if (u->applied_id) {
        sqlite3_stmt *st = s->ins_applied;
        sqlite3_bind_text(st, 1, u->applied_id, -1, SQLITE_STATIC);
        bind_text(st, 1, r->node);
        sqlite3_bind_int64(st, 3, now_us);
        sqlite3_bind_int(st, 4, r->status);
        rc = run(s, st, NULL, e, elen);
        /* Applied: no longer stuck, in the same transaction. */
        if (rc == SQLITE_OK) {
            sqlite3_bind_text(s->stuck_del, 1, u->applied_id, -1, SQLITE_STATIC);
            rc = run(s, s->stuck_del, NULL, e, elen);
        }
    }
    return rc;
}

/* text NULL: the integer value; else the text (last_confirmed_id). */
static int counter_op(sq_store *s, const char *name, const char *text, int64_t value, bool set,
                      char *e, size_t elen)
{
    sqlite3_stmt *st = s->counter;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (text)
        sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, 2, value);
    sqlite3_bind_int(st, 3, set);
    return run(s, st, NULL, e, elen);
}

/* The stuck-table changes of o. They run before the batch's records, so
 * that a record's ledger row (which clears its stuck row) has the last
 * word over a failure noted just before its apply. */
static int apply_stuck_ops(sq_store *s, const sq_ops *o, char *e, size_t elen)
{
    int rc = SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && i < o->slen; i++) {
        const store_stuck *row = &o->sv[i].row;
        sqlite3_stmt *st = o->sv[i].set ? s->stuck_set : s->stuck_del;
        sqlite3_bind_text(st, 1, row->message_id, -1, SQLITE_STATIC);
        if (o->sv[i].set) {
            bind_text(st, 1, row->origin);
            bind_text(st, 2, row->method);
            bind_text(st, 3, row->target);
            sqlite3_bind_int64(st, 5, row->first_failed_us);
            sqlite3_bind_int64(st, 6, row->last_failed_us);
            sqlite3_bind_int64(st, 7, row->attempts);
            bind_text(st, 7, row->last_answer);
        }
        rc = run(s, st, NULL, e, elen);
    }
    return rc;
}

static int apply_ops(sq_store *s, const sq_ops *o, char *e, size_t elen)
{
    int rc = SQLITE_OK;
    if (o->confirm_upto > 0) {
        int64_t deleted = 0;
        sqlite3_bind_int64(s->del_outbox, 1, o->confirm_upto);
        rc = run(s, s->del_outbox, &deleted, e, elen);
        if (rc == SQLITE_OK)
            rc = counter_op(s, "published", NULL, deleted, false, e, elen);
        if (rc == SQLITE_OK)
            rc = counter_op(s, "last_confirmed_us", NULL, o->confirm_us, true, e, elen);
        if (rc == SQLITE_OK && o->confirm_id[0])
            rc = counter_op(s, "last_confirmed_id", o->confirm_id, 0, true, e, elen);
    }
    for (size_t i = 0; rc == SQLITE_OK && i < o->len; i++)
        rc = counter_op(s, o->v[i].name, NULL, o->v[i].value, o->v[i].set, e, elen);
    return rc;
}

/* One attempt at committing b[0..n) and ops. SQLITE_OK, or an error with
 * *bad set to the index of the offending record when it is a record_error (n
 * when the ops are at fault). The caller rolls back. *inserted: request rows
 * actually added (duplicates are ignored); *max_seq: the highest outbox seq
 * written, 0 for none. */
static int try_batch(sq_store *s, sq_item *b, size_t n, const sq_ops *ops, size_t *bad,
                     int64_t *inserted, int64_t *max_seq, char *e, size_t elen)
{
    *inserted = 0;
    *max_seq = 0;
    int rc = sq_exec(s->db, "BEGIN IMMEDIATE", e, elen);
    if (rc != SQLITE_OK)
        return rc;
    int64_t now = util_now_us();
    rc = apply_stuck_ops(s, ops, e, elen);
    if (rc != SQLITE_OK) {
        if (record_error(rc))
            *bad = n;
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        rc = insert_unit(s, &b[i].u, now, inserted, max_seq, e, elen);
        if (rc != SQLITE_OK) {
            if (record_error(rc))
                *bad = i;
            return rc;
        }
    }
    rc = apply_ops(s, ops, e, elen);
    if (rc != SQLITE_OK) {
        if (record_error(rc))
            *bad = n;
        return rc;
    }
    return sq_exec(s->db, "COMMIT", e, elen);
}

/* Commits b[0..n) and ops, then tells each record's owner (in submit order)
 * and frees the records; retries until it succeeds (see store.h: a failed
 * commit is never a reason to lose captures). */
/* At most this many committed records wait for the submitters (a few MiB
 * at most; two store batches). */
#define PARKED_MAX 1024

/* Hands committed units to the submitters to free (see `parked`); with
 * no submitters coming (too many parked), the writer frees them itself. */
static void park_units(sq_store *s, sq_item *b, size_t n)
{
    pthread_mutex_lock(&s->mu);
    size_t room = PARKED_MAX - s->nparked; /* nparked never passes PARKED_MAX */
    size_t keep = n < room ? n : room;
    if (keep && s->nparked + keep > s->parked_cap) {
        s->parked_cap = s->parked_cap ? s->parked_cap * 2 : 1024;
        while (s->parked_cap < s->nparked + keep)
            s->parked_cap *= 2;
        s->parked = xrealloc(s->parked, s->parked_cap * sizeof *s->parked);
    }
    for (size_t i = 0; i < keep; i++)
        s->parked[s->nparked++] = b[i].u;
    pthread_mutex_unlock(&s->mu);
    for (size_t i = keep; i < n; i++)
        unit_free(&b[i].u);
}

static void write_batch(sq_store *s, sq_item *b, size_t n, sq_ops *ops)
{
    unsigned backoff = BACKOFF_MIN_MS;
    unsigned failures = 0;
    int64_t inserted = 0, max_seq = 0;
    bool committed = false;
    while (n || ops_pending(ops)) {
        char e[256] = "";
        size_t bad = SIZE_MAX;
        int rc = try_batch(s, b, n, ops, &bad, &inserted, &max_seq, e, sizeof e);
        if (rc == SQLITE_OK) {
            committed = true;
            break;
        }
        if (sqlite3_get_autocommit(s->db) == 0)
            sq_exec(s->db, "ROLLBACK", NULL, 0);
        if (bad == n) {
            fprintf(stderr, "restspy: store: cannot update replication counters (dropped): %s\n",
                    e);
            ops_free(ops);
            pthread_mutex_lock(&s->mu);
            s->st.errors++;
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        if (bad != SIZE_MAX) {
            fprintf(stderr, "restspy: store: cannot store request %s (dropped): %s\n",
                    b[bad].u.rec->id, e);
            sq_item it = b[bad];
            memmove(b + bad, b + bad + 1, (n - bad - 1) * sizeof *b);
            n--;
            pthread_mutex_lock(&s->mu);
            s->st.errors++;
            s->st.dropped++;
            s->inflight--;
            pthread_mutex_unlock(&s->mu);
            refuse(&it.u, it.done, it.ud);
            continue;
        }
        pthread_mutex_lock(&s->mu);
        s->st.errors++;
        bool closing = s->closing;
        pthread_mutex_unlock(&s->mu);
        failures++;
        if (failures == 1 || failures % 10 == 0)
            fprintf(stderr, "restspy: store: commit of %zu requests%s failed (%s), retrying\n", n,
                    ops_pending(ops) ? " and replication counters" : "", e);
        if (closing && failures >= CLOSE_MAX_FAILURES) {
            fprintf(stderr, "restspy: store: giving up on %zu requests at shutdown: %s\n", n, e);
            ops_free(ops);
            pthread_mutex_lock(&s->mu);
            s->st.dropped += n;
            s->inflight = 0;
            pthread_mutex_unlock(&s->mu);
            for (size_t i = 0; i < n; i++)
                refuse(&b[i].u, b[i].done, b[i].ud);
            return;
        }
        sleep_ms(backoff);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    ops_free(ops);
    if (committed)
        s->rows += inserted;
    pthread_mutex_lock(&s->mu);
    if (committed && n) {
        s->st.written += n;
        s->st.batches++;
    }
    if (committed && max_seq > s->outbox_seq) {
        s->outbox_seq = max_seq;
        pthread_cond_broadcast(&s->outbox);
    }
    s->inflight = 0;
    pthread_mutex_unlock(&s->mu);
    /* After the commit, in submit order: a sync-durability proxy releases
     * each response only now that its outbox row is on disk. */
    for (size_t i = 0; i < n; i++)
        if (b[i].done)
            b[i].done(b[i].ud, 0);
    park_units(s, b, n);
}

static bool rows_excess(const sq_store *s)
{
    return s->opt.max_rows && s->rows > (int64_t)s->opt.max_rows;
}

/* Monotonic time at which retention next has work, INT64_MAX for never. A
 * failed delete (the file is locked by another process) holds retention off
 * for a while instead of spinning. */
static int64_t prune_wake_at(const sq_store *s)
{
    int64_t t = INT64_MAX;
    if (rows_excess(s))
        t = s->rows_hold_until_mono_us;
    if (s->opt.max_age_ms && s->next_age_prune_mono_us < t)
        t = s->next_age_prune_mono_us;
    return t;
}

static bool prune_due(const sq_store *s, int64_t now_mono)
{
    return now_mono >= prune_wake_at(s);
}

/* Runs one DELETE chunk in its own (short) transaction; rows deleted or -1. */
static int64_t prune_chunk(sq_store *s, const char *sql, int64_t arg)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "restspy: store: retention: %s\n", sqlite3_errmsg(s->db));
        return -1;
    }
    sqlite3_bind_int64(st, 1, arg);
    int rc = sqlite3_step(st);
    int64_t n = rc == SQLITE_DONE ? sqlite3_changes(s->db) : -1;
    if (n < 0)
        fprintf(stderr, "restspy: store: retention: %s\n", sqlite3_errmsg(s->db));
    sqlite3_finalize(st);
    pthread_mutex_lock(&s->mu);
    if (n < 0)
        s->st.errors++;
    else
        s->st.pruned += (uint64_t)n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* One step of retention: at most one chunk per kind, so new batches get in
 * between chunks. Rows are deleted oldest first by started_at. */
static void prune_step(sq_store *s)
{
    int64_t now_mono = util_mono_us();
    if (s->opt.max_age_ms && now_mono >= s->next_age_prune_mono_us) {
        int64_t cutoff = util_now_us() - (int64_t)s->opt.max_age_ms * 1000;
        int64_t n = prune_chunk(s,
                                "DELETE FROM requests WHERE rowid IN (SELECT rowid FROM requests "
                                "WHERE started_at < ?1 ORDER BY started_at LIMIT 1000)",
                                cutoff);
        if (n > 0)
            s->rows -= n;
        /* A full chunk means there is more: go on right after the next batch. */
        s->next_age_prune_mono_us = n == PRUNE_CHUNK ? now_mono : now_mono + AGE_PRUNE_EVERY_US;
    }
    if (rows_excess(s) && now_mono >= s->rows_hold_until_mono_us) {
        int64_t excess = s->rows - (int64_t)s->opt.max_rows;
        int64_t n = prune_chunk(s,
                                "DELETE FROM requests WHERE rowid IN (SELECT rowid FROM requests "
                                "ORDER BY started_at LIMIT ?1)",
                                excess > PRUNE_CHUNK ? PRUNE_CHUNK : excess);
        if (n > 0)
            s->rows -= n;
        else if (n == 0) /* the table is smaller than we thought (deleted by hand) */
            s->rows = (int64_t)s->opt.max_rows;
        s->rows_hold_until_mono_us = n < 0 ? now_mono + AGE_PRUNE_EVERY_US : 0;
    }
}

static void *sq_writer_main(void *arg)
{
    sq_store *s = arg;
    size_t bmax = s->opt.batch_max ? (size_t)s->opt.batch_max : 1;
    if (bmax > s->cap)
        bmax = s->cap;
    sq_item *batch = xmalloc(bmax * sizeof *batch);
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (s->count == 0 && s->nparked) {
            /* Idle: no submitter will free the parked records soon. */
            store_unit *v = s->parked;
            size_t nv = s->nparked;
            s->parked = NULL;
            s->nparked = s->parked_cap = 0;
            pthread_mutex_unlock(&s->mu);
            for (size_t i = 0; i < nv; i++)
                unit_free(&v[i]);
            free(v);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        while (!s->closing && (s->count == 0 || s->paused) && !ops_pending(&s->ops) &&
               !prune_due(s, util_mono_us())) {
            int64_t t = prune_wake_at(s);
            if (t != INT64_MAX) {
                /* Wake up for retention even when no traffic arrives. */
                struct timespec ts;
                ts.tv_sec = (time_t)(t / 1000000);
                ts.tv_nsec = (long)(t % 1000000) * 1000;
                pthread_cond_timedwait(&s->nonempty, &s->mu, &ts);
            } else {
                pthread_cond_wait(&s->nonempty, &s->mu);
            }
        }
        if (s->closing && s->count == 0 && !ops_pending(&s->ops))
            break;
        if (s->opt.commit_delay_us && !s->closing && !s->paused && s->count < bmax && !s->waiting) {
            /* Group commit: one transaction costs about the same for 1 record
             * as for 100, so under load a short wait makes batches (and
             * throughput) much larger. Not when a submitter waits for the
             * commit (a held answer, a replicator's ack): its batch is what
             * queued while the previous transaction was written. */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t ns = (int64_t)ts.tv_nsec + (int64_t)s->opt.commit_delay_us * 1000;
            ts.tv_sec += (time_t)(ns / 1000000000);
            ts.tv_nsec = (long)(ns % 1000000000);
            s->gathering = true;
            while (!s->closing && s->count < bmax && !s->waiting)
                if (pthread_cond_timedwait(&s->nonempty, &s->mu, &ts) == ETIMEDOUT)
                    break;
            s->gathering = false;
        }
        size_t n = 0;
        if (!s->paused) {
            while (n < bmax && s->count) {
                if (s->ring[s->head].done)
                    s->waiting--;
                batch[n++] = s->ring[s->head];
                s->head = (s->head + 1) % s->ring_alloc;
                s->count--;
            }
            s->inflight = n;
            if (n)
                pthread_cond_broadcast(&s->room);
        }
        sq_ops ops = s->ops; /* the next transaction takes every pending op */
        memset(&s->ops, 0, sizeof s->ops);
        pthread_mutex_unlock(&s->mu);
        if (n || ops_pending(&ops))
            write_batch(s, batch, n, &ops);
        ops_free(&ops);
        if (prune_due(s, util_mono_us()))
            prune_step(s);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    free(batch);
    /* Closing: finish retention (one more age pass, then whatever chunks are
     * left), still one short transaction per chunk; a failure holds it off
     * into the future, which ends the loop. */
    s->next_age_prune_mono_us = 0;
    while (prune_due(s, util_mono_us()))
        prune_step(s);
    return NULL;
}

/* ---- reading ---- */

static void set_str(char **dst, sqlite3_stmt *st, int col)
{
    free(*dst);
    *dst = NULL;
    const unsigned char *t = sqlite3_column_text(st, col);
    if (t)
        *dst = xstrndup((const char *)t, (size_t)sqlite3_column_bytes(st, col));
}

static void set_headers(http_headers *h, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    /* A malformed column (edited by hand) leaves the headers empty rather
     * than hiding the whole record. */
    if (t && http_headers_from_json(h, (const char *)t, (size_t)sqlite3_column_bytes(st, col)))
        http_headers_free(h);
}

static void set_body(buf *b, sqlite3_stmt *st, int col)
{
    const void *p = sqlite3_column_blob(st, col);
    int n = sqlite3_column_bytes(st, col);
    if (p && n > 0)
        buf_append(b, p, (size_t)n);
}

static record *row_to_record(sqlite3_stmt *st)
{
    record *r = record_new();
    const unsigned char *id = sqlite3_column_text(st, C_ID);
    snprintf(r->id, sizeof r->id, "%s", id ? (const char *)id : "");
    set_str(&r->node, st, C_NODE);
    r->started_at_us = sqlite3_column_int64(st, C_STARTED_AT);
    r->duration_us = sqlite3_column_int64(st, C_DURATION);
    /* -1 means "no upstream exchange" (README); NULL from a hand-made row too. */
    r->upstream_us = sqlite3_column_type(st, C_UPSTREAM) == SQLITE_NULL
                         ? -1
                         : sqlite3_column_int64(st, C_UPSTREAM);
    set_str(&r->client_addr, st, C_CLIENT);
    set_str(&r->method, st, C_METHOD);
    set_str(&r->scheme, st, C_SCHEME);
    set_str(&r->host, st, C_HOST);
    set_str(&r->path, st, C_PATH);
    set_str(&r->query, st, C_QUERY);
    set_headers(&r->req_headers, st, C_REQ_HEADERS);
    set_body(&r->req_body, st, C_REQ_BODY);
    r->req_body_size = (uint64_t)sqlite3_column_int64(st, C_REQ_BODY_SIZE);
    r->req_truncated = sqlite3_column_int(st, C_REQ_TRUNC) != 0;
    r->status = sqlite3_column_int(st, C_STATUS);
    set_headers(&r->resp_headers, st, C_RESP_HEADERS);
    set_body(&r->resp_body, st, C_RESP_BODY);
    r->resp_body_size = (uint64_t)sqlite3_column_int64(st, C_RESP_BODY_SIZE);
    r->resp_truncated = sqlite3_column_int(st, C_RESP_TRUNC) != 0;
    set_str(&r->rule, st, C_RULE);
    set_str(&r->origin, st, C_ORIGIN);
    set_str(&r->error, st, C_ERROR);
    set_str(&r->replication, st, C_REPLICATION);
    set_str(&r->req_encoding, st, C_REQ_ENCODING);
    set_str(&r->req_body_note, st, C_REQ_BODY_NOTE);
    set_str(&r->resp_encoding, st, C_RESP_ENCODING);
    set_str(&r->resp_body_note, st, C_RESP_BODY_NOTE);
    return r;
}

/* The SELECT list matching SQ_COLUMNS on a file of any known version. */
static const char *select_columns(const sq_store *s)
{
    if (s->schema >= 3)
        return SQ_COLUMNS;
    return s->schema >= 2 ? SQ_COLUMNS_V2 ", NULL, NULL, NULL, NULL"
                          : SQ_COLUMNS_V1 ", NULL, NULL, NULL, NULL, NULL";
}

/* The query connection; called with rlock held. */
static sqlite3 *reader(sq_store *s, char *err, size_t errlen)
{
    if (!s->rdb)
        s->rdb = sq_connect(s->path, true, s->opt.busy_timeout_ms, err, errlen);
    return s->rdb;
}

/* Starts one of the per-message queries on the read connection: locks
 * rlock and gives in *st the statement of slot (prepared on first use,
 * kept for the store's life). 1: ready; 0: the file predates the
 * replication tables (nothing to read, *st NULL); -1: error in err. Always
 * followed by reader_end. */
static int reader_begin(sq_store *s, sqlite3_stmt **slot, const char *sql, const char *what,
                        sqlite3_stmt **st, char *err, size_t errlen)
{
    *st = NULL;
    pthread_mutex_lock(&s->rlock);
    sqlite3 *db = reader(s, err, errlen);
    if (!db)
        return -1;
    if (s->schema < 2)
        return 0;
    if (!*slot &&
        sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot read the %s: %s", what, sqlite3_errmsg(db));
        *slot = NULL;
        return -1;
    }
    *st = *slot;
    return 1;
}

/* Ends what reader_begin started: the statement reset (no read transaction
 * left open) and rlock released. */
static void reader_end(sq_store *s, sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    pthread_mutex_unlock(&s->rlock);
}

/* Starts a one-off query (the CLI's): locks rlock and prepares sql on the
 * read connection into *st. 0, or -1 with err ("cannot query store: ...").
 * Always followed by oneoff_end. */
static int oneoff_begin(sq_store *s, const char *sql, sqlite3_stmt **st, char *err, size_t errlen)
{
    *st = NULL;
    pthread_mutex_lock(&s->rlock);
    sqlite3 *db = reader(s, err, errlen);
    if (!db)
        return -1;
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot query store: %s", sqlite3_errmsg(db));
        *st = NULL;
        return -1;
    }
    return 0;
}

/* Ends what oneoff_begin started; rc is the last sqlite3_step's: anything
 * but SQLITE_ROW or SQLITE_DONE is reported in err and makes it -1, else
 * ret is returned. */
static int oneoff_end(sq_store *s, sqlite3_stmt *st, int rc, int ret, char *err, size_t errlen)
{
    if (st && rc != SQLITE_ROW && rc != SQLITE_DONE) {
        snprintf(err, errlen, "cannot query store: %s", sqlite3_errmsg(sqlite3_db_handle(st)));
        ret = -1;
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->rlock);
    return ret;
}

/* A bound parameter of a query being built. */
typedef struct qparam {
    const char *s; /* text, or NULL for an integer */
    size_t slen;
    int64_t i;
} qparam;

#define QPARAMS_MAX 16

static void add_text(qparam *p, int *np, const char *s, size_t len)
{
    p[*np].s = s;
    p[*np].slen = len;
    (*np)++;
}

static void add_int(qparam *p, int *np, int64_t v)
{
    p[*np].s = NULL;
    p[*np].i = v;
    (*np)++;
}

/* Every path matching glob starts with the returned number of bytes of glob:
 * the text before the first star, cut back to before its last slash (so a
 * trailing slash-doublestar, which may match zero segments, still covers the
 * bare prefix: "/api" for "/api" + "/" + "**"). The SQL range on that prefix
 * only narrows the scan; glob_match decides. */
static size_t glob_safe_prefix(const char *glob)
{
    size_t lit = strcspn(glob, "*");
    while (lit > 0 && glob[lit - 1] != '/')
        lit--;
    return lit > 0 ? lit - 1 : 0;
}

static int sq_query_each(store *base, const store_query *q, int (*fn)(const record *r, void *ud),
                         void *ud, char *err, size_t errlen)
{
    sq_store *s = sq(base);
    buf sql = BUF_INIT;
    qparam p[QPARAMS_MAX];
    int np = 0;
    char upper[512];

    buf_append_str(&sql, "SELECT ");
    buf_append_str(&sql, select_columns(s));
    buf_append_str(&sql, " FROM requests WHERE 1");
    if (q->method) {
        buf_append_str(&sql, " AND method = ? COLLATE NOCASE");
        add_text(p, &np, q->method, strlen(q->method));
    }
    if (q->path_glob) {
        size_t pl = glob_safe_prefix(q->path_glob);
        if (pl > 0 && pl < sizeof upper && (unsigned char)q->path_glob[pl - 1] < 0xff) {
            memcpy(upper, q->path_glob, pl);
            upper[pl - 1]++;
            buf_append_str(&sql, " AND path >= ? AND path < ?");
            add_text(p, &np, q->path_glob, pl);
            add_text(p, &np, upper, pl);
        }
    }
    if (q->status_min) {
        buf_append_str(&sql, " AND status >= ?");
        add_int(p, &np, q->status_min);
    }
    if (q->status_max) {
        buf_append_str(&sql, " AND status <= ?");
        add_int(p, &np, q->status_max);
    }
    if (q->since_us) {
        buf_append_str(&sql, " AND started_at >= ?");
        add_int(p, &np, q->since_us);
    }
    if (q->until_us) {
        buf_append_str(&sql, " AND started_at < ?");
        add_int(p, &np, q->until_us);
    }
    if (q->origin) {
        buf_append_str(&sql, " AND origin = ?");
        add_text(p, &np, q->origin, strlen(q->origin));
    }
    if (q->node) {
        buf_append_str(&sql, " AND node = ?");
        add_text(p, &np, q->node, strlen(q->node));
    }
    /* rowid breaks ties in insertion order and keeps the started_at index
     * usable for the ORDER BY. */
    buf_append_str(&sql, q->newest_first ? " ORDER BY started_at DESC, rowid DESC"
                                         : " ORDER BY started_at, rowid");
    /* With a glob the limit counts rows that pass the C-side match. */
    if (q->limit > 0 && !q->path_glob) {
        buf_append_str(&sql, " LIMIT ?");
        add_int(p, &np, q->limit);
    }

    sqlite3_stmt *st;
    int rc = SQLITE_DONE;
    int ret = oneoff_begin(s, sql.data, &st, err, errlen);
    if (ret < 0)
        goto out;
    for (int i = 0; i < np; i++) {
        if (p[i].s)
            sqlite3_bind_text64(st, i + 1, p[i].s, p[i].slen, SQLITE_STATIC, SQLITE_UTF8);
        else
            sqlite3_bind_int64(st, i + 1, p[i].i);
    }
    int64_t matched = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (q->path_glob) {
            const char *path = (const char *)sqlite3_column_text(st, C_PATH);
            if (!path || !glob_match(q->path_glob, path, (size_t)sqlite3_column_bytes(st, C_PATH)))
                continue;
        }
        record *r = row_to_record(st);
        int stop = fn(r, ud);
        record_free(r);
        matched++;
        if (stop || (q->limit > 0 && matched >= q->limit))
            break;
    }
out:
    ret = oneoff_end(s, st, rc, ret, err, errlen);
    buf_free(&sql);
    return ret;
}

static int sq_get(store *base, const char *id, record **out, char *err, size_t errlen)
{
    sq_store *s = sq(base);
    *out = NULL;
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT %s FROM requests WHERE id = ?1", select_columns(s));
    sqlite3_stmt *st;
    int rc = SQLITE_DONE;
    int ret = oneoff_begin(s, sql, &st, err, errlen);
    if (ret == 0) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = row_to_record(st);
            ret = 1;
        }
    }
    return oneoff_end(s, st, rc, ret, err, errlen);
}

static int sq_ids_each(store *base, int (*fn)(const char *id, size_t len, void *ud), void *ud,
                       char *err, size_t errlen)
{
    sq_store *s = sq(base);
    sqlite3_stmt *st;
    int rc = SQLITE_DONE;
    /* Reads the primary key's index alone, never the rows. */
    int ret = oneoff_begin(s, "SELECT id FROM requests ORDER BY id", &st, err, errlen);
    while (ret == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        if (id && fn(id, (size_t)sqlite3_column_bytes(st, 0), ud))
            break;
    }
    return oneoff_end(s, st, rc, ret, err, errlen);
}

/* ---- replication reads ----
 *
 * All on the read connection under rlock: the publisher, the replicator's
 * workers and the admin thread may call them at once, and none of them may
 * wait for the writer (WAL readers never do). A reader of a version 1 file
 * sees no outbox, an empty ledger and zero figures. */

static repl_msg *row_to_msg(sqlite3_stmt *st)
{
    repl_msg *m = repl_msg_new();
    const unsigned char *id = sqlite3_column_text(st, O_ID);
    snprintf(m->id, sizeof m->id, "%s", id ? (const char *)id : "");
    m->timestamp = sqlite3_column_int64(st, O_TIMESTAMP);
    set_str(&m->origin, st, O_ORIGIN);
    set_str(&m->method, st, O_METHOD);
    set_str(&m->target, st, O_TARGET);
    set_str(&m->headers, st, O_HEADERS);
    set_str(&m->content_type, st, O_CTYPE);
    set_str(&m->signature, st, O_SIG);
    set_str(&m->routing_key, st, O_RKEY);
    set_body(&m->body, st, O_BODY);
    return m;
}

static int sq_outbox_fetch(store *base, int64_t after_seq, size_t max, store_outbox_row *rows,
                           size_t *n, char *err, size_t errlen)
{
    sq_store *s = sq(base);
    *n = 0;
    if (max == 0)
        return 0;
    sqlite3_stmt *st;
    int ret = reader_begin(s, &s->r_outbox_fetch,
                           "SELECT " SQ_OUTBOX_COLUMNS
                           " FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                           "outbox", &st, err, errlen);
    if (ret > 0) {
        ret = 0;
        sqlite3_bind_int64(st, 1, after_seq);
        sqlite3_bind_int64(st, 2, max > INT64_MAX ? INT64_MAX : (int64_t)max);
        int rc = SQLITE_DONE;
        while (*n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            rows[*n].seq = sqlite3_column_int64(st, O_SEQ);
            rows[*n].msg = row_to_msg(st);
            (*n)++;
        }
        if (*n < max && rc != SQLITE_DONE) {
            snprintf(err, errlen, "cannot read the outbox: %s",
                     sqlite3_errmsg(sqlite3_db_handle(st)));
            store_outbox_rows_free(rows, *n);
            *n = 0;
            ret = -1;
        }
    }
    reader_end(s, st);
    return ret;
}

static int sq_ledger_has(store *base, const char *message_id, char *err, size_t errlen)
{
    sq_store *s = sq(base);
    sqlite3_stmt *st;
    int ret =
        reader_begin(s, &s->r_ledger_has,
                     s->schema >= 4 ? "SELECT state IS NOT NULL FROM applied WHERE message_id = ?1"
                                    : "SELECT 0 FROM applied WHERE message_id = ?1",
                     "applied ledger", &st, err, errlen);
    if (ret > 0) {
        sqlite3_bind_text(st, 1, message_id, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        ret = rc == SQLITE_ROW ? 1 + sqlite3_column_int(st, 0) : 0;
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            snprintf(err, errlen, "cannot read the applied ledger: %s",
                     sqlite3_errmsg(sqlite3_db_handle(st)));
            ret = -1;
        }
    }
    reader_end(s, st);
    return ret;
}

/* The figures, each query a step of one read transaction so that they agree
 * with each other (a confirm moves rows from depth to published at once). */
static int repl_stats_read(sqlite3 *db, int64_t schema, store_repl_stats *out)
{
    /* Since version 4 a ledger row may be a skip (state 'skipped'): it is
     * counted apart and is not the last apply. */
    const char *const sql[] = {
        "SELECT count(*) FROM outbox",
        "SELECT created_at FROM outbox ORDER BY seq LIMIT 1",
        "SELECT name, value FROM counters",
        schema >= 4 ? "SELECT count(*) - count(state), count(state) FROM applied"
                    : "SELECT count(*), 0 FROM applied",
        schema >= 4 ? "SELECT message_id, applied_at FROM applied WHERE state IS NULL "
                      "ORDER BY applied_at DESC LIMIT 1"
                    : "SELECT message_id, applied_at FROM applied ORDER BY applied_at DESC LIMIT 1",
    };
    out->retry_max_age_ms = out->retry_max_attempts = -1;
    for (size_t q = 0; q < sizeof sql / sizeof sql[0]; q++) {
        sqlite3_stmt *st;
        int rc = sqlite3_prepare_v2(db, sql[q], -1, &st, NULL);
        if (rc != SQLITE_OK)
            return rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            int64_t v = sqlite3_column_int64(st, q == 2 ? 1 : 0);
            if (q == 0) {
                out->outbox_depth = v;
            } else if (q == 1) {
                out->oldest_unpublished_us = v;
            } else if (q == 3) {
                out->applied = v;
                out->skipped = sqlite3_column_int64(st, 1);
            } else if (q == 4) {
                const char *id = (const char *)sqlite3_column_text(st, 0);
                int64_t ms = id ? uuid7_time_ms(id) : -1;
                out->last_applied_msg_us = ms >= 0 ? ms * 1000 : 0;
                out->last_applied_us = sqlite3_column_int64(st, 1);
            } else {
                const char *name = (const char *)sqlite3_column_text(st, 0);
                if (!name)
                    continue;
                if (strcmp(name, "published") == 0)
                    out->published = v;
                else if (strcmp(name, "not_replicated") == 0)
                    out->not_replicated = v;
                else if (strcmp(name, "deduplicated") == 0)
                    out->deduplicated = v;
                else if (strcmp(name, "dead_lettered") == 0)
                    out->dead_lettered = v;
                else if (strcmp(name, "last_confirmed_us") == 0)
                    out->last_confirmed_us = v;
                else if (strcmp(name, "retry_max_age_ms") == 0)
                    out->retry_max_age_ms = v;
                else if (strcmp(name, "retry_max_attempts") == 0)
                    out->retry_max_attempts = v;
                else if (strcmp(name, "last_confirmed_id") == 0) {
                    const unsigned char *t = sqlite3_column_text(st, 1);
                    snprintf(out->last_confirmed_id, sizeof out->last_confirmed_id, "%s",
                             t ? (const char *)t : "");
                }
            }
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE)
            return rc;
    }
    return SQLITE_OK;
}

static int sq_repl_stats_get(store *base, store_repl_stats *out, char *err, size_t errlen)
{
    sq_store *s = sq(base);
    memset(out, 0, sizeof *out);
    int ret = 0;
    pthread_mutex_lock(&s->rlock);
    sqlite3 *db = reader(s, err, errlen);
    if (!db) {
        ret = -1;
    } else if (s->schema >= 2) {
        char e[256];
        int rc = sq_exec(db, "BEGIN", e, sizeof e);
        if (rc == SQLITE_OK)
            rc = repl_stats_read(db, s->schema, out);
        if (rc != SQLITE_OK) {
            snprintf(err, errlen, "cannot read replication figures: %s", sqlite3_errmsg(db));
            memset(out, 0, sizeof *out);
            ret = -1;
        }
        if (!sqlite3_get_autocommit(db))
            sq_exec(db, "COMMIT", NULL, 0);
    }
    pthread_mutex_unlock(&s->rlock);
    return ret;
}

/* ---- the replicator's failing writes, skips and lag ---- */

/* Fills row's fields but message_id from a statement that selects
 * SQ_STUCK_COLUMNS: origin is column first (message_id before it). */
static void row_to_stuck(sqlite3_stmt *st, int first, store_stuck *row)
{
    set_str(&row->origin, st, first);
    set_str(&row->method, st, first + 1);
    set_str(&row->target, st, first + 2);
    row->first_failed_us = sqlite3_column_int64(st, first + 3);
    row->last_failed_us = sqlite3_column_int64(st, first + 4);
    row->attempts = sqlite3_column_int64(st, first + 5);
    set_str(&row->last_answer, st, first + 6);
}

static int sq_stuck_get(store *base, const char *message_id, store_stuck *out, char *err,
                        size_t errlen)
{
    sq_store *s = sq(base);
    memset(out, 0, sizeof *out);
    if (s->schema < 4)
        return 0;
    sqlite3_stmt *st;
    int ret = reader_begin(s, &s->r_stuck_get,
                           "SELECT " SQ_STUCK_COLUMNS " FROM stuck WHERE message_id = ?1",
                           "stuck messages", &st, err, errlen);
    if (ret > 0) {
        sqlite3_bind_text(st, 1, message_id, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        ret = rc == SQLITE_ROW ? 1 : 0;
        if (rc == SQLITE_ROW) {
            snprintf(out->message_id, sizeof out->message_id, "%s", message_id);
            row_to_stuck(st, 1, out);
        } else if (rc != SQLITE_DONE) {
            snprintf(err, errlen, "cannot read the stuck messages: %s",
                     sqlite3_errmsg(sqlite3_db_handle(st)));
            ret = -1;
        }
    }
    reader_end(s, st);
    return ret;
}

static int sq_stuck_list(store *base, size_t max, store_stuck **out, size_t *n, int64_t *total,
                         char *err, size_t errlen)
{
    sq_store *s = sq(base);
    *out = NULL;
    *n = 0;
    *total = 0;
    if (s->schema < 4)
        return 0;
    /* A row whose message is in the ledger is history (a skip recorded
     * while the replicator was noting a failure of it): not listed. The
     * table is small (what the replicator holds), so it is read whole. */
    sqlite3_stmt *st;
    int rc = SQLITE_OK;
    int ret = oneoff_begin(s,
                           "SELECT " SQ_STUCK_COLUMNS " FROM stuck WHERE message_id NOT IN "
                           "(SELECT message_id FROM applied) ORDER BY first_failed_at = 0, "
                           "first_failed_at, last_failed_at",
                           &st, err, errlen);
    size_t cap = 0;
    store_stuck *v = NULL;
    while (ret == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        (*total)++;
        if (*n >= max)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            v = xrealloc(v, cap * sizeof *v);
        }
        store_stuck *row = &v[(*n)++];
        memset(row, 0, sizeof *row);
        const unsigned char *id = sqlite3_column_text(st, 0);
        snprintf(row->message_id, sizeof row->message_id, "%s", id ? (const char *)id : "");
        row_to_stuck(st, 1, row);
    }
    if (oneoff_end(s, st, rc, ret, err, errlen) < 0) {
        store_stuck_free(v, *n);
        *n = 0;
        *total = 0;
        return -1;
    }
    *out = v;
    return 0;
}

static int sq_ledger_skip(store *base, const char *message_id, const char *origin, char *err,
                          size_t errlen)
{
    sq_store *s = sq(base);
    pthread_mutex_lock(&s->mu);
    bool started = s->started;
    pthread_mutex_unlock(&s->mu);
    /* The writer thread owns db once started: this is for the CLI only. */
    assert(!started && !s->opt.read_only);
    if (started || s->opt.read_only) {
        snprintf(err, errlen, "cannot record a skip on this store");
        return -1;
    }
    char e[256] = "";
    int64_t inserted = 0;
    sqlite3_stmt *ins = NULL, *del = NULL;
    int rc = sq_exec(s->db, "BEGIN IMMEDIATE", e, sizeof e);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(s->db,
                                "INSERT OR IGNORE INTO applied (message_id, origin, applied_at, "
                                "status, state) VALUES (?1, ?2, ?3, NULL, 'skipped')",
                                -1, &ins, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(ins, 1, message_id, -1, SQLITE_STATIC);
        bind_text(ins, 1, origin);
        sqlite3_bind_int64(ins, 3, util_now_us());
        rc = run(s, ins, &inserted, e, sizeof e);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(s->db, SQ_STUCK_DELETE, -1, &del, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(del, 1, message_id, -1, SQLITE_STATIC);
        rc = run(s, del, NULL, e, sizeof e);
    }
    if (rc == SQLITE_OK)
        rc = sq_exec(s->db, "COMMIT", e, sizeof e);
    if (rc != SQLITE_OK && !e[0])
        snprintf(e, sizeof e, "%s", sqlite3_errmsg(s->db));
    sqlite3_finalize(ins);
    sqlite3_finalize(del);
    if (rc != SQLITE_OK) {
        if (!sqlite3_get_autocommit(s->db))
            sq_exec(s->db, "ROLLBACK", NULL, 0);
        snprintf(err, errlen, "cannot record the skip of %s in the ledger: %s", message_id, e);
        return -1;
    }
    return inserted > 0 ? 1 : 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile p (0-100] of the ascending v[0..n), n > 0. */
static int64_t percentile(const int64_t *v, size_t n, unsigned p)
{
    size_t k = (n * p + 99) / 100;
    return v[k ? k - 1 : 0];
}

static int sq_repl_lag_get(store *base, int64_t since_us, size_t max_samples, store_repl_lag *out,
                           char *err, size_t errlen)
{
    sq_store *s = sq(base);
    memset(out, 0, sizeof *out);
    if (s->schema < 2 || max_samples == 0)
        return 0;
    sqlite3_stmt *st;
    if (oneoff_begin(s,
                     s->schema >= 4 ? "SELECT message_id, applied_at FROM applied WHERE applied_at "
                                      ">= ?1 AND state IS NULL ORDER BY applied_at DESC LIMIT ?2"
                                    : "SELECT message_id, applied_at FROM applied WHERE applied_at "
                                      ">= ?1 ORDER BY applied_at DESC LIMIT ?2",
                     &st, err, errlen) < 0)
        return oneoff_end(s, st, SQLITE_OK, -1, err, errlen);
    sqlite3_bind_int64(st, 1, since_us);
    sqlite3_bind_int64(st, 2, max_samples > INT64_MAX ? INT64_MAX : (int64_t)max_samples);
    int64_t *v = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        int64_t ms = id ? uuid7_time_ms(id) : -1;
        if (ms < 0)
            continue; /* not a restspy id: no origin time */
        int64_t lag = sqlite3_column_int64(st, 1) - ms * 1000;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            v = xrealloc(v, cap * sizeof *v);
        }
        v[n++] = lag > 0 ? lag : 0;
    }
    int ret = oneoff_end(s, st, rc, 0, err, errlen);
    if (ret == 0 && n) {
        qsort(v, n, sizeof *v, cmp_i64);
        out->n = (int64_t)n;
        out->p50_us = percentile(v, n, 50);
        out->p99_us = percentile(v, n, 99);
        out->max_us = v[n - 1];
    }
    free(v);
    return ret;
}

const store_backend store_sqlite_backend = {
    .scheme = "sqlite",
    .open = sq_open,
    .start = sq_start,
    .submit = sq_submit,
    .get_stats = sq_get_stats,
    .close = sq_close,
    .query_each = sq_query_each,
    .get = sq_get,
    .ids_each = sq_ids_each,
    .outbox_fetch = sq_outbox_fetch,
    .outbox_wait = sq_outbox_wait,
    .outbox_confirmed = sq_outbox_confirmed,
    .ledger_has = sq_ledger_has,
    .counter = sq_counter,
    .repl_stats_get = sq_repl_stats_get,
    .stuck_set = sq_stuck_set,
    .stuck_clear = sq_stuck_clear,
    .stuck_get = sq_stuck_get,
    .stuck_list = sq_stuck_list,
    .ledger_skip = sq_ledger_skip,
    .repl_lag_get = sq_repl_lag_get,
};
