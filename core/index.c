/* Striped multi-tree index (see index.h). */

#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <errno.h>
#include <pthread.h>

#include "index.h"

static int
key_cmp (const struct pc_key *a, const struct pc_key *b)
{
  return a->off < b->off ? -1 : a->off > b->off;
}

/* RB_GENERATE_STATIC relies on __unused, which libbsd leaves undefined
 * (it clashes with Linux struct members), so spell the attribute out:
 * the generated functions we never call must not warn.
 */
RB_GENERATE_INTERNAL (pc_key_tree, pc_key, rb, key_cmp,
                      __attribute__ ((__unused__)) static)

int
pc_index_init (struct pc_index *ix, uint64_t size, unsigned stripe_shift,
               unsigned max_trees)
{
  uint64_t nstripes;
  unsigned i;
  int r;

  if (max_trees == 0 || stripe_shift < 12 || stripe_shift > 40) {
    errno = EINVAL;
    return -1;
  }

  /* Written this way so a size near 2^64 cannot overflow. */
  nstripes = (size >> stripe_shift)
    + ((size & ((UINT64_C (1) << stripe_shift) - 1)) != 0);
  if (nstripes == 0)
    nstripes = 1;

  ix->size = size;
  ix->stripe_shift = stripe_shift;
  ix->ntrees = nstripes < max_trees ? (unsigned) nstripes : max_trees;
  ix->trees = aligned_alloc (_Alignof (struct pc_tree),
                             ix->ntrees * sizeof *ix->trees);
  if (ix->trees == NULL) {
    errno = ENOMEM;
    return -1;
  }
  memset (ix->trees, 0, ix->ntrees * sizeof *ix->trees);

  for (i = 0; i < ix->ntrees; i++) {
    r = pthread_rwlock_init (&ix->trees[i].lock, NULL);
    if (r != 0) {
      while (i-- > 0)
        pthread_rwlock_destroy (&ix->trees[i].lock);
      free (ix->trees);
      ix->trees = NULL;
      errno = r;
      return -1;
    }
    RB_INIT (&ix->trees[i].root);
    ix->trees[i].nkeys = 0;
  }
  return 0;
}

/* Post-order free: no rebalancing, and the depth is bounded by the
 * red-black height (about 2 log2 n).
 */
static void
free_subtree (struct pc_key *k)
{
  if (k == NULL)
    return;
  free_subtree (RB_LEFT (k, rb));
  free_subtree (RB_RIGHT (k, rb));
  free (k);
}

void
pc_index_destroy (struct pc_index *ix)
{
  unsigned i;

  if (ix->trees == NULL)
    return;
  for (i = 0; i < ix->ntrees; i++) {
    free_subtree (RB_ROOT (&ix->trees[i].root));
    RB_INIT (&ix->trees[i].root);
    ix->trees[i].nkeys = 0;
    pthread_rwlock_destroy (&ix->trees[i].lock);
  }
  free (ix->trees);
  ix->trees = NULL;
  ix->ntrees = 0;
}

#define KEY_CACHE_MAX 256

/* Keys freed by a thread, for it to reuse; freed when it exits. */
struct key_cache {
  unsigned n;
  int registered;
  struct pc_key *v[KEY_CACHE_MAX];
};
static __thread struct key_cache key_cache;
static pthread_key_t key_cache_exit;
static pthread_once_t key_cache_once = PTHREAD_ONCE_INIT;

static void
key_cache_drop (void *arg)
{
  struct key_cache *kc = arg;

  while (kc->n > 0)
    free (kc->v[--kc->n]);
}

static void
key_cache_init (void)
{
  pthread_key_create (&key_cache_exit, key_cache_drop);
}

struct pc_key *
pc_key_alloc (void)
{
  struct pc_key *k;

  /* Keys come and go on every write: keep a few per thread. */
  if (key_cache.n > 0) {
    k = key_cache.v[--key_cache.n];
    memset (k, 0, sizeof *k);
    return k;
  }
  return calloc (1, sizeof (struct pc_key));
}

void
pc_key_free (struct pc_key *k)
{
  if (!k)
    return;
  if (!key_cache.registered) {
    /* Have the cache emptied when this thread exits. */
    pthread_once (&key_cache_once, key_cache_init);
    pthread_setspecific (key_cache_exit, &key_cache);
    key_cache.registered = 1;
  }
  if (key_cache.n < KEY_CACHE_MAX)
    key_cache.v[key_cache.n++] = k;
  else
    free (k);
}

