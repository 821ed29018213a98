"""Idempotency-Key support (the convention payment APIs use): a write that
repeats a key already answered gets the stored answer and changes nothing.

The view and the key row run in one database transaction, so either both the
write and its key are committed or neither is: a client (or restspy's
replicator) that retries after a crash can never apply a write twice."""
from django.db import IntegrityError, transaction
from django.http import HttpResponse

from .models import IdempotencyKey

SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}


class IdempotencyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        key = request.headers.get("Idempotency-Key")
        if not key or request.method in SAFE_METHODS or len(key) > 200:
            return self.get_response(request)
        stored = IdempotencyKey.objects.filter(key=key).first()
        if stored is not None:
            return self._replay(stored)
        try:
            with transaction.atomic():
                response = self.get_response(request)
                if response.status_code >= 400:
                    # Only successes are remembered: a refused write (4xx)
                    # may succeed once its cause is fixed (restspy
                    # replication dead --retry), and a 5xx is no answer.
                    transaction.set_rollback(True)
                    return response
                IdempotencyKey.objects.create(
                    key=key,
                    method=request.method,
                    path=request.get_full_path()[:2000],
                    status=response.status_code,
                    content_type=response.get("Content-Type", ""),
                    body=bytes(response.content),
                )
                return response
        except IntegrityError:
            # The same key won a race with us: answer what it got.
            stored = IdempotencyKey.objects.filter(key=key).first()
            if stored is None:
                raise
            return self._replay(stored)

    @staticmethod
    def _replay(stored):
        response = HttpResponse(bytes(stored.body), status=stored.status,
                                content_type=stored.content_type or None)
        response["Idempotent-Replayed"] = "true"
        return response
