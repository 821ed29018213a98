"""Edge cases of the protocol and of the limits: 413, CONNECT, invalid
upstream answers, Expect: 100-continue, Upgrade tunnels, stale pooled
upstream connections, max_connections, body and idle timeouts, HTTP/1.0
clients, absolute-form targets and configuration errors.

Some upstream behaviours cannot be had from the sample app; FakeUpstream is a
tiny threaded socket server started on a free port whose answer depends on
the request path."""
import json
import os
import socket
import sqlite3
import threading
import time
import unittest
import uuid

import harness
from harness import RawConn, raw_request


def assert_row(test, proxy, request_id, status, error_prefix):
    """The row of request_id has status and an error starting with
    error_prefix; returns it."""
    rows = proxy.wait_rows(1, "id = ?", (request_id,))
    test.assertEqual(len(rows), 1, "no row for request_id %s" % request_id)
    row = rows[0]
    test.assertEqual(row["status"], status, row)
    test.assertIsNotNone(row["error"], row)
    test.assertTrue(row["error"].startswith(error_prefix),
                    "row error %r does not start with %r" % (row["error"], error_prefix))
    return row


def send_ignoring_reset(conn, data):
    """Sends data; a peer that already answered and closed may reset."""
    try:
        conn.send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


# ------------------------------------------------------------ fake upstream


