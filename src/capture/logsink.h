/* logsink: one line per request, JSON lines or "combined", to stdout or a file.
 *
 * Owns the output (fd) and a background writer thread. Promises: lines from
 * any number of threads never interleave; logsink_write formats into a
 * per-call buffer and appends to a shared pending buffer under a short lock,
 * so an event loop never waits on the disk (the writer thread does the
 * write(2) calls, batching whatever has accumulated). If the pending data
 * grows past a bound (the disk is stuck) the caller waits: lines are not
 * dropped. A file target is opened O_APPEND and reopened by logsink_reopen
 * (SIGHUP, for logrotate). */
#ifndef RESTSPY_LOGSINK_H
#define RESTSPY_LOGSINK_H

#include <stdint.h>

#include "capture/record.h"

typedef struct logsink logsink;

/* target: "-" (stdout), "off", or a file path. format: LOG_FORMAT_*.
 * json_flags: RECORD_JSON_* used for JSON lines. NULL with err on failure
 * (e.g. the file cannot be opened). "off" gives a valid sink that drops. */
logsink *logsink_open(const char *target, int format, unsigned json_flags, char *err,
                      size_t errlen);

/* Whether lines currently carry the headers as JSON (JSON lines with
 * RECORD_JSON_HEADERS): then the caller may encode them once for the line
 * and the store (record_cache_headers_json). */
bool logsink_wants_headers_json(const logsink *s);

/* Formats r in the current format and queues the line. Thread-safe. */
void logsink_write(logsink *s, const record *r);

/* Switch format / JSON flags at run time (admin PUT /flags). Thread-safe. */
void logsink_set_format(logsink *s, int format);
int logsink_format(const logsink *s);
void logsink_set_json_flags(logsink *s, unsigned json_flags);

/* Reopens the file target (no-op for stdout/off). 0 or -1 with err; on
 * failure the old file stays in use. Thread-safe. */
int logsink_reopen(logsink *s, char *err, size_t errlen);

/* Lines written so far, and lines that failed to be written (write errors). */
uint64_t logsink_lines(const logsink *s);
uint64_t logsink_errors(const logsink *s);

/* Writes everything pending, stops the thread, closes the file. NULL is fine. */
void logsink_close(logsink *s);

#endif
