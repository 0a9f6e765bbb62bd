/* SPDX-License-Identifier: BSD-3-Clause */
/* Helpers of testutil.h that assert: only the CUnit programs link
 * them.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <stdlib.h>

#include <CUnit/CUnit.h>

#include "testutil.h"

void
tu_write (pc_cache *c, uint64_t off, uint32_t len, uint32_t seed)
{
  uint8_t *b = malloc (len);
  int err = 0;

  tu_fill (b, len, off, seed);
  CU_ASSERT_EQUAL (pc_write (c, b, len, off, 0, &err), 0);
  free (b);
}

void
tu_flush (pc_cache *c)
{
  int err = 0;

  CU_ASSERT_EQUAL (pc_flush (c, &err), 0);
}
