"""The fault campaign's duplicate classifier (test_faults.explained_by_epoch_bump) on the
producer log lines librdkafka writes, without a cluster: a duplicate counts as the client's
(librdkafka's epoch bump re-sending a batch it was told may have been persisted) only when the
broker's answers allow no other reading; every other shape stays a broker fault.

    /usr/bin/python3 tests/cluster/faults/test_checker.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_faults as tf  # noqa: E402

PREFIX = ("2026-12-06 19:10:35,099 MSGSET [rdkafka#producer-9] [thrd:10.77.14.1:9092/bootstrap]: "
          "10.77.14.1:9092/1: ")
NER = ("load-b [1]: MessageSet with 25 message(s) (MsgId 149927, BaseSeq 113762) encountered "
       "error: Broker: Message(s) written to insufficient number of in-sync replicas "
       "(actions Retry,MsgPossiblyPersisted)")
NOT_LEADER = ("load-b [1]: MessageSet with 25 message(s) (MsgId 149927, BaseSeq 113762) "
              "encountered error: Broker: Not leader for partition (actions Refresh,MsgNotPersisted)")
RETRY = ("load-b [1]: MessageSet with 25 message(s) (MsgId 149927, BaseSeq 113762) "
         "encountered error: Local: Retry operation (actions Retry)")
QUEUED = ("load-b [1]: MessageSet with 25 message(s) (MsgId 149927, BaseSeq 113762) "
          "encountered error: Local: Timed out in queue (actions Retry,MsgNotPersisted)")
UNKNOWN = ("load-b [1]: MessageSet with 25 message(s) (MsgId 149927, BaseSeq 113762) "
           "encountered error: Broker: Unknown topic or partition (actions Refresh,MsgNotPersisted)")


def failures(*lines):
    out = []
    for ln in lines:
        m = tf.MSGSET_ERR_RE.search(PREFIX + ln)
        assert m is not None, ln
        assert (m.group(1), int(m.group(2)), int(m.group(3))) == ("load-b", 1, 113762)
        out.append((m.group(4), m.group(5)))
    return out


def main():
    first, later = (2199023255552, 2, 113762), (2199023255552, 5, 0)
    cases = [
        # the campaign's case (isolate, seed 502): appended, leadership lost, retries refused
        ("possibly persisted, then refusals", first, later, failures(NER, NOT_LEADER, NOT_LEADER),
         True),
        ("possibly persisted only", first, later, failures(NER), True),
        ("a local retry (not sent) before", first, later, failures(RETRY, NER, NOT_LEADER), True),
        ("a local retry only", first, later, failures(RETRY), False),
        # leader-cut, seed 503: refusals, then the appended attempt, then refusals
        ("refusals around the possibly persisted attempt", first, later,
         failures(NOT_LEADER, NOT_LEADER, NER, NOT_LEADER), True),
        # netfaults3, seed 14003 on a loaded machine: appended, refusals, then the batch
        # expired in the client's queue (never sent again)
        ("possibly persisted, refusals, then a timeout in the client's queue", first, later,
         failures(NER, NOT_LEADER, NOT_LEADER, QUEUED), True),
        ("a timeout in the client's queue only", first, later, failures(QUEUED), False),
        ("another not-persisted answer first", first, later, failures(UNKNOWN, NER), False),
        ("another not-persisted answer later", first, later, failures(NER, UNKNOWN), False),
        ("refusals only: nothing said it may be persisted", first, later,
         failures(NOT_LEADER, NOT_LEADER), False),
        ("no failure logged", first, later, [], False),
        ("same producer epoch: the broker's own duplicate", first, (2199023255552, 2, 113800),
         failures(NER), False),
        ("another producer id", first, (2199023255553, 5, 0), failures(NER), False),
    ]
    bad = 0
    for name, a, b, f, want in cases:
        got = tf.explained_by_epoch_bump(a, b, f)
        print("%s: %s -> %s" % ("ok" if got == want else "FAIL", name, got))
        bad += got != want
    # three copies (5-node split, seed 1003): sent under epochs 78, 79 and 80, the first two
    # timed out (possibly persisted), each landed
    timed_out = [("Local: Timed out", "Retry,MsgPossiblyPersisted")]
    e78, e79, e80 = (10000, 78, 0), (10000, 79, 0), (10000, 80, 0)
    chains = [
        ("three copies, each bump after a possibly persisted failure", [e78, e79, e80],
         [timed_out, timed_out, []], True),
        ("three copies, the second not possibly persisted", [e78, e79, e80],
         [timed_out, [], []], False),
        ("three copies, one under the same epoch", [e78, e79, (10000, 79, 1)],
         [timed_out, timed_out, []], False),
        ("a single copy is no duplicate", [e78], [timed_out], False),
    ]
    for name, batches, fails, want in chains:
        got = tf.explained_copies(batches, fails)
        print("%s: %s -> %s" % ("ok" if got == want else "FAIL", name, got))
        bad += got != want
    cases += chains
    if bad:
        print("FAIL: %d case(s)" % bad)
        return 1
    print("ok: %d cases" % len(cases))
    return 0


if __name__ == "__main__":
    sys.exit(main())
