/* Raft core: see raft.h for the model (pure state machine, offset-range entries, persist
 * before send). Section numbers cite Ongaro & Ousterhout, "In Search of an Understandable
 * Consensus Algorithm" (§5.x) and Ongaro's thesis (§3.x/§4.x/§6.x/§9.x/§10.x). */
#include "consensus/raft.h"

#include <stdlib.h>
#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "common/lm_endian.h"

/* Bound on held messages; beyond it we drop (Raft tolerates loss). */
#define RAFT_OUTBOX_MAX 65536

struct pending_msg {
    struct raft_msg m;
    uint64_t dep; /* persist id this message waits for (0: none) */
};

struct conf_hist {
    int64_t index;
    struct raft_conf conf;
};

struct ready_rec {
    uint64_t id;
    int64_t last;
    uint64_t term;
    bool has_entries;
};

struct raft {
    struct raft_config cfg;
    struct raft_log_ops log;
    uint64_t rng;

    /* durable-ish state */
    uint64_t term;
    uint32_t vote;
    int64_t commit;
    int64_t applied;

    enum raft_role role;
    uint32_t leader;
    uint32_t elapsed, hb_elapsed, rand_timeout;
    bool hold_elections; /* raft_hold_elections */
    uint32_t transferee;
    bool campaign_force;
    int64_t pending_conf_index;
    bool appends_pending; /* leader appended since the last flush_appends */
    bool retry_pending;   /* a log read failed on a leader path: raft_tick retries it */
    bool apply_blocked;   /* reading a committed entry failed: wait for the next input */
    bool quiescent;       /* raft_quiesce: ticks do nothing until something wakes the group */
    int err;              /* first log read error of the current call (see raft.h) */

    uint32_t granted[RAFT_NODES_MAX], n_granted;
    uint32_t rejected[RAFT_NODES_MAX], n_rejected;

    /* unstable log: entries not yet known to be in storage (etcd's unstable) */
    struct raft_entry *unst;
    size_t n_unst, cap_unst, unst_handed;
    bool pending_start_set, pending_start_handed;
    uint64_t pending_start_ready_id;
    struct raft_log_start pending_start; /* owns payload */
    int64_t durable_last;

    struct conf_hist *hist;
    size_t n_hist, cap_hist;
    struct raft_conf conf_cache;

    struct raft_progress prs[RAFT_NODES_MAX + 1];
    int64_t *inflight_pool;

    /* persistence bookkeeping */
    uint64_t next_ready_id, persisted_id, hs_seq, log_seq, min_valid_persist_id;
    struct ready_rec recs[RAFT_READY_INFLIGHT_MAX];
    uint32_t rec_head, rec_count;
    struct raft_hard_state hs_handed;
    enum raft_role role_handed;
    uint32_t leader_handed;

    struct pending_msg *out;
    size_t n_out, cap_out;
    struct raft_msg *sent;
    size_t n_sent, cap_sent;
    struct raft_entry *apply_buf;
    size_t cap_apply;
};

/* ---------- small helpers ---------- */

