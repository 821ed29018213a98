/* Unit tests for store (SQLite backend): round trip, group commit, full-queue
 * policies, retention, migrations, lookups and queries; replication: the v1 ->
 * v2 migration, outbox rows, done callbacks, confirms, the ledger, counters,
 * outbox_wait and two writers on one file; ids named by a prefix or a suffix
 * and the short ids of lists; four processes creating one new
 * file at once under CPU load; someone else's SQLite file refused or, when
 * asked, given restspy's tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/glob.h"
#include "capture/record.h"
#include "formats/repl_msg.h"
#include "store/store.h"
#include "store/store_pg.h"
#include "store/store_sqlite.h"
#include "store/writeq.h"
#include "pg_testnode.h"
#include "testutil.h"
#include "base/util.h"

/* ---- fixtures ---- */

/* A private directory with the database; the tests use f->path and f->url. */
typedef testutil_tmpdb fx;

static int fx_setup(void **state)
{
    fx *f = xcalloc(1, sizeof *f);
    if (testutil_tmpdb_make(f, "store") != 0)
        return -1;
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    testutil_tmpdb_remove(f);
    free(f);
    return 0;
}

static store_options opts(const fx *f)
{
    store_options o = {0};
    o.url = f->url;
    o.queue_max = 10000;
    o.batch_max = 100;
    o.drop_when_full = false;
    o.busy_timeout_ms = 1000;
    return o;
}

static store *open_started(const store_options *o)
{
    char err[256] = "";
    store *s = store_open(o, err, sizeof err);
    if (!s)
        fail_msg("store_open: %s", err);
    assert_int_equal(store_start(s, err, sizeof err), 0);
    return s;
}

static store *open_ro(const fx *f)
{
    store_options o = opts(f);
    o.read_only = true;
    char err[256] = "";
    store *s = store_open(&o, err, sizeof err);
    if (!s)
        fail_msg("store_open read-only: %s", err);
    return s;
}

static record *mkrec(int i, int64_t started)
{
    record *r = record_new();
    char tmp[64];
    r->node = xstrdup("node-a");
    r->started_at_us = started;
    r->duration_us = 1000 + i;
    r->upstream_us = 500 + i;
    r->client_addr = xstrdup("127.0.0.1:5000");
    r->method = xstrdup(i % 2 ? "POST" : "GET");
    r->scheme = xstrdup("http");
    r->host = xstrdup("example.test");
    snprintf(tmp, sizeof tmp, "/api/items/%d", i);
    r->path = xstrdup(tmp);
    r->status = 200;
    r->rule = xstrdup("default");
    return r;
}

static record *mkrec_i(int i)
{
    return mkrec(i, i);
}

/* Submits make(0..9) to s: how many it took (the others were refused). */
static int submit_ten_of(store *s, record *(*make)(int))
{
    int ok = 0;
    for (int i = 0; i < 10; i++)
        ok += store_submit(s, make(i)) == 0;
    return ok;
}

/* Submits r as a request row with a callback (store_submit_unit). */
static int submit_cb(store *s, record *r, store_done_fn done, void *ud)
{
    return store_submit_unit(s, &(store_unit){.rec = r, .rec_row = true}, done, ud);
}

/* Submits r as a request row with the outbox message m (taken; may be
 * NULL) and a ledger row for applied_id (copied; may be NULL) in its
 * transaction. */
static int submit_with(store *s, record *r, repl_msg *m, const char *applied_id)
{
    store_unit u = {.rec = r,
                    .rec_row = true,
                    .outbox = m,
                    .applied_id = applied_id ? xstrdup(applied_id) : NULL};
    return store_submit_unit(s, &u, NULL, NULL);
}

/* Polls the writer's counters until pred holds (or fails after 10 s). */
static void wait_stats(store *s, bool (*pred)(const store_stats *, uint64_t), uint64_t arg)
{
    store_stats st;
    for (int i = 0; i < 2000; i++) {
        store_get_stats(s, &st);
        if (pred(&st, arg))
            return;
        usleep(5000);
    }
    fail_msg("timed out: written=%llu pruned=%llu errors=%llu blocked=%llu",
             (unsigned long long)st.written, (unsigned long long)st.pruned,
             (unsigned long long)st.errors, (unsigned long long)st.blocked);
}

static bool written_ge(const store_stats *st, uint64_t n)
{
    return st->written >= n;
}

static bool pruned_ge(const store_stats *st, uint64_t n)
{
    return st->pruned >= n;
}

static bool errors_ge(const store_stats *st, uint64_t n)
{
    return st->errors >= n;
}

static bool blocked_ge(const store_stats *st, uint64_t n)
{
    return st->blocked >= n;
}

/* The PostgreSQL server of the second group (pg_group_setup). */
static pg_testnode pg;

/* A fresh database on pg for each test of the PostgreSQL group: f->url and
 * f->path both hold its URL, so that the tests' checks (sql_int) run there. */
static int fx_pg_setup(void **state)
{
    fx *f = xcalloc(1, sizeof *f);
    *state = f;
    if (!pg.available)
        return 0; /* the test itself fails (CI) or skips: PG_TESTNODE_NEED */
    if (pg_testnode_fresh_db(&pg, f->url, sizeof f->url) != 0)
        return -1;
    snprintf(f->path, sizeof f->path, "%.120s", f->url);
    return 0;
}

static int fx_pg_teardown(void **state)
{
    free(*state);
    return 0;
}

static int pg_group_setup(void **state)
{
    (void)state;
    return pg_testnode_start(&pg);
}

static int pg_group_teardown(void **state)
{
    (void)state;
    pg_testnode_stop(&pg);
    return 0;
}

/* The first column of sql's first row: on a PostgreSQL fixture (path is its
 * URL) through libpq. */
static int64_t pg_sql_int(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("%s: %s", url, PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    int64_t v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return v;
}

static bool is_pg(const char *path);

static int64_t sql_int(const char *path, const char *sql)
{
    if (is_pg(path))
        return pg_sql_int(path, sql);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Whether the fixture's store is PostgreSQL (path is its URL). */
static bool is_pg(const char *path)
{
    return strncmp(path, "postgresql://", 13) == 0;
}

/* sql on a PostgreSQL fixture, no rows expected. */
static void pg_sql_exec(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("%s: %s", url, PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

static void sql_exec(const char *path, const char *sql)
{
    if (is_pg(path)) {
        pg_sql_exec(path, sql);
        return;
    }
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

typedef struct collect {
    int n;
    char ids[64][UUID7_STR_LEN + 1];
    int64_t started[64];
    int stop_after; /* 0 = never */
} collect;

static int collect_fn(const record *r, void *ud)
{
    collect *c = ud;
    if (c->n < 64) {
        memcpy(c->ids[c->n], r->id, sizeof c->ids[0]);
        c->started[c->n] = r->started_at_us;
    }
    c->n++;
    return c->stop_after && c->n >= c->stop_after;
}

static int run_query(store *s, const store_query *q, collect *c)
{
    char err[256] = "";
    memset(c->ids, 0, sizeof c->ids);
    c->n = 0;
    int rc = store_query_each(s, q, collect_fn, c, err, sizeof err);
    if (rc)
        fail_msg("query: %s", err);
    return c->n;
}

/* ---- tests ---- */

/* Record a (every field set, binary bodies, repeated headers) and b
 * (optional fields empty) with fresh ids: test_roundtrip's. */
/* rich_a's request body: NULs and bytes that are not UTF-8. */
static const char rich_bin[] = {'\x00', '\xff', '\x01', 'a', '\x00', '\x80'};

static record *rich_a(void)
{
    record *a = mkrec(1, 1700000000000001);
    a->query = xstrdup("x=1&y=%20");
    http_headers_add(&a->req_headers, "Host", 4, "example.test", 12);
    http_headers_add(&a->req_headers, "X-Dup", 5, "1", 1);
    http_headers_add(&a->req_headers, "X-Dup", 5, "2 \"quoted\"", 10);
    buf_append(&a->req_body, rich_bin, sizeof rich_bin);
    a->req_body_size = 1000;
    a->req_truncated = true;
    a->status = 201;
    http_headers_add(&a->resp_headers, "Content-Type", 12, "application/json", 16);
    buf_append_str(&a->resp_body, "{\"ok\":true}");
    a->resp_body_size = 11;
    return a;
}

static record *rich_b(void)
{
    record *b = record_new();
    b->started_at_us = 1700000000000002;
    b->method = xstrdup("GET");
    b->path = xstrdup("/");
    b->upstream_us = -1;
    b->error = xstrdup("upstream timeout");
    b->resp_encoding = xstrdup("gzip");
    b->resp_body_note = xstrdup("dropped: gzip: x");
    free(b->origin);
    b->origin = xstrdup("replicated");
    return b;
}

static void test_roundtrip(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    store *s = open_started(&o);

    record *a = rich_a();
    char ida[UUID7_STR_LEN + 1];
    memcpy(ida, a->id, sizeof ida);

    /* b: every optional field empty. */
    record *b = rich_b();
    char idb[UUID7_STR_LEN + 1];
    memcpy(idb, b->id, sizeof idb);

    assert_int_equal(store_submit(s, a), 0);
    assert_int_equal(store_submit(s, b), 0);
    store_close(s);

    /* The schema as promised. */
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), STORE_SQLITE_SCHEMA_VERSION);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM pragma_table_info('requests') WHERE "
                                      "name IN ('id','node','started_at','duration_us',"
                                      "'upstream_us','client_addr','method','scheme','host',"
                                      "'path','query','req_headers','req_body','req_body_size',"
                                      "'req_truncated','status','resp_headers','resp_body',"
                                      "'resp_body_size','resp_truncated','rule','origin','error',"
                                      "'replication','req_encoding','req_body_note',"
                                      "'resp_encoding','resp_body_note')"),
                     28);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM pragma_table_info('requests')"), 28);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests WHERE resp_encoding = 'gzip' "
                                      "AND resp_body_note = 'dropped: gzip: x' AND req_encoding "
                                      "IS NULL AND req_body_note IS NULL"),
                     1);
    /* Version 7's indexes: started_at and path (docs/storage.md). */
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM pragma_index_list('requests') "
                                      "WHERE origin = 'c' AND name IN ('requests_started_at', "
                                      "'requests_path')"),
                     2);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM pragma_index_list('requests') "
                                      "WHERE origin = 'c'"),
                     2);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests WHERE typeof(req_body) = "
                                      "'blob' AND typeof(resp_body) = 'blob'"),
                     2);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests WHERE query IS NULL AND "
                                      "host IS NULL AND node IS NULL AND upstream_us = -1"),
                     1);
    assert_int_equal(sql_int(f->path, "SELECT length(req_body) FROM requests WHERE status = 0"), 0);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests WHERE req_headers = "
                                      "'[[\"Host\",\"example.test\"],[\"X-Dup\",\"1\"],[\"X-Dup\","
                                      "\"2 \\\"quoted\\\"\"]]'"),
                     1);

    s = open_ro(f);
    record *r = NULL;
    char err[256];
    assert_int_equal(store_get(s, ida, &r, err, sizeof err), 1);
    assert_string_equal(r->id, ida);
    assert_string_equal(r->node, "node-a");
    assert_int_equal(r->started_at_us, 1700000000000001);
    assert_int_equal(r->duration_us, 1001);
    assert_int_equal(r->upstream_us, 501);
    assert_string_equal(r->client_addr, "127.0.0.1:5000");
    assert_string_equal(r->method, "POST");
    assert_string_equal(r->scheme, "http");
    assert_string_equal(r->host, "example.test");
    assert_string_equal(r->path, "/api/items/1");
    assert_string_equal(r->query, "x=1&y=%20");
    assert_int_equal(r->req_headers.len, 3);
    assert_string_equal(r->req_headers.v[2].name, "X-Dup");
    assert_string_equal(r->req_headers.v[2].value, "2 \"quoted\"");
    assert_int_equal(r->req_body.len, sizeof rich_bin);
    assert_memory_equal(r->req_body.data, rich_bin, sizeof rich_bin);
    assert_int_equal(r->req_body_size, 1000);
    assert_true(r->req_truncated);
    assert_int_equal(r->status, 201);
    assert_string_equal(http_headers_get(&r->resp_headers, "content-type"), "application/json");
    assert_int_equal(r->resp_body.len, 11);
    assert_memory_equal(r->resp_body.data, "{\"ok\":true}", 11);
    assert_int_equal(r->resp_body_size, 11);
    assert_false(r->resp_truncated);
    assert_string_equal(r->rule, "default");
    assert_string_equal(r->origin, "local");
    assert_null(r->error);
    assert_null(r->resp_encoding);
    assert_null(r->req_body_note);
    record_free(r);

    assert_int_equal(store_get(s, idb, &r, err, sizeof err), 1);
    assert_string_equal(r->resp_encoding, "gzip");
    assert_string_equal(r->resp_body_note, "dropped: gzip: x");
    assert_null(r->node);
    assert_null(r->query);
    assert_null(r->host);
    assert_int_equal(r->upstream_us, -1);
    assert_int_equal(r->req_body.len, 0);
    assert_int_equal(r->req_headers.len, 0);
    assert_int_equal(r->status, 0);
    assert_string_equal(r->error, "upstream timeout");
    assert_string_equal(r->origin, "replicated");
    record_free(r);

    /* A read-only store refuses to write. */
    assert_int_equal(store_start(s, err, sizeof err), -1);
    assert_int_equal(store_submit(s, record_new()), -1);
    store_close(s);
}

#define NTHREADS 4
#define PER_THREAD 500

static void *submit_many(void *arg)
{
    store *s = arg;
    intptr_t bad = 0;
    for (int i = 0; i < PER_THREAD; i++)
        if (store_submit(s, mkrec(i, util_now_us())) != 0)
            bad++;
    return (void *)bad;
}

static void test_threads(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    o.queue_max = 64; /* small: the writer and submitters really interleave */
    store *s = open_started(&o);
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        pthread_create(&t[i], NULL, submit_many, s);
    for (int i = 0; i < NTHREADS; i++) {
        void *bad;
        pthread_join(t[i], &bad);
        assert_int_equal((intptr_t)bad, 0);
    }
    wait_stats(s, written_ge, NTHREADS * PER_THREAD);

    /* The live store answers queries through its own read connection. */
    store_query q = {0};
    collect c = {0};
    assert_int_equal(run_query(s, &q, &c), NTHREADS * PER_THREAD);

    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.submitted, NTHREADS * PER_THREAD);
    assert_int_equal(st.written, NTHREADS * PER_THREAD);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.queued, 0);
    /* every committed unit's latency is counted, and every batch's commit */
    assert_int_equal(st.latency.count, NTHREADS * PER_THREAD);
    assert_int_equal(st.commit_time.count, st.batches);
    assert_true(st.latency.sum_s > 0);
    store_close(s);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), NTHREADS * PER_THREAD);
    assert_int_equal(sql_int(f->path, "SELECT count(DISTINCT id) FROM requests"),
                     NTHREADS * PER_THREAD);
}

static void test_group_commit(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    o.batch_max = 100;
    store *s = open_started(&o);
    writeq_pause(s, true);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(store_submit(s, mkrec(i, i)), 0);
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.queued, 1000);
    assert_int_equal(st.written, 0);
    writeq_pause(s, false);
    wait_stats(s, written_ge, 1000);
    store_get_stats(s, &st);
    /* Everything was queued at once: full batches of batch_max. */
    assert_int_equal(st.batches, 10);
    assert_int_equal(st.written, 1000);
    assert_int_equal(st.errors, 0);
    store_close(s);
}

