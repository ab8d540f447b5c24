/* Synchronous Raft test cluster (see raft_harness.h). */
#include "raft_harness.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"

static void trace(struct harness *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void trace(struct harness *h, const char *fmt, ...)
{
    if (!h->out)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(h->out, fmt, ap);
    va_end(ap);
}

/* Log ops over a node's disk or written log, with read faults on demand. */
static void op_start(void *ctx, struct raft_log_start *out)
{
    struct raft_memlog *ml = ctx;
    *out = ml->start;
}

static int64_t op_last(void *ctx)
{
    return raft_memlog_last(ctx);
}

static int entry_from(const struct raft_memlog *ml, int64_t index, struct raft_entry *out)
{
    const struct raft_entry *e = raft_memlog_find(ml, index);
    if (!e)
        return LM_E_NOT_FOUND;
    *out = *e;
    return 0;
}

static int op_disk_entry(void *ctx, int64_t index, struct raft_entry *out)
{
    struct h_node *n = (struct h_node *)((char *)ctx - offsetof(struct h_node, disk));
    return n->fail_reads ? LM_E_IO : entry_from(ctx, index, out);
}

static int op_cache_entry(void *ctx, int64_t index, struct raft_entry *out)
{
    struct h_node *n = (struct h_node *)((char *)ctx - offsetof(struct h_node, cache));
    return n->fail_resolve ? LM_E_IO : entry_from(ctx, index, out);
}

static void node_ops(struct h_node *n, bool disk, struct raft_log_ops *ops)
{
    ops->ctx = disk ? &n->disk : &n->cache;
    ops->start = op_start;
    ops->last_index = op_last;
    ops->entry_at = disk ? op_disk_entry : op_cache_entry;
}

static void boot(struct harness *h, struct h_node *n)
{
    struct raft_log_ops ops;
    node_ops(n, true, &ops);
    n->r = raft_new(&n->cfg, &ops, n->disk.has_hs ? &n->disk.hs : NULL);
    LM_ASSERT(n->r != NULL);
    n->up = true;
    n->applied = n->disk.start.index;
    (void)h;
}

void h_init(struct harness *h, uint32_t n, uint32_t n_voters, bool pre_vote, bool check_quorum,
            FILE *out)
{
    LM_ASSERT(n <= H_NODES_MAX && n_voters <= n);
    memset(h, 0, sizeof(*h));
    h->n = n;
    h->out = out;
    struct raft_conf conf = {0}, empty = {0};
    for (uint32_t i = 1; i <= n_voters; i++)
        conf.voters[conf.n_voters++] = i;
    for (uint32_t i = 1; i <= n; i++) {
        struct h_node *nd = &h->nodes[i];
        nd->id = i;
        nd->cfg = (struct raft_config){.id = i,
                                       .group = 1,
                                       .election_ticks = 10,
                                       .heartbeat_ticks = 1,
                                       .max_inflight = 4,
                                       .max_msg_entries = 8,
                                       .max_apply_entries = 64,
                                       .pre_vote = pre_vote,
                                       .check_quorum = check_quorum,
                                       .rand_seed = 7,
                                       .applied = -1};
        raft_memlog_init(&nd->disk, i <= n_voters ? &conf : &empty);
        raft_memlog_init(&nd->cache, i <= n_voters ? &conf : &empty);
        boot(h, nd);
    }
}

static void free_held(struct h_node *n)
{
    for (uint32_t i = 0; i < n->n_held; i++) {
        for (size_t k = 0; k < n->held[i].n_entries; k++)
            free(n->held_entries[i][k].data);
        free(n->held_entries[i]);
        free(n->held[i].start.payload);
    }
    n->n_held = 0;
}

void h_deinit(struct harness *h)
{
    for (uint32_t i = 1; i <= h->n; i++) {
        struct h_node *n = &h->nodes[i];
        free_held(n);
        raft_free(n->r);
        raft_memlog_deinit(&n->disk);
        raft_memlog_deinit(&n->cache);
    }
    for (size_t i = 0; i < h->n_q; i++)
        raft_msg_deinit(&h->q[i].m);
    free(h->q);
}

static void fmt_entries(struct harness *h, const struct raft_entry *es, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct raft_entry *e = &es[i];
        const char *kind = e->type == RAFT_ENTRY_NOOP   ? "noop"
                           : e->type == RAFT_ENTRY_CONF ? "conf"
                                                        : "";
        if (e->first_index == e->last_index)
            trace(h, " %" PRId64 "@%" PRIu64, e->first_index, e->term);
        else
            trace(h, " %" PRId64 "-%" PRId64 "@%" PRIu64, e->first_index, e->last_index, e->term);
        if (*kind)
            trace(h, "(%s)", kind);
        else if (e->len)
            trace(h, "(%.*s)", (int)e->len, (const char *)e->data);
    }
}

