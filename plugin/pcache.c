/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit pcache filter: a persistent-memory write-back cache in front of
 * any plugin.  This file is only the glue between nbdkit and the engine
 * in core/.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-filter.h>

#include "pcache.h"
#include "blocksize.h"
#include "control.h"
#include "params.h"

static pc_cache *cache;
/* Single-export mode: the namespace of export "", once bound. */
static uint32_t single_ns;
/* Set when the cache could not be tied to the plugin after the fork.
 * nbdkit 1.32 cannot exit cleanly from there (a --run command would
 * wait on the listening socket forever), so every connection fails
 * with this error instead.
 */
static _Atomic int unusable;
static nbdkit_backend *ready_backend;
static int bound;
/* Single-export mode: set while the plugin has not been opened since
 * the fork (a remote that was not up yet); the first connection that
 * can open it starts the cache, under start_lock.
 */
static _Atomic int deferred;
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
/* The workers run: there is something to drain at exit. */
static _Atomic int started;

/* The shared backend context used by the background workers, and
 * what it can do.  Write-back replaces it when its connection breaks
 * (bg_reopen): every use of bg_next holds bg_swap shared, the swap
 * holds it exclusively.  NULL while no new context could be opened.
 */
static nbdkit_backend *bg_backend;
static nbdkit_next *bg_next;
/* Writers first: a steady stream of write-through requests must not
 * keep a reopen waiting.
 */
static pthread_rwlock_t bg_swap =
  PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
static int bg_can_zero, bg_can_trim, bg_can_flush, bg_can_fua;
/* A reopened context was refused (its size or what it can do changed):
 * reported once, until a reopen succeeds.
 */
static int bg_refused;

/* Below PARALLEL, nbdkit serializes only client requests; our own
 * threads must then take turns with them to reach the plugin.  Lock
 * order: bg_swap before plugin_lock, never the reverse.
 */
static int serialize;
static pthread_mutex_t plugin_lock = PTHREAD_MUTEX_INITIALIZER;

#define PLUGIN_CALL(expr)                                       \
  ({ int r_;                                                    \
     if (serialize) pthread_mutex_lock (&plugin_lock);          \
     r_ = (expr);                                               \
     if (serialize) pthread_mutex_unlock (&plugin_lock);        \
     r_; })

/* Debug flags, set by nbdkit from -D pcache.writeback=1 and
 * -D pcache.gc=1 (nbdkit-filter(3), "DEBUG FLAGS"): the engine then
 * traces each batch written back and each GC round, through
 * nbdkit_debug (shown with -v).
 */
NBDKIT_DLL_PUBLIC int pcache_debug_writeback;
NBDKIT_DLL_PUBLIC int pcache_debug_gc;

/* The parameter the engine's errors are about while it opens the
 * cache (pcache-dev), so that they name it: the engine itself, shared
 * with pcachectl, names only the file.
 */
static const char *log_param;

static void
log_to_nbdkit (int level, const char *fmt, va_list ap)
{
  char msg[1024];

  if (level != 0)
    nbdkit_vdebug (fmt, ap);
  else if (!log_param)
    nbdkit_verror (fmt, ap);
  else {
    vsnprintf (msg, sizeof msg, fmt, ap);
    nbdkit_error ("%s: %s", log_param, msg);
  }
}

static void
pcache_load (void)
{
  pcache_params_init ();
  pc_set_log (log_to_nbdkit);
}

static void
pcache_unload (void)
{
  pc_cache_close (cache);
  cache = NULL;
  pcache_control_free ();
  pcache_params_free ();
}

static int
pcache_config (nbdkit_next_config *next, nbdkit_backend *nxdata,
               const char *key, const char *value)
{
  int r = pcache_params_config (key, value);

  return r == 1 ? next (nxdata, key, value) : r;
}

static int
pcache_config_complete (nbdkit_next_config_complete *next,
                        nbdkit_backend *nxdata)
{
  if (pcache_params_complete () == -1)
    return -1;
  ready_backend = nxdata;
  return next (nxdata);
}

/* pcache reaches the plugin through several connections at once: each
 * client's, for cache misses, and its own, for write-back.  They must
 * all see one disk, which is what a plugin promises by advertising
 * multi-conn.  MULTI_CONN is the plugin's can_multi_conn answer.
 */
static int
check_multi_conn (int multi_conn)
{
  if (multi_conn == -1)
    return -1;
  if (multi_conn == 1 || params.assume_shared || params.plugin_known_shared)
    return 0;
  nbdkit_error ("pcache: the plugin does not advertise multi-conn, so its "
                "connections may each see a disk of their own, and one "
                "cache in front of them could show a client another's "
                "data; if every connection to this plugin sees the same "
                "disk, set pcache-assume-shared=true");
  return -1;
}

