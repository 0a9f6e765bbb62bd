/* SPDX-License-Identifier: BSD-3-Clause */
/* The statistics as one line of JSON (pc_stats_json), field by field,
 * so that a new statistic is one line here.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

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
    else
      u64 (j, in->stat, st->tunables[t]);
  }
}

int
pc_stats_json (const struct pc_stats *st, char *buf, size_t len)
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
  put (&j, "}");
  return j.full ? -1 : (int) j.pos;
}
