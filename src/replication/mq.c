/* mq: restspy's use of RabbitMQ through rabbitmq-c 0.11 (see mq.h).
 *
 * Frame handling is done here rather than with amqp_consume_message or
 * amqp_read_message: those wait without a deadline, and they do not let a
 * publisher confirm and a delivery interleave on one channel. Every wait below
 * goes through amqp_simple_wait_frame_noblock with a deadline (which also
 * sends and checks heartbeats), and the RPCs (declare, consume, confirm.select,
 * basic.get) are bounded by amqp_set_rpc_timeout.
 *
 * Memory: rabbitmq-c decodes frames into per-channel pools that stay valid
 * until amqp_maybe_release_buffers. Everything an event carries is copied to
 * the heap before the call returns, and the pools are released at the start
 * of the next call, never while a decoded frame is still being read. */
#include "replication/mq.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "capture/config.h"
#include "formats/receipt.h"
#include "base/util.h"

#define MQ_CHANNEL 1
#define MQ_FRAME_MAX 131072
#define MQ_CONNECT_TIMEOUT_MS 5000
#define MQ_RPC_TIMEOUT_MS 10000
/* Once a delivery's method frame has arrived, its header and body frames are
 * already on the way: this only bounds a broker that dies mid-message. */
#define MQ_CONTENT_TIMEOUT_MS 10000
#define MQ_CLOSE_TIMEOUT_MS 500

typedef struct mq_confirm {
    uint64_t tag;
    bool multiple;
    bool nack;
} mq_confirm;

struct mq {
    amqp_connection_state_t conn;
    int shut_fd; /* dup of the socket, for mq_interrupt; -1 when none */
    int wake_fd; /* mq_set_wake's descriptor (not owned); -1 when none */
    bool dead;   /* a call failed: only mq_close is left */
    bool confirms;
    uint64_t next_tag;
    /* Confirms that arrived while a message's content was being read (they
     * may have been queued by rabbitmq-c during an earlier RPC): mq_poll
     * hands them out first, in arrival order. */
    mq_confirm *pending;
    size_t npending, pending_cap;
};

