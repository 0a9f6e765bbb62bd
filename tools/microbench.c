/* SPDX-License-Identifier: BSD-3-Clause */
/* microbench: in-process microbenchmark of the pcache engine (core/).
 *
 * No NBD, no nbdkit: the engine is driven directly through
 * include/pcache.h, with a null backend whose operations succeed at
 * once, and compared with the physical limit of the medium, a bare 4K
 * memcpy + persist on the same kind of mapping (pc_pmem_copy from
 * core/pmem.h, that is libpmem2's memcpy function for the mapping).
 *
 *   microbench [--seconds N] [--threads LIST] [--no-writeback]
 *              [--dir DIR] [--cache-size SIZE] [--space SIZE]
 *              [--phases read,bare,write,flush,writeback,replay] [--pin]
 *              [--touch] [--repeat N]
 *   microbench --scale COUNTS [--key-size SIZE] [--cache-size SIZE]
 *              [--dir DIR]
 *
 * Measures, at each thread count of LIST (default 1,2):
 *   - 4K pc_read of cached data at random offsets (the whole 1 GiB
 *     space written first, one key per 4K block);
 *   - bare 4K pmem memcpy+persist, appended like the log does, over
 *     pages never written before (cold) and over written ones (warm),
 *     the mapping prefaulted first as the engine does;
 *   - bare 4K memcpy out of the mapping at random offsets (the
 *     read-side limit);
 *   - 4K pc_write at random 4K-aligned offsets in the 1 GiB space, on a
 *     fresh cache (a burst: the log runs over pages never written, and
 *     write-back waits, as it does while the cache absorbs a burst) and,
 *     with writeback, once the log has wrapped (warm: write-back and GC
 *     at full depth beside the writers);
 *   - the burst again with a pc_flush after every FLUSH_EVERY writes of
 *     each thread, and the cost per flush that implies;
 *   - write-back (writeback): a fresh cache with write-back held back
 *     (pcache-writeback-percent=100) takes 4K writes at distinct,
 *     non-adjacent offsets over 40% of it, and a timed pc_cache_drain
 *     writes them all to the null backend, with each thread count of
 *     LIST as pcache-writeback-threads: extents per second, in all and
 *     per thread, and wall and CPU time per extent;
 *   - replay (replay): a cache, workers not started, takes one 4K key
 *     per 4K of the space, at non-adjacent offsets in a random order,
 *     is closed, and is reopened three times: pc_cache_open (which
 *     walks the key log and indexes every key) and pc_cache_bind, in
 *     keys per second and seconds per million keys;
 * and reports RAM per cached 4K key: the keys and B+tree nodes the
 * index holds, and the growth of the heap and the index's chunks, and of
 * anonymous RSS, while the read set is written (these two in whole
 * 2 MiB chunks), each divided by the number of keys, next to
 * sizeof (struct pc_key).
 *
 * The writeback and GC workers run (against the null backend) unless
 * --no-writeback; they take CPU time of their own, which shows at two
 * threads on a two-CPU machine.
 *
 * --scale replaces the phases: for each key count of COUNTS (1M is
 * 2^20 keys), one child process fills a cache with that many keys of
 * --key-size bytes (default 512) at offsets twice that apart, so that
 * none merge, written in a random order by two threads without the
 * workers, and closes it; a second, fresh child reopens it and reports
 * the replay's wall and CPU time, the index's bytes per key, the growth
 * of its heap and index chunks and of anonymous RSS per key (as for
 * the read set), and its peak RSS (VmHWM, which includes the pages of
 * the log it read).  The cache is sized for the keys unless
 * --cache-size is given, and removed after each count.
 *
 * Cache files go to DIR (default /dev/shm), emulating persistent memory
 * with PMEM2_FORCE_GRANULARITY=CACHE_LINE unless the environment sets
 * it otherwise.  They are removed at exit.  Threads are named after
 * their phase (mb-write, mb-read, ...) for perf report --comms.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#include "pcache.h"
#include "pmem.h"
#include "index.h"
#include "slab.h"
#include "cache_internal.h"

#define BS 4096u
#define PC_ALIGN_UP_BS(n) (((uint64_t) (n) + BS - 1) / BS * BS)
#define MAX_THREADS 64

static double opt_seconds = 3;
static unsigned opt_threads[16] = { 1, 2 };
static unsigned opt_nthreads = 2;
static int opt_writeback = 1;
static int opt_pin;
static int opt_touch;
#define MAX_ROUNDS 15
static unsigned opt_repeat = 1;
static const char *opt_dir = "/dev/shm";
static uint64_t opt_cache_size = 2ULL << 30;
static uint64_t opt_space = 1ULL << 30;
static int do_read = 1, do_bare = 1, do_write = 1, do_flush = 1;
static int do_writeback = 1, do_replay = 1;
static int opt_cache_size_set;
/* --scale: key counts, and the size of each key. */
static uint64_t opt_scale[16];
static unsigned opt_nscale;
static uint64_t opt_key_size = 512;

/* The flush phase: a pc_flush after this many writes of each thread. */
#define FLUSH_EVERY 16

static char cache_path[4096], bare_path[4096];

static void
cleanup_files (void)
{
  if (cache_path[0])
    unlink (cache_path);
  if (bare_path[0])
    unlink (bare_path);
}

static void
on_signal (int sig)
{
  cleanup_files ();
  signal (sig, SIG_DFL);
  raise (sig);
}

static void
die (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  fprintf (stderr, "microbench: ");
  vfprintf (stderr, fmt, ap);
  fprintf (stderr, "\n");
  va_end (ap);
  cleanup_files ();
  exit (1);
}

