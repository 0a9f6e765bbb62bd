/* SPDX-License-Identifier: BSD-3-Clause */
/* Striped multi-tree index (see index.h).
 *
 * Each subtree is a B+tree.  Leaves hold keys in offset order and are
 * linked both ways; an interior node holds children, child i with the
 * separator off[i] (i > 0): every key under child i is >= off[i] and
 * < off[i + 1].  off[0] of an interior node is not used for search.
 * Separators are lower bounds, not always the exact smallest key: a
 * removal leaves them be.  No node is ever empty.
 */

#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <errno.h>
#include <pthread.h>

#include "index.h"
#include "slab.h"

#define BT_ORDER 24            /* entries per node: a node is 8 cache lines */
#define BT_MIN   8             /* fewer than this: try to merge with a sibling */

/* A leaf keeps each key's length and kind beside its offset, so that a
 * write finds what it overlaps and replaces a key of the same range
 * without reading the key: one cache miss a write fewer.  The key's
 * own fields stay the truth; index.c alone changes a linked key's
 * range, and mends the leaf when it does (keys never change kind).
 */
#define META_EMPTY (UINT32_C (1) << 31) /* a placeholder */
#define META_CRC   (UINT32_C (1) << 30) /* a pc_key_crc */
#define META_LEN   (META_CRC - 1)
#define KEY_LEN_MAX META_LEN

struct pc_bnode {
  uint16_t n;                           /* entries in use */
  uint8_t level;                        /* 0 for a leaf */
  struct pc_bnode *parent;
  uint64_t off[BT_ORDER];
  uint32_t meta[BT_ORDER];              /* leaf: length | META_* */
  union {
    struct pc_key *key[BT_ORDER];       /* leaf */
    struct pc_bnode *child[BT_ORDER];   /* interior */
  };
  struct pc_bnode *prev, *next;         /* leaves, in offset order */
} __attribute__ ((aligned (64)));

static inline uint32_t
key_meta (const struct pc_key *k)
{
  return k->len | (k->flags & PC_KEY_EMPTY ? META_EMPTY : 0)
    | (k->flags & PC_KEY_CRC ? META_CRC : 0);
}

static inline uint64_t
meta_len (uint32_t m)
{
  return m & META_LEN;
}

/* Keys and nodes come from pools of huge-page chunks (slab.h). */
#define CRC_KEY_SIZE 64                 /* sizeof (struct pc_key_crc), rounded */
static struct pc_slab key_pool = PC_SLAB_INIT (sizeof (struct pc_key), 0);
static struct pc_slab node_pool = PC_SLAB_INIT (sizeof (struct pc_bnode), 1);
static struct pc_slab crc_key_pool = PC_SLAB_INIT (CRC_KEY_SIZE, 2);

_Static_assert ((sizeof (struct pc_key) & (sizeof (struct pc_key) - 1)) == 0,
                "a key's size is a power of two");
_Static_assert (sizeof (struct pc_key_crc) <= CRC_KEY_SIZE,
                "a key with a data CRC fits its pool");
_Static_assert ((sizeof (struct pc_bnode) & (sizeof (struct pc_bnode) - 1))
                == 0, "a node's size is a power of two");

/* Nodes an insert may need; pc_tree_reserve holds them ready. */
#define NODE_RESERVE_MAX 64

struct pc_key *
pc_key_alloc (void)
{
  struct pc_key *k = pc_slab_alloc (&key_pool);

  if (k)
    memset (k, 0, sizeof *k);
  return k;
}

struct pc_key *
pc_key_alloc_crc (void)
{
  struct pc_key_crc *x = pc_slab_alloc (&crc_key_pool);

  if (x == NULL)
    return NULL;
  memset (x, 0, sizeof *x);
  x->k.flags = PC_KEY_CRC;
  return &x->k;
}

void
pc_key_free (struct pc_key *k)
{
  if (k)
    pc_slab_free (k->flags & PC_KEY_CRC ? &crc_key_pool : &key_pool, k);
}

/* Free a key of a leaf without reading it: its kind is in the leaf.
 * Ask for its line now, as the next allocation from its pool reuses it.
 */
static void
key_free_meta (struct pc_key *k, uint32_t m)
{
  __builtin_prefetch (k, 1);
  pc_slab_free (m & META_CRC ? &crc_key_pool : &key_pool, k);
}

