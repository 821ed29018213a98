"""RabbitMQ nodes for restspy's replication tests (standard library only).

What it gives a test:
  * available(): (True, "") when Debian's rabbitmq-server is installed, else
    (False, why): tests skip with that message;
  * Broker: one RabbitMQ node with the management, shovel and federation
    plugins,
    its own node name (unique per run), free ports (AMQP, Erlang
    distribution, management) and data directory, started from the package's
    lib directory (Debian's wrapper only runs the broker as user rabbitmq).
    start() launches it and returns at once (so that several nodes boot in
    parallel: ~5 s each); wait_ready() waits for `rabbitmqctl await_startup`
    and for the management API. stop() always stops it: rabbitmqctl stop,
    then SIGKILL of its process group; every Broker is also stopped at exit
    (atexit), so a failing test cannot leave a node behind;
  * management API helpers: api(), publish(), get(), purge(), bindings(),
    shovels(), wait_shovels(), federation_links(); exact queue figures through
    `rabbitmqctl list_queues` (the management API's figures lag behind).
Environment: RABBITMQ_LIB (default /usr/lib/rabbitmq/bin), KEEP_TMP=1 keeps
the node's directory (logs: <dir>/log). On a machine shared with other
brokers, RABBIT_PORT_RANGE=5721-5739 takes the AMQP port from that range
(distribution +20000, management +10000) and RABBIT_NODE_PREFIX=fd names
the nodes fdA, fdB, ... instead of free ports and per-run unique names.
"""
import atexit
import base64
import json
import socket
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from harness import free_port, read_text

RABBIT_LIB = os.environ.get("RABBITMQ_LIB", "/usr/lib/rabbitmq/bin")
# Shovels carry replication (restspy federate); federation stays enabled for
# the test of moving a site set up by an older restspy.
PLUGINS = ("[rabbitmq_management,rabbitmq_shovel,rabbitmq_shovel_management,"
           "rabbitmq_federation,rabbitmq_federation_management].")

_live = set()
_live_lock = threading.Lock()
_seq = [0]


def available():
    """(True, "") when a broker can be started here, else (False, why)."""
    for name in ("rabbitmq-server", "rabbitmqctl"):
        p = os.path.join(RABBIT_LIB, name)
        if not os.access(p, os.X_OK):
            return False, ("RabbitMQ is not installed (%s missing): install Debian's "
                           "rabbitmq-server (scripts/install-deps does)" % p)
    if not shutil.which("erl") and not os.path.exists("/usr/lib/erlang/bin/erl"):
        return False, "Erlang (erl) not found: install Debian's rabbitmq-server"
    return True, ""


def require():
    """For a test that needs brokers: returns when one can be started;
    otherwise fails (RuntimeError) under CI, where a suite must not shrink
    silently, and skips (unittest.SkipTest, with the reason) elsewhere."""
    import unittest
    ok, why = available()
    if ok:
        return
    if os.environ.get("CI"):
        raise RuntimeError("RabbitMQ is needed under CI: " + why)
    raise unittest.SkipTest(why)


def _stop_all_at_exit():
    with _live_lock:
        brokers = list(_live)
    for b in brokers:
        b.stop()


atexit.register(_stop_all_at_exit)


def _on_sigterm(signum, frame):
    # atexit handlers do not run on a fatal signal: turn a SIGTERM (a CI
    # timeout, a user's kill) into an exception so that the nodes are
    # stopped on the way out.
    raise KeyboardInterrupt("SIGTERM")


def _guard_sigterm():
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


def unique_name(tag):
    """A node name that no other run uses: pid, a counter and the tag (or,
    with RABBIT_NODE_PREFIX, the prefix and the next letter)."""
    with _live_lock:
        _seq[0] += 1
        n = _seq[0]
    prefix = os.environ.get("RABBIT_NODE_PREFIX")
    if prefix:
        return "%s%s@localhost" % (prefix, chr(ord("A") + (n - 1) % 26))
    return "rsit%d%s%d@localhost" % (os.getpid(), tag, n)