/* The group commit window: records that trickle in one at a time, each a
 * little after the previous, still share one transaction. */
static void test_commit_delay(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    o.batch_max = 100;
    o.commit_delay_us = 300 * 1000; /* generous: the test machine is shared */
    store *s = open_started(&o);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(store_submit(s, mkrec(i, i)), 0);
        testutil_sleep_ms(2);
    }
    wait_stats(s, written_ge, 10);
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.written, 10);
    assert_true(st.batches <= 2); /* without the window: about one per record */
    store_close(s);

    /* And with no window, the same trickle commits record by record. */
    o.commit_delay_us = 0;
    s = open_started(&o);
    for (int i = 10; i < 20; i++) {
        assert_int_equal(store_submit(s, mkrec(i, i)), 0);
        testutil_sleep_ms(20);
    }
    wait_stats(s, written_ge, 10);
    store_get_stats(s, &st);
    assert_true(st.batches >= 5);
    store_close(s);
}

static void test_drop_policy(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    o.queue_max = 4;
    o.drop_when_full = true;
    store *s = open_started(&o);
    writeq_pause(s, true);
    assert_int_equal(submit_ten_of(s, mkrec_i), 4);
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.submitted, 4);
    assert_int_equal(st.dropped, 6);
    assert_int_equal(st.blocked, 0);
    writeq_pause(s, false);
    store_close(s);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 4);
}

/* A record of mkrec with a 3000-byte answer body. */
static record *mkrec_body(int i)
{
    record *r = mkrec(i, i);
    char body[3000];
    memset(body, 'x', sizeof body);
    buf_append(&r->resp_body, body, sizeof body);
    r->resp_body_size = sizeof body;
    return r;
}

/* Waits (10 s at most) until s has committed n records. */
static void wait_written(store *s, uint64_t n)
{
    store_stats st;
    for (int i = 0; i < 2000; i++) {
        store_get_stats(s, &st);
        if (st.written >= n)
            return;
        testutil_sleep_ms(5);
    }
    fail_msg("%llu of %llu records written", (unsigned long long)st.written, (unsigned long long)n);
}

/* store_options.ledger_max_age_ms: the writer deletes ledger rows (applied
 * or skipped writes) and apply receipts older than it, in chunks, with no
 * traffic needed; newer ones stay; requests are not touched and not counted
 * as pruned. 0 keeps them all. */
static void test_ledger_retention(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    store *s = open_started(&o);
    assert_int_equal(store_submit(s, mkrec(1, util_now_us() - 3600 * 1000000LL)), 0);
    store_close(s);
    int64_t now = util_now_us();
    static const unsigned char seed[10] = {1, 2, 3};
    char old_id[UUID7_STR_LEN + 1], new_id[UUID7_STR_LEN + 1];
    uuid7_derive(now / 1000 - 60000, seed, old_id);
    uuid7_generate(new_id);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "INSERT INTO applied (message_id, origin, applied_at, status) VALUES"
             " ('%s', 'b', %lld, 201), ('%s', 'b', %lld, 201);"
             "INSERT INTO applied (message_id, origin, applied_at, state) VALUES"
             " ('skipped-old', 'b', %lld, 'skipped');"
             "INSERT INTO receipts (message_id, node, outcome, status, at) VALUES"
             " ('%s', 'b', 'applied', 201, %lld), ('%s', 'b', 'applied', 201, %lld);",
             old_id, (long long)(now - 60 * 1000000LL), new_id, (long long)now,
             (long long)(now - 60 * 1000000LL), old_id, (long long)(now - 60 * 1000000LL), new_id,
             (long long)now);
    sql_exec(f->path, sql);

    o.ledger_max_age_ms = 0; /* kept for ever */
    s = open_started(&o);
    testutil_sleep_ms(300);
    store_close(s);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM applied"), 3);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM receipts"), 2);

    o.ledger_max_age_ms = 30000;
    s = open_started(&o);
    for (int i = 0; i < 500 && (sql_int(f->path, "SELECT count(*) FROM applied") != 1 ||
                                sql_int(f->path, "SELECT count(*) FROM receipts") != 1);
         i++)
        testutil_sleep_ms(10);
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.pruned, 0);
    store_close(s);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM applied WHERE message_id = '%s'", new_id);
    assert_int_equal(sql_int(f->path, sql), 1);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM receipts WHERE message_id = '%s'", new_id);
    assert_int_equal(sql_int(f->path, sql), 1);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM applied"), 1);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM receipts"), 1);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 1);
}

/* store_options.checkpoint_pages: a background thread copies the WAL into
 * the file each time it holds that many pages and restarts it, so the WAL
 * file stays about one burst long however much is written, and every row is
 * in the file; 0 runs no such thread (SQLite's own checkpoints). */
static void test_background_checkpoints(void **state)
{
    fx *f = *state;
    enum { ROUNDS = 8, PER_ROUND = 200 };
    store_options o = opts(f);
    o.checkpoint_pages = 32;
    store *s = open_started(&o);
    uint64_t runs = 0, busy = 0, before = 0;
    assert_true(store_sqlite_test_checkpoints(s, &runs, &busy));
    char wal[4096];
    snprintf(wal, sizeof wal, "%s-wal", f->path);
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < PER_ROUND; i++)
            assert_int_equal(store_submit(s, mkrec_body(round * PER_ROUND + i)), 0);
        wait_written(s, (uint64_t)(round + 1) * PER_ROUND);
        /* The writer is idle: the checkpoint it asked for completes. */
        for (int i = 0; i < 2000 && runs == before; i++) {
            testutil_sleep_ms(5);
            store_sqlite_test_checkpoints(s, &runs, &busy);
        }
        assert_true(runs > before);
        before = runs;
    }
    /* 1,600 rows of 3 KB: about 1,600 pages of answers alone went through
     * the WAL; restarted after each round, it never held two rounds. */
    struct stat sb;
    assert_int_equal(stat(wal, &sb), 0);
    assert_true(sb.st_size < 2 * PER_ROUND * 4096 + 64 * 4096);
    store_close(s);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), ROUNDS * PER_ROUND);

    o.checkpoint_pages = 0;
    s = open_started(&o);
    assert_false(store_sqlite_test_checkpoints(s, &runs, &busy));
    store_close(s);
}

/* store_queue_bytes: a queued record counts all the memory it holds
 * (record_mem: itself, its strings, header blocks and buffers by capacity,
 * not only its bodies); past the bound the policy applies as for a full
 * queue, and one record always fits however large. */
static void test_drop_policy_bytes(void **state)
{
    fx *f = *state;
    record *probe = mkrec_body(99);
    record_cache_headers_json(probe); /* as the store does before queueing */
    size_t each = record_mem(probe);
    record_free(probe);
    assert_true(each > 3000 + sizeof(record)); /* the body and the struct, at least */
    store_options o = opts(f);
    o.queue_max = 100;
    o.queue_max_bytes = 4 * each + each / 2;
    o.drop_when_full = true;
    store *s = open_started(&o);
    writeq_pause(s, true);
    assert_int_equal(submit_ten_of(s, mkrec_body), 4);
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.queued_bytes, 4 * each);
    assert_int_equal(st.dropped, 6);
    writeq_pause(s, false);
    store_close(s);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 4);

    /* One record larger than the bound still goes in, alone. */
    o.queue_max_bytes = 100;
    s = open_started(&o);
    writeq_pause(s, true);
    record *big = mkrec(20, 20);
    char body[500];
    memset(body, 'y', sizeof body);
    buf_append(&big->resp_body, body, sizeof body);
    big->resp_body_size = sizeof body;
    assert_int_equal(store_submit(s, big), 0);
    assert_int_not_equal(store_submit(s, mkrec(21, 21)), 0);
    writeq_pause(s, false);
    store_close(s);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 5);
}

static void *submit_ten(void *arg)
{
    return (void *)(intptr_t)(10 - submit_ten_of(arg, mkrec_i));
}

static void test_block_policy(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    o.queue_max = 2;
    o.batch_max = 1;
    store *s = open_started(&o);
    writeq_pause(s, true);
    pthread_t t;
    pthread_create(&t, NULL, submit_ten, s);
    wait_stats(s, blocked_ge, 1);
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.submitted, 2); /* the third one waits for room */
    assert_int_equal(st.dropped, 0);
    writeq_pause(s, false);
    void *bad;
    pthread_join(t, &bad);
    assert_int_equal((intptr_t)bad, 0);
    wait_stats(s, written_ge, 10);
    store_get_stats(s, &st);
    assert_int_equal(st.dropped, 0);
    assert_true(st.blocked >= 1);
    store_close(s);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 10);
}

static void test_retention_rows(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    o.batch_max = 3;
    o.max_rows = 10;
    store *s = open_started(&o);
    for (int i = 0; i < 25; i++)
        assert_int_equal(store_submit(s, mkrec(i, 1000 + i)), 0);
    wait_stats(s, written_ge, 25);
    wait_stats(s, pruned_ge, 15);
    store_close(s);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 10);
    assert_int_equal(sql_int(f->path, "SELECT min(started_at) FROM requests"), 1015);

    /* A table far over the limit is cut down in chunks, without new traffic. */
    sql_exec(f->path,
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < "
             "2500) INSERT INTO requests (id, started_at) SELECT 'bulk-' || i, i - 3000 FROM n");
    o.max_rows = 100;
    s = open_started(&o);
    wait_stats(s, pruned_ge, 2410);
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.pruned, 2410);
    store_close(s);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 100);
    /* The oldest went first: the 10 rows from before are newest. */
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests WHERE started_at >= 1015"),
                     10);
}

static void test_retention_age(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    o.max_age_ms = 3600 * 1000;
    store *s = open_started(&o);
    int64_t now = util_now_us();
    for (int i = 0; i < 10; i++)
        assert_int_equal(store_submit(s, mkrec(i, i < 4 ? now - 7200LL * 1000000 : now - i * 1000)),
                         0);
    wait_stats(s, written_ge, 10);
    store_close(s); /* close applies due retention before returning */
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 6);

    /* An already-old table is pruned right after start, with no traffic. */
    sql_exec(f->path, "UPDATE requests SET started_at = 5");
    s = open_started(&o);
    wait_stats(s, pruned_ge, 6);
    store_close(s);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 0);
}

static void test_retry_when_locked(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    o.busy_timeout_ms = 0;
    store *s = open_started(&o);
    sqlite3 *other;
    assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(store_submit(s, mkrec(1, 1)), 0);
    wait_stats(s, errors_ge, 2); /* failed, backed off, failed again */
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.written, 0);
    assert_int_equal(st.queued, 1);
    assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    wait_stats(s, written_ge, 1);
    store_get_stats(s, &st);
    assert_int_equal(st.dropped, 0);
    store_close(s);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 1);
}

static void test_duplicate_id_kept_once(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    store *s = open_started(&o);
    record *a = mkrec(1, 1), *b = mkrec(2, 2);
    memcpy(b->id, a->id, sizeof b->id);
    assert_int_equal(store_submit(s, a), 0);
    assert_int_equal(store_submit(s, b), 0);
    wait_stats(s, written_ge, 2);
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.dropped, 0);
    store_close(s);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 1);
}

static void test_close_without_start_drains(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    char err[256];
    store *s = store_open(&o, err, sizeof err);
    assert_non_null(s);
    for (int i = 0; i < 5; i++)
        assert_int_equal(store_submit(s, mkrec(i, i)), 0);
    store_close(s);
    store_close(NULL);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 5);
}

static void test_open_errors_and_migration(void **state)
{
    fx *f = *state;
    char err[256];
    store_options o = opts(f);

    o.read_only = true;
    assert_null(store_open(&o, err, sizeof err));
    char want[256];
    snprintf(want, sizeof want, "no store at %s", f->path);
    assert_string_equal(err, want);

    /* An empty file is migrated from version 0. */
    FILE *fp = fopen(f->path, "w");
    fclose(fp);
    assert_null(store_open(&o, err, sizeof err)); /* a reader does not migrate */
    assert_non_null(strstr(err, "no store at"));
    o.read_only = false;
    store *s = store_open(&o, err, sizeof err);
    assert_non_null(s);
    store_close(s);
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), STORE_SQLITE_SCHEMA_VERSION);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 0);
    s = store_open(&o, err, sizeof err); /* reopening is a no-op migration */
    assert_non_null(s);
    store_close(s);
    s = open_ro(f);
    store_close(s);

    sql_exec(f->path, "PRAGMA user_version = 70");
    char newer[128];
    snprintf(newer, sizeof newer, "store schema version 70 is newer than this restspy (%d)",
             STORE_SQLITE_SCHEMA_VERSION);
    assert_null(store_open(&o, err, sizeof err));
    assert_string_equal(err, newer);
    o.read_only = true;
    assert_null(store_open(&o, err, sizeof err));
    assert_string_equal(err, newer);
    o.read_only = false;

    /* Not a database at all. */
    fp = fopen(f->path, "w");
    fputs("this is not an sqlite file, just text that is long enough to have a header......", fp);
    fclose(fp);
    assert_null(store_open(&o, err, sizeof err));
    assert_non_null(strstr(err, f->path));

    o.url = "mysql://x";
    assert_null(store_open(&o, err, sizeof err));
    assert_string_equal(err, "unsupported store URL 'mysql://x' (expected sqlite:PATH or "
                             "postgresql://[user@]host[:port]/db)");
    o.url = "sqlite:";
    assert_null(store_open(&o, err, sizeof err));
    assert_non_null(strstr(err, "unsupported store URL"));
    o.url = "restspy.db";
    assert_null(store_open(&o, err, sizeof err));
    assert_non_null(strstr(err, "unsupported store URL"));
    o.url = "off";
    assert_null(store_open(&o, err, sizeof err));
    assert_non_null(strstr(err, "off"));
    o.url = NULL;
    assert_null(store_open(&o, err, sizeof err));
}

/* ---- someone else's SQLite file (issue 9, item 12) ---- */

/* store_open's error for f's file opened with o, which must fail. */
static const char *open_error(const store_options *o, char *err, size_t errlen)
{
    store *s = store_open(o, err, errlen);
    if (s) {
        store_close(s);
        fail_msg("store_open succeeded on %s", o->url);
    }
    return err;
}

static void test_foreign_file(void **state)
{
    fx *f = *state;
    char err[512], want[512];
    store_options o = opts(f);
    sql_exec(f->path, "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);"
                      "CREATE TABLE orders (id INTEGER);"
                      "INSERT INTO users (name) VALUES ('ann');"
                      "CREATE VIEW names AS SELECT name FROM users;");

    /* A reader says what the file holds. */
    o.read_only = true;
    snprintf(want, sizeof want,
             "%s is not a restspy store: it holds tables orders, users; view names", f->path);
    assert_string_equal(open_error(&o, err, sizeof err), want);

    /* A writer refuses to add its tables unless asked, and leaves the file
     * as it was. */
    o.read_only = false;
    snprintf(want, sizeof want,
             "%s is not a restspy store: it holds tables orders, users; view names; restspy "
             "adds its tables to a database that holds others only when asked (store_init = "
             "on, --store-init)",
             f->path);
    assert_string_equal(open_error(&o, err, sizeof err), want);
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), 0);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name = 'requests'"),
                     0);

    /* Asked: the tables are added beside the user's, which are untouched. */
    o.init_foreign = true;
    store *s = open_started(&o);
    assert_int_equal(store_submit(s, mkrec(1, 1)), 0);
    store_close(s);
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), STORE_SQLITE_SCHEMA_VERSION);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 1);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM users WHERE name = 'ann'"), 1);
    /* From now on it is a store, for readers and writers alike. */
    o.init_foreign = false;
    s = open_started(&o);
    store_close(s);
    s = open_ro(f);
    store_close(s);
}

