#include "formats/har.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "http/coding.h"
#include "http/httpmsg.h"
#include "base/util.h"
#include "base/uuid7.h"

#ifndef RESTSPY_VERSION
#define RESTSPY_VERSION "0"
#endif

/* Reals are milliseconds with µs fractions: 15 digits print 1.2 as "1.2"
 * (jansson's default of 17 would print 1.2 as 1.1999999999999999). */
#define HAR_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

/* ---- small encoders ---- */

/* A JSON string for s[0..n). jansson only takes valid UTF-8, while header
 * values may carry obs-text bytes: those are taken as Latin-1 (each byte one
 * code point), which is what record_to_json does with them too. */
static json_t *jstr(const char *s, size_t n)
{
    if (utf8_valid(s, n))
        return json_stringn(s, n);
    buf b = BUF_INIT;
    buf_reserve(&b, n * 2);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            buf_append_char(&b, (char)c);
            continue;
        }
        size_t l = 2;
        while (l <= 4 && !(i + l <= n && utf8_valid(s + i, l)))
            l++;
        if (l <= 4) {
            buf_append(&b, s + i, l);
            i += l - 1;
        } else {
            buf_append_char(&b, (char)(0xC0 | (c >> 6)));
            buf_append_char(&b, (char)(0x80 | (c & 0x3F)));
        }
    }
    json_t *j = json_stringn(b.data, b.len);
    buf_free(&b);
    return j;
}

static json_t *jstr_c(const char *s)
{
    return s ? jstr(s, strlen(s)) : json_null();
}

static json_t *jsize(uint64_t v)
{
    return json_integer((json_int_t)v);
}

/* "2026-11-27T05:46:18.123Z": HAR wants ISO 8601 with milliseconds. */
static void iso8601_ms(int64_t us, char *out, size_t len)
{
    int64_t sec = us / 1000000, rem = us % 1000000;
    if (rem < 0) {
        rem += 1000000;
        sec--;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        memset(&tm, 0, sizeof tm);
    snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(rem / 1000));
}

/* Form-style decoding ('+' is a space); a '%' without two hex digits stays. */
static json_t *pct_decoded(const char *s, size_t n)
{
    buf b = BUF_INIT;
    buf_append_pct_decoded(&b, s, n, 1);
    json_t *j = jstr(b.data ? b.data : "", b.len);
    buf_free(&b);
    return j;
}

static json_t *name_value(json_t *name, json_t *value)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", name);
    json_object_set_new(o, "value", value);
    return o;
}

static json_t *har_headers(const http_headers *h)
{
    json_t *a = json_array();
    for (size_t i = 0; i < h->len; i++)
        json_array_append_new(a, name_value(jstr_c(h->v[i].name), jstr_c(h->v[i].value)));
    return a;
}

static json_t *har_query(const char *q)
{
    json_t *a = json_array();
    while (q && *q) {
        size_t n = strcspn(q, "&");
        const char *eq = memchr(q, '=', n);
        size_t kn = eq ? (size_t)(eq - q) : n;
        if (n)
            json_array_append_new(
                a, name_value(pct_decoded(q, kn),
                              eq ? pct_decoded(eq + 1, n - kn - 1) : json_string("")));
        q += n;
        if (*q)
            q++;
    }
    return a;
}

static const char *skip_ows(const char *s, const char *end)
{
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    return s;
}

static size_t trim_len(const char *s, size_t n)
{
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    return n;
}

/* One cookie from "name=value" (s[0..n), already trimmed). */
static json_t *cookie_pair(const char *s, size_t n)
{
    const char *eq = memchr(s, '=', n);
    size_t kn = eq ? trim_len(s, (size_t)(eq - s)) : trim_len(s, n);
    const char *v = eq ? skip_ows(eq + 1, s + n) : s + n;
    return name_value(jstr(s, kn), jstr(v, (size_t)(s + n - v)));
}

/* Cookie: a=1; b=2 -> [{name, value}, ...] over every Cookie header. */
static json_t *har_req_cookies(const http_headers *h)
{
    json_t *a = json_array();
    for (size_t i = 0; i < h->len; i++) {
        if (!util_ieq(h->v[i].name, strlen(h->v[i].name), "cookie"))
            continue;
        const char *p = h->v[i].value, *end = p + strlen(p);
        while (p < end) {
            p = skip_ows(p, end);
            const char *semi = memchr(p, ';', (size_t)(end - p));
            size_t n = trim_len(p, (size_t)((semi ? semi : end) - p));
            if (n)
                json_array_append_new(a, cookie_pair(p, n));
            p = semi ? semi + 1 : end;
        }
    }
    return a;
}

/* Set-Cookie: name=value; Path=/; Domain=x; HttpOnly; Secure -> one cookie
 * per header (Expires is left out: HAR wants ISO 8601, the header has an
 * HTTP-date, and the field is optional). */
