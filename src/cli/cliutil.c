/* cliutil: command-line plumbing shared by the commands (see cliutil.h). */
#include "cli/cliutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"
#include "http/httpmsg.h"

void cliutil_errorf(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "restspy %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

bool cliutil_is_help(const char *arg)
{
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

int cliutil_flag_value(const char *cmd, int argc, char **argv, int *i, const char *name,
                       const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        cliutil_errorf(cmd, "%s needs a value", name);
        return -1;
    }
    *val = argv[++*i];
    return 1;
}

int cliutil_tls_flag(const char *cmd, int argc, char **argv, int *i, hclient_tls *t)
{
    const char *a = argv[*i];
    if (strcmp(a, "--insecure") == 0 || strcmp(a, "-k") == 0) {
        t->insecure = true;
        return 1;
    }
    static const char *const names[] = {"--cacert", "--cert", "--key"};
    const char **vals[] = {&t->ca_file, &t->cert_file, &t->key_file};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        int m = cliutil_flag_value(cmd, argc, argv, i, names[k], vals[k]);
        if (m < 0)
            return -1;
        if (m == 0)
            continue;
        /* Read now: libcurl would otherwise fail every request alike. */
        if (access(*vals[k], R_OK) != 0) {
            cliutil_errorf(cmd, "cannot read %s %s: %s", names[k], *vals[k], strerror(errno));
            return -1;
        }
        return 1;
    }
    return 0;
}

int cliutil_tls_check(const char *cmd, const hclient_tls *t, bool https, const char *flag,
                      const char *whose)
{
    if (!https && (t->ca_file || t->insecure || t->cert_file || t->key_file)) {
        cliutil_errorf(cmd, "--cacert, --insecure, --cert and --key need an https:// %s", flag);
        return 2;
    }
    if (t->key_file && !t->cert_file) {
        cliutil_errorf(cmd, "--key needs --cert");
        return 2;
    }
    if (t->insecure)
        cliutil_errorf(cmd, "warning: --insecure: %s certificate is NOT verified", whose);
    return 0;
}

int cliutil_header_arg(const char *cmd, const char *flag, const char *v, http_headers *h)
{
    const char *name, *val;
    size_t nl, vl;
    if (httpmsg_header_line(v, &name, &nl, &val, &vl) != 0) {
        cliutil_errorf(cmd, "bad value for %s: '%s' (expected 'Name: value')", flag, v);
        return -1;
    }
    http_headers_add(h, name, nl, val, vl);
    return 0;
}

int cliutil_duration_arg(const char *cmd, const char *flag, const char *v, uint64_t *ms)
{
    if (util_parse_duration_ms(v, false, ms) < 0 || *ms == 0) {
        cliutil_errorf(cmd, "bad value for %s: '%s' (expected a duration like 10s or 500ms)", flag,
                       v);
        return -1;
    }
    return 0;
}

int cliutil_noise_rule(const char *cmd, noise *n, const char *prefix, const char *v)
{
    buf b = BUF_INIT;
    buf_append_str(&b, prefix);
    buf_append_str(&b, v);
    char err[512];
    int rc = noise_add(n, b.data, err, sizeof err);
    if (rc < 0)
        cliutil_errorf(cmd, "%s", err);
    buf_free(&b);
    return rc;
}

int cliutil_noise_opt(const char *cmd, int argc, char **argv, int *i, noise *n)
{
    /* Each flag is the rule syntax behind a prefix (noise.h). */
    static const char *const flags[] = {"--ignore", "--ignore-header", "--ignore-regex"};
    static const char *const prefixes[] = {"", "header: ", "regex: "};
    const char *v;
    for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++) {
        int m = cliutil_flag_value(cmd, argc, argv, i, flags[k], &v);
        if (m)
            return m < 0 || cliutil_noise_rule(cmd, n, prefixes[k], v) < 0 ? -1 : 1;
    }
    int m = cliutil_flag_value(cmd, argc, argv, i, "--noise", &v);
    if (m <= 0)
        return m;
    char err[512];
    if (noise_load(n, v, err, sizeof err) < 0) {
        cliutil_errorf(cmd, "%s", err);
        return -1;
    }
    return 1;
}