/* A key of the same kind as k, not yet holding anything. */
static struct pc_key *
key_alloc_like (const struct pc_key *k)
{
  return k->flags & PC_KEY_CRC ? pc_key_alloc_crc () : pc_key_alloc ();
}

/* Copy all of src, the record's details too, into dst of the same kind. */
static void
key_copy (struct pc_key *dst, const struct pc_key *src)
{
  if (src->flags & PC_KEY_CRC)
    *pc_key_crc (dst) = *pc_key_crc ((struct pc_key *) src);
  else
    *dst = *src;
}

/* Memory a key takes in its pool. */
static size_t
key_bytes (const struct pc_key *k)
{
  return k->flags & PC_KEY_CRC ? CRC_KEY_SIZE : sizeof *k;
}

/* Only ever called after pc_tree_reserve: cannot fail. */
static struct pc_bnode *
node_get (unsigned level)
{
  struct pc_bnode *x = pc_slab_alloc (&node_pool);

  memset (x, 0, sizeof *x);
  x->level = level;
  return x;
}

static void
node_put (struct pc_bnode *x)
{
  pc_slab_free (&node_pool, x);
}

static unsigned
height (const struct pc_tree *t)
{
  return t->root ? t->root->level + 1u : 0;
}

int
pc_tree_reserve (const struct pc_tree *t)
{
  /* An insert may split a node on every level and add a root, twice
   * (the clone of a split key, then the key).
   */
  unsigned want = 2 * (height (t) + 2);

  if (want > NODE_RESERVE_MAX || pc_slab_reserve (&node_pool, want) == -1) {
    errno = ENOMEM;
    return -1;
  }
  return 0;
}

static int
tree_init (struct pc_tree *t)
{
  int r = pthread_rwlock_init (&t->lock, NULL);

  if (r != 0) {
    errno = r;
    return -1;
  }
  t->root = NULL;
  return 0;
}

/* Post-order: no rebalancing, recursion only as deep as the tree. */
static void
free_nodes (struct pc_bnode *x)
{
  unsigned i;

  for (i = 0; i < x->n; i++) {
    if (x->level > 0)
      free_nodes (x->child[i]);
    else
      pc_key_free (x->key[i]);
  }
  node_put (x);
}

static void
tree_destroy (struct pc_tree *t)
{
  if (t->root)
    free_nodes (t->root);
  t->root = NULL;
  pthread_rwlock_destroy (&t->lock);
}

int
pc_index_init (struct pc_index *ix, uint64_t size, unsigned stripe_shift,
               unsigned max_trees)
{
  uint64_t nstripes;
  unsigned i;

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
    if (tree_init (&ix->trees[i]) == -1) {
      int e = errno;

      while (i-- > 0)
        pthread_rwlock_destroy (&ix->trees[i].lock);
      free (ix->trees);
      ix->trees = NULL;
      errno = e;
      return -1;
    }
  }
  return 0;
}

void
pc_index_destroy (struct pc_index *ix)
{
  unsigned i;

  if (ix->trees == NULL)
    return;
  for (i = 0; i < ix->ntrees; i++)
    tree_destroy (&ix->trees[i]);
  free (ix->trees);
  ix->trees = NULL;
  ix->ntrees = 0;
}

static void
tree_usage (const struct pc_bnode *x, uint64_t *keys, uint64_t *nodes,
            uint64_t *key_mem)
{
  unsigned i;

  if (x == NULL)
    return;
  (*nodes)++;
  if (x->level == 0) {
    *keys += x->n;
    for (i = 0; i < x->n; i++)
      *key_mem += key_bytes (x->key[i]);
  }
  else
    for (i = 0; i < x->n; i++)
      tree_usage (x->child[i], keys, nodes, key_mem);
}

uint64_t
pc_index_usage (struct pc_index *ix, uint64_t *keys, uint64_t *nodes)
{
  uint64_t key_mem = 0;
  unsigned i;

  *keys = *nodes = 0;
  for (i = 0; i < ix->ntrees; i++) {
    pthread_rwlock_rdlock (&ix->trees[i].lock);
    tree_usage (ix->trees[i].root, keys, nodes, &key_mem);
    pthread_rwlock_unlock (&ix->trees[i].lock);
  }
  return key_mem + *nodes * sizeof (struct pc_bnode);
}

