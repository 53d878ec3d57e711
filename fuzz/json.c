/* procmon.json decode, and encode/decode round trips (checks in json.lua). */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fuzz_lua("json.lua");
  lua_pushlstring(L, (const char *)data, size);
  fuzz_check(L, 1);
  return 0;
}
