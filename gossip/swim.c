/* SWIM core logic (see swim.h). No sockets, clocks, threads or random calls here: time comes
 * as now_ms, randomness and output through struct swim_io. Every table is sized at swim_new. */
#define _GNU_SOURCE /* qsort_r */
#include "gossip/swim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"

#define SUSPECTORS_MAX 8  /* distinct confirmations remembered per suspect (Lifeguard K+1) */
#define RELAYS_MAX     64 /* outstanding ping-req relays we serve */
#define SECRET_MAX     64
#define MEMBERS_LIMIT  65536
#define NO_MEMBER      UINT32_MAX
#define SELF           0u /* self is always slot 0 of the table */
/* O(n) table scans run every few periods, not every period: at a thousand members per process
 * (the simulator) a scan per period per member dominated the run time. */
#define LIVE_RECOUNT_PERIODS 8
#define GC_PERIODS           8

struct member {
    bool used;
    struct swim_addr addr;
    uint8_t status;
    uint64_t inc;
    struct swim_meta meta;
    uint64_t status_since_ms;
    /* suspicion (SWIM §4.2, Lifeguard §4.2) */
    struct swim_addr suspect_from;
    uint64_t suspect_start_ms;
    uint64_t suspect_deadline_ms;
    uint32_t suspectors_n;
    struct swim_addr suspectors[SUSPECTORS_MAX];
    /* dissemination (SWIM §4.1): retransmitted a bounded number of times, least-sent first */
    bool bcast_pending;
    uint32_t bcast_count;
    uint64_t bcast_gen;
};

struct relay {
    bool used;
    uint32_t seq; /* our ping to target */
    uint32_t origin_seq;
    struct swim_addr origin;
    struct swim_addr target;
    uint64_t deadline_ms;
};

struct probe {
    bool active;
    bool acked;
    bool indirect_sent;
    uint32_t target; /* member slot */
    struct swim_addr target_addr;
    uint32_t seq;
    uint64_t ack_deadline_ms;
    uint32_t nacks_expected;
    uint32_t nacks_got;
};

struct swim {
    struct swim_config cfg;
    struct swim_io io;
    uint8_t secret[SECRET_MAX];
    struct swim_stats stats;

    struct member *members; /* cfg.members_max slots, slot 0 = self */
    uint32_t members_hw;    /* slots ever used: [0, members_hw) */
    uint32_t *hash;         /* open addressing, slot + 1, 0 = empty */
    uint32_t hash_cap;      /* power of two */

    uint32_t *probe_order; /* round-robin order of member slots (SWIM §4.3) */
    uint32_t probe_len;
    uint32_t probe_pos;
    struct probe probe;
    uint64_t next_probe_ms;
    uint32_t seq;

    uint32_t *suspects; /* slots in SUSPECT */
    uint32_t suspects_n;
    uint32_t *bcast; /* slots with a pending update */
    uint32_t bcast_n;
    uint32_t *scratch; /* sort space for bcast selection */
    uint64_t bcast_gen;

    struct relay relays[RELAYS_MAX];
    struct swim_update *updates; /* decode space */
    uint8_t *pkt;                /* encode space */

    struct swim_addr seeds[16];
    uint32_t seeds_n;
    uint64_t next_sync_ms;
    uint64_t next_gc_ms;
    uint32_t lhm;    /* Lifeguard local health multiplier */
    uint32_t live_n; /* n for the log(n) formulas, refreshed every LIVE_RECOUNT_PERIODS */
    uint64_t periods;
    bool started;
    bool refute_pending; /* we raised our incarnation while handling the current datagram */
};

/* ---- small helpers ---------------------------------------------------------------------- */

static uint64_t rnd(struct swim *s)
{
    return s->io.random(s->io.ctx);
}

static uint32_t rnd_below(struct swim *s, uint32_t n)
{
    LM_ASSERT(n > 0);
    return (uint32_t)(rnd(s) % n);
}

static uint32_t addr_hash(const struct swim_addr *a)
{
    uint64_t x = ((uint64_t)a->ip << 16) | a->port;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb3fe1a85ec53ULL;
    x ^= x >> 33;
    return (uint32_t)x;
}

static uint32_t find(const struct swim *s, const struct swim_addr *a)
{
    uint32_t mask = s->hash_cap - 1;
    for (uint32_t i = addr_hash(a) & mask, n = 0; n < s->hash_cap; i = (i + 1) & mask, n++) {
        uint32_t v = s->hash[i];
        if (v == 0)
            return NO_MEMBER;
        if (swim_addr_eq(&s->members[v - 1].addr, a))
            return v - 1;
    }
    return NO_MEMBER;
}

static void hash_insert(struct swim *s, uint32_t slot)
{
    uint32_t mask = s->hash_cap - 1;
    uint32_t i = addr_hash(&s->members[slot].addr) & mask;
    for (uint32_t n = 0; n < s->hash_cap; i = (i + 1) & mask, n++) {
        if (s->hash[i] == 0) {
            s->hash[i] = slot + 1;
            return;
        }
    }
    LM_UNREACHABLE(); /* the hash has twice the table's capacity */
}

static void hash_rebuild(struct swim *s)
{
    memset(s->hash, 0, sizeof(*s->hash) * s->hash_cap);
    for (uint32_t i = 0; i < s->members_hw; i++)
        if (s->members[i].used)
            hash_insert(s, i);
}

/* Members that count for n in the log(n) formulas: not dead, not left, self included. */
static uint32_t count_live(const struct swim *s)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->members_hw; i++)
        if (s->members[i].used && s->members[i].status <= SWIM_SUSPECT)
            n++;
    return n;
}

/* The cached n: an O(n) count per datagram would dominate at a thousand members. */
static uint32_t live_count(const struct swim *s)
{
    return s->live_n > 0 ? s->live_n : 1;
}