/* Creates the cache file, or checks an existing one against the
 * plugin's SIZE: the errors are about pcache-dev.
 */
static int
bind_cache (int64_t size)
{
  int r;

  log_param = "pcache-dev";
  r = pc_cache_bind (cache, size);
  log_param = NULL;
  return r;
}

/* Open, validate and replay the cache before nbdkit forks, so that
 * errors reach the user's terminal.
 */
/* The plugin's size and multi-conn answer through a short-lived
 * context.  -1 if the plugin cannot tell them yet.
 */
static int
probe_plugin (int64_t *size, int *multi_conn)
{
  nbdkit_next *n = nbdkit_next_context_open (ready_backend, 1, "", 1);
  int r = -1;

  if (!n)
    return -1;
  if (n->prepare (n) != -1) {
    *size = n->get_size (n);
    *multi_conn = n->can_multi_conn (n);
    if (*size >= 0 && *multi_conn >= 0)
      r = 0;
  }
  n->finalize (n);
  nbdkit_next_context_close (n);
  return r;
}

static int
pcache_get_ready (int thread_model)
{
  int64_t size;
  int multi_conn, probed, r;

  serialize = thread_model != NBDKIT_THREAD_MODEL_PARALLEL;
  pc_set_trace ((pcache_debug_writeback ? PC_TRACE_WRITEBACK : 0) |
                (pcache_debug_gc ? PC_TRACE_GC : 0));
  /* In multi-export mode the plugin is not asked anything here: a
   * context opened this early has no export name (and no connection),
   * which such plugins cannot serve; each export is tied to the cache
   * when a client first opens it.  A single-export plugin is checked
   * now if it can be asked this early, so that a wrong backend is
   * refused before nbdkit forks, with an exit status, and before a
   * cache file is made for it (with --run, a failure after the fork
   * could only refuse connections).
   */
  probed = !params.multi_export && probe_plugin (&size, &multi_conn) == 0;
  if (probed && check_multi_conn (multi_conn) == -1)
    return -1;
  /* Paths that cannot work are refused before a cache file is made. */
  if (pcache_control_check () == -1)
    return -1;
  log_param = "pcache-dev";
  r = pc_cache_open (&params.cfg, &cache);
  if (r == 0 && params.multi_export) {
    /* Formats a new cache (pcache-size) before the fork, so that its
     * errors reach the user's terminal.
     */
    r = pc_cache_ready (cache);
    bound = r == 0;
  }
  else if (r == 0 && probed) {
    r = pc_cache_bind (cache, size);
    bound = r == 0;
  }
  log_param = NULL;
  if (r == -1)
    return -1;
  /* Last, so that no later failure leaves the socket file behind
   * (nbdkit exits at once when get_ready fails); before the fork, so
   * that a socket that cannot be made is nbdkit's exit status.
   */
  return pcache_control_listen ();
}

/* Background backend operations, through the shared context: call
 * CALL with n bound to it, or fail with ENOTCONN while there is none.
 */
#define BG_CALL(err, call)                                      \
  ({ int r_;                                                    \
     nbdkit_next *n;                                            \
     pthread_rwlock_rdlock (&bg_swap);                          \
     n = bg_next;                                               \
     if (n)                                                     \
       r_ = PLUGIN_CALL (call);                                 \
     else {                                                     \
       *(err) = ENOTCONN;                                       \
       r_ = -1;                                                 \
     }                                                          \
     pthread_rwlock_unlock (&bg_swap);                          \
     r_; })

/* The shared context's can_write, under bg_swap.  A plugin opened
 * read-only (a file on a read-only mount, say) serves the cache's
 * reads, but its data calls that write would trip nbdkit's assertions:
 * they fail with EROFS instead, and the dirty data stays in the cache
 * as it does behind any plugin that fails.
 */
static int bg_can_write;

#define BG_WRITE(err, call)                                     \
  BG_CALL (err, bg_can_write ? (call) : (*(err) = EROFS, -1))

static int
bg_pread (void *ctx, void *buf, uint32_t len, uint64_t off, int *err)
{
  return BG_CALL (err, n->pread (n, buf, len, off, 0, err));
}

static int
bg_pwrite (void *ctx, const void *buf, uint32_t len, uint64_t off, int *err)
{
  return BG_WRITE (err, n->pwrite (n, buf, len, off, 0, err));
}

static int
bg_zero (void *ctx, uint32_t len, uint64_t off, int may_trim, int *err)
{
  return BG_WRITE (err, n->zero (n, len, off,
                                 may_trim ? NBDKIT_FLAG_MAY_TRIM : 0, err));
}

static int
bg_trim (void *ctx, uint32_t len, uint64_t off, int *err)
{
  return BG_WRITE (err, n->trim (n, len, off, 0, err));
}

static int
bg_flush (void *ctx, int *err)
{
  return BG_CALL (err, n->flush (n, 0, err));
}

