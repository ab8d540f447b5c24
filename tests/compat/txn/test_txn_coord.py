"""Transactions end to end through the coordinator, with confluent-kafka's transactional
producer (librdkafka) and read_committed consumers:

- commits and aborts over two partitions: read_committed sees exactly the committed records,
  read_uncommitted every record;
- a zombie: a second producer with the same transactional.id fences the first (its open
  transaction is aborted, its commit fails as fenced); only the second one's records are seen;
- kill -9 of the broker with a transaction open: after the restart the coordinator aborts it
  on timeout, and a later committed transaction on the same partition becomes visible (the
  open one no longer holds the last stable offset);
- kill -9 right after a commit was acknowledged: the committed records are visible after the
  restart (markers written before the kill, or by the recovery of the PrepareCommit state);
- KIP-890 part 1: a transactional Produce for a partition not added to the transaction is
  refused with INVALID_TXN_STATE and not written, one without a transactional id with
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED (raw frames, kraw.py);
- KIP-890 part 2 (raw frames): Produce v12 adds its partition implicitly (DescribeTransactions
  lists it), EndTxn v5 answers the bumped epoch and its retry the same, the old epoch is
  refused afterwards;
- send_offsets_to_transaction (consume-transform-produce): the group's offset is committed
  with the transaction (AddOffsetsToTxn here, TxnOffsetCommit in the group coordinator).

    /usr/bin/python3 test_txn_coord.py --io uring|epoll
"""
import argparse
import os
import struct
import sys
import time
import urllib.request

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker, free_port  # noqa: E402
from compat_util import check, restart_wait  # noqa: E402
sys.path.insert(0, os.path.join(HERE, "..", "groups"))
import kraw  # noqa: E402

import confluent_kafka as ck  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

CONF = {
    # timed-out transactions are looked for every half second (Kafka: 10 s)
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": 500,
    # /metrics (tv2_wire reads laminar_txn_partition_checks_total)
    "laminar.http.listener": "127.0.0.1:%d" % free_port(),
}


def txn_checks(outcome):
    """laminar_txn_partition_checks_total{outcome} from /metrics (shard totals, stored at
    each shard tick)."""
    url = "http://%s/metrics" % CONF["laminar.http.listener"]
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    key = 'laminar_txn_partition_checks_total{outcome="%s"} ' % outcome
    return sum(int(ln[len(key):]) for ln in text.splitlines() if ln.startswith(key))


def create(b, topic, partitions):
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    a.create_topics([NewTopic(topic, partitions, 1)])[topic].result(15)


def producer(b, tid, **extra):
    conf = {"bootstrap.servers": b.bootstrap, "transactional.id": tid,
            "transaction.timeout.ms": 60000}
    conf.update(extra)
    p = ck.Producer(conf)
    p.init_transactions(30)
    return p


def read_all(b, topic, partitions, isolation, expect=None, timeout_s=20):
    """Values of topic's partitions from the start; stops once `expect` values arrived and
    nothing more came for a second, or at timeout_s."""
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "reader-%s" % isolation,
                     "isolation.level": isolation, "enable.auto.commit": False})
    c.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(partitions)])
    out = []
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            out.append(m.value().decode())
            quiet_since = time.monotonic()
        elif expect is not None and len(out) >= expect and time.monotonic() - quiet_since > 1.0:
            break
    c.close()
    return sorted(out)


def commit_abort(b):
    create(b, "ca", 2)
    p = producer(b, "tx-ca")
    committed, all_values = [], []
    for round_ in range(4):
        p.begin_transaction()
        vals = ["r%d-%d" % (round_, i) for i in range(6)]
        for i, v in enumerate(vals):
            p.produce("ca", value=v.encode(), partition=i % 2)
        all_values += vals
        if round_ % 2 == 0:
            p.commit_transaction(30)
            committed += vals
        else:
            p.flush(30)  # sent before the abort (librdkafka purges what is still queued)
            p.abort_transaction(30)
    got = read_all(b, "ca", 2, "read_committed", expect=len(committed))
    check(got == sorted(committed), "read_committed saw %s, expected %s" % (got, sorted(committed)))
    got = read_all(b, "ca", 2, "read_uncommitted", expect=len(all_values))
    check(got == sorted(all_values), "read_uncommitted saw %d of %d" % (len(got), len(all_values)))
    print("commit/abort: ok (%d committed of %d)" % (len(committed), len(all_values)))


