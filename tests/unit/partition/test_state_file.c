/* Small state files rewritten in place in two slots (broker/partition/state_file.h). */
#define _GNU_SOURCE /* syncfs */
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker/partition/state_file.h"
#include "common/lm_err.h"
#include "tests/unit/storage/storage_test_util.h"

struct fx {
    char root[PATH_MAX];
    char path[PATH_MAX + 32];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    tu_mkdtemp(f->root, "statefile");
    snprintf(f->path, sizeof(f->path), "%s/quorum-state", f->root);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    tu_rm_rf(f->root);
    free(f);
    return 0;
}

static void put_raw(const char *path, const void *b, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b, n), (ssize_t)n);
    close(fd);
}

static void expect_line(const char *path, const char *want)
{
    char buf[STATE_FILE_LINE_MAX + 1];
    assert_int_equal(state_file_read(path, buf, sizeof(buf)), 0);
    assert_string_equal(buf, want);
}

static ino_t inode_of(const char *path, off_t *size)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    *size = st.st_size;
    return st.st_ino;
}

/* Breaks one byte of the slot at offset at (as a write torn by a crash would). */
static void damage(const char *path, off_t at)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, at + 20), 1);
    b ^= 0x5a;
    assert_int_equal(pwrite(fd, &b, 1, at + 20), 1);
    close(fd);
}

/* Created once, then rewritten in place: same inode, same size, no temporary file left; the
 * latest write is what reads give, whichever slot holds it. */
static void test_rewritten_in_place(void **state)
{
    struct fx *f = *state;
    char buf[64];
    assert_int_equal(state_file_read(f->path, buf, sizeof(buf)), LM_E_NOT_FOUND);
    assert_int_equal(state_file_write(f->root, "quorum-state", "1 0\n", 4), 0);
    expect_line(f->path, "1 0\n");
    off_t size;
    ino_t ino = inode_of(f->path, &size);
    assert_int_equal(size, 2 * STATE_FILE_SLOT_BYTES);
    char line[32];
    for (int t = 2; t < 40; t++) {
        int n = snprintf(line, sizeof(line), "%d %d\n", t, t % 3);
        assert_int_equal(state_file_write(f->root, "quorum-state", line, n), 0);
        expect_line(f->path, line);
        off_t s2;
        assert_true(inode_of(f->path, &s2) == ino);
        assert_int_equal(s2, 2 * STATE_FILE_SLOT_BYTES);
    }
    char tmp[PATH_MAX + 40];
    snprintf(tmp, sizeof(tmp), "%s.tmp", f->path);
    assert_int_not_equal(access(tmp, F_OK), 0);
}

/* A write torn by a crash leaves its slot failing its CRC: reads give the other slot, the
 * content last made durable, and the next write goes over the torn one. */
static void test_torn_slot(void **state)
{
    struct fx *f = *state;
    assert_int_equal(state_file_write(f->root, "quorum-state", "3 1\n", 4), 0); /* slot 0 */
    assert_int_equal(state_file_write(f->root, "quorum-state", "4 2\n", 4), 0); /* slot 1 */
    expect_line(f->path, "4 2\n");
    damage(f->path, STATE_FILE_SLOT_BYTES); /* the write of "4 2" never completed */
    expect_line(f->path, "3 1\n");
    assert_int_equal(state_file_write(f->root, "quorum-state", "5 0\n", 4), 0);
    expect_line(f->path, "5 0\n");
    damage(f->path, STATE_FILE_SLOT_BYTES); /* "5 0" went to slot 1 again */
    expect_line(f->path, "3 1\n");
    /* both slots broken: the file says nothing trustworthy */
    damage(f->path, 0);
    char buf[64];
    assert_int_equal(state_file_read(f->path, buf, sizeof(buf)), LM_E_CORRUPT);
    /* and a write starts it afresh */
    assert_int_equal(state_file_write(f->root, "quorum-state", "6 1\n", 4), 0);
    expect_line(f->path, "6 1\n");
}

/* The staged write (a batch's: written, synced by the caller, committed): a new file stays
 * under its temporary name until commit, which renames it and asks for the directory's sync
 * (1); an existing one is written in place into its other slot (0); abort leaves what was. */
