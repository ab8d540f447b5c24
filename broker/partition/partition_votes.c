/* The per-node ledger of replicas' Raft hard state (partition_votes.h). */
#include "broker/partition/partition_votes.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker/partition/state_file.h"
#include "common/lm_err.h"

/* "term vote\n" from path; 0, LM_E_NOT_FOUND when missing, LM_E_CORRUPT, LM_E_IO. */
static int read_state(const char *path, uint64_t *term, uint32_t *vote)
{
    char line[STATE_FILE_LINE_MAX + 1];
    int rc = state_file_read(path, line, sizeof(line));
    if (rc)
        return rc;
    return sscanf(line, "%" SCNu64 " %" SCNu32, term, vote) == 2 ? 0 : LM_E_CORRUPT;
}

/* dir/name := "term vote\n", durably. */
static int write_state(const char *dir, const char *name, uint64_t term, uint32_t vote)
{
    char line[64];
    int n = snprintf(line, sizeof(line), "%" PRIu64 " %" PRIu32 "\n", term, vote);
    return state_file_write(dir, name, line, n);
}

/* mkdir dir; a new entry is made durable through its parent. */
static int make_dir(const char *dir)
{
    if (mkdir(dir, 0755) != 0)
        return errno == EEXIST ? 0 : LM_E_IO;
    char parent[PATH_MAX];
    if (snprintf(parent, sizeof(parent), "%s", dir) >= (int)sizeof(parent))
        return LM_E_TOO_LARGE;
    char *slash = strrchr(parent, '/');
    if (slash == NULL)
        return state_file_fsync_dir(".");
    if (slash == parent)
        slash[1] = '\0';
    else
        *slash = '\0';
    return state_file_fsync_dir(parent);
}

int partition_votes_save(const char *ledger_dir, const char *key, const char *part_dir)
{
    char qs[PATH_MAX], entry[PATH_MAX];
    if (snprintf(qs, sizeof(qs), "%s/%s", part_dir, PARTITION_QUORUM_STATE) >= (int)sizeof(qs) ||
        snprintf(entry, sizeof(entry), "%s/%s", ledger_dir, key) >= (int)sizeof(entry))
        return LM_E_TOO_LARGE;
    uint64_t term, kept_term;
    uint32_t vote, kept_vote;
    int rc = read_state(qs, &term, &vote);
    if (rc == LM_E_NOT_FOUND)
        return 0; /* never voted nor saw a term here */
    if (rc != 0)
        return rc;
    rc = read_state(entry, &kept_term, &kept_vote);
    if (rc == 0 && kept_term > term)
        return 0;
    if (rc != 0 && rc != LM_E_NOT_FOUND && rc != LM_E_CORRUPT)
        return rc;
    if ((rc = make_dir(ledger_dir)) != 0)
        return rc;
    return write_state(ledger_dir, key, term, vote);
}

int partition_votes_restore(const char *ledger_dir, const char *key, const char *part_dir)
{
    char qs[PATH_MAX], entry[PATH_MAX];
    if (snprintf(qs, sizeof(qs), "%s/%s", part_dir, PARTITION_QUORUM_STATE) >= (int)sizeof(qs) ||
        snprintf(entry, sizeof(entry), "%s/%s", ledger_dir, key) >= (int)sizeof(entry))
        return LM_E_TOO_LARGE;
    uint64_t term;
    uint32_t vote;
    int rc = read_state(entry, &term, &vote);
    if (rc == LM_E_NOT_FOUND)
        return 0;
    if (rc != 0)
        return rc;
    if (access(qs, F_OK) == 0)
        return 0; /* the directory has its own, newer or equal */
    if ((rc = make_dir(part_dir)) != 0)
        return rc;
    return write_state(part_dir, PARTITION_QUORUM_STATE, term, vote);
}
