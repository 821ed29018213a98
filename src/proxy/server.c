#include "proxy/server.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "proxy/admin.h"
#include "capture/config.h"
#include "capture/rules.h"
#include "proxy/listener.h"
#include "proxy/proxy.h"
#include "pipeline/stats.h"
#include "pipeline/tap.h"
#include "base/url.h"
#include "base/util.h"

typedef struct server {
    uv_loop_t *loop;
    int argc;
    char **argv;
    char *const *envp;
    proxy_shared sh;
    listener *l;
    admin *adm;
    uv_signal_t sigterm, sigint, sighup;
    bool signals_on;
    bool stopping;
    int exit_code;
} server;

static void usage(FILE *f)
{
    fprintf(f, "usage: restspy proxy --upstream http://HOST:PORT [options]\n\n"
               "Forwards HTTP/1.1 requests to the upstream and logs and persists each one\n"
               "as its route rule says. Every option is also a config-file key and a\n"
               "RESTSPY_<KEY> environment variable (flags beat env beat file).\n\n"
               "options:\n");
}

/* Closes every handle but the signal ones: closing those would give the
 * signals back their default action (death) while the store is still being
 * flushed, so they stay installed, unreferenced, until the process ends. */
static void close_walk(uv_handle_t *h, void *ud)
{
    (void)ud;
    if (h->type != UV_SIGNAL && !uv_is_closing(h))
        uv_close(h, NULL);
}

static void stop(server *s)
{
    if (s->stopping)
        return; /* a second signal while draining changes nothing */
    s->stopping = true;
    fprintf(stderr, "restspy: stopping: finishing requests in flight\n");
    admin_stop(s->adm);
    s->adm = NULL;
    uv_unref((uv_handle_t *)&s->sighup);
    uv_unref((uv_handle_t *)&s->sigterm);
    uv_unref((uv_handle_t *)&s->sigint);
    /* Workers drain on their own threads; this waits for them. */
    listener_stop(s->l, s->sh.cfg->grace_period_ms);
    s->l = NULL;
    tap_free(s->sh.pl.tap); /* the workers that published to it are gone */
    s->sh.pl.tap = NULL;
    uv_walk(s->loop, close_walk, NULL);
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    stop(h->data);
}

static size_t count(char *const *list)
{
    size_t n = 0;
    while (list && list[n])
        n++;
    return n;
}

/* The certificates of the proxy listener (*out NULL: plain HTTP) and of the
 * admin listener, from cfg. -1 with err when a file does not hold what it
 * should (the files were readable when the config was read). */
