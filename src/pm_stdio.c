/*
** The child's stdin, stdout and stderr: option parsing, pipes and files,
** capture (read straight into a growing buffer, no intermediate copy),
** chunk and line callbacks, and queued writes to stdin.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "pm_process.h"

#define PM_READ_SIZE (64 * 1024)
#define PM_CAPTURE_MIN (8 * 1024)  /* first capture buffer; doubles as it fills */
#define PM_BIG_PIPE (1024 * 1024)

static const char *const io_names[3] = {"stdin", "stdout", "stderr"};

/* {=== options ===} */

static void parse_file(lua_State *L, int arg, pm_stream_t *s) {
  static const char *const keys[] = {"file", "append", NULL};
  int t = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int ok = 0;
    lua_pop(L, 1);
    for (int i = 0; keys[i] && !ok; i++)
      ok = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), keys[i]) == 0;
    if (!ok)
      luaL_argerror(L, arg, lua_pushfstring(L, "option '%s': unknown key '%s'",
                                            io_names[s->fd], luaL_tolstring(L, -1, NULL)));
  }
  if (lua_getfield(L, t, "file") != LUA_TSTRING)
    luaL_argerror(L, arg, lua_pushfstring(L, "option '%s': 'file' must be a path",
                                          io_names[s->fd]));
  s->path = lua_tostring(L, -1);
  if (strlen(s->path) != lua_rawlen(L, -1))
    luaL_argerror(L, arg, lua_pushfstring(L, "option '%s': 'file' contains a NUL byte",
                                          io_names[s->fd]));
  lua_pop(L, 1);
  s->append = lua_getfield(L, t, "append") != LUA_TNIL && lua_toboolean(L, -1);
  lua_pop(L, 1);
  s->mode = PM_IO_FILE;
}

static int mode_by_name(const char *v) {
  if (strcmp(v, "pipe") == 0) return PM_IO_PIPE;
  if (strcmp(v, "null") == 0) return PM_IO_NULL;
  if (strcmp(v, "inherit") == 0) return PM_IO_INHERIT;
  return PM_IO_NONE;
}

static void parse_stream(lua_State *L, int arg, pm_stream_t *s, int detached) {
  int t = lua_getfield(L, arg, io_names[s->fd]);
  s->mode = s->fd == 0 || detached ? PM_IO_NULL : PM_IO_PIPE;
  if (t == LUA_TSTRING) {
    int m = mode_by_name(lua_tostring(L, -1));
    if (m == PM_IO_NONE)
      luaL_argerror(L, arg, lua_pushfstring(L, "option '%s': \"pipe\", \"inherit\", "
                                            "\"null\" or { file = path } expected%s",
                                            io_names[s->fd], s->fd == 0 ?
                                            " (data to write goes in 'input')" : ""));
    s->mode = m;
  } else if (t == LUA_TTABLE) {
    parse_file(L, arg, s);
  } else if (t != LUA_TNIL) {
    luaL_argerror(L, arg, lua_pushfstring(L, "option '%s': string or table expected, got %s",
                                          io_names[s->fd], luaL_typename(L, -1)));
  }
  lua_pop(L, 1);
  if (detached && (s->mode == PM_IO_PIPE || s->mode == PM_IO_INHERIT))
    luaL_argerror(L, arg, lua_pushfstring(L, "option '%s': a detached process takes "
                                          "only \"null\" or { file = path }", io_names[s->fd]));
}

/* input = data: written to a stdin pipe, then closed. A separate option,
** so that no data (not even "pipe" or "null") is ever taken for a mode. */
static void parse_input(lua_State *L, int arg, pm_stream_t *s, int detached) {
  int t = lua_getfield(L, arg, "input");
  lua_pop(L, 1);
  if (t == LUA_TNIL) return;
  if (t != LUA_TSTRING)
    luaL_argerror(L, arg, lua_pushfstring(L, "option 'input': string expected, got %s",
                                          lua_typename(L, t)));
  if (lua_getfield(L, arg, "stdin") != LUA_TNIL)
    luaL_argerror(L, arg, "option 'input': cannot be combined with 'stdin'");
  lua_pop(L, 1);
  if (detached)
    luaL_argerror(L, arg, "option 'input': a detached process takes no input");
  s->mode = PM_IO_PIPE;
  s->has_data = 1;
}

