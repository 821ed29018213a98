"""`make run` (scripts/demo): it prints the web console's address, and the
console there shows the sample app's traffic sent through the proxy; SIGTERM
stops both processes cleanly. Run on free ports with its files in a temp
dir (RUN_DIR), with the binary under test (RESTSPY_BIN)."""
import json
import os
import signal
import subprocess
import time
import unittest

import harness


class Demo(unittest.TestCase):
    def setUp(self):
        self.dir = harness.make_tmpdir("demo")
        self.ports = {k: harness.free_port() for k in ("APP_PORT", "PROXY_PORT", "ADMIN_PORT")}
        env = harness.clean_env(dict(
            {k: str(v) for k, v in self.ports.items()},
            RUN_DIR=self.dir, RESTSPY_BIN=harness.restspy_bin(), PYTHON=harness.python_bin()))
        self.out_path = os.path.join(self.dir, "demo.out")
        self.out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(["bash", os.path.join(harness.REPO, "scripts", "demo")],
                                     env=env, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT)

    def tearDown(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        harness.remove_tmpdir(self.dir)

    def output(self):
        return harness.read_text(self.out_path)

    def test_prints_the_console_and_it_shows_the_traffic(self):
        admin = "http://127.0.0.1:%d/" % self.ports["ADMIN_PORT"]
        self.assertTrue(harness.wait_until(lambda: "Try:" in self.output() or
                                           self.proc.poll() is not None, timeout=60),
                        self.output())
        self.assertIsNone(self.proc.poll(), self.output())
        console_line = [ln for ln in self.output().splitlines() if ln.strip().startswith("console")]
        self.assertEqual(len(console_line), 1, self.output())
        self.assertIn(admin, console_line[0])

        page = harness.request(self.ports["ADMIN_PORT"], "GET", "/")
        self.assertEqual(page.status, 200)
        self.assertIn(b"restspy console", page.body)

        mark = "demo%d" % time.time_ns()
        r = harness.request(self.ports["PROXY_PORT"], "GET", "/api/sites/?m=" + mark)
        self.assertEqual(r.status, 200)

        def captured():
            r = harness.request(self.ports["ADMIN_PORT"], "GET", "/api/requests?limit=50")
            return [x for x in json.loads(r.body)["requests"] if mark in (x.get("query") or "")]
        rows = harness.wait_until(captured, timeout=5)
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0]["path"], "/api/sites/")

        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(20), 0, self.output())
        self.assertIn("demo: stopping", self.output())
        self.assertIsNone(harness.sanitizer_report(self.output()), self.output())


if __name__ == "__main__":
    unittest.main()
