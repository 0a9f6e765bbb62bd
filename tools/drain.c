/* pcachectl drain: write the dirty data of a cache back to its backing
 * store when nbdkit cannot be started with the original plugin, or ask
 * a running filter to drain through its control socket.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pcachectl.h"

#define POLL_MS 200
#define DEFAULT_TIMEOUT_S 60

struct job {
  pc_cache *c;
  int keep;
  atomic_int done;
  int result, err;
};

static void *
drain_main (void *arg)
{
  struct job *j = arg;
  int err = 0;

  j->result = j->keep ? pc_cache_drain (j->c, &err)
    : pc_cache_detach (j->c, &err);
  j->err = err;
  atomic_store (&j->done, 1);
  return NULL;
}

static volatile sig_atomic_t interrupted;

static void
on_signal (int sig)
{
  interrupted = sig;
}

static uint64_t
now_ms (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Ask a running filter to drain. */
static int
drain_socket (const char *sock)
{
  char *reply;
  int r;

  progress_show ("draining through %s ...", sock);
  reply = ctl_request (sock, "drain", -1);
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

int
cmd_drain (int argc, char **argv)
{
  static const struct option opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "verbose", no_argument, NULL, 'v' },
    { "to", required_argument, NULL, 't' },
    { "keep", no_argument, NULL, 'k' },
    { "backing-id", required_argument, NULL, 'b' },
    { "timeout", required_argument, NULL, 'T' },
    { NULL, 0, NULL, 0 }
  };
  const char *path, *to = NULL, *want_id = NULL;
  unsigned long timeout_s = DEFAULT_TIMEOUT_S;
  char id[PC_BACKING_ID_LEN], h1[32], h2[32];
  struct backend *be = NULL;
  pc_cache *cache = NULL;
  struct pc_info in;
  struct pc_stats st;
  struct sigaction sa, old_int, old_term;
  struct job job;
  pthread_t thread;
  uint64_t start, last_good, err_base, last_dirty, dirty_ksets = 0;
  const char *why = NULL;
  int c, r = EXIT_FAILED;

  memset (&job, 0, sizeof job);
  while ((c = cmd_getopt (argc, argv, ":hvt:kb:T:", opts)) != -1) {
    char *end;

    switch (c) {
    case 't':
      to = optarg;
      break;
    case 'k':
      job.keep = 1;
      break;
    case 'b':
      want_id = optarg;
      break;
    case 'T':
      errno = 0;
      timeout_s = strtoul (optarg, &end, 10);
      if (errno || end == optarg || *end || optarg[0] == '-' ||
          timeout_s > 86400 * 365)
        usage_error ("--timeout: '%s' is not a number of seconds", optarg);
      break;
    }
  }
  want_args (argc, argv, 1, "CACHE argument");
  path = argv[optind];

  if (!to) {
    if (is_socket (path))
      return drain_socket (path);
    usage_error ("missing --to BACKING (a file, a block device or an NBD "
                 "URI)");
  }
  if (is_socket (path))
    usage_error ("%s is a control socket: drop --to to ask the running "
                 "filter to drain", path);
  if (want_id && strlen (want_id) >= PC_BACKING_ID_LEN)
    usage_error ("--backing-id: longer than %d bytes", PC_BACKING_ID_LEN - 1);

  /* A cache made for an identified backing store is only drained to a
   * store the user names as that one: its size alone proves little.
   */
  recorded_id (path, id);
  if (id[0] && !want_id) {
    errmsg ("%s: the cache was made for backing store \"%s\": add "
            "--backing-id='%s' to confirm that %s is that store", path, id,
            id, to);
    return EXIT_FAILED;
  }

  if (open_cache (path, want_id, &cache) == -1)
    return EXIT_FAILED;
  be = strstr (to, "://") ? backend_nbd_open (to)
    : backend_file_open (to, path);
  if (!be)
    goto out;
  if (pc_cache_bind (cache, be->size) == -1)
    goto out;
  if (pc_cache_info (cache, &in) == -1)
    goto out;
  dirty_ksets = in.dirty_ksets;
  dbgmsg ("%s: %" PRIu64 " dirty ksets, %" PRIu64 " dirty bytes, to %s",
          path, in.dirty_ksets, in.dirty_bytes, to);
  if (pc_cache_start (cache, &be->pb) == -1)
    goto out;

  /* Catch the first SIGINT or SIGTERM (unless ignored, as in a
   * background job) to stop cleanly.
   */
  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset (&sa.sa_mask);
  sigaction (SIGINT, &sa, &old_int);
  sigaction (SIGTERM, &sa, &old_term);
  if (old_int.sa_handler == SIG_IGN)
    sigaction (SIGINT, &old_int, NULL);
  if (old_term.sa_handler == SIG_IGN)
    sigaction (SIGTERM, &old_term, NULL);

  job.c = cache;
  if ((errno = pthread_create (&thread, NULL, drain_main, &job)) != 0) {
    errmsg ("pthread_create: %m");
    goto out;
  }

  /* Watch: progress on a terminal, and give up if writeback keeps
   * failing with no progress for timeout_s.
   */
  start = last_good = now_ms ();
  pc_cache_get_stats (cache, &st);
  err_base = st.writeback_errors;
  last_dirty = st.dirty_ksets;
  while (!atomic_load (&job.done)) {
    uint64_t t;
    int i;

    /* Wake often, so the end of the drain is seen at once. */
    for (i = 0; i < POLL_MS / 10 && !atomic_load (&job.done) &&
           !interrupted; i++)
      usleep (10000);
    if (atomic_load (&job.done))
      break;
    pc_cache_get_stats (cache, &st);
    t = now_ms ();
    if (st.dirty_ksets < last_dirty) {
      last_good = t;
      err_base = st.writeback_errors;
    }
    last_dirty = st.dirty_ksets;
    if (interrupted) {
      why = "interrupted";
      break;
    }
    if (timeout_s && st.writeback_errors > err_base &&
        t - last_good >= timeout_s * 1000) {
      why = "writeback keeps failing";
      break;
    }
    progress_show ("draining: %" PRIu64 " ksets left, %s written%s",
                   st.dirty_ksets,
                   human_size (st.writeback_bytes, h1, sizeof h1),
                   st.writeback_errors > err_base
                   ? " (writeback failing, retrying)" : "");
  }
  progress_lock ();
  progress_clear ();
  progress_unlock ();

  if (why) {
    uint64_t deadline;

    if (interrupted)
      errmsg ("%s: interrupted; stopping after the writeback batch in "
              "progress (interrupt again to quit at once)", path);
    else
      errmsg ("%s: writeback to %s has failed for %lu s without progress; "
              "giving up", path, to, timeout_s);
    if (be->last_error[0])
      errmsg ("last error: %s", be->last_error);
    /* A second signal ends the process: the cache is crash consistent. */
    sigaction (SIGINT, &old_int, NULL);
    sigaction (SIGTERM, &old_term, NULL);
    /* Stop the workers (a batch being written finishes first).  The
     * drain thread then ends, or, with an engine that does not wake it
     * on stop, stays blocked until exit: the cache is then left for the
     * exit to unmap and unlock.
     */
    pc_cache_stop (cache);
    pc_cache_get_stats (cache, &st);
    if (st.dirty_ksets)
      errmsg ("%s: %" PRIu64 " ksets are still dirty; nothing is lost: they "
              "stay in the cache, and drain can be run again", path,
              st.dirty_ksets);
    else
      errmsg ("%s: everything was written back before the stop, but the "
              "cache was not emptied; run drain again", path);
    deadline = now_ms () + 1000;
    while (!atomic_load (&job.done) && now_ms () < deadline)
      usleep (10000);
    if (atomic_load (&job.done))
      pthread_join (thread, NULL);
    else {
      pthread_detach (thread);
      cache = NULL;
    }
    goto out;
  }
  pthread_join (thread, NULL);
  sigaction (SIGINT, &old_int, NULL);
  sigaction (SIGTERM, &old_term, NULL);
  if (job.result == -1) {
    errmsg ("%s: drain failed: %s", path, strerror (job.err));
    if (be->last_error[0])
      errmsg ("last error: %s", be->last_error);
    goto out;
  }

  pc_cache_get_stats (cache, &st);
  if (pc_cache_info (cache, &in) == -1)
    goto out;
  printf ("%s: wrote back %" PRIu64 " dirty kset%s (%s of data) to %s in "
          "%.1f s; %s\n", path, dirty_ksets, dirty_ksets == 1 ? "" : "s",
          human_size (st.writeback_bytes, h1, sizeof h1), to,
          (now_ms () - start) / 1000.0,
          job.keep
          ? "clean data stays cached"
          : "the cache is now empty");
  if (in.dirty_bytes) {
    errmsg ("%s: %s are dirty again (written during the drain?)", path,
            human_size (in.dirty_bytes, h2, sizeof h2));
    goto out;
  }
  r = EXIT_OK;

 out:
  if (cache)
    pc_cache_close (cache);
  if (be)
    be->close (be);
  return r;
}
