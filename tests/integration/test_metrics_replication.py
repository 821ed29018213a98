"""/metrics: the replicator's applies by origin node (issue 13), read by
the proxy from the ledger of the store it shares with the replicator.

One RabbitMQ node stands for the federation: proxies of nodes a and b
publish their writes to restspy.requests, which is bound to restspy.inbound,
where node c's replicator (`restspy replicate`) takes them and applies them
to a backend, writing its ledger into c's store. c's proxy, on the same
store, exports restspy_replication_applied_total{origin} and the histogram
restspy_replication_apply_lag_seconds{origin}: both must count a's and b's
writes apart, and promtool must accept the exposition."""
import http.server
import os
import shutil
import subprocess
import types
import unittest

import harness
import rabbit
import replsites
from test_metrics import parse

TOKEN = "metrics-repl-token"


class Created(http.server.BaseHTTPRequestHandler):
    """A backend that answers every write 201."""

    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_GET = _answer

    def log_message(self, *args):
        pass


class ApplyLagByOrigin(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rabbit.require()
        cls.tmp = harness.make_tmpdir("metricsrepl")
        cls.broker = rabbit.start_brokers(["M"])[0]

    @classmethod
    def tearDownClass(cls):
        rabbit.stop_brokers([cls.broker])
        harness.remove_tmpdir(cls.tmp)

    def dir(self, name):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        return d

    def scrape(self, proxy):
        r = proxy.admin("GET", "/metrics")
        self.assertEqual(r.status, 200, r)
        return r.body.decode()

    def test_histogram_per_origin(self):
        backend = harness.start_backend(Created)
        self.addCleanup(harness.stop_backend, backend)
        b = self.broker
        # Node c: its proxy (the admin listener under test) and its
        # replicator share c's store.
        cdir = self.dir("c")
        proxy_c = replsites.SiteProxy(cdir, backend.url, "c", b.amqp_url,
                                      extra=["--admin-token", TOKEN])
        proxy_c.admin_token = TOKEN
        proxy_c.start()
        self.addCleanup(proxy_c.check_stopped, self)
        site_c = types.SimpleNamespace(dir=cdir, node="c", broker=b,
                                       db_path=proxy_c.db_path,
                                       app=types.SimpleNamespace(url=backend.url),
                                       apply_queue="restspy.apply.c")
        rep = replsites.Replicator(site_c).start()
        self.addCleanup(rep.check_stopped)
        # Before any apply: the families are there, without series.
        before = self.scrape(proxy_c)
        self.assertIn("# TYPE restspy_replication_apply_lag_seconds histogram", before)
        self.assertNotIn("restspy_replication_applied_total{", before)
        # One broker for the whole federation: what a and b publish goes to
        # c's inbound exchange (a shovel's job between sites).
        b.api_ok("POST", "/api/bindings/%2F/e/restspy.requests/e/restspy.inbound",
                 {"routing_key": "#"})
        writes = {"a": 3, "b": 2}
        for node, n in writes.items():
            p = replsites.SiteProxy(self.dir(node), backend.url, node, b.amqp_url).start()
            self.addCleanup(p.check_stopped, self)
            for i in range(n):
                r = p.request("POST", "/api/items/%s%d" % (node, i), body=b"{}",
                              headers={"Content-Type": "application/json"})
                self.assertEqual(r.status, 201, r)

        def counted():
            m = parse(self.scrape(proxy_c))
            got = {o: m.get(("restspy_replication_apply_lag_seconds_count",
                             '{origin="%s"}' % o)) for o in writes}
            return m if got == writes else None
        m = harness.wait_until(counted, timeout=30, interval=0.2)
        self.assertTrue(m, "the histogram did not count a's and b's applies:\n" +
                        self.scrape(proxy_c))
        for o, n in writes.items():
            self.assertEqual(m[("restspy_replication_applied_total", '{origin="%s"}' % o)], n)
            self.assertEqual(m[("restspy_replication_apply_lag_seconds_bucket",
                                '{origin="%s",le="+Inf"}' % o)], n)
            # applied moments after their write: well under a minute
            self.assertEqual(m[("restspy_replication_apply_lag_seconds_bucket",
                                '{origin="%s",le="60"}' % o)], n)
            self.assertGreater(m[("restspy_replication_apply_lag_seconds_sum",
                                  '{origin="%s"}' % o)], 0)
        self.assertNotIn(("restspy_replication_applied_total", '{origin="c"}'), m)

        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool is missing: run scripts/install-deps")
        r = subprocess.run([promtool, "check", "metrics"], input=self.scrape(proxy_c),
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

        # A restart of c's proxy counts the ledger again (the counters) and
        # the histograms start empty: they hold the applies it saw.
        proxy_c.stop()
        proxy_c.start()
        m = parse(self.scrape(proxy_c))
        for o, n in writes.items():
            self.assertEqual(m[("restspy_replication_applied_total", '{origin="%s"}' % o)], n)
            self.assertEqual(m[("restspy_replication_apply_lag_seconds_count",
                                '{origin="%s"}' % o)], 0)


if __name__ == "__main__":
    unittest.main()
