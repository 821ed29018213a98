"""Settings of the sitemon sample app (the upstream behind restspy in the demo
and the integration tests). Kept minimal on purpose: no auth, no sessions, no
CSRF, JSON only, so that every byte of a response is predictable."""
import importlib.util
import os
import sys
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

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

# SITEMON_MODE: "proxy" (the default) serves the views as they are, for
# restspy proxy in front; "drf" serves them decorated with the Django
# adapter (adapters/django, project/urls_drf.py): each view hands its
# requests to `restspy collect` on RESTSPY_SOCKET, and no proxy runs
# (`make run-drf`).
SITEMON_MODE = os.environ.get("SITEMON_MODE", "proxy")
if SITEMON_MODE == "drf":
    if importlib.util.find_spec("restspy") is None:  # not pip-installed: the clone's copy
        sys.path.insert(0, str(BASE_DIR.parent.parent / "adapters" / "django"))
    INSTALLED_APPS.append("restspy")
    ROOT_URLCONF = "project.urls_drf"
    # RESTSPY_SOCKET, RESTSPY_FAIL_MODE, ... override these.
    RESTSPY = {"SOCKET": str(BASE_DIR / "collect.sock"), "FAIL_MODE": "open",
               "DURABILITY": "sync", "TIMEOUT": 2.0}
    LOGGING["loggers"]["restspy"] = {"handlers": ["stderr"], "level": "WARNING"}
elif SITEMON_MODE != "proxy":
    raise ImproperlyConfigured("SITEMON_MODE = %r: expected proxy or drf" % SITEMON_MODE)
