/* pg_query: the PostgreSQL backend's reads of requests (the CLI's queries,
 * one record by id, the ids) and the read connection every read uses.
 *
 * Same semantics as sqlite_query.c: the filters of store_query, the path
 * glob's literal prefix as a range (store/pathrange.h) and the glob itself
 * matched here with glob_match, started_at order with insertion order
 * (seq) breaking ties, the limit counting rows that pass the glob. Rows are
 * read one at a time (libpq's single-row mode), so a query over millions of
 * rows holds one row in memory. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/glob.h"
#include "base/util.h"
#include "store/pathrange.h"
#include "store/pg_internal.h"

PGconn *pg_reader(pg_store *s, char *err, size_t errlen)
{
    if (!s->rdb)
        s->rdb = pg_connect(s, err, errlen);
    else if (PQstatus(s->rdb) != CONNECTION_OK)
        PQreset(s->rdb);
    return s->rdb;
}

void pg_set_str(char **dst, const PGresult *r, int col)
{
    free(*dst);
    *dst = PQgetisnull(r, 0, col) ? NULL : xstrdup(PQgetvalue(r, 0, col));
}

int64_t pg_get_int(const PGresult *r, int col)
{
    return strtoll(PQgetvalue(r, 0, col), NULL, 10);
}

static void set_headers(http_headers *h, const PGresult *r, int col)
{
    /* A malformed column (edited by hand) leaves the headers empty rather
     * than hiding the whole record. */
    if (!PQgetisnull(r, 0, col) &&
        http_headers_from_json(h, PQgetvalue(r, 0, col), (size_t)PQgetlength(r, 0, col)))
        http_headers_free(h);
}

void pg_set_body(buf *b, const PGresult *r, int col)
{
    if (PQgetisnull(r, 0, col))
        return;
    size_t n = 0;
    unsigned char *p = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, col), &n);
    if (p && n)
        buf_append(b, p, n);
    PQfreemem(p);
}

/* The record of a single-row result r (columns in PG_COLUMNS order). */
static record *row_to_record(const PGresult *r)
{
    record *rec = record_new();
    snprintf(rec->id, sizeof rec->id, "%s", PQgetvalue(r, 0, PG_C_ID));
    pg_set_str(&rec->node, r, PG_C_NODE);
    rec->started_at_us = pg_get_int(r, PG_C_STARTED_AT);
    rec->duration_us = pg_get_int(r, PG_C_DURATION);
    /* -1 means "no upstream exchange" (README); NULL from a hand-made row too. */
    rec->upstream_us = PQgetisnull(r, 0, PG_C_UPSTREAM) ? -1 : pg_get_int(r, PG_C_UPSTREAM);
    pg_set_str(&rec->client_addr, r, PG_C_CLIENT);
    pg_set_str(&rec->method, r, PG_C_METHOD);
    pg_set_str(&rec->scheme, r, PG_C_SCHEME);
    pg_set_str(&rec->host, r, PG_C_HOST);
    pg_set_str(&rec->path, r, PG_C_PATH);
    pg_set_str(&rec->query, r, PG_C_QUERY);
    set_headers(&rec->req_headers, r, PG_C_REQ_HEADERS);
    pg_set_body(&rec->req_body, r, PG_C_REQ_BODY);
    rec->req_body_size = (uint64_t)pg_get_int(r, PG_C_REQ_BODY_SIZE);
    rec->req_truncated = PQgetvalue(r, 0, PG_C_REQ_TRUNC)[0] == 't';
    rec->status = (int)pg_get_int(r, PG_C_STATUS);
    set_headers(&rec->resp_headers, r, PG_C_RESP_HEADERS);
    pg_set_body(&rec->resp_body, r, PG_C_RESP_BODY);
    rec->resp_body_size = (uint64_t)pg_get_int(r, PG_C_RESP_BODY_SIZE);
    rec->resp_truncated = PQgetvalue(r, 0, PG_C_RESP_TRUNC)[0] == 't';
    pg_set_str(&rec->rule, r, PG_C_RULE);
    pg_set_str(&rec->origin, r, PG_C_ORIGIN);
    pg_set_str(&rec->error, r, PG_C_ERROR);
    pg_set_str(&rec->replication, r, PG_C_REPLICATION);
    pg_set_str(&rec->req_encoding, r, PG_C_REQ_ENCODING);
    pg_set_str(&rec->req_body_note, r, PG_C_REQ_BODY_NOTE);
    pg_set_str(&rec->resp_encoding, r, PG_C_RESP_ENCODING);
    pg_set_str(&rec->resp_body_note, r, PG_C_RESP_BODY_NOTE);
    return rec;
}

