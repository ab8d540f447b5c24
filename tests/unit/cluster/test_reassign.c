/* Reassignments (KIP-455): the PARTITION_REASSIGN record (check, apply, encoding, copy,
 * snapshot round trip), Kafka's adding/removing plan, and the leader's next Raft step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/cluster/meta_snapshot.h"
#include "broker/cluster/reassign.h"
#include "broker/meta/meta_state.h"
#include "broker/meta/meta_store.h"
#include "common/lm_err.h"

/* Encodes r, decodes it, gives the decoded copy what the controller's log gives a record at
 * offset (its move number, lm_meta_record_stamp; offset < 0: nothing, as a test applying a
 * record by hand) and applies it to s; returns the apply's result. */
static int via_log(struct lm_meta_state *s, const struct lm_meta_record *r, int64_t offset)
{
    uint8_t buf[512];
    int n = lm_meta_record_encode(r, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal((size_t)n, lm_meta_record_size(r));
    struct lm_meta_record d;
    struct lm_config_entry *dc;
    assert_int_equal(lm_meta_record_decode(buf, (size_t)n, &d, &dc), 0);
    assert_int_equal(d.type, r->type);
    /* a cut record never decodes, except without its trailer (as records written before it
     * existed): 1 byte, or 9 with a move number (trailers 3 and 4) */
    bool numbered = !r->reassign_keep && r->reassign_move > 0;
    struct lm_meta_record cut;
    struct lm_config_entry *cc;
    int crc = lm_meta_record_decode(buf, (size_t)n - 1, &cut, &cc);
    if ((r->reassign_done || r->reassign_keep) && !numbered) {
        assert_int_equal(crc, 0);
        assert_false(cut.reassign_done);
        assert_false(cut.reassign_keep);
        lm_meta_record_free(&cut);
    } else {
        assert_int_not_equal(crc, 0);
    }
    if (numbered) {
        assert_int_equal(lm_meta_record_decode(buf, (size_t)n - 9, &cut, &cc), 0);
        assert_false(cut.reassign_done);
        assert_int_equal(cut.reassign_move, 0);
        lm_meta_record_free(&cut);
    }
    assert_int_equal(d.reassign_done, r->reassign_done);
    assert_int_equal(d.reassign_keep, r->reassign_keep);
    /* a request's number is its log offset, never in its encoding */
    assert_int_equal(d.reassign_move, r->reassign_keep ? 0 : r->reassign_move);
    if (offset >= 0)
        lm_meta_record_stamp(&d, offset);
    int rc = lm_meta_state_apply(s, &d);
    lm_meta_record_free(&d);
    return rc;
}

static int via_wire(struct lm_meta_state *s, const struct lm_meta_record *r)
{
    return via_log(s, r, -1);
}

static void reg(struct lm_meta_state *s, int32_t id)
{
    struct lm_meta_record r = {.type = LM_META_BROKER_REGISTER,
                               .broker_id = id,
                               .incarnation = 1,
                               .rack = "",
                               .endpoints = "PLAINTEXT://127.0.0.1:9092"};
    assert_int_equal(lm_meta_state_apply(s, &r), 0);
}

/* topic "t": 2 partitions on nodes {1,2,3} and {2,3,1}, nodes 1-4 registered */
static void setup_topic(struct lm_meta_state *s)
{
    lm_meta_state_init(s);
    for (int32_t id = 1; id <= 4; id++)
        reg(s, id);
    int32_t rep[] = {1, 2, 3, 2, 3, 1};
    struct lm_meta_record t = {.type = LM_META_TOPIC_CREATE,
                               .topic = "t",
                               .partition_count = 2,
                               .replicas = rep,
                               .replication_factor = 3};
    memset(t.topic_id, 7, 16);
    assert_int_equal(lm_meta_state_apply(s, &t), 0);
    struct lm_meta_record lead = {.type = LM_META_PARTITION_LEADER,
                                  .topic = "t",
                                  .partition_count = 0,
                                  .broker_id = 1,
                                  .leader_epoch = 3,
                                  .isr_out = 1u << 2}; /* node 3 behind */
    assert_int_equal(lm_meta_state_apply(s, &lead), 0);
}

static void rec_of(const struct lm_meta_moved *m, const char *topic, struct lm_meta_record *r)
{
    *r = (struct lm_meta_record){.type = LM_META_PARTITION_REASSIGN,
                                 .topic = topic,
                                 .partition_count = m->partition,
                                 .replicas = m->replicas,
                                 .replication_factor = m->n,
                                 .adding = m->adding,
                                 .n_adding = m->n_adding,
                                 .removing = m->removing,
                                 .n_removing = m->n_removing};
}

static void test_plan(void **state)
{
    (void)state;
    struct lm_meta_moved m = {.partition = 5};
    int32_t cur[] = {1, 2, 3}, target[] = {1, 2, 4};
    assert_int_equal(lm_meta_reassign_plan(cur, 3, target, 3, &m), 0);
    assert_int_equal(m.partition, 5);
    int32_t want[] = {1, 2, 4, 3}; /* target, then the leaving replicas */
    assert_int_equal(m.n, 4);
    assert_memory_equal(m.replicas, want, sizeof(want));
    assert_int_equal(m.n_adding, 1);
    assert_int_equal(m.adding[0], 4);
    assert_int_equal(m.n_removing, 1);
    assert_int_equal(m.removing[0], 3);
    /* RF 1 -> 3 */
    int32_t one[] = {2}, three[] = {2, 3, 4};
    assert_int_equal(lm_meta_reassign_plan(one, 1, three, 3, &m), 0);
    assert_int_equal(m.n, 3);
    assert_int_equal(m.n_adding, 2);
    assert_int_equal(m.n_removing, 0);
    /* the same set reordered: done at once */
    int32_t reorder[] = {3, 1, 2};
    assert_int_equal(lm_meta_reassign_plan(cur, 3, reorder, 3, &m), 0);
    assert_int_equal(m.n_adding + m.n_removing, 0);
    assert_memory_equal(m.replicas, reorder, sizeof(reorder));
    /* refused: empty, duplicates, negative ids, a union past the bound */
    int32_t dup[] = {4, 4};
    assert_int_equal(lm_meta_reassign_plan(cur, 3, target, 0, &m), LM_E_INVALID);
    assert_int_equal(lm_meta_reassign_plan(cur, 3, dup, 2, &m), LM_E_INVALID);
    int32_t neg[] = {-1};
    assert_int_equal(lm_meta_reassign_plan(cur, 3, neg, 1, &m), LM_E_INVALID);
    int32_t big_a[LM_META_REPLICATION_MAX], big_b[LM_META_REPLICATION_MAX];
    for (int i = 0; i < LM_META_REPLICATION_MAX; i++) {
        big_a[i] = i;
        big_b[i] = 100 + i;
    }
    assert_int_equal(
        lm_meta_reassign_plan(big_a, LM_META_REPLICATION_MAX, big_b, LM_META_REPLICATION_MAX, &m),
        LM_E_INVALID);
}

static void test_record_apply_and_cancel(void **state)
{
    (void)state;
    struct lm_meta_state s;
    setup_topic(&s);
    const struct lm_meta_topic *t = lm_meta_state_find(&s, "t");
    int32_t cur[LM_META_REPLICATION_MAX];
    assert_int_equal(lm_meta_topic_current_replicas(t, 0, cur), 3);
    assert_false(lm_meta_topic_reassigning(t, 0));

    /* {1,2,3} -> {4,2,1}: replicas 4,2,1,3, adding 4, removing 3 */
    struct lm_meta_moved m = {.partition = 0};
    int32_t target[] = {4, 2, 1};
    assert_int_equal(lm_meta_reassign_plan(cur, 3, target, 3, &m), 0);
    struct lm_meta_record r;
    rec_of(&m, "t", &r);
    assert_int_equal(via_wire(&s, &r), 0);
    t = lm_meta_state_find(&s, "t");
    assert_true(lm_meta_topic_reassigning(t, 0));
    assert_false(lm_meta_topic_reassigning(t, 1));
    int16_t n;
    const int32_t *rep = lm_meta_topic_replicas(t, 0, &n);
    assert_int_equal(n, 4); /* Metadata reports the union during the move */
    assert_int_equal(rep[0], 4);
    assert_int_equal(rep[3], 3);
    /* the replicas holding data: the original ones */
    assert_int_equal(lm_meta_topic_current_replicas(t, 0, cur), 3);
    assert_int_equal(cur[0], 2);
    assert_int_equal(cur[1], 1);
    assert_int_equal(cur[2], 3);
    /* the out-of-sync bit followed node 3 to its new position; the adding replica is never in
     * the ISR */
    assert_int_equal(lm_meta_topic_isr_out(t, 0), 1u << 3);
    int32_t isr[8], off[8], n_isr, n_off;
    lm_meta_state_partition_isr(&s, t, 0, 1, isr, &n_isr, off, &n_off);
    assert_int_equal(n_isr, 2);
    assert_int_equal(isr[0], 2);
    assert_int_equal(isr[1], 1);
    assert_int_equal(lm_meta_state_partition_leader(&s, t, 0, 1), 1);

    /* a copy and a snapshot carry it */
    struct lm_meta_state c;
    assert_int_equal(lm_meta_state_copy(&c, &s), 0);
    assert_true(lm_meta_topic_reassigning(lm_meta_state_find(&c, "t"), 0));
    lm_meta_state_deinit(&c);
    /* ... and the retired topic ids, oldest first */
    struct lm_meta_record ret = {.type = LM_META_TOPIC_RETIRED};
    for (uint8_t i = 1; i <= 3; i++) {
        memset(ret.topic_id, 0x50 + i, 16);
        assert_int_equal(lm_meta_state_apply(&s, &ret), 0);
    }
    /* ... and the producer ids granted so far (a node loading it asks past them) */
    struct lm_meta_record block = {.type = LM_META_PRODUCER_ID_BLOCK,
                                   .broker_id = 2,
                                   .producer_id_from = 0,
                                   .producer_id_next = 10000};
    assert_int_equal(lm_meta_state_apply(&s, &block), 0);
    uint8_t *snap = NULL;
    size_t snap_len = 0;
    assert_int_equal(meta_snapshot_encode(&s, 41, &snap, &snap_len), 0);
    char dir[] = "/tmp/lm-reassign-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct lm_meta_store *store = NULL;
    assert_int_equal(lm_meta_store_open(dir, &store), 0);
    assert_int_equal(lm_meta_store_set_cluster(store, 1), 0);
    int64_t last = -1;
    assert_int_equal(meta_snapshot_load(store, snap, snap_len, &last), 0);
    assert_int_equal(last, 41);
    struct lm_meta_snapshot *img = lm_meta_store_snapshot(store);
    assert_int_equal(img->state.retired_count, 3);
    assert_int_equal(img->state.producer_id_next, 10000);
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(lm_meta_state_retired_at(&img->state, i)[0], 0x51 + i);
    const struct lm_meta_topic *lt = lm_meta_state_find(&img->state, "t");
    const struct lm_meta_moved *lm = lm_meta_topic_moved(lt, 0);
    assert_non_null(lm);
    assert_int_equal(lm->n, 4);
    assert_memory_equal(lm->replicas, m.replicas, 4 * sizeof(int32_t));
    assert_int_equal(lm->n_adding, 1);
    assert_int_equal(lm->adding[0], 4);
    assert_int_equal(lm->n_removing, 1);
    assert_int_equal(lm->removing[0], 3);
    assert_int_equal(lm_meta_topic_isr_out(lt, 0), 1u << 3);
    assert_null(lm_meta_topic_moved(lt, 1));
    lm_meta_snapshot_release(img);
    lm_meta_store_close(store);
    free(snap);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);

    /* the leader's completion applies only to the move in progress, in the target's order */
    int32_t wrong[] = {2, 4, 1}, right[] = {4, 2, 1};
    struct lm_meta_record fin_rec = {.type = LM_META_PARTITION_REASSIGN,
                                     .topic = "t",
                                     .partition_count = 0,
                                     .replicas = wrong,
                                     .replication_factor = 3,
                                     .reassign_done = true};
    assert_int_equal(via_wire(&s, &fin_rec), LM_E_STATE);
    fin_rec.partition_count = 1; /* nothing in progress there */
    fin_rec.replicas = right;
    assert_int_equal(via_wire(&s, &fin_rec), LM_E_STATE);
    struct lm_meta_state before;
    assert_int_equal(lm_meta_state_copy(&before, &s), 0);
    fin_rec.partition_count = 0;
    assert_int_equal(via_wire(&s, &fin_rec), 0);
    t = lm_meta_state_find(&s, "t");
    assert_false(lm_meta_topic_reassigning(t, 0));
    rep = lm_meta_topic_replicas(t, 0, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(rep, right, sizeof(right));
    assert_int_equal(lm_meta_topic_isr_out(t, 0), 0); /* node 3, the one behind, left */
    lm_meta_state_deinit(&s);
    s = before; /* back to the move in progress */
    t = lm_meta_state_find(&s, "t");

    /* cancel: back to the original replicas, which are the topic's row: no entry left */
    int32_t orig[] = {1, 2, 3};
    struct lm_meta_record back = {.type = LM_META_PARTITION_REASSIGN,
                                  .topic = "t",
                                  .partition_count = 0,
                                  .replicas = orig,
                                  .replication_factor = 3};
    assert_int_equal(via_wire(&s, &back), 0);
    t = lm_meta_state_find(&s, "t");
    assert_null(lm_meta_topic_moved(t, 0));
    assert_int_equal(t->moved_count, 0);
    assert_int_equal(lm_meta_topic_isr_out(t, 0), 1u << 2);

    /* completion to another set and order stays as an entry without adding/removing */
    int32_t done[] = {2, 1, 4};
    struct lm_meta_record fin = back;
    fin.replicas = done;
    fin.partition_count = 1;
    assert_int_equal(via_wire(&s, &fin), 0);
    t = lm_meta_state_find(&s, "t");
    assert_false(lm_meta_topic_reassigning(t, 1));
    rep = lm_meta_topic_replicas(t, 1, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(rep, done, sizeof(done));
    /* and it survives the topic growing */
    int32_t more[] = {3, 4, 1};
    struct lm_meta_record grow = {.type = LM_META_PARTITIONS_SET,
                                  .topic = "t",
                                  .partition_count = 3,
                                  .replicas = more,
                                  .replication_factor = 3,
                                  .replicas_partitions = 1};
    assert_int_equal(lm_meta_state_apply(&s, &grow), 0);
    t = lm_meta_state_find(&s, "t");
    rep = lm_meta_topic_replicas(t, 1, &n);
    assert_memory_equal(rep, done, sizeof(done));
    rep = lm_meta_topic_replicas(t, 2, &n);
    assert_memory_equal(rep, more, sizeof(more));
    lm_meta_state_deinit(&s);
}

static void test_record_refusals(void **state)
{
    (void)state;
    struct lm_meta_state s;
    setup_topic(&s);
    int32_t rep[] = {1, 2, 4}, add[] = {4}, rem[] = {3}, dup[] = {1, 1};
    struct lm_meta_record r = {.type = LM_META_PARTITION_REASSIGN,
                               .topic = "nope",
                               .partition_count = 0,
                               .replicas = rep,
                               .replication_factor = 3};
    assert_int_equal(lm_meta_state_apply(&s, &r), LM_E_NOT_FOUND);
    r.topic = "t";
    r.partition_count = 2; /* past the count */
    assert_int_equal(lm_meta_state_apply(&s, &r), LM_E_NOT_FOUND);
    r.partition_count = 0;
    r.replicas = dup;
    r.replication_factor = 2;
    assert_int_equal(lm_meta_state_apply(&s, &r), LM_E_INVALID);
    r.replicas = rep;
    r.replication_factor = 3;
    r.removing = rem; /* removing a node that is not a replica */
    r.n_removing = 1;
    assert_int_equal(lm_meta_state_apply(&s, &r), LM_E_INVALID);
    r.removing = add;
    r.adding = add; /* the same node added and removed */
    r.n_adding = 1;
    assert_int_equal(lm_meta_state_apply(&s, &r), LM_E_INVALID);
    r.removing = rep; /* every replica leaving */
    r.n_removing = 3;
    r.n_adding = 0;
    assert_int_equal(lm_meta_state_apply(&s, &r), LM_E_INVALID);
    /* a topic without an assignment (a single node) is never reassigned */
    struct lm_meta_record single = {
        .type = LM_META_TOPIC_CREATE, .topic = "solo", .partition_count = 1};
    memset(single.topic_id, 9, 16);
    assert_int_equal(lm_meta_state_apply(&s, &single), 0);
    r.topic = "solo";
    r.n_removing = 0;
    assert_int_equal(lm_meta_state_apply(&s, &r), LM_E_INVALID);
    assert_int_equal(lm_meta_state_find(&s, "t")->moved_count, 0);
    lm_meta_state_deinit(&s);
}

/* ---- the leader's next step ---- */

struct caught {
    int32_t nodes[4];
    int n;
};

static bool is_caught(void *ctx, int32_t node)
{
    const struct caught *c = ctx;
    for (int i = 0; i < c->n; i++)
        if (c->nodes[i] == node)
            return true;
    return false;
}

static struct raft_conf conf_of(const int32_t *voters, int nv, const int32_t *learners, int nl)
{
    struct raft_conf c = {0};
    for (int i = 0; i < nv; i++)
        c.voters[c.n_voters++] = (uint32_t)voters[i] + 1u;
    for (int i = 0; i < nl; i++)
        c.learners[c.n_learners++] = (uint32_t)learners[i] + 1u;
    return c;
}

/* A request's record (AlterPartitionReassignments, reassign_keep) applies only while it lists
 * every replica listed now: one planned from an image that predates the move in progress (or
 * racing a request planned from the same image) would drop the replica being added, which the
 * Raft group may count as a voter, at once instead of through the leader's removal. */
static void test_request_keeps_listed(void **state)
{
    (void)state;
    struct lm_meta_state s;
    setup_topic(&s);
    const struct lm_meta_topic *t = lm_meta_state_find(&s, "t");
    int32_t cur[LM_META_REPLICATION_MAX];
    assert_int_equal(lm_meta_topic_current_replicas(t, 0, cur), 3);
    /* two requests planned from the same image {1,2,3}: to {4,2,1}, and a reorder {3,2,1} */
    struct lm_meta_moved a = {.partition = 0}, b = {.partition = 0};
    int32_t ta[] = {4, 2, 1}, tb[] = {3, 2, 1};
    assert_int_equal(lm_meta_reassign_plan(cur, 3, ta, 3, &a), 0);
    assert_int_equal(lm_meta_reassign_plan(cur, 3, tb, 3, &b), 0);
    struct lm_meta_record ra, rb;
    rec_of(&a, "t", &ra);
    rec_of(&b, "t", &rb);
    ra.reassign_keep = rb.reassign_keep = true;
    assert_int_equal(via_wire(&s, &ra), 0);
    /* the second would drop node 4, being added */
    assert_int_equal(via_wire(&s, &rb), LM_E_STATE);
    t = lm_meta_state_find(&s, "t");
    int16_t n;
    const int32_t *rep = lm_meta_topic_replicas(t, 0, &n);
    int32_t want[] = {4, 2, 1, 3};
    assert_int_equal(n, 4);
    assert_memory_equal(rep, want, sizeof(want));
    /* a cancel planned from this image keeps them all: 4 leaves as a removed replica */
    int16_t n_full;
    const int32_t *full = lm_meta_topic_replicas(t, 0, &n_full);
    int16_t n_cur = lm_meta_topic_current_replicas(t, 0, cur);
    struct lm_meta_moved c = {.partition = 0};
    assert_int_equal(lm_meta_reassign_plan(full, n_full, cur, n_cur, &c), 0);
    struct lm_meta_record rc;
    rec_of(&c, "t", &rc);
    rc.reassign_keep = true;
    assert_int_equal(via_wire(&s, &rc), 0);
    t = lm_meta_state_find(&s, "t");
    const struct lm_meta_moved *m = lm_meta_topic_moved(t, 0);
    assert_non_null(m);
    assert_int_equal(m->n_removing, 1);
    assert_int_equal(m->removing[0], 4);
    /* a request and a completion at once is not a record */
    rc.reassign_done = true;
    assert_int_equal(lm_meta_state_apply(&s, &rc), LM_E_INVALID);
    /* only the leader's completion drops node 4 (the target in the cancel's order) */
    int32_t orig[] = {2, 1, 3};
    struct lm_meta_record fin = {.type = LM_META_PARTITION_REASSIGN,
                                 .topic = "t",
                                 .partition_count = 0,
                                 .replicas = orig,
                                 .replication_factor = 3,
                                 .reassign_done = true};
    assert_int_equal(via_wire(&s, &fin), 0);
    t = lm_meta_state_find(&s, "t");
    assert_false(lm_meta_topic_reassigning(t, 0));
    lm_meta_state_deinit(&s);
}

/* The record of a move of partition 0 of "t" from the replicas it lists now to target, as
 * AlterPartitionReassignments plans it (from every replica listed), into *m and *r. */
static void request_of(const struct lm_meta_state *s, const int32_t *target, int16_t n_target,
                       struct lm_meta_moved *m, struct lm_meta_record *r)
{
    const struct lm_meta_topic *t = lm_meta_state_find(s, "t");
    int16_t n_full;
    const int32_t *full = lm_meta_topic_replicas(t, 0, &n_full);
    *m = (struct lm_meta_moved){.partition = 0};
    assert_int_equal(lm_meta_reassign_plan(full, n_full, target, n_target, m), 0);
    rec_of(m, "t", r);
    r->reassign_keep = true;
}

/* Hole B: the leader's completion of a move, retried late (up to 15 s, twice across a
 * controller change), after a cancel put a replica back and a new move to the same target
 * started from replicas that include it, must not finish the new move: it would drop that
 * replica at once, which the group may count as a voter again (its node then deletes its log).
 * Only the completion of the new move, sent once the group removed it, drops it. */
static void test_late_done_after_cancel(void **state)
{
    (void)state;
    struct lm_meta_state s;
    setup_topic(&s);
    int32_t target[] = {4, 2, 1}; /* node 3 (R) leaves, node 4 joins */
    /* M1, committed at offset 10: {1,2,3} -> {4,2,1} */
    struct lm_meta_moved m1, mc, m2;
    struct lm_meta_record r1, rc, r2;
    request_of(&s, target, 3, &m1, &r1);
    assert_int_equal(via_log(&s, &r1, 10), 0);
    const struct lm_meta_topic *t = lm_meta_state_find(&s, "t");
    const struct lm_meta_moved *m = lm_meta_topic_moved(t, 0);
    assert_non_null(m);
    assert_int_equal(m->move, 11);
    /* the leader's group reaches {4,2,1}; it reports M1 done with the number its image shows,
     * and that submission is held up */
    struct lm_meta_record late = {.type = LM_META_PARTITION_REASSIGN,
                                  .topic = "t",
                                  .partition_count = 0,
                                  .replicas = target,
                                  .replication_factor = 3,
                                  .reassign_done = true,
                                  .reassign_move = m->move};
    /* a cancel (offset 12): back to {2,1,3}, node 4 leaving; the leader re-adds node 3 */
    int32_t orig[LM_META_REPLICATION_MAX];
    int16_t n_orig = lm_meta_topic_current_replicas(t, 0, orig);
    assert_int_equal(n_orig, 3);
    request_of(&s, orig, n_orig, &mc, &rc);
    assert_int_equal(via_log(&s, &rc, 12), 0);
    t = lm_meta_state_find(&s, "t");
    assert_int_equal(lm_meta_topic_moved(t, 0)->move, 13);
    /* M2 (offset 14), the same target again, planned from {2,1,3,4}: node 3 leaves again */
    request_of(&s, target, 3, &m2, &r2);
    assert_int_equal(m2.n_removing, 1);
    assert_int_equal(m2.removing[0], 3);
    assert_int_equal(via_log(&s, &r2, 14), 0);
    t = lm_meta_state_find(&s, "t");
    m = lm_meta_topic_moved(t, 0);
    assert_int_equal(m->move, 15);
    assert_true(lm_meta_topic_reassigning(t, 0));
    /* the late completion of M1 (offset 16) names M2's target, in order, but not M2: stale */
    assert_int_equal(via_log(&s, &late, 16), LM_E_STATE);
    t = lm_meta_state_find(&s, "t");
    assert_true(lm_meta_topic_reassigning(t, 0));
    int16_t n;
    const int32_t *rep = lm_meta_topic_replicas(t, 0, &n);
    int32_t still[] = {4, 2, 1, 3};
    assert_int_equal(n, 4);
    assert_memory_equal(rep, still, sizeof(still)); /* node 3 still listed */
    assert_int_equal(lm_meta_topic_moved(t, 0)->move, 15);

    /* the controller's snapshot keeps the move's number (trailer 4) */
    uint8_t *snap = NULL;
    size_t snap_len = 0;
    assert_int_equal(meta_snapshot_encode(&s, 16, &snap, &snap_len), 0);
    char dir[] = "/tmp/lm-reassign-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct lm_meta_store *store = NULL;
    assert_int_equal(lm_meta_store_open(dir, &store), 0);
    assert_int_equal(lm_meta_store_set_cluster(store, 1), 0);
    int64_t last = -1;
    assert_int_equal(meta_snapshot_load(store, snap, snap_len, &last), 0);
    struct lm_meta_snapshot *img = lm_meta_store_snapshot(store);
    const struct lm_meta_moved *lm = lm_meta_topic_moved(lm_meta_state_find(&img->state, "t"), 0);
    assert_non_null(lm);
    assert_int_equal(lm->move, 15);
    assert_memory_equal(lm->replicas, still, sizeof(still));
    struct lm_meta_state loaded;
    assert_int_equal(lm_meta_state_copy(&loaded, &img->state), 0);
    lm_meta_snapshot_release(img);
    lm_meta_store_close(store);
    free(snap);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(via_log(&loaded, &late, 16), LM_E_STATE);

    /* a completion without a number (written before them) is held to the target alone, as
     * every node applied it when it was committed */
    struct lm_meta_state old;
    assert_int_equal(lm_meta_state_copy(&old, &s), 0);
    struct lm_meta_record unnumbered = late;
    unnumbered.reassign_move = 0;
    assert_int_equal(via_log(&old, &unnumbered, 16), 0);
    lm_meta_state_deinit(&old);

    /* M2's own completion, once the group removed node 3, drops it (on both images) */
    struct lm_meta_record fin = late;
    fin.reassign_move = 15;
    assert_int_equal(via_log(&s, &fin, 18), 0);
    assert_int_equal(via_log(&loaded, &fin, 18), 0);
    t = lm_meta_state_find(&s, "t");
    assert_false(lm_meta_topic_reassigning(t, 0));
    rep = lm_meta_topic_replicas(t, 0, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(rep, target, sizeof(target));
    assert_int_equal(lm_meta_topic_moved(t, 0)->move, 15); /* the move it finished */
    /* done twice: nothing in progress */
    assert_int_equal(via_log(&s, &fin, 20), LM_E_STATE);
    /* a number the encoding cannot carry is refused */
    fin.reassign_move = -1;
    assert_int_equal(lm_meta_state_check(&s, &fin), LM_E_INVALID);
    lm_meta_state_deinit(&loaded);
    lm_meta_state_deinit(&s);
}

static void test_next_step(void **state)
{
    (void)state;
    struct caught none = {.n = 0}, four = {.nodes = {4}, .n = 1};
    int32_t v123[] = {1, 2, 3}, target[] = {1, 2, 4}, l4[] = {4};
    /* replace 3 by 4 under leader 1: learner 4, wait, promote, remove 3, done */
    struct raft_conf c = conf_of(v123, 3, NULL, 0);
    struct reassign_step s = reassign_next(&c, 1, target, 3, is_caught, &none);
    assert_int_equal(s.op, REASSIGN_ADD_LEARNER);
    assert_int_equal(s.node, 4);
    c = conf_of(v123, 3, l4, 1);
    assert_int_equal(reassign_next(&c, 1, target, 3, is_caught, &none).op, REASSIGN_WAIT);
    s = reassign_next(&c, 1, target, 3, is_caught, &four);
    assert_int_equal(s.op, REASSIGN_PROMOTE);
    assert_int_equal(s.node, 4);
    int32_t v1234[] = {1, 2, 3, 4};
    c = conf_of(v1234, 4, NULL, 0);
    s = reassign_next(&c, 1, target, 3, is_caught, &four);
    assert_int_equal(s.op, REASSIGN_REMOVE);
    assert_int_equal(s.node, 3);
    int32_t v124[] = {1, 2, 4};
    c = conf_of(v124, 3, NULL, 0);
    assert_int_equal(reassign_next(&c, 1, target, 3, is_caught, &four).op, REASSIGN_DONE);
    /* the leader itself leaving: hand over to a target voter first */
    int32_t t234[] = {2, 3, 4};
    c = conf_of(v1234, 4, NULL, 0);
    s = reassign_next(&c, 1, t234, 3, is_caught, &four);
    assert_int_equal(s.op, REASSIGN_TRANSFER);
    assert_int_equal(s.node, 2);
    /* ...but another leaving voter goes before that */
    int32_t t24[] = {2, 4};
    s = reassign_next(&c, 1, t24, 2, is_caught, &four);
    assert_int_equal(s.op, REASSIGN_REMOVE);
    assert_int_equal(s.node, 3);
    /* cancel: the learner not in the (original) target leaves */
    c = conf_of(v123, 3, l4, 1);
    s = reassign_next(&c, 1, v123, 3, is_caught, &four);
    assert_int_equal(s.op, REASSIGN_REMOVE);
    assert_int_equal(s.node, 4);
    /* RF 1 -> 3: two learners, one at a time */
    int32_t v2[] = {2}, t234b[] = {2, 3, 4};
    c = conf_of(v2, 1, NULL, 0);
    s = reassign_next(&c, 2, t234b, 3, is_caught, &none);
    assert_int_equal(s.op, REASSIGN_ADD_LEARNER);
    assert_int_equal(s.node, 3);
    /* a target without a voter to lead, or empty */
    int32_t t5[] = {5};
    c = conf_of(v123, 3, NULL, 0);
    assert_int_equal(reassign_next(&c, 1, t5, 0, is_caught, &none).op, REASSIGN_INVALID);
    int32_t v1[] = {1};
    c = conf_of(v1, 1, NULL, 0);
    int32_t t1_5[] = {5};
    struct caught five = {.nodes = {5}, .n = 1};
    int32_t l5[] = {5};
    struct raft_conf c2 = conf_of(v1, 1, l5, 1);
    assert_int_equal(reassign_next(&c2, 1, t1_5, 1, is_caught, &five).op, REASSIGN_PROMOTE);
    int32_t v15[] = {1, 5};
    c = conf_of(v15, 2, NULL, 0);
    s = reassign_next(&c, 1, t1_5, 1, is_caught, &five);
    assert_int_equal(s.op, REASSIGN_TRANSFER);
    assert_int_equal(s.node, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_record_apply_and_cancel),
        cmocka_unit_test(test_record_refusals),
        cmocka_unit_test(test_request_keeps_listed),
        cmocka_unit_test(test_late_done_after_cancel),
        cmocka_unit_test(test_next_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
