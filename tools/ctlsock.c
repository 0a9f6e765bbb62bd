/* SPDX-License-Identifier: BSD-3-Clause */
/* The control socket of a running pcache filter (pcache-control=SOCKET):
 * one request line, one reply line.  Also the stats file it writes
 * (pcache-stats=FILE).  Commands stats, set, checkpoint, hold, release,
 * pause, resume and reset-stats; the "exports" of the statistics.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "pcachectl.h"

/* The statistics of 240 exports named with 4096 bytes that all need
 * escaping take some 6 MiB.
 */
#define MAX_REPLY (16u << 20)
#define STATS_TIMEOUT_MS 10000

int
is_socket (const char *path)
{
  struct stat st;

  return stat (path, &st) == 0 && S_ISSOCK (st.st_mode);
}

/* A connected socket to the filter's control socket, or -1. */
static int
ctl_connect (const char *sock)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  int fd;

  if (strlen (sock) >= sizeof addr.sun_path) {
    errmsg ("%s: socket path too long", sock);
    return -1;
  }
  strcpy (addr.sun_path, sock);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1) {
    errmsg ("socket: %m");
    return -1;
  }
  if (connect (fd, (struct sockaddr *) &addr, sizeof addr) == -1) {
    if (errno == ECONNREFUSED)
      errmsg ("%s: nobody is listening (is nbdkit running with "
              "pcache-control=%s?)", sock, sock);
    else
      errmsg ("%s: %m", sock);
    close (fd);
    return -1;
  }
  return fd;
}

/* Send req as one line. */
static int
ctl_send (int fd, const char *sock, const char *req)
{
  size_t len = strlen (req) + 1;
  char *line;

  if (asprintf (&line, "%s\n", req) == -1) {
    errmsg ("out of memory");
    return -1;
  }
  for (size_t done = 0; done < len;) {
    ssize_t r = send (fd, line + done, len - done, MSG_NOSIGNAL);

    if (r == -1) {
      if (errno == EINTR)
        continue;
      errmsg ("%s: send: %m", sock);
      free (line);
      return -1;
    }
    done += r;
  }
  free (line);
  return 0;
}

/* Make room for one more byte and a terminator in *buf (*cap bytes,
 * got used), doubling it up to MAX_REPLY.
 */
static int
reply_grow (char **buf, size_t *cap, size_t got, const char *sock)
{
  char *n;

  if (got + 1 < *cap)
    return 0;
  if (*cap >= MAX_REPLY) {
    errmsg ("%s: reply too long", sock);
    return -1;
  }
  n = realloc (*buf, *cap * 2);
  if (!n) {
    errmsg ("out of memory");
    return -1;
  }
  *buf = n;
  *cap *= 2;
  return 0;
}

/* Read until the first line break or the end of the connection, waiting
 * at most timeout_ms (-1: for ever) for each piece of it.  Returns the
 * bytes read, terminated, with their length in *got; NULL on failure.
 */
static char *
ctl_receive (int fd, const char *sock, int timeout_ms, size_t *got)
{
  size_t cap = 4096;
  char *buf = malloc (cap);

  *got = 0;
  if (!buf) {
    errmsg ("out of memory");
    return NULL;
  }
  for (;;) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    ssize_t r;
    int pr = poll (&p, 1, timeout_ms);

    if (pr == -1 && errno == EINTR)
      continue;
    if (pr == -1) {
      errmsg ("%s: poll: %m", sock);
      goto fail;
    }
    if (pr == 0) {
      errmsg ("%s: no reply within %d s", sock, timeout_ms / 1000);
      goto fail;
    }
    if (reply_grow (&buf, &cap, *got, sock) == -1)
      goto fail;
    r = read (fd, buf + *got, cap - 1 - *got);
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1) {
      errmsg ("%s: read: %m", sock);
      goto fail;
    }
    if (r == 0)
      break;
    *got += r;
    if (memchr (buf + *got - r, '\n', r))
      break;
  }
  buf[*got] = '\0';
  return buf;

 fail:
  free (buf);
  return NULL;
}

/* See pcachectl.h: connect, send, receive, keep the first line. */
char *
ctl_request (const char *sock, const char *req, int timeout_ms)
{
  size_t got;
  char *buf = NULL;
  int fd = ctl_connect (sock);

  if (fd == -1)
    return NULL;
  if (ctl_send (fd, sock, req) == 0)
    buf = ctl_receive (fd, sock, timeout_ms, &got);
  close (fd);
  if (!buf)
    return NULL;
  buf[strcspn (buf, "\r\n")] = '\0';
  if (got == 0) {
    errmsg ("%s: the connection was closed without a reply", sock);
    free (buf);
    return NULL;
  }
  return buf;
}

