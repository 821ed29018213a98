"""The admin API: /healthz, /stats, /flags (read and change at run time),
bearer-token protection, and the refusal to expose it without a token."""
import json
import re
import subprocess
import unittest
import uuid

import harness

DEFAULT_FLAGS = {"log": True, "persist": True, "replicate": False, "log_format": "json"}
COMBINED_RE = re.compile(
    r'^(\S+) - - \[[^\]]+\] "([A-Z]+) (\S+) HTTP/1\.[01]" (\d{3}) (\d+|-) "[^"]*" "[^"]*"$')


class Admin(harness.ProxyTestCase):
    def marker(self):
        return uuid.uuid4().hex[:12]

    def set_flags(self, **flags):
        r = self.proxy.admin("PUT", "/flags", body=flags)
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        for k, v in flags.items():
            self.assertEqual(doc[k], v, doc)
        return doc

    def wait_store_idle(self):
        """Until the store has written everything submitted."""
        def idle():
            st = self.proxy.stats()["store"]
            return st["queued"] == 0 and st["written"] + st["dropped"] >= st["submitted"]
        self.assertTrue(harness.wait_until(idle, timeout=5), self.proxy.stats())

    def test_healthz(self):
        r = self.proxy.admin("GET", "/healthz")
        self.assertEqual(r.status, 200)
        self.assertIn("json", r.header("Content-Type", ""))
        self.assertEqual(r.json(), {"status": "ok"})

    def test_stats_counts_requests(self):
        before = self.proxy.stats()
        for key in ("requests", "responses_2xx", "responses_5xx", "errors", "connections",
                    "active_connections", "logged", "captured", "store"):
            self.assertIn(key, before)
        for key in ("submitted", "written", "dropped", "queued", "batches", "errors"):
            self.assertIn(key, before["store"])
        for _ in range(3):
            self.assertEqual(self.proxy.request("GET", "/api/status/200/").status, 200)
        self.assertEqual(self.proxy.request("GET", "/api/status/503/").status, 503)

        def counted():
            # A response is counted when its record is finished, which may
            # be just after the client has read it.
            s = self.proxy.stats()
            done = (s["requests"] >= before["requests"] + 4 and
                    s["responses_2xx"] >= before["responses_2xx"] + 3 and
                    s["responses_5xx"] >= before["responses_5xx"] + 1)
            return s if done else None
        after = harness.wait_until(counted, timeout=3)
        self.assertTrue(after, "requests counter did not grow by 4: %r -> %r"
                        % (before, self.proxy.stats()))
        self.assertGreaterEqual(after["responses_2xx"], before["responses_2xx"] + 3)
        self.assertGreaterEqual(after["responses_5xx"], before["responses_5xx"] + 1)
        self.assertGreaterEqual(after["connections"], before["connections"] + 4)
        self.wait_store_idle()
        final = self.proxy.stats()
        self.assertGreaterEqual(final["store"]["written"], before["store"]["written"] + 4)
        self.assertGreaterEqual(final["store"]["batches"], 1)

    def test_flags_default_and_persist_off(self):
        r = self.proxy.admin("GET", "/flags")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), DEFAULT_FLAGS)
        m = self.marker()
        try:
            doc = self.set_flags(persist=False)
            self.assertEqual(doc, dict(DEFAULT_FLAGS, persist=False))
            self.assertEqual(self.proxy.admin("GET", "/flags").json()["persist"], False)
            for i in range(3):
                r = self.proxy.request("GET", "/api/echo/?off=%s&i=%d" % (m, i))
                self.assertEqual(r.status, 200)
            # Logged...
            for i in range(3):
                self.assertIsNotNone(
                    harness.wait_log(self.proxy.log_path, lambda ln, i=i: "off=%s&i=%d" % (m, i) in ln),
                    "request %d not logged" % i)
        finally:
            self.set_flags(persist=True)
        # ...but not stored, while a request after turning it back on is.
        r = self.proxy.request("GET", "/api/echo/?on=%s" % m)
        self.assertEqual(r.status, 200)
        rows = self.proxy.wait_rows(1, "query = ?", ("on=%s" % m,))
        self.assertEqual(len(rows), 1)
        self.wait_store_idle()
        self.assertEqual(self.proxy.rows("query LIKE ?", ("off=%s%%" % m,)), [])

    def test_flags_log_format_combined(self):
        m = self.marker()
        try:
            doc = self.set_flags(log_format="combined")
            self.assertEqual(doc["log_format"], "combined")
            r = self.proxy.request("GET", "/api/echo/?fmt=%s" % m,
                                   headers={"User-Agent": "it-agent/1.0",
                                            "Referer": "http://ref.example/"})
            self.assertEqual(r.status, 200)
            line = harness.wait_log(self.proxy.log_path, lambda ln: "fmt=" + m in ln)
            self.assertIsNotNone(line, "request not logged")
            mo = COMBINED_RE.match(line)
            self.assertIsNotNone(mo, "not a combined log line: %r" % line)
            self.assertEqual(mo.group(2), "GET")
            self.assertEqual(mo.group(3), "/api/echo/?fmt=" + m)
            self.assertEqual(mo.group(4), "200")
            self.assertIn('"http://ref.example/" "it-agent/1.0"', line)
        finally:
            self.set_flags(log_format="json")
        r = self.proxy.request("GET", "/api/echo/?fmt2=%s" % m)
        line = harness.wait_log(self.proxy.log_path, lambda ln: "fmt2=" + m in ln)
        self.assertIsNotNone(line)
        doc = json.loads(line)
        self.assertEqual(doc["query"], "fmt2=" + m)

    def test_flags_log_off(self):
        m = self.marker()
        try:
            self.set_flags(log=False)
            self.assertEqual(self.proxy.request("GET", "/api/echo/?nolog=" + m).status, 200)
        finally:
            self.set_flags(log=True)
        self.assertEqual(self.proxy.request("GET", "/api/echo/?yeslog=" + m).status, 200)
        self.assertIsNotNone(harness.wait_log(self.proxy.log_path, lambda ln: "yeslog=" + m in ln))
        self.assertFalse(any("nolog=" + m in ln for ln in self.proxy.log_lines()))
        # Stored all the same.
        self.assertEqual(len(self.proxy.wait_rows(1, "query = ?", ("nolog=" + m,))), 1)
        # Each switch is itself logged, with who made it.
        self.assertIn('restspy: flags set by 127.0.0.1: {"log":false,', self.proxy.stderr())

    def test_flags_bad_requests(self):
        for body in (b"not json", b'{"log_format":"xml"}', b'{"persist":"yes"}', b"[1]"):
            with self.subTest(body=body):
                r = self.proxy.admin("PUT", "/flags", body=body,
                                     headers={"Content-Type": "application/json"})
                self.assertEqual(r.status, 400, r)
                self.assertIn("error", r.json())
        self.assertEqual(self.proxy.admin("GET", "/flags").json(), DEFAULT_FLAGS)
        r = self.proxy.admin("GET", "/no-such-endpoint")
        self.assertEqual(r.status, 404)
        self.assertIn("error", r.json())


    def test_replicate_on_without_broker_is_409(self):
        """No amqp: switching replicate on is refused with the reason and
        nothing in the body is applied (issue 9 item 10)."""
        for body in ({"replicate": True}, {"log": False, "replicate": True},
                     {"replicate": True, "log_format": "combined"}):
            with self.subTest(body=body):
                r = self.proxy.admin("PUT", "/flags", body=body)
                self.assertEqual(r.status, 409, r)
                self.assertIn("json", r.header("Content-Type", ""))
                self.assertEqual(r.json(), {"error": "cannot switch replicate on: no broker is "
                                                     "configured (set amqp and restart)"})
                self.assertEqual(self.proxy.admin("GET", "/flags").json(), DEFAULT_FLAGS)
        # Switching it off (it is off) is fine.
        self.assertEqual(self.set_flags(replicate=False), DEFAULT_FLAGS)


