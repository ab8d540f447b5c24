"""ACL authorization against laminar with Kafka's own configuration and tools: a broker with
authorizer.class.name=StandardAuthorizer, super.users=User:admin and a SASL_PLAINTEXT listener
(PLAIN users admin, alice, bob). Kafka's AclCommand (kafka-acls.sh's main class, from the jars
tests/compat/java/prepare fetches) adds, lists and removes ACLs as admin; confluent-kafka
(librdkafka) as alice and bob shows what they do to clients:

  - produce is denied (TOPIC_AUTHORIZATION_FAILED) until WRITE is granted on the topic;
  - consuming in a group needs READ on the topic and READ on the group;
  - a PREFIXED ACL covers every topic it starts, and a DENY beats an ALLOW;
  - Metadata leaves out the topics a principal may not DESCRIBE;
  - alice, not a super user, cannot change ACLs (CLUSTER_AUTHORIZATION_FAILED);
  - the ACLs are cluster metadata: they survive a broker restart; removing one takes effect.

    /usr/bin/python3 test_acl.py --io uring|epoll
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

JAVA = os.path.join(HERE, "..", "java")
USERS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"}
JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
        'username="admin" password="admin-secret" ' +
        " ".join('user_%s="%s"' % kv for kv in USERS.items()) + ";")
TOPIC_AUTHZ, GROUP_AUTHZ, CLUSTER_AUTHZ = 29, 30, 31


class AclBroker(Broker):
    """A broker whose only listener (the harness' port) is SASL_PLAINTEXT."""

    def args(self):
        a = super().args()
        i = a.index("--listeners")
        a[i + 1] = "SASL_PLAINTEXT://%s:%d" % (self.host, self.port)
        return a


def config():
    return {
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:admin",
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
    }


def client_conf(b, user, **extra):
    c = {"bootstrap.servers": b.bootstrap, "security.protocol": "SASL_PLAINTEXT",
         "sasl.mechanism": "PLAIN", "sasl.username": user, "sasl.password": USERS[user]}
    c.update(extra)
    return c


class Acls:
    """Kafka's AclCommand (what kafka-acls.sh runs), one JVM per call, as `user`."""

    def __init__(self, b, tmp):
        self.b = b
        self.props = {}
        for user in USERS:
            path = os.path.join(tmp, "%s.properties" % user)
            with open(path, "w") as f:
                f.write("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n"
                        'sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule'
                        ' required username="%s" password="%s";\n' % (user, USERS[user]))
            self.props[user] = path

    def run(self, *args, user="admin", ok=True):
        cmd = ["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1",
               "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
               "-cp", os.path.join(JAVA, "lib", "*"), "org.apache.kafka.tools.AclCommand",
               "--bootstrap-server", self.b.bootstrap, "--command-config", self.props[user]]
        cmd += list(args)
        p = subprocess.run(cmd, capture_output=True, timeout=120)
        out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
        print("$ kafka-acls %s (as %s) -> %d\n%s" % (" ".join(args), user, p.returncode,
                                                     out.strip()[-1500:]))
        if ok:
            check(p.returncode == 0 and "Error" not in out and "Exception" not in out,
                  "kafka-acls %s failed" % " ".join(args))
        return p.returncode, out


def create_topics(b, names):
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient(client_conf(b, "admin"))
    fs = a.create_topics([NewTopic(n, 1, 1) for n in names], operation_timeout=10)
    for n, f in fs.items():
        f.result(30)
    print("ok: admin created %s" % ", ".join(names))


def produce(b, user, topic, n=5, tag="v"):
    """Produces n records as user; returns the delivery error codes (0 for delivered)."""
    from confluent_kafka import Producer
    codes = []

    def dr(err, msg):
        codes.append(0 if err is None else err.code())

    p = Producer(client_conf(b, user, **{"message.timeout.ms": 8000,
                                         "topic.metadata.refresh.interval.ms": 1000}))
    for i in range(n):
        p.produce(topic, value=("%s-%d" % (tag, i)).encode(), on_delivery=dr)
    p.flush(20)
    return codes


def produce_ok(b, user, topic, n=5, tag="v"):
    codes = produce(b, user, topic, n, tag)
    check(codes == [0] * n, "%s producing to %s: %r" % (user, topic, codes))
    print("ok: %s produced %d records to %s" % (user, n, topic))


def produce_denied(b, user, topic):
    codes = produce(b, user, topic, 2)
    check(len(codes) == 2 and all(c == TOPIC_AUTHZ for c in codes),
          "%s producing to %s: expected TOPIC_AUTHORIZATION_FAILED, got %r" % (user, topic, codes))
    print("ok: %s producing to %s denied (TOPIC_AUTHORIZATION_FAILED)" % (user, topic))


def consume(b, user, topic, group, want, timeout=25):
    """Consumes as user in group; returns (values, error codes seen)."""
    from confluent_kafka import Consumer
    c = Consumer(client_conf(b, user, **{"group.id": group, "auto.offset.reset": "earliest",
                                         "enable.auto.commit": True}))
    c.subscribe([topic])
    got, errs, deadline = [], set(), time.monotonic() + timeout
    while time.monotonic() < deadline and (want == 0 or len(got) < want):
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            errs.add(m.error().code())
            if want == 0:
                break
            continue
        got.append(m.value().decode())
    c.close()
    return got, errs


def topics_seen(b, user):
    from confluent_kafka.admin import AdminClient
    md = AdminClient(client_conf(b, user)).list_topics(timeout=15)
    return sorted(t for t in md.topics if not t.startswith("__"))


def admin_error(fut):
    """The Kafka error code an admin future fails with (0 on success)."""
    from confluent_kafka import KafkaException
    try:
        fut.result(30)
        return 0
    except KafkaException as e:
        return e.args[0].code()


def admin_checks(b):
    """Admin APIs as alice (no CREATE, DELETE or config ACLs) and the group list."""
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
    a = AdminClient(client_conf(b, "alice"))
    code = admin_error(a.create_topics([NewTopic("alice-new", 1, 1)])["alice-new"])
    check(code == TOPIC_AUTHZ, "alice CreateTopics: %r" % code)
    code = admin_error(a.delete_topics(["orders"])["orders"])
    check(code == TOPIC_AUTHZ, "alice DeleteTopics: %r" % code)
    res = ConfigResource("topic", "secret")
    code = admin_error(a.describe_configs([res])[res])
    check(code == TOPIC_AUTHZ, "alice DescribeConfigs of secret: %r" % code)
    print("ok: alice's CreateTopics, DeleteTopics, DescribeConfigs denied "
          "(TOPIC_AUTHORIZATION_FAILED)")
    # ListGroups: without DESCRIBE on the cluster only the groups one may describe
    groups = [g.id for g in AdminClient(client_conf(b, "admin")).list_groups(timeout=15)]
    check("bob-group" in groups, "admin lists groups %r" % groups)
    groups = [g.id for g in AdminClient(client_conf(b, "bob")).list_groups(timeout=15)]
    check(groups == ["bob-group"], "bob lists groups %r" % groups)
    groups = [g.id for g in a.list_groups(timeout=15)]
    check(groups == [], "alice lists groups %r" % groups)
    print("ok: ListGroups shows bob his group and alice none")


def scenario(b, tmp):
    acls = Acls(b, tmp)
    create_topics(b, ["orders", "pre-a", "pre-b", "secret"])
    # no ACL: alice may not write, and sees no topic at all
    produce_denied(b, "alice", "orders")
    check(topics_seen(b, "alice") == [], "alice sees topics without any ACL")
    acls.run("--add", "--allow-principal", "User:alice", "--operation", "Write",
             "--topic", "orders")
    _, out = acls.run("--list", "--topic", "orders")
    check("User:alice" in out and "WRITE" in out and "ALLOW" in out,
          "kafka-acls --list does not show alice's WRITE")
    produce_ok(b, "alice", "orders", 10)
    # alice is no super user: she cannot grant herself more
    rc, out = acls.run("--add", "--allow-principal", "User:alice", "--operation", "All",
                       "--topic", "secret", user="alice", ok=False)
    check(rc != 0 or "ClusterAuthorization" in out or "Cluster authorization" in out,
          "alice added an ACL")
    check("ClusterAuthorizationException" in out or "not authorized" in out.lower() or
          "Cluster authorization failed" in out, "alice's ACL change: %s" % out[-300:])
    print("ok: alice's kafka-acls --add refused (cluster authorization)")
    # consuming needs READ on the topic and on the group
    got, errs = consume(b, "bob", "orders", "bob-group", 0, timeout=10)
    check(got == [] and errs, "bob consumed without ACLs: %r %r" % (got, errs))
    print("ok: bob without ACLs cannot consume (errors %r)" % sorted(errs))
    acls.run("--add", "--allow-principal", "User:bob", "--operation", "Read", "--topic", "orders")
    got, errs = consume(b, "bob", "orders", "bob-group", 0, timeout=10)
    check(got == [] and GROUP_AUTHZ in errs,
          "bob with READ on the topic only: %r %r" % (got, errs))
    print("ok: bob with READ on the topic only: GROUP_AUTHORIZATION_FAILED")
    acls.run("--add", "--allow-principal", "User:bob", "--operation", "Read", "--group",
             "bob-group")
    got, errs = consume(b, "bob", "orders", "bob-group", 10)
    check(got == ["v-%d" % i for i in range(10)], "bob consumed %r (errors %r)" % (got, errs))
    print("ok: bob with READ on topic and group consumed the 10 records")
    # prefixed ACLs, and a DENY beating them
    produce_denied(b, "alice", "pre-a")
    acls.run("--add", "--allow-principal", "User:alice", "--operation", "Write",
             "--resource-pattern-type", "prefixed", "--topic", "pre-")
    produce_ok(b, "alice", "pre-a")
    produce_ok(b, "alice", "pre-b")
    acls.run("--add", "--deny-principal", "User:alice", "--operation", "Write", "--topic",
             "pre-b")
    produce_denied(b, "alice", "pre-b")
    produce_ok(b, "alice", "pre-a")
    # Metadata: only what each may DESCRIBE (WRITE and READ imply it)
    seen = topics_seen(b, "alice")
    check(seen == ["orders", "pre-a", "pre-b"], "alice sees %r" % seen)
    seen = topics_seen(b, "bob")
    check(seen == ["orders"], "bob sees %r" % seen)
    check(topics_seen(b, "admin") == ["orders", "pre-a", "pre-b", "secret"],
          "admin (super user) sees every topic")
    print("ok: Metadata hides what alice and bob may not describe")
    admin_checks(b)
    _, out = acls.run("--list")
    for want in ("pre-", "PREFIXED", "DENY", "bob-group"):
        check(want in out, "kafka-acls --list lacks %s" % want)
    # the ACLs are metadata: a restart keeps them
    restart_wait(b, kill=False)
    produce_denied(b, "alice", "pre-b")
    produce_ok(b, "alice", "orders", 3, tag="after")
    got, errs = consume(b, "bob", "orders", "bob-group", 3)
    check(got == ["after-%d" % i for i in range(3)], "bob after restart: %r %r" % (got, errs))
    print("ok: ACLs survived the restart")
    # removing the DENY lets alice write again
    acls.run("--remove", "--force", "--deny-principal", "User:alice", "--operation", "Write",
             "--topic", "pre-b")
    produce_ok(b, "alice", "pre-b")
    _, out = acls.run("--list", "--topic", "pre-b")
    check("DENY" not in out, "the removed DENY is still listed")
    # kill -9: the metadata log is durable
    restart_wait(b, kill=True)
    produce_ok(b, "alice", "pre-b")
    produce_denied(b, "bob", "pre-b")
    print("ok: ACLs survived kill -9")
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
    with tempfile.TemporaryDirectory(prefix="laminar-acl-") as tmp:
        b = AclBroker(io=args.io, shards=2, config=config())
        return run_scenario(b, "acl (%s)" % args.io, lambda: scenario(b, tmp))


if __name__ == "__main__":
    sys.exit(main())
