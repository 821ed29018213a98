#include "http/httpmsg.h"

#include <assert.h>
#include <string.h>
#include <strings.h>

#include "base/util.h"

/* RFC 9110 tchar: a table, as this runs on every header name. */
static const bool tchar[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1,  ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1, ['a'] = 1, ['b'] = 1,  ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1,  ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
    ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,  ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1,
    ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,  ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1,
    ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,  ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
    ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,  ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1,
    ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,  ['Y'] = 1, ['Z'] = 1, ['!'] = 1, ['#'] = 1,
    ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1,
    ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,  ['~'] = 1,
};

bool httpmsg_is_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!tchar[(unsigned char)s[i]])
            return false;
    return true;
}

int httpmsg_header_line(const char *line, const char **name, size_t *nlen, const char **value,
                        size_t *vlen)
{
    const char *colon = strchr(line, ':');
    size_t nl = colon ? (size_t)(colon - line) : 0;
    while (nl && (line[nl - 1] == ' ' || line[nl - 1] == '\t'))
        nl--;
    if (!colon || !httpmsg_is_token(line, nl) || strpbrk(line, "\r\n"))
        return -1;
    const char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t vl = strlen(v);
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
    *name = line;
    *nlen = nl;
    *value = v;
    *vlen = vl;
    return 0;
}

bool httpmsg_is_hop_by_hop(const char *name, size_t n)
{
    /* By length first: most names are not hop-by-hop and fail here. */
    switch (n) {
    case 2:
        return util_ieq(name, n, "te");
    case 7:
        return util_ieq(name, n, "trailer") || util_ieq(name, n, "upgrade");
    case 10:
        return util_ieq(name, n, "connection") || util_ieq(name, n, "keep-alive");
    case 16:
        return util_ieq(name, n, "proxy-connection");
    case 17:
        return util_ieq(name, n, "transfer-encoding");
    default:
        return false;
    }
}

/* The next comma-separated token of a header value at or after v (spaces
 * and tabs around it trimmed): its start in *t and length in *n; returns
 * where the scan goes on, or NULL when no token is left. */
static const char *next_token(const char *v, const char **t, size_t *n)
{
    while (*v == ' ' || *v == '\t' || *v == ',')
        v++;
    if (!*v)
        return NULL;
    const char *s = v;
    while (*v && *v != ',')
        v++;
    const char *e = v;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *t = s;
    *n = (size_t)(e - s);
    return v;
}

static bool list_has(const char *v, const char *token)
{
    size_t tl = strlen(token), n;
    const char *t;
    while ((v = next_token(v, &t, &n)) != NULL)
        if (n == tl && strncasecmp(t, token, tl) == 0)
            return true;
    return false;
}

static bool is_connection(const http_header *e)
{
    return (e->name[0] | 0x20) == 'c' && strcasecmp(e->name, "connection") == 0;
}

bool httpmsg_connection_has(const http_headers *h, const char *token)
{
    for (size_t i = 0; i < h->len; i++)
        if (is_connection(&h->v[i]) && list_has(h->v[i].value, token))
            return true;
    return false;
}

bool httpmsg_drop_header(const http_headers *h, const char *name)
{
    return httpmsg_is_hop_by_hop(name, strlen(name)) || httpmsg_connection_has(h, name);
}

/* The Transfer-Encoding rules of httpmsg_check_request over every TE line. */
static int check_transfer_encoding(const http_headers *h, int http_minor, const char **why)
{
    bool seen = false;
    int chunked = 0, tokens = 0;
    for (size_t i = 0; i < h->len; i++) {
        if (!util_ieq(h->v[i].name, strlen(h->v[i].name), "transfer-encoding"))
            continue;
        seen = true;
        const char *v = h->v[i].value, *t;
        size_t n;
        while ((v = next_token(v, &t, &n)) != NULL) {
            tokens++;
            if (!util_ieq(t, n, "chunked")) {
                *why = "not implemented: transfer coding other than chunked";
                return 501;
            }
            chunked++;
        }
    }
    if (!seen)
        return 0;
    if (http_minor == 0) {
        *why = "bad request: Transfer-Encoding in an HTTP/1.0 request";
        return 400;
    }
    if (tokens == 0) {
        *why = "bad request: empty Transfer-Encoding";
        return 400;
    }
    if (chunked > 1) {
        *why = "bad request: chunked applied more than once";
        return 400;
    }
    return 0;
}

