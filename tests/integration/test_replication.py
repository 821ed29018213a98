"""Replication between sites through real, federated RabbitMQ nodes.

A site is the sitemon app (own database), a restspy proxy in front of it
(--amqp, --node, replication on, --secret, sync durability) and a restspy
replicator applying the peers' writes to the same app, sharing the proxy's
store file, with its own broker. `restspy federate` wires each site's broker
to its peers'. The brokers start once for the module (in parallel) and are
reused: every scenario starts fresh sites (new apps, new stores) and purges
the sites' queues first, so scenarios stay independent.

Each scenario asserts exact counts and prints one figures line:
  scenario N: writes=W delivered=D duplicates=X lost=L
writes: client writes answered 2xx; delivered: those whose effect is on the
peer(s); duplicates: messages applied more than once on a peer (two
replicated captures of one message id, or a re-apply that the app refused as
"already exists", which lands in the dead-letter queue); lost: W - D.
Writes use client-chosen keys (site slugs, metric UUIDs and recorded_at),
so that the apps' data can be compared row for row.
"""
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import unittest
import uuid

import harness
import rabbit
from harness import (App, Proxy, clean_env, make_tmpdir, read_text, remove_tmpdir, request,
                     restspy_bin, sanitizer_report, wait_until)

SECRET = "it-replication-secret-7f3a"
RECORDED_AT = "2026-01-02T03:04:05Z"
CONVERGE_S = 45.0

_brokers = {}  # tag -> rabbit.Broker, for the module
_tmp = None


def setUpModule():
    ok, why = rabbit.available()
    if not ok:
        raise unittest.SkipTest(why)
    global _tmp
    _tmp = make_tmpdir("replication")
    unittest.addModuleCleanup(_module_cleanup)
    started = time.monotonic()
    for b in rabbit.start_brokers(["A", "B", "C"]):
        _brokers[b.tag] = b
    sys.stdout.write("\n  brokers up in %.1fs: %s\n" % (time.monotonic() - started,
                                                      ", ".join(map(repr, _brokers.values()))))
    # A and B federated both ways; C joins in the three-site scenario.
    federate_mesh(["A", "B"])


def _module_cleanup():
    rabbit.stop_brokers(list(_brokers.values()))
    if _tmp:
        remove_tmpdir(_tmp)


def node_of(tag):
    return tag.lower()


def federate(tag, peers, extra=()):
    """`restspy federate` for site tag's broker with the given peer tags;
    returns the CompletedProcess (fails the run on a non-zero exit)."""
    b = _brokers[tag]
    args = ["federate", "--mgmt", b.mgmt_url, "--node", node_of(tag)]
    for p in peers:
        args += ["--peer", "%s=%s" % (node_of(p), _brokers[p].amqp_url)]
    p = harness.run_cli(args + list(extra))
    if p.returncode != 0:
        raise AssertionError("restspy %s exited %d\nstdout:\n%s\nstderr:\n%s" %
                             (" ".join(args), p.returncode, p.stdout, p.stderr))
    return p


def federate_mesh(tags):
    """Every broker of tags federated from all the others; returns once each
    has a running link from each peer (a message published before a link
    exists has no queue to go to on the upstream, so writes wait for it)."""
    for t in tags:
        federate(t, [p for p in tags if p != t])
    for t in tags:
        _brokers[t].wait_federation([node_of(p) for p in tags if p != t], timeout=60)


def uuid7():
    """A UUIDv7 string (what restspy uses as message ids)."""
    ms = int(time.time() * 1000)
    r = random.getrandbits(74)
    v = (ms << 80) | (0x7 << 76) | ((r >> 62) << 64) | (0b10 << 62) | (r & ((1 << 62) - 1))
    return str(uuid.UUID(int=v))


# ------------------------------------------------------------- a site


class SiteProxy(Proxy):
    """The harness proxy with the site's node name and replication on."""

    def __init__(self, tmpdir, upstream, node, amqp):
        super().__init__(tmpdir, upstream, name="proxy")
        self.node = node
        self.amqp = amqp

    def command(self):
        return [restspy_bin(), "proxy",
                "--listen", "127.0.0.1:%d" % self.port,
                "--upstream", self.upstream,
                "--store", "sqlite:" + self.db_path,
                "--log", self.log_path,
                "--admin", "127.0.0.1:%d" % self.admin_port,
                "--workers", "2",
                "--node", self.node,
                "--amqp", self.amqp,
                "--replicate-requests", "on",
                "--replicate-durability", "sync",
                "--secret", SECRET]