static void print_msg(struct harness *h, const struct raft_msg *m, const char *suffix)
{
    trace(h, "  %u->%u %s t%" PRIu64, m->from, m->to, raft_msg_type_name(m->type), m->term);
    switch (m->type) {
    case RAFT_MSG_APP:
        trace(h, " prev=%" PRId64 "@%" PRIu64 " commit=%" PRId64, m->index, m->log_term, m->commit);
        if (m->n_entries) {
            trace(h, " [");
            fmt_entries(h, m->entries, m->n_entries);
            trace(h, " ]");
        }
        break;
    case RAFT_MSG_APP_RESP:
        trace(h, " %s=%" PRId64, m->reject ? "rejected" : "match", m->index);
        if (m->reject)
            trace(h, " hint=%" PRId64 "@%" PRIu64, m->hint_index, m->hint_term);
        break;
    case RAFT_MSG_VOTE:
    case RAFT_MSG_PREVOTE:
        trace(h, " last=%" PRId64 "@%" PRIu64 "%s", m->index, m->log_term,
              m->force ? " force" : "");
        break;
    case RAFT_MSG_VOTE_RESP:
    case RAFT_MSG_PREVOTE_RESP:
        trace(h, " %s", m->reject ? "rejected" : "granted");
        break;
    case RAFT_MSG_HEARTBEAT:
        trace(h, " commit=%" PRId64, m->commit);
        break;
    case RAFT_MSG_LOG_START:
        trace(h, " start=%" PRId64 "@%" PRIu64 " voters=%u payload=%u", m->start.index,
              m->start.term, m->start.conf.n_voters, m->start.payload_len);
        break;
    default:
        break;
    }
    trace(h, "%s\n", suffix);
}

/* The transport: an APP descriptor becomes bytes read from the sender's written log. */
static void queue_msg(struct harness *h, struct h_node *n, const struct raft_msg *m)
{
    if (h->n_q == h->cap_q) {
        h->cap_q = h->cap_q ? h->cap_q * 2 : 64;
        h->q = realloc(h->q, h->cap_q * sizeof(*h->q));
        LM_ASSERT(h->q != NULL);
    }
    struct raft_log_ops ops;
    node_ops(n, false, &ops);
    int rc = raft_msg_resolve(&h->q[h->n_q].m, m, &ops);
    if (rc) {
        LM_ASSERT(m->type == RAFT_MSG_APP);
        trace(h,
              "  %u->%u App prev=%" PRId64 "@%" PRIu64 " upto=%" PRId64 "@%" PRIu64
              " UNSENT (%s)\n",
              m->from, m->to, m->index, m->log_term, m->ent_last, m->ent_last_term, lm_errname(rc));
        n->unsent++;
        rc = raft_append_unsent(n->r, m, rc);
        LM_ASSERT(rc == 0);
        return;
    }
    h->q[h->n_q].dropped = m->to <= H_NODES_MAX && h->blocked[m->from][m->to];
    h->n_q++;
}

static void complete(struct harness *h, struct h_node *n, struct raft_ready *rd)
{
    int rc = raft_memlog_persist(&n->disk, rd);
    LM_ASSERT(rc == 0);
    rc = raft_persisted(n->r, rd->persist_id);
    LM_ASSERT(rc == 0 || h->tolerate_errors);
    if (rc)
        n->last_err = rc;
}

