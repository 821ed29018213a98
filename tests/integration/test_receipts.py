"""Apply receipts between two real sites (docs/replication.md, "The life of
one write", step 8; docs/protocol.md section 10), and the replication
record of one request on the admin API (GET /api/requests/ID/replication).

A write made at one site is applied at the other, whose replicator sends a
receipt back: the origin's record then lists the peer with its outcome and
its app's status (applied 201, or diverged 404 for a write the peer's app
refused though the origin's accepted it). A receipt is never applied as a write (the apps' rows are
counted), and one that is forged, unsigned or about another site's write is
not recorded; one signed here in Python (an implementation of the protocol
independent of restspy's) is."""
import hashlib
import hmac
import json
import time
import unittest
import uuid

import replsites
from harness import wait_until
from replsites import (SECRET, ReplicationCase, Writes, add_metric, create_site, federate_mesh,
                       uuid7)


def setUpModule():
    replsites.setup_module("receipts", ["A", "B"])
    federate_mesh(["A", "B"])


def capture_id(site, method, path):
    """The id of the one local capture of method path at site."""
    rows = site.store_query("SELECT id FROM requests WHERE origin = 'local' AND method = ? "
                            "AND path = ?", (method, path))
    assert len(rows) == 1, rows
    return rows[0][0]


def record(site, mid):
    r = site.proxy.admin("GET", "/api/requests/%s/replication" % mid)
    assert r.status == 200, (r.status, r.body)
    return r.json()


def wait_record(site, mid, pred, timeout=30):
    """site's replication record of mid once pred(record) holds (fails the
    test with the last record otherwise)."""
    last = [None]

    def ok():
        last[0] = record(site, mid)
        return pred(last[0])

    if not wait_until(ok, timeout=timeout, interval=0.2):
        raise AssertionError("record of %s at %s: %r" % (mid, site.node, last[0]))
    return last[0]


def app_rows(site):
    """(sites, metrics) rows in the site's app database."""
    snap = site.snapshot()
    return len(snap["sites"]), len(snap["metrics"])


def receipt_message(fields, secret):
    """A receipt as the protocol describes it, built here: (properties,
    body); signed with secret unless it is None."""
    rid = uuid7()
    body = json.dumps(fields, separators=(",", ":"))
    headers = {}
    if secret is not None:
        canon = b"restspy-receipt-v1\n" + rid.encode() + b"\n" + body.encode()
        headers["x-restspy-signature"] = hmac.new(secret.encode(), canon,
                                                  hashlib.sha256).hexdigest()
    props = {"message_id": rid, "type": "restspy.receipt", "timestamp": int(time.time()),
             "content_type": "application/json", "delivery_mode": 2, "app_id": "restspy",
             "headers": headers}
    return props, body


