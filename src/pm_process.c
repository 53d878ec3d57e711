/*
** Child processes: spawn (own process group, no inherited descriptors,
** death signal: pm_spawn.c), the exit watch (a pidfd polled by the loop), timeouts,
** kill escalation, the Result, and the Process methods.
**
** Lifecycle of a record: spawned -> exited (reaped) -> settled (exit seen
** and both output pipes at EOF, or the pipe grace ran out) -> every handle
** closed -> freed. From spawn until freed the Lua object is anchored in the
** registry, so a dropped Process is still reaped and never collected early.
*/
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pm_process.h"

extern char **environ;

/* The default bound of a line given to a line callback. */
#define PM_MAX_LINE ((size_t)1 << 20)

/* How long a grandchild may hold an output pipe after the child exited. */
#define PM_PIPE_GRACE_MS 250

static const char *const spawn_options[] = {
  "cwd", "env", "clear_env", "shell", "stdin", "input", "stdout", "stderr",
  "on_stdout", "on_stderr", "lines", "timeout", "idle_timeout",
  "kill_signal", "kill_grace", "max_buffer", "max_line", "detached", "on_exit", "name",
  NULL
};

/* Uservalue slots of a Process object. */
enum { UV_SPEC = 1, UV_RESULT, UV_WAITERS, UV_DRAIN, UV_COUNT = UV_DRAIN };

/* {=== the record's handles ===} */

static void unlink_proc(pm_proc_t *p);

static void proc_free(pm_proc_t *p) {
  pm_ctx_t *ctx = p->ctx;
  unlink_proc(p);
  pm_owner_remove(&p->owner);
  if (p->pidfd >= 0) close(p->pidfd);  /* a child still alive at lua_close */
  if (p->box) p->box->p = NULL;
  if (!ctx->closing) luaL_unref(ctx->L, LUA_REGISTRYINDEX, p->ref);
  pm_stdio_free(p);
  free(p);
}

/* Close callback of every handle of a record; the last one frees it. */
void pm_proc_handle_close_cb(uv_handle_t *h) {
  pm_proc_t *p = (pm_proc_t *)h->data;
  pm_handle_closed(p->ctx);
  if (--p->open_handles == 0) proc_free(p);
}

static void close_handle(uv_handle_t *h) {
  pm_close_handle(h, pm_proc_handle_close_cb);
}

/* Teardown (pm_owner_t): every handle the record still has open. */
static void proc_close_all(pm_owner_t *o) {
  pm_proc_t *p = (pm_proc_t *)o;
  close_handle((uv_handle_t *)&p->exit_poll);
  close_handle((uv_handle_t *)&p->timeout_timer);
  close_handle((uv_handle_t *)&p->idle_timer);
  close_handle((uv_handle_t *)&p->kill_timer);
  close_handle((uv_handle_t *)&p->grace_timer);
  for (int fd = 0; fd < 3; fd++) close_handle((uv_handle_t *)&p->io[fd].pipe);
}

static void init_timer(pm_proc_t *p, uv_timer_t *t) {
  uv_timer_init(p->ctx->loop, t);
  t->data = p;
  p->open_handles++;
  pm_handle_opened(p->ctx);
}

static void unlink_proc(pm_proc_t *p) {
  if (p->prevp == NULL) return;
  *p->prevp = p->next;
  if (p->next) p->next->prevp = p->prevp;
  p->prevp = NULL;
}

/* {=== signals and kill escalation ===} */

static void signal_group(pm_proc_t *p, int sig) {
  /* The child leads its group; the group outlives a reaped leader only
  ** while members remain, so the id cannot name someone else's group. */
  if (kill(-p->pid, sig) != 0 && !p->exited) kill(p->pid, sig);
}

static void kill_timer_done(pm_proc_t *p) {
  uv_timer_stop(&p->kill_timer);
  if (p->settled) close_handle((uv_handle_t *)&p->kill_timer);
}

/*
** Ticks while procmon stops a child. When the grace is over the group gets
** SIGKILL, even if the leader is gone already, so that members ignoring
** kill_signal do not linger; an emptied group ends the watch early.
*/
static void kill_timer_cb(uv_timer_t *t) {
  pm_proc_t *p = (pm_proc_t *)t->data;
  if (uv_now(p->ctx->loop) >= p->kill_deadline) {
    signal_group(p, SIGKILL);
    kill_timer_done(p);
  } else if (p->exited && kill(-p->pid, 0) != 0) {
    kill_timer_done(p);
  }
}

/* Stops the child on procmon's own account: kill_signal to its group,
** then SIGKILL after kill_grace. The first reason is the one reported. */
void pm_proc_terminate(pm_proc_t *p, const char *reason) {
  uint64_t grace = pm_ms(p->kill_grace);
  if (p->reason == NULL) p->reason = reason;
  if (p->exited || p->killing) return;
  p->killing = 1;
  signal_group(p, p->kill_signal);
  uv_update_time(p->ctx->loop);
  p->kill_deadline = uv_now(p->ctx->loop) + grace;
  uv_timer_start(&p->kill_timer, kill_timer_cb, grace < 50 ? grace : 50, 50);
}

static void timeout_cb(uv_timer_t *t) {
  pm_proc_terminate((pm_proc_t *)t->data, "timeout");
}

static void idle_cb(uv_timer_t *t) {
  pm_proc_terminate((pm_proc_t *)t->data, "idle_timeout");
}

void pm_proc_output_activity(pm_proc_t *p) {
  p->output_reads++;
  if (p->idle_timeout > 0 && !p->exited) uv_timer_again(&p->idle_timer);
}

/* {=== exit, settle, result ===} */

