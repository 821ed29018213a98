/* Folder store/ (this is its main header): persistence behind one
 * interface, the unit of work, and the SQLite backend (schema and
 * migrations, writer, queries, replication tables). Promises: uses base/,
 * http/, capture/ and formats/; no command line, no configuration.
 *
 * store: where capture records are persisted, behind one small interface.
 *
 * The proxy only calls store_submit_unit; the CLI only calls the query
 * functions. A store URL picks the backend: "sqlite:PATH" (the default,
 * SQLite in WAL mode), or "postgresql://..." / "postgres://..." (a libpq
 * URI: one database many restspy instances share, see store_pg.c), each a
 * backend behind store/backend.h, so that the proxy does not change.
 *
 * Writing: a writer thread owns the database connection, takes units of work
 * (store_unit: a record and the rows that commit with it) from a bounded
 * queue and commits them in batches (group commit: one transaction per batch
 * of up to batch_max units, whatever has queued while the previous commit
 * ran). store_submit_unit never does I/O. When the queue is full, it waits
 * for room (backpressure: intake slows, nothing is lost), or with
 * drop_when_full drops the unit and counts it. A failed commit is retried
 * (with backoff) and counted, never dropped. Retention (max_rows,
 * max_age_ms) is applied by the writer thread in small deletes between
 * batches, never in one long transaction.
 *
 * Schema: table `requests` with the columns of record.h (see README), its
 * rows in insertion (rowid) order, indexed on id (unique), started_at and
 * path (schema version 7; docs/storage.md says why these and what each costs
 * an insert), versioned with PRAGMA user_version and migrated forward on
 * open. */
#ifndef RESTSPY_STORE_H
#define RESTSPY_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/hist.h"
#include "capture/record.h"
#include "formats/repl_msg.h"

typedef struct store store;

/* The store's settings, filled by its caller (from the proxy's or the
 * CLI's configuration): the store knows no configuration file. */
typedef struct store_options {
    const char *url;            /* "sqlite:restspy.db" */
    uint64_t queue_max;         /* records */
    uint64_t queue_max_bytes;   /* bytes the waiting records hold (bodies, headers,
                                   outbox messages); 0 = no limit. One record
                                   always fits, however large */
    uint64_t batch_max;         /* records per transaction */
    bool drop_when_full;        /* queue full: drop the unit (else wait for room) */
    uint64_t max_rows;          /* 0 = no limit */
    uint64_t max_age_ms;        /* 0 = no limit */
    uint64_t ledger_max_age_ms; /* replication's memory: applied and skipped
                                   writes in the ledger and apply receipts
                                   older than this are deleted (a copy of such
                                   a write arriving later would be applied
                                   again); 0 = kept for ever */
    uint64_t busy_timeout_ms;   /* SQLite busy timeout (other processes); also how
                                   long store_open waits for another process
                                   creating or migrating the same file */
    uint64_t commit_delay_us;   /* group commit window: how long the writer waits
                                   for more records before a small batch (0: none) */
    uint64_t checkpoint_pages;  /* SQLite: the WAL pages a background thread copies
                                   into the main file at once (each page once
                                   however many commits wrote it); 0: SQLite's
                                   own checkpoint, inside the commit that passes
                                   1000 pages */
    uint64_t claim_lease_ms;    /* PostgreSQL: how long an outbox or apply claim
                                   holds without renewal before another instance
                                   takes it over; 0 = 30 s */
    bool read_only;             /* CLI readers: open without creating or migrating */
    bool init_foreign;          /* add restspy's tables to an SQLite file that holds
                                   other tables (store_init); else such a file is
                                   refused, saying what it holds */
} store_options;

