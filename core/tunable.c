/* SPDX-License-Identifier: BSD-3-Clause */
/* Tunables: settings that may change while the cache runs.
 *
 * One table entry per tunable holds its name, range and accessors; the
 * startup parameters (the filter's config), the control socket and the
 * statistics all go through it, so a new tunable is one entry here (and
 * its enum value, config field and cache field).
 *
 * The cache fields are atomics read relaxed on the paths that use them:
 * a request or a writeback round that sees the old value once more is
 * fine, as long as it never sees a torn one.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include "cache_internal.h"
#include "ctrl.h"
#include "util.h"
#include "workers.h"

struct tunable {
  struct pc_tunable_info info;
  void (*to_cfg) (struct pc_config *cfg, uint64_t v);
  void (*set) (struct pc_cache *c, uint64_t v);  /* v is in range */
  uint64_t (*get) (struct pc_cache *c);
};

#define LOAD(f) atomic_load_explicit (&c->f, memory_order_relaxed)
#define STORE(f, v) atomic_store_explicit (&c->f, (v), memory_order_relaxed)

/* gc-percent is also kept in the control record, so that a restart
 * without pcache-gc-percent keeps the last value.
 */
static void cfg_gc (struct pc_config *cfg, uint64_t v) { cfg->gc_percent = v; }
static void
set_gc (struct pc_cache *c, uint64_t v)
{
  STORE (gc_percent, v);
  pc_ctrl_update (c, NULL, NULL);
}
static uint64_t get_gc (struct pc_cache *c) { return LOAD (gc_percent); }

static void cfg_wbp (struct pc_config *cfg, uint64_t v) { cfg->wb_percent = v; }
static void set_wbp (struct pc_cache *c, uint64_t v) { STORE (wb_percent, v); }
static uint64_t get_wbp (struct pc_cache *c) { return LOAD (wb_percent); }

/* The writeback thread resizes its pool between rounds (writeback.c). */
static void cfg_wbt (struct pc_config *cfg, uint64_t v) { cfg->wb_threads = v; }
static void set_wbt (struct pc_cache *c, uint64_t v) { STORE (wb_threads, v); }
static uint64_t get_wbt (struct pc_cache *c) { return LOAD (wb_threads); }

static void
cfg_cor (struct pc_config *cfg, uint64_t v) { cfg->cache_on_read = v; }
static void
set_cor (struct pc_cache *c, uint64_t v) { STORE (cache_on_read, v); }
static uint64_t get_cor (struct pc_cache *c) { return LOAD (cache_on_read); }

static void cfg_seq (struct pc_config *cfg, uint64_t v) { cfg->seq_cutoff = v; }
static void set_seq (struct pc_cache *c, uint64_t v) { STORE (seq_cutoff, v); }
static uint64_t get_seq (struct pc_cache *c) { return LOAD (seq_cutoff); }

/* Seconds outside, milliseconds inside.  A write already waiting for
 * space measures its wait against the new value from its next check.
 */
static void
cfg_full (struct pc_config *cfg, uint64_t v) { cfg->full_timeout_s = v; }
static void
set_full (struct pc_cache *c, uint64_t v) { STORE (full_timeout_ms, v * 1000); }
static uint64_t
get_full (struct pc_cache *c) { return LOAD (full_timeout_ms) / 1000; }

/* Seconds outside, milliseconds inside; read at each writeback round. */
static void
cfg_age (struct pc_config *cfg, uint64_t v) { cfg->wb_max_age_s = v; }
static void
set_age (struct pc_cache *c, uint64_t v) { STORE (wb_max_age_ms, v * 1000); }
static uint64_t
get_age (struct pc_cache *c) { return LOAD (wb_max_age_ms) / 1000; }

/* Read by each write that would exceed it (quota.c). */
static void
cfg_quota (struct pc_config *cfg, uint64_t v) { cfg->export_quota = v; }
static void
set_quota (struct pc_cache *c, uint64_t v) { STORE (export_quota, v); }
static uint64_t
get_quota (struct pc_cache *c) { return LOAD (export_quota); }

/* Read at each write-back gather; auto's current size starts from 1. */
static void
cfg_group (struct pc_config *cfg, uint64_t v) { cfg->wb_group = v; }
static void
set_group (struct pc_cache *c, uint64_t v)
{
  STORE (wb_group, v);
  if (v)
    STORE (wb_group_epochs, v);
}
static uint64_t
get_group (struct pc_cache *c) { return LOAD (wb_group); }

