#include "base/iostream.h"

#include <string.h>

#include "base/util.h"

typedef struct io_req {
    uv_write_t req;
    io_done_cb done;
    size_t len;
    char data[]; /* the unwritten tail, owned by this request */
} io_req;

static void on_written(uv_write_t *w, int status)
{
    io_req *r = (io_req *)w;
    io_done_cb done = r->done;
    uv_stream_t *s = w->handle;
    free(r);
    if (done)
        done(s, status);
}

int io_write(uv_stream_t *s, const uv_buf_t *bufs, unsigned n, io_done_cb done)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    if (total == 0)
        return 0;
    size_t sent = 0;
    int rc = uv_try_write(s, bufs, n);
    if (rc >= 0)
        sent = (size_t)rc;
    else if (rc != UV_EAGAIN && rc != UV_ENOSYS)
        return rc;
    if (sent == total)
        return 0;
    io_req *r = xmalloc(sizeof *r + total - sent);
    r->done = done;
    r->len = total - sent;
    size_t off = 0, skip = sent;
    for (unsigned i = 0; i < n; i++) {
        size_t l = bufs[i].len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        memcpy(r->data + off, bufs[i].base + skip, l - skip);
        off += l - skip;
        skip = 0;
    }
    uv_buf_t b = uv_buf_init(r->data, (unsigned)r->len);
    rc = uv_write(&r->req, s, &b, 1, on_written);
    if (rc < 0) {
        free(r);
        return rc;
    }
    return 0;
}

size_t io_queued(const uv_stream_t *s)
{
    return s->write_queue_size;
}

bool io_cork_take(io_cork *k, const uv_buf_t *bufs, unsigned n)
{
    if (!k->on)
        return false;
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    if (k->b.len + total > IO_CORK_MAX)
        return false;
    for (unsigned i = 0; i < n; i++)
        buf_append(&k->b, bufs[i].base, bufs[i].len);
    return true;
}

unsigned io_cork_gather(const io_cork *k, const uv_buf_t *bufs, unsigned n, uv_buf_t *out)
{
    unsigned m = 0;
    if (k->b.len)
        out[m++] = uv_buf_init(k->b.data, (unsigned)k->b.len);
    for (unsigned i = 0; i < n; i++)
        out[m++] = bufs[i];
    return m;
}

void io_cork_clear(io_cork *k)
{
    buf_reset(&k->b);
}

void io_cork_free(io_cork *k)
{
    buf_free(&k->b);
    k->on = false;
}
