"""Divergence between two real sites (issue 16; docs/replication.md,
"Divergence"; docs/protocol.md section 6, step 4).

A write made at site A carries A's answer (status, body as stored, digest).
B's replicator applies it and compares B's answer with A's: a conflicting
write (the slug already exists at B, made behind B's proxy's back) is
recorded at B as `diverged: status 201 -> 400`, acked and never
dead-lettered nor retried; a PATCH both sites accept but answer with other
bodies (the site's name differs) as `diverged: body $.name: ...`; an
ordinary write as `same` (the sites' replicators run with
examples/sitemon/replicate.noise, naming $..updated_at, which each site sets
from its own clock: without it every write would diverge there). B lists them with `restspy replication diverged`
(the filters of `restspy requests`, --json), counts them in `replication
status` and in /metrics; A's record of each write shows B's receipt as
`diverged`. With a noise rule covering the name (replicate_noise), the same
kind of PATCH is `same`. Against npm json-server (JsonServerSites), a
backend the project did not write, a server-assigned id is the divergence."""
import json
import os
import unittest
import uuid

import replsites
import harness
from harness import run_cli, wait_until
from jsonapp import JsonServer, json_server_or_fail
from replsites import ReplicationCase, Writes, create_site, federate_mesh


def setUpModule():
    replsites.setup_module("diverged", ["A", "B"])
    federate_mesh(["A", "B"])


def outcome_of(site, mid):
    rows = site.store_query("SELECT outcome FROM applied WHERE message_id = ?", (mid,))
    return rows[0][0] if rows else None


def local_id(site, method, path):
    rows = site.store_query("SELECT id FROM requests WHERE origin = 'local' AND method = ? AND "
                            "path = ? ORDER BY started_at DESC LIMIT 1", (method, path))
    assert rows, (method, path)
    return rows[0][0]


def wait_outcome(tc, site, mid, timeout=30):
    """The ledger outcome of mid at site, once its ledger row is there."""
    got = [None]

    def there():
        got[0] = site.store_query("SELECT outcome FROM applied WHERE message_id = ?", (mid,))
        return bool(got[0])

    tc.assertTrue(wait_until(there, timeout=timeout, interval=0.2),
                  "%s: no ledger row for %s; replicator stderr:\n%s" %
                  (site.node, mid, site.replicator.stderr()[-2000:]))
    return got[0][0][0]


def patch_name_site(tc, a, b, slug):
    """A site slug made at each app directly (not replicated) with names
    that differ, then a PATCH of its status through A's proxy: its id."""
    for site, name in ((a, "Name at A"), (b, "Name at B")):
        r = site.app.request("POST", "/api/sites/", {"slug": slug, "name": name,
                                                     "url": "https://%s.example" % slug,
                                                     "status": "up"})
        tc.assertEqual(201, r.status, r.body)
    r = a.proxy.request("PATCH", "/api/sites/%s/" % slug, body=json.dumps({"status": "down"}),
                        headers={"Content-Type": "application/json"})
    tc.assertEqual(200, r.status, r.body)
    return local_id(a, "PATCH", "/api/sites/%s/" % slug)


def use_noise(tc, site, *rules):
    """Restarts site's replicator with a replicate_noise file of rules."""
    path = os.path.join(tc.tmp, "noise-%s.rules" % site.node)
    with open(path, "w") as f:
        f.write("# each site sets it from its own clock\n" + "\n".join(rules) + "\n")
    site.replicator.stop()
    site.replicator.extra = ["--replicate-noise", path]
    site.replicator.start()


