"""scripts/check-layers, the include checker `make lint` runs: the real tree
passes, and a planted back-include, a planted cycle and an include of a
missing file each fail it with a line naming the culprit."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECKER = os.path.join(ROOT, "scripts", "check-layers")


def check(root, *extra):
    return subprocess.run([sys.executable, CHECKER, "--root", root] + list(extra),
                          capture_output=True, text=True, timeout=60)


class Layers(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="restspy-layers-")
        shutil.copytree(os.path.join(ROOT, "src"), os.path.join(self.tmp, "src"))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def plant(self, rel, line):
        path = os.path.join(self.tmp, "src", rel)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        with open(path, "w", encoding="utf-8") as f:
            f.write(line + "\n" + text)

    def test_real_tree_passes(self):
        p = check(ROOT)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stdout, "")

    def test_planted_back_include_fails(self):
        self.assertEqual(check(self.tmp).returncode, 0)
        self.plant("base/buf.c", '#include "proxy/proxy.h"')
        p = check(self.tmp)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("base/buf.c: includes proxy/proxy.h, but base may not use proxy",
                      p.stdout)

    def test_planted_module_cycle_fails(self):
        # http/headers.h is included by http/httpmsg.h; the reverse makes a cycle
        self.plant("http/headers.h", '#include "http/httpmsg.h"')
        p = check(self.tmp)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("include cycle between modules: http/headers, http/httpmsg", p.stdout)

    def test_include_of_missing_file_fails(self):
        self.plant("capture/record.c", '#include "capture/nosuch.h"')
        p = check(self.tmp)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn('includes "capture/nosuch.h", which is no file of src/', p.stdout)

    def test_file_outside_any_layer_fails(self):
        with open(os.path.join(self.tmp, "src", "stray.c"), "w") as f:
            f.write("int stray;\n")
        p = check(self.tmp)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("stray.c: in no layer of src/LAYERS", p.stdout)

    def test_dot_names_every_folder(self):
        p = check(ROOT, "--dot")
        self.assertEqual(p.returncode, 0, p.stderr)
        for folder in ("base", "http", "capture", "formats", "store", "replication",
                       "replay", "proxy", "cli"):
            self.assertIn('"%s" [label="%s/' % (folder, folder), p.stdout)


if __name__ == "__main__":
    unittest.main()
