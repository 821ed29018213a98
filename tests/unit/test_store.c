/* Unit tests for store (SQLite backend): round trip, group commit, full-queue
 * policies, retention, migrations, lookups and queries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "record.h"
#include "store.h"
#include "store_sqlite.h"
#include "util.h"

/* ---- fixtures ---- */

typedef struct fx {
    char dir[64];
    char path[128];
    char url[160];
} fx;

static int fx_setup(void **state)
{
    fx *f = xcalloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/restspy-store-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/t.db", f->dir);
    snprintf(f->url, sizeof f->url, "sqlite:%s", f->path);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    const char *sfx[] = {"", "-wal", "-shm", "-journal"};
    char p[160];
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, sfx[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static store_options opts(const fx *f)
{
    store_options o = {0};
    o.url = f->url;
    o.queue_max = 10000;
    o.batch_max = 100;
    o.on_full = STORE_FULL_BLOCK;
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

static int64_t sql_int(const char *path, const char *sql)
{
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

static void sql_exec(const char *path, const char *sql)
{
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

static void test_roundtrip(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    store *s = open_started(&o);

    record *a = mkrec(1, 1700000000000001);
    free(a->query);
    a->query = xstrdup("x=1&y=%20");
    record_headers_add(&a->req_headers, "Host", 4, "example.test", 12);
    record_headers_add(&a->req_headers, "X-Dup", 5, "1", 1);
    record_headers_add(&a->req_headers, "X-Dup", 5, "2 \"quoted\"", 10);
    static const char bin[] = {'\x00', '\xff', '\x01', 'a', '\x00', '\x80'};
    buf_append(&a->req_body, bin, sizeof bin);
    a->req_body_size = 1000;
    a->req_truncated = true;
    a->status = 201;
    record_headers_add(&a->resp_headers, "Content-Type", 12, "application/json", 16);
    buf_append_str(&a->resp_body, "{\"ok\":true}");
    a->resp_body_size = 11;
    char ida[UUID7_STR_LEN + 1];
    memcpy(ida, a->id, sizeof ida);

    /* b: every optional field empty. */
    record *b = record_new();
    b->started_at_us = 1700000000000002;
    b->method = xstrdup("GET");
    b->path = xstrdup("/");
    b->upstream_us = -1;
    b->error = xstrdup("upstream timeout");
    free(b->origin);
    b->origin = xstrdup("replicated");
    char idb[UUID7_STR_LEN + 1];
    memcpy(idb, b->id, sizeof idb);

    assert_int_equal(store_submit(s, a), 0);
    assert_int_equal(store_submit(s, b), 0);
    store_close(s);

    /* The schema as promised. */
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), 1);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM pragma_table_info('requests') WHERE "
                                      "name IN ('id','node','started_at','duration_us',"
                                      "'upstream_us','client_addr','method','scheme','host',"
                                      "'path','query','req_headers','req_body','req_body_size',"
                                      "'req_truncated','status','resp_headers','resp_body',"
                                      "'resp_body_size','resp_truncated','rule','origin','error')"),
                     23);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM pragma_table_info('requests')"), 23);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM pragma_index_list('requests') "
                                      "WHERE origin = 'c'"),
                     3);
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
    assert_int_equal(r->req_body.len, sizeof bin);
    assert_memory_equal(r->req_body.data, bin, sizeof bin);
    assert_int_equal(r->req_body_size, 1000);
    assert_true(r->req_truncated);
    assert_int_equal(r->status, 201);
    assert_string_equal(record_headers_get(&r->resp_headers, "content-type"), "application/json");
    assert_int_equal(r->resp_body.len, 11);
    assert_memory_equal(r->resp_body.data, "{\"ok\":true}", 11);
    assert_int_equal(r->resp_body_size, 11);
    assert_false(r->resp_truncated);
    assert_string_equal(r->rule, "default");
    assert_string_equal(r->origin, "local");
    assert_null(r->error);
    record_free(r);

    assert_int_equal(store_get(s, idb, &r, err, sizeof err), 1);
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
    store_sqlite_test_pause(s, true);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(store_submit(s, mkrec(i, i)), 0);
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.queued, 1000);
    assert_int_equal(st.written, 0);
    store_sqlite_test_pause(s, false);
    wait_stats(s, written_ge, 1000);
    store_get_stats(s, &st);
    /* Everything was queued at once: full batches of batch_max. */
    assert_int_equal(st.batches, 10);
    assert_int_equal(st.written, 1000);
    assert_int_equal(st.errors, 0);
    store_close(s);
}

