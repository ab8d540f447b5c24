// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* sk_reuseport shard selector (DESIGN.md §2): every shard listens on the same port with
 * SO_REUSEPORT; for each new connection this program picks the shard with the fewest open
 * connections (ties to the lowest index) and counts the connection there at once, with an
 * atomic add, so a burst of connects spreads evenly before any shard has accepted one. The
 * shards decrement their count when a connection closes (an atomic on the mmapped array,
 * BPF_F_MMAPABLE, no system call); nobody else stores into it.
 * CO-RE: built against vmlinux.h generated from the running kernel's BTF. */
#include "vmlinux.h"

#include <bpf/bpf_helpers.h>

#define LM_BPF_SHARDS_MAX 128

struct {
    __uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
    __uint(max_entries, LM_BPF_SHARDS_MAX);
    __type(key, __u32);
    __type(value, __u64);
} shard_socks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, LM_BPF_SHARDS_MAX);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, __u32);
    __type(value, __u64); /* array elements are 8-byte aligned in the mmapped area anyway */
} shard_conns SEC(".maps");

/* Set by the loader before load. */
const volatile __u32 nshards = 1;

SEC("sk_reuseport")
int lm_select_shard(struct sk_reuseport_md *md)
{
    __u32 best = 0;
    __u64 best_count = ~0ull;
    for (__u32 i = 0; i < LM_BPF_SHARDS_MAX; i++) {
        if (i >= nshards)
            break;
        __u32 key = i;
        __u64 *count = bpf_map_lookup_elem(&shard_conns, &key);
        if (count == 0)
            continue;
        if (*count < best_count) {
            best_count = *count;
            best = i;
        }
    }
    if (bpf_sk_select_reuseport(md, &shard_socks, &best, 0) == 0) {
        __u64 *count = bpf_map_lookup_elem(&shard_conns, &best);
        if (count != 0)
            __sync_fetch_and_add(count, 1);
    }
    /* On a failed select (socket not in the array yet) the kernel's hash decides. */
    return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
