/* Loader of the sk_reuseport shard selector (bpf/reuseport.bpf.c) through its bpftool
 * skeleton and libbpf. The broker calls it once per listener after opening one SO_REUSEPORT
 * socket per shard; the program counts each connection it routes, shards count the closes
 * (lm_bpf_conn_closed). */
#ifndef LAMINAR_BPF_LM_BPF_H
#define LAMINAR_BPF_LM_BPF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { LM_BPF_SHARDS_MAX = 128 };

struct lm_bpf;

/* Loads the program, puts fds[i] (listening sockets of one reuseport group, shard order) at
 * index i of the socket array and attaches the program to the group. With share (an earlier
 * attach, for another listener), both programs use share's connection counts, so the selector
 * balances the shards' total connections. On success *out is owned by the caller
 * (lm_bpf_free; free share last). On failure returns LM_E_UNSUPPORTED (no BPF, no CAP_BPF, old
 * kernel) or LM_E_IO with a one-line reason in why. */
int lm_bpf_reuseport_attach(const int *fds, uint32_t n, const struct lm_bpf *share,
                            struct lm_bpf **out, char *why, size_t why_len);
/* The program counts a connection when it picks shard idx (atomically, in the kernel, so a burst
 * of connects spreads before any shard has accepted them); the shard calls this when that
 * connection closes. Never goes below 0 (a connection routed by the kernel's hash while the
 * program was not attached yet was not counted). */
void lm_bpf_conn_closed(struct lm_bpf *b, uint32_t idx);
/* Corrects drift: the program also counts SYNs that never become connections (a SYN dropped
 * by a full queue and retransmitted is routed, and counted, twice). When shard idx's count is
 * the same as at the previous call (*prev: nothing was routed or closed since) and differs from
 * truth (the shard's connections plus its listeners' accept queues), it becomes truth. Returns
 * true when it corrected the count. */
bool lm_bpf_reconcile(struct lm_bpf *b, uint32_t idx, uint32_t truth, uint64_t *prev);
/* Overwrites shard idx's count (tests). */
void lm_bpf_set_count(struct lm_bpf *b, uint32_t idx, uint32_t count);
/* Reads shard idx's count as the program sees it (for tests and metrics). */
uint32_t lm_bpf_get_count(const struct lm_bpf *b, uint32_t idx);
/* Frees the loader state. The program stays attached to the sockets until they close. */
void lm_bpf_free(struct lm_bpf *b);

#endif
