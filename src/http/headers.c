#include "http/headers.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

struct http_hblock {
    struct http_hblock *next;
    size_t used, cap;
    char data[];
};

#define HBLOCK_SIZE 1024

/* n bytes of h's string storage. */
static char *hstore(http_headers *h, size_t n)
{
    struct http_hblock *b = h->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > HBLOCK_SIZE ? n : HBLOCK_SIZE;
        b = xmalloc(sizeof *b + cap);
        b->used = 0;
        b->cap = cap;
        b->next = h->blocks;
        h->blocks = b;
    }
    char *p = b->data + b->used;
    b->used += n;
    return p;
}

size_t http_headers_mem(const http_headers *h)
{
    size_t n = h->cap * sizeof *h->v;
    for (const struct http_hblock *b = h->blocks; b; b = b->next)
        n += sizeof *b + b->cap;
    return n;
}

static void hblocks_free(http_headers *h)
{
    struct http_hblock *b = h->blocks;
    while (b) {
        struct http_hblock *next = b->next;
        free(b);
        b = next;
    }
    h->blocks = NULL;
}

/* "name\0value\0" in h's storage. */
static void set_entry(http_headers *h, http_header *e, const char *name, size_t nlen,
                      const char *value, size_t vlen)
{
    char *p = hstore(h, nlen + vlen + 2);
    memcpy(p, name, nlen);
    p[nlen] = '\0';
    memcpy(p + nlen + 1, value, vlen);
    p[nlen + 1 + vlen] = '\0';
    e->name = p;
    e->value = p + nlen + 1;
}

void http_headers_add(http_headers *h, const char *name, size_t nlen, const char *value,
                      size_t vlen)
{
    if (h->len == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 16;
        h->v = xrealloc(h->v, h->cap * sizeof *h->v);
    }
    set_entry(h, &h->v[h->len], name, nlen, value, vlen);
    h->len++;
}

void http_header_set_value(http_headers *h, size_t i, const char *value)
{
    http_header *e = &h->v[i];
    set_entry(h, e, e->name, strlen(e->name), value, strlen(value));
}

void http_header_clear(http_header *e)
{
    e->name = e->value = NULL;
}

void http_headers_reset(http_headers *h)
{
    hblocks_free(h);
    h->len = 0;
}

const char *http_headers_get(const http_headers *h, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < h->len; i++)
        if (util_ieq(name, n, h->v[i].name))
            return h->v[i].value;
    return NULL;
}

size_t http_headers_count(const http_headers *h, const char *name)
{
    size_t n = strlen(name), count = 0;
    for (size_t i = 0; i < h->len; i++)
        count += util_ieq(name, n, h->v[i].name);
    return count;
}

void http_headers_free(http_headers *h)
{
    hblocks_free(h);
    free(h->v);
    h->v = NULL;
    h->len = h->cap = 0;
}

/* ---- JSON ---- */

void http_headers_to_json(const http_headers *h, buf *out)
{
    buf_append_char(out, '[');
    for (size_t i = 0; i < h->len; i++) {
        if (i)
            buf_append_char(out, ',');
        buf_append_char(out, '[');
        buf_append_json_str(out, h->v[i].name, strlen(h->v[i].name));
        buf_append_char(out, ',');
        buf_append_json_str(out, h->v[i].value, strlen(h->v[i].value));
        buf_append_char(out, ']');
    }
    buf_append_char(out, ']');
}

int http_headers_from_json(http_headers *h, const char *json, size_t len)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_ALLOW_NUL, &jerr);
    if (!root)
        return -1;
    int rc = -1;
    if (!json_is_array(root))
        goto out;
    /* Validate everything first so a bad entry leaves h untouched. */
    size_t n = json_array_size(root);
    for (size_t i = 0; i < n; i++) {
        json_t *pair = json_array_get(root, i);
        if (!json_is_array(pair) || json_array_size(pair) != 2 ||
            !json_is_string(json_array_get(pair, 0)) || !json_is_string(json_array_get(pair, 1)))
            goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *pair = json_array_get(root, i);
        json_t *k = json_array_get(pair, 0), *v = json_array_get(pair, 1);
        http_headers_add(h, json_string_value(k), json_string_length(k), json_string_value(v),
                         json_string_length(v));
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}
