"""The Python clients of test_clients.py: confluent-kafka (librdkafka) and kafka-python, each
as a producer or a group consumer speaking the line protocol test_clients.py reads.

    pyclients.py confluent|kafkapython produce BOOTSTRAP TOPIC PREFIX
    pyclients.py confluent|kafkapython consume BOOTSTRAP TOPIC GROUP

The producer sends PREFIX-0000000, PREFIX-0000001, ... (key = value) with acks=all, idempotent
where the client supports it (kafka-python 2.0 does not: one request in flight instead, so
retries keep the order), about 100 records a second until stdin closes, then flushes.
It prints `ACK value partition offset` for each acknowledged record, `NACK value error` for
each failed one, and `DONE` once flushed.

The consumer subscribes TOPIC in GROUP from the earliest offset without auto-commit; after each
poll that returned records it prints `READ value partition offset` for each, then commits the
positions synchronously and prints `COMMITTED partition offset` per partition once the commit is
acknowledged (`COMMITFAIL error` otherwise). When stdin closes it commits, leaves the group and
prints `DONE`.
"""

import sys
import threading
import time

RATE_PER_S = 100


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def watch_stdin():
    """An Event set when stdin reaches EOF (the driver's request to finish)."""
    done = threading.Event()

    def run():
        sys.stdin.read()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done


def confluent_produce(bootstrap, topic, prefix, done):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "message.timeout.ms": 120000,
                  "topic.metadata.refresh.interval.ms": 1000})

    def cb(err, msg):
        v = msg.value().decode()
        if err is None:
            out("ACK %s %d %d" % (v, msg.partition(), msg.offset()))
        else:
            out("NACK %s %s" % (v, str(err).replace("\n", " ")))

    seq = 0
    while not done.is_set():
        v = "%s-%07d" % (prefix, seq)
        try:
            p.produce(topic, key=v, value=v, on_delivery=cb)
            seq += 1
        except BufferError:
            pass
        p.poll(1.0 / RATE_PER_S)
    left = p.flush(150)
    out("DONE sent=%d unflushed=%d" % (seq, left))


def confluent_consume(bootstrap, topic, group, done):
    from confluent_kafka import Consumer, KafkaException

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 10000, "heartbeat.interval.ms": 500,
                  "topic.metadata.refresh.interval.ms": 1000})
    c.subscribe([topic])

    def commit():
        try:
            for tp in c.commit(asynchronous=False) or []:
                if tp.error is None:
                    out("COMMITTED %d %d" % (tp.partition, tp.offset))
                else:
                    out("COMMITFAIL %d %s" % (tp.partition, tp.error))
        except KafkaException as e:
            out("COMMITFAIL %s" % str(e).replace("\n", " "))

    while not done.is_set():
        msgs = c.consume(num_messages=200, timeout=0.2)
        read = 0
        for m in msgs:
            if m.error():
                out("INFO consumer error %s" % m.error())
                continue
            out("READ %s %d %d" % (m.value().decode(), m.partition(), m.offset()))
            read += 1
        if read:
            commit()
    commit()
    c.close()
    out("DONE")


def kafkapython_produce(bootstrap, topic, prefix, done):
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", retries=1000,
                      retry_backoff_ms=200, max_in_flight_requests_per_connection=1,
                      linger_ms=5, request_timeout_ms=10000, metadata_max_age_ms=1000,
                      reconnect_backoff_max_ms=1000)
    def ok(v):
        return lambda md: out("ACK %s %d %d" % (v, md.partition, md.offset))

    def err(v):
        return lambda e: out("NACK %s %r" % (v, e))

    seq = 0
    while not done.is_set():
        v = "%s-%07d" % (prefix, seq)
        f = p.send(topic, key=v.encode(), value=v.encode())
        f.add_callback(ok(v))
        f.add_errback(err(v))
        seq += 1
        time.sleep(1.0 / RATE_PER_S)
    p.flush(150)
    p.close(10)
    out("DONE sent=%d" % seq)


def kafkapython_consume(bootstrap, topic, group, done):
    from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

    c = KafkaConsumer(topic, bootstrap_servers=bootstrap.split(","), group_id=group,
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      session_timeout_ms=10000, heartbeat_interval_ms=500,
                      metadata_max_age_ms=1000, request_timeout_ms=15000,
                      reconnect_backoff_max_ms=1000)

    def commit(offsets):
        """Commits offsets ({partition: next offset}); True once acknowledged."""
        try:
            c.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in
                      offsets.items()})
        except Exception as e:  # the client's CommitFailedError, timeouts, ...
            out("COMMITFAIL %r" % e)
            return False
        for p, o in sorted(offsets.items()):
            out("COMMITTED %d %d" % (p, o))
        return True

    pending = {}  # read but not yet acknowledged as committed: kept until a commit succeeds
    while not done.is_set():
        batch = c.poll(timeout_ms=200, max_records=200)
        for tp, records in batch.items():
            for r in records:
                out("READ %s %d %d" % (r.value.decode(), r.partition, r.offset))
                pending[r.partition] = r.offset + 1
        if batch and commit(pending):
            pending = {}
    if pending:
        commit(pending)
    c.close()
    out("DONE")


def main():
    family, mode, bootstrap, topic, arg = sys.argv[1:6]
    fn = {("confluent", "produce"): confluent_produce,
          ("confluent", "consume"): confluent_consume,
          ("kafkapython", "produce"): kafkapython_produce,
          ("kafkapython", "consume"): kafkapython_consume}[(family, mode)]
    fn(bootstrap, topic, arg, watch_stdin())


if __name__ == "__main__":
    main()
