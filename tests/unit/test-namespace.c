/* SPDX-License-Identifier: BSD-3-Clause */
/* Namespaces: several backing exports in one cache.  Each export's
 * data goes to its own backend only, each is written back from its own
 * dirty cursor (an export without a backend holds back no other), the
 * table survives a restart, and exports that do not fit are refused.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/CUnit.h>

#include "cache_internal.h"
#include "ctrl.h"
#include "writeback.h"
#include "testutil.h"

#define CSIZE (24 * TU_MIB)
#define ASIZE (8 * TU_MIB)
#define BSIZE (12 * TU_MIB)

static pc_cache *
open_cache (const char *p, unsigned max_exports)
{
  struct pc_config cfg;
  pc_cache *c;

  tu_config (&cfg, p, CSIZE);
  cfg.max_exports = max_exports;
  cfg.wb_percent = 0;
  if (pc_cache_open (&cfg, &c) == -1)
    return NULL;
  if (pc_cache_ready (c) == -1) {
    pc_cache_close (c);
    return NULL;
  }
  return c;
}

static void
write_ns (pc_cache *c, uint32_t ns, uint64_t off, uint32_t len, uint32_t seed)
{
  tu_write (c, pc_ns_addr (ns, off), len, seed);
}

static void
write_back_all (pc_cache *c)
{
  int r, n = 0;

  while ((r = pc_writeback_step (c)) == 1 && ++n < 10000)
    ;
  CU_ASSERT_EQUAL (r, 0);
}

/* Interleaved writes and flushes to two exports reach each one's own
 * backend at its own offsets, and nothing of one reaches the other.
 */
static void
test_routing (void)
{
  const char *p = tu_fresh ("routing");
  struct tu_mem *ma = tu_mem_new (ASIZE, 0xEE), *mb = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend ba = tu_mem_backend (ma), bb = tu_mem_backend (mb);
  pc_cache *c = open_cache (p, 0);
  uint32_t a, b, i;

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL_FATAL (pc_ns_open (c, "a", ASIZE, &a), 0);
  CU_ASSERT_EQUAL_FATAL (pc_ns_open (c, "b", BSIZE, &b), 0);
  CU_ASSERT_NOT_EQUAL (a, b);
  CU_ASSERT_EQUAL (pc_ns_attach (c, a, &ba), 0);
  CU_ASSERT_EQUAL (pc_ns_attach (c, b, &bb), 0);
  for (i = 0; i < 64; i++) {
    write_ns (c, a, i * 65536, 65536, 1);
    write_ns (c, b, i * 65536, 65536, 2);
    if (i % 5 == 0)
      tu_flush (c);
  }
  /* Reads of one export see its own data, not the other's. */
  CU_ASSERT_TRUE (tu_reads_pattern (c, &ba, pc_ns_addr (a, 0), 64 * 65536, 1));
  CU_ASSERT_TRUE (tu_reads_pattern (c, &bb, pc_ns_addr (b, 0), 64 * 65536, 2));
  tu_flush (c);
  write_back_all (c);
  /* The pattern is of the cache address; the backend got the offset. */
  CU_ASSERT_EQUAL (tu_check (ma->buf, 64 * 65536, pc_ns_addr (a, 0), 1), -1);
  CU_ASSERT_EQUAL (tu_check (mb->buf, 64 * 65536, pc_ns_addr (b, 0), 2), -1);
  CU_ASSERT_EQUAL (tu_check_byte (ma->buf + 64 * 65536, ASIZE - 64 * 65536,
                                  0xEE), -1);
  /* A write past an export's end is refused, not sent to the next. */
  {
    char buf[4096] = { 0 };
    int err = 0;

    CU_ASSERT_EQUAL (pc_write (c, buf, 4096, pc_ns_addr (a, ASIZE), 0, &err),
                     -1);
    CU_ASSERT_EQUAL (err, EINVAL);
    CU_ASSERT_EQUAL (pc_write (c, buf, 4096, pc_ns_addr (7, 0), 0, &err), -1);
  }
  pc_cache_close (c);
  tu_mem_free (ma);
  tu_mem_free (mb);
  unlink (p);
}

/* An export with dirty data and no backend holds back neither the
 * other exports' write-back nor their cursors; after a restart its data
 * is still there and goes down once it has a backend.
 */
