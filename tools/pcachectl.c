/* SPDX-License-Identifier: BSD-3-Clause */
/* pcachectl: inspect, check and drain pcache caches; talk to a running
 * pcache filter through its control socket.
 *
 * This file: command line, messages, and the info and dump commands.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pcachectl.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.1.0"
#endif

int verbose;

/* The command being run, for messages about its arguments. */
static const char *command = NULL;

/* ------------------------------------------------------------------ */
/* Messages. */

static void
vmsg (const char *prefix, const char *fmt, va_list ap)
{
  char buf[4096];
  int e = errno;

  errno = e;
  vsnprintf (buf, sizeof buf, fmt, ap);
  progress_lock ();
  progress_clear ();
  fprintf (stderr, "pcachectl: %s%s\n", prefix, buf);
  progress_unlock ();
  errno = e;
}

void
errmsg (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vmsg ("", fmt, ap);
  va_end (ap);
}

void
warnmsg (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vmsg ("warning: ", fmt, ap);
  va_end (ap);
}

void
dbgmsg (const char *fmt, ...)
{
  va_list ap;

  if (!verbose)
    return;
  va_start (ap, fmt);
  vmsg ("debug: ", fmt, ap);
  va_end (ap);
}

void
usage_error (const char *fmt, ...)
{
  va_list ap;
  char buf[1024];

  va_start (ap, fmt);
  vsnprintf (buf, sizeof buf, fmt, ap);
  va_end (ap);
  if (command)
    fprintf (stderr, "pcachectl %s: %s\n", command, buf);
  else
    fprintf (stderr, "pcachectl: %s\n", buf);
  fprintf (stderr, "Try 'pcachectl --help' for more information.\n");
  exit (EXIT_USAGE);
}

/* ------------------------------------------------------------------ */
/* Messages of the engine. */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_collecting;
static char **log_msgs;
static size_t log_n;

static void
engine_log (int level, const char *fmt, va_list ap)
{
  char buf[4096];

  /* Format first: the message may use %m. */
  vsnprintf (buf, sizeof buf, fmt, ap);
  if (level > 0) {
    dbgmsg ("%s", buf);
    return;
  }
  pthread_mutex_lock (&log_lock);
  if (log_collecting) {
    char **n = realloc (log_msgs, (log_n + 1) * sizeof *n);
    if (n) {
      log_msgs = n;
      log_msgs[log_n] = strdup (buf);
      if (log_msgs[log_n])
        log_n++;
    }
  }
  pthread_mutex_unlock (&log_lock);
  if (!log_collecting)
    errmsg ("%s", buf);
  else
    dbgmsg ("(collected) %s", buf);
}

void
log_init (void)
{
  pc_set_log (engine_log);
}

void
log_collect (int on)
{
  pthread_mutex_lock (&log_lock);
  log_collecting = on;
  pthread_mutex_unlock (&log_lock);
}

size_t
log_count (void)
{
  size_t n;

  pthread_mutex_lock (&log_lock);
  n = log_n;
  pthread_mutex_unlock (&log_lock);
  return n;
}

void
log_reset (void)
{
  size_t i;

  pthread_mutex_lock (&log_lock);
  for (i = 0; i < log_n; i++)
    free (log_msgs[i]);
  free (log_msgs);
  log_msgs = NULL;
  log_n = 0;
  pthread_mutex_unlock (&log_lock);
}

const char *
log_message (size_t i)
{
  const char *m;

  pthread_mutex_lock (&log_lock);
  m = i < log_n ? log_msgs[i] : NULL;
  pthread_mutex_unlock (&log_lock);
  return m;
}

/* ------------------------------------------------------------------ */
/* Helpers. */

const char *
human_size (uint64_t n, char *buf, size_t len)
{
  static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB",
                                       "EiB" };
  double v = n;
  int u = -1;

  if (n < 1024) {
    snprintf (buf, len, "%" PRIu64 " B", n);
    return buf;
  }
  while (v >= 1024 && u < 5) {
    v /= 1024;
    u++;
  }
  snprintf (buf, len, "%.1f %s", v, units[u]);
  return buf;
}

