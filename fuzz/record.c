/*
** Monitor records as `procrun ps` reads them (src/pm_monitor.c): a scanner
** takes the few top-level fields it needs without decoding the record. On
** any bytes it must stay in bounds; on a record that procmon.json decodes
** it must agree with the decoder (checks in record.lua).
*/
#define pm_open_mondir fuzz_unused_pm_open_mondir  /* the core has it */
#include "../src/pm_monitor.c"

#include <stdlib.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fuzz_lua("record.lua");
  char *s = malloc(size + 1);  /* exact size: ASan sees any overrun */
  rec_info_t r;
  int ok;
  memcpy(s, data, size);
  s[size] = '\0';
  ok = scan_record(s, &r) == 0;
  lua_pushstring(L, s);  /* up to a NUL, as the scanner sees it */
  lua_pushboolean(L, ok);
  lua_createtable(L, 0, 6);
  if (r.has_pid) lua_pushinteger(L, (lua_Integer)r.pid), lua_setfield(L, -2, "pid");
  lua_pushinteger(L, (lua_Integer)r.owner_pid), lua_setfield(L, -2, "owner_pid");
  lua_pushnumber(L, r.started_at), lua_setfield(L, -2, "started_at");
  if (r.has_expiry) lua_pushnumber(L, r.expires_at), lua_setfield(L, -2, "expires_at");
  lua_pushboolean(L, r.detached), lua_setfield(L, -2, "detached");
  lua_pushstring(L, r.boot), lua_setfield(L, -2, "boot_id");
  free(s);
  fuzz_check(L, 3);
  return 0;
}