/* Print a JSON text one field per line, indented. */
static void
json_pretty (const char *s)
{
  int depth = 0, in_str = 0, esc = 0;

  for (; *s; s++) {
    char ch = *s;

    if (in_str) {
      putchar (ch);
      if (esc)
        esc = 0;
      else if (ch == '\\')
        esc = 1;
      else if (ch == '"')
        in_str = 0;
      continue;
    }
    switch (ch) {
    case '"':
      in_str = 1;
      putchar (ch);
      break;
    case '{': case '[': {
      const char *t = s + 1;

      while (isspace ((unsigned char) *t))
        t++;
      if (*t == '}' || *t == ']') {      /* empty: {} or [] */
        printf ("%c%c", ch, *t);
        s = t;
        break;
      }
      printf ("%c\n%*s", ch, ++depth * 2, "");
      break;
    }
    case '}': case ']':
      depth = depth > 0 ? depth - 1 : 0;
      printf ("\n%*s%c", depth * 2, "", ch);
      break;
    case ',':
      printf (",\n%*s", depth * 2, "");
      break;
    case ':':
      fputs (": ", stdout);
      break;
    case ' ': case '\t': case '\n': case '\r':
      break;
    default:
      putchar (ch);
    }
  }
  putchar ('\n');
}

/* Does path hold a cache's superblock?  A cache file given where
 * statistics are wanted is named as such, and not read whole.
 */
static int
is_cache_file (const char *path)
{
  struct pc_sb sb;
  int fd = open (path, O_RDONLY | O_CLOEXEC), ok;

  if (fd == -1)
    return 0;
  ok = raw_read_sb (fd, &sb);
  close (fd);
  return ok;
}

static char *
read_stats_file (const char *path)
{
  FILE *f = fopen (path, "re");
  char *buf = NULL;
  size_t len = 0, n;

  if (!f) {
    errmsg ("%s: %m", path);
    return NULL;
  }
  buf = malloc (MAX_REPLY + 1);
  if (!buf) {
    fclose (f);
    errmsg ("out of memory");
    return NULL;
  }
  while ((n = fread (buf + len, 1, MAX_REPLY - len, f)) > 0)
    len += n;
  if (ferror (f)) {
    errmsg ("%s: %m", path);
    fclose (f);
    free (buf);
    return NULL;
  }
  fclose (f);
  buf[len] = '\0';
  while (len > 0 && isspace ((unsigned char) buf[len - 1]))
    buf[--len] = '\0';
  return buf;
}

/* The statistics' export called name, printed as stats prints the
 * whole: 0, or -1 reported.
 */
static int
print_export (const char *path, const char *s, const char *name, int pretty)
{
  struct json_export *e;
  int n = stats_exports (s, &e), i, r = -1;

  if (n < 0) {
    errmsg ("%s: the statistics have no \"exports\" (a filter without "
            "per-export statistics?)", path);
    return -1;
  }
  for (i = 0; i < n; i++) {
    char *obj;

    if (e[i].name_len != strlen (name) ||
        memcmp (e[i].name, name, e[i].name_len) != 0)
      continue;
    obj = strndup (e[i].obj, e[i].len);
    if (!obj) {
      errmsg ("out of memory");
      break;
    }
    if (pretty)
      json_pretty (obj);
    else
      printf ("%s\n", obj);
    free (obj);
    r = 0;
    break;
  }
  if (i == n)
    errmsg ("%s: no export '%s' in the statistics", path, name);
  stats_exports_free (e, n);
  return r;
}

int
cmd_stats (int argc, char **argv)
{
  static const struct option opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "verbose", no_argument, NULL, 'v' },
    { "pretty", no_argument, NULL, 'p' },
    { "export", required_argument, NULL, 'e' },
    { NULL, 0, NULL, 0 }
  };
  int pretty = 0, c, r = EXIT_OK;
  const char *path, *s, *export = NULL;
  char *text;

  while ((c = cmd_getopt (argc, argv, ":hvpe:", opts)) != -1)
    if (c == 'p')
      pretty = 1;
    else if (c == 'e')
      export = optarg;
  want_args (argc, argv, 1, "SOCKET or FILE argument");
  path = argv[optind];

  if (is_socket (path))
    text = ctl_request (path, "stats", STATS_TIMEOUT_MS);
  else if (is_cache_file (path)) {
    errmsg ("%s: a cache file, not statistics: 'pcachectl info %s' shows "
            "what it holds; stats reads the pcache-control socket or the "
            "pcache-stats file of a running filter", path, path);
    return EXIT_FAILED;
  }
  else
    text = read_stats_file (path);
  if (!text)
    return EXIT_FAILED;

  s = text;
  while (isspace ((unsigned char) *s))
    s++;
  if (strncmp (s, "error", 5) == 0) {
    errmsg ("%s: %s", path, s);
    r = EXIT_FAILED;
  }
  else if (*s != '{') {
    errmsg ("%s: not pcache statistics (expected a JSON object)", path);
    r = EXIT_FAILED;
  }
  else if (export) {
    if (print_export (path, s, export, pretty) == -1)
      r = EXIT_FAILED;
  }
  else if (pretty)
    json_pretty (s);
  else
    printf ("%s\n", s);
  free (text);
  return r;
}

