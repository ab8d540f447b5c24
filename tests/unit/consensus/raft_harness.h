/* A small synchronous cluster for Raft unit tests and golden transcripts: nodes with in-memory
 * logs, one FIFO network with a drop matrix, and a text trace of everything that happens. */
#ifndef LAMINAR_TESTS_RAFT_HARNESS_H
#define LAMINAR_TESTS_RAFT_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "consensus/raft.h"
#include "consensus/raft_memlog.h"

#define H_NODES_MAX 9

struct h_node {
    uint32_t id;
    bool up;
    bool hold_persist; /* keep readies' persistence pending until h_flush_disk */
    struct raft *r;
    struct raft_memlog disk;  /* durable: what survives a crash, what raft reads */
    struct raft_memlog cache; /* written (the page cache): readies land here at once; APP
                                 descriptors are resolved against it when queued */
    bool fail_reads;          /* raft's log reads (entry_at on disk) return LM_E_IO */
    bool fail_resolve;        /* the shell's reads when resolving descriptors return LM_E_IO */
    uint64_t unsent;          /* appends that did not resolve (reported to raft) */
    int last_err;             /* last error from raft_step/raft_tick/raft_persisted/rd.err */
    struct raft_config cfg;
    /* persists not yet completed (only when hold_persist) */
    uint64_t held_ids[256];
    struct raft_ready held[256];
    struct raft_entry *held_entries[256];
    uint32_t n_held;
    int64_t applied;
};

struct h_queued {
    struct raft_msg m;
    bool dropped; /* the link was cut when it was sent */
};

struct harness {
    uint32_t n;
    struct h_node nodes[H_NODES_MAX + 1];
    bool blocked[H_NODES_MAX + 1][H_NODES_MAX + 1];
    struct h_queued *q;
    size_t n_q, cap_q;
    FILE *out; /* trace sink */
    uint64_t msgs_delivered;
    bool tolerate_errors; /* raft_step errors are recorded in last_err instead of asserting */
};

/* h_init builds n nodes; the first n_voters are the initial voters, the rest start empty. */
void h_init(struct harness *h, uint32_t n, uint32_t n_voters, bool pre_vote, bool check_quorum,
            FILE *out);
void h_deinit(struct harness *h);
/* h_process drains a node's readies (persisting at once unless hold_persist). */
void h_process(struct harness *h, uint32_t id);
/* h_deliver_all delivers the queued messages once (new ones are queued); returns how many. */
size_t h_deliver_all(struct harness *h);
/* h_stabilize processes and delivers until nothing moves. */
void h_stabilize(struct harness *h);
/* h_flush_disk completes every held persist of a node, in order. */
void h_flush_disk(struct harness *h, uint32_t id);
void h_crash(struct harness *h, uint32_t id);
/* h_compact moves a node's log start to index on disk and in its written log. */
int h_compact(struct harness *h, uint32_t id, int64_t index);
/* h_tick ticks one node and processes its readies; returns raft_tick's result. */
int h_tick(struct harness *h, uint32_t id);
void h_restart(struct harness *h, uint32_t id);
void h_isolate(struct harness *h, uint32_t id);
void h_heal(struct harness *h);
/* h_status prints one line per node. */
void h_status(struct harness *h);
/* h_print_log prints a node's log as offset ranges with terms. */
void h_print_log(struct harness *h, uint32_t id);
/* h_leader returns the id of a node that is leader in the highest term, or 0. */
uint32_t h_leader(struct harness *h);

#endif
