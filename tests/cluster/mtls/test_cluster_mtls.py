"""Node-to-node TLS with client certificates: a 3-node laminar cluster (127.0.0.1..3, combined
mode) whose CONTROLLER listener is SSL with ssl.client.auth=required, the ACL authorizer on
(super.users = the nodes' mapped certificate names) and laminar.cluster.secret as well.

Certificates come from the openssl CLI at test time: a CA, one certificate per node (CN=node-N,
SAN IP:127.0.0.N), a second CA signing a fourth node's certificate, and an "intruder"
certificate signed by the right CA whose name is not a super user.

Node 3 advertises its controller endpoint on a TCP proxy this test runs (127.0.0.3:pport ->
127.0.0.3:cport), so every connection other nodes open to node 3 (controller Raft, partition
Raft with the records' values) passes through the proxy, which records what it forwards.

Checks:
- the cluster forms over TLS (the voters log the peers' principals), an RF=3 topic is created,
  acks=all idempotent produce and a consumer group read every record back;
- every connection through the proxy starts with a TLS handshake record and the records'
  values never pass in clear, while replication data did pass (byte count);
- kill -9 of a partition leader: a new leader is elected, produce and consume go on, and the
  killed node rejoins over TLS after a restart;
- a node whose certificate another CA signed never joins, and the voters log why; a
  broker-only node with a right certificate joins and reads the metadata log over TLS;
- a certificate of the right CA whose principal is not in super.users is refused an internal
  request, the connection closed with a log line saying so.

    test_cluster_mtls.py --io uring|epoll [--plaintext-control]

--plaintext-control runs the same cluster with CONTROLLER:PLAINTEXT up to the wire check and
expects the proxy to see the records' values in clear (the check's own control).
"""
import argparse
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "nodes"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "compat", "harness"))
from laminar_harness import free_port  # noqa: E402
import test_cluster as tc  # noqa: E402

from confluent_kafka import Consumer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

SECRET = "mtls-s3cret"
SUPERS = "User:node-1;User:node-2;User:node-3;User:node-3r;User:node-4;User:node-6"


def openssl(d, *args):
    p = subprocess.run(["openssl"] + list(args), cwd=d, capture_output=True, timeout=60)
    if p.returncode != 0:
        tc.fail("openssl %s: %s" % (args[0], p.stderr.decode(errors="replace")))


def make_certs(d):
    """ca (nodes 1-3, intruder) and otherca (node 4); a PEM keystore per name."""
    for ca in ("ca", "otherca"):
        openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca + ".key",
                "-out", ca + ".pem", "-days", "2", "-subj", "/CN=laminar mtls " + ca)
    certs = [("node-%d" % i, "127.0.0.%d" % i, "ca") for i in (1, 2, 3)]
    certs += [("node-4", "127.0.0.4", "otherca"), ("intruder", "127.0.0.5", "ca"),
              ("node-3r", "127.0.0.3", "ca"), ("node-6", "127.0.0.6", "ca")]
    for name, ip, ca in certs:
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=IP:%s\n" % ip)
        openssl(d, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out",
                name + ".csr", "-subj", "/CN=" + name)
        openssl(d, "x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey",
                ca + ".key", "-CAcreateserial", "-out", name + ".pem", "-days", "2",
                "-extfile", name + ".ext")
        with open(os.path.join(d, name + "-store.pem"), "w") as f:
            f.write(open(os.path.join(d, name + ".key")).read())
            f.write(open(os.path.join(d, name + ".pem")).read())


class Proxy:
    """A TCP forwarder on listen_addr to target that keeps every byte it forwards (both ways)
    and the first bytes of each connection."""

    def __init__(self, listen_addr, target):
        self.target = target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(listen_addr)
        self.sock.listen(64)
        self.lock = threading.Lock()
        self.data = bytearray()
        self.firsts = []
        self.conns = 0
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                a, _ = self.sock.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(self.target, timeout=5)
                b.settimeout(None)
            except OSError:
                a.close()
                continue
            with self.lock:
                self.conns += 1
            first = bytearray()
            with self.lock:
                self.firsts.append(first)
            threading.Thread(target=self._pipe, args=(a, b, first), daemon=True).start()
            threading.Thread(target=self._pipe, args=(b, a, None), daemon=True).start()

    def _pipe(self, src, dst, first):
        try:
            while True:
                buf = src.recv(65536)
                if not buf:
                    break
                with self.lock:
                    self.data += buf
                    if first is not None and len(first) < 16:
                        first += buf[:16 - len(first)]
                dst.sendall(buf)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def snapshot(self):
        with self.lock:
            return bytes(self.data), [bytes(f) for f in self.firsts], self.conns

    def close(self):
        self.stopped = True
        self.sock.close()


