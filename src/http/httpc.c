/* httpc: the blocking HTTP client (see httpc.h), on libcurl's easy
 * interface.
 *
 * One easy handle per httpc: libcurl keeps its connection alive between
 * requests and, when a reused connection turns out closed before any byte
 * of the answer, sends the request once more on a new one (what the
 * hand-written client did). What stays ours: the request's checks (a header
 * that would inject another, a target with blanks), the headers libcurl
 * must not add or duplicate (Host from the base URL, Content-Length from
 * the body, no Accept or Expect of its own), the size limits, and the
 * error texts callers classify ("connect: ...", "resolve ...", "timeout",
 * "invalid response: ..."). Trade-off: libcurl reads answers more
 * leniently than llhttp's strict mode did (a bare LF, a doubled
 * Content-Length with one value); the proxy, which relays answers to
 * clients, keeps llhttp. */
#include "http/httpc.h"

#include <assert.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/url.h"
#include "base/util.h"
#include "http/httpmsg.h"

#define HTTPC_MAX_BODY (16u << 20)     /* 16 MiB: API answers, not downloads */
#define HTTPC_MAX_HEADERS (256u << 10) /* whole header section */

struct httpc {
    CURL *easy;        /* owns the kept-alive connection */
    char *base;        /* "scheme://host:port" as given, for each request URL */
    char *host_header; /* "host:port" as given in the base URL; owned */
    char *auth;        /* "Basic ..." or NULL; owned */
    char errbuf[CURL_ERROR_SIZE];
};

/* What the callbacks fill while one answer arrives; on httpc_request's
 * stack. */
typedef struct rstate {
    httpc_response *out;
    size_t header_bytes;
    bool too_big;    /* a limit was passed: the callbacks stopped the transfer */
    bool bad_header; /* a header name that is not a token */
} rstate;

static size_t on_header(char *at, size_t size, size_t n, void *ud);
static size_t on_body(char *at, size_t size, size_t n, void *ud);

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

/* curl_global_init is not thread-safe; the replicator makes its clients
 * from several threads' point of view, so it runs once, first. */
static void global_init(void)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        abort(); /* no TLS library, no memory: nothing can work */
}

httpc *httpc_new(const char *base, uint64_t timeout_ms, char *err, size_t errlen)
{
    url_parts u;
    const char *why = NULL;
    if (!base || url_parse(base, strlen(base), &u, &why) != 0 || !url_is(&u, "http")) {
        util_seterr(err, errlen, "bad URL '%s' (%s)", base ? base : "",
                    why && strcmp(why, "no host") == 0 ? "no host" : "expected http://host:port");
        return NULL;
    }
    pthread_once(&global_once, global_init);
    httpc *c = xcalloc(1, sizeof *c);
    c->easy = curl_easy_init();
    if (!c->easy)
        abort();
    /* What every request of this client shares; httpc_request sets the rest. */
    CURL *e = c->easy;
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for resolves */
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
    buf b = BUF_INIT;
    buf_appendf(&b, "http://%.*s", (int)u.authority_len, u.authority);
    c->base = buf_detach(&b);
    c->host_header = xstrndup(u.authority, u.authority_len);
    if (u.userinfo) {
        buf cred = BUF_INIT;
        buf_append_pct_decoded(&cred, u.userinfo, u.userinfo_len, 0);
        buf_append_str(&b, "Basic ");
        buf_append_base64(&b, cred.data ? cred.data : "", cred.len);
        c->auth = buf_detach(&b);
        /* The decoded password is a secret: do not leave it in freed heap. */
        if (cred.data)
            memset(cred.data, 0, cred.len);
        buf_free(&cred);
    }
    return c;
}

void httpc_free(httpc *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->easy);
    free(c->base);
    free(c->host_header);
    if (c->auth)
        memset(c->auth, 0, strlen(c->auth));
    free(c->auth);
    free(c);
}

void httpc_response_free(httpc_response *r)
{
    if (!r)
        return;
    http_headers_free(&r->headers);
    buf_free(&r->body);
    r->status = 0;
}

/* ---- the answer, as libcurl hands it over ---- */

/* One header line ("Name: value\r\n"), a status line or the blank line. A
 * status line starts a message: an interim 1xx's headers are dropped when
 * the final status line comes. */
static size_t on_header(char *at, size_t size, size_t n, void *ud)
{
    rstate *s = ud;
    size_t len = size * n;
    s->header_bytes += len;
    if (s->header_bytes > HTTPC_MAX_HEADERS) {
        s->too_big = true;
        return 0;
    }
    if (len >= 5 && memcmp(at, "HTTP/", 5) == 0) {
        http_headers_free(&s->out->headers);
        return len;
    }
    size_t end = len;
    while (end && (at[end - 1] == '\n' || at[end - 1] == '\r'))
        end--;
    if (end == 0)
        return len; /* the blank line */
    const char *colon = memchr(at, ':', end);
    if (!colon || !httpmsg_is_token(at, (size_t)(colon - at))) {
        s->bad_header = true;
        return 0;
    }
    const char *v = colon + 1;
    size_t vlen = end - (size_t)(v - at);
    util_trim(&v, &vlen);
    http_headers_add(&s->out->headers, at, (size_t)(colon - at), v, vlen);
    return len;
}

static size_t on_body(char *at, size_t size, size_t n, void *ud)
{
    rstate *s = ud;
    size_t len = size * n;
    if (s->out->body.len + len > HTTPC_MAX_BODY) {
        s->too_big = true;
        return 0;
    }
    buf_append(&s->out->body, at, len);
    return len;
}

/* ---- the request ---- */

