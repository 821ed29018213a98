"""The commands that read the store (`restspy requests`, `restspy show`) and
what the proxy does with a store file (issue 9, items 4, 11, 12 and 13):
someone else's SQLite file is described and never silently taken over;
empty results and bad filter values are stated; short ids are unique in
the store and `show` takes any unambiguous prefix or suffix; `show` prints
the decoded body of compressed traffic with its wire coding and notes."""
import base64
import json
import os
import sqlite3
import threading
import unittest
from http.server import ThreadingHTTPServer

import harness
# The module, not its classes: only this module's test cases run here.
import test_codings


class CliCase(unittest.TestCase):
    """A temp dir and a local upstream per class (test_codings': GET
    /users?enc=gzip answers JSON with passwords, gzipped); cli() runs
    restspy and fails on a sanitizer report."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.make_tmpdir(cls.__name__)
        cls.srv = ThreadingHTTPServer(("127.0.0.1", 0), test_codings.Upstream)
        cls.srv.daemon_threads = True
        threading.Thread(target=cls.srv.serve_forever, daemon=True).start()
        cls.upstream = "http://127.0.0.1:%d" % cls.srv.server_address[1]

    @classmethod
    def tearDownClass(cls):
        cls.srv.shutdown()
        cls.srv.server_close()
        harness.remove_tmpdir(cls.tmp)

    def path(self, name):
        return os.path.join(self.tmp, "%s-%s" % (self.id().rsplit(".", 1)[-1], name))

    def cli(self, *args, rc=0):
        r = harness.run_cli(list(args))
        self.assertIsNone(harness.sanitizer_report(r.stderr), r.stderr)
        self.assertEqual(r.returncode, rc, "restspy %s: %s%s" % (" ".join(args), r.stdout,
                                                                   r.stderr))
        if rc:
            self.assertEqual(len(r.stderr.strip().splitlines()), 1,
                             "expected one line on stderr: %r" % r.stderr)
        return r

    def import_records(self, db, records):
        """Stores records (dicts in restspy's JSON lines form) with
        `restspy import`."""
        src = db + ".jsonl"
        with open(src, "w") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        self.cli("import", "--jsonl", src, "--store", "sqlite:" + db)


def foreign_db(path):
    """An SQLite file of someone else's: two tables, a view, a row."""
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);"
                     "CREATE TABLE orders (id INTEGER);"
                     "CREATE VIEW names AS SELECT name FROM users;"
                     "INSERT INTO users (name) VALUES ('ann');")
    db.commit()
    db.close()


def schema_of(path):
    db = sqlite3.connect(path)
    try:
        names = sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master"))
        version = db.execute("PRAGMA user_version").fetchone()[0]
        return names, version
    finally:
        db.close()


