/* libFuzzer target: what a cluster node decodes from other nodes. The first byte picks the
 * decoder: 0 a Raft message (consensus/raft_wire), 1 a metadata record (broker/meta), 2 a
 * metadata snapshot (broker/cluster/meta_snapshot). Beyond "no crash, no leak, no over-read":
 * a decoded Raft message re-encodes to exactly the bytes it came from; a decoded record
 * re-encodes and decodes again to the same type, and applying it to a state never breaks it;
 * a snapshot that loads leaves an image that encodes as a snapshot again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/cluster/meta_snapshot.h"
#include "broker/meta/meta_state.h"
#include "broker/meta/meta_store.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "consensus/raft_wire.h"

static struct lm_meta_store *store;

static void fuzz_raft(const uint8_t *buf, size_t len)
{
    struct raft_msg m;
    size_t used = 0;
    if (raft_wire_decode(buf, len, &m, &used) != 0)
        return;
    LM_ASSERT(used <= len);
    uint8_t *again = malloc(used ? used : 1);
    LM_ASSERT(again != NULL);
    LM_ASSERT(raft_wire_encode(&m, again, used) == (int)used);
    LM_ASSERT(memcmp(again, buf, used) == 0);
    free(again);
    raft_msg_deinit(&m);
}

static void fuzz_record(const uint8_t *buf, size_t len)
{
    struct lm_meta_record r;
    struct lm_config_entry *cfg = NULL;
    if (lm_meta_record_decode(buf, len, &r, &cfg) != 0)
        return;
    size_t n = lm_meta_record_size(&r);
    uint8_t *enc = malloc(n);
    LM_ASSERT(enc != NULL);
    int w = lm_meta_record_encode(&r, enc, n);
    if (w > 0) {
        struct lm_meta_record d;
        struct lm_config_entry *dc = NULL;
        LM_ASSERT(lm_meta_record_decode(enc, (size_t)w, &d, &dc) == 0);
        LM_ASSERT(d.type == r.type);
        lm_meta_record_free(&d);
    }
    free(enc);
    struct lm_meta_state s;
    lm_meta_state_init(&s);
    (void)lm_meta_state_apply(&s, &r);
    struct lm_meta_state c;
    if (lm_meta_state_copy(&c, &s) == 0)
        lm_meta_state_deinit(&c);
    lm_meta_state_deinit(&s);
    lm_meta_record_free(&r);
}

static void fuzz_snapshot(const uint8_t *buf, size_t len)
{
    if (store == NULL) {
        char dir[] = "/tmp/fuzz-cluster-XXXXXX";
        LM_ASSERT(mkdtemp(dir) != NULL);
        LM_ASSERT(lm_meta_store_open(dir, &store) == 0);
        LM_ASSERT(lm_meta_store_set_cluster(store, 1) == 0);
    }
    int64_t last = -1;
    if (meta_snapshot_load(store, buf, len, &last) != 0)
        return;
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(store);
    uint8_t *out = NULL;
    size_t n = 0;
    if (meta_snapshot_encode(&snap->state, last, &out, &n) == 0)
        free(out);
    lm_meta_snapshot_release(snap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] % 3) {
    case 0:
        fuzz_raft(data + 1, size - 1);
        break;
    case 1:
        fuzz_record(data + 1, size - 1);
        break;
    default:
        fuzz_snapshot(data + 1, size - 1);
        break;
    }
    return 0;
}
