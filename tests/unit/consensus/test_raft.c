/* Raft unit tests: codecs, the in-memory log, persist-before-send, §5.4.2, flow control,
 * learner promotion, multi-Raft heartbeat coalescing, failed log reads and APP descriptors.
 * Scenario transcripts are in test_raft_golden.c; randomized fault runs in tests/sim/raft. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/lm_err.h"
#include "consensus/raft.h"
#include "consensus/raft_memlog.h"
#include "consensus/raft_multi.h"
#include "raft_harness.h"

static void test_conf_codec(void **state)
{
    (void)state;
    struct raft_conf c = {.n_voters = 3, .voters = {1, 2, 7}, .n_learners = 1, .learners = {9}};
    uint8_t buf[128];
    int n = raft_conf_encode(&c, buf, sizeof(buf));
    assert_int_equal(n, 8 + 4 * 4);
    struct raft_conf d;
    assert_int_equal(raft_conf_decode(buf, (size_t)n, &d), 0);
    assert_int_equal(d.n_voters, 3);
    assert_int_equal(d.voters[2], 7);
    assert_int_equal(d.n_learners, 1);
    assert_int_equal(d.learners[0], 9);
    assert_true(raft_conf_is_voter(&d, 2));
    assert_false(raft_conf_is_voter(&d, 9));
    assert_true(raft_conf_is_learner(&d, 9));
    assert_int_equal(raft_conf_decode(buf, 5, &d), LM_E_TRUNCATED);
    assert_int_equal(raft_conf_decode(buf, (size_t)n - 1, &d), LM_E_INVALID);
    assert_int_equal(raft_conf_encode(&c, buf, 10), LM_E_TOO_LARGE);
    buf[3] = 200; /* n_voters = 200 > RAFT_NODES_MAX */
    assert_int_equal(raft_conf_decode(buf, (size_t)n, &d), LM_E_TOO_LARGE);
}

static struct raft_entry ent(int64_t first, int64_t last, uint64_t term, const char *data)
{
    return (struct raft_entry){.first_index = first,
                               .last_index = last,
                               .term = term,
                               .len = (uint32_t)strlen(data),
                               .data = (uint8_t *)data};
}

static void test_memlog(void **state)
{
    (void)state;
    struct raft_conf c = {.n_voters = 1, .voters = {1}};
    struct raft_memlog ml;
    raft_memlog_init(&ml, &c);
    assert_int_equal(raft_memlog_last(&ml), -1);
    struct raft_entry es[] = {ent(0, 0, 1, "a"), ent(1, 4, 1, "bbbb"), ent(5, 5, 2, "c")};
    assert_int_equal(raft_memlog_write(&ml, es, 3), 0);
    assert_int_equal(raft_memlog_last(&ml), 5);
    const struct raft_entry *e = raft_memlog_find(&ml, 3);
    assert_non_null(e);
    assert_int_equal(e->first_index, 1);
    assert_int_equal(e->last_index, 4);
    /* Overwrite from a batch boundary (Kafka truncation then append). */
    struct raft_entry o = ent(5, 6, 3, "dd");
    assert_int_equal(raft_memlog_write(&ml, &o, 1), 0);
    assert_int_equal(raft_memlog_find(&ml, 6)->term, 3);
    /* Not on a boundary, or leaving a gap: refused. */
    struct raft_entry mid = ent(3, 3, 3, "x"), gap = ent(9, 9, 3, "x");
    assert_int_equal(raft_memlog_write(&ml, &mid, 1), LM_E_SEQUENCE);
    assert_int_equal(raft_memlog_write(&ml, &gap, 1), LM_E_SEQUENCE);
    /* Log start moves to a boundary; the term and configuration there are kept. */
    assert_int_equal(raft_memlog_compact(&ml, 2, NULL, 0), LM_E_INVALID);
    assert_int_equal(raft_memlog_compact(&ml, 4, "snap", 4), 0);
    assert_int_equal(ml.start.index, 4);
    assert_int_equal(ml.start.term, 1);
    assert_int_equal(ml.start.payload_len, 4);
    assert_int_equal(ml.start.conf.n_voters, 1);
    assert_null(raft_memlog_find(&ml, 4));
    assert_non_null(raft_memlog_find(&ml, 5));
    struct raft_entry old = ent(3, 3, 1, "x");
    assert_int_equal(raft_memlog_write(&ml, &old, 1), LM_E_SEQUENCE);
    raft_memlog_deinit(&ml);
}

/* A single voter commits its own entry only once its write is durable. */
static void test_single_node_commit_after_persist(void **state)
{
    (void)state;
    struct raft_conf c = {.n_voters = 1, .voters = {1}};
    struct raft_memlog ml;
    raft_memlog_init(&ml, &c);
    struct raft_log_ops ops;
    raft_memlog_ops(&ml, &ops);
    struct raft_config cfg = {.id = 1,
                              .group = 1,
                              .election_ticks = 10,
                              .heartbeat_ticks = 1,
                              .max_inflight = 4,
                              .max_msg_entries = 8,
                              .max_apply_entries = 8,
                              .pre_vote = true,
                              .check_quorum = true,
                              .rand_seed = 1,
                              .applied = -1};
    struct raft *r = raft_new(&cfg, &ops, NULL);
    assert_non_null(r);
    assert_int_equal(raft_propose(r, "x", 1, 1, NULL), LM_E_STATE);
    for (int i = 0; i < 20 && raft_role(r) != RAFT_LEADER; i++)
        raft_tick(r);
    assert_int_equal(raft_role(r), RAFT_LEADER);
    assert_int_equal(raft_term(r), 1);
    int64_t last;
    assert_int_equal(raft_propose(r, "abc", 3, 5, &last), 0);
    assert_int_equal(last, 5); /* noop at 0, then offsets 1..5 */
    struct raft_ready rd;
    raft_ready(r, &rd);
    assert_true(rd.persist_id != 0);
    assert_int_equal(rd.n_entries, 2);
    assert_int_equal(rd.hs.term, 1);
    assert_int_equal(rd.hs.vote, 1);
    assert_int_equal(rd.n_committed, 0);
    assert_int_equal(raft_commit(r), -1); /* not durable yet: no commit */
    assert_int_equal(raft_memlog_persist(&ml, &rd), 0);
    assert_int_equal(raft_persisted(r, rd.persist_id), 0);
    assert_int_equal(raft_commit(r), 5);
    raft_ready(r, &rd);
    assert_int_equal(rd.n_committed, 2);
    assert_int_equal(rd.committed[1].last_index, 5);
    assert_int_equal(raft_persisted(r, 99), LM_E_INVALID);
    raft_free(r);
    raft_memlog_deinit(&ml);
}

/* lone_resume + conf_fixed + no_apply (a one-voter partition): leader from raft_new at the
 * term its log and hard state imply, no election and no NOOP, earlier-term entries committed
 * at once, nothing read to rebuild a configuration history, nothing handed out to apply. */
struct counting_log {
    struct raft_memlog ml;
    struct raft_log_ops inner;
    uint64_t reads;
};

static void cl_start(void *ctx, struct raft_log_start *out)
{
    struct counting_log *cl = ctx;
    cl->inner.start(cl->inner.ctx, out);
}

static int64_t cl_last(void *ctx)
{
    struct counting_log *cl = ctx;
    return cl->inner.last_index(cl->inner.ctx);
}

static int cl_entry(void *ctx, int64_t index, struct raft_entry *out)
{
    struct counting_log *cl = ctx;
    cl->reads++;
    return cl->inner.entry_at(cl->inner.ctx, index, out);
}

