/* SPDX-License-Identifier: BSD-3-Clause */
/* Helpers shared by the unit tests and the crash rig (crash-sim,
 * corrupt): scratch directories for cache files, an in-memory backing
 * store, data patterns, log capture, media access and a one-call cache
 * open.  The helpers that assert (tu_write, tu_flush) are in
 * testutil-cu.c, so that a program without CUnit links without them.
 *
 * Every symbol here starts with tu_ so that a test file can use any
 * other name it likes.
 */
#ifndef PC_TESTUTIL_H
#define PC_TESTUTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "pcache.h"

#define TU_KIB (UINT64_C (1) << 10)
#define TU_MIB (UINT64_C (1) << 20)

/* ------------------------------------------------------------------ */
/* Scratch directory under /dev/shm (mkdtemp), one per test program. */

/* Create the directory (once); returns its path, or NULL. */
const char *tu_dir_create (void);
/* Path of name inside the directory, in a static ring of buffers (the
 * last eight results stay valid).
 */
const char *tu_path (const char *name);
/* Remove every file in the directory, then the directory. */
void tu_dir_remove (void);
/* A new scratch directory pcache-TAG-XXXXXX in out: under
 * $PCACHE_CRASH_TMPDIR, else /dev/shm (the cache must be on a file
 * system that can be mapped shared), else $TMPDIR or /tmp.
 */
int tu_mkdtemp (char *out, size_t len, const char *tag);

/* ------------------------------------------------------------------ */
/* In-memory backend. */

enum tu_op { TU_OP_WRITE = 'w', TU_OP_ZERO = 'z', TU_OP_TRIM = 't',
             TU_OP_FLUSH = 'f', TU_OP_READ = 'r' };

struct tu_log_ent {
  char op;                      /* enum tu_op */
  uint64_t off;
  uint32_t len;
  uint8_t first;                /* first byte written (0 for zero/trim) */
};

struct tu_mem {
  pthread_mutex_t lock;
  uint8_t *buf;
  uint64_t size;

  /* Counters (read them under lock, or when the cache is quiet). */
  uint64_t npread, npwrite, nzero, ntrim, nflush;
  uint64_t pread_bytes, pwrite_bytes;
  uint64_t nfailed;             /* operations failed on purpose */

  /* Fail the next N pwrite/zero/trim (fail_writes) or flush calls. */
  unsigned fail_writes, fail_flushes;

  /* Write log, recorded while log_on is set. */
  int log_on;
  struct tu_log_ent *log;
  size_t nlog, caplog;

  /* A disk with a volatile write cache (tu_mem_new_volatile): writes,
   * zeroes and trims (which zero) go to buf, a flush copies them to
   * dur, and a power loss keeps dur.  dur is NULL otherwise.
   */
  uint8_t *dur;
  int dirty;                    /* buf differs from dur (maybe) */
  uint8_t *dmap;                /* per TU_BLK block: written since flush */
  uint64_t *dlist, ndirty;      /* those blocks */

  /* Called, under the lock, before each write, zero, trim or flush
   * that is going to happen (op is an enum tu_op): the crash simulator
   * counts them as crash points.
   */
  void (*hook) (void *opaque, int op);
  void *hook_opaque;
};

/* A backend of size bytes, every byte set to init. */
struct tu_mem *tu_mem_new (uint64_t size, int init);
/* The same with a volatile write cache: buf and dur set to init. */
struct tu_mem *tu_mem_new_volatile (uint64_t size, int init);
void tu_mem_free (struct tu_mem *m);
/* The pc_backend that serves from m (ops are static). */
struct pc_backend tu_mem_backend (struct tu_mem *m);
/* Thread-safe knobs and snapshots. */
void tu_mem_fail (struct tu_mem *m, unsigned writes, unsigned flushes);
void tu_mem_log (struct tu_mem *m, int on);
uint64_t tu_mem_preads (struct tu_mem *m);
/* Copy len bytes at off out of the backend. */
void tu_mem_get (struct tu_mem *m, void *dst, uint32_t len, uint64_t off);

/* A backend that only fails (EIO), for paths that must not reach it. */
struct pc_backend tu_fail_backend (void);

