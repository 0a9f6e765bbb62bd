/* SPDX-License-Identifier: BSD-3-Clause */
/* Read path: hits from pmem, gaps from the backend, misses inserted as
 * clean keys behind placeholders so that a racing write always wins.
 * With data checksums, a hit's payload is checked before it is copied:
 * a bad clean extent leaves the index and is read as a miss, a bad
 * dirty one fails the read.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <stdlib.h>
#include <string.h>

#include "cache_internal.h"
#include "namespace.h"
#include "clean.h"
#include "crc.h"
#include "placeholder.h"
#include "util.h"

enum rd_kind { RD_HIT, RD_ZERO, RD_GAP };

struct rd_item {
  uint64_t off;
  uint32_t len;
  enum rd_kind kind;
  uint32_t seg, seg_off, gen;     /* RD_HIT: pinned payload */
  struct pc_key *ph;              /* RD_GAP: our placeholder, or NULL */
  /* RD_HIT of a key with a data CRC: its record's payload and CRC. */
  uint32_t rec_seg_off, rec_len, data_crc;
  uint8_t check;                  /* those are set */
  uint8_t dirty;                  /* the key was dirty */
  uint8_t bad;                    /* the payload does not match */
  uint8_t report;                 /* bad, and first found by this read */
};

/* Most reads are one or two extents: those need no allocation. */
#define RD_INLINE 4

struct rd_list {
  struct rd_item *v;
  size_t n, cap;
  struct rd_item inl[RD_INLINE];
};

