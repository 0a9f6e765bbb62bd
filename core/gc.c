/* SPDX-License-Identifier: BSD-3-Clause */
/* Garbage collection: move key_tail up to dirty_tail, dropping the
 * segment references of the records it passes.  Only written-back or
 * clean records are ever passed, so no dirty data is lost.  key_tail is
 * persisted before any segment is released: replay must never start in
 * a segment that has been handed out again.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <stdlib.h>

#include "cache_internal.h"
#include "ctrl.h"
#include "gc.h"
#include "util.h"

#define GC_BATCH_KSETS 64

/* References to drop: records of a kset mostly point into one segment,
 * so they are counted in runs and each run is one locked update.
 */
struct gc_put {
  uint32_t seg, n;
};

/* Also when data has no room (the log's reserve is all that is left),
 * whatever pcache-gc-percent says: a writer that found none kicks the
 * workers before it counts as a waiter, so the waiter count alone can
 * miss it.
 */
static int
gc_needed (struct pc_cache *c, int force)
{
  uint32_t nfree = pc_segs_nfree (&c->segs);
  uint64_t used = c->nsegs - nfree;

  return force || nfree <= PC_LOG_RESERVE || pc_segs_waiters (&c->segs) > 0 ||
    used * 100 > (uint64_t) c->nsegs * atomic_load (&c->gc_percent);
}

int
pc_gc_run (struct pc_cache *c, int force)
{
  struct gc_put *puts;
  uint32_t *logs;
  int rounds = 0;

  if (!gc_needed (c, force))
    return 0;
  pthread_mutex_lock (&c->gc_lock);
  if (!c->gc_puts) {
    c->gc_puts = malloc (GC_BATCH_KSETS * PC_KSET_MAX_KEYS * sizeof *puts);
    c->gc_logs = malloc (GC_BATCH_KSETS * sizeof *logs);
  }
  puts = c->gc_puts;
  logs = c->gc_logs;
  if (!puts || !logs) {
    pthread_mutex_unlock (&c->gc_lock);
    return -1;
  }
  while (gc_needed (c, force)) {
    struct pc_pos kt, dt;
    unsigned n = 0, np = 0, nl = 0, freed, i;
    uint32_t run_gen = 0;

    pc_ctrl_tails (c, &kt, &dt);
    if (kt.seq >= dt.seq)
      break;

    while (kt.seq < dt.seq && n < GC_BATCH_KSETS) {
      const char *why;
      const struct pc_kset_hdr *h = pc_kset_at (c, &kt, &why);

      if (!h) {
        pc_error ("%s: garbage collection stopped at kset %" PRIu64 ": %s",
                  c->path, kt.seq, why);
        goto out;
      }
      if (h->flags & PC_KSET_LAST)
        logs[nl++] = kt.seg;
      for (i = 0; i < h->nkeys; i++) {
        const struct pc_key_rec *r = (const struct pc_key_rec *) (h + 1) + i;

        if (r->flags & PC_KF_ZERO)
          continue;
        /* The run's segment cannot be freed while GC holds its
         * references, so a record of the same generation is live too.
         */
        if (np > 0 && puts[np - 1].seg == r->seg && run_gen == r->gen)
          puts[np - 1].n++;
        /* Replay took no reference for a stale record. */
        else if (pc_seg_gen_is (&c->segs, r->seg, r->gen)) {
          puts[np++] = (struct gc_put) { r->seg, 1 };
          run_gen = r->gen;
        }
      }
      pc_kset_next (c, h, &kt);
      n++;
    }
    pc_ctrl_update (c, &kt, NULL);
    freed = nl;
    for (i = 0; i < np; i++)
      freed += pc_seg_put_n (&c->segs, puts[i].seg, puts[i].n);
    for (i = 0; i < nl; i++)
      pc_seg_release (&c->segs, logs[i]);
    PC_COUNT (c, gc_segments, freed);
    PC_COUNT (c, gc_runs, 1);
    PC_TRACE (PC_TRACE_GC, "%s: gc: %u segments freed, key_tail at kset %" PRIu64, c->path, freed, kt.seq);
    rounds++;
  }
 out:
  pthread_mutex_unlock (&c->gc_lock);
  return rounds;
}