static void test_foreign_file_clash_and_version(void **state)
{
    fx *f = *state;
    char err[512], want[512];
    store_options o = opts(f);
    o.init_foreign = true;

    /* A name restspy needs is taken: nothing is added, not even the
     * tables of the steps before the clash. */
    sql_exec(f->path, "CREATE TABLE outbox (x INTEGER);");
    assert_non_null(strstr(open_error(&o, err, sizeof err), "table outbox already exists"));
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), 0);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name = 'requests'"),
                     0);

    /* A file another program versions (user_version set, no requests
     * table) is not a store, whatever store_init says. */
    sql_exec(f->path, "PRAGMA user_version = 2; CREATE TABLE a (x); DROP TABLE outbox;");
    snprintf(want, sizeof want, "%s is not a restspy store: it holds table a (user_version 2)",
             f->path);
    assert_string_equal(open_error(&o, err, sizeof err), want);
    o.read_only = true;
    assert_string_equal(open_error(&o, err, sizeof err), want);

    /* More names than are listed are counted. */
    for (int i = 0; i < 10; i++) {
        char sql[64];
        snprintf(sql, sizeof sql, "CREATE TABLE t%d (x);", i);
        sql_exec(f->path, sql);
    }
    snprintf(want, sizeof want,
             "%s is not a restspy store: it holds tables a, t0, t1, t2, t3, t4, t5, t6 and 3 more "
             "(user_version 2)",
             f->path);
    assert_string_equal(open_error(&o, err, sizeof err), want);

    /* Not a database at all. */
    FILE *fp = fopen(f->path, "w");
    fputs("this is not an sqlite file, just text that is long enough to have a header......", fp);
    fclose(fp);
    snprintf(want, sizeof want, "%s is not a restspy store: not an SQLite database", f->path);
    assert_string_equal(open_error(&o, err, sizeof err), want);
    o.read_only = false;
    assert_string_equal(open_error(&o, err, sizeof err), want);
}

/* Stores records with the given ids (and nothing else) into f's file. */
static void store_ids(const fx *f, const char *const *ids, size_t n)
{
    store_options o = opts(f);
    store *s = open_started(&o);
    for (size_t i = 0; i < n; i++) {
        record *r = mkrec((int)i, (int64_t)i);
        snprintf(r->id, sizeof r->id, "%s", ids[i]);
        assert_int_equal(store_submit(s, r), 0);
    }
    store_close(s);
}

/* store_get's answer for key: the id found, "" for none, or the error. */
static const char *get_id(store *s, const char *key, char *out, size_t len)
{
    record *r = NULL;
    char err[512] = "";
    int rc = store_get(s, key, &r, err, sizeof err);
    snprintf(out, len, "%s", rc > 0 ? r->id : rc == 0 ? "" : err);
    record_free(r);
    return out;
}

static void test_get_prefix_or_suffix(void **state)
{
    fx *f = *state;
    static const char *const ids[] = {
        "01900000-aaaa-7000-8000-00000000000a", "01900000-aaaa-7000-8000-00000000000b",
        "01900001-bbbb-7000-8000-00000000000c", "01900002-cccc-7000-8000-000001900001",
        "01900003-dddd-7000-8000-0000000f00ab", "01900003-dddd-7000-8000-0000000f01ab",
        "01900003-dddd-7000-8000-0000000f02ab", "01900003-dddd-7000-8000-0000000f03ab",
        "01900003-dddd-7000-8000-0000000f04ab", "01900003-dddd-7000-8000-0000000f05ab"};
    store_ids(f, ids, sizeof ids / sizeof ids[0]);
    store *s = open_ro(f);
    char got[512];
    /* Whole ids, any case. */
    assert_string_equal(get_id(s, ids[0], got, sizeof got), ids[0]);
    assert_string_equal(get_id(s, "01900000-AAAA-7000-8000-00000000000B", got, sizeof got), ids[1]);
    /* A start or an end that names one request. */
    assert_string_equal(get_id(s, "01900002", got, sizeof got), ids[3]);
    assert_string_equal(get_id(s, "000c", got, sizeof got), ids[2]);
    assert_string_equal(get_id(s, "f03AB", got, sizeof got), ids[7]);
    assert_string_equal(get_id(s, "7000-8000-00000000000a", got, sizeof got), ids[0]);
    /* Nothing, or too long to be an id. */
    assert_string_equal(get_id(s, "0000", got, sizeof got), "");
    assert_string_equal(get_id(s, "01900000-aaaa-7000-8000-00000000000a0", got, sizeof got), "");
    /* Ambiguous: the candidates are listed. */
    assert_string_equal(get_id(s, "01900000", got, sizeof got),
                        "id 01900000 is ambiguous: it matches 2 requests "
                        "(01900000-aaaa-7000-8000-00000000000a, "
                        "01900000-aaaa-7000-8000-00000000000b); give more characters");
    /* One id's start is another's end. */
    assert_string_equal(get_id(s, "01900001", got, sizeof got),
                        "id 01900001 is ambiguous: it matches 2 requests "
                        "(01900001-bbbb-7000-8000-00000000000c, "
                        "01900002-cccc-7000-8000-000001900001); give more characters");
    assert_string_equal(get_id(s, "0ab", got, sizeof got),
                        "id 0ab is too short (give at least 4 characters)");
    assert_non_null(strstr(get_id(s, "01900003", got, sizeof got),
                           "it matches 6 requests (01900003-dddd-7000-8000-0000000f00ab, "
                           "01900003-dddd-7000-8000-0000000f01ab, "
                           "01900003-dddd-7000-8000-0000000f02ab, "
                           "01900003-dddd-7000-8000-0000000f03ab and 2 more)"));
    store_close(s);
}

/* Checks that len is the short id length of ids[0..n) in s: each id's last
 * len characters name it alone, and no shorter length (down to
 * STORE_ID_SHORT) would do for all. */
static void check_abbrev(store *s, const char *const *ids, size_t n, size_t len)
{
    char got[512];
    for (size_t i = 0; i < n; i++)
        assert_string_equal(get_id(s, ids[i] + UUID7_STR_LEN - len, got, sizeof got), ids[i]);
    if (len == STORE_ID_SHORT || len == UUID7_STR_LEN)
        return;
    bool clash = false;
    for (size_t i = 0; i < n && !clash; i++)
        clash = strcmp(get_id(s, ids[i] + UUID7_STR_LEN - (len - 1), got, sizeof got), ids[i]);
    assert_true(clash);
}

static void test_id_abbrev(void **state)
{
    fx *f = *state;
    /* Captured close together: the starts are alike, the ends are not. */
    enum { N = 1000 };
    char(*gen)[UUID7_STR_LEN + 1] = xmalloc(N * sizeof *gen);
    const char **ids = xmalloc(N * sizeof *ids);
    for (size_t i = 0; i < N; i++) {
        uuid7_generate(gen[i]);
        ids[i] = gen[i];
    }
    store_ids(f, ids, N);
    store *s = open_ro(f);
    char err[256];
    size_t len = 0;
    assert_int_equal(store_id_abbrev(s, ids, 20, &len, err, sizeof err), 0);
    check_abbrev(s, ids, 20, len);
    assert_int_equal(store_id_abbrev(s, ids, N, &len, err, sizeof err), 0);
    assert_in_range(len, STORE_ID_SHORT, 8);
    check_abbrev(s, ids, N, len);
    assert_int_equal(store_id_abbrev(s, ids, 0, &len, err, sizeof err), 0);
    assert_int_equal(len, STORE_ID_SHORT);
    store_close(s);
    free(ids);
    free(gen);
}

/* More ids than store_id_abbrev reads (100,000): it does not read them and
 * gives the whole random group, 12 characters, which still name each id
 * alone in store_get. */
static void test_id_abbrev_large_store(void **state)
{
    fx *f = *state;
    enum { N = 3 };
    char gen[N][UUID7_STR_LEN + 1];
    const char *ids[N];
    for (size_t i = 0; i < N; i++) {
        uuid7_generate(gen[i]);
        ids[i] = gen[i];
    }
    store_ids(f, ids, N);
    /* 100,000 more ids, older, all ending in zeros (so that no random end
     * of the three can meet one of theirs by chance). */
    sql_exec(f->path, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
                      " WHERE i < 100000) INSERT INTO requests(id)"
                      " SELECT printf('01800000-%04x-7000-8%03x-000000000000', i / 4096,"
                      " i % 4096) FROM n");
    store *s = open_ro(f);
    char err[256], got[512];
    size_t len = 0;
    assert_int_equal(store_id_abbrev(s, ids, N, &len, err, sizeof err), 0);
    assert_int_equal(len, 12);
    for (size_t i = 0; i < N; i++)
        assert_string_equal(get_id(s, ids[i] + UUID7_STR_LEN - len, got, sizeof got), ids[i]);
    /* 100,000 ids: all read, and the shortest ends again. */
    sql_exec(f->path, "DELETE FROM requests WHERE id < '01800000-0000-7000-8004'");
    assert_int_equal(store_id_abbrev(s, ids, N, &len, err, sizeof err), 0);
    assert_int_equal(len, STORE_ID_SHORT);
    store_close(s);
}

static void test_id_abbrev_clashes(void **state)
{
    fx *f = *state;
    static const char *const ids[] = {
        /* share their last 8 characters */
        "01900000-aaaa-7000-8000-0000a1b2c3d4", "01900000-aaaa-7000-8000-0001a1b2c3d4",
        /* its last 6 characters are the others' start */
        "01900001-bbbb-7000-8000-000000019000", "01900001-cccc-7000-8000-000000000777",
        /* share all of their random group */
        "01900002-dddd-7000-8000-123456789abc", "01900003-dddd-7000-8000-123456789abc"};
    store_ids(f, ids, sizeof ids / sizeof ids[0]);
    store *s = open_ro(f);
    char err[256];
    size_t len = 0;
    assert_int_equal(store_id_abbrev(s, ids, 2, &len, err, sizeof err), 0);
    assert_int_equal(len, 9);
    check_abbrev(s, ids, 2, len);
    assert_int_equal(store_id_abbrev(s, ids + 2, 2, &len, err, sizeof err), 0);
    assert_int_equal(len, 7);
    check_abbrev(s, ids + 2, 2, len);
    assert_int_equal(store_id_abbrev(s, ids + 3, 1, &len, err, sizeof err), 0);
    assert_int_equal(len, STORE_ID_SHORT);
    assert_int_equal(store_id_abbrev(s, ids, 6, &len, err, sizeof err), 0);
    assert_int_equal(len, UUID7_STR_LEN);
    check_abbrev(s, ids, 6, len);
    store_close(s);
}

static void test_queries(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    store *s = open_started(&o);
    static const struct {
        const char *method, *path, *origin, *node;
        int status;
    } rows[] = {
        {"GET", "/api/users/1", "local", "n1", 200},
        {"get", "/api/users/2", "local", "n1", 404},
        {"POST", "/api/users", "local", "n2", 201},
        {"GET", "/api/orders/1/items", "replicated", "n2", 500},
        {"DELETE", "/api/users/3", "local", "n1", 503},
        {"GET", "/health", "local", "n1", 200},
        {"GET", "/apix", "local", "n1", 200},
    };
    for (int i = 0; i < 7; i++) {
        record *r = mkrec(i, 1000 * (i + 1));
        free(r->method);
        free(r->path);
        free(r->origin);
        free(r->node);
        r->method = xstrdup(rows[i].method);
        r->path = xstrdup(rows[i].path);
        r->origin = xstrdup(rows[i].origin);
        r->node = xstrdup(rows[i].node);
        r->status = rows[i].status;
        assert_int_equal(store_submit(s, r), 0);
    }
    store_close(s);

    s = open_ro(f);
    collect c = {0};
    store_query q = {0};
    assert_int_equal(run_query(s, &q, &c), 7);
    assert_int_equal(c.started[0], 1000); /* oldest first by default */
    assert_int_equal(c.started[6], 7000);

    q = (store_query){.newest_first = true, .limit = 2};
    assert_int_equal(run_query(s, &q, &c), 2);
    assert_int_equal(c.started[0], 7000);
    assert_int_equal(c.started[1], 6000);

    q = (store_query){.method = "GET"}; /* case-insensitive */
    assert_int_equal(run_query(s, &q, &c), 5);

    q = (store_query){.status_min = 500, .status_max = 599};
    assert_int_equal(run_query(s, &q, &c), 2);
    q = (store_query){.status_min = 404, .status_max = 404};
    assert_int_equal(run_query(s, &q, &c), 1);
    q = (store_query){.status_min = 200, .status_max = 299, .method = "get"};
    assert_int_equal(run_query(s, &q, &c), 3);

    q = (store_query){.since_us = 3000};
    assert_int_equal(run_query(s, &q, &c), 5);
    assert_int_equal(c.started[0], 3000);
    q = (store_query){.since_us = 3000, .until_us = 5000};
    assert_int_equal(run_query(s, &q, &c), 2);

    q = (store_query){.origin = "replicated"};
    assert_int_equal(run_query(s, &q, &c), 1);
    q = (store_query){.node = "n2"};
    assert_int_equal(run_query(s, &q, &c), 2);

    q = (store_query){.path_glob = "/api/users/*"};
    assert_int_equal(run_query(s, &q, &c), 3);
    q = (store_query){.path_glob = "/api/**"};
    assert_int_equal(run_query(s, &q, &c), 5);
    q = (store_query){.path_glob = "/api*"};
    assert_int_equal(run_query(s, &q, &c), 1); /* "/apix"; '*' stops at '/' */
    q = (store_query){.path_glob = "/health"};
    assert_int_equal(run_query(s, &q, &c), 1);
    /* The limit counts glob matches, not scanned rows. */
    q = (store_query){.path_glob = "/api/users/*", .limit = 2, .newest_first = true};
    assert_int_equal(run_query(s, &q, &c), 2);
    assert_int_equal(c.started[0], 5000);
    assert_int_equal(c.started[1], 2000);
    q = (store_query){.path_glob = "/api/users/*", .method = "DELETE"};
    assert_int_equal(run_query(s, &q, &c), 1);

    /* A callback returning non-zero stops the scan. */
    q = (store_query){0};
    c.stop_after = 3;
    assert_int_equal(run_query(s, &q, &c), 3);

    /* User input is bound, never spliced into SQL. */
    q = (store_query){.method = "GET' OR 1=1 --"};
    c.stop_after = 0;
    assert_int_equal(run_query(s, &q, &c), 0);
    store_close(s);
}

/* ---- replication (schema version 2) ---- */

/* The version 1 schema exactly as restspy 0.1 created it. */
static const char v1_schema[] =
    "CREATE TABLE requests (id TEXT PRIMARY KEY, node TEXT, started_at INTEGER, duration_us "
    "INTEGER, upstream_us INTEGER, client_addr TEXT, method TEXT, scheme TEXT, host TEXT, path "
    "TEXT, query TEXT, req_headers TEXT, req_body BLOB, req_body_size INTEGER, req_truncated "
    "INTEGER, status INTEGER, resp_headers TEXT, resp_body BLOB, resp_body_size INTEGER, "
    "resp_truncated INTEGER, rule TEXT, origin TEXT, error TEXT);"
    "CREATE INDEX requests_started_at ON requests(started_at);"
    "CREATE INDEX requests_method_path ON requests(method, path);"
    "CREATE INDEX requests_status ON requests(status);"
    "PRAGMA user_version = 1;";

