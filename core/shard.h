/* SPDX-License-Identifier: BSD-3-Clause */
/* Per-thread shards of hot shared state.
 *
 * Every write touches a few counters and the mode lock.  Shared by all
 * threads, each would move its cache line between CPUs on every
 * request; sharded, a thread stays on its own line and the rare reader
 * (statistics, a mode switch) visits them all.
 */
#ifndef PC_SHARD_H
#define PC_SHARD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define PC_NSHARDS 64
#define PC_NSHARDS_OWN 56      /* shards a thread may have to itself */
#define PC_BRLOCK_SHARDS 16    /* a writer holds them all: keep it few */
#define PC_CACHELINE 64

/* This thread's shard plus one, 0 until it has one.  One variable for
 * the whole engine, so a thread has the same shard in every file.
 */
extern __thread unsigned pc_shard_slot;
/* Whether this thread's shard is its alone: the first PC_NSHARDS_OWN
 * are handed to one live thread each; threads beyond that share the
 * rest, round robin.
 */
extern __thread int pc_shard_own;
unsigned pc_shard_assign (void);

/* This thread's shard: fixed for its life. */
static inline unsigned
pc_thread_shard (void)
{
  return pc_shard_slot ? pc_shard_slot - 1 : pc_shard_assign ();
}

/* Add n to field f of this thread's shard.  In a shard of its own, a
 * load and a store: no other thread writes it, and a locked add would
 * also wait for every store before it (the payload's, on the write
 * path) to drain.  Readers see one or the other value, never a torn
 * one.
 */
static inline void
pc_shard_add (_Atomic uint64_t *f, uint64_t n)
{
  if (pc_shard_own)
    atomic_store_explicit (f, atomic_load_explicit (f, memory_order_relaxed)
                           + n, memory_order_relaxed);
  else
    atomic_fetch_add_explicit (f, n, memory_order_relaxed);
}

/* Sum a uint64_t field over n shards laid out stride bytes apart. */
uint64_t pc_shard_sum (const void *first, size_t stride, unsigned n);

/* The sum of a field that shards add to and take from: one taken from
 * a shard read before the add was made to another comes out below
 * zero, read as zero.
 */
static inline uint64_t
pc_shard_gauge (const void *first, size_t stride, unsigned n)
{
  int64_t sum = (int64_t) pc_shard_sum (first, stride, n);

  return sum < 0 ? 0 : (uint64_t) sum;
}

/* The sum less *base, a sum stored since (a reset).  The base is read
 * first: no shard can then be read older than it was when summed, and
 * the difference cannot go below zero for fields that only grow.
 */
static inline uint64_t
pc_shard_since (const _Atomic uint64_t *base, const void *first,
                size_t stride, unsigned n)
{
  uint64_t b = atomic_load_explicit (base, memory_order_acquire);

  return pc_shard_sum (first, stride, n) - b;
}

/* A reader-writer lock readers take on one shard only, their thread
 * shard's; a writer takes every shard, in order.
 */
struct pc_brlock {
  struct {
    pthread_rwlock_t l;
  } __attribute__ ((aligned (PC_CACHELINE))) s[PC_BRLOCK_SHARDS];
};

int pc_brlock_init (struct pc_brlock *b);
void pc_brlock_destroy (struct pc_brlock *b);
void pc_brlock_wrlock (struct pc_brlock *b);
void pc_brlock_wrunlock (struct pc_brlock *b);

/* The same thread unlocks the shard it locked. */
static inline void
pc_brlock_rdlock (struct pc_brlock *b)
{
  pthread_rwlock_rdlock (&b->s[pc_thread_shard () % PC_BRLOCK_SHARDS].l);
}

static inline void
pc_brlock_rdunlock (struct pc_brlock *b)
{
  pthread_rwlock_unlock (&b->s[pc_thread_shard () % PC_BRLOCK_SHARDS].l);
}

#endif /* PC_SHARD_H */
