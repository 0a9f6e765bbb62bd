/* SPDX-License-Identifier: BSD-3-Clause */
/* Helpers shared by the unit tests and the crash rig (see testutil.h). */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

/* ------------------------------------------------------------------ */
/* Scratch directory. */

static char tu_dir[256];

int
tu_mkdtemp (char *out, size_t len, const char *tag)
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

const char *
tu_dir_create (void)
{
  if (tu_dir[0])
    return tu_dir;
  if (tu_mkdtemp (tu_dir, sizeof tu_dir, "unit") == -1) {
    perror ("mkdtemp");
    tu_dir[0] = 0;
    return NULL;
  }
  return tu_dir;
}

const char *
tu_path (const char *name)
{
  static char ring[8][256];
  static unsigned next;
  char *p = ring[next++ % 8];

  snprintf (p, sizeof ring[0], "%s/%s", tu_dir_create (), name);
  return p;
}

void
tu_dir_remove (void)
{
  DIR *d;
  struct dirent *e;

  if (!tu_dir[0])
    return;
  d = opendir (tu_dir);
  if (d) {
    while ((e = readdir (d)) != NULL) {
      char p[512];

      if (!strcmp (e->d_name, ".") || !strcmp (e->d_name, ".."))
        continue;
      snprintf (p, sizeof p, "%s/%s", tu_dir, e->d_name);
      unlink (p);
    }
    closedir (d);
  }
  rmdir (tu_dir);
  tu_dir[0] = 0;
}

/* ------------------------------------------------------------------ */
/* In-memory backend. */

static void
mem_log (struct tu_mem *m, char op, uint64_t off, uint32_t len,
         uint8_t first)
{
  if (!m->log_on)
    return;
  if (m->nlog == m->caplog) {
    size_t cap = m->caplog ? m->caplog * 2 : 1024;
    struct tu_log_ent *v = realloc (m->log, cap * sizeof *v);
    if (!v)
      abort ();
    m->log = v;
    m->caplog = cap;
  }
  m->log[m->nlog++] = (struct tu_log_ent) { op, off, len, first };
}

static int
mem_range_bad (struct tu_mem *m, uint32_t len, uint64_t off, int *err)
{
  if (off > m->size || len > m->size - off) {
    *err = EINVAL;
    return 1;
  }
  return 0;
}

/* Caller holds the lock.  Note [off, off+len) as written since the
 * last flush (volatile write cache only).
 */
static void
mem_mark (struct tu_mem *m, uint32_t len, uint64_t off)
{
  uint64_t b, e = (off + len + TU_BLK - 1) / TU_BLK;

  if (!m->dur)
    return;
  for (b = off / TU_BLK; b < e; b++)
    if (!m->dmap[b]) {
      m->dmap[b] = 1;
      m->dlist[m->ndirty++] = b;
    }
  m->dirty = 1;
}

/* Caller holds the lock.  The volatile write cache reaches the media. */
static void
mem_persist (struct tu_mem *m)
{
  if (!m->dur)
    return;
  while (m->ndirty > 0) {
    uint64_t b = m->dlist[--m->ndirty];
    uint64_t n = m->size - b * TU_BLK < TU_BLK ? m->size - b * TU_BLK
      : TU_BLK;
    memcpy (m->dur + b * TU_BLK, m->buf + b * TU_BLK, n);
    m->dmap[b] = 0;
  }
  m->dirty = 0;
}

/* Caller holds the lock. */
static void
mem_hook (struct tu_mem *m, char op)
{
  if (m->hook)
    m->hook (m->hook_opaque, op);
}

/* Caller holds the lock.  Whether this write must fail. */
static int
mem_fail_write (struct tu_mem *m, int *err)
{
  if (m->fail_writes == 0)
    return 0;
  m->fail_writes--;
  m->nfailed++;
  *err = EIO;
  return 1;
}

static int
mem_pread (void *ctx, void *buf, uint32_t len, uint64_t off, int *err)
{
  struct tu_mem *m = ctx;

  pthread_mutex_lock (&m->lock);
  if (mem_range_bad (m, len, off, err)) {
    pthread_mutex_unlock (&m->lock);
    return -1;
  }
  memcpy (buf, m->buf + off, len);
  m->npread++;
  m->pread_bytes += len;
  pthread_mutex_unlock (&m->lock);
  return 0;
}