/* A query's SQL and its text parameters ($1, $2, ...), built together. */
#define PG_QPARAMS_MAX 16
typedef struct qbuild {
    buf sql;
    const char *v[PG_QPARAMS_MAX];
    char num[PG_QPARAMS_MAX][24];
    int n;
} qbuild;

/* Appends " AND <cond $k>" with the next parameter, v (a copy when num). */
static void q_text(qbuild *b, const char *cond, const char *v)
{
    buf_appendf(&b->sql, cond, b->n + 1);
    b->v[b->n++] = v;
}

static void q_int(qbuild *b, const char *cond, int64_t v)
{
    snprintf(b->num[b->n], sizeof b->num[b->n], "%lld", (long long)v);
    q_text(b, cond, b->num[b->n]);
}

/* The SQL of q; pr's bounds are NUL-terminated copies in lo and hi. */
static void query_sql(const store_query *q, const char *lo, const char *hi, qbuild *b)
{
    buf_append_str(&b->sql, "SELECT " PG_COLUMNS " FROM requests WHERE true");
    if (q->method)
        q_text(b, " AND lower(method) = lower($%d)", q->method);
    if (lo)
        q_text(b, " AND path >= $%d", lo);
    if (hi)
        q_text(b, " AND path < $%d", hi);
    if (q->status_min)
        q_int(b, " AND status >= $%d", q->status_min);
    if (q->status_max)
        q_int(b, " AND status <= $%d", q->status_max);
    if (q->since_us)
        q_int(b, " AND started_at >= $%d", q->since_us);
    if (q->until_us)
        q_int(b, " AND started_at < $%d", q->until_us);
    if (q->origin)
        q_text(b, " AND origin = $%d", q->origin);
    if (q->node)
        q_text(b, " AND node = $%d", q->node);
    if (q->diverged) /* through the ledger's partial index of diverged rows */
        buf_append_str(&b->sql,
                       " AND id IN (SELECT message_id FROM applied WHERE outcome <> 'same')");
    buf_append_str(&b->sql, q->newest_first ? " ORDER BY started_at DESC, seq DESC"
                                            : " ORDER BY started_at, seq");
    /* With a glob the limit counts rows that pass the C-side match. */
    if (q->limit > 0 && !q->path_glob)
        q_int(b, " LIMIT $%d", q->limit);
}

/* One attempt of each_row on c. 0, or -1 with err; *rows: the rows
 * delivered to row(). */
static int each_row_on(PGconn *c, const char *sql, int n, const char *const *v,
                       int (*row)(const PGresult *r, void *ud), void *ud, size_t *rows, char *err,
                       size_t errlen)
{
    if (!PQsendQueryParams(c, sql, n, NULL, v, NULL, NULL, 0) || !PQsetSingleRowMode(c)) {
        char line[256];
        snprintf(err, errlen, "cannot query store: %s", pg_errmsg(c, line, sizeof line));
        return -1;
    }
    int ret = 0;
    bool stopped = false;
    PGresult *r;
    while ((r = PQgetResult(c))) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE && !stopped) {
            /* The rows after a stop are read and dropped: a cancel could
             * reach the server after this query ended and cancel the next
             * one on this connection. */
            (*rows)++;
            stopped = row(r, ud) != 0;
        } else if (st != PGRES_TUPLES_OK && st != PGRES_SINGLE_TUPLE && !stopped && ret == 0) {
            snprintf(err, errlen, "cannot query store: %.*s",
                     (int)strcspn(PQresultErrorMessage(r), "\n"), PQresultErrorMessage(r));
            ret = -1;
        }
        PQclear(r);
    }
    return ret;
}