#define SIG64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* A message for r; odd i: no content type, unsigned, empty body. */
static repl_msg *mkmsg(const record *r, int i)
{
    repl_msg *m = repl_msg_new();
    char tmp[128];
    memcpy(m->id, r->id, sizeof m->id);
    m->timestamp = 1700000000 + i;
    m->origin = xstrdup("site-a");
    m->method = xstrdup(r->method);
    snprintf(tmp, sizeof tmp, "%s?n=%d", r->path, i);
    m->target = xstrdup(tmp);
    snprintf(tmp, sizeof tmp, "[[\"X-N\",\"%d\"]]", i);
    m->headers = xstrdup(tmp);
    snprintf(tmp, sizeof tmp, "site-a.%s.api.items.%d", r->method, i);
    m->routing_key = xstrdup(tmp);
    if (i % 2 == 0) {
        m->content_type = xstrdup("application/octet-stream");
        m->signature = xstrdup(SIG64);
        m->origin_status = xstrdup("201"); /* a version-2 message */
        m->origin_digest = xstrdup(SIG64);
        char body[8] = {'\0', (char)0xff, 'b', 'o', 'd', 'y', (char)i, '\0'};
        buf_append(&m->body, body, sizeof body);
    }
    return m;
}

static void check_msg(const repl_msg *m, const char *id, int i)
{
    char tmp[128];
    assert_string_equal(m->id, id);
    assert_int_equal(m->timestamp, 1700000000 + i);
    assert_string_equal(m->origin, "site-a");
    assert_string_equal(m->method, i % 2 ? "POST" : "GET");
    snprintf(tmp, sizeof tmp, "/api/items/%d?n=%d", i, i);
    assert_string_equal(m->target, tmp);
    snprintf(tmp, sizeof tmp, "[[\"X-N\",\"%d\"]]", i);
    assert_string_equal(m->headers, tmp);
    snprintf(tmp, sizeof tmp, "site-a.%s.api.items.%d", i % 2 ? "POST" : "GET", i);
    assert_string_equal(m->routing_key, tmp);
    if (i % 2 == 0) {
        assert_string_equal(m->content_type, "application/octet-stream");
        assert_string_equal(m->signature, SIG64);
        assert_string_equal(m->origin_status, "201");
        assert_string_equal(m->origin_digest, SIG64);
        char body[8] = {'\0', (char)0xff, 'b', 'o', 'd', 'y', (char)i, '\0'};
        assert_int_equal(m->body.len, sizeof body);
        assert_memory_equal(m->body.data, body, sizeof body);
    } else {
        assert_null(m->content_type);
        assert_null(m->signature);
        assert_null(m->origin_status); /* version 1 */
        assert_null(m->origin_digest);
        assert_int_equal(m->body.len, 0);
    }
}

/* Records what the writer reported, and whether the record's row was already
 * visible to another connection at that moment (it must be: after COMMIT). */
typedef struct cblog {
    pthread_mutex_t mu;
    const char *path; /* database to look in; NULL = do not look */
    int n;
    int idx[64];
    int status[64];
    int visible[64];
} cblog;

typedef struct cbarg {
    cblog *log;
    int idx;
    char id[UUID7_STR_LEN + 1];
} cbarg;

/* Not an assert: this runs on the writer thread. -1 on any error. */
static int64_t row_visible(const char *path, const char *id)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t v = -1;
    if (strncmp(path, "postgresql://", 13) == 0) {
        PGconn *c = PQconnectdb(path);
        const char *params[1] = {id};
        PGresult *r = PQexecParams(c, "SELECT count(*) FROM requests WHERE id = $1", 1, NULL,
                                   params, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        PQfinish(c);
        return v;
    }
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return -1;
    }
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM requests WHERE id = ?", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return v;
}

static void on_done(void *ud, int status)
{
    cbarg *a = ud;
    cblog *l = a->log;
    int vis = l->path ? (int)row_visible(l->path, a->id) : 0;
    pthread_mutex_lock(&l->mu);
    if (l->n < 64) {
        l->idx[l->n] = a->idx;
        l->status[l->n] = status;
        l->visible[l->n] = vis;
    }
    l->n++;
    pthread_mutex_unlock(&l->mu);
}

static int cblog_count(cblog *l)
{
    pthread_mutex_lock(&l->mu);
    int n = l->n;
    pthread_mutex_unlock(&l->mu);
    return n;
}

static void wait_callbacks(cblog *l, int n)
{
    for (int i = 0; i < 2000 && cblog_count(l) < n; i++)
        usleep(5000);
    assert_int_equal(cblog_count(l), n);
}

static store_repl_stats repl_stats(store *s)
{
    store_repl_stats rs;
    char err[256] = "";
    if (store_repl_stats_get(s, &rs, err, sizeof err) != 0)
        fail_msg("repl stats: %s", err);
    return rs;
}

/* Polls until the outbox holds depth rows (the writer applies confirms in
 * its next transaction). */
static store_repl_stats wait_depth(store *s, int64_t depth)
{
    store_repl_stats rs = {0};
    for (int i = 0; i < 2000; i++) {
        rs = repl_stats(s);
        if (rs.outbox_depth == depth)
            return rs;
        usleep(5000);
    }
    fail_msg("outbox depth %lld, expected %lld", (long long)rs.outbox_depth, (long long)depth);
    return rs;
}

static int64_t counter_value(const char *path, const char *name)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT coalesce((SELECT value FROM counters WHERE name = '%s'), -1)",
             name);
    return sql_int(path, sql);
}

/* ---- path globs on the path index (schema version 7) ---- */

/* Paths that sit at the edges of a literal-prefix range: byte order, case,
 * what LIKE would treat specially (% _ \), a literal star, bytes 0x7f,
 * 0xff and UTF-8, a slash before "**", empty segments. */
static const char *const glob_paths[] = {
    "/",
    "/api",
    "/api/",
    "/apix",
    "/api/items/",
    "/api/items/1",
    "/api/items/1/",
    "/api/items/10/",
    "/api/items/1/sub",
    "/api/items/1/a/b",
    "/api/itemsX",
    "/API/items/1/",
    "/api//items",
    "/api/users/7/orders/",
    "/api/users/7/orders/9",
    "/a%b/c",
    "/axb/c",
    "/a_b/c",
    "/a\\b",
    "/a*b",
    "/caf\xc3\xa9/x",
    "/\xff",
    "/\xff\xff/x",
    "/x\x7f",
    "/x\x7f/y",
    "/health",
};
#define NGLOB_PATHS (sizeof glob_paths / sizeof glob_paths[0])
#define GLOB_COPIES 2 /* each path stored this often, the second as POST */

static const char *const glob_patterns[] = {
    "/api/items/*",
    "/api/items/*/",
    "/api/items/*/*",
    "/api/**",
    "/api/**/b",
    "/api/*s/1/",
    "/api",
    "/api/",
    "/api*",
    "/API/**",
    "/a%b/*",
    "/a_b/*",
    "/a%*",
    "/a_*",
    "/a\\*",
    "/a*b",
    "/a*",
    "/caf*",
    "/caf\xc3\xa9/*",
    "/\xff*",
    "/\xff\xff/*",
    "/x\x7f",
    "/x\x7f/**",
    "*",
    "**",
    "*/items/*",
    "/api/items/1",
    "/api//*",
    "/",
    "/*",
    "/api/**/orders/",
    "/api/i*/1/",
    "/nothing/*",
    "/api/users/**",
};

/* What a glob query must answer, computed without the store: the rows in
 * stored order (started_at, then insertion), filtered by glob_match. ids:
 * the stored ids by row. */
static int glob_expect(const char *glob, const char *method, bool newest, int limit,
                       char ids[][UUID7_STR_LEN + 1], char out[][UUID7_STR_LEN + 1])
{
    int n = 0;
    size_t rows = NGLOB_PATHS * GLOB_COPIES;
    for (size_t k = 0; k < rows; k++) {
        size_t i = newest ? rows - 1 - k : k; /* rows are stored in started_at order */
        const char *path = glob_paths[i % NGLOB_PATHS];
        if (method && strcmp(method, i < NGLOB_PATHS ? "GET" : "POST") != 0)
            continue;
        if (!glob_match(glob, path, strlen(path)))
            continue;
        if (limit && n >= limit)
            break;
        memcpy(out[n++], ids[i], UUID7_STR_LEN + 1);
    }
    return n;
}

/* Every pattern, with and without a method, oldest and newest first, with
 * and without a limit: the store answers what glob_match selects. */
static void glob_compare_all(store *s, char ids[][UUID7_STR_LEN + 1])
{
    static char want[NGLOB_PATHS * GLOB_COPIES][UUID7_STR_LEN + 1];
    for (size_t g = 0; g < sizeof glob_patterns / sizeof glob_patterns[0]; g++) {
        for (int v = 0; v < 6; v++) {
            const char *method = v % 2 ? "post" : NULL;
            bool newest = v >= 2;
            int limit = v >= 4 ? 3 : 0;
            store_query q = {.path_glob = glob_patterns[g],
                             .method = method,
                             .newest_first = newest,
                             .limit = limit};
            collect c = {0};
            int got = run_query(s, &q, &c);
            int n = glob_expect(glob_patterns[g], method ? "POST" : NULL, newest, limit, ids, want);
            if (got != n)
                fail_msg("glob '%s' (variant %d): %d rows, expected %d", glob_patterns[g], v, got,
                         n);
            for (int i = 0; i < n; i++)
                if (strcmp(c.ids[i], want[i]) != 0)
                    fail_msg("glob '%s' (variant %d): row %d is %s, expected %s", glob_patterns[g],
                             v, i, c.ids[i], want[i]);
        }
    }
}

/* Stores every glob path GLOB_COPIES times (in started_at order, some
 * rows tied on started_at), their ids in ids. */
static void glob_fill(store *s, char ids[][UUID7_STR_LEN + 1])
{
    for (size_t i = 0; i < NGLOB_PATHS * GLOB_COPIES; i++) {
        record *r = mkrec((int)i, 1000 * (int64_t)(i / 3 + 1));
        free(r->method);
        free(r->path);
        r->method = xstrdup(i < NGLOB_PATHS ? "GET" : "POST");
        r->path = xstrdup(glob_paths[i % NGLOB_PATHS]);
        memcpy(ids[i], r->id, UUID7_STR_LEN + 1);
        assert_int_equal(store_submit(s, r), 0);
    }
}

/* Writes the glob rows (glob_fill) into a new store at f. */
static void glob_store(const fx *f, char ids[][UUID7_STR_LEN + 1])
{
    store_options o = opts(f);
    store *s = open_started(&o);
    glob_fill(s, ids);
    store_close(s);
}

/* Gives the file at f version 6's indexes and number back. */
static void glob_back_to_v6(const fx *f)
{
    sql_exec(f->path, TESTUTIL_SQLITE_UNDO_V9
             "DROP INDEX requests_path; CREATE INDEX requests_method_path ON "
             "requests(method, path); CREATE INDEX requests_status ON requests(status); "
             "ALTER TABLE outbox DROP COLUMN origin_status; "
             "ALTER TABLE outbox DROP COLUMN origin_digest; PRAGMA user_version = 6");
}

static void test_glob_plans(void **state)
{
    fx *f = *state;
    static char ids[NGLOB_PATHS * GLOB_COPIES][UUID7_STR_LEN + 1];
    glob_store(f, ids);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'index' "
                                      "AND name = 'requests_path'"),
                     1);

    store *s = open_ro(f);
    /* Through the path index wherever a glob has a literal prefix... */
    glob_compare_all(s, ids);
    /* ...and walking started_at, as when the prefix's range is large. */
    store_sqlite_test_glob_index_max(0);
    glob_compare_all(s, ids);
    store_sqlite_test_glob_index_max(10000);
    store_close(s);

    /* A version 6 file (no path index) read as it is answers the same. */
    glob_back_to_v6(f);
    s = open_ro(f);
    glob_compare_all(s, ids);
    store_close(s);
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), 6);
}

/* A version 6 file opened for writing: its indexes become version 7's,
 * its rows kept. */
static void test_migration_v6_to_v7(void **state)
{
    fx *f = *state;
    static char ids[NGLOB_PATHS * GLOB_COPIES][UUID7_STR_LEN + 1];
    glob_store(f, ids);
    glob_back_to_v6(f);
    store_options o = opts(f);
    store *s = open_started(&o);
    store_close(s);
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), STORE_SQLITE_SCHEMA_VERSION);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'index' "
                                      "AND tbl_name = 'requests' AND name IN ('requests_path', "
                                      "'requests_started_at', 'sqlite_autoindex_requests_1')"),
                     3);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'index' "
                                      "AND tbl_name = 'requests'"),
                     3);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), NGLOB_PATHS * GLOB_COPIES);
    s = open_ro(f);
    glob_compare_all(s, ids);
    store_close(s);
}

/* A version-7 file with a message in its outbox (written as version 7 did:
 * versions 8 and 9 only add columns and an index, so dropping them gives the
 * version-7 tables): a writer brings it to the current version, the
 * message stays and reads back as a version-1 message, and the next one
 * keeps the origin's answer and body. */
static void test_migration_v7_to_v9(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    store *s = open_started(&o);
    store_close(s);
    sql_exec(f->path, TESTUTIL_SQLITE_UNDO_V9
             "ALTER TABLE outbox DROP COLUMN origin_status; "
             "ALTER TABLE outbox DROP COLUMN origin_digest; PRAGMA user_version = 7; "
             "INSERT INTO outbox (message_id, created_at, timestamp, origin, method, "
             "target, headers, content_type, signature, routing_key, body) VALUES "
             "('01900000-0000-7000-8000-000000000007', 1, 1700000000, 'site-a', 'PUT', "
             "'/old', '[]', NULL, NULL, 'site-a.PUT.old', x'00ff')");
    s = open_started(&o);
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), 9);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM pragma_table_info('outbox') WHERE "
                                      "name IN ('origin_status', 'origin_digest', 'origin_body')"),
                     3);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM pragma_table_info('applied') WHERE "
                                      "name = 'outcome'"),
                     1);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM pragma_index_list('applied') WHERE "
                                      "name = 'applied_diverged' AND partial"),
                     1);
    record *r = mkrec(0, 100);
    r->replication = xstrdup("queued");
    char id[UUID7_STR_LEN + 1];
    memcpy(id, r->id, sizeof id);
    repl_msg *m = mkmsg(r, 0);
    repl_msg_set_origin_body(m, "{\"id\": 17}", 11);
    assert_int_equal(submit_with(s, r, m, NULL), 0);
    wait_stats(s, written_ge, 1);
    store_outbox_row rows[4];
    size_t n = 0;
    char err[256] = "";
    assert_int_equal(store_outbox_fetch(s, 0, 4, rows, &n, err, sizeof err), 0);
    assert_int_equal(n, 2); /* the version-7 row, then the new one */
    assert_string_equal(rows[0].msg->id, "01900000-0000-7000-8000-000000000007");
    assert_string_equal(rows[0].msg->target, "/old");
    assert_int_equal(rows[0].msg->body.len, 2);
    assert_int_equal(repl_msg_version(rows[0].msg), 1);
    assert_null(rows[0].msg->origin_digest);
    assert_int_equal(rows[0].msg->origin_body.len, 0);
    check_msg(rows[1].msg, id, 0);
    assert_int_equal(repl_msg_version(rows[1].msg), 2);
    assert_int_equal(rows[1].msg->origin_body.len, 11);
    assert_memory_equal(rows[1].msg->origin_body.data, "{\"id\": 17}", 11);
    store_outbox_rows_free(rows, n);
    store_close(s);
}

