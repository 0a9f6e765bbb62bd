/* SPDX-License-Identifier: BSD-3-Clause */
/* A byte rate as a bucket of credit (see pace.h). */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include "lock.h"
#include "pace.h"
#include "util.h"

/* Credit saved while no write was waiting: a tenth of a second's worth,
 * so that a pause does not buy a burst at full speed afterwards.
 */
#define SAVED_MS 100

void
pc_pace_init (struct pc_pace *p)
{
  pc_lock_init (&p->lock);
  p->credit = 0;
  p->at_ms = 0;
}

void
pc_pace_destroy (struct pc_pace *p)
{
  pthread_mutex_destroy (&p->lock);
}

int
pc_pace_ok (struct pc_pace *p, uint64_t rate, uint64_t now_ms)
{
  int ok;

  pthread_mutex_lock (&p->lock);
  if (rate == 0) {
    p->credit = 0;
    p->at_ms = now_ms;
    ok = 1;
  }
  else {
    /* Bounded so that the product stays inside 64 bits. */
    uint64_t ms = PC_MIN (now_ms - PC_MIN (p->at_ms, now_ms), 1000000);
    int64_t cap, grown;

    rate = PC_MIN (rate, UINT64_C (1) << 40);
    cap = (int64_t) (rate * SAVED_MS / 1000);
    grown = (int64_t) (rate * ms / 1000);
    /* Time that grew nothing yet is kept for the next call. */
    if (grown > 0 || p->credit >= cap)
      p->at_ms = now_ms;
    p->credit = PC_MIN (p->credit + grown, cap);
    ok = p->credit > 0;
  }
  pthread_mutex_unlock (&p->lock);
  return ok;
}

void
pc_pace_spend (struct pc_pace *p, uint64_t len)
{
  pthread_mutex_lock (&p->lock);
  p->credit -= (int64_t) PC_MIN (len, (uint64_t) INT64_MAX / 2);
  pthread_mutex_unlock (&p->lock);
}
