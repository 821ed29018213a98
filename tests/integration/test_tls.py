"""TLS both ways (issue 12), with real certificates and real peers: a test CA
made with the openssl command (tlsca.py), curl and Python's ssl module as
clients of restspy's TLS listener, and nginx with TLS as restspy's HTTPS
upstream (several server blocks: plain verification, a wrong host name, a
client certificate required, no keep-alive to show session resumption).
Nothing is mocked."""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import harness
import tlsca

PKI = None
TMP = None
BACKEND = None
NGINX = None
NGINX_PORTS = {}


class Echo(__import__("http.server").server.BaseHTTPRequestHandler):
    """The plain backend: answers with what restspy forwarded."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = ("proto=%s path=%s" % (self.headers.get("X-Forwarded-Proto"),
                                      self.path)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def nginx_bin():
    for p in ("/usr/sbin/nginx", shutil.which("nginx") or ""):
        if p and os.access(p, os.X_OK):
            return p
    raise RuntimeError("nginx is needed by the TLS tests (scripts/install-deps installs it)")


def start_nginx():
    """nginx answering over TLS on four ports:
    ok: the server certificate, keep-alive;
    wrong: a certificate for wrong.example only;
    mtls: requires a client certificate signed by the test CA;
    close: no keep-alive, so every request is a new TLS connection, and
    X-Reused says whether its session was resumed."""
    global NGINX
    d = os.path.join(TMP, "nginx")
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    for name in ("ok", "wrong", "mtls", "close"):
        NGINX_PORTS[name] = harness.free_port()
    common = ('add_header X-Reused $ssl_session_reused always; '
              'add_header X-Client "$ssl_client_s_dn" always; '
              'location / { return 200 "tls-backend $server_port\\n"; }')

    def server(port, cert, extra=""):
        return ("server { listen 127.0.0.1:%d ssl; ssl_certificate %s; ssl_certificate_key %s; "
                "ssl_session_cache shared:S:1m; ssl_session_tickets on; %s %s }\n"
                % (port, cert["cert"], cert["key"], extra, common))
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write("daemon off; master_process off; worker_processes 1; pid %s/nginx.pid;\n"
                "error_log %s/logs/error.log warn;\nevents { worker_connections 256; }\n"
                "http { access_log off; keepalive_timeout 30s;\n" % (d, d))
        f.write(server(NGINX_PORTS["ok"], PKI["server"]))
        f.write(server(NGINX_PORTS["wrong"], PKI["wronghost"]))
        f.write(server(NGINX_PORTS["mtls"], PKI["server"],
                       "ssl_client_certificate %s; ssl_verify_client on;" % PKI["ca"]["cert"]))
        f.write(server(NGINX_PORTS["close"], PKI["server"], "keepalive_timeout 0;"))
        f.write("}\n")
    NGINX = subprocess.Popen([nginx_bin(), "-p", d, "-c", conf], stdout=subprocess.DEVNULL,
                             stderr=open(os.path.join(d, "stderr"), "wb"))
    for port in NGINX_PORTS.values():
        ok = harness.wait_until(lambda: _connects(port), timeout=10)
        if not ok:
            raise RuntimeError("nginx did not start:\n" +
                               harness.read_text(os.path.join(d, "stderr")))


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def setUpModule():
    global PKI, TMP, BACKEND
    TMP = tempfile.mkdtemp(prefix="restspy-tls-")
    PKI = tlsca.make_pki(os.path.join(TMP, "pki"))
    BACKEND = harness.start_backend(Echo)
    start_nginx()


def tearDownModule():
    if NGINX:
        NGINX.terminate()
        NGINX.wait(10)
    if BACKEND:
        harness.stop_backend(BACKEND)
    shutil.rmtree(TMP, ignore_errors=True)


def client_ctx(ca=True, **kw):
    ctx = ssl.create_default_context(cafile=PKI["ca"]["cert"] if ca else None)
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def https_get(port, path="/", name="localhost", ctx=None, session=None, raw=False):
    """One GET over a new TLS connection; (status line, body, ssl socket
    facts). The socket is closed on return."""
    ctx = ctx or client_ctx()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=name, session=session) as t:
            t.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                       % (path, name)).encode())
            data = b""
            while True:
                chunk = t.recv(65536)
                if not chunk:
                    break
                data += chunk
            facts = {"version": t.version(), "alpn": t.selected_alpn_protocol(),
                     "reused": t.session_reused, "session": t.session,
                     "serial": "%x" % int(t.getpeercert()["serialNumber"], 16)
                     if ctx.verify_mode != ssl.CERT_NONE else None}
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body, facts


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True,
                          text=True, timeout=20)


class TlsListener(unittest.TestCase):
    """restspy --tls-cert: the proxy listener over TLS."""

    def start(self, *args, config=None):
        self.tmp = tempfile.mkdtemp(dir=TMP)
        p = harness.Proxy(self.tmp, BACKEND.url, args=list(args), config=config)
        p.start()
        self.addCleanup(lambda: p.check_stopped(self))
        return p

    def tls_args(self, *names):
        out = []
        for n in names:
            out += ["--tls-cert", PKI[n]["cert"], "--tls-key", PKI[n]["key"]]
        return out

    def test_curl_with_cacert_and_capture_says_https(self):
        p = self.start(*self.tls_args("server"))
        r = curl("--cacert", PKI["ca"]["cert"], "-D", "-",
                 "https://localhost:%d/tls/one" % p.port)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("HTTP/1.1 200", r.stdout)
        self.assertIn("proto=https path=/tls/one", r.stdout)
        rows = p.wait_rows(1, "path = ?", ("/tls/one",))
        self.assertEqual(rows[0]["scheme"], "https")
        st = p.stats()
        self.assertGreaterEqual(st["tls_handshakes"], 1, st)
        # Without the CA, curl refuses restspy's certificate: it is real.
        r = curl("https://localhost:%d/tls/two" % p.port)
        self.assertEqual(r.returncode, 60, r.stderr)

    def test_versions_alpn_and_sni(self):
        p = self.start(*self.tls_args("server", "other"))
        line, _, f = https_get(p.port)
        self.assertIn(" 200 ", line)
        self.assertEqual(f["version"], "TLSv1.3")
        self.assertEqual(f["serial"], PKI["server"]["serial"])
        ctx = client_ctx()
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        _, _, f = https_get(p.port, ctx=ctx, name="other.test")
        self.assertEqual(f["alpn"], "http/1.1")
        self.assertEqual(f["serial"], PKI["other"]["serial"])  # chosen by SNI
        ctx = client_ctx(maximum_version=ssl.TLSVersion.TLSv1_2)
        line, _, f = https_get(p.port, ctx=ctx)
        self.assertEqual(f["version"], "TLSv1.2")
        self.assertIn(" 200 ", line)
        # TLS 1.1 and older are refused.
        ctx = client_ctx()
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        with self.assertRaises(ssl.SSLError):
            https_get(p.port, ctx=ctx)

    def test_session_resumption(self):
        p = self.start(*self.tls_args("server"))
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            ctx = client_ctx(maximum_version=version)
            _, _, f = https_get(p.port, ctx=ctx)
            self.assertFalse(f["reused"])
            _, _, g = https_get(p.port, ctx=ctx, session=f["session"])
            self.assertTrue(g["reused"], "session not resumed over %s" % version)
        self.assertGreaterEqual(p.stats()["tls_resumed"], 2)

    def test_plain_request_on_tls_port_gets_400(self):
        p = self.start(*self.tls_args("server"))
        _, raw = harness.raw_exchange(p.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 400 "), raw)
        self.assertIn(b'"error":"plain HTTP request sent to an HTTPS port"', raw)

    def test_stalled_handshake_times_out(self):
        p = self.start(*self.tls_args("server"), "--tls-handshake-timeout", "1s")
        before = p.stats()["tls_handshake_failures"]
        with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
            s.sendall(b"\x16\x03\x01")  # the start of a record, then nothing
            t0 = time.monotonic()
            self.assertEqual(s.recv(100), b"")  # closed by restspy
            self.assertLess(time.monotonic() - t0, 8)
        self.assertTrue(harness.wait_until(
            lambda: p.stats()["tls_handshake_failures"] > before, timeout=5))
        # Other clients were served meanwhile and after.
        self.assertIn(" 200 ", https_get(p.port)[0])

    def test_sighup_swaps_certificate_without_dropping_connections(self):
        d = tempfile.mkdtemp(dir=TMP)
        cert, key = os.path.join(d, "live.pem"), os.path.join(d, "live.key")
        shutil.copy(PKI["server"]["cert"], cert)
        shutil.copy(PKI["server"]["key"], key)
        p = self.start(config="tls_cert = %s\ntls_key = %s\n" % (cert, key))
        ctx = client_ctx()
        with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
            with ctx.wrap_socket(s, server_hostname="localhost") as kept:
                self.assertEqual("%x" % int(kept.getpeercert()["serialNumber"], 16),
                                 PKI["server"]["serial"])
                shutil.copy(PKI["server2"]["cert"], cert)
                shutil.copy(PKI["server2"]["key"], key)
                p.signal(signal.SIGHUP)
                self.assertTrue(harness.wait_until(
                    lambda: "config reloaded" in p.stderr(), timeout=5), p.stderr())
                self.assertEqual(https_get(p.port)[2]["serial"], PKI["server2"]["serial"])
                # The connection made before the reload still works.
                kept.sendall(b"GET /kept HTTP/1.1\r\nHost: localhost\r\n\r\n")
                self.assertIn(b" 200 ", kept.recv(4096))
        # A broken certificate on reload keeps the running one.
        shutil.copy(PKI["other"]["key"], key)
        p.signal(signal.SIGHUP)
        self.assertTrue(harness.wait_until(
            lambda: "config reload failed: tls:" in p.stderr(), timeout=5), p.stderr())
        self.assertEqual(https_get(p.port)[2]["serial"], PKI["server2"]["serial"])

    def test_admin_listener_over_tls(self):
        tmp = tempfile.mkdtemp(dir=TMP)
        cert, key = os.path.join(tmp, "admin.pem"), os.path.join(tmp, "admin.key")
        shutil.copy(PKI["server"]["cert"], cert)
        shutil.copy(PKI["server"]["key"], key)
        port, admin = harness.free_port(), harness.free_port()
        stderr = os.path.join(tmp, "stderr")
        proc = subprocess.Popen(
            [harness.restspy_bin(), "proxy", "--upstream", BACKEND.url, "--listen",
             "127.0.0.1:%d" % port, "--admin", "127.0.0.1:%d" % admin, "--store", "off",
             "--log", "off", "--admin-tls-cert", cert, "--admin-tls-key", key],
            stderr=open(stderr, "wb"), env=harness.clean_env())
        try:
            self.assertTrue(harness.wait_until(lambda: _connects(admin), timeout=10))
            r = curl("--cacert", PKI["ca"]["cert"], "https://localhost:%d/healthz" % admin)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn('"status":"ok"', r.stdout.replace(" ", ""))
            _, raw = harness.raw_exchange(admin, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertIn(b"plain HTTP request sent to an HTTPS port", raw)
            # SIGHUP reloads the admin listener's certificate too.
            self.assertEqual(https_get(admin, "/healthz")[2]["serial"], PKI["server"]["serial"])
            shutil.copy(PKI["server2"]["cert"], cert)
            shutil.copy(PKI["server2"]["key"], key)
            proc.send_signal(signal.SIGHUP)
            self.assertTrue(harness.wait_until(
                lambda: "config reloaded" in harness.read_text(stderr), timeout=5))
            self.assertEqual(https_get(admin, "/healthz")[2]["serial"], PKI["server2"]["serial"])
        finally:
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(20), 0)
        err = harness.read_text(os.path.join(tmp, "stderr"))
        self.assertIsNone(harness.sanitizer_report(err), err)

    def test_bad_certificates_refused_at_start(self):
        bad = os.path.join(TMP, "not-a-cert.pem")
        with open(bad, "w") as f:
            f.write("hello\n")
        cases = [
            (["--tls-cert", PKI["expired"]["cert"], "--tls-key", PKI["expired"]["key"]],
             "expired on 2020-01-02"),
            (["--tls-cert", PKI["server"]["cert"], "--tls-key", PKI["other"]["key"]],
             "key values mismatch"),
            (["--tls-cert", bad], "cannot load certificate"),
            (["--tls-cert", os.path.join(TMP, "missing.pem")], "cannot read it"),
            (["--tls-key", PKI["server"]["key"]], "tls_key given more times than tls_cert"),
            (["--upstream-ca", PKI["ca"]["cert"]], "need an https:// upstream"),
            (["--admin-tls-cert", PKI["expired"]["cert"], "--admin-tls-key",
              PKI["expired"]["key"]], "expired"),
        ]
        for args, text in cases:
            r = subprocess.run([harness.restspy_bin(), "proxy", "--upstream", BACKEND.url,
                                "--listen", "127.0.0.1:%d" % harness.free_port(),
                                "--admin", "off", "--store", "off", *args],
                               capture_output=True, text=True, timeout=20,
                               env=harness.clean_env())
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
            self.assertEqual(len(lines), 1, r.stderr)
            self.assertIn(text, lines[0])


class HttpsUpstream(unittest.TestCase):
    """restspy --upstream https://...: nginx with TLS behind restspy."""

    def start(self, which, *args):
        tmp = tempfile.mkdtemp(dir=TMP)
        p = harness.Proxy(tmp, "https://127.0.0.1:%d" % NGINX_PORTS[which], args=list(args))
        p.start()
        self.addCleanup(lambda: p.check_stopped(self))
        return p

    def test_verified_upstream(self):
        p = self.start("ok", "--upstream-ca", PKI["ca"]["cert"])
        for _ in range(3):
            r = p.request("GET", "/v")
            self.assertEqual(r.status, 200, r)
            self.assertIn(b"tls-backend", r.body)
        st = p.stats()
        self.assertGreaterEqual(st["upstream_reused"], 1, st)  # the pool keeps TLS connections

    def test_sessions_resumed_on_new_upstream_connections(self):
        p = self.start("close", "--upstream-ca", PKI["ca"]["cert"])
        reused = [p.request("GET", "/r%d" % i).header("X-Reused") for i in range(4)]
        self.assertEqual(reused[0], ".", reused)
        self.assertIn("r", reused[1:], reused)

    def test_unverified_certificate_gives_502(self):
        p = self.start("ok")  # the test CA is not in the system store
        r = p.request("GET", "/nocacert")
        self.assertEqual(r.status, 502, r)
        err = r.json()["error"]
        self.assertTrue(err.startswith("upstream certificate verify failed: "), err)
        rows = p.wait_rows(1, "path = ?", ("/nocacert",))
        self.assertEqual(rows[0]["error"], err)

    def test_host_name_checked_and_sni_option(self):
        p = self.start("wrong", "--upstream-ca", PKI["ca"]["cert"])
        r = p.request("GET", "/wrong")
        self.assertEqual(r.status, 502, r)
        self.assertIn("mismatch", r.json()["error"])
        q = self.start("wrong", "--upstream-ca", PKI["ca"]["cert"],
                       "--upstream-sni", "wrong.example")
        self.assertEqual(q.request("GET", "/right").status, 200)

    def test_insecure_is_said_loudly(self):
        p = self.start("wrong", "--upstream-insecure")
        self.assertEqual(p.request("GET", "/insecure").status, 200)
        self.assertEqual(p.stderr().count("upstream_insecure is on"), 1, p.stderr())

    def test_mutual_tls(self):
        p = self.start("mtls", "--upstream-ca", PKI["ca"]["cert"])
        r = p.request("GET", "/nocert")  # nginx answers this itself
        self.assertEqual(r.status, 400, r)
        self.assertIn(b"No required SSL certificate was sent", r.body)
        q = self.start("mtls", "--upstream-ca", PKI["ca"]["cert"],
                       "--upstream-cert", PKI["client"]["cert"],
                       "--upstream-key", PKI["client"]["key"])
        r = q.request("GET", "/withcert")
        self.assertEqual(r.status, 200, r)
        self.assertIn("CN=restspy-test-client", r.header("X-Client"))


