/* A replica's Raft hard state (term and vote, partition.c's quorum-state file) outlives its
 * directory. A node that deletes a replica's directory (a reassignment moved it away) and later
 * creates the replica again (moved back, or its metadata said so again) would otherwise start at
 * term 0 with no vote, and could vote a second time in a term it already voted in: two leaders in
 * one epoch (whole-cluster simulation seed 82518). Before the directory goes, its quorum-state is
 * copied into a per-node ledger (one small file per topic id and partition); a directory created
 * for that replica starts from it. Raft only asks that a node never vote twice in a term; an
 * empty log with an old term and vote is a node that is behind, which the leader repairs.
 *
 * Files are written durably (state_file.h: in place once they exist). Entries stay
 * until the node's data goes: a few bytes per replica a reassignment ever moved off this node
 * (a deleted topic's replicas keep none: a new topic of that name has another id). */
#ifndef LAMINAR_BROKER_PARTITION_PARTITION_VOTES_H
#define LAMINAR_BROKER_PARTITION_PARTITION_VOTES_H

#include <stdint.h>

/* The hard-state file in a partition directory (partition.c reads and writes it). */
#define PARTITION_QUORUM_STATE "quorum-state"

/* Copies part_dir's quorum-state into ledger_dir/key (ledger_dir created if missing), unless
 * the ledger already holds a higher term. 0 when there is nothing to keep (no quorum-state) or
 * it is kept; LM_E_IO / LM_E_CORRUPT / LM_E_TOO_LARGE otherwise (the caller then keeps the
 * directory). */
int partition_votes_save(const char *ledger_dir, const char *key, const char *part_dir);

/* Before a replica's directory is created: when ledger_dir/key holds a hard state and part_dir
 * has no quorum-state, creates part_dir and writes it there. 0 when done or nothing to do. */
int partition_votes_restore(const char *ledger_dir, const char *key, const char *part_dir);

#endif
