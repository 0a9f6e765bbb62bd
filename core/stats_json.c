/* SPDX-License-Identifier: BSD-3-Clause */
/* The statistics as one line of JSON (pc_stats_json), field by field,
 * so that a new statistic is one line here; with the exports'
 * (pc_stats_json_exports), an "exports" array after the totals.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pcache.h"

struct json {
  char *buf;
  size_t len, pos;
  int full;
};

static void
put (struct json *j, const char *fmt, ...)
{
  va_list ap;
  int n;

  if (j->full)
    return;
  va_start (ap, fmt);
  n = vsnprintf (j->buf + j->pos, j->len - j->pos, fmt, ap);
  va_end (ap);
  if (n < 0 || (size_t) n >= j->len - j->pos)
    j->full = 1;
  else
    j->pos += n;
}

static void
u64 (struct json *j, const char *name, uint64_t v)
{
  put (j, "%s\"%s\":%" PRIu64, j->pos > 1 ? "," : "", name, v);
}

static void
str (struct json *j, const char *name, const char *v)
{
  put (j, "%s\"%s\":\"%s\"", j->pos > 1 ? "," : "", name, v);
}

/* A length of bytes that are one valid UTF-8 character at s, or 0. */
static size_t
utf8_char (const unsigned char *s)
{
  uint32_t cp;
  size_t n, i;

  if (s[0] < 0x80)
    return 1;
  if (s[0] >= 0xc2 && s[0] <= 0xdf)
    n = 2, cp = s[0] & 0x1f;
  else if (s[0] >= 0xe0 && s[0] <= 0xef)
    n = 3, cp = s[0] & 0x0f;
  else if (s[0] >= 0xf0 && s[0] <= 0xf4)
    n = 4, cp = s[0] & 0x07;
  else
    return 0;
  for (i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80)       /* the NUL at the end stops it too */
      return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
      cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return 0;                        /* overlong, too big, a surrogate */
  return n;
}

/* A string of arbitrary bytes (an export's name) as a JSON string:
 * '"', '\\' and control bytes escaped, valid UTF-8 kept, and every
 * byte of invalid UTF-8 as the code point of the same number (\u00XX).
 * At most 6 bytes of output a byte of input.
 */
static void
escaped (struct json *j, const char *name, const char *v)
{
  const unsigned char *s = (const unsigned char *) v;

  put (j, "%s\"%s\":\"", j->pos > 1 ? "," : "", name);
  while (*s && !j->full) {
    size_t run = 0, n;

    /* A run of what goes as it is, in one piece. */
    while (s[run] >= 0x20 && s[run] != 0x7f && s[run] != '"' &&
           s[run] != '\\' && (n = utf8_char (s + run)) > 0)
      run += n;
    if (run) {
      put (j, "%.*s", (int) run, (const char *) s);
      s += run;
    }
    else if (*s == '"' || *s == '\\')
      put (j, "\\%c", *s++);
    else if (*s == '\n')
      put (j, "\\n"), s++;
    else if (*s == '\t')
      put (j, "\\t"), s++;
    else
      put (j, "\\u%04x", *s++);
  }
  put (j, "\"");
}

static void
boolean (struct json *j, const char *name, int v)
{
  put (j, "%s\"%s\":%s", j->pos > 1 ? "," : "", name, v ? "true" : "false");
}

/* The symbolic name of an errno, "" for 0: the errors a backend is
 * likely to give, else "errno N" (in buf).
 */
static const char *
errno_name (int e, char *buf, size_t len)
{
#define E(x) case x: return #x
  switch (e) {
  case 0: return "";
  E (EIO); E (ENOTCONN); E (ECONNRESET); E (ECONNREFUSED);
  E (ECONNABORTED); E (EPIPE); E (ESHUTDOWN); E (EINVAL); E (ETIMEDOUT);
  E (EHOSTUNREACH); E (ENETUNREACH); E (ENETDOWN); E (ENOSPC);
  E (EDQUOT); E (EROFS); E (EPERM); E (EACCES); E (ENOMEM); E (ENOENT);
  E (ENXIO); E (ENODEV); E (EBADF); E (EAGAIN); E (EINTR); E (EFBIG);
  E (EOVERFLOW); E (ENOTSUP); E (ERANGE); E (ESTALE); E (EBUSY);
  default:
    snprintf (buf, len, "errno %d", e);
    return buf;
  }
#undef E
}

/* The tunables, each under its stat name: a new tunable shows up here
 * by its table entry alone.
 */
static void
tunables (struct json *j, const struct pc_stats *st)
{
  for (unsigned t = 0; t < PC_TUNE_COUNT; t++) {
    const struct pc_tunable_info *in = pc_tunable_info (t);

    if (!in->stat)
      continue;
    if (in->kind == PC_TUNABLE_BOOL)
      boolean (j, in->stat, st->tunables[t]);
    else if (in->zero_word && st->tunables[t] == 0)
      str (j, in->stat, in->zero_word);
    else
      u64 (j, in->stat, st->tunables[t]);
  }
}