class Receipts(ReplicationCase):

    def test_receipts(self):
        """A's writes: one applied at B (201), one B's app refuses (404).
        A's record of each lists B with that outcome and status; B's record
        of the applied one has its ledger row; nothing is applied twice and
        no receipt is applied as a write. Then forged receipts at A."""
        a, b = self.site("A"), self.site("B")
        writes = Writes()
        slug = "receipt-" + uuid.uuid4().hex[:6]
        self.assertEqual(201, create_site(a, slug, writes))
        applied = capture_id(a, "POST", "/api/sites/")
        rec = wait_record(a, applied, lambda r: r["applied"])
        self.assertEqual("queued", rec["state"])
        self.assertEqual([{"node": "b", "outcome": "applied", "status": 201,
                           "at_us": rec["applied"][0]["at_us"]}], rec["applied"])
        self.assertIsNone(rec["applied_here"])
        self.assertEqual(applied, rec["id"])
        rec = wait_record(a, applied, lambda r: r["outbox"] == "confirmed")

        # B's side: the ledger row of the write it applied, and no receipts.
        there = record(b, applied)
        self.assertIsNone(there["outbox"])
        self.assertEqual([], there["applied"])
        here = there["applied_here"]
        self.assertEqual(("a", applied, "applied", "same"),
                         (here["origin"], here["message_id"], here["state"], here["outcome"]))
        self.assertLessEqual(here["at_us"], rec["applied"][0]["at_us"])

        # A write B's app refuses: its site exists at A only (made behind
        # A's proxy, so not replicated). The sites disagree: recorded at B
        # as diverged (replicate_refused = diverged, the default), acked.
        only = {"slug": "only-a-" + uuid.uuid4().hex[:6], "name": "A only",
                "url": "https://a.example", "status": "up"}
        self.assertEqual(201, a.app.request("POST", "/api/sites/", only).status)
        self.assertEqual(201, add_metric(a, only["slug"], writes, value=1.5))
        refused = capture_id(a, "POST", "/api/sites/%s/metrics/" % only["slug"])
        rec = wait_record(a, refused, lambda r: r["applied"])
        self.assertEqual(("b", "diverged", 404),
                         tuple(rec["applied"][0][k] for k in ("node", "outcome", "status")))
        here = record(b, refused)["applied_here"]  # in B's ledger, with its capture
        self.assertEqual(("a", refused, "diverged: status 201 -> 404"),
                         (here["origin"], here["message_id"], here["outcome"]))

        # A write at B comes back to B as a receipt from A.
        self.assertEqual(201, create_site(b, slug + "-b", writes))
        from_b = capture_id(b, "POST", "/api/sites/")
        rec = wait_record(b, from_b, lambda r: r["applied"])
        self.assertEqual(("a", "applied", 201),
                         tuple(rec["applied"][0][k] for k in ("node", "outcome", "status")))

        # Counted: each app holds what its clients and the replication
        # wrote, nothing more (a receipt applied as a write would add a row
        # or a replicated capture or a dead letter).
        self.assertEqual((3, 1), app_rows(a))  # slug, only-a, slug-b; the metric
        self.assertEqual((2, 0), app_rows(b))  # slug, slug-b
        self.assertEqual({applied: 1}, b.replicated_captures())
        self.assertEqual({from_b: 1}, a.replicated_captures())
        self.assertEqual({applied, refused}, set(b.ledger()))
        self.assertEqual({from_b}, set(a.ledger()))
        self.assertEqual(0, a.broker.depth(a.dead_queue))
        self.assertEqual(0, b.broker.depth(b.dead_queue))  # the refused metric: diverged
        self.assertEqual(sorted([(applied, "b"), (refused, "b")]),
                         sorted(a.store_query("SELECT message_id, node FROM receipts")))
        self.assertEqual([(from_b, "a")], b.store_query("SELECT message_id, node FROM receipts"))
        self.assertNotIn("dropped a receipt", a.replicator.stderr() + b.replicator.stderr())

        # Receipts published straight to A's restspy.inbound (one site
        # start less than a scenario of their own): forged, unsigned, and
        # about B's write are acked and dropped; a good one signed here is
        # recorded. None is applied or dead-lettered.
        self.forged_receipts(a, b, applied)

    def forged_receipts(self, a, b, mid):
        before = app_rows(a)

        def fields(node, origin="a"):
            return {"message_id": mid, "origin": origin, "node": node, "outcome": "applied",
                    "status": 201, "at_us": int(time.time() * 1e6)}

        for f, secret in ((fields("forged"), "not-the-secret"), (fields("unsigned"), None),
                          (fields("other", origin="b"), SECRET), (fields("good"), SECRET)):
            props, body = receipt_message(f, secret)
            self.assertTrue(a.broker.publish("restspy.inbound", "a.@receipt." + f["node"], body,
                                             props))
        # In order through one queue and one thread: once the good one is
        # recorded, the others were handled.
        rec = wait_record(a, mid, lambda r: len(r["applied"]) == 2)
        self.assertEqual(["b", "good"], [e["node"] for e in rec["applied"]])
        self.assertEqual(3, len(a.store_query("SELECT 1 FROM receipts")))
        self.assertEqual([], a.store_query("SELECT node FROM receipts WHERE node IN "
                                           "('forged', 'unsigned', 'other')"))
        err = a.replicator.stderr()
        self.assertIn("dropped a receipt for %s from forged: bad signature" % mid, err)
        self.assertIn("dropped a receipt for %s from unsigned: unsigned receipt" % mid, err)
        self.assertEqual(before, app_rows(a))
        self.assertEqual(1, len(a.ledger()))  # the write from B, only
        self.assertEqual(0, a.broker.depth(a.dead_queue))
        self.assertEqual(0, a.broker.depth(a.apply_queue))
        self.assertEqual(0, b.broker.depth(b.dead_queue))


if __name__ == "__main__":
    unittest.main()
