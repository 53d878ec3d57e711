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
--- `procrun NAME --help` (or -h) is `procrun help NAME`.
function M.main(name, ...)
  local first = ...
  if (first == "--help" or first == "-h") and name ~= "help" then return commands.help({ name }) end
  return commands[name]({ ... })
end

-- {=== help ===}

--- Each subcommand's usage, for `procrun help NAME` (the overview is the
--- host's `procrun --help`). The man page, procrun(1), says the same at length.
M.usage = {
  ps = [[
usage: procrun ps [--all] [--json] [--dir DIR]
List the monitored processes of the monitor directory (every process that
uses it): the running ones, newest first.
  -a, --all   also the finished records that have not expired
  --json      a JSON array of records, for scripts
  --dir DIR   another monitor directory (default: <state dir>/monitor)]],
  kill = [[
usage: procrun kill ID [SIGNAL] [--dir DIR]
Signal the process group of the monitored process ID (or the one whose id
starts with ID). SIGNAL: a name (TERM, INT, KILL...) or a number; default
TERM. A signal that ends the process also ends its job (no restart).
  --dir DIR   another monitor directory]],
  logs = [[
usage: procrun logs ID [-f] [-n N] [--dir DIR]
Print the log of the monitored process ID (started with the log option).
  -f, --follow  keep printing as it grows, until the job ends
  -n N          only the last N lines
  --dir DIR     another monitor directory]],
  gc = [[
usage: procrun gc
Remove expired and corrupt cache entries, stale temporary files, and
expired monitor records with their logs, from the state directory.]],
  help = [[
usage: procrun help [SUBCOMMAND]
Print the usage of SUBCOMMAND (also: procrun SUBCOMMAND --help), or the
overview (procrun --help).]],
}

--- procrun help [NAME]: the usage of NAME on stdout.
function commands.help(args)
  if #args > 1 then return fail("help", "one subcommand expected") end
  local name = args[1]
  if name == nil then
    local names = {}
    for k in pairs(commands) do names[#names + 1] = k end
    table.sort(names)
    io.stdout:write("subcommands: ", table.concat(names, ", "),
                    "\nprocrun help SUBCOMMAND for one; procrun --help; man procrun\n")
    return 0
  end
  if not commands[name] or not M.usage[name] then
    return fail("help", "no subcommand '" .. tostring(name) .. "'")
  end
  io.stdout:write(M.usage[name], "\n")
  return 0
end

return M
