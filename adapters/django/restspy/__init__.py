"""restspy for Django and Django REST Framework (issue 15).

    import restspy

    @restspy.spy(log=True, persist=True, replicate=True)
    @api_view(["POST"])
    def orders(request): ...

    class Sites(restspy.SpyMixin, viewsets.ModelViewSet):
        restspy_flags = {"replicate": True}

Every finished request/response pair of a spied view goes to the
`restspy collect` daemon (settings RESTSPY["SOCKET"]), which logs, stores
and replicates it with restspy's own pipeline. Settings, fail modes and
durability: adapters/django/README.md. stats() returns the counters;
flush() waits for the answers of the async pairs handed off so far.
"""
from .capture import SpyMixin, flush, spy, stats

__all__ = ["spy", "SpyMixin", "stats", "flush"]
