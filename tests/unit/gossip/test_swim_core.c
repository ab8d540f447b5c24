/* SWIM core: merge rules (SWIM §4.2), Lifeguard timeouts, and scenarios on a tiny in-memory
 * network with a virtual clock: ping/ack, ping-req relays, suspicion -> dead, refutation,
 * rejoin with a higher incarnation, metadata versioning, join with full sync, leave, HMAC. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/lm_err.h"
#include "gossip/swim.h"

#define NODES_MAX  8
#define QUEUE_MAX  4096
#define EVENTS_MAX 256

struct pkt {
    int to;
    size_t len;
    uint8_t data[SWIM_PACKET_SIZE_DEFAULT];
};

struct net;

struct node {
    struct net *net;
    int id;
    struct swim *swim;
    bool down; /* drops everything it would receive or send */
    uint64_t rng;
    struct swim_event events[EVENTS_MAX];
    int events_n;
};

struct net {
    struct node nodes[NODES_MAX];
    int n;
    struct pkt *queue; /* FIFO of datagrams in flight */
    int q_head, q_tail;
    uint64_t now_ms;
    uint64_t sent;
};

static struct swim_addr addr_of(int id)
{
    return (struct swim_addr){0x7f000001u + (uint32_t)id, (uint16_t)(7000 + id)};
}

static int id_of(const struct net *net, const struct swim_addr *a)
{
    for (int i = 0; i < net->n; i++)
        if (swim_addr_eq(a, &(struct swim_addr){0x7f000001u + (uint32_t)i, (uint16_t)(7000 + i)}))
            return i;
    return -1;
}

static void net_send(void *ctx, const struct swim_addr *to, const uint8_t *buf, size_t len)
{
    struct node *nd = ctx;
    struct net *net = nd->net;
    int dst = id_of(net, to);
    net->sent++;
    if (dst < 0 || nd->down || net->nodes[dst].down)
        return;
    assert_true(net->q_tail - net->q_head < QUEUE_MAX);
    struct pkt *p = &net->queue[net->q_tail++ % QUEUE_MAX];
    p->to = dst;
    p->len = len;
    assert_true(len <= sizeof(p->data));
    memcpy(p->data, buf, len);
}

static void net_event(void *ctx, const struct swim_event *ev)
{
    struct node *nd = ctx;
    assert_true(nd->events_n < EVENTS_MAX);
    nd->events[nd->events_n++] = *ev;
}

static uint64_t net_random(void *ctx)
{
    struct node *nd = ctx;
    nd->rng = nd->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return nd->rng >> 11;
}

static void cfg_for(struct swim_config *cfg, int id, bool secret)
{
    swim_config_default(cfg);
    cfg->self = addr_of(id);
    cfg->period_ms = 100;
    cfg->ack_timeout_ms = 40;
    cfg->members_max = 32;
    cfg->meta.node_id = id + 1;
    strcpy(cfg->meta.kafka_listener, "127.0.0.1:9092");
    strcpy(cfg->meta.rack, id % 2 ? "odd" : "even");
    if (secret) {
        cfg->secret = (const uint8_t *)"s3cret";
        cfg->secret_len = 6;
    }
}

static void node_start(struct net *net, int id, bool lifeguard, bool secret)
{
    struct node *nd = &net->nodes[id];
    memset(nd, 0, sizeof(*nd));
    nd->net = net;
    nd->id = id;
    nd->rng = 1000u + (uint64_t)id * 77u;
    struct swim_config cfg;
    cfg_for(&cfg, id, secret);
    cfg.lifeguard = lifeguard;
    struct swim_io io = {.ctx = nd, .send = net_send, .event = net_event, .random = net_random};
    assert_int_equal(swim_new(&cfg, &io, &nd->swim), 0);
}

static struct net *net_new(int n, bool lifeguard, bool secret)
{
    struct net *net = test_calloc(1, sizeof(*net));
    net->queue = test_calloc(QUEUE_MAX, sizeof(struct pkt));
    net->n = n;
    net->now_ms = 1000;
    for (int i = 0; i < n; i++)
        node_start(net, i, lifeguard, secret);
    return net;
}