static void test_drop_policy(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    o.queue_max = 4;
    o.on_full = STORE_FULL_DROP;
    store *s = open_started(&o);
    store_sqlite_test_pause(s, true);
    int ok = 0, refused = 0;
    for (int i = 0; i < 10; i++) {
        if (store_submit(s, mkrec(i, i)) == 0)
            ok++;
        else
            refused++;
    }
    assert_int_equal(ok, 4);
    assert_int_equal(refused, 6);
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.submitted, 4);
    assert_int_equal(st.dropped, 6);
    assert_int_equal(st.blocked, 0);
    store_sqlite_test_pause(s, false);
    store_close(s);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 4);
}

static void *submit_ten(void *arg)
{
    store *s = arg;
    intptr_t bad = 0;
    for (int i = 0; i < 10; i++)
        if (store_submit(s, mkrec(i, i)) != 0)
            bad++;
    return (void *)bad;
}

static void test_block_policy(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    o.queue_max = 2;
    o.batch_max = 1;
    store *s = open_started(&o);
    store_sqlite_test_pause(s, true);
    pthread_t t;
    pthread_create(&t, NULL, submit_ten, s);
    wait_stats(s, blocked_ge, 1);
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.submitted, 2); /* the third one waits for room */
    assert_int_equal(st.dropped, 0);
    store_sqlite_test_pause(s, false);
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
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), 1);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM requests"), 0);
    s = store_open(&o, err, sizeof err); /* reopening is a no-op migration */
    assert_non_null(s);
    store_close(s);
    s = open_ro(f);
    store_close(s);

    sql_exec(f->path, "PRAGMA user_version = 7");
    assert_null(store_open(&o, err, sizeof err));
    assert_string_equal(err, "store schema version 7 is newer than this restspy (1)");
    o.read_only = true;
    assert_null(store_open(&o, err, sizeof err));
    assert_string_equal(err, "store schema version 7 is newer than this restspy (1)");
    o.read_only = false;

    /* Not a database at all. */
    fp = fopen(f->path, "w");
    fputs("this is not an sqlite file, just text that is long enough to have a header......", fp);
    fclose(fp);
    assert_null(store_open(&o, err, sizeof err));
    assert_non_null(strstr(err, f->path));

    o.url = "mysql://x";
    assert_null(store_open(&o, err, sizeof err));
    assert_string_equal(err, "unsupported store URL 'mysql://x' (expected sqlite:PATH)");
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

static void test_get_prefix(void **state)
{
    fx *f = *state;
    store_options o = opts(f);
    store *s = open_started(&o);
    const char *ids[] = {"01900000-aaaa-7000-8000-00000000000a",
                         "01900000-aaaa-7000-8000-00000000000b",
                         "01900001-bbbb-7000-8000-00000000000c"};
    for (int i = 0; i < 3; i++) {
        record *r = mkrec(i, i);
        snprintf(r->id, sizeof r->id, "%s", ids[i]);
        assert_int_equal(store_submit(s, r), 0);
    }
    store_close(s);

    s = open_ro(f);
    record *r = NULL;
    char err[256] = "";
    assert_int_equal(store_get(s, "01900000", &r, err, sizeof err), -1);
    assert_string_equal(err, "id prefix 01900000 is ambiguous");
    assert_null(r);
    assert_int_equal(store_get(s, "01900001", &r, err, sizeof err), 1);
    assert_string_equal(r->id, ids[2]);
    record_free(r);
    assert_int_equal(store_get(s, "01900000-AAAA-7000-8000-00000000000B", &r, err, sizeof err), 1);
    assert_string_equal(r->id, ids[1]);
    record_free(r);
    assert_int_equal(store_get(s, ids[0], &r, err, sizeof err), 1);
    assert_string_equal(r->id, ids[0]);
    record_free(r);
    assert_int_equal(store_get(s, "01900002", &r, err, sizeof err), 0);
    assert_null(r);
    assert_int_equal(store_get(s, "01900000-aaaa-7000-8000-00000000000a0", &r, err, sizeof err), 0);
    assert_int_equal(store_get(s, "0190", &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "too short"));
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_threads, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_drop_policy, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_block_policy, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_retention_rows, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_retention_age, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_retry_when_locked, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_id_kept_once, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_close_without_start_drains, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_open_errors_and_migration, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_get_prefix, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_queries, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
