"""The web console's JSON endpoints and /metrics against what confluent-kafka did.

A broker with laminar.http.listener on a free port. The client creates topic `orders` (3
partitions), produces 100 keyed records with headers to each partition (partition 2 with
timestamps base + i s), and a consumer group subscribes and commits offsets 100 / 40 / 0 for
partitions 0 / 1 / 2. Then:
  - /api/cluster: the cluster id and controller AdminClient reports, one broker;
  - /api/topics and /api/topics/orders: 3 partitions, HW = LSO = 100 each, leader and ISR, sizes,
    configs;
  - /api/groups and /api/groups/<g>: Stable with one member holding the 3 partitions, committed
    offsets and lag 0 / 60 / 100 (total 160); Empty with the same offsets once it leaves;
  - /api/records: by offset (keys, values, headers as produced), by timestamp, bounded by max;
  - /metrics: messages in for topic orders = 300, group lag per partition, the Produce request
    time split (local/remote/send counts equal the total count);
  - hostile input: long URLs, bad query strings, unknown names, 200 idle connections: 4xx or a
    close, and the broker still answers;
  - a second broker with a SASL_PLAINTEXT listener and the ACL authorizer: 401 without or with
    wrong credentials, and each user sees the topics its ACLs allow (Kafka's DESCRIBE / READ);
  - a third with SCRAM-SHA-512 alone: Basic credentials checked by a SCRAM exchange.

    /usr/bin/python3 test_console.py --io uring|epoll
"""
import argparse
import base64
import json
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

PER_PARTITION = 100
TS_BASE = 1700000000000


