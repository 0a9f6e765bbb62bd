/* SPDX-License-Identifier: BSD-3-Clause */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <stdlib.h>
#include <string.h>

#include "cache_internal.h"
#include "space.h"
#include "util.h"
#include "workers.h"

int
pc_log_init (struct pc_cache *c)
{
  unsigned i;

  pc_lock_init (&c->log.lock);
  c->log.scratch = aligned_alloc (64, pc_kset_span (PC_KSET_MAX_KEYS));
  c->log.times = calloc (PC_LOG_TIMES, sizeof *c->log.times);
  if (!c->log.scratch || !c->log.times)
    return -1;
  for (i = 0; i < PC_NKBUFS; i++) {
    pc_lock_init (&c->kbufs[i].lock);
    c->kbufs[i].nkeys = 0;
    c->kbufs[i].seals = 0;
  }
  return 0;
}

void
pc_log_destroy (struct pc_cache *c)
{
  unsigned i;

  free (c->log.scratch);
  c->log.scratch = NULL;
  free (c->log.times);
  c->log.times = NULL;
  pthread_mutex_destroy (&c->log.lock);
  for (i = 0; i < PC_NKBUFS; i++)
    pthread_mutex_destroy (&c->kbufs[i].lock);
}

/* A new log segment: take one (the log may dip into the reserve), and
 * clear its first header so nothing there passes for a kset.  Without
 * wait, fail with ENOSPC rather than wait for the workers to free one.
 */
static int64_t
new_log_seg (struct pc_cache *c, int wait)
{
  uint64_t since = 0;

  for (;;) {
    int64_t id = pc_seg_alloc (&c->segs, PC_SEG_LOG, 0);
    if (id >= 0) {
      pc_pmem_set (c->pm, pc_seg_addr (c, id, 0), 0,
                   sizeof (struct pc_kset_hdr));
      pc_space_freed (c);
      return id;
    }
    if (!wait) {
      errno = ENOSPC;
      return -1;
    }
    if (c->stop && !c->running) {
      pc_error ("%s: no free segment for the key log", c->path);
      errno = ENOSPC;
      return -1;
    }
    /* A log that cannot grow (a dead backend under a load of zeroes or
     * trims, which take no payload) fails commits after the same time a
     * write fails for want of payload space.
     */
    if (pc_space_wait_over (c, &since))
      return -1;
    pc_kick_workers (c);
    pc_segs_wait (&c->segs, 0);
  }
}

/* The slot's idx reads as no mark while it changes, so that a reader
 * never pairs one mark's kset number with another's time.
 */
void
pc_log_mark (struct pc_log *lg, uint64_t seq, uint64_t now, uint64_t step_ms)
{
  uint64_t i = atomic_load_explicit (&lg->nmarks, memory_order_relaxed);
  struct pc_log_time *t = &lg->times[i % PC_LOG_TIMES];

  pc_assert_held (&lg->lock);
  if (i > 0 && now - PC_MIN (lg->mark_ms, now) < step_ms)
    return;
  atomic_store (&t->idx, UINT64_MAX);
  atomic_store (&t->seq, seq);
  atomic_store (&t->ms, now);
  atomic_store (&t->idx, i);
  lg->mark_ms = now;
  atomic_store (&lg->nmarks, i + 1);
}

/* Mark i, unless a newer one took its slot (-1). */
static int
mark_at (const struct pc_log *lg, uint64_t i, uint64_t *seq, uint64_t *ms)
{
  const struct pc_log_time *t = &lg->times[i % PC_LOG_TIMES];
  uint64_t i1 = atomic_load (&t->idx);

  *seq = atomic_load (&t->seq);
  *ms = atomic_load (&t->ms);
  return i1 == i && atomic_load (&t->idx) == i ? 0 : -1;
}

uint64_t
pc_log_commit_ms (struct pc_cache *c, uint64_t seq, int *known)
{
  const struct pc_log *lg = &c->log;
  uint64_t n = atomic_load (&lg->nmarks);
  uint64_t lo = n > PC_LOG_TIMES ? n - PC_LOG_TIMES : 0, hi = n;
  uint64_t ms = 0, oldest = 0, s, t;
  int found = 0;

  *known = 1;
  if (seq < lg->first_seq)
    return c->started_ms;
  /* The last mark at or before seq.  A mark found gone was overwritten
   * while this ran: every mark before it is gone too.
   */
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2;

    if (mark_at (lg, mid, &s, &t) == -1) {
      lo = mid + 1;
      continue;
    }
    if (s <= seq) {
      ms = t;
      found = 1;
      lo = mid + 1;
    }
    else {
      oldest = t;
      hi = mid;
    }
  }
  if (found)
    return ms;
  *known = 0;
  return oldest;
}

/* Caller holds the log lock and those of kbs[0..nkb).  Append one kset
 * of their records, n in all (at most PC_KSET_MAX_KEYS).
 */