static uint32_t ceil_log10(uint32_t n)
{
    uint32_t r = 1;
    for (uint32_t v = 10; v < n && r < 10; v *= 10)
        r++;
    return r;
}

static void emit(struct swim *s, uint8_t type, const struct member *m)
{
    struct swim_event ev = {.type = type, .addr = m->addr, .incarnation = m->inc, .meta = &m->meta};
    if (s->io.event != NULL)
        s->io.event(s->io.ctx, &ev);
}

static void list_remove(uint32_t *list, uint32_t *n, uint32_t slot)
{
    for (uint32_t i = 0; i < *n; i++) {
        if (list[i] == slot) {
            list[i] = list[--*n];
            return;
        }
    }
}

/* Queue m's current state for dissemination, newest first (SWIM §4.1). */
static void bcast_queue(struct swim *s, uint32_t slot)
{
    struct member *m = &s->members[slot];
    LM_ASSERT(m->used);
    m->bcast_count = 0;
    m->bcast_gen = ++s->bcast_gen;
    if (!m->bcast_pending) {
        LM_ASSERT(s->bcast_n < s->cfg.members_max);
        m->bcast_pending = true;
        s->bcast[s->bcast_n++] = slot;
    }
}

static void member_to_update(const struct member *m, struct swim_update *u)
{
    memset(u, 0, sizeof(*u));
    u->status = m->status;
    u->addr = m->addr;
    u->incarnation = m->inc;
    if (m->status == SWIM_ALIVE) {
        u->has_meta = true;
        u->meta = m->meta;
    } else if (m->status == SWIM_SUSPECT) {
        u->has_from = true;
        u->from = m->suspect_from;
    }
}

/* ---- Lifeguard ---------------------------------------------------------------------------- */

uint64_t swim_suspicion_timeout_ms(uint64_t min_ms, uint64_t max_ms, uint32_t conf, uint32_t k)
{
    LM_ASSERT(min_ms > 0 && min_ms <= max_ms);
    if (k == 0)
        return min_ms;
    /* Lifeguard §4.2: max - (max - min) * log(C + 1) / log(K + 1), floored at min. */
    double frac = log((double)conf + 1.0) / log((double)k + 1.0);
    double t = (double)max_ms - (double)(max_ms - min_ms) * frac;
    uint64_t r = t < (double)min_ms ? min_ms : (uint64_t)t;
    LM_ASSERT(r >= min_ms && r <= max_ms);
    return r;
}

static uint64_t suspicion_min_ms(const struct swim *s)
{
    double n = (double)live_count(s);
    double lg = n > 10.0 ? log10(n) : 1.0;
    return (uint64_t)((double)s->cfg.suspicion_mult * lg * s->cfg.period_ms);
}

static uint64_t suspicion_deadline(const struct swim *s, const struct member *m)
{
    uint64_t min = suspicion_min_ms(s);
    if (!s->cfg.lifeguard)
        return m->suspect_start_ms + min;
    uint64_t max = min * s->cfg.suspicion_max_mult;
    uint64_t t = swim_suspicion_timeout_ms(min, max, m->suspectors_n, s->cfg.indirect_k);
    return m->suspect_start_ms + t * (s->lhm + 1); /* an unhealthy member waits longer */
}

static void lhm_add(struct swim *s, int delta)
{
    if (!s->cfg.lifeguard)
        return;
    int64_t v = (int64_t)s->lhm + delta;
    if (v < 0)
        v = 0;
    if (v > (int64_t)s->cfg.lhm_max)
        v = s->cfg.lhm_max;
    s->lhm = (uint32_t)v;
}

/* ---- sending ------------------------------------------------------------------------------ */

static int bcast_cmp(const void *a, const void *b, void *arg)
{
    const struct member *ms = arg;
    const struct member *x = &ms[*(const uint32_t *)a], *y = &ms[*(const uint32_t *)b];
    if (x->bcast_count != y->bcast_count)
        return x->bcast_count < y->bcast_count ? -1 : 1;
    if (x->bcast_gen != y->bcast_gen)
        return x->bcast_gen > y->bcast_gen ? -1 : 1;
    return 0;
}

/* Piggyback pending updates, least-sent then newest first, each at most lambda*log(n) times. */
static void piggyback(struct swim *s, struct swim_enc *e, uint32_t first_slot)
{
    struct swim_update u;
    if (first_slot != NO_MEMBER) { /* Lifeguard buddy system: tell a suspect it is suspected */
        member_to_update(&s->members[first_slot], &u);
        if (swim_enc_update(e, &u) != 0)
            return;
    }
    if (s->bcast_n == 0)
        return;
    uint32_t limit = s->cfg.retransmit_mult * ceil_log10(live_count(s) + 1);
    memcpy(s->scratch, s->bcast, sizeof(*s->bcast) * s->bcast_n);
    uint32_t n = s->bcast_n;
    qsort_r(s->scratch, n, sizeof(*s->scratch), bcast_cmp, s->members);
    uint32_t misses = 0;
    for (uint32_t i = 0; i < n && misses < 4; i++) {
        uint32_t slot = s->scratch[i];
        if (slot == first_slot)
            continue;
        struct member *m = &s->members[slot];
        member_to_update(m, &u);
        if (swim_enc_update(e, &u) != 0) {
            misses++;
            continue;
        }
        if (++m->bcast_count >= limit) {
            m->bcast_pending = false;
            list_remove(s->bcast, &s->bcast_n, slot);
        }
    }
}

