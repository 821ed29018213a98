"""Compressed bodies (issue 9, items 1 and 4): secrets in gzip, deflate and
br responses and requests never reach the store or the log, the stored body
is the decoded one with the wire coding recorded, the client gets the bytes
the upstream sent, a decompression bomb is capped by decoded size, and a body
that cannot be decoded is dropped (redaction on) or kept as received
(redaction off), the row saying why either way."""
import glob
import gzip
import json
import unittest
import zlib
from http.server import BaseHTTPRequestHandler

import brotli  # Debian python3-brotli (scripts/install-deps)

import harness

SECRET = "SECRET-pw-c0de-%s"


def encode(enc, data):
    """data encoded with each coding of enc ("gzip", "gzip, br"...), in order."""
    for e in [x.strip() for x in enc.split(",") if x.strip()]:
        if e == "gzip":
            data = gzip.compress(data, mtime=0)
        elif e == "deflate":
            data = zlib.compress(data)
        elif e == "deflate-raw":
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            data = c.compress(data) + c.flush()
        elif e == "br":
            data = brotli.compress(data)
        else:
            raise ValueError(e)
    return data


def users_doc(tag):
    return json.dumps([{"user": "u%d" % i, "password": SECRET % ("%s-%d" % (tag, i))}
                       for i in range(3)]).encode()


class Upstream(BaseHTTPRequestHandler):
    """GET /users?enc=E: a JSON list with passwords, encoded with E (header
    Content-Encoding: E, or "deflate" for deflate-raw). /bomb: 32 MiB of
    zeros gzipped. /broken: "gzip" that is not gzip. /zstd: an unknown
    coding. POST: reads the body and answers 201 {"ok":true}."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _send(self, status, body, enc=None, ctype="application/json"):
        self.send_response(status)
        # restspy's capture id, so the test finds the row.
        self.send_header("X-Request-Id", self.headers.get("X-Request-Id", ""))
        self.send_header("Content-Type", ctype)
        if enc:
            self.send_header("Content-Encoding", enc)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/users":
            enc = query.split("=", 1)[1].replace("+", " ").replace("%2C", ",")
            wire = "deflate" if enc == "deflate-raw" else enc
            self._send(200, encode(enc, users_doc(enc)), wire)
        elif path == "/bomb":
            self._send(200, gzip.compress(b"\0" * (32 << 20)), "gzip", "application/octet-stream")
        elif path == "/broken":
            self._send(200, b'{"password":"%s"}' % (SECRET % "broken").encode(), "gzip")
        elif path == "/zstd":
            self._send(200, b'{"password":"%s"}' % (SECRET % "zstd").encode(), "zstd")
        else:
            self._send(404, b"{}")

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        self._send(201, b'{"ok":true}')


class CodingCase(harness.BackendProxyCase):
    PROXY_ARGS = ()

    @classmethod
    def start_upstream(cls):
        cls.srv = harness.start_backend(Upstream)
        return cls.srv.url

    @classmethod
    def stop_upstream(cls):
        harness.stop_backend(cls.srv)

    @classmethod
    def proxy_args(cls):
        return ("--log-bodies", "on") + cls.PROXY_ARGS

    def get(self, path, enc_accept="gzip, deflate, br"):
        return self.proxy.request("GET", path, headers=[("Accept-Encoding", enc_accept)])

    def row(self, resp_or_id):
        rid = resp_or_id if isinstance(resp_or_id, str) else resp_or_id.header("X-Request-Id")
        rows = self.proxy.wait_rows(1, "id = ?", (rid,))
        self.assertEqual(len(rows), 1, rid)
        return rows[0]

    def all_bytes(self):
        """Every byte restspy wrote: the store's files and the access log."""
        out = b""
        for p in glob.glob(self.proxy.db_path + "*") + [self.proxy.log_path]:
            with open(p, "rb") as f:
                out += f.read()
        return out


class Codings(CodingCase):
    def test_secrets_in_compressed_responses_and_requests(self):
        ids = []
        for enc in ("gzip", "deflate", "deflate-raw", "br", "gzip, br"):
            with self.subTest(enc=enc):
                r = self.get("/users?enc=" + enc.replace(" ", "+").replace(",", "%2C"))
                self.assertEqual(r.status, 200)
                # What is forwarded is never altered.
                self.assertEqual(r.body, encode(enc, users_doc(enc)))
                row = self.row(r)
                wire = "deflate" if enc == "deflate-raw" else enc
                self.assertEqual(row["resp_encoding"], wire)
                self.assertIsNone(row["resp_body_note"])
                self.assertEqual(row["resp_body_size"], len(r.body))
                doc = json.loads(row["resp_body"])
                self.assertEqual([d["password"] for d in doc], ["[redacted]"] * 3)
                self.assertEqual(doc[0]["user"], "u0")
                ids.append(row["id"])
        for enc in ("gzip", "deflate", "br"):
            with self.subTest(request_enc=enc):
                body = json.dumps({"name": "n", "password": SECRET % ("req-" + enc)}).encode()
                wire = encode(enc, body)
                r = self.proxy.request("POST", "/api/", body=wire, headers=[
                    ("Content-Type", "application/json"), ("Content-Encoding", enc)])
                self.assertEqual(r.status, 201)
                row = self.row(r)
                self.assertEqual(row["req_encoding"], enc)
                self.assertEqual(row["req_body_size"], len(wire))
                self.assertEqual(json.loads(row["req_body"])["password"], "[redacted]")
        harness.wait_until(lambda: len(self.proxy.log_lines()) >= 8)
        data = self.all_bytes()
        self.assertNotIn(b"SECRET-pw", data)
        # The log line carries the decoded, redacted body too.
        lines = [json.loads(x) for x in self.proxy.log_lines()]
        line = [x for x in lines if x["id"] == ids[0]][0]
        self.assertEqual(line["resp_encoding"], "gzip")
        self.assertIn("[redacted]", line["resp_body"])

    def test_bomb_capped_by_decoded_size(self):
        r = self.get("/bomb")
        self.assertEqual(r.status, 200)
        row = self.row(r)
        self.assertEqual(len(row["resp_body"]), 64 * 1024)
        self.assertEqual(row["resp_truncated"], 1)
        self.assertEqual(row["resp_encoding"], "gzip")
        self.assertEqual(row["resp_body_size"], len(r.body))

    def test_undecodable_dropped_when_redacting(self):
        for path, why in (("/broken", "dropped: gzip: incorrect header check"),
                          ("/zstd", "dropped: unsupported content coding 'zstd'")):
            with self.subTest(path=path):
                r = self.get(path)
                self.assertEqual(r.status, 200)
                row = self.row(r)
                self.assertEqual(row["resp_body_note"], why)
                self.assertIn(row["resp_body"], (None, b""))
                self.assertGreater(row["resp_body_size"], 0)
        harness.wait_until(lambda: b"zstd" in self.all_bytes())
        self.assertNotIn(b"SECRET-pw", self.all_bytes())


class CodingsNoRedaction(CodingCase):
    PROXY_ARGS = ("--redact", "off")

    def test_undecodable_kept_as_received(self):
        r = self.get("/broken")
        row = self.row(r)
        self.assertEqual(row["resp_body_note"], "undecoded: gzip: incorrect header check")
        self.assertEqual(bytes(row["resp_body"]), r.body)
        # A decodable body is still stored decoded.
        r = self.get("/users?enc=br")
        row = self.row(r)
        self.assertEqual(json.loads(row["resp_body"]), json.loads(users_doc("br")))


if __name__ == "__main__":
    unittest.main()
