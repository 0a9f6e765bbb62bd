/* SPDX-License-Identifier: BSD-3-Clause */
/* pcachectl: administration of pcache caches.  Shared declarations. */
#ifndef PCACHECTL_H
#define PCACHECTL_H

#include <getopt.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "pcache.h"
#include "format.h"

/* Exit codes. */
#define EXIT_OK       0
#define EXIT_FAILED   1         /* failure, or problems found by check */
#define EXIT_USAGE    2         /* bad command line */

extern int verbose;

/* Messages on stderr, prefixed "pcachectl: ".  They first erase a
 * progress line if one is shown.
 */
void errmsg (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
void warnmsg (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
void dbgmsg (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
/* Report a bad command line and exit 2. */
void usage_error (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2), noreturn));

/* Messages of the cache engine (pc_set_log).  By default errors are
 * printed as they come; with log_collect (1) they are only kept, for a
 * report.  log_count / log_message give the errors kept so far.
 */
void log_init (void);
void log_collect (int on);
size_t log_count (void);
void log_reset (void);
const char *log_message (size_t i);

/* Open a cache for inspection or writeback: check that the file exists
 * (pcachectl never creates one), learn the backing identity recorded in
 * its superblock unless want_id is given, and call pc_cache_open.
 * Errors are reported; returns 0 or -1 (errno EBUSY if the cache is in
 * use by another process).
 */
int open_cache (const char *path, const char *want_id, pc_cache **out);

/* Is the cache locked by a running nbdkit?  1 or 0 (0 also when it
 * cannot be opened: the open that follows reports that).
 */
int cache_in_use (const char *path);
/* Open a cache that a running nbdkit holds, for reading only: no lock,
 * nothing written (see pc_config.live).
 */
int open_cache_live (const char *path, pc_cache **out);
/* For the commands that only read (info, dump): open the cache, live
 * (with the warning, *live set) if a running nbdkit holds it.
 */
int open_for_reading (const char *path, pc_cache **out, int *live);
/* The warning that what is shown of a live cache may be changing. */
void warn_live (const char *path);

/* The exports (namespaces) of an open cache, by namespace id. */
struct exports {
  uint32_t slots;               /* namespace ids go from 0 to slots - 1 */
  uint32_t count;               /* ids in use */
  char **name;                  /* by id: the export's name, or NULL */
  uint64_t *size, *dirty_bytes; /* by id */
};
int exports_load (pc_cache *c, struct exports *e);
void exports_free (struct exports *e);
/* The id of the export called name: 0, or -1 after "PATH: the cache
 * holds no export 'NAME'".
 */
int exports_find (const struct exports *e, const char *path,
                  const char *name, uint32_t *id);
/* For messages: "'NAME'" (non-printable bytes escaped), or "namespace
 * N (no export)" for an id not in the table.
 */
const char *export_label (const struct exports *e, uint32_t id, char *buf,
                          size_t len);
/* Quote a name for messages: 'NAME', non-printable bytes as \xNN. */
const char *quote_name (const char *name, char *buf, size_t len);

/* After "in use by another process". */
void busy_hint (const char *path);

/* Human readable size: "32.0 MiB". */
const char *human_size (uint64_t n, char *buf, size_t len);
/* Write s as a JSON string literal. */
void json_string (const char *s);
/* Format a uuid as 8-4-4-4-12 hex. */
void format_uuid (const uint8_t uuid[16], char out[37]);

/* raw.c: a read-only mapping of a cache file, for what the engine API
 * does not show (the superblock before opening, the log past its head).
 */
struct raw_cache {
  int fd;
  const uint8_t *base;
  uint64_t size;
  struct pc_sb sb;              /* a valid superblock copy */
  int sb_ok;
  struct pc_geom geom;          /* of sb, if sb_ok */
  int is_file;                  /* a regular file (may have holes) */
};
/* Read a valid copy of the superblock of the open file fd into sb:
 * 1, or 0 if neither copy is valid (sb then holds no superblock).
 */
int raw_read_sb (int fd, struct pc_sb *sb);
int raw_open (const char *path, struct raw_cache *r);
void raw_close (struct raw_cache *r);
const uint8_t *raw_seg (const struct raw_cache *r, uint32_t seg);
/* True if [off, off + len) of a regular file is a hole (reads as 0). */
int raw_is_hole (const struct raw_cache *r, uint64_t off, uint64_t len);
/* A sparse cache file: refuse it (-1, errno EINVAL, reported), for the
 * commands that only read; or allocate it (-1 if that fails, reported),
 * for those that write.  A file that cannot be opened passes: the open
 * that follows reports it.
 */
int raw_refuse_sparse (const char *path);
int raw_allocate (const char *path);

/* Backends for drain: a file or block device (io_uring) or an NBD URI
 * (libnbd).
 */
struct backend {
  struct pc_backend_ops ops;
  struct pc_backend pb;         /* pb.ops = &ops */
  uint64_t size;
  const char *name;
  char last_error[256];         /* last failure, for the report */
  void (*close) (struct backend *b);
};
struct backend *backend_file_open (const char *path, const char *cache_path);
struct backend *backend_nbd_open (const char *uri);
/* The export called export of the NBD server uri, whatever export the
 * URI names (it must name none or that one).
 */
struct backend *backend_nbd_open_export (const char *uri, const char *export);
/* NBD backends opened after this give up on a server that leaves a
 * connection or a request unanswered for seconds (0: they wait).
 */
void backend_nbd_set_timeout (unsigned seconds);
void backend_set_error (struct backend *b, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));
/* A copy of b->last_error, into buf of as many bytes. */
void backend_get_error (struct backend *b, char *buf);

