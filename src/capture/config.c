#include "capture/config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/util.h"
#include "capture/config_internal.h"

/* The public struct is embedded so the header can stay a plain struct
 * (readers use fields directly) while the reference count stays private. */
typedef struct config_box {
    config pub;
    atomic_int refs;
} config_box;

#define BOX(c) ((config_box *)(void *)((char *)(c)-offsetof(config_box, pub)))

config *config_new(void)
{
    config_box *box = xcalloc(1, sizeof *box);
    atomic_init(&box->refs, 1);
    config *c = &box->pub;
    c->rules = xcalloc(1, sizeof *c->rules);
    c->rules_len = 1;
    config_rule_init(&c->rules[0], "default");
    config_keys_defaults(c);
    char host[256];
    if (gethostname(host, sizeof host) == 0 && host[0]) {
        host[sizeof host - 1] = '\0';
        /* A node name must fit routing keys: the first label, cleaned. */
        host[strcspn(host, ".")] = '\0';
        for (char *p = host; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
                *p = '_';
        host[64] = '\0';
        c->node = xstrdup(host[0] ? host : "restspy");
    } else {
        c->node = xstrdup("restspy");
    }
    return c;
}

void config_ref(config *c)
{
    if (c)
        atomic_fetch_add_explicit(&BOX(c)->refs, 1, memory_order_relaxed);
}

void config_unref(config *c)
{
    if (!c)
        return;
    /* acq_rel: the last owner must see every other owner's writes before it
     * frees (the usual reference-count pairing). */
    if (atomic_fetch_sub_explicit(&BOX(c)->refs, 1, memory_order_acq_rel) != 1)
        return;
    config_keys_free(c);
    free(BOX(c));
}

rule *config_rule_slot(config *c)
{
    assert(c->rules_len > 0); /* the default rule, last */
    /* The default rule stays last: the new rule takes its slot. */
    c->rules = xrealloc(c->rules, (c->rules_len + 1) * sizeof *c->rules);
    c->rules[c->rules_len] = c->rules[c->rules_len - 1];
    c->rules_len++;
    return &c->rules[c->rules_len - 2];
}

rule *config_add_rule(config *c, const char *name, unsigned sw)
{
    assert(!rules_find(c->rules, c->rules_len, name));
    assert((sw & ~(unsigned)RULE_SW_ALL) == 0);
    rule *r = config_rule_slot(c);
    const rule *def = &c->rules[c->rules_len - 1];
    config_rule_init(r, name);
    r->req_body_cap = def->req_body_cap;
    r->resp_body_cap = def->resp_body_cap;
    r->replicate_methods = def->replicate_methods;
    r->log = sw & RULE_SW_LOG;
    r->persist = sw & RULE_SW_PERSIST;
    r->replicate = sw & RULE_SW_REPLICATE;
    return r;
}

int config_set(config *c, const char *key, const char *value, char *err, size_t errlen)
{
    const keydef *k = config_key_find(false, key, strlen(key));
    if (!k) {
        util_seterr(err, errlen, "unknown key '%s'", key);
        return -1;
    }
    void *base = k->on_rule ? (void *)&c->rules[c->rules_len - 1] : (void *)c;
    return config_key_apply(k, base, value, err, errlen);
}

/* ---- environment and flags ---- */

#define ENV_PREFIX "RESTSPY_"

int config_apply_env(config *c, char *const *envp, char *err, size_t errlen)
{
    size_t plen = strlen(ENV_PREFIX);
    for (size_t i = 0; envp && envp[i]; i++) {
        const char *e = envp[i];
        const char *eq = strchr(e, '=');
        if (!eq || strncmp(e, ENV_PREFIX, plen) != 0)
            continue;
        const char *name = e + plen;
        size_t n = (size_t)(eq - name);
        /* Names are upper case with '_' only; other RESTSPY_* variables
         * (RESTSPY_BIN in tests, ...) belong to someone else. */
        bool upper = true;
        for (size_t j = 0; j < n; j++)
            if (islower((unsigned char)name[j]) || name[j] == '-')
                upper = false;
        const keydef *k = upper ? config_key_find(false, name, n) : NULL;
        if (!k)
            continue;
        char msg[400];
        if (config_set(c, k->name, eq + 1, msg, sizeof msg) != 0) {
            util_seterr(err, errlen, "%.*s: %s", (int)(eq - e), e, msg);
            return -1;
        }
    }
    return 0;
}

static const char *env_get(char *const *envp, const char *name)
{
    size_t n = strlen(name);
    const char *found = NULL;
    for (size_t i = 0; envp && envp[i]; i++)
        if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=')
            found = envp[i] + n + 1; /* the last one wins, as in config_apply_env */
    return found;
}

/* One flag at argv[*i]: its key and value. Advances *i past a separate
 * value. A boolean key given bare (last, or followed by something that is
 * not on/off) is on. -1 with err for an unknown option or a missing value. */
static int next_flag(int argc, char **argv, int *i, const keydef **k, const char **value, char *err,
                     size_t errlen)
{
    const char *arg = argv[*i] + 2;
    const char *eq = strchr(arg, '=');
    size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
    *k = config_key_find(false, arg, n);
    if (!*k && n == 6 && strncasecmp(arg, "secret", 6) == 0)
        *k = config_key_find(false, "replicate_secret", 16); /* the documented short form */
    if (!*k) {
        util_seterr(err, errlen, "unknown option --%.*s", (int)n, arg);
        return -1;
    }
    bool ignored;
    if (eq) {
        *value = eq + 1;
    } else if ((*k)->kind == K_BOOL &&
               (*i + 1 >= argc || util_parse_bool(argv[*i + 1], &ignored) != 0)) {
        *value = "on"; /* a bare switch: --store-init */
    } else if (*i + 1 < argc) {
        *value = argv[++*i];
    } else {
        util_seterr(err, errlen, "option --%.*s needs a value", (int)n, arg);
        return -1;
    }
    return 0;
}

static bool is_flag(const char *a)
{
    return a[0] == '-' && a[1] == '-';
}

int config_load(config **out, int argc, char **argv, char *const *envp, int *positional,
                int *npositional, char *err, size_t errlen)
{
    *out = NULL;
    int npos = 0;
    const char *file = NULL;
    bool have_file_flag = false;

    /* Pass 1 checks every flag and finds --config: the file has to be read
     * before the flags are applied, since flags override it. */
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            for (i++; i < argc; i++) {
                if (positional)
                    positional[npos] = i;
                npos++;
            }
            break;
        }
        if (!is_flag(argv[i])) {
            if (positional)
                positional[npos] = i;
            npos++;
            continue;
        }
        const keydef *k;
        const char *v;
        if (next_flag(argc, argv, &i, &k, &v, err, errlen) != 0)
            return -1;
        if (k->kind == K_CONFIG) {
            file = v;
            have_file_flag = true;
        }
    }
    if (npositional)
        *npositional = npos;
    if (!have_file_flag)
        file = env_get(envp, ENV_PREFIX "CONFIG");

    config *c = config_new();
    if (file && *file && config_load_file(c, file, err, errlen) != 0)
        goto fail;
    if (config_apply_env(c, envp, err, errlen) != 0)
        goto fail;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (!is_flag(argv[i]))
            continue;
        const keydef *k;
        const char *v;
        if (next_flag(argc, argv, &i, &k, &v, err, errlen) != 0 ||
            config_set(c, k->name, v, err, errlen) != 0)
            goto fail;
    }
    *out = c;
    return 0;
