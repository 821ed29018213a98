"""Helpers for restspy's integration tests (standard library only).

What they give a test:
  * App: the sitemon sample app (examples/sitemon) on a free 127.0.0.1 port
    with its own temporary SQLite database, ready when start() returns;
  * Proxy: a restspy process (`$RESTSPY_BIN proxy ...`) in front of an
    upstream, with its store, access log and admin API in a temp dir; ready
    when its admin /healthz answers 200. stop() sends SIGTERM and returns the
    exit code; check_stopped() also fails on any sanitizer report in stderr;
  * request(): one HTTP request with http.client (repeated headers allowed);
  * RawConn / raw_request(): exact bytes over a socket and a strict parser of
    the responses (pipelining, HEAD, 204/304, malformed requests);
  * rows()/wait_rows(): the `requests` table as dicts; log_lines()/log_json():
    the access log.
Environment: RESTSPY_BIN (default build/restspy), PYTHON (the interpreter
with Django, default /usr/bin/python3), KEEP_TMP=1 keeps the temp dirs.
"""
import http.client
import json
import os
import shutil
import signal as _signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APP_DIR = os.path.join(REPO, "examples", "sitemon")


def python_bin():
    p = os.environ.get("PYTHON")
    if p:
        return p
    return "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def restspy_bin():
    return os.environ.get("RESTSPY_BIN") or os.path.join(REPO, "build", "restspy")


SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "SUMMARY: AddressSanitizer",
    "SUMMARY: UndefinedBehaviorSanitizer",
    "runtime error:",
    "WARNING: ThreadSanitizer",
)


def sanitizer_report(text):
    """The first sanitizer marker found in text, or None."""
    for m in SANITIZER_MARKERS:
        if m in text:
            return m
    return None


def free_port():
    return free_ports(1)[0]


def free_ports(n):
    """n distinct free ports: all bound at once, so that two of them cannot be
    the same (two free_port() calls in a row can be: the kernel may hand out
    the port it was just given back; a proxy's listener and admin then
    collided in a CI run)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def clean_env(extra=None):
    """The environment without any RESTSPY_* variable (so the caller's shell
    cannot change a test), plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTSPY_")}
    if extra:
        env.update(extra)
    return env


