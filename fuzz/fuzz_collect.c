/* fuzz_collect: what a local process sends `restspy collect` on its socket
 * (docs/collect-protocol.md): the bytes as a stream of frames, through the
 * same codec as the daemon (frame_take with a small collect_max_frame),
 * each HELLO through the version negotiation and each PAIR through the
 * PAIR parser, as conn.c does. Byte 0 odd: the rest is one PAIR body, fed
 * to the parser directly (most inputs would not get past a header
 * otherwise). Bit 1 of byte 0 picks the protocol version (1, or 2 with its
 * header blocks, ACK flag and FLUSH frames). Looks for memory errors, leaks
 * and undefined behaviour. */
#include <stdint.h>
#include <stdlib.h>

#include "base/buf.h"
#include "collect/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one_pair(const char *body, size_t len, uint8_t version)
{
    char err[256];
    frame_pair p;
    if (frame_pair_decode(body, len, version, &p, err, sizeof err) == 0)
        frame_pair_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    uint8_t version = data[0] & 2 ? 2 : 1;
    if (data[0] % 2) {
        one_pair(rest, n, version);
        return 0;
    }
    buf in = BUF_INIT;
    buf_append(&in, rest, n);
    size_t off = 0;
    for (;;) {
        frame_header h;
        const char *body, *why;
        if (frame_take(&in, &off, version, 64 * 1024, &h, &body, &why) != FRAME_OK)
            break;
        if (h.type == FRAME_HELLO)
            (void)frame_hello_version(body, h.length, &why);
        else if (h.type == FRAME_PAIR)
            one_pair(body, h.length, version);
    }
    buf_free(&in);
    return 0;
}
