/* frame: the collect protocol's codec (see frame.h). */
#include "collect/frame.h"

#include <jansson.h>
#include <string.h>

#include "base/util.h"
#include "capture/config.h"
#include "http/httpmsg.h"

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

int frame_header_parse(const unsigned char *p, uint8_t version, uint32_t max, frame_header *h,
                       const char **why)
{
    if (memcmp(p, FRAME_MAGIC, 4) != 0) {
        *why = "bad magic (not a restspy collect frame)";
        return -1;
    }
    h->version = p[4];
    h->type = p[5];
    h->flags = (uint16_t)(p[6] << 8 | p[7]);
    h->seq = get_u32(p + 8);
    h->length = get_u32(p + 12);
    if (h->version != version) {
        *why = "unsupported protocol version";
        return -1;
    }
    if (h->type < FRAME_HELLO || h->type > (version >= 2 ? FRAME_FLUSH : FRAME_ERROR)) {
        *why = "unknown frame type";
        return -1;
    }
    uint16_t allowed = version >= 2 && h->type == FRAME_PAIR ? FRAME_FLAG_ACK : 0;
    if (h->flags & ~allowed) {
        *why = "reserved flags set";
        return -1;
    }
    if (h->length > max) {
        *why = "frame over collect_max_frame";
        return -1;
    }
    return 0;
}

frame_status frame_take(const buf *in, size_t *off, uint8_t version, uint32_t max, frame_header *h,
                        const char **body, const char **why)
{
    size_t left = in->len - *off;
    if (left < FRAME_HEADER_LEN)
        return FRAME_MORE;
    const unsigned char *p = (const unsigned char *)in->data + *off;
    if (frame_header_parse(p, version, max, h, why) < 0)
        return FRAME_BAD;
    if (left - FRAME_HEADER_LEN < h->length)
        return FRAME_MORE;
    *body = (const char *)p + FRAME_HEADER_LEN;
    *off += FRAME_HEADER_LEN + h->length;
    return FRAME_OK;
}

void frame_append(buf *out, uint8_t version, uint8_t type, uint32_t seq, const char *body,
                  size_t len)
{
    unsigned char h[FRAME_HEADER_LEN];
    memcpy(h, FRAME_MAGIC, 4);
    h[4] = version;
    h[5] = type;
    h[6] = h[7] = 0;
    put_u32(h + 8, seq);
    put_u32(h + 12, (uint32_t)len);
    buf_append(out, h, sizeof h);
    buf_append(out, body, len);
}

uint8_t frame_hello_version(const char *body, size_t len, const char **why)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    json_t *vs = json_object_get(j, "versions");
    uint8_t best = 0;
    size_t i;
    json_t *v;
    json_array_foreach(vs, i, v)
    {
        json_int_t n = json_is_integer(v) ? json_integer_value(v) : 0;
        if (n >= FRAME_VERSION && n <= FRAME_VERSION_MAX && n > best)
            best = (uint8_t)n;
    }
    if (!json_is_object(j) || !json_is_array(vs))
        *why = "hello: expected {\"versions\": [...]}";
    else if (!best)
        *why = "hello: no protocol version in common (this daemon speaks 1 and 2)";
    json_decref(j);
    return best;
}

/* ---- PAIR ---- */

/* The string member key of o (NULL when absent or null); -1 when it is
 * there and not a string. */
static int opt_str(json_t *o, const char *key, const char **out)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return -1;
    *out = json_string_value(v);
    return 0;
}

/* An integer member in [lo, hi] (*out untouched when absent); -1 when wrong. */
static int opt_int(json_t *o, const char *key, json_int_t lo, json_int_t hi, json_int_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return -1;
    *out = json_integer_value(v);
    return 0;
}

