/* frame: the codec of the `restspy collect` protocol (docs/collect-protocol.md).
 *
 * Owns nothing: it reads frames out of a caller's buffer and appends frames
 * to one, and turns a PAIR frame's body into a record. Pure functions, no
 * I/O, no globals: the fuzz harness (fuzz/fuzz_collect.c) and the unit
 * tests drive them directly. Promises: a header is judged from its 16 bytes
 * alone (an oversize length is refused before any of its body is kept);
 * every refusal says why in a short static text. */
#ifndef RESTSPY_FRAME_H
#define RESTSPY_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "capture/record.h"

#define FRAME_HEADER_LEN 16
#define FRAME_MAGIC "RSPY"
#define FRAME_VERSION 1     /* the version HELLO and WELCOME are written in */
#define FRAME_VERSION_MAX 2 /* the highest this codec speaks */
/* Version 2, a PAIR's header flag: answer this pair even when it is async;
 * its answer then says that every earlier frame of the connection was
 * taken (or refused with an ERROR of its own, sent before). */
#define FRAME_FLAG_ACK 0x0001
/* Longest view name (a rule name). */
#define FRAME_VIEW_MAX 200

typedef enum {
    FRAME_HELLO = 1,
    FRAME_WELCOME = 2,
    FRAME_PAIR = 3,
    FRAME_ACK = 4,
    FRAME_ERROR = 5,
    FRAME_FLUSH = 6, /* version 2, client -> daemon, empty body: answered (ACK)
                        once every earlier frame is */
} frame_type;

typedef struct frame_header {
    uint8_t version;
    uint8_t type;
    uint16_t flags;
    uint32_t seq;
    uint32_t length; /* of the body that follows */
} frame_header;

/* Reads the header at p[0..FRAME_HEADER_LEN): 0, or -1 with *why (static
 * text) when the magic, version (must be `version`), type (one `version`
 * has) or flags (none in version 1; FRAME_FLAG_ACK on a PAIR in version 2)
 * are wrong or length is over max. */
int frame_header_parse(const unsigned char *p, uint8_t version, uint32_t max, frame_header *h,
                       const char **why);

/* Result of frame_take. */
typedef enum {
    FRAME_MORE = 0, /* not a whole frame yet */
    FRAME_OK = 1,   /* *h and *body (len h->length, inside in) hold one */
    FRAME_BAD = -1, /* the header is refused (*why): the stream is lost */
} frame_status;

/* The next frame of in->data[*off..in->len): on FRAME_OK, *off is advanced
 * past it and *body points into in (valid until in changes). */
frame_status frame_take(const buf *in, size_t *off, uint8_t version, uint32_t max, frame_header *h,
                        const char **body, const char **why);

/* Appends one frame of protocol version (header and len bytes of body) to
 * out. */
void frame_append(buf *out, uint8_t version, uint8_t type, uint32_t seq, const char *body,
                  size_t len);

/* The protocol version to speak, from a HELLO body ({"versions": [..]}):
 * the highest both sides know (at most FRAME_VERSION_MAX), or 0 with
 * *why. */
uint8_t frame_hello_version(const char *body, size_t len, const char **why);

/* What a PAIR carries besides the record. */
typedef struct frame_pair {
    record *rec;                   /* owned by the caller on success */
    char view[FRAME_VIEW_MAX + 1]; /* the view's name: its rule */
    bool has_flags;                /* "flags" was given */
    bool log, persist, replicate;  /* the view's configured switches */
    int durability;                /* -1 unsaid, else REPL_SYNC or REPL_ASYNC */
    bool from_peer;                /* X-Restspy-Replicated-From is set */
    buf req_full;                  /* the whole request body (for the outbox); owned */
} frame_pair;

/* Decodes a PAIR body of protocol version into p (zeroed first): a record
 * (fresh id, origin "local": pipeline_decide makes it "replicated" when
 * from_peer, for both front ends) with the method, target, host, scheme,
 * headers, status, timings and client address of the meta, and both
 * bodies whole (rec->req_body, rec->resp_body and req_full: the pipeline
 * caps and decodes them). Version 1 carries the headers in the meta as
 * JSON arrays; version 2 as two blocks of "Name: value\r\n" lines after
 * the meta (docs/collect-protocol.md). 0, or -1 with err (nothing is
 * kept). */
int frame_pair_decode(const char *body, size_t len, uint8_t version, frame_pair *p, char *err,
                      size_t errlen);
/* Frees what p owns (its record when still there, req_full). */
void frame_pair_free(frame_pair *p);

#endif
