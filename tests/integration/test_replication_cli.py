"""`restspy replication status` and `restspy replication dead`.

status reads the replication figures from a store a proxy wrote (no broker:
amqp is off, so everything is zero), then from the same file with outbox,
ledger and counter rows added the way the proxy, the publisher and the
replicator write them. dead runs against a real RabbitMQ node (skipped when
rabbitmq-server is not installed): it lists dead letters without consuming
them, retries one by id and then all, and fails cleanly on unknown ids and
unreachable brokers."""
import json
import os
import sqlite3
import time
import unittest
import uuid

import harness
import rabbit
from harness import App, Proxy, run_cli


def uuid7_at(ms):
    """A UUIDv7 text whose timestamp is ms (Unix milliseconds)."""
    rand = uuid.uuid4().int & ((1 << 74) - 1)
    v = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=v))


def publish_dead(broker, node, mid, i, body):
    """Publishes a dead letter of node with id mid as the replicator does
    (a PUT to /api/sites/<i>/ from "peer" its upstream refused with 409);
    whether the broker routed it (test_console_dead uses it too)."""
    return broker.publish("restspy.dead", node, body, {
        "message_id": mid, "timestamp": int(time.time()), "delivery_mode": 2,
        "content_type": "application/json", "app_id": "restspy",
        "headers": {"x-restspy-origin": "peer", "x-restspy-method": "PUT",
                    "x-restspy-target": "/api/sites/%d/" % i,
                    "x-restspy-headers": '[["X-Trace","t%d"]]' % i,
                    "x-restspy-reason": "upstream answered 409: conflict %d" % i,
                    "x-restspy-dead-at": str(int(time.time()))}})


