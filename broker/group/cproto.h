/* The classic consumer protocol's embedded bytes (Kafka ConsumerProtocol, never flexible), as
 * a mixed consumer group needs them: a classic member's JoinGroup subscription is read for its
 * topics, owned partitions and rack, and its SyncGroup assignment is written from the
 * server-side assignment.
 *
 *   Subscription: version i16, topics [string], user_data bytes?, v1+ owned partitions
 *                 [topic string, partitions [i32]], v2+ generation i32, v3+ rack string?
 *   Assignment:   version i16, assigned partitions [topic string, partitions [i32]],
 *                 user_data bytes?
 * A version above the highest known is read as the highest (Kafka reads newer versions so). */
#ifndef LAMINAR_BROKER_GROUP_CPROTO_H
#define LAMINAR_BROKER_GROUP_CPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/kafka_rt.h"

#define LM_CPROTO_SUB_VERSION_MAX    3
#define LM_CPROTO_ASSIGN_VERSION_MAX 3

/* One partition by topic name. */
struct lm_cproto_tp {
    struct kafka_str topic;
    int32_t partition;
};

struct lm_cproto_sub {
    int16_t version;
    int32_t n_topics;
    struct kafka_str *topics;
    int32_t n_owned;
    struct lm_cproto_tp *owned;
    struct kafka_str rack_id; /* null when absent */
};

/* lm_cproto_sub_decode reads a subscription; strings point into b, arrays come from arena.
 * LM_E_INVALID / LM_E_TRUNCATED (or another reader error) for bytes that are not one. */
int lm_cproto_sub_decode(struct kafka_bytes b, struct kafka_arena *arena,
                         struct lm_cproto_sub *out);
/* lm_cproto_version reads the version of a subscription or assignment (-1: not readable). */
int16_t lm_cproto_version(struct kafka_bytes b);
/* lm_cproto_assignment_size / _encode write an assignment of version (clamped to 0..MAX) with
 * null user data; tps must be grouped by topic (equal names next to each other). */
size_t lm_cproto_assignment_size(int32_t n, const struct lm_cproto_tp *tps);
int lm_cproto_assignment_encode(struct kafka_writer *w, int16_t version, int32_t n,
                                const struct lm_cproto_tp *tps);
/* lm_cproto_assignment_decode reads an assignment's partitions (strings into b, array from
 * arena) and, when user_data is not NULL, its user data (null when absent). */
int lm_cproto_assignment_decode(struct kafka_bytes b, struct kafka_arena *arena, int32_t *n,
                                struct lm_cproto_tp **out, struct kafka_bytes *user_data);

#endif
