/* SPDX-License-Identifier: BSD-3-Clause */
/* Ordered writeback.
 *
 * Ksets are written back in log order, a batch at a time.  A batch never
 * spans two client flush epochs, and the backend is flushed before
 * dirty_tail moves past it, so the backing store always holds the
 * state after some prefix of the client's epochs, plus possibly part of
 * the epoch being written back (as a disk with a volatile cache would).
 * With write-back groups (group.c) a batch may be several whole ended
 * epochs instead, and the prefix is one of groups.  A backend with
 * native FUA gets a small batch's writes with FUA instead of a flush
 * after them: one round trip a batch instead of two.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache_internal.h"
#include "backend.h"
#include "crc.h"
#include "ctrl.h"
#include "gc.h"
#include "group.h"
#include "hold.h"
#include "kset.h"
#include "namespace.h"
#include "quota.h"
#include "util.h"
#include "workers.h"
#include "writeback.h"

#define WB_BATCH_KSETS 32
#define WB_SCAN_KSETS 4096      /* ksets one gather may pass over */
#define WB_GROUP_KSETS 4096     /* a group's ksets at most */
#define WB_GROUP_BYTES (256ULL << 20)   /* and its dirty bytes, unless
                                           one epoch has more */
#define WB_GROUP_SHARE 16       /* and 1/16 of the cache: a full cache
                                   frees room only as groups end */
#define WB_WAKE_KSETS 8         /* committed ksets that wake idle writeback */
#define WB_WAKE_KSETS_MAX 64    /* ... far below its thresholds */

/* A batch being written back: the dirty data of one namespace.  It
 * survives a failed attempt, so a retry resumes with the extents not
 * yet written instead of starting over.
 */
struct wb_batch {
  struct pc_tree tree;
  struct pc_ns *ns;
  struct pc_backend bg;               /* ns's, pinned while it is written */
  int loaded;
  /* Write-back may be inside epoch inside: a batch of it went down and
   * more of it may follow.  Until a batch is done after the start
   * (started), it may be inside the cursor's epoch (a crash cut it).
   * A group never starts inside an epoch: its first epoch would be
   * partly down with data that is not the group's final data.
   */
  int started;
  uint64_t inside;
  struct pc_pos start;                /* the cursor it was gathered from */
  struct pc_pos end;                  /* dirty_tail once the batch is down */
  uint64_t epoch;                     /* the (last) client epoch of its ksets */
  unsigned nepochs;                   /* > 1: a group of whole epochs */
  int recorded;                       /* its group record is durable */
  int fua;                            /* written with FUA, no flush after;
                                         -1: not chosen yet */
  _Atomic int fua_missed;             /* an extent went without FUA */
  /* Writes of it may have gone down and the flush after them has not
   * succeeded yet: a retry that finds nothing left to write must still
   * flush before the batch counts as down.
   */
  int unflushed;
  uint64_t bytes;                     /* dirty bytes the batch retires */
  uint64_t skipped;                   /* of which, overwritten later */
  /* A batch of the epoch the client is still writing may leave out, as
   * it goes, extents that newer records of the epoch overwrite by the
   * time their turn comes (wb_late): they wait in later until the end
   * of the batch shows the epoch is still the same (wb_late_settle).
   */
  _Atomic int resift;
  struct pc_tree later;               /* guarded by the pool's lock */
  unsigned backoff_ms;
};

static struct wb_batch *
wb_batch_of (struct pc_ns *ns)
{
  struct wb_batch *b = ns->wb;

  if (!b) {
    /* The tree's locks want their own cache lines. */
    b = aligned_alloc (_Alignof (struct wb_batch),
                       PC_ALIGN_UP (sizeof *b, _Alignof (struct wb_batch)));
    if (!b)
      return NULL;
    memset (b, 0, sizeof *b);         /* a zeroed tree is empty */
    b->ns = ns;
    ns->wb = b;
  }
  return b;
}

/* A dirty payload record's parts that writeback may leave out: the
 * ranges where the index maps a newer dirty record instead of r.  If
 * that record belongs to r's flush epoch (wb_load makes sure), r's data
 * there is overwritten before the epoch ends, and the backend never
 * needs it: cross-kset coalescing, which dm-pcache does not do.
 */
#define WB_PIECES 8

struct wb_piece {
  uint64_t off;
  uint32_t len;
};

static int
wb_own (const struct pc_key_rec *r, const struct pc_key *k)
{
  return !(k->flags & PC_KF_ZERO) && k->seg == r->seg && k->gen == r->gen &&
    (uint64_t) k->seg_off + r->off == (uint64_t) r->seg_off + k->off;
}

/* The parts of r to write, at most WB_PIECES (else r whole).  Returns
 * how many, with the bytes left out added to *skipped.
 */
static unsigned
wb_sift (struct pc_cache *c, const struct pc_key_rec *r,
         struct wb_piece *p, uint64_t *skipped)
{
  struct pc_tree *t = pc_index_tree (&c->index, r->off);
  uint64_t pos = r->off, end = r->off + r->len, left = 0;
  struct pc_tree_pos at;
  struct pc_key *k;
  unsigned n = 0;

  pc_rdlock (&t->lock);
  for (k = pc_tree_find_pos (t, r->off, r->len, &at); k && k->off < end;
       k = pc_tree_next_pos (&at)) {
    uint64_t ks = PC_MAX (k->off, pos), ke = PC_MIN (k->off + k->len, end);

    if ((k->flags & PC_KEY_EMPTY) || !(k->flags & PC_KF_DIRTY) ||
        wb_own (r, k))
      continue;
    if (ks > pos) {
      if (n == WB_PIECES)
        break;
      p[n++] = (struct wb_piece) { pos, ks - pos };
    }
    left += ke - ks;
    pos = ke;
  }
  pthread_rwlock_unlock (&t->lock);
  if (k && k->off < end) {
    /* Too fragmented to be worth it: all of r goes down. */
    p[0] = (struct wb_piece) { r->off, r->len };
    return 1;
  }
  if (pos < end) {
    if (n == WB_PIECES) {
      p[0] = (struct wb_piece) { r->off, r->len };
      return 1;
    }
    p[n++] = (struct wb_piece) { pos, end - pos };
  }
  *skipped += left;
  return n;
}

/* Check a dirty record and add what of it must go down to the batch
 * tree; a later record of the batch cuts or replaces what it overlaps
 * (newest wins), so data overwritten within the batch goes down once.
 * With sift, so does data overwritten by later batches of the epoch.
 */
