/* bench_store: rows/s of restspy's SQLite writer against a plain insert loop
 * on the same machine (issue 5), one mode per run, one JSON object on stdout.
 *
 * --mode restspy: store_open/store_start on a fresh file with the proxy's
 * defaults (config_new: store_queue, store_batch, store_commit_delay,
 * busy_timeout; on_full block), then --producers threads each build records
 * like the proxy's (bench_common.h) and store_submit them as fast as the
 * store accepts (backpressure). The clock starts when the producers are
 * started and stops when the last record of every producer has been
 * committed (its store_submit_unit callback ran: the writer commits in queue
 * order, so everything before it is committed too). store_close (final
 * checkpoint) is timed separately. Reported: the writer's batches and the
 * average batch size it ended up using (and as "batch" the rows per
 * transaction that give the plain loop the same number of transactions),
 * CPU of the whole process and of the writer thread alone (schedstat).
 *
 * --mode plain: the limit. A fresh file is created by store_open/store_close
 * (so the schema is restspy's, whatever it becomes), then one connection
 * (WAL, synchronous=NORMAL, NOMUTEX like restspy's writer) and one prepared
 * INSERT OR IGNORE over every column of `requests` (read from PRAGMA
 * table_info), bound once to the values of one such record (header JSON made
 * by restspy's own encoder); per row only id (pre-generated UUIDv7s, in
 * order) and started_at are rebound; BEGIN/COMMIT around every --batch rows.
 * Clock: first BEGIN to last COMMIT; the closing checkpoint is timed
 * separately.
 *
 * PostgreSQL (issue 17): --db postgresql://... (an empty database) instead
 * of a path. --mode restspy then runs restspy's PostgreSQL writer (the same
 * producers and clock); --mode copy is its limit: the schema made by
 * store_open/store_close as above, then one connection and, per --batch
 * rows, one `COPY requests (every column but seq) FROM STDIN (FORMAT
 * binary)` (its own transaction), every row encoded from one record as the
 * plain loop binds it (column types read from information_schema), id and
 * started_at new per row. Clock: first COPY to last COPY's end.
 * --mode copy-staged is what a COPY writer would have to do to keep
 * restspy's promise that a record sent twice is stored once (COPY cannot
 * skip a duplicate id): per batch, BEGIN, the same COPY into a temporary
 * table (made once, ON COMMIT DELETE ROWS), `INSERT INTO requests SELECT
 * ... FROM it ON CONFLICT (id) DO NOTHING`, COMMIT. It measures whether
 * that path would beat the writer's pipelined INSERTs (issue 17: "whichever
 * measures faster").
 *
 * Every mode checks afterwards that the store holds exactly --rows rows. */
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_common.h"
#include "capture/config.h"
#include "capture/record.h"
#include "store/store.h"
#include "base/util.h"
#include "base/uuid7.h"

#define PROG "bench_store"

typedef struct opts {
    const char *mode;
    const char *db;
    uint64_t rows;
    uint64_t producers;
    uint64_t batch;          /* plain: rows per transaction; restspy: batch_max (0 = default) */
    uint64_t queue;          /* restspy: queue_max (0 = default) */
    int64_t commit_delay_us; /* restspy: -1 = default */
} opts;

static void usage(void)
{
    fprintf(stderr, "usage: bench_store --mode restspy|plain|copy|copy-staged --db PATH|URL "
                    "[--rows N]\n"
                    "                   [--producers P]"
                    "                   [--batch B] [--queue Q] [--commit-delay-us U]\n"
                    "  --rows N            rows to write (default 200000)\n"
                    "  --producers P       restspy: submitting threads (default 1)\n"
                    "  --batch B           plain, copy, copy-staged: rows per transaction "
                    "(default 512);\n"
                    "                      restspy: store_batch (default: restspy's)\n"
                    "  --queue Q           restspy: store_queue (default: restspy's)\n"
                    "  --commit-delay-us U restspy: group commit window (default: restspy's)\n"
                    "PATH must not exist; URL (postgresql://...) names an empty database\n"
                    "(restspy and copy modes). Prints one JSON object on stdout.\n");
    exit(2);
}

static double secs(int64_t from_us, int64_t to_us)
{
    return (double)(to_us - from_us) / 1e6;
}

static long long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : 0;
}

static bool is_pg(const char *db)
{
    return strncmp(db, "postgresql://", 13) == 0 || strncmp(db, "postgres://", 11) == 0;
}

