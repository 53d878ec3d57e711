/*
** pm_embed CASE: procmon embedded in a C host, for what Lua cannot provoke
** (spec/embed_spec.lua runs each case; exit 0 = pass, a message otherwise):
**   foreign  the host's loop holds a handle of its own (active, with a
**            'data' that is not procmon's): lua_close leaves it alone and
**            returns (it does not run the host's loop until it is idle)
**   pidfd    a detached child alive at lua_close: no descriptor left open
**   threads  two states on two threads stream lines at the same time
**   fault    PM_FAULT=uv_poll_start|uv_pipe_open|uv_read_start|
**            uv_signal_start makes that libuv call fail once: spawn fails
**            cleanly (the child is killed and reaped) and nothing hangs
**   oom      an allocation failure while the Result is built is an error
**            of the wait, and the loop stays usable
**   echild   the host ignores SIGCHLD after procmon started (children are
**            reaped by the kernel): the exit status is unknown, never 0
*/
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "procmon.h"

/* {=== a state and a chunk ===} */

static lua_State *new_state(uv_loop_t *loop) {
  lua_State *L = procmon_newstate();
  luaL_openlibs(L);
  procmon_preload(L);
  if (loop) procmon_set_loop(L, loop);
  return L;
}

/* Runs code, then the loop; 0, or prints the error and returns 1. */
static int run(lua_State *L, const char *code) {
  int st = luaL_loadstring(L, code);
  if (st == LUA_OK) st = lua_pcall(L, 0, 0, 0);
  if (st == LUA_OK) st = procmon_run(L);
  if (st == LUA_OK) return 0;
  fprintf(stderr, "pm_embed: %s\n", lua_tostring(L, -1));
  lua_pop(L, 1);
  return 1;
}

static int fail(const char *msg) {
  fprintf(stderr, "pm_embed: %s\n", msg);
  return 1;
}

/* {=== foreign: a host handle that is not procmon's ===} */

static void noop_cb(uv_timer_t *t) { (void)t; }

static int case_foreign(void) {
  uv_loop_t loop;
  uv_timer_t t;
  long junk = 42;  /* what a close callback read from it would call */
  lua_State *L;
  uv_loop_init(&loop);
  uv_timer_init(&loop, &t);
  t.data = &junk;
  uv_timer_start(&t, noop_cb, 100000, 100000);  /* keeps the loop alive */
  L = new_state(&loop);
  if (luaL_dostring(L, "local pm = require 'procmon'\n"
                       "P = pm.spawn({ 'sleep', '30' })\n"
                       "T = pm._timer(100, function() end)") != LUA_OK)
    return fail(lua_tostring(L, -1));
  procmon_close(L);  /* kills the child, closes procmon's handles only */
  if (!uv_is_active((uv_handle_t *)&t) || uv_is_closing((uv_handle_t *)&t))
    return fail("the host's timer was closed");
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  return uv_loop_close(&loop) == 0 ? 0 : fail("handles left on the host's loop");
}

/* {=== pidfd: descriptors after lua_close ===} */

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  while (d && readdir(d)) n++;
  if (d) closedir(d);
  return n;
}

static int case_pidfd(void) {
  uv_loop_t first;
  int before, after;
  lua_State *L;
  lua_Integer pid;
  uv_loop_init(&first);  /* libuv's own global descriptors, kept for good */
  uv_loop_close(&first);
  before = count_fds();
  L = new_state(NULL);
  if (luaL_dostring(L, "local pm = require 'procmon'\n"
                       "return pm.spawn({ 'sleep', '30' }, { detached = true }).pid") != LUA_OK)
    return fail(lua_tostring(L, -1));
  pid = lua_tointeger(L, -1);
  procmon_close(L);
  after = count_fds();
  kill((pid_t)pid, SIGKILL);

  if (after == before) return 0;
  fprintf(stderr, "pm_embed: %d descriptors before the state, %d after it\n", before, after);
  return 1;
}

/* {=== threads: two states streaming lines at once ===} */

static const char lines_chunk[] =
  "local pm = require 'procmon'\n"
  "for round = 1, 3 do\n"
  "  local sum, n = 0, 0\n"
  "  local r = pm.run({ 'seq', '1', '100000' }, { lines = true,\n"
  "    on_stdout = function(l) sum = sum + tonumber(l); n = n + 1 end })\n"
  "  assert(r.ok and n == 100000 and sum == 100000 * 100001 // 2,\n"
  "    ('round %d: %d lines, sum %d'):format(round, n, sum))\n"
  "end\n";

static void *thread_main(void *arg) {
  lua_State *L = new_state(NULL);
  *(int *)arg = run(L, lines_chunk);
  procmon_close(L);
  return NULL;
}

static int case_threads(void) {
  pthread_t t[2];
  int res[2] = {1, 1};
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, thread_main, &res[i]);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  return res[0] || res[1];
}

/* {=== fault: one libuv call fails ===} */