static int
wb_collect (struct pc_cache *c, struct wb_batch *b, const struct pc_key_rec *r,
            int sift, int *err)
{
  struct wb_piece p[WB_PIECES] = { { r->off, r->len } };
  unsigned n = 1, i;

  if (!(r->flags & PC_KF_DIRTY) || pc_fmt_ns_of (r->off) != b->ns->id)
    return 0;
  b->bytes += r->len;
  if (r->flags & PC_KF_ZERO)
    ;                                   /* no payload to tell it by */
  else if (sift && (n = wb_sift (c, r, p, &b->skipped)) == 0)
    return 0;
  else if (c->data_crc &&
           pc_crc32c (pc_seg_addr (c, r->seg, r->seg_off), r->len) !=
           r->data_crc) {
    pc_error ("%s: payload checksum mismatch for offset %" PRIu64
              " (segment %u): not written back", c->path, r->off, r->seg);
    *err = EIO;
    return -1;
  }
  for (i = 0; i < n; i++) {
    struct pc_key *k = pc_key_alloc ();

    if (!k) {
      *err = ENOMEM;
      return -1;
    }
    pc_key_from_rec (k, r);
    k->off = p[i].off;
    k->len = p[i].len;
    if (!(r->flags & PC_KF_ZERO))
      k->seg_off += p[i].off - r->off;
    if (pc_tree_insert (&b->tree, k) == -1) {
      pc_key_free (k);
      *err = ENOMEM;
      return -1;
    }
  }
  return 0;
}

static int
wb_key (struct pc_cache *c, struct wb_batch *b, const struct pc_key *k,
        int *err)
{
  struct pc_key_rec r = {
    .off = k->off, .len = k->len, .flags = k->flags,
  };

  const void *buf = pc_seg_addr (c, k->seg, k->seg_off);

  if (k->flags & PC_KF_ZERO) {
    if (pc_backend_zero (&b->bg, &r, err) == 0)
      return 0;
    /* A discard is advisory: one the plugin fails leaves the old data,
     * which is what trimmed blocks may read back as.  It must not hold
     * up the data behind it.
     */
    if (k->flags & PC_KF_TRIM) {
      pc_debug ("%s: writeback: the plugin failed a trim of %" PRIu32
                " bytes at %" PRIu64 " (%s); left out", c->path, k->len,
                k->off & PC_NS_OFF_MASK, strerror (*err));
      return 0;
    }
    return -1;
  }
  if (b->fua == 1 && b->bg.ops->pwrite_fua) {
    if (pc_backend_pwrite_fua (&b->bg, buf, k->len, k->off, err) == -1)
      return -1;
    PC_COUNT (c, writeback_fua_writes, 1);
  }
  else {
    /* A backend reopened without FUA: the batch ends with a flush. */
    if (b->fua == 1)
      atomic_store (&b->fua_missed, 1);
    if (pc_backend_pwrite (&b->bg, buf, k->len, k->off, err) == -1)
      return -1;
  }
  pc_pace_spend (&c->wb_pace, k->len);
  PC_COUNT (c, writeback_bytes, k->len);
  PC_NS_COUNT (b->ns, writeback_bytes, k->len);
  return 0;
}

/* Empty t.  Returns the bytes its keys covered. */
static uint64_t
wb_tree_clear (struct pc_tree *t)
{
  struct pc_key *k;
  uint64_t bytes = 0;

  while ((k = pc_tree_first (t)) != NULL) {
    bytes += k->len;
    pc_tree_remove (t, k);
  }
  return bytes;
}

/* Drop a loaded batch: it is gathered again from the cursor. */
static void
wb_unload (struct wb_batch *b)
{
  wb_tree_clear (&b->tree);
  wb_tree_clear (&b->later);
  b->loaded = 0;
}


/* Extents of one batch belong to one epoch, so they may go down in any
 * order: a few threads write them concurrently, which a backend with
 * latency (a network, a disk queue) turns into throughput.
 */
struct wb_pool {
  pthread_mutex_t lock;               /* also guards the batch tree */
  pthread_cond_t work_cv, done_cv;
  struct pc_cache *c;
  struct wb_batch *batch;
  unsigned want;                      /* helper slots not yet taken */
  unsigned busy;                      /* slots not yet done */
  unsigned width, active;             /* writers allowed, writers working */
  int err;                            /* first error of the round */
  int may_pause;                      /* when pc_wb_width says so */
  int paused;                         /* the round stopped for the client */
  int quit;
  unsigned nhelpers;
  pthread_t *helpers;
};

/* Leave k out for now if newer dirty records overwrite all of it: a
 * batch of the open epoch can be written over seconds, while the client
 * rewrites the same data (a sequential rewrite, a busy table).  Only
 * while the epoch is still the batch's, which wb_late_settle checks
 * again once the batch is down.  Returns 1 if k went to b->later.
 */
static int
wb_late (struct pc_cache *c, struct wb_pool *p, struct wb_batch *b,
         struct pc_key *k)
{
  struct pc_key_rec r = {
    .off = k->off, .len = k->len, .flags = k->flags,
    .seg = k->seg, .seg_off = k->seg_off, .gen = k->gen,
  };
  struct wb_piece pieces[WB_PIECES];
  uint64_t left = 0;
  int ok;

  if (!atomic_load (&b->resift) || (k->flags & PC_KF_ZERO))
    return 0;
  if (pc_log_epoch (c) != b->epoch) {
    atomic_store (&b->resift, 0);
    return 0;
  }
  if (wb_sift (c, &r, pieces, &left) != 0)
    return 0;
  pthread_mutex_lock (&p->lock);
  ok = pc_tree_insert (&b->later, k) != -1;
  pthread_mutex_unlock (&p->lock);
  return ok;
}

static unsigned wb_go (struct pc_cache *c);

/* Every failed plugin request counts, retried or not.  ESHUTDOWN is
 * nbdkit shutting down (a filter below that sleeps, such as delay or
 * rate, ends its requests early then) or a remote server doing so: an
 * interruption, counted apart so that a clean stop shows no errors.
 */
static void
wb_count_failure (struct pc_cache *c, int err)
{
  if (err == ESHUTDOWN)
    PC_COUNT (c, writeback_aborts, 1);
  else
    PC_COUNT (c, writeback_errors, 1);
}

/* Write extents of the batch until none is left, an error happened,
 * the cache stops or writeback is to wait (pc_wb_width is 0: the client
 * turned to reads only, which a batch of a slow backend can outlast by
 * seconds).  A failed extent goes back into the tree; one not started
 * stays there for the next round.
 */
