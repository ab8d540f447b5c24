/* One partition as a Raft group over its storage log (see partition.h). */
#include "broker/partition/partition.h"
#include "broker/partition/partition_votes.h"
#include "broker/partition/state_file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/record_batch.h"
#include "protocol/records.h"

#define PARTITION_DRIVE_ROUNDS_MAX   64 /* a drive call's loop bound; leftovers wait for input */
#define PARTITION_TICKS_PER_CALL_MAX 16
#define PARTITION_PERSISTS_MAX       RAFT_READY_INFLIGHT_MAX

struct append_waiter {
    int64_t target; /* complete when the high watermark > info.last_offset */
    partition_append_fn fn;
    void *user;
    struct partition_append_info info;
};

struct watch {
    int64_t id;
    int64_t target;
    partition_watch_fn fn;
    void *user;
};

struct persist_rec {
    uint64_t id;
    int64_t need;    /* durable once storage_log_flushed_offset >= need */
    uint64_t qs_seq; /* and the hard state once qs_durable_seq >= qs_seq */
};

struct partition {
    struct partition_config cfg;
    char *dir; /* owned copy of cfg.dir */
    struct partition_env env;
    struct storage_log *log;
    struct raft_storage_log rlog;
    struct raft_log_ops ops;
    struct raft *raft;
    int64_t now_ms, tick_due_ms;

    uint64_t qs_term; /* what quorum-state holds or is being made to hold (written only when */
    uint32_t qs_vote; /* these change) */
    /* Hard-state writes (env.write_state, asynchronous): every change of (qs_term, qs_vote) is
     * a new qs_seq; the write in flight (qs_line) covers qs_inflight_seq (0: none); the latest
     * durable is qs_durable_seq. One write at a time: changes made meanwhile wait, and only the
     * latest is written next. A ready is reported to raft once its qs_seq is durable. Without
     * write_state the write is synchronous and qs_durable_seq == qs_seq after every ready. */
    uint64_t qs_seq, qs_durable_seq, qs_inflight_seq;
    char qs_line[64];
    bool lone; /* one voter, itself: leader from open, no raft ticks needed */
    /* The log may hold configuration changes ("raft-conf" exists): raft rebuilds its
     * configuration history from the log at open instead of taking the voters as fixed. */
    bool conf_log;

    int64_t hw;             /* the high watermark: only hw_advance writes it */
    uint64_t hw_known_term; /* a term in which this leader committed an entry of its own */
    /* A lone leader's end of acks=0/1 appends: visible to consumers before the fsync (Kafka's
     * semantics for a replica set of one: the page cache is the durability of acks=1). */
    int64_t visible_end;
    int failed;

    /* group commit */
    bool sync_running, sync_completed;
    int sync_rc;
    struct storage_sync sy;
    struct persist_rec persists[PARTITION_PERSISTS_MAX];
    uint32_t persist_head, persist_count;

    bool in_drive, drive_again;

    /* Grown on demand up to the configured maxima (an idle partition holds none: a broker
     * keeps thousands open). */
    struct append_waiter *acks; /* ring, targets non-decreasing */
    uint32_t acks_head, acks_count, acks_cap;
    struct watch *persisted; /* ring, targets non-decreasing */
    uint32_t pers_head, pers_count, pers_cap;
    struct watch *watches; /* unordered, id 0 = free */
    uint32_t n_watches, watches_cap;
    int64_t next_watch_id;

    /* A leader's lease (partition_lease_valid): when each voter last answered it in its term
     * (heard_term): the send time of the latest heartbeat it answered (the heartbeat carries
     * the leader's clock, the answer brings it back), never the receipt of the answer: after a
     * pause (SIGSTOP) the answers queued meanwhile arrive late and prove nothing about now. */
    uint64_t heard_term;
    uint32_t heard_id[RAFT_NODES_MAX];
    int64_t heard_ms[RAFT_NODES_MAX];
    /* the last time the lease was asked for (reads): no quiescence within quiesce_read_ms */
    int64_t lease_asked_ms;
    /* when a read woke this quiescent leader (its heartbeats went out to renew the lease):
     * partition_lease_coming */
    int64_t lease_woken_ms;
    /* the latest APP, HEARTBEAT or LOG_START received (from any leader): how long a quiescent
     * follower's leader has been silent when partition_wake wakes it */
    int64_t leader_heard_ms;
};

void partition_config_default(struct partition_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    storage_config_default(&cfg->storage);
    cfg->group = 1;
    cfg->tick_ms = 100;
    cfg->election_ticks = 10;
    cfg->heartbeat_ticks = 1;
    cfg->rand_seed = 1;
    cfg->waiters_max = 1024;
    cfg->watchers_max = 1024;
    cfg->resolve_bytes_max = 8u << 20;
    cfg->quiesce_read_ms = 10000;
}

/* Doubles a full ring of count elements starting at head (capacity *cap, at most max),
 * unrolled so it starts at index 0. LM_E_FULL at max, LM_E_NOMEM. */
static int ring_grow(void **ring, size_t elem, uint32_t *cap, uint32_t head, uint32_t count,
                     uint32_t max)
{
    if (*cap >= max)
        return LM_E_FULL;
    uint32_t ncap = *cap ? *cap * 2 : 4;
    if (ncap > max)
        ncap = max;
    uint8_t *n = malloc((size_t)ncap * elem);
    if (!n)
        return LM_E_NOMEM;
    const uint8_t *o = *ring;
    for (uint32_t i = 0; i < count; i++)
        memcpy(n + (size_t)i * elem, o + (size_t)((head + i) % *cap) * elem, elem);
    free(*ring);
    *ring = n;
    *cap = ncap;
    return 0;
}

static void fail(struct partition *p, int err);

/* ---------- hard state: Kafka KRaft's quorum-state file, here "term vote" ---------- */

/* A small state file of the partition directory: <dir>/<name><suffix>. */
static int state_path(const struct partition *p, const char *name, const char *suffix, char *out,
                      size_t cap)
{
    int n = snprintf(out, cap, "%s/%s%s", p->dir, name, suffix);
    return n < 0 || (size_t)n >= cap ? LM_E_TOO_LARGE : 0;
}

/* Replaces state file name with line[0..n) durably (partition_votes.h). */
static int state_write(const struct partition *p, const char *name, const char *line, int n)
{
    return state_file_write(p->dir, name, line, n);
}

static int qs_path(const struct partition *p, char *out, size_t cap, const char *suffix)
{
    return state_path(p, PARTITION_QUORUM_STATE, suffix, out, cap);
}

static int qs_read(const struct partition *p, uint64_t *term, uint32_t *vote)
{
    char path[PATH_MAX];
    int rc = qs_path(p, path, sizeof(path), "");
    if (rc)
        return rc;
    *term = 0;
    *vote = RAFT_NONE;
    char line[STATE_FILE_LINE_MAX + 1];
    rc = state_file_read(path, line, sizeof(line));
    if (rc == LM_E_NOT_FOUND)
        return 0;
    if (rc)
        return rc;
    uint64_t t;
    uint32_t v;
    rc = sscanf(line, "%" SCNu64 " %" SCNu32, &t, &v) == 2 ? 0 : LM_E_CORRUPT;
    if (rc == 0) {
        *term = t;
        *vote = v;
    }
    return rc;
}

/* "term vote\n" into line[64]; its length. */
static int qs_format(char *line, uint64_t term, uint32_t vote)
{
    int n = snprintf(line, 64, "%" PRIu64 " %" PRIu32 "\n", term, vote);
    LM_ASSERT(n > 0 && n < 64);
    return n;
}

/* Hands the latest hard state to env.write_state (nothing in flight). */
static void qs_issue(struct partition *p)
{
    LM_ASSERT(p->qs_inflight_seq == 0 && p->qs_durable_seq < p->qs_seq);
    LM_ASSERT(p->env.write_state != NULL && !p->failed);
    int n = qs_format(p->qs_line, p->qs_term, p->qs_vote);
    p->qs_inflight_seq = p->qs_seq;
    p->env.write_state(p->env.ctx, p, p->dir, PARTITION_QUORUM_STATE, p->qs_line, n);
}

