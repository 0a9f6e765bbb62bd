/* SPDX-License-Identifier: BSD-3-Clause */
/* Waking the background workers (writeback, and GC within it). */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <pthread.h>

#include "cache_internal.h"
#include "workers.h"

void
pc_kick_workers (struct pc_cache *c)
{
  pthread_mutex_lock (&c->bg_lock);
  c->kicks++;
  pthread_cond_broadcast (&c->bg_cv);
  pthread_mutex_unlock (&c->bg_lock);
}