static void
wb_work (struct pc_cache *c, struct wb_pool *p, struct wb_batch *b)
{
  pthread_mutex_lock (&p->lock);
  if (p->active >= p->width) {
    pthread_mutex_unlock (&p->lock);
    return;
  }
  p->active++;
  pthread_mutex_unlock (&p->lock);
  for (;;) {
    struct pc_key *k = NULL;
    int err = 0, r, tries = 0;
    int hold = p->may_pause && wb_go (c) == 0;

    pthread_mutex_lock (&p->lock);
    if (hold)
      p->paused = 1;
    if (!p->err && !p->paused && !atomic_load (&c->stop_wb)) {
      /* Nodes for putting k back if it fails, so it is never lost. */
      if (pc_tree_reserve (&b->tree) == -1)
        p->err = ENOMEM;
      else if ((k = pc_tree_first (&b->tree)) != NULL)
        pc_tree_unlink (&b->tree, k);
    }
    pthread_mutex_unlock (&p->lock);
    if (!k)
      return;
    if (wb_late (c, p, b, k))
      continue;
    /* A transient error gets two quick retries before the round fails;
     * a shutdown does not pass that soon.
     */
    for (;;) {
      r = wb_key (c, b, k, &err);
      atomic_fetch_add_explicit (&c->wb_answers, 1, memory_order_relaxed);
      if (r == 0)
        break;
      wb_count_failure (c, err);
      if (err == ESHUTDOWN || ++tries == 3)
        break;
    }
    if (r == 0) {
      pc_key_free (k);
      continue;
    }
    pthread_mutex_lock (&p->lock);
    if (!p->err)
      p->err = err ? err : EIO;
    /* It overlaps nothing left in the tree, and the nodes are reserved:
     * this cannot fail.
     */
    pc_tree_insert (&b->tree, k);
    pthread_mutex_unlock (&p->lock);
    return;
  }
}

static void *
wb_helper (void *arg)
{
  struct wb_pool *p = arg;

  pc_thread_background ("pcache-wb-io");

  pthread_mutex_lock (&p->lock);
  for (;;) {
    while (!p->quit && p->want == 0)
      pthread_cond_wait (&p->work_cv, &p->lock);
    if (p->quit)
      break;
    p->want--;
    pthread_mutex_unlock (&p->lock);
    wb_work (p->c, p, p->batch);
    pthread_mutex_lock (&p->lock);
    if (--p->busy == 0)
      pthread_cond_signal (&p->done_cv);
  }
  pthread_mutex_unlock (&p->lock);
  return NULL;
}

static void
wb_pool_init (struct pc_cache *c, struct wb_pool *p, unsigned nhelpers,
              int may_pause)
{
  unsigned i;

  memset (p, 0, sizeof *p);
  p->c = c;
  p->may_pause = may_pause;
  pc_lock_init (&p->lock);
  pthread_cond_init (&p->work_cv, NULL);
  pthread_cond_init (&p->done_cv, NULL);
  p->helpers = nhelpers ? calloc (nhelpers, sizeof *p->helpers) : NULL;
  for (i = 0; p->helpers && i < nhelpers; i++) {
    if (pthread_create (&p->helpers[i], NULL, wb_helper, p) != 0)
      break;
    p->nhelpers++;
  }
}

static void
wb_pool_destroy (struct wb_pool *p)
{
  unsigned i;

  pthread_mutex_lock (&p->lock);
  p->quit = 1;
  pthread_cond_broadcast (&p->work_cv);
  pthread_mutex_unlock (&p->lock);
  for (i = 0; i < p->nhelpers; i++)
    pthread_join (p->helpers[i], NULL);
  free (p->helpers);
  pthread_mutex_destroy (&p->lock);
  pthread_cond_destroy (&p->work_cv);
  pthread_cond_destroy (&p->done_cv);
}

/* Write every extent of the batch with at most width writers of the
 * pool.  Returns 0 or an errno.
 */
static int
wb_write_batch (struct pc_cache *c, struct wb_pool *p, struct wb_batch *b,
                unsigned width)
{
  unsigned i;
  int err;

  pthread_mutex_lock (&p->lock);
  p->batch = b;
  p->width = width;
  p->active = 0;
  p->err = 0;
  p->paused = 0;
  /* Wake only the helpers the width lets work: the others would wake,
   * find no room and sleep again, a context switch each per round.
   */
  p->want = p->busy = PC_MIN (width > 0 ? width - 1 : 0, p->nhelpers);
  if (p->want == p->nhelpers)
    pthread_cond_broadcast (&p->work_cv);
  else
    for (i = 0; i < p->want; i++)
      pthread_cond_signal (&p->work_cv);
  pthread_mutex_unlock (&p->lock);
  wb_work (c, p, b);
  pthread_mutex_lock (&p->lock);
  while (p->busy > 0)
    pthread_cond_wait (&p->done_cv, &p->lock);
  err = p->err;
  p->batch = NULL;
  pthread_mutex_unlock (&p->lock);
  return err;
}

/* The batch is down but for what wb_late left out.  That may stay out
 * if the records that overwrite it are in the log and of the batch's
 * epoch, as wb_load makes sure for what the gathering left out; the
 * epoch being the same now, those records, written after the batch's
 * and before now, are of it.  Else it goes down after all.
 */
static int
wb_late_settle (struct pc_cache *c, struct wb_pool *p, struct wb_batch *b,
                unsigned width)
{
  struct pc_key *k;
  uint64_t now;

  if (!pc_tree_first (&b->later))
    return 0;
  if (pc_log_commit_nowait (c, &now) == 0 && now == b->epoch) {
    b->skipped += wb_tree_clear (&b->later);
    return 0;
  }
  atomic_store (&b->resift, 0);
  while ((k = pc_tree_first (&b->later)) != NULL) {
    /* Nodes first, so that k is never in neither tree. */
    if (pc_tree_reserve (&b->tree) == -1)
      return ENOMEM;
    pc_tree_unlink (&b->later, k);
    pc_tree_insert (&b->tree, k);
  }
  return wb_write_batch (c, p, b, width);
}

/* Does the kset h hold a key of namespace ns?  Adds the bytes of its
 * dirty keys of ns to *bytes.
 */
static int
wb_has_ns (const struct pc_kset_hdr *h, uint32_t ns, uint64_t *bytes)
{
  const struct pc_key_rec *r = (const struct pc_key_rec *) (h + 1);
  unsigned i;
  int has = 0;

  for (i = 0; i < h->nkeys; i++)
    if (pc_fmt_ns_of (r[i].off) == ns) {
      has = 1;
      if (r[i].flags & PC_KF_DIRTY)
        *bytes += r[i].len;
    }
  return has;
}

