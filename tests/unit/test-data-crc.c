/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for data checksums on cache hits (pcache-data-crc=true):
 * a payload byte flipped in the mapped cache file under a clean extent
 * is read from the backend instead, under a dirty one fails the read
 * with EIO, and keys that later writes trimmed or split still check
 * their whole original record.  No workers run: nothing is written
 * back behind the test's back, so dirty data stays dirty.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/CUnit.h>
#include <CUnit/Basic.h>

#include "cache_internal.h"
#include "testutil.h"

#define CSIZE (24 * TU_MIB)
#define BSIZE (32 * TU_MIB)
#define LEN   65536u

/* A data-crc cache (or not) over a patterned backend, workers not
 * started.
 */
static int
rig_open (struct tu_rig *r, const char *name, int data_crc)
{
  struct pc_config cfg;

  pc_config_init (&cfg);
  cfg.data_crc = data_crc;
  return tu_rig_open (r, name, &cfg, CSIZE, BSIZE, -1);
}

/* Read [off, off+len): 0 if it succeeds and matches the model, else
 * the errno of the read, or -1 for wrong data.
 */
static int
rig_read (struct tu_rig *r, uint64_t off, uint32_t len)
{
  uint8_t *b = malloc (len);
  int err = 0, ret;

  if (pc_read (r->c, b, len, off, &r->be, &err) == -1)
    ret = err;
  else
    ret = memcmp (b, r->model + off, len) == 0 ? 0 : -1;
  free (b);
  return ret;
}

/* The key holding backing offset off (not a placeholder), or NULL. */
static struct pc_key *
key_at (struct tu_rig *r, uint64_t off)
{
  struct pc_key *k = pc_tree_find (pc_index_tree (&r->c->index, off), off, 1);

  return k && !(k->flags & PC_KEY_EMPTY) ? k : NULL;
}

/* Flip a bit of the cached payload of backing offset off, in the
 * mapping of the cache file.
 */
static void
corrupt_at (struct tu_rig *r, uint64_t off)
{
  struct pc_key *k = key_at (r, off);

  CU_ASSERT_PTR_NOT_NULL_FATAL (k);
  pc_seg_addr (r->c, k->seg, k->seg_off + (off - k->off))[0] ^= 0x10;
}

/* Flip a bit of the payload of k's record at byte i of the record,
 * wherever the key's own range now starts.
 */
static void
corrupt_rec (struct tu_rig *r, struct pc_key *k, uint32_t i)
{
  CU_ASSERT_FATAL (k->flags & PC_KEY_CRC);
  CU_ASSERT_FATAL (i < pc_key_crc (k)->rec_len);
  pc_seg_addr (r->c, k->seg, pc_key_crc (k)->rec_seg_off + i)[0] ^= 0x10;
}

static uint64_t
crc_errors (struct tu_rig *r)
{
  struct pc_stats st;

  pc_cache_get_stats (r->c, &st);
  return st.crc_errors;
}

/* How often s occurs in the errors logged since the last clear. */
static unsigned
log_count (const char *s)
{
  const char *p = tu_log_text ();
  unsigned n = 0;

  while ((p = strstr (p, s)) != NULL) {
    n++;
    p += strlen (s);
  }
  return n;
}

/* ------------------------------------------------------------------ */