static void push_object(lua_State *L, pm_proc_t *p) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref);
}

/* Pushes the spec's callback 'name' and returns 1, or pushes nothing. */
int pm_proc_push_callback(pm_proc_t *p, const char *name) {
  lua_State *L = p->ctx->L;
  push_object(L, p);
  lua_getiuservalue(L, -1, UV_SPEC);
  if (lua_getfield(L, -1, name) == LUA_TFUNCTION) {
    lua_replace(L, -3);
    lua_pop(L, 1);
    return 1;
  }
  lua_pop(L, 3);
  return 0;
}

/* Signals that ask a process to end (as opposed to USR1, STOP, CONT...). */
static int ends_process(pm_proc_t *p, int sig) {
  return sig == SIGTERM || sig == SIGKILL || sig == SIGINT || sig == SIGHUP ||
         sig == SIGQUIT || sig == p->kill_signal;
}

/* "killed" once p:kill asked it to end, even if it then exited by itself
** (a TERM handler that calls exit); "signal" for a death nobody here asked. */
static const char *exit_reason(pm_proc_t *p) {
  if (p->reason) return p->reason;
  if (p->user_signal && ends_process(p, p->user_signal)) return "killed";
  if (p->status_lost) return "unknown";
  if (WIFSIGNALED(p->status))
    return WTERMSIG(p->status) == p->user_signal ? "killed" : "signal";
  return "exit";
}

