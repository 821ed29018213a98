/* store_pg: the PostgreSQL backend (see store.h for the promises):
 * opening, starting and closing a store, its vtable, and the functions it
 * does not offer yet. The other parts: pg_schema.c (migrations under an
 * advisory lock), pg_writer.c (what one transaction of the writer does:
 * pipelined prepared INSERTs), pg_retention.c (store_max_rows,
 * store_max_age), pg_query.c (reading requests);
 * pg_internal.h holds what they share. The queue, group commit, retries,
 * callbacks and drop policy are every backend's (store/writeq.h).
 *
 * URLs: "postgresql://..." and "postgres://..." are libpq connection URIs,
 * given to libpq whole, so that its parameters (?host=/run/sock&sslmode=...)
 * and the PG* environment variables (PGHOST, PGPASSWORD, PGSERVICE...) work
 * as with psql; "postgresql://" alone takes everything from them.
 *
 * Threads: the submitting threads only touch the writeq. The writer thread
 * owns `db` once store_start has run (before, the opener used it to
 * migrate); a connection lost there is reset by the writer before its next
 * attempt (pg_writer.c), while the captures wait in the queue up to its
 * bounds. Queries run on `rdb` under `rlock` (a libpq connection is one
 * thread's at a time): `db` itself for a read-only store, a second
 * connection for a store that is also being written.
 *
 * Replication: pg_repl.c (the reads, and the claims that let several
 * instances publish and apply from one database); its writes are the
 * writer's (pg_writer.c). Retention: pg_retention.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "store/pg_internal.h"

/* ---- small libpq helpers ---- */

const char *pg_errmsg(const PGconn *c, char *line, size_t len)
{
    const char *m = c ? PQerrorMessage(c) : "out of memory";
    size_t n = strcspn(m, "\n");
    snprintf(line, len, "%.*s", (int)n, n ? m : "unknown error");
    return line;
}

int pg_exec(PGconn *c, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    PQclear(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return 0;
    if (err)
        pg_errmsg(c, err, errlen);
    return -1;
}

/* libpq's notices (a NOTICE from CREATE ... IF NOT EXISTS) are not for the
 * proxy's stderr. */
static void pg_quiet(void *arg, const char *message)
{
    (void)arg, (void)message;
}

PGconn *pg_connect(const pg_store *s, char *err, size_t errlen)
{
    PGconn *c = PQconnectdb(s->conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        char line[256];
        snprintf(err, errlen, "cannot connect to the PostgreSQL store (%s): %s", s->where,
                 pg_errmsg(c, line, sizeof line));
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, pg_quiet, NULL);
    return c;
}

/* "database D on H:P" from conninfo, which must parse: what messages name
 * (never the password). */
static char *describe(const char *conninfo, char *err, size_t errlen)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
    if (!opts) {
        snprintf(err, errlen, "bad PostgreSQL store URL: %.*s",
                 (int)strcspn(perr ? perr : "", "\n"), perr ? perr : "out of memory");
        PQfreemem(perr);
        return NULL;
    }
    const char *db = NULL, *host = NULL, *port = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        if (strcmp(o->keyword, "dbname") == 0)
            db = o->val;
        else if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
    }
    /* Unset parts come from the PG* variables, as libpq takes them. */
    db = db ? db : getenv("PGDATABASE");
    host = host ? host : getenv("PGHOST");
    port = port ? port : getenv("PGPORT");
    buf b = BUF_INIT;
    buf_appendf(&b, "database %s on %s%s%s", db ? db : "(default)", host ? host : "localhost",
                port ? ":" : "", port ? port : "");
    PQconninfoFree(opts);
    return b.data;
}

/* ---- open / start / close ---- */

static void pg_free(pg_store *s)
{
    writeq_destroy(&s->w.q);
    if (s->rdb && s->rdb != s->db)
        PQfinish(s->rdb);
    PQfinish(s->db);
    pthread_mutex_destroy(&s->rlock);
    buf_free(&s->reqh);
    buf_free(&s->resph);
    free(s->conninfo);
    free(s->where);
    free(s);
}

static int pg_open_ro(pg_store *s, char *err, size_t errlen)
{
    s->db = pg_connect(s, err, errlen);
    if (!s->db)
        return -1;
    s->rdb = s->db;
    int64_t v;
    if (pg_schema_version(s->db, &v, err, errlen) < 0)
        return -1;
    if (v == 0) {
        snprintf(err, errlen, "no store in the %s (no restspy tables)", s->where);
        return -1;
    }
    if (v > PG_SCHEMA_VERSION) {
        snprintf(err, errlen,
                 "the store (%s) has schema version %lld, newer than this restspy's (%d): "
                 "upgrade restspy",
                 s->where, (long long)v, PG_SCHEMA_VERSION);
        return -1;
    }
    return 0;
}