static void test_lone_resume(void **state)
{
    (void)state;
    struct raft_conf c = {.n_voters = 1, .voters = {1}};
    struct counting_log cl = {0};
    raft_memlog_init(&cl.ml, &c);
    raft_memlog_ops(&cl.ml, &cl.inner);
    /* 40 batches of epoch 3 then 10 of epoch 4, nothing committed yet (hard state commit -1). */
    for (int64_t i = 0; i < 50; i++) {
        struct raft_entry e = {
            .first_index = 2 * i, .last_index = 2 * i + 1, .term = i < 40 ? 3 : 4};
        assert_int_equal(raft_memlog_write(&cl.ml, &e, 1), 0);
    }
    struct raft_log_ops ops = {
        .ctx = &cl, .start = cl_start, .last_index = cl_last, .entry_at = cl_entry};
    struct raft_config cfg = {.id = 1,
                              .group = 1,
                              .election_ticks = 10,
                              .heartbeat_ticks = 1,
                              .max_inflight = 4,
                              .max_msg_entries = 8,
                              .max_apply_entries = 8,
                              .rand_seed = 1,
                              .applied = -1,
                              .conf_fixed = true,
                              .no_apply = true,
                              .lone_resume = true};
    struct raft_hard_state hs = {.term = 2, .vote = RAFT_NONE, .commit = -1};
    struct raft *r = raft_new(&cfg, &ops, &hs);
    assert_non_null(r);
    assert_true(cl.reads <= 3); /* the last term and the commit check, not 50 batches */
    assert_int_equal(raft_role(r), RAFT_LEADER);
    assert_int_equal(raft_term(r), 4);        /* max(hard state 2, last log term 4) */
    assert_int_equal(raft_last_index(r), 99); /* no NOOP */
    assert_int_equal(raft_commit(r), 99);     /* earlier terms commit: nobody else can lead */
    struct raft_ready rd;
    if (raft_has_ready(r)) {
        raft_ready(r, &rd);
        assert_int_equal(rd.persist_id, 0);  /* nothing to write: the term is derived */
        assert_int_equal(rd.n_committed, 0); /* no_apply */
    }
    int64_t last;
    assert_int_equal(raft_propose(r, NULL, 0, 3, &last), 0);
    assert_int_equal(last, 102);
    raft_ready(r, &rd);
    assert_true(rd.persist_id != 0);
    assert_int_equal(rd.n_entries, 1);
    assert_int_equal(raft_memlog_persist(&cl.ml, &rd), 0);
    assert_int_equal(raft_persisted(r, rd.persist_id), 0);
    assert_int_equal(raft_commit(r), 102);
    /* A lone group's configuration never changes under conf_fixed. */
    assert_int_equal(raft_propose_conf(r, RAFT_CONF_ADD_LEARNER, 2), LM_E_STATE);
    raft_free(r);
    /* Without conf_fixed, lone_resume is refused (the history would be needed). */
    cfg.conf_fixed = false;
    assert_null(raft_new(&cfg, &ops, &hs));
    raft_memlog_deinit(&cl.ml);
}

static size_t queued_from(const struct harness *h, uint32_t from, uint8_t type)
{
    size_t n = 0;
    for (size_t i = 0; i < h->n_q; i++)
        if (h->q[i].m.from == from && (type == 0 || h->q[i].m.type == type))
            n++;
    return n;
}

/* A vote is never sent before it is durable; a crash before that loses it, and nobody heard. */
static void test_vote_persist_before_send(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h, 3, 3, false, false, NULL);
    h.nodes[2].hold_persist = true;
    h.nodes[3].hold_persist = true;
    assert_int_equal(raft_campaign(h.nodes[1].r), 0);
    h_process(&h, 1);
    h_deliver_all(&h); /* votes reach n2 and n3 */
    assert_int_equal(raft_term(h.nodes[2].r), 1);
    assert_int_equal(queued_from(&h, 2, 0), 0);
    assert_int_equal(queued_from(&h, 3, 0), 0);
    assert_int_equal(h.nodes[2].disk.hs.vote, 0);
    h_crash(&h, 2);
    h_restart(&h, 2);
    assert_int_equal(raft_term(h.nodes[2].r), 0); /* the vote was lost, never announced */
    h_flush_disk(&h, 3);
    assert_int_equal(queued_from(&h, 3, RAFT_MSG_VOTE_RESP), 1);
    assert_int_equal(h.nodes[3].disk.hs.vote, 1);
    h_stabilize(&h);
    assert_int_equal(h_leader(&h), 1);
    h_deinit(&h);
}

/* Raft §5.4.2 (Figure 8): a leader never commits an entry of an earlier term by counting
 * replicas; only an entry of its own term commits, and the earlier ones with it. */
static void test_commit_only_current_term(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h, 5, 5, false, false, NULL);
    assert_int_equal(raft_campaign(h.nodes[1].r), 0);
    h_stabilize(&h);
    assert_int_equal(h_leader(&h), 1);
    assert_int_equal(raft_commit(h.nodes[1].r), 0);
    h_isolate(&h, 1);
    assert_int_equal(raft_propose(h.nodes[1].r, "x", 1, 1, NULL), 0); /* offset 1, term 1 */
    h_stabilize(&h);
    h_crash(&h, 1);
    h_restart(&h, 1);
    h_heal(&h);
    assert_int_equal(raft_campaign(h.nodes[1].r), 0);
    h_process(&h, 1);
    for (int i = 0; i < 10 && raft_role(h.nodes[1].r) != RAFT_LEADER; i++)
        h_deliver_all(&h);
    assert_int_equal(raft_role(h.nodes[1].r), RAFT_LEADER);
    assert_int_equal(raft_term(h.nodes[1].r), 2);
    assert_int_equal(raft_last_index(h.nodes[1].r), 2); /* 1@1 and the noop 2@2 */
    h_isolate(&h, 1);
    h_stabilize(&h); /* its appends are lost */
    /* Two followers acknowledge offset 1 (term 1): with the leader that is 3 of 5. */
    for (uint32_t f = 2; f <= 3; f++) {
        struct raft_msg ack = {
            .type = RAFT_MSG_APP_RESP, .group = 1, .from = f, .to = 1, .term = 2, .index = 1};
        assert_int_equal(raft_step(h.nodes[1].r, &ack), 0);
    }
    assert_int_equal(raft_commit(h.nodes[1].r), 0);
    for (uint32_t f = 2; f <= 3; f++) {
        struct raft_msg ack = {
            .type = RAFT_MSG_APP_RESP, .group = 1, .from = f, .to = 1, .term = 2, .index = 2};
        assert_int_equal(raft_step(h.nodes[1].r, &ack), 0);
    }
    assert_int_equal(raft_commit(h.nodes[1].r), 2);
    h_deinit(&h);
}

/* A follower answering for another log (an older incarnation of the group left on its disk)
 * acknowledges offsets past the leader's log, or inside one of its batches: the answer is
 * ignored, never counted towards the commit nor used to send from past the log's end or the
 * middle of a batch (send_append's invariants). */
