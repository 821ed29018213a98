/* Unit tests for the store's record of one replicated write (SQLite
 * backend, through store.h): receipts written by the writer and read back
 * in node order, a late older receipt not undoing a newer one, the ledger
 * row of an applied and of a skipped message, whether a write's outbox row
 * still waits for the broker, and a file from before receipts (schema 5)
 * read without receipts and migrated forward. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "capture/record.h"
#include "formats/repl_msg.h"
#include "store/store.h"
#include "store/store_sqlite.h"
#include "testutil.h"

#define ID_X "01936b2a-5c3e-7d4f-8a1b-2c3d4e5f6a7b"
#define ID_Y "01936b2a-5c3e-7d4f-8a1b-2c3d4e5f6a7c"

static int fx_setup(void **state)
{
    testutil_tmpdb *f = xcalloc(1, sizeof *f);
    if (testutil_tmpdb_make(f, "receipts") != 0)
        return -1;
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    testutil_tmpdb_remove(*state);
    free(*state);
    return 0;
}

static store *open_store(const testutil_tmpdb *f, bool read_only)
{
    store_options o = {.url = f->url,
                       .queue_max = 100,
                       .batch_max = 10,
                       .busy_timeout_ms = 1000,
                       .read_only = read_only};
    char err[256] = "";
    store *s = store_open(&o, err, sizeof err);
    if (!s)
        fail_msg("store_open: %s", err);
    if (!read_only)
        assert_int_equal(store_start(s, err, sizeof err), 0);
    return s;
}

static void put(store *s, const char *id, const char *node, const char *outcome, int status,
                int64_t at)
{
    store_receipt r = {
        .node = (char *)node, .outcome = (char *)outcome, .status = status, .at_us = at};
    snprintf(r.message_id, sizeof r.message_id, "%s", id);
    store_receipt_put(s, &r);
}

/* The receipts of id once there are want of them (the writer commits
 * them in its next transaction); fails after 10 s. */
static store_receipt *wait_receipts(store *s, const char *id, size_t want)
{
    for (int i = 0; i < 1000; i++) {
        store_receipt *v = NULL;
        size_t n = 0;
        char err[256] = "";
        assert_int_equal(store_receipts_get(s, id, &v, &n, err, sizeof err), 0);
        if (n == want)
            return v;
        store_receipts_free(v, n);
        testutil_sleep_ms(10);
    }
    fail_msg("%zu receipts of %s never appeared", want, id);
    return NULL;
}

static void check(const store_receipt *r, const char *node, const char *outcome, int status,
                  int64_t at)
{
    assert_string_equal(r->node, node);
    assert_string_equal(r->outcome, outcome);
    assert_int_equal(r->status, status);
    assert_int_equal(r->at_us, at);
}

/* Puts an "applied 201" receipt of ID_X from nantes at at_us, then a
 * marker (the markers-th receipt of ID_Y): the ops commit in order, so the
 * marker's arrival means the first was handled. Then nantes's receipt of
 * ID_X must be (outcome, status, want_at). */
static void put_then_check_nantes(store *s, int64_t at_us, size_t markers, const char *outcome,
                                  int status, int64_t want_at)
{
    char marker[32];
    snprintf(marker, sizeof marker, "marker%zu", markers);
    put(s, ID_X, "nantes", "applied", 201, at_us);
    put(s, ID_Y, marker, "applied", 200, 1);
    store_receipts_free(wait_receipts(s, ID_Y, 1 + markers), 1 + markers);
    store_receipt *v = wait_receipts(s, ID_X, 2);
    check(&v[1], "nantes", outcome, status, want_at);
    store_receipts_free(v, 2);
}

