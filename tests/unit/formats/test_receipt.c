/* Unit tests for receipt: the carrier of a receipt (fresh id, routing key,
 * JSON body, signature) read back field for field; the worked example of
 * docs/protocol.md section 10 (its signature computed independently with
 * `openssl dgst -hmac` and Python's hmac); forged, unsigned and altered
 * receipts refused with a secret; malformed bodies refused with the
 * reason; a write's signature never verifying a receipt. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "formats/receipt.h"

#define WRITE_ID "01936b2a-5c3e-7d4f-8a1b-2c3d4e5f6a7b"
#define CARRIER_ID "01a21bad-cce4-7434-a49c-cb20e745a858"
#define EXAMPLE_BODY                                                                               \
    "{\"message_id\":\"01936b2a-5c3e-7d4f-8a1b-2c3d4e5f6a7b\",\"origin\":\"paris\",\"node\":"      \
    "\"lyon\",\"outcome\":\"applied\",\"status\":201,\"at_us\":1732669760123456}"
/* printf 'restspy-receipt-v1\n%s\n%s' CARRIER_ID EXAMPLE_BODY | openssl dgst -sha256 -hmac s3cret
 */
#define EXAMPLE_SIG "49641f9eee84c2b0d3266b8ac51f9f6f2667874f29b93c6e6651e030dcb0d62d"

static receipt example(void)
{
    receipt r = {.origin = "paris",
                 .node = "lyon",
                 .outcome = RECEIPT_APPLIED,
                 .status = 201,
                 .at_us = 1732669760123456};
    memcpy(r.message_id, WRITE_ID, sizeof r.message_id);
    return r;
}

/* A carrier as the broker hands it over: id and body as given. */
static repl_msg *carrier(const char *id, const char *body, const char *sig)
{
    repl_msg *m = repl_msg_new();
    snprintf(m->id, sizeof m->id, "%s", id);
    buf_append_str(&m->body, body);
    m->signature = sig ? xstrdup(sig) : NULL;
    return m;
}

static void test_outcomes(void **state)
{
    (void)state;
    const char *names[] = {"applied", "dead-lettered", "skipped"};
    for (int i = 0; i < 3; i++) {
        receipt_outcome o;
        assert_string_equal(receipt_outcome_name((receipt_outcome)i), names[i]);
        assert_int_equal(receipt_outcome_parse(names[i], &o), 0);
        assert_int_equal(o, i);
    }
    receipt_outcome o;
    assert_int_equal(receipt_outcome_parse("Applied", &o), -1);
    assert_int_equal(receipt_outcome_parse(NULL, &o), -1);
}

static void test_round_trip(void **state)
{
    (void)state;
    receipt r = example();
    repl_msg *m = receipt_to_msg(&r, "s3cret");
    assert_int_equal(strlen(m->id), UUID7_STR_LEN);
    assert_string_not_equal(m->id, WRITE_ID); /* its own id, never the write's */
    assert_int_equal(m->timestamp, 1732669760);
    assert_string_equal(m->content_type, "application/json");
    assert_string_equal(m->routing_key, "paris.@receipt.lyon");
    assert_string_equal(m->body.data, EXAMPLE_BODY);
    assert_non_null(m->signature);
    assert_null(m->origin); /* no write headers: an older replicator cannot apply it */
    assert_null(m->method);
    assert_null(m->target);

    char why[128] = "";
    assert_int_equal(receipt_verify(m, "s3cret", why, sizeof why), 0);
    receipt back;
    assert_int_equal(receipt_from_msg(m, &back, why, sizeof why), 0);
    assert_string_equal(back.message_id, WRITE_ID);
    assert_string_equal(back.origin, "paris");
    assert_string_equal(back.node, "lyon");
    assert_int_equal(back.outcome, RECEIPT_APPLIED);
    assert_int_equal(back.status, 201);
    assert_int_equal(back.at_us, 1732669760123456);
    receipt_free(&back);
    assert_null(back.origin);
    repl_msg_free(m);

    /* Without a secret: unsigned; a status of 0 is null on the wire. */
    r.outcome = RECEIPT_SKIPPED;
    r.status = 0;
    m = receipt_to_msg(&r, NULL);
    assert_null(m->signature);
    assert_non_null(strstr(m->body.data, "\"outcome\":\"skipped\",\"status\":null"));
    assert_int_equal(receipt_verify(m, NULL, why, sizeof why), 0);
    assert_int_equal(receipt_from_msg(m, &back, why, sizeof why), 0);
    assert_int_equal(back.status, 0);
    assert_int_equal(back.outcome, RECEIPT_SKIPPED);
    receipt_free(&back);
    repl_msg_free(m);
}