/* Leaf: the first slot whose key starts at or after off.  Counting
 * instead of searching: no unpredictable branch, and the compiler may
 * vectorise it.
 */
static unsigned
leaf_slot (const struct pc_bnode *x, uint64_t off)
{
  unsigned i, c = 0;

  for (i = 0; i < x->n; i++)
    c += x->off[i] < off;
  return c;
}

/* Interior: the last child whose separator is <= off (child 0 if none). */
static unsigned
child_slot (const struct pc_bnode *x, uint64_t off)
{
  unsigned i, c = 0;

  for (i = 1; i < x->n; i++)
    c += x->off[i] <= off;
  return c;
}

/* Slot of child x in its parent. */
static unsigned
slot_in_parent (const struct pc_bnode *x)
{
  const struct pc_bnode *p = x->parent;
  unsigned i = 0;

  while (p->child[i] != x)
    i++;
  return i;
}

/* A node's pointers lie past its offsets (and a leaf's lengths), on
 * lines of their own: ask for them while the offsets are searched, so
 * that the misses overlap.
 */
static inline void
prefetch_ptrs (const struct pc_bnode *x)
{
  const char *p = (const char *) &x->key[0];

  __builtin_prefetch (p);
  __builtin_prefetch (p + 64);
  __builtin_prefetch (p + 128);
  __builtin_prefetch (&x->key[BT_ORDER - 1]);
}

/* Ask for every line of node x. */
static inline void
prefetch_node (const struct pc_bnode *x)
{
  const char *p = (const char *) x;
  size_t i;

  for (i = 0; i < sizeof *x; i += 64)
    __builtin_prefetch (p + i);
}

/* The leaf is known for one from its parent's level, not read here: all
 * of its lines are asked for at once, and the caller's search waits for
 * them together, where reading its level first would wait for one line,
 * then the search for the rest.
 */
static struct pc_bnode *
leaf_for (const struct pc_tree *t, uint64_t off)
{
  struct pc_bnode *x = t->root;
  unsigned level;

  if (x == NULL || x->level == 0)
    return x;
  prefetch_ptrs (x);
  for (;;) {
    level = x->level;
    x = x->child[child_slot (x, off)];
    if (level == 1)
      break;
    prefetch_ptrs (x);
  }
  prefetch_node (x);
  return x;
}

void
pc_tree_prefetch (struct pc_tree *const *t, const uint64_t *off, unsigned n)
{
  const struct pc_bnode *x[PC_TREE_PREFETCH_MAX];
  unsigned i, more;

  if (n > PC_TREE_PREFETCH_MAX)
    n = PC_TREE_PREFETCH_MAX;
  for (i = 0; i < n; i++) {
    x[i] = t[i]->root;
    if (x[i])
      prefetch_node (x[i]);
  }
  /* One level of every descent a round: the nodes of a round were all
   * asked for in the round before.
   */
  do {
    more = 0;
    for (i = 0; i < n; i++) {
      const struct pc_bnode *y = x[i];
      unsigned j;

      if (y == NULL)
        continue;
      if (y->level > 0) {
        x[i] = y->child[child_slot (y, off[i])];
        prefetch_node (x[i]);
        more = 1;
        continue;
      }
      /* The leaf: find_at reads the length before off, in this leaf
       * or at the end of the one before, and the first offset after it.
       */
      j = leaf_slot (y, off[i]);
      if (j == 0 && y->prev)
        prefetch_node (y->prev);
      if (j == y->n && y->next)
        __builtin_prefetch (y->next);
      /* A full leaf hands entries to a sibling (leaf_share). */
      if (y->n == BT_ORDER) {
        if (y->next)
          prefetch_node (y->next);
        if (y->prev)
          prefetch_node (y->prev);
      }
      x[i] = NULL;
    }
  } while (more);
}

/* Leaf and slot of a linked key.  Keys do not point back at their leaf:
 * that would cost 8 bytes a key, and a store into every key a split or
 * merge moves.  Offsets in a tree are unique, so a descent finds it.
 */
static struct pc_bnode *
locate (const struct pc_tree *t, const struct pc_key *k, unsigned *slot)
{
  struct pc_bnode *x = leaf_for (t, k->off);

  *slot = leaf_slot (x, k->off);
  return x;
}

