#!/usr/bin/python3
"""bench/pg.py: restspy persisting to PostgreSQL (issue 17), against a
plain COPY loop as the limit.

Everything against one private PostgreSQL 15 server started here
(tests/integration/pgnode.py: initdb/pg_ctl in a temporary directory, on a
loopback port, fsync off as in the tests), a fresh database per run:

  writer vs COPY  bench_store --mode restspy --db postgresql://...: restspy's
                  PostgreSQL writer (pipelined prepared INSERTs, proxy
                  defaults) fed by a producer thread, against --mode copy:
                  one connection, one `COPY ... FROM STDIN (FORMAT binary)`
                  per as many rows as restspy's batches held. Rows/s until
                  the last row is committed; ratio = restspy / COPY
                  (medians; the issue's target is >= 0.8).
  one proxy       configuration 7's load (bench/run's wrk and mix.lua, 32
                  connections) through one restspy (--log, --store
                  postgresql://..., --workers 1): requests/s, rows/s written,
                  capture completeness (rows after SIGTERM against what wrk
                  completed, as bench/run counts it).
  three proxies   three restspy processes (--workers 1 each) into one
                  database, each under its own wrk at
                  the same time (10 connections each): requests/s summed,
                  rows, completeness.

From bench/run (skipped by --quick and --no-pg; skipped with a note when
PostgreSQL 15 is not installed): pg.run(restspy, build_dir, tmp, wrk_fn,
upstream, duration, quick) -> dict, then pg.table(result) -> markdown.
Standalone it runs the writer-vs-COPY pair only:
    bench/pg.py [--build build] [--rows N] [--reps N]
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import pgnode  # noqa: E402
from benchlib import free_port, log, spawn, stop, wait_port  # noqa: E402

TARGET = 0.8
ROWS = 100000
REPS = 2
CONNS = 32
RUN_TIMEOUT = 600


def _median(xs):
    return statistics.median(xs) if xs else None


def _bench_store(build_dir, mode, url, rows, batch=None):
    cmd = [os.path.join(build_dir, "bench_store"), "--mode", mode, "--db", url,
           "--rows", str(rows)]
    if batch:
        cmd += ["--batch", str(batch)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=RUN_TIMEOUT)
    if r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), r.stderr.strip()[-500:]))
    return json.loads(r.stdout)


MODES = ("restspy", "copy", "copy-staged")


def writer_vs_copy(node, build_dir, rows, reps):
    """restspy's writer, the plain COPY loop and the staged COPY a writer
    keeping "stored once" would need, in an order rotated each repetition,
    a fresh database each; COPY's batches are 512 rows (the writer's
    store_batch)."""
    runs = []
    for rep in range(reps):
        run = {}
        for mode in MODES[rep % 3:] + MODES[:rep % 3]:
            url = node.createdb("w%d_%s" % (rep, mode.replace("-", "_")))
            run[mode] = _bench_store(build_dir, mode, url, rows,
                                     None if mode == "restspy" else 512)
            log("  pg %s: %.0f rows/s, %.2f us CPU/row" % (
                mode, run[mode]["rows_per_s"], run[mode].get("cpu_us_per_row", 0)))
        runs.append(run)
    med = {m: _median([x[m]["rows_per_s"] for x in runs]) for m in MODES}
    r, c, st = med["restspy"], med["copy"], med["copy-staged"]
    return {"rows": rows, "runs": runs, "restspy_rows_per_s": r, "copy_rows_per_s": c,
            "staged_rows_per_s": st, "ratio": r / c if r and c else None,
            "staged_ratio": st / c if st and c else None}


def _count(node, db):
    return int(node.psql("SELECT count(*) FROM requests", db=db).strip())


def proxies_under_load(node, restspy, tmp, wrk_fn, upstream, duration, n, db):
    """n proxies into database db, each under its own wrk at the same time."""
    import threading
    url = node.createdb(db)
    procs, ports = [], []
    try:
        for i in range(n):
            d = os.path.join(tmp, "%s-p%d" % (db, i))
            os.makedirs(d, exist_ok=True)
            port = free_port()
            proc = spawn([restspy, "proxy", "--listen", "127.0.0.1:%d" % port,
                          "--upstream", "http://" + upstream, "--admin", "off",
                          "--workers", "1", "--node", "bench%d" % i, "--log",
                          d + "/access.jsonl", "--store", url], d + "/restspy.stderr")
            procs.append(proc)
            if not wait_port(port, proc, "restspy"):
                raise RuntimeError("restspy did not start (see %s)" % d)
            ports.append(port)
        time.sleep(0.3)
        conns = CONNS if n == 1 else CONNS // n
        results = [None] * n
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(
            i, wrk_fn(ports[i], conns, duration))) for i in range(n)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t1 = time.monotonic()
        codes = [stop(p, signal.SIGTERM, timeout=120) for p in procs]
        t2 = time.monotonic()
        procs = []
    finally:
        for p in procs:
            stop(p, signal.SIGTERM, timeout=60)
    if any(r is None for r in results):
        raise RuntimeError("wrk failed")
    completed = sum(r["completed"] for r in results)
    errors = sum(r["socket_errors"] for r in results)
    rows = _count(node, db)
    return {"proxies": n, "conns_each": conns, "rps": sum(r["rps"] for r in results),
            "completed": completed, "socket_errors": errors, "rows": rows,
            "rows_per_s_during_load": rows / (t1 - t0), "drain_s": t2 - t1,
            "capture_ok": completed <= rows <= completed + conns * n + errors,
            "exit_codes": codes, "p99_ms": [r.get("p99_ms") for r in results]}


def run(restspy, build_dir, tmp, wrk_fn, upstream, duration, quick):
    ok, why = pgnode.available()
    if not ok:
        return {"skipped": why}
    os.makedirs(tmp, exist_ok=True)
    node = pgnode.PgNode().start()  # in /tmp: the postgres user must reach it
    try:
        out = {"server": node.psql("SHOW server_version", db="postgres").strip()}
        log("pg: restspy's writer against a plain COPY loop")
        out["writer"] = writer_vs_copy(node, build_dir, ROWS // 10 if quick else ROWS,
                                       1 if quick else REPS)
        for n, key in ((1, "one_proxy"), (3, "three_proxies")):
            log("pg: %d prox%s under wrk, %d s" % (n, "y" if n == 1 else "ies", duration))
            out[key] = proxies_under_load(node, restspy, tmp, wrk_fn, upstream, duration, n,
                                          key)
        return out
    finally:
        node.cleanup()


def table(res):
    if "skipped" in res:
        return "skipped: %s" % res["skipped"]
    w = res["writer"]
    lines = ["PostgreSQL %s (private server, fsync off)." % res["server"], "",
             "| | rows/s | ratio |", "|---|---:|---:|",
             "| restspy writer (pipeline) | %.0f | %.2f (target %.1f) |" % (
                 w["restspy_rows_per_s"], w["ratio"], TARGET),
             "| plain COPY (binary), same batches | %.0f | 1 |" % w["copy_rows_per_s"]]
    if w.get("staged_rows_per_s"):
        lines.append("| COPY into a temporary table + INSERT ... SELECT ON CONFLICT | %.0f | "
                     "%.2f |" % (w["staged_rows_per_s"], w["staged_ratio"]))
    if "one_proxy" in res:
        lines += ["", "| configuration | req/s | rows | rows/s during load | drain after | "
                  "complete | exit |", "|---|---:|---:|---:|---:|---|---|"]
    for key, name in (("one_proxy", "1 restspy + log + PostgreSQL"),
                      ("three_proxies", "3 restspy + log into one PostgreSQL")):
        r = res.get(key)
        if r:
            lines.append("| %s | %.0f | %d | %.0f | %.1f s | %s | %s |" % (
                name, r["rps"], r["rows"], r["rows_per_s_during_load"], r["drain_s"],
                "yes" if r["capture_ok"] else "NO (%d completed)" % r["completed"],
                ",".join(str(c) for c in r["exit_codes"])))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rows", type=int, default=ROWS)
    ap.add_argument("--reps", type=int, default=REPS)
    a = ap.parse_args()
    ok, why = pgnode.available()
    if not ok:
        print("skipped: " + why)
        return 0
    node = pgnode.PgNode().start()  # in /tmp: the postgres user must reach it
    try:
        res = {"server": node.psql("SHOW server_version", db="postgres").strip(),
               "writer": writer_vs_copy(node, a.build, a.rows, a.reps)}
    finally:
        node.cleanup()
    print(json.dumps(res))
    print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
