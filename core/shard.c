/* SPDX-License-Identifier: BSD-3-Clause */
/* Per-thread shards (see shard.h). */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/membarrier.h>

#include "shard.h"
#include "util.h"

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

int pc_brlock_asym;

/* The writer's half of the readers' compiler barrier: every thread of
 * the process runs a full barrier before this returns.
 */
static int
membarrier (int cmd)
{
  return (int) syscall (__NR_membarrier, cmd, 0, 0);
}

static void
heavy_barrier (void)
{
  if (!pc_brlock_asym)
    return;
  if (membarrier (MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0)
    return;
  /* A process forked since the registration may need its own; the
   * global command needs none, and is only slower.
   */
  if (membarrier (MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 &&
      membarrier (MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0)
    return;
  if (membarrier (MEMBARRIER_CMD_GLOBAL) == 0)
    return;
  pc_error ("membarrier failed, after it was found to work: %m");
  abort ();
}

/* Readers may skip their barrier if the kernel has both commands the
 * writer might use.  Not under ThreadSanitizer, which cannot see what a
 * membarrier orders.
 */
static void
choose_barrier (void)
{
#if defined(__SANITIZE_THREAD__)
  pc_brlock_asym = 0;
#else
  int q = membarrier (MEMBARRIER_CMD_QUERY);
  int need = MEMBARRIER_CMD_PRIVATE_EXPEDITED | MEMBARRIER_CMD_GLOBAL;

  pc_brlock_asym = q != -1 && (q & need) == need &&
    membarrier (MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
#endif
}

int
pc_brlock_init (struct pc_brlock *b)
{
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  unsigned i;
  int r;

  pthread_once (&once, choose_barrier);
  for (i = 0; i < PC_NSHARDS; i++)
    atomic_init (&b->s[i].n, 0);
  atomic_init (&b->writer, 0);
  r = pthread_mutex_init (&b->wlock, NULL);
  if (r == 0) {
    r = pthread_mutex_init (&b->wait_lock, NULL);
    if (r == 0) {
      r = pthread_cond_init (&b->left, NULL);
      if (r == 0)
        return 0;
      pthread_mutex_destroy (&b->wait_lock);
    }
    pthread_mutex_destroy (&b->wlock);
  }
  errno = r;
  return -1;
}

void
pc_brlock_destroy (struct pc_brlock *b)
{
  pthread_cond_destroy (&b->left);
  pthread_mutex_destroy (&b->wait_lock);
  pthread_mutex_destroy (&b->wlock);
}

/* Any reader still in?  Every shard is checked on its own: a reader
 * that passed its check before the flag was raised is counted in its
 * shard by now, and none can pass after.
 */
static int
readers_in (struct pc_brlock *b)
{
  unsigned i;

  for (i = 0; i < PC_NSHARDS; i++)
    if (atomic_load (&b->s[i].n) != 0)
      return 1;
  return 0;
}

void
pc_brlock_wrlock (struct pc_brlock *b)
{
  pthread_mutex_lock (&b->wlock);
  atomic_store (&b->writer, 1);
  heavy_barrier ();
  pthread_mutex_lock (&b->wait_lock);
  while (readers_in (b))
    pthread_cond_wait (&b->left, &b->wait_lock);
  pthread_mutex_unlock (&b->wait_lock);
}

void
pc_brlock_wrunlock (struct pc_brlock *b)
{
  atomic_store_explicit (&b->writer, 0, memory_order_release);
  pthread_mutex_unlock (&b->wlock);
}

void
pc_brlock_rdwait (struct pc_brlock *b)
{
  pthread_mutex_lock (&b->wlock);
  pthread_mutex_unlock (&b->wlock);
}

/* Taking the lock the writer checks under means it is either before its
 * check, and will see this reader gone, or asleep, and is woken.
 */
void
pc_brlock_rdleft (struct pc_brlock *b)
{
  pthread_mutex_lock (&b->wait_lock);
  pthread_cond_broadcast (&b->left);
  pthread_mutex_unlock (&b->wait_lock);
}
