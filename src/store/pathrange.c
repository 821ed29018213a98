/* pathrange: a glob's literal prefix as a range of paths (see pathrange.h). */
#include "store/pathrange.h"

#include <string.h>

/* The length of glob's literal prefix: every path glob_match takes starts
 * with glob[0..it). */
static size_t glob_prefix(const char *glob)
{
    size_t lit = strcspn(glob, "*");
    /* glob_match's one move that skips a literal: a slash before a "**"
     * segment may stand for nothing ("/api/" + "**" matches "/api"). */
    if (lit > 0 && glob[lit - 1] == '/' && glob[lit] == '*' && glob[lit + 1] == '*' &&
        (glob[lit + 2] == '\0' || glob[lit + 2] == '/'))
        lit--;
    return lit;
}

/* The least byte string above every string starting with p[0..n), into
 * upper (n bytes at most): p less its trailing 0xff bytes, the last byte
 * left raised by one. Its length; 0 when p is all 0xff bytes (no bound). */
static size_t prefix_upper(const char *p, size_t n, char *upper)
{
    while (n > 0 && (unsigned char)p[n - 1] == 0xff)
        n--;
    memcpy(upper, p, n);
    if (n > 0)
        upper[n - 1] = (char)((unsigned char)p[n - 1] + 1);
    return n;
}

void store_path_range_of(const char *glob, store_path_range *r)
{
    r->lo = glob;
    r->lo_len = glob_prefix(glob);
    /* A glob longer than GLOB_MAX matches nothing anyway (glob_match). */
    if (r->lo_len > GLOB_MAX)
        r->lo_len = 0;
    r->hi_len = r->lo_len ? prefix_upper(glob, r->lo_len, r->hi) : 0;
}
