/* sqlite_schema: the SQLite backend's schema: its migrations (the one list
 * of what each version adds), opening a file another process is creating,
 * and recognizing a file that is not a restspy store. */
#include <stdio.h>
#include <string.h>

#include "base/util.h"
#include "store/sqlite_internal.h"
#include "store/store_sqlite.h"

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
    /* 4 -> 5: the ledger by origin node (store_repl_origins_get): its
     * applies counted per origin from the index alone, and each origin's
     * newest apply found by one search. */
    "CREATE INDEX applied_origin ON applied(origin, state, applied_at);",
    /* 5 -> 6: apply receipts (store.h): at a write's origin, what each
     * peer reported it did with the write. */
    "CREATE TABLE receipts ("
    " message_id TEXT NOT NULL,"
    " node TEXT NOT NULL,"
    " outcome TEXT NOT NULL,"
    " status INTEGER,"
    " at INTEGER NOT NULL,"
    " PRIMARY KEY (message_id, node)) WITHOUT ROWID;",
    /* 6 -> 7: indexes for a store of ten million rows (issue 14; figures
     * in docs/storage.md). A row's cost is set by how many b-tree pages each
     * batch dirties: the table (by rowid), the id's unique index (UUIDv7
     * text grows with time) and started_at all take their inserts at their
     * right edge, a few pages per batch; an index on path takes them all
     * over its b-tree, one page per row once it outgrows the cache. So
     * requests keeps exactly one such index, on path alone: the path globs
     * (`--path` with a literal prefix, a range on their literal prefix) and a
     * method+path filter (the method checked on the range's rows) use it.
     * (method, path) served no query (globs need path first; the method
     * compares NOCASE) and status only misled the planner away from
     * started_at for "5xx in the last hour": both go. The table itself is
     * not rebuilt: its rowid already grows with each insert, so the rows
     * append at the right edge (docs/storage.md: why not a key derived from
     * the UUIDv7); the migration's cost is building requests_path, about
     * four seconds per million rows on the developers' machine. */
    "DROP INDEX IF EXISTS requests_method_path;"
    "DROP INDEX IF EXISTS requests_status;"
    "CREATE INDEX IF NOT EXISTS requests_path ON requests(path);",
    /* 7 -> 8: the origin's answer a replicated write carries (issue 16,
     * docs/protocol.md version 2): kept with the message in the outbox, so
     * that what goes out after a restart is what was signed. NULL in the
     * rows of older versions, which go out as version-1 messages. */
    ("ALTER TABLE outbox ADD COLUMN origin_status TEXT;"
     "ALTER TABLE outbox ADD COLUMN origin_digest TEXT;"),
    /* 8 -> 9: divergence (issue 16). outbox.origin_body: the origin's
     * stored response body a version-2 message may carry (NULL: none).
     * applied.outcome: how the answer here compared with the origin's
     * ("same", "diverged: ..."; NULL before this version and for version-1
     * messages). The partial index holds only the rare diverged rows, so
     * listing them reads no other ledger row. */
    ("ALTER TABLE outbox ADD COLUMN origin_body BLOB;"
     "ALTER TABLE applied ADD COLUMN outcome TEXT;"
     "CREATE INDEX applied_diverged ON applied(message_id) WHERE outcome <> 'same';"),
};

_Static_assert(sizeof migrations / sizeof migrations[0] == STORE_SQLITE_SCHEMA_VERSION,
               "STORE_SQLITE_SCHEMA_VERSION must equal the number of migrations");

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
    util_sleep_ms(*nap_ms);
    *nap_ms = *nap_ms >= 32 ? 32 : *nap_ms * 2;
    return true;
}

/* Puts the file in WAL mode (a no-op when it is already). SQLITE_OK, or
 * SQLite's code with err after the deadline or on any other error. A file
 * system without the shared memory WAL needs keeps its mode (SQLite answers
 * the old one): the store still works there, only readers wait for the
 * writer. */
int sq_set_wal(sqlite3 *db, int64_t deadline_us, char *err, size_t errlen)
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
int64_t sq_describe(sqlite3 *db, buf *what, char *err, size_t errlen)
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
int sq_has_requests(sqlite3 *db, char *err, size_t errlen)
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
int sq_not_a_store(sqlite3 *db, const char *path, int64_t v, const char *hint, char *err,
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
        return sq_not_a_store(db, path, v, "", err, errlen);
    }
    buf what = BUF_INIT;
    int64_t n = sq_describe(db, &what, err, errlen);
    buf_free(&what);
    if (n <= 0 || init_foreign)
        return n < 0 ? -1 : 0;
    return sq_not_a_store(db, path, 0,
                          "; restspy adds its tables to a database that holds others only when "
                          "asked (store_init = on, --store-init)",
                          err, errlen);
}

/* ---- schema ---- */

int sq_newer_schema(int64_t v, char *err, size_t errlen)
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
int sq_migrate(sqlite3 *db, const char *path, bool init_foreign, int64_t deadline_us, char *err,
               size_t errlen)
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
        sq_newer_schema(v, err, errlen);
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
