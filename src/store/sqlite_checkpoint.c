/* sqlite_checkpoint: the SQLite backend's background checkpointer.
 *
 * Why: in WAL mode SQLite's own checkpoint runs inside the COMMIT that
 * passes wal_autocheckpoint (1000 pages), on the writer thread. A batch of
 * path-diverse rows dirties more pages than that, so every commit also
 * copied its pages into the main file and waited for fdatasync, and a page
 * written by every batch (an index's interior pages, the right edges of
 * id and started_at) was copied once per batch. Here the writer only
 * appends to the WAL; when it holds `pages` frames this thread copies them,
 * each page once however many batches wrote it. On the loaded 2-core
 * development machine: bench_growth at 600,000 rows 17.0-18.8k -> 21.5-32.3k
 * rows/s (10,000 pages); log + persist of path-diverse requests 13.1k ->
 * 13.9k requests/s at 60.0 -> 57.9 µs of CPU each, and commits within 100 ms
 * of their submission 43-62% -> 69-99% (the copy is no longer in the
 * commit). The price: a WAL file of up to `pages` pages (40 MiB at 10,000)
 * besides the database, and a third thread.
 *
 * How: the writer's connection reports each commit through sqlite3_wal_hook
 * (which replaces SQLite's autocheckpoint); past the threshold it wakes this
 * thread, which runs PASSIVE checkpoints on its own connection (they copy
 * without taking the write lock: the writer goes on appending), then a
 * RESTART one (takes the write lock for the few frames appended meanwhile,
 * so that the next commit starts the WAL file over instead of growing it).
 * RESTART gives up after a short busy wait when a reader still uses old
 * frames (a long `restspy export`); the next wake-up tries again, and the
 * WAL grows meanwhile, as it does with SQLite's own checkpoints. */
#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "store/sqlite_internal.h"
#include "store/store_sqlite.h"

/* How long RESTART waits for the writer's transaction or a reader. */
#define RESTART_BUSY_MS 200
/* RESTART holds the write lock while it copies what PASSIVE left: PASSIVE
 * runs again (at most PASSIVE_ROUNDS times) while the writer appended more
 * than RESTART_MAX_FRAMES pages during the previous one, so that the writer
 * waits for a few pages, not for a whole round's worth. */
#define PASSIVE_ROUNDS 4
#define RESTART_MAX_FRAMES 256

struct sq_ckpt {
    sqlite3 *db; /* this thread's connection */
    int pages;   /* WAL frames that wake it */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    bool due, stopping; /* under mu */
    /* counters, under mu */
    uint64_t runs, busy;
};

/* Called by SQLite on the writer's thread after each commit, with the
 * frames now in the WAL. */
static int on_commit(void *ud, sqlite3 *db, const char *name, int frames)
{
    (void)db;
    (void)name;
    sq_ckpt *c = ud;
    if (frames < c->pages)
        return SQLITE_OK;
    pthread_mutex_lock(&c->mu);
    if (!c->due) {
        c->due = true;
        pthread_cond_signal(&c->wake);
    }
    pthread_mutex_unlock(&c->mu);
    return SQLITE_OK;
}

static void *ckpt_main(void *arg)
{
    sq_ckpt *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->due && !c->stopping)
            pthread_cond_wait(&c->wake, &c->mu);
        if (c->stopping)
            break;
        c->due = false;
        pthread_mutex_unlock(&c->mu);
        int rc = SQLITE_OK, log = 0, copied = 0;
        for (int i = 0; i < PASSIVE_ROUNDS && rc == SQLITE_OK; i++) {
            rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
            if (log - copied <= RESTART_MAX_FRAMES)
                break;
        }
        if (rc == SQLITE_OK)
            rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
        pthread_mutex_lock(&c->mu);
        c->runs++;
        if (rc != SQLITE_OK)
            c->busy++; /* a reader or the writer held on: next time */
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

sq_ckpt *sq_ckpt_start(const char *path, sqlite3 *writer, int pages, uint64_t busy_ms, char *err,
                       size_t errlen)
{
    assert(pages > 0);
    sq_ckpt *c = xcalloc(1, sizeof *c);
    c->pages = pages;
    c->db = sq_connect(path, false, busy_ms, err, errlen);
    if (!c->db) {
        free(c);
        return NULL;
    }
    /* A connection learns that the file is in WAL mode when it first reads
     * it; until then a checkpoint does nothing (and says it is not WAL).
     * This read waits as long as the store's opening does (another process
     * may be migrating the file); the checkpoints then wait less. */
    int64_t n = 0;
    char e[256];
    if (sq_int_query(c->db, "SELECT count(*) FROM sqlite_master", &n, e, sizeof e) != SQLITE_OK) {
        snprintf(err, errlen, "the store's checkpointer cannot read %s: %s", path, e);
        sqlite3_close(c->db);
        free(c);
        return NULL;
    }
    sqlite3_busy_timeout(c->db, RESTART_BUSY_MS);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->wake, NULL);
    int rc = pthread_create(&c->thread, NULL, ckpt_main, c);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the store's checkpointer: %s", strerror(rc));
        pthread_cond_destroy(&c->wake);
        pthread_mutex_destroy(&c->mu);
        sqlite3_close(c->db);
        free(c);
        return NULL;
    }
    sqlite3_wal_hook(writer, on_commit, c);
    return c;
}

void sq_ckpt_stop(sq_ckpt *c, sqlite3 *writer)
{
    if (!c)
        return;
    sqlite3_wal_hook(writer, NULL, NULL);
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    sqlite3_close(c->db);
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void sq_ckpt_counts(sq_ckpt *c, uint64_t *runs, uint64_t *busy)
{
    pthread_mutex_lock(&c->mu);
    *runs = c->runs;
    *busy = c->busy;
    pthread_mutex_unlock(&c->mu);
}

bool store_sqlite_test_checkpoints(store *base, uint64_t *runs, uint64_t *busy)
{
    sq_store *s = sq(base);
    *runs = *busy = 0;
    if (!s->ckpt)
        return false;
    sq_ckpt_counts(s->ckpt, runs, busy);
    return true;
}
