/* uuid7: time-ordered unique ids (RFC 9562 UUID version 7) for captures.
 *
 * Promises: ids are unique within the process and strictly increasing in
 * text (and byte) order across all threads of the process, even within one
 * millisecond (a 12-bit counter in rand_a, seeded randomly each millisecond,
 * then the timestamp is borrowed forward if the counter overflows). The rest
 * is random from the OS. Thread-safe. */
#ifndef RESTSPY_UUID7_H
#define RESTSPY_UUID7_H

#include <stddef.h>
#include <stdint.h>

#define UUID7_STR_LEN 36

/* Writes a new id as 36 lowercase chars plus NUL into out. */
void uuid7_generate(char out[UUID7_STR_LEN + 1]);

/* Writes the UUIDv7-shaped id of a thing that has no id of its own but must
 * get the same one every time (an imported HAR entry): its time (Unix ms;
 * ids still sort by it) and 74 bits of seed (a digest of its content, from
 * seed[0..10)). Not unique by construction: as unique as the seeds are. */
void uuid7_derive(int64_t unix_ms, const unsigned char seed[10], char out[UUID7_STR_LEN + 1]);

/* Writes the smallest id text of millisecond unix_ms ("xxxxxxxx-xxxx-
 * 0000-0000-000000000000"): every id of an earlier millisecond sorts
 * before it, so it is the cutoff of a retention by id (the ledger's
 * receipts). */
void uuid7_floor(int64_t unix_ms, char out[UUID7_STR_LEN + 1]);

/* Copies the UUID text s[0..n) into out in the canonical form restspy
 * stores (8-4-4-4-12 hex digits, lower case). Returns -1 (out untouched)
 * when s is not a UUID in text form: any version is accepted, as an
 * imported file may carry ids of other tools. */
int uuid7_canonical(const char *s, size_t n, char out[UUID7_STR_LEN + 1]);

/* The Unix time in ms encoded in id (text form), or -1 if id is not a UUIDv7. */
int64_t uuid7_time_ms(const char *id);

#endif
