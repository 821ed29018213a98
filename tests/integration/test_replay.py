"""Replay (issue 4): recorded traffic as a repeatable test suite.

The module records once (setUpModule): sitemon app A with restspy in front,
a realistic mix of API calls (creates, lists, details, metrics, a patch, 404s,
a delete), then restspy is stopped (SIGTERM flushes the store). A second
small store holds requests whose secrets were redacted at capture.

Replaying writes: the recorded writes cannot be replayed on A itself (the
sites already exist: every create would answer 400), and replaying only the
GETs against A would compare reads taken at the time of the recording with
A's final state (the first list was empty, gamma was deleted later...). So a
copy of A's database is taken right after A started, before any traffic,
and every replay that includes writes goes to a fresh app started from that
copy, with --ordered so that each write lands before the reads that saw it.
The target's state then matches the recording's request by request, and the
only natural difference is updated_at (set by the server at write time).

The "changed build" is the same app with SITEMON_VARIANT=1 (see
examples/sitemon/README.md): the site representation renames "url" to
"address" and adds "generated_at" (now, microseconds); nothing else changes.
"""
import base64
import json
import os
import re
import socket
import subprocess
import threading
import time
import unittest
import uuid
import xml.dom.minidom

import harness

VARIANT = {"SITEMON_VARIANT": "1"}
REPLAY_TIMEOUT = "10s"
IGNORE_UPDATED = ("--ignore", "$..updated_at")

M1, M2, M3 = (str(uuid.UUID(int=i + 0x11111111111141118111111111111111)) for i in range(3))
MISSING_METRIC = "00000000-0000-4000-8000-00000000dead"

SITES = {
    "alpha": {"slug": "alpha", "name": "Alpha", "url": "https://alpha.test/", "status": "up"},
    "beta": {"slug": "beta", "name": "Beta", "url": "https://beta.test/status", "status": "up"},
    "gamma": {"slug": "gamma", "name": "Gamma", "url": "https://gamma.test/", "status": "degraded"},
}

# (label, method, target, JSON body or None, expected status). Sent in this
# order through restspy; the labels name the recorded rows.
TRAFFIC = [
    ("list-empty", "GET", "/api/sites/", None, 200),
    ("create-alpha", "POST", "/api/sites/", SITES["alpha"], 201),
    ("create-beta", "POST", "/api/sites/", SITES["beta"], 201),
    ("create-gamma", "POST", "/api/sites/", SITES["gamma"], 201),
    ("list-3", "GET", "/api/sites/", None, 200),
    ("get-alpha", "GET", "/api/sites/alpha/", None, 200),
    ("metric-1", "POST", "/api/sites/alpha/metrics/",
     {"id": M1, "name": "cpu", "value": 0.5, "recorded_at": "2026-01-02T03:04:05Z"}, 201),
    ("metric-2", "POST", "/api/sites/alpha/metrics/",
     {"id": M2, "name": "latency_ms", "value": 120, "recorded_at": "2026-01-02T03:04:06Z"}, 201),
    ("metric-3", "POST", "/api/sites/beta/metrics/",
     {"id": M3, "name": "cpu", "value": 0.25, "recorded_at": "2026-01-02T03:04:07Z"}, 201),
    ("metrics-alpha", "GET", "/api/sites/alpha/metrics/", None, 200),
    ("metrics-alpha-cpu", "GET", "/api/sites/alpha/metrics/?name=cpu", None, 200),
    ("get-metric-1", "GET", "/api/metrics/%s/" % M1, None, 200),
    ("patch-metric-2", "PATCH", "/api/metrics/%s/" % M2, {"value": 99.5}, 200),
    ("patch-beta", "PATCH", "/api/sites/beta/", {"status": "down"}, 200),
    ("list-down", "GET", "/api/sites/?status=down", None, 200),
    ("get-missing", "GET", "/api/sites/nope/", None, 404),
    ("get-missing-metric", "GET", "/api/metrics/%s/" % MISSING_METRIC, None, 404),
    ("delete-gamma", "DELETE", "/api/sites/gamma/", None, 204),
    ("get-gamma-gone", "GET", "/api/sites/gamma/", None, 404),
    ("list-final", "GET", "/api/sites/", None, 200),
    ("get-beta", "GET", "/api/sites/beta/", None, 200),
]

SUMMARY_RE = re.compile(r"^(\d+) requests?: (\d+) matched, (\d+) mismatched, (\d+) errors?, "
                        r"(\d+) not replayable")
MISMATCH_RE = re.compile(r"^MISMATCH (\S+) (\S+) \(id ([^,)]+)(?:, loop (\d+))?\):\s*$")


# ---------------------------------------------------------------- fixture


class Recording:
    """What setUpModule recorded (module global REC)."""
    tmp = None
    app = None          # app A, left in the recording's final state
    pre_db = None       # A's database before any traffic
    store = None        # "sqlite:PATH" of the main recording
    store_path = None
    rows = None         # its rows, in recorded order
    ids = None          # label -> record id
    extras_store = None  # the redacted requests
    extras_rows = None
    extras_ids = None
    counter = 0


REC = Recording()


def setUpModule():
    REC.tmp = harness.make_tmpdir("replay")
    try:
        _record()
    except Exception:
        tearDownModule()
        raise