/* Where a batch of namespace ns gathered from pos ends. */
struct wb_plan {
  struct pc_pos end;
  uint64_t epoch;                     /* its last client epoch */
  unsigned nepochs;                   /* epochs with keys of ns in it */
  uint64_t span;                      /* epoch numbers from first to last */
  int lag;                            /* ended epochs were left out */
  int bound;                          /* a durable group fixed the end */
  int inside;                         /* strict: it goes on with an epoch
                                         write-back is inside */
  int sifted;                         /* gathered with sift */
};

static const struct pc_kset_hdr *
wb_kset (struct pc_cache *c, const struct pc_pos *pos, int *err)
{
  const char *why;
  const struct pc_kset_hdr *h = pc_kset_at (c, pos, &why);

  if (!h) {
    pc_error ("%s: kset %" PRIu64 " at segment %u offset %u: %s; "
              "writeback cannot go on", c->path, pos->seq, pos->seg,
              pos->off, why);
    *err = EIO;
  }
  return h;
}

/* Plan the batch from pos, up to head: ksets that hold none of ns's
 * keys are passed over (at most WB_SCAN_KSETS of them), and the epoch
 * rule applies to those that do.  Strict (limit 1), or with the epoch
 * the client is still writing first, a batch is at most WB_BATCH_KSETS
 * of one epoch.  Else it is a group: up to limit whole ended epochs,
 * WB_GROUP_KSETS and WB_GROUP_BYTES (or 1/WB_GROUP_SHARE of the cache)
 * at most; one epoch larger than that goes alone, in parts.  Epochs are
 * counted by number, from the first (those without keys of ns too), as
 * the promise of pcache-writeback-group is worded.  A durable group that
 * starts at pos is gathered again exactly.  open is the epoch being
 * written, read before head: every kset of an earlier epoch is then
 * below head.
 */
static int
wb_plan (struct pc_cache *c, struct wb_batch *b, struct pc_pos pos,
         uint64_t head, uint64_t open, unsigned limit, struct wb_plan *pl,
         int *err)
{
  struct pc_ns *ns = b->ns;
  const struct pc_ns_group *g = pc_group_bound (c, ns, pos.seq);
  struct pc_pos boundary = pos;       /* where the last epoch began */
  uint64_t cur = 0, prev = 0, first = 0, bytes = 0;
  uint64_t max_bytes = PC_MIN (WB_GROUP_BYTES,
                               ((uint64_t) c->nsegs << c->seg_shift) /
                               WB_GROUP_SHARE);
  unsigned n = 0, passed = 0, cap = WB_BATCH_KSETS;
  int cut = 0;

  memset (pl, 0, sizeof *pl);
  if (g) {
    pl->bound = 1;
    head = PC_MIN (head, g->end_seq);
  }
  while (pos.seq < head) {
    const struct pc_kset_hdr *h = wb_kset (c, &pos, err);
    uint64_t kb = 0;

    if (!h)
      return -1;
    if (!wb_has_ns (h, ns->id, &kb)) {
      if (++passed > WB_SCAN_KSETS && !g) {
        cut = 1;
        break;
      }
      pc_kset_next (c, h, &pos);
      continue;
    }
    if (n == 0) {
      cur = first = h->epoch;
      pl->nepochs = 1;
      if (limit > 1 && (!b->started || cur <= b->inside)) {
        limit = 1;
        pl->inside = 1;
      }
      if (limit > 1 && cur < open)
        cap = WB_GROUP_KSETS;
    }
    else if (h->epoch != cur && !g) {
      /* Never mix two epochs in a strict batch, nor the open one in a
       * group.
       */
      if (cur >= open || h->epoch >= open)
        break;
      /* limit consecutive epochs, counted by number: those that
       * hold nothing of ns count too.
       */
      if (h->epoch - first >= limit) {
        pl->lag = 1;
        break;
      }
      prev = cur;
      cur = h->epoch;
      pl->nepochs++;
      boundary = pos;
    }
    else if (h->epoch != cur) {
      cur = h->epoch;
      pl->nepochs++;
    }
    if (!g && (n == cap || (pl->nepochs > 1 && bytes + kb > max_bytes))) {
      cut = 1;
      break;
    }
    bytes += kb;
    n++;
    pc_kset_next (c, h, &pos);
  }
  /* A group ends at an epoch's end: one cut short waits for the next. */
  if (cut && pl->nepochs > 1) {
    pos = boundary;
    cur = prev;
    pl->nepochs--;
    pl->lag = 1;
  }
  pl->end = pos;
  pl->epoch = g ? g->epoch : cur;
  pl->span = pl->epoch - first + 1;
  return 0;
}

/* Gather the batch of b's namespace from its dirty cursor, as planned.
 * A batch may hold no extent at all: its cursor moves on without a
 * backend.  With sift (a batch of the epoch still being written only),
 * leave out data that newer records overwrite.  Returns 1 if a batch
 * was gathered, 0 if nothing is dirty.
 */
static int
wb_gather (struct pc_cache *c, struct wb_batch *b, int sift,
           struct wb_plan *pl, int *err)
{
  uint64_t open = pc_log_epoch (c);
  uint64_t head = atomic_load (&c->log.head_seq);
  struct pc_pos pos = pc_ctrl_ns_tail (c, b->ns->id);
  unsigned limit = pc_group_limit (c, b->ns);

  if (pos.seq >= head)
    return 0;
  if (wb_plan (c, b, pos, head, open, limit, pl, err) == -1)
    return -1;
  b->start = pos;
  b->bytes = b->skipped = 0;
  /* Only the epoch the client is still writing can be sifted: a record
   * of a later one must never stand in for one of an earlier.
   */
  if (pl->nepochs != 1 || pl->epoch != pc_log_epoch (c))
    sift = 0;
  pl->sifted = sift;
  while (pos.seq < pl->end.seq) {
    const struct pc_kset_hdr *h = wb_kset (c, &pos, err);
    unsigned i;

    if (!h) {
      wb_tree_clear (&b->tree);
      return -1;
    }
    for (i = 0; i < h->nkeys; i++)
      if (wb_collect (c, b, (const struct pc_key_rec *) (h + 1) + i, sift,
                      err) == -1) {
        wb_tree_clear (&b->tree);
        return -1;
      }
    pc_kset_next (c, h, &pos);
  }
  b->end = pos;
  if (!pl->bound && !pl->inside)
    pc_group_adapt (c, b->ns, limit, PC_MIN (pl->span, limit), pl->lag ||
                    pc_dirty_too_old (c));
  return 1;
}

