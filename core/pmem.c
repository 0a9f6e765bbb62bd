/* SPDX-License-Identifier: BSD-3-Clause */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
/* Also without config.h (the fuzz target of check-crash). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1             /* SEEK_HOLE */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <libpmem2.h>

#include "pmem.h"
#include "util.h"

struct pc_pmem {
  int fd;
  struct pmem2_map *map;
  void *base;
  uint64_t size;
  pmem2_persist_fn persist;
  pmem2_flush_fn flush;
  pmem2_drain_fn drain;
  pmem2_memcpy_fn memcpy_fn;
  pmem2_memset_fn memset_fn;
  enum pmem2_granularity gran;
  int was_empty;                        /* sized by pc_pmem_open */
};

static pc_persist_hook hook_before, hook_after;
static void *hook_opaque;

void
pc_pmem_set_hooks (pc_persist_hook before, pc_persist_hook after,
                   void *opaque)
{
  hook_before = before;
  hook_after = after;
  hook_opaque = opaque;
}

static inline void
run_hook (const void *addr, size_t len)
{
  if (hook_before)
    hook_before (hook_opaque, addr, len);
}

static inline void
done_hook (const void *addr, size_t len)
{
  if (hook_after)
    hook_after (hook_opaque, addr, len);
}

/* Not for a page-granularity mapping: that is the page cache, and
 * populating it would read the whole file into memory.  Only an
 * optimisation: old kernels lack it.
 */
void
pc_pmem_prefault (struct pc_pmem *p)
{
#ifdef MADV_POPULATE_WRITE
  if (p->gran != PMEM2_GRANULARITY_PAGE &&
      madvise (p->base, p->size, MADV_POPULATE_WRITE) == -1)
    pc_debug ("cannot prefault the cache mapping: %m");
#else
  (void) p;
#endif
}

/* libpmem2 leaves its message empty for some failures: then say what
 * its error code means.  Its codes are -errno, or PMEM2_E_* below
 * -4095 (pmem2_err_to_errno is not exported by every libpmem2).
 */
static const char *
pmem2_reason (int ret)
{
  static __thread char buf[64];
  const char *msg = pmem2_errormsg ();

  if (msg && *msg)
    return msg;
  if (ret < 0 && ret > -4096)
    return strerror (-ret);
  snprintf (buf, sizeof buf, "libpmem2 error %d", ret);
  return buf;
}

/* A character device is a DAX device when the kernel files it under
 * the dax subsystem, the test libpmem2 makes too.
 */
static int
is_dax_device (const struct stat *st)
{
  char link[64], target[256];
  ssize_t n;
  const char *base;

  snprintf (link, sizeof link, "/sys/dev/char/%u:%u/subsystem",
            major (st->st_rdev), minor (st->st_rdev));
  n = readlink (link, target, sizeof target - 1);
  if (n <= 0)
    return 0;
  target[n] = '\0';
  base = strrchr (target, '/');
  return strcmp (base ? base + 1 : target, "dax") == 0;
}

static int
is_empty_file (int fd)
{
  struct stat st;

  return fstat (fd, &st) == 0 && PC_STAT_IS_EMPTY_FILE (&st);
}

/* Only these can be mapped; anything else (/dev/null, a block device,
 * a FIFO) is refused with a reason, before it is locked or mapped.
 */
static int
check_file_type (int fd, const char *path)
{
  struct stat st;

  if (fstat (fd, &st) == -1) {
    pc_error ("%s: %m", path);
    return -1;
  }
  if (S_ISREG (st.st_mode) || (S_ISCHR (st.st_mode) && is_dax_device (&st)))
    return 0;
  pc_error ("%s: not a regular file or DAX device", path);
  errno = EINVAL;
  return -1;
}

/* private: a copy-on-write mapping of a file opened read-only (see
 * pc_pmem_open_live).
 */
