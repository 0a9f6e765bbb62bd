/* SPDX-License-Identifier: BSD-3-Clause */
/* pcache: crash-consistent persistent-memory write-back cache engine.
 *
 * Public API of the engine in core/.  It has no nbdkit dependency: the
 * backing store is reached through struct pc_backend, supplied by the
 * caller (the nbdkit filter, the admin tool or a test).
 *
 * Errors, by family:
 *  - setup, settings and inspection (pc_cache_open, _bind, _start,
 *    pc_cache_set_gc_percent, pc_cache_set_tunable, pc_config_set_tunable,
 *    pc_mode_parse, pc_map, pc_cache_info,
 *    _walk, _verify_data): -1 with errno set, and a reason passed to the
 *    log function (pc_set_log);
 *  - requests, and whatever may wait for the backend (pc_read, pc_write,
 *    pc_zero, pc_trim, pc_flush, pc_cache_set_mode, pc_cache_drain,
 *    pc_cache_detach): -1 with *err set to a positive errno, the value
 *    a server returns to its client (as nbdkit's callbacks do); errno
 *    is then unspecified.  Backend failures are logged by the engine.
 *
 * Threads: every function may be called from any thread once
 * pc_cache_start has returned, except pc_cache_stop and pc_cache_close.
 */
#ifndef PCACHE_H
#define PCACHE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pc_cache pc_cache;

/* Backing store operations.  Each returns 0 or -1 with *err set to a
 * positive errno.  Any may be NULL when the backend lacks it (zero falls
 * back to writing zeroes, trim is skipped, flush is skipped, and a
 * backend that cannot reopen is only retried).
 *
 * reopen replaces the backend's connection with a new one, for a
 * backend whose connection broke (a remote server restarted): write-back
 * calls it, from its own thread only and at most once per retry, after
 * a connection-level error (ENOTCONN, ECONNRESET, ECONNREFUSED, EPIPE,
 * ESHUTDOWN, EINVAL, which libnbd gives once its handle is closed) or
 * after PC_WB_REOPEN_FAILS failed rounds in a row.  While it runs, the
 * other operations may be called from other threads; the backend must
 * make them wait or fail, not use a connection it is closing.
 */
#define PC_WB_REOPEN_FAILS 3
struct pc_backend_ops {
  int (*pread) (void *ctx, void *buf, uint32_t len, uint64_t off, int *err);
  int (*pwrite) (void *ctx, const void *buf, uint32_t len, uint64_t off,
                 int *err);
  int (*zero) (void *ctx, uint32_t len, uint64_t off, int may_trim, int *err);
  int (*trim) (void *ctx, uint32_t len, uint64_t off, int *err);
  int (*flush) (void *ctx, int *err);
  int (*reopen) (void *ctx, int *err);
  /* Optional: a write that is durable when it completes, in one request
   * (an NBD backend with native FUA).  Write-back then writes a small
   * batch with it instead of writes and a flush after them.
   */
  int (*pwrite_fua) (void *ctx, const void *buf, uint32_t len, uint64_t off,
                     int *err);
};

struct pc_backend {
  const struct pc_backend_ops *ops;
  void *ctx;
};

enum pc_mode {
  PC_MODE_WRITEBACK = 0,   /* writes land in the cache, go down later */
  PC_MODE_WRITETHROUGH,    /* writes go down at once and stay cached */
  PC_MODE_WRITEAROUND,     /* writes go down at once; only reads cached */
};

enum pc_format_policy {
  PC_FORMAT_AUTO = 0,      /* create and format only a missing file */
  PC_FORMAT_FORCE = 1,     /* always format (destroys the old cache) */
};

/* Tri-state for options that are fixed at format time. */
#define PC_UNSET (-1)

