"""npm json-server as a test backend: one the project did not write, which
numbers what it creates itself (tests/integration/jsonserver, installed by
npm ci from its package-lock.json; `make integration` does it). Used by
test_replay_correlate (ids offset between record and replay) and
test_replication_diverged (ids assigned per site)."""
import json
import os
import shutil
import subprocess

import harness

HERE = os.path.dirname(os.path.abspath(__file__))
JSON_SERVER = os.path.join(HERE, "jsonserver", "node_modules", "json-server", "lib", "cli",
                           "bin.js")


def json_server_or_fail(tc):
    """A missing json-server (or node) fails the test, in CI and out of it:
    never a skip."""
    if not (os.path.exists(JSON_SERVER) and shutil.which("node")):
        tc.fail("npm json-server not installed (%s): run `make integration`, or "
                "cd tests/integration/jsonserver && npm ci" % JSON_SERVER)


class JsonServer(harness.App):
    """json-server on a free port serving db (written to NAME.json); url and
    stop are the sample app's."""

    def __init__(self, tmp, name, db):
        super().__init__(tmp, name)
        self.path = os.path.join(tmp, name + ".json")
        with open(self.path, "w") as f:
            json.dump(db, f)
        self.out = os.path.join(tmp, name + ".out")

    def start(self):
        self.port = harness.free_port()
        out = open(self.out, "ab")
        self.proc = subprocess.Popen(
            ["node", JSON_SERVER, "--host", "127.0.0.1", "--port", str(self.port), "--quiet",
             self.path], cwd=os.path.dirname(self.path), stdin=subprocess.DEVNULL, stdout=out,
            stderr=out)
        out.close()
        if not harness.wait_http(self.port, "/posts", timeout=20, proc=self.proc):
            self.stop()
            raise RuntimeError("json-server did not start:\n" + harness.read_text(self.out))
        return self
