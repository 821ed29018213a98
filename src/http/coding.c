#include "http/coding.h"

#include <assert.h>
#include <brotli/decode.h>
#include <brotli/encode.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/util.h"

/* Output is produced in pieces of this size, so that each stage of a
 * stacked coding hands its output on at once and the last one stops the
 * moment the cap is reached. */
#define PIECE (8 * 1024)

int coding_parse(const char *value, coding_kind out[CODING_MAX_LAYERS], char *err, size_t errlen)
{
    int n = 0;
    const char *p = value ? value : "";
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        size_t len = strcspn(p, " \t,");
        coding_kind k;
        if (util_ieq(p, len, "identity")) {
            p += len;
            continue;
        }
        if (util_ieq(p, len, "gzip") || util_ieq(p, len, "x-gzip"))
            k = CODING_GZIP;
        else if (util_ieq(p, len, "deflate"))
            k = CODING_DEFLATE;
        else if (util_ieq(p, len, "br"))
            k = CODING_BR;
        else {
            if (err)
                snprintf(err, errlen, "unsupported content coding '%.*s'",
                         (int)(len > 40 ? 40 : len), p);
            return -1;
        }
        if (n == CODING_MAX_LAYERS) {
            if (err)
                snprintf(err, errlen, "more than %d content codings", CODING_MAX_LAYERS);
            return -1;
        }
        out[n++] = k;
        p += len;
    }
    return n;
}

/* ---- decoding ---- */

typedef struct stage {
    coding_kind kind;
    bool started; /* zlib: the stream is initialized (deflate waits for 2 bytes) */
    bool ended;   /* the coding's own end marker was seen */
    unsigned char head[2];
    size_t headlen; /* deflate: bytes held to tell zlib from raw deflate */
    z_stream z;
    BrotliDecoderState *br;
    unsigned char piece[PIECE];
} stage;

struct coding_decoder {
    int n; /* st[0] undoes the last coding applied: it sees the wire bytes */
    buf *out;
    size_t cap;
    bool fed; /* some input came: an empty body is not a cut stream */
    coding_status status;
    char error[160];
    stage st[]; /* n of them: a decoder is allocated per encoded body */
};

static const char *kind_name(coding_kind k)
{
    return k == CODING_GZIP ? "gzip" : k == CODING_DEFLATE ? "deflate" : "br";
}

static coding_status fail(coding_decoder *d, const stage *s, const char *why)
{
    if (d->status != CODING_ERROR)
        snprintf(d->error, sizeof d->error, "%s: %s", kind_name(s->kind), why);
    d->status = CODING_ERROR;
    return d->status;
}

static coding_status stage_feed(coding_decoder *d, int i, const unsigned char *in, size_t len);

/* Hands n bytes of stage i's output to the next stage, or to out. */
static coding_status emit(coding_decoder *d, int i, const unsigned char *p, size_t n)
{
    if (n == 0)
        return d->status;
    if (i + 1 < d->n)
        return stage_feed(d, i + 1, p, n);
    size_t room = d->cap - d->out->len;
    if (n >= room) {
        buf_append(d->out, p, room);
        d->status = CODING_FULL;
        return d->status;
    }
    buf_append(d->out, p, n);
    return d->status;
}

/* Starts zlib for stage s: gzip, zlib-wrapped deflate, or raw deflate (some
 * servers send RFC 1951 data as "deflate"; browsers accept both). */
static int zlib_start(stage *s, bool raw)
{
    int bits = s->kind == CODING_GZIP ? 15 + 16 : raw ? -15 : 15;
    memset(&s->z, 0, sizeof s->z);
    if (inflateInit2(&s->z, bits) != Z_OK)
        return -1;
    s->started = true;
    return 0;
}

