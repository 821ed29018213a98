"""Sites that replicate through real RabbitMQ nodes, for the replication
scenario tests (test_replication.py, test_replication_durable.py).

A site is the sitemon app (own database), a restspy proxy in front of it
(--amqp, --node, replication on, --secret, sync durability) and a restspy
replicator applying the peers' writes to the same app, sharing the proxy's
store file, with its own broker. `restspy federate` links each site's broker
to its peers' (a queue restspy.out.<peer> per peer and a shovel moving it to
the peer's restspy.inbound). A test module starts its brokers once (in
parallel, use_brokers) and reuses them: every scenario starts fresh sites
(new apps, new stores) and purges the sites' queues first, so scenarios stay
independent.

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
SITEMON_NOISE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                             "sitemon", "replicate.noise")

# tag -> rabbit.Broker: the brokers of the test module being run, and its
# temporary directory (set up by setup_module, emptied by its cleanup).
brokers = {}
_tmp = [None]


def setup_module(name, tags):
    """For a test module's setUpModule: starts one broker per tag (in
    parallel) and a temporary directory, both removed when the module is
    done."""
    rabbit.require()
    _tmp[0] = make_tmpdir(name)
    unittest.addModuleCleanup(_module_cleanup)
    started = time.monotonic()
    for b in rabbit.start_brokers(list(tags)):
        brokers[b.tag] = b
    sys.stdout.write("\n  brokers up in %.1fs: %s\n" % (time.monotonic() - started,
                                                      ", ".join(map(repr, brokers.values()))))


def _module_cleanup():
    rabbit.stop_brokers(list(brokers.values()))
    brokers.clear()
    if _tmp[0]:
        remove_tmpdir(_tmp[0])
        _tmp[0] = None


def tmpdir():
    return _tmp[0]

def node_of(tag):
    return tag.lower()


def federate(tag, peers, extra=()):
    """`restspy federate` for site tag's broker with the given peer tags;
    returns the CompletedProcess (fails the run on a non-zero exit)."""
    b = brokers[tag]
    args = ["federate", "--mgmt", b.mgmt_url, "--node", node_of(tag)]
    for p in peers:
        args += ["--peer", "%s=%s" % (node_of(p), brokers[p].amqp_url)]
    p = harness.run_cli(args + list(extra))
    if p.returncode != 0:
        raise AssertionError("restspy %s exited %d\nstdout:\n%s\nstderr:\n%s" %
                             (" ".join(args), p.returncode, p.stdout, p.stderr))
    return p


def shovel_of(peer_tag):
    return "restspy-to-" + node_of(peer_tag)


def federate_mesh(tags):
    """Every broker of tags linked to all the others; returns once each has
    a running shovel to each peer (writes made before are held in the
    peers' restspy.out queues, but the scenarios time their faults from a
    running mesh)."""
    for t in tags:
        federate(t, [p for p in tags if p != t])
    wait_mesh(tags)


def wait_mesh(tags, timeout=60):
    for t in tags:
        brokers[t].wait_shovels([shovel_of(p) for p in tags if p != t], timeout=timeout)


def uuid7():
    """A UUIDv7 string (what restspy uses as message ids)."""
    ms = int(time.time() * 1000)
    r = random.getrandbits(74)
    v = (ms << 80) | (0x7 << 76) | ((r >> 62) << 64) | (0b10 << 62) | (r & ((1 << 62) - 1))
    return str(uuid.UUID(int=v))


# ------------------------------------------------------------- a site


class SiteProxy(Proxy):
    """The harness proxy with the site's node name and replication on."""

    def __init__(self, tmpdir, upstream, node, amqp, extra=()):
        super().__init__(tmpdir, upstream, name="proxy")
        self.node = node
        self.amqp = amqp
        self.extra = list(extra)

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
                "--secret", SECRET] + self.extra


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
        self.upstream = None  # another upstream than the site's app, for one test

    def command(self):
        s = self.site
        return [restspy_bin(), "replicate",
                "--amqp", s.broker.amqp_url,
                "--upstream", self.upstream or s.app.url,
                "--node", s.node,
                "--store", "sqlite:" + s.db_path,
                "--secret", SECRET,
                "--retry-min", "100ms",
                "--retry-max", "2s",
                # the sample app's expected differences (updated_at)
                "--replicate-noise", SITEMON_NOISE] + self.extra

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
        self.broker = brokers[tag]
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

    def applied_count(self):
        """How many rows the `applied` ledger has: cheaper than ledger() for
        a test that must act the moment a count is reached."""
        rows = self.store_query("SELECT count(*) FROM applied")
        return rows[0][0] if rows else 0

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

    def status_cli(self, *extra):
        return harness.run_cli(["replication", "status", "--store", "sqlite:" + self.db_path] +
                               list(extra))

    def held(self):
        """`replication status --mgmt --json`'s per-peer figures of this
        site's broker: {peer: {held, oldest_age_s, shovel, ...}}."""
        p = self.status_cli("--mgmt", self.broker.mgmt_url, "--json")
        if p.returncode != 0:
            raise AssertionError("replication status exited %d: %s" % (p.returncode, p.stderr))
        return {e["peer"]: e for e in json.loads(p.stdout)["peers"]}

    def dead_cli(self, *args):
        return harness.run_cli(["replication", "dead", "--amqp", self.broker.amqp_url,
                                "--node", self.node] + list(args))


def start_sites(tags, parent, app_for=None):
    """Starts the sites in parallel (app boot is the slow part); on any
    failure stops those that started and raises. app_for(site), when
    given, is the backend of a site (an object with the sample app's
    start, url and stop) instead of the sample app."""
    sites = [Site(t, parent) for t in tags]
    for s in sites if app_for else ():
        s.app = app_for(s)
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


class Writer:
    """A client writing to a site from its own thread until stopped: a new
    site every `pause` seconds (a slug of its own) and a metric on every
    third. Answers go to writes; a failed write is not retried (the
    scenarios count what the clients were told)."""

    def __init__(self, site, prefix, writes, pause=0.05):
        self.site, self.prefix, self.writes, self.pause = site, prefix, writes, pause
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self):
        i = 0
        while not self.stopping.is_set():
            slug = "%s-%d-%s" % (self.prefix, i, uuid.uuid4().hex[:6])
            i += 1
            if create_site(self.site, slug, self.writes) == 201 and i % 3 == 0:
                add_metric(self.site, slug, self.writes)
            time.sleep(self.pause)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        self.thread.join()


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
    """The apply and dead queues of the sites, and what their brokers hold
    for any peer (what an earlier scenario left must not reach new sites)."""
    for t in tags:
        b = brokers[t]
        for q in ("restspy.apply." + node_of(t), "restspy.dead." + node_of(t)):
            b.purge(q)
        for q in b.queues():
            if q.startswith("restspy.out."):
                b.purge(q)


# --------------------------------------------------------------- tests


class ReplicationCase(unittest.TestCase):
    """One scenario per test: fresh sites on the shared brokers."""

    TAGS = ("A", "B")
    # A backend other than the sample app: app_for(self, site), as
    # start_sites takes it.
    app_for = None

    def setUp(self):
        if not brokers:
            self.skipTest("no brokers")
        self.tmp = os.path.join(_tmp[0], self.id().rsplit(".", 1)[-1])
        os.makedirs(self.tmp, exist_ok=True)
        purge_sites_queues(self.TAGS)
        self.sites = start_sites(self.TAGS, self.tmp, self.app_for)
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


