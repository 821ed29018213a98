#!/usr/bin/python3
"""bench/limits.py: restspy's components against the plain-library limit (issue 5).

Two pairs, each run on this machine in the same session, fresh files each:

  SQLite writer  bench_store --mode restspy: restspy's store (writer thread,
                 group commit, proxy defaults) fed by a producer thread with
                 proxy-like records, against --mode plain: one connection, WAL,
                 synchronous=NORMAL, restspy's schema, one prepared INSERT with
                 the same values, BEGIN/COMMIT around as many rows as restspy's
                 batches held (the same number of transactions). Rows/s until
                 the last row is committed.
  Publisher      bench_publish --mode restspy: restspy's outbox publisher
                 draining an outbox filled through the store, against --mode
                 plain: one rabbitmq-c connection with confirm.select publishing
                 the same message (same size, properties, exchange, routing key)
                 with the same in-flight window. Messages/s until all confirmed.
                 Both against one private RabbitMQ node started here.

Ratio = restspy / plain (medians over the repetitions); the target is >= 0.8.
Repetitions alternate which side of a pair runs first (restspy first in the
first one, so that the plain loop can take restspy's batch size), so that the
noise of a shared machine hits both sides alike. CPU time per row of each
benchmark process is reported too (steadier than wall time when the machine
is shared).

Standalone: bench/limits.py [--quick] [--build build] [--reps N]
            [--store-rows N] [--publish-rows N] [--json FILE] [--keep]
From another script: limits.run(build_dir, tmp, quick) -> dict, then
limits.table(result) -> markdown. Progress goes to stderr.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import log  # noqa: E402

TARGET = 0.8
STORE_ROWS, STORE_ROWS_QUICK = 200000, 20000
PUBLISH_ROWS, PUBLISH_ROWS_QUICK = 100000, 10000
REPS, REPS_QUICK = 3, 1
RUN_TIMEOUT = 900  # seconds for one benchmark process
SINK_QUEUE = "restspy.bench.sink"
PROGRAMS = ("bench_store", "bench_publish")


def _programs(build_dir):
    """Builds the two programs (ninja) and returns their paths. A failed
    build (src/ being edited) falls back to binaries already there."""
    paths = {p: os.path.join(build_dir, p) for p in PROGRAMS}
    r = subprocess.run(["ninja", "-C", build_dir] + list(PROGRAMS),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        tail = r.stdout.strip().splitlines()[-3:]
        if all(os.access(p, os.X_OK) for p in paths.values()):
            log("limits: ninja failed, using the binaries already built:\n  " + "\n  ".join(tail))
        else:
            raise RuntimeError("cannot build %s in %s: %s" % (", ".join(PROGRAMS), build_dir,
                                                               " / ".join(tail)))
    return paths


def _remove_db(path):
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass


def _run(cmd):
    """Runs one benchmark process; its JSON object, or {"error": ...}."""
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"error": "%s timed out after %d s" % (os.path.basename(cmd[0]), RUN_TIMEOUT)}
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        why = (r.stderr.strip().splitlines() or ["exit code %d" % r.returncode])[-1]
        return {"error": why}
    try:
        return json.loads(lines[-1])
    except ValueError:
        return {"error": "unparsable output: " + lines[-1][:200]}


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _summarize(runs, pairs):
    """runs: {"restspy": [...], "plain": [...]}; pairs: [(restspy, plain)] of
    the same repetition."""
    ok = {m: [r for r in runs[m] if "error" not in r] for m in runs}
    s = {"runs": runs}
    errors = [r["error"] for m in runs for r in runs[m] if "error" in r]
    if errors:
        s["errors"] = errors
    for m in ("restspy", "plain"):
        s[m + "_rows_per_s"] = _median([r["rows_per_s"] for r in ok[m]])
        s[m + "_cpu_us_per_row"] = _median([r.get("cpu_us_per_row") for r in ok[m]])
    if s["restspy_rows_per_s"] and s["plain_rows_per_s"]:
        s["ratio"] = s["restspy_rows_per_s"] / s["plain_rows_per_s"]
    else:
        s["ratio"] = None
    s["rep_ratios"] = [a["rows_per_s"] / b["rows_per_s"] for a, b in pairs
                       if "error" not in a and "error" not in b]
    for k in ("writer_cpu_us_per_row", "publisher_cpu_us_per_row"):
        v = _median([r.get(k) for r in ok["restspy"]])
        if v is not None:
            s["restspy_" + k] = v
    if s["restspy_cpu_us_per_row"] and s["plain_cpu_us_per_row"]:
        s["cpu_ratio"] = s["plain_cpu_us_per_row"] / s["restspy_cpu_us_per_row"]
    return s


def run(build_dir, tmp, quick, reps=None, store_rows=None, publish_rows=None, sink=True):
    """Runs both pairs; returns a dict (see table()). tmp is created if
    needed; the RabbitMQ node (under tmp/limits) is started and stopped
    here. Raises RuntimeError when the programs cannot be built."""
    os.makedirs(tmp, exist_ok=True)
    prog = _programs(build_dir)
    reps = reps or (REPS_QUICK if quick else REPS)
    store_rows = store_rows or (STORE_ROWS_QUICK if quick else STORE_ROWS)
    publish_rows = publish_rows or (PUBLISH_ROWS_QUICK if quick else PUBLISH_ROWS)
    res = {"quick": bool(quick), "reps": reps, "nproc": os.cpu_count(),
           "loadavg_start": os.getloadavg(), "store_rows": store_rows,
           "publish_rows": publish_rows, "sink_queue": bool(sink)}
    store_runs = {"restspy": [], "plain": []}
    pub_runs = {"restspy": [], "plain": []}
    store_pairs, pub_pairs = [], []

    log("limits: starting a RabbitMQ node")
    t = time.monotonic()
    rmq, why = benchlib.start_rabbit(tmp, tag="limits")
    if rmq:
        log("limits: RabbitMQ up in %.1f s (%s)" % (time.monotonic() - t, rmq["url"]))
    else:
        log("limits: no publisher pair: " + why)
        res["publish_skipped"] = why
    try:
        for rep in range(reps):
            order = ("restspy", "plain") if rep % 2 == 0 else ("plain", "restspy")
            got = {}
            for mode in order:
                db = os.path.join(tmp, "store-r%d-%s.db" % (rep, mode))
                cmd = [prog["bench_store"], "--mode", mode, "--db", db, "--rows", str(store_rows)]
                if mode == "plain":
                    batches = [r["batch"] for r in store_runs["restspy"] if "batch" in r]
                    cmd += ["--batch", str(int(_median(batches)) if batches else 512)]
                log("limits: rep %d/%d SQLite writer, %s, %d rows" % (rep + 1, reps, mode,
                                                                      store_rows))
                r = _run(cmd)
                _remove_db(db)
                _report(r)
                store_runs[mode].append(r)
                got[mode] = r
            store_pairs.append((got["restspy"], got["plain"]))
            if not rmq:
                continue
            got = {}
            for mode in order:
                cmd = [prog["bench_publish"], "--mode", mode, "--amqp", rmq["url"],
                       "--rows", str(publish_rows)]
                db = os.path.join(tmp, "outbox-r%d.db" % rep)
                if mode == "restspy":
                    cmd += ["--db", db]
                if sink:
                    cmd += ["--sink-queue", SINK_QUEUE]
                log("limits: rep %d/%d publisher, %s, %d messages" % (rep + 1, reps, mode,
                                                                      publish_rows))
                r = _run(cmd)
                _remove_db(db)
                _report(r)
                pub_runs[mode].append(r)
                got[mode] = r
            pub_pairs.append((got["restspy"], got["plain"]))
    finally:
        benchlib.stop_rabbit(rmq)
    res["store"] = _summarize(store_runs, store_pairs)
    ok = [r for r in store_runs["restspy"] if "batch" in r]
    res["store"]["batch"] = int(_median([r["batch"] for r in ok])) if ok else None
    res["store"]["batch_max"] = ok[0]["batch_max"] if ok else None
    res["store"]["avg_batch"] = _median([r["avg_batch"] for r in ok])
    if rmq:
        res["publish"] = _summarize(pub_runs, pub_pairs)
        ok = [r for r in pub_runs["restspy"] if "in_flight" in r]
        res["publish"]["in_flight"] = ok[0]["in_flight"] if ok else None
    res["loadavg_end"] = os.getloadavg()
    return res


def _report(r):
    if "error" in r:
        log("  failed: " + r["error"])
    else:
        log("  %.0f rows/s, %.2f s, %.2f us CPU per row" % (
            r["rows_per_s"], r["seconds"], r.get("cpu_us_per_row", 0.0)))


def _num(v, f="{:,.0f}"):
    return "n/a" if v is None else f.format(v)


def _verdict(ratio):
    if ratio is None:
        return "n/a"
    return "%.2f× %s" % (ratio, "✓" if ratio >= TARGET else "✗")


def table(result):
    """A markdown table of run()'s result."""
    lines = ["| component | restspy | limit (plain loop) | ratio | target |",
             "|---|---:|---:|---:|---|"]
    st = result.get("store")
    if st:
        what = "SQLite writer, rows/s (%s rows, batch %s of max %s)" % (
            _num(result.get("store_rows")), _num(st.get("batch")), _num(st.get("batch_max")))
        lines.append("| %s | %s | %s | %s | ≥%.1f× |" % (
            what, _num(st["restspy_rows_per_s"]), _num(st["plain_rows_per_s"]),
            _verdict(st["ratio"]), TARGET))
    pb = result.get("publish")
    if pb:
        what = "Publisher with confirms, msgs/s (%s msgs, %s in flight%s)" % (
            _num(result.get("publish_rows")), _num(pb.get("in_flight")),
            ", durable queue bound" if result.get("sink_queue") else ", unrouted")
        lines.append("| %s | %s | %s | %s | ≥%.1f× |" % (
            what, _num(pb["restspy_rows_per_s"]), _num(pb["plain_rows_per_s"]),
            _verdict(pb["ratio"]), TARGET))
    elif result.get("publish_skipped"):
        lines.append("| Publisher with confirms | skipped: %s | | | ≥%.1f× |" % (
            result["publish_skipped"], TARGET))
    lines.append("")
    notes = []
    for key, name in (("store", "SQLite writer"), ("publish", "publisher")):
        s = result.get(key)
        if not s:
            continue
        threads = ", ".join("%s thread %s" % (k, _num(s.get("restspy_%s_cpu_us_per_row" % k),
                                                          "{:.1f}"))
                            for k in ("publisher", "writer")
                            if s.get("restspy_%s_cpu_us_per_row" % k) is not None)
        notes.append("%s: CPU per row %s µs restspy (%s) vs %s µs plain; "
                     "per-repetition ratios %s%s" % (
                         name, _num(s.get("restspy_cpu_us_per_row"), "{:.1f}"), threads,
                         _num(s.get("plain_cpu_us_per_row"), "{:.1f}"),
            ", ".join("%.2f" % x for x in s["rep_ratios"]) or "n/a",
            ("; errors: " + "; ".join(s["errors"])) if s.get("errors") else ""))
    notes.append("%d repetition(s), medians; %d cores, load average %.2f at start, %.2f at end" % (
        result["reps"], result.get("nproc") or 0, result["loadavg_start"][0],
        result.get("loadavg_end", (0,))[0]))
    lines += ["- " + n for n in notes]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="1 repetition, %d rows / %d messages" % (STORE_ROWS_QUICK,
                                                                 PUBLISH_ROWS_QUICK))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="meson build directory")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (%d)" % REPS)
    ap.add_argument("--store-rows", type=int, default=None, help="rows (%d)" % STORE_ROWS)
    ap.add_argument("--publish-rows", type=int, default=None,
                    help="messages (%d)" % PUBLISH_ROWS)
    ap.add_argument("--json", default=None, help="also write the raw result to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="restspy-limits-")
    t0 = time.monotonic()
    try:
        res = run(os.path.abspath(a.build), tmp, a.quick, reps=a.reps, store_rows=a.store_rows,
                  publish_rows=a.publish_rows)
    except RuntimeError as e:
        log("bench/limits.py: %s" % e)
        return 2
    finally:
        benchlib.cleanup()
        if a.keep:
            log("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    res["seconds"] = time.monotonic() - t0
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    print(table(res))
    failed = res["store"].get("errors") or (res.get("publish") or {}).get("errors")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
