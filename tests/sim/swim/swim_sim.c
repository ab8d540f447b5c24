/* Deterministic simulation of up to 1,000 SWIM members in one process (DESIGN.md §8).
 *
 * Virtual clock, an event heap ordered by (time, id), a fake network with loss, delay,
 * partitions, crashes and slow members (whose incoming datagrams are processed late, to
 * exercise Lifeguard). Every member's view is mirrored from its events so invariants are checked
 * on every event. Any failure prints the seed; `--seed S` replays it.
 *
 * Measured against Das, Gupta, Motivala, "SWIM" (2002):
 *   - first detection: index of the first protocol period (counted from the crash) in which
 *     some member probes the crashed one; paper: E = e/(e-1) ~ 1.58 (§3.1 analysis);
 *   - time until every live member knows (after the first dead verdict: O(log n) periods);
 *   - messages sent per member per period (paper: constant in n);
 *   - false positives: live members declared dead, with 0/1/5% loss, with/without Lifeguard.
 *
 * Usage: swim_sim            bounded subset for `make test` (invariants + n = 10, 100)
 *        swim_sim --full     the full table for n = 10, 100, 1000 (use a release build)
 *        swim_sim --seed S   replay with seed S */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "gossip/swim.h"

#define NODES_MAX 1000
#define BASE_IP   0x0a000000u
#define PORT      9094
#define T_MS      1000u /* protocol period */
#define TICK_MS   50u   /* each member's tick granularity */
#define VIEW_NONE 0xff

enum ev_kind { EV_TICK = 1, EV_DELIVER = 2 };

struct pkt {
    uint32_t len;
    uint8_t data[];
};

struct ev {
    uint64_t t;
    uint64_t id;
    uint32_t node;
    uint32_t kind;
    uint32_t gen;
    struct pkt *pkt;
};

struct node {
    struct swim *swim;
    uint64_t rng;
    uint32_t gen;          /* bumped on restart: stale ticks are ignored */
    uint64_t next_tick_at; /* the one tick event that is current; others are stale */
    bool crashed;
    bool slow;
    int group; /* partition group */
};

struct sim {
    uint64_t seed;
    uint64_t rng;
    uint32_t n;
    bool lifeguard;
    double loss;
    double dup; /* probability that a datagram is delivered twice (with its own delay) */
    uint32_t delay_min_ms, delay_max_ms;
    uint32_t slow_ms; /* mean extra processing delay of a slow member */
    uint32_t sync_periods;
    bool check_majority; /* invariant: no live reachable member dead by a majority */
    uint64_t now;
    uint64_t ev_ids;
    struct ev *heap;
    size_t heap_n, heap_cap;
    struct node nodes[NODES_MAX];
    uint8_t *view; /* view[obs * n + subj]: last status obs reported for subj */
    /* tracked crash */
    int target;
    uint64_t t_crash, t_first_ping, t_first_suspect, t_first_dead, t_all_dead;
    /* counters */
    uint64_t false_incidents; /* live member newly declared dead by someone */
    uint64_t false_healthy;   /* ... of them about a member that is not slow */
    uint64_t false_events;    /* every DEAD event about a live member */
    uint64_t false_suspects;  /* live member newly suspected by someone (refuted or not) */
    uint64_t sent, dropped;
    uint64_t sent_sync; /* full-state (anti-entropy) datagrams, counted apart from SWIM's */
};

static struct sim *S;
static uint32_t sync_periods_next = 30;

static void fail(const char *what)
{
    fprintf(stderr,
            "swim_sim: INVARIANT FAILED: %s (t=%.2f periods, seed=%" PRIu64
            ", replay: swim_sim --seed %" PRIu64 ")\n",
            what, (double)S->now / T_MS, S->seed, S->seed);
    exit(1);
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double unit_rand(void)
{
    return (double)(splitmix(&S->rng) >> 11) / 9007199254740992.0;
}

static uint32_t below(uint32_t n)
{
    return (uint32_t)(splitmix(&S->rng) % n);
}

/* ---- event heap ordered by (t, id) -------------------------------------------------------- */

static bool ev_less(const struct ev *a, const struct ev *b)
{
    return a->t < b->t || (a->t == b->t && a->id < b->id);
}

static void heap_push(struct ev e)
{
    if (S->heap_n == S->heap_cap) {
        S->heap_cap = S->heap_cap ? S->heap_cap * 2 : 4096;
        S->heap = realloc(S->heap, S->heap_cap * sizeof(*S->heap));
        LM_ASSERT(S->heap != NULL);
    }
    e.id = S->ev_ids++;
    size_t i = S->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ev_less(&e, &S->heap[p]))
            break;
        S->heap[i] = S->heap[p];
        i = p;
    }
    S->heap[i] = e;
}

