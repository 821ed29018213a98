"""A real `restspy collect` for the adapter's tests: the integration
tests' daemon fixture (tests/integration/test_collect.py's Collect:
$RESTSPY_BIN, its store, log and admin API in a temporary directory),
and DaemonCase, a SimpleTestCase whose class has one daemon and whose
RESTSPY settings point at it."""
import os
import sys
import time

from django.test import SimpleTestCase, override_settings

import harness  # tests/integration, on PYTHONPATH
from restspy import capture
from test_collect import Collect

if not os.access(harness.restspy_bin(), os.X_OK):
    sys.exit("restspy binary not found: %s (make build, or set RESTSPY_BIN)" %
             harness.restspy_bin())


class DaemonCase(SimpleTestCase):
    """One daemon per class (ARGS: more options, CONFIG: its config file);
    RESTSPY = BASE plus SOCKET. Stopped at the end (exit 0, no sanitizer
    report, else the class fails)."""
    ARGS = []
    CONFIG = None
    BASE = {"FAIL_MODE": "open", "DURABILITY": "sync", "TIMEOUT": 5.0}

    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.make_tmpdir("django")
        cls.d = Collect(cls.tmp, args=cls.ARGS, config=cls.CONFIG).start()
        cls._settings = override_settings(RESTSPY=cls.settings_for())
        cls._settings.enable()
        super().setUpClass()

    @classmethod
    def settings_for(cls, **over):
        s = dict(cls.BASE, SOCKET=cls.d.socket_path)
        s.update(over)
        return s

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls._settings.disable()
        capture.close_pools()
        try:
            if cls.d.running:
                cls.d.check_stopped()
        finally:
            harness.remove_tmpdir(cls.tmp)

    def setUp(self):
        # Each test starts from fresh connections (a previous test may have
        # stopped or replaced the daemon).
        capture.close_pools()

    def rows_at(self, path):
        return harness.rows(self.d.db_path, "path = ?", (path,))

    def log_has(self, text, timeout=3.0):
        return harness.wait_log(self.d.log_path, lambda ln: text in ln, timeout=timeout)

    def restart_daemon(self):
        """A new daemon on the same socket, store and log (the old one
        must have exited)."""
        self.__class__.d = Collect(self.tmp, args=self.ARGS, config=self.CONFIG).start()

    @staticmethod
    def elapsed(fn):
        t0 = time.monotonic()
        out = fn()
        return out, time.monotonic() - t0
