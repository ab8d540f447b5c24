/* Private to the consumer-group coordinator's files (cgroup.c, cgroup_classic.c): its state
 * and the helpers they share (cgroup.h is the interface). */
#ifndef LAMINAR_BROKER_GROUP_CGROUP_INTERNAL_H
#define LAMINAR_BROKER_GROUP_CGROUP_INTERNAL_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/group/cgroup.h"
#include "broker/group/cgroup_records.h"

struct tpset {
    struct lm_cgroup_tp *v;
    int32_t n, cap;
};

/* A member's reconciliation state (Kafka MemberState). */
enum mstate {
    M_STABLE = 0, /* holds its target (or the target of its epoch) */
    M_UNREVOKED,  /* told to give up `pending`; keeps its epoch until it did */
    M_UNRELEASED, /* at the target epoch, waiting for partitions others still hold */
};

/* The member epoch at which a partition the member holds was handed to it (KIP-1251's
 * assignment epoch). */
struct tp_epoch {
    struct lm_cgroup_tp tp;
    int32_t epoch;
};

struct cmember {
    struct kafka_str id;
    struct kafka_str instance_id; /* null: dynamic */
    struct kafka_str rack_id;
    struct kafka_str client_id;
    struct kafka_str client_host;
    struct kafka_str regex; /* null: none */
    regex_t re;
    bool has_re;
    struct kafka_str assignor; /* null: none preferred */
    struct kafka_str *names;
    int32_t n_names;
    int32_t epoch, prev_epoch;
    enum mstate state;
    bool static_left;        /* left with epoch -2: keeps its assignment for the session timeout */
    bool assignment_changed; /* since the last response that carried it */
    int32_t rebalance_timeout_ms;
    int64_t session_deadline_ms;
    int64_t rebalance_deadline_ms; /* INT64_MAX unless revoking */
    struct tpset assigned, pending, target;
    /* the assignment epoch of every partition of assigned and pending, sorted by partition
     * (held_epochs_sync keeps it in step; not persisted: a load starts them at the member's
     * epoch) */
    struct tp_epoch *held_ep;
    int32_t n_held_ep;
    /* hashes of the member's records last written (0: none), so a call writes only the
     * records whose value changed */
    uint64_t h_meta, h_target, h_current;
    bool loaded_meta;  /* a load replayed its member metadata record */
    bool target_dirty; /* a new target was computed: its record to be checked */
    /* a classic-protocol member (JoinGroup/SyncGroup/Heartbeat, Kafka's
     * ClassicMemberMetadata): its session timeout and JoinGroup protocols */
    bool classic;
    int32_t classic_session_ms;
    int32_t n_protos;
    struct lm_cgr_protocol *protos;
    bool leaving;             /* marked as leaving by the call that removes it */
    int64_t join_deadline_ms; /* told to rejoin: must within its rebalance timeout */
    int64_t sync_deadline_ms; /* joined: must sync within its rebalance timeout */
};

struct cgroup {
    struct kafka_str id;
    int32_t partition;
    int32_t epoch, target_epoch;
    uint64_t meta_hash;
    const char *assignor; /* the assignor of the last target */
    struct cmember **members;
    int32_t n_members, cap_members;
    /* what the group's records last wrote: -1 none */
    int32_t p_epoch, p_target_epoch;
    uint64_t p_meta_hash;
    bool loaded_epoch; /* a load replayed its group epoch record */
    bool dg_rebalance; /* downgraded: the classic group rebalances at once */
};

