"""The routes of SITEMON_MODE=drf: project/urls.py's views, handed to
`restspy collect` by the Django adapter (adapters/django). The API's views
replicate (a write on one site is applied on its peers); the test
endpoints only log. View names (the daemon's rule names) are the URL names
below: `PUT /flags {"rules": {"site-list": {"replicate": false}}}` on the
daemon's admin API switches one at run time."""
from django.urls import path, re_path

import restspy
from monitor import views

REPLICATE = {"log": True, "persist": True, "replicate": True}
LOG_ONLY = {"log": True, "persist": False, "replicate": False}


class SiteList(restspy.SpyMixin, views.SiteList):
    restspy_flags = REPLICATE


class SiteDetail(restspy.SpyMixin, views.SiteDetail):
    restspy_flags = REPLICATE


class SiteMetrics(restspy.SpyMixin, views.SiteMetrics):
    restspy_flags = REPLICATE


class MetricDetail(restspy.SpyMixin, views.MetricDetail):
    restspy_flags = REPLICATE


log_only = restspy.spy(**LOG_ONLY)

urlpatterns = [
    path("api/sites/", SiteList.as_view(), name="site-list"),
    path("api/sites/<slug:slug>/", SiteDetail.as_view(), name="site-detail"),
    path("api/sites/<slug:slug>/metrics/", SiteMetrics.as_view(), name="site-metrics"),
    path("api/metrics/<uuid:pk>/", MetricDetail.as_view(), name="metric-detail"),
    path("api/echo/raw/", log_only(views.echo_raw), name="echo-raw"),
    re_path(r"^api/echo/(?P<rest>.*)$", log_only(views.echo), name="echo"),
    path("api/slow/", log_only(views.slow), name="slow"),
    path("api/status/<int:code>/", log_only(views.status_code), name="status"),
    path("api/big/", log_only(views.big), name="big"),
]