/* Clean data (cached by a read): dropped, read from the backend. */
static void
test_clean (void)
{
  const uint64_t off = 3 * TU_MIB + 4096;
  struct tu_rig r;
  struct pc_key *k;
  uint64_t n0;
  char json[1024];
  struct pc_stats st;

  CU_ASSERT_EQUAL_FATAL (rig_open (&r, "clean", 1), 0);
  CU_ASSERT_EQUAL (rig_read (&r, off, LEN), 0);         /* a miss, cached */
  k = key_at (&r, off);
  CU_ASSERT_PTR_NOT_NULL_FATAL (k);
  CU_ASSERT_FALSE (k->flags & PC_KF_DIRTY);
  CU_ASSERT_TRUE (k->flags & PC_KEY_CRC);
  n0 = tu_mem_preads (r.mem);
  CU_ASSERT_EQUAL (rig_read (&r, off, LEN), 0);         /* a good hit */
  CU_ASSERT_EQUAL (tu_mem_preads (r.mem), n0);
  CU_ASSERT_EQUAL (crc_errors (&r), 0);

  tu_log_clear ();
  corrupt_at (&r, off + 1000);
  /* A small read far from the bad byte: the whole record is checked. */
  CU_ASSERT_EQUAL (rig_read (&r, off + 40000, 512), 0);
  CU_ASSERT_EQUAL (crc_errors (&r), 1);
  CU_ASSERT_EQUAL (tu_mem_preads (r.mem), n0 + 1);      /* from the backend */
  CU_ASSERT_TRUE (tu_log_has ("fails its checksum"));
  /* The bad key is gone, and the miss cached that piece anew: only the
   * two gaps around it go to the backend, then everything hits.
   */
  CU_ASSERT_EQUAL (rig_read (&r, off, LEN), 0);
  CU_ASSERT_EQUAL (tu_mem_preads (r.mem), n0 + 3);
  CU_ASSERT_EQUAL (rig_read (&r, off, LEN), 0);
  CU_ASSERT_EQUAL (tu_mem_preads (r.mem), n0 + 3);
  CU_ASSERT_EQUAL (crc_errors (&r), 1);

  pc_cache_get_stats (r.c, &st);
  CU_ASSERT_TRUE (pc_stats_json (&st, json, sizeof json) > 0);
  CU_ASSERT_PTR_NOT_NULL (strstr (json, "\"crc_errors\":1,"));
  tu_rig_close (&r);
}

/* Dirty data: reads of it fail, the key stays, reported once. */
static void
test_dirty (void)
{
  const uint64_t off = 5 * TU_MIB;
  struct tu_rig r;
  uint64_t n0;

  CU_ASSERT_EQUAL_FATAL (rig_open (&r, "dirty", 1), 0);
  tu_rig_write (&r, off, LEN, 11);
  tu_rig_write (&r, off + LEN, LEN, 12);
  tu_flush (r.c);                       /* logged, for pc_cache_verify_data */
  CU_ASSERT_EQUAL (rig_read (&r, off, 2 * LEN), 0);
  CU_ASSERT_TRUE (key_at (&r, off)->flags & PC_KF_DIRTY);

  tu_log_clear ();
  corrupt_at (&r, off + 7);
  n0 = tu_mem_preads (r.mem);
  CU_ASSERT_EQUAL (rig_read (&r, off + LEN - 512, 1024), EIO);
  CU_ASSERT_EQUAL (crc_errors (&r), 1);
  CU_ASSERT_EQUAL (log_count ("fails its checksum"), 1);
  CU_ASSERT_TRUE (tu_log_has ("dirty"));
  /* Again: the same error, neither counted nor logged again. */
  CU_ASSERT_EQUAL (rig_read (&r, off, 4096), EIO);
  CU_ASSERT_EQUAL (rig_read (&r, off + 60000, 16), EIO);
  CU_ASSERT_EQUAL (crc_errors (&r), 1);
  CU_ASSERT_EQUAL (log_count ("fails its checksum"), 1);
  /* The backend was never asked: its data is older. */
  CU_ASSERT_EQUAL (tu_mem_preads (r.mem), n0);
  /* The key stays, for pcachectl check. */
  CU_ASSERT_EQUAL (tu_type_at (r.c, off, LEN), PC_MAP_DATA);
  CU_ASSERT_EQUAL (pc_cache_verify_data (r.c, NULL, NULL), 1);
  /* The next record reads well; an overwrite ends the error. */
  CU_ASSERT_EQUAL (rig_read (&r, off + LEN, LEN), 0);
  tu_rig_write (&r, off, LEN, 13);
  CU_ASSERT_EQUAL (rig_read (&r, off, 2 * LEN), 0);
  CU_ASSERT_EQUAL (crc_errors (&r), 1);
  tu_rig_close (&r);
}

/* Keys cut by later writes check their record's whole payload: where
 * the record starts in its segment and how long it is stay with them.
 */
