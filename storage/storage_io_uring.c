/* io_uring implementation of storage_io (see storage_io_uring.h). */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "storage/storage_io_uring.h"

#define URING_IOV_MAX 64
#define URING_SYNC_BATCH 16

struct uring_io {
    struct storage_io io; /* first: the table handed out is this struct */
    struct io_uring ring;
    unsigned entries;
};

static int errno_to_lm(int res)
{
    return res == -ENOSPC || res == -EDQUOT ? LM_E_FULL : LM_E_IO;
}

/* Submits what is queued and reaps exactly n completions; *results gets their res fields in
 * user_data order (user_data is the slot). */
static int submit_wait(struct uring_io *u, unsigned n, int *results)
{
    int rc = io_uring_submit_and_wait(&u->ring, n);
    if (rc < 0)
        return LM_E_IO;
    for (unsigned got = 0; got < n; got++) {
        struct io_uring_cqe *cqe;
        int w;
        do {
            w = io_uring_wait_cqe(&u->ring, &cqe);
        } while (w == -EINTR);
        if (w < 0)
            return LM_E_IO;
        uint64_t slot = io_uring_cqe_get_data64(cqe);
        LM_ASSERT(slot < n);
        results[slot] = cqe->res;
        io_uring_cqe_seen(&u->ring, cqe);
    }
    return 0;
}

static size_t iov_total(const struct iovec *iov, int iovcnt)
{
    size_t n = 0;
    for (int i = 0; i < iovcnt; i++)
        n += iov[i].iov_len;
    return n;
}

/* Advances a copy of iov past `done` bytes; returns the new first index. */
static int iov_skip(struct iovec *iov, int iovcnt, size_t done)
{
    int first = 0;
    while (first < iovcnt && done >= iov[first].iov_len) {
        done -= iov[first].iov_len;
        first++;
    }
    if (first < iovcnt) {
        iov[first].iov_base = (uint8_t *)iov[first].iov_base + done;
        iov[first].iov_len -= done;
    }
    return first;
}

static int uring_write_loop(struct uring_io *u, int fd, struct iovec *iov, int iovcnt,
                            uint64_t offset, size_t done, size_t total)
{
    while (done < total) {
        int first = iov_skip(iov, iovcnt, done);
        struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
        LM_ASSERT(sqe != NULL);
        io_uring_prep_writev(sqe, fd, &iov[first], (unsigned)(iovcnt - first), offset + done);
        io_uring_sqe_set_data64(sqe, 0);
        int res;
        int rc = submit_wait(u, 1, &res);
        if (rc != 0)
            return rc;
        if (res == -EINTR || res == -EAGAIN)
            continue;
        if (res <= 0)
            return res == 0 ? LM_E_IO : errno_to_lm(res);
        /* iov was advanced in place by iov_skip; restart the accounting from it. */
        iov += first;
        iovcnt -= first;
        offset += done;
        total -= done;
        done = (size_t)res;
    }
    return 0;
}

/* A lone write that the caller waits for gains nothing from the ring (one io_uring_enter
 * instead of one pwritev), and buffered writes the kernel cannot complete inline are punted to
 * io-wq worker threads, which bench_storage measured at about half the speed of pwritev on ext4
 * here. So plain writes take the syscall; the ring is used where it saves system calls. */
static int uring_pwritev_all(void *ctx, int fd, const struct iovec *iov, int iovcnt,
                             uint64_t offset)
{
    (void)ctx;
    const struct storage_io *posix = storage_io_posix();
    return posix->pwritev_all(posix->ctx, fd, iov, iovcnt, offset);
}

static int uring_sync(void *ctx, const int *fds, int n)
{
    struct uring_io *u = ctx;
    for (int at = 0; at < n;) {
        unsigned batch = (unsigned)(n - at);
        if (batch > URING_SYNC_BATCH)
            batch = URING_SYNC_BATCH;
        if (batch > u->entries)
            batch = u->entries;
        for (unsigned i = 0; i < batch; i++) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
            LM_ASSERT(sqe != NULL);
            io_uring_prep_fsync(sqe, fds[at + (int)i], IORING_FSYNC_DATASYNC);
            io_uring_sqe_set_data64(sqe, i);
        }
        int res[URING_SYNC_BATCH];
        int rc = submit_wait(u, batch, res);
        if (rc != 0)
            return rc;
        for (unsigned i = 0; i < batch; i++)
            if (res[i] < 0)
                return LM_E_IO;
        at += (int)batch;
    }
    return 0;
}

static int uring_pwritev_sync(void *ctx, int fd, const struct iovec *iov, int iovcnt,
                              uint64_t offset)
{
    struct uring_io *u = ctx;
    LM_ASSERT(iovcnt >= 0 && iovcnt <= URING_IOV_MAX);
    struct iovec local[URING_IOV_MAX];
    for (int i = 0; i < iovcnt; i++)
        local[i] = iov[i];
    size_t total = iov_total(iov, iovcnt);
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    LM_ASSERT(sqe != NULL);
    io_uring_prep_writev(sqe, fd, local, (unsigned)iovcnt, offset);
    io_uring_sqe_set_data64(sqe, 0);
    sqe->flags |= IOSQE_IO_LINK; /* the fdatasync runs only after the write completed */
    sqe = io_uring_get_sqe(&u->ring);
    LM_ASSERT(sqe != NULL);
    io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data64(sqe, 1);
    int res[2];
    int rc = submit_wait(u, 2, res);
    if (rc != 0)
        return rc;
    if (res[0] < 0 && res[0] != -EINTR && res[0] != -EAGAIN)
        return errno_to_lm(res[0]);
    if (res[0] >= 0 && (size_t)res[0] == total && res[1] >= 0)
        return 0;
    /* A short write breaks the link (the sync is cancelled): finish plainly. */
    rc = uring_write_loop(u, fd, local, iovcnt, offset, res[0] > 0 ? (size_t)res[0] : 0, total);
    if (rc != 0)
        return rc;
    return uring_sync(ctx, &fd, 1);
}

int storage_io_uring_new(unsigned entries, struct storage_io **out)
{
    *out = NULL;
    if (entries < 4)
        entries = 4;
    struct uring_io *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return LM_E_NOMEM;
    int rc = io_uring_queue_init(entries, &u->ring, 0);
    if (rc < 0) {
        free(u);
        return rc == -ENOMEM ? LM_E_NOMEM : LM_E_UNSUPPORTED;
    }
    u->entries = entries;
    u->io.ctx = u;
    u->io.pwritev_all = uring_pwritev_all;
    u->io.sync = uring_sync;
    u->io.pwritev_sync = uring_pwritev_sync;
    *out = &u->io;
    return 0;
}

void storage_io_uring_free(struct storage_io *io)
{
    if (io == NULL)
        return;
    struct uring_io *u = (struct uring_io *)io;
    io_uring_queue_exit(&u->ring);
    free(u);
}
