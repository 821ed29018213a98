"""`restspy sites compare` (issue 16, part 2): have the sites converged?

Each test runs two or three small HTTP servers (stdlib http.server on
127.0.0.1, each with its own resources) standing for sites, and checks that
restspy GETs the same paths from each, compares the answers with the replay
comparison engine and its noise rules, and exits 0 when they agree, 1 with
the differing JSON paths listed per path and site pair, 2 on usage errors
(one line on stderr). Globs are expanded against GET paths recorded in a
store filled with `restspy import`.
"""
import http.server
import json
import os
import threading
import unittest

import harness
import tlsca
from test_replay_https import TLSServer


class SiteHandler(http.server.BaseHTTPRequestHandler):
    """Serves self.server.data: path -> JSON value (404 otherwise), and keeps
    each request's path and Authorization header in self.server.seen."""

    def do_GET(self):
        with self.server.lock:
            self.server.seen.append((self.path, self.headers.get("Authorization")))
        data = self.server.data
        if self.path not in data:
            body, status = b'{"detail": "Not found."}', 404
        else:
            body, status = json.dumps(data[self.path]).encode(), 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


SITES = {
    "/api/sites/": [{"id": "s1", "name": "alpha"}, {"id": "s2", "name": "beta"}],
    "/api/sites/s1/": {"id": "s1", "name": "alpha", "url": "https://alpha.example"},
    "/api/sites/s2/": {"id": "s2", "name": "beta", "url": "https://beta.example"},
}


