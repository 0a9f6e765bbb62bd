/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for core/index.c: overlap fix-up, find, stripes, a
 * randomized comparison against a per-byte model, churn through a deep
 * tree, a threaded smoke test, and keys handed between threads.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <inttypes.h>
#include <string.h>
#include <errno.h>
#include <pthread.h>

#include <CUnit/CUnit.h>
#include <CUnit/Basic.h>

#include "index.h"

/* One index with a single tree big enough for every test range. */
static struct pc_index ix;
static struct pc_tree *t;

static int
setup (void)
{
  if (pc_index_init (&ix, UINT64_C (1) << 20, 20, 1) == -1)
    return -1;
  t = &ix.trees[0];
  return 0;
}

static int
teardown (void)
{
  pc_index_destroy (&ix);
  return 0;
}

static struct pc_key *
mk (uint64_t off, uint32_t len, uint32_t seg_off, uint32_t flags)
{
  struct pc_key *k = pc_key_alloc ();

  if (k == NULL) {
    perror ("pc_key_alloc");
    exit (EXIT_FAILURE);
  }
  k->off = off;
  k->len = len;
  k->seg = 7;
  k->seg_off = seg_off;
  k->gen = 3;
  k->flags = flags;
  return k;
}

static struct pc_key *
ins (uint64_t off, uint32_t len, uint32_t seg_off, uint32_t flags)
{
  struct pc_key *k = mk (off, len, seg_off, flags);
  int overlap = pc_tree_find (t, off, len) != NULL;

  CU_ASSERT_EQUAL_FATAL (pc_tree_insert (t, k), overlap);
  return k;
}

/* Empty the shared tree between tests (placeholders are the test's). */
static void
clear (void)
{
  struct pc_key *k;

  while ((k = pc_tree_find (t, 0, UINT64_MAX)) != NULL) {
    pc_tree_unlink (t, k);
    pc_key_free (k);
  }
  CU_ASSERT_EQUAL (pc_tree_check (t), 0);
}

struct exp { uint64_t off; uint32_t len, seg_off, flags; };

static void
dump (struct pc_tree *tr)
{
  struct pc_key *k;

  fprintf (stderr, "  tree (check %ld):", pc_tree_check (tr));
  for (k = pc_tree_find (tr, 0, UINT64_MAX); k; k = pc_tree_next (tr, k))
    fprintf (stderr, " [%" PRIu64 "+%u so=%u f=%#x]",
             k->off, k->len, k->seg_off, k->flags);
  fprintf (stderr, "\n");
}

/* The tree holds exactly e[0..n), in order, and is well formed. */
static int
keys_are (struct pc_tree *tr, const struct exp *e, size_t n)
{
  struct pc_key *k;
  size_t i = 0;

  for (k = pc_tree_find (tr, 0, UINT64_MAX); k; k = pc_tree_next (tr, k), i++) {
    if (i >= n || k->off != e[i].off || k->len != e[i].len ||
        k->seg_off != e[i].seg_off || k->flags != e[i].flags)
      goto bad;
  }
  if (i != n || pc_tree_check (tr) != (long) n)
    goto bad;
  return 1;
 bad:
  dump (tr);
  return 0;
}

#define EXPECT(...)                                                     \
  do {                                                                  \
    static const struct exp e_[] = { __VA_ARGS__ };                     \
    CU_ASSERT (keys_are (t, e_, sizeof e_ / sizeof e_[0]));             \
  } while (0)

#define D PC_KF_DIRTY
#define Z PC_KF_ZERO

static void
test_no_overlap (void)
{
  ins (100, 10, 1000, D);
  ins (200, 10, 2000, 0);
  ins (150, 10, 1500, D);
  /* Touching both neighbours exactly is not an overlap. */
  ins (110, 40, 1100, 0);
  ins (90, 10, 900, 0);
  EXPECT ({ 90, 10, 900, 0 }, { 100, 10, 1000, D }, { 110, 40, 1100, 0 },
          { 150, 10, 1500, D }, { 200, 10, 2000, 0 });
  clear ();
}

static void
test_inside (void)
{
  ins (110, 10, 1000, D);
  ins (130, 5, 2000, D);
  ins (200, 10, 3000, D);
  ins (100, 50, 5000, 0);
  EXPECT ({ 100, 50, 5000, 0 }, { 200, 10, 3000, D });
  /* Inside, sharing the start, and sharing the end. */
  ins (100, 10, 6000, D);
  ins (300, 10, 7000, D);
  ins (100, 50, 8000, 0);
  ins (295, 15, 9000, 0);
  EXPECT ({ 100, 50, 8000, 0 }, { 200, 10, 3000, D }, { 295, 15, 9000, 0 });
  clear ();
}

static void
test_equal (void)
{
  ins (100, 50, 1000, D);
  ins (100, 50, 2000, 0);
  EXPECT ({ 100, 50, 2000, 0 });
  ins (100, 50, 3000, Z);
  EXPECT ({ 100, 50, 3000, Z });
  clear ();
}

/* pc_tree_put indexes a copy of a key the caller keeps: an exact
 * overwrite of a key of the same kind updates that key in place; a
 * fresh range, a placeholder, a key of the other kind or any other
 * overlap gets a key of its own.
 */
