/* SPDX-License-Identifier: BSD-3-Clause */
/* The mode lock (shard.h): readers count themselves in on their thread
 * shards, a writer waits for every count to fall to zero, and neither
 * side is ever in while the other is.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include <CUnit/CUnit.h>

#include "shard.h"
#include "testutil.h"

/* More readers than shards to own, so that shared shards count too. */
#define READERS (PC_NSHARDS_OWN + 16)
#define WRITES 200

struct race {
  struct pc_brlock b;
  _Atomic unsigned inside;              /* readers between lock and unlock */
  _Atomic int writing, done;
  _Atomic unsigned reads, reads_while, bad;
};

static void *
reader_main (void *arg)
{
  struct race *r = arg;
  unsigned n = 0;

  while (!atomic_load (&r->done) || n < 100) {
    pc_brlock_rdlock (&r->b);
    atomic_fetch_add (&r->inside, 1);
    if (atomic_load (&r->writing))
      atomic_fetch_add (&r->bad, 1);
    atomic_fetch_sub (&r->inside, 1);
    pc_brlock_rdunlock (&r->b);
    n++;
  }
  atomic_fetch_add (&r->reads, n);
  return NULL;
}

static void *
writer_main (void *arg)
{
  struct race *r = arg;
  unsigned i, j;

  for (i = 0; i < WRITES; i++) {
    pc_brlock_wrlock (&r->b);
    atomic_store (&r->writing, 1);
    /* Long enough that a reader let in by mistake is seen. */
    for (j = 0; j < 200; j++)
      if (atomic_load (&r->inside) != 0)
        atomic_fetch_add (&r->bad, 1);
    atomic_store (&r->writing, 0);
    pc_brlock_wrunlock (&r->b);
    /* Readers got in between two writers. */
    atomic_fetch_add (&r->reads_while, 1);
    sched_yield ();
  }
  atomic_store (&r->done, 1);
  return NULL;
}

static void
race (int asym)
{
  static struct race r;
  pthread_t rd[READERS], wr;
  int saved, i;

  CU_ASSERT_EQUAL_FATAL (pc_brlock_init (&r.b), 0);
  saved = pc_brlock_asym;
  pc_brlock_asym = asym && saved;
  atomic_store (&r.done, 0);
  atomic_store (&r.bad, 0);
  atomic_store (&r.reads, 0);
  atomic_store (&r.reads_while, 0);
  for (i = 0; i < READERS; i++)
    CU_ASSERT_EQUAL_FATAL (pthread_create (&rd[i], NULL, reader_main, &r), 0);
  CU_ASSERT_EQUAL_FATAL (pthread_create (&wr, NULL, writer_main, &r), 0);
  pthread_join (wr, NULL);
  for (i = 0; i < READERS; i++)
    pthread_join (rd[i], NULL);
  pc_brlock_asym = saved;
  pc_brlock_destroy (&r.b);
  CU_ASSERT_EQUAL (atomic_load (&r.bad), 0);
  CU_ASSERT_EQUAL (atomic_load (&r.reads_while), WRITES);
  CU_ASSERT (atomic_load (&r.reads) >= 100u * READERS);
}

/* As the cache uses it: readers' barrier made by the writer's
 * membarrier, where the kernel has it.
 */
static void
test_race (void)
{
  race (1);
}

/* Both sides with full barriers of their own. */
static void
test_race_fenced (void)
{
  race (0);
}

struct one {
  struct pc_brlock *b;
  _Atomic int in;
};

static void *
take_write (void *arg)
{
  struct one *o = arg;

  pc_brlock_wrlock (o->b);
  atomic_store (&o->in, 1);
  pc_brlock_wrunlock (o->b);
  return NULL;
}

static void *
take_read (void *arg)
{
  struct one *o = arg;

  pc_brlock_rdlock (o->b);
  atomic_store (&o->in, 1);
  pc_brlock_rdunlock (o->b);
  return NULL;
}

/* A writer that finds a reader in sleeps until it leaves, and a reader
 * that finds a writer in sleeps until it is done.
 */
static void
test_waits (void)
{
  static struct pc_brlock b;
  struct one o = { .b = &b };
  pthread_t t;
  int i;

  CU_ASSERT_EQUAL_FATAL (pc_brlock_init (&b), 0);
  pc_brlock_rdlock (&b);
  CU_ASSERT_EQUAL_FATAL (pthread_create (&t, NULL, take_write, &o), 0);
  while (!atomic_load (&b.writer))
    sched_yield ();
  for (i = 0; i < 1000; i++)
    sched_yield ();
  CU_ASSERT_EQUAL (atomic_load (&o.in), 0);
  pc_brlock_rdunlock (&b);
  pthread_join (t, NULL);
  CU_ASSERT_EQUAL (atomic_load (&o.in), 1);

  atomic_store (&o.in, 0);
  pc_brlock_wrlock (&b);
  CU_ASSERT_EQUAL_FATAL (pthread_create (&t, NULL, take_read, &o), 0);
  for (i = 0; i < 1000; i++)
    sched_yield ();
  CU_ASSERT_EQUAL (atomic_load (&o.in), 0);
  pc_brlock_wrunlock (&b);
  pthread_join (t, NULL);
  CU_ASSERT_EQUAL (atomic_load (&o.in), 1);
  pc_brlock_destroy (&b);
}

static const struct tu_case cases[] = {
  { "readers and a writer never in at once", test_race },
  { "the same, with full barriers", test_race_fenced },
  { "each side waits for the other", test_waits },
  { NULL, NULL },
};

int
main (void)
{
  return tu_main ("shard", cases, 120, 0);
}
