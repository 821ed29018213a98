"""collectclient: a small client of the `restspy collect` protocol
(docs/collect-protocol.md), standard library only, for the tests.

    c = CollectClient(path)            # connects and says HELLO
    ack = c.pair(view="orders", method="POST", path="/api/orders",
                 status=201, req_body=b'{"a":1}', flags={"persist": True})
    ack -> Answer(type="ACK", seq=.., body={"status": "committed", "id": ..})

Lower-level pieces (frame(), pair_body(), send_raw(), read_answer()) let a
test send broken frames on purpose.
"""
import collections
import json
import socket
import struct

MAGIC = b"RSPY"
VERSION = 1
HELLO, WELCOME, PAIR, ACK, ERROR, FLUSH = 1, 2, 3, 4, 5, 6
FLAG_ACK = 0x0001  # version 2: answer this async pair
TYPE_NAMES = {HELLO: "HELLO", WELCOME: "WELCOME", PAIR: "PAIR", ACK: "ACK", ERROR: "ERROR",
              FLUSH: "FLUSH"}
HEADER = struct.Struct(">4sBBHII")

Answer = collections.namedtuple("Answer", "type seq body")


def frame(ftype, seq, body, version=VERSION, flags=0, magic=MAGIC, length=None):
    """One frame's bytes; length overrides the header's length field."""
    return HEADER.pack(magic, version, ftype, flags, seq,
                       len(body) if length is None else length) + body


def pair_body(view, method="GET", path="/", status=200, req_body=b"", resp_body=b"",
              version=VERSION, **meta):
    """A PAIR body: u32 meta length, the meta JSON, then both bodies.
    Any other meta key (query, host, req_headers, flags, durability, ...)
    is passed through as given. version=2 moves req_headers and
    resp_headers (lists of [name, value]) out of the meta into the header
    blocks ("Name: value\\r\\n" lines) before the bodies."""
    m = {"view": view, "method": method, "path": path, "status": status,
         "req_body_length": len(req_body), "resp_body_length": len(resp_body)}
    m.update(meta)
    blocks = b""
    if version >= 2:
        qh, rh = (("".join("%s: %s\r\n" % tuple(h) for h in m.pop(k, []))).encode()
                  for k in ("req_headers", "resp_headers"))
        m["req_headers_length"], m["resp_headers_length"] = len(qh), len(rh)
        blocks = qh + rh
    mj = json.dumps(m).encode()
    return struct.pack(">I", len(mj)) + mj + blocks + req_body + resp_body


class ProtocolError(Exception):
    pass


class CollectClient:
    """One connection to the daemon at path. hello=False leaves the HELLO
    to the test."""

    def __init__(self, path, hello=True, timeout=10.0, client="collectclient",
                 versions=(VERSION,)):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.seq = 0
        self.welcome = None
        self.version = VERSION
        if hello:
            a = self.request(HELLO, json.dumps({"versions": list(versions), "client": client})
                             .encode())
            if a.type != "WELCOME":
                raise ProtocolError("expected WELCOME, got %r" % (a,))
            self.welcome = a.body
            self.version = a.body["version"]

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def next_seq(self):
        self.seq += 1
        return self.seq

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, ftype, body, seq=None, flags=0):
        """Sends one frame (in the negotiated version); returns its seq."""
        seq = self.next_seq() if seq is None else seq
        version = VERSION if ftype == HELLO else self.version
        self.send_raw(frame(ftype, seq, body, version=version, flags=flags))
        return seq

    def _read_exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError("the daemon closed the connection")
            out += chunk
        return out

    def read_answer(self):
        """The next frame from the daemon, its JSON body decoded."""
        magic, version, ftype, flags, seq, length = HEADER.unpack(self._read_exact(16))
        if magic != MAGIC or version not in (VERSION, self.version) or flags:
            raise ProtocolError("bad header from the daemon: %r" % ((magic, version, flags),))
        body = self._read_exact(length)
        return Answer(TYPE_NAMES.get(ftype, ftype), seq, json.loads(body))

    def request(self, ftype, body):
        seq = self.send(ftype, body)
        a = self.read_answer()
        if a.seq != seq:
            raise ProtocolError("answer seq %d for frame %d" % (a.seq, seq))
        return a

    def send_pair(self, view, header_flags=0, **kw):
        """Sends a PAIR without waiting; returns its seq. header_flags are
        the frame's (FLAG_ACK); flags=... is the meta's switches."""
        return self.send(PAIR, pair_body(view, version=self.version, **kw),
                         flags=header_flags)

    def pair(self, view, **kw):
        """Sends a PAIR and returns its answer."""
        return self.request(PAIR, pair_body(view, version=self.version, **kw))

    def closed_by_peer(self):
        """True when the daemon has closed the connection (EOF)."""
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