/* The host defines these: procmon's calls bind to them, and they call
** libuv's own unless PM_FAULT names them (once). */
static int faulty(const char *name) {
  static int done;
  const char *f = getenv("PM_FAULT");
  if (done || f == NULL || strcmp(f, name) != 0) return 0;
  done = 1;
  return 1;
}

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

int uv_poll_start(uv_poll_t *h, int events, uv_poll_cb cb) {
  return faulty("uv_poll_start") ? UV_ENOMEM : REAL(uv_poll_start)(h, events, cb);
}

int uv_pipe_open(uv_pipe_t *h, uv_file fd) {
  return faulty("uv_pipe_open") ? UV_ENOMEM : REAL(uv_pipe_open)(h, fd);
}

int uv_read_start(uv_stream_t *h, uv_alloc_cb a, uv_read_cb r) {
  return faulty("uv_read_start") ? UV_ENOMEM : REAL(uv_read_start)(h, a, r);
}

int uv_signal_start(uv_signal_t *h, uv_signal_cb cb, int sig) {
  return faulty("uv_signal_start") ? UV_ENOMEM : REAL(uv_signal_start)(h, cb, sig);
}

static int case_fault(void) {
  lua_State *L = new_state(NULL);
  int st = run(L, "local pm = require 'procmon'\n"
                  "local p, err, code = pm.spawn({ 'sleep', '30' })\n"
                  "assert(p == nil and code == 'ENOMEM', tostring(err))\n"
                  "assert(err:find('^spawn .sleep.: '), err)\n"
                  "pm.loop()\n"
                  "assert(pm._handles() == 0, 'handles left')\n"
                  "local r = assert(pm.run({ 'sh', '-c', 'exit 3' }))\n"
                  "assert(r.code == 3, 'the next spawn works')\n");
  procmon_close(L);
  if (st == 0 && !(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD))
    return fail("a child was left unreaped");
  return st;
}

/* {=== oom: the Result cannot be built ===} */

static size_t oom_size;       /* fail the next allocation of this size */
static int oom_left;          /* and Lua's retry after an emergency collection */
static size_t largest;        /* the largest one seen while measuring */
static int measuring;

static void *test_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  if (measuring && nsize > largest) largest = nsize;
  if (oom_left > 0 && nsize == oom_size && nsize > (ptr ? osize : 0)) {
    oom_left--;
    return NULL;
  }
  return procmon_alloc(ud, ptr, osize, nsize);
}

/* hash16() -> the size of a 16-node hash part (the Result's) */
static int l_hash16(lua_State *L) {
  largest = 0;
  measuring = 1;
  lua_createtable(L, 0, 16);
  measuring = 0;
  lua_pushinteger(L, (lua_Integer)largest);
  return 1;
}

static int l_fail_next(lua_State *L) {
  oom_size = (size_t)luaL_checkinteger(L, 1);
  oom_left = oom_size ? 2 : 0;
  return 0;
}

static int case_oom(void) {
  lua_State *L = new_state(NULL);
  void *ud;
  int st;
  lua_getallocf(L, &ud);
  lua_setallocf(L, test_alloc, ud);
  lua_register(L, "hash16", l_hash16);
  lua_register(L, "fail_next", l_fail_next);
  st = run(L, "local pm = require 'procmon'\n"
              "local p = assert(pm.spawn({ 'true' }))\n"
              "fail_next(hash16())\n"
              "local ok, err = pcall(p.wait, p)\n"
              "fail_next(0)\n"

              "assert(not ok and tostring(err):find('not enough memory'), tostring(err))\n"
              "pm.sleep(0.01)  -- the loop is not left marked as running\n"
              "assert(pm.run({ 'true' }).ok)\n");
  procmon_close(L);
  return st;
}

/* {=== echild: the host ignores SIGCHLD after procmon started ===} */

static int l_ignore_sigchld(lua_State *L) {
  (void)L;
  signal(SIGCHLD, SIG_IGN);
  return 0;
}

static int case_echild(void) {
  lua_State *L = new_state(NULL);
  int st;
  lua_register(L, "ignore_sigchld", l_ignore_sigchld);
  st = run(L, "local pm = require 'procmon'\n"
              "ignore_sigchld()\n"
              "local r = assert(pm.run({ 'sh', '-c', 'exit 3' }))\n"
              "assert(r.reason == 'unknown' and r.code == nil and r.ok == false,\n"
              "  'reason ' .. tostring(r.reason) .. ', code ' .. tostring(r.code))\n");
  procmon_close(L);
  return st;
}

int main(int argc, char **argv) {
  static const struct { const char *name; int (*fn)(void); } cases[] = {
    {"foreign", case_foreign}, {"pidfd", case_pidfd}, {"threads", case_threads},
    {"fault", case_fault}, {"oom", case_oom}, {"echild", case_echild}, {NULL, NULL}
  };
  alarm(60);  /* a hang is a failure */
  for (int i = 0; argc > 1 && cases[i].name; i++)
    if (strcmp(argv[1], cases[i].name) == 0) return cases[i].fn();
  fputs("usage: pm_embed foreign|pidfd|threads|fault|oom|echild\n", stderr);
  return 2;
}
