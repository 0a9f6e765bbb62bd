/* SPDX-License-Identifier: BSD-3-Clause */
/* Striped multi-tree index: which backing ranges the cache holds.
 *
 * The backing address space is cut into stripes (1 << stripe_shift
 * bytes).  Stripe s belongs to subtree s % ntrees; each subtree is a
 * B+tree ordered by offset, guarded by its own rwlock.  Keys in a
 * subtree never overlap and never cross a stripe boundary, so one
 * request piece (cut at stripe boundaries by the caller) takes exactly
 * one lock.
 *
 * A B+tree rather than a red-black tree: nodes pack their offsets in a
 * few cache lines, so a lookup among a thousand keys touches three
 * nodes, the upper two shared by every lookup in the subtree and so
 * mostly cached, where a red-black tree misses the cache at each of ten
 * levels.
 */
#ifndef PC_INDEX_H
#define PC_INDEX_H

#include <stdint.h>
#include <stddef.h>
#include <pthread.h>

#include "format.h"

/* RAM-only flags, above the PC_KF_* media flags. */
#define PC_KEY_EMPTY   (1u << 8)   /* placeholder for a miss in flight */
#define PC_KEY_DEAD    (1u << 9)   /* placeholder removed by a newer key */
#define PC_KEY_WRITER  (1u << 10)  /* placeholder of a write to the backend */
#define PC_KEY_CRC     (1u << 11)  /* a struct pc_key_crc (never cleared) */
#define PC_KEY_BADCRC  (1u << 12)  /* its payload failed the check (dirty) */

struct pc_bnode;                        /* a B+tree node, private to index.c */

struct pc_key {
  uint64_t off;
  uint32_t len;
  uint32_t seg;
  uint32_t seg_off;
  uint32_t gen;
  uint32_t flags;
};

/* A key of a cache with data checksums.  Later writes trim and split
 * keys, but the CRC covers the payload of the whole record a key came
 * from: the key keeps where that payload lies in its segment, which
 * trims and splits leave alone.  Only these keys pay for it: a plain
 * key stays 32 bytes, one of these takes 64 (the key pools hand out
 * powers of two).
 */
struct pc_key_crc {
  struct pc_key k;
  uint32_t data_crc;                    /* of the record's payload */
  uint32_t rec_seg_off, rec_len;        /* where that payload is */
};

static inline struct pc_key_crc *
pc_key_crc (struct pc_key *k)
{
  return (struct pc_key_crc *) k;
}

/* A zeroed pc_tree is an empty one (the index initialises the lock). */
struct pc_tree {
  pthread_rwlock_t lock;
  struct pc_bnode *root;
  /* Writers' placeholders that a newer key unlinked while their backend
   * write was still in flight (cache_write.c): until those writes end,
   * what the backend returns may be overwritten by them, so no clean
   * data is cached in this tree.  Guarded by the write lock.
   */
  unsigned orphans;
} __attribute__ ((aligned (64)));       /* no line shared between trees */

struct pc_index {
  uint64_t size;
  unsigned stripe_shift;
  unsigned ntrees;
  struct pc_tree *trees;
};

int pc_index_init (struct pc_index *ix, uint64_t size, unsigned stripe_shift,
                   unsigned max_trees);
void pc_index_destroy (struct pc_index *ix);

static inline struct pc_tree *
pc_index_tree (struct pc_index *ix, uint64_t off)
{
  return &ix->trees[(off >> ix->stripe_shift) % ix->ntrees];
}

/* First byte of the stripe after the one holding off. */
static inline uint64_t
pc_index_stripe_end (const struct pc_index *ix, uint64_t off)
{
  return ((off >> ix->stripe_shift) + 1) << ix->stripe_shift;
}

/* The index key for a log record.  A pc_key_crc also takes what it
 * needs to check the record's payload.
 */
static inline void
pc_key_from_rec (struct pc_key *k, const struct pc_key_rec *r)
{
  k->off = r->off;
  k->len = r->len;
  k->seg = r->seg;
  k->seg_off = r->seg_off;
  k->gen = r->gen;
  k->flags = r->flags | (k->flags & PC_KEY_CRC);
  if (k->flags & PC_KEY_CRC) {
    pc_key_crc (k)->data_crc = r->data_crc;
    pc_key_crc (k)->rec_seg_off = r->seg_off;
    pc_key_crc (k)->rec_len = r->len;
  }
}

/* A zeroed key; pc_key_alloc_crc's is a pc_key_crc, flagged PC_KEY_CRC.
 * pc_key_free frees either.
 */
