/*
** procrun: runs a Lua script with procmon preloaded and a libuv loop that
** runs after the main chunk until nothing is pending. Modelled on lua.c
** (pmain under a protected call, a message handler adding the traceback).
** While a script runs, procrun writes only to stderr: stdout is the
** script's (statuslines and hooks answer through it).
*/
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <uv.h>

#include "procmon.h"
#include "lua-cjson.h"

extern int luaopen_cjson_safe(lua_State *L);

static const char usage_text[] =
  "usage: procrun SCRIPT [ARGS...]     run a Lua script (also as a #! line)\n"
  "       procrun -e CODE [ARGS...]    run a chunk of Lua code\n"
  "       procrun ps [--all] [--json]  list monitored processes\n"
  "       procrun kill ID [SIGNAL]     signal a monitored process's group\n"
  "       procrun logs ID [-f] [-n N]  print (or follow) a monitored log\n"
  "       procrun gc                   remove expired cache entries and records\n"
  "       procrun help [SUBCOMMAND]    a subcommand's usage\n"
  "       procrun --version | --help\n"
  "The script may require \"procmon\"; the event loop runs after the main\n"
  "chunk until nothing is pending. procrun help SUBCOMMAND; man procrun.\n";

/*
** {=== stop signals ===}
** SIGINT, SIGTERM and SIGHUP stop procrun. The handler only records the
** signal, tells procmon (procmon_interrupt: blocking calls then raise),
** wakes the loop and arms a hook on the thread running Lua, so that a busy
** loop anywhere, coroutines included, gets "interrupted by SIGTERM". What
** the handler may touch depends on the phase procrun is in.
*/
enum {
  PHASE_START,  /* no Lua state yet: record only */
  PHASE_LUA,    /* Lua runs: hooks and the loop's wake handle are valid */
  PHASE_STOP,   /* children are being stopped: a second signal hurries */
  PHASE_CLOSE   /* children gone, the state closing: a second signal exits */
};

/* Lua code may run this long after the signal (cleanup after a pcall that
** caught the interruption); then procrun stops it for good. */
#define CLEANUP_MS 2000

static volatile sig_atomic_t phase, pending_signal, signal_count, returned;
static volatile long long signal_ms;  /* when the first signal came */
static lua_State *main_L;
static lua_State *volatile running_L;  /* main_L or the coroutine it runs */
static uv_async_t wake;

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Ends procrun without running more Lua: the children are stopped (at
** once after a second signal) and the exit status is 128+signal. */
static void hard_stop(lua_State *L) {
  if (phase == PHASE_CLOSE) _exit(128 + pending_signal);  /* stopped already */
  phase = PHASE_STOP;
  procmon_kill_children(L);
  fflush(stdout);
  fflush(stderr);
  _exit(128 + pending_signal);
}

/* The close is bounded as well: a finalizer still running CLEANUP_MS after
** the signal (its children are stopped already) ends procrun. alarm(2) may
** be called from a signal handler. An alarm that was not ours (one set
** before an exec survives it) is ignored. */
static void close_alarm_cb(int sig) {
  (void)sig;
  if (pending_signal) _exit(128 + pending_signal);
}

static void bound_close(void) {
  long long left = CLEANUP_MS - (now_ms() - signal_ms);
  alarm(left < 1000 ? 1 : (unsigned)((left + 999) / 1000));
}

/* Enters the close phase; a signal that came before bounds it from now.
** What the script printed is flushed first (the bound exits with _exit),
** and SIGALRM is caught and unblocked (a mask inherited through exec
** would disable the bound). */
static void start_close(void) {
  struct sigaction sa;
  sigset_t alrm;
  fflush(stdout);
  fflush(stderr);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = close_alarm_cb;
  sigaction(SIGALRM, &sa, NULL);
  sigemptyset(&alrm);
  sigaddset(&alrm, SIGALRM);
  sigprocmask(SIG_UNBLOCK, &alrm, NULL);
  phase = PHASE_CLOSE;
  if (pending_signal) bound_close();
}

/*
** Armed on a thread by the handler (and on every thread resumed after the
** signal). It raises the interruption once, then keeps watching at a low
** rate: Lua that goes on past the cleanup time, or any Lua after a second
** signal, ends procrun.
*/
static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  if (signal_count > 1 || now_ms() - signal_ms >= CLEANUP_MS) hard_stop(L);
  lua_sethook(L, stop_hook, LUA_MASKCOUNT, 1000);
  procmon_raise_interrupt(L);
}

