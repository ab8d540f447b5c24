/* DescribeUserScramCredentials (50) and AlterUserScramCredentials (51), KIP-554: SCRAM
 * credentials in the cluster metadata (LM_META_SCRAM_SET / _DELETE records), committed at once
 * on a single node or through the controller in a cluster (admin_commit). Errors and messages
 * as Kafka's ScramControlManager and KafkaApis give them, per user: a user with one bad
 * operation changes nothing. The client sends SaltedPassword; the broker keeps StoredKey and
 * ServerKey (RFC 5802 §3), never the salted password. */
#include <stdio.h>
#include <string.h>

#include "broker/handlers/admin_core.h"
#include "broker/meta/meta_store.h"
#include "broker/security/sasl.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

/* More operations than this in one request close the connection (the duplicate checks are
 * quadratic; Kafka's tools send one user at a time). */
#define ADMIN_SCRAM_OPS_MAX 4096

static struct kafka_str arena_str(struct kafka_arena *a, const char *s)
{
    size_t n = strlen(s);
    char *p = kafka_arena_alloc(a, n + 1, 1);
    if (p == NULL)
        return KAFKA_STR_NULL;
    memcpy(p, s, n + 1);
    return (struct kafka_str){p, (int32_t)n};
}

static bool str_eq(struct kafka_str a, struct kafka_str b)
{
    return a.len == b.len && (a.len <= 0 || memcmp(a.ptr, b.ptr, (size_t)a.len) == 0);
}

static bool str_is(struct kafka_str a, const char *s)
{
    return a.len >= 0 && (size_t)a.len == strlen(s) && memcmp(a.ptr, s, (size_t)a.len) == 0;
}

int admin_describe_user_scram_credentials(
    const struct admin_env *env, int16_t version,
    const struct kafka_describe_user_scram_credentials_request *rq,
    struct kafka_describe_user_scram_credentials_response *rs, struct kafka_arena *a)
{
    (void)version;
    typedef struct
        kafka_describe_user_scram_credentials_response_describe_user_scram_credentials_result
            result_t;
    typedef struct kafka_describe_user_scram_credentials_response_credential_info info_t;
    if (!admin_allowed(env, AUTHZ_OP_DESCRIBE, AUTHZ_RES_CLUSTER, admin_kstr(AUTHZ_CLUSTER_NAME))) {
        /* KafkaApis.handleDescribeUserScramCredentialsRequest: DESCRIBE on the cluster */
        rs->error_code = KAFKA_CLUSTER_AUTHORIZATION_FAILED;
        rs->error_message = KAFKA_STR_NULL;
        rs->results = NULL;
        rs->results_count = 0;
        return 0;
    }
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    const struct lm_meta_state *st = &snap->state;
    int rc = 0;
    size_t want = rq->users_count > 0 ? (size_t)rq->users_count : st->scram_count;
    if (want > ADMIN_SCRAM_OPS_MAX * 32u) {
        lm_meta_snapshot_release(snap);
        return LM_E_INVALID;
    }
    result_t *res = kafka_arena_alloc_array(a, want ? want : 1, sizeof(*res), 16);
    if (res == NULL) {
        lm_meta_snapshot_release(snap);
        return LM_E_NOMEM;
    }
    size_t nres = 0;
    if (rq->users_count <= 0) {
        /* every user with a credential, once each */
        for (size_t i = 0; i < st->scram_count; i++) {
            bool seen = false;
            for (size_t k = 0; k < i && !seen; k++)
                seen = strcmp(st->scram[k].user, st->scram[i].user) == 0;
            if (!seen)
                res[nres++] = (result_t){.user = arena_str(a, st->scram[i].user),
                                         .error_message = KAFKA_STR_NULL};
        }
    } else {
        if ((size_t)rq->users_count > ADMIN_SCRAM_OPS_MAX) {
            lm_meta_snapshot_release(snap);
            return LM_E_INVALID;
        }
        for (int32_t i = 0; i < rq->users_count; i++) {
            struct kafka_str u = rq->users[i].name;
            bool dup = false, listed = false;
            for (int32_t k = 0; k < rq->users_count; k++)
                if (k != i && str_eq(rq->users[k].name, u))
                    dup = true;
            for (size_t k = 0; k < nres && !listed; k++)
                listed = str_eq(res[k].user, u);
            if (listed)
                continue;
            res[nres] = (result_t){.user = u, .error_message = KAFKA_STR_NULL};
            if (dup) {
                res[nres].error_code = KAFKA_DUPLICATE_RESOURCE;
                res[nres].error_message = arena_str(
                    a, "Cannot describe SCRAM credentials for the same user twice in a single "
                       "request");
            }
            nres++;
        }
    }
    for (size_t i = 0; rc == 0 && i < nres; i++) {
        result_t *r = &res[i];
        if (r->error_code != 0)
            continue;
        size_t n = 0;
        info_t *infos = kafka_arena_alloc_array(a, 2, sizeof(*infos), 16);
        if (infos == NULL) {
            rc = LM_E_NOMEM;
            break;
        }
        for (size_t k = 0; k < st->scram_count && n < 2; k++) {
            const struct lm_meta_scram *c = &st->scram[k];
            if (str_is(r->user, c->user))
                infos[n++] = (info_t){.mechanism = c->mechanism, .iterations = c->iterations};
        }
        r->credential_infos = infos;
        r->credential_infos_count = (int32_t)n;
        if (n == 0) {
            r->error_code = KAFKA_RESOURCE_NOT_FOUND;
            r->error_message =
                arena_str(a, "Attempt to describe a user credential that does not exist");
        }
    }
    lm_meta_snapshot_release(snap);
    rs->error_code = 0;
    rs->error_message = KAFKA_STR_NULL;
    rs->results = res;
    rs->results_count = (int32_t)nres;
    return rc;
}

