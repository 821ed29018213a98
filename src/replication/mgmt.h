/* mgmt: a small client of the RabbitMQ management HTTP API, for the
 * commands that read or change a site's broker through it (`restspy
 * federate`, `restspy replication status --mgmt`).
 *
 * Owns the parsed --mgmt URL (user and password decoded, kept out of every
 * line it prints) and one HTTP connection. Promises: every failure returns
 * -1 with g->err set to ONE line (without a command name: the caller tells
 * it under its own), with the broker's status and reason and, for the usual
 * causes (bad credentials, a plugin not enabled, no such vhost, a
 * declaration that differs from an existing one), what to do. Nothing is
 * printed but what mgmt_print_curl prints. */
#ifndef RESTSPY_MGMT_H
#define RESTSPY_MGMT_H

#include <jansson.h>
#include <stdbool.h>

#include "base/buf.h"
#include "http/hclient.h"

typedef struct mgmt {
    const char *vhost;  /* not owned */
    char *vh;           /* vhost percent-encoded for paths; owned */
    char *base;         /* http[s]://host:port, no credentials; owned */
    char *user;         /* decoded; NULL when the URL has none; owned */
    char *pass;         /* decoded; owned */
    char *auth_url;     /* http[s]://user:pass@host:port for hclient; owned */
    hclient_tls tls;    /* for an https URL: the caller's, set after mgmt_init */
    char *prefix;       /* path before /api ("" or "/rabbitmq"); owned */
    hclient_sync *http; /* NULL until mgmt_connect */
    char *err;          /* the latest failure (see above); owned; NULL before any */
} mgmt;

/* Parses url (http[s]://[user:pass@]host:port[/prefix][/api]) for vhost (which
 * must outlive g). 0, or -1 with g->err (a usage error). g is zeroed first;
 * mgmt_free it either way. */
int mgmt_init(mgmt *g, const char *url, const char *vhost);

/* Prepares the HTTP client (no request yet). 0, or -1 with g->err. */
int mgmt_connect(mgmt *g);

void mgmt_free(mgmt *g);

/* Sets g->err (replacing it) to the failure fmt says, ONE line: for a
 * caller that finds an answer of the API unusable. Always -1. */
int mgmt_fail(mgmt *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "<prefix>/api/<kind>/<vhost>[/<name>]", name percent-encoded. Caller
 * frees. */
char *mgmt_path(const mgmt *g, const char *kind, const char *name);

/* Appends s percent-encoded as one path segment (everything but RFC 3986
 * unreserved characters: "/" becomes "%2F"). */
void mgmt_append_pct(buf *b, const char *s);

/* Sends one request (body: JSON or NULL). A 2xx answer: 0, with *out
 * filled when out is given (caller frees it with hclient_response_free).
 * A 404 when missing_ok: 1. Anything else: -1 with g->err. */
int mgmt_send(mgmt *g, const char *method, const char *path, const char *body, bool missing_ok,
              hclient_response *out);

/* GET path and parse the answer as JSON: 0 with *out (caller decrefs), 1
 * when missing_ok and the answer is 404 (*out NULL), -1 with g->err. */
int mgmt_get_json(mgmt *g, const char *path, bool missing_ok, json_t **out);

/* Appends s quoted for a POSIX shell ('...' with each ' as '\''). */
void mgmt_append_sq(buf *b, const char *s);

/* Prints (stdout) the curl command that makes the same request, with the
 * credentials of the --mgmt URL. */
void mgmt_print_curl(const mgmt *g, const char *method, const char *path, const char *body);

/* url with the password of its userinfo replaced by "***", for display.
 * Caller frees. */
char *mgmt_mask_url(const char *url);

#endif