class TlsAlertUpstream(unittest.TestCase):
    """Upstreams that fail TLS in the ways nginx does not: an alert after the
    TLS 1.3 handshake (Python's TLS stack refusing a client without a
    certificate), a plain HTTP server named https://, and one that closes at
    once. Each 502 says why."""

    def serve(self, handle):
        """A loopback listener whose every connection goes to handle(sock);
        returns its port."""
        import threading
        lsock = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(lsock.close)

        def loop():
            while True:
                try:
                    s, _ = lsock.accept()
                except OSError:
                    return
                handle(s)
        threading.Thread(target=loop, daemon=True).start()
        return lsock.getsockname()[1]

    def proxy(self, url):
        p = harness.Proxy(tempfile.mkdtemp(dir=TMP), url,
                          args=["--upstream-ca", PKI["ca"]["cert"]])
        p.start()
        self.addCleanup(lambda: p.check_stopped(self))
        return p

    def test_alert_after_handshake_gives_502(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(PKI["server"]["cert"], PKI["server"]["key"])
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(PKI["ca"]["cert"])

        def handle(s):
            t = ctx.wrap_socket(s, server_side=True, do_handshake_on_connect=False)
            try:
                t.do_handshake()
                t.recv(100)
            except (ssl.SSLError, OSError):
                # Let the alert reach restspy before the close: closing with
                # its request unread sends a reset, which may overtake it.
                time.sleep(0.5)
            t.close()
        p = self.proxy("https://127.0.0.1:%d" % self.serve(handle))
        r = p.request("GET", "/alert")
        self.assertEqual(r.status, 502, r)
        self.assertIn("certificate required", r.json()["error"])
        self.assertTrue(r.json()["error"].startswith("upstream TLS failed: "), r.json())

    def test_handshake_failures_give_502(self):
        closing = "https://127.0.0.1:%d" % self.serve(lambda s: s.close())
        # A server that closes at once: restspy sees the close, or a reset
        # when its ClientHello reached the socket after the close (timing).
        for url, text in ((BACKEND.url.replace("http://", "https://"), "wrong version number"),
                          (closing, "connection (closed|reset by peer)")):
            r = self.proxy(url).request("GET", "/handshake")
            self.assertEqual(r.status, 502, r)
            err = r.json()["error"]
            self.assertTrue(err.startswith("upstream handshake failed: "), err)
            self.assertRegex(err, text)


if __name__ == "__main__":
    unittest.main()