class Diverged(ReplicationCase):

    def test_diverged_writes(self):
        a, b = self.site("A"), self.site("B")
        writes = Writes()
        tag = uuid.uuid4().hex[:6]

        # An ordinary write: the same answer at both sites.
        self.assertEqual(201, create_site(a, "same-" + tag, writes))
        same = local_id(a, "POST", "/api/sites/")
        self.assertEqual("same", wait_outcome(self, b, same))

        # A conflicting write: the slug exists at B already, with another
        # name (made at B's app, behind its proxy). A answers 201, B 400.
        clash = "clash-" + tag
        r = b.app.request("POST", "/api/sites/", {"slug": clash, "name": "B's own",
                                                  "url": "https://b.example", "status": "up"})
        self.assertEqual(201, r.status, r.body)
        self.assertEqual(201, create_site(a, clash, writes))
        conflict = local_id(a, "POST", "/api/sites/")
        self.assertEqual("diverged: status 201 -> 400", wait_outcome(self, b, conflict))

        # Both accept, with other bodies: the PATCH answers the whole site.
        patched = patch_name_site(self, a, b, "named-" + tag)
        got = wait_outcome(self, b, patched)
        self.assertEqual('diverged: body $.name: "Name at A" -> "Name at B"', got)

        # B's listing: the two diverged writes, oldest first, with the
        # outcome; the filters of `restspy requests` apply.
        store = "sqlite:" + b.db_path
        p = run_cli(["replication", "diverged", "--store", store])
        self.assertEqual(0, p.returncode, p.stderr)
        lines = p.stdout.splitlines()
        self.assertRegex(lines[0], r"^TIME +ID +METHOD +STATUS +DURATION +PATH +OUTCOME$")
        self.assertIn("POST", lines[1])
        self.assertIn("/api/sites/", lines[1])
        self.assertTrue(lines[1].endswith("diverged: status 201 -> 400"), lines[1])
        self.assertIn("PATCH", lines[2])
        self.assertTrue(lines[2].endswith('diverged: body $.name: "Name at A" -> "Name at B"'),
                        lines[2])
        self.assertEqual("2 diverged writes", lines[-1])
        p = run_cli(["replication", "diverged", "--store", store, "--method", "PATCH", "--json"])
        self.assertEqual(0, p.returncode, p.stderr)
        rows = [json.loads(line) for line in p.stdout.splitlines()]
        self.assertEqual([patched], [r["id"] for r in rows])
        self.assertEqual("replicated", rows[0]["origin"])
        self.assertEqual("a", rows[0]["node"])
        self.assertTrue(rows[0]["replication"].startswith("diverged: body $.name"))
        p = run_cli(["replication", "diverged", "--store", store, "--status", "nope"])
        self.assertEqual(2, p.returncode)
        self.assertEqual(1, len(p.stderr.strip().splitlines()), p.stderr)

        # The same filter in `restspy requests` and the admin API (the
        # console's History): replication=diverged.
        p = run_cli(["requests", "--store", store, "--replication", "diverged", "--json"])
        self.assertEqual(0, p.returncode, p.stderr)
        self.assertEqual({conflict, patched}, {json.loads(x)["id"] for x in p.stdout.splitlines()})
        r = b.proxy.admin("GET", "/api/requests?replication=diverged")
        self.assertEqual(200, r.status, r.body)
        self.assertEqual({conflict, patched}, {x["id"] for x in r.json()["requests"]})
        r = b.proxy.admin("GET", "/api/requests?replication=same")
        self.assertEqual(400, r.status, r.body)
        self.assertIn("expected diverged", r.json()["error"])

        # Counted: replication status (text and JSON) and /metrics.
        p = b.status_cli()
        self.assertEqual(0, p.returncode, p.stderr)
        self.assertRegex(p.stdout, r"(?m)^diverged +2 \(restspy replication diverged lists them\)$")
        p = b.status_cli("--json")
        self.assertEqual(2, json.loads(p.stdout)["diverged"], p.stdout)
        m = b.proxy.admin("GET", "/metrics")
        self.assertEqual(200, m.status)
        self.assertRegex(m.body.decode(), r"(?m)^restspy_replication_diverged_total 2$")

        # Never dead-lettered, never retried: one apply each, one capture.
        self.assertEqual(0, b.broker.depth(b.dead_queue))
        self.assertEqual(1, len(b.store_query("SELECT 1 FROM requests WHERE id = ?", (conflict,))))
        self.assertEqual(400, b.store_query("SELECT status FROM requests WHERE id = ?",
                                            (conflict,))[0][0])
        self.assertIn("diverged: status 201 -> 400", b.replicator.stderr())

        # A hears of it: B's receipt says diverged, with B's status.
        def receipt():
            return a.store_query("SELECT outcome, status FROM receipts WHERE message_id = ? "
                                 "AND node = 'b'", (conflict,))
        self.assertTrue(wait_until(lambda: receipt(), timeout=30, interval=0.2))
        self.assertEqual([("diverged", 400)], receipt())

        # B's clash is the sites' business, not A's: A's side records no
        # divergence of its own.
        self.assertEqual([], a.store_query("SELECT 1 FROM applied WHERE outcome <> 'same'"))

    def test_noise_rules_hide_expected_differences(self):
        """replicate_noise: a rule covering $.name makes the PATCH of a
        site whose name differs `same`; a difference it does not cover is
        still diverged."""
        a, b = self.site("A"), self.site("B")
        use_noise(self, b, "$..updated_at", "$.name")
        tag = uuid.uuid4().hex[:6]
        patched = patch_name_site(self, a, b, "noisy-" + tag)
        self.assertEqual("same", wait_outcome(self, b, patched))

        # The url differs too this time: not covered by the rule.
        slug = "urls-" + tag
        for site, url in ((a, "https://a.example/x"), (b, "https://b.example/y")):
            r = site.app.request("POST", "/api/sites/", {"slug": slug, "name": "N", "url": url,
                                                         "status": "up"})
            self.assertEqual(201, r.status, r.body)
        r = a.proxy.request("PATCH", "/api/sites/%s/" % slug,
                            body=json.dumps({"status": "down"}),
                            headers={"Content-Type": "application/json"})
        self.assertEqual(200, r.status)
        mid = local_id(a, "PATCH", "/api/sites/%s/" % slug)
        self.assertEqual('diverged: body $.url: "https://a.example/x" -> "https://b.example/y"',
                         wait_outcome(self, b, mid))

        # A's answers no longer travel (replicate_origin_body_max = 0): B
        # can compare digests only, and no noise rule applies to a digest.
        a.proxy.check_stopped()
        a.proxy = replsites.SiteProxy(a.dir, a.app.url, a.node, a.broker.amqp_url,
                                      extra=["--replicate-origin-body-max", "0"]).start()
        patched = patch_name_site(self, a, b, "digest-" + tag)
        self.assertEqual("diverged: body (its SHA-256 differs; the origin sent no body to "
                         "compare under noise rules)", wait_outcome(self, b, patched))


