"""The Django adapter (adapters/django, issue 15) against a real
`restspy collect`:

  * DjangoTests runs the adapter's own tests (adapters/django/tests) with
    Django's test runner, in a process of its own, on $RESTSPY_BIN: views,
    flags, settings and environment, run-time switches, redaction, fail
    modes, sync ack semantics (see that directory);
  * TwoSites: the sitemon app in its drf mode (SITEMON_MODE=drf: its views
    decorated, no proxy) on two sites, each with its collect daemon, its
    replicator and its RabbitMQ node, linked by `restspy federate`:
    concurrent writes on both converge, each applied once on the peer and
    never republished (replsites' counts, as test_replication.py's
    scenario 1 does them through the proxy).
"""
import os
import subprocess
import sys
import unittest

import harness
import rabbit
import replsites
from harness import App, clean_env, python_bin, restspy_bin
from replsites import (SECRET, ReplicationCase, Writes, delivered, federate_mesh, figures,
                       parallel, workload)
from test_collect import Collect

ADAPTER = os.path.join(harness.REPO, "adapters", "django")
TAGS = ("A", "B")


class DjangoTests(unittest.TestCase):
    def test_adapter_suite_under_djangos_runner(self):
        binary = restspy_bin()
        self.assertTrue(os.access(binary, os.X_OK), "restspy binary not found: %s" % binary)
        env = clean_env({
            "RESTSPY_BIN": os.path.abspath(binary),
            "PYTHONPATH": os.pathsep.join([ADAPTER, harness.REPO + "/tests/integration"]),
            "DJANGO_SETTINGS_MODULE": "tests.settings",
        })
        p = subprocess.run([python_bin(), "-m", "django", "test", "tests", "-v", "2"],
                           cwd=ADAPTER, env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        out = p.stdout.decode("utf-8", "replace")
        sys.stdout.write(out)
        self.assertEqual(p.returncode, 0, "Django's test runner failed:\n" + out[-8000:])
        self.assertRegex(out, r"Ran (1\d|[2-9]\d) tests", "fewer tests ran than written")
        self.assertIsNone(harness.sanitizer_report(out))


class DrfSite(replsites.Site):
    """A replsites site with the app in drf mode and `restspy collect` in
    place of the proxy (site.proxy, so that replsites' stop and checks
    apply; its port is the app's: clients write to the app directly)."""

    def start(self):
        self.proxy = Collect(self.dir, args=["--amqp", self.broker.amqp_url, "--node",
                                             self.node, "--secret", SECRET]).start()
        self.app = App(self.dir, name="app", env={
            "SITEMON_MODE": "drf", "RESTSPY_SOCKET": self.proxy.socket_path,
            "RESTSPY_DURABILITY": "sync", "RESTSPY_FAIL_MODE": "closed"})
        self.app.start()
        self.proxy.port = self.app.port
        self.replicator.start()
        return self

    def view_replicated(self):
        """{Idempotency-Key: count} of the replicated requests the app's
        views ran (the replicator records each apply too, under its own
        rule)."""
        out = {}
        for (hdrs,) in self.store_query(
                "SELECT req_headers FROM requests WHERE origin = 'replicated' AND rule IN "
                "('site-list', 'site-detail', 'site-metrics', 'metric-detail') "
                "AND replication IS NULL AND status BETWEEN 200 AND 299"):
            key = dict((k.lower(), v) for k, v in harness.headers_of(hdrs)).get("idempotency-key")
            out[key] = out.get(key, 0) + 1
        return out


class TwoSites(ReplicationCase):
    """One bounded scenario (about 30 s with the brokers' start)."""

    @classmethod
    def setUpClass(cls):
        rabbit.require()  # fails under CI, skips elsewhere
        replsites._tmp[0] = harness.make_tmpdir("djangosites")
        started = rabbit.start_brokers(list(TAGS))
        for b in started:
            replsites.brokers[b.tag] = b
        federate_mesh(list(TAGS))

    @classmethod
    def tearDownClass(cls):
        rabbit.stop_brokers(list(replsites.brokers.values()))
        replsites.brokers.clear()
        harness.remove_tmpdir(replsites._tmp[0])
        replsites._tmp[0] = None

    def setUp(self):
        self.tmp = os.path.join(replsites.tmpdir(), self.id().rsplit(".", 1)[-1])
        os.makedirs(self.tmp, exist_ok=True)
        replsites.purge_sites_queues(TAGS)
        self.sites = []
        self.addCleanup(self._stop_sites)
        for t in TAGS:
            self.sites.append(DrfSite(t, self.tmp).start())

    def test_drf_sites_converge(self):
        a, b = self.site("A"), self.site("B")
        wa, wb = Writes(), Writes()
        parallel([lambda i=i: workload(a, "a%d" % i, wa, n_sites=2, metrics=3)
                  for i in range(2)] +
                 [lambda i=i: workload(b, "b%d" % i, wb, n_sites=2, metrics=3)
                  for i in range(2)])
        self.assertEqual([], wa.failed + wb.failed, "client writes failed")
        self.assertEqual((wa.count(), wb.count()), (2 * 2 * 5, 2 * 2 * 5))
        snap = self.assertConverged([a, b])
        self.assertEqual((len(snap["sites"]), len(snap["metrics"])), (8, 24))
        d = delivered(wa, b) + delivered(wb, a)
        views_ran = [n for s in (a, b) for n in s.view_replicated().values()]
        x = sum(n - 1 for n in views_ran)
        w = wa.count() + wb.count()
        figures("drf", w, d, x)
        self.assertEqual((w, d, x), (w, w, 0))
        # Each peer's view ran each replicated write once, recorded it as
        # replicated and did not republish it: the ledgers hold the
        # peer's writes only, each site queued its own writes only.
        self.assertEqual(len(views_ran), w)
        self.assertLedger(b, wa.count())
        self.assertLedger(a, wb.count())
        self.assertEqual({"a"}, {o for o, _ in b.ledger().values()})
        self.assertEqual({"b"}, {o for o, _ in a.ledger().values()})
        self.assertEqual((len(a.queued()), len(b.queued())), (wa.count(), wb.count()))
        self.assertOutboxDrained(a, b)
        self.assertNoDeadLetters(a, b)


if __name__ == "__main__":
    unittest.main()
