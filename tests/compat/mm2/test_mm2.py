"""Kafka 4.1.1's MirrorMaker 2 (dedicated mode, org.apache.kafka.connect.mirror.MirrorMaker)
between two single-node laminar brokers, "source" and "target".

MM2 runs a Connect worker per target cluster (group membership, its internal topics on
laminar) with the three mirror connectors. The test produces N records with keys and headers
into a source topic with a non-default config, commits a consumer group's offsets on the
source, and checks on the target:
- the topic "source.<topic>" holds every record exactly once with its key, value and headers;
- the topic configs were copied at creation, and a config altered on the source later is
  synced too;
- the group's offsets were translated through checkpoints and written into the target group
  (sync.group.offsets.enabled);
- MM2's internal topics exist (mm2-offsets/configs/status.source.internal, heartbeats and
  source.checkpoints.internal on the target, mm2-offset-syncs.target.internal on the source);
- every API and version either broker was asked for (its /metrics request counters) is one it
  advertises in ApiVersions, and the Connect worker's group and MM2's calls reached them;
- MM2's log, up to its shutdown, has no UnsupportedVersionException / UNSUPPORTED_VERSION /
  "not supported", no ERROR line and no exception at all; neither broker's log has a request
  answered as unserved or closed as an unknown API.
MirrorSourceConnector 4.1.1 logs "Could not alter configuration of topic X." at WARN, with no
exception, after every successful config sync as well: that line alone is no failure.

With --eos the source connectors run exactly-once (KIP-618: target.exactly.once.source.support
= enabled): the records and the worker's offsets go to the target in transactions (the Connect
worker fences earlier producers with InitProducerId, then EndTxn; under transaction version 2,
the default, partitions join a transaction with their first Produce, not AddPartitionsToTxn), read
back read_committed; the commit markers shift the target's offsets, and the group's translated
offset is the one past the last mirrored record of each partition.

    test_mm2.py --io uring|epoll [--eos]

Needs tests/compat/java/prepare to have run (lib/ with connect-mirror).
"""

import argparse
import glob
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import ROOT, Broker, free_port  # noqa: E402
from kafka_wire import Conn  # noqa: E402

JAVA = os.path.join(HERE, "..", "java")
TOPIC = "mm2-orders"
GROUP = "mm2-group"
N = 600
PARTITIONS = 2
RETENTION_MS = "7654321"
MAX_MESSAGE_BYTES = "654321"

# What the broker logs when it answers a request as unserved (handlers_respond_unsupported) or
# closes a connection over an API or version it does not know.
BROKER_UNSERVED = ("not served: unsupported_version", "unknown api key", "unsupported api version")
# What MM2's log must not hold: a broker answer it could not use.
MM2_BAD = ("UnsupportedVersionException", "UNSUPPORTED_VERSION", "not supported",
           "UnknownServerException", "InvalidRequestException")

failures = []


def check(ok, what, detail=None):
    if ok:
        print("ok: " + what)
    else:
        failures.append(what)
        print("FAIL: %s%s" % (what, "" if detail is None else ": %r" % (detail,)))


def wait_for(pred, timeout_s, step=0.5):
    """Polls pred() until it returns something true; returns its last value."""
    deadline = time.monotonic() + timeout_s
    v = pred()
    while not v and time.monotonic() < deadline:
        time.sleep(step)
        v = pred()
    return v


def mm2_properties(src, dst, eos):
    return "\n".join(([
        # KIP-618: the source connectors write records and their offsets in transactions.
        "target.exactly.once.source.support = enabled",
    ] if eos else []) + [
        "clusters = source, target",
        "source.bootstrap.servers = " + src,
        "target.bootstrap.servers = " + dst,
        "source->target.enabled = true",
        "target->source.enabled = false",
        "source->target.topics = " + TOPIC,
        "source->target.groups = " + GROUP,
        "replication.factor = 1",
        "checkpoints.topic.replication.factor = 1",
        "heartbeats.topic.replication.factor = 1",
        "offset-syncs.topic.replication.factor = 1",
        "offset.storage.replication.factor = 1",
        "status.storage.replication.factor = 1",
        "config.storage.replication.factor = 1",
        # Every record's offset is synced, so a committed end offset translates exactly.
        "offset.lag.max = 0",
        "sync.group.offsets.enabled = true",
        "sync.group.offsets.interval.seconds = 1",
        "emit.checkpoints.interval.seconds = 1",
        "emit.heartbeats.interval.seconds = 1",
        "refresh.topics.interval.seconds = 2",
        "refresh.groups.interval.seconds = 2",
        "sync.topic.configs.interval.seconds = 2",
        "offset.flush.interval.ms = 1000",
        "",
    ])


