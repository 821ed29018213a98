"""The views the adapter's tests call: each way of spying a view (a plain
function, above DRF's @api_view, SpyMixin on an APIView and on a viewset)
and one view left alone."""
import json

from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import viewsets
from rest_framework.decorators import api_view
from rest_framework.response import Response
from rest_framework.views import APIView

import restspy


@csrf_exempt
@restspy.spy(log=True, persist=True)
def plain(request):
    return JsonResponse({"got": request.body.decode() or None}, status=201)


@restspy.spy(log=True, persist=True, replicate=True)
@api_view(["POST", "GET"])
def orders(request):
    # DRF parses the body: the adapter must have kept it for the capture.
    return Response({"parsed": request.data}, status=201 if request.method == "POST" else 200)


@restspy.spy(log=False, persist=False)
@api_view(["GET"])
def quiet(request):
    return Response({"quiet": True})


@restspy.spy(log=True, persist=False)
@api_view(["GET"])
def log_only(request):
    return Response({"log": True})


@restspy.spy
@api_view(["GET", "POST"])
def defaults(request):
    return Response({"defaults": True})


@restspy.spy(persist=True, log=True)
@api_view(["POST"])
def login(request):
    resp = Response({"token": "t0ken-in-body", "user": request.data.get("user")})
    resp.set_cookie("sessionid", "cookie-s3cret")
    return resp


@api_view(["GET"])
def untouched(request):
    return Response({"untouched": True})


class Thing(restspy.SpyMixin, APIView):
    restspy_flags = {"persist": True, "log": False}

    def get(self, request):
        return Response({"thing": 1})


class Gadgets(restspy.SpyMixin, viewsets.ViewSet):
    restspy_flags = {"persist": True}

    def list(self, request):
        return Response([{"id": 1}])

    def create(self, request):
        return Response(request.data, status=201)


def bare(request):
    """Called through RequestFactory (no URL resolved): its name is
    module.qualname."""
    return HttpResponse(json.dumps({"bare": True}), content_type="application/json")


spied_bare = restspy.spy(persist=True)(bare)
