/* console: the web console's static files (console/ in the source tree:
 * HTML, CSS and ES modules), compiled into the binary by
 * scripts/embed-console, and how the admin listener serves them.
 *
 * Owns nothing at run time: the files are constant arrays. Promises: "/"
 * is index.html and "/console/NAME" the file NAME, nothing else (no
 * directories, no "..", no other name reaches a file); every file has the
 * Content-Type of its extension and is served with the headers of
 * console_headers: a Content-Security-Policy that allows only the
 * console's own scripts and styles (none inline) and connections to this
 * listener, nosniff, no referrer. The files hold no captured data: the
 * page reads it from the admin API with the token (served without it). */
#ifndef RESTSPY_CONSOLE_H
#define RESTSPY_CONSOLE_H

#include <stddef.h>

#include "base/buf.h"

typedef struct console_file {
    const char *name; /* "index.html", "app.js", ... */
    const char *type; /* its Content-Type */
    const unsigned char *data;
    size_t len;
} console_file;

/* The embedded files, sorted by name (generated: console_files.c). */
extern const console_file console_files[];
extern const size_t console_nfiles;

/* The file a request path (without its query, length len, not
 * NUL-terminated) names: "/" is index.html, "/console/NAME" is NAME.
 * NULL for anything else. */
const console_file *console_find(const char *path, size_t len);

/* Appends the header lines (each ending in CRLF) every console file is
 * served with: Content-Security-Policy, X-Content-Type-Options,
 * Referrer-Policy, Cache-Control and X-Frame-Options. */
void console_headers(buf *out);

#endif
