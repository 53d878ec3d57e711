/*
** The per-lua_State context: one libuv loop, the main thread that every
** callback runs on, the slot where a callback's error waits to be
** re-raised by whatever drove the loop, and the loop's teardown.
*/
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "pm_internal.h"

static const char CTX_KEY[] = "procmon.ctx";
static const char ERROR_KEY[] = "procmon.error";
static const char LAST_ERROR_KEY[] = "procmon.lasterror";

/* Live contexts, for the exit handler: os.exit() must not leave orphans,
** and by then Lua may be closed, so the handler reaches no Lua at all.
** States may live on several threads: the list is locked, and the handler
** stops only the children of the exiting thread's states (another thread's
** may be running; its children get their death signal when it dies). */
static pm_ctx_t *live_contexts;
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;

static void kill_children_at_exit(void) {
  uv_thread_t self = uv_thread_self();
  pthread_mutex_lock(&live_lock);
  for (pm_ctx_t *c = live_contexts; c; c = c->next_live)
    if (!c->closing && uv_thread_equal(&c->thread, &self)) pm_proc_kill_all(c);
  pthread_mutex_unlock(&live_lock);
}

static void track_context(pm_ctx_t *ctx) {
  static int registered;
  ctx->thread = uv_thread_self();
  pthread_mutex_lock(&live_lock);
  if (!registered) registered = atexit(kill_children_at_exit) == 0;
  ctx->next_live = live_contexts;
  live_contexts = ctx;
  pthread_mutex_unlock(&live_lock);
}

static void untrack_context(pm_ctx_t *ctx) {
  pthread_mutex_lock(&live_lock);
  for (pm_ctx_t **pp = &live_contexts; *pp; pp = &(*pp)->next_live) {
    if (*pp == ctx) {
      *pp = ctx->next_live;
      break;
    }
  }
  pthread_mutex_unlock(&live_lock);
}

static int ctx_gc(lua_State *L) {
  pm_ctx_t *ctx = (pm_ctx_t *)lua_touserdata(L, 1);
  pm_ctx_teardown(ctx);
  return 0;
}