/* SOCK must be a socket: 0, or -1 reported. */
static int
want_socket (const char *sock)
{
  struct stat st;

  if (is_socket (sock))
    return 0;
  if (stat (sock, &st) == -1)
    errmsg ("%s: %m", sock);
  else
    errmsg ("%s: not a socket (give the pcache-control=SOCKET of a "
            "running nbdkit)", sock);
  return -1;
}

/* Send REQ and report the reply: "ok..." printed, exit 0; an error on
 * standard error after the socket's name (as drain says it), exit 1.
 */
static int
ctl_command (const char *sock, const char *req, int timeout_ms)
{
  char *reply = ctl_request (sock, req, timeout_ms);
  int r;

  if (!reply)
    return EXIT_FAILED;
  if (strncmp (reply, "ok", 2) == 0 &&
      (reply[2] == '\0' || reply[2] == ':' || reply[2] == ' ')) {
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

int
cmd_set (int argc, char **argv)
{
  static const struct option opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "verbose", no_argument, NULL, 'v' },
    { NULL, 0, NULL, 0 }
  };
  const char *sock, *key, *value, *p;
  char *req;
  int r;

  while (cmd_getopt (argc, argv, ":hv", opts) != -1)
    ;
  want_args (argc, argv, 3, "SOCKET, KEY and VALUE arguments");
  sock = argv[optind];
  key = argv[optind + 1];
  value = argv[optind + 2];

  if (!*key)
    usage_error ("empty KEY");
  for (p = key; *p; p++)
    if (isspace ((unsigned char) *p) || iscntrl ((unsigned char) *p))
      usage_error ("KEY '%s' contains white space or control characters",
                   key);
  if (!*value)
    usage_error ("empty VALUE");
  for (p = value; *p; p++)
    if (*p == '\n' || *p == '\r')
      usage_error ("VALUE contains a line break");
  if (want_socket (sock) == -1)
    return EXIT_FAILED;

  if (asprintf (&req, "set %s %s", key, value) == -1) {
    errmsg ("out of memory");
    return EXIT_FAILED;
  }
  /* A change of mode may first drain the cache: no time limit. */
  r = ctl_command (sock, req, -1);
  free (req);
  return r;
}

/* A request of one word, without arguments, with a time limit for the
 * reply (-1: none, for those that wait for write-back).
 */
static int
cmd_word (int argc, char **argv, const char *word, int timeout_ms)
{
  static const struct option opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "verbose", no_argument, NULL, 'v' },
    { NULL, 0, NULL, 0 }
  };

  while (cmd_getopt (argc, argv, ":hv", opts) != -1)
    ;
  want_args (argc, argv, 1, "SOCKET argument");
  if (want_socket (argv[optind]) == -1)
    return EXIT_FAILED;
  return ctl_command (argv[optind], word, timeout_ms);
}

int
cmd_checkpoint (int argc, char **argv)
{
  return cmd_word (argc, argv, "checkpoint", -1);
}

int
cmd_hold (int argc, char **argv)
{
  return cmd_word (argc, argv, "hold", -1);
}

int
cmd_release (int argc, char **argv)
{
  return cmd_word (argc, argv, "release", STATS_TIMEOUT_MS);
}

int
cmd_pause (int argc, char **argv)
{
  return cmd_word (argc, argv, "pause", STATS_TIMEOUT_MS);
}

int
cmd_resume (int argc, char **argv)
{
  return cmd_word (argc, argv, "resume", STATS_TIMEOUT_MS);
}

int
cmd_reset_stats (int argc, char **argv)
{
  return cmd_word (argc, argv, "reset-stats", STATS_TIMEOUT_MS);
}

/* The statistics' JSON, read no further than the exports need: a
 * value's end, a member of an object, a string decoded.
 */
static const char *
json_ws (const char *p)
{
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
    p++;
  return p;
}

/* p at '"': past the closing quote, or NULL. */
static const char *
json_string_end (const char *p)
{
  for (p++; *p && *p != '"'; p++)
    if (*p == '\\' && !*++p)
      return NULL;
  return *p == '"' ? p + 1 : NULL;
}

