/* SPDX-License-Identifier: BSD-3-Clause */
/* Write path: payload to pmem, key to the index and the log. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <string.h>
#include <pthread.h>

#include "cache_internal.h"
#include "backend.h"
#include "clean.h"
#include "crc.h"
#include "namespace.h"
#include "payload.h"
#include "quota.h"
#include "placeholder.h"
#include "util.h"
#include "workers.h"

/* Log one record and index it.  *seal_gen receives the key buffer's
 * seal count.
 *
 * With src, its payload is copied in first, with the subtree's and the
 * key buffer's locks already held: the payload is durable before its key
 * can be committed, and the index work that follows overlaps the copy's
 * stores draining to the medium, which a locked instruction waits for.
 * So, but when a buffer fills or a thread's spare keys or nodes run out,
 * nothing between the copy and the first unlock takes a lock or adds
 * with one (PC_COUNT, in a shard of the thread's own, does not).
 */
static int
log_piece (struct pc_cache *c, const struct pc_key_rec *rec,
           const void *src, uint64_t *seal_gen, int *err)
{
  struct pc_tree *t = pc_index_tree (&c->index, rec->off);
  struct pc_kbuf *kb = pc_kbuf_for (c, rec->off);
  struct pc_key_crc key = { .k.flags = 0 };
  int hit, r = 0;

  if (pc_rec_has_crc_key (c, rec))
    key.k.flags = PC_KEY_CRC;
  pc_key_from_rec (&key.k, rec);
  pc_wrlock (&t->lock);
  pthread_mutex_lock (&kb->lock);
  if (src)
    pc_pmem_copy (c->pm, pc_seg_addr (c, rec->seg, rec->seg_off), src,
                  rec->len);
  hit = pc_tree_put (t, &key.k);
  if (hit == -1)
    r = -1;
  else if ((r = pc_kbuf_add (c, kb, rec, seal_gen)) == 0) {
    PC_COUNT (c, dirty_bytes, rec->len);
    /* A write hit: the range held cached data already. */
    if (hit == 1 && !(rec->flags & PC_KF_ZERO))
      PC_COUNT (c, write_hits, 1);
  }
  pthread_mutex_unlock (&kb->lock);
  pthread_rwlock_unlock (&t->lock);
  if (r == -1) {
    *err = errno ? errno : EIO;
    return -1;
  }
  return 0;
}

/* FUA: commit each buffer that still holds one of our keys. */
struct fua_set {
  uint64_t gen[PC_NKBUFS];
  uint8_t used[PC_NKBUFS];
};

static void
fua_note (struct pc_cache *c, struct fua_set *fs, uint64_t off, uint64_t gen)
{
  unsigned i = pc_kbuf_for (c, off) - c->kbufs;

  fs->used[i] = 1;
  fs->gen[i] = gen;
}

static int
fua_commit (struct pc_cache *c, struct fua_set *fs, int *err)
{
  unsigned i;

  for (i = 0; i < PC_NKBUFS; i++)
    if (fs->used[i] &&
        pc_kbuf_commit_upto (c, &c->kbufs[i], fs->gen[i]) == -1) {
      *err = errno ? errno : EIO;
      return -1;
    }
  return 0;
}

static int
check_range (struct pc_cache *c, uint64_t len, uint64_t off, int *err)
{
  if (!pc_ns_in_range (c, off, len)) {
    *err = EINVAL;
    return -1;
  }
  return 0;
}

/* The namespace's share of the dirty gauge goes up before its keys can
 * be committed, so that write-back, seeing it at zero, may take every
 * kset committed so far to hold none of its dirty keys.
 */
static void
ns_dirty (struct pc_cache *c, uint64_t off, uint64_t add, uint64_t sub)
{
  struct pc_ns *ns = pc_ns_get (c, off);

  if (add)
    atomic_fetch_add (&ns->dirty_bytes, add);
  if (sub)
    atomic_fetch_sub (&ns->dirty_bytes, sub);
}

