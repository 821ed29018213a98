"""run.py itself: under CI a skipped test fails the run (the suite must not
shrink silently); elsewhere a skip is reported and the run passes."""
import os
import subprocess
import sys
import tempfile
import unittest

import harness

HERE = os.path.dirname(os.path.abspath(__file__))

SKIPPING = '''import unittest


class T(unittest.TestCase):
    def test_runs(self):
        pass

    def test_skips(self):
        self.skipTest("no such dependency here")
'''


class Runner(unittest.TestCase):
    def run_py(self, ci):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "skipping_tests.py"), "w") as f:
                f.write(SKIPPING)
            env = harness.clean_env({"PYTHONPATH": d, "CI": "true" if ci else ""})
            return subprocess.run([sys.executable, os.path.join(HERE, "run.py"),
                                   "skipping_tests"], env=env, capture_output=True, text=True,
                                  timeout=60)

    def test_skip_fails_under_ci(self):
        p = self.run_py(ci=True)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("1 passed, 0 failed, 1 skipped", p.stdout)
        self.assertIn("1 skipped under CI: a failure", p.stderr)

    def test_skip_passes_elsewhere(self):
        p = self.run_py(ci=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("1 passed, 0 failed, 1 skipped", p.stdout)


if __name__ == "__main__":
    unittest.main()