/* Reads stdin/stdout/stderr, on_stdout/on_stderr and lines into io[]. */
int pm_stdio_parse(lua_State *L, int arg, pm_stream_t io[3], int detached) {
  int lines = pm_opt_bool(L, arg, "lines");
  memset(io, 0, 3 * sizeof *io);
  for (int fd = 0; fd < 3; fd++) {
    pm_stream_t *s = &io[fd];
    s->fd = fd;
    s->child_fd = s->parent_fd = -1;
    parse_stream(L, arg, s, detached);
    if (fd == 0) parse_input(L, arg, s, detached);
    if (fd > 0 && pm_opt_function(L, arg, fd == 1 ? "on_stdout" : "on_stderr")) {
      lua_pop(L, 1);
      if (s->mode != PM_IO_PIPE)
        luaL_argerror(L, arg, lua_pushfstring(L, "option 'on_%s' needs %s = \"pipe\"",
                                              io_names[fd], io_names[fd]));
      s->has_cb = 1;
      s->lines = lines;
    }
  }
  return 0;
}

/* {=== descriptors ===} */

/* open(2) that makes room (pm_fd_pressure) when descriptors run short. */
static int open_fd(const char *path, int flags) {
  int fd = open(path, flags, 0666);
  if (fd < 0 && pm_fd_pressure(-1)) fd = open(path, flags, 0666);
  if (fd >= 0) pm_fd_pressure(fd);
  return fd;
}

static int open_file(pm_stream_t *s) {
  int flags = O_CLOEXEC | (s->fd == 0 ? O_RDONLY : O_WRONLY | O_CREAT |
                                        (s->append ? O_APPEND : O_TRUNC));
  s->child_fd = open_fd(s->path, flags);
  return s->child_fd < 0 ? pm_errno() : 0;
}

/* "null" is opened here, so that the child only has to dup2. */
static int open_null(pm_stream_t *s) {
  s->child_fd = open_fd("/dev/null", O_CLOEXEC | (s->fd == 0 ? O_RDONLY : O_WRONLY));
  return s->child_fd < 0 ? pm_errno() : 0;
}

static int open_pipe(pm_stream_t *s) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0 && !(pm_fd_pressure(-1) && pipe2(fds, O_CLOEXEC) == 0))
    return pm_errno();
  pm_fd_pressure(fds[1]);
  s->child_fd = s->fd == 0 ? fds[0] : fds[1];
  s->parent_fd = s->fd == 0 ? fds[1] : fds[0];
  return 0;
}

static int open_stdio(pm_stream_t *s) {
  switch (s->mode) {
    case PM_IO_FILE: return open_file(s);
    case PM_IO_PIPE: return open_pipe(s);
    case PM_IO_NULL: return open_null(s);
    default: return 0;
  }
}

/* Creates pipes and opens files; 0, or pushes a failure and returns 3. */
int pm_stdio_prepare(lua_State *L, pm_stream_t io[3], const char *what) {
  for (int fd = 0; fd < 3; fd++) {
    pm_stream_t *s = &io[fd];
    int err = open_stdio(s);
    if (err == 0) continue;
    pm_stdio_close_child_ends(io);
    pm_stdio_abort(io);
    if (s->mode == PM_IO_FILE)
      return pm_fail(L, err, "spawn '%s': %s file '%s'", what, io_names[fd], s->path);
    if (s->mode == PM_IO_NULL)
      return pm_fail(L, err, "spawn '%s': %s /dev/null", what, io_names[fd]);
    return pm_fail(L, err, "spawn '%s': %s pipe", what, io_names[fd]);
  }
  return 0;
}

void pm_stdio_close_child_ends(pm_stream_t io[3]) {
  for (int fd = 0; fd < 3; fd++) {
    if (io[fd].child_fd >= 0) close(io[fd].child_fd);
    io[fd].child_fd = -1;
  }
}

void pm_stdio_abort(pm_stream_t io[3]) {
  for (int fd = 0; fd < 3; fd++) {
    if (io[fd].parent_fd >= 0) close(io[fd].parent_fd);
    io[fd].parent_fd = -1;
  }
}

/* {=== delivery to Lua callbacks ===} */

typedef struct chunk {
  pm_stream_t *s;
  const char *data;
  size_t len;
  int final;
} chunk_t;

static void append_carry(pm_stream_t *s, const char *d, size_t n) {
  if (n == 0) return;
  if (s->carry_len + n > s->carry_cap) {
    size_t cap = s->carry_cap ? s->carry_cap : 256;
    while (cap < s->carry_len + n) cap *= 2;
    char *c = (char *)realloc(s->carry, cap);
    if (c == NULL) abort();  /* like Lua itself, we cannot go on without memory */
    s->carry = c;
    s->carry_cap = cap;
  }
  memcpy(s->carry + s->carry_len, d, n);
  s->carry_len += n;
}

