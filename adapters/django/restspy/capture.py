"""restspy.capture: the view side. spy() wraps a view, SpyMixin wraps a
class-based view's or viewset's as_view(); both hand every finished
request/response pair to `restspy collect` and apply the fail mode.

Owns: the view's name (the daemon's rule name), the PAIR meta built from
Django's request and response, the counters stats() returns.
Promises: a wrapped view's response is unchanged unless the daemon missed
the pair under FAIL_MODE "closed" (then 503 JSON {"error": ...}); a miss
is always counted and logged (logger "restspy"); no request waits on the
daemon longer than TIMEOUT (plus one connect, bounded by it too).
"""
import atexit
import functools
import logging
import threading
import time

from django.http import JsonResponse

from . import client, conf

log = logging.getLogger("restspy")

_pools = {}
_pools_lock = threading.Lock()

_stats_lock = threading.Lock()
_stats = {"sent": 0, "committed": 0, "accepted": 0, "misses": 0, "failed_closed": 0}


def stats():
    """A copy of the counters: sent (pairs handed to the daemon), committed
    and accepted (its ACKs), misses (pairs it did not acknowledge),
    failed_closed (503s served for a miss under FAIL_MODE "closed")."""
    with _stats_lock:
        return dict(_stats)


def _count(**inc):
    with _stats_lock:
        for k, v in inc.items():
            _stats[k] += v


def _async_answer(ftype, body, meta):
    """The answer of an async pair, read after its response was served
    (client.Pool's on_async): counted, and a miss logged (fail closed
    cannot answer 503 any more: the response is gone)."""
    if ftype == client.ACK:
        _count(**{"committed" if body.get("status") == "committed" else "accepted": 1})
        return
    _count(misses=1)
    log.warning("restspy: capture missed after its response was served (async): "
                "%s %s (view %s): %s", meta.get("method"), meta.get("path"), meta.get("view"),
                body.get("error", body))


def pool_for(cfg):
    with _pools_lock:
        p = _pools.get(cfg.socket)
        if p is None:
            p = _pools[cfg.socket] = client.Pool(cfg.socket, cfg.pool_size, _async_answer)
        return p


def flush(timeout=None):
    """Waits (up to timeout, default TIMEOUT) for the daemon's answers to
    every async pair handed off so far, so that stats() counts them and a
    miss among them is logged. Also run when the process exits."""
    if timeout is None:
        timeout = conf.get().timeout
    with _pools_lock:
        pools = list(_pools.values())
    for p in pools:
        p.flush(timeout)


def _flush_at_exit():
    try:
        flush()
    except Exception as e:  # settings gone at interpreter exit: nothing to wait for
        log.debug("restspy: flush at exit: %s", e)


atexit.register(_flush_at_exit)


def close_pools():
    """Closes every idle connection (tests, and a process that stops)."""
    with _pools_lock:
        pools = list(_pools.values())
    for p in pools:
        p.close()


def default_name(view):
    """module.qualname of a view function or class; for a class made inside
    a function (DRF's @api_view), module.name."""
    q = getattr(view, "__qualname__", None) or getattr(view, "__name__", repr(view))
    if "<locals>" in q:
        q = getattr(view, "__name__", q)
    return "%s.%s" % (getattr(view, "__module__", "?"), q)


def view_name(request, fallback):
    """The URL name the request resolved to (with its namespaces, as
    reverse() takes it), else fallback."""
    m = getattr(request, "resolver_match", None)
    if m is not None and m.url_name:
        return m.view_name
    return fallback


def _request_body(request):
    try:
        return request.body
    except Exception as e:  # RequestDataTooBig, RawPostDataException: nothing to keep
        log.debug("restspy: request body not captured: %s", e)
        return b""


# WSGI variables that are request headers without the HTTP_ prefix.
_UNPREFIXED = {"CONTENT_TYPE": "Content-Type", "CONTENT_LENGTH": "Content-Length"}


def _req_headers(env):
    """The request's headers from the WSGI environ, named as Django's
    request.headers names them (HTTP_X_API_KEY -> X-Api-Key), without
    building that mapping of all of META (a third of the adapter's cost
    once)."""
    out = []
    for k, v in env.items():
        if k[:5] == "HTTP_":
            out.append((k[5:].replace("_", "-").title(), v))
        elif k in _UNPREFIXED and v:
            out.append((_UNPREFIXED[k], v))
    return out


def _resp_headers(response):
    out = list(response.items())
    if response.cookies:
        out += [("Set-Cookie", c.output(header="").strip()) for c in response.cookies.values()]
    return out