/* Term or vote changed (elections): written (in place in the file's other slot, fdatasync:
 * state_file.h) before raft hears of the ready, which holds the vote answer, the RequestVote and
 * everything else of the new term until raft_persisted (consensus/raft.h, "PERSIST BEFORE
 * SEND"; Raft §5.2: a vote must be durable before it is given). With env.write_state the
 * write runs off this thread and only the latest change waits while one runs (a newer state
 * covers the older: report_persisted needs only a durable qs_seq at least the ready's);
 * without, it is done here. */
static int qs_update(struct partition *p, uint64_t term, uint32_t vote)
{
    if (p->qs_term == term && p->qs_vote == vote)
        return 0;
    if (p->env.write_state == NULL) {
        char line[64];
        int rc = state_write(p, PARTITION_QUORUM_STATE, line, qs_format(line, term, vote));
        if (rc)
            return rc;
        p->qs_term = term;
        p->qs_vote = vote;
        p->qs_durable_seq = ++p->qs_seq;
        return 0;
    }
    p->qs_term = term;
    p->qs_vote = vote;
    p->qs_seq++;
    if (p->qs_inflight_seq == 0)
        qs_issue(p); /* may complete inside: partition_state_done, drive_again */
    return 0;
}

void partition_state_done(struct partition *p, int rc)
{
    LM_ASSERT(p->qs_inflight_seq != 0 && p->qs_inflight_seq <= p->qs_seq);
    uint64_t seq = p->qs_inflight_seq;
    p->qs_inflight_seq = 0;
    if (rc) {
        LM_ASSERT(rc < 0);
        fail(p, rc); /* raft cannot be told "not written" (handle_ready) */
    } else {
        LM_ASSERT(seq > p->qs_durable_seq);
        p->qs_durable_seq = seq;
    }
    if (!p->failed && p->qs_durable_seq < p->qs_seq)
        qs_issue(p);
    partition_drive(p);
}

/* ---------- log start term ---------- */

/* "raft-start" holds "index term": raft's log start (the offset before its first entry) and the
 * term of that entry, written durably (state_file.h) before the log start moves.
 * The leader-epoch cache cannot always say it afterwards: once nothing of the epoch is left
 * (a log trimmed to its end, as the metadata log is after a snapshot) its entry goes at the
 * next open, and a raft log that reports term 0 for its last entry would vote for any
 * candidate, one missing committed entries included. */

static bool rs_read(const struct partition *p, int64_t *index, uint64_t *term)
{
    char path[PATH_MAX];
    if (state_path(p, "raft-start", "", path, sizeof(path)) != 0)
        return false;
    char line[STATE_FILE_LINE_MAX + 1];
    if (state_file_read(path, line, sizeof(line)) != 0)
        return false;
    int64_t i;
    uint64_t t;
    bool ok = sscanf(line, "%" SCNd64 " %" SCNu64, &i, &t) == 2 && i >= 0;
    if (ok) {
        *index = i;
        *term = t;
    }
    return ok;
}

static int rs_write(const struct partition *p, int64_t index, uint64_t term)
{
    char line[64];
    int n = snprintf(line, sizeof(line), "%" PRId64 " %" PRIu64 "\n", index, term);
    LM_ASSERT(n > 0 && (size_t)n < sizeof(line));
    return state_write(p, "raft-start", line, n);
}

/* "raft-conf" marks a log that has held a configuration change (a reassignment, KIP-455):
 * written durably before the first CONF entry is, so an open that finds none may take the
 * voters as fixed (O(1): no entry read), and one that finds it reads every entry header to
 * rebuild the configuration. */
static bool conf_marker_exists(const struct partition *p)
{
    char path[PATH_MAX];
    return state_path(p, "raft-conf", "", path, sizeof(path)) == 0 && access(path, F_OK) == 0;
}

/* The epoch of the batch at offset x, from the leader-epoch cache (Kafka's
 * LeaderEpochFileCache): the largest epoch whose start offset is <= x. Raft needs it for the
 * batch ending at the log start - 1 (the prev of an append there). When retention removed that
 * batch, the cache may have dropped its epoch too (truncateFromStart keeps the entry covering
 * the new start); the epoch covering the start is then the best answer it has. */
static uint64_t epoch_at(const struct storage_log *log, int64_t x)
{
    int32_t cur = storage_log_latest_epoch(log), prev = -1;
    int64_t prev_start = -1;
    for (uint32_t guard = 0; cur > 0 && guard < (1u << 16); guard++) {
        /* For a known epoch cur, storage_log_epoch_end_offset(cur - 1) gives the largest known
         * epoch below it (or cur - 1 itself when there is none) and the start offset of cur.
         * When cur is not a known epoch (below all), the start comes out as the first known
         * epoch's start again: the previous cur was the first one. */
        int32_t k;
        int64_t start;
        storage_log_epoch_end_offset(log, cur - 1, &k, &start);
        if (start == prev_start)
            return (uint64_t)prev; /* x lies before the cache's first epoch */
        if (start < 0 || start <= x || k < 0)
            return (uint64_t)cur;
        prev = cur;
        prev_start = start;
        cur = k;
    }
    /* Raft terms start at 1; epoch 0 is only found in logs written before raft owned them. */
    return prev > 0 ? (uint64_t)prev : 0;
}

static void start_term_refresh(struct partition *p)
{
    /* raft's log start: a batch boundary at or below the log start offset */
    int64_t start = raft_storage_log_start_refresh(&p->rlog);
    int64_t at = -1;
    uint64_t term = 0;
    if (start > 0 && rs_read(p, &at, &term) && at == start - 1)
        p->rlog.start_term = term; /* recorded when the start moved there */
    else
        p->rlog.start_term = start > 0 ? epoch_at(p->log, start - 1) : 0;
}

/* ---------- high watermark and waiters ---------- */

static void fail(struct partition *p, int err)
{
    LM_ASSERT(err < 0);
    if (!p->failed)
        p->failed = err;
}

/* The single writer of the high watermark: raft's commit index + 1, or, for a lone leader, the
 * end of its acks=0/1 appends when that is further (their visibility does not wait for an
 * fsync nobody asked for; acks=all batches still wait for the commit unless a later relaxed
 * append passes them, as one high watermark cannot expose a later batch and hide an earlier). */
static void hw_advance(struct partition *p)
{
    int64_t hw = raft_commit(p->raft) + 1;
    LM_ASSERT(hw <= storage_log_end_offset(p->log) || raft_role(p->raft) != RAFT_LEADER);
    if (p->lone && raft_role(p->raft) == RAFT_LEADER && p->visible_end > hw)
        hw = p->visible_end;
    if (hw > storage_log_end_offset(p->log))
        hw = storage_log_end_offset(p->log); /* a follower ahead of its own log: Kafka's
                                              * min(leader HW, LEO) */
    if (hw <= p->hw)
        return;
    p->hw = hw;
    storage_log_set_high_watermark(p->log, hw);
}

static void complete_waiters(struct partition *p)
{
    while (p->acks_count) {
        struct append_waiter *w = &p->acks[p->acks_head];
        if (w->target > p->hw)
            break;
        struct append_waiter c = *w;
        p->acks_head = (p->acks_head + 1) % p->acks_cap;
        p->acks_count--;
        c.fn(c.user, 0, &c.info);
    }
    int64_t durable = storage_log_flushed_offset(p->log);
    while (p->pers_count) {
        struct watch *w = &p->persisted[p->pers_head];
        if (w->target > durable)
            break;
        struct watch c = *w;
        p->pers_head = (p->pers_head + 1) % p->pers_cap;
        p->pers_count--;
        c.fn(c.user, 0, p->hw);
    }
    for (uint32_t i = 0; p->n_watches && i < p->watches_cap; i++) {
        struct watch *w = &p->watches[i];
        if (w->id && w->target <= p->hw) {
            struct watch c = *w;
            w->id = 0;
            p->n_watches--;
            c.fn(c.user, 0, p->hw);
        }
    }
}

