"""The console's dead letters on the admin API (issue 13: "dead letters with
their reason, and retry or discard for each (the same operations as the
CLI)"): GET /api/dead, GET /api/dead/ID, POST /api/dead/ID/retry and
POST /api/dead/ID/skip against a real RabbitMQ node, with the dead letters
published into restspy.dead.<node> the way test_replication_cli does (as a
replicator dead-letters a write its upstream refused).

The broker work is blocking: the admin runs it on libuv's thread pool. A
broker that accepts the connection and never speaks AMQP holds a request
for the whole handshake timeout (5 s), and /healthz answers meanwhile; a
third request while two hold the pool's share gets 503; stopping the proxy
while one runs is clean (no sanitizer report)."""
import os
import socket
import sqlite3
import threading
import time
import unittest
import uuid

import harness
import rabbit
from harness import Proxy
from test_replication_cli import publish_dead, uuid7_at

NODE = "test"  # the harness's --node
DEAD_Q = "restspy.dead." + NODE
APPLY_Q = "restspy.apply." + NODE


def nowhere():
    """An upstream nobody listens on: these proxies forward nothing."""
    return "http://127.0.0.1:%d" % harness.free_port()


class ConsoleDead(unittest.TestCase):
    TOKEN = "dead-token"

    @classmethod
    def setUpClass(cls):
        rabbit.require()  # fails under CI, skips elsewhere
        cls.broker = rabbit.start_brokers(["C"])[0]
        cls.tmp = harness.make_tmpdir("consoledead")
        cls.proxy = None
        try:
            cls.proxy = Proxy(cls.tmp, nowhere(), args=["--amqp", cls.broker.amqp_url],
                              admin_token=cls.TOKEN).start()
            # The proxy's publisher declares the topology when it connects.
            ok = harness.wait_until(lambda: DEAD_Q in cls.broker.queues() and
                                    APPLY_Q in cls.broker.queues(), timeout=20)
            assert ok, "the proxy did not declare %s: %s" % (DEAD_Q, cls.proxy.stderr())
        except BaseException:
            if cls.proxy is not None and cls.proxy.running:
                cls.proxy.stop()
            rabbit.stop_brokers([cls.broker])
            harness.remove_tmpdir(cls.tmp)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.proxy.check_stopped()
        finally:
            rabbit.stop_brokers([cls.broker])
            harness.remove_tmpdir(cls.tmp)

    def setUp(self):
        self.broker.purge(DEAD_Q)
        self.broker.purge(APPLY_Q)
        self.base_ms = int(time.time() * 1000)
        self.ids = []
        for i in range(3):
            self.ids.append(self.publish_dead(i, '{"n":%d}' % i))

    def publish_dead(self, i, body):
        """A dead letter as the replicator publishes it; its id. The ids of
        one test share their first 15 characters (the same millisecond),
        and differ in their random part."""
        mid = uuid7_at(self.base_ms)
        self.assertTrue(publish_dead(self.broker, NODE, mid, i, body))
        return mid

    def api(self, method, path, **kw):
        return self.proxy.admin(method, path, timeout=30, **kw)

    def test_list_and_show(self):
        r = self.api("GET", "/api/dead")
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual(doc["queue"], DEAD_Q)
        self.assertEqual([d["id"] for d in doc["dead"]], self.ids)
        d = doc["dead"][1]
        self.assertEqual((d["origin"], d["method"], d["target"], d["reason"], d["body_size"]),
                         ("peer", "PUT", "/api/sites/1/", "upstream answered 409: conflict 1", 7))
        self.assertIsInstance(d["timestamp"], int)
        self.assertEqual(self.broker.depth(DEAD_Q), 3)  # listing takes nothing away

        r = self.api("GET", "/api/dead/" + self.ids[2][:30])
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual(doc["id"], self.ids[2])
        self.assertEqual(doc["headers"], [["X-Trace", "t2"]])
        self.assertEqual((doc["body"], doc["body_size"], doc["body_truncated"]),
                         ('{"n":2}', 7, False))
        self.assertEqual(doc["content_type"], "application/json")

        # A body past 64 KiB is cut as `replication dead --show` cuts it.
        big = self.publish_dead(3, "x" * 70000)
        doc = self.api("GET", "/api/dead/" + big).json()
        self.assertEqual((len(doc["body"]), doc["body_size"], doc["body_truncated"]),
                         (65536, 70000, True))
        self.assertEqual(self.broker.depth(DEAD_Q), 4)

    def test_retry_one(self):
        r = self.api("POST", "/api/dead/%s/retry" % self.ids[1][:30])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"retried": self.ids[1]})
        self.assertEqual(self.broker.depth(DEAD_Q), 2)
        msgs = self.broker.get(APPLY_Q)
        self.assertEqual([m["properties"]["message_id"] for m in msgs], [self.ids[1]])
        self.assertEqual(msgs[0]["payload"], '{"n":1}')
        self.assertNotIn("x-restspy-reason", msgs[0]["properties"]["headers"])
        listed = [d["id"] for d in self.api("GET", "/api/dead").json()["dead"]]
        self.assertEqual(listed, [self.ids[0], self.ids[2]])
        self.assertTrue(harness.wait_until(lambda: "dead letter %s retried by 127.0.0.1"
                                           % self.ids[1] in self.proxy.stderr()),
                        self.proxy.stderr()[-2000:])

    def test_skip_one(self):
        r = self.api("POST", "/api/dead/%s/skip" % self.ids[2])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"skipped": self.ids[2], "stuck": False})
        self.assertEqual(self.broker.depth(DEAD_Q), 2)
        self.assertEqual(self.broker.depth(APPLY_Q), 0)
        db = sqlite3.connect(self.proxy.db_path)
        try:
            rows = db.execute("SELECT message_id, origin, state FROM applied WHERE "
                              "message_id = ?", (self.ids[2],)).fetchall()
        finally:
            db.close()
        self.assertEqual(rows, [(self.ids[2], "peer", "skipped")])
        self.assertTrue(harness.wait_until(lambda: "dead letter %s skipped by 127.0.0.1"
                                           % self.ids[2] in self.proxy.stderr()),
                        self.proxy.stderr()[-2000:])

    def test_skip_when_the_store_cannot_be_opened(self):
        """The ledger a skip writes to cannot be opened (the store file
        replaced by a directory under a running proxy): 503 saying why, the
        server's trouble as for a read the store fails, and the dead letter
        stays in its queue."""
        d = os.path.join(self.tmp, "unopenable")
        os.mkdir(d)
        p = Proxy(d, nowhere(), args=["--amqp", self.broker.amqp_url],
                  admin_token=self.TOKEN).start()
        try:
            os.rename(p.db_path, p.db_path + ".moved")
            os.mkdir(p.db_path)
            r = p.admin("POST", "/api/dead/%s/skip" % self.ids[2], timeout=30)
            self.assertEqual(r.status, 503, r)
            self.assertIn("unable to open", r.json()["error"])
            self.assertEqual(self.broker.depth(DEAD_Q), 3)
        finally:
            p.stop()

    def test_errors_leave_the_queue_alone(self):
        cases = [
            ("GET", "/api/dead/" + str(uuid.uuid4()), 404, "no dead letter with id"),
            ("POST", "/api/dead/%s/retry" % uuid.uuid4(), 404, "no dead letter with id"),
            ("POST", "/api/dead/%s/skip" % uuid.uuid4(), 404, "and no stuck write with id"),
            # the ids of setUp share their first 15 characters
            ("POST", "/api/dead/%s/retry" % self.ids[0][:10], 400, "is ambiguous"),
            ("GET", "/api/dead/%s" % self.ids[0][:8], 400, "is ambiguous"),
            ("POST", "/api/dead/%s/retry" % self.ids[0][:6], 404, "8 characters or more"),
            ("POST", "/api/dead/%s/frob" % self.ids[0], 404, "no such endpoint"),
            ("GET", "/api/dead/%s/retry" % self.ids[0], 404, "no such endpoint"),
            ("PUT", "/api/dead/%s/retry" % self.ids[0], 405, "POST to ID/retry or ID/skip"),
        ]
        for method, path, status, text in cases:
            r = self.api(method, path)
            self.assertEqual(r.status, status, (method, path, r))
            self.assertIn(text, r.json()["error"], (method, path))
        r = self.api("POST", "/api/dead/%s/retry" % self.ids[0], auth=False)
        self.assertEqual(r.status, 401, r)
        r = self.api("GET", "/api/dead", auth=False)
        self.assertEqual(r.status, 401, r)
        for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            for action in ("retry", "skip"):
                r = self.api("POST", "/api/dead/%s/%s" % (self.ids[0], action), headers=headers)
                self.assertEqual(r.status, 403, (headers, r))
                self.assertIn("cross-site request refused", r.json()["error"])
        self.assertEqual(self.broker.depth(DEAD_Q), 3)
        self.assertEqual(self.broker.depth(APPLY_Q), 0)


