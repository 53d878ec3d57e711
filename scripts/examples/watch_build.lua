#!/usr/bin/env procrun
-- Runs a build under supervision: streams its output line by line with a
-- timestamp and an [out]/[err] tag, kills it when it runs too long or goes
-- quiet for too long, and ends with a report (reason, exit code, duration,
-- the last stderr lines). Exits 0 when the build succeeded (r.ok), 124 when
-- it was stopped for a timeout (whatever its code), else the build's code,
-- or 1 when it died otherwise.
--
--   procrun watch_build.lua [--timeout S] [--idle S] [--tail N] [--] [COMMAND...]
--
-- One COMMAND argument is a shell command line ("make -j4 2>&1"); several
-- are an argv ({"make", "-j4"}). Without one, a short fake build runs.
local pm = require "procmon"

local USAGE = [[
usage: watch_build.lua [--timeout S] [--idle S] [--tail N] [--] [COMMAND...]
  --timeout S   kill the build after S seconds in all (default 600)
  --idle S      kill the build after S seconds without output (default 60)
  --tail N      show the last N stderr lines in the report (default 5)
]]

-- A harmless stand-in for a build: a few lines over about a second, and a
-- warning on stderr.
local DEMO = [[
for unit in parser lexer codegen runtime; do
  echo "compiling $unit.c"
  sleep 0.2
done
echo "warning: runtime.c: unused variable 'x'" >&2
sleep 0.1
echo "linking app"
echo "build finished"
]]

local function fail_usage(msg)
  io.stderr:write("watch_build.lua: ", msg, "\n", USAGE)
  os.exit(2)
end

local function parse(args)
  local o = { timeout = 600, idle = 60, tail = 5 }
  local i, cmd = 1, {}
  local function number(flag)
    i = i + 1
    local v = tonumber(args[i])
    if v == nil or v <= 0 then fail_usage(flag .. " needs a positive number") end
    return v
  end
  while i <= #args do
    local a = args[i]
    if a == "--" then
      table.move(args, i + 1, #args, #cmd + 1, cmd)
      break
    elseif a == "-h" or a == "--help" then
      io.stdout:write(USAGE)
      os.exit(0)
    elseif a == "--timeout" then
      o.timeout = number(a)
    elseif a == "--idle" then
      o.idle = number(a)
    elseif a == "--tail" then
      o.tail = math.tointeger(number(a)) or fail_usage("--tail needs a whole number")
    elseif a:sub(1, 1) == "-" and #cmd == 0 then
      fail_usage("unknown option " .. a)
    else
      cmd[#cmd + 1] = a
    end
    i = i + 1
  end
  if #cmd == 0 then
    o.cmd, o.shell, o.label = DEMO, true, "(demo build)"
  elseif #cmd == 1 then
    o.cmd, o.shell, o.label = cmd[1], true, cmd[1]
  else
    o.cmd, o.shell, o.label = cmd, false, table.concat(cmd, " ")
  end
  return o
end

local function main(...)
  local o = parse(table.pack(...))
  local t0 = pm.time()
  local counts = { out = 0, err = 0 }
  local tail = {}

  local function show(tag, line)
    counts[tag] = counts[tag] + 1
    io.stdout:write(("[%s +%.2fs] [%s] %s\n"):format(os.date("%H:%M:%S"), pm.time() - t0, tag, line))
    io.stdout:flush()
  end

  local p, err = pm.spawn(o.cmd, {
    shell = o.shell,
    name = "build",
    timeout = o.timeout,
    idle_timeout = o.idle,
    lines = true,
    on_stdout = function(line) show("out", line) end,
    on_stderr = function(line)
      show("err", line)
      tail[#tail + 1] = line
      if #tail > o.tail then table.remove(tail, 1) end
    end,
  })
  if not p then
    io.stderr:write("watch_build.lua: ", err, "\n")
    return 127
  end

  local r = p:wait()
  local function field(k, v) io.stdout:write(("%-10s %s\n"):format(k .. ":", v)) end
  io.stdout:write("--- report ---\n")
  field("command", o.label)
  field("pid", r.pid)
  field("reason", r.reason)
  field("code", r.code or "-")
  field("signal", r.signal or "-")
  field("duration", ("%.2fs"):format(r.duration))
  field("lines", ("%d stdout, %d stderr"):format(counts.out, counts.err))
  if r.timed_out then
    field("limit", r.reason == "timeout" and ("timeout %gs"):format(o.timeout)
      or ("no output for %gs"):format(o.idle))
  end
  io.stdout:write(("last %d stderr lines:\n"):format(#tail))
  for _, line in ipairs(tail) do io.stdout:write("  | ", line, "\n") end
  io.stdout:write(r.ok and "BUILD OK\n" or "BUILD FAILED\n")

  if r.ok then return 0 end
  if r.timed_out then return 124 end  -- even when the build exited 0 on its TERM
  if r.code and r.code ~= 0 then return r.code end
  return 1
end

os.exit(main(...))