class FakeUpstream:
    """A threaded socket server on 127.0.0.1:<free port>. Per request path:
      /garbage      "HELLO\\r\\n\\r\\n" then close
      /badheader    a 200 whose head has the header "Bad Name: x"
      /ws           101 Switching Protocols, then echoes every byte back
      /short        200 with Content-Length and keep-alive, then closes the
                    connection 50 ms later (a short keep-alive timeout)
      /early        200 "early" as soon as the head is read, before the
                    request body (which it then reads and ignores)
      /badchunk     a chunked 200 whose first chunk's data is followed by
                    "XX" instead of CRLF
      /bighead      a 200 with 200 headers of 8 KB each (1.6 MB of head)
      /processing   "102 Processing" every 50 ms, never a final answer
      /drip         a status line sent one byte every 200 ms, never ending
      anything else 200 "ok" with Content-Length, keep-alive
    Request bodies are skipped (Content-Length, or chunked up to "0\r\n\r\n").
    requests counts the request heads read; heads keeps them (bytes)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.lock = threading.Lock()
        self.requests = 0
        self.body_bytes = 0
        self.heads = []
        self.conns = []
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def stop(self):
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.close()
            except OSError:
                pass

    def _accept_loop(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def _read_head(c, buf):
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                return None, buf
            buf += d
        head, rest = buf.split(b"\r\n\r\n", 1)
        return head, rest

    def _serve(self, c):
        c.settimeout(30)
        buf = b""
        try:
            while True:
                head, buf = self._read_head(c, buf)
                if head is None:
                    return
                with self.lock:
                    self.requests += 1
                    self.heads.append(head)
                lines = head.split(b"\r\n")
                target = lines[0].split(b" ")[1] if len(lines[0].split(b" ")) > 1 else b"/"
                path = target.split(b"?", 1)[0]
                clen = 0
                chunked = False
                for ln in lines[1:]:
                    k, _, v = ln.partition(b":")
                    if k.strip().lower() == b"content-length":
                        clen = int(v.strip())
                    if k.strip().lower() == b"transfer-encoding":
                        chunked = True
                if path == b"/early":
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                              b"Content-Length: 5\r\n\r\nearly")
                while chunked and b"0\r\n\r\n" not in buf:  # a chunked body: to its end
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                if chunked:
                    buf = buf.split(b"0\r\n\r\n", 1)[1]
                # The body is counted, not kept: uploads may be large.
                left = clen - len(buf)
                buf = buf[clen:]
                while left > 0:
                    d = c.recv(min(left, 1 << 20))
                    if not d:
                        return
                    left -= len(d)
                with self.lock:
                    self.body_bytes += clen
                if path == b"/early":
                    continue
                if path == b"/garbage":
                    c.sendall(b"HELLO\r\n\r\n")
                    return
                if path == b"/badheader":
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nBad Name: x\r\n\r\nok")
                    return
                if path == b"/ws":
                    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\n\r\n")
                    if buf:
                        c.sendall(buf)
                    while True:
                        d = c.recv(65536)
                        if not d:
                            return
                        c.sendall(d)
                if path == b"/badchunk":
                    c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"3\r\nabcXX5\r\nhello\r\n0\r\n\r\n")
                    return
                if path == b"/bighead":
                    c.sendall(b"HTTP/1.1 200 OK\r\n" +
                              b"".join(b"X-Big-%d: %s\r\n" % (i, b"v" * 8192) for i in range(200)) +
                              b"Content-Length: 2\r\n\r\nok")
                    return
                if path == b"/processing":
                    while not self.stopping:
                        c.sendall(b"HTTP/1.1 102 Processing\r\n\r\n")
                        time.sleep(0.05)
                    return
                if path == b"/drip":
                    for ch in b"HTTP/1.1 200 OK" * 1000:
                        if self.stopping:
                            return
                        c.sendall(bytes([ch]))
                        time.sleep(0.2)
                    return
                if path == b"/short":
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                              b"Content-Length: 5\r\n\r\nshort")
                    time.sleep(0.05)
                    return
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                          b"Content-Length: 2\r\n\r\nok")
        except OSError:
            return
        finally:
            try:
                c.close()
            except OSError:
                pass
            with self.lock:
                if c in self.conns:
                    self.conns.remove(c)


# --------------------------------------------- restspy in front of the app


class EdgeApp(harness.ProxyTestCase):
    """The sample app behind restspy with small limits and short timeouts."""

    PROXY_ARGS = ("--max-body-size", "1K", "--client-timeout", "1s",
                  "--idle-timeout", "1s")

    def assertStillServing(self):
        r = self.proxy.request("GET", "/api/status/200/")
        self.assertEqual(r.status, 200, "a normal request after the failure: %r" % r)

    # 1. 413

    def test_413_content_length_over_limit(self):
        body = b"x" * 4096
        req = (b"POST /api/echo/raw/ HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\n"
               b"Content-Length: 4096\r\n\r\n" + body)
        with RawConn(self.proxy.port) as c:
            send_ignoring_reset(c, req)
            r = c.read_response("POST")
            self.assertTrue(c.is_closed(3.0), "connection not closed after 413")
        doc = self.assertErrorJSON(r, 413, "payload too large")
        self.assertEqual(doc["error"], "payload too large")
        self.assertEqual(r.header("X-Request-Id"), doc["request_id"])
        row = assert_row(self, self.proxy, doc["request_id"], 413, "payload too large")
        self.assertEqual(row["method"], "POST")
        self.assertEqual(row["path"], "/api/echo/raw/")
        # Exactly at the limit passes.
        r = raw_request(self.proxy.port,
                        b"POST /api/echo/raw/ HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\n"
                        b"Content-Length: 1024\r\n\r\n" + b"y" * 1024, methods=["POST"])[0]
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"y" * 1024)
        self.assertStillServing()

    def test_413_chunked_body_grows_past_limit(self):
        head = (b"POST /api/echo/raw/ HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"200\r\n" + b"z" * 0x200 + b"\r\n"  # 512 bytes each
        with RawConn(self.proxy.port) as c:
            c.send(head + chunk + chunk)  # exactly 1 KiB so far
            time.sleep(0.1)
            send_ignoring_reset(c, chunk + chunk + b"0\r\n\r\n")
            r = c.read_response("POST")
            self.assertTrue(c.is_closed(3.0), "connection not closed after 413")
        doc = self.assertErrorJSON(r, 413, "payload too large")
        assert_row(self, self.proxy, doc["request_id"], 413, "payload too large")
        self.assertStillServing()

    # 2. CONNECT

    def test_connect_405(self):
        with RawConn(self.proxy.port) as c:
            c.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
            r = c.read_response()
        doc = self.assertErrorJSON(r, 405, "method not allowed")
        self.assertEqual(r.header("X-Request-Id"), doc["request_id"])
        row = assert_row(self, self.proxy, doc["request_id"], 405, "method not allowed")
        self.assertEqual(row["method"], "CONNECT")
        self.assertStillServing()

    # 4. Expect: 100-continue

    def test_expect_100_continue(self):
        body = b'{"hello":"continue"}'
        marker = "expect-" + uuid.uuid4().hex
        with RawConn(self.proxy.port) as c:
            c.send(b"POST /api/echo/raw/ HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                   b"X-Test: %s\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"
                   % (marker.encode(), len(body)))
            interim = b""
            while len(interim) < len(b"HTTP/1.1 100 Continue\r\n\r\n"):
                d = c.sock.recv(64)
                self.assertTrue(d, "closed before 100 Continue; got %r" % interim)
                interim += d
            self.assertTrue(interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"),
                            "expected a bare 100 Continue first, got %r" % interim)
            c.buf = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
            c.send(body)
            r = c.read_response("POST")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, body)
            # The echo view must not see Expect (restspy answered it itself).
            c.send(b"POST /api/echo/ HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                   b"Content-Length: 5\r\n\r\n")
            c.sock.settimeout(5)
            while b"\r\n\r\n" not in c.buf:
                self.assertTrue(c._fill(), "closed before 100 Continue")
            self.assertTrue(c.buf.startswith(b"HTTP/1.1 100 Continue\r\n"), c.buf)
            c.send(b"hello")
            r2 = c.read_response("POST")  # skips the 100
        self.assertEqual(r2.status, 200, r2)
        doc = r2.json()
        names = [k.lower() for k, _ in doc["headers"]]
        self.assertNotIn("expect", names, doc["headers"])
        self.assertEqual(doc["body"], "hello")
        rows = self.proxy.wait_rows(1, "req_headers LIKE ?", ("%" + marker + "%",))
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0]["status"], 200)
        self.assertIsNone(rows[0]["error"])
        self.assertEqual(harness.as_bytes(rows[0]["req_body"]), body)

    # 8. slow body

    def test_body_stall_408(self):
        t0 = time.monotonic()
        with RawConn(self.proxy.port, timeout=6) as c:
            c.send(b"POST /api/echo/raw/ HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\n"
                   b"Content-Length: 100\r\n\r\n" + b"0123456789")
            raw = c.read_until_close(timeout=6)
        elapsed = time.monotonic() - t0
        resps = harness.parse_responses(raw, ["POST"])
        self.assertEqual(len(resps), 1, raw)
        doc = self.assertErrorJSON(resps[0], 408, "request timeout")
        self.assertGreater(elapsed, 0.8)
        self.assertLess(elapsed, 3.5, "408 after %.1fs with a 1s client timeout" % elapsed)
        row = assert_row(self, self.proxy, doc["request_id"], 408, "request timeout")
        self.assertEqual(row["path"], "/api/echo/raw/")
        self.assertStillServing()

    # 9. idle timeout

    def test_idle_keepalive_closed(self):
        with RawConn(self.proxy.port, timeout=5) as c:
            c.send(b"GET /api/status/200/ HTTP/1.1\r\nHost: a\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200)
            t0 = time.monotonic()
            raw = c.read_until_close(timeout=4)
            elapsed = time.monotonic() - t0
        self.assertEqual(raw, b"", "bytes sent on an idle connection: %r" % raw)
        self.assertGreater(elapsed, 0.5)
        self.assertLess(elapsed, 3.0, "idle connection closed after %.1fs" % elapsed)
        # A connection that never sends anything is closed the same way.
        with RawConn(self.proxy.port, timeout=5) as c:
            t0 = time.monotonic()
            raw = c.read_until_close(timeout=4)
            elapsed = time.monotonic() - t0
        self.assertEqual(raw, b"")
        self.assertLess(elapsed, 3.0)

    # 10. HTTP/1.0

    def test_http10_chunked_upstream_is_close_delimited(self):
        with RawConn(self.proxy.port) as c:
            c.send(b"GET /api/big/?n=5000&stream=1 HTTP/1.0\r\nHost: a\r\n\r\n")
            raw = c.read_until_close(timeout=5)
        head, sep, body = raw.partition(b"\r\n\r\n")
        self.assertTrue(sep, raw[:300])
        status_line, *lines = head.decode("latin-1").split("\r\n")
        self.assertRegex(status_line, r"^HTTP/1\.[01] 200 ")
        hdrs = [tuple(x.strip() for x in ln.split(":", 1)) for ln in lines]
        names = {k.lower(): v for k, v in hdrs}
        self.assertNotIn("transfer-encoding", names, hdrs)
        if "content-length" in names:
            self.assertEqual(int(names["content-length"]), 5000)
        self.assertEqual(len(body), 5000)
        from_app = self.app.request("GET", "/api/big/?n=5000")
        self.assertEqual(body, from_app.body)

    def test_http10_keepalive_content_length(self):
        with RawConn(self.proxy.port) as c:
            c.send(b"GET /api/status/200/ HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"status": 200})
            self.assertIsNotNone(r.header("Content-Length"), r)
            self.assertEqual((r.header("Connection") or "").lower(), "keep-alive", r)
            self.assertFalse(c.is_closed(0.3), "HTTP/1.0 keep-alive connection closed")
            c.send(b"GET /api/status/201/ HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
            r2 = c.read_response()
            self.assertEqual(r2.status, 201, r2)
            # Without keep-alive, an HTTP/1.0 request ends the connection.
            c.send(b"GET /api/status/202/ HTTP/1.0\r\nHost: a\r\n\r\n")
            r3 = c.read_response()
            self.assertEqual(r3.status, 202, r3)
            self.assertTrue(c.is_closed(2.0), "HTTP/1.0 without keep-alive not closed")

    # 11. absolute-form target

    def test_absolute_form_target(self):
        marker = "absform-" + uuid.uuid4().hex
        with RawConn(self.proxy.port) as c:
            # The target's authority wins over Host (RFC 9112 §3.2.2).
            c.send(b"GET http://example.test/api/echo/?a=1 HTTP/1.1\r\nHost: other.test\r\n"
                   b"X-Test: %s\r\n\r\n" % marker.encode())
            r = c.read_response()
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual(doc["raw_path"], "/api/echo/")
        self.assertEqual(doc["query"], "a=1")
        self.assertEqual(doc["path"], "/api/echo/")
        got = {k.lower(): v for k, v in doc["headers"]}
        self.assertEqual(got["host"], "example.test")
        rows = self.proxy.wait_rows(1, "req_headers LIKE ?", ("%" + marker + "%",))
        self.assertEqual(len(rows), 1)
        row = rows[0]
        self.assertEqual(row["host"], "example.test")
        self.assertEqual(harness.as_bytes(row["path"]), b"/api/echo/")
        self.assertEqual(row["query"], "a=1")
        self.assertEqual(row["status"], 200)
        self.assertIsNone(row["error"])


# ----------------------------------------- restspy in front of a fake server


class FakeUpstreamCase(harness.BackendProxyCase):
    """restspy (one worker, plus extra_args()) in front of a FakeUpstream of
    the class's own (cls.up)."""

    @classmethod
    def start_upstream(cls):
        cls.up = FakeUpstream()
        return cls.up.url

    @classmethod
    def stop_upstream(cls):
        cls.up.stop()

    @classmethod
    def proxy_args(cls):
        return ("--workers", "1") + tuple(cls.extra_args())

    @classmethod
    def extra_args(cls):
        return ()


