"""Regenerates corpus.json, the seed frames of fuzz_wire.py: real clients (kcat, confluent-kafka,
kafka-python, the Java client) talk to a laminar broker through a recording TCP proxy, which saves
every request frame (length prefix + header + body) by client, API key and version.

    /usr/bin/python3 capture.py [--io uring|epoll] [--out corpus.json] [--per-version 3]

The broker advertises the proxy's address (advertised.listeners), so the clients' connections
after bootstrap go through the proxy too. The capture fails unless every API key the broker
advertises in ApiVersions appears in the corpus. Needs kcat, python3-confluent-kafka,
python3-kafka and, for the Java client, tests/compat/java/prepare (lib/).
"""

import argparse
import collections
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker, free_port  # noqa: E402
import fw_wire  # noqa: E402

JAVA_DIR = os.path.join(HERE, "..", "java")
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


class RecordingProxy:
    """Accepts clients on listen_port and forwards each connection to the broker; the
    client-to-broker bytes are cut into frames (int32 length prefix) and appended to frames as
    (client label, frame bytes). label is whatever the driver set last."""

    def __init__(self, listen_port, upstream):
        self.upstream = upstream
        self.label = "none"
        self.frames = []
        self.lock = threading.Lock()
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", listen_port))
        self.srv.listen(128)
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.upstream, timeout=10)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            threading.Thread(target=self._pump, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, False), daemon=True).start()

    def _pump(self, src, dst, record):
        buf = bytearray()
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if record:
                    buf += data
                    while len(buf) >= 4:
                        n = int.from_bytes(buf[:4], "big", signed=True)
                        if n < 0 or len(buf) < 4 + n:
                            break
                        with self.lock:
                            self.frames.append((self.label, bytes(buf[:4 + n])))
                        del buf[:4 + n]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            src.close()

    def close(self):
        self.stopping = True
        self.srv.close()


def run(cmd, what, timeout=90, stdin=None, check=True):
    print("$ %s" % " ".join(cmd), flush=True)
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    out = p.stdout.decode("utf-8", "replace")
    if p.returncode != 0 and check:
        raise RuntimeError("%s failed (%d):\n%s" % (what, p.returncode, out[-3000:]))
    return out


def drive_kcat(bs):
    run(["kcat", "-b", bs, "-L"], "kcat metadata")
    msgs = b"".join(b"kcat-%d repeated payload repeated payload\n" % i for i in range(8))
    for codec in CODECS:
        z = [] if codec == "none" else ["-z", codec]
        run(["kcat", "-b", bs, "-P", "-t", "fw-kcat", "-p", "0"] + z, "kcat produce " + codec,
            stdin=msgs)
    run(["kcat", "-b", bs, "-C", "-t", "fw-kcat", "-o", "beginning", "-e", "-q"], "kcat consume")
    run(["kcat", "-b", bs, "-Q", "-t", "fw-kcat:0:1000"], "kcat offsets for times")
    run(["kcat", "-b", bs, "-G", "fw-kcat-group", "-o", "beginning", "-e", "-q", "fw-kcat"],
        "kcat group consume", timeout=60)