/* pc_tree_find, also giving the leaf and slot of what it finds.  With
 * at, *at and *at_slot receive the leaf where a key at off belongs and
 * its slot there (as tree_link finds them; *at is NULL for an empty
 * tree), whatever the search finds.
 */
static struct pc_key *
find_at (const struct pc_tree *t, uint64_t off, uint64_t len,
         struct pc_bnode **leaf, unsigned *slot,
         struct pc_bnode **at, unsigned *at_slot)
{
  struct pc_bnode *x, *pl, *nl;
  unsigned j, ps, ns;

  if (at)
    *at = NULL;
  if (len == 0 || (x = leaf_for (t, off)) == NULL)
    return NULL;

  /* Keys in earlier leaves start before off, keys in later leaves after
   * it: p, the last key starting before off, is the only one that can
   * reach into the range, and n is the first starting at or after it.
   */
  j = leaf_slot (x, off);
  if (at) {
    *at = x;
    *at_slot = j;
  }
  /* A key starting at off: no earlier key reaches past it (keys never
   * overlap), so it is the answer without reading p.
   */
  if (j < x->n && x->off[j] == off) {
    *leaf = x;
    *slot = j;
    return x->key[j];
  }
  /* p: in this leaf before j, or the last of the previous leaf. */
  pl = j > 0 ? x : x->prev;
  if (pl) {
    ps = j > 0 ? j - 1 : pl->n - 1u;
    if (pl->off[ps] + meta_len (pl->meta[ps]) > off) {
      *leaf = pl;
      *slot = ps;
      return pl->key[ps];
    }
  }
  /* n: at j in this leaf, or the first of the next leaf.  Its offset is
   * in the leaf, so a key out of range is never read; n >= off, so the
   * subtraction cannot wrap.
   */
  nl = j < x->n ? x : x->next;
  ns = j < x->n ? j : 0;
  if (nl && nl->off[ns] - off < len) {
    *leaf = nl;
    *slot = ns;
    return nl->key[ns];
  }
  return NULL;
}

struct pc_key *
pc_tree_find (struct pc_tree *t, uint64_t off, uint64_t len)
{
  struct pc_bnode *x;
  unsigned j;

  return find_at (t, off, len, &x, &j, NULL, NULL);
}

struct pc_key *
pc_tree_find_pos (struct pc_tree *t, uint64_t off, uint64_t len,
                  struct pc_tree_pos *pos)
{
  return find_at (t, off, len, &pos->leaf, &pos->slot, NULL, NULL);
}

struct pc_key *
pc_tree_next_pos (struct pc_tree_pos *pos)
{
  if (pos->slot + 1u < pos->leaf->n)
    return pos->leaf->key[++pos->slot];
  if (pos->leaf->next == NULL)
    return NULL;
  pos->leaf = pos->leaf->next;
  pos->slot = 0;
  return pos->leaf->key[0];
}

struct pc_key *
pc_tree_next (struct pc_tree *t, struct pc_key *k)
{
  unsigned j;
  struct pc_bnode *x = locate (t, k, &j);

  if (j + 1u < x->n)
    return x->key[j + 1];
  return x->next ? x->next->key[0] : NULL;
}

struct pc_key *
pc_tree_first (struct pc_tree *t)
{
  struct pc_bnode *x = t->root;

  if (x == NULL)
    return NULL;
  while (x->level > 0)
    x = x->child[0];
  return x->key[0];
}

/* Whether x is the last node of its level. */
static int
rightmost (const struct pc_bnode *x)
{
  for (; x->parent; x = x->parent)
    if (x->parent->child[x->parent->n - 1] != x)
      return 0;
  return 1;
}

static void node_insert (struct pc_tree *t, struct pc_bnode *x, unsigned i,
                         uint64_t off, void *ptr);

/* Link right into left's parent just after left, with separator sep,
 * growing a root when left is the top.
 */
static void
parent_insert (struct pc_tree *t, struct pc_bnode *left, uint64_t sep,
               struct pc_bnode *right)
{
  struct pc_bnode *p = left->parent;