static void net_free(struct net *net)
{
    for (int i = 0; i < net->n; i++)
        swim_free(net->nodes[i].swim);
    test_free(net->queue);
    test_free(net);
}

/* Everyone knows everyone (bootstrap without join). */
static void net_mesh(struct net *net)
{
    for (int i = 0; i < net->n; i++)
        for (int j = 0; j < net->n; j++)
            if (i != j) {
                struct swim_config c;
                cfg_for(&c, j, false);
                assert_int_equal(
                    swim_add_member(net->nodes[i].swim, net->now_ms, &c.self, 0, &c.meta), 0);
            }
}

static void deliver_all(struct net *net)
{
    while (net->q_head < net->q_tail) {
        struct pkt *p = &net->queue[net->q_head++ % QUEUE_MAX];
        struct node *nd = &net->nodes[p->to];
        if (!nd->down)
            (void)swim_recv(nd->swim, net->now_ms, p->data, p->len);
    }
}

/* Advance virtual time in 5 ms steps, ticking every live node and delivering instantly. */
static void run_ms(struct net *net, uint64_t ms)
{
    for (uint64_t end = net->now_ms + ms; net->now_ms < end; net->now_ms += 5) {
        for (int i = 0; i < net->n; i++)
            if (!net->nodes[i].down)
                assert_int_equal(swim_tick(net->nodes[i].swim, net->now_ms), 0);
        deliver_all(net);
    }
}

static uint8_t status_at(struct net *net, int observer, int who)
{
    struct swim_member_info info;
    struct swim_addr a = addr_of(who);
    if (swim_member_get(net->nodes[observer].swim, &a, &info) != 0)
        return 0xff;
    return info.status;
}

static int count_events(const struct node *nd, uint8_t type, int who)
{
    int c = 0;
    struct swim_addr a = addr_of(who);
    for (int i = 0; i < nd->events_n; i++)
        if (nd->events[i].type == type && swim_addr_eq(&nd->events[i].addr, &a))
            c++;
    return c;
}

