/*
** Cache entry files as cache:get reads them (src/pm_store.c): the bytes
** of a file are decoded as one record and checked against the key looked
** up ("k"). Any bytes: no crash, the stack as documented; a file that
** procmon.json reads as a good record is accepted with the same value
** (checks in entry.lua).
*/
#define pm_open_store fuzz_unused_pm_open_store  /* the core has it */
#include "../src/pm_store.c"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fuzz_lua("entry.lua");
  int top, ok;
  lua_settop(L, 0);
  lua_pushlstring(L, (const char *)data, size);
  top = lua_gettop(L);
  ok = record_decode(L, (const char *)data, size) == 0;
  fuzz_assert(lua_gettop(L) == top + ok, "record_decode: the stack");
  if (ok) {
    ok = record_open(L, "k", 1, NULL) == 0;
    fuzz_assert(lua_gettop(L) == top + (ok ? 2 : 0), "record_open: the stack");
  }
  if (!ok) lua_pushnil(L), lua_pushnil(L);
  lua_pushboolean(L, ok);
  fuzz_check(L, 4);  /* bytes, value, expires_at, ok */
  return 0;
}
