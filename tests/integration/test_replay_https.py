"""Replay against an HTTPS target (issue 12): a real TLS server (Python's ssl
module, on 127.0.0.1) with a certificate from the test CA (tlsca.py).

Verified with --cacert it replays and matches; without it every request
fails with one clear line saying why; --insecure skips the check (and says
so); a certificate for another name fails the host name check; a server
that requires a client certificate gets one with --cert/--key. Kept-alive
connections are reused over TLS (the server counts its handshakes)."""
import json
import os
import shutil
import ssl
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import harness
import tlsca

BODY = b'{"id":7,"name":"alpha","status":"up"}'
N = 12


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        self.server.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


class TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, cert, key, client_ca=None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.paths = []
        self.handshakes = 0
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        if client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(client_ca)
        self.ctx = ctx

    def get_request(self):
        sock, addr = self.socket.accept()
        sock.settimeout(10)
        try:
            tls = self.ctx.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError):
            sock.close()
            raise
        self.handshakes += 1
        return tls, addr

    def handle_error(self, request, client_address):
        pass  # a refused handshake is the point of some tests


def write_cases(path, host):
    """N recorded GETs with the answer the server gives."""
    with open(path, "w") as f:
        for i in range(N):
            f.write(json.dumps({
                "id": "0190b0c0-0000-7000-8000-%012x" % i,
                "started_at": 1_790_000_000_000_000 + i * 100,
                "client_addr": "127.0.0.1:40000",
                "method": "GET", "scheme": "https", "host": host,
                "path": "/api/sites/%d" % i,
                "req_headers": [["Host", host], ["Accept", "application/json"]],
                "status": 200,
                "resp_headers": [["Content-Type", "application/json"]],
                "resp_body": BODY.decode(),
            }) + "\n")


class ReplayHTTPSTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.make_tmpdir("replay-https")
        cls.pki = tlsca.make_pki(os.path.join(cls.tmp, "pki"))
        cls.cases = os.path.join(cls.tmp, "cases.jsonl")
        write_cases(cls.cases, "localhost")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def serve(self, name="server", client_ca=None):
        p = self.pki[name]
        srv = TLSServer(p["cert"], p["key"], client_ca)
        th = threading.Thread(target=srv.serve_forever, daemon=True)
        th.start()
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        return srv

    def replay(self, srv, *args, host="localhost"):
        target = "https://%s:%d" % (host, srv.server_address[1])
        p = harness.run_cli(["replay", "--jsonl", self.cases, "--target", target,
                             "--concurrency", "2", "--timeout", "5s"] + list(args), timeout=60)
        self.assertIsNone(harness.sanitizer_report(p.stderr), p.stderr)
        return p

    def test_cacert_verifies_and_keeps_connections(self):
        srv = self.serve()
        p = self.replay(srv, "--cacert", self.pki["ca"]["cert"])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("%d requests: %d matched, 0 mismatched, 0 errors" % (N, N), p.stdout)
        self.assertEqual(sorted(srv.paths), sorted("/api/sites/%d" % i for i in range(N)))
        # Two connections, kept alive over TLS: not one handshake per request.
        self.assertLessEqual(srv.handshakes, 2)

    def test_unverified_certificate_fails_clearly(self):
        srv = self.serve()
        p = self.replay(srv)  # the system store does not know the test CA
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        errors = [ln for ln in p.stdout.splitlines() if ln.startswith("ERROR ")]
        self.assertEqual(len(errors), 1, p.stdout)
        self.assertIn("tls: ", errors[0])
        self.assertIn("certificate", errors[0])
        self.assertIn(": %d requests" % N, errors[0])
        self.assertEqual(srv.paths, [])

    def test_insecure_skips_the_check_and_says_so(self):
        srv = self.serve("wronghost")
        p = self.replay(srv, "--insecure")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("%d matched" % N, p.stdout)
        warn = [ln for ln in p.stderr.splitlines() if "--insecure" in ln]
        self.assertEqual(len(warn), 1, p.stderr)
        self.assertIn("NOT verified", warn[0])

    def test_wrong_host_name_fails(self):
        srv = self.serve("wronghost")
        p = self.replay(srv, "--cacert", self.pki["ca"]["cert"])
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("ERROR tls: ", p.stdout)
        self.assertIn("localhost", p.stdout)  # the name that did not match
        self.assertEqual(srv.paths, [])

    def test_client_certificate(self):
        srv = self.serve(client_ca=self.pki["ca"]["cert"])
        ca, cl = self.pki["ca"]["cert"], self.pki["client"]
        p = self.replay(srv, "--cacert", ca)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertEqual(srv.paths, [])
        p = self.replay(srv, "--cacert", ca, "--cert", cl["cert"], "--key", cl["key"],
                        host="127.0.0.1")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("%d matched" % N, p.stdout)

    def test_bad_flags(self):
        p = harness.run_cli(["replay", "--jsonl", self.cases, "--target", "http://127.0.0.1:9",
                             "--insecure"])
        self.assertEqual(p.returncode, 2)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("need an https:// --target", p.stderr)
        p = harness.run_cli(["replay", "--jsonl", self.cases, "--target", "https://127.0.0.1:9",
                             "--cacert", os.path.join(self.tmp, "missing.pem")])
        self.assertEqual(p.returncode, 2)
        self.assertIn("cannot read --cacert", p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)


if __name__ == "__main__":
    unittest.main()