static void test_receipts_put_get(void **state)
{
    store *s = open_store(*state, false);
    store_receipt *v = NULL;
    size_t n = 7;
    char err[256] = "";
    assert_int_equal(store_receipts_get(s, ID_X, &v, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_null(v);

    put(s, ID_X, "nantes", "dead-lettered", 404, 200);
    put(s, ID_X, "lyon", "applied", 201, 100);
    put(s, ID_Y, "lyon", "skipped", 0, 150);
    v = wait_receipts(s, ID_X, 2);
    check(&v[0], "lyon", "applied", 201, 100); /* node order */
    check(&v[1], "nantes", "dead-lettered", 404, 200);
    assert_string_equal(v[0].message_id, ID_X);
    store_receipts_free(v, 2);
    v = wait_receipts(s, ID_Y, 1);
    check(&v[0], "lyon", "skipped", 0, 150);
    store_receipts_free(v, 1);

    /* An older receipt arriving late keeps the newer outcome; a newer one
     * (a dead letter retried and applied) replaces it. */
    put_then_check_nantes(s, 150, 1, "dead-lettered", 404, 200);
    put_then_check_nantes(s, 300, 2, "applied", 201, 300);
    store_close(s);
}

static record *mkrec(const char *id, const char *node, int status)
{
    record *r = record_new();
    snprintf(r->id, sizeof r->id, "%s", id);
    r->node = xstrdup(node);
    r->started_at_us = 1732669758526123;
    r->method = xstrdup("POST");
    r->path = xstrdup("/api/sites/");
    r->status = status;
    r->replication = xstrdup("queued");
    return r;
}

static void test_ledger_and_outbox(void **state)
{
    testutil_tmpdb *f = *state;
    store *s = open_store(f, false);
    char err[256] = "";
    store_ledger_entry led;
    assert_int_equal(store_ledger_get(s, ID_X, &led, err, sizeof err), 0);
    assert_null(led.origin);
    assert_int_equal(store_outbox_has(s, ID_X, err, sizeof err), 0);

    /* A local write: its outbox row waits until the broker confirms it. */
    record *w = mkrec(ID_X, "paris", 201);
    buf body = BUF_INIT;
    buf_append_str(&body, "{}");
    repl_msg *m = repl_msg_from_record(w, "paris", &body, NULL);
    store_unit u = {.rec = w, .rec_row = true, .outbox = m};
    assert_int_equal(store_submit_unit(s, &u, NULL, NULL), 0);
    int has = 0;
    for (int i = 0; i < 1000 && (has = store_outbox_has(s, ID_X, err, sizeof err)) == 0; i++)
        testutil_sleep_ms(10);
    assert_int_equal(has, 1);
    store_outbox_row rows[1];
    size_t n = 0;
    assert_int_equal(store_outbox_fetch(s, 0, 1, rows, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    store_outbox_confirmed(s, rows[0].seq, ID_X);
    store_outbox_rows_free(rows, n);
    for (int i = 0; i < 1000 && (has = store_outbox_has(s, ID_X, err, sizeof err)) == 1; i++)
        testutil_sleep_ms(10);
    assert_int_equal(has, 0);

    /* A peer's write applied here: its ledger row (origin, time, status,
     * and the outcome the replicator put in the capture's replication). */
    record *a = mkrec(ID_Y, "lyon", 202);
    free(a->replication);
    a->replication = xstrdup("diverged: status 201 -> 202");
    store_unit au = {.rec = a, .rec_row = true, .applied_id = xstrdup(ID_Y)};
    int64_t before = util_now_us();
    assert_int_equal(store_submit_unit(s, &au, NULL, NULL), 0);
    int got = 0;
    for (int i = 0; i < 1000 && (got = store_ledger_get(s, ID_Y, &led, err, sizeof err)) == 0; i++)
        testutil_sleep_ms(10);
    assert_int_equal(got, 1);
    assert_string_equal(led.origin, "lyon");
    assert_int_equal(led.status, 202);
    assert_false(led.skipped);
    assert_true(led.at_us >= before && led.at_us <= util_now_us());
    assert_string_equal(led.outcome, "diverged: status 201 -> 202");
    store_ledger_entry_free(&led);
    assert_null(led.origin);
    store_close(s);

    /* A skip (the CLI's, on a store not started) reads as skipped. */
    store_options o = {.url = f->url, .queue_max = 10, .batch_max = 1, .busy_timeout_ms = 1000};
    s = store_open(&o, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(store_ledger_skip(s, ID_X, "nantes", err, sizeof err), 1);
    assert_int_equal(store_ledger_get(s, ID_X, &led, err, sizeof err), 1);
    assert_string_equal(led.origin, "nantes");
    assert_true(led.skipped);
    assert_int_equal(led.status, 0);
    assert_null(led.outcome);
    store_ledger_entry_free(&led);
    store_close(s);
}

static void sql_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

static void test_file_before_receipts(void **state)
{
    testutil_tmpdb *f = *state;
    store_close(open_store(f, false));
    sql_exec(f->path, TESTUTIL_SQLITE_UNDO_V9
             "DROP TABLE receipts; "
             "ALTER TABLE outbox DROP COLUMN origin_status; "
             "ALTER TABLE outbox DROP COLUMN origin_digest; PRAGMA user_version = 5");

    /* A reader of a version 5 file sees no receipts, and no error. */
    store *s = open_store(f, true);
    store_receipt *v = NULL;
    size_t n = 3;
    char err[256] = "";
    assert_int_equal(store_receipts_get(s, ID_X, &v, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    store_close(s);

    /* A writer migrates it to version 6: receipts can be written. */
    s = open_store(f, false);
    put(s, ID_X, "lyon", "applied", 200, 5);
    store_receipts_free(wait_receipts(s, ID_X, 1), 1);
    store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_receipts_put_get, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ledger_and_outbox, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_file_before_receipts, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