static void test_ack_past_log_end_ignored(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h, 3, 3, false, false, NULL);
    assert_int_equal(raft_campaign(h.nodes[1].r), 0);
    h_stabilize(&h);
    assert_int_equal(h_leader(&h), 1);
    int64_t last = raft_last_index(h.nodes[1].r), commit = raft_commit(h.nodes[1].r);
    uint64_t term = raft_term(h.nodes[1].r);
    for (uint32_t f = 2; f <= 3; f++) {
        struct raft_msg ack = {.type = RAFT_MSG_APP_RESP,
                               .group = 1,
                               .from = f,
                               .to = 1,
                               .term = term,
                               .index = last + 40};
        assert_int_equal(raft_step(h.nodes[1].r, &ack), 0);
        const struct raft_progress *pr = raft_progress(h.nodes[1].r, f);
        assert_true(pr->match <= last && pr->next <= last + 1);
    }
    assert_int_equal(raft_commit(h.nodes[1].r), commit);
    /* the group goes on: a proposal commits with the real acknowledgements */
    assert_int_equal(raft_propose(h.nodes[1].r, "x", 1, 1, NULL), 0);
    h_stabilize(&h);
    assert_int_equal(raft_commit(h.nodes[1].r), last + 1);
    /* an acknowledgement inside a batch (offsets last+2..last+6) is not taken either */
    h_isolate(&h, 1);
    int64_t batch_last = -1;
    assert_int_equal(raft_propose(h.nodes[1].r, "y", 1, 5, &batch_last), 0);
    assert_int_equal(batch_last, last + 6);
    h_process(&h, 1);
    for (uint32_t f = 2; f <= 3; f++) {
        struct raft_msg ack = {.type = RAFT_MSG_APP_RESP,
                               .group = 1,
                               .from = f,
                               .to = 1,
                               .term = term,
                               .index = last + 4};
        assert_int_equal(raft_step(h.nodes[1].r, &ack), 0);
        assert_true(raft_progress(h.nodes[1].r, f)->match <= last + 1);
    }
    assert_int_equal(raft_commit(h.nodes[1].r), last + 1);
    h_heal(&h);
    for (int t = 0; t < 5 && raft_commit(h.nodes[1].r) < last + 6; t++) {
        h_tick(&h, 1); /* heartbeats: the followers' answers bring the batch again */
        h_stabilize(&h);
    }
    assert_int_equal(raft_commit(h.nodes[1].r), last + 6);
    h_deinit(&h);
}

/* Pipelining with a per-follower window: at most max_inflight appends outstanding. */
static void test_flow_control(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h, 3, 3, true, true, NULL);
    assert_int_equal(raft_campaign(h.nodes[1].r), 0);
    h_stabilize(&h);
    const struct raft_progress *pr = raft_progress(h.nodes[1].r, 2);
    assert_non_null(pr);
    assert_int_equal(pr->state, RAFT_PR_REPLICATE);
    for (int i = 0; i < 100; i++) /* 100 batches: 13 appends of 8, the window holds 4 */
        assert_int_equal(raft_propose(h.nodes[1].r, "p", 1, 1, NULL), 0);
    h_process(&h, 1);
    size_t to2 = 0;
    for (size_t i = 0; i < h.n_q; i++)
        if (h.q[i].m.to == 2 && h.q[i].m.type == RAFT_MSG_APP)
            to2++;
    assert_int_equal(to2, h.nodes[1].cfg.max_inflight);
    pr = raft_progress(h.nodes[1].r, 2);
    assert_int_equal(pr->inflight_count, h.nodes[1].cfg.max_inflight);
    h_stabilize(&h);
    assert_int_equal(raft_commit(h.nodes[1].r), 100);
    assert_int_equal(raft_commit(h.nodes[2].r), 100);
    h_deinit(&h);
}

/* A learner that has not caught up cannot be promoted; once it has, it can. */
static void test_learner_promotion(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h, 4, 3, true, true, NULL);
    assert_int_equal(raft_campaign(h.nodes[1].r), 0);
    h_stabilize(&h);
    h_isolate(&h, 4);
    assert_int_equal(raft_propose_conf(h.nodes[1].r, RAFT_CONF_ADD_LEARNER, 4), 0);
    h_stabilize(&h);
    assert_true(raft_conf_is_learner(raft_conf(h.nodes[1].r), 4));
    assert_int_equal(raft_propose_conf(h.nodes[1].r, RAFT_CONF_PROMOTE, 4), LM_E_AGAIN);
    assert_int_equal(raft_propose_conf(h.nodes[1].r, RAFT_CONF_REMOVE, 9), LM_E_NOT_FOUND);
    h_heal(&h);
    raft_tick(h.nodes[1].r); /* heartbeat -> response -> catch-up append */
    h_stabilize(&h);
    assert_int_equal(raft_propose_conf(h.nodes[1].r, RAFT_CONF_PROMOTE, 4), 0);
    h_stabilize(&h);
    for (uint32_t i = 1; i <= 4; i++)
        assert_true(raft_conf_is_voter(raft_conf(h.nodes[i].r), 4));
    h_deinit(&h);
}

/* Multi-Raft: 3 nodes share 60 groups; each flush sends one envelope per peer, carrying the
 * heartbeats of every group, and every group keeps its leader. */
#define MG 60
struct mnode {
    struct raft_multi m;
    struct raft *r[MG];
    struct raft_memlog ml[MG];
};

static void mnode_pump(struct mnode *nodes, uint32_t n_nodes, size_t *envelopes, size_t *raw)
{
    for (int round = 0; round < 50; round++) {
        bool any = false;
        for (uint32_t i = 0; i < n_nodes; i++) {
            for (int g = 0; g < MG; g++) {
                struct raft *r = nodes[i].r[g];
                while (raft_has_ready(r)) {
                    struct raft_ready rd;
                    raft_ready(r, &rd);
                    assert_int_equal(raft_memlog_persist(&nodes[i].ml[g], &rd), 0);
                    if (rd.persist_id)
                        assert_int_equal(raft_persisted(r, rd.persist_id), 0);
                    assert_int_equal(raft_multi_queue(&nodes[i].m, rd.msgs, rd.n_msgs), 0);
                }
            }
        }
        for (uint32_t i = 0; i < n_nodes; i++) {
            const struct raft_envelope *env;
            size_t n;
            raft_multi_flush(&nodes[i].m, &env, &n);
            bool seen[8] = {false};
            for (size_t k = 0; k < n; k++) {
                assert_true(env[k].to >= 1 && env[k].to <= n_nodes);
                assert_false(seen[env[k].to]); /* one envelope per peer per flush */
                seen[env[k].to] = true;
                *envelopes += 1;
                *raw += raft_envelope_count(&env[k]);
                assert_int_equal(raft_multi_deliver(&nodes[env[k].to - 1].m, &env[k]), 0);
                any = true;
            }
        }
        if (!any)
            return;
    }
}