void
json_string (const char *s)
{
  putchar ('"');
  for (; *s; s++) {
    unsigned char ch = *s;

    switch (ch) {
    case '"': fputs ("\\\"", stdout); break;
    case '\\': fputs ("\\\\", stdout); break;
    case '\n': fputs ("\\n", stdout); break;
    case '\r': fputs ("\\r", stdout); break;
    case '\t': fputs ("\\t", stdout); break;
    default:
      if (ch < 0x20 || ch == 0x7f)
        printf ("\\u%04x", ch);
      else
        putchar (ch);
    }
  }
  putchar ('"');
}

void
format_uuid (const uint8_t u[16], char out[37])
{
  snprintf (out, 37,
            "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
            "%02x%02x%02x%02x%02x%02x",
            u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9],
            u[10], u[11], u[12], u[13], u[14], u[15]);
}

const char *
quote_name (const char *name, char *buf, size_t len)
{
  size_t o = 0;
  const unsigned char *p;

  if (len < 16) {
    if (len)
      buf[0] = '\0';
    return buf;
  }
  buf[o++] = '\'';
  /* Room left at each step for an escape, "...'" and the NUL. */
  for (p = (const unsigned char *) name; *p && o + 10 < len; p++) {
    if (*p < 0x20 || *p == 0x7f || *p == '\\' || *p == '\'')
      o += snprintf (buf + o, len - o, "\\x%02x", *p);
    else
      buf[o++] = *p;
  }
  if (*p)
    o += snprintf (buf + o, len - o, "...");
  snprintf (buf + o, len - o, "'");
  return buf;
}

int
exports_load (pc_cache *c, struct exports *e)
{
  struct pc_ns_info *ns = malloc (sizeof *ns);
  uint32_t id;

  memset (e, 0, sizeof *e);
  e->slots = pc_ns_slots (c);
  e->name = calloc (e->slots ? e->slots : 1, sizeof *e->name);
  e->size = calloc (e->slots ? e->slots : 1, sizeof *e->size);
  e->dirty_bytes = calloc (e->slots ? e->slots : 1, sizeof *e->dirty_bytes);
  if (!ns || !e->name || !e->size || !e->dirty_bytes)
    goto oom;
  for (id = 0; id < e->slots; id++) {
    if (pc_ns_info (c, id, ns) == -1)
      continue;
    e->name[id] = strdup (ns->name);
    if (!e->name[id])
      goto oom;
    e->size[id] = ns->size;
    e->dirty_bytes[id] = ns->dirty_bytes;
    e->count++;
  }
  free (ns);
  return 0;

 oom:
  free (ns);
  exports_free (e);
  errmsg ("out of memory");
  return -1;
}

void
exports_free (struct exports *e)
{
  uint32_t id;

  for (id = 0; e->name && id < e->slots; id++)
    free (e->name[id]);
  free (e->name);
  free (e->size);
  free (e->dirty_bytes);
  memset (e, 0, sizeof *e);
}

int
exports_find (const struct exports *e, const char *path, const char *name,
              uint32_t *id)
{
  char q[128];
  uint32_t i;

  for (i = 0; i < e->slots; i++)
    if (e->name[i] && strcmp (e->name[i], name) == 0) {
      *id = i;
      return 0;
    }
  errmsg ("%s: the cache holds no export %s", path,
          quote_name (name, q, sizeof q));
  return -1;
}

const char *
export_label (const struct exports *e, uint32_t id, char *buf, size_t len)
{
  if (id < e->slots && e->name[id])
    return quote_name (e->name[id], buf, len);
  snprintf (buf, len, "namespace %" PRIu32 " (no export)", id);
  return buf;
}

void
busy_hint (const char *path)
{
  errmsg ("%s: stop the nbdkit that uses this cache first (use "
          "'pcachectl stats SOCKET' to look at a running cache)", path);
}

int
cache_in_use (const char *path)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC), r = 0;

  if (fd == -1)
    return 0;                   /* the open that follows reports it */
  /* A shared lock conflicts only with the server's exclusive one, and
   * is dropped at once: a server starting meanwhile would have found a
   * pcachectl holding the cache anyway.
   */
  if (flock (fd, LOCK_SH | LOCK_NB) == -1)
    r = errno == EWOULDBLOCK;
  close (fd);
  return r;
}

static int open_cache_mode (const char *path, const char *want_id, int live,
                            pc_cache **out);

int
open_cache (const char *path, const char *want_id, pc_cache **out)
{
  return open_cache_mode (path, want_id, 0, out);
}

