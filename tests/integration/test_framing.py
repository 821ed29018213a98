"""Requests and responses restspy must refuse or bound, found by attacking it
as an HTTP client would, side by side with nginx and HAProxy (issue 9,
items 19 to 27): a refused request never reaches the backend, chunked framing
is checked both ways, Host and request-target follow RFC 9112, an upstream
cannot send an unbounded head or hold a client forever, and secrets are
redacted on every path, failed or not."""
import json
import time
import uuid

import harness
from harness import RawConn
from test_edge import FakeUpstreamCase, assert_row, send_ignoring_reset

SECRET = "SECRET-framing-77aa"


class Framing(FakeUpstreamCase):
    @classmethod
    def extra_args(cls):
        return ("--log-bodies", "on")

    def heads_with(self, marker):
        with self.up.lock:
            return [h for h in self.up.heads if marker.encode() in h]

    def refused(self, raw, status, error, pool_first=True, exact=True):
        """Sends raw (after a request that pools an upstream connection for
        this client connection); the answer is status with error, the record
        says so, and the backend saw nothing of it."""
        marker = "m-" + uuid.uuid4().hex
        raw = raw.replace(b"MARK", marker.encode())
        with RawConn(self.proxy.port) as c:
            if pool_first:
                c.send(b"GET /fine HTTP/1.1\r\nHost: a\r\n\r\n")
                self.assertEqual(c.read_response().status, 200)
            send_ignoring_reset(c, raw)
            r = c.read_response("POST")
        doc = harness.assert_error_json(self, r, status, error)
        if exact:
            self.assertEqual(doc["error"], error)
        assert_row(self, self.proxy, doc["request_id"], status, error)
        time.sleep(0.2)
        self.assertEqual(self.heads_with(marker), [], "the backend received a refused request")
        return doc

    # 19, 23: Transfer-Encoding restspy does not implement, or empty

    def test_unknown_transfer_coding_not_forwarded(self):
        for te in (b"xchunked", b"gzip", b"identity", b"gzip, chunked"):
            with self.subTest(te=te):
                self.refused(b"POST /x HTTP/1.1\r\nHost: a\r\nX-M: MARK\r\n"
                             b"Transfer-Encoding: " + te + b"\r\n\r\nhello",
                             501, "not implemented: transfer coding other than chunked")

    def test_empty_transfer_encoding_refused(self):
        smuggled = b"GET /smuggled-MARK HTTP/1.1\r\nHost: a\r\n\r\n"
        self.refused(b"POST /x HTTP/1.1\r\nHost: a\r\nX-M: MARK\r\nTransfer-Encoding:\r\n\r\n"
                     + smuggled, 400, "bad request: empty Transfer-Encoding")

    def test_transfer_encoding_in_http10_refused(self):
        self.refused(b"POST /x HTTP/1.0\r\nX-M: MARK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n0\r\n\r\n", 400,
                     "bad request: Transfer-Encoding in an HTTP/1.0 request", pool_first=False)

    # 22: the CRLF after chunk data, both ways

    def test_request_chunk_without_crlf_refused(self):
        self.refused(b"POST /x HTTP/1.1\r\nHost: a\r\nX-M: MARK\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcYY0\r\n\r\n",
                     400, "bad request: invalid chunked body (no CRLF after chunk data)")

    def test_request_chunk_crlf_split_across_reads(self):
        with RawConn(self.proxy.port) as c:
            c.send(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r")
            time.sleep(0.2)
            send_ignoring_reset(c, b"Y0\r\n\r\n")
            r = c.read_response("POST")
        harness.assert_error_json(
            self, r, 400, "bad request: invalid chunked body (no CRLF after chunk data)")
        # A good chunked body split the same way still goes through.
        with RawConn(self.proxy.port) as c:
            c.send(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r")
            time.sleep(0.2)
            c.send(b"\n0\r\n\r\n")
            self.assertEqual(c.read_response("POST").status, 200)

    def test_response_chunk_without_crlf_cut(self):
        with RawConn(self.proxy.port) as c:
            c.send(b"GET /badchunk HTTP/1.1\r\nHost: a\r\n\r\n")
            raw = c.read_until_close(5.0)
        self.assertTrue(raw.startswith(b"HTTP/1.1 200"), raw)
        self.assertNotIn(b"hello", raw)  # the chunk after the bad framing
        self.assertFalse(raw.endswith(b"0\r\n\r\n"), "a cut response must not look complete")
        rows = self.proxy.wait_rows(1, "path = '/badchunk'")
        self.assertEqual(rows[-1]["error"],
                         "upstream sent an invalid response (no CRLF after chunk data)")

    # 24: Host

    def test_host_rules(self):
        self.refused(b"GET /x?MARK HTTP/1.1\r\nX-M: MARK\r\n\r\n", 400,
                     "bad request: missing Host header")
        self.refused(b"GET /x?MARK HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400,
                     "bad request: several Host headers")
        with RawConn(self.proxy.port) as c:  # HTTP/1.0 needs none
            c.send(b"GET /fine HTTP/1.0\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)

    # 25: the request target

    def test_control_bytes_in_target_refused(self):
        # llhttp refuses most controls itself; a raw TAB it lets through.
        for t, why in ((b"/a\tb-MARK", "bad request: invalid character in request target"),
                       (b"/a\x01b-MARK", "bad request"), (b"/a\x7fb-MARK", "bad request")):
            with self.subTest(target=t):
                doc = self.refused(b"GET " + t + b" HTTP/1.1\r\nHost: a\r\n\r\n", 400, why,
                                   exact=False)
                self.assertTrue(doc["error"].startswith(why), doc)

    def test_absolute_form_authority_wins(self):
        marker = "m-" + uuid.uuid4().hex
        with RawConn(self.proxy.port) as c:
            c.send(b"GET http://target.test:81/p?%s HTTP/1.1\r\nHost: other.test\r\n\r\n"
                   % marker.encode())
            self.assertEqual(c.read_response().status, 200)
        heads = self.heads_with(marker)
        self.assertEqual(len(heads), 1)
        self.assertIn(b"\r\nHost: target.test:81\r\n", heads[0])
        self.assertNotIn(b"other.test", heads[0])
        self.assertTrue(heads[0].startswith(b"GET /p?" + marker.encode() + b" HTTP/1.1"))

    # 21, 27: what an upstream may send before its final head

    def test_upstream_head_too_big(self):
        r = self.proxy.request("GET", "/bighead")
        doc = harness.assert_error_json(self, r, 502, "upstream sent too big header")
        row = assert_row(self, self.proxy, doc["request_id"], 502, "upstream sent too big header")
        self.assertLess(len(row["resp_headers"]), 1024)

    def test_endless_interim_responses_bounded(self):
        t0 = time.monotonic()
        with RawConn(self.proxy.port, timeout=10) as c:
            c.send(b"GET /processing HTTP/1.1\r\nHost: a\r\n\r\n")
            r = c.read_response()  # skips the 1xx answers relayed before
        harness.assert_error_json(self, r, 502, "upstream sent too many interim responses")
        rows = self.proxy.wait_rows(1, "path = '/processing'")
        self.assertEqual(rows[-1]["status"], 502)
        self.assertLess(time.monotonic() - t0, 8)

    # 20, 26: redaction on every path

    def test_query_secret_redacted_when_head_fails(self):
        cases = [
            (b"GET /q1?token=%s HTTP/1.1\r\nHost: a\r\nBad\x01Name: x\r\n\r\n", 400),
            (b"GET /q2?token=%s HTTP/9.9\r\nHost: a\r\n\r\n", 400),
            (b"GET /q3?token=%s HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 20000 + b"\r\n\r\n",
             431),
        ]
        for raw, status in cases:
            with self.subTest(status=status, raw=raw[:12]):
                with RawConn(self.proxy.port) as c:
                    send_ignoring_reset(c, raw % SECRET.encode())
                    r = c.read_response()
                self.assertEqual(r.status, status)
                path = raw.split(b" ")[1].split(b"?")[0].decode()
                rows = self.proxy.wait_rows(1, "path = ?", (path,))
                self.assertEqual(len(rows), 1)
                self.assertEqual(rows[0]["query"], "token=[redacted]")
        harness.wait_until(lambda: b"/q3" in open(self.proxy.log_path, "rb").read())
        with open(self.proxy.log_path, "rb") as f:
            self.assertNotIn(SECRET.encode(), f.read())

    def test_redaction_by_content(self):
        boundary = b"----restspy" + uuid.uuid4().hex.encode()
        multipart = (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"user\"\r\n"
                     b"\r\nbob\r\n--" + boundary + b"\r\nContent-Disposition: form-data; "
                     b"name=\"password\"\r\n\r\n" + SECRET.encode() + b"\r\n--" + boundary +
                     b"--\r\n")
        sends = [
            ("/t1", b'{"password": "%s"}' % SECRET.encode(), "text/plain"),
            ("/t2", multipart, "multipart/form-data; boundary=" + boundary.decode()),
            ("/s;token=%s/x" % SECRET, b"", None),
        ]
        ids = []
        for path, body, ctype in sends:
            headers = [("Content-Type", ctype)] if ctype else []
            r = self.proxy.request("POST", path, body=body, headers=headers)
            self.assertEqual(r.status, 200)
            rows = self.proxy.wait_rows(1, "path LIKE ?", (path.split(";")[0] + "%",))
            ids.append(rows[-1]["id"])
        rows = {r["id"]: r for r in self.proxy.rows()}
        self.assertIn(b'"password": "[redacted]"', bytes(rows[ids[0]]["req_body"]))
        self.assertIn(b'name="password"\r\n\r\n[redacted]\r\n', bytes(rows[ids[1]]["req_body"]))
        self.assertIn(b"bob", bytes(rows[ids[1]]["req_body"]))
        self.assertEqual(harness.as_bytes(rows[ids[2]]["path"]), b"/s;token=[redacted]/x")
        harness.wait_until(lambda: len(self.proxy.log_lines()) >= 3)
        data = open(self.proxy.log_path, "rb").read() + open(self.proxy.db_path, "rb").read()
        try:
            data += open(self.proxy.db_path + "-wal", "rb").read()
        except FileNotFoundError:
            pass
        self.assertNotIn(SECRET.encode(), data)


class FramingHeadTimeout(FakeUpstreamCase):
    @classmethod
    def extra_args(cls):
        return ("--upstream-header-timeout", "1s")

    def test_dripped_status_line_bounded(self):
        t0 = time.monotonic()
        r = self.proxy.request("GET", "/drip", timeout=10)
        harness.assert_error_json(self, r, 504, "upstream timeout")
        self.assertLess(time.monotonic() - t0, 4)
        doc = json.loads(r.body)
        row = assert_row(self, self.proxy, doc["request_id"], 504, "upstream timeout")
        self.assertIn("upstream_header_timeout", row["error"])


class HeldUp(FakeUpstreamCase):
    """What the audit found holding, kept holding: smuggling by CL/TE
    obfuscation, malformed heads, HTTP/2 and pipelining tricks, slowloris,
    a large upload at flat memory."""

    @classmethod
    def extra_args(cls):
        return ("--header-timeout", "1s")

    def not_forwarded(self, raw, statuses):
        marker = "m-" + uuid.uuid4().hex
        raw = raw.replace(b"MARK", marker.encode())
        with RawConn(self.proxy.port) as c:
            send_ignoring_reset(c, raw)
            try:
                r = c.read_response("POST")
            except EOFError:
                r = None
        self.assertIsNotNone(r, "no answer to %r" % raw)
        self.assertIn(r.status, statuses, (raw, r))
        time.sleep(0.2)
        with self.up.lock:
            seen = [h for h in self.up.heads if marker.encode() in h]
        self.assertEqual(seen, [], "forwarded: %r" % raw)

    def test_cl_te_obfuscations(self):
        cases = [
            b"Content-Length: 5\r\nTransfer-Encoding: chunked",
            b"Transfer-Encoding: chunked\r\nContent-Length: 5",
            b"Transfer-Encoding : chunked",
            b"Transfer-Encoding:\x0bchunked",
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
            b"Transfer-Encoding: chunked, identity",
            b" Transfer-Encoding: chunked",
            b"X: y\r\n Transfer-Encoding: chunked",
            b"Content-Length: +5",
            b"Content-Length: 5, 5",
            b"Content-Length: 5\r\nContent-Length: 6",
            b"Content-Length: 0x5",
        ]
        for h in cases:
            with self.subTest(header=h):
                self.not_forwarded(b"POST /x HTTP/1.1\r\nHost: a\r\nX-M: MARK\r\n" + h +
                                   b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n", (400, 501))

    def test_malformed_heads(self):
        cases = [
            b"GET /x HTTP/1.1\r\nHost: a\r\nX-M: MARK\r\nX-Bad: a\rb\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: a\r\nX-M: MARK\r\nX-Bad: a\x00b\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: a\r\nX-M: MARK\r\nBad\x7fName: 1\r\n\r\n",
            b"GET /x?MARK HTTP/1.1 extra\r\nHost: a\r\n\r\n",
            b"GET /x?MARK HTTP/2.0\r\nHost: a\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nMARK",
            b"GET /x?MARK HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 20000 + b"\r\n\r\n",
            b"GET /" + b"p" * 9000 + b"?MARK HTTP/1.1\r\nHost: a\r\n\r\n",
        ]
        for raw in cases:
            with self.subTest(raw=raw[:40]):
                self.not_forwarded(raw, (400, 414, 431, 505))

    def test_pipelined_after_malformed_first_not_processed(self):
        marker = "m-" + uuid.uuid4().hex
        with RawConn(self.proxy.port) as c:
            send_ignoring_reset(c, b"NOT HTTP\r\n\r\nGET /after-%s HTTP/1.1\r\nHost: a\r\n\r\n"
                                % marker.encode())
            r = c.read_response()
            self.assertEqual(r.status, 400)
            self.assertTrue(c.is_closed(3.0))
        time.sleep(0.2)
        with self.up.lock:
            self.assertEqual([h for h in self.up.heads if marker.encode() in h], [])

    def test_slowloris_408_while_others_served(self):
        slow = RawConn(self.proxy.port, timeout=5)
        try:
            t0 = time.monotonic()
            slow.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n")
            for _ in range(5):  # a byte now and then, never the end of the head
                time.sleep(0.1)
                r = self.proxy.request("GET", "/fine")
                self.assertEqual(r.status, 200)
                slow.send(b"X")
            r = slow.read_response()
            self.assertEqual(r.status, 408)
            self.assertLess(time.monotonic() - t0, 3.5)
        finally:
            slow.close()

    def test_large_upload_flat_memory(self):
        size = 500 * 1024 * 1024
        pid = self.proxy.proc.pid

        def rss_kb():
            with open("/proc/%d/status" % pid) as f:
                for ln in f:
                    if ln.startswith("VmRSS:"):
                        return int(ln.split()[1])
            return 0

        before = self.up.body_bytes
        base = rss_kb()
        peak = base
        block = b"u" * (1 << 20)
        with RawConn(self.proxy.port, timeout=60) as c:
            c.send(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
            for i in range(size // len(block)):
                c.send(block)
                if i % 32 == 0:
                    peak = max(peak, rss_kb())
            r = c.read_response("POST")
        self.assertEqual(r.status, 200)
        self.assertEqual(self.up.body_bytes - before, size)
        # Streamed: the capture copy is capped, nothing else is held.
        self.assertLess(peak - base, 64 * 1024, "RSS grew by %d KiB" % (peak - base))


class FileLimit(FakeUpstreamCase):
    """restspy with 40 file descriptors and 60 clients: it refuses what it
    cannot take, never crashes, and serves again once they leave."""

    @classmethod
    def proxy_preexec(cls):
        import resource

        def low_nofile():
            resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))
        return low_nofile

    def test_sixty_connections_with_forty_fds(self):
        conns = []
        try:
            for _ in range(60):
                try:
                    conns.append(RawConn(self.proxy.port, timeout=3))
                except OSError:
                    pass
            answered = 0
            for c in conns:
                try:
                    c.send(b"GET /fine HTTP/1.1\r\nHost: a\r\n\r\n")
                    if c.read_response().status == 200:
                        answered += 1
                except (OSError, EOFError, AssertionError):
                    pass
            self.assertGreater(answered, 10)
            self.assertLess(answered, 60)
        finally:
            for c in conns:
                c.close()
        self.assertTrue(self.proxy.running, "restspy died")
        ok = harness.wait_until(lambda: self.proxy.request("GET", "/fine").status == 200, 5)
        self.assertTrue(ok)