static int
map_fd (struct pc_pmem *p, const char *path, int private)
{
  struct pmem2_config *cfg = NULL;
  struct pmem2_source *src = NULL;
  int r = -1;

  int ret;

  if ((ret = pmem2_config_new (&cfg)) != 0 ||
      (ret = pmem2_source_from_fd (&src, p->fd)) != 0) {
    pc_error ("%s: %s", path, pmem2_reason (ret));
    goto out;
  }
  /* Any mapping will do: devdax and fsdax give cache-line or byte
   * granularity, a plain file gives page granularity (msync).
   */
  if ((ret = pmem2_config_set_required_store_granularity (
              cfg, PMEM2_GRANULARITY_PAGE)) != 0 ||
      (private && (ret = pmem2_config_set_sharing (cfg, PMEM2_PRIVATE)) != 0) ||
      (ret = pmem2_map_new (&p->map, cfg, src)) != 0) {
    pc_error ("%s: cannot map: %s", path, pmem2_reason (ret));
    goto out;
  }
  p->base = pmem2_map_get_address (p->map);
  p->size = pmem2_map_get_size (p->map);
  p->gran = pmem2_map_get_store_granularity (p->map);
  p->persist = pmem2_get_persist_fn (p->map);
  p->flush = pmem2_get_flush_fn (p->map);
  p->drain = pmem2_get_drain_fn (p->map);
  p->memcpy_fn = pmem2_get_memcpy_fn (p->map);
  p->memset_fn = pmem2_get_memset_fn (p->map);
  r = 0;
 out:
  if (src)
    pmem2_source_delete (&src);
  if (cfg)
    pmem2_config_delete (&cfg);
  return r;
}

int
pc_pmem_sparse (int fd, uint64_t *hole, uint64_t *size)
{
  struct stat st;
  off_t h;

  if (fstat (fd, &st) == -1)
    return -1;
  *size = st.st_size;
  /* Blocks covering the size mean no hole.  Checked first: SEEK_HOLE
   * reports the unwritten extents of a preallocated file on ext4 or XFS
   * as holes, though they are allocated.
   */
  if (!S_ISREG (st.st_mode) ||
      (uint64_t) st.st_blocks * 512 >= (uint64_t) st.st_size)
    return 0;
  h = lseek (fd, 0, SEEK_HOLE);
  if (h == -1) {
    if (errno != EINVAL)
      return -1;
    h = 0;                      /* no SEEK_HOLE: trust the block count */
  }
  /* A compressed file has fewer blocks than bytes and no hole. */
  if ((uint64_t) h >= (uint64_t) st.st_size)
    return 0;
  *hole = h;
  return 1;
}

/* An existing cache file copied sparse (cp --sparse, rsync -S) would
 * kill the process with SIGBUS at the first store into a hole, or even
 * a read on tmpfs, once its filesystem is full: allocate it now, while
 * failing is still an error message.
 */
static int
allocate_holes (int fd, const char *path)
{
  uint64_t hole, size;
  int r = pc_pmem_sparse (fd, &hole, &size), e;

  if (r == -1) {
    e = errno;
    pc_error ("%s: cannot tell whether the file is sparse: %m", path);
    errno = e;
    return -1;
  }
  if (r == 0)
    return 0;
  pc_debug ("%s: sparse (a hole at offset %" PRIu64 "): allocating it", path,
            hole);
  e = posix_fallocate (fd, 0, size);
  if (e) {
    errno = e;
    pc_error ("%s: the cache file is sparse (a hole at offset %" PRIu64
              ") and its %" PRIu64 " bytes cannot be allocated: %m", path,
              hole, size);
    errno = e;
    return -1;
  }
  return 0;
}

int
pc_pmem_open (const char *path, uint64_t create_size, int create,
              struct pc_pmem **out, int *created)
{
  struct pc_pmem *p;
  int saved;

