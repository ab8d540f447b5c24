/* Small durable state files, rewritten in place in one of two slots (state_file.h). */
#include "broker/partition/state_file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/lm_assert.h"
#include "common/lm_endian.h"
#include "common/lm_err.h"
#include "protocol/crc32c.h"

#define SLOT_MAGIC "LMS1"
#define SLOT_HEAD  14 /* magic, seq, length */
#define FILE_BYTES (2 * STATE_FILE_SLOT_BYTES)

_Static_assert(SLOT_HEAD + STATE_FILE_LINE_MAX + 4 <= STATE_FILE_SLOT_BYTES, "slot too small");

struct slot {
    bool valid;
    uint64_t seq;
    uint16_t len;
    const uint8_t *line;
};

static struct slot slot_parse(const uint8_t *b)
{
    struct slot s = {0};
    if (memcmp(b, SLOT_MAGIC, 4) != 0)
        return s;
    uint16_t len = lm_get_be16(b + 12);
    if (len == 0 || len > STATE_FILE_LINE_MAX)
        return s;
    if (crc32c_update(0, b, SLOT_HEAD + (size_t)len) != lm_get_be32(b + SLOT_HEAD + len))
        return s;
    s.valid = true;
    s.seq = lm_get_be64(b + 4);
    s.len = len;
    s.line = b + SLOT_HEAD;
    return s;
}

/* The slot holding the content of a two-slot file (-1: none valid). */
static int slot_best(const uint8_t *file, struct slot *out)
{
    struct slot a = slot_parse(file), b = slot_parse(file + STATE_FILE_SLOT_BYTES);
    if (!a.valid && !b.valid)
        return -1;
    int i = !a.valid ? 1 : !b.valid ? 0 : b.seq > a.seq ? 1 : 0;
    *out = i == 0 ? a : b;
    return i;
}

/* Encodes a slot at b; its bytes. */
static size_t slot_encode(uint8_t *b, uint64_t seq, const char *line, int n)
{
    memcpy(b, SLOT_MAGIC, 4);
    lm_put_be64(b + 4, seq);
    b[12] = (uint8_t)((unsigned)n >> 8);
    b[13] = (uint8_t)n;
    memcpy(b + SLOT_HEAD, line, (size_t)n);
    lm_put_be32(b + SLOT_HEAD + n, crc32c_update(0, b, SLOT_HEAD + (size_t)n));
    return SLOT_HEAD + (size_t)n + 4;
}

