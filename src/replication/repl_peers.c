/* repl_peers: see repl_peers.h. */
#include "replication/repl_peers.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "replication/federate.h"
#include "replication/mgmt.h"

void repl_peers_free(repl_peers *h)
{
    for (size_t i = 0; i < h->n; i++) {
        free(h->v[i].peer);
        free(h->v[i].shovel);
        free(h->v[i].reason);
    }
    free(h->v);
    memset(h, 0, sizeof *h);
}

/* The entry of peer (added when new). */
static repl_peer *peer_entry(repl_peers *h, const char *peer)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->v[i].peer, peer) == 0)
            return &h->v[i];
    h->v = xrealloc(h->v, (h->n + 1) * sizeof *h->v);
    repl_peer *e = &h->v[h->n++];
    memset(e, 0, sizeof *e);
    e->peer = xstrdup(peer);
    e->held = -1;
    return e;
}

/* A JSON integer field, or dflt when absent or not a number. */
static int64_t json_i64(const json_t *o, const char *key, int64_t dflt)
{
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? (int64_t)json_number_value(v) : dflt;
}

/* The out queues: their depth and the timestamp of their first message
 * (the message's timestamp property, the write's time at its origin: the
 * management API's head_message_timestamp, in seconds). */
static int peers_queues(mgmt *g, repl_peers *h)
{
    static const char prefix[] = FEDERATE_OUT_PREFIX;
    char *path = mgmt_path(g, "queues", NULL);
    buf b = BUF_INIT;
    buf_appendf(&b, "%s?columns=name,messages,head_message_timestamp", path);
    free(path);
    json_t *list = NULL;
    int rc = mgmt_get_json(g, b.data, false, &list);
    buf_free(&b);
    if (rc != 0)
        return -1;
    size_t i;
    json_t *q;
    json_array_foreach(list, i, q)
    {
        const char *name = json_string_value(json_object_get(q, "name"));
        if (!name || strncmp(name, prefix, sizeof prefix - 1) != 0)
            continue;
        repl_peer *e = peer_entry(h, name + sizeof prefix - 1);
        e->has_queue = true;
        e->held = json_i64(q, "messages", -1);
        int64_t ts = json_i64(q, "head_message_timestamp", 0);
        e->oldest_us = ts > 0 ? ts * 1000000 : 0;
    }
    json_decref(list);
    return 0;
}

/* The shovels restspy-to-<peer> and their states (none known when the
 * shovel management plugin is not there: 404). */
static int peers_shovels(mgmt *g, repl_peers *h)
{
    static const char prefix[] = FEDERATE_SHOVEL_PREFIX;
    char *path = mgmt_path(g, "shovels", NULL);
    json_t *list = NULL;
    int rc = mgmt_get_json(g, path, true, &list);
    free(path);
    if (rc < 0)
        return -1;
    h->shovels_known = rc == 0;
    size_t i;
    json_t *sh;
    json_array_foreach(list, i, sh)
    {
        const char *name = json_string_value(json_object_get(sh, "name"));
        const char *state = json_string_value(json_object_get(sh, "state"));
        if (!name || strncmp(name, prefix, sizeof prefix - 1) != 0)
            continue;
        repl_peer *e = peer_entry(h, name + sizeof prefix - 1);
        free(e->shovel);
        e->shovel = xstrdup(state ? state : "unknown");
        const char *why = json_string_value(json_object_get(sh, "reason"));
        free(e->reason);
        e->reason = why ? xstrdup(why) : NULL;
    }
    json_decref(list);
    return 0;
}

static int peer_cmp(const void *a, const void *b)
{
    return strcmp(((const repl_peer *)a)->peer, ((const repl_peer *)b)->peer);
}

int repl_peers_collect(const char *mgmt_url, const char *vhost, const hclient_tls *tls,
                       repl_peers *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    mgmt g;
    int rc = 2;
    if (mgmt_init(&g, mgmt_url, vhost) == 0) {
        if (tls)
            g.tls = *tls;
        if (mgmt_connect(&g) == 0)
            rc = peers_queues(&g, out) == 0 && peers_shovels(&g, out) == 0 ? 0 : 1;
    }
    if (rc != 0)
        snprintf(err, errlen, "%s", g.err ? g.err : "the management API failed");
    mgmt_free(&g);
    if (out->n > 1)
        qsort(out->v, out->n, sizeof *out->v, peer_cmp);
    return rc;
}

void repl_peers_json(const repl_peers *h, int64_t now_us, buf *b)
{
    buf_append_char(b, '[');
    for (size_t i = 0; i < h->n; i++) {
        const repl_peer *e = &h->v[i];
        buf_append_str(b, i ? ",{\"peer\":" : "{\"peer\":");
        buf_append_json_str(b, e->peer, strlen(e->peer));
        buf_append_str(b, ",\"held\":");
        if (e->has_queue && e->held >= 0)
            buf_append_i64(b, e->held);
        else
            buf_append_str(b, "null");
        bool oldest = e->held > 0 && e->oldest_us;
        buf_json_add_us(b, "oldest_us", oldest ? e->oldest_us : 0);
        buf_json_add_age(b, "oldest_age_s", oldest ? e->oldest_us : 0, now_us);
        buf_append_str(b, e->has_queue ? ",\"queue\":true" : ",\"queue\":false");
        buf_json_add_str(b, "shovel", h->shovels_known ? e->shovel : NULL);
        buf_json_add_str(b, "shovel_reason", e->reason);
        buf_append_char(b, '}');
    }
    buf_append_char(b, ']');
}

int repl_peers_read(const char *mgmt_url, const char *vhost, const hclient_tls *tls, buf *json_out,
                    char *err, size_t errlen)
{
    repl_peers h;
    int rc = repl_peers_collect(mgmt_url, vhost, tls, &h, err, errlen);
    if (rc == 0) {
        buf_appendf(json_out,
                    "{\"shovels_known\":%s,\"peers\":", h.shovels_known ? "true" : "false");
        repl_peers_json(&h, util_now_us(), json_out);
        buf_append_char(json_out, '}');
    }
    repl_peers_free(&h);
    return rc;
}
