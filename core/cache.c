/* SPDX-License-Identifier: BSD-3-Clause */
/* Opening, formatting and closing a cache; the worker lifecycle. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache_internal.h"
#include "clean.h"
#include "ctrl.h"
#include "hold.h"
#include "meta.h"
#include "namespace.h"
#include "replay.h"
#include "slab.h"
#include "timer.h"
#include "util.h"
#include "workers.h"
#include "writeback.h"

void
pc_config_init (struct pc_config *cfg)
{
  memset (cfg, 0, sizeof *cfg);
  cfg->data_crc = PC_UNSET;
  cfg->gc_percent = PC_UNSET;
  cfg->wb_percent = PC_UNSET;
  cfg->full_timeout_s = PC_UNSET;
  cfg->wb_max_age_s = PC_UNSET;
  cfg->wb_group = PC_UNSET;
  cfg->hold_timeout_s = PC_UNSET;
  cfg->cache_on_read = 1;
  cfg->format = PC_FORMAT_AUTO;
}

/* A segment size the format takes: a power of two, 1M..1G. */
static int
seg_size_valid (uint64_t seg)
{
  return seg >= PC_MIN_SEG_SIZE && seg <= PC_MAX_SEG_SIZE &&
    (seg & (seg - 1)) == 0;
}

static int
check_config (const struct pc_config *cfg)
{
  if (!cfg->path || !*cfg->path)
    return pc_fail (EINVAL, "no cache file given");
  if (cfg->gc_percent != PC_UNSET &&
      (cfg->gc_percent < 0 || cfg->gc_percent > PC_MAX_GC_PERCENT))
    return pc_fail (EINVAL, "gc percent %d is out of range 0..%d",
                    cfg->gc_percent, PC_MAX_GC_PERCENT);
  if (cfg->seg_size && !seg_size_valid (cfg->seg_size))
    return pc_fail (EINVAL, "segment size %" PRIu64 " is not a power of two "
                    "between 1M and 1G", cfg->seg_size);
  if (cfg->backing_id && strlen (cfg->backing_id) >= PC_BACKING_ID_LEN)
    return pc_fail (EINVAL, "backing identity is longer than %d bytes",
                    PC_BACKING_ID_LEN - 1);
  return 0;
}

/* Namespaces a new cache is made with. */
static uint32_t
max_exports_of (const struct pc_config *cfg)
{
  return cfg->max_exports ? cfg->max_exports : PC_DEFAULT_MAX_EXPORTS;
}

int
pc_cache_path_is_new (const char *path)
{
  struct stat st;

  if (stat (path, &st) == -1)
    return errno == ENOENT;
  return PC_STAT_IS_EMPTY_FILE (&st);
}

uint64_t
pc_cache_min_size (uint64_t seg_size, unsigned max_exports)
{
  if (!seg_size)
    seg_size = PC_DEFAULT_SEG_SIZE;
  if (!max_exports)
    max_exports = PC_DEFAULT_MAX_EXPORTS;
  if (!seg_size_valid (seg_size) || max_exports > PC_MAX_EXPORTS)
    return 0;
  return pc_fmt_min_size (__builtin_ctzll (seg_size), max_exports);
}

/* Why a file of size bytes cannot hold a cache (pc_fmt_layout refused
 * it): what the smallest one would be.
 */
static int
too_small (const char *path, uint64_t size, uint64_t seg, uint32_t exports)
{
  return pc_fail (EINVAL, "%s: %" PRIu64 " bytes is too small: a cache "
                  "needs at least %" PRIu64 " bytes, for %d segments of %"
                  PRIu64 " bytes and a table of %" PRIu32 " exports", path,
                  size, pc_fmt_min_size (__builtin_ctzll (seg), exports),
                  PC_MIN_SEGMENTS, seg, exports);
}

