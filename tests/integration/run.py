#!/usr/bin/env python3
"""Runs restspy's integration tests: tests/integration/test_*.py (unittest),
verbosely, then prints one line "N passed, N failed" (", N skipped" when some
were) and exits non-zero on any failure or error, or when no test ran.

Usage: run.py [--shuffle [--seed N]] [--jobs N] [-k PATTERN]... [MODULE_OR_TEST]...
  e.g. run.py test_proxy   run.py test_admin.AdminFlags   run.py -k redact
--jobs N runs N units at once, each in a process of its own: a unit is a
test class, or a whole module when the module has fixtures of its own
(setUpModule: brokers, a recorded corpus). Those modules are the long ones:
they start first, and at most --heavy of them (default 2) run at once, so
that the brokers and apps of several replication scenarios do not crowd two
cores. Each unit's output is printed whole when it ends, then the totals
and the slowest units.
Environment: RESTSPY_BIN (the binary under test, default build/restspy),
PYTHON (interpreter with Django for the sample app), KEEP_TMP=1.
"""
import argparse
import os
import random
import re
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from iter_tests(t)
        else:
            yield t


def shuffled(suite, rng):
    """suite's tests grouped by class, the classes in a random order and the
    tests of each class too. Tests that depended on running after another
    one fail here, which is the point."""
    by_class = {}
    for t in iter_tests(suite):
        by_class.setdefault(type(t), []).append(t)
    groups = list(by_class.values())
    rng.shuffle(groups)
    out = unittest.TestSuite()
    for g in groups:
        rng.shuffle(g)
        out.addTests(g)
    return out


def class_sizes(suite):
    """Number of tests per 'module.Class' (to count the tests of a class whose
    setUpClass failed, which unittest reports as a single error)."""
    sizes = {}
    for t in iter_tests(suite):
        key = "%s.%s" % (type(t).__module__, type(t).__qualname__)
        sizes[key] = sizes.get(key, 0) + 1
    return sizes


def units(suite):
    """The units --jobs schedules, as (name, heavy) in suite order: a module
    with setUpModule is one heavy unit (its fixtures start once), else each
    'module.Class' is one."""
    out = []
    for t in iter_tests(suite):
        mod = sys.modules.get(type(t).__module__)
        heavy = mod is not None and hasattr(mod, "setUpModule")
        if heavy:
            u = type(t).__module__
        elif isinstance(t, unittest.TestCase) and type(t).__module__ != "unittest.loader":
            u = "%s.%s" % (type(t).__module__, type(t).__qualname__)
        else:
            u = t.id().rsplit(".", 1)[-1]  # a module that failed to import: its name
        if (u, heavy) not in out:
            out.append((u, heavy))
    return out


SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$", re.M)


