/* In-memory Raft log and hard-state store: the test double of a storage/ partition log.
 *
 * It serves struct raft_log_ops exactly as a partition log would (an entry is a batch with an
 * offset range; its term is the batch's partitionLeaderEpoch) and holds what a node has made
 * durable. Writes follow the ready contract of raft.h: entries overwrite from their first
 * offset (Kafka truncates the log to that offset, then appends). */
#ifndef LAMINAR_CONSENSUS_RAFT_MEMLOG_H
#define LAMINAR_CONSENSUS_RAFT_MEMLOG_H

#include "consensus/raft.h"

struct raft_memlog {
    struct raft_log_start start; /* owns payload */
    struct raft_entry *entries;  /* own data; contiguous offsets after start.index */
    size_t n, cap;
    struct raft_hard_state hs;
    bool has_hs;
};

/* raft_memlog_init makes an empty log starting at offset 0 with configuration conf. */
void raft_memlog_init(struct raft_memlog *ml, const struct raft_conf *conf);
/* raft_memlog_deinit frees everything the log owns. */
void raft_memlog_deinit(struct raft_memlog *ml);
/* raft_memlog_ops fills ops to read this log (ml is borrowed by the ops). */
void raft_memlog_ops(struct raft_memlog *ml, struct raft_log_ops *ops);
/* raft_memlog_write truncates from es[0].first_index and appends copies of es. */
int raft_memlog_write(struct raft_memlog *ml, const struct raft_entry *es, size_t n);
/* raft_memlog_set_start drops every entry and starts the log after s->index (s copied). */
int raft_memlog_set_start(struct raft_memlog *ml, const struct raft_log_start *s);
/* raft_memlog_compact moves the log start to index (an entry boundary <= last), as retention or
 * DeleteRecords would; payload (copied) is the snapshot at index, if any. */
int raft_memlog_compact(struct raft_memlog *ml, int64_t index, const void *payload,
                        uint32_t payload_len);
/* raft_memlog_copy makes dst (initialized or zeroed) an independent deep copy of src: a test
 * shell keeps the written log (what descriptors resolve against) apart from the durable one and
 * rebuilds it from the durable one after a crash. */
int raft_memlog_copy(struct raft_memlog *dst, const struct raft_memlog *src);
/* raft_memlog_persist writes the durable part of a ready: new start, entries, hard state. */
int raft_memlog_persist(struct raft_memlog *ml, const struct raft_ready *rd);
/* raft_memlog_last is the last offset present (start.index when empty). */
int64_t raft_memlog_last(const struct raft_memlog *ml);
/* raft_memlog_find returns the entry containing index, or NULL. */
const struct raft_entry *raft_memlog_find(const struct raft_memlog *ml, int64_t index);

#endif
