"""restspy as a transparent reverse proxy: what a client gets through it is
what it gets from the app directly, what the app gets is what the client
sent (plus X-Forwarded-*/X-Request-Id, minus hop-by-hop headers), and the
store holds exactly one faithful row per request.

Two identical sample apps run: one is called directly, the other sits behind
restspy; every request goes to both, with the same Host header, and the
answers are compared."""
import collections
import json
import re
import unittest
import uuid

import harness
from harness import App, Proxy, RawConn, raw_request, request

HOST = "sitemon.test"
CAP = 64 * 1024

# Response headers that legitimately differ between the two paths.
IGNORED_RESP = {"date", "server", "connection", "keep-alive", "transfer-encoding",
                "x-request-id"}
# Request headers a proxy adds or consumes (see test_forwarded_headers and
# test_hop_by_hop_headers_not_forwarded for what is asserted about them).
IGNORED_REQ = {"connection", "keep-alive", "te", "transfer-encoding", "x-forwarded-for",
               "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-request-id",
               "forwarded", "via"}
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TS_RE = re.compile(rb'"updated_at":"[^"]*"')


def normalize_body(body):
    """Bodies carrying the server-set updated_at differ between the two apps
    only there. Returns (body, changed)."""
    new = TS_RE.sub(b'"updated_at":"T"', body)
    return new, new != body


def e2e_headers(resp, drop_len=False, extra_ignored=()):
    ign = set(IGNORED_RESP) | set(extra_ignored)
    if drop_len:
        ign.add("content-length")
    hs = [(k.lower(), v) for k, v in resp.headers if k.lower() not in ign]
    # Order between different names is free; order among repeats is not.
    return sorted(hs, key=lambda kv: kv[0])


def check_one_row_per_request(proxy, sent):
    """After the proxy stopped (SIGTERM flushes the store): the table has
    exactly one row per request the class sent, whatever order its tests
    ran in."""
    tc = unittest.TestCase()
    rows = proxy.rows()
    got = collections.Counter(
        (r["method"], harness.as_bytes(r["path"]).decode("utf-8"), r["query"], r["status"])
        for r in rows)
    want = collections.Counter((e["method"], e["path"], e["query"], e["status"])
                               for e in sent)
    tc.assertEqual(len(rows), len(sent),
                   "rows vs requests sent: missing %s; extra %s"
                   % (dict(want - got), dict(got - want)))
    tc.assertEqual(got, want, "missing %s; extra %s" % (dict(want - got), dict(got - want)))
    by_key = collections.defaultdict(list)
    for r in rows:
        by_key[(r["method"], harness.as_bytes(r["path"]).decode("utf-8"), r["query"],
                r["status"])].append(r)
    for e in sent:
        key = (e["method"], e["path"], e["query"], e["status"])
        cands = by_key[key]
        if e["req_body_size"] is not None:
            tc.assertIn(e["req_body_size"], [r["req_body_size"] for r in cands], key)
        if e["resp_body_size"] is not None:
            tc.assertIn(e["resp_body_size"], [r["resp_body_size"] for r in cands], key)
    ids = [r["id"] for r in rows]
    tc.assertEqual(len(set(ids)), len(ids), "duplicate ids")
    for r in rows:
        tc.assertRegex(r["id"], UUID_RE)
        tc.assertGreater(r["started_at"], 1_600_000_000_000_000)
        tc.assertGreaterEqual(r["duration_us"], 0)
        tc.assertIsNone(r["error"], r)
        tc.assertEqual(r["node"], "test")