def zombie(b):
    create(b, "zz", 1)
    p1 = producer(b, "tx-zombie")
    p1.begin_transaction()
    for i in range(3):
        p1.produce("zz", value=b"zombie-%d" % i)
    p1.flush(10)
    # the new instance fences the old one: its open transaction is aborted
    p2 = producer(b, "tx-zombie")
    p2.begin_transaction()
    for i in range(4):
        p2.produce("zz", value=b"fresh-%d" % i)
    p2.commit_transaction(30)
    fenced = False
    try:
        p1.produce("zz", value=b"zombie-late")
        p1.commit_transaction(10)
    except ck.KafkaException as e:
        err = e.args[0]
        fenced = err.fatal() or err.code() in (ck.KafkaError._FENCED,
                                               ck.KafkaError.PRODUCER_FENCED,
                                               ck.KafkaError.INVALID_PRODUCER_EPOCH)
        print("zombie: commit refused: %s" % err)
    check(fenced, "the zombie's commit was not refused as fenced")
    got = read_all(b, "zz", 1, "read_committed", expect=4)
    check(got == ["fresh-%d" % i for i in range(4)], "read_committed saw %s" % got)
    print("zombie: ok")


def kill_open(b):
    create(b, "ko", 1)
    p = producer(b, "tx-open", **{"transaction.timeout.ms": 3000})
    p.begin_transaction()
    for i in range(5):
        p.produce("ko", value=b"open-%d" % i)
    p.flush(10)
    restart_wait(b, kill=True)
    # after the restart the coordinator finds the transaction Ongoing in its log and aborts it
    # once its 3 s are over; a later transaction of another producer then becomes visible
    q = producer(b, "tx-after")
    q.begin_transaction()
    for i in range(3):
        q.produce("ko", value=b"after-%d" % i)
    q.commit_transaction(30)
    got = read_all(b, "ko", 1, "read_committed", expect=3, timeout_s=30)
    check(got == ["after-%d" % i for i in range(3)], "read_committed saw %s" % got)
    print("kill -9 with a transaction open: ok (aborted by timeout after the restart)")


def kill_after_commit(b):
    create(b, "kc", 2)
    p = producer(b, "tx-commit")
    p.begin_transaction()
    vals = ["kc-%d" % i for i in range(8)]
    for i, v in enumerate(vals):
        p.produce("kc", value=v.encode(), partition=i % 2)
    p.commit_transaction(30)
    restart_wait(b, kill=True)
    got = read_all(b, "kc", 2, "read_committed", expect=len(vals), timeout_s=30)
    check(got == sorted(vals), "read_committed saw %s after the restart" % got)
    # the restarted coordinator knows the id: a new instance gets a higher epoch
    p2 = producer(b, "tx-commit")
    p2.begin_transaction()
    p2.produce("kc", value=b"kc-more", partition=0)
    p2.commit_transaction(30)
    got = read_all(b, "kc", 2, "read_committed", expect=len(vals) + 1, timeout_s=30)
    check(got == sorted(vals + ["kc-more"]), "read_committed saw %s" % got)
    print("kill -9 after a commit: ok")


INVALID_TXN_STATE = 48
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53


def verify_before_write(b):
    """KIP-890 part 1: a transactional batch for a partition that was not added to the
    producer's transaction is refused (INVALID_TXN_STATE) and not written; once added it is."""
    create(b, "vf", 1)
    conn = kraw.Conn(b.host, b.port)
    # InitProducerId v1 with a transactional id
    r = conn.call(22, 1, kraw.s16str("tx-verify") + struct.pack(">i", 60000), False)
    _thr, err, pid, epoch = struct.unpack(">ihqh", r[:16])
    check(err == 0, "InitProducerId tx-verify: %d" % err)
    err, _ = conn.produce("vf", 0, kraw.txn_batch(pid, epoch, 0, [b"stray"]),
                          transactional_id="tx-verify")
    check(err == INVALID_TXN_STATE, "unverified transactional batch answered %d" % err)
    # without the transactional id no coordinator can verify it: refused as Kafka does
    err, _ = conn.produce("vf", 0, kraw.txn_batch(pid, epoch, 0, [b"no-id"]))
    check(err == TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
          "transactional batch without an id answered %d" % err)
    # AddPartitionsToTxn v1: tid, pid, epoch, [topic, [partition]]
    body = (kraw.s16str("tx-verify") + struct.pack(">qh", pid, epoch) + struct.pack(">i", 1) +
            kraw.s16str("vf") + struct.pack(">ii", 1, 0))
    r = conn.call(24, 1, body, False)
    perr = struct.unpack(">h", r[-2:])[0]
    check(perr == 0, "AddPartitionsToTxn: %d" % perr)
    err, off = conn.produce("vf", 0, kraw.txn_batch(pid, epoch, 0, [b"added"]),
                            transactional_id="tx-verify")
    check(err == 0 and off == 0, "verified batch: error %d offset %d" % (err, off))
    # EndTxn v1 commit
    r = conn.call(26, 1, kraw.s16str("tx-verify") + struct.pack(">qhb", pid, epoch, 1), False)
    check(struct.unpack(">h", r[4:6])[0] == 0, "EndTxn")
    conn.close()
    got = read_all(b, "vf", 1, "read_committed", expect=1)
    check(got == ["added"], "read_committed saw %s" % got)
    print("verification before the first write: ok")


