"""Client quotas against laminar with Kafka's own tool and confluent-kafka (librdkafka):

  - kafka-configs.sh (kafka.admin.ConfigCommand, from the jars tests/compat/java/prepare
    fetches) sets producer_byte_rate=100000 and consumer_byte_rate=100000 on client id
    "slow" and a bad value is refused; --describe shows what was set;
  - a producer with client id "slow" producing flat out for 5 s stays within 1.5x of 100 KB/s
    and librdkafka reports throttle events (throttle_cb), while client id "fast" in the same
    run, with no quota, goes at least 5x faster and is never throttled;
  - a consumer with client id "slow" likewise stays within 1.5x of its consumer_byte_rate, a
    "fast" one is much faster;
  - after a restart the quotas are still described and still enforced;
  - a quota on (user ANONYMOUS, client id "slow") overrides the one on client id "slow"
    (KIP-55's precedence; ANONYMOUS is the principal of a PLAINTEXT connection);
  - controller_mutation_rate (KIP-599) on client id "mut": with hand-built frames, a
    CreateTopics v7 of 40 partitions passes and puts it over its quota, the next v7
    CreateTopics, CreatePartitions v3 and DeleteTopics v6 are refused with
    THROTTLING_QUOTA_EXCEEDED and a throttle time, a CreateTopics v4 (before the strict
    versions) passes with a throttle time, and client id "free" is not held back;
  - request_percentage=1 on client id "busy": its Metadata requests are answered with throttle
    times (at most one quota window) and far fewer get through than for client id "idle".

Kafka's sampled rate lets a new sensor take (quota.window.num - 1) windows' worth at once and
then holds it to at most num / (num - 1) times its quota; the broker here measures over 5
windows of 1 s (Kafka's default is 11), and the rates are measured over 5 s after a 5 s
warm-up, so neither the first burst nor Kafka's 10 s minimum window dominates a short run.

    /usr/bin/python3 test_quota.py --io uring|epoll
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, restart_wait, run_scenario  # noqa: E402
import kafka_wire  # noqa: E402
from kafka_wire import arr, carr, cstr, s16, s32, sstr, uvar  # noqa: E402

JAVA = os.path.join(HERE, "..", "java")
QUOTA = 100000  # bytes per second
RUN_S = 5.0
WARMUP_S = 5.0
WINDOWS = 5  # quota.window.num
VALUE = b"q" * 1000


def configs(b, *args, ok=True):
    """Kafka's ConfigCommand (what kafka-configs.sh runs), one JVM per call."""
    cmd = ["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1",
           "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
           "-cp", os.path.join(JAVA, "lib", "*"), "kafka.admin.ConfigCommand",
           "--bootstrap-server", b.bootstrap] + list(args)
    p = subprocess.run(cmd, capture_output=True, timeout=120)
    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    lines = [ln for ln in out.splitlines() if " INFO " not in ln and not ln.startswith("\t")]
    print("$ kafka-configs %s -> %d\n%s" % (" ".join(args), p.returncode,
                                            "\n".join(lines)[-1500:]))
    if ok:
        check(p.returncode == 0 and "Exception" not in out, "kafka-configs %s failed" % " ".join(args))
    return p.returncode, out


def produce_for(b, client_id, topic, seconds, warmup=0.0, limit=20 << 20):
    """Produces 1000-byte records as fast as the client allows for warmup + seconds (or until
    `limit` bytes were delivered); returns (bytes delivered per second after the warm-up,
    throttle events librdkafka reported)."""
    from confluent_kafka import Producer
    throttles = []
    delivered = [0]

    def dr(err, msg):
        if err is None:
            delivered[0] += len(msg.value())

    p = Producer({"bootstrap.servers": b.bootstrap, "client.id": client_id,
                  "linger.ms": 5, "batch.size": 16384, "acks": 1,
                  "queue.buffering.max.messages": 2000,
                  "throttle_cb": lambda ev: throttles.append(ev.throttle_time)})
    t0 = time.monotonic()
    start, base = t0, 0
    while time.monotonic() - t0 < warmup + seconds and delivered[0] - base < limit:
        if start == t0 and warmup > 0 and time.monotonic() - t0 >= warmup:
            start, base = time.monotonic(), delivered[0]
        try:
            p.produce(topic, value=VALUE, on_delivery=dr)
        except BufferError:
            p.poll(0.01)
            continue
        p.poll(0)
    p.poll(0)
    rate = (delivered[0] - base) / (time.monotonic() - start)
    p.purge()  # what is still queued does not count
    p.flush(10)
    print("ok: producer %s: %.0f B/s over %.1f s, %d throttle events (first waits, s: %s)" %
          (client_id, rate, seconds, len(throttles), throttles[:5]))
    return rate, throttles


