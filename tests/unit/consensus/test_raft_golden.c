/* Golden transcripts in the etcd raft style (consensus/testdata, datadriven format).
 *
 * Each file is a list of blocks:
 *     command args...
 *     ----
 *     expected output (no blank lines; "ok" when empty)
 *     <blank line>
 * Lines starting with '#' between blocks are comments. The test replays every command on a
 * fresh harness cluster and diffs the trace against the expected text. To regenerate after an
 * intended behaviour change, run with RAFT_GOLDEN_REWRITE=1 and review the diff in git.
 *
 * Commands: cluster nodes=N voters=V [pre-vote=0] [check-quorum=0] | campaign ID |
 * tick ID N | tick-all N (tick every node, then stabilize; N times) | tick-heartbeat ID |
 * stabilize | deliver | propose ID DATA [COUNT] | transfer ID TO | conf ID
 * add-learner|promote|remove NODE | isolate ID | heal | crash ID | restart ID | compact ID INDEX |
 * hold-disk ID | flush-disk ID | status | log ID */
#define _GNU_SOURCE
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/lm_err.h"
#include "raft_harness.h"

#ifndef CONSENSUS_TESTDATA_DIR
#error "CONSENSUS_TESTDATA_DIR must be defined"
#endif

struct golden {
    struct harness h;
    bool have;
};

static int arg_int(char **tok, int n, int i)
{
    if (i >= n)
        return -1;
    return atoi(tok[i]);
}

static bool kv_bool(char **tok, int n, const char *key, bool dflt)
{
    size_t kl = strlen(key);
    for (int i = 1; i < n; i++)
        if (!strncmp(tok[i], key, kl) && tok[i][kl] == '=')
            return atoi(tok[i] + kl + 1) != 0;
    return dflt;
}

static int kv_int(char **tok, int n, const char *key, int dflt)
{
    size_t kl = strlen(key);
    for (int i = 1; i < n; i++)
        if (!strncmp(tok[i], key, kl) && tok[i][kl] == '=')
            return atoi(tok[i] + kl + 1);
    return dflt;
}

static void report(FILE *out, int rc)
{
    if (rc)
        fprintf(out, "error: %s\n", lm_errname(rc));
}

/* Run one command; its trace goes to out. */
static void run_cmd(struct golden *g, char *line, FILE *out)
{
    char *tok[16];
    int n = 0;
    for (char *s = strtok(line, " \t"); s && n < 16; s = strtok(NULL, " \t"))
        tok[n++] = s;
    if (n == 0)
        return;
    struct harness *h = &g->h;
    h->out = out;
    const char *c = tok[0];
    if (!strcmp(c, "cluster")) {
        if (g->have)
            h_deinit(h);
        h_init(h, (uint32_t)kv_int(tok, n, "nodes", 3), (uint32_t)kv_int(tok, n, "voters", 3),
               kv_bool(tok, n, "pre-vote", true), kv_bool(tok, n, "check-quorum", true), out);
        g->have = true;
        return;
    }
    assert_true(g->have);
    int id = arg_int(tok, n, 1);
    if (!strcmp(c, "campaign")) {
        report(out, raft_campaign(h->nodes[id].r));
        h_process(h, (uint32_t)id);
    } else if (!strcmp(c, "tick")) {
        for (int i = 0; i < arg_int(tok, n, 2); i++)
            report(out, h_tick(h, (uint32_t)id));
    } else if (!strcmp(c, "tick-heartbeat")) {
        report(out, h_tick(h, (uint32_t)id));
    } else if (!strcmp(c, "tick-all")) {
        /* one tick on every node, then deliver until quiet; repeat */
        for (int i = 0; i < arg_int(tok, n, 1); i++) {
            for (uint32_t k = 1; k <= h->n; k++)
                if (h->nodes[k].up)
                    report(out, h_tick(h, k));
            h_stabilize(h);
        }
    } else if (!strcmp(c, "stabilize")) {
        h_stabilize(h);
    } else if (!strcmp(c, "deliver")) {
        h_deliver_all(h);
    } else if (!strcmp(c, "propose")) {
        int64_t last;
        uint32_t count = n > 3 ? (uint32_t)atoi(tok[3]) : 1;
        int rc = raft_propose(h->nodes[id].r, tok[2], (uint32_t)strlen(tok[2]), count, &last);
        report(out, rc);
        h_process(h, (uint32_t)id);
    } else if (!strcmp(c, "transfer")) {
        report(out, raft_transfer_leader(h->nodes[id].r, (uint32_t)arg_int(tok, n, 2)));
        h_process(h, (uint32_t)id);
    } else if (!strcmp(c, "conf")) {
        enum raft_conf_op op = !strcmp(tok[2], "add-learner") ? RAFT_CONF_ADD_LEARNER
                               : !strcmp(tok[2], "promote")   ? RAFT_CONF_PROMOTE
                                                              : RAFT_CONF_REMOVE;
        report(out, raft_propose_conf(h->nodes[id].r, op, (uint32_t)arg_int(tok, n, 3)));
        h_process(h, (uint32_t)id);
    } else if (!strcmp(c, "isolate")) {
        h_isolate(h, (uint32_t)id);
    } else if (!strcmp(c, "heal")) {
        h_heal(h);
    } else if (!strcmp(c, "crash")) {
        h_crash(h, (uint32_t)id);
    } else if (!strcmp(c, "restart")) {
        h_restart(h, (uint32_t)id);
    } else if (!strcmp(c, "compact")) {
        report(out, h_compact(h, (uint32_t)id, arg_int(tok, n, 2)));
    } else if (!strcmp(c, "hold-disk")) {
        h->nodes[id].hold_persist = true;
    } else if (!strcmp(c, "flush-disk")) {
        h->nodes[id].hold_persist = false;
        h_flush_disk(h, (uint32_t)id);
    } else if (!strcmp(c, "status")) {
        h_status(h);
    } else if (!strcmp(c, "log")) {
        h_print_log(h, (uint32_t)id);
    } else {
        fail_msg("unknown command %s", c);
    }
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    size_t got = fread(buf, 1, (size_t)len, f);
    buf[got] = 0;
    fclose(f);
    return buf;
}

