/* SPDX-License-Identifier: BSD-3-Clause */
/* Rebuild RAM state from the key log: walk from key_tail, stop at the
 * first kset that does not validate (the normal end of the log, or a
 * torn commit), and index every key found.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <stdlib.h>
#include <string.h>

#include "cache_internal.h"
#include "namespace.h"
#include "replay.h"
#include "util.h"

static int
pos_eq (const struct pc_pos *a, const struct pc_pos *b)
{
  return a->seg == b->seg && a->off == b->off && a->seq == b->seq;
}

/* Validate one key record.  Returns 1 live, 0 stale, -1 corrupt. */
static int
check_key (struct pc_cache *c, const struct pc_key_rec *r, const char **why)
{
  uint64_t stripe = 1ULL << PC_STRIPE_SHIFT;
  struct pc_ns *ns = pc_ns_get (c, r->off);

  if (!ns) {
    *why = "key of a namespace the table does not hold";
    return -1;
  }
  /* The engine also keeps every key inside one stripe. */
  if (!pc_fmt_key_range_ok (r, ns->size) || r->len > stripe ||
      r->off / stripe != (r->off + r->len - 1) / stripe) {
    *why = "key range or flags out of bounds";
    return -1;
  }
  if (r->flags & PC_KF_ZERO)
    return 1;
  if (!pc_fmt_key_payload_ok (&c->geom, r)) {
    *why = "key payload position out of bounds";
    return -1;
  }
  /* In a live look, the segment may have been freed and used again
   * since its record was read (the record is written before any key of
   * the new use).
   */
  if ((int32_t) (r->gen - pc_seg_gen32 (&c->segs, r->seg)) > 0 &&
      c->cfg.live)
    pc_seg_reload_gen (&c->segs, r->seg);
  /* A segment reused since this record was written has a newer
   * generation: the record is stale.  A record newer than its segment
   * cannot be: the generation record is damaged, and trusting it would
   * silently roll back every key of the segment.
   */
  if ((int32_t) (r->gen - pc_seg_gen32 (&c->segs, r->seg)) > 0) {
    *why = "key is newer than its segment's generation record";
    return -1;
  }
  if (pc_seg_gen32 (&c->segs, r->seg) != r->gen)
    return 0;
  if (c->segs.seg[r->seg].role == PC_SEG_LOG) {
    *why = "key payload points into the log";
    return -1;
  }
  /* Payload checksums are not checked here: reading all of the cache
   * would slow every open, and one bad copy would refuse the whole
   * cache.  A read checks what it hits, and write-back what it writes.
   */
  return 1;
}

static int
index_key (struct pc_cache *c, const struct pc_key_rec *r, int dirty)
{
  struct pc_key *k = pc_key_for_rec (c, r);
  struct pc_tree *t;
  int ret;

  if (!k)
    return -1;
  if (!dirty)
    k->flags &= ~PC_KF_DIRTY;
  t = pc_index_tree (&c->index, r->off);
  ret = pc_tree_insert (t, k);
  if (ret == -1)
    pc_key_free (k);
  else if (r->flags & PC_KF_INVAL)
    pc_tree_remove (t, k);      /* it only cut what it covers */
  return ret;
}

/* Keys of a kset are indexed in groups of this many, the tree nodes
 * each will visit fetched for all of the group at once: a log written
 * in random order sends consecutive keys to random places in the
 * index, and one insert after another would wait for each miss in turn.
 */
#define PREFETCH_KEYS 16

static void
prefetch_keys (struct pc_cache *c, const struct pc_key_rec *r, unsigned n)
{
  struct pc_tree *t[PREFETCH_KEYS];
  uint64_t off[PREFETCH_KEYS];
  unsigned i;

  for (i = 0; i < n; i++) {
    off[i] = r[i].off;
    t[i] = pc_index_tree (&c->index, off[i]);
  }
  pc_tree_prefetch (t, off, n);
}

/* Is there a valid kset after the end of the log at p (p.seq is set)? */
static int
later_kset (struct pc_cache *c, const struct pc_pos *end, struct pc_pos *p)
{
  const struct pc_kset_hdr *h =
    (const struct pc_kset_hdr *) pc_seg_addr (c, p->seg, p->off);
  uint64_t most = (uint64_t) c->nsegs * (c->seg_size / PC_KSET_ALIGN);
  const char *why;

  /* The kset the log expected (end->seq) found elsewhere counts too:
   * then a LAST record sent the log to the wrong segment.
   */
  if (h->seq < end->seq || h->seq - end->seq > most)
    return 0;
  p->seq = h->seq;
  return pc_kset_at (c, p, &why) != NULL;
}

