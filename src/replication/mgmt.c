/* mgmt: the RabbitMQ management API client (see mgmt.h). */
#include "replication/mgmt.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/record.h"
#include "base/url.h"
#include "base/util.h"

#define MGMT_TIMEOUT_MS 15000
#define EXCERPT_MAX 300

/* ---- text helpers ---- */

void mgmt_append_pct(buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            buf_append_char(b, (char)c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_append(b, e, 3);
        }
    }
}

/* Percent-decodes s[0..n) (user and password of a URL). Caller frees. */
static char *pct_decode(const char *s, size_t n)
{
    buf b = BUF_INIT;
    buf_append_pct_decoded(&b, s, n, 0);
    buf_append_str(&b, ""); /* an empty input still yields a string */
    return buf_detach(&b);
}

void mgmt_append_sq(buf *b, const char *s)
{
    buf_append_char(b, '\'');
    for (; *s; s++) {
        if (*s == '\'')
            buf_append_str(b, "'\\''");
        else
            buf_append_char(b, *s);
    }
    buf_append_char(b, '\'');
}

char *mgmt_mask_url(const char *url)
{
    url_parts u;
    if (url_parse(url, strlen(url), &u, NULL) != 0 || !u.userinfo)
        return xstrdup(url);
    const char *colon = memchr(u.userinfo, ':', u.userinfo_len);
    if (!colon)
        return xstrdup(url);
    buf b = BUF_INIT;
    buf_append(&b, url, (size_t)(colon + 1 - url));
    buf_append_str(&b, "***@");
    buf_append_str(&b, u.authority); /* and all that follows it */
    return buf_detach(&b);
}

/* The part of an answer body worth showing on one line: the "reason" of
 * RabbitMQ's JSON errors (whose HTML escapes are undone), else the start of
 * the body; control bytes become spaces. Caller frees. */
static char *body_excerpt(const buf *body)
{
    const char *s = body->data ? body->data : "";
    size_t n = body->len;
    char *reason = NULL;
    json_t *j = n ? json_loadb(s, n, 0, NULL) : NULL;
    if (json_is_object(j)) {
        const char *r = json_string_value(json_object_get(j, "reason"));
        const char *e = json_string_value(json_object_get(j, "error"));
        if (r || e)
            reason = xstrdup(r ? r : e);
    }
    json_decref(j);
    if (reason) {
        s = reason;
        n = strlen(reason);
    }
    static const struct {
        const char *from;
        char to;
    } ents[] = {{"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&#39;", '\''}, {"&amp;", '&'}};
    buf b = BUF_INIT;
    bool space = false;
    for (size_t i = 0; i < n && b.len < EXCERPT_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        if (reason && c == '&') {
            size_t k;
            for (k = 0; k < sizeof ents / sizeof ents[0]; k++) {
                size_t el = strlen(ents[k].from);
                if (n - i >= el && memcmp(s + i, ents[k].from, el) == 0) {
                    buf_append_char(&b, ents[k].to);
                    i += el - 1;
                    break;
                }
            }
            if (k < sizeof ents / sizeof ents[0]) {
                space = false;
                continue;
            }
        }
        if (c < 0x20 || c == 0x7f) {
            /* Runs of newlines and tabs collapse into one space. */
            if (!space && b.len)
                buf_append_char(&b, ' ');
            space = true;
            continue;
        }
        space = false;
        buf_append_char(&b, (char)c);
    }
    while (b.len && b.data[b.len - 1] == ' ')
        b.data[--b.len] = '\0';
    if (b.len >= EXCERPT_MAX)
        buf_append_str(&b, "...");
    free(reason);
    buf_append_str(&b, "");
    return buf_detach(&b);
}

