#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture/config.h"
#include "capture/rules.h"
#include "base/util.h"

/* Writes text to a fresh temp file; the caller unlinks and frees the name. */
static char *write_tmp(const char *text)
{
    char *path = xstrdup("/tmp/test_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void drop_tmp(char *path)
{
    unlink(path);
    free(path);
}

/* Loads text as a config file into a fresh config. Returns the rc; err gets
 * the message with the temp path replaced by "F" so tests can compare it. */
static int load_text(config **out, const char *text, char *err, size_t errlen)
{
    char *path = write_tmp(text);
    config *c = config_new();
    char raw[512] = "";
    int rc = config_load_file(c, path, raw, sizeof raw);
    size_t pl = strlen(path);
    if (strncmp(raw, path, pl) == 0)
        snprintf(err, errlen, "F%s", raw + pl);
    else
        snprintf(err, errlen, "%s", raw);
    drop_tmp(path);
    *out = c;
    return rc;
}

static size_t list_len(char **l)
{
    size_t n = 0;
    while (l[n])
        n++;
    return n;
}

static void test_defaults(void **state)
{
    (void)state;
    config *c = config_new();
    assert_string_equal(c->listen, "127.0.0.1:8080");
    assert_null(c->upstream);
    assert_null(c->config_path);
    assert_string_equal(c->store, "sqlite:restspy.db");
    assert_string_equal(c->log, "-");
    assert_int_equal(c->log_format, LOG_FORMAT_JSON);
    assert_true(c->log_headers);
    assert_false(c->log_bodies);
    assert_string_equal(c->admin, "127.0.0.1:8081");
    assert_null(c->admin_token);
    assert_int_equal(c->workers, 0);
    char host[256];
    if (gethostname(host, sizeof host) == 0 && host[0])
        assert_string_equal(c->node, host);
    else
        assert_string_equal(c->node, "restspy");
    assert_int_equal(c->max_header_size, 16 * 1024);
    assert_int_equal(c->max_request_line, 8 * 1024);
    assert_int_equal(c->max_body_size, 0);
    assert_int_equal(c->header_timeout_ms, 10000);
    assert_int_equal(c->client_timeout_ms, 30000);
    assert_int_equal(c->idle_timeout_ms, 60000);
    assert_int_equal(c->upstream_connect_timeout_ms, 5000);
    assert_int_equal(c->upstream_timeout_ms, 60000);
    assert_int_equal(c->grace_period_ms, 10000);
    assert_int_equal(c->max_connections, 10000);
    assert_int_equal(c->upstream_keepalive, 64);
    assert_int_equal(c->store_queue, 65536);
    assert_int_equal(c->store_queue_bytes, 64 << 20);
    assert_int_equal(c->store_batch, 512);
    assert_int_equal(c->store_on_full, STORE_FULL_BLOCK);
    assert_int_equal(c->max_rows, 0);
    assert_int_equal(c->max_age_ms, 0);
    assert_int_equal(c->busy_timeout_ms, 5000);
    assert_true(c->redact);
    const char *hdrs[] = {"authorization", "proxy-authorization", "cookie", "set-cookie",
                          "x-api-key"};
    assert_int_equal(list_len(c->redact_headers), 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(c->redact_headers[i], hdrs[i]);
    const char *fields[] = {"password",      "passwd",  "secret", "token",    "access_token",
                            "refresh_token", "api_key", "apikey", "signature"};
    assert_int_equal(list_len(c->redact_fields), 9);
    for (size_t i = 0; i < 9; i++)
        assert_string_equal(c->redact_fields[i], fields[i]);
    /* End-user credentials are not replicated unless asked (issue 10). */
    const char *drop[] = {"authorization", "proxy-authorization", "cookie", "x-api-key"};
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(c->replicate_drop_headers[i], drop[i]);
    assert_int_equal(c->retry_max_age_ms, 3600000);
    assert_int_equal(c->retry_max_attempts, 0);
    assert_int_equal(c->apply_order, APPLY_ORDER_RESOURCE);
    assert_int_equal(c->stuck_after_ms, 30000);
    assert_int_equal(c->rules_len, 1);
    const rule *d = &c->rules[0];
    assert_string_equal(d->name, "default");
    assert_int_equal(d->methods, RULE_METHOD_ANY);
    assert_null(d->path);
    assert_null(d->host);
    assert_true(d->log);
    assert_true(d->persist);
    /* replication (with amqp set) takes the writes by default */
    assert_true(d->replicate);
    assert_int_equal(d->replicate_methods, RULE_M_POST | RULE_M_PUT | RULE_M_PATCH | RULE_M_DELETE);
    assert_int_equal(d->req_body_cap, 64 * 1024);
    assert_int_equal(d->resp_body_cap, 64 * 1024);
    char err[256];
    assert_int_equal(config_validate(c, err, sizeof err), 0);
    config_unref(c);
}

static void test_refcount(void **state)
{
    (void)state;
    config *c = config_new();
    config_ref(c);
    config_ref(c);
    config_unref(c);
    config_unref(c);
    assert_string_equal(c->listen, "127.0.0.1:8080"); /* still alive */
    config_unref(c);                                  /* valgrind: freed exactly once */
    config_unref(NULL);
}

static void test_set_values(void **state)
{
    (void)state;
    config *c = config_new();
    char err[256];
#define SET(k, v) assert_int_equal(config_set(c, k, v, err, sizeof err), 0)
    SET("workers", "4");
    assert_int_equal(c->workers, 4);
    SET("workers", "256");
    assert_int_equal(c->workers, 256);
    SET("max_body_size", "10M");
    assert_int_equal(c->max_body_size, 10 * 1024 * 1024);
    SET("max_header_size", "512");
    assert_int_equal(c->max_header_size, 512);
    SET("header_timeout", "10");
    assert_int_equal(c->header_timeout_ms, 10000); /* plain number: seconds */
    SET("header_timeout", "10s");
    assert_int_equal(c->header_timeout_ms, 10000);
    SET("header_timeout", "500ms");
    assert_int_equal(c->header_timeout_ms, 500);
    SET("idle_timeout", "2m");
    assert_int_equal(c->idle_timeout_ms, 120000);
    SET("max_age", "7d");
    assert_int_equal(c->max_age_ms, 7ULL * 86400 * 1000);
    SET("log_bodies", "yes");
    assert_true(c->log_bodies);
    SET("redact", "off");
    assert_false(c->redact);
    SET("log_format", "combined");
    assert_int_equal(c->log_format, LOG_FORMAT_COMBINED);
    SET("log_format", "JSON");
    assert_int_equal(c->log_format, LOG_FORMAT_JSON);
    SET("store_on_full", "drop");
    assert_int_equal(c->store_on_full, STORE_FULL_DROP);
    SET("store", "off");
    assert_string_equal(c->store, "off");
    SET("store", "sqlite:/var/lib/x.db");
    assert_string_equal(c->store, "sqlite:/var/lib/x.db");
    SET("log", "/tmp/access.log");
    assert_string_equal(c->log, "/tmp/access.log");
    SET("admin", "off");
    assert_string_equal(c->admin, "off");
    SET("admin", "[::1]:9000");
    assert_string_equal(c->admin, "[::1]:9000");
    SET("listen", "0.0.0.0:80");
    assert_string_equal(c->listen, "0.0.0.0:80");
    /* a bare port is loopback, ":port" every interface (issue 9 item 14) */
    SET("listen", "23100");
    assert_string_equal(c->listen, "127.0.0.1:23100");
    SET("listen", ":23100");
    assert_string_equal(c->listen, "0.0.0.0:23100");
    SET("admin", "23101");
    assert_string_equal(c->admin, "127.0.0.1:23101");
    SET("admin", ":23101");
    assert_string_equal(c->admin, "0.0.0.0:23101");
    SET("admin", "OFF");
    assert_string_equal(c->admin, "off");
    assert_null(c->admin_hosts);
    SET("admin_hosts", "Restspy.Internal, [::1]:8081,127.0.0.1:80");
    assert_int_equal(list_len(c->admin_hosts), 3);
    assert_string_equal(c->admin_hosts[0], "restspy.internal");
    assert_string_equal(c->admin_hosts[1], "[::1]:8081");
    SET("admin_hosts", "");
    assert_int_equal(list_len(c->admin_hosts), 0);
    assert_int_equal(c->amqp_log_interval_ms, 60000);
    SET("amqp_log_interval", "5s");
    assert_int_equal(c->amqp_log_interval_ms, 5000);
    assert_int_equal(c->healthz_degraded_status, 200);
    SET("healthz_degraded_status", "503");
    assert_int_equal(c->healthz_degraded_status, 503);
    SET("admin_token", "s3cret");
    assert_string_equal(c->admin_token, "s3cret");
    SET("admin_token", "");
    assert_null(c->admin_token);
    SET("node", "node-a");
    assert_string_equal(c->node, "node-a");
    /* default-rule keys reach the last rule */
    SET("log_requests", "off");
    SET("replicate_requests", "off");
    SET("replicate_methods", "*");
    SET("req_body_cap", "1K");
    SET("resp_body_cap", "0");
    assert_false(c->rules[0].log);
    assert_false(c->rules[0].replicate);
    assert_int_equal(c->rules[0].replicate_methods, RULE_METHOD_ANY);
    assert_int_equal(c->rules[0].req_body_cap, 1024);
    assert_int_equal(c->rules[0].resp_body_cap, 0);
    /* '-' and '_' and case are interchangeable in names */
    SET("Log-Format", "combined");
    assert_int_equal(c->log_format, LOG_FORMAT_COMBINED);
#undef SET
    config_unref(c);
}

static void test_upstream(void **state)
{
    (void)state;
    config *c = config_new();
    char err[256];
    assert_int_equal(config_set(c, "upstream", "http://127.0.0.1:8000", err, sizeof err), 0);
    assert_string_equal(c->upstream, "http://127.0.0.1:8000");
    assert_int_equal(config_set(c, "upstream", "http://backend:9000/", err, sizeof err), 0);
    assert_string_equal(c->upstream, "http://backend:9000");
    assert_int_equal(config_set(c, "upstream", "HTTP://backend", err, sizeof err), 0);
    assert_string_equal(c->upstream, "http://backend:80");
    assert_int_equal(config_set(c, "upstream", "http://[::1]:8000", err, sizeof err), 0);
    assert_string_equal(c->upstream, "http://[::1]:8000");

    assert_int_equal(config_set(c, "upstream", "HTTPS://backend", err, sizeof err), 0);
    assert_string_equal(c->upstream, "https://backend:443");
    assert_int_equal(config_set(c, "upstream", "ftp://backend:21", err, sizeof err), -1);
    assert_non_null(strstr(err, "expected http://host:port or https://host:port"));
    assert_non_null(strstr(err, "bad value for upstream: 'ftp://backend:21'"));
    const char *bad[] = {"backend:80",     "http://",         "http://:80",
                         "http://h:99999", "http://h:80/api", "http://u@h:80",
                         "ftp://h:21",     "http://h:0",      "http://h:x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (config_set(c, "upstream", bad[i], err, sizeof err) != -1)
            fail_msg("accepted upstream %s", bad[i]);
        assert_non_null(strstr(err, "expected http://host:port"));
    }
    assert_string_equal(c->upstream, "https://backend:443"); /* unchanged by failures */
    assert_int_equal(config_set(c, "upstream", "", err, sizeof err), 0);
    assert_null(c->upstream);
    config_unref(c);
}

static void test_bad_values(void **state)
{
    (void)state;
    config *c = config_new();
    char err[256];
    static const struct {
        const char *key, *value, *msg;
    } cases[] = {
        {"workers", "abc", "bad value for workers: 'abc' (expected a whole number 0-256)"},
        {"workers", "257", "bad value for workers: '257' (expected a whole number 0-256)"},
        {"workers", "-1", "bad value for workers: '-1' (expected a whole number 0-256)"},
        {"workers", "4x", "bad value for workers: '4x' (expected a whole number 0-256)"},
        {"foo", "1", "unknown key 'foo'"},
        {"log_format", "xml", "bad value for log_format: 'xml' (expected json or combined)"},
        {"store_on_full", "maybe", "bad value for store_on_full: 'maybe' (expected block or drop)"},
        {"apply_order", "path",
         "bad value for apply_order: 'path' (expected resource, strict or origin)"},
        {"retry_max_age", "soon",
         "bad value for retry_max_age: 'soon' (expected a duration like 10, 10s, 500ms or 2m)"},
        {"log_headers", "perhaps", "bad value for log_headers: 'perhaps' (expected on or off)"},
        {"max_header_size", "lots",
         "bad value for max_header_size: 'lots' (expected a size like 512, 64K or 1M, at "
         "least 1)"},
        {"max_header_size", "0",
         "bad value for max_header_size: '0' (expected a size like 512, 64K or 1M, at least 1)"},
        {"req_body_cap", "2G",
         "bad value for req_body_cap: '2G' (expected a size like 512, 64K or 1M, at most 1G)"},
        {"header_timeout", "soon",
         "bad value for header_timeout: 'soon' (expected a duration like 10, 10s, 500ms or 2m, "
         "at least 1ms)"},
        {"header_timeout", "0", NULL},
        {"busy_timeout", "5x",
         "bad value for busy_timeout: '5x' (expected a duration like 10, 10s, 500ms or 2m)"},
        {"max_connections", "0",
         "bad value for max_connections: '0' (expected a whole number, at least 1)"},
        {"store_queue", "1e3", NULL},
        {"store_claim_lease", "500ms",
         "bad value for store_claim_lease: '500ms' (expected a duration like 10, 10s, 500ms or "
         "2m, at least 1000ms)"},
        {"store_claim_lease", "soon", NULL},
        {"listen", "localhost",
         "bad value for listen: 'localhost' (expected host:port, :port (all interfaces) or port "
         "(loopback), e.g. 127.0.0.1:8080)"},
        {"listen", "off", NULL},
        {"listen", "70000", NULL},
        {"listen", ":", NULL},
        {"admin", "localhost",
         "bad value for admin: 'localhost' (expected host:port, :port (all interfaces), port "
         "(loopback) or off)"},
        {"admin", ":x", NULL},
        {"admin_hosts", "a b",
         "bad value for admin_hosts: 'a b' (expected comma-separated host names, each with an "
         "optional :port)"},
        {"admin_hosts", "ok.example, x/y", NULL},
        {"admin_hosts", "x:", NULL},
        {"admin_hosts", "[::1", NULL},
        {"admin_hosts", "\x01", NULL},
        {"healthz_degraded_status", "199",
         "bad value for healthz_degraded_status: '199' (expected a whole number 200-599)"},
        {"healthz_degraded_status", "600", NULL},
        {"amqp_log_interval", "10ms", NULL},
        {"store", "postgres:x",
         "bad value for store: 'postgres:x' (expected sqlite:PATH, "
         "postgresql://[user@]host[:port]/db or off)"},
        {"store", "sqlite:", NULL},
        {"log", "", NULL},
        {"node", "", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        if (config_set(c, cases[i].key, cases[i].value, err, sizeof err) != -1)
            fail_msg("accepted %s=%s", cases[i].key, cases[i].value);
        if (cases[i].msg)
            assert_string_equal(err, cases[i].msg);
        else
            assert_true(strncmp(err, "bad value for ", 14) == 0);
        assert_null(strchr(err, '\n'));
    }
    /* nothing changed */
    assert_int_equal(c->workers, 0);
    assert_int_equal(c->max_header_size, 16 * 1024);
    assert_int_equal(c->header_timeout_ms, 10000);
    assert_string_equal(c->listen, "127.0.0.1:8080");
    assert_string_equal(c->store, "sqlite:restspy.db");
    /* errors with no buffer are fine */
    assert_int_equal(config_set(c, "workers", "x", NULL, 0), -1);
    config_unref(c);
}

static void test_lists(void **state)
{
    (void)state;
    config *c = config_new();
    char err[256];
    assert_int_equal(config_set(c, "redact_headers", " X-Token , Cookie,,  ", err, sizeof err), 0);
    assert_int_equal(list_len(c->redact_headers), 2);
    assert_string_equal(c->redact_headers[0], "x-token");
    assert_string_equal(c->redact_headers[1], "cookie");
    assert_int_equal(config_set(c, "redact_fields", "", err, sizeof err), 0);
    assert_non_null(c->redact_fields);
    assert_int_equal(list_len(c->redact_fields), 0);
    assert_int_equal(config_set(c, "redact_fields", "PIN", err, sizeof err), 0);
    assert_int_equal(list_len(c->redact_fields), 1);
    assert_string_equal(c->redact_fields[0], "pin");
    config_unref(c);
}

static void test_file(void **state)
{
    (void)state;
    const char *text = "; restspy test config\n"
                       "upstream = http://127.0.0.1:9000\n"
                       "workers = 2\n"
                       "log_requests = off\n"
                       "\n"
                       "[restspy]\n"
                       "log_format = combined   ; inline comment\n"
                       "# hash comment\n"
                       "redact_fields = pin, CVV\n"
                       "node = \"quoted-node\"\n"
                       "\n"
                       "[rule \"health\"]\n"
                       "path = /health\n"
                       "log = off\n"
                       "persist = off\n"
                       "\n"
                       "[rule writes]\n"
                       "methods = POST, put,DELETE\n"
                       "path = /api/**\n"
                       "host = api.example.com\n"
                       "replicate = no\n"
                       "req_body_cap = 1M\n"
                       "resp_body_cap = 0\n"
                       "[rule \"catch all gets\"]\n"
                       "methods = GET\n"
                       "[rule \"empty\"]\n"
                       "[restspy]\n"
                       "replicate_requests = off\n";
    config *c;
    char err[512];
    int rc = load_text(&c, text, err, sizeof err);
    if (rc != 0)
        fail_msg("%s", err);
    assert_string_equal(c->upstream, "http://127.0.0.1:9000");
    assert_int_equal(c->workers, 2);
    assert_int_equal(c->log_format, LOG_FORMAT_COMBINED);
    assert_int_equal(list_len(c->redact_fields), 2);
    assert_string_equal(c->redact_fields[1], "cvv");
    assert_string_equal(c->node, "quoted-node");
    assert_non_null(c->config_path);
    assert_true(strncmp(c->config_path, "/tmp/test_config_", 17) == 0);

    assert_int_equal(c->rules_len, 5);
    const rule *r = &c->rules[0];
    assert_string_equal(r->name, "health");
    assert_string_equal(r->path, "/health");
    assert_null(r->host);
    assert_int_equal(r->methods, RULE_METHOD_ANY);
    assert_false(r->log);
    assert_false(r->persist);
    assert_true(r->replicate); /* built-in rule value */
    assert_int_equal(r->req_body_cap, 64 * 1024);

    r = &c->rules[1];
    assert_string_equal(r->name, "writes");
    assert_int_equal(r->methods, RULE_M_POST | RULE_M_PUT | RULE_M_DELETE);
    assert_string_equal(r->path, "/api/**");
    assert_string_equal(r->host, "api.example.com");
    assert_true(r->log); /* missing keys: built-in rule values */
    assert_true(r->persist);
    assert_false(r->replicate);
    assert_int_equal(r->req_body_cap, 1024 * 1024);
    assert_int_equal(r->resp_body_cap, 0);

    r = &c->rules[2];
    assert_string_equal(r->name, "catch all gets");
    assert_int_equal(r->methods, RULE_M_GET);
    /* built-in values, not the default rule's (log_requests = off above) */
    assert_true(r->log);

    /* a section with no keys still makes a rule */
    assert_string_equal(c->rules[3].name, "empty");
    assert_int_equal(c->rules[3].methods, RULE_METHOD_ANY);

    r = &c->rules[4];
    assert_string_equal(r->name, "default");
    assert_false(r->log);
    assert_true(r->persist);
    /* top-level rule keys after the rules still reach the default rule only */
    assert_false(r->replicate);
    for (size_t i = 0; i < 4; i++)
        if (i != 1)
            assert_true(c->rules[i].replicate);
    config_unref(c);
}

/* Inline comments (issue 9 item 14): '#' and ';' after whitespace start a
 * comment whatever inih was built with; inside a word or a quoted value they
 * are part of the value. */
static void test_file_inline_comments(void **state)
{
    (void)state;
    const char *text = "listen = 23100 # loopback\n"
                       "admin = :23101 ; all interfaces\n"
                       "admin_token = ab#cd;ef  # a secret with # and ;\n"
                       "node = \"n-1\"   # quoted, then a comment\n"
                       "replicate_secret = \" x #y ;z \"\n"
                       "log = \"/tmp/a;b #c\" ; comment \"quoted\"\n"
                       "store = sqlite:/tmp/x#y.db\n"
                       "redact_fields = pin,\t# comment after a tab\n"
                       "[rule \"a\"] # comment after a section\n"
                       "path = /x # comment\n"
                       "methods = GET ;POST\n"
                       "[restspy] ; again\n"
                       "set_header = X-A: \"q\"x\n"
                       "workers =\t# nothing but a comment\n";
    config *c;
    char err[512];
    int rc = load_text(&c, text, err, sizeof err);
    /* "workers =" with only a comment is an empty value: refused */
    assert_int_equal(rc, -1);
    assert_string_equal(err, "F:14: bad value for workers: '' (expected a whole number 0-256)");
    assert_string_equal(c->listen, "127.0.0.1:23100");
    assert_string_equal(c->admin, "0.0.0.0:23101");
    assert_string_equal(c->admin_token, "ab#cd;ef");
    assert_string_equal(c->node, "n-1");
    assert_string_equal(c->replicate_secret, " x #y ;z ");
    assert_string_equal(c->log, "/tmp/a;b #c");
    assert_string_equal(c->store, "sqlite:/tmp/x#y.db");
    assert_int_equal(list_len(c->redact_fields), 1);
    assert_string_equal(c->redact_fields[0], "pin");
    assert_int_equal(c->rules_len, 2);
    assert_string_equal(c->rules[0].name, "a");
    assert_string_equal(c->rules[0].path, "/x");
    assert_int_equal(c->rules[0].methods, RULE_M_GET);
    /* a quote that does not close the value is an ordinary character */
    assert_string_equal(c->set_headers[0], "X-A: \"q\"x");
    config_unref(c);

    /* An unterminated quote is kept as written; the comment still goes. */
    rc = load_text(&c, "admin_token = \"abc # c\nlog = \"x\"y\" # c\n", err, sizeof err);
    if (rc != 0)
        fail_msg("%s", err);
    assert_string_equal(c->admin_token, "\"abc");
    assert_string_equal(c->log, "x\"y"); /* quotes around the whole value removed */
    config_unref(c);
}

static void test_file_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text, *msg;
    } cases[] = {
        {"workers = 2\nfoo = 1\n", "F:2: unknown key 'foo'"},
        {"workers = lots\n", "F:1: bad value for workers: 'lots' (expected a whole number 0-256)"},
        {"[restspy]\n\n[rule \"a\"]\npath = /x\nmethod = GET\n",
         "F:5: unknown key 'method' in [rule \"a\"]"},
        {"[rule \"a\"]\nlog_requests = off\n", "F:2: unknown key 'log_requests' in [rule \"a\"]"},
        {"[server]\nlisten = 1.2.3.4:80\n",
         "F:1: unknown section [server] (expected [restspy] or [rule \"name\"])"},
        {"[server]\n", "F:1: unknown section [server] (expected [restspy] or [rule \"name\"])"},
        {"[rule \"a\"]\npath = /a\n[rule \"b\"]\n[rule \"a\"]\npath = /c\n",
         "F:4: duplicate rule name 'a'"},
        {"[rule \"a\"]\n[rule \"a\"]\n", "F:2: duplicate rule name 'a'"},
        {"[rule \"default\"]\n", "F:1: duplicate rule name 'default'"},
        {"[rule \"\"]\n", "F:1: rule name must not be empty"},
        {"[rule   ]\n", "F:1: rule name must not be empty"},
        {"[rule \"a]\n", "F:1: bad rule section [rule \"a] (expected [rule \"name\"])"},
        {"[rule \"a\"]\nmethods = GET;POST\n",
         "F:2: bad value for methods: 'GET;POST' (expected methods like GET, POST or *)"},
        {"[rule \"a\"]\nmethods =\n",
         "F:2: bad value for methods: '' (expected methods like GET, POST or *)"},
        {"[rule \"a\"]\npath = api/**\n", NULL},
        {"[rule \"a\"]\nhost = example.com:8080\n",
         "F:2: bad value for host: 'example.com:8080' (expected a host name without port)"},
        {"[rule \"a\"]\nreplicate = sometimes\n",
         "F:2: bad value for replicate: 'sometimes' (expected on or off)"},
        {"config = /etc/other.ini\n", "F:1: key 'config' cannot be set inside a config file"},
        {"workers = 1\nthis line has no equals\n",
         "F:2: syntax error (expected key = value or [section])"},
        {"[restspy\nworkers = 1\n", "F:1: syntax error (expected key = value or [section])"},
        /* an indented line after a key continues its value (inih), even if
         * it looks like a section header */
        {"[rule \"a\"]\nmethods = GET\n  [x]\n",
         "F:3: bad value for methods: '[x]' (expected methods like GET, POST or *)"},
        /* the earliest error is reported, whichever kind it is */
        {"foo = 1\nno equals\n", "F:1: unknown key 'foo'"},
        {"no equals\nfoo = 1\n", "F:1: syntax error (expected key = value or [section])"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        config *c;
        char err[512] = "";
        if (load_text(&c, cases[i].text, err, sizeof err) != -1)
            fail_msg("accepted config #%zu:\n%s", i, cases[i].text);
        if (cases[i].msg && strcmp(err, cases[i].msg) != 0)
            fail_msg("case #%zu: got \"%s\", want \"%s\"", i, err, cases[i].msg);
        if (!cases[i].msg)
            assert_true(strncmp(err, "F:2: bad value for path: 'api/**'", 33) == 0);
        config_unref(c);
    }
}

static void test_file_long_line_and_missing(void **state)
{
    (void)state;
    char text[1024];
    char fields[600];
    memset(fields, 'a', sizeof fields - 1);
    fields[sizeof fields - 1] = '\0';
    snprintf(text, sizeof text, "workers = 1\nredact_fields = %s\nworkers = 2\n", fields);
    config *c;
    char err[512] = "";
    assert_int_equal(load_text(&c, text, err, sizeof err), -1);
    assert_true(strncmp(err, "F:2: line too long", 18) == 0);
    config_unref(c);

    c = config_new();
    assert_int_equal(config_load_file(c, "/nonexistent/restspy.ini", err, sizeof err), -1);
    assert_string_equal(err, "cannot read config file '/nonexistent/restspy.ini': No such file or "
                             "directory");
    assert_null(c->config_path);
    config_unref(c);
}

/* Precedence: default < file < env < flags, shown with one key in all three. */
static void test_precedence(void **state)
{
    (void)state;
    char *path = write_tmp("workers = 1\nlog_format = combined\nnode = from-file\n");
    char cfgenv[300];
    snprintf(cfgenv, sizeof cfgenv, "RESTSPY_CONFIG=%s", path);
    char cfgflag[300];
    snprintf(cfgflag, sizeof cfgflag, "--config=%s", path);
    char err[512];
    config *c;

    /* defaults only */
    char *env0[] = {NULL};
    assert_int_equal(config_load(&c, 0, NULL, env0, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(c->workers, 0);
    assert_null(c->config_path);
    config_unref(c);

    /* file named by the environment */
    char *env1[] = {cfgenv, NULL};
    assert_int_equal(config_load(&c, 0, NULL, env1, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(c->workers, 1);
    assert_int_equal(c->log_format, LOG_FORMAT_COMBINED);
    assert_string_equal(c->config_path, path);
    config_unref(c);

    /* env beats file */
    char *env2[] = {"RESTSPY_WORKERS=2", cfgenv, NULL};
    assert_int_equal(config_load(&c, 0, NULL, env2, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(c->workers, 2);
    assert_string_equal(c->node, "from-file");
    config_unref(c);

    /* flag beats env beats file */
    char *argv3[] = {"--workers", "3"};
    assert_int_equal(config_load(&c, 2, argv3, env2, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(c->workers, 3);
    assert_int_equal(c->log_format, LOG_FORMAT_COMBINED); /* file still applies */
    config_unref(c);

    /* --config beats RESTSPY_CONFIG */
    char *other = write_tmp("workers = 7\n");
    char otherflag[300];
    snprintf(otherflag, sizeof otherflag, "--config=%s", other);
    char *argv4[] = {otherflag};
    assert_int_equal(config_load(&c, 1, argv4, env1, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(c->workers, 7);
    assert_int_equal(c->log_format, LOG_FORMAT_JSON);
    assert_string_equal(c->config_path, other);
    config_unref(c);

    /* --config as a flag with a separate value, without env */
    char *argv5[] = {"--config", path, "--log-format", "json"};
    assert_int_equal(config_load(&c, 4, argv5, env0, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(c->workers, 1);
    assert_int_equal(c->log_format, LOG_FORMAT_JSON);
    config_unref(c);

    /* a bad file fails the whole load */
    char *bad = write_tmp("workers = many\n");
    char badenv[300];
    snprintf(badenv, sizeof badenv, "RESTSPY_CONFIG=%s", bad);
    char *env6[] = {badenv, NULL};
    c = (config *)1;
    assert_int_equal(config_load(&c, 0, NULL, env6, NULL, NULL, err, sizeof err), -1);
    assert_null(c);
    assert_non_null(strstr(err, ":1: bad value for workers: 'many'"));

    /* a missing file named by the env is an error too */
    char *env7[] = {"RESTSPY_CONFIG=/nonexistent/x.ini", NULL};
    assert_int_equal(config_load(&c, 0, NULL, env7, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot read config file '/nonexistent/x.ini'"));

    drop_tmp(bad);
    drop_tmp(other);
    drop_tmp(path);
    (void)cfgflag;
}

static void test_env(void **state)
{
    (void)state;
    config *c = config_new();
    char err[256];
    char *env[] = {"PATH=/usr/bin",
                   "RESTSPY_BIN=/usr/local/bin/restspy", /* not a key: ignored */
                   "RESTSPY_UPSTREAM=http://10.0.0.1:81",
                   "RESTSPY_LOG_FORMAT=combined",
                   "RESTSPY_REDACT_HEADERS=A,B",
                   "restspy_workers=9", /* wrong case: not ours */
                   "RESTSPY_NOEQUALS",
                   "RESTSPY_REPLICATE_REQUESTS=off",
                   NULL};
    assert_int_equal(config_apply_env(c, env, err, sizeof err), 0);
    assert_string_equal(c->upstream, "http://10.0.0.1:81");
    assert_int_equal(c->log_format, LOG_FORMAT_COMBINED);
    assert_int_equal(list_len(c->redact_headers), 2);
    assert_string_equal(c->redact_headers[0], "a");
    assert_int_equal(c->workers, 0);
    assert_false(c->rules[c->rules_len - 1].replicate);

    char *bad[] = {"RESTSPY_WORKERS=x", NULL};
    assert_int_equal(config_apply_env(c, bad, err, sizeof err), -1);
    assert_string_equal(err, "RESTSPY_WORKERS: bad value for workers: 'x' (expected a whole number "
                             "0-256)");
    assert_int_equal(config_apply_env(c, NULL, err, sizeof err), 0);
    config_unref(c);
}

static void test_flags(void **state)
{
    (void)state;
    char err[256];
    config *c;
    char *env[] = {"RESTSPY_LOG_FORMAT=json", NULL};

    char *a1[] = {"--log-format", "combined", "--upstream=http://h:1", "--log_bodies=on"};
    assert_int_equal(config_load(&c, 4, a1, env, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(c->log_format, LOG_FORMAT_COMBINED);
    assert_string_equal(c->upstream, "http://h:1");
    assert_true(c->log_bodies);
    config_unref(c);

    char *a2[] = {"--log_format=combined"};
    assert_int_equal(config_load(&c, 1, a2, env, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(c->log_format, LOG_FORMAT_COMBINED);
    config_unref(c);

    /* positionals: anything not starting with "--", and all after "--" */
    int pos[16];
    int npos = -1;
    char *a3[] = {"show", "--workers", "2", "abc", "-v", "-", "--node=n1", "--", "--workers", "x"};
    assert_int_equal(config_load(&c, 10, a3, env, pos, &npos, err, sizeof err), 0);
    assert_int_equal(npos, 6);
    const int want[] = {0, 3, 4, 5, 8, 9};
    for (int i = 0; i < 6; i++)
        assert_int_equal(pos[i], want[i]);
    assert_int_equal(c->workers, 2); /* "--workers x" after "--" is not a flag */
    assert_string_equal(c->node, "n1");
    config_unref(c);

    /* positional may be NULL and still be counted */
    npos = -1;
    assert_int_equal(config_load(&c, 10, a3, env, NULL, &npos, err, sizeof err), 0);
    assert_int_equal(npos, 6);
    config_unref(c);

    char *a4[] = {"--foo", "1"};
    c = (config *)1;
    assert_int_equal(config_load(&c, 2, a4, env, NULL, NULL, err, sizeof err), -1);
    assert_string_equal(err, "unknown option --foo");
    assert_null(c);

    char *a5[] = {"--bar=1"};
    assert_int_equal(config_load(&c, 1, a5, env, NULL, NULL, err, sizeof err), -1);
    assert_string_equal(err, "unknown option --bar");

    char *a6[] = {"--workers"};
    assert_int_equal(config_load(&c, 1, a6, env, NULL, NULL, err, sizeof err), -1);
    assert_string_equal(err, "option --workers needs a value");

    /* a bare boolean switch is on; one followed by on/off takes it */
    char *a6b[] = {"--store-init", "--redact", "off", "--log-bodies"};
    assert_int_equal(config_load(&c, 4, a6b, env, NULL, NULL, err, sizeof err), 0);
    assert_true(c->store_init);
    assert_false(c->redact);
    assert_true(c->log_bodies);
    config_unref(c);

    char *a7[] = {"--workers", "300"};
    assert_int_equal(config_load(&c, 2, a7, env, NULL, NULL, err, sizeof err), -1);
    assert_string_equal(err, "bad value for workers: '300' (expected a whole number 0-256)");

    /* the unknown flag is reported even if the file is bad: flags are checked first */
    char *env2[] = {"RESTSPY_CONFIG=/nonexistent", NULL};
    char *a8[] = {"--nope"};
    assert_int_equal(config_load(&c, 1, a8, env2, NULL, NULL, err, sizeof err), -1);
    assert_string_equal(err, "unknown option --nope");
}

static void test_validate(void **state)
{
    (void)state;
    char err[256];
    static const struct {
        const char *admin;
        const char *token;
        bool ok;
    } cases[] = {
        {"127.0.0.1:8081", NULL, true},
        {"127.9.9.9:1", NULL, true},
        {"localhost:8081", NULL, true},
        {"LOCALHOST:8081", NULL, true},
        {"[::1]:8081", NULL, true},
        {"[::ffff:127.0.0.1]:1", NULL, true},
        {"off", NULL, true},
        {"0.0.0.0:8081", NULL, false},
        {"10.1.2.3:8081", NULL, false},
        {"[::]:8081", NULL, false},
        {"example.com:8081", NULL, false},
        {"0.0.0.0:8081", "t0k", true},
        {"[::]:8081", "t0k", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        config *c = config_new();
        assert_int_equal(config_set(c, "admin", cases[i].admin, err, sizeof err), 0);
        if (cases[i].token)
            assert_int_equal(config_set(c, "admin_token", cases[i].token, err, sizeof err), 0);
        err[0] = '\0';
        int rc = config_validate(c, err, sizeof err);
        if ((rc == 0) != cases[i].ok)
            fail_msg("admin %s token %s: rc %d (%s)", cases[i].admin,
                     cases[i].token ? cases[i].token : "-", rc, err);
        if (!cases[i].ok) {
            char want[128];
            snprintf(want, sizeof want,
                     "refusing to bind the admin listener to %s without admin_token",
                     cases[i].admin);
            assert_true(strncmp(err, want, strlen(want)) == 0);
        }
        config_unref(c);
    }

    config *c = config_new();
    assert_int_equal(config_set(c, "store_queue", "100", err, sizeof err), 0);
    assert_int_equal(config_set(c, "store_batch", "101", err, sizeof err), 0);
    assert_int_equal(config_validate(c, err, sizeof err), -1);
    assert_string_equal(err, "store_batch (101) must not exceed store_queue (100)");
    /* node names end up in routing keys and queue names */
    assert_int_equal(config_set(c, "node", "site-a_1", err, sizeof err), 0);
    assert_int_equal(config_set(c, "node", "a.b", err, sizeof err), -1);
    assert_int_equal(config_set(c, "node", "", err, sizeof err), -1);
    /* set_header accumulates and checks the name */
    assert_int_equal(config_set(c, "set_header", "X-A: 1", err, sizeof err), 0);
    assert_int_equal(config_set(c, "set_header", "Authorization: Bearer x", err, sizeof err), 0);
    assert_string_equal(c->set_headers[1], "Authorization: Bearer x");
    assert_null(c->set_headers[2]);
    assert_int_equal(config_set(c, "set_header", "bad header: 1", err, sizeof err), -1);
    /* a CR or LF would add a header of its own to every request it goes on */
    assert_int_equal(config_set(c, "set_header", "X-A: 1\r\nX-Admin: 1", err, sizeof err), -1);
    assert_int_equal(config_set(c, "set_header", ": 1", err, sizeof err), -1);
    assert_int_equal(config_set(c, "amqp", "http://x", err, sizeof err), -1);
    assert_int_equal(config_set(c, "amqp", "amqp://guest:guest@127.0.0.1:5672/", err, sizeof err),
                     0);
    /* mgmt: the management API, http or https; "" unsets */
    assert_null(c->mgmt);
    assert_int_equal(config_set(c, "mgmt", "amqp://x", err, sizeof err), -1);
    assert_string_equal(err, "bad value for mgmt: 'amqp://x' (expected "
                             "http[s]://user:pass@host:port)");
    assert_int_equal(config_set(c, "mgmt", "http://", err, sizeof err), -1);
    assert_int_equal(config_set(c, "mgmt", "https://u:p@broker:15671", err, sizeof err), 0);
    assert_int_equal(config_set(c, "mgmt", "http://u:p@127.0.0.1:15672", err, sizeof err), 0);
    assert_string_equal(c->mgmt, "http://u:p@127.0.0.1:15672");
    assert_int_equal(config_set(c, "mgmt", "", err, sizeof err), 0);
    assert_null(c->mgmt);
    /* upstream is the commands' business, not validate's */
    assert_null(c->upstream);
    assert_int_equal(config_set(c, "store_batch", "100", err, sizeof err), 0);
    assert_int_equal(config_validate(c, err, sizeof err), 0);
    config_unref(c);
}

struct seen {
    char names[96][40];
    size_t n;
    bool bad_doc;
};

static void collect(const char *key, const char *def, const char *help, void *ud)
{
    struct seen *s = ud;
    if (!def || !*def || !help || !*help)
        s->bad_doc = true;
    if (s->n < 96)
        snprintf(s->names[s->n], sizeof s->names[0], "%s", key);
    s->n++;
}

static void apply_default(const char *key, const char *def, const char *help, void *ud)
{
    (void)help;
    config *c = ud;
    char err[256];
    /* Documented defaults that are literal values must round-trip through
     * config_set and through a flag; descriptive ones start with '('. */
    if (def[0] == '(')
        return;
    if (config_set(c, key, def, err, sizeof err) != 0)
        fail_msg("default of %s does not parse: %s", key, err);
}

static void test_each_key(void **state)
{
    (void)state;
    static const char *const all[] = {
        "listen",
        "upstream",
        "socket",
        "collect_max_frame",
        "collect_timeout",
        "tls_cert",
        "tls_key",
        "admin_tls_cert",
        "admin_tls_key",
        "tls_handshake_timeout",
        "upstream_ca",
        "upstream_insecure",
        "upstream_sni",
        "upstream_cert",
        "upstream_key",
        "config",
        "store",
        "log",
        "log_format",
        "log_headers",
        "log_bodies",
        "admin",
        "admin_token",
        "admin_hosts",
        "workers",
        "node",
        "max_header_size",
        "max_request_line",
        "max_body_size",
        "header_timeout",
        "client_timeout",
        "idle_timeout",
        "upstream_connect_timeout",
        "upstream_timeout",
        "grace_period",
        "max_connections",
        "upstream_keepalive",
        "max_upstream_header_size",
        "upstream_header_timeout",
        "max_interim_responses",
        "store_queue",
        "store_queue_bytes",
        "store_batch",
        "store_on_full",
        "max_rows",
        "max_age",
        "busy_timeout",
        "store_init",
        "store_commit_delay",
        "store_checkpoint_pages",
        "store_claim_lease",
        "redact",
        "redact_headers",
        "redact_fields",
        "amqp",
        "replicate_secret",
        "replicate_durability",
        "replicate_on",
        "replicate_max_body",
        "replicate_origin_body_max",
        "replicate_refused",
        "replicate_noise",
        "replicate_ledger_max_age",
        "replicate_drop_headers",
        "queue_type",
        "amqp_heartbeat",
        "amqp_log_interval",
        "mgmt",
        "healthz_degraded_status",
        "concurrency",
        "apply_order",
        "prefetch",
        "retry_min",
        "retry_max",
        "stuck_after",
        "retry_max_age",
        "retry_max_attempts",
        "set_header",
        "log_requests",
        "persist_requests",
        "replicate_requests",
        "replicate_methods",
        "req_body_cap",
        "resp_body_cap",
    };
    size_t nall = sizeof all / sizeof all[0];
    struct seen s;
    memset(&s, 0, sizeof s);
    config_each_key(collect, &s);
    assert_false(s.bad_doc);
    assert_int_equal(s.n, nall);
    for (size_t i = 0; i < nall; i++) {
        bool found = false;
        for (size_t j = 0; j < s.n; j++)
            found |= strcmp(all[i], s.names[j]) == 0;
        if (!found)
            fail_msg("key %s missing from config_each_key", all[i]);
    }

    /* every listed key is settable as a flag (dashes) and via the env */
    char err[256];
    for (size_t i = 0; i < s.n; i++) {
        if (strcmp(s.names[i], "config") == 0)
            continue; /* would load a file */
        char flag[64], envv[96];
        snprintf(flag, sizeof flag, "--%s", s.names[i]);
        for (char *p = flag + 2; *p; p++)
            if (*p == '_')
                *p = '-';
        /* a value valid for every key does not exist; an invalid one must
         * be a "bad value", never an "unknown option" */
        char *argv[] = {flag, "\x01"};
        config *c;
        if (config_load(&c, 2, argv, NULL, NULL, NULL, err, sizeof err) == 0) {
            config_unref(c);
        } else if (strstr(err, "unknown")) {
            fail_msg("%s: %s", flag, err);
        }
        snprintf(envv, sizeof envv, "RESTSPY_%s=\x01", s.names[i]);
        for (char *p = envv + 8; *p != '='; p++)
            *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        char *env[] = {envv, NULL};
        c = config_new();
        int rc = config_apply_env(c, env, err, sizeof err);
        config_unref(c);
        /* free-text keys accept anything; the others must have complained */
        bool free_text = strcmp(s.names[i], "admin_token") == 0 ||
                         strcmp(s.names[i], "replicate_secret") == 0 ||
                         strcmp(s.names[i], "replicate_drop_headers") == 0 ||
                         strcmp(s.names[i], "log") == 0 || strncmp(s.names[i], "redact_", 7) == 0;
        if (!free_text && rc == 0)
            fail_msg("%s accepted \\x01 from the environment (key not applied?)", envv);
    }

    config *c = config_new();
    config_each_key(apply_default, c);
    config *d = config_new();
    /* applying the documented defaults changes nothing */
    assert_string_equal(c->listen, d->listen);
    assert_int_equal(c->max_header_size, d->max_header_size);
    assert_int_equal(c->header_timeout_ms, d->header_timeout_ms);
    assert_int_equal(c->rules[0].req_body_cap, d->rules[0].req_body_cap);
    assert_int_equal(list_len(c->redact_fields), list_len(d->redact_fields));
    config_unref(d);
    config_unref(c);
}

/* TLS keys: files must be readable when set, tls_cert and tls_key repeat
 * (and "" empties them), and keys that only make sense together are
 * checked by config_validate. */
static void test_tls_keys(void **state)
{
    (void)state;
    config *c = config_new();
    char err[256];
    const char *readable = "/etc/hostname";
    assert_null(c->tls_cert);
    assert_int_equal(c->tls_handshake_timeout_ms, 10000);
    assert_int_equal(config_set(c, "tls_cert", readable, err, sizeof err), 0);
    assert_int_equal(config_set(c, "tls_cert", readable, err, sizeof err), 0);
    assert_int_equal(list_len(c->tls_cert), 2);
    assert_int_equal(config_set(c, "tls_cert", "/nonexistent/cert.pem", err, sizeof err), -1);
    assert_non_null(strstr(err, "bad value for tls_cert: '/nonexistent/cert.pem' (cannot read it"));
    assert_int_equal(list_len(c->tls_cert), 2);
    assert_int_equal(config_set(c, "upstream_ca", "/nonexistent/ca.pem", err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot read it"));
    assert_int_equal(config_validate(c, err, sizeof err), 0);

    assert_int_equal(config_set(c, "tls_key", readable, err, sizeof err), 0);
    assert_int_equal(config_set(c, "tls_key", readable, err, sizeof err), 0);
    assert_int_equal(config_set(c, "tls_key", readable, err, sizeof err), 0);
    assert_int_equal(config_validate(c, err, sizeof err), -1);
    assert_non_null(strstr(err, "tls_key given more times than tls_cert"));
    assert_int_equal(config_set(c, "tls_key", "", err, sizeof err), 0);
    assert_null(c->tls_key);
    assert_int_equal(config_validate(c, err, sizeof err), 0);

    assert_int_equal(config_set(c, "admin_tls_key", readable, err, sizeof err), 0);
    assert_int_equal(config_validate(c, err, sizeof err), -1);
    assert_non_null(strstr(err, "admin_tls_key needs admin_tls_cert"));
    assert_int_equal(config_set(c, "admin_tls_cert", readable, err, sizeof err), 0);
    assert_int_equal(config_validate(c, err, sizeof err), 0);

    assert_int_equal(config_set(c, "upstream", "http://backend:80", err, sizeof err), 0);
    assert_int_equal(config_set(c, "upstream_insecure", "on", err, sizeof err), 0);
    assert_int_equal(config_validate(c, err, sizeof err), -1);
    assert_non_null(strstr(err, "need an https:// upstream"));
    assert_int_equal(config_set(c, "upstream", "https://backend", err, sizeof err), 0);
    assert_int_equal(config_validate(c, err, sizeof err), 0);
    assert_int_equal(config_set(c, "upstream_key", readable, err, sizeof err), 0);
    assert_int_equal(config_validate(c, err, sizeof err), -1);
    assert_non_null(strstr(err, "upstream_key needs upstream_cert"));
    config_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),    cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_set_values),  cmocka_unit_test(test_upstream),
        cmocka_unit_test(test_bad_values),  cmocka_unit_test(test_lists),
        cmocka_unit_test(test_file),        cmocka_unit_test(test_file_inline_comments),
        cmocka_unit_test(test_file_errors), cmocka_unit_test(test_file_long_line_and_missing),
        cmocka_unit_test(test_precedence),  cmocka_unit_test(test_env),
        cmocka_unit_test(test_flags),       cmocka_unit_test(test_validate),
        cmocka_unit_test(test_each_key),    cmocka_unit_test(test_tls_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
