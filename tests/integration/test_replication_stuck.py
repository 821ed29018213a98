"""A replicator in front of writes that keep failing (issue 10, section 2),
its lag figure (section 3) and the credentials it carries (section 4),
against a real RabbitMQ node.

The node starts once for the module. Messages are published straight to
the replicator's `restspy.inbound` exchange through the management API (as
a peer's federation link would deliver them), unsigned, or come from a
restspy proxy whose `restspy.requests` the test binds to the replicator's
queue. The upstream is a small app in the test process that answers what
each scenario needs (a create refused with 500 forever, as json-server
answers a duplicate id; a duplicate refused with 409 or 500) and counts
the effects per Idempotency-Key; one scenario uses the sitemon sample app,
which honours Idempotency-Key.

Each scenario prints one figures line:
  scenario NAME: writes=W delivered=D duplicates=X lost=L
writes: messages that should be applied; delivered: those whose effect the
app holds; duplicates: effects beyond the first for one message; lost:
W - D."""
import http.server
import json
import os
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
from harness import (App, Proxy, clean_env, make_tmpdir, read_text, remove_tmpdir,
                     restspy_bin, run_cli, sanitizer_report, wait_until)

_broker = None
_tmp = None


def setUpModule():
    rabbit.require()
    global _broker, _tmp
    _tmp = make_tmpdir("replstuck")
    unittest.addModuleCleanup(_module_cleanup)
    _broker = rabbit.start_brokers(["S"])[0]


def _module_cleanup():
    if _broker is not None:
        rabbit.stop_brokers([_broker])
    if _tmp:
        remove_tmpdir(_tmp)


def uuid7():
    """A UUIDv7 of now (what restspy uses as message ids)."""
    ms = int(time.time() * 1000)
    r = uuid.uuid4().int & ((1 << 74) - 1)
    v = (ms << 80) | (0x7 << 76) | ((r >> 62) << 64) | (0b10 << 62) | (r & ((1 << 62) - 1))
    return str(uuid.UUID(int=v))


# ------------------------------------------------------------- the app


