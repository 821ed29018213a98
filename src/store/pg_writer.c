/* pg_writer: what one transaction of the PostgreSQL backend's writer does
 * (plugged into the shared queue and writer thread, store/writeq.h): a
 * batch's rows sent as prepared statements in libpq's pipeline mode, one
 * implicit transaction up to the pipeline's sync, so that the request row,
 * its outbox row and its ledger row commit together or not at all, and
 * the done callbacks (after this hook returns) follow the COMMIT.
 *
 * Why the pipeline: a batch costs one round trip instead of one per row.
 *
 * Large batches (PG_COPY_MIN request rows or more) send their request rows
 * with one binary COPY instead, in an explicit transaction with the rest
 * of the batch pipelined after it (outbox and ledger rows, ops, COMMIT):
 * per row the server then parses, binds and plans nothing, which measured
 * 1.5x the INSERTs' rows/s (BENCHMARKS.md, "PostgreSQL store"). COPY
 * cannot skip a duplicate id (a redelivered record, a batch sent again
 * after its COMMIT's answer was lost), nor name the row a data error came
 * from: on any such failure the transaction is rolled back and the same
 * batch goes again through the INSERTs, whose ON CONFLICT (id) DO NOTHING
 * and per-row results handle both. Duplicates are rare, so the common
 * case gets COPY's speed. (A COPY into a temporary table followed by
 * INSERT ... SELECT ON CONFLICT would keep the promise in one pass, but
 * measured only 1.06x the INSERTs: the conflict check is the cost.) Small
 * batches keep the single round trip of the pipeline: a lone sync-durable
 * write would pay three more round trips for COPY.
 *
 * The database going away: a failed attempt is retried by writeq with a
 * bounded backoff (10 ms doubling to 1 s); before each attempt a broken
 * connection is reset here and the statements prepared again, while new
 * captures queue up to the queue's bounds (store_queue, store_queue_bytes)
 * and then meet its policy (store_on_full). The batch that failed is kept
 * and sent whole again on the new connection: a batch whose COMMIT went
 * through before the connection broke (its answer lost) is harmless to
 * send again, its request rows being skipped by ON CONFLICT (id). The done
 * callbacks (a sync-durability answer) run only after a sync that was
 * answered. One log line when the connection is lost, one when it is back,
 * and the stats' disconnected and reconnects (writeq_connection). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "store/pg_internal.h"
#include "store/store_pg.h"

/* ON CONFLICT DO NOTHING: a record arriving twice (replication redelivers)
 * is kept once, as SQLite's INSERT OR IGNORE. */
#define PG_INSERT                                                                                  \
    "INSERT INTO requests (" PG_COLUMNS ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,"    \
    "$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26,$27,$28) ON CONFLICT (id) DO NOTHING"
#define PG_INSERT_OUTBOX                                                                           \
    "INSERT INTO outbox (message_id, created_at, timestamp, origin, method, target, headers, "     \
    "content_type, signature, routing_key, body, origin_status, origin_digest, origin_body) "      \
    "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14) RETURNING seq"
#define PG_INSERT_APPLIED                                                                          \
    "INSERT INTO applied (message_id, origin, applied_at, status, outcome) VALUES "                \
    "($1,$2,$3,$4,$5) ON CONFLICT (message_id) DO NOTHING"
#define PG_STUCK_DELETE "DELETE FROM stuck WHERE message_id = $1"
/* An applied message is no longer being applied: the claim of the
 * replicator that applied it (pg_repl.c) goes with the ledger row's commit,
 * so that no other instance can claim it before it sees that row. */
#define PG_APPLYING_DELETE "DELETE FROM applying WHERE message_id = $1"
/* The broker confirmed this instance's claims up to $2 (claim order,
 * pg_repl.c): deleted and counted as published, in one statement. */
