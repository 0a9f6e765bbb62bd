/* SPDX-License-Identifier: BSD-3-Clause */
/* Durable points and the writeback hold.
 *
 * Log epochs only grow along the log, and writeback writes ksets in log
 * order, a batch never spanning two epochs, flushing the backend before
 * dirty_tail moves.  So every epoch before that of the kset at
 * dirty_tail is wholly on the backend: that is the backing epoch.  The
 * backing store is exactly the image of a flush point when, besides,
 * no batch of the epoch at dirty_tail went down yet: the last batch
 * begun (wb_last_epoch) is of an earlier epoch.  A hold lets
 * writeback run until that is so, then starts no batch.  With write-back
 * groups a batch spans several epochs, and wb_last_epoch is the last of
 * them: a hold then waits for the group's end, a group boundary.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <string.h>

#include "cache_internal.h"
#include "ctrl.h"
#include "drain.h"
#include "hold.h"
#include "kset.h"
#include "util.h"
#include "group.h"
#include "workers.h"

/* The epoch of the first kset not written back: that of the kset at
 * dirty_tail, or the epoch being written if none is committed.
 */
static uint64_t
next_epoch (struct pc_cache *c)
{
  struct pc_pos dt = pc_dirty_tail (c);
  const struct pc_kset_hdr *h;
  const char *why;

  if (dt.seq < atomic_load (&c->log.head_seq) &&
      (h = pc_kset_at (c, &dt, &why)) != NULL)
    return h->epoch;
  return pc_log_epoch (c);
}

static uint64_t
before (uint64_t epoch)
{
  return epoch ? epoch - 1 : 0;
}

/* After a restart with dirty data, what part of the kset's epoch at
 * dirty_tail is down is not known: writeback is taken to be inside it.
 */
void
pc_hold_init (struct pc_cache *c)
{
  struct pc_pos dt = pc_dirty_tail (c);
  uint64_t head = atomic_load (&c->log.head_seq);

  c->log.first_seq = head;
  /* A group in flight at the stop is finished before any hold. */
  atomic_store (&c->wb_last_epoch, dt.seq < head ?
                PC_MAX (next_epoch (c), pc_group_inflight_epoch (c))
                : before (pc_log_epoch (c)));
}

uint64_t
pc_client_epoch (struct pc_cache *c)
{
  return before (pc_log_epoch (c));
}

uint64_t
pc_backing_epoch (struct pc_cache *c)
{
  return before (next_epoch (c));
}

uint64_t
pc_ns_backing_epoch (struct pc_cache *c, struct pc_ns *ns)
{
  struct pc_pos t = pc_ctrl_ns_tail (c, ns->id);
  const struct pc_kset_hdr *h;
  const char *why;

  if (t.seq < atomic_load (&c->log.head_seq) &&
      (h = pc_kset_at (c, &t, &why)) != NULL)
    return before (h->epoch);
  return before (pc_log_epoch (c));
}

/* The age of the oldest dirty kset, up to a step of the commit marks
 * (kset.h) too high; *known is 0 if its mark has left the ring, and the
 * age is then that of the oldest mark left: a lower bound.
 */
static uint64_t
dirty_age (struct pc_cache *c, int *known)
{
  uint64_t seq = pc_dirty_tail (c).seq, now = pc_now_ms ();
  uint64_t ms;

  *known = 1;
  if (seq >= atomic_load (&c->log.head_seq))
    return 0;
  ms = pc_log_commit_ms (c, seq, known);
  return ms ? now - PC_MIN (ms, now) : 0;
}

uint64_t
pc_dirty_age_ms (struct pc_cache *c)
{
  int known;

  return dirty_age (c, &known);
}

/* Writeback starts early enough to be done in time: half the bound, at
 * most 5 s, is left for the writing.  An age the ring no longer knows
 * counts as too old.
 */
int
pc_dirty_too_old (struct pc_cache *c)
{
  uint64_t max = atomic_load_explicit (&c->wb_max_age_ms,
                                      memory_order_relaxed);
  uint64_t age;
  int known;

  if (!max)
    return 0;
  age = dirty_age (c, &known);
  return !known || age >= max - PC_MIN (max / 2, 5000);
}

