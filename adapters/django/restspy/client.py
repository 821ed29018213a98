"""restspy.client: the client side of the `restspy collect` protocol
(docs/collect-protocol.md, versions 2 and 1), standard library only.

Owns: Unix-socket connections to the daemon (HELLO/WELCOME on connect,
PAIR frames, the ACK or ERROR answer matched by seq) and a small pool of
them per socket path, safe for threaded servers (a connection is used by
one thread at a time) and for forking ones (a child never reuses its
parent's connections).
Promises: send_pair() of a sync pair returns the daemon's ACK body or
raises Miss within the timeout it is given, whatever the daemon does. An
async pair is handed off: send_pair() returns once the frame is written
(the protocol lets a client send before reading earlier answers), and its
answer is read later, on the connection's next use or by flush(), and
reported to the pool's on_async callback (ACK, ERROR, or the connection
lost with it unanswered): never dropped unheard. In version 2 the daemon
answers an async pair only when asked (every ACK_EVERY-th pair carries the
ACK flag) or when it refuses it, and an answer covers every pair sent
before it, so a request pays no read and no parse for its pair. At most
MAX_PENDING async pairs wait unsettled per connection. No pair is ever sent twice (a pair is retried
on a fresh connection only when the pooled one was found closed before a
byte of it was written).
"""
import collections
import json
import os
import select
import socket
import struct
import threading
import time

MAGIC = b"RSPY"
HELLO_VERSION = 1  # the version HELLO and WELCOME are written in
VERSIONS = (2, 1)  # what this client speaks, best first
HELLO, WELCOME, PAIR, ACK, ERROR, FLUSH = 1, 2, 3, 4, 5, 6
FLAG_ACK = 0x0001  # version 2: answer this async pair (and so the ones before it)
HEADER = struct.Struct(">4sBBHII")
U32 = struct.Struct(">I")
# The largest answer body read from the daemon (its answers are small JSON).
MAX_ANSWER = 1 << 20
# Async pairs sent on one connection whose answers are not read yet: past
# it, the next send reads answers first (the daemon's write buffer stays
# small).
MAX_PENDING = 64
# Version 2: every ACK_EVERY-th async pair asks for an answer (it settles
# the ones before it too). Half of MAX_PENDING, so that an answer is always
# on its way when the bound is reached.
ACK_EVERY = 32


class Miss(Exception):
    """The daemon did not acknowledge a pair: unreachable, slow past the
    timeout, closed the connection, or answered ERROR (error is its text)."""

    def __init__(self, message, answered=False):
        super().__init__(message)
        self.answered = answered  # the daemon answered ERROR (it is reachable)


def header_block(headers):
    """Version 2's header block: "Name: value\\r\\n" lines, UTF-8."""
    return "".join(["%s: %s\r\n" % h for h in headers]).encode("utf-8")


def pair_body(version, meta, req_headers, resp_headers, req_body, resp_body):
    """A PAIR frame's body for protocol version: u32 meta length, the meta
    JSON, then (version 2) both header blocks, then both bodies; version 1
    carries the headers (lists of (name, value)) in the meta. meta must
    hold req_body_length and resp_body_length (fit() sets them)."""
    if version >= 2:
        qh, rh = header_block(req_headers), header_block(resp_headers)
        meta["req_headers_length"] = len(qh)
        meta["resp_headers_length"] = len(rh)
        mj = json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return b"".join((U32.pack(len(mj)), mj, qh, rh, req_body, resp_body))
    meta["req_headers"] = req_headers
    meta["resp_headers"] = resp_headers
    mj = json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return b"".join((U32.pack(len(mj)), mj, req_body, resp_body))