int
open_cache_live (const char *path, pc_cache **out)
{
  return open_cache_mode (path, NULL, 1, out);
}

int
open_for_reading (const char *path, pc_cache **out, int *live)
{
  *live = cache_in_use (path);
  if (*live)
    warn_live (path);
  return open_cache_mode (path, NULL, *live, out);
}

void
warn_live (const char *path)
{
  warnmsg ("%s is in use by a running nbdkit: what is shown is live and "
           "may be changing", path);
}

static int
open_cache_mode (const char *path, const char *want_id, int live,
                 pc_cache **out)
{
  struct pc_config cfg;
  struct stat st;
  char id[PC_BACKING_ID_LEN] = "";

  /* pc_cache_open would create a missing file: never do that here. */
  if (stat (path, &st) == -1) {
    errmsg ("%s: %m", path);
    return -1;
  }
  if (S_ISDIR (st.st_mode)) {
    errmsg ("%s: is a directory, not a cache", path);
    errno = EISDIR;
    return -1;
  }
  if (S_ISSOCK (st.st_mode)) {
    errmsg ("%s: is a socket, not a cache: this command reads the cache "
            "file (pcache-dev); 'pcachectl stats %s' asks the running "
            "filter", path, path);
    errno = ENOTSUP;
    return -1;
  }
  if (S_ISREG (st.st_mode) && st.st_size == 0) {
    errmsg ("%s: is an empty file, not a cache", path);
    errno = EINVAL;
    return -1;
  }
  /* The engine would allocate the holes of a sparse file: drain does
   * that itself, before this; the other commands only read.
   */
  if (raw_refuse_sparse (path) == -1)
    return -1;

  /* The engine refuses a cache whose recorded backing identity differs
   * from the one given, so read it from the superblock first.  If the
   * superblock cannot be read, pc_cache_open explains why.
   */
  if (!want_id) {
    struct raw_cache raw;

    if (raw_open (path, &raw) == 0) {
      if (raw.sb_ok)
        memcpy (id, raw.sb.backing_id, sizeof id);
      id[sizeof id - 1] = '\0';
      raw_close (&raw);
    }
  }

  pc_config_init (&cfg);
  cfg.path = path;
  cfg.format = PC_FORMAT_AUTO;
  cfg.backing_id = want_id ? want_id : (id[0] ? id : NULL);
  cfg.live = live;
  if (pc_cache_open (&cfg, out) == -1) {
    int e = errno;

    if (e == EBUSY && !log_collecting)
      busy_hint (path);
    errno = e;
    return -1;
  }
  if (pc_cache_is_new (*out)) {
    /* Only possible if the file vanished after stat. */
    errmsg ("%s: no cache here", path);
    pc_cache_close (*out);
    *out = NULL;
    errno = ENOENT;
    return -1;
  }
  return 0;
}

/* Options common to every command: -h and -v.  Returns the next other
 * option, or -1 at the end.
 */
int
cmd_getopt (int argc, char **argv, const char *shortopts,
            const struct option *longopts)
{
  for (;;) {
    int c = getopt_long (argc, argv, shortopts, longopts, NULL);

    switch (c) {
    case 'h':
      usage (EXIT_OK);
    case 'v':
      verbose++;
      continue;
    case '?':
      if (optopt && optopt < 256)
        usage_error ("unknown option '-%c'", optopt);
      usage_error ("unknown option '%s'", argv[optind - 1]);
    case ':':
      if (optopt && optopt < 256)
        usage_error ("option '-%c' needs a value", optopt);
      usage_error ("option '%s' needs a value", argv[optind - 1]);
    default:
      return c;
    }
  }
}

void
want_args (int argc, char **argv, int n, const char *what)
{
  if (argc - optind < n)
    usage_error ("missing %s", what);
  if (argc - optind > n)
    usage_error ("unexpected argument '%s'", argv[optind + n]);
}

/* ------------------------------------------------------------------ */
/* info */

static void
print_cursor_h (const char *label, const struct pc_cursor *p)
{
  printf ("%-19s %" PRIu32 ":%" PRIu32 " (seq %" PRIu64 ")\n", label,
          p->seg, p->off, p->seq);
}

