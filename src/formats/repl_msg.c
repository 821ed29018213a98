/* repl_msg: building, signing and verifying replication messages. The
 * canonical form and every rule here are specified in docs/protocol.md; a
 * change here is a protocol change (a new tag, section 9). Version 1 messages
 * (no origin answer) keep their form so older producers still verify. */
#include "formats/repl_msg.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "http/httpmsg.h"
#include "base/util.h"

#define REPL_CANON_TAG_V1 "restspy-v1"
#define REPL_CANON_TAG_V2 "restspy-v2"
#define REPL_ROUTING_KEY_MAX 255 /* AMQP shortstr */

repl_msg *repl_msg_new(void)
{
    repl_msg *m = xcalloc(1, sizeof *m);
    buf_init(&m->body);
    buf_init(&m->origin_body);
    return m;
}

void repl_msg_free(repl_msg *m)
{
    if (!m)
        return;
    free(m->origin);
    free(m->method);
    free(m->target);
    free(m->headers);
    free(m->content_type);
    free(m->signature);
    free(m->routing_key);
    free(m->origin_status);
    free(m->origin_digest);
    buf_free(&m->origin_body);
    buf_free(&m->body);
    free(m);
}

size_t repl_msg_mem(const repl_msg *m)
{
    const char *const strs[] = {m->origin,      m->method,        m->target,
                                m->headers,     m->content_type,  m->signature,
                                m->routing_key, m->origin_status, m->origin_digest};
    size_t n = sizeof *m + UTIL_MALLOC_OVERHEAD + buf_mem(&m->body) + buf_mem(&m->origin_body);
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        n += util_str_mem(strs[i]);
    return n;
}

/* ---- building ---- */

/* Headers that describe this hop or this connection's framing: the applier
 * sends the body with its own framing to its own upstream, so carrying them
 * would be wrong, or (Host) would address the origin's upstream. */
static bool not_replicated(const http_headers *h, const char *name, char *const *drop)
{
    static const char *const fixed[] = {"host", "content-length", "transfer-encoding", "expect"};
    if (httpmsg_drop_header(h, name))
        return true;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (strcasecmp(name, fixed[i]) == 0)
            return true;
    for (size_t i = 0; drop && drop[i]; i++)
        if (strcasecmp(name, drop[i]) == 0)
            return true;
    return false;
}

static char *headers_json(const http_headers *h, char *const *drop)
{
    buf out = BUF_INIT;
    size_t n = 0;
    buf_append_char(&out, '[');
    for (size_t i = 0; i < h->len; i++) {
        if (not_replicated(h, h->v[i].name, drop))
            continue;
        if (n++)
            buf_append_char(&out, ',');
        buf_append_char(&out, '[');
        buf_append_json_str(&out, h->v[i].name, strlen(h->v[i].name));
        buf_append_char(&out, ',');
        buf_append_json_str(&out, h->v[i].value, strlen(h->v[i].value));
        buf_append_char(&out, ']');
    }
    buf_append_char(&out, ']');
    return buf_detach(&out);
}

repl_msg *repl_msg_from_record(const record *r, const char *origin, buf *body, char *const *drop)
{
    repl_msg *m = repl_msg_new();
    memcpy(m->id, r->id, sizeof m->id);
    m->id[UUID7_STR_LEN] = '\0';
    /* Floor division, so a (theoretical) pre-1970 capture still rounds down. */
    int64_t us = r->started_at_us;
    m->timestamp = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
    m->origin = xstrdup(origin ? origin : "");
    m->method = xstrdup(r->method ? r->method : "");

    buf t = BUF_INIT;
    buf_append_str(&t, r->path ? r->path : "");
    if (r->query) {
        buf_append_char(&t, '?');
        buf_append_str(&t, r->query);
    }
    m->target = buf_detach(&t);

    m->headers = headers_json(&r->req_headers, drop);
    const char *ct = http_headers_get(&r->req_headers, "content-type");
    m->content_type = ct ? xstrdup(ct) : NULL;
    m->routing_key = repl_routing_key(m->origin, m->method, r->path ? r->path : "");
    if (body) {
        m->body = *body; /* moved: the message owns the bytes now */
        buf_init(body);
    }
    return m;
}

/* Appends one routing-key word: the three bytes that mean something to a
 * topic exchange are neutralised so a path cannot add or join words. */
static void append_word(buf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        buf_append_char(out, (c == '.' || c == '*' || c == '#') ? '_' : c);
    }
}

