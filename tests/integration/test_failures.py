"""Failures: restspy answers each with the right status and a JSON body
{"error", "request_id"}, records it with its error text, and keeps serving."""
import socket
import time
import unittest

import harness
from harness import RawConn, raw_exchange, raw_request


class UpstreamDown(harness.BackendProxyCase):
    @classmethod
    def start_upstream(cls):
        return "http://127.0.0.1:%d" % harness.free_port()  # nobody listens there

    def test_502_json(self):
        r = self.proxy.request("POST", "/api/sites/?x=1", body={"slug": "a"})
        doc = harness.assert_error_json(self, r, 502, "upstream unreachable")
        self.assertEqual(doc["error"], "upstream unreachable")
        rows = self.proxy.wait_rows(1, "id = ?", (doc["request_id"],))
        self.assertEqual(len(rows), 1, "no row for request_id %s" % doc["request_id"])
        row = rows[0]
        self.assertEqual(row["status"], 502)
        # The row may carry a detail after the text ("... (connection refused)").
        self.assertTrue(row["error"].startswith("upstream unreachable"), row["error"])
        self.assertEqual(row["method"], "POST")
        self.assertEqual(row["path"], "/api/sites/")
        self.assertEqual(row["query"], "x=1")
        # Still serving afterwards, on the same and on new connections.
        for _ in range(3):
            r = self.proxy.request("GET", "/api/echo/")
            self.assertEqual(r.status, 502)


