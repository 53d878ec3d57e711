/*
** Line splitting of on_stdout/on_stderr with lines = true (src/pm_stdio.c):
** the same bytes cut into chunks anywhere (a "\r\n" or a UTF-8 character
** split across two reads included) must give the lines of the whole input,
** a line longer than max_line in pieces of at most max_line bytes that
** never split a UTF-8 character (checks in lines.lua).
** Input: byte 0 picks max_line, byte 1 the number of cuts (mod 16), then
** one byte per cut (scaled to the payload), then the payload.
*/
/* The core has these; the copy included here keeps its static helpers. */
#define pm_stdio_parse fuzz_unused_pm_stdio_parse
#define pm_stdio_prepare fuzz_unused_pm_stdio_prepare
#define pm_stdio_close_child_ends fuzz_unused_pm_stdio_close_child_ends
#define pm_stdio_abort fuzz_unused_pm_stdio_abort
#define pm_stdio_start fuzz_unused_pm_stdio_start
#define pm_stdio_finish fuzz_unused_pm_stdio_finish
#define pm_stdio_push_output fuzz_unused_pm_stdio_push_output
#define pm_stdio_free fuzz_unused_pm_stdio_free
#define pm_stdio_write_full fuzz_unused_pm_stdio_write_full
#define pm_stdio_write fuzz_unused_pm_stdio_write
#define pm_stdio_close_stdin fuzz_unused_pm_stdio_close_stdin
#include "../src/pm_stdio.c"

#include "fuzz.h"

static const size_t max_lines[8] = {1, 2, 3, 4, 5, 8, 64, 1 << 20};

/* Feeds [from, to) as one read, as deliver_cb does (callback at 2). */
static void feed(lua_State *L, pm_stream_t *s, const char *d, size_t len, int final) {
  chunk_t c;
  memset(&c, 0, sizeof c);
  c.s = s;
  c.data = d;
  c.len = len;
  c.final = final;
  emit_lines(L, &c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fuzz_lua("lines.lua");
  pm_stream_t s;
  size_t ncuts, n, at = 0;
  const char *d;
  if (size < 2) return 0;
  ncuts = data[1] % 16;
  if (size < 2 + ncuts) return 0;
  d = (const char *)data + 2 + ncuts;
  n = size - 2 - ncuts;
  memset(&s, 0, sizeof s);
  s.lines = 1;
  s.max_line = max_lines[data[0] % 8];
  lua_settop(L, 0);
  lua_pushnil(L);
  lua_getglobal(L, "check");
  lua_getfield(L, 2, "collect");  /* the line callback, at 2 */
  lua_remove(L, 2);
  for (size_t i = 0; i < ncuts; i++) {
    size_t cut = n ? (size_t)data[2 + i] * n / 255 : 0;
    if (cut <= at) continue;
    feed(L, &s, d + at, cut - at, 0);
    at = cut;
  }
  feed(L, &s, d + at, n - at, 0);
  feed(L, &s, NULL, 0, 1);  /* EOF */
  free(s.carry);
  lua_settop(L, 0);
  lua_getglobal(L, "check");
  lua_getfield(L, 1, "verify");
  lua_remove(L, 1);
  lua_pushlstring(L, d, n);
  lua_pushinteger(L, (lua_Integer)s.max_line);
  lua_call(L, 2, 0);  /* raises (and so aborts, unprotected) on a finding */
  return 0;
}
