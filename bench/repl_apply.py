#!/usr/bin/env python3
"""bench/repl_apply.py: how fast a replicator drains a backlog, against the
backend's own rate for the same writes (issue 10, section 4).

The backend (`--serve`, run in a process of its own) keeps every resource
in one JSON document, applies each write to it and writes the whole
document to its file before the answer, one write at a time (json-server,
the application the issue measured, does the same). Two profiles: serial,
a document of 2,000 sites (a write costs what a json-server write cost in
the issue, so concurrency cannot help), and parallel, a small document
behind 20 ms of I/O that writes wait for side by side (a database on
another machine: only concurrency gets near its rate). It refuses what a
real application refuses, so that an order mistake shows: a duplicate
create (409), a metric or a change for a site it does not have (404). It
honours Idempotency-Key as sitemon does (a repeat gets the first answer).
The writes are what its clients make: for each of S sites, a create (POST
/api/sites/ with a slug), M metrics (POST /api/sites/<slug>/metrics/) and a
status change (PATCH /api/sites/<slug>/), in that order per site, C sites
at a time.

  direct     C client threads send the writes straight to the backend, each
             site's chain in order (keep-alive, one connection per thread):
             the backend's own rate for these writes;
  replicate  the same kind of writes (new slugs) go through a restspy proxy
             (site a, in front of an nginx that answers 200) whose
             restspy.requests is bound to site b's apply queue on one local
             RabbitMQ node, while b's replicator is stopped; then b's
             replicator starts with --concurrency N and applies the backlog
             to the backend. Rate: applies over the span of their ledger
             commits. A refused write fails the run.

Replicator runs: --concurrency 1 and C with the default apply_order
(resource), and C with apply_order origin (the old per-site order); with
--baseline RESTSPY also that build's replicator (one from before
apply_order) at 1 and C. Target: with per-resource ordering, concurrency C
reaches ≥ 0.8× direct on both backends.

Usage: bench/repl_apply.py [--quick] [--sites S] [--concurrency C] [--baseline RESTSPY]
bench/run calls run() unless --no-apply.
"""
import http.client
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import free_port, log, spawn, start_backend, start_rabbit, stop, stop_rabbit, \
    wait_port  # noqa: E402
from repl_lag import OneWriteConnection  # noqa: E402  (head and body in one write)

PYTHON = os.environ.get("PYTHON", "/usr/bin/python3")
METRICS = 5
TARGET = 0.8
SEED = 2000  # sites already in the backend's document: what each write rewrites


class ApplyError(Exception):
    """A one-line reason why the measurement could not be made."""


# ------------------------------------------------------------ the backend


def serve(port, path, seed, latency_ms):
    """The backend (see the module doc) with seed sites already in its
    document, each write waiting latency_ms before it takes its turn, until
    killed."""
    import http.server
    import re
    lock = threading.Lock()
    db = {}
    answers = {}  # Idempotency-Key -> (status, body) of its first success

    def reset():
        db.clear()
        db.update({"sites": {}, "metrics": {}})
        answers.clear()
        for i in range(seed):
            slug = "seed-%d" % i
            db["sites"][slug] = {"slug": slug, "name": "Seed %d" % i, "status": "up",
                                 "url": "https://%s.example" % slug}
    reset()
    site_rx = re.compile(r"^/api/sites/([^/]+)/$")
    metric_rx = re.compile(r"^/api/sites/([^/]+)/metrics/$")

    def write(method, target, doc):
        if method == "POST" and target == "/api/sites/":
            if doc.get("slug") in db["sites"]:
                return 409, {"detail": "site exists"}
            db["sites"][doc["slug"]] = doc
            return 201, doc
        m = metric_rx.match(target)
        if method == "POST" and m:
            if m.group(1) not in db["sites"]:
                return 404, {"detail": "no such site"}
            if doc.get("id") in db["metrics"]:
                return 409, {"detail": "metric exists"}
            db["metrics"][doc["id"]] = dict(doc, site=m.group(1))
            return 201, doc
        m = site_rx.match(target)
        if method in ("PATCH", "PUT") and m:
            if m.group(1) not in db["sites"]:
                return 404, {"detail": "no such site"}
            db["sites"][m.group(1)].update(doc)
            return 200, db["sites"][m.group(1)]
        return 404, {"detail": "not found"}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *a):
            pass

        def _write(self):
            n = int(self.headers.get("Content-Length") or 0)
            doc = json.loads(self.rfile.read(n) or b"{}")
            key = self.headers.get("Idempotency-Key")
            if latency_ms and self.path != "/reset":
                time.sleep(latency_ms / 1000.0)  # I/O that writes wait for side by side
            with lock:
                if self.path == "/reset":  # the bench's, between measurements
                    reset()
                    status, out = 200, {"reset": True}
                elif key and key in answers:
                    status, out = answers[key]
                else:
                    status, out = write(self.command, self.path, doc)
                    if status < 300:
                        if key:
                            answers[key] = (status, out)
                        with open(path + ".tmp", "w") as f:
                            json.dump(db, f)
                        os.replace(path + ".tmp", path)
            body = json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            body = b'{"ok":true}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_PATCH = do_PUT = _write

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.daemon_threads = True
    srv.serve_forever()