static int
mem_pwrite (void *ctx, const void *buf, uint32_t len, uint64_t off, int *err)
{
  struct tu_mem *m = ctx;

  pthread_mutex_lock (&m->lock);
  if (mem_range_bad (m, len, off, err) || mem_fail_write (m, err)) {
    pthread_mutex_unlock (&m->lock);
    return -1;
  }
  mem_hook (m, TU_OP_WRITE);
  memcpy (m->buf + off, buf, len);
  mem_mark (m, len, off);
  m->npwrite++;
  m->pwrite_bytes += len;
  mem_log (m, TU_OP_WRITE, off, len, len ? ((const uint8_t *) buf)[0] : 0);
  pthread_mutex_unlock (&m->lock);
  return 0;
}

/* Zero or trim (op): both leave zeroes, as a thin device does. */
static int
mem_clear (struct tu_mem *m, uint32_t len, uint64_t off, char op, int *err)
{
  pthread_mutex_lock (&m->lock);
  if (mem_range_bad (m, len, off, err) || mem_fail_write (m, err)) {
    pthread_mutex_unlock (&m->lock);
    return -1;
  }
  mem_hook (m, op);
  memset (m->buf + off, 0, len);
  mem_mark (m, len, off);
  if (op == TU_OP_ZERO)
    m->nzero++;
  else
    m->ntrim++;
  mem_log (m, op, off, len, 0);
  pthread_mutex_unlock (&m->lock);
  return 0;
}

static int
mem_zero (void *ctx, uint32_t len, uint64_t off, int may_trim, int *err)
{
  (void) may_trim;
  return mem_clear (ctx, len, off, TU_OP_ZERO, err);
}

static int
mem_trim (void *ctx, uint32_t len, uint64_t off, int *err)
{
  return mem_clear (ctx, len, off, TU_OP_TRIM, err);
}

static int
mem_flush (void *ctx, int *err)
{
  struct tu_mem *m = ctx;

  pthread_mutex_lock (&m->lock);
  if (m->fail_flushes > 0) {
    m->fail_flushes--;
    m->nfailed++;
    *err = EIO;
    pthread_mutex_unlock (&m->lock);
    return -1;
  }
  mem_hook (m, TU_OP_FLUSH);
  mem_persist (m);
  m->nflush++;
  mem_log (m, TU_OP_FLUSH, 0, 0, 0);
  pthread_mutex_unlock (&m->lock);
  return 0;
}

static const struct pc_backend_ops mem_ops = {
  .pread = mem_pread,
  .pwrite = mem_pwrite,
  .zero = mem_zero,
  .trim = mem_trim,
  .flush = mem_flush,
};

struct tu_mem *
tu_mem_new (uint64_t size, int init)
{
  struct tu_mem *m = calloc (1, sizeof *m);

  if (!m)
    return NULL;
  m->buf = malloc (size ? size : 1);
  if (!m->buf) {
    free (m);
    return NULL;
  }
  memset (m->buf, init, size);
  m->size = size;
  pthread_mutex_init (&m->lock, NULL);
  return m;
}

struct tu_mem *
tu_mem_new_volatile (uint64_t size, int init)
{
  struct tu_mem *m = tu_mem_new (size, init);
  uint64_t nb = (size + TU_BLK - 1) / TU_BLK;

  if (!m)
    return NULL;
  m->dur = malloc (size ? size : 1);
  m->dmap = calloc (nb ? nb : 1, 1);
  m->dlist = malloc ((nb ? nb : 1) * sizeof *m->dlist);
  if (!m->dur || !m->dmap || !m->dlist) {
    tu_mem_free (m);
    return NULL;
  }
  memset (m->dur, init, size);
  return m;
}

void
tu_mem_free (struct tu_mem *m)
{
  if (!m)
    return;
  pthread_mutex_destroy (&m->lock);
  free (m->buf);
  free (m->dur);
  free (m->dmap);
  free (m->dlist);
  free (m->log);
  free (m);
}

struct pc_backend
tu_mem_backend (struct tu_mem *m)
{
  return (struct pc_backend) { .ops = &mem_ops, .ctx = m };
}

void
tu_mem_fail (struct tu_mem *m, unsigned writes, unsigned flushes)
{
  pthread_mutex_lock (&m->lock);
  m->fail_writes = writes;
  m->fail_flushes = flushes;
  pthread_mutex_unlock (&m->lock);
}

void
tu_mem_log (struct tu_mem *m, int on)
{
  pthread_mutex_lock (&m->lock);
  m->log_on = on;
  pthread_mutex_unlock (&m->lock);
}