int httpmsg_check_request(const http_headers *h, int http_major, int http_minor, const char **why)
{
    if (http_major != 1) {
        *why = "http version not supported";
        return 505;
    }
    size_t hosts = http_headers_count(h, "host");
    if (hosts > 1) {
        *why = "bad request: several Host headers";
        return 400;
    }
    if (hosts == 0 && http_minor >= 1) {
        *why = "bad request: missing Host header";
        return 400;
    }
    return check_transfer_encoding(h, http_minor, why);
}

/* Whether a Connection header of h names a header that is not hop-by-hop
 * anyway. Usually it says only "keep-alive" or "close": then hop-by-hop is
 * a question of the name alone, and no header needs the list scanned. */
static bool has_connection(const http_headers *h)
{
    for (size_t i = 0; i < h->len; i++) {
        if (!is_connection(&h->v[i]))
            continue;
        const char *v = h->v[i].value, *t;
        size_t n;
        while ((v = next_token(v, &t, &n)) != NULL)
            if (!util_ieq(t, n, "close") && !httpmsg_is_hop_by_hop(t, n))
                return true;
    }
    return false;
}

/* Whether the header name (length nl) is not forwarded; conn: has_connection. */
static bool drop(const http_headers *h, bool conn, const char *name, size_t nl)
{
    return httpmsg_is_hop_by_hop(name, nl) || (conn && httpmsg_connection_has(h, name));
}

static void header_line(buf *out, const char *name, const char *value)
{
    buf_append_str(out, name);
    buf_append(out, ": ", 2);
    buf_append_str(out, value);
    buf_append(out, "\r\n", 2);
}

void httpmsg_request_head(buf *out, const httpmsg_request *q, const httpmsg_req_opts *o)
{
    const http_headers *h = q->headers;
    buf_append_str(out, q->method);
    buf_append_char(out, ' ');
    buf_append_str(out, q->path);
    if (q->query) {
        buf_append_char(out, '?');
        buf_append_str(out, q->query);
    }
    buf_append(out, " HTTP/1.1\r\n", 11);

    bool have_host = false, have_proto = false, have_id = false;
    const char *xff = NULL;
    bool conn = has_connection(h);
    for (size_t i = 0; i < h->len; i++) {
        const char *n = h->v[i].name;
        size_t nl = strlen(n);
        if (drop(h, conn, n, nl)) {
            if (o->upgrade && util_ieq(n, nl, "upgrade"))
                header_line(out, n, h->v[i].value);
            continue;
        }
        if (o->chunked && util_ieq(n, nl, "content-length"))
            continue;
        if (o->strip_expect && util_ieq(n, nl, "expect"))
            continue;
        if (util_ieq(n, nl, "x-forwarded-for")) {
            /* Several X-Forwarded-For lines are one list: keep the last as
             * the one restspy extends, and pass the earlier ones on. */
            if (xff)
                header_line(out, "X-Forwarded-For", xff);
            xff = h->v[i].value;
            continue;
        }
        if (util_ieq(n, nl, "host"))
            have_host = true;
        else if (util_ieq(n, nl, "x-forwarded-proto"))
            have_proto = true;
        else if (util_ieq(n, nl, "x-request-id"))
            have_id = true;
        header_line(out, n, h->v[i].value);
    }
    if (!have_host && o->default_host)
        header_line(out, "Host", o->default_host);
    buf_append_str(out, "X-Forwarded-For: ");
    if (xff) {
        buf_append_str(out, xff);
        buf_append(out, ", ", 2);
    }
    buf_append_str(out, o->client_ip);
    buf_append(out, "\r\n", 2);
    if (!have_proto)
        header_line(out, "X-Forwarded-Proto", o->proto ? o->proto : "http");
    if (!have_id)
        header_line(out, "X-Request-Id", o->request_id);
    if (o->chunked)
        buf_append_str(out, "Transfer-Encoding: chunked\r\n");
    if (o->upgrade)
        buf_append_str(out, "Connection: upgrade\r\n");
    buf_append(out, "\r\n", 2);
}