/* The shared context's FUA, under bg_swap: a reopened one may have
 * lost it, and then a write and a flush do what FUA would.
 */
static int bg_fua;

static int
bg_pwrite_fua (void *ctx, const void *buf, uint32_t len, uint64_t off,
               int *err)
{
  return BG_WRITE (err, bg_fua > NBDKIT_FUA_NONE
                   ? n->pwrite (n, buf, len, off, NBDKIT_FLAG_FUA, err)
                   : n->pwrite (n, buf, len, off, 0, err) == -1 ? -1
                   : n->flush (n, 0, err));
}

static int bg_reopen (void *ctx, int *err);

static struct pc_backend_ops bg_ops = {
  .pread = bg_pread,
  .pwrite = bg_pwrite,
  .reopen = bg_reopen,
};

/* The plugin must be the size the cache was made for. */
static int
check_size (int64_t size)
{
  if ((uint64_t) size == pc_cache_backing_size (cache))
    return 0;
  nbdkit_error ("pcache: plugin size %" PRIi64 " differs from the size the "
                "cache was made for (%" PRIu64 ")", size,
                pc_cache_backing_size (cache));
  return -1;
}

/* What a background context can do, asked before any data call (the
 * server asserts that they were).
 */
struct bg_caps {
  int64_t size;
  int write, flush, fua, trim, zero, multi_conn;
};

/* Open, prepare and ask a shared background context.  NULL on error
 * (logged by nbdkit or the plugin).
 */
static nbdkit_next *
bg_open (struct bg_caps *caps)
{
  nbdkit_next *n = nbdkit_next_context_open (bg_backend, 0, "", 1);

  if (!n)
    return NULL;
  if (n->prepare (n) == -1)
    goto fail;
  caps->size = n->get_size (n);
  caps->write = n->can_write (n);
  if (caps->size == -1 || caps->write == -1)
    goto fail;
  caps->flush = n->can_flush (n);
  caps->fua = n->can_fua (n);
  caps->trim = n->can_trim (n);
  caps->zero = n->can_zero (n);
  caps->multi_conn = n->can_multi_conn (n);
  if (caps->flush == -1 || caps->fua == -1 || caps->trim == -1 ||
      caps->zero == -1 || n->can_fast_zero (n) == -1 ||
      caps->multi_conn == -1)
    goto fail;
  return n;

 fail:
  n->finalize (n);
  nbdkit_next_context_close (n);
  return NULL;
}

static void
bg_close (nbdkit_next *n)
{
  if (n) {
    n->finalize (n);
    nbdkit_next_context_close (n);
  }
}

/* What the first background context could do. */
static struct bg_caps bg_first;

/* A new context must do what the engine was told the first one does. */
static int
bg_caps_match (const struct bg_caps *caps)
{
  if ((uint64_t) caps->size != pc_cache_backing_size (cache)) {
    if (!bg_refused)
      nbdkit_error ("pcache: the reopened plugin's size %" PRIi64 " differs "
                    "from the size the cache was made for (%" PRIu64 "); "
                    "write-back stays stopped", caps->size,
                    pc_cache_backing_size (cache));
    return -1;
  }
  if ((bg_first.write && !caps->write) ||
      (bg_first.flush && !caps->flush) || (bg_first.trim && !caps->trim) ||
      (bg_first.zero > NBDKIT_ZERO_NONE && caps->zero <= NBDKIT_ZERO_NONE)) {
    if (!bg_refused)
      nbdkit_error ("pcache: the reopened plugin can no longer write, flush, "
                    "trim or zero as it could; write-back stays stopped");
    return -1;
  }
  return 0;
}

/* Write-back's reopen (see struct pc_backend_ops): a new context for
 * one whose connection broke.  It is opened before the old one is
 * dropped, so bg_swap is held only for the swap itself.  If it cannot
 * be opened (the remote is still down) or is refused, the old one is
 * closed all the same and background requests fail with ENOTCONN until
 * a later reopen succeeds.
 */
static int
bg_reopen (void *ctx, int *err)
{
  struct bg_caps caps;
  nbdkit_next *n, *old;

  (void) ctx;
  if (serialize)
    pthread_mutex_lock (&plugin_lock);
  n = bg_open (&caps);
  if (n && bg_caps_match (&caps) == -1) {
    bg_close (n);
    bg_refused = 1;
    n = NULL;
  }
  if (serialize)
    pthread_mutex_unlock (&plugin_lock);

  pthread_rwlock_wrlock (&bg_swap);
  old = bg_next;
  bg_next = n;
  if (n) {
    bg_fua = caps.fua;
    bg_can_write = caps.write == 1;
  }
  pthread_rwlock_unlock (&bg_swap);
  /* No request can be using the old one now: they hold bg_swap. */
  if (serialize)
    pthread_mutex_lock (&plugin_lock);
  bg_close (old);
  if (serialize)
    pthread_mutex_unlock (&plugin_lock);
  if (!n) {
    *err = ENOTCONN;
    return -1;
  }
  bg_refused = 0;
  return 0;
}

