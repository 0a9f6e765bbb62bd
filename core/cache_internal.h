/* SPDX-License-Identifier: BSD-3-Clause */
/* The cache handle and what its modules share.
 *
 * How the engine works, in five minutes
 * -------------------------------------
 * The cache file (format.h, the on-media contract) holds two superblocks, two control
 * slots (key_tail, dirty_tail: ctrl.c), a generation record per segment
 * (meta.c, segment.c), and equal segments (pcache-segment-size), each
 * either a data segment (payload) or a log segment (a chain of ksets).
 * Only pmem.c makes stores durable.
 *
 * A write (cache_write.c, pc_write):
 *  1. payload.c carves space from this thread's data head and copies
 *     the data there with pc_pmem_copy (durable before the key exists);
 *  2. under the stripe's index lock (index.c: one B+tree per 4 MiB
 *     stripe), the key replaces what it overlaps, and its 32-byte record
 *     goes to the stripe's kset buffer (kset.c), so records of one range
 *     reach the log in index order;
 *  3. a buffer is committed to the log head as one kset (CRC-sealed;
 *     a torn kset ends the log) when it is full, when the client
 *     flushes or writes with FUA (the epoch ends: pc_log_commit_all),
 *     or when timer.c finds it older than pcache-commit-ms;
 *  4. writeback.c (its thread, woken through workers.c) reads ksets from
 *     dirty_tail in log order, a batch at a time, never past a flush
 *     epoch, writes their still-current extents to the backend, flushes
 *     it, then moves dirty_tail (ctrl.c): the backend always holds a
 *     prefix of the client's epochs.  A failed round is retried after a
 *     backoff, and asks the backend to reopen its connection (holding
 *     no lock) when the error says it broke;
 *  5. gc.c retires written-back ksets from key_tail, dropping the
 *     segment references their records held; a segment whose last
 *     reference goes is free again (segment.c), its generation bumped so
 *     that stale keys of its earlier use never look live.
 * Write-through and write-around (mode.c) send the write to the backend
 * instead, holding a placeholder (placeholder.c) over the range during
 * the call; clean.c logs clean keys only once a backend flush covers
 * what they were read after.
 *
 * A read (cache_read.c, pc_read) walks the stripe's tree: hits are
 * copied from pmem (segment references pin them), gaps are read from
 * the backend behind placeholders, and, unless the read is sequential
 * (pcache-seq-cutoff) or a write overtook it, the data is cached as
 * clean keys (placeholder.c, clean.c).
 *
 * Namespaces (namespace.c): each backing export has its own range of
 * cache addresses (its id in the bits from PC_NS_SHIFT up), its own
 * backend (attached while the server has one for it) and its own
 * dirty cursor; writeback.c walks the shared log once per namespace
 * from that cursor, so exports are written back independently, each in
 * its own epoch order; dirty_tail is the oldest cursor.  quota.c holds
 * an export's writes past pcache-export-quota.
 *
 * At open (cache.c), replay.c walks the log from key_tail, checks every
 * kset and key (CRC, bounds, generation) and rebuilds the index; the
 * kset after the last valid one must not validate either, or the cache
 * is refused as damaged.  drain.c waits for writeback (mode switches,
 * detach, checkpoints) and pauses it; hold.c tells the durable epochs
 * and holds writeback at an epoch boundary; inspect.c serves pcachectl;
 * tunable.c changes settings while the cache runs.
 *
 * Lock order (outer first; a lock is never taken while one after it in
 * its chain is held):
 *   mode_lock (shared by requests; a mode switch holds it exclusively
 *   across a drain) -> index subtree -> kset buffer -> log -> bg_lock ->
 *   ctrl_lock;  log -> segment free list -> segment lock;
 *   index subtree -> clean.lock;  heads[].lock -> segment free list;
 *   gc_lock -> ctrl_lock, segment free list;  writeback pool lock ->
 *   slab lock;  ns_lock (making a namespace) -> log -> ctrl_lock;
 *   bg_lock -> a namespace's lock.
 * ctrl_lock, clean.lock, seq_lock, the segment locks, the slab lock and
 * a namespace's lock are leaves.  heads[].lock is dropped before a writer waits for space;
 * the drain waits on bg_lock holding no other lock.
 */