/* Leadership lost or the log failed: Kafka completes delayed produces with
 * NOT_LEADER_OR_FOLLOWER (resp. KAFKA_STORAGE_ERROR) and wakes fetches so they see it. */
static void fail_waiters(struct partition *p, int err, bool watchers)
{
    while (p->acks_count) {
        struct append_waiter c = p->acks[p->acks_head];
        p->acks_head = (p->acks_head + 1) % p->acks_cap;
        p->acks_count--;
        c.fn(c.user, err, &c.info);
    }
    if (!watchers)
        return;
    while (p->pers_count) {
        struct watch c = p->persisted[p->pers_head];
        p->pers_head = (p->pers_head + 1) % p->pers_cap;
        p->pers_count--;
        c.fn(c.user, err, p->hw);
    }
    for (uint32_t i = 0; p->n_watches && i < p->watches_cap; i++) {
        struct watch *w = &p->watches[i];
        if (w->id) {
            struct watch c = *w;
            w->id = 0;
            p->n_watches--;
            c.fn(c.user, err, p->hw);
        }
    }
}

/* ---------- writing a ready ---------- */

/* A truncation (or a new log start) removed offsets that earlier, not yet durable readies
 * wrote: those readies now need only what is left below the new end, or their
 * raft_persisted would wait for offsets that will never be flushed. Raft itself ignores the
 * removed entries when they are reported (they left its view with the truncating ready). */
static void persists_clamp(struct partition *p)
{
    int64_t leo = storage_log_end_offset(p->log);
    for (uint32_t i = 0; i < p->persist_count; i++) {
        struct persist_rec *pr = &p->persists[(p->persist_head + i) % PARTITION_PERSISTS_MAX];
        if (pr->need > leo)
            pr->need = leo;
    }
}

/* Writes raft entry e as a control batch of one record (key {0, type}, value) at its offset,
 * stamped ts. */
static int write_control(struct partition *p, const struct raft_entry *e, uint8_t type,
                         const void *value, uint32_t value_len, int64_t ts)
{
    struct kafka_batch_builder b;
    kafka_batch_builder_init(&b, e->first_index, ts);
    b.attributes = KAFKA_BATCH_ATTR_CONTROL;
    uint8_t key[4] = {0, 0, 0, type};
    int rc = kafka_batch_builder_append(&b, ts, key, 4, value, (int32_t)value_len, NULL, 0);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (rc == 0)
        rc = kafka_batch_builder_finish(&b, KAFKA_CODEC_NONE, &buf, &len);
    kafka_batch_builder_deinit(&b);
    if (rc)
        return rc;
    struct storage_append_result res;
    rc = storage_log_append_leader(p->log, buf, len, (int32_t)e->term, &res);
    free(buf);
    if (rc == 0 && (res.base_offset != e->first_index || res.last_offset != e->last_index))
        rc = LM_E_CORRUPT;
    return rc;
}

/* The LeaderChange control batch (KIP-595) that stores raft's NOOP entry. LeaderChangeMessage
 * v0 would carry the voters; the epoch is in the header already. */
static int write_noop(struct partition *p, const struct raft_entry *e)
{
    static const uint8_t value[6] = {0};
    return write_control(p, e, RAFT_STORAGE_CONTROL_LEADER_CHANGE, value, sizeof(value), p->now_ms);
}

/* The VotersRecord control batch (KIP-853) that stores raft's CONF entry: the record's value is
 * the configuration as raft encoded it (raft_storage_log hands it back as the entry's data). */
static int write_conf(struct partition *p, const struct raft_entry *e)
{
    if (e->len == 0 || e->len > RAFT_STORAGE_CONF_BYTES_MAX || e->first_index != e->last_index)
        return LM_E_INVALID;
    if (!p->conf_log) {
        int rc = state_write(p, "raft-conf", "1\n", 2);
        if (rc)
            return rc;
        p->conf_log = true;
    }
    /* Every replica builds the batch from the entry (raft hands it the configuration, not
     * the leader's bytes): timestamp 0, so the replicas' logs stay byte-identical. */
    return write_control(p, e, RAFT_STORAGE_CONTROL_VOTERS, e->data, e->len, 0);
}