static int make_tls(const config *cfg, tls_server **out, tls_server **admin_out, char *err,
                    size_t errlen)
{
    *out = *admin_out = NULL;
    size_t n = count(cfg->tls_cert);
    if (n &&
        !(*out = tls_server_new(cfg->tls_cert, n, cfg->tls_key, count(cfg->tls_key), err, errlen)))
        return -1;
    if (admin_tls_new(cfg, admin_out, err, errlen) < 0) {
        tls_server_unref(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

/* An https upstream's TLS context (*out NULL for http). */
static int make_upstream_tls(const config *cfg, const url_parts *up, tls_client **out, char *err,
                             size_t errlen)
{
    *out = NULL;
    if (!url_is(up, "https"))
        return 0;
    tls_client_opts o = {
        .ca_file = cfg->upstream_ca,
        .insecure = cfg->upstream_insecure,
        .name = cfg->upstream_sni ? cfg->upstream_sni : up->host,
        .cert_file = cfg->upstream_cert,
        .key_file = cfg->upstream_key,
    };
    if (!(*out = tls_client_new(&o, err, errlen)))
        return -1;
    if (cfg->upstream_insecure)
        fprintf(stderr,
                "restspy: WARNING: upstream_insecure is on: the certificate of %s is not "
                "verified, so anyone on the path can read and change this traffic\n",
                cfg->upstream);
    return 0;
}

static void reload(server *s)
{
    char err[512] = "";
    if (logsink_reopen(s->sh.pl.log, err, sizeof err) < 0)
        fprintf(stderr, "restspy: cannot reopen the log: %s (keeping the old file)\n", err);
    config *c = NULL;
    if (config_load(&c, s->argc - 1, s->argv + 1, s->envp, NULL, NULL, err, sizeof err) < 0 ||
        config_validate(c, err, sizeof err) < 0) {
        fprintf(stderr, "restspy: config reload failed: %s (keeping the running config)\n", err);
        config_unref(c);
        return;
    }
    tls_server *tls, *admin_tls;
    if (make_tls(c, &tls, &admin_tls, err, sizeof err) < 0) {
        fprintf(stderr, "restspy: config reload failed: tls: %s (keeping the running config)\n",
                err);
        config_unref(c);
        return;
    }
    /* A rule switched at run time (admin API) stays switched when the new
     * file still has a rule of its name: an operator who turned a noisy
     * rule off does not want a log rotation to turn it on again. c is
     * nobody else's yet, and the admin that switches rules runs on this
     * loop. */
    buf kept = BUF_INIT;
    rules_carry_switches(c->rules, c->rules_len, s->sh.cfg->rules, s->sh.cfg->rules_len, &kept);
    proxy_shared_set_config(&s->sh, c, tls);
    if (s->adm)
        admin_set_tls(s->adm, admin_tls);
    tls_server_unref(tls);
    tls_server_unref(admin_tls);
    config_unref(c);
    fprintf(stderr, "restspy: config reloaded%s%s%s%s\n", c->config_path ? " from " : "",
            c->config_path ? c->config_path : "", kept.len ? "; switched at run time: " : "",
            kept.len ? kept.data : "");
    buf_free(&kept);
}

static void on_hup(uv_signal_t *h, int signum)
{
    (void)signum;
    server *s = h->data;
    if (!s->stopping)
        reload(s);
}

/* Whether argv (before any "--") holds one of the two words. */
static bool has_arg(int argc, char **argv, const char *a, const char *b)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            break;
        if (!strcmp(argv[i], a) || (b && !strcmp(argv[i], b)))
            return true;
    }
    return false;
}

int server_main(int argc, char **argv, char *const *envp)
{
    if (has_arg(argc, argv, "--help", "-h")) {
        /* --markdown: the README's settings table, from the same table. */
        bool markdown = has_arg(argc, argv, "--markdown", NULL);
        if (!markdown)
            usage(stdout);
        config_print_keys(stdout, NULL, markdown);
        return 0;
    }
    char err[512] = "";
    config *cfg = NULL;
    if (config_load_command(&cfg, "proxy", argc, argv, envp) != 0)
        return 2;
    if (!cfg->upstream) {
        fprintf(stderr, "restspy proxy: --upstream is required (e.g. --upstream "
                        "http://127.0.0.1:8000)\n");
        config_unref(cfg);
        return 2;
    }

    server s = {0};
    s.loop = uv_default_loop();
    s.argc = argc;
    s.argv = argv;
    s.envp = envp;
    s.exit_code = 0;
    pthread_mutex_init(&s.sh.cfg_lock, NULL);

    int rc = 1;
    url_parts up;
    if (url_parse(cfg->upstream, strlen(cfg->upstream), &up, NULL) < 0 ||
        url_hostport(&up, s.sh.upstream_host, sizeof s.sh.upstream_host) < 0 ||
        listener_resolve(s.sh.upstream_host, &s.sh.upstream_addr, err, sizeof err) < 0) {
        if (!*err)
            snprintf(err, sizeof err, "bad upstream URL '%s'", cfg->upstream);
        fprintf(stderr, "restspy proxy: upstream: %s\n", err);
        config_unref(cfg);
        return 1;
    }
    tls_server *tls = NULL, *admin_tls = NULL;
    if (make_tls(cfg, &tls, &admin_tls, err, sizeof err) < 0 ||
        make_upstream_tls(cfg, &up, &s.sh.up_tls, err, sizeof err) < 0) {
        fprintf(stderr, "restspy proxy: tls: %s\n", err);
        tls_server_unref(tls);
        tls_server_unref(admin_tls);
        config_unref(cfg);
        return 2;
    }
    if (pipeline_open(&s.sh.pl, cfg, err, sizeof err) < 0) {
        fprintf(stderr, "restspy proxy: %s\n", err);
        goto out;
    }
    proxy_shared_set_config(&s.sh, cfg, tls);

    if (strcmp(cfg->admin, "off") != 0)
        s.sh.pl.tap = tap_new(s.loop); /* before the workers, which read it */
    int workers = cfg->workers > 0 ? cfg->workers : (int)uv_available_parallelism();
    signal(SIGPIPE, SIG_IGN);
    s.l = listener_start(&s.sh, cfg->listen, workers, err, sizeof err);
    if (!s.l) {
        fprintf(stderr, "restspy proxy: %s\n", err);
        goto out;
    }
    if (strcmp(cfg->admin, "off") != 0) {
        s.adm = admin_start(s.loop, cfg->admin, cfg->admin_token, admin_tls, &s.sh, s.sh.pl.ob,
                            workers, err, sizeof err);
        if (!s.adm) {
            fprintf(stderr, "restspy proxy: %s\n", err);
            listener_stop(s.l, 0);
            s.l = NULL;
            goto out;
        }
    }
    uv_signal_init(s.loop, &s.sigterm);
    uv_signal_init(s.loop, &s.sigint);
    uv_signal_init(s.loop, &s.sighup);
    s.sigterm.data = s.sigint.data = s.sighup.data = &s;
    uv_signal_start(&s.sigterm, on_stop_signal, SIGTERM);
    uv_signal_start(&s.sigint, on_stop_signal, SIGINT);
    uv_signal_start(&s.sighup, on_hup, SIGHUP);
    s.signals_on = true;
    fprintf(stderr,
            "restspy %s: listening on %s%s, upstream %s, store %s, log %s, admin %s%s, "
            "%d worker%s, node %s\n",
            RESTSPY_VERSION, cfg->listen, tls ? " (TLS)" : "", cfg->upstream, cfg->store, cfg->log,
            cfg->admin, admin_tls ? " (TLS)" : "", workers, workers == 1 ? "" : "s", cfg->node);
    if (s.adm)
        fprintf(stderr, "restspy: console %s://%s/\n", cfg->admin_tls_cert ? "https" : "http",
                cfg->admin);
    uv_run(s.loop, UV_RUN_DEFAULT);
    rc = s.exit_code;
    fprintf(stderr, "restspy: stopped\n");

out:
    if (s.l)
        listener_stop(s.l, 0);
    tap_free(s.sh.pl.tap);
    s.sh.pl.tap = NULL;
    uv_walk(s.loop, close_walk, NULL);
    uv_run(s.loop, UV_RUN_DEFAULT);
    if (!s.signals_on)
        uv_loop_close(s.loop); /* else the signal handles keep it open: see close_walk */
    pipeline_close(&s.sh.pl);
    config_unref(s.sh.cfg);
    config_unref(cfg);
    tls_server_unref(s.sh.tls);
    tls_server_unref(tls);
    tls_server_unref(admin_tls);
    tls_client_free(s.sh.up_tls);
    pthread_mutex_destroy(&s.sh.cfg_lock);
    return rc;
}
