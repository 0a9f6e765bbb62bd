/* SPDX-License-Identifier: BSD-3-Clause */
/* The commit timer: a kset buffer holding keys longer than
 * pcache-commit-ms is committed to the log, so that a client that
 * never flushes still has its writes logged in bounded time.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <pthread.h>

#include "cache_internal.h"
#include "kset.h"
#include "timer.h"
#include "util.h"

void *
pc_timer_thread (void *arg)
{
  struct pc_cache *c = arg;
  unsigned tick = PC_MAX (c->commit_ms / 4, 10u);

  pc_thread_background ("pcache-timer");
  pthread_mutex_lock (&c->bg_lock);
  while (!c->stop) {
    pc_cond_wait_ms (&c->timer_cv, &c->bg_lock, tick);
    if (c->stop)
      break;
    pthread_mutex_unlock (&c->bg_lock);
    pc_log_commit_aged (c, c->commit_ms);
    pthread_mutex_lock (&c->bg_lock);
  }
  pthread_mutex_unlock (&c->bg_lock);
  return NULL;
}