static void set_number(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

/* Pushes the Result table; 'spec' is the index of the object's spec table. */
static void push_result(lua_State *L, pm_proc_t *p, int spec) {
  const char *reason = exit_reason(p);
  int exited = !p->status_lost && WIFEXITED(p->status), code = WEXITSTATUS(p->status);
  lua_createtable(L, 0, 16);
  lua_pushinteger(L, p->pid);
  lua_setfield(L, -2, "pid");
  lua_getfield(L, spec, "cmd");
  lua_setfield(L, -2, "cmd");
  lua_getfield(L, spec, "name");
  lua_setfield(L, -2, "name");
  if (exited) {
    lua_pushinteger(L, code);
    lua_setfield(L, -2, "code");
  } else if (!p->status_lost && WIFSIGNALED(p->status)) {
    pm_push_signal_name(L, WTERMSIG(p->status));
    lua_setfield(L, -2, "signal");
  }
  /* Success only: a child that exits 0 when its timeout's TERM arrives
  ** was still stopped for a reason. */
  lua_pushboolean(L, exited && code == 0 && strcmp(reason, "exit") == 0);
  lua_setfield(L, -2, "ok");
  pm_stdio_push_output(L, p, 1);
  lua_setfield(L, -2, "stdout");
  pm_stdio_push_output(L, p, 2);
  lua_setfield(L, -2, "stderr");
  lua_pushstring(L, reason);
  lua_setfield(L, -2, "reason");
  lua_pushboolean(L, strcmp(reason, "timeout") == 0 || strcmp(reason, "idle_timeout") == 0);
  lua_setfield(L, -2, "timed_out");
  lua_pushboolean(L, p->truncated);
  lua_setfield(L, -2, "truncated");
  set_number(L, "started_at", p->started_at);
  set_number(L, "ended_at", p->ended_at);
  set_number(L, "duration", p->ended_at - p->started_at);
}

/* Calls on_exit(result), then each waiter(result), each protected. */
static void notify(pm_proc_t *p, int obj) {
  lua_State *L = p->ctx->L;
  int n;
  lua_getiuservalue(L, obj, UV_SPEC);
  if (lua_getfield(L, -1, "on_exit") == LUA_TFUNCTION) {
    lua_getiuservalue(L, obj, UV_RESULT);
    pm_call(p->ctx, 1);
  } else {
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (lua_getiuservalue(L, obj, UV_WAITERS) != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  /* Taken off first: a woken waiter may cancel itself (_off_settle). */
  lua_pushnil(L);
  lua_setiuservalue(L, obj, UV_WAITERS);
  n = (int)lua_rawlen(L, -1);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    lua_getiuservalue(L, obj, UV_RESULT);
    pm_call(p->ctx, 1);
  }
  lua_pop(L, 1);
}

/* Builds and publishes the Result, then calls on_exit and the waiters
** (each protected on its own). Runs under pm_call itself: an error while
** building it (out of memory) must not longjmp across uv_run. */
static int publish_cb(lua_State *L) {
  pm_proc_t *p = (pm_proc_t *)lua_touserdata(L, 1);
  int obj;
  push_object(L, p);
  obj = lua_gettop(L);
  lua_getiuservalue(L, obj, UV_SPEC);
  push_result(L, p, obj + 1);
  lua_setiuservalue(L, obj, UV_RESULT);
  lua_pop(L, 1);
  pm_stdio_free(p);
  notify(p, obj);
  return 0;
}

/* Exit seen and output drained: publish the Result, close everything. */
static void proc_settle(pm_proc_t *p) {
  lua_State *L = p->ctx->L;
  p->settled = 1;
  close_handle((uv_handle_t *)&p->timeout_timer);
  close_handle((uv_handle_t *)&p->idle_timer);
  close_handle((uv_handle_t *)&p->grace_timer);
  if (!uv_is_active((uv_handle_t *)&p->kill_timer))
    close_handle((uv_handle_t *)&p->kill_timer);
  pm_stdio_finish(p);
  if (p->ctx->closing || p->box == NULL) return;
  lua_pushcfunction(L, publish_cb);
  lua_pushlightuserdata(L, p);
  pm_call(p->ctx, 1);
}

void pm_proc_stream_done(pm_proc_t *p) {
  if (p->exited && !p->settled && p->io[1].done && p->io[2].done) proc_settle(p);
}

/* Has an output pipe still being read bytes or its EOF waiting for us? */
static int output_waiting(pm_proc_t *p) {
  struct pollfd fds[2];
  nfds_t n = 0;
  for (int i = 1; i <= 2; i++) {
    uv_os_fd_t fd;
    if (p->io[i].open && !p->io[i].done &&
        uv_fileno((uv_handle_t *)&p->io[i].pipe, &fd) == 0) {
      fds[n].fd = fd;
      fds[n++].events = POLLIN;
    }
  }
  return n > 0 && poll(fds, n, 0) > 0;
}

/*
** The grace is for a grandchild that holds a pipe open, not for a busy
** loop: the exit may be reaped (SIGCHLD) late in an iteration, after the
** poll that would have read the child's last output, and slow callbacks
** after it make the timer due before the next poll. So while output is
** waiting that the loop has not read since the exit, the grace starts
** over: libuv polls between two timer runs, and a grandchild that keeps
** writing still ends the wait at the next expiry.
*/
static void pipe_grace_cb(uv_timer_t *t) {
  pm_proc_t *p = (pm_proc_t *)t->data;
  if (p->settled) return;
  if (p->output_reads == p->grace_reads && output_waiting(p)) {
    uv_timer_start(&p->grace_timer, pipe_grace_cb, PM_PIPE_GRACE_MS, 0);
    return;
  }
  proc_settle(p);
}

/* {=== exit watch: a pidfd in the loop, or SIGCHLD where there is none ===} */

int pm_pidfd_supported(void) {
  int fd;
  if (getenv("PROCMON_NO_PIDFD")) return 0;  /* to test the SIGCHLD path */
  fd = pidfd_open(getpid(), 0);
  if (fd < 0) return 0;  /* old kernel, seccomp, valgrind */
  close(fd);
  return 1;
}

static void sigchld_ref(pm_proc_t *p, int hold) {
  pm_ctx_t *ctx = p->ctx;
  if (p->holds_ref == hold) return;
  p->holds_ref = hold;
  ctx->sigchld_refs += hold ? 1 : -1;
  if (ctx->sigchld_refs > 0) uv_ref((uv_handle_t *)&ctx->sigchld);
  else uv_unref((uv_handle_t *)&ctx->sigchld);
}

/* Keeps the loop alive for this child (a waited-on detached one too). */
static void watch_ref(pm_proc_t *p) {
  if (p->pidfd >= 0) uv_ref((uv_handle_t *)&p->exit_poll);
  else sigchld_ref(p, 1);
}

/* Nobody waits any more: a detached child stops keeping the loop alive. */
static void watch_unref(pm_proc_t *p) {
  if (!p->detached || p->exited) return;
  if (p->pidfd >= 0) uv_unref((uv_handle_t *)&p->exit_poll);
  else sigchld_ref(p, 0);
}

static void unwatch_exit(pm_proc_t *p) {
  if (p->pidfd >= 0) {
    close_handle((uv_handle_t *)&p->exit_poll);
    close(p->pidfd);  /* the poll stopped watching it in uv_close */
    p->pidfd = -1;
  } else {
    sigchld_ref(p, 0);
  }
}

static void proc_exited(pm_proc_t *p, int status);

static void try_reap(pm_proc_t *p) {
  int st = 0;
  pid_t r;
  do r = waitpid(p->pid, &st, WNOHANG); while (r < 0 && errno == EINTR);
  if (r == 0) return;
  p->status_lost = r < 0;  /* ECHILD: the status is unknown, not "exit 0" */
  proc_exited(p, st);
}

static void exit_poll_cb(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  try_reap((pm_proc_t *)h->data);
}

static void sigchld_cb(uv_signal_t *h, int sig) {
  pm_ctx_t *ctx = (pm_ctx_t *)((char *)h - offsetof(pm_ctx_t, sigchld));
  (void)sig;
  for (pm_proc_t *p = ctx->procs, *next; p; p = next) {
    next = p->next;
    if (p->pidfd < 0 && !p->exited) try_reap(p);
  }
}

/* Without pidfd, SIGCHLD must be watched before the first child starts:
** 0, or a libuv error (then nothing is spawned). The context's teardown
** closes the handle. */
static int sigchld_start(pm_ctx_t *ctx) {
  int r;
  if (!ctx->no_pidfd || uv_is_active((uv_handle_t *)&ctx->sigchld)) return 0;
  if (!ctx->sigchld_on) {
    if ((r = uv_signal_init(ctx->loop, &ctx->sigchld)) != 0) return r;
    ctx->sigchld.data = NULL;
    ctx->sigchld_on = 1;
  }
  if ((r = uv_signal_start(&ctx->sigchld, sigchld_cb, SIGCHLD)) != 0) return r;
  uv_unref((uv_handle_t *)&ctx->sigchld);
  return 0;
}

/* 0, or a libuv error: the child cannot be watched (and must not run). */
static int watch_exit(pm_proc_t *p) {
  int r;
  if (p->pidfd < 0) {
    if (!p->detached) sigchld_ref(p, 1);
    return 0;
  }
  if ((r = uv_poll_init(p->ctx->loop, &p->exit_poll, p->pidfd)) != 0) return r;
  p->exit_poll.data = p;
  p->open_handles++;
  pm_handle_opened(p->ctx);
  if ((r = uv_poll_start(&p->exit_poll, UV_READABLE, exit_poll_cb)) != 0) return r;
  /* A detached child does not keep the loop alive (unless waited on). */
  if (p->detached) uv_unref((uv_handle_t *)&p->exit_poll);
  return 0;
}

static void proc_exited(pm_proc_t *p, int status) {
  p->exited = 1;
  p->status = status;
  p->ended_at = pm_wall_time();
  unwatch_exit(p);
  uv_timer_stop(&p->timeout_timer);
  uv_timer_stop(&p->idle_timer);
  /* A running kill_timer goes on: the group may hold members that ignore
  ** kill_signal; they get SIGKILL when the grace is over, or when the
  ** loop ends first (teardown), as it need not wait for them. */
  if (uv_is_active((uv_handle_t *)&p->kill_timer)) uv_unref((uv_handle_t *)&p->kill_timer);
  if (p->io[1].done && p->io[2].done) {
    proc_settle(p);
  } else {
    p->grace_reads = p->output_reads;
    uv_timer_start(&p->grace_timer, pipe_grace_cb, PM_PIPE_GRACE_MS, 0);
  }
}


/* {=== spawn: command, environment ===} */

typedef struct spawn_spec {
  const char *file;     /* argv[0], or the resolved path */
  const char *cwd;
  const char *path;     /* the child's PATH, searched here */
  char **argv, **envp;
  int shell, detached, clear_env, kill_signal;
  int stage;            /* PM_SPAWN_* step of a spawn failure */
  double timeout, idle_timeout, kill_grace;
  size_t max_buffer, max_line;
} spawn_spec_t;

/* Keeps 'idx' alive in the anchor table at 3 and returns its string. */
static const char *anchor_string(lua_State *L, int idx) {
  const char *s = lua_tostring(L, idx);
  lua_pushvalue(L, idx);
  lua_rawseti(L, 3, (lua_Integer)lua_rawlen(L, 3) + 1);
  return s;
}

static void build_argv(lua_State *L, spawn_spec_t *sp) {
  size_t n;
  if (sp->shell) {
    luaL_argexpected(L, lua_type(L, 1) == LUA_TSTRING, 1, "string (with shell = true)");
    sp->argv = (char **)pm_scratch(L, 4 * sizeof(char *));
    sp->argv[0] = (char *)"/bin/sh";
    sp->argv[1] = (char *)"-c";
    sp->argv[2] = (char *)pm_check_c_string(L, 1, 1, "command");
    sp->argv[3] = NULL;
    return;
  }
  luaL_argexpected(L, lua_type(L, 1) == LUA_TTABLE, 1, "table (argv; a string needs shell = true)");
  n = lua_rawlen(L, 1);
  luaL_argcheck(L, n > 0, 1, "empty command");
  sp->argv = (char **)pm_scratch(L, (n + 1) * sizeof(char *));
  for (size_t i = 1; i <= n; i++) {
    int t = lua_rawgeti(L, 1, (lua_Integer)i);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      luaL_argerror(L, 1, lua_pushfstring(L, "command element %d: string expected, got %s",
                                          (int)i, luaL_typename(L, -1)));
    if (t == LUA_TSTRING && strlen(lua_tostring(L, -1)) != lua_rawlen(L, -1))
      luaL_argerror(L, 1, lua_pushfstring(L, "command element %d contains a NUL byte", (int)i));
    sp->argv[i - 1] = (char *)anchor_string(L, -1);
    lua_pop(L, 1);
  }
  sp->argv[n] = NULL;
}

static int env_overridden(lua_State *L, int env, const char *entry) {
  const char *eq = strchr(entry, '=');
  int t;
  if (eq == NULL) return 1;
  lua_pushlstring(L, entry, (size_t)(eq - entry));
  t = lua_rawget(L, env);
  lua_pop(L, 1);
  return t != LUA_TNIL;
}

/* A variable name the child can see: not empty, no '=', no NUL byte. */
static int env_name(lua_State *L, int idx) {
  size_t len;
  const char *k = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &len) : NULL;
  return k && len > 0 && strlen(k) == len && strchr(k, '=') == NULL;
}

/* The child's environment: the current one with 'env' merged on top (a
** false value removes a variable), or 'env' alone with clear_env. */
static void build_env(lua_State *L, spawn_spec_t *sp) {
  size_t n = 0, k = 0;
  int env = lua_gettop(L);
  if (!sp->clear_env) while (environ[n]) n++;
  lua_pushnil(L);
  while (lua_next(L, env)) {
    n++;
    lua_pop(L, 1);
  }
  sp->envp = (char **)pm_scratch(L, (n + 1) * sizeof(char *));
  for (size_t i = 0; !sp->clear_env && environ[i]; i++)
    if (!env_overridden(L, env, environ[i])) sp->envp[k++] = environ[i];
  lua_pushnil(L);
  while (lua_next(L, env)) {
    if (!env_name(L, -2))
      luaL_argerror(L, 2, "option 'env': names must be non-empty strings "
                          "without '=' or NUL bytes");
    if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
      if (strlen(lua_tostring(L, -1)) != lua_rawlen(L, -1))
        luaL_argerror(L, 2, lua_pushfstring(L, "option 'env': the value of '%s' "
                                            "contains a NUL byte", lua_tostring(L, -2)));
      lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
      sp->envp[k++] = (char *)anchor_string(L, -1);
      lua_pop(L, 1);
    } else if (!(lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
      luaL_argerror(L, 2, "option 'env': values must be strings, numbers or false");
    }
    lua_pop(L, 1);
  }
  sp->envp[k] = NULL;
  lua_getfield(L, env, "PATH");
  if (lua_type(L, -1) == LUA_TSTRING) sp->path = anchor_string(L, -1);
  else if (sp->clear_env) sp->path = "/usr/local/bin:/usr/bin:/bin";
  lua_pop(L, 1);
}

/* Finds 'file' in the child's PATH, here: the child only calls execve.
** Leaves sp->file NULL when no directory has it (ENOENT, as execvp). */
static void resolve_path(lua_State *L, spawn_spec_t *sp) {
  const char *dir = sp->path, *end;
  if (strchr(sp->file, '/')) return;
  if (dir == NULL && (dir = getenv("PATH")) == NULL) dir = "/bin:/usr/bin";
  for (; *sp->file && *dir; dir = *end ? end + 1 : end) {
    end = strchr(dir, ':');
    if (end == NULL) end = dir + strlen(dir);
    if (end > dir) lua_pushlstring(L, dir, (size_t)(end - dir));
    else lua_pushliteral(L, ".");
    lua_pushfstring(L, "%s/%s", lua_tostring(L, -1), sp->file);
    if (access(lua_tostring(L, -1), X_OK) == 0) {
      sp->file = anchor_string(L, -1);
      lua_pop(L, 2);
      return;
    }
    lua_pop(L, 2);
  }
  sp->file = NULL;
}

/* {=== spawn: options ===} */

static void parse_scalars(lua_State *L, spawn_spec_t *sp) {
  sp->cwd = pm_opt_string(L, 2, "cwd", NULL);
  if (lua_getfield(L, 2, "cwd") == LUA_TSTRING) pm_check_c_string(L, -1, 2, "option 'cwd'");
  lua_pop(L, 1);
  sp->shell = pm_opt_bool(L, 2, "shell");
  sp->detached = pm_opt_bool(L, 2, "detached");
  sp->clear_env = pm_opt_bool(L, 2, "clear_env");
  sp->timeout = pm_opt_seconds(L, 2, "timeout", 0);
  sp->idle_timeout = pm_opt_seconds(L, 2, "idle_timeout", 0);
  sp->kill_grace = pm_opt_seconds(L, 2, "kill_grace", 2);
  sp->kill_signal = pm_opt_signal(L, 2, "kill_signal", "TERM");
  sp->max_buffer = pm_opt_size(L, 2, "max_buffer", (size_t)64 << 20);
  /* Line callbacks keep at most this much of a line: 1 MiB, or less when
  ** max_buffer asks for less. */
  sp->max_line = pm_opt_size(L, 2, "max_line", sp->max_buffer < PM_MAX_LINE ? sp->max_buffer : PM_MAX_LINE);
  if (sp->max_line == 0) {
    lua_getfield(L, 2, "max_line");
    luaL_argcheck(L, lua_isnil(L, -1), 2, "option 'max_line': must be at least 1 byte");
    lua_pop(L, 1);
    sp->max_line = 1;
  }
  pm_opt_string(L, 2, "name", NULL);
  pm_opt_bool(L, 2, "lines");
}

/* The spec table (uservalue 1): what the Result and callbacks need. */
static void push_spec(lua_State *L) {
  static const char *const keys[] = {"on_exit", "on_stdout", "on_stderr", NULL};
  lua_createtable(L, 0, 5);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "cmd");
  for (int i = 0; keys[i]; i++)
    if (pm_opt_function(L, 2, keys[i])) lua_setfield(L, -2, keys[i]);
  lua_getfield(L, 2, "name");
  lua_setfield(L, -2, "name");
}

