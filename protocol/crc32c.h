/* CRC-32C (Castagnoli), the checksum of Kafka record batches v2. */
#ifndef LAMINAR_PROTOCOL_CRC32C_H
#define LAMINAR_PROTOCOL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* crc32c_update continues a CRC-32C: crc32c_update(0, buf, len) is the CRC of buf. Uses the
 * SSE4.2 crc32 instruction when the CPU has it, else a table implementation. */
uint32_t crc32c_update(uint32_t crc, const void *buf, size_t len);
/* The two implementations, exposed for tests and benchmarks. */
uint32_t crc32c_update_table(uint32_t crc, const void *buf, size_t len);
uint32_t crc32c_update_hw(uint32_t crc, const void *buf,
                          size_t len); /* only if crc32c_hw_available() */
int crc32c_hw_available(void);

#endif
