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


TWO_CLASSES = '''import unittest


class Good(unittest.TestCase):
    def test_a(self):
        pass

    def test_b(self):
        pass


class Bad(unittest.TestCase):
    def test_c(self):
        self.fail("planted")
'''


class Runner(unittest.TestCase):
    def run_py(self, ci, module="skipping_tests", text=SKIPPING, args=()):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, module + ".py"), "w") as f:
                f.write(text)
            env = harness.clean_env({"PYTHONPATH": d, "CI": "true" if ci else ""})
            return subprocess.run([sys.executable, os.path.join(HERE, "run.py")] + list(args) +
                                  [module], env=env, capture_output=True, text=True,
                                  timeout=60)

    def test_jobs_add_up_every_unit(self):
        """--jobs runs each class in its own process and still counts every
        test, and a failure in one unit fails the run."""
        p = self.run_py(ci=False, module="two_classes", text=TWO_CLASSES,
                        args=["--jobs", "2", "--shuffle"])
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("==== two_classes.Good", p.stdout)
        self.assertIn("==== two_classes.Bad", p.stdout)
        self.assertIn("\n2 passed, 1 failed\n", p.stdout)
        self.assertIn("AssertionError: planted", p.stdout)

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