/* Single-export mode: tie the cache to the plugin through a shared
 * background context, and start it.  Returns 0, 1 if the plugin cannot
 * be opened (yet), or -1 if the cache cannot serve this plugin
 * (unusable is then set) or could not start.
 */
static int
single_start (void)
{
  struct pc_backend bg;
  struct bg_caps caps;

  if (serialize)
    pthread_mutex_lock (&plugin_lock);
  bg_next = bg_open (&caps);
  if (serialize)
    pthread_mutex_unlock (&plugin_lock);
  if (!bg_next)
    return 1;
  if (check_multi_conn (caps.multi_conn) == -1)
    goto refused;
  bg_first = caps;
  bg_can_write = caps.write == 1;
  if (!bg_can_write)
    nbdkit_debug ("pcache: the plugin cannot be written: write-back waits "
                  "until it can");
  bg_can_flush = caps.flush;
  bg_can_fua = caps.fua;
  bg_fua = caps.fua;
  /* Only a backend whose FUA is its own saves a round trip with it:
   * nbdkit emulates one with a write and a flush.
   */
  bg_ops.pwrite_fua = caps.fua == NBDKIT_FUA_NATIVE ? bg_pwrite_fua : NULL;
  bg_can_trim = caps.trim;
  bg_can_zero = caps.zero;
  bg_ops.flush = bg_can_flush ? bg_flush : NULL;
  bg_ops.trim = bg_can_trim ? bg_trim : NULL;
  bg_ops.zero = bg_can_zero > NBDKIT_ZERO_NONE ? bg_zero : NULL;

  /* A plugin that could not be asked before the fork: nbdkit 1.32
   * cannot exit cleanly after it (a --run command would wait on the
   * listening socket for ever), so a cache that cannot be made or does
   * not fit it makes every connection fail instead.
   */
  if (!bound && bind_cache (caps.size) == -1)
    goto refused;
  bound = 1;
  if (check_size (caps.size) == -1 ||
      pc_ns_open (cache, "", caps.size, &single_ns) == -1)
    goto refused;
  bg.ops = &bg_ops;
  bg.ctx = NULL;                        /* bg_next, which may change */
  if (pc_cache_start (cache, &bg) == -1)
    return -1;
  started = 1;
  return pcache_control_start (cache);

 refused:
  bg_close (bg_next);
  bg_next = NULL;
  unusable = 1;
  return -1;
}

/* Single-export mode, once the plugin could not be opened after the
 * fork: start when a client's connection can open it.  Returns 0 once
 * started, -1 with the error given (to that client) otherwise.
 */
static int
single_start_late (void)
{
  int r = 0;

  if (!atomic_load (&deferred))
    return 0;
  pthread_mutex_lock (&start_lock);
  if (atomic_load (&deferred)) {
    r = single_start ();
    if (r == 1)
      nbdkit_error ("pcache: the plugin still cannot be opened for "
                    "write-back (see the error above); the cache starts "
                    "once it can");
    else if (r == 0)
      nbdkit_debug ("pcache: the plugin can be opened now: the cache "
                    "has started");
    else if (r == -1)
      unusable = 1;
    if (r != 1)
      atomic_store (&deferred, 0);
  }
  pthread_mutex_unlock (&start_lock);
  return r == 0 ? 0 : -1;
}

static int
pcache_after_fork (nbdkit_backend *backend)
{
  int r;

  if (params.multi_export) {
    /* No shared context: each namespace gets the connection of one of
     * its clients as its backend (pcache_prepare).
     */
    if (pc_cache_start (cache, NULL) == -1)
      return -1;
    started = 1;
    return pcache_control_start (cache);
  }

  bg_backend = backend;
  r = single_start ();
  /* A remote that is not up yet, say: the server waits for it, as it
   * does without the cache, and the first connection that can open
   * the plugin starts the cache.
   */
  if (r == 1) {
    nbdkit_error ("pcache: the plugin cannot be opened now (see the error "
                  "above); the cache starts when a client's connection can "
                  "open it");
    atomic_store (&deferred, 1);
    return pcache_control_start_waiting ();
  }
  return r == -1 && !unusable ? -1 : 0;
}

