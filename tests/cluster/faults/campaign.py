"""The long fault campaign: every fault kind for N cycles on 3 and on 5 nodes (replication
factor 3, each node in a network namespace), one test_faults.py run per kind and size, then
the table of cycles, records acknowledged and anomalies found.

    campaign.py [--nodes 3,5] [--kinds all|K,K] [--cycles 100] [--seed 1] [--io uring]
                [--keep-logs DIR] [--topic-config KEY=VALUE]...

LAMINAR_BIN names the broker binary, as for test_faults.py. A run's seed is --seed plus its
index in the order printed, so one row replays with
`test_faults.py --net --rf 3 --nodes N --kinds K --cycles C --seed S`. Exits 1 when any run
found a problem (its output is kept under --keep-logs, default a temporary directory named at
the end, with the nodes' and producers' logs of each failed run)."""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from test_faults import DISK_FAULTS, NET_FAULTS  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", default="3,5")
    ap.add_argument("--kinds", default="all")
    ap.add_argument("--cycles", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--io", default="uring")
    ap.add_argument("--keep-logs", default=None, metavar="DIR")
    ap.add_argument("--topic-config", action="append", default=[], metavar="KEY=VALUE",
                    help="passed to every test_faults.py run (e.g. write.caching=true)")
    args = ap.parse_args()
    kinds = NET_FAULTS + DISK_FAULTS if args.kinds == "all" else args.kinds.split(",")
    sizes = [int(n) for n in args.nodes.split(",")]
    out_dir = args.keep_logs or tempfile.mkdtemp(prefix="lmcampaign-")
    os.makedirs(out_dir, exist_ok=True)
    rows, bad = [], 0
    i = 0
    for n in sizes:
        for kind in kinds:
            seed = args.seed + i
            i += 1
            cmd = [sys.executable, os.path.join(HERE, "test_faults.py"), "--net", "--rf", "3",
                   "--nodes", str(n), "--io", args.io, "--kinds", kind, "--cycles",
                   str(args.cycles), "--seed", str(seed)]
            log = os.path.join(out_dir, "n%d-%s-seed%d.log" % (n, kind, seed))
            evidence = os.path.join(out_dir, "n%d-%s-seed%d" % (n, kind, seed))
            cmd += ["--keep-logs", evidence]  # the nodes' and producers' logs, kept on failure
            for kv in args.topic_config:
                cmd += ["--topic-config", kv]
            t0 = time.monotonic()
            with open(log, "wb") as f:
                rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
            secs = time.monotonic() - t0
            text = open(log, errors="replace").read()
            summary = None
            for ln in text.splitlines():
                if ln.startswith("summary: "):
                    summary = json.loads(ln[len("summary: "):])
            skipped = text.startswith("SKIPPED") or "\nSKIPPED" in text
            if skipped:
                verdict = "skipped"
            elif rc == 0 and summary is not None:
                verdict = "ok"
            else:
                verdict = "FAIL"
                bad += 1
            if verdict != "FAIL":
                shutil.rmtree(evidence, ignore_errors=True)
            rows.append((n, kind, seed, summary, verdict, secs, log))
            s = summary or {}
            print("%d nodes %-18s seed %-5d %4s faults %9s acked  lost %s dup %s moved %s "
                  "hw-back %s  %s (%.0f s)%s"
                  % (n, kind, seed, s.get("faults", "-"), s.get("acked", "-"),
                     s.get("lost", "-"), s.get("duplicated", "-"), s.get("moved", "-"),
                     s.get("watermark_back", "-"), verdict, secs,
                     "" if verdict == "ok" else "  " + log), flush=True)
    print()
    print("| nodes | fault | seed | cycles | records acknowledged | lost | duplicated | "
          "not at their offset | watermark back | result |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    tot = {"faults": 0, "acked": 0, "lost": 0, "duplicated": 0, "moved": 0,
           "watermark_back": 0}
    for n, kind, seed, s, verdict, _, _ in rows:
        s = s or {}
        for k in tot:
            tot[k] += s.get(k, 0) or 0
        print("| %d | %s | %d | %s | %s | %s | %s | %s | %s | %s |"
              % (n, kind, seed, s.get("faults", "-"), "{:,}".format(s["acked"]) if "acked" in s
                 else "-", s.get("lost", "-"), s.get("duplicated", "-"), s.get("moved", "-"),
                 s.get("watermark_back", "-"), verdict))
    print("| all | | | %d | {:,} | %d | %d | %d | %d | %d failed |".format(tot["acked"])
          % (tot["faults"], tot["lost"], tot["duplicated"], tot["moved"], tot["watermark_back"],
             bad))
    print("logs: %s" % out_dir)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
