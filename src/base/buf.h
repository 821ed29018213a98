/* buf: a growable byte buffer, the one way restspy builds strings and bodies.
 *
 * A buf owns data (heap, may be NULL while cap == 0); buf_free releases it.
 * Appends never fail (allocation aborts on OOM, see util.h). data is kept
 * NUL-terminated past len whenever cap > 0, so text can be used as a C string. */
#ifndef RESTSPY_BUF_H
#define RESTSPY_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct buf {
    char *data;
    size_t len;
    size_t cap;
} buf;

#define BUF_INIT                                                                                   \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

void buf_init(buf *b);
void buf_free(buf *b);
/* The heap bytes b holds: its capacity and the allocator's overhead (0
 * when it has no memory). */
size_t buf_mem(const buf *b);
/* Empties the buffer, keeping its memory. */
void buf_reset(buf *b);
/* Ensures room for extra more bytes (plus the NUL). */
void buf_reserve(buf *b, size_t extra);
void buf_append(buf *b, const void *data, size_t len);
void buf_append_str(buf *b, const char *s);
void buf_append_char(buf *b, char c);
void buf_appendf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_append_u64(buf *b, unsigned long long v);
void buf_append_i64(buf *b, long long v);
/* Appends s (length n) as a quoted JSON string. Bytes that are not valid
 * UTF-8 are written as \u00XX escapes of the byte value, so the result is
 * always valid JSON (lossless for valid UTF-8). */
void buf_append_json_str(buf *b, const char *s, size_t n);

/* Members of a JSON object being written, each with its leading comma:
 * ,"key":"v" (null when v is NULL); ,"key":us (null when us is 0, "never");
 * ,"key":seconds since since_us at now (null when since_us is 0); and
 * ,"key":seconds for a duration in µs (3 decimals). */
void buf_json_add_str(buf *b, const char *key, const char *v);
void buf_json_add_us(buf *b, const char *key, int64_t us);
void buf_json_add_age(buf *b, const char *key, int64_t since_us, int64_t now_us);
void buf_json_add_seconds(buf *b, const char *key, int64_t us);
/* Appends standard base64 of data. */
void buf_append_base64(buf *b, const void *data, size_t n);
/* Appends the bytes that standard (or URL-safe) base64 text s (length n)
 * stands for, ignoring whitespace (MIME line breaks) and tolerating missing
 * padding. 0, or -1 on any other byte (out then holds a partial result). */
int buf_append_base64_decoded(buf *out, const char *s, size_t n);
/* Takes the data out: the caller owns the returned (NUL-terminated) string;
 * the buf is left empty. */
char *buf_detach(buf *b);

/* The value of hex digit c (0-15), or -1. */
int hex_digit(char c);

/* Appends s[0..n) percent-decoded: each %XX becomes its byte; a '%' not
 * followed by two hex digits stays as it is; with plus_is_space, '+' becomes
 * ' ' (form encoding). */
void buf_append_pct_decoded(buf *b, const char *s, size_t n, int plus_is_space);

/* 1 when s[0..n) is valid UTF-8 without NUL bytes, else 0. */
int utf8_valid(const char *s, size_t n);

/* Length of s[0..n) cut to at most max bytes on a UTF-8 character
 * boundary, so a shortened value never ends in half a character. */
size_t utf8_cut_len(const char *s, size_t n, size_t max);

#endif