def tv2_wire(b):
    """KIP-890 part 2 on the wire (raw frames): a Produce v12 to a partition no
    AddPartitionsToTxn named is accepted and the partition appears in DescribeTransactions;
    EndTxn v5 answers the bumped epoch, its retry (the epoch below) the same; a Produce with
    the old epoch after it is refused; read_committed sees the committed record."""
    create(b, "tv2w", 2)
    conn = kraw.Conn(b.host, b.port)
    r = conn.call(22, 1, kraw.s16str("tx-tv2") + struct.pack(">i", 60000), False)
    _thr, err, pid, epoch = struct.unpack(">ihqh", r[:16])
    check(err == 0, "InitProducerId tx-tv2: %d" % err)
    err, off = conn.produce("tv2w", 1, kraw.txn_batch(pid, epoch, 0, [b"implicit"]),
                            transactional_id="tx-tv2", version=12)
    check(err == 0 and off == 0, "Produce v12 to an un-added partition: error %d offset %d"
          % (err, off))
    err, state, depoch, topics = kraw.describe_transaction(conn, "tx-tv2")
    check(err == 0 and state == "Ongoing" and topics == {"tv2w": [1]},
          "DescribeTransactions after the implicit add: %d %s %s" % (err, state, topics))
    # the next batch to that partition in the same transaction does not ask the coordinator
    # again (Kafka: the partition has the producer's transaction going on)
    time.sleep(1.2)  # the shards store their counters at each tick (1 s)
    asked0, skipped0 = txn_checks("asked"), txn_checks("skipped")
    err, off = conn.produce("tv2w", 1, kraw.txn_batch(pid, epoch, 1, [b"again"]),
                            transactional_id="tx-tv2", version=12)
    check(err == 0 and off == 1, "a second Produce v12 in the transaction: error %d offset %d"
          % (err, off))
    time.sleep(1.2)
    asked1, skipped1 = txn_checks("asked"), txn_checks("skipped")
    check(asked0 >= 1 and asked1 == asked0 and skipped1 == skipped0 + 1,
          "coordinator checks asked %d -> %d, skipped %d -> %d (want the second Produce "
          "skipped)" % (asked0, asked1, skipped0, skipped1))
    # a Produce v11 (transaction version 1) to another partition is still verified
    err, _ = conn.produce("tv2w", 0, kraw.txn_batch(pid, epoch, 0, [b"stray"]),
                          transactional_id="tx-tv2", version=11)
    check(err == INVALID_TXN_STATE, "Produce v11 to an un-added partition answered %d" % err)
    err, npid, nepoch = kraw.end_txn_v5(conn, "tx-tv2", pid, epoch, True)
    check(err == 0 and npid == pid and nepoch == epoch + 1,
          "EndTxn v5: error %d, %d/%d after %d/%d" % (err, npid, nepoch, pid, epoch))
    # the retry: CONCURRENT_TRANSACTIONS while the markers are out (as Kafka), then the answer
    # the commit gave
    deadline = time.monotonic() + 20
    while True:
        err, rpid, repoch = kraw.end_txn_v5(conn, "tx-tv2", pid, epoch, True)
        if err != 51 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    check(err == 0 and (rpid, repoch) == (npid, nepoch),
          "EndTxn v5 retry: error %d, %d/%d" % (err, rpid, repoch))
    err, state, depoch, topics = kraw.describe_transaction(conn, "tx-tv2")
    check(depoch == nepoch and state in ("PrepareCommit", "CompleteCommit"),
          "DescribeTransactions after EndTxn v5: %s epoch %d" % (state, depoch))
    # (the request's shard knows the partition added at the old epoch: the producer state,
    # which the markers moved to the bumped epoch, refuses it)
    err, _ = conn.produce("tv2w", 1, kraw.txn_batch(pid, epoch, 2, [b"zombie"]),
                          transactional_id="tx-tv2", version=12)
    check(err != 0, "a Produce v12 with the epoch before the bump was accepted")
    # the next transaction with the new epoch
    err, off = conn.produce("tv2w", 1, kraw.txn_batch(pid, nepoch, 0, [b"next"]),
                            transactional_id="tx-tv2", version=12)
    check(err == 0, "Produce v12 with the bumped epoch: %d" % err)
    err, _, e2 = kraw.end_txn_v5(conn, "tx-tv2", pid, nepoch, False)
    check(err == 0 and e2 == nepoch + 1, "EndTxn v5 abort: %d epoch %d" % (err, e2))
    conn.close()
    got = read_all(b, "tv2w", 2, "read_committed", expect=2)
    check(got == ["again", "implicit"], "read_committed saw %s" % got)  # (sorted)
    print("transaction version 2 on the wire: ok")