static void
pcache_cleanup (nbdkit_backend *backend)
{
  (void) backend;
  pcache_control_stop ();
  /* Filters below that sleep now end their requests with ESHUTDOWN. */
  if (cache)
    pc_cache_exiting (cache);
  if (cache && params.drain_on_exit && !atomic_load (&started))
    nbdkit_error ("pcache-drain: the plugin was never opened: %s is left "
                  "as it was", params.dev_path);
  else if (cache && params.drain_on_exit) {
    struct pc_stats st;
    int err = 0;

    /* Neither a hold nor a pause outlives the server: a restart writes
     * back anyway.  pcache-drain=true asks for everything now.
     */
    pc_cache_get_stats (cache, &st);
    if (st.writeback_held || st.writeback_paused) {
      nbdkit_debug ("pcache-drain: write-back was %s; it runs for the drain",
                    st.writeback_held ? "held" : "paused");
      pc_cache_release (cache);
      pc_cache_pause_writeback (cache, 0);
    }
    nbdkit_debug ("pcache: draining the cache to the plugin");
    if (pc_cache_detach (cache, &err) == -1)
      nbdkit_error ("pcache-drain: could not write everything back (%s); "
                    "the data stays in the cache%s", strerror (err),
                    err == ESHUTDOWN ? ": drain through pcache-control "
                    "before stopping nbdkit" : "");
  }
  if (cache)
    pc_cache_stop (cache);
  pcache_control_final ();
  /* The workers are stopped: nothing else uses bg_next now. */
  bg_close (bg_next);
  bg_next = NULL;
}

/* A client connection.  In multi-export mode it is also a backend
 * that write-back may use for its export's namespace: the plugin can
 * be reached with that export name only through a client connection.
 */
struct handle {
  char *name;                   /* the export, as the plugin was opened */
  uint32_t ns;                  /* its namespace (after prepare) */
  int registered;               /* in conns[ns] */
  nbdkit_next *next;            /* valid from prepare to finalize */
  int can_write;
  struct pcache_bs bs;          /* what the plugin takes (after prepare) */
  struct pc_backend_ops ops;    /* what next can do (multi-export) */
  struct pc_backend bg;
  struct handle *link;          /* conns[ns] */
};

/* Multi-export mode: the live, writable connections to each namespace,
 * and the one attached as its backend (NULL: none).  Lock order:
 * ns_lock before plugin_lock (write-back's calls through a connection
 * take plugin_lock only, so pc_ns_detach under ns_lock cannot wait on
 * a thread that waits for ns_lock).
 */
static pthread_mutex_t ns_lock = PTHREAD_MUTEX_INITIALIZER;
static struct handle *conns[PC_MAX_EXPORTS];
static struct handle *provider[PC_MAX_EXPORTS];

static int
h_pread (void *ctx, void *buf, uint32_t len, uint64_t off, int *err)
{
  struct handle *h = ctx;
  nbdkit_next *n = h->next;
  return PLUGIN_CALL (n->pread (n, buf, len, off, 0, err));
}

static int
h_pwrite (void *ctx, const void *buf, uint32_t len, uint64_t off, int *err)
{
  struct handle *h = ctx;
  nbdkit_next *n = h->next;
  return PLUGIN_CALL (n->pwrite (n, buf, len, off, 0, err));
}

static int
h_zero (void *ctx, uint32_t len, uint64_t off, int may_trim, int *err)
{
  struct handle *h = ctx;
  nbdkit_next *n = h->next;
  return PLUGIN_CALL (n->zero (n, len, off,
                               may_trim ? NBDKIT_FLAG_MAY_TRIM : 0, err));
}

static int
h_trim (void *ctx, uint32_t len, uint64_t off, int *err)
{
  struct handle *h = ctx;
  nbdkit_next *n = h->next;
  return PLUGIN_CALL (n->trim (n, len, off, 0, err));
}

static int
h_flush (void *ctx, int *err)
{
  struct handle *h = ctx;
  nbdkit_next *n = h->next;
  return PLUGIN_CALL (n->flush (n, 0, err));
}

static int
h_pwrite_fua (void *ctx, const void *buf, uint32_t len, uint64_t off,
              int *err)
{
  struct handle *h = ctx;
  nbdkit_next *n = h->next;
  return PLUGIN_CALL (n->pwrite (n, buf, len, off, NBDKIT_FLAG_FUA, err));
}

/* Ask next what it can do (the server asserts that it was asked before
 * any data call) and fill h's backend with it.
 */
static int
handle_caps (struct handle *h, nbdkit_next *next)
{
  int flush, fua, trim, zero;

  h->can_write = next->can_write (next);
  flush = next->can_flush (next);
  fua = next->can_fua (next);
  trim = next->can_trim (next);
  zero = next->can_zero (next);
  if (h->can_write == -1 || flush == -1 || fua == -1 || trim == -1 ||
      zero == -1 || next->can_fast_zero (next) == -1)
    return -1;
  h->next = next;
  h->ops = (struct pc_backend_ops) {
    .pread = h_pread,
    .pwrite = h_pwrite,
    .flush = flush ? h_flush : NULL,
    .trim = trim ? h_trim : NULL,
    .zero = zero > NBDKIT_ZERO_NONE ? h_zero : NULL,
    .pwrite_fua = fua == NBDKIT_FUA_NATIVE ? h_pwrite_fua : NULL,
  };
  h->bg.ops = &h->ops;
  h->bg.ctx = h;
  return 0;
}

