"""A private PostgreSQL 15 server for restspy's tests (standard library only).

What it gives a test:
  * available(): (True, "") when Debian's postgresql-15 binaries are here,
    else (False, why); require() turns "not available" into a failure under
    CI (a suite must not shrink) and into a skip elsewhere;
  * PgNode: one server in its own temporary directory (data, unix socket,
    log), initialised by initdb and run by pg_ctl as the `postgres` user
    when we are root (PostgreSQL refuses to run as root), listening on
    127.0.0.1 only, on a free port, trust authentication for the role
    `restspy`. start() waits until it accepts connections; stop() is
    `pg_ctl stop -m fast`, then SIGKILL of the postmaster's pid; every node
    is also stopped at exit (atexit, SIGTERM), so a failing test cannot
    leave a server behind. fsync is off: the tests kill processes, never
    the machine;
  * `python3 pgnode.py serve`: what the C unit tests use
    (tests/unit/pg_testnode.c): starts a node, prints its URL on one line
    and stops it when its standard input closes (the test ended or died).
Environment: PG_BIN (default /usr/lib/postgresql/15/bin), KEEP_TMP=1 keeps
the node's directory (its log: <dir>/log).
"""
import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
ROLE = "restspy"

_live = set()
_live_lock = threading.Lock()


def available():
    """(True, "") when a server can be started here, else (False, why)."""
    for name in ("initdb", "pg_ctl", "postgres", "psql"):
        p = os.path.join(PG_BIN, name) if name != "psql" else _psql()
        if not p or not os.access(p, os.X_OK):
            return False, ("PostgreSQL 15 is not installed (%s missing): install Debian's "
                           "postgresql-15 (scripts/install-deps does)" % (p or name))
    return True, ""


def require():
    """Returns normally when a server can be started; otherwise fails
    (RuntimeError) under CI and raises unittest.SkipTest elsewhere."""
    ok, why = available()
    if ok:
        return
    if os.environ.get("CI"):
        raise RuntimeError("PostgreSQL is needed under CI: " + why)
    import unittest
    raise unittest.SkipTest(why)


def _psql():
    p = os.path.join(PG_BIN, "psql")
    return p if os.access(p, os.X_OK) else shutil.which("psql")


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _stop_all():
    with _live_lock:
        nodes = list(_live)
    for n in nodes:
        n.stop()


atexit.register(_stop_all)


class PgNode:
    def __init__(self, tmpdir=None):
        self.dir = tempfile.mkdtemp(prefix="restspy-pg-", dir=tmpdir)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "log")
        self.port = 0
        self.pid = 0

    def __repr__(self):
        return "PgNode(port=%d, dir=%s)" % (self.port, self.dir)

    def url(self, db=ROLE):
        return "postgresql://%s@127.0.0.1:%d/%s" % (ROLE, self.port, db)

    def _as_owner(self, argv):
        """argv run as the postgres user when we are root."""
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--"] + argv
        return argv

    def _run(self, argv, timeout=60):
        r = subprocess.run(self._as_owner(argv), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError("%s failed (%d): %s\nlog: %s" % (
                os.path.basename(argv[0]), r.returncode,
                r.stdout.decode(errors="replace")[-2000:], self.logs()))
        return r.stdout.decode(errors="replace")

    def logs(self, tail=2000):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-tail:]
        except OSError:
            return ""

    def start(self, timeout=60):
        """Initialises (first time) and starts the server; returns once it
        accepts connections, with the database `restspy` created."""
        fresh = not os.path.exists(self.data)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        if fresh:
            self._run([os.path.join(PG_BIN, "initdb"), "-D", self.data, "-U", ROLE,
                       "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C"])
        if not self.port:
            self.port = _free_port()
        opts = ("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c full_page_writes=off -c max_connections=100" % (self.port, self.dir))
        with _live_lock:
            _live.add(self)
        self._run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-l", self.log,
                   "-o", opts, "-w", "-t", str(timeout), "start"], timeout=timeout + 10)
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            self.pid = int(f.readline())
        if fresh:
            self.psql("CREATE DATABASE %s" % ROLE, db="postgres")
        return self

    def psql(self, sql, db=ROLE):
        """Runs sql with psql (unaligned, tuples only); its output."""
        r = subprocess.run([_psql(), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-h", "127.0.0.1", "-p", str(self.port), "-U", ROLE,
                            "-d", db, "-c", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("psql %r: %s" % (sql, r.stderr.decode(errors="replace")))
        return r.stdout.decode()

    def createdb(self, name):
        self.psql("CREATE DATABASE %s" % name, db="postgres")
        return self.url(name)

    def running(self):
        if not self.pid:
            return False
        try:
            os.kill(self.pid, 0)
            return True
        except OSError:
            return False

    def stop(self, mode="fast"):
        """Stops the server (pg_ctl stop, then SIGKILL of its postmaster)."""
        if self.pid:
            try:
                self._run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-m", mode,
                           "-w", "-t", "30", "stop"], timeout=40)
            except (RuntimeError, subprocess.TimeoutExpired):
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except OSError:
                    pass
            deadline = time.time() + 10
            while self.running() and time.time() < deadline:
                time.sleep(0.05)
            self.pid = 0
        with _live_lock:
            _live.discard(self)

    def cleanup(self):
        self.stop()
        if not os.environ.get("KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)


def _serve():
    """Starts a node, prints its URL, stops it when stdin closes."""
    ok, why = available()
    if not ok:
        print("unavailable: " + why, flush=True)
        return 0
    node = PgNode()
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    try:
        node.start()
        print(node.url(), flush=True)
        while sys.stdin.buffer.read(4096):
            pass
    except Exception as e:  # reported to the test, which fails
        print("error: %s" % str(e).replace("\n", " | ")[:1500], flush=True)
        return 1
    finally:
        node.cleanup()
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        sys.exit(_serve())
    print("usage: pgnode.py serve", file=sys.stderr)
    sys.exit(2)
