/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of record batch v2
 * (KIP-98). Two implementations: slicing-by-8 tables (Intel's "slicing-by-8", Kounavis and
 * Berry 2005) and the SSE4.2 crc32 instruction, chosen once at run time. */
#include "protocol/crc32c.h"

#include <pthread.h>
#include <string.h>

#include "common/lm_assert.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#define CRC32C_POLY_REFLECTED 0x82F63B78u

/* crc32c_table[k][b]: CRC of byte b followed by k zero bytes; row 0 is the classic table. */
static uint32_t crc32c_table[8][256];
static pthread_once_t crc32c_table_once = PTHREAD_ONCE_INIT;

static void crc32c_table_build(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int i = 0; i < 8; i++)
            c = (c >> 1) ^ (CRC32C_POLY_REFLECTED & (0u - (c & 1u)));
        crc32c_table[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = crc32c_table[0][b];
        for (int k = 1; k < 8; k++) {
            c = crc32c_table[0][c & 0xFF] ^ (c >> 8);
            crc32c_table[k][b] = c;
        }
    }
    /* Spot checks: byte 0x80 reaches bit 0 after 7 shifts, so its entry is the polynomial;
     * entry 1 is the published first non-zero entry of the Castagnoli table. */
    LM_ASSERT(crc32c_table[0][1] == 0xF26B8303u);
    LM_ASSERT(crc32c_table[0][128] == CRC32C_POLY_REFLECTED);
}

static inline uint64_t crc32c_load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v)); /* x86 and every target we build on are little-endian */
    return v;
}

uint32_t crc32c_update_table(uint32_t crc, const void *buf, size_t len)
{
    LM_ASSERT(buf != NULL || len == 0);
    int rc = pthread_once(&crc32c_table_once, crc32c_table_build);
    LM_ASSERT(rc == 0);
    const uint8_t *p = buf;
    uint32_t c = ~crc;
    /* Byte steps until p is 8-aligned, so the wide loads below are aligned. */
    while (len > 0 && ((uintptr_t)p & 7u) != 0) {
        c = crc32c_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
        len--;
    }
    while (len >= 8) {
        uint64_t v = crc32c_load_le64(p) ^ c;
        c = crc32c_table[7][v & 0xFF] ^ crc32c_table[6][(v >> 8) & 0xFF] ^
            crc32c_table[5][(v >> 16) & 0xFF] ^ crc32c_table[4][(v >> 24) & 0xFF] ^
            crc32c_table[3][(v >> 32) & 0xFF] ^ crc32c_table[2][(v >> 40) & 0xFF] ^
            crc32c_table[1][(v >> 48) & 0xFF] ^ crc32c_table[0][v >> 56];
        p += 8;
        len -= 8;
    }
    while (len > 0) {
        c = crc32c_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
        len--;
    }
    return ~c;
}

#if defined(__x86_64__)
/* The crc32 instruction has a latency of 3 cycles and a throughput of 1 per cycle, so one
 * dependency chain uses a third of the unit. Long buffers run three chains over three
 * adjacent lanes of CRC32C_LANE_BYTES and join them (Intel, "Fast CRC Computation for iSCSI
 * Polynomial Using CRC32 Instruction", 2011). Joining needs the raw CRC register advanced over
 * CRC32C_LANE_BYTES zero bytes; that map is linear over GF(2), so it is tabulated per byte of
 * the register from its 32 basis vectors. */
#define CRC32C_LANE_BYTES 2048

static uint32_t crc32c_lane_shift[4][256];
static pthread_once_t crc32c_lane_once = PTHREAD_ONCE_INIT;

static void crc32c_lane_build(void)
{
    static const uint8_t zeros[CRC32C_LANE_BYTES];
    uint32_t basis[32];
    /* Raw register r -> crc32c_update_table(~r, ...) == ~(r advanced), since the public
     * function inverts on the way in and out. */
    for (int j = 0; j < 32; j++)
        basis[j] = ~crc32c_update_table(~(1u << j), zeros, sizeof(zeros));
    for (int k = 0; k < 4; k++) {
        for (uint32_t v = 0; v < 256; v++) {
            uint32_t x = 0;
            for (int i = 0; i < 8; i++)
                if (v & (1u << i))
                    x ^= basis[8 * k + i];
            crc32c_lane_shift[k][v] = x;
        }
    }
    LM_ASSERT(crc32c_lane_shift[0][0] == 0 && crc32c_lane_shift[3][0x80] == basis[31]);
}

static inline uint32_t crc32c_lane_advance(uint32_t r)
{
    return crc32c_lane_shift[0][r & 0xFF] ^ crc32c_lane_shift[1][(r >> 8) & 0xFF] ^
           crc32c_lane_shift[2][(r >> 16) & 0xFF] ^ crc32c_lane_shift[3][r >> 24];
}

__attribute__((target("sse4.2"))) uint32_t crc32c_update_hw(uint32_t crc, const void *buf,
                                                            size_t len)
{
    LM_ASSERT(buf != NULL || len == 0);
    const uint8_t *p = buf;
    uint64_t c = (uint32_t)~crc;
    while (len > 0 && ((uintptr_t)p & 7u) != 0) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        len--;
    }
    if (len >= 3 * CRC32C_LANE_BYTES) {
        int rc = pthread_once(&crc32c_lane_once, crc32c_lane_build);
        LM_ASSERT(rc == 0);
        while (len >= 3 * CRC32C_LANE_BYTES) {
            uint64_t c0 = c, c1 = 0, c2 = 0;
            for (size_t i = 0; i < CRC32C_LANE_BYTES; i += 8) {
                c0 = _mm_crc32_u64(c0, crc32c_load_le64(p + i));
                c1 = _mm_crc32_u64(c1, crc32c_load_le64(p + CRC32C_LANE_BYTES + i));
                c2 = _mm_crc32_u64(c2, crc32c_load_le64(p + 2 * CRC32C_LANE_BYTES + i));
            }
            /* Register after lane 1 = advance(c0) ^ c1 (linearity), and so on. */
            uint32_t r = crc32c_lane_advance((uint32_t)c0) ^ (uint32_t)c1;
            c = crc32c_lane_advance(r) ^ (uint32_t)c2;
            p += 3 * CRC32C_LANE_BYTES;
            len -= 3 * CRC32C_LANE_BYTES;
        }
    }
    while (len >= 8) {
        c = _mm_crc32_u64(c, crc32c_load_le64(p));
        p += 8;
        len -= 8;
    }
    while (len > 0) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        len--;
    }
    return ~(uint32_t)c;
}

int crc32c_hw_available(void)
{
    return __builtin_cpu_supports("sse4.2") ? 1 : 0;
}
#else
uint32_t crc32c_update_hw(uint32_t crc, const void *buf, size_t len)
{
    /* Callers must check crc32c_hw_available() first; keep the answer right regardless. */
    return crc32c_update_table(crc, buf, len);
}

int crc32c_hw_available(void)
{
    return 0;
}
#endif

/* -1 unknown, 0 table, 1 hw. Racing first callers store the same value, hence relaxed. */
static int crc32c_use_hw = -1;

uint32_t crc32c_update(uint32_t crc, const void *buf, size_t len)
{
    int hw = __atomic_load_n(&crc32c_use_hw, __ATOMIC_RELAXED);
    if (__builtin_expect(hw < 0, 0)) {
        hw = crc32c_hw_available();
        __atomic_store_n(&crc32c_use_hw, hw, __ATOMIC_RELAXED);
    }
    return hw ? crc32c_update_hw(crc, buf, len) : crc32c_update_table(crc, buf, len);
}