static void test_worked_example(void **state)
{
    (void)state;
    repl_msg *m = carrier(CARRIER_ID, EXAMPLE_BODY, EXAMPLE_SIG);
    buf c = BUF_INIT;
    receipt_canonical(m, &c);
    assert_string_equal(c.data, "restspy-receipt-v1\n" CARRIER_ID "\n" EXAMPLE_BODY);
    buf_free(&c);
    char why[128] = "";
    assert_int_equal(receipt_verify(m, "s3cret", why, sizeof why), 0);
    repl_msg_free(m);
}

static void expect_refused(repl_msg *m, const char *secret, const char *want)
{
    char why[128] = "";
    assert_int_equal(receipt_verify(m, secret, why, sizeof why), -1);
    assert_string_equal(why, want);
    repl_msg_free(m);
}

static void test_forged(void **state)
{
    (void)state;
    expect_refused(carrier(CARRIER_ID, EXAMPLE_BODY, NULL), "s3cret", "unsigned receipt");
    expect_refused(carrier(CARRIER_ID, EXAMPLE_BODY, ""), "s3cret", "unsigned receipt");
    expect_refused(carrier(CARRIER_ID, EXAMPLE_BODY, EXAMPLE_SIG), "other", "bad signature");
    /* Upper case, short, and a body or id altered after signing. */
    char upper[] = EXAMPLE_SIG;
    for (char *p = upper; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    expect_refused(carrier(CARRIER_ID, EXAMPLE_BODY, upper), "s3cret", "bad signature");
    expect_refused(carrier(CARRIER_ID, EXAMPLE_BODY, "49641f9e"), "s3cret", "bad signature");
    char altered[] = EXAMPLE_BODY;
    *strstr(altered, "201") = '4';
    expect_refused(carrier(CARRIER_ID, altered, EXAMPLE_SIG), "s3cret", "bad signature");
    expect_refused(carrier("01a21bad-cce4-7434-a49c-cb20e745a859", EXAMPLE_BODY, EXAMPLE_SIG),
                   "s3cret", "bad signature");

    /* A write's signature (over the write's canonical form of the same
     * fields) does not sign a receipt. */
    repl_msg *w = carrier(CARRIER_ID, EXAMPLE_BODY, NULL);
    repl_msg_sign(w, "s3cret");
    expect_refused(w, "s3cret", "bad signature");
}

static void expect_malformed(const char *body, const char *want)
{
    repl_msg *m = carrier(CARRIER_ID, body, NULL);
    receipt r;
    char why[128] = "";
    assert_int_equal(receipt_from_msg(m, &r, why, sizeof why), -1);
    assert_string_equal(why, want);
    assert_null(r.origin);
    assert_null(r.node);
    repl_msg_free(m);
}

static void test_malformed(void **state)
{
    (void)state;
    expect_malformed("", "malformed receipt: not a JSON object");
    expect_malformed("[1]", "malformed receipt: not a JSON object");
    expect_malformed("{\"message_id\":\"x\"}",
                     "malformed receipt: no message_id (a lowercase UUID)");
    expect_malformed("{\"message_id\":\"01936B2A-5C3E-7D4F-8A1B-2C3D4E5F6A7B\"}",
                     "malformed receipt: no message_id (a lowercase UUID)");
    expect_malformed("{\"message_id\":\"" WRITE_ID "\",\"node\":\"lyon\"}",
                     "malformed receipt: a missing or empty name");
    expect_malformed("{\"message_id\":\"" WRITE_ID "\",\"origin\":\"pa\\nris\",\"node\":\"l\"}",
                     "malformed receipt: a control byte in a name");
    expect_malformed("{\"message_id\":\"" WRITE_ID
                     "\",\"origin\":\"p\",\"node\":\"l\",\"outcome\":\"done\"}",
                     "malformed receipt: an unknown outcome");
    expect_malformed("{\"message_id\":\"" WRITE_ID "\",\"origin\":\"p\",\"node\":\"l\","
                     "\"outcome\":\"applied\",\"status\":\"201\",\"at_us\":1}",
                     "malformed receipt: a status that is neither null nor an HTTP status");
    expect_malformed("{\"message_id\":\"" WRITE_ID "\",\"origin\":\"p\",\"node\":\"l\","
                     "\"outcome\":\"applied\",\"status\":42,\"at_us\":1}",
                     "malformed receipt: a status that is neither null nor an HTTP status");
    expect_malformed("{\"message_id\":\"" WRITE_ID "\",\"origin\":\"p\",\"node\":\"l\","
                     "\"outcome\":\"applied\",\"status\":null}",
                     "malformed receipt: no at_us");
    expect_malformed("{\"message_id\":\"" WRITE_ID "\",\"origin\":\"p\",\"origin\":\"q\"}",
                     "malformed receipt: not a JSON object");
}

static void test_routing_key(void **state)
{
    (void)state;
    char *k = receipt_routing_key("eu.west", "ly#on");
    assert_string_equal(k, "eu_west.@receipt.ly_on");
    free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outcomes),       cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_worked_example), cmocka_unit_test(test_forged),
        cmocka_unit_test(test_malformed),      cmocka_unit_test(test_routing_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