static json_t *har_resp_cookies(const http_headers *h)
{
    json_t *a = json_array();
    for (size_t i = 0; i < h->len; i++) {
        if (!util_ieq(h->v[i].name, strlen(h->v[i].name), "set-cookie"))
            continue;
        const char *p = skip_ows(h->v[i].value, h->v[i].value + strlen(h->v[i].value));
        const char *end = p + strlen(p);
        const char *semi = memchr(p, ';', (size_t)(end - p));
        json_t *c = cookie_pair(p, trim_len(p, (size_t)((semi ? semi : end) - p)));
        while (semi) {
            p = skip_ows(semi + 1, end);
            semi = memchr(p, ';', (size_t)(end - p));
            size_t n = trim_len(p, (size_t)((semi ? semi : end) - p));
            const char *eq = memchr(p, '=', n);
            size_t kn = eq ? trim_len(p, (size_t)(eq - p)) : n;
            const char *v = eq ? skip_ows(eq + 1, p + n) : p + n;
            size_t vn = (size_t)(p + n - v);
            if (util_ieq(p, kn, "path"))
                json_object_set_new(c, "path", jstr(v, vn));
            else if (util_ieq(p, kn, "domain"))
                json_object_set_new(c, "domain", jstr(v, vn));
            else if (util_ieq(p, kn, "httponly"))
                json_object_set_new(c, "httpOnly", json_true());
            else if (util_ieq(p, kn, "secure"))
                json_object_set_new(c, "secure", json_true());
        }
        json_array_append_new(a, c);
    }
    return a;
}

/* The request's Host, as a client would have addressed it. */
static const char *url_host(const record *r)
{
    const char *h = http_headers_get(&r->req_headers, "host");
    if (h && *h)
        return h;
    return r->host && *r->host ? r->host : "localhost";
}

static bool origin_form(const char *path)
{
    return path && path[0] == '/';
}

/* Absolute URL of the request: scheme://host/path?query. A record whose
 * target was not origin-form ("*", absolute-form, or none at all) gets "/"
 * here and its real path under _restspy. */
static void append_url(buf *u, const record *r, const char *base)
{
    if (base) {
        size_t n = strlen(base);
        while (n && base[n - 1] == '/')
            n--;
        buf_append(u, base, n);
    } else {
        buf_append_str(u, r->scheme && *r->scheme ? r->scheme : "http");
        buf_append_str(u, "://");
        buf_append_str(u, url_host(r));
    }
    buf_append_str(u, origin_form(r->path) ? r->path : "/");
    if (r->query) {
        buf_append_char(u, '?');
        buf_append_str(u, r->query);
    }
}

/* Bodies as HAR text: UTF-8 as is, anything else base64. */
static void set_body_text(json_t *o, const buf *b, const char *enc_key)
{
    const char *d = b->data ? b->data : "";
    if (utf8_valid(d, b->len)) {
        json_object_set_new(o, "text", json_stringn(d, b->len));
    } else {
        buf t = BUF_INIT;
        buf_append_base64(&t, d, b->len);
        json_object_set_new(o, "text", json_stringn(t.data, t.len));
        json_object_set_new(o, enc_key, json_string("base64"));
        buf_free(&t);
    }
}

/* A captured body as HAR sees it. text: the stored body (decoded when it
 * had a Content-Encoding, as browsers write it). */
typedef struct har_body {
    const buf *text;
    uint64_t wire_size; /* *_body_size: on the wire, encoded */
    bool truncated;
    const char *encoding; /* *_encoding */
    const char *note;     /* *_body_note */
} har_body;

/* What a reader must know when text is not the whole decoded body, for
 * HAR's comment field (the _restspy fields say it only to restspy). NULL
 * when there is nothing to say; else owned by the caller. */
static char *body_comment(const har_body *b)
{
    buf c = BUF_INIT;
    if (b->note && strncmp(b->note, "dropped", 7) == 0)
        buf_appendf(&c, "restspy: body not stored (%s)", b->note);
    else if (b->note)
        buf_appendf(&c, "restspy: body as received, still %s-encoded (%s)",
                    b->encoding ? b->encoding : "content", b->note);
    else if (b->truncated && b->encoding)
        buf_appendf(&c,
                    "restspy: body incomplete: text holds its first %zu bytes, decoded from "
                    "%llu %s-encoded bytes",
                    b->text->len, (unsigned long long)b->wire_size, b->encoding);
    else if (b->truncated)
        buf_appendf(&c, "restspy: body incomplete: text holds the first %zu of its %llu bytes",
                    b->text->len, (unsigned long long)b->wire_size);
    return c.len ? buf_detach(&c) : NULL;
}

/* HAR's content.size is the decoded length: the stored body's when it was
 * decoded whole, else the size on the wire (the same bytes). */
static uint64_t decoded_size(const har_body *b)
{
    return b->encoding && !b->note ? b->text->len : b->wire_size;
}

static void set_comment(json_t *o, const har_body *b)
{
    char *c = body_comment(b);
    if (c)
        json_object_set_new(o, "comment", json_string(c));
    free(c);
}

static json_t *har_request(const record *r)
{
    json_t *q = json_object();
    buf u = BUF_INIT;
    append_url(&u, r, NULL);
    json_object_set_new(q, "method", jstr_c(r->method ? r->method : ""));
    json_object_set_new(q, "url", jstr(u.data, u.len));
    buf_free(&u);
    json_object_set_new(q, "httpVersion", json_string("HTTP/1.1"));
    json_object_set_new(q, "cookies", har_req_cookies(&r->req_headers));
    json_object_set_new(q, "headers", har_headers(&r->req_headers));
    json_object_set_new(q, "queryString", har_query(r->query));
    har_body b = {&r->req_body, r->req_body_size, r->req_truncated, r->req_encoding,
                  r->req_body_note};
    if (r->req_body.len || r->req_body_note) {
        json_t *pd = json_object();
        const char *ct = http_headers_get(&r->req_headers, "content-type");
        json_object_set_new(pd, "mimeType", jstr_c(ct ? ct : "application/octet-stream"));
        /* HAR 1.2 has no encoding for postData: "_encoding" is a custom
         * field, which the spec allows with a leading underscore. */
        set_body_text(pd, &r->req_body, "_encoding");
        set_comment(pd, &b);
        json_object_set_new(q, "postData", pd);
    }
    json_object_set_new(q, "headersSize", json_integer(-1));
    json_object_set_new(q, "bodySize", jsize(r->req_body_size));
    return q;
}

