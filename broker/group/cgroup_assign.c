/* Server-side assignors of consumer-protocol groups (KIP-848): "uniform" (Kafka's default,
 * balanced and sticky) and "range" (per topic, consecutive ranges in member id order). Pure
 * functions over the members' subscriptions and the topics' partition counts. */
#include <stdlib.h>
#include <string.h>

#include "broker/group/cgroup.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"

int lm_cgroup_tp_cmp(const struct lm_cgroup_tp *a, const struct lm_cgroup_tp *b)
{
    int c = memcmp(a->topic_id.b, b->topic_id.b, sizeof(a->topic_id.b));
    if (c != 0)
        return c;
    return a->partition < b->partition ? -1 : a->partition > b->partition;
}

static int tp_qsort_cmp(const void *a, const void *b)
{
    return lm_cgroup_tp_cmp(a, b);
}

static bool subscribed(const struct lm_cgroup_amember *m, int32_t topic)
{
    int32_t lo = 0, hi = m->n_topics;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (m->topics[mid] == topic)
            return true;
        if (m->topics[mid] < topic)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static int32_t topic_index(int32_t n_topics, const struct lm_cgroup_atopic *topics,
                           const struct kafka_uuid *id)
{
    for (int32_t i = 0; i < n_topics; i++)
        if (memcmp(topics[i].id.b, id->b, sizeof(id->b)) == 0)
            return i;
    return -1;
}

/* Fills every member's target from owner[] (partition i of the flat list goes to owner[i]). */
static int emit_targets(int32_t n_topics, const struct lm_cgroup_atopic *topics,
                        const int64_t *base, const int32_t *owner, const int32_t *count,
                        int32_t n_members, struct lm_cgroup_amember *members)
{
    for (int32_t m = 0; m < n_members; m++) {
        members[m].n_target = 0;
        members[m].target = NULL;
        if (count[m] > 0) {
            members[m].target = malloc((size_t)count[m] * sizeof(struct lm_cgroup_tp));
            if (members[m].target == NULL)
                return LM_E_NOMEM;
        }
    }
    for (int32_t t = 0; t < n_topics; t++) {
        for (int32_t p = 0; p < topics[t].partitions; p++) {
            int32_t o = owner[base[t] + p];
            if (o < 0)
                continue;
            LM_ASSERT(o < n_members && members[o].n_target < count[o]);
            members[o].target[members[o].n_target++] =
                (struct lm_cgroup_tp){.topic_id = topics[t].id, .partition = p};
        }
    }
    for (int32_t m = 0; m < n_members; m++) {
        LM_ASSERT(members[m].n_target == count[m]);
        if (members[m].n_target > 1)
            qsort(members[m].target, (size_t)members[m].n_target, sizeof(struct lm_cgroup_tp),
                  tp_qsort_cmp);
    }
    return 0;
}

static bool same_topics(const struct lm_cgroup_amember *a, const struct lm_cgroup_amember *b)
{
    return a->n_topics == b->n_topics &&
           (a->n_topics == 0 || memcmp(a->topics, b->topics, (size_t)a->n_topics * 4) == 0);
}

/* Every member subscribes to the same topics (the common case), in O(partitions + members):
 * each member gets total / n, the first total % n of them (those keeping one more first) one
 * more; current partitions stay up to that count, free ones fill the members below it. */
static int assign_uniform_homogeneous(int32_t n_topics, const struct lm_cgroup_atopic *topics,
                                      const int64_t *base, int64_t total, int32_t *owner,
                                      int32_t *count, int32_t n_members,
                                      const struct lm_cgroup_amember *members)
{
    int64_t each = total / n_members, extra = total % n_members;
    int32_t *next = calloc((size_t)n_members, sizeof(int32_t));
    bool *plus = calloc((size_t)n_members, sizeof(bool));
    if (next == NULL || plus == NULL) {
        free(next);
        free(plus);
        return LM_E_NOMEM;
    }
    /* keep up to `each` current partitions, then one more while extra slots remain */
    for (int pass = 0; pass < 2; pass++) {
        for (int32_t m = 0; m < n_members; m++) {
            int64_t want = pass == 0 ? each : each + 1;
            if (pass == 1 && (extra == 0 || count[m] != each))
                continue;
            while (count[m] < want && next[m] < members[m].n_current) {
                const struct lm_cgroup_tp *tp = &members[m].current[next[m]++];
                int32_t t = topic_index(n_topics, topics, &tp->topic_id);
                if (t < 0 || tp->partition < 0 || tp->partition >= topics[t].partitions ||
                    !subscribed(&members[m], t) || owner[base[t] + tp->partition] >= 0)
                    continue;
                owner[base[t] + tp->partition] = m;
                count[m]++;
            }
            if (pass == 1 && count[m] == each + 1) {
                plus[m] = true;
                extra--;
            }
        }
    }
    for (int32_t m = 0; m < n_members && extra > 0; m++) {
        if (!plus[m]) {
            plus[m] = true;
            extra--;
        }
    }
    LM_ASSERT(extra == 0);
    int32_t m = 0;
    for (int64_t k = 0; k < total; k++) {
        if (owner[k] >= 0)
            continue;
        while (m < n_members && count[m] >= each + (plus[m] ? 1 : 0))
            m++;
        LM_ASSERT(m < n_members);
        owner[k] = m;
        count[m]++;
    }
    free(next);
    free(plus);
    return 0;
}

/* Balanced and sticky: current partitions stay where their member still subscribes, free
 * ones go to the least loaded subscriber, then a partition moves from a member to another
 * subscriber holding at least two fewer until none can (each move lowers the sum of squared
 * counts, so the loop ends). */
static void assign_uniform(int32_t n_topics, const struct lm_cgroup_atopic *topics,
                           const int64_t *base, int64_t total, int32_t *owner, int32_t *count,
                           int32_t n_members, const struct lm_cgroup_amember *members)
{
    for (int32_t m = 0; m < n_members; m++) {
        for (int32_t i = 0; i < members[m].n_current; i++) {
            const struct lm_cgroup_tp *tp = &members[m].current[i];
            int32_t t = topic_index(n_topics, topics, &tp->topic_id);
            if (t < 0 || tp->partition < 0 || tp->partition >= topics[t].partitions ||
                !subscribed(&members[m], t))
                continue;
            int64_t k = base[t] + tp->partition;
            if (owner[k] >= 0)
                continue;
            owner[k] = m;
            count[m]++;
        }
    }
    for (int32_t t = 0; t < n_topics; t++) {
        for (int32_t p = 0; p < topics[t].partitions; p++) {
            int64_t k = base[t] + p;
            if (owner[k] >= 0)
                continue;
            int32_t best = -1;
            for (int32_t m = 0; m < n_members; m++)
                if (subscribed(&members[m], t) && (best < 0 || count[m] < count[best]))
                    best = m;
            if (best >= 0) {
                owner[k] = best;
                count[best]++;
            }
        }
    }
    bool moved = true;
    for (int64_t pass = 0; moved; pass++) {
        LM_ASSERT(pass <= total * total + 1);
        moved = false;
        for (int32_t t = 0; t < n_topics; t++) {
            for (int32_t p = 0; p < topics[t].partitions; p++) {
                int64_t k = base[t] + p;
                int32_t o = owner[k];
                if (o < 0)
                    continue;
                int32_t best = -1;
                for (int32_t m = 0; m < n_members; m++)
                    if (m != o && count[m] < count[o] - 1 && subscribed(&members[m], t) &&
                        (best < 0 || count[m] < count[best]))
                        best = m;
                if (best >= 0) {
                    owner[k] = best;
                    count[o]--;
                    count[best]++;
                    moved = true;
                }
            }
        }
    }
}

/* Per topic, the subscribers in member order: partitions / n each, the first partitions % n
 * one more, in consecutive ranges. */
static void assign_range(int32_t n_topics, const struct lm_cgroup_atopic *topics,
                         const int64_t *base, int32_t *owner, int32_t *count, int32_t n_members,
                         const struct lm_cgroup_amember *members)
{
    for (int32_t t = 0; t < n_topics; t++) {
        int32_t subs = 0;
        for (int32_t m = 0; m < n_members; m++)
            subs += subscribed(&members[m], t);
        if (subs == 0)
            continue;
        int32_t each = topics[t].partitions / subs, extra = topics[t].partitions % subs;
        int32_t p = 0, nth = 0;
        for (int32_t m = 0; m < n_members; m++) {
            if (!subscribed(&members[m], t))
                continue;
            int32_t take = each + (nth < extra ? 1 : 0);
            nth++;
            for (int32_t i = 0; i < take; i++, p++) {
                owner[base[t] + p] = m;
                count[m]++;
            }
        }
        LM_ASSERT(p == topics[t].partitions);
    }
}

int lm_cgroup_assign(const char *assignor, int32_t n_topics, const struct lm_cgroup_atopic *topics,
                     int32_t n_members, struct lm_cgroup_amember *members)
{
    LM_ASSERT(n_topics >= 0 && n_members >= 0);
    bool uniform = strcmp(assignor, "uniform") == 0;
    if (!uniform && strcmp(assignor, "range") != 0)
        return LM_E_INVALID;
    for (int32_t m = 0; m < n_members; m++) {
        members[m].n_target = 0;
        members[m].target = NULL;
    }
    int64_t *base = malloc(((size_t)n_topics + 1) * sizeof(int64_t));
    int32_t *count = calloc((size_t)n_members + 1, sizeof(int32_t));
    if (base == NULL || count == NULL) {
        free(base);
        free(count);
        return LM_E_NOMEM;
    }
    int64_t total = 0;
    for (int32_t t = 0; t < n_topics; t++) {
        LM_ASSERT(topics[t].partitions >= 0);
        base[t] = total;
        total += topics[t].partitions;
    }
    int32_t *owner = malloc(((size_t)total + 1) * sizeof(int32_t));
    if (owner == NULL) {
        free(base);
        free(count);
        return LM_E_NOMEM;
    }
    for (int64_t k = 0; k < total; k++)
        owner[k] = -1;
    bool homogeneous = n_members > 0;
    for (int32_t m = 1; m < n_members && homogeneous; m++)
        homogeneous = same_topics(&members[0], &members[m]);
    /* the flat partition list covers the topics somebody subscribes to: with one subscription
     * shared by all, every one of them */
    for (int32_t t = 0; t < n_topics && homogeneous; t++)
        homogeneous = subscribed(&members[0], t);
    int rc = 0;
    if (uniform && homogeneous)
        rc = assign_uniform_homogeneous(n_topics, topics, base, total, owner, count, n_members,
                                        members);
    else if (uniform)
        assign_uniform(n_topics, topics, base, total, owner, count, n_members, members);
    else
        assign_range(n_topics, topics, base, owner, count, n_members, members);
    if (rc == 0)
        rc = emit_targets(n_topics, topics, base, owner, count, n_members, members);
    if (rc != 0) {
        for (int32_t m = 0; m < n_members; m++) {
            free(members[m].target);
            members[m].target = NULL;
            members[m].n_target = 0;
        }
    }
    free(owner);
    free(base);
    free(count);
    return rc;
}