static void begin(struct swim *s, struct swim_enc *e, uint8_t type, uint8_t flags, uint32_t seq,
                  const struct swim_addr *target)
{
    struct swim_msg msg = {.type = type,
                           .flags = flags,
                           .sender = s->cfg.self,
                           .sender_incarnation = s->members[SELF].inc,
                           .seq = seq,
                           .target = *target};
    int rc = swim_enc_begin(e, s->pkt, s->cfg.packet_size_max, &msg, s->cfg.secret_len > 0);
    LM_ASSERT(rc == 0); /* sizes were validated in swim_new */
}

static int finish(struct swim *s, struct swim_enc *e, const struct swim_addr *to)
{
    int len = swim_enc_finish(e, s->secret, s->cfg.secret_len);
    if (len < 0)
        return len;
    LM_ASSERT((uint32_t)len <= s->cfg.packet_size_max);
    s->stats.sent_packets++;
    s->stats.sent_bytes += (uint64_t)len;
    s->io.send(s->io.ctx, to, s->pkt, (size_t)len);
    return 0;
}

static int send_msg(struct swim *s, uint8_t type, uint32_t seq, const struct swim_addr *to,
                    const struct swim_addr *target, uint32_t buddy)
{
    struct swim_enc e;
    begin(s, &e, type, 0, seq, target);
    piggyback(s, &e, buddy);
    return finish(s, &e, to);
}

/* Full-state push (join and anti-entropy): every member we know, over as many datagrams as it
 * takes; the first asks for the peer's state when reply is set. */
static int send_state(struct swim *s, const struct swim_addr *to, bool reply)
{
    struct swim_enc e;
    struct swim_update u;
    begin(s, &e, SWIM_MSG_SYNC, reply ? SWIM_FLAG_SYNC_REPLY : 0, 0, to);
    for (uint32_t i = 0; i < s->members_hw; i++) {
        if (!s->members[i].used)
            continue;
        member_to_update(&s->members[i], &u);
        if (swim_enc_update(&e, &u) == LM_E_FULL) {
            int rc = finish(s, &e, to);
            if (rc != 0)
                return rc;
            begin(s, &e, SWIM_MSG_SYNC, 0, 0, to);
            rc = swim_enc_update(&e, &u);
            LM_ASSERT(rc == 0); /* one update always fits an empty datagram */
        }
    }
    return finish(s, &e, to);
}

/* ---- membership changes ------------------------------------------------------------------- */

static void probe_insert(struct swim *s, uint32_t slot)
{
    /* SWIM §4.3: a new member goes to a random position of the round-robin order. A full
     * order (stale entries of dead members) gets the member at its next rebuild instead. */
    if (s->probe_len >= s->cfg.members_max)
        return;
    LM_ASSERT(s->probe_pos <= s->probe_len);
    uint32_t j = s->probe_pos + rnd_below(s, s->probe_len - s->probe_pos + 1);
    s->probe_order[s->probe_len++] = s->probe_order[j];
    s->probe_order[j] = slot;
}

static uint32_t member_add(struct swim *s, uint64_t now_ms, const struct swim_addr *addr)
{
    uint32_t slot = NO_MEMBER;
    for (uint32_t i = 1; i < s->members_hw; i++) {
        if (!s->members[i].used) {
            slot = i;
            break;
        }
    }
    if (slot == NO_MEMBER) {
        if (s->members_hw == s->cfg.members_max)
            return NO_MEMBER;
        slot = s->members_hw++;
    }
    struct member *m = &s->members[slot];
    memset(m, 0, sizeof(*m));
    m->used = true;
    m->addr = *addr;
    m->status_since_ms = now_ms;
    hash_insert(s, slot);
    probe_insert(s, slot);
    s->live_n++;
    return slot;
}

static void start_suspicion(struct swim *s, uint64_t now_ms, struct member *m, uint32_t slot,
                            const struct swim_addr *from)
{
    if (m->status != SWIM_SUSPECT) {
        LM_ASSERT(s->suspects_n < s->cfg.members_max);
        s->suspects[s->suspects_n++] = slot;
    }
    m->status = SWIM_SUSPECT;
    m->status_since_ms = now_ms;
    m->suspect_from = *from;
    m->suspect_start_ms = now_ms;
    m->suspectors_n = 0;
    if (!swim_addr_eq(from, &s->cfg.self))
        m->suspectors[m->suspectors_n++] = *from;
    m->suspect_deadline_ms = suspicion_deadline(s, m);
}

static void set_status(struct swim *s, uint64_t now_ms, uint32_t slot, uint8_t status)
{
    struct member *m = &s->members[slot];
    if (m->status == SWIM_SUSPECT && status != SWIM_SUSPECT)
        list_remove(s->suspects, &s->suspects_n, slot);
    m->status = status;
    m->status_since_ms = now_ms;
}

/* A new independent suspicion of an already suspected member (Lifeguard §4.2). */
static bool confirm(struct swim *s, struct member *m, const struct swim_addr *from)
{
    if (!s->cfg.lifeguard || swim_addr_eq(from, &s->cfg.self))
        return false;
    for (uint32_t i = 0; i < m->suspectors_n; i++)
        if (swim_addr_eq(&m->suspectors[i], from))
            return false;
    if (m->suspectors_n == SUSPECTORS_MAX)
        return false;
    m->suspectors[m->suspectors_n++] = *from;
    m->suspect_from = *from;
    m->suspect_deadline_ms = suspicion_deadline(s, m);
    return true;
}