def consume_for(b, client_id, topic, seconds, warmup=0.0):
    """Consumes `topic` from the start for warmup + seconds; returns (value bytes per second
    after the warm-up, throttle events)."""
    from confluent_kafka import Consumer, TopicPartition
    throttles = []
    c = Consumer({"bootstrap.servers": b.bootstrap, "client.id": client_id,
                  "group.id": "g-" + client_id, "enable.auto.commit": False,
                  "throttle_cb": lambda ev: throttles.append(ev.throttle_time)})
    c.assign([TopicPartition(topic, 0, 0)])
    got, base = 0, 0
    t0 = time.monotonic()
    start = t0
    while time.monotonic() - t0 < warmup + seconds:
        if start == t0 and warmup > 0 and time.monotonic() - t0 >= warmup:
            start, base = time.monotonic(), got
        for m in c.consume(1000, 0.2):
            if m.error() is None:
                got += len(m.value())
    rate = (got - base) / (time.monotonic() - start)
    c.close()
    print("ok: consumer %s: %.0f B/s over %.1f s, %d throttle events" %
          (client_id, rate, seconds, len(throttles)))
    return rate, throttles


TAGS = b"\x00"
THROTTLED = 89  # THROTTLING_QUOTA_EXCEEDED


def create_topic_raw(b, client_id, name, partitions, version):
    """One CreateTopics (v4, or v7 flexible) on a new connection: (error, throttle_time_ms)."""
    c = kafka_wire.Conn(b.host, b.port, client_id, 15)
    try:
        if version >= 5:
            body = (carr([cstr(name) + s32(partitions) + s16(1) + carr([]) + carr([]) + TAGS]) +
                    s32(10000) + b"\x00" + TAGS)
            r = c.call(19, version, body, flexible=True)
            throttle = r.i32()
            check(r.uvar() == 2 and r.cstr() == name, "CreateTopics v%d shape" % version)
            r.take("16s")  # topic id
            return r.i16(), throttle
        body = arr([sstr(name) + s32(partitions) + s16(1) + arr([]) + arr([])]) + s32(10000)
        r = c.call(19, version, body + b"\x00")
        throttle = r.i32()
        check(r.i32() == 1 and r.str() == name, "CreateTopics v%d shape" % version)
        return r.i16(), throttle
    finally:
        c.close()


def create_partitions_raw(b, client_id, name, count):
    """CreatePartitions v3 (flexible): (error, throttle_time_ms)."""
    c = kafka_wire.Conn(b.host, b.port, client_id, 15)
    try:
        body = carr([cstr(name) + s32(count) + uvar(0) + TAGS]) + s32(10000) + b"\x00" + TAGS
        r = c.call(37, 3, body, flexible=True)
        throttle = r.i32()
        check(r.uvar() == 2 and r.cstr() == name, "CreatePartitions shape")
        return r.i16(), throttle
    finally:
        c.close()


def delete_topic_raw(b, client_id, name):
    """DeleteTopics v6 (flexible, by name): (error, throttle_time_ms)."""
    c = kafka_wire.Conn(b.host, b.port, client_id, 15)
    try:
        body = carr([cstr(name) + b"\x00" * 16 + TAGS]) + s32(10000) + TAGS
        r = c.call(20, 6, body, flexible=True)
        throttle = r.i32()
        check(r.uvar() == 2 and r.cstr() == name, "DeleteTopics shape")
        r.take("16s")
        return r.i16(), throttle
    finally:
        c.close()


