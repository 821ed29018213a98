/* redact: removes secrets from a record before any sink sees it.
 *
 * Owns nothing. Promises: header values whose names are in
 * config.redact_headers, and JSON or form (application/x-www-form-urlencoded)
 * fields, and query parameters, whose names are in config.redact_fields
 * (case-insensitive, at any depth of JSON) have their values replaced by
 * "[redacted]". It works on the captured copy only: what is forwarded is never
 * touched. JSON bodies are rewritten in place token by token, so formatting
 * is kept and a body cut at the capture cap is still redacted up to its end.
 * Bodies are recognized by a Content-Type naming JSON, a form or multipart
 * (whose parts are redacted one by one, listed names hidden whole); else by
 * content: a body that starts with '{' or '[' is redacted as JSON whatever
 * its declared type, and an undeclared or text/plain one made of name=value
 * pairs as a form. Path matrix parameters (";token=...") count as fields. */
#ifndef RESTSPY_REDACT_H
#define RESTSPY_REDACT_H

#include <stdbool.h>

#include "base/buf.h"
#include "capture/config.h"
#include "capture/record.h"

#define REDACTED "[redacted]"

/* True when redact_record would look into bodies (redaction on and some
 * fields listed): a body that cannot be read (an undecodable content
 * coding) must then not be stored. */
bool redact_bodies(const config *c);

/* Redacts r in place if c->redact is on. */
void redact_record(const config *c, record *r);

/* The pieces, exposed for tests and for replay. Each returns true when it
 * changed something. fields is NULL-terminated, lower case. */
bool redact_headers(char *const *names, http_headers *h);
bool redact_json(char *const *fields, buf *body);
bool redact_form(char *const *fields, buf *body);
/* query: a heap string (freed and replaced when changed). */
bool redact_query(char *const *fields, char **query);
/* Matrix parameters of a path ("/s;token=abc/x"); path as query. */
bool redact_path(char *const *fields, char **path);
/* A multipart body with this boundary: listed parts hidden whole, the
 * others redacted as JSON or form by their own Content-Type or content. */
bool redact_multipart(char *const *fields, const char *boundary, buf *body);

#endif
