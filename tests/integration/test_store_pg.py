"""The PostgreSQL store (issue 17), against a private PostgreSQL 15
(pgnode.py): a proxy capturing into postgresql://... and `requests`, `show`
and `export` reading the same rows back; the schema created in an empty
database; two proxies writing into one database at once without a lost or
duplicated row (replication on PostgreSQL: test_store_pg_repl.py); PostgreSQL stopped and started again under load (every
answered request stored once, the log lines, the metrics), also with a
queue too small for the outage (store_on_full block: the answers wait;
drop: counted, never stored twice); a store written
by the previous release's schema opened (migrated once, by one of two
proxies starting together, rows intact) and one of a newer schema refused.
Each test gets a database of its own."""
import json
import os
import re
import subprocess
import tempfile
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler

import harness
import pgnode


# The schema of the first release's PostgreSQL store (version 7, with the
# replication claims), frozen here as it ships: never edited with the
# current one, since src/store/pg_schema.c appends its migrations after it.
# PostgreSQL stores begin at version 7, so today the previous release's
# version is 7 itself and opening it must migrate nothing; once pg_schema.c
# adds versions 8 and 9, the same test covers the migrations 7 -> 8 -> 9.
PREVIOUS_VERSION = 7
PREVIOUS_SCHEMA = """
CREATE TABLE restspy_schema (version integer NOT NULL);
INSERT INTO restspy_schema VALUES (7);
CREATE TABLE requests (
 seq bigint GENERATED ALWAYS AS IDENTITY, id text COLLATE "C" PRIMARY KEY, node text,
 started_at bigint, duration_us bigint, upstream_us bigint, client_addr text, method text,
 scheme text, host text, path text COLLATE "C", query text, req_headers jsonb, req_body bytea,
 req_body_size bigint, req_truncated boolean, status integer, resp_headers jsonb,
 resp_body bytea, resp_body_size bigint, resp_truncated boolean, rule text, origin text,
 error text, replication text, req_encoding text, req_body_note text, resp_encoding text,
 resp_body_note text);
CREATE INDEX requests_started_at ON requests(started_at, seq);
CREATE INDEX requests_path ON requests(path);
CREATE TABLE outbox (
 seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, message_id text NOT NULL,
 created_at bigint NOT NULL, timestamp bigint NOT NULL, origin text NOT NULL,
 method text NOT NULL, target text NOT NULL, headers text NOT NULL, content_type text,
 signature text, routing_key text NOT NULL, body bytea NOT NULL, claimed_by text,
 claimed_until bigint NOT NULL DEFAULT 0, claim_seq bigint);
CREATE SEQUENCE outbox_claim_seq;
CREATE INDEX outbox_claimed_by ON outbox(claimed_by, claim_seq);
CREATE TABLE applied (
 pos bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
 message_id text COLLATE "C" PRIMARY KEY, origin text, applied_at bigint NOT NULL,
 status integer, state text);
CREATE INDEX applied_applied_at ON applied(applied_at);
CREATE INDEX applied_origin ON applied(origin, state, applied_at);
CREATE TABLE counters (name text PRIMARY KEY, value bigint NOT NULL DEFAULT 0, text_value text);
CREATE TABLE stuck (
 message_id text PRIMARY KEY, origin text, method text, target text,
 first_failed_at bigint NOT NULL, last_failed_at bigint NOT NULL, attempts bigint NOT NULL,
 last_answer text);
CREATE TABLE receipts (
 message_id text NOT NULL, node text NOT NULL, outcome text NOT NULL, status integer,
 at bigint NOT NULL, PRIMARY KEY (message_id, node));
CREATE TABLE applying (
 message_id text PRIMARY KEY, claimed_by text NOT NULL, claimed_until bigint NOT NULL);
"""


def current_version():
    """PG_SCHEMA_VERSION as src/store/pg_internal.h defines it."""
    with open(os.path.join(harness.REPO, "src", "store", "pg_internal.h")) as f:
        return int(re.search(r"#define PG_SCHEMA_VERSION (\d+)", f.read()).group(1))