static void test_multi_coalesced_heartbeats(void **state)
{
    (void)state;
    const uint32_t N = 3;
    struct mnode *nodes = calloc(N, sizeof(*nodes));
    struct raft_conf c = {.n_voters = 3, .voters = {1, 2, 3}};
    for (uint32_t i = 0; i < N; i++) {
        raft_multi_init(&nodes[i].m, i + 1);
        for (int g = 0; g < MG; g++) {
            raft_memlog_init(&nodes[i].ml[g], &c);
            struct raft_log_ops ops;
            raft_memlog_ops(&nodes[i].ml[g], &ops);
            struct raft_config cfg = {.id = i + 1,
                                      .group = (uint64_t)g + 100,
                                      .election_ticks = 10,
                                      .heartbeat_ticks = 1,
                                      .max_inflight = 4,
                                      .max_msg_entries = 8,
                                      .max_apply_entries = 64,
                                      .pre_vote = true,
                                      .check_quorum = true,
                                      .rand_seed = 3,
                                      .applied = -1};
            nodes[i].r[g] = raft_new(&cfg, &ops, NULL);
            assert_non_null(nodes[i].r[g]);
            assert_int_equal(raft_multi_add(&nodes[i].m, cfg.group, nodes[i].r[g], &ops), 0);
        }
    }
    struct raft_log_ops ops0;
    raft_memlog_ops(&nodes[0].ml[0], &ops0);
    assert_int_equal(raft_multi_add(&nodes[0].m, 100, nodes[0].r[0], &ops0), LM_E_EXISTS);
    size_t env = 0, raw = 0;
    for (int g = 0; g < MG; g++)
        assert_int_equal(raft_campaign(nodes[g % N].r[g]), 0);
    mnode_pump(nodes, N, &env, &raw);
    uint64_t terms[MG];
    for (int g = 0; g < MG; g++) {
        assert_int_equal(raft_role(nodes[g % N].r[g]), RAFT_LEADER);
        terms[g] = raft_term(nodes[g % N].r[g]);
    }
    env = raw = 0;
    uint64_t hb0 = nodes[0].m.hb_coalesced;
    for (int t = 0; t < 40; t++) {
        for (uint32_t i = 0; i < N; i++)
            assert_int_equal(raft_multi_tick(&nodes[i].m), 0);
        mnode_pump(nodes, N, &env, &raw);
    }
    /* Every tick: each node leads 20 groups and sends 2 heartbeats per group, answered by 2
     * responses per group it follows: 240 raft messages travel in 12 envelopes. */
    assert_int_equal(env, 40u * N * (N - 1) * 2);
    assert_int_equal(raw, 40u * MG * (N - 1) * 2);
    assert_true(nodes[0].m.hb_coalesced - hb0 >= 40u * (MG / N) * (N - 1));
    for (int g = 0; g < MG; g++) {
        assert_int_equal(raft_role(nodes[g % N].r[g]), RAFT_LEADER);
        assert_int_equal(raft_term(nodes[g % N].r[g]), terms[g]);
    }
    for (uint32_t i = 0; i < N; i++) {
        raft_multi_deinit(&nodes[i].m);
        for (int g = 0; g < MG; g++) {
            raft_free(nodes[i].r[g]);
            raft_memlog_deinit(&nodes[i].ml[g]);
        }
    }
    free(nodes);
}

/* ---------- failed log reads (raft.h "LOG READS MAY FAIL") ---------- */

static size_t queued(const struct harness *h, uint32_t from, uint32_t to, uint8_t type)
{
    size_t n = 0;
    for (size_t i = 0; i < h->n_q; i++)
        if (h->q[i].m.from == from && h->q[i].m.to == to && h->q[i].m.type == type)
            n++;
    return n;
}

/* A 3-node cluster with leader 1 and n3 left behind: offsets 1..6 are committed by n1 and n2
 * and durable in n1's storage (not in its unstable tail), so sending them to n3 reads the log. */
static void lagging_cluster(struct harness *h, bool pre_vote, bool check_quorum)
{
    h_init(h, 3, 3, pre_vote, check_quorum, NULL);
    h->tolerate_errors = true;
    assert_int_equal(raft_campaign(h->nodes[1].r), 0);
    h_stabilize(h);
    assert_int_equal(h_leader(h), 1);
    h_isolate(h, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(raft_propose(h->nodes[1].r, "ab", 2, 2, NULL), 0);
    h_stabilize(h);
    assert_int_equal(raft_commit(h->nodes[1].r), 6);
    assert_int_equal(raft_last_index(h->nodes[3].r), 0);
    h_heal(h);
}

/* Leader: the reads behind an append to a lagging follower fail. Nothing is sent and the
 * progress is untouched; the next tick retries and the follower catches up. */
static void test_read_fail_on_append(void **state)
{
    (void)state;
    struct harness h;
    lagging_cluster(&h, true, true);
    h_tick(&h, 1);     /* heartbeats */
    h_deliver_all(&h); /* n3 answers its heartbeat */
    assert_int_equal(queued(&h, 3, 1, RAFT_MSG_HEARTBEAT_RESP), 1);
    const struct raft_progress *pr = raft_progress(h.nodes[1].r, 3);
    int64_t next0 = pr->next;
    h.nodes[1].fail_reads = true;
    h_deliver_all(&h); /* the response asks n1 for an append it cannot read */
    assert_int_equal(h.nodes[1].last_err, LM_E_IO);
    assert_int_equal(queued(&h, 1, 3, RAFT_MSG_APP), 0);
    pr = raft_progress(h.nodes[1].r, 3);
    assert_int_equal(pr->next, next0);
    assert_false(pr->probe_sent);
    assert_true(pr->append_owed);
    assert_int_equal(raft_role(h.nodes[1].r), RAFT_LEADER);
    /* Reads still failing: the tick's retry fails too, and says so. */
    assert_int_equal(h_tick(&h, 1), LM_E_IO);
    assert_int_equal(queued(&h, 1, 3, RAFT_MSG_APP), 0);
    /* Reads work again: the next tick sends the append on its own. */
    h.nodes[1].fail_reads = false;
    h_deliver_all(&h);
    assert_int_equal(h_tick(&h, 1), 0);
    assert_int_equal(queued(&h, 1, 3, RAFT_MSG_APP), 1);
    assert_false(raft_progress(h.nodes[1].r, 3)->append_owed);
    h_stabilize(&h);
    assert_int_equal(raft_commit(h.nodes[3].r), 6);
    assert_int_equal(raft_memlog_last(&h.nodes[3].disk), 6);
    h_deinit(&h);
}

/* Follower: it cannot check an append's prev term. The append is dropped unanswered (its log
 * untouched), raft_step says why, and the leader's next append goes through. */
static void test_read_fail_on_receiving_append(void **state)
{
    (void)state;
    struct harness h;
    lagging_cluster(&h, true, true);
    h.nodes[2].fail_reads = true; /* n2's log (offsets 0..6) is all in storage */
    assert_int_equal(raft_propose(h.nodes[1].r, "c", 1, 1, NULL), 0);
    h_process(&h, 1);
    assert_int_equal(queued(&h, 1, 2, RAFT_MSG_APP), 1);
    h_deliver_all(&h);
    assert_int_equal(h.nodes[2].last_err, LM_E_IO);
    assert_int_equal(queued(&h, 2, 1, RAFT_MSG_APP_RESP), 0);
    assert_int_equal(raft_memlog_last(&h.nodes[2].disk), 6);
    assert_int_equal(raft_last_index(h.nodes[2].r), 6);
    h.nodes[2].fail_reads = false;
    for (int i = 0; i < 3; i++) {
        h_tick(&h, 1);
        h_stabilize(&h);
    }
    assert_int_equal(raft_commit(h.nodes[1].r), 7);
    assert_int_equal(raft_memlog_last(&h.nodes[2].disk), 7);
    h_deinit(&h);
}

/* Votes: a voter that cannot read its last term sends no answer and keeps its vote; a node that
 * cannot read it starts no election (term and vote untouched) and the next tick tries again. */
static void test_read_fail_on_vote(void **state)
{
    (void)state;
    struct harness h;
    lagging_cluster(&h, false, false);
    h_crash(&h, 1); /* no leader: n2 and n3 may vote */
    uint64_t t2 = raft_term(h.nodes[2].r);
    /* Candidate side. */
    h.nodes[2].fail_reads = true;
    assert_int_equal(raft_campaign(h.nodes[2].r), LM_E_IO);
    assert_int_equal(raft_term(h.nodes[2].r), t2);
    assert_int_equal(raft_role(h.nodes[2].r), RAFT_FOLLOWER);
    h_process(&h, 2);
    assert_int_equal(h.nodes[2].disk.hs.vote, 1); /* still its vote of term t2 */
    /* Once the election timeout has passed, every tick tries and fails the same way. */
    int failed = 0;
    for (int i = 0; i < 40; i++) {
        int rc = h_tick(&h, 2);
        assert_true(rc == 0 || rc == LM_E_IO);
        assert_true(failed == 0 || rc == LM_E_IO);
        failed += rc != 0;
    }
    assert_true(failed > 0);
    assert_int_equal(raft_term(h.nodes[2].r), t2);
    assert_int_equal(raft_role(h.nodes[2].r), RAFT_FOLLOWER);
    /* Voter side: n3 asks n2 (which cannot read its log) for its vote. */
    assert_int_equal(raft_campaign(h.nodes[3].r), 0);
    h_process(&h, 3);
    h_deliver_all(&h);
    assert_int_equal(h.nodes[2].last_err, LM_E_IO);
    assert_int_equal(queued(&h, 2, 3, RAFT_MSG_VOTE_RESP), 0);
    assert_int_not_equal(h.nodes[2].disk.hs.vote, 3);
    assert_int_not_equal(raft_role(h.nodes[3].r), RAFT_LEADER);
    /* Reads back: n2 campaigns at its next timeout and wins, its log being longer than n3's. */
    h.nodes[2].fail_reads = false;
    h_deliver_all(&h);
    for (int i = 0; i < 40 && raft_role(h.nodes[2].r) == RAFT_FOLLOWER; i++)
        assert_int_equal(h_tick(&h, 2), 0);
    assert_int_equal(raft_role(h.nodes[2].r), RAFT_CANDIDATE);
    h_stabilize(&h);
    assert_int_equal(h_leader(&h), 2);
    h_deinit(&h);
}

/* Commit advancement: the leader cannot read the term at the quorum match, so commit stays;
 * the next tick advances it. A follower that cannot read a committed entry stops applying
 * before it (rd.err) without spinning, and resumes after its next input. */
static void test_read_fail_on_commit(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h, 3, 3, true, true, NULL);
    h.tolerate_errors = true;
    assert_int_equal(raft_campaign(h.nodes[1].r), 0);
    h_stabilize(&h);
    assert_int_equal(raft_propose(h.nodes[1].r, "x", 1, 3, NULL), 0); /* offsets 1..3 */
    h_process(&h, 1);  /* durable on n1 at once: it leaves the unstable tail */
    h_deliver_all(&h); /* appends to n2, n3; their responses are queued */
    assert_int_equal(queued(&h, 2, 1, RAFT_MSG_APP_RESP), 1);
    h.nodes[1].fail_reads = true;
    h_deliver_all(&h);
    assert_int_equal(h.nodes[1].last_err, LM_E_IO);
    assert_int_equal(raft_commit(h.nodes[1].r), 0);
    assert_int_equal(raft_progress(h.nodes[1].r, 2)->match, 3);
    assert_int_equal(h_tick(&h, 1), LM_E_IO); /* still unreadable: still not committed */
    assert_int_equal(raft_commit(h.nodes[1].r), 0);
    h.nodes[1].fail_reads = false;
    assert_int_equal(h_tick(&h, 1), 0);
    assert_int_equal(raft_commit(h.nodes[1].r), 3);
    assert_int_equal(h.nodes[1].applied, 3);
    /* Follower apply. */
    h.nodes[2].fail_reads = true;
    h.nodes[2].last_err = 0;
    h_stabilize(&h); /* the commit reaches n2, whose entries are in storage */
    assert_int_equal(raft_commit(h.nodes[2].r), 3);
    assert_int_equal(h.nodes[2].applied, 0);
    assert_int_equal(h.nodes[2].last_err, LM_E_IO);
    assert_false(raft_has_ready(h.nodes[2].r)); /* no busy loop on a broken disk */
    h.nodes[2].fail_reads = false;
    h_tick(&h, 2);
    assert_int_equal(h.nodes[2].applied, 3);
    h_deinit(&h);
}