struct pc_key *
pc_tree_find (struct pc_tree *t, uint64_t off, uint64_t len)
{
  struct pc_key *x = RB_ROOT (&t->root), *p = NULL, *n = NULL;

  if (len == 0)
    return NULL;

  /* One descent finds both neighbours of off (every level is a cache
   * miss on a large index, so no second walk): p, the last key starting
   * before off, the only one that can reach into the range; n, the
   * first key starting at or after off.
   */
  while (x) {
    if (x->off < off) {
      p = x;
      x = RB_RIGHT (x, rb);
    }
    else {
      n = x;
      x = RB_LEFT (x, rb);
    }
  }
  if (p && p->off + p->len > off)
    return p;
  /* n->off >= off, so the subtraction cannot wrap. */
  if (n && n->off - off < len)
    return n;
  return NULL;
}

/* Put k where e is in the tree: an overwrite of exactly the same range,
 * the common case of random writes, needs no rebalancing.
 */
static void
tree_replace (struct pc_tree *t, struct pc_key *e, struct pc_key *k)
{
  struct pc_key *parent = RB_PARENT (e, rb);

  k->rb = e->rb;
  if (parent == NULL)
    RB_ROOT (&t->root) = k;
  else if (RB_LEFT (parent, rb) == e)
    RB_LEFT (parent, rb) = k;
  else
    RB_RIGHT (parent, rb) = k;
  if (RB_LEFT (k, rb))
    RB_PARENT (RB_LEFT (k, rb), rb) = k;
  if (RB_RIGHT (k, rb))
    RB_PARENT (RB_RIGHT (k, rb), rb) = k;
}

struct pc_key *
pc_tree_next (struct pc_tree *t, struct pc_key *k)
{
  (void) t;
  return RB_NEXT (pc_key_tree, &t->root, k);
}

void
pc_tree_unlink (struct pc_tree *t, struct pc_key *k)
{
  RB_REMOVE (pc_key_tree, &t->root, k);
  t->nkeys--;
}

void
pc_tree_remove (struct pc_tree *t, struct pc_key *k)
{
  pc_tree_unlink (t, k);
  if (k->flags & PC_KEY_EMPTY)
    k->flags |= PC_KEY_DEAD;
  else
    pc_key_free (k);
}

struct pc_key *
pc_tree_first (struct pc_tree *t)
{
  return RB_MIN (pc_key_tree, &t->root);
}

int
pc_tree_insert (struct pc_tree *t, struct pc_key *k)
{
  const uint64_t nend = k->off + k->len;
  struct pc_key *e, *next, *spare = NULL;
  uint64_t eend;
  uint32_t delta;
  int overlapped;

  /* An empty key would violate "no zero-length key in the tree". */
  if (k->len == 0) {
    errno = EINVAL;
    return -1;
  }

  /* Only the first overlapping key can hold k strictly inside; get its
   * clone now so that ENOMEM leaves the tree untouched.
   */
  e = pc_tree_find (t, k->off, k->len);
  overlapped = e != NULL;
  if (e && e->off == k->off && e->len == k->len) {
    tree_replace (t, e, k);
    if (e->flags & PC_KEY_EMPTY)
      e->flags |= PC_KEY_DEAD;
    else
      pc_key_free (e);
    return 1;
  }
  if (e && !(e->flags & PC_KEY_EMPTY) &&
      e->off < k->off && e->off + e->len > nend) {
    spare = pc_key_alloc ();
    if (spare == NULL) {
      errno = ENOMEM;
      return -1;
    }
  }

  for (; e != NULL && e->off < nend; e = next) {
    next = RB_NEXT (pc_key_tree, &t->root, e);
    eend = e->off + e->len;

    if (e->flags & PC_KEY_EMPTY) {
      /* Never trim a placeholder: its owner fills the whole range. */
      pc_tree_unlink (t, e);
      e->flags |= PC_KEY_DEAD;
    }
    else if (e->off >= k->off && eend <= nend) {
      pc_tree_unlink (t, e);
      pc_key_free (e);
    }
    else if (e->off >= k->off) {
      /* Front cut.  e stays after k and overlaps nothing else, so
       * moving its offset in place keeps the tree ordered.
       */
      delta = nend - e->off;
      e->off += delta;
      e->len -= delta;
      if (!(e->flags & PC_KF_ZERO))
        e->seg_off += delta;
      break;
    }
    else if (eend <= nend) {
      /* Back cut. */
      e->len = k->off - e->off;
    }
    else {
      /* Split: e keeps its head, the spare takes the tail. */
      *spare = *e;
      spare->off = nend;
      spare->len = eend - nend;
      if (!(spare->flags & PC_KF_ZERO))
        spare->seg_off += nend - e->off;
      e->len = k->off - e->off;
      RB_INSERT (pc_key_tree, &t->root, spare);
      t->nkeys++;
      spare = NULL;
      break;
    }
  }
  pc_key_free (spare);

  RB_INSERT (pc_key_tree, &t->root, k);
  t->nkeys++;
  return overlapped;
}
