/* The vote ledger (broker/partition/partition_votes.h): a replica's Raft term and vote kept
 * when its directory goes and given back when it is created again. */
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

#include "broker/partition/partition_votes.h"
#include "broker/partition/state_file.h"
#include "common/lm_err.h"
#include "tests/unit/storage/storage_test_util.h"

static void put(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int get(const char *dir, const char *name, char *out, size_t cap)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return state_file_read(path, out, cap) == 0 ? 0 : -1;
}

static void test_save_then_restore(void **state)
{
    (void)state;
    char root[PATH_MAX], part[PATH_MAX + 32], ledger[PATH_MAX + 32], buf[64];
    tu_mkdtemp(root, "votes");
    snprintf(part, sizeof(part), "%s/sim-2", root);
    snprintf(ledger, sizeof(ledger), "%s/__laminar_votes", root);
    assert_int_equal(mkdir(part, 0755), 0);

    /* A replica that never saw a term keeps nothing. */
    assert_int_equal(partition_votes_save(ledger, "id-2", part), 0);
    assert_int_not_equal(access(ledger, F_OK), 0);

    /* It voted for raft id 4 in term 3; its directory goes. */
    put(part, PARTITION_QUORUM_STATE, "3 4\n");
    assert_int_equal(partition_votes_save(ledger, "id-2", part), 0);
    tu_rm_rf(part);

    /* Created again: it starts from term 3 and its vote, not from term 0. */
    assert_int_equal(partition_votes_restore(ledger, "id-2", part), 0);
    assert_int_equal(get(part, PARTITION_QUORUM_STATE, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "3 4\n");

    /* A directory with a hard state of its own keeps it. */
    put(part, PARTITION_QUORUM_STATE, "5 0\n");
    assert_int_equal(partition_votes_restore(ledger, "id-2", part), 0);
    assert_int_equal(get(part, PARTITION_QUORUM_STATE, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "5 0\n");

    /* The ledger never goes back to a lower term. */
    assert_int_equal(partition_votes_save(ledger, "id-2", part), 0);
    put(part, PARTITION_QUORUM_STATE, "4 2\n");
    assert_int_equal(partition_votes_save(ledger, "id-2", part), 0);
    assert_int_equal(get(ledger, "id-2", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "5 0\n");

    /* Another replica (key) is not touched, and one with no entry gets nothing. */
    char other[PATH_MAX + 32];
    snprintf(other, sizeof(other), "%s/sim-7", root);
    assert_int_equal(partition_votes_restore(ledger, "id-7", other), 0);
    assert_int_not_equal(access(other, F_OK), 0);

    /* A damaged quorum-state is not copied over a good entry. */
    put(part, PARTITION_QUORUM_STATE, "garbage\n");
    assert_int_equal(partition_votes_save(ledger, "id-2", part), LM_E_CORRUPT);
    assert_int_equal(get(ledger, "id-2", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "5 0\n");
    tu_rm_rf(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_save_then_restore),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
