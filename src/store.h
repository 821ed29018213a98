/* store: where capture records are persisted, behind one small interface.
 *
 * The proxy only calls store_submit; the CLI only calls the query functions.
 * A store URL picks the backend: "sqlite:PATH" (the default, SQLite in WAL
 * mode); other schemes can be added later (e.g. "postgres:...") without the
 * proxy changing.
 *
 * Writing: a writer thread owns the database connection, takes records from a
 * bounded queue and commits them in batches (group commit: one transaction
 * per batch of up to store_batch records, whatever has queued while the
 * previous commit ran). store_submit never does I/O. When the queue is full,
 * on_full = STORE_FULL_BLOCK makes store_submit wait for room (backpressure:
 * intake slows, nothing is lost); STORE_FULL_DROP drops the record and counts
 * it. A failed commit is retried (with backoff) and counted, never dropped.
 * Retention (max_rows, max_age_ms) is applied by the writer thread in small
 * deletes between batches, never in one long transaction.
 *
 * Schema: table `requests` with the columns of record.h (see README), indexed
 * on started_at, (method, path) and status, versioned with PRAGMA
 * user_version and migrated forward on open. */
#ifndef RESTSPY_STORE_H
#define RESTSPY_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "record.h"

typedef struct store store;

typedef struct store_options {
    const char *url;          /* "sqlite:restspy.db" */
    uint64_t queue_max;       /* records */
    uint64_t batch_max;       /* records per transaction */
    int on_full;              /* STORE_FULL_* */
    uint64_t max_rows;        /* 0 = no limit */
    uint64_t max_age_ms;      /* 0 = no limit */
    uint64_t busy_timeout_ms; /* SQLite busy timeout (other processes) */
    bool read_only;           /* CLI readers: open without creating or migrating */
} store_options;

typedef struct store_stats {
    uint64_t submitted; /* accepted by store_submit */
    uint64_t written;   /* committed */
    uint64_t dropped;   /* refused under STORE_FULL_DROP */
    uint64_t queued;    /* waiting now */
    uint64_t batches;   /* transactions committed */
    uint64_t errors;    /* failed commits (retried) */
    uint64_t pruned;    /* rows deleted by retention */
    uint64_t blocked;   /* store_submit calls that had to wait for room */
} store_stats;

/* Opens (creating and migrating unless read_only) the store. NULL with a
 * one-line err on failure (bad URL, cannot open, newer schema). */
store *store_open(const store_options *o, char *err, size_t errlen);

/* Starts the writer thread. 0 or -1 with err. */
int store_start(store *s, char *err, size_t errlen);

/* Queues r for writing; takes ownership of r in every case. Returns 0, or -1
 * if the record was dropped (STORE_FULL_DROP and the queue was full, or the
 * store is closing). Thread-safe. */
int store_submit(store *s, record *r);

void store_get_stats(store *s, store_stats *out);

/* Stops intake, commits everything queued, joins the writer, closes. NULL is
 * fine. */
void store_close(store *s);

/* ---- reading (CLI) ---- */

typedef struct store_query {
    const char *method;    /* exact, case-insensitive; NULL = any */
    const char *path_glob; /* rules_glob_match syntax; NULL = any */
    int status_min;        /* inclusive; 0 = any */
    int status_max;        /* inclusive */
    int64_t since_us;      /* started_at >= since_us; 0 = any */
    int64_t until_us;      /* started_at < until_us; 0 = any */
    const char *origin;    /* NULL = any */
    const char *node;      /* NULL = any */
    int64_t limit;         /* 0 = no limit */
    bool newest_first;     /* order by started_at DESC (default ASC) */
} store_query;

/* Calls fn for each matching record (fn must not keep r; it is freed after
 * fn returns). fn returning non-zero stops the scan. 0, or -1 with err. */
int store_query_each(store *s, const store_query *q, int (*fn)(const record *r, void *ud), void *ud,
                     char *err, size_t errlen);

/* Loads one record by id (or by a unique id prefix of at least 8 chars).
 * 1 found (*out owned by caller), 0 not found, -1 error with err. */
int store_get(store *s, const char *id, record **out, char *err, size_t errlen);

#endif