#define PG_CONFIRM                                                                                 \
    "WITH d AS (DELETE FROM outbox WHERE claimed_by = $1 AND claim_seq <= $2 RETURNING 1) "        \
    "INSERT INTO counters (name, value) SELECT 'published', count(*) FROM d ON CONFLICT (name) "   \
    "DO UPDATE SET value = counters.value + excluded.value"
/* One statement for both counter operations: $4 true sets, false adds;
 * $3 the text value (last_confirmed_id), NULL keeps it. */
#define PG_COUNTER                                                                                 \
    "INSERT INTO counters (name, value, text_value) VALUES ($1, $2, $3) ON CONFLICT (name) DO "    \
    "UPDATE SET value = CASE WHEN $4::boolean THEN excluded.value ELSE counters.value + "          \
    "excluded.value END, text_value = coalesce(excluded.text_value, counters.text_value)"
#define PG_STUCK_SET                                                                               \
    "INSERT INTO stuck (message_id, origin, method, target, first_failed_at, last_failed_at, "     \
    "attempts, last_answer) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (message_id) DO UPDATE "  \
    "SET origin = $2, method = $3, target = $4, first_failed_at = $5, last_failed_at = $6, "       \
    "attempts = $7, last_answer = $8"
/* A receipt replaces the row of its (message_id, node) unless that row is
 * newer (store_receipt_put). */
#define PG_RECEIPT_PUT                                                                             \
    "INSERT INTO receipts (message_id, node, outcome, status, at) VALUES ($1,$2,$3,$4,$5) ON "     \
    "CONFLICT (message_id, node) DO UPDATE SET outcome = excluded.outcome, status = "              \
    "excluded.status, at = excluded.at WHERE excluded.at >= receipts.at"

/* The fewest request rows a batch sends with COPY (see above). */
#define PG_COPY_MIN 16

/* Queries in flight before the writer reads the oldest results: the server
 * blocks writing results nobody reads, and we would block sending. */
#define PG_WINDOW 512

static const struct {
    const char *name, *sql;
    int nparams;
} statements[] = {
    {"restspy_ins", PG_INSERT, PG_C_COUNT},
    {"restspy_ins_outbox", PG_INSERT_OUTBOX, 14},
    {"restspy_ins_applied", PG_INSERT_APPLIED, 5},
    {"restspy_stuck_del", PG_STUCK_DELETE, 1},
    {"restspy_applying_del", PG_APPLYING_DELETE, 1},
    {"restspy_confirm", PG_CONFIRM, 2},
    {"restspy_counter", PG_COUNTER, 4},
    {"restspy_stuck_set", PG_STUCK_SET, 8},
    {"restspy_receipt_put", PG_RECEIPT_PUT, 5},
};
enum {
    ST_INS,
    ST_OUTBOX,
    ST_APPLIED,
    ST_STUCK_DEL,
    ST_APPLYING_DEL,
    ST_CONFIRM,
    ST_COUNTER,
    ST_STUCK_SET,
    ST_RECEIPT
};

/* The writer lost its connection (why: the error): the log line and the
 * stats, once per loss. */
static void conn_lost(pg_store *s, const char *why)
{
    if (s->lost_mono_us)
        return;
    s->lost_mono_us = util_mono_us();
    writeq_connection(&s->w.q, false);
    fprintf(stderr,
            "restspy: store: lost the connection to the PostgreSQL store (%s): %s; reconnecting, "
            "captures wait in memory (up to %llu records, %llu bytes; then store_on_full=%s)\n",
            s->where, why, (unsigned long long)s->opt.queue_max,
            (unsigned long long)s->opt.queue_max_bytes, s->opt.drop_when_full ? "drop" : "block");
}

/* The writer has a working connection again: the log line and the stats. */
static void conn_back(pg_store *s)
{
    if (!s->lost_mono_us)
        return;
    double gone_s = (double)(util_mono_us() - s->lost_mono_us) / 1e6;
    s->lost_mono_us = 0;
    writeq_connection(&s->w.q, true);
    fprintf(stderr, "restspy: store: reconnected to the PostgreSQL store (%s) after %.1f s\n",
            s->where, gone_s);
}