def mutation_quota(b):
    configs(b, "--alter", "--entity-type", "clients", "--entity-name", "mut", "--add-config",
            "controller_mutation_rate=1")
    time.sleep(0.5)  # the shards take the new image on their next tick
    err, thr = create_topic_raw(b, "mut", "mut-a", 40, 7)
    check(err == 0, "the first CreateTopics under the mutation quota: error %d" % err)
    err, thr = create_topic_raw(b, "mut", "mut-b", 1, 7)
    check(err == THROTTLED and thr > 0,
          "CreateTopics v7 over the quota: error %d throttle %d" % (err, thr))
    err, thr = create_partitions_raw(b, "mut", "mut-a", 41)
    check(err == THROTTLED and thr > 0,
          "CreatePartitions v3 over the quota: error %d throttle %d" % (err, thr))
    err, thr = delete_topic_raw(b, "mut", "mut-a")
    check(err == THROTTLED and thr > 0,
          "DeleteTopics v6 over the quota: error %d throttle %d" % (err, thr))
    err, thr4 = create_topic_raw(b, "mut", "mut-c", 1, 4)
    check(err == 0 and thr4 > 0, "CreateTopics v4 (permissive): error %d throttle %d" % (err, thr4))
    err, thr = create_topic_raw(b, "free", "free-a", 1, 7)
    check(err == 0 and thr == 0, "client id 'free': error %d throttle %d" % (err, thr))
    print("ok: controller_mutation_rate refuses strict versions with THROTTLING_QUOTA_EXCEEDED "
          "(throttle %d ms), lets v4 through throttled, leaves 'free' alone" % thr4)


def metadata_flat_out(b, client_id, seconds):
    """Metadata v4 (all topics) requests one after another on one connection: (requests
    answered, the throttle times seen)."""
    c = kafka_wire.Conn(b.host, b.port, client_id, 15)
    n, throttles, end = 0, [], time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            r = c.call(3, 4, s32(-1) + b"\x01")
            throttles.append(r.i32())
            n += 1
    finally:
        c.close()
    return n, throttles


def request_quota(b):
    """request_percentage: handler time of client id "busy" held to 1% of a thread (10 ms a
    second); over it responses carry a throttle time of at most one quota window (1 s, as
    Kafka bounds request throttles) and the connection waits it out; "idle" is not held."""
    configs(b, "--alter", "--entity-type", "clients", "--entity-name", "busy", "--add-config",
            "request_percentage=1")
    _, out = configs(b, "--describe", "--entity-type", "clients", "--entity-name", "busy")
    check("request_percentage=1.0" in out, "describe request_percentage:\n" + out)
    time.sleep(0.5)  # the shards take the new image on their next tick
    free_n, free_thr = metadata_flat_out(b, "idle", 3.0)
    busy_n, busy_thr = metadata_flat_out(b, "busy", 3.0)
    check(not [t for t in free_thr if t > 0], "client id 'idle' was throttled")
    over = [t for t in busy_thr if t > 0]
    check(over and max(over) <= 1000, "'busy' throttles %s" % sorted(set(over))[-5:])
    check(busy_n * 3 < free_n, "'busy' answered %d requests, 'idle' %d" % (busy_n, free_n))
    print("ok: request_percentage=1 held 'busy' to %d Metadata requests in 3 s ('idle': %d), "
          "throttles up to %d ms" % (busy_n, free_n, max(over)))