static struct timeval tv_ms(int64_t ms)
{
    if (ms < 0)
        ms = 0;
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

static int fail(mq *m, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Every failure ends here: the connection is no longer trusted. */
static int fail(mq *m, char *err, size_t errlen, const char *fmt, ...)
{
    m->dead = true;
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int check_alive(mq *m, char *err, size_t errlen)
{
    if (m->dead) {
        util_seterr(err, errlen, "AMQP connection is closed");
        return -1;
    }
    /* Per channel: amqp_maybe_release_buffers would also free frames that
     * an RPC queued for later (they live in their channel's pool). */
    amqp_maybe_release_buffers_on_channel(m->conn, 0);
    amqp_maybe_release_buffers_on_channel(m->conn, MQ_CHANNEL);
    return 0;
}

static amqp_bytes_t bytes_of(const char *s)
{
    amqp_bytes_t b;
    b.len = strlen(s);
    b.bytes = (void *)s;
    return b;
}

/* Sends the close-ok the broker waits for before it drops the socket; best
 * effort, the mq is dead either way. */
static void answer_close(mq *m, amqp_channel_t ch, amqp_method_number_t id)
{
    if (id == AMQP_CHANNEL_CLOSE_METHOD) {
        amqp_channel_close_ok_t ok = {0};
        amqp_send_method(m->conn, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
    } else {
        amqp_connection_close_ok_t ok = {0};
        amqp_send_method(m->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
    }
}

/* "NOT_FOUND - no queue 'x' in vhost '/'" out of a channel.close or
 * connection.close the broker sent. */
static int fail_closed(mq *m, const amqp_method_t *meth, amqp_channel_t ch, const char *what,
                       char *err, size_t errlen)
{
    unsigned code;
    amqp_bytes_t text;
    const char *scope;
    if (meth->id == AMQP_CHANNEL_CLOSE_METHOD) {
        const amqp_channel_close_t *c = meth->decoded;
        code = c->reply_code;
        text = c->reply_text;
        scope = "channel";
    } else {
        const amqp_connection_close_t *c = meth->decoded;
        code = c->reply_code;
        text = c->reply_text;
        scope = "connection";
    }
    answer_close(m, ch, meth->id);
    return fail(m, err, errlen, "%s: broker closed the %s: %u %.*s", what, scope, code,
                (int)text.len, (const char *)text.bytes);
}

static int fail_reply(mq *m, amqp_rpc_reply_t r, const char *what, char *err, size_t errlen)
{
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return 0;
    case AMQP_RESPONSE_NONE:
        return fail(m, err, errlen, "%s: no reply from the broker", what);
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        return fail(m, err, errlen, "%s: %s", what, amqp_error_string2(r.library_error));
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD || r.reply.id == AMQP_CONNECTION_CLOSE_METHOD)
            return fail_closed(m, &r.reply, MQ_CHANNEL, what, err, errlen);
        return fail(m, err, errlen, "%s: unexpected method 0x%08x from the broker", what,
                    (unsigned)r.reply.id);
    }
    return fail(m, err, errlen, "%s: unknown reply", what);
}

static int rpc_check(mq *m, const char *what, char *err, size_t errlen)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(m->conn);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return 0;
    return fail_reply(m, r, what, err, errlen);
}

/* ---- connecting ---- */

/* "amqp://host/" names the empty vhost in the AMQP URI spec, which no one
 * means: it is taken as the default "/" (spell "/" as %2F explicitly). */
static const char *vhost_of(const struct amqp_connection_info *ci)
{
    return ci->vhost[0] ? ci->vhost : "/";
}

char *mq_url_vhost(const char *url)
{
    if (!url || strncmp(url, "amqp://", 7) != 0)
        return NULL;
    char *copy = xstrdup(url); /* amqp_parse_url decodes in place */
    struct amqp_connection_info ci;
    char *v = amqp_parse_url(copy, &ci) == AMQP_STATUS_OK ? xstrdup(vhost_of(&ci)) : NULL;
    free(copy);
    return v;
}

mq *mq_connect(const char *url, unsigned heartbeat_s, const char *name, char *err, size_t errlen)
{
    if (url == NULL || strncmp(url, "amqps://", 8) == 0) {
        util_seterr(err, errlen, "AMQP URL %s: only amqp:// is supported", url ? url : "(null)");
        return NULL;
    }
    /* amqp_parse_url decodes in place and points into its argument. */
    char *copy = xstrdup(url);
    struct amqp_connection_info ci;
    if (amqp_parse_url(copy, &ci) != AMQP_STATUS_OK) {
        util_seterr(err, errlen, "bad AMQP URL: %s", url);
        free(copy);
        return NULL;
    }
    const char *vhost = vhost_of(&ci);
    if (heartbeat_s > UINT16_MAX)
        heartbeat_s = UINT16_MAX;

    mq *m = xcalloc(1, sizeof *m);
    m->shut_fd = -1;
    m->wake_fd = -1;
    m->conn = amqp_new_connection();
    if (m->conn == NULL) {
        util_seterr(err, errlen, "AMQP: cannot allocate a connection");
        free(m);
        free(copy);
        return NULL;
    }
    amqp_socket_t *sock = amqp_tcp_socket_new(m->conn);
    if (sock == NULL) {
        util_seterr(err, errlen, "AMQP: cannot allocate a socket");
        goto fail;
    }
    struct timeval tv = tv_ms(MQ_CONNECT_TIMEOUT_MS);
    int rc = amqp_socket_open_noblock(sock, ci.host, ci.port, &tv);
    if (rc != AMQP_STATUS_OK) {
        /* rabbitmq-c drops the OS error (refused, unreachable): its own
         * text is all there is. */
        util_seterr(err, errlen, "AMQP connect to %s:%d: %s", ci.host, ci.port,
                    amqp_error_string2(rc));
        goto fail;
    }
    m->shut_fd = dup(amqp_socket_get_sockfd(sock));
    amqp_set_handshake_timeout(m->conn, &tv);
    struct timeval rpc = tv_ms(MQ_RPC_TIMEOUT_MS);
    amqp_set_rpc_timeout(m->conn, &rpc);

    /* connection_name shows in the management UI; the capabilities make the
     * broker tell us when it cancels our consumer (queue deleted) instead
     * of going silent. */
    amqp_table_entry_t caps[1];
    caps[0].key = amqp_cstring_bytes("consumer_cancel_notify");
    caps[0].value.kind = AMQP_FIELD_KIND_BOOLEAN;
    caps[0].value.value.boolean = 1;
    amqp_table_entry_t props[3];
    props[0].key = amqp_cstring_bytes("connection_name");
    props[0].value.kind = AMQP_FIELD_KIND_UTF8;
    props[0].value.value.bytes = bytes_of(name ? name : "restspy");
    props[1].key = amqp_cstring_bytes("product");
    props[1].value.kind = AMQP_FIELD_KIND_UTF8;
    props[1].value.value.bytes = amqp_cstring_bytes("restspy");
    props[2].key = amqp_cstring_bytes("capabilities");
    props[2].value.kind = AMQP_FIELD_KIND_TABLE;
    props[2].value.value.table.num_entries = 1;
    props[2].value.value.table.entries = caps;
    amqp_table_t ptab = {.num_entries = 3, .entries = props};

    amqp_rpc_reply_t r =
        amqp_login_with_properties(m->conn, vhost, 0, MQ_FRAME_MAX, (int)heartbeat_s, &ptab,
                                   AMQP_SASL_METHOD_PLAIN, ci.user, ci.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        char why[200];
        fail_reply(m, r, "AMQP login", why, sizeof why);
        util_seterr(err, errlen, "%s (%s:%d vhost %s user %s)", why, ci.host, ci.port, vhost,
                    ci.user);
        goto fail;
    }
    amqp_channel_open(m->conn, MQ_CHANNEL);
    if (rpc_check(m, "AMQP channel.open", err, errlen) < 0)
        goto fail;
    free(copy);
    return m;

fail:
    free(copy);
    if (m->shut_fd >= 0)
        close(m->shut_fd);
    amqp_destroy_connection(m->conn);
    free(m);
    return NULL;
}

void mq_close(mq *m)
{
    if (m == NULL)
        return;
    if (!m->dead) {
        /* Polite close so the broker logs no "client unexpectedly closed
         * TCP connection"; bounded, since a broker that is gone just times
         * out. connection.close closes the channel too. */
        struct timeval tv = tv_ms(MQ_CLOSE_TIMEOUT_MS);
        amqp_set_rpc_timeout(m->conn, &tv);
        amqp_connection_close(m->conn, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(m->conn);
    if (m->shut_fd >= 0)
        close(m->shut_fd);
    free(m->pending);
    free(m);
}

void mq_interrupt(mq *m)
{
    /* The dup keeps the socket itself alive even if rabbitmq-c has closed
     * its own descriptor, so this can never hit an unrelated, reused fd. */
    if (m != NULL && m->shut_fd >= 0)
        shutdown(m->shut_fd, SHUT_RDWR);
}

/* ---- topology ---- */

static int declare_exchange(mq *m, const char *name, char *err, size_t errlen)
{
    amqp_exchange_declare(m->conn, MQ_CHANNEL, amqp_cstring_bytes(name),
                          amqp_cstring_bytes("topic"), 0, 1, 0, 0, amqp_empty_table);
    char what[128];
    snprintf(what, sizeof what, "declare exchange %s", name);
    return rpc_check(m, what, err, errlen);
}

static int declare_queue(mq *m, const char *name, amqp_table_t args, char *err, size_t errlen)
{
    amqp_queue_declare(m->conn, MQ_CHANNEL, amqp_cstring_bytes(name), 0, 1, 0, 0, args);
    char what[300];
    snprintf(what, sizeof what, "declare queue %s", name);
    return rpc_check(m, what, err, errlen);
}

static int bind_queue(mq *m, const char *queue, const char *exchange, const char *key, char *err,
                      size_t errlen)
{
    amqp_queue_bind(m->conn, MQ_CHANNEL, amqp_cstring_bytes(queue), amqp_cstring_bytes(exchange),
                    amqp_cstring_bytes(key), amqp_empty_table);
    char what[300];
    snprintf(what, sizeof what, "bind queue %s to %s", queue, exchange);
    return rpc_check(m, what, err, errlen);
}

static amqp_table_entry_t str_entry(const char *key, const char *value)
{
    amqp_table_entry_t e;
    e.key = amqp_cstring_bytes(key);
    e.value.kind = AMQP_FIELD_KIND_UTF8;
    e.value.value.bytes = bytes_of(value);
    return e;
}

int mq_declare_topology(mq *m, const char *node, int queue_type, char *err, size_t errlen)
{
    if (check_alive(m, err, errlen) < 0)
        return -1;
    if (node == NULL || node[0] == '\0' || strlen(node) > 200) {
        util_seterr(err, errlen, "declare topology: bad node name");
        return -1;
    }
    const char *type = queue_type == QUEUE_QUORUM ? "quorum" : "classic";
    char apply_q[256], dead_q[256];
    snprintf(apply_q, sizeof apply_q, "restspy.apply.%s", node);
    snprintf(dead_q, sizeof dead_q, "restspy.dead.%s", node);

    amqp_table_entry_t apply_args[3] = {
        str_entry("x-queue-type", type),
        str_entry("x-dead-letter-exchange", MQ_EXCHANGE_DEAD),
        str_entry("x-dead-letter-routing-key", node),
    };
    amqp_table_t apply_tab = {.num_entries = 3, .entries = apply_args};
    /* The dead-letter queue has the same type: quorum is chosen for
     * durability, and dead letters deserve it as much as live ones. */
    amqp_table_entry_t dead_args[1] = {str_entry("x-queue-type", type)};
    amqp_table_t dead_tab = {.num_entries = 1, .entries = dead_args};

    /* restspy.inbound last, bound at once: peers' shovels publish into it
     * (not mandatory), so on a fresh broker it must not take messages
     * before the apply queue is bound to it. */
    if (declare_exchange(m, MQ_EXCHANGE_REQUESTS, err, errlen) < 0 ||
        declare_exchange(m, MQ_EXCHANGE_DEAD, err, errlen) < 0 ||
        declare_queue(m, apply_q, apply_tab, err, errlen) < 0 ||
        declare_queue(m, dead_q, dead_tab, err, errlen) < 0 ||
        bind_queue(m, dead_q, MQ_EXCHANGE_DEAD, node, err, errlen) < 0 ||
        declare_exchange(m, MQ_EXCHANGE_INBOUND, err, errlen) < 0 ||
        bind_queue(m, apply_q, MQ_EXCHANGE_INBOUND, "#", err, errlen) < 0)
        return -1;
    return 0;
}

int mq_queue_exists(mq *m, const char *queue, char *err, size_t errlen)
{
    if (check_alive(m, err, errlen) < 0)
        return -1;
    amqp_queue_declare(m->conn, MQ_CHANNEL, amqp_cstring_bytes(queue), 1, 0, 0, 0,
                       amqp_empty_table);
    amqp_rpc_reply_t r = amqp_get_rpc_reply(m->conn);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return 1;
    bool missing = r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
                   r.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
                   ((const amqp_channel_close_t *)r.reply.decoded)->reply_code == AMQP_NOT_FOUND;
    char what[300];
    snprintf(what, sizeof what, "look up queue %s", queue);
    fail_reply(m, r, what, err, errlen);
    return missing ? 0 : -1;
}

int mq_confirm_select(mq *m, char *err, size_t errlen)
{
    if (check_alive(m, err, errlen) < 0)
        return -1;
    amqp_confirm_select(m->conn, MQ_CHANNEL);
    if (rpc_check(m, "confirm.select", err, errlen) < 0)
        return -1;
    m->confirms = true;
    m->next_tag = 1;
    return 0;
}

/* ---- publishing ---- */

#define MQ_MAX_HEADERS 11 /* the protocol's eight, plus a dead letter's two */

typedef struct hdrs {
    amqp_table_entry_t e[MQ_MAX_HEADERS];
    int n;
} hdrs;

static void hdr_add(hdrs *h, const char *key, const char *value)
{
    if (value != NULL && h->n < MQ_MAX_HEADERS)
        h->e[h->n++] = str_entry(key, value);
}

/* mandatory: a message no queue takes comes back as a basic.return (see
 * mq_poll) instead of being dropped by the exchange. */
static int publish(mq *m, const char *exchange, const char *routing_key, const repl_msg *msg,
                   const char *reason, const char *type, bool mandatory, uint64_t *tag, char *err,
                   size_t errlen)
{
    if (check_alive(m, err, errlen) < 0)
        return -1;
    hdrs h = {.n = 0};
    hdr_add(&h, "x-restspy-origin", msg->origin);
    hdr_add(&h, "x-restspy-method", msg->method);
    hdr_add(&h, "x-restspy-target", msg->target);
    hdr_add(&h, "x-restspy-headers", msg->headers);
    hdr_add(&h, "x-restspy-signature", msg->signature);
    hdr_add(&h, "x-restspy-origin-status", msg->origin_status);
    hdr_add(&h, "x-restspy-origin-digest", msg->origin_digest);
    if (msg->origin_body.len && h.n < MQ_MAX_HEADERS) {
        /* Any bytes (a long string is length-prefixed): the body as stored. */
        amqp_table_entry_t *e = &h.e[h.n++];
        e->key = amqp_cstring_bytes("x-restspy-origin-body");
        e->value.kind = AMQP_FIELD_KIND_BYTES;
        e->value.value.bytes.bytes = msg->origin_body.data;
        e->value.value.bytes.len = msg->origin_body.len;
    }
    char dead_at[24];
    if (reason != NULL) {
        hdr_add(&h, "x-restspy-reason", reason);
        snprintf(dead_at, sizeof dead_at, "%lld", (long long)(util_now_us() / 1000000));
        hdr_add(&h, "x-restspy-dead-at", dead_at);
    }

    amqp_basic_properties_t p;
    memset(&p, 0, sizeof p);
    p._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_HEADERS_FLAG |
               AMQP_BASIC_TIMESTAMP_FLAG;
    p.delivery_mode = 2;
    p.app_id = amqp_cstring_bytes("restspy");
    p.timestamp = (uint64_t)msg->timestamp;
    p.headers.num_entries = h.n;
    p.headers.entries = h.e;
    if (msg->id[0] != '\0') {
        p._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        p.message_id = bytes_of(msg->id);
    }
    if (msg->content_type != NULL) {
        p._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
        p.content_type = bytes_of(msg->content_type);
    }
    if (type != NULL) {
        p._flags |= AMQP_BASIC_TYPE_FLAG;
        p.type = bytes_of(type);
    }
    amqp_bytes_t body;
    body.len = msg->body.len;
    body.bytes = msg->body.data;

    int rc = amqp_basic_publish(m->conn, MQ_CHANNEL, amqp_cstring_bytes(exchange),
                                bytes_of(routing_key ? routing_key : ""), mandatory, 0, &p, body);
    if (rc != AMQP_STATUS_OK)
        return fail(m, err, errlen, "publish to %s: %s", exchange[0] ? exchange : "(default)",
                    amqp_error_string2(rc));
    uint64_t t = 0;
    if (m->confirms)
        t = m->next_tag++;
    if (tag != NULL)
        *tag = t;
    return 0;
}

int mq_publish(mq *m, const char *exchange, const repl_msg *msg, uint64_t *tag, char *err,
               size_t errlen)
{
    return publish(m, exchange, msg->routing_key, msg, NULL, NULL, true, tag, err, errlen);
}

int mq_publish_receipt(mq *m, const repl_msg *carrier, uint64_t *tag, char *err, size_t errlen)
{
    /* Not mandatory: a receipt no queue takes (no peer federated) is
     * dropped by the broker, and no basic.return comes back to be told
     * from a dead letter's. */
    return publish(m, MQ_EXCHANGE_REQUESTS, carrier->routing_key, carrier, NULL, RECEIPT_TYPE,
                   false, tag, err, errlen);
}

int mq_publish_dead(mq *m, const char *node, const repl_msg *msg, const char *reason, char *err,
                    size_t errlen)
{
    return publish(m, MQ_EXCHANGE_DEAD, node, msg, reason ? reason : "", NULL, true, NULL, err,
                   errlen);
}

int mq_publish_to_queue(mq *m, const char *queue, const repl_msg *msg, char *err, size_t errlen)
{
    return publish(m, "", queue, msg, NULL, NULL, true, NULL, err, errlen);
}

/* ---- consuming ---- */

int mq_consume(mq *m, const char *queue, uint16_t prefetch, char *err, size_t errlen)
{
    if (check_alive(m, err, errlen) < 0)
        return -1;
    amqp_basic_qos(m->conn, MQ_CHANNEL, 0, prefetch, 0);
    if (rpc_check(m, "basic.qos", err, errlen) < 0)
        return -1;
    amqp_basic_consume(m->conn, MQ_CHANNEL, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0,
                       amqp_empty_table);
    char what[300];
    snprintf(what, sizeof what, "consume %s", queue);
    return rpc_check(m, what, err, errlen);
}

static void push_confirm(mq *m, const amqp_method_t *meth)
{
    if (m->npending == m->pending_cap) {
        m->pending_cap = m->pending_cap ? 2 * m->pending_cap : 16;
        m->pending = xrealloc(m->pending, m->pending_cap * sizeof m->pending[0]);
    }
    mq_confirm *c = &m->pending[m->npending++];
    if (meth->id == AMQP_BASIC_ACK_METHOD) {
        const amqp_basic_ack_t *a = meth->decoded;
        c->tag = a->delivery_tag;
        c->multiple = a->multiple;
        c->nack = false;
    } else {
        const amqp_basic_nack_t *n = meth->decoded;
        c->tag = n->delivery_tag;
        c->multiple = n->multiple;
        c->nack = true;
    }
}

static char *dup_bytes(amqp_bytes_t b)
{
    return xstrndup(b.bytes ? (const char *)b.bytes : "", b.len);
}

static void take_headers(const amqp_table_t *t, repl_msg *msg, char **reason)
{
    for (int i = 0; i < t->num_entries; i++) {
        const amqp_table_entry_t *e = &t->entries[i];
        /* Long strings: 'S' here, but other clients (and the management
         * API) may send them as byte arrays. */
        if (e->value.kind != AMQP_FIELD_KIND_UTF8 && e->value.kind != AMQP_FIELD_KIND_BYTES)
            continue;
        char **dst = NULL;
        const char *k = e->key.bytes;
        size_t kl = e->key.len;
#define KEY_IS(lit) (kl == sizeof(lit) - 1 && memcmp(k, lit, kl) == 0)
        if (KEY_IS("x-restspy-origin-body")) {
            amqp_bytes_t b = e->value.value.bytes;
            buf_reset(&msg->origin_body);
            if (b.len)
                buf_append(&msg->origin_body, b.bytes, b.len);
            continue;
        }
        if (KEY_IS("x-restspy-origin"))
            dst = &msg->origin;
        else if (KEY_IS("x-restspy-method"))
            dst = &msg->method;
        else if (KEY_IS("x-restspy-target"))
            dst = &msg->target;
        else if (KEY_IS("x-restspy-headers"))
            dst = &msg->headers;
        else if (KEY_IS("x-restspy-signature"))
            dst = &msg->signature;
        else if (KEY_IS("x-restspy-origin-status"))
            dst = &msg->origin_status;
        else if (KEY_IS("x-restspy-origin-digest"))
            dst = &msg->origin_digest;
        else if (KEY_IS("x-restspy-reason"))
            dst = reason;
#undef KEY_IS
        if (dst != NULL) {
            free(*dst);
            *dst = dup_bytes(e->value.value.bytes);
        }
    }
}

/* Reads the header and body frames that follow a basic.deliver or
 * basic.get-ok into a new message (ev->msg, ev->reason). Confirms queued
 * ahead of them are kept for mq_poll. */
static int read_content(mq *m, mq_event *ev, char *err, size_t errlen)
{
    int64_t deadline = util_mono_us() + (int64_t)MQ_CONTENT_TIMEOUT_MS * 1000;
    repl_msg *msg = repl_msg_new();
    char *reason = NULL;
    uint64_t size = 0;
    bool have_header = false;

    while (!have_header || msg->body.len < size) {
        amqp_frame_t f;
        struct timeval tv = tv_ms((deadline - util_mono_us()) / 1000);
        int rc = amqp_simple_wait_frame_noblock(m->conn, &f, &tv);
        if (rc != AMQP_STATUS_OK) {
            fail(m, err, errlen, "reading a message: %s", amqp_error_string2(rc));
            goto bad;
        }
        if (f.frame_type == AMQP_FRAME_METHOD) {
            amqp_method_number_t id = f.payload.method.id;
            if (id == AMQP_BASIC_ACK_METHOD || id == AMQP_BASIC_NACK_METHOD) {
                push_confirm(m, &f.payload.method);
                continue;
            }
            if (id == AMQP_CHANNEL_CLOSE_METHOD || id == AMQP_CONNECTION_CLOSE_METHOD) {
                fail_closed(m, &f.payload.method, f.channel, "reading a message", err, errlen);
                goto bad;
            }
            if (id == AMQP_CONNECTION_BLOCKED_METHOD || id == AMQP_CONNECTION_UNBLOCKED_METHOD)
                continue;
            fail(m, err, errlen, "reading a message: unexpected method 0x%08x", (unsigned)id);
            goto bad;
        }
        if (f.frame_type == AMQP_FRAME_HEADER && !have_header) {
            const amqp_basic_properties_t *p = f.payload.properties.decoded;
            size = f.payload.properties.body_size;
            have_header = true;
            if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
                size_t n = p->message_id.len < UUID7_STR_LEN ? p->message_id.len : UUID7_STR_LEN;
                memcpy(msg->id, p->message_id.bytes, n);
                msg->id[n] = '\0';
            }
            if (p->_flags & AMQP_BASIC_TIMESTAMP_FLAG)
                msg->timestamp = (int64_t)p->timestamp;
            if (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG)
                msg->content_type = dup_bytes(p->content_type);
            if (p->_flags & AMQP_BASIC_HEADERS_FLAG)
                take_headers(&p->headers, msg, &reason);
            ev->receipt = (p->_flags & AMQP_BASIC_TYPE_FLAG) &&
                          p->type.len == sizeof RECEIPT_TYPE - 1 &&
                          memcmp(p->type.bytes, RECEIPT_TYPE, p->type.len) == 0;
            buf_reserve(&msg->body, size);
            continue;
        }
        if (f.frame_type == AMQP_FRAME_BODY && have_header) {
            amqp_bytes_t b = f.payload.body_fragment;
            if (msg->body.len + b.len > size) {
                fail(m, err, errlen, "reading a message: body larger than announced");
                goto bad;
            }
            buf_append(&msg->body, b.bytes, b.len);
            continue;
        }
        fail(m, err, errlen, "reading a message: unexpected frame type %u", (unsigned)f.frame_type);
        goto bad;
    }
    ev->msg = msg;
    ev->reason = reason;
    return 0;

bad:
    repl_msg_free(msg);
    free(reason);
    return -1;
}

/* A delivery (from basic.deliver or basic.get-ok: the method's fields are
 * copied before read_content reuses the frame memory) into ev. 0 or -1. */
static int take_delivery(mq *m, uint64_t tag, bool redelivered, amqp_bytes_t routing_key,
                         mq_event *ev, char *err, size_t errlen)
{
    char *rk = dup_bytes(routing_key);
    if (read_content(m, ev, err, errlen) < 0) {
        free(rk);
        return -1;
    }
    ev->kind = MQ_DELIVERY;
    ev->tag = tag;
    ev->redelivered = redelivered;
    ev->msg->routing_key = rk;
    return 0;
}

/* A basic.return: the message that follows it (a mandatory publish that no
 * queue took) becomes an MQ_RETURN event. The broker sends it before the
 * confirm of that publish, and frames are read in arrival order, so the
 * caller sees the return first. */
static int take_return(mq *m, const amqp_basic_return_t *r, mq_event *ev, char *err, size_t errlen)
{
    /* Copied before read_content reads more frames (see the top). */
    uint16_t code = r->reply_code;
    char *text = dup_bytes(r->reply_text);
    char *rk = dup_bytes(r->routing_key);
    if (read_content(m, ev, err, errlen) < 0) {
        free(text);
        free(rk);
        return -1;
    }
    free(ev->reason); /* an x-restspy-reason header: not what a return reports */
    ev->kind = MQ_RETURN;
    ev->reply_code = code;
    ev->reason = text;
    ev->msg->routing_key = rk;
    return 0;
}

void mq_set_wake(mq *m, int fd)
{
    m->wake_fd = fd;
}

/* With a wake descriptor, mq_poll waits in its own poll(2) on the socket
 * and that descriptor, as rabbitmq-c can wait on its socket only. Returns
 * true when woken (the descriptor is drained); otherwise the socket has
 * data, or the wait ran out, and *tv is zeroed so that rabbitmq-c reads
 * what is there without waiting again (and, either way, runs its heartbeat
 * bookkeeping). Frames rabbitmq-c already holds are taken without any
 * wait. */
static bool wait_or_wake(mq *m, struct timeval *tv)
{
    if (amqp_frames_enqueued(m->conn) || amqp_data_in_buffer(m->conn))
        return false;
    struct pollfd p[2] = {
        {.fd = amqp_get_sockfd(m->conn), .events = POLLIN},
        {.fd = m->wake_fd, .events = POLLIN},
    };
    int ms = (int)(tv->tv_sec * 1000 + tv->tv_usec / 1000);
    int n = poll(p, 2, ms);
    tv->tv_sec = 0;
    tv->tv_usec = 0;
    if (n > 0 && (p[1].revents & POLLIN)) {
        uint64_t v;
        while (read(m->wake_fd, &v, sizeof v) > 0)
            ; /* an eventfd: one read resets it; a pipe: drain it */
        return !(p[0].revents & (POLLIN | POLLHUP | POLLERR));
    }
    return false;
}

int mq_poll(mq *m, int timeout_ms, mq_event *ev, char *err, size_t errlen)
{
    memset(ev, 0, sizeof *ev);
    if (check_alive(m, err, errlen) < 0)
        return -1;
    if (m->npending > 0) {
        ev->kind = MQ_CONFIRM;
        ev->tag = m->pending[0].tag;
        ev->multiple = m->pending[0].multiple;
        ev->nack = m->pending[0].nack;
        memmove(m->pending, m->pending + 1, (m->npending - 1) * sizeof m->pending[0]);
        m->npending--;
        return 0;
    }
    int64_t deadline = util_mono_us() + (int64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000;
    for (;;) {
        amqp_frame_t f;
        struct timeval tv = tv_ms((deadline - util_mono_us()) / 1000);
        if (m->wake_fd >= 0 && wait_or_wake(m, &tv))
            return 0; /* woken: the caller has other work */
        int rc = amqp_simple_wait_frame_noblock(m->conn, &f, &tv);
        if (rc == AMQP_STATUS_TIMEOUT)
            return 0;
        if (rc != AMQP_STATUS_OK)
            return fail(m, err, errlen, "AMQP connection lost: %s", amqp_error_string2(rc));
        if (f.frame_type != AMQP_FRAME_METHOD)
            continue; /* stray content of something we do not consume */
        const amqp_method_t *meth = &f.payload.method;
        switch (meth->id) {
        case AMQP_BASIC_ACK_METHOD:
        case AMQP_BASIC_NACK_METHOD:
            push_confirm(m, meth);
            return mq_poll(m, 0, ev, err, errlen);
        case AMQP_BASIC_DELIVER_METHOD: {
            const amqp_basic_deliver_t *d = meth->decoded;
            return take_delivery(m, d->delivery_tag, d->redelivered, d->routing_key, ev, err,
                                 errlen);
        }
        case AMQP_BASIC_RETURN_METHOD:
            return take_return(m, meth->decoded, ev, err, errlen);
        case AMQP_CHANNEL_CLOSE_METHOD:
        case AMQP_CONNECTION_CLOSE_METHOD:
            return fail_closed(m, meth, f.channel, "AMQP", err, errlen);
        case AMQP_BASIC_CANCEL_METHOD:
            return fail(m, err, errlen, "the broker cancelled the consumer (queue deleted?)");
        default:
            /* connection.blocked/unblocked, ...: nothing to do. */
            continue;
        }
    }
}

int mq_ack(mq *m, uint64_t tag, char *err, size_t errlen)
{
    if (check_alive(m, err, errlen) < 0)
        return -1;
    int rc = amqp_basic_ack(m->conn, MQ_CHANNEL, tag, 0);
    if (rc != AMQP_STATUS_OK)
        return fail(m, err, errlen, "basic.ack: %s", amqp_error_string2(rc));
    return 0;
}

int mq_reject(mq *m, uint64_t tag, bool requeue, char *err, size_t errlen)
{
    if (check_alive(m, err, errlen) < 0)
        return -1;
    int rc = amqp_basic_reject(m->conn, MQ_CHANNEL, tag, requeue);
    if (rc != AMQP_STATUS_OK)
        return fail(m, err, errlen, "basic.reject: %s", amqp_error_string2(rc));
    return 0;
}

int mq_get(mq *m, const char *queue, mq_event *ev, char *err, size_t errlen)
{
    memset(ev, 0, sizeof *ev);
    if (check_alive(m, err, errlen) < 0)
        return -1;
    amqp_rpc_reply_t r = amqp_basic_get(m->conn, MQ_CHANNEL, amqp_cstring_bytes(queue), 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        char what[300];
        snprintf(what, sizeof what, "basic.get %s", queue);
        return fail_reply(m, r, what, err, errlen);
    }
    if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
        return 0;
    const amqp_basic_get_ok_t *g = r.reply.decoded;
    if (take_delivery(m, g->delivery_tag, g->redelivered, g->routing_key, ev, err, errlen) < 0)
        return -1;
    return 1;
}
