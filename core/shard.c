/* SPDX-License-Identifier: BSD-3-Clause */
/* Per-thread shards (see shard.h). */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>

#include "shard.h"

__thread unsigned pc_shard_slot;

unsigned
pc_shard_assign (void)
{
  static _Atomic unsigned next;
  unsigned s = atomic_fetch_add_explicit (&next, 1, memory_order_relaxed)
    % PC_NSHARDS;

  pc_shard_slot = s + 1;
  return s;
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

  for (i = 0; i < PC_NSHARDS; i++) {
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

  for (i = 0; i < PC_NSHARDS; i++)
    pthread_rwlock_destroy (&b->s[i].l);
}

void
pc_brlock_wrlock (struct pc_brlock *b)
{
  unsigned i;

  for (i = 0; i < PC_NSHARDS; i++)
    pthread_rwlock_wrlock (&b->s[i].l);
}

void
pc_brlock_wrunlock (struct pc_brlock *b)
{
  unsigned i = PC_NSHARDS;

  while (i-- > 0)
    pthread_rwlock_unlock (&b->s[i].l);
}
