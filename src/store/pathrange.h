/* pathrange: the range of paths a path glob can match, which every
 * backend's query reads through its path index: the glob's literal prefix
 * bounds it (glob_match compares bytes, so the range is in byte order: the
 * index must be too: SQLite's BINARY, PostgreSQL's "C" collation). The rows
 * in the range are then matched against the whole glob. */
#ifndef RESTSPY_STORE_PATHRANGE_H
#define RESTSPY_STORE_PATHRANGE_H

#include <stddef.h>

#include "base/glob.h"

/* The path range of a query: [lo, hi) (hi_len 0: no upper bound); lo_len 0
 * when the glob has no literal prefix (or none worth a range). */
typedef struct store_path_range {
    const char *lo;
    size_t lo_len;
    char hi[GLOB_MAX + 1];
    size_t hi_len;
} store_path_range;

void store_path_range_of(const char *glob, store_path_range *r);

#endif
