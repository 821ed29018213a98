"""restspy.client: the client side of the `restspy collect` protocol
(docs/collect-protocol.md, version 1), standard library only.

Owns: Unix-socket connections to the daemon (HELLO/WELCOME on connect,
PAIR frames, the ACK or ERROR answer matched by seq) and a small pool of
them per socket path, safe for threaded servers (a connection is used by
one thread at a time) and for forking ones (a child never reuses its
parent's connections).
Promises: send_pair() returns the daemon's ACK body or raises Miss within
the timeout it is given, whatever the daemon does; it never sends a pair
twice (a pair is retried on a fresh connection only when the pooled one was
found closed before a byte of it was written).
"""
import json
import os
import socket
import struct
import threading
import time

MAGIC = b"RSPY"
VERSION = 1
HELLO, WELCOME, PAIR, ACK, ERROR = 1, 2, 3, 4, 5
HEADER = struct.Struct(">4sBBHII")
U32 = struct.Struct(">I")
# The largest answer body read from the daemon (its answers are small JSON).
MAX_ANSWER = 1 << 20


class Miss(Exception):
    """The daemon did not acknowledge a pair: unreachable, slow past the
    timeout, closed the connection, or answered ERROR (error is its text)."""

    def __init__(self, message, answered=False):
        super().__init__(message)
        self.answered = answered  # the daemon answered ERROR (it is reachable)


def pair_body(meta, req_body, resp_body):
    """A PAIR frame's body: u32 meta length, the meta JSON, both bodies.
    meta must hold req_body_length and resp_body_length."""
    mj = json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return b"".join((U32.pack(len(mj)), mj, req_body, resp_body))


class Connection:
    """One connection to the daemon, HELLO done. Not thread-safe: the pool
    hands it to one thread at a time."""

    def __init__(self, path, timeout):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.seq = 0
        self.max_frame = 0
        deadline = time.monotonic() + timeout
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(path)
            hello = json.dumps({"versions": [VERSION], "client": "restspy-django"}).encode()
            ftype, body = self.exchange(HELLO, hello, deadline)
        except Miss:
            self.close()
            raise
        except OSError as e:
            self.close()
            raise Miss("cannot connect to restspy collect at %s: %s" % (path, e))
        if ftype != WELCOME or body.get("version") != VERSION:
            self.close()
            raise Miss("restspy collect at %s refused the HELLO: %s" %
                       (path, body.get("error", body)))
        self.max_frame = int(body.get("max_frame", 0))

    def close(self):
        self.sock.close()

    def closed_by_peer(self):
        """True when the daemon has closed this (idle) connection: checked
        without blocking before a pooled connection is reused."""
        # Non-blocking mode: with a timeout set, Python would first wait
        # up to that timeout for the socket to become readable.
        self.sock.settimeout(0.0)
        try:
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _read_exact(self, n, deadline):
        parts = []
        while n > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out")
            self.sock.settimeout(left)
            chunk = self.sock.recv(min(n, 65536))
            if not chunk:
                raise Miss("restspy collect closed the connection before answering")
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def send(self, ftype, body, deadline):
        """Writes one frame; returns its seq. OSError when it cannot."""
        self.seq = self.seq % 0xFFFFFFFF + 1
        self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        self.sock.sendall(HEADER.pack(MAGIC, VERSION, ftype, 0, self.seq, len(body)) + body)
        return self.seq

    def answer(self, seq, deadline):
        """Reads the answer to frame seq: (type, JSON body)."""
        magic, version, ftype, flags, aseq, length = HEADER.unpack(
            self._read_exact(HEADER.size, deadline))
        if magic != MAGIC or version != VERSION or flags or length > MAX_ANSWER:
            raise Miss("restspy collect sent a bad frame header")
        try:
            body = json.loads(self._read_exact(length, deadline))
        except ValueError:
            raise Miss("restspy collect sent an answer that is not JSON")
        if aseq != seq and not (ftype == ERROR and body.get("close")):
            raise Miss("restspy collect answered frame %d, expected %d" % (aseq, seq))
        return ftype, body

    def exchange(self, ftype, body, deadline):
        """Sends a frame and reads its answer (Miss on a timeout too)."""
        try:
            seq = self.send(ftype, body, deadline)
            return self.answer(seq, deadline)
        except socket.timeout:
            raise Miss("restspy collect did not answer in time")


class Pool:
    """Idle connections to one socket path, at most size kept; take() and
    give() are thread-safe. After a fork the child starts with none."""

    def __init__(self, path, size):
        self.path = path
        self.size = size
        self.lock = threading.Lock()
        self.idle = []
        self.pid = os.getpid()

    def take(self):
        """An idle connection that looks alive, or None."""
        with self.lock:
            if self.pid != os.getpid():
                self.idle, self.pid = [], os.getpid()  # the parent's: not ours to use
            while self.idle:
                c = self.idle.pop()
                if not c.closed_by_peer():
                    return c
                c.close()
        return None

    def give(self, c):
        with self.lock:
            if self.pid == os.getpid() and len(self.idle) < self.size:
                self.idle.append(c)
                return
        c.close()

    def close(self):
        with self.lock:
            idle, self.idle = self.idle, []
        for c in idle:
            c.close()

    def send_pair(self, meta, req_body, resp_body, timeout):
        """Sends one PAIR and returns the daemon's ACK body ({"status",
        "id"}); raises Miss (see the module's promise). Bodies are cut so
        that the frame fits the daemon's max_frame (the daemon's own caps
        are lower by default)."""
        deadline = time.monotonic() + timeout
        c = self.take()
        fresh = c is None
        if fresh:
            c = Connection(self.path, timeout)
        req_body, resp_body = fit(meta, req_body, resp_body, c.max_frame)
        body = pair_body(meta, req_body, resp_body)
        try:
            try:
                seq = c.send(PAIR, body, deadline)
            except (BrokenPipeError, ConnectionResetError):
                if fresh:
                    raise
                # A pooled connection the daemon closed since the check:
                # nothing of this pair reached it, so it is safe to resend.
                c.close()
                c = Connection(self.path, max(deadline - time.monotonic(), 0.001))
                seq = c.send(PAIR, body, deadline)
            ftype, answer = c.answer(seq, deadline)
        except socket.timeout:
            c.close()
            raise Miss("restspy collect did not acknowledge within %gs" % timeout)
        except Miss:
            c.close()
            raise
        except OSError as e:
            c.close()
            raise Miss("restspy collect connection failed: %s" % e)
        if ftype == ACK:
            self.give(c)
            return answer
        if ftype == ERROR and not answer.get("close"):
            self.give(c)
        else:
            c.close()
        raise Miss("restspy collect refused the pair: %s" % answer.get("error", answer),
                   answered=True)


def fit(meta, req_body, resp_body, max_frame):
    """The bodies, cut so that the PAIR frame fits max_frame (0: no limit),
    the request body kept first; meta's lengths are set to match."""
    if max_frame > 0 and len(req_body) + len(resp_body) + (1 << 20) > max_frame:
        # The meta grows by the lengths' digits at most: keep 64 bytes spare.
        room = max_frame - len(json.dumps(meta, ensure_ascii=False).encode("utf-8")) - 4 - 64
        room = max(room, 0)
        req_body = req_body[:room]
        resp_body = resp_body[:room - len(req_body)]
    meta["req_body_length"] = len(req_body)
    meta["resp_body_length"] = len(resp_body)
    return req_body, resp_body