class ForeignFile(CliCase):
    """Item 12: a SQLite file that holds other tables."""

    def test_readers_say_what_the_file_holds(self):
        db = self.path("app.db")
        foreign_db(db)
        want = "%s is not a restspy store: it holds tables orders, users; view names" % db
        for args in (["requests"], ["show", "0190abcd"], ["export", "--jsonl", "-"]):
            with self.subTest(args=args):
                r = self.cli(*args, "--store", "sqlite:" + db, rc=1)
                self.assertIn(want, r.stderr)
                self.assertNotIn("empty", r.stderr)
        # An empty SQLite file is still "empty"; a text file is no database.
        empty = self.path("empty.db")
        sqlite3.connect(empty).close()
        r = self.cli("requests", "--store", "sqlite:" + empty, rc=1)
        self.assertIn("the database is empty", r.stderr)
        text = self.path("notes.txt")
        with open(text, "w") as f:
            f.write("just some text, long enough to be read as a header " * 4)
        r = self.cli("requests", "--store", "sqlite:" + text, rc=1)
        self.assertIn("%s is not a restspy store: not an SQLite database" % text, r.stderr)

    def test_proxy_refuses_then_adds_tables_when_asked(self):
        p = harness.Proxy(self.tmp, self.upstream, name="refuse", log=False)
        p.db_path = self.path("refuse.db")  # the --store the harness passes
        foreign_db(p.db_path)
        before = schema_of(p.db_path)
        try:
            with self.assertRaises(harness.ProxyError):
                p.start(timeout=10)
        finally:
            if p.running:
                p.stop()
        self.assertEqual(p.proc.returncode, 1)
        err = p.stderr().strip()
        self.assertIsNone(harness.sanitizer_report(err), err)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("is not a restspy store: it holds tables orders, users; view names", err)
        self.assertIn("--store-init", err)
        self.assertEqual(schema_of(p.db_path), before)

        # Asked: restspy's tables go in beside the user's.
        p = harness.Proxy(self.tmp, self.upstream, name="init", log=False)
        p.db_path = self.path("refuse.db")
        p.args = ["--store-init"]
        p.start()
        try:
            self.assertEqual(p.request("GET", "/users?enc=gzip").status, 200)
            p.wait_rows(1)
        finally:
            p.check_stopped(self)
        names, version = schema_of(p.db_path)
        self.assertGreater(version, 0)
        for t in ("users", "orders", "names", "requests"):
            self.assertIn(t, names)
        db = sqlite3.connect(p.db_path)
        self.assertEqual(db.execute("SELECT name FROM users").fetchall(), [("ann",)])
        db.close()
        r = self.cli("requests", "--store", "sqlite:" + p.db_path)
        self.assertIn("/users?enc=gzip", r.stdout)

    def test_store_init_from_config_and_environment(self):
        for how in ("config", "env"):
            with self.subTest(how=how):
                db = self.path(how + ".db")
                foreign_db(db)
                src = db + ".jsonl"
                with open(src, "w") as f:
                    f.write(json.dumps({"method": "GET", "path": "/imp"}) + "\n")
                args = ["import", "--jsonl", src, "--store", "sqlite:" + db]
                r = harness.run_cli(args)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn("store_init = on", r.stderr)
                env = None
                if how == "config":
                    conf = db + ".ini"
                    with open(conf, "w") as f:
                        f.write("store_init = on\n")
                    args += ["--config", conf]
                else:
                    env = {"RESTSPY_STORE_INIT": "on"}
                r = harness.run_cli(args, env=env)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertIn("imported 1 request", r.stdout)


def same_ms_ids(n, seed):
    """n UUIDv7-shaped ids of one millisecond (as a busy proxy makes them):
    equal first 13 characters, random ends."""
    import random
    rnd = random.Random(seed)
    ids = set()
    while len(ids) < n:
        ids.add("01938a2b-1c3d-7%03x-%04x-%012x" % (rnd.getrandbits(12),
                                                    0x8000 | rnd.getrandbits(14),
                                                    rnd.getrandbits(48)))
    return sorted(ids)


def table_rows(out):
    """The rows of `restspy requests`' table as lists of columns (between
    the header and the count)."""
    lines = [ln for ln in out.splitlines() if ln.strip()]
    return [ln.split() for ln in lines[1:-1]]


