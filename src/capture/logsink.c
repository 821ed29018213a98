#include "capture/logsink.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "capture/config.h"
#include "base/util.h"

/* Past this much pending data writers wait for the disk instead of growing
 * memory without bound. */
#define PENDING_MAX (8u << 20)
/* The writer wakes early once this much has accumulated... */
#define FLUSH_BYTES (64u << 10)
/* ...and otherwise at this interval, so a quiet log is still timely. */
#define FLUSH_INTERVAL_MS 100

enum { TARGET_OFF, TARGET_STDOUT, TARGET_FILE };

struct logsink {
    int kind;
    char *path; /* TARGET_FILE only */
    _Atomic int format;
    _Atomic unsigned json_flags;
    _Atomic uint64_t lines;
    _Atomic uint64_t errors;

    /* mu guards pending, pending_lines, fd and stop. Held only to append or
     * swap buffers, never across I/O. */
    pthread_mutex_t mu;
    pthread_cond_t wake; /* writer: data or stop */
    pthread_cond_t room; /* producers: pending dropped below the bound */
    buf pending;
    uint64_t pending_lines;
    int fd;
    bool stop;

    /* io_mu is held by whoever writes to fd (writer thread, or reopen
     * draining into the old file) so the fd is never closed under a write.
     * Lock order: io_mu before mu. */
    pthread_mutex_t io_mu;
    bool reported; /* one stderr message per run of write errors (io_mu) */

    pthread_t thread;
    bool started;
};

static int open_file(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

/* Writes data to fd, riding over EINTR and short writes. Returns the number
 * of bytes written (== n on success). */
static size_t write_all(int fd, const char *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (w == 0)
            break;
        done += (size_t)w;
    }
    return done;
}

static uint64_t count_lines(const char *p, size_t n)
{
    uint64_t c = 0;
    const char *end = p + n;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        c++;
        p++;
    }
    return c;
}

/* Writes one swapped-out batch; io_mu held. */
static void write_batch(logsink *s, int fd, const buf *b, uint64_t nlines)
{
    size_t done = write_all(fd, b->data, b->len);
    if (done == b->len) {
        atomic_fetch_add(&s->lines, nlines);
        s->reported = false;
        return;
    }
    int e = errno;
    /* Lines fully on disk count as written, the rest as errors. */
    uint64_t ok = count_lines(b->data, done);
    atomic_fetch_add(&s->lines, ok);
    atomic_fetch_add(&s->errors, nlines - ok);
    if (!s->reported) {
        fprintf(stderr, "restspy: log write failed: %s\n", strerror(e));
        s->reported = true;
    }
}

static void deadline_in(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *writer_main(void *arg)
{
    logsink *s = arg;
    /* The spare buffer is swapped with pending so both keep their memory and
     * the steady state allocates nothing. */
    buf batch = BUF_INIT;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        struct timespec dl;
        deadline_in(&dl, FLUSH_INTERVAL_MS);
        while (!s->stop && s->pending.len < FLUSH_BYTES) {
            if (pthread_cond_timedwait(&s->wake, &s->mu, &dl) == ETIMEDOUT) {
                if (s->pending.len)
                    break;
                deadline_in(&dl, FLUSH_INTERVAL_MS);
            }
        }
        bool stopping = s->stop;
        bool empty = s->pending.len == 0;
        pthread_mutex_unlock(&s->mu);
        if (empty && stopping)
            break;

        pthread_mutex_lock(&s->io_mu);
        pthread_mutex_lock(&s->mu);
        buf tmp = s->pending;
        s->pending = batch;
        batch = tmp;
        uint64_t nlines = s->pending_lines;
        s->pending_lines = 0;
        int fd = s->fd;
        pthread_cond_broadcast(&s->room);
        pthread_mutex_unlock(&s->mu);
        if (batch.len)
            write_batch(s, fd, &batch, nlines);
        pthread_mutex_unlock(&s->io_mu);
        buf_reset(&batch);
    }
    buf_free(&batch);
    return NULL;
}