int pg_writer_conn(pg_store *s, char *e, size_t elen)
{
    if (PQstatus(s->db) != CONNECTION_OK) {
        s->prepared = false;
        PQreset(s->db);
        if (PQstatus(s->db) != CONNECTION_OK) {
            conn_lost(s, pg_errmsg(s->db, e, elen));
            return -1;
        }
    }
    for (size_t i = 0; !s->prepared && i < sizeof statements / sizeof statements[0]; i++) {
        PGresult *r =
            PQprepare(s->db, statements[i].name, statements[i].sql, statements[i].nparams, NULL);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok) {
            pg_errmsg(s->db, e, elen);
            if (PQstatus(s->db) != CONNECTION_OK)
                conn_lost(s, e);
            return -1;
        }
    }
    s->prepared = true;
    conn_back(s);
    return 0;
}

/* The parameters of one statement: text, or binary for bytea. With copy
 * set, the same calls append the values as one row of COPY's binary format
 * to it instead (each column in its type's binary form), so that one
 * function lists a record's columns for both paths. */
typedef struct params {
    const char *v[PG_C_COUNT];
    int len[PG_C_COUNT];
    int fmt[PG_C_COUNT];
    char num[PG_C_COUNT][24]; /* integers' text */
    int n;
    buf *copy; /* NULL: fill v; else append COPY fields here (not owned) */
} params;

static void put_u16(buf *b, uint16_t v)
{
    unsigned char x[2] = {(unsigned char)(v >> 8), (unsigned char)v};
    buf_append(b, x, 2);
}

static void put_u32(buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    buf_append(b, x, 4);
}

/* One COPY field: its length (-1: NULL), then its bytes. */
static void copy_field(params *p, const void *v, size_t len)
{
    if (!v) {
        put_u32(p->copy, UINT32_MAX);
    } else {
        put_u32(p->copy, (uint32_t)len);
        buf_append(p->copy, v, len);
    }
    p->n++;
}

static void p_text(params *p, const char *v)
{
    if (p->copy) {
        copy_field(p, v, v ? strlen(v) : 0);
        return;
    }
    p->v[p->n] = v;
    p->len[p->n] = 0;
    p->fmt[p->n] = 0;
    p->n++;
}

/* A bigint (bytes 8) or an integer (bytes 4) column. */
static void p_intn(params *p, int64_t v, int bytes)
{
    if (p->copy) {
        put_u32(p->copy, (uint32_t)bytes);
        if (bytes == 8)
            put_u32(p->copy, (uint32_t)((uint64_t)v >> 32));
        put_u32(p->copy, (uint32_t)(uint64_t)v);
        p->n++;
        return;
    }
    snprintf(p->num[p->n], sizeof p->num[p->n], "%lld", (long long)v);
    p_text(p, p->num[p->n]);
}

static void p_int(params *p, int64_t v)
{
    p_intn(p, v, 8);
}

static void p_bool(params *p, bool v)
{
    if (p->copy) {
        unsigned char b = v ? 1 : 0;
        copy_field(p, &b, 1);
        return;
    }
    p_text(p, v ? "t" : "f");
}

/* A body: bytea in binary format, empty (never NULL) when it has no bytes
 * (NULL would read back as "unknown"). */
static void p_bytes(params *p, const buf *b)
{
    if (p->copy) {
        copy_field(p, b->len ? b->data : "", b->len);
        return;
    }
    p->v[p->n] = b->len ? b->data : "";
    p->len[p->n] = (int)b->len;
    p->fmt[p->n] = 1;
    p->n++;
}

/* Header JSON as jsonb text: "[]" for none (jsonb's binary form is a
 * version byte, 1, then the text). */
