"""The admin API: /healthz, /stats, /flags (read and change at run time,
globally and per rule), bearer-token protection, and the refusal to expose
it without a token."""
import json
import re
import signal
import subprocess
import unittest
import uuid

import harness

# The default rule of a config without [rule] sections, as GET /flags shows it.
DEFAULT_RULE = {"name": "default", "log": True, "persist": True, "replicate": True,
                "configured": {"log": True, "persist": True, "replicate": True}}
DEFAULT_FLAGS = {"log": True, "persist": True, "replicate": False, "log_format": "json",
                 "rules": [DEFAULT_RULE]}
COMBINED_RE = re.compile(
    r'^(\S+) - - \[[^\]]+\] "([A-Z]+) (\S+) HTTP/1\.[01]" (\d{3}) (\d+|-) "[^"]*" "[^"]*"$')


def wait_store_idle(tc):
    """Until tc.proxy's store has written everything submitted."""
    def idle():
        st = tc.proxy.stats()["store"]
        return st["queued"] == 0 and st["written"] + st["dropped"] >= st["submitted"]
    tc.assertTrue(harness.wait_until(idle, timeout=5), tc.proxy.stats())


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
        wait_store_idle(self)

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


# Two rules before the default one: "status" as the defaults make a rule,
# "echo" not logged and not replicated.
RULES_CONFIG = """\
[rule "status"]
path = /api/status/**

[rule "echo"]
path = /api/echo/**
log = off
replicate = off
"""
NO_BROKER = "cannot switch replicate on: no broker is configured (set amqp and restart)"
NO_STORE = "cannot switch persist on: the store is off (set store and restart)"


def rule_of(doc, name):
    return next(r for r in doc["rules"] if r["name"] == name)