int
pc_hold_admit (struct pc_cache *c, uint64_t epoch)
{
  int timed_out = 0, ok = 1;
  uint64_t last;

  pthread_mutex_lock (&c->bg_lock);
  if (atomic_load (&c->hold) && c->hold_until_ms &&
      pc_now_ms () >= c->hold_until_ms) {
    atomic_store (&c->hold, 0);
    c->hold_until_ms = 0;
    timed_out = 1;
  }
  if (atomic_load (&c->hold) && epoch > atomic_load (&c->hold_epoch))
    ok = 0;
  else if (epoch > (last = atomic_load (&c->wb_last_epoch)))
    atomic_store (&c->wb_last_epoch, epoch);
  pthread_mutex_unlock (&c->bg_lock);
  if (timed_out)
    pc_error ("%s: writeback hold ended by pcache-hold-timeout (%" PRIu64
              " s); writeback resumes", c->path, c->hold_timeout_ms / 1000);
  return ok;
}

/* done for pc_wait_writeback: every namespace is past the hold's epoch. */
static int
boundary_reached (struct pc_cache *c, uint64_t epoch)
{
  return next_epoch (c) > epoch;
}

int
pc_cache_hold (pc_cache *c, uint64_t *epoch, int *err)
{
  uint64_t held;
  int r;

  if (atomic_load (&c->mode) != PC_MODE_WRITEBACK) {
    pc_error ("%s: hold: writes go straight to the backend outside "
              "write-back mode; a hold needs write-back mode", c->path);
    *err = EINVAL;
    return -1;
  }
  /* The epoch writeback is in, if it is inside one (it finishes it),
   * else the last it finished: no batch of a later epoch starts.  Set
   * before the hold, which writeback reads first.
   */
  pthread_mutex_lock (&c->bg_lock);
  held = PC_MAX (atomic_load (&c->wb_last_epoch), before (next_epoch (c)));
  atomic_store (&c->hold_epoch, held);
  atomic_store (&c->hold, 1);
  c->hold_until_ms = c->hold_timeout_ms ? pc_now_ms () + c->hold_timeout_ms
    : 0;
  pthread_mutex_unlock (&c->bg_lock);
  /* Writing the epoch the client is still in, writeback would reach
   * its end only at the client's next flush: end it now.
   */
  if (!boundary_reached (c, held) && held >= pc_log_epoch (c) &&
      pc_log_commit_all (c, 1) == -1) {
    *err = errno ? errno : EIO;
    pc_cache_release (c);
    return -1;
  }
  atomic_fetch_add (&c->drainers, 1);
  r = pc_wait_writeback (c, "hold", boundary_reached, held, 1, UINT32_MAX,
                         PC_DRAIN_GRACE_MS, err);
  atomic_fetch_sub (&c->drainers, 1);
  if (r == -1) {
    pc_error ("%s: hold: writeback could not reach an epoch boundary (%s); "
              "not held", c->path, strerror (*err));
    pc_cache_release (c);
    return -1;
  }
  *epoch = pc_backing_epoch (c);
  pc_debug ("%s: writeback held at epoch %" PRIu64, c->path, *epoch);
  return 0;
}

void
pc_cache_release (pc_cache *c)
{
  pthread_mutex_lock (&c->bg_lock);
  atomic_store (&c->hold, 0);
  c->hold_until_ms = 0;
  pthread_cond_broadcast (&c->drain_cv);
  pthread_mutex_unlock (&c->bg_lock);
  pc_kick_workers (c);
}

/* A drain that tells how far the backing store now is: every epoch up
 * to the one it ended, at least.
 */
int
pc_cache_checkpoint (pc_cache *c, uint64_t *epoch, int *err)
{
  if (pc_cache_drain (c, err) == -1)
    return -1;
  *epoch = pc_backing_epoch (c);
  return 0;
}