static void
test_put (void)
{
  struct pc_key *a = ins (100, 50, 1000, D), *ph, *got;
  struct pc_key_crc c = { .k = { .off = 300, .len = 20, .seg_off = 9000,
                                 .flags = PC_KEY_CRC | D },
                          .data_crc = 0xabcd, .rec_seg_off = 9000,
                          .rec_len = 20 };
  struct pc_key k = { .off = 100, .len = 50, .seg = 7, .seg_off = 2000,
                      .gen = 9 };

  /* The same range: a copy takes the old key's slot (a is freed). */
  CU_ASSERT_EQUAL (pc_tree_put (t, &k), 1);
  got = pc_tree_find (t, 100, 50);
  CU_ASSERT_FATAL (got != NULL && got != &k);
  CU_ASSERT_EQUAL (got->gen, 9);
  CU_ASSERT_EQUAL (got->seg, 7);
  EXPECT ({ 100, 50, 2000, 0 });
  (void) a;

  /* The leaf keeps lengths below 1 GiB. */
  k.len = UINT32_C (1) << 30;
  errno = 0;
  CU_ASSERT_EQUAL (pc_tree_put (t, &k), -1);
  CU_ASSERT_EQUAL (errno, EINVAL);
  k.len = 50;

  /* Not the same range: linked as pc_tree_insert would. */
  k = (struct pc_key) { .off = 120, .len = 50, .seg = 7, .seg_off = 3000,
                        .gen = 3, .flags = D };
  CU_ASSERT_EQUAL (pc_tree_put (t, &k), 1);
  got = pc_tree_find (t, 120, 1);
  CU_ASSERT_FATAL (got != NULL && got != &k);
  EXPECT ({ 100, 20, 2000, 0 }, { 120, 50, 3000, D });

  /* A placeholder is its reader's: marked dead, never reused. */
  ph = mk (200, 10, 0, PC_KEY_EMPTY);
  CU_ASSERT_EQUAL_FATAL (pc_tree_insert (t, ph), 0);
  k = (struct pc_key) { .off = 200, .len = 10, .seg = 7, .seg_off = 4000,
                        .gen = 3, .flags = D };
  CU_ASSERT_EQUAL (pc_tree_put (t, &k), 1);
  CU_ASSERT (ph->flags & PC_KEY_DEAD);
  got = pc_tree_find (t, 200, 10);
  CU_ASSERT_FATAL (got != NULL && got != ph && got != &k);
  pc_key_free (ph);
  EXPECT ({ 100, 20, 2000, 0 }, { 120, 50, 3000, D }, { 200, 10, 4000, D });

  /* A key with a data CRC: a fresh range gets a key of that kind with
   * the check's details; a plain key over it takes a plain key's place.
   */
  CU_ASSERT_EQUAL (pc_tree_put (t, &c.k), 0);
  got = pc_tree_find (t, 300, 20);
  CU_ASSERT_FATAL (got != NULL && (got->flags & PC_KEY_CRC));
  CU_ASSERT_EQUAL (pc_key_crc (got)->data_crc, 0xabcd);
  CU_ASSERT_EQUAL (pc_key_crc (got)->rec_len, 20);
  k = (struct pc_key) { .off = 300, .len = 20, .seg = 7, .seg_off = 5000,
                        .gen = 3, .flags = D };
  CU_ASSERT_EQUAL (pc_tree_put (t, &k), 1);
  got = pc_tree_find (t, 300, 20);
  CU_ASSERT_FATAL (got != NULL && !(got->flags & PC_KEY_CRC));
  EXPECT ({ 100, 20, 2000, 0 }, { 120, 50, 3000, D }, { 200, 10, 4000, D },
          { 300, 20, 5000, D });
  clear ();
}

/* Overwrites of exactly the same range take the old key's place in a
 * tree of many keys, placeholders included, and leave it well linked.
 */
static void
test_equal_many (void)
{
  enum { N = 1000 };
  static struct pc_key *ph[N];
  uint64_t st = 42;
  unsigned i, n;

  for (i = 0; i < N; i++) {
    unsigned j = (i * 617) % N;           /* 617 is prime to N */

    if (j % 10 == 0) {
      ph[j] = ins (j * 4096ULL, 4096, 0, PC_KEY_EMPTY);
    }
    else
      ins (j * 4096ULL, 4096, j, D);
  }
  /* Random overwrites, then one of every placeholder still there. */
  for (n = 0; n < 3 * N + N; n++) {
    if (n < 3 * N) {
      st = st * 6364136223846793005ULL + 1442695040888963407ULL;
      i = (st >> 33) % N;
    }
    else if (ph[i = n - 3 * N] == NULL)
      continue;
    ins (i * 4096ULL, 4096, 100000 + n, 0);
    if (ph[i]) {
      CU_ASSERT (ph[i]->flags & PC_KEY_DEAD);
      pc_key_free (ph[i]);
      ph[i] = NULL;
    }
  }
  CU_ASSERT_EQUAL (pc_tree_check (t), N);
  for (i = 0; i < N; i++) {
    struct pc_key *k = pc_tree_find (t, i * 4096ULL, 1);

    CU_ASSERT_FATAL (k != NULL && k->off == i * 4096ULL && k->len == 4096);
  }
  clear ();
}

static void
test_front_cut (void)
{
  ins (100, 100, 1000, D);
  ins (50, 100, 5000, 0);
  EXPECT ({ 50, 100, 5000, 0 }, { 150, 50, 1050, D });
  /* Same start, shorter new key. */
  ins (150, 10, 6000, 0);
  EXPECT ({ 50, 100, 5000, 0 }, { 150, 10, 6000, 0 }, { 160, 40, 1060, D });
  /* Down to one byte. */
  ins (160, 39, 7000, 0);
  EXPECT ({ 50, 100, 5000, 0 }, { 150, 10, 6000, 0 }, { 160, 39, 7000, 0 },
          { 199, 1, 1099, D });
  clear ();
}

static void
test_back_cut (void)
{
  ins (100, 100, 1000, D);
  ins (150, 100, 5000, 0);
  EXPECT ({ 100, 50, 1000, D }, { 150, 100, 5000, 0 });
  /* Same end. */
  ins (240, 10, 6000, 0);
  EXPECT ({ 100, 50, 1000, D }, { 150, 90, 5000, 0 }, { 240, 10, 6000, 0 });
  /* Leaves one byte. */
  ins (101, 49, 7000, 0);
  EXPECT ({ 100, 1, 1000, D }, { 101, 49, 7000, 0 }, { 150, 90, 5000, 0 },
          { 240, 10, 6000, 0 });
  clear ();
}

