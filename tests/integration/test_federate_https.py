"""`restspy federate --mgmt https://…` (issue 12): the management API over
TLS, verified with --cacert (curl's flag names), through the one HTTP client.

The "management API" is a real TLS server (Python's ssl, a certificate from
the test CA) that refuses every request with 401, as RabbitMQ does for a
wrong password: enough to see that the request went out over verified TLS
with the URL's credentials, and that the refusal is told in one line. The
broker side of federate is covered by test_replication_cli."""
import base64
import os
import shutil
import threading
import unittest
from http.server import BaseHTTPRequestHandler

import harness
import tlsca
from test_replay_https import TLSServer


class Refuse(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        self.server.paths.append((self.path, self.headers.get("Authorization")))
        body = b'{"error":"not_authorized","reason":"Login failed"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FederateHTTPSTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.make_tmpdir("federate-https")
        cls.pki = tlsca.make_pki(os.path.join(cls.tmp, "pki"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        p = self.pki["server"]
        self.srv = TLSServer(p["cert"], p["key"])
        self.srv.RequestHandlerClass = Refuse
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.addCleanup(self.srv.server_close)
        self.addCleanup(self.srv.shutdown)
        self.mgmt = "https://guest:s3cret@localhost:%d" % self.srv.server_address[1]

    def federate(self, *args):
        p = harness.run_cli(["federate", "--mgmt", self.mgmt, "--node", "a",
                             "--peer", "b=amqp://u:p@127.0.0.1:5672"] + list(args), timeout=30)
        self.assertIsNone(harness.sanitizer_report(p.stderr), p.stderr)
        return p

    def test_verified_request_with_credentials(self):
        p = self.federate("--cacert", self.pki["ca"]["cert"])
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        lines = p.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertIn("401", lines[0])
        self.assertIn("check the user and password in --mgmt", lines[0])
        self.assertNotIn("s3cret", p.stderr)
        want = "Basic " + base64.b64encode(b"guest:s3cret").decode()
        self.assertEqual(self.srv.paths, [("/api/vhosts/%2F", want)])

    def test_unverified_certificate(self):
        p = self.federate()  # the system store does not know the test CA
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        lines = p.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertIn("tls: ", lines[0])
        self.assertIn("certificate", lines[0])
        self.assertEqual(self.srv.paths, [])

    def test_print_shows_the_same_flags(self):
        ca = self.pki["ca"]["cert"]
        p = self.federate("--cacert", ca, "--print")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        curls = [ln for ln in p.stdout.splitlines() if ln.startswith("curl ")]
        self.assertTrue(curls, p.stdout)
        for ln in curls:
            self.assertIn("--cacert '%s'" % ca, ln)
            self.assertIn("'https://localhost:", ln)


if __name__ == "__main__":
    unittest.main()