/* Does the batch go down with FUA?  If the backend has native FUA and
 * every extent can be in flight at once (as many as write-back has
 * writers, and no zero: those have no FUA form here), FUA writes cost
 * one round trip where writes and a flush cost two.
 */
static int
wb_use_fua (struct pc_cache *c, struct wb_batch *b)
{
  unsigned max = atomic_load_explicit (&c->wb_threads, memory_order_relaxed);
  unsigned n = 0;
  struct pc_tree_pos at;
  struct pc_key *k;

  if (!b->bg.ops->pwrite_fua)
    return 0;
  for (k = pc_tree_find_pos (&b->tree, 0, UINT64_MAX, &at); k;
       k = pc_tree_next_pos (&at))
    if ((k->flags & PC_KF_ZERO) || ++n > max)
      return 0;
  return 1;
}

/* Gather a batch, sifted if that is safe.  Data left out relies on the
 * newer records that overwrite it: they must be in the log, in the same
 * epoch, before dirty_tail passes what they replace, or a crash (or the
 * loss of the cache) would leave neither on the backend.  Committing
 * every buffer puts them in the log; the epoch read after that bounds
 * theirs, which is at least the batch's since they come later in the
 * log.  If the client flushed meanwhile, the log is out of space or a
 * key buffer stays locked (its holder may be waiting for space that this
 * thread's GC would free), the batch is gathered again unsifted.
 */
static int
wb_load (struct pc_cache *c, struct wb_batch *b, int *err)
{
  struct wb_plan pl;
  uint64_t now;
  int r = wb_gather (c, b, 1, &pl, err);

  if (r == 1 && b->skipped > 0 &&
      (pc_log_commit_nowait (c, &now) == -1 || now != pl.epoch)) {
    wb_tree_clear (&b->tree);
    r = wb_gather (c, b, 0, &pl, err);
  }
  if (r == 1) {
    b->loaded = 1;
    atomic_store (&b->resift, pl.sifted);
    b->epoch = pl.epoch;
    b->nepochs = pl.nepochs;
    b->recorded = pl.bound;
    b->fua = -1;                        /* chosen at its first write */
    atomic_store (&b->fua_missed, 0);
    b->unflushed = 0;
  }
  return r;
}

/* Errors of a broken connection rather than of the data or the disk,
 * which a new connection may cure.  libnbd fails every request with
 * EINVAL once its handle is closed (nbdkit's nbd plugin in front of a
 * server that went away), so EINVAL counts too: it costs a reopen at
 * most once per retry.
 */
static int
wb_conn_error (int err)
{
  switch (err) {
  case ENOTCONN: case ECONNRESET: case ECONNREFUSED: case ECONNABORTED:
  case EPIPE: case ESHUTDOWN: case EINVAL:
    return 1;
  default:
    return 0;
  }
}

/* Note a failed round: the first of an episode is reported, the others
 * are debug lines.  Returns whether the backend is to be reopened: after
 * a connection-level error, or every PC_WB_REOPEN_FAILS failures in a
 * row (a backend whose errors say nothing of its connection).
 */
/* The cache's view of its backends' health: that of the namespace
 * that began failing first.  Caller holds bg_lock.
 */
static int
wb_health_one (struct pc_ns *ns, void *opaque)
{
  struct pc_ns **first = opaque;

  if (ns->wb_error &&
      (!*first || ns->wb_failing_ms < (*first)->wb_failing_ms))
    *first = ns;
  return 0;
}

static void
wb_health_sync (struct pc_cache *c)
{
  struct pc_ns *first = NULL;

  pc_ns_each (c, wb_health_one, &first);
  c->wb_error = first ? first->wb_error : 0;
  c->wb_fails = first ? first->wb_fails : 0;
  c->wb_failing_ms = first ? first->wb_failing_ms : 0;
  c->wb_failing_since = first ? first->wb_failing_since : 0;
}

/* How the export is named in messages: a cache of one export ("")
 * says nothing of it.
 */
static const char *
wb_name (struct pc_ns *ns, char *buf, size_t len)
{
  if (!*ns->name)
    *buf = '\0';
  else
    snprintf (buf, len, " of export '%.200s'", ns->name);
  return buf;
}

static int
wb_failed (struct pc_cache *c, struct wb_batch *b, int err)
{
  struct pc_ns *ns = b->ns;
  char nm[256];
  int reopen;

  pthread_mutex_lock (&c->bg_lock);
  if (!ns->wb_error) {
    ns->wb_failing_ms = pc_now_ms ();
    ns->wb_failing_since = time (NULL);
  }
  /* The first error of an episode is reported, but an interruption by
   * a shutdown: then the error that follows it, if any, is.
   */
  if (!ns->wb_reported && err != ESHUTDOWN) {
    pc_error ("%s: writeback%s failed (%s); the data stays in the cache and "
              "is retried", c->path, wb_name (ns, nm, sizeof nm),
              strerror (err));
    ns->wb_reported = 1;
  }
  else if (err == ESHUTDOWN)
    pc_debug ("%s: writeback%s interrupted: the plugin is shutting down; "
              "the data stays in the cache", c->path,
              wb_name (ns, nm, sizeof nm));
  else
    pc_debug ("%s: writeback%s failed again (%s)", c->path,
              wb_name (ns, nm, sizeof nm), strerror (err));
  /* Not one from before the server began to exit, which a remote that
   * went down and came back may have left.
   */
  if (err == ESHUTDOWN && atomic_load (&c->exiting))
    c->exit_cut = 1;
  ns->wb_error = err;
  ns->wb_fails++;
  reopen = b->bg.ops && b->bg.ops->reopen && !c->exit_cut &&
    (wb_conn_error (err) || ns->wb_fails % PC_WB_REOPEN_FAILS == 0);
  wb_health_sync (c);
  pthread_cond_broadcast (&c->drain_cv);
  pthread_mutex_unlock (&c->bg_lock);
  return reopen;
}

/* Ask the backend for a new connection, holding no lock: it may take
 * as long as a connect does.  Called by a failed round only, so at most
 * once per backoff.  Returns 0 if the backend has a new connection.
 */