def produce_many(topic, batches, tid):
    """A Produce v12 body: batches {partition: batch} of one topic, transactional id tid."""
    t, i = topic.encode(), tid.encode()
    body = bytearray(kraw.uvarint(len(i) + 1) + i)
    body += struct.pack(">hi", -1, 30000)
    body += kraw.uvarint(2) + kraw.uvarint(len(t) + 1) + t
    body += kraw.uvarint(len(batches) + 1)
    for p, batch in sorted(batches.items()):
        body += struct.pack(">i", p) + kraw.uvarint(len(batch) + 1) + batch + b"\x00"
    body += b"\x00\x00"  # topic and request tags
    return bytes(body)


def produce_errors(r):
    """{partition: error code} of a Produce v12 response body (one topic)."""
    ntopics, pos = kraw.read_uv(r, 0)
    assert ntopics - 1 == 1
    nlen, pos = kraw.read_uv(r, pos)
    pos += nlen - 1
    nparts, pos = kraw.read_uv(r, pos)
    out = {}
    for _ in range(nparts - 1):
        idx, err = struct.unpack(">ih", r[pos:pos + 6])
        out[idx] = err
        pos += 6 + 8 + 8 + 8  # index, error, base offset, log append time, log start
        n, pos = kraw.read_uv(r, pos)  # record errors
        assert n - 1 == 0
        msg, pos = kraw.read_uv(r, pos)  # error message (compact nullable)
        pos += max(msg - 1, 0)
        tags, pos = kraw.read_uv(r, pos)
        assert tags == 0
    return out


def tv2_pipelined(b):
    """Produce v12 requests pipelined on one connection keep their order: the second names a
    partition not in the transaction yet (the leader asks the coordinator to add it), the
    third only partitions already added. The third must not be appended before the second
    (its batches would be out of sequence: OUT_OF_ORDER_SEQUENCE_NUMBER, fatal to the
    transaction), even though the leader knows its partitions are in the transaction."""
    create(b, "tv2p", 4)
    conn = kraw.Conn(b.host, b.port)
    deadline = time.monotonic() + 30
    while True:  # (the coordinator may be loading: COORDINATOR_* errors are retried)
        conn.call(10, 1, kraw.s16str("tx-pipe") + b"\x01", False)  # FindCoordinator
        r = conn.call(22, 1, kraw.s16str("tx-pipe") + struct.pack(">i", 60000), False)
        _thr, err, pid, epoch = struct.unpack(">ihqh", r[:16])
        if err not in (14, 15, 16) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    check(err == 0, "InitProducerId tx-pipe: %d" % err)
    for rnd in range(20):
        base = 0  # each EndTxn v5 bumps the epoch: sequences start again at 0
        first = {p: kraw.txn_batch(pid, epoch, base, [b"r%d-p%d-s0" % (rnd, p)]) for p in range(3)}
        errs = produce_errors(conn.call(0, 12, produce_many("tv2p", first, "tx-pipe"), True))
        check(set(errs.values()) == {0}, "round %d, first Produce: %s" % (rnd, errs))
        second = {p: kraw.txn_batch(pid, epoch, base + 1, [b"r%d-p%d-s1" % (rnd, p)])
                  for p in range(3)}
        second[3] = kraw.txn_batch(pid, epoch, 0, [b"r%d-p3" % rnd])
        third = {p: kraw.txn_batch(pid, epoch, base + 2, [b"r%d-p%d-s2" % (rnd, p)])
                 for p in range(3)}
        # sent back to back, answered in order
        for body in (produce_many("tv2p", second, "tx-pipe"),
                     produce_many("tv2p", third, "tx-pipe")):
            conn.corr += 1
            hdr = struct.pack(">hhih", 0, 12, conn.corr, 4) + b"kraw" + b"\x00"
            conn.s.sendall(struct.pack(">i", len(hdr) + len(body)) + hdr + body)
        for what in ("second", "third"):
            resp = conn._recv(struct.unpack(">i", conn._recv(4))[0])
            errs = produce_errors(resp[5:])
            check(set(errs.values()) == {0}, "round %d, %s Produce (pipelined): %s"
                  % (rnd, what, errs))
        err, _npid, nepoch = kraw.end_txn_v5(conn, "tx-pipe", pid, epoch, rnd % 2 == 0)
        check(err == 0, "round %d: EndTxn v5: %d" % (rnd, err))
        epoch = nepoch
        # the next round's batches wait for nothing: markers out is CONCURRENT_TRANSACTIONS
        # for the implicit add, answered NOT_ENOUGH_REPLICAS to the Produce; wait it out
        deadline = time.monotonic() + 20
        while True:
            err, state, _e, _t = kraw.describe_transaction(conn, "tx-pipe")
            if state in ("CompleteCommit", "CompleteAbort") or time.monotonic() > deadline:
                break
            time.sleep(0.02)
    conn.close()
    got = read_all(b, "tv2p", 4, "read_committed", expect=70)
    want = sorted(["r%d-p%d-s%d" % (rnd, p, k) for rnd in range(0, 20, 2) for p in range(3)
                   for k in range(3)] + ["r%d-p3" % rnd for rnd in range(0, 20, 2)])
    check(got == want, "read_committed saw %d records, want %d" % (len(got), len(want)))
    print("transaction version 2, pipelined Produce requests: ok")

