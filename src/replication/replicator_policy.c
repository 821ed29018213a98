/* replicator_policy: the replicator's pure decisions (replicator_internal.h):
 * backoff, the order between writes, the retry budget, the headers a
 * message is applied with, dead-letter reasons. No threads, no I/O. */
#include "replication/replicator_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "capture/config.h"
#include "http/httpmsg.h"

#define REASON_EXCERPT 200 /* bytes of a 4xx body in a dead-letter reason */

/* ---- pure helpers (replicator_internal.h) ---- */

uint64_t repl_backoff_ms(unsigned attempt, uint64_t min_ms, uint64_t max_ms)
{
    if (min_ms == 0)
        min_ms = 1;
    if (max_ms < min_ms)
        max_ms = min_ms;
    uint64_t d = min_ms;
    for (unsigned i = 0; i < attempt && d < max_ms; i++)
        d = d > max_ms / 2 ? max_ms : d * 2;
    return d < max_ms ? d : max_ms;
}

char *repl_resource_key(const char *target)
{
    buf b = BUF_INIT;
    const char *p = target ? target : "";
    while (*p && *p != '?') {
        while (*p == '/')
            p++;
        const char *seg = p;
        while (*p && *p != '/' && *p != '?')
            p++;
        if (p > seg) {
            buf_append_char(&b, '/');
            buf_append(&b, seg, (size_t)(p - seg));
        }
    }
    if (!b.len)
        buf_append_char(&b, '/');
    return buf_detach(&b);
}

/* Whether key a is b or a resource above it ("/a" is above "/a/b"; "/"
 * above everything). */
static bool key_covers(const char *a, const char *b)
{
    if (strcmp(a, "/") == 0)
        return true;
    size_t n = strlen(a);
    return strncmp(a, b, n) == 0 && (b[n] == '\0' || b[n] == '/');
}

bool repl_waits_for(const repl_okey *later, const repl_okey *earlier, int order, bool earlier_stuck)
{
    if (strcmp(later->id, earlier->id) == 0)
        return true; /* two copies are never applied side by side */
    if (order == APPLY_ORDER_ORIGIN)
        return strcmp(later->origin, earlier->origin) == 0;
    bool relaxed = order == APPLY_ORDER_RESOURCE;
    if (strcmp(later->key, earlier->key) == 0)
        return !(relaxed && later->post && earlier->post);
    if (earlier_stuck)
        return false;
    if (key_covers(earlier->key, later->key))
        return true; /* e.g. a member's write after a create in its collection */
    if (key_covers(later->key, earlier->key))
        return !(relaxed && later->post && !earlier->del);
    return false;
}

bool repl_stuck(int64_t first_failed_us, int64_t ok_us, int64_t now_us, uint64_t stuck_after_ms)
{
    if (!first_failed_us || ok_us <= first_failed_us)
        return false;
    return now_us - first_failed_us >= (int64_t)(stuck_after_ms * 1000);
}

bool repl_unreachable(const char *err)
{
    return strncmp(err, "connect: ", 9) == 0 || strncmp(err, "resolve ", 8) == 0;
}

bool repl_budget_spent(int64_t attempts, int64_t first_failed_us, int64_t now_us,
                       uint64_t max_age_ms, uint64_t max_attempts)
{
    if (attempts <= 0 || !first_failed_us)
        return false;
    if (max_attempts && (uint64_t)attempts >= max_attempts)
        return true;
    return max_age_ms && now_us - first_failed_us >= (int64_t)(max_age_ms * 1000);
}

char *repl_budget_reason(int64_t attempts, int64_t first_failed_us, int64_t now_us,
                         const char *last_answer)
{
    char d[32];
    util_fmt_duration(now_us - first_failed_us, d, sizeof d);
    buf b = BUF_INIT;
    buf_appendf(&b, "retry budget spent: %lld failed attempt%s in %s; last: %s",
                (long long)attempts, attempts == 1 ? "" : "s", d, last_answer ? last_answer : "-");
    return buf_detach(&b);
}

void repl_headers_remove(http_headers *h, const char *name)
{
    size_t nl = strlen(name), j = 0;
    for (size_t i = 0; i < h->len; i++) {
        if (util_ieq(h->v[i].name, strlen(h->v[i].name), name) && strlen(h->v[i].name) == nl) {
            http_header_clear(&h->v[i]);
        } else {
            h->v[j++] = h->v[i];
        }
    }
    h->len = j;
}

static void headers_set(http_headers *h, const char *name, const char *value)
{
    repl_headers_remove(h, name);
    http_headers_add(h, name, strlen(name), value, strlen(value));
}

int repl_apply_headers(const repl_msg *m, char *const *set_headers, http_headers *out)
{
    if (m->headers && repl_msg_headers(m, out) != 0)
        return -1;
    if (m->content_type && *m->content_type && !http_headers_get(out, "Content-Type"))
        http_headers_add(out, "Content-Type", 12, m->content_type, strlen(m->content_type));
    headers_set(out, "Idempotency-Key", m->id);
    headers_set(out, "X-Restspy-Replicated-From", m->origin ? m->origin : "");
    for (size_t i = 0; set_headers && set_headers[i]; i++) {
        const char *n, *v;
        size_t nl, vl;
        if (httpmsg_header_line(set_headers[i], &n, &nl, &v, &vl) != 0)
            continue; /* config.c has checked the form already */
        char *name = xstrndup(n, nl);
        repl_headers_remove(out, name);
        http_headers_add(out, name, nl, v, vl);
        free(name);
    }
    return 0;
}

char *repl_dead_reason(int status, const buf *body)
{
    buf b = BUF_INIT;
    buf_appendf(&b, "upstream answered %d", status);
    size_t n = body && body->len < REASON_EXCERPT ? body->len : REASON_EXCERPT;
    if (body && n) {
        buf_append_str(&b, ": ");
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)body->data[i];
            buf_append_char(&b, c < 0x20 || c == 0x7f ? ' ' : (char)c);
        }
        if (body->len > n)
            buf_append_str(&b, "...");
    }
    return buf_detach(&b);
}