/* Feed one hand-made datagram carrying `u` (from node `from`) into node `to`. */
static int inject(struct net *net, int from, int to, const struct swim_update *u, uint8_t type,
                  const struct swim_addr *target, const uint8_t *key, size_t key_len)
{
    uint8_t buf[SWIM_PACKET_SIZE_DEFAULT];
    struct swim_enc e;
    struct swim_msg m = {.type = type, .sender = addr_of(from), .seq = 77, .target = *target};
    assert_int_equal(swim_enc_begin(&e, buf, sizeof(buf), &m, key_len > 0), 0);
    if (u != NULL)
        assert_int_equal(swim_enc_update(&e, u), 0);
    int len = swim_enc_finish(&e, key, key_len);
    assert_true(len > 0);
    return swim_recv(net->nodes[to].swim, net->now_ms, buf, (size_t)len);
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_merge_rule(void **state)
{
    (void)state;
    /* higher incarnation always wins, lower never */
    for (uint8_t c = 0; c <= SWIM_STATUS_MAX; c++)
        for (uint8_t n = 0; n <= SWIM_STATUS_MAX; n++) {
            assert_int_equal(swim_merge_rule(c, 5, n, 6), SWIM_MERGE_APPLY);
            assert_int_equal(swim_merge_rule(c, 5, n, 4), SWIM_MERGE_IGNORE);
        }
    /* equal incarnation: alive < suspect < dead < left */
    assert_int_equal(swim_merge_rule(SWIM_ALIVE, 3, SWIM_SUSPECT, 3), SWIM_MERGE_APPLY);
    assert_int_equal(swim_merge_rule(SWIM_ALIVE, 3, SWIM_ALIVE, 3), SWIM_MERGE_IGNORE);
    assert_int_equal(swim_merge_rule(SWIM_SUSPECT, 3, SWIM_ALIVE, 3), SWIM_MERGE_IGNORE);
    assert_int_equal(swim_merge_rule(SWIM_SUSPECT, 3, SWIM_SUSPECT, 3), SWIM_MERGE_CONFIRM);
    assert_int_equal(swim_merge_rule(SWIM_SUSPECT, 3, SWIM_DEAD, 3), SWIM_MERGE_APPLY);
    assert_int_equal(swim_merge_rule(SWIM_DEAD, 3, SWIM_SUSPECT, 3), SWIM_MERGE_IGNORE);
    assert_int_equal(swim_merge_rule(SWIM_DEAD, 3, SWIM_ALIVE, 3), SWIM_MERGE_IGNORE);
    assert_int_equal(swim_merge_rule(SWIM_DEAD, 3, SWIM_LEFT, 3), SWIM_MERGE_APPLY);
    assert_int_equal(swim_merge_rule(SWIM_LEFT, 3, SWIM_DEAD, 3), SWIM_MERGE_IGNORE);
}

static void test_suspicion_timeout(void **state)
{
    (void)state;
    assert_int_equal(swim_suspicion_timeout_ms(1000, 6000, 0, 3), 6000);
    assert_int_equal(swim_suspicion_timeout_ms(1000, 6000, 3, 3), 1000);
    assert_int_equal(swim_suspicion_timeout_ms(1000, 6000, 9, 3), 1000);
    uint64_t prev = 6001;
    for (uint32_t c = 0; c <= 3; c++) {
        uint64_t t = swim_suspicion_timeout_ms(1000, 6000, c, 3);
        assert_true(t < prev);
        prev = t;
    }
    assert_int_equal(swim_suspicion_timeout_ms(1000, 6000, 0, 0), 1000);
}

static void test_ping_ack_and_steady_state(void **state)
{
    (void)state;
    struct net *net = net_new(3, true, false);
    net_mesh(net);
    run_ms(net, 3000); /* 30 periods */
    for (int i = 0; i < 3; i++) {
        const struct swim_stats *st = swim_stats(net->nodes[i].swim);
        assert_true(st->probes >= 25);
        assert_int_equal(st->probes_failed, 0);
        assert_int_equal(swim_member_count(net->nodes[i].swim, SWIM_ALIVE), 3);
        assert_int_equal(swim_health(net->nodes[i].swim), 0);
    }
    /* a ping meant for someone else is not answered */
    uint64_t sent = net->sent;
    struct swim_addr wrong = addr_of(2);
    assert_int_equal(inject(net, 0, 1, NULL, SWIM_MSG_PING, &wrong, NULL, 0), 0);
    assert_int_equal(net->sent, sent);
    struct swim_addr right = addr_of(1);
    assert_int_equal(inject(net, 0, 1, NULL, SWIM_MSG_PING, &right, NULL, 0), 0);
    assert_int_equal(net->sent, sent + 1);
    net_free(net);
}

static void test_crash_detected_and_rejoin(void **state)
{
    (void)state;
    for (int lg = 0; lg <= 1; lg++) {
        struct net *net = net_new(4, lg, false);
        net_mesh(net);
        run_ms(net, 1000);
        net->nodes[3].down = true;
        /* n = 4: min suspicion 4 T, Lifeguard max 24 T, shrinking with confirmations */
        run_ms(net, 4000);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(status_at(net, i, 3), SWIM_DEAD);
            assert_int_equal(count_events(&net->nodes[i], SWIM_EV_DEAD, 3), 1);
            assert_int_equal(count_events(&net->nodes[i], SWIM_EV_DEAD, 0) +
                                 count_events(&net->nodes[i], SWIM_EV_DEAD, 1) +
                                 count_events(&net->nodes[i], SWIM_EV_DEAD, 2),
                             0);
        }
        /* it comes back as a new process (incarnation 0): it learns it was declared dead
         * through the full sync, refutes with a higher incarnation and rejoins */
        swim_free(net->nodes[3].swim);
        node_start(net, 3, lg, false);
        struct swim_addr seed = addr_of(0);
        assert_int_equal(swim_join(net->nodes[3].swim, net->now_ms, &seed, 1), 0);
        run_ms(net, 2000);
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                assert_int_equal(status_at(net, i, j), SWIM_ALIVE);
        assert_true(swim_incarnation(net->nodes[3].swim) > 0);
        for (int i = 0; i < 3; i++)
            assert_int_equal(count_events(&net->nodes[i], SWIM_EV_JOINED, 3), 2);
        net_free(net);
    }
}