static struct ev heap_pop(void)
{
    LM_ASSERT(S->heap_n > 0);
    struct ev top = S->heap[0];
    struct ev last = S->heap[--S->heap_n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= S->heap_n)
            break;
        if (c + 1 < S->heap_n && ev_less(&S->heap[c + 1], &S->heap[c]))
            c++;
        if (!ev_less(&S->heap[c], &last))
            break;
        S->heap[i] = S->heap[c];
        i = c;
    }
    if (S->heap_n > 0)
        S->heap[i] = last;
    return top;
}

/* ---- the fake network and the io table ---------------------------------------------------- */

static struct swim_addr addr_of(uint32_t i)
{
    return (struct swim_addr){BASE_IP + i, PORT};
}

static int index_of(const struct swim_addr *a)
{
    if (a->port != PORT || a->ip < BASE_IP || a->ip - BASE_IP >= S->n)
        return -1;
    return (int)(a->ip - BASE_IP);
}

static void sim_send(void *ctx, const struct swim_addr *to, const uint8_t *buf, size_t len)
{
    struct node *src = ctx;
    int si = (int)(src - S->nodes);
    int di = index_of(to);
    LM_ASSERT(!src->crashed);
    LM_ASSERT(len <= SWIM_PACKET_SIZE_DEFAULT);
    S->sent++;
    if (buf[1] == SWIM_MSG_SYNC)
        S->sent_sync++;
    if (di == S->target && S->t_crash && !S->t_first_ping && buf[1] == SWIM_MSG_PING)
        S->t_first_ping = S->now;
    if (di < 0 || S->nodes[di].group != src->group || unit_rand() < S->loss) {
        S->dropped++;
        return;
    }
    (void)si;
    int copies = unit_rand() < S->dup ? 2 : 1;
    for (int c = 0; c < copies; c++) {
        /* independent random delays also reorder datagrams */
        uint64_t delay = S->delay_min_ms + below(S->delay_max_ms - S->delay_min_ms + 1);
        if (S->nodes[di].slow)
            delay += below(2 * S->slow_ms + 1);
        struct pkt *p = malloc(sizeof(*p) + len);
        LM_ASSERT(p != NULL);
        p->len = (uint32_t)len;
        memcpy(p->data, buf, len);
        heap_push(
            (struct ev){.t = S->now + delay, .node = (uint32_t)di, .kind = EV_DELIVER, .pkt = p});
    }
}

static uint32_t live_count(void)
{
    uint32_t c = 0;
    for (uint32_t i = 0; i < S->n; i++)
        c += !S->nodes[i].crashed;
    return c;
}

static uint32_t live_observers_with(uint32_t subj, uint8_t status)
{
    uint32_t c = 0;
    for (uint32_t o = 0; o < S->n; o++)
        if (o != subj && !S->nodes[o].crashed && S->view[o * S->n + subj] == status)
            c++;
    return c;
}

