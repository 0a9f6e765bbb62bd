/* SPDX-License-Identifier: BSD-3-Clause */
/* pcachectl drain: write the dirty data of a cache back to its backing
 * store when nbdkit cannot be started with the original plugin, or ask
 * a running filter to drain through its control socket.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/file.h>

#include "crc.h"
#include "meta.h"
#include "pcachectl.h"
#include "util.h"

#define POLL_MS 200
#define DEFAULT_TIMEOUT_S 60

struct job {
  pc_cache *c;
  int keep;
  int ns_only;                  /* drain namespace ns only (of several) */
  uint32_t ns;
  atomic_int done;
  int result, err;
  int emptied;                  /* the cache was emptied (detach) */
};

/* Does a namespace other than ns hold dirty data? */
static int
others_dirty (pc_cache *c, uint32_t ns)
{
  struct exports e;
  uint32_t id;
  int r = 1;

  if (exports_load (c, &e) == -1)
    return 1;
  for (id = 0, r = 0; id < e.slots; id++)
    if (id != ns && e.name[id] && e.dirty_bytes[id])
      r = 1;
  exports_free (&e);
  return r;
}

static void *
drain_main (void *arg)
{
  struct job *j = arg;
  int err = 0;

  if (j->ns_only) {
    j->result = pc_ns_drain (j->c, j->ns, &err);
    /* Empty the cache as a drain does, if nothing else needs it: the
     * engine drops clean data only all at once.
     */
    if (j->result == 0 && !j->keep && !others_dirty (j->c, j->ns)) {
      j->result = pc_cache_detach (j->c, &err);
      j->emptied = j->result == 0;
    }
  }
  else {
    j->result = j->keep ? pc_cache_drain (j->c, &err)
      : pc_cache_detach (j->c, &err);
    j->emptied = !j->keep && j->result == 0;
  }
  j->err = err;
  atomic_store (&j->done, 1);
  return NULL;
}

/* Write-back's threads set a backend's last error while the main
 * thread may read it for its report.
 */
static pthread_mutex_t error_lock = PTHREAD_MUTEX_INITIALIZER;

void
backend_set_error (struct backend *b, const char *fmt, ...)
{
  char msg[sizeof b->last_error];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  dbgmsg ("%s", msg);
  pthread_mutex_lock (&error_lock);
  memcpy (b->last_error, msg, sizeof msg);
  pthread_mutex_unlock (&error_lock);
}

void
backend_get_error (struct backend *b, char *buf)
{
  pthread_mutex_lock (&error_lock);
  memcpy (buf, b->last_error, sizeof b->last_error);
  pthread_mutex_unlock (&error_lock);
}

/* The backing store TO, an NBD URI or a file or block device.  A
 * pcachectl built without the library one of them needs says so.
 */
static struct backend *
open_backend (const char *to, const char *cache_path)
{
  if (strstr (to, "://")) {
#ifdef HAVE_LIBNBD
    return backend_nbd_open (to);
#else
    errmsg ("%s: this pcachectl was built without libnbd (configure "
            "--without-libnbd), so it cannot drain to an NBD server", to);
    return NULL;
#endif
  }
#ifdef HAVE_LIBURING
  return backend_file_open (to, cache_path);
#else
  (void) cache_path;
  errmsg ("%s: this pcachectl was built without liburing (configure "
          "--without-liburing), so it cannot drain to a file or block "
          "device", to);
  return NULL;
#endif
}

static volatile sig_atomic_t interrupted;

static void
on_signal (int sig)
{
  interrupted = sig;
}

/* Ask a running filter to drain. */
static int
drain_socket (const char *sock, int timeout_given, unsigned long timeout_s)
{
  char req[64], *reply;
  int r;

  /* The filter's own limit unless --timeout names one. */
  if (timeout_given)
    snprintf (req, sizeof req, "drain %lu", timeout_s);
  else
    snprintf (req, sizeof req, "drain");
  progress_show ("draining through %s ...", sock);
  reply = ctl_request (sock, req, -1);
  progress_lock ();
  progress_clear ();
  progress_unlock ();
  if (!reply)
    return EXIT_FAILED;
  if (strcmp (reply, "ok") == 0) {
    printf ("%s\n", reply);
    r = EXIT_OK;
  }
  else {
    errmsg ("%s: %s", sock, reply);
    r = EXIT_FAILED;
  }
  free (reply);
  return r;
}

/* The recorded backing identity of a cache, "" if none or unreadable. */
static void
recorded_id (const char *path, char id[PC_BACKING_ID_LEN])
{
  struct raw_cache raw;

  id[0] = '\0';
  if (raw_open (path, &raw) == 0) {
    if (raw.sb_ok)
      memcpy (id, raw.sb.backing_id, PC_BACKING_ID_LEN);
    id[PC_BACKING_ID_LEN - 1] = '\0';
    raw_close (&raw);
  }
}

/* ------------------------------------------------------------------ */
/* Rescue: a segment whose generation record is lost in both slots makes
 * the cache unopenable, since nothing tells its live keys from stale
 * ones (left from an earlier use of the segment).  The dirty keys the
 * cache can still prove are written back here, in log order, straight
 * from a read-only mapping: keys without payload (zero, trim), keys in
 * segments whose record is intact and whose generation matches, and
 * keys in a segment whose record is lost if the cache was made with
 * data-crc and the payload matches its checksum: then it is the data
 * the key wrote.  A stale key that passes is older than a key further
 * on in the log for the same range (that is how a dirty key goes
 * stale), which is written after it, so the backing store still ends up
 * as the log says.  Everything else of a lost segment is skipped and
 * reported.  The cache itself is not changed.
 */