static int
log_write (struct pc_cache *c, struct pc_kbuf *const *kbs, unsigned nkb,
           uint32_t n, int wait)
{
  struct pc_log *lg = &c->log;
  struct pc_kset_hdr *h = (struct pc_kset_hdr *) lg->scratch;
  struct pc_key_rec *rec = (struct pc_key_rec *) (h + 1);
  uint32_t span = pc_kset_span (n);
  uint64_t now = pc_now_ms ();
  /* Marks a 2048th of the age bound apart reach back twice the bound. */
  uint64_t step = PC_MAX (PC_LOG_TIME_STEP_MIN_MS,
                          atomic_load_explicit (&c->wb_max_age_ms,
                                                memory_order_relaxed)
                          / (PC_LOG_TIMES / 2));
  unsigned i;

  pc_assert_held (&lg->lock);
  for (i = 0; i < nkb; i++)
    pc_assert_held (&kbs[i]->lock);
  /* Keep room behind every kset for the LAST record that may follow. */
  if (lg->head.off + span + PC_KSET_ALIGN > c->seg_size) {
    int64_t next = new_log_seg (c, wait);
    struct pc_kset_hdr last = {
      .magic = PC_KSET_MAGIC, .seq = lg->head.seq, .epoch = lg->epoch,
      .flags = PC_KSET_LAST, .next_seg = (uint32_t) next,
    };

    if (next < 0)
      return -1;
    last.crc = pc_kset_crc (c->geom.seed, &last);
    pc_pmem_copy (c->pm, pc_seg_addr (c, lg->head.seg, lg->head.off), &last,
                  sizeof last);
    pc_log_mark (lg, lg->head.seq, now, step);
    lg->head.seg = next;
    lg->head.off = 0;
    lg->head.seq++;
  }

  /* Clear the header slot after this kset first: a kset left there by an
   * earlier pass over the segment (or after a truncated replay) could
   * otherwise carry the next sequence number and be replayed.
   */
  pc_pmem_set (c->pm, pc_seg_addr (c, lg->head.seg, lg->head.off + span), 0,
               sizeof *h);
  memset (h, 0, sizeof *h);
  h->magic = PC_KSET_MAGIC;
  h->seq = lg->head.seq;
  h->epoch = lg->epoch;
  h->nkeys = n;
  for (i = 0; i < nkb; i++) {
    memcpy (rec, kbs[i]->keys, kbs[i]->nkeys * sizeof *rec);
    rec += kbs[i]->nkeys;
  }
  h->crc = pc_kset_crc (c->geom.seed, h);
  pc_pmem_copy (c->pm, pc_seg_addr (c, lg->head.seg, lg->head.off), h,
                PC_KSET_BYTES (n));
  pc_log_mark (lg, lg->head.seq, now, step);
  lg->head.off += span;
  lg->head.seq++;
  atomic_store (&lg->head_seq, lg->head.seq);
  return 0;
}

/* Wake idle writeback once the log has grown by the few ksets it waits
 * for, not at every commit: a commit runs under the writer's subtree and
 * buffer locks, and a wake-up there costs a system call and may switch
 * away from the writer while it holds them.  The head_seq store before
 * this load and writeback's wb_wake_seq store before its head_seq load
 * (both sequentially consistent) make sure one of the two sees the
 * other's, so no wake-up is lost.
 */
static void
wake_writeback (struct pc_cache *c)
{
  uint64_t wake = atomic_load (&c->wb_wake_seq);

  /* One commit kicks for each mark: until writeback runs again (it sets
   * the next mark before it sleeps), the commits after it would each
   * kick a thread that is already woken.
   */
  if (atomic_load (&c->log.head_seq) >= wake &&
      atomic_compare_exchange_strong (&c->wb_wake_seq, &wake, UINT64_MAX))
    pc_kick_workers (c);
}

/* Caller holds the log lock and the buffers' locks.  One kset of the
 * nkb buffers' n records; they are emptied if it is written.
 */
static int
commit_group (struct pc_cache *c, struct pc_kbuf *const *kbs, unsigned nkb,
              uint32_t n, int wait)
{
  unsigned i;

  if (log_write (c, kbs, nkb, n, wait) == -1)
    return -1;
  for (i = 0; i < nkb; i++) {
    kbs[i]->nkeys = 0;
    kbs[i]->seals++;
  }
  return 0;
}

/* Without wait, give up (EBUSY) on a log lock held so long that its
 * holder may be waiting for space that only the caller can free.
 */
static int
kbuf_commit (struct pc_cache *c, struct pc_kbuf *kb, int wait)
{
  int r;

  if (kb->nkeys == 0)
    return 0;
  if (wait)
    pthread_mutex_lock (&c->log.lock);
  else if (pc_mutex_lock_ms (&c->log.lock, PC_NOWAIT_LOCK_MS) != 0) {
    errno = EBUSY;
    return -1;
  }
  r = commit_group (c, &kb, 1, kb->nkeys, wait);
  pthread_mutex_unlock (&c->log.lock);
  if (r == 0)
    wake_writeback (c);
  return r;
}

int
pc_kbuf_commit (struct pc_cache *c, struct pc_kbuf *kb)
{
  pc_assert_held (&kb->lock);
  return kbuf_commit (c, kb, 1);
}