struct pc_config {
  const char *path;         /* cache file or devdax path (required) */
  uint64_t size;            /* file size when creating; 0 = existing size */
  uint64_t seg_size;        /* segment size; 0 = default or as formatted */
  int data_crc;             /* PC_UNSET, 0, 1 */
  int gc_percent;           /* PC_UNSET or 0..90 */
  int cache_on_read;        /* 0 or 1 */
  enum pc_mode mode;
  uint64_t seq_cutoff;      /* sequential reads past this bypass; 0 = off */
  unsigned wb_threads;      /* concurrent writeback writes; 0 = default */
  int wb_percent;           /* PC_UNSET or 0..100: dirty share before
                               writeback runs while the client writes */
  int lenient_replay;       /* a damaged kset mid-log ends the log (else refuse) */
  enum pc_format_policy format;
  const char *backing_id;   /* optional identity string, may be NULL */
  unsigned commit_ms;       /* kset commit interval; 0 = default */
  int full_timeout_s;       /* PC_UNSET (default), or how long a write
                               waits for cache space before it fails
                               with EIO; 0 = for ever */
  int wb_max_age_s;         /* PC_UNSET (default), or how long flushed
                               data may stay dirty before writeback runs
                               whatever the load; 0 = no bound */
  unsigned export_quota;    /* 1..100 percent; 0 = default (100) */
  int wb_group;             /* PC_UNSET (default: 1, strict), 0 = auto, or
                               the client epochs one write-back group may
                               take (1..PC_MAX_WB_GROUP) */
  int hold_timeout_s;       /* PC_UNSET (default), or how long a hold
                               lasts unless released; 0 = until released */
  unsigned max_exports;     /* namespaces a new cache has room for
                               (fixed at format); 0 = default */
  int live;                 /* inspect a cache another process holds:
                               no lock, the file opened read-only and
                               mapped copy-on-write, so nothing is ever
                               written to it (pc_cache_info, walk and
                               verify only; the view may be changing) */
};

void pc_config_init (struct pc_config *cfg);

/* The smallest cache file that holds PC_MIN_SEGMENTS segments of
 * seg_size bytes and a namespace table for max_exports exports (0 for
 * either: its default); 0 if either is out of range.
 */
uint64_t pc_cache_min_size (uint64_t seg_size, unsigned max_exports);

/* Does pc_cache_open make a new cache at path (pc_config.size bytes)?
 * Yes if nothing is there, or an empty regular file, which holds
 * nothing to lose.
 */
int pc_cache_path_is_new (const char *path);

#define PC_DEFAULT_SEG_SIZE   (16u << 20)
#define PC_MIN_SEG_SIZE       (1u << 20)
#define PC_MAX_SEG_SIZE       (1u << 30)
#define PC_DEFAULT_GC_PERCENT 70
#define PC_MAX_GC_PERCENT     90
#define PC_MIN_SEGMENTS       8
#define PC_DEFAULT_COMMIT_MS  1000
#define PC_DEFAULT_WB_THREADS 16
#define PC_DEFAULT_WB_PERCENT 10
#define PC_MAX_WB_THREADS     64
#define PC_MAX_WB_GROUP       4096
#define PC_DEFAULT_FULL_TIMEOUT_S 60
#define PC_DEFAULT_WB_MAX_AGE_S   30
#define PC_DEFAULT_HOLD_TIMEOUT_S 300
#define PC_MAX_TIMEOUT_S          86400
#define PC_MAX_DRAIN_TIMEOUT_S    (86400 * 365) /* a drain's own limit */
#define PC_DEFAULT_MAX_EXPORTS    64
#define PC_MAX_EXPORTS            240
#define PC_EXPORT_NAME_MAX        4096

/* Open an existing cache (validate, replay the log) or note that it must
 * be created.  Safe to call before fork: starts no thread.
 */
int pc_cache_open (const struct pc_config *cfg, pc_cache **out);

/* Make the cache usable: format a new cache (pcache-size), or check the
 * generation records of an existing one.
 */
int pc_cache_ready (pc_cache *c);

/* Namespaces.  Each backing export has a namespace of its own in the
 * cache: its own range of cache addresses, dirty cursor and backend.
 * Byte off of namespace ns is at cache address pc_ns_addr (ns, off),
 * which is what the data path (pc_read, pc_write, pc_map...) takes.
 *
 * pc_ns_open finds the namespace of the export called name (at most
 * PC_EXPORT_NAME_MAX bytes, stored whole), or creates it, durably, if
 * the table has room.  An export whose size is not the one it was
 * first seen with is refused (EINVAL), as is one past the table
 * (ENOSPC); the reason names the export.
 */
int pc_ns_open (pc_cache *c, const char *name, uint64_t size, uint32_t *ns);

