"""ACLs in a 3-node laminar cluster (127.0.0.1..3, combined mode): the bindings are controller
metadata, so an ACL created through node 1 (Kafka's AclCommand) is enforced by node 3 and listed
through node 2, survives node 3's kill -9 and its rebuild from the metadata log or a snapshot
(laminar.metadata.snapshot.records is small), and its removal through node 2 is enforced
everywhere. Clients are confluent-kafka over SASL_PLAINTEXT (PLAIN users admin, alice).

    test_cluster_acl.py --io uring|epoll
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "nodes"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "compat", "harness"))
from laminar_harness import free_port  # noqa: E402
import test_cluster as tc  # noqa: E402

JAVA_LIB = os.path.join(HERE, "..", "..", "compat", "java", "lib")
USERS = {"admin": "admin-secret", "alice": "alice-secret"}
JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
        'username="admin" password="admin-secret" ' +
        " ".join('user_%s="%s"' % kv for kv in USERS.items()) + ";")
TOPIC_AUTHZ = 29


class AclNode(tc.Node):
    """A cluster node whose client listener is SASL_PLAINTEXT, with the ACL authorizer on."""

    def __init__(self, node_id, voters, port, cport, io):
        super().__init__(node_id, voters, port, cport, io, snapshot_records=8)
        self.config.update({
            "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,"
                                              "CONTROLLER:PLAINTEXT",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": "User:admin",
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
            "auto.create.topics.enable": "false",
            # node-to-node traffic (Raft, forwarding) uses the CONTROLLER listener
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
        })

    def args(self):
        a = super().args()
        i = a.index("--listeners")
        a[i + 1] = a[i + 1].replace("PLAINTEXT://", "SASL_PLAINTEXT://", 1)
        a = [x.replace("advertised.listeners=PLAINTEXT://", "advertised.listeners=SASL_PLAINTEXT://")
             for x in a]
        return a


def conf(node, user, **extra):
    c = {"bootstrap.servers": node.bootstrap, "security.protocol": "SASL_PLAINTEXT",
         "sasl.mechanism": "PLAIN", "sasl.username": user, "sasl.password": USERS[user]}
    c.update(extra)
    return c


def acl_command(node, tmp, *args):
    props = os.path.join(tmp, "admin.properties")
    with open(props, "w") as f:
        f.write("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n"
                "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule "
                'required username="admin" password="admin-secret";\n')
    cmd = ["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1",
           "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", os.path.join(JAVA_LIB, "*"),
           "org.apache.kafka.tools.AclCommand", "--bootstrap-server", node.bootstrap,
           "--command-config", props] + list(args)
    p = subprocess.run(cmd, capture_output=True, timeout=120)
    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    print("$ kafka-acls %s (node %d) -> %d\n%s" % (" ".join(args), node.node_id, p.returncode,
                                                   out.strip()[-1200:]))
    return p.returncode, out


def produce_codes(node, topic, n=3):
    from confluent_kafka import Producer
    codes = []
    p = Producer(conf(node, "alice", **{"message.timeout.ms": 6000}))
    for i in range(n):
        p.produce(topic, value=b"v%d" % i,
                  on_delivery=lambda err, msg: codes.append(0 if err is None else err.code()))
    p.flush(15)
    return codes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(JAVA_LIB, ".complete")):
        print("FAIL: tests/compat/java/lib missing: run tests/compat/java/prepare first")
        return 1
    port, cport = free_port(), free_port()
    voters = ",".join("%d@127.0.0.%d:%d" % (i, i, cport) for i in (1, 2, 3))
    nodes = [AclNode(i, voters, port, cport, args.io) for i in (1, 2, 3)]
    n1, n2, n3 = nodes
    tmp = tempfile.mkdtemp(prefix="laminar-acl-cluster-")
    try:
        for x in nodes:
            x.start(timeout_s=60)
        from confluent_kafka.admin import AdminClient, NewTopic

        def formed():
            md = AdminClient(conf(n1, "admin")).list_topics(timeout=5)
            return len(md.brokers) == 3
        tc.wait_for("the cluster forms", formed, 60, nodes)

        def created():
            a = AdminClient(conf(n1, "admin"))  # kept alive until the results are in
            fs = a.create_topics([NewTopic("spread", 3, 1)], request_timeout=20)
            for f in fs.values():
                try:
                    f.result()
                except Exception as e:  # noqa: BLE001 - a retry after a timeout finds it made
                    if "TOPIC_ALREADY_EXISTS" not in str(e):
                        raise
            return True
        tc.wait_for("admin creates a topic through node 1", created, 60, nodes)
        codes = produce_codes(n3, "spread")
        if codes != [TOPIC_AUTHZ] * 3:
            tc.fail("alice through node 3 without ACLs: %r" % codes, nodes)
        print("ok: alice denied through node 3 (TOPIC_AUTHORIZATION_FAILED)")
        rc, _ = acl_command(n1, tmp, "--add", "--allow-principal", "User:alice", "--operation",
                            "Write", "--topic", "spread")
        if rc != 0:
            tc.fail("kafka-acls --add through node 1", nodes)
        tc.wait_for("node 3 enforces the ACL made through node 1",
                    lambda: produce_codes(n3, "spread") == [0, 0, 0], 30, nodes)
        print("ok: the ACL created through node 1 lets alice write through node 3")
        rc, out = acl_command(n2, tmp, "--list", "--topic", "spread")
        if rc != 0 or "User:alice" not in out or "WRITE" not in out:
            tc.fail("kafka-acls --list through node 2", nodes)
        print("ok: node 2 lists the ACL")
        # node 3 away and back: its image comes from the controller's log or a snapshot
        # more ACL records, so that the controllers' snapshots (every 8 records) hold ACLs
        rc, _ = acl_command(n1, tmp, "--add", "--allow-principal", "User:alice", "--operation",
                            "Read", "--group", "g1", "--group", "g2", "--group", "g3")
        if rc != 0:
            tc.fail("kafka-acls --add of group ACLs", nodes)
        n3.kill9()
        n3.start(timeout_s=60)
        tc.wait_for("node 3 back enforces the ACL",
                    lambda: produce_codes(n3, "spread") == [0, 0, 0], 60, nodes)
        log3 = n3.log_text()
        if not any("controller: snapshot up to offset" in x.log_text() for x in nodes):
            tc.fail("no node wrote a metadata snapshot", nodes)
        from_snapshot = ("image loaded from the snapshot" in log3 or
                         "image rebuilt from a snapshot" in log3)
        print("ok: node 3 after kill -9 still lets alice write (image %s)" %
              ("from a snapshot with the ACLs" if from_snapshot else "replayed from the log"))
        rc, _ = acl_command(n2, tmp, "--remove", "--force", "--allow-principal", "User:alice",
                            "--operation", "Write", "--topic", "spread")
        if rc != 0:
            tc.fail("kafka-acls --remove through node 2", nodes)
        tc.wait_for("the removal is enforced through node 3",
                    lambda: produce_codes(n3, "spread") == [TOPIC_AUTHZ] * 3, 30, nodes)
        print("ok: the ACL removed through node 2 is enforced through node 3")
        for x in nodes:
            log = x.log_text()
            if "runtime error" in log or "AddressSanitizer" in log:
                tc.fail("node %d logged a sanitizer report" % x.node_id, [x])
        print("PASS cluster acl (%s)" % args.io)
        return 0
    finally:
        for x in nodes:
            x.cleanup()


if __name__ == "__main__":
    sys.exit(main())
