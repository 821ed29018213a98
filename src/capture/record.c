#include "capture/record.h"

#include "http/coding.h"

#include <assert.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/rfc3339.h"
#include "base/util.h"

record *record_new(void)
{
    record *r = xcalloc(1, sizeof *r);
    uuid7_generate(r->id);
    r->upstream_us = -1;
    r->origin = xstrdup("local");
    return r;
}

size_t record_mem(const record *r)
{
    const char *const strs[] = {
        r->node,           r->client_addr, r->method,       r->scheme,        r->host,
        r->path,           r->query,       r->req_encoding, r->req_body_note, r->resp_encoding,
        r->resp_body_note, r->rule,        r->origin,       r->error,         r->replication};
    size_t n = sizeof *r + UTIL_MALLOC_OVERHEAD;
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        n += util_str_mem(strs[i]);
    n += http_headers_mem(&r->req_headers) + http_headers_mem(&r->resp_headers);
    n += buf_mem(&r->req_body) + buf_mem(&r->resp_body);
    n += buf_mem(&r->headers_json[0]) + buf_mem(&r->headers_json[1]);
    return n;
}

void record_free(record *r)
{
    if (!r)
        return;
    free(r->node);
    free(r->client_addr);
    free(r->method);
    free(r->scheme);
    free(r->host);
    free(r->path);
    free(r->query);
    free(r->rule);
    free(r->origin);
    free(r->error);
    free(r->replication);
    free(r->req_encoding);
    free(r->req_body_note);
    free(r->resp_encoding);
    free(r->resp_body_note);
    http_headers_free(&r->req_headers);
    http_headers_free(&r->resp_headers);
    buf_free(&r->req_body);
    buf_free(&r->resp_body);
    buf_free(&r->headers_json[0]);
    buf_free(&r->headers_json[1]);
    free(r);
}

void record_set_target(record *r, const char *target, size_t n)
{
    free(r->path);
    free(r->query);
    const char *q = memchr(target, '?', n);
    r->path = xstrndup(target, q ? (size_t)(q - target) : n);
    r->query = q ? xstrndup(q + 1, (size_t)(target + n - q - 1)) : NULL;
}

/* ---- content codings ---- */

static void decode_body(buf *body, bool *truncated, bool cut, const http_headers *h, uint64_t cap,
                        bool keep_undecodable, char **encoding, char **note)
{
    const char *ce = http_headers_get(h, "content-encoding");
    if (!ce || body->len == 0)
        return;
    coding_kind k[CODING_MAX_LAYERS];
    char err[200];
    int n = coding_parse(ce, k, err, sizeof err);
    if (n == 0)
        return; /* "identity": nothing to undo */
    buf out = BUF_INIT;
    coding_status st = CODING_ERROR;
    if (n > 0) {
        coding_decoder *d = coding_decoder_new(ce, &out, cap, err, sizeof err);
        st = coding_decoder_feed(d, body->data, body->len);
        /* A copy cut at the capture cap, or a transfer that failed, ends
         * mid-stream: that is a short body, not a damaged one. */
        if (st == CODING_OK && !*truncated && !cut)
            st = coding_decoder_finish(d);
        if (st == CODING_ERROR)
            snprintf(err, sizeof err, "%s", coding_decoder_error(d));
        coding_decoder_free(d);
    }
    *encoding = xstrdup(ce);
    if (st == CODING_ERROR) {
        buf_free(&out);
        buf msg = BUF_INIT;
        buf_appendf(&msg, "%s: %s", keep_undecodable ? "undecoded" : "dropped", err);
        *note = buf_detach(&msg);
        if (!keep_undecodable) {
            buf_free(body);
            *truncated = false;
        }
        return;
    }
    if (st == CODING_FULL)
        *truncated = true;
    buf_free(body);
    *body = out;
}