static int
init_runtime (struct pc_cache *c)
{
  unsigned i;

  c->seg_shift = c->sb.seg_shift;
  c->seg_size = 1ULL << c->seg_shift;
  c->nsegs = c->sb.nsegs;
  c->seg_area_off = c->sb.seg_area_off;
  c->max_exports = c->sb.max_exports;
  c->data_crc = !!(c->sb.features & PC_FEAT_DATA_CRC);
  pc_fmt_geom (&c->geom, c->base, &c->sb);
  if (pc_segs_init (&c->segs, c->nsegs, c->pm, c->base + PC_SEGTAB_OFF) == -1)
    return -1;
  if (pc_log_init (c) == -1)
    return -1;
  c->nheads = PC_MIN (PC_MAX_HEADS, c->nsegs / 8);
  if (c->nheads == 0)
    c->nheads = 1;
  for (i = 0; i < c->nheads; i++) {
    pc_lock_init (&c->heads[i].lock);
    c->heads[i].seg = -1;
  }
  /* Namespaces spread over the whole address space: every subtree. */
  if (pc_index_init (&c->index, UINT64_MAX, PC_STRIPE_SHIFT,
                     PC_MAX_TREES) == -1)
    return -1;
  return 0;
}

/* Check what the user asked for against what the file was made with. */
static int
check_existing (struct pc_cache *c)
{
  const struct pc_config *cfg = &c->cfg;
  uint64_t fsize = pc_pmem_size (c->pm);
  uint32_t nsegs;
  uint64_t area, tab;
  const char *id = c->backing_id ? c->backing_id : "";

  if (c->sb.file_size != fsize)
    return pc_fail (EINVAL, "%s: cache was made %" PRIu64 " bytes long but is "
                    "now %" PRIu64 " bytes", c->path, c->sb.file_size, fsize);
  if (c->sb.seg_shift < 20 || c->sb.seg_shift > 30 ||
      pc_fmt_layout (fsize, c->sb.seg_shift, c->sb.max_exports, &nsegs,
                     &tab, &area) == -1 ||
      nsegs != c->sb.nsegs || tab != c->sb.nstab_off ||
      area != c->sb.seg_area_off)
    return pc_fail (EINVAL, "%s: superblock geometry is inconsistent",
                    c->path);
  if (cfg->size && cfg->size != fsize)
    return pc_fail (EINVAL, "%s: size %" PRIu64 " was asked for but the cache "
                    "is %" PRIu64 " bytes (use pcache-format=force to remake "
                    "it)", c->path, cfg->size, fsize);
  if (cfg->seg_size && cfg->seg_size != (1ULL << c->sb.seg_shift))
    return pc_fail (EINVAL, "%s: segment size %" PRIu64 " was asked for but "
                    "the cache was made with %llu", c->path, cfg->seg_size,
                    1ULL << c->sb.seg_shift);
  if (cfg->data_crc != PC_UNSET &&
      !!cfg->data_crc != !!(c->sb.features & PC_FEAT_DATA_CRC))
    return pc_fail (EINVAL, "%s: data-crc=%s was asked for but the cache was "
                    "made with data-crc=%s", c->path,
                    cfg->data_crc ? "true" : "false",
                    (c->sb.features & PC_FEAT_DATA_CRC) ? "true" : "false");
  if (cfg->max_exports && cfg->max_exports != c->sb.max_exports)
    return pc_fail (EINVAL, "%s: max-exports=%u was asked for but the cache "
                    "was made with room for %u", c->path, cfg->max_exports,
                    c->sb.max_exports);
  if (strncmp (id, c->sb.backing_id, PC_BACKING_ID_LEN) != 0)
    return pc_fail (EINVAL, "%s: cache belongs to backing \"%.*s\", not "
                    "\"%s\"", c->path, PC_BACKING_ID_LEN, c->sb.backing_id,
                    id);
  return 0;
}

/* A cache to be made: check its size now, before anything is created,
 * so a bad size is reported before nbdkit forks and leaves no file.
 */