/* Replays one file; returns the number of mismatching blocks. Writes the actual transcript to
 * `actual` (same format) for rewrite mode. */
static int replay(const char *path, FILE *actual)
{
    char *text = slurp(path);
    assert_non_null(text);
    struct golden g = {0};
    int mismatches = 0;
    char *p = text;
    while (*p) {
        char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        char line[512];
        assert_true(len < sizeof(line));
        memcpy(line, p, len);
        line[len] = 0;
        p += len + (eol ? 1 : 0);
        if (len == 0 || line[0] == '#') {
            fprintf(actual, "%s\n", line);
            continue;
        }
        /* command, then "----", then expected lines up to a blank line */
        char cmd[512];
        strcpy(cmd, line);
        char *sep = strchr(p, '\n');
        assert_non_null(sep);
        assert_true(!strncmp(p, "----", 4));
        p = sep + 1;
        char *end = strstr(p, "\n\n");
        size_t elen = end ? (size_t)(end - p) + 1 : strlen(p);
        char *expected = strndup(p, elen);
        p += elen;
        char *out_buf = NULL;
        size_t out_len = 0;
        FILE *out = open_memstream(&out_buf, &out_len);
        char cmd_copy[512];
        strcpy(cmd_copy, cmd);
        run_cmd(&g, cmd_copy, out);
        fclose(out);
        if (out_len == 0) {
            free(out_buf);
            out_buf = strdup("ok\n");
        }
        if (strcmp(out_buf, expected) != 0) {
            mismatches++;
            fprintf(stderr, "%s: mismatch after '%s'\n--- expected\n%s--- actual\n%s", path, cmd,
                    expected, out_buf);
        }
        fprintf(actual, "%s\n----\n%s", cmd, out_buf);
        free(out_buf);
        free(expected);
    }
    if (g.have)
        h_deinit(&g.h);
    free(text);
    return mismatches;
}

static void test_golden_files(void **state)
{
    (void)state;
    DIR *d = opendir(CONSENSUS_TESTDATA_DIR);
    assert_non_null(d);
    bool rewrite = getenv("RAFT_GOLDEN_REWRITE") != NULL;
    int files = 0, bad = 0;
    struct dirent *de;
    char *names[64];
    int nn = 0;
    while ((de = readdir(d)) && nn < 64) {
        size_t l = strlen(de->d_name);
        if (l > 4 && !strcmp(de->d_name + l - 4, ".txt"))
            names[nn++] = strdup(de->d_name);
    }
    closedir(d);
    for (int i = 0; i < nn; i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", CONSENSUS_TESTDATA_DIR, names[i]);
        char *abuf = NULL;
        size_t alen = 0;
        FILE *actual = open_memstream(&abuf, &alen);
        int m = replay(path, actual);
        fclose(actual);
        if (rewrite && m) {
            FILE *f = fopen(path, "wb");
            assert_non_null(f);
            fwrite(abuf, 1, alen, f);
            fclose(f);
            fprintf(stderr, "rewrote %s\n", path);
        } else {
            bad += m;
        }
        files++;
        free(abuf);
        free(names[i]);
    }
    assert_true(files >= 5);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_golden_files)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