static void
log_fn (int level, const char *fmt, va_list ap)
{
  if (level > 0)
    return;
  fprintf (stderr, "microbench: pcache: ");
  vfprintf (stderr, fmt, ap);
  fprintf (stderr, "\n");
}

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t
xorshift (uint64_t *s)
{
  uint64_t x = *s;

  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* Anonymous resident memory in bytes: resident minus file-backed
 * (shared) pages, so the cache mapping itself is not counted.
 */
static uint64_t
anon_rss (void)
{
  unsigned long size, resident, shared;
  FILE *f = fopen ("/proc/self/statm", "r");

  if (!f)
    return 0;
  if (fscanf (f, "%lu %lu %lu", &size, &resident, &shared) != 3)
    resident = shared = 0;
  fclose (f);
  return (uint64_t) (resident - shared) * sysconf (_SC_PAGESIZE);
}

static int
parse_size (const char *s, uint64_t *out)
{
  char *end;
  unsigned long long v;

  errno = 0;
  v = strtoull (s, &end, 10);
  if (errno || end == s)
    return -1;
  switch (*end) {
  case 'k': case 'K': v <<= 10; end++; break;
  case 'm': case 'M': v <<= 20; end++; break;
  case 'g': case 'G': v <<= 30; end++; break;
  case 't': case 'T': v <<= 40; end++; break;
  }
  if (*end == 'i' || *end == 'B')
    end++;
  if (*end == 'B')
    end++;
  if (*end)
    return -1;
  *out = v;
  return 0;
}

/* ------------------------------------------------------------------ */
/* The null backend. */

static _Atomic uint64_t null_reads, null_writes;

static int
null_pread (void *ctx, void *buf, uint32_t len, uint64_t off, int *err)
{
  (void) ctx; (void) off; (void) err;
  memset (buf, 0, len);
  atomic_fetch_add_explicit (&null_reads, 1, memory_order_relaxed);
  return 0;
}

static int
null_pwrite (void *ctx, const void *buf, uint32_t len, uint64_t off, int *err)
{
  (void) ctx; (void) buf; (void) len; (void) off; (void) err;
  atomic_fetch_add_explicit (&null_writes, 1, memory_order_relaxed);
  return 0;
}

static int
null_zero (void *ctx, uint32_t len, uint64_t off, int may_trim, int *err)
{
  (void) ctx; (void) len; (void) off; (void) may_trim; (void) err;
  return 0;
}

static int
null_trim (void *ctx, uint32_t len, uint64_t off, int *err)
{
  (void) ctx; (void) len; (void) off; (void) err;
  return 0;
}

static int
null_flush (void *ctx, int *err)
{
  (void) ctx; (void) err;
  return 0;
}

static const struct pc_backend_ops null_ops = {
  .pread = null_pread, .pwrite = null_pwrite, .zero = null_zero,
  .trim = null_trim, .flush = null_flush,
};
static const struct pc_backend null_backend = { &null_ops, NULL };

/* --touch: read one byte of every 4K page of the mapping, so that the
 * first store to each page does not fault.  On some virtual machines
 * (shadow page tables) the first user access to each page of a fresh
 * mapping costs about 10 us even after MADV_POPULATE_WRITE, and that
 * buries the engine's own cost under the burst's; the bare copy's cold
 * pass is touched the same way.
 */
static void
touch_map (struct pc_pmem *pm)
{
  const volatile uint8_t *p = pc_pmem_base (pm);
  uint64_t off, size = pc_pmem_size (pm);
  uint8_t sum = 0;

  for (off = 0; off < size; off += BS)
    sum += p[off];
  __asm__ volatile ("" : : "r" (sum));
}

/* A fresh cache of size bytes over a backend of space bytes.
 * wb_percent: pcache-writeback-percent, or PC_UNSET; wb_threads:
 * pcache-writeback-threads, or 0 for the default.  The workers run if
 * start (and not --no-writeback).
 */
static pc_cache *
cache_create_ex (uint64_t size, uint64_t space, int wb_percent,
                  unsigned wb_threads, int start)
{
  struct pc_config cfg;
  pc_cache *c;

  unlink (cache_path);
  pc_config_init (&cfg);
  cfg.path = cache_path;
  cfg.size = size;
  cfg.format = PC_FORMAT_FORCE;
  cfg.wb_percent = wb_percent;
  cfg.wb_threads = wb_threads;
  if (pc_cache_open (&cfg, &c) == -1)
    die ("cannot open %s: %s", cache_path, strerror (errno));
  if (pc_cache_bind (c, space) == -1)
    die ("cannot bind %s: %s", cache_path, strerror (errno));
  if (start && opt_writeback && pc_cache_start (c, &null_backend) == -1)
    die ("cannot start the workers: %s", strerror (errno));
  if (opt_touch)
    touch_map (c->pm);
  return c;
}

static pc_cache *
cache_create (int wb_percent)
{
  return cache_create_ex (opt_cache_size, opt_space, wb_percent, 0, 1);
}

static double cpu_now (void);

/* Open the existing cache file again (its log replayed) and bind it:
 * *open_s and *bind_s receive the time each took, *cpu_s the CPU time
 * of the process over both (which others' load on the machine does
 * not inflate, as it does the wall time).
 */
static pc_cache *
cache_reopen (uint64_t space, double *open_s, double *bind_s, double *cpu_s)
{
  struct pc_config cfg;
  pc_cache *c;
  double t0, t1, cpu0;

  pc_config_init (&cfg);
  cfg.path = cache_path;
  cpu0 = cpu_now ();
  t0 = now ();
  if (pc_cache_open (&cfg, &c) == -1)
    die ("cannot reopen %s: %s", cache_path, strerror (errno));
  t1 = now ();
  if (pc_cache_bind (c, space) == -1)
    die ("cannot bind %s: %s", cache_path, strerror (errno));
  *open_s = t1 - t0;
  *bind_s = now () - t1;
  *cpu_s = cpu_now () - cpu0;
  return c;
}

static void
cache_destroy (pc_cache *c)
{
  pc_cache_close (c);
  unlink (cache_path);
}

/* ------------------------------------------------------------------ */
/* Phases. */

enum op {
  OP_WRITE,          /* pc_write 4K at a random offset */
  OP_WRITE_FLUSH,    /* the same, and a pc_flush every FLUSH_EVERY */
  OP_READ,           /* pc_read 4K at a random offset */
  OP_BARE_COPY,      /* pmem memcpy+persist 4K, appended, wrapping */
  OP_BARE_COLD,      /* the same, one pass over untouched pages */
  OP_BARE_READ,      /* memcpy 4K out of the mapping, random */
};

struct run {
  enum op op;
  const char *name;
  unsigned nthreads;
  pc_cache *c;
  struct pc_pmem *pm;
  uint64_t max_ops;               /* per thread */
  pthread_barrier_t start;
  _Atomic int stop;
  _Atomic int failed;
  _Atomic unsigned done;
};

struct worker {
  struct run *run;
  unsigned id;
  uint64_t ops;
  double secs, cpu;                /* wall and thread CPU seconds */
  pthread_t tid;
};

static double
cpu_clock (clockid_t id)
{
  struct timespec ts;

  clock_gettime (id, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double
cpu_now (void)
{
  return cpu_clock (CLOCK_PROCESS_CPUTIME_ID);
}

static double
thread_cpu (void)
{
  return cpu_clock (CLOCK_THREAD_CPUTIME_ID);
}

static _Atomic unsigned phase_seq;

/* With --pin, measured thread i runs on the i-th CPU from the last, so
 * that a migration mid-measurement cannot move its figure.  The engine's
 * workers are left to the scheduler.
 */
static void
pin (unsigned i)
{
  long n = sysconf (_SC_NPROCESSORS_ONLN);
  cpu_set_t set;

  if (!opt_pin || n < 1)
    return;
  CPU_ZERO (&set);
  CPU_SET ((unsigned) (n - 1 - (long) i % n), &set);
  pthread_setaffinity_np (pthread_self (), sizeof set, &set);
}

/* One operation of thread w: 0 to go on, 1 when the thread is done
 * (the cold pass is over), -1 on failure.  *pos is where the bare copy
 * appends in region (region_len bytes).
 */
static int
worker_op (struct run *r, uint8_t *buf, uint64_t off, uint64_t ops,
           uint8_t *region, uint64_t region_len, uint64_t *pos)
{
  int err;

  switch (r->op) {
  case OP_WRITE:
  case OP_WRITE_FLUSH:
    if (pc_write (r->c, buf, BS, off, 0, &err) == -1) {
      fprintf (stderr, "microbench: pc_write: %s\n", strerror (err));
      return -1;
    }
    if (r->op == OP_WRITE_FLUSH && (ops + 1) % FLUSH_EVERY == 0 &&
        pc_flush (r->c, &err) == -1) {
      fprintf (stderr, "microbench: pc_flush: %s\n", strerror (err));
      return -1;
    }
    break;
  case OP_READ:
    if (pc_read (r->c, buf, BS, off, &null_backend, &err) == -1) {
      fprintf (stderr, "microbench: pc_read: %s\n", strerror (err));
      return -1;
    }
    break;
  case OP_BARE_COPY:
  case OP_BARE_COLD:
    pc_pmem_copy (r->pm, region + *pos, buf, BS);
    *pos += BS;
    if (*pos >= region_len) {
      if (r->op == OP_BARE_COLD)
        return 1;
      *pos = 0;
    }
    break;
  case OP_BARE_READ:
    memcpy (buf, region + off % region_len, BS);
    __asm__ volatile ("" : : "r" (buf) : "memory");
    break;
  }
  return 0;
}

static void *
worker_main (void *arg)
{
  struct worker *w = arg;
  struct run *r = w->run;
  uint64_t seed = 0x9e3779b97f4a7c15ULL *
    (w->id + 1 + 64 * atomic_fetch_add (&phase_seq, 1)) + (uint64_t) getpid ();
  uint64_t nblocks = opt_space / BS, ops = 0;
  uint8_t *buf = aligned_alloc (BS, BS);
  uint8_t *region = NULL;
  uint64_t region_len = 0, pos = 0;
  double t0, cpu0;

  if (!buf) {
    atomic_store (&r->failed, 1);
    pthread_barrier_wait (&r->start);
    goto out;
  }
  memset (buf, 0x5a + w->id, BS);
  /* Named after the phase, so a profile can tell them apart
   * (perf report --comms mb-write).
   */
  pthread_setname_np (pthread_self (), r->name);
  pin (w->id);
  if (r->pm) {
    /* Each thread appends to its own slice of the mapping. */
    region_len = pc_pmem_size (r->pm) / r->nthreads / BS * BS;
    region = (uint8_t *) pc_pmem_base (r->pm) + region_len * w->id;
  }

  pthread_barrier_wait (&r->start);
  t0 = now ();
  cpu0 = thread_cpu ();
  while (!atomic_load_explicit (&r->stop, memory_order_relaxed) &&
         ops < r->max_ops) {
    uint64_t off = (xorshift (&seed) % nblocks) * BS;
    int rc = worker_op (r, buf, off, ops, region, region_len, &pos);

    if (rc == -1) {
      atomic_store (&r->failed, 1);
      break;
    }
    ops++;
    if (rc == 1)
      break;
  }
  w->secs = now () - t0;
  w->ops = ops;
  w->cpu = thread_cpu () - cpu0;
 out:
  atomic_fetch_add (&r->done, 1);
  free (buf);
  return NULL;
}

struct result {
  int valid;
  double ops_per_thread;          /* mean over threads */
  double total;                   /* ops/s, all threads */
  double us_per_op;               /* per thread */
  double op_cpu_us;               /* CPU of the measured threads, per op */
  double cpu_us_per_op;           /* CPU of the whole process, per op */
};


/* Run op on nthreads threads for secs seconds or until each thread did
 * max_ops_total / nthreads operations.
 */
static struct result
run_phase (const char *name, enum op op, unsigned nthreads, pc_cache *c,
           struct pc_pmem *pm, double secs, uint64_t max_ops_total)
{
  struct run r = {
    .op = op, .name = name, .nthreads = nthreads, .c = c, .pm = pm,
  };
  struct worker w[MAX_THREADS];
  struct result res = { 1, 0, 0, 0, 0, 0 };
  struct timespec step = { 0, 5 * 1000 * 1000 };
  double ops = 0, tsecs = 0, tcpu = 0, end, cpu0;
  unsigned i;

  r.max_ops = max_ops_total == UINT64_MAX ? UINT64_MAX
    : max_ops_total / nthreads;
  pthread_barrier_init (&r.start, NULL, nthreads + 1);
  for (i = 0; i < nthreads; i++) {
    w[i] = (struct worker) { .run = &r, .id = i };
    if (pthread_create (&w[i].tid, NULL, worker_main, &w[i]) != 0)
      die ("pthread_create failed");
  }
  pthread_barrier_wait (&r.start);
  cpu0 = cpu_now ();
  end = now () + secs;
  while (now () < end && atomic_load (&r.done) < nthreads)
    nanosleep (&step, NULL);
  atomic_store (&r.stop, 1);
  for (i = 0; i < nthreads; i++) {
    pthread_join (w[i].tid, NULL);
    ops += w[i].ops;
    tsecs += w[i].secs;
    tcpu += w[i].cpu;
    if (w[i].secs > 0)
      res.total += w[i].ops / w[i].secs;
  }
  res.cpu_us_per_op = ops > 0 ? (cpu_now () - cpu0) / ops * 1e6 : 0;
  pthread_barrier_destroy (&r.start);
  if (atomic_load (&r.failed))
    die ("a worker failed");
  res.ops_per_thread = res.total / nthreads;
  res.us_per_op = ops > 0 ? tsecs / ops * 1e6 : 0;
  res.op_cpu_us = ops > 0 ? tcpu / ops * 1e6 : 0;
  return res;
}

/* Write every block of the space once (4K each), with two threads. */
struct fill_arg {
  pc_cache *c;
  uint64_t first, count;
};

static void *
fill_main (void *arg)
{
  struct fill_arg *a = arg;
  uint8_t *buf = aligned_alloc (BS, BS);
  uint64_t i;
  int err;

  if (!buf)
    return (void *) 1;
  memset (buf, 0xa5, BS);
  for (i = 0; i < a->count; i++)
    if (pc_write (a->c, buf, BS, (a->first + i) * BS, 0, &err) == -1) {
      fprintf (stderr, "microbench: fill: pc_write: %s\n", strerror (err));
      free (buf);
      return (void *) 1;
    }
  free (buf);
  return NULL;
}

static void
fill_space (pc_cache *c)
{
  uint64_t nblocks = opt_space / BS;
  struct fill_arg a[2] = {
    { c, 0, nblocks / 2 },
    { c, nblocks / 2, nblocks - nblocks / 2 },
  };
  pthread_t t[2];
  void *rv;
  int bad = 0, i;

  for (i = 0; i < 2; i++)
    if (pthread_create (&t[i], NULL, fill_main, &a[i]) != 0)
      die ("pthread_create failed");
  for (i = 0; i < 2; i++) {
    pthread_join (t[i], &rv);
    bad |= rv != NULL;
  }
  if (bad)
    die ("filling the read set failed");
}

/* Write n keys of len bytes, key i at offset perm (i) * stride, in the
 * order of a pseudo-random permutation of 0..n-1, so that neither the
 * log nor the index sees them in offset order; with stride > len no two
 * are adjacent, and none can merge.  Two threads, each half of the
 * permutation.
 */
struct keys_arg {
  pc_cache *c;
  uint64_t first, count, n;
  uint32_t len;
  uint64_t stride;
  unsigned bits;
};

/* A bijection of [0, 2^bits): multiplications by odd constants and
 * xorshifts, each invertible modulo 2^bits.
 */
static uint64_t
mix (uint64_t x, unsigned bits)
{
  uint64_t mask = bits >= 64 ? UINT64_MAX : (UINT64_C (1) << bits) - 1;
  unsigned sh = bits / 2 + 1;

  x = (x * UINT64_C (0x9e3779b97f4a7c15)) & mask;
  x ^= x >> sh;
  x = (x * UINT64_C (0xbf58476d1ce4e5b9)) & mask;
  x ^= x >> sh;
  return x;
}

/* The i-th element of the permutation of [0, n): cycle-walking the
 * bijection of the next power of two until it lands below n.
 */
static uint64_t
perm (uint64_t i, uint64_t n, unsigned bits)
{
  do
    i = mix (i, bits);
  while (i >= n);
  return i;
}

static void *
keys_main (void *arg)
{
  struct keys_arg *a = arg;
  uint8_t *buf = aligned_alloc (BS, PC_ALIGN_UP_BS (a->len));
  uint64_t i;
  int err;

  if (!buf)
    return (void *) 1;
  memset (buf, 0x3c, a->len);
  pthread_setname_np (pthread_self (), "mb-fill");
  for (i = a->first; i < a->first + a->count; i++) {
    uint64_t off = perm (i, a->n, a->bits) * a->stride;

    if (pc_write (a->c, buf, a->len, off, 0, &err) == -1) {
      fprintf (stderr, "microbench: fill: pc_write: %s\n", strerror (err));
      free (buf);
      return (void *) 1;
    }
  }
  free (buf);
  return NULL;
}

static void
write_keys (pc_cache *c, uint64_t n, uint32_t len, uint64_t stride)
{
  struct keys_arg a[2];
  pthread_t t[2];
  unsigned bits = 1;
  void *rv;
  int bad = 0, i;

  while (bits < 64 && (UINT64_C (1) << bits) < n)
    bits++;
  for (i = 0; i < 2; i++) {
    a[i] = (struct keys_arg) {
      .c = c, .first = i ? n / 2 : 0, .count = i ? n - n / 2 : n / 2,
      .n = n, .len = len, .stride = stride, .bits = bits,
    };
    if (pthread_create (&t[i], NULL, keys_main, &a[i]) != 0)
      die ("pthread_create failed");
  }
  for (i = 0; i < 2; i++) {
    pthread_join (t[i], &rv);
    bad |= rv != NULL;
  }
  if (bad)
    die ("writing the keys failed");
}

/* ------------------------------------------------------------------ */

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;

  return (x > y) - (x < y);
}

/* Median of v[0..n), which it sorts. */
static double
median (double *v, unsigned n)
{
  qsort (v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* w[i] / b[i] over n rounds: the median, and with more than one round
 * the spread (min-max), then what.
 */
static void
ratio (const char *what, unsigned n, const double *w, const double *b)
{
  double v[MAX_ROUNDS], m;
  unsigned i;

  for (i = 0; i < n; i++)
    v[i] = w[i] / b[i];
  m = median (v, n);
  if (n == 1)
    printf ("%.2fx %s", m, what);
  else
    printf ("%.2fx (%.2f-%.2f) %s", m, v[0], v[n - 1], what);
}

static void
usage (FILE *f)
{
  fprintf (f,
"usage: microbench [--seconds N] [--threads LIST] [--no-writeback]\n"
"                  [--dir DIR] [--cache-size SIZE] [--space SIZE]\n"
"                  [--phases LIST] [--pin] [--touch] [--repeat N]\n"
"       microbench --scale COUNTS [--key-size SIZE] [--cache-size SIZE]\n"
"                  [--dir DIR]\n"
"\n"
"  --seconds N       length of each measurement (default 3)\n"
"  --threads LIST    comma-separated thread counts (default 1,2)\n"
"  --no-writeback    do not start the engine's workers (writeback, GC,\n"
"                    commit timer); writes then only go to a fresh cache\n"
"                    and stop at 60%% of it\n"
"  --dir DIR         where the cache files go (default /dev/shm)\n"
"  --cache-size SIZE cache file size (default 2G)\n"
"  --space SIZE      backing size and random-offset space (default 1G)\n"
"  --phases LIST     which measurements: read,bare,write,flush,writeback,\n"
"                    replay (default all; e.g. --phases write to profile\n"
"                    the write path; flush: burst writes with a pc_flush\n"
"                    every 16; writeback: a drain of dirty 4K extents at\n"
"                    each --threads count as pcache-writeback-threads;\n"
"                    replay: reopening a cache of --space/4K keys)\n"
"  --pin             run measured thread i on the i-th CPU from the last:\n"
"                    steadier figures for the phases without workers,\n"
"                    but writers pinned beside running workers get less\n"
"                    CPU than the scheduler would give them\n"
"  --touch           read every page of each fresh mapping before it is\n"
"                    measured, so that the burst and the cold bare copy\n"
"                    do not pay a first-touch fault a page (shadow page\n"
"                    tables of some VMs: about 10 us a 4K page)\n"
"  --repeat N        run the read, bare, write and flush phases N times\n"
"                    (at most 15), one after the other, and give each\n"
"                    write and flush cost as the median of the N, with\n"
"                    its min-max (default 1)\n"
"  --scale COUNTS    instead of the phases: for each key count (e.g.\n"
"                    1M,4M; M = 2^20), fill a cache with that many keys,\n"
"                    close it, and time its reopen and the RAM it takes,\n"
"                    each in a fresh process\n"
"  --key-size SIZE   bytes per key for --scale (default 512)\n"
"  (--cache-size, with --scale, defaults to what the keys need)\n");
}

static void
parse_threads (const char *s)
{
  char *copy = strdup (s), *tok, *save = NULL;

  opt_nthreads = 0;
  for (tok = strtok_r (copy, ",", &save); tok;
       tok = strtok_r (NULL, ",", &save)) {
    long v = strtol (tok, NULL, 10);
    if (v < 1 || v > MAX_THREADS || opt_nthreads == 16) {
      fprintf (stderr, "microbench: bad --threads '%s'\n", s);
      exit (2);
    }
    opt_threads[opt_nthreads++] = v;
  }
  free (copy);
  if (opt_nthreads == 0) {
    fprintf (stderr, "microbench: bad --threads '%s'\n", s);
    exit (2);
  }
}

static void
row (const char *name, unsigned t, const struct result *r,
     const struct result *base)
{
  char vs[32];

  if (!r->valid)
    return;
  if (base && base->valid && base->us_per_op > 0)
    snprintf (vs, sizeof vs, "%.2fx", r->us_per_op / base->us_per_op);
  else
    snprintf (vs, sizeof vs, "-");
  printf ("%-34s %7u %12.0f %9.3f %7s %9.3f %9.3f\n", name, t,
          r->total, r->us_per_op, vs, r->op_cpu_us, r->cpu_us_per_op);
}

/* A drain of n dirty 4K extents with pcache-writeback-threads at
 * threads: wall and process CPU seconds, and the backend writes it made.
 */
struct wb_result {
  int valid;
  unsigned threads;
  uint64_t extents, dirty0, writes;
  double secs, cpu;
};

/* Reopens of a cache holding keys: pc_cache_open (which replays the
 * log) and pc_cache_bind, each time.
 */
#define REPLAY_RUNS 3
struct replay_result {
  int valid;
  uint64_t keys;
  double open_s[REPLAY_RUNS], bind_s[REPLAY_RUNS], cpu_s[REPLAY_RUNS];
};

/* The figures of every phase, one entry per thread count of --threads. */
struct results {
  struct result wcold[16], wwarm[16], wflush[16], rd[16];
  struct result bcold[16], bc[16], br[16];
  struct wb_result wb[16];
  struct replay_result replay;
};

/* Each round's figures. */
static struct results rounds[MAX_ROUNDS];

/* Entry i of the result array at offset off in round r's results. */
static const struct result *
round_result (unsigned r, size_t off, unsigned i)
{
  return (const struct result *) ((const char *) &rounds[r] + off) + i;
}

/* Write cost of the results at offset w in struct results against the
 * bare copy's at offset b, at thread index i, over every round.
 */
static void
cost (const char *what, unsigned i, size_t w, size_t b)
{
  double wt[MAX_ROUNDS], bt[MAX_ROUNDS], wo[MAX_ROUNDS], bo[MAX_ROUNDS];
  double wc[MAX_ROUNDS], bc[MAX_ROUNDS];
  unsigned r, n = 0, threads = opt_threads[i];

  for (r = 0; r < opt_repeat; r++) {
    const struct result *x = round_result (r, w, i);
    const struct result *y = round_result (r, b, i);

    if (!x->valid || !y->valid || y->us_per_op <= 0 || y->op_cpu_us <= 0)
      return;
    wt[n] = x->us_per_op;
    bt[n] = y->us_per_op;
    wo[n] = x->op_cpu_us;
    bo[n] = y->op_cpu_us;
    wc[n] = x->cpu_us_per_op;
    bc[n++] = y->cpu_us_per_op;
  }
  printf ("  %s, %u thread%s", what, threads, threads == 1 ? "" : "s");
  if (n > 1)
    printf (", median of %u rounds (min-max)", n);
  printf (": ");
  ratio ("in time per op, ", n, wt, bt);
  ratio ("in the writer's CPU per op, ", n, wo, bo);
  ratio ("in the process's CPU per op\n", n, wc, bc);
}

/* RAM per key: heap and anonymous RSS before and after the read set is
 * written, and the index's own count.
 */
struct ram {
  uint64_t rss0, rss1, heap0, heap1;
  uint64_t ix_keys, ix_bytes;
};

/* --phases: a comma-separated list of phase names. */
static int
parse_phases (const char *arg)
{
  char *copy = strdup (arg), *tok, *save = NULL;
  int ok = copy != NULL, any = 0;

  do_read = do_bare = do_write = do_flush = do_writeback = do_replay = 0;
  for (tok = copy ? strtok_r (copy, ",", &save) : NULL; ok && tok;
       tok = strtok_r (NULL, ",", &save), any = 1) {
    if (strcmp (tok, "read") == 0) do_read = 1;
    else if (strcmp (tok, "bare") == 0) do_bare = 1;
    else if (strcmp (tok, "write") == 0) do_write = 1;
    else if (strcmp (tok, "flush") == 0) do_flush = 1;
    else if (strcmp (tok, "writeback") == 0) do_writeback = 1;
    else if (strcmp (tok, "replay") == 0) do_replay = 1;
    else ok = 0;
  }
  free (copy);
  return ok && any ? 0 : -1;
}

/* --scale: comma-separated key counts, with k, M or G (powers of two:
 * 1M is 2^20 keys).
 */
static int
parse_scale (const char *arg)
{
  char *copy = strdup (arg), *tok, *save = NULL, *end;
  int ok = copy != NULL;

  opt_nscale = 0;
  for (tok = copy ? strtok_r (copy, ",", &save) : NULL; ok && tok;
       tok = strtok_r (NULL, ",", &save)) {
    double v = strtod (tok, &end);

    switch (*end) {
    case 'k': case 'K': v *= 1 << 10; end++; break;
    case 'm': case 'M': v *= 1 << 20; end++; break;
    case 'g': case 'G': v *= 1 << 30; end++; break;
    }
    if (*end || !(v >= 1 && v <= 1e10) || opt_nscale == 16)
      ok = 0;
    else
      opt_scale[opt_nscale++] = (uint64_t) v;
  }
  free (copy);
  return ok && opt_nscale ? 0 : -1;
}

/* One option; -1 to go on, else the exit status. */
static int
parse_option (int opt, const char *arg)
{
  char *end;

  switch (opt) {
  case 's':
    opt_seconds = strtod (arg, NULL);
    if (!(opt_seconds > 0 && opt_seconds <= 3600)) {
      fprintf (stderr, "microbench: bad --seconds '%s'\n", arg);
      return 2;
    }
    break;
  case 't': parse_threads (arg); break;
  case 'n': opt_writeback = 0; break;
  case 'P': opt_pin = 1; break;
  case 'T': opt_touch = 1; break;
  case 'r':
    opt_repeat = strtoul (arg, &end, 10);
    if (*arg == '\0' || *end || opt_repeat < 1 || opt_repeat > MAX_ROUNDS) {
      fprintf (stderr, "microbench: bad --repeat '%s' (1 to %d)\n", arg,
               MAX_ROUNDS);
      return 2;
    }
    break;
  case 'd': opt_dir = arg; break;
  case 'c':
    if (parse_size (arg, &opt_cache_size) == -1) {
      fprintf (stderr, "microbench: bad --cache-size '%s'\n", arg);
      return 2;
    }
    opt_cache_size_set = 1;
    break;
  case 'S':
    if (parse_size (arg, &opt_space) == -1 || opt_space < BS * 16) {
      fprintf (stderr, "microbench: bad --space '%s'\n", arg);
      return 2;
    }
    opt_space = opt_space / BS * BS;
    break;
  case 'p':
    if (parse_phases (arg) == -1) {
      fprintf (stderr, "microbench: bad --phases '%s'\n", arg);
      return 2;
    }
    break;
  case 'x':
    if (parse_scale (arg) == -1) {
      fprintf (stderr, "microbench: bad --scale '%s'\n", arg);
      return 2;
    }
    break;
  case 'k':
    if (parse_size (arg, &opt_key_size) == -1 || opt_key_size < 1 ||
        opt_key_size > BS) {
      fprintf (stderr, "microbench: bad --key-size '%s'\n", arg);
      return 2;
    }
    break;
  case 'h': usage (stdout); return 0;
  default: usage (stderr); return 2;
  }
  return -1;
}

/* The command line; -1 to go on, else the exit status. */
static int
parse_options (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "seconds", required_argument, NULL, 's' },
    { "threads", required_argument, NULL, 't' },
    { "no-writeback", no_argument, NULL, 'n' },
    { "dir", required_argument, NULL, 'd' },
    { "cache-size", required_argument, NULL, 'c' },
    { "space", required_argument, NULL, 'S' },
    { "phases", required_argument, NULL, 'p' },
    { "pin", no_argument, NULL, 'P' },
    { "touch", no_argument, NULL, 'T' },
    { "repeat", required_argument, NULL, 'r' },
    { "scale", required_argument, NULL, 'x' },
    { "key-size", required_argument, NULL, 'k' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int opt, r;

  while ((opt = getopt_long (argc, argv, "h", longopts, NULL)) != -1)
    if ((r = parse_option (opt, optarg)) != -1)
      return r;
  if (optind != argc) {
    usage (stderr);
    return 2;
  }
  if (opt_nscale == 0 && opt_space * 2 > opt_cache_size) {
    fprintf (stderr, "microbench: --cache-size must be at least twice "
             "--space (the read set must fit)\n");
    return 2;
  }
  return -1;
}

/* The environment, the file names and their removal at exit, and the
 * heading.
 */
static void
setup (void)
{
  setenv ("PMEM2_FORCE_GRANULARITY", "CACHE_LINE", 0);
  pc_set_log (log_fn);
  snprintf (cache_path, sizeof cache_path, "%s/pcache-microbench.%d.cache",
            opt_dir, (int) getpid ());
  snprintf (bare_path, sizeof bare_path, "%s/pcache-microbench.%d.bare",
            opt_dir, (int) getpid ());
  atexit (cleanup_files);
  signal (SIGINT, on_signal);
  signal (SIGTERM, on_signal);

  if (opt_nscale) {
    printf ("pcache core microbenchmark, scale: %u CPUs online, caches in "
            "%s (PMEM2_FORCE_GRANULARITY=%s)\n",
            (unsigned) sysconf (_SC_NPROCESSORS_ONLN), opt_dir,
            getenv ("PMEM2_FORCE_GRANULARITY"));
    fflush (stdout);
    return;
  }
  printf ("pcache core microbenchmark: %u-byte ops, %g s per measurement, "
          "%u CPUs online\n", BS, opt_seconds,
          (unsigned) sysconf (_SC_NPROCESSORS_ONLN));
  printf ("cache %" PRIu64 " MiB in %s (PMEM2_FORCE_GRANULARITY=%s), "
          "random offsets in %" PRIu64 " MiB, workers %s\n",
          opt_cache_size >> 20, opt_dir, getenv ("PMEM2_FORCE_GRANULARITY"),
          opt_space >> 20,
          opt_writeback ? "on (null backend)" : "off (--no-writeback)");
  fflush (stdout);
}

/* The heap in use, with the engine's slabs. */
static uint64_t
heap_bytes (void)
{
  struct mallinfo2 mi = mallinfo2 ();

  return mi.uordblks + mi.hblkhd + pc_slab_bytes ();
}

/* 1. RAM per key, then reads of cached data.  First, while the heap is
 * fresh, so that memory freed by earlier phases cannot hide the growth.
 */
static void
phase_read (struct results *res, struct ram *ram)
{
  pc_cache *c = cache_create (PC_UNSET);
  unsigned i;

  ram->heap0 = heap_bytes ();
  ram->rss0 = anon_rss ();
  fill_space (c);
  if (opt_writeback) {
    int err;
    /* Let writeback finish so that its batch memory is freed. */
    if (pc_cache_drain (c, &err) == -1)
      die ("drain failed: %s", strerror (err));
  }
  ram->heap1 = heap_bytes ();
  ram->rss1 = anon_rss ();
  pc_cache_index_usage (c, &ram->ix_keys, &ram->ix_bytes);
  atomic_store (&null_reads, 0);
  for (i = 0; i < opt_nthreads; i++)
    res->rd[i] = run_phase ("mb-read", OP_READ, opt_threads[i], c, NULL,
                            opt_seconds, UINT64_MAX);
  cache_destroy (c);
  if (atomic_load (&null_reads))
    fprintf (stderr, "microbench: warning: %" PRIu64 " reads missed the "
             "cache\n", (uint64_t) atomic_load (&null_reads));
}

/* 2. The bare copy on the same kind of mapping, prefaulted as
 * pc_cache_start does: once over fresh (allocated, never written)
 * pages, then over written ones.
 */
static void
phase_bare (struct results *res)
{
  struct pc_pmem *pm;
  int created;
  unsigned i;

  for (i = 0; i < opt_nthreads; i++) {
    unlink (bare_path);
    if (pc_pmem_open (bare_path, opt_cache_size, 1, &pm, &created) == -1)
      die ("cannot map %s: %s", bare_path, strerror (errno));
    pc_pmem_prefault (pm);
    if (opt_touch)
      touch_map (pm);
    if (i == 0 && res == &rounds[0]) {
      printf ("mapping granularity: %s\n", pc_pmem_granularity (pm));
      fflush (stdout);
    }
    res->bcold[i] = run_phase ("mb-bare-cold", OP_BARE_COLD, opt_threads[i],
                               NULL, pm, opt_seconds, UINT64_MAX);
    memset (pc_pmem_base (pm), 0, pc_pmem_size (pm));
    res->bc[i] = run_phase ("mb-bare-copy", OP_BARE_COPY, opt_threads[i],
                            NULL, pm, opt_seconds, UINT64_MAX);
    res->br[i] = run_phase ("mb-bare-read", OP_BARE_READ, opt_threads[i],
                            NULL, pm, opt_seconds, UINT64_MAX);
    pc_pmem_close (pm);
    unlink (bare_path);
  }
}

/* 3. Writes, on a fresh cache for each thread count: first while the
 * log runs over pages never written, then, with writeback, once the log
 * has wrapped (warm).  With pcache-writeback-percent=100, write-back
 * waits until GC needs space: the first writes are a burst that the
 * cache absorbs, and the warm ones have write-back and GC running flat
 * out, as they must to keep up.
 */
static void
phase_write (struct results *res)
{
  uint64_t cache_blocks = opt_cache_size / BS;
  unsigned i;

  for (i = 0; i < opt_nthreads; i++) {
    unsigned t = opt_threads[i];
    pc_cache *c = cache_create (100);

    res->wcold[i] = run_phase ("mb-write-cold", OP_WRITE, t, c, NULL,
                               opt_seconds, cache_blocks * 6 / 10);
    if (opt_writeback) {
      /* Wrap the log: write the cache's size once more. */
      run_phase ("mb-wrap", OP_WRITE, 2, c, NULL, 600,
                 cache_blocks * 12 / 10);
      res->wwarm[i] = run_phase ("mb-write", OP_WRITE, t, c, NULL,
                                 opt_seconds, UINT64_MAX);
    }
    cache_destroy (c);
  }
}

/* 4. Burst writes again, each thread flushing after every FLUSH_EVERY of
 * its writes, as a file system or database does: the difference from
 * the burst is what the flushes cost.
 */
static void
phase_flush (struct results *res)
{
  uint64_t cache_blocks = opt_cache_size / BS;
  unsigned i;

  for (i = 0; i < opt_nthreads; i++) {
    pc_cache *c = cache_create (100);

    res->wflush[i] = run_phase ("mb-write-flush", OP_WRITE_FLUSH,
                                opt_threads[i], c, NULL, opt_seconds,
                                cache_blocks * 6 / 10);
    cache_destroy (c);
  }
}

/* 5. Write-back: a fresh cache with pcache-writeback-percent=100 takes
 * n 4K writes at distinct, non-adjacent offsets (40% of the cache, below
 * pcache-gc-percent, so that write-back waits), a flush commits them,
 * and a drain, timed, writes them all back to the null backend.  Each
 * thread count of --threads is a pcache-writeback-threads value.
 */
static void
phase_writeback (struct results *res)
{
  uint64_t n = opt_cache_size / BS * 4 / 10;
  unsigned i;

  for (i = 0; i < opt_nthreads; i++) {
    struct wb_result *w = &res->wb[i];
    pc_cache *c = cache_create_ex (opt_cache_size, 2 * n * BS, 100,
                                   opt_threads[i], 1);
    struct pc_stats st0, st1;
    double t0, cpu0;
    int err;

    write_keys (c, n, BS, 2 * BS);
    if (pc_flush (c, &err) == -1)
      die ("pc_flush: %s", strerror (err));
    pc_cache_get_stats (c, &st0);
    atomic_store (&null_writes, 0);
    t0 = now ();
    cpu0 = cpu_now ();
    if (pc_cache_drain (c, &err) == -1)
      die ("drain failed: %s", strerror (err));
    w->secs = now () - t0;
    w->cpu = cpu_now () - cpu0;
    pc_cache_get_stats (c, &st1);
    w->writes = atomic_load (&null_writes);
    w->extents = (st1.writeback_bytes - st0.writeback_bytes) / BS;
    w->dirty0 = st0.dirty_bytes / BS;
    w->threads = opt_threads[i];
    w->valid = 1;
    cache_destroy (c);
  }
}

/* 6. Replay: a cache (workers not started) takes the 4K keys of the
 * read set at non-adjacent offsets in a random order, is closed
 * cleanly, and is reopened REPLAY_RUNS times: pc_cache_open walks the
 * key log and indexes every key, pc_cache_bind checks the generation
 * records and finds the namespace.
 */
static void
phase_replay (struct results *res)
{
  struct replay_result *r = &res->replay;
  uint64_t n = opt_space / BS, space = 2 * opt_space, bytes;
  pc_cache *c = cache_create_ex (opt_cache_size, space, PC_UNSET, 0, 0);
  unsigned i;

  write_keys (c, n, BS, 2 * BS);
  pc_cache_close (c);
  for (i = 0; i < REPLAY_RUNS; i++) {
    c = cache_reopen (space, &r->open_s[i], &r->bind_s[i], &r->cpu_s[i]);
    pc_cache_index_usage (c, &r->keys, &bytes);
    pc_cache_close (c);
  }
  unlink (cache_path);
  r->valid = 1;
}

static void
print_writeback (const struct results *res)
{
  unsigned i;

  printf ("\nwrite-back (a drain of dirty 4K extents, null backend):\n"
          "%-8s %10s %10s %12s %12s %9s %9s\n", "threads", "extents",
          "writes", "extents/s", "per thread", "us/ext", "CPU/ext");
  for (i = 0; i < opt_nthreads; i++) {
    const struct wb_result *w = &res->wb[i];
    double rate;

    if (!w->valid || w->secs <= 0 || w->extents == 0)
      continue;
    rate = w->extents / w->secs;
    printf ("%-8u %10" PRIu64 " %10" PRIu64 " %12.0f %12.0f %9.3f %9.3f\n",
            w->threads, w->extents, w->writes, rate, rate / w->threads,
            w->secs / w->extents * 1e6, w->cpu / w->extents * 1e6);
    if (w->dirty0 != w->extents)
      printf ("  (%" PRIu64 " extents were dirty when the drain began)\n",
              w->dirty0);
  }
}

static void
print_replay (const struct results *res)
{
  const struct replay_result *r = &res->replay;
  double tot[REPLAY_RUNS], med, open_med[REPLAY_RUNS], cpu[REPLAY_RUNS];
  unsigned i;

  if (!r->valid || r->keys == 0)
    return;
  for (i = 0; i < REPLAY_RUNS; i++) {
    tot[i] = r->open_s[i] + r->bind_s[i];
    open_med[i] = r->open_s[i];
    cpu[i] = r->cpu_s[i];
  }
  qsort (tot, REPLAY_RUNS, sizeof *tot, cmp_double);
  qsort (open_med, REPLAY_RUNS, sizeof *open_med, cmp_double);
  qsort (cpu, REPLAY_RUNS, sizeof *cpu, cmp_double);
  med = tot[REPLAY_RUNS / 2];
  printf ("\nreplay (reopen of a cache holding %" PRIu64 " 4K keys, "
          "median of %d): %.3f s (open %.3f s, CPU %.3f s), %.0f keys/s, "
          "%.3f s per million keys; fastest %.3f s, slowest %.3f s\n",
          r->keys, REPLAY_RUNS, med, open_med[REPLAY_RUNS / 2],
          cpu[REPLAY_RUNS / 2], r->keys / med, med / r->keys * 1e6, tot[0],
          tot[REPLAY_RUNS - 1]);
}

/* us/op: wall time per op and thread.  CPU/op: CPU time of the threads
 * measured, per op.  all CPU/op: CPU time of the whole process (the
 * engine's writeback and GC too) per op.
 */
static void
print_table (const struct results *res)
{
  unsigned i;

  printf ("\n%-34s %7s %12s %9s %7s %9s %9s\n", "operation", "threads",
          "ops/s total", "us/op", "vs bare", "CPU/op", "all CPU/op");
  for (i = 0; i < opt_nthreads; i++) {
    unsigned t = opt_threads[i];

    row ("bare 4K memcpy+persist, cold", t, &res->bcold[i], NULL);
    row ("pc_write 4K, burst (fresh cache)", t, &res->wcold[i],
         &res->bcold[i]);
    row ("bare 4K memcpy+persist", t, &res->bc[i], NULL);
    row ("pc_write 4K, warm (log wrapped)", t, &res->wwarm[i], &res->bc[i]);
    row ("pc_write 4K, burst, flush every 16", t, &res->wflush[i],
         &res->bcold[i]);
    row ("bare 4K memcpy (read)", t, &res->br[i], NULL);
    row ("pc_read 4K, cache hit", t, &res->rd[i], &res->br[i]);
  }
}

/* Write cost against the bare copy: burst against cold, warm against
 * warm (without writeback the log cannot wrap).
 */
static void
print_write_cost (void)
{
  unsigned i;

  printf ("\nwrite cost / bare copy (target <= 1.5x):\n");
  for (i = 0; i < opt_nthreads; i++) {
    cost ("burst", i, offsetof (struct results, wcold),
          offsetof (struct results, bcold));
    if (opt_writeback)
      cost ("warm", i, offsetof (struct results, wwarm),
            offsetof (struct results, bc));
  }
}

static void
print_flush_cost (void)
{
  unsigned i, r;

  printf ("\nflush cost (burst writes, a pc_flush after every %d of each "
          "thread's):\n", FLUSH_EVERY);
  for (i = 0; i < opt_nthreads; i++) {
    double t[MAX_ROUNDS], cpu[MAX_ROUNDS];
    unsigned n = 0;

    for (r = 0; r < opt_repeat; r++) {
      const struct result *f = &rounds[r].wflush[i], *w = &rounds[r].wcold[i];

      if (f->valid && w->valid) {
        t[n] = (f->us_per_op - w->us_per_op) * FLUSH_EVERY;
        cpu[n++] = (f->op_cpu_us - w->op_cpu_us) * FLUSH_EVERY;
      }
    }
    if (n == 0)
      continue;
    printf ("  %u thread%s%s: %.2f us per flush in time, %.2f us in the "
            "writer's CPU\n", opt_threads[i], opt_threads[i] == 1 ? "" : "s",
            n > 1 ? " (medians)" : "", median (t, n), median (cpu, n));
  }
}

static void
print_ram (const struct ram *ram)
{
  uint64_t nkeys = opt_space / BS;

  printf ("\nRAM per cached 4K key: %.1f bytes of keys and B+tree nodes "
          "in use (%" PRIu64 " keys); "
          "%.1f bytes of heap and index chunks, %.1f bytes of "
          "anonymous RSS (+%.1f MiB over %" PRIu64 " keys), both in "
          "whole 2 MiB chunks;\n"
          "sizeof (struct pc_key) = %zu bytes\n",
          ram->ix_keys ? (double) ram->ix_bytes / ram->ix_keys : 0.0,
          ram->ix_keys,
          (double) (ram->heap1 - ram->heap0) / nkeys,
          (double) (int64_t) (ram->rss1 - ram->rss0) / nkeys,
          (double) (int64_t) (ram->rss1 - ram->rss0) / 1048576.0, nkeys,
          sizeof (struct pc_key));
}

/* ------------------------------------------------------------------ */
/* --scale: replay time and RAM at millions of keys. */

/* A field of /proc/self/status, in bytes (the kernel gives kB). */
static uint64_t
status_bytes (const char *field)
{
  char line[256];
  size_t len = strlen (field);
  uint64_t v = 0;
  FILE *f = fopen ("/proc/self/status", "r");

  if (!f)
    return 0;
  while (fgets (line, sizeof line, f))
    if (strncmp (line, field, len) == 0 && line[len] == ':') {
      v = strtoull (line + len + 1, NULL, 10) * 1024;
      break;
    }
  fclose (f);
  return v;
}

struct scale_result {
  int ok;
  uint64_t keys, ix_keys, ix_bytes;
  double fill_s, open_s, bind_s, cpu_s;
  uint64_t heap0, heap1, rss0, rss1, hwm, rss_file;
};

/* The cache size for n keys of --key-size bytes, unless --cache-size:
 * their payload (in 64-byte granules) and log records (32 bytes each, a
 * 32-byte header per 128), an eighth more for partly used segments, and
 * 256 MiB, in whole GiB.
 */
static uint64_t
scale_cache_size (uint64_t n)
{
  uint64_t payload = n * ((opt_key_size + 63) / 64 * 64);
  uint64_t log = n * 32 + n / 128 * 64 + (64 << 20);
  uint64_t want = (payload + log) * 9 / 8 + (256 << 20);

  if (opt_cache_size_set)
    return opt_cache_size;
  return (want + (UINT64_C (1) << 30) - 1) >> 30 << 30;
}

/* Run fn in a child process, which sends back *r through a pipe: each
 * step of a scale point starts from a fresh heap, and the reopen's peak
 * RSS is its own.
 */
static void
in_child (void (*fn) (struct scale_result *, uint64_t), uint64_t n,
          struct scale_result *r)
{
  int fd[2], status;
  pid_t pid;
  ssize_t got;

  fflush (stdout);
  if (pipe (fd) == -1)
    die ("pipe: %s", strerror (errno));
  pid = fork ();
  if (pid == -1)
    die ("fork: %s", strerror (errno));
  if (pid == 0) {
    close (fd[0]);
    fn (r, n);
    if (write (fd[1], r, sizeof *r) != (ssize_t) sizeof *r)
      _exit (1);
    _exit (0);
  }
  close (fd[1]);
  got = read (fd[0], r, sizeof *r);
  close (fd[0]);
  if (waitpid (pid, &status, 0) == -1 || !WIFEXITED (status) ||
      WEXITSTATUS (status) != 0 || got != (ssize_t) sizeof *r)
    die ("a child process failed");
}

/* Make a cache holding n keys of --key-size bytes at offsets 2 *
 * --key-size apart (so none merge), written in a random order by two
 * threads, workers not started (nothing is written back), and close it.
 */
static void
scale_fill (struct scale_result *r, uint64_t n)
{
  uint64_t stride = 2 * opt_key_size;
  pc_cache *c = cache_create_ex (scale_cache_size (n), n * stride, PC_UNSET,
                                 0, 0);
  double t0 = now ();

  write_keys (c, n, opt_key_size, stride);
  pc_cache_close (c);
  r->fill_s = now () - t0;
  r->ok = 1;
}

/* Reopen it: the replay, and what it leaves in RAM. */
static void
scale_replay (struct scale_result *r, uint64_t n)
{
  pc_cache *c;

  r->heap0 = heap_bytes ();
  r->rss0 = anon_rss ();
  c = cache_reopen (n * 2 * opt_key_size, &r->open_s, &r->bind_s,
                    &r->cpu_s);
  r->heap1 = heap_bytes ();
  r->rss1 = anon_rss ();
  r->hwm = status_bytes ("VmHWM");
  r->rss_file = status_bytes ("RssFile") + status_bytes ("RssShmem");
  pc_cache_index_usage (c, &r->ix_keys, &r->ix_bytes);
  pc_cache_close (c);
  r->keys = n;
  r->ok = 1;
}

static void
run_scale (void)
{
  unsigned i;

  printf ("scale: %" PRIu64 "-byte keys at offsets %" PRIu64 " apart, "
          "written in a random order, workers not started; replay = "
          "pc_cache_open + pc_cache_bind in a fresh process\n",
          opt_key_size, 2 * opt_key_size);
  printf ("%10s %6s %7s %9s %8s %8s %8s %10s %9s %9s %9s\n", "keys",
          "cache", "fill s", "replay s", "open s", "CPU s", "s per M",
          "index B/k", "heap B/k", "anon B/k", "peak RSS");
  for (i = 0; i < opt_nscale; i++) {
    uint64_t n = opt_scale[i];
    struct scale_result f = { 0 }, r = { 0 };
    double rs;

    in_child (scale_fill, n, &f);
    in_child (scale_replay, n, &r);
    unlink (cache_path);
    rs = r.open_s + r.bind_s;
    printf ("%10" PRIu64 " %5" PRIu64 "G %7.1f %9.3f %8.3f %8.3f %8.3f "
            "%10.1f %9.1f %9.1f %8.0fM\n",
            n, scale_cache_size (n) >> 30, f.fill_s, rs, r.open_s, r.cpu_s,
            rs / n * 1e6, r.ix_keys ? (double) r.ix_bytes / r.ix_keys : 0.0,
            (double) (int64_t) (r.heap1 - r.heap0) / n,
            (double) (int64_t) (r.rss1 - r.rss0) / n,
            r.hwm / 1048576.0);
    if (r.ix_keys != n)
      printf ("  (the index holds %" PRIu64 " keys)\n", r.ix_keys);
    printf ("  peak RSS %.0f MiB, of which %.0f MiB of the mapping "
            "(file pages) at the end\n", r.hwm / 1048576.0,
            r.rss_file / 1048576.0);
    fflush (stdout);
  }
}

int
main (int argc, char **argv)
{
  struct ram ram = { 0 };
  int r = parse_options (argc, argv);
  unsigned round;

  if (r != -1)
    return r;
  setup ();
  if (opt_nscale) {
    run_scale ();
    return 0;
  }
  /* Rounds interleave the bare copy and the engine, so that a change in
   * what the rest of the machine does moves both.
   */
  for (round = 0; round < opt_repeat; round++) {
    struct results *res = &rounds[round];

    if (opt_repeat > 1) {
      printf ("\nround %u of %u\n", round + 1, opt_repeat);
      fflush (stdout);
    }
    if (do_read)
      phase_read (res, &ram);
    if (do_bare)
      phase_bare (res);
    if (do_write)
      phase_write (res);
    if (do_flush)
      phase_flush (res);
    if (do_read || do_bare || do_write || do_flush)
      print_table (res);
  }
  if (do_writeback && opt_writeback)
    phase_writeback (&rounds[0]);
  if (do_replay)
    phase_replay (&rounds[0]);

  if (do_write && do_bare)
    print_write_cost ();
  if (do_write && do_flush)
    print_flush_cost ();
  if (do_read)
    print_ram (&ram);
  if (do_writeback && opt_writeback)
    print_writeback (&rounds[0]);
  if (do_replay)
    print_replay (&rounds[0]);
  return 0;
}