static json_t *har_response(const record *r)
{
    json_t *s = json_object();
    json_object_set_new(s, "status", json_integer(r->status));
    /* recorded is the status, not the upstream's phrase: the standard one,
     * or "" for a code without one (0: no response was sent) */
    const char *phrase = httpmsg_reason_lookup(r->status);
    json_object_set_new(s, "statusText", json_string(phrase ? phrase : ""));
    json_object_set_new(s, "httpVersion", json_string("HTTP/1.1"));
    json_object_set_new(s, "cookies", har_resp_cookies(&r->resp_headers));
    json_object_set_new(s, "headers", har_headers(&r->resp_headers));
    har_body b = {&r->resp_body, r->resp_body_size, r->resp_truncated, r->resp_encoding,
                  r->resp_body_note};
    json_t *c = json_object();
    uint64_t size = decoded_size(&b);
    json_object_set_new(c, "size", jsize(size));
    /* Bytes the coding saved, when known (the whole body was decoded). */
    if (b.encoding && !b.note && !b.truncated && size > b.wire_size)
        json_object_set_new(c, "compression", jsize(size - b.wire_size));
    const char *ct = http_headers_get(&r->resp_headers, "content-type");
    json_object_set_new(c, "mimeType", jstr_c(ct ? ct : "x-unknown"));
    if (r->resp_body.len)
        set_body_text(c, &r->resp_body, "encoding");
    set_comment(c, &b);
    json_object_set_new(s, "content", c);
    const char *loc = http_headers_get(&r->resp_headers, "location");
    json_object_set_new(s, "redirectURL", jstr_c(loc ? loc : ""));
    json_object_set_new(s, "headersSize", json_integer(-1));
    json_object_set_new(s, "bodySize", jsize(r->resp_body_size));
    if (r->error) /* where browsers put a failed request's reason */
        json_object_set_new(s, "_error", jstr_c(r->error));
    return s;
}

/* Everything HAR has no place for, so that har_read gives the record back
 * exactly (µs times, sizes beyond the captured body, restspy's own columns). */
static json_t *har_restspy(const record *r)
{
    json_t *x = json_object();
    json_object_set_new(x, "id", json_string(r->id));
    json_object_set_new(x, "node", jstr_c(r->node));
    json_object_set_new(x, "client_addr", jstr_c(r->client_addr));
    json_object_set_new(x, "rule", jstr_c(r->rule));
    json_object_set_new(x, "origin", jstr_c(r->origin));
    json_object_set_new(x, "error", jstr_c(r->error));
    json_object_set_new(x, "replication", jstr_c(r->replication));
    json_object_set_new(x, "req_truncated", json_boolean(r->req_truncated));
    json_object_set_new(x, "resp_truncated", json_boolean(r->resp_truncated));
    json_object_set_new(x, "req_body_size", jsize(r->req_body_size));
    json_object_set_new(x, "resp_body_size", jsize(r->resp_body_size));
    json_object_set_new(x, "duration_us", json_integer(r->duration_us));
    json_object_set_new(x, "upstream_us", json_integer(r->upstream_us));
    json_object_set_new(x, "started_at", json_integer(r->started_at_us));
    /* The URL carries the Host header (or "localhost"), not the column. */
    json_object_set_new(x, "host", jstr_c(r->host));
    json_object_set_new(x, "scheme", jstr_c(r->scheme));
    if (!r->method)
        json_object_set_new(x, "method", json_null());
    if (!origin_form(r->path))
        json_object_set_new(x, "path", jstr_c(r->path));
    /* Content codings: only when set, as record_to_json writes them. */
    const char *const codings[][2] = {{"req_encoding", r->req_encoding},
                                      {"req_body_note", r->req_body_note},
                                      {"resp_encoding", r->resp_encoding},
                                      {"resp_body_note", r->resp_body_note}};
    for (size_t i = 0; i < sizeof codings / sizeof codings[0]; i++)
        if (codings[i][1])
            json_object_set_new(x, codings[i][0], jstr_c(codings[i][1]));
    return x;
}

static json_t *har_entry(const record *r)
{
    json_t *e = json_object();
    char ts[96];
    iso8601_ms(r->started_at_us, ts, sizeof ts);
    /* HAR's time must be the sum of the timings, none of them -1: the
     * upstream part is "wait", the rest (proxy overhead, sending to the
     * client) "receive". */
    int64_t total = r->duration_us > 0 ? r->duration_us : 0;
    int64_t wait = r->upstream_us > 0 ? r->upstream_us : 0;
    if (wait > total)
        wait = total;
    json_object_set_new(e, "startedDateTime", json_string(ts));
    json_object_set_new(e, "time", json_real((double)total / 1000.0));
    json_object_set_new(e, "request", har_request(r));
    json_object_set_new(e, "response", har_response(r));
    json_object_set_new(e, "cache", json_object());
    json_t *t = json_object();
    json_object_set_new(t, "send", json_real(0.0));
    json_object_set_new(t, "wait", json_real((double)wait / 1000.0));
    json_object_set_new(t, "receive", json_real((double)(total - wait) / 1000.0));
    json_object_set_new(e, "timings", t);
    json_object_set_new(e, "_restspy", har_restspy(r));
    return e;
}