/* The ranges are those of the startup parameters pcache-KEY. */
static const struct tunable tunables[PC_TUNE_COUNT] = {
  [PC_TUNE_GC_PERCENT] = {
    { "gc-percent", NULL, PC_TUNABLE_NUMBER, 0, PC_MAX_GC_PERCENT },
    cfg_gc, set_gc, get_gc },
  [PC_TUNE_WB_PERCENT] = {
    { "writeback-percent", "writeback_percent", PC_TUNABLE_NUMBER, 0, 100 },
    cfg_wbp, set_wbp, get_wbp },
  [PC_TUNE_WB_THREADS] = {
    { "writeback-threads", "writeback_threads", PC_TUNABLE_NUMBER,
      1, PC_MAX_WB_THREADS },
    cfg_wbt, set_wbt, get_wbt },
  [PC_TUNE_CACHE_ON_READ] = {
    { "cache-on-read", "cache_on_read", PC_TUNABLE_BOOL, 0, 1 },
    cfg_cor, set_cor, get_cor },
  [PC_TUNE_SEQ_CUTOFF] = {
    { "seq-cutoff", "seq_cutoff", PC_TUNABLE_SIZE, 0, INT64_MAX },
    cfg_seq, set_seq, get_seq },
  [PC_TUNE_FULL_TIMEOUT] = {
    { "full-timeout", "full_timeout", PC_TUNABLE_NUMBER, 0,
      PC_MAX_TIMEOUT_S },
    cfg_full, set_full, get_full },
  [PC_TUNE_WB_MAX_AGE] = {
    { "writeback-max-age", "writeback_max_age", PC_TUNABLE_NUMBER, 0,
      PC_MAX_TIMEOUT_S },
    cfg_age, set_age, get_age },
  [PC_TUNE_EXPORT_QUOTA] = {
    { "export-quota", "export_quota", PC_TUNABLE_NUMBER, 1, 100 },
    cfg_quota, set_quota, get_quota },
  [PC_TUNE_WB_GROUP] = {
    { "writeback-group", "writeback_group", PC_TUNABLE_NUMBER, 1,
      PC_MAX_WB_GROUP, "auto" },
    cfg_group, set_group, get_group },
};

const struct pc_tunable_info *
pc_tunable_info (enum pc_tunable t)
{
  return (unsigned) t < PC_TUNE_COUNT ? &tunables[t].info : NULL;
}

int
pc_tunable_lookup (const char *name, enum pc_tunable *t)
{
  for (unsigned i = 0; i < PC_TUNE_COUNT; i++)
    if (strcmp (name, tunables[i].info.name) == 0) {
      *t = i;
      return 0;
    }
  errno = EINVAL;
  return -1;
}

/* The entry of t, if value is in its range; else NULL, errno set and
 * the reason logged.
 */
static const struct tunable *
checked (enum pc_tunable t, uint64_t value)
{
  const struct tunable *e;

  if ((unsigned) t >= PC_TUNE_COUNT) {
    pc_fail (EINVAL, "no tunable number %d", (int) t);
    return NULL;
  }
  e = &tunables[t];
  if (value == 0 && e->info.zero_word)
    return e;
  if (value < e->info.min || value > e->info.max) {
    pc_fail (EINVAL, "%s: %" PRIu64 " is out of range %" PRIu64 "..%"
             PRIu64, e->info.name, value, e->info.min, e->info.max);
    return NULL;
  }
  return e;
}

int
pc_config_set_tunable (struct pc_config *cfg, enum pc_tunable t,
                       uint64_t value)
{
  const struct tunable *e = checked (t, value);

  if (!e)
    return -1;
  e->to_cfg (cfg, value);
  return 0;
}

int
pc_cache_set_tunable (pc_cache *c, enum pc_tunable t, uint64_t value)
{
  const struct tunable *e = checked (t, value);

  if (!e)
    return -1;
  e->set (c, value);
  pc_debug ("%s: %s is now %" PRIu64, c->path, e->info.name, value);
  /* Writeback and GC act on the new value now, not after their nap. */
  pc_kick_workers (c);
  return 0;
}

uint64_t
pc_cache_get_tunable (pc_cache *c, enum pc_tunable t)
{
  return (unsigned) t < PC_TUNE_COUNT ? tunables[t].get (c) : 0;
}

int
pc_cache_set_gc_percent (pc_cache *c, int percent)
{
  if (percent < 0)
    return pc_fail (EINVAL, "gc-percent: %d is out of range 0..%d", percent,
                    PC_MAX_GC_PERCENT);
  return pc_cache_set_tunable (c, PC_TUNE_GC_PERCENT, percent);
}