static inline uint64_t
pc_ns_addr (uint32_t ns, uint64_t off)
{
  return ((uint64_t) ns << 52) | off;
}

/* The backend of a namespace: write-back writes its dirty data through
 * it, and requests the cache does not absorb (see pc_cache_start) go
 * through it.  pc_ns_attach replaces the namespace's backend (bg is
 * copied; its ctx must stay valid until detached).  pc_ns_detach waits
 * until no thread uses the backend any more; the namespace then has
 * none, and its dirty data waits in the cache for the next attach.
 */
int pc_ns_attach (pc_cache *c, uint32_t ns, const struct pc_backend *bg);
void pc_ns_detach (pc_cache *c, uint32_t ns);

/* Write back the dirty data of one namespace (through its attached
 * backend) and flush it; as pc_cache_drain, for one namespace.
 */
int pc_ns_drain (pc_cache *c, uint32_t ns, int *err);

struct pc_ns_info {
  uint32_t id;
  char name[PC_EXPORT_NAME_MAX + 1];
  uint64_t size;
  char backing_id[64];
  uint64_t created;         /* Unix time */
  uint64_t dirty_bytes;     /* as replay found it, offline */
  uint64_t dirty_tail;      /* kset number of its dirty cursor */
  uint64_t backing_epoch;   /* last epoch wholly on its backend */
  int attached;             /* it has a backend now */
};
/* Describe namespace ns: 0, or -1 (ENOENT) if the slot is unused. */
int pc_ns_info (pc_cache *c, uint32_t ns, struct pc_ns_info *info);
/* Slots of the namespace table (the ids go from 0 to this minus one). */
uint32_t pc_ns_slots (pc_cache *c);

/* Ready the cache and open the namespace of the export "" (the
 * default export) of this size: a cache that serves one export.  In a
 * new cache it is namespace 0, whose addresses are the export's own
 * offsets.
 */
int pc_cache_bind (pc_cache *c, uint64_t backing_size);

/* Start the background workers (kset commit timer, ordered writeback,
 * garbage collection).  bg, if not NULL, is attached to the namespace
 * pc_cache_bind opened (pc_ns_attach).  Write-back and GC use the
 * namespaces' backends, and so do requests that the cache does not
 * absorb: writes, zeroes and trims in write-through and write-around
 * mode, flushes outside write-back mode, and mode switches.  Their
 * operations are therefore called from several threads at once and
 * must be safe for that.
 */
int pc_cache_start (pc_cache *c, const struct pc_backend *bg);

/* Stop the workers and commit every pending kset. */
void pc_cache_stop (pc_cache *c);

/* Unmap and free.  Calls pc_cache_stop if needed. */
void pc_cache_close (pc_cache *c);

/* The size of the namespace pc_cache_bind opened. */
uint64_t pc_cache_backing_size (const pc_cache *c);
int pc_cache_is_new (const pc_cache *c);

/* Request flags. */
#define PC_FUA      (1u << 0)
#define PC_MAY_TRIM (1u << 1)

/* Data path.  fg serves cache misses (reads) from the caller's context. */
int pc_read (pc_cache *c, void *buf, uint32_t len, uint64_t off,
             const struct pc_backend *fg, int *err);
int pc_write (pc_cache *c, const void *buf, uint32_t len, uint64_t off,
              unsigned flags, int *err);
int pc_zero (pc_cache *c, uint64_t len, uint64_t off, unsigned flags,
             int *err);
int pc_trim (pc_cache *c, uint64_t len, uint64_t off, unsigned flags,
             int *err);
/* Make every acknowledged write durable in the cache and end an epoch;
 * outside write-back mode, flush the backend too.
 */
int pc_flush (pc_cache *c, int *err);

/* Switch mode while running.  Leaving write-back first writes back every
 * dirty extent (new writes wait meanwhile), so that nothing older can
 * later overwrite what a write-through write put on the backend.
 */
int pc_cache_set_mode (pc_cache *c, enum pc_mode mode, int *err);
enum pc_mode pc_cache_get_mode (pc_cache *c);
const char *pc_mode_name (enum pc_mode mode);
int pc_mode_parse (const char *name, enum pc_mode *mode);
/* Same as pc_cache_set_tunable (c, PC_TUNE_GC_PERCENT, percent). */
int pc_cache_set_gc_percent (pc_cache *c, int percent);