def get(port, path, auth=None, expect=200):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path))
    if auth is not None:
        req.add_header("Authorization",
                       "Basic " + base64.b64encode(("%s:%s" % auth).encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            status, body, headers = r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        status, body, headers = e.code, e.read(), e.headers
    check(status == expect, "GET %s: status %d, expected %d: %r" % (path, status, expect, body[:300]))
    if headers.get("Content-Type", "").startswith("application/json"):
        return json.loads(body), headers
    return body.decode(errors="replace"), headers


def metrics(port):
    text, _ = get(port, "/metrics")
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$', line)
            check(m is not None, "malformed sample line %r" % line)
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def produce(bootstrap):
    a = AdminClient({"bootstrap.servers": bootstrap})
    for f in a.create_topics([NewTopic("orders", num_partitions=3, replication_factor=1)]).values():
        f.result(30)
    p = ck.Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    sent = {}
    for part in range(3):
        for i in range(PER_PARTITION):
            key = ("k-%d-%d" % (part, i)).encode()
            value = json.dumps({"p": part, "i": i, "s": "x\"y<z>"}).encode()
            kw = {"timestamp": TS_BASE + i * 1000} if part == 2 else {}
            p.produce("orders", key=key, value=value, partition=part,
                      headers=[("h", ("hv%d" % i).encode()), ("bin", b"\x00\xff")], **kw)
            sent[(part, i)] = (key, value)
    check(p.flush(30) == 0, "records left unsent")
    return a, sent


def check_cluster_topics(port, admin):
    c, _ = get(port, "/api/cluster")
    md = admin.list_topics(timeout=10)
    check(c["cluster_id"] == md.cluster_id, "cluster id %r vs %r" % (c["cluster_id"], md.cluster_id))
    check(c["controller_id"] == md.controller_id, "controller %r" % c)
    check(len(c["brokers"]) == 1 and c["brokers"][0]["node_id"] == c["node_id"], "brokers %r" % c)
    check(c["offline_partitions"] == 0, "offline %r" % c)
    t, _ = get(port, "/api/topics")
    by = {x["name"]: x for x in t["topics"]}
    check("orders" in by and by["orders"]["partitions"] == 3, "topics %r" % t)
    check(by["orders"]["replication_factor"] == 1 and not by["orders"]["internal"], "orders %r" %
          by["orders"])
    check(by["orders"]["size_bytes"] > PER_PARTITION * 3 * 20, "size %r" % by["orders"])
    check(set(by) == set(md.topics), "topic names %r vs %r" % (sorted(by), sorted(md.topics)))
    d, _ = get(port, "/api/topics/orders")
    check(len(d["partitions"]) == 3, "partitions %r" % d)
    for p in d["partitions"]:
        check(p["high_watermark"] == PER_PARTITION and p["last_stable_offset"] == PER_PARTITION,
              "HW/LSO %r" % p)
        check(p["log_start_offset"] == 0 and p["leader"] == c["node_id"], "start/leader %r" % p)
        check(p["replicas"] == [c["node_id"]] and p["isr"] == [c["node_id"]], "ISR %r" % p)
        check(p["size_bytes"] > 0, "partition size %r" % p)
    cfg = {x["name"]: x for x in d["configs"]}
    check(cfg["cleanup.policy"]["value"] == "delete", "configs %r" % list(cfg)[:5])
    get(port, "/api/topics/nope", expect=404)


def check_group(port, bootstrap, group):
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.subscribe(["orders"])
    deadline = time.monotonic() + 30
    while not c.assignment() and time.monotonic() < deadline:
        c.poll(0.2)
    check(len(c.assignment()) == 3, "assignment %r" % c.assignment())
    c.commit(offsets=[ck.TopicPartition("orders", 0, 100), ck.TopicPartition("orders", 1, 40),
                      ck.TopicPartition("orders", 2, 0)], asynchronous=False)
    lag = {0: 0, 1: 60, 2: 100}
    # more groups, so the scrape's lag walks several (each with its own answers)
    for i in range(3):
        o = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "g-other-%d" % i})
        o.commit(offsets=[ck.TopicPartition("orders", 0, 10 + i)], asynchronous=False)
        o.close()
    g, _ = get(port, "/api/groups")
    check({"group_id": group, "protocol_type": "consumer", "state": "Stable"} in g["groups"],
          "groups %r" % g)
    d, _ = get(port, "/api/groups/" + group)
    check(d["state"] == "Stable" and len(d["members"]) == 1, "group %r" % d)
    assigned = d["members"][0]["assignment"]
    check(assigned == [{"topic": "orders", "partitions": [0, 1, 2]}], "assignment %r" % assigned)
    offs = {o["partition"]: o for o in d["offsets"] if o["topic"] == "orders"}
    for p, want in lag.items():
        check(offs[p]["committed_offset"] == PER_PARTITION - want and offs[p]["log_end_offset"] ==
              PER_PARTITION and offs[p]["lag"] == want, "offsets %r" % offs[p])
    check(d["lag"] == sum(lag.values()), "total lag %r" % d["lag"])
    m = metrics(port)
    for i in range(3):
        key = ("laminar_consumergroup_lag", '{group="g-other-%d",topic="orders",partition="0"}' % i)
        check(m.get(key) == 90 - i, "lag metric %r = %r" % (key, m.get(key)))
    for p, want in lag.items():
        key = ("laminar_consumergroup_lag",
               '{group="%s",topic="orders",partition="%d"}' % (group, p))
        check(m.get(key) == want, "lag metric %r = %r" % (key, m.get(key)))
    c.close()
    d, _ = get(port, "/api/groups/" + group)
    check(d["state"] == "Empty" and d["members"] == [] and d["lag"] == 160, "after close %r" % d)
    get(port, "/api/groups/no-such-group", expect=404)