/* Write-back: payload to pmem, a dirty key to the log. */
static int
write_back (pc_cache *c, const uint8_t *src, uint32_t len, uint64_t off,
            unsigned flags, int *err)
{
  struct fua_set fs = { { 0 }, { 0 } };
  uint64_t start = off;

  if (pc_quota_take (c, pc_ns_get (c, off), len, err) == -1)
    return -1;
  while (len > 0) {
    struct pc_key_rec rec = { .off = off, .flags = PC_KF_DIRTY };
    uint32_t piece = PC_MIN ((uint64_t) len, pc_stripe_end (c, off) - off);
    uint64_t sg;

    if (pc_alloc_payload (c, piece, 1, &rec.seg, &rec.seg_off, &rec.len,
                          &rec.gen) == -1) {
      *err = errno;
      ns_dirty (c, start, 0, len);
      return -1;
    }
    if (c->data_crc)
      rec.data_crc = pc_crc32c (src, rec.len);
    if (log_piece (c, &rec, src, &sg, err) == -1) {
      pc_seg_put (&c->segs, rec.seg);
      ns_dirty (c, start, 0, len);
      return -1;
    }
    fua_note (c, &fs, off, sg);
    src += rec.len;
    off += rec.len;
    len -= rec.len;
  }
  return (flags & PC_FUA) ? fua_commit (c, &fs, err) : 0;
}

/* Caller holds t's write lock.  The writers' placeholders over [off,
 * off+len), which a new key there is about to overtake.
 */
static unsigned
writers_in (struct pc_tree *t, uint64_t off, uint32_t len)
{
  struct pc_tree_pos at;
  struct pc_key *k;
  unsigned n = 0;

  pc_assert_wrheld (&t->lock);
  for (k = pc_tree_find_pos (t, off, len, &at); k && k->off < off + len;
       k = pc_tree_next_pos (&at))
    if (k->flags & PC_KEY_WRITER)
      n++;
  return n;
}

/* Uncache one stripe piece durably before the backend changes it: an
 * INVAL record cuts every key it covers, here and at replay, so nothing
 * older can resurface once the backend holds newer data.  A placeholder
 * of the writer's then holds the range until the backend write ends, so
 * that a read meanwhile, which may get old or new data, caches neither.
 * The caller fills it with the new data if *keep says so, else drops it.
 */
static int
invalidate (pc_cache *c, uint64_t off, uint32_t len, int *keep,
            struct pc_key **ph, int *err)
{
  struct pc_tree *t = pc_index_tree (&c->index, off);
  struct pc_kbuf *kb = pc_kbuf_for (c, off);
  struct pc_key_rec rec = {
    .off = off, .len = len, .flags = PC_KF_ZERO | PC_KF_INVAL,
  };
  struct pc_key *k = pc_key_alloc ();
  uint64_t sg;
  unsigned writers;
  int r;

  if (!k) {
    *err = ENOMEM;
    return -1;
  }
  k->off = off;
  k->len = len;
  k->flags = PC_KEY_EMPTY | PC_KEY_WRITER;
  pc_wrlock (&t->lock);
  writers = writers_in (t, off, len);
  r = pc_tree_insert (t, k);
  if (r >= 0) {
    /* Two writes to the backend that overlap may land in either order:
     * then neither one's data is known to be what the backend holds.
     */
    t->orphans += writers;
    *keep = *keep && t->orphans == 0;
    pthread_mutex_lock (&kb->lock);
    r = pc_kbuf_add (c, kb, &rec, &sg);
    pthread_mutex_unlock (&kb->lock);
  }
  else {
    pc_key_free (k);
    k = NULL;
  }
  pthread_rwlock_unlock (&t->lock);
  if (r == 0)
    r = pc_kbuf_commit_upto (c, kb, sg);
  if (r == -1) {
    if (k)
      pc_drop_placeholder (t, k);
    *err = errno ? errno : EIO;
    return -1;
  }
  *ph = k;
  return 0;
}

/* The backend write behind a placeholder of invalidate's has ended. */
static void
settle (pc_cache *c, uint64_t off, struct pc_key *ph, const void *data,
        int keep)
{
  struct pc_tree *t = pc_index_tree (&c->index, off);

  if (keep)
    pc_fill_placeholder (c, t, ph, data);
  else
    pc_drop_placeholder (t, ph);
}

/* Write-through and write-around: the backend gets the write before it
 * is acknowledged; write-through also keeps a clean copy.
 */
static int
write_through (pc_cache *c, const uint8_t *src, uint32_t len, uint64_t off,
               unsigned flags, int keep, int *err)
{
  struct pc_backend bg;
  struct pc_ns *ns;

  if (pc_backend_pin (c, off, &bg, &ns, err) == -1)
    return -1;
  while (len > 0) {
    uint32_t piece = PC_MIN ((uint64_t) len, pc_stripe_end (c, off) - off);
    struct pc_key *ph;
    int fill = keep, r;

    if (invalidate (c, off, piece, &fill, &ph, err) == -1)
      goto fail;
    r = pc_backend_pwrite (&bg, src, piece, off, err);
    pc_clean_wt_ended (c, &bg);
    settle (c, off, ph, src, fill && r == 0);
    if (r == -1)
      goto fail;
    PC_COUNT (c, write_through_bytes, piece);
    src += piece;
    off += piece;
    len -= piece;
  }
  pc_ns_unpin (ns);
  if ((flags & PC_FUA) && pc_backend_flush (c, err) == -1)
    return -1;
  return 0;

 fail:
  pc_ns_unpin (ns);
  return -1;
}