static pm_proc_box_t *new_box(lua_State *L) {
  pm_proc_box_t *box = (pm_proc_box_t *)lua_newuserdatauv(L, sizeof *box, UV_COUNT);
  box->p = NULL;
  box->pid = 0;
  box->closed = 0;
  luaL_setmetatable(L, PM_PROCESS_MT);
  push_spec(L);
  lua_setiuservalue(L, -2, UV_SPEC);
  return box;
}

/* {=== spawn: the system call ===} */

/* Returns 0 or a libuv error; sp->stage says which step failed. */
static int do_spawn(lua_State *L, spawn_spec_t *sp, pm_stream_t io[3], pid_t *pid, int *pidfd) {
  pm_spawn_t r;
  int err;
  memset(&r, 0, sizeof r);
  r.file = sp->file;
  r.argv = sp->argv;
  r.envp = sp->envp ? sp->envp : environ;
  r.cwd = sp->cwd;
  for (int fd = 0; fd < 3; fd++) r.fds[fd] = io[fd].child_fd;
  r.detached = sp->detached;
  r.want_pidfd = !pm_ctx(L)->no_pidfd;
  err = pm_spawn(&r);
  sp->stage = r.stage;
  *pid = r.pid;
  *pidfd = r.pidfd;
  return err;
}