def tearDownModule():
    if REC.app is not None:
        REC.app.stop()
    if REC.tmp:
        harness.remove_tmpdir(REC.tmp)


def _record():
    REC.app = harness.App(REC.tmp, "a").start()
    # The app is idle and migrated: its database is the state every replay
    # target starts from.
    REC.pre_db = os.path.join(REC.tmp, "pre-traffic.db")
    harness.copy_db(REC.app.db_path, REC.pre_db)

    rec_dir = os.path.join(REC.tmp, "rec")
    os.mkdir(rec_dir)
    proxy = harness.Proxy(rec_dir, REC.app.url, log=False).start()
    try:
        for label, method, target, body, status in TRAFFIC:
            r = proxy.request(method, target, body=body)
            if r.status != status:
                raise AssertionError("recording %s: %s %s answered %s, expected %s: %r"
                                     % (label, method, target, r.status, status, r.body))
    finally:
        proxy.check_stopped()
    REC.store_path = proxy.db_path
    REC.store = "sqlite:" + proxy.db_path
    REC.rows = harness.rows(proxy.db_path)
    got = [(r["method"], target_of(r)) for r in REC.rows]
    want = [(m, t) for _, m, t, _, _ in TRAFFIC]
    if got != want:
        raise AssertionError("recorded rows differ from the traffic sent:\n%r\n%r" % (got, want))
    REC.ids = {t[0]: r["id"] for t, r in zip(TRAFFIC, REC.rows)}

    # Requests carrying secrets, recorded redacted (default redaction).
    ex_dir = os.path.join(REC.tmp, "extras")
    os.mkdir(ex_dir)
    proxy = harness.Proxy(ex_dir, REC.app.url, log=False).start()
    try:
        sent = [
            ("auth", "GET", "/api/status/200/", None,
             {"Authorization": "Bearer SECRET-replay-token-31337"}, 200),
            ("secret-body", "POST", "/api/status/201/",
             {"name": "probe", "password": "SECRET-replay-pw-4242"}, None, 201),
            ("plain", "GET", "/api/status/202/", None, None, 202),
        ]
        for label, method, target, body, headers, status in sent:
            r = proxy.request(method, target, body=body, headers=headers)
            if r.status != status:
                raise AssertionError("recording %s answered %s: %r" % (label, r.status, r.body))
    finally:
        proxy.check_stopped()
    REC.extras_store = "sqlite:" + proxy.db_path
    REC.extras_rows = harness.rows(proxy.db_path)
    if len(REC.extras_rows) != len(sent):
        raise AssertionError("extras store has %d rows" % len(REC.extras_rows))
    REC.extras_ids = {s[0]: r["id"] for s, r in zip(sent, REC.extras_rows)}


def target_of(row):
    return row["path"] + ("?" + row["query"] if row["query"] is not None else "")


def row_by_id(rid, rows=None):
    for r in rows if rows is not None else REC.rows:
        if r["id"] == rid:
            return r
    raise KeyError(rid)


def body_json(row):
    b = harness.as_bytes(row["resp_body"])
    return json.loads(b.decode("utf-8")) if b else None


def is_site(v):
    return isinstance(v, dict) and "url" in v and "slug" in v


def variant_paths(row):
    """The JSON paths where the variant's answer to row differs from the
    recorded one (updated_at aside), or None when it does not differ."""
    if row["status"] not in (200, 201) or "/metrics" in row["path"] or \
            not row["path"].startswith("/api/sites/"):
        return None
    doc = body_json(row)
    if is_site(doc):
        return {"$.url", "$.address", "$.generated_at"}
    if isinstance(doc, list) and doc and all(is_site(x) for x in doc):
        return {"$[%d].%s" % (i, k) for i in range(len(doc))
                for k in ("url", "address", "generated_at")}
    return None


def expected_variant_mismatches():
    out = {}
    for r in REC.rows:
        p = variant_paths(r)
        if p:
            out[r["id"]] = p
    return out


def fresh_apps(tc, *specs):
    """Starts one sample app per spec, in parallel: True for the variant
    (SITEMON_VARIANT=1), False for the normal app, or (that, database) to
    start from a copy of another database than the pre-traffic one. The
    apps stop at the end of the test."""
    apps = []
    for spec in specs:
        v, db = spec if isinstance(spec, tuple) else (spec, REC.pre_db)
        REC.counter += 1
        apps.append(harness.App(REC.tmp, "t%d%s" % (REC.counter, "v" if v else ""),
                                env=VARIANT if v else None, db_from=db))
    errors = []

    def start(a):
        try:
            a.start()
        except Exception as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=start, args=(a,)) for a in apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a in apps:
        tc.addCleanup(a.stop)
    if errors:
        raise errors[0]
    return apps


def tmpfile(name):
    REC.counter += 1
    return os.path.join(REC.tmp, "%d-%s" % (REC.counter, name))


# ------------------------------------------------------------ running it


