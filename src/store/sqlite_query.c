/* sqlite_query: the SQLite backend's reads of requests (the CLI's queries,
 * one record by id, the ids) and the read connection every read uses. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/glob.h"
#include "base/util.h"
#include "store/pathrange.h"
#include "store/sqlite_internal.h"
#include "store/store_sqlite.h"

/* ---- reading ---- */

void sq_set_str(char **dst, sqlite3_stmt *st, int col)
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

void sq_set_body(buf *b, sqlite3_stmt *st, int col)
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
    sq_set_str(&r->node, st, C_NODE);
    r->started_at_us = sqlite3_column_int64(st, C_STARTED_AT);
    r->duration_us = sqlite3_column_int64(st, C_DURATION);
    /* -1 means "no upstream exchange" (README); NULL from a hand-made row too. */
    r->upstream_us = sqlite3_column_type(st, C_UPSTREAM) == SQLITE_NULL
                         ? -1
                         : sqlite3_column_int64(st, C_UPSTREAM);
    sq_set_str(&r->client_addr, st, C_CLIENT);
    sq_set_str(&r->method, st, C_METHOD);
    sq_set_str(&r->scheme, st, C_SCHEME);
    sq_set_str(&r->host, st, C_HOST);
    sq_set_str(&r->path, st, C_PATH);
    sq_set_str(&r->query, st, C_QUERY);
    set_headers(&r->req_headers, st, C_REQ_HEADERS);
    sq_set_body(&r->req_body, st, C_REQ_BODY);
    r->req_body_size = (uint64_t)sqlite3_column_int64(st, C_REQ_BODY_SIZE);
    r->req_truncated = sqlite3_column_int(st, C_REQ_TRUNC) != 0;
    r->status = sqlite3_column_int(st, C_STATUS);
    set_headers(&r->resp_headers, st, C_RESP_HEADERS);
    sq_set_body(&r->resp_body, st, C_RESP_BODY);
    r->resp_body_size = (uint64_t)sqlite3_column_int64(st, C_RESP_BODY_SIZE);
    r->resp_truncated = sqlite3_column_int(st, C_RESP_TRUNC) != 0;
    sq_set_str(&r->rule, st, C_RULE);
    sq_set_str(&r->origin, st, C_ORIGIN);
    sq_set_str(&r->error, st, C_ERROR);
    sq_set_str(&r->replication, st, C_REPLICATION);
    sq_set_str(&r->req_encoding, st, C_REQ_ENCODING);
    sq_set_str(&r->req_body_note, st, C_REQ_BODY_NOTE);
    sq_set_str(&r->resp_encoding, st, C_RESP_ENCODING);
    sq_set_str(&r->resp_body_note, st, C_RESP_BODY_NOTE);
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
sqlite3 *sq_reader(sq_store *s, char *err, size_t errlen)
{
    if (!s->rdb)
        s->rdb = sq_connect(s->path, true, s->opt.busy_timeout_ms, err, errlen);
    return s->rdb;
}

/* Starts one of the per-message queries on the read connection: locks
 * rlock and gives in *st the statement of slot (prepared on first use,
 * kept for the store's life). 1: ready; 0: the file predates the
 * replication tables (nothing to read, *st NULL); -1: error in err. Always
 * followed by sq_reader_end. */
int sq_reader_begin(sq_store *s, sqlite3_stmt **slot, const char *sql, const char *what,
                    sqlite3_stmt **st, char *err, size_t errlen)
{
    *st = NULL;
    pthread_mutex_lock(&s->rlock);
    sqlite3 *db = sq_reader(s, err, errlen);
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

/* Ends what sq_reader_begin started: the statement reset (no read transaction
 * left open) and rlock released. */
void sq_reader_end(sq_store *s, sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    pthread_mutex_unlock(&s->rlock);
}

/* Starts a one-off query (the CLI's): locks rlock and prepares sql on the
 * read connection into *st. 0, or -1 with err ("cannot query store: ...").
 * Always followed by sq_oneoff_end. */
int sq_oneoff_begin(sq_store *s, const char *sql, sqlite3_stmt **st, char *err, size_t errlen)
{
    *st = NULL;
    pthread_mutex_lock(&s->rlock);
    sqlite3 *db = sq_reader(s, err, errlen);
    if (!db)
        return -1;
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot query store: %s", sqlite3_errmsg(db));
        *st = NULL;
        return -1;
    }
    return 0;
}