/* The fields of one export, in an object of its own. */
static void
export (struct json *j, const struct pc_ns_stats *ns)
{
  struct json o = { j->buf + j->pos, j->len - j->pos, 0, j->full };
  char ebuf[32];

  /* pos > 1 in o puts the commas between its fields. */
  put (&o, "{");
  escaped (&o, "name", ns->name);
  u64 (&o, "id", ns->id);
  u64 (&o, "size", ns->size);
  u64 (&o, "dirty_bytes", ns->dirty_bytes);
  u64 (&o, "backing_epoch", ns->backing_epoch);
  boolean (&o, "attached", ns->attached);
  str (&o, "backend_state", ns->backend_failing ? "failing" : "ok");
  str (&o, "backend_last_error",
       errno_name (ns->backend_last_error, ebuf, sizeof ebuf));
  u64 (&o, "backend_failing_since", ns->backend_failing_since);
  u64 (&o, "backend_reopens", ns->backend_reopens);
  u64 (&o, "reads", ns->reads);
  u64 (&o, "read_bytes", ns->read_bytes);
  u64 (&o, "writes", ns->writes);
  u64 (&o, "write_bytes", ns->write_bytes);
  u64 (&o, "writeback_bytes", ns->writeback_bytes);
  u64 (&o, "writeback_group_epochs", ns->writeback_group_epochs);
  put (&o, "}");
  j->full = o.full;
  if (!o.full)
    j->pos += o.pos;
}

static int
build (const struct pc_stats *st, const struct pc_ns_stats *ns, size_t n,
       int with_exports, char *buf, size_t len)
{
  struct json j = { buf, len, 0, len == 0 };
  char ebuf[32];

  put (&j, "{");
  u64 (&j, "read_hits", st->read_hits);
  u64 (&j, "read_misses", st->read_misses);
  u64 (&j, "read_hit_bytes", st->read_hit_bytes);
  u64 (&j, "read_miss_bytes", st->read_miss_bytes);
  u64 (&j, "writes", st->writes);
  u64 (&j, "write_hits", st->write_hits);
  u64 (&j, "write_bytes", st->write_bytes);
  u64 (&j, "writeback_bytes", st->writeback_bytes);
  u64 (&j, "writeback_skipped_bytes", st->writeback_skipped_bytes);
  u64 (&j, "writeback_rounds", st->writeback_rounds);
  u64 (&j, "writeback_errors", st->writeback_errors);
  u64 (&j, "writeback_aborts", st->writeback_aborts);
  u64 (&j, "writeback_groups", st->writeback_groups);
  u64 (&j, "writeback_group_epochs", st->writeback_group_epochs);
  u64 (&j, "writeback_flushes", st->writeback_flushes);
  u64 (&j, "writeback_fua_writes", st->writeback_fua_writes);
  u64 (&j, "writeback_pace", st->writeback_pace);
  u64 (&j, "gc_runs", st->gc_runs);
  u64 (&j, "gc_segments", st->gc_segments);
  u64 (&j, "segments_total", st->segs_total);
  u64 (&j, "segments_used", st->segs_used);
  u64 (&j, "segment_size", st->seg_size);
  u64 (&j, "dirty_ksets", st->dirty_ksets);
  u64 (&j, "dirty_bytes", st->dirty_bytes);
  u64 (&j, "seq_bypass_bytes", st->seq_bypass_bytes);
  u64 (&j, "write_through_bytes", st->write_through_bytes);
  u64 (&j, "full_timeouts", st->full_timeouts);
  str (&j, "mode", pc_mode_name (st->mode));
  u64 (&j, "gc_percent", st->gc_percent);
  u64 (&j, "uptime_ms", st->uptime_ms);
  u64 (&j, "crc_errors", st->crc_errors);
  u64 (&j, "client_epoch", st->client_epoch);
  u64 (&j, "backing_epoch", st->backing_epoch);
  u64 (&j, "dirty_age_ms", st->dirty_age_ms);
  boolean (&j, "writeback_held", st->writeback_held);
  str (&j, "backend_state", st->backend_failing ? "failing" : "ok");
  str (&j, "backend_last_error",
       errno_name (st->backend_last_error, ebuf, sizeof ebuf));
  u64 (&j, "backend_failing_since", st->backend_failing_since);
  u64 (&j, "backend_reopens", st->backend_reopens);
  tunables (&j, st);
  boolean (&j, "writeback_paused", st->writeback_paused);
  /* Last, so that a reader that takes the first "dirty_bytes" of the
   * text gets the total's.
   */
  if (with_exports) {
    put (&j, ",\"exports\":[");
    for (size_t i = 0; i < n; i++) {
      if (i)
        put (&j, ",");
      export (&j, &ns[i]);
    }
    put (&j, "]");
  }
  put (&j, "}");
  return j.full || j.pos > INT_MAX ? -1 : (int) j.pos;
}

int
pc_stats_json (const struct pc_stats *st, char *buf, size_t len)
{
  return build (st, NULL, 0, 0, buf, len);
}

int
pc_stats_json_exports (const struct pc_stats *st,
                       const struct pc_ns_stats *ns, size_t n,
                       char *buf, size_t len)
{
  return build (st, ns, n, 1, buf, len);
}

size_t
pc_stats_json_size (const struct pc_ns_stats *ns, size_t n)
{
  size_t size = 8192;

  for (size_t i = 0; i < n; i++)
    size += 6 * strnlen (ns[i].name, sizeof ns[i].name) + 1024;
  return size;
}