typedef struct store_stats {
    uint64_t submitted;        /* accepted by store_submit_unit */
    uint64_t written;          /* committed */
    uint64_t dropped;          /* refused: drop_when_full, closing, or refused by SQLite */
    uint64_t queued;           /* waiting now */
    uint64_t queued_bytes;     /* what the waiting records hold (queue_max_bytes) */
    uint64_t batches;          /* transactions committed */
    uint64_t errors;           /* failed commits (retried) */
    uint64_t pruned;           /* rows deleted by retention */
    uint64_t blocked;          /* store_submit_unit calls that had to wait for room */
    uint64_t disconnected;     /* 1 while the writer has lost its database server
                                * (PostgreSQL); always 0 for a file */
    uint64_t reconnects;       /* times the writer got its lost server back */
    hist_snapshot commit_time; /* per batch: BEGIN to COMMIT done */
    hist_snapshot latency;     /* per unit: submitted to committed (queue wait included) */
} store_stats;

struct config;
/* o filled (zeroed first) from cfg's settings for a store writer: store,
 * store_queue, store_queue_bytes, store_batch, store_on_full, max_rows,
 * max_age, busy_timeout, store_commit_delay, store_checkpoint_pages,
 * store_claim_lease, replicate_ledger_max_age, store_init; what every command that writes
 * opens (a caller that must never drop sets drop_when_full false after).
 * o->url points into cfg, which must outlive the store_open. */
void store_options_from_config(store_options *o, const struct config *cfg);

/* Opens (creating and migrating unless read_only) the store. NULL with a
 * one-line err on failure (bad URL, cannot open, newer schema, a file that
 * is not a restspy store: "PATH is not a restspy store: it holds tables a,
 * b", or one a writer may not add its tables to without init_foreign). */
store *store_open(const store_options *o, char *err, size_t errlen);

/* The URLs store_open takes, for messages. */
#define STORE_URL_FORMS "expected sqlite:PATH or postgresql://[user@]host[:port]/db"

/* 0 when s's backend offers replication (the outbox and the ledger: the
 * proxy's --amqp, the replicator), else -1 with the one line to refuse it
 * with. */
int store_check_replication(store *s, char *err, size_t errlen);

/* Starts the writer thread. 0 or -1 with err. */
int store_start(store *s, char *err, size_t errlen);

/* A unit of work: what commits together, in one transaction, or not at all.
 *
 *   rec         the capture (never NULL). Its `requests` row is written when
 *               rec_row; it also gives the ledger row its origin (rec->node:
 *               a replicator's capture carries the origin node there) and
 *               its status.
 *   rec_row     write rec as a `requests` row. false: only the unit's other
 *               rows are written (a rule that replicates but does not persist).
 *   outbox      NULL, or a message for table `outbox` (see below).
 *   applied_id  NULL, or the message_id for the `applied` ledger (the
 *               replicator's exactly-once record); writing it also clears the
 *               message's `stuck` row.
 *
 * store_submit_unit takes ownership of rec, outbox and applied_id in every
 * case (accepted, refused or dropped); the struct itself stays the
 * caller's. */
typedef struct store_unit {
    record *rec;
    bool rec_row;
    repl_msg *outbox;
    char *applied_id;
} store_unit;

/* done(ud, status) runs on the writer thread once the unit's transaction is
 * committed (status 0) or the unit is dropped (status -1: drop policy, a
 * unit SQLite refuses, or a store closing with a dead disk). done must be
 * quick and must not call into the store: the proxy uses it to post to its
 * event loop (replicate_durability = sync), the replicator to ack. */
typedef void (*store_done_fn)(void *ud, int status);

/* Queues u for writing (see store_unit for what it owns). done may be NULL.
 * Returns 0, or -1 if the unit was dropped (the drop policy and the queue was
 * full, or the store is closing); done has then run already. Never does
 * I/O; may wait for room (backpressure). Thread-safe. */
int store_submit_unit(store *s, const store_unit *u, store_done_fn done, void *ud);

/* store_submit_unit of r alone, as a `requests` row, without a callback. */
int store_submit(store *s, record *r);

void store_get_stats(store *s, store_stats *out);

