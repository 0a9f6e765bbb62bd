/* SPDX-License-Identifier: BSD-3-Clause */
/* Fixed-size objects of the index: keys and B+tree nodes.
 *
 * An index holding millions of extents allocates and frees an object on
 * almost every request, and a lookup follows a chain of them.  They come
 * from 2 MiB chunks, backed by huge pages where the kernel allows
 * (transparent huge pages in "madvise" or "always" mode), so a lookup
 * does not also miss the TLB at every node; malloc would add 16 bytes
 * to each 32-byte key and spread them over 4K pages.  Chunks stay for
 * the life of the process, as large as the most objects ever held at
 * once.
 *
 * Each thread keeps a few free objects of each pool.  Threads that
 * mostly free (writeback, GC) feed those that mostly allocate (clients):
 * spares move between them as chains linked through the free objects,
 * so a hand-over is O(1) under the pool's lock and its taker follows
 * one link per allocation, on the line it is about to fill anyway.
 *
 * A fresh chunk costs its first toucher some hundreds of microseconds:
 * the kernel zeroes the huge page, and carving writes a link into every
 * object.  While a cache runs (pc_slab_start), a helper thread carves a
 * pool's next chunk when the pool is down to half a chunk of spares, so
 * that a growing index does not stall the request that needs one more
 * object.  Each pool in use so keeps up to a chunk and a half ready.
 */
#ifndef PC_SLAB_H
#define PC_SLAB_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define PC_SLAB_POOLS 3                 /* pools in the process, at most */

struct pc_slab {
  size_t size;                          /* a power of two, 32 to 4096 */
  unsigned id;                          /* its slot in a thread's cache */
  pthread_mutex_t lock;
  void *batches;                        /* chains of free objects */
  unsigned nbatches;                    /* chains in batches */
  int asked;                            /* the helper is to add a chunk */
};

#define PC_SLAB_INIT(sz, slot) \
  { .size = (sz), .id = (slot), .lock = PTHREAD_MUTEX_INITIALIZER }

/* An object of s->size bytes, aligned to its size; its contents are
 * undefined.  NULL when out of memory.
 */
void *pc_slab_alloc (struct pc_slab *s);
void pc_slab_free (struct pc_slab *s, void *p);
/* Make sure the calling thread holds n free objects (n <= 64), so that
 * its next n pc_slab_alloc calls cannot fail.
 */
int pc_slab_reserve (struct pc_slab *s, unsigned n);
/* Bytes of memory mapped for all pools. */
uint64_t pc_slab_bytes (void);

/* Start the helper thread that carves chunks ahead of need, or count
 * one more user of it; pc_slab_stop counts one less and ends it with
 * the last.  Without it, a pool carves its chunks when it runs out.
 * pc_slab_start returns 0, or an errno value.
 */
int pc_slab_start (void);
void pc_slab_stop (void);

/* Chunks carved in all: by the helper ahead of need, and by allocations
 * that found their pool empty.
 */
struct pc_slab_stats {
  uint64_t chunks_ahead, chunks_inline;
};
void pc_slab_get_stats (struct pc_slab_stats *st);
/* Wait until the helper has no chunk left to carve; for tests. */
void pc_slab_settle (void);

#endif /* PC_SLAB_H */