void h_process(struct harness *h, uint32_t id)
{
    struct h_node *n = &h->nodes[id];
    if (!n->up)
        return;
    for (int guard = 0; raft_has_ready(n->r); guard++) {
        LM_ASSERT(guard < 10000);
        struct raft_ready rd;
        raft_ready(n->r, &rd);
        if (rd.soft_changed)
            trace(h, "n%u is %s (term %" PRIu64 ", leader %u)\n", id, raft_role_name(rd.role),
                  raft_term(n->r), rd.leader);
        if (rd.persist_id && (rd.n_entries || rd.start_changed || rd.hs_changed)) {
            bool show = rd.n_entries || rd.start_changed;
            if (show) {
                trace(h, "n%u persist", id);
                if (rd.start_changed)
                    trace(h, " start=%" PRId64 "@%" PRIu64, rd.start.index, rd.start.term);
                fmt_entries(h, rd.entries, rd.n_entries);
                trace(h, "\n");
            }
        }
        /* Write first (not durable yet), then send: descriptors resolve against the writes. */
        if (rd.persist_id) {
            int rc = raft_memlog_persist(&n->cache, &rd);
            LM_ASSERT(rc == 0);
        }
        for (size_t i = 0; i < rd.n_msgs; i++)
            queue_msg(h, n, &rd.msgs[i]);
        if (rd.err) {
            trace(h, "n%u apply stopped: %s\n", id, lm_errname(rd.err));
            n->last_err = rd.err;
        }
        if (rd.start_changed && rd.start.index > n->applied)
            n->applied = rd.start.index;
        if (rd.n_committed) {
            trace(h, "n%u apply", id);
            fmt_entries(h, rd.committed, rd.n_committed);
            trace(h, "\n");
            n->applied = rd.committed[rd.n_committed - 1].last_index;
        }
        if (rd.persist_id) {
            if (n->hold_persist) {
                LM_ASSERT(n->n_held < 256);
                uint32_t k = n->n_held++;
                n->held[k] = rd;
                n->held[k].msgs = NULL;
                n->held[k].n_msgs = 0;
                n->held[k].committed = NULL;
                n->held[k].n_committed = 0;
                n->held_entries[k] = NULL;
                if (rd.n_entries) {
                    n->held_entries[k] = calloc(rd.n_entries, sizeof(struct raft_entry));
                    for (size_t e = 0; e < rd.n_entries; e++) {
                        n->held_entries[k][e] = rd.entries[e];
                        n->held_entries[k][e].data = NULL;
                        if (rd.entries[e].len) {
                            n->held_entries[k][e].data = malloc(rd.entries[e].len);
                            memcpy(n->held_entries[k][e].data, rd.entries[e].data,
                                   rd.entries[e].len);
                        }
                    }
                }
                n->held[k].entries = n->held_entries[k];
                n->held[k].start.payload = NULL;
                if (rd.start_changed && rd.start.payload_len) {
                    n->held[k].start.payload = malloc(rd.start.payload_len);
                    memcpy(n->held[k].start.payload, rd.start.payload, rd.start.payload_len);
                }
            } else {
                complete(h, n, &rd);
            }
        }
    }
}

void h_flush_disk(struct harness *h, uint32_t id)
{
    struct h_node *n = &h->nodes[id];
    if (n->n_held)
        trace(h, "n%u disk done: persist %" PRIu64 "..%" PRIu64 "\n", id, n->held[0].persist_id,
              n->held[n->n_held - 1].persist_id);
    for (uint32_t i = 0; i < n->n_held; i++)
        complete(h, n, &n->held[i]);
    free_held(n);
    h_process(h, id);
}

size_t h_deliver_all(struct harness *h)
{
    size_t count = h->n_q;
    struct h_queued *batch = h->q;
    h->q = NULL;
    h->n_q = h->cap_q = 0;
    for (size_t i = 0; i < count; i++) {
        struct raft_msg *m = &batch[i].m;
        struct h_node *to = (m->to >= 1 && m->to <= h->n) ? &h->nodes[m->to] : NULL;
        if (!to || !to->up || batch[i].dropped || h->blocked[m->from][m->to]) {
            print_msg(h, m, " DROPPED");
        } else {
            print_msg(h, m, "");
            h->msgs_delivered++;
            int rc = raft_step(to->r, m);
            if (rc) {
                LM_ASSERT(h->tolerate_errors);
                trace(h, "n%u step: %s\n", m->to, lm_errname(rc));
                to->last_err = rc;
            }
            h_process(h, m->to);
        }
        raft_msg_deinit(m);
    }
    free(batch);
    return count;
}

