#!/usr/bin/env procrun
--[[
supervise.lua: keeps a flaky command alive under the monitor with a restart
policy, logging each start, exit and restart, and exits with the job's final
status once it succeeds or gives up.

  procrun supervise.lua [--max N] [--backoff S] [--backoff-max S] [--always]
                        [--name NAME] [--] CMD...

  --max N          restarts before giving up (default 5)
  --backoff S      first delay before a restart, doubled each time (default 0.5)
  --backoff-max S  longest delay (default 30)
  --always         restart after a clean exit too (a service), not only a failure
  CMD...           one argument: a shell command; several: an argv (no shell)

While it runs, `procrun ps` lists the job (one record, its restarts counted)
and `procrun kill ID` stops it for good. From Claude Code, start it as a
detached background job of a SessionStart hook, e.g.:

  "SessionStart": [{ "hooks": [{ "type": "command", "command": "procrun",
      "args": ["-e", "require('procmon').spawn({'procrun','/path/to/supervise.lua','--','npm run dev'},{detached=true})"],
      "timeout": 5 }] }]
]]
local pm = require "procmon"
local policy = require "procmon.policy"

local function usage(code)
  local out = code == 0 and io.stdout or io.stderr
  out:write("usage: supervise.lua [--max N] [--backoff S] [--backoff-max S] [--always] [--name NAME] [--] CMD...\n")
  os.exit(code)
end

local function number_arg(v, integer)
  local n = tonumber(v)
  if not n or n < 0 or (integer and math.type(n) ~= "integer" and n ~= math.floor(n)) then usage(2) end
  return integer and math.tointeger(n) or n
end

local opts = { max = 5, initial = 0.5, max_delay = 30, when = "failure" }
local i, args = 1, { ... }
while args[i] do
  local a = args[i]
  if a == "--" then i = i + 1; break
  elseif a == "--max" then opts.max = number_arg(args[i + 1], true); i = i + 2
  elseif a == "--backoff" then opts.initial = number_arg(args[i + 1]); i = i + 2
  elseif a == "--backoff-max" then opts.max_delay = number_arg(args[i + 1]); i = i + 2
  elseif a == "--always" then opts.when = "always"; i = i + 1
  elseif a == "--name" then opts.name = args[i + 1] or usage(2); i = i + 2
  elseif a == "-h" or a == "--help" then usage(0)
  elseif a:sub(1, 1) == "-" then usage(2)
  else break end
end
local cmd = table.move(args, i, #args, 1, {})
if #cmd == 0 then usage(2) end
local shell = #cmd == 1
if shell then cmd = cmd[1] end

local t0 = pm.time()
local function log(fmt, ...)
  io.stdout:write(("[+%6.2fs] " .. fmt .. "\n"):format(pm.time() - t0, ...))
  io.stdout:flush()
end

local function how(r)
  if not r then return "?" end
  if r.code then return "exit " .. r.code end
  return "signal " .. tostring(r.signal)
end

local mon = assert(pm.monitor())
mon:on("start", function(rec) log("job %s started (pid %d): %s", rec.id, rec.pid, rec.name) end)
mon:on("restart", function(rec, info)
  log("job %s: %s; restart %d of %d after %.2fs (pid %d)", rec.id, how(info.result), info.restarts,
    opts.max, info.delay, rec.pid or -1)
end)
mon:on("exit", function(rec, r)
  log("job %s ended: %s, %s after %d restart%s", rec.id, how(r), rec.status, rec.restarts,
    rec.restarts == 1 and "" or "s")
end)

local job = assert(mon:spawn(cmd, {
  shell = shell or nil,
  name = opts.name or (shell and cmd or table.concat(cmd, " ")),
  stdout = "inherit", stderr = "inherit",
  policy = policy.restart { max = opts.max, when = opts.when,
    backoff = { initial = opts.initial, factor = 2, max = opts.max_delay } },
}))
local r = job:wait()
os.exit(r.code or 128 + 15)