static int write_entries(struct partition *p, const struct raft_entry *es, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct raft_entry *e = &es[i];
        if (e->len == 0 && e->type == RAFT_ENTRY_NORMAL) {
            /* The leader's own proposal: partition_append wrote it before proposing it with no
             * bytes, so persisting it is only the fsync. Nothing else reaches a ready without
             * bytes (followers get whole batches from raft_step). Its term may be below raft's
             * by now: a message of a later term can arrive between the proposal and this ready
             * (the entry stays in raft's log, to be persisted like any other, and a new leader
             * truncates it if it conflicts). Whole-cluster simulation seed 137502 (on 6a049a7)
             * stopped here when the check was an equality. */
            LM_ASSERT(e->last_index < storage_log_end_offset(p->log));
            LM_ASSERT(e->term <= raft_term(p->raft));
            continue;
        }
        /* Raft §5.3: a conflicting suffix goes before the new entries (KIP-101 truncation). */
        if (storage_log_end_offset(p->log) > e->first_index) {
            LM_ASSERT(e->first_index >= p->hw); /* committed batches are never truncated */
            int rc = storage_log_truncate_to(p->log, e->first_index);
            if (rc)
                return rc;
            persists_clamp(p);
        }
        if (storage_log_end_offset(p->log) != e->first_index)
            return LM_E_SEQUENCE;
        int rc;
        if (e->type == RAFT_ENTRY_CONF) {
            rc = write_conf(p, e);
        } else if (e->len == 0 && e->type == RAFT_ENTRY_NOOP) {
            rc = write_noop(p, e);
        } else if (e->len > 0) {
            /* Origin REPLICATION: the leader's batch, offsets and epoch as they are. */
            struct storage_append_result res;
            rc = storage_log_append_follower(p->log, e->data, e->len, &res);
            if (rc == 0 && (res.base_offset != e->first_index || res.last_offset != e->last_index))
                rc = LM_E_CORRUPT;
        } else {
            /* An entry with no bytes that is not in storage: nothing makes those. */
            rc = LM_E_UNSUPPORTED;
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* The stamp a heartbeat or append carries (hint_index): its send time, which the answer
 * brings back for the read lease (lease_heard); never 0, which means "not stamped". */
static int64_t send_stamp(const struct partition *p)
{
    return p->now_ms > 0 ? p->now_ms : 1;
}

/* Sends APP descriptor m through env.send_app: its entries' metadata read from the log (batch
 * headers), its bytes as slices of the log files. Returns 0 once handed over, or an error
 * (LM_E_UNSUPPORTED: an entry is not a data batch; the log no longer matches the descriptor;
 * a read failed) for the caller to send it the ordinary way, which tells raft about a log
 * that changed. */
static int send_app_slices(struct partition *p, const struct raft_msg *m)
{
    struct raft_entry *es = calloc(m->n_entries, sizeof(*es));
    if (es == NULL)
        return LM_E_NOMEM;
    int rc = 0;
    int64_t at = m->index + 1;
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < m->n_entries && rc == 0; i++) {
        rc = raft_storage_log_entry(&p->rlog, at, &es[i]);
        if (rc == 0 && (es[i].type != RAFT_ENTRY_NORMAL || es[i].first_index != at ||
                        es[i].bytes == 0 || es[i].bytes == UINT32_MAX))
            rc = LM_E_UNSUPPORTED;
        es[i].data = NULL; /* the bytes go as slices */
        es[i].len = es[i].bytes;
        bytes += es[i].bytes;
        at = es[i].last_index + 1;
    }
    raft_storage_log_release(&p->rlog);
    if (rc == 0 && (es[m->n_entries - 1].last_index != m->ent_last ||
                    es[m->n_entries - 1].term != m->ent_last_term))
        rc = LM_E_UNSUPPORTED;
    struct storage_read_result res;
    memset(&res, 0, sizeof(res));
    if (rc == 0)
        rc = storage_log_read(p->log, m->index + 1, bytes, m->ent_last + 1, &res);
    if (rc == 0 &&
        (res.first_offset != m->index + 1 || res.last_offset != m->ent_last || res.bytes != bytes))
        rc = LM_E_UNSUPPORTED; /* more segments than one read spans, or the log moved */
    struct partition_slice sl[STORAGE_READ_SLICES_MAX];
    uint32_t n = 0;
    for (uint32_t i = 0; rc == 0 && i < res.slice_count; i++) {
        /* a dup: the slice outlives this read (the socket takes it later), and a segment
         * closed or deleted meanwhile keeps its bytes for it */
        int fd = dup(res.slices[i].fd);
        if (fd < 0) {
            rc = LM_E_IO;
            break;
        }
        sl[n++] = (struct partition_slice){
            .fd = fd, .offset = res.slices[i].position, .len = res.slices[i].length};
    }
    if (rc == 0 || res.slice_count > 0)
        storage_read_result_release(p->log, &res);
    if (rc == 0) {
        struct raft_msg wire = *m;
        wire.entries = es;
        wire.hint_index = send_stamp(p);
        rc = p->env.send_app(p->env.ctx, p, &wire, sl, n);
    } else {
        for (uint32_t i = 0; i < n; i++)
            close(sl[i].fd);
    }
    free(es);
    return rc;
}

static void send_msgs(struct partition *p, const struct raft_ready *rd)
{
    for (size_t i = 0; i < rd->n_msgs; i++) {
        const struct raft_msg *m = &rd->msgs[i];
        if (!p->env.send)
            continue; /* a single voter sends nothing that matters */
        int64_t stamp = send_stamp(p);
        if (m->type == RAFT_MSG_HEARTBEAT || (m->type == RAFT_MSG_APP && m->n_entries == 0)) {
            struct raft_msg hb = *m;
            hb.hint_index = stamp;
            p->env.send(p->env.ctx, p, &hb);
            continue;
        }
        if (m->type != RAFT_MSG_APP || m->entries) {
            p->env.send(p->env.ctx, p, m);
            continue;
        }
        if (p->env.send_app != NULL && send_app_slices(p, m) == 0)
            continue;
        struct raft_msg wire;
        p->rlog.data_mode = true;
        int rc = raft_msg_resolve(&wire, m, &p->ops);
        wire.hint_index = stamp;
        p->rlog.data_mode = false;
        raft_storage_log_release(&p->rlog);
        if (rc) {
            int urc = raft_append_unsent(p->raft, m, rc);
            LM_ASSERT(urc == 0 || urc < 0);
            continue;
        }
        p->env.send(p->env.ctx, p, &wire);
        raft_msg_deinit(&wire);
    }
}

static bool handle_ready(struct partition *p)
{
    if (!raft_has_ready(p->raft))
        return false;
    struct raft_ready rd;
    raft_ready(p->raft, &rd);
    if (rd.persist_id) {
        int rc = 0;
        /* Only term and vote need to be durable; commit is the checkpointed HW. */
        if (rd.hs_changed)
            rc = qs_update(p, rd.hs.term, rd.hs.vote);
        if (rc == 0 && rd.start_changed) {
            rc = rs_write(p, rd.start.index, rd.start.term);
            if (rc == 0)
                rc = storage_log_reset(p->log, rd.start.index + 1);
            p->rlog.start_term = rd.start.term;
            p->rlog.conf = rd.start.conf;
            persists_clamp(p);
        }
        if (rc == 0 && rd.n_entries)
            rc = write_entries(p, rd.entries, rd.n_entries);
        if (rc) {
            /* Raft cannot be told "not written": the partition stops (KAFKA_STORAGE_ERROR until
             * reopened), as Kafka takes a log dir offline on a write error. */
            fail(p, rc);
        } else {
            LM_ASSERT(p->persist_count < PARTITION_PERSISTS_MAX);
            struct persist_rec *pr =
                &p->persists[(p->persist_head + p->persist_count) % PARTITION_PERSISTS_MAX];
            pr->id = rd.persist_id;
            pr->need = storage_log_end_offset(p->log);
            pr->qs_seq = p->qs_seq;
            p->persist_count++;
        }
    }
    if (!p->failed)
        send_msgs(p, &rd);
    /* Committed entries carry nothing to apply for a partition: the commit index is the news. */
    if (rd.soft_changed && rd.role != RAFT_LEADER)
        fail_waiters(p, LM_E_STATE, false);
    return true;
}

/* ---------- group commit ---------- */

/* Tells raft which readies are durable; true when it told it any (raft may then release
 * messages that waited for them: the drive step goes round again). */
static bool report_persisted(struct partition *p)
{
    /* With write caching, what is written counts as persisted: the log start was made durable
     * as it was written (handle_ready), and term and vote still wait for their write. */
    int64_t durable =
        p->cfg.write_caching ? storage_log_end_offset(p->log) : storage_log_flushed_offset(p->log);
    uint64_t id = 0;
    while (p->persist_count && p->persists[p->persist_head].need <= durable &&
           p->persists[p->persist_head].qs_seq <= p->qs_durable_seq) {
        id = p->persists[p->persist_head].id;
        p->persist_head = (p->persist_head + 1) % PARTITION_PERSISTS_MAX;
        p->persist_count--;
    }
    if (id) {
        int rc = raft_persisted(p->raft, id);
        LM_ASSERT(rc != LM_E_INVALID); /* ids are reported in order */
    }
    return id != 0;
}

static bool sync_progress(struct partition *p)
{
    bool progress = false;
    if (p->sync_running && p->sync_completed) {
        p->sync_completed = false;
        bool done = false;
        int rc = storage_log_sync_step(p->log, &p->sy, p->sync_rc, &done);
        progress = true;
        if (rc) {
            p->sync_running = false;
            fail(p, rc);
            return true;
        }
        if (done) {
            p->sync_running = false;
        } else {
            /* After the data step what it covers is durable: raft hears it (and the waiters
             * answer) now; the later steps (indexes, checkpoint) go on behind it. */
            (void)report_persisted(p);
            p->env.sync(p->env.ctx, p, p->sy.fds, p->sy.full, p->sy.fd_count);
            return true;
        }
    }
    if (report_persisted(p))
        progress = true; /* a hard-state write's completion, or write caching */
    /* What needs an fsync now: an acks=all or "persisted >= X" waiter, the flush policy
     * (flush.messages, flush.ms), a group with other voters (their commit counts this node's
     * durable log), or half a ring of readies not yet durable (it bounds raft's unstable tail).
     * Otherwise a lone voter's acks=0/1 appends are visible without an fsync (hw_advance) and
     * stay in the page cache as Kafka leaves them without flush settings; no fsync per append
     * holds the log open. */
    bool persists_due =
        p->persist_count > 0 && (!p->lone || p->persist_count >= PARTITION_PERSISTS_MAX / 2);
    bool want = persists_due || (p->acks_count > 0 && !p->cfg.write_caching) || p->pers_count > 0 ||
                storage_log_flush_due(p->log);
    if (!p->sync_running && want &&
        storage_log_flushed_offset(p->log) < storage_log_end_offset(p->log)) {
        int rc = storage_log_sync_begin(p->log, &p->sy);
        if (rc) {
            fail(p, rc);
            return true;
        }
        p->sync_running = true;
        p->sync_completed = false;
        progress = true;
        p->env.sync(p->env.ctx, p, p->sy.fds, p->sy.full, p->sy.fd_count);
    }
    return progress;
}

int partition_drive(struct partition *p)
{
    if (p->in_drive) {
        p->drive_again = true; /* a callback re-entered: the outer loop goes round again */
        return 0;
    }
    p->in_drive = true;
    for (int round = 0; round < PARTITION_DRIVE_ROUNDS_MAX && !p->failed; round++) {
        p->drive_again = false;
        bool progress = handle_ready(p);
        if (!p->failed)
            progress |= sync_progress(p);
        if (!p->failed) {
            hw_advance(p);
            complete_waiters(p);
        }
        if (!progress && !p->drive_again)
            break;
    }
    p->in_drive = false;
    if (p->failed)
        fail_waiters(p, p->failed, true);
    return p->failed;
}

void partition_sync_done(struct partition *p, int rc)
{
    LM_ASSERT(p->sync_running && !p->sync_completed);
    p->sync_completed = true;
    p->sync_rc = rc;
    partition_drive(p);
}

/* ---------- lifecycle ---------- */

int partition_open(const struct partition_config *cfg, const struct partition_env *env,
                   int64_t now_ms, struct partition **out)
{
    if (!cfg->dir || !env || !env->sync || cfg->node_id == RAFT_NONE || cfg->tick_ms == 0 ||
        cfg->waiters_max == 0 || cfg->watchers_max == 0 || cfg->voters.n_voters == 0)
        return LM_E_CONFIG;
    struct partition *p = calloc(1, sizeof(*p));
    if (!p)
        return LM_E_NOMEM;
    p->cfg = *cfg;
    p->env = *env;
    /* Opening writes its hard state synchronously (a lone voter's campaign below): a failed
     * open frees p at once, which no write in flight may outlive. */
    p->env.write_state = NULL;
    p->now_ms = now_ms;
    p->tick_due_ms = now_ms + cfg->tick_ms;
    p->lease_asked_ms = INT64_MIN / 2; /* never: quiescence need not wait for a read window */
    p->lease_woken_ms = INT64_MIN / 2;
    p->leader_heard_ms = now_ms;
    p->next_watch_id = 1;
    int rc = strlen(cfg->dir) >= PATH_MAX ? LM_E_TOO_LARGE : 0;
    if (rc == 0) {
        p->dir = strdup(cfg->dir);
        rc = p->dir == NULL ? LM_E_NOMEM : 0;
    }
    p->cfg.dir = p->dir;
    p->cfg.storage.external_sync = true;
    if (rc == 0)
        rc = storage_log_open(p->dir, &p->cfg.storage, &p->log);
    uint64_t term = 0;
    uint32_t vote = RAFT_NONE;
    if (rc == 0)
        rc = qs_read(p, &term, &vote);
    if (rc) {
        partition_close(p);
        return rc;
    }
    p->conf_log = conf_marker_exists(p);
    /* A node outside the voters (a replica a reassignment adds) is a learner once the leader's
     * configuration says so; before that it only receives what the leader sends. With a
     * configuration history in the log the voters given are the log start's. */
    bool fixed = !p->conf_log && !cfg->may_grow;
    if (fixed && !raft_conf_is_voter(&cfg->voters, cfg->node_id) && cfg->voters.n_voters == 1) {
        partition_close(p);
        return LM_E_CONFIG; /* a lone group this node is not the voter of */
    }
    /* The latest leader epoch in the log is a term this node saw, even if quorum-state lags. */
    p->qs_term = term;
    p->qs_vote = vote;
    int32_t latest = storage_log_latest_epoch(p->log);
    if (latest > 0 && (uint64_t)latest > term) {
        term = (uint64_t)latest;
        vote = RAFT_NONE;
    }
    raft_storage_log_init(&p->rlog, p->log, &cfg->voters, 0, cfg->resolve_bytes_max);
    start_term_refresh(p);
    raft_storage_log_ops(&p->rlog, &p->ops);
    p->hw = storage_log_high_watermark(p->log);
    struct raft_hard_state hs = {.term = term, .vote = vote, .commit = p->hw - 1};
    struct raft_config rc_cfg = {.id = cfg->node_id,
                                 .group = cfg->group,
                                 .election_ticks = cfg->election_ticks,
                                 .heartbeat_ticks = cfg->heartbeat_ticks,
                                 .max_inflight = 8,
                                 .max_msg_entries = 64,
                                 .max_msg_bytes = (uint32_t)cfg->resolve_bytes_max,
                                 .max_apply_entries = 256,
                                 .pre_vote = true,
                                 /* a group that may change: a leader cut off from the
                                  * voters it gains steps down (thesis §6.2) */
                                 .check_quorum = cfg->voters.n_voters > 1 || !fixed,
                                 .rand_seed = cfg->rand_seed,
                                 .applied = p->hw - 1,
                                 .conf_fixed = !p->conf_log,
                                 .no_apply = true,
                                 .stats = cfg->raft_stats,
                                 .lone_resume = fixed};
    p->raft = raft_new(&rc_cfg, &p->ops, &hs);
    if (!p->raft) {
        partition_close(p);
        return LM_E_IO; /* raft_new fails on a bad config (checked above) or a failed read */
    }
    /* Raft may commit more than the checkpoint said (a lone voter commits its whole durable
     * log at once): storage's high watermark, which the read paths use, follows. */
    if (raft_commit(p->raft) + 1 < p->hw)
        p->hw = raft_commit(p->raft) + 1; /* the checkpoint was past the recovered log end */
    hw_advance(p);
    if (storage_log_high_watermark(p->log) != p->hw)
        storage_log_set_high_watermark(p->log, p->hw);
    LM_ASSERT(p->hw <= storage_log_end_offset(p->log));
    p->lone = fixed && cfg->voters.n_voters == 1 && cfg->voters.n_learners == 0;
    if (p->lone) {
        /* The hard state a lone voter resumes with (term max(file, last log epoch, 1), vote
         * self) is what every later open derives from the same file and a log whose epochs
         * only grow: it needs no write (a new partition would otherwise fdatasync a
         * quorum-state file before its first append). */
        p->qs_term = raft_term(p->raft);
        p->qs_vote = cfg->node_id;
        /* lone_resume: raft_new made it leader at the term the log and quorum-state imply,
         * so reopening (the broker's idle-log budget) keeps the leader epoch. */
        LM_ASSERT(raft_role(p->raft) == RAFT_LEADER);
        rc = partition_drive(p);
        if (rc) {
            partition_close(p);
            return rc;
        }
    }
    /* The only voter of a group that may grow elects itself now rather than after an
     * election timeout. */
    const struct raft_conf *now_conf = raft_conf(p->raft);
    if (!p->lone && now_conf->n_voters == 1 && now_conf->voters[0] == cfg->node_id) {
        rc = raft_campaign(p->raft);
        if (rc == 0)
            rc = partition_drive(p);
        if (rc) {
            partition_close(p);
            return rc;
        }
    }
    p->env.write_state = env->write_state;
    *out = p;
    return 0;
}

/* Frees what the partition owns besides its storage log (closed by the caller). */
static void partition_free(struct partition *p)
{
    raft_free(p->raft);
    raft_storage_log_deinit(&p->rlog);
    free(p->acks);
    free(p->persisted);
    free(p->watches);
    free(p->dir);
    free(p);
}

int partition_close_unsynced(struct partition *p)
{
    LM_ASSERT(p != NULL);
    if (!p->lone || p->sync_running || p->acks_count || p->pers_count || p->n_watches ||
        p->qs_inflight_seq != 0)
        return LM_E_STATE;
    int rc = storage_log_close_unsynced(p->log);
    if (rc)
        return rc;
    p->log = NULL;
    partition_free(p);
    return 0;
}

int partition_release_fds(struct partition *p)
{
    LM_ASSERT(p != NULL);
    if (p->failed || p->log == NULL)
        return LM_E_STATE;
    /* A group commit between steps holds its fds (and pins) in storage: refused there too. */
    if (p->sync_running)
        return LM_E_STATE;
    return storage_log_release_fds(p->log);
}

static int close_log(struct partition *p, bool discard);

int partition_close(struct partition *p)
{
    return close_log(p, false);
}

int partition_close_discard(struct partition *p)
{
    return close_log(p, true);
}

static int close_log(struct partition *p, bool discard)
{
    if (!p)
        return 0;
    LM_ASSERT(!p->sync_running || p->failed || !p->log);
    LM_ASSERT(p->qs_inflight_seq == 0); /* the owner waits for its hard-state write */
    fail_waiters(p, LM_E_CLOSED, true);
    int rc = 0;
    if (p->log && p->sync_running) {
        /* Failed while a group commit was between steps (its fsyncs done, the step not taken:
         * a failed partition is not driven): the step still holds its segments pinned. It ends
         * here as a failed one, which unpins them and records nothing as durable. */
        LM_ASSERT(p->sync_completed); /* the owner closes only once its fsyncs have returned */
        bool done = false;
        (void)storage_log_sync_step(p->log, &p->sy, LM_E_CLOSED, &done);
        LM_ASSERT(done);
        p->sync_running = false;
    }
    /* a directory about to be removed needs no final flush (its fsyncs and a new checkpoint
     * file, thousands of them when a large topic is deleted); storage refuses the unsynced
     * close while a compaction runs or a segment is pinned: then the ordinary one */
    if (p->log && discard && storage_log_close_unsynced(p->log) == 0)
        p->log = NULL;
    if (p->log) {
        storage_log_set_high_watermark(p->log, p->hw);
        rc = storage_log_close(p->log);
    }
    partition_free(p);
    return rc;
}

/* ---------- API ---------- */

/* ReplicaManager.appendRecords rules by origin: clients may not write internal topics
 * (INVALID_TOPIC_EXCEPTION unless internalTopicsAllowed) nor control batches (LogValidator:
 * only the coordinator writes transaction markers); replication enters through raft. */
static int check_origin(const struct partition *p, enum partition_origin origin, const uint8_t *buf,
                        size_t len)
{
    if (origin == PARTITION_ORIGIN_REPLICATION)
        return LM_E_INVALID;
    if (origin != PARTITION_ORIGIN_CLIENT)
        return 0;
    if (p->cfg.internal_topic)
        return LM_E_INVALID;
    for (size_t pos = 0; pos < len;) {
        struct kafka_batch_header h;
        int rc = kafka_batch_header_parse(buf + pos, len - pos, &h);
        if (rc)
            return rc;
        if (h.attributes & KAFKA_BATCH_ATTR_CONTROL)
            return LM_E_INVALID;
        /* Kafka's LogValidator: a client's batch holds as many records as its offset range
         * ("Inconsistent batch offset range", INVALID_RECORD). A batch claiming a range of
         * 2^31 offsets would otherwise be one raft entry past what raft_propose takes, and
         * fail the partition. */
        if (h.records_count <= 0 || (int64_t)h.records_count != (int64_t)h.last_offset_delta + 1)
            return LM_E_SEQUENCE;
        size_t total = kafka_batch_total_size(&h);
        if (total > len - pos)
            return LM_E_TRUNCATED;
        pos += total;
    }
    return 0;
}

int partition_append(struct partition *p, enum partition_origin origin, uint8_t *buf, size_t len,
                     int acks, partition_append_fn done, void *user)
{
    LM_ASSERT(done != NULL);
    if (p->failed)
        return p->failed;
    if (acks != 0 && acks != 1 && acks != -1)
        return LM_E_INVALID;
    int rc = check_origin(p, origin, buf, len);
    if (rc)
        return rc;
    /* a leader handing over refuses proposals: checked before storage is written, as a
     * batch in storage that raft refused could only be reconciled by a restart */
    if (raft_role(p->raft) != RAFT_LEADER || raft_transferring(p->raft))
        return LM_E_STATE;
    if (acks == -1 && p->acks_count == p->acks_cap) {
        if (ring_grow((void **)&p->acks, sizeof(*p->acks), &p->acks_cap, p->acks_head,
                      p->acks_count, p->cfg.waiters_max))
            return LM_E_FULL;
        p->acks_head = 0;
    }
    /* Raft assigns offsets from its view of the log; storage from its end. They agree once the
     * ready holding this term's NOOP is written. */
    if (raft_last_index(p->raft) != storage_log_end_offset(p->log) - 1) {
        rc = partition_drive(p);
        if (rc)
            return rc;
        if (raft_role(p->raft) != RAFT_LEADER)
            return LM_E_STATE;
        if (raft_last_index(p->raft) != storage_log_end_offset(p->log) - 1)
            return LM_E_AGAIN;
    }
    uint64_t term = raft_term(p->raft);
    LM_ASSERT(term <= INT32_MAX);
    struct storage_append_result res;
    p->rlog.hide_from = storage_log_end_offset(p->log);
    rc = storage_log_append_leader(p->log, buf, len, (int32_t)term, &res);
    if (rc) {
        p->rlog.hide_from = -1;
        return rc;
    }
    /* One raft entry per batch: entry boundaries are batch last offsets. The bytes are already
     * in storage, so raft gets none (no copy in its unstable tail either). */
    for (size_t pos = 0; pos < len;) {
        struct kafka_batch_header h;
        rc = kafka_batch_header_parse(buf + pos, len - pos, &h);
        LM_ASSERT(rc == 0); /* storage checked every batch */
        int64_t last = -1;
        rc = raft_propose(p->raft, NULL, 0, (uint32_t)h.last_offset_delta + 1, &last);
        if (rc) {
            p->rlog.hide_from = -1;
            /* Storage holds batches raft never saw: nothing can reconcile that but a restart
             * (recovery then sees them as this term's uncommitted tail). */
            fail(p, rc);
            return rc;
        }
        LM_ASSERT(last == kafka_batch_last_offset(&h));
        pos += kafka_batch_total_size(&h);
    }
    p->rlog.hide_from = -1;
    LM_ASSERT(raft_last_index(p->raft) == res.last_offset);
    if (acks != -1 && p->lone)
        p->visible_end = res.last_offset + 1;
    struct partition_append_info info = {.base_offset = res.base_offset,
                                         .last_offset = res.last_offset,
                                         .leader_epoch = (int32_t)term,
                                         .log_start_offset = storage_log_start_offset(p->log)};
    if (acks == -1) {
        struct append_waiter *w = &p->acks[(p->acks_head + p->acks_count) % p->acks_cap];
        LM_ASSERT(p->acks_count == 0 ||
                  p->acks[(p->acks_head + p->acks_count - 1) % p->acks_cap].target <
                      res.last_offset + 1);
        *w = (struct append_waiter){
            .target = res.last_offset + 1, .fn = done, .user = user, .info = info};
        p->acks_count++;
    } else {
        done(user, 0, &info);
    }
    partition_drive(p);
    return 0;
}

int partition_read(struct partition *p, int64_t offset, uint64_t max_bytes, bool committed_only,
                   struct storage_read_result *res)
{
    if (p->failed)
        return p->failed;
    return storage_log_read(p->log, offset, max_bytes, committed_only ? p->hw : STORAGE_NO_LIMIT,
                            res);
}

int partition_read_stable(struct partition *p, int64_t offset, uint64_t max_bytes,
                          struct storage_read_result *res)
{
    if (p->failed)
        return p->failed;
    return storage_log_read(p->log, offset, max_bytes, partition_last_stable_offset(p), res);
}

void partition_read_release(struct partition *p, struct storage_read_result *res)
{
    storage_read_result_release(p->log, res);
}

int64_t partition_watch(struct partition *p, int64_t hw_min, partition_watch_fn fn, void *user)
{
    LM_ASSERT(fn != NULL);
    if (p->n_watches == p->watches_cap) {
        uint32_t old = p->watches_cap;
        if (ring_grow((void **)&p->watches, sizeof(*p->watches), &p->watches_cap, 0, p->n_watches,
                      p->cfg.watchers_max))
            return LM_E_FULL;
        memset(p->watches + old, 0, (size_t)(p->watches_cap - old) * sizeof(*p->watches));
    }
    for (uint32_t i = 0; i < p->watches_cap; i++) {
        if (p->watches[i].id == 0) {
            int64_t id = p->next_watch_id++;
            p->watches[i] = (struct watch){.id = id, .target = hw_min, .fn = fn, .user = user};
            p->n_watches++;
            if (!p->in_drive)
                complete_waiters(p);
            return id;
        }
    }
    LM_UNREACHABLE();
    return LM_E_FULL;
}

void partition_unwatch(struct partition *p, int64_t id)
{
    for (uint32_t i = 0; i < p->watches_cap; i++) {
        if (p->watches[i].id == id && id != 0) {
            p->watches[i].id = 0;
            p->n_watches--;
            return;
        }
    }
}

int partition_wait_persisted(struct partition *p, int64_t offset, partition_watch_fn fn, void *user)
{
    LM_ASSERT(fn != NULL);
    if (p->failed)
        return p->failed;
    if (p->pers_count &&
        p->persisted[(p->pers_head + p->pers_count - 1) % p->pers_cap].target > offset)
        return LM_E_INVALID; /* the queue completes in offset order */
    if (p->pers_count == p->pers_cap) {
        int grc = ring_grow((void **)&p->persisted, sizeof(*p->persisted), &p->pers_cap,
                            p->pers_head, p->pers_count, p->cfg.waiters_max);
        if (grc)
            return grc;
        p->pers_head = 0;
    }
    p->persisted[(p->pers_head + p->pers_count) % p->pers_cap] =
        (struct watch){.id = 1, .target = offset, .fn = fn, .user = user};
    p->pers_count++;
    partition_drive(p); /* a failure completes fn with the error */
    return 0;
}

/* Asks an idle leader's raft to quiesce (partition_config.quiesce): nothing of this node's
 * own under way (waiters, fsyncs, writes not yet durable), and no read lease asked for
 * lately, since a quiescent leader's lease runs out with its last heartbeats' answers. */
static void maybe_quiesce(struct partition *p)
{
    if (!p->cfg.quiesce || p->lone || p->failed || raft_quiescent(p->raft) ||
        raft_role(p->raft) != RAFT_LEADER || p->sync_running || p->persist_count > 0 ||
        p->acks_count > 0 || p->pers_count > 0 ||
        p->now_ms - p->lease_asked_ms < (int64_t)p->cfg.quiesce_read_ms ||
        storage_log_flushed_offset(p->log) < storage_log_end_offset(p->log))
        return;
    if (raft_quiesce(p->raft))
        (void)partition_drive(p); /* the quiescing heartbeats */
}

int partition_tick(struct partition *p, int64_t now_ms)
{
    if (p->failed)
        return p->failed;
    if (now_ms > p->now_ms)
        p->now_ms = now_ms;
    /* A lone leader has nobody to heartbeat and no election to time out: no raft ticks,
     * unless its commit lags the durable log (a failed read put the advancement off and the
     * tick is raft's retry). */
    if (p->lone && raft_role(p->raft) == RAFT_LEADER &&
        raft_commit(p->raft) + 1 >= storage_log_flushed_offset(p->log))
        p->tick_due_ms = p->now_ms + p->cfg.tick_ms;
    for (int n = 0; p->now_ms >= p->tick_due_ms && n < PARTITION_TICKS_PER_CALL_MAX; n++) {
        p->tick_due_ms += p->cfg.tick_ms;
        (void)raft_tick(p->raft); /* a failed read is retried by raft at the next tick */
    }
    if (p->now_ms >= p->tick_due_ms)
        p->tick_due_ms = p->now_ms + p->cfg.tick_ms; /* a long stall: do not replay every tick */
    /* Retention never passes the high watermark (storage checks), so raft only loses
     * committed entries, as with a snapshot. */
    uint32_t deleted = 0;
    int rc = storage_log_enforce_retention(p->log, &deleted);
    if (rc)
        fail(p, rc);
    else if (deleted)
        start_term_refresh(p);
    rc = partition_drive(p);
    if (rc == 0)
        maybe_quiesce(p);
    return p->failed ? p->failed : rc;
}

int partition_clock(struct partition *p, int64_t now_ms)
{
    if (p->failed)
        return p->failed;
    if (now_ms > p->now_ms)
        p->now_ms = now_ms;
    if (raft_quiescent(p->raft)) {
        /* nothing to tick; what an input changed was driven by that input */
        p->tick_due_ms = p->now_ms + p->cfg.tick_ms;
        return 0;
    }
    /* A group with other voters needs its raft ticks (heartbeats, elections) at tick_ms
     * whatever the retention cadence of partition_tick. */
    for (int n = 0; !p->lone && p->now_ms >= p->tick_due_ms && n < PARTITION_TICKS_PER_CALL_MAX;
         n++) {
        p->tick_due_ms += p->cfg.tick_ms;
        (void)raft_tick(p->raft);
    }
    if (!p->lone && p->now_ms >= p->tick_due_ms)
        p->tick_due_ms = p->now_ms + p->cfg.tick_ms;
    int rc = partition_drive(p);
    if (rc == 0)
        maybe_quiesce(p);
    return p->failed ? p->failed : rc;
}

bool partition_quiescent(const struct partition *p)
{
    return raft_quiescent(p->raft);
}

int partition_wake(struct partition *p)
{
    if (p->failed)
        return p->failed;
    if (!raft_quiescent(p->raft))
        return 0;
    int64_t silent_ms = p->now_ms - p->leader_heard_ms;
    int64_t ticks = silent_ms > 0 ? silent_ms / p->cfg.tick_ms : 0;
    raft_wake_silent(p->raft, ticks < UINT32_MAX ? (uint32_t)ticks : UINT32_MAX);
    p->tick_due_ms = p->now_ms + p->cfg.tick_ms;
    return partition_drive(p); /* a leader's heartbeats */
}

int partition_wake_unsure(struct partition *p)
{
    if (p->failed)
        return p->failed;
    if (!raft_quiescent(p->raft))
        return 0;
    raft_wake_silent(p->raft, 0);
    p->tick_due_ms = p->now_ms + p->cfg.tick_ms;
    return partition_drive(p);
}

void partition_set_clock(struct partition *p, int64_t now_ms)
{
    if (now_ms > p->now_ms)
        p->now_ms = now_ms;
}

/* Notes that voter `from` answered, in this leader's term, a heartbeat sent at sent_ms (a voter
 * that answers follows this leader: it grants no vote for election_ticks after it heard it). */
static void lease_heard(struct partition *p, uint32_t from, int64_t sent_ms)
{
    if (sent_ms <= 0)
        return; /* a heartbeat not stamped (another sender's), or not a heartbeat's answer */
    if (sent_ms > p->now_ms)
        sent_ms = p->now_ms; /* never later than this clock */
    uint64_t term = raft_term(p->raft);
    if (p->heard_term != term) {
        p->heard_term = term;
        memset(p->heard_id, 0, sizeof(p->heard_id));
    }
    uint32_t free_slot = RAFT_NODES_MAX;
    for (uint32_t i = 0; i < RAFT_NODES_MAX; i++) {
        if (p->heard_id[i] == from) {
            if (sent_ms > p->heard_ms[i]) /* answers may come out of order */
                p->heard_ms[i] = sent_ms;
            return;
        }
        if (p->heard_id[i] == RAFT_NONE && free_slot == RAFT_NODES_MAX)
            free_slot = i;
    }
    if (free_slot < RAFT_NODES_MAX) {
        p->heard_id[free_slot] = from;
        p->heard_ms[free_slot] = sent_ms;
    }
}

/* An APP's batches must be what its table says: one whole batch per NORMAL entry with bytes,
 * at the entry's offsets and with its term as partitionLeaderEpoch, CRC intact. A leader sends
 * them as slices of its log file (zero-copy), read when the socket takes them: a log cut and
 * rewritten after the APP was made (a leader that lost its term and took another leader's
 * entries) would send other bytes than the table describes. Such an APP is dropped as a lost
 * message (raft sends again) rather than written: appending it would fail the partition, and
 * raft must never hold an entry whose bytes disagree with its term. */
static bool app_bytes_match(const struct raft_msg *m)
{
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (e->type != RAFT_ENTRY_NORMAL || e->len == 0)
            continue;
        struct kafka_batch_header h;
        if (kafka_batch_header_parse(e->data, e->len, &h) != 0 ||
            kafka_batch_total_size(&h) != e->len || h.base_offset != e->first_index ||
            kafka_batch_last_offset(&h) != e->last_index || h.partition_leader_epoch < 0 ||
            (uint64_t)h.partition_leader_epoch != e->term || !kafka_batch_crc_ok(e->data, &h))
            return false;
    }
    return true;
}

