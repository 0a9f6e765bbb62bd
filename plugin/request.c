/* SPDX-License-Identifier: BSD-3-Clause */
/* Requests of the pcache filter's control socket: one line in, one
 * line out.  Parsing is strict: a request with a word too many or too
 * few, a number with anything else in it or out of range, or a control
 * character is refused with a reply naming what was wrong, and changes
 * nothing.
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "request.h"
#include "stats.h"

#define USAGE "stats, set KEY VALUE, gc-percent N, mode MODE, drain [SECS], " \
  "checkpoint, hold, release, pause, resume or reset-stats"

static const char out_of_range[] = "is out of range";
static const char not_size[] = "is not a size";

/* The LEN bytes at S as a whole number 0..max, digits only: no sign,
 * no junk, no overflow.
 */
static int
parse_digits (const char *s, size_t len, uint64_t max, uint64_t *out,
              const char **why)
{
  uint64_t v = 0;

  if (len == 0) {
    *why = "is empty";
    return -1;
  }
  for (size_t i = 0; i < len; i++) {
    unsigned d = s[i] - '0';

    if (!isdigit ((unsigned char) s[i])) {
      *why = "is not a whole number";
      return -1;
    }
    if (d > max || v > (max - d) / 10) {
      *why = out_of_range;
      return -1;
    }
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

/* Bytes: digits, then optionally one of nbdkit's suffixes K, M, G, T, P
 * or E (powers of 1024, either case), as pcache-seq-cutoff takes them.
 */
static int
parse_size (const char *s, uint64_t max, uint64_t *out, const char **why)
{
  static const char suffixes[] = "kmgtpe";
  size_t len = strlen (s);
  unsigned shift = 0;
  uint64_t v;

  if (len > 1 && !isdigit ((unsigned char) s[len - 1])) {
    const char *suf = strchr (suffixes, tolower ((unsigned char) s[len - 1]));

    if (!suf) {
      *why = not_size;
      return -1;
    }
    shift = 10 * (suf - suffixes + 1);
    len--;
  }
  if (parse_digits (s, len, max >> shift, &v, why) == -1) {
    if (*why != out_of_range)
      *why = not_size;
    return -1;
  }
  *out = v << shift;
  return 0;
}

static int
parse_bool (const char *s, uint64_t *out, const char **why)
{
  static const char *const words[] = { "false", "true", "off", "on",
                                       "0", "1" };

  for (unsigned i = 0; i < sizeof words / sizeof *words; i++)
    if (strcmp (s, words[i]) == 0) {
      *out = i % 2;
      return 0;
    }
  *why = "is not a boolean";
  return -1;
}

/* Parse the value of tunable IN, strictly, and check it against the
 * engine's range.
 */
static int
parse_value (const struct pc_tunable_info *in, const char *s, uint64_t *out,
             const char **why)
{
  int r;

  if (in->zero_word && strcmp (s, in->zero_word) == 0) {
    *out = 0;
    return 0;
  }
  switch (in->kind) {
  case PC_TUNABLE_BOOL:
    return parse_bool (s, out, why);
  case PC_TUNABLE_SIZE:
    r = parse_size (s, in->max, out, why);
    break;
  default:
    r = parse_digits (s, strlen (s), in->max, out, why);
  }
  if (r == 0 && *out < in->min) {
    *why = out_of_range;
    r = -1;
  }
  return r;
}

/* What a tunable's values are, for a reply: "(0..90)". */
static void
describe_range (const struct pc_tunable_info *in, char *buf, size_t len)
{
  if (in->kind == PC_TUNABLE_BOOL)
    snprintf (buf, len, "(true, false, on, off, 1 or 0)");
  else
    snprintf (buf, len, "(%s%s%" PRIu64 "..%" PRIu64 "%s)",
              in->zero_word ? in->zero_word : "",
              in->zero_word ? " or " : "", in->min, in->max,
              in->kind == PC_TUNABLE_SIZE
              ? " bytes, or with a K, M, G, T, P or E suffix" : "");
}

/* Set tunable T to the text VALUE; the reply names the key. */
static void
set_tunable (pc_cache *cache, enum pc_tunable t, const char *value,
             char *reply, size_t len)
{
  const struct pc_tunable_info *in = pc_tunable_info (t);
  const char *why;
  char range[96];
  uint64_t v;

  describe_range (in, range, sizeof range);
  if (parse_value (in, value, &v, &why) == -1)
    snprintf (reply, len, "error: %s: '%s' %s %s", in->name, value, why,
              range);
  else if (pc_cache_set_tunable (cache, t, v) == -1)
    snprintf (reply, len, "error: %s: %m", in->name);
  else
    snprintf (reply, len, "ok");
}

/* The keys of set, for a reply. */
static void
list_keys (char *buf, size_t len)
{
  size_t n = 0;

  buf[0] = '\0';
  for (unsigned t = 0; t < PC_TUNE_COUNT && n < len; t++)
    n += snprintf (buf + n, len - n, "%s, ", pc_tunable_info (t)->name);
  if (n < len)
    snprintf (buf + n, len - n, "mode");
}

/* gc-percent N: the request that came before set, kept as it was. */
static void
req_gc_percent (pc_cache *cache, char **args, int nargs, char *reply,
                size_t len)
{
  if (nargs != 1)
    snprintf (reply, len, "error: gc-percent takes one argument, a "
              "percentage 0..%d", PC_MAX_GC_PERCENT);
  else
    set_tunable (cache, PC_TUNE_GC_PERCENT, args[0], reply, len);
}

/* A cache call failed with ERR. */
static void
cache_error (pc_cache *cache, char *reply, size_t len, const char *req,
             int err)
{
  if (err == ESHUTDOWN)
    snprintf (reply, len, "error: %s: nbdkit is shutting down", req);
  else if (err == EBUSY)
  {
    struct pc_stats st;

    pc_cache_get_stats (cache, &st);
    snprintf (reply, len, "error: %s: write-back is %s", req,
              st.writeback_held ? "held (release it first)" : "paused");
  }
  else if (err == ECANCELED)
    snprintf (reply, len, "error: %s: released while it waited", req);
  else
    snprintf (reply, len, "error: %s: %s", req, strerror (err));
}

static void
req_mode (pc_cache *cache, char **args, int nargs, char *reply, size_t len)
{
  enum pc_mode m;
  int err = 0;

  if (nargs != 1)
    snprintf (reply, len, "error: mode takes one argument: writeback, "
              "writethrough or writearound");
  else if (pc_mode_parse (args[0], &m) == -1)
    snprintf (reply, len, "error: unknown mode '%s' (writeback, "
              "writethrough, writearound)", args[0]);
  else if (pc_cache_set_mode (cache, m, &err) == -1)
    cache_error (cache, reply, len, "mode", err);
  else
    snprintf (reply, len, "ok");
}

/* set KEY VALUE: a tunable, or the mode (as mode MODE). */
static void
req_set (pc_cache *cache, char **args, int nargs, char *reply, size_t len)
{
  enum pc_tunable t;
  char keys[256];

  list_keys (keys, sizeof keys);
  if (nargs != 2)
    snprintf (reply, len, "error: set takes two arguments, KEY and VALUE "
              "(keys: %s)", keys);
  else if (strcmp (args[0], "mode") == 0)
    req_mode (cache, args + 1, 1, reply, len);
  else if (pc_tunable_lookup (args[0], &t) == -1)
    snprintf (reply, len, "error: set: unknown key '%s' (keys: %s)",
              args[0], keys);
  else
    set_tunable (cache, t, args[1], reply, len);
}

/* Requests of one word.  pcache_request has checked that no argument
 * came with them.
 */
static void
req_stats (pc_cache *cache, char *reply, size_t len)
{
  if (pcache_stats_line (cache, reply, len) < 0)
    snprintf (reply, len, "error: stats do not fit");
}

/* drain [SECONDS]: SECONDS of write-back failing without progress end
 * the wait (0: never; by default 30).
 */
static void
req_drain (pc_cache *cache, char **args, int nargs, char *reply,
           size_t len)
{
  uint64_t secs = 0;
  const char *why;
  int err = 0, r;

  if (nargs > 1) {
    snprintf (reply, len, "error: drain takes at most one argument, the "
              "seconds of failing write-back to give up after");
    return;
  }
  if (nargs == 1 &&
      parse_digits (args[0], strlen (args[0]), PC_MAX_DRAIN_TIMEOUT_S,
                    &secs, &why) == -1) {
    snprintf (reply, len, "error: drain: '%s' %s (seconds, 0..%d)",
              args[0], why, PC_MAX_DRAIN_TIMEOUT_S);
    return;
  }
  r = nargs == 1 ? pc_cache_drain_timeout (cache, secs, &err)
    : pc_cache_drain (cache, &err);
  if (r == -1)
    cache_error (cache, reply, len, "drain", err);
  else
    snprintf (reply, len, "ok");
}

/* checkpoint: a drain that names the epoch now on the backend. */
static void
req_checkpoint (pc_cache *cache, char *reply, size_t len)
{
  uint64_t epoch;
  int err = 0;

  if (pc_cache_checkpoint (cache, &epoch, &err) == -1)
    cache_error (cache, reply, len, "checkpoint", err);
  else
    snprintf (reply, len, "ok %" PRIu64, epoch);
}

/* hold: the reply names the epoch whose image the backend keeps. */
static void
req_hold (pc_cache *cache, char *reply, size_t len)
{
  uint64_t epoch;
  int err = 0;

  if (pc_cache_hold (cache, &epoch, &err) == 0)
    snprintf (reply, len, "ok %" PRIu64, epoch);
  else if (err == EINVAL)
    snprintf (reply, len, "error: hold: writes go straight to the backend "
              "in %s mode; a hold needs write-back mode",
              pc_mode_name (pc_cache_get_mode (cache)));
  else
    cache_error (cache, reply, len, "hold", err);
}

static void
req_release (pc_cache *cache, char *reply, size_t len)
{
  pc_cache_release (cache);
  snprintf (reply, len, "ok");
}

static void
req_pause (pc_cache *cache, char *reply, size_t len)
{
  pc_cache_pause_writeback (cache, 1);
  snprintf (reply, len, "ok");
}

static void
req_resume (pc_cache *cache, char *reply, size_t len)
{
  pc_cache_pause_writeback (cache, 0);
  snprintf (reply, len, "ok");
}

static void
req_reset_stats (pc_cache *cache, char *reply, size_t len)
{
  pc_cache_reset_stats (cache);
  snprintf (reply, len, "ok");
}

static const struct {
  const char *name;
  void (*fn) (pc_cache *cache, char *reply, size_t len);
} word_requests[] = {
  { "stats", req_stats },
  { "checkpoint", req_checkpoint },
  { "hold", req_hold },
  { "release", req_release },
  { "pause", req_pause },
  { "resume", req_resume },
  { "reset-stats", req_reset_stats },
};

/* A request of one word: 1 if w[0] names one (then answered), else 0. */
static int
word_request (pc_cache *cache, char **w, int n, char *reply, size_t len)
{
  for (size_t i = 0; i < sizeof word_requests / sizeof word_requests[0];
       i++) {
    if (strcmp (w[0], word_requests[i].name) != 0)
      continue;
    if (n != 1)
      snprintf (reply, len, "error: %s takes no argument", w[0]);
    else
      word_requests[i].fn (cache, reply, len);
    return 1;
  }
  return 0;
}

/* Split LINE in place into at most MAX words at blanks; returns the
 * number of words, more than MAX if there are more.
 */
static int
split_words (char *line, char **words, int max)
{
  int n = 0;
  char *p = line;

  for (;;) {
    p += strspn (p, " \t");
    if (!*p)
      return n;
    if (n < max)
      words[n] = p;
    n++;
    p += strcspn (p, " \t");
    if (*p)
      *p++ = '\0';
  }
}

static int
has_control_char (const char *line, size_t len)
{
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = line[i];

    if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
      return 1;
  }
  return 0;
}

void
pcache_request (pc_cache *cache, char *line, size_t len, char *reply,
                size_t rlen)
{
  char *w[3];
  int n;

  if (len > 0 && line[len - 1] == '\r')
    len--;
  if (has_control_char (line, len)) {
    snprintf (reply, rlen, "error: the request contains a control "
              "character");
    return;
  }
  line[len] = '\0';
  n = split_words (line, w, 3);
  if (n == 0)
    snprintf (reply, rlen, "error: empty request (expected " USAGE ")");
  else if (n > 3)
    snprintf (reply, rlen, "error: too many words in the request "
              "(expected " USAGE ")");
  else if (word_request (cache, w, n, reply, rlen))
    ;
  else if (strcmp (w[0], "drain") == 0)
    req_drain (cache, w + 1, n - 1, reply, rlen);
  else if (strcmp (w[0], "gc-percent") == 0)
    req_gc_percent (cache, w + 1, n - 1, reply, rlen);
  else if (strcmp (w[0], "mode") == 0)
    req_mode (cache, w + 1, n - 1, reply, rlen);
  else if (strcmp (w[0], "set") == 0)
    req_set (cache, w + 1, n - 1, reply, rlen);
  else
    snprintf (reply, rlen, "error: unknown request '%s' (expected "
              USAGE ")", w[0]);
}