enum swim_merge swim_merge_rule(uint8_t cur_status, uint64_t cur_inc, uint8_t new_status,
                                uint64_t new_inc)
{
    LM_ASSERT(cur_status <= SWIM_STATUS_MAX && new_status <= SWIM_STATUS_MAX);
    /* SWIM §4.2: a higher incarnation overrides; at equal incarnation suspect overrides alive,
     * dead overrides suspect, and a graceful leave overrides everything. */
    if (new_inc > cur_inc)
        return SWIM_MERGE_APPLY;
    if (new_inc < cur_inc)
        return SWIM_MERGE_IGNORE;
    if (new_status > cur_status)
        return SWIM_MERGE_APPLY;
    if (new_status == SWIM_SUSPECT && cur_status == SWIM_SUSPECT)
        return SWIM_MERGE_CONFIRM;
    return SWIM_MERGE_IGNORE;
}

/* Someone says something about us: refute suspicion or death by raising our incarnation. */
static void merge_self(struct swim *s, const struct swim_update *u)
{
    struct member *self = &s->members[SELF];
    if (self->status == SWIM_LEFT)
        return; /* we are leaving: let it stand */
    if (u->incarnation < self->inc)
        return;
    if (u->status == SWIM_ALIVE && u->incarnation == self->inc)
        return;
    /* suspect/dead/left at >= our incarnation, or an alive record of a previous life */
    self->inc = u->incarnation + 1;
    s->stats.refutes++;
    s->refute_pending = true;
    if (u->status == SWIM_SUSPECT || u->status == SWIM_DEAD)
        lhm_add(s, 1); /* Lifeguard: being suspected hints that we are the slow one */
    bcast_queue(s, SELF);
}

static void merge(struct swim *s, uint64_t now_ms, const struct swim_update *in,
                  const struct swim_addr *sender, bool from_sync)
{
    if (swim_addr_eq(&in->addr, &s->cfg.self)) {
        merge_self(s, in);
        return;
    }
    struct swim_update tmp;
    const struct swim_update *u = in;
    if (from_sync && in->status == SWIM_DEAD && find(s, &in->addr) != NO_MEMBER) {
        /* A full-state push may carry a stale verdict (the other side of a healed partition):
         * suspect instead, so the member gets a suspicion timeout to refute it. */
        tmp = *in;
        tmp.status = SWIM_SUSPECT;
        tmp.has_from = true;
        tmp.from = *sender;
        u = &tmp;
    }
    if (u->addr.port == 0) {
        s->stats.drop_other++;
        return;
    }
    uint32_t slot = find(s, &u->addr);
    if (slot == NO_MEMBER) {
        if (u->status == SWIM_DEAD || u->status == SWIM_LEFT)
            return; /* nothing to forget */
        slot = member_add(s, now_ms, &u->addr);
        if (slot == NO_MEMBER) {
            s->stats.updates_dropped++;
            return;
        }
        struct member *m = &s->members[slot];
        m->status = SWIM_ALIVE;
        m->inc = u->incarnation;
        if (u->has_meta)
            m->meta = u->meta;
        emit(s, SWIM_EV_JOINED, m);
        if (u->status == SWIM_SUSPECT) {
            start_suspicion(s, now_ms, m, slot, u->has_from ? &u->from : &u->addr);
            emit(s, SWIM_EV_SUSPECT, m);
        }
        bcast_queue(s, slot);
        return;
    }
    struct member *m = &s->members[slot];
    enum swim_merge r = swim_merge_rule(m->status, m->inc, u->status, u->incarnation);
    if (r == SWIM_MERGE_CONFIRM) {
        if (u->has_from && confirm(s, m, &u->from))
            bcast_queue(s, slot); /* pass the confirmation on */
        return;
    }
    if (r == SWIM_MERGE_IGNORE)
        return;
    uint8_t old = m->status;
    m->inc = u->incarnation;
    switch (u->status) {
    case SWIM_ALIVE: {
        bool meta_changed = u->has_meta && memcmp(&m->meta, &u->meta, sizeof(m->meta)) != 0;
        if (u->has_meta)
            m->meta = u->meta;
        set_status(s, now_ms, slot, SWIM_ALIVE);
        if (old == SWIM_DEAD || old == SWIM_LEFT) {
            probe_insert(s, slot); /* SWIM §4.3 position for a rejoining member */
            emit(s, SWIM_EV_JOINED, m);
        } else if (old == SWIM_SUSPECT) {
            emit(s, SWIM_EV_ALIVE, m);
        } else if (meta_changed) {
            emit(s, SWIM_EV_META, m);
        }
        break;
    }
    case SWIM_SUSPECT:
        if (old == SWIM_DEAD || old == SWIM_LEFT) {
            probe_insert(s, slot);
            emit(s, SWIM_EV_JOINED, m);
        }
        start_suspicion(s, now_ms, m, slot, u->has_from ? &u->from : &u->addr);
        emit(s, SWIM_EV_SUSPECT, m);
        break;
    case SWIM_DEAD:
        set_status(s, now_ms, slot, SWIM_DEAD);
        if (old != SWIM_DEAD)
            emit(s, SWIM_EV_DEAD, m);
        break;
    case SWIM_LEFT:
        set_status(s, now_ms, slot, SWIM_LEFT);
        emit(s, SWIM_EV_LEFT, m);
        break;
    default:
        LM_UNREACHABLE();
    }
    bcast_queue(s, slot);
}

/* ---- probing ------------------------------------------------------------------------------ */

static uint32_t next_target(struct swim *s)
{
    for (int pass = 0; pass < 2; pass++) {
        while (s->probe_pos < s->probe_len) {
            uint32_t slot = s->probe_order[s->probe_pos++];
            const struct member *m = &s->members[slot];
            if (m->used && m->status <= SWIM_SUSPECT)
                return slot;
        }
        /* End of a round: rebuild from the live members and shuffle (SWIM §4.3). */
        s->probe_len = 0;
        s->probe_pos = 0;
        for (uint32_t i = 1; i < s->members_hw; i++)
            if (s->members[i].used && s->members[i].status <= SWIM_SUSPECT)
                s->probe_order[s->probe_len++] = i;
        for (uint32_t i = s->probe_len; i > 1; i--) {
            uint32_t j = rnd_below(s, i);
            uint32_t t = s->probe_order[i - 1];
            s->probe_order[i - 1] = s->probe_order[j];
            s->probe_order[j] = t;
        }
    }
    return NO_MEMBER;
}

