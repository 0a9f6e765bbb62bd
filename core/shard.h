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

/* A reader-writer lock whose read side every write takes and whose
 * write side a mode switch takes, rarely.  A reader counts itself in on
 * its thread shard, then looks for a writer; a writer raises its flag,
 * then waits for every shard's count to fall to zero.  Each side's store
 * then load needs a full barrier between them.  Where membarrier(2) lets
 * the writer make every thread of the process run one (pc_brlock_asym),
 * the reader's is a compiler barrier only, so that a reader alone on its
 * shard locks and unlocks with plain loads and stores: no locked
 * instruction, and no wait for the payload stores before it to drain.
 * Otherwise both sides use sequentially consistent atomics.
 */
struct pc_brlock {
  struct {
    _Atomic uint64_t n;                 /* readers in, on this shard */
  } __attribute__ ((aligned (PC_CACHELINE))) s[PC_NSHARDS];
  _Atomic int writer;                   /* a writer is in, or waits */
  pthread_mutex_t wlock;                /* held by the writer */
  pthread_mutex_t wait_lock;            /* the writer waits for readers */
  pthread_cond_t left;                  /* a reader left while it waits */
};

/* Whether readers rely on the writer's membarrier.  Set once, by the
 * first pc_brlock_init; tests may clear it while no lock is in use.
 */
extern int pc_brlock_asym;

int pc_brlock_init (struct pc_brlock *b);
void pc_brlock_destroy (struct pc_brlock *b);
void pc_brlock_wrlock (struct pc_brlock *b);
void pc_brlock_wrunlock (struct pc_brlock *b);
/* Slow paths of the read side: wait for the writer to finish; wake a
 * writer waiting for readers to leave.
 */
void pc_brlock_rdwait (struct pc_brlock *b);
void pc_brlock_rdleft (struct pc_brlock *b);

/* Add d to this thread's count, then load the writer flag. */
static inline int
pc_brlock_count (struct pc_brlock *b, uint64_t d, memory_order mo)
{
  _Atomic uint64_t *n = &b->s[pc_thread_shard ()].n;

  if (!pc_brlock_asym) {
    atomic_fetch_add (n, d);
    return atomic_load (&b->writer);
  }
  if (pc_shard_own)
    atomic_store_explicit (n, atomic_load_explicit (n, memory_order_relaxed)
                           + d, mo);
  else
    atomic_fetch_add_explicit (n, d, mo);
  atomic_signal_fence (memory_order_seq_cst);
  return atomic_load_explicit (&b->writer, memory_order_acquire);
}

/* Not recursive: a reader that a waiting writer turns back would wait
 * for it while it holds the lock.
 */
static inline void
pc_brlock_rdlock (struct pc_brlock *b)
{
  while (pc_brlock_count (b, 1, memory_order_relaxed)) {
    if (pc_brlock_count (b, UINT64_MAX, memory_order_release))
      pc_brlock_rdleft (b);
    pc_brlock_rdwait (b);
  }
}

static inline void
pc_brlock_rdunlock (struct pc_brlock *b)
{
  if (pc_brlock_count (b, UINT64_MAX, memory_order_release))
    pc_brlock_rdleft (b);
}

#endif /* PC_SHARD_H */
