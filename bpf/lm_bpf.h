/* Loader of the sk_reuseport shard selector (bpf/reuseport.bpf.c) through its bpftool
 * skeleton and libbpf. The broker calls it once per listener after opening one SO_REUSEPORT
 * socket per shard; shards then publish their connection counts with lm_bpf_set_count. */
#ifndef LAMINAR_BPF_LM_BPF_H
#define LAMINAR_BPF_LM_BPF_H

#include <stddef.h>
#include <stdint.h>

enum { LM_BPF_SHARDS_MAX = 128 };

struct lm_bpf;

/* Loads the program, puts fds[i] (listening sockets of one reuseport group, shard order) at
 * index i of the socket array and attaches the program to the group. On success *out is owned
 * by the caller (lm_bpf_free). On failure returns LM_E_UNSUPPORTED (no BPF, no CAP_BPF, old
 * kernel) or LM_E_IO with a one-line reason in why. */
int lm_bpf_reuseport_attach(const int *fds, uint32_t n, struct lm_bpf **out, char *why,
                            size_t why_len);
/* Publishes shard idx's open connection count (a plain store into the mmapped map). */
void lm_bpf_set_count(struct lm_bpf *b, uint32_t idx, uint32_t count);
/* Reads shard idx's count as the program sees it (for tests and metrics). */
uint32_t lm_bpf_get_count(const struct lm_bpf *b, uint32_t idx);
/* Frees the loader state. The program stays attached to the sockets until they close. */
void lm_bpf_free(struct lm_bpf *b);

#endif