/* Settings that may change while the cache runs (pcachectl set KEY
 * VALUE); each is also the startup parameter pcache-KEY.  The engine
 * holds the one definition of their names and ranges (pc_tunable_info),
 * which whoever parses a value checks it against.
 */
enum pc_tunable {
  PC_TUNE_GC_PERCENT,       /* share of segments in use that starts GC */
  PC_TUNE_WB_PERCENT,       /* dirty share that starts write-back in a burst */
  PC_TUNE_WB_THREADS,       /* concurrent write-back writes */
  PC_TUNE_CACHE_ON_READ,    /* 1: cache data read from the backend */
  PC_TUNE_SEQ_CUTOFF,       /* bytes of a sequential read that are cached;
                               0 = no limit */
  PC_TUNE_FULL_TIMEOUT,     /* seconds a write waits for cache space;
                               0 = for ever */
  PC_TUNE_WB_MAX_AGE,       /* seconds flushed data may stay dirty; 0 = no
                               bound */
  PC_TUNE_EXPORT_QUOTA,     /* share (percent) of the cache one export's
                               dirty data may take; 100 = no quota */
  PC_TUNE_WB_GROUP,         /* client epochs one write-back group may take;
                               0 = auto */
  PC_TUNE_COUNT
};

enum pc_tunable_kind {
  PC_TUNABLE_NUMBER,        /* a whole number */
  PC_TUNABLE_SIZE,          /* a number of bytes */
  PC_TUNABLE_BOOL,          /* 0 or 1 */
};

struct pc_tunable_info {
  const char *name;         /* "gc-percent": the control key */
  const char *stat;         /* its field in pc_stats_json, or NULL if the
                               statistics show it elsewhere */
  enum pc_tunable_kind kind;
  uint64_t min, max;        /* the values allowed, inclusive */
  const char *zero_word;    /* if not NULL, the word for 0, which is
                               allowed besides min..max ("auto") */
};

/* The description of t, or NULL if there is no such tunable. */
const struct pc_tunable_info *pc_tunable_info (enum pc_tunable t);
/* Find the tunable called name: 0, or -1 (nothing logged) if none is. */
int pc_tunable_lookup (const char *name, enum pc_tunable *t);
/* Put value in the field of cfg that starts the cache with it. */
int pc_config_set_tunable (struct pc_config *cfg, enum pc_tunable t,
                           uint64_t value);
/* Change a running cache.  Write-back, GC and requests see the new value
 * from their next round or request on.
 */
int pc_cache_set_tunable (pc_cache *c, enum pc_tunable t, uint64_t value);
uint64_t pc_cache_get_tunable (pc_cache *c, enum pc_tunable t);

/* Pause (pause != 0) or resume write-back.  While paused, write-back
 * starts no batch (one in flight finishes); GC still frees what is
 * written back already, a drain fails at once with EBUSY, and a write
 * that needs cache space waits for it (pcache-full-timeout).  Not kept
 * across a restart.  Returns 0.
 */
int pc_cache_pause_writeback (pc_cache *c, int pause);

/* Zero the event counters of the statistics (hits, misses, bytes,
 * errors, rounds...); the gauges (dirty bytes, segments, mode, uptime)
 * stay.
 */
void pc_cache_reset_stats (pc_cache *c);

/* What the cache holds over a range, in order, gaps included. */
enum pc_map_type {
  PC_MAP_UNCACHED = 0,  /* the backend's content shows through */
  PC_MAP_DATA = 1,      /* data written to the cache (dirty, or maybe
                           written back since) */
  PC_MAP_ZERO = 2,      /* a logged zero or trim: reads as zeroes */
  PC_MAP_CLEAN = 3,     /* a copy of the backend's content (a read
                           miss, or data written back before a restart) */
};
typedef int (*pc_map_fn) (void *opaque, uint64_t off, uint64_t len,
                          enum pc_map_type type);
int pc_map (pc_cache *c, uint64_t off, uint64_t len, pc_map_fn fn,
            void *opaque);

/* Wait until every write committed so far is on the backend and the
 * backend is flushed.  Requires started workers.  Fails at once with
 * EBUSY while write-back is paused (pc_cache_pause_writeback), and so
 * do pc_cache_detach and a switch away from write-back mode.
 */
