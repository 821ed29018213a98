"""The sitemon API (DRF) and the plain-Django test endpoints (echo, raw echo,
slow, status, big) that let the integration tests see exactly what restspy
forwarded and provoke the cases it must handle."""
import base64
import hashlib
import json
import time
from urllib.parse import parse_qsl

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from rest_framework import generics, status
from rest_framework.response import Response

from .models import Metric, Site
from .serializers import (MetricSerializer, MetricUpdateSerializer, SiteSerializer,
                          SiteUpdateSerializer)

# ---------------------------------------------------------------- the API


class SiteList(generics.ListCreateAPIView):
    serializer_class = SiteSerializer

    def get_queryset(self):
        qs = Site.objects.all()
        st = self.request.query_params.get("status")
        if st:
            qs = qs.filter(status=st)
        return qs

    def get_success_headers(self, data):
        # DRF would copy the model's "url" field into Location; point at the
        # created resource instead.
        return {"Location": "/api/sites/%s/" % data["slug"]}


def _etag(data):
    # Over the client-visible fields only, not updated_at (nor the variant's
    # generated_at): a weak validator that is the same on two app instances
    # holding the same site, and stable across calls.
    fields = {k: v for k, v in data.items() if k not in ("updated_at", "generated_at")}
    raw = json.dumps(fields, sort_keys=True, default=str).encode()
    return 'W/"%s"' % hashlib.sha1(raw).hexdigest()


class SiteDetail(generics.RetrieveUpdateDestroyAPIView):
    queryset = Site.objects.all()
    lookup_field = "slug"

    def get_serializer_class(self):
        if self.request.method in ("PUT", "PATCH"):
            return SiteUpdateSerializer
        return SiteSerializer

    def retrieve(self, request, *args, **kwargs):
        # Conditional GET, so that a 304 can travel through the proxy.
        data = self.get_serializer(self.get_object()).data
        etag = _etag(data)
        inm = request.headers.get("If-None-Match")
        if inm and etag in [t.strip() for t in inm.split(",")]:
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
        return Response(data, headers={"ETag": etag})


class SiteMetrics(generics.ListCreateAPIView):
    serializer_class = MetricSerializer

    def get_site(self):
        return get_object_or_404(Site, slug=self.kwargs["slug"])

    def get_queryset(self):
        qs = Metric.objects.filter(site=self.get_site())
        name = self.request.query_params.get("name")
        if name:
            qs = qs.filter(name=name)
        return qs

    def perform_create(self, serializer):
        serializer.save(site=self.get_site())


class MetricDetail(generics.RetrieveUpdateDestroyAPIView):
    queryset = Metric.objects.all()

    def get_serializer_class(self):
        if self.request.method in ("PUT", "PATCH"):
            return MetricUpdateSerializer
        return MetricSerializer


# ---------------------------------------------------------- test endpoints


def _text_or_b64(raw, key, out):
    try:
        out[key] = raw.decode("utf-8")
    except UnicodeDecodeError:
        out[key + "_b64"] = base64.b64encode(raw).decode("ascii")


def _digest(value):
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    return "sha256:" + hashlib.sha256(value).hexdigest()


@csrf_exempt
def echo(request, rest=""):
    """Any method. Answers what it received: method, raw target, query, the
    header lines in order (repeats kept; taken from the server when it gives
    them), and the body. With the request header "X-Echo-Digest: 1" every
    value is replaced by its SHA-256 ("sha256:<hex>"), so a test can check
    that secrets arrived intact without the response carrying them back."""
    env = request.META
    raw_target = env.get("RAW_URI") or env.get("REQUEST_URI")
    if raw_target is None:
        raw_target = request.get_full_path()
    # The server gives the request line as latin-1 text (WSGI convention).
    target_bytes = raw_target.encode("latin-1", "replace")
    raw_path = target_bytes.split(b"?", 1)[0]

    headers = env.get("sitemon.raw_headers")
    if headers is None:
        headers = [(k, v) for k, v in request.headers.items()]
    headers = [[k, v] for k, v in headers]
    # WSGI gives the query as latin-1 text of its bytes; show it as UTF-8.
    query = env.get("QUERY_STRING", "").encode("latin-1", "replace").decode(
        "utf-8", "backslashreplace")
    body = request.body
    digest = request.headers.get("X-Echo-Digest") == "1"

    out = {
        "method": request.method,
        "path": request.path,
        "raw_path": raw_path.decode("utf-8", "backslashreplace"),
        "query": query,
        "query_params": [list(p) for p in parse_qsl(query, keep_blank_values=True)],
        "headers": headers,
        "http_version": env.get("SERVER_PROTOCOL", ""),
        "chunked": bool(env.get("sitemon.chunked", False)),
        "body_size": len(body),
    }
    if digest:
        out["query"] = _digest(query)
        out["query_params"] = [[k, _digest(v)] for k, v in out["query_params"]]
        out["headers"] = [[k, _digest(v)] for k, v in headers]
        out["body"] = _digest(body)
    else:
        _text_or_b64(body, "body", out)
    return JsonResponse(out)


@csrf_exempt
def echo_raw(request):
    """The request body back, byte for byte, with the request's Content-Type."""
    ctype = request.META.get("CONTENT_TYPE") or "application/octet-stream"
    return HttpResponse(request.body, content_type=ctype)


def _int_arg(request, name, default, lo, hi):
    try:
        v = int(request.GET.get(name, default))
    except ValueError:
        return None
    return v if lo <= v <= hi else None


@csrf_exempt
def slow(request):
    ms = _int_arg(request, "ms", 0, 0, 600000)
    if ms is None:
        return JsonResponse({"error": "ms must be 0..600000"}, status=400)
    time.sleep(ms / 1000.0)
    return JsonResponse({"slept_ms": ms})


@csrf_exempt
def status_code(request, code):
    if not 200 <= code <= 599:
        return JsonResponse({"error": "status must be 200..599"}, status=400)
    if code in (204, 304):
        # These carry no body (nor Content-Type) by definition.
        resp = HttpResponse(status=code)
        del resp["Content-Type"]
        return resp
    return JsonResponse({"status": code}, status=code)


_PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_\n"


def big_bytes(n):
    """The n bytes /api/big/ answers (a repeating printable pattern)."""
    reps = n // len(_PATTERN) + 1
    return (_PATTERN * reps)[:n]


@csrf_exempt
def big(request):
    """n bytes; with stream=1 the response is streamed (chunked on HTTP/1.1)."""
    n = _int_arg(request, "n", 0, 0, 1 << 30)
    if n is None:
        return JsonResponse({"error": "n must be 0..2^30"}, status=400)
    if request.GET.get("stream") == "1":
        def gen():
            sent = 0
            step = 16384
            while sent < n:
                k = min(step, n - sent)
                start = sent % len(_PATTERN)
                yield big_bytes(start + k)[start:]
                sent += k
        return StreamingHttpResponse(gen(), content_type="application/octet-stream")
    return HttpResponse(big_bytes(n), content_type="application/octet-stream")