class ImportedStore(CliCase):
    """A store of 300 requests of one millisecond (GET /item/N, 200),
    imported."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.db = os.path.join(cls.tmp, "ids.db")
        cls.ids = same_ms_ids(300, 13)
        src = cls.db + ".jsonl"
        with open(src, "w") as f:
            for i, rid in enumerate(cls.ids):
                f.write(json.dumps({"id": rid, "started_at": 1733300000000000 + i,
                                    "method": "GET", "path": "/item/%d" % i,
                                    "status": 200}) + "\n")
        r = harness.run_cli(["import", "--jsonl", src, "--store", "sqlite:" + cls.db])
        assert r.returncode == 0, r.stderr


class ShortIds(ImportedStore):
    """Item 13: ids are shown and taken in a short form unique in the store."""

    def test_list_shows_unique_ends_that_show_takes(self):
        r = self.cli("requests", "--store", "sqlite:" + self.db, "--limit", "0")
        rows = table_rows(r.stdout)
        self.assertEqual(len(rows), len(self.ids))
        shorts = [row[2] for row in rows]  # date, time, id, ...
        width = len(shorts[0])
        self.assertTrue(6 <= width <= 9, shorts[:5])
        self.assertEqual({len(x) for x in shorts}, {width})
        by_path = {row[-1]: row[2] for row in rows}
        for i in (0, 1, 150, 299):
            rid, short = self.ids[i], by_path["/item/%d" % i]
            self.assertTrue(rid.endswith(short))
            r = self.cli("show", short, "--store", "sqlite:" + self.db, "--json")
            self.assertEqual(json.loads(r.stdout)["id"], rid)
        # The same ends select for export (and replay) with --id.
        r = self.cli("export", "--jsonl", "-", "--store", "sqlite:" + self.db,
                     "--id", by_path["/item/7"], "--id", self.ids[8][:18].upper())
        self.assertEqual([json.loads(x)["id"] for x in r.stdout.splitlines()],
                         self.ids[7:9])

    def test_ambiguous_id_lists_candidates(self):
        r = self.cli("show", self.ids[0][:8], "--store", "sqlite:" + self.db, rc=1)
        self.assertIn("id %s is ambiguous: it matches 300 requests (%s, %s, %s, %s and 296 more)"
                      % ((self.ids[0][:8],) + tuple(self.ids[:4])), r.stderr)
        r = self.cli("show", "abc", "--store", "sqlite:" + self.db, rc=1)
        self.assertIn("too short", r.stderr)
        r = self.cli("show", "zzzzzz", "--store", "sqlite:" + self.db, rc=1)
        self.assertIn("no request with id zzzzzz", r.stderr)


class Listing(ImportedStore):
    """Item 11: an empty result is stated; a filter value no request can
    have is refused (requests, export and replay share the filters)."""

    def test_empty_result_prints_header_and_count(self):
        store = "sqlite:" + self.db
        r = self.cli("requests", "--store", store, "--path", "/nothing/**")
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 2, r.stdout)
        self.assertEqual(lines[0].split(), ["TIME", "ID", "METHOD", "STATUS", "DURATION", "PATH"])
        self.assertEqual(lines[1], "0 requests")
        self.assertEqual(r.stderr, "")
        # JSON lines stay JSON lines: nothing for nothing.
        r = self.cli("requests", "--store", store, "--status", "404", "--json")
        self.assertEqual(r.stdout, "")
        # The count, and whether the limit left some out.
        r = self.cli("requests", "--store", store, "--limit", "3")
        self.assertEqual(r.stdout.splitlines()[-1],
                         "3 requests (the newest; more match: --limit 0 lists all)")
        self.assertEqual(len(table_rows(r.stdout)), 3)
        r = self.cli("requests", "--store", store, "--path", "/item/7")
        self.assertEqual(r.stdout.splitlines()[-1], "1 request")
        r = self.cli("requests", "--store", store, "--limit", "300")
        self.assertEqual(r.stdout.splitlines()[-1], "300 requests")

    def test_bad_filter_values_refused(self):
        store = "sqlite:" + self.db
        bad = [("--status", "600"), ("--status", "6xx"), ("--status", "0xx"),
               ("--status", "099"), ("--status", "200-600"), ("--status", "300-200"),
               ("--origin", "foo"), ("--origin", ""), ("--origin", "Local"),
               ("--method", ""), ("--method", "G T"), ("--path", "users"), ("--path", ""),
               ("--node", "a b"), ("--node", ""), ("--replication", "same"),
               ("--replication", ""), ("--replication", "diverged", "--replication", "diverged"),
               ("--since", "2026-02-30"),
               ("--until", "2025-13-01"), ("--since", "2025-04-31T10:00:00Z"),
               ("--since", "1h", "--until", "2h"),
               ("--since", "2026-01-02", "--until", "2026-01-02"),
               ("--method", "GET", "--method", "POST"), ("--status", "2xx", "--status", "404"),
               ("--limit", "-1"), ("--limit", "1x"), ("--limit", "5", "--limit", "6")]
        for args in bad:
            for cmd in (["requests"], ["export", "--jsonl", "-"]):
                with self.subTest(cmd=cmd[0], args=args):
                    r = self.cli(*cmd, "--store", store, *args, rc=2)
                    self.assertEqual(r.stdout, "")
                    self.assertIn(args[0], r.stderr)
        r = self.cli("replay", "--store", store, "--target", "http://127.0.0.1:9",
                     "--status", "600", rc=2)
        self.assertIn("--status", r.stderr)
        # What can match is still taken.
        good = [("--status", "5xx"), ("--status", "599"), ("--status", "100-199"),
                ("--status", "200"), ("--origin", "imported"), ("--origin", "local"),
                ("--node", "a-b_1"), ("--since", "2024-02-29"), ("--method", "get"),
                ("--method", "PROPFIND"), ("--path", "*"), ("--path", "/item/**"),
                ("--since", "2h", "--until", "1h"), ("--replication", "diverged")]
        for args in good:
            with self.subTest(args=args):
                self.cli("requests", "--store", store, *args)
        r = self.cli("requests", "--store", store, "--status", "200-299", "--origin",
                     "imported", "--method", "GET", "--path", "/item/*", "--limit", "0")
        self.assertEqual(r.stdout.splitlines()[-1], "300 requests")


class ShowBodies(CliCase):
    """Item 4 (show): compressed traffic is shown decoded, with its wire
    coding, and a body that could not be decoded says why."""

    def test_compressed_response_through_the_proxy(self):
        p = harness.Proxy(self.tmp, self.upstream, name="show", log=False)
        p.db_path = self.path("show.db")
        p.start()
        try:
            gz = p.request("GET", "/users?enc=gzip", headers=[("Accept-Encoding", "gzip")])
            self.assertEqual(gz.header("Content-Encoding"), "gzip")
            zs = p.request("GET", "/zstd", headers=[("Accept-Encoding", "zstd")])
            p.wait_rows(2)
        finally:
            p.check_stopped(self)
        store = "sqlite:" + p.db_path
        out = self.cli("show", gz.header("X-Request-Id"), "--store", store).stdout
        resp = out.split("--- response ---", 1)[1]
        self.assertIn("(decoded from gzip, %d bytes on the wire)\n[\n  {\n    \"user\": \"u0\","
                      % len(gz.body), resp)
        self.assertIn('"password": "[redacted]"', resp)
        self.assertNotIn("binary data", out)
        self.assertNotIn("truncated", out)
        out = self.cli("show", zs.header("X-Request-Id"), "--store", store).stdout
        self.assertIn("(%d bytes, Content-Encoding zstd, not stored: dropped: unsupported "
                      "content coding 'zstd')" % len(zs.body), out)

    def test_undecoded_and_truncated_bodies(self):
        db = self.path("notes.db")
        raw = b"not gzip at all \x00\x01\x02"
        ids = same_ms_ids(2, 4)
        self.import_records(db, [
            {"id": ids[0], "method": "GET", "path": "/raw", "status": 200,
             "resp_headers": [["Content-Encoding", "gzip"]],
             "resp_body_b64": base64.b64encode(raw).decode(),
             "resp_encoding": "gzip", "resp_body_note": "undecoded: gzip: incorrect header check"},
            {"id": ids[1], "method": "POST", "path": "/big", "status": 201,
             "req_headers": [["Content-Encoding", "br"]], "req_body": "x" * 100,
             "req_body_size": 37, "req_truncated": True, "req_encoding": "br"},
        ])
        out = self.cli("show", ids[0], "--store", "sqlite:" + db).stdout
        self.assertIn("(undecoded: gzip: incorrect header check; shown as received, "
                      "Content-Encoding gzip, %d bytes on the wire)\n(%d bytes of binary data, "
                      "base64:)" % (len(raw), len(raw)), out)
        out = self.cli("show", ids[1], "--store", "sqlite:" + db).stdout
        req = out.split("--- request ---", 1)[1].split("--- response ---")[0]
        self.assertIn("(decoded from br, 37 bytes on the wire)\n" + "x" * 100 + "\n"
                      "(truncated: the first 100 bytes of the decoded body)", req)


if __name__ == "__main__":
    unittest.main()
