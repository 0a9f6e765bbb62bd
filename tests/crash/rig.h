/* Helpers shared by the crash rig (crash-sim, corrupt, fuzz-replay):
 * versioned 4 KiB block contents, an in-memory backend with a volatile
 * write cache, log capture and small file utilities.
 *
 * Header-only (static functions) so that each program links nothing
 * but the engine.
 */
#ifndef PC_CRASH_RIG_H
#define PC_CRASH_RIG_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pcache.h"

#define RIG_BLK         4096u
#define RIG_MAGIC       UINT64_C (0x6b6c426873617243)   /* "CrashBlk" */

/* Block states, as decoded from 4 KiB of data. */
#define RIG_V_ZERO      UINT32_MAX          /* all zero bytes */
#define RIG_V_GARBAGE   (UINT32_MAX - 1)    /* anything else */
#define RIG_V_WRONGBLK  (UINT32_MAX - 2)    /* another block's data */

static inline uint64_t
rig_mix (uint64_t x)
{
  x += UINT64_C (0x9e3779b97f4a7c15);
  x = (x ^ (x >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C (0x94d049bb133111eb);
  return x ^ (x >> 31);
}

/* xorshift64*; state must not be 0. */
static inline uint64_t
rig_rand (uint64_t *s)
{
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * UINT64_C (0x2545f4914f6cdd1d);
}

static inline uint64_t
rig_seed (uint64_t seed)
{
  uint64_t s = rig_mix (seed);
  return s ? s : 1;
}

/* Below n (n > 0). */
static inline uint64_t
rig_below (uint64_t *s, uint64_t n)
{
  return rig_rand (s) % n;
}

/* Version ver of block blk: a header naming both, then filler that
 * depends on both, so a block never passes for another block, another
 * version, or a mix of two.
 */
static inline void
rig_fill_block (void *p, uint64_t blk, uint32_t ver)
{
  uint64_t *w = p;
  unsigned i;

  w[0] = RIG_MAGIC;
  w[1] = blk;
  w[2] = ver;
  w[3] = rig_mix ((blk << 32) ^ ver ^ UINT64_C (0x5a5a));
  for (i = 4; i < RIG_BLK / 8; i++)
    w[i] = w[3] ^ (i * UINT64_C (0x9e3779b97f4a7c15));
}

/* Decode one block: its version, RIG_V_ZERO or RIG_V_GARBAGE. */
static inline uint32_t
rig_decode_block (const void *p, uint64_t blk)
{
  const uint64_t *w = p;
  unsigned i;

  if (w[0] != RIG_MAGIC) {
    for (i = 0; i < RIG_BLK / 8; i++)
      if (w[i])
        return RIG_V_GARBAGE;
    return RIG_V_ZERO;
  }
  if (w[1] != blk)
    return RIG_V_WRONGBLK;
  if (w[2] >= RIG_V_WRONGBLK ||
      w[3] != rig_mix ((blk << 32) ^ w[2] ^ UINT64_C (0x5a5a)))
    return RIG_V_GARBAGE;
  for (i = 4; i < RIG_BLK / 8; i++)
    if (w[i] != (w[3] ^ (i * UINT64_C (0x9e3779b97f4a7c15))))
      return RIG_V_GARBAGE;
  return (uint32_t) w[2];
}

static inline const char *
rig_vname (uint32_t v, char *buf, size_t len)
{
  if (v == RIG_V_ZERO)
    snprintf (buf, len, "zeroes");
  else if (v == RIG_V_GARBAGE)
    snprintf (buf, len, "garbage");
  else if (v == RIG_V_WRONGBLK)
    snprintf (buf, len, "another block's data");
  else if (v == 0)
    snprintf (buf, len, "original");
  else
    snprintf (buf, len, "v%u", v);
  return buf;
}

/* ------------------------------------------------------------------ */
/* In-memory backend: a disk with a volatile write cache.  Writes, zeroes
 * and trims (which zero) go to vol; flush copies vol to dur.  A power
 * loss keeps dur.  An optional hook runs before each operation that
 * changes either buffer (the crash simulator counts them as crash
 * points).
 */
struct rig_mem {
  uint8_t *vol, *dur;
  uint64_t size;
  int dirty;                    /* vol differs from dur (maybe) */
  uint8_t *dmap;                /* per 4 KiB block: written since flush */
  uint64_t *dlist, ndirty;      /* those blocks */
  void (*hook) (void *opaque, int op);
  void *hook_opaque;
  /* Fault injection: fail the next n writes / flushes with EIO. */
  unsigned fail_writes, fail_flushes;
  uint64_t nwrites, nflushes;
};

enum { RIG_BK_WRITE = 1, RIG_BK_ZERO, RIG_BK_TRIM, RIG_BK_FLUSH };

static inline int
rig_mem_range (struct rig_mem *m, uint32_t len, uint64_t off, int *err)
{
  if (off > m->size || len > m->size - off) {
    *err = EIO;
    return -1;
  }
  return 0;
}

/* Note [off, off+len) as written since the last flush. */
static inline void
rig_mem_mark (struct rig_mem *m, uint32_t len, uint64_t off)
{
  uint64_t b, e = (off + len + RIG_BLK - 1) / RIG_BLK;

  for (b = off / RIG_BLK; b < e; b++)
    if (!m->dmap[b]) {
      m->dmap[b] = 1;
      m->dlist[m->ndirty++] = b;
    }
  m->dirty = 1;
}

static inline int
rig_mem_pread (void *ctx, void *buf, uint32_t len, uint64_t off, int *err)
{
  struct rig_mem *m = ctx;

  if (rig_mem_range (m, len, off, err) == -1)
    return -1;
  memcpy (buf, m->vol + off, len);
  return 0;
}

static inline int
rig_mem_write_fail (struct rig_mem *m, int *err)
{
  if (m->fail_writes) {
    m->fail_writes--;
    *err = EIO;
    return -1;
  }
  return 0;
}

static inline int
rig_mem_pwrite (void *ctx, const void *buf, uint32_t len, uint64_t off,
                int *err)
{
  struct rig_mem *m = ctx;

  if (rig_mem_range (m, len, off, err) == -1 || rig_mem_write_fail (m, err))
    return -1;
  if (m->hook)
    m->hook (m->hook_opaque, RIG_BK_WRITE);
  memcpy (m->vol + off, buf, len);
  rig_mem_mark (m, len, off);
  m->nwrites++;
  return 0;
}

static inline int
rig_mem_zero (void *ctx, uint32_t len, uint64_t off, int may_trim, int *err)
{
  struct rig_mem *m = ctx;

  (void) may_trim;
  if (rig_mem_range (m, len, off, err) == -1 || rig_mem_write_fail (m, err))
    return -1;
  if (m->hook)
    m->hook (m->hook_opaque, RIG_BK_ZERO);
  memset (m->vol + off, 0, len);
  rig_mem_mark (m, len, off);
  m->nwrites++;
  return 0;
}

static inline int
rig_mem_trim (void *ctx, uint32_t len, uint64_t off, int *err)
{
  struct rig_mem *m = ctx;

  if (rig_mem_range (m, len, off, err) == -1 || rig_mem_write_fail (m, err))
    return -1;
  if (m->hook)
    m->hook (m->hook_opaque, RIG_BK_TRIM);
  memset (m->vol + off, 0, len);
  rig_mem_mark (m, len, off);
  m->nwrites++;
  return 0;
}

static inline int
rig_mem_flush (void *ctx, int *err)
{
  struct rig_mem *m = ctx;

  if (m->fail_flushes) {
    m->fail_flushes--;
    *err = EIO;
    return -1;
  }
  if (m->hook)
    m->hook (m->hook_opaque, RIG_BK_FLUSH);
  while (m->ndirty > 0) {
    uint64_t b = m->dlist[--m->ndirty];
    uint64_t n = m->size - b * RIG_BLK < RIG_BLK ? m->size - b * RIG_BLK
      : RIG_BLK;
    memcpy (m->dur + b * RIG_BLK, m->vol + b * RIG_BLK, n);
    m->dmap[b] = 0;
  }
  m->dirty = 0;
  m->nflushes++;
  return 0;
}

static const struct pc_backend_ops rig_mem_ops = {
  .pread = rig_mem_pread,
  .pwrite = rig_mem_pwrite,
  .zero = rig_mem_zero,
  .trim = rig_mem_trim,
  .flush = rig_mem_flush,
};

static inline int
rig_mem_init (struct rig_mem *m, uint64_t size)
{
  uint64_t nb = (size + RIG_BLK - 1) / RIG_BLK;

  memset (m, 0, sizeof *m);
  m->size = size;
  m->vol = malloc (size);
  m->dur = malloc (size);
  m->dmap = calloc (nb ? nb : 1, 1);
  m->dlist = malloc ((nb ? nb : 1) * sizeof *m->dlist);
  if (!m->vol || !m->dur || !m->dmap || !m->dlist) {
    free (m->vol);
    free (m->dur);
    free (m->dmap);
    free (m->dlist);
    return -1;
  }
  return 0;
}

static inline void
rig_mem_free (struct rig_mem *m)
{
  free (m->vol);
  free (m->dur);
  free (m->dmap);
  free (m->dlist);
  m->vol = m->dur = NULL;
  m->dmap = NULL;
  m->dlist = NULL;
}

static inline struct pc_backend
rig_mem_backend (struct rig_mem *m)
{
  return (struct pc_backend) { .ops = &rig_mem_ops, .ctx = m };
}

/* ------------------------------------------------------------------ */
/* Log capture: every message is appended to a buffer (the last 16 KiB
 * are kept) and echoed to stderr if rig_log_echo is set.
 */
static char rig_log_buf[16384];
static size_t rig_log_len;
static int rig_log_echo;

static inline void
rig_log_fn (int level, const char *fmt, va_list ap)
{
  char line[1024];
  size_t n;

  if (level > 0 && rig_log_echo < 2)
    return;
  vsnprintf (line, sizeof line, fmt, ap);
  n = strlen (line);
  if (rig_log_echo)
    fprintf (stderr, "  [pcache] %s\n", line);
  if (rig_log_len + n + 2 > sizeof rig_log_buf)
    rig_log_len = 0;
  memcpy (rig_log_buf + rig_log_len, line, n);
  rig_log_len += n;
  rig_log_buf[rig_log_len++] = '\n';
  rig_log_buf[rig_log_len] = 0;
}

static inline void
rig_log_clear (void)
{
  rig_log_len = 0;
  rig_log_buf[0] = 0;
}

static inline int
rig_log_has (const char *s)
{
  return strstr (rig_log_buf, s) != NULL;
}

/* ------------------------------------------------------------------ */
/* Files. */

static inline int
rig_write_all (int fd, const void *buf, size_t len, uint64_t off)
{
  const uint8_t *p = buf;

  while (len > 0) {
    ssize_t n = pwrite (fd, p, len, off);
    if (n <= 0) {
      if (n < 0 && errno == EINTR)
        continue;
      return -1;
    }
    p += n;
    len -= n;
    off += n;
  }
  return 0;
}

static inline int
rig_read_all (int fd, void *buf, size_t len, uint64_t off)
{
  uint8_t *p = buf;

  while (len > 0) {
    ssize_t n = pread (fd, p, len, off);
    if (n <= 0) {
      if (n < 0 && errno == EINTR)
        continue;
      return -1;
    }
    p += n;
    len -= n;
    off += n;
  }
  return 0;
}

/* Write buf as the whole content of path (created or truncated). */
static inline int
rig_file_put (const char *path, const void *buf, size_t len)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int r;

  if (fd == -1)
    return -1;
  r = rig_write_all (fd, buf, len, 0);
  if (close (fd) == -1)
    r = -1;
  return r;
}

static inline int
rig_file_get (const char *path, void *buf, size_t len)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  int r;

  if (fd == -1)
    return -1;
  r = rig_read_all (fd, buf, len, 0);
  close (fd);
  return r;
}