static void arm(lua_State *L) {
  lua_sethook(L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static void on_signal(int sig) {
  int saved_errno = errno;  /* the interrupted code may be about to read it */
  if (pending_signal == 0) {
    signal_ms = now_ms();
    pending_signal = sig;
  } else {
    signal_count = 2;
  }
  procmon_interrupt(sig);
  if (phase == PHASE_LUA) {
    /* lua_sethook may be called from a signal handler (lua.c does). */
    arm(running_L);
    arm(main_L);
    uv_async_send(&wake);
  } else if (phase == PHASE_CLOSE && signal_count > 1) {
    _exit(128 + pending_signal);  /* e.g. a finalizer that never returns */
  } else if (phase == PHASE_CLOSE) {
    bound_close();
  }
  errno = saved_errno;
}

/* Wakes a loop blocked in epoll so that the driver sees the signal. */
static void wake_cb(uv_async_t *h) {
  uv_stop(h->loop);
}

/* Installed without SA_RESTART: a blocking system call (a read, a lock
** wait) returns EINTR, so that its caller sees the signal. */
static void install_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGINT);  /* one handler at a time */
  sigaddset(&sa.sa_mask, SIGTERM);
  sigaddset(&sa.sa_mask, SIGHUP);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);  /* a write to a dead child is an error, not death */
  signal(SIGCHLD, SIG_DFL);  /* an inherited SIG_IGN would discard exit statuses */
}

/* os.exit(n) after a stop signal still exits 128+signal (atexit runs
** after procmon's own exit handler has stopped the children). */
static void exit_status_at_exit(void) {
  if (pending_signal == 0 || returned) return;  /* main's status is right */
  fflush(stdout);
  fflush(stderr);
  _exit(128 + pending_signal);
}

/* {=== coroutines: the hook must reach the one that runs ===} */

/* lcorolib's auxresume, with running_L kept up to date. */
static int resume_tracked(lua_State *L, lua_State *co, int narg) {
  lua_State *prev = running_L;
  int status, nres;
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    return -1;
  }
  lua_xmove(L, co, narg);
  running_L = co;
  if (pending_signal) arm(co);
  status = lua_resume(co, L, narg, &nres);
  running_L = prev;
  if (pending_signal) arm(L);
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_xmove(co, L, 1);  /* the error */
    return -1;
  }
  if (!lua_checkstack(L, nres + 1)) {
    lua_pop(co, nres);
    lua_pushliteral(L, "too many results to resume");
    return -1;
  }
  lua_xmove(co, L, nres);
  return nres;
}

static int co_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  int r;
  luaL_argexpected(L, co, 1, "coroutine");
  r = resume_tracked(L, co, lua_gettop(L) - 1);
  if (r < 0) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, -(r + 1));
  return r + 1;
}

