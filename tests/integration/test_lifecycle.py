"""Process lifecycle and command line: graceful SIGTERM, SIGHUP (log reopen,
config reload that keeps the old config when the new one is broken),
settings precedence, the `requests`/`show` commands, --version/--help and
usage errors."""
import json
import os
import signal
import subprocess
import threading
import time
import unittest
import uuid

import harness
from harness import App, Proxy


class BarePortProxy(Proxy):
    """A proxy given bare ports: --listen PORT --admin PORT."""

    def command(self):
        cmd = super().command()
        cmd[cmd.index("--listen") + 1] = str(self.port)
        cmd[cmd.index("--admin") + 1] = str(self.admin_port)
        return cmd


class Lifecycle(unittest.TestCase):
    """One sample app; each test starts the restspy processes it needs."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.make_tmpdir(cls.__name__)
        cls.app = App(cls.tmp).start()

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()
        harness.remove_tmpdir(cls.tmp)

    def setUp(self):
        self.dir = harness.make_tmpdir(self._testMethodName)
        self.proxies = []
        self.launched = []

    def tearDown(self):
        try:
            for p in self.proxies:
                if p.running:
                    p.stop()
            for proc in self.launched:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        finally:
            harness.remove_tmpdir(self.dir)

    def start_proxy(self, **kw):
        p = Proxy(self.dir, self.app.url, **kw)
        self.proxies.append(p)
        return p.start()

    def test_sigterm_drains_in_flight_requests(self):
        p = self.start_proxy()
        results = []
        lock = threading.Lock()

        def one():
            try:
                r = p.request("GET", "/api/slow/?ms=500", timeout=15)
                out = (r.status, r.body)
            except Exception as e:  # reported below
                out = ("exception", repr(e))
            with lock:
                results.append(out)

        threads = [threading.Thread(target=one) for _ in range(20)]
        for t in threads:
            t.start()
        # All 20 are inside restspy (upstream requests sent) before SIGTERM.
        ok = harness.wait_until(lambda: p.stats()["active_connections"] >= 20, timeout=3,
                                interval=0.02)
        self.assertTrue(ok, "20 requests never in flight: %r" % p.stats())
        time.sleep(0.1)
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        for t in threads:
            t.join(20)
        self.assertEqual(len(results), 20)
        self.assertEqual([r[0] for r in results], [200] * 20, results)
        for _, body in results:
            self.assertEqual(json.loads(body), {"slept_ms": 500})
        p.check_stopped(self)
        self.assertLess(time.monotonic() - t0, 15)
        rows = p.rows()
        self.assertEqual(len(rows), 20)
        self.assertTrue(all(r["path"] == "/api/slow/" and r["status"] == 200 for r in rows))
        # New connections are refused once it has stopped.
        with self.assertRaises(OSError):
            harness.request(p.port, "GET", "/api/status/200/", timeout=2)

    def test_sighup_reopens_log(self):
        p = self.start_proxy()
        self.assertEqual(p.request("GET", "/api/echo/?before=1").status, 200)
        self.assertIsNotNone(harness.wait_log(p.log_path, lambda ln: "before=1" in ln))
        rotated = p.log_path + ".1"
        os.rename(p.log_path, rotated)
        p.signal(signal.SIGHUP)
        self.assertTrue(harness.wait_until(lambda: os.path.exists(p.log_path), timeout=3),
                        "access.log not recreated after SIGHUP")
        self.assertEqual(p.request("GET", "/api/echo/?after=1").status, 200)
        self.assertIsNotNone(harness.wait_log(p.log_path, lambda ln: "after=1" in ln),
                             "line after SIGHUP not in the new file")
        self.assertTrue(p.running)
        p.check_stopped(self)
        old = harness.log_lines(rotated)
        new = harness.log_lines(p.log_path)
        self.assertTrue(any("before=1" in ln for ln in old))
        self.assertFalse(any("after=1" in ln for ln in old))
        self.assertFalse(any("before=1" in ln for ln in new))

    def test_sighup_with_broken_config_keeps_old_rules(self):
        conf = '[rule "quiet"]\npath = /api/status/**\npersist = off\n'
        p = self.start_proxy(config=conf)
        self.assertEqual(p.request("GET", "/api/status/200/").status, 200)
        self.assertEqual(p.request("GET", "/api/echo/?n=1").status, 200)
        p.write_config('[rule "quiet"\npath = \nworkers = lots\n')
        p.signal(signal.SIGHUP)
        time.sleep(0.5)
        self.assertTrue(p.running, "restspy died on SIGHUP with a broken config:\n" + p.stderr())
        self.assertEqual(p.admin("GET", "/healthz").status, 200)
        self.assertEqual(p.request("GET", "/api/status/201/").status, 201)
        self.assertEqual(p.request("GET", "/api/echo/?n=2").status, 200)
        self.assertTrue(p.stderr().strip(), "no message about the broken config on stderr")
        p.check_stopped(self)
        paths = sorted((r["path"], r["query"]) for r in p.rows())
        self.assertEqual(paths, [("/api/echo/", "n=1"), ("/api/echo/", "n=2")])
        # The log has all four (the rule only turns persistence off).
        self.assertEqual(len(harness.log_json(p.log_path)), 4)

    def test_sighup_with_valid_config_applies_new_rules(self):
        p = self.start_proxy(config='[rule "quiet"]\npath = /api/status/**\npersist = off\n')
        self.assertEqual(p.request("GET", "/api/status/200/").status, 200)
        p.write_config('[rule "quiet"]\npath = /api/echo/**\npersist = off\n')
        p.signal(signal.SIGHUP)
        time.sleep(0.5)
        self.assertTrue(p.running)
        self.assertEqual(p.request("GET", "/api/status/201/").status, 201)
        self.assertEqual(p.request("GET", "/api/echo/").status, 200)
        p.check_stopped(self)
        self.assertEqual([r["path"] for r in p.rows()], ["/api/status/201/"])

    def log_format_with(self, config=None, env=None, args=()):
        p = self.start_proxy(config=config, env=env, args=args, name="p%d" % len(self.proxies))
        m = uuid.uuid4().hex[:10]
        self.assertEqual(p.request("GET", "/api/echo/?m=" + m).status, 200)
        line = harness.wait_log(p.log_path, lambda ln: m in ln)
        p.check_stopped(self)
        os.unlink(p.log_path)
        self.assertIsNotNone(line)
        return "json" if line.startswith("{") else "combined"

    def test_config_precedence(self):
        conf = "log_format = combined\n"
        self.assertEqual(self.log_format_with(config=conf), "combined")
        self.assertEqual(self.log_format_with(config=conf, env={"RESTSPY_LOG_FORMAT": "json"}),
                         "json")
        self.assertEqual(self.log_format_with(config=conf, env={"RESTSPY_LOG_FORMAT": "json"},
                                              args=("--log-format", "combined")), "combined")
        # The [restspy] section counts as top level.
        self.assertEqual(self.log_format_with(config="[restspy]\nlog_format = combined\n"),
                         "combined")

    def test_bare_port_and_inline_comments(self):
        """--listen PORT and --admin PORT mean loopback; a config file's
        "# comment" after a value is not part of it (issue 9 item 14)."""
        p = BarePortProxy(self.dir, self.app.url,
                          config="log_format = combined # not json\n"
                                 "resp_body_cap = 4 ; bytes kept\n")
        self.proxies.append(p)
        p.start()
        self.assertIn("--listen", p.command())
        self.assertEqual(p.command()[p.command().index("--listen") + 1], str(p.port))
        self.assertEqual(p.request("GET", "/api/echo/?bare=1").status, 200)
        line = harness.wait_log(p.log_path, lambda ln: "bare=1" in ln)
        self.assertIsNotNone(line)
        self.assertFalse(line.startswith("{"), "not a combined line: %r" % line)
        self.assertIn("listening on 127.0.0.1:%d" % p.port, p.stderr())
        self.assertIn("admin 127.0.0.1:%d" % p.admin_port, p.stderr())
        p.check_stopped(self)
        self.assertEqual([len(r["resp_body"]) for r in p.rows()], [4])

    def launch(self, name, port, admin_port):
        """A restspy on port with a store of its own; returns (Popen, stderr
        path)."""
        err_path = os.path.join(self.dir, name + ".stderr")
        cmd = [harness.restspy_bin(), "proxy", "--listen", "127.0.0.1:%d" % port,
               "--upstream", self.app.url, "--store",
               "sqlite:" + os.path.join(self.dir, name + ".db"), "--log", "off",
               "--admin", "127.0.0.1:%d" % admin_port, "--workers", "2", "--node", name]
        with open(err_path, "ab") as err:
            proc = subprocess.Popen(cmd, cwd=self.dir, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err,
                                    env=harness.clean_env())
        self.launched.append(proc)
        return proc, err_path

    def assert_refused_port(self, proc, err_path, port):
        try:
            rc = proc.wait(10)
        except subprocess.TimeoutExpired:
            self.fail("a second restspy started on port %d, which another one holds" % port)
        err = harness.read_text(err_path)
        self.assertEqual(rc, 1, err)
        self.assertIn("cannot listen on 127.0.0.1:%d: address already in use" % port,
                      err.lower())
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertIsNone(harness.sanitizer_report(err), err)

    def test_taken_port_refused_but_workers_share_it(self):
        """A second restspy on a port the first holds exits 1 with "address
        already in use" instead of taking part of the traffic (SO_REUSEPORT
        would let it join); the first one's two workers still share the port
        (issue 9 item 2)."""
        first = self.start_proxy(name="first")  # --workers 2
        proc, err_path = self.launch("second", first.port, harness.free_port())
        self.assert_refused_port(proc, err_path, first.port)
        # Every request reaches the first, on many connections (both workers).
        n = 40
        for i in range(n):
            self.assertEqual(first.request("GET", "/api/echo/?i=%d" % i).status, 200)
        self.assertEqual(len(first.wait_rows(n)), n)
        self.assertGreaterEqual(first.stats()["connections"], n)
        first.check_stopped(self)

    def test_simultaneous_starts_on_one_port(self):
        """Two restspy started at the same moment on one free port: exactly
        one keeps it, the other exits 1 (issue 9 item 2)."""
        for round_ in range(3):
            port = harness.free_port()
            a = self.launch("a%d" % round_, port, harness.free_port())
            b = self.launch("b%d" % round_, port, harness.free_port())
            ended = harness.wait_until(
                lambda: [p for p in (a, b) if p[0].poll() is not None], timeout=10)
            self.assertEqual(len(ended), 1, "round %d: %s" % (
                round_, [harness.read_text(e) for _, e in (a, b)]))
            self.assert_refused_port(ended[0][0], ended[0][1], port)
            survivor = b if ended[0] is a else a
            time.sleep(0.3)
            self.assertIsNone(survivor[0].poll(), harness.read_text(survivor[1]))
            self.assertEqual(harness.request(port, "GET", "/api/echo/").status, 200)
            survivor[0].terminate()
            self.assertEqual(survivor[0].wait(20), 0, harness.read_text(survivor[1]))

    def test_cli_requests_and_show(self):
        p = self.start_proxy()
        for target in ("/api/status/200/", "/api/status/404/", "/api/status/500/",
                       "/api/status/503/", "/api/echo/?cli=1"):
            p.request("GET", target)
        p.request("POST", "/api/echo/raw/", body=b"cli body", headers={"X-Cli": "yes"})
        p.check_stopped(self)
        rows = p.rows()
        self.assertEqual(len(rows), 6)
        store = "sqlite:" + p.db_path

        r = harness.run_cli(["requests", "--store", store, "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIsNone(harness.sanitizer_report(r.stderr), r.stderr)
        lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
        self.assertEqual(len(lines), 6, r.stdout)
        docs = [json.loads(ln) for ln in lines]
        self.assertEqual(sorted(d["id"] for d in docs), sorted(r_["id"] for r_ in rows))
        for d in docs:
            for key in ("id", "method", "path", "status", "started_at", "node"):
                self.assertIn(key, d)

        r = harness.run_cli(["requests", "--store", store, "--status", "5xx", "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        docs = [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()]
        self.assertEqual(sorted(d["status"] for d in docs), [500, 503])

        r = harness.run_cli(["requests", "--store", store])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("/api/status/404/", r.stdout)

        post = [r_ for r_ in rows if r_["method"] == "POST"][0]
        r = harness.run_cli(["show", "--store", store, post["id"]])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIsNone(harness.sanitizer_report(r.stderr), r.stderr)
        self.assertIn(post["id"], r.stdout)
        self.assertIn("/api/echo/raw/", r.stdout)
        self.assertIn("cli body", r.stdout)

        r = harness.run_cli(["show", "--store", store, str(uuid.uuid4())])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertTrue(r.stderr.strip())

        r = harness.run_cli(["requests", "--store", "sqlite:" + os.path.join(self.dir, "nope",
                                                                               "x.db")])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)

    def test_version_help_and_usage_errors(self):
        r = harness.run_cli(["--version"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.strip())
        self.assertIsNone(harness.sanitizer_report(r.stderr), r.stderr)

        r = harness.run_cli(["proxy", "--help"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("--upstream", r.stdout)
        self.assertIsNone(harness.sanitizer_report(r.stderr), r.stderr)

        for args in (["proxy", "--no-such-flag"], ["proxy", "--no-such-flag", "x"],
                     ["requests", "--no-such-flag"], ["proxy", "--workers", "many"]):
            with self.subTest(args=args):
                r = harness.run_cli(args)
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                self.assertEqual(len(r.stderr.strip().splitlines()), 1,
                                 "expected one line on stderr: %r" % r.stderr)

        r = harness.run_cli(["no-such-command"])
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
