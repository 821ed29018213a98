"""Correlated replay (issue 16, part 1): `restspy replay --correlate`.

Each test records a stateful sequence through a restspy proxy against one
server, then replays the store against a second server that assigns other
identifiers: without correlation the later requests hit the wrong object
(mismatches), with it every request matches and the report lists each
substitution (recorded -> replayed).

Three backends:
- the sample DRF app (examples/sitemon): metrics created without an id get
  a server-made UUID, so a create/read/update/delete of one metric is told
  apart by id in both runs;
- npm json-server (tests/integration/jsonserver, installed by npm ci from
  its package-lock.json: `make integration` does it), which numbers what it
  creates itself; the target is seeded with 22 posts so that its ids are
  offset (recorded 1, replayed 23). Missing json-server is a failure under
  CI, never a skip;
- a small login server in this file: POST /login returns a random token
  (JSON) and a session cookie, which later requests send as
  `Authorization: Bearer` and `Cookie`. Recorded with `--redact off`: a
  token redacted at capture cannot be followed (nor replayed at all).
"""
import http.server
import json
import os
import secrets
import unittest
import uuid
import xml.dom.minidom

import harness
from jsonapp import JsonServer, json_server_or_fail

TIMEOUT = "10s"


def record(tmp, upstream, traffic, args=()):
    """Runs traffic(proxy) through a restspy proxy in front of upstream;
    returns the store URL."""
    d = os.path.join(tmp, "rec-%s" % uuid.uuid4().hex[:8])
    os.mkdir(d)
    proxy = harness.Proxy(d, upstream, log=False, args=args).start()
    try:
        traffic(proxy)
    finally:
        proxy.check_stopped()
    return "sqlite:" + proxy.db_path