#ifndef PC_CACHE_INTERNAL_H
#define PC_CACHE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "pcache.h"
#include "format.h"
#include "pmem.h"
#include "index.h"
#include "segment.h"
#include "kset.h"
#include "lock.h"
#include "pace.h"
#include "shard.h"
#include "util.h"

#define PC_STRIPE_SHIFT   22          /* 4 MiB stripes */
#define PC_MAX_TREES      4096
#define PC_NKBUFS         8
#define PC_MAX_HEADS      8
#define PC_ALLOC_ALIGN    64          /* payload allocation granule */
#define PC_LOG_RESERVE    2           /* free segments kept for the log */
#define PC_DRAIN_GRACE_MS 30000       /* a drain gives up after failing so long */
#define PC_WB_IDLE_MS     200         /* a client this quiet lets writeback run */
#define PC_WB_PACE_S      4           /* past pcache-writeback-percent, seconds
                                         to write the excess in */
#define PC_WB_PACE_MIN    (UINT64_C (1) << 20)  /* bytes/s: the least pace */

/* A data head: the segment that new payload is carved from. */
struct pc_head {
  pthread_mutex_t lock;
  int64_t seg;                        /* -1: none */
  uint32_t off;
  uint32_t spare;                     /* references taken, not handed out */
} __attribute__ ((aligned (PC_CACHELINE)));

/* Event counters: what happened since the start or the last
 * pc_cache_reset_stats, which zeroes every one of them.  A counter that
 * the engine's logic relies on is no event counter: it goes in struct
 * pc_counters by itself, as dirty_bytes does.
 */
#define PC_EVENT_COUNTERS(X) \
  X (seq_bypass_bytes) X (write_through_bytes) \
  X (read_hits) X (read_misses) X (read_hit_bytes) X (read_miss_bytes) \
  X (writes) X (write_bytes) \
  X (writeback_bytes) X (writeback_skipped_bytes) \
  X (writeback_rounds) X (writeback_errors) X (writeback_aborts) \
  X (writeback_groups) X (writeback_flushes) X (writeback_fua_writes) \
  X (gc_segments) X (gc_runs) X (write_hits) X (full_timeouts) \
  X (crc_errors)                      /* cache hits whose payload was bad */

#define PC_COUNTER_FIELD(f) _Atomic uint64_t f;

/* Statistics, sharded per thread (shard.h): PC_COUNT adds to this
 * thread's shard, PC_COUNTED sums them all, PC_EVENTS since the last
 * reset.
 */
struct pc_counters {
  _Atomic uint64_t dirty_bytes;       /* a gauge writeback relies on */
  PC_EVENT_COUNTERS (PC_COUNTER_FIELD)
} __attribute__ ((aligned (PC_CACHELINE)));

/* The sums at the last reset (pc_cache_reset_stats).  Shards are never
 * zeroed: their owners add without a locked instruction, and would
 * write back what a reset had cleared.
 */
struct pc_event_base {
  PC_EVENT_COUNTERS (PC_COUNTER_FIELD)
};

#define PC_COUNT(c, f, n) \
  pc_shard_add (&(c)->st[pc_thread_shard ()].f, (n))
#define PC_UNCOUNT(c, f, n) \
  pc_shard_add (&(c)->st[pc_thread_shard ()].f, -(uint64_t) (n))
#define PC_COUNTED(c, f) \
  pc_shard_sum (&(c)->st[0].f, sizeof (struct pc_counters), PC_NSHARDS)
/* The dirty gauge.  A writer's add and write-back's subtract may be in
 * two shards, one read before it changed and one after: a sum that
 * came out below zero is read as none.
 */