/* ---------- APP descriptors (raft.h "APPENDS ARE DESCRIPTORS") ---------- */

static bool fail_log_reads;
static int failing_entry_at(void *ctx, int64_t index, struct raft_entry *out)
{
    if (fail_log_reads)
        return LM_E_IO;
    const struct raft_entry *e = raft_memlog_find(ctx, index);
    if (!e)
        return LM_E_NOT_FOUND;
    *out = *e;
    return 0;
}

static void test_descriptor_resolve(void **state)
{
    (void)state;
    struct raft_conf c = {.n_voters = 1, .voters = {1}};
    struct raft_memlog ml;
    raft_memlog_init(&ml, &c);
    struct raft_entry es[] = {ent(0, 0, 1, "a"), ent(1, 4, 1, "bbbb"), ent(5, 5, 2, "c"),
                              ent(6, 7, 2, "dd")};
    assert_int_equal(raft_memlog_write(&ml, es, 4), 0);
    struct raft_log_ops ops;
    raft_memlog_ops(&ml, &ops);
    /* (0, 7]: three batches, the last ending at 7 in term 2. */
    struct raft_msg d = {.type = RAFT_MSG_APP,
                         .group = 1,
                         .from = 1,
                         .to = 2,
                         .term = 2,
                         .index = 0,
                         .log_term = 1,
                         .commit = 5,
                         .ent_last = 7,
                         .ent_last_term = 2,
                         .n_entries = 3};
    struct raft_entry out[4];
    assert_int_equal(raft_log_resolve(&ops, &d, out, 4), 0);
    assert_int_equal(out[0].first_index, 1);
    assert_int_equal(out[2].last_index, 7);
    assert_memory_equal(out[1].data, "c", 1);
    assert_ptr_equal(out[1].data, raft_memlog_find(&ml, 5)->data); /* borrowed, not copied */
    assert_int_equal(raft_log_resolve(&ops, &d, out, 2), LM_E_INVALID);
    struct raft_msg w;
    assert_int_equal(raft_msg_resolve(&w, &d, &ops), 0);
    assert_int_equal(w.n_entries, 3);
    assert_non_null(w.entries);
    assert_ptr_not_equal(w.entries[2].data, raft_memlog_find(&ml, 6)->data); /* owned copy */
    assert_memory_equal(w.entries[2].data, "dd", 2);
    raft_msg_deinit(&w);
    /* The receive side takes entries with bytes only. */
    struct raft_conf c2 = {.n_voters = 2, .voters = {1, 2}};
    struct raft_memlog ml2;
    raft_memlog_init(&ml2, &c2);
    struct raft_log_ops ops2;
    raft_memlog_ops(&ml2, &ops2);
    struct raft_config cfg = {.id = 2,
                              .group = 1,
                              .election_ticks = 10,
                              .heartbeat_ticks = 1,
                              .max_inflight = 4,
                              .max_msg_entries = 8,
                              .max_apply_entries = 8,
                              .rand_seed = 1,
                              .applied = -1};
    struct raft *r2 = raft_new(&cfg, &ops2, NULL);
    assert_non_null(r2);
    struct raft_msg d0 = d;
    d0.index = -1;
    d0.log_term = 0;
    assert_int_equal(raft_step(r2, &d0), LM_E_INVALID);
    raft_free(r2);
    raft_memlog_deinit(&ml2);
    /* A read failure while resolving is the log's error. */
    ops.entry_at = failing_entry_at;
    fail_log_reads = true;
    assert_int_equal(raft_log_resolve(&ops, &d, out, 4), LM_E_IO);
    assert_int_equal(raft_msg_resolve(&w, &d, &ops), LM_E_IO);
    fail_log_reads = false;
    assert_int_equal(raft_log_resolve(&ops, &d, out, 4), 0);
    /* Overwritten by another term from offset 5 (a deposed leader took the new leader's
     * entries): the batch ending at 7 is not the one named. */
    struct raft_entry o[] = {ent(5, 7, 3, "eee")};
    assert_int_equal(raft_memlog_write(&ml, o, 1), 0);
    assert_int_equal(raft_log_resolve(&ops, &d, out, 4), LM_E_NOT_FOUND);
    /* Truncated shorter than the range. */
    struct raft_entry t[] = {ent(5, 5, 3, "f")};
    assert_int_equal(raft_memlog_write(&ml, t, 1), 0);
    assert_int_equal(raft_log_resolve(&ops, &d, out, 4), LM_E_NOT_FOUND);
    /* Compacted past the start of the range; a range above the new start still resolves. */
    struct raft_msg d2 = {.type = RAFT_MSG_APP,
                          .index = 4,
                          .log_term = 1,
                          .ent_last = 5,
                          .ent_last_term = 3,
                          .n_entries = 1};
    assert_int_equal(raft_log_resolve(&ops, &d2, out, 4), 0);
    assert_int_equal(raft_memlog_compact(&ml, 4, NULL, 0), 0);
    struct raft_msg d3 = {.type = RAFT_MSG_APP,
                          .index = 0,
                          .log_term = 1,
                          .ent_last = 5,
                          .ent_last_term = 3,
                          .n_entries = 2};
    assert_int_equal(raft_log_resolve(&ops, &d3, out, 4), LM_E_OUT_OF_RANGE);
    assert_int_equal(raft_log_resolve(&ops, &d2, out, 4), 0); /* prev = log start */
    raft_memlog_deinit(&ml);
}