static int
check_new_size (struct pc_cache *c)
{
  uint64_t seg = c->cfg.seg_size ? c->cfg.seg_size : PC_DEFAULT_SEG_SIZE;
  uint64_t size = c->cfg.size;
  uint32_t nsegs;
  uint64_t area, tab;

  /* An existing file (pcache-format=force) is checked when formatted,
   * after it is locked.
   */
  if (!size)
    return 0;
  if (pc_fmt_layout (size, __builtin_ctzll (seg), max_exports_of (&c->cfg),
                     &nsegs, &tab, &area) == -1)
    return too_small (c->path, size, seg, max_exports_of (&c->cfg));
  return 0;
}

void (*pc_live_look_hook) (struct pc_cache *c);

static int
open_existing (struct pc_cache *c)
{
  const char *why;
  int created;
  uint32_t bad;

  if (c->cfg.live) {
    if (pc_pmem_open_live (c->path, &c->pm) == -1)
      return -1;
  }
  else if (pc_pmem_open (c->path, 0, 0, &c->pm, &created) == -1)
    return -1;
  c->base = pc_pmem_base (c->pm);
  if (pc_sb_load (c->base, pc_pmem_size (c->pm), &c->sb, &why) == -1) {
    if (c->sb.magic == PC_SB_MAGIC && c->sb.version == 1)
      return pc_fail (EINVAL, "%s: cache has format version 1 (one export, "
                      "made by an earlier pcache); this pcache reads version "
                      "%u only.  Write it back with the pcachectl of the "
                      "pcache that made it (pcachectl drain), then format it "
                      "again (pcache-format=force)", c->path,
                      PC_FORMAT_VERSION);
    if (c->sb.magic == PC_SB_MAGIC && c->sb.version != PC_FORMAT_VERSION)
      return pc_fail (EINVAL, "%s: cache has format version %u, this pcache "
                      "reads version %u", c->path, c->sb.version,
                      PC_FORMAT_VERSION);
    return pc_fail (EINVAL, "%s: %s", c->path, why);
  }
  if (check_existing (c) == -1 || init_runtime (c) == -1 ||
      pc_ns_load (c) == -1)
    return -1;
  c->ctrl_slot = pc_ctrl_load (c->base, &c->ctrl);
  if (c->ctrl_slot < 0)
    return pc_fail (EINVAL, "%s: control record is corrupt in both slots",
                    c->path);
  if (pc_segs_load (&c->segs, &bad) == -1)
    return pc_fail (EINVAL, "%s: generation record of segment %u is corrupt "
                    "in both slots", c->path, bad);
  if (c->cfg.live && pc_live_look_hook)
    pc_live_look_hook (c);
  if (c->cfg.gc_percent == PC_UNSET)
    c->gc_percent = c->ctrl.gc_percent <= PC_MAX_GC_PERCENT
      ? (int) c->ctrl.gc_percent : PC_DEFAULT_GC_PERCENT;
  return pc_replay (c);
}