static coding_status zlib_feed(coding_decoder *d, int i, const unsigned char *in, size_t len)
{
    stage *s = &d->st[i];
    s->z.next_in = (unsigned char *)in;
    s->z.avail_in = (uInt)len;
    while (d->status == CODING_OK) {
        if (s->ended) {
            if (s->z.avail_in == 0)
                break;
            /* Another gzip member may follow (RFC 1952 allows several). */
            if (s->kind != CODING_GZIP || inflateReset(&s->z) != Z_OK)
                return fail(d, s, "data after the end of the stream");
            s->ended = false;
        }
        s->z.next_out = s->piece;
        s->z.avail_out = PIECE;
        int rc = inflate(&s->z, Z_NO_FLUSH);
        size_t made = PIECE - s->z.avail_out;
        if (rc == Z_STREAM_END)
            s->ended = true;
        else if (rc == Z_BUF_ERROR && made == 0)
            break; /* needs more input */
        else if (rc != Z_OK)
            return fail(d, s, s->z.msg ? s->z.msg : "invalid data");
        if (emit(d, i, s->piece, made) != CODING_OK)
            break;
        if (s->z.avail_in == 0 && s->z.avail_out != 0 && !s->ended)
            break;
    }
    return d->status;
}

/* Deflate: the first two bytes tell a zlib header (RFC 1950: CM 8 and a
 * multiple of 31) from raw deflate data. */
static coding_status deflate_feed(coding_decoder *d, int i, const unsigned char *in, size_t len)
{
    stage *s = &d->st[i];
    if (s->started)
        return zlib_feed(d, i, in, len);
    while (s->headlen < 2 && len) {
        s->head[s->headlen++] = *in++;
        len--;
    }
    if (s->headlen < 2)
        return d->status;
    bool zlib_hdr = (s->head[0] & 0x0f) == 8 && ((s->head[0] << 8) | s->head[1]) % 31 == 0;
    if (zlib_start(s, !zlib_hdr) < 0)
        return fail(d, s, "out of memory");
    unsigned char head[2] = {s->head[0], s->head[1]};
    if (zlib_feed(d, i, head, 2) != CODING_OK)
        return d->status;
    return zlib_feed(d, i, in, len);
}

static coding_status br_feed(coding_decoder *d, int i, const unsigned char *in, size_t len)
{
    stage *s = &d->st[i];
    const uint8_t *next_in = in;
    size_t avail_in = len;
    while (d->status == CODING_OK) {
        if (s->ended) {
            if (avail_in)
                return fail(d, s, "data after the end of the stream");
            break;
        }
        uint8_t *next_out = s->piece;
        size_t avail_out = PIECE;
        BrotliDecoderResult rc =
            BrotliDecoderDecompressStream(s->br, &avail_in, &next_in, &avail_out, &next_out, NULL);
        size_t made = PIECE - avail_out;
        if (rc == BROTLI_DECODER_RESULT_ERROR)
            return fail(d, s, BrotliDecoderErrorString(BrotliDecoderGetErrorCode(s->br)));
        if (rc == BROTLI_DECODER_RESULT_SUCCESS)
            s->ended = true;
        if (emit(d, i, s->piece, made) != CODING_OK)
            break;
        if (rc == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT)
            break;
    }
    return d->status;
}

static coding_status stage_feed(coding_decoder *d, int i, const unsigned char *in, size_t len)
{
    if (d->status != CODING_OK || len == 0)
        return d->status;
    switch (d->st[i].kind) {
    case CODING_GZIP:
        return zlib_feed(d, i, in, len);
    case CODING_DEFLATE:
        return deflate_feed(d, i, in, len);
    case CODING_BR:
        return br_feed(d, i, in, len);
    }
    return fail(d, &d->st[i], "unknown coding");
}

coding_decoder *coding_decoder_new(const char *content_encoding, buf *out, size_t cap, char *err,
                                   size_t errlen)
{
    assert(out);
    coding_kind k[CODING_MAX_LAYERS];
    int n = coding_parse(content_encoding, k, err, errlen);
    if (n <= 0) {
        if (n == 0 && err)
            snprintf(err, errlen, "no content coding to undo");
        return NULL;
    }
    coding_decoder *d = xcalloc(1, sizeof *d + (size_t)n * sizeof(stage));
    d->n = n;
    d->out = out;
    d->cap = cap;
    for (int i = 0; i < n; i++) {
        stage *s = &d->st[i];
        s->kind = k[n - 1 - i]; /* undo the last applied first */
        if (s->kind == CODING_GZIP && zlib_start(s, false) < 0)
            goto oom;
        if (s->kind == CODING_BR && !(s->br = BrotliDecoderCreateInstance(NULL, NULL, NULL)))
            goto oom;
    }
    if (d->out->len >= cap)
        d->status = CODING_FULL;
    return d;
oom:
    if (err)
        snprintf(err, errlen, "out of memory");
    coding_decoder_free(d);
    return NULL;
}