static uint64_t rng_next(struct raft *r)
{
    /* splitmix64: deterministic from cfg.rand_seed, no libc random. */
    uint64_t z = (r->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void reset_rand_timeout(struct raft *r)
{
    r->rand_timeout = r->cfg.election_ticks + (uint32_t)(rng_next(r) % r->cfg.election_ticks);
}

bool raft_conf_is_voter(const struct raft_conf *c, uint32_t id)
{
    for (uint32_t i = 0; i < c->n_voters; i++)
        if (c->voters[i] == id)
            return true;
    return false;
}

bool raft_conf_is_learner(const struct raft_conf *c, uint32_t id)
{
    for (uint32_t i = 0; i < c->n_learners; i++)
        if (c->learners[i] == id)
            return true;
    return false;
}

int raft_conf_encode(const struct raft_conf *c, uint8_t *buf, size_t cap)
{
    size_t need = 8 + 4 * ((size_t)c->n_voters + c->n_learners);
    if (need > cap || c->n_voters > RAFT_NODES_MAX || c->n_learners > RAFT_NODES_MAX)
        return LM_E_TOO_LARGE;
    lm_put_be32(buf, c->n_voters);
    lm_put_be32(buf + 4, c->n_learners);
    size_t o = 8;
    for (uint32_t i = 0; i < c->n_voters; i++, o += 4)
        lm_put_be32(buf + o, c->voters[i]);
    for (uint32_t i = 0; i < c->n_learners; i++, o += 4)
        lm_put_be32(buf + o, c->learners[i]);
    return (int)o;
}

int raft_conf_decode(const uint8_t *buf, size_t len, struct raft_conf *out)
{
    if (len < 8)
        return LM_E_TRUNCATED;
    uint32_t nv = lm_get_be32(buf), nl = lm_get_be32(buf + 4);
    if (nv > RAFT_NODES_MAX || nl > RAFT_NODES_MAX)
        return LM_E_TOO_LARGE;
    if (len != 8 + 4 * ((size_t)nv + nl))
        return LM_E_INVALID;
    memset(out, 0, sizeof(*out));
    out->n_voters = nv;
    out->n_learners = nl;
    for (uint32_t i = 0; i < nv; i++)
        out->voters[i] = lm_get_be32(buf + 8 + 4 * i);
    for (uint32_t i = 0; i < nl; i++)
        out->learners[i] = lm_get_be32(buf + 8 + 4 * (nv + i));
    return 0;
}

const char *raft_msg_type_name(uint8_t type)
{
    static const char *names[] = {
        "?",           "App",       "AppResp",       "Vote",     "VoteResp",  "PreVote",
        "PreVoteResp", "Heartbeat", "HeartbeatResp", "LogStart", "TimeoutNow"};
    return type < LM_ARRAY_LEN(names) ? names[type] : "?";
}

const char *raft_role_name(enum raft_role role)
{
    switch (role) {
    case RAFT_FOLLOWER:
        return "follower";
    case RAFT_PRE_CANDIDATE:
        return "pre-candidate";
    case RAFT_CANDIDATE:
        return "candidate";
    case RAFT_LEADER:
        return "leader";
    }
    return "?";
}

static int entry_copy(struct raft_entry *dst, const struct raft_entry *src)
{
    *dst = *src;
    dst->data = NULL;
    if (src->len) {
        dst->data = malloc(src->len);
        if (!dst->data)
            return LM_E_NOMEM;
        memcpy(dst->data, src->data, src->len);
    }
    return 0;
}

static int start_copy(struct raft_log_start *dst, const struct raft_log_start *src)
{
    *dst = *src;
    dst->payload = NULL;
    if (src->payload_len) {
        dst->payload = malloc(src->payload_len);
        if (!dst->payload)
            return LM_E_NOMEM;
        memcpy(dst->payload, src->payload, src->payload_len);
    }
    return 0;
}

void raft_msg_deinit(struct raft_msg *m)
{
    for (uint32_t i = 0; m->entries && i < m->n_entries; i++)
        free(m->entries[i].data);
    free(m->entries);
    free(m->start.payload);
    m->entries = NULL;
    m->n_entries = 0;
    m->start.payload = NULL;
}

int raft_msg_copy(struct raft_msg *dst, const struct raft_msg *src)
{
    *dst = *src;
    dst->entries = NULL;
    dst->n_entries = 0;
    dst->start.payload = NULL;
    if (src->n_entries && !src->entries) {
        dst->n_entries = src->n_entries; /* a descriptor: nothing to copy */
    } else if (src->n_entries) {
        dst->entries = calloc(src->n_entries, sizeof(*dst->entries));
        if (!dst->entries)
            return LM_E_NOMEM;
        for (uint32_t i = 0; i < src->n_entries; i++, dst->n_entries++) {
            int rc = entry_copy(&dst->entries[i], &src->entries[i]);
            if (rc) {
                raft_msg_deinit(dst);
                return rc;
            }
        }
    }
    int rc = start_copy(&dst->start, &src->start);
    if (rc)
        raft_msg_deinit(dst);
    return rc;
}

int raft_log_resolve(const struct raft_log_ops *log, const struct raft_msg *m,
                     struct raft_entry *out, uint32_t cap)
{
    if (m->type != RAFT_MSG_APP || m->n_entries > cap)
        return LM_E_INVALID;
    if (m->n_entries == 0)
        return 0; /* prev and commit travel in the message itself */
    struct raft_log_start s;
    log->start(log->ctx, &s);
    if (m->index < s.index)
        return LM_E_OUT_OF_RANGE; /* the first named batch is gone: compacted */
    if (m->ent_last > log->last_index(log->ctx))
        return LM_E_NOT_FOUND; /* truncated */
    int64_t i = m->index + 1;
    for (uint32_t k = 0; k < m->n_entries; k++) {
        int rc = log->entry_at(log->ctx, i, &out[k]);
        if (rc == LM_E_NOT_FOUND || rc == LM_E_OUT_OF_RANGE)
            return LM_E_NOT_FOUND;
        if (rc)
            return rc;
        /* Batches moved (another leader's entries replaced ours): not the range raft named. */
        if (out[k].first_index != i || out[k].last_index > m->ent_last)
            return LM_E_NOT_FOUND;
        i = out[k].last_index + 1;
    }
    /* Log Matching: the same term at ent_last means the same batches up to it (raft.h). */
    if (i != m->ent_last + 1 || out[m->n_entries - 1].term != m->ent_last_term)
        return LM_E_NOT_FOUND;
    return 0;
}

int raft_msg_resolve(struct raft_msg *dst, const struct raft_msg *src,
                     const struct raft_log_ops *log)
{
    if (src->type != RAFT_MSG_APP || src->entries || src->n_entries == 0)
        return raft_msg_copy(dst, src);
    struct raft_entry *es = calloc(src->n_entries, sizeof(*es));
    if (!es)
        return LM_E_NOMEM;
    int rc = raft_log_resolve(log, src, es, src->n_entries);
    if (rc == 0) {
        struct raft_msg tmp = *src;
        tmp.entries = es; /* borrowed from the log; raft_msg_copy takes copies */
        rc = raft_msg_copy(dst, &tmp);
    }
    free(es);
    return rc;
}

/* ---------- log view: storage + pending log start + unstable tail ---------- */

static void view_start(const struct raft *r, struct raft_log_start *s)
{
    if (r->pending_start_set)
        *s = r->pending_start;
    else
        r->log.start(r->log.ctx, s);
}

static int64_t view_start_index(const struct raft *r)
{
    struct raft_log_start s;
    view_start(r, &s);
    return s.index;
}

static int64_t view_last(const struct raft *r)
{
    if (r->n_unst)
        return r->unst[r->n_unst - 1].last_index;
    if (r->pending_start_set)
        return r->pending_start.index;
    return r->log.last_index(r->log.ctx);
}

/* Offsets outside the view (at or below the log start, or beyond the last), as opposed to a
 * failed read of an offset inside it. */
static bool absent(int rc)
{
    return rc == LM_E_NOT_FOUND || rc == LM_E_OUT_OF_RANGE;
}

/* Keep the first log read error of the current call for its return value. */
static int note_err(struct raft *r, int rc)
{
    if (rc && !r->err)
        r->err = rc;
    return rc;
}

static int take_err(struct raft *r)
{
    int e = r->err;
    r->err = 0;
    return e;
}

/* The entry containing offset idx: LM_E_NOT_FOUND beyond the last, LM_E_OUT_OF_RANGE at or below
 * the log start, or the log's read error. */
static int view_entry(const struct raft *r, int64_t idx, struct raft_entry *out)
{
    if (idx > view_last(r))
        return LM_E_NOT_FOUND;
    if (r->n_unst && idx >= r->unst[0].first_index) {
        size_t lo = 0, hi = r->n_unst;
        while (lo < hi) { /* first entry with last_index >= idx */
            size_t mid = (lo + hi) / 2;
            if (r->unst[mid].last_index < idx)
                lo = mid + 1;
            else
                hi = mid;
        }
        LM_ASSERT(lo < r->n_unst && r->unst[lo].first_index <= idx);
        *out = r->unst[lo];
        return 0;
    }
    struct raft_log_start s;
    view_start(r, &s);
    if (idx <= s.index || r->pending_start_set)
        return LM_E_OUT_OF_RANGE;
    int rc = r->log.entry_at(r->log.ctx, idx, out);
    /* Inside (start, last] every offset exists: "missing" there is a broken log, not an answer
     * raft could act on, and so is a batch that does not hold idx. */
    if (absent(rc) || (rc == 0 && (out->first_index > idx || idx > out->last_index)))
        return LM_E_CORRUPT;
    return rc;
}

static int view_term(const struct raft *r, int64_t idx, uint64_t *term)
{
    struct raft_log_start s;
    view_start(r, &s);
    if (idx == s.index) {
        *term = s.term;
        return 0;
    }
    if (idx < s.index)
        return LM_E_OUT_OF_RANGE;
    struct raft_entry e;
    int rc = view_entry(r, idx, &e);
    if (rc)
        return rc;
    *term = e.term;
    return 0;
}

static int view_last_term(const struct raft *r, uint64_t *t)
{
    int rc = view_term(r, view_last(r), t);
    LM_ASSERT(!absent(rc)); /* the last offset is always in the view */
    return rc;
}

/* *match: the view holds term at idx. Returns 0 or a read error (then *match is unset). */
static int view_match(const struct raft *r, int64_t idx, uint64_t term, bool *match)
{
    uint64_t t;
    int rc = view_term(r, idx, &t);
    if (absent(rc)) {
        *match = false;
        return 0;
    }
    if (rc)
        return rc;
    *match = t == term;
    return 0;
}

/* Largest entry boundary <= idx (a batch's last offset or the log start). */
static int floor_boundary(const struct raft *r, int64_t idx, int64_t *out)
{
    int64_t last = view_last(r);
    if (idx >= last || idx <= view_start_index(r)) {
        *out = idx >= last ? last : idx;
        return 0;
    }
    struct raft_entry e;
    int rc = view_entry(r, idx, &e);
    if (rc)
        return rc;
    *out = idx == e.last_index ? idx : e.first_index - 1;
    return 0;
}

/* Largest boundary <= idx whose term <= term: the fast backtracking rule of etcd
 * (findConflictByTerm), the optimisation sketched at the end of Raft §5.3. */
static int find_conflict_by_term(const struct raft *r, int64_t idx, uint64_t term, int64_t *out)
{
    int64_t start = view_start_index(r);
    if (idx > view_last(r))
        idx = view_last(r);
    for (uint32_t guard = 0;; guard++) {
        LM_ASSERT(guard < (1u << 30));
        if (idx <= start) {
            *out = idx;
            return 0;
        }
        struct raft_entry e;
        int rc = view_entry(r, idx, &e);
        if (rc)
            return rc;
        if (e.term <= term) {
            *out = idx == e.last_index ? idx : e.first_index - 1;
            return 0;
        }
        idx = e.first_index - 1;
    }
}

/* The term of idx if the unstable tail holds it (no storage read). */
static bool unst_term(const struct raft *r, int64_t idx, uint64_t *term)
{
    if (!r->n_unst || idx < r->unst[0].first_index || idx > r->unst[r->n_unst - 1].last_index)
        return false;
    struct raft_entry e;
    int rc = view_entry(r, idx, &e);
    LM_ASSERT(rc == 0);
    *term = e.term;
    return true;
}

/* ---------- configuration history ---------- */

static const struct raft_conf *cur_conf(const struct raft *r)
{
    if (r->n_hist)
        return &r->hist[r->n_hist - 1].conf;
    if (r->pending_start_set)
        return &r->pending_start.conf;
    struct raft_log_start s;
    r->log.start(r->log.ctx, &s);
    struct raft *mut = (struct raft *)r; /* cache only: the log owns the truth */
    mut->conf_cache = s.conf;
    return &mut->conf_cache;
}

static int hist_push(struct raft *r, int64_t index, const struct raft_conf *c)
{
    if (r->n_hist == r->cap_hist) {
        size_t cap = r->cap_hist ? r->cap_hist * 2 : 8;
        struct conf_hist *h = realloc(r->hist, cap * sizeof(*h));
        if (!h)
            return LM_E_NOMEM;
        r->hist = h;
        r->cap_hist = cap;
    }
    r->hist[r->n_hist].index = index;
    r->hist[r->n_hist].conf = *c;
    r->n_hist++;
    return 0;
}

int raft_conf_at(const struct raft *r, int64_t index, struct raft_conf *out)
{
    for (size_t i = r->n_hist; i-- > 0;) {
        if (r->hist[i].index <= index) {
            *out = r->hist[i].conf;
            return 0;
        }
    }
    struct raft_log_start s;
    view_start(r, &s);
    if (index < s.index)
        return LM_E_OUT_OF_RANGE;
    *out = s.conf;
    return 0;
}

static bool promotable(const struct raft *r)
{
    return raft_conf_is_voter(cur_conf(r), r->cfg.id);
}

static uint32_t quorum(const struct raft_conf *c)
{
    return c->n_voters / 2 + 1;
}

/* ---------- progress ---------- */

static struct raft_progress *pr_find(struct raft *r, uint32_t id)
{
    for (uint32_t i = 0; i < LM_ARRAY_LEN(r->prs); i++)
        if (r->prs[i].id == id && id != RAFT_NONE)
            return &r->prs[i];
    return NULL;
}

static void pr_reset(struct raft *r, struct raft_progress *pr, uint32_t id)
{
    int64_t *buf = pr->inflight;
    memset(pr, 0, sizeof(*pr));
    pr->inflight = buf;
    pr->id = id;
    pr->match = -1;
    pr->next = view_last(r) + 1;
    pr->state = RAFT_PR_PROBE;
    pr->recent_active = true;
}

/* Make the progress set equal to the members of the current configuration plus self. */
static void sync_progress(struct raft *r)
{
    const struct raft_conf *c = cur_conf(r);
    for (uint32_t i = 0; i < LM_ARRAY_LEN(r->prs); i++) {
        uint32_t id = r->prs[i].id;
        if (id != RAFT_NONE && id != r->cfg.id && !raft_conf_is_voter(c, id) &&
            !raft_conf_is_learner(c, id))
            r->prs[i].id = RAFT_NONE;
    }
    uint32_t want[2 * RAFT_NODES_MAX + 1], n = 0;
    want[n++] = r->cfg.id;
    for (uint32_t i = 0; i < c->n_voters; i++)
        want[n++] = c->voters[i];
    for (uint32_t i = 0; i < c->n_learners; i++)
        want[n++] = c->learners[i];
    for (uint32_t i = 0; i < n; i++) {
        if (pr_find(r, want[i]))
            continue;
        struct raft_progress *slot = NULL;
        for (uint32_t j = 0; j < LM_ARRAY_LEN(r->prs) && !slot; j++)
            if (r->prs[j].id == RAFT_NONE)
                slot = &r->prs[j];
        LM_ASSERT(slot != NULL);
        pr_reset(r, slot, want[i]);
        if (want[i] == r->cfg.id)
            slot->match = r->durable_last;
    }
}

static void inflight_reset(struct raft_progress *pr)
{
    pr->inflight_count = 0;
    pr->inflight_head = 0;
}

static bool inflight_full(const struct raft *r, const struct raft_progress *pr)
{
    return pr->inflight_count >= r->cfg.max_inflight;
}

static void inflight_add(struct raft *r, struct raft_progress *pr, int64_t last)
{
    LM_ASSERT(!inflight_full(r, pr));
    pr->inflight[(pr->inflight_head + pr->inflight_count) % r->cfg.max_inflight] = last;
    pr->inflight_count++;
}

static void inflight_free_to(struct raft *r, struct raft_progress *pr, int64_t idx)
{
    while (pr->inflight_count && pr->inflight[pr->inflight_head] <= idx) {
        pr->inflight_head = (pr->inflight_head + 1) % r->cfg.max_inflight;
        pr->inflight_count--;
    }
}

static void pr_become_probe(struct raft_progress *pr)
{
    if (pr->state == RAFT_PR_SNAPSHOT) {
        int64_t n = pr->pending_start + 1;
        pr->next = pr->match + 1 > n ? pr->match + 1 : n;
    } else {
        pr->next = pr->match + 1;
    }
    pr->state = RAFT_PR_PROBE;
    pr->probe_sent = false;
    inflight_reset(pr);
}

static void pr_become_replicate(struct raft_progress *pr)
{
    pr->state = RAFT_PR_REPLICATE;
    pr->next = pr->match + 1;
    pr->probe_sent = false;
    inflight_reset(pr);
}

/* ---------- outbox ---------- */

static bool is_response(uint8_t type)
{
    return type == RAFT_MSG_APP_RESP || type == RAFT_MSG_VOTE_RESP ||
           type == RAFT_MSG_PREVOTE_RESP || type == RAFT_MSG_HEARTBEAT_RESP;
}

static bool hs_differs(const struct raft *r)
{
    return r->hs_handed.term != r->term || r->hs_handed.vote != r->vote ||
           r->hs_handed.commit != r->commit;
}

static bool persist_pending(const struct raft *r)
{
    return hs_differs(r) || r->unst_handed < r->n_unst ||
           (r->pending_start_set && !r->pending_start_handed);
}

/* Queue m (takes its allocations). Persist before send: m waits for the persist id carrying
 * the last change of what it depends on. */
static void send(struct raft *r, struct raft_msg *m)
{
    m->from = r->cfg.id;
    m->group = r->cfg.group;
    if (m->term == 0)
        m->term = r->term;
    uint64_t dep = r->hs_seq;
    if (is_response(m->type) && r->log_seq > dep)
        dep = r->log_seq;
    /* Nothing new waiting to be handed out: the last handed-out ready covers everything. */
    if (dep >= r->next_ready_id && !persist_pending(r))
        dep = r->next_ready_id - 1;
    if (dep <= r->persisted_id)
        dep = 0;
    if (r->n_out >= RAFT_OUTBOX_MAX) { /* bounded: a lost message is a dropped packet */
        raft_msg_deinit(m);
        return;
    }
    if (r->n_out == r->cap_out) {
        size_t cap = r->cap_out ? r->cap_out * 2 : 32;
        struct pending_msg *o = realloc(r->out, cap * sizeof(*o));
        if (!o) {
            raft_msg_deinit(m);
            return;
        }
        r->out = o;
        r->cap_out = cap;
    }
    r->out[r->n_out].m = *m;
    r->out[r->n_out].dep = dep;
    r->n_out++;
}

static void hs_touch(struct raft *r)
{
    r->hs_seq = r->next_ready_id;
}

/* Last offset handed out for writing in a ready: the shell's log holds the view up to here. */
static int64_t handed_last(const struct raft *r)
{
    if (r->unst_handed)
        return r->unst[r->unst_handed - 1].last_index;
    if (r->n_unst)
        return r->unst[0].first_index - 1;
    return view_last(r);
}

/* A held message goes out once what it depends on is durable and, for an append of the current
 * leader, once every entry it names has been handed out, so the shell can resolve it. (A stale
 * leader's append goes out as it is: resolving it fails or sends true entries, and the report
 * of a failure is ignored.) */
static bool releasable(const struct raft *r, const struct pending_msg *pm)
{
    if (pm->dep > r->persisted_id)
        return false;
    if (pm->m.type != RAFT_MSG_APP || r->role != RAFT_LEADER || pm->m.term != r->term)
        return true;
    return pm->m.ent_last <= handed_last(r);
}

/* ---------- unstable log ---------- */

static void unst_truncate_from(struct raft *r, int64_t first)
{
    size_t keep = 0;
    if (r->n_unst && first > r->unst[0].first_index) {
        while (keep < r->n_unst && r->unst[keep].last_index < first)
            keep++;
        LM_ASSERT(keep == r->n_unst || r->unst[keep].first_index == first);
    }
    for (size_t i = keep; i < r->n_unst; i++)
        free(r->unst[i].data);
    r->n_unst = keep;
    if (r->unst_handed > keep)
        r->unst_handed = keep;
}

/* Append es (copied) to the log view, overwriting from es[0].first_index (Raft §5.3: delete the
 * conflicting entry and all that follow it). */
static int log_append(struct raft *r, const struct raft_entry *es, size_t n)
{
    LM_ASSERT(n > 0);
    int64_t first = es[0].first_index;
    LM_ASSERT(first > r->commit); /* committed entries are never overwritten */
    LM_ASSERT(first <= view_last(r) + 1);
    int64_t fb;
    int rc = floor_boundary(r, first - 1, &fb); /* before any change: a failed read is harmless */
    if (rc)
        return rc;
    LM_ASSERT(first == fb + 1);
    unst_truncate_from(r, first);
    if (r->durable_last > first - 1)
        r->durable_last = first - 1;
    while (r->n_hist && r->hist[r->n_hist - 1].index >= first)
        r->n_hist--;
    if (r->n_unst + n > r->cap_unst) {
        size_t cap = r->cap_unst ? r->cap_unst : 16;
        while (cap < r->n_unst + n)
            cap *= 2;
        struct raft_entry *u = realloc(r->unst, cap * sizeof(*u));
        if (!u)
            return LM_E_NOMEM;
        r->unst = u;
        r->cap_unst = cap;
    }
    for (size_t i = 0; i < n; i++) {
        LM_ASSERT(es[i].first_index == (i ? es[i - 1].last_index : first - 1) + 1);
        LM_ASSERT(es[i].last_index >= es[i].first_index);
        rc = entry_copy(&r->unst[r->n_unst], &es[i]);
        if (rc)
            return rc;
        r->n_unst++;
        if (es[i].type == RAFT_ENTRY_CONF) {
            struct raft_conf c;
            rc = raft_conf_decode(es[i].data, es[i].len, &c);
            if (rc == 0)
                rc = hist_push(r, es[i].last_index, &c);
            if (rc)
                return rc;
        }
    }
    r->log_seq = r->next_ready_id;
    return 0;
}

/* ---------- roles ---------- */

#define RAFT_STAT(r, field)                                                                        \
    do {                                                                                           \
        if ((r)->cfg.stats != NULL)                                                                \
            (r)->cfg.stats->field++;                                                               \
    } while (0)

static void become_follower(struct raft *r, uint64_t term, uint32_t leader)
{
    if (term != r->term) {
        LM_ASSERT(term > r->term);
        r->term = term;
        r->vote = RAFT_NONE;
        hs_touch(r);
    }
    r->role = RAFT_FOLLOWER;
    r->leader = leader;
    r->elapsed = 0;
    r->transferee = RAFT_NONE;
    r->quiescent = false;
    reset_rand_timeout(r);
}

static void votes_reset(struct raft *r)
{
    r->n_granted = 0;
    r->n_rejected = 0;
}

/* Record a vote; returns +1 won, -1 lost, 0 pending. */
static int votes_record(struct raft *r, uint32_t from, bool granted)
{
    const struct raft_conf *c = cur_conf(r);
    if (!raft_conf_is_voter(c, from))
        return 0;
    for (uint32_t i = 0; i < r->n_granted; i++)
        if (r->granted[i] == from)
            goto tally;
    for (uint32_t i = 0; i < r->n_rejected; i++)
        if (r->rejected[i] == from)
            goto tally;
    LM_ASSERT(r->n_granted + r->n_rejected < RAFT_NODES_MAX);
    if (granted)
        r->granted[r->n_granted++] = from;
    else
        r->rejected[r->n_rejected++] = from;
tally:
    if (r->n_granted >= quorum(c))
        return 1;
    if (r->n_rejected > c->n_voters - quorum(c))
        return -1;
    return 0;
}

static bool send_append(struct raft *r, struct raft_progress *pr, bool send_if_empty);
static void bcast_append(struct raft *r);
static bool lone(const struct raft *r);
static bool maybe_commit(struct raft *r);

static void become_leader(struct raft *r)
{
    LM_ASSERT(r->role == RAFT_CANDIDATE);
    LM_ASSERT(r->vote == r->cfg.id);
    RAFT_STAT(r, elections_won);
    r->role = RAFT_LEADER;
    r->leader = r->cfg.id;
    r->elapsed = 0;
    r->hb_elapsed = 0;
    r->transferee = RAFT_NONE;
    r->quiescent = false;
    for (uint32_t i = 0; i < LM_ARRAY_LEN(r->prs); i++)
        r->prs[i].id = RAFT_NONE;
    sync_progress(r);
    if (lone(r)) {
        /* No other voter: nothing to commit through a NOOP (raft.h, lone_resume). */
        if (maybe_commit(r))
            bcast_append(r);
        return;
    }
    /* §5.4.2: a leader commits entries of earlier terms only by committing one of its own, so
     * it appends an empty entry at once (Kafka: the LeaderChange control batch, KIP-595). */
    int64_t last = view_last(r);
    struct raft_entry noop = {
        .first_index = last + 1, .last_index = last + 1, .term = r->term, .type = RAFT_ENTRY_NOOP};
    int rc = log_append(r, &noop, 1);
    LM_ASSERT(rc == 0);
    r->pending_conf_index = last + 1;
    bcast_append(r);
}

/* Returns 0, or the read error that kept the election from starting (nothing changed). */
static int campaign(struct raft *r, bool pre, bool force)
{
    if (!promotable(r))
        return 0;
    /* Read the last term first: a failed read must leave term and vote untouched. A lone voter
     * wins at once and asks nobody. */
    const struct raft_conf *c = cur_conf(r);
    int64_t last = view_last(r);
    uint64_t last_term = 0;
    if (c->n_voters > 1) {
        int rc = view_last_term(r, &last_term);
        if (rc)
            return note_err(r, rc);
    }
    uint64_t vote_term;
    if (pre) {
        r->role = RAFT_PRE_CANDIDATE;
        r->leader = RAFT_NONE;
        vote_term = r->term + 1;
    } else {
        r->term++;
        r->vote = r->cfg.id;
        hs_touch(r);
        RAFT_STAT(r, elections);
        r->role = RAFT_CANDIDATE;
        r->leader = RAFT_NONE;
        vote_term = r->term;
    }
    r->elapsed = 0;
    r->transferee = RAFT_NONE;
    r->campaign_force = force;
    reset_rand_timeout(r);
    votes_reset(r);
    if (votes_record(r, r->cfg.id, true) > 0) {
        if (pre)
            return campaign(r, false, force);
        become_leader(r);
        return 0;
    }
    for (uint32_t i = 0; i < c->n_voters; i++) {
        if (c->voters[i] == r->cfg.id)
            continue;
        struct raft_msg m = {.type = pre ? RAFT_MSG_PREVOTE : RAFT_MSG_VOTE,
                             .to = c->voters[i],
                             .term = vote_term,
                             .index = last,
                             .log_term = last_term,
                             .force = force};
        send(r, &m);
    }
    return 0;
}

/* ---------- replication (leader) ---------- */

static void send_log_start(struct raft *r, struct raft_progress *pr)
{
    struct raft_log_start s;
    view_start(r, &s);
    struct raft_msg m = {.type = RAFT_MSG_LOG_START, .to = pr->id};
    if (start_copy(&m.start, &s))
        return;
    m.commit = r->commit;
    send(r, &m);
    pr->state = RAFT_PR_SNAPSHOT;
    pr->pending_start = s.index;
    inflight_reset(pr);
}

/* Queue an append to pr: a descriptor naming up to max_msg_entries batches from pr->next (the
 * shell fills the bytes, raft.h). Returns true when a message was queued. A failed log read
 * queues nothing, leaves pr as it was and leaves the retry to raft_tick. */
static bool send_append(struct raft *r, struct raft_progress *pr, bool send_if_empty)
{
    if (pr->id == r->cfg.id || pr->state == RAFT_PR_SNAPSHOT)
        return false;
    if (pr->state == RAFT_PR_PROBE && pr->probe_sent)
        return false;
    if (pr->state == RAFT_PR_REPLICATE && inflight_full(r, pr))
        return false;
    int64_t last = view_last(r);
    LM_ASSERT(pr->next <= last + 1);
    int64_t prev = pr->next - 1;
    uint64_t prev_term;
    int rc = view_term(r, prev, &prev_term);
    if (rc == LM_E_OUT_OF_RANGE) {
        /* prev is below our log start: the follower needs the "log start moved" message. */
        send_log_start(r, pr);
        return true;
    }
    int64_t fb = prev;
    if (rc == 0)
        rc = floor_boundary(r, prev, &fb);
    if (rc) {
        note_err(r, rc);
        r->retry_pending = true;
        pr->append_owed = true;
        return false;
    }
    LM_ASSERT(prev == fb);
    uint32_t n = 0;
    int64_t ent_last = prev;
    uint64_t ent_last_term = prev_term;
    uint64_t msg_bytes = 0;
    for (int64_t i = pr->next; i <= last && n < r->cfg.max_msg_entries; n++) {
        struct raft_entry e;
        rc = view_entry(r, i, &e);
        if (rc) {
            /* Send the batches read so far; the rest follows once reads work again. */
            note_err(r, rc);
            r->retry_pending = true;
            if (n == 0) {
                pr->append_owed = true;
                return false;
            }
            break;
        }
        LM_ASSERT(e.first_index == i);
        uint64_t eb = e.bytes != 0 ? e.bytes : e.len;
        if (n > 0 && r->cfg.max_msg_bytes != 0 && msg_bytes + eb > r->cfg.max_msg_bytes)
            break; /* the rest in the next message */
        msg_bytes += eb;
        ent_last = e.last_index;
        ent_last_term = e.term;
        i = e.last_index + 1;
    }
    if (n == 0 && !send_if_empty)
        return false;
    pr->append_owed = false;
    struct raft_msg m = {.type = RAFT_MSG_APP,
                         .to = pr->id,
                         .index = prev,
                         .log_term = prev_term,
                         .commit = r->commit,
                         .ent_last = ent_last,
                         .ent_last_term = ent_last_term,
                         .n_entries = n};
    if (n) {
        if (pr->state == RAFT_PR_REPLICATE) {
            pr->next = ent_last + 1; /* pipelining: optimistic next (thesis §10.2.1) */
            inflight_add(r, pr, ent_last);
        } else {
            pr->probe_sent = true;
        }
    } else if (pr->state == RAFT_PR_PROBE) {
        pr->probe_sent = true;
    }
    send(r, &m);
    return true;
}

static void bcast_append(struct raft *r)
{
    for (uint32_t i = 0; i < LM_ARRAY_LEN(r->prs); i++)
        if (r->prs[i].id != RAFT_NONE && r->prs[i].id != r->cfg.id)
            send_append(r, &r->prs[i], true);
}

/* Send everything the window allows to every follower (pipelining, thesis §10.2.1). */
static void flush_appends(struct raft *r)
{
    r->appends_pending = false;
    if (r->role != RAFT_LEADER)
        return;
    for (uint32_t i = 0; i < LM_ARRAY_LEN(r->prs); i++) {
        struct raft_progress *pr = &r->prs[i];
        if (pr->id == RAFT_NONE || pr->id == r->cfg.id)
            continue;
        for (uint32_t k = 0; k < r->cfg.max_inflight && send_append(r, pr, false); k++) {
        }
    }
}

static void bcast_heartbeat(struct raft *r)
{
    for (uint32_t i = 0; i < LM_ARRAY_LEN(r->prs); i++) {
        struct raft_progress *pr = &r->prs[i];
        if (pr->id == RAFT_NONE || pr->id == r->cfg.id)
            continue;
        /* Only commit what the follower is known to hold (etcd): its tail may diverge. */
        struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT,
                             .to = pr->id,
                             .commit = pr->match < r->commit ? pr->match : r->commit};
        send(r, &m);
    }
}

/* A lone_resume node whose configuration is itself alone (raft.h). */
static bool lone(const struct raft *r)
{
    const struct raft_conf *c = cur_conf(r);
    return r->cfg.lone_resume && c->n_voters == 1 && c->voters[0] == r->cfg.id &&
           c->n_learners == 0;
}

static int cmp_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Advance commit to the quorum match if that entry is of the current term (§5.4.2). */
static bool maybe_commit(struct raft *r)
{
    const struct raft_conf *c = cur_conf(r);
    if (c->n_voters == 0)
        return false;
    int64_t m[RAFT_NODES_MAX];
    for (uint32_t i = 0; i < c->n_voters; i++) {
        struct raft_progress *pr = pr_find(r, c->voters[i]);
        m[i] = pr ? pr->match : -1;
        if (c->voters[i] == r->cfg.id)
            m[i] = r->durable_last;
    }
    qsort(m, c->n_voters, sizeof(m[0]), cmp_desc);
    int64_t q = m[quorum(c) - 1];
    if (q <= r->commit)
        return false;
    uint64_t t;
    int rc = view_term(r, q, &t);
    int64_t fb = q;
    if (rc == 0 && t == r->term)
        rc = floor_boundary(r, q, &fb);
    if (rc && !absent(rc)) {
        note_err(r, rc); /* commit stays where it is: never advanced on a guess */
        r->retry_pending = true;
        return false;
    }
    if (rc == 0 && t != r->term && lone(r))
        rc = floor_boundary(r, q, &fb); /* lone_resume: any term commits (raft.h) */
    else if (rc == 0 && t != r->term)
        return false;
    if (rc)
        return false;
    LM_ASSERT(q == fb);
    r->commit = q;
    /* Thesis §4.2.2: a leader removed from the configuration steps down once the change that
     * removed it is committed. */
    if (!raft_conf_is_voter(c, r->cfg.id) && r->commit >= r->pending_conf_index) {
        bcast_append(r); /* let the others learn the commit before we go quiet */
        become_follower(r, r->term, RAFT_NONE);
        return false;
    }
    return true;
}

/* Whether idx ends an entry of this leader's log: an index it sent as a message's last (the
 * inflight window, no read) or, else, by the log (a read unless idx is its end). A read error
 * answers false: the acknowledgement is dropped, as a lost message. */
static bool ack_on_boundary(struct raft *r, const struct raft_progress *pr, int64_t idx)
{
    for (uint32_t i = 0; i < pr->inflight_count; i++)
        if (pr->inflight[(pr->inflight_head + i) % r->cfg.max_inflight] == idx)
            return true;
    int64_t fb = -1;
    return floor_boundary(r, idx, &fb) == 0 && fb == idx;
}

static void handle_append_resp(struct raft *r, const struct raft_msg *m)
{
    struct raft_progress *pr = pr_find(r, m->from);
    if (!pr || pr->id == r->cfg.id)
        return;
    pr->recent_active = true;
    if (m->reject) {
        bool changed = false;
        if (pr->state == RAFT_PR_REPLICATE) {
            if (m->index > pr->match) {
                pr_become_probe(pr);
                changed = true;
            }
        } else if (pr->state == RAFT_PR_PROBE && m->index == pr->next - 1) {
            /* A failed read leaves next as it is: the follower is probed again (same prev) on
             * its next heartbeat response and the rejection comes back. */
            int64_t j, p;
            int rc = find_conflict_by_term(r, m->hint_index, m->hint_term, &j);
            if (rc == 0)
                rc = floor_boundary(r, m->index - 1 < j ? m->index - 1 : j, &p);
            if (rc) {
                note_err(r, rc);
                return;
            }
            if (p < pr->match)
                p = pr->match;
            pr->next = p + 1;
            pr->probe_sent = false;
            changed = true;
        }
        if (changed)
            send_append(r, pr, true);
        return;
    }
    if (m->index > view_last(r) || (m->index > pr->match && !ack_on_boundary(r, pr, m->index))) {
        /* A match past this leader's log or inside one of its batches: the follower answers
         * for another log (an older incarnation of the group left on its disk, a corrupt
         * message). Taking it would count entries nobody has towards the commit and send
         * from past the log's end or from the middle of a batch. */
        return;
    }
    bool updated = false;
    if (pr->match < m->index) {
        pr->match = m->index;
        updated = true;
    }
    if (pr->next < m->index + 1)
        pr->next = m->index + 1;
    if (updated || (pr->state == RAFT_PR_PROBE && pr->match == m->index)) {
        if (pr->state == RAFT_PR_PROBE)
            pr_become_replicate(pr);
        else if (pr->state == RAFT_PR_SNAPSHOT && pr->match >= pr->pending_start)
            pr_become_replicate(pr);
        else if (pr->state == RAFT_PR_REPLICATE)
            inflight_free_to(r, pr, m->index);
        if (maybe_commit(r)) {
            bcast_append(r);
        } else if (r->role == RAFT_LEADER) {
            for (uint32_t k = 0; k < r->cfg.max_inflight && send_append(r, pr, false); k++) {
            }
        }
        if (r->role == RAFT_LEADER && m->from == r->transferee && pr->match == view_last(r)) {
            struct raft_msg t = {.type = RAFT_MSG_TIMEOUT_NOW, .to = m->from};
            send(r, &t);
        }
    }
}

/* ---------- follower handlers ---------- */

static void commit_to(struct raft *r, int64_t c)
{
    if (c > r->commit) {
        LM_ASSERT(c <= view_last(r));
        r->commit = c;
    }
}

/* A failed log read anywhere in here drops the message unanswered, before anything in the log
 * changed (as a lost message: the leader sends again). */
static int handle_append(struct raft *r, const struct raft_msg *m)
{
    /* A success carries the shell's context in the APP back (hint_index, raft.h); a rejection
     * uses hint_index for its hint. */
    struct raft_msg resp = {.type = RAFT_MSG_APP_RESP, .to = m->from, .hint_index = m->hint_index};
    if (m->index < r->commit) {
        resp.index = r->commit;
        send(r, &resp);
        return 0;
    }
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        int64_t want = (i ? m->entries[i - 1].last_index : m->index) + 1;
        if (e->first_index != want || e->last_index < e->first_index || e->term > m->term)
            return LM_E_INVALID;
    }
    bool match;
    int rc = view_match(r, m->index, m->log_term, &match);
    if (rc)
        return note_err(r, rc);
    if (!match) {
        int64_t h;
        uint64_t ht = 0;
        rc = find_conflict_by_term(r, m->index, m->log_term, &h);
        if (rc == 0)
            rc = view_term(r, h, &ht);
        if (absent(rc)) {
            ht = 0;
            rc = 0;
        }
        if (rc)
            return note_err(r, rc);
        resp.reject = true;
        resp.index = m->index;
        resp.hint_index = h;
        resp.hint_term = ht;
        send(r, &resp);
        return 0;
    }
    int64_t last_new = m->n_entries ? m->entries[m->n_entries - 1].last_index : m->index;
    uint32_t i = 0;
    int64_t last = view_last(r);
    for (; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (e->last_index > last)
            break;
        rc = view_match(r, e->last_index, e->term, &match);
        if (rc)
            return note_err(r, rc);
        if (!match)
            break;
    }
    if (i < m->n_entries) {
        if (m->entries[i].first_index <= r->commit)
            return LM_E_INVALID; /* a leader would never ask to overwrite committed entries */
        rc = log_append(r, &m->entries[i], m->n_entries - i);
        if (rc)
            return rc;
    }
    commit_to(r, m->commit < last_new ? m->commit : last_new);
    resp.index = last_new;
    send(r, &resp);
    return 0;
}

