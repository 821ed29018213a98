"""Helpers shared by the bench scripts: processes, ports, tools, the nginx
backend, RSS sampling and private RabbitMQ nodes. Everything listens on
127.0.0.1 and every process started through spawn() is stopped by
cleanup()."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

BODY = '{"id":1,"name":"widget","price":9.99,"tags":["a","b"],"ok":true,"note":"fixed bench answer"}'

children = []  # every process we started, stopped at exit


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def die(msg):
    log("bench/run: " + msg)
    sys.exit(2)  # the finally in main() stops what was started


def which(name):
    for p in (shutil.which(name), "/usr/sbin/" + name, "/usr/bin/" + name):
        if p and os.access(p, os.X_OK):
            return p
    return None


def find_tool(name, package, required=True):
    """The tool's path; installs the Debian package when it is missing."""
    p = which(name)
    if p:
        return p
    log("installing %s (apt-get install %s)" % (name, package))
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "install", "-y", "--no-install-recommends", package],
                   check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    p = which(name)
    if not p and required:
        die("%s not found and could not be installed (apt-get install %s)" % (name, package))
    return p


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def spawn(cmd, logfile, env=None):
    f = open(logfile, "ab")
    proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    f.close()
    children.append(proc)
    return proc


def stop(proc, sig=signal.SIGTERM, timeout=30):
    """Signals proc and waits for it; returns its exit code."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc in children:
        children.remove(proc)
    return proc.returncode


def cleanup():
    for p in list(children):
        stop(p, timeout=15)


def wait_port(port, proc, what, timeout=20.0, http=False):
    """Waits until port accepts connections (and answers HTTP when http)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            if http:
                with urllib.request.urlopen("http://127.0.0.1:%d/ready" % port, timeout=1) as r:
                    r.read()
                return True
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    log("%s did not come up on port %d" % (what, port))
    return False

