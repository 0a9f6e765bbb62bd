/* SPDX-License-Identifier: BSD-3-Clause */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "lock.h"
#include "meta.h"
#include "segment.h"
#include "util.h"

static inline pthread_mutex_t *
seg_lock (struct pc_segs *s, uint32_t id)
{
  return &s->locks[id % PC_SEG_LOCKS];
}

/* The pin word of a segment at generation gen with no references. */
static inline uint64_t
pin_word (uint64_t gen, int live)
{
  return (uint64_t) (uint32_t) gen << 32 | (live ? PC_PIN_LIVE : 0);
}

int
pc_segs_init (struct pc_segs *s, uint32_t nsegs, struct pc_pmem *pm,
              uint8_t *table)
{
  unsigned i;

  memset (s, 0, sizeof *s);
  s->nsegs = nsegs;
  s->pm = pm;
  s->table = table;
  s->wait_ms = PC_SEGS_WAIT_MS;
  s->seg = calloc (nsegs, sizeof *s->seg);
  s->free_stack = calloc (nsegs, sizeof *s->free_stack);
  if (!s->seg || !s->free_stack) {
    free (s->seg);
    free (s->free_stack);
    errno = ENOMEM;
    return -1;
  }
  for (i = 0; i < PC_SEG_LOCKS; i++)
    pc_lock_init (&s->locks[i]);
  pc_lock_init (&s->free_lock);
  pthread_cond_init (&s->free_cv, NULL);
  return 0;
}

void
pc_segs_destroy (struct pc_segs *s)
{
  unsigned i;

  if (!s->seg)
    return;
  for (i = 0; i < PC_SEG_LOCKS; i++)
    pthread_mutex_destroy (&s->locks[i]);
  pthread_mutex_destroy (&s->free_lock);
  pthread_cond_destroy (&s->free_cv);
  free (s->seg);
  free (s->free_stack);
  s->seg = NULL;
}

void
pc_segs_format (struct pc_segs *s)
{
  uint32_t i;

  for (i = 0; i < s->nsegs; i++) {
    struct pc_seg *g = &s->seg[i];
    int slot = 1;

    /* Generation 0 in both slots (pc_gen_store). */
    g->gen = 0;
    g->gen_seq = 0;
    pc_gen_store (s->pm, s->table + (uint64_t) i * PC_SEGTAB_ENTRY, 0,
                  &g->gen_seq, &slot);
    g->gen_slot = slot;
    atomic_store (&g->pin, pin_word (0, 0));
  }
}

int
pc_segs_load (struct pc_segs *s, uint32_t *bad)
{
  uint32_t i;

  for (i = 0; i < s->nsegs; i++) {
    struct pc_seg *g = &s->seg[i];
    int slot = pc_gen_load (s->table + (uint64_t) i * PC_SEGTAB_ENTRY,
                            &g->gen, &g->gen_seq);
    if (slot < 0) {
      *bad = i;
      return -1;
    }
    g->gen_slot = slot;
    atomic_store (&g->pin, pin_word (g->gen, 0));
  }
  return 0;
}

void
pc_segs_build_free (struct pc_segs *s)
{
  uint32_t i;

  pthread_mutex_lock (&s->free_lock);
  s->nfree = 0;
  /* Push in reverse so that allocation starts from low ids. */
  for (i = s->nsegs; i-- > 0; )
    if (s->seg[i].role == PC_SEG_FREE)
      s->free_stack[s->nfree++] = i;
  pthread_mutex_unlock (&s->free_lock);
}

int64_t
pc_seg_alloc (struct pc_segs *s, enum pc_seg_role role, uint32_t reserve)
{
  int64_t id = -1;

  pthread_mutex_lock (&s->free_lock);
  if (s->nfree > reserve)
    id = s->free_stack[--s->nfree];
  pthread_mutex_unlock (&s->free_lock);
  if (id >= 0) {
    pthread_mutex_lock (seg_lock (s, id));
    s->seg[id].role = role;
    atomic_store (&s->seg[id].pin,
                  pin_word (s->seg[id].gen, role == PC_SEG_DATA));
    pthread_mutex_unlock (seg_lock (s, id));
  }
  return id;
}

void
pc_segs_wait (struct pc_segs *s, uint32_t reserve)
{
  uint64_t end = pc_now_ms () + s->wait_ms, now, seq;

  pthread_mutex_lock (&s->free_lock);
  s->waiters++;
  seq = s->frees;
  /* Any free ends the wait, even one another thread takes first: that
   * thread may have taken it for the data head the caller shares.
   */
  while (s->nfree <= reserve && s->frees == seq &&
         (now = pc_now_ms ()) < end)
    pc_cond_wait_ms (&s->free_cv, &s->free_lock, (unsigned) (end - now));
  s->waiters--;
  pthread_mutex_unlock (&s->free_lock);
}