/* Ends what sq_oneoff_begin started; rc is the last sqlite3_step's: anything
 * but SQLITE_ROW or SQLITE_DONE is reported in err and makes it -1, else
 * ret is returned. */
int sq_oneoff_end(sq_store *s, sqlite3_stmt *st, int rc, int ret, char *err, size_t errlen)
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

/* ---- path globs on the path index (schema version 7) ----
 *
 * A glob's literal prefix bounds a range of requests_path, which holds the
 * paths in BINARY collation: byte order, as glob_match compares. Whether
 * the range or the newest-first walk of started_at is cheaper depends on
 * how many rows the range holds, which only a count can tell (SQLite's
 * planner cannot see into a glob): up to sq_glob_index_max rows, the range's
 * rows are read and sorted by time; beyond, the walk of started_at stops
 * as soon as the limit is met, which is quick when matches are common and
 * is what every glob did before version 7. */

/* Rows a path range may hold for a query to read it through the index.
 * store_sqlite_test_glob_index_max sets it (tests force each plan). */
static int64_t sq_glob_index_max = 10000;

void store_sqlite_test_glob_index_max(int64_t max)
{
    sq_glob_index_max = max;
}

/* Whether the rows of r are few enough to read through requests_path:
 * counts its index entries (the index alone, sq_glob_index_max + 1 at
 * most). 1 yes, 0 no, -1 with err. */
static int path_range_small(sq_store *s, const store_path_range *r, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = SQLITE_DONE;
    int ret = sq_oneoff_begin(s,
                              r->hi_len ? "SELECT count(*) FROM (SELECT 1 FROM requests INDEXED BY "
                                          "requests_path WHERE path >= ?1 AND path < ?2 LIMIT ?3)"
                                        : "SELECT count(*) FROM (SELECT 1 FROM requests INDEXED BY "
                                          "requests_path WHERE path >= ?1 LIMIT ?3)",
                              &st, err, errlen);
    if (ret == 0) {
        sqlite3_bind_text64(st, 1, r->lo, r->lo_len, SQLITE_STATIC, SQLITE_UTF8);
        if (r->hi_len)
            sqlite3_bind_text64(st, 2, r->hi, r->hi_len, SQLITE_STATIC, SQLITE_UTF8);
        sqlite3_bind_int64(st, 3, sq_glob_index_max + 1);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            ret = sqlite3_column_int64(st, 0) <= sq_glob_index_max;
    }
    return sq_oneoff_end(s, st, rc, ret, err, errlen);
}

/* The SQL of q (bound values appended to p): the path range through
 * requests_path when by_path, else (with "+path", which no index serves)
 * a filter on the walk the planner picks, started_at's for the order. */
