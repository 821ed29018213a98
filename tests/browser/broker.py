#!/usr/bin/env python3
"""A RabbitMQ node for the browser tests, driven over stdin: the same
tests/integration/rabbit.py the integration tests use (one way to start a
broker), behind a line protocol a node.js test can speak.

Prints one JSON line {"amqp": URL, "mgmt": URL} once the node is ready,
then answers each command line with one JSON line:
  dead NODE I      publishes a dead letter of NODE as the replicator does
                   (test_replication_cli.publish_dead): {"id": ID}
  depth QUEUE      {"depth": N} (exact, from rabbitmqctl: seconds)
  has QUEUE        {"has": bool} (the management API: at once)
  peer NAME        declares restspy.out.NAME bound to restspy.requests (what
                   restspy federate sets up for a peer): {"queue": Q}
EOF on stdin (or SIGTERM) stops and removes the node. Under CI a node that
cannot start is a failure (exit 1 with the reason), never a skip."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

import rabbit  # noqa: E402
from test_replication_cli import publish_dead, uuid7_at  # noqa: E402


def main():
    ok, why = rabbit.available()
    if not ok:
        print(json.dumps({"error": why}), flush=True)
        return 1
    broker = rabbit.start_brokers(["W"])[0]
    try:
        print(json.dumps({"amqp": broker.amqp_url, "mgmt": broker.mgmt_url}), flush=True)
        for line in sys.stdin:
            cmd = line.split()
            if cmd[:1] == ["dead"] and len(cmd) == 3:
                mid = uuid7_at(int(time.time() * 1000))
                i = int(cmd[2])
                routed = publish_dead(broker, cmd[1], mid, i, '{"n":%d}' % i)
                out = {"id": mid} if routed else {"error": "not routed"}
            elif cmd[:1] == ["depth"] and len(cmd) == 2:
                out = {"depth": broker.depth(cmd[1])}
            elif cmd[:1] == ["has"] and len(cmd) == 2:
                out = {"has": broker.api("GET", "/api/queues/%2F/" + broker.q(cmd[1]))[0] == 200}
            elif cmd[:1] == ["peer"] and len(cmd) == 2:
                q = "restspy.out." + cmd[1]
                broker.api_ok("PUT", "/api/queues/%%2F/%s" % q, {"durable": True})
                broker.api_ok("POST", "/api/bindings/%%2F/e/restspy.requests/q/%s" % q,
                              {"routing_key": "#"})
                out = {"queue": q}
            else:
                out = {"error": "unknown command: " + line.strip()}
            print(json.dumps(out), flush=True)
    finally:
        rabbit.stop_brokers([broker])
    return 0


if __name__ == "__main__":
    sys.exit(main())
