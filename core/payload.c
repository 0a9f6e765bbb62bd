/* SPDX-License-Identifier: BSD-3-Clause */
/* Payload space: data heads carve client data and read-cached data out
 * of data segments, one head per group of threads.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>

#include "cache_internal.h"
#include "kset.h"
#include "payload.h"
#include "util.h"
#include "workers.h"

static unsigned
my_head (struct pc_cache *c)
{
  return pc_thread_shard () % c->nheads;
}

/* A writer has waited for space long enough (pcache-full-timeout):
 * write-back frees nothing, most likely because the backend fails.  The
 * first to give up says so; until a segment is freed, the writers that
 * follow fail at once instead of each waiting the whole time, so that a
 * client sees errors, not a hang, while reads and hits go on.
 */
static int
give_up (struct pc_cache *c, uint64_t since)
{
  if (!atomic_exchange (&c->full_stuck, 1))
    pc_error ("%s: no cache space freed for %" PRIu64 " ms (is the backend "
              "failing? %" PRIu64 " write-back errors so far): writes that "
              "need space fail with EIO until write-back frees some",
              c->path, pc_now_ms () - since, PC_COUNTED (c, writeback_errors));
  PC_COUNT (c, full_timeouts, 1);
  errno = EIO;
  return -1;
}

/* A write has waited for space since SINCE: long enough to fail?
 * pcache-full-timeout may change meanwhile; the wait is measured
 * against its value now.
 */
static int
full_timed_out (struct pc_cache *c, uint64_t since)
{
  uint64_t limit = atomic_load_explicit (&c->full_timeout_ms,
                                         memory_order_relaxed);

  return limit && (atomic_load (&c->full_stuck) ||
                   pc_now_ms () - since >= limit);
}

int
pc_alloc_payload (struct pc_cache *c, uint32_t want, int wait,
                  uint32_t *seg, uint32_t *seg_off, uint32_t *got,
                  uint32_t *gen)
{
  struct pc_head *h = &c->heads[my_head (c)];
  uint64_t since = 0;

  pthread_mutex_lock (&h->lock);
  for (;;) {
    if (h->seg >= 0 && h->off < c->seg_size)
      break;
    if (h->seg >= 0) {
      /* Retire the full segment: drop the head's own reference and
       * those it took for records that never came.
       */
      pc_seg_put_n (&c->segs, h->seg, 1 + h->spare);
      h->seg = -1;
    }
    h->seg = pc_seg_alloc (&c->segs, PC_SEG_DATA, PC_LOG_RESERVE);
    if (h->seg >= 0) {
      /* One reference for each record the segment can hold, taken at
       * once, so that an allocation needs no segment lock.
       */
      h->spare = c->seg_size / PC_ALLOC_ALIGN;
      pc_seg_get_n (&c->segs, h->seg, 1 + h->spare);
      h->off = 0;
      if (atomic_exchange (&c->full_stuck, 0))
        pc_debug ("%s: cache space is free again", c->path);
      break;
    }
    if (!wait) {
      pthread_mutex_unlock (&h->lock);
      errno = ENOSPC;
      return -1;
    }
    /* Full: uncommitted keys pin their payload, so commit them, let
     * writeback and GC run, and wait for a free segment.
     */
    pthread_mutex_unlock (&h->lock);
    if (pc_log_commit_all (c, 0) == -1)
      return -1;
    if (since == 0)
      since = pc_now_ms ();
    else if (full_timed_out (c, since))
      return give_up (c, since);
    pc_kick_workers (c);
    pc_segs_wait (&c->segs, PC_LOG_RESERVE);
    pthread_mutex_lock (&h->lock);
  }
  *seg = h->seg;
  *seg_off = h->off;
  *got = PC_MIN ((uint64_t) want, c->seg_size - h->off);
  *gen = pc_seg_gen32 (&c->segs, h->seg);
  h->off = PC_MIN (c->seg_size, h->off + PC_ALIGN_UP (*got, PC_ALLOC_ALIGN));
  h->spare--;                           /* the key record's reference */
  pthread_mutex_unlock (&h->lock);
  return 0;
}