class SitesCompare(unittest.TestCase):
    def setUp(self):
        self.tmp = harness.make_tmpdir("sites")
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            harness.stop_backend(s)
        harness.remove_tmpdir(self.tmp)

    def site(self, data):
        srv = harness.start_backend(SiteHandler)
        srv.data = json.loads(json.dumps(data))  # a copy of its own
        self.servers.append(srv)
        return srv

    def cli(self, *args, rc=0):
        r = harness.run_cli(["sites", "compare"] + list(args))
        self.assertIsNone(harness.sanitizer_report(r.stderr), r.stderr)
        self.assertEqual(r.returncode, rc, "restspy sites compare %s: %s%s" %
                         (" ".join(args), r.stdout, r.stderr))
        if rc == 2:
            self.assertEqual(len(r.stderr.strip().splitlines()), 1,
                             "expected one line on stderr: %r" % r.stderr)
        return r

    def two_sites(self, b_data=None):
        a = self.site(SITES)
        b = self.site(SITES if b_data is None else b_data)
        return a, b, ["--site", "a=" + a.url, "--site", "b=" + b.url]

    def test_converged_sites_agree(self):
        a, b, sites = self.two_sites()
        r = self.cli(*sites, "--path", "/api/sites/", "--path", "/api/sites/s1/")
        self.assertIn("/api/sites/  a 200  b 200  agree", r.stdout)
        self.assertIn("/api/sites/s1/  a 200  b 200  agree", r.stdout)
        self.assertIn("2 paths, 2 sites: 2 agree, 0 differ", r.stdout)
        # Each site was asked for each path, once.
        for srv in (a, b):
            self.assertEqual([p for p, _ in srv.seen], ["/api/sites/", "/api/sites/s1/"])

    def test_planted_difference_is_listed_with_its_json_path(self):
        planted = json.loads(json.dumps(SITES))
        planted["/api/sites/s2/"]["name"] = "gamma"
        planted["/api/sites/"][1]["name"] = "gamma"
        _, _, sites = self.two_sites(planted)
        r = self.cli(*sites, "--path", "/api/sites/", "--path", "/api/sites/s1/", "--path",
                     "/api/sites/s2/", rc=1)
        self.assertIn("/api/sites/s1/  a 200  b 200  agree", r.stdout)
        self.assertIn("/api/sites/s2/  a 200  b 200  DIFFER", r.stdout)
        self.assertIn('  a vs b: $.name: "beta" -> "gamma"', r.stdout)
        self.assertIn('  a vs b: $[1].name: "beta" -> "gamma"', r.stdout)
        self.assertIn("3 paths, 2 sites: 1 agree, 2 differ", r.stdout)

        j = json.loads(self.cli(*sites, "--json", "--path", "/api/sites/s2/", rc=1).stdout)
        self.assertFalse(j["agree"])
        self.assertEqual([s["name"] for s in j["sites"]], ["a", "b"])
        (p,) = j["paths"]
        self.assertEqual(p["path"], "/api/sites/s2/")
        self.assertEqual(p["sites"], {"a": {"status": 200}, "b": {"status": 200}})
        (pair,) = p["pairs"]
        self.assertEqual(pair["sites"], ["a", "b"])
        self.assertEqual(pair["differences"], [{"path": "$.name",
                                                "values": {"a": '"beta"', "b": '"gamma"'}}])
        self.assertEqual(pair["differences_total"], 1)

    def test_status_difference_and_third_site(self):
        # c lost s2 (a delete overtook it there): status differs, b agrees.
        lost = {k: v for k, v in SITES.items() if k != "/api/sites/s2/"}
        a, b, sites = self.two_sites()
        c = self.site(lost)
        r = self.cli(*sites, "--site", "c=" + c.url, "--path", "/api/sites/s2/", rc=1)
        self.assertIn("/api/sites/s2/  a 200  b 200  c 404  DIFFER", r.stdout)
        self.assertIn("  a vs c: status: 200 -> 404", r.stdout)
        self.assertNotIn("a vs b", r.stdout)

    def test_noise_rule_hides_a_volatile_field(self):
        a = self.site({"/api/status/": {"ok": True, "checked_at": "2026-12-04T10:00:00Z"}})
        b = self.site({"/api/status/": {"ok": True, "checked_at": "2026-12-04T10:00:07Z"}})
        sites = ["--site", "a=" + a.url, "--site", "b=" + b.url, "--path", "/api/status/"]
        r = self.cli(*sites, rc=1)
        self.assertIn("$.checked_at", r.stdout)
        noise = os.path.join(self.tmp, "noise.txt")
        with open(noise, "w") as f:
            f.write("# the time of the last check differs per site\n$.checked_at\n")
        r = self.cli(*sites, "--noise", noise)
        self.assertIn("agree", r.stdout)
        # The flags of replay work the same way.
        self.cli(*sites, "--ignore-regex", r"^\d{4}-\d\d-\d\dT")

    def test_headers_are_sent_to_every_site(self):
        a, b, sites = self.two_sites()
        self.cli(*sites, "-H", "Authorization: Bearer t0k", "--header=X-Trace: 1", "--path",
                 "/api/sites/")
        for srv in (a, b):
            self.assertEqual(srv.seen, [("/api/sites/", "Bearer t0k")])

    def test_unreachable_site_is_a_failure(self):
        a = self.site(SITES)
        dead = "http://127.0.0.1:%d" % harness.free_port()
        r = self.cli("--site", "a=" + a.url, "--site", "b=" + dead, "--timeout", "2s", "--path",
                     "/api/sites/", rc=1)
        self.assertIn("/api/sites/  a 200  b error  DIFFER", r.stdout)
        self.assertIn("  b: connect:", r.stdout)

    def import_gets(self, db, paths):
        src = os.path.join(self.tmp, "rec.jsonl")
        with open(src, "w") as f:
            for i, (method, path) in enumerate(paths):
                f.write(json.dumps({"started_at": 1764800000000000 + i, "method": method,
                                    "path": path, "status": 200}) + "\n")
        r = harness.run_cli(["import", "--jsonl", src, "--store", "sqlite:" + db])
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_glob_expands_to_the_recorded_get_paths(self):
        db = os.path.join(self.tmp, "store.db")
        self.import_gets(db, [("GET", "/api/sites/s1/"), ("POST", "/api/sites/"),
                              ("GET", "/api/sites/s2/"), ("GET", "/api/sites/s1/"),
                              ("DELETE", "/api/sites/s9/"), ("GET", "/api/metrics/m1/")])
        planted = json.loads(json.dumps(SITES))
        planted["/api/sites/s2/"]["url"] = "https://beta.example.org"
        a, b, sites = self.two_sites(planted)
        r = self.cli(*sites, "--store", "sqlite:" + db, "--path", "/api/sites/*/", rc=1)
        # The distinct GET paths it matches, in recorded order; the POST, the
        # DELETE and the other collection are not read.
        for srv in (a, b):
            self.assertEqual([p for p, _ in srv.seen], ["/api/sites/s1/", "/api/sites/s2/"])
        self.assertIn("/api/sites/s1/  a 200  b 200  agree", r.stdout)
        self.assertIn('  a vs b: $.url: "https://beta.example" -> "https://beta.example.org"',
                      r.stdout)
        # A limit on what one glob stands for.
        r = self.cli(*sites, "--store", "sqlite:" + db, "--path", "/api/**",
                     "--max-paths", "2", rc=2)
        self.assertIn("--max-paths", r.stderr)
        r = self.cli(*sites, "--store", "sqlite:" + db, "--path", "/nothing/*", rc=2)
        self.assertIn("matches no GET path", r.stderr)

    def test_glob_without_a_store_says_so(self):
        _, _, sites = self.two_sites()
        missing = os.path.join(self.tmp, "missing.db")
        r = self.cli(*sites, "--store", "sqlite:" + missing, "--path", "/api/sites/*/", rc=2)
        self.assertIn("--path /api/sites/*/ is a glob over the GET paths in the store",
                      r.stderr)
        # A literal path needs no store.
        self.cli(*sites, "--store", "sqlite:" + missing, "--path", "/api/sites/")

    def test_bad_usage_is_one_line_and_exit_2(self):
        _, _, sites = self.two_sites()
        a_only = sites[:2]
        cases = [
            ([], "at least two --site"),
            (a_only + ["--path", "/x"], "at least two --site"),
            (sites, "--path is required"),
            (sites + ["--path", "x"], "bad value for --path"),
            (sites + ["--path", "/a b/"], "percent-encode"),
            (["--site", "a", "--site", "b=http://h:1", "--path", "/"], "bad value for --site"),
            (["--site", "a=ftp://h:1", "--site", "b=http://h:1", "--path", "/"],
             "bad value for --site"),
            (["--site", "a=http://h:1", "--site", "a=http://h:2", "--path", "/"], "given twice"),
            (sites + ["--path", "/", "-H", "no colon"], "bad value for --header"),
            (sites + ["--path", "/", "--timeout", "soon"], "bad value for --timeout"),
            (sites + ["--path", "/", "--insecure"], "need an https:// --site"),
            (sites + ["--path", "/", "--ignore", "not a path"], "bad noise rule"),
            (sites + ["--path", "/", "--frobnicate"], "unknown option"),
        ]
        for args, msg in cases:
            with self.subTest(args=args):
                r = self.cli(*args, rc=2)
                self.assertIn(msg, r.stderr)
        for args, msg in [([], "a subcommand is needed"), (["diff"], "unknown subcommand")]:
            r = harness.run_cli(["sites"] + args)
            self.assertEqual(r.returncode, 2)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertIn(msg, r.stderr)

    def test_help(self):
        for args in (["sites", "--help"], ["sites", "compare", "--help"]):
            r = harness.run_cli(args)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("--site NAME=URL", r.stdout)
            self.assertIn("--noise FILE", r.stdout)
        r = harness.run_cli(["help"])
        self.assertIn("sites compare", r.stdout)