static void p_json(params *p, buf *b)
{
    const char *t = b->data && b->len ? b->data : "[]";
    if (p->copy) {
        size_t len = strlen(t);
        put_u32(p->copy, (uint32_t)len + 1);
        buf_append_char(p->copy, 1);
        buf_append(p->copy, t, len);
        p->n++;
        return;
    }
    p_text(p, t);
}

static int send_params(pg_store *s, int st, const params *p)
{
    return PQsendQueryPrepared(s->db, statements[st].name, p->n, p->v, p->len, p->fmt, 0);
}

/* r's columns (PG_COLUMNS' order) into p: statement parameters, or, with
 * p->copy set, one COPY row appended to it. */
static void record_params(pg_store *s, const record *r, params *p)
{
    buf_reset(&s->reqh);
    buf_reset(&s->resph);
    record_append_headers_json(r, 0, &s->reqh);
    record_append_headers_json(r, 1, &s->resph);
    p->n = 0;
    if (p->copy)
        put_u16(p->copy, PG_C_COUNT);
    p_text(p, r->id);
    p_text(p, r->node);
    p_int(p, r->started_at_us);
    p_int(p, r->duration_us);
    p_int(p, r->upstream_us < 0 ? -1 : r->upstream_us);
    p_text(p, r->client_addr);
    p_text(p, r->method);
    p_text(p, r->scheme);
    p_text(p, r->host);
    p_text(p, r->path);
    p_text(p, r->query);
    p_json(p, &s->reqh);
    p_bytes(p, &r->req_body);
    p_int(p, (int64_t)r->req_body_size);
    p_bool(p, r->req_truncated);
    p_intn(p, r->status, 4);
    p_json(p, &s->resph);
    p_bytes(p, &r->resp_body);
    p_int(p, (int64_t)r->resp_body_size);
    p_bool(p, r->resp_truncated);
    p_text(p, r->rule);
    p_text(p, r->origin);
    p_text(p, r->error);
    p_text(p, r->replication);
    p_text(p, r->req_encoding);
    p_text(p, r->req_body_note);
    p_text(p, r->resp_encoding);
    p_text(p, r->resp_body_note);
    assert(p->n == PG_C_COUNT);
}

static void outbox_params(const repl_msg *m, int64_t now_us, params *p)
{
    p->n = 0;
    p_text(p, m->id);
    p_int(p, now_us);
    p_int(p, m->timestamp);
    p_text(p, m->origin);
    p_text(p, m->method);
    p_text(p, m->target);
    p_text(p, m->headers);
    p_text(p, m->content_type);
    p_text(p, m->signature);
    p_text(p, m->routing_key);
    p_bytes(p, &m->body);
    p_text(p, m->origin_status);
    p_text(p, m->origin_digest);
    if (m->origin_body.len)
        p_bytes(p, &m->origin_body);
    else
        p_text(p, NULL);
}

/* A pipeline being read: which unit each query sent belongs to. */
typedef struct pipe {
    size_t *unit; /* per query sent (owned) */
    size_t sent, read, cap;
    size_t failed; /* the unit whose query failed first; SIZE_MAX none */
    bool content;  /* that failure is the unit's content (retrying cannot help) */
    bool broken;   /* the connection failed */
    int64_t max_seq;
    char *e;
    size_t elen;
} pipe;

static void note_sent(pipe *p, size_t unit)
{
    if (p->sent == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 256;
        p->unit = xrealloc(p->unit, p->cap * sizeof *p->unit);
    }
    p->unit[p->sent++] = unit;
}

/* SQLSTATE classes caused by a row's content: data exceptions (22) and
 * integrity violations (23). Everything else (connection, resources,
 * shutdown, serialization) is retried with the whole batch. */
static bool content_error(const PGresult *r)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    return state && (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0);
}