static void query_sql(const sq_store *s, const store_query *q, const store_path_range *pr,
                      bool by_path, buf *sql, qparam *p, int *np)
{
    buf_append_str(sql, "SELECT ");
    buf_append_str(sql, select_columns(s));
    buf_append_str(sql, by_path ? " FROM requests INDEXED BY requests_path WHERE 1"
                                : " FROM requests WHERE 1");
    if (q->method) {
        buf_append_str(sql, " AND method = ? COLLATE NOCASE");
        add_text(p, np, q->method, strlen(q->method));
    }
    if (pr->lo_len) {
        const char *col = by_path ? "path" : "+path";
        buf_appendf(sql, " AND %s >= ?", col);
        add_text(p, np, pr->lo, pr->lo_len);
        if (pr->hi_len) {
            buf_appendf(sql, " AND %s < ?", col);
            add_text(p, np, pr->hi, pr->hi_len);
        }
    }
    if (q->status_min) {
        buf_append_str(sql, " AND status >= ?");
        add_int(p, np, q->status_min);
    }
    if (q->status_max) {
        buf_append_str(sql, " AND status <= ?");
        add_int(p, np, q->status_max);
    }
    if (q->since_us) {
        buf_append_str(sql, " AND started_at >= ?");
        add_int(p, np, q->since_us);
    }
    if (q->until_us) {
        buf_append_str(sql, " AND started_at < ?");
        add_int(p, np, q->until_us);
    }
    if (q->origin) {
        buf_append_str(sql, " AND origin = ?");
        add_text(p, np, q->origin, strlen(q->origin));
    }
    if (q->node) {
        buf_append_str(sql, " AND node = ?");
        add_text(p, np, q->node, strlen(q->node));
    }
    if (q->diverged) /* through the ledger's partial index of diverged rows */
        buf_append_str(sql, s->schema >= 9 ? " AND id IN (SELECT message_id FROM applied WHERE "
                                             "outcome <> 'same')"
                                           : " AND 0"); /* outcomes begin with version 9 */
    /* rowid breaks ties in insertion order and keeps the started_at index
     * usable for the ORDER BY. */
    buf_append_str(sql, q->newest_first ? " ORDER BY started_at DESC, rowid DESC"
                                        : " ORDER BY started_at, rowid");
    /* With a glob the limit counts rows that pass the C-side match. */
    if (q->limit > 0 && !q->path_glob) {
        buf_append_str(sql, " LIMIT ?");
        add_int(p, np, q->limit);
    }
}

int sq_query_each(store *base, const store_query *q, int (*fn)(const record *r, void *ud), void *ud,
                  char *err, size_t errlen)
{
    sq_store *s = sq(base);
    buf sql = BUF_INIT;
    qparam p[QPARAMS_MAX];
    int np = 0;
    store_path_range pr = {0};
    int by_path = 0;
    if (q->path_glob)
        store_path_range_of(q->path_glob, &pr);
    /* Files before version 7 have no path index: their globs walk. */
    if (pr.lo_len && s->schema >= 7 && (by_path = path_range_small(s, &pr, err, errlen)) < 0)
        return -1;
    query_sql(s, q, &pr, by_path, &sql, p, &np);

    sqlite3_stmt *st;
    int rc = SQLITE_DONE;
    int ret = sq_oneoff_begin(s, sql.data, &st, err, errlen);
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
    ret = sq_oneoff_end(s, st, rc, ret, err, errlen);
    buf_free(&sql);
    return ret;
}

int sq_get(store *base, const char *id, record **out, char *err, size_t errlen)
{
    sq_store *s = sq(base);
    *out = NULL;
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT %s FROM requests WHERE id = ?1", select_columns(s));
    sqlite3_stmt *st;
    int rc = SQLITE_DONE;
    int ret = sq_oneoff_begin(s, sql, &st, err, errlen);
    if (ret == 0) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = row_to_record(st);
            ret = 1;
        }
    }
    return sq_oneoff_end(s, st, rc, ret, err, errlen);
}

int sq_ids_each(store *base, int (*fn)(const char *id, size_t len, void *ud), void *ud, char *err,
                size_t errlen)
{
    sq_store *s = sq(base);
    sqlite3_stmt *st;
    int rc = SQLITE_DONE;
    /* Reads the primary key's index alone, never the rows. */
    int ret = sq_oneoff_begin(s, "SELECT id FROM requests ORDER BY id", &st, err, errlen);
    while (ret == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        if (id && fn(id, (size_t)sqlite3_column_bytes(st, 0), ud))
            break;
    }
    return sq_oneoff_end(s, st, rc, ret, err, errlen);
}
