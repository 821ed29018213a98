"""The README stays current: every configuration key restspy knows is
documented there, every command's --help works, and every command line
the docs show uses options that exist."""
import glob
import os
import re
import subprocess
import sys
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

    def test_architecture_picture_is_the_code(self):
        """docs/architecture.dot is what scripts/check-layers --dot draws
        from today's includes (`make docs` renews it and the SVG), and the
        README links the page that shows it."""
        out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "check-layers"),
                              "--dot"], capture_output=True, text=True, timeout=60,
                             check=True).stdout
        with open(os.path.join(ROOT, "docs", "architecture.dot"), encoding="utf-8") as f:
            self.assertEqual(f.read(), out, "docs/architecture.dot is stale: run make docs")
        with open(os.path.join(ROOT, "docs", "architecture.svg"), encoding="utf-8") as f:
            svg = f.read()
        for folder in re.findall(r'^  "(\w+)" \[label=', out, re.M):
            self.assertIn(folder + "/", svg)
        with open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8") as f:
            self.assertIn("(architecture.svg)", f.read())
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            self.assertIn("(docs/architecture.md)", f.read())

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
        """The README documents what exists (TLS, /metrics, the web console)
        and says what does not yet (HTTP/2)."""
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        out = subprocess.run([RESTSPY_BIN, "proxy", "--help"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
        self.assertNotIn("metrics listener", readme + out)
        self.assertIn("### TLS", readme)
        self.assertIn("--tls-cert", out)
        self.assertIn("| `GET /metrics` |", readme)
        self.assertIn("### Not supported yet", readme)
        missing = readme.split("### Not supported yet", 1)[1][:400]
        self.assertIn("HTTP/2", missing)
        self.assertNotIn("console", missing)
        self.assertNotIn("TLS", missing)
        self.assertIn("## Web console", readme)
        for view in ("**Live**", "**History**", "**Detail**", "**Replication**",
                     "**Replay reports**", "**Flags**"):
            self.assertIn(view, readme.split("## Web console", 1)[1])

    def commands(self):
        """The commands `restspy --help` lists: ["proxy", ..., "replication
        status", "replication dead", ...]."""
        out = subprocess.run([RESTSPY_BIN, "--help"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
        cmds = []
        for m in re.finditer(r"^  ([a-z]+)(?: ([a-z|]+))?", out.split("commands:", 1)[1], re.M):
            subs = m.group(2).split("|") if m.group(2) and "|" in m.group(2) else [None]
            cmds += [m.group(1) + (" " + sub if sub else "") for sub in subs]
        return cmds

    def help_of(self, cmd):
        r = subprocess.run([RESTSPY_BIN] + cmd.split() + ["--help"], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, "%s --help: %s" % (cmd, r.stderr))
        self.assertIn("usage", r.stdout.lower(), cmd)
        return r.stdout

    def test_every_command_has_help(self):
        cmds = self.commands()
        self.assertGreaterEqual(len(cmds), 10, cmds)
        self.assertIn("replication status", cmds)
        for cmd in cmds:
            with self.subTest(cmd=cmd):
                self.help_of(cmd)

    def test_every_command_line_in_the_docs(self):
        """Each `restspy ...` line in a code block of README.md or docs/
        names a command that exists, and each --flag it uses is one that
        command's --help lists."""
        cmds = self.commands()
        helps = {}
        checked = 0
        for name in ["README.md"] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))):
            with open(os.path.join(ROOT, name), encoding="utf-8") as f:
                text = f.read()
            for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
                for line in re.sub(r"\\\n\s*", " ", block).split("\n"):
                    line = re.split(r"\s#", line)[0]  # a shell comment
                    m = re.search(r"(?:^|[\s/$])restspy ([a-z]+)( [a-z]+)?(?=[\s]|$)(.*)", line)
                    if not m:
                        continue
                    cmd = m.group(1)
                    rest = (m.group(2) or "") + m.group(3)
                    if m.group(2) and cmd + m.group(2) in cmds:
                        cmd, rest = cmd + m.group(2), m.group(3)
                    rest = re.split(r"&&|;|\s&$", rest)[0]
                    with self.subTest(doc=name, line=line.strip()[:80]):
                        self.assertIn(cmd, cmds, "no such command")
                        if cmd not in helps:
                            helps[cmd] = self.help_of(cmd)
                        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rest):
                            self.assertRegex(helps[cmd], r"(?<![\w-])%s(?![\w-])" % flag,
                                             "%s is not an option of restspy %s" % (flag, cmd))
                        checked += 1
        self.assertGreater(checked, 30)


if __name__ == "__main__":
    unittest.main()
