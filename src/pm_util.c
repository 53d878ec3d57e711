/*
** Shared helpers: the one failure return, option readers, signal names.
*/
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "pm_internal.h"

/*
** The one failure return of the API (Lua's "fail" convention, luv's error
** shape): nil, "<context>: ENAME: message", "ENAME". 'uverr' is a negative
** libuv error code (UV_ENOENT), which on Unix is -errno.
*/
int pm_fail(lua_State *L, int uverr, const char *fmt, ...) {
  va_list ap;
  luaL_pushfail(L);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_pushfstring(L, ": %s: %s", uv_err_name(uverr), uv_strerror(uverr));
  lua_concat(L, 2);
  lua_pushstring(L, uv_err_name(uverr));
  return 3;
}

/* errno as a libuv error code, for pm_fail. */
int pm_errno(void) {
  return uv_translate_sys_error(errno);
}

double pm_wall_time(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* {=== signals ===} */

static const struct { const char *name; int num; } signals[] = {
  {"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"ILL", SIGILL},
  {"TRAP", SIGTRAP}, {"ABRT", SIGABRT}, {"BUS", SIGBUS}, {"FPE", SIGFPE},
  {"KILL", SIGKILL}, {"USR1", SIGUSR1}, {"SEGV", SIGSEGV}, {"USR2", SIGUSR2},
  {"PIPE", SIGPIPE}, {"ALRM", SIGALRM}, {"TERM", SIGTERM},
  {"CHLD", SIGCHLD}, {"CONT", SIGCONT}, {"STOP", SIGSTOP}, {"TSTP", SIGTSTP},
  {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU}, {"URG", SIGURG}, {"XCPU", SIGXCPU},
  {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF},
  {"WINCH", SIGWINCH}, {"IO", SIGIO}, {"PWR", SIGPWR}, {"SYS", SIGSYS},
  {NULL, 0}
};

const char *pm_signal_name(int sig) {
  for (int i = 0; signals[i].name; i++)
    if (signals[i].num == sig) return signals[i].name;
  return NULL;
}

/* Pushes the name of any signal: "TERM", the real-time ones as "RTMIN",
** "RTMIN+2" ... "RTMAX" (their numbers vary with the C library), and the
** few left (glibc's reserved 32 and 33) as "SIG32". */
void pm_push_signal_name(lua_State *L, int sig) {
  const char *name = pm_signal_name(sig);
  if (name) lua_pushstring(L, name);
  else if (sig == SIGRTMIN) lua_pushliteral(L, "RTMIN");
  else if (sig == SIGRTMAX) lua_pushliteral(L, "RTMAX");
  else if (sig > SIGRTMIN && sig < SIGRTMAX) lua_pushfstring(L, "RTMIN+%d", sig - SIGRTMIN);
  else lua_pushfstring(L, "SIG%d", sig);
}

/* "N" or "+N"/"-N" (with 'sign') after a prefix: N, or -1. */
static int small_number(const char *s, int sign) {
  int n = 0;
  if (sign) {
    if (*s != sign) return *s == '\0' ? 0 : -1;
    s++;
  }
  if (*s == '\0') return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9' || n > 99) return -1;
    n = n * 10 + (*s - '0');
  }
  return n;
}

/* The names pm_push_signal_name gives that are not in the table. */
static int numbered_signal(const char *name) {
  int n = -1, rt = 1;
  if (strncasecmp(name, "RTMIN", 5) == 0 && (n = small_number(name + 5, '+')) >= 0)
    n += SIGRTMIN;
  else if (strncasecmp(name, "RTMAX", 5) == 0 && (n = small_number(name + 5, '-')) >= 0)
    n = SIGRTMAX - n;
  else
    n = small_number(name, 0), rt = 0;  /* "SIG32", as pushed above */
  if (n < (rt ? SIGRTMIN : 1) || n > SIGRTMAX) return -1;
  return n;
}

static int signal_by_name(const char *name) {
  if (strncasecmp(name, "SIG", 3) == 0) name += 3;
  for (int i = 0; signals[i].name; i++)
    if (strcasecmp(signals[i].name, name) == 0) return signals[i].num;
  return numbered_signal(name);
}

/* A signal given as a name ("TERM", "SIGTERM") or a number (0 probes). */
int pm_signal_arg(lua_State *L, int arg, const char *def) {
  int sig;
  if (lua_isnoneornil(L, arg) && def) return signal_by_name(def);
  if (lua_type(L, arg) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, arg);
    luaL_argcheck(L, n >= 0 && n < 65, arg, "invalid signal number");
    return (int)n;
  }
  sig = signal_by_name(luaL_checkstring(L, arg));
  if (sig < 0)
    luaL_argerror(L, arg, lua_pushfstring(L, "unknown signal '%s'",
                                          lua_tostring(L, arg)));
  return sig;
}