static int finish_probe(struct swim *s, uint64_t now_ms)
{
    struct probe *p = &s->probe;
    if (!p->active)
        return 0;
    p->active = false;
    if (p->acked) {
        lhm_add(s, -1);
        return 0;
    }
    s->stats.probes_failed++;
    /* Lifeguard §4.1: a failed probe and every relay that sent no nack raise our score. */
    uint32_t missed = p->nacks_expected > p->nacks_got ? p->nacks_expected - p->nacks_got : 0;
    lhm_add(s, 1 + (int)missed);
    uint32_t slot = find(s, &p->target_addr);
    if (slot == NO_MEMBER || slot != p->target)
        return 0;
    struct member *m = &s->members[slot];
    if (m->status == SWIM_ALIVE) {
        start_suspicion(s, now_ms, m, slot, &s->cfg.self);
        emit(s, SWIM_EV_SUSPECT, m);
        bcast_queue(s, slot);
    } else if (m->status == SWIM_SUSPECT && s->cfg.lifeguard) {
        /* our own independent suspicion: spread it as a confirmation for the others */
        m->suspect_from = s->cfg.self;
        bcast_queue(s, slot);
    }
    return 0;
}

static int start_probe(struct swim *s, uint64_t now_ms)
{
    uint32_t slot = next_target(s);
    if (slot == NO_MEMBER)
        return 0;
    struct member *m = &s->members[slot];
    struct probe *p = &s->probe;
    *p = (struct probe){.active = true,
                        .target = slot,
                        .target_addr = m->addr,
                        .seq = ++s->seq,
                        .ack_deadline_ms = now_ms + (uint64_t)s->cfg.ack_timeout_ms * (s->lhm + 1)};
    s->stats.probes++;
    return send_msg(s, SWIM_MSG_PING, p->seq, &m->addr, &m->addr,
                    m->status == SWIM_SUSPECT ? slot : NO_MEMBER);
}

static int send_ping_reqs(struct swim *s)
{
    struct probe *p = &s->probe;
    p->indirect_sent = true;
    /* k distinct random live members other than the target (SWIM §3.1) */
    uint32_t cand = 0;
    for (uint32_t i = 1; i < s->members_hw; i++) {
        const struct member *m = &s->members[i];
        if (m->used && m->status == SWIM_ALIVE && i != p->target)
            s->scratch[cand++] = i;
    }
    uint32_t k = s->cfg.indirect_k < cand ? s->cfg.indirect_k : cand;
    for (uint32_t i = 0; i < k; i++) {
        uint32_t j = i + rnd_below(s, cand - i);
        uint32_t t = s->scratch[i];
        s->scratch[i] = s->scratch[j];
        s->scratch[j] = t;
        int rc = send_msg(s, SWIM_MSG_PING_REQ, p->seq, &s->members[s->scratch[i]].addr,
                          &p->target_addr, NO_MEMBER);
        if (rc != 0)
            return rc;
        s->stats.ping_reqs++;
    }
    p->nacks_expected = k;
    return 0;
}

/* ---- public API --------------------------------------------------------------------------- */

void swim_config_default(struct swim_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->period_ms = 1000;
    cfg->ack_timeout_ms = 400;
    cfg->indirect_k = 3;
    cfg->suspicion_mult = 4;
    cfg->suspicion_max_mult = 6;
    cfg->retransmit_mult = 4;
    cfg->lifeguard = true;
    cfg->lhm_max = 8;
    cfg->packet_size_max = SWIM_PACKET_SIZE_DEFAULT;
    cfg->members_max = 1024;
    cfg->sync_periods = 30;
    cfg->dead_keep_periods = 120;
}

int swim_new(const struct swim_config *cfg, const struct swim_io *io, struct swim **out)
{
    LM_ASSERT(cfg != NULL && io != NULL && out != NULL);
    *out = NULL;
    if (io->send == NULL || io->random == NULL)
        return LM_E_CONFIG;
    if (cfg->period_ms == 0 || cfg->ack_timeout_ms == 0 || cfg->ack_timeout_ms >= cfg->period_ms)
        return LM_E_CONFIG;
    if (cfg->packet_size_max < SWIM_PACKET_SIZE_MIN || cfg->packet_size_max > SWIM_PACKET_SIZE_MAX)
        return LM_E_CONFIG;
    if (cfg->members_max < 2 || cfg->members_max > MEMBERS_LIMIT || cfg->suspicion_mult == 0 ||
        cfg->suspicion_max_mult == 0 || cfg->retransmit_mult == 0 || cfg->self.port == 0)
        return LM_E_CONFIG;
    if (cfg->secret_len > SECRET_MAX || (cfg->secret_len > 0 && cfg->secret == NULL))
        return LM_E_CONFIG;
    struct swim *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return LM_E_NOMEM;
    s->cfg = *cfg;
    s->io = *io;
    if (cfg->secret_len > 0)
        memcpy(s->secret, cfg->secret, cfg->secret_len);
    s->cfg.secret = NULL;
    uint32_t n = cfg->members_max;
    s->hash_cap = 1;
    while (s->hash_cap < 2 * n)
        s->hash_cap <<= 1;
    s->members = calloc(n, sizeof(*s->members));
    s->hash = calloc(s->hash_cap, sizeof(*s->hash));
    s->probe_order = calloc(n, sizeof(uint32_t));
    s->suspects = calloc(n, sizeof(uint32_t));
    s->bcast = calloc(n, sizeof(uint32_t));
    s->scratch = calloc(n, sizeof(uint32_t));
    s->updates = calloc(SWIM_UPDATES_MAX, sizeof(*s->updates));
    s->pkt = calloc(1, cfg->packet_size_max);
    if (!s->members || !s->hash || !s->probe_order || !s->suspects || !s->bcast || !s->scratch ||
        !s->updates || !s->pkt) {
        swim_free(s);
        return LM_E_NOMEM;
    }
    struct member *self = &s->members[SELF];
    self->used = true;
    self->addr = cfg->self;
    self->inc = cfg->incarnation;
    self->meta = cfg->meta;
    self->status = SWIM_ALIVE;
    s->members_hw = 1;
    s->live_n = 1;
    hash_insert(s, SELF);
    *out = s;
    return 0;
}