struct pc_key *pc_key_alloc (void);
struct pc_key *pc_key_alloc_crc (void);
void pc_key_free (struct pc_key *k);

/* Make sure the calling thread holds the nodes that one pc_tree_insert
 * into t may need.  Unlinking never allocates, so after this succeeds,
 * unlinks followed by one insert into t cannot fail for want of memory.
 * Returns 0, or -1 with errno ENOMEM.
 */
int pc_tree_reserve (const struct pc_tree *t);

/* Caller holds the tree's write lock.  Resolve every overlap with k,
 * newest wins, then link k (the tree owns it from then on):
 *  - an existing key inside k is removed;
 *  - one that starts inside k and ends after it loses its front (a
 *    payload key advances seg_off by the same amount);
 *  - one that starts before k and ends inside it loses its back;
 *  - one that holds k strictly inside is split: it keeps its head and a
 *    clone holds the tail after k.
 * A placeholder (PC_KEY_EMPTY) that overlaps k in any way is unlinked
 * whole and marked PC_KEY_DEAD instead of freed: its owner frees it.
 * Returns 1 if k overlapped keys already there, 0 if not, or -1
 * (ENOMEM, or EINVAL for an empty key or one of 1 GiB or more) before
 * anything changed.
 */
int pc_tree_insert (struct pc_tree *t, struct pc_key *k);
/* pc_tree_insert of a copy of k, which stays the caller's (a pc_key, or
 * a pc_key_crc if flagged PC_KEY_CRC; it may live on the stack).  Where
 * k has exactly the range of a key already there, as pc_tree_insert
 * too, the copy takes that key's slot and the old key is freed unread
 * (a placeholder is marked dead): the leaf tells its range and kind, so
 * the write reads no key at all and needs no node.
 */
int pc_tree_put (struct pc_tree *t, const struct pc_key *k);

/* Caller holds the lock.  First key whose range overlaps [off, off+len),
 * or NULL.  pc_tree_next walks on in offset order.
 */
struct pc_key *pc_tree_find (struct pc_tree *t, uint64_t off, uint64_t len);
struct pc_key *pc_tree_next (struct pc_tree *t, struct pc_key *k);
struct pc_key *pc_tree_first (struct pc_tree *t);

/* Where a key lies in its tree.  pc_tree_next finds a key's place by a
 * descent from the root; a walk that keeps its place steps on without
 * one.  A place is only good until the tree next changes.
 */
struct pc_tree_pos {
  struct pc_bnode *leaf;
  unsigned slot;
};

/* pc_tree_find, also setting *pos to the place of the key it returns. */
struct pc_key *pc_tree_find_pos (struct pc_tree *t, uint64_t off,
                                 uint64_t len, struct pc_tree_pos *pos);
/* The key after the one at *pos, or NULL; *pos moves to it. */
struct pc_key *pc_tree_next_pos (struct pc_tree_pos *pos);

/* Warm the CPU caches for inserts or lookups at off[i] in t[i], for
 * i < n (at most PC_TREE_PREFETCH_MAX): the descents go level by level,
 * every node of a level asked for before any is read, so that their
 * cache misses overlap where one descent after another would wait for
 * each in turn.  Changes nothing; the caller holds the trees' locks (or
 * is alone, as replay is).
 */
#define PC_TREE_PREFETCH_MAX 32
void pc_tree_prefetch (struct pc_tree *const *t, const uint64_t *off,
                       unsigned n);

/* Caller holds the write lock.  Unlink k; free it unless it is a
 * placeholder, which is marked PC_KEY_DEAD for its owner to free.
 */
void pc_tree_remove (struct pc_tree *t, struct pc_key *k);

/* Caller holds the write lock.  Unlink k and hand it back to the caller
 * without freeing or marking it.
 */
void pc_tree_unlink (struct pc_tree *t, struct pc_key *k);

/* Keys (placeholders too) and B+tree nodes in the index, each tree
 * read-locked in turn.  Returns the bytes they take (a pc_key_crc
 * counts for what it takes).
 */
uint64_t pc_index_usage (struct pc_index *ix, uint64_t *keys,
                         uint64_t *nodes);

/* Check every structural rule of t (order, links, separators, no empty
 * node); for tests.  Returns the number of keys, or -1 after printing
 * the first broken rule to stderr.
 */
long pc_tree_check (const struct pc_tree *t);

#endif /* PC_INDEX_H */
