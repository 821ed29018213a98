/* collect_internal: what the files of the collect daemon share (inside
 * collect/): daemon.c (the process: its socket, sinks, admin API, signals),
 * conn.c (one client connection and its answers) and view.c (a view's
 * rule). Nothing outside collect/ includes it.
 *
 * Everything runs on one event loop, the main thread's: the connections,
 * the admin API and the delivery of the store's commits. So the config's
 * rule list, which grows with the views seen (config_add_rule), is read
 * and written by that one thread only. */
#ifndef RESTSPY_COLLECT_INTERNAL_H
#define RESTSPY_COLLECT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "collect/collect.h"
#include "collect/frame.h"
#include "pipeline/pipeline.h"
#include "proxy/admin.h"
#include "proxy/proxy.h"

/* Views created on sight, at most (each is a rule until the daemon stops):
 * past it a pair of a new view is refused (ERROR, close false). */
#define COLLECT_VIEWS_MAX 1000
/* Bytes read from a socket at once. */
#define COLLECT_READ_CHUNK (64 * 1024)

typedef struct cconn cconn;

typedef struct collect {
    uv_loop_t *loop;
    proxy_shared sh; /* the sinks and the config, as the admin API reads them */
    config *cfg;     /* sh.cfg; its rules grow with the views seen */
    size_t nfile;    /* rules of the config file (not the default): the views
                        after them were created on sight */
    size_t nviews;   /* views created on sight */
    const char *socket_path;
    uv_pipe_t server;  /* the listening socket (its loop set once initialised) */
    bool server_bound; /* its file is this daemon's (removed at the stop) */
    admin *adm;
    uv_async_t commit_async;
    pipeline_box *box; /* sync durability's commits (pipeline.h) */
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t grace; /* SIGTERM: how long answers still owed may take */
    bool stopping;
    cconn *conns;
    size_t nconns;
    char readbuf[COLLECT_READ_CHUNK]; /* the loop's, copied out at each read */
} collect;

/* Accepts one pending connection from the daemon's socket (refused past
 * max_connections). */
void collect_accept(collect *d);

/* SIGTERM: each connection stops reading, sends the answers it still owes
 * (commits in flight) and closes. */
void collect_drain_all(collect *d);

/* Grace period over: closes every connection now (answers still owed are
 * not sent; their records are committed all the same). */
void collect_close_all(collect *d);

/* A store commit for a sync pair (owner: its answer), from the box. */
void collect_committed(void *owner, int status);

/* The last connection is gone while stopping (daemon.c finishes). */
void collect_drained(collect *d);

/* The rule deciding pair p: the config's rule named p->view (a [rule]
 * section, or a view created on sight earlier, whose configured switches
 * become p's flags when it carries some), else a new rule of that name
 * (config_add_rule) with p's flags, or the default rule's switches when p
 * has none. NULL with *why when a new view would pass COLLECT_VIEWS_MAX.
 * Invalidates earlier rule pointers (see config_add_rule). */
const rule *collect_view(collect *d, const frame_pair *p, const char **why);

#endif
