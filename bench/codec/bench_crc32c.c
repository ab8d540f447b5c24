/* CRC-32C and codec throughput.
 *
 * Part 1: CRC-32C GB/s of the SSE4.2 path and the slicing-by-8 table path, against two plain
 * references measured in the same run: a byte-at-a-time table and a bit-at-a-time loop.
 * Part 2: compress/decompress MB/s (of uncompressed bytes) per codec for the records section of
 * a 1 MiB batch of 1 KiB records, with the ratio to memcpy of the same bytes.
 *
 * Usage: bench_crc32c [seconds_per_case, default 0.5]. Figures only; nothing is asserted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/lm_err.h"
#include "protocol/compress.h"
#include "protocol/crc32c.h"
#include "protocol/records.h"

static double bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint32_t ref_table[256];

static void ref_table_init(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        ref_table[b] = c;
    }
}

static uint32_t ref_bytewise(uint32_t crc, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = ref_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

static uint32_t ref_bitwise(uint32_t crc, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

/* Results land here so the compiler cannot drop the loops being timed. */
static volatile uint32_t bench_sink;

/* Bytes per second of f over buf[0..n), repeated for about `secs`. */
static double bench_crc(crc_fn f, const uint8_t *buf, size_t n, double secs, uint32_t *out)
{
    uint64_t bytes = 0;
    uint32_t c = 0;
    double t0 = bench_now_s(), t;
    do {
        for (int i = 0; i < 16; i++) {
            c = f(c, buf, n);
            bytes += n;
        }
        t = bench_now_s();
    } while (t - t0 < secs);
    *out = c;
    bench_sink ^= c;
    return (double)bytes / (t - t0);
}

static void part_crc(double secs)
{
    static const size_t sizes[] = {64, 1024, 64 * 1024, 1024 * 1024};
    size_t maxn = 1024 * 1024;
    uint8_t *buf = malloc(maxn);
    for (size_t i = 0; i < maxn; i++)
        buf[i] = (uint8_t)(i * 2654435761u >> 13);
    ref_table_init();
    int hw = crc32c_hw_available();
    printf("CRC-32C (GB/s; ratios against the byte-at-a-time table in the same run)\n");
    printf("%10s %10s %10s %10s %10s %10s %10s\n", "size", "hw", "slice8", "bytewise", "bitwise",
           "hw/byte", "slice8/byte");
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t n = sizes[s];
        uint32_t c1 = 0, c2, c3, c4;
        double hw_bps = hw ? bench_crc(crc32c_update_hw, buf, n, secs, &c1) : 0;
        double tb = bench_crc(crc32c_update_table, buf, n, secs, &c2);
        double by = bench_crc(ref_bytewise, buf, n, secs, &c3);
        double bi = bench_crc(ref_bitwise, buf, n, secs / 2, &c4);
        /* Chained CRCs differ by run length; compare one pass of each instead. */
        uint32_t want = ref_bytewise(0, buf, n);
        if (crc32c_update_table(0, buf, n) != want || (hw && crc32c_update_hw(0, buf, n) != want)) {
            fprintf(stderr, "CRC mismatch at size %zu\n", n);
            exit(1);
        }
        bench_sink ^= c1 ^ c2 ^ c3 ^ c4;
        printf("%10zu %10.2f %10.2f %10.2f %10.2f %9.1fx %9.1fx\n", n, hw_bps / 1e9, tb / 1e9,
               by / 1e9, bi / 1e9, hw_bps / by, tb / by);
    }
    if (!hw)
        printf("(no SSE4.2 on this CPU: hw column not measured)\n");
    free(buf);
}

