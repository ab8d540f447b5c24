/* DescribeClientQuotas (48) and AlterClientQuotas (49), KIP-546: client quotas in the cluster
 * metadata (LM_META_QUOTA records, KRaft's ClientQuotaRecord), committed at once on a single
 * node or through the controller in a cluster (admin_commit). Validation, matching and errors
 * as Kafka's ClientQuotaControlManager: entity types "user" and "client-id" (a null name is the
 * default entity), the four keys of QuotaConfigs, one result per entry; an entry with an error
 * changes nothing. IP entities ("ip", connection_creation_rate) are refused with
 * INVALID_REQUEST: laminar has no per-IP connection rate quota. */
#include <stdio.h>
#include <string.h>

#include "broker/handlers/admin_core.h"
#include "broker/meta/meta_store.h"
#include "broker/security/quota.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

/* More entries or filter components than this close the connection. */
#define ADMIN_QUOTA_ENTRIES_MAX 4096
#define ADMIN_QUOTA_OPS_MAX     64

#define QUOTA_TYPE_USER   "user"
#define QUOTA_TYPE_CLIENT "client-id"
#define QUOTA_TYPE_IP     "ip"

static struct kafka_str quota_msg(struct kafka_arena *a, const char *fmt, const char *arg,
                                  int arg_len)
{
    char *m = kafka_arena_alloc(a, 384, 1);
    if (m == NULL)
        return KAFKA_STR_NULL;
    int n = snprintf(m, 384, fmt, arg_len, arg);
    return (struct kafka_str){m, n < 0 ? 0 : n >= 384 ? 383 : n};
}

/* ---- DescribeClientQuotas ---------------------------------------------------------------- */

/* One filter component: the part it constrains and how (match_type 0 exact name, 1 the
 * default, 2 any); none: the filter says nothing of that part. */
struct quota_match {
    bool on;
    int8_t how;
    struct kafka_str name;
};

static bool part_matches(const struct quota_match *m, uint8_t part, const char *name)
{
    if (!m->on)
        return true;
    if (part == LM_QUOTA_PART_NONE)
        return false;
    switch (m->how) {
    case 0:
        return part == LM_QUOTA_PART_NAMED && admin_kstr_eq(m->name, name);
    case 1:
        return part == LM_QUOTA_PART_DEFAULT;
    default:
        return true;
    }
}

/* The filter of rq in *user / *client, or an error message (INVALID_REQUEST). */
static const char *describe_filter(const struct kafka_describe_client_quotas_request *rq,
                                   struct quota_match *user, struct quota_match *client)
{
    bool ip = false;
    for (int32_t i = 0; i < rq->components_count; i++) {
        const struct kafka_describe_client_quotas_request_component_data *c = &rq->components[i];
        struct quota_match *m = NULL;
        if (admin_kstr_eq(c->entity_type, QUOTA_TYPE_USER)) {
            if (user->on)
                return "Duplicate user filter component entity type";
            m = user;
        } else if (admin_kstr_eq(c->entity_type, QUOTA_TYPE_CLIENT)) {
            if (client->on)
                return "Duplicate client id filter component entity type";
            m = client;
        } else if (admin_kstr_eq(c->entity_type, QUOTA_TYPE_IP)) {
            if (ip)
                return "Duplicate IP filter component entity type";
            ip = true;
            continue;
        } else if (c->entity_type.len <= 0) {
            return "Unexpected empty filter component entity type";
        } else {
            return "Custom entity type not supported";
        }
        if (c->match_type < 0 || c->match_type > 2)
            return "Unexpected match type";
        if (c->match_type == 0 && c->match.len < 0)
            return "An exact match needs a name";
        *m = (struct quota_match){.on = true, .how = c->match_type, .name = c->match};
    }
    if (ip && (user->on || client->on))
        return "Invalid entity filter component combination, IP filter component should not be "
               "used with user or clientId filter component.";
    return NULL;
}

static struct kafka_str part_name(struct kafka_arena *a, uint8_t part, const char *name)
{
    if (part != LM_QUOTA_PART_NAMED)
        return KAFKA_STR_NULL;
    size_t n = strlen(name);
    char *p = kafka_arena_alloc(a, n + 1, 1);
    if (p == NULL)
        return KAFKA_STR_NULL;
    memcpy(p, name, n + 1);
    return (struct kafka_str){p, (int32_t)n};
}