void swim_free(struct swim *s)
{
    if (s == NULL)
        return;
    free(s->members);
    free(s->hash);
    free(s->probe_order);
    free(s->suspects);
    free(s->bcast);
    free(s->scratch);
    free(s->updates);
    free(s->pkt);
    free(s);
}

/* A full-state exchange costs O(n) datagrams, so its interval grows with log2(n) beyond 32
 * members (as memberlist scales push-pull) to keep the per-member load nearly flat. */
static uint64_t sync_interval_ms(const struct swim *s)
{
    uint32_t n = live_count(s), scale = 1;
    for (uint32_t v = 32; v < n && scale < 16; v *= 2)
        scale++;
    LM_ASSERT(scale >= 1 && scale <= 16);
    return (uint64_t)s->cfg.sync_periods * scale * s->cfg.period_ms;
}

static void start(struct swim *s, uint64_t now_ms)
{
    if (s->started)
        return;
    s->started = true;
    /* a random phase so members do not probe in lock step */
    s->next_probe_ms = now_ms + rnd_below(s, s->cfg.period_ms);
    s->next_sync_ms =
        now_ms + (uint64_t)s->cfg.sync_periods * s->cfg.period_ms + rnd_below(s, s->cfg.period_ms);
    s->next_gc_ms = now_ms + s->cfg.period_ms;
}