int cliutil_read_opt(const char *cmd, int argc, char **argv, int *i, cliutil_read_opts *o)
{
    if (strcmp(argv[*i], "--json") == 0) {
        o->json = true;
        return 1;
    }
    int m;
    if ((m = cliutil_flag_value(cmd, argc, argv, i, "--store", &o->store_url)) ||
        (m = cliutil_flag_value(cmd, argc, argv, i, "--config", &o->config_file)))
        return m;
    return 0;
}

int cliutil_bad_arg(const char *cmd, const char *arg)
{
    if (arg[0] == '-')
        cliutil_errorf(cmd, "unknown option %s (see restspy %s --help)", arg, cmd);
    else
        cliutil_errorf(cmd, "unexpected argument '%s' (see restspy %s --help)", arg, cmd);
    return 2;
}

int cliutil_config_load(const char *cmd, char *const *envp, const char *const *flags, size_t nflags,
                        config **out)
{
    /* config_load takes an argv: only the flags that were given go in, so
     * that the file and the environment fill in the rest. It does not
     * modify its argv, hence the casts. */
    char *av[16];
    int ac = 0;
    for (size_t i = 0; i + 1 < nflags && ac + 2 <= 16; i += 2) {
        if (!flags[i + 1])
            continue;
        av[ac++] = (char *)flags[i];
        av[ac++] = (char *)flags[i + 1];
    }
    char err[512];
    if (config_load(out, ac, av, envp, NULL, NULL, err, sizeof err) != 0) {
        cliutil_errorf(cmd, "%s", err);
        return 2;
    }
    return 0;
}

int cliutil_open_store(const char *cmd, const cliutil_read_opts *o, char *const *envp,
                       const char *why_off, store **out)
{
    return cliutil_open_store_for(cmd, o, envp, why_off, NULL, out);
}

int cliutil_open_store_for(const char *cmd, const cliutil_read_opts *o, char *const *envp,
                           const char *why_off, const char *what, store **out)
{
    const char *flags[] = {"--config", o->config_file, "--store", o->store_url};
    config *c = NULL;
    int rc = cliutil_config_load(cmd, envp, flags, 4, &c);
    if (rc)
        return rc;
    if (!c->store || strcmp(c->store, "off") == 0) {
        cliutil_errorf(cmd, "the store is off (store = off): %s", why_off);
        config_unref(c);
        return 1;
    }
    store_options so = {0};
    so.url = c->store;
    so.queue_max = 1;
    so.batch_max = 1;
    so.busy_timeout_ms = c->busy_timeout_ms;
    so.read_only = true;
    char err[512];
    *out = store_open(&so, err, sizeof err);
    config_unref(c);
    if (!*out) {
        cliutil_errorf(cmd, "%s%s%s", what ? what : "", what ? ": " : "", err);
        return 1;
    }
    return 0;
}

void cliutil_append_safe(buf *b, const char *s, size_t n, bool multiline)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && !(multiline && (c == '\n' || c == '\t'))) || c == 0x7f) {
            char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            buf_append(b, e, 4);
        } else {
            buf_append_char(b, (char)c);
        }
    }
}

