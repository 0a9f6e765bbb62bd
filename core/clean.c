/* SPDX-License-Identifier: BSD-3-Clause */
/* Clean keys and the backend's own volatile cache.
 *
 * A clean key says "the backend holds this data".  Outside write-back,
 * writes reach the backend at once but are durable there only after a
 * backend flush; a clean key logged before that flush could outlive
 * the data after a power loss, and the cache would then serve data the
 * backend lost, until evicted.  So a clean key is logged only when
 * every write-through that had ended when its data was read is covered
 * by a backend flush; until then it is indexed in RAM only and waits
 * here, to be logged after the next flush if the index still holds it
 * unchanged.  Write-back mode is untouched: its own writes to the
 * backend are flushed before their keys stop covering the data.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <string.h>

#include "cache_internal.h"
#include "backend.h"
#include "clean.h"

void
pc_clean_init (struct pc_cache *c)
{
  pthread_mutex_init (&c->clean.lock, NULL);
}

void
pc_clean_destroy (struct pc_cache *c)
{
  pthread_mutex_destroy (&c->clean.lock);
}

int
pc_clean_log (struct pc_cache *c, const struct pc_key_rec *r)
{
  struct pc_clean *cl = &c->clean;
  uint64_t need = atomic_load (&c->clean.wt_ended);
  struct pc_kbuf *kb = pc_kbuf_for (c, r->off);
  int deferred = 0, r2;

  pthread_mutex_lock (&cl->lock);
  if (cl->flushed < need) {
    if (cl->n < PC_CLEAN_WAIT)
      cl->wait[cl->n++] = (struct pc_clean_wait) { .rec = *r, .need = need };
    deferred = 1;
  }
  pthread_mutex_unlock (&cl->lock);
  if (deferred)
    return 1;
  pthread_mutex_lock (&kb->lock);
  r2 = pc_kbuf_add (c, kb, r, NULL);
  pthread_mutex_unlock (&kb->lock);
  return r2 == 0 ? 0 : -1;
}

/* Whether t holds exactly the clean key r describes. */
static int
still_indexed (struct pc_tree *t, const struct pc_key_rec *r)
{
  struct pc_key *k = pc_tree_find (t, r->off, r->len);

  return k && k->off == r->off && k->len == r->len && k->seg == r->seg &&
    k->seg_off == r->seg_off && k->gen == r->gen && k->flags == r->flags;
}

/* Log one waiting key if nothing changed it; its payload reference is
 * taken again, as the one it had went back when it was deferred.
 */
static void
log_waiting (struct pc_cache *c, const struct pc_key_rec *r)
{
  struct pc_tree *t = pc_index_tree (&c->index, r->off);
  struct pc_kbuf *kb = pc_kbuf_for (c, r->off);

  pc_wrlock (&t->lock);
  if (still_indexed (t, r) && pc_seg_get_if_gen (&c->segs, r->seg, r->gen)) {
    int q;

    pthread_mutex_lock (&kb->lock);
    q = pc_kbuf_add (c, kb, r, NULL);
    pthread_mutex_unlock (&kb->lock);
    if (q != 0)
      pc_seg_put (&c->segs, r->seg);
  }
  pthread_rwlock_unlock (&t->lock);
}

static void
flushed (struct pc_cache *c, uint64_t ended)
{
  struct pc_clean *cl = &c->clean;
  struct pc_clean_wait ready[64];
  size_t n, i, j;

  do {
    pthread_mutex_lock (&cl->lock);
    if (cl->flushed < ended)
      cl->flushed = ended;
    for (i = j = n = 0; i < cl->n; i++) {
      if (cl->wait[i].need <= cl->flushed && n < 64)
        ready[n++] = cl->wait[i];
      else
        cl->wait[j++] = cl->wait[i];
    }
    cl->n = j;
    pthread_mutex_unlock (&cl->lock);
    for (i = 0; i < n; i++)
      log_waiting (c, &ready[i].rec);
  } while (n == 64);
}

void
pc_clean_wt_ended (struct pc_cache *c, const struct pc_backend *bg)
{
  uint64_t ended = atomic_fetch_add (&c->clean.wt_ended, 1) + 1;

  /* Backends that cannot flush have nothing volatile to wait for. */
  if (!bg->ops->flush && pc_backend_none_flush (c))
    flushed (c, ended);
}

/* Every namespace's backend: a clean key waits for the change it was
 * read after, whichever export that was on.
 */
int
pc_backend_flush (struct pc_cache *c, int *err)
{
  uint64_t ended = atomic_load (&c->clean.wt_ended);

  if (pc_backend_flush_all (c, err) == -1)
    return -1;
  flushed (c, ended);
  return 0;
}