/* Nothing of this node's own is on its way: no write handed out and not yet durable, nothing
 * still to hand out, no message held for a persist. */
static bool settled(const struct raft *r)
{
    return !persist_pending(r) && r->rec_count == 0 && r->n_out == 0 &&
           r->durable_last == view_last(r);
}

static void handle_heartbeat(struct raft *r, const struct raft_msg *m)
{
    int64_t last = view_last(r);
    commit_to(r, m->commit < last ? m->commit : last);
    /* hint_index: the shell's context in the heartbeat (a partition's send time, for its read
     * lease), echoed (raft.h) */
    struct raft_msg resp = {
        .type = RAFT_MSG_HEARTBEAT_RESP, .to = m->from, .hint_index = m->hint_index};
    if (m->quiesce) {
        /* The leader has everything replicated and stops heartbeating (raft_quiesce). Follow
         * it only with exactly its log, committed and durable: anything else is refused, and
         * the refusal wakes the leader. */
        if (m->commit == last && r->commit == last && settled(r)) {
            r->quiescent = true;
            r->elapsed = 0;
            resp.quiesce = true;
        } else {
            resp.reject = true;
        }
    }
    send(r, &resp);
}

static int handle_log_start(struct raft *r, const struct raft_msg *m)
{
    struct raft_msg resp = {.type = RAFT_MSG_APP_RESP, .to = m->from};
    const struct raft_log_start *s = &m->start;
    if (s->index <= r->commit) {
        resp.index = r->commit;
        send(r, &resp);
        return 0;
    }
    bool match;
    int rc = view_match(r, s->index, s->term, &match);
    if (rc)
        return note_err(r, rc); /* dropped: the leader sends the log start again */
    if (match) {
        /* We hold the entry already: just learn that it is committed. */
        commit_to(r, s->index);
        resp.index = s->index;
        send(r, &resp);
        return 0;
    }
    /* Drop the whole log and start after s->index (thesis §5.3 InstallSnapshot). */
    struct raft_log_start copy;
    rc = start_copy(&copy, s);
    if (rc)
        return rc;
    unst_truncate_from(r, INT64_MIN);
    free(r->pending_start.payload);
    r->pending_start = copy;
    r->pending_start_set = true;
    r->pending_start_handed = false;
    r->pending_start_ready_id = 0;
    r->n_hist = 0;
    r->commit = s->index;
    if (r->applied < s->index)
        r->applied = s->index; /* the caller restores its state machine from the payload */
    r->durable_last = s->index;
    r->log_seq = r->next_ready_id;
    r->min_valid_persist_id = r->next_ready_id; /* older completions describe the old log */
    resp.index = s->index;
    send(r, &resp);
    return 0;
}