/* Says whether the command or the working directory was the problem. */
static int spawn_failure(lua_State *L, spawn_spec_t *sp, int err) {
  if (sp->stage == PM_SPAWN_CWD)
    return pm_fail(L, err, "spawn '%s': cwd '%s'", sp->argv[0], sp->cwd);
  return pm_fail(L, err, "spawn '%s'", sp->argv[0]);
}

/* {=== spawn: the record ===} */

static void start_timers(pm_proc_t *p) {
  uv_update_time(p->ctx->loop);  /* timeouts count from now, not the last tick */
  init_timer(p, &p->timeout_timer);
  init_timer(p, &p->idle_timer);
  init_timer(p, &p->kill_timer);
  init_timer(p, &p->grace_timer);
  if (p->timeout > 0 && pm_ms(p->timeout) < PM_FOREVER_MS)
    uv_timer_start(&p->timeout_timer, timeout_cb, pm_ms(p->timeout), 0);
  if (p->idle_timeout > 0 && pm_ms(p->idle_timeout) < PM_FOREVER_MS) {
    uint64_t ms = pm_ms(p->idle_timeout);
    uv_timer_start(&p->idle_timer, idle_cb, ms, ms);
  }
}

/* The record for a spawned child; the Process object is on top. */
static pm_proc_t *new_record(lua_State *L, spawn_spec_t *sp, pm_stream_t io[3],
                             pid_t pid, int pidfd) {
  pm_ctx_t *ctx = pm_ctx(L);
  pm_proc_t *p = (pm_proc_t *)calloc(1, sizeof *p);
  if (p == NULL) return NULL;
  p->ctx = ctx;
  pm_owner_add(ctx, &p->owner, proc_close_all);
  p->box = (pm_proc_box_t *)lua_touserdata(L, -1);
  p->pid = pid;
  p->pidfd = pidfd;
  p->detached = sp->detached;
  p->kill_signal = sp->kill_signal;
  p->kill_grace = sp->kill_grace;
  p->timeout = sp->timeout;
  p->idle_timeout = sp->idle_timeout;
  p->max_buffer = sp->max_buffer;
  p->started_at = pm_wall_time();
  memcpy(p->io, io, sizeof p->io);
  for (int i = 0; i < 3; i++) {
    p->io[i].proc = p;
    p->io[i].max_line = sp->max_line;
  }
  lua_pushvalue(L, -1);
  p->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  p->box->p = p;
  p->box->pid = pid;
  p->next = ctx->procs;
  if (p->next) p->next->prevp = &p->next;
  p->prevp = &ctx->procs;
  ctx->procs = p;
  return p;
}

