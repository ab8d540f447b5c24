/* Deterministic simulation of Raft groups (DESIGN.md §8).
 *
 * Many nodes in one process; virtual time; one event heap ordered by (deadline, id). The network
 * delays, drops, duplicates and reorders messages and can be partitioned (symmetric, asymmetric,
 * bridge). Nodes crash and lose every write not yet completed by their disk; they restart from
 * what is durable. Disks can be slow or stall. Log reads can fail: for a while a node's reads
 * (raft's through raft_log_ops, and the shell's when it resolves APP descriptors) return LM_E_IO
 * at random; raft must answer with error codes and retries, never an abort. Clients propose
 * throughout; leadership transfers, single-server membership changes and log-start moves
 * (compaction) happen at random.
 *
 * Each node has a durable log (what raft reads and a restart finds) and a written log (every
 * ready lands there at once, like the page cache; the shell resolves APP descriptors against it
 * and it is rebuilt from the durable log after a crash).
 *
 * After every step the Raft safety properties are checked (Raft §5.2-§5.4, Figure 3):
 *   election safety      at most one leader per term
 *   log matching         two durable logs with an entry of the same (offset, term) agree on it and
 *                        on everything before (checked incrementally: every written batch's
 *                        (last offset, term) maps to one (first offset, data, previous term))
 *   leader completeness  a new leader holds the highest committed entry
 *   state machine safety every applied entry equals the committed one at its offset; state
 *                        machine digests agree at every offset (snapshots included)
 *   committed never lost a committed offset never changes term
 *   commit monotonic     a node's commit index never goes back during one life
 * Liveness: after the faults stop (network healed, every node up, disks normal), a leader is
 * elected and a fresh proposal commits on every member within a bounded number of ticks.
 *
 * Every run is fixed by its seed. A failure prints the seed and the command that replays it.
 *
 *   sim_raft --seeds N [--start S] [--nodes 3|5|0(mixed)]   run seeds S..S+N-1
 *   sim_raft --seed S [--nodes K] [--verbose]                 replay one seed
 *   sim_raft --measure-election N                             election time after leader loss
 *   sim_raft --measure-throughput                             msgs per entry, entries per second
 * SIM_RAFT_SEEDS in the environment overrides --seeds (long mode). */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "consensus/raft.h"
#include "consensus/raft_memlog.h"

#define SLOTS_MAX      8
#define TICK_US        100
#define FAULT_TICKS    300
#define LIVENESS_TICKS 400

/* ---------- time spent inside raft (--measure-throughput) ---------- */

static bool timing;
static uint64_t raft_ns;

static uint64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* RAFT(call) evaluates a call into the raft core, adding its wall time to raft_ns when
 * measuring, so the core's cost is told apart from the simulated shell's. */
#define RAFT(call)                                                                                 \
    __extension__({                                                                                \
        uint64_t t0_ = timing ? mono_ns() : 0;                                                     \
        __typeof__(call) r_ = (call);                                                              \
        if (timing)                                                                                \
            raft_ns += mono_ns() - t0_;                                                            \
        r_;                                                                                        \
    })
#define RAFT_VOID(call)                                                                            \
    do {                                                                                           \
        uint64_t t0_ = timing ? mono_ns() : 0;                                                     \
        call;                                                                                      \
        if (timing)                                                                                \
            raft_ns += mono_ns() - t0_;                                                            \
    } while (0)

/* ---------- deterministic PRNG ---------- */

