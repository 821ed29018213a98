/* store_sqlite: the SQLite backend (see store.h for the promises): opening,
 * starting and closing a store, and its vtable. The other parts:
 * sqlite_schema.c (migrations, files that are not restspy's),
 * sqlite_writer.c (intake, the writer thread, group commit, retention),
 * sqlite_query.c (reading requests), sqlite_repl.c (the replication tables),
 * sqlite_receipts.c (the record of one replicated write: receipts);
 * sqlite_internal.h holds what they share.
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

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/util.h"
#include "store/sqlite_internal.h"

/* ---- small SQLite helpers ---- */

int sq_exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK && err)
        snprintf(err, errlen, "%s", msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return rc;
}

int sq_int_query(sqlite3 *db, const char *sql, int64_t *out, char *err, size_t errlen)
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

/* ---- open / start / close ---- */

/* Before SQLite's first use: no global memory statistics. With them on,
 * every allocation SQLite makes takes a process-wide mutex (a tenth of the
 * writer's instructions per row, callgrind). */
static void sq_global_init(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

static pthread_once_t sq_once = PTHREAD_ONCE_INIT;

sqlite3 *sq_connect(const char *path, bool read_only, uint64_t busy_ms, char *err, size_t errlen)
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

static void finalize_writer_stmts(sq_store *s)
{
    sqlite3_stmt **v[] = {&s->ins,        &s->ins_outbox, &s->ins_applied, &s->counter,
                          &s->del_outbox, &s->stuck_set,  &s->stuck_del,   &s->receipt_put};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        sqlite3_finalize(*v[i]);
        *v[i] = NULL;
    }
}

static void sq_free(sq_store *s)
{
    writeq_destroy(&s->w.q);
    finalize_writer_stmts(s);
    sqlite3_finalize(s->r_outbox_fetch);
    sqlite3_finalize(s->r_ledger_has);
    sqlite3_finalize(s->r_stuck_get);
    if (s->rdb && s->rdb != s->db)
        sqlite3_close(s->rdb);
    sqlite3_close(s->db);
    buf_free(&s->reqh);
    buf_free(&s->resph);
    pthread_mutex_destroy(&s->rlock);
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
        prepare(s, SQ_STUCK_DELETE, &s->stuck_del, err, errlen) < 0 ||
        prepare(s, SQ_RECEIPT_PUT, &s->receipt_put, err, errlen) < 0)
        return -1;
    if (s->opt.max_rows &&
        sq_int_query(s->db, "SELECT count(*) FROM requests", &s->rows, e, sizeof e) != SQLITE_OK) {
        snprintf(err, errlen, "cannot count stored requests: %s", e);
        return -1;
    }
    /* outbox_wait compares with the newest row still waiting, so a publisher
     * starting from seq 0 is woken for the rows a previous run left. */
    if (sq_int_query(s->db, "SELECT coalesce(max(seq), 0) FROM outbox", &s->w.q.outbox_seq, e,
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
        return sq_newer_schema(v, err, errlen);
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
        return sq_not_a_store(s->db, s->path, v, "", err, errlen);
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
    s->w.base.be = &store_sqlite_backend;
    s->path = xstrdup(path);
    s->opt = *o;
    s->opt.url = NULL;
    writeq_init(&s->w.q, o, &sq_writeq_hooks, s);
    pthread_mutex_init(&s->rlock, NULL);
    buf_init(&s->reqh);
    buf_init(&s->resph);

    if ((o->read_only ? sq_open_ro(s, err, errlen) : sq_open_rw(s, err, errlen)) < 0) {
        sq_free(s);
        return NULL;
    }
    return &s->w.base;
}

static int sq_start(store *base, char *err, size_t errlen)
{
    sq_store *s = sq(base);
    if (s->opt.read_only) {
        snprintf(err, errlen, "store %s was opened read-only", s->path);
        return -1;
    }
    bool mine = false;
    if (s->opt.checkpoint_pages && !s->ckpt) {
        int pages = s->opt.checkpoint_pages > INT_MAX ? INT_MAX : (int)s->opt.checkpoint_pages;
        s->ckpt = sq_ckpt_start(s->path, s->db, pages, s->opt.busy_timeout_ms, err, errlen);
        if (!s->ckpt)
            return -1;
        mine = true;
    }
    if (writeq_start(&s->w.q, err, errlen) < 0) {
        if (mine) {
            sq_ckpt_stop(s->ckpt, s->db);
            s->ckpt = NULL;
        }
        return -1;
    }
    return 0;
}

static void sq_close(store *base)
{
    sq_store *s = sq(base);
    writeq_close(&s->w.q);
    sq_ckpt_stop(s->ckpt, s->db);
    s->ckpt = NULL;
    if (!s->opt.read_only) {
        finalize_writer_stmts(s);
        /* Fold the WAL back into the main file so a copied .db is complete. */
        sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    }
    sq_free(s);
}

const store_backend store_sqlite_backend = {
    .scheme = "sqlite",
    .open = sq_open,
    .start = sq_start,
    .submit = writeq_submit,
    .get_stats = writeq_get_stats,
    .close = sq_close,
    .query_each = sq_query_each,
    .get = sq_get,
    .ids_each = sq_ids_each,
    .outbox_fetch = sq_outbox_fetch,
    .outbox_wait = writeq_outbox_wait,
    .outbox_confirmed = writeq_outbox_confirmed,
    .ledger_has = sq_ledger_has,
    .counter = writeq_counter,
    .repl_stats_get = sq_repl_stats_get,
    .stuck_set = writeq_stuck_set,
    .stuck_clear = writeq_stuck_clear,
    .stuck_get = sq_stuck_get,
    .stuck_list = sq_stuck_list,
    .ledger_skip = sq_ledger_skip,
    .repl_lag_get = sq_repl_lag_get,
    .repl_origins_get = sq_repl_origins_get,
    .ledger_each = sq_ledger_each,
    .receipt_put = writeq_receipt_put,
    .receipts_get = sq_receipts_get,
    .ledger_get = sq_ledger_get,
    .outbox_has = sq_outbox_has,
};