static void test_migration_v1_to_v2(void **state)
{
    fx *f = *state;
    sql_exec(f->path, v1_schema);
    sql_exec(f->path, "INSERT INTO requests (id, node, started_at, method, path, status, "
                      "req_body, origin) VALUES ('01900000-0000-7000-8000-000000000001', 'old', "
                      "42, 'PUT', '/kept', 204, x'00ff', 'local')");

    /* A reader leaves a version 1 file alone and reads it as it is. */
    store *s = open_ro(f);
    record *r = NULL;
    char err[256] = "";
    assert_int_equal(store_get(s, "01900000-0000-7000-8000-000000000001", &r, err, sizeof err), 1);
    assert_string_equal(r->path, "/kept");
    assert_null(r->replication);
    assert_null(r->resp_encoding);
    record_free(r);
    collect c = {0};
    store_query q = {0};
    assert_int_equal(run_query(s, &q, &c), 1);
    store_repl_stats rs = repl_stats(s);
    assert_int_equal(rs.outbox_depth, 0);
    assert_int_equal(rs.applied, 0);
    assert_int_equal(rs.published, 0);
    store_outbox_row rows[4];
    size_t n = 99;
    assert_int_equal(store_outbox_fetch(s, 0, 4, rows, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_ledger_has(s, "x", err, sizeof err), 0);
    store_close(s);
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), 1);

    /* A writer migrates it forward, keeping the data. */
    store_options o = opts(f);
    s = open_started(&o);
    record *nr = mkrec(1, 100);
    nr->replication = xstrdup("queued");
    char id[UUID7_STR_LEN + 1];
    memcpy(id, nr->id, sizeof id);
    assert_int_equal(store_submit(s, nr), 0);
    store_close(s);
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), STORE_SQLITE_SCHEMA_VERSION);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 2);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests WHERE id = "
                                      "'01900000-0000-7000-8000-000000000001' AND node = 'old' "
                                      "AND started_at = 42 AND status = 204 AND req_body = x'00ff' "
                                      "AND replication IS NULL"),
                     1);
    /* The new tables and the ledger index, as documented. */
    /* 12 columns, origin_status and origin_digest since version 8, and
     * origin_body since version 9 */
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM pragma_table_info('outbox')"), 15);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM pragma_table_info('outbox') WHERE "
                                      "\"notnull\" AND name IN ('message_id','created_at',"
                                      "'timestamp','origin','method','target','headers',"
                                      "'routing_key','body')"),
                     9);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM pragma_table_info('applied') WHERE "
                                      "name IN ('message_id','origin','applied_at','status')"),
                     4);
    /* applied_applied_at, and applied_origin since version 5 */
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM pragma_index_list('applied') WHERE "
                                      "origin = 'c'"),
                     3); /* applied_diverged since version 9 */
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM pragma_table_info('counters')"), 2);
    /* Version 4: the ledger's state and the stuck messages. */
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM pragma_table_info('applied') WHERE "
                                      "name = 'state'"),
                     1);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM pragma_table_info('stuck') WHERE "
                                      "name IN ('message_id','origin','method','target',"
                                      "'first_failed_at','last_failed_at','attempts',"
                                      "'last_answer')"),
                     8);

    s = open_ro(f);
    assert_int_equal(store_get(s, id, &r, err, sizeof err), 1);
    assert_string_equal(r->replication, "queued");
    record_free(r);
    store_close(s);
}

/* A record whose submitter waits for the commit (a held answer, a
 * replicator's ack) is not kept for the window: with a 10 s window its
 * callback still comes at once. */
static void test_commit_delay_skipped_for_waiters(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    o.batch_max = 100;
    o.commit_delay_us = 10 * 1000 * 1000;
    store *s = open_started(&o);
    cblog log = {.mu = PTHREAD_MUTEX_INITIALIZER};
    cbarg arg = {.log = &log, .idx = 0};
    record *r = mkrec(0, 1);
    memcpy(arg.id, r->id, sizeof arg.id);
    int64_t t0 = util_mono_us();
    assert_int_equal(submit_cb(s, r, on_done, &arg), 0);
    wait_callbacks(&log, 1);
    assert_int_equal(log.status[0], 0);
    assert_true(util_mono_us() - t0 < 5 * 1000 * 1000);
    store_close(s);
}

static void test_outbox_rows(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    store *s = open_started(&o);
    writeq_pause(s, true); /* one batch: the bad record is in the middle */
    cblog log = {.mu = PTHREAD_MUTEX_INITIALIZER};
    cbarg args[6];
    char ids[6][UUID7_STR_LEN + 1];
    for (int i = 0; i < 6; i++) {
        record *r = mkrec(i, 1000 + i);
        r->replication = xstrdup("queued");
        store_unit u = {.rec = r, .rec_row = true, .outbox = mkmsg(r, i)};
        if (i == 3) { /* a message without a method: SQLite refuses the unit */
            free(u.outbox->method);
            u.outbox->method = NULL;
        }
        memcpy(ids[i], r->id, sizeof ids[i]);
        args[i] = (cbarg){.log = &log, .idx = i};
        memcpy(args[i].id, r->id, sizeof args[i].id);
        assert_int_equal(store_submit_unit(s, &u, on_done, &args[i]), 0);
    }
    /* A record with no outbox message is just a request row. */
    assert_int_equal(store_submit(s, mkrec(9, 2000)), 0);
    writeq_pause(s, false);
    wait_callbacks(&log, 6);
    /* The refused record is reported first (at once); the rest in order. */
    assert_int_equal(log.idx[0], 3);
    assert_int_equal(log.status[0], -1);
    int want[] = {0, 1, 2, 4, 5};
    for (int k = 0; k < 5; k++) {
        assert_int_equal(log.idx[k + 1], want[k]);
        assert_int_equal(log.status[k + 1], 0);
    }
    wait_stats(s, written_ge, 6);
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.dropped, 1);

    store_outbox_row rows[8];
    size_t n = 0;
    char err[256] = "";
    assert_int_equal(store_outbox_fetch(s, 0, 8, rows, &n, err, sizeof err), 0);
    assert_int_equal(n, 5);
    for (size_t k = 0; k < n; k++) {
        if (k)
            assert_true(rows[k].seq > rows[k - 1].seq);
        check_msg(rows[k].msg, ids[want[k]], want[k]);
    }
    int64_t seq2 = rows[1].seq, last = rows[4].seq;
    store_outbox_rows_free(rows, n);

    /* after_seq and max page through the outbox. */
    assert_int_equal(store_outbox_fetch(s, seq2, 2, rows, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    check_msg(rows[0].msg, ids[2], 2);
    check_msg(rows[1].msg, ids[4], 4);
    store_outbox_rows_free(rows, n);
    assert_int_equal(store_outbox_fetch(s, last, 8, rows, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_outbox_fetch(s, 0, 0, rows, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);

    store_repl_stats rs = repl_stats(s);
    assert_int_equal(rs.outbox_depth, 5);
    assert_true(rs.oldest_unpublished_us > util_now_us() - 60 * 1000000LL);
    assert_true(rs.oldest_unpublished_us <= util_now_us());
    store_close(s);

    /* Atomic: the refused record left neither its request nor its outbox row. */
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM requests WHERE id = '%s'", ids[3]);
    assert_int_equal(sql_int(f->path, sql), 0);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM outbox WHERE message_id = '%s'", ids[3]);
    assert_int_equal(sql_int(f->path, sql), 0);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 6);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests WHERE replication = 'queued'"),
                     5);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM outbox o JOIN requests r ON "
                                      "r.id = o.message_id"),
                     5);
    assert_int_equal(
        sql_int(f->path, is_pg(f->path)
                             ? "SELECT count(*) FROM outbox WHERE body IS NOT NULL"
                             : "SELECT count(*) FROM outbox WHERE typeof(body) = 'blob'"),
        5);

    /* A new run finds the rows still waiting (outbox_wait from seq 0). */
    s = open_started(&o);
    assert_int_equal(store_outbox_wait(s, 0, 0), 1);
    /* On PostgreSQL a store that never fetched has a fetch due (other
     * instances' rows wake nobody): test_pg_outbox_claims. */
    if (!is_pg(f->path))
        assert_int_equal(store_outbox_wait(s, last, 0), 0);
    store_close(s);
}

static void test_callbacks(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    o.queue_max = 4;
    o.drop_when_full = true;
    store *s = open_started(&o);
    cblog log = {.mu = PTHREAD_MUTEX_INITIALIZER, .path = f->path};
    cbarg args[6];
    writeq_pause(s, true);
    for (int i = 0; i < 6; i++) {
        record *r = mkrec(i, i);
        args[i] = (cbarg){.log = &log, .idx = i};
        memcpy(args[i].id, r->id, sizeof args[i].id);
        int rc = submit_cb(s, r, on_done, &args[i]);
        if (i < 4) {
            assert_int_equal(rc, 0);
            assert_int_equal(cblog_count(&log), 0); /* nothing before the commit */
        } else {
            /* Refused under DROP: the callback has run before the return. */
            assert_int_equal(rc, -1);
            assert_int_equal(cblog_count(&log), i - 3);
            assert_int_equal(log.idx[i - 4], i);
            assert_int_equal(log.status[i - 4], -1);
        }
    }
    writeq_pause(s, false);
    wait_callbacks(&log, 6);
    for (int k = 2; k < 6; k++) {
        assert_int_equal(log.idx[k], k - 2); /* submit order */
        assert_int_equal(log.status[k], 0);
        assert_int_equal(log.visible[k], 1); /* called after COMMIT */
    }
    store_close(s);

    /* A closed store refuses with -1 too (read-only here). */
    s = open_ro(f);
    record *r = mkrec(0, 0);
    args[0] = (cbarg){.log = &log, .idx = 42};
    log.path = NULL;
    assert_int_equal(submit_cb(s, r, on_done, &args[0]), -1);
    assert_int_equal(cblog_count(&log), 7);
    assert_int_equal(log.idx[6], 42);
    assert_int_equal(log.status[6], -1);
    store_close(s);
}

static void test_outbox_confirmed(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    store *s = open_started(&o);
    char ids[5][UUID7_STR_LEN + 1];
    for (int i = 0; i < 5; i++) {
        record *r = mkrec(i, i);
        memcpy(ids[i], r->id, sizeof ids[i]);
        assert_int_equal(submit_with(s, r, mkmsg(r, i), NULL), 0);
    }
    wait_stats(s, written_ge, 5);
    store_outbox_row rows[5];
    size_t n = 0;
    char err[256] = "";
    assert_int_equal(store_outbox_fetch(s, 0, 5, rows, &n, err, sizeof err), 0);
    assert_int_equal(n, 5);
    int64_t seq[5];
    for (int i = 0; i < 5; i++)
        seq[i] = rows[i].seq;
    store_outbox_rows_free(rows, n);

    store_repl_stats rs = repl_stats(s);
    assert_int_equal(rs.published, 0);
    assert_int_equal(rs.last_confirmed_us, 0);
    assert_string_equal(rs.last_confirmed_id, "");

    int64_t before = util_now_us();
    store_outbox_confirmed(s, seq[2], ids[2]);
    rs = wait_depth(s, 2);
    assert_int_equal(rs.published, 3);
    assert_string_equal(rs.last_confirmed_id, ids[2]);
    assert_true(rs.last_confirmed_us >= before && rs.last_confirmed_us <= util_now_us());
    assert_int_equal(store_outbox_fetch(s, 0, 5, rows, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].seq, seq[3]);
    assert_string_equal(rows[0].msg->id, ids[3]);
    store_outbox_rows_free(rows, n);

    /* A repeated (older) confirm deletes nothing and counts nothing. */
    store_outbox_confirmed(s, seq[1], ids[1]);
    store_outbox_confirmed(s, seq[4], ids[4]);
    rs = wait_depth(s, 0);
    assert_int_equal(rs.published, 5);
    assert_string_equal(rs.last_confirmed_id, ids[4]);
    assert_int_equal(rs.oldest_unpublished_us, 0);
    store_close(s);
    assert_int_equal(counter_value(f->path, "published"), 5);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM outbox"), 0);
    /* The requests rows are not touched by confirms. */
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 5);
}

static void test_ledger(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    store *s = open_started(&o);
    char err[256] = "";
    char mid[UUID7_STR_LEN + 1];
    uuid7_generate(mid);
    assert_int_equal(store_ledger_has(s, mid, err, sizeof err), 0);

    store_repl_stats rs = repl_stats(s);
    assert_int_equal(rs.applied, 0);
    assert_int_equal(rs.last_applied_us, 0);
    assert_int_equal(rs.last_applied_msg_us, 0);

    int64_t before = util_now_us();
    record *r = mkrec(1, 1);
    free(r->origin);
    r->origin = xstrdup("replicated");
    free(r->node);
    r->node = xstrdup("site-b");
    r->status = 201;
    assert_int_equal(submit_with(s, r, NULL, mid), 0);
    /* The same message again (a redelivery racing the first): one ledger row. */
    record *r2 = mkrec(2, 2);
    r2->status = 500;
    assert_int_equal(submit_with(s, r2, NULL, mid), 0);
    wait_stats(s, written_ge, 2);
    assert_int_equal(store_ledger_has(s, mid, err, sizeof err), 1);
    assert_int_equal(store_ledger_has(s, "01900000-0000-7000-8000-000000000000", err, sizeof err),
                     0);
    rs = repl_stats(s);
    assert_int_equal(rs.applied, 1);
    assert_true(rs.last_applied_us >= before && rs.last_applied_us <= util_now_us());
    assert_int_equal(rs.last_applied_msg_us, uuid7_time_ms(mid) * 1000);
    store_close(s);

    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM applied WHERE message_id = '%s' AND origin = 'site-b' AND "
             "status = 201",
             mid);
    assert_int_equal(sql_int(f->path, sql), 1);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM applied"), 1);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 2);

    /* A reader (another process) sees the ledger. */
    s = open_ro(f);
    assert_int_equal(store_ledger_has(s, mid, err, sizeof err), 1);
    store_close(s);
}

/* The replicator's outcome (rec->replication of an applied unit) goes to
 * the ledger row; a query for diverged writes finds the replicated rows
 * whose outcome is not "same" (and none without an outcome), on a store
 * any reader opens. */
static int count_row(const record *r, void *ud)
{
    (void)r;
    ++*(int *)ud;
    return 0;
}