#define MAX_SHOWN_SKIPS 20

struct rescue {
  const char *path;
  struct raw_cache r;
  struct backend *be;
  struct pc_ctrl ctrl;
  int data_crc;
  uint64_t *gen;                /* per segment */
  uint8_t *lost, *is_log;
  const struct pc_kset_hdr **ksets;     /* from the namespace's cursor on */
  uint32_t ns;                  /* the namespace rescued */
  uint64_t ns_size;
  struct pc_pos ns_tail;
  char ns_label[128];           /* its name, quoted */
  size_t nksets;
  uint64_t written, written_bytes, skipped, skipped_bytes, stale;
};

/* Count the segments whose generation record is lost in both slots. */
static uint32_t
load_gens (struct rescue *x)
{
  uint32_t i, n = 0, seq;

  for (i = 0; i < x->r.sb.nsegs; i++) {
    const uint8_t *e = x->r.base + PC_SEGTAB_OFF + (uint64_t) i *
      PC_SEGTAB_ENTRY;

    if (pc_gen_load (e, &x->gen[i], &seq) < 0) {
      x->lost[i] = 1;
      n++;
    }
  }
  return n;
}

/* Walk the log from key_tail as replay does, noting its segments and
 * the ksets from dirty_tail on.  Returns 0, or -1 after a message.
 */
static int
walk_log (struct rescue *x)
{
  struct pc_pos pos = x->ctrl.key_tail;
  const struct pc_pos *dt = &x->ns_tail;
  uint64_t most = (uint64_t) x->r.sb.nsegs *
    (pc_fmt_seg_size (&x->r.geom) / PC_KSET_ALIGN);
  int past_dirty = 0;

  x->ksets = calloc (most, sizeof *x->ksets);
  if (!x->ksets) {
    errmsg ("out of memory");
    return -1;
  }
  while (x->nksets < most) {
    const struct pc_kset_hdr *h;
    const char *why;

    if (pos.seg == dt->seg && pos.off == dt->off && pos.seq == dt->seq)
      past_dirty = 1;
    if (pos.seg < x->r.sb.nsegs)
      x->is_log[pos.seg] = 1;
    h = pc_fmt_kset_at (&x->r.geom, &pos, &why);
    if (!h)
      break;
    if (past_dirty)
      x->ksets[x->nksets++] = h;
    pc_fmt_kset_next (h, &pos);
  }
  if (!past_dirty) {
    errmsg ("%s: the log ends at kset %" PRIu64 ", before its dirty tail "
            "(kset %" PRIu64 "): nothing can be rescued", x->path, pos.seq,
            dt->seq);
    return -1;
  }
  return 0;
}

static void
skip_key (struct rescue *x, const struct pc_kset_hdr *h,
          const struct pc_key_rec *k, const char *why)
{
  if (x->skipped++ < MAX_SHOWN_SKIPS)
    errmsg ("%s: kset %" PRIu64 ": dirty extent at offset %" PRIu64
            ", length %" PRIu32 " (segment %" PRIu32 "): skipped, %s",
            x->path, h->seq, k->off, k->len, k->seg, why);
  x->skipped_bytes += k->len;
}

/* Which dirty key to write back: 1 yes, 0 stale, -1 skipped. */
static int
key_proven (struct rescue *x, const struct pc_kset_hdr *h,
            const struct pc_key_rec *k)
{
  const uint8_t *data;

  if (!pc_fmt_key_range_ok (k, x->ns_size)) {
    skip_key (x, h, k, "its range or flags are out of bounds");
    return -1;
  }
  if (k->flags & PC_KF_ZERO)
    return 1;
  if (!pc_fmt_key_payload_ok (&x->r.geom, k) || x->is_log[k->seg]) {
    skip_key (x, h, k, "its payload position is out of bounds");
    return -1;
  }
  data = raw_seg (&x->r, k->seg) + k->seg_off;
  if (x->lost[k->seg]) {
    if (!x->data_crc) {
      skip_key (x, h, k, "the generation record of its segment is lost, "
                "and without data-crc nothing proves the payload current");
      return -1;
    }
    if (pc_crc32c (data, k->len) != k->data_crc) {
      skip_key (x, h, k, "the generation record of its segment is lost, "
                "and the payload does not match its checksum (the "
                "segment was reused or damaged)");
      return -1;
    }
    return 1;
  }
  if ((uint32_t) x->gen[k->seg] != k->gen)
    return 0;
  if (x->data_crc && pc_crc32c (data, k->len) != k->data_crc) {
    skip_key (x, h, k, "the payload does not match its checksum");
    return -1;
  }
  return 1;
}