/* ---------- step ---------- */

/* VOTE and PREVOTE, in any role, after the common term handling. A failed read of our last
 * term sends no answer: a grant must not be guessed, and a refusal would count against a
 * candidate whose log may be fine. */
static int handle_vote(struct raft *r, const struct raft_msg *m)
{
    bool pre = m->type == RAFT_MSG_PREVOTE;
    bool can_vote = r->vote == m->from || (r->vote == RAFT_NONE && r->leader == RAFT_NONE) ||
                    (pre && m->term > r->term);
    uint64_t lt;
    int rc = view_last_term(r, &lt);
    if (rc)
        return note_err(r, rc);
    bool up_to_date = m->log_term > lt || (m->log_term == lt && m->index >= view_last(r));
    struct raft_msg resp = {.type = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP,
                            .to = m->from};
    if (can_vote && up_to_date) {
        resp.term = m->term; /* §9.6: a pre-vote grant echoes the future term */
        if (!pre) {
            r->elapsed = 0;
            if (r->vote != m->from) {
                r->vote = m->from;
                hs_touch(r);
            }
        }
    } else {
        resp.term = r->term;
        resp.reject = true;
    }
    send(r, &resp);
    return 0;
}

/* The term rules every role shares (Raft §5.1, pre-vote §9.6, the check-quorum lease §4.2.3).
 * Returns true when the message is fully handled here. */