/* Stops intake, commits everything queued, joins the writer, closes. NULL is
 * fine. */
void store_close(store *s);

/* ---- replication (schema version 2) ----
 *
 * A unit with an outbox message gets a row in table `outbox` (seq INTEGER
 * PRIMARY KEY AUTOINCREMENT, the message's fields as columns, created_at) in
 * the same transaction as its `requests` row, whose `replication` column
 * holds rec->replication. A unit with an applied_id gets a row in table
 * `applied` (message_id TEXT PRIMARY KEY, origin, applied_at µs, status,
 * outcome) in its transaction: the replicator's exactly-once ledger. Its
 * outcome is rec->replication ("same", "diverged: ...": how the answer here
 * compared with the origin's; NULL when the message did not say), so the
 * replicated capture row and the ledger row say the same. Table `counters`
 * (name TEXT PRIMARY KEY, value INTEGER) keeps replication figures that must
 * survive restarts and be read by other processes. */

typedef struct store_outbox_row {
    int64_t seq;
    repl_msg *msg; /* owned by the row; freed by store_outbox_rows_free */
} store_outbox_row;

/* Reads up to max unpublished rows with seq > after_seq, in seq order, on a
 * read connection (never blocks the writer). *n gets the count. On a store
 * several instances share (PostgreSQL) the rows are this instance's claims
 * and seq their claim order; outbox_wait then also answers 1 when a fetch
 * is due for other instances' rows, and outbox_confirmed deletes only this
 * instance's claims (docs/storage.md). */
int store_outbox_fetch(store *s, int64_t after_seq, size_t max, store_outbox_row *rows, size_t *n,
                       char *err, size_t errlen);
void store_outbox_rows_free(store_outbox_row *rows, size_t n);

/* Blocks until the writer has committed an outbox row with seq > after_seq,
 * or timeout_ms passed, or the store is closing. 1 new rows, 0 timeout. */
int store_outbox_wait(store *s, int64_t after_seq, int timeout_ms);

/* The broker confirmed every row with seq <= upto: the writer deletes them
 * (in its next transaction) and counts them in counters.published; the
 * confirm time goes to counters.last_confirmed_us. Thread-safe, never blocks. */
void store_outbox_confirmed(store *s, int64_t upto, const char *last_id);

/* 1 when message_id is in the applied ledger as applied, 2 when it is
 * there as skipped (schema version 4), 0 when not, -1 error. */
int store_ledger_has(store *s, const char *message_id, char *err, size_t errlen);

/* Adds delta to counter name (created at 0) in the writer's next
 * transaction. Thread-safe, never blocks. */
void store_counter_add(store *s, const char *name, int64_t delta);
/* Sets counter name to value in the writer's next transaction. */
void store_counter_set(store *s, const char *name, int64_t value);

typedef struct store_repl_stats {
    int64_t outbox_depth;          /* rows not yet confirmed */
    int64_t oldest_unpublished_us; /* created_at of the oldest, 0 = none */
    int64_t last_confirmed_us;     /* 0 = never */
    char last_confirmed_id[UUID7_STR_LEN + 1];
    int64_t published;           /* counters.published */
    int64_t not_replicated;      /* counters.not_replicated (body too large, ...) */
    int64_t applied;             /* rows in `applied` as applied (not skipped) */
    int64_t last_applied_us;     /* applied_at of the newest applied row, 0 = none */
    int64_t last_applied_msg_us; /* time of that message (from its UUIDv7 id) */
    int64_t deduplicated;        /* counters.deduplicated */
    int64_t dead_lettered;       /* counters.dead_lettered */
    int64_t diverged;            /* counters.diverged: applies whose answer differed */
    int64_t skipped;             /* ledger rows in state 'skipped' (not counted in applied) */
    int64_t retry_max_age_ms;    /* the replicator's budget (counters), -1 = unknown */
    int64_t retry_max_attempts;  /* -1 = unknown */
} store_repl_stats;