/* The log ended at end.  A crash can only tear the last kset written,
 * because each kset is written after the one before is durable; so a
 * valid kset with a later sequence number, further on in the head
 * segment or at the start of a segment off the chain (behind a damaged
 * LAST record), means the log is damaged in the middle, and the ksets
 * after the damage hold data that must not be dropped silently.  In
 * lenient mode they are dropped, and their headers cleared so that no
 * later open finds them again.
 */
static int
log_continues (struct pc_cache *c, const struct pc_pos *end)
{
  int lenient = c->cfg.lenient_replay, reported = 0;
  struct pc_pos p;
  uint32_t s;

  for (s = 0; s < c->nsegs; s++) {
    uint32_t off = 0;

    if (s == end->seg)
      off = end->off + PC_KSET_ALIGN;
    else if (c->segs.seg[s].role != PC_SEG_FREE)
      continue;
    for (; off + sizeof (struct pc_kset_hdr) <= c->seg_size;
         off += PC_KSET_ALIGN) {
      p = (struct pc_pos) { .seg = s, .off = off };
      if (!later_kset (c, end, &p)) {
        if (s != end->seg)
          break;                /* off the chain: only offset 0 counts */
        continue;
      }
      if (!reported++)
        pc_error ("%s: the key log is damaged: kset %" PRIu64 " at segment "
                  "%u offset %u does not validate, but kset %" PRIu64 " is "
                  "at segment %u offset %u%s", c->path, end->seq, end->seg,
                  end->off, p.seq, p.seg, p.off,
                  lenient ? "; lenient replay drops it and what follows"
                  : " (pcache-replay=lenient would drop them)");
      if (!lenient) {
        errno = EINVAL;
        return 1;
      }
      pc_pmem_set (c->pm, pc_seg_addr (c, p.seg, p.off), 0,
                   sizeof (struct pc_kset_hdr));
      if (s != end->seg)
        break;
    }
  }
  return 0;
}

/* The namespaces' dirty cursors, in log order, for replay to find
 * each on the log as it walks it.
 */
struct ns_tails {
  uint32_t n, next;
  uint32_t id[PC_NS_MAX];
  struct pc_pos pos[PC_NS_MAX];
  uint64_t seq[PC_NS_MAX];            /* by id: a key at or past it is dirty */
};

static void
tails_load (struct pc_cache *c, struct ns_tails *t)
{
  uint32_t i, j;

  t->n = t->next = 0;
  for (i = 0; i < c->max_exports; i++) {
    struct pc_pos p = c->ctrl.ns_tail[i];

    if (!atomic_load (&c->ns[i]))
      continue;
    /* Created but not yet given a cursor when the cache stopped, or
     * behind what GC reclaimed: nothing of it is before key_tail.
     */
    if (p.seq < c->ctrl.key_tail.seq)
      p = c->ctrl.key_tail;
    t->seq[i] = p.seq;
    /* Insertion sort by sequence: few entries. */
    for (j = t->n; j > 0 && t->pos[j - 1].seq > p.seq; j--) {
      t->pos[j] = t->pos[j - 1];
      t->id[j] = t->id[j - 1];
    }
    t->pos[j] = p;
    t->id[j] = i;
    t->n++;
  }
}

/* Each cursor at the kset numbered pos->seq must be exactly there. */
static int
tails_meet (struct pc_cache *c, struct ns_tails *t, const struct pc_pos *pos)
{
  for (; t->next < t->n && t->pos[t->next].seq <= pos->seq; t->next++)
    if (!pos_eq (&t->pos[t->next], pos))
      return pc_fail (EINVAL, "%s: the dirty cursor of namespace %u (kset %"
                      PRIu64 ") is not on the key log", c->path,
                      t->id[t->next], t->pos[t->next].seq);
  return 0;
}

