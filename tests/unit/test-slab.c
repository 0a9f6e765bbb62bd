/* SPDX-License-Identifier: BSD-3-Clause */
/* The index's object pools (slab.h): objects are distinct and aligned,
 * frees on one thread feed allocations on another, and while the
 * helper runs, a pool that keeps allocating never carves a chunk on the
 * allocating thread after its first.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "slab.h"
#include "testutil.h"

#define CHUNK (UINT64_C (2) << 20)

/* Pools of their own: each case starts from no chunk at all. */
static struct pc_slab small = PC_SLAB_INIT (64, 0);
static struct pc_slab big = PC_SLAB_INIT (4096, 1);
static struct pc_slab other = PC_SLAB_INIT (4096, 2);

static int
cmp_ptr (const void *a, const void *b)
{
  uintptr_t x = (uintptr_t) *(void *const *) a;
  uintptr_t y = (uintptr_t) *(void *const *) b;

  return x < y ? -1 : x > y;
}

/* n objects of s, each written over, checked aligned and distinct. */
static void **
alloc_n (struct pc_slab *s, size_t n)
{
  void **v = calloc (n, sizeof *v);
  size_t i;

  CU_ASSERT_PTR_NOT_NULL_FATAL (v);
  for (i = 0; i < n; i++) {
    v[i] = pc_slab_alloc (s);
    CU_ASSERT_PTR_NOT_NULL_FATAL (v[i]);
    CU_ASSERT_EQUAL ((uintptr_t) v[i] % s->size, 0);
    memset (v[i], 0xa5, s->size);
  }
  qsort (v, n, sizeof *v, cmp_ptr);
  for (i = 1; i < n; i++)
    CU_ASSERT ((uint8_t *) v[i - 1] + s->size <= (uint8_t *) v[i]);
  return v;
}

static void
free_n (struct pc_slab *s, void **v, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++)
    pc_slab_free (s, v[i]);
  free (v);
}

static void
test_distinct (void)
{
  size_t n = 3 * CHUNK / small.size;
  uint64_t mapped;
  void **v = alloc_n (&small, n);

  mapped = pc_slab_bytes ();
  free_n (&small, v, n);
  /* The freed objects serve again: no new chunk. */
  v = alloc_n (&small, n);
  CU_ASSERT_EQUAL (pc_slab_bytes (), mapped);
  free_n (&small, v, n);
}

struct hand {
  void **v;
  size_t n;
};

static void *
free_main (void *arg)
{
  struct hand *h = arg;

  free_n (&small, h->v, h->n);
  return NULL;
}

static void
test_cross_thread (void)
{
  struct hand h = { .n = CHUNK / small.size };
  uint64_t mapped;
  pthread_t t;

  h.v = alloc_n (&small, h.n);
  mapped = pc_slab_bytes ();
  CU_ASSERT_EQUAL_FATAL (pthread_create (&t, NULL, free_main, &h), 0);
  pthread_join (t, NULL);
  /* The other thread's spares went back to the pool when it ended. */
  h.v = alloc_n (&small, h.n);
  CU_ASSERT_EQUAL (pc_slab_bytes (), mapped);
  free_n (&small, h.v, h.n);
}

/* Allocate four chunks' worth of s's objects, one at a time, and
 * return how many chunks were carved on this thread meanwhile.
 */
static uint64_t
grow (struct pc_slab *s)
{
  size_t per_chunk = CHUNK / s->size, i, n = 4 * per_chunk;
  struct pc_slab_stats before, after;
  void **v = calloc (n, sizeof *v);

  CU_ASSERT_PTR_NOT_NULL_FATAL (v);
  pc_slab_get_stats (&before);
  for (i = 0; i < n; i++) {
    v[i] = pc_slab_alloc (s);
    CU_ASSERT_PTR_NOT_NULL_FATAL (v[i]);
    /* Let the helper finish what it was asked for: the test must not
     * depend on whether it is quicker than this loop.
     */
    if (i % 32 == 0)
      pc_slab_settle ();
  }
  pc_slab_get_stats (&after);
  /* Kept: these pools only ever grow, each case on a pool of its own. */
  free (v);
  return after.chunks_inline - before.chunks_inline;
}

static void
test_ahead (void)
{
  struct pc_slab_stats before, after;

  CU_ASSERT_EQUAL_FATAL (pc_slab_start (), 0);
  pc_slab_get_stats (&before);
  /* Only the first chunk, when the pool has none at all. */
  CU_ASSERT_EQUAL (grow (&big), 1);
  pc_slab_get_stats (&after);
  CU_ASSERT (after.chunks_ahead - before.chunks_ahead >= 3);
  pc_slab_stop ();
}

static void
test_no_helper (void)
{
  struct pc_slab_stats before, after;

  /* Stopped: every chunk is carved by the allocation that needs it. */
  pc_slab_get_stats (&before);
  CU_ASSERT_EQUAL (grow (&other), 4);
  pc_slab_get_stats (&after);
  CU_ASSERT_EQUAL (after.chunks_ahead, before.chunks_ahead);
}

static const struct tu_case cases[] = {
  { "objects are distinct, aligned and reused", test_distinct },
  { "frees on one thread feed another", test_cross_thread },
  { "the helper carves chunks ahead of need", test_ahead },
  { "without it, the allocating thread carves", test_no_helper },
  { NULL, NULL },
};

int
main (void)
{
  return tu_main ("slab", cases, 120, 0);
}
