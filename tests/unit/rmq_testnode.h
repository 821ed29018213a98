/* rmq_testnode: a private RabbitMQ node for a unit test (test_mq,
 * test_outbox), started from Debian's rabbitmq-server scripts run directly,
 * as tests/integration/rabbit.py does.
 *
 * Owns the node: the rabbitmq-server script (leader of its own process
 * group), its data directory /tmp/rmq-test-mq<A-D> (wiped at group setup) and
 * its logs there (stdout.log, ctl.log). Promises: the node listens on
 * 127.0.0.1 only, on the first free slot of AMQP 5701-5704 (distribution port
 * +20000, node names mqA..mqD@localhost), so that test programs running in
 * parallel each get their own; guest/guest may log in; when rabbitmq-server
 * is not installed the tests that need a broker skip, loudly, except under
 * CI (the CI environment variable set), where they fail: a suite must not
 * shrink silently; a hung test is killed, its node first, by a SIGALRM watchdog before
 * meson's 120 s timeout, so no broker outlives its test. One node per test
 * program: the watchdog knows one. */
#ifndef RESTSPY_RMQ_TESTNODE_H
#define RESTSPY_RMQ_TESTNODE_H

#include <stdbool.h>
#include <sys/types.h>

#ifndef RMQ_SERVER /* overridable (-DRMQ_SERVER=...) to check the skip path */
#define RMQ_SERVER "/usr/lib/rabbitmq/bin/rabbitmq-server"
#endif

typedef struct rmq_testnode {
    pid_t pid;      /* the rabbitmq-server script, or 0 while the node is down */
    int port;       /* AMQP port */
    bool available; /* started by the group setup: broker tests run */
    char node[32];  /* Erlang node name, mq<A-D>@localhost */
    char dir[64];   /* data and log directory */
    char url[96];   /* amqp://guest:guest@127.0.0.1:<port>/ */
} rmq_testnode;

/* For a cmocka group setup. When RMQ_SERVER is not executable: returns 0
 * with n->available false. Otherwise arms the watchdog (115 s) and starts a
 * fresh node in *n on the first free slot counting from prefer (0-3; tests
 * that usually run together prefer different slots): 0 with n->available
 * true once rabbitmqctl await_startup succeeds, or -1 (reason on stderr,
 * nothing left running). */
int rmq_testnode_group_setup(rmq_testnode *n, int prefer);

/* For a cmocka group teardown: stops the node if it runs, disarms the
 * watchdog. Returns 0 (what the teardown returns). */
int rmq_testnode_group_teardown(rmq_testnode *n);

/* Starts the node of a set-up *n again (after rmq_testnode_stop or a kill,
 * with pid set to 0 by the caller), keeping its data unless wipe. Waits up
 * to 90 s for it to accept connections. 0, or -1 (reason on stderr). */
int rmq_testnode_start(rmq_testnode *n, bool wipe);

/* Stops the node with rabbitmqctl stop, killing its process group after
 * 20 s; waits for it and sets n->pid to 0. No-op when pid is 0. */
void rmq_testnode_stop(rmq_testnode *n);

/* In a test that needs the broker: when the group setup found no
 * rabbitmq-server, fails it under CI and skips it (with the reason)
 * elsewhere. Needs cmocka.h and stdlib.h. */
#define RMQ_TESTNODE_NEED(n)                                                                       \
    do {                                                                                           \
        if (!(n)->available) {                                                                     \
            if (getenv("CI") && *getenv("CI"))                                                     \
                fail_msg("rabbitmq-server is not installed (" RMQ_SERVER "): needed under CI");    \
            print_message("rabbitmq-server is not installed (" RMQ_SERVER "): skipped\n");         \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

#endif