void record_decode_bodies(record *r, uint64_t req_cap, uint64_t resp_cap, bool keep_undecodable)
{
    bool cut = r->error != NULL;
    decode_body(&r->req_body, &r->req_truncated, cut, &r->req_headers, req_cap, keep_undecodable,
                &r->req_encoding, &r->req_body_note);
    decode_body(&r->resp_body, &r->resp_truncated, cut, &r->resp_headers, resp_cap,
                keep_undecodable, &r->resp_encoding, &r->resp_body_note);
}

/* ---- JSON ---- */

/* "2026-11-27T05:46:18.123456Z" */
static void append_rfc3339(buf *out, int64_t us)
{
    char s[RFC3339_MAX];
    buf_append(out, s, rfc3339_format(us, 6, s));
}

static void key(buf *out, const char *k)
{
    /* Keys are literals without characters that need escaping. */
    buf_append_str(out, k);
}

static void str_or_null(buf *out, const char *s)
{
    if (s)
        buf_append_json_str(out, s, strlen(s));
    else
        buf_append(out, "null", 4);
}

static void append_bool(buf *out, bool v)
{
    if (v)
        buf_append(out, "true", 4);
    else
        buf_append(out, "false", 5);
}

static void append_body(buf *out, const char *name, const buf *b)
{
    const char *d = b->data ? b->data : "";
    buf_append_str(out, ",\"");
    buf_append_str(out, name);
    if (utf8_valid(d, b->len)) {
        buf_append_str(out, "\":");
        buf_append_json_str(out, d, b->len);
    } else {
        buf_append_str(out, "_b64\":\"");
        buf_append_base64(out, d, b->len);
        buf_append_char(out, '"');
    }
}

void record_to_json(const record *r, unsigned flags, buf *out)
{
    buf_reserve(out, 512);
    key(out, "{\"id\":");
    buf_append_json_str(out, r->id, strlen(r->id));
    key(out, ",\"node\":");
    str_or_null(out, r->node);
    key(out, ",\"time\":\"");
    append_rfc3339(out, r->started_at_us);
    key(out, "\",\"started_at\":");
    buf_append_i64(out, r->started_at_us);
    key(out, ",\"duration_us\":");
    buf_append_i64(out, r->duration_us);
    key(out, ",\"upstream_us\":");
    buf_append_i64(out, r->upstream_us);
    key(out, ",\"client_addr\":");
    str_or_null(out, r->client_addr);
    key(out, ",\"method\":");
    str_or_null(out, r->method);
    key(out, ",\"scheme\":");
    str_or_null(out, r->scheme);
    key(out, ",\"host\":");
    str_or_null(out, r->host);
    key(out, ",\"path\":");
    str_or_null(out, r->path);
    key(out, ",\"query\":");
    str_or_null(out, r->query);
    key(out, ",\"status\":");
    buf_append_i64(out, r->status);
    key(out, ",\"req_body_size\":");
    buf_append_u64(out, r->req_body_size);
    key(out, ",\"req_truncated\":");
    append_bool(out, r->req_truncated);
    key(out, ",\"resp_body_size\":");
    buf_append_u64(out, r->resp_body_size);
    key(out, ",\"resp_truncated\":");
    append_bool(out, r->resp_truncated);
    key(out, ",\"rule\":");
    str_or_null(out, r->rule);
    key(out, ",\"origin\":");
    str_or_null(out, r->origin);
    key(out, ",\"error\":");
    str_or_null(out, r->error);
    if (r->replication) { /* only where replication applied: keeps lines short */
        key(out, ",\"replication\":");
        str_or_null(out, r->replication);
    }
    /* Likewise only for bodies that had a content coding. */
    const char *const coding_fields[][2] = {{"req_encoding", r->req_encoding},
                                            {"req_body_note", r->req_body_note},
                                            {"resp_encoding", r->resp_encoding},
                                            {"resp_body_note", r->resp_body_note}};
    for (size_t i = 0; i < 4; i++) {
        if (!coding_fields[i][1])
            continue;
        buf_append_char(out, ',');
        buf_append_json_str(out, coding_fields[i][0], strlen(coding_fields[i][0]));
        buf_append_char(out, ':');
        str_or_null(out, coding_fields[i][1]);
    }
    if (flags & RECORD_JSON_HEADERS) {
        key(out, ",\"req_headers\":");
        record_append_headers_json(r, 0, out);
        key(out, ",\"resp_headers\":");
        record_append_headers_json(r, 1, out);
    }
    if (flags & RECORD_JSON_BODIES) {
        append_body(out, "req_body", &r->req_body);
        append_body(out, "resp_body", &r->resp_body);
    }
    buf_append_char(out, '}');
}