static void sim_event(void *ctx, const struct swim_event *ev)
{
    struct node *obs = ctx;
    uint32_t oi = (uint32_t)(obs - S->nodes);
    int si = index_of(&ev->addr);
    if (si < 0)
        fail("event about an address outside the cluster");
    uint8_t *v = &S->view[oi * S->n + (uint32_t)si];
    uint8_t next = *v;
    switch (ev->type) {
    case SWIM_EV_JOINED:
    case SWIM_EV_ALIVE:
    case SWIM_EV_META:
        next = SWIM_ALIVE;
        break;
    case SWIM_EV_SUSPECT:
        next = SWIM_SUSPECT;
        break;
    case SWIM_EV_DEAD:
        next = SWIM_DEAD;
        break;
    case SWIM_EV_LEFT:
        next = SWIM_LEFT;
        break;
    default:
        fail("unknown event type");
    }
    if (ev->type == SWIM_EV_SUSPECT && !S->nodes[si].crashed &&
        live_observers_with((uint32_t)si, SWIM_SUSPECT) == 0 &&
        live_observers_with((uint32_t)si, SWIM_DEAD) == 0)
        S->false_suspects++;
    if (ev->type == SWIM_EV_DEAD && !S->nodes[si].crashed) {
        S->false_events++;
        if (live_observers_with((uint32_t)si, SWIM_DEAD) == 0) {
            S->false_incidents++;
            S->false_healthy += !S->nodes[si].slow;
        }
    }
    *v = next;
    if (ev->type == SWIM_EV_DEAD && !S->nodes[si].crashed && S->check_majority) {
        uint32_t dead_by = live_observers_with((uint32_t)si, SWIM_DEAD);
        if (dead_by > live_count() / 2)
            fail("a live, reachable member was declared dead by a majority at 0% loss");
    }
    if (si == S->target && S->t_crash) {
        if (ev->type == SWIM_EV_SUSPECT && !S->t_first_suspect)
            S->t_first_suspect = S->now;
        if (ev->type == SWIM_EV_DEAD && !S->t_first_dead)
            S->t_first_dead = S->now;
        if (ev->type == SWIM_EV_DEAD && !S->t_all_dead &&
            live_observers_with((uint32_t)si, SWIM_DEAD) == live_count())
            S->t_all_dead = S->now;
    }
}

static uint64_t sim_random(void *ctx)
{
    struct node *nd = ctx;
    return splitmix(&nd->rng);
}

/* ---- members ------------------------------------------------------------------------------ */

static void node_boot(uint32_t i)
{
    struct node *nd = &S->nodes[i];
    struct swim_config cfg;
    swim_config_default(&cfg);
    cfg.self = addr_of(i);
    cfg.period_ms = T_MS;
    cfg.ack_timeout_ms = T_MS * 2 / 5;
    cfg.lifeguard = S->lifeguard;
    cfg.members_max = S->n + 8;
    cfg.sync_periods = S->sync_periods;
    cfg.meta.node_id = (int32_t)i + 1;
    snprintf(cfg.meta.kafka_listener, sizeof(cfg.meta.kafka_listener), "10.0.%u.%u:9092", i >> 8,
             i & 255);
    snprintf(cfg.meta.rack, sizeof(cfg.meta.rack), "rack-%u", i % 3);
    nd->rng = S->seed * 1000003u + i * 7919u + nd->gen;
    nd->gen++;
    nd->crashed = false;
    struct swim_io io = {.ctx = nd, .send = sim_send, .event = sim_event, .random = sim_random};
    int rc = swim_new(&cfg, &io, &nd->swim);
    LM_ASSERT(rc == 0);
    memset(&S->view[i * S->n], VIEW_NONE, S->n);
    S->view[i * S->n + i] = SWIM_ALIVE;
    nd->next_tick_at = S->now + below(TICK_MS);
    heap_push((struct ev){.t = nd->next_tick_at, .node = i, .kind = EV_TICK, .gen = nd->gen});
}

static void crash(uint32_t i)
{
    struct node *nd = &S->nodes[i];
    LM_ASSERT(!nd->crashed);
    nd->crashed = true;
    swim_free(nd->swim);
    nd->swim = NULL;
}

static void sim_init(uint32_t n, bool lifeguard, double loss, uint64_t seed)
{
    LM_ASSERT(n >= 2 && n <= NODES_MAX);
    S = calloc(1, sizeof(*S));
    LM_ASSERT(S != NULL);
    S->seed = seed;
    S->rng = seed;
    S->n = n;
    S->lifeguard = lifeguard;
    S->loss = loss;
    S->delay_min_ms = 1;
    S->delay_max_ms = 10;
    S->slow_ms = 0;
    S->sync_periods = sync_periods_next;
    S->target = -1;
    S->now = 1000;
    S->view = malloc((size_t)n * n);
    LM_ASSERT(S->view != NULL);
    for (uint32_t i = 0; i < n; i++)
        node_boot(i);
    /* bootstrap: everyone knows everyone (join is exercised by restarts and unit tests) */
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < n; j++)
            if (i != j) {
                struct swim_addr a = addr_of(j);
                int rc = swim_add_member(S->nodes[i].swim, S->now, &a, 0, NULL);
                LM_ASSERT(rc == 0);
            }
}