/* ---- HAR writer ---- */

struct har_writer {
    FILE *f;     /* not owned */
    size_t n;    /* entries written */
    bool failed; /* a write failed: har_end reports it */
};

har_writer *har_begin(FILE *f)
{
    har_writer *w = xcalloc(1, sizeof *w);
    w->f = f;
    if (fputs("{\"log\":{\"version\":\"1.2\",\"creator\":{\"name\":\"restspy\",\"version\":"
              "\"" RESTSPY_VERSION "\"},\"entries\":[",
              f) < 0)
        w->failed = true;
    return w;
}

void har_add(har_writer *w, const record *r)
{
    /* One entry in memory at a time: exports of a whole store stay small. */
    json_t *e = har_entry(r);
    if (fputs(w->n ? ",\n" : "\n", w->f) < 0 || json_dumpf(e, w->f, HAR_DUMP_FLAGS) != 0)
        w->failed = true;
    json_decref(e);
    w->n++;
}

int har_end(har_writer *w)
{
    if (fputs("\n]}}\n", w->f) < 0 || fflush(w->f) != 0 || ferror(w->f))
        w->failed = true;
    int rc = w->failed ? -1 : 0;
    free(w);
    return rc;
}

/* ---- HAR reader ----
 * Each entry is mapped onto the record JSON schema (record_to_json's member
 * names) and decoded by record_from_json, so that base64, times and sizes are
 * read by one piece of code for every file format. */

static void set_str(json_t *o, const char *k, const char *s, size_t n)
{
    json_object_set_new(o, k, json_stringn(s, n));
}

/* Splits an absolute URL into scheme, host (with port, without userinfo),
 * path and query (null when there is no '?'); a fragment is dropped. An
 * origin-form URL ("/p?q") is accepted too (no scheme or host). 0 or -1. */
static int map_url(json_t *c, const char *url)
{
    const char *p = url, *end = url + strcspn(url, "#");
    const char *sep = strstr(url, "://");
    if (sep && sep < end && sep > url) {
        for (const char *s = url; s < sep; s++)
            if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                  (s > url && ((*s >= '0' && *s <= '9') || *s == '+' || *s == '-' || *s == '.'))))
                return -1;
        set_str(c, "scheme", url, (size_t)(sep - url));
        p = sep + 3;
        const char *ae = p + strcspn(p, "/?#");
        if (ae == p)
            return -1;
        const char *at = p;
        for (const char *s = p; s < ae; s++)
            if (*s == '@')
                at = s + 1;
        set_str(c, "host", at, (size_t)(ae - at));
        p = ae;
    } else if (*url != '/') {
        return -1;
    }
    const char *qm = memchr(p, '?', (size_t)(end - p));
    const char *pe = qm ? qm : end;
    if (pe == p)
        json_object_set_new(c, "path", json_string("/"));
    else
        set_str(c, "path", p, (size_t)(pe - p));
    if (qm)
        set_str(c, "query", qm + 1, (size_t)(end - qm - 1));
    return 0;
}

/* [{name, value}] -> [[name, value]]; HTTP/2 pseudo-headers (":authority"
 * in Chrome's exports) are dropped, they cannot be sent over HTTP/1.1. */
static int map_headers(json_t *c, const char *key, json_t *from, const char *what, char *err,
                       size_t errlen)
{
    if (!from)
        return 0;
    if (!json_is_array(from)) {
        snprintf(err, errlen, "%s: expected an array", what);
        return -1;
    }
    json_t *a = json_array();
    json_object_set_new(c, key, a);
    size_t i;
    json_t *h;
    json_array_foreach(from, i, h)
    {
        json_t *n = json_object_get(h, "name"), *v = json_object_get(h, "value");
        if (!json_is_string(n) || !json_is_string(v)) {
            snprintf(err, errlen, "%s[%zu]: expected {\"name\": string, \"value\": string}", what,
                     i);
            return -1;
        }
        if (json_string_value(n)[0] == ':')
            continue;
        json_t *pair = json_array();
        json_array_append(pair, n);
        json_array_append(pair, v);
        json_array_append_new(a, pair);
    }
    return 0;
}

static bool is_base64(json_t *o, const char *k)
{
    const char *e = json_string_value(json_object_get(o, k));
    return e && strcmp(e, "base64") == 0;
}

/* Percent-encodes for an application/x-www-form-urlencoded body. */
static void append_form_encoded(buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            buf_append_char(b, (char)c);
        } else if (c == ' ') {
            buf_append_char(b, '+');
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_append(b, e, 3);
        }
    }
}

/* postData: text (base64 under "_encoding" or "encoding"), or only params
 * (Firefox for forms), which are put back together as a form body. */