static bool step_term(struct raft *r, const struct raft_msg *m)
{
    if (m->term > r->term) {
        if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) {
            /* Check-quorum lease (thesis §4.2.3): while we hear from a leader, ignore votes
             * unless they come from a leadership transfer. */
            bool in_lease =
                r->cfg.check_quorum && r->leader != RAFT_NONE && r->elapsed < r->cfg.election_ticks;
            if (in_lease && !m->force)
                return true;
        }
        if (r->role == RAFT_LEADER && m->type != RAFT_MSG_PREVOTE &&
            !(m->type == RAFT_MSG_PREVOTE_RESP && !m->reject))
            RAFT_STAT(r, term_stepdowns);
        if (m->type == RAFT_MSG_PREVOTE) {
            /* a pre-vote never changes our term (§9.6) */
        } else if (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject) {
            /* a grant carries the term we would campaign at */
        } else if (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT ||
                   m->type == RAFT_MSG_LOG_START) {
            become_follower(r, m->term, m->from);
        } else {
            become_follower(r, m->term, RAFT_NONE);
        }
        return false;
    }
    if (m->term < r->term) {
        if ((r->cfg.check_quorum || r->cfg.pre_vote) &&
            (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT)) {
            /* Tell a stale leader about the newer term so it steps down. */
            struct raft_msg resp = {
                .type = RAFT_MSG_APP_RESP, .to = m->from, .index = -1, .reject = false};
            resp.index = r->commit;
            send(r, &resp);
        } else if (m->type == RAFT_MSG_PREVOTE) {
            struct raft_msg resp = {.type = RAFT_MSG_PREVOTE_RESP, .to = m->from, .reject = true};
            send(r, &resp);
        }
        return true;
    }
    return false;
}