/* Reads the results of the queries sent before upto. */
static void take_results(pg_store *s, pipe *p, size_t upto)
{
    while (p->read < upto && !p->broken) {
        PGresult *r = PQgetResult(s->db);
        if (!r) {
            p->broken = PQstatus(s->db) != CONNECTION_OK;
            if (p->broken && p->failed == SIZE_MAX)
                pg_errmsg(s->db, p->e, p->elen);
            continue; /* the end of one query's results */
        }
        ExecStatusType st = PQresultStatus(r);
        size_t unit = p->unit[p->read++];
        if (st == PGRES_TUPLES_OK && PQntuples(r) == 1) {
            int64_t seq = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            p->max_seq = seq > p->max_seq ? seq : p->max_seq;
        } else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK &&
                   st != PGRES_PIPELINE_ABORTED && p->failed == SIZE_MAX) {
            p->failed = unit;
            p->content = content_error(r);
            snprintf(p->e, p->elen, "%.*s", (int)strcspn(PQresultErrorMessage(r), "\n"),
                     PQresultErrorMessage(r));
        }
        PQclear(r);
        /* Each query's results end with a NULL. */
        r = PQgetResult(s->db);
        PQclear(r);
    }
}

/* Sends the rows of unit i of b (its request, outbox and ledger rows; the
 * request row not when COPY sent it). */
static bool send_unit(pg_store *s, pipe *p, const store_unit *u, size_t i, int64_t now_us,
                      bool copied)
{
    params prm = {.copy = NULL};
    if (u->rec_row && !copied) {
        record_params(s, u->rec, &prm);
        if (!send_params(s, ST_INS, &prm))
            return false;
        note_sent(p, i);
    }
    if (u->outbox) {
        outbox_params(u->outbox, now_us, &prm);
        if (!send_params(s, ST_OUTBOX, &prm))
            return false;
        note_sent(p, i);
    }
    if (u->applied_id) {
        prm.n = 0;
        p_text(&prm, u->applied_id);
        p_text(&prm, u->rec->node);
        p_int(&prm, now_us);
        p_int(&prm, u->rec->status);
        p_text(&prm, u->rec->replication); /* the outcome (store.h) */
        if (!send_params(s, ST_APPLIED, &prm))
            return false;
        note_sent(p, i);
        /* Applied: no longer stuck, in the same transaction. */
        prm.n = 0;
        p_text(&prm, u->applied_id);
        if (!send_params(s, ST_STUCK_DEL, &prm))
            return false;
        note_sent(p, i);
        if (!send_params(s, ST_APPLYING_DEL, &prm))
            return false;
        note_sent(p, i);
    }
    return true;
}

/* Sends one statement of the ops (unit index n: the ops are at fault). */
static bool send_op(pg_store *s, pipe *p, int st, const params *prm, size_t n)
{
    if (!send_params(s, st, prm))
        return false;
    note_sent(p, n);
    return true;
}

/* The stuck-table changes and receipts of o: before the batch's records,
 * so that a record's ledger row (which clears its stuck row) has the last
 * word over a failure noted just before its apply (as SQLite's writer). */
static bool send_ops_first(pg_store *s, pipe *p, const writeq_ops *o, size_t n)
{
    params prm = {.copy = NULL};
    for (size_t i = 0; i < o->slen; i++) {
        const store_stuck *row = &o->sv[i].row;
        prm.n = 0;
        p_text(&prm, row->message_id);
        if (o->sv[i].set) {
            p_text(&prm, row->origin);
            p_text(&prm, row->method);
            p_text(&prm, row->target);
            p_int(&prm, row->first_failed_us);
            p_int(&prm, row->last_failed_us);
            p_int(&prm, row->attempts);
            p_text(&prm, row->last_answer);
        }
        if (!send_op(s, p, o->sv[i].set ? ST_STUCK_SET : ST_STUCK_DEL, &prm, n))
            return false;
    }
    for (size_t i = 0; i < o->rlen; i++) {
        const store_receipt *r = &o->rv[i];
        prm.n = 0;
        p_text(&prm, r->message_id);
        p_text(&prm, r->node);
        p_text(&prm, r->outcome);
        if (r->status > 0)
            p_int(&prm, r->status);
        else
            p_text(&prm, NULL);
        p_int(&prm, r->at_us);
        if (!send_op(s, p, ST_RECEIPT, &prm, n))
            return false;
    }
    return true;
}