# ------------------------------------------------------------ the writes


def chains(prefix, sites):
    """Per site, its writes in order: (method, path, body)."""
    out = []
    for i in range(sites):
        slug = "%s-%d" % (prefix, i)
        w = [("POST", "/api/sites/", {"slug": slug, "name": slug, "status": "up",
                                      "url": "https://%s.example" % slug})]
        for _ in range(METRICS):
            w.append(("POST", "/api/sites/%s/metrics/" % slug,
                      {"id": str(uuid.uuid4()), "name": "cpu", "value": 0.5,
                       "recorded_at": "2026-01-02T03:04:05Z"}))
        w.append(("PATCH", "/api/sites/%s/" % slug, {"status": "degraded"}))
        out.append(w)
    return out


def send_chains(port, all_chains, threads):
    """Sends the chains to 127.0.0.1:port, `threads` sites at a time, each
    chain in order on one keep-alive connection. Returns (writes, seconds,
    failures)."""
    lock = threading.Lock()
    todo = list(all_chains)
    failed = []

    def worker():
        conn = OneWriteConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                if not todo:
                    break
                chain = todo.pop(0)
            for method, path, body in chain:
                headers = {"Content-Type": "application/json"}
                try:
                    conn.request(method, path, body=json.dumps(body).encode(), headers=headers)
                    r = conn.getresponse()
                    r.read()
                    if r.status // 100 != 2:
                        failed.append("%s %s: %d" % (method, path, r.status))
                except (OSError, http.client.HTTPException) as e:
                    failed.append("%s %s: %s" % (method, path, e))
                    conn.close()
                    conn = OneWriteConnection("127.0.0.1", port, timeout=30)
        conn.close()

    n = sum(len(c) for c in all_chains)
    t0 = time.monotonic()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return n, time.monotonic() - t0, failed


def _queue_depth(rmq, queue):
    r = subprocess.run([rmq["ctl"], "-n", rmq["name"], "list_queues", "-q", "--formatter",
                        "json", "name", "messages"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True, timeout=60)
    for q in json.loads(r.stdout or "[]"):
        if q["name"] == queue:
            return int(q["messages"])
    return 0


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise ApplyError("timed out waiting for " + what)
        time.sleep(0.2)


def _ledger(db_path):
    if not os.path.exists(db_path):
        return []
    c = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=10)
    try:
        return [r[0] for r in c.execute("SELECT applied_at FROM applied ORDER BY applied_at")]
    except sqlite3.OperationalError:
        return []
    finally:
        c.close()