  if (p == NULL) {
    p = node_get (left->level + 1);
    p->n = 2;
    p->off[0] = left->off[0];
    p->child[0] = left;
    p->off[1] = sep;
    p->child[1] = right;
    left->parent = right->parent = p;
    t->root = p;
    return;
  }
  node_insert (t, p, slot_in_parent (left) + 1, sep, right);
}

/* Move n entries of src from slot si to slot di of dst (which may be
 * src): offsets, pointers and a leaf's lengths (an interior node's are
 * unused and move along).  One loop over the three arrays: three calls
 * to memmove of a few dozen bytes each took a quarter to a third of
 * the time of write-back's batches and of replay, which insert or
 * remove a key an extent.
 */
static void
move_entries (struct pc_bnode *dst, unsigned di, const struct pc_bnode *src,
              unsigned si, unsigned n)
{
  unsigned i;

  if (n == 0)
    return;
  if (dst != src || di < si) {
    for (i = 0; i < n; i++) {
      dst->off[di + i] = src->off[si + i];
      dst->key[di + i] = src->key[si + i];
      dst->meta[di + i] = src->meta[si + i];
    }
  }
  else {
    for (i = n; i-- > 0;) {
      dst->off[di + i] = src->off[si + i];
      dst->key[di + i] = src->key[si + i];
      dst->meta[di + i] = src->meta[si + i];
    }
  }
}

/* Put off and ptr at slot i of x, which has room. */
static void
node_place (struct pc_bnode *x, unsigned i, uint64_t off, void *ptr)
{
  move_entries (x, i + 1, x, i, x->n - i);
  x->off[i] = off;
  if (x->level > 0) {
    x->child[i] = ptr;
    x->child[i]->parent = x;
  }
  else {
    x->key[i] = ptr;
    x->meta[i] = key_meta (ptr);
  }
  x->n++;
}

/* Move leaf x's last m entries to the front of its right sibling r.
 * The caller sets the separator between them.
 */
static void
shift_right (struct pc_bnode *x, struct pc_bnode *r, unsigned m)
{
  move_entries (r, m, r, 0, r->n);
  move_entries (r, 0, x, x->n - m, m);
  r->n += m;
  x->n -= m;
}

/* Move leaf x's first m entries to the end of its left sibling l.  The
 * caller sets the separator between them.
 */
static void
shift_left (struct pc_bnode *x, struct pc_bnode *l, unsigned m)
{
  move_entries (l, l->n, x, 0, m);
  l->n += m;
  x->n -= m;
  move_entries (x, 0, x, m, x->n);
}

/* Full leaf x takes a new entry at slot i by handing entries to a
 * sibling under the same parent with room, instead of splitting (as a
 * B*-tree does): random inserts then leave leaves about four fifths
 * full instead of two thirds, and the index takes less memory and
 * cache.  Of the BT_ORDER + 1 entries with the new one, the sibling
 * gets half of what it has room for.  0 if neither sibling has room.
 */
static int
leaf_share (struct pc_bnode *x, unsigned i, uint64_t off, void *ptr)
{
  struct pc_bnode *p = x->parent, *s;
  unsigned xi, m;

  if (p == NULL)
    return 0;
  xi = slot_in_parent (x);
  if (xi + 1u < p->n && (s = p->child[xi + 1])->n <= BT_ORDER - 2) {
    m = (BT_ORDER - s->n) / 2;
    if (i <= BT_ORDER - m) {
      /* The new entry stays in x. */
      shift_right (x, s, m);
      node_place (x, i, off, ptr);
    }
    else {
      /* It goes to s, after the m - 1 entries that follow it there. */
      shift_right (x, s, m - 1);
      node_place (s, i - (BT_ORDER - m + 1), off, ptr);
    }
    p->off[xi + 1] = s->off[0];
    return 1;
  }
  if (xi > 0 && (s = p->child[xi - 1])->n <= BT_ORDER - 2) {
    m = (BT_ORDER - s->n) / 2;
    if (i >= m) {
      shift_left (x, s, m);
      node_place (x, i - m, off, ptr);
    }
    else {
      /* It goes to the end of s, after the i entries before it. */
      shift_left (x, s, i);
      node_place (s, s->n, off, ptr);
      shift_left (x, s, m - 1 - i);
    }
    p->off[xi] = x->off[0];
    return 1;
  }
  return 0;
}

