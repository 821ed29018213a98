"""Replication on the proxy side, without a broker (amqp points at a closed
port): what enters the outbox, what is skipped and why, and that a broker
that is down never delays or fails a client request, even with sync
durability."""
import json
import signal
import sqlite3
import time
import unittest

import harness
from harness import App, Proxy, run_cli


class ReplicationLocal(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.make_tmpdir("repllocal")
        cls.app = App(cls.tmp).start()
        dead = harness.free_port()  # nothing listens here: the broker is "down"
        cls.dead = dead
        cls.proxy = Proxy(cls.tmp, cls.app.url, log=False, config="", args=[
            "--amqp", "amqp://guest:guest@127.0.0.1:%d/" % dead, "--node", "sitea",
            "--secret", "s3cret", "--replicate-max-body", "1K",
            "--retry-min", "50ms", "--retry-max", "200ms"]).start()

    @classmethod
    def tearDownClass(cls):
        if cls.proxy.running:
            cls.proxy.stop()
        cls.app.stop()
        harness.remove_tmpdir(cls.tmp)

    def outbox(self):
        con = sqlite3.connect(self.proxy.db_path, timeout=10)
        try:
            return con.execute("select message_id, method, target, origin, signature, body"
                               " from outbox order by seq").fetchall()
        finally:
            con.close()

    def post_site(self, slug, padding=0):
        # The app ignores unknown fields: padding makes a large valid body.
        body = json.dumps({"slug": slug, "name": "N", "url": "http://%s.test/" % slug,
                           "status": "up", "padding": "x" * padding}).encode()
        t0 = time.monotonic()
        r = self.proxy.request("POST", "/api/sites/", body=body,
                               headers={"Content-Type": "application/json"})
        return r, time.monotonic() - t0

    def test_writes_enter_the_outbox_while_the_broker_is_down(self):
        r, took = self.post_site("lyon")
        self.assertEqual(r.status, 201)
        self.assertLess(took, 5.0, "a down broker must not delay the client")
        self.proxy.request("GET", "/api/sites/lyon/")  # not a write: not replicated
        rows = self.proxy.wait_rows(2, "path LIKE '/api/sites/%' AND (method = 'GET' OR "
                                    "CAST(req_body AS TEXT) LIKE '%lyon%')")
        by_method = {row["method"]: row for row in rows}
        self.assertEqual(by_method["POST"]["replication"], "queued")
        self.assertIsNone(by_method["GET"]["replication"])
        # Other tests may have queued writes too: this one's message is by
        # its id.
        ob = [m for m in self.outbox() if m[0] == by_method["POST"]["id"]]
        self.assertEqual(len(ob), 1)
        mid, method, target, origin, sig, body = ob[0]
        self.assertEqual((method, target, origin), ("POST", "/api/sites/", "sitea"))
        self.assertRegex(sig, r"^[0-9a-f]{64}$")
        self.assertEqual(json.loads(body)["slug"], "lyon")
        st = self.proxy.stats()["replication"]
        self.assertFalse(st["connected"])
        self.assertEqual(st["outbox_depth"], len(self.outbox()))
        self.assertTrue(st["last_error"])

    def test_body_over_replicate_max_body_is_skipped_and_counted(self):
        queued = len(self.outbox())
        skipped = self.proxy.stats()["replication"]["not_replicated"]
        r, _ = self.post_site("nice", padding=2048)
        self.assertEqual(r.status, 201)
        rows = self.proxy.wait_rows(1, "path = ? and method = 'POST' and req_body_size > 1024",
                                    ("/api/sites/",))
        self.assertEqual(rows[0]["replication"], "skipped: body over replicate_max_body")
        self.assertEqual(len(self.outbox()), queued)
        self.assertTrue(harness.wait_until(
            lambda: self.proxy.stats()["replication"]["not_replicated"] == skipped + 1))
        p = run_cli(["replication", "status", "--store", "sqlite:" + self.proxy.db_path,
                     "--json"])
        self.assertEqual(p.returncode, 0, p.stderr)
        doc = json.loads(p.stdout)
        self.assertEqual(doc["not_replicated"], skipped + 1)
        self.assertEqual(doc["outbox_depth"], queued)

    def test_flag_off_stops_new_requests_entering_the_outbox(self):
        queued = len(self.outbox())
        self.proxy.admin("PUT", "/flags", body=json.dumps({"replicate": False}).encode())
        try:
            self.assertFalse(self.proxy.stats()["flags"]["replicate"])
            r, _ = self.post_site("metz")
            self.assertEqual(r.status, 201)
            rows = self.proxy.wait_rows(1, "method = 'POST' and CAST(req_body AS TEXT) like ?",
                                        ("%metz%",))
            self.assertIsNone(rows[0]["replication"])
            self.assertEqual(len(self.outbox()), queued)
        finally:
            self.proxy.admin("PUT", "/flags", body=json.dumps({"replicate": True}).encode())

    def test_client_errors_are_not_replicated(self):
        queued = len(self.outbox())
        r = self.proxy.request("POST", "/api/sites/", body=b"{not json",
                               headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 400)
        rows = self.proxy.wait_rows(1, "status = 400 and method = 'POST'")
        self.assertIsNone(rows[0]["replication"])
        self.assertEqual(len(self.outbox()), queued)

    def test_broker_down_is_told_and_degraded(self):
        """The down broker is said once on stderr however often the
        publisher retries, and /healthz says degraded with the reason (200
        by default, healthz_degraded_status otherwise; reloaded on SIGHUP)
        (issue 9 item 6)."""
        self.assertTrue(harness.wait_until(
            lambda: self.proxy.stats()["replication"]["failed_attempts"] >= 5, timeout=5),
            self.proxy.stats())
        lines = [ln for ln in self.proxy.stderr().splitlines() if "replication:" in ln]
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith(
            "restspy: replication: broker unreachable: AMQP connect to 127.0.0.1:%d: "
            % self.dead), lines)
        self.assertNotIn("guest:guest", self.proxy.stderr())
        st = self.proxy.stats()["replication"]
        self.assertFalse(st["connected"])
        self.assertGreater(st["down_since_us"], 0)

        r = self.proxy.admin("GET", "/healthz")
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual(doc["status"], "degraded", doc)
        self.assertEqual(len(doc["reasons"]), 1, doc)
        self.assertRegex(doc["reasons"][0],
                         r"^replication: broker unreachable for \d+\.\ds \(AMQP connect to "
                         r"127\.0\.0\.1:%d: .*\); new records wait in the outbox$" % self.dead)

        try:
            self.proxy.write_config("healthz_degraded_status = 503\n")
            self.proxy.signal(signal.SIGHUP)
            self.assertTrue(harness.wait_until(
                lambda: self.proxy.admin("GET", "/healthz").status == 503, timeout=5),
                self.proxy.stderr())
            self.assertEqual(self.proxy.admin("GET", "/healthz").json()["status"], "degraded")
        finally:
            self.proxy.write_config("")
            self.proxy.signal(signal.SIGHUP)
            self.assertTrue(harness.wait_until(
                lambda: self.proxy.admin("GET", "/healthz").status == 200, timeout=5))


if __name__ == "__main__":
    unittest.main()
