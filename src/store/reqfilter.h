/* reqfilter: which captured requests a reader wants, given as text: the
 * one filter implementation of the CLI (`requests`, `replay`, `export`:
 * --method, --status, ...) and of the admin API (?method=&status=...).
 *
 * Owns copies of the values it was given (store_query's pointers point
 * into them) and the id list. Promises: a value no request can have is
 * refused with why rather than matching nothing (a method that is not an
 * HTTP token, a path glob not starting with / or *, a status outside
 * 100-599, an origin other than local, replicated or imported, a node name
 * the node setting would refuse, a replication outcome other than
 * diverged, a date that does not exist); a
 * single-valued filter given twice is refused; ages ("10m") count from one
 * "now" taken at the first one. */
#ifndef RESTSPY_REQFILTER_H
#define RESTSPY_REQFILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "capture/record.h"
#include "store/store.h"

typedef struct reqfilter {
    store_query q; /* q.limit is the limit (the caller sets its default first) */
    char **ids;    /* ids, or starts or ends of ids (owned) */
    size_t nids;
    int64_t now_us;   /* "now" for ages, taken at the first one */
    char *since_text; /* since and until as given, for errors */
    char *until_text;
    char *owned[5]; /* copies behind q's method, path_glob, origin, node */
    unsigned seen;  /* the single-valued filters set so far (a bit each) */
} reqfilter;

/* The filter names reqfilter_set takes, NULL-terminated: method, path,
 * status, since, until, origin, node, replication (only "diverged": sets
 * q.diverged), limit, id (id may repeat). */
extern const char *const reqfilter_names[];

/* Sets the filter name to value (copied). label is how the caller names it
 * in errors ("--status" on the command line, "status" in a URL). 1 set, 0
 * name is not a filter, -1 with err: "bad value for LABEL: 'V' (expected
 * ...)" or "LABEL given twice (it takes one value)". */
int reqfilter_set(reqfilter *f, const char *name, const char *label, const char *value, char *err,
                  size_t errlen);

/* What no single filter can check: since not before until. 0, or -1 with
 * err ("--since X is not before --until Y: no request can match", with the
 * labels given as since_label and until_label). */
int reqfilter_check(const reqfilter *f, const char *since_label, const char *until_label, char *err,
                    size_t errlen);

/* True when r passes f and, when ids were given, is one of them (an id, or
 * a start or end of one, any case). The limit is not applied. */
bool reqfilter_match(const reqfilter *f, const record *r);

/* For requests read from files: keeps those of v[0..*n) that f selects
 * (freeing the others), in recorded order (stable on started_at), the
 * newest q.limit of them when there is a limit. */
void reqfilter_apply(const reqfilter *f, record **v, size_t *n);

/* Calls fn for each request of s that f selects, oldest first; with a
 * limit, only the newest q.limit of them (still oldest first). fn must not
 * keep r; returning non-zero stops. Ids are looked up one by one
 * (store_get). 0; -1 with err when the filter is at fault (an id too
 * short or ambiguous, "no request with id ID"); STORE_FAILED with err when
 * the store is. */
int reqfilter_each(store *s, const reqfilter *f, int (*fn)(const record *r, void *ud), void *ud,
                   char *err, size_t errlen);

void reqfilter_free(reqfilter *f);

#endif