class SitesCompareHTTPS(unittest.TestCase):
    """The TLS flags are replay's: --cacert, --insecure, --cert/--key."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.make_tmpdir("sites-https")
        cls.pki = tlsca.make_pki(os.path.join(cls.tmp, "pki"))

    @classmethod
    def tearDownClass(cls):
        harness.remove_tmpdir(cls.tmp)

    def serve(self, client_ca=None):
        # replay's TLS test server (as test_federate_https does), serving sites.
        srv = TLSServer(self.pki["server"]["cert"], self.pki["server"]["key"], client_ca)
        srv.RequestHandlerClass = SiteHandler
        srv.lock, srv.seen, srv.data = threading.Lock(), [], SITES
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        return "https://localhost:%d" % srv.server_address[1]

    def run_compare(self, a, b, *args):
        r = harness.run_cli(["sites", "compare", "--site", "a=" + a, "--site", "b=" + b,
                             "--path", "/api/sites/", "--timeout", "5s"] + list(args))
        self.assertIsNone(harness.sanitizer_report(r.stderr), r.stderr)
        return r

    def test_cacert_verifies_both_sites(self):
        a, b = self.serve(), self.serve()
        r = self.run_compare(a, b, "--cacert", self.pki["ca"]["cert"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("/api/sites/  a 200  b 200  agree", r.stdout)
        # Without the test CA the certificates are not trusted: said, exit 1.
        r = self.run_compare(a, b)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("  a: tls: ", r.stdout)
        # --insecure reads them anyway, and says so on stderr.
        r = self.run_compare(a, b, "--insecure")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("NOT verified", r.stderr)

    def test_client_certificate(self):
        ca = self.pki["ca"]["cert"]
        a, b = self.serve(client_ca=ca), self.serve(client_ca=ca)
        r = self.run_compare(a, b, "--cacert", ca, "--cert", self.pki["client"]["cert"],
                             "--key", self.pki["client"]["key"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = self.run_compare(a, b, "--cacert", ca)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
