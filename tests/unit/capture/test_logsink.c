#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capture/config.h"
#include "capture/logsink.h"
#include "base/util.h"

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/test_logsink.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void path_in_tmp(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmpdir, name);
}

/* Whole file as a NUL-terminated heap string (empty when missing). */
static char *slurp(const char *path, size_t *len)
{
    buf b = BUF_INIT;
    FILE *f = fopen(path, "rb");
    if (f) {
        char tmp[65536];
        size_t n;
        while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
            buf_append(&b, tmp, n);
        fclose(f);
    }
    if (len)
        *len = b.len;
    return buf_detach(&b);
}

static size_t count_char(const char *s, char c)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

static record *make_record(void)
{
    record *r = record_new();
    r->method = xstrdup("GET");
    r->path = xstrdup("/items");
    r->client_addr = xstrdup("127.0.0.1:5000");
    r->status = 200;
    r->http_minor = 1;
    r->started_at_us = 1795758378123456LL;
    http_headers_add(&r->req_headers, "User-Agent", 10, "t", 1);
    return r;
}

/* ---- many threads ---- */

enum { THREADS = 8, PER_THREAD = 5000 };

typedef struct {
    logsink *s;
    int t;
} wargs;

static void *writer(void *arg)
{
    wargs *a = arg;
    record *r = make_record();
    r->duration_us = a->t; /* thread number */
    for (int i = 0; i < PER_THREAD; i++) {
        r->upstream_us = i; /* sequence in the thread */
        logsink_write(a->s, r);
    }
    record_free(r);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    char path[128], err[256] = "";
    path_in_tmp(path, sizeof path, "threads.log");
    logsink *s = logsink_open(path, LOG_FORMAT_JSON, RECORD_JSON_HEADERS, err, sizeof err);
    assert_non_null(s);
    pthread_t th[THREADS];
    wargs a[THREADS];
    for (int t = 0; t < THREADS; t++) {
        a[t].s = s;
        a[t].t = t;
        assert_int_equal(pthread_create(&th[t], NULL, writer, &a[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    logsink_close(s);

    size_t len;
    char *text = slurp(path, &len);
    assert_int_equal(count_char(text, '\n'), THREADS * PER_THREAD);
    assert_int_equal(text[len - 1], '\n');
    int next[THREADS] = {0};
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t e;
        json_t *j = json_loads(line, 0, &e);
        if (!j)
            fail_msg("bad line (%s): %s", e.text, line);
        int t = (int)json_integer_value(json_object_get(j, "duration_us"));
        int i = (int)json_integer_value(json_object_get(j, "upstream_us"));
        assert_true(t >= 0 && t < THREADS);
        /* each thread's lines complete and in its order */
        assert_int_equal(i, next[t]);
        next[t]++;
        assert_int_equal(json_array_size(json_object_get(j, "req_headers")), 1);
        json_decref(j);
    }
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(next[t], PER_THREAD);
    free(text);
}

static void test_format_switch(void **state)
{
    (void)state;
    char path[128], err[256];
    path_in_tmp(path, sizeof path, "switch.log");
    logsink *s = logsink_open(path, LOG_FORMAT_JSON, 0, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(logsink_format(s), LOG_FORMAT_JSON);
    record *r = make_record();
    logsink_write(s, r);
    logsink_set_format(s, LOG_FORMAT_COMBINED);
    assert_int_equal(logsink_format(s), LOG_FORMAT_COMBINED);
    logsink_write(s, r);
    logsink_set_format(s, LOG_FORMAT_JSON);
    logsink_set_json_flags(s, RECORD_JSON_HEADERS | RECORD_JSON_BODIES);
    logsink_write(s, r);
    logsink_close(s);

    char *text = slurp(path, NULL);
    buf j1 = BUF_INIT, c = BUF_INIT, j2 = BUF_INIT;
    record_to_json(r, 0, &j1);
    record_to_combined(r, &c);
    record_to_json(r, RECORD_JSON_HEADERS | RECORD_JSON_BODIES, &j2);
    buf want = BUF_INIT;
    buf_appendf(&want, "%s\n%s\n%s\n", j1.data, c.data, j2.data);
    assert_string_equal(text, want.data);
    assert_non_null(strstr(text, "\n127.0.0.1 - - [27/Nov/2026:05:46:18 +0000] \"GET /items "
                                 "HTTP/1.1\" 200 - \"-\" \"t\"\n"));
    buf_free(&want);
    buf_free(&j1);
    buf_free(&c);
    buf_free(&j2);
    free(text);
    record_free(r);
}

static void test_reopen(void **state)
{
    (void)state;
    char path[128], rotated[128], err[256] = "";
    path_in_tmp(path, sizeof path, "rot.log");
    path_in_tmp(rotated, sizeof rotated, "rot.log.1");
    logsink *s = logsink_open(path, LOG_FORMAT_COMBINED, 0, err, sizeof err);
    assert_non_null(s);
    record *r = make_record();
    for (int i = 0; i < 10; i++)
        logsink_write(s, r);
    /* logrotate: rename, then SIGHUP -> reopen. Lines still queued belong to
     * the old file. */
    assert_int_equal(rename(path, rotated), 0);
    assert_int_equal(logsink_reopen(s, err, sizeof err), 0);
    for (int i = 0; i < 7; i++)
        logsink_write(s, r);
    logsink_close(s);

    char *old = slurp(rotated, NULL), *cur = slurp(path, NULL);
    assert_int_equal(count_char(old, '\n'), 10);
    assert_int_equal(count_char(cur, '\n'), 7);
    free(old);
    free(cur);

    /* A failed reopen (the directory is gone) keeps the old file in use. */
    char dir[128], moved[128], file[160], moved_file[160];
    path_in_tmp(dir, sizeof dir, "d");
    path_in_tmp(moved, sizeof moved, "d2");
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(file, sizeof file, "%s/x.log", dir);
    snprintf(moved_file, sizeof moved_file, "%s/x.log", moved);
    s = logsink_open(file, LOG_FORMAT_JSON, 0, err, sizeof err);
    assert_non_null(s);
    for (int i = 0; i < 3; i++)
        logsink_write(s, r);
    assert_int_equal(rename(dir, moved), 0);
    err[0] = '\0';
    assert_int_equal(logsink_reopen(s, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot reopen log file"));
    assert_non_null(strstr(err, "x.log"));
    for (int i = 0; i < 2; i++)
        logsink_write(s, r);
    logsink_close(s);
    old = slurp(moved_file, NULL);
    assert_int_equal(count_char(old, '\n'), 5);
    free(old);
    record_free(r);
}

static void test_counters_and_timely_flush(void **state)
{
    (void)state;
    char path[128], err[256];
    path_in_tmp(path, sizeof path, "timely.log");
    logsink *s = logsink_open(path, LOG_FORMAT_JSON, 0, err, sizeof err);
    assert_non_null(s);
    record *r = make_record();
    logsink_write(s, r);
    /* One small line, no close: the writer's periodic wake-up writes it. */
    int waited = 0;
    while (logsink_lines(s) < 1 && waited < 2000) {
        usleep(10000);
        waited += 10;
    }
    assert_int_equal(logsink_lines(s), 1);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size > 10);
    for (int i = 0; i < 99; i++)
        logsink_write(s, r);
    logsink_close(s);
    char *text = slurp(path, NULL);
    assert_int_equal(count_char(text, '\n'), 100);
    free(text);
    record_free(r);
}

static void test_off_and_errors(void **state)
{
    (void)state;
    char err[256] = "";
    char cwd[512];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(tmpdir), 0);
    logsink *s = logsink_open("off", LOG_FORMAT_JSON, 0, err, sizeof err);
    assert_non_null(s);
    record *r = make_record();
    logsink_write(s, r);
    logsink_set_format(s, LOG_FORMAT_COMBINED);
    assert_int_equal(logsink_format(s), LOG_FORMAT_COMBINED);
    logsink_write(s, r);
    assert_int_equal(logsink_reopen(s, err, sizeof err), 0);
    assert_int_equal(logsink_lines(s), 0);
    logsink_close(s);
    assert_int_equal(access("off", F_OK), -1); /* no file called "off" */
    assert_int_equal(chdir(cwd), 0);

    /* unopenable paths */
    char notdir[160];
    path_in_tmp(notdir, sizeof notdir, "plain");
    FILE *f = fopen(notdir, "w");
    assert_non_null(f);
    fclose(f);
    strcat(notdir, "/x.log"); /* parent is a regular file: fails even for root */
    assert_null(logsink_open(notdir, LOG_FORMAT_JSON, 0, err, sizeof err));
    assert_non_null(strstr(err, "cannot open log file"));
    assert_non_null(strstr(err, "Not a directory"));
    assert_null(
        logsink_open("/nonexistent-restspy-dir/x.log", LOG_FORMAT_JSON, 0, err, sizeof err));
    assert_non_null(strstr(err, "No such file"));
    assert_null(logsink_open("", LOG_FORMAT_JSON, 0, err, sizeof err));
    assert_null(logsink_open(NULL, LOG_FORMAT_JSON, 0, NULL, 0));
    logsink_close(NULL);
    record_free(r);
}

static void test_write_errors(void **state)
{
    (void)state;
    char err[256];
    /* /dev/full: every write fails with ENOSPC; lines are counted as errors
     * and nothing blocks. */
    logsink *s = logsink_open("/dev/full", LOG_FORMAT_JSON, 0, err, sizeof err);
    assert_non_null(s);
    record *r = make_record();
    for (int i = 0; i < 3; i++)
        logsink_write(s, r);
    int waited = 0;
    while (logsink_errors(s) < 3 && waited < 2000) {
        usleep(10000);
        waited += 10;
    }
    assert_int_equal(logsink_errors(s), 3);
    assert_int_equal(logsink_lines(s), 0);
    logsink_close(s);
    record_free(r);
}

static void test_stdout(void **state)
{
    (void)state;
    char err[256];
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(p[1], STDOUT_FILENO), STDOUT_FILENO);
    close(p[1]);

    logsink *s = logsink_open("-", LOG_FORMAT_COMBINED, 0, err, sizeof err);
    assert_non_null(s);
    record *r = make_record();
    logsink_write(s, r);
    assert_int_equal(logsink_reopen(s, err, sizeof err), 0); /* no-op */
    logsink_write(s, r);
    logsink_close(s);
    /* fd 1 is still open after close */
    assert_true(fcntl(STDOUT_FILENO, F_GETFD) != -1);
    assert_int_equal(dup2(saved, STDOUT_FILENO), STDOUT_FILENO);
    close(saved);

    char got[1024];
    ssize_t n = read(p[0], got, sizeof got - 1);
    close(p[0]);
    assert_true(n > 0);
    got[n] = '\0';
    buf want = BUF_INIT;
    record_to_combined(r, &want);
    buf_append_char(&want, '\n');
    buf_append(&want, want.data, want.len);
    assert_string_equal(got, want.data);
    buf_free(&want);
    record_free(r);
}

/* ---- backpressure: a stuck output makes writers wait, nothing is lost ---- */

/* More than the pending bound (8 MiB) plus a batch the writer may hold
 * (8 MiB) plus the pipe: the producer must block before the end. */
enum { BIG_LINES = 24000 };

typedef struct {
    logsink *s;
    atomic_int done;
} bp_args;

static void *bp_producer(void *arg)
{
    bp_args *a = arg;
    record *r = make_record();
    free(r->path);
    r->path = xmalloc(1001);
    memset(r->path, 'p', 1000);
    r->path[0] = '/';
    r->path[1000] = '\0';
    for (int i = 0; i < BIG_LINES; i++) {
        logsink_write(a->s, r);
        atomic_fetch_add(&a->done, 1);
    }
    record_free(r);
    /* The reader sees EOF once the sink has flushed and closed the FIFO. */
    logsink_close(a->s);
    return NULL;
}

static void test_backpressure(void **state)
{
    (void)state;
    char path[128], err[256];
    path_in_tmp(path, sizeof path, "fifo");
    assert_int_equal(mkfifo(path, 0600), 0);
    /* A reader must exist for the sink's O_WRONLY open not to block. */
    int rd = open(path, O_RDONLY | O_NONBLOCK);
    assert_true(rd >= 0);
    bp_args a = {NULL, 0};
    a.s = logsink_open(path, LOG_FORMAT_JSON, 0, err, sizeof err);
    assert_non_null(a.s);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, bp_producer, &a), 0);

    /* Nobody reads: the pipe fills, then pending hits its bound, then the
     * producer must be blocked (12 MB of lines cannot all be queued). */
    int last = -1;
    for (int i = 0; i < 100; i++) {
        usleep(200000); /* slow under valgrind: wait for a real plateau */
        int d = atomic_load(&a.done);
        if (d == last && d > 0)
            break;
        last = d;
    }
    int stuck = atomic_load(&a.done);
    assert_true(stuck > 1000);
    assert_true(stuck < BIG_LINES);
    usleep(200000);
    assert_int_equal(atomic_load(&a.done), stuck);

    /* Drain: every line arrives, complete. */
    int fl = fcntl(rd, F_GETFL);
    assert_int_equal(fcntl(rd, F_SETFL, fl & ~O_NONBLOCK), 0);
    size_t lines = 0, bytes = 0;
    char tmp[65536];
    ssize_t n;
    while ((n = read(rd, tmp, sizeof tmp)) != 0) {
        if (n < 0) {
            assert_int_equal(errno, EINTR);
            continue;
        }
        bytes += (size_t)n;
        for (ssize_t k = 0; k < n; k++)
            lines += tmp[k] == '\n';
    }
    close(rd);
    pthread_join(th, NULL);
    assert_int_equal(lines, BIG_LINES);
    assert_true(bytes > (size_t)BIG_LINES * 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads),        cmocka_unit_test(test_format_switch),
        cmocka_unit_test(test_reopen),         cmocka_unit_test(test_counters_and_timely_flush),
        cmocka_unit_test(test_off_and_errors), cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_stdout),         cmocka_unit_test(test_backpressure),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