static void test_ledger_outcome(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    store *s = open_started(&o);
    const char *outcomes[] = {"same", "diverged: status 201 -> 409", NULL,
                              "diverged: body $.id: 17 -> 23"};
    char ids[4][UUID7_STR_LEN + 1];
    for (int i = 0; i < 4; i++) {
        record *r = mkrec(i, 100 + i);
        free(r->origin);
        r->origin = xstrdup("replicated");
        r->replication = outcomes[i] ? xstrdup(outcomes[i]) : NULL;
        memcpy(ids[i], r->id, sizeof ids[i]);
        assert_int_equal(submit_with(s, r, NULL, r->id), 0);
    }
    wait_stats(s, written_ge, 4);
    store_close(s);
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM applied WHERE message_id = '%s' AND outcome = "
             "'diverged: status 201 -> 409'",
             ids[1]);
    assert_int_equal(sql_int(f->path, sql), 1);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM applied WHERE message_id = '%s' AND outcome IS "
             "NULL",
             ids[2]);
    assert_int_equal(sql_int(f->path, sql), 1);

    s = open_ro(f);
    store_query q = {.diverged = true};
    int n = 0;
    char err[256] = "";
    assert_int_equal(store_query_each(s, &q, count_row, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    q.path_glob = "/api/items/1"; /* with the other filters */
    n = 0;
    assert_int_equal(store_query_each(s, &q, count_row, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    store_close(s);
    store_query all = {0};
    s = open_ro(f);
    int every = 0;
    assert_int_equal(store_query_each(s, &all, count_row, &every, err, sizeof err), 0);
    assert_int_equal(every, 4);
    store_close(s);
}

/* Polls until the stuck row of id is there (want 1) or gone (want 0). */
static void wait_stuck(store *s, const char *id, int want, store_stuck *out)
{
    char err[256] = "";
    for (int i = 0; i < 2000; i++) {
        int rc = store_stuck_get(s, id, out, err, sizeof err);
        if (rc < 0)
            fail_msg("stuck get: %s", err);
        if (rc == want)
            return;
        store_stuck_row_free(out);
        usleep(5000);
    }
    fail_msg("stuck row of %s: not %s", id, want ? "there" : "gone");
}

static store_stuck stuck_row(const char *id, int64_t first, int64_t attempts, const char *answer)
{
    store_stuck row = {.origin = "peer",
                       .method = "POST",
                       .target = "/api/sites/",
                       .first_failed_us = first,
                       .last_failed_us = first + 5,
                       .attempts = attempts,
                       .last_answer = (char *)answer};
    snprintf(row.message_id, sizeof row.message_id, "%s", id);
    return row;
}

/* The replicator's failing writes: noted, replaced, listed oldest failure
 * first, cleared by the ledger row of their apply (same transaction) or
 * by hand, and read back by another process. */
static void test_stuck(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    store *s = open_started(&o);
    char a[UUID7_STR_LEN + 1], b[UUID7_STR_LEN + 1], c[UUID7_STR_LEN + 1];
    uuid7_generate(a);
    uuid7_generate(b);
    uuid7_generate(c);
    char err[256] = "";
    store_stuck got;
    assert_int_equal(store_stuck_get(s, a, &got, err, sizeof err), 0);

    store_stuck row = stuck_row(a, 2000, 1, "upstream answered 500: dup");
    store_stuck_set(s, &row);
    row = stuck_row(a, 2000, 2, "upstream answered 503");
    store_stuck_set(s, &row); /* replaces the first */
    row = stuck_row(b, 1000, 7, "timeout");
    store_stuck_set(s, &row);
    row = stuck_row(c, 0, 0, "connect: Connection refused"); /* unreachable: no budget spent */
    store_stuck_set(s, &row);
    wait_stuck(s, c, 1, &got);
    store_stuck_row_free(&got);
    assert_int_equal(store_stuck_get(s, a, &got, err, sizeof err), 1);
    assert_string_equal(got.message_id, a);
    assert_string_equal(got.origin, "peer");
    assert_string_equal(got.method, "POST");
    assert_string_equal(got.target, "/api/sites/");
    assert_int_equal(got.first_failed_us, 2000);
    assert_int_equal(got.last_failed_us, 2005);
    assert_int_equal(got.attempts, 2);
    assert_string_equal(got.last_answer, "upstream answered 503");
    store_stuck_row_free(&got);

    store_stuck *v = NULL;
    size_t n = 0;
    int64_t total = 0;
    assert_int_equal(store_stuck_list(s, 2, &v, &n, &total, err, sizeof err), 0);
    assert_int_equal(total, 3);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].message_id, b);
    assert_string_equal(v[1].message_id, a);
    store_stuck_free(v, n);

    /* Applied: its ledger row clears it, even when the failure was noted
     * just before, in the same transaction. */
    row = stuck_row(a, 2000, 3, "upstream answered 503");
    store_stuck_set(s, &row);
    record *r = mkrec(1, 1);
    r->status = 201;
    assert_int_equal(submit_with(s, r, NULL, a), 0);
    store_stuck_clear(s, b);
    wait_stuck(s, b, 0, &got);
    wait_stuck(s, a, 0, &got);
    assert_int_equal(store_stuck_list(s, 10, &v, &n, &total, err, sizeof err), 0);
    assert_int_equal(total, 1);
    assert_string_equal(v[0].message_id, c);
    assert_int_equal(v[0].first_failed_us, 0);
    assert_string_equal(v[0].last_answer, "connect: Connection refused");
    store_stuck_free(v, n);
    store_close(s);

    /* Another process reads them; a file of version 3 has none. */
    s = open_ro(f);
    assert_int_equal(store_stuck_list(s, 10, &v, &n, &total, err, sizeof err), 0);
    assert_int_equal(total, 1);
    store_stuck_free(v, n);
    store_close(s);
    if (is_pg(f->path))
        return; /* PostgreSQL stores begin at version 7 */
    sql_exec(f->path, "DROP TABLE stuck; PRAGMA user_version = 3");
    s = open_ro(f);
    assert_int_equal(store_stuck_list(s, 10, &v, &n, &total, err, sizeof err), 0);
    assert_int_equal(total, 0);
    assert_null(v);
    assert_int_equal(store_stuck_get(s, c, &got, err, sizeof err), 0);
    store_close(s);
}

/* A skip is a ledger row in state 'skipped', committed at once by a store
 * that is not started (the CLI); the replicator's lookup tells it from an
 * apply, and the figures count it apart. */
static void test_ledger_skip(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    store *s = open_started(&o);
    char applied[UUID7_STR_LEN + 1], skipped[UUID7_STR_LEN + 1];
    uuid7_generate(applied);
    uuid7_generate(skipped);
    record *r = mkrec(1, 1);
    r->status = 201;
    assert_int_equal(submit_with(s, r, NULL, applied), 0);
    store_stuck row = stuck_row(skipped, 1000, 4, "upstream answered 500");
    store_stuck_set(s, &row);
    store_close(s);

    char err[256] = "";
    s = store_open(&o, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(store_ledger_skip(s, skipped, "peer", err, sizeof err), 1);
    assert_int_equal(store_ledger_skip(s, skipped, "peer", err, sizeof err), 0);
    assert_int_equal(store_ledger_skip(s, applied, "peer", err, sizeof err), 0);
    store_close(s);

    s = open_ro(f);
    assert_int_equal(store_ledger_has(s, applied, err, sizeof err), 1);
    assert_int_equal(store_ledger_has(s, skipped, err, sizeof err), 2);
    store_stuck got;
    assert_int_equal(store_stuck_get(s, skipped, &got, err, sizeof err), 0);
    store_repl_stats rs = repl_stats(s);
    assert_int_equal(rs.applied, 1);
    assert_int_equal(rs.skipped, 1);
    /* The last apply is the apply, not the later skip. */
    assert_int_equal(rs.last_applied_msg_us, uuid7_time_ms(applied) * 1000);
    store_close(s);
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM applied WHERE message_id = '%s' AND origin = 'peer' AND "
             "state = 'skipped' AND status IS NULL",
             skipped);
    assert_int_equal(sql_int(f->path, sql), 1);
}

/* An applied row from origin (an SQL literal: 'peer' or NULL) whose
 * message was made at origin_ms and committed here at applied_us. */
static void insert_applied_from(const char *path, const char *origin, int64_t origin_ms,
                                int64_t applied_us, const char *state)
{
    char id[UUID7_STR_LEN + 1], sql[300];
    unsigned char seed[10] = {0};
    memcpy(seed, &applied_us, sizeof applied_us);
    uuid7_derive(origin_ms, seed, id);
    snprintf(sql, sizeof sql,
             "INSERT INTO applied (message_id, origin, applied_at, status, state) VALUES "
             "('%s', %s, %lld, 201, %s)",
             id, origin, (long long)applied_us, state ? state : "NULL");
    sql_exec(path, sql);
}

/* An applied row from 'peer' (insert_applied_from). */
static void insert_applied(const char *path, int64_t origin_ms, int64_t applied_us,
                           const char *state)
{
    insert_applied_from(path, "'peer'", origin_ms, applied_us, state);
}

/* The lag figures: origin time to ledger commit, over the window asked
 * for, skips and older applies left out, clock skew counted as 0. */
static void test_repl_lag(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    store *s = open_started(&o);
    store_close(s);
    const int64_t now = util_now_us() / 1000 * 1000; /* whole ms, as ids hold them */
    /* 100 applies in the last minute with lags 1..100 ms. */
    for (int i = 1; i <= 100; i++) {
        int64_t at = now - 60000000 + i * 1000;
        insert_applied(f->path, (at - i * 1000) / 1000, at, NULL);
    }
    insert_applied(f->path, now / 1000 - 3600000, now - 1000, "'skipped'"); /* a skip */
    insert_applied(f->path, now / 1000 - 900000, now - 600000000, NULL);    /* 10 min ago */

    s = open_ro(f);
    char err[256] = "";
    store_repl_lag lag;
    assert_int_equal(store_repl_lag_get(s, now - 300000000, 10000, &lag, err, sizeof err), 0);
    assert_int_equal(lag.n, 100);
    assert_int_equal(lag.p50_us, 50000);
    assert_int_equal(lag.p99_us, 99000);
    assert_int_equal(lag.max_us, 100000);
    /* The newest 10 only. */
    assert_int_equal(store_repl_lag_get(s, now - 300000000, 10, &lag, err, sizeof err), 0);
    assert_int_equal(lag.n, 10);
    assert_int_equal(lag.p50_us, 95000);
    assert_int_equal(lag.max_us, 100000);
    /* Nothing in the window. */
    assert_int_equal(store_repl_lag_get(s, now + 1000000, 100, &lag, err, sizeof err), 0);
    assert_int_equal(lag.n, 0);
    assert_int_equal(lag.p99_us, 0);
    store_close(s);

    /* A message from a site whose clock is ahead: lag 0, not negative. */
    sql_exec(f->path, "DELETE FROM applied");
    insert_applied(f->path, now / 1000 + 5000, now, NULL);
    s = open_ro(f);
    assert_int_equal(store_repl_lag_get(s, now - 1000000, 100, &lag, err, sizeof err), 0);
    assert_int_equal(lag.n, 1);
    assert_int_equal(lag.max_us, 0);
    store_close(s);
}

/* The ledger by origin: counts, newest apply and its lag, the window's
 * percentiles per origin, skips left out, the list bounded and the ledger
 * end read with them. */
static void test_repl_origins(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    store *s = open_started(&o);
    store_close(s);
    assert_int_equal(sql_int(f->path, is_pg(f->path)
                                          ? "SELECT count(*) FROM pg_indexes WHERE indexname = "
                                            "'applied_origin'"
                                          : "SELECT count(*) FROM pragma_index_list('applied') "
                                            "WHERE name = 'applied_origin'"),
                     1);
    const int64_t now = util_now_us() / 1000 * 1000;
    /* a: 10 applies in the last minute with lags 1..10 ms, one 10 minutes
     * ago (lag 500 ms), one skip; b: 3 with lags 100, 200, 300 ms (the
     * newest last); c: one an hour ago; and one without origin. */
    for (int i = 1; i <= 10; i++) {
        int64_t at = now - 60000000 + i * 1000;
        insert_applied_from(f->path, "'a'", (at - i * 1000) / 1000, at, NULL);
    }
    insert_applied_from(f->path, "'a'", (now - 600000000 - 500000) / 1000, now - 600000000, NULL);
    insert_applied_from(f->path, "'a'", now / 1000 - 1000, now - 7000, "'skipped'");
    for (int i = 1; i <= 3; i++) {
        int64_t at = now - 30000000 + i * 1000000;
        insert_applied_from(f->path, "'b'", (at - i * 100000) / 1000, at, NULL);
    }
    insert_applied_from(f->path, "'c'", (now - 3600000000 - 2000000) / 1000, now - 3600000000,
                        NULL);
    insert_applied_from(f->path, "NULL", (now - 5000000) / 1000, now - 4000000, NULL);

    s = open_ro(f);
    char err[256] = "";
    store_repl_origin *v;
    size_t n;
    int64_t total, end;
    if (store_repl_origins_get(s, now - 300000000, 10000, 10, &v, &n, &total, &end, err,
                               sizeof err) != 0)
        fail_msg("store_repl_origins_get: %s", err);
    assert_int_equal(n, 4);
    assert_int_equal(total, 4);
    assert_int_equal(end, 17); /* every row, the skip included */
    assert_string_equal(v[0].origin, "");
    assert_int_equal(v[0].applied, 1);
    assert_int_equal(v[0].last_lag_us, 1000000);
    assert_string_equal(v[1].origin, "a");
    assert_int_equal(v[1].applied, 11);
    assert_int_equal(v[1].last_applied_us, now - 60000000 + 10000);
    assert_int_equal(v[1].last_lag_us, 10000);
    assert_int_equal(v[1].lag.n, 10);
    assert_int_equal(v[1].lag.p50_us, 5000);
    assert_int_equal(v[1].lag.p99_us, 10000);
    assert_int_equal(v[1].lag.max_us, 10000);
    assert_string_equal(v[2].origin, "b");
    assert_int_equal(v[2].applied, 3);
    assert_int_equal(v[2].last_lag_us, 300000);
    assert_int_equal(v[2].lag.n, 3);
    assert_int_equal(v[2].lag.p50_us, 200000);
    assert_int_equal(v[2].lag.max_us, 300000);
    assert_string_equal(v[3].origin, "c");
    assert_int_equal(v[3].applied, 1);
    assert_int_equal(v[3].last_applied_us, now - 3600000000);
    assert_int_equal(v[3].last_lag_us, 2000000);
    assert_int_equal(v[3].lag.n, 0); /* nothing in the window */
    store_repl_origins_free(v, n);

    /* The first two origins only (all counted); the window's newest 3
     * applies over all origins: b's three. */
    assert_int_equal(
        store_repl_origins_get(s, now - 300000000, 3, 2, &v, &n, &total, NULL, err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(total, 4);
    assert_string_equal(v[1].origin, "a");
    assert_int_equal(v[1].applied, 11);
    assert_int_equal(v[1].lag.n, 0);
    store_repl_origins_free(v, n);
    assert_int_equal(
        store_repl_origins_get(s, now - 300000000, 4, 10, &v, &n, &total, NULL, err, sizeof err),
        0);
    assert_int_equal(v[2].lag.n, 3);
    assert_int_equal(v[1].lag.n, 0);
    assert_int_equal(v[0].lag.n, 1);
    store_repl_origins_free(v, n);
    store_close(s);

    /* An empty ledger: nothing, the end at 0. */
    sql_exec(f->path, "DELETE FROM applied");
    s = open_ro(f);
    assert_int_equal(store_repl_origins_get(s, 0, 100, 10, &v, &n, &total, &end, err, sizeof err),
                     0);
    assert_int_equal(n, 0);
    assert_int_equal(total, 0);
    assert_int_equal(end, 0);
    assert_null(v);
    store_close(s);
}

/* What test_ledger_each's callback saw. */
typedef struct ledger_seen {
    int64_t pos[16];
    char origin[16][16];
    int64_t lag[16];
    size_t n, stop_at; /* stop_at: returns non-zero at that row (0: never) */
} ledger_seen;

static int ledger_collect(const store_ledger_row *row, void *ud)
{
    ledger_seen *w = ud;
    assert_true(w->n < 16);
    w->pos[w->n] = row->pos;
    snprintf(w->origin[w->n], sizeof w->origin[0], "%s", row->origin);
    w->lag[w->n] = row->lag_us;
    w->n++;
    return w->stop_at && w->n == w->stop_at;
}

/* The incremental reader: applies after a position, in position order,
 * skips left out, bounded, stopped by the callback; a reader starting at
 * the end store_repl_origins_get gives sees exactly the later applies,
 * the writer's ledger rows included. */
static void test_ledger_each(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    store *s = open_started(&o);
    store_close(s);
    const int64_t now = util_now_us() / 1000 * 1000;
    insert_applied_from(f->path, "'a'", now / 1000 - 20, now - 3000, NULL);
    insert_applied_from(f->path, "'b'", now / 1000 - 30, now - 2000, "'skipped'");
    insert_applied_from(f->path, "'b'", now / 1000 - 40, now - 1000, NULL);
    insert_applied_from(f->path, "NULL", now / 1000 + 50, now, NULL); /* skew: 0 */
    sql_exec(f->path, "INSERT INTO applied (message_id, origin, applied_at) VALUES "
                      "('not-a-uuid', 'a', 1)");

    s = open_ro(f);
    char err[256] = "";
    ledger_seen w = {0};
    assert_int_equal(store_ledger_each(s, 0, 100, ledger_collect, &w, err, sizeof err), 4);
    assert_int_equal(w.n, 4);
    assert_string_equal(w.origin[0], "a");
    assert_int_equal(w.lag[0], 17000);
    assert_string_equal(w.origin[1], "b");
    assert_int_equal(w.lag[1], 39000);
    assert_string_equal(w.origin[2], "");
    assert_int_equal(w.lag[2], 0);
    assert_int_equal(w.lag[3], -1);
    for (size_t i = 1; i < w.n; i++)
        assert_true(w.pos[i] > w.pos[i - 1]);
    int64_t second = w.pos[1];
    /* After the second, two at most. */
    memset(&w, 0, sizeof w);
    assert_int_equal(store_ledger_each(s, second, 2, ledger_collect, &w, err, sizeof err), 2);
    assert_string_equal(w.origin[0], "");
    /* The callback stops it. */
    memset(&w, 0, sizeof w);
    w.stop_at = 1;
    assert_int_equal(store_ledger_each(s, 0, 100, ledger_collect, &w, err, sizeof err), 1);
    store_repl_origin *v;
    size_t n;
    int64_t total, end;
    assert_int_equal(store_repl_origins_get(s, 0, 0, 10, &v, &n, &total, &end, err, sizeof err), 0);
    store_repl_origins_free(v, n);
    store_close(s);

    /* The replicator's write path: a capture with its ledger row. */
    s = open_started(&o);
    record *r = mkrec(1, now);
    const char *mid = "01900000-0000-7000-8000-0000000000aa";
    assert_int_equal(submit_with(s, r, NULL, mid), 0);
    store_close(s);
    s = open_ro(f);
    memset(&w, 0, sizeof w);
    assert_int_equal(store_ledger_each(s, end, 100, ledger_collect, &w, err, sizeof err), 1);
    assert_string_equal(w.origin[0], "node-a");
    assert_true(w.lag[0] > 0);
    assert_int_equal(store_ledger_each(s, w.pos[0], 100, ledger_collect, &w, err, sizeof err), 0);
    store_close(s);
}

static void test_counters(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    store *s = open_started(&o);
    store_counter_add(s, "deduplicated", 2);
    store_counter_add(s, "deduplicated", 3);
    store_counter_add(s, "dead_lettered", 1);
    store_counter_set(s, "not_replicated", 40);
    store_counter_add(s, "not_replicated", 2);
    store_counter_add(s, "custom", -7);
    store_close(s); /* pending updates are written before close returns */
    assert_int_equal(counter_value(f->path, "deduplicated"), 5);
    assert_int_equal(counter_value(f->path, "dead_lettered"), 1);
    assert_int_equal(counter_value(f->path, "not_replicated"), 42);
    assert_int_equal(counter_value(f->path, "custom"), -7);

    /* They survive a restart and keep counting; readers see them. */
    s = open_started(&o);
    store_counter_add(s, "deduplicated", 1);
    store_counter_set(s, "dead_lettered", 0);
    store_close(s);
    s = open_ro(f);
    store_repl_stats rs = repl_stats(s);
    assert_int_equal(rs.deduplicated, 6);
    assert_int_equal(rs.dead_lettered, 0);
    assert_int_equal(rs.not_replicated, 42);
    assert_int_equal(rs.published, 0);
    /* A reader cannot count. */
    store_counter_add(s, "deduplicated", 1);
    store_outbox_confirmed(s, 1, "x");
    store_close(s);
    assert_int_equal(counter_value(f->path, "deduplicated"), 6);

    /* While another process holds the file, updates pile up (merged per
     * name) and all land once it lets go. */
    store_options lo = opts(f);
    lo.busy_timeout_ms = 0;
    s = open_started(&lo);
    sqlite3 *other;
    assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    store_counter_add(s, "dead_lettered", 1);
    wait_stats(s, errors_ge, 1); /* the writer holds that one and retries */
    for (int i = 0; i < 100; i++)
        store_counter_add(s, "deduplicated", 1);
    store_counter_set(s, "x", 5);
    store_counter_add(s, "x", 2);
    store_counter_add(s, "y", 2);
    store_counter_set(s, "y", 9);
    store_counter_add(s, "dead_lettered", 1);
    assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    store_close(s);
    assert_int_equal(counter_value(f->path, "deduplicated"), 106);
    assert_int_equal(counter_value(f->path, "x"), 7);
    assert_int_equal(counter_value(f->path, "y"), 9);
    assert_int_equal(counter_value(f->path, "dead_lettered"), 2);

    /* Without a writer thread, close still applies them. */
    char err[256];
    s = store_open(&o, err, sizeof err);
    assert_non_null(s);
    store_counter_add(s, "deduplicated", 4);
    store_close(s);
    assert_int_equal(counter_value(f->path, "deduplicated"), 110);
}

typedef struct waiter {
    store *s;
    int64_t after;
    int timeout_ms;
    int result;
    int64_t took_us;
} waiter;

static void *wait_thread(void *arg)
{
    waiter *w = arg;
    int64_t t0 = util_mono_us();
    w->result = store_outbox_wait(w->s, w->after, w->timeout_ms);
    w->took_us = util_mono_us() - t0;
    return NULL;
}

static void test_outbox_wait(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    store *s = open_started(&o);

    /* Nothing new: times out. */
    int64_t t0 = util_mono_us();
    assert_int_equal(store_outbox_wait(s, 0, 100), 0);
    int64_t took = util_mono_us() - t0;
    assert_true(took >= 90000 && took < 2000000);

    /* A record without an outbox row does not wake the waiter. */
    waiter w = {.s = s, .after = 0, .timeout_ms = 10000, .result = -1};
    pthread_t t;
    pthread_create(&t, NULL, wait_thread, &w);
    assert_int_equal(store_submit(s, mkrec(0, 0)), 0);
    wait_stats(s, written_ge, 1);
    usleep(50000);
    assert_int_equal(w.result, -1);
    /* An outbox row does, right after its commit. */
    record *r = mkrec(1, 1);
    assert_int_equal(submit_with(s, r, mkmsg(r, 1), NULL), 0);
    pthread_join(t, NULL);
    assert_int_equal(w.result, 1);
    assert_true(w.took_us < 5000000);
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.written, 2);

    store_outbox_row rows[2];
    size_t n = 0;
    char err[256];
    assert_int_equal(store_outbox_fetch(s, 0, 2, rows, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    int64_t seq = rows[0].seq;
    store_outbox_rows_free(rows, n);
    assert_int_equal(store_outbox_wait(s, seq - 1, 1000), 1); /* already there: at once */
    assert_int_equal(store_outbox_wait(s, seq, 50), 0);

    /* Closing wakes a waiter, and close waits for it to leave. */
    w = (waiter){.s = s, .after = seq, .timeout_ms = 60000, .result = -1};
    pthread_create(&t, NULL, wait_thread, &w);
    usleep(50000);
    store_close(s);
    pthread_join(t, NULL);
    assert_int_equal(w.result, 0);
    assert_true(w.took_us < 10000000);
}

#define TWO_PER_STORE 400

typedef struct two_arg {
    store *s;
    int which;
} two_arg;

static void *submit_two(void *arg)
{
    two_arg *a = arg;
    intptr_t bad = 0;
    for (int i = 0; i < TWO_PER_STORE; i++) {
        record *r = mkrec(i, util_now_us());
        repl_msg *m = NULL;
        char mid[UUID7_STR_LEN + 1] = "";
        if (a->which == 0) { /* the proxy: requests with outbox rows */
            m = mkmsg(r, i);
        } else { /* the replicator: captures with ledger rows and counters */
            uuid7_generate(mid);
            store_counter_add(a->s, "deduplicated", 1);
        }
        if (submit_with(a->s, r, m, mid[0] ? mid : NULL) != 0)
            bad++;
        if (i % 50 == 0)
            usleep(1000); /* several batches, so that the two writers interleave */
    }
    return (void *)bad;
}

static void test_two_stores_one_file(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    o.busy_timeout_ms = 5000;
    o.batch_max = 16;
    store *a = open_started(&o);
    store *b = open_started(&o);
    two_arg aa = {a, 0}, ba = {b, 1};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, submit_two, &aa);
    pthread_create(&tb, NULL, submit_two, &ba);
    void *bad;
    pthread_join(ta, &bad);
    assert_int_equal((intptr_t)bad, 0);
    pthread_join(tb, &bad);
    assert_int_equal((intptr_t)bad, 0);
    wait_stats(a, written_ge, TWO_PER_STORE);
    wait_stats(b, written_ge, TWO_PER_STORE);
    /* Each sees the other's rows through its read connection. */
    store_repl_stats rs = repl_stats(a);
    assert_int_equal(rs.outbox_depth, TWO_PER_STORE);
    assert_int_equal(rs.applied, TWO_PER_STORE);
    store_stats st;
    store_get_stats(a, &st);
    assert_int_equal(st.dropped, 0);
    store_get_stats(b, &st);
    assert_int_equal(st.dropped, 0);
    store_close(a);
    store_close(b);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 2 * TWO_PER_STORE);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM outbox"), TWO_PER_STORE);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM applied"), TWO_PER_STORE);
    assert_int_equal(counter_value(f->path, "deduplicated"), TWO_PER_STORE);
}