static int
write_key (struct rescue *x, const struct pc_key_rec *k, int *err)
{
  const struct pc_backend_ops *ops = &x->be->ops;
  void *ctx = x->be->pb.ctx;
  static const uint8_t zeroes[65536];
  uint32_t done, n;

  uint64_t off = k->off & PC_NS_OFF_MASK;

  if (!(k->flags & PC_KF_ZERO))
    return ops->pwrite (ctx, raw_seg (&x->r, k->seg) + k->seg_off, k->len,
                        off, err);
  /* As write-back does: a trim reads back as anything. */
  if (k->flags & PC_KF_TRIM)
    return ops->trim ? ops->trim (ctx, k->len, off, err) : 0;
  if (ops->zero)
    return ops->zero (ctx, k->len, off, !!(k->flags & PC_KF_MAY_TRIM),
                      err);
  for (done = 0; done < k->len; done += n) {
    n = k->len - done < sizeof zeroes ? k->len - done : sizeof zeroes;
    if (ops->pwrite (ctx, zeroes, n, off + done, err) == -1)
      return -1;
  }
  return 0;
}

static int
flush_backend (struct rescue *x, int *err)
{
  return x->be->ops.flush ? x->be->ops.flush (x->be->pb.ctx, err) : 0;
}

/* Write back in log order, flushing the backend at each epoch boundary
 * so that it always holds a prefix of the client's flush epochs.
 */
static int
write_back (struct rescue *x)
{
  uint64_t epoch = x->nksets ? x->ksets[0]->epoch : 0;
  char last[sizeof x->be->last_error];
  size_t i;
  unsigned j;
  int err = 0;

  for (i = 0; i < x->nksets; i++) {
    const struct pc_kset_hdr *h = x->ksets[i];
    const struct pc_key_rec *keys = (const struct pc_key_rec *) (h + 1);

    if (h->epoch != epoch && flush_backend (x, &err) == -1)
      goto fail;
    epoch = h->epoch;
    for (j = 0; j < h->nkeys; j++) {
      int p;

      if (!(keys[j].flags & PC_KF_DIRTY) ||
          pc_fmt_ns_of (keys[j].off) != x->ns)
        continue;
      p = key_proven (x, h, &keys[j]);
      if (p == 0)
        x->stale++;
      if (p != 1)
        continue;
      if (write_key (x, &keys[j], &err) == -1)
        goto fail;
      x->written++;
      x->written_bytes += keys[j].len;
    }
  }
  if (flush_backend (x, &err) == -1)
    goto fail;
  return 0;

 fail:
  backend_get_error (x->be, last);
  errmsg ("%s: writing to %s failed: %s%s%s", x->path, x->be->name,
          strerror (err), last[0] ? ": " : "", last);
  return -1;
}

static void
rescue_report (struct rescue *x, uint32_t nlost, int name_it)
{
  char h1[32], h2[32];

  if (x->skipped > MAX_SHOWN_SKIPS)
    errmsg ("%s: ... and %" PRIu64 " more dirty extents skipped", x->path,
            x->skipped - MAX_SHOWN_SKIPS);
  printf ("%s: rescue: %" PRIu32 " segment%s lost %s generation record; "
          "wrote back %" PRIu64 " dirty extent%s (%s) %s%s%sthat the cache "
          "still proves to %s; skipped %" PRIu64 " (%s)%s\n", x->path, nlost,
          nlost == 1 ? "" : "s", nlost == 1 ? "its" : "their", x->written,
          x->written == 1 ? "" : "s",
          human_size (x->written_bytes, h1, sizeof h1),
          name_it ? "of export " : "", name_it ? x->ns_label : "",
          name_it ? " " : "", x->be->name, x->skipped,
          human_size (x->skipped_bytes, h2, sizeof h2),
          x->skipped ? ", whose data is lost" : "");
}

static void
rescue_free (struct rescue *x)
{
  free (x->gen);
  free (x->lost);
  free (x->is_log);
  free (x->ksets);
  if (x->be)
    x->be->close (x->be);
  raw_close (&x->r);
}

/* Take the cache for the rescue and find its log.  Returns 0, or -1
 * after a message.
 */
/* The namespace of the export to rescue, and its cursor. */
static int
find_ns (struct rescue *x, const char *name)
{
  uint32_t i;

  for (i = 0; i < x->r.sb.max_exports; i++) {
    const struct pc_ns_rec *rec = pc_fmt_ns_at (x->r.base, &x->r.sb, i);

    if (rec && rec->name_len == strlen (name) &&
        memcmp (rec->name, name, rec->name_len) == 0) {
      x->ns = i;
      x->ns_size = rec->size;
      quote_name (name, x->ns_label, sizeof x->ns_label);
      x->ns_tail = x->ctrl.ns_tail[i];
      if (x->ns_tail.seq < x->ctrl.key_tail.seq)
        x->ns_tail = x->ctrl.key_tail;
      return 0;
    }
  }
  errmsg ("%s: the cache holds no export %s", x->path,
          quote_name (name, x->ns_label, sizeof x->ns_label));
  return -1;
}

static int
rescue_lock (struct rescue *x, const char *want_id)
{
  if (flock (x->r.fd, LOCK_EX | LOCK_NB) == -1) {
    errmsg ("%s: cache is in use by another process", x->path);
    return -1;
  }
  if (want_id && strncmp (want_id, x->r.sb.backing_id, PC_BACKING_ID_LEN)) {
    errmsg ("%s: cache belongs to backing \"%.*s\", not \"%s\"", x->path,
            PC_BACKING_ID_LEN, x->r.sb.backing_id, want_id);
    return -1;
  }
  if (pc_ctrl_load (x->r.base, &x->ctrl) < 0) {
    errmsg ("%s: the control record is corrupt in both slots too: the log "
            "cannot be found", x->path);
    return -1;
  }
  x->data_crc = !!(x->r.sb.features & PC_FEAT_DATA_CRC);
  return 0;
}