static pm_ctx_t *ctx_create(lua_State *L, uv_loop_t *loop) {
  pm_ctx_t *ctx = (pm_ctx_t *)lua_newuserdatauv(L, sizeof(pm_ctx_t), 0);
  memset(ctx, 0, sizeof *ctx);
  if (loop) {
    ctx->loop = loop;
  } else {
    if (uv_loop_init(&ctx->own_loop) != 0) luaL_error(L, "procmon: cannot create the event loop");
    ctx->loop = &ctx->own_loop;
    ctx->owns_loop = 1;
  }
  ctx->no_pidfd = !pm_pidfd_supported();
  lua_pushthread(L);
  ctx->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  if (luaL_newmetatable(L, "procmon.Context")) {
    lua_pushcfunction(L, ctx_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, CTX_KEY);
  track_context(ctx);
  return ctx;
}

/* The context of L's state, created on first use. It is created before any
** object that refers to it, so Lua finalizes it last. */
pm_ctx_t *pm_ctx(lua_State *L) {
  pm_ctx_t *ctx;
  lua_getfield(L, LUA_REGISTRYINDEX, CTX_KEY);
  ctx = (pm_ctx_t *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return ctx ? ctx : ctx_create(L, NULL);
}

void procmon_set_loop(lua_State *L, uv_loop_t *loop) {
  lua_getfield(L, LUA_REGISTRYINDEX, CTX_KEY);
  if (!lua_isnil(L, -1)) luaL_error(L, "procmon_set_loop: the context exists already");
  lua_pop(L, 1);
  ctx_create(L, loop);
}

/* {=== interruption by the host's stop signals ===} */

/* Set from a signal handler: the first signal (it names the exit status),
** how many came (2 means "hurry"), and whether the interruption still has
** to be raised in Lua once (by a blocking call or the host's hook). */
static volatile sig_atomic_t interrupt_signal, interrupt_count, interrupt_unraised;

void procmon_interrupt(int sig) {
  if (interrupt_signal == 0) interrupt_signal = sig;
  if (interrupt_count < 2) interrupt_count++;
  interrupt_unraised = 1;
}

int pm_interrupted(void) { return (int)interrupt_signal; }
int pm_interrupt_count(void) { return (int)interrupt_count; }

/* Raises "interrupted by SIGTERM" at 'level' (luaL_where's numbering). */
int pm_raise_interrupted(lua_State *L, int level) {
  const char *name = pm_signal_name(interrupt_signal);
  interrupt_unraised = 0;
  luaL_where(L, level);
  if (name) lua_pushfstring(L, "interrupted by SIG%s", name);
  else lua_pushfstring(L, "interrupted by signal %d", (int)interrupt_signal);
  lua_concat(L, 2);
  return lua_error(L);
}

int procmon_raise_interrupt(lua_State *L) {
  return interrupt_unraised ? pm_raise_interrupted(L, 1) : 0;
}

void pm_handle_opened(pm_ctx_t *ctx) { ctx->handles++; }
void pm_handle_closed(pm_ctx_t *ctx) { ctx->handles--; }

void pm_owner_add(pm_ctx_t *ctx, pm_owner_t *o, void (*close_all)(pm_owner_t *o)) {
  o->close_all = close_all;
  o->next = ctx->owners;
  if (o->next) o->next->prevp = &o->next;
  o->prevp = &ctx->owners;
  ctx->owners = o;
}

void pm_owner_remove(pm_owner_t *o) {
  if (o->prevp == NULL) return;
  *o->prevp = o->next;
  if (o->next) o->next->prevp = o->prevp;
  o->prevp = NULL;
}

void pm_close_handle(uv_handle_t *h, uv_close_cb cb) {
  if (h->type != UV_UNKNOWN_HANDLE && !uv_is_closing(h)) uv_close(h, cb);
}

/* On a loop of our own every handle is ours: one that no owner closed
** (a bug) is closed without a callback, so that uv_loop_close cannot hang. */
static void walk_close_cb(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void sigchld_close_cb(uv_handle_t *h) {
  ((pm_ctx_t *)((char *)h - offsetof(pm_ctx_t, sigchld)))->sigchld_on = 0;
}

/*
** Kills the children that are still running, closes every procmon handle
** and lets the close callbacks free their memory. Lua is not touched: this
** also runs from lua_close, when the state is half gone. On a host's loop
** only procmon's handles are closed and run: the host's are the host's.
*/
void pm_ctx_teardown(pm_ctx_t *ctx) {
  if (ctx->closing) return;
  ctx->closing = 1;
  untrack_context(ctx);
  pm_proc_kill_all(ctx);
  if (ctx->sigchld_on) uv_close((uv_handle_t *)&ctx->sigchld, sigchld_close_cb);
  for (pm_owner_t *o = ctx->owners, *next; o; o = next) {
    next = o->next;
    o->close_all(o);
  }
  if (ctx->running) return;  /* lua_close from a callback: exit is near */
  /* the handles live in memory Lua frees next: all closed before that */
  while (ctx->handles > 0 || ctx->sigchld_on) uv_run(ctx->loop, UV_RUN_NOWAIT);
  free(ctx->read_buf);
  ctx->read_buf = NULL;
  if (ctx->owns_loop) {
    uv_walk(ctx->loop, walk_close_cb, NULL);
    while (uv_loop_close(ctx->loop) == UV_EBUSY) uv_run(ctx->loop, UV_RUN_ONCE);
  }
}

/* {=== running Lua from callbacks ===} */

static int has_traceback(lua_State *L, int idx);

/* Message handler: the error with its traceback (lua.c's msghandler). */
int procmon_msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg && has_traceback(L, 1)) return 1;  /* once is enough */
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/*
** Calls the function below the 'nargs' arguments on the main thread's
** stack, protected. The first error is kept for pm_raise_pending and the
** loop is stopped so that the driver (wait, loop, procrun) sees it soon.
*/
int pm_call(pm_ctx_t *ctx, int nargs) {
  lua_State *L = ctx->L;
  int base = lua_gettop(L) - nargs, status;
  if (ctx->closing) {
    lua_settop(L, base - 1);
    return LUA_OK;
  }
  lua_pushcfunction(L, procmon_msghandler);
  lua_insert(L, base);
  ctx->depth++;
  status = lua_pcall(L, nargs, 0, base);
  ctx->depth--;
  if (status != LUA_OK) {
    if (!ctx->has_error) {
      ctx->has_error = 1;
      lua_setfield(L, LUA_REGISTRYINDEX, ERROR_KEY);
    } else {
      lua_pop(L, 1);
    }
    uv_stop(ctx->loop);
  }
  lua_remove(L, base);
  return status;
}

/* Re-raises a stored callback error in the caller's thread. */
int pm_raise_pending(lua_State *L, pm_ctx_t *ctx) {
  if (!ctx->has_error) return 0;
  ctx->has_error = 0;
  lua_getfield(L, LUA_REGISTRYINDEX, ERROR_KEY);
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, ERROR_KEY);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, LAST_ERROR_KEY);
  return lua_error(L);
}