static void sim_free(void)
{
    for (uint32_t i = 0; i < S->n; i++)
        swim_free(S->nodes[i].swim);
    while (S->heap_n > 0) {
        struct ev e = heap_pop();
        free(e.pkt);
    }
    free(S->heap);
    free(S->view);
    free(S);
    S = NULL;
}

/* Ticks follow the core's own deadlines (exact timers, few wake-ups), at least every T. A
 * datagram can bring a deadline forward (a relay, a new suspicion): then a new tick event
 * replaces the current one. */
static void schedule_tick(uint32_t i, bool after_tick)
{
    struct node *nd = &S->nodes[i];
    uint64_t due = swim_next_deadline_ms(nd->swim);
    if (due <= S->now)
        due = S->now + 1;
    if (due > S->now + T_MS)
        due = S->now + T_MS;
    if (!after_tick && due >= nd->next_tick_at)
        return;
    nd->next_tick_at = due;
    heap_push((struct ev){.t = due, .node = i, .kind = EV_TICK, .gen = nd->gen});
}

static void step(void)
{
    struct ev e = heap_pop();
    LM_ASSERT(e.t >= S->now);
    S->now = e.t;
    struct node *nd = &S->nodes[e.node];
    if (e.kind == EV_TICK) {
        if (nd->crashed || e.gen != nd->gen || e.t != nd->next_tick_at)
            return;
        int rc = swim_tick(nd->swim, S->now);
        if (rc != 0)
            fail("swim_tick returned an error");
        schedule_tick(e.node, true);
        return;
    }
    if (!nd->crashed) {
        (void)swim_recv(nd->swim, S->now, e.pkt->data, e.pkt->len);
        schedule_tick(e.node, false);
    }
    free(e.pkt);
}

static void run_until(uint64_t t)
{
    while (S->heap_n > 0 && S->heap[0].t <= t)
        step();
    S->now = t;
}

/* Every live member sees every other live member alive. */
static bool converged(void)
{
    for (uint32_t o = 0; o < S->n; o++) {
        if (S->nodes[o].crashed)
            continue;
        for (uint32_t s = 0; s < S->n; s++)
            if (!S->nodes[s].crashed && S->view[o * S->n + s] != SWIM_ALIVE)
                return false;
    }
    return true;
}

static uint64_t total_sent_by_members(void)
{
    uint64_t c = 0;
    for (uint32_t i = 0; i < S->n; i++)
        if (S->nodes[i].swim)
            c += swim_stats(S->nodes[i].swim)->sent_packets;
    return c;
}

/* ---- measurements ------------------------------------------------------------------------- */

struct crash_result {
    int trials;
    double first_probe, first_suspect, first_dead, all_dead, spread, rejoin, max_all_dead;
};

/* Bound for "every crash is detected by all live members": the longest suspicion timeout plus
 * a generous dissemination allowance. */
static double detect_bound_periods(uint32_t n, bool lifeguard)
{
    double lg = n > 10 ? log10((double)n) : 1.0;
    double susp = 4.0 * lg * (lifeguard ? 6.0 : 1.0);
    return susp + 10.0 + 4.0 * log2((double)n);
}