/* Open the backing store to, of the size the cache was made for. */
static int
rescue_backend (struct rescue *x, const char *to, const char *nbd_export)
{
#ifdef HAVE_LIBNBD
  x->be = nbd_export ? backend_nbd_open_export (to, nbd_export)
    : open_backend (to, x->path);
#else
  (void) nbd_export;            /* no NBD targets without libnbd */
  x->be = open_backend (to, x->path);
#endif
  if (!x->be)
    return -1;
  if (x->be->size != x->ns_size) {
    errmsg ("%s: %s is %" PRIu64 " bytes but the cache holds export %s "
            "as %" PRIu64 " bytes", x->path, x->be->name, x->be->size,
            x->ns_label, x->ns_size);
    return -1;
  }
  return 0;
}

/* Rescue the export called name to the backing store to (to's export
 * of that name if nbd_export).  Returns 0 if all its dirty data was
 * written back, else -1 (reported).
 */
static int
rescue_ns (struct rescue *x, const char *name, const char *to,
           int nbd_export, uint32_t nlost, int name_it)
{
  free (x->ksets);
  x->ksets = NULL;
  x->nksets = 0;
  memset (x->is_log, 0, x->r.sb.nsegs);
  x->written = x->written_bytes = x->skipped = x->skipped_bytes = 0;
  x->stale = 0;
  if (x->be) {
    x->be->close (x->be);
    x->be = NULL;
  }
  if (find_ns (x, name) == -1 || walk_log (x) == -1 ||
      rescue_backend (x, to, nbd_export ? name : NULL) == -1 ||
      write_back (x) == -1)
    return -1;
  rescue_report (x, nlost, name_it);
  return x->skipped ? -1 : 0;
}

struct drain;
static int rescue (const struct drain *d);

/* ------------------------------------------------------------------ */
/* Drain through the engine. */

/* What is drained where. */
enum target {
  T_DEFAULT,                    /* a cache of export "" alone, as ever */
  T_ONE,                        /* export d->export to d->to */
  T_EACH,                       /* each export to the NBD server's export
                                   of the same name */
};

struct drain {
  const char *path, *to, *want_id, *export;
  enum target target;
  struct exports table;         /* the namespace table, read raw */
  unsigned long timeout_s;
  int timeout_given;
  struct backend *be;           /* T_DEFAULT, T_ONE */
  struct backend **bes;         /* T_EACH: by namespace */
  uint32_t nbes;
  struct exports ex;            /* the engine's view, at the start */
  pc_cache *cache;
  struct job job;
  pthread_t thread;
  struct sigaction old_int, old_term;
  uint64_t start, dirty_ksets;
};

/* Returns -1 if the cache needs no rescue (every generation record is
 * readable, or the file is not a cache: the engine says why), else the
 * exit status.
 */
static int
rescue (const struct drain *d)
{
  const char *path = d->path, *to = d->to, *want_id = d->want_id;
  struct rescue x;
  uint32_t nlost, id;
  int r = EXIT_FAILED;

  memset (&x, 0, sizeof x);
  x.path = path;
  if (raw_open (path, &x.r) == -1)
    return -1;
  if (!x.r.sb_ok) {
    raw_close (&x.r);
    return -1;
  }
  x.gen = calloc (x.r.sb.nsegs, sizeof *x.gen);
  x.lost = calloc (x.r.sb.nsegs, 1);
  x.is_log = calloc (x.r.sb.nsegs, 1);
  if (!x.gen || !x.lost || !x.is_log) {
    errmsg ("out of memory");
    goto out;
  }
  nlost = load_gens (&x);
  if (nlost == 0) {
    rescue_free (&x);
    return -1;
  }
  errmsg ("%s: the generation record of %" PRIu32 " segment%s is corrupt "
          "in both slots, so the cache cannot be opened; writing back what "
          "its checksums still prove", path, nlost, nlost == 1 ? "" : "s");
  if (rescue_lock (&x, want_id) == -1)
    goto out;
  if (d->target == T_EACH) {
    /* Every export, even after one failed: a rescue saves what it can. */
    r = EXIT_OK;
    for (id = 0; id < d->table.slots; id++)
      if (d->table.name[id] &&
          rescue_ns (&x, d->table.name[id], to, 1, nlost, 1) == -1)
        r = EXIT_FAILED;
  }
  else if (rescue_ns (&x, d->export ? d->export : "", to, 0, nlost,
                      d->export != NULL) == 0)
    r = EXIT_OK;
  printf ("%s: the cache was not changed and cannot be opened as it is: "
          "format it again (pcache-format=force) to use it\n", path);
 out:
  rescue_free (&x);
  return r;
}