static inline int
rig_file_pwrite (const char *path, const void *buf, size_t len, uint64_t off)
{
  int fd = open (path, O_WRONLY | O_CLOEXEC);
  int r;

  if (fd == -1)
    return -1;
  r = rig_write_all (fd, buf, len, off);
  close (fd);
  return r;
}

static inline int
rig_file_pread (const char *path, void *buf, size_t len, uint64_t off)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  int r;

  if (fd == -1)
    return -1;
  r = rig_read_all (fd, buf, len, off);
  close (fd);
  return r;
}

static inline int
rig_file_copy (const char *src, const char *dst)
{
  struct stat st;
  uint8_t *buf;
  int r;

  if (stat (src, &st) == -1)
    return -1;
  buf = malloc (st.st_size ? st.st_size : 1);
  if (!buf)
    return -1;
  r = rig_file_get (src, buf, st.st_size);
  if (r == 0)
    r = rig_file_put (dst, buf, st.st_size);
  free (buf);
  return r;
}

/* A scratch directory: under $PCACHE_CRASH_TMPDIR, else /dev/shm (the
 * cache must be on a file system that can be mapped shared), else
 * $TMPDIR or /tmp.
 */
static inline int
rig_mkdtemp (char *out, size_t len, const char *tag)
{
  const char *base = getenv ("PCACHE_CRASH_TMPDIR");
  struct stat st;

  if (!base || !*base) {
    if (stat ("/dev/shm", &st) == 0 && S_ISDIR (st.st_mode) &&
        access ("/dev/shm", W_OK) == 0)
      base = "/dev/shm";
    else if (!(base = getenv ("TMPDIR")) || !*base)
      base = "/tmp";
  }
  snprintf (out, len, "%s/pcache-%s-XXXXXX", base, tag);
  return mkdtemp (out) ? 0 : -1;
}

#endif /* PC_CRASH_RIG_H */