  *created = 0;
  p = calloc (1, sizeof *p);
  if (!p)
    return -1;
  p->fd = open (path, O_RDWR | O_CLOEXEC);
  if (p->fd == -1 && errno == ENOENT && create) {
    p->fd = open (path, O_RDWR | O_CLOEXEC | O_CREAT | O_EXCL, 0600);
    if (p->fd >= 0) {
      *created = 1;
      /* Allocate every block now: a store into a hole of a full
       * filesystem would kill the process with SIGBUS later.
       */
      int e = posix_fallocate (p->fd, 0, create_size);
      if (e) {
        errno = e;
        pc_error ("%s: cannot allocate %" PRIu64 " bytes: %m", path,
                  create_size);
        goto fail;
      }
    }
  }
  if (p->fd == -1) {
    pc_error ("%s: %m", path);
    goto fail;
  }
  if (!*created && check_file_type (p->fd, path) == -1)
    goto fail;
  if (flock (p->fd, LOCK_EX | LOCK_NB) == -1) {
    if (errno == EWOULDBLOCK)
      errno = EBUSY;
    pc_error ("%s: cache is in use by another process", path);
    goto fail;
  }
  /* An empty file holds nothing to lose: made into a cache as a new
   * one would be (the lock is held, so nobody else is filling it).
   */
  if (!*created && create && is_empty_file (p->fd)) {
    int e = posix_fallocate (p->fd, 0, create_size);

    p->was_empty = *created = 1;
    if (e) {
      errno = e;
      pc_error ("%s: cannot allocate %" PRIu64 " bytes: %m", path,
                create_size);
      goto fail;
    }
  }
  if (!*created && allocate_holes (p->fd, path) == -1)
    goto fail;
  if (map_fd (p, path, 0) == -1) {
    errno = EINVAL;
    goto fail;
  }
  *out = p;
  return 0;

 fail:
  saved = errno;
  if (p->fd >= 0) {
    if (*created)
      pc_pmem_unmake (p, path);
    close (p->fd);
  }
  free (p);
  *created = 0;
  errno = saved;
  return -1;
}

void
pc_pmem_unmake (struct pc_pmem *p, const char *path)
{
  if (p->was_empty) {
    if (ftruncate (p->fd, 0) == -1)
      pc_error ("%s: cannot make it empty again: %m", path);
  }
  else
    unlink (path);
}

int
pc_pmem_open_live (const char *path, struct pc_pmem **out)
{
  struct pc_pmem *p;
  int saved;

  p = calloc (1, sizeof *p);
  if (!p)
    return -1;
  /* Read-only: whatever the engine stores while it opens the cache
   * stays in this process's copy of the page, never reaches the file.
   * No lock: the process that holds it is serving from the file.
   */
  p->fd = open (path, O_RDONLY | O_CLOEXEC);
  if (p->fd == -1) {
    pc_error ("%s: %m", path);
    goto fail;
  }
  if (map_fd (p, path, 1) == -1) {
    errno = EINVAL;
    goto fail;
  }
  *out = p;
  return 0;

 fail:
  saved = errno;
  if (p->fd >= 0)
    close (p->fd);
  free (p);
  errno = saved;
  return -1;
}

void
pc_pmem_close (struct pc_pmem *p)
{
  if (!p)
    return;
  if (p->map)
    pmem2_map_delete (&p->map);
  close (p->fd);
  free (p);
}

void *
pc_pmem_base (const struct pc_pmem *p)
{
  return p->base;
}

uint64_t
pc_pmem_size (const struct pc_pmem *p)
{
  return p->size;
}

const char *
pc_pmem_granularity (const struct pc_pmem *p)
{
  switch (p->gran) {
  case PMEM2_GRANULARITY_BYTE: return "byte";
  case PMEM2_GRANULARITY_CACHE_LINE: return "cache-line";
  default: return "page";
  }
}

void
pc_pmem_persist (struct pc_pmem *p, const void *addr, size_t len)
{
  run_hook (addr, len);
  p->persist (addr, len);
  done_hook (addr, len);
}

void
pc_pmem_flush (struct pc_pmem *p, const void *addr, size_t len)
{
  run_hook (addr, len);
  p->flush (addr, len);
  done_hook (addr, len);
}

void
pc_pmem_drain (struct pc_pmem *p)
{
  run_hook (NULL, 0);
  p->drain ();
  done_hook (NULL, 0);
}

void
pc_pmem_copy (struct pc_pmem *p, void *dst, const void *src, size_t len)
{
  run_hook (dst, len);
  p->memcpy_fn (dst, src, len, 0);
  done_hook (dst, len);
}

void
pc_pmem_copy_nodrain (struct pc_pmem *p, void *dst, const void *src,
                      size_t len)
{
  run_hook (dst, len);
  p->memcpy_fn (dst, src, len, PMEM2_F_MEM_NODRAIN);
  done_hook (dst, len);
}

void
pc_pmem_set (struct pc_pmem *p, void *dst, int c, size_t len)
{
  run_hook (dst, len);
  p->memset_fn (dst, c, len, 0);
  done_hook (dst, len);
}