static struct crash_result measure_crash(uint32_t n, bool lifeguard, double loss, int trials,
                                         uint64_t seed)
{
    sim_init(n, lifeguard, loss, seed);
    struct crash_result r = {0};
    int restarts = 0;
    run_until(S->now + 5 * T_MS);
    double bound = detect_bound_periods(n, lifeguard);
    for (int k = 0; k < trials; k++) {
        uint32_t victim = below(n);
        while (S->nodes[victim].crashed)
            victim = (victim + 1) % n;
        run_until(S->now + below(T_MS)); /* random phase */
        S->target = (int)victim;
        S->t_crash = S->now;
        S->t_first_ping = S->t_first_suspect = S->t_first_dead = S->t_all_dead = 0;
        crash(victim);
        uint64_t deadline = S->now + (uint64_t)(bound * T_MS);
        while (!S->t_all_dead && S->now < deadline)
            run_until(S->now + TICK_MS);
        if (!S->t_all_dead)
            fail("a crashed member was not declared dead by every live member in the bound");
        LM_ASSERT(S->t_first_ping && S->t_first_suspect && S->t_first_dead);
        double T = T_MS;
        r.first_probe += floor((double)(S->t_first_ping - S->t_crash) / T) + 1.0;
        r.first_suspect += (double)(S->t_first_suspect - S->t_crash) / T;
        r.first_dead += (double)(S->t_first_dead - S->t_crash) / T;
        double all = (double)(S->t_all_dead - S->t_crash) / T;
        r.all_dead += all;
        if (all > r.max_all_dead)
            r.max_all_dead = all;
        r.spread += (double)(S->t_all_dead - S->t_first_dead) / T;
        S->t_crash = 0;
        S->target = -1;
        /* it restarts with incarnation 0 and rejoins through a seed; at n = 1000 only after the
         * last trial (the others stay down: the rejoin check is O(n^2)) */
        if (n > 100 && k + 1 < trials)
            continue;
        restarts++;
        uint64_t t_restart = S->now;
        node_boot(victim);
        struct swim_addr seed_addr = addr_of((victim + 1) % n);
        int rc = swim_join(S->nodes[victim].swim, S->now, &seed_addr, 1);
        LM_ASSERT(rc == 0);
        uint64_t rejoin_deadline = S->now + 60 * T_MS;
        while (!converged() && S->now < rejoin_deadline)
            run_until(S->now + 4 * TICK_MS);
        if (!converged())
            fail("a restarted member did not rejoin everyone's view within 60 periods");
        r.rejoin += (double)(S->now - t_restart) / T;
    }
    r.trials = trials;
    r.first_probe /= r.trials;
    r.first_suspect /= r.trials;
    r.first_dead /= r.trials;
    r.all_dead /= r.trials;
    r.spread /= r.trials;
    r.rejoin /= restarts;
    sim_free();
    return r;
}

struct steady_result {
    double msgs_per_member_period; /* ping, ack, ping-req, nack */
    double sync_per_member_period; /* anti-entropy full-state datagrams */
    double bytes_per_member_period;
    double fp_per_1000; /* false dead incidents per 1000 member-periods */
    uint64_t fp_incidents;
    uint64_t fp_healthy;     /* about members that are not slow */
    double suspect_per_1000; /* false suspicion incidents per 1000 member-periods */
    double member_periods;
};

static struct steady_result measure_steady(uint32_t n, bool lifeguard, double loss,
                                           uint32_t periods, double slow_frac, uint64_t seed)
{
    sim_init(n, lifeguard, loss, seed);
    S->slow_ms = 2 * T_MS;
    for (uint32_t i = 0; i < n; i++)
        S->nodes[i].slow = unit_rand() < slow_frac;
    S->check_majority = loss == 0.0 && slow_frac == 0.0;
    run_until(S->now + 3 * T_MS);
    uint64_t sent0 = total_sent_by_members();
    uint64_t sync0 = S->sent_sync;
    uint64_t bytes0 = 0;
    for (uint32_t i = 0; i < n; i++)
        bytes0 += swim_stats(S->nodes[i].swim)->sent_bytes;
    S->false_incidents = 0;
    S->false_healthy = 0;
    S->false_suspects = 0;
    run_until(S->now + (uint64_t)periods * T_MS);
    uint64_t bytes1 = 0;
    for (uint32_t i = 0; i < n; i++)
        bytes1 += swim_stats(S->nodes[i].swim)->sent_bytes;
    struct steady_result r;
    double mp = (double)n * periods;
    uint64_t sync = S->sent_sync - sync0;
    r.msgs_per_member_period = (double)(total_sent_by_members() - sent0 - sync) / mp;
    r.sync_per_member_period = (double)sync / mp;
    r.bytes_per_member_period = (double)(bytes1 - bytes0) / mp;
    r.fp_incidents = S->false_incidents;
    r.fp_healthy = S->false_healthy;
    r.fp_per_1000 = 1000.0 * (double)S->false_incidents / mp;
    r.suspect_per_1000 = 1000.0 * (double)S->false_suspects / mp;
    r.member_periods = mp;
    sim_free();
    return r;
}