static void reap_now(pid_t pid) {
  int st;
  kill(-pid, SIGKILL);
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
}

/* Validates cmd and opts into sp and io; raises on misuse. Leaves the
** anchors, argv and envp scratch on the stack above the arguments. */
static void parse_spawn_args(lua_State *L, spawn_spec_t *sp, pm_stream_t io[3]) {
  memset(sp, 0, sizeof *sp);
  lua_settop(L, 2);
  if (lua_isnil(L, 2)) {
    lua_newtable(L);
    lua_replace(L, 2);
  }
  luaL_checktype(L, 2, LUA_TTABLE);
  pm_check_options(L, 2, spawn_options);
  parse_scalars(L, sp);
  lua_newtable(L);                       /* 3: anchors for C strings */
  build_argv(L, sp);                     /* 4 */
  sp->file = sp->argv[0];
  if (lua_getfield(L, 2, "env") != LUA_TNIL || sp->clear_env) {
    if (lua_isnil(L, -1)) lua_newtable(L), lua_replace(L, -2);
    luaL_argcheck(L, lua_istable(L, -1), 2, "option 'env': table expected");
    build_env(L, sp);                    /* 6 */
  }
  resolve_path(L, sp);
  pm_stdio_parse(L, 2, io, sp->detached);
}

/* A child that cannot be watched or read: killed and reaped now; the
** record goes with its last handle (or now, when it opened none). */
static int abandon(lua_State *L, pm_proc_t *p, int err, const char *what) {
  reap_now(p->pid);
  p->exited = p->settled = 1;
  p->box->p = NULL;
  p->box = NULL;
  pm_stdio_abort(p->io);
  sigchld_ref(p, 0);
  proc_close_all(&p->owner);
  if (p->open_handles == 0) proc_free(p);
  return pm_fail(L, err, "spawn '%s': watching the child", what);
}

/* The child runs: watch it; on failure kill it and return fail. */
static int start_watching(lua_State *L, spawn_spec_t *sp, pm_stream_t io[3], pid_t pid,
                          int pidfd) {
  pm_ctx_t *ctx = pm_ctx(L);
  pm_proc_t *p = NULL;
  int err;
  if (pidfd < 0 && !ctx->no_pidfd) pidfd = pidfd_open(pid, 0);  /* no CLONE_PIDFD */
  if ((pidfd < 0 && !ctx->no_pidfd) || (p = new_record(L, sp, io, pid, pidfd)) == NULL) {
    err = pidfd < 0 ? pm_errno() : UV_ENOMEM;
    if (pidfd >= 0) close(pidfd);
    reap_now(pid);
    pm_stdio_abort(io);
    return pm_fail(L, err, "spawn '%s': watching the child", sp->argv[0]);
  }
  if ((err = watch_exit(p)) != 0) return abandon(L, p, err, sp->argv[0]);
  start_timers(p);
  if ((err = pm_stdio_start(p, L, 2)) != 0) return abandon(L, p, err, sp->argv[0]);
  return 1;
}

/* spawn(cmd, [opts]) -> Process | nil, msg, code */
static int proc_spawn(lua_State *L) {
  spawn_spec_t sp;
  pm_stream_t io[3];
  pid_t pid;
  int r, pidfd;
  if (pm_interrupted()) return pm_raise_interrupted(L, 1);  /* no new child */
  parse_spawn_args(L, &sp, io);
  new_box(L);
  if (sp.file == NULL) return pm_fail(L, UV_ENOENT, "spawn '%s'", sp.argv[0]);
  if ((r = sigchld_start(pm_ctx(L))) != 0)
    return pm_fail(L, r, "spawn '%s': watching SIGCHLD", sp.argv[0]);
  if ((r = pm_stdio_prepare(L, io, sp.argv[0])) != 0) return r;
  r = do_spawn(L, &sp, io, &pid, &pidfd);
  pm_stdio_close_child_ends(io);
  if (r != 0) {
    pm_stdio_abort(io);
    return spawn_failure(L, &sp, r);
  }
  return start_watching(L, &sp, io, pid, pidfd);
}

/* {=== Process methods ===} */

