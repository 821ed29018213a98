#!/usr/bin/env python3
"""bench/growth.py: does restspy's store keep its speed at ten million rows (issue 14)?

Runs build/bench_growth (built with ninja when missing) on a fresh file in
a temporary directory: it fills a store through the proxy's own writer (no
HTTP) with API-shaped rows, measures the insert rate with 0, N/10, N/2 and
N rows in the store, the queries `restspy requests` / `restspy show` make
on N rows, and the cost of retention (max_rows) at that size. See the
comment at the top of bench/bench_growth.c for exactly what is timed.

Prints a markdown table and the targets of issue 14 against the figures,
and one JSON line (prefixed `JSON `); writes <results>/growth-<date>.json
and, with gnuplot, growth-<date>.png (rows in store → insert rate, and
query times). Exit 1 when bench_growth failed (a query found nothing, the
store lost rows, retention pruned nothing).

  bench/growth.py --quick          # 100,000 rows, windows of 10,000 (< 30 s; make bench-smoke)
  bench/growth.py                  # 10,000,000 rows, windows of 200,000 (~10 GB, 15-30 min)
  bench/growth.py --from out.json  # table and chart of an earlier bench_growth output
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
QUERY_TARGET_MS = 200.0
INSERT_TARGET = 0.9  # rate at N rows ≥ 0.9× the empty store's
PRUNE_TARGET = 0.9   # pruning costs ≤ 10% of throughput


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_tool(build, args, keep):
    exe = os.path.join(build, "bench_growth")
    if not os.access(exe, os.X_OK):
        log("building %s" % exe)
        subprocess.run(["ninja", "-C", build, "bench_growth"], check=False,
                       stdout=subprocess.DEVNULL)
        if not os.access(exe, os.X_OK):
            raise SystemExit("growth.py: no %s (make build)" % exe)
    tmp = tempfile.mkdtemp(prefix="restspy-growth-")
    try:
        r = subprocess.run([exe, "--db", os.path.join(tmp, "growth.db")] + args,
                           stdout=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise SystemExit("growth.py: bench_growth failed (exit %d)" % r.returncode)
        return json.loads(r.stdout)
    finally:
        if keep:
            log("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def fmt_rows(n):
    return "{:,}".format(n)


def num(v, f="%.1f"):
    """A figure, or empty when the run did not get to it (an interrupted
    run's figures rebuilt from its progress lines)."""
    return "" if v is None else f % v


def window_row(label, w, base):
    return "| %s | %.0f | %.2f | %s | %s | %s |" % (
        label, w["rows_per_s"], w["rows_per_s"] / base, num(w.get("writer_cpu_us_per_row")),
        num(w.get("cpu_us_per_row")), num(w.get("avg_batch"), "%.0f"))


def table(res):
    lv = res["levels"]
    base = lv[0]["rows_per_s"]
    out = ["### Growth: %s rows (windows of %s rows, timestamps over %d days, %.1f GB file)"
           % (fmt_rows(res["rows"]), fmt_rows(res["batch"]), res["days"],
              res["db_bytes"] / 1e9), "",
           "| rows in store | inserts/s | × empty | writer CPU µs/row | process CPU µs/row "
           "| rows per commit |", "|---:|---:|---:|---:|---:|---:|"]
    for w in lv:
        out.append(window_row(fmt_rows(w["rows_in_store"]), w, base))
    ret = res.get("retention")
    for key, what in (("control", "reopened, no retention"), ("pruning", "reopened, max_rows")):
        if ret:
            out.append(window_row("%s (%s)" % (fmt_rows(ret[key]["rows_in_store"]), what),
                                  ret[key], base))
    out += ["", "Queries on %s rows (read-only store as the CLI opens it; the CLI's query "
            "shapes: newest first, limit + 1; median of %d runs, one when it takes over 5 s):" % (
                fmt_rows(res["rows_written"] - 2 * res["batch"]) if res.get("retention") else
            fmt_rows(res["rows_written"]), res["reps"]), "",
            "| query | median ms | max ms | runs | rows |", "|---|---:|---:|---:|---:|"]
    for q in res["queries"]:
        out.append("| `%s` | %.1f | %.1f | %s | %d |" % (
            q["name"], q["median_ms"], q["max_ms"], q.get("runs", res["reps"]), q["rows"] or 0))
    if "open_ms" in res:
        out += ["", "Writer opened on the full file: %.0f ms; with max_rows (counts the rows): "
                "%.0f ms; fill %.0f s; final close (checkpoint) %.0f ms." % (
                    res["open_ms"], res["open_max_rows_ms"], res["fill_seconds"],
                    res["close_ms"])]
    return "\n".join(out)


def targets(res):
    lv = res["levels"]
    rows = ["| target (issue 14) | this run | |", "|---|---|---|"]

    def add(what, fig, ok):
        rows.append("| %s | %s | %s |" % (what, fig, "met" if ok else "**missed**"))
    r = lv[-1]["rows_per_s"] / lv[0]["rows_per_s"]
    add("inserts at %s rows ≥ %.1f× empty" % (fmt_rows(lv[-1]["rows_in_store"]), INSERT_TARGET),
        "%.2f×" % r, r >= INSERT_TARGET)
    for q in res["queries"]:
        add("`%s` ≤ %.0f ms" % (q["name"], QUERY_TARGET_MS), "%.1f ms" % q["median_ms"],
            q["median_ms"] <= QUERY_TARGET_MS)
    ret = res.get("retention")
    if ret:
        r = ret["pruning"]["rows_per_s"] / ret["control"]["rows_per_s"]
        add("retention at full size ≥ %.1f× without" % PRUNE_TARGET, "%.2f×" % r,
            r >= PRUNE_TARGET)
    return "\n".join(rows)


def short_label(name):
    """A query's name short enough for the chart's axis."""
    label = name.replace("requests ", "").replace(" (store_id_abbrev)", "")
    label = label.replace(" (newest 50)", "").replace('"', "'")
    return label if len(label) <= 34 else label[:33] + "…"


def chart(gnuplot, png, res):
    """Two panels: rows in store → inserts/s; each query's median ms (log)."""
    base = png[:-4]
    with open(base + "-insert.dat", "w") as f:
        for w in res["levels"]:
            f.write("%d %.1f %s\n" % (w["rows_in_store"], w["rows_per_s"],
                                       num(w.get("writer_cpu_us_per_row"), "%.3f") or "?"))
    with open(base + "-queries.dat", "w") as f:
        for i, q in enumerate(res["queries"]):
            f.write('%d "%s" %.3f\n' % (i, short_label(q["name"]), q["median_ms"]))
    gp = """set terminal png size 1400,700 noenhanced
set output '%(png)s'
set multiplot layout 1,2 title 'bench/growth.py: %(rows)s rows'
set title 'inserts/s by rows already in the store'
set xlabel 'rows in store (millions)'
set ylabel 'inserts/s'
set y2label 'writer CPU us/row'
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set key bottom left
plot '%(base)s-insert.dat' using ($1/1e6):2 with linespoints lw 2 title 'inserts/s', \
     '' using ($1/1e6):3 axes x1y2 with linespoints dt 2 title 'writer CPU us/row'
set title 'query time at %(rows)s rows (median ms, log scale; line: 200 ms target)'
unset xlabel
unset y2label
unset y2tics
set ylabel 'ms'
set logscale y
set yrange [0.01:*]
set style data histograms
set style fill solid 0.8 border -1
set xtics rotate by -30 font ',8'
set bmargin 12
set key off
plot '%(base)s-queries.dat' using 3:xtic(2), 200 with lines lw 2
unset multiplot
""" % {"png": png, "base": base, "rows": fmt_rows(res["rows"])}
    r = subprocess.run([gnuplot], input=gp, text=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    if r.returncode != 0:
        log("gnuplot failed: " + r.stderr.strip())
        return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="100,000 rows, windows of 10,000, 3 runs per query (< 30 s)")
    ap.add_argument("--rows", type=int, default=None, help="rows in the store (10000000)")
    ap.add_argument("--batch", type=int, default=None, help="rows per insert window (200000)")
    ap.add_argument("--reps", type=int, default=None, help="runs of each query (5)")
    ap.add_argument("--days", type=int, default=7, help="days the timestamps span (7)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="build directory holding bench_growth")
    ap.add_argument("--from", dest="src", default=None,
                    help="render this earlier bench_growth JSON output instead of running")
    ap.add_argument("--results", default=os.path.join(HERE, "results"),
                    help="where the JSON and the chart go (bench/results)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary store file")
    a = ap.parse_args()
    if a.src:
        with open(a.src) as f:
            res = json.load(f)
    else:
        rows = a.rows or (100000 if a.quick else 10000000)
        batch = a.batch or (10000 if a.quick else 200000)
        reps = a.reps or (3 if a.quick else 5)
        res = run_tool(a.build, ["--rows", str(rows), "--batch", str(batch), "--reps",
                                 str(reps), "--days", str(a.days)], a.keep)
    stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H%M%S")
    os.makedirs(a.results, exist_ok=True)
    jpath = os.path.join(a.results, "growth-%s.json" % stamp)
    with open(jpath, "w") as f:
        json.dump(res, f, indent=1)
    text = [table(res), "", targets(res), "", "Raw figures: %s" % jpath]
    gnuplot = shutil.which("gnuplot")
    if gnuplot:
        png = os.path.join(a.results, "growth-%s.png" % stamp)
        if chart(gnuplot, png, res):
            text.append("Chart: %s" % png)
    else:
        log("no gnuplot: no chart (apt-get install gnuplot)")
    text.append("JSON " + json.dumps(res, separators=(",", ":")))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
