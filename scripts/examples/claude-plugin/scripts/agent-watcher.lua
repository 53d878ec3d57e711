#!/usr/bin/env procrun
--[[
agent-watcher.lua: a Claude Code hook for SessionStart, SubagentStart,
SubagentStop and SessionEnd that tracks each session and its running
subagents in procmon's cache (pm.session.tracker), so any later process (a
statusline, `procrun agent-watcher.lua --list`) sees them.

On SubagentStart it tells Claude how many other subagents of the session are
still running (additionalContext); the other events produce no output.

Wire it into ~/.claude/settings.json:

  "hooks": {
    "SessionStart":  [{ "hooks": [{ "type": "command", "command": "procrun",
                        "args": ["/path/to/agent-watcher.lua"], "timeout": 5 }] }],
    "SubagentStart": [{ "hooks": [{ "type": "command", "command": "procrun",
                        "args": ["/path/to/agent-watcher.lua"], "timeout": 5 }] }],
    "SubagentStop":  [{ "hooks": [{ "type": "command", "command": "procrun",
                        "args": ["/path/to/agent-watcher.lua"], "timeout": 5 }] }],
    "SessionEnd":    [{ "hooks": [{ "type": "command", "command": "procrun",
                        "args": ["/path/to/agent-watcher.lua"], "timeout": 2 }] }]
  }

  procrun agent-watcher.lua --list [--json]   # the tracked sessions and agents
]]
local pm = require "procmon"

local tracker = assert(pm.session.tracker{ ttl = 6 * 3600 })

local function sorted_agents(rec)
  local list = {}
  for id, a in pairs(rec.agents or {}) do
    list[#list + 1] = { id = id, agent_type = a.agent_type, started_at = a.started_at }
  end
  table.sort(list, function(a, b) return (a.started_at or 0) < (b.started_at or 0) end)
  return list
end

local function list(as_json)
  local sessions = tracker:list()
  if as_json then
    io.stdout:write(pm.json.encode(setmetatable(sessions, pm.json.array_mt)), "\n")
    return
  end
  local now = pm.time()
  for _, rec in ipairs(sessions) do
    local state = rec.ended_at and "ended" or "active"
    print(("%s  %-6s  %s  up %s"):format(rec.session_id, state, rec.model_id or "-",
      require("procmon.statusline").duration(now - rec.started_at)))
    for _, a in ipairs(sorted_agents(rec)) do
      print(("  %s  %s  running %ds"):format(a.id, a.agent_type or "?", math.floor(now - (a.started_at or now))))
    end
  end
  if #sessions == 0 then print("no tracked sessions") end
end

if arg and arg[1] == "--list" then
  list(arg[2] == "--json")
  return
end

pm.hook.run(function(ev)
  local rec = assert(tracker:track(ev))
  if ev.hook_event_name ~= "SubagentStart" then return nil end
  local others = #sorted_agents(rec) - 1
  if others <= 0 then return nil end
  local text = others == 1 and "1 other subagent of this session is still running."
    or ("%d other subagents of this session are still running."):format(others)
  return { context = text }
end, { name = "agent-watcher.lua" })
