#!/usr/bin/python3
"""Replication lag between two local sites (issue 5).

Site A: nginx backend A, RabbitMQ node A, `restspy proxy --amqp` (store A).
Site B: nginx backend B, RabbitMQ node B, `restspy replicate` (store B).
Both brokers are wired with `restspy federate` (on each, a durable queue
restspy.out.<peer> bound to restspy.requests and a shovel moving it into
the peer's restspy.inbound, as scripts/demo-sites).

A paced client POSTs a small JSON body to proxy A at a fixed rate on an
absolute schedule (each write has a due time; a late send is recorded, not
skipped). Lag of one write = B's applied.applied_at - A's requests.started_at
for the same id (the message id is the origin's capture id; both are
wall-clock microseconds on this one machine).

    bench/repl_lag.py [--quick] [--rate 1000] [--duration 20]
                      [--durability sync|async] [--restspy build/restspy]

What the lag includes, in order: at A, forwarding to backend A and its
answer, the capture + outbox row waiting in A's store queue and group-commit
window (store_commit_delay) and its commit; the publisher noticing the row
(woken by the commit when it is idle; while publishes are unconfirmed it
only looks again after the next confirm, so the broker's confirm latency is
partly in); the persistent publish to A's restspy.requests, the out
queue restspy.out.b on A, the shovel republishing into B's restspy.inbound
and restspy.apply.b; delivery to the replicator (prefetch 4 x concurrency),
queueing behind earlier messages, signature check, ledger lookup, the HTTP
apply to backend B, and B's store queue and group-commit window. applied_at
is read right after BEGIN IMMEDIATE of B's transaction, so B's COMMIT (WAL,
synchronous=NORMAL: no fsync) and the ack to B's broker are not in it, nor
are A's confirm itself and the shovel's ack to A.

The client sends each request head and body in one write (see
OneWriteConnection) and uses the path /bench/lag (warm-up: /bench/warmup).

run(restspy_bin, nginx_bin, tmp, quick) -> dict and table(result) -> str are
what bench/run calls. Everything listens on 127.0.0.1 and is stopped before
run() returns."""

import http.client
import itertools
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request

DRAIN_CAP_S = 300  # the longest wait for B to apply what A accepted

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import free_port, log, spawn, start_backend, stop, wait_port  # noqa: E402

SECRET = "bench-lag-secret"
PATH = "/bench/lag"
WARM_PATH = "/bench/warmup"
THREADS = 8
TARGET_P99_MS = 100.0


class OneWriteConnection(http.client.HTTPConnection):
    """http.client sends a request's head and its body in two send() calls
    (with TCP_NODELAY, so often two segments). nginx `return 200` (the bench
    backend) answers on the head alone, and restspy then completes the
    request before its body arrived: the capture has an empty body, it is
    not replicated although the client got 200, and the connection is
    closed (the client's next write fails). Real applications read the body
    before answering; this client sends head and body in one write so that
    the measurement is not about that race."""

    def _send_output(self, message_body=None, encode_chunked=False):
        if isinstance(message_body, (bytes, bytearray)) and not encode_chunked:
            self._buffer.extend((b"", b""))
            msg = b"\r\n".join(self._buffer) + bytes(message_body)
            del self._buffer[:]
            self.send(msg)
            return
        super()._send_output(message_body, encode_chunked)


class LagError(Exception):
    """A one-line reason why the measurement could not be made."""


# ---------------------------------------------------------------- helpers

