/* Small durable state files of a partition directory (quorum-state, raft-start, raft-conf, the
 * vote ledger's entries): one short text line each ("term vote\n"), rewritten in place.
 *
 * Layout: two slots, at offsets 0 and STATE_FILE_SLOT_BYTES, each
 *   "LMS1" | seq u64 BE | length u16 BE | line[length] | crc32c u32 BE over all before it
 * and the file is exactly two slots long. The valid slot with the larger seq is the content.
 * A write goes to the other slot with seq + 1 (pwrite, fdatasync): the file keeps its size and
 * its blocks, so the sync writes no metadata, creates no inode and needs no directory fsync; a
 * crash mid-write leaves a slot whose CRC fails and the previous content in the other one,
 * which is what was last made durable (the caller acts only on a completed write). The slots
 * are a page apart so that a device writing 4 KiB sectors never rewrites both at once.
 *
 * The first write of a file (and of one in the older format, the bare text line written
 * through a temporary file) creates it through a temporary file, fdatasync, rename and a
 * directory fsync, as before: a file is created once per replica, not once per election.
 * Reading accepts both formats. */
#ifndef LAMINAR_BROKER_PARTITION_STATE_FILE_H
#define LAMINAR_BROKER_PARTITION_STATE_FILE_H

#include <stddef.h>

#define STATE_FILE_SLOT_BYTES 4096
#define STATE_FILE_LINE_MAX   256 /* bytes of one line */

/* Replaces dir/name's line with line[0..n) durably. 0, LM_E_FULL (no space: the old content
 * stands), LM_E_IO, LM_E_TOO_LARGE (a name or line too long). */
int state_file_write(const char *dir, const char *name, const char *line, int n);
/* state_file_write that also fsyncs dir when the file was written in place (sync_dir: other
 * entries of dir must become durable with it); a new file's rename needs that fsync anyway,
 * so either way it is one. */
int state_file_write_dir(const char *dir, const char *name, const char *line, int n, int sync_dir);

/* The line path holds, NUL-terminated, into out[cap] (cap > STATE_FILE_LINE_MAX for any line).
 * 0, LM_E_NOT_FOUND (no file), LM_E_CORRUPT (no valid slot, nor an older text file), LM_E_IO. */
int state_file_read(const char *path, char *out, size_t cap);

/* fsync of directory dir (its entries durable). 0 or LM_E_IO. */
int state_file_fsync_dir(const char *dir);

/* The same write split around a sync the caller makes for many files at once (one syncfs for
 * a batch: state_file_write syncs each file, two journal commits for a new one):
 * state_file_stage writes without syncing (into the other slot in place, or a whole new file
 * under a temporary name) and returns in *fd the descriptor it wrote through, the caller's to
 * close (a batch keeps one per file system for its syncfs and closes the others at once, so
 * a batch holds no descriptor per file); once a sync covering the write has returned,
 * state_file_commit renames a new file into place (returns 1: its directory needs one more
 * sync before the write counts as durable; 0 for an in-place write); state_file_abort instead
 * (the sync failed) removes a temporary file (an in-place write stays in the page cache, not
 * known durable: the owner fails the partition, as after any failed sync). A torn staged
 * write is what a torn state_file_write leaves: the other slot, or the old file, stands. */
struct state_file_staged {
    int create; /* a new file, written under its temporary name */
};
int state_file_stage(const char *dir, const char *name, const char *line, int n,
                     struct state_file_staged *st, int *fd);
int state_file_commit(const char *dir, const char *name, struct state_file_staged *st);
void state_file_abort(const char *dir, const char *name, struct state_file_staged *st);

#endif
