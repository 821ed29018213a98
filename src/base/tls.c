/* tls: see tls.h. */
#include "base/tls.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/util.h"

/* TLS 1.2 suites when 1.2 is negotiated: forward secrecy and AEAD only
 * (Mozilla's "intermediate" list); TLS 1.3 keeps OpenSSL's defaults. */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* A write BIO whose buffer grew past this (a large body went through) is
 * replaced rather than reset: OpenSSL's reset clears the whole buffer,
 * which would cost every later small write a large memset. */
#define WBIO_KEEP (64 * 1024)

/* Most plaintext one SSL_read gives (one record). */
#define PLAIN_LEN (16 * 1024)

struct tls_server {
    atomic_int refs;
    SSL_CTX **ctx; /* ctx[0] is the default and the one connections start on */
    size_t n;
};

struct tls_client {
    SSL_CTX *ctx;
    char *name;
    bool name_is_ip;
    pthread_mutex_t lock;
    SSL_SESSION *session; /* the last one the server gave, resumed by the next connection */
};

struct tls_conn {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    uv_stream_t *s;
    tls_server *srv; /* a reference: the SNI callback reads it */
    bool server, seen_first, ready;
};

/* ---- errors ---- */

/* The reason of OpenSSL's first queued error ("" when none), and the queue
 * emptied: a stale error would be read by the next connection's
 * SSL_get_error on this thread. */
static const char *ossl_reason(void)
{
    unsigned long e = ERR_peek_error(); /* the first: the cause, not its consequences */
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "unknown error";
}

static void fmt_time(const ASN1_TIME *t, char *out, size_t len)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1 || strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, len, "(unreadable date)");
}

/* Loads a certificate chain and its key into ctx and checks that they
 * match and that the certificate is valid now. */
static int load_pair(SSL_CTX *ctx, const char *cert, const char *key, char *err, size_t errlen)
{
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        util_seterr(err, errlen, "cannot load certificate %s: %s", cert, ossl_reason());
        return -1;
    }
    if (!key)
        key = cert;
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        util_seterr(err, errlen, "cannot load key %s: %s", key, ossl_reason());
        return -1;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        util_seterr(err, errlen, "key %s does not match certificate %s", key, cert);
        return -1;
    }
    X509 *x = SSL_CTX_get0_certificate(ctx);
    char when[40];
    if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
        fmt_time(X509_get0_notAfter(x), when, sizeof when);
        util_seterr(err, errlen, "certificate %s expired on %s", cert, when);
        return -1;
    }
    if (X509_cmp_current_time(X509_get0_notBefore(x)) >= 0) {
        fmt_time(X509_get0_notBefore(x), when, sizeof when);
        util_seterr(err, errlen, "certificate %s is not valid before %s", cert, when);
        return -1;
    }
    return 0;
}

/* ---- server ---- */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl, (void)arg;
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof ours - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* no ALPN answer: the client may still speak HTTP/1.1 */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* Picks the certificate whose names match the client's SNI (the first that
 * does, in the order given); no match keeps the default. */