/* Reads the figures above (read connection). 0 or -1 with err. */
int store_repl_stats_get(store *s, store_repl_stats *out, char *err, size_t errlen);

/* ---- the replicator's failing writes, skips and lag (schema version 4) ----
 *
 * Table `stuck` (message_id TEXT PRIMARY KEY, origin, method, target,
 * first_failed_at µs, last_failed_at µs, attempts, last_answer) holds the
 * messages the replicator has tried and failed to apply and still holds:
 * what `restspy replication status` lists, and the retry budget spent so
 * far, which survives a restart of the replicator. The `applied` ledger's
 * column `state` is NULL for an applied message and 'skipped' for one
 * acknowledged without being applied (`restspy replication dead --skip`).
 * A reader of an older file sees no stuck messages and no skips. */

typedef struct store_stuck {
    char message_id[UUID7_STR_LEN + 1];
    char *origin, *method, *target; /* heap, may be NULL */
    int64_t first_failed_us;        /* first failure that spent the budget; 0 = none yet */
    int64_t last_failed_us;         /* latest failure of any kind */
    int64_t attempts;               /* failures that spent the budget */
    char *last_answer;              /* heap: "upstream answered 500: ..." or a transport error */
} store_stuck;

/* Frees the strings of one row (and sets them NULL). */
void store_stuck_row_free(store_stuck *row);
/* Frees the rows v[0..n) and then v itself. NULL is fine. */
void store_stuck_free(store_stuck *v, size_t n);

/* Writes row (copied) into `stuck`, replacing the message's previous row, in
 * the writer's next transaction. Thread-safe, never blocks. */
void store_stuck_set(store *s, const store_stuck *row);

/* Deletes the stuck row of message_id (if any) in the writer's next
 * transaction. Thread-safe, never blocks. */
void store_stuck_clear(store *s, const char *message_id);

/* Reads the stuck row of message_id into *out (its strings owned by the
 * caller: store_stuck_row_free). 1 found, 0 none (*out zeroed), -1 error.
 * Read connection. */
int store_stuck_get(store *s, const char *message_id, store_stuck *out, char *err, size_t errlen);

/* The stuck messages that are not in the ledger, oldest first failure
 * first (those not yet spending their budget last), at most max of them in
 * *out (caller frees with store_stuck_free), *n of them, *total all of
 * them. 0 or -1 with err. */
int store_stuck_list(store *s, size_t max, store_stuck **out, size_t *n, int64_t *total, char *err,
                     size_t errlen);

/* Records message_id (from origin) in the ledger as skipped, clears its
 * stuck row and counts it, in one transaction of its own committed before
 * it returns: the replicator then acks the message without applying it
 * whenever it comes (store_ledger_has answers 2). Only on a store opened
 * for writing and not started (the CLI). 1 skipped, 0 already in the
 * ledger (applied or skipped before: nothing changed), -1 with err. */
int store_ledger_skip(store *s, const char *message_id, const char *origin, char *err,
                      size_t errlen);

/* The apply lag over a recent window: for each message applied (not
 * skipped) since since_us, the delay from its origin time (the time in its
 * UUIDv7 id: when the request reached the origin's proxy) to its ledger
 * commit here, negative delays (clock skew) counted as 0; the newest
 * max_samples applies at most. n = 0 when nothing was applied since. */
typedef struct store_repl_lag {
    int64_t n;
    int64_t p50_us, p99_us, max_us; /* nearest-rank percentiles */
} store_repl_lag;

int store_repl_lag_get(store *s, int64_t since_us, size_t max_samples, store_repl_lag *out,
                       char *err, size_t errlen);

/* ---- the ledger by origin node (schema version 5 indexes it) ----
 *
 * The applies (ledger rows not skipped) grouped by the node they came
 * from, for the Replication view and /metrics: how many, the newest, and
 * the lag (as store_repl_lag: origin time to ledger commit, skew counted
 * as 0) of the newest and over a recent window. */

