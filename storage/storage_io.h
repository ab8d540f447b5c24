/* The write/sync path of storage/ behind a table of function pointers (DESIGN.md §7, the
 * canonical/raft `raft_io` style): the log never calls write()/fdatasync() itself, so tests can
 * inject faults and an owner can supply its own implementation; the plain-syscall one is below
 * (the broker's fsyncs leave the shard thread through external_sync instead). Reads stay plain
 * pread()/sendfile() on the fds that storage_log_read() returns; metadata operations (open, rename,
 * ftruncate, unlink) are rare and stay plain syscalls. */
#ifndef LAMINAR_STORAGE_STORAGE_IO_H
#define LAMINAR_STORAGE_STORAGE_IO_H

#include <stdint.h>
#include <sys/uio.h>

struct storage_io {
    void *ctx;
    /* Writes every byte of iov[0..iovcnt) at file offset `offset` of fd (retrying short
     * writes). Returns 0 or LM_E_IO / LM_E_FULL (ENOSPC). */
    int (*pwritev_all)(void *ctx, int fd, const struct iovec *iov, int iovcnt, uint64_t offset);
    /* Makes the data of every fd in fds[0..n) durable (fdatasync semantics); an implementation
     * may run them concurrently. Returns 0 or LM_E_IO. */
    int (*sync)(void *ctx, const int *fds, int n);
    /* pwritev_all() followed by a durable sync of that fd; io_uring links the two into one
     * submission. Returns 0 or LM_E_IO / LM_E_FULL. */
    int (*pwritev_sync)(void *ctx, int fd, const struct iovec *iov, int iovcnt, uint64_t offset);
};

/* storage_io_strerror names an error of this write path: LM_E_FULL is ENOSPC ("no space left on
 * the device"), others as lm_strerror. */
const char *storage_io_strerror(int rc);

/* storage_io_posix returns the static plain-syscall implementation (pwritev + fdatasync). */
const struct storage_io *storage_io_posix(void);

#endif
