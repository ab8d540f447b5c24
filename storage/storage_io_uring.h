/* io_uring implementation of storage_io (library lm_storage_uring, links liburing).
 *
 * Each call submits its operations and waits for their completions on the caller's private
 * ring, so it is a drop-in for the plain implementation; the gain is fewer system calls: a
 * write and the fdatasync that follows it go in one submission linked with IOSQE_IO_LINK, and
 * syncing several files issues all the fdatasyncs at once (they run concurrently). A lone write
 * stays a pwritev() (see the .c for why). One ring per thread (a shard); not thread-safe. */
#ifndef LAMINAR_STORAGE_STORAGE_IO_URING_H
#define LAMINAR_STORAGE_STORAGE_IO_URING_H

#include "storage/storage_io.h"

/* Creates a ring with `entries` submission slots (>= 4). *out is heap-owned: free it with
 * storage_io_uring_free(). Returns 0, LM_E_UNSUPPORTED (no io_uring: use storage_io_posix())
 * or LM_E_NOMEM. */
int storage_io_uring_new(unsigned entries, struct storage_io **out);
/* Tears down the ring and frees the table (NULL is a no-op). */
void storage_io_uring_free(struct storage_io *io);

#endif