#define PC_DIRTY_BYTES(c) \
  pc_shard_gauge (&(c)->st[0].dirty_bytes, sizeof (struct pc_counters), \
                  PC_NSHARDS)
#define PC_EVENTS(c, f) \
  pc_shard_since (&(c)->st_base.f, &(c)->st[0].f, \
                  sizeof (struct pc_counters), PC_NSHARDS)

/* A namespace's event counters (pc_ns_get_stats), one set a thread
 * shard: many connections to one export would otherwise pass the same
 * line between their CPUs on every request.
 */
#define PC_NS_EVENT_COUNTERS(X) \
  X (reads) X (read_bytes) X (writes) X (write_bytes) X (writeback_bytes)

struct pc_ns_counters {
  PC_NS_EVENT_COUNTERS (PC_COUNTER_FIELD)
} __attribute__ ((aligned (PC_CACHELINE)));

/* A namespace (namespace.c): one backing export.  Its backend is
 * attached and detached while the cache runs; a user pins it
 * (pc_ns_pin) so that a detach waits for the call to end.
 */
struct pc_ns {
  uint32_t id;
  char *name;
  uint64_t size;
  char backing_id[PC_BACKING_ID_LEN];
  uint64_t created;
  pthread_mutex_t lock;               /* guards bg, has_bg and pins */
  pthread_cond_t unpinned;
  struct pc_backend bg;
  int has_bg;
  unsigned pins;
  _Atomic uint64_t dirty_bytes;       /* its share of the gauge */
  pthread_cond_t quota_cv;            /* under lock: dirty_bytes fell */
  int quota_full;                     /* a write gave up on the quota and
                                         no write-back has freed since */
  _Atomic uint64_t last_epoch;        /* epoch of its last batch written */
  /* Write-back's state for it (writeback.c), the thread's own: */
  void *wb;                           /* its batch */
  unsigned group_auto;                /* auto's group size for it */
  uint64_t group_dirty;               /* its dirty bytes at that sizing */
  _Atomic unsigned group_epochs;      /* the size in force */
  _Atomic uint64_t retry_ms;          /* no round before this (backoff);
                                         attach clears it */
  /* Its backend's health, under bg_lock: */
  int wb_error;
  int wb_reported;                    /* its failing was logged as an error */
  unsigned wb_fails;
  uint64_t wb_failing_ms, wb_failing_since, reopens;
  struct pc_ns_counters st[PC_NSHARDS];  /* PC_NS_COUNT */
  struct pc_ns_counters st_base;      /* the sums at the last reset */
};

/* Clean keys waiting for a backend flush before they are logged. */
#define PC_CLEAN_WAIT 1024

struct pc_clean_wait {
  struct pc_key_rec rec;
  uint64_t need;                      /* wt_ended when its data was read */
};

struct pc_clean {
  _Atomic uint64_t wt_ended;          /* write-through backend changes ended */
  pthread_mutex_t lock;               /* guards the rest */
  uint64_t flushed;                   /* wt_ended as the last good flush began */
  size_t n;
  struct pc_clean_wait wait[PC_CLEAN_WAIT];
};

struct pc_cache {
  struct pc_config cfg;
  char *path;
  char *backing_id;
  int is_new;                         /* formatted at bind time */
  int created;                        /* the file was made by format */
  int bound;

