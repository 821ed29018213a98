/* receipt: building, reading, signing and verifying apply receipts. The
 * format is specified in docs/protocol.md (section 10); a change here is a
 * protocol change (bump the "restspy-receipt-v1" tag). */
#include "formats/receipt.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "base/util.h"

#define RECEIPT_CANON_TAG "restspy-receipt-v1"

static const char *const outcome_names[] = {"applied", "dead-lettered", "skipped", "diverged"};

const char *receipt_outcome_name(receipt_outcome o)
{
    return (unsigned)o < sizeof outcome_names / sizeof outcome_names[0] ? outcome_names[o] : "?";
}

int receipt_outcome_parse(const char *s, receipt_outcome *o)
{
    for (size_t i = 0; s && i < sizeof outcome_names / sizeof outcome_names[0]; i++) {
        if (strcmp(s, outcome_names[i]) == 0) {
            *o = (receipt_outcome)i;
            return 0;
        }
    }
    return -1;
}

void receipt_free(receipt *r)
{
    free(r->origin);
    free(r->node);
    r->origin = r->node = NULL;
}

char *receipt_routing_key(const char *origin, const char *node)
{
    /* A write's key with "@receipt" for its method and the node for its
     * path: one implementation of the words' rules and of the 255 cut. */
    return repl_routing_key(origin, "@receipt", node);
}

/* The JSON body of r: compact, fields in a fixed order. */
static void body_json(const receipt *r, buf *out)
{
    buf_append_str(out, "{\"message_id\":");
    buf_append_json_str(out, r->message_id, strlen(r->message_id));
    buf_append_str(out, ",\"origin\":");
    buf_append_json_str(out, r->origin ? r->origin : "", r->origin ? strlen(r->origin) : 0);
    buf_append_str(out, ",\"node\":");
    buf_append_json_str(out, r->node ? r->node : "", r->node ? strlen(r->node) : 0);
    buf_appendf(out, ",\"outcome\":\"%s\",\"status\":", receipt_outcome_name(r->outcome));
    if (r->status > 0)
        buf_append_i64(out, r->status);
    else
        buf_append_str(out, "null");
    buf_append_str(out, ",\"at_us\":");
    buf_append_i64(out, (long long)r->at_us);
    buf_append_char(out, '}');
}

void receipt_canonical(const repl_msg *carrier, buf *out)
{
    buf_append_str(out, RECEIPT_CANON_TAG);
    buf_append_char(out, '\n');
    buf_append_str(out, carrier->id);
    buf_append_char(out, '\n');
    if (carrier->body.len)
        buf_append(out, carrier->body.data, carrier->body.len);
}

/* The signature of carrier for secret (non-empty) into hex. */
static void sign_hex(const repl_msg *carrier, const char *secret, char hex[REPL_SIG_HEX + 1])
{
    buf c = BUF_INIT;
    receipt_canonical(carrier, &c);
    repl_hmac_hex(secret, c.data, c.len, hex);
    buf_free(&c);
}

repl_msg *receipt_to_msg(const receipt *r, const char *secret)
{
    repl_msg *m = repl_msg_new();
    uuid7_generate(m->id);
    m->timestamp = r->at_us >= 0 ? r->at_us / 1000000 : 0;
    m->content_type = xstrdup("application/json");
    m->routing_key = receipt_routing_key(r->origin, r->node);
    body_json(r, &m->body);
    if (secret && *secret) {
        char hex[REPL_SIG_HEX + 1];
        sign_hex(m, secret, hex);
        m->signature = xstrdup(hex);
    }
    return m;
}

/* A non-empty string member k of o without control bytes, copied into
 * *dst, or NULL (and *dst untouched) with what is wrong. */
static const char *take_name(json_t *o, const char *k, char **dst)
{
    const char *s = json_string_value(json_object_get(o, k));
    if (!s || !*s)
        return "a missing or empty name";
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return "a control byte in a name";
    *dst = xstrdup(s);
    return NULL;
}

/* The fields of a parsed body into out; NULL or what is wrong. */
static const char *fields(json_t *o, receipt *out)
{
    const char *id = json_string_value(json_object_get(o, "message_id"));
    if (!id || uuid7_canonical(id, strlen(id), out->message_id) != 0 ||
        strcmp(id, out->message_id) != 0)
        return "no message_id (a lowercase UUID)";
    const char *bad = take_name(o, "origin", &out->origin);
    if (!bad)
        bad = take_name(o, "node", &out->node);
    if (bad)
        return bad;
    if (receipt_outcome_parse(json_string_value(json_object_get(o, "outcome")), &out->outcome))
        return "an unknown outcome";
    json_t *st = json_object_get(o, "status");
    if (!json_is_null(st) &&
        (!json_is_integer(st) || json_integer_value(st) < 100 || json_integer_value(st) > 999))
        return "a status that is neither null nor an HTTP status";
    out->status = json_is_integer(st) ? (int)json_integer_value(st) : 0;
    json_t *at = json_object_get(o, "at_us");
    if (!json_is_integer(at))
        return "no at_us";
    out->at_us = (int64_t)json_integer_value(at);
    return NULL;
}

int receipt_from_msg(const repl_msg *carrier, receipt *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *o = json_loadb(carrier->body.data ? carrier->body.data : "", carrier->body.len,
                           JSON_REJECT_DUPLICATES, &je);
    const char *bad = !json_is_object(o) ? "not a JSON object" : fields(o, out);
    json_decref(o);
    if (bad) {
        snprintf(why, whylen, "malformed receipt: %s", bad);
        receipt_free(out);
        memset(out, 0, sizeof *out);
        return -1;
    }
    return 0;
}

int receipt_verify(const repl_msg *carrier, const char *secret, char *why, size_t whylen)
{
    buf c = BUF_INIT;
    if (secret && *secret)
        receipt_canonical(carrier, &c);
    int rc = repl_sig_check(secret, &c, carrier->signature, "receipt", why, whylen);
    buf_free(&c);
    return rc;
}
