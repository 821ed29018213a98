/* sqlite_receipts: the SQLite backend's record of one replicated write: the
 * receipts its peers sent (written by the writer thread in its next
 * transaction, as the other replication ops), its ledger row and whether
 * its outbox row is still there (store.h, "the record of one replicated
 * write"). Reads run on the read connection; a file older than version 6
 * has no receipts, one older than version 2 no ledger and no outbox. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "store/sqlite_internal.h"

/* ---- writing ---- */

int sq_receipts_write(sq_store *s, const writeq_ops *o, char *e, size_t elen)
{
    int rc = SQLITE_OK;
    sqlite3_stmt *st = s->receipt_put;
    for (size_t i = 0; rc == SQLITE_OK && i < o->rlen; i++) {
        const store_receipt *r = &o->rv[i];
        sqlite3_bind_text(st, 1, r->message_id, -1, SQLITE_STATIC);
        sq_bind_text(st, 1, r->node);
        sq_bind_text(st, 2, r->outcome);
        if (r->status > 0)
            sqlite3_bind_int(st, 4, r->status);
        else
            sqlite3_bind_null(st, 4);
        sqlite3_bind_int64(st, 5, r->at_us);
        rc = sq_run(s, st, NULL, e, elen);
    }
    return rc;
}

/* ---- reading ---- */

int sq_receipts_get(store *base, const char *message_id, store_receipt **out, size_t *n, char *err,
                    size_t errlen)
{
    sq_store *s = sq(base);
    *out = NULL;
    *n = 0;
    if (s->schema < 6)
        return 0;
    sqlite3_stmt *st;
    int rc = SQLITE_OK;
    int ret = sq_oneoff_begin(s,
                              "SELECT node, outcome, status, at FROM receipts WHERE message_id = "
                              "?1 ORDER BY node",
                              &st, err, errlen);
    size_t cap = 0;
    store_receipt *v = NULL;
    if (ret == 0)
        sqlite3_bind_text(st, 1, message_id, -1, SQLITE_STATIC);
    while (ret == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 4;
            v = xrealloc(v, cap * sizeof *v);
        }
        store_receipt *r = &v[(*n)++];
        memset(r, 0, sizeof *r);
        snprintf(r->message_id, sizeof r->message_id, "%s", message_id);
        sq_set_str(&r->node, st, 0);
        sq_set_str(&r->outcome, st, 1);
        r->status = sqlite3_column_int(st, 2);
        r->at_us = sqlite3_column_int64(st, 3);
    }
    if (sq_oneoff_end(s, st, rc, ret, err, errlen) < 0) {
        store_receipts_free(v, *n);
        *n = 0;
        return -1;
    }
    *out = v;
    return 0;
}

int sq_ledger_get(store *base, const char *message_id, store_ledger_entry *out, char *err,
                  size_t errlen)
{
    sq_store *s = sq(base);
    memset(out, 0, sizeof *out);
    if (s->schema < 2)
        return 0;
    sqlite3_stmt *st;
    int rc = SQLITE_OK;
    const char *sql =
        s->schema >= 9   ? "SELECT origin, applied_at, status, state IS NOT NULL, outcome FROM "
                           "applied WHERE message_id = ?1"
        : s->schema >= 4 ? "SELECT origin, applied_at, status, state IS NOT NULL, NULL FROM "
                           "applied WHERE message_id = ?1"
                         : "SELECT origin, applied_at, status, 0, NULL FROM applied WHERE "
                           "message_id = ?1";
    int ret = sq_oneoff_begin(s, sql, &st, err, errlen);
    if (ret == 0) {
        sqlite3_bind_text(st, 1, message_id, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            sq_set_str(&out->origin, st, 0);
            out->at_us = sqlite3_column_int64(st, 1);
            out->status = sqlite3_column_int(st, 2);
            out->skipped = sqlite3_column_int(st, 3) != 0;
            sq_set_str(&out->outcome, st, 4);
            ret = 1;
        }
    }
    ret = sq_oneoff_end(s, st, rc, ret, err, errlen);
    if (ret < 0)
        store_ledger_entry_free(out);
    return ret;
}

int sq_outbox_has(store *base, const char *message_id, char *err, size_t errlen)
{
    sq_store *s = sq(base);
    if (s->schema < 2)
        return 0;
    sqlite3_stmt *st;
    int rc = SQLITE_OK;
    int ret =
        sq_oneoff_begin(s, "SELECT 1 FROM outbox WHERE message_id = ?1 LIMIT 1", &st, err, errlen);
    if (ret == 0) {
        sqlite3_bind_text(st, 1, message_id, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        ret = rc == SQLITE_ROW ? 1 : 0;
    }
    return sq_oneoff_end(s, st, rc, ret, err, errlen);
}
