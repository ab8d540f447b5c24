/* Plain-syscall implementation of storage_io: pwritev + fdatasync. */
#include <errno.h>
#include <unistd.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "storage/storage_io.h"

#define POSIX_IOV_MAX 64

static int posix_pwritev_all(void *ctx, int fd, const struct iovec *iov, int iovcnt,
                             uint64_t offset)
{
    (void)ctx;
    LM_ASSERT(iovcnt >= 0 && iovcnt <= POSIX_IOV_MAX);
    struct iovec local[POSIX_IOV_MAX];
    for (int i = 0; i < iovcnt; i++)
        local[i] = iov[i];
    int first = 0;
    /* Short writes are legal for regular files (a signal, a full disk): continue where the
     * kernel stopped; a bounded number of rounds because each one makes progress. */
    while (first < iovcnt) {
        if (local[first].iov_len == 0) {
            first++;
            continue;
        }
        ssize_t n = pwritev(fd, &local[first], iovcnt - first, (off_t)offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == ENOSPC || errno == EDQUOT ? LM_E_FULL : LM_E_IO;
        }
        if (n == 0)
            return LM_E_IO;
        offset += (uint64_t)n;
        size_t left = (size_t)n;
        while (left > 0) {
            LM_ASSERT(first < iovcnt);
            if (left >= local[first].iov_len) {
                left -= local[first].iov_len;
                local[first].iov_len = 0;
                first++;
            } else {
                local[first].iov_base = (uint8_t *)local[first].iov_base + left;
                local[first].iov_len -= left;
                left = 0;
            }
        }
    }
    return 0;
}

static int posix_sync(void *ctx, const int *fds, int n)
{
    (void)ctx;
    for (int i = 0; i < n; i++) {
        LM_ASSERT(fds[i] >= 0);
        while (fdatasync(fds[i]) != 0) {
            if (errno != EINTR)
                return LM_E_IO;
        }
    }
    return 0;
}

static int posix_pwritev_sync(void *ctx, int fd, const struct iovec *iov, int iovcnt,
                              uint64_t offset)
{
    int rc = posix_pwritev_all(ctx, fd, iov, iovcnt, offset);
    if (rc != 0)
        return rc;
    return posix_sync(ctx, &fd, 1);
}

static const struct storage_io posix_io = {
    .ctx = NULL,
    .pwritev_all = posix_pwritev_all,
    .sync = posix_sync,
    .pwritev_sync = posix_pwritev_sync,
};

const struct storage_io *storage_io_posix(void)
{
    return &posix_io;
}

const char *storage_io_strerror(int rc)
{
    return rc == LM_E_FULL ? "no space left on the device" : lm_strerror(rc);
}