int admin_describe_client_quotas(const struct admin_env *env, int16_t version,
                                 const struct kafka_describe_client_quotas_request *rq,
                                 struct kafka_describe_client_quotas_response *rs,
                                 struct kafka_arena *a)
{
    (void)version;
    typedef struct kafka_describe_client_quotas_response_entry_data entry_t;
    typedef struct kafka_describe_client_quotas_response_entity_data entity_t;
    typedef struct kafka_describe_client_quotas_response_value_data value_t;
    rs->error_code = 0;
    rs->error_message = KAFKA_STR_NULL;
    rs->entries = NULL;
    rs->entries_count = -1;
    if (rq->components_count > ADMIN_QUOTA_ENTRIES_MAX)
        return LM_E_INVALID;
    if (!admin_allowed(env, AUTHZ_OP_DESCRIBE_CONFIGS, AUTHZ_RES_CLUSTER,
                       admin_kstr(AUTHZ_CLUSTER_NAME))) {
        /* KafkaApis.handleDescribeClientQuotasRequest: DESCRIBE_CONFIGS on the cluster */
        rs->error_code = KAFKA_CLUSTER_AUTHORIZATION_FAILED;
        rs->error_message = admin_kstr("Cluster authorization failed.");
        return 0;
    }
    struct quota_match user = {0}, client = {0};
    const char *bad = describe_filter(rq, &user, &client);
    if (bad != NULL) {
        rs->error_code = KAFKA_INVALID_REQUEST;
        rs->error_message = admin_kstr(bad);
        return 0;
    }
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    const struct lm_meta_state *st = &snap->state;
    entry_t *out =
        kafka_arena_alloc_array(a, st->quota_count ? st->quota_count : 1, sizeof(*out), 16);
    int rc = out == NULL ? LM_E_NOMEM : 0;
    size_t n = 0;
    /* an IP filter matches nothing here: the image holds no IP entities */
    bool ip_only = rq->components_count > 0 && !user.on && !client.on;
    for (size_t i = 0; rc == 0 && !ip_only && i < st->quota_count; i++) {
        const struct lm_quota_entry *q = &st->quotas[i];
        const struct lm_quota_entity *e = &q->entity;
        if (!part_matches(&user, e->user_part, e->user) ||
            !part_matches(&client, e->client_part, e->client))
            continue;
        /* strict: the entity has no part the filter leaves out */
        if (rq->strict && ((e->user_part != LM_QUOTA_PART_NONE && !user.on) ||
                           (e->client_part != LM_QUOTA_PART_NONE && !client.on)))
            continue;
        entity_t *ent = kafka_arena_alloc_array(a, 2, sizeof(*ent), 16);
        value_t *vals = kafka_arena_alloc_array(a, LM_QUOTA_KEY_COUNT, sizeof(*vals), 16);
        if (ent == NULL || vals == NULL) {
            rc = LM_E_NOMEM;
            break;
        }
        int32_t ne = 0, nv = 0;
        if (e->user_part != LM_QUOTA_PART_NONE)
            ent[ne++] = (entity_t){.entity_type = admin_kstr(QUOTA_TYPE_USER),
                                   .entity_name = part_name(a, e->user_part, e->user)};
        if (e->client_part != LM_QUOTA_PART_NONE)
            ent[ne++] = (entity_t){.entity_type = admin_kstr(QUOTA_TYPE_CLIENT),
                                   .entity_name = part_name(a, e->client_part, e->client)};
        for (int k = 0; k < LM_QUOTA_KEY_COUNT; k++)
            if (q->set & (1u << k))
                vals[nv++] =
                    (value_t){.key = admin_kstr(lm_quota_key_name(k)), .value = q->value[k]};
        LM_ASSERT(ne > 0 && nv > 0);
        out[n++] = (entry_t){.entity = ent, .entity_count = ne, .values = vals, .values_count = nv};
    }
    lm_meta_snapshot_release(snap);
    rs->entries = out;
    rs->entries_count = (int32_t)n;
    return rc;
}

/* ---- AlterClientQuotas ------------------------------------------------------------------- */