char *repl_routing_key(const char *origin, const char *method, const char *path)
{
    buf k = BUF_INIT;
    append_word(&k, origin ? origin : "", origin ? strlen(origin) : 0);
    buf_append_char(&k, '.');
    append_word(&k, method ? method : "", method ? strlen(method) : 0);
    for (const char *p = path ? path : ""; *p;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n) {
            buf_append_char(&k, '.');
            append_word(&k, p, n);
        }
        p += n;
        if (*p == '/')
            p++;
    }
    if (k.len > REPL_ROUTING_KEY_MAX) {
        /* Cut on a UTF-8 character boundary (a raw UTF-8 path is possible),
         * then drop the dots that would end the key with empty words. */
        size_t n = REPL_ROUTING_KEY_MAX;
        while (n > 0 && ((unsigned char)k.data[n] & 0xC0) == 0x80)
            n--;
        while (n > 0 && k.data[n - 1] == '.')
            n--;
        k.len = n;
        k.data[n] = '\0';
    }
    return buf_detach(&k);
}

/* ---- canonical form and signature ---- */

/* Writes b as 2n lowercase hex digits plus a NUL into out. */
static void hex_encode(char *out, const unsigned char *b, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* One field of the canonical form: a NULL field (no content_type) is the
 * empty line, so "absent" and "empty" sign alike. */
static void canon_line(buf *out, const char *field)
{
    buf_append_char(out, '\n');
    if (field)
        buf_append_str(out, field);
}

void repl_sha256_hex(const void *data, size_t len, char hex[REPL_DIGEST_HEX + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(data ? data : "", len, md, &mdlen, EVP_sha256(), NULL) ||
        mdlen * 2 != REPL_DIGEST_HEX) {
        fprintf(stderr, "restspy: SHA-256 failed (libcrypto)\n");
        abort();
    }
    hex_encode(hex, md, mdlen);
}

void repl_msg_set_answer(repl_msg *m, int status, const buf *body)
{
    assert(status >= 100 && status <= 599);
    char s[4];
    snprintf(s, sizeof s, "%d", status);
    free(m->origin_status);
    m->origin_status = xstrdup(s);
    free(m->origin_digest);
    m->origin_digest = NULL;
    if (body) {
        char hex[REPL_DIGEST_HEX + 1];
        repl_sha256_hex(body->data, body->len, hex);
        m->origin_digest = xstrdup(hex);
    }
}

void repl_msg_set_origin_body(repl_msg *m, const void *data, size_t len)
{
    assert(m->origin_status); /* a version-2 message: the body goes with its status */
    buf_reset(&m->origin_body);
    if (len)
        buf_append(&m->origin_body, data, len);
}

int repl_msg_version(const repl_msg *m)
{
    return m->origin_status ? 2 : 1;
}

void repl_msg_canonical(const repl_msg *m, buf *out)
{
    bool v2 = repl_msg_version(m) == 2;
    buf_append_str(out, v2 ? REPL_CANON_TAG_V2 : REPL_CANON_TAG_V1);
    canon_line(out, m->id);
    buf_append_char(out, '\n');
    buf_append_i64(out, (long long)m->timestamp);
    canon_line(out, m->origin);
    canon_line(out, m->method);
    canon_line(out, m->target);
    canon_line(out, m->content_type);
    canon_line(out, m->headers);
    /* The body by its digest: the form stays small and text, and a consumer
     * can hash the body as it streams it. */
    char hex[REPL_DIGEST_HEX + 1];
    repl_sha256_hex(m->body.data, m->body.len, hex);
    buf_append_char(out, '\n');
    buf_append_str(out, hex);
    if (v2) {
        canon_line(out, m->origin_status);
        canon_line(out, m->origin_digest);
        /* A twelfth line only when a body is carried: messages without one
         * keep the eleven lines version 2 began with. */
        if (m->origin_body.len) {
            repl_sha256_hex(m->origin_body.data, m->origin_body.len, hex);
            buf_append_char(out, '\n');
            buf_append_str(out, hex);
        }
    }
}

void repl_hmac_hex(const char *secret, const void *data, size_t len, char hex[REPL_SIG_HEX + 1])
{
    assert(secret && *secret); /* unsigned is the caller's decision */
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), data, len, mac, &maclen) ||
        maclen * 2 != REPL_SIG_HEX) {
        fprintf(stderr, "restspy: HMAC-SHA256 failed (libcrypto)\n");
        abort();
    }
    hex_encode(hex, mac, maclen);
    OPENSSL_cleanse(mac, sizeof mac);
}

int repl_sig_check(const char *secret, const buf *canonical, const char *sig, const char *what,
                   char *why, size_t whylen)
{
    if (!secret || !*secret)
        return 0;
    if (!sig || !*sig) {
        snprintf(why, whylen, "unsigned %s", what);
        return -1;
    }
    char want[REPL_SIG_HEX + 1];
    repl_hmac_hex(secret, canonical->data, canonical->len, want);
    /* The length is public (always 64); the content is compared in constant
     * time so a forger learns nothing from how long the check took. */
    bool ok = strlen(sig) == REPL_SIG_HEX && CRYPTO_memcmp(want, sig, REPL_SIG_HEX) == 0;
    OPENSSL_cleanse(want, sizeof want);
    if (!ok) {
        snprintf(why, whylen, "bad signature");
        return -1;
    }
    return 0;
}

