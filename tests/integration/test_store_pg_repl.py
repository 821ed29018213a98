"""Replication on the PostgreSQL store (issue 17), with a private
PostgreSQL 15 (pgnode.py) and real RabbitMQ nodes (replsites.py).

Site A keeps its captures in one PostgreSQL database shared by all its
proxies and replicators (several restspy instances, one database); site B
is the usual SQLite site. The scenarios count, as test_replication.py does,
writes / delivered / duplicates / lost, and check what the issue promises of
several instances on one database: every outbox message published exactly
once (A's `published` counter, B's ledger holding each once and B's
`deduplicated` counter at 0), every message of B applied once on A (A's
ledger and its replicated captures). `replication status` and `replication
dead` read and write the PostgreSQL ledger."""
import json
import os
import types
import unittest
import uuid

import harness
import pgnode
import replsites
from harness import wait_until
from replsites import (ReplicationCase, Writes, brokers, create_site, delivered,
                       duplicates, figures, federate_mesh)

_pg = [None]


def setUpModule():
    pgnode.require()
    _pg[0] = pgnode.PgNode().start()
    unittest.addModuleCleanup(lambda: _pg[0].cleanup())
    replsites.setup_module("store_pg_repl", ["A", "B"])
    federate_mesh(["A", "B"])


class PgProxy(replsites.SiteProxy):
    """A site proxy whose store is the PostgreSQL URL."""

    def __init__(self, tmpdir, upstream, node, amqp, url):
        super().__init__(tmpdir, upstream, node, amqp)
        self.url = url

    def command(self):
        cmd = super().command()
        cmd[cmd.index("--store") + 1] = self.url
        return cmd


class PgReplicator(replsites.Replicator):
    """A site replicator on the PostgreSQL URL, with its own output files."""

    def __init__(self, site, i):
        super().__init__(site)
        self.stderr_path = os.path.join(site.dir, "replicator%d.stderr" % i)
        self.stdout_path = os.path.join(site.dir, "replicator%d.stdout" % i)

    def command(self):
        cmd = super().command()
        cmd[cmd.index("--store") + 1] = self.site.url
        return cmd


class PgSite(replsites.Site):
    """Site A: one app, n proxies and m replicators on one database."""

    def __init__(self, tag, parent, url, proxies, replicators):
        super().__init__(tag, parent)
        self.url = url
        self.n_proxies = proxies
        self.proxies = []
        self.replicators = [PgReplicator(self, i) for i in range(replicators)]
        self.replicator = self.replicators[0]

    def start(self):
        self.app.start()
        for i in range(self.n_proxies):
            d = os.path.join(self.dir, "proxy%d" % i)
            os.makedirs(d, exist_ok=True)
            self.proxies.append(PgProxy(d, self.app.url, self.node, self.broker.amqp_url,
                                        self.url).start())
        self.proxy = self.proxies[0]
        for r in self.replicators:
            r.start()
        return self

    def front(self, i):
        """What the replsites writers take for a site: proxy i's port."""
        return types.SimpleNamespace(proxy=self.proxies[i], node=self.node)

    def stop(self):
        errors = []
        for r in self.replicators:
            try:
                r.check_stopped()
            except AssertionError as e:
                errors.append("replicator %s: %s" % (self.node, e))
        for p in self.proxies:
            try:
                p.check_stopped()
            except AssertionError as e:
                errors.append("proxy %s: %s" % (self.node, e))
        self.app.stop()
        if errors:
            raise AssertionError("\n".join(errors))

    def kill_all(self):
        for p in [r.proc for r in self.replicators] + [p.proc for p in self.proxies]:
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        self.app.stop()

    def sql(self, query):
        """The one row of query, its columns as strings."""
        return _pg[0].psql(query, db=self.url.rsplit("/", 1)[1]).strip().split("|")

    def counter(self, name):
        return int(self.sql("SELECT coalesce((SELECT value FROM counters WHERE name = '%s'), 0)"
                            % name)[0])

    def outbox_depth(self):
        return int(self.sql("SELECT count(*) FROM outbox")[0])

    def ledger_counts(self):
        """(rows, distinct message ids) of the `applied` ledger."""
        return tuple(int(v) for v in self.sql(
            "SELECT count(*), count(DISTINCT message_id) FROM applied"))

    def replicated_duplicates(self):
        """Replicated captures beyond one per Idempotency-Key."""
        return int(self.sql(
            "SELECT count(*) - count(DISTINCT k) FROM (SELECT (SELECT e->>1 FROM "
            "jsonb_array_elements(req_headers) e WHERE lower(e->>0) = 'idempotency-key') k "
            "FROM requests WHERE origin = 'replicated' AND status BETWEEN 200 AND 399) x")[0])


def counter_of(site, name):
    rows = site.store_query("SELECT value FROM counters WHERE name = ?", (name,))
    return rows[0][0] if rows else 0


