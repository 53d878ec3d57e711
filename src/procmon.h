/*
** procmon: process, capture and cache primitives for Lua 5.4 on libuv.
** Public C API for hosts that embed the module (procrun does).
*/
#ifndef PROCMON_H
#define PROCMON_H

#include <lua.h>
#include <uv.h>

/* Opens the module: the table returned by require "procmon". */
int luaopen_procmon(lua_State *L);

/* Registers "procmon" and "procmon.<name>" in package.preload (hosts). */
void procmon_preload(lua_State *L);

/* Open procmon.cache and procmon.statusline directly (required before
** "procmon" from a stock lua5.4). */
int luaopen_procmon_cache(lua_State *L);
int luaopen_procmon_statusline(lua_State *L);

/* Opens procmon.json, the JSON codec, which needs nothing else. */
int luaopen_procmon_json(lua_State *L);

/* Makes the module use the host's loop instead of creating its own.
** Call before the script runs; the host then owns the loop's teardown. */
void procmon_set_loop(lua_State *L, uv_loop_t *loop);

/* Runs the loop until nothing is pending. Returns LUA_OK, or an error
** status with the error message (already holding a traceback) on top. */
int procmon_run(lua_State *L);

/* Signals every live non-detached child's process group (TERM, then KILL
** after each child's grace), reaps them, and returns. Safe to call at exit. */
void procmon_kill_children(lua_State *L);

/* Tells procmon that the host was asked to stop by signal 'sig' (INT,
** TERM, HUP). From then on procmon's blocking and starting calls (spawn,
** wait, sleep, run, loop, a cache lock wait...) raise "interrupted by
** SIGTERM", and pm.interrupted() names the signal. A second call means
** "hurry": procmon_kill_children no longer waits for the kill grace.
** Async-signal-safe: call it from the handler (the host also wakes its
** loop, e.g. with a uv_async_t, so that a wait in progress returns). */
void procmon_interrupt(int sig);

/* Raises the interruption in L (a lua_Hook may call it) if no blocking
** call raised it since the last procmon_interrupt; otherwise returns 0.
** So one signal is raised once: a script's cleanup after a pcall that
** caught it is not interrupted a second time by the same signal. */
int procmon_raise_interrupt(lua_State *L);

/* Message handler for lua_pcall (lua.c's msghandler): appends a traceback,
** except to an error procmon re-raised from a callback or task, which
** carries its own already. */
int procmon_msghandler(lua_State *L);

/* A lua_Alloc: blocks up to 128 bytes from the pool 'ud' (NULL: none),
** malloc below 1 MiB, huge-page mappings above, so that big captured
** outputs become Lua strings without a page fault per 4 KiB. */
void *procmon_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* A new state as luaL_newstate makes it (panic handler, warnings off
** until "@on"), allocating through procmon_alloc with a pool of its own.
** Close it with procmon_close, which also frees the pool. */
lua_State *procmon_newstate(void);
void procmon_close(lua_State *L);

#endif