int partition_step(struct partition *p, const struct raft_msg *m)
{
    if (p->failed)
        return p->failed;
    if (m->type == RAFT_MSG_APP && m->n_entries > 0 && m->entries != NULL && !app_bytes_match(m)) {
        return LM_E_CORRUPT;
    }
    if (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_LOG_START)
        p->leader_heard_ms = p->now_ms; /* from a leader, current or not: never too early */
    if (raft_role(p->raft) == RAFT_LEADER && m->term == raft_term(p->raft) &&
        (m->type == RAFT_MSG_HEARTBEAT_RESP || (m->type == RAFT_MSG_APP_RESP && !m->reject)) &&
        m->from != p->cfg.node_id && m->from != RAFT_NONE)
        lease_heard(p, m->from, m->hint_index);
    int rc = raft_step(p->raft, m);
    int drc = partition_drive(p);
    return drc ? drc : rc;
}

int partition_propose_conf(struct partition *p, enum raft_conf_op op, uint32_t node)
{
    if (p->failed)
        return p->failed;
    if (p->lone)
        return LM_E_STATE; /* no messages go out of a lone voter's group */
    raft_conf_unfix(p->raft);
    int rc = raft_propose_conf(p->raft, op, node);
    if (rc == 0)
        rc = partition_drive(p);
    return rc;
}

