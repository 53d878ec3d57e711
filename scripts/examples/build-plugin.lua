#!/usr/bin/env procrun
--[[
build-plugin.lua: Claude Code hooks that run the project's build in the
background under procmon's monitor, and report on it.

  PostToolUse (Write|Edit|MultiEdit)  starts the build, detached, keyed per
        project: a newer edit replaces a build still running. The hook exits
        at once (the build holds none of its pipes).
  Stop  waits up to $BUILD_WAIT seconds (default 20) for a running build;
        if the last build failed, blocks the stop with the tail of its
        stderr so Claude fixes it (never twice in a row: stop_hook_active).
  SessionStart  tells Claude which monitored processes are running.

  procrun build-plugin.lua status [--json]   the active processes

The build command is $BUILD_CMD (a shell command, default "make"), run in
$CLAUDE_PROJECT_DIR (else the payload's cwd); its output goes to a log file
(`procrun logs ID`). Wire it into .claude/settings.json:

  "hooks": {
    "PostToolUse":  [{ "matcher": "Write|Edit|MultiEdit", "hooks": [{ "type": "command",
        "command": "procrun", "args": ["/path/to/build-plugin.lua"], "timeout": 5 }] }],
    "Stop":         [{ "hooks": [{ "type": "command", "command": "procrun",
        "args": ["/path/to/build-plugin.lua"], "timeout": 30 }] }],
    "SessionStart": [{ "hooks": [{ "type": "command", "command": "procrun",
        "args": ["/path/to/build-plugin.lua"], "timeout": 5 }] }]
  }
]]
local pm = require "procmon"

local mon = assert(pm.monitor())

local function key(dir) return "build:" .. dir end

local function age(seconds) return require("procmon.statusline").duration(seconds) end

--- The newest record of dir's build, or nil.
local function latest(dir)
  for _, rec in ipairs(mon:history()) do
    if rec.key == key(dir) then return rec end
  end
end

local function project(ev)
  local d = os.getenv("CLAUDE_PROJECT_DIR")
  if d and d ~= "" then return d end
  return ev.cwd
end

-- {=== the build itself: `build-plugin.lua --build DIR [SESSION]` ===}

-- Runs detached (started by the PostToolUse hook) and owns the build's
-- record, so the record gets the exit code: a detached job whose owner
-- has gone can only be seen to vanish.
local function build(dir, session_id)
  local r = assert(mon:run(os.getenv("BUILD_CMD") or "make", {
    shell = true, cwd = dir, name = "build " .. (dir:match("[^/]+$") or dir),
    key = key(dir), replace = true, log = true, session_id = session_id,
    timeout = tonumber(os.getenv("BUILD_TIMEOUT") or "") or 1800,
  }))
  os.exit(r.code or 1)
end

-- {=== the hooks ===}

local handlers = {}

function handlers.PostToolUse(ev)
  local dir = project(ev)
  if not dir then return nil end
  -- The same interpreter runs the build wrapper, in its own session, with
  -- stdio on /dev/null: Claude Code's turn does not wait for it.
  local before = latest(dir)
  assert(pm.spawn({ arg[-1], arg[0], "--build", dir, ev.session_id }, { detached = true }))
  -- Return once the build's record exists (a Stop hook right after this
  -- one must see it), or after 3 s.
  local deadline = pm.time() + 3
  repeat
    pm.sleep(0.02)
    local now = latest(dir)
  until (now and (not before or now.id ~= before.id)) or pm.time() > deadline
  return nil
end

local function describe(rec)
  local r = rec.exit_code and ("exit " .. rec.exit_code) or rec.signal and ("signal " .. rec.signal)
    or rec.reason or "?"
  return ("%s (%s, %s)"):format(rec.name or rec.id, rec.status, r)
end

function handlers.Stop(ev)
  if ev.stop_hook_active then return nil end  -- we blocked once: let Claude stop
  local rec = latest(project(ev) or "")
  if not rec then return nil end
  local deadline = pm.time() + (tonumber(os.getenv("BUILD_WAIT") or "") or 20)
  while rec.status == "running" and pm.time() < deadline do
    pm.sleep(0.1)
    rec = mon:get(rec.id) or rec
  end
  if rec.status == "running" then
    return { system_message = ("procrun: the build is still running (%s); `procrun logs %s -f` follows it")
      :format(rec.id, rec.id) }
  end
  if rec.status == "completed" then return nil end
  local tail = (rec.stderr or ""):sub(-1500)
  return { decision = "block", reason = ("The build failed: %s. Last lines of its stderr:\n%s\n"
    .. "Fix the build before finishing (full log: procrun logs %s).")
    :format(describe(rec), tail, rec.id) }
end

function handlers.SessionStart()
  local active = mon:active()
  if #active == 0 then return nil end
  local lines, now = {}, pm.time()
  for _, rec in ipairs(active) do
    lines[#lines + 1] = ("- %s %s (pid %s, running for %s)"):format(rec.id, rec.name or "?",
      tostring(rec.pid), age(now - rec.started_at))
  end
  return { context = ("procrun: %d monitored process%s running:\n%s"):format(#active,
    #active == 1 and " is" or "es are", table.concat(lines, "\n")) }
end

-- {=== command line ===}

local function status(as_json)
  local active = mon:active()
  if as_json then
    io.stdout:write(pm.json.encode(setmetatable(active, pm.json.array_mt)), "\n")
    return
  end
  if #active == 0 then print("no active processes") return end
  local now = pm.time()
  for _, rec in ipairs(active) do
    print(("%-8s %-8s %7s  %-8s %s"):format(rec.id, rec.status, tostring(rec.pid),
      age(now - rec.started_at), rec.name or table.concat(rec.cmd or {}, " ")))
  end
end

if arg[1] == "--build" then return build(arg[2], arg[3]) end
if arg[1] == "status" then return status(arg[2] == "--json") end

pm.hook.run(function(ev)
  local h = handlers[ev.hook_event_name]
  return h and h(ev) or nil
end, { name = "build-plugin.lua" })
