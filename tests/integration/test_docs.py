"""The README stays current: every configuration key restspy knows is
documented there, and every command's --help works."""
import os
import re
import subprocess
import unittest

from harness import restspy_bin

RESTSPY_BIN = restspy_bin()

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Docs(unittest.TestCase):
    def test_every_config_key_in_readme(self):
        out = subprocess.run([RESTSPY_BIN, "proxy", "--help"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
        keys = [m.group(1).replace("-", "_")
                for m in re.finditer(r"^\s+--([a-z0-9-]+)\s", out, re.M)]
        self.assertGreater(len(keys), 30)
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        missing = [k for k in keys if f"`{k}`" not in readme]
        self.assertEqual(missing, [], "keys missing from README.md")

    def test_settings_table_is_generated(self):
        """README's settings table is exactly what the settings table in
        the code prints (`restspy proxy --help --markdown`)."""
        out = subprocess.run([RESTSPY_BIN, "proxy", "--help", "--markdown"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        self.assertTrue(out.startswith("| key | default | meaning |\n"), out[:200])
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        self.assertIn(out, readme, "README's settings table differs from "
                      "`restspy proxy --help --markdown`: paste its output")

    def test_ports_agree(self):
        """README and docs use one port plan (proxy 8080/8180, admin
        8081/8181): a proxy never listens on an admin port."""
        bad = []
        for name in ("README.md", "docs/replication.md"):
            with open(os.path.join(ROOT, name), encoding="utf-8") as f:
                text = f.read()
            bad += ["%s: %s" % (name, m.group(0))
                    for m in re.finditer(r"--listen \S*:(8081|8181|9081|9082)\b", text)]
        self.assertEqual(bad, [])

    def test_no_promise_of_what_is_missing(self):
        """Nothing says metrics are served until /metrics exists (issue 13);
        the README says TLS is not supported yet."""
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        out = subprocess.run([RESTSPY_BIN, "proxy", "--help"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
        self.assertNotIn("metrics listener", readme + out)
        self.assertIn("### Not supported yet", readme)
        self.assertIn("TLS", readme.split("### Not supported yet", 1)[1][:400])

    def test_every_command_has_help(self):
        for cmd in (["--help"], ["proxy", "--help"], ["requests", "--help"],
                    ["show", "--help"]):
            r = subprocess.run([RESTSPY_BIN] + cmd, capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(r.returncode, 0, cmd)
            self.assertIn("usage", r.stdout.lower(), cmd)


if __name__ == "__main__":
    unittest.main()