void record_cache_headers_json(record *r)
{
    buf_reset(&r->headers_json[0]);
    buf_reset(&r->headers_json[1]);
    http_headers_to_json(&r->req_headers, &r->headers_json[0]);
    http_headers_to_json(&r->resp_headers, &r->headers_json[1]);
}

void record_append_headers_json(const record *r, int which, buf *out)
{
    const buf *c = &r->headers_json[which ? 1 : 0];
    if (c->len)
        buf_append(out, c->data, c->len);
    else
        http_headers_to_json(which ? &r->resp_headers : &r->req_headers, out);
}

/* ---- JSON back into a record ---- */

/* RFC 3339 with seconds and a zone ("2026-11-27T05:46:18.123456Z", any
 * number of fraction digits, "Z" or "+01:00") to µs since the epoch.
 * Foreign files (HAR from Firefox) use offsets, hence more than what
 * append_rfc3339 writes. 0 or -1. */
static int parse_rfc3339(const char *s, int64_t *out)
{
    rfc3339_time t;
    if (rfc3339_parse(s, &t) != 0 || !t.has_seconds || !t.has_zone)
        return -1;
    *out = rfc3339_utc_us(&t);
    return 0;
}

/* Copies member k of o into *dst: a string, or null/absent for NULL. */
static int json_take_str(json_t *o, const char *k, char **dst, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        snprintf(err, errlen, "%s: expected a string or null", k);
        return -1;
    }
    free(*dst);
    *dst = xstrndup(json_string_value(v), json_string_length(v));
    return 0;
}

static int json_take_int(json_t *o, const char *k, int64_t *dst, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, k);
    if (!v)
        return 0;
    if (!json_is_integer(v)) {
        snprintf(err, errlen, "%s: expected an integer", k);
        return -1;
    }
    *dst = (int64_t)json_integer_value(v);
    return 0;
}

static int json_take_size(json_t *o, const char *k, uint64_t *dst, char *err, size_t errlen)
{
    int64_t v = (int64_t)*dst;
    if (json_take_int(o, k, &v, err, errlen))
        return -1;
    if (v < 0) {
        snprintf(err, errlen, "%s: negative size", k);
        return -1;
    }
    *dst = (uint64_t)v;
    return 0;
}

static int json_take_bool(json_t *o, const char *k, bool *dst, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, k);
    if (!v)
        return 0;
    if (!json_is_boolean(v)) {
        snprintf(err, errlen, "%s: expected true or false", k);
        return -1;
    }
    *dst = json_is_true(v);
    return 0;
}

static int json_take_headers(json_t *o, const char *k, http_headers *h, char *err, size_t errlen)
{
    json_t *a = json_object_get(o, k);
    if (!a || json_is_null(a))
        return 0;
    size_t n = json_is_array(a) ? json_array_size(a) : 0;
    if (!json_is_array(a))
        goto bad;
    for (size_t i = 0; i < n; i++) {
        json_t *pair = json_array_get(a, i);
        json_t *hn = json_array_get(pair, 0), *hv = json_array_get(pair, 1);
        if (!json_is_array(pair) || json_array_size(pair) != 2 || !json_is_string(hn) ||
            !json_is_string(hv))
            goto bad;
        http_headers_add(h, json_string_value(hn), json_string_length(hn), json_string_value(hv),
                         json_string_length(hv));
    }
    return 0;
bad:
    snprintf(err, errlen, "%s: expected [[name, value], ...]", k);
    return -1;
}