static void test_refute_suspicion(void **state)
{
    (void)state;
    struct net *net = net_new(3, true, false);
    net_mesh(net);
    run_ms(net, 500);
    /* node 2 tells node 1 that node 0 is suspect at incarnation 0 */
    struct swim_update u = {.status = SWIM_SUSPECT,
                            .addr = addr_of(0),
                            .incarnation = 0,
                            .has_from = true,
                            .from = addr_of(2)};
    struct swim_addr t = addr_of(1);
    assert_int_equal(inject(net, 2, 1, &u, SWIM_MSG_PING, &t, NULL, 0), 0);
    assert_int_equal(status_at(net, 1, 0), SWIM_SUSPECT);
    assert_int_equal(count_events(&net->nodes[1], SWIM_EV_SUSPECT, 0), 1);
    run_ms(net, 1000); /* gossip reaches node 0 (buddy system), it refutes */
    assert_int_equal(swim_incarnation(net->nodes[0].swim), 1);
    assert_int_equal(status_at(net, 1, 0), SWIM_ALIVE);
    assert_int_equal(count_events(&net->nodes[1], SWIM_EV_ALIVE, 0), 1);
    assert_int_equal(swim_stats(net->nodes[0].swim)->refutes, 1);
    /* an old suspicion (incarnation 0) no longer applies */
    assert_int_equal(inject(net, 2, 1, &u, SWIM_MSG_PING, &t, NULL, 0), 0);
    assert_int_equal(status_at(net, 1, 0), SWIM_ALIVE);
    net_free(net);
}

static void test_metadata_versioned(void **state)
{
    (void)state;
    struct net *net = net_new(3, true, false);
    net_mesh(net);
    run_ms(net, 300);
    struct swim_meta meta = {.node_id = 42};
    strcpy(meta.kafka_listener, "10.0.0.1:19092");
    strcpy(meta.raft_addr, "10.0.0.1:19093");
    strcpy(meta.rack, "r9");
    /* same incarnation, different metadata: ignored (metadata versioned by incarnation) */
    struct swim_update u = {
        .status = SWIM_ALIVE, .addr = addr_of(2), .incarnation = 0, .has_meta = true, .meta = meta};
    struct swim_addr t = addr_of(0);
    assert_int_equal(inject(net, 1, 0, &u, SWIM_MSG_PING, &t, NULL, 0), 0);
    struct swim_member_info info;
    assert_int_equal(swim_member_get(net->nodes[0].swim, &u.addr, &info), 0);
    assert_int_equal(info.meta.node_id, 3);
    /* the owner changes it: incarnation rises and everyone learns it */
    assert_int_equal(swim_set_meta(net->nodes[2].swim, net->now_ms, &meta), 0);
    run_ms(net, 1000);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(swim_member_get(net->nodes[i].swim, &u.addr, &info), 0);
        assert_int_equal(info.incarnation, 1);
        assert_int_equal(info.meta.node_id, 42);
        assert_string_equal(info.meta.raft_addr, "10.0.0.1:19093");
        assert_string_equal(info.meta.rack, "r9");
        assert_int_equal(count_events(&net->nodes[i], SWIM_EV_META, 2), 1);
    }
    net_free(net);
}