class Connection:
    """One connection to the daemon, HELLO done. Not thread-safe: the pool
    hands it to one thread at a time."""

    def __init__(self, path, timeout):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.seq = 0
        self.max_frame = 0
        self.version = HELLO_VERSION
        self.rbuf = bytearray()  # bytes read, not yet a whole frame
        # (seq, what, answered) of async pairs not settled; answered: an
        # answer of its own is on its way (version 1: every pair; version 2:
        # a flagged one)
        self.pending = collections.deque()
        self.awaited = 0  # answers on their way for async pairs (version 2: flagged ones)
        self.unflagged = 0  # version 2: async pairs sent since the last flagged one
        deadline = time.monotonic() + timeout
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(path)
            # Non-blocking from here on: a read or write that can go at once
            # costs one system call, and only one that cannot waits (poll,
            # up to its deadline). A timeout on the socket would cost a poll
            # before every call and an ioctl per change of timeout, which
            # measured about a third of what the adapter added to a view.
            self.sock.setblocking(False)
            self.poller = select.poll()
            hello = json.dumps({"versions": list(VERSIONS),
                                "client": "restspy-django"}).encode()
            ftype, body = self.exchange(HELLO, hello, deadline)
        except Miss:
            self.close()
            raise
        except OSError as e:
            self.close()
            raise Miss("cannot connect to restspy collect at %s: %s" % (path, e))
        if ftype != WELCOME or body.get("version") not in VERSIONS:
            self.close()
            raise Miss("restspy collect at %s refused the HELLO: %s" %
                       (path, body.get("error", body)))
        self.version = body["version"]
        self.max_frame = int(body.get("max_frame", 0))

    def close(self, why="the connection was closed"):
        if self.pending:
            self.lost(why)
        self.sock.close()

    @staticmethod
    def on_async(ftype, body, what):
        """Default report of an async pair's answer: none (Pool sets its own)."""

    def _wait(self, events, deadline):
        """Waits until the socket is ready for events (POLLIN or POLLOUT),
        or raises socket.timeout at deadline."""
        self.poller.register(self.sock, events)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout("timed out")
                if self.poller.poll(max(int(left * 1000), 1)):
                    return
        finally:
            self.poller.unregister(self.sock)

    def _fill(self, deadline):
        """Reads what the daemon sent into rbuf: waits until deadline, or
        not at all when deadline is None (then False when nothing came)."""
        while True:
            try:
                chunk = self.sock.recv(65536)
                break
            except BlockingIOError:
                if deadline is None:
                    return False
                self._wait(select.POLLIN, deadline)
        if not chunk:
            raise Miss("restspy collect closed the connection before answering")
        self.rbuf += chunk
        return True

    def check_idle(self):
        """Before a pooled connection is reused: reads (without waiting)
        what the daemon sent since, settles the async answers among it,
        and raises Miss when the daemon has closed the connection. One
        system call when nothing came; none in version 2 while no answer
        is on its way (a daemon that closed the connection meanwhile
        fails the next send instead, before a byte of it is taken)."""
        if self.version >= 2 and not self.awaited:
            return
        self._fill(None)
        self.settle(None)

    def _frame(self):
        """The next whole answer in rbuf, (type, seq, JSON body), or None."""
        if len(self.rbuf) < HEADER.size:
            return None
        magic, version, ftype, flags, aseq, length = HEADER.unpack_from(self.rbuf)
        if magic != MAGIC or version not in (HELLO_VERSION, self.version) or flags or \
                length > MAX_ANSWER:
            raise Miss("restspy collect sent a bad frame header")
        if len(self.rbuf) < HEADER.size + length:
            return None
        raw = bytes(self.rbuf[HEADER.size:HEADER.size + length])
        del self.rbuf[:HEADER.size + length]
        try:
            return ftype, aseq, json.loads(raw)
        except ValueError:
            raise Miss("restspy collect sent an answer that is not JSON")

    def send(self, ftype, body, deadline, flags=0):
        """Writes one frame; returns its seq. OSError when it cannot,
        socket.timeout when it could not be written by deadline."""
        self.seq = self.seq % 0xFFFFFFFF + 1
        version = HELLO_VERSION if ftype == HELLO else self.version
        data = memoryview(HEADER.pack(MAGIC, version, ftype, flags, self.seq, len(body)) + body)
        while data:
            try:
                data = data[self.sock.send(data):]
            except BlockingIOError:
                self._wait(select.POLLOUT, deadline)
        return self.seq

    def next_answer(self, deadline):
        """The next answer, in the order of the frames sent: (type, seq,
        body); waits until deadline, or, when deadline is None, returns None
        at once if it has not come yet."""
        while True:
            got = self._frame()
            if got is not None:
                return got
            if not self._fill(deadline):
                return None

    def answer(self, seq, deadline):
        """Reads the answer to frame seq (a sync pair, a HELLO, a FLUSH),
        settling the async pairs' answers that come before it: (type, JSON
        body)."""
        while True:
            ftype, aseq, body = self.next_answer(deadline)
            if ftype == ERROR and body.get("close"):
                self.lost("restspy collect closed the connection: %s" % body.get("error"))
                return ftype, body
            if aseq == seq:
                if self.version >= 2:
                    self.settle_before()
                return ftype, body
            self._settle_one(ftype, aseq, body)

    def settle_before(self):
        """Version 2, an answer to a later frame has come: every pending
        pair was taken (a refused one had its ERROR first)."""
        while self.pending:
            _, what, _ = self.pending.popleft()
            self.on_async(ACK, {"status": "accepted"}, what)
        self.awaited = 0
        self.unflagged = 0

    def _settle_one(self, ftype, aseq, body):
        """An answer to an async pair: an ACK settles it and, in version 2,
        every pair sent before it (the daemon answers in order, and refused
        ones got an ERROR of their own first); an ERROR settles that pair
        alone. Reported to on_async. Miss when no pending pair has aseq, or
        when the daemon closed the stream."""
        if ftype == ERROR and body.get("close"):
            raise Miss("restspy collect closed the connection: %s" % body.get("error"))
        at = next((i for i, p in enumerate(self.pending) if p[0] == aseq), None)
        if at is None:
            raise Miss("restspy collect answered frame %d, which is not pending" % aseq)
        if ftype == ERROR:
            _, what, answered = self.pending[at]
            del self.pending[at]
            self.awaited -= answered
            self.on_async(ftype, body, what)
            return
        for _ in range(at + 1):
            seq, what, _ = self.pending.popleft()
            self.on_async(ftype, body if seq == aseq else {"status": "accepted"}, what)
        self.awaited -= 1

    def settle(self, deadline, all_of_them=False):
        """Reads the answers on their way for pending async pairs and
        reports them (on_async): those already here (deadline None), or
        all of them, or (all_of_them False, a deadline) enough to bring the
        pending pairs under MAX_PENDING. Version 2: pairs sent after the
        last flagged one stay pending (flush() asks for them)."""
        while self.awaited and self.pending:
            if deadline is not None and not all_of_them and len(self.pending) < MAX_PENDING:
                deadline = None  # under the bound: only what has come
            got = self.next_answer(deadline)
            if got is None:
                return
            self._settle_one(*got)

    def lost(self, why):
        """The connection is gone: its pending async pairs were never
        answered; each is reported as an ERROR with why."""
        while self.pending:
            _, what, _ = self.pending.popleft()
            self.on_async(ERROR, {"error": why, "close": True}, what)
        self.awaited = 0

    def exchange(self, ftype, body, deadline):
        """Sends a frame and reads its answer (Miss on a timeout too)."""
        try:
            seq = self.send(ftype, body, deadline)
            return self.answer(seq, deadline)
        except socket.timeout:
            raise Miss("restspy collect did not answer in time")

    def send_async(self, body, deadline, what):
        """Sends an async PAIR, pending from here with what (reported to
        on_async when settled); in version 2 it asks for its answer when
        one is due (ACK_EVERY)."""
        answered = self.version < 2 or self.unflagged + 1 >= ACK_EVERY
        seq = self.send(PAIR, body, deadline, FLAG_ACK if self.version >= 2 and answered else 0)
        self.pending.append((seq, what, answered))
        self.awaited += answered
        self.unflagged = 0 if answered else self.unflagged + 1

    def settle_all(self, deadline):
        """Settles every pending async pair: version 2 asks with a FLUSH
        (its answer comes after every earlier one), version 1 reads them."""
        if not self.pending:
            return
        if self.version < 2:
            self.settle(deadline, all_of_them=True)
            return
        seq = self.send(FLUSH, b"", deadline)
        ftype, body = self.answer(seq, deadline)  # settles them (settle_before)
        if ftype != ACK:
            raise Miss("restspy collect refused the FLUSH: %s" % body.get("error", body))


