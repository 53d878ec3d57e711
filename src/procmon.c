/*
** luaopen_procmon: the C module owns the name "procmon"; the Lua parts are
** embedded submodules "procmon.<name>" registered in package.preload, so
** one procmon.so (or the procrun binary) is all that is needed.
*/
#include <stdio.h>
#include <string.h>

#include "pm_json.h"

/* Loader for an embedded submodule; upvalue 1 is its index. */
static int embedded_loader(lua_State *L) {
  const pm_embedded_t *e = &pm_embedded[lua_tointeger(L, lua_upvalueindex(1))];
  char chunkname[128];
  snprintf(chunkname, sizeof chunkname, "@[procmon]/%s.lua", e->name);
  if (luaL_loadbuffer(L, e->src, e->len, chunkname) != LUA_OK) return lua_error(L);
  lua_pushstring(L, e->name);
  lua_call(L, 1, 1);
  return 1;
}

/* Opens "procmon.api" through its preload entry. */
static int embedded_api_open(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_getfield(L, -1, "procmon.api");
  lua_call(L, 0, 1);
  return 1;
}

static void register_embedded(lua_State *L);

static void set_preload(lua_State *L, const char *name) {
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_insert(L, -2);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

/* Registers "procmon" and its submodules in package.preload (for hosts:
** then any of them can be required first, with nothing loaded before). */
void procmon_preload(lua_State *L) {
  lua_pushcfunction(L, luaopen_procmon);
  set_preload(L, "procmon");
  register_embedded(L);
}

static void register_embedded(lua_State *L) {
  for (int i = 0; pm_embedded[i].name; i++) {
    lua_pushinteger(L, i);
    lua_pushcclosure(L, embedded_loader, 1);
    set_preload(L, pm_embedded[i].name);
  }
  lua_pushcfunction(L, pm_open_store);
  set_preload(L, "procmon.store");
  lua_pushcfunction(L, pm_open_json);
  set_preload(L, "procmon.json");
  lua_pushcfunction(L, pm_open_sys);
  set_preload(L, "procmon.sys");
  lua_pushcfunction(L, pm_open_input);
  set_preload(L, "procmon.input");
  lua_pushcfunction(L, pm_open_mondir);
  set_preload(L, "procmon.mondir");
}

/*
** The C functions go into "procmon.core"; the embedded "procmon.api" builds
** the public table on top of it (tasks, wait, run, run_all, lazy submodules).
*/
int luaopen_procmon(lua_State *L) {
  pm_ctx(L);
  register_embedded(L);
  lua_newtable(L);
  pm_open_loop(L);
  pm_open_process(L);
  lua_pushliteral(L, PM_VERSION);
  lua_setfield(L, -2, "version");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_insert(L, -2);
  lua_setfield(L, -2, "procmon.core");
  lua_pop(L, 1);
  luaL_requiref(L, "procmon.api", embedded_api_open, 0);
  return 1;
}

/* require "procmon.<name>" before require "procmon" from a stock lua5.4:
** Lua's C searcher finds these entry points in procmon.so. */
static int open_submodule(lua_State *L, const char *name) {
  luaL_requiref(L, "procmon", luaopen_procmon, 0);
  lua_pop(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_getfield(L, -1, name);
  lua_pushstring(L, name);
  lua_call(L, 1, 1);
  return 1;
}

int luaopen_procmon_cache(lua_State *L) {
  return open_submodule(L, "procmon.cache");
}

int luaopen_procmon_statusline(lua_State *L) {
  return open_submodule(L, "procmon.statusline");
}