void h_stabilize(struct harness *h)
{
    for (int round = 0; round < 1000; round++) {
        for (uint32_t i = 1; i <= h->n; i++)
            h_process(h, i);
        if (h->n_q == 0)
            return;
        h_deliver_all(h);
    }
    LM_ASSERT(0 && "cluster did not stabilize");
}

void h_crash(struct harness *h, uint32_t id)
{
    struct h_node *n = &h->nodes[id];
    free_held(n); /* unpersisted writes are lost */
    int rc = raft_memlog_copy(&n->cache, &n->disk);
    LM_ASSERT(rc == 0);
    raft_free(n->r);
    n->r = NULL;
    n->up = false;
    trace(h, "n%u crashed\n", id);
}

void h_restart(struct harness *h, uint32_t id)
{
    struct h_node *n = &h->nodes[id];
    LM_ASSERT(!n->up);
    boot(h, n);
    trace(h, "n%u restarted: term %" PRIu64 " vote %u commit %" PRId64 " last %" PRId64 "\n", id,
          raft_term(n->r), n->disk.hs.vote, raft_commit(n->r), raft_last_index(n->r));
}

int h_compact(struct harness *h, uint32_t id, int64_t index)
{
    struct h_node *n = &h->nodes[id];
    int rc = raft_memlog_compact(&n->disk, index, NULL, 0);
    if (rc == 0 && raft_memlog_find(&n->cache, index) &&
        raft_memlog_find(&n->cache, index)->last_index == index)
        rc = raft_memlog_compact(&n->cache, index, NULL, 0);
    return rc;
}

int h_tick(struct harness *h, uint32_t id)
{
    int rc = raft_tick(h->nodes[id].r);
    if (rc)
        h->nodes[id].last_err = rc;
    h_process(h, id);
    return rc;
}

void h_isolate(struct harness *h, uint32_t id)
{
    for (uint32_t i = 1; i <= H_NODES_MAX; i++) {
        if (i != id) {
            h->blocked[i][id] = true;
            h->blocked[id][i] = true;
        }
    }
}

void h_heal(struct harness *h)
{
    memset(h->blocked, 0, sizeof(h->blocked));
}

void h_status(struct harness *h)
{
    for (uint32_t i = 1; i <= h->n; i++) {
        struct h_node *n = &h->nodes[i];
        if (!n->up) {
            trace(h, "n%u down\n", i);
            continue;
        }
        const struct raft_conf *c = raft_conf(n->r);
        trace(h,
              "n%u %s term=%" PRIu64 " leader=%u commit=%" PRId64 " applied=%" PRId64
              " last=%" PRId64 " start=%" PRId64 " voters=(",
              i, raft_role_name(raft_role(n->r)), raft_term(n->r), raft_leader(n->r),
              raft_commit(n->r), n->applied, raft_last_index(n->r), n->disk.start.index);
        for (uint32_t k = 0; k < c->n_voters; k++)
            trace(h, "%s%u", k ? " " : "", c->voters[k]);
        trace(h, ") learners=(");
        for (uint32_t k = 0; k < c->n_learners; k++)
            trace(h, "%s%u", k ? " " : "", c->learners[k]);
        trace(h, ")\n");
    }
}

void h_print_log(struct harness *h, uint32_t id)
{
    struct h_node *n = &h->nodes[id];
    trace(h, "n%u log: start=%" PRId64 "@%" PRIu64, id, n->disk.start.index, n->disk.start.term);
    int64_t last = raft_last_index(n->r);
    for (int64_t i = n->disk.start.index + 1; i <= last;) {
        const struct raft_entry *e = raft_memlog_find(&n->disk, i);
        if (!e) {
            trace(h, " (unpersisted from %" PRId64 ")", i);
            break;
        }
        fmt_entries(h, e, 1);
        i = e->last_index + 1;
    }
    trace(h, "\n");
}

uint32_t h_leader(struct harness *h)
{
    uint32_t best = 0;
    for (uint32_t i = 1; i <= h->n; i++) {
        struct h_node *n = &h->nodes[i];
        if (n->up && raft_role(n->r) == RAFT_LEADER &&
            (!best || raft_term(n->r) > raft_term(h->nodes[best].r)))
            best = i;
    }
    return best;
}