/* One call per line; a piece of a longer line gets a second argument,
** true: "the line goes on in the next call". */
static void emit_line(lua_State *L, const char *d, size_t n, int partial) {
  if (!partial && n > 0 && d[n - 1] == '\r') n--;
  lua_pushvalue(L, 2);
  lua_pushlstring(L, d, n);
  if (partial) lua_pushboolean(L, 1);
  lua_call(L, partial ? 2 : 1, 0);
}

/* Where to cut a piece of at most 'max' bytes: before the character that
** byte 'max' belongs to when it is a UTF-8 continuation byte ('next' is
** the byte right after the carry), so that no character is split. */
static size_t piece_end(pm_stream_t *s, size_t max, unsigned char next) {
  size_t k = max;
  for (int i = 0; i < 3 && k > 1; i++) {
    unsigned char b = k < s->carry_len ? (unsigned char)s->carry[k] : next;
    if ((b & 0xC0) != 0x80) break;
    k--;
  }
  return k;
}

/* Emits the first piece of the carry (full: max_line bytes) and keeps the
** few bytes after the cut. */
static void emit_piece(lua_State *L, pm_stream_t *s, unsigned char next) {
  size_t k = piece_end(s, s->carry_len, next), rest = s->carry_len - k;
  char keep[4];
  memcpy(keep, s->carry + k, rest);
  s->carry_len = 0;  /* first: an error in the callback must not replay it */
  emit_line(L, s->carry, k, 1);
  append_carry(s, keep, rest);
}

/*
** Feeds n bytes of the current line; 'complete': they end it. The carry
** never holds more than max_line bytes: a longer line goes out in pieces,
** so that output without newlines ("\r" progress bars, binary data)
** cannot grow memory without bound.
*/
static void feed_line(lua_State *L, pm_stream_t *s, const char *d, size_t n, int complete) {
  size_t max = s->max_line;
  while (s->carry_len + n > max) {
    size_t take = max - s->carry_len;
    append_carry(s, d, take);
    d += take;
    n -= take;
    emit_piece(L, s, (unsigned char)d[0]);
  }
  append_carry(s, d, n);
  if (complete) {
    n = s->carry_len;
    s->carry_len = 0;
    emit_line(L, s->carry, n, 0);
  }
}

/* Splits on '\n'; a partial line waits in the carry for the next chunk. */
static void emit_lines(lua_State *L, chunk_t *c) {
  pm_stream_t *s = c->s;
  /* At EOF data is NULL: NULL + 0 is undefined behaviour (fuzz/lines.c). */
  const char *d = c->data, *end = c->len ? c->data + c->len : c->data;
  while (d < end) {
    const char *nl = (const char *)memchr(d, '\n', (size_t)(end - d));
    if (nl == NULL) {
      feed_line(L, s, d, (size_t)(end - d), 0);
      break;
    }
    if (s->carry_len == 0 && (size_t)(nl - d) <= s->max_line)
      emit_line(L, d, (size_t)(nl - d), 0);  /* the common case, directly */
    else
      feed_line(L, s, d, (size_t)(nl - d), 1);
    d = nl + 1;
  }
  if (c->final && s->carry_len > 0) feed_line(L, s, NULL, 0, 1);
}

/* Runs under pm_call: one protected call per chunk, plain calls per line. */
static int deliver_cb(lua_State *L) {
  chunk_t *c = (chunk_t *)lua_touserdata(L, 1);
  lua_settop(L, 1);
  if (!pm_proc_push_callback(c->s->proc, c->s->fd == 1 ? "on_stdout" : "on_stderr"))
    return 0;
  if (c->s->lines) {
    emit_lines(L, c);
  } else if (c->len > 0) {
    lua_pushlstring(L, c->data, c->len);
    lua_call(L, 1, 0);
  }
  return 0;
}

static void deliver(pm_stream_t *s, const char *data, size_t len, int final) {
  pm_ctx_t *ctx = s->proc->ctx;
  chunk_t c = {s, data, len, final};
  if (ctx->closing || s->proc->box == NULL) return;
  if (len == 0 && !(final && s->carry_len > 0)) return;
  lua_pushcfunction(ctx->L, deliver_cb);
  lua_pushlightuserdata(ctx->L, &c);
  pm_call(ctx, 1);
}

