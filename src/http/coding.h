/* coding: HTTP content codings (RFC 9110 §8.4): gzip, deflate and br, both
 * ways, on copies of bodies.
 *
 * Owns its decoder state and nothing else. restspy never changes what it
 * forwards: decoding is for the capture copy (so that redaction, `show`,
 * comparison and HAR see the real body), and encoding is for replaying a
 * decoded recording as it was sent. Promises: a decoder never produces more
 * than the cap its caller gives (a decompression bomb costs at most the cap
 * in memory and a bounded amount of work beyond it), never reads past the
 * input it is given, and reports a damaged stream as an error with a reason
 * instead of returning partial garbage as if it were complete.
 *
 * A Content-Encoding value may list several codings, in the order they were
 * applied ("gzip, br"): they are undone last first. "identity" is ignored.
 * Any other coding makes the whole value unsupported. */
#ifndef RESTSPY_CODING_H
#define RESTSPY_CODING_H

#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"

/* Most codings one Content-Encoding value may stack. */
#define CODING_MAX_LAYERS 4

typedef enum { CODING_GZIP = 1, CODING_DEFLATE, CODING_BR } coding_kind;

/* Parses a Content-Encoding value into the codings applied, first applied
 * first. Returns their number (0 for NULL, empty or only "identity"), or -1
 * when a coding is unknown or there are more than CODING_MAX_LAYERS; then
 * err (may be NULL) says which. */
int coding_parse(const char *value, coding_kind out[CODING_MAX_LAYERS], char *err, size_t errlen);

typedef struct coding_decoder coding_decoder;

/* A streaming decoder for a Content-Encoding value that coding_parse accepts
 * with at least one coding, or NULL (err says why) for one it does not. Its
 * output goes to out, which the caller owns, up to cap bytes in all. */
coding_decoder *coding_decoder_new(const char *content_encoding, buf *out, size_t cap, char *err,
                                   size_t errlen);

typedef enum {
    CODING_OK = 0,     /* input consumed; more may come */
    CODING_FULL = 1,   /* out reached cap: later input is ignored */
    CODING_ERROR = -1, /* the stream is damaged (coding_decoder_error) */
} coding_status;

/* Decodes the next len bytes of the encoded body. Once it has returned
 * CODING_FULL or CODING_ERROR, every later call returns the same at once. */
coding_status coding_decoder_feed(coding_decoder *d, const char *in, size_t len);

/* The encoded body has ended: CODING_ERROR when the stream stopped short
 * (a cut body), else the last status. */
coding_status coding_decoder_finish(coding_decoder *d);

/* Why the stream was refused ("gzip: incorrect header check"), or NULL. */
const char *coding_decoder_error(const coding_decoder *d);

void coding_decoder_free(coding_decoder *d);

/* Whole-buffer form: decodes in[0..len) into out (appended, at most cap
 * bytes). Returns CODING_OK, CODING_FULL (out holds the first cap bytes) or
 * CODING_ERROR with err filled. */
coding_status coding_decode(const char *content_encoding, const char *in, size_t len, size_t cap,
                            buf *out, char *err, size_t errlen);

/* Encodes in[0..len) with every coding of content_encoding, in order, into
 * out (appended). 0, or -1 with err for an unsupported value. */
int coding_encode(const char *content_encoding, const char *in, size_t len, buf *out, char *err,
                  size_t errlen);

#endif