/* ---- processes starting together on a new file (issue 9, item 29) ---- */

#define RACE_PROCS 4
#define RACE_ROUNDS 100 /* at most; under valgrind the time cap comes first */
#define RACE_SECONDS 15
#define RACE_BURNERS 4 /* on two cores: the load under which the race showed */

/* A child: waits for the start signal (the pipe closing), opens the new
 * store read-write as the proxy and the replicator do, writes one record
 * and closes. Exits 0, or 1 after printing the store's error. */
static void race_child(const fx *f, int start_fd)
{
    char c;
    while (read(start_fd, &c, 1) < 0 && errno == EINTR)
        ;
    store_options o = opts(f);
    o.busy_timeout_ms = 5000; /* the default busy_timeout */
    char err[256] = "";
    store *s = store_open(&o, err, sizeof err);
    if (!s || store_start(s, err, sizeof err) != 0) {
        fprintf(stderr, "child %d: %s\n", (int)getpid(), err);
        store_close(s);
        _exit(1);
    }
    /* A forked child inherits the parent's pool of random bytes (uuid7.c):
     * its own id, so that the four records are four rows. */
    record *r = mkrec(1, util_now_us());
    snprintf(r->id, sizeof r->id, "01900000-0000-7000-8000-%012d", (int)getpid());
    int rc = store_submit(s, r);
    store_close(s);
    _exit(rc == 0 ? 0 : 1);
}

/* Busy loops until killed (or the parent dies, or two minutes passed): the
 * CPU load under which the race showed. */
static pid_t burner(void)
{
    pid_t p = fork();
    if (p == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int64_t end = util_mono_us() + 120 * 1000000LL;
        volatile uint64_t x = 0;
        while (util_mono_us() < end)
            for (int i = 0; i < 1000000; i++)
                x++;
        _exit(0);
    }
    return p;
}

/* Waits for pid at most until deadline (CLOCK_MONOTONIC µs): its exit code,
 * or -1 after killing it. */
static int wait_bounded(pid_t pid, int64_t deadline_us)
{
    for (;;) {
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
        if (util_mono_us() > deadline_us) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        usleep(2000);
    }
}

/* sql_int without assertions (-1 on error): used while burners run. */
static int64_t race_rows(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Whether the file's header says WAL (bytes 18 and 19 are 2): no process
 * may have gone on in rollback mode. */
static bool race_wal(const char *path)
{
    unsigned char h[20] = {0};
    FILE *fp = fopen(path, "rb");
    size_t n = fp ? fread(h, 1, sizeof h, fp) : 0;
    if (fp)
        fclose(fp);
    return n == sizeof h && h[18] == 2 && h[19] == 2;
}

static void test_processes_open_new_file_at_once(void **state)
{
    fx *f = *state;
    pid_t burners[RACE_BURNERS];
    for (int b = 0; b < RACE_BURNERS; b++)
        burners[b] = burner();
    int failed = 0, wrong = 0, round = 0;
    int64_t stop = util_mono_us() + RACE_SECONDS * 1000000LL;
    for (; round < RACE_ROUNDS && (round < 3 || util_mono_us() < stop); round++) {
        const char *sfx[] = {"", "-wal", "-shm", "-journal"};
        for (size_t i = 0; i < 4; i++) {
            char p[160];
            snprintf(p, sizeof p, "%s%s", f->path, sfx[i]);
            unlink(p);
        }
        int go[2];
        assert_int_equal(pipe(go), 0);
        pid_t kids[RACE_PROCS];
        for (int k = 0; k < RACE_PROCS; k++) {
            kids[k] = fork();
            assert_true(kids[k] >= 0);
            if (kids[k] == 0) {
                close(go[1]);
                race_child(f, go[0]);
            }
        }
        close(go[0]);
        usleep(20000); /* every child waits on the pipe */
        close(go[1]);  /* all start at once */
        int64_t deadline = util_mono_us() + 60 * 1000000LL;
        for (int k = 0; k < RACE_PROCS; k++)
            if (wait_bounded(kids[k], deadline) != 0)
                failed++;
        if (!failed && (race_rows(f->path, "SELECT count(*) FROM requests") != RACE_PROCS ||
                        race_rows(f->path, "PRAGMA user_version") != STORE_SQLITE_SCHEMA_VERSION ||
                        !race_wal(f->path)))
            wrong++;
    }
    /* The burners go before any assertion can leave the test. */
    for (int b = 0; b < RACE_BURNERS; b++) {
        kill(burners[b], SIGKILL);
        waitpid(burners[b], NULL, 0);
    }
    assert_int_equal(failed, 0);
    assert_int_equal(wrong, 0);
}

/* ---- the same tests on PostgreSQL (PG_TESTNODE_NEED: fail under CI, skip
 * elsewhere when it is not installed) ---- */
#define PG_WRAP(fn)                                                                                \
    static void fn##_pg(void **state)                                                              \
    {                                                                                              \
        PG_TESTNODE_NEED(&pg);                                                                     \
        fn(state);                                                                                 \
    }
PG_WRAP(test_threads)
PG_WRAP(test_group_commit)
PG_WRAP(test_drop_policy)
PG_WRAP(test_block_policy)
PG_WRAP(test_duplicate_id_kept_once)
PG_WRAP(test_callbacks)
PG_WRAP(test_get_prefix_or_suffix)
PG_WRAP(test_id_abbrev)
PG_WRAP(test_retention_rows)
PG_WRAP(test_retention_age)

/* Several instances on one database prune one at a time: while another
 * session holds retention's advisory lock, this store deletes nothing; once
 * it is released, the old rows go. */
static void test_pg_retention_lock(void **state)
{
    PG_TESTNODE_NEED(&pg);
    fx *f = *state;
    PGconn *other = PQconnectdb(f->url);
    assert_int_equal(PQstatus(other), CONNECTION_OK);
    store_options o = opts(f);
    o.max_age_ms = 3600 * 1000;
    store *s = open_started(&o);
    PGresult *r = PQexec(other, "SELECT pg_advisory_lock(31084464474616954)");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    int64_t old = util_now_us() - 7200LL * 1000000;
    for (int i = 0; i < 5; i++)
        assert_int_equal(store_submit(s, mkrec(i, old + i)), 0);
    wait_stats(s, written_ge, 5);
    usleep(2500 * 1000); /* two of retention's checks, at least */
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.pruned, 0);
    assert_int_equal(st.errors, 0);
    r = PQexec(other, "SELECT pg_advisory_unlock(31084464474616954)");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    wait_stats(s, pruned_ge, 5);
    store_close(s);
    PQfinish(other);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 0);
}