/* Body from "<k>" (text) or "<k>_b64" (base64); sets *size from "<k>_size"
 * or, when that is absent, the body length. */
static int json_take_body(json_t *o, const char *k, buf *body, uint64_t *size, char *err,
                          size_t errlen)
{
    char kb[32];
    snprintf(kb, sizeof kb, "%s_b64", k);
    json_t *t = json_object_get(o, k), *b = json_object_get(o, kb);
    if (t && !json_is_null(t)) {
        if (!json_is_string(t)) {
            snprintf(err, errlen, "%s: expected a string", k);
            return -1;
        }
        buf_append(body, json_string_value(t), json_string_length(t));
    } else if (b && !json_is_null(b)) {
        if (!json_is_string(b) ||
            buf_append_base64_decoded(body, json_string_value(b), json_string_length(b)) != 0) {
            snprintf(err, errlen, "%s: not valid base64", kb);
            return -1;
        }
    }
    snprintf(kb, sizeof kb, "%s_size", k);
    *size = body->len;
    return json_take_size(o, kb, size, err, errlen);
}

record *record_from_json(const char *json, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *o = json_loadb(json, len, JSON_ALLOW_NUL, &jerr);
    if (!o) {
        snprintf(err, errlen, "invalid JSON: %s (column %d)", jerr.text, jerr.column);
        return NULL;
    }
    record *r = xcalloc(1, sizeof *r);
    /* Records read from files are replay cases: HTTP/1.1 unless told. */
    r->http_minor = 1;
    r->upstream_us = -1;
    int64_t minor = 1, status = 0;
    json_t *v;
    if (!json_is_object(o)) {
        snprintf(err, errlen, "not a JSON object");
        goto fail;
    }
    v = json_object_get(o, "id");
    if (!v || json_is_null(v)) {
        uuid7_generate(r->id);
    } else if (!json_is_string(v) ||
               uuid7_canonical(json_string_value(v), json_string_length(v), r->id) < 0) {
        snprintf(err, errlen, "id: expected a UUID (8-4-4-4-12 hex digits)");
        goto fail;
    }
    v = json_object_get(o, "started_at");
    if (v) {
        if (json_take_int(o, "started_at", &r->started_at_us, err, errlen))
            goto fail;
    } else if ((v = json_object_get(o, "time")) != NULL) {
        if (!json_is_string(v) || parse_rfc3339(json_string_value(v), &r->started_at_us)) {
            snprintf(err, errlen, "time: expected an RFC 3339 time");
            goto fail;
        }
    }
    if (json_take_int(o, "duration_us", &r->duration_us, err, errlen) ||
        json_take_int(o, "upstream_us", &r->upstream_us, err, errlen) ||
        json_take_int(o, "status", &status, err, errlen) ||
        json_take_int(o, "http_minor", &minor, err, errlen))
        goto fail;
    if (status < 0 || status > 999 || minor < 0 || minor > 9) {
        snprintf(err, errlen, "%s: out of range",
                 status < 0 || status > 999 ? "status" : "http_minor");
        goto fail;
    }
    r->status = (int)status;
    r->http_minor = (int)minor;
    if (json_take_str(o, "node", &r->node, err, errlen) ||
        json_take_str(o, "client_addr", &r->client_addr, err, errlen) ||
        json_take_str(o, "method", &r->method, err, errlen) ||
        json_take_str(o, "scheme", &r->scheme, err, errlen) ||
        json_take_str(o, "host", &r->host, err, errlen) ||
        json_take_str(o, "path", &r->path, err, errlen) ||
        json_take_str(o, "query", &r->query, err, errlen) ||
        json_take_str(o, "rule", &r->rule, err, errlen) ||
        json_take_str(o, "origin", &r->origin, err, errlen) ||
        json_take_str(o, "error", &r->error, err, errlen) ||
        json_take_str(o, "replication", &r->replication, err, errlen) ||
        json_take_str(o, "req_encoding", &r->req_encoding, err, errlen) ||
        json_take_str(o, "req_body_note", &r->req_body_note, err, errlen) ||
        json_take_str(o, "resp_encoding", &r->resp_encoding, err, errlen) ||
        json_take_str(o, "resp_body_note", &r->resp_body_note, err, errlen) ||
        json_take_bool(o, "req_truncated", &r->req_truncated, err, errlen) ||
        json_take_bool(o, "resp_truncated", &r->resp_truncated, err, errlen) ||
        json_take_headers(o, "req_headers", &r->req_headers, err, errlen) ||
        json_take_headers(o, "resp_headers", &r->resp_headers, err, errlen) ||
        json_take_body(o, "req_body", &r->req_body, &r->req_body_size, err, errlen) ||
        json_take_body(o, "resp_body", &r->resp_body, &r->resp_body_size, err, errlen))
        goto fail;
    json_decref(o);
    return r;
fail:
    json_decref(o);
    record_free(r);
    return NULL;
}