  struct pc_pmem *pm;
  uint8_t *base;
  struct pc_sb sb;
  uint64_t backing_size;              /* of the namespace bind opened */
  uint32_t bound_ns;
  int has_bound_ns;
  /* Namespaces by id; an entry, once set, stays until close.  New ones
   * are made under ns_lock.
   */
  pthread_mutex_t ns_lock;
  uint32_t max_exports;
  struct pc_ns *_Atomic ns[PC_NS_MAX];
  unsigned seg_shift;
  uint64_t seg_size;
  uint32_t nsegs;
  uint64_t seg_area_off;
  struct pc_geom geom;                /* the above, for the format rules */
  int data_crc;
  /* The tunables (tunable.c) may change while requests and workers
   * read them without a lock: atomics, read relaxed.
   */
  _Atomic int gc_percent;
  _Atomic int cache_on_read;
  _Atomic int mode;                   /* enum pc_mode */
  struct pc_brlock mode_lock;         /* writers share; a switch excludes */
  _Atomic uint64_t seq_cutoff;
  pthread_mutex_t seq_lock;
  struct { uint64_t next, run; } streams[8];  /* recent sequential reads */
  unsigned stream_clock;
  unsigned commit_ms;
  _Atomic uint64_t full_timeout_ms;   /* 0: a write waits for space for ever */
  _Atomic uint64_t wb_max_age_ms;     /* 0: dirty data may wait for ever */
  _Atomic unsigned export_quota;      /* percent; 100: no quota */
  _Atomic unsigned quota_waiters;     /* writes waiting for their export's
                                         write-back (quota.c) */
  uint64_t hold_timeout_ms;           /* 0: a hold lasts until released */
  _Atomic int full_stuck;             /* a wait for space timed out, and no
                                         segment has been freed since */
  _Atomic unsigned wb_threads;        /* concurrent writeback writes */
  _Atomic unsigned wb_percent;        /* dirty share that starts writeback */
  _Atomic unsigned wb_group;          /* epochs a write-back group may
                                         take; 0: auto */
  _Atomic unsigned wb_group_epochs;   /* the size in force (auto's) */
  _Atomic int wb_paused;              /* pc_cache_pause_writeback; changed
                                         under bg_lock */
  _Atomic uint64_t last_io_ms;        /* when the client last read or wrote */
  _Atomic uint64_t last_write_ms;     /* when it last wrote, zeroed or trimmed */
  _Atomic unsigned drainers;          /* threads waiting in a drain */

  /* Persisted cursors (in ctrl), guarded by ctrl_lock. */
  pthread_mutex_t ctrl_lock;
  struct pc_ctrl ctrl;
  int ctrl_slot;                      /* slot holding the newest copy */

  struct pc_segs segs;
  struct pc_log log;
  struct pc_kbuf kbufs[PC_NKBUFS];
  unsigned nheads;
  struct pc_head heads[PC_MAX_HEADS];
  struct pc_index index;

  /* Background workers. */
  int running;
  pthread_t wb_thread, timer_thread;
  pthread_mutex_t bg_lock;
  pthread_cond_t bg_cv;               /* wakes the writeback worker */
  pthread_cond_t timer_cv;            /* wakes the commit timer (to stop) */
  pthread_mutex_t gc_lock;            /* one garbage collector at a time */
  void *gc_puts;                      /* its scratch space (gc.c) */
  uint32_t *gc_logs;
  pthread_cond_t drain_cv;            /* dirty_tail moved, or paused */
  int stop;
  _Atomic int stop_wb;                /* c->stop, readable without bg_lock */
  _Atomic int exiting;                /* pc_cache_exiting */
  int exit_cut;                       /* ESHUTDOWN since, under bg_lock */
  uint64_t kicks;                     /* bumped by every pc_kick_workers */
  _Atomic uint64_t wb_wake_seq;       /* a commit reaching it wakes writeback */
  struct pc_pace wb_pace;             /* writeback's, see wb_level */
  int wb_error;                       /* last writeback errno, 0 if fine */
  /* Write-back's requests that the plugin answered, well or not: a
   * drain that sees none for its time limit stops waiting on a plugin
   * that hangs.
   */
  _Atomic uint64_t wb_answers;
  _Atomic uint64_t wb_last_epoch;     /* last epoch of the last batch that
                                         began to go down (pc_hold_admit) */
  _Atomic int hold;                   /* writeback stops at an epoch boundary */
  _Atomic uint64_t hold_epoch;        /* the last epoch a hold lets down */
  uint64_t hold_until_ms;             /* under bg_lock; 0: no timeout */
  /* The backend's health as write-back sees it, under bg_lock too: */
  unsigned wb_fails;                  /* rounds failed in a row */
  int wb_reopen;                      /* reopen the backend before the next */
  uint64_t wb_failing_ms;             /* when failing began (pc_now_ms) */
  uint64_t wb_failing_since;          /* the same in Unix time, 0 if fine */
  uint64_t bg_reopens;                /* backend reopens that succeeded */