/* (pg_internal.h) A connection the server dropped while it was idle (a
 * restart, a failover) fails its next query before any row: that query is
 * run once more on a fresh connection, so that a reader never sees a
 * restart it did not overlap. */
int pg_each_row(pg_store *s, const char *sql, int n, const char *const *v,
                int (*row)(const PGresult *r, void *ud), void *ud, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->rlock);
    int ret = -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        PGconn *c = pg_reader(s, err, errlen);
        if (!c)
            break;
        size_t rows = 0;
        ret = each_row_on(c, sql, n, v, row, ud, &rows, err, errlen);
        if (ret == 0 || rows || PQstatus(c) == CONNECTION_OK)
            break;
    }
    pthread_mutex_unlock(&s->rlock);
    return ret;
}

typedef struct query_ctx {
    const store_query *q;
    int (*fn)(const record *r, void *ud);
    void *ud;
    int64_t matched;
} query_ctx;

static int query_row(const PGresult *r, void *ud)
{
    query_ctx *x = ud;
    if (x->q->path_glob) {
        const char *path = PQgetisnull(r, 0, PG_C_PATH) ? NULL : PQgetvalue(r, 0, PG_C_PATH);
        if (!path || !glob_match(x->q->path_glob, path, (size_t)PQgetlength(r, 0, PG_C_PATH)))
            return 0;
    }
    record *rec = row_to_record(r);
    int stop = x->fn(rec, x->ud);
    record_free(rec);
    x->matched++;
    return stop || (x->q->limit > 0 && x->matched >= x->q->limit);
}

int pg_query_each(store *base, const store_query *q, int (*fn)(const record *r, void *ud), void *ud,
                  char *err, size_t errlen)
{
    store_path_range pr = {0};
    if (q->path_glob)
        store_path_range_of(q->path_glob, &pr);
    char *lo = pr.lo_len ? xstrndup(pr.lo, pr.lo_len) : NULL;
    char *hi = pr.hi_len ? xstrndup(pr.hi, pr.hi_len) : NULL;
    qbuild b = {.sql = BUF_INIT};
    query_sql(q, lo, hi, &b);
    query_ctx x = {.q = q, .fn = fn, .ud = ud};
    int ret = pg_each_row(pgs(base), b.sql.data, b.n, b.v, query_row, &x, err, errlen);
    buf_free(&b.sql);
    free(lo);
    free(hi);
    return ret;
}

static int get_row(const PGresult *r, void *ud)
{
    *(record **)ud = row_to_record(r);
    return 1;
}

int pg_get(store *base, const char *id, record **out, char *err, size_t errlen)
{
    *out = NULL;
    const char *v[1] = {id};
    if (pg_each_row(pgs(base), "SELECT " PG_COLUMNS " FROM requests WHERE id = $1", 1, v, get_row,
                    out, err, errlen) < 0)
        return -1;
    return *out ? 1 : 0;
}

typedef struct ids_ctx {
    int (*fn)(const char *id, size_t len, void *ud);
    void *ud;
} ids_ctx;

static int id_row(const PGresult *r, void *ud)
{
    ids_ctx *x = ud;
    return x->fn(PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0), x->ud);
}

int pg_ids_each(store *base, int (*fn)(const char *id, size_t len, void *ud), void *ud, char *err,
                size_t errlen)
{
    ids_ctx x = {fn, ud};
    /* The primary key's index in the C collation: byte order, as SQLite. */
    return pg_each_row(pgs(base), "SELECT id FROM requests ORDER BY id", 0, NULL, id_row, &x, err,
                       errlen);
}