class AdminNoStore(harness.ProxyTestCase):
    PROXY_ARGS = ("--store", "off")

    def test_persist_on_without_store_is_409(self):
        """--store off: switching persist on is refused, switching it off
        is fine (issue 9 item 10)."""
        flags = dict(DEFAULT_FLAGS, persist=False)
        self.assertEqual(self.proxy.admin("GET", "/flags").json(), flags)
        for body in ({"persist": True}, {"persist": True, "log": False}):
            with self.subTest(body=body):
                r = self.proxy.admin("PUT", "/flags", body=body)
                self.assertEqual(r.status, 409, r)
                self.assertEqual(r.json(), {"error": "cannot switch persist on: the store is "
                                                     "off (set store and restart)"})
                self.assertEqual(self.proxy.admin("GET", "/flags").json(), flags)
        r = self.proxy.admin("PUT", "/flags", body={"persist": False, "log": True})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), flags)


class AdminHostCheck(harness.ProxyTestCase):
    """Without a token, only a Host naming the admin listener is served, so
    that a web page cannot reach it through DNS rebinding (issue 9 item
    28). This class has no admin_hosts: AdminHosts adds names."""

    def get(self, host, method="GET", path="/flags", body=None):
        return self.proxy.admin(method, path, body=body, headers={"Host": host})

    def assert_served(self, hosts):
        for host in hosts:
            with self.subTest(host=host):
                r = self.get(host)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json(), DEFAULT_FLAGS)

    def assert_421(self, hosts):
        for host in hosts:
            for method, path, body in (("GET", "/flags", None), ("GET", "/healthz", None),
                                       ("PUT", "/flags", {"persist": False})):
                with self.subTest(host=host, path=path, method=method):
                    r = self.get(host, method, path, body)
                    self.assertEqual(r.status, 421, r)
                    self.assertIn("json", r.header("Content-Type", ""))
                    self.assertIn("does not name this admin listener", r.json()["error"])
        self.assertEqual(self.get("127.0.0.1:%d" % self.proxy.admin_port).json(), DEFAULT_FLAGS)

    def test_names_of_the_listener_are_served(self):
        port = self.proxy.admin_port
        self.assert_served(["127.0.0.1:%d" % port, "localhost:%d" % port,
                            "LocalHost:%d" % port])
        # No Host at all (not a browser): served.
        resp = harness.raw_request(port, b"GET /healthz HTTP/1.0\r\n\r\n")[0]
        self.assertEqual(resp.status, 200, resp)

    def test_other_hosts_get_421(self):
        port = self.proxy.admin_port
        self.assert_421(["evil.example:%d" % port, "evil.example", "127.0.0.1:1", "localhost",
                         "127.0.0.1.evil.example:%d" % port, "", "[::1]:%d" % port,
                         "restspy.internal:%d" % port])
        # Two Host headers: refused, whatever they say.
        req = ("GET /flags HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nHost: evil.example\r\n"
               "Connection: close\r\n\r\n" % port).encode()
        resp = harness.raw_request(port, req)[0]
        self.assertEqual(resp.status, 400, resp)