class Summary:
    """The readable summary of a replay, parsed."""

    def __init__(self, text):
        self.text = text
        self.total = None
        self.mismatches = []  # dicts: method, path, id, loop, diffs (lines)
        cur = None
        for line in text.split("\n"):
            m = SUMMARY_RE.match(line)
            if m and self.total is None:
                (self.total, self.matched, self.mismatched, self.errors,
                 self.unreplayable) = (int(x) for x in m.groups())
                continue
            m = MISMATCH_RE.match(line)
            if m:
                cur = {"method": m.group(1), "path": m.group(2), "id": m.group(3),
                       "loop": m.group(4), "diffs": []}
                self.mismatches.append(cur)
                continue
            if cur is not None and line.startswith("    "):
                cur["diffs"].append(line.strip())
            else:
                cur = None

    def counts(self):
        return (self.total, self.matched, self.mismatched, self.errors, self.unreplayable)


def restspy(args, timeout=60.0):
    return harness.run_cli(list(args), timeout=timeout)


def report_counts(doc):
    c = doc["counts"]
    return (c["requests"], c["matched"], c["mismatched"], c["errors"], c["unreplayable"])


class ReplayCase(unittest.TestCase):
    maxDiff = None

    def replay(self, *args, expect=None, timeout=60.0):
        """Runs `restspy replay ARGS`; checks the exit code (expect) and
        that the summary parses. Returns (CompletedProcess, Summary)."""
        p = restspy(["replay"] + list(args), timeout=timeout)
        where = "restspy replay %s\nexit %s\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(args), p.returncode, p.stdout[-6000:], p.stderr[-3000:])
        s = Summary(p.stdout)
        if expect is not None:
            self.assertEqual(p.returncode, expect, where)
        self.assertIsNotNone(s.total, "no summary line\n" + where)
        m = harness.sanitizer_report(p.stderr)
        self.assertIsNone(m, "sanitizer report in stderr\n" + where)
        s.where = where
        return p, s

    def cli_ok(self, args, timeout=60.0):
        """Runs restspy ARGS; fails unless it exits 0 without a sanitizer
        report."""
        p = restspy(args, timeout=timeout)
        where = "restspy %s\nexit %s\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(args), p.returncode, p.stdout[-3000:], p.stderr[-3000:])
        self.assertEqual(p.returncode, 0, where)
        self.assertIsNone(harness.sanitizer_report(p.stderr), where)
        return p

    def replay_store(self, app, *args, expect=None, store=None):
        return self.replay("--store", store or REC.store, "--target", app.url, "--ordered",
                           "--timeout", REPLAY_TIMEOUT, *args, expect=expect)

    def read_json_report(self, path):
        with open(path, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
        self.assertIsInstance(doc.get("results"), list, doc)
        return doc

    def mismatch_map(self, doc):
        """id -> set of diff paths, over the mismatch results of a JSON
        report."""
        out = {}
        for r in doc["results"]:
            if r["outcome"] == "mismatch":
                out[r["id"]] = {d["path"] for d in r.get("diffs", [])}
        return out


# ----------------------------------------------------------------- tests


class Recorded(unittest.TestCase):
    def test_fixture(self):
        """The recording itself: every request with its response, nothing
        truncated; secrets redacted in the extras store."""
        self.assertEqual(len(REC.rows), len(TRAFFIC))
        for (label, _, _, _, status), r in zip(TRAFFIC, REC.rows):
            self.assertEqual(r["status"], status, label)
            self.assertEqual(r["origin"], "local", label)
            self.assertEqual(r["req_truncated"], 0, label)
            self.assertEqual(r["resp_truncated"], 0, label)
        self.assertEqual(len(expected_variant_mismatches()), 9)
        auth = row_by_id(REC.extras_ids["auth"], REC.extras_rows)
        self.assertIn(("Authorization", "[redacted]"), harness.headers_of(auth["req_headers"]))
        body = row_by_id(REC.extras_ids["secret-body"], REC.extras_rows)
        self.assertIn(b"[redacted]", harness.as_bytes(body["req_body"]))
        self.assertNotIn(b"SECRET", harness.as_bytes(body["req_body"]))


class ReplaySameApp(ReplayCase):
    """Replaying the recording against the same app (same starting state):
    everything matches once updated_at is ignored."""

    def test_all_match_with_ignore(self):
        app, app2, app3 = fresh_apps(self, False, False, False)
        n = len(TRAFFIC)
        report = tmpfile("same.json")
        _, s = self.replay_store(app, *IGNORE_UPDATED, "--compare-header", "Content-Type",
                                 "--report", "json", report, expect=0)
        self.assertEqual(s.counts(), (n, n, 0, 0, 0), s.where)
        self.assertEqual(s.mismatches, [])
        doc = self.read_json_report(report)
        self.assertEqual(report_counts(doc), (n, n, 0, 0, 0))
        self.assertEqual(sorted(r["id"] for r in doc["results"]), sorted(REC.ids.values()))
        self.assertEqual({r["outcome"] for r in doc["results"]}, {"match"})

        # A regex rule instead: two differing timestamps are equal.
        _, s = self.replay_store(app2, "--ignore-regex", r"^\d{4}-\d\d-\d\dT[0-9:.]+Z$",
                                 expect=0)
        self.assertEqual(s.counts(), (n, n, 0, 0, 0), s.where)

        # Without a rule, updated_at is the only difference, and only in
        # answers that carry a site written during this replay.
        report = tmpfile("same-noignore.json")
        _, s = self.replay_store(app3, "--report", "json", report, expect=1)
        doc = self.read_json_report(report)
        mm = self.mismatch_map(doc)
        self.assertTrue(mm, s.where)
        self.assertEqual(s.mismatched, len(mm))
        for rid, paths in mm.items():
            self.assertIn(rid, expected_variant_mismatches(), row_by_id(rid)["path"])
            for p in paths:
                self.assertTrue(p.endswith(".updated_at"), (p, s.where))


class ReplayVariant(ReplayCase):
    """Replaying against the changed build (SITEMON_VARIANT=1)."""

    def test_report_names_exactly_the_changed_route(self):
        (app,) = fresh_apps(self, True)
        report = tmpfile("variant.json")
        _, s = self.replay_store(app, *IGNORE_UPDATED, "--report", "json", report, expect=1)
        want = expected_variant_mismatches()
        n = len(TRAFFIC)
        self.assertEqual(s.counts(), (n, n - len(want), len(want), 0, 0), s.where)

        # JSON report: exactly those requests, exactly those paths.
        doc = self.read_json_report(report)
        self.assertEqual(self.mismatch_map(doc), want)
        for r in doc["results"]:
            row = row_by_id(r["id"])
            self.assertEqual((r["method"], r["path"]), (row["method"], row["path"]))
            if r["outcome"] != "mismatch":
                self.assertEqual(r["outcome"], "match", r)
                continue
            body = body_json(row)
            sites = body if isinstance(body, list) else [body]
            prefix = "$" if isinstance(body, dict) else None
            for d in r["diffs"]:
                if prefix is None:
                    i = int(re.match(r"^\$\[(\d+)\]\.", d["path"]).group(1))
                    site, base = sites[i], "$[%d]" % i
                else:
                    site, base = sites[0], "$"
                if d["path"] == base + ".url":
                    self.assertEqual(json.loads(d["expected"]), site["url"])
                    self.assertIsNone(d["actual"])
                elif d["path"] == base + ".address":
                    self.assertIsNone(d["expected"])
                    self.assertEqual(json.loads(d["actual"]), site["url"])
                else:
                    self.assertEqual(d["path"], base + ".generated_at")
                    self.assertIsNone(d["expected"])
                    self.assertRegex(json.loads(d["actual"]), r"^\d{4}-\d\d-\d\dT[0-9:]+\.\d{6}Z$")

        # The readable summary names the same requests, with the diff lines.
        listed = {m["id"]: m for m in s.mismatches}
        self.assertTrue(set(listed) <= set(want), s.where)
        if "more (see --report json)" not in s.text:
            self.assertEqual(set(listed), set(want), s.where)
        alpha = listed.get(REC.ids["get-alpha"])
        self.assertIsNotNone(alpha, s.where)
        self.assertEqual((alpha["method"], alpha["path"]), ("GET", "/api/sites/alpha/"))
        self.assertIn('$.url: "https://alpha.test/" -> (absent)', alpha["diffs"], s.where)
        self.assertIn('$.address: (absent) -> "https://alpha.test/"', alpha["diffs"], s.where)
        self.assertTrue(any(d.startswith("$.generated_at: (absent) -> ") for d in alpha["diffs"]),
                        s.where)
        lst = listed.get(REC.ids["list-final"])
        if lst is not None:
            self.assertIn('$[1].url: "https://beta.test/status" -> (absent)', lst["diffs"],
                          s.where)
        for m in s.mismatches:
            self.assertNotIn("/metrics", m["path"])
            self.assertFalse(any("updated_at" in d for d in m["diffs"]), m)

    def test_ignore_rules_exit_0(self):
        a1, a2 = fresh_apps(self, True, True)
        n = len(TRAFFIC)
        _, s = self.replay_store(a1, *IGNORE_UPDATED, "--ignore", "$..url", "--ignore",
                                 "$..address", "--ignore", "$..generated_at", expect=0)
        self.assertEqual(s.counts(), (n, n, 0, 0, 0), s.where)

        # The same rules from a noise file, with a comment and an indexed
        # wildcard form.
        noise = tmpfile("noise.txt")
        with open(noise, "w") as f:
            f.write("# release 2.0 renamed url to address\n"
                    "$..updated_at\n$.url\n$[*].url\n$.address\n$[*].address\n\n"
                    "$..generated_at\n")
        _, s = self.replay_store(a2, "--noise", noise, expect=0)
        self.assertEqual(s.counts(), (n, n, 0, 0, 0), s.where)

    def test_learn_noise_finds_the_timestamp(self):
        # The learner: a variant holding the recording's final state (a copy
        # of A's database now), where two answers to the same GET differ in
        # generated_at only. --method GET: replaying writes twice would
        # "learn" the second create's 400.
        final_db = tmpfile("final.db")
        harness.copy_db(REC.app.db_path, final_db)
        learner, app = fresh_apps(self, (True, final_db), True)
        learned = tmpfile("learned.noise")
        p = self.cli_ok(["replay", "--store", REC.store, "--method", "GET", "--target",
                         learner.url, "--timeout", REPLAY_TIMEOUT, "--learn-noise", learned])
        with open(learned) as f:
            rules = [ln.strip() for ln in f if ln.strip() and not ln.strip().startswith("#")]
        self.assertTrue(rules, "no rule learned\n" + p.stdout + p.stderr)
        self.assertTrue(any("generated_at" in r and "[*]" in r for r in rules), rules)
        self.assertTrue(any("generated_at" in r and "[" not in r for r in rules), rules)
        for r in rules:
            if r.startswith("header:"):
                continue
            for word in ("url", "address", "updated_at", "slug", "name", "value"):
                self.assertNotIn(word, r, "learned rule %r" % r)

        # The learned file makes the next comparison show the real change only.
        report = tmpfile("learned.json")
        _, s = self.replay_store(app, "--noise", learned, *IGNORE_UPDATED, "--report", "json",
                                 report, expect=1)
        want = expected_variant_mismatches()
        doc = self.read_json_report(report)
        mm = self.mismatch_map(doc)
        self.assertEqual(set(mm), set(want), s.where)
        for rid, paths in mm.items():
            self.assertEqual(paths, {p for p in want[rid] if not p.endswith("generated_at")})


class HarRoundTrip(ReplayCase):
    """export --har, validate, import into a new store, replay from every
    source: the same outcomes."""

    def check_har(self, doc):
        def num(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool)

        def isint(v):
            return isinstance(v, int) and not isinstance(v, bool)

        def name_values(lst, where):
            self.assertIsInstance(lst, list, where)
            for nv in lst:
                self.assertIsInstance(nv, dict, where)
                self.assertIsInstance(nv.get("name"), str, where)
                self.assertIsInstance(nv.get("value"), str, where)

        self.assertIsInstance(doc, dict)
        log = doc.get("log")
        self.assertIsInstance(log, dict)
        self.assertIsInstance(log.get("version"), str)
        self.assertIn(log["version"], ("1.2", "1.1"))
        creator = log.get("creator")
        self.assertIsInstance(creator, dict)
        self.assertIsInstance(creator.get("name"), str)
        self.assertIsInstance(creator.get("version"), str)
        self.assertIsInstance(log.get("entries"), list)
        iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
        for i, e in enumerate(log["entries"]):
            w = "entry %d" % i
            self.assertIsInstance(e, dict, w)
            self.assertIsInstance(e.get("startedDateTime"), str, w)
            self.assertRegex(e["startedDateTime"], iso, w)
            self.assertTrue(num(e.get("time")) and e["time"] >= 0, w)
            rq = e.get("request")
            self.assertIsInstance(rq, dict, w)
            self.assertIsInstance(rq.get("method"), str, w)
            self.assertIsInstance(rq.get("url"), str, w)
            self.assertRegex(rq["url"], r"^https?://[^/]+/", w)
            self.assertIsInstance(rq.get("httpVersion"), str, w)
            self.assertIsInstance(rq.get("cookies"), list, w)
            name_values(rq.get("headers"), w + " request.headers")
            name_values(rq.get("queryString"), w + " request.queryString")
            self.assertTrue(isint(rq.get("headersSize")), w)
            self.assertTrue(isint(rq.get("bodySize")), w)
            if "postData" in rq:
                pd = rq["postData"]
                self.assertIsInstance(pd.get("mimeType"), str, w)
                self.assertTrue(isinstance(pd.get("text"), str) or
                                isinstance(pd.get("params"), list), w)
            rs = e.get("response")
            self.assertIsInstance(rs, dict, w)
            self.assertTrue(isint(rs.get("status")), w)
            self.assertIsInstance(rs.get("statusText"), str, w)
            self.assertIsInstance(rs.get("httpVersion"), str, w)
            self.assertIsInstance(rs.get("cookies"), list, w)
            name_values(rs.get("headers"), w + " response.headers")
            c = rs.get("content")
            self.assertIsInstance(c, dict, w)
            self.assertTrue(isint(c.get("size")), w)
            self.assertIsInstance(c.get("mimeType"), str, w)
            if "text" in c:
                self.assertIsInstance(c["text"], str, w)
            if "encoding" in c:
                self.assertEqual(c["encoding"], "base64", w)
            self.assertIsInstance(rs.get("redirectURL"), str, w)
            self.assertTrue(isint(rs.get("headersSize")), w)
            self.assertTrue(isint(rs.get("bodySize")), w)
            self.assertIsInstance(e.get("cache"), dict, w)
            t = e.get("timings")
            self.assertIsInstance(t, dict, w)
            for k in ("send", "wait", "receive"):
                self.assertTrue(num(t.get(k)) and t[k] >= 0, "%s timings.%s" % (w, k))
            for k in ("blocked", "dns", "connect", "ssl"):
                if k in t:
                    self.assertTrue(num(t[k]) and t[k] >= -1, "%s timings.%s" % (w, k))
            # time is the sum of the timings that are not -1 (HAR 1.2).
            total = sum(v for k, v in t.items() if k in ("blocked", "dns", "connect", "send",
                                                         "wait", "receive") and v != -1)
            self.assertAlmostEqual(e["time"], total, delta=1.0, msg=w)

    def test_har_round_trip(self):
        har = tmpfile("export.har")
        self.cli_ok(["export", "--har", har, "--store", REC.store])
        with open(har, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
        self.check_har(doc)
        entries = doc["log"]["entries"]
        self.assertEqual(len(entries), len(REC.rows))
        for e, row in zip(entries, REC.rows):
            self.assertEqual(e["request"]["method"], row["method"])
            self.assertTrue(e["request"]["url"].endswith(target_of(row)), e["request"]["url"])
            self.assertEqual(e["response"]["status"], row["status"])
            want = harness.as_bytes(row["resp_body"])
            if want:
                c = e["response"]["content"]
                got = c.get("text", "")
                got = (base64.b64decode(got) if c.get("encoding") == "base64"
                       else got.encode("utf-8"))
                self.assertEqual(json.loads(got), json.loads(want), row["path"])
            reqb = harness.as_bytes(row["req_body"])
            if reqb:
                self.assertEqual(json.loads(e["request"]["postData"]["text"]), json.loads(reqb))

        new_store_path = tmpfile("imported.db")
        self.cli_ok(["import", "--har", har, "--store", "sqlite:" + new_store_path])
        imported = harness.rows(new_store_path)
        self.assertEqual(len(imported), len(REC.rows))
        self.assertEqual({r["origin"] for r in imported}, {"imported"})
        def key(r):
            return (r["method"], r["path"], r["query"] or "", r["status"],
                    harness.as_bytes(r["req_body"]), harness.as_bytes(r["resp_body"]))
        self.assertEqual([key(r) for r in imported], [key(r) for r in REC.rows])

        # Replays from the original store, the imported store and the HAR
        # file itself against three identical variant apps: same outcomes.
        apps = fresh_apps(self, True, True, True)
        sources = [("--store", REC.store), ("--store", "sqlite:" + new_store_path),
                   ("--har", har)]
        results = []
        for app, src in zip(apps, sources):
            report = tmpfile("har.json")
            _, s = self.replay(*src, "--target", app.url, "--ordered", "--timeout",
                               REPLAY_TIMEOUT, *IGNORE_UPDATED, "--report", "json", report,
                               expect=1)
            rep = self.read_json_report(report)
            outcomes = sorted((r["method"], r["path"], r.get("query") or "", r["outcome"],
                               tuple(sorted(d["path"] for d in r.get("diffs", []))))
                              for r in rep["results"])
            results.append((s.counts(), report_counts(rep), outcomes))
        n, k = len(TRAFFIC), len(expected_variant_mismatches())
        self.assertEqual(results[0][0], (n, n - k, k, 0, 0))
        self.assertEqual(results[1], results[0], "imported store")
        self.assertEqual(results[2], results[0], "--har")


class Reports(ReplayCase):
    def check_junit(self, path, s):
        dom = xml.dom.minidom.parse(path)
        suites = dom.getElementsByTagName("testsuite")
        self.assertEqual(len(suites), 1)
        suite = suites[0]
        cases = suite.getElementsByTagName("testcase")
        attrs = {k: int(suite.getAttribute(k)) for k in ("tests", "failures", "errors", "skipped")}
        self.assertEqual(attrs, {"tests": s.total, "failures": s.mismatched,
                                 "errors": s.errors, "skipped": s.unreplayable})
        self.assertEqual(len(cases), s.total)
        count = {k: sum(1 for c in cases if c.getElementsByTagName(k))
                 for k in ("failure", "error", "skipped")}
        self.assertEqual(count, {"failure": s.mismatched, "error": s.errors,
                                 "skipped": s.unreplayable})
        for c in cases:
            self.assertTrue(c.getAttribute("name"))
        return cases

    def test_junit_and_json_counts(self):
        (app,) = fresh_apps(self, True)
        junit, js = tmpfile("r.xml"), tmpfile("r.json")
        _, s = self.replay_store(app, *IGNORE_UPDATED, "--report", "junit", junit,
                                 "--report", "json", js, expect=1)
        self.assertGreater(s.mismatched, 0)
        self.assertGreater(s.matched, 0)
        cases = self.check_junit(junit, s)
        failed = [c.getAttribute("name") for c in cases if c.getElementsByTagName("failure")]
        for rid in expected_variant_mismatches():
            self.assertEqual(sum(1 for name in failed if rid in name), 1, (rid, failed))
        doc = self.read_json_report(js)
        self.assertEqual(report_counts(doc), s.counts())
        self.assertEqual(len(doc["results"]), s.total)

    def test_errors_and_skipped(self):
        # Nothing listens on the target: errors; the redacted ones: skipped.
        dead = harness.free_port()
        junit, js = tmpfile("dead.xml"), tmpfile("dead.json")
        _, s = self.replay("--store", REC.extras_store, "--target", "http://127.0.0.1:%d" % dead,
                           "--timeout", "2s", "--report", "junit", junit, "--report", "json", js,
                           expect=2)
        self.assertEqual(s.counts(), (3, 0, 0, 1, 2), s.where)
        self.check_junit(junit, s)
        self.assertEqual(report_counts(self.read_json_report(js)), s.counts())


# ------------------------------------------------------- a stub target


class StubTarget:
    """A tiny threaded HTTP/1.1 keep-alive server that answers like
    sitemon's /api/status/<code>/ ({"status": code}; 200 for other paths)
    and records every request it read (method, target, headers, body).
    die_after=N: after the Nth answer it closes its listening socket (new
    connections are refused) and every open connection. hang_after=N: after
    the Nth answer it reads requests but never answers them."""

    def __init__(self, die_after=None, hang_after=None):
        self.die_after = die_after
        self.hang_after = hang_after
        self.lock = threading.Lock()
        self.requests = []
        self.answered = 0
        self.dead = False
        self.stopping = threading.Event()
        self.conns = set()
        self.lsock = None
        self.port = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(512)
        self.lsock.settimeout(0.05)
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self._accept_loop, daemon=True).start()
        return self

    def _accept_loop(self):
        while not self.stopping.is_set():
            with self.lock:
                ls = None if self.dead else self.lsock
            if ls is None:
                return
            try:
                c, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(None)
            with self.lock:
                if self.dead:
                    c.close()
                    return
                self.conns.add(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _die(self):
        # Called with the lock held.
        self.dead = True
        try:
            self.lsock.close()
        except OSError:
            pass
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self.stopping.set()
        with self.lock:
            if not self.dead:
                self._die()

    def _read_request(self, c, buf):
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                return None, buf
            buf += d
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = []
        for ln in lines[1:]:
            k, v = ln.split(":", 1)
            headers.append((k, v.strip()))
        hl = {k.lower(): v for k, v in headers}
        body = b""
        if "chunked" in hl.get("transfer-encoding", "").lower():
            while True:
                while b"\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return None, buf
                    buf += d
                size_line, buf = buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(buf) < size + 2:
                    d = c.recv(65536)
                    if not d:
                        return None, buf
                    buf += d
                body += buf[:size]
                buf = buf[size + 2:]
                if size == 0:
                    break
        else:
            n = int(hl.get("content-length", "0"))
            while len(buf) < n:
                d = c.recv(65536)
                if not d:
                    return None, buf
                buf += d
            body, buf = buf[:n], buf[n:]
        return (method, target, headers, body), buf

    def _serve(self, c):
        buf = b""
        try:
            while True:
                req, buf = self._read_request(c, buf)
                if req is None:
                    return
                with self.lock:
                    # Dead, or about to die: the Nth answer is the last one.
                    if self.dead or (self.die_after is not None and
                                     self.answered >= self.die_after):
                        return
                    self.requests.append(req)
                    hang = self.hang_after is not None and self.answered >= self.hang_after
                    if not hang:
                        self.answered += 1
                        n = self.answered
                if hang:
                    self.stopping.wait()
                    return
                m = re.match(r"^/api/status/(\d+)/", req[1])
                code = int(m.group(1)) if m else 200
                body = b"" if code in (204, 304) else json.dumps({"status": code}).encode()
                head = ("HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                        "Content-Length: %d\r\n\r\n" % (code, len(body))).encode()
                c.sendall(head + body)
                if self.die_after is not None and n >= self.die_after:
                    with self.lock:
                        if not self.dead:
                            self._die()
                    return
        except (OSError, ValueError):
            return
        finally:
            with self.lock:
                self.conns.discard(c)
            try:
                c.close()
            except OSError:
                pass


class DyingTarget(ReplayCase):
    def test_target_dies_midway(self):
        stub = StubTarget(die_after=50).start()
        self.addCleanup(stub.stop)
        loops = 15
        total = len(TRAFFIC) * loops
        js = tmpfile("dying.json")
        t0 = time.monotonic()
        _, s = self.replay("--store", REC.store, "--target", stub.url, "--concurrency", "32",
                           "--loop", str(loops), "--timeout", "2s", "--report", "json", js,
                           expect=2, timeout=60)
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 30.0, s.where)
        self.assertEqual(s.total, total, s.where)
        self.assertEqual(s.matched + s.mismatched + s.errors + s.unreplayable, total, s.where)
        self.assertGreater(s.errors, 0, s.where)
        self.assertLessEqual(s.matched + s.mismatched, 50, s.where)
        self.assertEqual(stub.answered, 50)
        self.assertIn("ERROR", s.text)
        doc = self.read_json_report(js)
        self.assertEqual(report_counts(doc), s.counts())
        self.assertEqual(len(doc["results"]), total)
        errs = [r for r in doc["results"] if r["outcome"] == "error"]
        self.assertTrue(all(r.get("detail") for r in errs), errs[:3])

    def test_target_hangs(self):
        # Accepts and reads, answers a few, then never answers again: every
        # wait is bounded by --timeout.
        stub = StubTarget(hang_after=5).start()
        self.addCleanup(stub.stop)
        t0 = time.monotonic()
        _, s = self.replay("--store", REC.store, "--target", stub.url, "--concurrency", "32",
                           "--timeout", "2s", expect=2, timeout=60)
        self.assertLess(time.monotonic() - t0, 20.0, s.where)
        self.assertEqual(s.total, len(TRAFFIC), s.where)
        self.assertEqual(s.matched + s.mismatched, 5, s.where)
        self.assertEqual(s.errors, len(TRAFFIC) - 5, s.where)
        self.assertIn("timeout", s.text.lower())


class Redacted(ReplayCase):
    def sent_with_redacted(self, stub):
        bad = []
        for method, target, headers, body in stub.requests:
            if "[redacted]" in target or b"[redacted]" in body or \
                    any("[redacted]" in v for _, v in headers):
                bad.append((method, target, headers, body))
        return bad

    def test_redacted_not_sent_unless_replaced(self):
        auth = REC.extras_ids["auth"]
        stub = StubTarget().start()
        self.addCleanup(stub.stop)
        base = ("--store", REC.extras_store, "--target", stub.url, "--timeout", "5s")

        _, s = self.replay(*base, "--id", auth, expect=1)
        self.assertEqual(s.counts(), (1, 0, 0, 0, 1), s.where)
        self.assertIn("Authorization", s.text)
        self.assertEqual(stub.requests, [], "a request with a redacted value was sent")

        _, s = self.replay(*base, "--id", auth, "--set-header", "Authorization: Bearer x",
                           expect=0)
        self.assertEqual(s.counts(), (1, 1, 0, 0, 0), s.where)
        self.assertEqual(len(stub.requests), 1)
        method, target, headers, _ = stub.requests[0]
        self.assertEqual((method, target), ("GET", "/api/status/200/"))
        self.assertEqual([v for k, v in headers if k.lower() == "authorization"], ["Bearer x"])

        # --drop-header also removes the redacted value.
        del stub.requests[:]
        _, s = self.replay(*base, "--id", auth, "--drop-header", "Authorization", expect=0)
        self.assertEqual(len(stub.requests), 1)
        self.assertFalse([k for k, _ in stub.requests[0][2] if k.lower() == "authorization"])

        # The whole store: a redacted body is not cured by --set-header.
        del stub.requests[:]
        _, s = self.replay(*base, "--set-header", "Authorization: Bearer x", expect=1)
        self.assertEqual(s.counts(), (3, 2, 0, 0, 1), s.where)
        self.assertEqual(sorted(t for _, t, _, _ in stub.requests),
                         ["/api/status/200/", "/api/status/202/"])
        self.assertEqual(self.sent_with_redacted(stub), [])


class Export(ReplayCase):
    def test_jsonl(self):
        path = tmpfile("export.jsonl")
        self.cli_ok(["export", "--jsonl", path, "--store", REC.store])
        with open(path, "rb") as f:
            lines = [ln for ln in f.read().decode("utf-8").split("\n") if ln.strip()]
        self.assertEqual(len(lines), len(REC.rows))
        docs = [json.loads(ln) for ln in lines]
        for d, row in zip(docs, REC.rows):
            self.assertIsInstance(d, dict)
            self.assertEqual(d.get("method"), row["method"])
            self.assertEqual(d.get("path"), row["path"])
            if "id" in d:
                self.assertEqual(d["id"], row["id"])

        # A filter applies to export too.
        self.cli_ok(["export", "--jsonl", path, "--store", REC.store, "--method", "DELETE"])
        with open(path) as f:
            lines = [ln for ln in f if ln.strip()]
        self.assertEqual([json.loads(ln)["path"] for ln in lines], ["/api/sites/gamma/"])

        # Replaying JSON lines: as from the store (the stub answers
        # /api/status/202/ as the app did).
        self.cli_ok(["export", "--jsonl", path, "--store", REC.extras_store,
                     "--id", REC.extras_ids["plain"]])
        stub = StubTarget().start()
        self.addCleanup(stub.stop)
        _, s = self.replay("--jsonl", path, "--target", stub.url, "--timeout", "5s", expect=0)
        self.assertEqual(s.counts(), (1, 1, 0, 0, 0), s.where)
        self.assertEqual([(m, t) for m, t, _, _ in stub.requests],
                         [("GET", "/api/status/202/")])

    def curl_lines(self, *filters):
        p = self.cli_ok(["export", "--curl", "--store", REC.store] + list(filters))
        return [ln for ln in p.stdout.split("\n") if ln.strip()]

    def run_curl(self, line, base, row):
        # Points the request's URL (not a URL in its body) at base.
        line, n = re.subn(r"https?://[^/\s'\"]+(?=%s)" % re.escape(row["path"]), base, line)
        self.assertEqual(n, 1, line)
        p = subprocess.run(["bash", "-c", line], capture_output=True, timeout=20,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, (line, p.stderr))
        return p.stdout

    def test_curl(self):
        lines = self.curl_lines()
        self.assertEqual(len(lines), len(REC.rows), "one line per request")
        for ln in lines:
            self.assertTrue(ln.lstrip().startswith("curl ") or " curl " in ln, ln)

        # A GET's line run against app A (in the recording's final state)
        # reproduces the recorded body.
        rid = REC.ids["get-beta"]
        (line,) = self.curl_lines("--id", rid)
        out = self.run_curl(line, REC.app.url, row_by_id(rid))
        self.assertEqual(json.loads(out), body_json(row_by_id(rid)))

        # A POST's line sends the recorded body, byte for byte.
        rid = REC.ids["create-alpha"]
        (line,) = self.curl_lines("--id", rid)
        stub = StubTarget().start()
        self.addCleanup(stub.stop)
        self.run_curl(line, stub.url, row_by_id(rid))
        self.assertEqual(len(stub.requests), 1)
        method, target, headers, body = stub.requests[0]
        self.assertEqual((method, target), ("POST", "/api/sites/"))
        self.assertEqual(body, harness.as_bytes(row_by_id(rid)["req_body"]))
        self.assertIn("application/json",
                      [v for k, v in headers if k.lower() == "content-type"][0])


if __name__ == "__main__":
    unittest.main()
