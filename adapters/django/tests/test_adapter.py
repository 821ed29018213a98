"""The Django adapter against a real `restspy collect` (issue 15): what each
spied view hands the daemon and what the daemon stores, the settings and
their environment overrides, the daemon's run-time switches by view name,
redaction, the fail modes with the daemon stopped or frozen, the sync
ack's semantics when the daemon dies, and a peer's replicated requests.
Every request goes through Django's test Client (the real handler, URL
resolution, DRF); every check reads the daemon's SQLite store, its log or
its admin API."""
import contextlib
import json
import os
import signal
import sqlite3
import threading
import time
import uuid
from unittest import mock

from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory, override_settings

import harness
import restspy
from restspy import capture, conf

from . import views
from .daemon import DaemonCase


@contextlib.contextmanager
def environ(values):
    """os.environ with values set, seen by conf.get() at once on entry and
    on exit (it reads the variables once per conf.ENV_RECHECK by itself)."""
    try:
        with mock.patch.dict(os.environ, values):
            conf.reset()
            yield
    finally:
        conf.reset()


def tag():
    """A unique query string: it tells this test's rows apart."""
    return "t=" + uuid.uuid4().hex[:16]


class Views(DaemonCase):
    """Each way of spying a view, its flags on and off."""

    def rows_q(self, q):
        return harness.rows(self.d.db_path, "query = ?", (q,))

    def test_function_view_stored_whole(self):
        q = tag()
        before = restspy.stats()
        r = self.client.post("/plain/?" + q, data=b'{"n": 1}', content_type="application/json",
                             HTTP_X_TRACE="abc", REMOTE_ADDR="10.1.2.3")
        self.assertEqual(r.status_code, 201)
        rows = self.rows_q(q)  # sync: committed before the response left the view
        self.assertEqual(len(rows), 1, rows)
        row = rows[0]
        self.assertEqual((row["rule"], row["method"], row["path"], row["status"], row["origin"]),
                         ("plain", "POST", "/plain/", 201, "local"))
        self.assertEqual(harness.as_bytes(row["req_body"]), b'{"n": 1}')
        self.assertEqual(json.loads(harness.as_bytes(row["resp_body"])), {"got": '{"n": 1}'})
        self.assertEqual(row["client_addr"], "10.1.2.3")
        self.assertIn(("X-Trace", "abc"), harness.headers_of(row["req_headers"]))
        self.assertIn(("Content-Type", "application/json"), harness.headers_of(row["resp_headers"]))
        self.assertGreater(row["duration_us"], 0)
        after = restspy.stats()
        self.assertEqual((after["sent"] - before["sent"], after["committed"] - before["committed"],
                          after["misses"] - before["misses"]), (1, 1, 0))
        self.assertIsNotNone(self.log_has(row["id"]), "the view logs")
        # restspy requests lists it like a proxy's capture.
        p = harness.run_cli(["requests", "--store", "sqlite:" + self.d.db_path, "--json"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(row["id"], p.stdout)

    def test_above_api_view_the_parsed_body_is_kept(self):
        q = tag()
        r = self.client.post("/orders/?" + q, data={"item": "x", "qty": 2},
                             content_type="application/json")
        self.assertEqual((r.status_code, r.json()), (201, {"parsed": {"item": "x", "qty": 2}}))
        row = self.rows_q(q)[0]
        self.assertEqual(row["rule"], "orders")
        self.assertEqual(json.loads(harness.as_bytes(row["req_body"])), {"item": "x", "qty": 2})
        self.assertEqual(json.loads(harness.as_bytes(row["resp_body"])),
                         {"parsed": {"item": "x", "qty": 2}})
        flags = self.d.admin("GET", "/flags").json()
        rules = {x["name"]: x for x in flags["rules"]}
        self.assertEqual(rules["orders"]["configured"],
                         {"log": True, "persist": True, "replicate": True})

    def test_flags_off_nothing_stored_nor_logged(self):
        q = tag()
        before = restspy.stats()
        self.assertEqual(self.client.get("/quiet/?" + q).status_code, 200)
        after = restspy.stats()
        # The pair went to the daemon (a run-time switch could turn it on)
        # and was accepted, not committed.
        self.assertEqual((after["sent"] - before["sent"], after["accepted"] - before["accepted"]),
                         (1, 1))
        self.assertEqual(self.rows_q(q), [])
        self.assertIsNone(self.log_has(q, timeout=0.5))

    def test_log_only(self):
        q = tag()
        self.client.get("/log-only/?" + q)
        self.assertIsNotNone(self.log_has(q))
        self.assertEqual(self.rows_q(q), [], "log only: not persisted")

    def test_mixin_on_an_apiview_and_a_viewset(self):
        q = tag()
        self.assertEqual(self.client.get("/thing/?" + q).json(), {"thing": 1})
        self.assertEqual(self.client.get("/api/gadgets/?" + q).json(), [{"id": 1}])
        r = self.client.post("/api/gadgets/?" + q, data={"id": 2}, content_type="application/json")
        self.assertEqual(r.status_code, 201)
        got = sorted((r["rule"], r["method"]) for r in self.rows_q(q))
        # Namespaced URL names, as reverse() takes them.
        self.assertEqual(got, [("shop:gadget-list", "GET"), ("shop:gadget-list", "POST"),
                               ("thing", "GET")])
        self.assertIsNone(self.log_has(q + '","status":200,"req_body_size":0,"req_truncated":'
                                       'false,"resp_body_size":11', timeout=0.3),
                          "Thing's log flag is off")

    def test_unresolved_view_is_named_module_qualname(self):
        q = tag()
        request = RequestFactory().get("/bare/?" + q)
        self.assertEqual(views.spied_bare(request).status_code, 200)
        self.assertEqual([r["rule"] for r in self.rows_q(q)], ["tests.views.bare"])

    def test_request_headers_named_as_django_names_them(self):
        """capture reads the headers from META itself: the same names,
        values and order as request.headers, CGI variables left out."""
        request = RequestFactory().post("/plain/?" + tag(), data=b'{"a": 1}',
                                        content_type="application/json",
                                        HTTP_X_FORWARDED_FOR="10.0.0.1",
                                        HTTP_ACCEPT="*/*", HTTP_COOKIE="a=b")
        request.META["CONTENT_LENGTH"] = "8"
        request.META["SERVER_SOFTWARE"] = "gunicorn"
        got = [list(h) for h in capture._req_headers(request.META)]
        self.assertEqual(got, [[k, v] for k, v in request.headers.items()])
        self.assertIn(["Content-Type", "application/json"], got)
        self.assertIn(["Content-Length", "8"], got)
        self.assertIn(["X-Forwarded-For", "10.0.0.1"], got)
        self.assertNotIn("Server-Software", [k for k, _ in got])

    def test_undecorated_view_sends_nothing(self):
        before = restspy.stats()
        self.assertEqual(self.client.get("/untouched/?" + tag()).status_code, 200)
        self.assertEqual(restspy.stats()["sent"], before["sent"])

    def test_replicated_request_recorded_as_replicated(self):
        q = tag()
        self.client.post("/orders/?" + q, data={"a": 1}, content_type="application/json",
                         HTTP_X_RESTSPY_REPLICATED_FROM="paris")
        q2 = tag()
        self.client.post("/orders/?" + q2, data={"a": 1}, content_type="application/json")
        peer, local = self.rows_q(q)[0], self.rows_q(q2)[0]
        self.assertEqual((peer["origin"], local["origin"]), ("replicated", "local"))
        self.assertIsNone(peer["replication"])


class Settings(DaemonCase):
    """DEFAULTS, VIEWS, ENABLED, DURABILITY, SOCKET, FAIL_MODE, TIMEOUT and
    their RESTSPY_* variables."""

    def rows_q(self, q):
        return harness.rows(self.d.db_path, "query = ?", (q,))

    def test_defaults_apply_to_a_bare_decorator(self):
        q = tag()
        self.client.get("/defaults/?" + q)  # built-in defaults: log and persist on
        self.assertEqual(len(self.rows_q(q)), 1)
        with override_settings(RESTSPY=self.settings_for(DEFAULTS={"persist": False})):
            q = tag()
            self.client.get("/defaults/?" + q)
            self.assertEqual(self.rows_q(q), [])

    def test_views_override_the_decorator(self):
        with override_settings(RESTSPY=self.settings_for(VIEWS={"plain": {"persist": False}})):
            q = tag()
            self.client.post("/plain/?" + q)
            self.assertEqual(self.rows_q(q), [])
        q = tag()
        self.client.post("/plain/?" + q)
        self.assertEqual(len(self.rows_q(q)), 1, "the override ended with the settings")

    def test_durability_setting_env_and_per_view(self):
        def status_of(url, **over):
            before = restspy.stats()
            self.client.post(url)
            # An async pair's answer is read after its response: flush()
            # waits for it (a sync one's was read before the response).
            restspy.flush()
            after = restspy.stats()
            return "committed" if after["committed"] > before["committed"] else (
                "accepted" if after["accepted"] > before["accepted"] else "miss")

        self.assertEqual(status_of("/plain/?" + tag()), "committed")
        with override_settings(RESTSPY=self.settings_for(DURABILITY="async")):
            self.assertEqual(status_of("/plain/?" + tag()), "accepted")
        with environ({"RESTSPY_DURABILITY": "async"}):
            self.assertEqual(status_of("/plain/?" + tag()), "accepted")
        with override_settings(RESTSPY=self.settings_for(VIEWS={"plain": {"durability": "async"}})):
            self.assertEqual(status_of("/plain/?" + tag()), "accepted")
        # Accepted pairs are stored all the same, a moment later.
        self.assertEqual(status_of("/plain/?" + tag()), "committed")

    def test_enabled_off_by_setting_and_env(self):
        before = restspy.stats()["sent"]
        with override_settings(RESTSPY=self.settings_for(ENABLED=False)):
            self.assertEqual(self.client.post("/plain/").status_code, 201)
        with environ({"RESTSPY_ENABLED": "off"}):
            self.assertEqual(self.client.post("/plain/").status_code, 201)
        self.assertEqual(restspy.stats()["sent"], before)
        with environ({"RESTSPY_ENABLED": "on"}):
            with override_settings(RESTSPY=self.settings_for(ENABLED=False)):
                self.client.post("/plain/")
        self.assertEqual(restspy.stats()["sent"], before + 1, "the environment wins")

    def test_socket_fail_mode_and_timeout_from_env(self):
        nowhere = os.path.join(self.tmp, "nobody.sock")
        with override_settings(RESTSPY=self.settings_for(SOCKET=nowhere)):
            q = tag()
            with environ({"RESTSPY_SOCKET": self.d.socket_path}):
                self.client.post("/plain/?" + q)
            self.assertEqual(len(self.rows_q(q)), 1, "RESTSPY_SOCKET beats SOCKET")
            with environ({"RESTSPY_FAIL_MODE": "closed",
                                              "RESTSPY_TIMEOUT": "0.5"}):
                self.assertEqual(conf.get().timeout, 0.5)
                with self.assertLogs("restspy", "ERROR"):
                    r = self.client.post("/plain/")
                self.assertEqual(r.status_code, 503)

    def test_bad_values_are_improperly_configured(self):
        bad_settings = [({"FAIL_MODE": "sideways"}, "FAIL_MODE"),
                        ({"DURABILITY": "eventually"}, "DURABILITY"),
                        ({"TIMEOUT": 0}, "TIMEOUT"), ({"TIMEOUT": "soon"}, "TIMEOUT"),
                        ({"ENABLED": "maybe"}, "ENABLED"), ({"SOCKET": ""}, "SOCKET"),
                        ({"DEFAULTS": {"replicat": True}}, "replicat"),
                        ({"VIEWS": {"plain": {"persist": "sometimes"}}}, "persist"),
                        ({"VIEWS": {"plain": {"durability": "later"}}}, "durability"),
                        ({"SOKET": "/x"}, "SOKET")]
        for over, name in bad_settings:
            with self.subTest(over=over):
                with override_settings(RESTSPY=self.settings_for(**over)):
                    with self.assertRaisesRegex(ImproperlyConfigured, name):
                        conf.get()
                    with self.assertRaisesRegex(ImproperlyConfigured, name):
                        self.client.post("/plain/")
        bad_env = [("RESTSPY_FAIL_MODE", "shut"), ("RESTSPY_DURABILITY", "x"),
                   ("RESTSPY_TIMEOUT", "-1"), ("RESTSPY_ENABLED", "perhaps"),
                   ("RESTSPY_SOCKET", "")]
        for var, value in bad_env:
            with self.subTest(var=var):
                with environ({var: value}):
                    with self.assertRaisesRegex(ImproperlyConfigured,
                                                "environment variable " + var):
                        conf.get()
        with self.assertRaisesRegex(ImproperlyConfigured, "restspy.spy"):
            restspy.spy(replicate="sometimes")(views.bare)
        conf.get()  # back to good settings

    def test_environment_change_seen_within_env_recheck(self):
        """Without reset(), a changed variable takes effect after at most
        ENV_RECHECK seconds (get() does not read the environment at each
        call) and a restored one too."""
        conf.reset()
        before = conf.get().timeout
        self.assertNotEqual(before, 0.75)
        with mock.patch.dict(os.environ, {"RESTSPY_TIMEOUT": "0.75"}):
            deadline = time.monotonic() + conf.ENV_RECHECK + 1.0
            while conf.get().timeout != 0.75 and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertEqual(conf.get().timeout, 0.75)
        deadline = time.monotonic() + conf.ENV_RECHECK + 1.0
        while conf.get().timeout != before and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(conf.get().timeout, before)


class RuntimeSwitch(DaemonCase):
    def test_put_flags_by_view_name(self):
        def stored(url):
            q = tag()
            self.client.post(url + "?" + q)
            return len(harness.rows(self.d.db_path, "query = ?", (q,)))

        self.assertEqual(stored("/plain/"), 1)
        r = self.d.admin("PUT", "/flags", body={"rules": {"plain": {"persist": False}}})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(stored("/plain/"), 0, "switched off at run time, no deploy")
        self.assertEqual(stored("/thing/"), 1, "other views unchanged")
        r = self.d.admin("PUT", "/flags", body={"rules": {"plain": {"persist": True}}})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(stored("/plain/"), 1)
        # A view configured off can be switched on: its pairs always go to
        # the daemon.
        self.client.get("/quiet/")
        r = self.d.admin("PUT", "/flags", body={"rules": {"quiet": {"persist": True}}})
        self.assertEqual(r.status, 200, r.body)
        q = tag()
        self.client.get("/quiet/?" + q)
        self.assertEqual(len(harness.rows(self.d.db_path, "query = ?", (q,))), 1)


class Redaction(DaemonCase):
    def test_authorization_cookies_password_as_stored(self):
        q = tag()
        body = json.dumps({"user": "ann", "password": "hunter2-pw"})
        r = self.client.post("/login/?" + q, data=body, content_type="application/json",
                             HTTP_AUTHORIZATION="Bearer bearer-s3cret",
                             HTTP_COOKIE="sessionid=req-cookie-s3cret")
        self.assertEqual(r.status_code, 200)
        self.assertIn("cookie-s3cret", r.cookies["sessionid"].value, "the client gets its cookie")
        row = harness.rows(self.d.db_path, "query = ?", (q,))[0]
        stored = json.dumps([harness.headers_of(row["req_headers"]),
                             harness.headers_of(row["resp_headers"])])
        stored += harness.as_bytes(row["req_body"]).decode()
        stored += harness.as_bytes(row["resp_body"]).decode()
        line = self.log_has(row["id"])
        for text in (stored, line):
            for secret in ("bearer-s3cret", "req-cookie-s3cret", "cookie-s3cret", "hunter2-pw",
                           "t0ken-in-body"):
                self.assertNotIn(secret, text)
        names = [n.lower() for n, _ in harness.headers_of(row["req_headers"])]
        self.assertIn("authorization", names)
        self.assertIn("set-cookie", [n.lower() for n, _ in harness.headers_of(row["resp_headers"])])
        self.assertIn("ann", stored)


class FailModes(DaemonCase):
    """The daemon stopped, frozen (slow past TIMEOUT) or killed before its
    ack."""

    def stop_daemon(self):
        self.d.check_stopped(self)
        self.addCleanup(self.restart_daemon)

    def test_fail_open_serves_counts_and_warns(self):
        self.client.post("/plain/")  # a pooled connection to the daemon
        self.stop_daemon()
        before = restspy.stats()
        with self.assertLogs("restspy", "WARNING") as logs:
            r = self.client.post("/plain/?" + tag())
        self.assertEqual(r.status_code, 201, "fail open: the view's response")
        self.assertEqual(restspy.stats()["misses"], before["misses"] + 1)
        self.assertIn("fail open", logs.output[0])
        self.assertIn("POST /plain/ (view plain)", logs.output[0])

    def test_fail_closed_answers_503_json(self):
        self.stop_daemon()
        before = restspy.stats()
        with override_settings(RESTSPY=self.settings_for(FAIL_MODE="closed")):
            with self.assertLogs("restspy", "ERROR"):
                r = self.client.post("/orders/", data={"a": 1}, content_type="application/json")
        self.assertEqual(r.status_code, 503)
        self.assertEqual(r["Content-Type"], "application/json")
        self.assertIn("not acknowledged", r.json()["error"])
        s = restspy.stats()
        self.assertEqual((s["misses"] - before["misses"],
                          s["failed_closed"] - before["failed_closed"]), (1, 1))

    def test_reconnects_to_a_restarted_daemon(self):
        self.client.post("/plain/")
        self.d.check_stopped(self)
        self.restart_daemon()
        q = tag()
        before = restspy.stats()["misses"]
        self.client.post("/plain/?" + q)
        self.assertEqual(restspy.stats()["misses"], before, "the stale connection is not a miss")
        self.assertEqual(len(harness.rows(self.d.db_path, "query = ?", (q,))), 1)

    def test_slow_daemon_times_out(self):
        self.client.post("/plain/")
        self.d.proc.send_signal(signal.SIGSTOP)
        try:
            with override_settings(RESTSPY=self.settings_for(TIMEOUT=0.5, FAIL_MODE="closed")):
                with self.assertLogs("restspy", "ERROR") as logs:
                    r, took = self.elapsed(lambda: self.client.post("/plain/"))
        finally:
            self.d.proc.send_signal(signal.SIGCONT)
        self.assertEqual(r.status_code, 503)
        self.assertTrue(0.4 < took < 2.0, took)
        self.assertIn("within 0.5s", logs.output[0])
        # The daemon answers late on that connection: it is dropped, the
        # next request uses a fresh one.
        q = tag()
        self.client.post("/plain/?" + q)
        self.assertEqual(len(harness.rows(self.d.db_path, "query = ?", (q,))), 1)

    def test_async_returns_at_once_and_a_later_loss_is_counted(self):
        """Async: the response does not wait for the daemon (frozen here);
        the pair's answer is read later, and when the daemon dies without
        giving it, the pair is counted as a miss and logged, not dropped
        unheard."""
        self.client.post("/plain/")  # a pooled connection to the daemon
        settings = self.settings_for(DURABILITY="async", TIMEOUT=5.0)
        before = restspy.stats()
        self.d.proc.send_signal(signal.SIGSTOP)
        try:
            with override_settings(RESTSPY=settings):
                r, took = self.elapsed(lambda: self.client.post("/plain/?" + tag()))
            self.assertEqual(r.status_code, 201)
            self.assertLess(took, 1.0, "an async pair must not wait for its answer")
            self.assertEqual(restspy.stats()["sent"], before["sent"] + 1)
        finally:
            self.d.proc.kill()
            self.d.proc.wait()
            self.addCleanup(self.restart_daemon)
        with self.assertLogs("restspy", "WARNING") as logs:
            restspy.flush(2.0)
        after = restspy.stats()
        self.assertEqual((after["misses"] - before["misses"],
                          after["accepted"] - before["accepted"]), (1, 0))
        self.assertIn("after its response was served (async)", logs.output[0])

    def test_async_pairs_settled_together(self):
        """Protocol version 2: async pairs get no answer of their own; one
        answer every ACK_EVERY pairs, and flush()'s FLUSH, settle all of
        them: each counted accepted once, none a miss, all stored."""
        from restspy import client
        n = client.ACK_EVERY + 8
        before = restspy.stats()
        q = tag()
        with override_settings(RESTSPY=self.settings_for(DURABILITY="async")):
            for i in range(n):
                self.assertEqual(self.client.post("/plain/?%s&i=%d" % (q, i)).status_code, 201)
            pool = capture.pool_for(conf.get())
            self.assertEqual([c.version for c in pool.idle], [2])
            restspy.flush()
        after = restspy.stats()
        self.assertEqual((after["sent"] - before["sent"], after["accepted"] - before["accepted"],
                          after["misses"] - before["misses"]), (n, n, 0))
        self.assertTrue(harness.wait_until(lambda: len(harness.rows(
            self.d.db_path, "query LIKE ?", (q + "%",))) == n))

    def test_daemon_killed_before_its_ack(self):
        """Sync: the pair is written to the socket, the daemon (frozen)
        dies before answering. The client gets the fail mode's answer at
        once (not after TIMEOUT) and the store has nothing of the pair."""
        for mode, expect in (("closed", 503), ("open", 201)):
            with self.subTest(mode=mode):
                self.client.post("/plain/")
                q = tag()
                got = {}
                settings = self.settings_for(FAIL_MODE=mode, TIMEOUT=20.0)

                def call():
                    with override_settings(RESTSPY=settings):
                        got["r"], got["took"] = self.elapsed(
                            lambda: self.client.post("/plain/?" + q, data=b"x" * 1000,
                                                     content_type="text/plain"))

                self.d.proc.send_signal(signal.SIGSTOP)
                t = threading.Thread(target=call)
                with self.assertLogs("restspy", "WARNING"):
                    t.start()
                    harness.wait_until(lambda: False, timeout=0.3)
                    self.d.proc.send_signal(signal.SIGKILL)
                    self.d.proc.wait()
                    t.join(10)
                self.assertFalse(t.is_alive())
                self.assertEqual(got["r"].status_code, expect)
                self.assertLess(got["took"], 5.0, "EOF ends the wait, not TIMEOUT")
                self.assert_store_consistent(q)
                self.restart_daemon()

    def test_kill_under_load_nothing_half_written(self):
        """Sync pairs from 6 threads, the daemon SIGKILLed mid-stream: every
        201 (fail closed: committed) has its whole row; every 503 has its
        whole row or none."""
        outcomes = []
        lock = threading.Lock()
        stop = threading.Event()
        settings = self.settings_for(FAIL_MODE="closed", TIMEOUT=10.0)

        def worker():
            with override_settings(RESTSPY=settings):
                while not stop.is_set():
                    q = tag()
                    body = (q * 50).encode()
                    r = self.client.post("/plain/?" + q, data=body, content_type="text/plain")
                    with lock:
                        outcomes.append((q, body, r.status_code))

        self.addCleanup(self.restart_daemon)
        threads = [threading.Thread(target=worker) for _ in range(6)]
        for t in threads:
            t.start()
        harness.wait_until(lambda: len(outcomes) >= 60, timeout=20)
        self.d.proc.send_signal(signal.SIGKILL)
        self.d.proc.wait()
        harness.wait_until(lambda: len([o for o in outcomes if o[2] == 503]) >= 6, timeout=10)
        stop.set()
        for t in threads:
            t.join(15)
        codes = {c for _, _, c in outcomes}
        self.assertLessEqual(codes, {201, 503}, codes)
        self.assertIn(201, codes)
        self.assertIn(503, codes)
        for q, body, code in outcomes:
            rows = harness.rows(self.d.db_path, "query = ?", (q,))
            if code == 201:
                self.assertEqual(len(rows), 1, "acked committed: stored (%s)" % q)
            self.assertLessEqual(len(rows), 1)
            for row in rows:
                self.assertEqual(harness.as_bytes(row["req_body"]), body)
                self.assertEqual(row["status"], 201)
        self.assert_store_consistent(None)

    def assert_store_consistent(self, q):
        con = sqlite3.connect(self.d.db_path, timeout=5)
        try:
            self.assertEqual(con.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        finally:
            con.close()
        if q is not None:
            self.assertEqual(harness.rows(self.d.db_path, "query = ?", (q,)), [],
                             "the daemon never read the pair: nothing of it is stored")