/* _raise_traced(msg): raises a message that already carries a traceback
** (a task's), so that no handler appends a second one. */
static int loop_raise_traced(lua_State *L) {
  lua_settop(L, 1);
  lua_pushvalue(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, LAST_ERROR_KEY);
  return lua_error(L);
}

static int has_traceback(lua_State *L, int idx) {
  int same;
  idx = lua_absindex(L, idx);
  lua_getfield(L, LUA_REGISTRYINDEX, LAST_ERROR_KEY);
  same = !lua_isnil(L, -1) && lua_rawequal(L, -1, idx);
  lua_pop(L, 1);
  return same;
}

/* Runs the loop once or until idle; never re-entered. */
int pm_run(lua_State *L, pm_ctx_t *ctx, uv_run_mode mode) {
  int alive;
  if (ctx->running || ctx->depth > 0)
    return luaL_error(L, "cannot block inside a callback (use procmon.task)");
  /* Level 2: the caller of procmon.api's await or loop, the user's line. */
  if (pm_interrupted()) return pm_raise_interrupted(L, 2);
  ctx->running = 1;
  alive = uv_run(ctx->loop, mode);
  ctx->running = 0;
  pm_raise_pending(L, ctx);
  if (pm_interrupted()) return pm_raise_interrupted(L, 2);
  return alive;
}

static int run_protected(lua_State *L) {
  pm_run(L, pm_ctx(L), UV_RUN_DEFAULT);
  return 0;
}

int procmon_run(lua_State *L) {
  int status;
  lua_getfield(L, LUA_REGISTRYINDEX, CTX_KEY);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return LUA_OK;
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, procmon_msghandler);
  lua_pushcfunction(L, run_protected);
  status = lua_pcall(L, 0, 0, -2);
  lua_remove(L, status == LUA_OK ? -1 : -2);
  return status;
}