def pct(sorted_vals, p):
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(-(-p * len(sorted_vals) // 100)) - 1))
    return sorted_vals[k]


def summary(vals):
    v = sorted(vals)
    if not v:
        return {"n": 0}
    return {"n": len(v), "p50": pct(v, 50), "p90": pct(v, 90), "p99": pct(v, 99),
            "max": v[-1], "mean": sum(v) / len(v)}


def _start_two_rabbits(tmp):
    """Starts RabbitMQ nodes A and B in parallel (benchlib.start_rabbit,
    with the management and shovel plugins; queue depths in the
    management API every 250 ms instead of 5 s, for the sampler)."""
    nodes, errs, threads = {}, {}, []
    for tag in ("lagA", "lagB"):
        def go(tag=tag):
            try:
                rmq, why = benchlib.start_rabbit(
                    tmp, tag, plugins=("rabbitmq_management", "rabbitmq_shovel",
                                       "rabbitmq_shovel_management"),
                    advanced="{rabbit, [{collect_statistics_interval, 250}]}")
            except BaseException as e:  # die() is SystemExit
                rmq, why = None, str(e)
            if rmq:
                nodes[tag] = rmq
            else:
                errs[tag] = why

        t = threading.Thread(target=go, daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(120)
    return nodes, errs


def _wait_mgmt(port, timeout=30):
    deadline = time.monotonic() + timeout
    req = urllib.request.Request("http://127.0.0.1:%d/api/overview" % port,
                                 headers={"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="})
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                r.read()
                return True
        except OSError:
            time.sleep(0.2)
    return False


def _wait_log(path, pattern, proc, timeout):
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    while time.monotonic() < deadline:
        try:
            with open(path, errors="replace") as f:
                if rx.search(f.read()):
                    return True
        except OSError:
            pass
        if proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def _tail(path, n=3):
    try:
        with open(path, errors="replace") as f:
            lines = [l.strip() for l in f.read().splitlines() if l.strip()]
        return " | ".join(lines[-n:])
    except OSError:
        return "(no log)"


def _db(path):
    c = sqlite3.connect(path, timeout=5, isolation_level=None)
    c.execute("PRAGMA query_only=1")
    return c


def _post(port, path, body, timeout=5):
    c = OneWriteConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", path, body=body.encode(), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def _applied_of(db_a, db_b, path):
    """(ids written at A for path with a 2xx, how many of them B applied)."""
    ids = [r[0] for r in db_a.execute(
        "SELECT id FROM requests WHERE path=? AND status BETWEEN 200 AND 299", (path,))]
    if not ids:
        return 0, 0
    have = 0
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        q = "SELECT count(*) FROM applied WHERE message_id IN (%s)" % ",".join("?" * len(chunk))
        have += db_b.execute(q, chunk).fetchone()[0]
    return len(ids), have


class Sampler(threading.Thread):
    """Every 250 ms during the load: A's publisher figures (admin /stats)
    and the message counts of every queue on both brokers (management API,
    statistics every 250 ms), to see where a backlog sits."""

    def __init__(self, admin_port, mgmt):
        super().__init__(daemon=True)
        self.admin_port, self.mgmt = admin_port, mgmt  # mgmt: {"A": port, "B": port}
        self.ev = threading.Event()
        self.samples = []

    def _get(self, url, auth=False):
        req = urllib.request.Request(url)
        if auth:
            req.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")
        with urllib.request.urlopen(req, timeout=1) as r:
            return json.loads(r.read())

    def run(self):
        t0 = time.monotonic()
        while not self.ev.is_set():
            smp = {"t": round(time.monotonic() - t0, 2)}
            try:
                rep = self._get("http://127.0.0.1:%d/stats" % self.admin_port).get("replication")
                rep = rep or {}
                smp["A outbox"] = rep.get("outbox_depth")
                smp["published"] = rep.get("published")
                smp["confirmed"] = rep.get("confirmed")
            except (OSError, ValueError):
                pass
            for site, port in self.mgmt.items():
                try:
                    qs = self._get("http://127.0.0.1:%d/api/queues?columns=name,messages,"
                                   "messages_ready,messages_unacknowledged" % port, auth=True)
                    for q in qs:
                        name = q["name"]
                        # ready: waiting for a consumer; unacked: delivered,
                        # not yet acked (the shovel acks restspy.out.b on
                        # B's confirm, the replicator after its ledger commit)
                        for k in ("messages_ready", "messages_unacknowledged"):
                            if q.get(k):
                                smp["%s %s %s" % (site, name, k[9:])] = q[k]
                except (OSError, ValueError):
                    pass
            self.samples.append(smp)
            self.ev.wait(0.25)

    def finish(self):
        self.ev.set()
        self.join(5)
        peak = {}
        for smp in self.samples:
            for k, v in smp.items():
                if k in ("t", "published", "confirmed") or not isinstance(v, int):
                    continue
                peak[k] = max(peak.get(k, 0), v)
        return peak


# ---------------------------------------------------------------- the load

def paced_load(port, rate, duration, threads=THREADS):
    """POSTs rate*duration writes to 127.0.0.1:port on an absolute
    schedule: write i is due at t0 + i/rate. Returns the per-write records
    (i, due, sent, done, status or error) and the wall-clock time of t0."""
    n = int(round(rate * duration))
    counter = itertools.count()
    out = [None] * n
    t0 = time.monotonic() + 0.3
    wall0 = time.time() + (t0 - time.monotonic())

    def worker():
        conn = None
        while True:
            i = next(counter)
            if i >= n:
                break
            due = t0 + i / rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            body = b'{"n":%d,"name":"widget","price":9.99,"tags":["a","b"]}' % i
            sent = time.monotonic()
            status, err = 0, None
            try:
                if conn is None:
                    conn = OneWriteConnection("127.0.0.1", port, timeout=10)
                conn.request("POST", PATH, body=body,
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                status = r.status
                if r.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                err = "%s: %s" % (type(e).__name__, e)
                if conn is not None:
                    conn.close()
                conn = None
            out[i] = (i, due, sent, time.monotonic(), status, err)
        if conn is not None:
            conn.close()

    ts = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(duration + 60)
    return [r for r in out if r is not None], t0, wall0, n


# ---------------------------------------------------------------- the run

def run(restspy_bin, nginx_bin, tmp, quick, rate=1000, duration=None, durability="sync",
        proxy_args=(), replicate_args=()):
    """Starts both sites, measures, stops everything. Returns a dict (see
    table()); on a failure to start, {"error": "one line"}."""
    if duration is None:
        duration = 3 if quick else 20
    tmp = os.path.join(tmp, "repl_lag")
    os.makedirs(tmp, exist_ok=True)
    res = {"rate": rate, "duration_s": duration, "durability": durability,
           "threads": THREADS, "proxy_args": list(proxy_args),
           "replicate_args": list(replicate_args)}
    nodes = {}
    procs = []
    t_start = time.monotonic()
    try:
        # --- brokers
        log("repl_lag: starting two RabbitMQ nodes")
        nodes, errs = _start_two_rabbits(tmp)
        if errs:
            raise LagError("RabbitMQ: " + "; ".join("%s: %s" % kv for kv in errs.items()))
        for tag in ("lagA", "lagB"):
            if not _wait_mgmt(nodes[tag]["mgmt_port"]):
                raise LagError("RabbitMQ node %s: management API did not answer on port %d"
                               % (nodes[tag]["name"], nodes[tag]["mgmt_port"]))
        A, B = nodes["lagA"], nodes["lagB"]
        res["broker_start_s"] = round(time.monotonic() - t_start, 1)

        # --- the link, as docs/replication.md: each broker gets an out
        # queue and a shovel per peer
        for me, node, peer, other in (("a", A, "b", B), ("b", B, "a", A)):
            r = subprocess.run([restspy_bin, "federate", "--mgmt", node["mgmt_url"], "--node", me,
                                "--peer", "%s=%s" % (peer, other["url"].rstrip("/"))],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=60)
            if r.returncode != 0:
                out = r.stdout.strip().splitlines()
                raise LagError("restspy federate (site %s) exited %d: %s"
                               % (me, r.returncode, out[-1] if out else "(no output)"))

        # --- backends
        bport_a, bport_b = free_port(), free_port()
        for tag, port in (("siteA", bport_a), ("siteB", bport_b)):
            d = os.path.join(tmp, tag)
            os.makedirs(d, exist_ok=True)
            try:
                procs.append(start_backend(nginx_bin, d, port))
            except SystemExit:
                raise LagError("nginx backend %s did not start (see %s/backend/error.log)"
                               % (tag, d))

        # --- site A: proxy; site B: replicator
        db_a_path = os.path.join(tmp, "a.db")
        db_b_path = os.path.join(tmp, "b.db")
        pport, aport = free_port(), free_port()
        plog = os.path.join(tmp, "proxy-a.log")
        proxy = spawn([restspy_bin, "proxy", "--node", "a",
                       "--listen", "127.0.0.1:%d" % pport, "--admin", "127.0.0.1:%d" % aport,
                       "--upstream", "http://127.0.0.1:%d" % bport_a,
                       "--store", "sqlite:" + db_a_path, "--log", "off",
                       "--amqp", A["url"], "--secret", SECRET,
                       "--replicate-requests", "on",
                       "--replicate-durability", durability] + list(proxy_args), plog)
        procs.append(proxy)
        if not wait_port(pport, proxy, "restspy proxy"):
            raise LagError("restspy proxy did not start: " + _tail(plog))
        rlog = os.path.join(tmp, "replicate-b.log")
        repl = spawn([restspy_bin, "replicate", "--node", "b",
                      "--upstream", "http://127.0.0.1:%d" % bport_b,
                      "--store", "sqlite:" + db_b_path,
                      "--amqp", B["url"], "--secret", SECRET] + list(replicate_args), rlog)
        procs.append(repl)
        if not _wait_log(rlog, r"applying restspy\.apply\.b", repl, 30):
            raise LagError("restspy replicate did not start: " + _tail(rlog))
        # the proxy's publisher connects in the background: wait for it
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/stats" % aport, timeout=2) as r:
                    st = json.loads(r.read())
                if _find_key(st, "connected") is True:
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise LagError("restspy proxy's publisher did not connect to the broker: "
                               + _tail(plog))
            time.sleep(0.1)

        db_a = _db(db_a_path)
        db_b = _db(db_b_path)

        # --- warm-up: the shovel must run before the measured writes (they
        # would wait in restspy.out.b and count as lag)
        log("repl_lag: waiting for the shovel (warm-up writes)")
        deadline = time.monotonic() + 45
        while True:
            if _post(pport, WARM_PATH, '{"warmup":true}') // 100 != 2:
                raise LagError("warm-up write through proxy A was not answered 2xx")
            if db_b.execute("SELECT count(*) FROM applied").fetchone()[0] > 0:
                break
            if time.monotonic() > deadline:
                raise LagError("no warm-up write reached site B within 45 s (shovel "
                               "down?): " + _tail(rlog))
            time.sleep(0.25)
        # then 100 more, all of which must arrive (the link is up now)
        c0 = db_b.execute("SELECT count(*) FROM applied").fetchone()[0]
        for _ in range(100):
            _post(pport, WARM_PATH, '{"warmup":true}')
            time.sleep(0.005)
        deadline = time.monotonic() + 20
        while db_b.execute("SELECT count(*) FROM applied").fetchone()[0] < c0 + 100:
            if time.monotonic() > deadline:
                raise LagError("warm-up writes not applied on B within 20 s: " + _tail(rlog))
            time.sleep(0.1)
        total, have = _applied_of(db_a, db_b, WARM_PATH)
        lost_warm = total - have
        res["warmup_writes"], res["warmup_dropped_before_link"] = total, lost_warm
        res["setup_s"] = round(time.monotonic() - t_start, 1)

        # --- the measured load
        log("repl_lag: %d writes/s for %g s (%s durability)" % (rate, duration, durability))
        sampler = Sampler(aport, {"A": A["mgmt_port"], "B": B["mgmt_port"]})
        sampler.start()
        recs, t0, wall0, planned = paced_load(pport, rate, duration)
        res["planned"] = planned
        ok = [r for r in recs if r[4] // 100 == 2]
        failed = [r for r in recs if r[4] // 100 != 2]
        res["sent"] = len(recs)
        res["ok"] = len(ok)
        res["failed"] = len(failed)
        if failed:
            res["failed_example"] = failed[0][5] or "HTTP %d" % failed[0][4]
        sends = sorted(r[2] for r in recs)
        res["achieved_rate"] = (round((len(sends) - 1) / (sends[-1] - sends[0]), 1)
                                if len(sends) > 1 else 0.0)
        late = summary([(r[2] - r[1]) * 1000 for r in recs])
        res["send_delay_ms"] = late
        res["late_over_1ms"] = sum(1 for r in recs if r[2] - r[1] > 0.001)
        res["response_ms"] = summary([(r[3] - r[2]) * 1000 for r in ok])

        # --- wait until B applied every write A accepted: as long as B
        # keeps applying (an overloaded run drains for minutes), but no
        # longer than DRAIN_CAP_S; a write missing then is "lost" only when
        # nothing moved for 10 s, else it was still on its way.
        deadline = time.monotonic() + DRAIN_CAP_S
        last, last_change = -1, time.monotonic()
        t_load_end = time.monotonic()
        stalled = False
        while True:
            total, have = _applied_of(db_a, db_b, PATH)
            if have >= total and total >= len(ok):
                break
            if have != last:
                last, last_change = have, time.monotonic()
            if time.monotonic() - last_change > 10:
                stalled = True
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        res["drain_s"] = round(time.monotonic() - t_load_end, 1)
        res["drain_stalled"] = stalled
        res["peak_backlog"] = sampler.finish()

        # --- lag per write
        rows_a = db_a.execute(
            "SELECT id, started_at, duration_us, req_body FROM requests "
            "WHERE path=? AND status BETWEEN 200 AND 299", (PATH,)).fetchall()
        applied = {}
        for mid, at, st in db_b.execute("SELECT message_id, applied_at, status FROM applied"):
            applied[mid] = at
        apply_start = dict(db_b.execute(
            "SELECT id, started_at FROM requests WHERE origin='replicated' AND path=?", (PATH,)))
        lag, lag_due, transit, apply_ms, resp_a = [], [], [], [], []
        lost_ids = []
        for rid, started, dur, body in rows_a:
            resp_a.append(dur / 1000.0)
            at = applied.get(rid)
            if at is None:
                lost_ids.append(rid)
                continue
            lag.append((at - started) / 1000.0)
            s_b = apply_start.get(rid)
            if s_b is not None:
                transit.append((s_b - started) / 1000.0)
                apply_ms.append((at - s_b) / 1000.0)
            try:
                n = json.loads(body)["n"]
                lag_due.append((at - (wall0 + n / rate) * 1e6) / 1000.0)
            except (ValueError, KeyError, TypeError):
                pass
        res["rows_at_a"] = len(rows_a)
        res["applied_at_b"] = len(lag)
        # Not applied: lost when B had stopped applying; still in flight
        # (in A's outbox or the queues) when the wait hit its cap.
        res["lost"] = len(lost_ids) if stalled else 0
        res["in_flight_at_end"] = 0 if stalled else len(lost_ids)
        res["lost_example"] = lost_ids[:3]
        res["lag_ms"] = summary(lag)
        res["lag_from_due_ms"] = summary(lag_due)
        res["a_duration_ms"] = summary(resp_a)
        res["a_start_to_b_apply_start_ms"] = summary(transit)
        res["b_apply_to_ledger_ms"] = summary(apply_ms)
        # lag over time: p99 of each second of the run (growth = backlog)
        per_s = {}
        for rid, started, dur, body in rows_a:
            at = applied.get(rid)
            if at is not None:
                per_s.setdefault(int((started / 1e6) - wall0), []).append((at - started) / 1000.0)
        res["lag_p99_by_second_ms"] = [round(pct(sorted(v), 99), 1)
                                       for k, v in sorted(per_s.items())]
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/stats" % aport, timeout=2) as r:
                res["proxy_stats"] = json.loads(r.read())
        except (OSError, ValueError):
            pass
        db_a.close()
        db_b.close()
    except LagError as e:
        res["error"] = str(e)
    except (OSError, subprocess.SubprocessError) as e:
        res["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        for p in reversed(procs):
            stop(p, timeout=15)
        ts = [threading.Thread(target=benchlib.stop_rabbit, args=(n,)) for n in nodes.values()]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        res["total_s"] = round(time.monotonic() - t_start, 1)
    return res


def _find_key(obj, key):
    """First value of key anywhere in a JSON document (None if absent)."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        vals = obj.values()
    elif isinstance(obj, list):
        vals = obj
    else:
        return None
    for v in vals:
        f = _find_key(v, key)
        if f is not None:
            return f
    return None


# ---------------------------------------------------------------- output

def _f(v):
    return "-" if v is None else ("%.1f" % v)


def table(res):
    if res.get("error"):
        return "replication lag: not measured: %s\n" % res["error"]
    lines = [
        "Replication lag A -> B, %s durability: %d writes/s planned for %g s, achieved %.1f/s; "
        "%d sent, %d failed, %d lost (not applied on B, nothing moving)%s; target p99 <= %g ms"
        % (res["durability"], res["rate"], res["duration_s"], res["achieved_rate"],
           res["sent"], res["failed"], res["lost"],
           (", %d still on their way when the wait for the drain ended (%s s; lag is "
            "over the applied ones)" % (res["in_flight_at_end"], res["drain_s"])
            if res.get("in_flight_at_end") else ""), TARGET_P99_MS),
        "",
        "| measure (ms) | n | p50 | p90 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label in (
            ("lag_ms", "**lag**: A request start -> B ledger row"),
            ("lag_from_due_ms", "lag from the write's due time (client schedule)"),
            ("a_duration_ms", "A: request start -> response (proxy's duration)"),
            ("a_start_to_b_apply_start_ms", "A request start -> B starts the apply"),
            ("b_apply_to_ledger_ms", "B: apply request -> ledger transaction"),
            ("send_delay_ms", "client: send time - due time")):
        s = res.get(key) or {"n": 0}
        lines.append("| %s | %d | %s | %s | %s | %s |" % (label, s["n"], _f(s.get("p50")),
                                                          _f(s.get("p90")), _f(s.get("p99")),
                                                          _f(s.get("max"))))
    pk = res.get("peak_backlog") or {}
    if pk:
        lines.append("")
        lines.append("Peak backlog (messages): " + ", ".join(
            "%s %d" % (k, v) for k, v in sorted(pk.items())))
    if res.get("lag_p99_by_second_ms"):
        lines.append("Lag p99 per second of the run (ms): " + " ".join(
            "%.0f" % v for v in res["lag_p99_by_second_ms"]))
    extra = res.get("proxy_args", []) + res.get("replicate_args", [])
    if extra:
        lines.append("Extra options: proxy %s; replicate %s"
                     % (" ".join(res.get("proxy_args", [])) or "-",
                        " ".join(res.get("replicate_args", [])) or "-"))
    return "\n".join(lines) + "\n"


def main():
    import argparse
    import shutil
    import tempfile
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description="replication lag between two local restspy sites")
    ap.add_argument("--quick", action="store_true", help="3 s of load instead of 20 s")
    ap.add_argument("--rate", type=int, default=1000, help="writes per second (default 1000)")
    ap.add_argument("--duration", type=float, default=None, help="seconds of load (default 20)")
    ap.add_argument("--durability", choices=("sync", "async"), default="sync",
                    help="proxy A's --replicate-durability (default sync, restspy's default)")
    ap.add_argument("--restspy", default=os.path.join(here, "..", "build", "restspy"))
    ap.add_argument("--nginx", default=None)
    ap.add_argument("--proxy-arg", action="append", default=[], metavar="ARG",
                    help="extra argument for restspy proxy (repeat; e.g. --proxy-arg=--workers=1)")
    ap.add_argument("--replicate-arg", action="append", default=[], metavar="ARG",
                    help="extra argument for restspy replicate (repeat)")
    ap.add_argument("--json", action="store_true", help="print the raw result as JSON too")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    restspy = os.path.abspath(a.restspy)
    if not os.access(restspy, os.X_OK):
        print("repl_lag: %s not found or not executable (ninja -C build)" % restspy,
              file=sys.stderr)
        return 2
    nginx = a.nginx or benchlib.which("nginx")
    if not nginx:
        print("repl_lag: nginx not found (apt-get install nginx-light)", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="repl_lag.")
    try:
        res = run(restspy, nginx, tmp, a.quick, rate=a.rate, duration=a.duration,
                  durability=a.durability, proxy_args=a.proxy_arg,
                  replicate_args=a.replicate_arg)
    finally:
        benchlib.cleanup()
        if a.keep:
            log("repl_lag: kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if res.get("error"):
        print("repl_lag: " + res["error"], file=sys.stderr)
        return 1
    print(table(res))
    if a.json:
        print(json.dumps({k: v for k, v in res.items() if k != "proxy_stats"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
