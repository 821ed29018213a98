"""Capture rules from a config file: first match wins, per-rule persistence
and body caps, and the rule name recorded with each request."""
import json
import unittest
import uuid

import harness

CONFIG = """\
# capture rules for the integration tests
[rule "health"]
path = /api/status/**
persist = off

[rule "metrics"]
methods = POST
path = /api/sites/*/metrics/
req_body_cap = 16
"""


class Rules(harness.ProxyTestCase):
    PROXY_CONFIG = CONFIG

    def test_rules_applied(self):
        p = self.proxy
        for code in (200, 201, 503):
            self.assertEqual(p.request("GET", "/api/status/%d/" % code).status, code)
        self.assertEqual(p.request("POST", "/api/sites/", body={
            "slug": "ruled", "name": "Ruled", "url": "https://ruled.example/"}).status, 201)
        metric = json.dumps({"id": str(uuid.uuid4()), "name": "cpu", "value": 0.75,
                             "recorded_at": "2026-05-06T07:08:09Z"}).encode()
        r = p.request("POST", "/api/sites/ruled/metrics/", body=metric,
                      headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(p.request("GET", "/api/sites/ruled/metrics/").status, 200)
        # '*' is one segment: a deeper path is not the metrics rule.
        self.assertEqual(p.request("POST", "/api/sites/ruled/x/metrics/", body={}).status, 404)
        self.assertEqual(p.request("POST", "/api/echo/", body=b"0123456789" * 5).status, 200)

        p.check_stopped(self)
        rows = p.rows()
        self.assertFalse([r for r in rows if r["path"].startswith("/api/status/")],
                         "requests under the 'health' rule were stored")
        self.assertEqual(len(rows), 5, [(r["method"], r["path"]) for r in rows])
        by = {(r["method"], r["path"]): r for r in rows}

        m = by[("POST", "/api/sites/ruled/metrics/")]
        self.assertEqual(m["rule"], "metrics")
        self.assertEqual(m["req_truncated"], 1)
        self.assertEqual(m["req_body_size"], len(metric))
        self.assertEqual(harness.as_bytes(m["req_body"]), metric[:16])
        self.assertEqual(m["status"], 201)

        for key in (("POST", "/api/sites/"), ("GET", "/api/sites/ruled/metrics/"),
                    ("POST", "/api/sites/ruled/x/metrics/"), ("POST", "/api/echo/")):
            self.assertEqual(by[key]["rule"], "default", key)
            self.assertEqual(by[key]["req_truncated"], 0, key)
        echo = by[("POST", "/api/echo/")]
        self.assertEqual(harness.as_bytes(echo["req_body"]), b"0123456789" * 5)
        self.assertEqual(echo["req_body_size"], 50)

        # Not stored, but logged, with their rule.
        lines = harness.log_json(p.log_path)
        health = [ln for ln in lines if ln["path"].startswith("/api/status/")]
        self.assertEqual(len(health), 3)
        self.assertTrue(all(ln["rule"] == "health" for ln in health), health)
        self.assertEqual(len(lines), 8)


if __name__ == "__main__":
    unittest.main()