/* Add h to the connections of its namespace; the first becomes its
 * backend.  A read-only connection cannot write back.
 */
static int
ns_register (struct handle *h)
{
  int r = 0;

  if (h->can_write != 1)
    return 0;
  pthread_mutex_lock (&ns_lock);
  h->link = conns[h->ns];
  conns[h->ns] = h;
  h->registered = 1;
  if (!provider[h->ns]) {
    if (pc_ns_attach (cache, h->ns, &h->bg) == 0)
      provider[h->ns] = h;
    else {
      nbdkit_error ("pcache: export '%s': cannot attach its backend",
                    h->name);
      r = -1;
    }
  }
  pthread_mutex_unlock (&ns_lock);
  return r;
}

static void
ns_unlink (struct handle *h)
{
  struct handle **p;

  for (p = &conns[h->ns]; *p; p = &(*p)->link)
    if (*p == h) {
      *p = h->link;
      break;
    }
  h->registered = 0;
}

/* h's connection ends.  If write-back uses it, another connection to
 * the same export takes over; if it is the last one, the export's
 * dirty data is first written back through it, since nothing else can
 * reach that export until a client opens it again.
 */
static void
ns_unregister (struct handle *h)
{
  struct handle *other;
  int err = 0;

  if (!h->registered)
    return;
  pthread_mutex_lock (&ns_lock);
  ns_unlink (h);
  if (provider[h->ns] != h) {
    pthread_mutex_unlock (&ns_lock);
    return;
  }
  if (!conns[h->ns]) {
    /* Drained without ns_lock, so that other exports' connections do
     * not wait for it; a connection to this export opened meanwhile
     * finds h still attached and takes over below.
     */
    pthread_mutex_unlock (&ns_lock);
    nbdkit_debug ("pcache: export '%s': last client left, writing back",
                  h->name);
    if (pc_ns_drain (cache, h->ns, &err) == -1)
      nbdkit_error ("pcache: export '%s': its last client left but its "
                    "dirty data could not be written back (%s); it stays "
                    "in the cache and is written back when a client next "
                    "opens the export", h->name, strerror (err));
    pthread_mutex_lock (&ns_lock);
  }
  pc_ns_detach (cache, h->ns);
  provider[h->ns] = NULL;
  other = conns[h->ns];
  if (other) {
    if (pc_ns_attach (cache, h->ns, &other->bg) == 0)
      provider[h->ns] = other;
    else
      nbdkit_error ("pcache: export '%s': cannot attach its backend",
                    h->name);
  }
  pthread_mutex_unlock (&ns_lock);
}

/* In single-export mode the cache holds one export: the plugin's
 * default export, which pcache names "".  Its write-back connection
 * reaches the plugin with no export name at all (nbdkit 1.32 gives a
 * plugin none outside a client connection), so a plugin that names its
 * default export could serve another disk there.  In multi-export mode
 * the plugin's names are used as they are.
 */
static const char *
pcache_default_export (nbdkit_next_default_export *next,
                       nbdkit_backend *nxdata, int readonly, int is_tls)
{
  const char *name = next (nxdata, readonly);

  (void) is_tls;
  if (!name || params.multi_export)
    return name;
  if (*name && !params.assume_shared) {
    nbdkit_error ("pcache: the plugin names its default export '%s', but "
                  "pcache writes back with no export name, so it cannot "
                  "tell that it writes to export '%s'; if the plugin "
                  "serves the same disk with no name, set "
                  "pcache-assume-shared=true", name, name);
    return NULL;
  }
  return "";
}

/* Single-export mode lists only the export that is served; multi-export
 * mode the plugin's.
 */
static int
pcache_list_exports (nbdkit_next_list_exports *next, nbdkit_backend *nxdata,
                     int readonly, int is_tls, struct nbdkit_exports *exports)
{
  (void) is_tls;
  if (params.multi_export)
    return next (nxdata, readonly, exports);
  return nbdkit_use_default_export (exports);
}

/* In single-export mode a client asking for the default export gets ""
 * here (see pcache_default_export); any other name is another export,
 * whose data must not meet this cache's.
 */
static void *
pcache_open (nbdkit_next_open *next, nbdkit_context *context, int readonly,
             const char *exportname, int is_tls)
{
  struct handle *h;

  (void) is_tls;
  if (!params.multi_export && *exportname) {
    nbdkit_error ("pcache: export '%s' refused: the cache serves only the "
                  "plugin's default export (\"\") of this plugin",
                  exportname);
    return NULL;
  }
  if (strlen (exportname) > PC_EXPORT_NAME_MAX) {
    nbdkit_error ("pcache: export name longer than %d bytes",
                  PC_EXPORT_NAME_MAX);
    return NULL;
  }
  h = calloc (1, sizeof *h);
  if (!h || !(h->name = strdup (exportname))) {
    nbdkit_error ("pcache: %s", strerror (errno));
    free (h);
    return NULL;
  }
  if (next (context, readonly, exportname) == -1) {
    free (h->name);
    free (h);
    return NULL;
  }
  return h;
}