class Failures(harness.ProxyTestCase):
    PROXY_ARGS = ("--upstream-timeout", "1s", "--max-header-size", "4K",
                  "--max-request-line", "1K", "--header-timeout", "1s")

    def assertStillServing(self):
        r = self.proxy.request("GET", "/api/status/200/")
        self.assertEqual(r.status, 200, "a normal request after the failure: %r" % r)
        self.assertEqual(r.json(), {"status": 200})

    def assertRow(self, request_id, status, error_prefix):
        rows = self.proxy.wait_rows(1, "id = ?", (request_id,))
        self.assertEqual(len(rows), 1, "no row for request_id %s" % request_id)
        self.assertEqual(rows[0]["status"], status)
        self.assertIsNotNone(rows[0]["error"])
        self.assertTrue(rows[0]["error"].startswith(error_prefix), rows[0]["error"])
        return rows[0]

    def test_upstream_timeout_504(self):
        t0 = time.monotonic()
        r = self.proxy.request("GET", "/api/slow/?ms=3000")
        elapsed = time.monotonic() - t0
        doc = self.assertErrorJSON(r, 504, "upstream timeout")
        self.assertEqual(doc["error"], "upstream timeout")
        self.assertLess(elapsed, 2.8, "504 came after %.1fs with a 1s timeout" % elapsed)
        self.assertGreater(elapsed, 0.8)
        row = self.assertRow(doc["request_id"], 504, "upstream timeout")
        self.assertEqual(row["path"], "/api/slow/")
        self.assertStillServing()

    def test_malformed_request_line_400_and_close(self):
        for junk in (b"GARBAGE\r\n\r\n", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
                     b"GET\r\n\r\n"):
            with self.subTest(junk=junk):
                resps, raw = raw_exchange(self.proxy.port, junk)
                self.assertEqual(len(resps), 1, raw)
                doc = self.assertErrorJSON(resps[0], 400, "bad request")
                self.assertRow(doc["request_id"], 400, "bad request")
                self.assertStillServing()

    def test_header_section_too_large_431(self):
        headers = b"".join(b"X-Filler-%02d: %s\r\n" % (i, b"v" * 100) for i in range(60))
        req = b"GET /api/echo/ HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n"
        with RawConn(self.proxy.port) as c:
            try:
                c.send(req)
            except (BrokenPipeError, ConnectionResetError):
                pass
            r = c.read_response()
        doc = self.assertErrorJSON(r, 431, "request header fields too large")
        self.assertRow(doc["request_id"], 431, "request header fields too large")
        # Just under the limit passes.
        small = b"".join(b"X-Filler-%02d: %s\r\n" % (i, b"v" * 100) for i in range(25))
        r = raw_request(self.proxy.port,
                        b"GET /api/status/200/ HTTP/1.1\r\nHost: a\r\n" + small + b"\r\n")[0]
        self.assertEqual(r.status, 200, r)
        self.assertStillServing()

    def test_uri_too_long_414(self):
        r = self.proxy.request("GET", "/api/echo/?q=" + "a" * 2000)
        doc = self.assertErrorJSON(r, 414, "uri too long")
        self.assertRow(doc["request_id"], 414, "uri too long")
        r = self.proxy.request("GET", "/api/echo/?q=" + "a" * 900)
        self.assertEqual(r.status, 200, r)
        self.assertStillServing()

    def test_header_timeout_408(self):
        t0 = time.monotonic()
        with RawConn(self.proxy.port, timeout=6) as c:
            c.send(b"GET /api/echo/ HTTP/1.1\r\nHost: a\r\nX-Half: ")
            raw = c.read_until_close(timeout=6)
        elapsed = time.monotonic() - t0
        resps = harness.parse_responses(raw)
        self.assertEqual(len(resps), 1, raw)
        doc = self.assertErrorJSON(resps[0], 408, "request timeout")
        self.assertGreater(elapsed, 0.8)
        self.assertLess(elapsed, 4.0)
        self.assertRow(doc["request_id"], 408, "request timeout")
        self.assertStillServing()

    def test_malformed_requests_400(self):
        cases = {
            "cl_and_te": b"POST /api/echo/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "double_cl": b"POST /api/echo/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                         b"Content-Length: 6\r\n\r\nhello!",
            "bad_chunk_size": b"POST /api/echo/ HTTP/1.1\r\nHost: a\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            "nul_in_header": b"GET /api/echo/ HTTP/1.1\r\nHost: a\r\nX-Bad: a\x00b\r\n\r\n",
            "bad_cl": b"POST /api/echo/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n1",
        }
        for name, req in cases.items():
            with self.subTest(case=name):
                try:
                    resps, raw = raw_exchange(self.proxy.port, req, timeout=5)
                except socket.timeout:
                    self.fail("%s: restspy did not answer and close" % name)
                self.assertEqual(len(resps), 1, "%s: %r" % (name, raw))
                self.assertIn(resps[0].status, (400, 431), resps[0])
                doc = self.assertErrorJSON(resps[0], resps[0].status)
                self.assertRow(doc["request_id"], resps[0].status,
                               "bad request" if resps[0].status == 400
                               else "request header fields too large")
                self.assertStillServing()

    def test_whitespace_before_colon_400(self):
        # RFC 9112 section 5.1: a server MUST reject whitespace between a
        # header field name and the colon with 400 (request smuggling).
        try:
            resps, raw = raw_exchange(
                self.proxy.port,
                b"GET /api/echo/ HTTP/1.1\r\nHost: a\r\nX-Bad : 1\r\n\r\n", timeout=5)
        except socket.timeout:
            self.fail("restspy did not answer 400 and close (whitespace before colon "
                      "accepted?)")
        self.assertEqual(len(resps), 1, raw)
        doc = self.assertErrorJSON(resps[0], 400, "bad request")
        self.assertRow(doc["request_id"], 400, "bad request")
        self.assertStillServing()

    def test_error_after_good_request_on_same_connection(self):
        # A good request then garbage on one keep-alive connection: the good
        # one is answered normally, the garbage gets 400 and the close.
        resps, raw = raw_exchange(
            self.proxy.port,
            b"GET /api/status/201/ HTTP/1.1\r\nHost: a\r\n\r\nNOT HTTP AT ALL\r\n\r\n")
        self.assertEqual([r.status for r in resps], [201, 400], raw)
        self.assertErrorJSON(resps[1], 400, "bad request")


if __name__ == "__main__":
    unittest.main()