static void
test_split (void)
{
  struct pc_key *k, *tail;

  ins (100, 100, 1000, D);
  k = ins (130, 20, 5000, 0);
  EXPECT ({ 100, 30, 1000, D }, { 130, 20, 5000, 0 }, { 150, 50, 1050, D });
  /* The clone carries the rest of the key unchanged. */
  tail = pc_tree_next (t, k);
  CU_ASSERT_PTR_NOT_NULL_FATAL (tail);
  CU_ASSERT_EQUAL (tail->seg, 7);
  CU_ASSERT_EQUAL (tail->gen, 3);
  /* One-byte head and tail. */
  ins (151, 48, 6000, 0);
  EXPECT ({ 100, 30, 1000, D }, { 130, 20, 5000, 0 }, { 150, 1, 1050, D },
          { 151, 48, 6000, 0 }, { 199, 1, 1099, D });
  clear ();
}

static void
test_multi (void)
{
  ins (0, 10, 1000, D);
  ins (10, 10, 2000, D);
  ins (20, 10, 3000, D);
  ins (30, 10, 4000, D);
  ins (45, 10, 5000, D);
  ins (70, 10, 6000, D);
  ins (5, 45, 9000, 0);
  EXPECT ({ 0, 5, 1000, D }, { 5, 45, 9000, 0 }, { 50, 5, 5005, D },
          { 70, 10, 6000, D });
  clear ();
}

static void
test_zero (void)
{
  /* ZERO keys have no payload: cuts and splits leave seg_off alone. */
  ins (100, 100, 777, Z);
  ins (50, 100, 5000, 0);
  EXPECT ({ 50, 100, 5000, 0 }, { 150, 50, 777, Z });
  clear ();

  ins (100, 100, 777, Z | PC_KF_TRIM);
  ins (130, 20, 5000, 0);
  EXPECT ({ 100, 30, 777, Z | PC_KF_TRIM }, { 130, 20, 5000, 0 },
          { 150, 50, 777, Z | PC_KF_TRIM });
  clear ();

  ins (100, 100, 777, Z);
  ins (150, 100, 5000, 0);
  EXPECT ({ 100, 50, 777, Z }, { 150, 100, 5000, 0 });
  clear ();
}

/* A placeholder overlapped in any way is unlinked whole and marked
 * DEAD, never freed (ASan would flag the use below) nor trimmed.
 */
static void
placeholder_case (uint64_t poff, uint32_t plen, uint64_t noff, uint32_t nlen)
{
  struct pc_key *p = mk (poff, plen, 0, PC_KEY_EMPTY);

  CU_ASSERT_EQUAL_FATAL (pc_tree_insert (t, p), 0);
  ins (noff, nlen, 5000, D);
  CU_ASSERT_EQUAL (p->flags, PC_KEY_EMPTY | PC_KEY_DEAD);
  CU_ASSERT_EQUAL (p->off, poff);
  CU_ASSERT_EQUAL (p->len, plen);
  {
    struct exp e = { noff, nlen, 5000, D };
    CU_ASSERT (keys_are (t, &e, 1));
  }
  pc_key_free (p);
  clear ();
}

static void
test_placeholder (void)
{
  struct pc_key *p, *q;

  placeholder_case (110, 10, 100, 50);   /* inside */
  placeholder_case (100, 50, 100, 50);   /* equal */
  placeholder_case (100, 100, 50, 100);  /* new key covers its front */
  placeholder_case (100, 100, 150, 100); /* new key covers its back */
  placeholder_case (100, 100, 130, 20);  /* new key strictly inside */

  /* Mixed with payload keys in one insert. */
  ins (0, 20, 1000, D);
  p = mk (20, 10, 0, PC_KEY_EMPTY);
  CU_ASSERT_EQUAL_FATAL (pc_tree_insert (t, p), 0);
  ins (30, 20, 3000, D);
  q = mk (60, 10, 0, PC_KEY_EMPTY);
  CU_ASSERT_EQUAL_FATAL (pc_tree_insert (t, q), 0);
  ins (10, 30, 9000, 0);
  CU_ASSERT (p->flags & PC_KEY_DEAD);
  CU_ASSERT_FALSE (q->flags & PC_KEY_DEAD);
  EXPECT ({ 0, 10, 1000, D }, { 10, 30, 9000, 0 }, { 40, 10, 3010, D },
          { 60, 10, 0, PC_KEY_EMPTY });
  pc_key_free (p);

  /* A placeholder inserted over a payload key is itself a newer key. */
  p = mk (45, 10, 0, PC_KEY_EMPTY);
  CU_ASSERT_EQUAL_FATAL (pc_tree_insert (t, p), 1);
  EXPECT ({ 0, 10, 1000, D }, { 10, 30, 9000, 0 }, { 40, 5, 3010, D },
          { 45, 10, 0, PC_KEY_EMPTY }, { 60, 10, 0, PC_KEY_EMPTY });

  /* pc_tree_remove marks a placeholder, frees a payload key. */
  pc_tree_remove (t, q);
  CU_ASSERT_EQUAL (q->flags, PC_KEY_EMPTY | PC_KEY_DEAD);
  pc_key_free (q);
  pc_tree_remove (t, pc_tree_find (t, 0, 1));
  /* pc_tree_unlink hands the key back untouched. */
  pc_tree_unlink (t, p);
  CU_ASSERT_EQUAL (p->flags, PC_KEY_EMPTY);
  pc_key_free (p);
  EXPECT ({ 10, 30, 9000, 0 }, { 40, 5, 3010, D });
  clear ();
}

