#include "storage_test_util.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/record_batch.h"
#include "protocol/records.h"

void tu_mkdtemp(char *out, const char *tag)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(out, PATH_MAX, "%s/lm-storage-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
    LM_ASSERT(mkdtemp(out) != NULL);
}

void tu_rm_rf(const char *path)
{
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char child[PATH_MAX];
            snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
            if (e->d_type == DT_DIR)
                tu_rm_rf(child);
            else
                unlink(child);
        }
        closedir(d);
    }
    rmdir(path);
}

static void fill_value(uint8_t *v, size_t n, int64_t tag)
{
    uint64_t x = (uint64_t)tag * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        if (i < 8) {
            v[i] = (uint8_t)((uint64_t)tag >> (56 - 8 * i));
            continue;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v[i] = (uint8_t)x;
    }
}

void tu_build_batch(int32_t records, size_t value_bytes, int64_t first_tag, int64_t ts,
                    uint8_t **out, size_t *len)
{
    LM_ASSERT(value_bytes >= 8 && records > 0);
    struct kafka_batch_builder b;
    kafka_batch_builder_init(&b, 0, ts);
    uint8_t *v = malloc(value_bytes);
    LM_ASSERT(v != NULL);
    for (int32_t i = 0; i < records; i++) {
        fill_value(v, value_bytes, first_tag + i);
        LM_ASSERT(
            kafka_batch_builder_append(&b, ts + i, "k", 1, v, (int32_t)value_bytes, NULL, 0) == 0);
    }
    free(v);
    LM_ASSERT(kafka_batch_builder_finish(&b, KAFKA_CODEC_NONE, out, len) == 0);
    kafka_batch_builder_deinit(&b);
}

int tu_check_batch(const uint8_t *buf, size_t len, int tags_are_offsets)
{
    struct kafka_batch_header h;
    int rc = kafka_batch_validate(buf, len, 64u << 20, &h);
    if (rc != 0)
        return rc;
    if (!tags_are_offsets)
        return 0;
    struct kafka_batch_reader r;
    rc = kafka_batch_reader_open(&r, buf, len, 64u << 20);
    if (rc != 0)
        return rc;
    struct kafka_record_iter it;
    struct kafka_record rec;
    kafka_batch_reader_iter(&r, &it);
    int out = 0;
    uint8_t *expect = NULL;
    while ((rc = kafka_record_iter_next(&it, &rec)) == 1) {
        int64_t tag = h.base_offset + rec.offset_delta;
        expect = realloc(expect, (size_t)rec.value_len + 1);
        fill_value(expect, (size_t)rec.value_len, tag);
        if (rec.value_len < 8 || memcmp(expect, rec.value, (size_t)rec.value_len) != 0) {
            out = LM_E_CORRUPT;
            break;
        }
    }
    if (rc < 0)
        out = rc;
    free(expect);
    kafka_batch_reader_close(&r);
    return out;
}

int tu_read_all(struct storage_log *log, int64_t from, uint8_t **out, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    int64_t off = from;
    int rc = 0;
    while (off < storage_log_end_offset(log)) {
        struct storage_read_result res;
        rc = storage_log_read(log, off, 1 << 20, STORAGE_NO_LIMIT, &res);
        if (rc != 0)
            break;
        if (res.bytes == 0) {
            rc = LM_E_CORRUPT; /* below the end, a read must make progress */
            storage_read_result_release(log, &res);
            break;
        }
        while (n + res.bytes > cap)
            cap *= 2;
        buf = realloc(buf, cap);
        rc = storage_read_result_copy(&res, buf + n, cap - n);
        n += res.bytes;
        off = res.last_offset + 1;
        storage_read_result_release(log, &res);
        if (rc != 0)
            break;
    }
    *out = buf;
    *len = n;
    return rc;
}

int64_t tu_clock_now(void *ctx)
{
    return ((struct tu_clock *)ctx)->now_ms;
}

void tu_report(void *ctx, int level, const char *msg)
{
    struct tu_reports *r = ctx;
    r->count++;
    r->warnings += level > 0;
    snprintf(r->last, sizeof(r->last), "%s", msg);
    if (getenv("STORAGE_TEST_VERBOSE"))
        fprintf(stderr, "report: %s\n", msg);
}

int tu_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (d == NULL)
        return -1;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the DIR's own fd */
}