def wait_until(pred, timeout=5.0, interval=0.05):
    """Polls pred() until it returns a true value (returned) or timeout
    (returns the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


# ------------------------------------------------------------------ HTTP


class Resp:
    """A response: status, reason, headers as [(name, value)] in order, body
    bytes."""

    def __init__(self, status, reason, headers, body, version="HTTP/1.1", raw=b""):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.version = version
        self.raw = raw

    def header(self, name, default=None):
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return default

    def header_all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Resp %s %s %r %r>" % (self.status, self.reason, self.headers, self.body[:200])


def request(port, method, path, body=None, headers=None, timeout=10, conn=None,
            host="127.0.0.1"):
    """One request with http.client. headers: dict or list of (name, value)
    (repeats allowed). A Host header in headers replaces the automatic one.
    body: bytes, str (UTF-8) or a dict/list (sent as JSON). With conn, the
    request goes on that open HTTPConnection (keep-alive)."""
    if isinstance(headers, dict):
        headers = list(headers.items())
    headers = list(headers or [])
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", "application/json"))
    elif isinstance(body, str):
        body = body.encode("utf-8")
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        names = {k.lower() for k, _ in headers}
        conn.putrequest(method, path, skip_host="host" in names,
                        skip_accept_encoding=True)
        for k, v in headers:
            conn.putheader(k, v)
        if body is not None and "content-length" not in names and \
                "transfer-encoding" not in names:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        return Resp(r.status, r.reason, r.getheaders(), data,
                    "HTTP/1.1" if r.version == 11 else "HTTP/1.0")
    finally:
        if own:
            conn.close()


class RawConn:
    """A client socket for exact bytes, with a strict HTTP/1.x response
    parser. Every read has a timeout (socket.timeout on expiry)."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def _fill(self):
        if self.eof:
            return False
        try:
            d = self.sock.recv(65536)
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def _take_line(self):
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise EOFError("connection closed before end of line; got %r" % self.buf[:200])
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _take(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError("connection closed with %d of %d body bytes" % (len(self.buf), n))
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def read_response(self, method="GET"):
        """Reads one response to a request of the given method; interim 1xx
        responses are skipped. Raises EOFError if the connection closes first."""
        while True:
            status_line = self._take_line()
            parts = status_line.decode("latin-1").split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                raise AssertionError("bad status line %r" % status_line)
            version, status = parts[0], int(parts[1])
            reason = parts[2] if len(parts) > 2 else ""
            headers = []
            while True:
                line = self._take_line()
                if line == b"":
                    break
                if b":" not in line:
                    raise AssertionError("bad header line %r" % line)
                k, v = line.split(b":", 1)
                headers.append((k.decode("latin-1"), v.strip().decode("latin-1")))
            if 100 <= status < 200:
                continue
            resp = Resp(status, reason, headers, b"", version)
            te = ",".join(resp.header_all("Transfer-Encoding")).lower()
            if method == "HEAD" or status in (204, 304):
                body = b""
            elif "chunked" in te:
                body = self._read_chunked()
            elif resp.header("Content-Length") is not None:
                body = self._take(int(resp.header("Content-Length")))
            else:
                while self._fill():
                    pass
                body, self.buf = self.buf, b""
            resp.body = body
            return resp

    def _read_chunked(self):
        out = []
        while True:
            size_line = self._take_line()
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self._take_line() != b"":  # trailers
                    pass
                return b"".join(out)
            out.append(self._take(size))
            if self._take(2) != b"\r\n":
                raise AssertionError("chunk not followed by CRLF")

    def read_until_close(self, timeout=5.0):
        """Everything until the peer closes (unparsed); raises socket.timeout
        if it does not close within timeout."""
        self.sock.settimeout(timeout)
        while self._fill():
            pass
        d, self.buf = self.buf, b""
        return d

    def is_closed(self, timeout=2.0):
        """True if the peer closes (EOF or reset) within timeout with no more
        data; False if it stays open. Unread data counts as not closed."""
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            return not self._fill()
        except socket.timeout:
            return False
        except OSError:
            return True


def raw_request(port, data, n=1, methods=None, read_until_close=False, timeout=5.0):
    """Sends data (exact bytes: one or more requests) on a new connection.
    Reads n responses (or one per entry of methods, the request methods in
    order, so that HEAD responses are parsed bodiless), or with
    read_until_close everything until the server closes (socket.timeout if
    it does not within timeout). Returns the list of Resp."""
    if read_until_close:
        return raw_exchange(port, data, timeout)[0]
    with RawConn(port, timeout=timeout) as c:
        c.send(data)
        return [c.read_response(m) for m in (methods or ["GET"] * n)]


def raw_exchange(port, data, timeout=5.0):
    """Sends data and reads everything until the server closes. Returns
    (responses parsed from it, raw bytes). Fails if the server does not
    close within timeout."""
    with RawConn(port, timeout=timeout) as c:
        c.send(data)
        raw = c.read_until_close(timeout)
    return parse_responses(raw), raw


def parse_responses(raw, methods=None):
    """Parses as many complete responses as raw holds."""
    out = []
    c = RawConn.__new__(RawConn)
    c.buf, c.eof, c.sock = raw, True, None
    i = 0
    while c.buf:
        m = methods[i] if methods and i < len(methods) else "GET"
        try:
            out.append(c.read_response(m))
        except (EOFError, AssertionError):
            break
        i += 1
    return out


def wait_http(port, path, timeout=10.0, headers=None, proc=None, ok=(200,)):
    """Polls GET path until it answers a status in ok. False on timeout or if
    proc exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            r = request(port, "GET", path, headers=headers, timeout=2)
            if r.status in ok:
                return True
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.05)
    return False


# ------------------------------------------------------------- processes


class App:
    """The sitemon sample app on a free port with its own database.
    env: extra environment (e.g. {"SITEMON_VARIANT": "1"}, the changed build
    of examples/sitemon/README.md); db_from: a database file copied (see
    copy_db) as this app's database before it starts, so that several apps
    can start from the same state."""

    def __init__(self, tmpdir, name="app", env=None, db_from=None):
        self.tmpdir = tmpdir
        self.name = name
        self.port = None
        self.proc = None
        self.env = dict(env or {})
        self.db_from = db_from
        self.db_path = os.path.join(tmpdir, name + ".db")
        self.out_path = os.path.join(tmpdir, name + ".out")

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        self.port = free_port()
        if self.db_from is not None:
            copy_db(self.db_from, self.db_path)
        out = open(self.out_path, "ab")
        env = dict(self.env)
        env["SITEMON_DB"] = self.db_path
        self.proc = subprocess.Popen(
            [python_bin(), os.path.join(APP_DIR, "server.py"), "127.0.0.1:%d" % self.port],
            cwd=APP_DIR, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            env=clean_env(env))
        out.close()
        if not wait_http(self.port, "/api/status/200/", timeout=30, proc=self.proc):
            self.stop()
            raise RuntimeError("sample app did not start; output:\n" + read_text(self.out_path))
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def request(self, method, path, body=None, headers=None, **kw):
        return request(self.port, method, path, body=body, headers=headers, **kw)


class ProxyError(RuntimeError):
    pass


class Proxy:
    """A restspy proxy process. Files live in tmpdir: restspy.db (store),
    access.log, <name>.stderr, <name>.conf (when config text is given)."""

    def __init__(self, tmpdir, upstream, args=(), config=None, env=None, admin_token=None,
                 name="proxy", log=True, store=True):
        self.tmpdir = tmpdir
        self.upstream = upstream
        self.args = list(args)
        self.config = config
        self.env = dict(env or {})
        self.admin_token = admin_token
        self.name = name
        self.port = None
        self.admin_port = None
        self.proc = None
        self.returncode = None
        self.term_sent = False
        self.db_path = os.path.join(tmpdir, "restspy.db")
        self.log_path = os.path.join(tmpdir, "access.log")
        self.stderr_path = os.path.join(tmpdir, name + ".stderr")
        self.stdout_path = os.path.join(tmpdir, name + ".stdout")
        self.config_path = os.path.join(tmpdir, name + ".conf")
        self.use_log = log
        self.use_store = store
        self.preexec = None  # run in the child before exec (e.g. resource limits)

    def command(self):
        cmd = [restspy_bin(), "proxy",
               "--listen", "127.0.0.1:%d" % self.port,
               "--upstream", self.upstream]
        if self.use_store:
            cmd += ["--store", "sqlite:" + self.db_path]
        if self.use_log:
            cmd += ["--log", self.log_path]
        cmd += ["--admin", "127.0.0.1:%d" % self.admin_port,
                "--workers", "2", "--node", "test"]
        if self.admin_token:
            cmd += ["--admin-token", self.admin_token]
        if self.config is not None:
            cmd += ["--config", self.config_path]
        return cmd + self.args

    def write_config(self, text):
        with open(self.config_path, "w") as f:
            f.write(text)

    def auth_headers(self):
        return {"Authorization": "Bearer " + self.admin_token} if self.admin_token else {}

    def start(self, timeout=15.0):
        binary = restspy_bin()
        if not os.access(binary, os.X_OK):
            raise ProxyError("restspy binary not found or not executable: %s "
                             "(set RESTSPY_BIN)" % binary)
        self.port, self.admin_port = free_ports(2)
        if self.config is not None:
            self.write_config(self.config)
        err = open(self.stderr_path, "ab")
        out = open(self.stdout_path, "ab")
        self.proc = subprocess.Popen(self.command(), cwd=self.tmpdir, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=err, env=clean_env(self.env),
                                     preexec_fn=self.preexec)
        err.close()
        out.close()
        self.returncode = None
        self.term_sent = False
        ok = wait_http(self.admin_port, "/healthz", timeout=timeout,
                       headers=self.auth_headers(), proc=self.proc)
        if ok:
            ok = wait_until(lambda: self._accepts(), timeout=timeout)
        if not ok:
            rc = self.proc.poll()
            if rc is None:
                self.proc.kill()
                self.proc.wait()
            raise ProxyError("restspy did not become ready (exit %s)\ncommand: %s\nstderr:\n%s"
                             % (rc, " ".join(self.command()), self.stderr()))
        return self

    def _accepts(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if sig == _signal.SIGTERM:
            # A second SIGTERM may mean "quit now": stop() must not send one.
            self.term_sent = True
        self.proc.send_signal(sig)

    def stop(self, timeout=20.0, sig=_signal.SIGTERM):
        """SIGTERM and wait; returns the exit code (killed after timeout:
        ProxyError)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if not (sig == _signal.SIGTERM and self.term_sent):
                self.signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.returncode = self.proc.returncode
                raise ProxyError("restspy did not exit within %.0fs of SIGTERM; stderr:\n%s"
                                 % (timeout, self.stderr()))
        self.returncode = self.proc.returncode
        return self.returncode

    def check_stopped(self, testcase=None, timeout=20.0):
        """Stops (if needed) and fails unless the exit code is 0 and stderr
        holds no sanitizer report."""
        rc = self.stop(timeout)
        err = self.stderr()
        problems = []
        if rc != 0:
            problems.append("restspy exited with %s (expected 0)" % rc)
        m = sanitizer_report(err)
        if m:
            problems.append("sanitizer report (%s) in stderr" % m)
        if problems:
            msg = "; ".join(problems) + "\nstderr:\n" + err[-6000:]
            if testcase is not None:
                testcase.fail(msg)
            raise AssertionError(msg)

    def stderr(self):
        return read_text(self.stderr_path)

    # convenience

    def request(self, method, path, body=None, headers=None, **kw):
        return request(self.port, method, path, body=body, headers=headers, **kw)

    def admin(self, method, path, body=None, headers=None, auth=True, **kw):
        h = dict(self.auth_headers()) if auth else {}
        h.update(headers or {})
        return request(self.admin_port, method, path, body=body, headers=h, **kw)

    def stats(self):
        r = self.admin("GET", "/stats")
        if r.status != 200:
            raise AssertionError("GET /stats answered %s: %r" % (r.status, r.body))
        return r.json()

    def rows(self, where="", params=()):
        return rows(self.db_path, where, params)

    def wait_rows(self, n, where="", params=(), timeout=5.0):
        return wait_rows(self.db_path, n, where, params, timeout)

    def log_lines(self):
        return log_lines(self.log_path)

    def log_json(self):
        return log_json(self.log_path)


# ----------------------------------------------------------- backends


def start_backend(handler):
    """A stdlib HTTP server for handler (a BaseHTTPRequestHandler class) on
    a free 127.0.0.1 port, served by daemon threads. It has .url, and .lock
    and .seen (a list) for handlers that keep what they received. Stop it
    with stop_backend."""
    import http.server
    import threading
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    srv.lock = threading.Lock()
    srv.seen = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.url = "http://127.0.0.1:%d" % srv.server_address[1]
    return srv


def stop_backend(srv):
    srv.shutdown()
    srv.server_close()


# ------------------------------------------------------------ store, log


def rows(db_path, where="", params=()):
    """Rows of the requests table as dicts (oldest first); [] when the
    database or table does not exist yet. where: SQL after WHERE."""
    if not os.path.exists(db_path):
        return []
    con = sqlite3.connect(db_path, timeout=5)
    try:
        con.row_factory = sqlite3.Row
        sql = "SELECT * FROM requests"
        if where:
            sql += " WHERE " + where
        sql += " ORDER BY started_at, id"
        try:
            return [dict(r) for r in con.execute(sql, params)]
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []
            raise
    finally:
        con.close()


def copy_db(src, dst):
    """Copies the SQLite database src to dst (replaced) with SQLite's online
    backup, which is consistent even while another process has src open."""
    if os.path.exists(dst):
        os.unlink(dst)
    a = sqlite3.connect(src, timeout=10)
    try:
        b = sqlite3.connect(dst)
        try:
            a.backup(b)
        finally:
            b.close()
    finally:
        a.close()


def wait_rows(db_path, n, where="", params=(), timeout=5.0):
    """Polls until at least n rows match (the store commits in batches);
    returns the rows found last."""
    found = []

    def enough():
        found[:] = rows(db_path, where, params)
        return len(found) >= n

    wait_until(enough, timeout=timeout, interval=0.1)
    return list(found)


def log_lines(path):
    """Complete lines of a log file (a line still being written is left out)."""
    text = read_text(path)
    lines = text.split("\n")
    return [ln for ln in lines[:-1] if ln.strip()]


def log_json(path):
    """Every line of a JSON-lines log, parsed (fails on a line that is not
    JSON)."""
    out = []
    for ln in log_lines(path):
        try:
            out.append(json.loads(ln))
        except ValueError:
            raise AssertionError("log line is not JSON: %r" % ln)
    return out


def wait_log(path, pred, timeout=5.0):
    """Polls until a log line satisfies pred(line); returns it or None."""
    hit = []

    def found():
        for ln in log_lines(path):
            if pred(ln):
                hit.append(ln)
                return True
        return False

    wait_until(found, timeout=timeout, interval=0.05)
    return hit[0] if hit else None


def headers_of(json_text):
    """The [[name, value], ...] JSON of a headers column as a list of tuples."""
    if json_text is None:
        return []
    if isinstance(json_text, bytes):
        json_text = json_text.decode("utf-8")
    return [tuple(p) for p in json.loads(json_text)]


def as_bytes(v):
    if v is None:
        return b""
    if isinstance(v, str):
        return v.encode("utf-8")
    return bytes(v)


# ------------------------------------------------------------------- CLI


def run_cli(args, env=None, timeout=30.0, cwd=None):
    """Runs `restspy ARGS`; returns CompletedProcess with text stdout/stderr."""
    p = subprocess.run([restspy_bin()] + list(args), cwd=cwd, env=clean_env(env),
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    p.stdout = p.stdout.decode("utf-8", "replace")
    p.stderr = p.stderr.decode("utf-8", "replace")
    return p


# ----------------------------------------------------------- test bases


def make_tmpdir(prefix):
    return tempfile.mkdtemp(prefix="restspy-it-%s-" % prefix)


def remove_tmpdir(path):
    if os.environ.get("KEEP_TMP"):
        sys.stderr.write("kept %s\n" % path)
        return
    shutil.rmtree(path, ignore_errors=True)


class BackendProxyCase(unittest.TestCase):
    """One restspy in front of an upstream the class provides, started in
    setUpClass and stopped in tearDownClass (which fails the class on a
    non-zero exit or a sanitizer report). Subclasses define
    start_upstream() (returns its URL) and stop_upstream(), and may add
    options (proxy_args()) or a function run in restspy's process before it
    starts (proxy_preexec(), e.g. a resource limit)."""

    @classmethod
    def start_upstream(cls):
        raise NotImplementedError

    @classmethod
    def stop_upstream(cls):
        pass

    @classmethod
    def proxy_args(cls):
        return ()

    @classmethod
    def proxy_preexec(cls):
        return None

    @classmethod
    def setUpClass(cls):
        cls.tmp = make_tmpdir(cls.__name__)
        try:
            cls.proxy = Proxy(cls.tmp, cls.start_upstream(), args=tuple(cls.proxy_args()))
            cls.proxy.preexec = cls.proxy_preexec()
            cls.proxy.start()
        except Exception:
            cls.stop_upstream()
            remove_tmpdir(cls.tmp)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.proxy.check_stopped()
        finally:
            cls.stop_upstream()
            remove_tmpdir(cls.tmp)


class ProxyTestCase(unittest.TestCase):
    """A class with one sample app and one restspy in front of it, started in
    setUpClass and stopped in tearDownClass (which fails the class on a
    non-zero exit or a sanitizer report). Subclasses set PROXY_ARGS,
    PROXY_CONFIG (INI text), PROXY_ENV, ADMIN_TOKEN."""

    PROXY_ARGS = ()
    PROXY_CONFIG = None
    PROXY_ENV = None
    ADMIN_TOKEN = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = make_tmpdir(cls.__name__)
        cls.app = None
        cls.proxy = None
        try:
            cls.app = App(cls.tmp).start()
            cls.proxy = Proxy(cls.tmp, cls.app.url, args=cls.PROXY_ARGS,
                              config=cls.PROXY_CONFIG, env=cls.PROXY_ENV,
                              admin_token=cls.ADMIN_TOKEN).start()
        except Exception:
            cls._cleanup()
            raise

    @classmethod
    def _cleanup(cls):
        try:
            if cls.proxy is not None and cls.proxy.running:
                cls.proxy.stop()
        finally:
            if cls.app is not None:
                cls.app.stop()
            remove_tmpdir(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.proxy is not None:
                cls.proxy.check_stopped()
        finally:
            if cls.app is not None:
                cls.app.stop()
            remove_tmpdir(cls.tmp)

    def assertErrorJSON(self, resp, status, error_prefix=None):
        return assert_error_json(self, resp, status, error_prefix)


def assert_error_json(self, resp, status, error_prefix=None):
    """resp has the given status and a JSON body with "error" (starting
    with error_prefix when given) and a non-empty "request_id"; returns
    the parsed body. self: the TestCase."""
    self.assertEqual(resp.status, status, resp)
    ctype = resp.header("Content-Type", "")
    self.assertIn("json", ctype.lower(), "error response Content-Type: %r" % ctype)
    try:
        doc = json.loads(resp.body.decode("utf-8"))
    except ValueError:
        self.fail("error body is not JSON: %r" % resp.body)
    self.assertIsInstance(doc, dict)
    self.assertIn("error", doc)
    self.assertIn("request_id", doc)
    self.assertTrue(doc["request_id"], "empty request_id")
    if error_prefix is not None:
        self.assertTrue(doc["error"].startswith(error_prefix),
                        "error %r does not start with %r" % (doc["error"], error_prefix))
    return doc