void httpmsg_response_head(buf *out, int status, const char *reason, size_t reason_len,
                           const http_headers *h, httpmsg_body body, bool keep_alive, bool http10)
{
    buf_appendf(out, "HTTP/1.1 %03d ", status);
    if (reason && reason_len)
        buf_append(out, reason, reason_len);
    else
        buf_append_str(out, httpmsg_reason(status));
    buf_append(out, "\r\n", 2);
    bool conn = has_connection(h);
    for (size_t i = 0; i < h->len; i++) {
        const char *n = h->v[i].name;
        size_t nl = strlen(n);
        if (drop(h, conn, n, nl)) {
            if (body == HTTPMSG_BODY_UPGRADE && util_ieq(n, nl, "upgrade"))
                header_line(out, n, h->v[i].value);
            continue;
        }
        if ((body == HTTPMSG_BODY_CHUNKED || body == HTTPMSG_BODY_CLOSE) &&
            util_ieq(n, nl, "content-length"))
            continue;
        header_line(out, n, h->v[i].value);
    }
    if (body == HTTPMSG_BODY_CHUNKED)
        buf_append_str(out, "Transfer-Encoding: chunked\r\n");
    if (body == HTTPMSG_BODY_UPGRADE)
        buf_append_str(out, "Connection: upgrade\r\n");
    else if (!keep_alive)
        buf_append_str(out, "Connection: close\r\n");
    else if (http10)
        buf_append_str(out, "Connection: keep-alive\r\n");
    buf_append(out, "\r\n", 2);
}

void httpmsg_error_response(buf *out, int status, const char *error, const char *request_id,
                            bool keep_alive)
{
    buf body = BUF_INIT;
    buf_append_str(&body, "{\"error\":");
    buf_append_json_str(&body, error, strlen(error));
    buf_append_str(&body, ",\"request_id\":");
    buf_append_json_str(&body, request_id, strlen(request_id));
    buf_append_str(&body, "}\n");
    buf_appendf(out, "HTTP/1.1 %03d %s\r\n", status, httpmsg_reason(status));
    buf_append_str(out, "Content-Type: application/json\r\n");
    buf_appendf(out, "Content-Length: %zu\r\n", body.len);
    header_line(out, "X-Request-Id", request_id);
    if (!keep_alive)
        buf_append_str(out, "Connection: close\r\n");
    buf_append(out, "\r\n", 2);
    buf_append(out, body.data, body.len);
    buf_free(&body);
}

/* RFC 9110 §15 (its "(Unused)" 306 and 418 left out), with 103 (RFC 8297),
 * 428, 429, 431, 511 (RFC 6585) and 451 (RFC 7725). Sorted by code. */
static const struct {
    int code;
    const char *text;
} reason_tbl[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {103, "Early Hints"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {205, "Reset Content"},
    {206, "Partial Content"},
    {300, "Multiple Choices"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {305, "Use Proxy"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {407, "Proxy Authentication Required"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Content"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {451, "Unavailable For Legal Reasons"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
    {511, "Network Authentication Required"},
};

const char *httpmsg_reason_lookup(int status)
{
    for (size_t i = 0; i < sizeof reason_tbl / sizeof reason_tbl[0]; i++)
        if (reason_tbl[i].code == status)
            return reason_tbl[i].text;
    return NULL;
}

const char *httpmsg_reason(int status)
{
    const char *r = httpmsg_reason_lookup(status);
    return r ? r : "Unknown";
}

void httpmsg_chunk_header(buf *out, size_t n)
{
    buf_appendf(out, "%zx\r\n", n);
}

bool httpmsg_chunk_crlf(unsigned *need, const char *p, size_t n)
{
    assert(*need <= 2);
    while (*need && n) {
        if (*p != "\r\n"[2 - *need])
            return false;
        p++;
        n--;
        (*need)--;
    }
    return true;
}

/* ---- the header collector ---- */

void httpmsg_hcollect_name(httpmsg_hcollect *hc, const char *at, size_t len)
{
    buf_append(&hc->name, at, len);
}

int httpmsg_hcollect_value(httpmsg_hcollect *hc, const char *at, size_t len, const char *feed_end)
{
    if (feed_end && hc->value.len && !hc->value_cut)
        return -1;
    buf_append(&hc->value, at, len);
    hc->value_cut = at + len == feed_end;
    return 0;
}

int httpmsg_hcollect_done(httpmsg_hcollect *hc, http_headers *into)
{
    int rc = -1;
    if (httpmsg_is_token(hc->name.data, hc->name.len)) {
        if (into)
            http_headers_add(into, hc->name.data, hc->name.len,
                             hc->value.data ? hc->value.data : "", hc->value.len);
        rc = 0;
    }
    httpmsg_hcollect_reset(hc);
    return rc;
}

void httpmsg_hcollect_reset(httpmsg_hcollect *hc)
{
    buf_reset(&hc->name);
    buf_reset(&hc->value);
    hc->value_cut = false;
}

void httpmsg_hcollect_free(httpmsg_hcollect *hc)
{
    buf_free(&hc->name);
    buf_free(&hc->value);
    hc->value_cut = false;
}