/* ---- combined ---- */

/* Appends s the way nginx escapes log variables: '"', '\\', control bytes and
 * bytes >= 0x7f become \xHH, so a line can always be split on quotes. */
static void append_escaped(buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            run++;
            continue;
        }
        if (run)
            buf_append(out, s + i - run, run);
        run = 0;
        char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
        buf_append(out, e, 4);
    }
    if (run)
        buf_append(out, s + n - run, run);
}

static void append_quoted_or_dash(buf *out, const char *s)
{
    buf_append_char(out, '"');
    if (s && *s)
        append_escaped(out, s, strlen(s));
    else
        buf_append_char(out, '-');
    buf_append_char(out, '"');
}

void record_to_combined(const record *r, buf *out)
{
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    buf_reserve(out, 256);

    /* client IP without the port */
    char host[64];
    int port;
    if (r->client_addr && util_split_hostport(r->client_addr, host, sizeof host, &port) == 0)
        append_escaped(out, host, strlen(host));
    else if (r->client_addr && *r->client_addr)
        append_escaped(out, r->client_addr, strlen(r->client_addr));
    else
        buf_append_char(out, '-');

    struct tm tm;
    unsigned frac;
    rfc3339_split(r->started_at_us, &tm, &frac);
    char t[29];
    memcpy(t, " - - [", 6);
    rfc3339_digits(t + 6, (unsigned)tm.tm_mday, 2);
    t[8] = '/';
    memcpy(t + 9, months[tm.tm_mon % 12], 3);
    t[12] = '/';
    rfc3339_digits(t + 13, (unsigned)(tm.tm_year + 1900), 4);
    t[17] = ':';
    rfc3339_digits(t + 18, (unsigned)tm.tm_hour, 2);
    t[20] = ':';
    rfc3339_digits(t + 21, (unsigned)tm.tm_min, 2);
    t[23] = ':';
    rfc3339_digits(t + 24, (unsigned)tm.tm_sec, 2);
    memcpy(t + 26, " +0", 3);
    buf_append(out, t, sizeof t);
    buf_append_str(out, "000] \"");

    /* request line; "-" when no request was parsed (like nginx for a 400) */
    if (r->method && r->path) {
        append_escaped(out, r->method, strlen(r->method));
        buf_append_char(out, ' ');
        append_escaped(out, r->path, strlen(r->path));
        if (r->query) {
            buf_append_char(out, '?');
            append_escaped(out, r->query, strlen(r->query));
        }
        buf_append_str(out, " HTTP/1.");
        buf_append_i64(out, r->http_minor);
    } else {
        buf_append_char(out, '-');
    }
    buf_append_str(out, "\" ");

    buf_append_i64(out, r->status);
    buf_append_char(out, ' ');
    /* Apache %b: "-" rather than 0 when nothing was sent */
    if (r->resp_bytes_sent)
        buf_append_u64(out, r->resp_bytes_sent);
    else
        buf_append_char(out, '-');
    buf_append_char(out, ' ');
    append_quoted_or_dash(out, http_headers_get(&r->req_headers, "referer"));
    buf_append_char(out, ' ');
    append_quoted_or_dash(out, http_headers_get(&r->req_headers, "user-agent"));
}

