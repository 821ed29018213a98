"""GET /api/replication/peers (issue 13, the console's Replication view: "per
peer ... backlog"): what this site's broker holds for each peer, read from
its management API (setting mgmt) on the admin's thread pool, the same
reading `restspy replication status --mgmt` prints (replication/repl_peers).
Against a real RabbitMQ node: a queue restspy.out.<peer> holding messages is
a peer with that backlog; no mgmt is a 409, a management API that cannot be
reached a 502, each as JSON."""
import json
import unittest

import harness
import rabbit
from harness import Proxy


def error_of(test, r, status):
    """The admin's JSON error of r, which has the given status."""
    test.assertEqual(r.status, status, r)
    test.assertIn("json", r.header("Content-Type", ""))
    return json.loads(r.body)["error"]


def nowhere():
    return "http://127.0.0.1:%d" % harness.free_port()


class ConsolePeers(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rabbit.require()  # fails under CI, skips elsewhere
        cls.broker = rabbit.start_brokers(["P"])[0]
        cls.tmp = harness.make_tmpdir("consolepeers")

    @classmethod
    def tearDownClass(cls):
        rabbit.stop_brokers([cls.broker])
        harness.remove_tmpdir(cls.tmp)

    def proxy(self, *args):
        p = Proxy(self.tmp, nowhere(), args=["--amqp", self.broker.amqp_url] + list(args),
                  name="proxy%d" % harness.free_port())
        p.start()
        self.addCleanup(p.check_stopped)
        self.addCleanup(p.stop)
        return p

    def test_a_peer_and_its_backlog(self):
        q = "restspy.out.lyon"
        self.broker.api_ok("PUT", "/api/queues/%%2F/%s" % q, {"durable": True})
        self.addCleanup(self.broker.api, "DELETE", "/api/queues/%%2F/%s" % q)
        for i in range(3):
            self.assertTrue(self.broker.publish("", q, '{"n":%d}' % i, {"timestamp": 1}))
        p = self.proxy("--mgmt", self.broker.mgmt_url)

        def lyon():
            r = p.admin("GET", "/api/replication/peers")
            self.assertEqual(r.status, 200, r)
            doc = json.loads(r.body)
            peers = {x["peer"]: x for x in doc["peers"]}
            return peers.get("lyon") if peers.get("lyon", {}).get("held") == 3 else None
        # The management API's queue figures lag a few seconds behind.
        got = harness.wait_until(lyon, timeout=20, interval=0.5)
        self.assertTrue(got, p.admin("GET", "/api/replication/peers").body)
        self.assertTrue(got["queue"])
        self.assertIsNone(got["shovel"])  # no shovel set up: restspy federate was not run

    def test_no_mgmt_is_409(self):
        p = self.proxy()
        r = p.admin("GET", "/api/replication/peers")
        self.assertTrue(error_of(self, r, 409).startswith("no management API is configured"))

    def test_unreachable_mgmt_is_502(self):
        p = self.proxy("--mgmt", "http://guest:guest@127.0.0.1:%d" % harness.free_port())
        r = p.admin("GET", "/api/replication/peers")
        self.assertIn("Connection refused", error_of(self, r, 502))
        self.assertNotIn("guest:guest", r.body.decode(), "the password stays out of the answer")
        # The admin keeps answering.
        self.assertEqual(p.admin("GET", "/healthz").status, 200)


if __name__ == "__main__":
    unittest.main()
