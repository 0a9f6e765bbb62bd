/* SPDX-License-Identifier: BSD-3-Clause */
/* Drain: wait until everything logged so far is written back (mode
 * switches, pcachectl drain, detach, checkpoints).
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>

#include "cache_internal.h"
#include "ctrl.h"
#include "gc.h"
#include "drain.h"
#include "namespace.h"
#include "kset.h"
#include "util.h"
#include "workers.h"

/* A namespace with dirty data and no backend to write it to: a wait
 * for it would not end.
 */
struct stuck {
  uint32_t only;                      /* UINT32_MAX: any namespace */
  struct pc_ns *ns;
};

static int
stuck_one (struct pc_ns *ns, void *opaque)
{
  struct stuck *s = opaque;
  struct pc_backend bg;

  if ((s->only != UINT32_MAX && ns->id != s->only) ||
      atomic_load (&ns->dirty_bytes) == 0)
    return 0;
  if (pc_ns_pin (ns, &bg) == 0) {
    pc_ns_unpin (ns);
    return 0;
  }
  s->ns = ns;
  return 1;
}

static struct pc_ns *
stuck_ns (struct pc_cache *c, uint32_t only)
{
  struct stuck s = { only, NULL };

  pc_ns_each (c, stuck_one, &s);
  return s.ns;
}

int
pc_wait_writeback (struct pc_cache *c, const char *what,
                   int (*done) (struct pc_cache *, uint64_t), uint64_t arg,
                   int held, uint32_t only, uint64_t grace_ms, int *err)
{
  uint64_t last = 0, since = pc_now_ms (), heard = since;
  uint64_t answers = atomic_load (&c->wb_answers), a;
  int r = 0, gave_up = 0, interrupted = 0, silent = 0;
  struct pc_ns *stuck = NULL;

  pc_kick_workers (c);
  pthread_mutex_lock (&c->bg_lock);
  while (!done (c, arg)) {
    uint64_t dt = pc_dirty_tail (c).seq, now = pc_now_ms ();

    if ((a = atomic_load (&c->wb_answers)) != answers) {
      answers = a;
      heard = now;
    }
    if (c->stop || !c->running)
      r = ESHUTDOWN;
    else if (atomic_load (&c->hold) != held)
      r = held ? ECANCELED : EBUSY;
    /* Paused writeback would never get there: say so rather than hang
     * (a mode switch waits here holding every writer off).
     */
    else if (atomic_load (&c->wb_paused))
      r = EBUSY;
    else if ((stuck = stuck_ns (c, only)) != NULL)
      r = ENOTCONN;
    /* Cut short by a shutdown that will not pass. */
    else if (c->exit_cut) {
      r = ESHUTDOWN;
      interrupted = 1;
    }
    /* Wait as long as writeback makes progress or has not failed; a
     * backend that keeps failing for the whole grace period ends the
     * wait (the data stays in the cache).
     */
    else if (c->wb_error && dt == last && grace_ms &&
             now - since >= grace_ms) {
      r = c->wb_error;
      gave_up = 1;
    }
    /* ... and so does a plugin that does not answer at all. */
    else if (grace_ms && dt == last && now - heard >= grace_ms &&
             now - since >= grace_ms) {
      r = ETIMEDOUT;
      silent = 1;
    }
    if (r)
      break;
    if (dt != last) {
      last = dt;
      since = now;
    }
    pc_cond_wait_ms (&c->drain_cv, &c->bg_lock, 500);
  }
  pthread_mutex_unlock (&c->bg_lock);
  if (!r)
    return 0;
  if (gave_up)
    pc_error ("%s: %s gave up: writeback has failed for %" PRIu64 " s",
              c->path, what, grace_ms / 1000);
  else if (silent)
    pc_error ("%s: %s gave up: the plugin has not answered writeback for %"
              PRIu64 " s", c->path, what, grace_ms / 1000);
  else if (interrupted)
    pc_error ("%s: %s: the plugin ends its requests early now that the "
              "server is shutting down (as filters that sleep do, such as "
              "delay or rate)", c->path, what);
  else if (stuck)
    pc_error ("%s: %s: export '%s' has dirty data and no backend to write "
              "it to (no client has it open)", c->path, what, stuck->name);
  else if (r == EBUSY && !held && atomic_load (&c->hold))
    pc_error ("%s: writeback was held during the wait", c->path);
  *err = r;
  return -1;
}