class Replicator:
    """`restspy replicate` for a site: same store file as the proxy,
    upstream = the site's app. Ready when its queue has a consumer."""

    def __init__(self, site):
        self.site = site
        self.proc = None
        self.stderr_path = os.path.join(site.dir, "replicator.stderr")
        self.stdout_path = os.path.join(site.dir, "replicator.stdout")
        self.returncodes = []
        self.extra = []  # more options, for one test

    def command(self):
        s = self.site
        return [restspy_bin(), "replicate",
                "--amqp", s.broker.amqp_url,
                "--upstream", s.app.url,
                "--node", s.node,
                "--store", "sqlite:" + s.db_path,
                "--secret", SECRET,
                "--retry-min", "100ms",
                "--retry-max", "2s"] + self.extra

    def start(self, timeout=30):
        err = open(self.stderr_path, "ab")
        out = open(self.stdout_path, "ab")
        self.proc = subprocess.Popen(self.command(), cwd=self.site.dir,
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                     env=clean_env())
        err.close()
        out.close()
        if not self.site.broker.wait_consumer(self.site.apply_queue, timeout=timeout,
                                              proc=self.proc):
            rc = self.proc.poll()
            if rc is None:
                self.proc.kill()
                self.proc.wait()
            raise AssertionError("replicator %s did not start consuming (exit %s)\n"
                                 "command: %s\nstderr:\n%s" %
                                 (self.site.node, rc, " ".join(self.command()),
                                  self.stderr()[-4000:]))
        return self

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL, no cleanup of any kind."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout=20):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("replicator %s did not exit within %ss of SIGTERM; "
                                     "stderr:\n%s" % (self.site.node, timeout,
                                                      self.stderr()[-4000:]))
        return self.proc.returncode

    def check_stopped(self):
        rc = self.stop()
        err = self.stderr()
        problems = []
        if rc != 0:
            problems.append("replicator %s exited with %s (expected 0)" % (self.site.node, rc))
        m = sanitizer_report(err)
        if m:
            problems.append("sanitizer report (%s) in replicator %s stderr" %
                            (m, self.site.node))
        if problems:
            raise AssertionError("; ".join(problems) + "\nstderr:\n" + err[-6000:])

    def stderr(self):
        return read_text(self.stderr_path)


class Site:
    """App + proxy + replicator for node tag.lower() on broker tag."""

    def __init__(self, tag, parent):
        self.tag = tag
        self.node = node_of(tag)
        self.broker = _brokers[tag]
        self.dir = os.path.join(parent, "site-" + self.node)
        os.makedirs(self.dir, exist_ok=True)
        self.app = App(self.dir, name="app")
        self.proxy = None
        self.replicator = Replicator(self)

    @property
    def db_path(self):
        return os.path.join(self.dir, "restspy.db")

    @property
    def apply_queue(self):
        return "restspy.apply." + self.node

    @property
    def dead_queue(self):
        return "restspy.dead." + self.node

    def start(self):
        self.app.start()
        self.proxy = SiteProxy(self.dir, self.app.url, self.node, self.broker.amqp_url).start()
        self.replicator.start()
        return self

    def restart_proxy(self, sig=signal.SIGKILL):
        """Kills the proxy (SIGKILL by default) and starts it again on the
        same store (new ports: writers read site.proxy.port each time)."""
        self.proxy.proc.send_signal(sig)
        self.proxy.proc.wait()
        old = self.proxy
        self.proxy = SiteProxy(self.dir, self.app.url, self.node, self.broker.amqp_url).start()
        return old

    def stop(self):
        """Stops everything; raises on a bad exit of the replicator or the
        proxy (after stopping the rest)."""
        errors = []
        for what, fn in (("replicator", self.replicator.check_stopped),
                         ("proxy", lambda: self.proxy and self.proxy.check_stopped())):
            try:
                fn()
            except AssertionError as e:
                errors.append("%s %s: %s" % (what, self.node, e))
        self.app.stop()
        if errors:
            raise AssertionError("\n".join(errors))

    def kill_all(self):
        """Best-effort stop for cleanup after a failure."""
        for p in (self.replicator.proc, self.proxy and self.proxy.proc):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        self.app.stop()

    # what the app holds (read from its database: exact, no pagination)

    def snapshot(self):
        con = sqlite3.connect("file:%s?mode=ro" % self.app.db_path, uri=True, timeout=10)
        try:
            sites = [tuple(r) for r in con.execute(
                "SELECT slug, name, url, status FROM monitor_site ORDER BY slug")]
            metrics = [tuple(r) for r in con.execute(
                "SELECT replace(id, '-', ''), site_id, name, value, recorded_at "
                "FROM monitor_metric ORDER BY id")]
        finally:
            con.close()
        return {"sites": sites, "metrics": metrics}

    def keys(self):
        """(sites {slug: status}, metric ids (hex, no dashes))."""
        snap = self.snapshot()
        return ({s[0]: s[3] for s in snap["sites"]}, {m[0] for m in snap["metrics"]})

    # what restspy recorded

    def store_query(self, sql, params=()):
        if not os.path.exists(self.db_path):
            return []
        con = sqlite3.connect("file:%s?mode=ro" % self.db_path, uri=True, timeout=10)
        try:
            return con.execute(sql, params).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []
            raise
        finally:
            con.close()

    def ledger(self):
        """{message_id: (origin, status)} from the `applied` table."""
        return {r[0]: (r[1], r[2]) for r in
                self.store_query("SELECT message_id, origin, status FROM applied")}

    def replicated_captures(self):
        """{message id: number of successful captures with origin
        replicated}, the id taken from the applied request's Idempotency-Key
        header (refused applies are dead letters, counted apart)."""
        out = {}
        for (hdrs,) in self.store_query(
                "SELECT req_headers FROM requests WHERE origin = 'replicated' "
                "AND status BETWEEN 200 AND 399"):
            key = None
            for name, value in harness.headers_of(hdrs):
                if name.lower() == "idempotency-key":
                    key = value
            out[key] = out.get(key, 0) + 1
        return out

    def queued(self):
        """Captures this site's proxy queued for replication."""
        return self.store_query(
            "SELECT id, method, path FROM requests WHERE origin = 'local' AND replication "
            "IS NOT NULL AND replication NOT LIKE 'skip%' AND replication NOT LIKE 'not%'")

    def outbox_depth(self):
        rows = self.store_query("SELECT count(*) FROM outbox")
        return rows[0][0] if rows else 0

    def dead_letters(self):
        """Messages in restspy.dead.<node> (left in the queue)."""
        return self.broker.get(self.dead_queue, count=1000, requeue=True)

    def status_cli(self):
        return harness.run_cli(["replication", "status", "--store", "sqlite:" + self.db_path])

    def dead_cli(self, *args):
        return harness.run_cli(["replication", "dead", "--amqp", self.broker.amqp_url,
                                "--node", self.node] + list(args))