/* ------------------------------------------------------------------ */
/* the request body as it was sent (replay, export --curl)             */

/* snprintf into out when there is one; returns out, or fallback without it. */
static const char *body_reason(char *out, size_t len, const char *fallback, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static const char *body_reason(char *out, size_t len, const char *fallback, const char *fmt, ...)
{
    if (!out || len == 0)
        return fallback;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, len, fmt, ap);
    va_end(ap);
    return out;
}

const char *record_req_body_unfaithful(const record *c, char *out, size_t len)
{
    const char *note = c->req_body_note;
    if (note && strncmp(note, "dropped", 7) == 0)
        return body_reason(out, len, "request body was not stored",
                           "request body was not stored (%s)", note);
    if (c->req_truncated)
        return body_reason(out, len, "request body is incomplete",
                           "request body is incomplete: %zu of %llu bytes recorded",
                           c->req_body.len, (unsigned long long)c->req_body_size);
    char err[128];
    coding_kind k[CODING_MAX_LAYERS];
    if (c->req_encoding && !note && c->req_body.len &&
        coding_parse(c->req_encoding, k, err, sizeof err) < 0)
        return body_reason(out, len, "request body cannot be encoded as it was sent",
                           "request body cannot be encoded as it was sent: %s", err);
    return NULL;
}

const buf *record_req_wire_body(const record *c, buf *tmp)
{
    assert(!record_req_body_unfaithful(c, NULL, 0));
    if (!c->req_encoding || c->req_body_note || c->req_body.len == 0)
        return &c->req_body;
    /* coding_parse accepted it (record_req_body_unfaithful): cannot fail. */
    int rc = coding_encode(c->req_encoding, c->req_body.data, c->req_body.len, tmp, NULL, 0);
    assert(rc == 0);
    (void)rc;
    return tmp;
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void copy_headers(http_headers *dst, const http_headers *src)
{
    for (size_t i = 0; i < src->len; i++)
        http_headers_add(dst, src->v[i].name, strlen(src->v[i].name), src->v[i].value,
                         strlen(src->v[i].value));
}

static void copy_buf(buf *dst, const buf *src)
{
    buf_init(dst);
    if (src->len)
        buf_append(dst, src->data, src->len);
}

static record *copy(const record *r, bool whole);

record *record_copy(const record *r)
{
    return copy(r, true);
}

record *record_copy_light(const record *r)
{
    return copy(r, false);
}

static record *copy(const record *r, bool whole)
{
    record *c = xmalloc(sizeof *c);
    *c = *r;
    c->node = dup_or_null(r->node);
    c->client_addr = dup_or_null(r->client_addr);
    c->method = dup_or_null(r->method);
    c->scheme = dup_or_null(r->scheme);
    c->host = dup_or_null(r->host);
    c->path = dup_or_null(r->path);
    c->query = dup_or_null(r->query);
    c->rule = dup_or_null(r->rule);
    c->origin = dup_or_null(r->origin);
    c->error = dup_or_null(r->error);
    c->replication = dup_or_null(r->replication);
    c->req_encoding = dup_or_null(r->req_encoding);
    c->req_body_note = dup_or_null(r->req_body_note);
    c->resp_encoding = dup_or_null(r->resp_encoding);
    c->resp_body_note = dup_or_null(r->resp_body_note);
    memset(&c->req_headers, 0, sizeof c->req_headers);
    memset(&c->resp_headers, 0, sizeof c->resp_headers);
    buf_init(&c->req_body);
    buf_init(&c->resp_body);
    buf_init(&c->headers_json[0]); /* a cache of r's, not shared */
    buf_init(&c->headers_json[1]);
    if (whole) {
        copy_headers(&c->req_headers, &r->req_headers);
        copy_headers(&c->resp_headers, &r->resp_headers);
        copy_buf(&c->req_body, &r->req_body);
        copy_buf(&c->resp_body, &r->resp_body);
    }
    return c;
}