int swim_join(struct swim *s, uint64_t now_ms, const struct swim_addr *seeds, size_t n_seeds)
{
    LM_ASSERT(s != NULL && (seeds != NULL || n_seeds == 0));
    if (n_seeds > LM_ARRAY_LEN(s->seeds))
        return LM_E_TOO_LARGE;
    start(s, now_ms);
    s->seeds_n = 0;
    for (size_t i = 0; i < n_seeds; i++)
        if (!swim_addr_eq(&seeds[i], &s->cfg.self))
            s->seeds[s->seeds_n++] = seeds[i];
    bcast_queue(s, SELF); /* announce ourselves once we are known */
    for (uint32_t i = 0; i < s->seeds_n; i++) {
        int rc = send_state(s, &s->seeds[i], true);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int swim_add_member(struct swim *s, uint64_t now_ms, const struct swim_addr *addr,
                    uint64_t incarnation, const struct swim_meta *meta)
{
    LM_ASSERT(s != NULL && addr != NULL);
    start(s, now_ms);
    if (swim_addr_eq(addr, &s->cfg.self) || addr->port == 0)
        return LM_E_INVALID;
    if (find(s, addr) != NO_MEMBER)
        return LM_E_EXISTS;
    uint32_t slot = member_add(s, now_ms, addr);
    if (slot == NO_MEMBER)
        return LM_E_FULL;
    s->members[slot].status = SWIM_ALIVE;
    s->members[slot].inc = incarnation;
    if (meta != NULL)
        s->members[slot].meta = *meta;
    emit(s, SWIM_EV_JOINED, &s->members[slot]);
    return 0;
}

static void gc(struct swim *s, uint64_t now_ms)
{
    uint64_t keep = (uint64_t)s->cfg.dead_keep_periods * s->cfg.period_ms;
    bool removed = false;
    for (uint32_t i = 1; i < s->members_hw; i++) {
        struct member *m = &s->members[i];
        if (!m->used || m->status < SWIM_DEAD || now_ms - m->status_since_ms < keep)
            continue;
        if (m->bcast_pending)
            list_remove(s->bcast, &s->bcast_n, i);
        if (s->probe.active && s->probe.target == i)
            s->probe.active = false;
        memset(m, 0, sizeof(*m));
        removed = true;
    }
    if (!removed)
        return;
    hash_rebuild(s);
    uint32_t w = 0;
    for (uint32_t i = 0; i < s->probe_len; i++) {
        if (i == s->probe_pos)
            s->probe_pos = w;
        if (s->members[s->probe_order[i]].used)
            s->probe_order[w++] = s->probe_order[i];
    }
    if (s->probe_pos > w)
        s->probe_pos = w;
    s->probe_len = w;
}

static uint32_t random_peer(struct swim *s, bool include_dead)
{
    uint32_t cand = 0;
    for (uint32_t i = 1; i < s->members_hw; i++) {
        const struct member *m = &s->members[i];
        if (m->used && (m->status == SWIM_ALIVE || (include_dead && m->status == SWIM_DEAD)))
            s->scratch[cand++] = i;
    }
    return cand == 0 ? NO_MEMBER : s->scratch[rnd_below(s, cand)];
}

int swim_tick(struct swim *s, uint64_t now_ms)
{
    LM_ASSERT(s != NULL);
    start(s, now_ms);
    if (s->members[SELF].status == SWIM_LEFT)
        return 0;
    int rc = 0;
    /* relays whose target did not answer in time: Lifeguard nack to the origin */
    for (uint32_t i = 0; i < RELAYS_MAX; i++) {
        struct relay *r = &s->relays[i];
        if (r->used && now_ms >= r->deadline_ms) {
            r->used = false;
            rc = send_msg(s, SWIM_MSG_NACK, r->origin_seq, &r->origin, &r->target, NO_MEMBER);
            if (rc != 0)
                return rc;
        }
    }
    /* suspicion timeouts (SWIM §4.2): suspect -> dead */
    for (uint32_t i = 0; i < s->suspects_n;) {
        uint32_t slot = s->suspects[i];
        struct member *m = &s->members[slot];
        LM_ASSERT(m->used && m->status == SWIM_SUSPECT);
        if (now_ms >= m->suspect_deadline_ms) {
            set_status(s, now_ms, slot, SWIM_DEAD); /* removes suspects[i] */
            emit(s, SWIM_EV_DEAD, m);
            bcast_queue(s, slot);
            continue;
        }
        i++;
    }
    struct probe *p = &s->probe;
    if (p->active && !p->acked && !p->indirect_sent && now_ms >= p->ack_deadline_ms) {
        rc = send_ping_reqs(s);
        if (rc != 0)
            return rc;
    }
    if (now_ms >= s->next_probe_ms) {
        if (s->periods++ % LIVE_RECOUNT_PERIODS == 0)
            s->live_n = count_live(s);
        rc = finish_probe(s, now_ms);
        if (rc == 0)
            rc = start_probe(s, now_ms);
        if (rc != 0)
            return rc;
        s->next_probe_ms = now_ms + (uint64_t)s->cfg.period_ms * (s->lhm + 1);
        /* joining: keep asking the seeds until someone answers */
        if (s->live_n <= 1) {
            for (uint32_t i = 0; i < s->seeds_n && rc == 0; i++)
                rc = send_state(s, &s->seeds[i], true);
            if (rc != 0)
                return rc;
        }
    }
    if (now_ms >= s->next_sync_ms) {
        /* anti-entropy, also with members we believe dead, so partitions heal */
        s->next_sync_ms = now_ms + sync_interval_ms(s);
        uint32_t slot = random_peer(s, true);
        if (slot != NO_MEMBER) {
            rc = send_state(s, &s->members[slot].addr, true);
            if (rc != 0)
                return rc;
        }
    }
    if (now_ms >= s->next_gc_ms) {
        s->next_gc_ms = now_ms + (uint64_t)GC_PERIODS * s->cfg.period_ms;
        gc(s, now_ms);
    }
    return 0;
}

static int on_ping_req(struct swim *s, uint64_t now_ms, const struct swim_msg *msg)
{
    struct relay *r = NULL;
    for (uint32_t i = 0; i < RELAYS_MAX && r == NULL; i++)
        if (!s->relays[i].used)
            r = &s->relays[i];
    if (r == NULL || swim_addr_eq(&msg->target, &s->cfg.self)) {
        s->stats.drop_other++;
        return 0; /* bounded: the origin counts the missing nack */
    }
    uint64_t wait = (uint64_t)(s->cfg.period_ms - s->cfg.ack_timeout_ms) * 4 / 5;
    *r = (struct relay){.used = true,
                        .seq = ++s->seq,
                        .origin_seq = msg->seq,
                        .origin = msg->sender,
                        .target = msg->target,
                        .deadline_ms = now_ms + wait};
    return send_msg(s, SWIM_MSG_PING, r->seq, &r->target, &r->target, NO_MEMBER);
}

static int on_ack(struct swim *s, const struct swim_msg *msg)
{
    struct probe *p = &s->probe;
    if (p->active && msg->seq == p->seq && swim_addr_eq(&msg->target, &p->target_addr)) {
        p->acked = true;
        return 0;
    }
    for (uint32_t i = 0; i < RELAYS_MAX; i++) {
        struct relay *r = &s->relays[i];
        if (r->used && r->seq == msg->seq && swim_addr_eq(&msg->sender, &r->target)) {
            r->used = false;
            return send_msg(s, SWIM_MSG_ACK, r->origin_seq, &r->origin, &r->target, NO_MEMBER);
        }
    }
    return 0; /* late ack: harmless */
}

/* Send our own alive record to `to` (a SYNC without reply) right away. */
static int send_self(struct swim *s, const struct swim_addr *to)
{
    struct swim_enc e;
    struct swim_update u;
    begin(s, &e, SWIM_MSG_SYNC, 0, 0, to);
    member_to_update(&s->members[SELF], &u);
    int rc = swim_enc_update(&e, &u);
    LM_ASSERT(rc == 0); /* one update always fits an empty datagram */
    return finish(s, &e, to);
}

/* A refutation races the suspicion timeout. Piggybacking alone ties its speed to our own
 * probe rate, which Lifeguard lowers exactly when we are slow; so it is also pushed at once to
 * whoever told us and to k random members (like memberlist's gossip of an alive message). */
static int push_refutation(struct swim *s, const struct swim_addr *teller)
{
    LM_ASSERT(s->members[SELF].status == SWIM_ALIVE);
    int rc = send_self(s, teller);
    for (uint32_t i = 0; i < s->cfg.indirect_k && rc == 0; i++) {
        uint32_t slot = random_peer(s, false);
        if (slot == NO_MEMBER)
            break;
        rc = send_self(s, &s->members[slot].addr);
    }
    return rc;
}

int swim_recv(struct swim *s, uint64_t now_ms, const uint8_t *buf, size_t len)
{
    LM_ASSERT(s != NULL);
    start(s, now_ms);
    struct swim_msg msg;
    size_t n = 0;
    int rc =
        swim_decode(buf, len, s->secret, s->cfg.secret_len, &msg, s->updates, SWIM_UPDATES_MAX, &n);
    if (rc == LM_E_CRC) {
        s->stats.drop_auth++;
        return rc;
    }
    if (rc != 0) {
        s->stats.drop_malformed++;
        return rc;
    }
    LM_ASSERT(n <= SWIM_UPDATES_MAX);
    if (swim_addr_eq(&msg.sender, &s->cfg.self) || msg.sender.port == 0) {
        s->stats.drop_other++;
        return LM_E_INVALID;
    }
    s->stats.recv_packets++;
    if (s->members[SELF].status == SWIM_LEFT)
        return 0;
    s->refute_pending = false;
    for (size_t i = 0; i < n; i++)
        merge(s, now_ms, &s->updates[i], &msg.sender, msg.type == SWIM_MSG_SYNC);
    if (s->refute_pending) {
        rc = push_refutation(s, &msg.sender);
        if (rc != 0)
            return rc;
    }
    switch (msg.type) {
    case SWIM_MSG_PING:
        if (!swim_addr_eq(&msg.target, &s->cfg.self)) {
            s->stats.drop_other++; /* meant for a previous owner of our address */
            return 0;
        }
        return send_msg(s, SWIM_MSG_ACK, msg.seq, &msg.sender, &s->cfg.self, NO_MEMBER);
    case SWIM_MSG_ACK:
        return on_ack(s, &msg);
    case SWIM_MSG_PING_REQ:
        return on_ping_req(s, now_ms, &msg);
    case SWIM_MSG_NACK:
        if (s->probe.active && msg.seq == s->probe.seq)
            s->probe.nacks_got++;
        return 0;
    case SWIM_MSG_SYNC:
        if (msg.flags & SWIM_FLAG_SYNC_REPLY)
            return send_state(s, &msg.sender, false);
        return 0;
    default:
        LM_UNREACHABLE(); /* swim_decode checked the type */
    }
    return 0;
}

int swim_leave(struct swim *s, uint64_t now_ms)
{
    LM_ASSERT(s != NULL);
    struct member *self = &s->members[SELF];
    if (self->status == SWIM_LEFT)
        return LM_E_STATE;
    self->inc++;
    self->status = SWIM_LEFT;
    self->status_since_ms = now_ms;
    bcast_queue(s, SELF);
    /* tell a few members directly; they spread it (the same fan-out as ping-req) */
    uint32_t sent = 0;
    for (uint32_t tries = 0; sent <= s->cfg.indirect_k && tries < 4 * (s->cfg.indirect_k + 1);
         tries++) {
        uint32_t slot = random_peer(s, false);
        if (slot == NO_MEMBER)
            break;
        int rc = send_self(s, &s->members[slot].addr);
        if (rc != 0)
            return rc;
        sent++;
    }
    return 0;
}

int swim_set_meta(struct swim *s, uint64_t now_ms, const struct swim_meta *meta)
{
    LM_ASSERT(s != NULL && meta != NULL);
    (void)now_ms;
    struct member *self = &s->members[SELF];
    if (self->status == SWIM_LEFT)
        return LM_E_STATE;
    const struct swim_meta *m = meta;
    if (strnlen(m->kafka_listener, sizeof(m->kafka_listener)) == sizeof(m->kafka_listener) ||
        strnlen(m->raft_addr, sizeof(m->raft_addr)) == sizeof(m->raft_addr) ||
        strnlen(m->rack, sizeof(m->rack)) == sizeof(m->rack))
        return LM_E_INVALID; /* unterminated: would not fit the wire's fields */
    self->meta = *meta;
    self->inc++; /* metadata is versioned by the incarnation */
    bcast_queue(s, SELF);
    return 0;
}

uint64_t swim_next_deadline_ms(const struct swim *s)
{
    uint64_t d = s->next_probe_ms;
    if (s->probe.active && !s->probe.acked && !s->probe.indirect_sent &&
        s->probe.ack_deadline_ms < d)
        d = s->probe.ack_deadline_ms;
    for (uint32_t i = 0; i < RELAYS_MAX; i++)
        if (s->relays[i].used && s->relays[i].deadline_ms < d)
            d = s->relays[i].deadline_ms;
    for (uint32_t i = 0; i < s->suspects_n; i++)
        if (s->members[s->suspects[i]].suspect_deadline_ms < d)
            d = s->members[s->suspects[i]].suspect_deadline_ms;
    if (s->next_sync_ms < d)
        d = s->next_sync_ms;
    if (s->next_gc_ms < d)
        d = s->next_gc_ms;
    return d;
}

static void info_of(const struct member *m, struct swim_member_info *out)
{
    out->addr = m->addr;
    out->status = m->status;
    out->incarnation = m->inc;
    out->meta = m->meta;
}

int swim_member_get(const struct swim *s, const struct swim_addr *addr,
                    struct swim_member_info *out)
{
    uint32_t slot = find(s, addr);
    if (slot == NO_MEMBER)
        return LM_E_NOT_FOUND;
    info_of(&s->members[slot], out);
    return 0;
}

size_t swim_member_count(const struct swim *s, uint8_t status)
{
    size_t n = 0;
    for (uint32_t i = 0; i < s->members_hw; i++)
        if (s->members[i].used && s->members[i].status == status)
            n++;
    return n;
}

int swim_member_at(const struct swim *s, size_t i, struct swim_member_info *out)
{
    if (i >= s->members_hw || !s->members[i].used)
        return LM_E_NOT_FOUND;
    info_of(&s->members[i], out);
    return 0;
}

size_t swim_table_size(const struct swim *s)
{
    return s->members_hw;
}

const struct swim_stats *swim_stats(const struct swim *s)
{
    return &s->stats;
}

uint64_t swim_incarnation(const struct swim *s)
{
    return s->members[SELF].inc;
}

uint32_t swim_health(const struct swim *s)
{
    return s->lhm;
}