class MtlsNode(tc.Node):
    """A combined-mode node (or, with observer, broker-only) whose CONTROLLER listener is SSL
    with client certificates required, the ACL authorizer on and the cluster secret set."""

    def __init__(self, node_id, voters, port, cport, io, certs, store, adv_cport=None,
                 observer=False, plaintext=False):
        # preferred leaders come back within a second (one partition led by each node, so
        # two of three replicate to node 3 through the proxy)
        super().__init__(node_id, voters, port, cport, io, observer=observer, secret=SECRET,
                         rebalance_interval=1)
        self.adv_cport = adv_cport
        pre = "listener.name.controller."
        self.config.update({
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:SSL",
            pre + "ssl.keystore.type": "PEM",
            pre + "ssl.keystore.location": os.path.join(certs, store + "-store.pem"),
            pre + "ssl.truststore.type": "PEM",
            pre + "ssl.truststore.location": os.path.join(certs, "ca.pem"),
            pre + "ssl.client.auth": "required",
            pre + "ssl.principal.mapping.rules": "RULE:^CN=(node-[0-9]+r?)$/$1/,DEFAULT",
            "laminar.ssl.reload.check.ms": 500,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": SUPERS,
            "allow.everyone.if.no.acl.found": "true",
            "offsets.topic.replication.factor": 3,
        })
        if plaintext:
            self.config["listener.security.protocol.map"] = (
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT")
            self.config["authorizer.class.name"] = ""

    def args(self):
        a = super().args()
        if self.adv_cport is not None:
            a = [x + ",CONTROLLER://%s:%d" % (self.host, self.adv_cport)
                 if x.startswith("advertised.listeners=") else x for x in a]
        return a


def admin(node):
    return AdminClient({"bootstrap.servers": node.bootstrap})


def brokers(node):
    return set(admin(node).list_topics(timeout=5).brokers)


def consume_all(node, topic, expect, timeout=60):
    """Reads topic from the beginning in a fresh group until every value in expect is seen."""
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "g-" + uuid.uuid4().hex[:8],
                  "auto.offset.reset": "earliest", "enable.auto.commit": True})
    c.subscribe([topic])
    seen = set()
    deadline = time.monotonic() + timeout
    try:
        while not expect <= seen and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error() is not None:
                continue
            seen.add(m.value().decode())
    finally:
        c.close()
    return seen