def scenario(b):
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in a.create_topics([NewTopic("qt-slow", 1, 1), NewTopic("qt-fast", 1, 1)],
                             operation_timeout=10).values():
        f.result(30)
    configs(b, "--alter", "--entity-type", "clients", "--entity-name", "slow", "--add-config",
            "producer_byte_rate=%d,consumer_byte_rate=%d" % (QUOTA, QUOTA))
    rc, out = configs(b, "--alter", "--entity-type", "clients", "--entity-name", "bad",
                      "--add-config", "producer_byte_rate=-5", ok=False)
    check(rc != 0 and "InvalidRequestException" in out, "a negative quota was accepted")
    rc, out = configs(b, "--alter", "--entity-type", "clients", "--entity-name", "bad",
                      "--add-config", "no_such_quota=5", ok=False)
    check(rc != 0, "an unknown quota key was accepted")
    _, out = configs(b, "--describe", "--entity-type", "clients", "--entity-name", "slow")
    check("producer_byte_rate=100000.0" in out and "consumer_byte_rate=100000.0" in out,
          "describe does not show the quotas")
    _, out = configs(b, "--describe", "--entity-type", "clients")
    check("'bad'" not in out, "a refused quota was stored")
    print("ok: kafka-configs set, refused and described client quotas")

    slow, slow_thr = produce_for(b, "slow", "qt-slow", RUN_S, warmup=WARMUP_S)
    fast, fast_thr = produce_for(b, "fast", "qt-fast", 3.0)
    check(slow <= 1.5 * QUOTA, "throttled producer at %.0f B/s, over 1.5x its quota" % slow)
    check(slow >= 0.3 * QUOTA, "throttled producer starved: %.0f B/s" % slow)
    check(len(slow_thr) > 0 and max(slow_thr) > 0, "librdkafka saw no throttle for 'slow'")
    check(fast >= 5 * QUOTA, "unthrottled producer only at %.0f B/s" % fast)
    check(not [t for t in fast_thr if t > 0], "the unthrottled producer was throttled")
    print("ok: producer_byte_rate holds 'slow' at %.2fx its quota; 'fast' ran %.1fx faster" %
          (slow / QUOTA, fast / max(slow, 1)))

    # qt-fast now holds far more than either consumer can read in the run
    slow, slow_thr = consume_for(b, "slow", "qt-fast", RUN_S, warmup=WARMUP_S)
    fast, fast_thr = consume_for(b, "fast", "qt-fast", 3.0)
    check(slow <= 1.5 * QUOTA, "throttled consumer at %.0f B/s, over 1.5x its quota" % slow)
    check(slow >= 0.3 * QUOTA, "throttled consumer starved: %.0f B/s" % slow)
    check(len(slow_thr) > 0, "librdkafka saw no fetch throttle for 'slow'")
    check(fast >= 5 * QUOTA, "unthrottled consumer only at %.0f B/s" % fast)
    print("ok: consumer_byte_rate holds 'slow' at %.2fx its quota" % (slow / QUOTA))

    mutation_quota(b)
    request_quota(b)

    restart_wait(b, kill=False)
    _, out = configs(b, "--describe", "--entity-type", "clients", "--entity-name", "slow")
    check("producer_byte_rate=100000.0" in out, "the quota did not survive the restart")
    slow, slow_thr = produce_for(b, "slow", "qt-slow", 3.0)
    check(len(slow_thr) > 0 and slow <= 1.5 * QUOTA * (3.0 + WINDOWS - 1) / 3.0,
          "after the restart 'slow' ran at %.0f B/s with %d throttles" % (slow, len(slow_thr)))
    print("ok: quotas survived the restart and are enforced")
    # KIP-55 precedence: /users/<u>/clients/<c> beats /clients/<c>; the user of a PLAINTEXT
    # connection is ANONYMOUS
    configs(b, "--alter", "--entity-type", "users", "--entity-name", "ANONYMOUS",
            "--entity-type", "clients", "--entity-name", "slow", "--add-config",
            "producer_byte_rate=500000000")
    time.sleep(0.5)  # the shards take the new image on their next tick
    _, thr = produce_for(b, "slow", "qt-slow", 3.0)
    check(not [t for t in thr if t > 0],
          "/users/ANONYMOUS/clients/slow did not override /clients/slow")
    print("ok: a (user, client id) quota overrides the client id's")
    log = b.log_text()
    check("runtime error" not in log and "AddressSanitizer" not in log,
          "the broker log has a sanitizer report")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(JAVA, "lib", ".complete")):
        print("FAIL: tests/compat/java/lib missing: run tests/compat/java/prepare first")
        return 1
    with tempfile.TemporaryDirectory(prefix="laminar-quota-"):
        b = Broker(io=args.io, shards=2,
                   config={"num.partitions": "1", "quota.window.num": str(WINDOWS),
                           "quota.window.size.seconds": "1"})
        return run_scenario(b, "quota (%s)" % args.io, lambda: scenario(b))


if __name__ == "__main__":
    sys.exit(main())