/* The leader names entries for a lagging follower; before the shell resolves the descriptor the
 * log start moves past them. The shell reports it; the follower goes back to probing and the
 * next tick sends it the log start instead, after which it catches up. */
/* Take the first queued message from -> to of a type out of the queue (owned by the caller). */
static bool take_msg(struct harness *h, uint32_t from, uint8_t type, struct raft_msg *out)
{
    for (size_t i = 0; i < h->n_q; i++) {
        if (h->q[i].m.from == from && h->q[i].m.type == type) {
            *out = h->q[i].m;
            memmove(&h->q[i], &h->q[i + 1], (h->n_q - i - 1) * sizeof(h->q[0]));
            h->n_q--;
            return true;
        }
    }
    return false;
}

static void test_descriptor_compacted_before_send(void **state)
{
    (void)state;
    struct harness h;
    lagging_cluster(&h, true, true);
    h_tick(&h, 1);
    h_deliver_all(&h); /* heartbeats */
    h_deliver_all(&h); /* responses: n1 appends to n3 from its optimistic next (nothing) */
    h_deliver_all(&h); /* n3 rejects: it lacks the prev */
    struct raft_msg resp;
    assert_true(take_msg(&h, 3, RAFT_MSG_APP_RESP, &resp));
    assert_true(resp.reject);
    /* Step the rejection without processing: n1 probes n3 from offset 1 with a descriptor for
     * (0, 6], still inside n1. */
    assert_int_equal(raft_step(h.nodes[1].r, &resp), 0);
    raft_msg_deinit(&resp);
    const struct raft_progress *pr = raft_progress(h.nodes[1].r, 3);
    assert_int_equal(pr->state, RAFT_PR_PROBE);
    assert_int_equal(pr->next, 1);
    assert_true(pr->probe_sent);
    assert_int_equal(h_compact(&h, 1, 4), 0); /* retention: offsets 0..4 are gone */
    h_process(&h, 1); /* the shell cannot resolve (0, ...]: reported, not sent */
    assert_int_equal(h.nodes[1].unsent, 1);
    assert_int_equal(queued(&h, 1, 3, RAFT_MSG_APP), 0);
    pr = raft_progress(h.nodes[1].r, 3);
    assert_int_equal(pr->state, RAFT_PR_PROBE);
    assert_false(pr->probe_sent);
    h_tick(&h, 1); /* retry: prev is below the log start now, so LOG_START */
    assert_int_equal(queued(&h, 1, 3, RAFT_MSG_LOG_START), 1);
    for (int i = 0; i < 3; i++) {
        h_stabilize(&h);
        h_tick(&h, 1);
    }
    h_stabilize(&h);
    assert_int_equal(h.nodes[3].disk.start.index, 4);
    assert_int_equal(raft_commit(h.nodes[3].r), 6);
    assert_int_equal(raft_memlog_last(&h.nodes[3].disk), 6);
    h_deinit(&h);
}

/* raft_append_unsent on a follower in pipelined replication: back to probing from the match. */
static void test_append_unsent_probe(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h, 3, 3, true, true, NULL);
    assert_int_equal(raft_campaign(h.nodes[1].r), 0);
    h_stabilize(&h);
    const struct raft_progress *pr = raft_progress(h.nodes[1].r, 2);
    assert_int_equal(pr->state, RAFT_PR_REPLICATE);
    for (int i = 0; i < 20; i++)
        assert_int_equal(raft_propose(h.nodes[1].r, "p", 1, 1, NULL), 0);
    struct raft_ready rd;
    raft_ready(h.nodes[1].r, &rd);
    const struct raft_msg *app = NULL;
    for (size_t i = 0; i < rd.n_msgs; i++)
        if (rd.msgs[i].type == RAFT_MSG_APP && rd.msgs[i].to == 2 && !app)
            app = &rd.msgs[i];
    assert_non_null(app);
    assert_null(app->entries); /* a descriptor */
    assert_int_equal(app->n_entries, 8);
    assert_int_equal(app->ent_last, 8);
    assert_int_equal(app->ent_last_term, 1);
    assert_int_equal(raft_persisted(h.nodes[1].r, rd.persist_id), 0);
    pr = raft_progress(h.nodes[1].r, 2);
    assert_true(pr->inflight_count > 0);
    assert_int_equal(raft_append_unsent(h.nodes[1].r, app, LM_E_NOT_FOUND), 0);
    pr = raft_progress(h.nodes[1].r, 2);
    assert_int_equal(pr->state, RAFT_PR_PROBE);
    assert_int_equal(pr->next, pr->match + 1);
    assert_int_equal(pr->inflight_count, 0);
    struct raft_msg bad = *app;
    bad.type = RAFT_MSG_HEARTBEAT;
    assert_int_equal(raft_append_unsent(h.nodes[1].r, &bad, LM_E_NOT_FOUND), LM_E_INVALID);
    h_deinit(&h);
}

/* An append message carries entries up to max_msg_bytes (the first one whatever its size): a
 * follower behind by many large batches catches up in bounded messages, never in one that the
 * shell cannot read (it gave up on such a message, and the same one was built again). */