uint64_t
tu_mem_preads (struct tu_mem *m)
{
  uint64_t n;

  pthread_mutex_lock (&m->lock);
  n = m->npread;
  pthread_mutex_unlock (&m->lock);
  return n;
}

void
tu_mem_get (struct tu_mem *m, void *dst, uint32_t len, uint64_t off)
{
  pthread_mutex_lock (&m->lock);
  memcpy (dst, m->buf + off, len);
  pthread_mutex_unlock (&m->lock);
}

static int
fail_pread (void *ctx, void *buf, uint32_t len, uint64_t off, int *err)
{
  (void) ctx; (void) buf; (void) len; (void) off;
  *err = EIO;
  return -1;
}

static int
fail_pwrite (void *ctx, const void *buf, uint32_t len, uint64_t off,
             int *err)
{
  (void) ctx; (void) buf; (void) len; (void) off;
  *err = EIO;
  return -1;
}

static const struct pc_backend_ops fail_ops = {
  .pread = fail_pread,
  .pwrite = fail_pwrite,
};

struct pc_backend
tu_fail_backend (void)
{
  return (struct pc_backend) { .ops = &fail_ops, .ctx = NULL };
}

static void
hook_op (struct tu_hook *h, char op, uint64_t off, int done)
{
  if (h->op)
    h->op (h, op, off, done);
}

static int
hook_pread (void *ctx, void *buf, uint32_t len, uint64_t off, int *err)
{
  struct tu_hook *h = ctx;
  int r;

  hook_op (h, TU_OP_READ, off, 0);
  r = h->inner.ops->pread (h->inner.ctx, buf, len, off, err);
  hook_op (h, TU_OP_READ, off, 1);
  return r;
}

static int
hook_pwrite (void *ctx, const void *buf, uint32_t len, uint64_t off,
             int *err)
{
  struct tu_hook *h = ctx;
  int r;

  hook_op (h, TU_OP_WRITE, off, 0);
  if (h->before)
    h->before (h);
  r = h->inner.ops->pwrite (h->inner.ctx, buf, len, off, err);
  if (h->after)
    h->after (h);
  hook_op (h, TU_OP_WRITE, off, 1);
  return r;
}

static int
hook_zero (void *ctx, uint32_t len, uint64_t off, int may_trim, int *err)
{
  struct tu_hook *h = ctx;
  int r;

  hook_op (h, TU_OP_ZERO, off, 0);
  r = h->inner.ops->zero (h->inner.ctx, len, off, may_trim, err);
  hook_op (h, TU_OP_ZERO, off, 1);
  return r;
}

static int
hook_trim (void *ctx, uint32_t len, uint64_t off, int *err)
{
  struct tu_hook *h = ctx;
  int r;

  hook_op (h, TU_OP_TRIM, off, 0);
  r = h->inner.ops->trim (h->inner.ctx, len, off, err);
  hook_op (h, TU_OP_TRIM, off, 1);
  return r;
}

static int
hook_flush (void *ctx, int *err)
{
  struct tu_hook *h = ctx;
  int r;

  hook_op (h, TU_OP_FLUSH, 0, 0);
  r = h->inner.ops->flush (h->inner.ctx, err);
  hook_op (h, TU_OP_FLUSH, 0, 1);
  return r;
}

static const struct pc_backend_ops hook_ops = {
  .pread = hook_pread,
  .pwrite = hook_pwrite,
  .zero = hook_zero,
  .trim = hook_trim,
  .flush = hook_flush,
};

struct pc_backend
tu_hook_backend (struct tu_hook *h)
{
  return (struct pc_backend) { .ops = &hook_ops, .ctx = h };
}

/* ------------------------------------------------------------------ */
/* Patterns. */

static inline uint8_t
pat_byte (uint64_t pos, uint32_t seed)
{
  uint64_t x = (pos >> 3) * UINT64_C (0x9E3779B97F4A7C15) ^
    ((uint64_t) seed * UINT64_C (0xD1B54A32D192ED03));

  x ^= x >> 29;
  x *= UINT64_C (0xBF58476D1CE4E5B9);
  x ^= x >> 32;
  return (uint8_t) (x >> ((pos & 7) * 8));
}

void
tu_fill (void *buf, size_t len, uint64_t off, uint32_t seed)
{
  uint8_t *p = buf;
  size_t i;

  for (i = 0; i < len; i++)
    p[i] = pat_byte (off + i, seed);
}