def start_sites(tags, parent):
    """Starts the sites in parallel (app boot is the slow part); on any
    failure stops those that started and raises."""
    sites = [Site(t, parent) for t in tags]
    errors = []

    def run(s):
        try:
            s.start()
        except Exception as e:  # reported below, with the others
            errors.append("%s: %s" % (s.node, e))

    ts = [threading.Thread(target=run, args=(s,)) for s in sites]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        for s in sites:
            s.kill_all()
        raise AssertionError("sites did not start:\n" + "\n".join(errors))
    return sites


# --------------------------------------------------------------- writes


class Writes:
    """What the clients did: every write with its key and outcome."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ok = []      # (kind, key, value) answered 2xx
        self.failed = []  # (kind, key, value, status or error)

    def note(self, kind, key, value, outcome):
        with self.lock:
            if isinstance(outcome, int) and 200 <= outcome < 300:
                self.ok.append((kind, key, value))
            else:
                self.failed.append((kind, key, value, outcome))

    def count(self):
        return len(self.ok)


def _send(site, method, path, body, timeout=30):
    try:
        r = request(site.proxy.port, method, path, body=body, timeout=timeout)
        return r.status
    except OSError as e:
        return "%s: %s" % (type(e).__name__, e)
    except Exception as e:  # http.client errors on a killed proxy
        return "%s: %s" % (type(e).__name__, e)


def create_site(site, slug, writes):
    st = _send(site, "POST", "/api/sites/",
               {"slug": slug, "name": "Site " + slug, "url": "https://%s.example" % slug,
                "status": "up"})
    writes.note("site", slug, site.node, st)
    return st


def add_metric(site, slug, writes, value=None):
    mid = str(uuid.uuid4())
    st = _send(site, "POST", "/api/sites/%s/metrics/" % slug,
               {"id": mid, "name": "cpu", "value": value if value is not None else
                round(random.random() * 100, 3), "recorded_at": RECORDED_AT})
    writes.note("metric", mid.replace("-", ""), slug, st)
    return st


def set_status(site, slug, status, writes):
    st = _send(site, "PATCH", "/api/sites/%s/" % slug, {"status": status})
    writes.note("status", slug, status, st)
    return st


def workload(site, prefix, writes, n_sites=1, metrics=5, patch=True):
    """Creates n_sites sites, metrics on each and a status change; stops a
    site's chain at the first failure (later writes would depend on it)."""
    for i in range(n_sites):
        slug = "%s-%d-%s" % (prefix, i, uuid.uuid4().hex[:6])
        if create_site(site, slug, writes) != 201:
            continue
        for _ in range(metrics):
            add_metric(site, slug, writes)
        if patch:
            set_status(site, slug, random.choice(["down", "degraded"]), writes)


def parallel(fns):
    ts = [threading.Thread(target=f) for f in fns]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


# ------------------------------------------------------------- checks


def delivered(writes, peer):
    """How many of the 2xx writes have their effect on peer: the site or
    metric exists, a status change is the site's status there (only the last
    one per site is checkable: the earlier ones count when it matches)."""
    sites, metrics = peer.keys()
    n = 0
    last_status, status_writes = {}, {}
    for kind, key, value in writes.ok:
        if kind == "site":
            n += key in sites
        elif kind == "metric":
            n += key in metrics
        elif kind == "status":
            last_status[key] = value
            status_writes[key] = status_writes.get(key, 0) + 1
    for slug, status in last_status.items():
        if sites.get(slug) == status:
            n += status_writes[slug]
    return n


def duplicates(peer, details=None):
    """Messages applied more than once on peer (see the module doc); with a
    list as details, a line per duplicate is appended to it."""
    n = 0
    for key, c in peer.replicated_captures().items():
        if c > 1:
            n += c - 1
            if details is not None:
                details.append("%s: message %s captured %d times" % (peer.node, key, c))
    for m in peer.dead_letters():
        props = m.get("properties") or {}
        reason = str(props.get("headers", {}).get("x-restspy-reason", ""))
        if "already exists" in reason:
            n += 1
            if details is not None:
                details.append("%s: message %s re-applied and refused: %s" %
                               (peer.node, props.get("message_id"), reason))
    return n


def wait_converged(sites, timeout=CONVERGE_S):
    """Polls until every site's app holds the same data; returns the
    snapshots (equal ones on success)."""
    snaps = []

    def same():
        snaps[:] = [s.snapshot() for s in sites]
        return all(x == snaps[0] for x in snaps[1:])

    wait_until(same, timeout=timeout, interval=0.5)
    return snaps