int pc_cache_drain (pc_cache *c, int *err);
/* pc_cache_drain gives up, with write-back's error, once write-back has
 * failed for 30 s without progress; this one after fail_s seconds, or
 * with 0 never (it then ends only as pc_cache_drain's other failures
 * do: a pause, a hold, a shutdown).
 */
int pc_cache_drain_timeout (pc_cache *c, unsigned fail_s, int *err);

/* Durable points.  Each client flush (and each drain) ends a flush
 * epoch; the client epoch is the last one ended, the backing epoch the
 * last whose every write is on the backend and flushed there.
 *
 * pc_cache_checkpoint waits, as a drain does, until everything written
 * before it is on the backend and flushed, then gives the backing
 * epoch.  pc_cache_hold stops writeback at the nearest epoch boundary
 * (finishing the epoch it is in) and gives the backing epoch there: the
 * backing store then stays the image of that flush point, for a
 * snapshot of it, until pc_cache_release or the hold timeout.  Needs
 * write-back mode.  While held, drains and checkpoints fail with EBUSY.
 */
int pc_cache_checkpoint (pc_cache *c, uint64_t *epoch, int *err);
int pc_cache_hold (pc_cache *c, uint64_t *epoch, int *err);
void pc_cache_release (pc_cache *c);

/* Drain, then drop every cached key, leaving an empty cache and a
 * backing store that can be used on its own.
 */
int pc_cache_detach (pc_cache *c, int *err);

/* The server is shutting down: from now on a backend request that ends
 * with ESHUTDOWN would end so again (filters that sleep cut their
 * sleeps short then), so a drain gives up, with ESHUTDOWN, at the
 * first one instead of waiting out its grace period.
 */
void pc_cache_exiting (pc_cache *c);

struct pc_stats {
  uint64_t read_hits, read_misses, read_hit_bytes, read_miss_bytes;
  uint64_t writes, write_bytes;
  uint64_t writeback_bytes, writeback_skipped_bytes;
  uint64_t writeback_rounds, writeback_errors;
  uint64_t writeback_aborts;  /* plugin requests ended by a shutdown */
  uint64_t gc_segments, gc_runs, write_hits, uptime_ms;
  uint64_t segs_total, segs_used;
  uint64_t dirty_ksets, dirty_bytes;
  uint64_t seq_bypass_bytes, write_through_bytes;
  uint64_t full_timeouts;   /* writes failed for want of cache space */
  int mode, gc_percent;
  uint64_t client_epoch, backing_epoch;
  uint64_t dirty_age_ms;    /* since the oldest dirty kset was committed */
  int writeback_held;
  /* Write-back's view of the backend: whether it is failing, its last
   * error (an errno, 0 when ok), the Unix time in seconds when the
   * current failing episode began (0 when ok), and how many times the
   * backend was reopened.
   */
  int backend_failing, backend_last_error;
  uint64_t backend_failing_since, backend_reopens;
  /* Appended: the tunables' current values, by enum pc_tunable, and
   * whether write-back is paused.
   */
  uint64_t tunables[PC_TUNE_COUNT];
  int writeback_paused;
  uint64_t crc_errors;      /* cached extents found bad by a read (data CRC) */
  uint64_t seg_size;        /* bytes a segment: with segs_total, the size
                               dirty_bytes is a share of */
  /* Write-back groups: rounds that wrote several client epochs as one,
   * backend flushes write-back sent, extents it wrote with FUA instead
   * of a flush, and the group size in force (epochs; auto's current).
   */
  uint64_t writeback_groups, writeback_flushes, writeback_fua_writes;
  unsigned writeback_group_epochs;
  /* Bytes a second write-back keeps to now, between
   * pcache-writeback-percent and pcache-gc-percent; 0: held back, or
   * as fast as it goes.
   */
  uint64_t writeback_pace;
};
void pc_cache_get_stats (pc_cache *c, struct pc_stats *st);
/* The index's extents and the bytes of RAM its keys and nodes take (not
 * counting the unused part of the chunks they come from).  A walk of
 * the whole index: for tools and benchmarks, not for every request.
 */
