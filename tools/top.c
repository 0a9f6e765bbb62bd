/* SPDX-License-Identifier: BSD-3-Clause */
/* pcachectl top: a live view of a running filter, from its statistics
 * (the control socket's "stats" request) taken every interval.  Rates
 * are differences between two samples over the difference of their
 * uptime_ms, so they do not depend on how long the request took.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pcachectl.h"

#define TOP_TIMEOUT_MS 10000

/* The fields shown, from one stats reply. */
struct sample {
  uint64_t read_hits, read_misses, dirty_bytes, writeback_bytes;
  uint64_t uptime_ms, client_epoch, backing_epoch;
  uint64_t segments_total, segment_size, group_epochs;
  int writeback_held, writeback_paused;
  char mode[32], backend_state[32], backend_last_error[64];
  char *exports;                /* a line per export if more than one
                                   (malloc'd), else NULL */
};

/* The text after "KEY": in the flat JSON object s, or NULL. */
static const char *
json_field (const char *s, const char *key)
{
  size_t n = strlen (key);
  const char *p = s;

  while ((p = strchr (p, '"')) != NULL) {
    if (strncmp (p + 1, key, n) == 0 && p[n + 1] == '"' && p[n + 2] == ':')
      return p + n + 3;
    /* Skip the whole string: a value may contain a key's name. */
    p++;
    while (*p && *p != '"')
      p += *p == '\\' && p[1] ? 2 : 1;
    if (*p)
      p++;
  }
  return NULL;
}

static uint64_t
json_u64 (const char *s, const char *key)
{
  const char *v = json_field (s, key);

  return v ? strtoull (v, NULL, 10) : 0;
}

static int
json_bool (const char *s, const char *key)
{
  const char *v = json_field (s, key);

  return v && strncmp (v, "true", 4) == 0;
}

/* A string field without escapes (the ones shown have none). */
static void
json_str (const char *s, const char *key, char *buf, size_t len)
{
  const char *v = json_field (s, key);
  size_t i = 0;

  if (v && *v == '"')
    for (v++; *v && *v != '"' && i + 1 < len; v++)
      buf[i++] = *v;
  buf[i] = '\0';
}

/* A line for each export, when there are several: its name as the
 * JSON has it (escaped), dirty data, requests, write-back and backend.
 */
static char *
export_lines (const char *s)
{
  struct json_export *e;
  int n = stats_exports (s, &e);
  char *buf = NULL;
  size_t len = 0;
  FILE *f;

  if (n < 2 || !(f = open_memstream (&buf, &len))) {
    if (n > 0)
      stats_exports_free (e, n);
    return NULL;
  }
  for (int i = 0; i < n; i++) {
    char *o = strndup (e[i].obj, e[i].len), st[32], err[64];
    char h[32], h2[32], h3[32], h4[32];
    int width = e[i].name_json_len > 34 ? 30 : (int) e[i].name_json_len;

    if (!o)
      continue;
    json_str (o, "backend_state", st, sizeof st);
    json_str (o, "backend_last_error", err, sizeof err);
    fprintf (f, "  %-*.*s%s dirty %s, %" PRIu64 " reads (%s), %" PRIu64
             " writes (%s), %s written back, backend %s%s%s%s\n",
             e[i].name_json_len > 34 ? 30 : 18, width, e[i].name_json,
             e[i].name_json_len > 34 ? "...\"" : "",
             human_size (json_u64 (o, "dirty_bytes"), h, sizeof h),
             json_u64 (o, "reads"),
             human_size (json_u64 (o, "read_bytes"), h2, sizeof h2),
             json_u64 (o, "writes"),
             human_size (json_u64 (o, "write_bytes"), h3, sizeof h3),
             human_size (json_u64 (o, "writeback_bytes"), h4, sizeof h4),
             st[0] ? st : "?", err[0] ? ", last error " : "", err,
             json_bool (o, "attached") ? "" : " (not attached)");
    free (o);
  }
  fclose (f);
  stats_exports_free (e, n);
  return buf;
}

/* One sample, or -1 (reported). */
static int
take_sample (const char *sock, struct sample *sm)
{
  char *text = ctl_request (sock, "stats", TOP_TIMEOUT_MS);
  const char *s = text;

  if (!text)
    return -1;
  while (*s == ' ')
    s++;
  if (*s != '{') {
    errmsg ("%s: %s", sock, strncmp (s, "error", 5) == 0 ? s
            : "not pcache statistics (expected a JSON object)");
    free (text);
    return -1;
  }
  free (sm->exports);
  memset (sm, 0, sizeof *sm);
  sm->exports = export_lines (s);
  sm->read_hits = json_u64 (s, "read_hits");
  sm->read_misses = json_u64 (s, "read_misses");
  sm->dirty_bytes = json_u64 (s, "dirty_bytes");
  sm->writeback_bytes = json_u64 (s, "writeback_bytes");
  sm->uptime_ms = json_u64 (s, "uptime_ms");
  sm->client_epoch = json_u64 (s, "client_epoch");
  sm->backing_epoch = json_u64 (s, "backing_epoch");
  sm->segments_total = json_u64 (s, "segments_total");
  sm->segment_size = json_u64 (s, "segment_size");
  sm->group_epochs = json_u64 (s, "writeback_group_epochs");
  sm->writeback_held = json_bool (s, "writeback_held");
  sm->writeback_paused = json_bool (s, "writeback_paused");
  json_str (s, "mode", sm->mode, sizeof sm->mode);
  json_str (s, "backend_state", sm->backend_state, sizeof sm->backend_state);
  json_str (s, "backend_last_error", sm->backend_last_error,
            sizeof sm->backend_last_error);
  free (text);
  return 0;
}

