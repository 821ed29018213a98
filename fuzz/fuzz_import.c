/* fuzz_import: what `restspy import` and `replay --from` read from files a
 * user was given: HAR (byte 0 even) or JSON lines (odd), through the same
 * readers as the CLI, from a memory file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "formats/har.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int fd = memfd_create("fuzz", 0);
    if (fd < 0)
        abort();
    if (size > 1 && write(fd, data + 1, size - 1) != (ssize_t)(size - 1))
        abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    record **v = NULL;
    size_t n = 0;
    char err[256];
    /* Byte 0: JSON lines (odd) or HAR, keeping a browser's cache hits
     * (bit 1) or not. */
    int rc = data[0] % 2 ? jsonl_read(path, &v, &n, err, sizeof err)
                         : har_read(path, data[0] & 2, &v, &n, NULL, err, sizeof err);
    if (rc == 0)
        records_free(v, n);
    close(fd);
    return 0;
}
