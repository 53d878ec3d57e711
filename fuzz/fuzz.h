/*
** Shared by the libFuzzer targets in fuzz/: a Lua state with procmon
** preloaded, in which a target keeps its checks (written in Lua, where
** comparing decoded values is short), and the way a failed check ends
** the run: abort(), which libFuzzer records as a crash with its input.
*/
#ifndef PM_FUZZ_H
#define PM_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

/* The state, created on the first call: standard libraries, procmon
** preloaded, and the global 'check' set to what the Lua file 'name' in
** fuzz/ (FUZZ_DIR) returns. */
lua_State *fuzz_lua(const char *name);

/* Calls check(...) with the 'nargs' values on top of the stack; a raise
** is a finding: the message goes to stderr and the run aborts. */
void fuzz_check(lua_State *L, int nargs);

/* A check of the C side: aborts with 'what' when 'ok' is false. */
void fuzz_assert(int ok, const char *what);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