/* progress.c: one status line on stderr, redrawn in place, only when
 * stderr is a terminal.
 */
void progress_init (void);
int progress_enabled (void);
void progress_show (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));
void progress_clear (void);
/* Redraw every 200 ms from a thread with the text fn makes. */
typedef void (*progress_fn) (void *opaque, char *buf, size_t len);
void progress_ticker_start (progress_fn fn, void *opaque);
void progress_ticker_stop (void);
/* Lock around stderr output so the ticker does not interleave. */
void progress_lock (void);
void progress_unlock (void);

/* Commands: argc/argv start at the command name. */
int cmd_info (int argc, char **argv);
int cmd_check (int argc, char **argv);
int cmd_dump (int argc, char **argv);
int cmd_drain (int argc, char **argv);
int cmd_stats (int argc, char **argv);
int cmd_set (int argc, char **argv);
int cmd_checkpoint (int argc, char **argv);
int cmd_hold (int argc, char **argv);
int cmd_release (int argc, char **argv);
int cmd_pause (int argc, char **argv);
int cmd_resume (int argc, char **argv);
int cmd_reset_stats (int argc, char **argv);
int cmd_top (int argc, char **argv);

/* ctlsock.c: one request line, one reply line on a control socket.
 * timeout_ms < 0 waits forever.  Returns a malloc'd reply without its
 * newline, or NULL after reporting the error.
 */
char *ctl_request (const char *sock, const char *req, int timeout_ms);
int is_socket (const char *path);

void usage (int status) __attribute__ ((noreturn));

/* ctlsock.c: the "exports" array of the statistics (one line of JSON
 * from the filter): each object, as text inside s, and its name, both
 * as written and decoded.
 */
struct json_export {
  const char *obj;              /* the object's text, len bytes */
  size_t len;
  const char *name_json;        /* its "name" as a JSON string literal */
  size_t name_json_len;
  char *name;                   /* that decoded (malloc'd), name_len bytes */
  size_t name_len;
};
/* The exports of s in *out (free with stats_exports_free): how many,
 * or -1 if s has no "exports" array or it is malformed.
 */
int stats_exports (const char *s, struct json_export **out);
void stats_exports_free (struct json_export *e, int n);

/* getopt_long for a command, handling -h, -v and errors itself. */
int cmd_getopt (int argc, char **argv, const char *shortopts,
                const struct option *longopts);
/* Require exactly n arguments after the options. */
void want_args (int argc, char **argv, int n, const char *what);

#endif /* PCACHECTL_H */