def consume_transform_produce(b):
    create(b, "ctp-in", 1)
    create(b, "ctp-out", 1)
    src = ck.Producer({"bootstrap.servers": b.bootstrap})
    for i in range(10):
        src.produce("ctp-in", value=b"in-%d" % i)
    src.flush(10)
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "ctp",
                     "isolation.level": "read_committed", "enable.auto.commit": False,
                     "auto.offset.reset": "earliest"})
    c.subscribe(["ctp-in"])
    p = producer(b, "tx-ctp")
    seen = 0
    deadline = time.monotonic() + 30
    while seen < 10 and time.monotonic() < deadline:
        msgs = c.consume(10, 1.0)
        msgs = [m for m in msgs if m.error() is None]
        if not msgs:
            continue
        p.begin_transaction()
        for m in msgs:
            p.produce("ctp-out", value=m.value().replace(b"in", b"out"))
        p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(),
                                      30)
        p.commit_transaction(30)
        seen += len(msgs)
    c.close()
    check(seen == 10, "consumed %d of 10" % seen)
    got = read_all(b, "ctp-out", 1, "read_committed", expect=10)
    check(got == sorted("out-%d" % i for i in range(10)), "output %s" % got)
    c2 = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "ctp"})
    committed = c2.committed([ck.TopicPartition("ctp-in", 0)], 10)
    c2.close()
    check(committed[0].offset == 10, "committed offset %s" % committed[0].offset)
    print("consume-transform-produce: ok")


def lazy_state_topic(b):
    """__transaction_state is created at the first FindCoordinator of a transactional id, as
    Kafka does: a node that never saw a transaction has no such topic (nor its partitions)."""
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    topics = admin.list_topics(timeout=20).topics
    check("__transaction_state" not in topics, "__transaction_state exists before any "
          "transaction: %s" % sorted(topics))
    p = ck.Producer({"bootstrap.servers": b.bootstrap, "transactional.id": "lazy"})
    p.init_transactions(30)
    topics = admin.list_topics(timeout=20).topics
    check("__transaction_state" in topics and len(topics["__transaction_state"].partitions) == 50,
          "__transaction_state after init_transactions: %s" % sorted(topics))
    p.flush(5)
    print("__transaction_state created at the first transactional producer: ok")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    t0 = time.monotonic()
    with Broker(io=args.io, shards=2, config=CONF) as b:
        try:
            lazy_state_topic(b)
            commit_abort(b)
            zombie(b)
            verify_before_write(b)
            tv2_wire(b)
            tv2_pipelined(b)
            kill_open(b)
            kill_after_commit(b)
            consume_transform_produce(b)
        except BaseException:
            print("---- broker log (tail) ----\n" + "\n".join(b.log_text().splitlines()[-60:]))
            raise
    print("transactions (%s): ok in %.1f s" % (args.io, time.monotonic() - t0))


if __name__ == "__main__":
    main()