/* ------------------------------------------------------------------ */
static void
parse_args (int argc, char **argv, struct drain *d)
{
  static const struct option opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "verbose", no_argument, NULL, 'v' },
    { "to", required_argument, NULL, 't' },
    { "keep", no_argument, NULL, 'k' },
    { "backing-id", required_argument, NULL, 'b' },
    { "timeout", required_argument, NULL, 'T' },
    { "export", required_argument, NULL, 'e' },
    { NULL, 0, NULL, 0 }
  };
  int c;

  d->timeout_s = DEFAULT_TIMEOUT_S;
  while ((c = cmd_getopt (argc, argv, ":hvt:kb:T:e:", opts)) != -1) {
    char *end;

    switch (c) {
    case 'e':
      d->export = optarg;
      break;
    case 't':
      d->to = optarg;
      break;
    case 'k':
      d->job.keep = 1;
      break;
    case 'b':
      d->want_id = optarg;
      break;
    case 'T':
      errno = 0;
      d->timeout_s = strtoul (optarg, &end, 10);
      if (errno || end == optarg || *end || optarg[0] == '-' ||
          d->timeout_s > PC_MAX_DRAIN_TIMEOUT_S)
        usage_error ("--timeout: '%s' is not a number of seconds", optarg);
      d->timeout_given = 1;
      break;
    }
  }
  want_args (argc, argv, 1, "CACHE argument");
  d->path = argv[optind];
}

/* What must hold before anything is written: a cache file (allocated if
 * sparse) drained to the store it was made for.  Returns -1 to go on,
 * else the exit status.
 */
static int
preflight (const struct drain *d)
{
  char id[PC_BACKING_ID_LEN];

  if (is_socket (d->path))
    usage_error ("%s is a control socket: drop --to to ask the running "
                 "filter to drain", d->path);
  if (d->want_id && strlen (d->want_id) >= PC_BACKING_ID_LEN)
    usage_error ("--backing-id: longer than %d bytes", PC_BACKING_ID_LEN - 1);

  /* Drain writes to the cache: a sparse one is allocated first (the
   * engine would, but open_cache refuses a sparse file).
   */
  if (raw_allocate (d->path) == -1)
    return EXIT_FAILED;

  /* A cache made for an identified backing store is only drained to a
   * store the user names as that one: its size alone proves little.
   */
  recorded_id (d->path, id);
  if (id[0] && !d->want_id) {
    errmsg ("%s: the cache was made for backing store \"%s\": add "
            "--backing-id='%s' to confirm that %s is that store", d->path,
            id, id, d->to);
    return EXIT_FAILED;
  }
  return -1;
}

/* The namespace table of a cache, read raw (nothing if it cannot be
 * read: the engine then says why).  Returns 0, or -1 if out of memory.
 */
static int
read_table (const char *path, struct exports *e)
{
  struct raw_cache r;
  uint32_t id;

  memset (e, 0, sizeof *e);
  if (raw_open (path, &r) == -1)
    return 0;
  if (r.sb_ok && r.sb.max_exports) {
    e->slots = r.sb.max_exports;
    e->name = calloc (e->slots, sizeof *e->name);
    e->size = calloc (e->slots, sizeof *e->size);
    e->dirty_bytes = calloc (e->slots, sizeof *e->dirty_bytes);
    if (!e->name || !e->size || !e->dirty_bytes)
      goto oom;
    for (id = 0; id < e->slots; id++) {
      const struct pc_ns_rec *rec = pc_fmt_ns_at (r.base, &r.sb, id);

      if (!rec)
        continue;
      e->name[id] = strndup (rec->name, rec->name_len);
      if (!e->name[id])
        goto oom;
      e->size[id] = rec->size;
      e->count++;
    }
  }
  raw_close (&r);
  return 0;

 oom:
  raw_close (&r);
  exports_free (e);
  errmsg ("out of memory");
  return -1;
}

/* "'a', 'b', 'c'" (the first few). */
static const char *
list_exports (const struct exports *e, int skip, uint32_t skip_id,
              int with_dirty, char *buf, size_t len)
{
  char label[128], h[32];
  uint32_t id, n = 0, more = 0;
  size_t o = 0;

  buf[0] = '\0';
  for (id = 0; id < e->slots; id++) {
    if (!e->name[id] || (skip && id == skip_id))
      continue;
    if (n++ >= 8 || o + 200 > len) {
      more++;
      continue;
    }
    export_label (e, id, label, sizeof label);
    if (with_dirty)
      o += snprintf (buf + o, len - o, "%s%s (%s dirty)", o ? ", " : "",
                     label, human_size (e->dirty_bytes[id], h, sizeof h));
    else
      o += snprintf (buf + o, len - o, "%s%s", o ? ", " : "", label);
  }
  if (more)
    snprintf (buf + o, len - o, " and %" PRIu32 " more", more);
  return buf;
}

/* What to drain where (see enum target).  Returns -1 to go on, else the
 * exit status.
 */
static int
choose_target (struct drain *d)
{
  int is_nbd = strstr (d->to, "://") != NULL;
  char list[2048];
  uint32_t id;

  if (read_table (d->path, &d->table) == -1)
    return EXIT_FAILED;
  if (d->export) {
    if (d->table.count &&
        exports_find (&d->table, d->path, d->export, &id) == -1)
      return EXIT_FAILED;
    d->target = T_ONE;
    return -1;
  }
  if (d->table.count == 0 ||
      (d->table.count == 1 && d->table.name[0] && !d->table.name[0][0])) {
    d->target = T_DEFAULT;
    return -1;
  }
  if (is_nbd) {
    d->target = T_EACH;
    return -1;
  }
  if (d->table.count == 1) {
    /* One export, whatever its name: no doubt which. */
    for (id = 0; !d->table.name[id]; id++)
      ;
    d->export = d->table.name[id];
    d->target = T_ONE;
    return -1;
  }
  errmsg ("%s: the cache holds %" PRIu32 " exports (%s), and %s can take "
          "only one: pick it with --export NAME (or drain to an NBD server, "
          "which writes each export to its export of the same name)",
          d->path, d->table.count,
          list_exports (&d->table, 0, 0, 0, list, sizeof list), d->to);
  return EXIT_FAILED;
}

