/*
** The session/hook payload reader (src/pm_input.c): its scanner finds the
** end of the first JSON value as bytes arrive. Whatever the chunking, it
** must reach the same verdict as on the whole input, and agree with
** procmon.json where the input is a JSON value (checks in input.lua).
** Input: byte 0 = number of cuts (mod 8), then that many cut positions
** (one byte each, scaled to the payload), then the payload.
*/
#define pm_open_input fuzz_unused_pm_open_input  /* the core has it */
#include "../src/pm_input.c"

#include <string.h>

#include "fuzz.h"

/* The verdict after feeding everything, as input.scan gives it. */
static void verdict(scan_t *sc, size_t len, const char **how, size_t *end) {
  if (sc->scalar && !sc->done) sc->done = 1, sc->end = len;  /* ends at EOF */
  *how = sc->done == 1 ? "value" : sc->done ? "invalid" : "eof";
  *end = sc->done == 1 ? sc->end : len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fuzz_lua("input.lua");
  size_t ncuts = size ? data[0] % 8 : 0, at = 0, end1, end2;
  const char *s, *how1, *how2;
  size_t n;
  scan_t whole = {0, 0, 0, 0, 0, 0, 0}, parts = {0, 0, 0, 0, 0, 0, 0};
  if (size < 1 + ncuts) return 0;
  s = (const char *)data + 1 + ncuts;
  n = size - 1 - ncuts;
  scan_feed(&whole, s, 0, n);
  verdict(&whole, n, &how1, &end1);
  /* The same bytes in pieces, as read(2) may return them. */
  for (size_t i = 0; i < ncuts; i++) {
    size_t cut = n ? (size_t)data[1 + i] * n / 255 : 0;
    if (cut < at) continue;
    scan_feed(&parts, s, at, cut);
    at = cut;
  }
  scan_feed(&parts, s, at, n);
  verdict(&parts, n, &how2, &end2);
  fuzz_assert(strcmp(how1, how2) == 0 && end1 == end2,
              "the verdict depends on the chunking");
  lua_pushlstring(L, s, n);
  lua_pushstring(L, how1);
  lua_pushinteger(L, (lua_Integer)end1);
  fuzz_check(L, 3);
  return 0;
}
