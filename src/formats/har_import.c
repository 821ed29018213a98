/* har_import: records read back (see har.h): HAR 1.2 documents, restspy's
 * own or any browser's (each entry mapped onto the record JSON schema, cache
 * hits left out, ids derived for entries without one), and JSON lines.
 * Writing them is har_export.c's. */
#include "formats/har.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/url.h"
#include "base/util.h"
#include "base/uuid7.h"
#include "http/coding.h"

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
static int map_url(json_t *c, const char *text)
{
    url_parts u;
    if (*text == '/') {
        /* origin-form: read it as the path of a URL of no host */
        memset(&u, 0, sizeof u);
        const char *end = text + strcspn(text, "#");
        const char *qm = memchr(text, '?', (size_t)(end - text));
        u.path = text;
        u.path_len = (size_t)((qm ? qm : end) - text);
        if (qm) {
            u.query = qm + 1;
            u.query_len = (size_t)(end - qm - 1);
        }
    } else if (url_parse(text, strlen(text), &u, NULL) == 0) {
        json_object_set_new(c, "scheme", json_string(u.scheme));
        set_str(c, "host", u.authority, u.authority_len);
    } else {
        return -1;
    }
    if (u.path_len == 0)
        json_object_set_new(c, "path", json_string("/"));
    else
        set_str(c, "path", u.path, u.path_len);
    if (u.query)
        set_str(c, "query", u.query, u.query_len);
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