int
pc_cache_open (const struct pc_config *cfg, pc_cache **out)
{
  struct pc_cache *c;
  struct stat st;
  int is_new;

  if (check_config (cfg) == -1)
    return -1;
  if (cfg->max_exports > PC_MAX_EXPORTS)
    return pc_fail (EINVAL, "max exports %u is out of range 1..%d",
                    cfg->max_exports, PC_MAX_EXPORTS);
  /* Aligned: the sharded members own whole cache lines. */
  c = aligned_alloc (PC_CACHELINE, PC_ALIGN_UP (sizeof *c, PC_CACHELINE));
  if (!c)
    return -1;
  memset (c, 0, sizeof *c);
  c->cfg = *cfg;
  c->path = strdup (cfg->path);
  c->backing_id = cfg->backing_id ? strdup (cfg->backing_id) : NULL;
  c->cfg.path = c->path;
  c->cfg.backing_id = c->backing_id;
  c->cache_on_read = cfg->cache_on_read;
  c->commit_ms = cfg->commit_ms ? cfg->commit_ms : PC_DEFAULT_COMMIT_MS;
  c->full_timeout_ms = (uint64_t) 1000 *
    (cfg->full_timeout_s == PC_UNSET ? PC_DEFAULT_FULL_TIMEOUT_S
     : (unsigned) cfg->full_timeout_s);
  c->wb_max_age_ms = (uint64_t) 1000 *
    (cfg->wb_max_age_s == PC_UNSET ? PC_DEFAULT_WB_MAX_AGE_S
     : (unsigned) cfg->wb_max_age_s);
  c->export_quota = cfg->export_quota ? PC_MIN (cfg->export_quota, 100)
    : 100;
  c->hold_timeout_ms = (uint64_t) 1000 *
    (cfg->hold_timeout_s == PC_UNSET ? PC_DEFAULT_HOLD_TIMEOUT_S
     : (unsigned) cfg->hold_timeout_s);
  c->wb_percent = cfg->wb_percent == PC_UNSET ? PC_DEFAULT_WB_PERCENT
    : PC_MIN (cfg->wb_percent, 100);
  c->wb_group = cfg->wb_group == PC_UNSET ? 1
    : (unsigned) PC_MIN (cfg->wb_group, PC_MAX_WB_GROUP);
  c->wb_group_epochs = c->wb_group ? c->wb_group : 1;
  c->wb_threads = cfg->wb_threads ? PC_MIN (cfg->wb_threads, PC_MAX_WB_THREADS)
    : PC_DEFAULT_WB_THREADS;
  c->gc_percent = cfg->gc_percent == PC_UNSET ? PC_DEFAULT_GC_PERCENT
    : cfg->gc_percent;
  c->started_ms = pc_now_ms ();
  c->mode = cfg->mode;
  c->seq_cutoff = cfg->seq_cutoff;
  if (pc_brlock_init (&c->mode_lock) == -1) {
    free (c->path);
    free (c->backing_id);
    free (c);
    return -1;
  }
  pthread_mutex_init (&c->seq_lock, NULL);
  pthread_mutex_init (&c->ctrl_lock, NULL);
  pthread_mutex_init (&c->ns_lock, NULL);
  pthread_mutex_init (&c->bg_lock, NULL);
  pthread_cond_init (&c->bg_cv, NULL);
  atomic_init (&c->wb_wake_seq, UINT64_MAX);   /* not idle yet */
  pc_pace_init (&c->wb_pace);
  pthread_cond_init (&c->timer_cv, NULL);
  pthread_mutex_init (&c->gc_lock, NULL);
  pthread_cond_init (&c->drain_cv, NULL);
  pc_clean_init (c);

  is_new = pc_cache_path_is_new (c->path);
  if (cfg->format == PC_FORMAT_FORCE || is_new) {
    if (!cfg->size && is_new) {
      pc_error ("%s: %s and no size was given to create it", c->path,
                stat (c->path, &st) == 0 ? "is an empty file"
                : "does not exist");
      errno = EINVAL;
      goto fail;
    }
    c->is_new = 1;
    if (check_new_size (c) == -1)
      goto fail;
  }
  else if (open_existing (c) == -1)
    goto fail;
  *out = c;
  return 0;

 fail:
  {
    int e = errno;
    pc_cache_close (c);
    errno = e;
  }
  return -1;
}

