/* daemon: the `restspy collect` process (see collect.h): claims the socket
 * (a stale one is replaced, a live daemon's or a non-socket file never),
 * opens the pipeline's sinks, serves the admin API on the same loop as the
 * connections, and stops cleanly.
 *
 * Signals: SIGTERM/SIGINT stop accepting (the socket file is removed), let
 * each connection send the answers it owes (commits in flight, up to
 * grace_period), flush the store's queue and exit 0; SIGHUP reopens the
 * log file (the config is not reloaded: views live in it). */
#include "collect/collect_internal.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/util.h"
#include "pipeline/tap.h"

/* ---- the socket ---- */

/* Whether a daemon answers on the socket at path: 1 yes, 0 nobody (a
 * stale file), -1 with err when it cannot be told. */
static int socket_answers(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        util_seterr(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    int e = errno;
    close(fd);
    if (rc == 0)
        return 1;
    if (e == ECONNREFUSED || e == ENOENT)
        return 0;
    util_seterr(err, errlen, "cannot tell whether a daemon answers on %s: %s", path, strerror(e));
    return -1;
}

/* Makes path free for the daemon's socket: nothing there, or a socket file
 * nobody answers on (removed). -1 with err otherwise. */
static int socket_claim(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        util_seterr(err, errlen, "socket %s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        util_seterr(err, errlen, "socket %s: exists and is not a socket (left as it is)", path);
        return -1;
    }
    int answers = socket_answers(path, err, errlen);
    if (answers != 0) {
        if (answers > 0)
            util_seterr(err, errlen, "socket %s: another restspy collect answers on it", path);
        return -1;
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        util_seterr(err, errlen, "socket %s: cannot remove the stale socket: %s", path,
                    strerror(errno));
        return -1;
    }
    fprintf(stderr, "restspy collect: replaced the stale socket %s (nobody answered on it)\n",
            path);
    return 0;
}

static void on_connection(uv_stream_t *s, int status)
{
    collect *d = s->data;
    if (status < 0 || d->stopping)
        return;
    collect_accept(d);
}

/* Binds and listens on cfg's socket, mode 0660 from its creation (the
 * umask is set around the bind, before any thread exists). */
static int socket_listen(collect *d, char *err, size_t errlen)
{
    if (socket_claim(d->socket_path, err, errlen) < 0)
        return -1;
    uv_pipe_init(d->loop, &d->server, 0);
    d->server.data = d;
    mode_t old = umask(0117);
    int rc = uv_pipe_bind(&d->server, d->socket_path);
    umask(old);
    d->server_bound = rc == 0; /* the file is ours to remove */
    if (rc == 0 && chmod(d->socket_path, 0660) < 0)
        rc = uv_translate_sys_error(errno);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&d->server, 128, on_connection);
    if (rc < 0) {
        util_seterr(err, errlen, "socket %s: %s", d->socket_path, uv_strerror(rc));
        return -1;
    }
    return 0;
}

/* Stops accepting and removes the socket file (when this daemon made it). */
static void socket_close(collect *d)
{
    if (!uv_is_closing((uv_handle_t *)&d->server) && d->server.loop)
        uv_close((uv_handle_t *)&d->server, NULL);
    if (d->server_bound)
        unlink(d->socket_path);
    d->server_bound = false;
}

/* ---- stop ---- */

void collect_drained(collect *d)
{
    uv_timer_stop(&d->grace);
    if (!uv_is_closing((uv_handle_t *)&d->grace))
        uv_close((uv_handle_t *)&d->grace, NULL);
    if (d->box) {
        pipeline_box_close(d->box); /* commits that still come are dropped */
        d->box = NULL;
    }
    tap_free(d->sh.pl.tap); /* its handle: the loop can end */
    d->sh.pl.tap = NULL;
}

static void on_grace(uv_timer_t *t)
{
    collect *d = t->data;
    fprintf(stderr, "restspy collect: grace period over: closing %zu connection%s\n", d->nconns,
            d->nconns == 1 ? "" : "s");
    collect_close_all(d);
}

