/* SPDX-License-Identifier: BSD-3-Clause */
/* drain backend: a regular file or a block device, written with
 * io_uring (one request at a time: the engine writes back serially).
 * If io_uring cannot be set up (an old kernel, or a seccomp profile
 * that forbids it) the same operations use plain system calls.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>

#include "pcachectl.h"

struct file_backend {
  struct backend b;
  int fd;
  int is_blk;
  int have_ring;
  struct io_uring ring;
  pthread_mutex_t lock;
  int no_zero_range;            /* fallocate cannot zero: write zeroes */
  int no_punch;                 /* fallocate cannot punch holes */
  int no_discard;
};

/* Run one request; returns its result (>= 0) or -errno. */
static int
ring_run (struct file_backend *f)
{
  struct io_uring_cqe *cqe;
  int r;

  r = io_uring_submit (&f->ring);
  if (r < 0)
    return r;
  do
    r = io_uring_wait_cqe (&f->ring, &cqe);
  while (r == -EINTR);
  if (r < 0)
    return r;
  r = cqe->res;
  io_uring_cqe_seen (&f->ring, cqe);
  return r;
}

static struct io_uring_sqe *
get_sqe (struct file_backend *f)
{
  struct io_uring_sqe *sqe = io_uring_get_sqe (&f->ring);

  /* The ring is used one request at a time, so it is never full. */
  if (!sqe)
    abort ();
  return sqe;
}

static int
do_rw (struct file_backend *f, int write, void *buf, uint32_t len,
       uint64_t off)
{
  int r;

  if (f->have_ring) {
    struct io_uring_sqe *sqe = get_sqe (f);

    if (write)
      io_uring_prep_write (sqe, f->fd, buf, len, off);
    else
      io_uring_prep_read (sqe, f->fd, buf, len, off);
    return ring_run (f);
  }
  r = write ? pwrite (f->fd, buf, len, off) : pread (f->fd, buf, len, off);
  return r < 0 ? -errno : r;
}

static int
do_fallocate (struct file_backend *f, int mode, uint64_t off, uint64_t len)
{
  if (f->have_ring) {
    struct io_uring_sqe *sqe = get_sqe (f);

    io_uring_prep_fallocate (sqe, f->fd, mode, off, len);
    return ring_run (f);
  }
  return fallocate (f->fd, mode, off, len) == -1 ? -errno : 0;
}

static int
do_fsync (struct file_backend *f)
{
  if (f->have_ring) {
    struct io_uring_sqe *sqe = get_sqe (f);

    io_uring_prep_fsync (sqe, f->fd, 0);
    return ring_run (f);
  }
  return fsync (f->fd) == -1 ? -errno : 0;
}

static int
fail (struct file_backend *f, const char *what, uint64_t off, uint32_t len,
      int e, int *err)
{
  backend_set_error (&f->b, "%s: %s of %" PRIu32 " bytes at offset %" PRIu64
                     ": %s", f->b.name, what, len, off, strerror (e));
  *err = e;
  return -1;
}

static int
file_pread (void *ctx, void *buf, uint32_t len, uint64_t off, int *err)
{
  struct file_backend *f = ctx;
  uint32_t done = 0;
  int r = 0;

  pthread_mutex_lock (&f->lock);
  while (done < len) {
    r = do_rw (f, 0, (char *) buf + done, len - done, off + done);
    if (r == -EINTR || r == -EAGAIN)
      continue;
    if (r <= 0)
      break;
    done += r;
  }
  pthread_mutex_unlock (&f->lock);
  if (done < len) {
    if (r == 0) {
      /* Past the end of the file: reads as zeroes. */
      memset ((char *) buf + done, 0, len - done);
      return 0;
    }
    return fail (f, "read", off, len, -r, err);
  }
  return 0;
}

static int
write_locked (struct file_backend *f, const void *buf, uint32_t len,
              uint64_t off, int *err)
{
  uint32_t done = 0;

  while (done < len) {
    int r = do_rw (f, 1, (char *) buf + done, len - done, off + done);

    if (r == -EINTR || r == -EAGAIN)
      continue;
    if (r <= 0)
      return fail (f, "write", off, len, r == 0 ? EIO : -r, err);
    done += r;
  }
  return 0;
}

static int
file_pwrite (void *ctx, const void *buf, uint32_t len, uint64_t off,
             int *err)
{
  struct file_backend *f = ctx;
  int r;

  pthread_mutex_lock (&f->lock);
  r = write_locked (f, buf, len, off, err);
  pthread_mutex_unlock (&f->lock);
  return r;
}

static int
write_zeroes_locked (struct file_backend *f, uint32_t len, uint64_t off,
                     int *err)
{
  static const char zeroes[65536];
  uint32_t done = 0;

  while (done < len) {
    uint32_t n = len - done < sizeof zeroes ? len - done : sizeof zeroes;

    if (write_locked (f, zeroes, n, off + done, err) == -1)
      return -1;
    done += n;
  }
  return 0;
}

/* fallocate errors that mean "not here" rather than "failed".  Only the
 * first two say so for good; EINVAL may be about this one range (a
 * block device wants whole sectors).
 */
static int
unsupported (int r)
{
  return r == -EOPNOTSUPP || r == -ENOSYS || r == -ENOTTY || r == -EINVAL;
}