/* Put off and ptr (a key in a leaf, a child in an interior node) at
 * slot i of x, splitting x if it is full and linking the new node into
 * the level above.
 */
static void
node_insert (struct pc_tree *t, struct pc_bnode *x, unsigned i,
             uint64_t off, void *ptr)
{
  struct pc_bnode *r;
  unsigned keep, c;

  if (x->n < BT_ORDER) {
    node_place (x, i, off, ptr);
    return;
  }
  /* Appending at the right edge of the tree, or a sequential fill
   * anywhere in it (each key right where the last one ends, before a
   * gap: several streams, or one that meets data cached before), leaves
   * x full and starts a new node: halving would leave every node of the
   * fill half empty.  Other inserts halve: keys that come later go in
   * either half.
   */
  keep = BT_ORDER / 2;
  if (i == BT_ORDER) {
    const struct pc_key *k = ptr;

    if (rightmost (x) ||
        (x->level == 0 &&
         x->off[BT_ORDER - 1] + meta_len (x->meta[BT_ORDER - 1]) == off &&
         (x->next == NULL || x->next->off[0] > off + k->len)))
      keep = BT_ORDER;
  }
  if (keep < BT_ORDER && x->level == 0 && leaf_share (x, i, off, ptr))
    return;
  r = node_get (x->level);
  r->n = BT_ORDER - keep;
  move_entries (r, 0, x, keep, r->n);
  x->n = keep;
  if (x->level > 0)
    for (c = 0; c < r->n; c++)
      r->child[c]->parent = r;
  else {
    r->prev = x;
    r->next = x->next;
    if (x->next)
      x->next->prev = r;
    x->next = r;
  }
  /* The entry goes to r's slot 0 only when r starts empty, so r's first
   * offset is final before r is linked.
   */
  if (i > keep || keep == BT_ORDER)
    node_place (r, i - keep, off, ptr);
  else
    node_place (x, i, off, ptr);
  parent_insert (t, x, r->off[0], r);
}

/* Link k, which overlaps nothing in t, at slot j of leaf x, where it
 * belongs (x NULL: t is empty).
 */
static void
tree_link_at (struct pc_tree *t, struct pc_key *k, struct pc_bnode *x,
              unsigned j)
{
  if (x == NULL) {
    x = node_get (0);
    t->root = x;
    j = 0;
  }
  node_insert (t, x, j, k->off, k);
}

/* Shorten linked key k, keeping its leaf's copy of its length true. */
static void
set_len (struct pc_tree *t, struct pc_key *k, uint32_t len)
{
  unsigned j;
  struct pc_bnode *x = locate (t, k, &j);

  k->len = len;
  x->meta[j] = key_meta (k);
}

/* Link k, which overlaps nothing in t. */
static void
tree_link (struct pc_tree *t, struct pc_key *k)
{
  struct pc_bnode *x = leaf_for (t, k->off);

  tree_link_at (t, k, x, x ? leaf_slot (x, k->off) : 0);
}

/* Drop slot i of node x (entries only; the caller deals with what the
 * slot pointed at).
 */
static void
node_cut (struct pc_bnode *x, unsigned i)
{
  move_entries (x, i, x, i + 1, x->n - i - 1);
  x->n--;
}

/* Move every entry of src to the end of dst, src being dst's right
 * sibling under the same parent, whose separator there is sep.
 */
static void
node_merge (struct pc_bnode *dst, struct pc_bnode *src, uint64_t sep)
{
  unsigned c;

  if (src->level > 0)
    src->off[0] = sep;                /* its first child's lower bound */
  move_entries (dst, dst->n, src, 0, src->n);
  if (src->level > 0)
    for (c = 0; c < src->n; c++)
      src->child[c]->parent = dst;
  dst->n += src->n;
  src->n = 0;
  if (src->level == 0) {
    dst->next = src->next;
    if (src->next)
      src->next->prev = dst;
  }
}

/* x lost an entry: free it if empty, merge it into a sibling if small,
 * and carry on upwards; drop a root left with one child.
 */
