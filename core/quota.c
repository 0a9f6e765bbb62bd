/* SPDX-License-Identifier: BSD-3-Clause */
/* Export quota: one export's dirty data may take at most
 * pcache-export-quota percent of the cache, so that an export written
 * flat out cannot fill the cache and make every other export's writes
 * wait for its write-back.  Its own writes wait instead, for its own
 * write-back, which runs at full width while they do.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <inttypes.h>

#include "cache_internal.h"
#include "kset.h"
#include "quota.h"
#include "util.h"
#include "workers.h"

static uint64_t
quota_bytes (struct pc_cache *c)
{
  unsigned pct = atomic_load_explicit (&c->export_quota,
                                       memory_order_relaxed);

  if (pct >= 100)
    return UINT64_MAX;
  return ((uint64_t) c->nsegs << c->seg_shift) / 100 * pct;
}

/* Add len to ns's dirty bytes if it fits, in one step, so that
 * concurrent writes cannot both pass the quota on the same room.  A
 * write always fits an export with no dirty data, however large.
 */
static int
take (struct pc_ns *ns, uint64_t len, uint64_t limit)
{
  uint64_t dirty = atomic_load (&ns->dirty_bytes);

  do {
    if (dirty != 0 && (dirty > limit || len > limit - dirty))
      return 0;
  } while (!atomic_compare_exchange_weak (&ns->dirty_bytes, &dirty,
                                          dirty + len));
  return 1;
}

int
pc_quota_take (struct pc_cache *c, struct pc_ns *ns, uint64_t len, int *err)
{
  uint64_t limit = quota_bytes (c), since, timeout;
  int r = 0;

  if (take (ns, len, limit))
    return 0;
  atomic_fetch_add (&c->quota_waiters, 1);
  /* Its data may still sit in key buffers, where write-back cannot
   * take it: commit them.
   */
  pc_log_commit_all (c, 0);
  pc_kick_workers (c);
  since = pc_now_ms ();
  pthread_mutex_lock (&ns->lock);
  while (!take (ns, len, limit = quota_bytes (c))) {
    timeout = atomic_load_explicit (&c->full_timeout_ms,
                                    memory_order_relaxed);
    /* As a wait for space: the first to give up says so, and the
     * writes that follow give up at once until write-back frees some.
     */
    if (ns->quota_full || (timeout && pc_now_ms () - since >= timeout)) {
      if (!ns->quota_full)
        pc_error ("%s: export '%s' has %" PRIu64 " bytes dirty, its quota "
                  "(pcache-export-quota), and its write-back freed none for "
                  "%" PRIu64 " ms: its writes fail with EIO until some is "
                  "written back", c->path, ns->name,
                  atomic_load (&ns->dirty_bytes), pc_now_ms () - since);
      ns->quota_full = 1;
      PC_COUNT (c, full_timeouts, 1);
      *err = EIO;
      r = -1;
      break;
    }
    pc_cond_wait_ms (&ns->quota_cv, &ns->lock, 100);
  }
  pthread_mutex_unlock (&ns->lock);
  atomic_fetch_sub (&c->quota_waiters, 1);
  return r;
}

void
pc_quota_freed (struct pc_cache *c, struct pc_ns *ns)
{
  pthread_mutex_lock (&ns->lock);
  ns->quota_full = 0;
  if (atomic_load (&c->quota_waiters) > 0)
    pthread_cond_broadcast (&ns->quota_cv);
  pthread_mutex_unlock (&ns->lock);
}