struct lm_cgroup_coord {
    struct lm_cgroup_config cfg;
    struct cgroup **groups;
    size_t n_groups, cap_groups;
    uint64_t rng;
    /* answers of the last call */
    char *scratch_id;
    struct lm_cgroup_desc_member *desc_members;
    int32_t cap_desc;
    /* groups turned back into classic groups, waiting for lm_cgroup_downgrade_take (detached
     * from groups), and the one taken last with what its answer points at */
    struct cgroup **dg;
    size_t n_dg, cap_dg;
    struct cgroup *dg_taken;
    struct kafka_arena dg_arena;
    /* a classic member's SyncGroup assignment and LeaveGroup answers of the last call */
    uint8_t *classic_buf;
    struct lm_group_leave_member_resp *leave_resps;
    /* records emitted since the last lm_cgroup_records_advance */
    struct lm_cgroup_record *recs;
    size_t n_recs, cap_recs;
    uint8_t *enc;
    size_t enc_cap;
};

/* ---- helpers (cgroup.c), each as its definition there describes ----
 * strings and partition sets; groups and members (find, make, insert, remove, free);
 * records (group_records writes what changed, _ex with every member's); the reconciliation
 * (compute_target, reconcile, held_by_other); subscriptions; migration (downgrade_ok /
 * downgrade: the members marked leaving go and the group waits for lm_cgroup_downgrade_take). */

int cg_compute_target(struct lm_cgroup_coord *c, struct cgroup *g,
                      const struct lm_cgroup_image *img);
int cg_downgrade(struct lm_cgroup_coord *c, struct cgroup *g);
bool cg_downgrade_ok(const struct lm_cgroup_coord *c, const struct cgroup *g);
int cg_group_create(struct lm_cgroup_coord *c, struct kafka_str id, int32_t partition,
                    struct cgroup **out);
void cg_group_drop(struct lm_cgroup_coord *c, struct cgroup *g);
struct cgroup *cg_group_find(const struct lm_cgroup_coord *c, struct kafka_str id, size_t *index);
void cg_group_free(struct cgroup *g);
int cg_group_records(struct lm_cgroup_coord *c, struct cgroup *g, struct cmember *one, bool emit);
int cg_group_records_ex(struct lm_cgroup_coord *c, struct cgroup *g, struct cmember *one, bool emit,
                        bool all);
bool cg_held_by_other(const struct cgroup *g, const struct cmember *self,
                      const struct lm_cgroup_tp *tp);
void cg_held_epochs_reset(struct cmember *m);
bool cg_image_topic_id(const struct lm_cgroup_image *img, struct kafka_str name,
                       struct kafka_uuid *out);
struct cmember *cg_member_by_instance(const struct cgroup *g, struct kafka_str instance);
struct cmember *cg_member_find(const struct cgroup *g, struct kafka_str id, int32_t *index);
void cg_member_free(struct cmember *m);
int cg_member_insert(struct cgroup *g, struct cmember *m);
struct cmember *cg_member_new(void);
int cg_member_remove(struct lm_cgroup_coord *c, struct cgroup *g, int32_t index);
int cg_member_set_protos(struct cmember *m, bool classic, int32_t session_ms, int32_t n,
                         const struct lm_cgr_protocol *p);
int cg_new_member_id(struct lm_cgroup_coord *c, struct kafka_str *out);
int cg_reconcile(const struct cgroup *g, struct cmember *m, const struct tpset *owned,
                 int64_t now_ms);
void cg_recs_truncate(struct lm_cgroup_coord *c, size_t n);
int cg_static_takeover(struct lm_cgroup_coord *c, struct cgroup *g, struct cmember *st,
                       struct kafka_str member_id);
bool cg_str_is(struct kafka_str a, struct kafka_str b);
int cg_str_set(struct kafka_str *dst, struct kafka_str src);
uint64_t cg_subscribed_hash(const struct cgroup *g, const struct lm_cgroup_image *img);
int cg_tpset_copy(struct tpset *dst, const struct tpset *src);
void cg_tpset_free(struct tpset *s);
bool cg_tpset_has(const struct tpset *s, const struct lm_cgroup_tp *tp);
void cg_tpset_normalize(struct tpset *s);
int cg_tpset_reserve(struct tpset *s, int32_t n);
int cg_update_subscription(struct cmember *m, const struct lm_cgroup_hb_req *r, bool *changed,
                           int16_t *err);

#endif