def nginx_conf(tmp, name, workers, server_block, extra_http=""):
    d = os.path.join(tmp, name)
    os.makedirs(os.path.join(d, "t"), exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write("""worker_processes %(w)s;
daemon off;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    default_type application/json;
    client_body_temp_path %(d)s/t/body;
    proxy_temp_path %(d)s/t/proxy;
    fastcgi_temp_path %(d)s/t/fastcgi;
    uwsgi_temp_path %(d)s/t/uwsgi;
    scgi_temp_path %(d)s/t/scgi;
    %(extra)s
    %(server)s
}
""" % {"w": workers, "d": d, "server": server_block, "extra": extra_http})
    return d, conf


def nginx_tls(pki):
    """nginx directives serving pki's certificate. nginx 1.22's default
    ssl_protocols stop at TLSv1.2 (TLSv1.3 joined the default in 1.23.4):
    named here so that every server in the bench speaks TLS 1.3 with
    OpenSSL's default TLS 1.3 suites."""
    return "ssl_certificate %s; ssl_certificate_key %s; ssl_protocols TLSv1.2 TLSv1.3;" % (
        pki["cert"], pki["key"])


# Paths under these prefixes get an error from the backend (bench/run's
# path-diverse workload sends a share of its requests there): a fixed small
# JSON like the 200s, so that the backend stays as fast for them.
ERROR_LOCATIONS = (("/api/gone/", 404, '{"error":"not found"}'),
                   ("/api/fail/", 500, '{"error":"backend failure"}'))


def body_json(size):
    """A JSON document of exactly size bytes (>= 64): an item list like an
    API's page of results, padded. No $, quote or backslash: it goes into
    nginx's configuration as it is."""
    items, out, i = [], "", 0
    while True:
        i += 1
        item = '{"id":%d,"name":"widget %d","price":9.99,"tags":["a","b"],"ok":true}' % (i, i)
        nxt = '{"items":[%s],"pad":"' % ",".join(items + [item])
        if len(nxt) + 2 > size:
            break
        items.append(item)
        out = nxt
    if not out:
        out = '{"items":[],"pad":"'
    return out + "x" * (size - len(out) - 2) + '"}'


def _return_body(body):
    """nginx directives answering 200 with body: `return` as it is when it
    fits in one configuration token, else from 1,000-byte variables (nginx
    refuses parameters longer than its 4 KiB configuration buffer)."""
    if len(body) <= 1000:
        return "return 200 '%s';" % body
    parts = [body[i:i + 1000] for i in range(0, len(body), 1000)]
    sets = " ".join("set $b%d '%s';" % (i, p) for i, p in enumerate(parts))
    return "%s return 200 '%s';" % (sets, "".join("$b%d" % i for i in range(len(parts))))


def start_backend(nginx, tmp, port, pki=None, body=BODY, name=None):
    """The nginx backend on port, answering 200 with body (the fixed BODY
    unless given) and the ERROR_LOCATIONS' errors; over TLS with pki's
    certificate when given (the HTTPS upstream of bench/run's configurations
    15 and 16)."""
    errors = " ".join("location %s { return %d '%s'; }" % e for e in ERROR_LOCATIONS)
    server = "server { listen 127.0.0.1:%d%s; %s %s location / { %s } }" % (
        port, " ssl" if pki else "", nginx_tls(pki) if pki else "", errors, _return_body(body))
    name = name or ("backend-tls" if pki else "backend")
    d, conf = nginx_conf(tmp, name, 1, server)
    proc = spawn([nginx, "-p", d, "-e", d + "/error.log", "-c", conf], d + "/stdout.log")
    # the readiness probe speaks plain HTTP: a TLS port only gets a TCP check
    if not wait_port(port, proc, "backend nginx", http=not pki):
        die("%s nginx did not start (see %s/error.log)" % (name, d))
    return proc


# OPENSSL_CONF for a TLS server that must not resume sessions: no TLS 1.3
# tickets (NumTickets 0: OpenSSL then has nothing to resume from), no TLS 1.2
# tickets; otherwise Debian's system defaults (/etc/ssl/openssl.cnf). nginx,
# HAProxy and restspy all create their contexts after OpenSSL loaded this
# file, so one mechanism turns resumption off in all three alike.
NO_RESUMPTION_CNF = """openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1.2
CipherString = DEFAULT:@SECLEVEL=2
Options = -SessionTicket
NumTickets = 0
"""


def _openssl(*args):
    subprocess.run(("openssl",) + args, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def bench_pki(tmp, key_type):
    """The certificate the TLS configurations serve, from the test CA
    (tests/integration/tlsca.py): its `server` certificate (EC P-256) for
    key_type "ec", or an RSA-2048 key with the same names signed by the same
    CA for "rsa". Returns a dict: ca, cert (full chain), key, combined
    (chain + key in one PEM, HAProxy's crt), no_resumption (an OPENSSL_CONF
    path, see NO_RESUMPTION_CNF), label."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    "tests", "integration"))
    import tlsca
    d = os.path.join(tmp, "pki")
    pki = tlsca.make_pki(d)
    out = {"ca": pki["ca"]["cert"], "cert": pki["server"]["cert"], "key": pki["server"]["key"],
           "label": "EC P-256"}
    if key_type == "rsa":
        key, csr, leaf = d + "/rsa.key", d + "/rsa.csr", d + "/rsa.leaf.pem"
        ext = d + "/server.ext"  # tlsca's extensions of `server`: same names and usage
        _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                 "-subj", "/CN=localhost", "-out", csr)
        _openssl("x509", "-req", "-in", csr, "-CA", out["ca"], "-CAkey", pki["ca"]["key"],
                 "-CAcreateserial", "-days", "30", "-sha256", "-extfile", ext, "-out", leaf)
        out.update(cert=d + "/rsa.pem", key=key, label="RSA 2048")
        with open(out["cert"], "w") as f, open(leaf) as a, open(out["ca"]) as b:
            f.write(a.read() + b.read())
    out["combined"] = d + "/combined.pem"
    with open(out["combined"], "w") as f, open(out["cert"]) as a, open(out["key"]) as b:
        f.write(a.read() + b.read())
    out["no_resumption"] = d + "/no-resumption.cnf"
    with open(out["no_resumption"], "w") as f:
        f.write(NO_RESUMPTION_CNF)
    return out


def tls_probe(port, ca):
    """What a client gets from the TLS port: protocol, cipher, and whether a
    second connection offering the first one's session resumed it. Returns
    a dict, or {"error": ...}."""
    import ssl
    ctx = ssl.create_default_context(cafile=ca)
    session, out = None, {}
    try:
        for attempt in (0, 1):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
                    # a GET read to its end: TLS 1.3 tickets arrive after the handshake
                    s.sendall(b"GET /ready HTTP/1.1\r\nHost: localhost\r\n"
                              b"Connection: close\r\n\r\n")
                    while s.recv(65536):
                        pass
                    if attempt == 0:
                        out = {"protocol": s.version(), "cipher": s.cipher()[0]}
                        session = s.session
                    else:
                        out["resumed"] = s.session_reused
    except (OSError, ssl.SSLError) as e:
        return {"error": "%s: %s" % (type(e).__name__, e)}
    return out


class RssSampler(threading.Thread):
    """Samples VmHWM and VmRSS of pid every second until stopped."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.hwm_kb, self.rss_max_kb = pid, 0, 0
        self.samples = []
        self.ev = threading.Event()

    def read(self):
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        self.hwm_kb = max(self.hwm_kb, int(line.split()[1]))
                    elif line.startswith("VmRSS:"):
                        kb = int(line.split()[1])
                        self.samples.append(kb)
                        self.rss_max_kb = max(self.rss_max_kb, kb)
        except (OSError, ValueError):
            pass

    def run(self):
        while not self.ev.is_set():
            self.read()
            self.ev.wait(1.0)

    def finish(self):
        self.read()
        self.ev.set()
        self.join()


def start_rabbit(tmp, tag="rmq", plugins=(), advanced=""):
    """Starts a private RabbitMQ node (data under tmp/tag, AMQP on a free
    loopback port) the way the test harness does as root without systemd.
    With rabbitmq_management among the plugins its HTTP API gets a free
    loopback port too. advanced: extra Erlang terms for advanced.config
    (e.g. '{rabbit, [{collect_statistics_interval, 250}]}'). Returns (node
    dict with proc, name, ctl, url, amqp_port [, mgmt_port, mgmt_url];
    None) or (None, why)."""
    server = "/usr/lib/rabbitmq/bin/rabbitmq-server"
    ctl = "/usr/lib/rabbitmq/bin/rabbitmqctl"
    if not (os.access(server, os.X_OK) and os.access(ctl, os.X_OK)):
        return None, "RabbitMQ is not installed (Debian rabbitmq-server)"
    name = "bench%s%d@localhost" % (tag, os.getpid())
    d = os.path.join(tmp, tag)
    os.makedirs(d + "/mnesia", exist_ok=True)
    os.makedirs(d + "/log", exist_ok=True)
    amqp, dist = free_port(), free_port()
    with open(d + "/enabled_plugins", "w") as f:
        f.write("[%s].\n" % ",".join(plugins))
    with open(d + "/rabbitmq.conf", "w") as f:
        f.write("listeners.tcp.default = 127.0.0.1:%d\nloopback_users = none\n" % amqp)
    mgmt = free_port() if "rabbitmq_management" in plugins else None
    terms = [advanced] if advanced else []
    if mgmt:
        terms.append('{rabbitmq_management, [{tcp_config, [{ip, "127.0.0.1"}, {port, %d}]}]}'
                     % mgmt)
    with open(d + "/advanced.config", "w") as f:
        f.write("[%s].\n" % ",\n ".join(terms))
    env = dict(os.environ, RABBITMQ_NODENAME=name, RABBITMQ_NODE_PORT=str(amqp),
               RABBITMQ_DIST_PORT=str(dist), RABBITMQ_MNESIA_BASE=d + "/mnesia",
               RABBITMQ_LOG_BASE=d + "/log", RABBITMQ_FEATURE_FLAGS_FILE=d + "/feature_flags",
               RABBITMQ_ENABLED_PLUGINS_FILE=d + "/enabled_plugins",
               RABBITMQ_CONFIG_FILE=d + "/rabbitmq", RABBITMQ_PID_FILE=d + "/pid",
               RABBITMQ_ADVANCED_CONFIG_FILE=d + "/advanced.config")
    proc = spawn([server], d + "/stdout.log", env=env)
    # await_startup fails at once while the node is not yet registered: retry
    deadline = time.monotonic() + 90
    ok = False
    while time.monotonic() < deadline and proc.poll() is None:
        r = subprocess.run([ctl, "-n", name, "await_startup", "--timeout", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode == 0:
            ok = True
            break
        time.sleep(1)
    if not ok:
        log("rabbitmqctl await_startup: " + r.stdout.strip()[-500:])
        stop(proc)
        return None, "RabbitMQ node did not start (see %s)" % d
    node = {"proc": proc, "name": name, "ctl": ctl, "amqp_port": amqp,
            "url": "amqp://guest:guest@127.0.0.1:%d/" % amqp}
    if mgmt:
        node["mgmt_port"] = mgmt
        node["mgmt_url"] = "http://guest:guest@127.0.0.1:%d" % mgmt
    return node, None


def stop_rabbit(rmq):
    if not rmq:
        return
    subprocess.run([rmq["ctl"], "-n", rmq["name"], "stop"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop(rmq["proc"], timeout=30)


def session_cpu_s(sid):
    """CPU seconds (user + system) used so far by every live process of
    session sid (spawn() starts each in a session of its own, so this
    counts nginx's workers, or a RabbitMQ node's beam, with their parent)."""
    hz = os.sysconf("SC_CLK_TCK")
    total = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        # after "pid (comm) ": state ppid pgrp session ... utime(14) stime(15)
        if int(fields[3]) == sid:
            total += int(fields[11]) + int(fields[12])
    return total / float(hz)