static void
print_cursor_j (const char *label, const struct pc_cursor *p)
{
  printf (",\"%s\":{\"seg\":%" PRIu32 ",\"off\":%" PRIu32 ",\"seq\":%"
          PRIu64 "}", label, p->seg, p->off, p->seq);
}

static void
print_size_h (const char *label, uint64_t n)
{
  char h[32];

  if (n < 1024)
    printf ("%-19s %" PRIu64 "\n", label, n);
  else
    printf ("%-19s %" PRIu64 " (%s)\n", label, n, human_size (n, h, sizeof h));
}

/* info --json: one JSON object on one line. */
static void
print_info_json (pc_cache *cache, const char *path, const struct pc_info *in)
{
  int data_crc = !!(in->features & PC_FEAT_DATA_CRC);
  char uuid[37];
  struct pc_ns_info ns;
  uint32_t id, n;

  format_uuid (in->uuid, uuid);
  printf ("{\"path\":");
  json_string (path);
  printf (",\"version\":%" PRIu32 ",\"features\":[%s]"
          ",\"data_crc\":%s"
          ",\"file_size\":%" PRIu64 ",\"backing_size\":%" PRIu64
          ",\"backing_id\":",
          in->version, data_crc ? "\"data-crc\"" : "",
          data_crc ? "true" : "false", in->file_size, in->backing_size);
  json_string (in->backing_id);
  printf (",\"uuid\":\"%s\",\"segment_size\":%" PRIu64
          ",\"segments\":{\"total\":%" PRIu32 ",\"free\":%" PRIu32
          ",\"log\":%" PRIu32 ",\"data\":%" PRIu32 "}",
          uuid, in->seg_size, in->nsegs, in->segs_free, in->segs_log,
          in->segs_data);
  print_cursor_j ("key_tail", &in->key_tail);
  print_cursor_j ("dirty_tail", &in->dirty_tail);
  print_cursor_j ("key_head", &in->key_head);
  printf (",\"dirty_ksets\":%" PRIu64 ",\"dirty_keys\":%" PRIu64
          ",\"dirty_bytes\":%" PRIu64 ",\"cached_keys\":%" PRIu64
          ",\"gc_percent\":%d,\"granularity\":",
          in->dirty_ksets, in->dirty_keys, in->dirty_bytes, in->cached_keys,
          in->gc_percent);
  json_string (in->granularity ? in->granularity : "");
  printf (",\"max_exports\":%" PRIu32 ",\"exports\":[", in->max_exports);
  for (id = 0, n = 0; id < pc_ns_slots (cache); id++) {
    if (pc_ns_info (cache, id, &ns) == -1)
      continue;
    printf ("%s{\"id\":%" PRIu32 ",\"name\":", n++ ? "," : "", id);
    json_string (ns.name);
    printf (",\"size\":%" PRIu64 ",\"dirty_bytes\":%" PRIu64
            ",\"dirty_tail\":%" PRIu64 ",\"backing_epoch\":%" PRIu64 "}",
            ns.size, ns.dirty_bytes, ns.dirty_tail, ns.backing_epoch);
  }
  printf ("]}\n");
}