/* Option 'key' of the table at 'arg' as a signal to send (not 0); the
** one named 'def' when absent. Raises naming the option. */
int pm_opt_signal(lua_State *L, int arg, const char *key, const char *def) {
  int t = lua_getfield(L, arg, key), sig = -1;
  if (t == LUA_TNIL) {
    sig = signal_by_name(def);
  } else if (t == LUA_TNUMBER) {
    lua_Integer n = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : -1;
    if (n >= 1 && n <= SIGRTMAX) sig = (int)n;
  } else if (t == LUA_TSTRING) {
    sig = signal_by_name(lua_tostring(L, -1));
  } else {
    luaL_argerror(L, arg, lua_pushfstring(L, "option '%s': signal name or number "
                                          "expected, got %s", key, luaL_typename(L, -1)));
  }
  if (sig < 0)
    luaL_argerror(L, arg, lua_pushfstring(L, "option '%s': unknown signal '%s'", key,
                                          luaL_tolstring(L, -1, NULL)));
  lua_pop(L, 1);
  return sig;
}

/* {=== options ===} */

/* Raises on any key of the table at 'arg' that is not in 'allowed'. */
void pm_check_options(lua_State *L, int arg, const char *const allowed[]) {
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    int ok = 0;
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -1);
      for (int i = 0; allowed[i] && !ok; i++) ok = strcmp(k, allowed[i]) == 0;
    }
    if (!ok) {
      luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s'",
                                            luaL_tolstring(L, -1, NULL)));
    }
  }
}

static int opt_get(lua_State *L, int arg, const char *key, int type,
                   const char *tname) {
  int t = lua_getfield(L, arg, key);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (t != type)
    luaL_argerror(L, arg, lua_pushfstring(L, "option '%s': %s expected, got %s",
                                          key, tname, luaL_typename(L, -1)));
  return 1;
}

/* Seconds as libuv milliseconds, rounded. A duration too long to count
** (math.huge, 1e17) saturates at PM_FOREVER_MS, about 146 million years:
** converting it as is would overflow (undefined behaviour), and the cap
** leaves room to add it to a loop time. */
uint64_t pm_ms(double seconds) {
  double ms = seconds * 1000 + 0.5;
  if (!(ms > 0)) return 0;
  if (ms >= (double)PM_FOREVER_MS) return PM_FOREVER_MS;
  return (uint64_t)ms;
}

/* A non-negative duration in seconds (math.huge: forever); 'def' when
** absent. */
double pm_opt_seconds(lua_State *L, int arg, const char *key, double def) {
  double v;
  if (!opt_get(L, arg, key, LUA_TNUMBER, "number")) return def;
  v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (!(v >= 0))
    luaL_argerror(L, arg, lua_pushfstring(L, "option '%s': must be a "
                                          "non-negative number of seconds",
                                          key));
  return v;
}

/* A byte count (max_buffer); 'def' when absent. */
size_t pm_opt_size(lua_State *L, int arg, const char *key, size_t def) {
  double v;
  if (!opt_get(L, arg, key, LUA_TNUMBER, "number")) return def;
  v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (!(v >= 0) || v > (double)(SIZE_MAX / 2) || v != (double)(size_t)v)
    luaL_argerror(L, arg, lua_pushfstring(L, "option '%s': must be a "
                                          "non-negative whole number of bytes", key));
  return (size_t)v;
}

/* Leaves nothing on the stack: the string stays alive in the options table. */
const char *pm_opt_string(lua_State *L, int arg, const char *key,
                          const char *def) {
  const char *s;
  if (!opt_get(L, arg, key, LUA_TSTRING, "string")) return def;
  s = lua_tostring(L, -1);
  lua_pop(L, 1);
  return s;
}

/* The string at 'idx' goes to the system as a C string: a NUL byte in it
** would silently cut it, so it raises instead, naming 'what'. */
const char *pm_check_c_string(lua_State *L, int idx, int arg, const char *what) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  if (s && strlen(s) != len)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s contains a NUL byte", what));
  return s;
}

int pm_opt_bool(lua_State *L, int arg, const char *key) {
  int v;
  if (!opt_get(L, arg, key, LUA_TBOOLEAN, "boolean")) return 0;
  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Pushes the function and returns 1, or pushes nothing and returns 0. */
int pm_opt_function(lua_State *L, int arg, const char *key) {
  return opt_get(L, arg, key, LUA_TFUNCTION, "function");
}

/*
** Scratch memory owned by the GC (Lua's UBox idea): it is freed even when
** an error is raised halfway, so no error path needs a manual cleanup.
*/
void *pm_scratch(lua_State *L, size_t size) {
  return lua_newuserdatauv(L, size ? size : 1, 0);
}

/* A metatable 'name' with the methods 'm', which is its own __index. */
void pm_new_class(lua_State *L, const char *name, const luaL_Reg *m) {
  luaL_newmetatable(L, name);
  luaL_setfuncs(L, m, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
