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

#define PC_NSHARDS 16
#define PC_CACHELINE 64

/* This thread's shard plus one, 0 until it has one.  One variable for
 * the whole engine, so a thread has the same shard in every file.
 */
extern __thread unsigned pc_shard_slot;
unsigned pc_shard_assign (void);

/* This thread's shard: fixed for its life, handed out round robin. */
static inline unsigned
pc_thread_shard (void)
{
  return pc_shard_slot ? pc_shard_slot - 1 : pc_shard_assign ();
}

/* Sum a uint64_t field over n shards laid out stride bytes apart. */
uint64_t pc_shard_sum (const void *first, size_t stride, unsigned n);

/* A reader-writer lock readers take on their own shard only; a writer
 * takes every shard, in order.
 */
struct pc_brlock {
  struct {
    pthread_rwlock_t l;
  } __attribute__ ((aligned (PC_CACHELINE))) s[PC_NSHARDS];
};

int pc_brlock_init (struct pc_brlock *b);
void pc_brlock_destroy (struct pc_brlock *b);
void pc_brlock_wrlock (struct pc_brlock *b);
void pc_brlock_wrunlock (struct pc_brlock *b);

/* The same thread unlocks the shard it locked. */
static inline void
pc_brlock_rdlock (struct pc_brlock *b)
{
  pthread_rwlock_rdlock (&b->s[pc_thread_shard ()].l);
}

static inline void
pc_brlock_rdunlock (struct pc_brlock *b)
{
  pthread_rwlock_unlock (&b->s[pc_thread_shard ()].l);
}

#endif /* PC_SHARD_H */
