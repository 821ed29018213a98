/* fuzz_coding: content decoding of arbitrary bytes under every coding and
 * a few stacks of them, with a small cap: the decoder must stay within the
 * cap (a decompression bomb) and report damage instead of failing. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>

#include "http/coding.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const encs[] = {"gzip",          "deflate", "br",     "gzip, br",
                                       "deflate, gzip", "br, br",  "x-gzip", "identity, gzip"};
    if (size < 2)
        return 0;
    const char *enc = encs[data[0] % (sizeof encs / sizeof encs[0])];
    size_t cap = (size_t)data[1] * 64 + 1;
    buf out = BUF_INIT;
    char err[200];
    coding_status st =
        coding_decode(enc, (const char *)data + 2, size - 2, cap, &out, err, sizeof err);
    assert(out.len <= cap);
    assert(st != CODING_FULL || out.len == cap);
    buf_free(&out);
    return 0;
}
