/* SPDX-License-Identifier: BSD-3-Clause */
/* CRC32C (Castagnoli), as used by every on-media record. */
#ifndef PC_CRC_H
#define PC_CRC_H

#include <stddef.h>
#include <stdint.h>

uint32_t pc_crc32c (const void *buf, size_t len);
/* Continue a CRC32C over more bytes (pc_crc32c = pc_crc32c_cont (0, ...)). */
uint32_t pc_crc32c_cont (uint32_t crc, const void *buf, size_t len);

/* CRC of a record whose first 4 bytes hold the CRC itself. */
static inline uint32_t
pc_rec_crc (const void *rec, size_t len)
{
  return pc_crc32c ((const char *) rec + 4, len - 4);
}

#endif /* PC_CRC_H */