static void
pcache_close (void *handle)
{
  struct handle *h = handle;

  free (h->name);
  free (h);
}

static int
pcache_prepare (nbdkit_next *next, void *handle, int readonly)
{
  struct handle *h = handle;
  int64_t size;

  (void) readonly;
  if (!params.multi_export && !unusable && single_start_late () == -1)
    return -1;
  if (unusable) {
    nbdkit_error ("pcache: %s cannot be used with this plugin (see the "
                  "error logged before)", params.dev_path);
    return -1;
  }
  size = next->get_size (next);
  if (size == -1 || pcache_bs_get (next, &h->bs) == -1)
    return -1;
  if (!params.multi_export) {
    if (check_size (size) == -1)
      return -1;
    h->ns = single_ns;
    return check_multi_conn (next->can_multi_conn (next));
  }
  if (check_multi_conn (next->can_multi_conn (next)) == -1 ||
      handle_caps (h, next) == -1)
    return -1;
  if (pc_ns_open (cache, h->name, size, &h->ns) == -1) {
    nbdkit_error ("pcache: export '%s' refused (see the error above); "
                  "other exports are still served", h->name);
    return -1;
  }
  return ns_register (h);
}

static int
pcache_finalize (nbdkit_next *next, void *handle)
{
  (void) next;
  ns_unregister (handle);
  return 0;
}

static int
pcache_can_flush (nbdkit_next *next, void *handle)
{
  return 1;
}

static int
pcache_can_fua (nbdkit_next *next, void *handle)
{
  return NBDKIT_FUA_NATIVE;
}

static int
pcache_can_trim (nbdkit_next *next, void *handle)
{
  return 1;
}

static int
pcache_can_zero (nbdkit_next *next, void *handle)
{
  return NBDKIT_ZERO_NATIVE;
}

/* A logged zero is always fast. */
static int
pcache_can_fast_zero (nbdkit_next *next, void *handle)
{
  return 1;
}

static int
pcache_can_extents (nbdkit_next *next, void *handle)
{
  return 1;
}

/* One cache behind every connection: a flush on any of them commits the
 * writes of all.
 */
static int
pcache_can_multi_conn (nbdkit_next *next, void *handle)
{
  return 1;
}

/* NBD_CMD_CACHE becomes a read, which fills the cache. */
static int
pcache_can_cache (nbdkit_next *next, void *handle)
{
  return NBDKIT_CACHE_EMULATE;
}

/* Foreground misses go through the connection's own context. */
static int
fg_pread (void *ctx, void *buf, uint32_t len, uint64_t off, int *err)
{
  nbdkit_next *n = ctx;
  return PLUGIN_CALL (n->pread (n, buf, len, off, 0, err));
}

static const struct pc_backend_ops fg_ops = { .pread = fg_pread };

static int
set_err (int *err)
{
  if (*err == 0)
    *err = EIO;
  return -1;
}

static int
pcache_pread (nbdkit_next *next, void *handle, void *buf, uint32_t count,
              uint64_t offset, uint32_t flags, int *err)
{
  struct handle *h = handle;
  struct pc_backend fg = { &fg_ops, next };

  *err = 0;
  if (pcache_bs_check (&h->bs, "pread", 1, count, offset, err) == -1)
    return -1;
  if (pc_read (cache, buf, count, pc_ns_addr (h->ns, offset), &fg,
               err) == -1)
    return set_err (err);
  return 0;
}

static int
pcache_pwrite (nbdkit_next *next, void *handle, const void *buf,
               uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  struct handle *h = handle;

  *err = 0;
  if (pcache_bs_check (&h->bs, "pwrite", 1, count, offset, err) == -1)
    return -1;
  if (pc_write (cache, buf, count, pc_ns_addr (h->ns, offset),
                (flags & NBDKIT_FLAG_FUA) ? PC_FUA : 0, err) == -1)
    return set_err (err);
  return 0;
}

static int
pcache_zero (nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
             uint32_t flags, int *err)
{
  struct handle *h = handle;
  unsigned f = 0;

  if (flags & NBDKIT_FLAG_FUA)
    f |= PC_FUA;
  if (flags & NBDKIT_FLAG_MAY_TRIM)
    f |= PC_MAY_TRIM;
  *err = 0;
  if (pcache_bs_check (&h->bs, "zero", 0, count, offset, err) == -1)
    return -1;
  if (pc_zero (cache, count, pc_ns_addr (h->ns, offset), f, err) == -1)
    return set_err (err);
  return 0;
}