  struct pc_clean clean;

  struct pc_counters st[PC_NSHARDS];
  struct pc_event_base st_base;
  uint64_t started_ms;
};

static inline uint8_t *
pc_seg_addr (const struct pc_cache *c, uint32_t seg, uint32_t off)
{
  return c->base + c->seg_area_off + ((uint64_t) seg << c->seg_shift) + off;
}

static inline uint64_t
pc_stripe_end (const struct pc_cache *c, uint64_t off)
{
  return pc_index_stripe_end (&c->index, off);
}

/* The index key for record r, or NULL when out of memory.  With data
 * checksums, one that can check r's payload when a read hits it (a
 * zero has none).
 */
static inline int
pc_rec_has_crc_key (const struct pc_cache *c, const struct pc_key_rec *r)
{
  return c->data_crc && !(r->flags & PC_KF_ZERO);
}

static inline struct pc_key *
pc_key_for_rec (const struct pc_cache *c, const struct pc_key_rec *r)
{
  struct pc_key *k = pc_rec_has_crc_key (c, r)
    ? pc_key_alloc_crc () : pc_key_alloc ();

  if (k)
    pc_key_from_rec (k, r);
  return k;
}

static inline struct pc_kbuf *
pc_kbuf_for (struct pc_cache *c, uint64_t off)
{
  return &c->kbufs[(off >> PC_STRIPE_SHIFT) % PC_NKBUFS];
}

/* cache.c: for deterministic tests without worker threads, use bg as
 * the backend (see pc_writeback_step).
 */
void pc_cache_set_backend (struct pc_cache *c, const struct pc_backend *bg);

/* cache.c: for tests, called by a live open (cfg.live) between reading
 * the segments' generation records and walking the log, where a slow
 * look would see the running cache change.  NULL unless a test sets it.
 */
extern void (*pc_live_look_hook) (struct pc_cache *c);

/* Note a client request for the writeback hold-back; stored only when
 * the millisecond changes, so that the line is not dirtied on every
 * request.
 */
static inline void
pc_note_stamp (_Atomic uint64_t *stamp, uint64_t now)
{
  if (atomic_load_explicit (stamp, memory_order_relaxed) != now)
    atomic_store_explicit (stamp, now, memory_order_relaxed);
}

static inline void
pc_note_io (struct pc_cache *c, int write)
{
  uint64_t now = pc_now_ms_coarse ();    /* read on every request */

  pc_note_stamp (&c->last_io_ms, now);
  if (write)
    pc_note_stamp (&c->last_write_ms, now);
}

/* Add n to event counter f (reads, read_bytes, writes, write_bytes,
 * writeback_bytes) of namespace ns, for its statistics: counted where
 * the totals are, in this thread's shard as they are.
 */
#define PC_NS_COUNT(ns, f, n) \
  pc_shard_add (&(ns)->st[pc_thread_shard ()].f, (n))
#define PC_NS_COUNTED(ns, f) \
  pc_shard_sum (&(ns)->st[0].f, sizeof (struct pc_ns_counters), PC_NSHARDS)
#define PC_NS_EVENTS(ns, f) \
  pc_shard_since (&(ns)->st_base.f, &(ns)->st[0].f, \
                  sizeof (struct pc_ns_counters), PC_NSHARDS)

#endif /* PC_CACHE_INTERNAL_H */