fail:
    config_unref(c);
    return -1;
}

/* ---- cross-key checks ---- */

static bool is_loopback(const char *host)
{
    if (strcasecmp(host, "localhost") == 0)
        return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a6.s6_addr, v4mapped, 12) == 0)
            return a6.s6_addr[12] == 127;
        return memcmp(&a6, &in6addr_loopback, sizeof a6) == 0;
    }
    return false;
}

static size_t list_len(char *const *l)
{
    size_t n = 0;
    while (l && l[n])
        n++;
    return n;
}

/* The TLS keys that only make sense together (what is in the files is
 * checked when TLS is set up). */
static int validate_tls(const config *c, char *err, size_t errlen)
{
    const char *why = NULL;
    if (list_len(c->tls_key) > list_len(c->tls_cert))
        why = "tls_key given more times than tls_cert (the Nth key belongs to the Nth certificate)";
    else if (c->admin_tls_key && !c->admin_tls_cert)
        why = "admin_tls_key needs admin_tls_cert";
    else if (c->upstream_key && !c->upstream_cert)
        why = "upstream_key needs upstream_cert";
    else if ((c->upstream_ca || c->upstream_insecure || c->upstream_sni || c->upstream_cert) &&
             c->upstream && strncmp(c->upstream, "https://", 8) != 0)
        why = "upstream_ca, upstream_insecure, upstream_sni and upstream_cert need an https:// "
              "upstream";
    if (why) {
        util_seterr(err, errlen, "%s", why);
        return -1;
    }
    return 0;
}