static int
never_supported (int r)
{
  return r == -EOPNOTSUPP || r == -ENOSYS || r == -ENOTTY;
}

static int
file_zero (void *ctx, uint32_t len, uint64_t off, int may_trim, int *err)
{
  struct file_backend *f = ctx;
  int r = -EOPNOTSUPP, ret;

  pthread_mutex_lock (&f->lock);
  /* A punched hole reads as zeroes, in a file and (zeroed by the
   * device) on a block device.
   */
  if (may_trim && !f->no_punch) {
    r = do_fallocate (f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
                      len);
    if (never_supported (r))
      f->no_punch = 1;
  }
  if (r < 0 && unsupported (r) && !f->no_zero_range) {
    r = do_fallocate (f, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off,
                      len);
    if (never_supported (r))
      f->no_zero_range = 1;
  }
  if (r >= 0)
    ret = 0;
  else if (unsupported (r))
    ret = write_zeroes_locked (f, len, off, err);
  else
    ret = fail (f, "zero", off, len, -r, err);
  pthread_mutex_unlock (&f->lock);
  return ret;
}

/* A trim may leave anything behind, so it is only a hint: a backing
 * store that cannot discard keeps its data.
 */
static int
file_trim (void *ctx, uint32_t len, uint64_t off, int *err)
{
  struct file_backend *f = ctx;
  int r = 0;

  pthread_mutex_lock (&f->lock);
  if (!f->no_punch) {
    r = do_fallocate (f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
                      len);
    if (unsupported (r)) {
      if (never_supported (r))
        f->no_punch = 1;
      r = 0;
    }
  }
  else if (f->is_blk && !f->no_discard) {
    uint64_t range[2] = { off, len };

    if (ioctl (f->fd, BLKDISCARD, range) == -1) {
      if (never_supported (-errno))
        f->no_discard = 1;
      else if (errno != EINVAL)     /* EINVAL: not whole sectors */
        r = -errno;
    }
  }
  pthread_mutex_unlock (&f->lock);
  if (r < 0)
    return fail (f, "trim", off, len, -r, err);
  return 0;
}

static int
file_flush (void *ctx, int *err)
{
  struct file_backend *f = ctx;
  int r;

  pthread_mutex_lock (&f->lock);
  r = do_fsync (f);
  pthread_mutex_unlock (&f->lock);
  if (r < 0)
    return fail (f, "flush", 0, 0, -r, err);
  return 0;
}

static void
file_close (struct backend *b)
{
  struct file_backend *f = (struct file_backend *) b;

  if (f->have_ring)
    io_uring_queue_exit (&f->ring);
  close (f->fd);
  pthread_mutex_destroy (&f->lock);
  free (f);
}

struct backend *
backend_file_open (const char *path, const char *cache_path)
{
  struct file_backend *f;
  struct stat st, cst;
  int r;

  f = calloc (1, sizeof *f);
  if (!f) {
    errmsg ("out of memory");
    return NULL;
  }
  f->fd = -1;
  f->b.name = path;
  pthread_mutex_init (&f->lock, NULL);

  if (stat (path, &st) == -1) {
    errmsg ("%s: %m", path);
    goto fail;
  }
  if (!S_ISREG (st.st_mode) && !S_ISBLK (st.st_mode)) {
    errmsg ("%s: not a regular file, a block device or an NBD URI", path);
    goto fail;
  }
  /* Writing the cache's dirty data over the cache itself would destroy
   * both.
   */
  if (stat (cache_path, &cst) == 0 && st.st_dev == cst.st_dev &&
      st.st_ino == cst.st_ino) {
    errmsg ("%s: this is the cache itself", path);
    goto fail;
  }
  f->is_blk = S_ISBLK (st.st_mode);
  /* O_EXCL on a block device fails if it is mounted or otherwise
   * claimed, so a drain cannot scribble over a filesystem in use.
   */
  f->fd = open (path, O_RDWR | O_CLOEXEC | (f->is_blk ? O_EXCL : 0));
  if (f->fd == -1) {
    if (errno == EBUSY)
      errmsg ("%s: device is in use (mounted?)", path);
    else
      errmsg ("%s: %m", path);
    goto fail;
  }
  if (f->is_blk) {
    if (ioctl (f->fd, BLKGETSIZE64, &f->b.size) == -1) {
      errmsg ("%s: BLKGETSIZE64: %m", path);
      goto fail;
    }
  }
  else
    f->b.size = st.st_size;

  r = io_uring_queue_init (4, &f->ring, 0);
  if (r == 0)
    f->have_ring = 1;
  else
    dbgmsg ("io_uring is not available (%s); using system calls",
            strerror (-r));

  f->b.ops.pread = file_pread;
  f->b.ops.pwrite = file_pwrite;
  f->b.ops.zero = file_zero;
  f->b.ops.trim = file_trim;
  f->b.ops.flush = file_flush;
  f->b.pb.ops = &f->b.ops;
  f->b.pb.ctx = f;
  f->b.close = file_close;
  return &f->b;

 fail:
  if (f->fd >= 0)
    close (f->fd);
  pthread_mutex_destroy (&f->lock);
  free (f);
  return NULL;
}
