/* SPDX-License-Identifier: BSD-3-Clause */
/* pace.c: a byte rate for write-back, as a bucket of credit. */
#ifndef PC_PACE_H
#define PC_PACE_H

#include <pthread.h>
#include <stdint.h>

/* Credit grows at the rate asked for and is spent by the bytes written,
 * so that writes of any size average out to that rate.  Times are
 * given, not read, so that the unit tests need no clock.
 */
struct pc_pace {
  pthread_mutex_t lock;
  int64_t credit;                       /* bytes; below zero: owed */
  uint64_t at_ms;                       /* when credit was last grown */
};

void pc_pace_init (struct pc_pace *p);
void pc_pace_destroy (struct pc_pace *p);
/* Grow the credit at rate bytes a second since the last call, and say
 * whether a write may start now (1) or must wait (0).  Rate 0 sets no
 * pace: always 1, and the credit starts again from nothing.
 */
int pc_pace_ok (struct pc_pace *p, uint64_t rate, uint64_t now_ms);
/* A write of len bytes went down. */
void pc_pace_spend (struct pc_pace *p, uint64_t len);

#endif /* PC_PACE_H */