uint32_t
pc_segs_nfree (struct pc_segs *s)
{
  uint32_t n;

  pthread_mutex_lock (&s->free_lock);
  n = s->nfree;
  pthread_mutex_unlock (&s->free_lock);
  return n;
}

uint32_t
pc_segs_waiters (struct pc_segs *s)
{
  uint32_t n;

  pthread_mutex_lock (&s->free_lock);
  n = s->waiters;
  pthread_mutex_unlock (&s->free_lock);
  return n;
}

void
pc_seg_get_n (struct pc_segs *s, uint32_t id, uint32_t n)
{
  atomic_fetch_add (&s->seg[id].pin, n);
}

void
pc_seg_hold_replayed (struct pc_segs *s, uint32_t id)
{
  struct pc_seg *g = &s->seg[id];

  g->role = PC_SEG_DATA;
  atomic_store (&g->pin, (atomic_load (&g->pin) + 1) | PC_PIN_LIVE);
}

void
pc_seg_reload_gen (struct pc_segs *s, uint32_t id)
{
  struct pc_seg *g = &s->seg[id];
  uint64_t gen;
  uint32_t seq;
  int slot = pc_gen_load (s->table + (uint64_t) id * PC_SEGTAB_ENTRY, &gen,
                          &seq);

  if (slot < 0 || (int32_t) ((uint32_t) gen - (uint32_t) g->gen) <= 0)
    return;
  g->gen = gen;
  g->gen_seq = seq;
  g->gen_slot = slot;
  g->role = PC_SEG_FREE;
  atomic_store (&g->pin, pin_word (gen, 0));
}

int
pc_seg_get_if_gen (struct pc_segs *s, uint32_t id, uint32_t gen)
{
  struct pc_seg *g = &s->seg[id];
  uint64_t w = atomic_load (&g->pin);

  /* Only a count above zero may grow: at zero the segment is on its way
   * to the free list, and its generation about to change.
   */
  do {
    if (!(w & PC_PIN_LIVE) || !(w & PC_PIN_REFS) ||
        (uint32_t) (w >> 32) != gen)
      return 0;
  } while (!atomic_compare_exchange_weak (&g->pin, &w, w + 1));
  return 1;
}

/* Bump and persist the generation, then hand the segment out again.
 * The generation must be durable first: replay uses it to tell stale
 * keys from live ones.
 */
static void
seg_free (struct pc_segs *s, uint32_t id)
{
  pthread_mutex_lock (&s->free_lock);
  s->free_stack[s->nfree++] = id;
  s->frees++;
  /* Under the lock: a waiter checks nfree under it before it sleeps. */
  if (s->waiters > 0)
    pthread_cond_broadcast (&s->free_cv);
  pthread_mutex_unlock (&s->free_lock);
}

static void
bump_gen_locked (struct pc_segs *s, uint32_t id)
{
  struct pc_seg *g = &s->seg[id];
  int slot = g->gen_slot;

  g->gen++;
  pc_gen_store (s->pm, s->table + (uint64_t) id * PC_SEGTAB_ENTRY, g->gen,
                &g->gen_seq, &slot);
  g->gen_slot = slot;
  g->role = PC_SEG_FREE;
  atomic_store (&g->pin, pin_word (g->gen, 0));
}

int
pc_seg_gen_is (struct pc_segs *s, uint32_t id, uint32_t gen)
{
  int r;

  pthread_mutex_lock (seg_lock (s, id));
  r = (uint32_t) s->seg[id].gen == gen;
  pthread_mutex_unlock (seg_lock (s, id));
  return r;
}

int
pc_seg_put_n (struct pc_segs *s, uint32_t id, uint32_t n)
{
  struct pc_seg *g = &s->seg[id];
  uint64_t w = atomic_fetch_sub (&g->pin, n);

  if ((w & PC_PIN_REFS) < n) {
    pc_error ("segment %u: %u references dropped, %u held", id, n,
              (unsigned) (w & PC_PIN_REFS));
    abort ();
  }
  /* Only the last reference of a live data segment frees it; no other
   * can be taken once the count is zero.
   */
  if ((w & PC_PIN_REFS) != n || !(w & PC_PIN_LIVE))
    return 0;
  pthread_mutex_lock (seg_lock (s, id));
  bump_gen_locked (s, id);
  pthread_mutex_unlock (seg_lock (s, id));
  seg_free (s, id);
  return 1;
}

void
pc_seg_release (struct pc_segs *s, uint32_t id)
{
  pthread_mutex_lock (seg_lock (s, id));
  bump_gen_locked (s, id);
  pthread_mutex_unlock (seg_lock (s, id));
  seg_free (s, id);
}