static pm_proc_box_t *check_box(lua_State *L) {
  return (pm_proc_box_t *)luaL_checkudata(L, 1, PM_PROCESS_MT);
}

/* The live record of an open Process; raises on a closed one. */
static pm_proc_t *check_open(lua_State *L) {
  pm_proc_box_t *box = check_box(L);
  if (box->closed) luaL_error(L, "attempt to use a closed process");
  return box->p;
}

/* p:kill([signal]) -> true | nil, msg, code. Signals the child's group. */
static int proc_kill(lua_State *L) {
  pm_proc_t *p = check_open(L);
  int sig = pm_signal_arg(L, 2, "TERM");
  if (p == NULL || p->exited)
    return pm_fail(L, UV_ESRCH, "kill %d", (int)check_box(L)->pid);
  if (sig != 0) p->user_signal = sig;
  if (kill(-p->pid, sig) != 0 && kill(p->pid, sig) != 0)
    return pm_fail(L, pm_errno(), "kill %d", (int)p->pid);
  lua_pushboolean(L, 1);
  return 1;
}

static int proc_running(lua_State *L) {
  pm_proc_t *p = check_box(L)->p;
  lua_pushboolean(L, p != NULL && !p->exited);
  return 1;
}

/* p:_write(data) -> true | false (the queue is full: nothing written) |
** nil, msg, code (EPIPE once the child is gone). procmon.api's p:write
** waits for the queue to drain on false. */
static int proc_write(lua_State *L) {
  pm_proc_t *p = check_open(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  return pm_stdio_write(L, p, data, len);
}

/* Appends the function at 2 to the list in user value uv of the Process
** at 1 (made on first use). */
static void append_callback(lua_State *L, int uv) {
  if (lua_getiuservalue(L, 1, uv) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, uv);
  }
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 1);
}

/* p:_on_drain(fn) -> true: fn() once the stdin queue is below the mark or
** the pipe is gone; false (fn not kept) when that is the case now. */
static int proc_on_drain(lua_State *L) {
  pm_proc_t *p = check_open(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (p == NULL || !pm_stdio_write_full(p)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  append_callback(L, UV_DRAIN);
  p->drain_waiting = 1;
  lua_pushboolean(L, 1);
  return 1;
}

/* Called by pm_stdio.c when the stdin queue went below the mark or the
** pipe closed: wakes the writers waiting in p:write. */
void pm_proc_drained(pm_proc_t *p) {
  lua_State *L = p->ctx->L;
  int obj, n;
  if (!p->drain_waiting || p->ctx->closing || p->box == NULL) return;
  p->drain_waiting = 0;
  push_object(L, p);
  obj = lua_gettop(L);
  lua_getiuservalue(L, obj, UV_DRAIN);
  lua_pushnil(L);
  lua_setiuservalue(L, obj, UV_DRAIN);
  n = lua_istable(L, -1) ? (int)lua_rawlen(L, -1) : 0;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    pm_call(p->ctx, 0);
  }
  lua_settop(L, obj - 1);
}

static int proc_close_stdin(lua_State *L) {
  pm_proc_t *p = check_open(L);
  if (p && p->io[0].mode != PM_IO_PIPE)
    return luaL_error(L, "stdin is not a pipe (spawn with stdin = \"pipe\")");
  if (p) pm_stdio_close_stdin(p);
  lua_pushboolean(L, 1);
  return 1;
}

/* p:_result() -> the Result once settled, else nil. */
static int proc_result(lua_State *L) {
  check_box(L);
  lua_getiuservalue(L, 1, UV_RESULT);
  return 1;
}

/* p:_on_settle(fn): fn(result) once the Result is published. */
static int proc_on_settle(lua_State *L) {
  pm_proc_box_t *box = check_box(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_argcheck(L, box->p && !box->p->settled, 1, "process already settled");
  append_callback(L, UV_WAITERS);
  /* Someone waits: a detached child now keeps the loop alive. */
  if (!box->p->exited) watch_ref(box->p);
  return 0;
}

/* p:_off_settle(fn): fn waits no more (its wait timed out). A wait polled
** in a loop then leaves nothing behind, and a detached child that nobody
** waits for stops keeping the loop alive again. */
static int proc_off_settle(lua_State *L) {
  pm_proc_box_t *box = check_box(L);
  lua_Integer n, i;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (lua_getiuservalue(L, 1, UV_WAITERS) != LUA_TTABLE) return 0;
  n = (lua_Integer)lua_rawlen(L, 3);
  for (i = 1; i <= n; i++) {
    int same = (lua_rawgeti(L, 3, i), lua_rawequal(L, -1, 2));
    lua_pop(L, 1);
    if (same) break;
  }
  if (i > n) return 0;
  for (; i < n; i++) {
    lua_rawgeti(L, 3, i + 1);
    lua_rawseti(L, 3, i);
  }
  lua_pushnil(L);
  lua_rawseti(L, 3, n);
  if (n == 1 && box->p) watch_unref(box->p);
  return 0;
}

/* _check_spawn(cmd, opts): raises as spawn would on misuse, starts
** nothing (run_all checks every job before it starts the first). */
static int proc_check_spawn(lua_State *L) {
  spawn_spec_t sp;
  pm_stream_t io[3];
  parse_spawn_args(L, &sp, io);
  return 0;
}

/*
** __close and __gc: one idempotent function. Closing a running process
** stops it (kill_signal, then SIGKILL after kill_grace); the loop reaps it.
** A record is anchored until freed, so __gc (called with one argument,
** where __close gets two) meets a live record only when lua_close
** finalizes everything: the record is then orphaned, and the context's
** teardown, which Lua finalizes last, kills and frees it without Lua.
*/
static int proc_close(lua_State *L) {
  pm_proc_box_t *box = check_box(L);
  pm_proc_t *p = box->p;
  int finalizing = lua_gettop(L) == 1;
  if (p && finalizing) {
    p->box = NULL;  /* detached children live on; the others meet teardown */
    box->p = NULL;
  } else if (p && !box->closed && !p->exited && !p->ctx->closing) {
    pm_proc_terminate(p, "killed");
  }
  box->closed = 1;
  return 0;
}

static int proc_index(lua_State *L) {
  pm_proc_box_t *box = check_box(L);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "pid") == 0) {
    lua_pushinteger(L, box->pid);
    return 1;
  }
  if (strcmp(k, "name") == 0) {
    lua_getiuservalue(L, 1, UV_SPEC);
    lua_getfield(L, -1, "name");
    return 1;
  }
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "methods");
  lua_getfield(L, -1, k);
  return 1;
}