static PGconn *pg_connect_or_die(const char *url)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK)
        bench_die(PROG, "cannot connect to %s: %s", url, PQerrorMessage(c));
    return c;
}

/* The first column of sql's one row on the database at url. */
static int64_t pg_int(const char *url, const char *sql)
{
    PGconn *c = pg_connect_or_die(url);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        bench_die(PROG, "%s: %s", sql, PQerrorMessage(c));
    int64_t n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return n;
}

/* What the store occupies: the file, or the table with its indexes. */
static long long db_bytes(const char *db)
{
    return is_pg(db) ? (long long)pg_int(db, "SELECT pg_total_relation_size('requests')")
                     : file_size(db);
}

/* Rows in `requests` of the closed store db. */
static int64_t count_rows(const char *path)
{
    if (is_pg(path))
        return pg_int(path, "SELECT count(*) FROM requests");
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        bench_die(PROG, "cannot reopen %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM requests", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    if (n < 0)
        bench_die(PROG, "cannot count rows in %s: %s", path, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* Dies unless the closed store holds exactly the rows asked for. */
static void check_rows(const opts *o)
{
    int64_t n = count_rows(o->db);
    if (n != (int64_t)o->rows)
        bench_die(PROG, "%s holds %lld rows, expected %llu", o->db, (long long)n,
                  (unsigned long long)o->rows);
}

/* ---- restspy's store ---- */

typedef struct shared {
    store *s;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    unsigned done; /* producers whose last record is committed */
    unsigned failed;
} shared;

typedef struct producer {
    shared *sh;
    uint64_t rows;
    pthread_t thread;
} producer;

static void on_done(void *ud, int status)
{
    shared *sh = ud;
    pthread_mutex_lock(&sh->mu);
    if (status == 0)
        sh->done++;
    else
        sh->failed++;
    pthread_cond_signal(&sh->cond);
    pthread_mutex_unlock(&sh->mu);
}

static void *producer_main(void *arg)
{
    producer *p = arg;
    for (uint64_t i = 0; i < p->rows; i++) {
        record *r = bench_make_record("bench");
        store_unit u = {.rec = r, .rec_row = true};
        int rc = i + 1 < p->rows ? store_submit_unit(p->sh->s, &u, NULL, NULL)
                                 : store_submit_unit(p->sh->s, &u, on_done, p->sh);
        if (rc != 0)
            bench_die(PROG, "store_submit refused record %llu", (unsigned long long)i);
    }
    return NULL;
}

static void run_restspy(const opts *o)
{
    config *c = config_new();
    char url[4096];
    snprintf(url, sizeof url, "%s%s", is_pg(o->db) ? "" : "sqlite:", o->db);
    store_options so = {0};
    so.url = url;
    so.queue_max = o->queue ? o->queue : c->store_queue;
    so.batch_max = o->batch ? o->batch : c->store_batch;
    so.busy_timeout_ms = c->busy_timeout_ms;
    so.commit_delay_us =
        o->commit_delay_us >= 0 ? (uint64_t)o->commit_delay_us : c->store_commit_delay_ms * 1000;
    config_unref(c);
    if (so.batch_max > so.queue_max)
        bench_die(PROG, "--batch %llu exceeds the queue (%llu)", (unsigned long long)so.batch_max,
                  (unsigned long long)so.queue_max);

    char err[512] = "";
    shared sh = {0};
    sh.s = store_open(&so, err, sizeof err);
    if (!sh.s)
        bench_die(PROG, "store_open: %s", err);
    int tids[256];
    size_t ntids = bench_tids(tids, 256);
    if (store_start(sh.s, err, sizeof err) != 0)
        bench_die(PROG, "store_start: %s", err);
    int writer = bench_new_tid(tids, ntids);
    pthread_mutex_init(&sh.mu, NULL);
    pthread_cond_init(&sh.cond, NULL);

    unsigned np = (unsigned)o->producers;
    producer *ps = xcalloc(np, sizeof *ps);
    double c0 = bench_cpu_s(), w0 = bench_tid_cpu_s(writer);
    int64_t t0 = util_mono_us();
    for (unsigned i = 0; i < np; i++) {
        ps[i].sh = &sh;
        ps[i].rows = o->rows / np + (i < o->rows % np ? 1 : 0);
        int rc = pthread_create(&ps[i].thread, NULL, producer_main, &ps[i]);
        if (rc != 0)
            bench_die(PROG, "cannot start a producer: %s", strerror(rc));
    }
    pthread_mutex_lock(&sh.mu);
    while (sh.done + sh.failed < np)
        pthread_cond_wait(&sh.cond, &sh.mu);
    unsigned failed = sh.failed;
    pthread_mutex_unlock(&sh.mu);
    int64_t t1 = util_mono_us();
    double c1 = bench_cpu_s(), w1 = bench_tid_cpu_s(writer);
    if (failed)
        bench_die(PROG, "the store dropped a record");
    for (unsigned i = 0; i < np; i++)
        pthread_join(ps[i].thread, NULL);
    store_stats st;
    store_get_stats(sh.s, &st);
    store_close(sh.s);
    int64_t t2 = util_mono_us();
    free(ps);
    pthread_cond_destroy(&sh.cond);
    pthread_mutex_destroy(&sh.mu);

    if (st.written != o->rows || st.dropped || st.errors)
        bench_die(PROG, "store wrote %llu of %llu rows (dropped %llu, errors %llu)",
                  (unsigned long long)st.written, (unsigned long long)o->rows,
                  (unsigned long long)st.dropped, (unsigned long long)st.errors);
    check_rows(o);
    double s = secs(t0, t1);
    /* The plain loop gets the same number of transactions: ceil(rows/batches). */
    uint64_t eff = st.batches ? (o->rows + st.batches - 1) / st.batches : 0;
    printf("{\"mode\":\"restspy\",\"rows\":%llu,\"seconds\":%.6f,\"rows_per_s\":%.1f,"
           "\"seconds_with_close\":%.6f,\"producers\":%u,\"batches\":%llu,\"avg_batch\":%.2f,"
           "\"batch\":%llu,\"batch_max\":%llu,\"queue_max\":%llu,\"commit_delay_us\":%llu,"
           "\"blocked\":%llu,\"cpu_seconds\":%.6f,\"cpu_us_per_row\":%.3f,"
           "\"writer_cpu_us_per_row\":%.3f,\"db_bytes\":%lld}\n",
           (unsigned long long)o->rows, s, (double)o->rows / s, secs(t0, t2), np,
           (unsigned long long)st.batches,
           st.batches ? (double)st.written / (double)st.batches : 0.0, (unsigned long long)eff,
           (unsigned long long)so.batch_max, (unsigned long long)so.queue_max,
           (unsigned long long)so.commit_delay_us, (unsigned long long)st.blocked, c1 - c0,
           (c1 - c0) * 1e6 / (double)o->rows, (w1 - w0) * 1e6 / (double)o->rows, db_bytes(o->db));
}

/* ---- the plain loop ---- */

static void exec_or_die(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        bench_die(PROG, "%s: %s", sql, msg ? msg : sqlite3_errmsg(db));
}

/* What the plain INSERT binds to each column, from one record; id and
 * started_at are rebound per row. */
typedef struct plain_row {
    record *r;
    buf reqh, resph; /* header JSON, as restspy stores it */
} plain_row;

/* One column's value in a plain loop's row, from the record (pointers
 * into it: valid while it lives). */
typedef struct colval {
    enum { CV_NULL, CV_TEXT, CV_INT, CV_BLOB } kind;
    const char *p; /* CV_TEXT, CV_BLOB */
    size_t len;
    int64_t i; /* CV_INT (booleans 0/1) */
} colval;

static colval cv_text(const char *v)
{
    return v ? (colval){.kind = CV_TEXT, .p = v, .len = strlen(v)} : (colval){.kind = CV_NULL};
}

static colval cv_int(int64_t v)
{
    return (colval){.kind = CV_INT, .i = v};
}

static colval cv_bytes(const buf *b, bool blob)
{
    return (colval){.kind = blob ? CV_BLOB : CV_TEXT, .p = b->len ? b->data : "", .len = b->len};
}

/* What the plain loops write in column col of `requests`, as restspy does. */
static colval column_value(const char *col, const plain_row *p)
{
    const record *r = p->r;
#define IS(x) (strcmp(col, x) == 0)
    if (IS("id"))
        return cv_text(r->id);
    if (IS("node"))
        return cv_text(r->node);
    if (IS("started_at"))
        return cv_int(r->started_at_us);
    if (IS("duration_us"))
        return cv_int(r->duration_us);
    if (IS("upstream_us"))
        return cv_int(r->upstream_us);
    if (IS("client_addr"))
        return cv_text(r->client_addr);
    if (IS("method"))
        return cv_text(r->method);
    if (IS("scheme"))
        return cv_text(r->scheme);
    if (IS("host"))
        return cv_text(r->host);
    if (IS("path"))
        return cv_text(r->path);
    if (IS("query"))
        return cv_text(r->query);
    if (IS("req_headers"))
        return cv_bytes(&p->reqh, false);
    if (IS("req_body"))
        return cv_bytes(&r->req_body, true);
    if (IS("req_body_size"))
        return cv_int((int64_t)r->req_body_size);
    if (IS("req_truncated"))
        return cv_int(r->req_truncated);
    if (IS("status"))
        return cv_int(r->status);
    if (IS("resp_headers"))
        return cv_bytes(&p->resph, false);
    if (IS("resp_body"))
        return cv_bytes(&r->resp_body, true);
    if (IS("resp_body_size"))
        return cv_int((int64_t)r->resp_body_size);
    if (IS("resp_truncated"))
        return cv_int(r->resp_truncated);
    if (IS("rule"))
        return cv_text(r->rule);
    if (IS("origin"))
        return cv_text(r->origin);
    if (IS("error"))
        return cv_text(r->error);
    if (IS("replication"))
        return cv_text(r->replication);
    if (IS("req_encoding"))
        return cv_text(r->req_encoding);
    if (IS("resp_encoding"))
        return cv_text(r->resp_encoding);
    if (IS("req_body_note"))
        return cv_text(r->req_body_note);
    if (IS("resp_body_note"))
        return cv_text(r->resp_body_note);
#undef IS
    bench_die(PROG, "column requests.%s is new to bench_store: teach column_value about it", col);
}

static int bind_column(sqlite3_stmt *st, int i, const char *col, const plain_row *p)
{
    colval v = column_value(col, p);
    switch (v.kind) {
    case CV_TEXT:
        return sqlite3_bind_text64(st, i, v.p, v.len, SQLITE_STATIC, SQLITE_UTF8);
    case CV_INT:
        return sqlite3_bind_int64(st, i, v.i);
    case CV_BLOB:
        return sqlite3_bind_blob64(st, i, v.p, v.len, SQLITE_STATIC);
    case CV_NULL:
        break;
    }
    return sqlite3_bind_null(st, i);
}

/* The schema of db, made by restspy itself. */
static void make_schema(const char *db)
{
    config *c = config_new();
    char url[4096], err[512] = "";
    snprintf(url, sizeof url, "%s%s", is_pg(db) ? "" : "sqlite:", db);
    store_options so = {0};
    so.url = url;
    so.queue_max = 1;
    so.batch_max = 1;
    so.busy_timeout_ms = c->busy_timeout_ms;
    config_unref(c);
    store *s = store_open(&so, err, sizeof err);
    if (!s)
        bench_die(PROG, "store_open: %s", err);
    store_close(s);
}

/* The plain loops' row: one record and its header JSON (owned). */
static void plain_row_init(plain_row *p)
{
    p->r = bench_make_record("bench");
    buf_init(&p->reqh);
    buf_init(&p->resph);
    http_headers_to_json(&p->r->req_headers, &p->reqh);
    http_headers_to_json(&p->r->resp_headers, &p->resph);
}

static void plain_row_free(plain_row *p)
{
    record_free(p->r);
    buf_free(&p->reqh);
    buf_free(&p->resph);
}

/* rows UUIDv7 ids, in order (owned by the caller). */
static char (*make_ids(uint64_t rows))[UUID7_STR_LEN + 1]
{
    char(*ids)[UUID7_STR_LEN + 1] = xmalloc(rows * sizeof *ids);
    for (uint64_t i = 0; i < rows; i++)
        uuid7_generate(ids[i]);
    return ids;
}

static void run_plain(const opts *o)
{
    if (is_pg(o->db))
        bench_die(PROG, "--mode plain takes a SQLite path (copy is PostgreSQL's limit)");
    make_schema(o->db);

    sqlite3 *db = NULL;
    /* NOMUTEX as restspy's writer connection (and, through the store_open
     * above, SQLite's memory statistics off as in restspy). */
    if (sqlite3_open_v2(o->db, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        bench_die(PROG, "cannot open %s: %s", o->db, db ? sqlite3_errmsg(db) : "out of memory");
    exec_or_die(db, "PRAGMA journal_mode=WAL");
    exec_or_die(db, "PRAGMA synchronous=NORMAL");

    /* INSERT OR IGNORE INTO requests (every column) VALUES (?, ...) */
    buf cols = BUF_INIT, sql = BUF_INIT;
    char names[64][64];
    int ncol = 0;
    sqlite3_stmt *ti = NULL;
    if (sqlite3_prepare_v2(db, "SELECT name FROM pragma_table_info('requests') ORDER BY cid", -1,
                           &ti, NULL) != SQLITE_OK)
        bench_die(PROG, "cannot read the schema: %s", sqlite3_errmsg(db));
    while (sqlite3_step(ti) == SQLITE_ROW) {
        if (ncol == 64)
            bench_die(PROG, "requests has more than 64 columns");
        snprintf(names[ncol], sizeof names[ncol], "%s", (const char *)sqlite3_column_text(ti, 0));
        buf_appendf(&cols, "%s%s", ncol ? ", " : "", names[ncol]);
        ncol++;
    }
    sqlite3_finalize(ti);
    if (ncol == 0)
        bench_die(PROG, "no table requests in %s", o->db);
    buf_appendf(&sql, "INSERT OR IGNORE INTO requests (%s) VALUES (?", cols.data);
    for (int i = 1; i < ncol; i++)
        buf_append_str(&sql, ",?");
    buf_append_str(&sql, ")");
    sqlite3_stmt *ins = NULL;
    if (sqlite3_prepare_v3(db, sql.data, -1, SQLITE_PREPARE_PERSISTENT, &ins, NULL) != SQLITE_OK)
        bench_die(PROG, "cannot prepare the INSERT: %s", sqlite3_errmsg(db));

    plain_row p;
    plain_row_init(&p);
    int id_col = 0, started_col = 0;
    for (int i = 0; i < ncol; i++) {
        if (bind_column(ins, i + 1, names[i], &p) != SQLITE_OK)
            bench_die(PROG, "cannot bind %s: %s", names[i], sqlite3_errmsg(db));
        if (strcmp(names[i], "id") == 0)
            id_col = i + 1;
        else if (strcmp(names[i], "started_at") == 0)
            started_col = i + 1;
    }
    if (!id_col || !started_col)
        bench_die(PROG, "requests has no id or started_at column");

    char(*ids)[UUID7_STR_LEN + 1] = make_ids(o->rows);
    int64_t started = util_now_us();

    uint64_t batches = 0;
    double c0 = bench_cpu_s();
    int64_t t0 = util_mono_us();
    for (uint64_t i = 0; i < o->rows;) {
        exec_or_die(db, "BEGIN");
        for (uint64_t j = 0; j < o->batch && i < o->rows; j++, i++) {
            if (sqlite3_bind_text(ins, id_col, ids[i], UUID7_STR_LEN, SQLITE_STATIC) != SQLITE_OK ||
                sqlite3_bind_int64(ins, started_col, started + (int64_t)i) != SQLITE_OK)
                bench_die(PROG, "bind: %s", sqlite3_errmsg(db));
            if (sqlite3_step(ins) != SQLITE_DONE)
                bench_die(PROG, "insert: %s", sqlite3_errmsg(db));
            sqlite3_reset(ins);
        }
        exec_or_die(db, "COMMIT");
        batches++;
    }
    int64_t t1 = util_mono_us();
    double c1 = bench_cpu_s();
    sqlite3_finalize(ins);
    if (sqlite3_close(db) != SQLITE_OK)
        bench_die(PROG, "closing %s failed", o->db);
    int64_t t2 = util_mono_us();
    free(ids);
    plain_row_free(&p);
    buf_free(&cols);
    buf_free(&sql);

    check_rows(o);
    double sec = secs(t0, t1);
    printf("{\"mode\":\"plain\",\"rows\":%llu,\"seconds\":%.6f,\"rows_per_s\":%.1f,"
           "\"seconds_with_close\":%.6f,\"batch\":%llu,\"batches\":%llu,\"columns\":%d,"
           "\"cpu_seconds\":%.6f,\"cpu_us_per_row\":%.3f,\"db_bytes\":%lld}\n",
           (unsigned long long)o->rows, sec, (double)o->rows / sec, secs(t0, t2),
           (unsigned long long)o->batch, (unsigned long long)batches, ncol, c1 - c0,
           (c1 - c0) * 1e6 / (double)o->rows, file_size(o->db));
}

/* ---- the COPY loop (PostgreSQL) ---- */

static void put_u16(buf *b, uint16_t v)
{
    uint16_t n = htons(v);
    buf_append(b, &n, 2);
}

static void put_u32(buf *b, uint32_t v)
{
    uint32_t n = htonl(v);
    buf_append(b, &n, 4);
}

/* One field of COPY's binary format: its length, then its bytes in the
 * column's binary form (type: information_schema's data_type). */
static void put_field(buf *b, const char *type, colval v)
{
    if (v.kind == CV_NULL) {
        put_u32(b, UINT32_MAX); /* -1: NULL */
        return;
    }
    if (strcmp(type, "bigint") == 0) {
        put_u32(b, 8);
        put_u32(b, (uint32_t)((uint64_t)v.i >> 32));
        put_u32(b, (uint32_t)v.i);
    } else if (strcmp(type, "integer") == 0) {
        put_u32(b, 4);
        put_u32(b, (uint32_t)v.i);
    } else if (strcmp(type, "boolean") == 0) {
        put_u32(b, 1);
        buf_append_char(b, v.i ? 1 : 0);
    } else if (strcmp(type, "jsonb") == 0) {
        put_u32(b, (uint32_t)v.len + 1);
        buf_append_char(b, 1); /* jsonb's binary format version */
        buf_append(b, v.p, v.len);
    } else if (strcmp(type, "text") == 0 || strcmp(type, "bytea") == 0) {
        put_u32(b, (uint32_t)v.len);
        buf_append(b, v.p, v.len);
    } else {
        bench_die(PROG, "a column of type %s is new to bench_store: teach put_field about it",
                  type);
    }
}

/* Runs sql on c or dies. */
static void pg_do(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        bench_die(PROG, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

static void run_copy(const opts *o, bool staged)
{
    if (!is_pg(o->db))
        bench_die(PROG, "--mode copy takes a postgresql:// URL");
    make_schema(o->db);
    PGconn *c = pg_connect_or_die(o->db);
    PGresult *r = PQexec(c, "SELECT column_name, data_type FROM information_schema.columns "
                            "WHERE table_name = 'requests' AND column_name <> 'seq' "
                            "ORDER BY ordinal_position");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) == 0)
        bench_die(PROG, "cannot read the schema: %s", PQerrorMessage(c));
    int ncol = PQntuples(r);
    plain_row p;
    plain_row_init(&p);
    buf sql = BUF_INIT, cols = BUF_INIT, ins = BUF_INIT;
    for (int i = 0; i < ncol; i++)
        buf_appendf(&cols, "%s%s", i ? ", " : "", PQgetvalue(r, i, 0));
    buf_appendf(&sql, "COPY %s (%s) FROM STDIN (FORMAT binary)", staged ? "stage" : "requests",
                cols.data);
    buf_appendf(&ins, "INSERT INTO requests (%s) SELECT %s FROM stage ON CONFLICT (id) DO NOTHING",
                cols.data, cols.data);
    if (staged) {
        buf mk = BUF_INIT;
        buf_appendf(&mk,
                    "CREATE TEMP TABLE stage ON COMMIT DELETE ROWS AS SELECT %s FROM requests "
                    "WITH NO DATA",
                    cols.data);
        pg_do(c, mk.data);
        buf_free(&mk);
    }

    char(*ids)[UUID7_STR_LEN + 1] = make_ids(o->rows);
    int64_t started = util_now_us();
    buf data = BUF_INIT;
    uint64_t batches = 0;
    double c0 = bench_cpu_s();
    int64_t t0 = util_mono_us();
    for (uint64_t i = 0; i < o->rows; batches++) {
        if (staged)
            pg_do(c, "BEGIN");
        PGresult *cr = PQexec(c, sql.data);
        if (PQresultStatus(cr) != PGRES_COPY_IN)
            bench_die(PROG, "%s: %s", sql.data, PQerrorMessage(c));
        PQclear(cr);
        buf_reset(&data);
        buf_append(&data, "PGCOPY\n\377\r\n\0", 11);
        put_u32(&data, 0); /* flags */
        put_u32(&data, 0); /* header extension */
        for (uint64_t j = 0; j < o->batch && i < o->rows; j++, i++) {
            put_u16(&data, (uint16_t)ncol);
            for (int k = 0; k < ncol; k++) {
                const char *col = PQgetvalue(r, k, 0);
                colval v = strcmp(col, "id") == 0           ? cv_text(ids[i])
                           : strcmp(col, "started_at") == 0 ? cv_int(started + (int64_t)i)
                                                            : column_value(col, &p);
                put_field(&data, PQgetvalue(r, k, 1), v);
            }
        }
        put_u16(&data, UINT16_MAX); /* -1: the end */
        if (PQputCopyData(c, data.data, (int)data.len) != 1 || PQputCopyEnd(c, NULL) != 1)
            bench_die(PROG, "COPY: %s", PQerrorMessage(c));
        while ((cr = PQgetResult(c))) {
            if (PQresultStatus(cr) != PGRES_COMMAND_OK)
                bench_die(PROG, "COPY: %s", PQerrorMessage(c));
            PQclear(cr);
        }
        if (staged) {
            pg_do(c, ins.data);
            pg_do(c, "COMMIT");
        }
    }
    int64_t t1 = util_mono_us();
    double c1 = bench_cpu_s();
    PQclear(r);
    PQfinish(c);
    free(ids);
    plain_row_free(&p);
    buf_free(&sql);
    buf_free(&cols);
    buf_free(&ins);
    buf_free(&data);

    check_rows(o);
    double sec = secs(t0, t1);
    printf("{\"mode\":\"%s\",\"rows\":%llu,\"seconds\":%.6f,\"rows_per_s\":%.1f,"
           "\"batch\":%llu,\"batches\":%llu,\"columns\":%d,\"cpu_seconds\":%.6f,"
           "\"cpu_us_per_row\":%.3f,\"db_bytes\":%lld}\n",
           staged ? "copy-staged" : "copy", (unsigned long long)o->rows, sec, (double)o->rows / sec,
           (unsigned long long)o->batch, (unsigned long long)batches, ncol, c1 - c0,
           (c1 - c0) * 1e6 / (double)o->rows, db_bytes(o->db));
}

int main(int argc, char **argv)
{
    opts o = {.rows = 200000, .producers = 1, .commit_delay_us = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--mode") == 0)
            o.mode = bench_arg(PROG, argc, argv, &i);
        else if (strcmp(a, "--db") == 0)
            o.db = bench_arg(PROG, argc, argv, &i);
        else if (strcmp(a, "--rows") == 0)
            o.rows = bench_num(PROG, a, bench_arg(PROG, argc, argv, &i), 1, 100000000);
        else if (strcmp(a, "--producers") == 0)
            o.producers = bench_num(PROG, a, bench_arg(PROG, argc, argv, &i), 1, 64);
        else if (strcmp(a, "--batch") == 0)
            o.batch = bench_num(PROG, a, bench_arg(PROG, argc, argv, &i), 1, 10000000);
        else if (strcmp(a, "--queue") == 0)
            o.queue = bench_num(PROG, a, bench_arg(PROG, argc, argv, &i), 1, 100000000);
        else if (strcmp(a, "--commit-delay-us") == 0)
            o.commit_delay_us =
                (int64_t)bench_num(PROG, a, bench_arg(PROG, argc, argv, &i), 0, 1000000);
        else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            usage();
        else
            bench_die(PROG, "unknown option %s (see --help)", a);
    }
    if (!o.mode || !o.db)
        bench_die(PROG, "--mode and --db are required (see --help)");
    if (!is_pg(o.db) && access(o.db, F_OK) == 0)
        bench_die(PROG, "%s exists: give a fresh path", o.db);
    if (o.producers > o.rows)
        bench_die(PROG, "more producers than rows");
    if (strcmp(o.mode, "restspy") == 0) {
        run_restspy(&o);
    } else if (strcmp(o.mode, "plain") == 0) {
        if (!o.batch)
            o.batch = 512;
        run_plain(&o);
    } else if (strcmp(o.mode, "copy") == 0 || strcmp(o.mode, "copy-staged") == 0) {
        if (!o.batch)
            o.batch = 512;
        run_copy(&o, strcmp(o.mode, "copy-staged") == 0);
    } else {
        bench_die(PROG, "--mode must be restspy, plain, copy or copy-staged, not '%s'", o.mode);
    }
    return 0;
}
