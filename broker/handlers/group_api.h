/* Private to group_*.c: a group request in flight (greq) is a list of coordinator calls (gop),
 * each run on the shard owning its group's __consumer_offsets partition, one after another
 * (so only one shard at a time writes into the request's arena). */
#ifndef LAMINAR_BROKER_HANDLERS_GROUP_API_H
#define LAMINAR_BROKER_HANDLERS_GROUP_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/group/group.h"
#include "broker/handlers/group_internal.h"

enum gop_kind {
    GOP_JOIN = 1,
    GOP_SYNC,
    GOP_HEARTBEAT,
    GOP_LEAVE,
    GOP_COMMIT,
    GOP_FETCH,
    GOP_DESCRIBE,
    GOP_LIST,
    GOP_DELETE,
    GOP_OFFSET_DELETE,
    GOP_TXN_COMMIT,
};

struct greq;

struct gop {
    struct broker_xcall x;
    struct greq *g;
    uint32_t owner; /* shard that runs the call */
    uint8_t kind;   /* enum gop_kind */
    const void *in; /* the lm_group_*_req (or kafka_str array for describe/delete) */
    int32_t n;      /* group count for describe/delete */
    size_t index;   /* which element of the response this call fills */
    /* An authorization error answered on the request's shard instead of running the call
     * (group_api_fill with no result); 0 runs it. */
    int16_t deny;
};

struct greq {
    struct broker_req *req;
    int16_t version;
    void *resp; /* the kafka_<api>_response being filled */
    void *aux;  /* API-specific */
    struct gop *ops;
    size_t n_ops;
    size_t next;
    bool nomem; /* an arena copy failed: the connection is closed at finish */
    /* Runs on the request's shard once every call has answered, before the response is
     * encoded: drops or marks what the principal may not see (the calls run on other shards,
     * which must not read this shard's metadata image). NULL: nothing. */
    void (*post)(struct greq *g);
};

/* Runs op's lm_group_* call (on the owner shard) with op as the token. */
int group_api_call(struct lm_group_coord *c, struct gop *op, int64_t now_ms);
/* Copies a coordinator response (r NULL: none) into the Kafka response of op's request, on the
 * owner shard; err != 0 overrides every error code (persist failed, coordinator gone). */
void group_api_fill(struct gop *op, const struct lm_group_resp *r, int16_t err);
/* Encodes and sends the response once every call is back (origin shard). */
void group_api_finish(struct greq *g);
/* Registers the group APIs. */
int group_api_register(struct broker_dispatch *d);

/* Issues g's calls in order, then group_api_finish (group_coord.c). */
void group_ops_start(struct greq *g);
/* Shard owning the __consumer_offsets partition of a group (null id: as ""). */
uint32_t group_owner_of(struct hshard *hs, struct kafka_str group_id);
#endif