def drive_confluent(bs):
    import confluent_kafka as ck
    from confluent_kafka.admin import AdminClient, NewTopic, NewPartitions, ConfigResource
    a = AdminClient({"bootstrap.servers": bs})
    for f in a.create_topics([NewTopic("fw-ck", 2, 1), NewTopic("fw-ck-doomed", 1, 1)]).values():
        f.result(15)
    for codec in CODECS:
        p = ck.Producer({"bootstrap.servers": bs, "compression.type": codec, "linger.ms": 5,
                         "enable.idempotence": codec in ("none", "zstd")})
        for i in range(8):
            p.produce("fw-ck", key=b"k%d" % i, value=b"ck-%s-%d repeated repeated" % (
                codec.encode(), i), partition=i % 2, headers=[("h", b"v")])
        if p.flush(30) != 0:
            raise RuntimeError("confluent producer %s did not flush" % codec)
    c = ck.Consumer({"bootstrap.servers": bs, "group.id": "fw-ck-group",
                     "auto.offset.reset": "earliest", "enable.auto.commit": False,
                     "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    c.subscribe(["fw-ck"])
    got, deadline = 0, time.monotonic() + 30
    while got < 16 and time.monotonic() < deadline:
        m = c.poll(0.3)
        if m is not None and not m.error():
            got += 1
    time.sleep(1.2)  # a few heartbeats
    c.commit(asynchronous=False)
    c.committed([ck.TopicPartition("fw-ck", 0), ck.TopicPartition("fw-ck", 1)], timeout=10)
    c.get_watermark_offsets(ck.TopicPartition("fw-ck", 0), timeout=10)
    c.offsets_for_times([ck.TopicPartition("fw-ck", 0, 1)], timeout=10)
    c.close()
    if got < 16:
        raise RuntimeError("confluent consumer got %d of 16" % got)
    for f in a.create_partitions([NewPartitions("fw-ck-doomed", 3)]).values():
        f.result(15)
    res = ConfigResource("topic", "fw-ck")
    for f in a.describe_configs([res, ConfigResource("broker", "1")]).values():
        try:
            f.result(15)
        except Exception as e:  # noqa: BLE001 - the broker id may differ; the frame is what counts
            print("describe_configs: %s" % e)
    res.set_config("retention.ms", "3600000")
    for f in a.alter_configs([res]).values():
        f.result(15)
    a.list_groups(timeout=10)
    for f in a.delete_topics(["fw-ck-doomed"]).values():
        f.result(15)


def drive_kafka_python(bs):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
    a = KafkaAdminClient(bootstrap_servers=bs)
    a.create_topics([NewTopic("fw-kp", 1, 1), NewTopic("fw-kp-doomed", 1, 1)])
    for codec in (None, "gzip"):  # the other codecs need modules Debian does not ship
        p = KafkaProducer(bootstrap_servers=bs, compression_type=codec, linger_ms=5)
        for i in range(8):
            p.send("fw-kp", key=b"k%d" % i, value=b"kp-%d repeated repeated" % i, partition=0)
        p.flush(30)
        p.close()
    c = KafkaConsumer("fw-kp", bootstrap_servers=bs, group_id="fw-kp-group",
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=8000)
    got = sum(1 for _, m in zip(range(16), c))
    c.commit()
    c.end_offsets(list(c.assignment()))
    c.beginning_offsets(list(c.assignment()))
    c.close()
    if got < 16:
        raise RuntimeError("kafka-python consumer got %d of 16" % got)
    a.create_partitions({"fw-kp-doomed": NewPartitions(2)})
    a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "fw-kp")])
    a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "fw-kp",
                                    configs={"retention.ms": "7200000"})])
    a.describe_cluster()
    a.list_consumer_groups()
    a.describe_consumer_groups(["fw-kp-group"])
    a.list_consumer_group_offsets("fw-kp-group")
    a.delete_consumer_groups(["fw-kp-group"])
    a.delete_topics(["fw-kp-doomed"])
    drive_kafka_python_acls(a)
    a.close()


def drive_kafka_python_acls(a):
    """Describe/Create/DeleteAcls: answered SECURITY_DISABLED without an authorizer, captured all
    the same (the frames are what matters)."""
    from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType,
                             ACLResourcePatternType, ResourcePattern, ResourcePatternFilter,
                             ResourceType)
    from kafka.errors import SecurityDisabledError
    flt = ACLFilter(principal=None, host="*", operation=ACLOperation.ANY,
                    permission_type=ACLPermissionType.ANY,
                    resource_pattern=ResourcePatternFilter(ResourceType.ANY, None,
                                                           ACLResourcePatternType.ANY))
    acl = ACL(principal="User:fw", host="*", operation=ACLOperation.READ,
              permission_type=ACLPermissionType.ALLOW,
              resource_pattern=ResourcePattern(ResourceType.TOPIC, "fw-kp",
                                               ACLResourcePatternType.LITERAL))
    try:
        a.describe_acls(flt)
    except SecurityDisabledError:
        pass
    a.create_acls([acl])
    a.delete_acls([flt])


def drive_java(bs):
    lib = os.path.join(JAVA_DIR, "lib")
    if not os.path.exists(os.path.join(lib, ".complete")):
        raise RuntimeError("tests/compat/java/lib is not prepared (tests/compat/java/prepare)")
    out = tempfile.mkdtemp(prefix="fuzzwire-java-")
    try:
        cp = os.path.join(lib, "*")
        run(["javac", "-nowarn", "-d", out, "-cp", cp, os.path.join(HERE, "CaptureJava.java")],
            "javac", timeout=180)
        text = run(["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1",
                    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", cp + ":" + out,
                    "CaptureJava", bs], "java capture", timeout=240)
        print(text)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def drive_sasl(bs):
    """The SASL exchange's requests, hand-built: the capture broker's listener is PLAINTEXT, so
    no client sends them there (the broker answers or closes; the frames are what counts).
    SaslHandshake v0/v1 (mechanism PLAIN) and SaslAuthenticate v0/v1 (classic) and v2
    (flexible) with a PLAIN token."""
    sys.path.insert(0, os.path.join(HERE, "..", "harness"))
    import kafka_wire as kw
    host, port = bs.split(":")
    token = b"\x00fw-user\x00fw-password"
    sends = [(17, 0, kw.sstr("PLAIN"), False), (17, 1, kw.sstr("PLAIN"), False),
             (36, 0, kw.sbytes(token), False), (36, 1, kw.sbytes(token), False),
             (36, 2, kw.uvar(len(token) + 1) + token + b"\x00", True)]
    for key, version, body, flexible in sends:
        c = kw.Conn(host, int(port), "fw-sasl", timeout=5)
        try:
            c.send(key, version, body, flexible)
            try:
                c.response(flexible, none_on_close=True)
            except (OSError, EOFError, AssertionError):
                pass
        finally:
            c.close()