def produce_source(bootstrap):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": bootstrap})
    fs = a.create_topics([NewTopic(TOPIC, PARTITIONS, 1, config={"retention.ms": RETENTION_MS})])
    fs[TOPIC].result(20)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    sent = {}
    for i in range(N):
        key, value = b"k-%d" % i, b"v-%d-" % i + b"x" * (i % 50)
        headers = [("idx", b"%d" % i), ("origin", b"laminar")]
        p.produce(TOPIC, value=value, key=key, headers=headers)
        sent[key] = (value, headers)
    check(p.flush(30) == 0, "produced %d records to the source" % N)
    return sent


def source_end_offsets(bootstrap):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "mm2-probe"})
    ends = {}
    for p in range(PARTITIONS):
        lo, hi = c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=20)
        ends[p] = hi
    c.close()
    return ends


def commit_source_group(bootstrap, ends):
    """Consumes the source topic with GROUP and commits each partition's end offset."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
    got = 0
    deadline = time.monotonic() + 30
    while got < N and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is not None and m.error() is None:
            got += 1
    c.commit(offsets=[TopicPartition(TOPIC, p, ends[p]) for p in range(PARTITIONS)],
             asynchronous=False)
    committed = c.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=20)
    c.close()
    check(got == N and all(tp.offset == ends[tp.partition] for tp in committed),
          "source group %s consumed %d and committed the end offsets %s" % (GROUP, got, ends))


def consume_target(bootstrap, topic, expect):
    """The mirrored records (read_committed), by key, and the offset past the last one of each
    partition (the committed end offset of the source group translates to it)."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "mm2-verify",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": "read_committed"})
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got = {}
    past_last = {}
    dups = 0
    deadline = time.monotonic() + 60
    while len(got) < expect and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is None or m.error() is not None:
            continue
        if m.key() in got:
            dups += 1
        got[m.key()] = (m.value(), m.headers() or [])
        past_last[m.partition()] = max(past_last.get(m.partition(), 0), m.offset() + 1)
    # A little longer: a duplicate would arrive after the last new record.
    t_end = time.monotonic() + 2
    while time.monotonic() < t_end:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            dups += 1
    c.close()
    return got, dups, past_last


def topic_config(bootstrap, topic):
    from confluent_kafka.admin import AdminClient, ConfigResource
    a = AdminClient({"bootstrap.servers": bootstrap})
    r = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return {k: e.value for k, e in a.describe_configs([r])[r].result(20).items()}


def list_topics(bootstrap):
    from confluent_kafka.admin import AdminClient
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=20).topics)


def target_committed(bootstrap, topic):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=20)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def start_mm2(workdir, src, dst, eos):
    props = os.path.join(workdir, "mm2.properties")
    with open(props, "w") as f:
        f.write(mm2_properties(src, dst, eos))
    log = open(os.path.join(workdir, "mm2.log"), "wb")
    cmd = ["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-Xmx512m",
           "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
           "-Dorg.slf4j.simpleLogger.showDateTime=true",
           "-cp", os.path.join(JAVA, "lib", "*"),
           "org.apache.kafka.connect.mirror.MirrorMaker", props]
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log


def stop_mm2(proc, log):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.close()


def api_names():
    """API key -> name, from our schema files (the names /metrics labels requests with)."""
    names = {}
    for path in glob.glob(os.path.join(ROOT, "protocol", "schema", "*.schema")):
        name = key = None
        with open(path) as f:
            for line in f:
                w = line.split("#")[0].split()
                if line.startswith("api ") and len(w) >= 2:
                    name = w[1]
                elif line.startswith("key ") and len(w) >= 2:
                    key = int(w[1])
        if name is not None and key is not None:
            names[key] = name
    return names


def advertised(b):
    """{api name: (min, max)} from an ApiVersions v0 answer of broker b."""
    names = api_names()
    c = Conn(b.host, b.port, "mm2-test")
    try:
        r = c.call(18, 0, b"")
        check(r.i16() == 0, "ApiVersions answered")
        out = {}
        for _ in range(r.i32()):
            k, lo, hi = r.i16(), r.i16(), r.i16()
            out[names.get(k, str(k))] = (lo, hi)
        return out
    finally:
        c.close()


