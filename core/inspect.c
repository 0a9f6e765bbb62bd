/* SPDX-License-Identifier: BSD-3-Clause */
/* Read-only views of a cache for the admin tool: geometry, cursors and
 * the key log.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cache_internal.h"
#include "crc.h"
#include "ctrl.h"
#include "hold.h"
#include "namespace.h"
#include "util.h"

static struct pc_cursor
cursor (const struct pc_pos *p)
{
  return (struct pc_cursor) { .seg = p->seg, .off = p->off, .seq = p->seq };
}

/* Call fn for every key record from key_tail to the log head. */
typedef int (*rec_fn) (void *opaque, const struct pc_kset_hdr *h,
                       const struct pc_key_rec *r);

static int
walk_records (pc_cache *c, rec_fn fn, void *opaque)
{
  struct pc_pos pos, dirty_tail;
  uint64_t head;

  if (c->is_new)
    return pc_fail (EINVAL, "%s: cache is not formatted yet", c->path);
  pc_ctrl_tails (c, &pos, &dirty_tail);
  head = atomic_load (&c->log.head_seq);

  while (pos.seq < head) {
    const char *why;
    const struct pc_kset_hdr *h = pc_kset_at (c, &pos, &why);
    unsigned i;
    int ret;

    if (!h)
      return pc_fail (EIO, "%s: kset %" PRIu64 ": %s", c->path, pos.seq, why);
    for (i = 0; i < h->nkeys; i++)
      if ((ret = fn (opaque, h, (const struct pc_key_rec *) (h + 1) + i)))
        return ret;
    pc_kset_next (c, h, &pos);
  }
  return 0;
}

struct key_walk {
  pc_cache *c;
  uint64_t dirty_seq[PC_NS_MAX];      /* by namespace: its cursor */
  pc_key_fn fn;
  void *opaque;
  int only_bad_crc;
};

static int
key_rec (void *opaque, const struct pc_kset_hdr *h, const struct pc_key_rec *r)
{
  struct key_walk *w = opaque;
  struct pc_cache *c = w->c;
  struct pc_key_info k = {
    .kset_seq = h->seq, .epoch = h->epoch, .off = r->off, .len = r->len,
    .seg = r->seg, .seg_off = r->seg_off, .gen = r->gen, .flags = r->flags,
    .dirty = (r->flags & PC_KF_DIRTY) &&
             pc_fmt_ns_of (r->off) < PC_NS_MAX &&
             h->seq >= w->dirty_seq[pc_fmt_ns_of (r->off)],
    .stale = !(r->flags & PC_KF_ZERO) &&
             !pc_seg_gen_is (&c->segs, r->seg, r->gen),
  };

  if (w->only_bad_crc &&
      ((r->flags & PC_KF_ZERO) || k.stale ||
       pc_crc32c (pc_seg_addr (c, r->seg, r->seg_off), r->len) == r->data_crc))
    return 0;
  return w->fn (w->opaque, &k);
}

/* A key is dirty from its own namespace's cursor on: an export that
 * was written back may be past keys another still needs.
 */
static void
walk_init (pc_cache *c, struct key_walk *w, pc_key_fn fn, void *opaque,
           int only_bad_crc)
{
  uint32_t i;

  w->c = c;
  w->fn = fn;
  w->opaque = opaque;
  w->only_bad_crc = only_bad_crc;
  for (i = 0; i < PC_NS_MAX; i++)
    w->dirty_seq[i] = i < c->max_exports ? pc_ctrl_ns_tail (c, i).seq
      : UINT64_MAX;
}

int
pc_cache_walk (pc_cache *c, pc_key_fn fn, void *opaque)
{
  struct key_walk w;

  walk_init (c, &w, fn, opaque, 0);
  return walk_records (c, key_rec, &w);
}

struct tally {
  uint64_t dirty_bytes, dirty_keys, keys;
};

static int
tally_key (void *opaque, const struct pc_key_info *k)
{
  struct tally *t = opaque;

  t->keys++;
  if (k->dirty) {
    t->dirty_keys++;
    t->dirty_bytes += k->len;
  }
  return 0;
}

