/* SPDX-License-Identifier: BSD-3-Clause */
/* Logging and small helpers shared by the engine. */
#ifndef PC_UTIL_H
#define PC_UTIL_H

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>

#include "pcache.h"

void pc_error (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
void pc_debug (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));

/* The PC_TRACE_* kinds being traced (pc_set_trace). */
extern unsigned pc_trace_mask;

/* A debug line if kind (a PC_TRACE_*) is traced. */
#define PC_TRACE(kind, ...) \
  do { if (pc_trace_mask & (kind)) pc_debug (__VA_ARGS__); } while (0)

/* Log and fail with errno set to e. */
/* Log an error, set errno to e and return -1: "return pc_fail (...)". */
int pc_fail (int e, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

#define PC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PC_MAX(a, b) ((a) > (b) ? (a) : (b))
#define PC_ALIGN_UP(x, a) (((x) + (a) - 1) & ~((uint64_t) (a) - 1))

/* An empty regular file holds nothing to lose: a cache is made there
 * as where nothing is (pc_cache_path_is_new, pc_pmem_open).
 */
#define PC_STAT_IS_EMPTY_FILE(st) \
  (S_ISREG ((st)->st_mode) && (st)->st_size == 0)

uint64_t pc_now_ms (void);
/* The same clock as of the last timer tick: never ahead of pc_now_ms,
 * and several times cheaper to read.
 */
uint64_t pc_now_ms_coarse (void);

#include <pthread.h>
/* pthread_cond_timedwait for at most ms milliseconds. */
int pc_cond_wait_ms (pthread_cond_t *cv, pthread_mutex_t *m, unsigned ms);
/* pthread_mutex_lock, giving up after ms milliseconds (ETIMEDOUT). */
int pc_mutex_lock_ms (pthread_mutex_t *m, unsigned ms);

/* Name the calling background thread and make it SCHED_BATCH: it keeps
 * its fair share of CPU, but its wake-ups (a backend write completing,
 * a timer) never preempt a thread serving a client, which might be
 * holding nbdkit's connection lock.
 */
void pc_thread_background (const char *name);

#endif /* PC_UTIL_H */
