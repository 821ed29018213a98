"""restspy.apps: the Django app. At startup it checks the RESTSPY settings
and environment (ImproperlyConfigured on a bad value, before any request)
(restspy.conf follows override_settings(RESTSPY=...) itself)."""
from django.apps import AppConfig


class RestspyConfig(AppConfig):
    name = "restspy"
    verbose_name = "restspy capture"

    def ready(self):
        from . import conf
        conf.reset()
        conf.get()
