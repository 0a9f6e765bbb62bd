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

/* dirty_tail is the oldest cursor of the namespaces in use (a cursor
 * behind key_tail counts as key_tail).  Caller holds ctrl_lock.
 */
static void
recompute_dirty_tail (struct pc_cache *c)
{
  const struct pc_pos *min = NULL;
  uint32_t i;

  for (i = 0; i < c->max_exports; i++) {
    const struct pc_pos *t = &c->ctrl.ns_tail[i];

    if (!atomic_load (&c->ns[i]))
      continue;
    if (t->seq < c->ctrl.key_tail.seq)
      t = &c->ctrl.key_tail;
    if (!min || t->seq < min->seq)
      min = t;
  }
  if (min)
    c->ctrl.dirty_tail = *min;
}

struct pc_pos
pc_ctrl_ns_tail (struct pc_cache *c, uint32_t ns)
{
  struct pc_pos p;

  pthread_mutex_lock (&c->ctrl_lock);
  p = c->ctrl.ns_tail[ns];
  if (p.seq < c->ctrl.key_tail.seq)
    p = c->ctrl.key_tail;
  pthread_mutex_unlock (&c->ctrl_lock);
  return p;
}

void
pc_ctrl_set_ns_tail (struct pc_cache *c, uint32_t ns,
                     const struct pc_pos *tail)
{
  pthread_mutex_lock (&c->ctrl_lock);
  c->ctrl.ns_tail[ns] = *tail;
  recompute_dirty_tail (c);
  c->ctrl.gc_percent = c->gc_percent;
  pc_ctrl_store (c->pm, c->base, &c->ctrl, &c->ctrl_slot);
  pthread_mutex_unlock (&c->ctrl_lock);
}