def internal_request_as(cert_dir, name, host, cport):
    """Opens a TLS connection with name's certificate to the controller listener and sends an
    internal request (api key 127); returns True when the broker closed it without answering."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(cert_dir, "ca.pem"))
    ctx.load_cert_chain(os.path.join(cert_dir, name + "-store.pem"))
    ctx.check_hostname = False
    with socket.create_connection((host, cport), timeout=10) as raw:
        with ctx.wrap_socket(raw) as s:
            cid = b"intruder"
            hdr = struct.pack(">hhih", 127, 0, 1, len(cid)) + cid
            body = b"\x03" + b"\x00" * 40
            s.sendall(struct.pack(">i", len(hdr) + len(body)) + hdr + body)
            s.settimeout(10)
            try:
                return s.recv(4) == b""
            except (ConnectionResetError, ssl.SSLError):
                return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    ap.add_argument("--plaintext-control", action="store_true")
    args = ap.parse_args()
    control = args.plaintext_control
    t_start = time.monotonic()
    certs = tempfile.mkdtemp(prefix="laminar-test-mtls-certs-")
    make_certs(certs)
    port, cport, pport = free_port(), free_port(), free_port()
    # node 3's controller endpoint is the proxy, for everybody
    voters = "1@127.0.0.1:%d,2@127.0.0.2:%d,3@127.0.0.3:%d" % (cport, cport, pport)
    proxy = Proxy(("127.0.0.3", pport), ("127.0.0.3", cport))
    nodes = [MtlsNode(i, voters, port, cport, args.io, certs, "node-%d" % i,
                      adv_cport=pport if i == 3 else None, plaintext=control)
             for i in (1, 2, 3)]
    rogue = MtlsNode(4, voters, port, cport, args.io, certs, "node-4", observer=True)
    observer = MtlsNode(6, voters, port, cport, args.io, certs, "node-6", observer=True)
    n1, n2, n3 = nodes
    everyone = nodes + [rogue, observer]
    try:
        for x in nodes:
            x.start(timeout_s=60)
        tc.wait_for("the cluster forms over TLS", lambda: brokers(n1) == {1, 2, 3}, 90, nodes)
        t_formed = time.monotonic() - t_start
        print("ok: 3 nodes formed over %s controller listeners (%.1f s from start)"
              % ("PLAINTEXT" if control else "SSL", t_formed))
        for x in nodes if not control else []:
            log = x.log_text()
            if "TLS established (TLSv1.3" not in log:
                tc.fail("node %d logged no TLS peer connection" % x.node_id, nodes)
            others = [i for i in (1, 2, 3) if i != x.node_id]
            if not any("principal User:node-%d" % i in log for i in others):
                tc.fail("node %d logged no peer principal" % x.node_id, [x])
        print("ok: peer connections run TLSv1.3; the voters see the peers' mapped principals")

        def created():
            a = admin(n1)
            fs = a.create_topics([NewTopic("secure", 3, 3, config={"min.insync.replicas": "2"})],
                                 request_timeout=30)
            for f in fs.values():
                try:
                    f.result()
                except Exception as e:  # noqa: BLE001 - a retry after a timeout finds it made
                    if "TOPIC_ALREADY_EXISTS" not in str(e):
                        raise
            return sorted(tc.leaders(n1, "secure").values()) == [1, 2, 3]
        tc.wait_for("RF=3 topic created, one partition led by each node", created, 60, nodes)
        lead = tc.leaders(n1, "secure")
        print("ok: topic secure (3 partitions, RF=3) leaders %s" % lead)

        marker = "MTLS-CLEAR-%s" % uuid.uuid4().hex
        vals = ["%s-%05d" % (marker, i) for i in range(600)]
        before, _, _ = proxy.snapshot()
        t0 = time.monotonic()
        acked = tc.produce(n1, "secure", [v.encode() for v in vals])
        dt = time.monotonic() - t0
        if len(acked) != len(vals):
            tc.fail("acks=all produce: %d of %d acknowledged" % (len(acked), len(vals)), nodes)
        print("ok: %d records acknowledged with acks=all (%.2f s)" % (len(acked), dt))
        seen = consume_all(n2, "secure", set(vals))
        if not set(vals) <= seen:
            tc.fail("consumer read %d of %d records" % (len(set(vals) & seen), len(vals)), nodes)
        print("ok: a consumer group through node 2 read every record")

        data, firsts, conns = proxy.snapshot()
        passed = len(data) - len(before)
        not3 = sum(1 for v in acked.values() if lead.get(v) != 3)
        if conns == 0 or not3 == 0 or passed < not3 * len(vals[0]):
            tc.fail("the proxy forwarded %d bytes on %d connections, expected replication of "
                    "%d records to node 3" % (passed, conns, not3), nodes)
        if control:
            if marker.encode() not in data:
                tc.fail("control: the values did not pass the proxy in clear", nodes)
            print("PASS control: with CONTROLLER:PLAINTEXT the proxy sees the values in clear")
            return 0
        bad = [f for f in firsts if len(f) >= 3 and not (f[0] == 0x16 and f[1] == 0x03)]
        if bad:
            tc.fail("a connection through the proxy does not start with a TLS handshake: %r"
                    % bad[:2], nodes)
        if marker.encode() in data or b"MTLS-CLEAR" in data:
            tc.fail("a record value passed node to node in clear", nodes)
        print("ok: %d bytes on %d node-to-node connections through the proxy, all TLS, no "
              "record value in clear" % (passed, conns))

        # certificate renewal on node 3: its keystore file is replaced by one for CN=node-3r;
        # the listener and the peers' client context reload it, and connections node 3 opens
        # from then on present it (seen below by the restarted node)
        store3 = os.path.join(certs, "node-3-store.pem")
        with open(store3 + ".tmp", "w") as f:
            f.write(open(os.path.join(certs, "node-3r-store.pem")).read())
        os.replace(store3 + ".tmp", store3)
        tc.wait_for("node 3 reloads its certificates",
                    lambda: "node-to-node TLS: certificates reloaded" in n3.log_text(), 15, [n3])
        print("ok: node 3 reloaded its keystore (listener and node-to-node client context)")

        # a leader dies: Raft elects another replica; produce and consume go on
        victim = next((lead[p] for p in sorted(lead) if lead[p] in (1, 2)), 1)
        vnode = nodes[victim - 1]
        alive = [x for x in nodes if x is not vnode]
        moved = [p for p in lead if lead[p] == victim]
        vnode.kill9()
        t0 = time.monotonic()
        tc.wait_for("new leaders after node %d's kill" % victim,
                    lambda: all(tc.leaders(alive[0], "secure").get(p) not in (-1, victim, None)
                                for p in moved), 60, alive)
        print("ok: node %d (leader of %s) killed; new leaders in %.1f s: %s"
              % (victim, moved, time.monotonic() - t0, tc.leaders(alive[0], "secure")))
        more = ["%s-after-%05d" % (marker, i) for i in range(200)]
        acked2 = tc.produce(alive[0], "secure", [v.encode() for v in more])
        if len(acked2) != len(more):
            tc.fail("acks=all after the fail-over: %d of %d" % (len(acked2), len(more)), alive)
        seen = consume_all(alive[1], "secure", set(vals) | set(more))
        if not (set(vals) | set(more)) <= seen:
            tc.fail("after the fail-over the consumer read %d of %d"
                    % (len((set(vals) | set(more)) & seen), len(vals) + len(more)), alive)
        print("ok: acks=all produce and consume go on with 2 of 3 nodes")
        vnode.start(timeout_s=60)
        tc.wait_for("node %d rejoins" % victim, lambda: brokers(alive[0]) == {1, 2, 3}, 60,
                    nodes)
        tc.wait_for("node 3 reconnects to node %d with its renewed certificate" % victim,
                    lambda: "principal User:node-3r" in vnode.log_text(), 30, [vnode, n3])
        print("ok: node %d restarted and rejoined over TLS; node 3 connects to it as "
              "User:node-3r (the reloaded certificate)" % victim)

        # a node whose certificate another CA signed
        rogue.start(timeout_s=60)
        time.sleep(6)
        if 4 in brokers(n1):
            tc.fail("node 4 (certificate of another CA) joined", everyone)
        why = [x.node_id for x in nodes if "TLS handshake failed: client certificate" in
               x.log_text()]
        if not why:
            tc.fail("no voter logged why node 4's connections fail", everyone)
        # TLS 1.3: the client's side of the handshake is done before the server has checked
        # its certificate; the server's answer is an alert
        rlog = rogue.log_text()
        if "alert unknown ca" not in rlog:
            tc.fail("node 4 did not log the voters' refusal of its certificate", [rogue])
        line = next(ln for ln in nodes[why[0] - 1].log_text().splitlines()
                    if "TLS handshake failed: client certificate" in ln)
        print("ok: node 4 (other CA) never joins; voter %d logs: %s"
              % (why[0], line.strip()[-120:]))
        rogue.stop()

        # a broker-only node with a certificate of the right CA: registers, heartbeats and
        # reads the metadata log from the voters over TLS
        observer.start(timeout_s=60)
        tc.wait_for("the observer joins", lambda: 6 in brokers(n1), 30, nodes + [observer])
        if -1 in tc.leaders(observer, "secure").values():
            tc.fail("the observer's metadata lacks the topic's leaders", [observer])
        print("ok: broker-only node 6 (right CA) registered and reads the metadata over TLS")
        observer.stop()

        # the right CA but not a super user
        if not internal_request_as(certs, "intruder", "127.0.0.1", cport):
            tc.fail("an internal request from a non-super-user certificate was answered", nodes)
        tc.wait_for("node 1 logs the refusal",
                    lambda: "principal User:CN=intruder is not in super.users" in n1.log_text(),
                    10, nodes)
        print("ok: CN=intruder (trusted CA, not a super user) refused and closed")
        if brokers(n1) != {1, 2, 3}:
            tc.fail("the cluster changed after the refusals", nodes)

        for x in everyone:
            log = x.log_text()
            if "runtime error" in log or "AddressSanitizer" in log:
                tc.fail("node %d logged a sanitizer report" % x.node_id, [x])
        print("PASS cluster mtls (%s) in %.0f s" % (args.io, time.monotonic() - t_start))
        return 0
    finally:
        proxy.close()
        for x in everyone:
            x.cleanup()
        if os.environ.get("LAMINAR_KEEP_DATA") != "1":
            subprocess.run(["rm", "-rf", certs])


if __name__ == "__main__":
    sys.exit(main())
