/*
** procrun: runs a Lua script with procmon preloaded and a libuv loop that
** runs after the main chunk until nothing is pending. Modelled on lua.c
** (pmain under a protected call, a message handler adding the traceback).
** While a script runs, procrun writes only to stderr: stdout is the
** script's (statuslines and hooks answer through it).
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <uv.h>

#include "procmon.h"
#include "lua-cjson.h"

extern int luaopen_cjson_safe(lua_State *L);

static lua_State *global_L;
static uv_async_t wake;
static volatile sig_atomic_t pending_signal;

static const char usage_text[] =
  "usage: procrun SCRIPT [ARGS...]   run a Lua script (also as a #! line)\n"
  "       procrun -e CODE [ARGS...]  run a chunk of Lua code\n"
  "       procrun gc                 remove expired cache entries\n"
  "       procrun --version | --help\n"
  "The script may require \"procmon\"; the event loop runs after the main\n"
  "chunk until nothing is pending. See README.md.\n";

/* Raised at the next Lua instruction after SIGINT/SIGTERM/SIGHUP. */
static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted by signal %d", (int)pending_signal);
}

static void on_signal(int sig) {
  pending_signal = sig;
  procmon_interrupt(sig);
  lua_sethook(global_L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
  uv_async_send(&wake);
}

/* Wakes a loop blocked in epoll so that the driver sees the signal. */
static void wake_cb(uv_async_t *h) {
  uv_stop(h->loop);
}

static void install_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);  /* a write to a dead child is an error, not death */
}

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

static int is_subcommand(const char *name) {
  return strcmp(name, "gc") == 0;  /* ps and kill come with the monitor */
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
  L = procmon_newstate();
  if (L == NULL || uv_loop_init(&loop) != 0) {
    fputs("procrun: cannot create the Lua state or the event loop\n", stderr);
    return 1;
  }
  global_L = L;
  uv_async_init(&loop, &wake, wake_cb);
  uv_unref((uv_handle_t *)&wake);
  install_signals();
  open_libs(L);
  procmon_set_loop(L, &loop);
  /* With -e, arg[0] is the chunk and arg[1..] (and ...) its arguments. */
  if (script == 1 && is_subcommand(argv[1])) {
    code = run_subcommand(L, argv, argc);
  } else {
    create_arg_table(L, argv, argc, strcmp(argv[script], "-e") == 0 ? script + 1 : script);
    status = run_main(L, argv, argc, script);
    code = exit_status(L, status);
  }
  procmon_kill_children(L);
  global_L = NULL;
  procmon_close(L);
  uv_close((uv_handle_t *)&wake, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return code;
}