def check_records(port, sent):
    r, _ = get(port, "/api/records?topic=orders&partition=1&offset=10&max=5")
    check([x["offset"] for x in r["records"]] == list(range(10, 15)), "offsets %r" % r)
    check(r["next_offset"] == 15 and r["high_watermark"] == PER_PARTITION, "next/hw %r" % r)
    for x in r["records"]:
        key, value = sent[(1, x["offset"])]
        check(base64.b64decode(x["key"]) == key and base64.b64decode(x["value"]) == value,
              "record %r" % x)
        hs = {h["key"]: base64.b64decode(h["value"]) for h in x["headers"]}
        check(hs == {"h": ("hv%d" % x["offset"]).encode(), "bin": b"\x00\xff"}, "headers %r" % hs)
    r, _ = get(port, "/api/records?topic=orders&partition=2&timestamp=%d&max=3" %
               (TS_BASE + 50 * 1000 - 1))
    check([x["offset"] for x in r["records"]] == [50, 51, 52], "by timestamp %r" % r["records"])
    check(r["records"][0]["timestamp"] == TS_BASE + 50 * 1000, "timestamp %r" % r["records"][0])
    r, _ = get(port, "/api/records?topic=orders&partition=0&max=500")
    check(len(r["records"]) == PER_PARTITION, "all of partition 0: %d" % len(r["records"]))
    r, _ = get(port, "/api/records?topic=orders&partition=0&offset=-1")
    check(r["records"] == [] and r["from_offset"] == PER_PARTITION, "latest %r" % r)
    for bad in ("/api/records", "/api/records?topic=orders", "/api/records?topic=orders&partition=x",
                "/api/records?topic=orders&partition=0&offset=1&timestamp=1",
                "/api/records?topic=orders&partition=0&max=100000",
                "/api/records?topic=orders&partition=0&offset=%zz",
                "/api/records?topic=orders&partition=-1"):
        get(port, bad, expect=400)
    get(port, "/api/records?topic=nope&partition=0&offset=0", expect=404)


def check_metrics(port):
    m = metrics(port)
    check(m.get(("kafka_server_brokertopicmetrics_messages_in_total", '{topic="orders"}')) ==
          3 * PER_PARTITION, "messages in for orders: %r" %
          m.get(("kafka_server_brokertopicmetrics_messages_in_total", '{topic="orders"}')))
    check(m.get(("kafka_server_brokertopicmetrics_bytes_out_total", '{topic="orders"}'), 0) > 0,
          "bytes out for orders")
    total = m[("kafka_network_request_total_time_seconds_count", '{request="Produce"}')]
    for kind in ("local", "remote", "send"):
        n = m.get(("kafka_network_request_%s_time_seconds_count" % kind, '{request="Produce"}'))
        check(n == total, "%s count %r != total %r" % (kind, n, total))
    check(m[("kafka_log_logflushstats_flushes_total", "")] > 0 and
          m[("kafka_log_logflushstats_flush_seconds_total", "")] > 0,
          "acks=all produce flushed nothing")
    flush_buckets = [(k[1], v) for k, v in m.items() if k[0] == "laminar_log_flush_seconds_bucket"]
    check(len(flush_buckets) == 21 and flush_buckets[-1][0] == '{le="+Inf"}',
          "flush histogram buckets %r" % flush_buckets)
    counts = [v for _, v in flush_buckets]
    check(counts == sorted(counts) and counts[-1] ==
          m[("laminar_log_flush_seconds_count", "")] > 0 and
          m[("laminar_log_flush_seconds_sum", "")] > 0, "flush histogram %r" % flush_buckets)
    check(m[("kafka_log_log_numlogsegments", "")] >= 3 and
          m[("kafka_log_log_size", "")] >= 3 * PER_PARTITION * 20, "log segments / size")
    for part in range(3):
        lbl = '{topic="orders",partition="%d"}' % part
        check(m.get(("laminar_partition_leader", lbl)) == 1 and
              m.get(("laminar_partition_leader_epoch", lbl), -1) >= 0 and
              m.get(("laminar_partition_commit_lag_records", lbl)) == 0,
              "partition series %s: %r" % (lbl, [(k, v) for k, v in m.items() if lbl in k[1]]))
    check(m.get(("laminar_partition_untracked", "")) == 0, "untracked partitions")
    check(any(k[0] == "laminar_shard_idle_seconds_total" for k in m), "idle seconds")
    turns = sum(v for k, v in m.items() if k[0] == "laminar_shard_loop_turns_total")
    done = sum(v for k, v in m.items() if k[0] == "laminar_shard_ring_completed_total")
    check(turns > 0 and done > 0, "loop turns %r, completions %r" % (turns, done))
    check(any(k[0] == "laminar_shard_mailbox_depth" for k in m), "mailbox depth")
    # every series the Grafana dashboard queries is one the broker exports
    dash = json.load(open(os.path.join(os.path.dirname(__file__), "..", "..", "..", "deploy",
                                       "grafana", "laminar.json")))
    names = {k[0] for k in m}
    used = set()
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            used |= set(re.findall(r"\b((?:kafka|laminar|process)_[a-z0-9_]+)", t["expr"]))
    check(len(used) > 15, "dashboard names %r" % used)
    # the controller and SWIM gauges exist in a cluster only
    missing = {u for u in used if u not in names} - {
        "kafka_controller_kafkacontroller_activecontrollercount", "laminar_swim_members"}
    check(not missing, "the dashboard queries series /metrics does not have: %r" % sorted(missing))