void cliutil_fmt_local(int64_t us, bool with_ms, char *out, size_t len, bool *today)
{
    /* Round down, also before 1970: -0.5 s is 23:59:59.500 of the day before. */
    time_t t = (time_t)(us / 1000000);
    int ms = (int)((us % 1000000) / 1000);
    if (us < 0 && us % 1000000) {
        t--;
        ms = (int)((us % 1000000 + 1000000) / 1000);
    }
    struct tm tm = {0};
    localtime_r(&t, &tm);
    if (today) {
        struct tm now_tm;
        time_t now = time(NULL);
        localtime_r(&now, &now_tm);
        *today = tm.tm_year == now_tm.tm_year && tm.tm_yday == now_tm.tm_yday;
    }
    /* 24 bytes hold any year an int64_t of µs can reach (6 digits and a sign). */
    char tmp[24];
    if (strftime(tmp, sizeof tmp, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(tmp, sizeof tmp, "-");
    if (with_ms)
        snprintf(out, len, "%s.%03d", tmp, ms);
    else
        snprintf(out, len, "%s", tmp);
}

int cliutil_flush_stdout(const char *cmd)
{
    if (fflush(stdout) != 0) {
        cliutil_errorf(cmd, "cannot write output: %s", strerror(errno));
        return 1;
    }
    return 0;
}

/* ---- selecting captured requests: reqfilter, reported the CLI's way ---- */

int cliutil_filter_opt(const char *cmd, int argc, char **argv, int *i, cliutil_filter *f,
                       bool with_ids)
{
    for (size_t k = 0; reqfilter_names[k]; k++) {
        if (!with_ids && strcmp(reqfilter_names[k], "id") == 0)
            continue;
        char flag[32];
        snprintf(flag, sizeof flag, "--%s", reqfilter_names[k]);
        const char *v;
        int m = cliutil_flag_value(cmd, argc, argv, i, flag, &v);
        if (m == 0)
            continue;
        char err[512];
        if (m < 0)
            return -1;
        if (reqfilter_set(f, reqfilter_names[k], flag, v, err, sizeof err) < 0) {
            cliutil_errorf(cmd, "%s", err);
            return -1;
        }
        return 1;
    }
    return 0;
}

int cliutil_filter_check(const char *cmd, const cliutil_filter *f)
{
    char err[512];
    if (reqfilter_check(f, "--since", "--until", err, sizeof err) == 0)
        return 0;
    cliutil_errorf(cmd, "%s", err);
    return 2;
}

int cliutil_filter_each(const char *cmd, store *s, const cliutil_filter *f,
                        int (*fn)(const record *r, void *ud), void *ud)
{
    char err[512];
    if (reqfilter_each(s, f, fn, ud, err, sizeof err) == 0)
        return 0;
    cliutil_errorf(cmd, "%s", err);
    return 1;
}

/* ---- writing files whole ---- */

int cliutil_out_open(const char *cmd, const char *path, cliutil_out *o)
{
    memset(o, 0, sizeof *o);
    o->path = path;
    if (strcmp(path, "-") == 0) {
        o->f = stdout;
        return 0;
    }
    buf t = BUF_INIT;
    buf_appendf(&t, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(t.data);
    if (fd < 0) {
        cliutil_errorf(cmd, "cannot write %s: %s", path, strerror(errno));
        buf_free(&t);
        return -1;
    }
    /* mkstemp makes the file private; the result gets the usual mode. */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    o->tmp = buf_detach(&t);
    o->f = fdopen(fd, "w");
    if (!o->f) {
        cliutil_errorf(cmd, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        unlink(o->tmp);
        free(o->tmp);
        o->tmp = NULL;
        return -1;
    }
    return 0;
}

int cliutil_out_close(const char *cmd, cliutil_out *o, bool discard)
{
    errno = 0;
    int e = 0;
    if (fflush(o->f) != 0 || ferror(o->f))
        e = errno ? errno : EIO;
    if (!o->tmp) {
        /* stdout: nothing to rename or remove */
        if (e && !discard) {
            cliutil_errorf(cmd, "cannot write output: %s", strerror(e));
            return -1;
        }
        return 0;
    }
    if (fclose(o->f) != 0 && !e)
        e = errno;
    o->f = NULL;
    if (!e && !discard && rename(o->tmp, o->path) != 0)
        e = errno;
    int rc = 0;
    if (e || discard) {
        unlink(o->tmp);
        if (e && !discard) {
            cliutil_errorf(cmd, "cannot write %s: %s", o->path, strerror(e));
            rc = -1;
        }
    }
    free(o->tmp);
    o->tmp = NULL;
    return rc;
}
