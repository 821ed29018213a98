"""The admin API the web console reads (issue 13): a page of captured
requests with the filters of `restspy requests` (the same implementation,
reqfilter), paging by next_until, one request whole, and the errors a
console can get: a bad filter, an unknown parameter, a missing id, a store
that is off, a missing token."""
import json
import socket
import time
import urllib.parse
import uuid

import harness


class ConsoleApi(harness.ProxyTestCase):
    ADMIN_TOKEN = "console-token"

    def api(self, endpoint, **params):
        q = urllib.parse.urlencode(params)
        return self.proxy.admin("GET", endpoint + ("?" + q if q else ""))

    def send(self, n, marker, method="GET", status=200):
        """n requests carrying marker; their ids, oldest first."""
        for i in range(n):
            r = self.proxy.request(method, "/api/status/%d/?m=%s&i=%d" % (status, marker, i),
                                   body={} if method != "GET" else None)
            self.assertEqual(r.status, status, r)
        rows = self.proxy.wait_rows(n, "query LIKE ?", ("%m=" + marker + "%",))
        self.assertEqual(len(rows), n)
        return [row["id"] for row in sorted(rows, key=lambda row: row["started_at"])]

    def test_pages_newest_first_with_filters(self):
        marker = uuid.uuid4().hex[:10]
        ids = self.send(5, marker)
        got, until = [], None
        while True:
            params = {"path": "/api/status/*/", "limit": 2, "method": "get", "status": "2xx"}
            if until:
                params["until"] = until
            r = self.api("/api/requests", **params)
            self.assertEqual(r.status, 200, r)
            doc = r.json()
            got += [x["id"] for x in doc["requests"] if "m=" + marker in (x["query"] or "")]
            self.assertLessEqual(len(doc["requests"]), 2)
            if not doc["more"]:
                self.assertIsNone(doc["next_until"])
                break
            until = doc["next_until"]
        self.assertEqual(got, list(reversed(ids)))  # newest first, each once
        one = self.api("/api/requests", limit=1).json()["requests"][0]
        for key in ("id", "time", "method", "path", "status", "duration_us", "origin", "rule"):
            self.assertIn(key, one)
        self.assertNotIn("req_headers", one)  # the list is light; the detail is whole

    def test_other_filters_narrow(self):
        marker = uuid.uuid4().hex[:10]
        self.send(2, marker, method="POST", status=201)
        self.send(1, marker + "x", status=404)
        posts = self.api("/api/requests", method="POST", status="201", limit=1000).json()
        self.assertTrue(posts["requests"])
        self.assertTrue(all(x["method"] == "POST" and x["status"] == 201
                            for x in posts["requests"]))
        nf = self.api("/api/requests", status="404", origin="local", since="10m").json()
        self.assertTrue(any("m=" + marker + "x" in (x["query"] or "") for x in nf["requests"]))
        self.assertEqual(self.api("/api/requests", status="404", until="1d").json()["requests"],
                         [])

    def test_detail_whole_by_id_or_its_end(self):
        marker = uuid.uuid4().hex[:10]
        rid = self.send(1, marker, method="POST", status=201)[0]
        for key in (rid, rid[-10:]):
            r = self.api("/api/requests/" + key)
            self.assertEqual(r.status, 200, r)
            doc = r.json()
            self.assertEqual(doc["id"], rid)
            self.assertIn("req_headers", doc)
            self.assertIn("resp_body", doc)

    def test_har_and_curl_of_one(self):
        marker = uuid.uuid4().hex[:10]
        rid = self.send(1, marker, method="POST", status=201)[0]
        r = self.api("/api/requests/%s/har" % rid[-8:])
        self.assertEqual(r.status, 200, r)
        self.assertIn('attachment; filename="restspy-%s.har"' % rid,
                      r.header("Content-Disposition"))
        har = r.json()
        self.assertEqual(har["log"]["version"], "1.2")
        self.assertEqual(len(har["log"]["entries"]), 1)
        self.assertIn("m=" + marker, har["log"]["entries"][0]["request"]["url"])
        r = self.api("/api/requests/%s/curl" % rid)
        self.assertEqual(r.status, 200, r)
        line = r.body.decode()
        self.assertTrue(line.startswith("curl "), line)
        self.assertIn("http://127.0.0.1:%d/api/status/201/?m=%s" % (self.proxy.port, marker), line)
        r = self.api("/api/requests/%s/curl" % rid, target="https://staging.example:8443/")
        self.assertIn("https://staging.example:8443/api/status/201/", r.body.decode())
        r = self.api("/api/requests/%s/curl" % rid, target="ftp://x")
        self.assertEqual(r.status, 400, r)
        self.assertIn("bad value for target: 'ftp://x' (expected http://host:port)",
                      r.json()["error"])
        r = self.api("/api/requests/%s/pdf" % rid)
        self.assertEqual(r.status, 404, r)

    def test_replication_figures(self):
        """Without --amqp: no publisher, and the store's figures as `restspy
        replication status --json` prints them (one implementation)."""
        r = self.api("/api/replication")
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertIsNone(doc["publisher"])
        cli = harness.run_cli(["replication", "status", "--json", "--store",
                               "sqlite:" + self.proxy.db_path])
        self.assertEqual(cli.returncode, 0, cli.stderr)
        want = json.loads(cli.stdout)
        for key in ("outbox_depth", "published", "applied", "dead_lettered", "stuck_total",
                    "lag", "retry_max_attempts"):
            self.assertEqual(doc[key], want[key], key)
        self.assertEqual(self.api("/api/replication", window="1h").json()["lag"]["window_s"],
                         3600.0)
        r = self.api("/api/replication", window="soon")
        self.assertEqual(r.status, 400, r)
        r = self.api("/api/replication", colour="red")
        self.assertEqual(r.status, 400, r)
        self.assertIn("expected window=DURATION", r.json()["error"])

    def test_replay_one_request(self):
        """The console's "replay this request": the same report as `restspy
        replay --report json`, for a match, a mismatch and an error."""
        marker = uuid.uuid4().hex[:10]
        rid = self.send(1, marker, status=200)[0]

        def replay(target, **kw):
            return self.proxy.admin("POST", "/api/requests/%s/replay?%s" % (
                rid[-10:], urllib.parse.urlencode({"target": target})), **kw)
        r = replay(self.app.url)
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual(doc["counts"]["matched"], 1, doc)
        self.assertEqual(doc["results"][0]["id"], rid)
        self.assertEqual(doc["results"][0]["outcome"], "match")

        class Other(__import__("http.server").server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b'{"other": true}'
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass
        other = harness.start_backend(Other)
        self.addCleanup(harness.stop_backend, other)
        doc = replay(other.url).json()
        self.assertEqual(doc["results"][0]["outcome"], "mismatch", doc)
        self.assertEqual(doc["results"][0]["status_actual"], 503)
        port = harness.free_port()
        doc = replay("http://127.0.0.1:%d" % port).json()
        self.assertEqual(doc["results"][0]["outcome"], "error", doc)
        self.assertIn("connection refused", doc["results"][0]["detail"])
        r = self.proxy.admin("POST", "/api/requests/%s/replay" % rid)
        self.assertEqual(r.status, 400, r)
        self.assertIn("target=URL is needed", r.json()["error"])
        r = replay(self.app.url, headers={"Origin": "http://evil.example"})
        self.assertEqual(r.status, 403, r)
        r = self.proxy.admin("POST", "/api/requests/%s/other" % rid)
        self.assertEqual(r.status, 404, r)

    def test_errors(self):
        cases = [
            ({"status": "7xx"}, "bad value for status: '7xx'"),
            ({"method": "GE T"}, "bad value for method"),
            ({"since": "2026-02-30"}, "bad value for since"),
            ({"since": "1h", "until": "2h"}, "since 1h is not before until 2h"),
            ({"colour": "red"}, "unknown parameter 'colour'"),
            ({"limit": "0"}, "bad value for limit"),
            ({"limit": "5000"}, "bad value for limit"),
        ]
        for params, text in cases:
            r = self.api("/api/requests", **params)
            self.assertEqual(r.status, 400, (params, r))
            self.assertIn(text, r.json()["error"])
        r = self.api("/api/requests/ffffffffffff")
        self.assertEqual(r.status, 404, r)
        self.assertIn("no request with id", r.json()["error"])
        r = self.api("/api/requests/ab")
        self.assertEqual(r.status, 400, r)
        r = self.proxy.admin("GET", "/api/requests", auth=False)
        self.assertEqual(r.status, 401, r)
        r = self.proxy.admin("PUT", "/api/requests", body={})
        self.assertEqual(r.status, 405, r)


class LiveStream:
    """A client of GET /api/live reading its Server-Sent Events."""

    def __init__(self, proxy, **params):
        q = urllib.parse.urlencode(params)
        self.s = socket.create_connection(("127.0.0.1", proxy.admin_port), timeout=10)
        self.s.sendall(("GET /api/live%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                        "Authorization: Bearer %s\r\n\r\n"
                        % ("?" + q if q else "", proxy.admin_port, proxy.admin_token)).encode())
        self.data = b""
        while b"\r\n\r\n" not in self.data:
            self.data += self.s.recv(4096)
        self.head, _, self.data = self.data.partition(b"\r\n\r\n")

    def events(self, until, timeout=5.0):
        """(event, data) pairs read until until(events) holds or timeout."""
        out = []
        end = time.monotonic() + timeout
        while not until(out) and time.monotonic() < end:
            while b"\n\n" in self.data:
                block, _, self.data = self.data.partition(b"\n\n")
                ev = {}
                for line in block.decode().split("\n"):
                    if line.startswith("event: "):
                        ev["event"] = line[7:]
                    elif line.startswith("data: "):
                        ev["data"] = json.loads(line[6:])
                if "event" in ev:
                    out.append((ev["event"], ev.get("data")))
            if until(out):
                break
            self.s.settimeout(max(0.05, end - time.monotonic()))
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                break
            self.data += chunk
        return out

    def close(self):
        self.s.close()


class Live(harness.ProxyTestCase):
    ADMIN_TOKEN = "live-token"

    def test_request_appears_within_a_second_filtered(self):
        marker = uuid.uuid4().hex[:10]
        live = LiveStream(self.proxy, method="POST", path="/api/status/*/")
        self.addCleanup(live.close)
        self.assertIn(b"text/event-stream", live.head)
        self.proxy.request("GET", "/api/status/200/?m=" + marker)  # filtered out
        t0 = time.monotonic()
        self.proxy.request("POST", "/api/status/201/?m=" + marker, body={})
        evs = live.events(lambda e: any(k == "request" for k, _ in e), timeout=5)
        self.assertLess(time.monotonic() - t0, 1.5)
        reqs = [d for k, d in evs if k == "request"]
        self.assertEqual(len(reqs), 1, evs)
        self.assertEqual(reqs[0]["method"], "POST")
        self.assertEqual(reqs[0]["status"], 201)
        self.assertEqual(reqs[0]["query"], "m=" + marker)
        self.assertNotIn("req_headers", reqs[0])

    def test_rate_limited_with_a_skipped_note(self):
        live = LiveStream(self.proxy, rate=2, path="/api/status/*/")
        self.addCleanup(live.close)
        for _ in range(8):
            self.proxy.request("GET", "/api/status/200/")
        evs = live.events(lambda e: any(k == "skipped" for k, _ in e), timeout=5)
        reqs = [d for k, d in evs if k == "request"]
        skipped = sum(d["count"] for k, d in evs if k == "skipped")
        self.assertLessEqual(len(reqs), 3, evs)
        self.assertEqual(len(reqs) + skipped, 8, evs)

    def test_closed_stream_and_bad_parameters(self):
        live = LiveStream(self.proxy)
        live.close()
        # the proxy goes on serving, and a new stream works
        self.assertEqual(self.proxy.request("GET", "/api/status/200/").status, 200)
        again = LiveStream(self.proxy)
        self.addCleanup(again.close)
        self.proxy.request("GET", "/api/status/204/")
        evs = again.events(lambda e: any(k == "request" for k, _ in e))
        self.assertTrue(evs)
        for params, text in (({"rate": "0"}, "bad value for rate"),
                             ({"status": "9xx"}, "bad value for status"),
                             ({"limit": "5"}, "limit does not apply to a live stream"),
                             ({"colour": "red"}, "unknown parameter 'colour'")):
            r = self.proxy.admin("GET", "/api/live?" + urllib.parse.urlencode(params))
            self.assertEqual(r.status, 400, r)
            self.assertIn(text, r.json()["error"])


class CrossSite(harness.ProxyTestCase):
    """Without a token (loopback), a page of another site could still send a
    simple POST or PUT to the admin: changes are refused unless they come
    from the admin's own origin or from a tool (no Origin at all)."""

    def test_cross_site_changes_refused(self):
        own = "http://127.0.0.1:%d" % self.proxy.admin_port
        for headers in ({"Origin": "http://evil.example"},
                        {"Origin": "null"},
                        {"Sec-Fetch-Site": "cross-site"},
                        {"Sec-Fetch-Site": "same-site", "Origin": own}):
            r = self.proxy.admin("PUT", "/flags", body={"log": False}, headers=headers)
            self.assertEqual(r.status, 403, (headers, r))
            self.assertIn("cross-site request refused", r.json()["error"])
        self.assertTrue(self.proxy.admin("GET", "/flags").json()["log"])
        for headers in ({}, {"Origin": own, "Sec-Fetch-Site": "same-origin"}):
            r = self.proxy.admin("PUT", "/flags", body={"log": True}, headers=headers)
            self.assertEqual(r.status, 200, (headers, r))
        # reads stay open to any page's requests (their answers are not readable there)
        r = self.proxy.admin("GET", "/flags", headers={"Origin": "http://evil.example"})
        self.assertEqual(r.status, 200, r)


class ConsoleApiStoreOff(harness.ProxyTestCase):
    PROXY_ARGS = ("--store", "off")

    def test_store_off_says_so(self):
        r = self.proxy.admin("GET", "/api/requests")
        self.assertEqual(r.status, 404, r)
        self.assertIn("the store is off", r.json()["error"])


if __name__ == "__main__":
    import unittest
    unittest.main()
