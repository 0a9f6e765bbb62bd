/* SPDX-License-Identifier: BSD-3-Clause */
/* Fixed-size objects from huge-page chunks (see slab.h). */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include "slab.h"
#include "util.h"

#define CHUNK (UINT64_C (2) << 20)
#define CACHE_MAX 128                   /* spares a thread keeps per pool */
#define BATCH 32                        /* spares handed over at once */

/* What a free object holds instead of its contents. */
struct link {
  void *next;                           /* in its chain */
  void *batch;                          /* a chain's first object: next chain */
};

static _Atomic uint64_t mapped;

struct cache {
  struct pc_slab *pool;
  unsigned n;
  void *chain;                          /* taken from the pool */
  void *v[CACHE_MAX];
};

static __thread struct cache tc[PC_SLAB_POOLS];
static __thread int registered;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static struct link
link_of (const void *p)
{
  struct link l;

  memcpy (&l, p, sizeof l);
  return l;
}

static void
set_link (void *p, void *next, void *batch)
{
  struct link l = { .next = next, .batch = batch };

  memcpy (p, &l, sizeof l);
}

/* Push a chain, first object head, onto the pool. */
static void
push_chain (struct pc_slab *s, void *head)
{
  pthread_mutex_lock (&s->lock);
  set_link (head, link_of (head).next, s->batches);
  s->batches = head;
  s->nbatches++;
  pthread_mutex_unlock (&s->lock);
}

/* Hand v[0..n) to the pool as one chain. */
static void
give (struct pc_slab *s, void **v, unsigned n)
{
  unsigned i;

  if (n == 0)
    return;
  for (i = 0; i + 1 < n; i++)
    set_link (v[i], v[i + 1], NULL);
  set_link (v[n - 1], NULL, NULL);
  push_chain (s, v[0]);
}

/* A 2 MiB chunk at a 2 MiB boundary, so that one huge page can back it:
 * map twice the size and trim.
 */