class EdgeFakeUpstream(FakeUpstreamCase):
    """restspy (one worker) in front of FakeUpstream."""

    def assertStillServing(self):
        r = self.proxy.request("GET", "/fine")
        self.assertEqual((r.status, r.body), (200, b"ok"))

    # 3. invalid upstream answers

    def test_upstream_garbage_502(self):
        r = self.proxy.request("GET", "/garbage?x=1")
        doc = harness.assert_error_json(self, r, 502, "upstream sent an invalid response")
        self.assertEqual(doc["error"], "upstream sent an invalid response")
        row = assert_row(self, self.proxy, doc["request_id"], 502,
                         "upstream sent an invalid response")
        self.assertEqual(row["path"], "/garbage")
        self.assertEqual(row["query"], "x=1")
        self.assertStillServing()

    def test_upstream_invalid_header_name_502(self):
        r = self.proxy.request("GET", "/badheader")
        doc = harness.assert_error_json(self, r, 502, "upstream sent an invalid response")
        assert_row(self, self.proxy, doc["request_id"], 502,
                   "upstream sent an invalid response")
        self.assertStillServing()

    # 5. Upgrade tunnel

    def test_websocket_tunnel(self):
        with RawConn(self.proxy.port) as c:
            c.send(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   b"Sec-WebSocket-Version: 13\r\n\r\n")
            status_line = c._take_line()
            self.assertTrue(status_line.startswith(b"HTTP/1.1 101"), status_line)
            hdrs = []
            while True:
                ln = c._take_line()
                if ln == b"":
                    break
                k, _, v = ln.partition(b":")
                hdrs.append((k.strip().lower(), v.strip().lower()))
            self.assertIn((b"upgrade", b"websocket"), hdrs)
            conn_tokens = [v for k, v in hdrs if k == b"connection"]
            self.assertTrue(any(b"upgrade" in v for v in conn_tokens), hdrs)
            for i, payload in enumerate([b"\x81\x05hello", bytes(range(256)), b"x" * 70000,
                                         b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", b"bye"]):
                with self.subTest(round=i):
                    c.send(payload)
                    got = c._take(len(payload))
                    self.assertEqual(got, payload)
        # The handshake is logged (maybe when the tunnel ends) ...
        line = harness.wait_log(self.proxy.log_path,
                                lambda ln: json.loads(ln).get("path") == "/ws", timeout=5)
        self.assertIsNotNone(line, "no log line for the handshake")
        self.assertEqual(json.loads(line)["status"], 101)
        # ... but not persisted: a later request's row is there, none for /ws.
        r = self.proxy.request("GET", "/after-ws")
        self.assertEqual(r.status, 200)
        self.assertEqual(len(self.proxy.wait_rows(1, "path = '/after-ws'")), 1)
        time.sleep(0.3)
        self.assertEqual(self.proxy.rows("path = '/ws'"), [])
        self.assertGreaterEqual(self.proxy.stats().get("upgrades", 0), 1)

    # 6. stale pooled connections

    def test_upstream_closes_idle_connection(self):
        before = self.proxy.stats()["upstream_connects"]
        reqs_before = self.up.requests
        with RawConn(self.proxy.port) as c:
            for i in range(20):
                c.send(b"GET /short?i=%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
                r = c.read_response()
                self.assertEqual((r.status, r.body), (200, b"short"), "request %d: %r" % (i, r))
                time.sleep(0.2)
        after = self.proxy.stats()["upstream_connects"]
        # Each /short connection is closed by the upstream after its answer,
        # so every request after the first needs a new one; the first may
        # reuse a connection an earlier test of the class left in the pool.
        self.assertGreaterEqual(after - before, 19)
        self.assertLessEqual(after - before, 40)
        self.assertGreaterEqual(self.up.requests - reqs_before, 20)
        rows = self.proxy.wait_rows(20, "path = '/short'")
        self.assertEqual(len(rows), 20)
        self.assertTrue(all(r["status"] == 200 and r["error"] is None for r in rows), rows)


class EdgeEarlyAnswer(FakeUpstreamCase):
    """An upstream that answers before the request body has all arrived.
    Replication is on (its broker is down: writes wait in the outbox)."""

    @classmethod
    def extra_args(cls):
        dead = harness.free_port()
        return ("--amqp", "amqp://guest:guest@127.0.0.1:%d/" % dead, "--node", "early",
                "--secret", "s3cret")

    def test_answer_before_body(self):
        """The client gets the early answer, then sends its body and its next
        request on the same connection: the connection stays open, the
        capture holds the whole body and the write is replicated (it was
        answered 200), exactly as if the answer had come after the body."""
        body = b'{"late":"body","n":12345}'
        with harness.RawConn(self.proxy.port) as c:
            c.send(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body))
            # The answer's head comes before the body is sent. (With sync
            # durability, the default, its last bytes wait for the commit,
            # which waits for the body: a client sends its body without
            # waiting for the whole answer.)
            while b"\r\n\r\n" not in c.buf:
                self.assertTrue(c._fill(), "connection closed before the early answer")
            c.send(body)
            r = c.read_response("POST")
            self.assertEqual((r.status, r.body), (200, b"early"))
            c.send(b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
            r = c.read_response("GET")
            self.assertEqual((r.status, r.body), (200, b"ok"), "the connection must stay usable")
        self.assertCapturedAndQueued("query IS NULL", body)

    def test_answer_before_chunked_body(self):
        """The same with a chunked body, sent in two chunks after the answer's
        head: the capture and the outbox hold the decoded body."""
        with harness.RawConn(self.proxy.port) as c:
            c.send(b"POST /early?chunked=1 HTTP/1.1\r\nHost: x\r\n"
                   b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            while b"\r\n\r\n" not in c.buf:
                self.assertTrue(c._fill(), "connection closed before the early answer")
            c.send(b"6\r\n{\"a\":1\r\n")
            c.send(b"2\r\n0}\r\n0\r\n\r\n")
            r = c.read_response("POST")
            self.assertEqual((r.status, r.body), (200, b"early"))
            c.send(b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
            r = c.read_response("GET")
            self.assertEqual((r.status, r.body), (200, b"ok"), "the connection must stay usable")
        self.assertCapturedAndQueued("query = 'chunked=1'", b'{"a":10}')

    def test_client_gone_after_early_answer(self):
        """A client that goes away after the early answer, in the middle of
        its body: the request is captured with the error and the part of the
        body that came, not replicated, and restspy keeps serving."""
        with harness.RawConn(self.proxy.port) as c:
            c.send(b"POST /early?gone=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            while b"\r\n\r\n" not in c.buf:
                self.assertTrue(c._fill(), "connection closed before the early answer")
            c.send(b"x" * 10)
        post = harness.wait_rows(self.proxy.db_path, 1, "query = 'gone=1'")
        self.assertEqual(1, len(post))
        self.assertEqual("client closed connection", post[0]["error"])
        self.assertEqual(10, post[0]["req_body_size"])
        self.assertIsNone(post[0]["replication"])
        con = sqlite3.connect(self.proxy.db_path, timeout=5)
        try:
            queued = con.execute("SELECT count(*) FROM outbox WHERE message_id = ?",
                                 (post[0]["id"],)).fetchone()[0]
        finally:
            con.close()
        self.assertEqual(0, queued)
        r = self.proxy.request("GET", "/fine")
        self.assertEqual((r.status, r.body), (200, b"ok"))

    def assertCapturedAndQueued(self, where, body):
        """The POST matching where was captured whole, without error, and its
        outbox message holds the whole body."""
        post = harness.wait_rows(self.proxy.db_path, 1, "method = 'POST' AND " + where)
        self.assertEqual(1, len(post))
        self.assertEqual(200, post[0]["status"])
        self.assertEqual(len(body), post[0]["req_body_size"])
        self.assertEqual(body, bytes(post[0]["req_body"]))
        self.assertIsNone(post[0]["error"])
        self.assertEqual("queued", post[0]["replication"])
        con = sqlite3.connect(self.proxy.db_path, timeout=5)
        try:
            out = con.execute("SELECT body FROM outbox WHERE message_id = ?",
                              (post[0]["id"],)).fetchall()
        finally:
            con.close()
        self.assertEqual([body], [bytes(b) for (b,) in out])


class EdgeMaxConnections(FakeUpstreamCase):
    """--max-connections 2 on one worker."""

    @classmethod
    def extra_args(cls):
        return ("--max-connections", "2")

    def test_third_connection_refused(self):
        # The readiness probe's connection must be gone before counting.
        def fresh_conn_works():
            try:
                r = raw_request(self.proxy.port, b"GET /x HTTP/1.1\r\nHost: a\r\n"
                                b"Connection: close\r\n\r\n", timeout=2)[0]
                return r.status == 200
            except (OSError, EOFError, AssertionError):
                return False

        self.assertTrue(harness.wait_until(fresh_conn_works, timeout=5))
        refused_before = self.proxy.stats()["refused_connections"]
        a = RawConn(self.proxy.port)
        b = RawConn(self.proxy.port)
        try:
            for c in (a, b):
                c.send(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
                self.assertEqual(c.read_response().status, 200)
            with RawConn(self.proxy.port, timeout=3) as third:
                try:
                    third.send(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass
                t0 = time.monotonic()
                try:
                    raw = third.read_until_close(timeout=2)
                except socket.timeout:
                    self.fail("third connection neither answered nor closed in 2s")
                self.assertEqual(raw, b"", "a refused connection got bytes: %r" % raw)
                self.assertLess(time.monotonic() - t0, 2.1)
            self.assertGreaterEqual(self.proxy.stats()["refused_connections"] - refused_before, 1)
            # The two admitted ones still work.
            for c in (a, b):
                c.send(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
                self.assertEqual(c.read_response().status, 200)
        finally:
            a.close()
            b.close()
        self.assertTrue(harness.wait_until(fresh_conn_works, timeout=3),
                        "no new connection accepted after the first two closed")


# ------------------------------------------------------------ config errors


class EdgeConfigErrors(unittest.TestCase):
    def setUp(self):
        self.tmp = harness.make_tmpdir("EdgeConfigErrors")

    def tearDown(self):
        harness.remove_tmpdir(self.tmp)

    def run_proxy(self, args):
        p = harness.run_cli(["proxy", "--store", "off", "--log", "off", "--admin", "off",
                             "--listen", "127.0.0.1:%d" % harness.free_port()] + args,
                            cwd=self.tmp, timeout=10)
        self.assertIsNone(harness.sanitizer_report(p.stderr), p.stderr)
        return p

    def assertUsageError(self, p, *needles):
        self.assertEqual(p.returncode, 2, "exit %s; stderr %r" % (p.returncode, p.stderr))
        lines = [ln for ln in p.stderr.split("\n") if ln.strip()]
        self.assertEqual(len(lines), 1, "expected one line on stderr: %r" % p.stderr)
        for n in needles:
            self.assertIn(n, lines[0])
        self.assertEqual(p.stdout, "")

    def test_bad_value(self):
        p = self.run_proxy(["--upstream", "http://127.0.0.1:1", "--workers", "abc"])
        self.assertUsageError(p, "workers", "abc")

    def test_unknown_option(self):
        p = self.run_proxy(["--upstream", "http://127.0.0.1:1", "--no-such-option", "1"])
        self.assertUsageError(p, "--no-such-option")

    def test_unknown_key_in_file(self):
        path = os.path.join(self.tmp, "bad.ini")
        with open(path, "w") as f:
            f.write("# comment\nupstream = http://127.0.0.1:1\nno_such_key = 1\n")
        p = self.run_proxy(["--config", path])
        self.assertUsageError(p, "%s:3" % path, "no_such_key")


if __name__ == "__main__":
    unittest.main()