static int map_post_data(json_t *c, json_t *pd, char *err, size_t errlen)
{
    if (!pd)
        return 0;
    if (!json_is_object(pd)) {
        snprintf(err, errlen, "request.postData: expected an object");
        return -1;
    }
    json_t *text = json_object_get(pd, "text");
    json_t *params = json_object_get(pd, "params");
    if (json_is_string(text)) {
        bool b64 = is_base64(pd, "_encoding") || is_base64(pd, "encoding");
        json_object_set(c, b64 ? "req_body_b64" : "req_body", text);
    } else if (text && !json_is_null(text)) {
        snprintf(err, errlen, "request.postData.text: expected a string");
        return -1;
    } else if (json_is_array(params) && json_array_size(params)) {
        buf b = BUF_INIT;
        size_t i;
        json_t *p;
        json_array_foreach(params, i, p)
        {
            const char *n = json_string_value(json_object_get(p, "name"));
            const char *v = json_string_value(json_object_get(p, "value"));
            if (!n) {
                buf_free(&b);
                snprintf(err, errlen, "request.postData.params[%zu].name: expected a string", i);
                return -1;
            }
            if (i)
                buf_append_char(&b, '&');
            append_form_encoded(&b, n);
            buf_append_char(&b, '=');
            append_form_encoded(&b, v ? v : "");
        }
        set_str(c, "req_body", b.data, b.len);
        buf_free(&b);
    }
    return 0;
}

/* A non-negative number of milliseconds as µs, or -1. */
static int64_t ms_to_us(json_t *v)
{
    if (!json_is_number(v) || json_number_value(v) < 0)
        return -1;
    return (int64_t)(json_number_value(v) * 1000.0 + 0.5);
}

/* Sizes a foreign file announces beyond the text it holds (a browser export
 * "without content"): the record says the body is incomplete. */
typedef struct size_hints {
    int64_t req, resp;
} size_hints;

static int map_foreign(json_t *c, json_t *e, json_t *resp, size_hints *hints)
{
    json_object_set_new(c, "origin", json_string("imported"));
    int64_t t = ms_to_us(json_object_get(e, "time"));
    json_object_set_new(c, "duration_us", json_integer(t > 0 ? t : 0));
    /* request sent to response complete: send + wait + receive */
    json_t *tm = json_object_get(e, "timings");
    int64_t up = -1;
    const char *parts[] = {"send", "wait", "receive"};
    for (size_t i = 0; i < 3; i++) {
        int64_t v = ms_to_us(json_object_get(tm, parts[i]));
        if (v >= 0)
            up = (up < 0 ? 0 : up) + v;
    }
    json_object_set_new(c, "upstream_us", json_integer(up));
    const char *err = json_string_value(json_object_get(resp, "_error"));
    if (err && *err)
        json_object_set_new(c, "error", json_string(err));
    json_t *bs = json_object_get(json_object_get(e, "request"), "bodySize");
    hints->req = json_is_integer(bs) ? (int64_t)json_integer_value(bs) : -1;
    json_t *cs = json_object_get(json_object_get(resp, "content"), "size");
    hints->resp = json_is_integer(cs) ? (int64_t)json_integer_value(cs) : -1;
    return 0;
}

/* A foreign file's body is decoded text (HAR's text is "HTTP decoded", as
 * browsers write it): a body that had a Content-Encoding gets it as its
 * *_encoding, as the proxy records a body it decoded. hint: the size the
 * file announces, comparable with the text's when hint_decoded (content.size
 * is decoded; request.bodySize is on the wire, so not for an encoded
 * request). Beyond the text: no text at all means the body is not in the
 * file (a browser export "without content"), which the note says, never
 * "truncated at capture"; a shorter text is an incomplete body. */
static void foreign_body(int64_t hint, bool hint_decoded, const http_headers *h, buf *body,
                         uint64_t *size, bool *truncated, char **encoding, char **note)
{
    const char *ce = http_headers_get(h, "content-encoding");
    coding_kind k[CODING_MAX_LAYERS];
    bool coded = ce && coding_parse(ce, k, NULL, 0) != 0;
    if (coded && body->len)
        *encoding = xstrdup(ce);
    if (coded && !hint_decoded) {
        if (hint > 0)
            *size = (uint64_t)hint; /* on the wire, as *_body_size is */
        return;
    }
    if (hint <= 0 || (uint64_t)hint <= body->len)
        return;
    *size = (uint64_t)hint;
    if (body->len) {
        *truncated = true;
        return;
    }
    buf b = BUF_INIT;
    buf_appendf(&b, "dropped: not in the HAR file (%lld bytes announced)", (long long)hint);
    *note = buf_detach(&b);
}

/* One HAR entry to a record, or NULL with err (without the file/entry prefix). */
static record *entry_to_record(json_t *e, char *err, size_t errlen)
{
    if (!json_is_object(e)) {
        snprintf(err, errlen, "not an object");
        return NULL;
    }
    json_t *req = json_object_get(e, "request");
    json_t *resp = json_object_get(e, "response");
    json_t *rs = json_object_get(e, "_restspy");
    json_t *method = json_object_get(req, "method");
    json_t *url = json_object_get(req, "url");
    json_t *started = json_object_get(e, "startedDateTime");
    if (!json_is_object(req)) {
        snprintf(err, errlen, "request missing");
        return NULL;
    }
    if (!json_is_string(method)) {
        snprintf(err, errlen, "request.method missing");
        return NULL;
    }
    if (!json_is_string(url)) {
        snprintf(err, errlen, "request.url missing");
        return NULL;
    }
    if (resp && !json_is_object(resp) && !json_is_null(resp)) {
        snprintf(err, errlen, "response: expected an object");
        return NULL;
    }
    if (rs && !json_is_object(rs)) {
        snprintf(err, errlen, "_restspy: expected an object");
        return NULL;
    }
    if (!json_is_string(started) && !json_object_get(rs, "started_at")) {
        snprintf(err, errlen, "startedDateTime missing");
        return NULL;
    }

