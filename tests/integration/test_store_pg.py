"""The PostgreSQL store (issue 17), against a private PostgreSQL 15
(pgnode.py): a proxy capturing into postgresql://... and `requests`, `show`
and `export` reading the same rows back; the schema created in an empty
database; two proxies writing into one database at once without a lost or
duplicated row (replication on PostgreSQL: test_store_pg_repl.py). Each
test gets a database of its own."""
import json
import os
import subprocess
import tempfile
import threading
import unittest
from http.server import BaseHTTPRequestHandler

import harness
import pgnode


class Echo(BaseHTTPRequestHandler):
    """Answers 200 with the request's body (binary as it came)."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer


class PgStoreTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        pgnode.require()
        cls.node = pgnode.PgNode().start()
        cls.backend = harness.start_backend(Echo)
        cls.dbs = 0

    @classmethod
    def tearDownClass(cls):
        harness.stop_backend(cls.backend)
        cls.node.cleanup()

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="restspy-pgstore-")
        PgStoreTest.dbs += 1
        self.url = self.node.createdb("t%d" % PgStoreTest.dbs)
        self.proxies = []

    def tearDown(self):
        for p in self.proxies:
            p.stop()
            p.check_stopped(self)
        self.tmp.cleanup()

    def proxy(self, name="proxy", args=()):
        d = os.path.join(self.tmp.name, name)
        os.makedirs(d, exist_ok=True)
        p = harness.Proxy(d, self.backend.url, name=name, store=False,
                          args=["--store", self.url] + list(args))
        self.proxies.append(p)
        return p.start()

    def cli(self, *args):
        r = subprocess.run([harness.restspy_bin()] + list(args) + ["--store", self.url],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=harness.clean_env(), timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        self.assertIsNone(harness.sanitizer_report(r.stderr.decode(errors="replace")))
        return r.stdout

    def count(self, sql="SELECT count(*), count(DISTINCT id) FROM requests"):
        db = self.url.rsplit("/", 1)[1]
        return tuple(int(x) for x in self.node.psql(sql, db=db).strip().split("|"))

    def test_capture_then_read_back(self):
        p = self.proxy()
        bodies = [b"", b"hello", bytes(range(256)) * 4, "unicode \u00e9\u4e2d".encode()]
        for i, body in enumerate(bodies):
            r = p.request("POST", "/items/%d?x=%d" % (i, i), body=body,
                          headers={"X-Test": "v%d" % i})
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, body)
        p.request("GET", "/other")
        p.stop()
        p.check_stopped(self)
        self.proxies.remove(p)
        self.assertEqual(self.count(), (5, 5))

        listing = self.cli("requests").decode()
        self.assertIn("5 requests", listing)
        self.assertIn("/items/2", listing)
        self.assertIn("5 requests", listing)
        # The path glob (its literal prefix is a range on the path index).
        only = self.cli("requests", "--path", "/items/*").decode()
        self.assertIn("4 requests", only)

        out = json.loads(self.cli("export", "--har", "-"))
        entries = out["log"]["entries"]
        self.assertEqual(len(entries), 5)
        self.assertEqual([e["request"]["url"].split("/", 3)[3] for e in entries],
                         ["items/0?x=0", "items/1?x=1", "items/2?x=2", "items/3?x=3", "other"])
        lines = self.cli("export", "--jsonl", "-").decode().splitlines()
        self.assertEqual(len(lines), 5)
        rec = json.loads(lines[2])
        ident = rec["id"]
        shown = self.cli("show", ident[-8:]).decode()
        self.assertIn(ident, shown)
        self.assertIn("X-Test: v2", shown)

    def test_schema_created_in_an_empty_database(self):
        db = self.url.rsplit("/", 1)[1]
        self.assertEqual(self.node.psql("SELECT to_regclass('requests') IS NULL", db=db).strip(),
                         "t")
        # Three proxies starting together: one migrates, the others wait on
        # the advisory lock and find version 7.
        ps = [harness.Proxy(os.path.join(self.tmp.name), self.backend.url, name="p%d" % i,
                            store=False, args=["--store", self.url]) for i in range(3)]
        self.proxies.extend(ps)
        threads = [threading.Thread(target=p.start) for p in ps]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for p in ps:
            self.assertTrue(p.running, p.stderr())
        self.assertEqual(self.node.psql("SELECT version FROM restspy_schema", db=db).strip(), "7")
        tables = self.node.psql("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM "
                                "pg_tables WHERE schemaname = 'public'", db=db).strip()
        self.assertEqual(tables, "applied,applying,counters,outbox,receipts,requests,"
                                 "restspy_schema,stuck")
        kinds = self.node.psql("SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY "
                               "column_name) FROM information_schema.columns WHERE table_name = "
                               "'requests' AND column_name IN ('req_headers', 'req_body', "
                               "'started_at')", db=db).strip()
        self.assertEqual(kinds, "req_body:bytea,req_headers:jsonb,started_at:bigint")

    def test_two_proxies_one_database(self):
        a, b = self.proxy("a"), self.proxy("b")
        n = 150

        def load(p, tag):
            for i in range(n):
                r = p.request("POST", "/%s/%d" % (tag, i), body=b"x" * (i % 7))
                self.assertEqual(r.status, 200)

        threads = [threading.Thread(target=load, args=(p, t))
                   for p, t in ((a, "a"), (b, "b"), (a, "a2"), (b, "b2"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for p in (a, b):
            p.stop()
            p.check_stopped(self)
        self.proxies = []
        self.assertEqual(self.count(), (4 * n, 4 * n))
        self.assertEqual(self.count("SELECT count(DISTINCT path), count(*) FILTER (WHERE path "
                                    "LIKE '/a%') FROM requests"), (4 * n, 2 * n))

    def test_bad_url_one_line(self):
        r = subprocess.run([harness.restspy_bin(), "requests", "--store",
                            "postgresql://restspy@127.0.0.1:%d/nosuchdb" % self.node.port],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=harness.clean_env(), timeout=30)
        self.assertEqual(r.returncode, 1)
        err = r.stderr.decode().strip().splitlines()
        self.assertEqual(len(err), 1, err)
        self.assertIn("cannot connect to the PostgreSQL store (database nosuchdb on 127.0.0.1:",
                      err[0])


if __name__ == "__main__":
    unittest.main()