class AdminHosts(AdminHostCheck):
    """admin_hosts: "name" at any port, "name:port" at that port only."""
    PROXY_ARGS = ("--admin-hosts", "Restspy.Internal, other.example:9999")

    def test_names_of_the_listener_are_served(self):
        super().test_names_of_the_listener_are_served()
        port = self.proxy.admin_port
        self.assert_served(["restspy.internal", "restspy.internal:1234",
                            "RESTSPY.INTERNAL:%d" % port, "other.example:9999"])

    def test_other_hosts_get_421(self):
        port = self.proxy.admin_port
        self.assert_421(["other.example:%d" % port, "other.example",
                         "restspy.internal.evil:%d" % port, "evil.example:%d" % port])


class AdminToken(harness.ProxyTestCase):
    ADMIN_TOKEN = "s3cret"

    def test_healthz_liveness_without_token(self):
        """A load balancer's probe without the token gets the status alone;
        a wrong token is still refused (issue 9 item 15)."""
        r = self.proxy.admin("GET", "/healthz", auth=False)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"status": "ok"})
        for hdrs in ({"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            with self.subTest(headers=hdrs):
                r = self.proxy.admin("GET", "/healthz", headers=hdrs, auth=False)
                self.assertEqual(r.status, 401, r)
        r = self.proxy.admin("PUT", "/healthz", auth=False)
        self.assertEqual(r.status, 405, r)
        self.assertEqual(self.proxy.admin("GET", "/healthz").json(), {"status": "ok"})

    def test_any_host_with_the_token(self):
        """With a token the Host check is off: the token is the defence
        (issue 9 item 28)."""
        for host in ("evil.example", "127.0.0.1:1"):
            r = self.proxy.admin("GET", "/flags", headers={"Host": host})
            self.assertEqual(r.status, 200, r)
        r = self.proxy.admin("GET", "/flags", headers={"Host": "evil.example"}, auth=False)
        self.assertEqual(r.status, 401, r)

    def test_requires_bearer_token(self):
        for method, path, body in (("GET", "/stats", None), ("GET", "/flags", None),
                                   ("PUT", "/flags", {"persist": False})):
            for hdrs in ({}, {"Authorization": "Bearer wrong"},
                         {"Authorization": "Basic czNjcmV0"}, {"Authorization": "s3cret"}):
                with self.subTest(path=path, headers=hdrs):
                    r = self.proxy.admin(method, path, body=body, headers=hdrs, auth=False)
                    self.assertEqual(r.status, 401, r)
                    self.assertIn("json", r.header("Content-Type", ""))
                    self.assertIn("error", r.json())
        # Nothing changed by the refused PUTs.
        r = self.proxy.admin("GET", "/flags")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), DEFAULT_FLAGS)
        self.assertEqual(self.proxy.admin("GET", "/stats").status, 200)
        self.assertEqual(self.proxy.admin("GET", "/healthz").status, 200)