typedef struct store_repl_origin {
    char *origin;            /* heap; "" for ledger rows without one */
    int64_t applied;         /* its ledger rows as applied */
    int64_t last_applied_us; /* applied_at of its newest, 0 = none */
    int64_t last_lag_us;     /* that newest apply's lag; -1 = unknown (not a UUIDv7 id) */
    store_repl_lag lag;      /* over the window asked for */
} store_repl_origin;

/* Frees the rows v[0..n) and then v itself. NULL is fine. */
void store_repl_origins_free(store_repl_origin *v, size_t n);

/* The origins of the ledger in name order, max_origins at most in *out
 * (caller frees with store_repl_origins_free), *n of them, *total all of
 * them. The window's figures count the applies since since_us, the newest
 * max_samples of them over all origins at most. *ledger_end (may be NULL)
 * gets the ledger position (store_ledger_each) of the newest row these
 * figures count: all of them are read at one point in time. Read
 * connection. 0, or -1 with err. */
int store_repl_origins_get(store *s, int64_t since_us, size_t max_samples, size_t max_origins,
                           store_repl_origin **out, size_t *n, int64_t *total, int64_t *ledger_end,
                           char *err, size_t errlen);

/* One apply read by store_ledger_each. */
typedef struct store_ledger_row {
    int64_t pos;        /* its ledger position */
    const char *origin; /* "" when none; valid during the callback only */
    int64_t lag_us;     /* as store_repl_lag; -1 = unknown (not a UUIDv7 id) */
} store_ledger_row;

/* Calls fn for the applies (not the skips) whose ledger position is after
 * `after`, in position order, max of them at most, until fn returns
 * non-zero. Positions grow with each committed ledger row, so a reader
 * that passes the last position it saw reads every later apply once (an
 * incremental reader: /metrics); 0 is before the first. The number of rows
 * given to fn, or -1 with err. Read connection. */
int64_t store_ledger_each(store *s, int64_t after, size_t max,
                          int (*fn)(const store_ledger_row *row, void *ud), void *ud, char *err,
                          size_t errlen);
/* ---- the record of one replicated write (schema version 6) ----
 *
 * Table `receipts` (message_id, node, outcome, status, at µs; primary key
 * (message_id, node)) holds, at a write's origin, what each peer reported
 * it did with the write (formats/receipt.h): the replicator records the
 * receipts its peers send for this node's writes. A reader of an older
 * file sees no receipts. */

typedef struct store_receipt {
    char message_id[UUID7_STR_LEN + 1]; /* the write's id */
    char *node;                         /* heap: the peer that settled it */
    char *outcome;                      /* heap: "applied", "dead-lettered" or "skipped" */
    int status;                         /* the peer app's HTTP status; 0 = none */
    int64_t at_us;                      /* when the peer committed the outcome (its clock) */
} store_receipt;

/* Frees the strings of v[0..n), then v. NULL is fine. */
void store_receipts_free(store_receipt *v, size_t n);

/* Writes r (copied) into `receipts` in the writer's next transaction,
 * replacing the row of the same (message_id, node) unless that row is
 * newer (a later at_us: a receipt redelivered late does not undo a newer
 * outcome, such as an apply after a dead letter was retried). Thread-safe,
 * never blocks; a crash before that transaction loses it (receipts are
 * informational). */
void store_receipt_put(store *s, const store_receipt *r);

/* The receipts of message_id, in node order, into *out (caller frees with
 * store_receipts_free; NULL when none), *n of them. 0 or -1 with err. */
int store_receipts_get(store *s, const char *message_id, store_receipt **out, size_t *n, char *err,
                       size_t errlen);