static bool value_ok(const char *v)
{
    for (; *v; v++)
        if (*v == '\r' || *v == '\n')
            return false;
    return true;
}

/* Headers the client writes itself (from the base URL and the body) or
 * that belong to one hop. */
static bool skip_header(const char *name)
{
    size_t n = strlen(name);
    return util_ieq(name, n, "host") || util_ieq(name, n, "content-length") ||
           util_ieq(name, n, "transfer-encoding") || util_ieq(name, n, "connection") ||
           util_ieq(name, n, "expect");
}

/* The header list for libcurl, or NULL with err when a header cannot be
 * sent as is (a name that is not a token, a value with CR or LF: header
 * injection). *ok false then. */
static struct curl_slist *header_list(const httpc *c, const http_headers *h, bool *ok, char *err,
                                      size_t errlen)
{
    struct curl_slist *list = NULL;
    buf line = BUF_INIT;
    bool has_auth = false, has_accept = false;
    *ok = true;
    buf_appendf(&line, "Host: %s", c->host_header);
    list = curl_slist_append(list, line.data);
    for (size_t i = 0; h && i < h->len; i++) {
        const char *n = h->v[i].name, *v = h->v[i].value;
        if (!httpmsg_is_token(n, strlen(n)) || !value_ok(v)) {
            util_seterr(err, errlen, "invalid request: bad header '%.40s'", n);
            *ok = false;
            break;
        }
        if (skip_header(n))
            continue;
        has_auth |= util_ieq(n, strlen(n), "authorization");
        has_accept |= util_ieq(n, strlen(n), "accept");
        buf_reset(&line);
        /* "Name;" is libcurl's way to send a header with an empty value. */
        if (*v)
            buf_appendf(&line, "%s: %s", n, v);
        else
            buf_appendf(&line, "%s;", n);
        list = curl_slist_append(list, line.data);
    }
    if (*ok && c->auth && !has_auth) {
        buf_reset(&line);
        buf_appendf(&line, "Authorization: %s", c->auth);
        list = curl_slist_append(list, line.data);
    }
    /* libcurl's own additions, which the caller did not ask for. */
    if (!has_accept)
        list = curl_slist_append(list, "Accept:");
    list = curl_slist_append(list, "Expect:");
    buf_free(&line);
    if (!*ok || !list) {
        curl_slist_free_all(list);
        *ok = false;
        return NULL;
    }
    return list;
}

static void set_method(CURL *e, const char *method, const void *body, size_t len)
{
    size_t ml = strlen(method);
    if (util_ieq(method, ml, "HEAD")) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        return;
    }
    curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
    /* A body, or a method that always carries one (Content-Length: 0). */
    if (len > 0 || util_ieq(method, ml, "POST") || util_ieq(method, ml, "PUT") ||
        util_ieq(method, ml, "PATCH")) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
}

/* The error text callers classify, from libcurl's code. */
static void describe(httpc *c, CURLcode rc, const rstate *s, char *err, size_t errlen)
{
    long oserr = 0;
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        util_seterr(err, errlen, "timeout");
        return;
    case CURLE_COULDNT_CONNECT:
        curl_easy_getinfo(c->easy, CURLINFO_OS_ERRNO, &oserr);
        util_seterr(err, errlen, "connect: %s", strerror(oserr ? (int)oserr : ECONNREFUSED));
        return;
    case CURLE_COULDNT_RESOLVE_HOST:
        util_seterr(err, errlen, "resolve %s: %s", c->host_header, c->errbuf);
        return;
    case CURLE_GOT_NOTHING:
        util_seterr(err, errlen, "invalid response: connection closed without a response");
        return;
    case CURLE_WRITE_ERROR:
        if (s->too_big) {
            util_seterr(err, errlen, "invalid response: larger than %u bytes",
                        s->header_bytes > HTTPC_MAX_HEADERS ? HTTPC_MAX_HEADERS : HTTPC_MAX_BODY);
            return;
        }
        if (s->bad_header) {
            util_seterr(err, errlen, "invalid response: bad header name");
            return;
        }
        break;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
        curl_easy_getinfo(c->easy, CURLINFO_OS_ERRNO, &oserr);
        util_seterr(err, errlen, "%s: %s", rc == CURLE_SEND_ERROR ? "send" : "recv",
                    oserr ? strerror((int)oserr) : c->errbuf);
        return;
    default:
        break;
    }
    util_seterr(err, errlen, "invalid response: %s",
                c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
}

int httpc_request(httpc *c, const char *method, const char *target, const http_headers *headers,
                  const void *body, size_t len, httpc_response *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (err && errlen)
        err[0] = '\0';
    if (!httpmsg_is_token(method, strlen(method)) || !*target || target[0] != '/' ||
        strpbrk(target, " \r\n\t")) {
        util_seterr(err, errlen, "invalid request: bad method or target");
        return -1;
    }
    bool ok;
    struct curl_slist *hl = header_list(c, headers, &ok, err, errlen);
    if (!ok)
        return -1;
    buf full = BUF_INIT;
    buf_appendf(&full, "%s%s", c->base, target);
    rstate s = {.out = out};
    CURL *e = c->easy;
    c->errbuf[0] = '\0';
    curl_easy_setopt(e, CURLOPT_URL, full.data);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &s);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &s);
    set_method(e, method, body, len);
    CURLcode rc = curl_easy_perform(e);
    /* The options point at this call's list and URL: forget them. */
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL);
    curl_slist_free_all(hl);
    buf_free(&full);
    if (rc != CURLE_OK) {
        describe(c, rc, &s, err, errlen);
        return -1;
    }
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    out->status = (int)status;
    return 0;
}