class RuleFlags(harness.ProxyTestCase):
    """Each rule's run-time switches (issue 13, Flags): GET /flags lists
    them, PUT /flags switches them for that rule only, at once, and the
    switch is on the record. A request is logged, persisted, replicated when
    the global flag and its rule's switch are both on."""
    PROXY_CONFIG = RULES_CONFIG

    def put(self, body):
        return self.proxy.admin("PUT", "/flags", body=body)

    def marker(self):
        return uuid.uuid4().hex[:12]

    def test_get_lists_the_rules_in_order(self):
        doc = self.proxy.admin("GET", "/flags").json()
        self.assertEqual([r["name"] for r in doc["rules"]], ["status", "echo", "default"])
        echo = {"log": False, "persist": True, "replicate": False}
        self.assertEqual(rule_of(doc, "echo"), dict(echo, name="echo", configured=echo))
        self.assertEqual(rule_of(doc, "default"), DEFAULT_RULE)
        self.assertEqual(self.proxy.stats()["flags"]["rules"], doc["rules"])

    def test_persist_off_for_one_rule_only(self):
        m = self.marker()
        try:
            r = self.put({"rules": {"status": {"persist": False}}})
            self.assertEqual(r.status, 200, r)
            doc = r.json()
            self.assertEqual(rule_of(doc, "status")["persist"], False)
            self.assertEqual(rule_of(doc, "status")["configured"]["persist"], True)
            self.assertEqual(rule_of(doc, "echo")["persist"], True)
            self.assertEqual(doc["persist"], True)  # the global flag is untouched
            self.assertEqual(self.proxy.request("GET", "/api/status/200/?m=%s-off" % m).status,
                             200)
            self.assertEqual(self.proxy.request("GET", "/api/echo/?m=%s-echo" % m).status, 200)
            # Logged all the same: the rule's log switch is on.
            self.assertIsNotNone(
                harness.wait_log(self.proxy.log_path, lambda ln: "m=%s-off" % m in ln))
        finally:
            self.assertEqual(self.put({"rules": {"status": {"persist": True}}}).status, 200)
        self.assertEqual(self.proxy.request("GET", "/api/status/200/?m=%s-on" % m).status, 200)
        self.assertEqual(len(self.proxy.wait_rows(1, "query = ?", ("m=%s-on" % m,))), 1)
        self.assertEqual(len(self.proxy.wait_rows(1, "query = ?", ("m=%s-echo" % m,))), 1)
        wait_store_idle(self)
        self.assertEqual(self.proxy.rows("query = ?", ("m=%s-off" % m,)), [])
        # The switch is itself on the record, with who made it.
        self.assertIn('{"name":"status","log":true,"persist":false,"replicate":true,'
                      '"configured":{"log":true,"persist":true,"replicate":true}}',
                      self.proxy.stderr())
        self.assertIn("restspy: flags set by 127.0.0.1: ", self.proxy.stderr())

    def test_log_on_for_a_rule_configured_off(self):
        m = self.marker()
        try:
            r = self.put({"rules": {"echo": {"log": True}}})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(rule_of(r.json(), "echo")["log"], True)
            self.assertEqual(self.proxy.request("GET", "/api/echo/?m=%s-on" % m).status, 200)
            self.assertIsNotNone(
                harness.wait_log(self.proxy.log_path, lambda ln: "m=%s-on" % m in ln))
        finally:
            self.assertEqual(self.put({"rules": {"echo": {"log": False}}}).status, 200)
        # Off again: not logged, while a request of another rule after it is.
        self.assertEqual(self.proxy.request("GET", "/api/echo/?m=%s-off" % m).status, 200)
        self.assertEqual(self.proxy.request("GET", "/api/status/200/?m=%s-after" % m).status, 200)
        self.assertIsNotNone(
            harness.wait_log(self.proxy.log_path, lambda ln: "m=%s-after" % m in ln))
        self.assertEqual(len(self.proxy.wait_rows(1, "query = ?", ("m=%s-off" % m,))), 1)
        self.assertFalse(any("m=%s-off" % m in ln for ln in self.proxy.log_lines()))

    def test_global_flag_off_beats_the_rule(self):
        """Effective = global flag AND the rule's switch."""
        m = self.marker()
        try:
            r = self.put({"log": False, "rules": {"echo": {"log": True}}})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(self.proxy.request("GET", "/api/echo/?m=%s-global" % m).status, 200)
        finally:
            self.assertEqual(self.put({"log": True, "rules": {"echo": {"log": False}}}).status,
                             200)
        self.assertEqual(self.proxy.request("GET", "/api/status/200/?m=%s-after" % m).status, 200)
        self.assertIsNotNone(
            harness.wait_log(self.proxy.log_path, lambda ln: "m=%s-after" % m in ln))
        self.assertFalse(any("m=%s-global" % m in ln for ln in self.proxy.log_lines()))

    def test_bad_rule_switches_change_nothing(self):
        before = self.proxy.admin("GET", "/flags").json()
        known = "unknown rule 'nope' (rules: status, echo, default)"
        for body, error in (
                ({"rules": {"nope": {"persist": False}}}, known),
                ({"rules": {"echo": {"persist": "no"}}},
                 "rule 'echo': switches log, persist, replicate are booleans"),
                ({"rules": {"echo": {"log_format": "json"}}},
                 "unknown switch 'log_format' in rule 'echo' (known: log, persist, replicate)"),
                ({"rules": {"echo": True}},
                 "rule 'echo': expected an object of switches (log, persist, replicate)"),
                ({"rules": ["echo"]}, "rules is an object of rule names to switches, e.g. "
                                      '{"rules":{"default":{"persist":false}}}'),
                # All or nothing: the valid parts are not applied either.
                ({"log": False, "rules": {"status": {"persist": False}, "nope": {}}}, known),
                ({"rules": {"status": {"persist": False}}, "bogus": 1},
                 "unknown flag 'bogus' (known: log, persist, replicate, log_format, rules)")):
            with self.subTest(body=body):
                r = self.put(body)
                self.assertEqual(r.status, 400, r)
                self.assertEqual(r.json(), {"error": error})
                self.assertEqual(self.proxy.admin("GET", "/flags").json(), before)

    def test_replicate_on_for_a_rule_needs_a_broker(self):
        before = self.proxy.admin("GET", "/flags").json()
        for body in ({"rules": {"echo": {"replicate": True}}},
                     {"rules": {"status": {"persist": False}, "echo": {"replicate": True}}}):
            with self.subTest(body=body):
                r = self.put(body)
                self.assertEqual(r.status, 409, r)
                self.assertEqual(r.json(), {"error": NO_BROKER})
                self.assertEqual(self.proxy.admin("GET", "/flags").json(), before)
        # The default rule replicates by its config: switched off, it may be
        # switched back on (what its file says is never refused).
        try:
            r = self.put({"rules": {"default": {"replicate": False}}})
            self.assertEqual(rule_of(r.json(), "default")["replicate"], False)
        finally:
            r = self.put({"rules": {"default": {"replicate": True}}})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(rule_of(r.json(), "default"), DEFAULT_RULE)


