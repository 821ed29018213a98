/* pg_schema: the PostgreSQL backend's schema: its migrations (the one list
 * of what each version adds, numbered as SQLite's) and the advisory lock
 * under which restspy instances starting together migrate once.
 *
 * Types (docs/storage.md): ids are text in the C collation, the very strings
 * SQLite holds (lower-case UUIDv7 text, or whatever id an import or a peer
 * brought), so every command prints and orders them as with SQLite; times
 * are bigint microseconds since the epoch as in SQLite (the filters, the
 * retention and the replication lag compare integers, no time zone enters);
 * headers are jsonb (their JSON array of [name, value] pairs, which jsonb
 * keeps in order); bodies are bytea; flags are boolean. Text compared by
 * ranges (ids, paths) uses the C collation: byte order, as glob_match and
 * the id prefixes compare. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"

/* The advisory lock of restspy's migrations: "restspy" in ASCII. */
#define PG_MIGRATE_LOCK "31084464474616953"

/* migrations[i] takes the database from the version its `from` says to the
 * next entry's (or PG_SCHEMA_VERSION). PostgreSQL stores begin at version 7,
 * the schema SQLite reached through its versions 1 to 7: one step creates
 * it. Only ever append, one entry per later version, as for SQLite. */
static const struct {
    int64_t from;
    const char *sql;
} migrations[] = {
    {0, "CREATE TABLE restspy_schema (version integer NOT NULL);"
        "INSERT INTO restspy_schema VALUES (0);"
        /* seq: insertion order, the tie-breaker of started_at (SQLite's
         * rowid), from one sequence all writers share. */
        "CREATE TABLE requests ("
        " seq bigint GENERATED ALWAYS AS IDENTITY,"
        " id text COLLATE \"C\" PRIMARY KEY,"
        " node text,"
        " started_at bigint,"
        " duration_us bigint,"
        " upstream_us bigint,"
        " client_addr text,"
        " method text,"
        " scheme text,"
        " host text,"
        " path text COLLATE \"C\","
        " query text,"
        " req_headers jsonb,"
        " req_body bytea,"
        " req_body_size bigint,"
        " req_truncated boolean,"
        " status integer,"
        " resp_headers jsonb,"
        " resp_body bytea,"
        " resp_body_size bigint,"
        " resp_truncated boolean,"
        " rule text,"
        " origin text,"
        " error text,"
        " replication text,"
        " req_encoding text,"
        " req_body_note text,"
        " resp_encoding text,"
        " resp_body_note text);"
        "CREATE INDEX requests_started_at ON requests(started_at, seq);"
        "CREATE INDEX requests_path ON requests(path);"
        /* The replication tables, as SQLite's (store.h); counters keeps
         * last_confirmed_id in text_value (SQLite's value holds text). */
        "CREATE TABLE outbox ("
        " seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        " message_id text NOT NULL,"
        " created_at bigint NOT NULL,"
        " timestamp bigint NOT NULL,"
        " origin text NOT NULL,"
        " method text NOT NULL,"
        " target text NOT NULL,"
        " headers text NOT NULL,"
        " content_type text,"
        " signature text,"
        " routing_key text NOT NULL,"
        " body bytea NOT NULL,"
        /* The publishers' claims (pg_repl.c): who publishes the row, until
         * when, and the claim's order (the publisher's cursor). */
        " claimed_by text,"
        " claimed_until bigint NOT NULL DEFAULT 0,"
        " claim_seq bigint);"
        "CREATE SEQUENCE outbox_claim_seq;"
        "CREATE INDEX outbox_claimed_by ON outbox(claimed_by, claim_seq);"
        /* pos: the ledger position (SQLite's rowid, store_ledger_each). */
        "CREATE TABLE applied ("
        " pos bigint GENERATED ALWAYS AS IDENTITY UNIQUE,"
        " message_id text COLLATE \"C\" PRIMARY KEY,"
        " origin text,"
        " applied_at bigint NOT NULL,"
        " status integer,"
        " state text);"
        "CREATE INDEX applied_applied_at ON applied(applied_at);"
        "CREATE INDEX applied_origin ON applied(origin, state, applied_at);"
        "CREATE TABLE counters ("
        " name text PRIMARY KEY,"
        " value bigint NOT NULL DEFAULT 0,"
        " text_value text);"
        "CREATE TABLE stuck ("
        " message_id text PRIMARY KEY,"
        " origin text,"
        " method text,"
        " target text,"
        " first_failed_at bigint NOT NULL,"
        " last_failed_at bigint NOT NULL,"
        " attempts bigint NOT NULL,"
        " last_answer text);"
        "CREATE TABLE receipts ("
        " message_id text NOT NULL,"
        " node text NOT NULL,"
        " outcome text NOT NULL,"
        " status integer,"
        " at bigint NOT NULL,"
        " PRIMARY KEY (message_id, node));"
        /* The replicators' claims of the messages they are applying
         * (pg_repl.c): a row lives from the claim to the ledger row's
         * commit, or, when no ledger row comes, until retention deletes
         * it once run out (pg_retention.c). */
        "CREATE TABLE applying ("
        " message_id text PRIMARY KEY,"
        " claimed_by text NOT NULL,"
        " claimed_until bigint NOT NULL);"},
    /* 7 -> 8: the origin's answer in the outbox, as SQLite's 7 -> 8. */
    {7, "ALTER TABLE outbox ADD COLUMN origin_status text, ADD COLUMN origin_digest text;"},
    /* 8 -> 9: divergence, as SQLite's 8 -> 9. */
    {8, "ALTER TABLE outbox ADD COLUMN origin_body bytea;"
        "ALTER TABLE applied ADD COLUMN outcome text;"
        "CREATE INDEX applied_diverged ON applied(message_id) WHERE outcome <> 'same';"},
};

