/* replay_case: the cases of a run, prepared once before it starts (see
 * replay_run.h): what is sent (rewrites, --set-header, --drop-header, the
 * request bytes serialized once into the run's arena), which cases cannot
 * be sent as recorded (replay_unreplayable), and with ordered the clients'
 * partitions and the heap of the ready ones. */
#include "replay/replay_run.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/util.h"
#include "capture/redact.h"
#include "http/httpmsg.h"
#include "replay/replay.h"

static bool name_in_list(char *const *names, const char *n)
{
    if (!names)
        return false;
    for (; *names; names++)
        if (strcasecmp(*names, n) == 0)
            return true;
    return false;
}

/* Framing and routing headers replay writes itself. Expect is dropped as the
 * body is sent right away. */
static bool is_own_header(const char *n)
{
    return strcasecmp(n, "content-length") == 0 || strcasecmp(n, "transfer-encoding") == 0 ||
           strcasecmp(n, "host") == 0 || strcasecmp(n, "expect") == 0;
}

/* True when the recorded header goes on the wire as it is. */
static bool header_kept(const replay_opts *o, const http_headers *h, const char *n)
{
    if (httpmsg_drop_header(h, n) || is_own_header(n) || name_in_list(o->drop_headers, n))
        return false;
    return !(o->set_headers && http_headers_get(o->set_headers, n));
}

static bool set_header_sent(const char *n)
{
    return !httpmsg_is_hop_by_hop(n, strlen(n)) && strcasecmp(n, "content-length") != 0 &&
           strcasecmp(n, "transfer-encoding") != 0;
}

const char *replay_unreplayable(const replay_opts *o, const record *c, char *out, size_t len)
{
    const char *body = record_req_body_unfaithful(c, out, len);
    if (body)
        return body;
    static const char prefix[] = "contains redacted values";
    size_t off = 0;
    bool found = false;
#define ADD_NAME(s)                                                                                \
    do {                                                                                           \
        if (out && len > 0) {                                                                      \
            int w_ = snprintf(out + off, len - off, "%s%s", found ? ", " : ": ", (s));             \
            if (w_ > 0)                                                                            \
                off = off + (size_t)w_ < len ? off + (size_t)w_ : len - 1;                         \
        }                                                                                          \
        found = true;                                                                              \
    } while (0)
    if (out && len > 0) {
        int w = snprintf(out, len, "%s", prefix);
        off = w > 0 && (size_t)w < len ? (size_t)w : len - 1;
    }
    for (size_t i = 0; i < c->req_headers.len; i++) {
        const http_header *h = &c->req_headers.v[i];
        if (strstr(h->value, REDACTED) && header_kept(o, &c->req_headers, h->name))
            ADD_NAME(h->name);
    }
    if (c->query && strstr(c->query, REDACTED))
        ADD_NAME("query");
    if (c->req_body.len && memmem(c->req_body.data, c->req_body.len, REDACTED, sizeof REDACTED - 1))
        ADD_NAME("body");
#undef ADD_NAME
    if (!found)
        return NULL;
    return out && len > 0 ? out : prefix;
}

static const replay_rewrite *rewrite_for(const replay_opts *o, const char *path)
{
    for (size_t i = 0; i < o->nrewrites; i++) {
        const char *from = o->rewrites[i].from;
        if (from && strncmp(path, from, strlen(from)) == 0)
            return &o->rewrites[i];
    }
    return NULL;
}

/* Adds a header to what is sent. Cases may come from files (HAR, JSON
 * lines): a name or value that would break the framing of the request is
 * left out. */
static void send_header(http_headers *h, const char *n, const char *v)
{
    if (!httpmsg_is_token(n, strlen(n)) || strpbrk(v, "\r\n"))
        return;
    http_headers_add(h, n, strlen(n), v, strlen(v));
}

/* Prepares k's request on client c and, when the options change what is
 * sent, makes its view. */
void replay_case_prepare(rcase *k, const replay_opts *o, const hclient *cl)
{
    const record *c = k->rec;
    const char *method = c->method && *c->method ? c->method : "GET";
    const char *path = c->path && *c->path ? c->path : "/";
    char *newpath = NULL;
    const replay_rewrite *rw = rewrite_for(o, path);
    if (rw) {
        const char *to = rw->to ? rw->to : "";
        size_t fl = strlen(rw->from), tl = strlen(to);
        newpath = xmalloc(tl + strlen(path + fl) + 1);
        memcpy(newpath, to, tl);
        strcpy(newpath + tl, path + fl);
        path = newpath;
    }

    buf target = BUF_INIT;
    buf_append_str(&target, path);
    if (c->query) {
        buf_append_char(&target, '?');
        buf_append_str(&target, c->query);
    }
    const char *host = o->set_headers ? http_headers_get(o->set_headers, "host") : NULL;
    if (host && strpbrk(host, "\r\n"))
        host = NULL; /* as any header that would break the framing */
    http_headers sent = {0};
    bool changed = false;
    for (size_t i = 0; i < c->req_headers.len; i++) {
        const http_header *h = &c->req_headers.v[i];
        if (header_kept(o, &c->req_headers, h->name))
            send_header(&sent, h->name, h->value);
        else if (name_in_list(o->drop_headers, h->name))
            changed = true;
    }
    if (o->set_headers) {
        for (size_t i = 0; i < o->set_headers->len; i++) {
            const http_header *h = &o->set_headers->v[i];
            if (strcasecmp(h->name, "host") != 0 && set_header_sent(h->name))
                send_header(&sent, h->name, h->value);
            changed = true;
        }
    }
    /* The body as it was sent: a decoded recording goes out encoded again,
     * under the Content-Encoding header it was recorded with. */
    buf encoded = BUF_INIT;
    const buf *body = record_req_wire_body(c, &encoded);
    char err[160];
    k->msg = hclient_msg_new(cl, method, target.data, &sent, host, body->data, body->len, err,
                             sizeof err);
    if (!k->msg)
        k->bad = xstrdup(err);
    buf_free(&encoded);
    http_headers_free(&sent);
    buf_free(&target);

    if (!newpath && !changed)
        return;
    /* A shallow copy: everything but the path and the headers is the
     * caller's, so only those two are freed with it. */
    record *v = xmalloc(sizeof *v);
    *v = *c;
    memset(&v->req_headers, 0, sizeof v->req_headers);
    if (newpath) {
        v->path = newpath;
        k->own_path = true;
    }
    for (size_t i = 0; i < c->req_headers.len; i++) {
        const http_header *h = &c->req_headers.v[i];
        if (name_in_list(o->drop_headers, h->name))
            continue;
        if (o->set_headers && http_headers_get(o->set_headers, h->name))
            continue;
        http_headers_add(&v->req_headers, h->name, strlen(h->name), h->value, strlen(h->value));
    }
    if (o->set_headers)
        for (size_t i = 0; i < o->set_headers->len; i++) {
            const http_header *h = &o->set_headers->v[i];
            http_headers_add(&v->req_headers, h->name, strlen(h->name), h->value, strlen(h->value));
        }
    k->view = v;
}

