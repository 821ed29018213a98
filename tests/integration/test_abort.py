"""Clients that vanish in the middle of an answer (as load generators do when
they stop): a failed write closes the connection while llhttp still holds the
rest of the upstream's bytes, and restspy must neither crash nor leak, and
must still stop cleanly with exit 0."""
import socket
import struct
import threading
import unittest

import harness
from harness import App, Proxy


class ClientsVanish(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.make_tmpdir("abort")
        cls.app = App(cls.tmp).start()
        cls.proxy = Proxy(cls.tmp, cls.app.url, log=False, args=["--workers", "1"]).start()

    @classmethod
    def tearDownClass(cls):
        if cls.proxy.running:
            cls.proxy.stop()
        cls.app.stop()
        harness.remove_tmpdir(cls.tmp)

    def hit_and_reset(self, path, read=0):
        s = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5)
        s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        if read:
            try:
                s.recv(read)
            except OSError:
                pass
        # RST instead of FIN: the proxy's next write fails at once.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()

    def test_resets_mid_answer(self):
        # Chunked answers are the sharpest case: the final "0" chunk is
        # written from inside the parser callback that completes the
        # answer, after the client is gone (this crashed restspy once).
        def worker(k):
            for i in range(40):
                self.hit_and_reset(b"/api/big/?n=3000&stream=1", read=i % 2)
                self.hit_and_reset(b"/api/big/?n=%d" % (50000 + i * 997), read=(i % 3) * 100)
        ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        # Still serving, and every request was captured once with its fate.
        r = self.proxy.request("GET", "/api/sites/")
        self.assertEqual(r.status, 200)
        self.proxy.stop()
        self.proxy.check_stopped(self)  # exit 0, no sanitizer report


if __name__ == "__main__":
    unittest.main()
