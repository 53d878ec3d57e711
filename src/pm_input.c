/*
** procmon.input: reads the JSON payload Claude Code writes on a hook's or
** statusline's stdin. Claude Code has been seen to keep that pipe open
** without EOF, so the read stops at the end of the first complete JSON
** value, at EOF or at a deadline, whichever comes first: poll(2) on the
** descriptor with the time left, never a blocking read that waits for EOF.
** A small scanner follows strings and brackets as the bytes arrive (one
** pass, so a 10 MB payload costs no repeated parsing); the decoding itself
** is procmon.json's, in Lua.
*/
#include <errno.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include "pm_internal.h"

#define INPUT_CHUNK 65536

/* {=== the end of the first JSON value ===} */

typedef struct scan {
  int started;    /* the first non-space byte was seen */
  int depth;      /* open { and [ */
  int in_string;
  int escape;     /* the previous byte in a string was a backslash */
  int scalar;     /* the value is a bare number or literal */
  int done;       /* 1: complete value; -1: cannot start a JSON value */
  size_t end;     /* offset just past the value, once done */
} scan_t;

static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Inside a string: only the closing quote matters. */
static int scan_string(scan_t *s, char c) {
  if (s->escape) s->escape = 0;
  else if (c == '\\') s->escape = 1;
  else if (c == '"') {
    s->in_string = 0;
    return s->depth == 0;  /* a top-level string ends here */
  }
  return 0;
}

/* The first byte decides what kind of value follows. */
static void scan_start(scan_t *s, char c) {
  s->started = 1;
  if (c == '{' || c == '[') s->depth = 1;
  else if (c == '"') s->in_string = 1;
  else if (c == '-' || (c >= '0' && c <= '9') || c == 't' || c == 'f' ||
           c == 'n')
    s->scalar = 1;
  else s->done = -1;
}

/* Feeds bytes [from, to) of 'buf'; sets s->done and s->end when decided. */
static void scan_feed(scan_t *s, const char *buf, size_t from, size_t to) {
  for (size_t i = from; i < to && !s->done; i++) {
    char c = buf[i];
    if (!s->started) {
      if (!is_space(c)) scan_start(s, c);
      if (s->done) s->end = i;
      continue;
    }
    if (s->in_string) {
      if (scan_string(s, c)) s->done = 1, s->end = i + 1;
    } else if (s->scalar) {
      if (is_space(c) || c == ',' || c == '}' || c == ']' || c == '{' ||
          c == '[' || c == '"')
        s->done = 1, s->end = i;
    } else if (c == '"') {
      s->in_string = 1;
    } else if (c == '{' || c == '[') {
      s->depth++;
    } else if ((c == '}' || c == ']') && --s->depth == 0) {
      s->done = 1, s->end = i + 1;
    }
  }
}

/* {=== reading with a deadline ===} */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/*
** Waits until 'fd' is readable or the deadline passes. Returns 1 when
** readable (or at EOF/hang-up: read tells which), 0 at the deadline, or a
** negative libuv error code. A signal that procrun turns into a stop
** ends the wait ("interrupted"); other interruptions just retry.
*/
static int wait_readable(int fd, double deadline) {
  for (;;) {
    double left = deadline - now_ms();
    struct pollfd p = {fd, POLLIN, 0};
    int r;
    if (left <= 0) return 0;
    r = poll(&p, 1, left > 1e9 ? 1000000000 : (int)(left + 0.999));
    if (r > 0) return (p.revents & POLLNVAL) ? UV_EBADF : 1;
    if (r == 0) continue;  /* rounding: check the clock again */
    if (errno != EINTR) return pm_errno();
    if (pm_interrupted()) return UV_ECANCELED;
  }
}

typedef struct reader {
  int fd;
  size_t max;       /* bytes allowed; one more is read to see an excess */
  double deadline;  /* monotonic, in ms */
  scan_t scan;
} reader_t;

/* Reads one chunk into 'b'. Returns READ_DATA, READ_EOF, READ_TIMEOUT,
** or a negative libuv error code. */
enum { READ_DATA, READ_EOF, READ_TIMEOUT };

static int read_chunk(reader_t *r, luaL_Buffer *b) {
  size_t len = luaL_bufflen(b), want = r->max + 1 - len;
  if (want > INPUT_CHUNK) want = INPUT_CHUNK;
  for (;;) {
    int w = wait_readable(r->fd, r->deadline);
    ssize_t n;
    if (w <= 0) return w == 0 ? READ_TIMEOUT : w;
    n = read(r->fd, luaL_prepbuffsize(b, want), want);
    if (n > 0) {
      luaL_addsize(b, (size_t)n);
      scan_feed(&r->scan, luaL_buffaddr(b), len, len + (size_t)n);
      return READ_DATA;
    }
    if (n == 0) return READ_EOF;
    if (errno != EAGAIN && errno != EINTR) return pm_errno();
  }
}

/*
** input.read(max_bytes, timeout [, fd]) -> data, how | fail. 'how' is
** "value" (data is exactly the first JSON value, leading spaces included;
** anything after it is left unread or dropped), "eof", "timeout" (data is
** what came, maybe ""), or "invalid" (the first byte cannot start JSON).
** More than max_bytes is the failure "EFBIG".
*/
static int input_read(lua_State *L) {
  lua_Integer max = luaL_checkinteger(L, 1);
  double timeout = luaL_checknumber(L, 2);
  reader_t r = {(int)luaL_optinteger(L, 3, 0), 0, 0, {0, 0, 0, 0, 0, 0, 0}};
  luaL_Buffer b;
  int st = READ_DATA;
  const char *how;
  luaL_argcheck(L, max >= 0, 1, "max_bytes must be non-negative");
  luaL_argcheck(L, timeout >= 0, 2, "timeout must be non-negative");
  r.max = (size_t)max;
  r.deadline = now_ms() + timeout * 1e3;
  luaL_buffinit(L, &b);
  while (st == READ_DATA && !r.scan.done && luaL_bufflen(&b) <= r.max)
    st = read_chunk(&r, &b);
  if (st < 0) {
    return pm_fail(L, st, st == UV_ECANCELED ? "stdin: interrupted"
                                             : "reading stdin");
  }
  if (r.scan.done == 1) luaL_buffsub(&b, luaL_bufflen(&b) - r.scan.end);
  if (luaL_bufflen(&b) > r.max)
    return pm_fail(L, UV_EFBIG, "stdin: input larger than %I bytes", max);
  how = r.scan.done == 1 ? "value" : r.scan.done ? "invalid"
        : st == READ_EOF ? "eof" : "timeout";
  luaL_pushresult(&b);
  lua_pushstring(L, how);
  return 2;
}

/* input.scan(s) -> how, len: read's verdict on a string already in
** memory ("value", "invalid" or "eof") and the length to keep. */
static int input_scan(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  scan_t sc = {0, 0, 0, 0, 0, 0, 0};
  scan_feed(&sc, s, 0, len);
  if (sc.scalar && !sc.done) sc.done = 1, sc.end = len;  /* ends at EOF */
  lua_pushstring(L, sc.done == 1 ? "value" : sc.done ? "invalid" : "eof");
  lua_pushinteger(L, (lua_Integer)(sc.done == 1 ? sc.end : len));
  return 2;
}

static int input_pid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

int pm_open_input(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"read", input_read},
    {"scan", input_scan},
    {"pid", input_pid},
    {NULL, NULL}
  };
  luaL_newlib(L, funcs);
  return 1;
}