def _meta(request, response, name, flags, durability, started_us, duration_us):
    env = request.META
    path, _, query = request.get_full_path().partition("?")
    addr = env.get("REMOTE_ADDR") or None
    port = env.get("REMOTE_PORT")
    if addr and port:
        addr = ("[%s]:%s" if ":" in addr else "%s:%s") % (addr, port)
    meta = {
        "view": name,
        "method": request.method,
        "path": path or "/",
        "query": query or None,
        "host": env.get("HTTP_HOST") or None,
        "scheme": "https" if request.is_secure() else "http",
        "status": response.status_code,
        "started_at_us": started_us,
        "duration_us": duration_us,
        "flags": flags,
        "durability": durability,
    }
    if addr:
        meta["client_addr"] = addr
    return meta


def _response_body(response):
    if getattr(response, "streaming", False):
        return b""  # a stream is not read here: the client gets it whole
    return response.content


def _unacked(cfg, name, request, why):
    """The response for a pair the daemon missed: None (serve the view's)
    under fail open, else a 503."""
    _count(misses=1)
    where = "%s %s (view %s)" % (request.method, request.path, name)
    if cfg.fail_mode == "open":
        log.warning("restspy: capture missed, response served (fail open): %s: %s", where, why)
        return None
    _count(failed_closed=1)
    log.error("restspy: capture missed, 503 served (fail closed): %s: %s", where, why)
    return JsonResponse({"error": "restspy: the capture of this request was not "
                                  "acknowledged: %s" % why}, status=503)


def _hand_off(cfg, request, response, name, decorator_flags, started_us, t0):
    """Sends the pair; returns the response to serve."""
    flags, durability = conf.resolve(cfg, name, decorator_flags)
    if hasattr(response, "render") and callable(response.render):
        response = response.render()  # DRF's Response: its bytes are what is captured
    duration_us = int((time.perf_counter() - t0) * 1e6)
    meta = _meta(request, response, name, flags, durability, started_us, duration_us)
    _count(sent=1)
    try:
        ack = pool_for(cfg).send_pair(meta, _req_headers(request.META), _resp_headers(response),
                                      _request_body(request), _response_body(response),
                                      cfg.timeout)
    except client.Miss as e:
        return _unacked(cfg, name, request, str(e)) or response
    if ack.get("status") != "sent":  # a sync pair's ACK (an async one's comes later)
        _count(**{"committed" if ack.get("status") == "committed" else "accepted": 1})
    return response


def wrap(view, decorator_flags, fallback_name):
    """view wrapped so that each response is handed to the daemon; the
    wrapper keeps the view's attributes (csrf_exempt, DRF's cls,
    initkwargs, actions)."""
    flags = conf.view_flags("restspy.spy()", decorator_flags)

    @functools.wraps(view)
    def spied(request, *args, **kwargs):
        cfg = conf.get()
        if not cfg.enabled:
            return view(request, *args, **kwargs)
        started_us = time.time_ns() // 1000
        t0 = time.perf_counter()
        _request_body(request)  # read now, before a parser consumes the stream
        response = view(request, *args, **kwargs)
        return _hand_off(cfg, request, response, view_name(request, fallback_name), flags,
                         started_us, t0)

    spied.restspy_flags = flags
    return spied


def spy(view=None, **flags):
    """Decorator: @restspy.spy, or @restspy.spy(log=True, persist=True,
    replicate=True, durability="sync"). Flags not given come from
    RESTSPY["DEFAULTS"] (and DURABILITY); RESTSPY["VIEWS"][name] overrides
    both. Works on any Django view function, including above DRF's
    @api_view, and on the result of as_view()."""
    if view is not None and not callable(view):
        raise TypeError("restspy.spy: use @restspy.spy or @restspy.spy(flag=bool, ...)")

    def decorate(v):
        # as_view() copies its class's module and qualname onto the function.
        return wrap(v, flags, default_name(v))

    return decorate(view) if view is not None else decorate


class SpyMixin:
    """For class-based views and DRF viewsets, first among the bases:
    class Orders(restspy.SpyMixin, generics.ListCreateAPIView):
        restspy_flags = {"replicate": True}
    as_view() returns the view wrapped as spy() wraps a function; its name
    is the URL name, else module.qualname of the class."""

    restspy_flags = {}

    @classmethod
    def as_view(cls, *args, **kwargs):
        return wrap(super().as_view(*args, **kwargs), dict(cls.restspy_flags),
                    default_name(cls))