/* 1 MiB of 1 KiB records: JSON-ish text with varying numbers, like typical event payloads. */
static uint8_t *make_records(size_t *size)
{
    struct kafka_batch_builder b;
    kafka_batch_builder_init(&b, 0, 1700000000000LL);
    char value[1024];
    uint32_t seed = 42;
    for (int i = 0; i < 1024; i++) {
        int n = 0;
        while (n < (int)sizeof(value) - 80) {
            seed = seed * 1103515245u + 12345u;
            n += snprintf(value + n, sizeof(value) - (size_t)n,
                          "{\"id\":%d,\"user\":\"u%u\",\"amount\":%u.%02u,\"ok\":%s},", i,
                          (seed >> 8) % 100000, (seed >> 4) % 10000, seed % 100,
                          (seed & 1) ? "true" : "false");
        }
        memset(value + n, ' ', sizeof(value) - (size_t)n);
        char key[16];
        int kl = snprintf(key, sizeof(key), "k%d", i % 64);
        if (kafka_batch_builder_append(&b, 1700000000000LL + i, key, kl, value, sizeof(value), NULL,
                                       0) != 0)
            exit(1);
    }
    uint8_t *copy = malloc(b.size);
    memcpy(copy, b.buf, b.size);
    *size = b.size;
    kafka_batch_builder_deinit(&b);
    return copy;
}

static void part_codecs(double secs)
{
    size_t n;
    uint8_t *src = make_records(&n);
    uint8_t *dst = malloc(n);
    printf("\ncodecs on a %zu-byte records section (1024 records of 1 KiB); MB/s of "
           "uncompressed bytes, ratio against memcpy in the same run\n",
           n);
    printf("%8s %10s %8s %12s %12s %10s %10s\n", "codec", "compressed", "ratio", "compress",
           "decompress", "c/memcpy", "d/memcpy");
    double t0 = bench_now_s(), t;
    uint64_t bytes = 0;
    do {
        memcpy(dst, src, n);
        __asm__ volatile("" : : "r"(dst) : "memory");
        bytes += n;
        t = bench_now_s();
    } while (t - t0 < secs);
    double memcpy_bps = (double)bytes / (t - t0);
    printf("%8s %10zu %8.2f %12.0f %12.0f %10s %10s\n", "memcpy", n, 1.0, memcpy_bps / 1e6,
           memcpy_bps / 1e6, "1", "1");
    for (int c = 1; c <= KAFKA_CODEC_ZSTD; c++) {
        uint8_t *cz = NULL;
        size_t clen = 0;
        bytes = 0;
        t0 = bench_now_s();
        do {
            free(cz);
            if (kafka_compress((enum kafka_codec)c, src, n, &cz, &clen) != 0)
                exit(1);
            bytes += n;
            t = bench_now_s();
        } while (t - t0 < secs);
        double c_bps = (double)bytes / (t - t0);
        bytes = 0;
        t0 = bench_now_s();
        do {
            size_t got;
            if (kafka_decompress((enum kafka_codec)c, cz, clen, dst, n, &got) != 0 || got != n)
                exit(1);
            bytes += n;
            t = bench_now_s();
        } while (t - t0 < secs);
        double d_bps = (double)bytes / (t - t0);
        if (memcmp(dst, src, n) != 0)
            exit(1);
        printf("%8s %10zu %8.2f %12.0f %12.0f %9.3fx %9.3fx\n",
               kafka_codec_name((enum kafka_codec)c), clen, (double)n / (double)clen, c_bps / 1e6,
               d_bps / 1e6, c_bps / memcpy_bps, d_bps / memcpy_bps);
        free(cz);
    }
    free(dst);
    free(src);
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 0.5;
    if (secs <= 0)
        secs = 0.5;
    /* Figures depend on what else runs: print the load they were taken under. */
    FILE *la = fopen("/proc/loadavg", "r");
    char load[64] = "?";
    if (la != NULL) {
        if (fgets(load, sizeof(load), la) == NULL)
            strcpy(load, "?\n");
        fclose(la);
    }
    printf("loadavg at start: %s", load);
    part_crc(secs);
    part_codecs(secs);
    return 0;
}
