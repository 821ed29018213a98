#!/usr/bin/env python3
"""Runs restspy's integration tests: tests/integration/test_*.py (unittest),
verbosely, then prints one line "N passed, N failed" (", N skipped" when some
were) and exits non-zero on any failure or error, or when no test ran.

Usage: run.py [--shuffle [--seed N]] [-k PATTERN]... [MODULE_OR_TEST]...
  e.g. run.py test_proxy   run.py test_admin.AdminFlags   run.py -k redact
Environment: RESTSPY_BIN (the binary under test, default build/restspy),
PYTHON (interpreter with Django for the sample app), KEEP_TMP=1.
"""
import argparse
import os
import random
import sys
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


def main():
    ap = argparse.ArgumentParser(description="restspy integration tests")
    ap.add_argument("-k", dest="patterns", action="append", default=None,
                    help="only tests whose name contains this (unittest -k)")
    ap.add_argument("--shuffle", action="store_true",
                    help="run modules, classes and the tests of each class in a random order "
                         "(a class's tests stay together: its fixtures start once)")
    ap.add_argument("--seed", type=int, default=None,
                    help="seed of --shuffle (printed by every shuffled run, to repeat it)")
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

    if opts.shuffle:
        seed = opts.seed if opts.seed is not None else random.SystemRandom().randrange(1 << 31)
        print("shuffled order, seed %d (run.py --shuffle --seed %d repeats it)" % (seed, seed))
        suite = shuffled(suite, random.Random(seed))

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
