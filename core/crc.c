/* SPDX-License-Identifier: BSD-3-Clause */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <limits.h>
#include <isa-l/crc.h>

#include "crc.h"

/* Standard CRC32C: ISA-L's crc32_iscsi takes and returns the
 * uncomplemented register, so invert on the way in and out.
 */
uint32_t
pc_crc32c_cont (uint32_t prev, const void *buf, size_t len)
{
  const unsigned char *p = buf;
  uint32_t crc = prev ^ 0xffffffffu;

  while (len > 0) {
    int n = len > INT_MAX ? INT_MAX : (int) len;
    crc = crc32_iscsi ((unsigned char *) p, n, crc);
    p += n;
    len -= n;
  }
  return crc ^ 0xffffffffu;
}

uint32_t
pc_crc32c (const void *buf, size_t len)
{
  return pc_crc32c_cont (0, buf, len);
}
