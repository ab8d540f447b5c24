"""Consumer groups with librdkafka (confluent-kafka-python) and kafka-python against laminar:
- a group scaling 1 -> 3 -> 1 members while records keep arriving, with librdkafka's range,
  roundrobin and cooperative-sticky assignors: every record consumed, three members each
  holding a disjoint third of the partitions at the peak, committed offsets at the end equal
  the log end offsets; producers are idempotent (enable.idempotence=true);
- static membership (group.instance.id): a member restarted inside the session timeout gets
  its partitions back without a rebalance (the other member sees no revoke/assign); a second
  live member with the same instance id fences the first (FENCED_INSTANCE_ID);
- kafka-python in a group: consumes all, commits, a second consumer of the group reads nothing
  old;
- committed offsets survive kill -9 of the broker: a new consumer resumes exactly after the
  last commit;
- kcat -G (balanced consumer) reads every record.

    /usr/bin/python3 test_groups_python.py --io uring|epoll [--only name,...]
"""
import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, restart_wait  # noqa: E402

import confluent_kafka as ck  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

PARTS = 6


def create_topic(b, name, parts):
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=parts, replication_factor=1)])[name] \
        .result(30)


def produce(b, topic, start, n, parts=PARTS):
    p = ck.Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": True,
                     "linger.ms": 2})
    errors = []

    def dr(err, msg):
        if err is not None:
            errors.append(err)
    for i in range(start, start + n):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i, partition=i % parts, on_delivery=dr)
        p.poll(0)
    check(p.flush(30) == 0, "producer flush")
    check(not errors, "delivery errors %r" % errors[:3])


def consumer(b, group, extra=None):
    conf = {"bootstrap.servers": b.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "heartbeat.interval.ms": 500, "session.timeout.ms": 10000,
            "fetch.wait.max.ms": 100, "enable.auto.commit": True, "auto.commit.interval.ms": 200}
    conf.update(extra or {})
    return ck.Consumer(conf)


def poll_all(consumers, seen, rounds=1):
    for _ in range(rounds):
        for c in consumers:
            m = c.poll(0.05)
            if m is not None and m.error() is None:
                seen.add(int(m.value()[1:]))