static void
test_trimmed_and_split (void)
{
  const uint64_t a = 9 * TU_MIB, b = 13 * TU_MIB, d = 17 * TU_MIB;
  struct tu_rig r;
  struct pc_key *k;
  uint64_t n0;

  CU_ASSERT_EQUAL_FATAL (rig_open (&r, "split", 1), 0);

  /* A front-trimmed dirty key and a split one, intact: no false alarm. */
  tu_rig_write (&r, a, LEN, 21);
  tu_rig_write (&r, a, 8192, 22);                  /* cuts the front */
  tu_rig_write (&r, d, LEN, 23);
  tu_rig_write (&r, d + 16384, 4096, 24);          /* splits it */
  k = key_at (&r, a + 8192);
  CU_ASSERT_PTR_NOT_NULL_FATAL (k);
  CU_ASSERT_EQUAL (k->off, a + 8192);
  CU_ASSERT_EQUAL (pc_key_crc (k)->rec_len, LEN);
  CU_ASSERT_EQUAL (pc_key_crc (k)->rec_seg_off + 8192, k->seg_off);
  CU_ASSERT_EQUAL (rig_read (&r, a, LEN), 0);
  CU_ASSERT_EQUAL (rig_read (&r, a + 9000, 100), 0);
  CU_ASSERT_EQUAL (rig_read (&r, d, LEN), 0);
  CU_ASSERT_EQUAL (rig_read (&r, d + 30000, 100), 0);
  CU_ASSERT_EQUAL (crc_errors (&r), 0);

  /* Dirty, split: a bad byte in the head fails a read of the tail. */
  corrupt_rec (&r, key_at (&r, d), 100);
  CU_ASSERT_EQUAL (rig_read (&r, d + 30000, 100), EIO);
  CU_ASSERT_EQUAL (rig_read (&r, d + 16384, 4096), 0);  /* the new write */
  CU_ASSERT_EQUAL (crc_errors (&r), 1);

  /* Dirty, front-trimmed: a bad byte in what was cut off still counts
   * (the checksum is the record's); the part written later is fine.
   */
  corrupt_rec (&r, key_at (&r, a + 8192), 50);
  CU_ASSERT_EQUAL (rig_read (&r, a + 20000, 100), EIO);
  CU_ASSERT_EQUAL (rig_read (&r, a, 8192), 0);
  CU_ASSERT_EQUAL (crc_errors (&r), 2);

  /* Clean, split by a write: a bad byte in the middle that the write
   * replaced, which no key points at any more, drops both pieces.
   */
  CU_ASSERT_EQUAL (rig_read (&r, b, LEN), 0);           /* cached clean */
  tu_rig_write (&r, b + 16384, 4096, 25);
  k = key_at (&r, b + 20480);
  CU_ASSERT_PTR_NOT_NULL_FATAL (k);
  CU_ASSERT_FALSE (k->flags & PC_KF_DIRTY);
  CU_ASSERT_EQUAL (rig_read (&r, b, LEN), 0);
  CU_ASSERT_EQUAL (crc_errors (&r), 2);
  corrupt_rec (&r, k, 16384 + 100);
  n0 = tu_mem_preads (r.mem);
  CU_ASSERT_EQUAL (rig_read (&r, b, LEN), 0);
  CU_ASSERT_EQUAL (crc_errors (&r), 4);                 /* head and tail */
  CU_ASSERT_EQUAL (tu_mem_preads (r.mem), n0 + 2);
  CU_ASSERT_EQUAL (rig_read (&r, b, LEN), 0);
  CU_ASSERT_EQUAL (tu_mem_preads (r.mem), n0 + 2);
  CU_ASSERT_EQUAL (crc_errors (&r), 4);
  tu_rig_close (&r);
}

/* The index pays for the checksum only on a cache that has them: a
 * key takes 32 bytes more there, and the same elsewhere as before.
 */
static void
test_key_size (void)
{
  struct tu_rig r;
  uint64_t keys, bytes[2];
  int i;

  for (i = 0; i < 2; i++) {
    CU_ASSERT_EQUAL_FATAL (rig_open (&r, "size", i), 0);
    tu_rig_write (&r, 0, 4096, 31);
    tu_rig_write (&r, 8192, 4096, 32);
    tu_rig_write (&r, 16384, 4096, 33);
    pc_cache_index_usage (r.c, &keys, &bytes[i]);
    CU_ASSERT_EQUAL (keys, 3);
    tu_rig_close (&r);
  }
  CU_ASSERT_EQUAL (bytes[1] - bytes[0], 3 * 32);
  CU_ASSERT_EQUAL (sizeof (struct pc_key), 32);
}

/* ------------------------------------------------------------------ */

static const struct tu_case cases[] = {
  { "bad clean hit: read from the backend", test_clean },
  { "bad dirty hit: EIO, reported once", test_dirty },
  { "trimmed and split keys check their record", test_trimmed_and_split },
  { "key size with and without data CRC", test_key_size },
  { NULL, NULL },
};

int
main (void)
{
  return tu_main ("data-crc", cases, 120, 0);
}