/* T_ONE and T_EACH: the cache is ready; open the backing stores and
 * their namespaces (which refuses a size that does not match) and
 * start the workers.  Returns 0, or -1 after a message.
 */
static int
start_exports (struct drain *d)
{
  uint32_t id, ns;

  if (exports_load (d->cache, &d->ex) == -1)
    return -1;
  if (d->target == T_ONE) {
    /* Never create a namespace: pc_ns_open would. */
    if (exports_find (&d->ex, d->path, d->export, &id) == -1)
      return -1;
    d->be = open_backend (d->to, d->path);
    if (!d->be || pc_ns_open (d->cache, d->export, d->be->size, &ns) == -1)
      return -1;
    d->job.ns = ns;
    /* Of several exports, this one only; alone, as a whole cache. */
    d->job.ns_only = d->ex.count > 1;
    dbgmsg ("%s: export %s: %" PRIu64 " dirty bytes, to %s", d->path,
            d->export, d->ex.dirty_bytes[ns], d->to);
    if (pc_cache_start (d->cache, NULL) == -1)
      return -1;
    return pc_ns_attach (d->cache, ns, &d->be->pb);
  }

  /* Every backend first: nothing is written unless all are there. */
  d->nbes = d->ex.slots;
  d->bes = calloc (d->nbes ? d->nbes : 1, sizeof *d->bes);
  if (!d->bes) {
    errmsg ("out of memory");
    return -1;
  }
  for (id = 0; id < d->ex.slots; id++) {
    if (!d->ex.name[id])
      continue;
#ifdef HAVE_LIBNBD
    d->bes[id] = backend_nbd_open_export (d->to, d->ex.name[id]);
#else
    d->bes[id] = open_backend (d->to, d->path);
#endif
    if (!d->bes[id] ||
        pc_ns_open (d->cache, d->ex.name[id], d->bes[id]->size, &ns) == -1)
      return -1;
    dbgmsg ("%s: export %s: %" PRIu64 " dirty bytes, to %s", d->path,
            d->ex.name[id], d->ex.dirty_bytes[id], d->bes[id]->name);
  }
  if (pc_cache_start (d->cache, NULL) == -1)
    return -1;
  for (id = 0; id < d->nbes; id++)
    if (d->bes[id] && pc_ns_attach (d->cache, id, &d->bes[id]->pb) == -1)
      return -1;
  return 0;
}

/* The last error of a backend, if one had one. */
static void
report_last_error (struct backend *b)
{
  char last[sizeof b->last_error];

  if (!b)
    return;
  backend_get_error (b, last);
  if (last[0])
    errmsg ("last error: %s", last);
}

static void
report_last_errors (const struct drain *d)
{
  uint32_t id;

  report_last_error (d->be);
  for (id = 0; id < d->nbes; id++)
    report_last_error (d->bes[id]);
}

/* Open the cache and the backing store and start the engine's workers.
 * Returns 0, or -1 after a message.
 */
static int
start_engine (struct drain *d)
{
  struct pc_info in;

  if (open_cache (d->path, d->want_id, &d->cache) == -1)
    return -1;
  if (d->target != T_DEFAULT) {
    if (pc_cache_ready (d->cache) == -1 ||
        pc_cache_info (d->cache, &in) == -1)
      return -1;
    d->dirty_ksets = in.dirty_ksets;
    return start_exports (d);
  }
  d->be = open_backend (d->to, d->path);
  if (!d->be)
    return -1;
  if (pc_cache_bind (d->cache, d->be->size) == -1)
    return -1;
  if (pc_cache_info (d->cache, &in) == -1)
    return -1;
  d->dirty_ksets = in.dirty_ksets;
  dbgmsg ("%s: %" PRIu64 " dirty ksets, %" PRIu64 " dirty bytes, to %s",
          d->path, in.dirty_ksets, in.dirty_bytes, d->to);
  return pc_cache_start (d->cache, &d->be->pb);
}

/* Catch the first SIGINT or SIGTERM (unless ignored, as in a background
 * job) to stop cleanly.
 */
static void
catch_signals (struct drain *d)
{
  struct sigaction sa;

  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset (&sa.sa_mask);
  sigaction (SIGINT, &sa, &d->old_int);
  sigaction (SIGTERM, &sa, &d->old_term);
  if (d->old_int.sa_handler == SIG_IGN)
    sigaction (SIGINT, &d->old_int, NULL);
  if (d->old_term.sa_handler == SIG_IGN)
    sigaction (SIGTERM, &d->old_term, NULL);
}

static void
restore_signals (struct drain *d)
{
  sigaction (SIGINT, &d->old_int, NULL);
  sigaction (SIGTERM, &d->old_term, NULL);
}