/* Lowercase hex HMAC-SHA256 of m's canonical form into hex (65 bytes). */
static void compute_signature(const repl_msg *m, const char *secret, char hex[REPL_SIG_HEX + 1])
{
    buf c = BUF_INIT;
    repl_msg_canonical(m, &c);
    repl_hmac_hex(secret, c.data, c.len, hex);
    buf_free(&c);
}

void repl_msg_sign(repl_msg *m, const char *secret)
{
    free(m->signature);
    m->signature = NULL;
    if (!secret || !*secret)
        return;
    char hex[REPL_SIG_HEX + 1];
    compute_signature(m, secret, hex);
    m->signature = xstrdup(hex);
}

/* ---- verification ---- */

/* Rejects bytes a field of the canonical form must not hold: '\n' would let
 * one field pose as two, and control bytes in method or target would end up
 * in the request line the applier writes. allow_tab: a Content-Type value may
 * hold a tab (RFC 9110 field-value). */
static bool field_ok(const char *s, bool allow_space, bool allow_tab)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == 0x7f || (c < 0x20 && !(allow_tab && c == '\t')) || (c == ' ' && !allow_space))
            return false;
    }
    return true;
}

/* The parsed x-restspy-headers must be writable as header lines as-is: a
 * name that is a token, a value without CR or LF. */
static const char *headers_problem(const char *json)
{
    http_headers h = {0};
    const char *why = NULL;
    if (http_headers_from_json(&h, json, strlen(json)) != 0)
        why = "x-restspy-headers is not a JSON array of [name, value] strings";
    for (size_t i = 0; !why && i < h.len; i++) {
        if (!httpmsg_is_token(h.v[i].name, strlen(h.v[i].name)))
            why = "x-restspy-headers has an invalid header name";
        else if (strpbrk(h.v[i].value, "\r\n"))
            why = "x-restspy-headers has a CR or LF in a value";
    }
    http_headers_free(&h);
    return why;
}

static bool status_ok(const char *s)
{
    return strlen(s) == 3 && s[0] >= '1' && s[0] <= '5' && isdigit((unsigned char)s[1]) &&
           isdigit((unsigned char)s[2]);
}

static bool digest_ok(const char *s)
{
    return strlen(s) == REPL_DIGEST_HEX && strspn(s, "0123456789abcdef") == REPL_DIGEST_HEX;
}

/* NULL when m is well-formed, else what is wrong with it. */
static const char *malformed(const repl_msg *m)
{
    if (!m->id[0])
        return "no message_id";
    if (!field_ok(m->id, false, false))
        return "bad character in message_id";
    if (!m->origin || !*m->origin)
        return "no x-restspy-origin";
    if (!field_ok(m->origin, true, false))
        return "bad character in x-restspy-origin";
    if (!m->method || !*m->method)
        return "no x-restspy-method";
    if (!httpmsg_is_token(m->method, strlen(m->method)))
        return "bad character in x-restspy-method";
    if (!m->target || !*m->target)
        return "no x-restspy-target";
    if (!field_ok(m->target, false, false))
        return "bad character in x-restspy-target";
    if (m->content_type && !field_ok(m->content_type, true, true))
        return "bad character in content_type";
    if (!m->headers)
        return "no x-restspy-headers";
    if (!field_ok(m->headers, true, true))
        return "bad character in x-restspy-headers";
    if (m->origin_body.len && !m->origin_status)
        return "x-restspy-origin-body without x-restspy-origin-status";
    if (m->origin_digest && !m->origin_status)
        return "x-restspy-origin-digest without x-restspy-origin-status";
    if (m->origin_status && !status_ok(m->origin_status))
        return "x-restspy-origin-status is not a status code (100-599)";
    if (m->origin_digest && !digest_ok(m->origin_digest))
        return "x-restspy-origin-digest is not 64 lowercase hex digits";
    return headers_problem(m->headers);
}

int repl_msg_verify(const repl_msg *m, const char *secret, char *why, size_t whylen)
{
    const char *bad = malformed(m);
    if (bad) {
        snprintf(why, whylen, "malformed message: %s", bad);
        return -1;
    }
    buf c = BUF_INIT;
    if (secret && *secret)
        repl_msg_canonical(m, &c);
    int rc = repl_sig_check(secret, &c, m->signature, "message", why, whylen);
    buf_free(&c);
    return rc;
}

int repl_msg_headers(const repl_msg *m, http_headers *h)
{
    if (!m->headers)
        return -1;
    return http_headers_from_json(h, m->headers, strlen(m->headers));
}