class RuleFlagsNoStore(harness.ProxyTestCase):
    """--store off: a rule's persist cannot be switched on beyond its
    config, with the global flag's refusal."""
    PROXY_ARGS = ("--store", "off")
    PROXY_CONFIG = '[rule "quiet"]\npath = /api/status/**\npersist = off\n'

    def test_persist_on_for_a_rule_needs_a_store(self):
        before = self.proxy.admin("GET", "/flags").json()
        r = self.proxy.admin("PUT", "/flags", body={"rules": {"quiet": {"persist": True}}})
        self.assertEqual(r.status, 409, r)
        self.assertEqual(r.json(), {"error": NO_STORE})
        self.assertEqual(self.proxy.admin("GET", "/flags").json(), before)
        for on in (False, True):
            r = self.proxy.admin("PUT", "/flags", body={"rules": {"default": {"persist": on}}})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(rule_of(r.json(), "default")["persist"], on)


class RuleFlagsReload(harness.ProxyTestCase):
    """SIGHUP re-reads the config: a rule switched at run time keeps what
    was switched when a rule of its name is still there (the reload line
    says so); what nobody switched follows the new file; a switched rule
    that is gone is said to be gone."""
    PROXY_CONFIG = RULES_CONFIG

    def reload(self, text):
        n = self.proxy.stderr().count("restspy: config reloaded")
        self.proxy.write_config(text)
        self.proxy.signal(signal.SIGHUP)
        self.assertTrue(harness.wait_until(
            lambda: self.proxy.stderr().count("restspy: config reloaded") > n, timeout=5),
            self.proxy.stderr())
        return [ln for ln in self.proxy.stderr().splitlines()
                if ln.startswith("restspy: config reloaded")][-1]

    def test_reload_keeps_run_time_switches(self):
        p = self.proxy
        r = p.admin("PUT", "/flags", body={"rules": {"status": {"persist": False},
                                                     "echo": {"log": True}}})
        self.assertEqual(r.status, 200, r)
        # status stays (its log now off in the file), echo goes, sites comes.
        line = self.reload('[rule "sites"]\npath = /api/sites/**\nlog = off\n\n'
                           '[rule "status"]\npath = /api/status/**\nlog = off\n')
        self.assertEqual(line, "restspy: config reloaded from %s; switched at run time: status "
                               "keeps persist off; echo is gone, with its run-time switches"
                         % p.config_path)
        doc = p.admin("GET", "/flags").json()
        self.assertEqual([x["name"] for x in doc["rules"]], ["sites", "status", "default"])
        self.assertEqual(rule_of(doc, "status"), {
            "name": "status", "log": False, "persist": False, "replicate": True,
            "configured": {"log": False, "persist": True, "replicate": True}})
        sites = {"log": False, "persist": True, "replicate": True}
        self.assertEqual(rule_of(doc, "sites"), dict(sites, name="sites", configured=sites))
        # In effect: status neither logged (file) nor stored (kept switch).
        m = uuid.uuid4().hex[:12]
        self.assertEqual(p.request("GET", "/api/status/200/?m=%s-status" % m).status, 200)
        self.assertEqual(p.request("GET", "/api/echo/?m=%s-echo" % m).status, 200)
        self.assertEqual(len(p.wait_rows(1, "query = ?", ("m=%s-echo" % m,))), 1)
        self.assertIsNotNone(harness.wait_log(p.log_path, lambda ln: "m=%s-echo" % m in ln))
        wait_store_idle(self)
        self.assertEqual(p.rows("query = ?", ("m=%s-status" % m,)), [])
        self.assertFalse(any("m=%s-status" % m in ln for ln in p.log_lines()))
        # Switched back as configured: the next reload has nothing to keep.
        r = p.admin("PUT", "/flags", body={"rules": {"status": {"persist": True}}})
        self.assertEqual(r.status, 200, r)
        line = self.reload('[rule "status"]\npath = /api/status/**\n')
        self.assertEqual(line, "restspy: config reloaded from %s" % p.config_path)
        self.assertEqual(rule_of(p.admin("GET", "/flags").json(), "status")["log"], True)


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