/* lcorolib's auxwrap: errors propagate with the position prepended. */
static int co_wrapped(lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  int r = resume_tracked(L, co, lua_gettop(L));
  if (r >= 0) return r;
  if (lua_status(co) != LUA_OK && lua_status(co) != LUA_YIELD) {
#if LUA_VERSION_RELEASE_NUM >= 50406
    int stat = lua_closethread(co, L);  /* close its tbc variables */
#else
    int stat = lua_resetthread(co);
#endif
    lua_xmove(co, L, 1);
    if (stat == LUA_ERRMEM) return lua_error(L);
  }
  if (lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

static int co_wrap(lua_State *L) {
  lua_State *co;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, co_wrapped, 1);
  return 1;
}

/* os.exit(code, true): Lua's own would lua_close the state and leave the
** allocator's pool to the exit (a leak valgrind reports); procmon_close
** frees both. The code is read as loslib reads it. */
static int exit_closing(lua_State *L) {
  int status = lua_isboolean(L, 1)
                   ? (lua_toboolean(L, 1) ? EXIT_SUCCESS : EXIT_FAILURE)
                   : (int)luaL_optinteger(L, 1, EXIT_SUCCESS);
  procmon_close(L);
  exit(status);
}

/* os.exit: the children are stopped before the state may close, so that
** a signal during the close can end procrun at once. */
static int os_exit_stopping(lua_State *L) {
  phase = PHASE_STOP;
  procmon_kill_children(L);
  start_close();
  if (lua_toboolean(L, 2)) return exit_closing(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 0);
  return 0;
}

static void replace_function(lua_State *L, const char *lib, const char *name,
                             lua_CFunction f) {
  lua_getglobal(L, lib);
  lua_getfield(L, -1, name);
  lua_pushcclosure(L, f, 1);  /* the original as upvalue (some need it) */
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

/* }=== */

static void report(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "procrun: %s\n", msg ? msg : "(error object is not a string)");
  fflush(stderr);
  lua_pop(L, 1);
}

/* Global 'arg' as lua.c builds it: script at 0, interpreter at -1. */
static void create_arg_table(lua_State *L, char **argv, int argc, int script) {
  lua_createtable(L, argc - script - 1, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static void open_libs(lua_State *L) {
  lua_gc(L, LUA_GCGEN, 0, 0);  /* as lua.c: the generational collector */
  luaL_openlibs(L);
  procmon_preload(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_cjson);
  lua_setfield(L, -2, "cjson");
  lua_pushcfunction(L, luaopen_cjson_safe);
  lua_setfield(L, -2, "cjson.safe");
  lua_pop(L, 1);
  replace_function(L, "coroutine", "resume", co_resume);
  replace_function(L, "coroutine", "wrap", co_wrap);
  replace_function(L, "os", "exit", os_exit_stopping);
}

/* Loads the chunk, pushes its arguments, calls it, then runs the loop. */
static int run_main(lua_State *L, char **argv, int argc, int script) {
  int status, n = argc - script - 1;
  const char *name = argv[script];
  if (strcmp(name, "-e") == 0) {
    status = luaL_loadbuffer(L, argv[script + 1], strlen(argv[script + 1]), "=(command line)");
    script++;
    n--;
  } else {
    status = luaL_loadfile(L, name);
  }
  if (status != LUA_OK) return status;
  luaL_checkstack(L, n + 3, "too many arguments to script");
  for (int i = 1; i <= n; i++) lua_pushstring(L, argv[script + i]);
  lua_pushcfunction(L, procmon_msghandler);
  lua_insert(L, -(n + 2));
  status = lua_pcall(L, n, 0, -(n + 2));
  lua_remove(L, status == LUA_OK ? -1 : -2);
  if (status == LUA_OK) status = procmon_run(L);
  return status;
}

/* After a stop signal: the tasks that were waiting in a blocking call get
** the interruption raised there too (procmon.api's _unwind_tasks), so that
** their cleanup runs. Their errors are not reported. */
static void unwind_tasks(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, "procmon.api");
  if (lua_istable(L, -1) && lua_getfield(L, -1, "_unwind_tasks") == LUA_TFUNCTION)
    lua_pcall(L, 0, 0, 0);
  lua_settop(L, 0);
}

static int is_subcommand(const char *name) {
  static const char *const names[] = {"gc", "ps", "kill", "logs", NULL};
  for (int i = 0; names[i]; i++)
    if (strcmp(name, names[i]) == 0) return 1;
  return 0;
}

/* procrun gc [...]: procmon.cli answers; its return value is the exit code. */
static int run_subcommand(lua_State *L, char **argv, int argc) {
  static const char chunk[] = "return require('procmon.cli').main(...)";
  int status = luaL_loadbuffer(L, chunk, sizeof chunk - 1, "=procrun");
  for (int i = 1; status == LUA_OK && i < argc; i++) lua_pushstring(L, argv[i]);
  if (status == LUA_OK) {
    lua_pushcfunction(L, procmon_msghandler);
    lua_insert(L, 1);
    status = lua_pcall(L, argc - 1, 1, 1);
  }
  if (status != LUA_OK) {
    report(L);
    return 1;
  }
  return (int)lua_tointeger(L, -1);
}

static int print_version(void) {
  printf("procrun %s (%s, libuv %s)\n", PM_VERSION, LUA_RELEASE, uv_version_string());
  return 0;
}

static int exit_status(lua_State *L, int status) {
  if (pending_signal) return 128 + pending_signal;
  if (status != LUA_OK) {
    report(L);
    return 1;
  }
  return 0;
}

/* The index of the script (or -e) in argv, or -1 - exit code when the
** command line is answered without running anything. */
static int parse_command_line(int argc, char **argv) {
  int script = 1;
  if (argc < 2) {
    fputs(usage_text, stderr);
    return -1 - 1;
  }
  if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-v") == 0)
    return -1 - print_version();
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    fputs(usage_text, stdout);
    return -1;
  }
  if (strcmp(argv[1], "--") == 0) script = 2;
  if (script >= argc || (strcmp(argv[script], "-e") == 0 && script + 1 >= argc)) {
    fputs(usage_text, stderr);
    return -1 - 1;
  }
  return script;
}

int main(int argc, char **argv) {
  uv_loop_t loop;
  lua_State *L;
  int status, code, script = parse_command_line(argc, argv);
  if (script < 0) return -1 - script;
  atexit(exit_status_at_exit);  /* first registered: runs last */
  L = procmon_newstate();
  if (L == NULL || uv_loop_init(&loop) != 0) {
    fputs("procrun: cannot create the Lua state or the event loop\n", stderr);
    return 1;
  }
  main_L = running_L = L;
  uv_async_init(&loop, &wake, wake_cb);
  uv_unref((uv_handle_t *)&wake);
  install_signals();
  phase = PHASE_LUA;
  open_libs(L);
  procmon_set_loop(L, &loop);
  /* With -e, arg[0] is the chunk and arg[1..] (and ...) its arguments. */
  if (script == 1 && (is_subcommand(argv[1]) || strcmp(argv[1], "help") == 0)) {
    code = run_subcommand(L, argv, argc);
  } else {
    create_arg_table(L, argv, argc, strcmp(argv[script], "-e") == 0 ? script + 1 : script);
    status = run_main(L, argv, argc, script);
    if (pending_signal) unwind_tasks(L);
    code = exit_status(L, status);
  }
  phase = PHASE_STOP;
  procmon_kill_children(L);
  start_close();
  procmon_close(L);
  uv_close((uv_handle_t *)&wake, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  returned = 1;
  return pending_signal ? 128 + pending_signal : code;
}
