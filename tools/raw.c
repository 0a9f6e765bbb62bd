/* SPDX-License-Identifier: BSD-3-Clause */
/* A read-only mapping of a cache file or device DAX, for what the engine
 * API does not show: the superblock before the cache is opened, and the
 * log past its head (see check.c).
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "pcachectl.h"
#include "pmem.h"

/* Size of a device DAX character device, from sysfs. */
static int
devdax_size (const struct stat *st, uint64_t *size)
{
  char p[128];
  FILE *f;
  int ok;

  snprintf (p, sizeof p, "/sys/dev/char/%u:%u/size", major (st->st_rdev),
            minor (st->st_rdev));
  f = fopen (p, "re");
  if (!f)
    return -1;
  ok = fscanf (f, "%" SCNu64, size) == 1;
  fclose (f);
  return ok ? 0 : -1;
}

int
raw_read_sb (int fd, struct pc_sb *sb)
{
  /* Both copies are written at format and never again: either valid one
   * is the superblock.  Read, not through a mapping: a hole there (a
   * file that is not a cache) would raise SIGBUS on a full tmpfs.
   */
  if (pread (fd, sb, sizeof *sb, PC_SB_OFF) != sizeof *sb ||
      !pc_fmt_sb_valid (sb)) {
    if (pread (fd, sb, sizeof *sb, PC_SB_OFF + PC_SB_SLOT) != sizeof *sb)
      memset (sb, 0, sizeof *sb);
  }
  return pc_fmt_sb_valid (sb);
}

int
raw_open (const char *path, struct raw_cache *r)
{
  struct stat st;
  void *p;

  memset (r, 0, sizeof *r);
  r->fd = open (path, O_RDONLY | O_CLOEXEC);
  if (r->fd == -1)
    return -1;
  if (fstat (r->fd, &st) == -1)
    goto fail;
  if (S_ISREG (st.st_mode)) {
    r->size = st.st_size;
    r->is_file = 1;
  }
  else if (S_ISCHR (st.st_mode)) {
    if (devdax_size (&st, &r->size) == -1) {
      errno = ENODEV;
      goto fail;
    }
  }
  else {
    errno = ENODEV;
    goto fail;
  }
  if (r->size < PC_SEGTAB_OFF) {
    errno = EINVAL;
    goto fail;
  }
  p = mmap (NULL, r->size, PROT_READ, MAP_SHARED, r->fd, 0);
  if (p == MAP_FAILED)
    goto fail;
  r->base = p;

  r->sb_ok = raw_read_sb (r->fd, &r->sb) &&
    r->sb.version == PC_FORMAT_VERSION &&
    r->sb.seg_shift >= 20 && r->sb.seg_shift <= 30 &&
    r->sb.seg_area_off + ((uint64_t) r->sb.nsegs << r->sb.seg_shift)
    <= r->size;
  if (r->sb_ok)
    pc_fmt_geom (&r->geom, r->base, &r->sb);
  return 0;

 fail:
  {
    int e = errno;
    close (r->fd);
    r->fd = -1;
    errno = e;
  }
  return -1;
}

void
raw_close (struct raw_cache *r)
{
  if (r->base)
    munmap ((void *) r->base, r->size);
  if (r->fd >= 0)
    close (r->fd);
  r->base = NULL;
  r->fd = -1;
}

int
raw_is_hole (const struct raw_cache *r, uint64_t off, uint64_t len)
{
  off_t d;

  if (!r->is_file)
    return 0;
  d = lseek (r->fd, off, SEEK_DATA);
  if (d == -1)
    return errno == ENXIO;      /* no data from off to the end */
  return (uint64_t) d >= off + len;
}

const uint8_t *
raw_seg (const struct raw_cache *r, uint32_t seg)
{
  return pc_fmt_seg_addr (&r->geom, seg, 0);
}

/* Is the cache file sparse?  Returns 1 (and says so if what is given),
 * 0 if not, -1 after an error message.
 */
static int
sparse (const char *path, int fd, const char *what, uint64_t *size)
{
  uint64_t hole;
  int r = pc_pmem_sparse (fd, &hole, size);

  if (r == -1)
    errmsg ("%s: cannot tell whether the file is sparse: %m", path);
  else if (r == 1 && what)
    errmsg ("%s: the cache file is sparse (a hole at offset %" PRIu64 "): "
            "%s", path, hole, what);
  return r;
}

int
raw_refuse_sparse (const char *path)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC), r;
  uint64_t size;

  if (fd == -1)
    return 0;                   /* the open that follows reports it */
  r = sparse (path, fd, "reading it could raise SIGBUS once its "
              "filesystem is full, and inspecting a cache does not change "
              "it; allocate it first with fallocate -l SIZE, or by "
              "starting nbdkit or pcachectl drain on it", &size);
  close (fd);
  if (r != 0) {
    errno = EINVAL;
    return -1;
  }
  return 0;
}

int
raw_allocate (const char *path)
{
  int fd = open (path, O_RDWR | O_CLOEXEC), r, e;
  uint64_t size;

  if (fd == -1)
    return 0;                   /* the open that follows reports it */
  r = sparse (path, fd, NULL, &size);
  if (r == 1) {
    e = posix_fallocate (fd, 0, size);
    if (e) {
      errno = e;
      errmsg ("%s: the cache file is sparse and its %" PRIu64 " bytes "
              "cannot be allocated: %m", path, size);
      r = -1;
    }
    else {
      dbgmsg ("%s: was sparse: allocated", path);
      r = 0;
    }
  }
  close (fd);
  return r;
}