def select_frames(raw, per_version):
    """Keeps up to per_version distinct frames per (client, api, version), the first ones seen
    (a client's first frames of an API are its typical ones; for Produce, per codec of the
    first batch), none over 64 KiB."""
    kept = collections.OrderedDict()
    seen = set()
    for label, fr in raw:
        if len(fr) < 12 or len(fr) > 65536:
            continue
        key, ver, _ = fw_wire.header_of(fr)
        # the correlation id differs between otherwise equal frames
        sig = fr[:8] + fr[12:]
        if sig in seen:
            continue
        seen.add(sig)
        codec = -1
        if key == 0:  # one slot per codec: each client's batches of every compression type
            batches = fw_wire.find_batches(fr)
            codec = fr[batches[0][0] + 22] & 7 if batches else -1
        slot = kept.setdefault((label, key, ver, codec), [])
        if len(slot) < per_version:
            slot.append(fr)
    out = []
    for (label, key, ver, _), frs in kept.items():
        for fr in frs:
            out.append({"api": key, "version": ver, "client": label, "frame": fr})
    out.sort(key=lambda e: (e["api"], e["version"], e["client"]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="epoll")
    ap.add_argument("--out", default=os.path.join(HERE, fw_wire.HERE_CORPUS))
    ap.add_argument("--per-version", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma-separated drivers not to run (testing)")
    args = ap.parse_args()
    proxy_port = free_port()
    b = Broker(io=args.io, shards=2, config={"num.partitions": "1"},
               extra_args=["--advertised-listeners", "PLAINTEXT://127.0.0.1:%d" % proxy_port])
    drivers = [("kcat", drive_kcat), ("confluent-kafka", drive_confluent),
               ("kafka-python", drive_kafka_python), ("java", drive_java), ("sasl", drive_sasl)]
    failed = []
    try:
        b.start()
        proxy = RecordingProxy(proxy_port, (b.host, b.port))
        bs = "127.0.0.1:%d" % proxy_port
        for name, fn in drivers:
            if name in args.skip.split(","):
                continue
            proxy.label = name
            print("== %s" % name, flush=True)
            try:
                fn(bs)
            except Exception as e:  # noqa: BLE001
                failed.append(name)
                print("driver %s failed: %s" % (name, e))
            time.sleep(0.5)  # let the last bytes pass through the proxy
        served = fw_wire.api_versions(b.host, b.port)
        proxy.close()
        if not b.alive():
            raise RuntimeError("broker died during the capture:\n" + b.log_text()[-4000:])
        entries = select_frames(proxy.frames, args.per_version)
        # Frames written by hand (APIs no client here sends, e.g. transactions' broker-side
        # calls, or shapes no client makes) are kept from the corpus being replaced.
        if os.path.exists(args.out):
            entries += [e for e in fw_wire.load_corpus(args.out)[1]
                        if e["client"] == "hand-built"]
            entries.sort(key=lambda e: (e["api"], e["version"], e["client"]))
        have = set(e["api"] for e in entries)
        missing = sorted(set(served) - have)
        counts = collections.Counter(e["api"] for e in entries)
        print("captured %d frames (%d kept) over %d API keys" % (len(proxy.frames), len(entries),
                                                                 len(have)))
        for k in sorted(counts):
            vers = sorted(set(e["version"] for e in entries if e["api"] == k))
            clients = sorted(set(e["client"] for e in entries if e["api"] == k))
            print("  api %3d: %3d frames, versions %s, clients %s" % (k, counts[k], vers,
                                                                     ",".join(clients)))
        if failed:
            print("FAIL: drivers failed: %s" % ", ".join(failed))
            return 1
        if missing:
            print("FAIL: API keys the broker serves but no client sent: %s" % missing)
            return 1
        codecs = set(fr[s + 22] & 7 for fr in (e["frame"] for e in entries if e["api"] == 0)
                     for s, _ in fw_wire.find_batches(fr))
        if codecs != {0, 1, 2, 3, 4}:
            print("FAIL: Produce batches of codecs %s only (want none, gzip, snappy, lz4, zstd)"
                  % sorted(codecs))
            return 1
        fw_wire.save_corpus(args.out, {"served": {str(k): list(v) for k, v in
                                                  sorted(served.items())}}, entries)
        print("wrote %s" % args.out)
        return 0
    finally:
        b.cleanup()


if __name__ == "__main__":
    sys.exit(main())