static void
rebalance (struct pc_tree *t, struct pc_bnode *x)
{
  for (;;) {
    struct pc_bnode *p = x->parent, *gone;
    unsigned i;

    if (p == NULL) {
      if (x->n == 0) {
        t->root = NULL;
        node_put (x);
        return;
      }
      while (x->level > 0 && x->n == 1) {
        t->root = x->child[0];
        t->root->parent = NULL;
        node_put (x);
        x = t->root;
      }
      return;
    }
    if (x->n >= BT_MIN)
      return;
    i = slot_in_parent (x);
    if (x->n == 0) {
      if (x->level == 0) {
        if (x->prev)
          x->prev->next = x->next;
        if (x->next)
          x->next->prev = x->prev;
      }
      gone = x;
    }
    else if (i > 0 && p->child[i - 1]->n + x->n <= BT_ORDER) {
      node_merge (p->child[i - 1], x, p->off[i]);
      gone = x;
    }
    else if (i + 1u < p->n && p->child[i + 1]->n + x->n <= BT_ORDER) {
      gone = p->child[++i];
      node_merge (x, gone, p->off[i]);
    }
    else
      return;
    node_cut (p, i);
    node_put (gone);
    x = p;
  }
}

void
pc_tree_unlink (struct pc_tree *t, struct pc_key *k)
{
  unsigned j;
  struct pc_bnode *x = locate (t, k, &j);

  node_cut (x, j);
  rebalance (t, x);
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

/* Insert k; or, with tmpl instead, a copy of tmpl, which reuses the key
 * it overwrites exactly and is allocated only when there is none.
 */
static int
tree_insert (struct pc_tree *t, struct pc_key *k, const struct pc_key *tmpl)
{
  const struct pc_key *want = k ? k : tmpl;
  const uint64_t nend = want->off + want->len;
  struct pc_key *e, *next, *spare = NULL;
  struct pc_bnode *ex, *at;
  unsigned ej, at_slot;
  uint64_t eend;
  uint32_t delta;
  int overlapped, same;

  /* An empty key would violate "no zero-length key in the tree"; the
   * leaf has no room for a longer length.
   */
  if (want->len == 0 || want->len > KEY_LEN_MAX) {
    errno = EINVAL;
    return -1;
  }
  e = find_at (t, want->off, want->len, &ex, &ej, &at, &at_slot);
  overlapped = e != NULL;
  /* An overwrite of exactly the same range, the common case of random
   * writes, is known from the leaf alone: it needs no node.
   */
  same = e && ex->off[ej] == want->off &&
    meta_len (ex->meta[ej]) == want->len;
  if (!same && pc_tree_reserve (t) == -1)
    return -1;
  if (tmpl) {
    if ((k = key_alloc_like (tmpl)) == NULL) {
      errno = ENOMEM;
      return -1;
    }
    key_copy (k, tmpl);
  }
  if (same) {
    /* k takes the old key's slot and nothing moves; writing into the
     * old key instead would wait for its line.  A placeholder there is
     * its owner's: marked dead, not freed.
     */
    uint32_t old = ex->meta[ej];

    ex->key[ej] = k;
    ex->meta[ej] = key_meta (k);
    if (old & META_EMPTY)
      e->flags |= PC_KEY_DEAD;
    else
      key_free_meta (e, old);
    return 1;
  }
  if (e == NULL) {
    /* Nothing overlaps k, the common case of a first write: link it
     * where the search ended, without a second descent.
     */
    tree_link_at (t, k, at, at_slot);
    return 0;
  }
  /* Only the first overlapping key can hold k strictly inside; get its
   * clone now so that ENOMEM leaves the tree untouched.
   */
  if (e && !(e->flags & PC_KEY_EMPTY) &&
      e->off < k->off && e->off + e->len > nend) {
    spare = key_alloc_like (e);
    if (spare == NULL) {
      if (tmpl)
        pc_key_free (k);
      errno = ENOMEM;
      return -1;
    }
  }

  for (; e != NULL && e->off < nend; e = next) {
    eend = e->off + e->len;
    next = eend < nend ? pc_tree_next (t, e) : NULL;

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
      /* Front cut.  e is relinked rather than moved in place: its new
       * offset may pass the separator of the next leaf, which is only a
       * lower bound of that leaf's keys.
       */
      pc_tree_unlink (t, e);
      delta = nend - e->off;
      e->off += delta;
      e->len -= delta;
      if (!(e->flags & PC_KF_ZERO))
        e->seg_off += delta;
      tree_link (t, e);
      break;
    }
    else if (eend <= nend) {
      /* Back cut. */
      set_len (t, e, k->off - e->off);
    }
    else {
      /* Split: e keeps its head, the spare takes the tail (and the
       * record's details: both still come from it).
       */
      key_copy (spare, e);
      spare->off = nend;
      spare->len = eend - nend;
      if (!(spare->flags & PC_KF_ZERO))
        spare->seg_off += nend - e->off;
      set_len (t, e, k->off - e->off);
      tree_link (t, spare);
      spare = NULL;
      break;
    }
  }
  pc_key_free (spare);

  tree_link (t, k);
  return overlapped;
}