static int proc_tostring(lua_State *L) {
  pm_proc_box_t *box = check_box(L);
  const char *state = box->p == NULL || box->p->exited ? "exited" : "running";
  lua_pushfstring(L, "procmon.Process (pid %d, %s)", (int)box->pid, state);
  return 1;
}

/* active() -> the running children of this state, newest first. */
static int proc_active(lua_State *L) {
  pm_ctx_t *ctx = pm_ctx(L);
  int i = 0;
  lua_newtable(L);
  for (pm_proc_t *p = ctx->procs; p; p = p->next) {
    if (p->exited || p->box == NULL) continue;
    push_object(L, p);
    lua_rawseti(L, -2, ++i);
  }
  return 1;
}

/* {=== teardown ===} */

static void sleep_ms(long ms) {
  struct timespec ts = {0, ms * 1000000L};
  nanosleep(&ts, NULL);
}

static int reap_some(pm_ctx_t *ctx) {
  int left = 0, st;
  for (pm_proc_t *p = ctx->procs; p; p = p->next) {
    if (p->detached || p->exited) continue;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == p->pid || (r < 0 && errno == ECHILD)) {
      p->exited = 1;
      p->status = st;
    } else {
      left++;
    }
  }
  return left;
}

/*
** Stops every non-detached child without the loop (it may be running, or
** gone): kill_signal to each group, up to the longest kill_grace for them
** to exit, then SIGKILL and reap. Used on errors, signals, os.exit and at
** lua_close, so that procrun leaves no orphans.
*/
void pm_proc_kill_all(pm_ctx_t *ctx) {
  double grace = 0, deadline;
  for (pm_proc_t *p = ctx->procs; p; p = p->next) {
    if (p->detached) continue;
    signal_group(p, p->exited ? SIGKILL : p->kill_signal);
    if (!p->exited && p->kill_grace > grace) grace = p->kill_grace;
  }
  deadline = pm_wall_time() + grace;
  /* A second stop signal to the host cuts the grace short. */
  while (reap_some(ctx) > 0 && pm_wall_time() < deadline && pm_interrupt_count() < 2)
    sleep_ms(5);
  for (pm_proc_t *p = ctx->procs; p; p = p->next) {
    if (p->detached) continue;
    signal_group(p, SIGKILL);
    if (!p->exited) {
      while (waitpid(p->pid, &p->status, 0) < 0 && errno == EINTR) {}
      p->exited = 1;
    }
  }
}

/* With SIGCHLD ignored (inherited SIG_IGN, or SA_NOCLDWAIT), the kernel
** discards the children's exit statuses: waitpid fails with ECHILD and a
** pidfd may name a child already gone. procmon needs them, so the default
** disposition comes back (a host's own handler stays, without the flag). */
static void restore_sigchld(void) {
  struct sigaction old;
  if (sigaction(SIGCHLD, NULL, &old) != 0) return;
  if (old.sa_handler == SIG_IGN) {
    signal(SIGCHLD, SIG_DFL);
  } else if (old.sa_flags & SA_NOCLDWAIT) {
    old.sa_flags &= ~SA_NOCLDWAIT;
    sigaction(SIGCHLD, &old, NULL);
  }
}

/* A write to a child that exited must be an EPIPE failure, not the death
** of the host (a stock lua5.4 keeps SIGPIPE's default). A host's own
** handler is left alone. */
static void ignore_sigpipe(void) {
  struct sigaction old;
  if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
    signal(SIGPIPE, SIG_IGN);
}

int pm_open_process(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"kill", proc_kill}, {"running", proc_running}, {"_write", proc_write},
    {"_on_drain", proc_on_drain},
    {"close_stdin", proc_close_stdin}, {"_result", proc_result},
    {"_on_settle", proc_on_settle}, {"_off_settle", proc_off_settle}, {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__index", proc_index}, {"__close", proc_close}, {"__gc", proc_close},
    {"__tostring", proc_tostring}, {NULL, NULL}
  };
  luaL_newmetatable(L, PM_PROCESS_MT);
  luaL_setfuncs(L, meta, 0);
  luaL_newlib(L, methods);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "methods");
  lua_setfield(L, -3, "_Process");  /* procmon.api adds the Lua methods */
  lua_pop(L, 1);
  lua_pushcfunction(L, proc_spawn);
  lua_setfield(L, -2, "spawn");
  lua_pushcfunction(L, proc_active);
  lua_setfield(L, -2, "active");
  lua_pushcfunction(L, proc_check_spawn);
  lua_setfield(L, -2, "_check_spawn");
  pm_fd_limit_init();  /* the limit children get back */
  ignore_sigpipe();
  restore_sigchld();
  return 0;
}