static void
test_find (void)
{
  struct pc_key *a, *b, *c, *k;

  a = ins (100, 50, 0, 0);
  b = ins (200, 50, 0, 0);
  c = ins (300, 10, 0, 0);

  CU_ASSERT_PTR_EQUAL (pc_tree_find (t, 120, 10), a);  /* inside a */
  CU_ASSERT_PTR_EQUAL (pc_tree_find (t, 90, 20), a);   /* reaches into a */
  CU_ASSERT_PTR_EQUAL (pc_tree_find (t, 140, 200), a); /* starts in a */
  CU_ASSERT_PTR_EQUAL (pc_tree_find (t, 149, 1), a);   /* a's last byte */
  CU_ASSERT_PTR_EQUAL (pc_tree_find (t, 100, 1), a);
  CU_ASSERT_PTR_NULL (pc_tree_find (t, 150, 50));      /* exact gap */
  CU_ASSERT_PTR_EQUAL (pc_tree_find (t, 150, 51), b);
  CU_ASSERT_PTR_EQUAL (pc_tree_find (t, 0, 1000), a);
  CU_ASSERT_PTR_NULL (pc_tree_find (t, 0, 100));       /* before all */
  CU_ASSERT_PTR_NULL (pc_tree_find (t, 310, 100));     /* after all */
  CU_ASSERT_PTR_EQUAL (pc_tree_find (t, 309, 1), c);
  CU_ASSERT_PTR_EQUAL (pc_tree_find (t, 260, 1000), c);
  CU_ASSERT_PTR_NULL (pc_tree_find (t, 120, 0));       /* empty range */

  k = pc_tree_find (t, 120, 200);
  CU_ASSERT_PTR_EQUAL (k, a);
  k = pc_tree_next (t, k);
  CU_ASSERT_PTR_EQUAL (k, b);
  k = pc_tree_next (t, k);
  CU_ASSERT_PTR_EQUAL (k, c);
  CU_ASSERT_PTR_NULL (pc_tree_next (t, k));
  clear ();
  CU_ASSERT_PTR_NULL (pc_tree_find (t, 0, UINT64_MAX));
}

static void
test_zero_len (void)
{
  struct pc_key *k = mk (100, 0, 0, 0);

  ins (90, 20, 0, 0);
  errno = 0;
  CU_ASSERT_EQUAL (pc_tree_insert (t, k), -1);
  CU_ASSERT_EQUAL (errno, EINVAL);
  EXPECT ({ 90, 20, 0, 0 });
  pc_key_free (k);
  clear ();
}

static void
test_stripes (void)
{
  struct pc_index s;
  const uint64_t S = 4096;

  /* 10 stripes and a byte: 11, bounded by max_trees. */
  CU_ASSERT_EQUAL_FATAL (pc_index_init (&s, 10 * S + 1, 12, 4), 0);
  CU_ASSERT_EQUAL (s.ntrees, 4);
  CU_ASSERT_EQUAL (s.stripe_shift, 12);
  CU_ASSERT_EQUAL (s.size, 10 * S + 1);
  CU_ASSERT_PTR_EQUAL (pc_index_tree (&s, 0), &s.trees[0]);
  CU_ASSERT_PTR_EQUAL (pc_index_tree (&s, S - 1), &s.trees[0]);
  CU_ASSERT_PTR_EQUAL (pc_index_tree (&s, S), &s.trees[1]);
  CU_ASSERT_PTR_EQUAL (pc_index_tree (&s, 3 * S + 5), &s.trees[3]);
  CU_ASSERT_PTR_EQUAL (pc_index_tree (&s, 4 * S), &s.trees[0]);
  CU_ASSERT_PTR_EQUAL (pc_index_tree (&s, 10 * S), &s.trees[2]);
  CU_ASSERT_EQUAL (pc_index_stripe_end (&s, 0), S);
  CU_ASSERT_EQUAL (pc_index_stripe_end (&s, S - 1), S);
  CU_ASSERT_EQUAL (pc_index_stripe_end (&s, S), 2 * S);
  CU_ASSERT_EQUAL (pc_index_stripe_end (&s, 10 * S), 11 * S);
  /* Leave keys, a placeholder included, for destroy to free (LSan). */
  CU_ASSERT_EQUAL (pc_tree_insert (&s.trees[1], mk (S, 10, 0, 0)), 0);
  CU_ASSERT_EQUAL (pc_tree_insert (&s.trees[1], mk (S + 20, 10, 0, 0)), 0);
  CU_ASSERT_EQUAL (pc_tree_insert (&s.trees[2],
                                   mk (2 * S, 10, 0, PC_KEY_EMPTY)), 0);
  pc_index_destroy (&s);

  CU_ASSERT_EQUAL_FATAL (pc_index_init (&s, 10 * S + 1, 12, 64), 0);
  CU_ASSERT_EQUAL (s.ntrees, 11);
  pc_index_destroy (&s);
  CU_ASSERT_EQUAL_FATAL (pc_index_init (&s, 8 * S, 12, 64), 0);
  CU_ASSERT_EQUAL (s.ntrees, 8);
  pc_index_destroy (&s);
  CU_ASSERT_EQUAL_FATAL (pc_index_init (&s, 0, 12, 64), 0);
  CU_ASSERT_EQUAL (s.ntrees, 1);
  pc_index_destroy (&s);
  CU_ASSERT_EQUAL_FATAL (pc_index_init (&s, 1, 40, 64), 0);
  CU_ASSERT_EQUAL (s.ntrees, 1);
  pc_index_destroy (&s);
  /* Huge size must not overflow the stripe count. */
  CU_ASSERT_EQUAL_FATAL (pc_index_init (&s, UINT64_MAX, 40, 16), 0);
  CU_ASSERT_EQUAL (s.ntrees, 16);
  pc_index_destroy (&s);

  errno = 0;
  CU_ASSERT_EQUAL (pc_index_init (&s, S, 12, 0), -1);
  CU_ASSERT_EQUAL (errno, EINVAL);
  errno = 0;
  CU_ASSERT_EQUAL (pc_index_init (&s, S, 11, 4), -1);
  CU_ASSERT_EQUAL (errno, EINVAL);
  errno = 0;
  CU_ASSERT_EQUAL (pc_index_init (&s, S, 41, 4), -1);
  CU_ASSERT_EQUAL (errno, EINVAL);
}