/* Past the value at p, or NULL if it is malformed. */
static const char *
json_value_end (const char *p)
{
  const char *q;

  p = json_ws (p);
  if (*p == '"')
    return json_string_end (p);
  if (*p == '{' || *p == '[') {
    char close = *p == '{' ? '}' : ']';

    p = json_ws (p + 1);
    if (*p == close)
      return p + 1;
    for (;;) {
      if (close == '}') {
        if (*p != '"' || !(p = json_string_end (p)))
          return NULL;
        p = json_ws (p);
        if (*p++ != ':')
          return NULL;
      }
      if (!(p = json_value_end (p)))
        return NULL;
      p = json_ws (p);
      if (*p == close)
        return p + 1;
      if (*p++ != ',')
        return NULL;
      p = json_ws (p);
    }
  }
  for (q = p; *q && !strchr (",:{}[]\" \t\r\n", *q); q++)
    ;
  return q > p ? q : NULL;
}

/* The value of member key of the object at obj (not of an object
 * inside it), or NULL.
 */
static const char *
json_member (const char *obj, const char *key)
{
  size_t klen = strlen (key);
  const char *p = json_ws (obj), *k;

  if (*p++ != '{')
    return NULL;
  for (p = json_ws (p); *p == '"'; p = json_ws (p)) {
    k = p;
    if (!(p = json_string_end (p)))
      return NULL;
    if ((size_t) (p - k) == klen + 2 && strncmp (k + 1, key, klen) == 0 &&
        *json_ws (p) == ':')
      return json_ws (json_ws (p) + 1);
    p = json_ws (p);
    if (*p++ != ':' || !(p = json_value_end (p)))
      return NULL;
    p = json_ws (p);
    if (*p == ',')
      p = json_ws (p + 1);
  }
  return NULL;
}

/* The string at p ('"') decoded, malloc'd, with its length in *len;
 * \\u00XX is the byte XX (which is how the filter writes bytes of a
 * name that are not UTF-8), a larger code point its UTF-8.  NULL if
 * malformed.
 */
static char *
json_decode (const char *p, size_t *len)
{
  const char *end = json_string_end (p);
  char *out, *o;

  if (!end || !(out = malloc (end - p)))
    return NULL;
  for (o = out, p++; p < end - 1; p++) {
    unsigned v = 0;

    if (*p != '\\') {
      *o++ = *p;
      continue;
    }
    switch (*++p) {
    case 'b': *o++ = '\b'; break;
    case 'f': *o++ = '\f'; break;
    case 'n': *o++ = '\n'; break;
    case 'r': *o++ = '\r'; break;
    case 't': *o++ = '\t'; break;
    case 'u':
      for (int i = 1; i <= 4; i++) {
        if (!isxdigit ((unsigned char) p[i])) {
          free (out);
          return NULL;
        }
        v = v * 16 + (isdigit ((unsigned char) p[i]) ? p[i] - '0'
                      : (tolower ((unsigned char) p[i]) - 'a' + 10));
      }
      p += 4;
      if (v < 0x100)
        *o++ = v;
      else if (v < 0x800) {
        *o++ = 0xc0 | v >> 6;
        *o++ = 0x80 | (v & 0x3f);
      }
      else {
        *o++ = 0xe0 | v >> 12;
        *o++ = 0x80 | ((v >> 6) & 0x3f);
        *o++ = 0x80 | (v & 0x3f);
      }
      break;
    default: *o++ = *p; break;          /* '"', '\\', '/' */
    }
  }
  *o = '\0';
  *len = o - out;
  return out;
}

int
stats_exports (const char *s, struct json_export **out)
{
  const char *p = json_member (s, "exports");
  struct json_export *v = NULL, *nv;
  int n = 0;

  *out = NULL;
  if (!p || *p != '[')
    return -1;
  for (p = json_ws (p + 1); *p == '{'; p = json_ws (p)) {
    const char *end = json_value_end (p), *name = json_member (p, "name");

    if (!end || !name || *name != '"' || !(nv = realloc (v, (n + 1) *
                                                          sizeof *v)))
      goto bad;
    v = nv;
    v[n].obj = p;
    v[n].len = end - p;
    v[n].name_json = name;
    v[n].name_json_len = json_string_end (name) - name;
    if (!(v[n].name = json_decode (name, &v[n].name_len)))
      goto bad;
    n++;
    p = json_ws (end);
    if (*p == ',')
      p = json_ws (p + 1);
  }
  if (*p != ']')
    goto bad;
  *out = v;
  return n;

 bad:
  stats_exports_free (v, n);
  return -1;
}

void
stats_exports_free (struct json_export *e, int n)
{
  for (int i = 0; i < n; i++)
    free (e[i].name);
  free (e);
}
