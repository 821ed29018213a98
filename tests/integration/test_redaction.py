"""Secrets never reach the access log or the database, while the app still
receives them intact.

The app answers in "digest" mode (X-Echo-Digest: 1): the echo carries SHA-256
digests instead of values, so the test can prove the real secrets arrived
without the response (which is logged too) carrying them back."""
import glob
import hashlib
import json
import os
import unittest

import harness

SECRETS = {
    "auth": "SECRET-authz-7f3a91",
    "cookie": "SECRET-cookie-c0ffee",
    "apikey": "SECRET-apikey-0b1d",
    "query": "SECRET-querytok-55aa",
    "pw1": "SECRET-jsonpw-1234",
    "tok_deep": "SECRET-deeptoken-9876",
    "pw_deep": "SECRET-deeppw-4242",
    "form_pw": "SECRET-formpw-abcd",
    "form_tok": "SECRET-formtok-beef",
    "site_tok": "SECRET-sitetok-d00d",
}


def digest(s):
    return "sha256:" + hashlib.sha256(s.encode()).hexdigest()


class Redaction(harness.ProxyTestCase):
    PROXY_ARGS = ("--log-bodies", "on", "--log-headers", "on")

    def echo(self, method, target, body=None, headers=None):
        hdrs = [("X-Echo-Digest", "1")] + list(headers or [])
        r = self.proxy.request(method, target, body=body, headers=hdrs)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def test_secrets_redacted_everywhere(self):
        s = SECRETS
        # 1. headers and query
        doc = self.echo("GET", "/api/echo/?token=%s&page=2" % s["query"], headers=[
            ("Authorization", "Bearer " + s["auth"]),
            ("Cookie", "session=%s; theme=dark" % s["cookie"]),
            ("X-Api-Key", s["apikey"]),
            ("X-Marker", "redact-1"),
        ])
        got = {k.lower(): v for k, v in doc["headers"]}
        self.assertEqual(got["authorization"], digest("Bearer " + s["auth"]))
        self.assertEqual(got["cookie"], digest("session=%s; theme=dark" % s["cookie"]))
        self.assertEqual(got["x-api-key"], digest(s["apikey"]))
        self.assertEqual(doc["query"], digest("token=%s&page=2" % s["query"]))

        # 2. JSON body with secrets at depth, in arrays
        body = {
            "user": "bob-visible",
            "password": s["pw1"],
            "items": [
                {"a": 1, "token": s["tok_deep"]},
                [{"deep": {"Password": s["pw_deep"], "keep": "visible-value"}}],
            ],
        }
        raw = json.dumps(body, indent=1).encode()
        doc = self.echo("POST", "/api/echo/", body=raw,
                        headers=[("Content-Type", "application/json"), ("X-Marker", "redact-2")])
        self.assertEqual(doc["body"], "sha256:" + hashlib.sha256(raw).hexdigest())

        # 3. form body
        form = "user=alice-visible&password=%s&token=%s&x=2" % (s["form_pw"], s["form_tok"])
        doc = self.echo("POST", "/api/echo/", body=form.encode(), headers=[
            ("Content-Type", "application/x-www-form-urlencoded"), ("X-Marker", "redact-3")])
        self.assertEqual(doc["body"], digest(form))

        # 4. a real API call carrying an extra secret field (ignored by the app)
        r = self.proxy.request("POST", "/api/sites/", body={
            "slug": "red", "name": "Red", "url": "https://red.example/",
            "token": s["site_tok"]})
        self.assertEqual(r.status, 201, r)
        self.assertNotIn(s["site_tok"].encode(), r.body)

        # Everything flushed: stop restspy (SIGTERM drains log and store).
        self.proxy.check_stopped(self)

        log = open(self.proxy.log_path, "rb").read()
        self.assertTrue(log, "access log is empty")
        files = {"access.log": log}
        for path in glob.glob(self.proxy.db_path + "*"):
            with open(path, "rb") as f:
                files[os.path.basename(path)] = f.read()
        self.assertIn("restspy.db", files)
        for name, data in files.items():
            for key, secret in s.items():
                self.assertNotIn(secret.encode(), data,
                                 "secret %s found in %s" % (key, name))
                # Nor its hex or base64 traces (a body logged as *_b64).
                self.assertNotIn(secret.encode().hex().encode(), data.lower())

        # Proof that headers and bodies were captured at all (so the check
        # above is not vacuous), with the secrets replaced.
        self.assertIn(b"[redacted]", log)
        self.assertIn(b"bob-visible", log)
        self.assertIn(b"visible-value", log)
        self.assertIn(b"alice-visible", log)

        lines = harness.log_json(self.proxy.log_path)
        by_marker = {}
        for ln in lines:
            for k, v in ln.get("req_headers") or []:
                if k.lower() == "x-marker":
                    by_marker[v] = ln
        self.assertEqual(set(by_marker), {"redact-1", "redact-2", "redact-3"})
        h1 = {k.lower(): v for k, v in by_marker["redact-1"]["req_headers"]}
        for name in ("authorization", "cookie", "x-api-key"):
            self.assertIn("[redacted]", h1[name])
        self.assertIn("page=2", by_marker["redact-1"]["query"])
        self.assertIn("[redacted]", by_marker["redact-2"]["req_body"])
        self.assertIn("[redacted]", by_marker["redact-3"]["req_body"])
        self.assertIn("x=2", by_marker["redact-3"]["req_body"])

        rows = harness.rows(self.proxy.db_path)
        self.assertEqual(len(rows), 4)
        for row in rows:
            for key, secret in s.items():
                for col in ("req_headers", "req_body", "query", "resp_body", "resp_headers"):
                    self.assertNotIn(secret.encode(), harness.as_bytes(row[col]),
                                     "%s in column %s" % (key, col))
        r1 = [r for r in rows if (r["query"] or "").endswith("page=2")][0]
        stored = {k.lower(): v for k, v in harness.headers_of(r1["req_headers"])}
        self.assertIn("[redacted]", stored["authorization"])
        self.assertIn("[redacted]", stored["cookie"])
        self.assertIn("[redacted]", stored["x-api-key"])
        # Nested JSON is still valid JSON with the secrets replaced.
        r2 = [r for r in rows if b"bob-visible" in harness.as_bytes(r["req_body"])][0]
        doc = json.loads(harness.as_bytes(r2["req_body"]))
        self.assertEqual(doc["password"], "[redacted]")
        self.assertEqual(doc["items"][0]["token"], "[redacted]")
        self.assertEqual(doc["items"][1][0]["deep"]["Password"], "[redacted]")
        self.assertEqual(doc["items"][1][0]["deep"]["keep"], "visible-value")
        self.assertEqual(doc["user"], "bob-visible")


if __name__ == "__main__":
    unittest.main()