long
tu_check (const void *buf, size_t len, uint64_t off, uint32_t seed)
{
  const uint8_t *p = buf;
  size_t i;

  for (i = 0; i < len; i++)
    if (p[i] != pat_byte (off + i, seed))
      return (long) i;
  return -1;
}

long
tu_check_byte (const void *buf, size_t len, uint8_t b)
{
  const uint8_t *p = buf;
  size_t i;

  for (i = 0; i < len; i++)
    if (p[i] != b)
      return (long) i;
  return -1;
}

#define BLK_MAGIC       UINT64_C (0x6b6c426873617243)   /* "CrashBlk" */

void
tu_block_fill (void *p, uint64_t blk, uint32_t ver)
{
  uint64_t *w = p;
  unsigned i;

  w[0] = BLK_MAGIC;
  w[1] = blk;
  w[2] = ver;
  w[3] = tu_mix ((blk << 32) ^ ver ^ UINT64_C (0x5a5a));
  for (i = 4; i < TU_BLK / 8; i++)
    w[i] = w[3] ^ (i * UINT64_C (0x9e3779b97f4a7c15));
}

uint32_t
tu_block_decode (const void *p, uint64_t blk)
{
  const uint64_t *w = p;
  unsigned i;

  if (w[0] != BLK_MAGIC) {
    for (i = 0; i < TU_BLK / 8; i++)
      if (w[i])
        return TU_V_GARBAGE;
    return TU_V_ZERO;
  }
  if (w[1] != blk)
    return TU_V_WRONGBLK;
  if (w[2] >= TU_V_WRONGBLK ||
      w[3] != tu_mix ((blk << 32) ^ w[2] ^ UINT64_C (0x5a5a)))
    return TU_V_GARBAGE;
  for (i = 4; i < TU_BLK / 8; i++)
    if (w[i] != (w[3] ^ (i * UINT64_C (0x9e3779b97f4a7c15))))
      return TU_V_GARBAGE;
  return (uint32_t) w[2];
}

const char *
tu_block_name (uint32_t v, char *buf, size_t len)
{
  if (v == TU_V_ZERO)
    snprintf (buf, len, "zeroes");
  else if (v == TU_V_GARBAGE)
    snprintf (buf, len, "garbage");
  else if (v == TU_V_WRONGBLK)
    snprintf (buf, len, "another block's data");
  else if (v == 0)
    snprintf (buf, len, "original");
  else
    snprintf (buf, len, "v%u", v);
  return buf;
}

uint64_t
tu_rand (uint64_t *s)
{
  uint64_t x = *s ? *s : UINT64_C (88172645463325252);

  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * UINT64_C (0x2545F4914F6CDD1D);
}