    json_t *c = json_object();
    record *r = NULL;
    size_hints hints = {-1, -1};
    json_object_set(c, "method", method);
    if (map_url(c, json_string_value(url))) {
        snprintf(err, errlen, "request.url is not a URL: \"%.80s\"", json_string_value(url));
        goto out;
    }
    if (json_is_string(started))
        json_object_set(c, "time", started);
    const char *hv = json_string_value(json_object_get(req, "httpVersion"));
    if (hv && strcmp(hv, "HTTP/1.0") == 0)
        json_object_set_new(c, "http_minor", json_integer(0));
    if (map_headers(c, "req_headers", json_object_get(req, "headers"), "request.headers", err,
                    errlen) ||
        map_post_data(c, json_object_get(req, "postData"), err, errlen))
        goto out;
    if (json_is_object(resp)) {
        json_t *st = json_object_get(resp, "status");
        if (!json_is_number(st)) {
            snprintf(err, errlen, "response.status: expected a number");
            goto out;
        }
        json_object_set_new(c, "status", json_integer((json_int_t)json_number_value(st)));
        if (map_headers(c, "resp_headers", json_object_get(resp, "headers"), "response.headers",
                        err, errlen))
            goto out;
        json_t *ct = json_object_get(resp, "content");
        json_t *text = json_object_get(ct, "text");
        if (json_is_string(text))
            json_object_set(c, is_base64(ct, "encoding") ? "resp_body_b64" : "resp_body", text);
    }
    if (rs)
        json_object_update(c, rs); /* restspy's own record wins over the mapping */
    else
        map_foreign(c, e, resp, &hints);

    char *txt = json_dumps(c, JSON_COMPACT);
    r = record_from_json(txt, strlen(txt), err, errlen);
    free(txt);
    if (r && !rs) {
        foreign_body(hints.req, false, &r->req_headers, &r->req_body, &r->req_body_size,
                     &r->req_truncated, &r->req_encoding, &r->req_body_note);
        if (r->status)
            foreign_body(hints.resp, true, &r->resp_headers, &r->resp_body, &r->resp_body_size,
                         &r->resp_truncated, &r->resp_encoding, &r->resp_body_note);
    }
    if (!r && strncmp(err, "time:", 5) == 0)
        snprintf(err, errlen, "startedDateTime: not an ISO 8601 date and time");
out:
    json_decref(c);
    return r;
}

static void push(record ***v, size_t *n, size_t *cap, record *r)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *v = xrealloc(*v, *cap * sizeof **v);
    }
    (*v)[(*n)++] = r;
}

/* Browser HARs carry no ids: an entry without a restspy id gets one
 * derived from its content and time (uuid7_derive), so that importing the
 * same file twice finds the first import's rows instead of storing
 * everything again, and ids still sort by time. */
typedef struct entry_digest {
    unsigned char md[32]; /* SHA-256 of the entry's canonical JSON */
    size_t pos;           /* its record's index */
} entry_digest;

static void sha256(const void *p, size_t n, unsigned char md[32])
{
    unsigned int len = 0;
    if (!EVP_Digest(p, n, md, &len, EVP_sha256(), NULL) || len != 32) {
        fprintf(stderr, "restspy: SHA-256 failed (libcrypto)\n");
        abort();
    }
}

/* Key order and layout do not matter: the same entry written by another
 * tool run gives the same digest. */
static void entry_digest_of(json_t *e, unsigned char md[32])
{
    char *txt = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);
    sha256(txt, strlen(txt), md);
    free(txt);
}

/* By digest, then by position in the file. */
static int digest_cmp(const void *a, const void *b)
{
    const entry_digest *x = a, *y = b;
    int d = memcmp(x->md, y->md, sizeof x->md);
    if (d)
        return d;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Gives v[dg[i].pos] its derived id. The k-th of identical entries (k > 0:
 * two same requests in the same millisecond) mixes k into its digest, so
 * each keeps an id of its own, the same on every import of the file. */
static void derive_ids(record **v, entry_digest *dg, size_t n)
{
    qsort(dg, n, sizeof *dg, digest_cmp);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        k = i > 0 && memcmp(dg[i].md, dg[i - 1].md, sizeof dg[i].md) == 0 ? k + 1 : 0;
        unsigned char md[32];
        memcpy(md, dg[i].md, sizeof md);
        if (k) {
            unsigned char in[32 + 8]; /* the digest, then k little-endian */
            memcpy(in, dg[i].md, 32);
            for (int b = 0; b < 8; b++)
                in[32 + b] = (unsigned char)((uint64_t)k >> (8 * b));
            sha256(in, sizeof in, md);
        }
        record *r = v[dg[i].pos];
        uuid7_derive(r->started_at_us / 1000, md, r->id);
    }
}

/* A browser's cache hit: the page got the answer without a request on the
 * network, so there is nothing to replay (and the recorded "answer" is the
 * cache's). Each browser marks it its own way: Chrome _fromCache ("memory",
 * "disk") and a _transferSize of 0, WebKit a _fetchType "Memory Cache" or
 * "Disk Cache", Firefox no network timing at all (time, send, wait and
 * receive 0). An entry restspy wrote came from the wire: never a hit. */