/* info: one labelled line a field. */
static void
print_info_text (pc_cache *cache, const char *path, const struct pc_info *in)
{
  int data_crc = !!(in->features & PC_FEAT_DATA_CRC);
  char uuid[37], h[32], label[32];
  struct pc_ns_info ns;
  uint32_t id;

  format_uuid (in->uuid, uuid);
  printf ("%-19s %s\n", "cache:", path);
  printf ("%-19s %" PRIu32 "\n", "format version:", in->version);
  printf ("%-19s %s\n", "features:", data_crc ? "data-crc" : "none");
  print_size_h ("file size:", in->file_size);
  print_size_h ("backing size:", in->backing_size);
  printf ("%-19s %s\n", "backing id:",
          in->backing_id[0] ? in->backing_id : "(none)");
  printf ("%-19s %s\n", "uuid:", uuid);
  print_size_h ("segment size:", in->seg_size);
  printf ("%-19s %" PRIu32 " total, %" PRIu32 " free, %" PRIu32 " log, %"
          PRIu32 " data\n", "segments:", in->nsegs, in->segs_free,
          in->segs_log, in->segs_data);
  print_cursor_h ("key tail:", &in->key_tail);
  print_cursor_h ("dirty tail:", &in->dirty_tail);
  print_cursor_h ("key head:", &in->key_head);
  printf ("%-19s %" PRIu64 "\n", "dirty ksets:", in->dirty_ksets);
  printf ("%-19s %" PRIu64 "\n", "dirty keys:", in->dirty_keys);
  print_size_h ("dirty bytes:", in->dirty_bytes);
  printf ("%-19s %" PRIu64 "\n", "cached keys:", in->cached_keys);
  printf ("%-19s %d\n", "gc percent:", in->gc_percent);
  printf ("%-19s %s\n", "store granularity:",
          in->granularity ? in->granularity : "unknown");
  printf ("%-19s %" PRIu32 " of %" PRIu32 "\n", "exports:", in->exports,
          in->max_exports);
  for (id = 0; id < pc_ns_slots (cache); id++) {
    if (pc_ns_info (cache, id, &ns) == -1)
      continue;
    snprintf (label, sizeof label, "export %" PRIu32 ":", id);
    printf ("%-19s '%s', %s, ", label, ns.name,
            human_size (ns.size, h, sizeof h));
    printf ("dirty %s, backing epoch %" PRIu64 "\n",
            human_size (ns.dirty_bytes, h, sizeof h), ns.backing_epoch);
  }
}

int
cmd_info (int argc, char **argv)
{
  static const struct option opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "verbose", no_argument, NULL, 'v' },
    { "json", no_argument, NULL, 'j' },
    { NULL, 0, NULL, 0 }
  };
  int json = 0, c;
  const char *path;
  pc_cache *cache;
  struct pc_info in;
  int live;

  while ((c = cmd_getopt (argc, argv, ":hvj", opts)) != -1)
    if (c == 'j')
      json = 1;
  want_args (argc, argv, 1, "CACHE argument");
  path = argv[optind];

  if (open_for_reading (path, &cache, &live) == -1)
    return EXIT_FAILED;
  if (pc_cache_info (cache, &in) == -1) {
    pc_cache_close (cache);
    return EXIT_FAILED;
  }
  if (json)
    print_info_json (cache, path, &in);
  else
    print_info_text (cache, path, &in);
  pc_cache_close (cache);
  return EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* dump */

struct dump {
  int only_dirty, json;
  uint64_t n;
  const char *export;           /* --export, or NULL: every export */
  uint32_t ns;                  /* its namespace */
  struct exports ex;
};

static void
key_flags (const struct pc_key_info *k, char *buf, size_t len)
{
  snprintf (buf, len, "%s%s%s%s",
            k->dirty ? "dirty" : "clean",
            (k->flags & PC_KF_TRIM) ? ",trim"
            : (k->flags & PC_KF_ZERO) ? ",zero" : "",
            (k->flags & PC_KF_MAY_TRIM) && !(k->flags & PC_KF_TRIM)
            ? ",may-trim" : "",
            k->stale ? ",stale" : "");
}

static int
dump_key (void *opaque, const struct pc_key_info *k)
{
  struct dump *d = opaque;
  char flags[64], where[32], label[128];
  uint32_t ns = pc_fmt_ns_of (k->off);
  uint64_t off = k->off & PC_NS_OFF_MASK;

  struct pc_key_info kd = *k;

  kd.dirty = k->dirty;
  k = &kd;
  if (d->only_dirty && !k->dirty)
    return 0;
  if (d->export && ns != d->ns)
    return 0;
  key_flags (k, flags, sizeof flags);
  if (k->flags & PC_KF_ZERO)
    snprintf (where, sizeof where, "-");
  else
    snprintf (where, sizeof where, "%" PRIu32 ":%" PRIu32, k->seg,
              k->seg_off);
  if (d->json) {
    printf ("{\"kset\":%" PRIu64 ",\"epoch\":%" PRIu64 ",\"export\":",
            k->kset_seq, k->epoch);
    if (ns < d->ex.slots && d->ex.name[ns])
      json_string (d->ex.name[ns]);
    else
      printf ("null");
    printf (",\"namespace\":%" PRIu32 ",\"offset\":%"
            PRIu64 ",\"length\":%" PRIu32 ",\"segment\":%" PRIu32
            ",\"segment_offset\":%" PRIu32 ",\"generation\":%" PRIu32
            ",\"dirty\":%s,\"zero\":%s,\"trim\":%s,\"stale\":%s}\n",
            ns, off, k->len, k->seg, k->seg_off,
            k->gen, k->dirty ? "true" : "false",
            (k->flags & PC_KF_ZERO) ? "true" : "false",
            (k->flags & PC_KF_TRIM) ? "true" : "false",
            k->stale ? "true" : "false");
  }
  else
    printf ("%8" PRIu64 " %7" PRIu64 " %14" PRIu64 " %9" PRIu32
            " %14s %6" PRIu32 "  %-20s %s\n",
            k->kset_seq, k->epoch, off, k->len, where, k->gen, flags,
            export_label (&d->ex, ns, label, sizeof label));
  d->n++;
  return ferror (stdout) ? -1 : 0;
}

