"""Settings of the sitemon sample app (the upstream behind restspy in the demo
and the integration tests). Kept minimal on purpose: no auth, no sessions, no
CSRF, JSON only, so that every byte of a response is predictable."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "sitemon-sample-app-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "rest_framework",
    "monitor",
]

# No CSRF (it is an API), no sessions, no APPEND_SLASH redirects, no
# security headers that would only add noise to comparisons. Only
# Idempotency-Key support, which restspy's replicator relies on for an
# exactly-once effect (see monitor/idempotency.py).
MIDDLEWARE = ["monitor.idempotency.IdempotencyMiddleware"]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SITEMON_DB") or str(BASE_DIR / "sitemon.db"),
        # Many server threads may write at once: wait for the lock instead of
        # failing with "database is locked".
        "OPTIONS": {"timeout": 30},
    }
}

# SITEMON_VARIANT=1 starts a deliberately changed build of the app, the "new
# release" of restspy's replay tests: the site representation (list, detail,
# create and update answers of /api/sites/ and /api/sites/<slug>/) renames
# "url" to "address" and adds "generated_at", the time it was serialized
# (microseconds, so two answers differ). Everything else is identical.
SITEMON_VARIANT = os.environ.get("SITEMON_VARIANT") == "1"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False

# Request bodies of any size (the tests send bodies over restspy's capture
# cap and chunked uploads); the default 2.5 MB limit would answer 400.
DATA_UPLOAD_MAX_MEMORY_SIZE = None
DATA_UPLOAD_MAX_NUMBER_FIELDS = None

REST_FRAMEWORK = {
    # No authentication: an Authorization header is accepted and ignored.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR"}},
}