static int
wb_reopen (struct pc_cache *c, struct wb_batch *b)
{
  int err = 0;

  if (atomic_load (&c->stop_wb))
    return -1;
  if (b->bg.ops->reopen (b->bg.ctx, &err) == -1) {
    pc_debug ("%s: backend reopen failed (%s); retried later", c->path,
              strerror (err ? err : EIO));
    return -1;
  }
  pthread_mutex_lock (&c->bg_lock);
  c->bg_reopens++;
  b->ns->reopens++;
  pthread_mutex_unlock (&c->bg_lock);
  pc_debug ("%s: backend reopened", c->path);
  return 0;
}

/* A namespace with no dirty data has none in the log either (its
 * share of the gauge goes up before its keys can be committed): its
 * cursor goes to the head, read before the gauge.  Returns 1 if it
 * moved.
 */
static int
wb_skip_clean (struct pc_cache *c, struct pc_ns *ns)
{
  struct pc_pos head, tail = pc_ctrl_ns_tail (c, ns->id);

  if (tail.seq >= atomic_load (&c->log.head_seq))
    return 0;
  pc_log_head (c, &head);
  if (atomic_load (&ns->dirty_bytes) != 0 || head.seq <= tail.seq)
    return 0;
  pc_ctrl_set_ns_tail (c, ns->id, &head);
  return 1;
}

/* The batch is down and flushed (or had nothing to write): move the
 * namespace's cursor past it.
 */
static void
wb_done (struct pc_cache *c, struct wb_batch *b)
{
  struct pc_ns *ns = b->ns;
  char nm[256];

  if (b->bytes)
    atomic_store (&ns->last_epoch, b->epoch);
  b->started = 1;
  b->inside = b->epoch;
  if (b->nepochs > 1)
    PC_COUNT (c, writeback_groups, 1);
  PC_COUNT (c, writeback_skipped_bytes, b->skipped);
  b->loaded = 0;
  b->backoff_ms = 0;
  if (!b->bytes) {
    pc_ctrl_set_ns_tail (c, ns->id, &b->end);
    return;
  }
  PC_COUNT (c, writeback_rounds, 1);
  /* The cursor, the dirty gauge and the backend's health change
   * together under bg_lock, where a drain looks: one that sees the
   * cursor past its target sees the bytes gone and the backend well.
   */
  pthread_mutex_lock (&c->bg_lock);
  pc_ctrl_set_ns_tail (c, ns->id, &b->end);
  PC_UNCOUNT (c, dirty_bytes, b->bytes);
  atomic_fetch_sub (&ns->dirty_bytes, b->bytes);
  /* Report when writeback heals, as loudly as its failing was. */
  if (ns->wb_error)
    (ns->wb_reported ? pc_error : pc_debug)
      ("%s: writeback%s resumed after %" PRIu64 " s", c->path,
       wb_name (ns, nm, sizeof nm),
       (pc_now_ms () - ns->wb_failing_ms) / 1000);
  ns->wb_reported = 0;
  ns->wb_error = 0;
  ns->wb_fails = 0;
  ns->wb_failing_since = 0;
  wb_health_sync (c);
  pthread_cond_broadcast (&c->drain_cv);
  pthread_mutex_unlock (&c->bg_lock);
  pc_quota_freed (c, ns);
  PC_TRACE (PC_TRACE_WRITEBACK, "%s: writeback%s: %" PRIu64 " bytes down, "
            "dirty_tail at kset %" PRIu64, c->path,
            wb_name (ns, nm, sizeof nm), b->bytes, b->end.seq);
}

/* Write back one batch of namespace ns.  Returns 1 if its cursor moved,
 * 0 if there was nothing to do, the batch paused or waits for a
 * backend, -1 on error (the cursor stays; the rest of the batch is
 * retried later).
 */
static int
wb_round (struct pc_cache *c, struct wb_pool *p, struct pc_ns *ns,
          unsigned width)
{
  struct wb_batch *b = wb_batch_of (ns);
  int err = 0, r;

  if (!b)
    return 0;
  if (!b->loaded) {
    if (wb_skip_clean (c, ns))
      return 1;
    r = wb_load (c, b, &err);
    if (r <= 0) {
      if (r == 0) {
        pc_group_idle (c, ns);
        return 0;
      }
      PC_COUNT (c, writeback_errors, 1);
      goto fail;
    }
  }
  /* Held at an epoch boundary: no batch of a later epoch starts. */
  if (b->bytes && !pc_hold_admit (c, b->epoch)) {
    wb_unload (b);
    return 0;
  }
  if (!pc_tree_first (&b->tree)) {
    /* Only other namespaces' keys, or data overwritten since. */
    if (!b->unflushed) {
      wb_done (c, b);
      return 1;
    }
    /* All down, but the flush after it failed (or what wb_late left
     * out, if settling it failed).
     */
    if (pc_ns_pin (ns, &b->bg) == -1)
      return 0;
    err = wb_late_settle (c, p, b, width);
    goto written;
  }
  if (pc_ns_pin (ns, &b->bg) == -1)
    return 0;                           /* waits, loaded, for a backend */
  if (b->fua < 0)
    b->fua = wb_use_fua (c, b);
  /* A group's bounds are durable before any of it goes down. */
  if (b->nepochs > 1 && !b->recorded) {
    pc_group_record (c, ns, b->start.seq, b->end.seq, b->epoch);
    b->recorded = 1;
  }
  b->unflushed = 1;
  err = wb_write_batch (c, p, b, width);
  /* Down but for what wb_late left out, which may have to go too. */
  if (err == 0 && !pc_tree_first (&b->tree))
    err = wb_late_settle (c, p, b, width);
 written:
  /* Stopping leaves the batch for the next start: it is retried whole
   * from the cursor, which rewrites what is already down.
   */
  if (atomic_load (&c->stop_wb)) {
    pc_ns_unpin (ns);
    return 0;
  }
  if (err)
    goto fail_pinned;
  /* Paused: what is left waits, loaded, for writeback to run again. */
  if (p->paused && pc_tree_first (&b->tree)) {
    pc_ns_unpin (ns);
    return 0;
  }
  if ((b->fua != 1 || atomic_load (&b->fua_missed)) && b->bg.ops->flush) {
    int fr = b->bg.ops->flush (b->bg.ctx, &err);

    atomic_fetch_add_explicit (&c->wb_answers, 1, memory_order_relaxed);
    if (fr == -1) {
      wb_count_failure (c, err);
      goto fail_pinned;
    }
    PC_COUNT (c, writeback_flushes, 1);
  }
  pc_ns_unpin (ns);
  wb_done (c, b);
  return 1;

 fail_pinned:
  err = err ? err : EIO;
  b->backoff_ms = b->backoff_ms ? PC_MIN (b->backoff_ms * 2, 1000u) : 10;
  /* The backoff stays as it is after a reopen: a backend that fails on
   * a new connection too must not be reopened in a tight loop.
   */
  /* Writes that went down on a connection that broke and were not
   * flushed there may have gone with it (a server that crashed): a
   * flush on the new one would not cover them, so the batch goes down
   * again whole.  Not after other errors, whose reopen (every few
   * rounds) finds the server as it was: a batch then keeps what it got
   * down, or a backend that fails some writes would never finish one.
   */
  if (wb_failed (c, b, err) && wb_reopen (c, b) == 0 && b->unflushed &&
      wb_conn_error (err))
    wb_unload (b);
  pc_ns_unpin (ns);
  ns->retry_ms = pc_now_ms () + b->backoff_ms;
  return -1;

 fail:
  err = err ? err : EIO;
  b->backoff_ms = b->backoff_ms ? PC_MIN (b->backoff_ms * 2, 1000u) : 10;
  wb_failed (c, b, err);
  ns->retry_ms = pc_now_ms () + b->backoff_ms;
  return -1;
}