/* One operation of the request: a deletion (salted NULL) or an upsertion. */
struct scram_op {
    struct kafka_str user;
    int8_t mechanism;
    int32_t iterations;
    struct kafka_bytes salt, salted;
    bool upsert;
};

static void user_error(struct kafka_arena *a, int16_t *code, struct kafka_str *msg, int16_t c,
                       const char *m)
{
    if (*code != 0)
        return; /* the first error of a user wins */
    *code = c;
    *msg = arena_str(a, m);
}

int admin_alter_user_scram_credentials(const struct admin_env *env, int16_t version,
                                       const struct kafka_alter_user_scram_credentials_request *rq,
                                       struct kafka_alter_user_scram_credentials_response *rs,
                                       struct kafka_arena *a)
{
    (void)version;
    typedef struct kafka_alter_user_scram_credentials_response_alter_user_scram_credentials_result
        result_t;
    size_t nd = rq->deletions_count > 0 ? (size_t)rq->deletions_count : 0;
    size_t nu = rq->upsertions_count > 0 ? (size_t)rq->upsertions_count : 0;
    if (nd + nu > ADMIN_SCRAM_OPS_MAX)
        return LM_E_INVALID;
    struct scram_op *ops = kafka_arena_alloc_array(a, nd + nu + 1, sizeof(*ops), 16);
    result_t *res = kafka_arena_alloc_array(a, nd + nu + 1, sizeof(*res), 16);
    size_t *op_user = kafka_arena_alloc_array(a, nd + nu + 1, sizeof(*op_user), 16);
    if (ops == NULL || res == NULL || op_user == NULL)
        return LM_E_NOMEM;
    for (size_t i = 0; i < nd; i++)
        ops[i] = (struct scram_op){.user = rq->deletions[i].name,
                                   .mechanism = rq->deletions[i].mechanism};
    for (size_t i = 0; i < nu; i++) {
        const struct kafka_alter_user_scram_credentials_request_scram_credential_upsertion *u =
            &rq->upsertions[i];
        ops[nd + i] = (struct scram_op){.user = u->name,
                                        .mechanism = u->mechanism,
                                        .iterations = u->iterations,
                                        .salt = u->salt,
                                        .salted = u->salted_password,
                                        .upsert = true};
    }
    size_t n = nd + nu, nres = 0;
    /* one result per user, in the order users first appear */
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        while (k < nres && !str_eq(res[k].user, ops[i].user))
            k++;
        if (k == nres)
            res[nres++] = (result_t){.user = ops[i].user, .error_message = KAFKA_STR_NULL};
        op_user[i] = k;
    }
    if (!admin_allowed(env, AUTHZ_OP_ALTER, AUTHZ_RES_CLUSTER, admin_kstr(AUTHZ_CLUSTER_NAME))) {
        /* KafkaApis.handleAlterUserScramCredentialsRequest: ALTER on the cluster */
        for (size_t i = 0; i < nres; i++)
            res[i].error_code = KAFKA_CLUSTER_AUTHORIZATION_FAILED;
        rs->results = res;
        rs->results_count = (int32_t)nres;
        return 0;
    }
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    for (size_t i = 0; i < n; i++) {
        const struct scram_op *o = &ops[i];
        result_t *r = &res[op_user[i]];
        size_t kl = lm_meta_scram_key_len(o->mechanism);
        if (o->user.len <= 0)
            user_error(a, &r->error_code, &r->error_message, KAFKA_UNACCEPTABLE_CREDENTIAL,
                       "Username must not be empty");
        else if (o->user.len > LM_META_SCRAM_USER_MAX ||
                 memchr(o->user.ptr, 0, (size_t)o->user.len))
            user_error(a, &r->error_code, &r->error_message, KAFKA_UNACCEPTABLE_CREDENTIAL,
                       "Username is too long or holds a NUL byte");
        else if (kl == 0)
            user_error(a, &r->error_code, &r->error_message, KAFKA_UNSUPPORTED_SASL_MECHANISM,
                       "Unknown SCRAM mechanism");
        for (size_t k = 0; k < i; k++)
            if (op_user[k] == op_user[i] && ops[k].mechanism == o->mechanism)
                user_error(a, &r->error_code, &r->error_message, KAFKA_DUPLICATE_RESOURCE,
                           "A user credential cannot be altered twice in the same request");
        if (r->error_code != 0)
            continue;
        if (!o->upsert) {
            char name[LM_META_SCRAM_USER_MAX + 1];
            memcpy(name, o->user.ptr, (size_t)o->user.len);
            name[o->user.len] = '\0';
            if (lm_meta_state_scram(&snap->state, name, o->mechanism) == NULL)
                user_error(a, &r->error_code, &r->error_message, KAFKA_RESOURCE_NOT_FOUND,
                           "Attempt to delete a user credential that does not exist");
        } else if (o->iterations < LM_META_SCRAM_ITERS_MIN) {
            user_error(a, &r->error_code, &r->error_message, KAFKA_UNACCEPTABLE_CREDENTIAL,
                       "Too few iterations");
        } else if (o->iterations > LM_META_SCRAM_ITERS_MAX) {
            user_error(a, &r->error_code, &r->error_message, KAFKA_UNACCEPTABLE_CREDENTIAL,
                       "Too many iterations");
        } else if (o->salt.len <= 0 || o->salt.len > LM_META_SCRAM_SALT_MAX) {
            user_error(a, &r->error_code, &r->error_message, KAFKA_UNACCEPTABLE_CREDENTIAL,
                       "Salt must hold 1 to 128 bytes");
        } else if (o->salted.len < 0 || (size_t)o->salted.len != kl) {
            user_error(a, &r->error_code, &r->error_message, KAFKA_UNACCEPTABLE_CREDENTIAL,
                       "Salted password does not have the mechanism's hash length");
        }
    }
    lm_meta_snapshot_release(snap);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct scram_op *o = &ops[i];
        result_t *r = &res[op_user[i]];
        if (r->error_code != 0)
            continue;
        char *name = kafka_arena_alloc(a, (size_t)o->user.len + 1, 1);
        if (name == NULL)
            return LM_E_NOMEM;
        memcpy(name, o->user.ptr, (size_t)o->user.len);
        name[o->user.len] = '\0';
        struct lm_meta_record rec = {.type = o->upsert ? LM_META_SCRAM_SET : LM_META_SCRAM_DELETE,
                                     .user = name,
                                     .scram_mechanism = o->mechanism};
        struct sasl_scram_cred cred;
        if (o->upsert) {
            if (sasl_scram_cred_from_salted((enum sasl_mech)o->mechanism, o->salted.ptr,
                                            (size_t)o->salted.len, o->salt.ptr, (size_t)o->salt.len,
                                            o->iterations, &cred) != 0) {
                user_error(a, &r->error_code, &r->error_message, KAFKA_UNACCEPTABLE_CREDENTIAL,
                           "The credential could not be derived");
                continue;
            }
            rec.scram_iterations = cred.iterations;
            rec.scram_salt = cred.salt;
            rec.scram_salt_len = cred.salt_len;
            rec.scram_stored_key = cred.stored_key;
            rec.scram_server_key = cred.server_key;
        }
        int crc = admin_commit(env, &rec, ADMIN_COMMIT_SCRAM, a, &r->error_code, &r->error_message);
        if (crc == LM_E_NOMEM)
            rc = crc;
        else if (crc == LM_E_NOT_FOUND)
            user_error(a, &r->error_code, &r->error_message, KAFKA_RESOURCE_NOT_FOUND,
                       "Attempt to delete a user credential that does not exist");
        else if (crc != 0)
            user_error(a, &r->error_code, &r->error_message, KAFKA_UNACCEPTABLE_CREDENTIAL,
                       lm_strerror(crc));
    }
    rs->results = res;
    rs->results_count = (int32_t)nres;
    return rc;
}