class JsonServerSites(ReplicationCase):
    """Two sites whose backend is npm json-server, an API the project did
    not write, which numbers what it creates itself. B holds a post of its
    own already, so B numbers one ahead of A: the POST that lets the server
    choose the id is applied at B as `diverged: body $.id: 1 -> 2` (the
    sites drift, and this is how an operator learns it), the POST that
    names its own id is `same`, and `restspy sites compare` reports the
    collection as differing and the client-named post as agreeing. This is
    docs/replication.md's "what to do about server-assigned ids", tested."""

    def setUp(self):
        json_server_or_fail(self)
        super().setUp()

    def app_for(self, site):
        posts = [{"id": 1, "title": "B's own"}] if site.tag == "B" else []
        return JsonServer(site.dir, "jsonserver", {"posts": posts})

    def post(self, site, body):
        r = site.proxy.request("POST", "/posts", body=json.dumps(body),
                               headers={"Content-Type": "application/json"})
        self.assertEqual(201, r.status, r.body)
        return json.loads(r.body), local_id(site, "POST", "/posts")

    def test_server_assigned_ids_diverge(self):
        a, b = self.site("A"), self.site("B")
        made, numbered = self.post(a, {"title": "numbered by the server"})
        self.assertEqual(1, made["id"])
        self.assertEqual("diverged: body $.id: 1 -> 2", wait_outcome(self, b, numbered))
        chose, named = self.post(a, {"id": 100, "title": "numbered by the client"})
        self.assertEqual(100, chose["id"])
        self.assertEqual("same", wait_outcome(self, b, named))

        p = run_cli(["replication", "diverged", "--store", "sqlite:" + b.db_path, "--json"])
        self.assertEqual(0, p.returncode, p.stderr)
        self.assertEqual([(numbered, "diverged: body $.id: 1 -> 2")],
                         [(r["id"], r["replication"]) for r in map(json.loads,
                                                                   p.stdout.splitlines())])

        sites = ["sites", "compare", "--site", "a=" + a.app.url, "--site", "b=" + b.app.url]
        p = run_cli(sites + ["--path", "/posts", "--path", "/posts/100"])
        self.assertEqual(1, p.returncode, p.stdout + p.stderr)
        self.assertIn("/posts/100  a 200  b 200  agree", p.stdout)
        self.assertIn("/posts  a 200  b 200  DIFFER", p.stdout)
        self.assertIn("1 agree, 1 differ", p.stdout)


class BadNoise(unittest.TestCase):

    def test_bad_noise_file_refused(self):
        """A replicate_noise file that cannot be used stops the replicator
        at start, in one line, before it connects to anything."""
        tmp = harness.make_tmpdir("badnoise")
        self.addCleanup(harness.remove_tmpdir, tmp)
        rules = os.path.join(tmp, "bad.rules")
        with open(rules, "w") as f:
            f.write("regex: (unclosed\n")
        p = run_cli(["replicate", "--amqp", "amqp://guest:guest@127.0.0.1:1/",
                     "--upstream", "http://127.0.0.1:1", "--node", "z",
                     "--store", "sqlite:" + os.path.join(tmp, "z.db"),
                     "--replicate-noise", rules])
        self.assertEqual(2, p.returncode, p.stderr)
        self.assertEqual(1, len(p.stderr.strip().splitlines()), p.stderr)
        self.assertIn("replicate_noise", p.stderr)
