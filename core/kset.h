/* SPDX-License-Identifier: BSD-3-Clause */
/* Key sets: RAM buffers of key records and the on-media key log.
 *
 * A key goes to the buffer of its stripe while the writer holds that
 * stripe's index lock, so records for one range reach the log in the
 * order the index saw them; replay can then let the newer record win.
 * Committing a buffer writes it as one kset at the log head: a torn
 * kset fails its CRC and ends the log.
 */
#ifndef PC_KSET_H
#define PC_KSET_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "format.h"

struct pc_cache;

struct pc_kbuf {
  pthread_mutex_t lock;
  uint32_t nkeys;
  uint64_t first_ms;                  /* when the oldest pending key came */
  uint64_t seals;                     /* commits so far */
  struct pc_key_rec keys[PC_KSET_MAX_KEYS];
} __attribute__ ((aligned (64)));       /* no line shared between buffers */

/* When ksets were committed, for the age of the oldest dirty data
 * (pcache-writeback-max-age): a ring of marks, each the sequence number
 * and time of the first kset committed a step or more after the mark
 * before.  A client that flushes after every write commits thousands of
 * ksets a second; one mark a step keeps the ring reaching back twice the
 * bound all the same.  Slot i % PC_LOG_TIMES holds mark i, and names it,
 * so that one overwritten reads as gone.
 */
#define PC_LOG_TIMES 4096
#define PC_LOG_TIME_STEP_MIN_MS 10

struct pc_log_time {
  _Atomic uint64_t idx, seq, ms;
};

struct pc_log {
  pthread_mutex_t lock;
  struct pc_pos head;                 /* where the next kset goes */
  _Atomic uint64_t head_seq;          /* head.seq, readable without lock */
  _Atomic uint64_t epoch;             /* client flushes so far; changed
                                         under the lock */
  uint8_t *scratch;
  uint64_t first_seq;                 /* head.seq when the cache opened */
  struct pc_log_time *times;          /* PC_LOG_TIMES slots */
  _Atomic uint64_t nmarks;            /* marks made so far */
  uint64_t mark_ms;                   /* the last one's time (lock) */
};

int pc_log_init (struct pc_cache *c);
void pc_log_destroy (struct pc_cache *c);

/* Caller holds kb->lock.  Queue rec; commit the buffer when it is full.
 * *seal_gen receives the commit count the record belongs to.
 */
int pc_kbuf_add (struct pc_cache *c, struct pc_kbuf *kb,
                 const struct pc_key_rec *rec, uint64_t *seal_gen);
/* Caller holds kb->lock.  Commit pending keys, if any. */
int pc_kbuf_commit (struct pc_cache *c, struct pc_kbuf *kb);
/* Commit kb unless the commit numbered seal_gen already happened. */
int pc_kbuf_commit_upto (struct pc_cache *c, struct pc_kbuf *kb,
                         uint64_t seal_gen);
/* Commit every buffer; with end_epoch, start a new flush epoch. */
int pc_log_commit_all (struct pc_cache *c, int end_epoch);
/* Commit every buffer without waiting for log space (ENOSPC) or for a
 * lock held longer than PC_NOWAIT_LOCK_MS (EBUSY); then *epoch receives
 * the current epoch, which is at least that of every record committed
 * so far.
 */
#define PC_NOWAIT_LOCK_MS 10
int pc_log_commit_nowait (struct pc_cache *c, uint64_t *epoch);
/* Where the next kset goes. */
void pc_log_head (struct pc_cache *c, struct pc_pos *pos);
/* The client flush epoch that ksets committed now belong to. */
uint64_t pc_log_epoch (struct pc_cache *c);
/* Caller holds the log lock.  Kset seq was committed at now: mark it
 * if the last mark is step_ms old or more.
 */
void pc_log_mark (struct pc_log *lg, uint64_t seq, uint64_t now,
                  uint64_t step_ms);
/* When the kset seq was committed (pc_now_ms), as the time of the last
 * mark at or before it: up to a step early.  The open time for a kset
 * replayed from an earlier run.  If the marks no longer reach back that
 * far, *known is 0 and the time of the oldest mark left is returned (0
 * if none): later than the commit.
 */
uint64_t pc_log_commit_ms (struct pc_cache *c, uint64_t seq, int *known);
/* Commit buffers whose oldest key is older than age_ms. */
int pc_log_commit_aged (struct pc_cache *c, uint64_t age_ms);

/* pc_fmt_kset_at and pc_fmt_kset_next (format.h) over the cache's own
 * mapping.
 */
const struct pc_kset_hdr *pc_kset_at (struct pc_cache *c,
                                      const struct pc_pos *pos,
                                      const char **why);
/* Position after the kset h found at pos. */
void pc_kset_next (struct pc_cache *c, const struct pc_kset_hdr *h,
                   struct pc_pos *pos);

#endif /* PC_KSET_H */