/* A backend that forwards every call to inner, and calls before and
 * after (each if set) around every pwrite: a test embeds it first in a
 * struct of its own to hold or meter writeback's writes.  op, if set,
 * is called around every call of any kind (enum tu_op), with done 0
 * before the inner call and 1 after it.
 */
struct tu_hook {
  struct pc_backend inner;
  void (*before) (struct tu_hook *h);
  void (*after) (struct tu_hook *h);
  void (*op) (struct tu_hook *h, char op, uint64_t off, int done);
};
struct pc_backend tu_hook_backend (struct tu_hook *h);

/* ------------------------------------------------------------------ */
/* Data patterns: byte i of a pattern depends on the absolute offset
 * (off + i) and a seed, so misplaced data never matches.
 */
void tu_fill (void *buf, size_t len, uint64_t off, uint32_t seed);
/* Offset of the first mismatch within buf, or -1 if all match. */
long tu_check (const void *buf, size_t len, uint64_t off, uint32_t seed);
/* Offset of the first byte that is not b, or -1. */
long tu_check_byte (const void *buf, size_t len, uint8_t b);

/* Versioned TU_BLK-byte blocks: version ver of block blk is a header
 * naming both, then filler that depends on both, so a block never
 * passes for another block, another version, or a mix of two.
 */
#define TU_BLK          4096u
/* What tu_block_decode finds besides a version. */
#define TU_V_ZERO       UINT32_MAX          /* all zero bytes */
#define TU_V_GARBAGE    (UINT32_MAX - 1)    /* anything else */
#define TU_V_WRONGBLK   (UINT32_MAX - 2)    /* another block's data */
void tu_block_fill (void *p, uint64_t blk, uint32_t ver);
/* The version of block blk in p, or a TU_V_ value. */
uint32_t tu_block_decode (const void *p, uint64_t blk);
/* "original" (version 0), "v3", "zeroes", ... in buf. */
const char *tu_block_name (uint32_t v, char *buf, size_t len);

/* Small deterministic PRNG (xorshift64*). */
uint64_t tu_rand (uint64_t *state);
/* A 64-bit mix (splitmix64's finalizer). */
uint64_t tu_mix (uint64_t x);
/* A PRNG state made from seed (never 0). */
uint64_t tu_seed (uint64_t seed);
/* A number below n (n > 0). */
uint64_t tu_below (uint64_t *state, uint64_t n);

/* ------------------------------------------------------------------ */
/* Log capture.  tu_log_install sends the engine's log here; errors are
 * kept (the last 16 KiB of them), and echoed to stderr when TU_VERBOSE
 * is set in the environment.
 */
void tu_log_install (void);
/* 0: echo nothing; 1: echo the errors; 2: keep and echo every message.
 * Overrides TU_VERBOSE.
 */
void tu_log_echo (int level);
void tu_log_clear (void);
/* Whether the errors logged since the last clear contain s. */
int tu_log_has (const char *s);
/* Everything logged since the last clear. */
const char *tu_log_text (void);

/* ------------------------------------------------------------------ */
/* Files: raw access to a cache file (never while the cache is open
 * unless only reading).
 */
int tu_file_read (const char *path, uint64_t off, void *buf, size_t len);
int tu_file_write (const char *path, uint64_t off, const void *buf,
                   size_t len);
/* Write buf as the whole content of path (created or truncated). */
int tu_file_put (const char *path, const void *buf, size_t len);
/* XOR the byte at off with x. */
int tu_file_xor (const char *path, uint64_t off, uint8_t x);
int tu_file_copy (const char *src, const char *dst);
/* Whether the two files are byte for byte equal. */
int tu_file_same (const char *a, const char *b);
/* Create (or truncate) path with size bytes from fn: 0 = zeroes,
 * 1 = random bytes from seed.
 */
int tu_file_make (const char *path, uint64_t size, int random, uint64_t seed);

/* ------------------------------------------------------------------ */
/* Opening a cache. */

/* pc_config_init, then path, size and seg_size = PC_MIN_SEG_SIZE. */
void tu_config (struct pc_config *cfg, const char *path, uint64_t size);
/* pc_cache_open + pc_cache_bind.  Returns the cache, or NULL (errno
 * set, the cache closed).
 */
