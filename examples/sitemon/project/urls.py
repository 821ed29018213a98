from django.urls import path, re_path

from monitor import views

urlpatterns = [
    path("api/sites/", views.SiteList.as_view()),
    path("api/sites/<slug:slug>/", views.SiteDetail.as_view()),
    path("api/sites/<slug:slug>/metrics/", views.SiteMetrics.as_view()),
    path("api/metrics/<uuid:pk>/", views.MetricDetail.as_view()),
    path("api/echo/raw/", views.echo_raw),
    # Any path under /api/echo/ echoes (non-ASCII paths, odd characters).
    re_path(r"^api/echo/(?P<rest>.*)$", views.echo),
    path("api/slow/", views.slow),
    path("api/status/<int:code>/", views.status_code),
    path("api/big/", views.big),
]
