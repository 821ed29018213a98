"""restspy collect (issue 15): the daemon that takes finished request/response
pairs on a Unix socket (docs/collect-protocol.md) and runs them through the
proxy's capture pipeline. A real daemon (the ASan build under `make test`),
driven by tests/integration/collectclient.py; what it stored is read from its
SQLite store, its log and `restspy requests`.
"""
import json
import os
import signal
import socket
import stat
import struct
import time
import unittest
import uuid

import harness
import rabbit
from collectclient import (ERROR, FLAG_ACK, FLUSH, HELLO, PAIR, CollectClient, frame,
                           pair_body)
from harness import Proxy, restspy_bin, run_cli, wait_rows, wait_until

CONFIG = """
[rule "declared"]
log = off
persist = on
replicate = off
"""


class Collect(Proxy):
    """A `restspy collect` process: the harness's process handling (start,
    stop, stderr, admin API, store rows, log lines), with a socket in place
    of the proxy's listener. The socket is tmpdir/<name>.sock."""

    def __init__(self, tmpdir, args=(), config=None, name="collect", **kw):
        super().__init__(tmpdir, None, args=args, config=config, name=name, **kw)
        self.socket_path = os.path.join(tmpdir, name + ".sock")

    def command(self):
        cmd = [restspy_bin(), "collect", "--socket", self.socket_path,
               "--store", "sqlite:" + self.db_path, "--log", self.log_path,
               "--admin", "127.0.0.1:%d" % self.admin_port, "--node", "test"]
        if self.config is not None:
            cmd += ["--config", self.config_path]
        return cmd + self.args

    def _accepts(self):
        try:
            CollectClient(self.socket_path, timeout=2).close()
            return True
        except OSError:
            return False

    def client(self, **kw):
        c = CollectClient(self.socket_path, **kw)
        return c


def unique(prefix):
    return "/%s/%s" % (prefix, uuid.uuid4().hex[:12])


class CollectCase(unittest.TestCase):
    """One daemon for the class (small collect_max_frame and
    collect_timeout, a declared view), stopped cleanly at the end (exit 0,
    no sanitizer report)."""
    ARGS = ["--collect-max-frame", "65536", "--collect-timeout", "1s"]

    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.make_tmpdir("collect")
        cls.d = Collect(cls.tmp, args=cls.ARGS, config=CONFIG).start()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.check_stopped()
        finally:
            harness.remove_tmpdir(cls.tmp)

    def client(self, **kw):
        c = self.d.client(**kw)
        self.addCleanup(c.close)
        return c

    def rows_at(self, path):
        return harness.rows(self.d.db_path, "path = ?", (path,))

    def committed(self, c, view, path, **kw):
        """Sends a pair with sync durability; returns its record id."""
        a = c.pair(view, path=path, durability="sync", **kw)
        self.assertEqual((a.type, a.body["status"]), ("ACK", "committed"), a)
        return a.body["id"]

    def assert_closed_with(self, c, text):
        a = c.read_answer()
        self.assertEqual(a.type, "ERROR", a)
        self.assertTrue(a.body["close"], a)
        self.assertIn(text, a.body["error"])
        self.assertTrue(c.closed_by_peer(), "the daemon must close after close:true")