static int pg_open_rw(pg_store *s, char *err, size_t errlen)
{
    s->db = pg_connect(s, err, errlen);
    if (!s->db || pg_migrate(s, err, errlen) < 0 || pg_schema_check(s, err, errlen) < 0)
        return -1;
    return 0;
}

/* scheme "postgresql" or "postgres", target the URL after "scheme:". */
static store *pg_open_url(const char *scheme, const char *target, const store_options *o, char *err,
                          size_t errlen)
{
    if (strncmp(target, "//", 2) != 0) {
        snprintf(err, errlen, "bad store URL '%s:%s' (expected postgresql://[user@]host[:port]/db)",
                 scheme, target);
        return NULL;
    }
    buf url = BUF_INIT;
    buf_appendf(&url, "%s:%s", scheme, target);
    char *where = describe(url.data, err, errlen);
    if (!where) {
        buf_free(&url);
        return NULL;
    }
    pg_store *s = xcalloc(1, sizeof *s);
    s->w.base.be = strcmp(scheme, "postgres") == 0 ? &store_postgres_backend : &store_pg_backend;
    s->conninfo = url.data; /* ours */
    s->where = where;
    s->opt = *o;
    s->opt.url = NULL;
    uuid7_generate(s->claimer);
    writeq_init(&s->w.q, o, &pg_writeq_hooks, s);
    pthread_mutex_init(&s->rlock, NULL);
    buf_init(&s->reqh);
    buf_init(&s->resph);
    if ((o->read_only ? pg_open_ro(s, err, errlen) : pg_open_rw(s, err, errlen)) < 0) {
        pg_free(s);
        return NULL;
    }
    return &s->w.base;
}

static store *pg_open_postgresql(const char *target, const store_options *o, char *err,
                                 size_t errlen)
{
    return pg_open_url("postgresql", target, o, err, errlen);
}

static store *pg_open_postgres(const char *target, const store_options *o, char *err, size_t errlen)
{
    return pg_open_url("postgres", target, o, err, errlen);
}

static int pg_start(store *base, char *err, size_t errlen)
{
    pg_store *s = pgs(base);
    if (s->opt.read_only) {
        snprintf(err, errlen, "store %s was opened read-only", s->where);
        return -1;
    }
    return writeq_start(&s->w.q, err, errlen);
}

static void pg_close(store *base)
{
    pg_store *s = pgs(base);
    writeq_close(&s->w.q);
    pg_free(s);
}

#define PG_BACKEND(name, scheme_, open_)                                                           \
    const store_backend name = {                                                                   \
        .scheme = scheme_,                                                                         \
        .no_replication = NULL,                                                                    \
        .open = open_,                                                                             \
        .start = pg_start,                                                                         \
        .submit = writeq_submit,                                                                   \
        .get_stats = writeq_get_stats,                                                             \
        .close = pg_close,                                                                         \
        .query_each = pg_query_each,                                                               \
        .get = pg_get,                                                                             \
        .ids_each = pg_ids_each,                                                                   \
        .outbox_fetch = pg_outbox_fetch,                                                           \
        .outbox_wait = pg_outbox_wait,                                                             \
        .outbox_confirmed = writeq_outbox_confirmed,                                               \
        .ledger_has = pg_ledger_has,                                                               \
        .counter = writeq_counter,                                                                 \
        .repl_stats_get = pg_repl_stats_get,                                                       \
        .stuck_set = writeq_stuck_set,                                                             \
        .stuck_clear = writeq_stuck_clear,                                                         \
        .stuck_get = pg_stuck_get,                                                                 \
        .stuck_list = pg_stuck_list,                                                               \
        .ledger_skip = pg_ledger_skip,                                                             \
        .repl_lag_get = pg_repl_lag_get,                                                           \
        .repl_origins_get = pg_repl_origins_get,                                                   \
        .ledger_each = pg_ledger_each,                                                             \
        .receipt_put = writeq_receipt_put,                                                         \
        .receipts_get = pg_receipts_get,                                                           \
        .ledger_get = pg_ledger_get,                                                               \
        .outbox_has = pg_outbox_has,                                                               \
    }

PG_BACKEND(store_pg_backend, "postgresql", pg_open_postgresql);
PG_BACKEND(store_postgres_backend, "postgres", pg_open_postgres);
