/* har_export: records written out (see har.h): HAR 1.2 documents (the
 * writer and its encoders: headers, query, cookies, bodies as text or
 * base64, timings, restspy's own "_restspy" fields), JSON lines, and curl
 * command lines. Reading them back is har_import.c's. */
#include "formats/har.h"

#include <assert.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/url.h"
#include "base/util.h"
#include "http/httpmsg.h"
#include "base/util.h"

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
    assert(wait >= 0 && wait <= total); /* so that receive is not negative */
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
    assert(f);
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

/* ---- JSON lines ---- */

void jsonl_write(FILE *f, const record *r)
{
    buf b = BUF_INIT;
    record_to_json(r, RECORD_JSON_HEADERS | RECORD_JSON_BODIES, &b);
    buf_append_char(&b, '\n');
    fwrite(b.data, 1, b.len, f);
    buf_free(&b);
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

char *curl_base(const char *target, char *err, size_t errlen)
{
    url_parts u;
    if (url_parse(target, strlen(target), &u, NULL) != 0 ||
        !(url_is(&u, "http") || url_is(&u, "https"))) {
        util_seterr(err, errlen, "expected http://host:port");
        return NULL;
    }
    size_t n = strlen(target);
    while (n > 0 && target[n - 1] == '/')
        n--;
    return xstrndup(target, n);
}
