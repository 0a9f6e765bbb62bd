/* Write path: payload to pmem, key to the index and the log. */
#include <string.h>
#include <pthread.h>

#include "cache_internal.h"
#include "crc.h"
#include "util.h"

static unsigned
my_head (struct pc_cache *c)
{
  static _Atomic unsigned next;
  static __thread unsigned id = -1u;

  if (id == -1u)
    id = atomic_fetch_add (&next, 1);
  return id % c->nheads;
}

int
pc_alloc_payload (struct pc_cache *c, uint32_t want, int wait,
                  uint32_t *seg, uint32_t *seg_off, uint32_t *got,
                  uint32_t *gen)
{
  struct pc_head *h = &c->heads[my_head (c)];

  pthread_mutex_lock (&h->lock);
  for (;;) {
    if (h->seg >= 0 && h->off < c->seg_size)
      break;
    if (h->seg >= 0) {
      /* Retire the full segment: drop the head's own reference. */
      pc_seg_put (&c->segs, h->seg);
      h->seg = -1;
    }
    h->seg = pc_seg_alloc (&c->segs, PC_SEG_DATA, PC_LOG_RESERVE);
    if (h->seg >= 0) {
      pc_seg_get (&c->segs, h->seg);
      h->off = 0;
      break;
    }
    if (!wait) {
      pthread_mutex_unlock (&h->lock);
      errno = ENOSPC;
      return -1;
    }
    /* Full: uncommitted keys pin their payload, so commit them, let
     * writeback and GC run, and wait for a free segment.
     */
    pthread_mutex_unlock (&h->lock);
    if (pc_log_commit_all (c, 0) == -1)
      return -1;
    pc_kick_workers (c);
    pc_segs_wait (&c->segs, 100);
    pthread_mutex_lock (&h->lock);
  }
  *seg = h->seg;
  *seg_off = h->off;
  *got = PC_MIN ((uint64_t) want, c->seg_size - h->off);
  *gen = pc_seg_gen32 (&c->segs, h->seg);
  h->off = PC_MIN (c->seg_size, h->off + PC_ALIGN_UP (*got, PC_ALLOC_ALIGN));
  pc_seg_get (&c->segs, h->seg);          /* the key record's reference */
  pthread_mutex_unlock (&h->lock);
  return 0;
}

int
pc_publish_key (struct pc_cache *c, struct pc_key *k,
                const struct pc_key_rec *rec, uint64_t *seal_gen)
{
  struct pc_kbuf *kb = pc_kbuf_for (c, rec->off);
  int r;

  if (pc_tree_insert (pc_index_tree (&c->index, rec->off), k) == -1)
    return -1;
  pthread_mutex_lock (&kb->lock);
  r = pc_kbuf_add (c, kb, rec, seal_gen);
  pthread_mutex_unlock (&kb->lock);
  return r;
}

/* Log one record (payload, if any, already durable) and index it. */
static int
log_piece (struct pc_cache *c, const struct pc_key_rec *rec,
           uint64_t *seal_gen, int *err)
{
  struct pc_tree *t = pc_index_tree (&c->index, rec->off);
  struct pc_key *k = pc_key_alloc ();
  int r;

  if (!k) {
    *err = ENOMEM;
    return -1;
  }
  k->off = rec->off;
  k->len = rec->len;
  k->seg = rec->seg;
  k->seg_off = rec->seg_off;
  k->gen = rec->gen;
  k->flags = rec->flags;
  pthread_rwlock_wrlock (&t->lock);
  r = pc_publish_key (c, k, rec, seal_gen);
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
  if (off > c->backing_size || len > c->backing_size - off) {
    *err = EINVAL;
    return -1;
  }
  return 0;
}

int
pc_write (pc_cache *c, const void *buf, uint32_t len, uint64_t off,
          unsigned flags, int *err)
{
  const uint8_t *src = buf;
  struct fua_set fs = { { 0 }, { 0 } };

  if (check_range (c, len, off, err) == -1)
    return -1;
  atomic_fetch_add (&c->st.writes, 1);
  atomic_fetch_add (&c->st.write_bytes, len);
  while (len > 0) {
    struct pc_key_rec rec = { .off = off, .flags = PC_KF_DIRTY };
    uint32_t piece = PC_MIN ((uint64_t) len, pc_stripe_end (c, off) - off);
    uint64_t sg;

    if (pc_alloc_payload (c, piece, 1, &rec.seg, &rec.seg_off, &rec.len,
                          &rec.gen) == -1) {
      *err = errno;
      return -1;
    }
    /* The payload is durable before its key can be. */
    pc_pmem_copy (c->pm, pc_seg_addr (c, rec.seg, rec.seg_off), src, rec.len);
    if (c->data_crc)
      rec.data_crc = pc_crc32c (src, rec.len);
    if (log_piece (c, &rec, &sg, err) == -1) {
      pc_seg_put (&c->segs, rec.seg);
      return -1;
    }
    fua_note (c, &fs, off, sg);
    src += rec.len;
    off += rec.len;
    len -= rec.len;
  }
  return (flags & PC_FUA) ? fua_commit (c, &fs, err) : 0;
}

/* Zero and trim are logged like writes, without payload. */
static int
log_range (pc_cache *c, uint64_t len, uint64_t off, uint32_t kflags,
           unsigned flags, int *err)
{
  struct fua_set fs = { { 0 }, { 0 } };

  if (check_range (c, len, off, err) == -1)
    return -1;
  while (len > 0) {
    struct pc_key_rec rec = {
      .off = off, .flags = PC_KF_DIRTY | PC_KF_ZERO | kflags,
    };
    uint64_t sg;

    rec.len = PC_MIN (len, pc_stripe_end (c, off) - off);
    if (log_piece (c, &rec, &sg, err) == -1)
      return -1;
    fua_note (c, &fs, off, sg);
    off += rec.len;
    len -= rec.len;
  }
  return (flags & PC_FUA) ? fua_commit (c, &fs, err) : 0;
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
  return 0;
}
