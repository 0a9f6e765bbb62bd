/* SPDX-License-Identifier: BSD-3-Clause */
/* pcachectl check: a consistency check of a cache.
 *
 * 1. Opening the cache validates the superblock, the control record and
 *    the segment generations, and replays the key log from key_tail,
 *    refusing any inconsistency (payloads are left to step 3).
 * 2. Every key record from key_tail to the head is checked: bounds on
 *    the backing store and in its segment, flags, and that no dirty key
 *    points into a segment that was reused.
 * 3. With data-crc, every payload checksum is verified.
 * 4. Replay ends the log at the first kset that does not validate, which
 *    is normally the head (or a torn commit).  A valid kset with a later
 *    sequence number anywhere outside the data segments means a corrupt
 *    kset cut the log short: the keys after it would be silently lost.
 *
 * A cache that a running nbdkit holds is checked live, read-only: the
 * server writes, writes back and reuses segments meanwhile, so what one
 * look finds may be a change half seen.  Then a second look is taken,
 * and only the problems found by both are reported.  Step 4 is skipped:
 * the server appends ksets past the head this check saw.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pcachectl.h"

#define MAX_SHOWN_PROBLEMS 100

struct check {
  const char *path;
  int live;                     /* a running nbdkit holds the cache */
  const char *export;           /* --export, or NULL: every export */
  uint32_t ns;                  /* its namespace */
  struct pc_info in;
  struct exports ex;
  uint64_t *ns_keys, *ns_dirty; /* by namespace */

  /* Progress, read by the ticker thread. */
  _Atomic (const char *) phase;
  _Atomic uint64_t done, total;
  time_t start;

  uint64_t ksets, last_kset, keys, dirty_keys, dirty_bytes;
  uint64_t zero_keys, stale_keys, data_keys;
  uint8_t *data_segs;           /* segments holding live payload */

  char **problems;
  size_t nproblems;
};

