"""Settings of the adapter's Django tests (adapters/django/tests). Run them
with tests/integration/test_django_adapter.py, or by hand:

    cd adapters/django && PYTHONPATH=.:../../tests/integration \
        RESTSPY_BIN=../../build/restspy /usr/bin/python3 -m django test tests \
        --settings tests.settings

Each test class starts its own `restspy collect` (tests/daemon.py) and
points RESTSPY["SOCKET"] at it."""
SECRET_KEY = "restspy-adapter-tests-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["rest_framework", "restspy"]
MIDDLEWARE = []
ROOT_URLCONF = "tests.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_TZ = True
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
# A path nobody listens on: each class sets its daemon's socket.
RESTSPY = {"SOCKET": "/nonexistent/restspy-tests.sock", "TIMEOUT": 5.0}
# The adapter's warnings are checked with assertLogs; the rest is noise here.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"restspy": {"handlers": ["null"], "propagate": False}},
}