static int
format (struct pc_cache *c)
{
  struct pc_sb *sb = &c->sb;
  struct pc_ctrl *ctl = &c->ctrl;
  uint64_t seg_size = c->cfg.seg_size ? c->cfg.seg_size : PC_DEFAULT_SEG_SIZE;
  uint64_t fsize;
  int created;

  if (pc_pmem_open (c->path, c->cfg.size, 1, &c->pm, &created) == -1)
    return -1;
  c->created = created;
  c->base = pc_pmem_base (c->pm);
  fsize = pc_pmem_size (c->pm);
  if (c->cfg.size && c->cfg.size != fsize && !created)
    return pc_fail (EINVAL, "%s: is %" PRIu64 " bytes, not the %" PRIu64 " "
                    "asked for", c->path, fsize, c->cfg.size);

  memset (sb, 0, sizeof *sb);
  sb->magic = PC_SB_MAGIC;
  sb->version = PC_FORMAT_VERSION;
  sb->features = c->cfg.data_crc == 1 ? PC_FEAT_DATA_CRC : 0;
  sb->seg_shift = __builtin_ctzll (seg_size);
  sb->file_size = fsize;
  sb->max_exports = max_exports_of (&c->cfg);
  if (pc_fmt_layout (fsize, sb->seg_shift, sb->max_exports, &sb->nsegs,
                     &sb->nstab_off, &sb->seg_area_off) == -1)
    return too_small (c->path, fsize, seg_size, sb->max_exports);
  if (getrandom (sb->uuid, sizeof sb->uuid, 0) != sizeof sb->uuid)
    return pc_fail (EIO, "getrandom: %m");
  if (c->backing_id)
    strncpy (sb->backing_id, c->backing_id, PC_BACKING_ID_LEN - 1);
  pc_sb_seal (sb);

  /* Invalidate the old superblock first: a crash while formatting must
   * leave a file that is refused, not half of two caches.
   */
  pc_pmem_set (c->pm, c->base, 0, PC_SEGTAB_OFF);
  if (init_runtime (c) == -1)
    return -1;
  pc_segs_format (&c->segs);
  pc_pmem_set (c->pm, c->base + sb->nstab_off, 0,
               (uint64_t) sb->max_exports * PC_NS_ENTRY);

  memset (ctl, 0, sizeof *ctl);
  ctl->key_tail = (struct pc_pos) { .seg = 0, .off = 0, .seq = 1 };
  ctl->dirty_tail = ctl->key_tail;
  ctl->gc_percent = c->gc_percent;
  /* Both slots valid from the start: one bad byte in either must not
   * make a fresh cache unopenable.
   */
  c->ctrl_slot = 1;
  pc_ctrl_store (c->pm, c->base, ctl, &c->ctrl_slot);
  pc_ctrl_store (c->pm, c->base, ctl, &c->ctrl_slot);
  pc_pmem_set (c->pm, pc_seg_addr (c, 0, 0), 0, sizeof (struct pc_kset_hdr));
  pc_sb_store (c->pm, c->base, sb);
  c->is_new = 0;
  pc_debug ("%s: formatted: %u segments of %" PRIu64 " bytes, granularity %s",
            c->path, sb->nsegs, seg_size, pc_pmem_granularity (c->pm));
  return pc_replay (c);
}

/* Give every generation record both slots again (pc_gen_store): after
 * an update cut off between its two stores, or one slot found damaged,
 * or a cache written one slot at a time.  Left as they were, one more
 * bad slot would lose the segment or fall back to an older generation.
 * Done when the cache is bound for use, not by a read-only inspection.
 */
static void
sync_gen_records (struct pc_cache *c)
{
  uint32_t i, n = 0;

  for (i = 0; i < c->nsegs; i++) {
    struct pc_seg *g = &c->segs.seg[i];
    uint8_t *entry = c->segs.table + (uint64_t) i * PC_SEGTAB_ENTRY;
    int slot = g->gen_slot;

    if (pc_gen_agree (entry))
      continue;
    pc_gen_store (c->pm, entry, g->gen, &g->gen_seq, &slot);
    g->gen_slot = slot;
    n++;
  }
  if (n)
    pc_debug ("%s: rewrote %u generation record%s to both slots", c->path, n,
              n == 1 ? "" : "s");
}