static void test_staged(void **state)
{
    struct fx *f = *state;
    char tmp[PATH_MAX + 40], buf[64];
    snprintf(tmp, sizeof(tmp), "%s.tmp", f->path);
    struct state_file_staged st;
    int fd = -1;
    assert_int_equal(state_file_stage(f->root, "quorum-state", "1 2\n", 4, &st, &fd), 0);
    assert_true(fd >= 0 && st.create);
    /* closed before the sync, as a batch does with all but one descriptor per file system:
     * the written data stays in the page cache and a syncfs through another covers it */
    assert_int_equal(close(fd), 0);
    assert_int_equal(state_file_read(f->path, buf, sizeof(buf)), LM_E_NOT_FOUND);
    int dfd = open(f->root, O_RDONLY | O_DIRECTORY);
    assert_true(dfd >= 0);
    assert_int_equal(syncfs(dfd), 0); /* the caller's sync */
    assert_int_equal(state_file_commit(f->root, "quorum-state", &st), 1);
    assert_int_equal(syncfs(dfd), 0); /* the directory's */
    assert_int_equal(close(dfd), 0);
    expect_line(f->path, "1 2\n");
    assert_int_not_equal(access(tmp, F_OK), 0);
    off_t size;
    ino_t ino = inode_of(f->path, &size);
    assert_int_equal(size, 2 * STATE_FILE_SLOT_BYTES);
    /* in place from now on, alternating slots */
    char line[32];
    for (int t = 2; t < 6; t++) {
        int n = snprintf(line, sizeof(line), "%d 1\n", t);
        assert_int_equal(state_file_stage(f->root, "quorum-state", line, n, &st, &fd), 0);
        assert_false(st.create);
        assert_int_equal(close(fd), 0);
        assert_int_equal(state_file_commit(f->root, "quorum-state", &st), 0);
        expect_line(f->path, line);
        assert_true(inode_of(f->path, &size) == ino);
    }
    /* staged, its sync failed, and a crash tore it (seq 6 went to slot 1): the previous
     * content stands */
    assert_int_equal(state_file_stage(f->root, "quorum-state", "9 9\n", 4, &st, &fd), 0);
    assert_int_equal(close(fd), 0);
    state_file_abort(f->root, "quorum-state", &st);
    damage(f->path, STATE_FILE_SLOT_BYTES);
    expect_line(f->path, "5 1\n");
    /* a new file aborted leaves no file and no temporary */
    char other[PATH_MAX + 40];
    snprintf(other, sizeof(other), "%s/raft-start", f->root);
    assert_int_equal(state_file_stage(f->root, "raft-start", "7 0\n", 4, &st, &fd), 0);
    assert_int_equal(close(fd), 0);
    state_file_abort(f->root, "raft-start", &st);
    assert_int_not_equal(access(other, F_OK), 0);
    snprintf(other, sizeof(other), "%s/raft-start.tmp", f->root);
    assert_int_not_equal(access(other, F_OK), 0);
    assert_int_equal(state_file_stage(f->root, "quorum-state", "", 0, &st, &fd), LM_E_TOO_LARGE);
    assert_int_equal(fd, -1);
}

/* A file of the older format (the bare line, written through a rename) reads as it is, and
 * its first write converts it. */
static void test_older_format(void **state)
{
    struct fx *f = *state;
    put_raw(f->path, "7 3\n", 4);
    expect_line(f->path, "7 3\n");
    assert_int_equal(state_file_write(f->root, "quorum-state", "8 0\n", 4), 0);
    expect_line(f->path, "8 0\n");
    off_t size;
    (void)inode_of(f->path, &size);
    assert_int_equal(size, 2 * STATE_FILE_SLOT_BYTES);
    /* empty, or long and not ours: damaged */
    put_raw(f->path, "", 0);
    char buf[64];
    assert_int_equal(state_file_read(f->path, buf, sizeof(buf)), LM_E_CORRUPT);
    static char junk[3 * STATE_FILE_SLOT_BYTES];
    memset(junk, 'x', sizeof(junk));
    put_raw(f->path, junk, sizeof(junk));
    assert_int_equal(state_file_read(f->path, buf, sizeof(buf)), LM_E_CORRUPT);
}

static void test_bounds(void **state)
{
    struct fx *f = *state;
    static char big[STATE_FILE_LINE_MAX + 2];
    memset(big, '1', sizeof(big));
    assert_int_equal(state_file_write(f->root, "quorum-state", big, STATE_FILE_LINE_MAX + 1),
                     LM_E_TOO_LARGE);
    assert_int_equal(state_file_write(f->root, "quorum-state", big, 0), LM_E_TOO_LARGE);
    assert_int_equal(access(f->path, F_OK), -1);
    assert_int_equal(state_file_write(f->root, "quorum-state", big, STATE_FILE_LINE_MAX), 0);
    char small[8];
    assert_int_equal(state_file_read(f->path, small, sizeof(small)), LM_E_TOO_LARGE);
    /* a directory that does not exist */
    char gone[PATH_MAX + 16];
    snprintf(gone, sizeof(gone), "%s/nope", f->root);
    assert_int_not_equal(state_file_write(gone, "quorum-state", "1 0\n", 4), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rewritten_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_older_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_staged, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