int
pc_kbuf_add (struct pc_cache *c, struct pc_kbuf *kb,
             const struct pc_key_rec *rec, uint64_t *seal_gen)
{
  pc_assert_held (&kb->lock);
  /* A buffer left full by a failed commit must drain before it grows. */
  if (kb->nkeys == PC_KSET_MAX_KEYS && pc_kbuf_commit (c, kb) == -1)
    return -1;
  if (kb->nkeys == 0)
    kb->first_ms = pc_now_ms ();
  kb->keys[kb->nkeys++] = *rec;
  if (seal_gen)
    *seal_gen = kb->seals;
  /* The record is queued even if this commit fails; it is retried. */
  if (kb->nkeys == PC_KSET_MAX_KEYS)
    pc_kbuf_commit (c, kb);
  return 0;
}

int
pc_kbuf_commit_upto (struct pc_cache *c, struct pc_kbuf *kb,
                     uint64_t seal_gen)
{
  int r = 0;

  pthread_mutex_lock (&kb->lock);
  if (kb->seals == seal_gen)
    r = pc_kbuf_commit (c, kb);
  pthread_mutex_unlock (&kb->lock);
  return r;
}

/* Every buffer into as few ksets as hold them, a buffer never split
 * between two (so that one that fails stays whole, to be retried): a
 * flush after writes spread over the buffers then writes and drains one
 * kset instead of one a buffer.  Records of two buffers never overlap
 * (a stripe has one buffer), so their order in a kset does not matter.
 * Buffers are locked in index order, the log lock after them, as
 * everywhere.
 */
int
pc_log_commit_all (struct pc_cache *c, int end_epoch)
{
  struct pc_kbuf *kbs[PC_NKBUFS];
  unsigned i, nkb = 0;
  uint32_t n = 0;
  int r = 0;

  for (i = 0; i < PC_NKBUFS; i++)
    pthread_mutex_lock (&c->kbufs[i].lock);
  pthread_mutex_lock (&c->log.lock);
  for (i = 0; i < PC_NKBUFS; i++) {
    struct pc_kbuf *kb = &c->kbufs[i];

    if (kb->nkeys == 0)
      continue;
    if (n + kb->nkeys > PC_KSET_MAX_KEYS) {
      if (commit_group (c, kbs, nkb, n, 1) == -1)
        r = -1;
      nkb = 0;
      n = 0;
    }
    kbs[nkb++] = kb;
    n += kb->nkeys;
  }
  if (nkb > 0 && commit_group (c, kbs, nkb, n, 1) == -1)
    r = -1;
  /* Ksets written from now on belong to the next epoch; writeback
   * flushes the backend between epochs.
   */
  if (end_epoch && r == 0)
    c->log.epoch++;
  pthread_mutex_unlock (&c->log.lock);
  for (i = 0; i < PC_NKBUFS; i++)
    pthread_mutex_unlock (&c->kbufs[i].lock);
  wake_writeback (c);
  return r;
}

int
pc_log_commit_nowait (struct pc_cache *c, uint64_t *epoch)
{
  unsigned i;

  for (i = 0; i < PC_NKBUFS; i++) {
    int r;

    /* A writer holding a buffer may be waiting for log space, which
     * the caller (writeback, and GC after it) may be the one to free.
     */
    if (pc_mutex_lock_ms (&c->kbufs[i].lock, PC_NOWAIT_LOCK_MS) != 0) {
      errno = EBUSY;
      return -1;
    }
    r = kbuf_commit (c, &c->kbufs[i], 0);
    pthread_mutex_unlock (&c->kbufs[i].lock);
    if (r == -1)
      return -1;
  }
  *epoch = pc_log_epoch (c);
  return 0;
}

void
pc_log_head (struct pc_cache *c, struct pc_pos *pos)
{
  pthread_mutex_lock (&c->log.lock);
  *pos = c->log.head;
  pthread_mutex_unlock (&c->log.lock);
}

uint64_t
pc_log_epoch (struct pc_cache *c)
{
  return atomic_load (&c->log.epoch);
}

int
pc_log_commit_aged (struct pc_cache *c, uint64_t age_ms)
{
  uint64_t now = pc_now_ms ();
  unsigned i;
  int r = 0;

  for (i = 0; i < PC_NKBUFS; i++) {
    struct pc_kbuf *kb = &c->kbufs[i];

    pthread_mutex_lock (&kb->lock);
    if (kb->nkeys > 0 && now - kb->first_ms >= age_ms &&
        pc_kbuf_commit (c, kb) == -1)
      r = -1;
    pthread_mutex_unlock (&kb->lock);
  }
  return r;
}

const struct pc_kset_hdr *
pc_kset_at (struct pc_cache *c, const struct pc_pos *pos, const char **why)
{
  return pc_fmt_kset_at (&c->geom, pos, why);
}

void
pc_kset_next (struct pc_cache *c, const struct pc_kset_hdr *h,
              struct pc_pos *pos)
{
  (void) c;
  pc_fmt_kset_next (h, pos);
}