int
pc_cache_ready (pc_cache *c)
{
  /* A live view is for reading: readying could format, starting would
   * write back.
   */
  if (c->cfg.live)
    return pc_fail (EPERM, "%s: opened live, for inspection only", c->path);
  if (c->bound)
    return 0;
  if (c->is_new) {
    if (format (c) == -1) {
      /* Leave nothing behind that a later start would refuse. */
      if (c->created)
        pc_pmem_unmake (c->pm, c->path);
      return -1;
    }
  }
  else
    sync_gen_records (c);
  /* Store a gc percent given on the command line. */
  if ((uint32_t) c->gc_percent != c->ctrl.gc_percent)
    pc_ctrl_update (c, NULL, NULL);
  c->bound = 1;
  return 0;
}

int
pc_cache_bind (pc_cache *c, uint64_t backing_size)
{
  uint32_t ns;

  /* A store the cache cannot hold is refused before a new file is
   * formatted for it, and the file made for it goes, as after a failed
   * format.
   */
  if (pc_ns_size_ok (c, "", backing_size) == -1) {
    if (!c->bound && c->is_new && c->created)
      pc_pmem_unmake (c->pm, c->path);
    return -1;
  }
  if (pc_cache_ready (c) == -1 || pc_ns_open (c, "", backing_size, &ns) == -1)
    return -1;
  c->bound_ns = ns;
  c->backing_size = backing_size;
  c->has_bound_ns = 1;
  return 0;
}

uint64_t
pc_cache_backing_size (const pc_cache *c)
{
  return c->backing_size;
}

int
pc_cache_is_new (const pc_cache *c)
{
  return c->is_new;
}

int
pc_cache_start (pc_cache *c, const struct pc_backend *bg)
{
  int e;

  if (c->cfg.live)
    return pc_fail (EPERM, "%s: opened live, for inspection only", c->path);
  if (!c->bound)
    return pc_fail (EINVAL, "%s: cache is not bound to a backing store",
                    c->path);
  if (bg && (!c->has_bound_ns || pc_ns_attach (c, c->bound_ns, bg) == -1))
    return pc_fail (EINVAL, "%s: a backend was given but no namespace was "
                    "bound", c->path);
  pc_pmem_prefault (c->pm);
  pc_hold_init (c);
  c->stop = 0;
  atomic_store (&c->stop_wb, 0);
  e = pc_slab_start ();
  if (e)
    return pc_fail (e, "pthread_create: %s", strerror (e));
  e = pthread_create (&c->wb_thread, NULL, pc_writeback_thread, c);
  if (e) {
    pc_slab_stop ();
    return pc_fail (e, "pthread_create: %s", strerror (e));
  }
  e = pthread_create (&c->timer_thread, NULL, pc_timer_thread, c);
  if (e) {
    pc_slab_stop ();
    pthread_mutex_lock (&c->bg_lock);
    c->stop = 1;
    pthread_cond_broadcast (&c->bg_cv);
    pthread_cond_broadcast (&c->timer_cv);
    pthread_mutex_unlock (&c->bg_lock);
    pthread_join (c->wb_thread, NULL);
    return pc_fail (e, "pthread_create: %s", strerror (e));
  }
  c->running = 1;
  /* Write-through and write-around put writes straight on the backend,
   * where dirty data left by a write-back run would later land over
   * them: it goes down first, as when the mode is switched.  No client
   * is served yet, so nothing can write meanwhile.
   */
  if (c->mode != PC_MODE_WRITEBACK) {
    int err = 0;

    if (pc_cache_drain (c, &err) == -1) {
      pc_cache_stop (c);
      return pc_fail (err, "%s: dirty data from a write-back run could not be "
                      "written back, so %s mode cannot start: %s", c->path,
                      pc_mode_name (c->mode), strerror (err));
    }
  }
  return 0;
}

void
pc_cache_stop (pc_cache *c)
{
  if (c->running) {
    pthread_mutex_lock (&c->bg_lock);
    c->stop = 1;
    atomic_store (&c->stop_wb, 1);
    pthread_cond_broadcast (&c->bg_cv);
    pthread_cond_broadcast (&c->timer_cv);
    pthread_cond_broadcast (&c->drain_cv);
    pthread_mutex_unlock (&c->bg_lock);
    pthread_join (c->timer_thread, NULL);
    pthread_join (c->wb_thread, NULL);
    pc_writeback_forget (c);
    pc_slab_stop ();
    c->running = 0;
  }
  if (c->bound && c->pm)
    pc_log_commit_all (c, 0);
}

