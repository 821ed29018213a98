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
HELLO, WELCOME, PAIR, ACK, ERROR = 1, 2, 3, 4, 5
TYPE_NAMES = {HELLO: "HELLO", WELCOME: "WELCOME", PAIR: "PAIR", ACK: "ACK", ERROR: "ERROR"}
HEADER = struct.Struct(">4sBBHII")

Answer = collections.namedtuple("Answer", "type seq body")


def frame(ftype, seq, body, version=VERSION, flags=0, magic=MAGIC, length=None):
    """One frame's bytes; length overrides the header's length field."""
    return HEADER.pack(magic, version, ftype, flags, seq,
                       len(body) if length is None else length) + body


def pair_body(view, method="GET", path="/", status=200, req_body=b"", resp_body=b"",
              **meta):
    """A PAIR body: u32 meta length, the meta JSON, then both bodies.
    Any other meta key (query, host, req_headers, flags, durability, ...)
    is passed through as given."""
    m = {"view": view, "method": method, "path": path, "status": status,
         "req_body_length": len(req_body), "resp_body_length": len(resp_body)}
    m.update(meta)
    mj = json.dumps(m).encode()
    return struct.pack(">I", len(mj)) + mj + req_body + resp_body


class ProtocolError(Exception):
    pass


class CollectClient:
    """One connection to the daemon at path. hello=False leaves the HELLO
    to the test."""

    def __init__(self, path, hello=True, timeout=10.0, client="collectclient"):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.seq = 0
        self.welcome = None
        if hello:
            a = self.request(HELLO, json.dumps({"versions": [VERSION], "client": client})
                             .encode())
            if a.type != "WELCOME":
                raise ProtocolError("expected WELCOME, got %r" % (a,))
            self.welcome = a.body

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

    def send(self, ftype, body, seq=None):
        """Sends one frame; returns its seq."""
        seq = self.next_seq() if seq is None else seq
        self.send_raw(frame(ftype, seq, body))
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
        if magic != MAGIC or version != VERSION or flags:
            raise ProtocolError("bad header from the daemon: %r" % ((magic, version, flags),))
        body = self._read_exact(length)
        return Answer(TYPE_NAMES.get(ftype, ftype), seq, json.loads(body))

    def request(self, ftype, body):
        seq = self.send(ftype, body)
        a = self.read_answer()
        if a.seq != seq:
            raise ProtocolError("answer seq %d for frame %d" % (a.seq, seq))
        return a

    def send_pair(self, view, **kw):
        """Sends a PAIR without waiting; returns its seq."""
        return self.send(PAIR, pair_body(view, **kw))

    def pair(self, view, **kw):
        """Sends a PAIR and returns its answer."""
        return self.request(PAIR, pair_body(view, **kw))

    def closed_by_peer(self):
        """True when the daemon has closed the connection (EOF)."""
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