void pc_cache_index_usage (pc_cache *c, uint64_t *keys, uint64_t *bytes);
/* The statistics as one line of JSON; returns its length or -1. */
int pc_stats_json (const struct pc_stats *st, char *buf, size_t len);

/* Statistics of one namespace (one backing export), beside the totals
 * of struct pc_stats.  The request counters are event counters, zeroed
 * by pc_cache_reset_stats as the totals are: reads and writes count
 * pc_read and pc_write calls (zeroes and trims are not writes), the
 * bytes what they asked for, writeback_bytes what write-back wrote to
 * the export's backend.  The backend fields are write-back's view of
 * this export's backend, as those of struct pc_stats are of the one
 * failing first.
 */
struct pc_ns_stats {
  uint32_t id;
  char name[PC_EXPORT_NAME_MAX + 1];
  uint64_t size;
  uint64_t dirty_bytes;
  uint64_t backing_epoch;   /* last epoch wholly on its backend */
  int attached;             /* it has a backend now */
  int backend_failing, backend_last_error;
  uint64_t backend_failing_since, backend_reopens;
  uint64_t reads, read_bytes, writes, write_bytes, writeback_bytes;
  unsigned writeback_group_epochs;  /* its write-back group size in force */
};
/* Statistics of namespace ns: 0, or -1 (ENOENT) if the slot is unused. */
int pc_ns_get_stats (pc_cache *c, uint32_t ns, struct pc_ns_stats *st);
/* The totals and the n exports in ns as one line of JSON: what
 * pc_stats_json gives, with an "exports" array of one object per
 * export appended (names JSON-escaped).  Returns its length, or -1 if
 * it does not fit in len bytes; pc_stats_json_size (ns, n) bytes are
 * always enough.
 */
int pc_stats_json_exports (const struct pc_stats *st,
                           const struct pc_ns_stats *ns, size_t n,
                           char *buf, size_t len);
size_t pc_stats_json_size (const struct pc_ns_stats *ns, size_t n);
/* The bound for any n exports of up to PC_EXPORT_NAME_MAX bytes. */
#define PC_STATS_JSON_MAX(n) \
  (8192 + (size_t) (n) * (6 * (size_t) PC_EXPORT_NAME_MAX + 1024))

/* Inspection, for the admin tool.  A log cursor: */
struct pc_cursor {
  uint32_t seg, off;
  uint64_t seq;
};

struct pc_info {
  uint32_t version, features;
  uint64_t file_size, backing_size, seg_size;
  uint32_t nsegs, segs_free, segs_log, segs_data;
  uint8_t uuid[16];
  char backing_id[64];
  struct pc_cursor key_head, dirty_tail, key_tail;
  uint64_t dirty_ksets, dirty_bytes, dirty_keys, cached_keys;
  int gc_percent;
  const char *granularity;
  uint32_t max_exports;     /* slots of the namespace table */
  uint32_t exports;         /* namespaces in use */
};
int pc_cache_info (pc_cache *c, struct pc_info *info);

/* One key record of the log, from key_tail to the head. */
struct pc_key_info {
  uint64_t kset_seq, epoch;
  uint64_t off;
  uint32_t len, seg, seg_off, gen, flags;
  int dirty;          /* not yet written back */
  int stale;          /* its segment was reused since */
};
typedef int (*pc_key_fn) (void *opaque, const struct pc_key_info *k);
int pc_cache_walk (pc_cache *c, pc_key_fn fn, void *opaque);

/* Verify every payload checksum (caches made with data CRC); returns the
 * number of bad extents, reporting each through fn if not NULL.
 */
int64_t pc_cache_verify_data (pc_cache *c, pc_key_fn bad, void *opaque);

/* Logging.  level 0 = error, 1 = debug. */
typedef void (*pc_log_fn) (int level, const char *fmt, va_list ap);
void pc_set_log (pc_log_fn fn);

/* Tracing: debug-level lines (through the log function) for the kinds
 * of background work in mask, an OR of PC_TRACE_*.  Off by default; set
 * it before the caches start their workers.
 */
#define PC_TRACE_WRITEBACK 0x1u   /* each batch written back */
#define PC_TRACE_GC        0x2u   /* each garbage collection round */
void pc_set_trace (unsigned mask);

#ifdef __cplusplus
}
#endif

#endif /* PCACHE_H */
