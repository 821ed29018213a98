"""restspy.conf: the adapter's settings, the one place they are read.

Owns: the `RESTSPY` settings dict merged with the RESTSPY_* environment
variables (the environment wins), validated into a frozen Config. Promises:
a bad value raises django.core.exceptions.ImproperlyConfigured naming the
setting, the value and what is allowed; get() is cheap on the request path
(the Config is rebuilt only when the settings dict or one of the variables
changes: Django's setting_changed signal at once, a new environment value
within ENV_RECHECK seconds, or at once after reset()). The variables are
read at most once per ENV_RECHECK: reading five of them cost ~6 us a call,
twice a request, and a process's environment seldom changes while it runs.
"""
import os
import time
from collections import namedtuple

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

FLAG_NAMES = ("log", "persist", "replicate")
FAIL_MODES = ("open", "closed")
DURABILITIES = ("sync", "async")

# Keys of the RESTSPY dict and their defaults.
DEFAULTS = {
    "ENABLED": True,
    "SOCKET": "/run/restspy/collect.sock",
    "FAIL_MODE": "open",
    "DURABILITY": "sync",
    "TIMEOUT": 2.0,
    "DEFAULTS": {"log": True, "persist": True, "replicate": False},
    "VIEWS": {},
    "POOL_SIZE": 8,
}

# Environment variable -> RESTSPY key it overrides.
ENV = {
    "RESTSPY_ENABLED": "ENABLED",
    "RESTSPY_SOCKET": "SOCKET",
    "RESTSPY_FAIL_MODE": "FAIL_MODE",
    "RESTSPY_DURABILITY": "DURABILITY",
    "RESTSPY_TIMEOUT": "TIMEOUT",
}

# Per-view keys (DEFAULTS, VIEWS[name], the decorator's arguments).
VIEW_KEYS = FLAG_NAMES + ("durability",)

Config = namedtuple("Config", "enabled socket fail_mode durability timeout defaults views "
                              "pool_size")


def _bad(setting, value, allowed):
    return ImproperlyConfigured("restspy: %s = %r is not valid: %s" % (setting, value, allowed))


def _bool(setting, v):
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("1", "true", "on", "yes"):
        return True
    if isinstance(v, str) and v.strip().lower() in ("0", "false", "off", "no"):
        return False
    raise _bad(setting, v, "expected a boolean (true/false, on/off, 1/0)")


def _choice(setting, v, allowed):
    s = v.strip().lower() if isinstance(v, str) else v
    if s not in allowed:
        raise _bad(setting, v, "expected one of %s" % ", ".join('"%s"' % a for a in allowed))
    return s


def _timeout(setting, v):
    try:
        t = float(v)
    except (TypeError, ValueError):
        t = None
    if isinstance(v, bool) or t is None or not 0 < t <= 3600:
        raise _bad(setting, v, "expected seconds, a number above 0 and at most 3600")
    return t


def view_flags(setting, d, keys=VIEW_KEYS):
    """A dict of per-view keys (of keys: log, persist, replicate,
    durability), checked; absent keys stay absent."""
    if not isinstance(d, dict):
        raise _bad(setting, d, "expected a dict of %s" % ", ".join(keys))
    out = {}
    for k, v in d.items():
        if k not in keys:
            raise _bad("%s[%r]" % (setting, k), v,
                       "unknown key; known: %s" % ", ".join(keys))
        if k == "durability":
            out[k] = _choice("%s[%r]" % (setting, k), v, DURABILITIES)
        else:
            out[k] = _bool("%s[%r]" % (setting, k), v)
    return out


def build(raw, environ):
    """The Config of the RESTSPY dict raw (or None) under environ; raises
    ImproperlyConfigured on any bad key or value."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _bad("RESTSPY", raw, "expected a dict")
    for k in raw:
        if k not in DEFAULTS:
            raise _bad("RESTSPY[%r]" % k, raw[k],
                       "unknown key; known: %s" % ", ".join(sorted(DEFAULTS)))
    merged = dict(DEFAULTS)
    merged.update(raw)
    names = {k: "RESTSPY[%r]" % k for k in DEFAULTS}
    for var, key in ENV.items():
        if environ.get(var) is not None:
            merged[key] = environ[var]
            names[key] = "environment variable " + var
    sock = merged["SOCKET"]
    if not isinstance(sock, str) or not sock or "\0" in sock:
        raise _bad(names["SOCKET"], sock, "expected the path of restspy collect's socket")
    pool = merged["POOL_SIZE"]
    if isinstance(pool, bool) or not isinstance(pool, int) or not 1 <= pool <= 1024:
        raise _bad(names["POOL_SIZE"], pool, "expected an integer 1..1024")
    defaults = dict(DEFAULTS["DEFAULTS"])
    defaults.update(view_flags(names["DEFAULTS"], merged["DEFAULTS"], FLAG_NAMES))
    views = merged["VIEWS"]
    if not isinstance(views, dict):
        raise _bad(names["VIEWS"], views, "expected a dict {view name: {flag: bool}}")
    checked = {}
    for name, d in views.items():
        if not isinstance(name, str) or not 1 <= len(name.encode()) <= 200:
            raise _bad(names["VIEWS"], name, "a view name is a string of 1-200 bytes")
        checked[name] = view_flags("%s[%r]" % (names["VIEWS"], name), d)
    return Config(enabled=_bool(names["ENABLED"], merged["ENABLED"]),
                  socket=sock,
                  fail_mode=_choice(names["FAIL_MODE"], merged["FAIL_MODE"], FAIL_MODES),
                  durability=_choice(names["DURABILITY"], merged["DURABILITY"], DURABILITIES),
                  timeout=_timeout(names["TIMEOUT"], merged["TIMEOUT"]),
                  defaults=defaults, views=checked, pool_size=pool)


# Seconds between two reads of the RESTSPY_* variables by get().
ENV_RECHECK = 1.0

# (environment values it was built with, Config, time.monotonic() from
# which get() reads the variables again), replaced whole (one assignment)
# so that a reader never sees a key with another key's Config.
_cache = (None, None, 0.0)


def _env_key():
    return tuple(os.environ.get(v) for v in ENV)


def get():
    """The current Config (see the module's promise); raises
    ImproperlyConfigured when the settings or the environment are wrong."""
    global _cache
    cached_key, cfg, recheck_at = _cache
    now = time.monotonic()
    if cfg is not None and now < recheck_at:
        return cfg
    key = _env_key()
    if cfg is None or cached_key != key:
        from django.conf import settings
        cfg = build(getattr(settings, "RESTSPY", None), os.environ)
    _cache = (key, cfg, now + ENV_RECHECK)
    return cfg


def reset(**kwargs):
    """Forgets the cached Config (connected to Django's setting_changed for
    RESTSPY, so override_settings takes effect; called by hand, a changed
    RESTSPY_* variable takes effect at once)."""
    global _cache
    if kwargs.get("setting", "RESTSPY") == "RESTSPY":
        _cache = (None, None, 0.0)


def resolve(cfg, view_name, decorator_flags):
    """The flags and durability one view's pairs carry: DEFAULTS (and
    DURABILITY), then the decorator's (or restspy_flags') arguments, then
    VIEWS[view_name]."""
    out = dict(cfg.defaults)
    out["durability"] = cfg.durability
    out.update(decorator_flags)
    out.update(cfg.views.get(view_name, {}))
    flags = {k: bool(out.get(k, False)) for k in FLAG_NAMES}
    return flags, out["durability"]


setting_changed.connect(reset, dispatch_uid="restspy.conf.reset")