/* Watch the drain thread: progress on a terminal, and give up if
 * writeback keeps failing with no progress for timeout_s.  Returns NULL
 * once the thread is done, else why the drain is to stop.
 */
/* What is left to write back: dirty ksets, or, when one export of
 * several is drained, its dirty bytes (the others' stay).
 */
static uint64_t
left (struct drain *d, const struct pc_stats *st)
{
  static struct pc_ns_info ns;

  if (d->job.ns_only)
    return pc_ns_info (d->cache, d->job.ns, &ns) == 0 ? ns.dirty_bytes : 0;
  return st->dirty_ksets;
}

/* Plugin requests that failed, and those a shutdown ended (here, a
 * remote server's): either way write-back is not getting anywhere.
 */
static uint64_t
failures (const struct pc_stats *st)
{
  return st->writeback_errors + st->writeback_aborts;
}

static const char *
watch (struct drain *d)
{
  uint64_t last_good, err_base, last_dirty, now_left;
  struct pc_stats st;
  const char *why = NULL;
  char h[32], h2[32];

  d->start = last_good = pc_now_ms ();
  pc_cache_get_stats (d->cache, &st);
  err_base = failures (&st);
  last_dirty = left (d, &st);
  while (!atomic_load (&d->job.done)) {
    uint64_t t;
    int i;

    /* Wake often, so the end of the drain is seen at once. */
    for (i = 0; i < POLL_MS / 10 && !atomic_load (&d->job.done) &&
           !interrupted; i++)
      usleep (10000);
    if (atomic_load (&d->job.done))
      break;
    pc_cache_get_stats (d->cache, &st);
    t = pc_now_ms ();
    now_left = left (d, &st);
    if (now_left < last_dirty) {
      last_good = t;
      err_base = failures (&st);
    }
    last_dirty = now_left;
    if (interrupted) {
      why = "interrupted";
      break;
    }
    if (d->timeout_s && failures (&st) > err_base &&
        t - last_good >= d->timeout_s * 1000) {
      why = "writeback keeps failing";
      break;
    }
    if (d->job.ns_only)
      progress_show ("draining export %s: %s left, %s written%s", d->export,
                     human_size (now_left, h2, sizeof h2),
                     human_size (st.writeback_bytes, h, sizeof h),
                     failures (&st) > err_base
                     ? " (writeback failing, retrying)" : "");
    else
      progress_show ("draining: %" PRIu64 " ksets left, %s written%s",
                     st.dirty_ksets,
                     human_size (st.writeback_bytes, h, sizeof h),
                     failures (&st) > err_base
                     ? " (writeback failing, retrying)" : "");
  }
  progress_lock ();
  progress_clear ();
  progress_unlock ();
  return why;
}

/* Stop a drain that is interrupted or failing, saying what is left. */
static void
give_up (struct drain *d)
{
  struct pc_stats st;
  uint64_t deadline;

  if (interrupted)
    errmsg ("%s: interrupted; stopping after the writeback batch in "
            "progress (interrupt again to quit at once)", d->path);
  else
    errmsg ("%s: writeback to %s has failed for %lu s without progress; "
            "giving up", d->path, d->to, d->timeout_s);
  report_last_errors (d);
  /* A second signal ends the process: the cache is crash consistent. */
  restore_signals (d);
  /* Stop the workers (a batch being written finishes first).  The drain
   * thread then ends, or, with an engine that does not wake it on stop,
   * stays blocked until exit: the cache is then left for the exit to
   * unmap and unlock.
   */
  pc_cache_stop (d->cache);
  pc_cache_get_stats (d->cache, &st);
  if (st.dirty_ksets)
    errmsg ("%s: %" PRIu64 " ksets are still dirty; nothing is lost: they "
            "stay in the cache, and drain can be run again", d->path,
            st.dirty_ksets);
  else
    errmsg ("%s: everything was written back before the stop, but the "
            "cache was not emptied; run drain again", d->path);
  deadline = pc_now_ms () + 1000;
  while (!atomic_load (&d->job.done) && pc_now_ms () < deadline)
    usleep (10000);
  if (atomic_load (&d->job.done))
    pthread_join (d->thread, NULL);
  else {
    pthread_detach (d->thread);
    d->cache = NULL;
  }
}