/* Invariant scenario: two halves partitioned, then healed; every live member must see every
 * other live member alive again within a bound. Crashes inside the partition too. */
static void scenario_partition(uint32_t n, bool lifeguard, uint64_t seed)
{
    sync_periods_next = 10; /* anti-entropy every 10 T so healing is quick to observe */
    sim_init(n, lifeguard, 0.0, seed);
    sync_periods_next = 30;
    S->dup = 0.02;
    run_until(S->now + 3 * T_MS);
    for (uint32_t i = 0; i < n; i++)
        S->nodes[i].group = i < n / 2 ? 0 : 1;
    run_until(S->now + 40 * T_MS);
    /* the other side must no longer believe the member alive (dead, or still suspect where
     * Lifeguard has stretched the timeouts of members that lost half their probes) */
    if (live_observers_with(n - 1, SWIM_DEAD) + live_observers_with(n - 1, SWIM_SUSPECT) < n / 2)
        fail("a partition was not detected by the other side");
    for (uint32_t i = 0; i < n; i++)
        S->nodes[i].group = 0;
    uint64_t t_heal = S->now;
    uint64_t bound = S->now + 150 * T_MS;
    while (!converged() && S->now < bound)
        run_until(S->now + T_MS);
    if (!converged())
        fail("membership did not converge within 150 periods after the partition healed");
    printf("partition n=%u lifeguard=%d: healed and converged in %.1f periods\n", n, lifeguard,
           (double)(S->now - t_heal) / T_MS);
    sim_free();
}

/* Crash several members at once at 0% loss, one of them while others are slow: every crash is
 * detected by all within the bound, and nobody alive is declared dead by a majority. */
static void scenario_invariants(uint32_t n, bool lifeguard, uint64_t seed)
{
    sim_init(n, lifeguard, 0.0, seed);
    S->check_majority = true;
    S->dup = 0.02;
    S->delay_max_ms = 150; /* heavy reordering, still well inside the ack timeout */
    run_until(S->now + 3 * T_MS);
    uint32_t crashed[3] = {1, n / 2, n - 2};
    for (int i = 0; i < 3; i++)
        crash(crashed[i]);
    uint64_t bound = S->now + (uint64_t)(detect_bound_periods(n, lifeguard) * T_MS);
    bool done = false;
    while (!done && S->now < bound) {
        run_until(S->now + T_MS);
        done = true;
        for (int i = 0; i < 3; i++)
            done = done && live_observers_with(crashed[i], SWIM_DEAD) == live_count();
    }
    if (!done)
        fail("simultaneous crashes not detected by all live members within the bound");
    if (S->false_events != 0)
        fail("a live member was declared dead at 0% loss");
    printf("invariants n=%u lifeguard=%d: 3 crashes detected by all, no false dead verdict\n", n,
           lifeguard);
    sim_free();
}

static void print_crash_row(uint32_t n, bool lg, const struct crash_result *c)
{
    printf("| %4u | %-3s | %5.2f | 1.58 | %5.2f | %5.2f | %5.2f (max %5.2f) | %5.2f | %5.2f |\n", n,
           lg ? "on" : "off", c->first_probe, c->first_suspect, c->first_dead, c->all_dead,
           c->max_all_dead, c->spread, c->rejoin);
}

