#!/usr/bin/env procrun
--[[
session-start.lua: the plugin's SessionStart hook. Tracks the session
(pm.session.tracker, in procmon's cache) and, when other Claude Code sessions
are active in the same project, tells Claude (additionalContext), so it
expects files to change under it. No output otherwise.

In hooks/hooks.json:
  "SessionStart": [{ "hooks": [{ "type": "command", "command": "procrun",
      "args": ["${CLAUDE_PLUGIN_ROOT}/scripts/session-start.lua"], "timeout": 5 }] }]
]]
local pm = require "procmon"

pm.hook.run(function(ev)
  local tracker = assert(pm.session.tracker{ ttl = 6 * 3600 })
  local rec = assert(tracker:track(ev))
  local project = os.getenv("CLAUDE_PROJECT_DIR") or rec.cwd
  local others = 0
  for _, s in ipairs(tracker:list()) do
    if s.session_id ~= rec.session_id and not s.ended_at and project
      and (s.project_dir == project or s.cwd == project) then
      others = others + 1
    end
  end
  if others == 0 then return nil end
  return { context = ("procrun: %d other Claude Code session%s active in %s; files may change "
    .. "while you work."):format(others, others == 1 and " is" or "s are", project) }
end, { name = "session-start.lua" })