int
pc_tree_insert (struct pc_tree *t, struct pc_key *k)
{
  return tree_insert (t, k, NULL);
}

int
pc_tree_put (struct pc_tree *t, const struct pc_key *k)
{
  return tree_insert (t, NULL, k);
}

/* pc_tree_check: walk x, whose keys must lie in [lo, hi).  Returns the
 * number of keys under it, or -1.  *leaf is the previous leaf in order.
 */
static long
check_node (const struct pc_bnode *x, const struct pc_bnode *parent,
            uint64_t lo, uint64_t hi, const struct pc_bnode **leaf)
{
  long total = 0, c;
  unsigned i;

#define BAD(...) do { fprintf (stderr, "pc_tree_check: " __VA_ARGS__); \
                      fputc ('\n', stderr); return -1; } while (0)
  if (x->parent != parent)
    BAD ("node %p: parent link %p, not %p", (void *) x, (void *) x->parent,
         (void *) parent);
  if (x->n == 0 || x->n > BT_ORDER)
    BAD ("node %p: %u entries", (void *) x, x->n);
  if (parent && x->level + 1 != parent->level)
    BAD ("node %p: level %u under level %u", (void *) x, x->level,
         parent->level);
  if (x->level == 0) {
    if (x->prev != *leaf)
      BAD ("leaf %p: prev link %p, not %p", (void *) x, (void *) x->prev,
           (void *) *leaf);
    if (*leaf && (*leaf)->next != x)
      BAD ("leaf %p: next link %p, not %p", (void *) *leaf,
           (void *) (*leaf)->next, (void *) x);
    *leaf = x;
    for (i = 0; i < x->n; i++) {
      const struct pc_key *k = x->key[i];

      if (k->off != x->off[i])
        BAD ("key at %lu: leaf says %lu", (unsigned long) k->off,
             (unsigned long) x->off[i]);
      if (key_meta (k) != x->meta[i])
        BAD ("key at %lu+%u: leaf says length %lu, flags %#x",
             (unsigned long) k->off, k->len,
             (unsigned long) meta_len (x->meta[i]),
             (unsigned) (x->meta[i] & ~META_LEN));
      if (k->off < lo || k->off >= hi || k->len == 0)
        BAD ("key at %lu+%u: outside [%lu, %lu)", (unsigned long) k->off,
             k->len, (unsigned long) lo, (unsigned long) hi);
      if (i > 0 && x->key[i - 1]->off + x->key[i - 1]->len > k->off)
        BAD ("key at %lu: overlaps the one before", (unsigned long) k->off);
    }
    return x->n;
  }
  for (i = 0; i < x->n; i++) {
    uint64_t clo = i > 0 ? x->off[i] : lo;
    uint64_t chi = i + 1u < x->n ? x->off[i + 1] : hi;

    if (clo < lo || chi > hi || clo > chi)
      BAD ("node %p: separators out of order", (void *) x);
    if ((c = check_node (x->child[i], x, clo, chi, leaf)) == -1)
      return -1;
    total += c;
  }
  return total;
#undef BAD
}

long
pc_tree_check (const struct pc_tree *t)
{
  const struct pc_bnode *leaf = NULL;
  long n;

  if (t->root == NULL)
    return 0;
  n = check_node (t->root, NULL, 0, UINT64_MAX, &leaf);
  if (n != -1 && leaf->next != NULL) {
    fprintf (stderr, "pc_tree_check: last leaf has a next link\n");
    return -1;
  }
  if (n != -1 && t->root->level > 0 && t->root->n < 2) {
    fprintf (stderr, "pc_tree_check: interior root with one child\n");
    return -1;
  }
  return n;
}
