/* Unit tests for console: which request paths reach which embedded file
 * (only "/" and "/console/NAME", exact names, no traversal), the types by
 * extension, the security headers, and that the embedded page keeps to its
 * own Content-Security-Policy (no inline script, style or handler). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "proxy/console.h"

static const console_file *find(const char *path)
{
    return console_find(path, strlen(path));
}

static void test_console_paths(void **state)
{
    (void)state;
    const console_file *f = find("/");
    assert_non_null(f);
    assert_string_equal(f->name, "index.html");
    assert_string_equal(f->type, "text/html; charset=utf-8");
    f = find("/console/app.js");
    assert_non_null(f);
    assert_string_equal(f->type, "text/javascript; charset=utf-8");
    assert_non_null(find("/console/console.css"));
    /* The length bounds the path: a query after it is not part of it. */
    assert_ptr_equal(console_find("/console/app.js?v=1", 15), find("/console/app.js"));
    assert_ptr_equal(console_find("/?x", 1), find("/"));
}

static void test_console_refuses_other_names(void **state)
{
    (void)state;
    const char *const bad[] = {
        "",
        "/index.html",
        "/console",
        "/console/",
        "/console/../console/app.js",
        "/console/./app.js",
        "/console//app.js",
        "/console/APP.JS",
        "/console/app.js/",
        "/console/%61pp.js",
        "/consolex/app.js",
        "/CONSOLE/app.js",
        "/console/app.j",
        "/console/app.jsx",
        "//",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_null(find(bad[i]));
    /* A NUL inside the given length is not the end of the name. */
    assert_null(console_find("/console/app.js\0x", 17));
}

static void test_console_files_typed(void **state)
{
    (void)state;
    assert_true(console_nfiles >= 3);
    for (size_t i = 0; i < console_nfiles; i++) {
        const console_file *f = &console_files[i];
        assert_true(f->len > 0);
        const char *ext = strrchr(f->name, '.');
        assert_non_null(ext);
        if (!strcmp(ext, ".js"))
            assert_string_equal(f->type, "text/javascript; charset=utf-8");
        else if (!strcmp(ext, ".css"))
            assert_string_equal(f->type, "text/css; charset=utf-8");
        else if (!strcmp(ext, ".html"))
            assert_string_equal(f->type, "text/html; charset=utf-8");
        if (i)
            assert_true(strcmp(console_files[i - 1].name, f->name) < 0);
        buf path = BUF_INIT;
        buf_appendf(&path, "/console/%s", f->name);
        assert_ptr_equal(find(path.data), f);
        buf_free(&path);
    }
}

/* True when the n bytes at s contain lit (case-insensitive). */
static bool has(const unsigned char *s, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    for (size_t i = 0; i + m <= n; i++)
        if (strncasecmp((const char *)s + i, lit, m) == 0)
            return true;
    return false;
}

static void test_console_page_keeps_its_csp(void **state)
{
    (void)state;
    const console_file *f = find("/");
    /* Every script is a file of its own, no style element or attribute,
     * no inline event handler: what the CSP would block anyway. */
    assert_false(has(f->data, f->len, "<script>"));
    assert_false(has(f->data, f->len, "<style"));
    assert_false(has(f->data, f->len, " style="));
    assert_false(has(f->data, f->len, " onclick="));
    assert_false(has(f->data, f->len, " onload="));
    assert_false(has(f->data, f->len, "javascript:"));
    assert_true(has(f->data, f->len, "<script type=\"module\" src=\"/console/app.js\">"));
    /* The scripts never parse markup from strings. */
    for (size_t i = 0; i < console_nfiles; i++) {
        const console_file *g = &console_files[i];
        if (strcmp(strrchr(g->name, '.'), ".js") != 0)
            continue;
        assert_false(has(g->data, g->len, "innerHTML"));
        assert_false(has(g->data, g->len, "outerHTML"));
        assert_false(has(g->data, g->len, "insertAdjacentHTML"));
        assert_false(has(g->data, g->len, "document.write"));
        assert_false(has(g->data, g->len, "eval("));
    }
}

static void test_console_headers(void **state)
{
    (void)state;
    buf b = BUF_INIT;
    console_headers(&b);
    assert_non_null(strstr(b.data, "Content-Security-Policy: default-src 'none'; script-src "
                                   "'self'; style-src 'self'; img-src 'self' blob: data:; "
                                   "connect-src 'self'; base-uri 'none'; form-action 'none'; "
                                   "frame-ancestors 'none'\r\n"));
    assert_non_null(strstr(b.data, "X-Content-Type-Options: nosniff\r\n"));
    assert_non_null(strstr(b.data, "Referrer-Policy: no-referrer\r\n"));
    assert_non_null(strstr(b.data, "Cache-Control: no-cache\r\n"));
    assert_true(b.len >= 2 && !strcmp(b.data + b.len - 2, "\r\n"));
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_console_paths),
        cmocka_unit_test(test_console_refuses_other_names),
        cmocka_unit_test(test_console_files_typed),
        cmocka_unit_test(test_console_page_keeps_its_csp),
        cmocka_unit_test(test_console_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