def wait_until(cond, consumers, seen, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not cond():
        check(time.monotonic() < deadline, "timed out waiting for " + what)
        poll_all(consumers, seen)


def assignment(c):
    return {(tp.topic, tp.partition) for tp in c.assignment()}


def committed_total(b, group, topic):
    c = consumer(b, group)  # committed() asks OffsetFetch for this group; no subscribe
    try:
        tps = c.committed([ck.TopicPartition(topic, q) for q in range(PARTS)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def scale_1_3_1(b, assignor):
    topic = "scale-" + assignor
    group = "grp-" + assignor
    create_topic(b, topic, PARTS)
    seen = set()
    produce(b, topic, 0, 300)
    extra = {"partition.assignment.strategy": assignor}
    c1 = consumer(b, group, extra)
    c1.subscribe([topic])
    wait_until(lambda: len(assignment(c1)) == PARTS, [c1], seen, 30, "c1 owns everything")
    c2, c3 = consumer(b, group, extra), consumer(b, group, extra)
    c2.subscribe([topic])
    c3.subscribe([topic])
    cs = [c1, c2, c3]

    def three_way():
        a = [assignment(c) for c in cs]
        return all(len(x) == PARTS // 3 for x in a) and len(set().union(*a)) == PARTS
    wait_until(three_way, cs, seen, 60, "a 2/2/2 split over three members")
    produce(b, topic, 300, 300)
    wait_until(lambda: len(seen) == 600, cs, seen, 60, "600 records with three members")
    c2.close()
    c3.close()
    wait_until(lambda: len(assignment(c1)) == PARTS, [c1], seen, 60, "c1 alone again")
    produce(b, topic, 600, 300)
    wait_until(lambda: len(seen) == 900, [c1], seen, 60, "900 records with one member")
    c1.commit(asynchronous=False)
    c1.close()
    check(seen == set(range(900)), "records missing: %r" % sorted(set(range(900)) - seen)[:10])
    got = committed_total(b, group, topic)
    check(all(got[q] == 150 for q in range(PARTS)), "committed offsets %r" % got)


def static_membership(b):
    topic, group = "static-t", "static-g"
    create_topic(b, topic, 4)
    produce(b, topic, 0, 40, parts=4)
    events = {"s2": []}

    errors = []

    def mk(inst, name=None):
        c = consumer(b, group, {"group.instance.id": inst, "session.timeout.ms": 15000,
                                "partition.assignment.strategy": "range",
                                "error_cb": lambda e, inst=inst: errors.append((inst, e))})
        if name is None:
            c.subscribe([topic])
        else:
            c.subscribe([topic],
                        on_assign=lambda c_, ps: events[name].append(("assign", len(ps))),
                        on_revoke=lambda c_, ps: events[name].append(("revoke", len(ps))))
        return c
    seen = set()
    s1, s2 = mk("s1"), mk("s2", "s2")
    wait_until(lambda: len(assignment(s1)) == 2 and len(assignment(s2)) == 2, [s1, s2], seen,
               60, "two static members with two partitions each")
    before = assignment(s1)
    n_events = len(events["s2"])
    check(events["s2"] and events["s2"][-1] == ("assign", 2), "s2 events %r" % events["s2"])
    # Static members leave no group on close (KIP-345): a restart inside the session timeout
    # takes the old member's place, with its assignment, without a rebalance.
    s1.close()
    s1 = mk("s1")
    wait_until(lambda: len(assignment(s1)) == 2, [s1, s2], seen, 30, "s1 back")
    check(assignment(s1) == before, "s1 got %r, had %r" % (assignment(s1), before))
    poll_all([s1, s2], seen, rounds=20)   # ~2 s of heartbeats: a rebalance would show now
    check(len(events["s2"]) == n_events, "s2 saw a rebalance: %r" % events["s2"])
    check(assignment(s2) and len(assignment(s2)) == 2, "s2 lost its partitions")
    # A second live consumer with instance id s1 takes its place; the old one is fenced
    # (FENCED_INSTANCE_ID: a fatal error in librdkafka).
    del errors[:]
    dup = mk("s1")
    deadline = time.monotonic() + 30
    while not any(inst == "old-s1" for inst, _ in errors):
        check(time.monotonic() < deadline, "the old s1 was never fenced: %r" % errors)
        for c in (s1, dup, s2):
            m = c.poll(0.05)
            # librdkafka reports the fencing as a fatal error, through poll or error_cb.
            if c is s1 and m is not None and m.error() is not None:
                errors.append(("old-s1", m.error()))
    fatal = [e for inst, e in errors if inst == "old-s1"][0]
    check(fatal.code() == ck.KafkaError._FATAL and "fenced" in fatal.str().lower(),
          "the old s1 fenced: %s" % fatal.str())
    wait_until(lambda: len(assignment(dup)) == 2, [dup, s2], seen, 30, "the new s1 assigned")
    s1.close()
    dup.close()
    s2.close()


def kill9_resume(b):
    topic, group = "resume-t", "resume-g"
    create_topic(b, topic, 1)
    produce(b, topic, 0, 300, parts=1)
    c = consumer(b, group, {"enable.auto.commit": False})
    c.subscribe([topic])
    last = None
    deadline = time.monotonic() + 30
    while last is None or last.offset() < 99:
        check(time.monotonic() < deadline, "did not reach offset 99")
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            last = m
    # Commit exactly offset 100 (the next to read) and crash the broker right after.
    c.commit(offsets=[ck.TopicPartition(topic, 0, 100)], asynchronous=False)
    c.close()
    restart_wait(b, kill=True)
    c = consumer(b, group, {"enable.auto.commit": False})
    c.subscribe([topic])
    first = None
    deadline = time.monotonic() + 30
    while first is None:
        check(time.monotonic() < deadline, "no record after restart")
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            first = m
    check(first.offset() == 100, "resumed at %d, committed 100" % first.offset())
    c.close()


def kafka_python_group(b):
    import kafka
    topic, group = "kp-t", "kp-g"
    create_topic(b, topic, 3)
    produce(b, topic, 0, 90, parts=3)
    c = kafka.KafkaConsumer(topic, bootstrap_servers=b.bootstrap, group_id=group,
                            auto_offset_reset="earliest", enable_auto_commit=False,
                            consumer_timeout_ms=5000, heartbeat_interval_ms=500)
    got = set()
    deadline = time.monotonic() + 60
    while len(got) < 90 and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            got.update(int(r.value[1:]) for r in recs)
    check(got == set(range(90)), "kafka-python read %d of 90" % len(got))
    c.commit()
    parts = [kafka.TopicPartition(topic, q) for q in range(3)]
    check([c.committed(tp) for tp in parts] == [30, 30, 30],
          "kafka-python committed %r" % [c.committed(tp) for tp in parts])
    c.close()
    produce(b, topic, 90, 3, parts=3)
    c = kafka.KafkaConsumer(topic, bootstrap_servers=b.bootstrap, group_id=group,
                            auto_offset_reset="earliest", enable_auto_commit=False,
                            heartbeat_interval_ms=500)
    got = set()
    deadline = time.monotonic() + 60
    while len(got) < 3 and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            got.update(int(r.value[1:]) for r in recs)
    check(got == {90, 91, 92}, "second kafka-python consumer read %r" % sorted(got)[:10])
    c.close()


def kcat_group(b):
    topic = "kcat-g-t"
    create_topic(b, topic, 3)
    produce(b, topic, 0, 60, parts=3)
    out = subprocess.run(["kcat", "-b", b.bootstrap, "-G", "kcat-g", "-X",
                          "auto.offset.reset=earliest", "-e", "-q", "-f", "%s\\n", topic],
                         capture_output=True, timeout=60)
    vals = {int(v[1:]) for v in out.stdout.decode().split()}
    check(vals == set(range(60)), "kcat -G read %d of 60 (%s)" % (len(vals), out.stderr[-300:]))


SCENARIOS = {
    "range": lambda b: scale_1_3_1(b, "range"),
    "roundrobin": lambda b: scale_1_3_1(b, "roundrobin"),
    "cooperative-sticky": lambda b: scale_1_3_1(b, "cooperative-sticky"),
    "static": static_membership,
    "kafka-python": kafka_python_group,
    "kcat": kcat_group,
    "kill9": kill9_resume,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    ap.add_argument("--only", default=",".join(SCENARIOS))
    args = ap.parse_args()
    with Broker(io=args.io, shards=2,
                config={"group.initial.rebalance.delay.ms": 300}) as b:
        for name in args.only.split(","):
            t0 = time.monotonic()
            try:
                SCENARIOS[name](b)
            except BaseException:
                print("---- broker log (tail) ----\n" +
                      "\n".join(b.log_text().splitlines()[-60:]))
                raise
            print("%s (%s): ok in %.1f s" % (name, args.io, time.monotonic() - t0), flush=True)
        check(b.stop() == 0, "broker exit status")
        log = b.log_text()
        check("AddressSanitizer" not in log and "runtime error" not in log, "sanitizer report")


if __name__ == "__main__":
    main()
