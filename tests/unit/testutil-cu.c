/* SPDX-License-Identifier: BSD-3-Clause */
/* Helpers of testutil.h that assert: only the CUnit programs link
 * them.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <stdlib.h>
#include <unistd.h>

#include <CUnit/CUnit.h>
#include <CUnit/Basic.h>

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
tu_rig_write (struct tu_rig *r, uint64_t off, uint32_t len, uint32_t seed)
{
  tu_write (r->c, off, len, seed);
  tu_fill (r->model + off, len, off, seed);
}

void
tu_flush (pc_cache *c)
{
  int err = 0;

  CU_ASSERT_EQUAL (pc_flush (c, &err), 0);
}

struct tu_mem *tu_ee_mem;
struct pc_backend tu_ee;

static int
add_cases (const char *suite, const struct tu_case *cases)
{
  CU_pSuite s = CU_add_suite (suite, NULL, NULL);

  if (!s)
    return -1;
  for (; cases->name; cases++)
    if (!CU_add_test (s, cases->name, cases->fn))
      return -1;
  return 0;
}

int
tu_main (const char *suite, const struct tu_case *cases, unsigned alarm_s,
         uint64_t ee_size)
{
  int fails;

  alarm (alarm_s);
  tu_log_install ();
  if (!tu_dir_create ())
    return 1;
  if (ee_size) {
    tu_ee_mem = tu_mem_new (ee_size, 0xEE);
    tu_ee = tu_mem_backend (tu_ee_mem);
  }
  if (CU_initialize_registry () != CUE_SUCCESS)
    return 1;
  if (add_cases (suite, cases) == -1) {
    CU_cleanup_registry ();
    return 1;
  }
  CU_basic_set_mode (CU_BRM_VERBOSE);
  CU_basic_run_tests ();
  fails = CU_get_number_of_failures () != 0 || CU_get_error () != CUE_SUCCESS;
  CU_cleanup_registry ();
  if (tu_ee_mem)
    tu_mem_free (tu_ee_mem);
  tu_dir_remove ();
  return fails ? 1 : 0;
}
