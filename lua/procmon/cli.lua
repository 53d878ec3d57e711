-- procrun's subcommands (procrun gc): answers on stdout, errors on stderr,
-- the exit code returned to the host.
local M = {}

local function fail(name, msg)
  io.stderr:write("procrun ", name, ": ", msg, "\n")
  return 1
end

local commands = {}

--- procrun gc: removes expired and corrupt cache entries and stale
--- temporary files from the default cache.
function commands.gc(args)
  if #args > 0 then return fail("gc", "no arguments expected") end
  local pm = require "procmon"
  local cache, msg = pm.cache.open()
  if not cache then return fail("gc", msg) end
  local n, pmsg = cache:purge()
  cache:close()
  if not n then return fail("gc", pmsg) end
  io.stdout:write(("removed %d file%s from %s\n"):format(n, n == 1 and "" or "s", cache.dir))
  return 0
end

M.commands = commands

--- Runs subcommand `name` with the remaining arguments; returns its exit code.
function M.main(name, ...)
  return commands[name]({ ... })
end

return M