/* Reads up to cap bytes from offset 0; the count, or -1. */
static ssize_t read_upto(int fd, uint8_t *buf, size_t cap)
{
    size_t got = 0;
    while (got < cap) {
        ssize_t r = pread(fd, buf + got, cap - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static int full_or_io(int err)
{
    return err == ENOSPC || err == EDQUOT ? LM_E_FULL : LM_E_IO;
}

/* Writes b[0..len) at offset at (a short write is a full disk). */
static int write_at(int fd, const uint8_t *b, size_t len, off_t at)
{
    size_t done = 0;
    while (done < len) {
        ssize_t w = pwrite(fd, b + done, len - done, at + (off_t)done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w == 0 ? LM_E_FULL : full_or_io(errno);
        done += (size_t)w;
    }
    return 0;
}

int state_file_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return LM_E_IO;
    int rc = fsync(fd) == 0 ? 0 : LM_E_IO;
    close(fd);
    return rc;
}

/* ---- staged writes (state_file.h) ---- */

static int staged_paths(const char *dir, const char *name, char *path, char *tmp)
{
    if (snprintf(path, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX ||
        snprintf(tmp, PATH_MAX, "%s/%s.tmp", dir, name) >= PATH_MAX)
        return LM_E_TOO_LARGE;
    return 0;
}

int state_file_stage(const char *dir, const char *name, const char *line, int n,
                     struct state_file_staged *st, int *fd_out)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    *fd_out = -1;
    st->create = 0;
    if (n <= 0 || n > STATE_FILE_LINE_MAX || staged_paths(dir, name, path, tmp) != 0)
        return LM_E_TOO_LARGE;
    uint8_t file[FILE_BYTES]; /* 8 KiB on the caller's stack */
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 && errno != ENOENT)
        return LM_E_IO;
    if (fd >= 0) {
        ssize_t got = read_upto(fd, file, sizeof(file));
        struct slot best;
        int i = got == (ssize_t)sizeof(file) ? slot_best(file, &best) : -1;
        if (got < 0) {
            close(fd);
            return LM_E_IO;
        }
        if (i >= 0) {
            uint8_t rec[SLOT_HEAD + STATE_FILE_LINE_MAX + 4];
            size_t len = slot_encode(rec, best.seq + 1, line, n);
            int rc = write_at(fd, rec, len, i == 0 ? STATE_FILE_SLOT_BYTES : 0);
            if (rc != 0) {
                close(fd);
                return rc;
            }
            *fd_out = fd;
            return 0;
        }
        close(fd); /* the older format or no valid slot: rewritten whole */
    }
    memset(file, 0, sizeof(file));
    slot_encode(file, 1, line, n);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return full_or_io(errno);
    int rc = write_at(fd, file, sizeof(file), 0);
    if (rc != 0) {
        close(fd);
        unlink(tmp);
        return rc;
    }
    *fd_out = fd;
    st->create = 1;
    return 0;
}

int state_file_commit(const char *dir, const char *name, struct state_file_staged *st)
{
    if (!st->create)
        return 0;
    char path[PATH_MAX], tmp[PATH_MAX];
    int rc = staged_paths(dir, name, path, tmp);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = full_or_io(errno);
    if (rc != 0) {
        if (staged_paths(dir, name, path, tmp) == 0)
            unlink(tmp);
        return rc;
    }
    return 1; /* the rename is durable once the directory is */
}

void state_file_abort(const char *dir, const char *name, struct state_file_staged *st)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    if (st->create && staged_paths(dir, name, path, tmp) == 0)
        unlink(tmp);
    st->create = 0;
}

int state_file_write(const char *dir, const char *name, const char *line, int n)
{
    return state_file_write_dir(dir, name, line, n, 0);
}

int state_file_write_dir(const char *dir, const char *name, const char *line, int n, int sync_dir)
{
    /* the staged write, synced here: fdatasync of the file, then (a new file renamed into
     * place) its directory, since a vote a crash could forget would let this node vote twice
     * in one term */
    struct state_file_staged st;
    int fd;
    int rc = state_file_stage(dir, name, line, n, &st, &fd);
    if (rc != 0)
        return rc;
    if (fdatasync(fd) != 0)
        rc = full_or_io(errno);
    if (close(fd) != 0 && rc == 0)
        rc = LM_E_IO;
    if (rc != 0) {
        state_file_abort(dir, name, &st);
        return rc;
    }
    rc = state_file_commit(dir, name, &st);
    return rc == 1 || (rc == 0 && sync_dir) ? state_file_fsync_dir(dir) : rc;
}

int state_file_read(const char *path, char *out, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? LM_E_NOT_FOUND : LM_E_IO;
    uint8_t file[FILE_BYTES]; /* 8 KiB on the caller's stack */
    ssize_t got = read_upto(fd, file, sizeof(file));
    close(fd);
    if (got < 0)
        return LM_E_IO;
    struct slot best;
    const uint8_t *line = NULL;
    size_t len = 0;
    if (got == (ssize_t)sizeof(file) && slot_best(file, &best) >= 0) {
        line = best.line;
        len = best.len;
    } else if (got > 0 && got <= STATE_FILE_LINE_MAX &&
               (got < 4 || memcmp(file, SLOT_MAGIC, 4) != 0)) {
        line = file; /* the older format: the line itself, written whole through a rename */
        len = (size_t)got;
    } else {
        return LM_E_CORRUPT;
    }
    if (len + 1 > cap)
        return LM_E_TOO_LARGE;
    memcpy(out, line, len);
    out[len] = '\0';
    return 0;
}
