/* The Lua side of the fuzz targets (see fuzz.h). */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"
#include "procmon.h"

static lua_State *state;

static int traceback(lua_State *L) {
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

lua_State *fuzz_lua(const char *name) {
  char path[4096];
  if (state) return state;
  state = luaL_newstate();
  luaL_openlibs(state);
  procmon_preload(state);
  lua_pushstring(state, FUZZ_DIR);
  lua_setglobal(state, "FUZZ_DIR");
  snprintf(path, sizeof path, "%s/%s", FUZZ_DIR, name);
  if (luaL_loadfile(state, path) != LUA_OK || lua_pcall(state, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "fuzz: the checks do not load: %s\n", lua_tostring(state, -1));
    abort();
  }
  lua_setglobal(state, "check");
  return state;
}

void fuzz_check(lua_State *L, int nargs) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, traceback);
  lua_getglobal(L, "check");
  lua_rotate(L, base + 1, 2);
  if (lua_pcall(L, nargs, 0, base + 1) != LUA_OK) {
    fprintf(stderr, "fuzz: check failed: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_settop(L, base);
  /* Keep the heap small between runs: leaks would show as growth. */
  lua_gc(L, LUA_GCSTEP, 0);
}

void fuzz_assert(int ok, const char *what) {
  if (ok) return;
  fprintf(stderr, "fuzz: check failed: %s\n", what);
  abort();
}
