/* console: the web console's embedded files; see console.h. */
#include "proxy/console.h"

#include <string.h>

#define CONSOLE_PREFIX "/console/"

/* What the page may do: its own scripts and styles (no inline ones, no
 * eval), images of its own and the blob:/data: URLs it makes for captured
 * images, fetches to this listener only; no plugins, no base, no forms, no
 * framing. A captured value that slipped into markup could run nothing. */
static const char csp[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const console_file *console_find(const char *path, size_t len)
{
    const char *name;
    size_t n;
    if (len == 1 && path[0] == '/') {
        name = "index.html";
        n = strlen(name);
    } else if (len > strlen(CONSOLE_PREFIX) &&
               strncmp(path, CONSOLE_PREFIX, strlen(CONSOLE_PREFIX)) == 0) {
        name = path + strlen(CONSOLE_PREFIX);
        n = len - strlen(CONSOLE_PREFIX);
    } else {
        return NULL;
    }
    /* An exact name of the table: a '/', "..", a percent-escape or a
     * different case never reach anything. */
    for (size_t i = 0; i < console_nfiles; i++) {
        const console_file *f = &console_files[i];
        if (strlen(f->name) == n && memcmp(f->name, name, n) == 0)
            return f;
    }
    return NULL;
}

void console_headers(buf *out)
{
    buf_appendf(out,
                "Content-Security-Policy: %s\r\n"
                "X-Content-Type-Options: nosniff\r\n"
                "Referrer-Policy: no-referrer\r\n"
                "X-Frame-Options: DENY\r\n"
                /* The files change only with the binary: revalidated each
                 * time, so a restarted proxy never serves a stale page. */
                "Cache-Control: no-cache\r\n",
                csp);
}
