/* Helpers shared by the storage tests: temporary directories, batch building with contents a
 * reader can verify, and reading a whole log back. */
#ifndef LAMINAR_TESTS_STORAGE_TEST_UTIL_H
#define LAMINAR_TESTS_STORAGE_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "storage/storage.h"

/* Creates a fresh directory under $TMPDIR or /tmp; returns it in out (PATH_MAX). */
void tu_mkdtemp(char *out, const char *tag);
/* Removes a directory tree (best effort, for cleanup). */
void tu_rm_rf(const char *path);

/* Builds an uncompressed v2 batch of `records` records of value_bytes each. Record i's value
 * starts with the 8-byte big-endian `first_tag + i` and is filled from it, so
 * tu_check_batch() can verify it wherever it ends up. Timestamps ts, ts+1, ...
 * *out is malloc'd. */
void tu_build_batch(int32_t records, size_t value_bytes, int64_t first_tag, int64_t ts,
                    uint8_t **out, size_t *len);
/* Validates a stored batch (CRC, records) and that record i carries tag base_offset + i when
 * tags_are_offsets; returns 0 or a negative code. */
int tu_check_batch(const uint8_t *buf, size_t len, int tags_are_offsets);

/* Reads [from, end) of the log into a malloc'd buffer (*out, *len), batch by batch. */
int tu_read_all(struct storage_log *log, int64_t from, uint8_t **out, size_t *len);

/* A settable clock for segment.ms / retention.ms. */
struct tu_clock {
    int64_t now_ms;
};
int64_t tu_clock_now(void *ctx);

/* Collects storage reports so tests can check what recovery said. */
struct tu_reports {
    int count;
    int warnings;
    char last[512];
};
void tu_report(void *ctx, int level, const char *msg);

/* Number of open fds of this process. */
int tu_open_fds(void);

#endif