bool partition_conf_pending(const struct partition *p)
{
    return raft_conf_pending(p->raft);
}

int partition_campaign(struct partition *p)
{
    if (p->failed)
        return p->failed;
    int rc = raft_campaign(p->raft);
    int drc = partition_drive(p);
    return drc ? drc : rc;
}

void partition_hold_elections(struct partition *p, bool hold)
{
    if (!p->failed)
        raft_hold_elections(p->raft, hold);
}

int partition_transfer_leader(struct partition *p, uint32_t to)
{
    if (p->failed)
        return p->failed;
    int rc = raft_transfer_leader(p->raft, to);
    int drc = partition_drive(p);
    return drc ? drc : rc;
}

uint32_t partition_handoff_target(const struct partition *p, bool (*usable)(void *ctx, uint32_t id),
                                  void *ctx)
{
    if (p->failed || raft_role(p->raft) != RAFT_LEADER)
        return RAFT_NONE;
    const struct raft_conf *conf = raft_conf(p->raft);
    uint32_t self = raft_id(p->raft), best = RAFT_NONE;
    int64_t best_match = -1;
    for (uint32_t i = 0; i < conf->n_voters; i++) {
        uint32_t id = conf->voters[i];
        const struct raft_progress *pr = raft_progress(p->raft, id);
        if (id == self || pr == NULL || !pr->recent_active || (usable && !usable(ctx, id)))
            continue;
        if (pr->match > best_match) {
            best = id;
            best_match = pr->match;
        }
    }
    return best;
}