/* The first column of sql's one row as an integer (NULL: 0). 0, or -1. */
static int int_query(PGconn *c, const char *sql, int64_t *v)
{
    PGresult *r = PQexec(c, sql);
    int ret = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        *v = PQgetisnull(r, 0, 0) ? 0 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        ret = 0;
    }
    PQclear(r);
    return ret;
}

int pg_schema_version(PGconn *c, int64_t *v, char *err, size_t errlen)
{
    *v = 0;
    int64_t has = 0;
    /* Two queries: a statement naming a missing table fails to plan. */
    if (int_query(c, "SELECT (to_regclass('restspy_schema') IS NOT NULL)::int", &has) < 0 ||
        (has && int_query(c, "SELECT max(version) FROM restspy_schema", v) < 0)) {
        char line[256];
        snprintf(err, errlen, "cannot read the store's schema version: %s",
                 pg_errmsg(c, line, sizeof line));
        return -1;
    }
    return 0;
}

/* The migrations after version v, in the open transaction. 0 or -1. */
static int migrate_from(pg_store *s, int64_t v, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof migrations / sizeof migrations[0]; i++) {
        if (migrations[i].from < v)
            continue;
        char e[256];
        if (pg_exec(s->db, migrations[i].sql, e, sizeof e) < 0) {
            snprintf(err, errlen, "cannot migrate the store (%s) from version %lld: %s", s->where,
                     (long long)migrations[i].from, e);
            return -1;
        }
    }
    char sql[64];
    snprintf(sql, sizeof sql, "UPDATE restspy_schema SET version = %d", PG_SCHEMA_VERSION);
    return pg_exec(s->db, sql, err, errlen);
}

/* The columns the current schema has and the database lacks, as
 * "table.column, ...", or "" (an empty string_agg is NULL). */
#define PG_MISSING_COLUMNS                                                                         \
    "SELECT coalesce(string_agg(t.table_name || '.' || t.column_name, ', ' ORDER BY "              \
    "t.table_name, t.ordinal_position), '') FROM information_schema.columns t WHERE "              \
    "t.table_schema = pg_my_temp_schema()::regnamespace::text AND NOT EXISTS (SELECT 1 FROM "      \
    "information_schema.columns c WHERE c.table_schema = $1 AND c.table_name = t.table_name AND "  \
    "c.column_name = t.column_name)"

/* The reference schema in the open transaction: every migration, run into
 * the session's temporary schema. 0, or -1 with err. */
static int reference_schema(PGconn *c, char *err, size_t errlen)
{
    if (pg_exec(c, "SET LOCAL search_path = pg_temp", err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < sizeof migrations / sizeof migrations[0]; i++)
        if (pg_exec(c, migrations[i].sql, err, errlen) < 0)
            return -1;
    return 0;
}

int pg_schema_check(pg_store *s, char *err, size_t errlen)
{
    char e[256] = "", home[128] = "";
    PGresult *r = NULL;
    int ret = 0;
    /* The schema that holds the store (first in the search_path). */
    r = PQexec(s->db, "SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = "
                      "to_regclass('restspy_schema')");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        pg_errmsg(s->db, e, sizeof e);
        goto cannot;
    }
    snprintf(home, sizeof home, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    r = NULL;
    if (pg_exec(s->db, "BEGIN", e, sizeof e) < 0 || reference_schema(s->db, e, sizeof e) < 0)
        goto cannot;
    const char *v[] = {home};
    r = PQexecParams(s->db, PG_MISSING_COLUMNS, 1, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        pg_errmsg(s->db, e, sizeof e);
        goto cannot;
    }
    const char *missing = PQgetvalue(r, 0, 0);
    if (*missing) {
        snprintf(err, errlen,
                 "the store (%s) says schema version %d but lacks %s: restore them, or point "
                 "restspy at a fresh database",
                 s->where, PG_SCHEMA_VERSION, missing);
        ret = -1;
    }
    goto out;
cannot:
    fprintf(stderr, "restspy: store: cannot check the columns of the store (%s): %s\n", s->where,
            e);
out:
    PQclear(r);
    pg_exec(s->db, "ROLLBACK", NULL, 0);
    return ret;
}

int pg_migrate(pg_store *s, char *err, size_t errlen)
{
    char e[256];
    /* The lock is the transaction's: COMMIT or ROLLBACK (or a dropped
     * connection) releases it, so a crashed migration holds nobody up. */
    if (pg_exec(s->db, "BEGIN; SELECT pg_advisory_xact_lock(" PG_MIGRATE_LOCK ")", e, sizeof e) <
        0) {
        snprintf(err, errlen, "cannot migrate the store (%s): %s", s->where, e);
        return -1;
    }
    int64_t v;
    int ret = pg_schema_version(s->db, &v, err, errlen);
    if (ret == 0 && v > PG_SCHEMA_VERSION) {
        snprintf(err, errlen,
                 "the store (%s) has schema version %lld, newer than this restspy's (%d): "
                 "upgrade restspy",
                 s->where, (long long)v, PG_SCHEMA_VERSION);
        ret = -1;
    }
    if (ret == 0 && v < PG_SCHEMA_VERSION)
        ret = migrate_from(s, v, err, errlen);
    if (ret == 0 && pg_exec(s->db, "COMMIT", e, sizeof e) < 0) {
        snprintf(err, errlen, "cannot migrate the store (%s): %s", s->where, e);
        ret = -1;
    }
    if (ret < 0)
        pg_exec(s->db, "ROLLBACK", NULL, 0);
    return ret;
}
