/* DescribeLogDirs partition sizes from the logs themselves (Kafka's UnifiedLog.size: the bytes
 * of the segments' batches). admin_logdirs.c lists the partitions present in the log dir with
 * the segment files' lengths; a file can be longer than its batches while the log is open (the
 * zeros written ahead of the log's end when segments are preallocated, storage.h), so each
 * listed partition whose log is open is asked for its own size on the shard that owns it (one
 * cross-shard call per shard, data_fan.c). A partition whose log is closed (the open-log
 * budget, or not opened yet) keeps its file length: a closed segment has no zeros ahead. */
#include "broker/handlers/handlers_internal.h"
#include "common/lm_assert.h"
#include "storage/storage.h"

typedef struct kafka_describe_log_dirs_response_describe_log_dirs_partition ld_partition;

struct ld_sizes {
    const struct kafka_api_info *api;
    void *rs;
    h_respond_fn respond;
};

static void size_op(struct hshard *hs, struct hpart *p, struct hwork *w, struct hfan *f)
{
    (void)hs;
    (void)f;
    ld_partition *o = w->out;
    if (p != NULL && p->log != NULL)
        o->partition_size = (int64_t)storage_log_size_bytes(p->log);
    w->error = KAFKA_NONE; /* a partition not here (any more) keeps what the directory said */
}

static void sizes_finish(struct hfan *f)
{
    struct ld_sizes *c = f->ctx;
    c->respond(f->req, c->api, c->rs);
}

bool h_logdirs_sizes(struct broker_req *req, const struct kafka_api_info *api,
                     struct kafka_describe_log_dirs_response *rs, h_respond_fn respond)
{
    LM_ASSERT(req->api_key == KAFKA_DESCRIBE_LOG_DIRS_KEY && respond != NULL);
    struct hshard *hs = hs_of(req->shard);
    size_t n = 0;
    for (int32_t d = 0; d < rs->results_count; d++)
        for (int32_t t = 0; t < rs->results[d].topics_count; t++)
            n += (size_t)rs->results[d].topics[t].partitions_count;
    struct ld_sizes *c = h_alloc(req, 1, sizeof(*c));
    struct hfan *f = h_alloc(req, 1, sizeof(*f));
    struct hwork *items = h_alloc(req, n > 0 ? n : 1, sizeof(*items));
    if (c == NULL || f == NULL || items == NULL)
        return false;
    *c = (struct ld_sizes){.api = api, .rs = rs, .respond = respond};
    size_t k = 0;
    for (int32_t d = 0; d < rs->results_count; d++) {
        for (int32_t t = 0; t < rs->results[d].topics_count; t++) {
            const struct kafka_describe_log_dirs_response_describe_log_dirs_topic *tp =
                &rs->results[d].topics[t];
            size_t len = tp->name.len > 0 ? (size_t)tp->name.len : 0;
            for (int32_t i = 0; i < tp->partitions_count; i++, k++) {
                ld_partition *o = &tp->partitions[i];
                items[k] = (struct hwork){
                    .topic = tp->name.ptr,
                    .topic_len = len,
                    .partition = o->partition_index,
                    .owner = hs_owner(hs, tp->name.ptr, len, o->partition_index),
                    .out = o,
                };
            }
        }
    }
    LM_ASSERT(k == n);
    if (!hfan_init(f, req, items, n, size_op, sizes_finish, c))
        return false;
    f->peek = true; /* sizes of open logs only: nothing is opened to be measured */
    hfan_start(f);
    return true;
}