logsink *logsink_open(const char *target, int format, unsigned json_flags, char *err, size_t errlen)
{
    if (!target || !*target) {
        util_seterr(err, errlen, "log target is empty");
        return NULL;
    }
    logsink *s = xcalloc(1, sizeof *s);
    atomic_init(&s->format, format);
    atomic_init(&s->json_flags, json_flags);
    atomic_init(&s->lines, 0);
    atomic_init(&s->errors, 0);
    s->fd = -1;
    if (strcmp(target, "off") == 0) {
        s->kind = TARGET_OFF;
        return s;
    }
    if (strcmp(target, "-") == 0) {
        s->kind = TARGET_STDOUT;
        s->fd = STDOUT_FILENO;
    } else {
        s->kind = TARGET_FILE;
        s->fd = open_file(target);
        if (s->fd < 0) {
            util_seterr(err, errlen, "cannot open log file %s: %s", target, strerror(errno));
            free(s);
            return NULL;
        }
        s->path = xstrdup(target);
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->io_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&s->room, NULL);
    int rc = pthread_create(&s->thread, NULL, writer_main, s);
    if (rc != 0) {
        util_seterr(err, errlen, "cannot start log writer thread: %s", strerror(rc));
        s->started = false;
        logsink_close(s);
        return NULL;
    }
    s->started = true;
    return s;
}

void logsink_write(logsink *s, const record *r)
{
    if (!s || s->kind == TARGET_OFF)
        return;
    /* Format outside the lock: this is the expensive part and must not
     * serialize the event loops. */
    buf line = BUF_INIT;
    if (atomic_load_explicit(&s->format, memory_order_relaxed) == LOG_FORMAT_COMBINED)
        record_to_combined(r, &line);
    else
        record_to_json(r, atomic_load_explicit(&s->json_flags, memory_order_relaxed), &line);
    buf_append_char(&line, '\n');

    pthread_mutex_lock(&s->mu);
    /* A line bigger than the bound alone still goes through once the
     * pending buffer is empty. */
    while (!s->stop && s->pending.len > 0 && s->pending.len + line.len > PENDING_MAX)
        pthread_cond_wait(&s->room, &s->mu);
    if (s->pending.len == 0 && s->pending.cap < line.len) {
        /* Hand the line's memory over instead of copying it. */
        buf tmp = s->pending;
        s->pending = line;
        line = tmp;
    } else {
        buf_append(&s->pending, line.data, line.len);
    }
    s->pending_lines++;
    if (s->pending.len >= FLUSH_BYTES)
        pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    buf_free(&line);
}

bool logsink_wants_headers_json(const logsink *s)
{
    return s && s->kind != TARGET_OFF &&
           atomic_load_explicit(&s->format, memory_order_relaxed) != LOG_FORMAT_COMBINED &&
           (atomic_load_explicit(&s->json_flags, memory_order_relaxed) & RECORD_JSON_HEADERS);
}

void logsink_set_format(logsink *s, int format)
{
    atomic_store(&s->format, format);
}

int logsink_format(const logsink *s)
{
    return atomic_load(&s->format);
}

void logsink_set_json_flags(logsink *s, unsigned json_flags)
{
    atomic_store(&s->json_flags, json_flags);
}

int logsink_reopen(logsink *s, char *err, size_t errlen)
{
    if (!s || s->kind != TARGET_FILE)
        return 0;
    int nfd = open_file(s->path);
    if (nfd < 0) {
        util_seterr(err, errlen, "cannot reopen log file %s: %s", s->path, strerror(errno));
        return -1;
    }
    /* Lines queued before the reopen belong to the old file (logrotate has
     * renamed it): drain them there, then switch. */
    pthread_mutex_lock(&s->io_mu);
    pthread_mutex_lock(&s->mu);
    buf old = s->pending;
    buf_init(&s->pending);
    uint64_t nlines = s->pending_lines;
    s->pending_lines = 0;
    int ofd = s->fd;
    s->fd = nfd;
    pthread_cond_broadcast(&s->room);
    pthread_mutex_unlock(&s->mu);
    if (old.len)
        write_batch(s, ofd, &old, nlines);
    close(ofd);
    pthread_mutex_unlock(&s->io_mu);
    buf_free(&old);
    return 0;
}

uint64_t logsink_lines(const logsink *s)
{
    return atomic_load(&s->lines);
}

uint64_t logsink_errors(const logsink *s)
{
    return atomic_load(&s->errors);
}

void logsink_close(logsink *s)
{
    if (!s)
        return;
    if (s->kind != TARGET_OFF) {
        if (s->started) {
            pthread_mutex_lock(&s->mu);
            s->stop = true;
            pthread_cond_signal(&s->wake);
            pthread_cond_broadcast(&s->room);
            pthread_mutex_unlock(&s->mu);
            pthread_join(s->thread, NULL);
        }
        if (s->kind == TARGET_FILE && s->fd >= 0)
            close(s->fd);
        pthread_cond_destroy(&s->wake);
        pthread_cond_destroy(&s->room);
        pthread_mutex_destroy(&s->mu);
        pthread_mutex_destroy(&s->io_mu);
        buf_free(&s->pending);
    }
    free(s->path);
    free(s);
}
