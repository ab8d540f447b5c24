"""A KIP-932 share consumer across a broker crash (kill -9, restart on the same data
directory): records it accepted before the crash are not delivered again, every other record
is (at least once), to a new member of the group, although the group uses
share.auto.offset.reset=latest (tests/compat/java/src/ShareRestart.java, two JVMs). The share
partition's start offset comes back from its share.checkpoint; without it the share partition
would start at the log end and the records would be lost to the group. Then a consumer that
stays up across a crash gets every record written before and after it, once.

    test_share_restart.py --io uring|epoll

Needs tests/compat/java/prepare to have run (lib/ and classes/).
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
JAVA = os.path.join(HERE, "..", "java")
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import java_cmd  # noqa: E402

TOPIC, GROUP, N, ACCEPT = "share-rs", "share-g3", 40, 20


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    for need in (os.path.join(JAVA, "lib", ".complete"),
                 os.path.join(JAVA, "classes", "ShareRestart.class")):
        if not os.path.exists(need):
            print("FAIL: %s missing: run tests/compat/java/prepare first" % need)
            return 1
    t0 = time.monotonic()
    cp = os.path.join(JAVA, "lib", "*") + ":" + os.path.join(JAVA, "classes")
    config = {"group.share.record.lock.duration.ms": 2000,
              "group.share.heartbeat.interval.ms": 500}
    with Broker(io=args.io, shards=2, config=config) as b:
        rc, out = run(java_cmd(cp, "ShareRestart", "before", b.bootstrap, TOPIC, GROUP,
                               str(N), str(ACCEPT)), 60)
        print(out)
        accepted, held = values(out, "ACCEPTED"), values(out, "HELD")
        if rc != 0 or accepted is None or held is None or len(accepted) < ACCEPT or not held:
            print("FAIL: the first consumer did not accept %d and hold some records (rc %s)"
                  % (ACCEPT, rc))
            print(b.log_text()[-4000:])
            return 1
        b.kill9()
        b.restart()
        print("broker killed and restarted")
        want = N - len(accepted)
        rc, out = run(java_cmd(cp, "ShareRestart", "after", b.bootstrap, TOPIC, GROUP,
                               str(want)), 60)
        print(out)
        got = values(out, "GOT") or []
        alive = b.alive()
        status = b.stop()
        log = b.log_text()
        everything = set("r%d" % i for i in range(N))
        again = sorted(set(got) & set(accepted))
        missing = sorted(everything - set(got) - set(accepted))
        errors = [ln for ln in log.splitlines() if " ERROR " in ln or "runtime error" in ln]
        ok = (rc == 0 and not again and not missing and "DUP 0" in out and alive and
              status == 0 and not errors and set(held) <= set(got))
        print("accepted before %d, held %d, got after %d, accepted delivered again %s, "
              "never delivered %s" % (len(accepted), len(held), len(got), again, missing))
        if not ok:
            print("FAIL: rc %s, broker alive %s exit %s, errors %s" % (rc, alive, status,
                                                                       errors[:5]))
            print(log[-4000:])
            return 1
        # A live consumer across the crash: its heartbeat is answered UNKNOWN_MEMBER_ID and its
        # share session SHARE_SESSION_NOT_FOUND; it rejoins, opens a new session and gets the
        # records written before and after the restart, each once.
        b.restart()
        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient, NewTopic
        ad = AdminClient({"bootstrap.servers": b.bootstrap})
        ad.create_topics([NewTopic("share-live", 1, 1)])["share-live"].result(30)
        p = subprocess.Popen(java_cmd(cp, "ShareRestart", "after", b.bootstrap, "share-live",
                                      "share-g4", "20"),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        # joined and its first ShareFetch made (latest: the share partition starts at 0): the
        # broker says so when it starts the share partition (a JVM start and a join under load
        # took more than a fixed 4 s: the records were written first and the consumer got none)
        deadline = time.monotonic() + 60
        while "share partition share-live-0 of share-g4: " not in b.log_text() and \
                time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.1)
        pr = Producer({"bootstrap.servers": b.bootstrap})
        for i in range(10):
            pr.produce("share-live", value=b"r%d" % i)
        pr.flush(10)
        time.sleep(1.5)
        b.kill9()
        b.restart()
        pr = Producer({"bootstrap.servers": b.bootstrap})
        for i in range(10, 20):
            pr.produce("share-live", value=b"r%d" % i)
        pr.flush(10)
        try:
            out = p.communicate(timeout=60)[0].decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            p.kill()
            out = p.communicate()[0].decode("utf-8", "replace") + "\nTIMEOUT"
        print(out)
        got = set(values(out, "GOT") or [])
        status = b.stop()
        log = b.log_text()
        errors = [ln for ln in log.splitlines() if " ERROR " in ln or "runtime error" in ln]
        if p.returncode != 0 or got != set("r%d" % i for i in range(20)) or \
                "DUP 0" not in out or status != 0 or errors:
            print("FAIL: the live consumer across the crash got %d of 20 (rc %s, exit %s, "
                  "errors %s)" % (len(got), p.returncode, status, errors[:5]))
            print(log[-4000:])
            return 1
        print("the live consumer got all 20 records once across the crash")
    print("share consumer across a broker crash (%s): passed in %.1f s"
          % (args.io, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