static int sni_select(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    tls_server *s = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name)
        return SSL_TLSEXT_ERR_OK;
    for (size_t i = 0; i < s->n; i++) {
        if (X509_check_host(SSL_CTX_get0_certificate(s->ctx[i]), name, 0, 0, NULL) == 1) {
            if (i > 0)
                SSL_set_SSL_CTX(ssl, s->ctx[i]);
            break;
        }
    }
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *server_ctx(const char *cert, const char *key, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        util_seterr(err, errlen, "TLS: %s", ossl_reason());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    static const unsigned char sid[] = "restspy";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    if (load_pair(ctx, cert, key, err, errlen) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

tls_server *tls_server_new(char *const *certs, size_t ncerts, char *const *keys, size_t nkeys,
                           char *err, size_t errlen)
{
    assert(ncerts > 0);
    tls_server *s = xcalloc(1, sizeof *s);
    atomic_init(&s->refs, 1);
    s->ctx = xcalloc(ncerts, sizeof *s->ctx);
    for (size_t i = 0; i < ncerts; i++) {
        s->ctx[i] = server_ctx(certs[i], i < nkeys ? keys[i] : NULL, err, errlen);
        if (!s->ctx[i]) {
            tls_server_unref(s);
            return NULL;
        }
        s->n = i + 1;
    }
    SSL_CTX_set_tlsext_servername_callback(s->ctx[0], sni_select);
    SSL_CTX_set_tlsext_servername_arg(s->ctx[0], s);
    return s;
}

void tls_server_ref(tls_server *s)
{
    atomic_fetch_add(&s->refs, 1);
}

void tls_server_unref(tls_server *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (size_t i = 0; i < s->n; i++)
        SSL_CTX_free(s->ctx[i]);
    free(s->ctx);
    free(s);
}

/* ---- client ---- */

/* A new session from the server (TLS 1.3 sends it after the handshake):
 * kept as the one the next connection resumes. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    tls_client *c = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    pthread_mutex_lock(&c->lock);
    SSL_SESSION *old = c->session;
    c->session = sess;
    pthread_mutex_unlock(&c->lock);
    SSL_SESSION_free(old);
    return 1; /* the reference is ours */
}

static bool is_ip(const char *name)
{
    unsigned char a[16];
    return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}

tls_client *tls_client_new(const tls_client_opts *o, char *err, size_t errlen)
{
    tls_client *c = xcalloc(1, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    c->name = xstrdup(o->name ? o->name : "");
    c->name_is_ip = is_ip(c->name);
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx) {
        util_seterr(err, errlen, "TLS: %s", ossl_reason());
        goto fail;
    }
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_cipher_list(c->ctx, TLS12_CIPHERS);
    SSL_CTX_set_options(c->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_alpn_protos(c->ctx, (const unsigned char *)"\x08http/1.1", 9);
    SSL_CTX_set_app_data(c->ctx, c);
    SSL_CTX_set_session_cache_mode(c->ctx,
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c->ctx, on_new_session);
    if (!o->insecure) {
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
        if (SSL_CTX_set_default_verify_paths(c->ctx) != 1)
            ERR_clear_error(); /* no system store: ca_file alone may do */
        if (o->ca_file && SSL_CTX_load_verify_locations(c->ctx, o->ca_file, NULL) != 1) {
            util_seterr(err, errlen, "cannot load CA file %s: %s", o->ca_file, ossl_reason());
            goto fail;
        }
    }
    if (o->cert_file && load_pair(c->ctx, o->cert_file, o->key_file, err, errlen) < 0)
        goto fail;
    return c;
fail:
    tls_client_free(c);
    return NULL;
}

void tls_client_free(tls_client *c)
{
    if (!c)
        return;
    SSL_SESSION_free(c->session);
    SSL_CTX_free(c->ctx);
    pthread_mutex_destroy(&c->lock);
    free(c->name);
    free(c);
}

/* ---- connections ---- */

static tls_conn *conn_new(SSL_CTX *ctx, uv_stream_t *s)
{
    tls_conn *t = xcalloc(1, sizeof *t);
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        fprintf(stderr, "restspy: out of memory (TLS)\n");
        abort(); /* as xmalloc: allocation failures are not handled */
    }
    /* An empty read BIO says "retry", not end of file. */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    t->s = s;
    return t;
}

tls_conn *tls_conn_server(tls_server *srv, uv_stream_t *s)
{
    tls_conn *t = conn_new(srv->ctx[0], s);
    tls_server_ref(srv);
    t->srv = srv;
    t->server = true;
    SSL_set_accept_state(t->ssl);
    return t;
}

/* Writes what OpenSSL produced. */
static int flush(tls_conn *t, io_done_cb done)
{
    BUF_MEM *bm;
    BIO_get_mem_ptr(t->wbio, &bm);
    if (!bm->length)
        return 0;
    uv_buf_t b = uv_buf_init(bm->data, (unsigned)bm->length);
    int rc = io_write(t->s, &b, 1, done); /* copies what it does not write at once */
    if (bm->max > WBIO_KEEP) {
        t->wbio = BIO_new(BIO_s_mem());
        if (!t->wbio)
            abort();
        SSL_set0_wbio(t->ssl, t->wbio); /* frees the old one */
    } else {
        (void)BIO_reset(t->wbio);
    }
    return rc;
}

tls_conn *tls_conn_client(tls_client *cli, uv_stream_t *s)
{
    tls_conn *t = conn_new(cli->ctx, s);
    SSL_set_connect_state(t->ssl);
    if (cli->name_is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), cli->name);
    } else if (*cli->name) {
        SSL_set_tlsext_host_name(t->ssl, cli->name);
        SSL_set1_host(t->ssl, cli->name);
    }
    pthread_mutex_lock(&cli->lock);
    if (cli->session)
        SSL_set_session(t->ssl, cli->session);
    pthread_mutex_unlock(&cli->lock);
    ERR_clear_error();
    (void)SSL_do_handshake(t->ssl); /* writes the ClientHello, then wants to read */
    flush(t, NULL);
    return t;
}