class CorrelateCase(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.tmp = harness.make_tmpdir("correlate")
        self.addCleanup(harness.remove_tmpdir, self.tmp)

    def replay(self, store, target, *args, expect=None):
        """restspy replay with a JSON report; returns (process, report)."""
        rep = os.path.join(self.tmp, "report-%s.json" % uuid.uuid4().hex[:8])
        p = harness.run_cli(["replay", "--store", store, "--target", target, "--timeout",
                             TIMEOUT, "--report", "json", rep] + list(args), timeout=60)
        where = "replay %s\nexit %s\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(args), p.returncode, p.stdout[-6000:], p.stderr[-3000:])
        self.assertIsNone(harness.sanitizer_report(p.stderr), where)
        if expect is not None:
            self.assertEqual(p.returncode, expect, where)
        with open(rep, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
        doc["where"] = where
        return p, doc

    def subs(self, doc):
        """(method, path, place, recorded, replayed) of every substitution."""
        out = []
        for r in doc["results"]:
            for s in r.get("substitutions", []):
                out.append((r["method"], r["path"], s["place"], s["recorded"], s["replayed"]))
        return out

    def outcomes(self, doc):
        return [(r["method"], r["outcome"]) for r in doc["results"]]


# ------------------------------------------------------------ sitemon

SITE = {"slug": "alpha", "name": "Alpha", "url": "https://alpha.test/", "status": "up"}


def sitemon_crud(proxy):
    """A site (client-chosen slug), then one metric's whole life: its id is
    the server's."""
    assert proxy.request("POST", "/api/sites/", body=SITE).status == 201
    r = proxy.request("POST", "/api/sites/alpha/metrics/",
                      body={"name": "cpu", "value": 0.5, "recorded_at": "2026-01-02T03:04:05Z"})
    assert r.status == 201, r
    mid = r.json()["id"]
    assert proxy.request("GET", "/api/metrics/%s/" % mid).status == 200
    assert proxy.request("PATCH", "/api/metrics/%s/" % mid, body={"value": 0.75}).status == 200
    assert proxy.request("GET", "/api/sites/alpha/metrics/?name=cpu").status == 200
    assert proxy.request("DELETE", "/api/metrics/%s/" % mid).status == 204
    assert proxy.request("GET", "/api/metrics/%s/" % mid).status == 404


class SitemonCrud(CorrelateCase):
    def test_server_made_uuids_are_followed(self):
        pre = os.path.join(self.tmp, "pre.db")
        rec_app = harness.App(self.tmp, "rec").start()
        self.addCleanup(rec_app.stop)
        harness.copy_db(rec_app.db_path, pre)
        store = record(self.tmp, rec_app.url, sitemon_crud)
        mid = None
        for row in harness.rows(store[len("sqlite:"):]):
            if row["method"] == "POST" and "/metrics/" in row["path"]:
                mid = json.loads(harness.as_bytes(row["resp_body"]))["id"]
        self.assertIsNotNone(mid)

        def fresh(name):
            app = harness.App(self.tmp, name, db_from=pre).start()
            self.addCleanup(app.stop)
            return app

        ign = ("--ignore", "$..updated_at")
        # Without correlation: the read, the patch and the delete name the
        # recorded metric, which the target does not have.
        p, doc = self.replay(store, fresh("plain").url, "--ordered", "--no-correlate", *ign,
                             expect=1)
        self.assertEqual(doc["counts"]["substitutions"], 0, doc["where"])
        self.assertGreaterEqual(doc["counts"]["mismatched"], 4, doc["where"])

        p, doc = self.replay(store, fresh("corr").url, "--ordered", *ign, expect=0)
        self.assertEqual(doc["counts"]["matched"], 7, doc["where"])
        subs = self.subs(doc)
        paths = [s for s in subs if s[2] == "path"]
        self.assertEqual([s[0] for s in paths], ["GET", "PATCH", "DELETE", "GET"], doc["where"])
        for s in paths:
            self.assertEqual(s[3], mid)
            self.assertNotEqual(s[4], mid)
            self.assertEqual(s[1], "/api/metrics/%s/" % s[4], s)
        self.assertIn("correlated: 4 values substituted in 4 requests", p.stdout)
        self.assertIn("SUBSTITUTED GET /api/metrics/", p.stdout)


# ------------------------------------------------------------ json-server


def json_server_crud(proxy):
    r = proxy.request("POST", "/posts", body={"title": "hello", "author": "ann"})
    assert r.status == 201, r
    pid = r.json()["id"]
    assert proxy.request("GET", "/posts/%s" % pid).status == 200
    assert proxy.request("PATCH", "/posts/%s" % pid, body={"title": "hello again"}).status == 200
    r = proxy.request("POST", "/comments", body={"postId": pid, "body": "first"})
    assert r.status == 201, r
    assert proxy.request("GET", "/comments?postId=%s" % pid).status == 200
    assert proxy.request("DELETE", "/posts/%s" % pid).status == 200
    assert proxy.request("GET", "/posts/%s" % pid).status == 404


class JsonServerCrud(CorrelateCase):
    def test_offset_ids_are_followed(self):
        json_server_or_fail(self)
        # Recorded: post 1, comment 6 (one value, one object: a recorded
        # value maps to one replayed value).
        rec = JsonServer(self.tmp, "rec", {"posts": [], "comments": [
            {"id": i, "postId": 99, "body": "x"} for i in range(1, 6)]}).start()
        self.addCleanup(rec.stop)
        store = record(self.tmp, rec.url, json_server_crud)

        def seeded(name):
            # 22 posts and 40 comments already there: the target's next ids
            # are 23 and 41 where the recording had 1 and 6.
            db = {"posts": [{"id": i, "title": "old %d" % i} for i in range(1, 23)],
                  "comments": [{"id": i, "postId": 1, "body": "x"} for i in range(1, 41)]}
            s = JsonServer(self.tmp, name, db).start()
            self.addCleanup(s.stop)
            return s

        p, doc = self.replay(store, seeded("plain").url, "--ordered", "--no-correlate",
                             expect=1)
        self.assertGreaterEqual(doc["counts"]["mismatched"], 4, doc["where"])

        p, doc = self.replay(store, seeded("corr").url, "--correlate", expect=0)
        self.assertEqual(doc["counts"]["matched"], 7, doc["where"])
        subs = self.subs(doc)
        self.assertIn(("GET", "/posts/23", "path", "1", "23"), subs, doc["where"])
        self.assertIn(("PATCH", "/posts/23", "path", "1", "23"), subs)
        self.assertIn(("DELETE", "/posts/23", "path", "1", "23"), subs)
        # The id in a JSON body stays a number, and in the query a value.
        self.assertIn(("POST", "/comments", "body $.postId", "1", "23"), subs)
        self.assertIn(("GET", "/comments", "query", "1", "23"), subs)


# ------------------------------------------------------------ login token


class LoginHandler(http.server.BaseHTTPRequestHandler):
    """POST /login -> {"token": random}, Set-Cookie: session=random; GET /me
    needs Authorization: Bearer <token>; GET /cart needs the cookie. POST
    /login?otp=1 also answers "otp": a short random code (no identifier by
    the rule) that GET /verify?code=CODE needs."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, status, doc, headers=()):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        if self.path not in ("/login", "/login?otp=1"):
            return self.answer(404, {"error": "not found"})
        token, session = secrets.token_hex(20), secrets.token_urlsafe(24)
        doc = {"token": token, "user": "ann"}
        if self.path.endswith("otp=1"):
            doc["otp"] = "k" + secrets.token_hex(3)
        with self.server.lock:
            self.server.tokens.add(token)
            self.server.sessions.add(session)
            self.server.otps.add(doc.get("otp"))
        self.answer(200, doc, [("Set-Cookie", "session=%s; Path=/; HttpOnly" % session)])

    def do_GET(self):
        auth = self.headers.get("Authorization", "")
        cookie = self.headers.get("Cookie", "")
        with self.server.lock:
            ok_token = auth.startswith("Bearer ") and auth[7:] in self.server.tokens
            ok_session = any(c.strip().startswith("session=") and
                             c.strip()[8:] in self.server.sessions for c in cookie.split(";"))
        if self.path == "/me":
            return self.answer(200 if ok_token else 401,
                               {"user": "ann"} if ok_token else {"error": "bad token"})
        if self.path == "/cart":
            return self.answer(200 if ok_session else 401,
                               {"items": 2} if ok_session else {"error": "no session"})
        if self.path.startswith("/verify?code="):
            with self.server.lock:
                ok = self.path[len("/verify?code="):] in self.server.otps
            return self.answer(200 if ok else 403, {"verified": ok})
        self.answer(404, {"error": "not found"})


def login_server():
    srv = harness.start_backend(LoginHandler)
    srv.tokens, srv.sessions, srv.otps = set(), set(), set()
    return srv


NO_REDACT = ("--redact", "off")


def login_flow(proxy):
    r = proxy.request("POST", "/login", body={"user": "ann", "password": "pw"})
    assert r.status == 200, r
    token = r.json()["token"]
    session = r.header("Set-Cookie").split(";")[0].split("=", 1)[1]
    assert proxy.request("GET", "/me", headers={"Authorization": "Bearer " + token}).status == 200
    assert proxy.request("GET", "/cart", headers={"Cookie": "lang=en; session=" + session}
                         ).status == 200


class LoginCase(CorrelateCase):
    def recorded_login(self, flow):
        """(store, target): flow recorded against one login server, and
        another one (its own tokens) to replay it against."""
        rec = login_server()
        self.addCleanup(harness.stop_backend, rec)
        store = record(self.tmp, rec.url, flow, NO_REDACT)
        target = login_server()
        self.addCleanup(harness.stop_backend, target)
        return store, target


class LoginToken(LoginCase):
    def test_token_and_cookie_follow_the_login(self):
        store, target = self.recorded_login(login_flow)

        p, doc = self.replay(store, target.url, "--ordered", "--no-correlate", expect=1)
        self.assertEqual(self.outcomes(doc), [("POST", "mismatch"), ("GET", "mismatch"),
                                              ("GET", "mismatch")], doc["where"])

        junit = os.path.join(self.tmp, "login.xml")
        p, doc = self.replay(store, target.url, "--ordered", "--report", "junit", junit,
                             expect=0)
        self.assertEqual(self.outcomes(doc), [("POST", "match"), ("GET", "match"),
                                              ("GET", "match")], doc["where"])
        places = [(s[1], s[2]) for s in self.subs(doc)]
        self.assertEqual(places, [("/me", "header Authorization"), ("/cart", "header Cookie")],
                         doc["where"])
        with open(junit, "rb") as f:
            dom = xml.dom.minidom.parseString(f.read())
        outs = [n.firstChild.data for n in dom.getElementsByTagName("system-out")]
        self.assertEqual(len(outs), 2, outs)
        self.assertTrue(outs[0].startswith("substituted header Authorization: "), outs)

    def test_no_correlate_header_and_client_header(self):
        store, target = self.recorded_login(login_flow)
        # Authorization left alone: /me fails, the cookie still follows.
        rules = os.path.join(self.tmp, "rules.noise")
        with open(rules, "w") as f:
            f.write("# restspy noise rules\nno-correlate-header: Authorization\n")
        p, doc = self.replay(store, target.url, "--ordered", "--noise", rules, expect=1)
        self.assertEqual(self.outcomes(doc), [("POST", "match"), ("GET", "mismatch"),
                                              ("GET", "match")], doc["where"])
        # A client header every request lacks: the client IP is the client.
        p, doc = self.replay(store, target.url, "--correlate", "--correlate-client-header",
                             "X-Client", expect=0)
        self.assertEqual(len(self.subs(doc)), 2, doc["where"])


def shared_token_flow(proxy):
    """Client a logs in; client b (another X-Client) uses a's token."""
    r = proxy.request("POST", "/login", body={"user": "ann"}, headers={"X-Client": "a"})
    assert r.status == 200, r
    token = r.json()["token"]
    assert proxy.request("GET", "/me", headers={"X-Client": "b", "Authorization":
                                                "Bearer " + token}).status == 200


class GlobalMapping(LoginCase):
    def test_another_client_finds_the_value(self):
        store, target = self.recorded_login(shared_token_flow)
        # Two clients by X-Client; one connection keeps the recorded order
        # across them, so b's request goes after a's login was answered.
        p, doc = self.replay(store, target.url, "--correlate", "--correlate-client-header",
                             "X-Client", "--concurrency", "1", expect=0)
        self.assertEqual(self.outcomes(doc), [("POST", "match"), ("GET", "match")],
                         doc["where"])
        self.assertEqual([(s[1], s[2]) for s in self.subs(doc)],
                         [("/me", "header Authorization")], doc["where"])


def otp_flow(proxy):
    r = proxy.request("POST", "/login?otp=1", body={"user": "ann"})
    assert r.status == 200, r
    assert proxy.request("GET", "/verify?code=" + r.json()["otp"]).status == 200


class ExplicitPath(LoginCase):
    def test_correlate_path_tracks_what_the_rule_misses(self):
        store, target = self.recorded_login(otp_flow)
        # "k3f9a1c" under "otp" is no identifier by the rule: not followed.
        p, doc = self.replay(store, target.url, "--ordered", expect=1)
        self.assertEqual(self.outcomes(doc), [("POST", "mismatch"), ("GET", "mismatch")],
                         doc["where"])
        for args in (["--correlate-path", "$.otp"], ["--noise", self.rules("correlate: $.otp")]):
            p, doc = self.replay(store, target.url, "--ordered", *args, expect=0)
            self.assertEqual(self.outcomes(doc), [("POST", "match"), ("GET", "match")],
                             doc["where"])
            self.assertEqual([s[2] for s in self.subs(doc)], ["query"], doc["where"])

    def rules(self, text):
        path = os.path.join(self.tmp, "explicit.noise")
        with open(path, "w") as f:
            f.write(text + "\n")
        return path


class Flags(CorrelateCase):
    def test_bad_values(self):
        for args, msg in ((["--correlate-path", "data.id"], "bad noise rule 'correlate: data.id'"),
                          (["--no-correlate-header", "a b"], "bad noise rule"),
                          (["--correlate-client-header", "a:b"],
                           "bad value for --correlate-client-header")):
            p = harness.run_cli(["replay", "--target", "http://127.0.0.1:1"] + args)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(msg, p.stderr)
            self.assertEqual(len(p.stderr.strip().split("\n")), 1, p.stderr)


if __name__ == "__main__":
    unittest.main()