coding_status coding_decoder_feed(coding_decoder *d, const char *in, size_t len)
{
    if (len)
        d->fed = true;
    return stage_feed(d, 0, (const unsigned char *)in, len);
}

coding_status coding_decoder_finish(coding_decoder *d)
{
    if (d->status != CODING_OK || !d->fed)
        return d->status;
    for (int i = 0; i < d->n; i++)
        if (!d->st[i].ended)
            return fail(d, &d->st[i], "the stream ends before its end marker");
    return d->status;
}

const char *coding_decoder_error(const coding_decoder *d)
{
    return d->status == CODING_ERROR ? d->error : NULL;
}

void coding_decoder_free(coding_decoder *d)
{
    if (!d)
        return;
    for (int i = 0; i < d->n; i++) {
        if (d->st[i].started)
            inflateEnd(&d->st[i].z);
        if (d->st[i].br)
            BrotliDecoderDestroyInstance(d->st[i].br);
    }
    free(d);
}

coding_status coding_decode(const char *content_encoding, const char *in, size_t len, size_t cap,
                            buf *out, char *err, size_t errlen)
{
    coding_decoder *d = coding_decoder_new(content_encoding, out, cap, err, errlen);
    if (!d)
        return CODING_ERROR;
    coding_decoder_feed(d, in, len);
    coding_status st = coding_decoder_finish(d);
    if (st == CODING_ERROR && err)
        snprintf(err, errlen, "%s", d->error);
    coding_decoder_free(d);
    return st;
}

/* ---- encoding ---- */

static int zlib_encode(coding_kind k, const buf *in, buf *out)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    int bits = k == CODING_GZIP ? 15 + 16 : 15;
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    size_t bound = deflateBound(&z, (uLong)in->len);
    buf_reserve(out, bound);
    z.next_in = (unsigned char *)in->data;
    z.avail_in = (uInt)in->len;
    z.next_out = (unsigned char *)out->data + out->len;
    z.avail_out = (uInt)bound;
    int rc = deflate(&z, Z_FINISH);
    if (rc == Z_STREAM_END)
        out->len += bound - z.avail_out;
    deflateEnd(&z);
    if (out->data)
        out->data[out->len] = '\0';
    return rc == Z_STREAM_END ? 0 : -1;
}

static int br_encode(const buf *in, buf *out)
{
    size_t bound = BrotliEncoderMaxCompressedSize(in->len);
    if (bound == 0)
        bound = in->len + 1024;
    buf_reserve(out, bound);
    size_t made = bound;
    if (!BrotliEncoderCompress(5, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_GENERIC, in->len,
                               (const uint8_t *)in->data, &made, (uint8_t *)out->data + out->len))
        return -1;
    out->len += made;
    out->data[out->len] = '\0';
    return 0;
}

int coding_encode(const char *content_encoding, const char *in, size_t len, buf *out, char *err,
                  size_t errlen)
{
    coding_kind k[CODING_MAX_LAYERS];
    int n = coding_parse(content_encoding, k, err, errlen);
    if (n < 0)
        return -1;
    /* Each layer encodes the previous one's output; the first reads in. */
    buf cur = BUF_INIT;
    buf_append(&cur, in, len);
    for (int i = 0; i < n; i++) {
        buf next = BUF_INIT;
        int rc = k[i] == CODING_BR ? br_encode(&cur, &next) : zlib_encode(k[i], &cur, &next);
        buf_free(&cur);
        cur = next;
        if (rc < 0) {
            buf_free(&cur);
            if (err)
                snprintf(err, errlen, "%s: cannot encode", kind_name(k[i]));
            return -1;
        }
    }
    buf_append(out, cur.data, cur.len);
    buf_free(&cur);
    return 0;
}