void tls_conn_free(tls_conn *t)
{
    if (!t)
        return;
    /* A connection closed without close_notify (a backend or a client
     * closing after its answer, as HTTP allows) would make OpenSSL mark
     * its session not resumable, shared with the next connections; HTTP's
     * own framing, not TLS's, tells a cut answer, so the close counts as
     * clean. A session a fatal error ended is already dropped by OpenSSL. */
    if (t->ready)
        SSL_set_shutdown(t->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(t->ssl);
    tls_server_unref(t->srv);
    free(t);
}

bool tls_conn_ready(const tls_conn *t)
{
    return t->ready;
}

bool tls_conn_resumed(const tls_conn *t)
{
    return t->ready && SSL_session_reused(t->ssl) == 1;
}

static int fail(tls_conn *t, int e, char *err, size_t errlen)
{
    long v = SSL_get_verify_result(t->ssl);
    if (!t->server && v != X509_V_OK) {
        ERR_clear_error();
        util_seterr(err, errlen, "certificate verify failed: %s", X509_verify_cert_error_string(v));
    } else if (e == SSL_ERROR_SYSCALL && ERR_peek_last_error() == 0) {
        util_seterr(err, errlen, "%s failed: unexpected end of stream",
                    t->ready ? "TLS" : "handshake");
    } else {
        util_seterr(err, errlen, "%s failed: %s", t->ready ? "TLS" : "handshake", ossl_reason());
    }
    return TLS_ERROR;
}

int tls_conn_feed(tls_conn *t, const char *in, size_t len, tls_data_cb cb, void *ud, char *err,
                  size_t errlen)
{
    static _Thread_local char plain[PLAIN_LEN];
    if (t->server && !t->seen_first && len) {
        t->seen_first = true;
        /* A TLS connection opens with a handshake record (0x16); a request
         * line opens with a method's letters. */
        if (isalpha((unsigned char)in[0]))
            return TLS_NOT_TLS;
    }
    if (len && BIO_write(t->rbio, in, (int)len) != (int)len)
        abort(); /* a memory BIO refuses only when out of memory */
    ERR_clear_error();
    if (!t->ready) {
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            flush(t, NULL);
            return e == SSL_ERROR_WANT_READ ? TLS_OK : fail(t, e, err, errlen);
        }
        t->ready = true;
    }
    for (;;) {
        size_t got = 0;
        int r = SSL_read_ex(t->ssl, plain, sizeof plain, &got);
        if (r == 1) {
            if (cb(ud, plain, got))
                return TLS_OK; /* the owner is closing */
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        flush(t, NULL); /* session tickets, alerts, key updates */
        if (e == SSL_ERROR_WANT_READ)
            return TLS_OK;
        if (e == SSL_ERROR_ZERO_RETURN)
            return TLS_CLOSED;
        return fail(t, e, err, errlen);
    }
}

int tls_conn_write(tls_conn *t, const uv_buf_t *bufs, unsigned n, io_done_cb done)
{
    static _Thread_local char joined[PLAIN_LEN];
    if (!t->ready)
        return UV_EPROTO;
    /* Small pieces (a head and its body) become one record: one AEAD pass
     * and 22 bytes of overhead instead of one per piece. */
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    uv_buf_t one;
    if (n > 1 && total <= sizeof joined) {
        size_t off = 0;
        for (unsigned i = 0; i < n; i++) {
            memcpy(joined + off, bufs[i].base, bufs[i].len);
            off += bufs[i].len;
        }
        one = uv_buf_init(joined, (unsigned)total);
        bufs = &one;
        n = 1;
    }
    ERR_clear_error();
    for (unsigned i = 0; i < n; i++) {
        size_t off = 0;
        while (off < bufs[i].len) {
            size_t w = 0;
            if (SSL_write_ex(t->ssl, bufs[i].base + off, bufs[i].len - off, &w) != 1) {
                ERR_clear_error();
                return UV_EPROTO;
            }
            off += w;
        }
    }
    return flush(t, done);
}

void tls_conn_close_notify(tls_conn *t)
{
    if (!t->ready)
        return;
    ERR_clear_error();
    (void)SSL_shutdown(t->ssl);
    ERR_clear_error();
    flush(t, NULL);
}