static bool is_cache_hit(json_t *e)
{
    if (json_object_get(e, "_restspy"))
        return false;
    json_t *resp = json_object_get(e, "response");
    json_t *st = json_object_get(resp, "status");
    if (!json_is_number(st) || json_number_value(st) <= 0)
        return false; /* no answer: a failed request, not a hit */
    json_t *fc = json_object_get(e, "_fromCache");
    if ((json_is_string(fc) && json_string_length(fc)) || json_is_true(fc))
        return true;
    const char *ft = json_string_value(json_object_get(e, "_fetchType"));
    if (ft && strcasestr(ft, "cache"))
        return true;
    json_t *ts = json_object_get(resp, "_transferSize");
    if (!ts)
        ts = json_object_get(e, "_transferSize");
    if (json_is_number(ts) && json_number_value(ts) == 0)
        return true;
    json_t *tm = json_object_get(e, "timings"), *t = json_object_get(e, "time");
    if (!json_is_object(tm) || !json_is_number(t) || json_number_value(t) > 0)
        return false;
    const char *parts[] = {"send", "wait", "receive"};
    for (size_t i = 0; i < 3; i++) {
        json_t *v = json_object_get(tm, parts[i]);
        if (!json_is_number(v) || json_number_value(v) != 0)
            return false;
    }
    return true;
}

int har_read(const char *path, bool keep_cached, record ***out, size_t *n, size_t *ncached,
             char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (ncached)
        *ncached = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    json_error_t jerr;
    json_t *root = json_loadf(f, JSON_ALLOW_NUL, &jerr);
    fclose(f);
    if (!root) {
        snprintf(err, errlen, "%s: not a HAR 1.2 document: %s (line %d)", path, jerr.text,
                 jerr.line);
        return -1;
    }
    json_t *log = json_object_get(root, "log");
    json_t *entries = json_object_get(log, "entries");
    if (!json_is_object(log) || !json_is_array(entries)) {
        snprintf(err, errlen, "%s: not a HAR 1.2 document: %s", path,
                 json_is_object(log) ? "log.entries is not an array" : "no \"log\" object");
        json_decref(root);
        return -1;
    }
    record **v = NULL;
    size_t cnt = 0, cap = 0, i, nd = 0;
    json_t *e;
    entry_digest *dg = xmalloc((json_array_size(entries) + 1) * sizeof *dg);
    json_array_foreach(entries, i, e)
    {
        if (!keep_cached && json_is_object(e) && is_cache_hit(e)) {
            if (ncached)
                (*ncached)++;
            continue;
        }
        char msg[256];
        record *r = entry_to_record(e, msg, sizeof msg);
        if (!r) {
            /* Entries are counted from 1, like lines. */
            snprintf(err, errlen, "%s: entry %zu: %s", path, i + 1, msg);
            records_free(v, cnt);
            free(dg);
            json_decref(root);
            return -1;
        }
        if (!r->origin)
            r->origin = xstrdup("imported");
        if (!json_is_string(json_object_get(json_object_get(e, "_restspy"), "id"))) {
            entry_digest_of(e, dg[nd].md);
            dg[nd++].pos = cnt;
        }
        push(&v, &cnt, &cap, r);
    }
    json_decref(root);
    derive_ids(v, dg, nd);
    free(dg);
    *out = v;
    *n = cnt;
    return 0;
}

void records_free(record **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        record_free(v[i]);
    free(v);
}

/* ---- JSON lines ---- */

void jsonl_write(FILE *f, const record *r)
{
    buf b = BUF_INIT;
    record_to_json(r, RECORD_JSON_HEADERS | RECORD_JSON_BODIES, &b);
    buf_append_char(&b, '\n');
    fwrite(b.data, 1, b.len, f);
    buf_free(&b);
}

int jsonl_read(const char *path, record ***out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    record **v = NULL;
    size_t cnt = 0, cap = 0, lineno = 0, lcap = 0;
    char *line = NULL;
    ssize_t len;
    int rc = 0;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        size_t l = (size_t)len;
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r' || line[l - 1] == ' ' ||
                     line[l - 1] == '\t'))
            l--;
        if (l == 0)
            continue; /* blank lines (a trailing one, hand edits) */
        char msg[256];
        record *r = record_from_json(line, l, msg, sizeof msg);
        if (!r) {
            snprintf(err, errlen, "%s:%zu: %s", path, lineno, msg);
            rc = -1;
            break;
        }
        if (!r->origin)
            r->origin = xstrdup("imported");
        push(&v, &cnt, &cap, r);
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        rc = -1;
    }
    free(line);
    fclose(f);
    if (rc) {
        records_free(v, cnt);
        return -1;
    }
    *out = v;
    *n = cnt;
    return 0;
}

/* ---- curl ---- */

/* 'text' with every ' written as '\'' (close, escaped quote, reopen). */
static void append_sq(buf *b, const char *s, size_t n)
{
    buf_append_char(b, '\'');
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\'')
            buf_append_str(b, "'\\''");
        else
            buf_append_char(b, s[i]);
    }
    buf_append_char(b, '\'');
}

/* A body can go into a quoted argument when it is text on one line (the
 * command stays one line), does not start with '@' (curl would read a file)
 * and is well below Linux's 128 KiB limit for one exec argument. */