int main(int argc, char **argv)
{
    bool full = false;
    uint64_t seed = 0x5eed;
    uint32_t slow_only_n = 0, slow_only_periods = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--full") == 0)
            full = true;
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else if (strcmp(argv[i], "--slow") == 0 && i + 2 < argc) {
            slow_only_n = (uint32_t)atoi(argv[++i]);
            slow_only_periods = (uint32_t)atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--full] [--seed S] [--slow N PERIODS]\n", argv[0]);
            return 2;
        }
    }
    printf("swim_sim seed=%" PRIu64 " mode=%s (T = %u ms virtual, k = 3)\n", seed,
           full ? "full" : "bounded", T_MS);

    if (slow_only_n >= 2 && slow_only_n <= NODES_MAX) {
        for (int lg = 1; lg >= 0; lg--) {
            struct steady_result r =
                measure_steady(slow_only_n, lg, 0.01, slow_only_periods, 0.10, seed);
            printf("slow n=%u LG=%d: suspicions/1000 m-p %.3f, false dead incidents %" PRIu64
                   " (about healthy members %" PRIu64 ")\n",
                   slow_only_n, lg, r.suspect_per_1000, r.fp_incidents, r.fp_healthy);
        }
        return 0;
    }
    /* invariants */
    scenario_invariants(full ? 100 : 30, true, seed);
    scenario_invariants(full ? 100 : 30, false, seed + 1);
    scenario_partition(full ? 100 : 20, true, seed + 2);

    static const uint32_t sizes_full[] = {10, 100, 1000};
    static const uint32_t sizes_quick[] = {10, 100};
    const uint32_t *sizes = full ? sizes_full : sizes_quick;
    size_t n_sizes = full ? 3 : 2;

    printf("\nCrash detection (0%% loss), in protocol periods T; averages over trials\n");
    printf("| n | LG | first probe of crashed | paper e/(e-1) | first suspect | first dead | "
           "all live know dead | spread first->all dead | restart->rejoined |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < n_sizes; i++) {
        for (int lg = 1; lg >= 0; lg--) {
            int trials = full ? (sizes[i] == 1000 ? 15 : 30) : (sizes[i] == 100 ? 3 : 6);
            struct crash_result c = measure_crash(sizes[i], lg, 0.0, trials, seed + 10 + i);
            print_crash_row(sizes[i], lg, &c);
            fflush(stdout);
        }
    }

    printf("\nSteady state: messages sent per member per period and false positives "
           "(live members newly declared dead, per 1000 member-periods)\n");
    printf("| n | LG | loss | SWIM msgs/member/period | paper | + sync datagrams | "
           "bytes/member/period (all) | member-periods | false suspicions /1000 m-p | "
           "false-dead incidents | false dead /1000 m-p |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
    static const double losses[] = {0.0, 0.01, 0.05};
    for (size_t i = 0; i < n_sizes; i++) {
        uint32_t periods = full ? (sizes[i] == 1000 ? 60 : 300) : (sizes[i] == 100 ? 20 : 60);
        for (int lg = 1; lg >= 0; lg--)
            for (size_t l = 0; l < 3; l++) {
                struct steady_result r =
                    measure_steady(sizes[i], lg, losses[l], periods, 0.0, seed + 100 + l);
                printf("| %4u | %-3s | %2.0f%% | %5.2f | ~2 (ping + ack), constant in n | %5.2f "
                       "| %6.0f | %6.0f | %7.3f | %4" PRIu64 " | %7.3f |\n",
                       sizes[i], lg ? "on" : "off", losses[l] * 100, r.msgs_per_member_period,
                       r.sync_per_member_period, r.bytes_per_member_period, r.member_periods,
                       r.suspect_per_1000, r.fp_incidents, r.fp_per_1000);
                if (r.msgs_per_member_period > 4.0 * 3 + 2)
                    fail("message load above the paper's worst case 4k+2 per member per period");
                fflush(stdout);
            }
    }

    printf("\nSlow members (10%% process datagrams up to 4 T late), 1%% loss: Lifeguard\n");
    printf("| n | LG | member-periods | false suspicions /1000 m-p | false-dead incidents | "
           "of which about healthy members | false dead /1000 m-p |\n"
           "|---|---|---|---|---|---|---|\n");
    uint32_t slow_n = full ? 100 : 30;
    uint32_t slow_periods = full ? 300 : 40;
    for (int lg = 1; lg >= 0; lg--) {
        struct steady_result r = measure_steady(slow_n, lg, 0.01, slow_periods, 0.10, seed + 7);
        printf("| %4u | %-3s | %6.0f | %7.3f | %4" PRIu64 " | %4" PRIu64 " | %7.3f |\n", slow_n,
               lg ? "on" : "off", r.member_periods, r.suspect_per_1000, r.fp_incidents,
               r.fp_healthy, r.fp_per_1000);
    }
    printf("\nswim_sim: all invariants held (seed=%" PRIu64 ")\n", seed);
    return 0;
}