class ProxyCompare(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.make_tmpdir(cls.__name__)
        cls.direct = cls.behind = cls.proxy = None
        cls.sent = []  # one entry per request sent through restspy
        try:
            cls.direct = App(cls.tmp, "direct").start()
            cls.behind = App(cls.tmp, "behind").start()
            cls.proxy = Proxy(cls.tmp, cls.behind.url).start()
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.proxy is not None and cls.proxy.proc is not None:
                cls.proxy.check_stopped()
                check_one_row_per_request(cls.proxy, cls.sent)
        finally:
            for a in (cls.direct, cls.behind):
                if a is not None:
                    a.stop()
            harness.remove_tmpdir(cls.tmp)

    # ------------------------------------------------------------ helpers

    def expect_row(self, method, target, status, req_body_size=None, resp_body_size=None):
        path, sep, query = target.partition("?")
        self.sent.append({"method": method, "path": path, "query": query if sep else None,
                          "status": status, "req_body_size": req_body_size,
                          "resp_body_size": resp_body_size})

    def both(self, method, target, body=None, headers=None):
        """Sends the request to the direct app and through restspy; returns
        (direct, proxied) and records the expected row."""
        headers = [("Host", HOST)] + list(headers or [])
        d = request(self.direct.port, method, target, body=body, headers=headers)
        p = request(self.proxy.port, method, target, body=body, headers=headers)
        size = None
        if isinstance(body, (bytes, str)):
            size = len(body.encode() if isinstance(body, str) else body)
        elif isinstance(body, (dict, list)):
            size = len(json.dumps(body).encode())
        self.expect_row(method, target, p.status, size if size is not None else 0,
                        0 if method == "HEAD" else len(p.body))
        return d, p

    def assertSame(self, d, p, what=""):
        msg = "%s\ndirect:  %r\nproxied: %r" % (what, d, p)
        self.assertEqual(d.status, p.status, msg)
        db, dchanged = normalize_body(d.body)
        pb, pchanged = normalize_body(p.body)
        self.assertEqual(db, pb, msg)
        chunked = "chunked" in ",".join(d.header_all("Transfer-Encoding")).lower()
        # A body with a server timestamp may differ in length by a digit and
        # its ETag is a hash of it.
        drop = chunked or dchanged
        extra = ("etag",) if dchanged else ()
        self.assertEqual(e2e_headers(d, drop, extra), e2e_headers(p, drop, extra), msg)
        if chunked and p.header("Content-Length") is not None:
            self.assertEqual(int(p.header("Content-Length")), len(p.body), msg)

    def compare(self, method, target, body=None, headers=None, status=None):
        d, p = self.both(method, target, body, headers)
        self.assertSame(d, p, "%s %s" % (method, target))
        if status is not None:
            self.assertEqual(p.status, status, p)
        return d, p

    def echo_view(self, resp):
        """The echo JSON minus what a proxy changes by design."""
        doc = resp.json()
        doc["headers"] = [[k, v] for k, v in doc["headers"] if k.lower() not in IGNORED_REQ]
        return doc

    def echo_headers(self, resp):
        return [(k, v) for k, v in resp.json()["headers"]]

    def proxied_echo(self, method="GET", target="/api/echo/", body=None, headers=None):
        r = request(self.proxy.port, method, target, body=body, headers=headers)
        self.expect_row(method, target, r.status,
                        len(body) if isinstance(body, bytes) else 0, len(r.body))
        self.assertEqual(r.status, 200, r)
        return r

    # -------------------------------------------------------------- tests

    def test_all_methods_crud(self):
        slug = "crud"
        site = {"slug": slug, "name": "Crud site", "url": "https://crud.example.com/",
                "status": "up"}
        self.compare("POST", "/api/sites/", body=site, status=201)
        self.compare("GET", "/api/sites/", status=200)
        d, p = self.compare("GET", "/api/sites/%s/" % slug, status=200)
        self.compare("HEAD", "/api/sites/%s/" % slug, status=200)
        self.compare("OPTIONS", "/api/sites/", status=200)
        self.compare("OPTIONS", "/api/sites/%s/" % slug, status=200)
        self.compare("PUT", "/api/sites/%s/" % slug,
                     body={"name": "Crud 2", "url": "https://crud2.example.com/",
                           "status": "degraded"}, status=200)
        self.compare("PATCH", "/api/sites/%s/" % slug, body={"status": "down"}, status=200)
        mid = str(uuid.UUID(int=0x1234))
        metric = {"id": mid, "name": "latency_ms", "value": 12.5,
                  "recorded_at": "2026-01-02T03:04:05Z"}
        self.compare("POST", "/api/sites/%s/metrics/" % slug, body=metric, status=201)
        self.compare("POST", "/api/sites/%s/metrics/" % slug, body=metric, status=400)
        self.compare("GET", "/api/sites/%s/metrics/" % slug, status=200)
        self.compare("GET", "/api/metrics/%s/" % mid, status=200)
        self.compare("PUT", "/api/metrics/%s/" % mid,
                     body={"name": "latency_ms", "value": 13.0,
                           "recorded_at": "2026-01-02T03:04:06Z"}, status=200)
        self.compare("PATCH", "/api/metrics/%s/" % mid, body={"value": 14.25}, status=200)
        self.compare("DELETE", "/api/metrics/%s/" % mid, status=204)
        self.compare("GET", "/api/metrics/%s/" % mid, status=404)
        self.compare("DELETE", "/api/sites/%s/" % slug, status=204)
        self.compare("GET", "/api/sites/%s/" % slug, status=404)
        self.compare("POST", "/api/sites/", body=b"{not json",
                     headers=[("Content-Type", "application/json")], status=400)
        self.compare("PUT", "/api/sites/", body={}, status=405)
        # A form-encoded create.
        self.compare("POST", "/api/sites/",
                     body="slug=form&name=Form+site&url=https%3A%2F%2Fform.example.com%2F",
                     headers=[("Content-Type", "application/x-www-form-urlencoded")],
                     status=201)

    def test_status_codes_and_sizes(self):
        for code in (200, 201, 202, 301, 400, 401, 403, 404, 409, 418, 422, 429, 500, 502,
                     503):
            self.compare("GET", "/api/status/%d/" % code, status=code)
        self.compare("POST", "/api/status/201/", body=b'{"x":1}',
                     headers=[("Content-Type", "application/json")], status=201)
        self.compare("GET", "/api/big/?n=0", status=200)
        self.compare("GET", "/api/big/?n=1", status=200)
        self.compare("GET", "/api/big/?n=200000", status=200)
        self.compare("GET", "/api/big/?n=200000&stream=1", status=200)
        self.compare("HEAD", "/api/big/?n=5000", status=200)
        self.compare("GET", "/api/slow/?ms=50", status=200)

    def test_query_strings(self):
        for target in ("/api/echo/?a=1", "/api/echo/?a=1&a=2&b=", "/api/echo/?",
                       "/api/echo/?x=%20y%2Bz&e=%C3%A9&sp=a+b",
                       "/api/echo/?q=a/b?c=d", "/api/echo/?flag",
                       "/api/sites/?status=up", "/api/sites/?status=down&x=%00"):
            d, p = self.both("GET", target)
            self.assertEqual(d.status, p.status)
            if target.startswith("/api/echo/"):
                self.assertEqual(self.echo_view(d), self.echo_view(p), target)
            else:
                self.assertSame(d, p, target)

    def test_echo_requests_arrive_unchanged(self):
        cases = [
            ("GET", "/api/echo/", None, [("Accept", "application/json")]),
            ("DELETE", "/api/echo/x", None, [("Authorization", "Bearer abc")]),
            ("POST", "/api/echo/", b'{"a": [1, 2, {"b": "c"}]}',
             [("Content-Type", "application/json")]),
            ("PUT", "/api/echo/", b"plain text \xe2\x9c\x93",
             [("Content-Type", "text/plain; charset=utf-8")]),
            ("PATCH", "/api/echo/", b"", [("Content-Type", "application/json")]),
            ("OPTIONS", "/api/echo/", None, [("Origin", "http://x.example")]),
            ("PROPFIND", "/api/echo/dav", None, [("Depth", "1")]),
        ]
        for method, target, body, hdrs in cases:
            with self.subTest(method=method):
                d, p = self.both(method, target, body, hdrs)
                self.assertEqual(d.status, 200)
                self.assertEqual(p.status, 200, p)
                self.assertEqual(self.echo_view(d), self.echo_view(p))

    def test_chunked_upload(self):
        body_parts = [b"hello ", b"\x00\x01\xfe\xff chunked ", b"x" * 5000, b"world"]
        whole = b"".join(body_parts)
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in body_parts)
        chunked = chunked.replace(b"6\r\nhello", b"6;ext=1\r\nhello", 1) + b"0\r\n\r\n"
        req = (b"POST /api/echo/raw/ HTTP/1.1\r\nHost: " + HOST.encode() +
               b"\r\nContent-Type: application/x-test\r\nTransfer-Encoding: chunked\r\n\r\n" +
               chunked)
        d = raw_request(self.direct.port, req)[0]
        p = raw_request(self.proxy.port, req)[0]
        self.expect_row("POST", "/api/echo/raw/", 200, len(whole), len(whole))
        self.assertEqual(d.body, whole)
        self.assertEqual(p.status, 200, p)
        self.assertEqual(p.body, whole)
        self.assertEqual(p.header("Content-Type"), "application/x-test")

        # A chunked JSON create reaches the app whole.
        site = json.dumps({"slug": "chunky", "name": "Chunky", "url": "https://c.example/"})
        sb = site.encode()
        parts = [sb[:7], sb[7:20], sb[20:]]
        req = (b"POST /api/sites/ HTTP/1.1\r\nHost: " + HOST.encode() +
               b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
               b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in parts) + b"0\r\n\r\n")
        d = raw_request(self.direct.port, req)[0]
        p = raw_request(self.proxy.port, req)[0]
        self.expect_row("POST", "/api/sites/", 201, len(sb), len(p.body))
        self.assertEqual(d.status, 201, d)
        self.assertEqual(p.status, 201, p)
        self.assertEqual(normalize_body(d.body)[0], normalize_body(p.body)[0])

    def test_chunked_upload_echo_and_row(self):
        parts = [b"a" * 100, b"b" * 3, b"c"]
        req = (b"POST /api/echo/?chunked=1 HTTP/1.1\r\nHost: " + HOST.encode() +
               b"\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n" +
               b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in parts) + b"0\r\n\r\n")
        p = raw_request(self.proxy.port, req)[0]
        self.expect_row("POST", "/api/echo/?chunked=1", p.status, 104, len(p.body))
        self.assertEqual(p.status, 200, p)
        doc = p.json()
        self.assertEqual(doc["body"], "a" * 100 + "bbbc")
        self.assertEqual(doc["body_size"], 104)

    def test_body_over_capture_cap(self):
        body = bytes((i * 7 + 3) % 256 for i in range(100_000))
        hdrs = [("Content-Type", "application/octet-stream"), ("X-Test", "over-cap")]
        d, p = self.compare("POST", "/api/echo/raw/", body=body, headers=hdrs, status=200)
        self.assertEqual(p.body, body)
        self.proxy_row_check = True
        rows = self.proxy.wait_rows(
            1, "path = '/api/echo/raw/' AND req_headers LIKE '%over-cap%'")
        self.assertEqual(len(rows), 1, rows)
        row = rows[0]
        self.assertEqual(row["req_body_size"], 100_000)
        self.assertEqual(row["req_truncated"], 1)
        stored = harness.as_bytes(row["req_body"])
        self.assertEqual(len(stored), CAP)
        self.assertEqual(stored, body[:CAP])
        self.assertEqual(row["resp_body_size"], 100_000)
        resp_stored = harness.as_bytes(row["resp_body"])
        self.assertLessEqual(len(resp_stored), 100_000)
        self.assertEqual(resp_stored, body[:len(resp_stored)])
        self.assertEqual(bool(row["resp_truncated"]), len(resp_stored) < 100_000)

    def test_binary_body(self):
        body = bytes(range(256)) * 3
        hdrs = [("Content-Type", "application/octet-stream"), ("X-Test", "binary")]
        d, p = self.compare("PUT", "/api/echo/raw/", body=body, headers=hdrs, status=200)
        self.assertEqual(p.body, body)
        rows = self.proxy.wait_rows(1, "req_headers LIKE '%binary%'")
        self.assertEqual(len(rows), 1)
        self.assertEqual(harness.as_bytes(rows[0]["req_body"]), body)
        self.assertEqual(harness.as_bytes(rows[0]["resp_body"]), body)
        self.assertEqual(rows[0]["req_body_size"], len(body))
        self.assertEqual(rows[0]["req_truncated"], 0)

    def test_percent_encoded_paths(self):
        target = "/api/echo/caf%C3%A9/%E2%9C%93/a%20b?q=%C3%BC"
        d, p = self.both("GET", target, headers=[("X-Test", "pct-path")])
        self.assertEqual(self.echo_view(d), self.echo_view(p))
        self.assertEqual(p.json()["path"], "/api/echo/caf\u00e9/\u2713/a b")
        self.assertEqual(p.json()["raw_path"], "/api/echo/caf%C3%A9/%E2%9C%93/a%20b")
        rows = self.proxy.wait_rows(1, "req_headers LIKE '%pct-path%'")
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0]["path"], "/api/echo/caf%C3%A9/%E2%9C%93/a%20b")
        self.assertEqual(rows[0]["query"], "q=%C3%BC")

    def test_raw_utf8_path(self):
        req = ("GET /api/echo/caf\u00e9/\u2603?w=\u00fc HTTP/1.1\r\nHost: %s\r\n"
               "X-Test: utf8-path\r\n\r\n" % HOST).encode("utf-8")
        d = raw_request(self.direct.port, req)[0]
        p = raw_request(self.proxy.port, req)[0]
        self.expect_row("GET", "/api/echo/caf\u00e9/\u2603?w=\u00fc", p.status, 0, len(p.body))
        self.assertEqual(p.status, 200, p)
        self.assertEqual(self.echo_view(d), self.echo_view(p))
        self.assertEqual(p.json()["path"], "/api/echo/caf\u00e9/\u2603")
        rows = self.proxy.wait_rows(1, "req_headers LIKE '%utf8-path%'")
        self.assertEqual(len(rows), 1)
        self.assertEqual(harness.as_bytes(rows[0]["path"]).decode("utf-8"),
                         "/api/echo/caf\u00e9/\u2603")

    def test_repeated_headers(self):
        hdrs = [("X-Multi", "first"), ("X-Other", "o"), ("X-Multi", "second, with comma")]
        r = self.proxied_echo(headers=hdrs + [("X-Test", "repeated")])
        got = [v for k, v in self.echo_headers(r) if k.lower() == "x-multi"]
        self.assertEqual(got, ["first", "second, with comma"])
        rows = self.proxy.wait_rows(1, "req_headers LIKE '%repeated%'")
        self.assertEqual(len(rows), 1)
        stored = [v for k, v in harness.headers_of(rows[0]["req_headers"])
                  if k.lower() == "x-multi"]
        self.assertEqual(stored, ["first", "second, with comma"])

    def test_pipelining(self):
        reqs = (b"GET /api/echo/?n=1 HTTP/1.1\r\nHost: a\r\n\r\n"
                b"POST /api/echo/raw/ HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\n"
                b"Content-Length: 11\r\n\r\nsecond body"
                b"GET /api/status/201/ HTTP/1.1\r\nHost: a\r\n\r\n")
        with RawConn(self.proxy.port) as c:
            c.send(reqs)
            r1 = c.read_response()
            r2 = c.read_response()
            r3 = c.read_response()
            # The connection is still usable afterwards.
            c.send(b"GET /api/status/202/ HTTP/1.1\r\nHost: a\r\n\r\n")
            r4 = c.read_response()
        self.expect_row("GET", "/api/echo/?n=1", r1.status, 0, len(r1.body))
        self.expect_row("POST", "/api/echo/raw/", r2.status, 11, len(r2.body))
        self.expect_row("GET", "/api/status/201/", r3.status, 0, len(r3.body))
        self.expect_row("GET", "/api/status/202/", r4.status, 0, len(r4.body))
        self.assertEqual(r1.status, 200)
        self.assertEqual(r1.json()["query"], "n=1")
        self.assertEqual((r2.status, r2.body), (200, b"second body"))
        self.assertEqual(r3.status, 201)
        self.assertEqual(r3.json(), {"status": 201})
        self.assertEqual(r4.status, 202)

    def test_keepalive_reuse(self):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=10)
        try:
            socks = set()
            for i in range(20):
                target = "/api/echo/?i=%d" % i
                if i % 3 == 0:
                    r = request(None, "POST", target, body=b"x" * i, conn=conn)
                    self.expect_row("POST", target, r.status, i, len(r.body))
                else:
                    r = request(None, "GET", target, conn=conn)
                    self.expect_row("GET", target, r.status, 0, len(r.body))
                self.assertEqual(r.status, 200)
                self.assertEqual(r.json()["query"], "i=%d" % i)
                self.assertIsNotNone(conn.sock, "restspy closed a keep-alive connection")
                socks.add(conn.sock.getsockname())
            self.assertEqual(len(socks), 1, "requests used %d connections" % len(socks))
        finally:
            conn.close()

    def test_head_has_no_body(self):
        # HEAD then GET pipelined on one connection: a HEAD response with body
        # bytes would corrupt the second response.
        with RawConn(self.proxy.port) as c:
            c.send(b"HEAD /api/big/?n=3000 HTTP/1.1\r\nHost: a\r\n\r\n"
                   b"GET /api/status/200/ HTTP/1.1\r\nHost: a\r\n\r\n")
            h = c.read_response("HEAD")
            g = c.read_response("GET")
        self.expect_row("HEAD", "/api/big/?n=3000", h.status, 0, 0)
        self.expect_row("GET", "/api/status/200/", g.status, 0, len(g.body))
        self.assertEqual(h.status, 200)
        self.assertEqual(h.header("Content-Length"), "3000")
        self.assertEqual(h.body, b"")
        self.assertEqual(g.status, 200)
        self.assertEqual(g.json(), {"status": 200})
        # Streamed response: HEAD still bodyless.
        with RawConn(self.proxy.port) as c:
            c.send(b"HEAD /api/big/?n=3000&stream=1 HTTP/1.1\r\nHost: a\r\n\r\n"
                   b"GET /api/status/200/ HTTP/1.1\r\nHost: a\r\n\r\n")
            h = c.read_response("HEAD")
            g = c.read_response("GET")
        self.expect_row("HEAD", "/api/big/?n=3000&stream=1", h.status, 0, 0)
        self.expect_row("GET", "/api/status/200/", g.status, 0, len(g.body))
        self.assertEqual(h.status, 200)
        self.assertEqual(g.json(), {"status": 200})

    def test_204_and_304(self):
        self.compare("DELETE", "/api/status/204/", status=204)
        with RawConn(self.proxy.port) as c:
            c.send(b"GET /api/status/204/ HTTP/1.1\r\nHost: a\r\n\r\n"
                   b"GET /api/status/304/ HTTP/1.1\r\nHost: a\r\n\r\n"
                   b"GET /api/status/200/ HTTP/1.1\r\nHost: a\r\n\r\n")
            r204 = c.read_response()
            r304 = c.read_response()
            r200 = c.read_response()
        for r, t in ((r204, "/api/status/204/"), (r304, "/api/status/304/"),
                     (r200, "/api/status/200/")):
            self.expect_row("GET", t, r.status, 0, len(r.body))
        self.assertEqual(r204.status, 204)
        self.assertEqual(r304.status, 304)
        self.assertEqual(r200.json(), {"status": 200})
        self.assertIsNone(r204.header("Transfer-Encoding"))
        self.assertIn(r204.header("Content-Length"), (None, "0"))

        # A real conditional GET.
        self.compare("POST", "/api/sites/",
                     body={"slug": "etag", "name": "E", "url": "https://e.example/"},
                     status=201)
        p = request(self.proxy.port, "GET", "/api/sites/etag/")
        self.expect_row("GET", "/api/sites/etag/", p.status, 0, len(p.body))
        etag = p.header("ETag")
        self.assertTrue(etag)
        p2 = request(self.proxy.port, "GET", "/api/sites/etag/",
                     headers=[("If-None-Match", etag)])
        self.expect_row("GET", "/api/sites/etag/", p2.status, 0, 0)
        self.assertEqual(p2.status, 304)
        self.assertEqual(p2.body, b"")
        self.assertEqual(p2.header("ETag"), etag)

    def test_forwarded_headers(self):
        r = self.proxied_echo(target="/api/echo/?fwd=1")
        hs = self.echo_headers(r)
        low = collections.defaultdict(list)
        for k, v in hs:
            low[k.lower()].append(v)
        self.assertEqual(low["x-forwarded-for"], ["127.0.0.1"])
        self.assertEqual(low["x-forwarded-proto"], ["http"])
        self.assertEqual(len(low["x-request-id"]), 1, hs)
        rid = low["x-request-id"][0]
        self.assertRegex(rid, UUID_RE)
        self.assertEqual(low["host"], ["127.0.0.1:%d" % self.proxy.port],
                         "the client's Host header must be kept")
        rows = self.proxy.wait_rows(1, "id = ?", (rid,))
        self.assertEqual(len(rows), 1, "no row with id = X-Request-Id %s" % rid)
        self.assertEqual(rows[0]["path"], "/api/echo/")
        self.assertEqual(rows[0]["query"], "fwd=1")
        self.assertEqual(rows[0]["client_addr"].rsplit(":", 1)[0], "127.0.0.1")
        self.assertEqual(rows[0]["node"], "test")
        self.assertEqual(rows[0]["scheme"], "http")
        self.assertEqual(rows[0]["origin"], "local")
        self.assertEqual(rows[0]["rule"], "default")
        self.assertIsNone(rows[0]["error"])

        # A client-sent X-Request-Id is kept (and not duplicated).
        mine = "client-req-42"
        r = self.proxied_echo(target="/api/echo/?fwd=2", headers=[("X-Request-Id", mine)])
        ids = [v for k, v in self.echo_headers(r) if k.lower() == "x-request-id"]
        self.assertEqual(ids, [mine])

    def test_hop_by_hop_headers_not_forwarded(self):
        req = (b"GET /api/echo/?hop=1 HTTP/1.1\r\nHost: a\r\n"
               b"Connection: keep-alive, Foo, X-Drop-Me\r\n"
               b"Foo: bar\r\nX-Drop-Me: 1\r\nKeep-Alive: timeout=5, max=100\r\n"
               b"TE: trailers\r\nX-Keep: yes\r\n\r\n")
        p = raw_request(self.proxy.port, req)[0]
        self.expect_row("GET", "/api/echo/?hop=1", p.status, 0, len(p.body))
        self.assertEqual(p.status, 200, p)
        names = {k.lower(): v for k, v in self.echo_headers(p)}
        for h in ("foo", "x-drop-me", "keep-alive", "te"):
            self.assertNotIn(h, names, "hop-by-hop header %s was forwarded" % h)
        conn = names.get("connection", "").lower()
        self.assertNotIn("foo", conn)
        self.assertNotIn("x-drop-me", conn)
        self.assertEqual(names.get("x-keep"), "yes")


if __name__ == "__main__":
    unittest.main()