int
pc_write (pc_cache *c, const void *buf, uint32_t len, uint64_t off,
          unsigned flags, int *err)
{
  int r;

  if (check_range (c, len, off, err) == -1)
    return -1;
  PC_COUNT (c, writes, 1);
  PC_COUNT (c, write_bytes, len);
  PC_NS_COUNT (pc_ns_get (c, off), writes, 1);
  PC_NS_COUNT (pc_ns_get (c, off), write_bytes, len);
  pc_note_io (c, 1);
  pc_brlock_rdlock (&c->mode_lock);
  switch (atomic_load (&c->mode)) {
  case PC_MODE_WRITEBACK:
    r = write_back (c, buf, len, off, flags, err);
    break;
  case PC_MODE_WRITETHROUGH:
    r = write_through (c, buf, len, off, flags, 1, err);
    break;
  default:
    r = write_through (c, buf, len, off, flags, 0, err);
    break;
  }
  pc_brlock_rdunlock (&c->mode_lock);
  return r;
}

/* Zero and trim are logged like writes, without payload; outside
 * write-back they go to the backend at once.
 */
static int
log_range (pc_cache *c, uint64_t len, uint64_t off, uint32_t kflags,
           unsigned flags, int *err)
{
  struct fua_set fs = { { 0 }, { 0 } };
  struct pc_backend bg;
  struct pc_ns *ns = NULL;
  uint64_t start = off;
  int r = 0;

  if (check_range (c, len, off, err) == -1)
    return -1;
  pc_note_io (c, 1);
  pc_brlock_rdlock (&c->mode_lock);
  if (c->mode != PC_MODE_WRITEBACK)
    r = pc_backend_pin (c, off, &bg, &ns, err);
  else
    ns_dirty (c, start, len, 0);
  while (len > 0 && r == 0) {
    struct pc_key_rec rec = {
      .off = off, .flags = PC_KF_DIRTY | PC_KF_ZERO | kflags,
    };
    struct pc_key *ph;
    uint64_t sg;
    int keep = 0;

    rec.len = PC_MIN (len, pc_stripe_end (c, off) - off);
    if (c->mode != PC_MODE_WRITEBACK) {
      r = invalidate (c, off, rec.len, &keep, &ph, err);
      if (r == 0) {
        r = pc_backend_zero (&bg, &rec, err);
        pc_clean_wt_ended (c, &bg);
        settle (c, off, ph, NULL, 0);
      }
    }
    else if ((r = log_piece (c, &rec, NULL, &sg, err)) == 0) {
      fua_note (c, &fs, off, sg);
    }
    else {
      ns_dirty (c, start, 0, len);
      break;
    }
    off += rec.len;
    len -= rec.len;
  }
  if (ns)
    pc_ns_unpin (ns);
  if (r == 0 && (flags & PC_FUA)) {
    if (c->mode == PC_MODE_WRITEBACK)
      r = fua_commit (c, &fs, err);
    else
      r = pc_backend_flush (c, err);
  }
  pc_brlock_rdunlock (&c->mode_lock);
  return r;
}

int
pc_zero (pc_cache *c, uint64_t len, uint64_t off, unsigned flags, int *err)
{
  return log_range (c, len, off, (flags & PC_MAY_TRIM) ? PC_KF_MAY_TRIM : 0,
                    flags, err);
}

int
pc_trim (pc_cache *c, uint64_t len, uint64_t off, unsigned flags, int *err)
{
  return log_range (c, len, off, PC_KF_TRIM, flags, err);
}

int
pc_flush (pc_cache *c, int *err)
{
  if (pc_log_commit_all (c, 1) == -1) {
    *err = errno ? errno : EIO;
    return -1;
  }
  /* Outside write-back, acknowledged writes are on the backend only. */
  if (pc_cache_get_mode (c) != PC_MODE_WRITEBACK &&
      pc_backend_flush (c, err) == -1)
    return -1;
  return 0;
}