static int step_leader(struct raft *r, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_APP_RESP:
        handle_append_resp(r, m);
        return 0;
    case RAFT_MSG_HEARTBEAT_RESP: {
        struct raft_progress *pr = pr_find(r, m->from);
        if (!pr)
            return 0;
        pr->recent_active = true;
        pr->probe_sent = false;
        if (pr->state == RAFT_PR_SNAPSHOT)
            pr_become_probe(pr); /* the log start message may have been lost: retry */
        if (pr->state == RAFT_PR_REPLICATE && inflight_full(r, pr))
            inflight_free_to(r, pr, pr->inflight[pr->inflight_head]);
        if (pr->match < view_last(r))
            send_append(r, pr, true);
        return 0;
    }
    default:
        return 0;
    }
}

static int step_follower(struct raft *r, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_APP:
        r->elapsed = 0;
        r->leader = m->from;
        return handle_append(r, m);
    case RAFT_MSG_HEARTBEAT:
        r->elapsed = 0;
        r->leader = m->from;
        handle_heartbeat(r, m);
        return 0;
    case RAFT_MSG_LOG_START:
        r->elapsed = 0;
        r->leader = m->from;
        return handle_log_start(r, m);
    case RAFT_MSG_TIMEOUT_NOW:
        /* Leadership transfer (thesis §3.10): campaign at once, skipping pre-vote. */
        return campaign(r, false, true);
    default:
        return 0;
    }
}

/* Candidates and pre-candidates. */
static int step_candidate(struct raft *r, const struct raft_msg *m)
{
    if (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_LOG_START) {
        become_follower(r, m->term, m->from); /* §5.2: a leader of our term exists */
        return step_follower(r, m);
    }
    /* The leader of our term hands its leadership over while our election timer had made us
     * a pre-candidate (a pre-vote the others refuse while they hear that leader): the
     * transfer's election at once, as a follower would, or the transfer times out. A
     * candidate's term is past the sender's, so only a pre-candidate gets here. */
    if (m->type == RAFT_MSG_TIMEOUT_NOW && r->role == RAFT_PRE_CANDIDATE)
        return campaign(r, false, true);
    if ((r->role == RAFT_CANDIDATE && m->type == RAFT_MSG_VOTE_RESP) ||
        (r->role == RAFT_PRE_CANDIDATE && m->type == RAFT_MSG_PREVOTE_RESP)) {
        int res = votes_record(r, m->from, !m->reject);
        if (res > 0) {
            if (r->role == RAFT_PRE_CANDIDATE)
                return campaign(r, false, r->campaign_force);
            become_leader(r);
        } else if (res < 0) {
            become_follower(r, r->term, RAFT_NONE);
        }
    }
    return 0;
}

static void bcast_heartbeat(struct raft *r);

/* Leaves quiescence (raft.h, raft_wake). A leader counts a fresh check-quorum period from
 * now, with no follower taken as active from before, and heartbeats at once; a follower
 * counts a fresh election timeout from now, keeping its leader: it grants no vote for
 * election_ticks (the check-quorum lease holds from the wake as from the last heartbeat). */
static void wake(struct raft *r)
{
    LM_ASSERT(r->quiescent);
    r->quiescent = false;
    r->elapsed = 0;
    if (r->role != RAFT_LEADER)
        return;
    r->hb_elapsed = 0;
    for (uint32_t i = 0; i < LM_ARRAY_LEN(r->prs); i++)
        r->prs[i].recent_active = r->prs[i].id == r->cfg.id;
    bcast_heartbeat(r);
}

/* The messages a quiescent group takes without waking: the leader's quiescing heartbeat at
 * a follower, and a follower's plain answer to a heartbeat at the leader (a refusal to
 * quiesce wakes it). Everything else is news. */
static bool keeps_quiet(const struct raft *r, const struct raft_msg *m)
{
    if (m->term != r->term)
        return false;
    if (r->role == RAFT_LEADER)
        return m->type == RAFT_MSG_HEARTBEAT_RESP && !m->reject;
    return r->role == RAFT_FOLLOWER && m->type == RAFT_MSG_HEARTBEAT && m->quiesce &&
           m->from == r->leader;
}

int raft_step(struct raft *r, const struct raft_msg *m)
{
    if (m->type == 0 || m->type >= RAFT_MSG_TYPE_MAX || m->group != r->cfg.group ||
        m->to != r->cfg.id)
        return LM_E_INVALID;
    if (m->type == RAFT_MSG_APP && m->n_entries && !m->entries)
        return LM_E_INVALID; /* a descriptor: the sender's shell must resolve it (raft.h) */
    r->err = 0;
    r->apply_blocked = false;
    if (r->quiescent && !keeps_quiet(r, m))
        wake(r);
    if (step_term(r, m))
        return take_err(r);
    int rc;
    if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) {
        rc = handle_vote(r, m);
    } else {
        switch (r->role) {
        case RAFT_LEADER:
            rc = step_leader(r, m);
            break;
        case RAFT_PRE_CANDIDATE:
        case RAFT_CANDIDATE:
            rc = step_candidate(r, m);
            break;
        case RAFT_FOLLOWER:
        default:
            rc = step_follower(r, m);
            break;
        }
    }
    int e = take_err(r);
    return rc ? rc : e;
}

/* ---------- ticks and admin ---------- */

static bool quorum_active(struct raft *r)
{
    const struct raft_conf *c = cur_conf(r);
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->n_voters; i++) {
        struct raft_progress *pr = pr_find(r, c->voters[i]);
        if (c->voters[i] == r->cfg.id || (pr && pr->recent_active))
            n++;
    }
    return n >= quorum(c);
}

int raft_tick(struct raft *r)
{
    r->err = 0;
    r->apply_blocked = false;
    if (r->quiescent)
        return 0; /* no heartbeats, no check-quorum, no election timer: see raft_quiesce */
    if (r->role == RAFT_LEADER) {
        r->elapsed++;
        r->hb_elapsed++;
        if (r->retry_pending) {
            /* A log read failed on a send or a commit advancement: try again now. */
            r->retry_pending = false;
            if (maybe_commit(r))
                bcast_append(r);
            for (uint32_t i = 0; i < LM_ARRAY_LEN(r->prs) && r->role == RAFT_LEADER; i++) {
                if (r->prs[i].id == RAFT_NONE || !r->prs[i].append_owed)
                    continue;
                r->prs[i].append_owed = false; /* set again if the read fails again */
                send_append(r, &r->prs[i], true);
            }
            flush_appends(r);
        }
        if (r->role == RAFT_LEADER && r->elapsed >= r->cfg.election_ticks) {
            r->elapsed = 0;
            /* Check-quorum (thesis §6.2): step down when a majority went quiet. */
            if (r->cfg.check_quorum && !quorum_active(r)) {
                RAFT_STAT(r, quorum_stepdowns);
                become_follower(r, r->term, RAFT_NONE);
                return take_err(r);
            }
            for (uint32_t i = 0; i < LM_ARRAY_LEN(r->prs); i++)
                r->prs[i].recent_active = r->prs[i].id == r->cfg.id;
            r->transferee = RAFT_NONE; /* a transfer that took a whole timeout is abandoned */
        }
        if (r->role == RAFT_LEADER && r->hb_elapsed >= r->cfg.heartbeat_ticks) {
            r->hb_elapsed = 0;
            bcast_heartbeat(r);
        }
        return take_err(r);
    }
    r->retry_pending = false; /* only a leader retries sends */
    r->elapsed++;
    if (promotable(r) && r->elapsed >= r->rand_timeout && !r->hold_elections) {
        if (r->elapsed == r->rand_timeout)
            RAFT_STAT(r, timeout_campaigns);
        /* campaign resets elapsed once the election starts; after a failed read elapsed stays
         * past the timeout, so the next tick tries again. */
        campaign(r, r->cfg.pre_vote, false);
    }
    return take_err(r);
}

int raft_campaign(struct raft *r)
{
    if (r->role == RAFT_LEADER)
        return 0;
    if (!promotable(r))
        return LM_E_STATE;
    r->err = 0;
    if (r->quiescent)
        wake(r);
    campaign(r, r->cfg.pre_vote, false);
    return take_err(r);
}

void raft_hold_elections(struct raft *r, bool hold)
{
    r->hold_elections = hold;
}

bool raft_quiesce(struct raft *r)
{
    if (r->quiescent)
        return true;
    int64_t last = view_last(r);
    /* Everything every member holds is committed and durable here, and no change (transfer,
     * configuration, retried send) is under way: heartbeats would carry no news. */
    if (r->role != RAFT_LEADER || lone(r) || r->transferee != RAFT_NONE ||
        r->pending_conf_index > r->commit || r->retry_pending || r->appends_pending ||
        r->commit != last || !settled(r))
        return false;
    uint64_t t = 0;
    if (view_term(r, last, &t) != 0 || t != r->term)
        return false; /* not one of its own: its commit may not be known to the followers */
    uint32_t peers = 0;
    for (uint32_t i = 0; i < LM_ARRAY_LEN(r->prs); i++) {
        const struct raft_progress *pr = &r->prs[i];
        if (pr->id == RAFT_NONE || pr->id == r->cfg.id)
            continue;
        if (pr->match != last || pr->state != RAFT_PR_REPLICATE || pr->append_owed ||
            !pr->recent_active)
            return false;
        peers++;
    }
    if (peers == 0)
        return false;
    for (uint32_t i = 0; i < LM_ARRAY_LEN(r->prs); i++) {
        struct raft_progress *pr = &r->prs[i];
        if (pr->id == RAFT_NONE || pr->id == r->cfg.id)
            continue;
        struct raft_msg m = {
            .type = RAFT_MSG_HEARTBEAT, .to = pr->id, .commit = r->commit, .quiesce = true};
        send(r, &m);
    }
    r->quiescent = true;
    r->hb_elapsed = 0;
    LM_ASSERT(r->role == RAFT_LEADER && r->commit == last);
    return true;
}