static void *
map_chunk (void)
{
  uint8_t *p = mmap (NULL, 2 * CHUNK, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint64_t lead;

  if (p == MAP_FAILED)
    return NULL;
  lead = (CHUNK - (uintptr_t) p % CHUNK) % CHUNK;
  if (lead)
    munmap (p, lead);
  munmap (p + lead + CHUNK, CHUNK - lead);
  p += lead;
  /* Only advice: without transparent huge pages, 4K pages serve. */
  madvise (p, CHUNK, MADV_HUGEPAGE);
  atomic_fetch_add (&mapped, CHUNK);
  return p;
}

/* Cut chunk m into chains of s's objects, linked through their batch
 * links, the last one's to NULL.  Returns the first chain; *last gets
 * the last one's head and *n their number.  Writes to every object, so
 * that the chunk's pages are faulted in here.
 */
static void *
carve (const struct pc_slab *s, uint8_t *m, void **last, unsigned *n)
{
  uint64_t objs = CHUNK / s->size, j;
  void *first = NULL;

  *last = NULL;
  *n = 0;
  for (j = objs; j > 0; j--) {
    uint8_t *p = m + (j - 1) * s->size;
    void *next = j % BATCH ? p + s->size : NULL;

    if ((j - 1) % BATCH == 0) {
      set_link (p, next, first);
      first = p;
      if (*last == NULL)
        *last = p;
      (*n)++;
    }
    else
      set_link (p, next, NULL);
  }
  return first;
}

/* Chains of a pool when it has half a chunk of them left. */
static unsigned
low_water (const struct pc_slab *s)
{
  return CHUNK / s->size / BATCH / 2;
}

/* The helper: which pools want a chunk, and its thread. */
static struct {
  pthread_mutex_t lock;
  pthread_cond_t cv;                    /* a pool asks, or stop */
  pthread_cond_t idle;                  /* nothing left to carve */
  unsigned users;
  int stop, busy;
  unsigned want;                        /* bit s->id: carve for pools[id] */
  struct pc_slab *pools[PC_SLAB_POOLS];
  pthread_t thread;
  uint64_t ahead, inline_;
} helper = {
  .lock = PTHREAD_MUTEX_INITIALIZER,
  .cv = PTHREAD_COND_INITIALIZER,
  .idle = PTHREAD_COND_INITIALIZER,
};
static _Atomic int helper_on;

/* Carve a chunk for s on the helper's thread and hand its chains over. */
static void
carve_ahead (struct pc_slab *s)
{
  uint8_t *m = map_chunk ();
  void *first = NULL, *last = NULL;
  unsigned n = 0;

  if (m)
    first = carve (s, m, &last, &n);
  pthread_mutex_lock (&s->lock);
  if (first) {
    set_link (last, link_of (last).next, s->batches);
    s->batches = first;
    s->nbatches += n;
  }
  /* Out of memory: the next allocation that finds the pool low asks
   * again, and one that finds it empty maps for itself.
   */
  s->asked = 0;
  pthread_mutex_unlock (&s->lock);
  if (first) {
    pthread_mutex_lock (&helper.lock);
    helper.ahead++;
    pthread_mutex_unlock (&helper.lock);
  }
}

static void *
helper_main (void *arg)
{
  (void) arg;
  pc_thread_background ("pcache-slab");
  pthread_mutex_lock (&helper.lock);
  while (!helper.stop) {
    struct pc_slab *pools[PC_SLAB_POOLS];
    unsigned want = helper.want, i;

    if (want == 0) {
      pthread_cond_broadcast (&helper.idle);
      pthread_cond_wait (&helper.cv, &helper.lock);
      continue;
    }
    helper.want = 0;
    helper.busy = 1;
    memcpy (pools, helper.pools, sizeof pools);
    pthread_mutex_unlock (&helper.lock);
    for (i = 0; i < PC_SLAB_POOLS; i++)
      if (want & (1u << i))
        carve_ahead (pools[i]);
    pthread_mutex_lock (&helper.lock);
    helper.busy = 0;
  }
  pthread_cond_broadcast (&helper.idle);
  pthread_mutex_unlock (&helper.lock);
  return NULL;
}

/* Ask the helper for a chunk for s (s->asked was set for it). */
static void
ask_helper (struct pc_slab *s)
{
  pthread_mutex_lock (&helper.lock);
  helper.pools[s->id] = s;
  helper.want |= 1u << s->id;
  pthread_cond_signal (&helper.cv);
  pthread_mutex_unlock (&helper.lock);
}

int
pc_slab_start (void)
{
  int e = 0;

  pthread_mutex_lock (&helper.lock);
  if (helper.users == 0) {
    helper.stop = 0;
    e = pthread_create (&helper.thread, NULL, helper_main, NULL);
  }
  if (e == 0) {
    helper.users++;
    atomic_store (&helper_on, 1);
  }
  pthread_mutex_unlock (&helper.lock);
  return e;
}

void
pc_slab_stop (void)
{
  pthread_mutex_lock (&helper.lock);
  if (helper.users == 0 || --helper.users > 0) {
    pthread_mutex_unlock (&helper.lock);
    return;
  }
  atomic_store (&helper_on, 0);
  helper.stop = 1;
  pthread_cond_signal (&helper.cv);
  pthread_mutex_unlock (&helper.lock);
  pthread_join (helper.thread, NULL);
  /* Requests it did not take stay for the next helper. */
}

void
pc_slab_get_stats (struct pc_slab_stats *st)
{
  pthread_mutex_lock (&helper.lock);
  st->chunks_ahead = helper.ahead;
  st->chunks_inline = helper.inline_;
  pthread_mutex_unlock (&helper.lock);
}

void
pc_slab_settle (void)
{
  pthread_mutex_lock (&helper.lock);
  while (helper.users > 0 && (helper.want || helper.busy))
    pthread_cond_wait (&helper.idle, &helper.lock);
  pthread_mutex_unlock (&helper.lock);
}

/* Take a chain of free objects, carving a new chunk into chains if the
 * pool has none.  NULL when out of memory.
 */
static void *
take_chain (struct pc_slab *s)
{
  void *chain, *last;
  unsigned n;
  int carved = 0, ask = 0;

  pthread_mutex_lock (&s->lock);
  if (s->batches == NULL) {
    uint8_t *m = map_chunk ();

    if (m) {
      s->batches = carve (s, m, &last, &n);
      s->nbatches = n;
      carved = 1;
    }
  }
  chain = s->batches;
  if (chain) {
    s->batches = link_of (chain).batch;
    s->nbatches--;
  }
  if (s->nbatches < low_water (s) && !s->asked &&
      atomic_load (&helper_on)) {
    s->asked = 1;
    ask = 1;
  }
  pthread_mutex_unlock (&s->lock);
  if (carved) {
    pthread_mutex_lock (&helper.lock);
    helper.inline_++;
    pthread_mutex_unlock (&helper.lock);
  }
  if (ask)
    ask_helper (s);
  return chain;
}

static void
drop_caches (void *arg)
{
  unsigned i;

  (void) arg;
  for (i = 0; i < PC_SLAB_POOLS; i++) {
    struct cache *c = &tc[i];

    if (!c->pool)
      continue;
    give (c->pool, c->v, c->n);
    c->n = 0;
    if (c->chain)
      push_chain (c->pool, c->chain);
    c->chain = NULL;
  }
}

static void
make_exit_key (void)
{
  pthread_key_create (&exit_key, drop_caches);
}

/* This thread's cache of pool s; its spares go back when it exits. */
static struct cache *
cache_of (struct pc_slab *s)
{
  struct cache *c = &tc[s->id];

  if (!registered) {
    pthread_once (&exit_once, make_exit_key);
    /* Any non-NULL value: the destructor works on this thread's tc. */
    pthread_setspecific (exit_key, tc);
    registered = 1;
  }
  c->pool = s;
  return c;
}

static void *
take_one (struct pc_slab *s, struct cache *c)
{
  void *p;

  if (c->chain == NULL) {
    c->chain = take_chain (s);
    if (c->chain == NULL)
      return NULL;
  }
  p = c->chain;
  c->chain = link_of (p).next;
  /* Chains of freed objects run in no order: without this, the next
   * allocation would wait for its object's line to read the link.
   */
  if (c->chain)
    __builtin_prefetch (c->chain, 1);
  return p;
}

void *
pc_slab_alloc (struct pc_slab *s)
{
  struct cache *c = &tc[s->id];

  if (c->n > 0) {
    void *p = c->v[--c->n];

    /* The next spare is filled by the next allocation: fetch it now. */
    if (c->n > 0)
      __builtin_prefetch (c->v[c->n - 1], 1);
    return p;
  }
  return take_one (s, cache_of (s));
}

void
pc_slab_free (struct pc_slab *s, void *p)
{
  struct cache *c = cache_of (s);

  if (c->n == CACHE_MAX) {
    /* The oldest spares go: the newest are likelier still in cache. */
    give (s, c->v, BATCH);
    c->n -= BATCH;
    memmove (c->v, c->v + BATCH, c->n * sizeof *c->v);
  }
  c->v[c->n++] = p;
}

int
pc_slab_reserve (struct pc_slab *s, unsigned n)
{
  struct cache *c = cache_of (s);

  while (c->n < n) {
    void *p = take_one (s, c);

    if (p == NULL)
      return -1;
    c->v[c->n++] = p;
  }
  return 0;
}

uint64_t
pc_slab_bytes (void)
{
  return atomic_load (&mapped);
}