int
pc_cache_info (pc_cache *c, struct pc_info *info)
{
  struct tally t = { 0, 0, 0 };
  struct pc_pos kt, dt;
  uint32_t i;

  memset (info, 0, sizeof *info);
  if (c->is_new)
    return pc_fail (EINVAL, "%s: cache is not formatted yet", c->path);
  info->version = c->sb.version;
  info->features = c->sb.features;
  info->file_size = c->sb.file_size;
  info->backing_size = c->backing_size;
  info->max_exports = c->max_exports;
  for (i = 0; i < c->max_exports; i++)
    if (atomic_load (&c->ns[i])) {
      info->exports++;
      /* Alone, the default export is what backing_size names. */
      if (!c->has_bound_ns && !*c->ns[i]->name)
        info->backing_size = c->ns[i]->size;
    }
  info->seg_size = c->seg_size;
  info->nsegs = c->nsegs;
  memcpy (info->uuid, c->sb.uuid, sizeof info->uuid);
  memcpy (info->backing_id, c->sb.backing_id, sizeof info->backing_id);
  info->backing_id[sizeof info->backing_id - 1] = '\0';
  info->segs_free = pc_segs_nfree (&c->segs);
  for (i = 0; i < c->nsegs; i++) {
    if (c->segs.seg[i].role == PC_SEG_LOG)
      info->segs_log++;
    else if (c->segs.seg[i].role == PC_SEG_DATA)
      info->segs_data++;
  }
  pthread_mutex_lock (&c->log.lock);
  info->key_head = cursor (&c->log.head);
  pthread_mutex_unlock (&c->log.lock);
  pc_ctrl_tails (c, &kt, &dt);
  info->dirty_tail = cursor (&dt);
  info->key_tail = cursor (&kt);
  info->dirty_ksets = info->key_head.seq - info->dirty_tail.seq;
  info->gc_percent = atomic_load (&c->gc_percent);
  info->granularity = pc_pmem_granularity (c->pm);
  if (pc_cache_walk (c, tally_key, &t) == -1)
    return -1;
  info->dirty_bytes = t.dirty_bytes;
  info->dirty_keys = t.dirty_keys;
  info->cached_keys = t.keys;
  return 0;
}

struct bad_count {
  pc_key_fn fn;
  void *opaque;
  int64_t n;
};

static int
count_bad (void *opaque, const struct pc_key_info *k)
{
  struct bad_count *b = opaque;

  b->n++;
  return b->fn ? b->fn (b->opaque, k) : 0;
}

int64_t
pc_cache_verify_data (pc_cache *c, pc_key_fn bad, void *opaque)
{
  struct bad_count b = { bad, opaque, 0 };
  struct key_walk w;

  if (!c->data_crc)
    return 0;
  walk_init (c, &w, count_bad, &b, 1);
  /* Reported by their records' own flag. */
  memset (w.dirty_seq, 0, sizeof w.dirty_seq);
  if (walk_records (c, key_rec, &w) == -1)
    return -1;
  return b.n;
}

/* A namespace, for pcachectl info and the statistics. */
int
pc_ns_info (pc_cache *c, uint32_t id, struct pc_ns_info *info)
{
  struct pc_ns *ns = pc_ns_by_id (c, id);
  struct pc_pos tail;

  if (!ns) {
    errno = ENOENT;
    return -1;
  }
  memset (info, 0, sizeof *info);
  info->id = id;
  snprintf (info->name, sizeof info->name, "%s", ns->name);
  info->size = ns->size;
  memcpy (info->backing_id, ns->backing_id, sizeof info->backing_id);
  info->created = ns->created;
  info->dirty_bytes = atomic_load (&ns->dirty_bytes);
  tail = pc_ctrl_ns_tail (c, id);
  info->dirty_tail = tail.seq;
  info->backing_epoch = pc_ns_backing_epoch (c, ns);
  pthread_mutex_lock (&ns->lock);
  info->attached = ns->has_bg;
  pthread_mutex_unlock (&ns->lock);
  return 0;
}