void raft_wake(struct raft *r)
{
    if (r->quiescent)
        wake(r);
}

void raft_wake_silent(struct raft *r, uint32_t silent_ticks)
{
    if (!r->quiescent)
        return;
    wake(r);
    if (r->role == RAFT_LEADER)
        return;
    /* As if it had ticked all along without hearing from its leader, but one tick short of an
     * election timeout: it grants votes from its next tick if that long has passed, and
     * campaigns after its randomized timeout (so that the followers of a lost leader do not
     * all campaign at the same tick and split the vote). Meanwhile it asks the leader whether
     * it is there: a refused heartbeat answer wakes a quiescent leader, whose heartbeats then
     * keep this follower (and the others) from voting at all, so a leader wrongly taken for
     * lost keeps its leadership. */
    uint32_t cap = r->cfg.election_ticks - 1;
    r->elapsed = silent_ticks < cap ? silent_ticks : cap;
    if (r->leader != RAFT_NONE) {
        struct raft_msg probe = {.type = RAFT_MSG_HEARTBEAT_RESP, .to = r->leader, .reject = true};
        send(r, &probe);
    }
    LM_ASSERT(r->elapsed < r->cfg.election_ticks && !r->quiescent);
}

bool raft_quiescent(const struct raft *r)
{
    return r->quiescent;
}

static int leader_append(struct raft *r, uint8_t type, const void *data, uint32_t len,
                         uint32_t count, int64_t *last_out)
{
    if (r->quiescent)
        wake(r); /* the followers hear the append, which wakes them */
    int64_t last = view_last(r);
    struct raft_entry e = {.first_index = last + 1,
                           .last_index = last + count,
                           .term = r->term,
                           .type = type,
                           .len = len,
                           .data = (uint8_t *)data};
    int rc = log_append(r, &e, 1);
    if (rc)
        return rc;
    if (last_out)
        *last_out = e.last_index;
    /* Batching: proposals made before the next raft_ready leave in as few appends as the
     * window allows (flush_appends), instead of one append per proposal. */
    r->appends_pending = true;
    return 0;
}

int raft_propose(struct raft *r, const void *data, uint32_t len, uint32_t count, int64_t *last_out)
{
    if (count == 0 || count > (1u << 30))
        return LM_E_INVALID;
    if (r->role != RAFT_LEADER)
        return LM_E_STATE;
    if (r->transferee != RAFT_NONE)
        return LM_E_AGAIN;
    return leader_append(r, RAFT_ENTRY_NORMAL, data, len, count, last_out);
}

static bool conf_remove(uint32_t *ids, uint32_t *n, uint32_t id)
{
    for (uint32_t i = 0; i < *n; i++) {
        if (ids[i] == id) {
            ids[i] = ids[--*n];
            return true;
        }
    }
    return false;
}

int raft_propose_conf(struct raft *r, enum raft_conf_op op, uint32_t node)
{
    if (r->role != RAFT_LEADER || r->cfg.conf_fixed)
        return LM_E_STATE;
    if (node == RAFT_NONE)
        return LM_E_INVALID;
    if (r->transferee != RAFT_NONE || r->pending_conf_index > r->commit)
        return LM_E_AGAIN;
    /* The single-server change bug fix (Ongaro, raft-dev 2015): no change before the leader has
     * committed an entry of its own term. */
    uint64_t t = 0;
    int rc = r->commit < 0 ? LM_E_OUT_OF_RANGE : view_term(r, r->commit, &t);
    if (rc && !absent(rc))
        return rc;
    if (rc || t != r->term)
        return LM_E_AGAIN;
    struct raft_conf c = *cur_conf(r);
    bool voter = raft_conf_is_voter(&c, node), learner = raft_conf_is_learner(&c, node);
    switch (op) {
    case RAFT_CONF_ADD_LEARNER:
        if (voter || learner)
            return LM_E_EXISTS;
        if (c.n_voters + c.n_learners >= RAFT_NODES_MAX)
            return LM_E_FULL;
        c.learners[c.n_learners++] = node;
        break;
    case RAFT_CONF_PROMOTE: {
        if (!learner)
            return LM_E_NOT_FOUND;
        const struct raft_progress *pr = pr_find(r, node);
        if (!pr || pr->match < r->commit)
            return LM_E_AGAIN; /* a learner votes only once it has caught up */
        conf_remove(c.learners, &c.n_learners, node);
        c.voters[c.n_voters++] = node;
        break;
    }
    case RAFT_CONF_REMOVE:
        if (voter && c.n_voters == 1)
            return LM_E_INVALID;
        if (!conf_remove(c.voters, &c.n_voters, node) &&
            !conf_remove(c.learners, &c.n_learners, node))
            return LM_E_NOT_FOUND;
        break;
    default:
        return LM_E_INVALID;
    }
    uint8_t buf[8 + 8 * RAFT_NODES_MAX];
    int n = raft_conf_encode(&c, buf, sizeof(buf));
    if (n < 0)
        return n;
    int64_t last;
    rc = leader_append(r, RAFT_ENTRY_CONF, buf, (uint32_t)n, 1, &last);
    if (rc)
        return rc;
    r->pending_conf_index = last;
    sync_progress(r);
    r->err = 0;
    bcast_append(r); /* a failed read only delays an append (retried at the next tick) */
    take_err(r);
    return 0;
}

void raft_conf_unfix(struct raft *r)
{
    /* lone_resume requires a fixed configuration: a group that changes is elected as usual */
    r->cfg.conf_fixed = false;
    r->cfg.lone_resume = false;
}

bool raft_conf_pending(const struct raft *r)
{
    return r->role == RAFT_LEADER && r->pending_conf_index > r->commit;
}

bool raft_transferring(const struct raft *r)
{
    return r->role == RAFT_LEADER && r->transferee != RAFT_NONE;
}

int raft_transfer_leader(struct raft *r, uint32_t to)
{
    if (r->role != RAFT_LEADER)
        return LM_E_STATE;
    if (to == r->cfg.id || !raft_conf_is_voter(cur_conf(r), to))
        return LM_E_INVALID;
    struct raft_progress *pr = pr_find(r, to);
    LM_ASSERT(pr != NULL);
    if (r->quiescent)
        wake(r);
    r->transferee = to;
    r->elapsed = 0;
    r->err = 0;
    if (pr->match == view_last(r)) {
        struct raft_msg t = {.type = RAFT_MSG_TIMEOUT_NOW, .to = to};
        send(r, &t);
    } else {
        send_append(r, pr, true);
    }
    return take_err(r);
}

int raft_append_unsent(struct raft *r, const struct raft_msg *m, int err)
{
    if (!m || m->type != RAFT_MSG_APP || m->from != r->cfg.id || err == 0)
        return LM_E_INVALID;
    if (r->role != RAFT_LEADER || m->term != r->term)
        return 0; /* a former leader's append: nothing to redo */
    struct raft_progress *pr = pr_find(r, m->to);
    if (!pr || pr->id == r->cfg.id)
        return 0;
    if (r->quiescent)
        wake(r);
    /* As etcd does for an unreachable peer: stop pipelining and probe from the match, which
     * also finds out whether the range is now below the log start (then LOG_START follows). */
    if (pr->state == RAFT_PR_REPLICATE)
        pr_become_probe(pr);
    else if (pr->state == RAFT_PR_PROBE)
        pr->probe_sent = false;
    if (pr->state == RAFT_PR_PROBE)
        pr->append_owed = true;
    r->retry_pending = true;
    return 0;
}

/* ---------- ready / persisted ---------- */

static int64_t apply_limit(const struct raft *r)
{
    return r->commit < r->durable_last ? r->commit : r->durable_last;
}

bool raft_has_ready(const struct raft *r)
{
    if (r->appends_pending && r->role == RAFT_LEADER)
        return true;
    if (r->role != r->role_handed || r->leader != r->leader_handed)
        return true;
    bool persist = hs_differs(r) || r->unst_handed < r->n_unst ||
                   (r->pending_start_set && !r->pending_start_handed);
    if (persist && r->rec_count < RAFT_READY_INFLIGHT_MAX)
        return true;
    for (size_t i = 0; i < r->n_out; i++)
        if (releasable(r, &r->out[i]))
            return true;
    if (r->cfg.no_apply)
        return false;
    return !r->apply_blocked && r->applied < apply_limit(r);
}

static void free_sent(struct raft *r)
{
    for (size_t i = 0; i < r->n_sent; i++)
        raft_msg_deinit(&r->sent[i]);
    r->n_sent = 0;
}

