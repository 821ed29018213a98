/* testutil: small helpers shared by the unit tests, header-only (static
 * inline, so a test that includes it needs no extra source in meson.build).
 *
 * Owns nothing: the caller owns every struct passed in. Promises: the temp
 * store helpers make and remove exactly one private directory under /tmp and
 * the SQLite files in it, so that tests running in parallel never share a
 * database; a refusing port stays reserved for the test until it closes the
 * socket. */
#ifndef RESTSPY_TESTUTIL_H
#define RESTSPY_TESTUTIL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* SQL that takes a current SQLite store file back to schema version 8 (the
 * migration 8 -> 9 undone), for the tests that build older files from a
 * new one by removing what the later migrations added. */
#define TESTUTIL_SQLITE_UNDO_V9                                                                    \
    "DROP INDEX applied_diverged; ALTER TABLE applied DROP COLUMN outcome; "                       \
    "ALTER TABLE outbox DROP COLUMN origin_body; "

/* Sleeps ms milliseconds (nanosleep: no signal juggling like sleep()). */
static inline void testutil_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Binds a TCP socket to a free loopback port without listening on it, so
 * that a connection there is refused at once, and no one else can take the
 * port while the socket is open. Returns the port and sets *fd (the caller
 * closes it), or -1. */
static inline int testutil_refusing_port(int *fd)
{
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    if (*fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (bind(*fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(*fd, (struct sockaddr *)&a, &al) != 0) {
        close(*fd);
        *fd = -1;
        return -1;
    }
    return ntohs(a.sin_port);
}

/* A SQLite file in a private temporary directory. */
typedef struct testutil_tmpdb {
    char dir[64];   /* /tmp/restspy-<tag>-XXXXXX, made by mkdtemp */
    char path[128]; /* <dir>/t.db (not created: the store makes it) */
    char url[160];  /* sqlite:<path>, for store_options.url */
} testutil_tmpdb;

/* Makes the directory and fills in t; tag names the test in the directory
 * name. 0, or -1 when the directory could not be made. */
static inline int testutil_tmpdb_make(testutil_tmpdb *t, const char *tag)
{
    snprintf(t->dir, sizeof t->dir, "/tmp/restspy-%s-XXXXXX", tag);
    if (!mkdtemp(t->dir))
        return -1;
    snprintf(t->path, sizeof t->path, "%s/t.db", t->dir);
    snprintf(t->url, sizeof t->url, "sqlite:%s", t->path);
    return 0;
}

/* Removes the database with its WAL, shared-memory and journal files, then
 * the directory. The store must be closed first. */
static inline void testutil_tmpdb_remove(const testutil_tmpdb *t)
{
    const char *sfx[] = {"", "-wal", "-shm", "-journal"};
    char p[160];
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", t->path, sfx[i]);
        unlink(p);
    }
    rmdir(t->dir);
}

#endif