/* Randomized: compare the tree with a per-byte model. */

#define SPACE 65536u
#define NINSERT 2000
#define NOT_PH ((struct pc_key *) 0)

static uint64_t rng;

static uint32_t
rnd (void)
{
  /* xorshift64*: deterministic across libcs. */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return (uint32_t) ((rng * UINT64_C (2685821657736338717)) >> 32);
}

/* Per-insert record.  Payload key i has seg_off = off + i * SPACE, so
 * any byte's insert id follows from seg_off arithmetic; ZERO keys and
 * placeholders carry their id in seg instead.
 */
struct ins_rec {
  uint64_t off;
  uint32_t len;
  uint32_t flags;
  struct pc_key *ph;            /* placeholder key, or NULL */
};

static struct ins_rec recs[NINSERT];
static int model[SPACE];        /* insert id that last wrote a byte, or -1 */

static int
verify_model (int ninserted)
{
  struct pc_key *k, *prev = NULL;
  uint64_t b, covered = 0;
  size_t n = 0;
  int id, i;

  for (k = pc_tree_find (t, 0, UINT64_MAX); k; prev = k, k = pc_tree_next (t, k)) {
    n++;
    if (k->len == 0 || k->off + k->len > SPACE) {
      fprintf (stderr, "bad key %" PRIu64 "+%u\n", k->off, k->len);
      return 0;
    }
    if (prev && prev->off + prev->len > k->off) {
      fprintf (stderr, "overlap/unsorted at %" PRIu64 "\n", k->off);
      return 0;
    }
    if (k->flags & PC_KEY_DEAD) {
      fprintf (stderr, "dead key in tree at %" PRIu64 "\n", k->off);
      return 0;
    }
    for (b = k->off; b < k->off + k->len; b++) {
      if (k->flags & (PC_KF_ZERO | PC_KEY_EMPTY))
        id = (int) k->seg;
      else
        id = (int) ((k->seg_off + (b - k->off) - b) / SPACE);
      if (id != model[b] || id != (int) k->seg ||
          (k->flags & PC_KF_ZERO && k->seg_off != 0xdeadbeef) ||
          (!(k->flags & (PC_KF_ZERO | PC_KEY_EMPTY)) &&
           (k->seg_off + (b - k->off) - b) % SPACE != 0)) {
        fprintf (stderr, "byte %" PRIu64 ": tree says %d, model %d\n",
                 b, id, model[b]);
        return 0;
      }
    }
    covered += k->len;
  }
  if (pc_tree_check (t) != (long) n) {
    fprintf (stderr, "tree check failed, or disagrees: walked %zu\n", n);
    return 0;
  }
  /* A walk that keeps its place meets the same keys. */
  {
    struct pc_tree_pos at;
    struct pc_key *p = pc_tree_find_pos (t, 0, UINT64_MAX, &at);

    for (k = pc_tree_find (t, 0, UINT64_MAX); k; k = pc_tree_next (t, k)) {
      if (p != k) {
        fprintf (stderr, "walk by place: %p, not the key at %" PRIu64 "\n",
                 (void *) p, k->off);
        return 0;
      }
      p = pc_tree_next_pos (&at);
    }
    if (p != NULL) {
      fprintf (stderr, "walk by place: a key past the last\n");
      return 0;
    }
  }
  for (b = 0; b < SPACE; b++)
    if (model[b] != -1)
      covered--;
  if (covered != 0) {
    fprintf (stderr, "model covers bytes the tree does not\n");
    return 0;
  }
  /* Placeholders: alive in the tree iff the model still shows them. */
  for (i = 0; i < ninserted; i++) {
    if (recs[i].ph && !(recs[i].ph->flags & PC_KEY_DEAD) &&
        model[recs[i].off] != i) {
      fprintf (stderr, "placeholder %d should be dead\n", i);
      return 0;
    }
  }
  return 1;
}

static void
random_run (uint64_t seed)
{
  int overlap;
  int i, bad = 0;
  uint64_t b;

  rng = seed;
  for (b = 0; b < SPACE; b++)
    model[b] = -1;

  for (i = 0; i < NINSERT && !bad; i++) {
    struct pc_key *k = pc_key_alloc ();
    uint32_t r = rnd (), len, maxlen;
    uint64_t off = rnd () % SPACE;

    CU_ASSERT_PTR_NOT_NULL_FATAL (k);
    /* Mostly short keys, sometimes long ones that sweep many. */
    maxlen = (r & 15) == 0 ? 16384 : (r & 3) == 0 ? 64 : 1024;
    if (maxlen > SPACE - off)
      maxlen = SPACE - off;
    len = 1 + rnd () % maxlen;

    k->off = off;
    k->len = len;
    k->seg = (uint32_t) i;
    k->gen = 1;
    switch (rnd () % 8) {
    case 0:
      k->flags = PC_KF_ZERO;
      k->seg_off = 0xdeadbeef;
      break;
    case 1:
      k->flags = PC_KEY_EMPTY;
      k->seg_off = 0;
      break;
    default:
      k->flags = PC_KF_DIRTY;
      k->seg_off = (uint32_t) (off + (uint64_t) i * SPACE);
    }
    recs[i].off = off;
    recs[i].len = len;
    recs[i].flags = k->flags;
    recs[i].ph = k->flags & PC_KEY_EMPTY ? k : NOT_PH;

    /* insert reports whether k covered anything already there. */
    overlap = 0;
    for (b = off; b < off + len; b++)
      overlap |= model[b] >= 0;

    /* Model: a placeholder hit anywhere disappears whole. */
    for (b = off; b < off + len; b++) {
      int old = model[b];
      if (old >= 0 && recs[old].ph) {
        uint64_t c;
        for (c = recs[old].off; c < recs[old].off + recs[old].len; c++)
          if (model[c] == old)
            model[c] = -1;
      }
    }
    for (b = off; b < off + len; b++)
      model[b] = i;

    CU_ASSERT_EQUAL_FATAL (pc_tree_insert (t, k), overlap);
    /* A full check is O(SPACE); every few inserts keeps it quick. */
    if ((i % 8 == 0 || i == NINSERT - 1) && !verify_model (i + 1)) {
      fprintf (stderr, "seed %#" PRIx64 ", insert %d: %" PRIu64 "+%u\n",
               seed, i, off, len);
      bad = 1;
    }
  }
  CU_ASSERT_FALSE (bad);

  /* Free dead placeholders; live ones go with the tree. */
  for (i = 0; i < NINSERT; i++)
    if (recs[i].ph && (recs[i].ph->flags & PC_KEY_DEAD))
      pc_key_free (recs[i].ph);
  memset (recs, 0, sizeof recs);
  clear ();
}