REQ_LINE = re.compile(r'^kafka_network_requests_total\{request="([^"]+)",version="(>=)?(\d+)"\} (\d+)')


def requests_seen(metrics_port):
    """{(api name, version): count} from the broker's /metrics."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics_port, timeout=10) as f:
        text = f.read().decode()
    seen = {}
    for line in text.splitlines():
        m = REQ_LINE.match(line)
        if m:
            seen[(m.group(1), int(m.group(3)))] = int(m.group(4))
    return seen


def check_requests(name, b, metrics_port, expect):
    """Every request broker b counted is of an API and version it advertises; the APIs of
    expect were called."""
    served = advertised(b)
    seen = requests_seen(metrics_port)
    apis = sorted({a for a, _ in seen})
    print("%s broker served: %s" % (name, ", ".join(
        "%s v%s" % (a, "/".join(str(v) for (x, v) in sorted(seen) if x == a)) for a in apis)))
    outside = [(a, v) for (a, v) in seen if a not in served or
               not served[a][0] <= v <= served[a][1]]
    check(seen and not outside, "%s broker: every request was of a served API and version" % name,
          outside)
    missing = [a for a in expect if a not in apis]
    check(not missing, "%s broker: MM2 called %s" % (name, ", ".join(expect)), missing)


def mm2_log_problems(text):
    """Lines of MM2's log before its shutdown began that show a broker answer it could not use:
    the strings of MM2_BAD, ERROR lines, and any exception (a failed call logs one)."""
    bad = []
    for line in text.split("Kafka MirrorMaker stopping")[0].splitlines():
        if any(s in line for s in MM2_BAD) or " ERROR " in line or "Exception" in line:
            bad.append(line)
    return bad


def broker_log_problems(text):
    return [line for line in text.splitlines()
            if any(s in line.lower() for s in BROKER_UNSERVED)]


def scenario(src, dst, workdir, metrics, eos):
    sent = produce_source(src.bootstrap)
    ends = source_end_offsets(src.bootstrap)
    check(sum(ends.values()) == N, "source end offsets add up to %d" % N, ends)
    commit_source_group(src.bootstrap, ends)

    t0 = time.monotonic()
    proc, log = start_mm2(workdir, src.bootstrap, dst.bootstrap, eos)
    mirrored = "source." + TOPIC
    try:
        ok = wait_for(lambda: mirrored in list_topics(dst.bootstrap) or proc.poll() is not None,
                      90)
        check(ok and proc.poll() is None, "MM2 created %s on the target (%.1f s)" %
              (mirrored, time.monotonic() - t0))
        got, dups, past_last = consume_target(dst.bootstrap, mirrored, N)
        missing = [k for k in sent if k not in got]
        wrong = [k for k in sent if k in got and (got[k][0] != sent[k][0] or
                 list(got[k][1]) != list(sent[k][1]))]
        check(len(got) == N and not missing and not wrong and dups == 0,
              "every record arrived once with its key, value and headers",
              {"got": len(got), "missing": len(missing), "wrong": wrong[:3], "dups": dups})

        cfg = topic_config(dst.bootstrap, mirrored)
        check(cfg.get("retention.ms") == RETENTION_MS, "the topic config retention.ms copied",
              cfg.get("retention.ms"))
        from confluent_kafka.admin import AdminClient, ConfigResource
        a = AdminClient({"bootstrap.servers": src.bootstrap})
        r = ConfigResource(ConfigResource.Type.TOPIC, TOPIC,
                           set_config={"retention.ms": RETENTION_MS,
                                       "max.message.bytes": MAX_MESSAGE_BYTES})
        a.alter_configs([r])[r].result(20)
        synced = wait_for(lambda: topic_config(dst.bootstrap, mirrored).get(
            "max.message.bytes") == MAX_MESSAGE_BYTES, 60, 1.0)
        check(synced, "a config altered on the source later (max.message.bytes) is synced")

        # Without transactions the mirrored offsets equal the source's; with them each commit
        # marker takes an offset on the target, and the translation follows.
        want = {p: past_last.get(p) for p in range(PARTITIONS)}
        if not eos:
            check(want == ends, "mirrored offsets equal the source's", (want, ends))
        last = {}

        def translated():
            last.clear()
            last.update(target_committed(dst.bootstrap, mirrored))
            return last == want
        ok = wait_for(translated, 60, 1.0)
        check(ok, "the target group %s holds the translated offsets %s" % (GROUP, want), last)

        topics_dst = list_topics(dst.bootstrap)
        topics_src = list_topics(src.bootstrap)
        # The Connect worker of the flow source->target keeps its state on the target, in
        # topics named after the source alias.
        want_dst = {"heartbeats", "source.heartbeats", "source.checkpoints.internal",
                    "mm2-offsets.source.internal", "mm2-configs.source.internal",
                    "mm2-status.source.internal"}
        check(want_dst <= topics_dst, "MM2's internal topics on the target", sorted(topics_dst))
        check("mm2-offset-syncs.target.internal" in topics_src,
              "mm2-offset-syncs.target.internal on the source", sorted(topics_src))
        # The Connect worker heartbeats its group on the target every heartbeat.interval.ms
        # (3 s) after it joined: a run whose checks all passed sooner (or a join that was slow
        # under load) stops MM2 before its first Heartbeat, which check_requests expects
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline and \
                not any(a == "Heartbeat" for a, _ in requests_seen(metrics["target"])):
            time.sleep(0.25)
        check(proc.poll() is None, "MM2 still running")
    finally:
        stop_mm2(proc, log)
    # The Connect worker's group, its internal topics and the mirrored writes on the target;
    # the mirrored reads, the group listing and offsets, configs and ACLs on the source.
    check_requests("source", src, metrics["source"],
                   ["Fetch", "ListOffsets", "ListGroups", "OffsetFetch", "DescribeConfigs",
                    "DescribeAcls", "Produce"])
    check_requests("target", dst, metrics["target"],
                   ["JoinGroup", "SyncGroup", "Heartbeat", "CreateTopics", "Produce", "Fetch",
                    "IncrementalAlterConfigs", "OffsetCommit", "DescribeGroups"] +
                   (["InitProducerId", "EndTxn"] if eos else []))
    print("MM2 ran %.1f s" % (time.monotonic() - t0))
    with open(os.path.join(workdir, "mm2.log"), "rb") as f:
        text = f.read().decode("utf-8", "replace")
    bad = mm2_log_problems(text)
    for line in bad[:20]:
        print("mm2 log: " + line)
    check(not bad, "MM2's log has no unsupported-version, ERROR or exception line (%d lines)" %
          len(text.splitlines()), len(bad))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    ap.add_argument("--eos", action="store_true",
                    help="exactly-once source connectors (transactions on the target)")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(JAVA, "lib", ".complete")) or not any(
            n.startswith("connect-mirror-") for n in os.listdir(os.path.join(JAVA, "lib"))):
        print("FAIL: tests/compat/java/lib has no connect-mirror: run tests/compat/java/prepare")
        return 1
    t0 = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="laminar-test-mm2-")
    metrics = {"source": free_port(), "target": free_port()}
    src = Broker(io=args.io, shards=2, extra_args=["--node-id", "1"],
                 config={"laminar.http.listener": "127.0.0.1:%d" % metrics["source"]})
    dst = Broker(io=args.io, shards=2, extra_args=["--node-id", "2"],
                 config={"laminar.http.listener": "127.0.0.1:%d" % metrics["target"]})
    try:
        src.start()
        dst.start()
        scenario(src, dst, workdir, metrics, args.eos)
    except Exception as e:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        failures.append("exception: %s" % e)
    finally:
        for name, b in (("source", src), ("target", dst)):
            alive = b.alive()
            rc = b.stop()
            text = b.log_text()
            bad = broker_log_problems(text)
            for line in bad[:20]:
                print("%s broker log: %s" % (name, line))
            check(alive and rc == 0, "%s broker stayed up and exited cleanly (%s)" % (name, rc))
            check(not bad, "%s broker answered no request as unserved" % name, len(bad))
            check("runtime error" not in text and "AddressSanitizer" not in text,
                  "%s broker log has no sanitizer report" % name)
            if failures:
                print("---- %s broker log (tail) ----\n%s" % (name, text[-3000:]))
            b.cleanup()
    if failures:
        print("kept %s (mm2.log)" % workdir)
        print("FAIL: %d check(s): %s" % (len(failures), "; ".join(failures)))
        return 1
    if os.environ.get("LAMINAR_KEEP_DATA") == "1":
        print("kept %s (mm2.log)" % workdir)
    else:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    print("mm2 compat (%s%s): passed in %.1f s" % (args.io, ", eos" if args.eos else "",
                                                 time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