int
cmd_dump (int argc, char **argv)
{
  static const struct option opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "verbose", no_argument, NULL, 'v' },
    { "dirty", no_argument, NULL, 'd' },
    { "json", no_argument, NULL, 'j' },
    { "export", required_argument, NULL, 'e' },
    { NULL, 0, NULL, 0 }
  };
  struct dump d;
  const char *path;
  pc_cache *cache;
  int c, r, live;

  memset (&d, 0, sizeof d);
  while ((c = cmd_getopt (argc, argv, ":hvdje:", opts)) != -1) {
    if (c == 'd')
      d.only_dirty = 1;
    else if (c == 'j')
      d.json = 1;
    else if (c == 'e')
      d.export = optarg;
  }
  want_args (argc, argv, 1, "CACHE argument");
  path = argv[optind];

  if (open_for_reading (path, &cache, &live) == -1)
    return EXIT_FAILED;
  if (exports_load (cache, &d.ex) == -1 ||
      (d.export && exports_find (&d.ex, path, d.export, &d.ns) == -1)) {
    exports_free (&d.ex);
    pc_cache_close (cache);
    return EXIT_FAILED;
  }
  if (!d.json)
    printf ("#   kset   epoch         offset    length segment:offset"
            "    gen  flags                export\n");
  r = pc_cache_walk (cache, dump_key, &d);
  exports_free (&d.ex);
  pc_cache_close (cache);
  if (r == -1)
    return EXIT_FAILED;
  if (r != 0) {
    errmsg ("write error: %m");
    return EXIT_FAILED;
  }
  return EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* Main. */

