"""GET /metrics on the admin listener (issue 13): Prometheus' text format,
checked by `promtool check metrics` (Debian's prometheus package, installed
by scripts/install-deps; a missing promtool fails the test), and counters
and histograms that follow the traffic sent through the proxy."""
import json
import os
import re
import shutil
import subprocess
import unittest

import harness

SAMPLE = re.compile(r'^([a-z_:][a-z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse(text):
    """{(name, labels): value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


class Metrics(harness.ProxyTestCase):
    ADMIN_TOKEN = "metrics-token"

    def scrape(self):
        r = self.proxy.admin("GET", "/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        return r.body.decode()

    def test_promtool_accepts_it(self):
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool is missing: run scripts/install-deps "
                                       "(Debian package prometheus)")
        self.proxy.request("GET", "/api/status/200/")
        text = self.scrape()
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for name in ("restspy_requests_total", "restspy_request_duration_seconds_bucket",
                     "restspy_upstream_duration_seconds_count", "restspy_active_connections",
                     "restspy_capture_queue_depth", "restspy_capture_dropped_total",
                     "restspy_store_rows_written_total", "process_cpu_seconds_total",
                     "process_resident_memory_bytes", "process_open_fds",
                     "process_start_time_seconds"):
            self.assertRegex(text, r"(?m)^%s[{ ]" % name)

    def test_counters_follow_traffic(self):
        def get(m, key, labels=""):
            return m.get((key, labels), 0)
        before = parse(self.scrape())
        for _ in range(3):
            self.assertEqual(self.proxy.request("GET", "/api/status/200/").status, 200)
        self.assertEqual(self.proxy.request("GET", "/api/status/404/").status, 404)
        self.assertEqual(self.proxy.request("DELETE", "/api/status/204/").status, 204)

        def moved():
            m = parse(self.scrape())
            return m if get(m, "restspy_request_duration_seconds_count") >= \
                get(before, "restspy_request_duration_seconds_count") + 5 else None
        after = harness.wait_until(moved, timeout=5)
        self.assertTrue(after, "the duration histogram did not count 5 requests")
        ok, nf = '{method="GET",code="2xx"}', '{method="GET",code="4xx"}'
        dl = '{method="DELETE",code="2xx"}'
        self.assertEqual(get(after, "restspy_requests_total", ok) -
                         get(before, "restspy_requests_total", ok), 3)
        self.assertEqual(get(after, "restspy_requests_total", nf) -
                         get(before, "restspy_requests_total", nf), 1)
        self.assertEqual(get(after, "restspy_requests_total", dl) -
                         get(before, "restspy_requests_total", dl), 1)
        # buckets are cumulative and end with the count
        inf = get(after, "restspy_request_duration_seconds_bucket", '{le="+Inf"}')
        self.assertEqual(inf, get(after, "restspy_request_duration_seconds_count"))
        self.assertGreaterEqual(inf, get(after, "restspy_request_duration_seconds_bucket",
                                         '{le="10"}'))
        self.assertGreater(get(after, "restspy_received_bytes_total"),
                           get(before, "restspy_received_bytes_total"))
        self.assertEqual(get(after, "restspy_capture_dropped_total"), 0)
        self.assertTrue(harness.wait_until(
            lambda: get(parse(self.scrape()), "restspy_store_rows_written_total") >=
            get(before, "restspy_store_rows_written_total") + 5, timeout=5))

    def test_rule_flags_follow_put_flags(self):
        key = ("restspy_rule_flag", '{rule="default",name="persist"}')
        self.assertEqual(parse(self.scrape())[key], 1)
        r = self.proxy.admin("PUT", "/flags", body=json.dumps(
            {"rules": {"default": {"persist": False}}}).encode())
        self.assertEqual(r.status, 200, r)
        try:
            self.assertEqual(parse(self.scrape())[key], 0)
        finally:
            r = self.proxy.admin("PUT", "/flags", body=json.dumps(
                {"rules": {"default": {"persist": True}}}).encode())
            self.assertEqual(r.status, 200, r)
        self.assertEqual(parse(self.scrape())[key], 1)

    def test_every_metric_documented(self):
        with open(os.path.join(harness.REPO, "docs", "metrics.md")) as f:
            doc = f.read()
        names = re.findall(r"(?m)^# TYPE (\S+) ", self.scrape())
        self.assertGreater(len(names), 30)
        missing = [n for n in names if "`%s`" % n not in doc]
        self.assertEqual(missing, [], "metrics missing from docs/metrics.md")

    def test_token_required_and_get_only(self):
        r = self.proxy.admin("GET", "/metrics", auth=False)
        self.assertEqual(r.status, 401, r)
        r = self.proxy.admin("POST", "/metrics", body={})
        self.assertEqual(r.status, 405, r)


if __name__ == "__main__":
    unittest.main()
