"""Replay of real-world bodies (issue 9): compressed answers, values restspy
redacted, HTML pages, bodies over the capture cap.

A small backend (127.0.0.1, stdlib http.server) answers like a real API and
site would; the traffic is recorded through restspy once per test class and
replayed against the same backend, whose answers change where real ones do
(a timestamp, a CSRF token)."""
import gzip
import json
import os
import re
import time
import unittest
import zlib
from http.server import BaseHTTPRequestHandler

import brotli  # Debian python3-brotli (scripts/install-deps)

import harness

SUMMARY_RE = re.compile(r"^(\d+) requests?: (\d+) matched, (\d+) mismatched, (\d+) errors?, "
                        r"(\d+) not replayable")


def compress(enc, data):
    if enc == "gzip":
        return gzip.compress(data)
    if enc == "deflate":
        return zlib.compress(data)
    if enc == "br":
        return brotli.compress(data)
    return data


class Backend(BaseHTTPRequestHandler):
    """GET /doc?enc=E: {"id", "name", "ts"} where ts changes on every
    answer, compressed with E (gzip, deflate, br) when the client accepts
    it."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _send(self, status, body, ctype="application/json", enc=None, headers=()):
        accepted = self.headers.get("Accept-Encoding") or ""
        if enc and enc in accepted:
            body = compress(enc, body)
        else:
            enc = None
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if enc:
            self.send_header("Content-Encoding", enc)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path, _, query = self.path.partition("?")
        q = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        if path == "/doc":
            doc = {"id": 7, "name": "caf\u00e9", "ts": "%d" % time.time_ns()}
            self._send(200, json.dumps(doc, ensure_ascii=False).encode(), enc=q.get("enc"))
        elif path == "/page":
            # A server-rendered page: a fresh CSRF token and the render time.
            html = ('<!doctype html>\n<html><head><title>Account</title></head><body>\n'
                    '<form method="post" action="/account">\n'
                    '<input type="hidden" name="csrfmiddlewaretoken" value="%s">\n'
                    '<button>Save</button></form>\n<p>Rendered at %s by web-1</p>\n'
                    '</body></html>\n' % (os.urandom(16).hex(),
                                           time.strftime("%Y-%m-%dT%H:%M:%S") +
                                           ".%06dZ" % (time.time_ns() // 1000 % 1000000)))
            self._send(200, html.encode(), "text/html; charset=utf-8", enc=q.get("enc"))
        elif path == "/big":
            # Over the default capture cap (64K), the same on every answer.
            items = [{"id": i, "name": "item %d" % i, "tags": ["a", "b", "c"]}
                     for i in range(2500)]
            self._send(200, json.dumps(items).encode())
        elif path == "/users":
            # Secrets restspy redacts at capture (default redact_fields and
            # redact_headers); the answer is otherwise the same every time.
            users = [{"user": "ann", "password": "hunter2", "token": 4242},
                     {"user": "bob", "password": "pw-bob", "profile": {"api_key": "k-1"}}]
            self._send(200, json.dumps(users).encode(),
                       headers=[("Set-Cookie", "sid=%d; Path=/" % time.time_ns())])
        else:
            self._send(404, b'{"error":"not found"}')


class BodiesCase(unittest.TestCase):
    """Records TRAFFIC (method, target, headers) through restspy in front of
    the backend; the store is cls.store."""
    TRAFFIC = ()
    PROXY_ARGS = ()
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.make_tmpdir(cls.__name__)
        cls.srv = harness.start_backend(Backend)
        cls.url = cls.srv.url
        try:
            proxy = harness.Proxy(cls.tmp, cls.url, args=cls.PROXY_ARGS, log=False).start()
            try:
                for method, target, headers in cls.TRAFFIC:
                    proxy.request(method, target, headers=headers)
            finally:
                proxy.check_stopped()
            cls.store = "sqlite:" + proxy.db_path
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        harness.stop_backend(cls.srv)
        harness.remove_tmpdir(cls.tmp)

    def tmpfile(self, name):
        return os.path.join(self.tmp, "%s-%s" % (self.id().rsplit(".", 1)[-1], name))

    def run_cli(self, *args, expect=None):
        p = harness.run_cli(list(args), timeout=60)
        where = "restspy %s\nexit %s\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(args), p.returncode, p.stdout[-4000:], p.stderr[-2000:])
        if expect is not None:
            self.assertEqual(p.returncode, expect, where)
        self.assertIsNone(harness.sanitizer_report(p.stderr), where)
        p.where = where
        return p

    def learn(self, want_rules):
        """--learn-noise into a new file: the rules learnt are want_rules,
        and with them every request matches. Returns the file."""
        rules = self.tmpfile("noise.txt")
        p = self.run_cli("replay", "--store", self.store, "--target", self.url,
                         "--learn-noise", rules, expect=0)
        n = len(want_rules)
        with open(rules) as f:  # first: a failure then shows the rules learnt
            self.assertEqual([ln.strip() for ln in f if not ln.startswith("#")], want_rules)
        self.assertIn("learned %d rule%s into" % (n, "" if n == 1 else "s"), p.stdout, p.where)
        p = self.replay("--noise", rules, expect=0)
        self.assertEqual(p.counts, (len(self.TRAFFIC), len(self.TRAFFIC), 0, 0, 0), p.where)
        return rules

    def replay(self, *args, expect=None):
        p = self.run_cli("replay", "--store", self.store, "--target", self.url,
                         "--timeout", "10s", *args, expect=expect)
        m = SUMMARY_RE.match(p.stdout)
        self.assertIsNotNone(m, p.where)
        p.counts = tuple(int(x) for x in m.groups())
        return p


class Compressed(BodiesCase):
    """Item 4: most real clients ask for compression; the recording holds the
    decoded body, and so must the comparison, --learn-noise and HAR."""
    TRAFFIC = [("GET", "/doc?enc=%s" % e, [("Accept-Encoding", "gzip, deflate, br")])
               for e in ("gzip", "deflate", "br")]

    def test_compared_decoded(self):
        p = self.replay(expect=1)
        self.assertEqual(p.counts, (3, 0, 3, 0, 0), p.where)
        # The one real difference, as a JSON path: not "binary bodies differ".
        self.assertEqual(len(re.findall(r"^    \$\.ts: \"\d+\" -> \"\d+\"$", p.stdout, re.M)), 3,
                         p.where)
        self.assertNotIn("binary", p.stdout)
        self.assertNotIn("$.id", p.stdout)

    def test_learn_noise_then_match(self):
        self.learn(["$.ts"])

    def test_har_holds_decoded_text(self):
        har = self.tmpfile("doc.har")
        self.run_cli("export", "--har", har, "--store", self.store, expect=0)
        with open(har, "rb") as f:
            entries = json.loads(f.read().decode("utf-8"))["log"]["entries"]
        self.assertEqual(len(entries), 3)
        for e in entries:
            content = e["response"]["content"]
            doc = json.loads(content["text"])  # decoded text, as browsers write it
            self.assertEqual((doc["id"], doc["name"]), (7, "caf\u00e9"))
            self.assertNotIn("encoding", content)
            self.assertEqual(content["size"], len(content["text"].encode("utf-8")))
            self.assertLess(e["response"]["bodySize"], 0 + content["size"] + 64)
            enc = [h["value"] for h in e["response"]["headers"]
                   if h["name"].lower() == "content-encoding"]
            self.assertEqual(len(enc), 1)
        # Replayed from the HAR: compared decoded too.
        p = self.run_cli("replay", "--har", har, "--target", self.url, "--ignore", "$.ts",
                         expect=0)
        self.assertTrue(p.stdout.startswith("3 requests: 3 matched"), p.where)


class Redacted(BodiesCase):
    """Item 5: values restspy itself redacted are not differences."""
    TRAFFIC = [("GET", "/users", [])]

    def test_redacted_values_match_and_are_counted(self):
        p = self.replay("--compare-header", "Set-Cookie", "--report", "json",
                        self.tmpfile("r.json"), expect=0)
        self.assertEqual(p.counts, (1, 1, 0, 0, 0), p.where)
        self.assertIn("\nredacted: 5 fields not compared (redacted at capture), in 1 request\n",
                      p.stdout, p.where)
        self.assertNotIn("hunter2", p.stdout)
        with open(self.tmpfile("r.json")) as f:
            doc = json.load(f)
        self.assertEqual(doc["counts"]["redacted_fields"], 5)
        self.assertEqual(doc["results"][0]["redacted_fields"], 5)


class TextPages(BodiesCase):
    """Item 8: noise rules for HTML and other text bodies."""
    TRAFFIC = [("GET", "/page", []), ("GET", "/page?enc=gzip", [("Accept-Encoding", "gzip")])]

    def test_word_differences_are_reported(self):
        p = self.replay(expect=1)
        self.assertEqual(p.counts, (2, 0, 2, 0, 0), p.where)
        self.assertEqual(len(re.findall(r'^    text line 4: "[0-9a-f]{32}" -> "[0-9a-f]{32}"$',
                                        p.stdout, re.M)), 2, p.where)

    def test_learn_noise_learns_from_pages(self):
        self.learn(["text: ^[0-9a-f]{32}$",
                    "text: ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z$"])

    def test_ignore_regex_applies_to_text(self):
        p = self.replay("--ignore-regex", "^[0-9a-f]{32}$", "--ignore-regex", r"^\d{4}-\d\d-",
                        expect=0)
        self.assertEqual(p.counts, (2, 2, 0, 0, 0), p.where)


class OverTheCap(BodiesCase):
    """Item 16: a recording cut at the capture cap is not a match."""
    TRAFFIC = [("GET", "/big", [])]

    def test_replay_says_partly_compared(self):
        p = self.replay("--report", "json", self.tmpfile("r.json"), expect=0)
        self.assertEqual(p.counts, (1, 0, 0, 0, 0), p.where)
        m = re.search(r"^1 request: 0 matched, 0 mismatched, 0 errors, 0 not replayable, "
                      r"1 partly compared in ", p.stdout, re.M)
        self.assertIsNotNone(m, p.where)
        self.assertRegex(p.stdout, r"\nPARTLY COMPARED recorded body incomplete \(65536 of "
                                   r"\d+ bytes recorded\): only those compared: 1 request\n")
        with open(self.tmpfile("r.json")) as f:
            doc = json.load(f)
        self.assertEqual((doc["counts"]["matched"], doc["counts"]["partial"]), (0, 1))
        self.assertEqual(doc["results"][0]["outcome"], "partial")

    def test_har_content_comment(self):
        har = self.tmpfile("big.har")
        self.run_cli("export", "--har", har, "--store", self.store, expect=0)
        with open(har) as f:
            content = json.load(f)["log"]["entries"][0]["response"]["content"]
        self.assertEqual(len(content["text"]), 65536)
        self.assertGreater(content["size"], 65536)
        self.assertEqual(content["comment"],
                         "restspy: body incomplete: text holds the first 65536 of its %d bytes"
                         % content["size"])


class Wording(BodiesCase):
    """Item 17: each outcome worded as what happened."""
    TRAFFIC = [("GET", "/doc", []), ("GET", "/users", [])]

    def test_target_without_scheme_is_refused(self):
        port = harness.free_port()
        # https is a target since issue 12; another scheme is refused alike.
        why = "expected http://host:port or https://host:port"
        for target in ("127.0.0.1:%d" % port, "ftp://127.0.0.1:%d" % port):
            p = self.run_cli("replay", "--store", self.store, "--target", target, expect=2)
            self.assertEqual(p.stderr, "restspy replay: bad value for --target: '%s' (%s)\n"
                             % (target, why))
            self.assertEqual(p.stdout, "")

    def test_malformed_target_is_refused(self):
        """What the engine finds wrong with an http:// target, in one line."""
        for target, why in (("http://127.0.0.1:99999", "bad port"),
                            ("http://127.0.0.1:1/api", "a path is not supported (use "
                                                       "--rewrite-path)"),
                            ("http://::1:80", "put an IPv6 address in brackets"),
                            ("http://bad host", "bad host")):
            p = self.run_cli("replay", "--store", self.store, "--target", target, expect=2)
            self.assertEqual(p.stderr, "restspy replay: target %s: %s\n" % (target, why))

    def test_refused_run_has_no_rate(self):
        p = self.run_cli("replay", "--store", self.store, "--target",
                         "http://127.0.0.1:%d" % harness.free_port(), expect=2)
        first = p.stdout.split("\n")[0]
        self.assertRegex(first, r"^2 requests: 0 matched, 0 mismatched, 2 errors, "
                                r"0 not replayable in \d+\.\d\d s$")
        self.assertIn("ERROR connect: connection refused: 2 requests", p.stdout)

    def test_no_compare_says_not_compared(self):
        p = self.replay("--no-compare", expect=0)
        self.assertRegex(p.stdout.split("\n")[0],
                         r"^2 requests: 0 matched, 0 mismatched, 0 errors, 0 not replayable, "
                         r"2 sent, not compared in ")
        self.assertNotIn("without recorded response", p.stdout)

    def test_missing_browser_bodies(self):
        # A browser HAR saved without content: the bodies are announced, not
        # there. That is not a truncation at capture.
        har = self.tmpfile("nocontent.har")
        entry = {"startedDateTime": "2026-11-27T05:46:18.123Z", "time": 3,
                 "request": {"method": "POST", "url": self.url + "/doc", "headers": [],
                             "bodySize": 3},
                 "response": {"status": 200, "headers": [], "bodySize": 50,
                              "content": {"size": 50, "mimeType": "application/json"}},
                 "timings": {"send": 1, "wait": 1, "receive": 1}}
        get = json.loads(json.dumps(entry))
        get["request"].update(method="GET", bodySize=0)
        with open(har, "w") as f:
            json.dump({"log": {"version": "1.2", "entries": [entry, get]}}, f)
        p = self.run_cli("replay", "--har", har, "--target", self.url, expect=1)
        self.assertTrue(p.stdout.startswith("2 requests: 0 matched, 0 mismatched, 0 errors, "
                                            "1 not replayable, 1 partly compared in "), p.where)
        self.assertIn("\nNOT REPLAYABLE request body was not stored (dropped: not in the HAR "
                      "file (3 bytes announced)): 1 request\n", p.stdout)
        self.assertIn("\nPARTLY COMPARED recorded body not compared (dropped: not in the HAR "
                      "file (50 bytes announced)): 1 request\n", p.stdout)
        self.assertNotIn("truncated", p.stdout)


if __name__ == "__main__":
    unittest.main()