def wait_delivered(writes, peer, timeout=CONVERGE_S):
    n = [0]

    def done():
        n[0] = delivered(writes, peer)
        return n[0] >= writes.count()

    wait_until(done, timeout=timeout, interval=0.5)
    return n[0]


def figures(n, w, d, x, extra=""):
    line = "scenario %s: writes=%d delivered=%d duplicates=%d lost=%d%s" % (
        n, w, d, x, w - d, extra)
    sys.stdout.write("\n  " + line + "\n")
    sys.stdout.flush()
    return line


def snapshot_diff(a, b):
    out = []
    for k in ("sites", "metrics"):
        sa, sb = set(a[k]), set(b[k])
        if sa != sb:
            out.append("%s only on first: %s" % (k, sorted(sa - sb)[:10]))
            out.append("%s only on second: %s" % (k, sorted(sb - sa)[:10]))
    return "\n".join(out)


def purge_sites_queues(tags):
    for t in tags:
        b = _brokers[t]
        for q in ("restspy.apply." + node_of(t), "restspy.dead." + node_of(t)):
            b.purge(q)


# --------------------------------------------------------------- tests


class ReplicationCase(unittest.TestCase):
    """One scenario per test: fresh sites on the shared brokers."""

    TAGS = ("A", "B")

    def setUp(self):
        if not _brokers:
            self.skipTest("no brokers")
        self.tmp = os.path.join(_tmp, self.id().rsplit(".", 1)[-1])
        os.makedirs(self.tmp, exist_ok=True)
        purge_sites_queues(self.TAGS)
        self.sites = start_sites(self.TAGS, self.tmp)
        self.addCleanup(self._stop_sites)

    def _stop_sites(self):
        errors = []
        for s in self.sites:
            try:
                s.stop()
            except AssertionError as e:
                errors.append(str(e))
            except Exception:
                s.kill_all()
                raise
        if errors:
            self.fail("\n".join(errors))

    def site(self, tag):
        return next(s for s in self.sites if s.tag == tag)

    def assertConverged(self, sites, timeout=CONVERGE_S):
        snaps = wait_converged(sites, timeout)
        for s, snap in zip(sites[1:], snaps[1:]):
            self.assertEqual(snaps[0], snap, "site %s differs from %s:\n%s" %
                             (s.node, sites[0].node, snapshot_diff(snaps[0], snap)))
        return snaps[0]

    def assertNoDeadLetters(self, *sites):
        for s in sites:
            dead = s.dead_letters()
            self.assertEqual([], [(m.get("routing_key"),
                                   (m.get("properties") or {}).get("headers", {}).get(
                                       "x-restspy-reason")) for m in dead],
                             "dead letters on %s" % s.node)

    def assertLedger(self, peer, n, timeout=15):
        """The app may already show a write whose ledger row is still on its
        way (apply, then ledger commit, then ack): wait for the ledger to
        reach n rows, then require exactly n."""
        wait_until(lambda: len(peer.ledger()) >= n, timeout=timeout, interval=0.1)
        self.assertEqual(n, len(peer.ledger()), "ledger of %s" % peer.node)

    def assertOutboxDrained(self, *sites):
        for s in sites:
            self.assertTrue(wait_until(lambda: s.outbox_depth() == 0, timeout=20),
                            "outbox of %s still holds %d rows" % (s.node, s.outbox_depth()))


