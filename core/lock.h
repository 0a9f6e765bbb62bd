/* SPDX-License-Identifier: BSD-3-Clause */
/* Locks held for well under a microsecond: the index subtrees, key
 * buffers, data heads and segment counts.
 *
 * A futex sleep and wake-up cost several microseconds and can leave a
 * CPU idle, many times what these critical sections hold a lock for, so
 * a thread that finds one taken spins a little before it sleeps.
 */
#ifndef PC_LOCK_H
#define PC_LOCK_H

#include <pthread.h>

#ifdef PC_DEBUG_LOCKS
#include <assert.h>
#include <errno.h>
#endif

/* Debug builds (configure --enable-sanitizers defines PC_DEBUG_LOCKS):
 * check a "caller holds" contract.  A trylock cannot tell which thread
 * holds the lock, but a caller that forgot it is caught whenever no
 * other thread holds it at that moment, as in single-threaded tests.
 */
static inline void
pc_assert_held (pthread_mutex_t *m)
{
#ifdef PC_DEBUG_LOCKS
  int r = pthread_mutex_trylock (m);

  if (r == 0)
    pthread_mutex_unlock (m);
  assert (r == EBUSY && "caller holds the mutex");
#else
  (void) m;
#endif
}

/* The write lock: a read lock cannot be had while it is held. */
static inline void
pc_assert_wrheld (pthread_rwlock_t *l)
{
#ifdef PC_DEBUG_LOCKS
  int r = pthread_rwlock_tryrdlock (l);

  if (r == 0)
    pthread_rwlock_unlock (l);
  assert (r != 0 && "caller holds the write lock");
#else
  (void) l;
#endif
}

#define PC_LOCK_SPINS 50                /* a pause takes 10-40 ns */

static inline void
pc_cpu_relax (void)
{
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause ();
#endif
}

/* glibc's adaptive mutex spins before it sleeps. */
static inline int
pc_lock_init (pthread_mutex_t *m)
{
  pthread_mutexattr_t a;
  int r;

  pthread_mutexattr_init (&a);
  pthread_mutexattr_settype (&a, PTHREAD_MUTEX_ADAPTIVE_NP);
  r = pthread_mutex_init (m, &a);
  pthread_mutexattr_destroy (&a);
  return r;
}

/* glibc's rwlock has no such mode: try, pause, then block. */
static inline void
pc_rwlock_spin (pthread_rwlock_t *l, int (*try) (pthread_rwlock_t *),
                int (*block) (pthread_rwlock_t *))
{
  int i;

  for (i = 0; i < PC_LOCK_SPINS; i++) {
    if (try (l) == 0)
      return;
    pc_cpu_relax ();
  }
  block (l);
}

static inline void
pc_wrlock (pthread_rwlock_t *l)
{
  pc_rwlock_spin (l, pthread_rwlock_trywrlock, pthread_rwlock_wrlock);
}

static inline void
pc_rdlock (pthread_rwlock_t *l)
{
  pc_rwlock_spin (l, pthread_rwlock_tryrdlock, pthread_rwlock_rdlock);
}

#endif /* PC_LOCK_H */