static void
free_heads (struct pc_cache *c)
{
  unsigned i;

  for (i = 0; i < c->nheads; i++)
    pthread_mutex_destroy (&c->heads[i].lock);
  c->nheads = 0;
}

void
pc_cache_close (pc_cache *c)
{
  if (!c)
    return;
  pc_cache_stop (c);
  pc_index_destroy (&c->index);
  free_heads (c);
  if (c->log.scratch)
    pc_log_destroy (c);
  pc_segs_destroy (&c->segs);
  pc_ns_free_all (c);
  pthread_mutex_destroy (&c->ns_lock);
  pc_pmem_close (c->pm);
  pc_brlock_destroy (&c->mode_lock);
  pthread_mutex_destroy (&c->seq_lock);
  pthread_mutex_destroy (&c->ctrl_lock);
  pthread_mutex_destroy (&c->bg_lock);
  pthread_cond_destroy (&c->bg_cv);
  pc_pace_destroy (&c->wb_pace);
  pthread_cond_destroy (&c->timer_cv);
  pthread_mutex_destroy (&c->gc_lock);
  free (c->gc_puts);
  free (c->gc_logs);
  pthread_cond_destroy (&c->drain_cv);
  pc_clean_destroy (c);
  free (c->path);
  free (c->backing_id);
  free (c);
}

void
pc_cache_index_usage (pc_cache *c, uint64_t *keys, uint64_t *bytes)
{
  uint64_t nodes;

  *bytes = pc_index_usage (&c->index, keys, &nodes);
}

void
pc_cache_get_stats (pc_cache *c, struct pc_stats *st)
{
  memset (st, 0, sizeof *st);
  st->read_hits = PC_EVENTS (c, read_hits);
  st->read_misses = PC_EVENTS (c, read_misses);
  st->read_hit_bytes = PC_EVENTS (c, read_hit_bytes);
  st->read_miss_bytes = PC_EVENTS (c, read_miss_bytes);
  st->writes = PC_EVENTS (c, writes);
  st->write_bytes = PC_EVENTS (c, write_bytes);
  st->writeback_bytes = PC_EVENTS (c, writeback_bytes);
  st->writeback_skipped_bytes = PC_EVENTS (c, writeback_skipped_bytes);
  st->writeback_rounds = PC_EVENTS (c, writeback_rounds);
  st->writeback_errors = PC_EVENTS (c, writeback_errors);
  st->writeback_aborts = PC_EVENTS (c, writeback_aborts);
  st->gc_segments = PC_EVENTS (c, gc_segments);
  st->gc_runs = PC_EVENTS (c, gc_runs);
  st->write_hits = PC_EVENTS (c, write_hits);
  st->full_timeouts = PC_EVENTS (c, full_timeouts);
  st->crc_errors = PC_EVENTS (c, crc_errors);
  st->writeback_groups = PC_EVENTS (c, writeback_groups);
  st->writeback_flushes = PC_EVENTS (c, writeback_flushes);
  st->writeback_fua_writes = PC_EVENTS (c, writeback_fua_writes);
  st->writeback_group_epochs = atomic_load (&c->wb_group_epochs);
  st->uptime_ms = pc_now_ms () - c->started_ms;
  st->dirty_bytes = PC_DIRTY_BYTES (c);
  st->seq_bypass_bytes = PC_EVENTS (c, seq_bypass_bytes);
  st->write_through_bytes = PC_EVENTS (c, write_through_bytes);
  st->mode = c->mode;
  st->gc_percent = c->gc_percent;
  for (unsigned t = 0; t < PC_TUNE_COUNT; t++)
    st->tunables[t] = pc_cache_get_tunable (c, t);
  st->writeback_paused = atomic_load (&c->wb_paused);
  st->segs_total = c->nsegs;
  st->seg_size = c->seg_size;
  if (c->segs.seg) {
    st->segs_used = c->nsegs - pc_segs_nfree (&c->segs);
    st->writeback_pace = pc_wb_pace (c);
  }
  st->dirty_ksets = atomic_load (&c->log.head_seq) - pc_dirty_tail (c).seq;
  st->client_epoch = pc_client_epoch (c);
  st->backing_epoch = pc_backing_epoch (c);
  st->dirty_age_ms = pc_dirty_age_ms (c);
  st->writeback_held = atomic_load (&c->hold);
  pthread_mutex_lock (&c->bg_lock);
  st->backend_failing = c->wb_error != 0;
  st->backend_last_error = c->wb_error;
  st->backend_failing_since = c->wb_failing_since;
  st->backend_reopens = c->bg_reopens;
  pthread_mutex_unlock (&c->bg_lock);
}