class FakeApp:
    """An upstream whose answers the scenario decides: decide(method, path,
    body) returns (status, commit) for a request no answer is remembered
    for; a committed write counts one effect for its Idempotency-Key.
    idempotent: a key that committed before gets its first answer again,
    with no new effect (what sitemon does)."""

    def __init__(self, decide, idempotent=True):
        self.decide = decide
        self.idempotent = idempotent
        self.lock = threading.Lock()
        self.effects = {}  # Idempotency-Key -> committed effects
        self.answers = {}  # Idempotency-Key -> first successful status
        self.log = []      # (monotonic time, method, path, key, status, headers)
        app = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _serve(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                key = self.headers.get("Idempotency-Key")
                status = app.handle(self.command, self.path, body, key,
                                    [(k, v) for k, v in self.headers.items()])
                out = b'{"status":%d}' % status
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        self.srv = harness.start_backend(Handler)
        self.url = self.srv.url

    def handle(self, method, path, body, key, headers):
        with self.lock:
            if self.idempotent and key in self.answers:
                status, commit = self.answers[key], False
            else:
                status, commit = self.decide(method, path, body)
            if commit:
                self.effects[key] = self.effects.get(key, 0) + 1
                self.answers.setdefault(key, status)
            self.log.append((time.monotonic(), method, path, key, status, headers))
        return status

    def effect(self, key):
        with self.lock:
            return self.effects.get(key, 0)

    def requests_for(self, key):
        with self.lock:
            return [e for e in self.log if e[3] == key]

    def stop(self):
        harness.stop_backend(self.srv)


# ------------------------------------------------------ the replicator


class Replicator:
    """`restspy replicate` for node b on the module's broker."""

    def __init__(self, tmpdir, upstream, extra=(), node="b"):
        self.node = node
        self.upstream = upstream
        self.extra = list(extra)
        self.db_path = os.path.join(tmpdir, "b.db")
        self.stderr_path = os.path.join(tmpdir, "replicator.stderr")
        self.proc = None

    @property
    def apply_queue(self):
        return "restspy.apply." + self.node

    @property
    def dead_queue(self):
        return "restspy.dead." + self.node

    def command(self):
        return [restspy_bin(), "replicate", "--amqp", _broker.amqp_url,
                "--upstream", self.upstream, "--node", self.node,
                "--store", "sqlite:" + self.db_path,
                "--retry-min", "100ms", "--retry-max", "400ms"] + self.extra

    def start(self):
        err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=err, env=clean_env())
        err.close()
        if not _broker.wait_consumer(self.apply_queue, timeout=30, proc=self.proc):
            rc = self.proc.poll()
            if rc is None:
                self.proc.kill()
                self.proc.wait()
            raise AssertionError("replicator did not start consuming (exit %s):\n%s" %
                                 (rc, self.stderr()[-4000:]))
        return self

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def check_stopped(self):
        """SIGTERM; fails on a bad exit or a sanitizer report."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("replicator did not stop on SIGTERM:\n" +
                                     self.stderr()[-4000:])
            rc = self.proc.returncode
            if rc != 0:
                raise AssertionError("replicator exited %s:\n%s" % (rc, self.stderr()[-4000:]))
        m = sanitizer_report(self.stderr())
        if m:
            raise AssertionError("sanitizer report (%s):\n%s" % (m, self.stderr()[-6000:]))

    def stderr(self):
        return read_text(self.stderr_path)

    def status(self):
        p = run_cli(["replication", "status", "--store", "sqlite:" + self.db_path, "--json"])
        if p.returncode != 0:
            raise AssertionError("replication status: %s" % p.stderr)
        return json.loads(p.stdout)

    def status_text(self):
        return run_cli(["replication", "status", "--store", "sqlite:" + self.db_path]).stdout

    def dead_cli(self, *args):
        return run_cli(["replication", "dead", "--amqp", _broker.amqp_url, "--node", self.node,
                        "--store", "sqlite:" + self.db_path] + list(args), timeout=60)

    def ledger(self):
        if not os.path.exists(self.db_path):
            return {}
        con = sqlite3.connect("file:%s?mode=ro" % self.db_path, uri=True, timeout=10)
        try:
            return {r[0]: r[1] for r in con.execute("SELECT message_id, state FROM applied")}
        finally:
            con.close()


def publish(target, method="POST", body=None, mid=None, origin="a", headers=None):
    """Publishes one unsigned message as peer `origin` would send it;
    returns its id."""
    mid = mid or uuid7()
    payload = json.dumps(body if body is not None else {})
    hdrs = [["Content-Type", "application/json"]] + [list(h) for h in (headers or [])]
    routed = _broker.publish("restspy.inbound", "%s.%s.x" % (origin, method), payload, {
        "message_id": mid, "timestamp": int(time.time()), "delivery_mode": 2,
        "content_type": "application/json", "app_id": "restspy",
        "headers": {"x-restspy-origin": origin, "x-restspy-method": method,
                    "x-restspy-target": target,
                    "x-restspy-headers": json.dumps(hdrs, separators=(",", ":"))}})
    assert routed, "message for %s was not routed" % target
    return mid


def dead_letters(node="b"):
    return _broker.get("restspy.dead." + node, count=1000, requeue=True)


def figures(name, writes, delivered, duplicates, extra=""):
    line = "scenario %s: writes=%d delivered=%d duplicates=%d lost=%d%s" % (
        name, writes, delivered, duplicates, writes - delivered, extra)
    sys.stdout.write("\n  " + line + "\n")
    sys.stdout.flush()


class StuckCase(unittest.TestCase):
    """Fresh queues and a fresh directory per test."""

    def setUp(self):
        self.tmp = os.path.join(_tmp, self.id().rsplit(".", 1)[-1])
        os.makedirs(self.tmp, exist_ok=True)
        for q in ("restspy.apply.b", "restspy.dead.b"):
            _broker.purge(q)
        self.replicator = None
        self.addCleanup(self._stop)

    def _stop(self):
        if self.replicator is not None:
            self.replicator.check_stopped()

    def start_replicator(self, upstream, *extra):
        self.replicator = Replicator(self.tmp, upstream, extra).start()
        return self.replicator

    def fake_app(self, decide, **kw):
        app = FakeApp(decide, **kw)
        self.addCleanup(app.stop)
        return app


def _body_id(body):
    try:
        return json.loads(body or b"{}").get("id")
    except ValueError:
        return None


class StuckWrites(StuckCase):

    def test_1_failing_create_holds_back_only_its_resource(self):
        """A create the app answers 500 forever (json-server's answer to a
        duplicate id) does not stall the site: the writes to other
        resources and other creates in its collection are applied
        meanwhile, with one worker, and the updates of its members once it
        is stuck (failing for stuck_after while others are applied). It is
        listed as stuck (attempts, last answer) while it is retried, then
        dead-lettered with its last answer when its budget is spent, and
        only then is the later write to its own resource applied."""
        def decide(method, path, body):
            if method == "POST" and _body_id(body) == "dup":
                return 500, False
            return (201 if method == "POST" else 200), True

        app = self.fake_app(decide)
        r = self.start_replicator(app.url, "--retry-max-age", "8s", "--stuck-after", "1s")
        t0 = time.monotonic()
        poison = publish("/posts/", body={"id": "dup"})
        others = [publish("/comments/%d/" % i, "PUT", {"id": i}) for i in range(10)]
        others.append(publish("/posts/", body={"id": "fresh"}))       # a create beside it
        others.append(publish("/posts/3/", "PATCH", {"title": "t"}))  # a member's update
        same = publish("/posts/", "PUT", {"all": True})               # its own resource

        self.assertTrue(wait_until(lambda: all(app.effect(k) for k in others), timeout=6),
                        "writes to other resources were held back by the failing create:\n" +
                        r.stderr()[-3000:])
        held_for = time.monotonic() - t0
        self.assertEqual(0, app.effect(same), "the write to its own resource did not wait")
        doc = {}

        def listed():
            doc.update(r.status())
            return doc["stuck_total"] == 1 and doc["stuck"][0]["attempts"] >= 2
        self.assertTrue(wait_until(listed, timeout=5), doc)
        stuck = doc["stuck"][0]
        self.assertEqual((stuck["id"], stuck["method"], stuck["target"]),
                         (poison, "POST", "/posts/"))
        self.assertIn("upstream answered 500", stuck["last_answer"])
        self.assertEqual(doc["retry_max_age_s"], 8)
        self.assertEqual(doc["dead_lettered"], 0)
        text = r.status_text()
        self.assertIn("stuck                1 (retry budget: 8.0s, then dead-lettered)", text)
        self.assertIn(poison, text)

        self.assertTrue(wait_until(lambda: r.ledger().get(same, "-") is None, timeout=20),
                        "the write behind the dead-lettered one was not applied")
        dead = dead_letters()
        self.assertEqual([poison], [m["properties"]["message_id"] for m in dead])
        reason = dead[0]["properties"]["headers"]["x-restspy-reason"]
        self.assertRegex(reason, r"^retry budget spent: \d+ failed attempts in [89]\.\ds; "
                                 r"last: upstream answered 500: ")
        poison_tries = app.requests_for(poison)
        self.assertGreaterEqual(poison_tries[-1][0] - poison_tries[0][0], 7.5)
        self.assertGreater(app.requests_for(same)[0][0], poison_tries[-1][0],
                           "the write to the same resource went before the stuck one ended")
        self.assertTrue(wait_until(lambda: r.status()["dead_lettered"] == 1, timeout=5))
        doc = r.status()
        self.assertEqual(doc["stuck_total"], 0)
        self.assertEqual(doc["applied"], 13)
        writes = others + [same]
        delivered = sum(1 for k in writes if app.effect(k))
        duplicates = sum(app.effect(k) - 1 for k in writes if app.effect(k) > 1)
        figures("stuck-create", len(writes), delivered, duplicates,
                " dead_lettered=1 others_applied_within=%.1fs" % held_for)
        self.assertEqual((len(writes), 0), (delivered, duplicates))

    def test_2_retry_show_and_skip_dead_letters(self):
        """Two writes spend a budget of 3 attempts and are dead-lettered.
        The cause of one is fixed: `replication dead --retry` applies it,
        once. The other is shown whole, then skipped: recorded in the
        ledger as skipped, gone from the dead queue, and never applied,
        not even when it arrives again."""
        fixed = threading.Event()

        def decide(method, path, body):
            if path == "/a/" and not fixed.is_set():
                return 503, False
            if path == "/b/":
                return 500, False
            return 201, True

        app = self.fake_app(decide)
        r = self.start_replicator(app.url, "--retry-max-attempts", "3")
        p1 = publish("/a/", body={"id": "p1"})
        p2 = publish("/b/", body={"id": "p2"})
        self.assertTrue(wait_until(lambda: _broker.depth(r.dead_queue) == 2, timeout=20),
                        r.stderr()[-3000:])
        reasons = {m["properties"]["message_id"]: m["properties"]["headers"]["x-restspy-reason"]
                   for m in dead_letters()}
        self.assertRegex(reasons[p1], r"^retry budget spent: 3 failed attempts in .*; last: "
                                      r"upstream answered 503")
        self.assertEqual(3, len(app.requests_for(p2)))

        fixed.set()
        p = r.dead_cli("--retry", p1)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(wait_until(lambda: p1 in r.ledger(), timeout=15))
        self.assertEqual(1, app.effect(p1))

        p = r.dead_cli("--show", p2)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("request       POST /b/\n", p.stdout)
        self.assertIn("last: upstream answered 500", p.stdout)
        self.assertIn('{"id": "p2"}', p.stdout)
        p = r.dead_cli("--skip", p2)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(0, _broker.depth(r.dead_queue))
        self.assertEqual("skipped", r.ledger().get(p2))

        # It arrives again (a peer republished it): acked, not applied.
        publish("/b/", body={"id": "p2"}, mid=p2)
        after = publish("/c/", body={"id": "c"})
        self.assertTrue(wait_until(lambda: app.effect(after) == 1, timeout=15))
        self.assertTrue(wait_until(lambda: _broker.depth(r.apply_queue) == 0, timeout=10))
        self.assertEqual(3, len(app.requests_for(p2)), "a skipped message was sent again")
        self.assertEqual(0, _broker.depth(r.dead_queue))
        doc = r.status()
        self.assertEqual((doc["applied"], doc["skipped"], doc["dead_lettered"]), (2, 1, 2))
        figures("retry-skip", 2, app.effect(p1) + app.effect(after), 0,
                " dead_lettered=2 retried=1 skipped=1")


class DeadQueueGone(StuckCase):

    def test_7_dead_letter_kept_when_the_dead_queue_is_gone(self):
        """A write the app refuses (4xx) whose dead letter no queue takes
        (restspy.dead.b deleted by hand): the broker returns it, so the
        original is not acked; the replicator reconnects, declares the
        topology again, and the write is dead-lettered once, visibly. Before,
        the returned dead letter was confirmed like a delivered one and the
        write was lost."""
        app = self.fake_app(lambda method, path, body: (404, False))
        r = self.start_replicator(app.url)
        _broker.api_ok("DELETE", "/api/queues/%2F/restspy.dead.b")
        self.addCleanup(lambda: _broker.api_ok(
            "PUT", "/api/queues/%2F/restspy.dead.b",
            {"durable": True, "arguments": {"x-queue-type": "classic"}}))
        mid = publish("/gone/1/", "PUT", {"x": 1})
        self.assertTrue(wait_until(lambda: "returned by the broker" in r.stderr(), timeout=15),
                        r.stderr()[-3000:])

        def dead_once():
            try:
                return [m["properties"]["message_id"] for m in dead_letters()] == [mid]
            except Exception:
                return False
        self.assertTrue(wait_until(dead_once, timeout=20), r.stderr()[-3000:])
        self.assertEqual(_broker.depth("restspy.apply.b"), 0)
        figures("dead_queue_gone", 1, 1, 0, " dead_lettered=1")


class LedgerWindow(StuckCase):
    """The documented window: the app committed a write, the replicator was
    killed before its ledger row. The test holds the replicator's store
    locked so that its ledger commit cannot happen, waits for the app's
    effect, kills the replicator, releases the lock and starts it again:
    the broker redelivers the message, which the ledger does not know."""

    def lock_store(self, path):
        con = sqlite3.connect(path, timeout=10, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        return con

    def test_3_idempotency_key_replay_closes_the_window(self):
        """With sitemon, which answers a repeated Idempotency-Key with its
        first answer, the redelivery succeeds: one site row, one ledger
        row, and the writes behind it are applied."""
        app = App(self.tmp, name="sitemon").start()
        self.addCleanup(app.stop)
        r = self.start_replicator(app.url, "--busy-timeout", "100ms")
        lock = self.lock_store(r.db_path)
        site = {"slug": "window", "name": "W", "url": "https://w.example", "status": "up"}
        mid = publish("/api/sites/", body=site)

        def at_app():
            return app.request("GET", "/api/sites/window/").status == 200
        self.assertTrue(wait_until(at_app, timeout=15), r.stderr()[-3000:])
        time.sleep(0.3)
        r.kill()
        lock.execute("ROLLBACK")
        lock.close()
        self.assertNotIn(mid, r.ledger())
        r.start()
        later = publish("/api/sites/window/", "PATCH", {"status": "down"})
        self.assertTrue(wait_until(lambda: {mid, later} <= set(r.ledger()), timeout=20),
                        r.stderr()[-3000:])
        con = sqlite3.connect("file:%s?mode=ro" % app.db_path, uri=True, timeout=10)
        rows = con.execute("SELECT status FROM monitor_site WHERE slug = 'window'").fetchall()
        con.close()
        self.assertEqual([("down",)], rows)
        self.assertEqual([], dead_letters())
        figures("ledger-window-idempotent", 2, 2, len(rows) - 1)

    def test_4_duplicate_refused_by_the_app(self):
        """With an app that does not honour Idempotency-Key, the redelivery
        is refused as a duplicate: with 409 it is dead-lettered at once,
        with 500 (json-server) it is retried, listed as stuck, and
        dead-lettered when its budget is spent; a write to another
        resource is applied meanwhile. Neither is applied twice."""
        created = set()

        def decide(method, path, body):
            key = _body_id(body)
            if method == "POST" and key in created:
                return (409 if key == "t409" else 500), False
            created.add(key)
            return 201, True

        app = self.fake_app(decide, idempotent=False)
        r = self.start_replicator(app.url, "--busy-timeout", "100ms", "--concurrency", "2",
                                  "--retry-max-attempts", "4")
        lock = self.lock_store(r.db_path)
        m409 = publish("/things/", body={"id": "t409"})
        m500 = publish("/things/", body={"id": "t500"})
        self.assertTrue(wait_until(lambda: app.effect(m409) and app.effect(m500), timeout=15),
                        r.stderr()[-3000:])
        time.sleep(0.3)
        r.kill()
        lock.execute("ROLLBACK")
        lock.close()
        r.start()
        other = publish("/others/1/", "PUT", {"id": "o"})
        self.assertTrue(wait_until(lambda: app.effect(other) == 1, timeout=10))
        self.assertTrue(wait_until(lambda: _broker.depth(r.dead_queue) == 2, timeout=20),
                        r.stderr()[-3000:])
        reasons = {m["properties"]["message_id"]: m["properties"]["headers"]["x-restspy-reason"]
                   for m in dead_letters()}
        self.assertTrue(reasons[m409].startswith("upstream answered 409"), reasons)
        self.assertRegex(reasons[m500], r"^retry budget spent: 4 failed attempts")
        self.assertEqual((1, 1), (app.effect(m409), app.effect(m500)))
        figures("ledger-window-refused", 3, 3, 0, " dead_lettered=2 (the repeats, visibly)")


class Lag(StuckCase):

    def test_5_lag_is_sane_while_idle(self):
        """The lag figure is the delay from origin to apply of recent
        writes: small after a quick apply, and it stays so while nothing
        happens; the time since the last apply grows apart."""
        app = self.fake_app(lambda m, p, b: (201, True))
        r = self.start_replicator(app.url, "--concurrency", "2")
        ids = [publish("/l/%d/" % i, "PUT", {"i": i}) for i in range(5)]
        self.assertTrue(wait_until(lambda: set(ids) <= set(r.ledger()), timeout=15))
        first = r.status()
        self.assertEqual(first["lag"]["applies"], 5)
        self.assertLess(first["lag"]["p99_s"], 3.0)
        time.sleep(3)
        idle = r.status()
        self.assertEqual(idle["lag"], first["lag"])
        self.assertGreaterEqual(idle["last_applied_age_s"], 3)
        self.assertIn("apply lag            p50 ", r.status_text())
        sys.stdout.write("\n  lag: p50 %.3fs p99 %.3fs over %d applies; idle %.1fs later the "
                         "same, last applied %.1fs ago\n" %
                         (idle["lag"]["p50_s"], idle["lag"]["p99_s"], idle["lag"]["applies"],
                          idle["last_applied_age_s"] - first["last_applied_age_s"],
                          idle["last_applied_age_s"]))


class Credentials(StuckCase):

    def test_6_end_user_credentials_stay_at_their_site(self):
        """A client's Authorization, Cookie and X-Api-Key reach its own
        site's app but are not replicated: the peer's app gets the
        replicator's own credential (--set-header). Naming a drop list
        without authorization forwards it, by choice."""
        origin_app = self.fake_app(lambda m, p, b: (201, True))
        peer_app = self.fake_app(lambda m, p, b: (201, True))
        r = self.start_replicator(peer_app.url, "--set-header",
                                  "Authorization: Bearer site-b-service")
        # The peer's queue takes the origin's publishes (federation's part).
        _broker.api_ok("POST", "/api/bindings/%2F/e/restspy.requests/q/restspy.apply.b",
                       {"routing_key": "#"})
        self.addCleanup(_broker.api, "DELETE",
                        "/api/bindings/%2F/e/restspy.requests/q/restspy.apply.b/%23")

        def write(proxy, n):
            resp = proxy.request("POST", "/notes/", body={"n": n}, headers={
                "Authorization": "Bearer end-user", "Cookie": "session=s3cret",
                "X-Api-Key": "k3y", "X-Trace": "t%d" % n})
            self.assertEqual(201, resp.status)
            self.assertTrue(wait_until(lambda: len(peer_app.log) >= n, timeout=15),
                            "not replicated")
            return dict((k.lower(), v) for k, v in peer_app.log[n - 1][5])

        def start_proxy(*args):
            p = Proxy(self.tmp, origin_app.url, log=False, args=[
                "--amqp", _broker.amqp_url, "--replicate-requests", "on", "--node", "a"] +
                list(args)).start()
            self.addCleanup(p.stop)
            return p

        proxy = start_proxy()
        got = write(proxy, 1)
        self.assertEqual("Bearer end-user", dict(
            (k.lower(), v) for k, v in origin_app.log[0][5])["authorization"])
        self.assertEqual("Bearer site-b-service", got.get("authorization"))
        self.assertNotIn("cookie", got)
        self.assertNotIn("x-api-key", got)
        self.assertEqual("t1", got.get("x-trace"))
        proxy.stop()

        # Forwarding the end user's Authorization is a choice made at the
        # origin; the peer's replicator then must not replace it.
        r.check_stopped()
        self.replicator = None
        r = self.start_replicator(peer_app.url)
        proxy = start_proxy("--replicate-drop-headers", "cookie,x-api-key")
        got = write(proxy, 2)
        self.assertEqual("Bearer end-user", got.get("authorization"))
        self.assertNotIn("cookie", got)


if __name__ == "__main__":
    unittest.main()
