"""The same view three times: undecorated, spied with async persistence,
spied with sync replication (the pair and its outbox message committed
before the response leaves)."""
from django.urls import path
from rest_framework.decorators import api_view
from rest_framework.response import Response

import restspy


def hello(request):
    return Response({"hello": "world", "n": 42})


plain = api_view(["GET", "POST"])(hello)
persist_async = restspy.spy(log=False, persist=True, durability="async")(
    api_view(["GET", "POST"])(hello))
replicate_sync = restspy.spy(log=False, persist=True, replicate=True, durability="sync")(
    api_view(["GET", "POST"])(hello))

urlpatterns = [
    path("plain/", plain, name="plain"),
    path("async/", persist_async, name="persist-async"),
    path("sync/", replicate_sync, name="replicate-sync"),
]
