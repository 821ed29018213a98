"""bench/drf's Django project: one trivial DRF view served three ways
(benchapp/urls.py). RESTSPY_SOCKET comes from bench/drf/run."""
SECRET_KEY = "restspy-bench-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["rest_framework", "restspy"]
MIDDLEWARE = []
ROOT_URLCONF = "benchapp.urls"
DATABASES = {}
USE_TZ = True
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
RESTSPY = {"FAIL_MODE": "closed", "TIMEOUT": 5.0}