PG_WRAP(test_outbox_rows)
PG_WRAP(test_outbox_confirmed)
PG_WRAP(test_ledger)
PG_WRAP(test_ledger_outcome)
PG_WRAP(test_stuck)
PG_WRAP(test_ledger_skip)
PG_WRAP(test_repl_lag)
PG_WRAP(test_repl_origins)
PG_WRAP(test_ledger_each)
PG_WRAP(test_ledger_retention)

/* ---- PostgreSQL only: several instances on one database ---- */

/* Two publishers (two handles) share the outbox: each row goes to one of
 * them, a confirm deletes only the confirmer's claims, and the claims of a
 * publisher whose lease ran out (a crash) are taken over. */
static void test_pg_outbox_claims_pg(void **state)
{
    PG_TESTNODE_NEED(&pg);
    fx *f = *state;
    store_options o = opts(f);
    store *a = open_started(&o), *b = open_started(&o);
    for (int i = 0; i < 10; i++) {
        record *r = mkrec(i, i);
        assert_int_equal(submit_with(a, r, mkmsg(r, i), NULL), 0);
    }
    wait_stats(a, written_ge, 10);
    store_outbox_row ra[10], rb[10];
    size_t na = 0, nb = 0;
    char err[256] = "";
    assert_int_equal(store_outbox_fetch(a, 0, 4, ra, &na, err, sizeof err), 0);
    assert_int_equal(na, 4);
    assert_int_equal(store_outbox_fetch(b, 0, 10, rb, &nb, err, sizeof err), 0);
    assert_int_equal(nb, 6);
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            assert_string_not_equal(ra[i].msg->id, rb[j].msg->id);
    for (size_t i = 1; i < nb; i++)
        assert_true(rb[i].seq > rb[i - 1].seq); /* claim order */
    int64_t a_last = ra[na - 1].seq, b_last = rb[nb - 1].seq;
    store_outbox_rows_free(ra, na);
    store_outbox_rows_free(rb, nb);

    /* Nothing new for either: B holds the rest, A its four. */
    assert_int_equal(store_outbox_fetch(a, a_last, 10, ra, &na, err, sizeof err), 0);
    assert_int_equal(na, 0);
    /* A's cursor back at 0 (a new broker session) gives A its own again. */
    assert_int_equal(store_outbox_fetch(a, 0, 10, ra, &na, err, sizeof err), 0);
    assert_int_equal(na, 4);
    store_outbox_rows_free(ra, na);

    store_outbox_confirmed(b, b_last, "x");
    wait_depth(a, 4);

    /* A "crashes": its lease runs out, B takes its rows over; A's late
     * confirm deletes nothing of B's. */
    sql_exec(f->path, "UPDATE outbox SET claimed_until = 0");
    assert_int_equal(store_outbox_fetch(b, b_last, 10, rb, &nb, err, sizeof err), 0);
    assert_int_equal(nb, 4);
    int64_t b_last2 = rb[nb - 1].seq;
    store_outbox_rows_free(rb, nb);
    store_outbox_confirmed(a, a_last, "y");
    store_close(a);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM outbox"), 4);
    store_outbox_confirmed(b, b_last2, "z");
    store_repl_stats rs = wait_depth(b, 0);
    assert_int_equal(rs.published, 10);

    /* outbox_wait: right after a fetch nothing is due; a local commit
     * wakes it, and so does the poll for other instances' rows. */
    assert_int_equal(store_outbox_fetch(b, b_last2, 10, rb, &nb, err, sizeof err), 0);
    assert_int_equal(nb, 0);
    assert_int_equal(store_outbox_wait(b, b_last2, 0), 0);
    int64_t t0 = util_mono_us();
    assert_int_equal(store_outbox_wait(b, b_last2, 5000), 1);
    assert_true(util_mono_us() - t0 < 1000000);
    store_close(b);
}

/* Two replicators (two handles): a message claimed by one is refused to
 * the other until its ledger row commits, then found applied; a claim that
 * ran out is taken over. */
static void test_pg_ledger_claims_pg(void **state)
{
    PG_TESTNODE_NEED(&pg);
    fx *f = *state;
    store_options o = opts(f);
    store *a = open_started(&o), *b = open_started(&o);
    char err[256] = "";
    record *r = mkrec(1, 1);
    char id[UUID7_STR_LEN + 1];
    uuid7_generate(id);
    assert_int_equal(store_ledger_has(a, id, err, sizeof err), 0);
    assert_int_equal(store_ledger_has(a, id, err, sizeof err), 0); /* its own claim */
    assert_int_equal(store_ledger_has(b, id, err, sizeof err), -1);
    assert_non_null(strstr(err, "being applied by another instance"));
    assert_int_equal(submit_with(a, r, NULL, id), 0);
    wait_stats(a, written_ge, 1);
    assert_int_equal(store_ledger_has(b, id, err, sizeof err), 1);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM applying"), 0);

    char id2[UUID7_STR_LEN + 1];
    uuid7_generate(id2);
    assert_int_equal(store_ledger_has(a, id2, err, sizeof err), 0);
    assert_int_equal(store_ledger_has(b, id2, err, sizeof err), -1);
    sql_exec(f->path, "UPDATE applying SET claimed_until = 0");
    assert_int_equal(store_ledger_has(b, id2, err, sizeof err), 0);
    assert_int_equal(store_ledger_has(a, id2, err, sizeof err), -1);
    store_close(a);
    store_close(b);
}

/* store_claim_lease: an instance that stops renewing its claims (it
 * crashed, or lost the database) holds them for the lease it was given,
 * then another instance takes them over: an outbox row and a message
 * being applied. */
static void test_pg_claim_lease_pg(void **state)
{
    PG_TESTNODE_NEED(&pg);
    fx *f = *state;
    store_options o = opts(f);
    o.claim_lease_ms = 1000;
    store *a = open_started(&o), *b = open_started(&o);
    record *r = mkrec(1, 1);
    assert_int_equal(submit_with(a, r, mkmsg(r, 1), NULL), 0);
    wait_stats(a, written_ge, 1);
    store_outbox_row rows[2];
    size_t n = 0;
    char err[256] = "", id[UUID7_STR_LEN + 1];
    uuid7_generate(id);
    assert_int_equal(store_outbox_fetch(a, 0, 2, rows, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    store_outbox_rows_free(rows, n);
    assert_int_equal(store_ledger_has(a, id, err, sizeof err), 0);
    /* Held: B gets neither, and is told how long the claim can last. */
    assert_int_equal(store_outbox_fetch(b, 0, 2, rows, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_ledger_has(b, id, err, sizeof err), -1);
    assert_non_null(strstr(err, "runs out within 1 s"));
    /* A goes silent for longer than the lease. */
    usleep(1200 * 1000);
    assert_int_equal(store_outbox_fetch(b, 0, 2, rows, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    store_outbox_rows_free(rows, n);
    assert_int_equal(store_ledger_has(b, id, err, sizeof err), 0);
    store_close(a);
    store_close(b);
}

/* Submits n records while the writer is paused, so that they make one
 * batch (store_batch permitting), and waits until `written` reaches want. */
static void one_batch(store *s, record **v, size_t n, uint64_t want)
{
    writeq_pause(s, true);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(store_submit(s, v[i]), 0);
    writeq_pause(s, false);
    wait_stats(s, written_ge, want);
}

/* Large batches send their request rows with COPY (pg_writer.c): every
 * column reads back exactly as through the INSERTs; a batch holding an id
 * already stored is refused by COPY and goes again through the INSERTs
 * (stored once, nothing lost); so does one holding a value the server
 * rejects, which the INSERTs then drop alone. */
static void test_pg_copy_batches_pg(void **state)
{
    PG_TESTNODE_NEED(&pg);
    fx *f = *state;
    store_options o = opts(f);
    store *s = open_started(&o);
    uint64_t copied = 0, refused = 0;
    assert_true(store_pg_test_copies(s, &copied, &refused));

    /* The same two records through the INSERTs (a batch of two) and through
     * COPY (with 20 others): the rows agree in every column but id. */
    record *small[2] = {rich_a(), rich_b()};
    record *big[22] = {rich_a(), rich_b()};
    for (int i = 0; i < 2; i++) {
        /* Two values test_roundtrip leaves at their defaults. */
        small[0]->resp_truncated = big[0]->resp_truncated = true;
        free(small[i]->replication);
        free(big[i]->replication);
        small[i]->replication = xstrdup("queued");
        big[i]->replication = xstrdup("queued");
    }
    one_batch(s, small, 2, 2);
    assert_true(store_pg_test_copies(s, &copied, &refused));
    assert_int_equal(copied, 0);
    char kept_id[UUID7_STR_LEN + 1];
    memcpy(kept_id, big[0]->id, sizeof kept_id);
    for (int i = 2; i < 22; i++)
        big[i] = mkrec(i, 1000 + i);
    one_batch(s, big, 22, 24);
    assert_true(store_pg_test_copies(s, &copied, &refused));
    assert_int_equal(copied, 1);
    assert_int_equal(refused, 0);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests WHERE started_at IN "
                                      "(1700000000000001, 1700000000000002)"),
                     4);
    assert_int_equal(
        sql_int(f->path,
                "SELECT count(DISTINCT md5(ROW(node, started_at, duration_us, upstream_us, "
                "client_addr, method, scheme, host, path, query, req_headers, req_body, "
                "req_body_size, req_truncated, status, resp_headers, resp_body, resp_body_size, "
                "resp_truncated, rule, origin, error, replication, req_encoding, req_body_note, "
                "resp_encoding, resp_body_note)::text)) FROM requests WHERE started_at IN "
                "(1700000000000001, 1700000000000002)"),
        2);

    /* A batch with an id already stored: refused by COPY, stored once. */
    record *dup[20];
    for (int i = 0; i < 20; i++)
        dup[i] = mkrec(100 + i, 2000 + i);
    memcpy(dup[7]->id, kept_id, sizeof kept_id);
    one_batch(s, dup, 20, 44);
    assert_true(store_pg_test_copies(s, &copied, &refused));
    assert_int_equal(refused, 1);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 43);

    /* A value the server rejects (a path that is not UTF-8): that record
     * alone is dropped. */
    record *bad[20];
    for (int i = 0; i < 20; i++)
        bad[i] = mkrec(200 + i, 3000 + i);
    free(bad[3]->path);
    bad[3]->path = xstrdup("/\xff");
    writeq_pause(s, true);
    for (int i = 0; i < 20; i++)
        assert_int_equal(store_submit(s, bad[i]), 0);
    writeq_pause(s, false);
    store_stats st;
    for (int i = 0; i < 2000; i++) {
        store_get_stats(s, &st);
        if (st.written + st.dropped >= 64)
            break;
        testutil_sleep_ms(5);
    }
    assert_int_equal(st.dropped, 1);
    assert_true(store_pg_test_copies(s, &copied, &refused));
    assert_int_equal(refused, 2);
    store_close(s);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 62);
}

/* Claims that ran out (a message sent to the dead letters, an instance
 * that died) are deleted by the writer's retention, with no setting
 * needed; a live claim stays. */
static void test_pg_claims_pruned_pg(void **state)
{
    PG_TESTNODE_NEED(&pg);
    fx *f = *state;
    store_options o = opts(f);
    store *s = open_started(&o);
    store_close(s);
    char sql[256];
    snprintf(sql, sizeof sql,
             "INSERT INTO applying VALUES ('old-1', 'x', 0), ('old-2', 'y', 5), ('live', 'z', "
             "%lld)",
             (long long)(util_now_us() + 60 * 1000000LL));
    sql_exec(f->path, sql);
    s = open_started(&o);
    for (int i = 0; i < 500 && sql_int(f->path, "SELECT count(*) FROM applying") != 1; i++)
        testutil_sleep_ms(10);
    store_close(s);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM applying WHERE message_id = 'live'"),
                     1);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM applying"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_stuck, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ledger_skip, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_repl_lag, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_repl_origins, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ledger_each, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_threads, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_commit_delay, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_commit_delay_skipped_for_waiters, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_drop_policy, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_drop_policy_bytes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_background_checkpoints, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ledger_retention, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_block_policy, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_retention_rows, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_retention_age, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_retry_when_locked, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_id_kept_once, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_close_without_start_drains, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_open_errors_and_migration, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_foreign_file, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_foreign_file_clash_and_version, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_get_prefix_or_suffix, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_id_abbrev, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_id_abbrev_clashes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_id_abbrev_large_store, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_queries, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_migration_v7_to_v9, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_migration_v1_to_v2, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_glob_plans, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_migration_v6_to_v7, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_outbox_rows, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_callbacks, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_outbox_confirmed, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ledger_outcome, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ledger, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_counters, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_outbox_wait, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_two_stores_one_file, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_processes_open_new_file_at_once, fx_setup,
                                        fx_teardown),
    };
    /* The tests whose promises are every backend's, on PostgreSQL. */
#define PG_TEST(fn) cmocka_unit_test_setup_teardown(fn##_pg, fx_pg_setup, fx_pg_teardown)
    const struct CMUnitTest pg_tests[] = {
        PG_TEST(test_threads),
        PG_TEST(test_group_commit),
        PG_TEST(test_drop_policy),
        PG_TEST(test_block_policy),
        PG_TEST(test_duplicate_id_kept_once),
        PG_TEST(test_callbacks),
        PG_TEST(test_get_prefix_or_suffix),
        PG_TEST(test_id_abbrev),
        PG_TEST(test_retention_rows),
        PG_TEST(test_retention_age),
        cmocka_unit_test_setup_teardown(test_pg_retention_lock, fx_pg_setup, fx_pg_teardown),
        PG_TEST(test_pg_outbox_claims),
        PG_TEST(test_pg_ledger_claims),
        PG_TEST(test_pg_claim_lease),
        PG_TEST(test_pg_claims_pruned),
        PG_TEST(test_pg_copy_batches),
        PG_TEST(test_ledger_retention),
        PG_TEST(test_outbox_rows),
        PG_TEST(test_outbox_confirmed),
        PG_TEST(test_ledger),
        PG_TEST(test_ledger_outcome),
        PG_TEST(test_stuck),
        PG_TEST(test_ledger_skip),
        PG_TEST(test_repl_lag),
        PG_TEST(test_repl_origins),
        PG_TEST(test_ledger_each),
    };
    int failed = cmocka_run_group_tests_name("sqlite", tests, NULL, NULL);
    return failed +
           cmocka_run_group_tests_name("postgresql", pg_tests, pg_group_setup, pg_group_teardown);
}