/* finish for T_ONE and T_EACH. */
static int
finish_exports (struct drain *d, const struct pc_stats *st,
                const struct pc_info *in)
{
  char h1[32], h2[32], label[128], list[2048];
  double secs = (pc_now_ms () - d->start) / 1000.0;
  struct exports after;
  uint32_t id;
  size_t o = 0;
  int r = EXIT_OK;

  if (exports_load (d->cache, &after) == -1)
    return EXIT_FAILED;
  if (d->target == T_EACH) {
    list[0] = '\0';
    for (id = 0; id < d->ex.slots && o + 200 < sizeof list; id++)
      if (d->ex.name[id])
        o += snprintf (list + o, sizeof list - o, "%s%s (%s)",
                       o ? ", " : "",
                       export_label (&d->ex, id, label, sizeof label),
                       human_size (d->ex.dirty_bytes[id], h1, sizeof h1));
    printf ("%s: wrote back %" PRIu64 " dirty kset%s (%s of data) to %s in "
            "%.1f s, each export to the server's export of the same name: "
            "%s; %s\n", d->path, d->dirty_ksets,
            d->dirty_ksets == 1 ? "" : "s",
            human_size (st->writeback_bytes, h1, sizeof h1), d->to, secs,
            list, d->job.emptied ? "the cache is now empty"
            : "clean data stays cached");
    if (in->dirty_bytes) {
      errmsg ("%s: %s are dirty again (written during the drain?)", d->path,
              human_size (in->dirty_bytes, h2, sizeof h2));
      r = EXIT_FAILED;
    }
    exports_free (&after);
    return r;
  }

  id = d->job.ns;
  export_label (&d->ex, id, label, sizeof label);
  printf ("%s: wrote back export %s (%s of data) to %s in %.1f s; %s\n",
          d->path, label, human_size (st->writeback_bytes, h1, sizeof h1),
          d->to, secs,
          !d->job.ns_only
          ? (d->job.emptied ? "the cache is now empty"
             : "clean data stays cached")
          : d->job.emptied
          ? "the other exports held no dirty data: the cache is now empty"
          : d->job.keep ? "the other exports are left as they are; clean "
          "data stays cached"
          : "the other exports are left as they are");
  if (d->job.ns_only && !d->job.emptied)
    printf ("%s: other exports: %s\n", d->path,
            list_exports (&after, 1, id, 1, list, sizeof list));
  if (d->job.ns_only && !d->job.emptied && !d->job.keep)
    warnmsg ("%s: the clean data of export %s stays cached while other "
             "exports hold dirty data (the cache is emptied only as a "
             "whole): drain those too before %s is changed other than "
             "through this cache", d->path, label, d->to);
  if (after.dirty_bytes[id]) {
    errmsg ("%s: %s of export %s are dirty again (written during the "
            "drain?)", d->path,
            human_size (after.dirty_bytes[id], h2, sizeof h2), label);
    r = EXIT_FAILED;
  }
  exports_free (&after);
  return r;
}

/* The drain thread is done: report.  Returns the exit status. */
static int
finish (struct drain *d)
{
  char h1[32], h2[32];
  struct pc_stats st;
  struct pc_info in;

  pthread_join (d->thread, NULL);
  restore_signals (d);
  if (d->job.result == -1) {
    errmsg ("%s: drain failed: %s", d->path, strerror (d->job.err));
    report_last_errors (d);
    return EXIT_FAILED;
  }

  pc_cache_get_stats (d->cache, &st);
  if (pc_cache_info (d->cache, &in) == -1)
    return EXIT_FAILED;
  if (d->target != T_DEFAULT)
    return finish_exports (d, &st, &in);
  printf ("%s: wrote back %" PRIu64 " dirty kset%s (%s of data) to %s in "
          "%.1f s; %s\n", d->path, d->dirty_ksets,
          d->dirty_ksets == 1 ? "" : "s",
          human_size (st.writeback_bytes, h1, sizeof h1), d->to,
          (pc_now_ms () - d->start) / 1000.0,
          d->job.keep
          ? "clean data stays cached"
          : "the cache is now empty");
  if (in.dirty_bytes) {
    errmsg ("%s: %s are dirty again (written during the drain?)", d->path,
            human_size (in.dirty_bytes, h2, sizeof h2));
    return EXIT_FAILED;
  }
  return EXIT_OK;
}

/* Drain through the engine, from a thread, watched from this one. */
static int
drain_engine (struct drain *d)
{
  if (start_engine (d) == -1)
    return EXIT_FAILED;
  catch_signals (d);
  d->job.c = d->cache;
  if ((errno = pthread_create (&d->thread, NULL, drain_main,
                               &d->job)) != 0) {
    errmsg ("pthread_create: %m");
    return EXIT_FAILED;
  }
  if (watch (d)) {
    give_up (d);
    return EXIT_FAILED;
  }
  return finish (d);
}

int
cmd_drain (int argc, char **argv)
{
  struct drain d;
  uint32_t i;
  int r;

  memset (&d, 0, sizeof d);
  parse_args (argc, argv, &d);
  if (!d.to) {
    if (is_socket (d.path)) {
      if (d.export)
        usage_error ("--export needs --to: a running filter drains all "
                     "its exports");
      if (d.job.keep)
        usage_error ("--keep needs --to: a running filter keeps its clean "
                     "data when it drains");
      if (d.want_id)
        usage_error ("--backing-id needs --to: a running filter writes to "
                     "its own plugin");
      return drain_socket (d.path, d.timeout_given, d.timeout_s);
    }
    usage_error ("missing --to BACKING (a file, a block device or an NBD "
                 "URI)");
  }
#ifdef HAVE_LIBNBD
  /* A server that stops answering counts as failing write-back. */
  backend_nbd_set_timeout (d.timeout_s);
#endif
  r = preflight (&d);
  if (r != -1)
    return r;
  r = choose_target (&d);
  if (r == -1)
    r = rescue (&d);
  if (r == -1)
    r = drain_engine (&d);

  if (d.cache)
    pc_cache_close (d.cache);
  if (d.be)
    d.be->close (d.be);
  for (i = 0; i < d.nbes; i++)
    if (d.bes[i])
      d.bes[i]->close (d.bes[i]);
  free (d.bes);
  exports_free (&d.ex);
  exports_free (&d.table);
  return r;
}