/* The entity of one entry, or an error message (INVALID_REQUEST) with its argument. */
static const char *alter_entity(const struct kafka_alter_client_quotas_request_entry_data *en,
                                struct lm_quota_entity *e, struct kafka_str *arg)
{
    memset(e, 0, sizeof(*e));
    *arg = KAFKA_STR_NULL;
    if (en->entity_count <= 0)
        return "Invalid empty client quota entity";
    for (int32_t i = 0; i < en->entity_count; i++) {
        const struct kafka_alter_client_quotas_request_entity_data *p = &en->entity[i];
        uint8_t *part;
        char *name;
        *arg = p->entity_type;
        if (admin_kstr_eq(p->entity_type, QUOTA_TYPE_USER)) {
            part = &e->user_part;
            name = e->user;
        } else if (admin_kstr_eq(p->entity_type, QUOTA_TYPE_CLIENT)) {
            part = &e->client_part;
            name = e->client;
        } else if (admin_kstr_eq(p->entity_type, QUOTA_TYPE_IP)) {
            return "IP quota entities are not supported by this broker (%.*s)";
        } else {
            return "Unhandled client quota entity type: %.*s";
        }
        if (*part != LM_QUOTA_PART_NONE)
            return "Duplicate client quota entity type: %.*s";
        if (p->entity_name.len == 0)
            return "Empty %.*s not supported";
        if (p->entity_name.len > LM_QUOTA_NAME_MAX ||
            (p->entity_name.len > 0 &&
             memchr(p->entity_name.ptr, 0, (size_t)p->entity_name.len) != NULL))
            return "The %.*s name is longer than 255 bytes or holds a NUL byte";
        if (p->entity_name.len < 0) {
            *part = LM_QUOTA_PART_DEFAULT;
        } else {
            *part = LM_QUOTA_PART_NAMED;
            memcpy(name, p->entity_name.ptr, (size_t)p->entity_name.len);
            name[p->entity_name.len] = '\0';
        }
    }
    return NULL;
}

/* The operation each key ends with (a later op of a key replaces an earlier one, as the
 * request's map of ops does), or an error message with its argument. */
struct quota_ops {
    bool touched[LM_QUOTA_KEY_COUNT];
    bool remove[LM_QUOTA_KEY_COUNT];
    double value[LM_QUOTA_KEY_COUNT];
};

static const char *alter_ops(const struct kafka_alter_client_quotas_request_entry_data *en,
                             struct quota_ops *ops, struct kafka_str *arg)
{
    memset(ops, 0, sizeof(*ops));
    for (int32_t i = 0; i < en->ops_count; i++) {
        const struct kafka_alter_client_quotas_request_op_data *o = &en->ops[i];
        *arg = o->key;
        int k = o->key.len > 0 ? lm_quota_key_parse(o->key.ptr, (size_t)o->key.len) : -1;
        if (k < 0)
            return "Invalid configuration key %.*s";
        ops->touched[k] = true;
        ops->remove[k] = o->remove;
        ops->value[k] = o->value;
    }
    for (int k = 0; k < LM_QUOTA_KEY_COUNT; k++) {
        if (!ops->touched[k] || ops->remove[k])
            continue;
        const char *why = lm_quota_value_invalid(k, ops->value[k]);
        if (why != NULL) {
            *arg = admin_kstr(lm_quota_key_name(k));
            return strcmp(why, "must be a Long value") == 0
                       ? "Configuration %.*s must be a Long value"
                       : "Configuration %.*s must be a finite number, not negative";
        }
    }
    return NULL;
}

