/* SPDX-License-Identifier: BSD-3-Clause */
/* The control record's cursors (key_tail, dirty_tail) in RAM and on
 * pmem: replay, writeback and GC move them; everything else reads them.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <pthread.h>

#include "cache_internal.h"
#include "ctrl.h"
#include "meta.h"

/* The first kset not yet written back. */
struct pc_pos
pc_dirty_tail (struct pc_cache *c)
{
  struct pc_pos p;

  pthread_mutex_lock (&c->ctrl_lock);
  p = c->ctrl.dirty_tail;
  pthread_mutex_unlock (&c->ctrl_lock);
  return p;
}

void
pc_ctrl_tails (struct pc_cache *c, struct pc_pos *key_tail,
               struct pc_pos *dirty_tail)
{
  pthread_mutex_lock (&c->ctrl_lock);
  *key_tail = c->ctrl.key_tail;
  *dirty_tail = c->ctrl.dirty_tail;
  pthread_mutex_unlock (&c->ctrl_lock);
}

void
pc_ctrl_update (struct pc_cache *c, const struct pc_pos *key_tail,
                const struct pc_pos *dirty_tail)
{
  pthread_mutex_lock (&c->ctrl_lock);
  if (key_tail)
    c->ctrl.key_tail = *key_tail;
  if (dirty_tail)
    c->ctrl.dirty_tail = *dirty_tail;
  c->ctrl.gc_percent = c->gc_percent;
  pc_ctrl_store (c->pm, c->base, &c->ctrl, &c->ctrl_slot);
  pthread_mutex_unlock (&c->ctrl_lock);
}
