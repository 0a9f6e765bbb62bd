/* SPDX-License-Identifier: BSD-3-Clause */
/* Per-thread shards (see shard.h). */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>

#include "shard.h"

__thread unsigned pc_shard_slot;
__thread int pc_shard_own;

_Static_assert (PC_NSHARDS_OWN <= 64 && PC_NSHARDS_OWN < PC_NSHARDS,
                "owned shards fit the map, and some are left to share");

static _Atomic uint64_t owned;          /* bit i: shard i has an owner */
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

/* The owner is gone: the next thread may have its shard, counts and
 * all (the release orders the owner's last adds before the next one's).
 */
static void
release (void *arg)
{
  unsigned s = (unsigned) (uintptr_t) arg - 1;

  pc_shard_own = 0;
  pc_shard_slot = PC_NSHARDS_OWN + 1;   /* any late add is a locked one */
  atomic_fetch_and_explicit (&owned, ~(UINT64_C (1) << s),
                             memory_order_release);
}

static void
make_exit_key (void)
{
  pthread_key_create (&exit_key, release);
}

/* A free shard of its own for this thread, or -1. */
static int
claim (void)
{
  uint64_t m = atomic_load_explicit (&owned, memory_order_relaxed);
  const uint64_t all = PC_NSHARDS_OWN == 64 ? UINT64_MAX
    : (UINT64_C (1) << PC_NSHARDS_OWN) - 1;
  unsigned s;

  do {
    if ((m & all) == all)
      return -1;
    s = (unsigned) __builtin_ctzll (~m);
  } while (!atomic_compare_exchange_weak_explicit (&owned, &m,
                                                   m | (UINT64_C (1) << s),
                                                   memory_order_acquire,
                                                   memory_order_relaxed));
  return (int) s;
}

unsigned
pc_shard_assign (void)
{
  static _Atomic unsigned next;
  int s;

  pthread_once (&exit_once, make_exit_key);
  s = claim ();
  if (s >= 0 &&
      pthread_setspecific (exit_key, (void *) (uintptr_t) (s + 1)) != 0) {
    release ((void *) (uintptr_t) (s + 1));
    s = -1;
  }
  if (s >= 0)
    pc_shard_own = 1;
  else
    s = PC_NSHARDS_OWN + (int) (atomic_fetch_add_explicit (&next, 1,
                                                           memory_order_relaxed)
                                % (PC_NSHARDS - PC_NSHARDS_OWN));
  pc_shard_slot = (unsigned) s + 1;
  return (unsigned) s;
}

uint64_t
pc_shard_sum (const void *first, size_t stride, unsigned n)
{
  const char *p = first;
  uint64_t sum = 0;
  unsigned i;

  for (i = 0; i < n; i++, p += stride)
    sum += atomic_load_explicit ((const _Atomic uint64_t *) p,
                                 memory_order_relaxed);
  return sum;
}

int
pc_brlock_init (struct pc_brlock *b)
{
  unsigned i;
  int r;

  for (i = 0; i < PC_BRLOCK_SHARDS; i++) {
    r = pthread_rwlock_init (&b->s[i].l, NULL);
    if (r != 0) {
      while (i-- > 0)
        pthread_rwlock_destroy (&b->s[i].l);
      errno = r;
      return -1;
    }
  }
  return 0;
}

void
pc_brlock_destroy (struct pc_brlock *b)
{
  unsigned i;

  for (i = 0; i < PC_BRLOCK_SHARDS; i++)
    pthread_rwlock_destroy (&b->s[i].l);
}

void
pc_brlock_wrlock (struct pc_brlock *b)
{
  unsigned i;

  for (i = 0; i < PC_BRLOCK_SHARDS; i++)
    pthread_rwlock_wrlock (&b->s[i].l);
}

void
pc_brlock_wrunlock (struct pc_brlock *b)
{
  unsigned i = PC_BRLOCK_SHARDS;

  while (i-- > 0)
    pthread_rwlock_unlock (&b->s[i].l);
}