int partition_advance_start(struct partition *p, int64_t offset)
{
    if (p->failed)
        return p->failed;
    if (offset > p->hw)
        return LM_E_OUT_OF_RANGE;
    if (offset <= storage_log_start_offset(p->log))
        return 0;
    /* raft's new start and its term, recorded while the epoch cache still covers it */
    int64_t base = raft_storage_log_batch_base(&p->rlog, offset);
    int rc = base > storage_log_start_offset(p->log)
                 ? rs_write(p, base - 1, epoch_at(p->log, base - 1))
                 : 0; /* raft's start stays where it is */
    if (rc != 0)
        return rc;
    rc = storage_log_advance_start(p->log, offset);
    if (rc == 0)
        start_term_refresh(p);
    return rc;
}

int64_t partition_high_watermark(const struct partition *p)
{
    return p->hw;
}
int64_t partition_last_stable_offset(const struct partition *p)
{
    /* Kafka UnifiedLog.lastStableOffset: the first unstable offset (the earliest open
     * transaction, which every replica's storage tracks from the batches it holds) when below
     * the high watermark */
    int64_t first = storage_log_first_unstable_offset(p->log);
    return first >= 0 && first < p->hw ? first : p->hw;
}
int64_t partition_log_end_offset(const struct partition *p)
{
    return storage_log_end_offset(p->log);
}
int64_t partition_log_start_offset(const struct partition *p)
{
    return storage_log_start_offset(p->log);
}
int64_t partition_durable_offset(const struct partition *p)
{
    return storage_log_flushed_offset(p->log);
}
bool partition_is_leader(const struct partition *p)
{
    return raft_role(p->raft) == RAFT_LEADER;
}