/* A round for each namespace whose backoff is over.  Returns 1 if any
 * cursor moved, else -1 if any round failed, else 0; *retry_ms is the
 * earliest a failed one may be tried again.
 */
struct wb_all {
  struct wb_pool *p;
  unsigned width;
  int moved, failed;
  uint64_t now, retry_ms;
};

static int
wb_round_one (struct pc_ns *ns, void *opaque)
{
  struct wb_all *a = opaque;
  struct pc_cache *c = a->p->c;
  int r;

  if (atomic_load (&c->stop_wb))
    return 1;
  if (ns->retry_ms > a->now) {
    a->failed = 1;
    a->retry_ms = PC_MIN (a->retry_ms, ns->retry_ms);
    return 0;
  }
  r = wb_round (c, a->p, ns, a->width);
  if (r == 1)
    a->moved = 1;
  else if (r == -1) {
    a->failed = 1;
    a->retry_ms = PC_MIN (a->retry_ms, ns->retry_ms);
  }
  return 0;
}

static int
wb_round_all (struct pc_cache *c, struct wb_pool *p, unsigned width,
              uint64_t *retry_ms)
{
  struct wb_all a = { p, width, 0, 0, pc_now_ms (), UINT64_MAX };

  pc_ns_each (c, wb_round_one, &a);
  *retry_ms = a.retry_ms;
  return a.moved ? 1 : a.failed ? -1 : 0;
}

/* Caller holds bg_lock. */
static void
timed_wait (struct pc_cache *c, unsigned ms)
{
  pc_assert_held (&c->bg_lock);
  pc_cond_wait_ms (&c->bg_cv, &c->bg_lock, ms);
}

/* How many concurrent writers writeback may use now (0 holds it back),
 * and at what pace, in bytes a second (*rate; 0: as fast as they go).
 * While a client reads or writes, writeback waits until dirty data
 * passes pcache-writeback-percent of the cache, so that it does not
 * take CPU and backend bandwidth from a burst the cache can absorb.
 * Past that it starts with one writer and adds writers as dirty data
 * grows towards the GC threshold, at a pace that writes the excess in
 * PC_WB_PACE_S: a long burst meets a writeback rate that matches the
 * backlog rather than a cliff, and data the client keeps rewriting (a
 * hot table, a sequential rewrite) goes down about as often as the
 * backlog needs, not as often as a writer at full speed could take it.
 * A client that only reads adds no dirty data: while it has not written
 * for PC_WB_IDLE_MS, writeback below that level waits, and leaves it the
 * CPU.  Every writer runs, unpaced, when the client has been quiet for
 * PC_WB_IDLE_MS, when space, a drain or an export's quota is waited for
 * (or data has no room left: see gc_needed), or when GC needs clean
 * segments, or when flushed data nears pcache-writeback-max-age.
 */
static unsigned
wb_level (struct pc_cache *c, uint64_t *rate)
{
  uint64_t dirty = PC_DIRTY_BYTES (c);
  uint64_t size = (uint64_t) c->nsegs << c->seg_shift;
  uint32_t nfree = pc_segs_nfree (&c->segs);
  uint64_t used = c->nsegs - nfree;
  uint64_t now = pc_now_ms ();
  unsigned gc_pct = atomic_load (&c->gc_percent), pct, n;
  /* Tunables: read once, so that one answer uses one value of each. */
  unsigned threads = atomic_load_explicit (&c->wb_threads,
                                           memory_order_relaxed);
  unsigned wb_pct = atomic_load_explicit (&c->wb_percent,
                                          memory_order_relaxed);

  *rate = 0;
  if (dirty == 0 || now - atomic_load (&c->last_io_ms) >= PC_WB_IDLE_MS ||
      atomic_load (&c->drainers) > 0 || pc_segs_waiters (&c->segs) > 0 ||
      atomic_load (&c->quota_waiters) > 0 ||
      nfree <= PC_LOG_RESERVE || used * 100 > (uint64_t) c->nsegs * gc_pct ||
      pc_dirty_too_old (c))
    return threads;
  pct = dirty * 100 / size;
  if (pct < wb_pct ||
      (wb_pct > 0 && pct < gc_pct &&
       now - atomic_load (&c->last_write_ms) >= PC_WB_IDLE_MS))
    return 0;
  if (gc_pct <= wb_pct || pct >= gc_pct)
    return threads;
  if (wb_pct > 0)
    *rate = PC_MAX ((dirty - PC_MIN (dirty, size / 100 * wb_pct)) /
                    PC_WB_PACE_S, PC_WB_PACE_MIN);
  n = 1 + (uint64_t) (threads - 1) * (pct - wb_pct) / (gc_pct - wb_pct);
  return PC_MIN (n, threads);
}

unsigned
pc_wb_width (struct pc_cache *c)
{
  uint64_t rate;

  return wb_level (c, &rate);
}

uint64_t
pc_wb_pace (struct pc_cache *c)
{
  uint64_t rate;

  return wb_level (c, &rate) ? rate : 0;
}

/* Writers for writeback's thread now, 0 if it is to wait: held back by
 * the width, or ahead of its pace.
 */
static unsigned
wb_go (struct pc_cache *c)
{
  uint64_t rate;
  unsigned width = wb_level (c, &rate);

  if (width && !pc_pace_ok (&c->wb_pace, rate, pc_now_ms ()))
    return 0;
  return width;
}

