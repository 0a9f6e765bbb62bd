/* SPDX-License-Identifier: BSD-3-Clause */
/* Segments: allocation, reference counts and generations.
 *
 * A data segment holds one reference per live key record that points
 * into it, plus one while a data head fills it, plus short-lived pins
 * taken by readers.  When the count drops to zero its generation is
 * bumped and persisted before it is reused, so index entries that still
 * point at it (carrying the old generation) read as misses.
 *
 * The count shares one atomic word with the generation's low 32 bits
 * and a live bit (a data segment in use), so that a cache hit pins its
 * payload with one compare-and-swap and drops it with one subtraction,
 * taking no lock; the segment locks guard the role and the persistent
 * generation.
 */
#ifndef PC_SEGMENT_H
#define PC_SEGMENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "pmem.h"

enum pc_seg_role { PC_SEG_FREE = 0, PC_SEG_DATA, PC_SEG_LOG };

#define PC_PIN_LIVE (UINT64_C (1) << 31)
#define PC_PIN_REFS (PC_PIN_LIVE - 1)

struct pc_seg {
  _Atomic uint64_t pin;                 /* gen << 32 | live | references */
  uint8_t role;
  uint8_t gen_slot;
  uint32_t gen_seq;
  uint64_t gen;
};

#define PC_SEG_LOCKS 64
#define PC_SEGS_WAIT_MS 100             /* default wait_ms */

struct pc_segs {
  uint32_t nsegs;
  struct pc_seg *seg;
  pthread_mutex_t locks[PC_SEG_LOCKS];
  pthread_mutex_t free_lock;
  pthread_cond_t free_cv;
  uint32_t *free_stack;
  uint32_t nfree;
  uint32_t waiters;
  uint64_t frees;                       /* segments freed so far */
  unsigned wait_ms;                     /* pc_segs_wait's (tests raise it) */
  struct pc_pmem *pm;
  uint8_t *table;                       /* generation slots on pmem */
};

int pc_segs_init (struct pc_segs *s, uint32_t nsegs, struct pc_pmem *pm,
                  uint8_t *table);
void pc_segs_destroy (struct pc_segs *s);
/* Write generation 0 for every segment (format). */
void pc_segs_format (struct pc_segs *s);
/* Load generations; returns -1 with *bad set to the first unreadable one. */
int pc_segs_load (struct pc_segs *s, uint32_t *bad);
/* After replay: every segment without a role is free. */
void pc_segs_build_free (struct pc_segs *s);

/* Take a free segment for role, leaving at least reserve free.  Returns
 * the id, or -1 if none.
 */
int64_t pc_seg_alloc (struct pc_segs *s, enum pc_seg_role role,
                      uint32_t reserve);
/* Wait until more than reserve segments are free (what pc_seg_alloc
 * with that reserve needs) or a segment is freed, counting as a waiter
 * meanwhile.  Checked under the free lock, which every free takes to
 * wake waiters, so a segment freed since the caller's failed
 * pc_seg_alloc ends the wait at once.  At most s->wait_ms: a safety
 * net, after which the caller commits and kicks the workers again.
 */
void pc_segs_wait (struct pc_segs *s, uint32_t reserve);
uint32_t pc_segs_nfree (struct pc_segs *s);
uint32_t pc_segs_waiters (struct pc_segs *s);

void pc_seg_get_n (struct pc_segs *s, uint32_t id, uint32_t n);
/* Take a reference only if the segment is live at generation gen. */
int pc_seg_get_if_gen (struct pc_segs *s, uint32_t id, uint32_t gen);
/* Drop n references; the last one frees a data segment (returns 1). */
int pc_seg_put_n (struct pc_segs *s, uint32_t id, uint32_t n);

static inline void
pc_seg_get (struct pc_segs *s, uint32_t id)
{
  pc_seg_get_n (s, id, 1);
}

static inline int
pc_seg_put (struct pc_segs *s, uint32_t id)
{
  return pc_seg_put_n (s, id, 1);
}
/* Is the segment at generation gen? */
int pc_seg_gen_is (struct pc_segs *s, uint32_t id, uint32_t gen);
/* Replay found a live record in the segment: it is a data segment, and
 * the record holds a reference.  Single-threaded, before any client.
 */
void pc_seg_hold_replayed (struct pc_segs *s, uint32_t id);
/* A live look (pcachectl beside a running cache): read the segment's
 * generation record again.  Newer than the one read before, it is a
 * new use of the segment, which starts free of what the look saw of the
 * old one.  Unreadable or not newer, it changes nothing.
 */
void pc_seg_reload_gen (struct pc_segs *s, uint32_t id);
/* Free a log segment that the log has moved past. */
void pc_seg_release (struct pc_segs *s, uint32_t id);

/* References held, for tests and inspection. */
static inline uint32_t
pc_seg_refs (struct pc_segs *s, uint32_t id)
{
  return (uint32_t) (atomic_load (&s->seg[id].pin) & PC_PIN_REFS);
}

static inline uint32_t
pc_seg_gen32 (struct pc_segs *s, uint32_t id)
{
  return (uint32_t) s->seg[id].gen;
}

#endif /* PC_SEGMENT_H */