static int
rd_push (struct rd_list *l, struct rd_item it)
{
  if (l->n == l->cap) {
    size_t cap = l->cap * 2;
    struct rd_item *v = l->v == l->inl ? malloc (cap * sizeof *v)
      : realloc (l->v, cap * sizeof *v);
    if (!v)
      return -1;
    if (l->v == l->inl)
      memcpy (v, l->inl, sizeof l->inl);
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = it;
  return 0;
}

/* What a hit needs to check its payload later, without the key. */
static void
rd_note_crc (struct rd_item *it, struct pc_key *k)
{
  const struct pc_key_crc *x = pc_key_crc (k);

  if (!(k->flags & PC_KEY_CRC))
    return;
  it->check = 1;
  it->rec_seg_off = x->rec_seg_off;
  it->rec_len = x->rec_len;
  it->data_crc = x->data_crc;
  it->dirty = !!(k->flags & PC_KF_DIRTY);
  it->bad = !!(k->flags & PC_KEY_BADCRC);   /* known bad: no need to look */
}

static void
rd_unpin (struct pc_cache *c, struct rd_list *l)
{
  size_t i;

  for (i = 0; i < l->n; i++)
    if (l->v[i].kind == RD_HIT)
      pc_seg_put (&c->segs, l->v[i].seg);
  l->n = 0;
}

/* A hit that goes on from the one before, in the same segment's
 * payload: the pin of the one before covers it, and one copy serves
 * both.  The segment is pinned at gen, so a key of that gen is current.
 * Keys with a data CRC stay apart: each is checked against its record.
 */
static int
rd_extend (struct rd_list *l, const struct pc_key *k, uint64_t ks,
           uint64_t ke)
{
  struct rd_item *p = l->n ? &l->v[l->n - 1] : NULL;

  if (p == NULL || p->kind != RD_HIT || p->check ||
      (k->flags & PC_KEY_CRC) || p->seg != k->seg || p->gen != k->gen ||
      p->off + p->len != ks ||
      (uint64_t) p->seg_off + p->len != k->seg_off + (ks - k->off))
    return 0;
  p->len += ke - ks;
  return 1;
}

/* Walk [off, off+len) of one stripe.  With write set (write lock held)
 * stale keys are dropped and our placeholders are made for gaps.
 * Returns the number of gaps, or -1.
 */
static int
rd_walk (struct pc_cache *c, struct pc_tree *t, uint64_t off, uint32_t len,
         int write, int fill, struct rd_list *l)
{
  uint64_t pos = off, end = off + len;
  struct pc_tree_pos at;
  struct pc_key *k = pc_tree_find_pos (t, off, len, &at), *next;
  int gaps = 0;
  size_t i;

  for (; k && k->off < end; k = next) {
    uint64_t ks = PC_MAX (k->off, pos), ke = PC_MIN (k->off + k->len, end);
    struct rd_item it = { .off = ks, .len = ke - ks, .kind = RD_HIT };
    int foreign = !!(k->flags & PC_KEY_EMPTY);

    /* Keys never overlap: one ending at or past end is the last in the
     * range, and looking at the next would only cost a cache miss.
     */
    next = k->off + k->len < end ? pc_tree_next_pos (&at) : NULL;
    if (ks > pos) {
      if (rd_push (l, (struct rd_item) { .off = pos, .len = ks - pos,
                                         .kind = RD_GAP }) == -1)
        return -1;
      gaps++;
    }
    if (foreign)
      it.kind = RD_GAP;           /* another reader's miss in flight */
    else if (k->flags & PC_KF_ZERO)
      it.kind = RD_ZERO;
    else if (rd_extend (l, k, ks, ke)) {
      pos = ke;
      continue;
    }
    else if (pc_seg_get_if_gen (&c->segs, k->seg, k->gen)) {
      it.seg = k->seg;
      it.seg_off = k->seg_off + (ks - k->off);
      it.gen = k->gen;
      rd_note_crc (&it, k);
    }
    else {
      /* Stale: its segment was reclaimed after writeback. */
      it.kind = RD_GAP;
      if (write) {
        pc_tree_remove (t, k);    /* frees k */
        /* The removal may have moved the next key: find its place. */
        if (next)
          next = pc_tree_find_pos (t, next->off, 1, &at);
      }
    }
    if (it.kind == RD_GAP) {
      /* Merge with a preceding gap so one backend read serves both. */
      if (l->n && l->v[l->n - 1].kind == RD_GAP &&
          l->v[l->n - 1].off + l->v[l->n - 1].len == it.off && !foreign) {
        l->v[l->n - 1].len += it.len;
        pos = ke;
        continue;
      }
      gaps++;
    }
    if (rd_push (l, it) == -1)
      return -1;
    pos = ke;
  }
  if (pos < end) {
    if (rd_push (l, (struct rd_item) { .off = pos, .len = end - pos,
                                       .kind = RD_GAP }) == -1)
      return -1;
    gaps++;
  }
  /* While an overtaken write-through is in flight, what the backend
   * returns may still be overwritten by it: read, but cache nothing.
   */
  if (!write || !fill || t->orphans > 0)
    return gaps;

  /* Claim each true gap with a placeholder. */
  for (i = 0; i < l->n; i++) {
    struct rd_item *it = &l->v[i];
    struct pc_key *ph;

    if (it->kind != RD_GAP)
      continue;
    if (pc_tree_find (t, it->off, it->len))
      continue;                   /* partly someone else's placeholder */
    ph = pc_key_alloc ();
    if (!ph)
      continue;
    ph->off = it->off;
    ph->len = it->len;
    ph->flags = PC_KEY_EMPTY;
    if (pc_tree_insert (t, ph) == -1)
      pc_key_free (ph);
    else
      it->ph = ph;
  }
  return gaps;
}

static void
rd_drop_placeholders (struct pc_tree *t, struct rd_list *l)
{
  size_t i;

  for (i = 0; i < l->n; i++)
    if (l->v[i].ph) {
      pc_drop_placeholder (t, l->v[i].ph);
      l->v[i].ph = NULL;
    }
}

/* Records whose payload this read has checked.  A record that later
 * writes split shows up as several hits, each of which would check all
 * of it again; a few recent ones are enough for that.
 */
#define RD_SEEN 4

struct rd_seen {
  unsigned next;
  struct { uint32_t seg, gen, rec_seg_off; int8_t good; } v[RD_SEEN];
};

/* 1 good, 0 bad, -1 not checked yet.  (Payload is never rewritten in
 * place, and gen tells apart another use of the segment.)
 */
static int
rd_seen_result (const struct rd_seen *s, const struct rd_item *it)
{
  unsigned i;

  for (i = 0; i < RD_SEEN; i++)
    if (s->v[i].good >= 0 && s->v[i].seg == it->seg &&
        s->v[i].gen == it->gen && s->v[i].rec_seg_off == it->rec_seg_off)
      return s->v[i].good;
  return -1;
}

static void
rd_seen_note (struct rd_seen *s, const struct rd_item *it, int good)
{
  unsigned i = s->next++ % RD_SEEN;

  s->v[i].seg = it->seg;
  s->v[i].gen = it->gen;
  s->v[i].rec_seg_off = it->rec_seg_off;
  s->v[i].good = good;
}

/* Check the payload of every hit with a checksum while its pin keeps the
 * segment from reuse.  The CRC covers the record's whole payload, so a
 * small hit on a large record checks all of it.  Returns the number of
 * bad hits, marked bad.
 */
static unsigned
rd_verify (struct pc_cache *c, struct rd_list *l, struct rd_seen *seen)
{
  unsigned bad = 0;
  size_t i;

  for (i = 0; i < l->n; i++) {
    struct rd_item *it = &l->v[i];
    int good;

    if (it->kind != RD_HIT || !it->check)
      continue;
    if (!it->bad) {
      good = rd_seen_result (seen, it);
      if (good < 0) {
        good = pc_crc32c (pc_seg_addr (c, it->seg, it->rec_seg_off),
                          it->rec_len) == it->data_crc;
        rd_seen_note (seen, it, good);
      }
      it->bad = !good;
    }
    bad += it->bad;
  }
  return bad;
}

/* The key a bad hit came from, if it is still in t: a later write may
 * have replaced it (then reading again finds the new data).  Caller
 * holds the lock.
 */
static struct pc_key *
rd_same_key (struct pc_tree *t, const struct rd_item *it)
{
  struct pc_key *k = pc_tree_find (t, it->off, 1);

  if (k == NULL || (k->flags & (PC_KEY_EMPTY | PC_KF_ZERO)) ||
      !(k->flags & PC_KEY_CRC) || k->seg != it->seg || k->gen != it->gen ||
      (uint64_t) k->seg_off + (it->off - k->off) != it->seg_off)
    return NULL;
  return k;
}

static void
rd_report_bad (struct pc_cache *c, const struct rd_item *it)
{
  PC_COUNT (c, crc_errors, 1);
  pc_error ("%s: a read at offset %" PRIu64 " hit cached data that fails "
            "its checksum (segment %" PRIu32 ":%" PRIu32 ", %" PRIu32
            " bytes): %s", c->path, it->off, it->seg, it->rec_seg_off,
            it->rec_len,
            it->dirty ? "it is dirty, so reads of it fail with EIO "
            "(pcachectl check reports it)"
            : "it is clean, so it is dropped and read from the backend");
}

/* Deal with the bad hits of a read, still pinned.  A clean one leaves
 * the index: it was only a copy of the backend.  Dirty data is never
 * dropped: the key stays for pcachectl check, marked so that it is
 * reported once, and reads of it fail.  (A key dirty since the cache
 * was opened counts as dirty even once written back: the index does not
 * know.)  Returns 1 if the read must fail, 0 if it can be read again.
 */
static int
rd_settle_bad (struct pc_cache *c, struct pc_tree *t, struct rd_list *l)
{
  int fail = 0;
  size_t i;

  pc_wrlock (&t->lock);
  for (i = 0; i < l->n; i++) {
    struct rd_item *it = &l->v[i];
    struct pc_key *k;

    if (it->kind != RD_HIT || !it->bad || (k = rd_same_key (t, it)) == NULL)
      continue;
    it->dirty = !!(k->flags & PC_KF_DIRTY);
    it->report = !(k->flags & PC_KEY_BADCRC);
    if (it->dirty) {
      k->flags |= PC_KEY_BADCRC;
      fail = 1;
    }
    else
      pc_tree_remove (t, k);
  }
  pthread_rwlock_unlock (&t->lock);

  for (i = 0; i < l->n; i++)
    if (l->v[i].kind == RD_HIT && l->v[i].report)
      rd_report_bad (c, &l->v[i]);
  return fail;
}

/* Each round of a read drops at least one bad clean key (or finds it
 * replaced); only writes racing with it could need more than a few.
 */
#define RD_MAX_ROUNDS 8

/* Pin the hits of [off, off+len) and claim its gaps, checking the hits'
 * payload.  Returns the number of gaps, or -1 with *err set.
 */
static int
rd_collect (struct pc_cache *c, struct pc_tree *t, uint64_t off,
            uint32_t len, int fill, struct rd_list *l, int *err)
{
  struct rd_seen seen = { .next = 0 };
  unsigned round, i;
  int gaps;

  for (i = 0; i < RD_SEEN; i++)
    seen.v[i].good = -1;
  for (round = 0; ; round++) {
    l->n = 0;
    pc_rdlock (&t->lock);
    gaps = rd_walk (c, t, off, len, 0, 0, l);
    pthread_rwlock_unlock (&t->lock);
    if (gaps > 0) {
      rd_unpin (c, l);
      pc_wrlock (&t->lock);
      gaps = rd_walk (c, t, off, len, 1, fill, l);
      pthread_rwlock_unlock (&t->lock);
    }
    if (gaps < 0) {
      rd_unpin (c, l);
      *err = ENOMEM;
      return -1;
    }
    if (!c->data_crc || rd_verify (c, l, &seen) == 0)
      return gaps;

    /* What a bad clean key leaves is a gap when read again. */
    if (rd_settle_bad (c, t, l) || round + 1 == RD_MAX_ROUNDS) {
      rd_drop_placeholders (t, l);
      rd_unpin (c, l);
      *err = EIO;
      return -1;
    }
    rd_drop_placeholders (t, l);
    rd_unpin (c, l);
  }
}

static int
read_piece (struct pc_cache *c, uint8_t *buf, uint32_t len, uint64_t off,
            const struct pc_backend *fg, int fill, struct rd_list *l,
            int *err)
{
  struct pc_tree *t = pc_index_tree (&c->index, off);
  int gaps;
  size_t i;

  gaps = rd_collect (c, t, off, len, fill, l, err);
  if (gaps < 0)
    return -1;

  /* Copy outside the lock: the pins keep the payload from reuse. */
  for (i = 0; i < l->n; i++) {
    struct rd_item *it = &l->v[i];
    uint8_t *dst = buf + (it->off - off);

    if (it->kind == RD_HIT) {
      memcpy (dst, pc_seg_addr (c, it->seg, it->seg_off), it->len);
      pc_seg_put (&c->segs, it->seg);
      PC_COUNT (c, read_hit_bytes, it->len);
    }
    else if (it->kind == RD_ZERO)
      memset (dst, 0, it->len);
  }
  if (gaps == 0) {
    PC_COUNT (c, read_hits, 1);
    return 0;
  }
  PC_COUNT (c, read_misses, 1);

  for (i = 0; i < l->n; i++) {
    struct rd_item *it = &l->v[i];

    if (it->kind != RD_GAP)
      continue;
    if (fg->ops->pread (fg->ctx, buf + (it->off - off), it->len,
                        it->off & PC_NS_OFF_MASK,
                        err) == -1) {
      rd_drop_placeholders (t, l);
      return -1;
    }
    PC_COUNT (c, read_miss_bytes, it->len);
  }
  for (i = 0; i < l->n; i++)
    if (l->v[i].ph) {
      pc_fill_placeholder (c, t, l->v[i].ph, buf + (l->v[i].off - off));
      l->v[i].ph = NULL;
    }
  return 0;
}

/* Does this read continue a sequential stream longer than the cutoff?
 * A few recent streams are tracked, so interleaved readers are told
 * apart; the least recently extended one makes room for a new stream.
 */
static int
seq_bypass (struct pc_cache *c, uint64_t off, uint32_t len)
{
  uint64_t cutoff = atomic_load_explicit (&c->seq_cutoff,
                                         memory_order_relaxed);
  unsigned i;
  int bypass = 0;

  if (!cutoff)
    return 0;
  pthread_mutex_lock (&c->seq_lock);
  for (i = 0; i < 8; i++)
    if (c->streams[i].next == off && c->streams[i].run > 0)
      break;
  if (i < 8)
    c->streams[i].run += len;
  else {
    i = c->stream_clock++ % 8;
    c->streams[i].run = len;
  }
  c->streams[i].next = off + len;
  bypass = c->streams[i].run > cutoff;
  pthread_mutex_unlock (&c->seq_lock);
  if (bypass)
    PC_COUNT (c, seq_bypass_bytes, len);
  return bypass;
}

int
pc_read (pc_cache *c, void *buf, uint32_t len, uint64_t off,
         const struct pc_backend *fg, int *err)
{
  struct rd_list l;
  uint8_t *dst = buf;
  int r = 0, fill;

  l.v = l.inl;
  l.n = 0;
  l.cap = RD_INLINE;

  if (!pc_ns_in_range (c, off, len)) {
    *err = EINVAL;
    return -1;
  }
  pc_note_io (c, 0);
  PC_NS_COUNT (pc_ns_get (c, off), reads, 1);
  PC_NS_COUNT (pc_ns_get (c, off), read_bytes, len);
  fill = atomic_load_explicit (&c->cache_on_read, memory_order_relaxed) &&
    !seq_bypass (c, off, len);
  while (len > 0 && r == 0) {
    uint32_t piece = PC_MIN ((uint64_t) len, pc_stripe_end (c, off) - off);

    r = read_piece (c, dst, piece, off, fg, fill, &l, err);
    dst += piece;
    off += piece;
    len -= piece;
  }
  if (l.v != l.inl)
    free (l.v);
  return r;
}

int
pc_map (pc_cache *c, uint64_t off, uint64_t len, pc_map_fn fn, void *opaque)
{
  struct pc_ns *ns = pc_ns_get (c, off);
  uint64_t end, o = off & PC_NS_OFF_MASK;

  if (!ns || o > ns->size)
    return 0;
  end = off + PC_MIN (len, ns->size - o);
  while (off < end) {
    uint64_t pend = PC_MIN (end, pc_stripe_end (c, off)), pos = off;
    struct pc_tree *t = pc_index_tree (&c->index, off);
    struct pc_tree_pos at;
    struct pc_key *k;
    int r = 0;

    pc_rdlock (&t->lock);
    for (k = pc_tree_find_pos (t, off, pend - off, &at);
         k && k->off < pend && r == 0; k = pc_tree_next_pos (&at)) {
      uint64_t ks = PC_MAX (k->off, pos), ke = PC_MIN (k->off + k->len, pend);
      enum pc_map_type type = PC_MAP_DATA;

      if (ks > pos)
        r = fn (opaque, pos, ks - pos, PC_MAP_UNCACHED);
      if (k->flags & PC_KEY_EMPTY)
        type = PC_MAP_UNCACHED;
      else if (k->flags & PC_KF_ZERO)
        type = PC_MAP_ZERO;
      else if (pc_seg_get_if_gen (&c->segs, k->seg, k->gen)) {
        pc_seg_put (&c->segs, k->seg);
        if (!(k->flags & PC_KF_DIRTY))
          type = PC_MAP_CLEAN;
      }
      else
        type = PC_MAP_UNCACHED;
      if (r == 0)
        r = fn (opaque, ks, ke - ks, type);
      pos = ke;
    }
    pthread_rwlock_unlock (&t->lock);
    if (r == 0 && pos < pend)
      r = fn (opaque, pos, pend - pos, PC_MAP_UNCACHED);
    if (r != 0)
      return r;
    off = pend;
  }
  return 0;
}