class ConsoleDeadReplicationOff(harness.ProxyTestCase):
    """No amqp: nothing to ask a broker about."""

    def test_409(self):
        for method, path in (("GET", "/api/dead"), ("GET", "/api/dead/0190a0b0-1234"),
                             ("POST", "/api/dead/0190a0b0-1234/retry"),
                             ("POST", "/api/dead/0190a0b0-1234/skip")):
            r = self.proxy.admin(method, path)
            self.assertEqual(r.status, 409, (path, r))
            self.assertIn("replication is off", r.json()["error"])


class ConsoleDeadSlowBroker(unittest.TestCase):
    """amqp names a port that accepts connections and never speaks AMQP:
    each dead-letter request waits for the handshake timeout, on the
    thread pool, while the admin's loop goes on."""

    @classmethod
    def setUpClass(cls):
        cls.hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        cls.hole.bind(("127.0.0.1", 0))
        cls.hole.listen(64)
        cls.held = []
        cls.stopping = False
        cls.acceptor = threading.Thread(target=cls.accept_forever, daemon=True)
        cls.acceptor.start()
        cls.tmp = harness.make_tmpdir("consoledeadslow")
        url = "amqp://guest:guest@127.0.0.1:%d/" % cls.hole.getsockname()[1]
        try:
            cls.proxy = Proxy(cls.tmp, nowhere(), args=["--amqp", url]).start()
        except BaseException:
            cls.close_hole()
            harness.remove_tmpdir(cls.tmp)
            raise

    @classmethod
    def accept_forever(cls):
        while not cls.stopping:
            try:
                conn, _ = cls.hole.accept()
            except OSError:
                return
            cls.held.append(conn)  # never answered

    @classmethod
    def close_hole(cls):
        cls.stopping = True
        cls.hole.close()
        for c in cls.held:
            c.close()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.proxy.check_stopped()
        finally:
            cls.close_hole()
            harness.remove_tmpdir(cls.tmp)

    def test_loop_not_blocked(self):
        answers = {}

        def ask(name, method, path):
            t0 = time.monotonic()
            try:
                r = self.proxy.admin(method, path, timeout=30)
                answers[name] = (r, time.monotonic() - t0)
            except OSError as e:  # the proxy stopped under it
                answers[name] = (e, time.monotonic() - t0)

        mid = str(uuid.uuid4())
        first = threading.Thread(target=ask, args=("first", "POST", "/api/dead/%s/retry" % mid))
        first.start()
        time.sleep(0.3)
        second = threading.Thread(target=ask, args=("second", "GET", "/api/dead"))
        second.start()
        time.sleep(0.3)
        # Both hold the thread pool's share: the loop still answers at once.
        for _ in range(3):
            t0 = time.monotonic()
            r = self.proxy.admin("GET", "/healthz", timeout=5)
            self.assertEqual(r.status, 200, r)
            self.assertLess(time.monotonic() - t0, 1.0)
        self.assertTrue(first.is_alive())
        r = self.proxy.admin("GET", "/api/dead", timeout=5)
        self.assertEqual(r.status, 503, r)
        self.assertIn("busy", r.json()["error"])
        self.assertEqual(r.header("Retry-After"), "1")

        first.join(20)
        r, took = answers["first"]
        self.assertEqual(r.status, 502, r)
        self.assertGreater(took, 3.0)  # the handshake timeout, not a refusal
        self.assertIn("AMQP", r.json()["error"])
        # The second waits its turn (one dead-letter operation at a time)
        # and is still on the pool: the proxy stops cleanly under it.
        self.assertTrue(second.is_alive())
        self.proxy.check_stopped(self)
        second.join(20)
        self.assertFalse(second.is_alive())