void
usage (int status)
{
  FILE *f = status == EXIT_OK ? stdout : stderr;

  fprintf (f,
"pcachectl: administer pcache persistent-memory caches\n"
"\n"
"Usage:\n"
"  pcachectl info CACHE [--json]\n"
"  pcachectl check CACHE [--export=NAME]\n"
"  pcachectl dump CACHE [--dirty] [--json] [--export=NAME]\n"
"  pcachectl drain CACHE --to BACKING [--export=NAME] [--keep]\n"
"                  [--backing-id=ID] [--timeout=SECONDS]\n"
"  pcachectl drain SOCKET [--timeout=SECONDS]\n"
"  pcachectl stats SOCKET|FILE [--pretty] [--export NAME]\n"
"  pcachectl set SOCKET KEY VALUE\n"
"  pcachectl checkpoint|hold|release SOCKET\n"
"  pcachectl pause|resume|reset-stats SOCKET\n"
"  pcachectl top SOCKET [--interval SECS] [--count N]\n"
"  pcachectl help | --help | --version\n"
"\n"
"Commands:\n"
"  info    Show the geometry, log cursors and dirty data of a cache.\n"
"  check   Check a cache for consistency (metadata, log, key bounds and,\n"
"          with data-crc, every payload checksum).  Exit 1 on problems.\n"
"  dump    List the key records of the log, oldest first.\n"
"  drain   Write the dirty data of a cache back to BACKING (a file, a\n"
"          block device or an NBD URI such as nbd+unix:///?socket=S)\n"
"          in log order, then empty the cache (or keep clean data with\n"
"          --keep).  Given a control SOCKET, ask the running filter.\n"
"  stats   Print the statistics of a running filter (control socket)\n"
"          or of a pcache-stats file: the totals, then each export's.\n"
"  set     Change a setting of a running filter through its control\n"
"          socket, e.g. 'set SOCKET gc-percent 50'.  KEY is mode,\n"
"          gc-percent, writeback-percent, writeback-threads,\n"
"          cache-on-read, seq-cutoff, full-timeout, writeback-max-age\n"
"          or export-quota.\n"
"  checkpoint  Wait until everything written so far is on the backend\n"
"          and flushed; print the epoch it reached.\n"
"  hold    Stop write-back at the nearest flush-epoch boundary and print\n"
"          the epoch the backend holds, e.g. while it is snapshotted.\n"
"  release End a hold.\n"
"  pause   Stop the write-back of a running filter from starting new\n"
"          batches (drains fail meanwhile).\n"
"  resume  Let the write-back of a running filter run again.\n"
"  reset-stats  Zero the event counters of a running filter's stats.\n"
"  top     Show a running filter's hit rate, dirty data, write-back\n"
"          rate, epochs and backend state every interval, like top(1).\n"
"\n"
"Options:\n"
"  --json             info, dump: print JSON\n"
"  --dirty            dump: only dirty (not yet written back) keys\n"
"  --export NAME      check, dump, drain: only the export called NAME\n"
"                     of a cache that holds several (offsets are the\n"
"                     export's own); drain to an NBD server without it\n"
"                     writes each export to the server's export of the\n"
"                     same name\n"
"  --to BACKING       drain: where to write the dirty data\n"
"  --keep             drain: keep clean data in the cache\n"
"  --backing-id ID    drain: the backing identity the cache was made\n"
"                     for (required if it recorded one)\n"
"  --timeout SECONDS  drain: give up after writeback has failed for this\n"
"                     long, or through a SOCKET the plugin, or at an\n"
"                     NBD URI the server, has not answered (default\n"
"                     60, through a SOCKET 30; 0 = never)\n"
"  --pretty           stats: one field per line\n"
"  --export NAME      stats: only the statistics of export NAME\n"
"  --interval SECS    top: seconds between two samples (default 2)\n"
"  --count N          top: stop after N samples (default 0: never)\n"
"  -v, --verbose      show debug messages of the cache engine\n"
"  -h, --help         show this help\n"
"  -V, --version      show the version\n"
"\n"
"info, check and dump read a cache that a running nbdkit holds live and\n"
"read-only, with a warning; drain refuses it.  Exit status: 0 on\n"
"success, 1 on failure or if check found problems, 2 on bad usage.\n"
"See pcachectl(8).\n");
  exit (status);
}

static const struct {
  const char *name;
  int (*fn) (int argc, char **argv);
} commands[] = {
  { "info", cmd_info },
  { "check", cmd_check },
  { "dump", cmd_dump },
  { "drain", cmd_drain },
  { "stats", cmd_stats },
  { "set", cmd_set },
  { "checkpoint", cmd_checkpoint },
  { "hold", cmd_hold },
  { "release", cmd_release },
  { "pause", cmd_pause },
  { "resume", cmd_resume },
  { "reset-stats", cmd_reset_stats },
  { "top", cmd_top },
};

int
main (int argc, char **argv)
{
  static const struct option opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "verbose", no_argument, NULL, 'v' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 }
  };
  const char *name;
  size_t i;
  int c, r;

  opterr = 0;
  log_init ();
  progress_init ();

  while ((c = getopt_long (argc, argv, "+:hvV", opts, NULL)) != -1) {
    switch (c) {
    case 'h':
      usage (EXIT_OK);
    case 'v':
      verbose++;
      break;
    case 'V':
      printf ("pcachectl %s\n", PACKAGE_VERSION);
      return EXIT_OK;
    default:
      if (optopt && optopt < 256)
        usage_error ("unknown option '-%c'", optopt);
      usage_error ("unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind >= argc)
    usage_error ("no command given");
  name = argv[optind];
  if (strcmp (name, "help") == 0)
    usage (EXIT_OK);

  for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp (name, commands[i].name) == 0)
      break;
  if (i == sizeof commands / sizeof commands[0])
    usage_error ("unknown command '%s'", name);

  command = name;
  argc -= optind;
  argv += optind;
  optind = 0;                   /* glibc: restart getopt from scratch */
  r = commands[i].fn (argc, argv);

  if (fflush (stdout) == EOF || ferror (stdout)) {
    errmsg ("write error on standard output: %m");
    return EXIT_FAILED;
  }
  return r;
}