class ReplicationStatus(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.make_tmpdir("replstatus")
        cls.app = None
        cls.proxy = None
        try:
            cls.app = App(cls.tmp).start()
            cls.proxy = Proxy(cls.tmp, cls.app.url, log=False).start()
            for i in range(3):
                r = cls.proxy.request("POST", "/api/sites/", body=json.dumps(
                    {"name": "s%d" % i, "url": "http://s%d.test/" % i}).encode(),
                    headers={"Content-Type": "application/json"})
                assert r.status // 100 in (2, 4), r
            cls.proxy.request("GET", "/api/sites/")
            harness.wait_rows(cls.proxy.db_path, 4)
            cls.proxy.stop()
            cls.proxy.check_stopped()
        except Exception:
            if cls.proxy is not None and cls.proxy.running:
                cls.proxy.stop()
            if cls.app is not None:
                cls.app.stop()
            harness.remove_tmpdir(cls.tmp)
            raise
        cls.store = "sqlite:" + cls.proxy.db_path

    @classmethod
    def tearDownClass(cls):
        if cls.app is not None:
            cls.app.stop()
        harness.remove_tmpdir(cls.tmp)

    def status(self, *args):
        return run_cli(["replication", "status", "--store", self.store] + list(args))

    def clear(self, *tables):
        """Empties tables of the shared store file (a test's own rows)."""
        db = sqlite3.connect(self.proxy.db_path)
        with db:
            for t in tables:
                db.execute("DELETE FROM " + t)
        db.close()

    def test_1_zeros_without_broker(self):
        p = self.status("--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")
        doc = json.loads(p.stdout)
        self.assertEqual(doc, {
            "outbox_depth": 0, "oldest_unpublished_us": None, "oldest_unpublished_age_s": None,
            "last_confirmed_us": None, "last_confirmed_id": None, "published": 0,
            "not_replicated": 0, "applied": 0, "deduplicated": 0, "dead_lettered": 0, "diverged": 0,
            "last_applied_us": None, "last_applied_age_s": None, "last_applied_msg_us": None,
            "skipped": 0,
            "lag": {"window_s": 300.0, "applies": 0, "p50_s": None, "p99_s": None, "max_s": None},
            "retry_max_age_s": None, "retry_max_attempts": None, "stuck_total": 0, "stuck": [],
            "origins_total": 0, "origins": []})
        self.assertEqual(len(p.stdout.strip().splitlines()), 1)

        p = self.status()
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = dict(line.split(None, 1) if "  " not in line else
                     [s.strip() for s in line.split("  ", 1)] for line in p.stdout.splitlines())
        self.assertEqual(lines["outbox depth"], "0")
        self.assertEqual(lines["last confirmed"], "never")
        self.assertEqual(lines["applied"], "0")
        self.assertEqual(lines["dead-lettered"], "0")
        self.assertEqual(lines["apply lag"], "- (nothing applied in the last 5m00s)")
        self.assertEqual(lines["last applied"], "never")
        self.assertEqual(lines["stuck"], "0")

    def test_2_figures(self):
        """The figures as the writers leave them in the shared file."""
        now_us = int(time.time() * 1e6)
        confirmed_id = uuid7_at(now_us // 1000 - 9000)
        applied_id = uuid7_at(now_us // 1000 - 4000)
        db = sqlite3.connect(self.proxy.db_path)
        with db:
            for i in range(2):
                db.execute("INSERT INTO outbox (message_id, created_at, timestamp, origin, method, "
                           "target, headers, routing_key, body) VALUES (?,?,?,?,?,?,?,?,?)",
                           (uuid7_at(now_us // 1000), now_us - (30 - i) * 1000000,
                            now_us // 1000000, "test", "POST", "/api/sites/", "[]",
                            "test.POST.api.sites", b""))
            db.execute("INSERT INTO applied VALUES (?, 'peer', ?, 201, NULL, NULL)",
                       (applied_id, now_us - 2000000))
            db.execute("INSERT INTO applied VALUES (?, 'peer', ?, 201, NULL, NULL)",
                       (uuid7_at(now_us // 1000 - 60000), now_us - 50000000))
            db.execute("INSERT INTO applied VALUES (?, 'far', ?, 201, NULL, NULL)",
                       (uuid7_at(now_us // 1000 - 3601000), now_us - 3600000000))
            db.execute("INSERT INTO applied VALUES (?, 'far', ?, NULL, 'skipped', NULL)",
                       (uuid7_at(now_us // 1000 - 1000), now_us - 1000000))
            db.executemany("INSERT INTO counters VALUES (?, ?)", [
                ("published", 17), ("not_replicated", 2), ("deduplicated", 5),
                ("dead_lettered", 1), ("last_confirmed_us", now_us - 3000000),
                ("last_confirmed_id", confirmed_id)])
        db.close()
        try:
            p = self.status("--json")
            self.assertEqual(p.returncode, 0, p.stderr)
            doc = json.loads(p.stdout)
            self.assertEqual(doc["outbox_depth"], 2)
            self.assertEqual(doc["oldest_unpublished_us"], now_us - 30000000)
            self.assertAlmostEqual(doc["oldest_unpublished_age_s"], 30, delta=5)
            self.assertEqual(doc["last_confirmed_us"], now_us - 3000000)
            self.assertEqual(doc["last_confirmed_id"], confirmed_id)
            self.assertEqual(doc["published"], 17)
            self.assertEqual(doc["not_replicated"], 2)
            self.assertEqual(doc["applied"], 3)
            self.assertEqual(doc["deduplicated"], 5)
            self.assertEqual(doc["dead_lettered"], 1)
            self.assertEqual(doc["last_applied_us"], now_us - 2000000)
            self.assertEqual(doc["last_applied_msg_us"], (now_us // 1000 - 4000) * 1000)
            self.assertAlmostEqual(doc["last_applied_age_s"], 2, delta=2)
            # The lag of the applies of the last 5 minutes only: 2 s (the
            # row applied 50 s ago is outside a 30 s window).
            self.assertEqual(doc["lag"]["applies"], 2)
            self.assertAlmostEqual(doc["lag"]["p50_s"], 2, delta=0.01)
            self.assertAlmostEqual(doc["lag"]["max_s"], 10, delta=0.01)
            # The same per origin node: peer's two applies, far's one an
            # hour ago (outside the window; its skip is not an apply).
            self.assertEqual(doc["origins_total"], 2)
            far, peer = doc["origins"]
            # The ids carry milliseconds, now_us microseconds: a lag is its
            # whole seconds plus up to 0.999 ms.
            lags = {o: doc_o.pop("lag") for o, doc_o in (("peer", peer), ("far", far))}
            self.assertEqual(peer, {"origin": "peer", "applied": 2,
                                    "last_applied_us": now_us - 2000000})
            self.assertEqual(lags["peer"]["applies"], 2)
            for k, v in (("now_s", 2), ("p50_s", 2), ("p99_s", 10), ("max_s", 10)):
                self.assertAlmostEqual(lags["peer"][k], v, delta=0.002, msg=k)
            self.assertEqual(far, {"origin": "far", "applied": 1,
                                   "last_applied_us": now_us - 3600000000})
            self.assertEqual(lags["far"]["applies"], 0)
            self.assertAlmostEqual(lags["far"]["now_s"], 1, delta=0.002)
            for k in ("p50_s", "p99_s", "max_s"):
                self.assertIsNone(lags["far"][k], k)
            p = self.status("--json", "--window", "30s")
            self.assertEqual(p.returncode, 0, p.stderr)
            lag = json.loads(p.stdout)["lag"]
            self.assertEqual((lag["window_s"], lag["applies"]), (30.0, 1))
            self.assertAlmostEqual(lag["p99_s"], 2, delta=0.01)

            p = self.status()
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("outbox depth         2\n", p.stdout)
            self.assertIn("published            17\n", p.stdout)
            self.assertIn("id " + confirmed_id, p.stdout)
            self.assertIn("deduplicated         5\n", p.stdout)
            self.assertIn("apply lag            p50 2.0s, p99 10.0s, max 10.0s (2 applies in "
                          "the last 5m00s)\n", p.stdout)
            self.assertIn("last applied         ", p.stdout)
            self.assertRegex(p.stdout, r"\norigin far +applied 1, last .* \(1h00m ago\), lag now "
                                       r"1\.0s \(nothing applied in the last 5m00s\)\n")
            self.assertRegex(p.stdout, r"\norigin peer +applied 2, last .*, lag now 2\.0s, p50 "
                                       r"2\.0s, p99 10\.0s, max 10\.0s \(2 applies in the last "
                                       r"5m00s\)\n")
        finally:
            self.clear("outbox", "applied", "counters")

    def test_4_lag_is_not_idle_time(self):
        """The lag says how long writes took to get here, not how long ago
        the last one came: an apply 1 s after its origin, an hour ago, is
        outside the window (no lag figure) and the last apply is an hour
        old; it used to show as an hour of lag (issue 10, section 3)."""
        now_us = int(time.time() * 1e6)
        hour_ago = now_us - 3600 * 1000000
        db = sqlite3.connect(self.proxy.db_path)
        with db:
            db.execute("INSERT INTO applied VALUES (?, 'peer', ?, 201, NULL, NULL)",
                       (uuid7_at(hour_ago // 1000 - 1000), hour_ago))
        db.close()
        try:
            doc = json.loads(self.status("--json").stdout)
            self.assertEqual(doc["lag"]["applies"], 0)
            self.assertIsNone(doc["lag"]["p99_s"])
            self.assertAlmostEqual(doc["last_applied_age_s"], 3600, delta=5)
            doc = json.loads(self.status("--json", "--window", "2h").stdout)
            self.assertEqual(doc["lag"]["applies"], 1)
            self.assertAlmostEqual(doc["lag"]["p50_s"], 1, delta=0.01)
            text = self.status().stdout
            self.assertIn("apply lag            - (nothing applied in the last 5m00s)\n", text)
            self.assertIn("(1h00m ago)", text)
        finally:
            self.clear("applied")

    def test_5_stuck_writes(self):
        """The writes the replicator keeps failing to apply, as it notes
        them, with the budget it announced; a skipped one is not applied
        and not listed."""
        now_us = int(time.time() * 1e6)
        old = uuid7_at(now_us // 1000 - 90000)
        fresh = uuid7_at(now_us // 1000 - 5000)
        down = uuid7_at(now_us // 1000 - 2000)
        done = uuid7_at(now_us // 1000 - 1000)
        db = sqlite3.connect(self.proxy.db_path)
        with db:
            rows = [(old, "POST", "/api/sites/", now_us - 80000000, 12,
                     "upstream answered 500: {\"detail\":\"dup\"}\x1b[31m"),
                    (fresh, "PATCH", "/api/sites/x/", now_us - 4000000, 2, "timeout"),
                    (down, "PUT", "/api/sites/y/", 0, 0, "connect: Connection refused"),
                    (done, "PUT", "/api/sites/z/", now_us - 1000000, 1, "upstream answered 503")]
            for mid, method, target, first, attempts, answer in rows:
                db.execute("INSERT INTO stuck VALUES (?, 'peer', ?, ?, ?, ?, ?, ?)",
                           (mid, method, target, first, now_us - 500000, attempts, answer))
            db.execute("INSERT INTO applied VALUES (?, 'peer', ?, NULL, 'skipped', NULL)",
                       (done, now_us))
            db.executemany("INSERT INTO counters VALUES (?, ?)",
                           [("retry_max_age_ms", 3600000), ("retry_max_attempts", 50)])
        db.close()
        try:
            p = self.status("--json")
            self.assertEqual(p.returncode, 0, p.stderr)
            doc = json.loads(p.stdout)
            self.assertEqual(doc["stuck_total"], 3)
            self.assertEqual(doc["skipped"], 1)
            self.assertEqual(doc["applied"], 0)
            self.assertEqual(doc["retry_max_age_s"], 3600)
            self.assertEqual(doc["retry_max_attempts"], 50)
            self.assertEqual([s["id"] for s in doc["stuck"]], [old, fresh, down])
            first = doc["stuck"][0]
            self.assertEqual((first["origin"], first["method"], first["target"],
                              first["attempts"]), ("peer", "POST", "/api/sites/", 12))
            self.assertAlmostEqual(first["age_s"], 90, delta=3)
            self.assertEqual(first["first_failed_us"], now_us - 80000000)
            self.assertTrue(first["last_answer"].startswith("upstream answered 500"))
            self.assertIsNone(doc["stuck"][2]["first_failed_us"])

            p = self.status()
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("stuck                3 (retry budget: 1h00m or 50 failed attempts, "
                          "then dead-lettered)\n", p.stdout)
            self.assertIn("skipped              1\n", p.stdout)
            line = next(l for l in p.stdout.splitlines() if old in l)
            self.assertIn("POST", line)
            # its age and how long it has been failing, to the second as the
            # status command read them (within 3 s, as the JSON check: the
            # command may start seconds after the rows were written)
            self.assertRegex(line, r"\b1m3[0-3]s\b")
            self.assertRegex(line, r"\b1m2[0-3]s\b")
            self.assertIn(" 12 ", line)
            self.assertIn("upstream answered 500", line)
            self.assertNotIn("\x1b", p.stdout)  # the app's bytes cannot drive the terminal
            self.assertNotIn(done, p.stdout)
        finally:
            self.clear("stuck", "applied", "counters")

    def test_3_errors(self):
        p = run_cli(["replication", "status", "--store",
                     "sqlite:" + os.path.join(self.tmp, "missing.db")])
        self.assertEqual(p.returncode, 1)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("no store at", p.stderr)
        p = self.status("--bogus")
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown option --bogus", p.stderr)
        p = run_cli(["replication", "status", "--store"])
        self.assertEqual(p.returncode, 2)
        self.assertIn("--store needs a value", p.stderr)
        p = run_cli(["replication", "status", "--store", "off"])
        self.assertEqual(p.returncode, 1)
        p = run_cli(["replication"])
        self.assertEqual(p.returncode, 2)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        p = run_cli(["replication", "nope"])
        self.assertEqual(p.returncode, 2)
        for args in (["replication", "--help"], ["replication", "status", "--help"],
                     ["replication", "dead", "--help"]):
            p = run_cli(args)
            self.assertEqual(p.returncode, 0, args)
            self.assertIn("usage: restspy replication", p.stdout)
        # --mgmt (what the broker holds for each peer): a bad URL is a usage
        # error, a broker that does not answer a failure, one line each.
        p = self.status("--mgmt", "ftp://x")
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("bad value for --mgmt", p.stderr)
        p = self.status("--mgmt", "http://guest:guest@127.0.0.1:%d" % harness.free_port())
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("refused", p.stderr)
        self.assertNotIn("guest:guest", p.stderr)
        p = self.status("--mgmt", "http://h:1", "--vhost", "")
        self.assertEqual(p.returncode, 2, p.stderr)
        p = run_cli(["replication", "dead"], env={"RESTSPY_AMQP": ""})
        self.assertEqual(p.returncode, 2)
        self.assertIn("--amqp", p.stderr)
        p = run_cli(["replication", "dead", "--retry", "x", "--all", "--amqp", "amqp://h/"])
        self.assertEqual(p.returncode, 2)
        p = run_cli(["replication", "dead", "--skip", "x", "--show", "y", "--amqp", "amqp://h/"])
        self.assertEqual(p.returncode, 2)
        self.assertIn("exclude each other", p.stderr)
        p = run_cli(["replication", "dead", "--skip", "", "--amqp", "amqp://h/"])
        self.assertEqual(p.returncode, 2)
        self.assertIn("bad value for --skip: empty", p.stderr)
        p = self.status("--window", "soon")
        self.assertEqual(p.returncode, 2)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("bad value for --window", p.stderr)


class ReplicationDead(unittest.TestCase):
    NODE = "clitest"

    @classmethod
    def setUpClass(cls):
        rabbit.require()  # fails under CI, skips elsewhere
        cls.broker = rabbit.start_brokers(["D"])[0]
        try:
            cls.declare()
        except Exception:
            rabbit.stop_brokers([cls.broker])
            raise

    @classmethod
    def tearDownClass(cls):
        rabbit.stop_brokers([cls.broker])

    @classmethod
    def declare(cls):
        """The topology exactly as mq_declare_topology declares it."""
        b = cls.broker
        for ex in ("restspy.requests", "restspy.inbound", "restspy.dead"):
            b.api_ok("PUT", "/api/exchanges/%2F/" + ex, {"type": "topic", "durable": True})
        b.api_ok("PUT", "/api/queues/%2F/restspy.apply." + cls.NODE, {
            "durable": True, "arguments": {"x-queue-type": "classic",
                                           "x-dead-letter-exchange": "restspy.dead",
                                           "x-dead-letter-routing-key": cls.NODE}})
        b.api_ok("PUT", "/api/queues/%2F/restspy.dead." + cls.NODE, {
            "durable": True, "arguments": {"x-queue-type": "classic"}})
        b.api_ok("POST", "/api/bindings/%2F/e/restspy.inbound/q/restspy.apply." + cls.NODE,
                 {"routing_key": "#"})
        b.api_ok("POST", "/api/bindings/%2F/e/restspy.dead/q/restspy.dead." + cls.NODE,
                 {"routing_key": cls.NODE})

    def setUp(self):
        self.dead_q = "restspy.dead." + self.NODE
        self.apply_q = "restspy.apply." + self.NODE
        self.broker.purge(self.dead_q)
        self.broker.purge(self.apply_q)
        self.ids = []
        for i in range(3):
            mid = uuid7_at(int(time.time() * 1000) + i)
            self.ids.append(mid)
            self.assertTrue(publish_dead(self.broker, self.NODE, mid, i, '{"n":%d}' % i))

    def dead(self, *args):
        return run_cli(["replication", "dead", "--amqp", self.broker.amqp_url,
                        "--node", self.NODE] + list(args), timeout=60)

    def test_list_keeps_messages(self):
        p = self.dead("--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        docs = [json.loads(line) for line in p.stdout.splitlines()]
        self.assertEqual([d["id"] for d in docs], self.ids)
        self.assertEqual(docs[1]["origin"], "peer")
        self.assertEqual(docs[1]["method"], "PUT")
        self.assertEqual(docs[1]["target"], "/api/sites/1/")
        self.assertEqual(docs[1]["reason"], "upstream answered 409: conflict 1")
        self.assertFalse(docs[1]["retried"])
        self.assertEqual(self.broker.depth(self.dead_q), 3)
        p = self.dead()
        self.assertEqual(p.returncode, 0, p.stderr)
        for mid in self.ids:
            self.assertIn(mid, p.stdout)
        self.assertIn("conflict 2", p.stdout)
        self.assertEqual(self.broker.depth(self.dead_q), 3)
        self.assertEqual(self.broker.depth(self.apply_q), 0)

    def test_retry_one_then_all(self):
        p = self.dead("--retry", self.ids[1][:13])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("retried " + self.ids[1], p.stderr)
        self.assertEqual(self.broker.depth(self.dead_q), 2)
        self.assertEqual(self.broker.depth(self.apply_q), 1)
        msgs = self.broker.get(self.apply_q)
        self.assertEqual(len(msgs), 1)
        props = msgs[0]["properties"]
        self.assertEqual(props["message_id"], self.ids[1])
        self.assertEqual(props["headers"]["x-restspy-target"], "/api/sites/1/")
        self.assertNotIn("x-restspy-reason", props["headers"])
        self.assertEqual(msgs[0]["payload"], '{"n":1}')

        p = self.dead("--retry", str(uuid.uuid4()))
        self.assertEqual(p.returncode, 1)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("no dead letter with id", p.stderr)
        self.assertEqual(self.broker.depth(self.dead_q), 2)

        p = self.dead("--all", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        docs = [json.loads(line) for line in p.stdout.splitlines()]
        self.assertEqual([d["id"] for d in docs], [self.ids[0], self.ids[2]])
        self.assertTrue(all(d["retried"] for d in docs))
        self.assertEqual(self.broker.depth(self.dead_q), 0)
        self.assertEqual(self.broker.depth(self.apply_q), 3)

    def test_retry_declares_a_missing_apply_queue(self):
        """--retry while restspy.apply.<node> is gone (deleted by hand):
        the command declares the topology before it republishes, so the
        message lands in a queue instead of being confirmed into nowhere
        (the republish is mandatory too: a queue deleted in between makes
        the broker return it, and it stays dead-lettered)."""
        self.broker.api_ok("DELETE", "/api/queues/%2F/" + self.apply_q)
        self.addCleanup(self.declare)
        p = self.dead("--retry", self.ids[0])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.broker.depth(self.dead_q), 2)
        self.assertEqual(self.broker.depth(self.apply_q), 1)

    def test_show_one(self):
        """--show prints one dead letter whole (headers, body, reason) and
        leaves it, and every other, in the dead queue."""
        p = self.dead("--show", self.ids[2][:30])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("id            " + self.ids[2] + "\n", p.stdout)
        self.assertIn("request       PUT /api/sites/2/\n", p.stdout)
        self.assertIn("reason        upstream answered 409: conflict 2\n", p.stdout)
        self.assertIn("  X-Trace: t2\n", p.stdout)
        self.assertIn("body          7 bytes\n{\"n\":2}\n", p.stdout)
        self.assertNotIn(self.ids[1], p.stdout)
        p = self.dead("--show", self.ids[0], "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        doc = json.loads(p.stdout)
        self.assertEqual(doc["id"], self.ids[0])
        self.assertEqual(doc["headers"], [["X-Trace", "t0"]])
        self.assertEqual(doc["body"], '{"n":0}')
        self.assertEqual(doc["content_type"], "application/json")
        self.assertFalse(doc["signed"])
        self.assertEqual(self.broker.depth(self.dead_q), 3)
        p = self.dead("--show", str(uuid.uuid4()))
        self.assertEqual(p.returncode, 1)
        self.assertIn("no dead letter with id", p.stderr)

    def test_skip(self):
        """--skip records the message in the store's ledger as skipped,
        then takes it out of the dead queue (the others stay); a skipped
        message is never applied. It also takes a write the replicator is
        still retrying (a stuck row), which is then in the ledger for the
        replicator's next attempt."""
        tmp = harness.make_tmpdir("deadskip")
        self.addCleanup(harness.remove_tmpdir, tmp)
        db_path = os.path.join(tmp, "r.db")
        store = "sqlite:" + db_path
        p = self.dead("--skip", self.ids[1], "--store", store)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("skipped %s: recorded in the ledger as skipped" % self.ids[1], p.stderr)
        self.assertEqual(self.broker.depth(self.dead_q), 2)
        self.assertEqual(self.broker.depth(self.apply_q), 0)
        db = sqlite3.connect(db_path)
        self.assertEqual(db.execute("SELECT message_id, origin, state FROM applied").fetchall(),
                         [(self.ids[1], "peer", "skipped")])
        db.close()
        listing = self.dead("--json")
        self.assertEqual([json.loads(l)["id"] for l in listing.stdout.splitlines()],
                         [self.ids[0], self.ids[2]])

        # A write still being retried: skipped through its stuck row.
        stuck = uuid7_at(int(time.time() * 1000))
        db = sqlite3.connect(db_path)
        with db:
            db.execute("INSERT INTO stuck VALUES (?, 'peer', 'POST', '/x/', 1, 2, 3, 'timeout')",
                       (stuck,))
        db.close()
        p = self.dead("--skip", stuck[:30], "--store", store)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("skipped %s" % stuck, p.stderr)
        self.assertIn("drops it at its next attempt", p.stderr)
        p = run_cli(["replication", "status", "--store", store, "--json"])
        doc = json.loads(p.stdout)
        self.assertEqual((doc["skipped"], doc["stuck_total"]), (2, 0))
        self.assertEqual(self.broker.depth(self.dead_q), 2)

        p = self.dead("--skip", str(uuid.uuid4()), "--store", store)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("no dead letter in restspy.dead.%s and no stuck write" % self.NODE,
                      p.stderr)
        p = self.dead("--skip", self.ids[0], "--store", "off")
        self.assertEqual(p.returncode, 1)
        self.assertIn("--skip needs the replicator's store", p.stderr)
        self.assertEqual(self.broker.depth(self.dead_q), 2)

    def test_unreachable_broker(self):
        p = run_cli(["replication", "dead", "--amqp",
                     "amqp://guest:guest@127.0.0.1:%d/" % harness.free_port(), "--node",
                     self.NODE])
        self.assertEqual(p.returncode, 1)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)


if __name__ == "__main__":
    unittest.main()
