/* A private RabbitMQ node for the unit tests: see rmq_testnode.h. */
#include "rmq_testnode.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "base/util.h"

#define RMQ_CTL "/usr/lib/rabbitmq/bin/rabbitmqctl"

static bool port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* In a child about to exec: stdout and stderr appended to <dir>/<name>, so
 * the broker's chatter stays out of the test output but can be read after a
 * failure. */
static void log_output_to(const rmq_testnode *b, const char *name)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s", b->dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
}

/* Runs rabbitmqctl -n node args...; its exit status, or -1. */
static int run_ctl(const rmq_testnode *b, const char *a1, const char *a2, const char *a3)
{
    pid_t pid = fork();
    if (pid == 0) {
        log_output_to(b, "ctl.log");
        execl(RMQ_CTL, "rabbitmqctl", "-n", b->node, a1, a2, a3, (char *)NULL);
        _exit(127);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int rmq_testnode_start(rmq_testnode *b, bool wipe)
{
    if (wipe) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s/mnesia %s/log", b->dir, b->dir, b->dir);
        if (system(cmd) != 0)
            return -1;
        char path[128];
        snprintf(path, sizeof path, "%s/enabled_plugins", b->dir);
        FILE *f = fopen(path, "w");
        if (!f)
            return -1;
        fputs("[].\n", f);
        fclose(f);
        snprintf(path, sizeof path, "%s/rabbitmq.conf", b->dir);
        f = fopen(path, "w");
        if (!f)
            return -1;
        fprintf(f, "listeners.tcp.default = 127.0.0.1:%d\nloopback_users = none\n", b->port);
        fclose(f);
    }
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        setsid();
        log_output_to(b, "stdout.log");
        char v[160];
        setenv("RABBITMQ_NODENAME", b->node, 1);
        snprintf(v, sizeof v, "%d", b->port);
        setenv("RABBITMQ_NODE_PORT", v, 1);
        snprintf(v, sizeof v, "%d", b->port + 20000);
        setenv("RABBITMQ_DIST_PORT", v, 1);
#define DIRENV(var, fmt)                                                                           \
    snprintf(v, sizeof v, fmt, b->dir);                                                            \
    setenv(var, v, 1)
        DIRENV("RABBITMQ_MNESIA_BASE", "%s/mnesia");
        DIRENV("RABBITMQ_LOG_BASE", "%s/log");
        DIRENV("RABBITMQ_FEATURE_FLAGS_FILE", "%s/feature_flags");
        DIRENV("RABBITMQ_ENABLED_PLUGINS_FILE", "%s/enabled_plugins");
        DIRENV("RABBITMQ_CONFIG_FILE", "%s/rabbitmq");
        DIRENV("RABBITMQ_PID_FILE", "%s/pid");
#undef DIRENV
        execl(RMQ_SERVER, "rabbitmq-server", (char *)NULL);
        _exit(127);
    }
    b->pid = pid;
    /* await_startup fails at once until the node has registered with epmd. */
    int64_t until = util_mono_us() + 90 * 1000000LL;
    while (util_mono_us() < until) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "broker %s exited during startup (see %s/stdout.log)\n", b->node,
                    b->dir);
            b->pid = 0;
            return -1;
        }
        if (run_ctl(b, "await_startup", "--timeout", "60") == 0)
            return 0;
        testutil_sleep_ms(500);
    }
    fprintf(stderr, "broker %s did not start (see %s)\n", b->node, b->dir);
    return -1;
}

void rmq_testnode_stop(rmq_testnode *b)
{
    if (b->pid <= 0)
        return;
    run_ctl(b, "stop", NULL, NULL);
    int64_t until = util_mono_us() + 20 * 1000000LL;
    int st;
    while (waitpid(b->pid, &st, WNOHANG) == 0) {
        if (util_mono_us() > until) {
            kill(-b->pid, SIGKILL);
            waitpid(b->pid, &st, 0);
            break;
        }
        testutil_sleep_ms(100);
    }
    b->pid = 0;
}

/* Picks a free slot (AMQP 5701-5704, dist +20000, node names mqA..mqD)
 * starting with `prefer`, and starts a fresh node. */
static int node_init(rmq_testnode *b, int prefer)
{
    memset(b, 0, sizeof *b);
    for (int k = 0; k < 4; k++) {
        int i = (prefer + k) % 4;
        if (port_free(5701 + i) && port_free(25701 + i)) {
            b->port = 5701 + i;
            snprintf(b->node, sizeof b->node, "mq%c@localhost", 'A' + i);
            snprintf(b->dir, sizeof b->dir, "/tmp/rmq-test-mq%c", 'A' + i);
            snprintf(b->url, sizeof b->url, "amqp://guest:guest@127.0.0.1:%d/", b->port);
            return rmq_testnode_start(b, true);
        }
    }
    fprintf(stderr, "no free broker port in 5701-5704\n");
    return -1;
}

/* The node the watchdog takes down; set before the alarm is armed. */
static rmq_testnode *volatile watched;

/* A hung test must not leave a broker behind (meson kills it at 120 s):
 * the watchdog takes the node down first. kill and _exit are
 * async-signal-safe. */
static void watchdog(int sig)
{
    (void)sig;
    rmq_testnode *b = watched;
    if (b && b->pid > 0) {
        kill(-b->pid, SIGCONT);
        kill(-b->pid, SIGKILL);
    }
    _exit(3);
}

int rmq_testnode_group_setup(rmq_testnode *n, int prefer)
{
    n->available = false;
    if (access(RMQ_SERVER, X_OK) != 0)
        return 0;
    watched = n;
    signal(SIGALRM, watchdog);
    alarm(115);
    if (node_init(n, prefer) < 0) {
        rmq_testnode_stop(n);
        return -1;
    }
    n->available = true;
    return 0;
}

int rmq_testnode_group_teardown(rmq_testnode *n)
{
    rmq_testnode_stop(n);
    alarm(0);
    return 0;
}