uint64_t
tu_mix (uint64_t x)
{
  x += UINT64_C (0x9e3779b97f4a7c15);
  x = (x ^ (x >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C (0x94d049bb133111eb);
  return x ^ (x >> 31);
}

uint64_t
tu_seed (uint64_t seed)
{
  uint64_t s = tu_mix (seed);

  return s ? s : 1;
}

uint64_t
tu_below (uint64_t *s, uint64_t n)
{
  return tu_rand (s) % n;
}

/* ------------------------------------------------------------------ */
/* Log capture. */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[16384];
static size_t log_len;
static int log_echo = -1;       /* -1: as TU_VERBOSE says */

static void
capture (int level, const char *fmt, va_list ap)
{
  char line[1024];
  size_t n;
  int echo = log_echo >= 0 ? log_echo : getenv ("TU_VERBOSE") != NULL;

  if (level > 0 && echo < 2)
    return;
  vsnprintf (line, sizeof line, fmt, ap);
  if (echo)
    fprintf (stderr, "  [pcache] %s\n", line);
  pthread_mutex_lock (&log_lock);
  n = strlen (line);
  /* Full: start over, so that the latest messages are there. */
  if (log_len + n + 2 > sizeof log_buf)
    log_len = 0;
  memcpy (log_buf + log_len, line, n);
  log_len += n;
  log_buf[log_len++] = '\n';
  log_buf[log_len] = 0;
  pthread_mutex_unlock (&log_lock);
}

void
tu_log_install (void)
{
  pc_set_log (capture);
}

void
tu_log_echo (int level)
{
  log_echo = level;
}

void
tu_log_clear (void)
{
  pthread_mutex_lock (&log_lock);
  log_len = 0;
  log_buf[0] = 0;
  pthread_mutex_unlock (&log_lock);
}

int
tu_log_has (const char *s)
{
  int r;

  pthread_mutex_lock (&log_lock);
  r = strstr (log_buf, s) != NULL;
  pthread_mutex_unlock (&log_lock);
  return r;
}

const char *
tu_log_text (void)
{
  return log_buf;
}

/* ------------------------------------------------------------------ */
/* Files. */

/* Whole-buffer pread (out 0) or pwrite (out 1), across short
 * transfers and EINTR.
 */
static int
file_io (int fd, void *buf, size_t len, uint64_t off, int out)
{
  uint8_t *p = buf;

  while (len > 0) {
    ssize_t n = out ? pwrite (fd, p, len, off) : pread (fd, p, len, off);
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

int
tu_file_read (const char *path, uint64_t off, void *buf, size_t len)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  int r;

  if (fd == -1)
    return -1;
  r = file_io (fd, buf, len, off, 0);
  close (fd);
  return r;
}

int
tu_file_write (const char *path, uint64_t off, const void *buf, size_t len)
{
  int fd = open (path, O_WRONLY | O_CLOEXEC);
  int r;

  if (fd == -1)
    return -1;
  r = file_io (fd, (void *) buf, len, off, 1);
  close (fd);
  return r;
}

int
tu_file_put (const char *path, const void *buf, size_t len)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int r;

  if (fd == -1)
    return -1;
  r = file_io (fd, (void *) buf, len, 0, 1);
  if (close (fd) == -1)
    r = -1;
  return r;
}

int
tu_file_xor (const char *path, uint64_t off, uint8_t x)
{
  uint8_t b;

  if (tu_file_read (path, off, &b, 1) == -1)
    return -1;
  b ^= x;
  return tu_file_write (path, off, &b, 1);
}

static uint8_t *
slurp (const char *path, size_t *len)
{
  struct stat st;
  uint8_t *p;

  if (stat (path, &st) == -1)
    return NULL;
  p = malloc (st.st_size ? st.st_size : 1);
  if (!p)
    return NULL;
  if (tu_file_read (path, 0, p, st.st_size) == -1) {
    free (p);
    return NULL;
  }
  *len = st.st_size;
  return p;
}

int
tu_file_copy (const char *src, const char *dst)
{
  size_t len;
  uint8_t *p = slurp (src, &len);
  int r;

  if (!p)
    return -1;
  r = tu_file_put (dst, p, len);
  free (p);
  return r;
}

int
tu_file_same (const char *a, const char *b)
{
  size_t la, lb;
  uint8_t *pa = slurp (a, &la), *pb = slurp (b, &lb);
  int r = pa && pb && la == lb && memcmp (pa, pb, la) == 0;

  free (pa);
  free (pb);
  return r;
}

int
tu_file_make (const char *path, uint64_t size, int random, uint64_t seed)
{
  uint8_t *p = calloc (1, size ? size : 1);
  int r;
  uint64_t i;

  if (!p)
    return -1;
  if (random)
    for (i = 0; i + 8 <= size; i += 8) {
      uint64_t x = tu_rand (&seed);
      memcpy (p + i, &x, 8);
    }
  r = tu_file_put (path, p, size);
  free (p);
  return r;
}

/* ------------------------------------------------------------------ */
/* Opening a cache. */

void
tu_config (struct pc_config *cfg, const char *path, uint64_t size)
{
  pc_config_init (cfg);
  cfg->path = path;
  cfg->size = size;
  cfg->seg_size = PC_MIN_SEG_SIZE;
}

int
tu_rig_open (struct tu_rig *r, const char *name, const struct pc_config *base,
             uint64_t csize, uint64_t bsize, int init)
{
  struct pc_config cfg;

  memset (r, 0, sizeof *r);
  r->path = tu_fresh (name);
  r->mem = tu_mem_new (bsize, 0);
  r->model = malloc (bsize);
  if (!r->mem || !r->model)
    return -1;
  if (init < 0)
    tu_fill (r->mem->buf, bsize, 0, 77);
  else
    memset (r->mem->buf, init, bsize);
  memcpy (r->model, r->mem->buf, bsize);
  r->be = tu_mem_backend (r->mem);
  if (base)
    cfg = *base;
  else
    pc_config_init (&cfg);
  cfg.path = r->path;
  cfg.size = csize;
  cfg.seg_size = PC_MIN_SEG_SIZE;
  r->c = tu_open (&cfg, bsize);
  return r->c ? 0 : -1;
}

void
tu_rig_close (struct tu_rig *r)
{
  pc_cache_close (r->c);
  tu_mem_free (r->mem);
  free (r->model);
  unlink (r->path);
}

pc_cache *
tu_open (const struct pc_config *cfg, uint64_t backing_size)
{
  pc_cache *c;

  if (pc_cache_open (cfg, &c) == -1)
    return NULL;
  if (pc_cache_bind (c, backing_size) == -1) {
    int e = errno;
    pc_cache_close (c);
    errno = e;
    return NULL;
  }
  return c;
}

pc_cache *
tu_open_simple (const char *path, uint64_t size, uint64_t backing_size)
{
  struct pc_config cfg;

  tu_config (&cfg, path, size);
  return tu_open (&cfg, backing_size);
}

pc_cache *
tu_reopen (const char *path, uint64_t size, uint64_t backing_size,
           int lenient)
{
  struct pc_config cfg;

  tu_config (&cfg, path, size);
  cfg.cache_on_read = 0;
  if (lenient)
    cfg.lenient_replay = 1;
  return tu_open (&cfg, backing_size);
}

int
tu_reads_pattern (pc_cache *c, const struct pc_backend *bk, uint64_t off,
                  uint32_t len, uint32_t seed)
{
  uint8_t *b = malloc (len);
  int err = 0, ok;

  ok = pc_read (c, b, len, off, bk, &err) == 0 &&
    tu_check (b, len, off, seed) == -1;
  free (b);
  return ok;
}

int
tu_reads_byte (pc_cache *c, const struct pc_backend *bk, uint64_t off,
               uint32_t len, uint8_t byte)
{
  uint8_t *b = malloc (len);
  int err = 0, ok;

  ok = pc_read (c, b, len, off, bk, &err) == 0 &&
    tu_check_byte (b, len, byte) == -1;
  free (b);
  return ok;
}

/* ------------------------------------------------------------------ */
/* pc_map. */

static int
map_cb (void *opaque, uint64_t off, uint64_t len, enum pc_map_type type)
{
  struct tu_map *m = opaque;

  if (m->n > 0 && m->e[m->n - 1].type == (int) type &&
      m->e[m->n - 1].off + m->e[m->n - 1].len == off) {
    m->e[m->n - 1].len += len;
    return 0;
  }
  if (m->n == sizeof m->e / sizeof m->e[0]) {
    m->overflow = 1;
    return 0;
  }
  m->e[m->n++] = (struct tu_ext) { off, len, (int) type };
  return 0;
}

int
tu_map_collect (pc_cache *c, uint64_t off, uint64_t len, struct tu_map *m)
{
  m->n = 0;
  m->overflow = 0;
  return pc_map (c, off, len, map_cb, m);
}

int
tu_map_type (const struct tu_map *m, uint64_t off, uint64_t len)
{
  uint64_t end = off + len;
  int type = -1;
  size_t i;

  for (i = 0; i < m->n && off < end; i++) {
    const struct tu_ext *e = &m->e[i];

    if (e->off + e->len <= off)
      continue;
    if (e->off > off)
      return -1;                /* hole in the report */
    if (type != -1 && type != e->type)
      return -1;
    type = e->type;
    off = e->off + e->len;
  }
  return off >= end ? type : -1;
}

int
tu_type_at (pc_cache *c, uint64_t off, uint64_t len)
{
  struct tu_map m;

  if (tu_map_collect (c, off, len, &m) != 0 || m.overflow)
    return -2;
  return tu_map_type (&m, off, len);
}

/* ------------------------------------------------------------------ */
/* Shorthands. */

const char *
tu_fresh (const char *name)
{
  const char *p = tu_path (name);

  unlink (p);
  return p;
}

/* ------------------------------------------------------------------ */

int
tu_in_child (int (*fn) (void *), void *arg)
{
  pid_t pid;
  int st;

  fflush (stdout);
  fflush (stderr);
  pid = fork ();
  if (pid == -1)
    return -1;
  if (pid == 0)
    _exit (fn (arg) & 0xff);
  if (waitpid (pid, &st, 0) == -1)
    return -1;
  if (WIFEXITED (st))
    return WEXITSTATUS (st);
  return 256 + (WIFSIGNALED (st) ? WTERMSIG (st) : 0);
}