void raft_ready(struct raft *r, struct raft_ready *rd)
{
    free_sent(r);
    if (r->appends_pending)
        flush_appends(r);
    memset(rd, 0, sizeof(*rd));
    rd->role = r->role;
    rd->leader = r->leader;
    if (r->role != r->role_handed || r->leader != r->leader_handed) {
        rd->soft_changed = true;
        r->role_handed = r->role;
        r->leader_handed = r->leader;
    }
    bool install = r->pending_start_set && !r->pending_start_handed;
    bool persist = hs_differs(r) || r->unst_handed < r->n_unst || install;
    if (persist && r->rec_count < RAFT_READY_INFLIGHT_MAX) {
        uint64_t id = r->next_ready_id++;
        rd->persist_id = id;
        rd->hs.term = r->term;
        rd->hs.vote = r->vote;
        rd->hs.commit = r->commit;
        rd->hs_changed = hs_differs(r);
        r->hs_handed = rd->hs;
        if (install) {
            rd->start_changed = true;
            rd->start = r->pending_start;
            r->pending_start_handed = true;
            r->pending_start_ready_id = id;
        }
        rd->entries = r->unst + r->unst_handed;
        rd->n_entries = r->n_unst - r->unst_handed;
        r->unst_handed = r->n_unst;
        struct ready_rec *rec = &r->recs[(r->rec_head + r->rec_count) % RAFT_READY_INFLIGHT_MAX];
        rec->id = id;
        rec->last = view_last(r);
        rec->term = 0;
        rec->has_entries = rd->n_entries > 0;
        if (rec->has_entries) { /* the last entry is in the unstable tail: no read */
            bool in_unst = unst_term(r, rec->last, &rec->term);
            LM_ASSERT(in_unst);
        }
        r->rec_count++;
    }
    /* Release messages whose dependencies are durable, keeping the others in order. */
    size_t keep = 0, nrel = 0;
    for (size_t i = 0; i < r->n_out; i++)
        if (releasable(r, &r->out[i]))
            nrel++;
    if (nrel > r->cap_sent) {
        struct raft_msg *s = realloc(r->sent, nrel * sizeof(*s));
        LM_ASSERT(s != NULL);
        r->sent = s;
        r->cap_sent = nrel;
    }
    for (size_t i = 0; i < r->n_out; i++) {
        if (releasable(r, &r->out[i]))
            r->sent[r->n_sent++] = r->out[i].m;
        else
            r->out[keep++] = r->out[i];
    }
    r->n_out = keep;
    rd->msgs = r->sent;
    rd->n_msgs = r->n_sent;
    /* Committed and locally durable entries to apply. */
    int64_t lim = apply_limit(r);
    if (r->cfg.no_apply) {
        if (r->applied < lim)
            r->applied = lim;
    } else if (r->applied < lim && !r->apply_blocked) {
        if (r->cap_apply < r->cfg.max_apply_entries) {
            struct raft_entry *b = realloc(r->apply_buf, r->cfg.max_apply_entries * sizeof(*b));
            LM_ASSERT(b != NULL);
            r->apply_buf = b;
            r->cap_apply = r->cfg.max_apply_entries;
        }
        size_t n = 0;
        while (r->applied < lim && n < r->cfg.max_apply_entries) {
            struct raft_entry e;
            int rc = view_entry(r, r->applied + 1, &e);
            if (rc) {
                /* Hand out what was read; the rest waits for the next input (raft.h). */
                rd->err = rc;
                r->apply_blocked = true;
                break;
            }
            LM_ASSERT(e.first_index == r->applied + 1);
            LM_ASSERT(e.last_index <= lim);
            r->apply_buf[n++] = e;
            r->applied = e.last_index;
        }
        rd->committed = r->apply_buf;
        rd->n_committed = n;
    }
}

int raft_persisted(struct raft *r, uint64_t id)
{
    if (id == 0 || id <= r->persisted_id || id >= r->next_ready_id)
        return LM_E_INVALID;
    r->err = 0;
    r->apply_blocked = false;
    while (r->rec_count && r->recs[r->rec_head].id <= id) {
        struct ready_rec *rec = &r->recs[r->rec_head];
        /* Still the entries this ready wrote? Everything past durable_last is in the unstable
         * tail, so this needs no log read. */
        uint64_t t;
        if (rec->has_entries && rec->id >= r->min_valid_persist_id && rec->last > r->durable_last &&
            unst_term(r, rec->last, &t) && t == rec->term)
            r->durable_last = rec->last;
        r->rec_head = (r->rec_head + 1) % RAFT_READY_INFLIGHT_MAX;
        r->rec_count--;
    }
    r->persisted_id = id;
    if (r->pending_start_set && r->pending_start_handed && r->pending_start_ready_id <= id) {
        free(r->pending_start.payload);
        memset(&r->pending_start, 0, sizeof(r->pending_start));
        r->pending_start_set = false;
    }
    /* Entries now in storage leave the unstable tail. */
    size_t drop = 0;
    while (drop < r->unst_handed && r->unst[drop].last_index <= r->durable_last &&
           !r->pending_start_set)
        drop++;
    if (drop) {
        for (size_t i = 0; i < drop; i++)
            free(r->unst[i].data);
        memmove(r->unst, r->unst + drop, (r->n_unst - drop) * sizeof(*r->unst));
        r->n_unst -= drop;
        r->unst_handed -= drop;
    }
    if (r->role == RAFT_LEADER) {
        struct raft_progress *self = pr_find(r, r->cfg.id);
        LM_ASSERT(self != NULL);
        self->match = r->durable_last;
        if (maybe_commit(r))
            bcast_append(r);
    }
    return take_err(r);
}

/* ---------- lifecycle and queries ---------- */

struct raft *raft_new(const struct raft_config *cfg, const struct raft_log_ops *log,
                      const struct raft_hard_state *hs)
{
    if (!cfg || !log || cfg->id == RAFT_NONE || cfg->election_ticks == 0 ||
        cfg->heartbeat_ticks == 0 || cfg->heartbeat_ticks >= cfg->election_ticks ||
        cfg->max_inflight == 0 || cfg->max_msg_entries == 0 || cfg->max_apply_entries == 0)
        return NULL;
    struct raft *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->cfg = *cfg;
    r->log = *log;
    r->rng = cfg->rand_seed ^ ((uint64_t)cfg->id << 32) ^ cfg->group;
    r->inflight_pool = calloc((RAFT_NODES_MAX + 1) * (size_t)cfg->max_inflight, sizeof(int64_t));
    if (!r->inflight_pool) {
        free(r);
        return NULL;
    }
    for (uint32_t i = 0; i < LM_ARRAY_LEN(r->prs); i++)
        r->prs[i].inflight = r->inflight_pool + (size_t)i * cfg->max_inflight;
    struct raft_log_start s;
    log->start(log->ctx, &s);
    int64_t last = log->last_index(log->ctx);
    LM_ASSERT(last >= s.index);
    /* Rebuild the configuration history from the log's CONF entries (none: conf_fixed). */
    for (int64_t i = s.index + 1; !cfg->conf_fixed && i <= last;) {
        struct raft_entry e;
        if (log->entry_at(log->ctx, i, &e) != 0 || e.first_index != i || e.last_index < i) {
            raft_free(r);
            return NULL;
        }
        if (e.type == RAFT_ENTRY_CONF) {
            struct raft_conf c;
            if (raft_conf_decode(e.data, e.len, &c) != 0 || hist_push(r, e.last_index, &c)) {
                raft_free(r);
                return NULL;
            }
        }
        i = e.last_index + 1;
    }
    if (hs) {
        r->term = hs->term;
        r->vote = hs->vote;
        r->commit = hs->commit;
    } else {
        r->commit = -1;
    }
    if (r->commit < s.index)
        r->commit = s.index;
    if (r->commit > last)
        r->commit = last;
    r->applied = cfg->applied < s.index ? s.index : cfg->applied;
    if (r->applied > r->commit)
        r->applied = r->commit;
    r->durable_last = last;
    r->next_ready_id = 1;
    r->hs_handed.term = r->term;
    r->hs_handed.vote = r->vote;
    r->hs_handed.commit = r->commit;
    r->pending_conf_index = -1;
    r->role = RAFT_FOLLOWER;
    r->role_handed = RAFT_FOLLOWER;
    reset_rand_timeout(r);
    if (cfg->lone_resume && !cfg->conf_fixed) {
        raft_free(r);
        return NULL;
    }
    if (lone(r)) {
        /* Resume leadership at the term the log and hard state already imply (raft.h). */
        uint64_t last_term = 0;
        if (view_last_term(r, &last_term) != 0) {
            raft_free(r);
            return NULL;
        }
        uint64_t t = r->term > last_term ? r->term : last_term;
        r->term = t > 0 ? t : 1;
        r->vote = r->cfg.id;
        r->hs_handed.term = r->term;
        r->hs_handed.vote = r->vote;
        r->role = RAFT_CANDIDATE;
        become_leader(r);
        r->hs_handed.commit = r->commit;
    }
    return r;
}

void raft_free(struct raft *r)
{
    if (!r)
        return;
    free_sent(r);
    free(r->sent);
    for (size_t i = 0; i < r->n_out; i++)
        raft_msg_deinit(&r->out[i].m);
    free(r->out);
    for (size_t i = 0; i < r->n_unst; i++)
        free(r->unst[i].data);
    free(r->unst);
    free(r->pending_start.payload);
    free(r->hist);
    free(r->apply_buf);
    free(r->inflight_pool);
    free(r);
}

enum raft_role raft_role(const struct raft *r)
{
    return r->role;
}
uint64_t raft_term(const struct raft *r)
{
    return r->term;
}
uint32_t raft_leader(const struct raft *r)
{
    return r->leader;
}
uint32_t raft_id(const struct raft *r)
{
    return r->cfg.id;
}
int64_t raft_commit(const struct raft *r)
{
    return r->commit;
}
int64_t raft_applied(const struct raft *r)
{
    return r->applied;
}
int64_t raft_last_index(const struct raft *r)
{
    return view_last(r);
}
const struct raft_conf *raft_conf(const struct raft *r)
{
    return cur_conf(r);
}

int raft_log_term(const struct raft *r, int64_t index, uint64_t *term)
{
    return view_term(r, index, term);
}

const struct raft_progress *raft_progress(const struct raft *r, uint32_t id)
{
    if (r->role != RAFT_LEADER)
        return NULL;
    return pr_find((struct raft *)r, id);
}