def raw(port, data, read=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(data)
        if not read:
            return None
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def status_of(resp):
    if not resp:
        return None  # closed without an answer
    return int(resp.split(b" ", 2)[1])


def check_hostile(b, port):
    cases = [
        b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n",       # longer than the head bound
        b"GET /api/topics/" + b"a" * 600 + b" HTTP/1.1\r\n\r\n",  # longer than a path
        b"GET /api/records?" + b"x" * 2000 + b" HTTP/1.1\r\n\r\n",
        b"GET /api/topics/%ZZ HTTP/1.1\r\n\r\n",
        b"GET /api/topics/a%00b HTTP/1.1\r\n\r\n",
        b"GET /api/topics/" + b"b" * 300 + b" HTTP/1.1\r\n\r\n",
        b"GET /api/../../etc/passwd HTTP/1.1\r\n\r\n",
        b"POST /api/topics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 64 + b"\r\n\r\n",  # TLS hello
        b"GET / HTTP/1.1\r\nAuthorization: Basic " + b"Q" * 2000 + b"\r\n\r\n",
    ]
    for c in cases:
        st = status_of(raw(port, c))
        check(st is None or 400 <= st < 500, "hostile %r...: status %r" % (c[:40], st))
    # many idle and trickling connections held open: heads are read side by side (a bounded
    # number, the oldest dropped), so a real request still gets through at once
    idle = []
    for i in range(200):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i % 2:
                s.sendall(b"GET /api/clu")  # a head that never ends
            idle.append(s)
        except OSError:
            break
    check(len(idle) == 200, "only %d connections accepted" % len(idle))
    t0 = time.monotonic()
    get(port, "/api/cluster")
    get(port, "/metrics")
    check(time.monotonic() - t0 < 4, "idle connections held the endpoint for %.1f s" %
          (time.monotonic() - t0))
    for s in idle:
        s.close()
    check(b.alive(), "broker died")


USERS = {"admin": "admin-secret", "alice": "alice-secret"}
JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
        'username="admin" password="admin-secret" ' +
        " ".join('user_%s="%s"' % kv for kv in USERS.items()) + ";")


class SaslBroker(Broker):
    def args(self):
        a = super().args()
        i = a.index("--listeners")
        a[i + 1] = "SASL_PLAINTEXT://%s:%d" % (self.host, self.port)
        return a