void replay_case_free(rcase *k)
{
    hclient_msg_free(k->msg);
    free(k->bad);
    if (k->view) {
        if (k->own_path)
            free(k->view->path);
        http_headers_free(&k->view->req_headers);
        free(k->view);
    }
}

void replay_slot_sub_free(slot *s)
{
    if (s->sub.rec) {
        replay_case_free(&s->sub);
        record_free((record *)s->sub.rec); /* the slot's own copy */
    }
    memset(&s->sub, 0, sizeof s->sub);
    corr_subs_free(&s->subs);
}

/* ordered: partitions by client ------------------------------------ */

/* The client a case belongs to: the value of the client header when the
 * options name one and the request has it, else the client's IP. */
static char *client_key(const replay_opts *o, const record *c)
{
    const char *h = o->client_header ? http_headers_get(&c->req_headers, o->client_header) : NULL;
    if (h)
        return xstrdup(h);
    if (!c->client_addr)
        return xstrdup("");
    char host[256];
    int port;
    if (util_split_hostport(c->client_addr, host, sizeof host, &port) == 0)
        return xstrdup(host);
    return xstrdup(c->client_addr);
}

typedef struct clientkey {
    char *key; /* client_key's */
    size_t pos;
} clientkey;

static int clientkey_cmp(const void *a, const void *b)
{
    const clientkey *x = a, *y = b;
    int d = strcmp(x->key, y->key);
    if (d)
        return d;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

void replay_parts_build(run *r)
{
    clientkey *keys = xmalloc((r->ncases ? r->ncases : 1) * sizeof *keys);
    for (size_t i = 0; i < r->ncases; i++) {
        keys[i].key = client_key(r->o, r->cases[i].rec);
        keys[i].pos = i;
    }
    /* Sorting by (client, position) groups each client with its cases in order. */
    qsort(keys, r->ncases, sizeof *keys, clientkey_cmp);
    r->parts = xcalloc(r->ncases ? r->ncases : 1, sizeof *r->parts);
    size_t *all = xmalloc((r->ncases ? r->ncases : 1) * sizeof *all);
    for (size_t i = 0; i < r->ncases; i++) {
        if (i == 0 || strcmp(keys[i].key, r->parts[r->nparts - 1].client) != 0) {
            r->parts[r->nparts].pos = all + i;
            r->parts[r->nparts].client = keys[i].key; /* moved */
            keys[i].key = NULL;
            r->nparts++;
        }
        rpart *p = &r->parts[r->nparts - 1];
        p->pos[p->n++] = keys[i].pos;
        r->cases[keys[i].pos].part = r->nparts - 1;
    }
    for (size_t i = 0; i < r->ncases; i++)
        free(keys[i].key);
    free(keys);
    if (r->nparts == 0)
        free(all);
    r->heap = xmalloc((r->nparts ? r->nparts : 1) * sizeof *r->heap);
    for (size_t i = 0; i < r->nparts; i++)
        r->parts[i].total = (uint64_t)r->parts[i].n * r->loops;
}

static uint64_t part_key(const run *r, size_t pi)
{
    const rpart *p = &r->parts[pi];
    uint64_t loop = p->next / p->n;
    return loop * r->ncases + p->pos[p->next % p->n];
}

void replay_parts_push(run *r, size_t pi)
{
    size_t i = r->nheap++;
    r->heap[i] = pi;
    uint64_t k = part_key(r, pi);
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (part_key(r, r->heap[up]) <= k)
            break;
        r->heap[i] = r->heap[up];
        r->heap[up] = pi;
        i = up;
    }
}

size_t replay_parts_pop(run *r)
{
    assert(r->nheap > 0);
    size_t top = r->heap[0];
    size_t last = r->heap[--r->nheap];
    size_t i = 0, n = r->nheap;
    if (n) {
        uint64_t k = part_key(r, last);
        for (;;) {
            size_t l = 2 * i + 1, m = i;
            uint64_t mk = k;
            if (l < n && part_key(r, r->heap[l]) < mk) {
                m = l;
                mk = part_key(r, r->heap[l]);
            }
            if (l + 1 < n && part_key(r, r->heap[l + 1]) < mk)
                m = l + 1;
            if (m == i)
                break;
            r->heap[i] = r->heap[m];
            i = m;
        }
        r->heap[i] = last;
    }
    return top;
}