pc_cache *tu_open (const struct pc_config *cfg, uint64_t backing_size);
/* tu_config + tu_open. */
pc_cache *tu_open_simple (const char *path, uint64_t size,
                          uint64_t backing_size);
/* tu_open with reads that do not cache (cache_on_read off), so that
 * checking a cache never changes its log; lenient: accept a damaged log
 * (it ends at the first bad kset).
 */
pc_cache *tu_reopen (const char *path, uint64_t size, uint64_t backing_size,
                     int lenient);
/* Whether [off, off+len) reads through c (misses from bk) as pattern
 * seed, or as bytes b.
 */
int tu_reads_pattern (pc_cache *c, const struct pc_backend *bk,
                      uint64_t off, uint32_t len, uint32_t seed);
int tu_reads_byte (pc_cache *c, const struct pc_backend *bk, uint64_t off,
                   uint32_t len, uint8_t b);

/* ------------------------------------------------------------------ */
/* pc_map, collected: adjacent extents of one type are merged. */
struct tu_ext {
  uint64_t off, len;
  int type;                     /* enum pc_map_type */
};
struct tu_map {
  struct tu_ext e[256];
  size_t n;
  int overflow;
};
int tu_map_collect (pc_cache *c, uint64_t off, uint64_t len,
                    struct tu_map *m);
/* Type reported for every byte of [off, off+len), or -1 if mixed. */
int tu_map_type (const struct tu_map *m, uint64_t off, uint64_t len);
/* tu_map_collect + tu_map_type; -2 if pc_map failed or overflowed. */
int tu_type_at (pc_cache *c, uint64_t off, uint64_t len);

/* ------------------------------------------------------------------ */
/* Test cases' shorthands. */

/* tu_path (name) with no file there. */
const char *tu_fresh (const char *name);
/* testutil-cu.c (CUnit): pc_write of pattern seed at off, and pc_flush;
 * each asserts that the call succeeded.
 */
void tu_write (pc_cache *c, uint64_t off, uint32_t len, uint32_t seed);
void tu_flush (pc_cache *c);

/* A cache (bound, workers not started) over a memory backend of
 * bsize bytes, and a model of what the disk should read as: init
 * fills both with that byte, or with pattern 77 if negative.  base
 * gives the settings (NULL: defaults); path, size (csize) and 1 MiB
 * segments are the rig's.  tu_rig_close frees all of it.
 */
struct tu_rig {
  const char *path;
  struct tu_mem *mem;
  struct pc_backend be;
  pc_cache *c;
  uint8_t *model;
};
int tu_rig_open (struct tu_rig *r, const char *name,
                 const struct pc_config *base, uint64_t csize,
                 uint64_t bsize, int init);
void tu_rig_close (struct tu_rig *r);
/* testutil-cu.c (CUnit): tu_write through the rig, and into its model. */
void tu_rig_write (struct tu_rig *r, uint64_t off, uint32_t len,
                   uint32_t seed);

/* testutil-cu.c (CUnit): the unit test programs' main.  Runs cases (up
 * to one with a NULL name) as one suite; a hang past alarm_s seconds is
 * a failure; the engine's log is captured and a scratch directory
 * exists meanwhile.  With ee_size, tu_ee is a backend of that many 0xEE
 * bytes (tu_ee_mem its memory).  Returns the exit status.
 */
struct tu_case {
  const char *name;
  void (*fn) (void);
};
extern struct tu_mem *tu_ee_mem;
extern struct pc_backend tu_ee;
int tu_main (const char *suite, const struct tu_case *cases,
             unsigned alarm_s, uint64_t ee_size);

/* ------------------------------------------------------------------ */
/* Run fn (arg) in a forked child and return its exit status (0..255),
 * or 256 + signal number if it died of a signal.  For checks that might
 * crash (use-after-free under ASan) without taking the whole program
 * down.  The child leaves with _exit.
 */
int tu_in_child (int (*fn) (void *), void *arg);

#endif /* PC_TESTUTIL_H */
