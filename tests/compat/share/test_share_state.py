"""Share-partition state in __share_group_state across a broker crash (KIP-932): a
KafkaShareConsumer accepts, rejects and releases records of one share partition (and holds the
ones its client fetched beyond its polls), then the broker is killed (kill -9) and restarted on
the same data directory. A new member of the group must get exactly the records neither
accepted nor rejected: the released and held ones (delivered again, delivery count 2 or more)
and the ones never delivered, never an accepted or rejected one. A start offset alone (the
share.checkpoint of earlier versions) cannot tell the rejected records above it from the
others: only the state batches can. Then Kafka 4.1.1's own DumpLogSegments
(--share-group-state-decoder) decodes the __share_group_state segment holding the group's
records: ShareSnapshot and ShareUpdate records of the group's share partition, a snapshot every
three updates (share.coordinator.snapshot.update.records.per.snapshot=3, so the restart replays
a snapshot and the updates after it); and once AlterShareGroupOffsets to -1 dropped the state,
tombstones of both keys.

    test_share_state.py --io uring|epoll

Needs tests/compat/java/prepare to have run (lib/ and classes/).
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
JAVA = os.path.join(HERE, "..", "java")
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import java_cmd  # noqa: E402

TOPIC, GROUP, N = "share-st", "share-g5", 40


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
        if line == tag:
            return []
    return None


def dump(data_dir):
    """(key type, key data, value data or None) of every record of the __share_group_state
    partitions that hold any, as Kafka's DumpLogSegments decodes them."""
    recs, outs = [], []
    for seg in sorted(glob.glob(os.path.join(data_dir, "__share_group_state-*", "*.log"))):
        if os.path.getsize(seg) == 0:
            continue
        cmd = ["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-cp",
               os.path.join(JAVA, "lib", "*"), "kafka.tools.DumpLogSegments", "--files", seg,
               "--share-group-state-decoder", "--print-data-log"]
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             timeout=120).stdout.decode("utf-8", "replace")
        outs.append(out)
        for line in out.splitlines():
            if not line.startswith("| offset:"):
                continue
            k = line.index(" key: ")
            p = line.index(" payload: ")
            key = json.loads(line[k + 6:p])
            payload = line[p + 10:]
            recs.append((int(key["type"]), key["data"],
                         None if payload == "<DELETE>" else json.loads(payload)["data"]))
    return "\n".join(outs), recs


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
    # a long lock: the held records come back only because the restart released them
    config = {"group.share.record.lock.duration.ms": 60000,
              "group.share.heartbeat.interval.ms": 500,
              "share.coordinator.state.topic.num.partitions": 3,
              "share.coordinator.snapshot.update.records.per.snapshot": 3}
    with Broker(io=args.io, shards=2, config=config) as b:
        rc, out = run(java_cmd(cp, "ShareRestart", "mixed", b.bootstrap, TOPIC, GROUP, str(N)),
                      60)
        print(out)
        accepted, rejected = values(out, "ACCEPTED"), values(out, "REJECTED")
        released = values(out, "RELEASED")
        if rc != 0 or not accepted or not rejected or released is None or \
                "COMMIT-ERRORS" in out:
            print("FAIL: the first consumer did not accept, reject and release (rc %s)" % rc)
            print(b.log_text()[-4000:])
            return 1
        b.kill9()
        b.restart()
        print("broker killed and restarted")
        done = set(accepted) | set(rejected)
        want = sorted(set("r%d" % i for i in range(N)) - done)
        rc, out = run(java_cmd(cp, "ShareRestart", "after", b.bootstrap, TOPIC, GROUP,
                               str(len(want))), 60)
        print(out)
        got = values(out, "GOT") or []
        counts = dict(c.split(":") for c in values(out, "COUNT") or [])
        alive = b.alive()
        # then the state dropped (AlterShareGroupOffsets to -1 on the now empty group): its
        # tombstones
        rc2, out2 = run(java_cmd(cp, "ShareAdmin", "reset", b.bootstrap, TOPIC, GROUP, "-1"), 60)
        print(out2)
        status = b.stop()
        log = b.log_text()
        again = sorted(set(got) & done)
        missing = sorted(set(want) - set(got))
        low = sorted(r for r in released if int(counts.get(r, "0")) < 2)
        errors = [ln for ln in log.splitlines() if " ERROR " in ln or "runtime error" in ln]
        print("accepted %d, rejected %d, released %d before; got %d after; accepted or "
              "rejected delivered again %s; never delivered %s; released with a delivery "
              "count below 2 %s" % (len(accepted), len(rejected), len(released), len(got),
                                    again, missing, low))
        if rc != 0 or again or missing or "DUP 0" not in out or low or not alive or \
                status != 0 or errors:
            print("FAIL: rc %s, broker alive %s exit %s, errors %s" % (rc, alive, status,
                                                                       errors[:5]))
            print(log[-4000:])
            return 1
        text, recs = dump(b.data_dir)
        ours = [r for r in recs if r[1].get("groupId") == GROUP and r[2] is not None]
        snaps = [r for r in ours if r[0] == 0 and r[2] is not None]
        updates = [r for r in ours if r[0] == 1 and r[2] is not None]
        ok = bool(snaps) and bool(updates) and all(
            r[1].get("partition") == 0 and "stateBatches" in r[2] and "startOffset" in r[2]
            for r in snaps + updates)
        print("DumpLogSegments: %d records of the group, %d snapshots, %d updates"
              % (len(ours), len(snaps), len(updates)))
        ok = ok and len(snaps) >= 2 and all(
            r[2]["stateEpoch"] >= 0 and "createTimestamp" in r[2] for r in snaps)
        if not ok:
            print("FAIL: Kafka's DumpLogSegments does not show the group's snapshots and "
                  "updates")
            print(text[-4000:])
            return 1
        print("last update: %s" % json.dumps(updates[-1][2]))
        dead = sorted(r[0] for r in recs if r[1].get("groupId") == GROUP and r[2] is None)
        print("tombstones of the group: key types %s" % dead)
        if rc2 != 0 or dead != [0, 1]:
            print("FAIL: no tombstones of both keys after the state was dropped (rc %s)" % rc2)
            print(text[-3000:])
            return 1
    print("share-partition state across a broker crash (%s): passed in %.1f s"
          % (args.io, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