static int
tail_reached (struct pc_cache *c, uint64_t target)
{
  return pc_dirty_tail (c).seq >= target;
}

static int
drain_wait (pc_cache *c, uint64_t grace_ms, int *err)
{
  if (atomic_load (&c->hold)) {
    pc_error ("%s: writeback is held (release it first)", c->path);
    *err = EBUSY;
    return -1;
  }
  if (pc_log_commit_all (c, 1) == -1) {
    *err = errno ? errno : EIO;
    return -1;
  }
  return pc_wait_writeback (c, "drain", tail_reached,
                            atomic_load (&c->log.head_seq), 0, UINT32_MAX,
                            grace_ms, err);
}

int
pc_cache_drain (pc_cache *c, int *err)
{
  return pc_cache_drain_timeout (c, PC_DRAIN_GRACE_MS / 1000, err);
}

int
pc_cache_drain_timeout (pc_cache *c, unsigned fail_s, int *err)
{
  int r;

  /* Fail at once, before committing anything for a wait in vain. */
  if (atomic_load (&c->wb_paused)) {
    *err = EBUSY;
    return -1;
  }
  /* Writeback holds back during bursts; a drain wants it now. */
  atomic_fetch_add (&c->drainers, 1);
  r = drain_wait (c, (uint64_t) fail_s * 1000, err);
  atomic_fetch_sub (&c->drainers, 1);
  return r;
}

struct ns_target {
  uint32_t id;
  uint64_t seq;
};

static int
ns_reached (struct pc_cache *c, uint64_t arg)
{
  const struct ns_target *t = (const struct ns_target *) (uintptr_t) arg;
  struct pc_ns *ns = pc_ns_by_id (c, t->id);

  return atomic_load (&ns->dirty_bytes) == 0 ||
    pc_ctrl_ns_tail (c, t->id).seq >= t->seq;
}

int
pc_ns_drain (pc_cache *c, uint32_t id, int *err)
{
  struct ns_target t = { id, 0 };
  int r;

  if (!pc_ns_by_id (c, id)) {
    *err = ENOENT;
    return -1;
  }
  if (atomic_load (&c->wb_paused) || atomic_load (&c->hold)) {
    pc_error ("%s: writeback is %s", c->path,
              atomic_load (&c->hold) ? "held (release it first)" : "paused");
    *err = EBUSY;
    return -1;
  }
  if (pc_log_commit_all (c, 1) == -1) {
    *err = errno ? errno : EIO;
    return -1;
  }
  t.seq = atomic_load (&c->log.head_seq);
  atomic_fetch_add (&c->drainers, 1);
  r = pc_wait_writeback (c, "drain", ns_reached, (uintptr_t) &t, 0, id,
                         PC_DRAIN_GRACE_MS, err);
  atomic_fetch_sub (&c->drainers, 1);
  return r;
}

int
pc_cache_detach (pc_cache *c, int *err)
{
  if (pc_cache_drain (c, err) == -1)
    return -1;
  /* Everything is on the backend: drop clean data too, so a later user
   * of this cache cannot serve blocks the backend has since changed.
   */
  pc_gc_run (c, 1);
  return 0;
}

void
pc_cache_exiting (pc_cache *c)
{
  atomic_store (&c->exiting, 1);
}

int
pc_cache_pause_writeback (pc_cache *c, int pause)
{
  /* Under bg_lock, so that a drain checking it before its wait cannot
   * miss the wake-up that ends the wait.
   */
  pthread_mutex_lock (&c->bg_lock);
  atomic_store (&c->wb_paused, !!pause);
  pthread_cond_broadcast (&c->drain_cv);
  pthread_mutex_unlock (&c->bg_lock);
  /* Resuming: write back now, not after writeback's nap. */
  pc_kick_workers (c);
  pc_debug ("%s: writeback %s", c->path, pause ? "paused" : "resumed");
  return 0;
}