static bool body_as_argument(const buf *b)
{
    if (b->len > 100000 || b->data[0] == '@' || !utf8_valid(b->data, b->len))
        return false;
    for (size_t i = 0; i < b->len; i++) {
        unsigned char c = (unsigned char)b->data[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* The body as a printf format in single quotes. Octal escapes, not \x:
 * POSIX printf (dash, Debian's /bin/sh) has no \x. printf is a shell
 * builtin, so no argument size limit applies. A leading '-' is escaped too:
 * printf would take the format for an option (every multipart body starts
 * with "--boundary") and print nothing. */
static void append_printf_body(buf *out, const buf *b)
{
    buf_append_str(out, "printf '");
    for (size_t i = 0; i < b->len; i++) {
        unsigned char c = (unsigned char)b->data[i];
        if (c == '%') {
            buf_append_str(out, "%%");
        } else if (c == '\\') {
            buf_append_str(out, "\\\\");
        } else if (c >= 0x20 && c < 0x7f && c != '\'' && !(i == 0 && c == '-')) {
            buf_append_char(out, (char)c);
        } else {
            char e[5] = {'\\', (char)('0' + (c >> 6)), (char)('0' + ((c >> 3) & 7)),
                         (char)('0' + (c & 7)), 0};
            buf_append(out, e, 4);
        }
    }
    buf_append_str(out, "' | ");
}

static bool has_dot_segment(const char *p)
{
    for (const char *s = p; s && (s = strstr(s, "/.")) != NULL; s++) {
        const char *t = s + 2;
        if (*t == '.')
            t++;
        if (*t == '/' || *t == '\0' || *t == '?')
            return true;
    }
    return false;
}

/* Recorded headers curl computes itself (from the URL and the body), and
 * any that could not go on the wire as one header line (replay leaves those
 * out too). */
static bool curl_skips_header(const http_header *h)
{
    size_t nl = strlen(h->name);
    return util_ieq(h->name, nl, "host") || util_ieq(h->name, nl, "content-length") ||
           util_ieq(h->name, nl, "transfer-encoding") || !httpmsg_is_token(h->name, nl) ||
           strpbrk(h->value, "\r\n");
}

/* The curl command for r with body (NULL: none) into out (appended). */
static void append_curl(buf *out, const record *r, const char *base, const buf *body)
{
    buf url = BUF_INIT;
    bool piped = body && body->len && !body_as_argument(body);
    if (piped)
        append_printf_body(out, body);
    buf_append_str(out, "curl -sS");
    const char *m = r->method ? r->method : "GET";
    bool head = strcmp(m, "HEAD") == 0;
    if (head) {
        buf_append_str(out, " -I"); /* -X HEAD would wait for a body */
    } else {
        buf_append_str(out, " -X ");
        /* plain tokens (every real method) read better unquoted */
        if (strspn(m, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
            strlen(m))
            buf_append_str(out, m);
        else
            append_sq(out, m, strlen(m));
    }
    append_url(&url, r, base);
    if (strpbrk(url.data, "[]{}"))
        buf_append_str(out, " -g"); /* no URL globbing: a[]=1 is a plain query */
    if (has_dot_segment(r->path))
        buf_append_str(out, " --path-as-is");
    buf_append_char(out, ' ');
    append_sq(out, url.data, url.len);
    for (size_t i = 0; i < r->req_headers.len; i++) {
        const http_header *h = &r->req_headers.v[i];
        if (curl_skips_header(h))
            continue;
        buf hv = BUF_INIT;
        buf_append_str(&hv, h->name);
        /* "Name:" would make curl drop the header; "Name;" sends it empty */
        if (*h->value) {
            buf_append_str(&hv, ": ");
            buf_append_str(&hv, h->value);
        } else {
            buf_append_char(&hv, ';');
        }
        buf_append_str(out, " -H ");
        append_sq(out, hv.data, hv.len);
        buf_free(&hv);
    }
    /* An empty body the client announced (Content-Length: 0) is sent as
     * one: without data curl sends no Content-Length at all. */
    bool announced = !head && http_headers_get(&r->req_headers, "content-length");
    if (body && (body->len || announced)) {
        /* --data-binary adds a form Content-Type the request did not have */
        if (!http_headers_get(&r->req_headers, "content-type"))
            buf_append_str(out, " -H 'Content-Type:'");
        buf_append_str(out, " --data-binary ");
        if (piped)
            buf_append_str(out, "@-");
        else
            append_sq(out, body->data ? body->data : "", body->len);
    }
    buf_free(&url);
}

bool curl_write(FILE *f, const record *r, const char *base)
{
    buf out = BUF_INIT, encoded = BUF_INIT;
    char why[300];
    const char *unfaithful = record_req_body_unfaithful(r, why, sizeof why);
    if (unfaithful) {
        /* A command sending another body than the recorded one would still
         * "work" (exit 0): the request is written as a comment instead,
         * on one line whatever its bytes, so that the script runs the rest. */
        buf cmd = BUF_INIT;
        append_curl(&cmd, r, base, NULL);
        buf_append_str(&out, "# restspy: not exported as a command, ");
        buf_append_str(&out, unfaithful);
        buf_append_str(&out, ": ");
        for (size_t i = 0; i < cmd.len; i++)
            buf_append_char(&out, cmd.data[i] == '\n' || cmd.data[i] == '\r' ? ' ' : cmd.data[i]);
        buf_free(&cmd);
    } else {
        /* Sent as it was on the wire: a body stored decoded is encoded
         * again under its recorded Content-Encoding header (rather than
         * sent decoded without it), so the server gets what it got then. */
        append_curl(&out, r, base, record_req_wire_body(r, &encoded));
    }
    buf_append_char(&out, '\n');
    fwrite(out.data, 1, out.len, f);
    buf_free(&out);
    buf_free(&encoded);
    return unfaithful == NULL;
}