int config_validate(const config *c, char *err, size_t errlen)
{
    if (c->admin && strcmp(c->admin, "off") != 0 && !c->admin_token) {
        char host[256];
        int port;
        if (util_split_hostport(c->admin, host, sizeof host, &port) != 0 || !is_loopback(host)) {
            util_seterr(err, errlen,
                        "refusing to bind the admin listener to %s without admin_token "
                        "(set admin_token or use a loopback address)",
                        c->admin);
            return -1;
        }
    }
    if (c->store_batch > c->store_queue) {
        util_seterr(err, errlen, "store_batch (%llu) must not exceed store_queue (%llu)",
                    (unsigned long long)c->store_batch, (unsigned long long)c->store_queue);
        return -1;
    }
    if (validate_tls(c, err, errlen) < 0)
        return -1;
    if (c->rules_len == 0 || strcmp(c->rules[c->rules_len - 1].name, "default") != 0) {
        util_seterr(err, errlen, "the default rule is missing");
        return -1;
    }
    return 0;
}

int config_load_command(config **out, const char *cmd, int argc, char **argv, char *const *envp)
{
    char err[512] = "";
    int npos = 0;
    int *pos = xcalloc((size_t)argc + 1, sizeof *pos);
    config *cfg = NULL;
    int rc = 0;
    if (config_load(&cfg, argc - 1, argv + 1, envp, pos, &npos, err, sizeof err) != 0 ||
        config_validate(cfg, err, sizeof err) != 0) {
        fprintf(stderr, "restspy %s: %s\n", cmd, err);
        rc = 2;
    } else if (npos > 0) {
        fprintf(stderr, "restspy %s: unexpected argument '%s' (see restspy %s --help)\n", cmd,
                argv[1 + pos[0]], cmd);
        rc = 2;
    }
    free(pos);
    if (rc) {
        config_unref(cfg);
        cfg = NULL;
    }
    *out = cfg;
    return rc;
}

void config_each_key(void (*fn)(const char *key, const char *def, const char *help, void *ud),
                     void *ud)
{
    size_t n;
    const keydef *keys = config_keys(&n);
    for (size_t i = 0; i < n; i++)
        fn(keys[i].name, keys[i].def ? keys[i].def : keys[i].note, keys[i].help, ud);
}

static bool listed(const char *const *only, const char *name)
{
    if (!only)
        return true;
    for (; *only; only++)
        if (strcmp(*only, name) == 0)
            return true;
    return false;
}

void config_print_keys(FILE *f, const char *const *only, bool markdown)
{
    size_t n;
    const keydef *keys = config_keys(&n);
    if (markdown)
        fputs("| key | default | meaning |\n|---|---|---|\n", f);
    for (size_t i = 0; i < n; i++) {
        const keydef *k = &keys[i];
        if (!listed(only, k->name))
            continue;
        const char *def = k->def ? k->def : k->note;
        if (markdown) {
            fprintf(f, "| `%s` | `%s` | %s |\n", k->name, def && *def ? def : "none", k->help);
            continue;
        }
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", k->name);
        for (char *p = flag + 2; *p; p++)
            if (*p == '_')
                *p = '-';
        fprintf(f, "  %-28s %s (default: %s)\n", flag, k->help, def && *def ? def : "none");
    }
}