/* "87.5% (7/8)", or "-" without reads. */
static const char *
hit_rate (uint64_t hits, uint64_t misses, char *buf, size_t len)
{
  if (hits + misses == 0)
    snprintf (buf, len, "-");
  else
    snprintf (buf, len, "%.1f%% (%" PRIu64 "/%" PRIu64 ")",
              100.0 * hits / (hits + misses), hits, hits + misses);
  return buf;
}

/* Counters can go back (reset-stats): a difference is then taken from
 * zero, as if the reset were the previous sample.
 */
static uint64_t
delta (uint64_t now, uint64_t before)
{
  return now >= before ? now - before : now;
}

static void
show (const char *sock, const struct sample *now, const struct sample *prev)
{
  struct sample zero;
  char a[64], b[64], h[32], h2[32];
  uint64_t ms, capacity = now->segments_total * now->segment_size;

  /* The first block: the interval is the whole uptime. */
  if (!prev) {
    memset (&zero, 0, sizeof zero);
    prev = &zero;
  }
  ms = delta (now->uptime_ms, prev->uptime_ms);

  printf ("pcache %s  up %.1f s  mode %s\n", sock, now->uptime_ms / 1000.0,
          now->mode[0] ? now->mode : "?");
  printf ("%-17s %s interval, %s total\n", "read hit rate:",
          hit_rate (delta (now->read_hits, prev->read_hits),
                    delta (now->read_misses, prev->read_misses),
                    a, sizeof a),
          hit_rate (now->read_hits, now->read_misses, b, sizeof b));
  if (capacity)
    printf ("%-17s %s (%.1f%% of %s)\n", "dirty:",
            human_size (now->dirty_bytes, h, sizeof h),
            100.0 * now->dirty_bytes / capacity,
            human_size (capacity, h2, sizeof h2));
  else
    printf ("%-17s %s\n", "dirty:", human_size (now->dirty_bytes, h,
                                                sizeof h));
  printf ("%-17s %s/s over %.1f s (%s written back in all)\n",
          "write-back rate:",
          human_size (ms ? delta (now->writeback_bytes,
                                  prev->writeback_bytes) * 1000 / ms : 0,
                      h, sizeof h),
          ms / 1000.0, human_size (now->writeback_bytes, h2, sizeof h2));
  printf ("%-17s client %" PRIu64 ", backing %" PRIu64, "epochs:",
          now->client_epoch, now->backing_epoch);
  /* The backing epoch moves a group at a time. */
  if (now->group_epochs > 1)
    printf (", write-back in groups of up to %" PRIu64, now->group_epochs);
  printf ("\n");
  printf ("%-17s %s%s%s\n", "backend:",
          now->backend_state[0] ? now->backend_state : "?",
          now->backend_last_error[0] ? ", last error " : "",
          now->backend_last_error);
  printf ("%-17s %s, %s\n", "write-back:",
          now->writeback_held ? "held" : "not held",
          now->writeback_paused ? "paused" : "not paused");
  if (now->exports)
    printf ("exports:\n%s", now->exports);
}

static void
sleep_secs (double secs)
{
  struct timespec ts = { (time_t) secs,
                         (long) ((secs - (time_t) secs) * 1e9) };

  while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
    ;
}

int
cmd_top (int argc, char **argv)
{
  static const struct option opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "verbose", no_argument, NULL, 'v' },
    { "interval", required_argument, NULL, 'i' },
    { "count", required_argument, NULL, 'n' },
    { NULL, 0, NULL, 0 }
  };
  double interval = 2;
  unsigned long count = 0, shown;
  struct sample now = { .exports = NULL }, prev;
  const char *sock;
  int tty = isatty (STDOUT_FILENO), c;
  char *end;

  while ((c = cmd_getopt (argc, argv, ":hvi:n:", opts)) != -1) {
    errno = 0;
    if (c == 'i') {
      interval = strtod (optarg, &end);
      if (errno || end == optarg || *end || !(interval >= 0.1) ||
          interval > 86400)
        usage_error ("--interval: '%s' is not a number of seconds from "
                     "0.1 to 86400", optarg);
    }
    else if (c == 'n') {
      count = strtoul (optarg, &end, 10);
      if (errno || end == optarg || *end || optarg[0] == '-')
        usage_error ("--count: '%s' is not a number", optarg);
    }
  }
  want_args (argc, argv, 1, "SOCKET argument");
  sock = argv[optind];
  if (!is_socket (sock)) {
    errmsg ("%s: not a socket (give the pcache-control=SOCKET of a "
            "running nbdkit)", sock);
    return EXIT_FAILED;
  }

  for (shown = 0; count == 0 || shown < count; shown++) {
    if (shown)
      sleep_secs (interval);
    if (take_sample (sock, &now) == -1) {
      free (now.exports);
      return EXIT_FAILED;
    }
    /* On a terminal, redraw in place like top; else (a pipe, a log)
     * plain blocks one after the other.
     */
    if (tty)
      fputs ("\033[H\033[2J", stdout);
    else if (shown)
      putchar ('\n');
    show (sock, &now, shown ? &prev : NULL);
    if (fflush (stdout) == EOF)
      return EXIT_FAILED;
    prev = now;
  }
  free (now.exports);
  return EXIT_OK;
}