def run_parallel(unit_list, opts, seed):
    """Runs each unit in its own run.py process, jobs at a time, heavy units
    first and at most opts.heavy of them at once. Returns the exit status;
    prints each unit's output when it ends, then the totals."""
    cond = threading.Condition()
    todo = [u for u in unit_list if u[1]] + [u for u in unit_list if not u[1]]
    running_heavy = [0]
    totals = {"passed": 0, "failed": 0, "skipped": 0, "bad": 0}
    took = []

    def take():
        """The next unit this worker may start (waits while only heavy ones
        are left and opts.heavy of them run), or None when none is left."""
        with cond:
            while True:
                if not todo:
                    return None
                for i, (name, heavy) in enumerate(todo):
                    if not heavy or running_heavy[0] < opts.heavy:
                        del todo[i]
                        running_heavy[0] += heavy
                        return name, heavy
                cond.wait()

    def worker():
        while True:
            got = take()
            if got is None:
                return
            unit, heavy = got
            cmd = [sys.executable, os.path.abspath(__file__), unit]
            if opts.shuffle:
                cmd[2:2] = ["--shuffle", "--seed", str(seed)]
            for p in opts.patterns or []:
                cmd[2:2] = ["-k", p]
            t0 = time.monotonic()
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
            dt = time.monotonic() - t0
            out = p.stdout.decode("utf-8", "replace")
            m = None
            for m in SUMMARY.finditer(out):
                pass
            with cond:
                sys.stdout.write("==== %s (%.1fs, exit %d)\n%s" % (unit, dt, p.returncode, out))
                sys.stdout.flush()
                took.append((dt, unit))
                if m:
                    totals["passed"] += int(m.group(1))
                    totals["failed"] += int(m.group(2))
                    totals["skipped"] += int(m.group(3) or 0)
                if p.returncode != 0:
                    totals["bad"] += 1
                    if not m or int(m.group(2)) == 0 and int(m.group(3) or 0) == 0:
                        totals["failed"] += 1  # died, or no test ran
                running_heavy[0] -= heavy
                cond.notify_all()

    threads = [threading.Thread(target=worker) for _ in range(opts.jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took.sort(reverse=True)
    print("slowest units: " + ", ".join("%s %.0fs" % (u, d) for d, u in took[:8]))
    line = "%d passed, %d failed" % (totals["passed"], totals["failed"])
    if totals["skipped"]:
        line += ", %d skipped" % totals["skipped"]
    print(line, flush=True)
    if totals["bad"]:
        print("%d units failed" % totals["bad"], file=sys.stderr)
        return 1
    if totals["passed"] == 0:
        print("no tests ran", file=sys.stderr)
        return 1
    return 0


def main():
    ap = argparse.ArgumentParser(description="restspy integration tests")
    ap.add_argument("-k", dest="patterns", action="append", default=None,
                    help="only tests whose name contains this (unittest -k)")
    ap.add_argument("--shuffle", action="store_true",
                    help="run modules, classes and the tests of each class in a random order "
                         "(a class's tests stay together: its fixtures start once)")
    ap.add_argument("--seed", type=int, default=None,
                    help="seed of --shuffle (printed by every shuffled run, to repeat it)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="units (classes, or modules with fixtures) run at once, each in "
                         "its own process")
    ap.add_argument("--heavy", type=int, default=2,
                    help="with --jobs: modules with fixtures of their own run at once")
    ap.add_argument("names", nargs="*", help="modules or tests, e.g. test_proxy")
    opts = ap.parse_args()

    sys.path.insert(0, HERE)
    loader = unittest.TestLoader()
    if opts.patterns:
        loader.testNamePatterns = ["*%s*" % p if "*" not in p else p for p in opts.patterns]
    if opts.names:
        suite = loader.loadTestsFromNames(opts.names)
    else:
        suite = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)

    seed = opts.seed if opts.seed is not None else random.SystemRandom().randrange(1 << 31)
    if opts.shuffle:
        print("shuffled order, seed %d (run.py --shuffle --seed %d repeats it)" % (seed, seed))
        suite = shuffled(suite, random.Random(seed))
    if opts.jobs > 1:
        started = time.monotonic()
        rc = run_parallel(units(suite), opts, seed)
        print("integration tests took %.1fs with %d jobs" % (time.monotonic() - started,
                                                             opts.jobs))
        return rc

    binary = os.environ.get("RESTSPY_BIN") or os.path.join(
        os.path.dirname(os.path.dirname(HERE)), "build", "restspy")
    print("restspy under test: %s" % binary, flush=True)

    sizes = class_sizes(suite)
    started = time.monotonic()
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2)
    result = runner.run(suite)
    elapsed = time.monotonic() - started

    # Count tests, not failure entries: a test with several failing subtests
    # is one failure. A failed setUpClass is one error in unittest's count
    # although none of the class's tests ran: each of them counts as failed.
    # An error in tearDownClass (e.g. restspy exited non-zero or a sanitizer
    # report) counts as one more failure.
    failed_ids = set()
    not_run = 0
    fixture_errors = 0
    for test, _ in result.failures + result.errors:
        desc = str(test)
        if isinstance(test, unittest.TestCase) and hasattr(test, "test_case"):
            failed_ids.add(test.test_case.id())  # a subtest
        elif isinstance(test, unittest.TestCase) and not desc.startswith(
                ("setUpClass (", "tearDownClass (", "setUpModule (", "tearDownModule (")):
            failed_ids.add(test.id())
        elif desc.startswith("setUpClass (") and desc.endswith(")"):
            not_run += sizes.get(desc[len("setUpClass ("):-1], 1)
        else:
            fixture_errors += 1
    for test in result.unexpectedSuccesses:
        failed_ids.add(test.id())
    skipped = len(result.skipped)
    passed = max(result.testsRun - len(failed_ids) - skipped - len(result.expectedFailures), 0)
    failed = len(failed_ids) + not_run + fixture_errors

    print("integration tests took %.1fs" % elapsed)
    line = "%d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print(line, flush=True)
    if failed or not result.wasSuccessful():
        return 1
    if skipped and os.environ.get("CI"):
        # Under CI a skip is a test that did not run: the suite must not
        # shrink silently (a missing dependency, a broker that cannot start).
        print("%d skipped under CI: a failure" % skipped, file=sys.stderr)
        return 1
    if result.testsRun == 0:
        print("no tests ran", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