class AdminTokenDegraded(harness.ProxyTestCase):
    """A token and a broker that is down: the reasons are for the token
    holder only (issue 9 items 6 and 15)."""
    ADMIN_TOKEN = "s3cret"
    PROXY_ARGS = ("--amqp", "amqp://guest:guest@127.0.0.1:%d/" % harness.free_port(),
                  "--retry-min", "50ms", "--retry-max", "200ms")

    def test_degraded_details_need_the_token(self):
        self.assertTrue(harness.wait_until(
            lambda: self.proxy.admin("GET", "/healthz").json().get("reasons"), timeout=5))
        r = self.proxy.admin("GET", "/healthz", auth=False)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"status": "degraded"})
        doc = self.proxy.admin("GET", "/healthz").json()
        self.assertEqual(doc["status"], "degraded")
        self.assertIn("replication: broker unreachable for ", doc["reasons"][0])


class AdminExposedWithoutToken(unittest.TestCase):
    def test_non_loopback_admin_needs_token(self):
        tmp = harness.make_tmpdir("admin-exposed")
        try:
            port = harness.free_port()
            cmd = [harness.restspy_bin(), "proxy", "--listen", "127.0.0.1:%d" % harness.free_port(),
                   "--upstream", "http://127.0.0.1:%d" % harness.free_port(),
                   "--store", "sqlite:%s/restspy.db" % tmp, "--log", "%s/access.log" % tmp,
                   "--admin", "0.0.0.0:%d" % port, "--workers", "1", "--node", "test"]
            try:
                p = subprocess.run(cmd, env=harness.clean_env(), stdin=subprocess.DEVNULL,
                                   capture_output=True, timeout=10)
            except subprocess.TimeoutExpired:
                self.fail("restspy started with an exposed admin API and no token")
            err = p.stderr.decode("utf-8", "replace")
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("admin_token", err)
            self.assertIsNone(harness.sanitizer_report(err), err)
        finally:
            harness.remove_tmpdir(tmp)


if __name__ == "__main__":
    unittest.main()
