/* SPDX-License-Identifier: BSD-3-Clause */
/* Per-export statistics: each namespace counts its own requests, dirty
 * bytes, write-back and backend health (pc_ns_get_stats), and the JSON
 * of the statistics (pc_stats_json_exports) has an object for each,
 * with its name escaped, whatever its bytes.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/CUnit.h>

#include "cache_internal.h"
#include "namespace.h"
#include "writeback.h"
#include "testutil.h"

#define CSIZE (24 * TU_MIB)
#define ASIZE (8 * TU_MIB)
#define BSIZE (4 * TU_MIB)

/* Quote, backslash, a control byte, a newline, a byte that is not
 * UTF-8, then a valid two-byte character (e acute).
 */
static const char odd_name[] = "b\"q\\\x01\n\xff\xc3\xa9";
static const char odd_json[] = "\"name\":\"b\\\"q\\\\\\u0001\\n\\u00ff\xc3\xa9\"";

static pc_cache *
open_cache (const char *p)
{
  struct pc_config cfg;
  pc_cache *c;

  tu_config (&cfg, p, CSIZE);
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
read_ns (pc_cache *c, uint32_t ns, uint64_t off, uint32_t len,
         const struct pc_backend *fg)
{
  void *buf = malloc (len);
  int err = 0;

  CU_ASSERT_PTR_NOT_NULL_FATAL (buf);
  CU_ASSERT_EQUAL (pc_read (c, buf, len, pc_ns_addr (ns, off), fg, &err), 0);
  free (buf);
}

/* The object of the export whose "name" member is name_json in the
 * JSON text, copied (malloc'd), or NULL.
 */
static char *
export_obj (const char *json, const char *name_json)
{
  const char *ex = strstr (json, "\"exports\":["), *p, *end;
  char *key;

  if (!ex || asprintf (&key, "{%s,", name_json) == -1)
    return NULL;
  p = strstr (ex, key);
  free (key);
  if (!p)
    return NULL;
  /* The objects are flat: the first '}' outside a string ends it. */
  for (end = p + 1; *end && *end != '}'; end++)
    if (*end == '"')
      for (end++; *end && *end != '"'; end++)
        if (*end == '\\' && end[1])
          end++;
  return *end ? strndup (p, end - p + 1) : NULL;
}

static int
has (const char *obj, const char *field)
{
  int r = obj && strstr (obj, field) != NULL;

  if (!r)
    fprintf (stderr, "\nmissing %s in %s\n", field, obj ? obj : "(null)");
  return r;
}

static char *
stats_json (pc_cache *c, uint32_t a, uint32_t b)
{
  struct pc_ns_stats *ns = calloc (2, sizeof *ns);
  struct pc_stats st;
  size_t len;
  char *json;
  int n;

  CU_ASSERT_PTR_NOT_NULL_FATAL (ns);
  pc_cache_get_stats (c, &st);
  CU_ASSERT_EQUAL_FATAL (pc_ns_get_stats (c, a, &ns[0]), 0);
  CU_ASSERT_EQUAL_FATAL (pc_ns_get_stats (c, b, &ns[1]), 0);
  len = pc_stats_json_size (ns, 2);
  CU_ASSERT (len <= PC_STATS_JSON_MAX (2));
  json = malloc (len);
  CU_ASSERT_PTR_NOT_NULL_FATAL (json);
  n = pc_stats_json_exports (&st, ns, 2, json, len);
  CU_ASSERT_FATAL (n > 0);
  CU_ASSERT_EQUAL ((size_t) n, strlen (json));
  CU_ASSERT_PTR_NULL (strchr (json, '\n'));          /* one line */
  /* Too small a buffer: -1, never a cut object. */
  CU_ASSERT_EQUAL (pc_stats_json_exports (&st, ns, 2, json, n), -1);
  CU_ASSERT_EQUAL (pc_stats_json_exports (&st, ns, 2, json, len), n);
  free (ns);
  return json;
}

/* Two exports used differently: each its own counters, dirty bytes,
 * write-back and backend state, in the API and in the JSON.
 */
static void
test_two_exports (void)
{
  const char *p = tu_fresh ("ns-stats");
  struct tu_mem *ma = tu_mem_new (ASIZE, 0), *mb = tu_mem_new (BSIZE, 0);
  struct pc_backend ba = tu_mem_backend (ma), bb = tu_mem_backend (mb);
  pc_cache *c = open_cache (p);
  struct pc_ns_stats sa, sb;
  struct pc_stats st;
  uint32_t a, b, i;
  char *json, *oa, *ob;

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL_FATAL (pc_ns_open (c, "a", ASIZE, &a), 0);
  CU_ASSERT_EQUAL_FATAL (pc_ns_open (c, odd_name, BSIZE, &b), 0);

  /* a: three writes of 64 KiB and one read; b: one write of 4 KiB and
   * two reads of 8 KiB.
   */
  for (i = 0; i < 3; i++)
    tu_write (c, pc_ns_addr (a, i * 65536), 65536, 1);
  read_ns (c, a, 0, 65536, &ba);
  tu_write (c, pc_ns_addr (b, 8192), 4096, 2);
  read_ns (c, b, 0, 8192, &bb);
  read_ns (c, b, 1 << 20, 8192, &bb);

  CU_ASSERT_EQUAL (pc_ns_get_stats (c, a, &sa), 0);
  CU_ASSERT_EQUAL (pc_ns_get_stats (c, b, &sb), 0);
  CU_ASSERT_STRING_EQUAL (sa.name, "a");
  CU_ASSERT_STRING_EQUAL (sb.name, odd_name);
  CU_ASSERT_EQUAL (sa.size, ASIZE);
  CU_ASSERT_EQUAL (sb.size, BSIZE);
  CU_ASSERT_EQUAL (sa.writes, 3);
  CU_ASSERT_EQUAL (sa.write_bytes, 3 * 65536);
  CU_ASSERT_EQUAL (sa.reads, 1);
  CU_ASSERT_EQUAL (sa.read_bytes, 65536);
  CU_ASSERT_EQUAL (sa.dirty_bytes, 3 * 65536);
  CU_ASSERT_EQUAL (sb.writes, 1);
  CU_ASSERT_EQUAL (sb.write_bytes, 4096);
  CU_ASSERT_EQUAL (sb.reads, 2);
  CU_ASSERT_EQUAL (sb.read_bytes, 16384);
  CU_ASSERT_EQUAL (sb.dirty_bytes, 4096);
  CU_ASSERT_EQUAL (sa.attached, 0);
  CU_ASSERT_EQUAL (sb.attached, 0);
  CU_ASSERT_EQUAL (sa.backend_failing, 0);
  pc_cache_get_stats (c, &st);
  CU_ASSERT_EQUAL (st.dirty_bytes, 3 * 65536 + 4096);
  CU_ASSERT_EQUAL (st.writes, 4);
  errno = 0;
  CU_ASSERT_EQUAL (pc_ns_get_stats (c, b + 1, &sb), -1);
  CU_ASSERT_EQUAL (errno, ENOENT);
  CU_ASSERT_EQUAL (pc_ns_get_stats (c, PC_NS_MAX + 5, &sb), -1);

  json = stats_json (c, a, b);
  oa = export_obj (json, "\"name\":\"a\"");
  ob = export_obj (json, odd_json);
  CU_ASSERT_PTR_NOT_NULL (oa);
  CU_ASSERT_PTR_NOT_NULL (ob);
  CU_ASSERT (has (oa, "\"size\":8388608,"));
  CU_ASSERT (has (oa, "\"dirty_bytes\":196608,"));
  CU_ASSERT (has (oa, "\"reads\":1,\"read_bytes\":65536,"));
  CU_ASSERT (has (oa, "\"writes\":3,\"write_bytes\":196608,"));
  CU_ASSERT (has (oa, "\"writeback_bytes\":0,\"writeback_group_epochs\":1}"));
  CU_ASSERT (has (oa, "\"attached\":false"));
  CU_ASSERT (has (ob, "\"size\":4194304,"));
  CU_ASSERT (has (ob, "\"dirty_bytes\":4096,"));
  CU_ASSERT (has (ob, "\"reads\":2,\"read_bytes\":16384,"));
  CU_ASSERT (has (ob, "\"writes\":1,\"write_bytes\":4096,"));
  /* The totals come first, the exports last. */
  CU_ASSERT (strstr (json, "\"dirty_bytes\":200704,") <
             strstr (json, "\"exports\":["));
  CU_ASSERT (has (json, "]}"));
  free (oa);
  free (ob);
  free (json);

  /* a writes back; b's backend fails every write. */
  CU_ASSERT_EQUAL (pc_ns_attach (c, a, &ba), 0);
  CU_ASSERT_EQUAL (pc_ns_attach (c, b, &bb), 0);
  tu_mem_fail (mb, 1000000, 0);
  tu_flush (c);
  for (i = 0; i < 50; i++)
    pc_writeback_step (c);
  CU_ASSERT_EQUAL (pc_ns_get_stats (c, a, &sa), 0);
  CU_ASSERT_EQUAL (pc_ns_get_stats (c, b, &sb), 0);
  CU_ASSERT_EQUAL (sa.attached, 1);
  CU_ASSERT_EQUAL (sa.dirty_bytes, 0);
  CU_ASSERT_EQUAL (sa.writeback_bytes, 3 * 65536);
  CU_ASSERT_EQUAL (sa.backend_failing, 0);
  CU_ASSERT_EQUAL (sa.backend_last_error, 0);
  CU_ASSERT_EQUAL (sb.dirty_bytes, 4096);
  CU_ASSERT_EQUAL (sb.writeback_bytes, 0);
  CU_ASSERT_EQUAL (sb.backend_failing, 1);
  CU_ASSERT_EQUAL (sb.backend_last_error, EIO);
  CU_ASSERT (sb.backend_failing_since > 0);
  CU_ASSERT (sa.backing_epoch > sb.backing_epoch);
  json = stats_json (c, a, b);
  oa = export_obj (json, "\"name\":\"a\"");
  ob = export_obj (json, odd_json);
  CU_ASSERT (has (oa, "\"attached\":true,\"backend_state\":\"ok\","
                  "\"backend_last_error\":\"\",\"backend_failing_since\":0,"));
  CU_ASSERT (has (oa, "\"dirty_bytes\":0,"));
  CU_ASSERT (has (oa, "\"writeback_bytes\":196608,"));
  CU_ASSERT (has (ob, "\"backend_state\":\"failing\","
                  "\"backend_last_error\":\"EIO\","));
  CU_ASSERT (has (ob, "\"dirty_bytes\":4096,"));
  CU_ASSERT (has (ob, "\"writeback_bytes\":0,\"writeback_group_epochs\":1}"));
  free (oa);
  free (ob);
  free (json);

  /* reset-stats zeroes the exports' counters, not their dirty bytes. */
  pc_cache_reset_stats (c);
  CU_ASSERT_EQUAL (pc_ns_get_stats (c, a, &sa), 0);
  CU_ASSERT_EQUAL (pc_ns_get_stats (c, b, &sb), 0);
  CU_ASSERT_EQUAL (sa.writes + sa.reads + sa.write_bytes + sa.read_bytes +
                   sa.writeback_bytes, 0);
  CU_ASSERT_EQUAL (sb.writes + sb.reads + sb.write_bytes + sb.read_bytes, 0);
  CU_ASSERT_EQUAL (sb.dirty_bytes, 4096);

  tu_mem_fail (mb, 0, 0);
  pc_cache_close (c);
  tu_mem_free (ma);
  tu_mem_free (mb);
  unlink (p);
}

/* An export's counters are kept a set per thread shard: what threads
 * on shards of their own count adds up, and a reset clears every set.
 */
#define NWRITERS 5
#define NWRITES 40

/* No CUnit assertion off the main thread: failures are counted. */
struct writer { pc_cache *c; uint32_t ns; unsigned id, failed; };

static void *
writer_main (void *arg)
{
  struct writer *w = arg;
  uint8_t buf[4096];
  unsigned i;
  int err;

  memset (buf, w->id, sizeof buf);
  for (i = 0; i < NWRITES; i++)
    if (pc_write (w->c, buf, sizeof buf,
                  pc_ns_addr (w->ns, (w->id * NWRITES + i) * 4096), 0,
                  &err) == -1)
      w->failed++;
  return NULL;
}

static void
test_many_threads (void)
{
  const char *p = tu_fresh ("ns-threads");
  pc_cache *c = open_cache (p);
  struct writer w[NWRITERS];
  pthread_t tid[NWRITERS];
  struct pc_ns_stats sa;
  uint32_t a;
  unsigned i;

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL_FATAL (pc_ns_open (c, "a", ASIZE, &a), 0);
  for (i = 0; i < NWRITERS; i++) {
    w[i] = (struct writer) { c, a, i, 0 };
    CU_ASSERT_EQUAL_FATAL (pthread_create (&tid[i], NULL, writer_main,
                                           &w[i]), 0);
  }
  for (i = 0; i < NWRITERS; i++) {
    pthread_join (tid[i], NULL);
    CU_ASSERT_EQUAL (w[i].failed, 0);
  }
  CU_ASSERT_EQUAL (pc_ns_get_stats (c, a, &sa), 0);
  CU_ASSERT_EQUAL (sa.writes, NWRITERS * NWRITES);
  CU_ASSERT_EQUAL (sa.write_bytes, NWRITERS * NWRITES * 4096);
  pc_cache_reset_stats (c);
  CU_ASSERT_EQUAL (pc_ns_get_stats (c, a, &sa), 0);
  CU_ASSERT_EQUAL (sa.writes + sa.write_bytes, 0);
  pc_cache_close (c);
  unlink (p);
}

/* More live threads than there are shards to own: each owner has its
 * shard alone, the rest share the others (and add with a locked
 * instruction, or counts would be lost), every count adds up, an exit
 * frees its shard for the next thread, and a reset holds however the
 * shards were counted into.
 */
#define NCROWD (PC_NSHARDS_OWN + 40)
#define CROWD_WRITES 8
#define CROWD_COUNTS 500000

struct crowd { pc_cache *c; uint32_t ns; unsigned id, shard, failed;
               int own; pthread_barrier_t *all; };

static void *
crowd_main (void *arg)
{
  struct crowd *w = arg;
  uint8_t buf[4096];
  unsigned i;
  int err;

  memset (buf, w->id, sizeof buf);
  for (i = 0; i < CROWD_WRITES; i++) {
    uint64_t blk = (w->id * CROWD_WRITES + i) % (ASIZE / 4096);

    if (pc_write (w->c, buf, sizeof buf, pc_ns_addr (w->ns, blk * 4096), 0,
                  &err) == -1)
      w->failed++;
    if (i == 0) {
      /* Every thread of the crowd holds its shard at once. */
      w->shard = pc_thread_shard ();
      w->own = pc_shard_own;
      pthread_barrier_wait (w->all);
      /* Threads sharing a shard count into it at once. */
      for (unsigned n = 0; !w->own && n < CROWD_COUNTS; n++)
        PC_NS_COUNT (pc_ns_get (w->c, pc_ns_addr (w->ns, 0)), reads, 1);
    }
  }
  return NULL;
}

static void *
shard_probe (void *arg)
{
  *(int *) arg = pc_thread_shard () < PC_NSHARDS_OWN && pc_shard_own;
  return NULL;
}

static void
test_shard_owners (void)
{
  const char *p = tu_fresh ("ns-crowd");
  pc_cache *c = open_cache (p);
  static struct crowd w[NCROWD];
  pthread_t tid[NCROWD], t;
  pthread_barrier_t all;
  struct pc_ns_stats sa;
  uint8_t buf[4096] = { 0 };
  unsigned i, j, owners = 0, shared = 0;
  uint32_t a;
  int err, probe = 0;

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL_FATAL (pc_ns_open (c, "a", ASIZE, &a), 0);
  CU_ASSERT_EQUAL_FATAL (pthread_barrier_init (&all, NULL, NCROWD), 0);
  for (i = 0; i < NCROWD; i++) {
    w[i] = (struct crowd) { .c = c, .ns = a, .id = i, .all = &all };
    CU_ASSERT_EQUAL_FATAL (pthread_create (&tid[i], NULL, crowd_main,
                                           &w[i]), 0);
  }
  for (i = 0; i < NCROWD; i++) {
    pthread_join (tid[i], NULL);
    CU_ASSERT_EQUAL (w[i].failed, 0);
  }
  pthread_barrier_destroy (&all);
  for (i = 0; i < NCROWD; i++) {
    if (w[i].own) {
      owners++;
      CU_ASSERT (w[i].shard < PC_NSHARDS_OWN);
      for (j = 0; j < i; j++)
        CU_ASSERT (!w[j].own || w[j].shard != w[i].shard);
    }
    else {
      shared++;
      CU_ASSERT (w[i].shard >= PC_NSHARDS_OWN && w[i].shard < PC_NSHARDS);
    }
  }
  /* This thread and the cache's workers may own a few. */
  CU_ASSERT (owners >= PC_NSHARDS_OWN - 8);
  CU_ASSERT (shared >= 40);
  CU_ASSERT_EQUAL (pc_ns_get_stats (c, a, &sa), 0);
  CU_ASSERT_EQUAL (sa.writes, NCROWD * CROWD_WRITES);
  CU_ASSERT_EQUAL (sa.write_bytes, NCROWD * CROWD_WRITES * 4096);
  CU_ASSERT_EQUAL (sa.reads, (uint64_t) shared * CROWD_COUNTS);

  /* The crowd is gone: its shards are free again. */
  CU_ASSERT_EQUAL_FATAL (pthread_create (&t, NULL, shard_probe, &probe), 0);
  pthread_join (t, NULL);
  CU_ASSERT_EQUAL (probe, 1);

  /* A reset counts from the sums now, then from zero. */
  pc_cache_reset_stats (c);
  CU_ASSERT_EQUAL (pc_ns_get_stats (c, a, &sa), 0);
  CU_ASSERT_EQUAL (sa.writes + sa.write_bytes, 0);
  CU_ASSERT_EQUAL (pc_write (c, buf, sizeof buf, pc_ns_addr (a, 0), 0, &err),
                   0);
  CU_ASSERT_EQUAL (pc_ns_get_stats (c, a, &sa), 0);
  CU_ASSERT_EQUAL (sa.writes, 1);
  CU_ASSERT_EQUAL (sa.write_bytes, 4096);
  pc_cache_close (c);
  unlink (p);
}

/* The worst name, 4096 bytes that each need \u00XX, fits the bound;
 * the JSON without exports is unchanged (no "exports").
 */
static void
test_worst_name (void)
{
  struct pc_ns_stats *ns = calloc (1, sizeof *ns);
  size_t len = PC_STATS_JSON_MAX (1);
  char *json = malloc (len);
  struct pc_stats st;
  const char *p;
  int n;

  CU_ASSERT_PTR_NOT_NULL_FATAL (ns);
  CU_ASSERT_PTR_NOT_NULL_FATAL (json);
  memset (&st, 0, sizeof st);
  memset (ns->name, 0xfe, PC_EXPORT_NAME_MAX);
  ns->name[0] = '\x1f';
  CU_ASSERT (pc_stats_json_size (ns, 1) <= len);
  n = pc_stats_json_exports (&st, ns, 1, json, pc_stats_json_size (ns, 1));
  CU_ASSERT_FATAL (n > 6 * PC_EXPORT_NAME_MAX);
  p = strstr (json, "\"name\":\"\\u001f\\u00fe\\u00fe");
  CU_ASSERT_PTR_NOT_NULL_FATAL (p);
  CU_ASSERT_EQUAL (strncmp (p + 8 + 6 * PC_EXPORT_NAME_MAX, "\",\"id\":0,", 9),
                   0);
  /* Every byte of it is ASCII. */
  for (p = json; *p; p++)
    CU_ASSERT_FATAL ((unsigned char) *p < 0x80);
  CU_ASSERT (pc_stats_json (&st, json, len) > 0);
  CU_ASSERT_PTR_NULL (strstr (json, "exports"));
  CU_ASSERT (pc_stats_json_exports (&st, NULL, 0, json, len) > 0);
  CU_ASSERT (has (json, ",\"exports\":[]}"));
  free (ns);
  free (json);
}

static const struct tu_case cases[] = {
  { "two exports counted apart", test_two_exports },
  { "the worst name fits", test_worst_name },
  { "counted by many threads", test_many_threads },
  { "more threads than shards to own", test_shard_owners },
  { NULL, NULL },
};

int
main (void)
{
  return tu_main ("ns-stats", cases, 120, 0);
}