int admin_alter_client_quotas(const struct admin_env *env, int16_t version,
                              const struct kafka_alter_client_quotas_request *rq,
                              struct kafka_alter_client_quotas_response *rs, struct kafka_arena *a)
{
    (void)version;
    typedef struct kafka_alter_client_quotas_response_entry_data result_t;
    typedef struct kafka_alter_client_quotas_response_entity_data entity_t;
    size_t n = rq->entries_count > 0 ? (size_t)rq->entries_count : 0;
    if (n > ADMIN_QUOTA_ENTRIES_MAX)
        return LM_E_INVALID;
    result_t *res = kafka_arena_alloc_array(a, n ? n : 1, sizeof(*res), 16);
    if (res == NULL)
        return LM_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        const struct kafka_alter_client_quotas_request_entry_data *en = &rq->entries[i];
        int32_t ne = en->entity_count > 0 ? en->entity_count : 0;
        if (ne > ADMIN_QUOTA_OPS_MAX || en->ops_count > ADMIN_QUOTA_OPS_MAX)
            return LM_E_INVALID;
        entity_t *ent = kafka_arena_alloc_array(a, ne ? (size_t)ne : 1, sizeof(*ent), 16);
        if (ent == NULL)
            return LM_E_NOMEM;
        for (int32_t k = 0; k < ne; k++)
            ent[k] = (entity_t){.entity_type = en->entity[k].entity_type,
                                .entity_name = en->entity[k].entity_name};
        res[i] = (result_t){.error_message = KAFKA_STR_NULL, .entity = ent, .entity_count = ne};
    }
    rs->entries = res;
    rs->entries_count = (int32_t)n;
    if (!admin_allowed(env, AUTHZ_OP_ALTER_CONFIGS, AUTHZ_RES_CLUSTER,
                       admin_kstr(AUTHZ_CLUSTER_NAME))) {
        /* KafkaApis.handleAlterClientQuotasRequest: ALTER_CONFIGS on the cluster */
        for (size_t i = 0; i < n; i++)
            res[i].error_code = KAFKA_CLUSTER_AUTHORIZATION_FAILED;
        return 0;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct kafka_alter_client_quotas_request_entry_data *en = &rq->entries[i];
        result_t *r = &res[i];
        struct lm_quota_entity e;
        struct quota_ops ops;
        struct kafka_str arg;
        const char *bad = alter_entity(en, &e, &arg);
        if (bad == NULL)
            bad = alter_ops(en, &ops, &arg);
        if (bad != NULL) {
            r->error_code = KAFKA_INVALID_REQUEST;
            r->error_message =
                quota_msg(a, bad, arg.len > 0 ? arg.ptr : "", arg.len > 0 ? arg.len : 0);
            continue;
        }
        if (rq->validate_only)
            continue;
        /* one record per key that changes: a removal of a key held, a value that differs */
        struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
        struct lm_meta_record probe = {.type = LM_META_QUOTA,
                                       .quota_user_part = e.user_part,
                                       .quota_user = e.user,
                                       .quota_client_part = e.client_part,
                                       .quota_client = e.client};
        const struct lm_quota_entry *have = lm_meta_state_quota(&snap->state, &probe);
        struct lm_quota_entry cur = have != NULL ? *have : (struct lm_quota_entry){0};
        lm_meta_snapshot_release(snap);
        char *uname = kafka_arena_alloc(a, sizeof(e.user) + sizeof(e.client), 1);
        if (uname == NULL)
            return LM_E_NOMEM;
        memcpy(uname, e.user, sizeof(e.user));
        memcpy(uname + sizeof(e.user), e.client, sizeof(e.client));
        for (int k = 0; k < LM_QUOTA_KEY_COUNT && r->error_code == 0; k++) {
            if (!ops.touched[k])
                continue;
            bool held = (cur.set & (1u << k)) != 0;
            if (ops.remove[k] ? !held : held && cur.value[k] == ops.value[k])
                continue;
            struct lm_meta_record rec = probe;
            rec.quota_user = uname;
            rec.quota_client = uname + sizeof(e.user);
            rec.quota_key = (int8_t)k;
            rec.quota_value = ops.remove[k] ? 0 : ops.value[k];
            rec.quota_remove = ops.remove[k];
            int crc =
                admin_commit(env, &rec, ADMIN_COMMIT_QUOTA, a, &r->error_code, &r->error_message);
            if (crc == LM_E_NOMEM) {
                rc = crc;
            } else if (crc == LM_E_FULL) {
                r->error_code = KAFKA_POLICY_VIOLATION;
                r->error_message = admin_kstr("Too many client quota entities");
            } else if (crc != 0) {
                r->error_code = KAFKA_INVALID_REQUEST;
                r->error_message = admin_kstr(lm_strerror(crc));
            }
        }
    }
    return rc;
}
