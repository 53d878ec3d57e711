-- LuaRocks: `luarocks --lua-version 5.4 make` in the source tree builds
-- procmon.so (and the procrun command) with CMake and installs them.
-- The file name's version must be project(VERSION) in CMakeLists.txt
-- (spec/packaging_spec.lua checks it).
rockspec_format = "3.0"
package = "procmon"
version = "0.1.0-1"
source = {
   -- Not published yet: `luarocks make` builds the checked-out tree.
   url = "git+file:///usr/src/procrun",
   tag = "v0.1.0",
}
description = {
   summary = "Processes, monitoring and a file cache for Lua 5.4, on libuv",
   detailed = [[
procmon spawns processes, captures or streams their output, enforces
timeouts, runs many at once with a concurrency limit, monitors them in
persisted records any process can list, and keeps state in a file cache
with TTL. It also installs procrun, a fast-starting host for Lua scripts
(Claude Code statusline and hook commands among them).
]],
   license = "none yet (all rights reserved)",
   labels = { "process", "libuv", "monitor", "cache" },
}
dependencies = {
   "lua >= 5.4, < 5.5",
}
external_dependencies = {
   -- The build also needs pkg-config, Debian's liblua5.4-dev and
   -- lua-cjson-dev (for procrun): `make deps` installs them.
   LIBUV = { header = "uv.h" },
}
build = {
   type = "cmake",
   variables = {
      CMAKE_BUILD_TYPE = "Release",
      CMAKE_INSTALL_PREFIX = "$(PREFIX)",
      -- $(LIBDIR) is deployed onto the tree's lib/lua/5.4.
      LUA_CMOD_DIR = "$(LIBDIR)",
   },
}