bool partition_hw_known(struct partition *p)
{
    if (raft_role(p->raft) != RAFT_LEADER)
        return false;
    uint64_t term = raft_term(p->raft);
    if (p->hw_known_term == term)
        return true;
    int64_t commit = raft_commit(p->raft);
    uint64_t t = 0;
    if (commit < 0 || raft_log_term(p->raft, commit, &t) != 0 || t != term)
        return false;
    p->hw_known_term = term;
    return true;
}

/* Followers grant no vote and start no election within (election_ticks - 1) ticks of hearing
 * from a leader (raft's check-quorum lease, also right after a restart); half of that leaves
 * the other half for the answer's way back and late ticks. */
static int64_t lease_period_ms(const struct partition *p)
{
    return (int64_t)(p->cfg.election_ticks - 1) * p->cfg.tick_ms / 2;
}

bool partition_lease_coming(const struct partition *p, int64_t now_ms)
{
    return !p->lone && !p->failed && raft_role(p->raft) == RAFT_LEADER &&
           !raft_transferring(p->raft) && now_ms >= p->lease_woken_ms &&
           now_ms - p->lease_woken_ms < lease_period_ms(p);
}

bool partition_lease_valid(struct partition *p, int64_t now_ms)
{
    if (raft_role(p->raft) != RAFT_LEADER || raft_transferring(p->raft))
        return false;
    if (p->lone)
        return true;
    /* Readers keep the group awake: a quiescent leader's lease is only what its last
     * heartbeats' answers gave it (consensus/README.md, "Quiescence"). */
    if (now_ms > p->lease_asked_ms)
        p->lease_asked_ms = now_ms;
    if (raft_quiescent(p->raft)) {
        p->lease_woken_ms = now_ms;
        (void)partition_wake(p);
    }
    if (p->heard_term != raft_term(p->raft))
        return false;
    int64_t lease_ms = lease_period_ms(p);
    const struct raft_conf *c = raft_conf(p->raft);
    uint32_t live = 0;
    for (uint32_t v = 0; v < c->n_voters; v++) {
        if (c->voters[v] == p->cfg.node_id) {
            live++;
            continue;
        }
        for (uint32_t i = 0; i < RAFT_NODES_MAX; i++)
            if (p->heard_id[i] == c->voters[v]) {
                if (now_ms - p->heard_ms[i] < lease_ms)
                    live++;
                break;
            }
    }
    return live > c->n_voters / 2;
}

bool partition_transferring(const struct partition *p)
{
    return raft_transferring(p->raft);
}
uint32_t partition_leader(const struct partition *p)
{
    return raft_leader(p->raft);
}
int32_t partition_leader_epoch(const struct partition *p)
{
    return (int32_t)raft_term(p->raft);
}
int partition_failed(const struct partition *p)
{
    return p->failed;
}
struct storage_log *partition_storage(struct partition *p)
{
    return p->log;
}
struct raft_storage_log *partition_raft_log(struct partition *p)
{
    return &p->rlog;
}
struct raft *partition_raft(struct partition *p)
{
    return p->raft;
}
