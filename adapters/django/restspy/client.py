"""restspy.client: the client side of the `restspy collect` protocol
(docs/collect-protocol.md, version 1), standard library only.

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
lost with it unanswered): never dropped unheard. At most MAX_PENDING
answers wait per connection. No pair is ever sent twice (a pair is retried
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
VERSION = 1
HELLO, WELCOME, PAIR, ACK, ERROR = 1, 2, 3, 4, 5
HEADER = struct.Struct(">4sBBHII")
U32 = struct.Struct(">I")
# The largest answer body read from the daemon (its answers are small JSON).
MAX_ANSWER = 1 << 20
# Async pairs sent on one connection whose answers are not read yet: past
# it, the next send reads answers first (the daemon's write buffer stays
# small).
MAX_PENDING = 64


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
        self.rbuf = bytearray()  # bytes read, not yet a whole frame
        self.pending = collections.deque()  # (seq, what) of async pairs not answered
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
        system call when nothing came."""
        self._fill(None)
        self.settle(None)

    def _frame(self):
        """The next whole answer in rbuf, (type, seq, JSON body), or None."""
        if len(self.rbuf) < HEADER.size:
            return None
        magic, version, ftype, flags, aseq, length = HEADER.unpack_from(self.rbuf)
        if magic != MAGIC or version != VERSION or flags or length > MAX_ANSWER:
            raise Miss("restspy collect sent a bad frame header")
        if len(self.rbuf) < HEADER.size + length:
            return None
        raw = bytes(self.rbuf[HEADER.size:HEADER.size + length])
        del self.rbuf[:HEADER.size + length]
        try:
            return ftype, aseq, json.loads(raw)
        except ValueError:
            raise Miss("restspy collect sent an answer that is not JSON")

    def send(self, ftype, body, deadline):
        """Writes one frame; returns its seq. OSError when it cannot,
        socket.timeout when it could not be written by deadline."""
        self.seq = self.seq % 0xFFFFFFFF + 1
        data = memoryview(HEADER.pack(MAGIC, VERSION, ftype, 0, self.seq, len(body)) + body)
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
        """Reads the answer to frame seq, sent after every pending async
        pair (their answers come first and are settled): (type, JSON body)."""
        self.settle(deadline, all_of_them=True)
        ftype, aseq, body = self.next_answer(deadline)
        if aseq != seq and not (ftype == ERROR and body.get("close")):
            raise Miss("restspy collect answered frame %d, expected %d" % (aseq, seq))
        return ftype, body

    def settle(self, deadline, all_of_them=False, on_async=None):
        """Reads the answers of pending async pairs and reports each to
        on_async(ftype, body, what) (self.on_async when None): those already
        here (deadline None), or all of them, or (all_of_them False, a
        deadline) enough to bring them under MAX_PENDING."""
        report = on_async or self.on_async
        while self.pending:
            if deadline is not None and not all_of_them and len(self.pending) < MAX_PENDING:
                deadline = None  # under the bound: only what has come
            got = self.next_answer(deadline)
            if got is None:
                return
            ftype, aseq, body = got
            seq, what = self.pending.popleft()
            if aseq != seq and not (ftype == ERROR and body.get("close")):
                self.pending.appendleft((seq, what))
                raise Miss("restspy collect answered frame %d, expected %d" % (aseq, seq))
            report(ftype, body, what)
            if ftype == ERROR and body.get("close"):
                raise Miss("restspy collect closed the connection: %s" % body.get("error"))

    def lost(self, why):
        """The connection is gone: its pending async pairs were never
        answered; each is reported as an ERROR with why."""
        while self.pending:
            _, what = self.pending.popleft()
            self.on_async(ERROR, {"error": why, "close": True}, what)

    def exchange(self, ftype, body, deadline):
        """Sends a frame and reads its answer (Miss on a timeout too)."""
        try:
            seq = self.send(ftype, body, deadline)
            return self.answer(seq, deadline)
        except socket.timeout:
            raise Miss("restspy collect did not answer in time")


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
                c.settle(deadline, all_of_them=True)
            except socket.timeout:
                c.close("restspy collect did not acknowledge within %gs" % timeout)
                continue
            except (Miss, OSError) as e:
                c.close("restspy collect connection failed: %s" % e)
                continue
            self.give(c)

    def send_pair(self, meta, req_body, resp_body, timeout):
        """Sends one PAIR. A sync one (meta's durability) returns the
        daemon's ACK body ({"status", "id"}); an async one returns
        {"status": "sent"} once written, its answer going to on_async later
        (see the module's promise). Raises Miss when it could not be sent, or
        a sync one was not acknowledged. Bodies are cut so that the frame
        fits the daemon's max_frame (the daemon's own caps are lower by
        default)."""
        deadline = time.monotonic() + timeout
        handoff = meta.get("durability") == "async"
        c = self.take()
        fresh = c is None
        if fresh:
            c = self.connect(timeout)
        req_body, resp_body = fit(meta, req_body, resp_body, c.max_frame)
        body = pair_body(meta, req_body, resp_body)
        try:
            if handoff and len(c.pending) >= MAX_PENDING:
                c.settle(deadline)
            try:
                seq = c.send(PAIR, body, deadline)
            except (BrokenPipeError, ConnectionResetError):
                if fresh:
                    raise
                # A pooled connection the daemon closed since the check:
                # nothing of this pair reached it, so it is safe to resend.
                c.close("restspy collect closed the connection")
                c = self.connect(max(deadline - time.monotonic(), 0.001))
                seq = c.send(PAIR, body, deadline)
            if handoff:
                c.pending.append((seq, meta))
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