def _bind(mgmt_port, queue, exchange):
    req = urllib.request.Request(
        "http://127.0.0.1:%d/api/bindings/%%2F/e/%s/q/%s" % (mgmt_port, exchange, queue),
        data=b'{"routing_key":"#"}', method="POST",
        headers={"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q=", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


def _reset(port):
    req = urllib.request.Request("http://127.0.0.1:%d/reset" % port, data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()


def direct_run(env, prefix, sites):
    """The backend's own rate: the writes of `sites` sites straight to it,
    on the seeded document."""
    _reset(env["app_port"])
    n, secs, failed = send_chains(env["app_port"], chains(prefix, sites), env["clients"])
    if failed:
        raise ApplyError("direct writes failed: " + "; ".join(failed[:3]))
    return n / secs


def drain(env, prefix, sites, conc, order):
    """Fills b's apply queue through proxy a with the writes of `sites`
    sites, then lets b's replicator apply them to the seeded document.
    order "baseline": env["baseline"]'s replicator (a restspy from before
    apply_order), with a store of its own. Returns the figures."""
    chs = chains(prefix, sites)
    n, _, failed = send_chains(env["proxy_port"], chs, env["clients"])
    if failed:
        raise ApplyError("writes through proxy a failed: " + "; ".join(failed[:3]))
    _wait(lambda: _queue_depth(env["rmq"], "restspy.apply.b") >= n, 120,
          "%d messages in restspy.apply.b" % n)
    baseline = order == "baseline"
    db = env["db_b"] + (".baseline" if baseline else "")
    cmd = [env["baseline"] if baseline else env["restspy"], "replicate", "--node", "b",
           "--upstream", env["app_url"], "--store", "sqlite:" + db, "--amqp", env["rmq"]["url"],
           "--concurrency", str(conc)] + ([] if baseline else ["--apply-order", order])
    before = len(_ledger(db))
    rlog = os.path.join(env["tmp"], "replicate-%s.log" % prefix)
    _reset(env["app_port"])
    t0 = time.monotonic()
    repl = spawn(cmd, rlog)
    try:
        # (its log, not rabbitmqctl, which starts an Erlang VM each time:
        # polled, it took a core from the measurement)
        _wait(lambda: len(_ledger(db)) >= before + n or "dead-lettered" in _read(rlog), 600,
              "the replicator to apply %d writes (see %s)" % (n, rlog))
        wall = time.monotonic() - t0
    finally:
        stop(repl)
    dead = _queue_depth(env["rmq"], "restspy.dead.b")
    if dead:
        raise ApplyError("replicate --concurrency %d (%s): writes refused by the backend and "
                         "dead-lettered: applied out of order (see %s)" % (conc, order, rlog))
    times = _ledger(db)[before:]
    span = (times[-1] - times[0]) / 1e6 if len(times) > 1 else 0
    return {"writes": n, "concurrency": conc, "order": order,
            "rate": (n - 1) / span if span > 0 else None, "wall_s": round(wall, 2)}


# The backends measured: (name, sites in the document, ms of latency per
# write). serial: json-server's profile, every write costs a rewrite of a
# large document, one at a time, so concurrency cannot help and the
# question is whether the replicator keeps up with it; parallel: a small
# document behind 20 ms of I/O that writes wait for side by side (a
# database on another machine), where only concurrency gets near the
# backend's rate and the order decides how much of it a replicator can use.
PROFILES = (("serial", SEED, 0), ("parallel", 0, 20))


def start_app(tmp, name, seed, latency):
    port = free_port()
    app = spawn([PYTHON, os.path.abspath(__file__), "--serve", str(port),
                 os.path.join(tmp, name + ".json"), "--seed", str(seed), "--latency",
                 str(latency)], os.path.join(tmp, name + ".log"))
    _wait(lambda: _answers(port, app), 30, "the backend to start (see %s/%s.log)" % (tmp, name))
    return app, port


def measure(env, profile, sites, concurrency, baseline):
    """The runs of one backend. Each replicator run is paired with a direct
    run just before it, on the same document (the backend is reset before
    each): the cost of a write grows with the document, and the machine's
    load drifts."""
    name, seed, latency = profile
    plan = [(1, "resource"), (concurrency, "resource"), (concurrency, "origin")]
    if baseline:
        plan = [(1, "baseline"), (concurrency, "baseline")] + plan
    runs = []
    for i, (conc, order) in enumerate(plan):
        direct = direct_run(env, "%s-d%d" % (name, i), sites)
        log("repl_apply (%s): %d writes straight to the backend, %d clients: %.1f writes/s; "
            "replicate --concurrency %d (%s)" % (name, sites * (METRICS + 2), concurrency,
                                                 direct, conc, order))
        try:
            r = drain(env, "%s-r%d" % (name, i), sites, conc, order)
        except ApplyError as e:
            if order != "baseline":
                raise
            r = {"writes": sites * (METRICS + 2), "concurrency": conc, "order": order,
                 "rate": None, "error": str(e)}
            _purge(env["rmq"])
        r["direct_rate"] = direct
        r["ratio"] = r["rate"] / direct if r["rate"] else None
        log("  %s" % (r.get("error") or "%.1f writes/s (%.2f× direct)" % (r["rate"],
                                                                         r["ratio"])))
        runs.append(r)
    return {"name": name, "seed": seed, "latency_ms": latency, "runs": runs}


def run(restspy, nginx, tmp, quick, sites=None, concurrency=4, baseline=None):
    """The whole measurement: the figures (see table()), or ApplyError with
    one line saying why it could not be made. quick: the serial backend
    only, 12 sites."""
    sites = sites or (12 if quick else 80)
    tmp = os.path.join(tmp, "repl_apply")
    os.makedirs(tmp, exist_ok=True)
    procs, rmq = [], None
    try:
        rmq, why = start_rabbit(tmp, "apply", plugins=("rabbitmq_management",))
        if not rmq:
            raise ApplyError(why)
        env = {"restspy": restspy, "tmp": tmp, "rmq": rmq, "clients": concurrency,
               "db_b": os.path.join(tmp, "b.db"), "baseline": baseline}

        # Site b's queues, declared by a replicator that starts and stops.
        rlog = os.path.join(tmp, "replicate-declare.log")
        repl = spawn([restspy, "replicate", "--node", "b", "--upstream", "http://127.0.0.1:1",
                      "--store", "sqlite:" + env["db_b"], "--amqp", rmq["url"]], rlog)
        _wait(lambda: "applying restspy.apply.b" in _read(rlog), 30,
              "the replicator to declare its queue")
        stop(repl)
        _bind(rmq["mgmt_port"], "restspy.apply.b", "restspy.requests")
        nport = free_port()
        procs.append(start_backend(nginx, os.path.join(tmp, "origin"), nport))
        pport, aport = free_port(), free_port()
        proxy = spawn([restspy, "proxy", "--node", "a", "--listen", "127.0.0.1:%d" % pport,
                       "--admin", "127.0.0.1:%d" % aport, "--upstream",
                       "http://127.0.0.1:%d" % nport, "--store",
                       "sqlite:" + os.path.join(tmp, "a.db"), "--log", "off",
                       "--amqp", rmq["url"], "--replicate-requests", "on"],
                      os.path.join(tmp, "proxy-a.log"))
        procs.append(proxy)
        if not wait_port(pport, proxy, "restspy proxy"):
            raise ApplyError("restspy proxy did not start (see %s/proxy-a.log)" % tmp)
        env["proxy_port"] = pport

        profiles = []
        for prof in PROFILES[:1] if quick else PROFILES:
            app, env["app_port"] = start_app(tmp, prof[0], prof[1], prof[2])
            env["app_url"] = "http://127.0.0.1:%d" % env["app_port"]
            try:
                profiles.append(measure(env, prof, sites, concurrency, baseline))
            finally:
                stop(app)
        return {"profiles": profiles, "sites": sites, "metrics_per_site": METRICS,
                "clients": concurrency}
    finally:
        for p in reversed(procs):
            stop(p)
        stop_rabbit(rmq)


def best_ratio(res):
    """The target's figure: the worst, over the backends, of the replicator
    at the highest concurrency with per-resource order (the default)."""
    worst = None
    for prof in res["profiles"]:
        best = max((r for r in prof["runs"] if r["order"] == "resource"),
                   key=lambda r: r["concurrency"])
        if worst is None or (best["ratio"] or 0) < (worst[1]["ratio"] or 0):
            worst = (prof, best)
    return worst


def _purge(rmq):
    for q in ("restspy.apply.b", "restspy.dead.b"):
        subprocess.run([rmq["ctl"], "-n", rmq["name"], "purge_queue", q],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _answers(port, proc):
    """The backend answers."""
    if proc.poll() is not None:
        raise ApplyError("the backend exited with %s" % proc.returncode)
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/ready" % port,
                                    timeout=2) as r:
            r.read()
        return True
    except OSError:
        return False


def table(res):
    rows = ["%d sites × (create, %d metrics, status change) per run, in order per site; "
            "direct: %d client threads on the same backend, measured just before each "
            "replicator run (the backend is reset before each run)." %
            (res["sites"], res["metrics_per_site"], res["clients"])]
    for prof in res["profiles"]:
        rows += ["", "Backend %s: %s." % (prof["name"], (
                 "json-server-like, one JSON document of %d sites and more rewritten whole on "
                 "each write, one write at a time" % prof["seed"]) if not prof["latency_ms"] else
                 "%g ms of I/O per write, side by side, then a small document rewritten, one "
                 "at a time" % prof["latency_ms"]), "",
                 "| replicator draining a backlog | writes | writes/s | direct writes/s | "
                 "vs direct |", "|---|---|---|---|---|"]
        for r in prof["runs"]:
            what = ("restspy before apply_order (baseline), --concurrency %d" % r["concurrency"]
                    if r["order"] == "baseline" else
                    "--concurrency %d, apply_order %s" % (r["concurrency"], r["order"]))
            if r.get("error"):
                rows.append("| %s | %d | failed: %s | %.1f | - |" % (
                    what, r["writes"], r["error"], r["direct_rate"]))
            else:
                rows.append("| %s | %d | %.1f | %.1f | %.2f× |" % (
                    what, r["writes"], r["rate"] or 0, r["direct_rate"], r["ratio"] or 0))
    prof, best = best_ratio(res)
    ok = best["ratio"] is not None and best["ratio"] >= TARGET
    rows += ["", "Target: apply throughput with per-resource ordering ≥ %.1f× direct writes: "
             "%.2f× (%s; backend %s, --concurrency %d)." % (
                 TARGET, best["ratio"] or 0, "met" if ok else "missed", prof["name"],
                 best["concurrency"])]
    return "\n".join(rows)


def main():
    import argparse
    import shutil
    import tempfile
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="12 sites instead of 80, the serial backend only")
    ap.add_argument("--sites", type=int, default=None)
    ap.add_argument("--concurrency", type=int, default=4,
                    help="client threads for the direct run, replicator concurrency (4)")
    ap.add_argument("--restspy", default=os.path.join(ROOT, "build", "restspy"))
    ap.add_argument("--json", action="store_true", help="print the raw result as JSON too")
    ap.add_argument("--baseline", default=None, metavar="RESTSPY",
                    help="also measure this restspy's replicator (one from before apply_order)")
    ap.add_argument("--seed", type=int, default=SEED,
                    help="with --serve: sites in the document before the writes (%d)" % SEED)
    ap.add_argument("--serve", nargs=2, metavar=("PORT", "FILE"),
                    help="run the backend on 127.0.0.1:PORT, its document in FILE")
    ap.add_argument("--latency", type=float, default=0,
                    help="with --serve: ms each write waits, side by side, before its turn")
    a = ap.parse_args()
    if a.serve:
        serve(int(a.serve[0]), a.serve[1], a.seed, a.latency)
        return 0
    nginx = benchlib.which("nginx")
    if not nginx:
        print("repl_apply: nginx not found (apt-get install nginx-light)", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="repl_apply.")
    try:
        res = run(os.path.abspath(a.restspy), nginx, tmp, a.quick, a.sites, a.concurrency,
                  a.baseline and os.path.abspath(a.baseline))
    except ApplyError as e:
        print("repl_apply: %s" % e, file=sys.stderr)
        return 1
    finally:
        benchlib.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    print(table(res))
    if a.json:
        print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