class Basics(CollectCase):
    def test_hello_welcome(self):
        c = self.client()
        self.assertEqual(c.welcome, {"version": 1, "max_frame": 65536, "node": "test"})

    def test_pair_stored_as_the_proxy_stores_it(self):
        c = self.client()
        path = unique("api/orders")
        rid = self.committed(
            c, "orders", path, method="POST", status=201, query="page=2", host="site.test",
            scheme="https", client_addr="10.0.0.7:5000", duration_us=1500,
            req_headers=[["Content-Type", "application/json"]], req_body=b'{"n":1}',
            resp_body=b'{"id":7}', flags={"log": True, "persist": True})
        # Committed before the ACK: the row is there without waiting.
        rows = self.rows_at(path)
        self.assertEqual(len(rows), 1, rows)
        r = rows[0]
        self.assertEqual((r["id"], r["method"], r["status"], r["query"], r["host"], r["scheme"]),
                         (rid, "POST", 201, "page=2", "site.test", "https"))
        self.assertEqual((r["rule"], r["origin"], r["node"], r["client_addr"]),
                         ("orders", "local", "test", "10.0.0.7:5000"))
        self.assertEqual((harness.as_bytes(r["req_body"]), harness.as_bytes(r["resp_body"])),
                         (b'{"n":1}', b'{"id":7}'))
        self.assertEqual(r["duration_us"], 1500)
        # The CLI reads it like a proxy's capture.
        p = run_cli(["requests", "--store", "sqlite:" + self.d.db_path, "--json"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(rid, p.stdout)
        line = harness.wait_log(self.d.log_path, lambda ln: rid in ln)
        self.assertIsNotNone(line, "the view logs: a log line is expected")

    def test_sync_committed_async_accepted_in_order(self):
        c = self.client()
        paths = [unique("order") for _ in range(4)]
        seqs = [c.send_pair("orders", path=paths[0], durability="sync",
                            flags={"persist": True}),
                c.send_pair("orders", path=paths[1], durability="async",
                            flags={"persist": True}),
                c.send_pair("orders", path=paths[2], durability="sync",
                            flags={"persist": True}),
                # nothing stored: accepted even in sync
                c.send_pair("orders", path=paths[3], durability="sync",
                            flags={"log": True, "persist": False})]
        answers = [c.read_answer() for _ in seqs]
        self.assertEqual([a.seq for a in answers], seqs, "answers in the order of the frames")
        self.assertEqual([a.body["status"] for a in answers],
                         ["committed", "accepted", "committed", "accepted"])
        self.assertEqual(len(self.rows_at(paths[2])), 1)
        self.assertEqual(len(wait_rows(self.d.db_path, 1, "path = ?", (paths[1],))), 1)
        self.assertEqual(self.rows_at(paths[3]), [])

    def test_default_durability_is_the_setting(self):
        # replicate_durability defaults to sync.
        a = self.client().pair("orders", path=unique("dflt"), flags={"persist": True})
        self.assertEqual(a.body["status"], "committed", a)

    def test_cli(self):
        p = run_cli(["collect", "--help"])
        self.assertEqual(p.returncode, 0)
        for key in ("--socket", "--collect-max-frame", "--collect-timeout", "--store", "--amqp",
                    "--admin", "--redact-fields"):
            self.assertIn(key, p.stdout)
        self.assertNotIn("--upstream ", p.stdout)
        self.assertIn("collect", run_cli(["--help"]).stdout)
        for args, text in ((["collect", "--bogus"], "unknown"),
                           (["collect"], "--socket is required"),
                           (["collect", "--socket", "/tmp/x.sock", "extra"], "unexpected"),
                           (["collect", "--socket", "/tmp/x.sock", "--collect-timeout", "x"],
                            "collect_timeout")):
            p = run_cli(args)
            self.assertEqual(p.returncode, 2, (args, p.stderr))
            self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
            self.assertIn(text, p.stderr)
            self.assertTrue(p.stderr.startswith("restspy collect: "), p.stderr)


class Views(CollectCase):
    def test_flags_per_view(self):
        c = self.client()
        off, on, logonly = unique("off"), unique("on"), unique("logonly")
        a = c.pair("v_off", path=off, flags={"log": False, "persist": False})
        self.assertEqual(a.body["status"], "accepted")
        a = c.pair("v_logonly", path=logonly, flags={"log": True})
        self.assertEqual(a.body["status"], "accepted")
        self.committed(c, "v_on", on, flags={"persist": True})
        self.assertEqual(len(self.rows_at(on)), 1)
        self.assertEqual(self.rows_at(off) + self.rows_at(logonly), [])
        self.assertIsNotNone(harness.wait_log(self.d.log_path, lambda ln: logonly in ln))
        self.assertFalse([ln for ln in harness.log_lines(self.d.log_path)
                          if off in ln or on in ln])
        # The latest pair's flags win: v_off now persists.
        again = unique("off")
        self.committed(c, "v_off", again, flags={"persist": True})
        self.assertEqual(len(self.rows_at(again)), 1)
        flags = self.d.admin("GET", "/flags").json()
        rules = {r["name"]: r for r in flags["rules"]}
        self.assertEqual(rules["v_off"]["configured"],
                         {"log": False, "persist": True, "replicate": False})
        self.assertEqual(flags["rules"][-1]["name"], "default")
        # A pair without flags leaves a view's switches as they are.
        self.committed(c, "v_off", unique("off"))

    def test_declared_view_keeps_its_section(self):
        c = self.client()
        path = unique("declared")
        rid = self.committed(c, "declared", path, flags={"log": True, "persist": False})
        self.assertEqual(len(self.rows_at(path)), 1, "the section persists")
        time.sleep(0.2)
        self.assertFalse([ln for ln in harness.log_lines(self.d.log_path) if rid in ln],
                         "the section does not log")

    def test_runtime_switch_by_view_name(self):
        c = self.client()
        self.committed(c, "switchme", unique("sw"), flags={"persist": True})
        r = self.d.admin("PUT", "/flags", body={"rules": {"switchme": {"persist": False}}})
        self.assertEqual(r.status, 200, r)
        path = unique("sw")
        a = c.pair("switchme", path=path, flags={"persist": True})
        self.assertEqual(a.body["status"], "accepted", "switched off at run time")
        self.assertEqual(self.rows_at(path), [])
        m = self.d.admin("GET", "/metrics").body.decode()
        self.assertIn('restspy_rule_flag{rule="switchme",name="persist"} 0', m)
        r = self.d.admin("PUT", "/flags", body={"rules": {"switchme": {"persist": True}}})
        self.assertEqual(r.status, 200, r)
        self.committed(c, "switchme", unique("sw"), flags={"persist": True})
        # A view never seen is no rule yet.
        r = self.d.admin("PUT", "/flags", body={"rules": {"never_seen": {"log": False}}})
        self.assertEqual(r.status, 400, r)

    def test_redaction(self):
        c = self.client()
        path = unique("login")
        body = json.dumps({"user": "ann", "password": "hunter2"}).encode()
        rid = self.committed(
            c, "login", path, method="POST", req_body=body, resp_body=b'{"token":"abc"}',
            flags={"log": True, "persist": True},
            req_headers=[["Authorization", "Bearer s3cret"], ["Cookie", "sid=abc"],
                         ["Content-Type", "application/json"]],
            resp_headers=[["Set-Cookie", "sid=def"], ["Content-Type", "application/json"]])
        r = self.rows_at(path)[0]
        stored = json.dumps([harness.headers_of(r["req_headers"]),
                             harness.headers_of(r["resp_headers"])])
        stored += harness.as_bytes(r["req_body"]).decode() + harness.as_bytes(
            r["resp_body"]).decode()
        line = harness.wait_log(self.d.log_path, lambda ln: rid in ln)
        for text in (stored, line):
            for secret in ("s3cret", "sid=abc", "sid=def", "hunter2", "abc\""):
                self.assertNotIn(secret, text)
        self.assertIn("ann", stored)

    def test_replicated_request(self):
        c = self.client()
        path = unique("peer")
        self.committed(c, "peerview", path, method="POST",
                       req_headers=[["X-Restspy-Replicated-From", "paris"]],
                       flags={"persist": True, "replicate": True})
        r = self.rows_at(path)[0]
        self.assertEqual(r["origin"], "replicated")
        self.assertIsNone(r["replication"])

    def test_replicated_request_takes_the_message_id(self):
        # The replicator applies with Idempotency-Key: <message id> and
        # records its apply under that id: the view's pair takes the same
        # id, so the receiving site keeps one row per write, not two.
        c = self.client()
        key = "0190F3A2-7B1C-7D4E-8F00-A1B2C3D4E5F6"
        peer = [["X-Restspy-Replicated-From", "paris"], ["Idempotency-Key", key]]
        path = unique("peerid")
        for _ in range(2):
            self.committed(c, "peerview", path, method="POST", req_headers=peer,
                           flags={"persist": True})
        rows = self.rows_at(path)
        self.assertEqual([r["id"] for r in rows], [key.lower()])
        # Not a peer's write, or a key that is no UUID: an id of its own.
        other = unique("ownid")
        self.committed(c, "peerview", other, method="POST",
                       req_headers=[["Idempotency-Key", key]], flags={"persist": True})
        self.committed(c, "peerview", other, method="POST",
                       req_headers=[["X-Restspy-Replicated-From", "paris"],
                                    ["Idempotency-Key", "order-17"]], flags={"persist": True})
        ids = [r["id"] for r in self.rows_at(other)]
        self.assertEqual(len(ids), 2)
        self.assertNotIn(key.lower(), ids)


class Version2(CollectCase):
    """Protocol version 2 (docs/collect-protocol.md): headers as blocks, an
    async pair answered only when it asks or is refused, FLUSH."""

    def client2(self):
        c = self.client(versions=(2, 1))
        self.assertEqual(c.welcome["version"], 2)
        return c

    def test_highest_common_version(self):
        self.assertEqual(self.client(versions=(1, 2)).welcome["version"], 2)
        self.assertEqual(self.client(versions=(1,)).welcome["version"], 1)

    def test_async_pairs_answered_when_asked(self):
        c = self.client2()
        paths = [unique("v2async") for _ in range(4)]
        for p in paths[:3]:
            c.send_pair("v2", path=p, durability="async", flags={"persist": True})
        asked = c.send_pair("v2", path=paths[3], durability="async", flags={"persist": True},
                            header_flags=FLAG_ACK)
        a = c.read_answer()  # the first answer is the asked one: the others have none
        self.assertEqual((a.type, a.seq, a.body["status"]), ("ACK", asked, "accepted"), a)
        self.assertTrue(wait_until(lambda: all(self.rows_at(p) for p in paths)),
                        "every pair is stored, answered or not")
        # A sync pair is answered as in version 1, and FLUSH once the
        # frames before it are.
        rid = self.committed(c, "v2", unique("v2sync"), flags={"persist": True})
        self.assertTrue(rid)
        c.send_pair("v2", path=unique("v2more"), durability="async", flags={"persist": True})
        a = c.request(FLUSH, b"")
        self.assertEqual((a.type, a.body), ("ACK", {"status": "accepted"}), a)

    def test_refused_async_pair_gets_its_error(self):
        c = self.client2()
        bad = c.send_pair("v2", path="nope", durability="async")
        good = c.send_pair("v2", path=unique("v2good"), durability="async",
                           flags={"persist": True}, header_flags=FLAG_ACK)
        a = c.read_answer()
        self.assertEqual((a.type, a.seq, a.body["close"]), ("ERROR", bad, False), a)
        self.assertIn("path", a.body["error"])
        a = c.read_answer()
        self.assertEqual((a.type, a.seq), ("ACK", good), a)

    def test_header_blocks(self):
        c = self.client2()
        path = unique("v2headers")
        self.committed(c, "v2", path, method="POST",
                       req_headers=[["Content-Type", "application/json"],
                                    ["Authorization", "Bearer s3cret"], ["X-Many", "a, b"]],
                       resp_headers=[["Location", "/v2/17"], ["Set-Cookie", "sid=x"]],
                       flags={"persist": True})
        r = self.rows_at(path)[0]
        req = harness.headers_of(r["req_headers"])
        self.assertIn(["Content-Type", "application/json"], [list(h) for h in req])
        self.assertIn(["X-Many", "a, b"], [list(h) for h in req])
        self.assertNotIn("s3cret", json.dumps(req))  # redacted as in version 1
        self.assertIn(["Location", "/v2/17"],
                      [list(h) for h in harness.headers_of(r["resp_headers"])])

    def test_version2_errors(self):
        c = self.client2()
        for body, text in ((pair_body("v", version=1, req_headers=[["A", "1"]]), "not in the meta"),
                           (pair_body("v", version=2, req_headers_length=3) + b"A:1",
                            "must add up"),
                           (pair_body("v", version=2, req_headers=[["A B", "1"]]),
                            "header block")):
            a = c.request(PAIR, body)
            self.assertEqual((a.type, a.body["close"]), ("ERROR", False), a)
            self.assertIn(text, a.body["error"])
        # The ACK flag is version 2's, and only on a PAIR.
        v1 = self.client()
        v1.send(PAIR, pair_body("v", path="/x"), flags=FLAG_ACK)
        self.assert_closed_with(v1, "flags")
        c = self.client2()
        c.send(FLUSH, b"", flags=FLAG_ACK)
        self.assert_closed_with(c, "flags")


class Errors(CollectCase):
    def test_whole_but_wrong_frames_keep_the_connection(self):
        c = self.client()
        bad_json = struct.pack(">I", 5) + b"{nope"
        for body, text in ((bad_json, "not a JSON object"),
                           (pair_body("v", status=None), "status"),
                           (pair_body("v", path="nope"), "path"),
                           (pair_body("", path="/x"), "view"),
                           (pair_body("v", req_body_length=3), "req_body_length"),
                           (b"\x00\x00", "shorter")):
            a = c.request(PAIR, body)
            self.assertEqual(a.type, "ERROR", a)
            self.assertFalse(a.body["close"], a)
            self.assertIn(text, a.body["error"])
        self.committed(c, "errs", unique("after"), flags={"persist": True})

    def test_stream_errors_close_the_connection(self):
        cases = [
            (frame(PAIR, 1, b"x" * 8, magic=b"XXXX"), "bad magic"),
            (frame(PAIR, 1, b"", length=65537), "collect_max_frame"),
            (frame(PAIR, 1, b"", length=0xFFFFFFFF), "collect_max_frame"),
            (frame(PAIR, 1, b"", version=2), "version"),
            (frame(PAIR, 1, b"", flags=1), "flags"),
            (frame(9, 1, b""), "type"),
            (frame(ERROR, 1, b"{}"), "a client sends only"),
            (frame(6, 1, b""), "type"),  # FLUSH is version 2's
            (frame(HELLO, 1, b'{"versions":[1]}'), "HELLO twice"),
        ]
        for data, text in cases:
            with self.subTest(text=text):
                c = self.client()
                c.send_raw(data)
                self.assert_closed_with(c, text)

    def test_hello_first_and_versions(self):
        c = self.client(hello=False)
        c.send_raw(frame(PAIR, 1, pair_body("v", path="/x")))
        self.assert_closed_with(c, "expected HELLO first")
        for hello, text in ((b'{"versions":[3,4]}', "no protocol version in common"),
                            (b'{"client":"x"}', "versions"), (b"nope", "versions")):
            c = self.client(hello=False)
            c.send_raw(frame(HELLO, 1, hello))
            self.assert_closed_with(c, text)

    def test_truncated_frame_records_nothing(self):
        path = unique("cut")
        data = frame(PAIR, 2, pair_body("cut", path=path, flags={"persist": True}))
        for cut in (10, 16, len(data) - 1):
            c = self.client()
            c.send_raw(data[:cut])
            c.close()
        # A later pair, committed, follows anything that connection could
        # have queued: nothing of the cut frames is there.
        self.committed(self.client(), "cut", unique("cut"), flags={"persist": True})
        self.assertEqual(self.rows_at(path), [])

    def test_slow_partial_frame_is_closed_others_unaffected(self):
        slow = self.client()
        other = self.client()
        data = frame(PAIR, 2, pair_body("slow", path=unique("slow"), flags={"persist": True}))
        slow.send_raw(data[:20])
        t0 = time.monotonic()
        # The other connection keeps working while the slow one waits.
        self.committed(other, "fast", unique("fast"), flags={"persist": True})
        self.assert_closed_with(slow, "collect_timeout")
        self.assertLess(time.monotonic() - t0, 5)
        self.committed(other, "fast", unique("fast"), flags={"persist": True})


class Socket(unittest.TestCase):
    """The socket file: mode 0660, a stale one replaced, a live daemon's or a
    non-socket file left alone (exit 1, one line)."""

    def setUp(self):
        self.tmp = harness.make_tmpdir("collectsock")
        self.addCleanup(harness.remove_tmpdir, self.tmp)

    def start(self, name="collect"):
        d = Collect(self.tmp, name=name)
        self.addCleanup(lambda: d.running and d.stop())
        return d

    def run_second(self, path):
        return run_cli(["collect", "--socket", path, "--store", "off", "--log", "off",
                        "--admin", "off"])

    def test_mode_stale_live_and_not_a_socket(self):
        d = self.start()
        # A stale socket: bound, nobody listening.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(d.socket_path)
        s.close()
        d.start()
        self.assertEqual(stat.S_IMODE(os.stat(d.socket_path).st_mode), 0o660)
        self.assertIn("replaced the stale socket", d.stderr())
        # A live daemon's socket is not taken over.
        p = self.run_second(d.socket_path)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("another restspy collect answers on it", p.stderr)
        with d.client() as c:
            self.assertEqual(c.welcome["node"], "test")
        # Stopped: the socket file is gone.
        d.check_stopped(self)
        self.assertFalse(os.path.exists(d.socket_path))
        # A file that is not a socket is never removed.
        plain = os.path.join(self.tmp, "plain")
        with open(plain, "w") as f:
            f.write("keep me")
        p = self.run_second(plain)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("not a socket", p.stderr)
        self.assertEqual(harness.read_text(plain), "keep me")


class Lifecycle(unittest.TestCase):
    def setUp(self):
        self.tmp = harness.make_tmpdir("collectlife")
        self.addCleanup(harness.remove_tmpdir, self.tmp)

    def test_sigterm_flushes_async_pairs_and_sighup_reopens_the_log(self):
        # A store queue slow to commit: the async pairs wait in it at SIGTERM.
        d = Collect(self.tmp, args=["--store-commit-delay", "200ms"]).start()
        self.addCleanup(lambda: d.running and d.stop())
        os.rename(d.log_path, d.log_path + ".1")
        d.signal(signal.SIGHUP)
        with d.client() as c:
            self.assertTrue(wait_until(lambda: os.path.exists(d.log_path)), d.stderr())
            seqs = [c.send_pair("life", path="/life/%d" % i, durability="async",
                                flags={"log": True, "persist": True}) for i in range(200)]
            answers = [c.read_answer() for _ in seqs]
        self.assertEqual({a.body["status"] for a in answers}, {"accepted"})
        d.check_stopped(self)
        self.assertEqual(len(harness.rows(d.db_path, "path LIKE '/life/%'")), 200)
        self.assertEqual(len([ln for ln in harness.log_lines(d.log_path) if "/life/" in ln]), 200)


class Replication(unittest.TestCase):
    """With --amqp: a replicating view's pair goes to the broker through the
    outbox; a peer's replicated request and a view that does not replicate
    do not."""

    @classmethod
    def setUpClass(cls):
        rabbit.require()  # fails under CI, skips elsewhere
        cls.tmp = harness.make_tmpdir("collectrepl")
        cls.broker = rabbit.start_brokers(["K"])[0]
        b = cls.broker
        b.api_ok("PUT", "/api/exchanges/%2F/restspy.requests", {"type": "topic", "durable": True})
        b.api_ok("PUT", "/api/queues/%2F/restspy.out.peer",
                 {"durable": True, "arguments": {"x-queue-type": "classic"}})
        b.api_ok("POST", "/api/bindings/%2F/e/restspy.requests/q/restspy.out.peer",
                 {"routing_key": "#"})

    @classmethod
    def tearDownClass(cls):
        rabbit.stop_brokers([cls.broker])
        harness.remove_tmpdir(cls.tmp)

    def test_replicated_view_goes_to_the_outbox(self):
        d = Collect(self.tmp, args=["--amqp", self.broker.amqp_url]).start()
        self.addCleanup(lambda: d.running and d.stop())
        flags = {"persist": True, "replicate": True}
        with d.client() as c:
            a = c.pair("repl", method="POST", path="/r/1", req_body=b'{"a":1}', status=201,
                       flags=flags)
            self.assertEqual(a.body["status"], "committed")
            row = harness.rows(d.db_path, "path = '/r/1'")[0]
            self.assertEqual(row["replication"], "queued")
            self.assertTrue(wait_until(lambda: self.broker.depth("restspy.out.peer") == 1,
                                       timeout=20), d.stderr())
            # A peer's replicated request: recorded, never republished.
            c.pair("repl", method="POST", path="/r/2", status=201, flags=flags,
                   req_headers=[["X-Restspy-Replicated-From", "paris"]])
            # A view that does not replicate, and a read.
            c.pair("norepl", method="POST", path="/r/3", status=201, flags={"persist": True})
            c.pair("repl", method="GET", path="/r/4", status=200, flags=flags)
            # A 4xx answer is not replicated (replicate_on = 2xx).
            c.pair("repl", method="POST", path="/r/5", status=400, flags=flags)
        rows = {r["path"]: r for r in harness.rows(d.db_path, "path LIKE '/r/%'")}
        self.assertEqual(rows["/r/2"]["origin"], "replicated")
        self.assertIsNone(rows["/r/2"]["replication"])
        self.assertIsNone(rows["/r/3"]["replication"])
        self.assertTrue(wait_until(lambda: d.stats()["replication"]["outbox_depth"] == 0,
                                   timeout=20), d.stats())
        time.sleep(0.5)
        self.assertEqual(self.broker.depth("restspy.out.peer"), 1)
        msg = self.broker.get("restspy.out.peer", 1)[0]
        self.assertIn("/r/1", json.dumps(msg))
        d.check_stopped(self)


if __name__ == "__main__":
    unittest.main()
