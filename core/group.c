/* SPDX-License-Identifier: BSD-3-Clause */
/* Write-back groups.
 *
 * In strict order (a group of one epoch, the default) every client
 * flush costs write-back a backend round trip: the epoch's writes, then
 * a flush, before the next epoch may start.  A client that flushes after
 * every write (a database commit) then gets, once the cache is full,
 * the backend's commit rate.  A group of N takes up to N consecutive
 * ended epochs of a namespace as one batch: only the final data of each
 * block goes down (a later epoch's write replaces an earlier one's in
 * the batch), all of it at once, then one flush.  The backing store is
 * at a client flush point at every group boundary; inside a group it
 * may hold any subset of the group's final data.
 *
 * A group's bounds are made durable before its first write goes down
 * (struct pc_ns_group, in the namespace's table entry): gathered again
 * after a restart with other bounds, a group could lay its data over a
 * part of the last one's, and match no boundary at all.
 *
 * Auto starts at 1, doubles while write-back leaves ended epochs behind
 * and the namespace's dirty data does not shrink (or flushed data nears
 * pcache-writeback-max-age), halves when a group takes fewer epochs than
 * it could, and is 1 again when write-back is idle: a healthy system
 * keeps the strict order.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <string.h>

#include "cache_internal.h"
#include "ctrl.h"
#include "group.h"
#include "namespace.h"
#include "pmem.h"
#include "util.h"

unsigned
pc_group_limit (struct pc_cache *c, struct pc_ns *ns)
{
  unsigned g = atomic_load_explicit (&c->wb_group, memory_order_relaxed);

  /* A hold waits for an epoch boundary: epoch by epoch gets there. */
  if (atomic_load (&c->hold))
    return 1;
  if (g == 0)
    g = ns->group_auto ? ns->group_auto : 1;
  return PC_MIN (g, PC_MAX_WB_GROUP);
}

static void
show (struct pc_cache *c, struct pc_ns *ns, unsigned size)
{
  atomic_store (&ns->group_epochs, size);
  atomic_store (&c->wb_group_epochs, size);
}

void
pc_group_adapt (struct pc_cache *c, struct pc_ns *ns, unsigned limit,
                unsigned used, int lag)
{
  unsigned a = ns->group_auto ? ns->group_auto : 1;

  if (atomic_load_explicit (&c->wb_group, memory_order_relaxed) != 0) {
    show (c, ns, limit);
    return;
  }
  uint64_t dirty = atomic_load (&ns->dirty_bytes);
  int rising = dirty > 0 && dirty >= ns->group_dirty;

  ns->group_dirty = dirty;
  /* Ended epochs waiting while dirty data does not shrink: the backend
   * does not keep up with a group this size.
   */
  if (lag && rising)
    a = PC_MIN (a * 2, (unsigned) PC_MAX_WB_GROUP);
  else if (!lag && used < limit && a > 1)
    a /= 2;
  ns->group_auto = a;
  show (c, ns, a);
}

void
pc_group_idle (struct pc_cache *c, struct pc_ns *ns)
{
  if (atomic_load_explicit (&c->wb_group, memory_order_relaxed) != 0 ||
      ns->group_auto <= 1)
    return;
  ns->group_auto = 1;
  show (c, ns, 1);
}

const struct pc_ns_group *
pc_group_bound (struct pc_cache *c, struct pc_ns *ns, uint64_t seq)
{
  const struct pc_ns_group *g = pc_fmt_group_at (c->base, &c->sb,
                                                 c->geom.seed, ns->id);

  return g && g->start_seq == seq ? g : NULL;
}

void
pc_group_record (struct pc_cache *c, struct pc_ns *ns, uint64_t start,
                 uint64_t end, uint64_t epoch)
{
  struct pc_ns_group g = {
    .magic = PC_GROUP_MAGIC, .start_seq = start, .end_seq = end,
    .epoch = epoch,
  };
  uint8_t *slot = c->base + c->sb.nstab_off +
    (uint64_t) ns->id * PC_NS_ENTRY + PC_NS_GROUP_OFF;

  pc_fmt_group_seal (c->geom.seed, &g);
  pc_pmem_copy (c->pm, slot, &g, sizeof g);
}

/* pc_ns_each's opaque for pc_group_inflight_epoch. */
struct inflight {
  struct pc_cache *c;
  uint64_t epoch;
};

static int
inflight_one (struct pc_ns *ns, void *opaque)
{
  struct inflight *a = opaque;
  const struct pc_ns_group *g =
    pc_group_bound (a->c, ns, pc_ctrl_ns_tail (a->c, ns->id).seq);

  if (g && g->epoch > a->epoch)
    a->epoch = g->epoch;
  return 0;
}

uint64_t
pc_group_inflight_epoch (struct pc_cache *c)
{
  struct inflight a = { c, 0 };

  pc_ns_each (c, inflight_one, &a);
  return a.epoch;
}
