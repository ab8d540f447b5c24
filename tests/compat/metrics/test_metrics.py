"""/metrics against real clients. A broker with laminar.http.listener on a free port; confluent-kafka
produces N records (acks=all) to a 3-partition topic and reads them all back; the scrape must say:
  - kafka_server_brokertopicmetrics_messages_in_total == N, bytes in and out >= N * value size;
  - Produce requests counted == Produce requests timed (every one answered), no failed produce;
  - partition and topic counts as created (with __consumer_offsets), none offline;
  - open connections per listener rise with a client and fall when it closes;
  - process RSS and open files are there.
The HTTP side: 404 elsewhere, 405 for POST, 400 for garbage, a silent client does not stop later
scrapes. A second broker with laminar.metrics.enable=false counts no records.

    /usr/bin/python3 test_metrics.py --io uring|epoll
"""
import argparse
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
from laminar_harness import Broker, free_port  # noqa: E402
from compat_util import check  # noqa: E402

import confluent_kafka as ck  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

N = 3000
VALUE = 100


def scrape(port, path="/metrics"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=15) as r:
        check(r.status == 200, "status %d" % r.status)
        check(r.headers["Content-Type"].startswith("text/plain; version=0.0.4"),
              "content type %s" % r.headers["Content-Type"])
        return r.read().decode()


