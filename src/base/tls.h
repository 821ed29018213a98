/* tls: TLS as a filter on a libuv stream, with OpenSSL memory BIOs.
 *
 * The owner of a socket keeps doing its own reads (uv_read_start) and hands
 * the ciphertext to tls_conn_feed, which gives back plaintext through a
 * callback; its writes go through tls_conn_write, which encrypts and writes
 * with io_write (so io_queued and the backpressure marks keep working on the
 * ciphertext). The HTTP code above never sees a record or a handshake: that
 * is what lets one transaction code serve http and https.
 *
 * Owns: tls_server and tls_client (OpenSSL contexts; both may be shared by
 * threads: OpenSSL contexts are thread-safe, the client's session slot is
 * locked), and each tls_conn (its SSL and BIOs). A tls_conn does not own its
 * stream. Plaintext handed to the feed callback lives in a per-thread buffer
 * and only for the call.
 *
 * Trade-off: memory BIOs cost one copy of the ciphertext on the read side
 * (into the read BIO); the write side hands OpenSSL's own output buffer to
 * io_write, which copies only what the socket does not take at once. */
#ifndef RESTSPY_TLS_H
#define RESTSPY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "base/iostream.h"

typedef struct tls_server tls_server;
typedef struct tls_client tls_client;
typedef struct tls_conn tls_conn;

/* Server certificates: certs[0..n) PEM chains (leaf first), keys[i] the
 * PEM key of certs[i], or NULL (or i past nkeys) when the key is in the
 * certificate's file. TLS 1.2 and 1.3, a modern cipher list (ECDHE with
 * AES-GCM or ChaCha20), ALPN http/1.1, session tickets; the certificate
 * whose names match the client's SNI is served, certs[0] otherwise.
 * Checks what a start must refuse: an unreadable file, a key that does not
 * match, a certificate expired or not yet valid. NULL with err (one line
 * naming the file) on failure. Reference count 1. */
tls_server *tls_server_new(char *const *certs, size_t ncerts, char *const *keys, size_t nkeys,
                           char *err, size_t errlen);
void tls_server_ref(tls_server *s);
/* Drops a reference; the last frees it (connections made from it keep
 * their own reference to OpenSSL's context and outlive it safely). */
void tls_server_unref(tls_server *s);

typedef struct tls_client_opts {
    const char *ca_file;   /* PEM CAs trusted besides the system store, or NULL */
    bool insecure;         /* no verification at all */
    const char *name;      /* SNI and the name checked (a host name or an IP) */
    const char *cert_file; /* client certificate (PEM chain), or NULL */
    const char *key_file;  /* its key, or NULL when in cert_file */
} tls_client_opts;

/* A client context for one origin: verification against the system store
 * and ca_file unless insecure, the name check, and one remembered session
 * that new connections resume. NULL with err on failure. */
tls_client *tls_client_new(const tls_client_opts *o, char *err, size_t errlen);
void tls_client_free(tls_client *c);

/* A connection over stream s (a connected TCP handle; not owned). For a
 * client, the handshake starts at once (its first flight is written). */
tls_conn *tls_conn_server(tls_server *srv, uv_stream_t *s);
tls_conn *tls_conn_client(tls_client *cli, uv_stream_t *s);
void tls_conn_free(tls_conn *t);

/* What tls_conn_feed reports. */
enum {
    TLS_OK = 0,      /* all plaintext so far delivered (or the handshake goes on) */
    TLS_CLOSED = 1,  /* the peer sent close_notify */
    TLS_ERROR = -1,  /* a handshake or record error: err says why; close */
    TLS_NOT_TLS = -2 /* server: the first byte is not a TLS handshake record
                        (a plain HTTP request on a TLS port) */
};

/* Plaintext for the owner; a non-zero return stops the delivery (the owner
 * closed the connection) and tls_conn_feed then returns TLS_OK at once. */
typedef int (*tls_data_cb)(void *ud, const char *data, size_t len);

/* Feeds ciphertext read from the stream: handshake messages are answered
 * (written to the stream within the call), application data goes to cb.
 * err gets one line for TLS_ERROR: "certificate verify failed: ...",
 * "handshake failed: ...". */
int tls_conn_feed(tls_conn *t, const char *in, size_t len, tls_data_cb cb, void *ud, char *err,
                  size_t errlen);

/* Whether the handshake has completed. */
bool tls_conn_ready(const tls_conn *t);
/* Whether the completed handshake resumed a session. */
bool tls_conn_resumed(const tls_conn *t);

/* Encrypts bufs[0..n) and writes the records with io_write (done as
 * io_write's). Must not be called before the handshake has completed on a
 * client; a server may (OpenSSL then holds it until it completes). 0 or a
 * libuv error, or UV_EPROTO when OpenSSL refuses. */
int tls_conn_write(tls_conn *t, const uv_buf_t *bufs, unsigned n, io_done_cb done);

/* Writes a close_notify alert (best effort, before a graceful close). */
void tls_conn_close_notify(tls_conn *t);

#endif