class Replication(ReplicationCase):

    def test_1_two_sites_concurrent_writes(self):
        """Concurrent writes on both sides: both apps end up identical, every
        write applied exactly once on the other side."""
        a, b = self.site("A"), self.site("B")
        wa, wb = Writes(), Writes()
        parallel([lambda i=i: workload(a, "a%d" % i, wa, n_sites=2, metrics=5)
                  for i in range(3)] +
                 [lambda i=i: workload(b, "b%d" % i, wb, n_sites=2, metrics=5)
                  for i in range(3)])
        self.assertEqual([], wa.failed + wb.failed, "client writes failed")
        self.assertEqual(3 * 2 * 7, wa.count())
        self.assertEqual(3 * 2 * 7, wb.count())
        snap = self.assertConverged([a, b])
        self.assertEqual(2 * 3 * 2, len(snap["sites"]))
        self.assertEqual(2 * 3 * 2 * 5, len(snap["metrics"]))
        d = delivered(wa, b) + delivered(wb, a)
        x = duplicates(a) + duplicates(b)
        w = wa.count() + wb.count()
        figures(1, w, d, x)
        self.assertEqual(w, d)
        self.assertEqual(0, x)
        # One ledger row per peer write, nothing else, on each side.
        self.assertLedger(b, wa.count())
        self.assertLedger(a, wb.count())
        self.assertEqual({"a"}, {o for o, _ in b.ledger().values()})
        self.assertEqual(wa.count(), len(a.queued()))
        self.assertOutboxDrained(a, b)
        self.assertNoDeadLetters(a, b)
        st = b.status_cli()
        self.assertEqual(0, st.returncode, st.stderr)
        sys.stdout.write(st.stdout)

    def test_2_broker_down_during_burst(self):
        """Broker A stopped for 20 s during a write burst to proxy A: every
        client request succeeds; once A's broker is back, B has them all."""
        a, b = self.site("A"), self.site("B")
        broker = _brokers["A"]
        writes = Writes()
        stop = threading.Event()
        slugs = []

        def writer():
            i = 0
            while not stop.is_set():
                slug = "burst-%d-%s" % (i, uuid.uuid4().hex[:6])
                i += 1
                st = create_site(a, slug, writes)
                if st == 201:
                    slugs.append(slug)
                    if i % 3 == 0:
                        add_metric(a, slug, writes)
                time.sleep(0.05)

        t = threading.Thread(target=writer)
        t.start()
        try:
            time.sleep(2)
            before = writes.count()
            broker.stop()
            down_at = time.monotonic()
            time.sleep(20)
            during = writes.count() - before
            broker.start()
            broker.wait_ready()
            sys.stdout.write("\n  broker A unreachable for %.1fs; %d writes meanwhile\n" %
                             (time.monotonic() - down_at, during))
            time.sleep(2)
        finally:
            stop.set()
            t.join()
        self.assertEqual([], writes.failed, "client writes failed while the broker was down")
        self.assertGreater(during, 20, "too few writes while the broker was down")
        for x in (a, b):
            x.broker.wait_federation([p.node for p in (a, b) if p is not x], timeout=60)
        d = wait_delivered(writes, b, timeout=90)
        x = duplicates(b)
        figures(2, writes.count(), d, x, " written_while_down=%d" % during)
        self.assertEqual(writes.count(), d)
        self.assertEqual(0, x)
        self.assertConverged([a, b])
        self.assertLedger(b, writes.count())
        self.assertOutboxDrained(a)
        self.assertNoDeadLetters(a, b)

    def test_3_proxy_killed_mid_burst(self):
        """Proxy A SIGKILLed mid-burst (sync durability) and restarted on the
        same store: every write whose client got a 2xx reaches B; every
        queued capture is applied on B exactly once."""
        a, b = self.site("A"), self.site("B")
        writes = Writes()
        stop = threading.Event()

        def writer(k):
            i = 0
            while not stop.is_set():
                st = create_site(a, "kill-%d-%d-%s" % (k, i, uuid.uuid4().hex[:6]), writes)
                i += 1
                if st != 201:
                    time.sleep(0.05)  # the proxy is down: no busy loop

        ts = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        try:
            wait_until(lambda: writes.count() >= 40, timeout=30)
            a.restart_proxy(signal.SIGKILL)
            n_after_restart = writes.count()
            wait_until(lambda: writes.count() >= n_after_restart + 40, timeout=30)
        finally:
            stop.set()
            for t in ts:
                t.join()
        sys.stdout.write("\n  %d writes answered 2xx, %d failed around the kill\n" %
                         (writes.count(), len(writes.failed)))
        d = wait_delivered(writes, b, timeout=60)
        queued = {r[0] for r in a.queued()}
        # Everything the restarted proxy found in its outbox is applied too.
        self.assertTrue(wait_until(lambda: len(b.ledger()) >= len(queued), timeout=30),
                        "B applied %d of %d queued captures" % (len(b.ledger()), len(queued)))
        x = duplicates(b)
        figures(3, writes.count(), d, x, " failed_during_kill=%d" % len(writes.failed))
        self.assertEqual(writes.count(), d, "writes answered 2xx did not reach B")
        self.assertEqual(0, x)
        self.assertLedger(b, len(queued))
        self.assertEqual(queued, set(b.ledger()))
        self.assertOutboxDrained(a)
        self.assertNoDeadLetters(b)

    def test_4_replicator_killed_three_times(self):
        """Replicator B SIGKILLed three times mid-stream: nothing lost,
        nothing applied twice."""
        a, b = self.site("A"), self.site("B")
        writes = Writes()
        ts = [threading.Thread(target=workload, args=(a, "rk%d" % k, writes),
                               kwargs={"n_sites": 3, "metrics": 15}) for k in range(3)]
        for t in ts:
            t.start()
        kills = []
        try:
            # 1: while A is being written to and B applies as it comes. B
            # stays down until the writes are done, so that the next two
            # kills land in the middle of the backlog.
            self.assertTrue(wait_until(lambda: len(b.ledger()) >= 5, timeout=30,
                                       interval=0.02), "B applied nothing")
            b.replicator.kill()
            kills.append(len(b.ledger()))
        finally:
            for t in ts:
                t.join()
        for _ in range(2):
            b.replicator.start()
            base = len(b.ledger())
            self.assertTrue(wait_until(lambda: len(b.ledger()) >= base + 10, timeout=30,
                                       interval=0.02), "B stopped applying")
            b.replicator.kill()
            kills.append(len(b.ledger()))
        b.replicator.start()
        self.assertEqual([], writes.failed)
        self.assertLess(kills[-1], writes.count(), "the last kill was not mid-stream")
        d = wait_delivered(writes, b, timeout=60)
        snap = self.assertConverged([a, b])
        why = []
        x = duplicates(b, why)
        figures(4, writes.count(), d, x, " kills=%d (at %s applied)" %
                (len(kills), ",".join(map(str, kills))))
        self.assertEqual(writes.count(), d)
        # A kill while an apply is in flight means that the app may have
        # done it without the ledger knowing: the redelivery is applied
        # again, and only an app that honours Idempotency-Key (as restspy
        # asks: docs/replication.md) turns that into a single effect.
        self.assertEqual(0, x, "\n".join(why))
        self.assertLedger(b, writes.count())
        self.assertEqual(3 * 3, len(snap["sites"]))
        self.assertEqual(3 * 3 * 15, len(snap["metrics"]))
        self.assertNoDeadLetters(b)

    def test_5_forged_and_unsigned_dead_lettered(self):
        """A forged and an unsigned message on B's restspy.inbound: both
        dead-lettered with a reason, neither applied; real traffic still
        flows."""
        a, b = self.site("A"), self.site("B")
        broker = b.broker

        def message(slug, signature):
            mid = uuid7()
            body = json.dumps({"slug": slug, "name": "x", "url": "https://x.example",
                               "status": "up"})
            headers = {"x-restspy-origin": "a", "x-restspy-method": "POST",
                       "x-restspy-target": "/api/sites/",
                       "x-restspy-headers": json.dumps([["Content-Type", "application/json"]])}
            if signature:
                headers["x-restspy-signature"] = signature
            props = {"message_id": mid, "timestamp": int(time.time()),
                     "content_type": "application/json", "delivery_mode": 2,
                     "app_id": "restspy", "headers": headers}
            return mid, body, props

        forged_id, body, props = message("forged-site", "%064x" % random.getrandbits(256))
        self.assertTrue(broker.publish("restspy.inbound", "a.POST.api.sites", body, props))
        unsigned_id, body, props = message("unsigned-site", None)
        self.assertTrue(broker.publish("restspy.inbound", "a.POST.api.sites", body, props))

        self.assertTrue(wait_until(lambda: broker.depth(b.dead_queue) >= 2, timeout=30),
                        "dead-letter queue of b holds %d messages" % broker.depth(b.dead_queue))
        dead = {m["properties"].get("message_id"): m for m in b.dead_letters()}
        self.assertEqual({forged_id, unsigned_id}, set(dead))
        for mid in (forged_id, unsigned_id):
            reason = dead[mid]["properties"].get("headers", {}).get("x-restspy-reason", "")
            self.assertTrue(reason, "dead letter %s has no x-restspy-reason" % mid)
        self.assertIn("signature", dead[forged_id]["properties"]["headers"]["x-restspy-reason"])
        self.assertIn("unsigned", dead[unsigned_id]["properties"]["headers"]["x-restspy-reason"])
        sites, _ = b.keys()
        self.assertNotIn("forged-site", sites)
        self.assertNotIn("unsigned-site", sites)
        self.assertNotIn(forged_id, b.ledger())
        self.assertNotIn(unsigned_id, b.ledger())
        listing = b.dead_cli()
        self.assertEqual(0, listing.returncode, listing.stderr)
        self.assertIn(forged_id, listing.stdout)
        self.assertIn(unsigned_id, listing.stdout)
        # Listing leaves them where they are.
        self.assertEqual(2, broker.depth(b.dead_queue))

        writes = Writes()
        workload(a, "after-forged", writes, n_sites=1, metrics=2)
        d = wait_delivered(writes, b)
        x = duplicates(b)
        figures(5, writes.count(), d, x, " forged=1 unsigned=1 dead_lettered=%d applied=%d" %
                (broker.depth(b.dead_queue), sum(1 for m in (forged_id, unsigned_id)
                                                 if m in b.ledger())))
        self.assertEqual(writes.count(), d)
        self.assertEqual(0, x)
        self.assertLedger(b, writes.count())
        self.assertEqual(2, broker.depth(b.dead_queue))

    def test_7_rejected_write_dead_lettered_and_retried(self):
        """A write B's app refuses (404: the metric's site exists on A only)
        is dead-lettered with its reason, listed by `restspy replication
        dead`, and re-applied once by --retry after the cause is fixed."""
        a, b = self.site("A"), self.site("B")
        site = {"slug": "only-on-a", "name": "Only A", "url": "https://a.example",
                "status": "up"}
        # Straight to A's app: not through the proxy, so not replicated.
        self.assertEqual(201, a.app.request("POST", "/api/sites/", site).status)
        writes = Writes()
        self.assertEqual(201, add_metric(a, "only-on-a", writes, value=42.0))
        mid = writes.ok[0][1]

        self.assertTrue(wait_until(lambda: b.broker.depth(b.dead_queue) >= 1, timeout=30),
                        "nothing dead-lettered on b")
        dead = b.dead_letters()
        self.assertEqual(1, len(dead))
        message_id = dead[0]["properties"].get("message_id")
        reason = dead[0]["properties"].get("headers", {}).get("x-restspy-reason", "")
        self.assertIn("404", reason)
        self.assertEqual(set(), b.keys()[1])
        listing = b.dead_cli()
        self.assertEqual(0, listing.returncode, listing.stderr)
        self.assertIn(message_id, listing.stdout)
        self.assertIn("404", listing.stdout)

        # The cause fixed on B, the retry applies it, once.
        self.assertEqual(201, b.app.request("POST", "/api/sites/", site).status)
        retry = b.dead_cli("--retry", message_id)
        self.assertEqual(0, retry.returncode, retry.stdout + retry.stderr)
        d = wait_delivered(writes, b, timeout=30)
        self.assertTrue(wait_until(lambda: message_id in b.ledger(), timeout=15))
        self.assertEqual(0, b.broker.depth(b.dead_queue))
        x = duplicates(b)
        figures(7, writes.count(), d, x, " dead_lettered=1 retried=1")
        self.assertEqual(1, d)
        self.assertEqual(0, x)
        self.assertEqual({mid}, b.keys()[1])
        self.assertEqual(1, b.replicated_captures().get(message_id, 0))
        self.assertConverged([a, b])
        after = b.dead_cli()
        self.assertEqual(0, after.returncode, after.stderr)
        self.assertNotIn(message_id, after.stdout)


    def test_8_replicator_prefetch(self):
        """The replicator takes `prefetch` deliveries ahead of its applies (64
        by default, at least one per worker). It used to take 4 per worker:
        one worker then idled between polls, capping it near 800 applies/s."""
        b = self.site("B")
        self.assertEqual([64], b.broker.consumer_prefetch(b.apply_queue))
        try:
            b.replicator.stop()
            b.replicator.extra = ["--prefetch", "3", "--concurrency", "5"]
            b.replicator.start()
            self.assertTrue(wait_until(
                lambda: b.broker.consumer_prefetch(b.apply_queue) == [5], timeout=10),
                b.broker.consumer_prefetch(b.apply_queue))
        finally:
            b.replicator.stop()
            b.replicator.extra = []
            b.replicator.start()