/* text NULL: the integer value; else the text (last_confirmed_id). */
static bool send_counter(pg_store *s, pipe *p, const char *name, const char *text, int64_t value,
                         bool set, size_t n)
{
    params prm = {.n = 0};
    p_text(&prm, name);
    p_int(&prm, text ? 0 : value);
    p_text(&prm, text);
    p_bool(&prm, set);
    return send_op(s, p, ST_COUNTER, &prm, n);
}

/* The confirms and counters of o, after the records. */
static bool send_ops_last(pg_store *s, pipe *p, const writeq_ops *o, size_t n)
{
    if (o->confirm_upto > 0) {
        params prm = {.n = 0};
        p_text(&prm, s->claimer);
        p_int(&prm, o->confirm_upto);
        if (!send_op(s, p, ST_CONFIRM, &prm, n) ||
            !send_counter(s, p, "last_confirmed_us", NULL, o->confirm_us, true, n))
            return false;
        if (o->confirm_id[0] && !send_counter(s, p, "last_confirmed_id", o->confirm_id, 0, true, n))
            return false;
    }
    for (size_t i = 0; i < o->len; i++)
        if (!send_counter(s, p, o->v[i].name, NULL, o->v[i].value, o->v[i].set, n))
            return false;
    return true;
}

/* Sends b[0..n) and the sync that commits them, reading results as it
 * goes (PG_WINDOW), then the rest and the sync's. copied: the request rows
 * went by COPY in the open transaction, which a COMMIT before the sync
 * ends. */
static void run_pipeline(pg_store *s, pipe *p, writeq_item *b, size_t n, const writeq_ops *ops,
                         bool copied)
{
    int64_t now = util_now_us();
    if (!send_ops_first(s, p, ops, n)) {
        p->broken = true;
        pg_errmsg(s->db, p->e, p->elen);
        return;
    }
    for (size_t i = 0; i < n && !p->broken; i++) {
        if (!send_unit(s, p, &b[i].u, i, now, copied)) {
            p->broken = true;
            pg_errmsg(s->db, p->e, p->elen);
            return;
        }
        if (p->sent - p->read > PG_WINDOW) {
            PQsendFlushRequest(s->db);
            PQflush(s->db);
            take_results(s, p, p->sent - PG_WINDOW / 2);
        }
    }
    if (!p->broken && !send_ops_last(s, p, ops, n)) {
        p->broken = true;
        pg_errmsg(s->db, p->e, p->elen);
        return;
    }
    if (copied) {
        if (!PQsendQueryParams(s->db, "COMMIT", 0, NULL, NULL, NULL, NULL, 0)) {
            p->broken = true;
            pg_errmsg(s->db, p->e, p->elen);
            return;
        }
        note_sent(p, n);
    }
    if (p->broken || !PQpipelineSync(s->db)) {
        p->broken = true;
        return;
    }
    take_results(s, p, p->sent);
    if (p->broken)
        return;
    PGresult *r = PQgetResult(s->db);
    if (PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
        p->broken = true;
        if (p->failed == SIZE_MAX)
            pg_errmsg(s->db, p->e, p->elen);
    }
    PQclear(r);
}

/* The COPY of b's request rows (PG_COPY_MIN or more), in a transaction
 * left open for the pipeline. 1 sent; 0 refused (a duplicate id, a value
 * the server rejects: rolled back, for the INSERTs to sort out); -1 the
 * connection failed (e). */