static void
problem (struct check *ck, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

static void
problem (struct check *ck, const char *fmt, ...)
{
  va_list ap;
  char *s = NULL;
  char **n;

  ck->nproblems++;
  if (ck->nproblems > MAX_SHOWN_PROBLEMS)
    return;
  va_start (ap, fmt);
  if (vasprintf (&s, fmt, ap) == -1)
    s = NULL;
  va_end (ap);
  n = realloc (ck->problems, ck->nproblems * sizeof *n);
  if (!n || !s) {
    free (s);
    ck->nproblems--;
    return;
  }
  ck->problems = n;
  ck->problems[ck->nproblems - 1] = s;
}

/* An engine message without the "PATH: " it starts with. */
static const char *
strip_path (const char *msg, const char *path)
{
  size_t n = strlen (path);

  if (strncmp (msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ')
    return msg + n + 2;
  return msg;
}

static void
tick (void *opaque, char *buf, size_t len)
{
  struct check *ck = opaque;
  const char *phase = atomic_load (&ck->phase);
  uint64_t done = atomic_load (&ck->done), total = atomic_load (&ck->total);
  long secs = (long) (time (NULL) - ck->start);

  if (!phase)
    return;
  if (total)
    snprintf (buf, len, "checking: %s %" PRIu64 "/%" PRIu64 " (%ld s)", phase,
              done, total, secs);
  else if (done)
    snprintf (buf, len, "checking: %s %" PRIu64 " (%ld s)", phase, done,
              secs);
  else
    snprintf (buf, len, "checking: %s (%ld s)", phase, secs);
}

static void
set_phase (struct check *ck, const char *phase, uint64_t total)
{
  atomic_store (&ck->done, 0);
  atomic_store (&ck->total, total);
  atomic_store (&ck->phase, phase);
}

/* Where a key is: its export's own offset, and, in a cache of several
 * exports (or a key of none), which export.
 */
static const char *
key_where (const struct check *ck, const struct pc_key_info *k, char *buf,
           size_t len)
{
  uint32_t ns = pc_fmt_ns_of (k->off);
  char label[128];
  int n;

  n = snprintf (buf, len, "kset %" PRIu64 ": key at offset %" PRIu64
                ", length %" PRIu32, k->kset_seq, k->off & PC_NS_OFF_MASK,
                k->len);
  if (n >= 0 && (size_t) n < len &&
      (ck->ex.count > 1 || ns >= ck->ex.slots || !ck->ex.name[ns]))
    snprintf (buf + n, len - n, " of export %s",
              export_label (&ck->ex, ns, label, sizeof label));
  return buf;
}

static int
check_key (void *opaque, const struct pc_key_info *k)
{
  struct check *ck = opaque;
  const struct pc_info *in = &ck->in;
  uint32_t ns = pc_fmt_ns_of (k->off);
  uint64_t off = k->off & PC_NS_OFF_MASK;
  int known = ns < ck->ex.slots && ck->ex.name[ns];
  char w[256];
  struct pc_key_info kd = *k;

  kd.dirty = k->dirty;
  k = &kd;
  atomic_fetch_add (&ck->done, 1);
  if (ck->export && ns != ck->ns) {
    /* Another export's: only note where live payload is, for the scan
     * past the head.
     */
    if (!(k->flags & PC_KF_ZERO) && !k->stale && k->seg < in->nsegs)
      ck->data_segs[k->seg] = 1;
    return 0;
  }
  if (known) {
    ck->ns_keys[ns]++;
    if (k->dirty)
      ck->ns_dirty[ns] += k->len;
  }
  if (ck->keys == 0 || k->kset_seq != ck->last_kset)
    ck->ksets++;
  ck->last_kset = k->kset_seq;
  ck->keys++;

  if (k->flags & ~(uint32_t) PC_KF_MEDIA)
    problem (ck, "%s: unknown flags 0x%" PRIx32, key_where (ck, k, w, sizeof w),
             k->flags);
  if ((k->flags & PC_KF_TRIM) && !(k->flags & PC_KF_ZERO))
    problem (ck, "%s: trim flag without zero flag",
             key_where (ck, k, w, sizeof w));
  if (k->len == 0)
    problem (ck, "%s: empty extent", key_where (ck, k, w, sizeof w));
  if (!known)
    problem (ck, "%s: namespace %" PRIu32 " is not in the table of "
             "exports", key_where (ck, k, w, sizeof w), ns);
  else if (off >= ck->ex.size[ns] || k->len > ck->ex.size[ns] - off)
    problem (ck, "%s: extends past the end of %s (%" PRIu64 " bytes)",
             key_where (ck, k, w, sizeof w),
             ck->ex.count > 1 ? "its export" : "the backing store",
             ck->ex.size[ns]);

  if (k->flags & PC_KF_ZERO)
    ck->zero_keys++;
  else if (k->seg >= in->nsegs)
    problem (ck, "%s: payload segment %" PRIu32 " does not exist (%" PRIu32
             " segments)", key_where (ck, k, w, sizeof w), k->seg, in->nsegs);
  else if (k->seg_off > in->seg_size || k->len > in->seg_size - k->seg_off)
    problem (ck, "%s: payload %" PRIu32 ":%" PRIu32 " runs past the end of "
             "its segment", key_where (ck, k, w, sizeof w), k->seg, k->seg_off);
  else if (k->stale)
    ck->stale_keys++;
  else {
    ck->data_keys++;
    ck->data_segs[k->seg] = 1;
  }

  if (k->dirty) {
    ck->dirty_keys++;
    ck->dirty_bytes += k->len;
    if (k->stale && !(k->flags & PC_KF_ZERO))
      problem (ck, "%s: dirty, but its segment %" PRIu32 " was reused "
               "(generation %" PRIu32 " is gone): its data is lost and "
               "writeback would write other data there",
               key_where (ck, k, w, sizeof w), k->seg, k->gen);
  }
  return 0;
}

static int
bad_extent (void *opaque, const struct pc_key_info *k)
{
  struct check *ck = opaque;
  char w[256];

  int dirty = k->dirty;

  if (ck->export && pc_fmt_ns_of (k->off) != ck->ns)
    return 0;
  problem (ck, "%s: payload checksum mismatch (segment %" PRIu32 ":%" PRIu32
           ", %s)", key_where (ck, k, w, sizeof w), k->seg, k->seg_off,
           dirty ? "dirty: this data was not written back yet"
           : "clean: only the cached copy is bad");
  return 0;
}

/* What the ksets past the head of the log add up to. */
struct past {
  uint64_t found, keys, dirty, lo, hi;
};

/* Count the valid ksets of segment s numbered head or later. */
static void
scan_seg (const struct pc_geom *g, uint32_t s, uint64_t head,
          struct past *p)
{
  uint64_t off, seg_size = pc_fmt_seg_size (g);

  for (off = 0; off + sizeof (struct pc_kset_hdr) <= seg_size;
       off += PC_KSET_ALIGN) {
    const struct pc_kset_hdr *h =
      (const void *) pc_fmt_seg_addr (g, s, (uint32_t) off);
    struct pc_pos pos = { .seg = s, .off = (uint32_t) off, .seq = h->seq };
    const char *why;
    unsigned i;

    if (h->seq < head || !pc_fmt_kset_at (g, &pos, &why))
      continue;
    p->found++;
    p->lo = h->seq < p->lo ? h->seq : p->lo;
    p->hi = h->seq > p->hi ? h->seq : p->hi;
    p->keys += h->nkeys;
    for (i = 0; i < h->nkeys; i++)
      if (((const struct pc_key_rec *) (h + 1))[i].flags & PC_KF_DIRTY)
        p->dirty++;
  }
}

/* Look for valid ksets beyond the head of the log (see the top). */
static void
scan_past_head (struct check *ck)
{
  const struct pc_info *in = &ck->in;
  const struct pc_pos head = {
    .seg = in->key_head.seg, .off = in->key_head.off, .seq = in->key_head.seq,
  };
  const char *why = "it validates now: the file changed under the check";
  struct past p = { .lo = UINT64_MAX };
  struct raw_cache r;
  uint32_t s;

  if (raw_open (ck->path, &r) == -1) {
    warnmsg ("%s: cannot map the file to scan past the log head: %m",
             ck->path);
    return;
  }
  if (!r.sb_ok || memcmp (r.sb.uuid, in->uuid, sizeof in->uuid) != 0 ||
      r.sb.nsegs != in->nsegs) {
    warnmsg ("%s: superblock changed under the check; not scanning past "
             "the log head", ck->path);
    raw_close (&r);
    return;
  }

  set_phase (ck, "scanning past the log head, segment", r.sb.nsegs);
  for (s = 0; s < r.sb.nsegs; s++) {
    atomic_store (&ck->done, s + 1);
    if (!ck->data_segs[s] &&
        !raw_is_hole (&r, raw_seg (&r, s) - r.base, pc_fmt_seg_size (&r.geom)))
      scan_seg (&r.geom, s, head.seq, &p);
  }

  if (p.found) {
    pc_fmt_kset_at (&r.geom, &head, &why);
    problem (ck, "the key log ends at kset %" PRIu64 " (segment %" PRIu32
             " offset %" PRIu32 ": %s), but %" PRIu64 " valid kset%s with "
             "later sequence numbers (%" PRIu64 "..%" PRIu64 ") exist%s: a "
             "corrupt kset cut the log short, and the %" PRIu64 " key%s "
             "after it (%" PRIu64 " dirty) are not replayed; their data "
             "would be lost once the cache is written to again",
             head.seq, head.seg, head.off, why, p.found,
             p.found == 1 ? "" : "s", p.lo, p.hi, p.found == 1 ? "s" : "",
             p.keys, p.keys == 1 ? "" : "s", p.dirty);
  }
  raw_close (&r);
}

static void
free_check (struct check *ck)
{
  size_t i;

  for (i = 0; i < ck->nproblems && i < MAX_SHOWN_PROBLEMS; i++)
    free (ck->problems[i]);
  free (ck->problems);
  free (ck->data_segs);
  free (ck->ns_keys);
  free (ck->ns_dirty);
  exports_free (&ck->ex);
}

static void
report (struct check *ck)
{
  size_t i, shown = ck->nproblems < MAX_SHOWN_PROBLEMS
    ? ck->nproblems : MAX_SHOWN_PROBLEMS;

  printf ("%s: %zu problem%s found:\n", ck->path, ck->nproblems,
          ck->nproblems == 1 ? "" : "s");
  for (i = 0; i < shown && ck->problems[i]; i++)
    printf ("  %zu. %s\n", i + 1, ck->problems[i]);
  if (ck->nproblems > shown)
    printf ("  ... and %zu more\n", ck->nproblems - shown);
}

/* The engine refused the cache: EINVAL with messages is damage, which
 * is reported as the check's finding.  Returns the exit status.
 */
static int
report_unopened (struct check *ck, int err)
{
  size_t i;

  if (err != EINVAL || log_count () == 0) {
    /* Not damage: missing, in use, no permission, no memory... */
    for (i = 0; i < log_count (); i++)
      errmsg ("%s", log_message (i));
    if (err == EBUSY)
      busy_hint (ck->path);
    return EXIT_FAILED;
  }
  for (i = 0; i < log_count (); i++)
    problem (ck, "%s", strip_path (log_message (i), ck->path));
  printf ("%s: the cache cannot be opened: it is damaged\n", ck->path);
  report (ck);
  for (i = 0; i < log_count (); i++)
    if (strstr (log_message (i), "generation record")) {
      printf ("  pcachectl drain can still write back the dirty data "
              "that the cache proves\n");
      break;
    }
  free_check (ck);
  return EXIT_FAILED;
}

/* 1. Open: the engine's own validation and replay.  Returns 0 with
 * *cache open and ck->in filled in, or else the exit status (the
 * progress ticker then stopped).
 */
static int
open_for_check (struct check *ck, pc_cache **cache)
{
  size_t i;
  int r;

  log_collect (1);
  r = ck->live ? open_cache_live (ck->path, cache)
    : open_cache (ck->path, NULL, cache);
  /* Damage seen in a live cache may be a change half seen: look again
   * before calling it damage.
   */
  if (r == -1 && ck->live && errno == EINVAL) {
    log_reset ();
    r = open_cache_live (ck->path, cache);
  }
  log_collect (0);
  if (r == -1) {
    int e = errno;

    progress_ticker_stop ();
    return report_unopened (ck, e);
  }
  for (i = 0; i < log_count (); i++)
    warnmsg ("%s", log_message (i));

  if (pc_cache_info (*cache, &ck->in) == -1) {
    progress_ticker_stop ();
    pc_cache_close (*cache);
    free_check (ck);
    return EXIT_FAILED;
  }
  if (exports_load (*cache, &ck->ex) == -1 ||
      (ck->export && exports_find (&ck->ex, ck->path, ck->export,
                                   &ck->ns) == -1)) {
    progress_ticker_stop ();
    pc_cache_close (*cache);
    free_check (ck);
    return EXIT_FAILED;
  }
  ck->data_segs = calloc (ck->in.nsegs ? ck->in.nsegs : 1, 1);
  ck->ns_keys = calloc (ck->ex.slots ? ck->ex.slots : 1, sizeof (uint64_t));
  ck->ns_dirty = calloc (ck->ex.slots ? ck->ex.slots : 1, sizeof (uint64_t));
  if (!ck->data_segs || !ck->ns_keys || !ck->ns_dirty) {
    progress_ticker_stop ();
    errmsg ("out of memory");
    pc_cache_close (*cache);
    free_check (ck);
    return EXIT_FAILED;
  }
  return 0;
}

/* The cursors and the segment accounting the engine reports. */
static void
check_cursors (struct check *ck)
{
  const struct pc_info *in = &ck->in;

  if (in->key_tail.seq > in->dirty_tail.seq ||
      in->dirty_tail.seq > in->key_head.seq)
    problem (ck, "log cursors out of order: key tail %" PRIu64
             ", dirty tail %" PRIu64 ", head %" PRIu64, in->key_tail.seq,
             in->dirty_tail.seq, in->key_head.seq);
  if ((uint64_t) in->segs_free + in->segs_log + in->segs_data > in->nsegs)
    problem (ck, "segment accounting: %" PRIu32 " free + %" PRIu32
             " log + %" PRIu32 " data is more than %" PRIu32 " segments",
             in->segs_free, in->segs_log, in->segs_data, in->nsegs);
}

/* 2 to 4 (see the top), on the open cache. */
static void
check_log (struct check *ck, pc_cache *cache, int data_crc)
{
  int64_t bad;

  set_phase (ck, "key records", ck->in.cached_keys);
  if (pc_cache_walk (cache, check_key, ck) == -1)
    problem (ck, "the key log cannot be walked from key tail to head");

  if (data_crc) {
    set_phase (ck, "verifying payload checksums", 0);
    bad = pc_cache_verify_data (cache, bad_extent, ck);
    if (bad < 0)
      problem (ck, "payload checksums cannot be verified");
  }

  if (!ck->live)
    scan_past_head (ck);
}

/* The problems found, or what a consistent cache holds: "consistent"
 * when it holds dirty data (not "clean", which would read as having
 * none), "clean" when everything is written back.  Returns the exit
 * status.
 */
static int
report_result (struct check *ck, int data_crc, size_t unconfirmed)
{
  char h[32], label[128];
  uint32_t id;

  if (ck->nproblems) {
    report (ck);
    if (ck->live)
      printf ("  the cache is in use: these were found by two looks in a "
              "row, but check it again once nbdkit is stopped to be "
              "sure\n");
    return EXIT_FAILED;
  }
  printf ("%s: %s\n", ck->path, ck->dirty_keys ? "consistent" : "clean");
  printf ("  %" PRIu64 " kset%s, %" PRIu64 " key%s from key tail to head "
          "(%" PRIu64 " dirty, %s)\n", ck->ksets, ck->ksets == 1 ? "" : "s",
          ck->keys, ck->keys == 1 ? "" : "s", ck->dirty_keys,
          human_size (ck->dirty_bytes, h, sizeof h));
  if (ck->export)
    printf ("  of export %s only (the cache holds %" PRIu32 " export%s)\n",
            export_label (&ck->ex, ck->ns, label, sizeof label),
            ck->ex.count, ck->ex.count == 1 ? "" : "s");
  else if (ck->ex.count > 1)
    for (id = 0; id < ck->ex.slots; id++)
      if (ck->ex.name[id])
        printf ("  export %s: %" PRIu64 " key%s, %s dirty\n",
                export_label (&ck->ex, id, label, sizeof label),
                ck->ns_keys[id], ck->ns_keys[id] == 1 ? "" : "s",
                human_size (ck->ns_dirty[id], h, sizeof h));
  if (data_crc)
    printf ("  %" PRIu64 " payload checksum%s verified\n", ck->data_keys,
            ck->data_keys == 1 ? "" : "s");
  else
    printf ("  no payload checksums (the cache was made without "
            "data-crc)\n");
  if (ck->live)
    printf ("  checked live, while nbdkit uses it: the log past its head "
            "was not scanned\n");
  if (unconfirmed)
    printf ("  %zu problem%s seen in one look %s not there in the next: "
            "changes made by the running nbdkit meanwhile\n", unconfirmed,
            unconfirmed == 1 ? "" : "s", unconfirmed == 1 ? "was" : "were");
  return EXIT_OK;
}

/* One look at the cache: open it, steps 1 to 4, close it.  Returns 0
 * with the problems in ck, or the exit status if the cache could not
 * be opened (reported; the progress ticker is then stopped).
 */
static int
check_pass (struct check *ck, int *data_crc)
{
  pc_cache *cache = NULL;
  int r;

  set_phase (ck, "opening and replaying the log", 0);
  r = open_for_check (ck, &cache);
  if (r != 0)
    return r;
  *data_crc = !!(ck->in.features & PC_FEAT_DATA_CRC);
  check_cursors (ck);
  check_log (ck, cache, *data_crc);
  pc_cache_close (cache);
  return 0;
}

static int
found_in (const struct check *ck, const char *p)
{
  size_t i;

  for (i = 0; i < ck->nproblems && i < MAX_SHOWN_PROBLEMS; i++)
    if (ck->problems[i] && strcmp (ck->problems[i], p) == 0)
      return 1;
  return 0;
}

/* A live check found problems: look again, and keep only those found
 * both times.  Returns how many were dropped, or -1 if the second look
 * could not be taken (the first one's problems then stand).
 */
static long
confirm_live (struct check *ck)
{
  struct check again;
  size_t i, kept = 0, had = ck->nproblems;
  int data_crc;

  memset (&again, 0, sizeof again);
  again.path = ck->path;
  again.export = ck->export;
  again.live = 1;
  again.start = ck->start;
  log_reset ();
  if (check_pass (&again, &data_crc) != 0)
    return -1;
  for (i = 0; i < ck->nproblems && i < MAX_SHOWN_PROBLEMS; i++) {
    if (found_in (&again, ck->problems[i]))
      ck->problems[kept++] = ck->problems[i];
    else
      free (ck->problems[i]);
  }
  /* Those past MAX_SHOWN_PROBLEMS were not kept, so cannot be
   * compared: they count as not confirmed.
   */
  ck->nproblems = kept;
  free_check (&again);
  return (long) (had - kept);
}

int
cmd_check (int argc, char **argv)
{
  static const struct option opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "verbose", no_argument, NULL, 'v' },
    { "export", required_argument, NULL, 'e' },
    { NULL, 0, NULL, 0 }
  };
  struct check ck;
  long unconfirmed = 0;
  int data_crc = 0, r, c;

  memset (&ck, 0, sizeof ck);
  while ((c = cmd_getopt (argc, argv, ":hve:", opts)) != -1)
    if (c == 'e')
      ck.export = optarg;
  want_args (argc, argv, 1, "CACHE argument");

  ck.path = argv[optind];
  ck.start = time (NULL);
  ck.live = cache_in_use (ck.path);
  if (ck.live)
    warn_live (ck.path);
  progress_ticker_start (tick, &ck);

  r = check_pass (&ck, &data_crc);
  if (r != 0)
    return r;
  if (ck.live && ck.nproblems) {
    unconfirmed = confirm_live (&ck);
    if (unconfirmed == -1) {
      progress_ticker_stop ();
      return EXIT_FAILED;
    }
  }
  progress_ticker_stop ();

  r = report_result (&ck, data_crc, (size_t) unconfirmed);
  free_check (&ck);
  return r;
}