/* Sequential fills, two at once (two clients, or one meeting data
 * cached before): a full node that a fill appends to stays full, so the
 * index takes little more than a key and a share of a full leaf per
 * extent, not a half-empty leaf's.
 */
/* The tree holds n keys, well formed, in less than max bytes a key of
 * keys and nodes.  Empties it.
 */
static void
check_density (uint64_t n, uint64_t max)
{
  uint64_t keys, nodes, bytes = pc_index_usage (&ix, &keys, &nodes);

  CU_ASSERT_EQUAL (keys, n);
  CU_ASSERT_EQUAL (pc_tree_check (t), (long) n);
  CU_ASSERT (bytes < keys * max);
  if (bytes >= keys * max)
    fprintf (stderr, "%.1f bytes a key in %" PRIu64 " nodes\n",
             (double) bytes / keys, nodes);
  clear ();
}

static void
test_fill_density (void)
{
  const uint64_t n = 4096, half = n * 4096;
  uint64_t i;

  for (i = 0; i < n / 2; i++) {
    ins (i * 4096, 4096, 0, D);
    ins (half + i * 4096, 4096, 0, D);
  }
  /* Full leaves: 32 + 512 / 24 = 53.3 bytes a key; half-full: 74.7. */
  check_density (n, 57);
}

/* Random writes: a full leaf hands entries to a sibling with room
 * before it splits, so leaves end about four fifths full, not two
 * thirds.
 */
static void
test_random_density (void)
{
  enum { n = 20000 };
  static uint32_t order[n];
  uint64_t i, st = 7;

  for (i = 0; i < n; i++)
    order[i] = i;
  for (i = n - 1; i > 0; i--) {
    uint64_t j;
    uint32_t tmp;

    st = st * 6364136223846793005ULL + 1442695040888963407ULL;
    j = (st >> 33) % (i + 1);
    tmp = order[i];
    order[i] = order[j];
    order[j] = tmp;
  }
  for (i = 0; i < n; i++)
    ins (order[i] * 4096ULL, 4096, 0, D);
  /* Leaves 4/5 full: 32 + 512 / 19 = 58.9 bytes a key; 2/3: 64. */
  check_density (n, 61);
}

/* pc_tree_prefetch reads the trees and changes nothing: on an empty
 * tree, and on one several levels deep, at offsets before, between and
 * after its keys, more of them than it takes at once.
 */
static void
test_prefetch (void)
{
  struct pc_tree *tv[PC_TREE_PREFETCH_MAX + 8];
  uint64_t off[PC_TREE_PREFETCH_MAX + 8], i, n = 2000, s = 12345;

  for (i = 0; i < PC_TREE_PREFETCH_MAX + 8; i++) {
    tv[i] = t;
    off[i] = i * 8192 + 4096;
  }
  pc_tree_prefetch (tv, off, 4);
  CU_ASSERT_EQUAL (pc_tree_check (t), 0);
  /* Every other 4K slot, in a scrambled order (i * 7919 mod n is a
   * permutation: 7919 is prime and n is not its multiple).
   */
  for (i = 0; i < n; i++)
    ins ((i * 7919 % n) * 8192 + 8192, 4096, 0, D);
  for (i = 0; i < PC_TREE_PREFETCH_MAX + 8; i++) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    off[i] = (s >> 33) % ((n + 2) * 8192);
  }
  off[0] = 0;
  off[1] = (n + 1) * 8192 + 100;
  pc_tree_prefetch (tv, off, PC_TREE_PREFETCH_MAX + 8);
  CU_ASSERT_EQUAL (pc_tree_check (t), (long) n);
  clear ();
}

static void
test_random (void)
{
  random_run (UINT64_C (0x9e3779b97f4a7c15));
  random_run (UINT64_C (0x0123456789abcdef));
  random_run (UINT64_C (42));
}

/* Churn: thousands of 4K and 8K keys at 4K slots, overwritten, cut and
 * removed at random, so that the tree grows several levels deep, then
 * splits, merges and shrinks back to nothing.  The model holds, per
 * slot, the insert that last wrote it; each run of equal ids is exactly
 * one key.
 */
#define CSLOTS 8192
#define CBS 4096u

static int cmodel[CSLOTS];

static long
churn_runs (void)
{
  long runs = 0;
  unsigned i;

  for (i = 0; i < CSLOTS; i++)
    if (cmodel[i] >= 0 && (i == 0 || cmodel[i - 1] != cmodel[i]))
      runs++;
  return runs;
}

static int
churn_agrees (void)
{
  struct pc_key *k;
  long n = 0;

  for (k = pc_tree_first (t); k; k = pc_tree_next (t, k), n++) {
    uint64_t s;

    for (s = k->off / CBS; s < (k->off + k->len) / CBS; s++)
      if (cmodel[s] != (int) k->seg)
        return 0;
  }
  return n == churn_runs () && pc_tree_check (t) == n;
}