static void test_join_full_sync_and_leave(void **state)
{
    (void)state;
    struct net *net = net_new(5, true, false);
    struct swim_addr seed = addr_of(0);
    for (int i = 1; i < 5; i++) {
        assert_int_equal(swim_join(net->nodes[i].swim, net->now_ms, &seed, 1), 0);
        run_ms(net, 200);
    }
    run_ms(net, 2000);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(swim_member_count(net->nodes[i].swim, SWIM_ALIVE), 5);
        for (int j = 0; j < 5; j++) {
            struct swim_member_info info;
            struct swim_addr a = addr_of(j);
            assert_int_equal(swim_member_get(net->nodes[i].swim, &a, &info), 0);
            assert_int_equal(info.meta.node_id, j + 1);
            assert_string_equal(info.meta.rack, j % 2 ? "odd" : "even");
        }
    }
    assert_int_equal(swim_leave(net->nodes[4].swim, net->now_ms), 0);
    assert_int_equal(swim_leave(net->nodes[4].swim, net->now_ms), LM_E_STATE);
    run_ms(net, 1000);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(status_at(net, i, 4), SWIM_LEFT);
        assert_int_equal(count_events(&net->nodes[i], SWIM_EV_LEFT, 4), 1);
        assert_int_equal(count_events(&net->nodes[i], SWIM_EV_DEAD, 4), 0);
    }
    net_free(net);
}

static void test_indirect_probe(void **state)
{
    (void)state;
    struct net *net = net_new(3, true, false);
    net_mesh(net);
    run_ms(net, 200);
    /* node 0 pings 1 with seq 77 through relay 2: 2 pings 1, 1 acks, 2 forwards the ack */
    struct swim_addr t = addr_of(1);
    uint64_t sent = net->sent;
    assert_int_equal(inject(net, 0, 2, NULL, SWIM_MSG_PING_REQ, &t, NULL, 0), 0);
    assert_int_equal(net->sent, sent + 1); /* the relay's ping */
    struct pkt *p = &net->queue[(net->q_tail - 1) % QUEUE_MAX];
    assert_int_equal(p->to, 1);
    net->nodes[0].down = true; /* keep the forwarded ack out of node 0's state machine */
    deliver_all(net);          /* 1 acks to 2, 2 forwards to 0 */
    assert_int_equal(net->sent, sent + 3);
    net_free(net);
}

static void test_wrong_hmac_changes_nothing(void **state)
{
    (void)state;
    struct net *net = net_new(3, true, true);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            if (i != j) {
                struct swim_addr a = addr_of(j);
                assert_int_equal(swim_add_member(net->nodes[i].swim, net->now_ms, &a, 0, NULL), 0);
            }
    run_ms(net, 1000);
    assert_int_equal(swim_stats(net->nodes[0].swim)->probes_failed, 0);
    struct swim_update u = {.status = SWIM_DEAD, .addr = addr_of(2), .incarnation = 9};
    struct swim_addr t = addr_of(0);
    const uint8_t bad[] = "s3creT";
    assert_int_equal(inject(net, 1, 0, &u, SWIM_MSG_PING, &t, bad, 6), LM_E_CRC);
    assert_int_equal(inject(net, 1, 0, &u, SWIM_MSG_PING, &t, NULL, 0), LM_E_CRC);
    assert_int_equal(swim_stats(net->nodes[0].swim)->drop_auth, 2);
    assert_int_equal(status_at(net, 0, 2), SWIM_ALIVE);
    /* with the right key the same update applies */
    assert_int_equal(inject(net, 1, 0, &u, SWIM_MSG_PING, &t, (const uint8_t *)"s3cret", 6), 0);
    assert_int_equal(status_at(net, 0, 2), SWIM_DEAD);
    /* garbage is dropped and counted */
    uint8_t junk[7] = {1, 2, 3};
    assert_true(swim_recv(net->nodes[0].swim, net->now_ms, junk, sizeof(junk)) < 0);
    assert_int_equal(swim_stats(net->nodes[0].swim)->drop_malformed, 1);
    net_free(net);
}