int mgmt_fail(mgmt *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    free(g->err);
    g->err = xmalloc(n > 0 ? (size_t)n + 1 : 1);
    g->err[0] = '\0';
    va_start(ap, fmt);
    if (n > 0)
        vsnprintf(g->err, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- the URL ---- */

int mgmt_init(mgmt *g, const char *url, const char *vhost)
{
    memset(g, 0, sizeof *g);
    g->vhost = vhost;
    buf vb = BUF_INIT;
    mgmt_append_pct(&vb, vhost);
    buf_append_str(&vb, "");
    g->vh = buf_detach(&vb);

    url_parts u;
    const char *why = NULL;
    if (url_parse(url, strlen(url), &u, &why) != 0 ||
        !(url_is(&u, "http") || url_is(&u, "https"))) {
        if ((url_is(&u, "http") || url_is(&u, "https")) && why && strcmp(why, "no host") == 0)
            return mgmt_fail(g, "bad value for --mgmt: '%s' has no host", url);
        return mgmt_fail(g, "bad value for --mgmt: '%s' (expected http[s]://user:pass@host:15672)",
                         url);
    }
    if (u.userinfo) {
        const char *colon = memchr(u.userinfo, ':', u.userinfo_len);
        const char *uend = colon ? colon : u.userinfo + u.userinfo_len;
        g->user = pct_decode(u.userinfo, (size_t)(uend - u.userinfo));
        g->pass = colon ? pct_decode(colon + 1, u.userinfo_len - (size_t)(colon + 1 - u.userinfo))
                        : xstrdup("");
    }
    buf b = BUF_INIT;
    buf_appendf(&b, "%s://", u.scheme);
    buf_append(&b, u.authority, u.authority_len);
    g->base = buf_detach(&b);
    buf_appendf(&b, "%s://", u.scheme);
    buf_append(&b, u.userinfo ? u.userinfo : u.authority,
               (size_t)(u.authority + u.authority_len - (u.userinfo ? u.userinfo : u.authority)));
    g->auth_url = buf_detach(&b);

    /* A path is a prefix (the API behind a reverse proxy); a trailing
     * "/api" or "/" is dropped so that ".../api/" works too. */
    const char *path = u.path;
    size_t plen = u.path_len;
    while (plen && path[plen - 1] == '/')
        plen--;
    if (plen >= 4 && memcmp(path + plen - 4, "/api", 4) == 0)
        plen -= 4;
    while (plen && path[plen - 1] == '/')
        plen--;
    g->prefix = xstrndup(path, plen);
    return 0;
}

int mgmt_connect(mgmt *g)
{
    char err[256];
    /* An https API that resets the connection while OpenSSL writes must
     * give an error, not kill the command (libcurl leaves SIGPIPE alone:
     * its clients run with CURLOPT_NOSIGNAL for threads). */
    (void)signal(SIGPIPE, SIG_IGN);
    hclient_opts o = {.base = g->auth_url, .timeout_ms = MGMT_TIMEOUT_MS, .tls = g->tls};
    g->http = hclient_sync_new(&o, err, sizeof err);
    if (!g->http)
        return mgmt_fail(g, "bad value for --mgmt: %s", err);
    return 0;
}

void mgmt_free(mgmt *g)
{
    free(g->vh);
    free(g->base);
    free(g->user);
    free(g->pass);
    free(g->auth_url);
    free(g->prefix);
    hclient_sync_free(g->http);
    free(g->err);
    memset(g, 0, sizeof *g);
}

char *mgmt_path(const mgmt *g, const char *kind, const char *name)
{
    buf b = BUF_INIT;
    buf_appendf(&b, "%s/api/%s/%s", g->prefix, kind, g->vh);
    if (name) {
        buf_append_char(&b, '/');
        mgmt_append_pct(&b, name);
    }
    return buf_detach(&b);
}

/* ---- requests ---- */

/* What to do about a refusal, when the cause is a usual one. */
static const char *hint_for(int status, const char *excerpt, const char *path)
{
    if (status == 401)
        return " (check the user and password in --mgmt)";
    if (strstr(excerpt, "component shovel not found") ||
        (status == 404 && strstr(path, "/api/shovels/")))
        return " (enable the plugins: rabbitmq-plugins enable rabbitmq_shovel "
               "rabbitmq_shovel_management)";
    if (strstr(excerpt, "component federation-upstream not found"))
        return " (enable the plugin: rabbitmq-plugins enable rabbitmq_federation "
               "rabbitmq_federation_management)";
    if (status == 404 && strstr(path, "/api/vhosts/"))
        return " (no such vhost: create it or give --vhost)";
    if (strstr(excerpt, "inequivalent arg"))
        return " (it was declared differently before: delete it or keep its settings)";
    return "";
}

int mgmt_send(mgmt *g, const char *method, const char *path, const char *body, bool missing_ok,
              hclient_response *out)
{
    http_headers h = {0};
    static const char ct[] = "Content-Type", json_ct[] = "application/json";
    static const char acc[] = "Accept";
    if (body)
        http_headers_add(&h, ct, sizeof ct - 1, json_ct, sizeof json_ct - 1);
    http_headers_add(&h, acc, sizeof acc - 1, json_ct, sizeof json_ct - 1);
    hclient_response r = {0};
    char err[256];
    int rc = hclient_sync_request(g->http, method, path, &h, body, body ? strlen(body) : 0, &r, err,
                                  sizeof err);
    http_headers_free(&h);
    if (rc != 0) {
        hclient_response_free(&r);
        return mgmt_fail(g, "%s %s%s: %s", method, g->base, path, err);
    }
    if (r.status == 404 && missing_ok) {
        hclient_response_free(&r);
        return 1;
    }
    if (r.status / 100 != 2) {
        char *ex = body_excerpt(&r.body);
        mgmt_fail(g, "%s %s: %d %s%s", method, path, r.status, *ex ? ex : "(empty answer)",
                  hint_for(r.status, ex, path));
        free(ex);
        hclient_response_free(&r);
        return -1;
    }
    if (out)
        *out = r;
    else
        hclient_response_free(&r);
    return 0;
}

int mgmt_get_json(mgmt *g, const char *path, bool missing_ok, json_t **out)
{
    *out = NULL;
    hclient_response r = {0};
    int rc = mgmt_send(g, "GET", path, NULL, missing_ok, &r);
    if (rc != 0)
        return rc;
    json_error_t je;
    *out = json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, &je);
    hclient_response_free(&r);
    if (!*out)
        return mgmt_fail(g, "GET %s: the answer is not JSON (%s)", path, je.text);
    return 0;
}

void mgmt_print_curl(const mgmt *g, const char *method, const char *path, const char *body)
{
    buf b = BUF_INIT;
    buf_appendf(&b, "curl -fsS -X %s", method);
    if (g->user) {
        buf_append_str(&b, " -u ");
        buf c = BUF_INIT;
        buf_appendf(&c, "%s:%s", g->user, g->pass);
        mgmt_append_sq(&b, c.data);
        buf_free(&c);
    }
    /* The same TLS options, under the same names (they are curl's). */
    const char *const tls[][2] = {
        {"--cacert", g->tls.ca_file}, {"--cert", g->tls.cert_file}, {"--key", g->tls.key_file}};
    for (size_t i = 0; i < sizeof tls / sizeof tls[0]; i++)
        if (tls[i][1]) {
            buf_appendf(&b, " %s ", tls[i][0]);
            mgmt_append_sq(&b, tls[i][1]);
        }
    if (g->tls.insecure)
        buf_append_str(&b, " --insecure");
    if (body)
        buf_append_str(&b, " -H 'Content-Type: application/json'");
    buf_append_char(&b, ' ');
    buf c = BUF_INIT;
    buf_appendf(&c, "%s%s", g->base, path);
    mgmt_append_sq(&b, c.data);
    buf_free(&c);
    if (body) {
        buf_append_str(&b, " -d ");
        mgmt_append_sq(&b, body);
    }
    puts(b.data);
    buf_free(&b);
}