static void
test_churn (void)
{
  uint64_t st = 7;
  long most = 0;
  unsigned i, s;
  int bad = 0;

#define NEXT() (st = st * 6364136223846793005ULL + 1442695040888963407ULL, \
                (unsigned) (st >> 33))
  for (s = 0; s < CSLOTS; s++)
    cmodel[s] = -1;
  for (i = 0; i < 60000 && !bad; i++) {
    unsigned r = NEXT (), slot = NEXT () % CSLOTS;

    if (i < 40000 && r % 4 != 0) {
      unsigned n = (r & 16) && slot + 1 < CSLOTS ? 2 : 1;
      struct pc_key *k = mk ((uint64_t) slot * CBS, n * CBS, 0, 0);

      k->seg = i;
      CU_ASSERT_NOT_EQUAL_FATAL (pc_tree_insert (t, k), -1);
      for (s = slot; s < slot + n; s++)
        cmodel[s] = (int) i;
    }
    else {
      /* Remove whatever covers the slot, most of all later on. */
      struct pc_key *k = pc_tree_find (t, (uint64_t) slot * CBS, CBS);

      if (k) {
        for (s = k->off / CBS; s < (k->off + k->len) / CBS; s++)
          cmodel[s] = -1;
        pc_tree_remove (t, k);
      }
    }
    if (i % 500 == 0 || i == 59999) {
      long n = pc_tree_check (t);

      if (n > most)
        most = n;
      bad = !churn_agrees ();
    }
  }
  CU_ASSERT_FALSE (bad);
  /* Deep enough to have split and merged interior nodes. */
  CU_ASSERT (most > 3000);
  /* Down to nothing, checking the shape as it shrinks. */
  for (s = 0; s < CSLOTS && !bad; s++) {
    struct pc_key *k = pc_tree_find (t, (uint64_t) ((s * 5407) % CSLOTS) * CBS,
                                     CBS);

    if (k) {
      unsigned x;

      for (x = k->off / CBS; x < (k->off + k->len) / CBS; x++)
        cmodel[x] = -1;
      pc_tree_remove (t, k);
    }
    if (s % 64 == 0)
      bad = !churn_agrees ();
  }
  CU_ASSERT_FALSE (bad);
  CU_ASSERT_PTR_NULL (pc_tree_first (t));
  CU_ASSERT_EQUAL (pc_tree_check (t), 0);
#undef NEXT
}

/* A sequential fill grows the tree at its right edge, where nodes are
 * left full instead of split in half; it must stay well formed there,
 * and as keys go from the front.
 */
static void
test_sequential (void)
{
  enum { N = 5000 };
  unsigned i;

  for (i = 0; i < N; i++)
    ins (i * 4096ULL, 4096, i, 0);
  CU_ASSERT_EQUAL_FATAL (pc_tree_check (t), N);
  for (i = 0; i < N; i++) {
    struct pc_key *k = pc_tree_find (t, i * 4096ULL + 100, 1);

    CU_ASSERT_FATAL (k != NULL && k->off == i * 4096ULL && k->seg_off == i);
  }
  for (i = 0; i < N; i++) {
    pc_tree_remove (t, pc_tree_first (t));
    if (i % 97 == 0)
      CU_ASSERT_EQUAL_FATAL (pc_tree_check (t), N - i - 1);
  }
  CU_ASSERT_EQUAL (pc_tree_check (t), 0);
}

/* Threads: each owns a stripe; write under wrlock, read under rdlock. */

#define TSTRIPE_SHIFT 12
#define TITER 5000

static struct pc_index tix;

struct thr {
  pthread_t th;
  unsigned stripe;
  unsigned errors;
};

static void *
thr_main (void *arg)
{
  struct thr *th = arg;
  uint64_t base = (uint64_t) th->stripe << TSTRIPE_SHIFT;
  uint64_t st = 0x12345 + th->stripe;
  int i;

  for (i = 0; i < TITER; i++) {
    struct pc_tree *tr = pc_index_tree (&tix, base);
    struct pc_key *k, *f;
    uint64_t off, len;

    st = st * 6364136223846793005ULL + 1442695040888963407ULL;
    off = (st >> 33) % (1u << TSTRIPE_SHIFT);
    len = 1 + (st >> 20) % 256;
    if (off + len > (1u << TSTRIPE_SHIFT))
      len = (1u << TSTRIPE_SHIFT) - off;

    k = pc_key_alloc ();
    if (k == NULL) {
      th->errors++;
      break;
    }
    k->off = base + off;
    k->len = (uint32_t) len;
    k->seg_off = (uint32_t) i;
    pthread_rwlock_wrlock (&tr->lock);
    if (pc_tree_insert (tr, k) == -1)
      th->errors++;
    pthread_rwlock_unlock (&tr->lock);

    pthread_rwlock_rdlock (&tr->lock);
    f = pc_tree_find (tr, base + off, len);
    /* Nobody else writes this stripe: k is still the whole answer. */
    if (f != k || f->seg_off != (uint32_t) i)
      th->errors++;
    for (f = pc_tree_find (tr, base, 1u << TSTRIPE_SHIFT); f;
         f = pc_tree_next (tr, f)) {
      if (f->off < base || f->off + f->len > base + (1u << TSTRIPE_SHIFT))
        th->errors++;
    }
    pthread_rwlock_unlock (&tr->lock);
  }
  return NULL;
}