class Pool:
    """Idle connections to one socket path, at most size kept; take() and
    give() are thread-safe. After a fork the child starts with none.
    on_async(ftype, body, meta) hears the answer of every async pair (ACK,
    ERROR, or an ERROR made up when its connection was lost), on whichever
    thread reads it."""

    def __init__(self, path, size, on_async=None):
        self.path = path
        self.size = size
        self.lock = threading.Lock()
        self.idle = []
        self.pid = os.getpid()
        self.on_async = on_async or Connection.on_async

    def connect(self, timeout):
        c = Connection(self.path, timeout)
        c.on_async = self.on_async
        return c

    def take(self):
        """An idle connection that looks alive, the answers already there
        settled, or None."""
        while True:
            with self.lock:
                if self.pid != os.getpid():
                    self.idle, self.pid = [], os.getpid()  # the parent's: not ours to use
                if not self.idle:
                    return None
                c = self.idle.pop()
            try:
                c.check_idle()
            except (Miss, OSError) as e:
                c.close("restspy collect connection failed: %s" % e)
                continue
            return c

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

    def flush(self, timeout):
        """Reads the answers of every async pair sent so far on the idle
        connections (up to timeout): afterwards on_async has heard them all
        (a pair whose answer did not come in time is reported lost)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            idle, self.idle = self.idle, []
        for c in idle:
            try:
                c.settle_all(deadline)
            except socket.timeout:
                c.close("restspy collect did not acknowledge within %gs" % timeout)
                continue
            except (Miss, OSError) as e:
                c.close("restspy collect connection failed: %s" % e)
                continue
            self.give(c)

    def send_pair(self, meta, req_headers, resp_headers, req_body, resp_body, timeout):
        """Sends one PAIR (headers as lists of (name, value)). A sync one
        (meta's durability) returns the daemon's ACK body ({"status",
        "id"}); an async one returns {"status": "sent"} once written, its
        answer going to on_async later (see the module's promise). Raises
        Miss when it could not be sent, or a sync one was not acknowledged.
        Bodies are cut so that the frame fits the daemon's max_frame (the
        daemon's own caps are lower by default)."""
        deadline = time.monotonic() + timeout
        handoff = meta.get("durability") == "async"
        c = self.take()
        fresh = c is None
        if fresh:
            c = self.connect(timeout)
        req_body, resp_body = fit(meta, (req_headers, resp_headers), req_body, resp_body,
                                  c.max_frame)
        body = pair_body(c.version, meta, req_headers, resp_headers, req_body, resp_body)
        try:
            if handoff and len(c.pending) >= MAX_PENDING:
                c.settle(deadline)
            try:
                seq = c.send_async(body, deadline, meta) if handoff else \
                    c.send(PAIR, body, deadline)
            except (BrokenPipeError, ConnectionResetError):
                if fresh:
                    raise
                # A pooled connection the daemon closed since it was last
                # used: nothing of this pair reached it, so it is safe to
                # resend (on a connection of the same version: the body is
                # built for it).
                c.close("restspy collect closed the connection")
                c = self.connect(max(deadline - time.monotonic(), 0.001))
                body = pair_body(c.version, meta, req_headers, resp_headers, req_body,
                                 resp_body)
                seq = c.send_async(body, deadline, meta) if handoff else \
                    c.send(PAIR, body, deadline)
            if handoff:
                self.give(c)
                return {"status": "sent"}
            ftype, answer = c.answer(seq, deadline)
        except socket.timeout:
            c.close("restspy collect did not acknowledge within %gs" % timeout)
            raise Miss("restspy collect did not acknowledge within %gs" % timeout)
        except Miss as e:
            c.close(str(e))
            raise
        except OSError as e:
            c.close("restspy collect connection failed: %s" % e)
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


def fit(meta, headers, req_body, resp_body, max_frame):
    """The bodies, cut so that the PAIR frame fits max_frame (0: no limit),
    the request body kept first; meta's lengths are set to match. headers
    (both lists) count with the meta, wherever the version puts them."""
    if max_frame > 0 and len(req_body) + len(resp_body) + (1 << 20) > max_frame:
        # The meta grows by the lengths' digits at most: keep 64 bytes
        # spare; the headers as JSON are never shorter than as a block.
        room = max_frame - len(json.dumps([meta, headers], ensure_ascii=False).encode("utf-8")) \
            - 4 - 64
        room = max(room, 0)
        req_body = req_body[:room]
        resp_body = resp_body[:room - len(req_body)]
    meta["req_body_length"] = len(req_body)
    meta["resp_body_length"] = len(resp_body)
    return req_body, resp_body
