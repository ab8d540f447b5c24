"""Share group offsets administration against laminar with the 4.1.1 Java Admin and
kafka-share-groups (tests/compat/java/src/ShareAdmin.java): AlterShareGroupOffsets refused for
a group with a member, an unknown group or partition, then moving the start offset back and
forward (a consumer gets exactly the records from it, delivery count 1);
DeleteShareGroupOffsets (--delete-offsets) and DeleteGroups (--delete) dropping the group's
share state and its share.checkpoint entry. Then a reset survives kill -9 and a restart: the
start offset is read back and a new consumer gets the records from it on, while another
group's checkpointed start offset on the same partition stays. Kafka 4.1.1's
kafka-share-groups --reset-offsets is "not yet implemented" (ShareGroupCommand), so the reset
goes through Admin.alterShareGroupOffsets, which is what the tool would send.

    test_share_admin.py --io uring|epoll

Needs tests/compat/java/prepare to have run (lib/ and classes/).
"""
import argparse
import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
JAVA = os.path.join(HERE, "..", "java")
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import java_cmd  # noqa: E402


def run(cmd, timeout):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout)
        return p.returncode, p.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        return -1, (e.stdout or b"").decode("utf-8", "replace") + "\nTIMEOUT"


def values(out, tag):
    for line in out.splitlines():
        if line.startswith(tag + " "):
            return [v for v in line[len(tag) + 1:].split(",") if v]
    return None


def checkpoints(data_dir):
    return glob.glob(os.path.join(data_dir, "**", "share.checkpoint"), recursive=True)


def broker_errors(log):
    return [ln for ln in log.splitlines() if " ERROR " in ln or "runtime error" in ln]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    for need in (os.path.join(JAVA, "lib", ".complete"),
                 os.path.join(JAVA, "classes", "ShareAdmin.class")):
        if not os.path.exists(need):
            print("FAIL: %s missing: run tests/compat/java/prepare first" % need)
            return 1
    t0 = time.monotonic()
    cp = os.path.join(JAVA, "lib", "*") + ":" + os.path.join(JAVA, "classes")
    config = {"group.share.heartbeat.interval.ms": 500}
    with Broker(io=args.io, shards=2, config=config) as b:
        rc, out = run(java_cmd(cp, "ShareAdmin", "suite", b.bootstrap), 90)
        print(out)
        left = checkpoints(b.data_dir)
        errors = broker_errors(b.log_text())
        if rc != 0 or errors:
            print("FAIL: suite rc %s, broker errors %s" % (rc, errors[:5]))
            print(b.log_text()[-4000:])
            return 1
        # DeleteGroups removed the group's entry: the checkpoint had no other group, so it
        # is gone
        if left:
            print("FAIL: share.checkpoint left after DeleteGroups: %s" % left)
            return 1
        print("no share.checkpoint left after DeleteGroups")
        # a reset survives kill -9 and a restart
        topic, group = "share-adm2", "share-gr"
        # a second group on the same partition, never fetched after the restart: its entry in
        # share.checkpoint must outlive the rewrites the first group's progress makes
        other = "share-gr2"
        steps = [("produce", topic, "20"), ("join", topic, other), ("reset", topic, other, "3"),
                 ("join", topic, group), ("reset", topic, group, "7"), ("describe", topic, group)]
        for s in steps:
            rc, out = run(java_cmd(cp, "ShareAdmin", s[0], b.bootstrap, *s[1:]), 60)
            print(out)
            if rc != 0:
                print("FAIL: %s rc %s" % (s[0], rc))
                print(b.log_text()[-4000:])
                return 1
        if "START 7" not in out:
            print("FAIL: the start offset is not 7 after the reset")
            return 1
        b.kill9()
        b.restart()
        print("broker killed and restarted")
        rc, out = run(java_cmd(cp, "ShareAdmin", "describe", b.bootstrap, topic, group), 60)
        print(out)
        if rc != 0 or "START 7" not in out:
            print("FAIL: after the restart the start offset is not 7 (rc %s)" % rc)
            print(b.log_text()[-4000:])
            return 1
        rc, out = run(java_cmd(cp, "ShareAdmin", "consume", b.bootstrap, topic, group, "13"),
                      60)
        print(out)
        got = values(out, "GOT") or []
        time.sleep(0.5)  # the shard tick rewrites the checkpoint with the first group's SPSO
        rc2, out2 = run(java_cmd(cp, "ShareAdmin", "describe", b.bootstrap, topic, other), 60)
        print(out2)
        status = b.stop()
        errors = broker_errors(b.log_text())
        if rc2 != 0 or "START 3" not in out2:
            print("FAIL: the other group's start offset 3 was lost (rc %s)" % rc2)
            return 1
        want = ["v%d" % i for i in range(7, 20)]
        if rc != 0 or got != want or "DUP 0" not in out or status != 0 or errors:
            print("FAIL: after the restart the consumer got %s, want v7..v19 (rc %s, exit %s, "
                  "errors %s)" % (got, rc, status, errors[:5]))
            print(b.log_text()[-4000:])
            return 1
        print("the reset to 7 held across kill -9: v7..v19 delivered once")
    print("share group offsets administration (%s): passed in %.1f s"
          % (args.io, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