/* {=== reading ===} */

/* Streams that are delivered or dropped share their context's read buffer
** (one per loop, so per thread): libuv calls read_cb right after alloc_cb,
** and read_cb is done with the data when it returns (callbacks cannot run
** the loop). A thousand children with line callbacks then cost no read
** buffers of their own. */

/* A capture that reaches PM_FILE_CAPTURE bytes moves into a memfd when
** the state can adopt it as its Result string (pm_adopt_offset): the bytes
** at that offset in the file, so that the string is made from the same
** pages (src/pm_alloc.c) instead of a second copy. */
#define PM_FILE_CAPTURE ((size_t)1 << 20)

/* A memfd's size counts against RLIMIT_FSIZE (past it: SIGXFSZ, which
** kills by default): with a limit set, captures stay in plain memory. */
static int no_file_limit(void) {
  struct rlimit rl;
  return getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur == RLIM_INFINITY;
}

static int move_to_file(pm_stream_t *s, size_t cap) {
  size_t off = pm_adopt_offset(s->proc->ctx->L);
  int fd;
  char *map;
  if (off == 0 || s->no_file || !no_file_limit() ||
      (fd = memfd_create("procmon-capture", MFD_CLOEXEC)) < 0)
    return 0;
  if (ftruncate(fd, (off_t)(off + cap)) != 0 ||
      (map = mmap(NULL, off + cap, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED) {
    close(fd);
    return 0;
  }
  memcpy(map + off, s->buf, s->len);
  procmon_alloc(NULL, s->buf, s->cap, 0);
  s->in_file = 1;
  s->mfd = fd;
  s->file_off = off;
  s->buf = map + off;
  s->cap = cap;
  return 1;
}

static int grow_file(pm_stream_t *s, size_t cap) {
  size_t off = s->file_off;
  char *map;
  if (ftruncate(s->mfd, (off_t)(off + cap)) != 0) return 0;
  map = (char *)mremap(s->buf - off, off + s->cap, off + cap, MREMAP_MAYMOVE);
  if (map == MAP_FAILED) return 0;
  s->buf = map + off;
  s->cap = cap;
  return 1;
}

static void free_buffer(pm_stream_t *s) {
  if (s->in_file) {
    munmap(s->buf - s->file_off, s->file_off + s->cap);
    close(s->mfd);
    s->in_file = 0;
  } else {
    procmon_alloc(NULL, s->buf, s->cap, 0);
  }
}

/* Back to plain memory when the file cannot grow (out of memory there). */
static void leave_file(pm_stream_t *s) {
  char *b = (char *)procmon_alloc(NULL, NULL, 0, s->cap);
  if (b == NULL) abort();  /* out of memory, as below */
  memcpy(b, s->buf, s->len);
  free_buffer(s);
  s->buf = b;
  s->no_file = 1;
}

static void grow_buffer(pm_stream_t *s, size_t want) {
  size_t cap = s->cap ? s->cap : PM_CAPTURE_MIN;
  char *b;
  while (cap - s->len < want) cap *= 2;
  if (cap == s->cap) return;
  if (s->in_file && grow_file(s, cap)) return;
  if (s->in_file) leave_file(s);
  if (cap >= PM_FILE_CAPTURE && !s->has_cb && !s->discard && move_to_file(s, cap)) return;
  b = (char *)procmon_alloc(NULL, s->buf, s->cap, cap);  /* big: mremap, no copy */
  if (b == NULL) abort();
  s->buf = b;
  s->cap = cap;
}

/* A stream that has carried 1 MiB gets a 1 MiB pipe: 16 times fewer
** wake-ups. Small outputs keep the default, as the per-user total of pipe
** memory is limited; a refusal (EPERM past that limit) changes nothing. */
static void grow_pipe(pm_stream_t *s, size_t n) {
  uv_os_fd_t fd;
  if (s->pipe_grown) return;
  s->seen += n;
  if (s->seen < PM_BIG_PIPE) return;
  s->pipe_grown = 1;
  if (uv_fileno((uv_handle_t *)&s->pipe, &fd) == 0) fcntl(fd, F_SETPIPE_SZ, PM_BIG_PIPE);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  pm_stream_t *s = (pm_stream_t *)((char *)h - offsetof(pm_stream_t, pipe));
  (void)suggested;
  if (s->discard || s->has_cb) {
    pm_ctx_t *ctx = s->proc->ctx;
    if (ctx->read_buf == NULL) ctx->read_buf = (char *)malloc(PM_READ_SIZE);
    /* none: libuv reports UV_ENOBUFS, and the stream ends */
    *buf = uv_buf_init(ctx->read_buf, ctx->read_buf ? PM_READ_SIZE : 0);
  } else {
    size_t room;
    grow_buffer(s, PM_CAPTURE_MIN);
    room = s->cap - s->len;
    if (room > ((size_t)1 << 30)) room = (size_t)1 << 30;  /* uv_buf_t len is 32-bit */
    *buf = uv_buf_init(s->buf + s->len, (unsigned int)room);
  }
}

static void close_stream(pm_stream_t *s) {
  if (!s->open) return;
  s->open = 0;
  if (!uv_is_closing((uv_handle_t *)&s->pipe))
    uv_close((uv_handle_t *)&s->pipe, pm_proc_handle_close_cb);
}

/* EOF (or a read error, or the pipe grace ran out): this stream is done. */
static void stream_eof(pm_stream_t *s) {
  if (s->done) return;
  s->done = 1;
  if (s->has_cb && s->lines) deliver(s, NULL, 0, 1);
  close_stream(s);
}

static void captured(pm_stream_t *s, size_t n) {
  pm_proc_t *p = s->proc;
  s->len += n;
  if (s->len > p->max_buffer) {
    s->len = p->max_buffer;
    s->discard = 1;
    p->truncated = 1;
    pm_proc_terminate(p, "max_buffer");
  }
}

static void read_cb(uv_stream_t *h, ssize_t n, const uv_buf_t *buf) {
  pm_stream_t *s = (pm_stream_t *)((char *)h - offsetof(pm_stream_t, pipe));
  pm_proc_t *p = s->proc;
  if (n > 0) {
    pm_proc_output_activity(p);
    grow_pipe(s, (size_t)n);
    if (s->discard) return;
    if (s->has_cb) deliver(s, buf->base, (size_t)n, 0);
    else captured(s, (size_t)n);
  } else if (n < 0) {
    stream_eof(s);
    pm_proc_stream_done(p);
  }
}

/* Our end of the pipe into the loop: 0 or a libuv error (then the caller
** closes the handle, and the descriptor if the handle did not take it). */
static int open_stream(pm_proc_t *p, pm_stream_t *s) {
  int r = uv_pipe_init(p->ctx->loop, &s->pipe, 0);
  if (r != 0) return r;
  s->pipe.data = p;
  p->open_handles++;
  pm_handle_opened(p->ctx);
  s->open = 1;
  if ((r = uv_pipe_open(&s->pipe, s->parent_fd)) != 0) return r;
  s->parent_fd = -1;
  if (s->fd > 0) r = uv_read_start((uv_stream_t *)&s->pipe, alloc_cb, read_cb);
  return r;
}

static int stdin_send(pm_stream_t *s, const char *data, size_t len);

/* Opens our pipe ends in the loop, starts reading, feeds a stdin string.
** 0, or a libuv error: the child's output could not be read (the caller
** kills it rather than let it run unwatched). */
int pm_stdio_start(pm_proc_t *p, lua_State *L, int opts) {
  for (int fd = 0; fd < 3; fd++) {
    pm_stream_t *s = &p->io[fd];
    int r;
    if (s->mode != PM_IO_PIPE) {
      s->done = 1;
      continue;
    }
    if ((r = open_stream(p, s)) != 0) return r;
  }
  if (p->io[0].has_data) {
    size_t len;
    const char *data;
    lua_getfield(L, opts, "input");
    data = lua_tolstring(L, -1, &len);
    stdin_send(&p->io[0], data, len);  /* EPIPE: the child did not want it */
    lua_pop(L, 1);
    pm_stdio_close_stdin(p);
  }
  return 0;
}

/* At settle: whatever is still open is closed; a last partial line is
** delivered. */
void pm_stdio_finish(pm_proc_t *p) {
  stream_eof(&p->io[1]);
  stream_eof(&p->io[2]);
  close_stream(&p->io[0]);
}

void pm_stdio_push_output(lua_State *L, pm_proc_t *p, int fd) {
  pm_stream_t *s = &p->io[fd];
  if (s->mode != PM_IO_PIPE || s->has_cb) lua_pushnil(L);
  else if (s->in_file) pm_push_adopted(L, s->mfd, s->buf, s->len);
  else lua_pushlstring(L, s->buf ? s->buf : "", s->len);
}

void pm_stdio_free(pm_proc_t *p) {
  for (int fd = 0; fd < 3; fd++) {
    pm_stream_t *s = &p->io[fd];
    free_buffer(s);
    free(s->carry);
    s->buf = s->carry = NULL;
    s->len = s->cap = s->carry_len = s->carry_cap = 0;
  }
}

/* {=== writing to stdin ===} */

typedef struct write_req {
  uv_write_t req;
  char data[];
} write_req_t;

/* p:write waits while this much is queued for a child that does not read:
** memory stays bounded by the mark plus the one write being queued. */
#define PM_WRITE_MARK ((size_t)1 << 20)

int pm_stdio_write_full(pm_proc_t *p) {
  pm_stream_t *s = &p->io[0];
  return s->open && uv_stream_get_write_queue_size((uv_stream_t *)&s->pipe) >= PM_WRITE_MARK;
}

static void write_cb(uv_write_t *req, int status) {
  pm_stream_t *s = (pm_stream_t *)((char *)req->handle - offsetof(pm_stream_t, pipe));
  /* EPIPE: the child is gone; later writes fail with it (sticky) */
  if (status < 0 && status != UV_ECANCELED && s->write_error == 0) s->write_error = status;
  free(req);
  if (!pm_stdio_write_full(s->proc)) pm_proc_drained(s->proc);
}

/* Writes what the pipe takes now and queues the rest (copied). */
static int stdin_send_chunk(pm_stream_t *s, const char *data, size_t len) {
  uv_stream_t *st = (uv_stream_t *)&s->pipe;
  uv_buf_t buf = uv_buf_init((char *)data, (unsigned int)len);
  write_req_t *w;
  int r = 0;
  if (uv_stream_get_write_queue_size(st) == 0) {
    r = uv_try_write(st, &buf, 1);
    if (r < 0 && r != UV_EAGAIN) return r;
    if (r == UV_EAGAIN) r = 0;
    if ((size_t)r == len) return 0;
  }
  w = (write_req_t *)malloc(sizeof *w + len - (size_t)r);
  if (w == NULL) return UV_ENOMEM;
  memcpy(w->data, data + r, len - (size_t)r);
  buf = uv_buf_init(w->data, (unsigned int)(len - (size_t)r));
  if ((r = uv_write(&w->req, st, &buf, 1, write_cb)) != 0) free(w);
  return r;
}

/* In pieces of at most 1 GiB: uv_buf_t lengths are 32-bit. */
static int stdin_send(pm_stream_t *s, const char *data, size_t len) {
  const size_t max = (size_t)1 << 30;
  int r = 0;
  for (size_t off = 0; off < len && r == 0; off += max)
    r = stdin_send_chunk(s, data + off, len - off < max ? len - off : max);
  return r;
}

/* p:_write(data): true; false when the queue is at the mark (nothing is
** written); fail once the child or its stdin is gone. */
int pm_stdio_write(lua_State *L, pm_proc_t *p, const char *data, size_t len) {
  pm_stream_t *s = p ? &p->io[0] : NULL;
  int r;
  if (s && (s->mode != PM_IO_PIPE || s->has_data))
    return luaL_error(L, "stdin is not a pipe (spawn with stdin = \"pipe\")");
  if (s && s->closing_stdin) return luaL_error(L, "stdin is closed");
  if (s == NULL || !s->open || p->settled)
    return pm_fail(L, UV_EPIPE, "write to process");
  if (s->write_error) return pm_fail(L, s->write_error, "write to process %d", (int)p->pid);
  if (pm_stdio_write_full(p)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if ((r = stdin_send(s, data, len)) != 0) return pm_fail(L, r, "write to process %d", (int)p->pid);
  lua_pushboolean(L, 1);
  return 1;
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  pm_stream_t *s = (pm_stream_t *)req->data;
  (void)status;
  free(req);
  close_stream(s);
}

/* Closes stdin once the queued writes are out (EOF for the child). */
int pm_stdio_close_stdin(pm_proc_t *p) {
  pm_stream_t *s = &p->io[0];
  uv_shutdown_t *req;
  if (!s->open || s->closing_stdin) return 0;
  s->closing_stdin = 1;
  req = (uv_shutdown_t *)malloc(sizeof *req);
  if (req == NULL || uv_shutdown(req, (uv_stream_t *)&s->pipe, shutdown_cb) != 0) {
    free(req);
    close_stream(s);
    return 0;
  }
  req->data = s;
  return 0;
}