def check_security(io):
    port = free_port()
    config = {"laminar.http.listener": "127.0.0.1:%d" % port,
              "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
              "super.users": "User:admin", "sasl.enabled.mechanisms": "PLAIN",
              "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
              "auto.create.topics.enable": "false"}
    with SaslBroker(io=io, shards=2, config=config) as b:
        try:
            conf = {"bootstrap.servers": b.bootstrap, "security.protocol": "SASL_PLAINTEXT",
                    "sasl.mechanism": "PLAIN", "sasl.username": "admin",
                    "sasl.password": "admin-secret"}
            a = AdminClient(conf)
            for f in a.create_topics([NewTopic("public", 1, 1), NewTopic("secret", 1, 1)]).values():
                f.result(30)
            # confluent-kafka 1.7 has no ACL calls: kafka-python's admin client adds them
            from kafka.admin import (KafkaAdminClient, ACL, ACLOperation, ACLPermissionType,
                                     ResourcePattern, ResourceType)
            ka = KafkaAdminClient(bootstrap_servers=b.bootstrap, security_protocol="SASL_PLAINTEXT",
                                  sasl_mechanism="PLAIN", sasl_plain_username="admin",
                                  sasl_plain_password="admin-secret")
            res = ka.create_acls([ACL("User:alice", "*", op, ACLPermissionType.ALLOW,
                                      ResourcePattern(ResourceType.TOPIC, "public"))
                                  for op in (ACLOperation.DESCRIBE, ACLOperation.READ)])
            check(not res["failed"], "create_acls: %r" % res)
            ka.close()
            p = ck.Producer(dict(conf))
            p.produce("secret", value=b"classified")
            p.produce("public", value=b"hello")
            check(p.flush(30) == 0, "unsent")
            get(port, "/", expect=401)
            page, _ = get(port, "/", auth=("alice", "alice-secret"))
            check("laminar console" in page, "the page with credentials")
            body, headers = get(port, "/api/cluster", expect=401)
            check(headers.get("WWW-Authenticate", "").startswith("Basic"), "no Basic challenge")
            get(port, "/api/cluster", auth=("alice", "wrong"), expect=401)
            get(port, "/api/cluster", auth=("mallory", "x"), expect=401)
            t, _ = get(port, "/api/topics", auth=("admin", "admin-secret"))
            names = {x["name"] for x in t["topics"]}
            check({"public", "secret"} <= names, "admin sees %r" % names)
            t, _ = get(port, "/api/topics", auth=("alice", "alice-secret"))
            names = {x["name"] for x in t["topics"]}
            check(names == {"public"}, "alice sees %r" % names)
            get(port, "/api/topics/secret", auth=("alice", "alice-secret"), expect=403)
            r, _ = get(port, "/api/records?topic=public&partition=0&offset=0",
                       auth=("alice", "alice-secret"))
            check([base64.b64decode(x["value"]) for x in r["records"]] == [b"hello"], "%r" % r)
            get(port, "/api/records?topic=secret&partition=0&offset=0",
                auth=("alice", "alice-secret"), expect=403)
            r, _ = get(port, "/api/records?topic=secret&partition=0&offset=0",
                       auth=("admin", "admin-secret"))
            check(len(r["records"]) == 1, "admin reads secret: %r" % r)
            check("laminar_consumergroup_lag" not in get(port, "/metrics")[0],
                  "group lag in /metrics without credentials")
        except Exception:
            sys.stderr.write(b.log_text()[-4000:])
            raise


def check_scram(io):
    """A SASL listener with SCRAM-SHA-512 alone and no authorizer: the console authenticates its
    Basic users with a SCRAM exchange (and still refuses wrong passwords)."""
    port = free_port()
    config = {"laminar.http.listener": "127.0.0.1:%d" % port,
              "sasl.enabled.mechanisms": "SCRAM-SHA-512",
              "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config":
                  "org.apache.kafka.common.security.scram.ScramLoginModule required;",
              "laminar.scram.credentials": "SCRAM-SHA-512=[name=carol,password=carol-pw]"}
    with SaslBroker(io=io, shards=2, config=config) as b:
        try:
            check("HTTP Basic checked by SASL SCRAM" in b.log_text(), "console mode not logged")
            get(port, "/api/cluster", expect=401)
            get(port, "/api/cluster", auth=("carol", "wrong"), expect=401)
            get(port, "/api/cluster", auth=("nobody", "carol-pw"), expect=401)
            c, _ = get(port, "/api/cluster", auth=("carol", "carol-pw"))
            check(len(c["brokers"]) == 1, "cluster %r" % c)
        except Exception:
            sys.stderr.write(b.log_text()[-4000:])
            raise


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    t0 = time.monotonic()
    port = free_port()
    with Broker(io=args.io, shards=2, config={"laminar.http.listener": "127.0.0.1:%d" % port,
                                              "auto.create.topics.enable": "false"}) as b:
        try:
            page, headers = get(port, "/")
            check(headers["Content-Type"].startswith("text/html") and "laminar console" in page,
                  "page %r" % page[:200])
            admin, sent = produce(b.bootstrap)
            check_cluster_topics(port, admin)
            check_records(port, sent)
            check_group(port, b.bootstrap, "g-console")
            check_metrics(port)
            check_hostile(b, port)
        except Exception:
            sys.stderr.write(b.log_text()[-4000:])
            raise
    check_security(args.io)
    check_scram(args.io)
    print("compat_console: ok in %.1f s" % (time.monotonic() - t0))


if __name__ == "__main__":
    main()