static void stop(collect *d)
{
    if (d->stopping)
        return; /* a second signal while draining changes nothing */
    d->stopping = true;
    fprintf(stderr, "restspy collect: stopping: answering the pairs in flight\n");
    /* The signal handles stay installed (unreferenced) until the exit: closed,
     * they would give the signals their default action (death) back while
     * the store is still being flushed. */
    uv_unref((uv_handle_t *)&d->sigterm);
    uv_unref((uv_handle_t *)&d->sigint);
    uv_unref((uv_handle_t *)&d->sighup);
    socket_close(d);
    admin_stop(d->adm);
    d->adm = NULL;
    if (!d->conns) {
        collect_drained(d);
        return;
    }
    uv_timer_start(&d->grace, on_grace, d->cfg->grace_period_ms, 0);
    collect_drain_all(d);
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    stop(h->data);
}

static void on_hup(uv_signal_t *h, int signum)
{
    (void)signum;
    collect *d = h->data;
    char err[512] = "";
    if (logsink_reopen(d->sh.pl.log, err, sizeof err) < 0)
        fprintf(stderr, "restspy collect: cannot reopen the log: %s (keeping the old file)\n", err);
}

/* ---- the command ---- */

static void signals_start(collect *d)
{
    uv_signal_init(d->loop, &d->sigterm);
    uv_signal_init(d->loop, &d->sigint);
    uv_signal_init(d->loop, &d->sighup);
    d->sigterm.data = d->sigint.data = d->sighup.data = d;
    uv_signal_start(&d->sigterm, on_stop_signal, SIGTERM);
    uv_signal_start(&d->sigint, on_stop_signal, SIGINT);
    uv_signal_start(&d->sighup, on_hup, SIGHUP);
}

/* The admin listener, when cfg has one. */
static int admin_open(collect *d, char *err, size_t errlen)
{
    const config *cfg = d->cfg;
    if (strcmp(cfg->admin, "off") == 0)
        return 0;
    tls_server *tls = NULL;
    if (admin_tls_new(cfg, &tls, err, errlen) < 0)
        return -1;
    d->adm = admin_start(d->loop, cfg->admin, cfg->admin_token, tls, &d->sh, d->sh.pl.ob, 1, err,
                         errlen);
    tls_server_unref(tls);
    return d->adm ? 0 : -1;
}

/* Everything before the loop runs: socket, sinks, mailbox, admin. */
static int start(collect *d, char *err, size_t errlen)
{
    if (socket_listen(d, err, errlen) < 0)
        return -1;
    if (pipeline_open(&d->sh.pl, d->cfg, err, errlen) < 0)
        return -1;
    d->box = pipeline_box_open(d->loop, &d->commit_async, collect_committed);
    uv_timer_init(d->loop, &d->grace);
    d->grace.data = d;
    if (strcmp(d->cfg->admin, "off") != 0)
        d->sh.pl.tap = tap_new(d->loop);
    return admin_open(d, err, errlen);
}

static void close_walk(uv_handle_t *h, void *ud)
{
    (void)ud;
    if (h->type != UV_SIGNAL && !uv_is_closing(h))
        uv_close(h, NULL);
}

int collect_run(config *cfg)
{
    assert(cfg->socket);
    collect *d = xcalloc(1, sizeof *d);
    d->loop = uv_default_loop();
    d->cfg = cfg;
    d->sh.cfg = cfg;
    d->nfile = cfg->rules_len - 1;
    d->socket_path = cfg->socket;
    pthread_mutex_init(&d->sh.cfg_lock, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    char err[512] = "";
    if (start(d, err, sizeof err) < 0) {
        fprintf(stderr, "restspy collect: %s\n", err);
        goto out;
    }
    signals_start(d);
    fprintf(stderr, "restspy %s collect: listening on %s, store %s, log %s, admin %s, node %s%s\n",
            RESTSPY_VERSION, cfg->socket, cfg->store, cfg->log, cfg->admin, cfg->node,
            d->sh.pl.replicating ? ", replicating" : "");
    uv_run(d->loop, UV_RUN_DEFAULT);
    rc = 0;
    fprintf(stderr, "restspy collect: stopped\n");

out:
    admin_stop(d->adm);
    d->adm = NULL;
    socket_close(d);
    collect_close_all(d);
    if (d->box)
        pipeline_box_close(d->box);
    d->box = NULL;
    tap_free(d->sh.pl.tap);
    d->sh.pl.tap = NULL;
    uv_walk(d->loop, close_walk, NULL);
    uv_run(d->loop, UV_RUN_DEFAULT);
    pipeline_close(&d->sh.pl); /* commits what the store still queues */
    pthread_mutex_destroy(&d->sh.cfg_lock);
    free(d);
    return rc;
}