class Echo(BaseHTTPRequestHandler):
    """Answers 200 with the request's body (binary as it came)."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        # /status/N answers N (the CLI test's status filters).
        self.send_response(int(self.path.split("/")[2]) if self.path.startswith("/status/")
                           else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer


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

    def start_together(self, names):
        """Proxies on self.url started at the same moment (who migrates?),
        each running once this returns."""
        ps = [harness.Proxy(self.tmp.name, self.backend.url, name=n, store=False,
                            args=["--store", self.url]) for n in names]
        self.proxies.extend(ps)
        threads = [threading.Thread(target=p.start) for p in ps]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for p in ps:
            self.assertTrue(p.running, p.stderr())
        return ps

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
        # the advisory lock and find the current version.
        self.start_together(["p0", "p1", "p2"])
        self.assertEqual(self.node.psql("SELECT version FROM restspy_schema", db=db).strip(),
                         str(current_version()))
        tables = self.node.psql("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM "
                                "pg_tables WHERE schemaname = 'public'", db=db).strip()
        self.assertEqual(tables, "applied,applying,counters,outbox,receipts,requests,"
                                 "restspy_schema,stuck")
        kinds = self.node.psql("SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY "
                               "column_name) FROM information_schema.columns WHERE table_name = "
                               "'requests' AND column_name IN ('req_headers', 'req_body', "
                               "'started_at')", db=db).strip()
        self.assertEqual(kinds, "req_body:bytea,req_headers:jsonb,started_at:bigint")

    def test_store_of_the_previous_release(self):
        """A store the previous release wrote (its schema, rows in it): two
        proxies starting on it together bring it to the current version once
        (one row in restspy_schema), the old rows read back unchanged, and
        new rows go in beside them."""
        db = self.url.rsplit("/", 1)[1]
        self.node.psql(PREVIOUS_SCHEMA, db=db)
        t0 = 1764547200000000  # 2025-12-01, µs
        self.node.psql(
            "INSERT INTO requests (id, node, started_at, duration_us, method, scheme, host, path, "
            "query, req_headers, req_body, req_body_size, req_truncated, status, resp_headers, "
            "resp_body, resp_body_size, resp_truncated) SELECT "
            "'019ad8a0-0000-7000-8000-' || lpad(i::text, 12, '0'), 'old', %d + i, 1000, 'PUT', "
            "'http', 'h', '/old/' || i, '', ('[[\"X-Old\", \"v' || i || '\"]]')::jsonb, "
            "decode('00ff' || lpad(to_hex(i), 2, '0'), 'hex'), 3, false, 201, '[]', "
            "'', 0, false FROM generate_series(1, 30) i" % t0, db=db)
        before = self.node.psql("SELECT md5(string_agg(id || path || req_body::text || "
                                "req_headers::text, ',' ORDER BY id)) FROM requests", db=db)
        ps = self.start_together(["m0", "m1"])
        for p in ps:
            self.assertEqual(p.request("GET", "/new").status, 200)
        self.assertEqual(self.node.psql("SELECT string_agg(version::text, ',') FROM "
                                        "restspy_schema", db=db).strip(),
                         str(current_version()))
        self.assertGreaterEqual(current_version(), PREVIOUS_VERSION)
        # Versions 8 and 9: the origin's answer (and body) of a replicated
        # write, the ledger's outcome and its index of diverged rows (issue 16).
        self.assertEqual(self.node.psql("SELECT string_agg(column_name, ',' ORDER BY column_name) "
                                        "FROM information_schema.columns WHERE table_name = "
                                        "'outbox' AND column_name LIKE 'origin_%'", db=db).strip(),
                         "origin_body,origin_digest,origin_status")
        self.assertEqual(self.node.psql("SELECT count(*) FROM information_schema.columns WHERE "
                                        "table_name = 'applied' AND column_name = 'outcome'",
                                        db=db).strip(), "1")
        self.assertEqual(self.node.psql("SELECT count(*) FROM pg_indexes WHERE indexname = "
                                        "'applied_diverged'", db=db).strip(), "1")
        for p in ps:
            p.stop()
            p.check_stopped(self)
        self.proxies = []
        self.assertEqual(self.node.psql("SELECT md5(string_agg(id || path || req_body::text || "
                                        "req_headers::text, ',' ORDER BY id)) FROM requests "
                                        "WHERE node = 'old'", db=db), before)
        self.assertEqual(self.count(), (32, 32))
        listing = self.cli("requests", "--path", "/old/*").decode()
        self.assertIn("30 requests", listing)
        shown = self.cli("show", "019ad8a0-0000-7000-8000-000000000007").decode()
        self.assertIn("PUT", shown)
        self.assertIn("/old/7", shown)
        self.assertIn("X-Old: v7", shown)

    def test_newer_schema_refused(self):
        db = self.url.rsplit("/", 1)[1]
        self.node.psql(PREVIOUS_SCHEMA + "UPDATE restspy_schema SET version = %d;"
                       % (current_version() + 1), db=db)
        for argv in (["requests"], ["proxy", "--listen", "127.0.0.1:%d" % harness.free_port(),
                                    "--upstream", self.backend.url]):
            r = subprocess.run([harness.restspy_bin()] + argv + ["--store", self.url],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=harness.clean_env(), timeout=30, cwd=self.tmp.name)
            self.assertNotEqual(r.returncode, 0)
            err = r.stderr.decode().strip().splitlines()
            self.assertEqual(len(err), 1, err)
            self.assertIn("has schema version %d, newer than this restspy's (%d): upgrade "
                          "restspy" % (current_version() + 1, current_version()), err[0])
        self.assertEqual(self.node.psql("SELECT version FROM restspy_schema", db=db).strip(),
                         str(current_version() + 1))

    def test_store_missing_a_column_refused(self):
        """A database that says the current version but lost a column (a
        hand edit, a bad restore) would take no row while the proxy answered
        200: the proxy refuses to start, in one line naming what is missing,
        and changes nothing."""
        db = self.url.rsplit("/", 1)[1]
        p = self.proxy()
        p.stop()
        p.check_stopped(self)
        self.proxies = []
        self.node.psql("ALTER TABLE requests DROP COLUMN resp_truncated; "
                       "ALTER TABLE applied DROP COLUMN state", db=db)
        r = subprocess.run([harness.restspy_bin(), "proxy", "--listen",
                            "127.0.0.1:%d" % harness.free_port(), "--upstream", self.backend.url,
                            "--store", self.url],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=harness.clean_env(), timeout=30, cwd=self.tmp.name)
        self.assertNotEqual(r.returncode, 0)
        err = r.stderr.decode().strip().splitlines()
        self.assertEqual(len(err), 1, err)
        self.assertIn("says schema version %d but lacks applied.state, requests.resp_truncated"
                      % current_version(), err[0])
        self.assertEqual(self.node.psql("SELECT count(*) FROM information_schema.columns WHERE "
                                        "table_name = 'requests' AND column_name = "
                                        "'resp_truncated'", db=db).strip(), "0")

    def cli_fails(self, *args):
        r = subprocess.run([harness.restspy_bin()] + list(args) + ["--store", self.url],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=harness.clean_env(), timeout=60)
        return r.returncode, r.stderr.decode(errors="replace").strip().splitlines()

    def test_every_cli_command(self):
        """requests (each filter, --json, --limit), show (whole and short
        ids), export (HAR, JSON lines, curl), import and replay, each on a
        PostgreSQL URL, checked against what was captured."""
        p = self.proxy()
        sent = [("GET", "/api/users/1", b""), ("GET", "/api/users/2", b""),
                ("POST", "/api/users", b'{"name":"ann"}'), ("PUT", "/api/orders/7", b"\x00\xffbin"),
                ("DELETE", "/api/orders/8", b""), ("GET", "/status/404", b""),
                ("POST", "/status/500", b"boom")]
        for method, path, body in sent:
            r = p.request(method, path, body=body or None, headers={"X-Cli": path})
            self.assertEqual(r.status, int(path.split("/")[2]) if path.startswith("/status/")
                             else 200)
        p.stop()
        p.check_stopped(self)
        self.proxies.remove(p)
        # One row from long ago (--since, --until), as another node's.
        db = self.url.rsplit("/", 1)[1]
        self.node.psql("INSERT INTO requests (id, node, started_at, duration_us, method, scheme, "
                       "host, path, query, req_headers, req_body, req_body_size, req_truncated, "
                       "status, resp_headers, resp_body, resp_body_size, resp_truncated, origin) "
                       "VALUES ('01943d8b-8000-7000-8000-000000000001', 'elder', "
                       "1735689600000000, 5, 'GET', 'http', 'h', '/api/users/0', NULL, '[]', '', "
                       "0, false, 200, '[]', '', 0, false, 'imported')", db=db)

        def listed(*args):
            out = self.cli("requests", "--limit", "0", *args).decode().splitlines()
            n = int(out[-1].split()[0])
            self.assertEqual(len(out), n + 2, out)  # the header, the rows, the count
            return out[1:-1]

        self.assertEqual(len(listed()), 8)
        self.assertEqual([l.split()[-1] for l in listed("--method", "post")],
                         ["/api/users", "/status/500"])
        self.assertEqual([l.split()[-1] for l in listed("--status", "4xx")], ["/status/404"])
        self.assertEqual([l.split()[-1] for l in listed("--status", "500-599")], ["/status/500"])
        self.assertEqual([l.split()[-1] for l in listed("--path", "/api/users/*")],
                         ["/api/users/0", "/api/users/1", "/api/users/2"])
        self.assertEqual(len(listed("--path", "/api/**")), 6)
        self.assertEqual(len(listed("--since", "1h")), 7)
        self.assertEqual([l.split()[-1] for l in listed("--until", "2025-06-01T00:00:00Z")],
                         ["/api/users/0"])
        self.assertEqual([l.split()[-1] for l in listed("--origin", "imported")],
                         ["/api/users/0"])
        self.assertEqual(len(listed("--node", "elder")), 1)
        limited = self.cli("requests", "--limit", "2").decode().splitlines()
        self.assertEqual([l.split()[-1] for l in limited[1:-1]], ["/status/404", "/status/500"])
        self.assertIn("2 requests (the newest; more match", limited[-1])
        self.assertEqual(self.cli_fails("requests", "--status", "99x")[0], 2)

        recs = [json.loads(l) for l in self.cli("requests", "--json", "--limit", "0",
                                                "--since", "1h").splitlines()]
        self.assertEqual([(r["method"], r["path"]) for r in recs],
                         [(m, pth) for m, pth, _ in sent])
        put = recs[3]
        # show: the whole id, then the ID column's short form.
        shown = self.cli("show", put["id"]).decode()
        self.assertIn("PUT", shown)
        self.assertIn("/api/orders/7", shown)
        self.assertIn("X-Cli: /api/orders/7", shown)
        short = [l.split()[1] for l in listed("--method", "PUT")][0]
        self.assertTrue(put["id"].endswith(short) or put["id"].startswith(short), short)
        self.assertEqual(self.cli("show", short), self.cli("show", put["id"]))
        rc, err = self.cli_fails("show", "ffffffff-ffff-7fff-bfff-ffffffffffff")
        self.assertEqual(rc, 1)
        self.assertEqual(len(err), 1, err)

        har = json.loads(self.cli("export", "--har", "-", "--since", "1h"))
        self.assertEqual([(e["request"]["method"], e["response"]["status"])
                          for e in har["log"]["entries"]],
                         [(m, int(pth.split("/")[2]) if pth.startswith("/status/") else 200)
                          for m, pth, _ in sent])
        jsonl = self.cli("export", "--jsonl", "-", "--path", "/api/orders/*")
        self.assertEqual([(json.loads(l)["method"], json.loads(l)["path"])
                          for l in jsonl.splitlines()],
                         [("PUT", "/api/orders/7"), ("DELETE", "/api/orders/8")])
        curl = self.cli("export", "--curl", "--target", "http://example.test:8080",
                        "--path", "/api/users").decode()
        self.assertIn("curl", curl)
        self.assertIn("http://example.test:8080/api/users", curl)
        self.assertIn("ann", curl)

        # import into a second database, read back there.
        src = os.path.join(self.tmp.name, "all.jsonl")
        self.cli("export", "--jsonl", src)
        other = self.node.createdb("t%d_import" % PgStoreTest.dbs)
        r = subprocess.run([harness.restspy_bin(), "import", "--jsonl", src, "--store", other],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=harness.clean_env(), timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        odb = other.rsplit("/", 1)[1]
        self.assertEqual(self.node.psql("SELECT count(*) FROM requests", db=odb).strip(), "8")

        # replay from the store against the same echo server: every answer
        # matches its recording.
        report = os.path.join(self.tmp.name, "replay.json")
        out = self.cli("replay", "--target", self.backend.url, "--since", "1h",
                       "--report", "json", report).decode()
        self.assertIn("7 requests: 7 matched, 0 mismatched", out)
        with open(report) as f:
            summary = json.load(f)
        self.assertEqual((summary["counts"]["requests"], summary["counts"]["matched"]), (7, 7),
                         summary["counts"])

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

    def metrics(self, p):
        r = p.admin("GET", "/metrics")
        self.assertEqual(r.status, 200, r)
        return {m.group(1): float(m.group(2)) for m in
                re.finditer(r"(?m)^(restspy_store_\w+|restspy_capture_\w+) (\S+)$",
                            r.body.decode())}

    def restart_under_load(self, args=(), total=2000):
        """A proxy (args) under a paced load of total requests from 4 threads;
        PostgreSQL stopped for 3 s once a fifth were answered, then started
        again. Returns (acked: the X-Load of every request answered 2xx,
        unanswered: how many got no answer, metrics once the queue drained,
        stderr, stored: the X-Load of every stored row, whether
        restspy_store_connected was seen at 0)."""
        p = self.proxy(args=args)
        threads_n = 4
        acked, unanswered, lock = [], [0], threading.Lock()
        next_i = iter(range(total))
        seen_down = False

        def load():
            while True:
                with lock:
                    i = next(next_i, None)
                if i is None:
                    return
                try:
                    r = p.request("GET", "/load/%d" % i, headers={"X-Load": str(i)}, timeout=30)
                except OSError:
                    with lock:
                        unanswered[0] += 1  # not acked, not counted
                    continue
                if 200 <= r.status < 300:
                    with lock:
                        acked.append(i)
                time.sleep(0.01)  # spread the load over the outage

        threads = [threading.Thread(target=load) for _ in range(threads_n)]
        for t in threads:
            t.start()
        deadline = time.time() + 60
        while len(acked) < total // 5 and time.time() < deadline:
            time.sleep(0.02)
        # The admin API reads the store on a connection of its own: opened
        # now, dropped by the restart, and still its first read after it
        # must succeed.
        self.assertEqual(p.admin("GET", "/api/requests?limit=1").status, 200)
        self.node.stop()
        try:
            t_down = time.time()
            while time.time() - t_down < 3:
                seen_down = seen_down or self.metrics(p).get("restspy_store_connected") == 0
                time.sleep(0.1)
        finally:
            self.node.start()
        r = p.admin("GET", "/api/requests?limit=1")
        self.assertEqual(r.status, 200, r.body[:300])
        for t in threads:
            t.join(120)
            self.assertFalse(t.is_alive())
        deadline = time.time() + 30
        m = self.metrics(p)
        while (m["restspy_store_connected"] != 1 or m["restspy_capture_queue_depth"]) and \
                time.time() < deadline:
            time.sleep(0.1)
            m = self.metrics(p)
        p.stop()
        p.check_stopped(self)
        self.proxies.remove(p)
        db = self.url.rsplit("/", 1)[1]
        stored = self.node.psql("SELECT e->>1 FROM requests, jsonb_array_elements(req_headers) e "
                                "WHERE lower(e->>0) = 'x-load'", db=db).split()
        return acked, unanswered[0], m, p.stderr(), stored, seen_down

    def assert_reconnected(self, m, err, seen_down):
        self.assertTrue(seen_down, "restspy_store_connected never showed 0")
        self.assertEqual(m["restspy_store_connected"], 1, m)
        self.assertGreaterEqual(m["restspy_store_reconnects_total"], 1, m)
        self.assertGreater(m["restspy_store_errors_total"], 0, m)
        self.assertEqual(err.count("restspy: store: lost the connection to the PostgreSQL store"),
                         1, err[-3000:])
        self.assertEqual(err.count("restspy: store: reconnected to the PostgreSQL store"), 1,
                         err[-3000:])

    def test_admin_reads_while_the_database_is_down(self):
        """A read the store fails (its server is down) is the server's
        trouble: the admin API answers 503 JSON saying so, not 400; bad
        input still gets 400; /stats says why its outbox figures are null
        (an unreachable broker: the outbox exists all the same); once the
        server is back the same reads answer 200."""
        p = self.proxy(args=["--amqp", "amqp://127.0.0.1:%d" % harness.free_port()])
        self.assertEqual(p.request("GET", "/down/1").status, 200)
        deadline = time.time() + 10
        while self.count()[0] < 1 and time.time() < deadline:
            time.sleep(0.05)
        rid = json.loads(p.admin("GET", "/api/requests?limit=1").body)["requests"][0]["id"]
        self.node.stop()
        try:
            for path in ("/api/requests?limit=1", "/api/requests/" + rid,
                         "/api/requests/" + rid + "/replication", "/api/replication"):
                r = p.admin("GET", path)
                self.assertEqual(r.status, 503, (path, r.body[:300]))
                self.assertIn("cannot read the store", json.loads(r.body)["error"])
            self.assertEqual(p.admin("GET", "/api/requests?limit=x").status, 400)
            repl = p.stats()["replication"]
            self.assertIsNone(repl["outbox_depth"], repl)
            self.assertIn("cannot read the store", repl["store_error"])
        finally:
            self.node.start()
        deadline = time.time() + 20
        r = p.admin("GET", "/api/requests/" + rid)
        while r.status != 200 and time.time() < deadline:
            time.sleep(0.2)
            r = p.admin("GET", "/api/requests/" + rid)
        self.assertEqual(r.status, 200, r.body[:300])
        repl = p.stats()["replication"]
        self.assertNotIn("store_error", repl)
        self.assertEqual(repl["outbox_depth"], 0, repl)

    def test_restart_of_postgresql_mid_load(self):
        """The default queue holds the outage: the proxy keeps answering, its
        writer reconnects by itself, and every request answered 2xx is in the
        table exactly once."""
        acked, unanswered, m, err, stored, seen_down = self.restart_under_load()
        self.assert_reconnected(m, err, seen_down)
        self.assertEqual(m["restspy_capture_dropped_total"], 0, m)
        self.assertEqual(m["restspy_capture_blocked_total"], 0, m)
        self.assertEqual(unanswered, 0)
        self.assertEqual(len(acked), 2000)
        self.assertEqual(len(stored), len(set(stored)), "a request stored twice")
        self.assertEqual(set(acked) - {int(x) for x in stored}, set(),
                         "answered requests missing from the table")

    def test_restart_with_a_full_queue_that_blocks(self):
        """store_queue 50, store_on_full block: once the queue is full the
        answers wait (back-pressure) until the database is back; nothing is
        dropped and every answered request is stored once."""
        acked, unanswered, m, err, stored, seen_down = self.restart_under_load(
            ["--store-queue", "50", "--store-batch", "20", "--store-on-full", "block"], total=800)
        self.assert_reconnected(m, err, seen_down)
        self.assertGreater(m["restspy_capture_blocked_total"], 0, m)
        self.assertEqual(m["restspy_capture_dropped_total"], 0, m)
        self.assertIn("up to 50 records", err)
        self.assertEqual(len(stored), len(set(stored)), "a request stored twice")
        self.assertEqual(set(acked) - {int(x) for x in stored}, set(),
                         "answered requests missing from the table")
        self.assertEqual(len(acked) + unanswered, 800)

    def test_restart_with_a_full_queue_that_drops(self):
        """store_queue 50, store_on_full drop: the proxy keeps answering at
        full speed; what did not fit is dropped and counted, never stored
        twice, and everything else is stored."""
        acked, unanswered, m, err, stored, seen_down = self.restart_under_load(
            ["--store-queue", "50", "--store-batch", "20", "--store-on-full", "drop"], total=800)
        self.assert_reconnected(m, err, seen_down)
        dropped = int(m["restspy_capture_dropped_total"])
        self.assertGreater(dropped, 0, m)
        self.assertIn("then store_on_full=drop", err)
        self.assertEqual(unanswered, 0)
        self.assertEqual(len(stored), len(set(stored)), "a request stored twice")
        self.assertTrue({int(x) for x in stored} <= set(acked))
        self.assertEqual(len(stored) + dropped, len(acked))

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