static void
test_independent (void)
{
  const char *p = tu_fresh ("independent");
  struct tu_mem *ma = tu_mem_new (ASIZE, 0xEE), *mb = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend ba = tu_mem_backend (ma), bb = tu_mem_backend (mb);
  pc_cache *c = open_cache (p, 0);
  struct pc_ns_info in;
  uint32_t a, b, a2, b2;

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL_FATAL (pc_ns_open (c, "a", ASIZE, &a), 0);
  CU_ASSERT_EQUAL_FATAL (pc_ns_open (c, "b", BSIZE, &b), 0);
  write_ns (c, a, 0, 1 << 20, 3);        /* a first in the log */
  tu_flush (c);
  write_ns (c, b, 0, 1 << 20, 4);
  tu_flush (c);
  pc_cache_close (c);

  c = open_cache (p, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL (pc_ns_open (c, "b", BSIZE, &b2), 0);
  CU_ASSERT_EQUAL (b2, b);
  CU_ASSERT_EQUAL (pc_ns_info (c, a, &in), 0);
  CU_ASSERT_STRING_EQUAL (in.name, "a");
  CU_ASSERT_EQUAL (in.dirty_bytes, 1 << 20);
  CU_ASSERT_EQUAL (pc_ns_attach (c, b, &bb), 0);
  write_back_all (c);
  CU_ASSERT_EQUAL (tu_check (mb->buf, 1 << 20, pc_ns_addr (b, 0), 4), -1);
  CU_ASSERT_EQUAL (tu_check_byte (ma->buf, ASIZE, 0xEE), -1);
  CU_ASSERT_EQUAL (pc_ns_info (c, b, &in), 0);
  CU_ASSERT_EQUAL (in.dirty_bytes, 0);
  /* b's cursor passed a's ksets; a's stays before them. */
  CU_ASSERT (pc_ctrl_ns_tail (c, b).seq > pc_ctrl_ns_tail (c, a).seq);
  CU_ASSERT_EQUAL (pc_ns_info (c, a, &in), 0);
  CU_ASSERT_EQUAL (in.dirty_bytes, 1 << 20);
  pc_cache_close (c);

  c = open_cache (p, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL (pc_ns_open (c, "a", ASIZE, &a2), 0);
  CU_ASSERT_EQUAL (a2, a);
  CU_ASSERT_EQUAL (pc_ns_info (c, b, &in), 0);
  CU_ASSERT_EQUAL (in.dirty_bytes, 0);
  CU_ASSERT_EQUAL (pc_ns_attach (c, a, &ba), 0);
  write_back_all (c);
  CU_ASSERT_EQUAL (tu_check (ma->buf, 1 << 20, pc_ns_addr (a, 0), 3), -1);
  pc_cache_close (c);
  tu_mem_free (ma);
  tu_mem_free (mb);
  unlink (p);
}

/* What the table refuses, each with a reason naming the export. */
static void
test_limits (void)
{
  const char *p = tu_fresh ("limits");
  pc_cache *c = open_cache (p, 2);
  char *name = malloc (PC_EXPORT_NAME_MAX + 2);
  struct pc_ns_info in;
  uint32_t id;

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_PTR_NOT_NULL_FATAL (name);
  memset (name, 'x', PC_EXPORT_NAME_MAX);
  name[PC_EXPORT_NAME_MAX] = '\0';
  name[0] = 'L';
  CU_ASSERT_EQUAL (pc_ns_open (c, name, ASIZE, &id), 0);
  CU_ASSERT_EQUAL (pc_ns_open (c, "one", ASIZE, &id), 0);
  tu_log_clear ();
  errno = 0;
  CU_ASSERT_EQUAL (pc_ns_open (c, "two", ASIZE, &id), -1);
  CU_ASSERT_EQUAL (errno, ENOSPC);
  CU_ASSERT_TRUE (tu_log_has ("'two'"));
  tu_log_clear ();
  CU_ASSERT_EQUAL (pc_ns_open (c, "one", ASIZE + 4096, &id), -1);
  CU_ASSERT_EQUAL (errno, EINVAL);
  CU_ASSERT_TRUE (tu_log_has ("'one'"));
  CU_ASSERT_TRUE (tu_log_has ("resized"));
  pc_cache_close (c);

  /* Stored whole: the 4096-byte name reads back byte for byte. */
  c = open_cache (p, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL (pc_ns_slots (c), 2);
  CU_ASSERT_EQUAL (pc_ns_info (c, 0, &in), 0);
  CU_ASSERT_EQUAL (strcmp (in.name, name), 0);
  name[PC_EXPORT_NAME_MAX] = 'y';
  name[PC_EXPORT_NAME_MAX + 1] = '\0';
  CU_ASSERT_EQUAL (pc_ns_open (c, name, ASIZE, &id), -1);
  CU_ASSERT_EQUAL (errno, EINVAL);
  pc_cache_close (c);

  /* The table size is fixed at format. */
  {
    struct pc_config cfg;

    tu_config (&cfg, p, CSIZE);
    cfg.max_exports = 8;
    tu_log_clear ();
    CU_ASSERT_EQUAL (pc_cache_open (&cfg, &c), -1);
    CU_ASSERT_TRUE (tu_log_has ("max-exports"));
  }
  free (name);
  unlink (p);
}

/* An export at its quota: its next write waits for its own write-back
 * (here none runs, so it fails after pcache-full-timeout), while
 * another export's writes go on; once its data is written back, it
 * writes again.
 */
static void
test_quota (void)
{
  const char *p = tu_fresh ("quota");
  struct tu_mem *ma = tu_mem_new (ASIZE, 0xEE);
  struct pc_backend ba = tu_mem_backend (ma);
  struct pc_config cfg;
  pc_cache *c;
  uint64_t cap, limit, done = 0;
  uint32_t a, b;
  char *buf = malloc (1 << 20);
  int err = 0;

  CU_ASSERT_PTR_NOT_NULL_FATAL (buf);
  memset (buf, 0x5A, 1 << 20);
  tu_config (&cfg, p, CSIZE);
  cfg.export_quota = 25;
  cfg.full_timeout_s = 1;
  cfg.wb_percent = 0;
  CU_ASSERT_EQUAL_FATAL (pc_cache_open (&cfg, &c), 0);
  CU_ASSERT_EQUAL_FATAL (pc_cache_ready (c), 0);
  CU_ASSERT_EQUAL (pc_cache_get_tunable (c, PC_TUNE_EXPORT_QUOTA), 25);
  CU_ASSERT_EQUAL_FATAL (pc_ns_open (c, "a", ASIZE, &a), 0);
  CU_ASSERT_EQUAL_FATAL (pc_ns_open (c, "b", BSIZE, &b), 0);
  cap = (uint64_t) c->nsegs << c->seg_shift;
  limit = cap / 100 * 25;
  while (done + (1 << 20) <= limit) {
    CU_ASSERT_EQUAL_FATAL (pc_write (c, buf, 1 << 20, pc_ns_addr (a, done),
                                     0, &err), 0);
    done += 1 << 20;
  }
  /* Past the quota: refused after the timeout, with the export named. */
  tu_log_clear ();
  CU_ASSERT_EQUAL (pc_write (c, buf, 1 << 20, pc_ns_addr (a, done), 0, &err),
                   -1);
  CU_ASSERT_EQUAL (err, EIO);
  CU_ASSERT_TRUE (tu_log_has ("'a'"));
  CU_ASSERT_TRUE (tu_log_has ("pcache-export-quota"));
  /* The other export is not held back. */
  write_ns (c, b, 0, 1 << 20, 7);
  write_ns (c, b, 1 << 20, 1 << 20, 7);
  /* Its own write-back makes room again. */
  CU_ASSERT_EQUAL (pc_ns_attach (c, a, &ba), 0);
  tu_flush (c);
  write_back_all (c);
  CU_ASSERT_EQUAL (pc_write (c, buf, 1 << 20, pc_ns_addr (a, done), 0, &err),
                   0);
  /* 100 is no quota at all. */
  CU_ASSERT_EQUAL (pc_cache_set_tunable (c, PC_TUNE_EXPORT_QUOTA, 100), 0);
  CU_ASSERT_EQUAL (pc_cache_set_tunable (c, PC_TUNE_EXPORT_QUOTA, 0), -1);
  pc_cache_close (c);
  tu_mem_free (ma);
  free (buf);
  unlink (p);
}

static const struct tu_case cases[] = {
  { "an export at its quota waits; others do not", test_quota },
  { "each export to its own backend", test_routing },
  { "exports are written back independently", test_independent },
  { "table limits", test_limits },
  { NULL, NULL },
};

int
main (void)
{
  return tu_main ("namespace", cases, 120, 0);
}