class ReplicationMesh(ReplicationCase):
    TAGS = ("A", "B", "C")

    def setUp(self):
        if not _brokers:
            self.skipTest("no brokers")
        # Joins C: re-running federate on A and B adds it as their peer.
        federate_mesh(["A", "B", "C"])
        super().setUp()

    def test_6_three_sites_full_mesh(self):
        """Three sites in a full mesh: a write on any site reaches the other
        two exactly once."""
        sites = [self.site(t) for t in self.TAGS]
        ws = {s.node: Writes() for s in sites}
        parallel([lambda s=s: workload(s, "m" + s.node, ws[s.node], n_sites=2, metrics=4)
                  for s in sites])
        for w in ws.values():
            self.assertEqual([], w.failed)
        snap = self.assertConverged(sites)
        total = sum(w.count() for w in ws.values())
        d = x = 0
        for s in sites:
            others = [o for o in sites if o is not s]
            for o in others:
                d += delivered(ws[s.node], o)
            x += duplicates(s)
        # Every write must reach two peers.
        figures(6, 2 * total, d, x, " sites=3 writes_per_site=%s" %
                ",".join(str(ws[s.node].count()) for s in sites))
        self.assertEqual(2 * total, d)
        self.assertEqual(0, x)
        for s in sites:
            others = sum(ws[o.node].count() for o in sites if o is not s)
            self.assertLedger(s, others)
            led = s.ledger()
            self.assertEqual({o.node for o in sites if o is not s},
                             {org for org, _ in led.values()})
        self.assertEqual(3 * 2, len(snap["sites"]))
        self.assertEqual(3 * 2 * 4, len(snap["metrics"]))
        self.assertNoDeadLetters(*sites)


