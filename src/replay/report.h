/* report: what a replay found, for people and for CI systems.
 *
 * Owns the collected outcomes of a run. Promises: the readable summary gives
 * counts first (matched, mismatched, errors, not replayable, partly
 * compared: never counted as matched), then each
 * mismatching request with its method, path and differences, and how many
 * recorded fields were not compared because restspy redacted them at
 * capture (counted apart, in the summary and the JSON); the JSON
 * report holds every outcome; the JUnit XML has one testcase per request
 * (failure for a mismatch, error for an error, skipped for not replayable),
 * with counts that agree with the summary, and is well-formed XML whatever
 * bytes the answers contained. Every value replay --correlate substituted
 * is listed with its request in all three. */
#ifndef RESTSPY_REPORT_H
#define RESTSPY_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "compare/compare.h"
#include "replay/replay.h"
#include "capture/record.h"

typedef enum {
    OUTCOME_MATCH,
    OUTCOME_MISMATCH,
    OUTCOME_ERROR,        /* no answer (connection refused, timeout, ...) */
    OUTCOME_UNREPLAYABLE, /* truncated or redacted: not sent */
    OUTCOME_SENT,         /* no recorded response to compare with */
    OUTCOME_PARTIAL,      /* no difference in what could be compared, but only
                             part of the body could be (recorded body cut at
                             capture or not stored): not a match */
} outcome_kind;

#define OUTCOME_LAST OUTCOME_PARTIAL

typedef struct report report;

report *report_new(const char *target);
void report_free(report *rp);

/* Adds one outcome. c: the case; res: the comparison (MATCH or MISMATCH:
 * its redacted count is kept; a MISMATCH's differences are copied);
 * detail: the error or reason text (ERROR/UNREPLAYABLE/PARTIAL); latency_us
 * or -1. */
void report_add(report *rp, outcome_kind k, const record *c, unsigned loop,
                const compare_result *res, const char *detail, int64_t latency_us);

/* Adds the outcome of one answer of replay_run: an error, sent without a
 * comparison (compare false, or nothing recorded), or the comparison of the
 * recorded response with the answer (co) as a match, a partial match or a
 * mismatch. The one place answers become outcomes (the CLI and the admin's
 * replay of one request). Returns the outcome. */
outcome_kind report_answer(report *rp, const compare_opts *co, bool compare,
                           const replay_answer *a);

/* Attaches the values replay --correlate substituted in the request of the
 * last report_add (copied): the summary lists them ("SUBSTITUTED ...",
 * at most max_listed requests), the JSON under "substitutions" (place,
 * recorded, replayed) and in counts, the JUnit XML on the test case's
 * <system-out>. report_answer does it for its answer. */
void report_add_subs(report *rp, const corr_sub *subs, size_t n);

void report_set_elapsed(report *rp, double seconds);

size_t report_count(const report *rp, outcome_kind k);

/* The readable summary (stdout); at most max_listed mismatches in detail. */
void report_summary(const report *rp, FILE *f, size_t max_listed);
int report_write_json(const report *rp, const char *path, char *err, size_t errlen);
/* The same JSON, appended to out. */
void report_json(const report *rp, buf *out);
int report_write_junit(const report *rp, const char *path, char *err, size_t errlen);

/* 0 nothing differed (everything matched, was partly compared without a
 * difference, or was only sent), 1 mismatches or unreplayable cases, 2
 * errors (could not get answers). */
int report_exit_code(const report *rp);

#endif
