"""The proxy's view of its broker (issue 9 item 6), with a real RabbitMQ
node that comes up after the proxy: while it is not there, stderr says so
once and /healthz answers degraded with the reason; when it comes up, stderr
says the connection is back, /healthz is ok again and the outbox drains."""
import unittest

import harness
import rabbit
from harness import App, Proxy


class BrokerComesUp(unittest.TestCase):
    def setUp(self):
        rabbit.require()
        self.tmp = harness.make_tmpdir("brokerhealth")
        self.addCleanup(harness.remove_tmpdir, self.tmp)
        self.app = App(self.tmp).start()
        self.addCleanup(self.app.stop)
        # start() returns at once: the node takes seconds to accept AMQP
        # connections, and the proxy starts meanwhile.
        self.broker = rabbit.Broker("H").start()
        self.addCleanup(self.broker.cleanup)

    def replication_lines(self, proxy):
        return [ln for ln in proxy.stderr().splitlines() if "restspy: replication:" in ln]

    def test_broker_coming_up_is_told_and_healthz_recovers(self):
        proxy = Proxy(self.tmp, self.app.url, log=False, args=[
            "--amqp", self.broker.amqp_url, "--node", "health",
            "--retry-min", "100ms", "--retry-max", "500ms"]).start()
        self.addCleanup(lambda: proxy.running and proxy.stop())
        # The publisher's first attempt may still be under way ("connecting
        # to the broker") on a loaded machine: wait for its failure.
        docs = []

        def unreachable():
            r = proxy.admin("GET", "/healthz")
            self.assertEqual(r.status, 200, r)
            docs.append(r.json())
            return docs[-1]["status"] != "degraded" or \
                "replication: broker unreachable for " in docs[-1]["reasons"][0]
        self.assertTrue(harness.wait_until(unreachable, timeout=15), docs[-1])
        self.assertEqual(docs[-1]["status"], "degraded",
                         "broker up before the proxy? %r" % docs[-1])
        self.assertIn("replication: broker unreachable for ", docs[-1]["reasons"][0])
        r = proxy.request("POST", "/api/sites/", body={"slug": "up", "name": "N",
                                                        "url": "http://up.test/",
                                                        "status": "up"})
        self.assertEqual(r.status, 201, r)

        self.broker.wait_ready()
        # What `restspy federate` declares for a peer: a queue bound to
        # restspy.requests. Until it is there the broker returns the
        # publish and the outbox keeps it (issue 10).
        q = "/api/queues/%2F/restspy.out.peer"
        self.broker.api_ok("PUT", "/api/exchanges/%2F/restspy.requests",
                           {"type": "topic", "durable": True})
        self.broker.api_ok("PUT", q, {"durable": True, "arguments": {"x-queue-type": "classic"}})
        self.broker.api_ok("POST", "/api/bindings/%2F/e/restspy.requests/q/restspy.out.peer",
                           {"routing_key": "#"})
        self.assertTrue(harness.wait_until(
            lambda: proxy.admin("GET", "/healthz").json() == {"status": "ok"}, timeout=30),
            proxy.admin("GET", "/healthz").body)
        self.assertTrue(harness.wait_until(
            lambda: proxy.stats()["replication"]["outbox_depth"] == 0, timeout=20),
            proxy.stats())
        st = proxy.stats()["replication"]
        self.assertTrue(st["connected"])
        self.assertEqual((st["down_since_us"], st["failed_attempts"]), (0, 0))

        self.assertEqual(1, self.broker.depth("restspy.out.peer"))
        lines = self.replication_lines(proxy)
        # Returned before the queue was bound: told, then its end.
        routing = [ln for ln in lines if "unroutable" in ln or "routed again" in ln]
        lines = [ln for ln in lines if ln not in routing]
        self.assertEqual(len(routing) % 2, 0, routing)
        self.assertEqual(len(lines), 2, lines)
        self.assertTrue(lines[0].startswith("restspy: replication: broker unreachable: "), lines)
        self.assertRegex(lines[1], r"^restspy: replication: broker connection restored after "
                                   r"\d+\.\ds \(\d+ failed attempts\); sending the outbox$")
        self.assertNotIn(self.broker.password + "@", proxy.stderr())
        proxy.check_stopped(self)


if __name__ == "__main__":
    unittest.main()