def values(text):
    """{(name, labels): float} of every sample; labels as the raw {...} text or ''."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$', line)
        check(m is not None, "malformed sample line: %r" % line)
        out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def total(v, name, label_re=""):
    return sum(x for (n, labels), x in v.items() if n == name and re.search(label_re, labels))


def http_status(port, method="GET", path="/metrics", raw=None):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(raw if raw is not None else
                  ("%s %s HTTP/1.1\r\nHost: x\r\n\r\n" % (method, path)).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return int(data.split(b" ", 2)[1])
    finally:
        s.close()


def produce_consume(b, topic):
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in a.create_topics([NewTopic(topic, 3, 1)]).values():
        f.result(20)
    p = ck.Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5,
                     "enable.idempotence": True})
    delivered = []
    for i in range(N):
        while True:
            try:
                p.produce(topic, value=b"%0*d" % (VALUE, i), partition=i % 3,
                          on_delivery=lambda err, msg: delivered.append(err))
                break
            except BufferError:
                p.poll(0.05)
    check(p.flush(30) == 0, "producer did not flush")
    check(len(delivered) == N and all(e is None for e in delivered), "delivery failed")
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "metrics-test",
                     "enable.auto.commit": False, "enable.partition.eof": True})
    c.assign([ck.TopicPartition(topic, i, ck.OFFSET_BEGINNING) for i in range(3)])
    got, eofs, deadline = 0, set(), time.monotonic() + 60
    while (got < N or len(eofs) < 3) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == ck.KafkaError._PARTITION_EOF:
                eofs.add(m.partition())
            continue
        got += 1
    check(got == N, "consumed %d of %d" % (got, N))
    return c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    io = ap.parse_args().io
    port = free_port()
    b = Broker(io=io, config={"laminar.http.listener": "127.0.0.1:%d" % port})
    try:
        b.start()
        check("metrics: http://127.0.0.1:%d/metrics" % port in b.log_text(), "no metrics line")
        started = time.time()
        before = values(scrape(port))
        check(total(before, "kafka_server_brokertopicmetrics_messages_in_total") == 0,
              "records counted before any produce")
        c = produce_consume(b, "metered")
        v = values(scrape(port))
        check(total(v, "kafka_server_brokertopicmetrics_messages_in_total") == N,
              "messages in %s, produced %d" %
              (total(v, "kafka_server_brokertopicmetrics_messages_in_total"), N))
        check(total(v, "kafka_server_brokertopicmetrics_bytes_in_total") >= N * VALUE, "bytes in")
        check(total(v, "kafka_server_brokertopicmetrics_bytes_out_total") >= N * VALUE,
              "bytes out %s" % total(v, "kafka_server_brokertopicmetrics_bytes_out_total"))
        check(total(v, "kafka_server_brokertopicmetrics_failed_produce_requests_total") == 0,
              "failed produce")
        produces = total(v, "kafka_network_requests_total", r'request="Produce"')
        timed = total(v, "kafka_network_request_total_time_seconds_count", r'request="Produce"')
        check(produces >= 1 and produces == timed,
              "Produce requests %s, timed %s" % (produces, timed))
        inf = total(v, "kafka_network_request_total_time_seconds_bucket",
                    r'request="Produce",le="\+Inf"')
        check(inf == timed, "+Inf bucket %s != count %s" % (inf, timed))
        check(total(v, "kafka_network_requests_total", r'request="Fetch"') >= 1, "no Fetch")
        check(total(v, "kafka_controller_kafkacontroller_globaltopiccount") == 2, "topics")
        check(total(v, "kafka_server_replicamanager_partitioncount") == 3 + 50, "partitions")
        check(total(v, "kafka_controller_kafkacontroller_offlinepartitionscount") == 0, "offline")
        # one idempotent producer wrote to 3 partitions: each holds its state
        check(total(v, "kafka_server_replicamanager_produceridcount") == 3,
              "producer ids %s" % total(v, "kafka_server_replicamanager_produceridcount"))
        elected = [x for (n, labels), x in v.items()
                   if n == "laminar_partition_last_election_timestamp_seconds" and
                   'topic="metered"' in labels]
        check(len(elected) == 3 and all(started - 5 <= x <= time.time() + 5 for x in elected),
              "last election times %s (started %.0f)" % (elected, started))
        open_with = total(v, "kafka_server_socket_server_connections", r'listener="PLAINTEXT"')
        check(open_with >= 1, "no open connection counted while the consumer is open")
        check(total(v, "process_resident_memory_bytes") > 1 << 20, "rss")
        check(total(v, "process_open_fds") > 3, "open fds")
        c.close()
        deadline = time.monotonic() + 10
        while True:
            now = total(values(scrape(port)), "kafka_server_socket_server_connections")
            if now < open_with:
                break
            check(time.monotonic() < deadline, "connections gauge did not fall after close")
            time.sleep(0.2)
        # The HTTP side.
        check(http_status(port, path="/nope") == 404, "404")
        check(http_status(port, method="POST") == 405, "405")
        check(http_status(port, raw=b"\x00\x01garbage\r\n\r\n") == 400, "400")
        silent = socket.create_connection(("127.0.0.1", port))
        t0 = time.monotonic()
        scrape(port)  # waits at most for the silent client's read timeout
        check(time.monotonic() - t0 < 12, "a silent client held the endpoint")
        silent.close()
        check(b.stop() == 0, "clean stop failed")
    except Exception:
        sys.stderr.write(b.log_text()[-4000:])
        raise
    finally:
        b.cleanup()

    port2 = free_port()
    b2 = Broker(io=io, config={"laminar.http.listener": "127.0.0.1:%d" % port2,
                               "laminar.metrics.enable": "false"})
    try:
        b2.start()
        produce_consume(b2, "unmetered").close()
        v = values(scrape(port2))
        check(total(v, "kafka_server_brokertopicmetrics_messages_in_total") == 0,
              "records counted with laminar.metrics.enable=false")
        check(total(v, "kafka_network_requests_total") == 0, "requests counted when off")
        check(total(v, "kafka_server_replicamanager_partitioncount") == 3 + 50, "gauges still on")
        check(b2.stop() == 0, "clean stop failed")
    except Exception:
        sys.stderr.write(b2.log_text()[-4000:])
        raise
    finally:
        b2.cleanup()
    print("metrics agree with the clients (%s)" % io)


if __name__ == "__main__":
    main()