int
pc_ns_get_stats (pc_cache *c, uint32_t id, struct pc_ns_stats *st)
{
  struct pc_ns *ns = pc_ns_by_id (c, id);

  if (!ns) {
    errno = ENOENT;
    return -1;
  }
  memset (st, 0, sizeof *st);
  st->id = id;
  snprintf (st->name, sizeof st->name, "%s", ns->name);
  st->size = ns->size;
  st->dirty_bytes = atomic_load (&ns->dirty_bytes);
  st->backing_epoch = pc_ns_backing_epoch (c, ns);
  st->reads = PC_NS_EVENTS (ns, reads);
  st->read_bytes = PC_NS_EVENTS (ns, read_bytes);
  st->writes = PC_NS_EVENTS (ns, writes);
  st->write_bytes = PC_NS_EVENTS (ns, write_bytes);
  st->writeback_bytes = PC_NS_EVENTS (ns, writeback_bytes);
  /* Before its first round, the size a round would take. */
  st->writeback_group_epochs = atomic_load (&ns->group_epochs);
  if (st->writeback_group_epochs == 0)
    st->writeback_group_epochs = PC_MAX (atomic_load (&c->wb_group), 1u);
  pthread_mutex_lock (&ns->lock);
  st->attached = ns->has_bg;
  pthread_mutex_unlock (&ns->lock);
  pthread_mutex_lock (&c->bg_lock);
  st->backend_failing = ns->wb_error != 0;
  st->backend_last_error = ns->wb_error;
  st->backend_failing_since = ns->wb_failing_since;
  st->backend_reopens = ns->reopens;
  pthread_mutex_unlock (&c->bg_lock);
  return 0;
}

/* A reset moves each counter's base to its sum now.  An event counted
 * meanwhile may fall on either side of it: fine for statistics, which
 * is all these counters are.  Nothing the engine decides on is touched
 * (dirty_bytes is no event counter).
 */
void
pc_cache_reset_stats (pc_cache *c)
{
#define PC_RESET_COUNTER(f) \
  atomic_store_explicit (&c->st_base.f, PC_COUNTED (c, f), \
                         memory_order_release);
#define PC_RESET_NS_COUNTER(f) \
  atomic_store_explicit (&ns->st_base.f, PC_NS_COUNTED (ns, f), \
                         memory_order_release);
  PC_EVENT_COUNTERS (PC_RESET_COUNTER)
  for (uint32_t i = 0; i < c->max_exports; i++) {
    struct pc_ns *ns = atomic_load (&c->ns[i]);

    if (ns) {
      PC_NS_EVENT_COUNTERS (PC_RESET_NS_COUNTER)
    }
  }
#undef PC_RESET_COUNTER
#undef PC_RESET_NS_COUNTER
  pc_debug ("%s: statistics reset", c->path);
}

void
pc_cache_set_backend (struct pc_cache *c, const struct pc_backend *bg)
{
  pc_ns_attach (c, c->bound_ns, bg);
}