void procmon_kill_children(lua_State *L) {
  pm_ctx_t *ctx;
  lua_getfield(L, LUA_REGISTRYINDEX, CTX_KEY);
  ctx = (pm_ctx_t *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (ctx) pm_proc_kill_all(ctx);
}

/* {=== Lua functions: loop control ===} */

/* loop(): runs until nothing is pending. */
static int loop_run(lua_State *L) {
  pm_run(L, pm_ctx(L), UV_RUN_DEFAULT);
  return 0;
}

/* _run_once(): one loop iteration; true while something is pending. */
static int loop_run_once(lua_State *L) {
  lua_pushboolean(L, pm_run(L, pm_ctx(L), UV_RUN_ONCE));
  return 1;
}

static int loop_in_callback(lua_State *L) {
  pm_ctx_t *ctx = pm_ctx(L);
  lua_pushboolean(L, ctx->depth > 0 || ctx->running);
  return 1;
}

static int loop_handles(lua_State *L) {
  lua_pushinteger(L, pm_ctx(L)->handles);
  return 1;
}

static int loop_time(lua_State *L) {
  lua_pushnumber(L, pm_wall_time());
  return 1;
}

/* clock(): monotonic seconds (libuv's clock), for measuring durations. */
static int loop_clock(lua_State *L) {
  lua_pushnumber(L, (double)uv_hrtime() / 1e9);
  return 1;
}

/* interrupted(): the name of the stop signal the host received ("TERM"),
** or nil. Lets a Lua wrapper that pcalls user code re-raise. */
static int loop_interrupted(lua_State *L) {
  int sig = pm_interrupted();
  const char *name = pm_signal_name(sig);
  if (sig == 0) lua_pushnil(L);
  else if (name) lua_pushstring(L, name);
  else lua_pushinteger(L, sig);
  return 1;
}

/* _check_interrupted(level): raises the interruption, if any, at 'level'
** above the Lua function that called this (1: its caller). */
static int loop_check_interrupted(lua_State *L) {
  int level = (int)luaL_optinteger(L, 1, 1);
  if (pm_interrupted()) return pm_raise_interrupted(L, level + 1);
  return 0;
}

/* {=== one-shot timers ===} */

typedef struct pm_timer {
  pm_owner_t owner;     /* first field */
  uv_timer_t handle;
  pm_ctx_t *ctx;
  int ref;              /* self-anchor while armed */
} pm_timer_t;

typedef struct { pm_timer_t *t; } timer_box_t;

static void timer_close_cb(uv_handle_t *h) {
  pm_timer_t *t = (pm_timer_t *)h->data;
  pm_owner_remove(&t->owner);
  pm_handle_closed(t->ctx);
  free(t);
}

static void timer_close_all(pm_owner_t *o) {
  pm_close_handle((uv_handle_t *)&((pm_timer_t *)o)->handle, timer_close_cb);
}

/* Disarms: stops, closes, drops the anchor. Safe to call twice. */
static void timer_disarm(lua_State *L, timer_box_t *box) {
  pm_timer_t *t = box->t;
  if (t == NULL) return;
  box->t = NULL;
  uv_close((uv_handle_t *)&t->handle, timer_close_cb);
  if (!t->ctx->closing) luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
}

static void timer_fire_cb(uv_timer_t *h) {
  pm_timer_t *t = (pm_timer_t *)h->data;
  lua_State *L = t->ctx->L;
  timer_box_t *box;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
  box = (timer_box_t *)lua_touserdata(L, -1);
  lua_getiuservalue(L, -1, 1);
  lua_remove(L, -2);
  timer_disarm(L, box);
  pm_call(t->ctx, 0);
}

/* timer(seconds, fn): calls fn once after 'seconds'; t:stop() cancels. */
static int timer_new(lua_State *L) {
  pm_ctx_t *ctx = pm_ctx(L);
  double s = luaL_checknumber(L, 1);
  timer_box_t *box;
  pm_timer_t *t;
  luaL_argcheck(L, s >= 0, 1, "must be a non-negative number of seconds");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  box = (timer_box_t *)lua_newuserdatauv(L, sizeof *box, 1);
  box->t = NULL;
  luaL_setmetatable(L, PM_TIMER_MT);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  t = (pm_timer_t *)malloc(sizeof *t);
  if (t == NULL) return luaL_error(L, "not enough memory");
  t->ctx = ctx;
  uv_timer_init(ctx->loop, &t->handle);
  t->handle.data = t;
  pm_owner_add(ctx, &t->owner, timer_close_all);
  pm_handle_opened(ctx);
  lua_pushvalue(L, -1);
  t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  box->t = t;
  uv_update_time(ctx->loop);  /* the cached loop time may be stale */
  uv_timer_start(&t->handle, timer_fire_cb, pm_ms(s), 0);  /* huge: forever */
  return 1;
}

static int timer_stop(lua_State *L) {
  timer_box_t *box = (timer_box_t *)luaL_checkudata(L, 1, PM_TIMER_MT);
  int was_armed = box->t != NULL;
  timer_disarm(L, box);
  lua_pushboolean(L, was_armed);
  return 1;
}

static int timer_active(lua_State *L) {
  timer_box_t *box = (timer_box_t *)luaL_checkudata(L, 1, PM_TIMER_MT);
  lua_pushboolean(L, box->t != NULL);
  return 1;
}

int pm_open_loop(lua_State *L) {
  static const luaL_Reg timer_methods[] = {
    {"stop", timer_stop}, {"active", timer_active}, {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"loop", loop_run}, {"_run_once", loop_run_once},
    {"_in_callback", loop_in_callback}, {"_handles", loop_handles},
    {"_timer", timer_new}, {"time", loop_time}, {"clock", loop_clock},
    {"interrupted", loop_interrupted}, {"_check_interrupted", loop_check_interrupted},
    {"_raise_traced", loop_raise_traced}, {NULL, NULL}
  };
  luaL_newmetatable(L, PM_TIMER_MT);
  luaL_newlib(L, timer_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_setfuncs(L, funcs, 0);
  return 0;
}
