#!/usr/bin/env procrun
-- A parallel command runner: runs shell commands at most N at a time, each
-- with a timeout, then prints a summary table (status, duration, first
-- line of output) and exits 1 if any command failed.
--
--   procrun parallel.lua [-j N] [-t SECONDS] [--] [COMMAND...]
--   lua5.4 parallel.lua ...          (with procmon.so on LUA_CPATH)
--
-- Each COMMAND is a shell command line ("make -C lib", "sleep 1; echo hi").
-- Without commands it runs a small demo set. Progress goes to stderr as
-- each command finishes; the table goes to stdout.
local pm = require "procmon"

local USAGE = [[
usage: parallel.lua [-j N] [-t SECONDS] [--] [COMMAND...]
  -j N          run at most N commands at once (default 4)
  -t SECONDS    kill a command still running after SECONDS (default 30)
  COMMAND       a shell command line; without any, a demo set runs
]]

local DEMO = {
  "sleep 0.3; echo one",
  "sleep 0.2; echo two",
  "uname -sr",
  "ls /",
  "echo 'to stderr' >&2",
  "sleep 0.4; date -u +%Y-%m-%dT%H:%M:%SZ",
}

local function fail_usage(msg)
  io.stderr:write("parallel.lua: ", msg, "\n", USAGE)
  os.exit(2)
end

local function parse(args)
  local o = { jobs = 4, timeout = 30, cmds = {} }
  local i = 1
  local function value(flag)
    i = i + 1
    local v = tonumber(args[i])
    if v == nil then fail_usage(flag .. " needs a number") end
    return v
  end
  while i <= #args do
    local a = args[i]
    if a == "--" then
      table.move(args, i + 1, #args, #o.cmds + 1, o.cmds)
      break
    elseif a == "-h" or a == "--help" then
      io.stdout:write(USAGE)
      os.exit(0)
    elseif a == "-j" then
      o.jobs = math.tointeger(value(a))
      if o.jobs == nil or o.jobs < 1 then fail_usage("-j needs a positive integer") end
    elseif a == "-t" then
      o.timeout = value(a)
      if o.timeout <= 0 then fail_usage("-t needs a positive number of seconds") end
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      fail_usage("unknown option " .. a)
    else
      o.cmds[#o.cmds + 1] = a
    end
    i = i + 1
  end
  if #o.cmds == 0 then o.cmds, o.demo = DEMO, true end
  return o
end

--- Fits s into w columns (one line, ellipsis when cut).
local function fit(s, w)
  s = s:gsub("[%c]", " ")
  if #s > w then s = s:sub(1, w - 3) .. "..." end
  return s
end

local function first_line(s)
  return s and s:match("[^\r\n]*%S[^\r\n]*") or nil
end

local function status_of(r)
  if r.error then return "error" end
  if r.ok then return "ok" end
  if r.reason == "timeout" then return "timeout" end
  if r.code then return "exit " .. r.code end
  return "sig " .. tostring(r.signal)
end

local function main(...)
  local o = parse(table.pack(...))
  local n, done = #o.cmds, 0
  local jobs = {}
  for i, cmd in ipairs(o.cmds) do
    jobs[i] = { cmd, {
      shell = true,
      timeout = o.timeout,
      kill_grace = 1,
      name = "job" .. i,
      on_exit = function(r)
        done = done + 1
        io.stderr:write(("[%d/%d] #%d %s %.2fs\n"):format(done, n, i, status_of(r), r.duration))
      end,
    } }
  end

  local t0 = pm.time()
  local results = pm.run_all(jobs, { concurrency = o.jobs })
  local wall = pm.time() - t0

  local failed = 0
  local fmt = "%-3s %-8s %7s  %-28s %s\n"
  io.stdout:write(fmt:format("#", "STATUS", "TIME", "COMMAND", "OUTPUT"))
  for i, r in ipairs(results) do
    local status = status_of(r)
    if status ~= "ok" then failed = failed + 1 end
    local out = r.error or first_line(r.stdout) or first_line(r.stderr) or ""
    local time = r.duration and ("%.2fs"):format(r.duration) or "-"
    local row = fmt:format(i, status, time, fit(o.cmds[i], 28), fit(out, 48))
    io.stdout:write((row:gsub(" +\n$", "\n")))
  end
  io.stdout:write(("%d jobs, %d ok, %d failed in %.2fs (-j %d)\n")
    :format(n, n - failed, failed, wall, o.jobs))
  return failed == 0 and 0 or 1
end

os.exit(main(...))