/* The `applied` ledger's row of one message. */
typedef struct store_ledger_entry {
    char *origin;  /* heap, may be NULL: the write's origin node */
    int64_t at_us; /* applied_at: when the ledger row was committed */
    int status;    /* the local app's status; 0 = none (a skip) */
    bool skipped;  /* recorded by `replication dead --skip`, not applied */
    char *outcome; /* heap, may be NULL: "same" or "diverged: ..." (schema 9);
                      NULL for a skip, a version-1 message or an older row */
} store_ledger_entry;

/* Reads the ledger row of message_id into *out (its strings owned by the
 * caller: store_ledger_entry_free). 1 found, 0 none (*out zeroed), -1 with
 * err. */
int store_ledger_get(store *s, const char *message_id, store_ledger_entry *out, char *err,
                     size_t errlen);
/* Frees the strings of e and zeroes it (e itself is the caller's). */
void store_ledger_entry_free(store_ledger_entry *e);

/* 1 when message_id still has an outbox row (the broker has not confirmed
 * it), 0 when not, -1 with err. Scans the outbox (no index on message_id:
 * the outbox holds only what the broker has not confirmed yet). */
int store_outbox_has(store *s, const char *message_id, char *err, size_t errlen);

/* ---- reading (CLI) ---- */

typedef struct store_query {
    const char *method;    /* exact, case-insensitive; NULL = any */
    const char *path_glob; /* glob_match syntax (base/glob.h); NULL = any */
    int status_min;        /* inclusive; 0 = any */
    int status_max;        /* inclusive */
    int64_t since_us;      /* started_at >= since_us; 0 = any */
    int64_t until_us;      /* started_at < until_us; 0 = any */
    const char *origin;    /* NULL = any */
    const char *node;      /* NULL = any */
    bool diverged;         /* only replicated writes whose answer here differed from
                              the origin's (their ledger outcome is not "same") */
    int64_t limit;         /* 0 = no limit */
    bool newest_first;     /* order by started_at DESC (default ASC) */
} store_query;

/* Calls fn for each matching record (fn must not keep r; it is freed after
 * fn returns). fn returning non-zero stops the scan. 0, or -1 with err. */
int store_query_each(store *s, const store_query *q, int (*fn)(const record *r, void *ud), void *ud,
                     char *err, size_t errlen);

/* ---- ids as people type them ----
 *
 * UUIDv7 ids begin with their timestamp, so requests captured close together
 * share long prefixes while their random ends differ: a request is named by
 * its whole id or by any start or end of it (at least STORE_ID_MIN
 * characters, any case) that no other stored id starts or ends with. */

#define STORE_ID_MIN 4   /* shortest key store_get takes */
#define STORE_ID_SHORT 6 /* shortest short id store_id_abbrev gives */

/* Loads one record by its id or by a key naming it alone (see above). 1
 * found (*out owned by caller), 0 not found, -1 with err when the key is
 * at fault: too short, or ambiguous ("id 3f2a is ambiguous: it matches 3
 * requests (A, B, C); give more characters", at most 4 ids listed);
 * STORE_FAILED with err when the store is (a read failed: the database
 * went away, a corrupt file), so that a server can tell the two apart. */
#define STORE_FAILED (-2)
int store_get(store *s, const char *id, record **out, char *err, size_t errlen);

/* The length of the short ids of ids[0..n) (ids of s): the smallest L of at
 * least STORE_ID_SHORT such that the last L characters of each of them name
 * it alone in s, as store_get takes them (no other stored id starts or ends
 * with them), the same L for all so that a column of them lines up (as git
 * abbreviates). UUID7_STR_LEN (the whole ids) when the ends of random ids
 * collide (practically never). Reads every id of a store of up to 100,000
 * ids once; a larger store is not read: its short ids are 12 characters,
 * the UUIDs' random last group, which another id ends alike with a
 * probability below 1e-7 (store_get refuses a key two ids share). 0 with
 * *len, or -1 with err. */
int store_id_abbrev(store *s, const char *const *ids, size_t n, size_t *len, char *err,
                    size_t errlen);

#endif