static void test_append_bytes_bound(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h, 3, 3, true, true, NULL);
    for (uint32_t i = 1; i <= 3; i++) {
        h.nodes[i].cfg.max_msg_bytes = 250;
        h_crash(&h, i);
        h_restart(&h, i);
    }
    assert_int_equal(raft_campaign(h.nodes[1].r), 0);
    h_stabilize(&h);
    assert_int_equal(h_leader(&h), 1);
    char big[100], huge[400];
    memset(big, 'b', sizeof(big));
    memset(huge, 'h', sizeof(huge));
    assert_int_equal(raft_propose(h.nodes[1].r, huge, sizeof(huge), 1, NULL), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(raft_propose(h.nodes[1].r, big, sizeof(big), 1, NULL), 0);
    struct raft_ready rd;
    raft_ready(h.nodes[1].r, &rd);
    uint32_t seen = 0;
    for (size_t i = 0; i < rd.n_msgs; i++) {
        if (rd.msgs[i].type != RAFT_MSG_APP || rd.msgs[i].to != 2)
            continue;
        /* the 400-byte entry alone, then two of 100 bytes per message */
        assert_int_equal(rd.msgs[i].n_entries, seen == 0 ? 1 : 2);
        seen++;
    }
    assert_true(seen >= 2);
    assert_int_equal(raft_persisted(h.nodes[1].r, rd.persist_id), 0);
    h_stabilize(&h);
    for (int k = 0; k < 30; k++) {
        for (uint32_t i = 1; i <= 3; i++)
            h_tick(&h, i);
        h_stabilize(&h);
    }
    assert_int_equal(raft_last_index(h.nodes[2].r), raft_last_index(h.nodes[1].r));
    assert_int_equal(raft_last_index(h.nodes[3].r), raft_last_index(h.nodes[1].r));
    assert_int_equal(raft_commit(h.nodes[1].r), raft_last_index(h.nodes[1].r));
    h_deinit(&h);
}

/* ---------- quiescence (raft.h, "QUIESCENCE") ---------- */

/* A 3-voter group led by node 1 with offsets 0..1 committed everywhere and every follower
 * heard from since the last check-quorum period began. */
static void quiet_setup(struct harness *h)
{
    h_init(h, 3, 3, true, true, NULL);
    assert_int_equal(raft_campaign(h->nodes[1].r), 0);
    h_stabilize(h);
    assert_int_equal(h_leader(h), 1);
    assert_int_equal(raft_propose(h->nodes[1].r, "x", 1, 1, NULL), 0);
    h_stabilize(h);
    /* still replicating: nothing to quiesce on yet is refused below, then heartbeats */
    for (int i = 0; i < 3; i++) {
        for (uint32_t n = 1; n <= 3; n++)
            h_tick(h, n);
        h_stabilize(h);
    }
    for (uint32_t n = 1; n <= 3; n++)
        assert_int_equal(raft_commit(h->nodes[n].r), 1);
}

static bool all_quiescent(struct harness *h)
{
    for (uint32_t n = 1; n <= h->n; n++)
        if (h->nodes[n].up && !raft_quiescent(h->nodes[n].r))
            return false;
    return true;
}

/* Quiescing stops every message and every timer; an append wakes the whole group. */
static void test_quiesce_wakes_on_append(void **state)
{
    (void)state;
    struct harness h;
    quiet_setup(&h);
    assert_false(raft_quiesce(h.nodes[2].r)); /* followers do not decide */
    int64_t last;
    assert_int_equal(raft_propose(h.nodes[1].r, "y", 1, 1, &last), 0);
    assert_false(raft_quiesce(h.nodes[1].r)); /* not replicated yet */
    h_stabilize(&h);
    assert_true(raft_quiesce(h.nodes[1].r));
    h_stabilize(&h);
    assert_true(all_quiescent(&h));
    uint64_t term = raft_term(h.nodes[1].r);
    uint64_t delivered = h.msgs_delivered;
    for (int i = 0; i < 200; i++) {
        for (uint32_t n = 1; n <= 3; n++)
            h_tick(&h, n);
        h_stabilize(&h);
    }
    assert_int_equal(h.msgs_delivered, delivered); /* no heartbeat, no election */
    assert_true(all_quiescent(&h));
    assert_int_equal(raft_term(h.nodes[1].r), term);
    assert_int_equal(h_leader(&h), 1);
    /* an append wakes the leader, and its message the followers */
    assert_int_equal(raft_propose(h.nodes[1].r, "z", 1, 1, &last), 0);
    assert_false(raft_quiescent(h.nodes[1].r));
    h_stabilize(&h);
    for (uint32_t n = 1; n <= 3; n++) {
        assert_false(raft_quiescent(h.nodes[n].r));
        assert_int_equal(raft_commit(h.nodes[n].r), last);
    }
    /* and the group quiesces again once it is all replicated */
    for (int i = 0; i < 2; i++) {
        for (uint32_t n = 1; n <= 3; n++)
            h_tick(&h, n);
        h_stabilize(&h);
    }
    assert_true(raft_quiesce(h.nodes[1].r));
    h_stabilize(&h);
    assert_true(all_quiescent(&h));
    h_deinit(&h);
}

/* A quiescent follower never times out by itself: once the shell reports the leader's node
 * lost (raft_wake), the followers elect a new leader, one term up. */
static void test_quiesce_leader_lost(void **state)
{
    (void)state;
    struct harness h;
    quiet_setup(&h);
    assert_true(raft_quiesce(h.nodes[1].r));
    h_stabilize(&h);
    assert_true(all_quiescent(&h));
    uint64_t term = raft_term(h.nodes[1].r);
    h_crash(&h, 1);
    for (int i = 0; i < 100; i++) {
        h_tick(&h, 2);
        h_tick(&h, 3);
        h_stabilize(&h);
    }
    assert_true(raft_quiescent(h.nodes[2].r) && raft_quiescent(h.nodes[3].r));
    assert_int_equal(raft_term(h.nodes[2].r), term);
    /* the two shells learn of it at different times, as they would */
    raft_wake(h.nodes[2].r);
    for (int i = 0; i < 3; i++)
        h_tick(&h, 2);
    raft_wake(h.nodes[3].r);
    uint32_t leader = 0;
    for (int i = 0; i < 100 && leader == 0; i++) {
        h_tick(&h, 2);
        h_tick(&h, 3);
        h_stabilize(&h);
        leader = h_leader(&h);
    }
    assert_true(leader == 2 || leader == 3);
    assert_true(raft_term(h.nodes[leader].r) > term);
    assert_false(raft_quiescent(h.nodes[5 - leader].r));
    assert_int_equal(raft_leader(h.nodes[5 - leader].r), leader);
    h_deinit(&h);
}

/* A follower woken by mistake (its shell wrongly lost the leader's node) campaigns after its
 * timeout; its pre-vote wakes the leader, whose heartbeats bring it back: no new term, no
 * storm, and the group quiesces again. A quiescent follower refuses votes (its lease). */
/* raft_hold_elections: held followers never campaign, however long no leader speaks; the one
 * not held does and wins with their votes; released, a follower campaigns at its next timeout. */
static void test_hold_elections(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h, 3, 3, true, true, NULL);
    raft_hold_elections(h.nodes[2].r, true);
    raft_hold_elections(h.nodes[3].r, true);
    h_isolate(&h, 1);
    for (int i = 0; i < 100; i++) {
        for (uint32_t n = 1; n <= 3; n++)
            h_tick(&h, n);
        h_stabilize(&h);
    }
    for (uint32_t n = 2; n <= 3; n++) {
        assert_int_equal(raft_role(h.nodes[n].r), RAFT_FOLLOWER);
        assert_int_equal(raft_term(h.nodes[n].r), 0);
    }
    assert_int_equal(h_leader(&h), RAFT_NONE);
    h_heal(&h); /* node 1 campaigns at its next timeout and gets the held nodes' votes */
    for (int i = 0; i < 40 && h_leader(&h) != 1; i++) {
        for (uint32_t n = 1; n <= 3; n++)
            h_tick(&h, n);
        h_stabilize(&h);
    }
    assert_int_equal(h_leader(&h), 1);
    /* node 1 gone: node 3 still held, node 2 released, so node 2 takes over */
    h_isolate(&h, 1);
    raft_hold_elections(h.nodes[2].r, false);
    for (int i = 0; i < 60 && raft_role(h.nodes[2].r) != RAFT_LEADER; i++) {
        for (uint32_t n = 1; n <= 3; n++)
            h_tick(&h, n);
        h_stabilize(&h);
    }
    assert_int_equal(raft_role(h.nodes[2].r), RAFT_LEADER);
    assert_int_equal(raft_role(h.nodes[3].r), RAFT_FOLLOWER);
    h_deinit(&h);
}