static int copy_rows(pg_store *s, writeq_item *b, size_t n, char *e, size_t elen)
{
    if (pg_exec(s->db, "BEGIN", e, elen) < 0)
        return PQstatus(s->db) == CONNECTION_OK ? 0 : -1;
    PGresult *r = PQexec(s->db, "COPY requests (" PG_COLUMNS ") FROM STDIN (FORMAT binary)");
    bool in = PQresultStatus(r) == PGRES_COPY_IN;
    PQclear(r);
    int ret = 0;
    if (in) {
        buf data = BUF_INIT; /* owned here: the batch's rows, freed below */
        buf_append(&data, "PGCOPY\n\377\r\n\0", 11);
        put_u32(&data, 0); /* flags */
        put_u32(&data, 0); /* header extension */
        params prm = {.copy = &data};
        for (size_t i = 0; i < n; i++)
            if (b[i].u.rec_row)
                record_params(s, b[i].u.rec, &prm);
        put_u16(&data, UINT16_MAX); /* the end */
        bool sent =
            PQputCopyData(s->db, data.data, (int)data.len) == 1 && PQputCopyEnd(s->db, NULL) == 1;
        buf_free(&data);
        ret = sent ? 1 : -1;
        while ((r = PQgetResult(s->db))) {
            if (PQresultStatus(r) != PGRES_COMMAND_OK)
                ret = ret < 0 ? -1 : 0;
            PQclear(r);
        }
    }
    if (ret == 1)
        return 1;
    pg_errmsg(s->db, e, elen);
    if (PQstatus(s->db) != CONNECTION_OK)
        return -1;
    pg_exec(s->db, "ROLLBACK", NULL, 0);
    pthread_mutex_lock(&s->w.q.mu);
    s->copies_refused++;
    pthread_mutex_unlock(&s->w.q.mu);
    return 0;
}

bool store_pg_test_copies(store *base, uint64_t *copied, uint64_t *refused)
{
    if (base->be != &store_pg_backend && base->be != &store_postgres_backend)
        return false;
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->w.q.mu);
    *copied = s->copies;
    *refused = s->copies_refused;
    pthread_mutex_unlock(&s->w.q.mu);
    return true;
}

/* How many units of b have a request row. */
static size_t rec_rows(const writeq_item *b, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += b[i].u.rec_row;
    return k;
}

int pg_commit_batch(void *ctx, writeq_item *b, size_t n, const writeq_ops *ops, size_t *bad,
                    int64_t *max_seq, char *e, size_t elen)
{
    pg_store *s = ctx;
    *max_seq = 0;
    if (pg_writer_conn(s, e, elen) < 0)
        return -1;
    int copied = rec_rows(b, n) >= PG_COPY_MIN ? copy_rows(s, b, n, e, elen) : 0;
    if (copied < 0) {
        conn_lost(s, e);
        return -1;
    }
    if (!PQenterPipelineMode(s->db)) {
        pg_errmsg(s->db, e, elen);
        return -1;
    }
    pipe p = {.failed = SIZE_MAX, .e = e, .elen = elen};
    run_pipeline(s, &p, b, n, ops, copied == 1);
    free(p.unit);
    if (!p.broken && !PQexitPipelineMode(s->db))
        p.broken = true;
    /* A statement that failed after the COPY left its transaction aborted
     * (the sync ends only an implicit one). */
    if (!p.broken && PQtransactionStatus(s->db) != PQTRANS_IDLE)
        pg_exec(s->db, "ROLLBACK", NULL, 0);
    if (p.broken) {
        /* A connection that answers no more is reset before the next try
         * (pg_writer_conn), the batch kept by writeq for it. */
        if (PQstatus(s->db) != CONNECTION_OK)
            conn_lost(s, e);
        else if (PQpipelineStatus(s->db) != PQ_PIPELINE_OFF) {
            PQreset(s->db);
            s->prepared = false;
        }
        return -1;
    }
    if (p.failed != SIZE_MAX) {
        if (p.content)
            *bad = p.failed;
        return -1; /* the sync rolled the implicit transaction back */
    }
    *max_seq = p.max_seq;
    if (copied) {
        pthread_mutex_lock(&s->w.q.mu);
        s->copies++;
        pthread_mutex_unlock(&s->w.q.mu);
    }
    return 0;
}
