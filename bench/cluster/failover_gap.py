"""Fail-over gap of a replicated partition: against a running 3-node cluster (make cluster, or
nodes on 127.0.0.1-3), creates a 1-partition RF=3 topic, produces idempotent acks=all records
continuously through all three nodes, stops the partition's leader 3 s in (kill -9, or SIGTERM
with `term`), and prints the longest time without an acknowledgement after that.

    /usr/bin/python3 bench/cluster/failover_gap.py TOPIC kill|term [BOOTSTRAP] [PROC_PATTERN]

PROC_PATTERN locates the leader's process: a format with the node id (default
"serve -c node-%d/", as scripts/run-cluster starts them with data/node-N/server.properties).
A figure, not a test: nothing is asserted.
"""
import os
import signal
import subprocess
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

topic, mode = sys.argv[1], sys.argv[2]
bs = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1:9092,127.0.0.2:9092,127.0.0.3:9092"
pattern = sys.argv[4] if len(sys.argv) > 4 else "serve -c node-%d/"
a = AdminClient({"bootstrap.servers": bs})
for _, f in a.create_topics([NewTopic(topic, 1, 3)]).items():
    f.result()
leader = -1
for _ in range(60):
    leader = a.list_topics(topic=topic, timeout=5).topics[topic].partitions[0].leader
    if leader >= 0:
        break
    time.sleep(0.25)
p = Producer({"bootstrap.servers": bs, "acks": "all", "enable.idempotence": True,
              "linger.ms": 0})
acks = []


def cb(err, msg):
    if err is None:
        acks.append(time.monotonic())


stop = time.monotonic() + 12
stopped_at = None
while time.monotonic() < stop:
    p.produce(topic, value=b"x", on_delivery=cb)
    p.poll(0.002)
    if stopped_at is None and time.monotonic() > stop - 9:
        pid = int(subprocess.check_output(["pgrep", "-f", pattern % leader]).split()[0])
        os.kill(pid, signal.SIGTERM if mode == "term" else signal.SIGKILL)
        stopped_at = time.monotonic()
p.flush(30)
gaps = [b - a for a, b in zip(acks, acks[1:]) if a >= stopped_at - 0.5]
print("%s: leader %d, %d acks, longest gap without an ack after the %s: %.2f s"
      % (topic, leader, len(acks), mode, max(gaps) if gaps else -1))