/* Helpers for wb_threads concurrent writers: the thread itself is one. */
static unsigned
wb_helpers_wanted (struct pc_cache *c)
{
  unsigned n = atomic_load_explicit (&c->wb_threads, memory_order_relaxed);

  return n > 1 ? n - 1 : 0;
}

/* Rebuild the pool if pcache-writeback-threads changed since it was made
 * for *made helpers.  Called between rounds, when no helper holds work;
 * a batch left loaded (paused, or failed) lives outside the pool and
 * goes on with the new one.
 */
static void
wb_pool_resize (struct pc_cache *c, struct wb_pool *p, unsigned *made)
{
  unsigned want = wb_helpers_wanted (c);

  if (want == *made)
    return;
  wb_pool_destroy (p);
  wb_pool_init (c, p, want, 1);
  *made = want;
  pc_debug ("%s: writeback now runs %u writers", c->path, want + 1);
}

/* Writers to use for the next round; 0 holds writeback back.  Paused by
 * the operator, it starts no round: a batch already written in part
 * stays loaded until writeback resumes.  (A round in flight is not
 * stopped: wb_work's hold is for the client, see pc_wb_width.)
 */
static unsigned
wb_next_width (struct pc_cache *c)
{
  if (atomic_load (&c->wb_paused))
    return 0;
  return wb_go (c);
}

/* What idle writeback saw when it last looked. */
struct wb_idle {
  uint64_t head, written, dirty;
};

/* Committed ksets to let pass before idle writeback looks again.  Each
 * look costs a client's thread a wake-up (a system call, and in a
 * virtual machine an interrupt to the other CPU), once every few ksets.
 * Far below the thresholds that commits can cross (dirty data reaching
 * pcache-writeback-percent, used segments GC's share), the looks can be
 * further apart: as many ksets as take half the way to the nearer one
 * at the bytes a kset has brought since the last look.  The other
 * reasons to run (waiters for space, a drain or a quota; old data; a
 * quiet client) wake writeback themselves or come with time.
 */
static unsigned
wb_wake_gap (struct pc_cache *c, struct wb_idle *w)
{
  uint64_t head = atomic_load (&c->log.head_seq);
  uint64_t dirty = PC_DIRTY_BYTES (c);
  uint64_t written = PC_COUNTED (c, write_bytes);
  uint64_t size = (uint64_t) c->nsegs << c->seg_shift;
  uint64_t used = c->nsegs - pc_segs_nfree (&c->segs);
  uint64_t wb_at = size / 100 * atomic_load (&c->wb_percent);
  uint64_t gc_at = (uint64_t) c->nsegs * atomic_load (&c->gc_percent) / 100;
  uint64_t per = 0, room, gap;

  /* Zeroes and trims add dirty data but write no payload. */
  if (head > w->head)
    per = PC_MAX (written - w->written,
                  dirty > w->dirty ? dirty - w->dirty : 0) / (head - w->head);
  w->head = head;
  w->written = written;
  w->dirty = dirty;
  if (per == 0 || dirty >= wb_at || used >= gc_at)
    return WB_WAKE_KSETS;
  room = PC_MIN (wb_at - dirty, (gc_at - used) << c->seg_shift);
  gap = room / 2 / per;
  return (unsigned) PC_MAX (PC_MIN (gap, WB_WAKE_KSETS_MAX), WB_WAKE_KSETS);
}

void *
pc_writeback_thread (void *arg)
{
  struct pc_cache *c = arg;
  struct wb_pool pool;
  struct wb_idle idle = { 0, 0, 0 };
  unsigned helpers = wb_helpers_wanted (c);

  pc_thread_background ("pcache-wb");
  wb_pool_init (c, &pool, helpers, 1);
  pthread_mutex_lock (&c->bg_lock);
  while (!c->stop) {
    uint64_t kicks = c->kicks, retry_ms = UINT64_MAX;
    unsigned width;
    int r;

    pthread_mutex_unlock (&c->bg_lock);
    wb_pool_resize (c, &pool, &helpers);
    width = wb_next_width (c);
    r = width ? wb_round_all (c, &pool, width, &retry_ms) : 0;
    pc_gc_run (c, 0);
    pthread_mutex_lock (&c->bg_lock);
    if (c->stop)
      break;
    if (r == -1) {
      /* Back off for the whole pause: commits must not hurry a retry. */
      while (!c->stop && pc_now_ms () < retry_ms)
        timed_wait (c, retry_ms - pc_now_ms ());
    }
    else if (r == 0 && c->kicks == kicks) {
      /* Idle until a few ksets are committed (any one, if writeback
       * is not to wait for a backlog), or the client goes quiet (see
       * wake_writeback in kset.c).
       */
      uint64_t wake = atomic_load (&c->log.head_seq) +
        (atomic_load_explicit (&c->wb_percent, memory_order_relaxed) == 0
         ? 1 : wb_wake_gap (c, &idle));

      atomic_store (&c->wb_wake_seq, wake);
      if (atomic_load (&c->log.head_seq) < wake)
        timed_wait (c, PC_WB_IDLE_MS);
      atomic_store (&c->wb_wake_seq, UINT64_MAX);
    }
  }
  pthread_mutex_unlock (&c->bg_lock);
  wb_pool_destroy (&pool);
  return NULL;
}

/* A batch left loaded holds its extents: give them back. */
static int
wb_forget (struct pc_ns *ns, void *opaque)
{
  struct wb_batch *b = ns->wb;

  (void) opaque;
  if (b)
    wb_unload (b);
  return 0;
}

void
pc_writeback_forget (struct pc_cache *c)
{
  pc_ns_each (c, wb_forget, NULL);
}

struct wb_step {
  struct wb_pool *p;
  unsigned width;
  int r;
};

static int
step_one (struct pc_ns *ns, void *opaque)
{
  struct wb_step *s = opaque;

  s->r = wb_round (s->p->c, s->p, ns, s->width);
  wb_forget (ns, NULL);
  return s->r != 0;
}

/* One round of the first namespace that has something to do. */
static int
step (struct pc_cache *c, unsigned nhelpers, unsigned width)
{
  struct wb_pool pool;
  struct wb_step s = { &pool, width, 0 };

  wb_pool_init (c, &pool, nhelpers, 0);
  pc_ns_each (c, step_one, &s);
  wb_pool_destroy (&pool);
  return s.r;
}

int
pc_writeback_step (struct pc_cache *c)
{
  return step (c, 0, 1);
}

int
pc_writeback_step_width (struct pc_cache *c, unsigned width)
{
  return step (c, wb_helpers_wanted (c), width);
}
