#include "bpf/lm_bpf.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "reuseport.skel.h"

#ifndef SO_ATTACH_REUSEPORT_EBPF
#define SO_ATTACH_REUSEPORT_EBPF 52
#endif

struct lm_bpf {
    struct lm_reuseport *skel;
    uint64_t *counts; /* mmapped shard_conns: u64 values, no gaps */
    size_t counts_bytes;
    uint32_t n;
};

/* libbpf is chatty on failure; the broker logs one line itself. */
static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    (void)level;
    (void)fmt;
    (void)ap;
    return 0;
}

int lm_bpf_reuseport_attach(const int *fds, uint32_t n, const struct lm_bpf *share,
                            struct lm_bpf **out, char *why, size_t why_len)
{
    LM_ASSERT(fds != NULL && out != NULL);
    *out = NULL;
    if (n == 0 || n > LM_BPF_SHARDS_MAX) {
        snprintf(why, why_len, "shard count %u outside 1..%d", n, LM_BPF_SHARDS_MAX);
        return LM_E_INVALID;
    }
    libbpf_set_print(quiet_print);
    struct lm_bpf *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return LM_E_NOMEM;
    b->n = n;
    b->skel = lm_reuseport__open();
    if (b->skel == NULL) {
        snprintf(why, why_len, "bpf open: %s", strerror(errno));
        free(b);
        return LM_E_UNSUPPORTED;
    }
    b->skel->rodata->nshards = n;
    if (share != NULL && bpf_map__reuse_fd(b->skel->maps.shard_conns,
                                           bpf_map__fd(share->skel->maps.shard_conns)) != 0) {
        snprintf(why, why_len, "sharing the count map: %s", strerror(errno));
        lm_bpf_free(b);
        return LM_E_IO;
    }
    int rc = lm_reuseport__load(b->skel);
    if (rc != 0) {
        snprintf(why, why_len, "bpf load: %s", strerror(-rc));
        lm_bpf_free(b);
        return LM_E_UNSUPPORTED;
    }
    int socks = bpf_map__fd(b->skel->maps.shard_socks);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t fd = (uint64_t)fds[i];
        if (bpf_map_update_elem(socks, &i, &fd, BPF_ANY) != 0) {
            snprintf(why, why_len, "socket array update: %s", strerror(errno));
            lm_bpf_free(b);
            return LM_E_IO;
        }
    }
    long page = sysconf(_SC_PAGESIZE);
    size_t bytes = sizeof(uint64_t) * LM_BPF_SHARDS_MAX;
    b->counts_bytes = (bytes + (size_t)page - 1) / (size_t)page * (size_t)page;
    void *m = mmap(NULL, b->counts_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
                   bpf_map__fd(b->skel->maps.shard_conns), 0);
    if (m == MAP_FAILED) {
        snprintf(why, why_len, "mmap of count map: %s", strerror(errno));
        lm_bpf_free(b);
        return LM_E_IO;
    }
    b->counts = m;
    int prog = bpf_program__fd(b->skel->progs.lm_select_shard);
    if (setsockopt(fds[0], SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog, sizeof(prog)) != 0) {
        snprintf(why, why_len, "SO_ATTACH_REUSEPORT_EBPF: %s", strerror(errno));
        lm_bpf_free(b);
        return LM_E_IO;
    }
    *out = b;
    return 0;
}

void lm_bpf_set_count(struct lm_bpf *b, uint32_t idx, uint32_t count)
{
    LM_ASSERT(idx < b->n);
    __atomic_store_n(&b->counts[idx], (uint64_t)count, __ATOMIC_RELAXED);
}

void lm_bpf_conn_closed(struct lm_bpf *b, uint32_t idx)
{
    LM_ASSERT(idx < b->n);
    uint64_t cur = __atomic_load_n(&b->counts[idx], __ATOMIC_RELAXED);
    while (cur > 0 && !__atomic_compare_exchange_n(&b->counts[idx], &cur, cur - 1, true,
                                                   __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

bool lm_bpf_reconcile(struct lm_bpf *b, uint32_t idx, uint32_t truth, uint64_t *prev)
{
    LM_ASSERT(idx < b->n);
    uint64_t cur = __atomic_load_n(&b->counts[idx], __ATOMIC_RELAXED);
    bool fixed = cur == *prev && cur != truth &&
                 __atomic_compare_exchange_n(&b->counts[idx], &cur, (uint64_t)truth, false,
                                             __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    *prev = fixed ? truth : cur;
    return fixed;
}

uint32_t lm_bpf_get_count(const struct lm_bpf *b, uint32_t idx)
{
    LM_ASSERT(idx < b->n);
    return (uint32_t)__atomic_load_n(&b->counts[idx], __ATOMIC_RELAXED);
}

void lm_bpf_free(struct lm_bpf *b)
{
    if (b == NULL)
        return;
    if (b->counts != NULL)
        munmap(b->counts, b->counts_bytes);
    lm_reuseport__destroy(b->skel);
    free(b);
}
