/* pg_testnode: a private PostgreSQL 15 server for a unit test (the store
 * tests' PostgreSQL runs), started by tests/integration/pgnode.py's `serve`
 * so that the C and Python tests share one way of running PostgreSQL.
 *
 * Owns the `pgnode.py serve` child (its stdin is our pipe): the server lives
 * while that pipe is open and is stopped (pg_ctl stop) when it closes,
 * whether by pg_testnode_stop or because the test process died, so no
 * server outlives its test. Promises: the server listens on 127.0.0.1 only
 * on a free port, its data, socket and log in a temporary directory; when
 * PostgreSQL is not installed the tests that need it skip, loudly, except
 * under CI (the CI environment variable set), where they fail. */
#ifndef RESTSPY_PG_TESTNODE_H
#define RESTSPY_PG_TESTNODE_H

#include <stdbool.h>
#include <sys/types.h>

#ifndef PGNODE_PY /* meson passes the source tree's path */
#define PGNODE_PY "tests/integration/pgnode.py"
#endif

typedef struct pg_testnode {
    pid_t pid;      /* the pgnode.py child, 0 when none */
    int in_fd;      /* its stdin (closing it stops the server), -1 when none */
    bool available; /* a server runs: the PostgreSQL tests run */
    char why[512];  /* why not, when !available */
    char url[256];  /* postgresql://restspy@127.0.0.1:<port>/restspy */
    unsigned dbs;   /* databases made by pg_testnode_fresh_db so far */
} pg_testnode;

/* Starts a server into *n (about 5 s). 0 with n->available true; 0 with
 * n->available false and n->why when PostgreSQL is not installed; -1 when it
 * is installed but could not start (reason on stderr). */
int pg_testnode_start(pg_testnode *n);

/* Stops the server and reaps the child. No-op when none runs. */
void pg_testnode_stop(pg_testnode *n);

/* Creates an empty database on n's server and writes its URL into url
 * (size len): each test gets its own. 0, or -1 (reason on stderr). */
int pg_testnode_fresh_db(pg_testnode *n, char *url, size_t len);

/* In a test that needs the server: when it is not available, fails under
 * CI and skips (with the reason) elsewhere. Needs cmocka.h and stdlib.h. */
#define PG_TESTNODE_NEED(n)                                                                        \
    do {                                                                                           \
        if (!(n)->available) {                                                                     \
            if (getenv("CI") && *getenv("CI"))                                                     \
                fail_msg("PostgreSQL is needed under CI: %s", (n)->why);                           \
            print_message("%s: skipped\n", (n)->why);                                              \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

#endif
