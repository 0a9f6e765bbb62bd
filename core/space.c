/* SPDX-License-Identifier: BSD-3-Clause */
/* Waiting for a free segment, payload or log: pcache-full-timeout. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <inttypes.h>

#include "cache_internal.h"
#include "space.h"
#include "util.h"

/* A writer has waited for space long enough (pcache-full-timeout):
 * write-back frees nothing, most likely because the backend fails.
 */
int
pc_space_wait_over (struct pc_cache *c, uint64_t *since)
{
  uint64_t limit;

  if (*since == 0) {
    *since = pc_now_ms ();
    return 0;
  }
  /* pcache-full-timeout may change meanwhile: the wait is measured
   * against its value now.
   */
  limit = atomic_load_explicit (&c->full_timeout_ms, memory_order_relaxed);
  if (!limit ||
      (!atomic_load (&c->full_stuck) && pc_now_ms () - *since < limit))
    return 0;
  if (!atomic_exchange (&c->full_stuck, 1))
    pc_error ("%s: no cache space freed for %" PRIu64 " ms (is the backend "
              "failing? %" PRIu64 " write-back errors so far): writes that "
              "need space fail with EIO until write-back frees some",
              c->path, pc_now_ms () - *since,
              PC_COUNTED (c, writeback_errors));
  PC_COUNT (c, full_timeouts, 1);
  errno = EIO;
  return 1;
}

void
pc_space_freed (struct pc_cache *c)
{
  if (atomic_exchange (&c->full_stuck, 0))
    pc_debug ("%s: cache space is free again", c->path);
}
