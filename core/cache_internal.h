/* The cache handle and what its modules share.
 *
 * Lock order (outer first): index subtree -> kset buffer -> log ->
 * segment free list -> segment lock.  ctrl_lock is taken alone.
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

/* A data head: the segment that new payload is carved from. */
struct pc_head {
  pthread_mutex_t lock;
  int64_t seg;                        /* -1: none */
  uint32_t off;
  uint32_t spare;                     /* references taken, not handed out */
} __attribute__ ((aligned (PC_CACHELINE)));

/* Statistics, sharded per thread (shard.h): PC_COUNT adds to this
 * thread's shard, PC_COUNTED sums them all.
 */
struct pc_counters {
  _Atomic uint64_t dirty_bytes, seq_bypass_bytes, write_through_bytes;
  _Atomic uint64_t read_hits, read_misses, read_hit_bytes, read_miss_bytes;
  _Atomic uint64_t writes, write_bytes;
  _Atomic uint64_t writeback_bytes, writeback_skipped_bytes;
  _Atomic uint64_t writeback_rounds, writeback_errors;
  _Atomic uint64_t gc_segments, gc_runs, write_hits;
} __attribute__ ((aligned (PC_CACHELINE)));

#define PC_COUNT(c, f, n) \
  atomic_fetch_add_explicit (&(c)->st[pc_thread_shard ()].f, (n), \
                             memory_order_relaxed)
#define PC_UNCOUNT(c, f, n) \
  atomic_fetch_sub_explicit (&(c)->st[pc_thread_shard ()].f, (n), \
                             memory_order_relaxed)
#define PC_COUNTED(c, f) \
  pc_shard_sum (&(c)->st[0].f, sizeof (struct pc_counters), PC_NSHARDS)

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
  uint64_t backing_size;
  unsigned seg_shift;
  uint64_t seg_size;
  uint32_t nsegs;
  uint64_t seg_area_off;
  struct pc_geom geom;                /* the above, for the format rules */
  int data_crc;
  _Atomic int gc_percent;
  int cache_on_read;
  _Atomic int mode;                   /* enum pc_mode */
  struct pc_brlock mode_lock;         /* writers share; a switch excludes */
  uint64_t seq_cutoff;
  pthread_mutex_t seq_lock;
  struct { uint64_t next, run; } streams[8];  /* recent sequential reads */
  unsigned stream_clock;
  unsigned commit_ms;
  unsigned wb_threads;                /* concurrent writeback writes */
  unsigned wb_percent;                /* dirty share that starts writeback */
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
  struct pc_backend bg;
  int running;
  pthread_t wb_thread, timer_thread;
  pthread_mutex_t bg_lock;
  pthread_cond_t bg_cv;               /* wakes the writeback worker */
  pthread_cond_t timer_cv;            /* wakes the commit timer (to stop) */
  pthread_mutex_t gc_lock;            /* one garbage collector at a time */
  void *gc_puts;                      /* its scratch space (gc.c) */
  uint32_t *gc_logs;
  pthread_cond_t drain_cv;            /* dirty_tail moved */
  int stop;
  _Atomic int stop_wb;                /* c->stop, readable without bg_lock */
  uint64_t kicks;                     /* bumped by every pc_kick_workers */
  _Atomic uint64_t wb_wake_seq;       /* a commit reaching it wakes writeback */
  int wb_error;                       /* last writeback errno, 0 if fine */

  struct pc_clean clean;

  struct pc_counters st[PC_NSHARDS];
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

static inline struct pc_kbuf *
pc_kbuf_for (struct pc_cache *c, uint64_t off)
{
  return &c->kbufs[(off >> PC_STRIPE_SHIFT) % PC_NKBUFS];
}

/* cache.c */
struct pc_pos pc_dirty_tail (struct pc_cache *c);
void pc_ctrl_update (struct pc_cache *c, const struct pc_pos *key_tail,
                     const struct pc_pos *dirty_tail);
void pc_kick_workers (struct pc_cache *c);

/* cache_write.c: carve payload space; blocks for space if wait. */
int pc_alloc_payload (struct pc_cache *c, uint32_t want, int wait,
                      uint32_t *seg, uint32_t *seg_off, uint32_t *got,
                      uint32_t *gen);
/* Insert a key into the index and queue its record; caller holds the
 * subtree write lock.  The key is the index's (or freed) afterwards.
 * *seal_gen receives the buffer's seal count.  Returns 1 if the key
 * covered cached data, 0 if not, -1 on error.
 */
int pc_publish_key (struct pc_cache *c, struct pc_key *k,
                    const struct pc_key_rec *rec, uint64_t *seal_gen);

/* cache_read.c: complete or abandon a placeholder (frees it). */
void pc_fill_placeholder (struct pc_cache *c, struct pc_tree *t,
                          struct pc_key *ph, const uint8_t *data);
void pc_drop_placeholder (struct pc_tree *t, struct pc_key *ph);

/* clean.c: log a clean key's record, or keep it waiting (RAM only)
 * until the backend has flushed what the key's data was read after.
 * Caller holds the key's tree write lock.  Returns 0 if queued (the
 * record owns a payload reference), 1 if deferred and -1 on error (the
 * caller gives the reference back).
 */
void pc_clean_init (struct pc_cache *c);
void pc_clean_destroy (struct pc_cache *c);
int pc_clean_log (struct pc_cache *c, const struct pc_key_rec *r);
/* A write-through or write-around change reached the backend. */
void pc_clean_wt_ended (struct pc_cache *c);
/* Flush the backend, then log the clean keys that waited for it. */
int pc_backend_flush (struct pc_cache *c, int *err);

/* writeback.c: send a zero or trim record to the backend. */
int pc_backend_zero (struct pc_cache *c, const struct pc_key_rec *r, int *err);

/* writeback.c: for deterministic tests without worker threads: use bg
 * as the backend, and write back one batch now (1 done, 0 idle, -1).
 */
void pc_cache_set_backend (struct pc_cache *c, const struct pc_backend *bg);
int pc_writeback_step (struct pc_cache *c);
/* The same with the pool of the writeback thread (pcache-writeback-threads
 * writers) and at most width of them at work.
 */
int pc_writeback_step_width (struct pc_cache *c, unsigned width);

/* replay.c */
int pc_replay (struct pc_cache *c);

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

/* writeback.c: how many writers writeback may use now (0: held back). */
unsigned pc_wb_width (struct pc_cache *c);

/* writeback.c / gc.c */
void *pc_writeback_thread (void *arg);
void *pc_timer_thread (void *arg);
int pc_gc_run (struct pc_cache *c, int force);

#endif /* PC_CACHE_INTERNAL_H */
