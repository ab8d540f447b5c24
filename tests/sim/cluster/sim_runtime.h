/* A simulated implementation of broker/runtime.h (DESIGN.md §8, tests/sim/cluster): several
 * complete brokers in one process on one discrete-event scheduler, with a virtual clock, a
 * seeded PRNG and a simulated network, instead of io_uring/epoll shards.
 *
 * - One shard per node: cross-shard calls are events on the same node (they never cross
 *   nodes), so broker_partition_shard always answers 0 there.
 * - Time: broker_now_ms/us, and clock_gettime/getrandom for the whole process (interposed by
 *   this library), come from the world: one virtual clock for every node, one PRNG.
 * - Network: every request frame, response frame and datagram is an event delivered after a
 *   seeded delay. Connections keep TCP's order; a frame meeting a cut link is retransmitted
 *   (200 ms doubling to 6.4 s, the frames behind it waiting) until the link heals or the
 *   call's request timeout ends the connection; a crashed node resets its connections, and a few
 *   frames (reset_per_100k) reset theirs on arrival, as a lost segment would. Datagrams
 *   (SWIM) may be lost, duplicated and reordered.
 * - Disk: real files under the node's data dir; fsyncs complete after a seeded delay. Writes
 *   (pwrite, pwritev: storage_io_posix's path) not followed by an fsync of their file are
 *   remembered, so a crash can keep them (a killed process), drop them (power loss), tear the
 *   last of them or zero them; from the crash on, the node's writes do not reach the disk.
 *   Disk faults fail a node's writes (EIO, ENOSPC) or fsyncs (EIO) for a while.
 * Every event adds to a trace hash: the same seed gives the same hash. */
#ifndef LAMINAR_TESTS_SIM_CLUSTER_SIM_RUNTIME_H
#define LAMINAR_TESTS_SIM_CLUSTER_SIM_RUNTIME_H

#include <stdbool.h>
#include <stdint.h>

#include "broker/config.h"
#include "broker/runtime.h"

enum { SIM_NODES_MAX = 5, SIM_ENDPOINTS_MAX = 8 };

/* The network's behaviour (chosen per seed). Times in microseconds. */
struct sim_net_params {
    uint32_t delay_min_us;
    uint32_t delay_max_us;
    uint32_t slow_pct; /* share of frames delayed up to slow_max_us instead */
    uint32_t slow_max_us;
    uint32_t udp_loss_pct;
    uint32_t udp_dup_pct;
    uint32_t reset_per_100k; /* frames (per 100000) whose connection is reset on arrival */
};

/* Sets up the world: the clock at a fixed start, the PRNG from seed, no nodes. */
void sim_world_init(uint64_t seed, const struct sim_net_params *net);
/* Frees what the world still holds (events, connections); every node must be down. */
void sim_world_deinit(void);

/* Randomness of the scenario (the same stream the runtime uses). */
uint64_t sim_rand(void);
/* Uniform in [0, n) (n > 0). */
uint64_t sim_rand_below(uint64_t n);

/* Endpoint index of node i is i; clients are SIM_NODES_MAX + k. Cut links block frames and
 * datagrams from endpoint a to endpoint b. */
void sim_net_cut(uint32_t a, uint32_t b, bool cut);
bool sim_net_is_cut(uint32_t a, uint32_t b);
/* Cuts only the replication connections from node a to node b (client id "laminar-replica":
 * partitions' Raft traffic and the node-pair pings), not the controller's, SWIM or clients':
 * a node that reaches the controller but not its partitions' other replicas. */
void sim_net_cut_replication(uint32_t a, uint32_t b, bool cut);
/* Heals every cut. */
void sim_net_heal(void);

/* Registers node i with its config (taken: freed by sim_world_deinit) and the setup function
 * of its handler layer. The node is down until sim_node_start. */