class PgReplication(ReplicationCase):
    TAGS = ("A", "B")
    PROXIES, REPLICATORS = 1, 1

    def setUp(self):
        if not brokers:
            self.skipTest("no brokers")
        self.tmp = os.path.join(replsites.tmpdir(), self.id().rsplit(".", 1)[-1])
        os.makedirs(self.tmp, exist_ok=True)
        replsites.purge_sites_queues(self.TAGS)
        db = "r" + uuid.uuid4().hex[:12]
        self.a = PgSite("A", self.tmp, _pg[0].createdb(db), self.PROXIES, self.REPLICATORS)
        self.b = replsites.Site("B", self.tmp)
        self.sites = []
        for s in (self.a, self.b):
            try:
                s.start()
            except Exception:
                for t in self.sites + [s]:
                    t.kill_all()
                raise
            self.sites.append(s)
        self.addCleanup(self._stop_sites)

    def run_load(self, per_proxy, b_clients, per_b_client):
        """per_proxy site creations through each of A's proxies and
        b_clients x per_b_client through B's, all at once."""
        wa, wb = Writes(), Writes()

        def writer(front, prefix, n, writes):
            for i in range(n):
                create_site(front, "%s-%d-%s" % (prefix, i, uuid.uuid4().hex[:6]), writes)

        replsites.parallel(
            [lambda i=i: writer(self.a.front(i), "a%d" % i, per_proxy, wa)
             for i in range(self.PROXIES)] +
            [lambda i=i: writer(self.b, "b%d" % i, per_b_client, wb) for i in range(b_clients)])
        return wa, wb

    def check(self, n, wa, wb):
        a, b = self.a, self.b
        self.assertEqual([], wa.failed + wb.failed, "client writes failed")
        self.assertConverged([a, b])
        d = delivered(wa, b) + delivered(wb, a)
        x = duplicates(b) + a.replicated_duplicates()
        w = wa.count() + wb.count()
        figures(n, w, d, x, " published=%d applied_on_pg=%d" %
                (a.counter("published"), a.ledger_counts()[0]))
        self.assertEqual(w, d)
        self.assertEqual(0, x)
        # Every outbox message of A's proxies published once: counted once,
        # applied once on B, never seen twice there.
        self.assertTrue(wait_until(lambda: a.outbox_depth() == 0, timeout=20),
                        "A's outbox still holds %d rows" % a.outbox_depth())
        self.assertEqual(wa.count(), a.counter("published"))
        self.assertLedger(b, wa.count())
        self.assertEqual(0, counter_of(b, "deduplicated"))
        # Every message of B applied once on A, by whichever replicator.
        self.assertTrue(wait_until(lambda: a.ledger_counts()[0] >= wb.count(), timeout=15))
        self.assertEqual((wb.count(), wb.count()), a.ledger_counts())
        self.assertEqual(0, int(a.sql("SELECT count(*) FROM applying")[0]))
        self.assertNoDeadLetters(a, b)


class OneProxy(PgReplication):
    PROXIES, REPLICATORS = 1, 1

    def test_pg_site_replicates_to_sqlite_site(self):
        """A proxy with --amqp on a PostgreSQL store: its writes reach the
        SQLite site; B's writes are applied into the PostgreSQL ledger."""
        wa, wb = self.run_load(30, 1, 20)
        self.assertEqual((30, 20), (wa.count(), wb.count()))
        self.check("pg-1", wa, wb)

    def test_status_and_dead_on_pg_url(self):
        """`replication status` and `replication dead --skip` on the
        PostgreSQL URL: the figures, a stuck message listed, then skipped
        into the ledger."""
        a = self.a
        wa, wb = self.run_load(5, 1, 5)
        self.check("pg-status", wa, wb)
        p = harness.run_cli(["replication", "status", "--store", a.url, "--json"])
        self.assertEqual(0, p.returncode, p.stderr)
        st = json.loads(p.stdout)
        self.assertEqual((0, 5, 5), (st["outbox_depth"], st["published"], st["applied"]))
        self.assertTrue(st["last_confirmed_id"])
        stuck = replsites.uuid7()
        a.sql("INSERT INTO stuck VALUES ('%s', 'b', 'POST', '/api/sites/', 1, 2, 3, "
              "'upstream answered 500') RETURNING 1" % stuck)
        p = harness.run_cli(["replication", "status", "--store", a.url])
        self.assertEqual(0, p.returncode, p.stderr)
        self.assertIn(stuck, p.stdout)
        p = harness.run_cli(["replication", "dead", "--amqp", a.broker.amqp_url, "--node",
                             a.node, "--store", a.url, "--skip", stuck])
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertEqual(["skipped"], a.sql("SELECT state FROM applied WHERE message_id = '%s'"
                                            % stuck))
        p = harness.run_cli(["replication", "status", "--store", a.url, "--json"])
        st = json.loads(p.stdout)
        self.assertEqual(5, st["applied"])
        self.assertNotIn(stuck, p.stdout)


class ThreeProxiesTwoReplicators(PgReplication):
    PROXIES, REPLICATORS = 3, 2

    def test_many_instances_one_database(self):
        """The issue's scenario: three proxies and two replicators on one
        PostgreSQL database under concurrent load (3 x 60 writes through
        A, 2 x 30 through B applied by A's two replicators): no lost or
        duplicated row, every outbox message published once, every
        message applied once."""
        wa, wb = self.run_load(60, 2, 30)
        self.assertEqual((180, 60), (wa.count(), wb.count()))
        self.check("pg-3x2", wa, wb)
        # The three proxies captured their 180 writes, each once.
        self.assertEqual(["180", "180"], self.a.sql(
            "SELECT count(*), count(DISTINCT path || id) FROM requests WHERE origin = 'local' "
            "AND method = 'POST'"))


if __name__ == "__main__":
    unittest.main()