static void
test_threads (void)
{
  struct thr th[2];
  unsigned i;

  CU_ASSERT_EQUAL_FATAL (pc_index_init (&tix, 2u << TSTRIPE_SHIFT,
                                        TSTRIPE_SHIFT, 8), 0);
  CU_ASSERT_EQUAL_FATAL (tix.ntrees, 2);
  for (i = 0; i < 2; i++) {
    th[i].stripe = i;
    th[i].errors = 0;
    CU_ASSERT_EQUAL_FATAL (pthread_create (&th[i].th, NULL, thr_main,
                                           &th[i]), 0);
  }
  for (i = 0; i < 2; i++) {
    pthread_join (th[i].th, NULL);
    CU_ASSERT_EQUAL (th[i].errors, 0);
  }
  CU_ASSERT (pc_tree_check (&tix.trees[0]) > 0);
  CU_ASSERT (pc_tree_check (&tix.trees[1]) > 0);
  pc_index_destroy (&tix);
}

/* Keys one thread takes and another frees travel back through the
 * shared list: after two such round trips, a third taker gets the same
 * keys again (but for the rest of the first chunk), each one once, each
 * zeroed.  A batch dropped on the way would show as fresh addresses.
 */
#define XKEYS 10000

struct xfer {
  struct pc_key **v;
  int ok;
};

static void *
xfer_take (void *arg)
{
  struct xfer *x = arg;
  static const struct pc_key zero;
  unsigned i;

  x->ok = 1;
  for (i = 0; i < XKEYS; i++) {
    x->v[i] = pc_key_alloc ();
    if (x->v[i] == NULL || memcmp (x->v[i], &zero, sizeof zero) != 0)
      x->ok = 0;
    else
      x->v[i]->off = i + 1;        /* not zero when taken again */
  }
  return NULL;
}

static void *
xfer_free (void *arg)
{
  struct xfer *x = arg;
  unsigned i;

  for (i = 0; i < XKEYS; i++)
    pc_key_free (x->v[i]);
  return NULL;
}

static int
cmp_ptr (const void *a, const void *b)
{
  uintptr_t x = (uintptr_t) *(struct pc_key *const *) a;
  uintptr_t y = (uintptr_t) *(struct pc_key *const *) b;

  return x < y ? -1 : x > y;
}

static void
xfer_round (struct pc_key **v, int *ok)
{
  struct xfer x = { .v = v };
  pthread_t th;

  CU_ASSERT_EQUAL_FATAL (pthread_create (&th, NULL, xfer_take, &x), 0);
  pthread_join (th, NULL);
  *ok = x.ok;
  memcpy (v + XKEYS, v, XKEYS * sizeof *v);   /* what was handed out */
  CU_ASSERT_EQUAL_FATAL (pthread_create (&th, NULL, xfer_free, &x), 0);
  pthread_join (th, NULL);
}

static void
test_key_handover (void)
{
  struct pc_key **first = calloc (2 * XKEYS, sizeof *first);
  struct pc_key **v = calloc (2 * XKEYS, sizeof *v);
  unsigned i, fresh = 0;
  int ok;

  CU_ASSERT_FATAL (first != NULL && v != NULL);
  xfer_round (first, &ok);
  CU_ASSERT (ok);
  qsort (first + XKEYS, XKEYS, sizeof *first, cmp_ptr);
  xfer_round (v, &ok);
  CU_ASSERT (ok);
  xfer_round (v, &ok);
  CU_ASSERT (ok);
  qsort (v + XKEYS, XKEYS, sizeof *v, cmp_ptr);
  for (i = 0; i < XKEYS; i++) {
    if (i > 0 && v[XKEYS + i] == v[XKEYS + i - 1])
      CU_FAIL ("a key handed out twice at once");
    if (!bsearch (&v[XKEYS + i], first + XKEYS, XKEYS, sizeof *first,
                  cmp_ptr))
      fresh++;
  }
  /* Only what the first chunk had beyond the first XKEYS may be new. */
  CU_ASSERT (fresh < XKEYS / 4);
  free (first);
  free (v);
}

int
main (void)
{
  CU_pSuite s;
  unsigned failures;

  if (CU_initialize_registry () != CUE_SUCCESS)
    return EXIT_FAILURE;
  s = CU_add_suite ("index", setup, teardown);
  if (s == NULL ||
      !CU_add_test (s, "no overlap", test_no_overlap) ||
      !CU_add_test (s, "existing inside new", test_inside) ||
      !CU_add_test (s, "equal ranges", test_equal) ||
      !CU_add_test (s, "equal ranges, many keys", test_equal_many) ||
      !CU_add_test (s, "put replaces an equal key", test_put) ||
      !CU_add_test (s, "front cut", test_front_cut) ||
      !CU_add_test (s, "back cut", test_back_cut) ||
      !CU_add_test (s, "split", test_split) ||
      !CU_add_test (s, "several keys at once", test_multi) ||
      !CU_add_test (s, "zero keys keep seg_off", test_zero) ||
      !CU_add_test (s, "placeholders", test_placeholder) ||
      !CU_add_test (s, "find", test_find) ||
      !CU_add_test (s, "zero-length insert", test_zero_len) ||
      !CU_add_test (s, "stripes", test_stripes) ||
      !CU_add_test (s, "randomized vs model", test_random) ||
      !CU_add_test (s, "churn through a deep tree", test_churn) ||
      !CU_add_test (s, "sequential fill", test_sequential) ||
      !CU_add_test (s, "two sequential fills keep nodes full",
                    test_fill_density) ||
      !CU_add_test (s, "random inserts fill leaves", test_random_density) ||
      !CU_add_test (s, "prefetch changes nothing", test_prefetch) ||
      !CU_add_test (s, "threads", test_threads) ||
      !CU_add_test (s, "keys handed between threads", test_key_handover)) {
    CU_cleanup_registry ();
    return EXIT_FAILURE;
  }
  CU_basic_set_mode (CU_BRM_VERBOSE);
  if (CU_basic_run_tests () != CUE_SUCCESS) {
    CU_cleanup_registry ();
    return EXIT_FAILURE;
  }
  failures = CU_get_number_of_failures ();
  CU_cleanup_registry ();
  return failures > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
