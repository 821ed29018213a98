"""Export and import (issue 9): what leaves the store must be the request
that was recorded.

Item 3: the curl script `restspy export --curl` writes is RUN (bash) against
an echo backend that records the exact bytes it receives; every body
(multipart, binary with NUL bytes, unicode, empty, starting with '-' or '@',
gzip-encoded) must arrive as it arrived the first time, when the requests
went through the proxy to the same backend. A request whose body was not
stored is a comment in the script, never a request with another body."""
import gzip
import json
import os
import subprocess
import unittest
from http.server import BaseHTTPRequestHandler

import harness


class Echo(BaseHTTPRequestHandler):
    """Records (method, target, headers, body bytes) of every request on the
    server's `seen` list and answers 200 {"n": <body length>}."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                data = self.rfile.read(size + 2)[:size]
                out += data
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self):
        body = self._body()
        with self.server.lock:
            self.server.seen.append((self.command, self.path, list(self.headers.items()), body))
        out = json.dumps({"n": len(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


MULTIPART = (b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
             b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\n"
             b"Content-Type: application/octet-stream\r\n\r\n\x00\x01\xff'%\\\r\n--XyZ--\r\n")

# (path, method, headers, body): each path names its request.
BODIES = [
    ("/multipart", "POST", [("Content-Type", "multipart/form-data; boundary=XyZ")], MULTIPART),
    ("/binary", "PUT", [("Content-Type", "application/octet-stream")], bytes(range(256)) * 3),
    ("/unicode", "POST", [("Content-Type", "application/json")],
     json.dumps({"text": "h\u00e9llo \u2713 \U0001F600 'q' \"d\" $HOME `x` %s \\n"},
                ensure_ascii=False).encode()),
    ("/empty", "POST", [("Content-Type", "text/plain")], b""),
    ("/dash", "POST", [("Content-Type", "text/plain")], b"-v --data @/etc/passwd"),
    ("/at", "POST", [("Content-Type", "text/plain")], b"@/etc/passwd"),
    ("/gzip", "POST", [("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
     gzip.compress(b'{"items":[1,2,3],"note":"sent gzipped"}')),
]
# Redaction is on: a body restspy cannot decode is not stored ("dropped").
DAMAGED = ("/damaged", "POST", [("Content-Type", "application/json"),
                                ("Content-Encoding", "gzip")], b"not gzip at all")


def decoded(headers, body):
    enc = [v for k, v in headers if k.lower() == "content-encoding"]
    return gzip.decompress(body) if enc == ["gzip"] else body


class CurlExport(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.make_tmpdir("export")
        cls.echo = harness.start_backend(Echo)
        try:
            proxy = harness.Proxy(cls.tmp, cls.echo.url, log=False).start()
            try:
                for path, method, headers, body in BODIES + [DAMAGED]:
                    r = proxy.request(method, path, body=body, headers=headers)
                    if r.status != 200:
                        raise AssertionError("%s answered %s" % (path, r.status))
            finally:
                proxy.check_stopped()
            cls.store = "sqlite:" + proxy.db_path
            cls.first = {s[1]: s for s in cls.echo.seen}
        except Exception:
            harness.stop_backend(cls.echo)
            harness.remove_tmpdir(cls.tmp)
            raise

    @classmethod
    def tearDownClass(cls):
        harness.stop_backend(cls.echo)
        harness.remove_tmpdir(cls.tmp)

    def test_bad_target_is_refused(self):
        for target in ("ftp://x", "127.0.0.1:8000", "http://"):
            p = harness.run_cli(["export", "--curl", "--store", self.store, "--target", target])
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertEqual(p.stderr, "restspy export: bad value for --target: '%s' "
                             "(expected http://host:port)\n" % target)
            self.assertEqual(p.stdout, "")

    def test_script_replays_every_body_byte_for_byte(self):
        p = harness.run_cli(["export", "--curl", "--store", self.store, "--target", self.echo.url])
        self.assertEqual(p.returncode, 0, p.stderr)
        script = os.path.join(self.tmp, "replay.sh")
        with open(script, "w") as f:
            f.write(p.stdout)
        with self.echo.lock:
            del self.echo.seen[:]
        run = subprocess.run(["bash", script], capture_output=True, timeout=60,
                             stdin=subprocess.DEVNULL)
        self.assertEqual(run.returncode, 0, run.stderr)
        again = {s[1]: s for s in self.echo.seen}
        self.assertEqual(sorted(again), sorted(b[0] for b in BODIES),
                         "the not-stored request must not be sent")
        for path, method, headers, body in BODIES:
            m1, _, h1, b1 = self.first[path]
            m2, _, h2, b2 = again[path]
            self.assertEqual(b1, body, path)  # the proxy forwarded it unchanged
            self.assertEqual(m2, method, path)
            # The same bytes; a gzip body (stored decoded) is encoded again
            # under its header, so it is the same once decoded.
            self.assertEqual(decoded(h2, b2), decoded(h1, b1), path)
            ct = lambda h: [v for k, v in h if k.lower() in ("content-type", "content-encoding")]
            self.assertEqual(ct(h2), ct(h1), path)
        self.assertEqual([v for k, v in again["/empty"][2] if k.lower() == "content-length"],
                         ["0"])
        self.assertNotEqual(again["/gzip"][3], decoded(again["/gzip"][2], again["/gzip"][3]))

        # The request whose body was not stored: one comment line saying why.
        lines = [ln for ln in p.stdout.split("\n") if ln]
        self.assertEqual(len(lines), len(BODIES) + 1, p.stdout)
        (comment,) = [ln for ln in lines if ln.startswith("#")]
        self.assertIn("/damaged", comment)
        self.assertIn("request body was not stored (dropped: gzip:", comment)
        self.assertIn("1 request written as a comment", p.stderr)


def chrome_entry(url, started, status=200, text='{"ok":true}', **extra):
    """A HAR entry as Chrome's devtools write it (no restspy id)."""
    e = {"startedDateTime": started, "time": 12.5, "_priority": "High",
         "request": {"method": "GET", "url": url, "httpVersion": "http/2.0",
                     "headers": [{"name": ":authority", "value": "shop.example"},
                                 {"name": "accept", "value": "application/json"}],
                     "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 0},
         "response": {"status": status, "statusText": "", "httpVersion": "http/2.0",
                      "headers": [{"name": "content-type", "value": "application/json"}],
                      "cookies": [], "content": {"size": len(text), "mimeType": "application/json",
                                                 "text": text},
                      "redirectURL": "", "headersSize": -1, "bodySize": -1,
                      "_transferSize": 200, "_error": None},
         "cache": {}, "timings": {"blocked": 1, "dns": -1, "ssl": -1, "connect": -1,
                                  "send": 0.5, "wait": 10, "receive": 2}}
    e.update(extra)
    return e


def write_har(path, entries):
    with open(path, "w") as f:
        json.dump({"log": {"version": "1.2", "creator": {"name": "WebInspector",
                                                         "version": "537.36"},
                           "pages": [], "entries": entries}}, f)


class HarImport(unittest.TestCase):
    def setUp(self):
        self.tmp = harness.make_tmpdir("har-import")
        self.addCleanup(harness.remove_tmpdir, self.tmp)
        self.store = "sqlite:" + os.path.join(self.tmp, "store.db")

    def cli(self, *args):
        p = harness.run_cli(list(args))
        self.assertIsNone(harness.sanitizer_report(p.stderr), p.stderr)
        return p

    def count_rows(self):
        return len(harness.rows(self.store[len("sqlite:"):]))

    def test_browser_har_imported_twice_is_stored_once(self):
        # Item 7: a browser HAR carries no restspy ids.
        har = os.path.join(self.tmp, "site.har")
        same = chrome_entry("https://shop.example/api/items", "2026-11-27T05:46:18.123Z")
        write_har(har, [same,
                        chrome_entry("https://shop.example/api/cart", "2026-11-27T05:46:18.400Z"),
                        # the same request twice in one millisecond: two rows
                        dict(same)])
        p = self.cli("import", "--har", har, "--store", self.store)
        self.assertEqual((p.returncode, p.stdout), (0, "imported 3 requests\n"), p.stderr)
        p = self.cli("import", "--har", har, "--store", self.store)
        self.assertEqual((p.returncode, p.stdout),
                         (0, "imported 0 requests (3 already in the store, skipped)\n"), p.stderr)
        self.assertEqual(self.count_rows(), 3)
        # Rows keep time order by id, as captured ones do.
        rows = harness.rows(self.store[len("sqlite:"):])
        self.assertEqual([r["path"] for r in sorted(rows, key=lambda r: r["id"])],
                         ["/api/items", "/api/items", "/api/cart"])


    def test_browser_cache_hits_are_left_out(self):
        # Item 9: entries the browser answered from its cache (no request
        # went out) are not stored or replayed unless --keep-cached.
        echo = harness.start_backend(Echo)
        self.addCleanup(harness.stop_backend, echo)
        answer = '{"n": 0}'  # what the echo backend answers a GET
        t = "2026-11-27T05:46:%02d.000Z"
        net = chrome_entry(echo.url + "/net", t % 1, text=answer)
        memory = chrome_entry(echo.url + "/memory", t % 2, text=answer, _fromCache="memory")
        memory["response"]["_transferSize"] = 0
        disk = chrome_entry(echo.url + "/disk", t % 3, text=answer)
        disk["response"]["_transferSize"] = 0
        har = os.path.join(self.tmp, "cached.har")
        write_har(har, [net, memory, disk])

        p = self.cli("replay", "--har", har, "--target", echo.url)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertTrue(p.stdout.startswith("1 request: 1 matched"), p.stdout)
        self.assertIn("2 browser cache hits in %s left out" % har, p.stderr)
        self.assertEqual([s[1] for s in echo.seen], ["/net"])
        p = self.cli("replay", "--har", har, "--target", echo.url, "--keep-cached")
        self.assertTrue(p.stdout.startswith("3 requests: 3 matched"), p.stdout)

        p = self.cli("import", "--har", har, "--store", self.store)
        self.assertEqual(p.stdout, "imported 1 request (2 browser cache hits left out: no "
                                   "request went out; --keep-cached keeps them)\n", p.stderr)
        p = self.cli("import", "--har", har, "--store", self.store, "--keep-cached")
        self.assertEqual(p.stdout, "imported 2 requests (1 already in the store, skipped)\n")
        self.assertEqual(self.count_rows(), 3)


if __name__ == "__main__":
    unittest.main()