static int
pcache_trim (nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
             uint32_t flags, int *err)
{
  struct handle *h = handle;

  *err = 0;
  if (pcache_bs_check (&h->bs, "trim", 0, count, offset, err) == -1)
    return -1;
  if (pc_trim (cache, count, pc_ns_addr (h->ns, offset),
               (flags & NBDKIT_FLAG_FUA) ? PC_FUA : 0, err) == -1)
    return set_err (err);
  return 0;
}

static int
pcache_flush (nbdkit_next *next, void *handle, uint32_t flags, int *err)
{
  *err = 0;
  if (pc_flush (cache, err) == -1)
    return set_err (err);
  return 0;
}

/* Extents: what was written to the cache overrides what the plugin
 * says; a clean copy of the plugin's data is described as the plugin
 * describes it (a hole read into the cache is still a hole).
 */
struct map_ctx {
  uint64_t base;                    /* cache address of offset 0 */
  struct nbdkit_extents *out;
  struct nbdkit_extents *backend;   /* NULL: plugin has no extents */
};

static int
map_cb (void *opaque, uint64_t off, uint64_t len, enum pc_map_type type)
{
  struct map_ctx *m = opaque;
  uint64_t end;
  size_t i, n;

  off -= m->base;
  end = off + len;
  if (type == PC_MAP_DATA)
    return nbdkit_add_extent (m->out, off, len, 0);
  if (type == PC_MAP_ZERO)
    return nbdkit_add_extent (m->out, off, len, NBDKIT_EXTENT_ZERO);
  if (m->backend) {
    n = nbdkit_extents_count (m->backend);
    for (i = 0; i < n && off < end; i++) {
      struct nbdkit_extent e = nbdkit_get_extent (m->backend, i);
      uint64_t es = e.offset, ee = e.offset + e.length;

      if (ee <= off || es >= end)
        continue;
      if (es > off)
        break;
      ee = ee < end ? ee : end;
      if (nbdkit_add_extent (m->out, off, ee - off, e.type) == -1)
        return -1;
      off = ee;
    }
  }
  /* Whatever the plugin did not describe is reported as data. */
  if (off < end)
    return nbdkit_add_extent (m->out, off, end - off, 0);
  return 0;
}

static int
pcache_extents (nbdkit_next *next, void *handle, uint32_t count,
                uint64_t offset, uint32_t flags,
                struct nbdkit_extents *extents, int *err)
{
  struct handle *h = handle;
  struct map_ctx m = { pc_ns_addr (h->ns, 0), extents, NULL };
  int r;

  if (pcache_bs_check (&h->bs, "extents", 0, count, offset, err) == -1)
    return -1;
  if (next->can_extents (next) == 1) {
    m.backend = nbdkit_extents_new (offset, offset + count);
    if (!m.backend) {
      *err = errno ? errno : ENOMEM;
      return -1;
    }
    if (PLUGIN_CALL (next->extents (next, count, offset,
                                    flags & ~NBDKIT_FLAG_REQ_ONE,
                                    m.backend, err)) == -1) {
      nbdkit_extents_free (m.backend);
      return set_err (err);
    }
  }
  r = pc_map (cache, pc_ns_addr (h->ns, offset), count, map_cb, &m);
  nbdkit_extents_free (m.backend);
  if (r != 0) {
    *err = errno ? errno : EIO;
    return -1;
  }
  return 0;
}

static struct nbdkit_filter filter = {
  .name              = "pcache",
  .longname          = "nbdkit persistent-memory write-back cache filter",
  .load              = pcache_load,
  .unload            = pcache_unload,
  .config            = pcache_config,
  .config_complete   = pcache_config_complete,
  .config_help       = pcache_config_help,
  .get_ready         = pcache_get_ready,
  .after_fork        = pcache_after_fork,
  .cleanup           = pcache_cleanup,
  .list_exports      = pcache_list_exports,
  .default_export    = pcache_default_export,
  .open              = pcache_open,
  .prepare           = pcache_prepare,
  .finalize          = pcache_finalize,
  .close             = pcache_close,
  .can_flush         = pcache_can_flush,
  .can_fua           = pcache_can_fua,
  .can_trim          = pcache_can_trim,
  .can_zero          = pcache_can_zero,
  .can_fast_zero     = pcache_can_fast_zero,
  .can_extents       = pcache_can_extents,
  .can_multi_conn    = pcache_can_multi_conn,
  .can_cache         = pcache_can_cache,
  .pread             = pcache_pread,
  .pwrite            = pcache_pwrite,
  .zero              = pcache_zero,
  .trim              = pcache_trim,
  .flush             = pcache_flush,
  .extents           = pcache_extents,
};

NBDKIT_REGISTER_FILTER (filter)
