/* fuzz_redact: redaction over arbitrary bytes. Byte 0 picks the entry
 * point: JSON, form, query, path parameters, multipart (the boundary is
 * the first line), or a whole record whose Content-Type (and response
 * Content-Encoding) is the first line, decoded then redacted as the proxy
 * does. Redaction rewrites untrusted bodies byte by byte, so this looks for
 * memory errors and undefined behaviour. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "capture/redact.h"
#include "base/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *fields[] = {"password", "token", "api_key", NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned which = data[0] % 6;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    const char *nl = memchr(in, '\n', n);
    size_t first = nl ? (size_t)(nl - in) : n;
    buf b = BUF_INIT;
    switch (which) {
    case 0:
        buf_append(&b, in, n);
        redact_json(fields, &b);
        break;
    case 1:
        buf_append(&b, in, n);
        redact_form(fields, &b);
        break;
    case 2: {
        char *q = xstrndup(in, n);
        redact_query(fields, &q);
        free(q);
        break;
    }
    case 3: {
        char *p = xstrndup(in, n);
        redact_path(fields, &p);
        free(p);
        break;
    }
    case 4: {
        char *boundary = xstrndup(in, first);
        if (nl)
            buf_append(&b, nl + 1, n - first - 1);
        redact_multipart(fields, boundary, &b);
        free(boundary);
        break;
    }
    default: {
        config c = {0};
        c.redact = true;
        c.redact_fields = fields;
        record *r = record_new();
        http_headers_add(&r->req_headers, "Content-Type", 12, in, first);
        if (nl)
            buf_append(&r->req_body, nl + 1, n - first - 1);
        http_headers_add(&r->resp_headers, "Content-Encoding", 16, in, first);
        buf_append(&r->resp_body, in, n);
        r->path = xstrndup(in, first);
        record_decode_bodies(r, 4096, 4096, false);
        redact_record(&c, r);
        record_free(r);
        break;
    }
    }
    buf_free(&b);
    return 0;
}
