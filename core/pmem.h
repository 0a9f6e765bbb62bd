/* SPDX-License-Identifier: BSD-3-Clause */
/* The one place that maps the cache and makes stores durable.
 *
 * Every store that must survive a crash goes through pc_pmem_persist,
 * pc_pmem_copy, pc_pmem_set or pc_pmem_drain, so a test can observe (and
 * a crash simulator can cut off) every persist point through the hook.
 */
#ifndef PC_PMEM_H
#define PC_PMEM_H

#include <stddef.h>
#include <stdint.h>

struct pc_pmem;

/* Open path read-write (create it with create_size bytes if create is
 * set and it does not exist or is an empty file) and map it.  Takes an
 * exclusive lock on the file so that two processes never share a cache.
 * *created tells whether the file was made (or sized) here.
 */
int pc_pmem_open (const char *path, uint64_t create_size, int create,
                  struct pc_pmem **out, int *created);
/* Undo what pc_pmem_open made: remove the file it created, or empty
 * again the empty file it sized.
 */
void pc_pmem_unmake (struct pc_pmem *p, const char *path);
/* Open path read-only and map it copy-on-write, without the lock: to
 * look at a cache that another process holds and keeps changing.  Pages
 * read but not stored to follow the file; stores stay private.
 */
int pc_pmem_open_live (const char *path, struct pc_pmem **out);
void pc_pmem_close (struct pc_pmem *p);

/* Does the regular file fd have holes?  Returns 1 with *hole set to the
 * first one and *size to the file size, 0 if every byte is allocated
 * (always for a device such as devdax), -1 with errno on error.
 * Touching a hole through a mapping can raise SIGBUS (tmpfs allocates
 * on a read fault, and on a full filesystem cannot).
 */
int pc_pmem_sparse (int fd, uint64_t *hole, uint64_t *size);

void *pc_pmem_base (const struct pc_pmem *p);
uint64_t pc_pmem_size (const struct pc_pmem *p);
const char *pc_pmem_granularity (const struct pc_pmem *p);

/* Map every page now, so that log appends do not take a page fault
 * each (on fsdax or an emulated mapping a first touch costs more than
 * the 4K copy).  Call it in the process that serves: a fork copies no
 * page table entries of a shared mapping, so nbdkit's server process
 * starts with none.
 */
void pc_pmem_prefault (struct pc_pmem *p);

/* Flush a range (and fence, unless the _nodrain variant). */
void pc_pmem_persist (struct pc_pmem *p, const void *addr, size_t len);
void pc_pmem_flush (struct pc_pmem *p, const void *addr, size_t len);
void pc_pmem_drain (struct pc_pmem *p);
/* Copy/set then persist. */
void pc_pmem_copy (struct pc_pmem *p, void *dst, const void *src, size_t len);
void pc_pmem_copy_nodrain (struct pc_pmem *p, void *dst, const void *src,
                           size_t len);
void pc_pmem_set (struct pc_pmem *p, void *dst, int c, size_t len);

/* Test hooks, for a power-loss simulator: before is called at every
 * persist point before anything is stored (a crash there loses the
 * store), after once the range is durable.  addr/len name the range
 * (NULL/0 for a bare drain).
 */
typedef void (*pc_persist_hook) (void *opaque, const void *addr, size_t len);
void pc_pmem_set_hooks (pc_persist_hook before, pc_persist_hook after,
                        void *opaque);

#endif /* PC_PMEM_H */