/* Headers from [[name, value], ...]; -1 when malformed. */
static int headers_from(json_t *o, const char *key, http_headers *h)
{
    json_t *a = json_object_get(o, key);
    if (!a)
        return 0;
    if (!json_is_array(a))
        return -1;
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e)
    {
        json_t *n = json_array_get(e, 0), *v = json_array_get(e, 1);
        if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_string(n) ||
            !json_is_string(v) || json_string_length(n) == 0)
            return -1;
        http_headers_add(h, json_string_value(n), json_string_length(n), json_string_value(v),
                         json_string_length(v));
    }
    return 0;
}

static int flags_from(json_t *o, frame_pair *p)
{
    json_t *f = json_object_get(o, "flags");
    if (!f)
        return 0;
    if (!json_is_object(f))
        return -1;
    bool *dst[] = {&p->log, &p->persist, &p->replicate};
    const char *names[] = {"log", "persist", "replicate"};
    for (size_t i = 0; i < 3; i++) {
        json_t *v = json_object_get(f, names[i]);
        if (v && !json_is_boolean(v))
            return -1;
        *dst[i] = json_is_true(v);
    }
    p->has_flags = true;
    return 0;
}

/* The meta's scalar members into r and p; NULL, or what is wrong. */
static const char *meta_scalars(json_t *m, record *r, frame_pair *p)
{
    const char *view, *method, *path, *query, *host, *scheme, *client, *dur;
    if (opt_str(m, "view", &view) < 0 || !view || !*view || strlen(view) > FRAME_VIEW_MAX)
        return "view: a name of 1 to 200 bytes is required";
    if (opt_str(m, "method", &method) < 0 || !method || !*method || strlen(method) > 32)
        return "method: required";
    if (opt_str(m, "path", &path) < 0 || !path || path[0] != '/')
        return "path: required, starting with '/'";
    if (opt_str(m, "query", &query) < 0 || opt_str(m, "host", &host) < 0 ||
        opt_str(m, "client_addr", &client) < 0)
        return "query, host, client_addr: strings or null";
    if (opt_str(m, "scheme", &scheme) < 0 ||
        (scheme && strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
        return "scheme: \"http\" or \"https\"";
    if (opt_str(m, "durability", &dur) < 0 ||
        (dur && strcmp(dur, "sync") != 0 && strcmp(dur, "async") != 0))
        return "durability: \"sync\" or \"async\"";
    json_int_t status = 0, started = 0, duration = 0;
    if (opt_int(m, "status", 100, 999, &status) < 0 || status == 0)
        return "status: an integer 100-999 is required";
    if (opt_int(m, "started_at_us", 0, INT64_MAX, &started) < 0 ||
        opt_int(m, "duration_us", 0, INT64_MAX, &duration) < 0)
        return "started_at_us, duration_us: integers >= 0";
    memcpy(p->view, view, strlen(view) + 1);
    r->method = xstrdup(method);
    r->path = xstrdup(path);
    r->query = query ? xstrdup(query) : NULL;
    r->host = host ? xstrdup(host) : NULL;
    r->scheme = xstrdup(scheme ? scheme : "http");
    r->client_addr = xstrdup(client ? client : "");
    r->status = (int)status;
    r->started_at_us = started ? started : util_now_us();
    r->duration_us = duration;
    r->http_minor = 1;
    p->durability = !dur ? -1 : strcmp(dur, "sync") == 0 ? REPL_SYNC : REPL_ASYNC;
    return NULL;
}

/* Version 2's header block: "Name: value\r\n" lines (the name a token,
 * optional blanks after the colon, a value without CR or LF), appended to
 * h. 0, or -1 when a line is malformed. */
static int headers_block(const char *s, size_t n, http_headers *h)
{
    size_t i = 0;
    while (i < n) {
        const char *line = s + i;
        const char *end = memchr(line, '\r', n - i);
        if (!end || (size_t)(end - s) + 1 >= n || end[1] != '\n')
            return -1; /* every line ends with CRLF */
        const char *colon = memchr(line, ':', (size_t)(end - line));
        if (!colon || !httpmsg_is_token(line, (size_t)(colon - line)))
            return -1;
        const char *v = colon + 1;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        if (memchr(v, '\n', (size_t)(end - v)))
            return -1;
        http_headers_add(h, line, (size_t)(colon - line), v, (size_t)(end - v));
        i = (size_t)(end - s) + 2;
    }
    return 0;
}

/* The meta object and what follows it (version 2: the header blocks, then
 * the bodies; version 1: the bodies) into p; NULL or what is wrong. */
static const char *pair_fill(json_t *m, uint8_t version, const char *rest, size_t len,
                             frame_pair *p)
{
    record *r = p->rec;
    const char *why = meta_scalars(m, r, p);
    if (why)
        return why;
    if (flags_from(m, p) < 0)
        return "flags: an object of booleans (log, persist, replicate)";
    json_int_t qh = 0, rh = 0, qlen = 0, rlen = 0;
    if (version >= 2) {
        if (json_object_get(m, "req_headers") || json_object_get(m, "resp_headers"))
            return "req_headers, resp_headers: not in the meta in version 2 (header blocks)";
        if (opt_int(m, "req_headers_length", 0, UINT32_MAX, &qh) < 0 ||
            opt_int(m, "resp_headers_length", 0, UINT32_MAX, &rh) < 0)
            return "req_headers_length, resp_headers_length: integers >= 0";
    } else if (headers_from(m, "req_headers", &r->req_headers) < 0 ||
               headers_from(m, "resp_headers", &r->resp_headers) < 0) {
        return "req_headers, resp_headers: arrays of [name, value] strings";
    }
    if (opt_int(m, "req_body_length", 0, UINT32_MAX, &qlen) < 0 ||
        opt_int(m, "resp_body_length", 0, UINT32_MAX, &rlen) < 0)
        return "req_body_length, resp_body_length: integers >= 0";
    if ((uint64_t)qh + (uint64_t)rh + (uint64_t)qlen + (uint64_t)rlen != len)
        return version >= 2 ? "req_headers_length + resp_headers_length + req_body_length + "
                              "resp_body_length must add up to the bytes after the meta"
                            : "req_body_length + resp_body_length must be the bytes after the meta";
    if (headers_block(rest, (size_t)qh, &r->req_headers) < 0 ||
        headers_block(rest + qh, (size_t)rh, &r->resp_headers) < 0)
        return "header block: \"Name: value\" lines, each ending with CRLF";
    const char *bodies = rest + qh + rh;
    buf_append(&p->req_full, bodies, (size_t)qlen);
    buf_append(&r->req_body, bodies, (size_t)qlen);
    buf_append(&r->resp_body, bodies + qlen, (size_t)rlen);
    r->req_body_size = (uint64_t)qlen;
    r->resp_body_size = r->resp_bytes_sent = (uint64_t)rlen;
    p->from_peer = http_headers_get(&r->req_headers, "x-restspy-replicated-from") != NULL;
    return NULL;
}

int frame_pair_decode(const char *body, size_t len, uint8_t version, frame_pair *p, char *err,
                      size_t errlen)
{
    memset(p, 0, sizeof *p);
    if (len < 4) {
        util_seterr(err, errlen, "pair: shorter than its meta length");
        return -1;
    }
    uint32_t mlen = get_u32((const unsigned char *)body);
    if (mlen > len - 4) {
        util_seterr(err, errlen, "pair: meta length past the frame");
        return -1;
    }
    json_error_t je;
    json_t *m = json_loadb(body + 4, mlen, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(m)) {
        util_seterr(err, errlen, "pair: meta is not a JSON object%s%s", m ? "" : ": ",
                    m ? "" : je.text);
        json_decref(m);
        return -1;
    }
    p->rec = record_new();
    const char *why = pair_fill(m, version, body + 4 + mlen, len - 4 - mlen, p);
    json_decref(m);
    if (why) {
        util_seterr(err, errlen, "pair: %s", why);
        frame_pair_free(p);
        return -1;
    }
    return 0;
}

void frame_pair_free(frame_pair *p)
{
    record_free(p->rec);
    p->rec = NULL;
    buf_free(&p->req_full);
}
