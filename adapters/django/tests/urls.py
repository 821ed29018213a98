from django.urls import include, path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("gadgets", views.Gadgets, basename="gadget")

urlpatterns = [
    path("plain/", views.plain, name="plain"),
    path("orders/", views.orders, name="orders"),
    path("quiet/", views.quiet, name="quiet"),
    path("log-only/", views.log_only, name="log-only"),
    path("defaults/", views.defaults, name="defaults"),
    path("login/", views.login, name="login"),
    path("untouched/", views.untouched, name="untouched"),
    path("thing/", views.Thing.as_view(), name="thing"),
    path("api/", include((router.urls, "shop"))),
]