void sim_node_add(uint32_t i, struct broker_config *cfg,
                  int (*setup)(struct broker_dispatch *d, struct broker_config *cfg));
/* Starts node i from its data dir (setup, shard_start). Returns 0 or an LM_E_*. */
int sim_node_start(uint32_t i);
/* What a crash does to the writes of the node not synced yet. */
enum sim_crash_disk { SIM_DISK_KEEP, SIM_DISK_DROP, SIM_DISK_TEAR, SIM_DISK_ZERO };
/* Crashes node i: its connections reset, its unsynced writes meet `disk`, its memory is
 * freed. */
void sim_node_crash(uint32_t i, enum sim_crash_disk disk);
/* Controlled shutdown, the SIGTERM path of broker_runtime_run: handoff_begin asks node i's
 * handlers to move its leaderships away (false when they cannot), handoff_done says whether they
 * have, and sim_node_stop stops the node cleanly (drain, flush, stop: what it writes reaches the
 * disk, which keeps it). */
bool sim_node_handoff_begin(uint32_t i);
bool sim_node_handoff_done(uint32_t i);
void sim_node_stop(uint32_t i);
/* Disk faults: until until_us, node i's writes to regular files (pwrite, pwritev, write) fail
 * with EIO (SIM_DISK_EIO_WRITE) or ENOSPC (SIM_DISK_FULL, the disk full until space is freed),
 * or its fsyncs fail with EIO (SIM_DISK_EIO_FSYNC: the writes not synced then are never made
 * durable by a later fsync, as Linux marks the pages clean after a writeback error). */
enum sim_disk_fault { SIM_DISK_OK, SIM_DISK_EIO_WRITE, SIM_DISK_EIO_FSYNC, SIM_DISK_FULL };
void sim_disk_fault(uint32_t i, enum sim_disk_fault kind, uint64_t until_us);
/* Writes and fsyncs failed by disk faults so far. */
uint64_t sim_disk_faults(void);
/* Writes a crash has undone, torn or zeroed so far. */
uint64_t sim_disk_lost_writes(void);
/* Schedules fn(arg) right after node i's next write to a file (a crash then finds it unsynced);
 * NULL disarms. */
void sim_on_next_write(uint32_t i, void (*fn)(void *arg), void *arg);
/* Writes remembered (made to regular files by nodes) so far. */
uint64_t sim_disk_writes(void);
/* Metadata-worker jobs (broker_shard_meta_job: Raft state files) run so far; *kept: of them,
 * those a crash kept on the disk without their node hearing of it. */
uint64_t sim_meta_jobs(uint64_t *kept);
bool sim_node_up(uint32_t i);
/* The node's shard while up (NULL when down). */
struct broker_shard *sim_node_shard(uint32_t i);
const struct broker_config *sim_node_config(uint32_t i);

/* Runs events until the clock passes until_us or no event is left; after each event calls
 * check (when not NULL), which returns false to stop. Returns false when check stopped it. */
bool sim_run_until(uint64_t until_us, bool (*check)(void *arg), void *arg);
uint64_t sim_now_us(void);
/* Schedules fn(arg) at now + delay_us (a client's or the scenario's own step). */
void sim_schedule(uint64_t delay_us, void (*fn)(void *arg), void *arg);

/* Opens a connection from client endpoint `endpoint` (>= SIM_NODES_MAX) to host:port, as
 * broker_peer_open does for a shard; done() of its calls runs with s == NULL. */
int sim_client_peer_open(uint32_t endpoint, const char *host, uint16_t port,
                         const struct broker_peer_opts *opts, struct broker_peer **out);

/* The trace hash so far, and the number of events run. */
uint64_t sim_trace_hash(void);
uint64_t sim_events_run(void);
/* Adds bytes to the trace hash (clients' and checkers' own observations). */
void sim_trace_add(const void *p, size_t n);
/* When set, each event prints one line (replaying a seed). */
void sim_trace_print(bool on);

#endif