static void test_quiesce_no_storm(void **state)
{
    (void)state;
    struct harness h;
    quiet_setup(&h);
    assert_true(raft_quiesce(h.nodes[1].r));
    h_stabilize(&h);
    uint64_t term = raft_term(h.nodes[1].r);
    /* a vote for a higher term at a quiescent follower: refused, the follower keeps its
     * leader */
    struct raft_msg v = {.type = RAFT_MSG_VOTE,
                         .group = 1,
                         .from = 3,
                         .to = 2,
                         .term = term + 5,
                         .index = 100,
                         .log_term = term + 4};
    assert_int_equal(raft_step(h.nodes[2].r, &v), 0);
    h_process(&h, 2);
    assert_int_equal(raft_term(h.nodes[2].r), term);
    assert_int_equal(raft_leader(h.nodes[2].r), 1);
    h_stabilize(&h);
    raft_wake(h.nodes[3].r);
    for (int i = 0; i < 100; i++) {
        for (uint32_t n = 1; n <= 3; n++)
            h_tick(&h, n);
        h_stabilize(&h);
    }
    assert_int_equal(h_leader(&h), 1);
    for (uint32_t n = 1; n <= 3; n++)
        assert_int_equal(raft_term(h.nodes[n].r), term);
    assert_true(raft_quiesce(h.nodes[1].r));
    h_stabilize(&h);
    assert_true(all_quiescent(&h));
    h_deinit(&h);
}

/* raft_wake_silent: a follower whose leader has been silent for an election timeout grants a
 * vote at once, as an awake follower would; one that heard from it lately refuses. */
static void test_quiesce_wake_silent(void **state)
{
    (void)state;
    struct harness h;
    quiet_setup(&h);
    assert_true(raft_quiesce(h.nodes[1].r));
    h_stabilize(&h);
    uint64_t term = raft_term(h.nodes[1].r);
    int64_t last = raft_last_index(h.nodes[2].r);
    /* a leader wrongly taken for lost: the follower's probe wakes it, its heartbeats keep
     * everybody following it */
    raft_wake_silent(h.nodes[3].r, 1000);
    h_stabilize(&h);
    assert_false(raft_quiescent(h.nodes[1].r));
    for (int i = 0; i < 40; i++) {
        for (uint32_t n = 1; n <= 3; n++)
            h_tick(&h, n);
        h_stabilize(&h);
    }
    assert_int_equal(h_leader(&h), 1);
    assert_int_equal(raft_term(h.nodes[3].r), term);
    assert_true(raft_quiesce(h.nodes[1].r));
    h_stabilize(&h);
    assert_true(all_quiescent(&h));
    /* a leader really gone */
    h_crash(&h, 1);
    raft_wake_silent(h.nodes[2].r, 3); /* heard 3 ticks ago: still its leader's */
    raft_wake_silent(h.nodes[3].r, 1000);
    assert_false(raft_quiescent(h.nodes[2].r) || raft_quiescent(h.nodes[3].r));
    h_stabilize(&h); /* the probes are lost */
    h_tick(&h, 3);   /* one tick short of the timeout, then there */
    for (uint32_t to = 2; to <= 3; to++) {
        struct raft_msg v = {.type = RAFT_MSG_VOTE,
                             .group = 1,
                             .from = 5 - to,
                             .to = to,
                             .term = term + 1,
                             .index = last,
                             .log_term = term};
        assert_int_equal(raft_step(h.nodes[to].r, &v), 0);
        struct raft_ready rd;
        raft_ready(h.nodes[to].r, &rd);
        if (rd.persist_id)
            assert_int_equal(raft_persisted(h.nodes[to].r, rd.persist_id), 0);
        raft_ready(h.nodes[to].r, &rd);
        if (to == 2) {
            assert_int_equal(raft_term(h.nodes[2].r), term); /* ignored: in its lease */
        } else {
            assert_int_equal(rd.n_msgs, 1);
            assert_int_equal(rd.msgs[0].type, RAFT_MSG_VOTE_RESP);
            assert_false(rd.msgs[0].reject);
        }
    }
    h_deinit(&h);
}

/* A follower missing the leader's last entry refuses to quiesce, which wakes the leader. */
static void test_quiesce_refused(void **state)
{
    (void)state;
    struct harness h;
    quiet_setup(&h);
    struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT,
                          .group = 1,
                          .from = 1,
                          .to = 2,
                          .term = raft_term(h.nodes[2].r),
                          .commit = 5,
                          .quiesce = true};
    assert_int_equal(raft_step(h.nodes[2].r, &hb), 0);
    assert_false(raft_quiescent(h.nodes[2].r));
    struct raft_ready rd;
    raft_ready(h.nodes[2].r, &rd);
    assert_int_equal(rd.n_msgs, 1);
    assert_int_equal(rd.msgs[0].type, RAFT_MSG_HEARTBEAT_RESP);
    assert_true(rd.msgs[0].reject);
    struct raft_msg resp = rd.msgs[0];
    if (rd.persist_id)
        assert_int_equal(raft_persisted(h.nodes[2].r, rd.persist_id), 0);
    assert_true(raft_quiesce(h.nodes[1].r));
    assert_int_equal(raft_step(h.nodes[1].r, &resp), 0);
    assert_false(raft_quiescent(h.nodes[1].r));
    h_stabilize(&h);
    h_deinit(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conf_codec),
        cmocka_unit_test(test_memlog),
        cmocka_unit_test(test_single_node_commit_after_persist),
        cmocka_unit_test(test_lone_resume),
        cmocka_unit_test(test_vote_persist_before_send),
        cmocka_unit_test(test_commit_only_current_term),
        cmocka_unit_test(test_ack_past_log_end_ignored),
        cmocka_unit_test(test_flow_control),
        cmocka_unit_test(test_learner_promotion),
        cmocka_unit_test(test_multi_coalesced_heartbeats),
        cmocka_unit_test(test_read_fail_on_append),
        cmocka_unit_test(test_read_fail_on_receiving_append),
        cmocka_unit_test(test_read_fail_on_vote),
        cmocka_unit_test(test_read_fail_on_commit),
        cmocka_unit_test(test_descriptor_resolve),
        cmocka_unit_test(test_descriptor_compacted_before_send),
        cmocka_unit_test(test_append_unsent_probe),
        cmocka_unit_test(test_append_bytes_bound),
        cmocka_unit_test(test_quiesce_wakes_on_append),
        cmocka_unit_test(test_quiesce_leader_lost),
        cmocka_unit_test(test_hold_elections),
        cmocka_unit_test(test_quiesce_no_storm),
        cmocka_unit_test(test_quiesce_refused),
        cmocka_unit_test(test_quiesce_wake_silent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
