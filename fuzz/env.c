/* procmon.env.decode of hostile PROCESS_* variables (checks in env.lua). */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fuzz_lua("env.lua");
  lua_pushlstring(L, (const char *)data, size);
  fuzz_check(L, 1);
  return 0;
}