static void test_lifeguard_health(void **state)
{
    (void)state;
    struct net *net = net_new(4, true, false);
    net_mesh(net);
    run_ms(net, 500);
    /* node 0 is cut off from everyone: its probes fail and its health score rises; a member
     * with lifeguard off would keep its score at 0 */
    net->nodes[0].down = true;
    for (int i = 0; i < 20; i++) {
        net->now_ms += 100;
        assert_int_equal(swim_tick(net->nodes[0].swim, net->now_ms), 0);
    }
    assert_true(swim_health(net->nodes[0].swim) >= 2);
    assert_true(swim_health(net->nodes[0].swim) <= 8);
    net_free(net);
}

/* SWIM §4.1: updates ride on protocol messages newest first (among the least sent), and each
 * is sent lambda * ceil(log10(n + 1)) times, then dropped from the queue. */
static void test_dissemination_order_and_limit(void **state)
{
    (void)state;
    struct net *net = net_new(3, true, false);
    net_mesh(net);
    struct swim_addr t = addr_of(0);
    for (int i = 0; i < 5; i++) {
        struct swim_update u = {.status = SWIM_ALIVE,
                                .addr = {0x0a000000u + (uint32_t)i, 5000},
                                .incarnation = 1,
                                .has_meta = true,
                                .meta = {.node_id = 100 + i}};
        assert_int_equal(inject(net, 1, 0, &u, SWIM_MSG_SYNC, &t, NULL, 0), 0);
    }
    /* n = 8 live members: limit = 4 * ceil(log10(9)) = 4 */
    int seen[5] = {0};
    for (int round = 0; round < 10; round++) {
        net->q_head = net->q_tail; /* drop anything queued so far */
        assert_int_equal(inject(net, 1, 0, NULL, SWIM_MSG_PING, &t, NULL, 0), 0);
        assert_int_equal(net->q_tail - net->q_head, 1); /* the ack */
        struct pkt *p = &net->queue[net->q_head % QUEUE_MAX];
        struct swim_msg m;
        struct swim_update ups[16];
        size_t n = 0;
        assert_int_equal(swim_decode(p->data, p->len, NULL, 0, &m, ups, 16, &n), 0);
        assert_int_equal(m.type, SWIM_MSG_ACK);
        uint64_t last_id = 1000;
        for (size_t i = 0; i < n; i++) {
            int id = ups[i].meta.node_id - 100;
            assert_true(id >= 0 && id < 5);
            assert_true((uint64_t)id < last_id); /* newest (highest id) first */
            last_id = (uint64_t)id;
            seen[id]++;
        }
        assert_int_equal(n, round < 4 ? 5 : 0);
    }
    for (int i = 0; i < 5; i++)
        assert_int_equal(seen[i], 4);
    net_free(net);
}

static void test_config_checked(void **state)
{
    (void)state;
    struct swim_config cfg;
    struct swim *s = NULL;
    struct swim_io io = {.send = net_send, .random = net_random};
    cfg_for(&cfg, 0, false);
    cfg.ack_timeout_ms = cfg.period_ms;
    assert_int_equal(swim_new(&cfg, &io, &s), LM_E_CONFIG);
    cfg_for(&cfg, 0, false);
    cfg.packet_size_max = 100;
    assert_int_equal(swim_new(&cfg, &io, &s), LM_E_CONFIG);
    cfg_for(&cfg, 0, false);
    io.random = NULL;
    assert_int_equal(swim_new(&cfg, &io, &s), LM_E_CONFIG);
    assert_null(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_rule),
        cmocka_unit_test(test_suspicion_timeout),
        cmocka_unit_test(test_ping_ack_and_steady_state),
        cmocka_unit_test(test_crash_detected_and_rejoin),
        cmocka_unit_test(test_refute_suspicion),
        cmocka_unit_test(test_metadata_versioned),
        cmocka_unit_test(test_join_full_sync_and_leave),
        cmocka_unit_test(test_indirect_probe),
        cmocka_unit_test(test_wrong_hmac_changes_nothing),
        cmocka_unit_test(test_lifeguard_health),
        cmocka_unit_test(test_dissemination_order_and_limit),
        cmocka_unit_test(test_config_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
