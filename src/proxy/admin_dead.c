/* admin_dead: the dead letters of this node's replicator for the console
 * (issue 13: "dead letters with their reason, and retry or discard for
 * each"): the operations of `restspy replication dead`, through the same
 * module (replication/dead.h) and the same JSON. See admin_internal.h.
 *
 * The broker and the store are blocking (rabbitmq-c, SQLite): each request
 * runs dead_run on libuv's thread pool (admin_offload), so the admin's loop
 * (live streams, other requests, /healthz) never waits for a broker that
 * is slow or gone. Requests of this file run one at a time: each takes the
 * whole dead queue while it runs, so two at once would each see the
 * other's messages as missing. */
#include "proxy/admin_internal.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "replication/dead.h"

/* One request's work: what it asks (read on the loop) and what dead_run
 * did (written on the pool's thread, read on the loop after it). */
typedef struct dead_job {
    config *cfg; /* a reference to the config when the request came */
    dead_op op;
    char *id; /* percent-decoded, owned; NULL for the list */
    char peer[INET6_ADDRSTRLEN + 8];
    dead_result r;
    int rc;
    char err[512];
} dead_job;

static pthread_mutex_t dead_lock = PTHREAD_MUTEX_INITIALIZER;

static void dead_work(void *ud)
{
    dead_job *j = ud;
    pthread_mutex_lock(&dead_lock);
    j->rc = dead_run(j->cfg, j->op, j->id, "restspy admin (dead letters)", &j->r, j->err,
                     sizeof j->err);
    pthread_mutex_unlock(&dead_lock);
}

static void dead_job_free(dead_job *j)
{
    dead_result_free(&j->r);
    config_unref(j->cfg);
    free(j->id);
    free(j);
}

/* The id a successful retry or skip concerned (a stuck write's for a skip
 * that took one). */
static const char *done_id(const dead_job *j)
{
    return j->r.stuck_id ? j->r.stuck_id : j->r.v[j->r.named].ev.msg->id;
}

/* A retry or a skip is on the record, as a flag switch is, whether or not
 * its client is still there to read the answer. */
static void log_change(const dead_job *j)
{
    if (j->op == DEAD_RETRY)
        fprintf(stderr, "restspy: dead letter %s retried by %s: republished to %s\n", done_id(j),
                j->peer, j->r.apply_queue);
    else if (j->r.stuck_id)
        fprintf(stderr,
                "restspy: stuck write %s skipped by %s: recorded in the ledger as skipped\n",
                done_id(j), j->peer);
    else
        fprintf(stderr,
                "restspy: dead letter %s skipped by %s: recorded in the ledger as skipped, "
                "removed from %s\n",
                done_id(j), j->peer, j->r.queue);
}

static void reply_failure(aconn *c, const dead_job *j)
{
    switch (j->rc) {
    case DEAD_ENOTFOUND:
        admin_reply_error(c, 404, "Not Found", j->err);
        break;
    case DEAD_EAMBIGUOUS:
        admin_reply_error(c, 400, "Bad Request", j->err);
        break;
    case DEAD_ENOSTORE:
        admin_reply_error(c, 409, "Conflict", j->err);
        break;
    case DEAD_ESTORE:
        /* The store could not be opened or written: the server's trouble,
         * which may pass, as for a read the store fails (admin_reply_store_failed). */
        admin_reply_error(c, 503, "Service Unavailable", j->err);
        break;
    default:
        assert(j->rc == DEAD_EBROKER);
        admin_reply_error(c, 502, "Bad Gateway", j->err);
        break;
    }
}

static void reply_success(aconn *c, const dead_job *j)
{
    buf b = BUF_INIT;
    if (j->op == DEAD_LIST) {
        buf_append_str(&b, "{\"queue\":");
        buf_append_json_str(&b, j->r.queue, strlen(j->r.queue));
        buf_append_str(&b, ",\"dead\":[");
        for (size_t i = 0; i < j->r.len; i++) {
            if (i)
                buf_append_char(&b, ',');
            dead_json(&j->r.v[i], false, &b);
        }
        buf_append_str(&b, "]}");
    } else if (j->op == DEAD_SHOW) {
        dead_json(&j->r.v[j->r.named], true, &b);
    } else {
        const char *id = done_id(j);
        buf_appendf(&b, "{\"%s\":", j->op == DEAD_RETRY ? "retried" : "skipped");
        buf_append_json_str(&b, id, strlen(id));
        if (j->op == DEAD_SKIP)
            buf_appendf(&b, ",\"stuck\":%s", j->r.stuck_id ? "true" : "false");
        buf_append_char(&b, '}');
    }
    admin_reply(c, 200, "OK", b.data, b.len);
    buf_free(&b);
}

static void dead_done(aconn *c, void *ud)
{
    dead_job *j = ud;
    if (j->rc == DEAD_OK && (j->op == DEAD_RETRY || j->op == DEAD_SKIP))
        log_change(j);
    if (c && j->rc == DEAD_OK)
        reply_success(c, j);
    else if (c)
        reply_failure(c, j);
    dead_job_free(j);
}

/* Starts op on the dead letter named by id[0..idl) (percent-encoded; the
 * list when idl is 0), or answers 409 when replication is off. */
static void dead_start(aconn *c, dead_op op, const char *id, size_t idl)
{
    /* The admin runs on the loop that replaces sh->cfg: it is current. */
    config *cfg = c->a->sh->cfg;
    if (!cfg->amqp || !*cfg->amqp) {
        admin_reply_error(c, 409, "Conflict",
                          "replication is off: no broker is configured (set amqp and restart)");
        return;
    }
    dead_job *j = xcalloc(1, sizeof *j);
    config_ref(cfg);
    j->cfg = cfg;
    j->op = op;
    if (op != DEAD_LIST) {
        buf key = BUF_INIT;
        buf_append_pct_decoded(&key, id, idl, 0);
        buf_append_char(&key, '\0');
        j->id = buf_detach(&key);
        if (!*j->id) { /* "%00" */
            admin_reply_error(c, 400, "Bad Request", "an empty id names no dead letter");
            dead_job_free(j);
            return;
        }
    }
    admin_peer(c, j->peer, sizeof j->peer);
    if (admin_offload(c, dead_work, dead_done, j) < 0)
        dead_job_free(j);
}

void admin_dead_get(aconn *c, const char *rest)
{
    if (strchr(rest, '/')) {
        admin_reply_error(c, 404, "Not Found",
                          "no such endpoint (try /api/dead or /api/dead/ID; POST to ID/retry or "
                          "ID/skip)");
        return;
    }
    dead_start(c, *rest ? DEAD_SHOW : DEAD_LIST, rest, strlen(rest));
}

void admin_dead_post(aconn *c, const char *rest)
{
    size_t idl = strcspn(rest, "/");
    const char *action = rest[idl] ? rest + idl + 1 : "";
    dead_op op = strcmp(action, "retry") == 0  ? DEAD_RETRY
                 : strcmp(action, "skip") == 0 ? DEAD_SKIP
                                               : DEAD_LIST;
    if (op == DEAD_LIST || idl == 0) {
        admin_reply_error(c, 404, "Not Found",
                          "no such endpoint (POST /api/dead/ID/retry or /api/dead/ID/skip)");
        return;
    }
    dead_start(c, op, rest, idl);
}