class Federate(unittest.TestCase):
    """`restspy federate` itself: what it declares, idempotence, errors,
    --print."""

    def test_declares_topology_and_links(self):
        b = _brokers["A"]
        ex = b.exchanges()
        for name in ("restspy.requests", "restspy.inbound", "restspy.dead"):
            self.assertEqual("topic", ex[name]["type"], name)
            self.assertTrue(ex[name]["durable"], name)
        q = b.queue_info("restspy.apply.a")
        self.assertTrue(q["durable"])
        self.assertEqual({"x-queue-type": "classic", "x-dead-letter-exchange": "restspy.dead",
                          "x-dead-letter-routing-key": "a"}, q["arguments"])
        self.assertIsNotNone(b.queue_info("restspy.dead.a"))
        binds = {(x["source"], x["destination"], x["routing_key"]) for x in b.bindings()
                 if x["source"]}
        self.assertIn(("restspy.inbound", "restspy.apply.a", "#"), binds)
        self.assertIn(("restspy.dead", "restspy.dead.a", "a"), binds)
        st, up = b.api("GET", "/api/parameters/federation-upstream/%2F/b")
        self.assertEqual(200, st)
        self.assertEqual("restspy.requests", up["value"]["exchange"])
        self.assertEqual("on-confirm", up["value"]["ack-mode"])
        self.assertEqual(False, up["value"]["trust-user-id"])
        st, pol = b.api("GET", "/api/policies/%2F/restspy-inbound")
        self.assertEqual(200, st)
        self.assertEqual("^restspy\\.inbound$", pol["pattern"])
        self.assertEqual({"federation-upstream-set": "all"}, pol["definition"])
        self.assertEqual("exchanges", pol["apply-to"])
        links = b.wait_federation(["b"], timeout=30)
        self.assertTrue(any(ln.get("upstream_exchange") == "restspy.requests" for ln in links))

    def test_idempotent(self):
        b = _brokers["A"]
        before = sorted(json.dumps(x, sort_keys=True) for x in b.bindings())
        p = federate("A", ["B"])
        self.assertIn("already there", p.stdout)
        p = federate("A", ["B"])
        after = sorted(json.dumps(x, sort_keys=True) for x in b.bindings())
        self.assertEqual(before, after)
        b.wait_federation(["b"], timeout=30)

    def test_errors(self):
        b = _brokers["A"]
        bad = b.mgmt_url.replace(":guest@", ":wrong@")
        p = harness.run_cli(["federate", "--mgmt", bad, "--node", "a", "--peer",
                             "b=" + _brokers["B"].amqp_url])
        self.assertEqual(1, p.returncode, p.stderr)
        self.assertEqual(1, len(p.stderr.strip().splitlines()), p.stderr)
        self.assertIn("401", p.stderr)
        # A queue type that differs from the declared one: the broker's
        # reason is shown.
        p = harness.run_cli(["federate", "--mgmt", b.mgmt_url, "--node", "a",
                             "--queue-type", "quorum"])
        self.assertEqual(1, p.returncode)
        self.assertIn("inequivalent arg", p.stderr)
        self.assertIn("400", p.stderr)
        # Nothing listening.
        p = harness.run_cli(["federate", "--mgmt", "http://guest:guest@127.0.0.1:%d" %
                             harness.free_port(), "--node", "a"])
        self.assertEqual(1, p.returncode)
        self.assertIn("refused", p.stderr)
        for args in (["--node", "a"],  # no --mgmt
                     ["--mgmt", b.mgmt_url, "--node", "a", "--peer", "b"],
                     ["--mgmt", b.mgmt_url, "--node", "a", "--peer", "b=http://x"],
                     ["--mgmt", b.mgmt_url, "--node", "a", "--peer", "a=amqp://x"],
                     ["--mgmt", b.mgmt_url, "--node", "a", "--queue-type", "lazy"],
                     ["--mgmt", b.mgmt_url, "--node", "a", "--bogus"]):
            p = harness.run_cli(["federate"] + args)
            self.assertEqual(2, p.returncode, (args, p.stderr))
            self.assertTrue(p.stderr.startswith("restspy federate: "), p.stderr)
        p = harness.run_cli(["federate", "--help"])
        self.assertEqual(0, p.returncode)
        self.assertIn("--peer", p.stdout)

    def test_print_commands_work(self):
        """--print's lines, run by sh, give the same setup as the API mode
        (in a vhost of their own on broker C, with rabbitmqctl pointed at
        that node)."""
        c = _brokers["C"]
        vhost = "printed"
        c.api_ok("PUT", "/api/vhosts/" + vhost)
        c.api_ok("PUT", "/api/permissions/%s/guest" % vhost,
                 {"configure": ".*", "write": ".*", "read": ".*"})
        # The peer points nowhere: a link from this vhost to a real broker
        # would leave a federation queue there, fed by the other tests.
        nowhere = "amqp://guest:guest@127.0.0.1:%d" % harness.free_port()
        p = harness.run_cli(["federate", "--mgmt", c.mgmt_url, "--node", "pc", "--vhost", vhost,
                             "--peer", "pa=" + nowhere, "--print"])
        self.assertEqual(0, p.returncode, p.stderr)
        lines = [ln for ln in p.stdout.splitlines() if ln and not ln.startswith("#")]
        self.assertEqual(7, sum(1 for ln in lines if ln.startswith("curl ")), p.stdout)
        self.assertEqual(2, sum(1 for ln in lines if ln.startswith("rabbitmqctl ")), p.stdout)
        # Nothing was declared by --print itself.
        self.assertNotIn("restspy.inbound",
                         {e["name"] for e in c.api_ok("GET", "/api/exchanges/" + vhost)})
        bindir = os.path.join(_tmp, "printbin")
        os.makedirs(bindir, exist_ok=True)
        with open(os.path.join(bindir, "rabbitmqctl"), "w") as f:
            f.write("#!/bin/sh\nexec %s -n %s \"$@\"\n" %
                    (os.path.join(rabbit.RABBIT_LIB, "rabbitmqctl"), c.node))
        os.chmod(os.path.join(bindir, "rabbitmqctl"), 0o755)
        env = clean_env({"PATH": bindir + ":" + os.environ.get("PATH", "")})
        for k in ("RABBITMQ_NODENAME",):
            env.pop(k, None)
        r = subprocess.run(["sh", "-e"], input=p.stdout.encode(), env=env,
                           capture_output=True, timeout=120)
        self.assertEqual(0, r.returncode, r.stdout.decode() + r.stderr.decode())
        ex = {e["name"]: e for e in c.api_ok("GET", "/api/exchanges/" + vhost)}
        for name in ("restspy.requests", "restspy.inbound", "restspy.dead"):
            self.assertEqual("topic", ex[name]["type"])
        q = c.api_ok("GET", "/api/queues/%s/restspy.apply.pc" % vhost)
        self.assertEqual("restspy.dead", q["arguments"]["x-dead-letter-exchange"])
        binds = {(x["source"], x["destination"], x["routing_key"])
                 for x in c.api_ok("GET", "/api/bindings/" + vhost)}
        self.assertIn(("restspy.inbound", "restspy.apply.pc", "#"), binds)
        self.assertIn(("restspy.dead", "restspy.dead.pc", "pc"), binds)
        pol = c.api_ok("GET", "/api/policies/%s/restspy-inbound" % vhost)
        self.assertEqual({"federation-upstream-set": "all"}, pol["definition"])
        up = c.api_ok("GET", "/api/parameters/federation-upstream/%s/pa" % vhost)
        self.assertEqual("on-confirm", up["value"]["ack-mode"])
        # The printed commands are idempotent: once more, same result.
        r = subprocess.run(["sh", "-e"], input=p.stdout.encode(), env=env,
                           capture_output=True, timeout=120)
        self.assertEqual(0, r.returncode, r.stdout.decode() + r.stderr.decode())
        c.api("DELETE", "/api/vhosts/" + vhost)


if __name__ == "__main__":
    unittest.main()