int
pc_replay (struct pc_cache *c)
{
  struct pc_pos pos = c->ctrl.key_tail;
  const struct pc_pos *dt = &c->ctrl.dirty_tail;
  int past_dirty = 0;
  uint64_t last_epoch = 0, nkeys = 0, nksets = 0;
  const char *why;
  struct ns_tails *tails = malloc (sizeof *tails);
  int r = -1;

  if (!tails)
    return pc_fail (ENOMEM, "%s: out of memory", c->path);
  tails_load (c, tails);
  if (!pc_fmt_pos_ok (&c->geom, &pos) || !pc_fmt_pos_ok (&c->geom, dt) ||
      dt->seq < pos.seq) {
    pc_fail (EINVAL, "%s: log cursors in the control record are out "
             "of range", c->path);
    goto out;
  }
  c->segs.seg[pos.seg].role = PC_SEG_LOG;

  for (;;) {
    const struct pc_kset_hdr *h;
    unsigned i;

    if (pos_eq (&pos, dt))
      past_dirty = 1;
    if (tails_meet (c, tails, &pos) == -1)
      goto out;
    h = pc_kset_at (c, &pos, &why);
    if (!h)
      break;
    nksets++;
    last_epoch = h->epoch;
    if (h->flags & PC_KSET_LAST) {
      struct pc_seg *next = &c->segs.seg[h->next_seg];

      /* In a live look, a segment the look saw in use may since have
       * been freed and taken for the log.
       */
      if (next->role != PC_SEG_FREE && c->cfg.live)
        pc_seg_reload_gen (&c->segs, h->next_seg);
      if (next->role != PC_SEG_FREE) {
        pc_fail (EINVAL, "%s: log segment %u is linked twice or holds "
                 "data (kset %" PRIu64 ")", c->path, h->next_seg, h->seq);
        goto out;
      }
      next->role = PC_SEG_LOG;
      pc_kset_next (c, h, &pos);
      continue;
    }
    for (i = 0; i < h->nkeys; i++) {
      const struct pc_key_rec *r = (const struct pc_key_rec *) (h + 1) + i;
      int live, dirty;

      if (i % PREFETCH_KEYS == 0)
        prefetch_keys (c, r, PC_MIN (h->nkeys - i, PREFETCH_KEYS));
      live = check_key (c, r, &why);

      if (live < 0) {
        pc_fail (EINVAL, "%s: kset %" PRIu64 " key %u (offset %" PRIu64
                 "): %s", c->path, h->seq, i, r->off, why);
        goto out;
      }
      if (!live)
        continue;
      if (!(r->flags & PC_KF_ZERO))
        pc_seg_hold_replayed (&c->segs, r->seg);
      dirty = past_dirty && h->seq >= tails->seq[pc_fmt_ns_of (r->off)];
      if (dirty && (r->flags & PC_KF_DIRTY)) {
        PC_COUNT (c, dirty_bytes, r->len);
        atomic_fetch_add (&pc_ns_get (c, r->off)->dirty_bytes, r->len);
      }
      if (index_key (c, r, dirty) == -1) {
        pc_fail (ENOMEM, "%s: out of memory indexing the cache", c->path);
        goto out;
      }
      nkeys++;
    }
    pc_kset_next (c, h, &pos);
  }
  if (log_continues (c, &pos))
    goto out;
  if (!past_dirty) {
    pc_fail (EINVAL, "%s: the dirty cursor (kset %" PRIu64 ") is not "
             "on the key log, which ends at kset %" PRIu64, c->path,
             dt->seq, pos.seq);
    goto out;
  }
  if (tails->next < tails->n) {
    pc_fail (EINVAL, "%s: the dirty cursor of namespace %u (kset %" PRIu64
             ") is not on the key log, which ends at kset %" PRIu64,
             c->path, tails->id[tails->next], tails->pos[tails->next].seq,
             pos.seq);
    goto out;
  }

  /* Nothing may be written where the log ended: a data segment in the
   * log chain is corruption (checked as LAST records were followed).
   */
  c->log.head = pos;
  atomic_store (&c->log.head_seq, pos.seq);
  c->log.epoch = last_epoch + 1;
  pc_segs_build_free (&c->segs);
  pc_debug ("%s: replayed %" PRIu64 " ksets, %" PRIu64 " keys; %u of %u "
            "segments free", c->path, nksets, nkeys,
            pc_segs_nfree (&c->segs), c->nsegs);
  r = 0;
 out:
  free (tails);
  return r;
}