def _port_free(port):
    for host in ("127.0.0.1", "0.0.0.0"):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((host, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


_ranged = set()


def _pick_ports():
    """(amqp, dist, mgmt): free ports, or from RABBIT_PORT_RANGE."""
    rng = os.environ.get("RABBIT_PORT_RANGE")
    if not rng:
        ports = set()
        while len(ports) < 3:
            ports.add(free_port())
        a, d, m = sorted(ports)
        return a, d, m
    lo, hi = (int(x) for x in rng.split("-"))
    with _live_lock:
        for p in range(lo, hi + 1):
            if p in _ranged:
                continue
            if all(_port_free(x) for x in (p, p + 20000, p + 10000)):
                _ranged.add(p)
                return p, p + 20000, p + 10000
    raise RuntimeError("no free ports left in RABBIT_PORT_RANGE=%s" % rng)


class BrokerError(RuntimeError):
    pass


class Broker:
    """One RabbitMQ node. Credentials guest/guest (loopback_users = none)."""

    def __init__(self, tag="A", tmpdir=None):
        self.tag = tag
        self.node = unique_name(tag)
        self.own_dir = tmpdir is None
        self.dir = tmpdir or tempfile.mkdtemp(prefix="restspy-rmq-%s-" % tag)
        self.amqp_port = None
        self.dist_port = None
        self.mgmt_port = None
        self.proc = None
        self.user = "guest"
        self.password = "guest"

    # ------------------------------------------------------------ URLs

    @property
    def amqp_url(self):
        return "amqp://%s:%s@127.0.0.1:%d/" % (self.user, self.password, self.amqp_port)

    @property
    def mgmt_url(self):
        return "http://%s:%s@127.0.0.1:%d" % (self.user, self.password, self.mgmt_port)

    def __repr__(self):
        return "<Broker %s amqp=%s mgmt=%s>" % (self.node, self.amqp_port, self.mgmt_port)

    # ------------------------------------------------------- lifecycle

    def _env(self):
        d = self.dir
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        env.update({
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": os.path.join(d, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(d, "log"),
            "RABBITMQ_FEATURE_FLAGS_FILE": os.path.join(d, "feature_flags"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(d, "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": os.path.join(d, "rabbitmq"),
            "RABBITMQ_PID_FILE": os.path.join(d, "pid"),
        })
        return env

    def start(self):
        """Launches the node and returns at once (see wait_ready). The ports
        are chosen on the first start and kept across restarts, so that
        URLs handed to proxies and federation upstreams stay valid."""
        if self.proc is not None and self.proc.poll() is None:
            raise BrokerError("%s is already running" % self.node)
        _guard_sigterm()
        if self.amqp_port is None:
            self.amqp_port, self.dist_port, self.mgmt_port = _pick_ports()
        d = self.dir
        os.makedirs(os.path.join(d, "mnesia"), exist_ok=True)
        os.makedirs(os.path.join(d, "log"), exist_ok=True)
        with open(os.path.join(d, "enabled_plugins"), "w") as f:
            f.write(PLUGINS + "\n")
        with open(os.path.join(d, "rabbitmq.conf"), "w") as f:
            f.write("listeners.tcp.default = 127.0.0.1:%d\n" % self.amqp_port)
            f.write("management.tcp.port = %d\n" % self.mgmt_port)
            f.write("management.tcp.ip = 127.0.0.1\n")
            f.write("loopback_users = none\n")
            # Fresher figures in the management API (default 5 s).
            f.write("collect_statistics_interval = 500\n")
            # Tests run on small disks; never block publishers for that.
            f.write("disk_free_limit.absolute = 1MB\n")
        out = open(os.path.join(d, "stdout.log"), "ab")
        # Its own session: stop() can kill the whole tree (beam, its
        # children) if `rabbitmqctl stop` does not work. epmd is shared by
        # all nodes and detaches itself; it is left running.
        self.proc = subprocess.Popen([os.path.join(RABBIT_LIB, "rabbitmq-server")],
                                     env=self._env(), stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True, cwd=d)
        out.close()
        with _live_lock:
            _live.add(self)
        return self

    def ctl(self, *args, timeout=60, check=True):
        """Runs rabbitmqctl -n NODE ARGS; returns the CompletedProcess."""
        cmd = [os.path.join(RABBIT_LIB, "rabbitmqctl"), "-n", self.node] + list(args)
        try:
            p = subprocess.run(cmd, env=self._env(), stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            if check:
                raise BrokerError("%s timed out after %ss" % (" ".join(cmd), timeout))
            return None
        p.stdout = p.stdout.decode("utf-8", "replace")
        p.stderr = p.stderr.decode("utf-8", "replace")
        if check and p.returncode != 0:
            raise BrokerError("%s failed (%d): %s%s" % (" ".join(cmd[2:]), p.returncode,
                                                        p.stdout[-2000:], p.stderr[-2000:]))
        return p

    def wait_ready(self, timeout=90):
        """Waits for the node (await_startup) and its management API."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BrokerError("%s exited with %s during startup:\n%s" %
                                  (self.node, self.proc.returncode, self.logs()))
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrokerError("%s did not start within %ss:\n%s" %
                                  (self.node, timeout, self.logs()))
            # await_startup fails at once while the Erlang node is not up
            # yet (nothing to connect to): retry until the deadline.
            p = self.ctl("await_startup", "--timeout", str(max(int(left), 1)),
                         timeout=left + 5, check=False)
            if p is not None and p.returncode == 0:
                break
            time.sleep(0.5)
        while True:
            try:
                st, _ = self.api("GET", "/api/overview", timeout=2)
                if st == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BrokerError("%s: management API not answering on %d" %
                                  (self.node, self.mgmt_port))
            time.sleep(0.2)

    def logs(self, tail=4000):
        text = read_text(os.path.join(self.dir, "stdout.log"))
        logdir = os.path.join(self.dir, "log")
        if os.path.isdir(logdir):
            for n in sorted(os.listdir(logdir)):
                if n.endswith(".log"):
                    text += "\n--- %s\n%s" % (n, read_text(os.path.join(logdir, n))[-tail:])
        return text[-tail * 2:]

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=60):
        """Stops the node (idempotent, never raises): rabbitmqctl stop, then
        SIGKILL of its process group if it is still there."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.ctl("stop", timeout=timeout, check=False)
            except OSError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()
        # beam may outlive the wrapper script: sweep the session.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        with _live_lock:
            _live.discard(self)

    def restart(self, timeout=90):
        """A full stop and start on the same data directory and ports."""
        self.stop()
        self.start()
        return self.wait_ready(timeout)

    def cleanup(self):
        """stop() and remove the directory (kept with KEEP_TMP=1)."""
        self.stop()
        if self.own_dir and not os.environ.get("KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    # -------------------------------------------------- management API

    def api(self, method, path, body=None, timeout=10):
        """One management API call; path starts with /api/. Returns (status,
        parsed JSON or None). Connection failures raise OSError."""
        url = "http://127.0.0.1:%d%s" % (self.mgmt_port, path)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        cred = base64.b64encode(("%s:%s" % (self.user, self.password)).encode()).decode()
        req.add_header("Authorization", "Basic " + cred)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            raw = e.read()
            status = e.code
        try:
            return status, json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            return status, raw

    def api_ok(self, method, path, body=None):
        st, doc = self.api(method, path, body)
        if st // 100 != 2:
            raise BrokerError("%s %s answered %s: %r" % (method, path, st, doc))
        return doc

    @staticmethod
    def q(name):
        return urllib.parse.quote(name, safe="")

    def publish(self, exchange, routing_key, payload, properties=None, vhost="/"):
        """Publishes through the management API; payload: str or bytes (sent
        base64 when not UTF-8). Returns True when the message was routed."""
        if isinstance(payload, bytes):
            try:
                payload, enc = payload.decode("utf-8"), "string"
            except UnicodeDecodeError:
                payload, enc = base64.b64encode(payload).decode(), "base64"
        else:
            enc = "string"
        path = "/api/exchanges/%s/%s/publish" % (self.q(vhost), self.q(exchange))
        doc = self.api_ok("POST", path,
                          {"properties": properties or {}, "routing_key": routing_key,
                           "payload": payload, "payload_encoding": enc})
        return bool(doc and doc.get("routed"))

    def get(self, queue, count=100, requeue=True, vhost="/"):
        """Up to count messages of queue (requeued unless requeue=False), as
        the management API gives them: payload, properties (headers, ...),
        redelivered, routing_key, exchange."""
        return self.api_ok("POST", "/api/queues/%s/%s/get" % (self.q(vhost), self.q(queue)),
                           {"count": count,
                            "ackmode": "ack_requeue_true" if requeue else "ack_requeue_false",
                            "encoding": "auto", "truncate": 100000}) or []

    def purge(self, queue, vhost="/"):
        st, doc = self.api("DELETE", "/api/queues/%s/%s/contents" % (self.q(vhost), self.q(queue)))
        if st not in (204, 404):
            raise BrokerError("purge %s answered %s: %r" % (queue, st, doc))

    def queues(self):
        """Exact figures per queue: {name: {"messages", "messages_ready",
        "messages_unacknowledged", "consumers"}} (asks the queue processes
        through rabbitmqctl; the management API's numbers lag)."""
        p = self.ctl("list_queues", "-q", "--formatter", "json", "name", "messages",
                     "messages_ready", "messages_unacknowledged", "consumers")
        return {q["name"]: q for q in json.loads(p.stdout or "[]")}

    def depth(self, queue):
        """Messages in queue (ready + unacknowledged); 0 when it does not
        exist."""
        q = self.queues().get(queue)
        return int(q["messages"]) if q else 0

    def consumers(self, queue):
        q = self.queues().get(queue)
        return int(q["consumers"]) if q else 0

    def consumer_prefetch(self, queue):
        """The prefetch count of each consumer of queue (rabbitmqctl: the
        management API's lists lag)."""
        p = self.ctl("list_consumers", "-q", "--formatter", "json", "queue_name",
                     "prefetch_count")
        return [c["prefetch_count"] for c in json.loads(p.stdout or "[]")
                if c.get("queue_name") == queue]

    def wait_consumer(self, queue, timeout=30, proc=None):
        """Waits until queue has a consumer; False on timeout or when proc
        (a Popen) exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                return False
            try:
                if self.consumers(queue) > 0:
                    return True
            except BrokerError:
                pass
            time.sleep(0.3)
        return False

    def bindings(self, vhost="/"):
        return self.api_ok("GET", "/api/bindings/%s" % self.q(vhost)) or []

    def exchanges(self, vhost="/"):
        return {e["name"]: e for e in self.api_ok("GET", "/api/exchanges/%s" % self.q(vhost))}

    def queue_info(self, queue, vhost="/"):
        st, doc = self.api("GET", "/api/queues/%s/%s" % (self.q(vhost), self.q(queue)))
        return doc if st == 200 else None

    def federation_links(self, vhost="/"):
        st, doc = self.api("GET", "/api/federation-links/%s" % self.q(vhost))
        return doc if st == 200 and isinstance(doc, list) else []

    def shovels(self, vhost="/"):
        """{name: shovel status} of the vhost's dynamic shovels (state:
        running, starting, terminated; reason when terminated)."""
        st, doc = self.api("GET", "/api/shovels/%s" % self.q(vhost))
        if st != 200 or not isinstance(doc, list):
            return {}
        return {s.get("name"): s for s in doc}

    def wait_shovels(self, names, timeout=60, vhost="/"):
        """Waits until every shovel named in names runs. Raises BrokerError
        with their states on timeout."""
        want = set(names)
        deadline = time.monotonic() + timeout
        while True:
            sh = self.shovels(vhost)
            if all(sh.get(n, {}).get("state") == "running" for n in want):
                return sh
            if time.monotonic() > deadline:
                raise BrokerError("%s: shovels not running after %ss: %s" %
                                  (self.node, timeout,
                                   {n: (sh.get(n, {}).get("state"), sh.get(n, {}).get("reason"))
                                    for n in want}))
            time.sleep(0.3)

    def wait_federation(self, upstreams, exchange="restspy.inbound", timeout=60, vhost="/"):
        """Waits until this node has a running federation link for exchange
        from each upstream name. Raises BrokerError with the link states on
        timeout."""
        want = set(upstreams)
        deadline = time.monotonic() + timeout
        links = []
        while True:
            links = [ln for ln in self.federation_links(vhost) if ln.get("exchange") == exchange]
            running = {ln.get("upstream") for ln in links if ln.get("status") == "running"}
            if want <= running:
                return links
            if time.monotonic() > deadline:
                raise BrokerError("%s: federation links not running after %ss (want %s): %s" %
                                  (self.node, timeout, sorted(want),
                                   [(ln.get("upstream"), ln.get("status"), ln.get("error"))
                                    for ln in links]))
            time.sleep(0.3)


def stop_brokers(brokers, remove=True):
    """Stops (and with remove, deletes the directories of) brokers in
    parallel: a clean stop takes a few seconds each."""
    ts = [threading.Thread(target=b.cleanup if remove else b.stop) for b in brokers]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def start_brokers(tags, timeout=90):
    """Starts one Broker per tag in parallel and waits for all of them.
    If any fails, all are stopped and the error raised."""
    brokers = [Broker(t) for t in tags]
    try:
        for b in brokers:
            b.start()
        for b in brokers:
            b.wait_ready(timeout)
    except BaseException:
        stop_brokers(brokers)
        raise
    return brokers