static uint64_t rnd_state;
static uint64_t rnd(void)
{
    uint64_t z = (rnd_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t rnd_below(uint64_t n)
{
    return n ? rnd() % n : 0;
}
static bool chance(double p)
{
    return (double)(rnd() >> 11) / 9007199254740992.0 < p;
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

static uint64_t digest_bytes(const uint8_t *p, uint32_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (uint32_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static uint64_t entry_digest(const struct raft_entry *e)
{
    return mix(
        mix(mix(digest_bytes(e->data, e->len), (uint64_t)e->first_index), (uint64_t)e->last_index),
        e->term * 8 + e->type);
}

/* ---------- events ---------- */

enum ev_type { EV_TICK = 1, EV_MSG, EV_DISK, EV_FAULT, EV_CLIENT };

struct event {
    uint64_t at, id;
    uint8_t type;
    uint32_t node;
    uint64_t life;
    struct raft_msg *msg;
};

struct disk_op {
    uint64_t persist_id;
    struct raft_ready rd; /* deep copies of start/entries */
    struct raft_entry *entries;
    struct disk_op *next;
};

struct node {
    uint32_t id;
    bool up;
    uint64_t life;
    struct raft *r;
    struct raft_memlog disk;  /* durable */
    struct raft_memlog cache; /* written, not necessarily durable */
    uint64_t read_fail_until; /* log reads fail at random until then */
    double read_fail_p;
    struct disk_op *ops_head, *ops_tail;
    uint64_t disk_busy_until; /* FIFO disk */
    uint64_t disk_slow_until, disk_stall_until;
    int64_t applied;
    uint64_t sm; /* state machine digest */
    int64_t last_commit;
    int64_t truth_upto;
    enum raft_role role_seen;
};

struct truth {
    uint64_t term;
    uint64_t commit_term; /* lowest term of a node seen holding it committed */
    uint64_t sm;          /* state machine digest after applying the batch ending here */
    uint64_t data;
    uint8_t set, sm_set, data_set;
};

struct lm_rec {
    int64_t last;
    uint64_t term;
    int64_t first;
    uint64_t prev_term, digest;
    bool used;
};

struct stats {
    uint64_t msgs_sent, msgs_dropped, entries_committed, proposals, elections;
    uint64_t crashes, restarts, partitions, transfers, conf_changes, compactions, installs;
    uint64_t steps;
    uint64_t read_faults, read_errors, unsent, boot_failures;
    uint64_t by_type[RAFT_MSG_TYPE_MAX];
    uint64_t app_entries;
};

struct sim {
    uint64_t seed;
    uint32_t n_voters, n_slots;
    bool verbose, failed;
    uint64_t now, next_ev_id;
    struct event *heap;
    size_t n_heap, cap_heap;
    struct node nodes[SLOTS_MAX + 1];
    bool blocked[SLOTS_MAX + 1][SLOTS_MAX + 1];
    uint64_t link_last[SLOTS_MAX + 1][SLOTS_MAX + 1]; /* FIFO delivery time per link */
    double p_drop, p_dup, p_slow;
    bool faults_on;
    bool checking; /* the checker reads logs: no faults on its reads */
    struct truth *truth;
    size_t cap_truth;
    int64_t truth_max;
    uint32_t *leader_of_term;
    size_t cap_lot;
    struct lm_rec *lm;
    size_t cap_lm, n_lm;
    uint64_t next_payload;
    struct stats st;
    /* election measurement */
    bool measure_mode;
};

static struct sim *S;

static void violation(const char *fmt, ...)
{
    if (S->failed)
        return;
    S->failed = true;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "VIOLATION seed=%" PRIu64 " nodes=%u t=%" PRIu64 ": ", S->seed, S->n_voters,
            S->now);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  replay: tests/sim/raft/sim_raft --seed %" PRIu64 " --nodes %u --verbose\n",
            S->seed, S->n_voters);
}

static void vlog(const char *fmt, ...)
{
    if (!S->verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    printf("%8" PRIu64 " ", S->now);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

static void heap_push(struct event ev)
{
    if (S->n_heap == S->cap_heap) {
        S->cap_heap = S->cap_heap ? S->cap_heap * 2 : 1024;
        S->heap = realloc(S->heap, S->cap_heap * sizeof(*S->heap));
        LM_ASSERT(S->heap != NULL);
    }
    ev.id = S->next_ev_id++;
    size_t i = S->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        struct event *pe = &S->heap[p];
        if (pe->at < ev.at || (pe->at == ev.at && pe->id < ev.id))
            break;
        S->heap[i] = *pe;
        i = p;
    }
    S->heap[i] = ev;
}

static bool ev_less(const struct event *a, const struct event *b)
{
    return a->at < b->at || (a->at == b->at && a->id < b->id);
}

static struct event heap_pop(void)
{
    LM_ASSERT(S->n_heap > 0);
    struct event top = S->heap[0];
    struct event last = S->heap[--S->n_heap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct event *cur = (m == i) ? &last : &S->heap[m];
        if (l < S->n_heap && ev_less(&S->heap[l], cur)) {
            m = l;
            cur = &S->heap[l];
        }
        if (r < S->n_heap && ev_less(&S->heap[r], cur))
            m = r;
        if (m == i)
            break;
        S->heap[i] = S->heap[m];
        i = m;
    }
    if (S->n_heap)
        S->heap[i] = last;
    return top;
}

/* ---------- truth tables ---------- */

static struct truth *truth_at(int64_t idx)
{
    LM_ASSERT(idx >= 0);
    if ((size_t)idx >= S->cap_truth) {
        size_t cap = S->cap_truth ? S->cap_truth : 1024;
        while (cap <= (size_t)idx)
            cap *= 2;
        S->truth = realloc(S->truth, cap * sizeof(*S->truth));
        LM_ASSERT(S->truth != NULL);
        memset(S->truth + S->cap_truth, 0, (cap - S->cap_truth) * sizeof(*S->truth));
        S->cap_truth = cap;
    }
    return &S->truth[idx];
}

static void note_leader(uint32_t id, uint64_t term)
{
    if (term >= S->cap_lot) {
        size_t cap = S->cap_lot ? S->cap_lot : 64;
        while (cap <= term)
            cap *= 2;
        S->leader_of_term = realloc(S->leader_of_term, cap * sizeof(uint32_t));
        LM_ASSERT(S->leader_of_term != NULL);
        memset(S->leader_of_term + S->cap_lot, 0, (cap - S->cap_lot) * sizeof(uint32_t));
        S->cap_lot = cap;
    }
    if (S->leader_of_term[term] && S->leader_of_term[term] != id)
        violation("election safety: term %" PRIu64 " has leaders %u and %u", term,
                  S->leader_of_term[term], id);
    S->leader_of_term[term] = id;
}

/* Log matching record for a durable batch: (last, term) -> (first, data, prev term). */
static void lm_check(int64_t last, uint64_t term, int64_t first, uint64_t prev_term,
                     uint64_t digest)
{
    if (S->n_lm * 2 >= S->cap_lm) {
        size_t cap = S->cap_lm ? S->cap_lm * 2 : 4096;
        struct lm_rec *t = calloc(cap, sizeof(*t));
        LM_ASSERT(t != NULL);
        for (size_t i = 0; i < S->cap_lm; i++) {
            if (!S->lm[i].used)
                continue;
            size_t h = mix((uint64_t)S->lm[i].last, S->lm[i].term) & (cap - 1);
            while (t[h].used)
                h = (h + 1) & (cap - 1);
            t[h] = S->lm[i];
        }
        free(S->lm);
        S->lm = t;
        S->cap_lm = cap;
    }
    size_t h = mix((uint64_t)last, term) & (S->cap_lm - 1);
    while (S->lm[h].used) {
        struct lm_rec *e = &S->lm[h];
        if (e->last == last && e->term == term) {
            if (e->first != first || e->prev_term != prev_term || e->digest != digest)
                violation("log matching: batch (%" PRId64 ", term %" PRIu64
                          ") differs between logs",
                          last, term);
            return;
        }
        h = (h + 1) & (S->cap_lm - 1);
    }
    S->lm[h] = (struct lm_rec){last, term, first, prev_term, digest, true};
    S->n_lm++;
}

/* ---------- network ---------- */

static uint32_t trace_node;
static bool no_liveness; /* debugging: report safety only */

static void cache_ops(struct node *n, struct raft_log_ops *ops);

/* The shell sends m: an APP descriptor is resolved against n's written log first; one that no
 * longer resolves is reported to raft and not sent. */
static void net_send(struct node *n, const struct raft_msg *desc)
{
    struct raft_log_ops ops;
    cache_ops(n, &ops);
    struct raft_msg wire;
    int rc = raft_msg_resolve(&wire, desc, &ops);
    if (rc) {
        LM_ASSERT(desc->type == RAFT_MSG_APP);
        S->st.unsent++;
        vlog("n%u App to n%u (%" PRId64 ", %" PRId64 "] unsent: %s", n->id, desc->to, desc->index,
             desc->ent_last, lm_errname(rc));
        rc = RAFT(raft_append_unsent(n->r, desc, rc));
        LM_ASSERT(rc == 0);
        return;
    }
    const struct raft_msg *m = &wire;
    S->st.msgs_sent++;
    S->st.by_type[m->type < RAFT_MSG_TYPE_MAX ? m->type : 0]++;
    if (m->type == RAFT_MSG_APP)
        S->st.app_entries += m->n_entries;
    if (trace_node && (m->from == trace_node || m->to == trace_node))
        printf("%8" PRIu64 " n%u->n%u %s term %" PRIu64 " index %" PRId64 " logterm %" PRIu64
               " commit %" PRId64 " n %u%s hint %" PRId64 "/%" PRIu64 "\n",
               S->now, m->from, m->to, raft_msg_type_name(m->type), m->term, m->index, m->log_term,
               m->commit, m->n_entries, m->reject ? " REJECT" : "", m->hint_index, m->hint_term);
    uint32_t f = m->from, t = m->to;
    if (t == 0 || t > S->n_slots) {
        S->st.msgs_dropped++;
        raft_msg_deinit(&wire);
        return;
    }
    if (S->blocked[f][t] || (S->faults_on && chance(S->p_drop))) {
        S->st.msgs_dropped++;
        raft_msg_deinit(&wire);
        return;
    }
    int copies = (S->faults_on && chance(S->p_dup)) ? 2 : 1;
    for (int c = 0; c < copies; c++) {
        struct raft_msg *cp = malloc(sizeof(*cp));
        LM_ASSERT(cp != NULL);
        int rc = raft_msg_copy(cp, m);
        LM_ASSERT(rc == 0);
        /* A link is FIFO (like a TCP connection) unless the fault injector picks this
         * message to be held back and overtaken: that is the reordering fault. */
        uint64_t at = S->now + 5 + rnd_below(40);
        if (S->faults_on && chance(S->p_slow)) {
            at += 100 + rnd_below(600);
        } else {
            if (at <= S->link_last[f][t])
                at = S->link_last[f][t] + 1;
            S->link_last[f][t] = at;
        }
        heap_push((struct event){.at = at, .type = EV_MSG, .node = t, .msg = cp});
    }
    raft_msg_deinit(&wire);
}

/* ---------- nodes ---------- */

static struct raft_config node_config(uint32_t id)
{
    return (struct raft_config){.id = id,
                                .group = 1,
                                .election_ticks = 10,
                                .heartbeat_ticks = 2,
                                .max_inflight = 8,
                                .max_msg_entries = 16,
                                .max_apply_entries = 64,
                                .pre_vote = true,
                                .check_quorum = true,
                                .rand_seed =
                                    S->seed * 1000003 + id * 7919 + S->nodes[id].life * 104729,
                                .applied = -1};
}

/* The read fault: LM_E_IO at random while the node's fault window is open. */
static int read_fault(struct node *n)
{
    if (!S->faults_on || S->checking || n->read_fail_until <= S->now)
        return 0;
    return chance(n->read_fail_p) ? LM_E_IO : 0;
}

/* Raft's reads of the durable log, through the fault. */
static void op_start(void *ctx, struct raft_log_start *out)
{
    struct node *n = ctx;
    *out = n->disk.start;
}

static int64_t op_last(void *ctx)
{
    struct node *n = ctx;
    return raft_memlog_last(&n->disk);
}

static int op_entry_at(void *ctx, int64_t index, struct raft_entry *out)
{
    struct node *n = ctx;
    int rc = read_fault(n);
    if (rc)
        return rc;
    const struct raft_entry *e = raft_memlog_find(&n->disk, index);
    if (!e)
        return LM_E_NOT_FOUND;
    *out = *e;
    return 0;
}

/* The shell's reads of the written log (resolving descriptors), through the same fault. */
static void op_cache_start(void *ctx, struct raft_log_start *out)
{
    struct node *n = ctx;
    *out = n->cache.start;
}

static int64_t op_cache_last(void *ctx)
{
    struct node *n = ctx;
    return raft_memlog_last(&n->cache);
}

static int op_cache_entry_at(void *ctx, int64_t index, struct raft_entry *out)
{
    struct node *n = ctx;
    int rc = read_fault(n);
    if (rc)
        return rc;
    const struct raft_entry *e = raft_memlog_find(&n->cache, index);
    if (!e)
        return LM_E_NOT_FOUND;
    *out = *e;
    return 0;
}

static void cache_ops(struct node *n, struct raft_log_ops *ops)
{
    *ops = (struct raft_log_ops){.ctx = n,
                                 .start = op_cache_start,
                                 .last_index = op_cache_last,
                                 .entry_at = op_cache_entry_at};
}

/* Returns false when raft_new could not read the log (the node stays down; a later restart, or
 * the heal, tries again). */
static bool node_boot(struct node *n)
{
    struct raft_log_ops ops = {
        .ctx = n, .start = op_start, .last_index = op_last, .entry_at = op_entry_at};
    struct raft_config cfg = node_config(n->id);
    n->r = raft_new(&cfg, &ops, n->disk.has_hs ? &n->disk.hs : NULL);
    if (!n->r) {
        LM_ASSERT(S->faults_on && n->read_fail_until > S->now); /* only a read fault explains it */
        S->st.boot_failures++;
        vlog("n%u restart failed: log unreadable", n->id);
        return false;
    }
    n->up = true;
    /* The state machine is volatile: restore it from the log start, then replay. */
    n->applied = n->disk.start.index;
    n->sm = 0;
    if (n->disk.start.payload_len == sizeof(uint64_t))
        memcpy(&n->sm, n->disk.start.payload, sizeof(uint64_t));
    n->last_commit = raft_commit(n->r);
    n->truth_upto = n->disk.start.index;
    n->role_seen = RAFT_FOLLOWER;
    heap_push((struct event){
        .at = S->now + 1 + rnd_below(TICK_US), .type = EV_TICK, .node = n->id, .life = n->life});
    return true;
}

static void free_ops(struct node *n)
{
    while (n->ops_head) {
        struct disk_op *op = n->ops_head;
        n->ops_head = op->next;
        for (size_t i = 0; i < op->rd.n_entries; i++)
            free(op->entries[i].data);
        free(op->entries);
        free(op->rd.start.payload);
        free(op);
    }
    n->ops_tail = NULL;
}

static void node_crash(struct node *n)
{
    vlog("n%u crash", n->id);
    raft_free(n->r);
    n->r = NULL;
    n->up = false;
    n->life++;
    free_ops(n); /* everything not yet durable is lost */
    int rc = raft_memlog_copy(&n->cache, &n->disk);
    LM_ASSERT(rc == 0);
    n->disk_busy_until = 0;
    S->st.crashes++;
}

static void check_sm_at(int64_t idx, uint64_t sm, uint32_t who)
{
    struct truth *t = truth_at(idx);
    if (t->sm_set && t->sm != sm)
        violation("state machine safety: n%u digest at %" PRId64 " differs", who, idx);
    t->sm = sm;
    t->sm_set = 1;
}

static void schedule_disk(struct node *n)
{
    uint64_t lat = 2 + rnd_below(chance(0.2) ? 150 : 20);
    if (n->disk_slow_until > S->now)
        lat += 200 + rnd_below(1500);
    uint64_t at = S->now + lat;
    if (at <= n->disk_busy_until)
        at = n->disk_busy_until + 1;
    n->disk_busy_until = at;
    heap_push((struct event){.at = at, .type = EV_DISK, .node = n->id, .life = n->life});
}

/* Incremental invariant checks on one node after it changed. */
static void check_node_reads(struct node *n);
static void check_node(struct node *n)
{
    bool was = S->checking;
    S->checking = true;
    check_node_reads(n);
    S->checking = was;
}

static void check_node_reads(struct node *n)
{
    struct raft *r = n->r;
    int64_t c = raft_commit(r);
    if (c < n->last_commit)
        violation("commit monotonic: n%u commit %" PRId64 " < %" PRId64, n->id, c, n->last_commit);
    n->last_commit = c;
    /* Offsets up to commit in this node's log are committed: record or compare. */
    for (int64_t i = n->truth_upto + 1; i <= c; i++) {
        uint64_t term;
        if (raft_log_term(r, i, &term) != 0)
            continue; /* below the log start */
        struct truth *t = truth_at(i);
        if (t->set && t->term != term)
            violation("committed entry lost: offset %" PRId64 " term %" PRIu64 " became %" PRIu64
                      " on n%u",
                      i, t->term, term, n->id);
        uint64_t ct = raft_term(r);
        if (!t->set || ct < t->commit_term)
            t->commit_term = ct;
        t->term = term;
        t->set = 1;
        if (i > S->truth_max)
            S->truth_max = i;
    }
    if (c > n->truth_upto)
        n->truth_upto = c;
    enum raft_role role = raft_role(r);
    if (role == RAFT_LEADER) {
        note_leader(n->id, raft_term(r));
        if (n->role_seen != RAFT_LEADER) {
            S->st.elections++;
            vlog("n%u leader term %" PRIu64 " last %" PRId64, n->id, raft_term(r),
                 raft_last_index(r));
            /* Leader completeness (§5.4.1): a leader of term T holds every entry committed in
             * a term below T. (A late leader of an older term may lack newer commits.) The
             * commit term recorded is the lowest term of any node seen holding the entry
             * committed, which is the committing leader's term: followers learn commits from
             * it. It is enough to check the highest such offset: log matching covers the rest. */
            int64_t m = S->truth_max;
            while (m >= 0 && (!truth_at(m)->set || truth_at(m)->commit_term >= raft_term(r)))
                m--;
            if (m >= 0) {
                uint64_t term;
                struct truth *t = truth_at(m);
                int rc = raft_log_term(r, m, &term);
                if (rc == LM_E_NOT_FOUND || (rc == 0 && term != t->term))
                    violation("leader completeness: n%u leader of term %" PRIu64
                              " lacks offset %" PRId64 " committed in term %" PRIu64,
                              n->id, raft_term(r), m, t->commit_term);
            }
        }
    }
    n->role_seen = role;
}

static void apply_entry(struct node *n, const struct raft_entry *e)
{
    if (e->first_index != n->applied + 1)
        violation("n%u applies %" PRId64 " after %" PRId64, n->id, e->first_index, n->applied);
    struct truth *t = truth_at(e->last_index);
    if (!t->set || t->term != e->term)
        violation("state machine safety: n%u applies offset %" PRId64 " term %" PRIu64
                  " not the committed one",
                  n->id, e->last_index, e->term);
    uint64_t d = entry_digest(e);
    if (t->data_set && t->data != d)
        violation("state machine safety: n%u applies different data at %" PRId64, n->id,
                  e->last_index);
    t->data = d;
    t->data_set = 1;
    n->sm = mix(n->sm, d);
    n->applied = e->last_index;
    check_sm_at(e->last_index, n->sm, n->id);
    S->st.entries_committed++;
}

/* An error from raft is only acceptable as the echo of an injected read fault. */
static void note_raft_err(struct node *n, const char *what, int rc)
{
    if (rc == LM_E_IO && S->faults_on && n->read_fail_until > S->now) {
        S->st.read_errors++;
        return;
    }
    violation("n%u %s: unexpected %s", n->id, what, lm_errname(rc));
}

static void process(struct node *n)
{
    if (!n->up)
        return;
    for (int guard = 0; RAFT(raft_has_ready(n->r)); guard++) {
        LM_ASSERT(guard < 100000);
        check_node(n);
        struct raft_ready rd;
        RAFT_VOID(raft_ready(n->r, &rd));
        if (trace_node == n->id)
            printf("%8" PRIu64 " n%u ready persist %" PRIu64 " entries %zu msgs %zu hs %d\n",
                   S->now, n->id, rd.persist_id, rd.n_entries, rd.n_msgs, rd.hs_changed);
        if (rd.persist_id) {
            struct disk_op *op = calloc(1, sizeof(*op));
            LM_ASSERT(op != NULL);
            op->persist_id = rd.persist_id;
            op->rd = rd;
            op->rd.msgs = NULL;
            op->rd.n_msgs = 0;
            op->rd.committed = NULL;
            op->rd.n_committed = 0;
            op->rd.start.payload = NULL;
            if (rd.start_changed && rd.start.payload_len) {
                op->rd.start.payload = malloc(rd.start.payload_len);
                memcpy(op->rd.start.payload, rd.start.payload, rd.start.payload_len);
            }
            if (rd.n_entries) {
                op->entries = calloc(rd.n_entries, sizeof(*op->entries));
                for (size_t i = 0; i < rd.n_entries; i++) {
                    op->entries[i] = rd.entries[i];
                    op->entries[i].data = NULL;
                    if (rd.entries[i].len) {
                        op->entries[i].data = malloc(rd.entries[i].len);
                        memcpy(op->entries[i].data, rd.entries[i].data, rd.entries[i].len);
                    }
                }
            }
            op->rd.entries = op->entries;
            /* Written now (page cache), durable when the disk op completes. */
            int rc = raft_memlog_persist(&n->cache, &rd);
            if (rc)
                violation("n%u written log rejected a ready: %s", n->id, lm_errname(rc));
            if (n->ops_tail)
                n->ops_tail->next = op;
            else
                n->ops_head = op;
            n->ops_tail = op;
            schedule_disk(n);
        }
        for (size_t i = 0; i < rd.n_msgs; i++)
            net_send(n, &rd.msgs[i]);
        if (rd.err)
            note_raft_err(n, "ready", rd.err);
        if (rd.start_changed) {
            /* Restore the state machine from the snapshot (the digest stands for it). */
            uint64_t sm = 0;
            if (rd.start.payload_len == sizeof(sm))
                memcpy(&sm, rd.start.payload, sizeof(sm));
            if (rd.start.index > n->applied) {
                check_sm_at(rd.start.index, sm, n->id);
                n->sm = sm;
                n->applied = rd.start.index;
                S->st.installs++;
            }
        }
        for (size_t i = 0; i < rd.n_committed; i++)
            apply_entry(n, &rd.committed[i]);
        check_node(n);
    }
}

static void disk_complete(struct node *n)
{
    if (n->disk_stall_until > S->now) {
        heap_push((struct event){
            .at = n->disk_stall_until, .type = EV_DISK, .node = n->id, .life = n->life});
        return;
    }
    struct disk_op *op = n->ops_head;
    if (!op)
        return;
    n->ops_head = op->next;
    if (!n->ops_head)
        n->ops_tail = NULL;
    int rc = raft_memlog_persist(&n->disk, &op->rd);
    if (rc)
        violation("n%u storage rejected a ready: %s", n->id, lm_errname(rc));
    /* Log matching: every written batch agrees with every other log's batch of that key. */
    for (size_t i = 0; i < op->rd.n_entries && !S->failed; i++) {
        const struct raft_entry *e = &op->entries[i];
        uint64_t prev_term;
        const struct raft_entry *p = raft_memlog_find(&n->disk, e->first_index - 1);
        prev_term = p ? p->term : n->disk.start.term;
        lm_check(e->last_index, e->term, e->first_index, prev_term, entry_digest(e));
    }
    if (trace_node == n->id)
        printf("%8" PRIu64 " n%u persisted %" PRIu64 "\n", S->now, n->id, op->persist_id);
    rc = RAFT(raft_persisted(n->r, op->persist_id));
    if (rc)
        note_raft_err(n, "persisted", rc);
    for (size_t i = 0; i < op->rd.n_entries; i++)
        free(op->entries[i].data);
    free(op->entries);
    free(op->rd.start.payload);
    free(op);
}

/* ---------- clients and faults ---------- */

static struct node *find_leader(void)
{
    struct node *best = NULL;
    for (uint32_t i = 1; i <= S->n_slots; i++) {
        struct node *n = &S->nodes[i];
        if (n->up && raft_role(n->r) == RAFT_LEADER &&
            (!best || raft_term(n->r) > raft_term(best->r)))
            best = n;
    }
    return best;
}

static int propose_on(struct node *n, int64_t *last)
{
    uint64_t payload = ++S->next_payload;
    uint32_t count = 1 + (uint32_t)rnd_below(4);
    int rc = RAFT(raft_propose(n->r, &payload, sizeof(payload), count, last));
    if (rc == 0)
        S->st.proposals++;
    return rc;
}

static void client_step(void)
{
    /* A client talks to a random node; non-leaders refuse (as NOT_LEADER would). */
    struct node *n = &S->nodes[1 + rnd_below(S->n_slots)];
    if (!n->up)
        return;
    int64_t last;
    if (propose_on(n, &last) == 0)
        process(n);
}

static void heal_network(void)
{
    memset(S->blocked, 0, sizeof(S->blocked));
}

static void fault_step(void)
{
    uint32_t a = 1 + (uint32_t)rnd_below(S->n_slots);
    struct node *na = &S->nodes[a];
    switch (rnd_below(14)) {
    case 0: { /* symmetric partition into two random sides */
        heal_network();
        uint32_t side = (uint32_t)rnd();
        for (uint32_t i = 1; i <= S->n_slots; i++)
            for (uint32_t j = 1; j <= S->n_slots; j++)
                if (((side >> i) & 1) != ((side >> j) & 1))
                    S->blocked[i][j] = true;
        S->st.partitions++;
        vlog("partition mask %x", side);
        break;
    }
    case 1: { /* asymmetric: a can send but not receive, or the reverse */
        heal_network();
        bool in = chance(0.5);
        for (uint32_t j = 1; j <= S->n_slots; j++)
            if (j != a) {
                if (in)
                    S->blocked[j][a] = true;
                else
                    S->blocked[a][j] = true;
            }
        S->st.partitions++;
        vlog("asymmetric n%u %s", a, in ? "deaf" : "mute");
        break;
    }
    case 2: { /* bridge: two sides that only a talks to */
        heal_network();
        for (uint32_t i = 1; i <= S->n_slots; i++)
            for (uint32_t j = 1; j <= S->n_slots; j++)
                if (i != a && j != a && ((i ^ j) & 1))
                    S->blocked[i][j] = true;
        S->st.partitions++;
        vlog("bridge via n%u", a);
        break;
    }
    case 3:
        heal_network();
        vlog("heal");
        break;
    case 4:
        if (na->up)
            node_crash(na);
        break;
    case 5:
    case 6:
        for (uint32_t i = 1; i <= S->n_slots; i++) {
            if (!S->nodes[i].up) {
                vlog("n%u restart", i);
                if (node_boot(&S->nodes[i]))
                    S->st.restarts++;
                break;
            }
        }
        break;
    case 7:
        if (chance(0.5))
            na->disk_slow_until = S->now + (20 + rnd_below(100)) * TICK_US;
        else
            na->disk_stall_until = S->now + (5 + rnd_below(40)) * TICK_US;
        vlog("n%u disk slow/stall", a);
        break;
    case 8:
        S->p_drop = chance(0.5) ? 0 : 0.01 * (double)rnd_below(25);
        S->p_dup = chance(0.5) ? 0 : 0.01 * (double)rnd_below(10);
        S->p_slow = chance(0.5) ? 0.01 : 0.01 * (double)rnd_below(30);
        break;
    case 9: { /* leadership transfer */
        struct node *l = find_leader();
        if (l) {
            const struct raft_conf *c = raft_conf(l->r);
            uint32_t to = c->voters[rnd_below(c->n_voters)];
            if (raft_transfer_leader(l->r, to) == 0) {
                S->st.transfers++;
                vlog("transfer n%u -> n%u", l->id, to);
            }
            process(l);
        }
        break;
    }
    case 10: { /* single-server membership change */
        struct node *l = find_leader();
        if (!l)
            break;
        const struct raft_conf *c = raft_conf(l->r);
        int rc = LM_E_INVALID;
        uint32_t k = (uint32_t)rnd_below(3);
        if (k == 0) {
            for (uint32_t i = 1; i <= S->n_slots && rc != 0; i++)
                if (!raft_conf_is_voter(c, i) && !raft_conf_is_learner(c, i))
                    rc = raft_propose_conf(l->r, RAFT_CONF_ADD_LEARNER, i);
        } else if (k == 1 && c->n_learners) {
            rc = raft_propose_conf(l->r, RAFT_CONF_PROMOTE, c->learners[0]);
        } else if (k == 2 && c->n_voters > 3) {
            rc = raft_propose_conf(l->r, RAFT_CONF_REMOVE, c->voters[rnd_below(c->n_voters)]);
        }
        if (rc == 0) {
            S->st.conf_changes++;
            vlog("conf change %u by n%u", k, l->id);
        }
        process(l);
        break;
    }
    case 11: /* log start moves: retention/DeleteRecords or a snapshot, up to what is applied */
        if (na->up && na->applied > na->disk.start.index &&
            na->applied <= raft_memlog_last(&na->disk)) {
            const struct raft_entry *e = raft_memlog_find(&na->disk, na->applied);
            if (e && e->last_index == na->applied) {
                int rc = raft_memlog_compact(&na->disk, na->applied, &na->sm, sizeof(na->sm));
                LM_ASSERT(rc == 0);
                /* The written log holds the same batches up to commit (>= applied). */
                rc = raft_memlog_compact(&na->cache, na->applied, &na->sm, sizeof(na->sm));
                LM_ASSERT(rc == 0);
                S->st.compactions++;
                vlog("n%u log start -> %" PRId64, a, na->applied);
            }
        }
        break;
    case 12: /* crash a node in the middle of a write: the window persist-before-send guards */
        for (uint32_t k = 0; k < S->n_slots; k++) {
            struct node *c = &S->nodes[1 + (a + k) % S->n_slots];
            if (c->up && c->ops_head) {
                node_crash(c);
                break;
            }
        }
        break;
    case 13: /* log reads fail at random for a while (raft's reads and descriptor resolution) */
        na->read_fail_until = S->now + (5 + rnd_below(60)) * TICK_US;
        na->read_fail_p = 0.05 + 0.01 * (double)rnd_below(60);
        S->st.read_faults++;
        vlog("n%u reads fail (p=%.2f)", a, na->read_fail_p);
        break;
    }
}

/* ---------- main loop ---------- */

static void handle_event(struct event *ev)
{
    S->now = ev->at;
    S->st.steps++;
    struct node *n = ev->node ? &S->nodes[ev->node] : NULL;
    switch (ev->type) {
    case EV_TICK:
        if (!n->up || n->life != ev->life)
            return;
        int rc = RAFT(raft_tick(n->r));
        if (rc)
            note_raft_err(n, "tick", rc);
        process(n);
        heap_push((struct event){
            .at = S->now + TICK_US, .type = EV_TICK, .node = n->id, .life = n->life});
        return;
    case EV_MSG:
        if (n->up) {
            /* Every message in the simulation comes from a correct node: a refusal (say, an
             * append that would overwrite a committed entry) is a bug somewhere. */
            int rc = RAFT(raft_step(n->r, ev->msg));
            if (rc == LM_E_IO)
                note_raft_err(n, "step", rc);
            else if (rc)
                violation("n%u refused %s from n%u: %s", n->id, raft_msg_type_name(ev->msg->type),
                          ev->msg->from, lm_errname(rc));
            process(n);
        }
        raft_msg_deinit(ev->msg);
        free(ev->msg);
        return;
    case EV_DISK:
        if (!n->up || n->life != ev->life)
            return;
        disk_complete(n);
        process(n);
        return;
    case EV_FAULT:
        if (S->faults_on) {
            fault_step();
            heap_push(
                (struct event){.at = S->now + TICK_US * (1 + rnd_below(15)), .type = EV_FAULT});
        }
        return;
    case EV_CLIENT:
        client_step();
        heap_push((struct event){.at = S->now + 20 + rnd_below(TICK_US * 2), .type = EV_CLIENT});
        return;
    }
}

static void sim_init(uint64_t seed, uint32_t voters, uint32_t spares, bool verbose)
{
    S = calloc(1, sizeof(*S));
    S->seed = seed;
    rnd_state = seed * 0x2545F4914F6CDD1Dull + 17;
    S->n_voters = voters;
    S->n_slots = voters + spares;
    LM_ASSERT(S->n_slots <= SLOTS_MAX);
    S->verbose = verbose;
    S->truth_max = -1;
    struct raft_conf conf = {0};
    for (uint32_t i = 1; i <= voters; i++)
        conf.voters[conf.n_voters++] = i;
    struct raft_conf empty = {0};
    for (uint32_t i = 1; i <= S->n_slots; i++) {
        struct node *n = &S->nodes[i];
        n->id = i;
        raft_memlog_init(&n->disk, i <= voters ? &conf : &empty);
        raft_memlog_init(&n->cache, i <= voters ? &conf : &empty);
        bool up = node_boot(n);
        LM_ASSERT(up);
    }
}

static void sim_free(void)
{
    for (uint32_t i = 1; i <= S->n_slots; i++) {
        struct node *n = &S->nodes[i];
        if (n->r)
            raft_free(n->r);
        free_ops(n);
        raft_memlog_deinit(&n->disk);
        raft_memlog_deinit(&n->cache);
    }
    for (size_t i = 0; i < S->n_heap; i++) {
        if (S->heap[i].msg) {
            raft_msg_deinit(S->heap[i].msg);
            free(S->heap[i].msg);
        }
    }
    free(S->heap);
    free(S->truth);
    free(S->leader_of_term);
    free(S->lm);
    free(S);
    S = NULL;
}

static void run_until(uint64_t t_end, bool (*done)(void))
{
    while (!S->failed && S->n_heap && S->heap[0].at <= t_end) {
        struct event ev = heap_pop();
        handle_event(&ev);
        if (done && done())
            return;
    }
}

/* Liveness: a leader, a marker of its term committed and applied on every member. */
static int64_t marker_idx = -1;
static uint64_t marker_term;
static bool live_done(void)
{
    struct node *l = find_leader();
    if (!l)
        return false;
    if (marker_idx < 0 || marker_term != raft_term(l->r)) {
        if (propose_on(l, &marker_idx) != 0)
            return false;
        marker_term = raft_term(l->r);
        process(l);
        return false;
    }
    if (raft_commit(l->r) < marker_idx)
        return false;
    const struct raft_conf *c = raft_conf(l->r);
    for (uint32_t i = 0; i < c->n_voters + c->n_learners; i++) {
        uint32_t id = i < c->n_voters ? c->voters[i] : c->learners[i - c->n_voters];
        struct node *n = &S->nodes[id];
        if (!n->up || n->applied < marker_idx)
            return false;
    }
    return true;
}

static int run_seed(uint64_t seed, uint32_t voters, bool verbose, struct stats *acc)
{
    sim_init(seed, voters, 2, verbose);
    S->faults_on = true;
    S->p_drop = 0.02;
    S->p_dup = 0.02;
    S->p_slow = 0.05;
    heap_push((struct event){.at = TICK_US * 5, .type = EV_FAULT});
    heap_push((struct event){.at = 50, .type = EV_CLIENT});
    run_until(FAULT_TICKS * TICK_US, NULL);
    /* Heal: network whole, every node up, disks normal, no more drops. */
    S->faults_on = false;
    heal_network();
    for (uint32_t i = 1; i <= S->n_slots; i++) {
        struct node *n = &S->nodes[i];
        n->disk_slow_until = n->disk_stall_until = 0;
        n->read_fail_until = 0;
        if (!n->up) {
            bool up = node_boot(n);
            LM_ASSERT(up);
        }
    }
    uint64_t healed = S->now;
    marker_idx = -1;
    marker_term = 0;
    run_until(healed + LIVENESS_TICKS * TICK_US, live_done);
    if (!S->failed && !live_done() && !no_liveness) {
        for (uint32_t i = 1; i <= S->n_slots; i++) {
            struct node *n = &S->nodes[i];
            const struct raft_conf *c = raft_conf(n->r);
            fprintf(stderr,
                    "  n%u %s term %" PRIu64 " leader %u commit %" PRId64 " applied %" PRId64
                    " last %" PRId64 " start %" PRId64 " voters",
                    i, raft_role_name(raft_role(n->r)), raft_term(n->r), raft_leader(n->r),
                    raft_commit(n->r), n->applied, raft_last_index(n->r), n->disk.start.index);
            for (uint32_t k = 0; k < c->n_voters; k++)
                fprintf(stderr, " %u", c->voters[k]);
            fprintf(stderr, " learners");
            for (uint32_t k = 0; k < c->n_learners; k++)
                fprintf(stderr, " %u", c->learners[k]);
            fprintf(stderr, "\n");
            const struct raft_progress *pr;
            for (uint32_t k = 1; k <= S->n_slots; k++)
                if ((pr = raft_progress(n->r, k)) != NULL)
                    fprintf(stderr,
                            "    pr n%u match %" PRId64 " next %" PRId64
                            " state %u probe_sent %d inflight %u\n",
                            k, pr->match, pr->next, pr->state, pr->probe_sent, pr->inflight_count);
        }
        violation("liveness: no commit on every member within %d ticks after healing",
                  LIVENESS_TICKS);
    }
    int failed = S->failed;
    if (acc) {
        acc->msgs_sent += S->st.msgs_sent;
        acc->entries_committed += S->st.entries_committed;
        acc->proposals += S->st.proposals;
        acc->elections += S->st.elections;
        acc->crashes += S->st.crashes;
        acc->partitions += S->st.partitions;
        acc->transfers += S->st.transfers;
        acc->conf_changes += S->st.conf_changes;
        acc->compactions += S->st.compactions;
        acc->installs += S->st.installs;
        acc->steps += S->st.steps;
        acc->read_faults += S->st.read_faults;
        acc->read_errors += S->st.read_errors;
        acc->unsent += S->st.unsent;
        acc->boot_failures += S->st.boot_failures;
    }
    sim_free();
    return failed;
}

/* ---------- measurements ---------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static bool has_leader(void)
{
    return find_leader() != NULL;
}

/* Election time after leader loss: crash a stable leader, count ticks to the next leader. */
static void measure_election(uint32_t runs)
{
    for (uint32_t voters = 3; voters <= 5; voters += 2) {
        uint64_t *ticks = calloc(runs, sizeof(uint64_t));
        uint32_t n = 0;
        for (uint32_t s = 0; s < runs; s++) {
            sim_init(1000000 + s, voters, 0, false);
            heap_push((struct event){.at = 50, .type = EV_CLIENT});
            run_until(60 * TICK_US, NULL);
            struct node *l = find_leader();
            if (l) {
                node_crash(l);
                uint64_t t0 = S->now;
                run_until(t0 + 200 * TICK_US, has_leader);
                if (find_leader())
                    ticks[n++] = (S->now - t0 + TICK_US - 1) / TICK_US;
            }
            sim_free();
        }
        qsort(ticks, n, sizeof(uint64_t), cmp_u64);
        printf(
            "election after leader loss, %u voters: runs=%u median=%" PRIu64 " ticks p99=%" PRIu64
            " ticks max=%" PRIu64 " (election timeout 10..19 ticks, pre-vote + check-quorum on)\n",
            voters, n, n ? ticks[n / 2] : 0, n ? ticks[(n * 99) / 100] : 0, n ? ticks[n - 1] : 0);
        free(ticks);
    }
}

static bool never(void)
{
    return false;
}

/* One closed-loop run (seed 42, no faults); returns wall seconds, and with `timed` the seconds
 * spent inside raft calls in *in_raft. The run is deterministic, so a timed and an untimed run
 * do the same work. */
static double throughput_run(uint32_t voters, bool timed, double *in_raft, uint64_t *ent,
                             uint64_t *msgs)
{
    sim_init(42, voters, 0, false);
    run_until(40 * TICK_US, has_leader);
    uint64_t msgs0 = S->st.msgs_sent, ent0 = S->st.entries_committed;
    timing = timed;
    raft_ns = 0;
    uint64_t a = mono_ns();
    uint64_t t_end = S->now + 2000 * TICK_US;
    /* Closed loop: keep up to 256 proposals outstanding at the leader each step. */
    while (!S->failed && S->now < t_end) {
        struct node *l = find_leader();
        if (l) {
            for (int k = 0; k < 32 && raft_last_index(l->r) - raft_commit(l->r) < 256; k++) {
                int64_t last;
                uint64_t payload = ++S->next_payload;
                if (RAFT(raft_propose(l->r, &payload, sizeof(payload), 1, &last)) != 0)
                    break;
            }
            process(l);
        }
        uint64_t stop = S->now + 10;
        run_until(stop, never);
        if (S->now < stop)
            S->now = stop;
    }
    double secs = (double)(mono_ns() - a) / 1e9;
    timing = false;
    *in_raft = (double)raft_ns / 1e9;
    *ent = S->st.entries_committed - ent0;
    *msgs = S->st.msgs_sent - msgs0;
    return secs;
}

static void measure_throughput(void)
{
    for (uint32_t voters = 3; voters <= 5; voters += 2) {
        double in_raft = 0, unused;
        uint64_t ent, msgs;
        double secs = throughput_run(voters, false, &unused, &ent, &msgs);
        uint64_t per_node = ent / voters;
        printf("throughput, %u voters, no faults: committed entries=%" PRIu64 " messages=%" PRIu64
               " messages/entry=%.2f entries/s (in-process, all nodes "
               "simulated on one core)=%.0f%s\n",
               voters, per_node, msgs, per_node ? (double)msgs / (double)per_node : 0.0,
               secs > 0 ? (double)per_node / secs : 0.0, S->failed ? " FAILED" : "");
        printf("  by type:");
        for (uint32_t k = 1; k < RAFT_MSG_TYPE_MAX; k++)
            if (S->st.by_type[k])
                printf(" %s=%" PRIu64, raft_msg_type_name((uint8_t)k), S->st.by_type[k]);
        printf("; entries per App=%.2f\n",
               S->st.by_type[RAFT_MSG_APP]
                   ? (double)S->st.app_entries / (double)S->st.by_type[RAFT_MSG_APP]
                   : 0.0);
        sim_free();
        /* Same run again, timing each call into raft: the core's own cost per entry, without
         * the simulated disks, network and checker. */
        double secs_t = throughput_run(voters, true, &in_raft, &ent, &msgs);
        printf("  inside raft calls: %.3f s of %.3f s, entries/s of the raft core alone=%.0f\n",
               in_raft, secs_t, in_raft > 0 ? (double)(ent / voters) / in_raft : 0.0);
        sim_free();
    }
}

int main(int argc, char **argv)
{
    uint64_t seeds = 200, start = 1, one = 0;
    bool have_one = false, verbose = false;
    uint32_t nodes = 0;
    uint32_t m_election = 0;
    bool m_throughput = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seeds") && i + 1 < argc)
            seeds = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--start") && i + 1 < argc)
            start = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            one = strtoull(argv[++i], NULL, 10);
            have_one = true;
        } else if (!strcmp(argv[i], "--nodes") && i + 1 < argc)
            nodes = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--trace") && i + 1 < argc)
            trace_node = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--no-liveness"))
            no_liveness = true;
        else if (!strcmp(argv[i], "--verbose"))
            verbose = true;
        else if (!strcmp(argv[i], "--measure-election") && i + 1 < argc)
            m_election = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--measure-throughput"))
            m_throughput = true;
        else {
            fprintf(stderr,
                    "usage: %s [--seeds N] [--start S] [--seed S] [--nodes 3|5|0] "
                    "[--verbose] [--measure-election N] [--measure-throughput]\n",
                    argv[0]);
            return 2;
        }
    }
    const char *env = getenv("SIM_RAFT_SEEDS");
    if (env && *env && !have_one)
        seeds = strtoull(env, NULL, 10);
    if (nodes != 0 && nodes != 3 && nodes != 5) {
        fprintf(stderr, "--nodes must be 3, 5 or 0 (alternate)\n");
        return 2;
    }
    if (m_election || m_throughput) {
        if (m_election)
            measure_election(m_election);
        if (m_throughput)
            measure_throughput();
        return 0;
    }
    if (have_one) {
        uint32_t v = nodes ? nodes : (one % 2 ? 3 : 5);
        int f = run_seed(one, v, verbose, NULL);
        printf("%s: seed %" PRIu64 " with %u voters\n", f ? "FAILED" : "ok", one, v);
        return f;
    }
    struct stats acc = {0};
    uint64_t failed = 0, ran = 0;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (uint64_t s = start; s < start + seeds; s++) {
        uint32_t v = nodes ? nodes : (s % 2 ? 3 : 5);
        failed += run_seed(s, v, false, &acc) ? 1 : 0;
        ran++;
        if (failed >= 5)
            break;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    printf("sim_raft: seeds %" PRIu64 "..%" PRIu64 " (%s voters): %" PRIu64 " run, %" PRIu64
           " failed in %.1f s\n",
           start, start + ran - 1, nodes ? (nodes == 3 ? "3" : "5") : "3 and 5", ran, failed, secs);
    printf("  events=%" PRIu64 " msgs=%" PRIu64 " proposals=%" PRIu64 " applied=%" PRIu64
           " leaders=%" PRIu64 " crashes=%" PRIu64 " partitions=%" PRIu64 " transfers=%" PRIu64
           " conf_changes=%" PRIu64 " log_start_moves=%" PRIu64 " installs=%" PRIu64 "\n",
           acc.steps, acc.msgs_sent, acc.proposals, acc.entries_committed, acc.elections,
           acc.crashes, acc.partitions, acc.transfers, acc.conf_changes, acc.compactions,
           acc.installs);
    printf("  read_faults=%" PRIu64 " read_errors=%" PRIu64 " unsent_appends=%" PRIu64
           " failed_restarts=%" PRIu64 "\n",
           acc.read_faults, acc.read_errors, acc.unsent, acc.boot_failures);
    printf("%" PRIu64 " passed, %" PRIu64 " failed\n", ran - failed, failed);
    return failed ? 1 : 0;
}
