#!/usr/bin/env procrun
--[[
parent.lua: passes metadata to a child through the environment
(PROCESS_PARENT_PID, PROCESS_SESSION_ID, PROCESS_TASK_ID, PROCESS_CONFIG, the
names the Bun plugins use), runs child.lua and prints what the child saw.

  procrun parent.lua [SESSION_ID]          # a session id of your choice
  procrun parent.lua < payload.json        # or from a Claude Code payload

As a Claude Code hook (the session id comes from the payload on stdin), in
~/.claude/settings.json:

  "hooks": { "SessionStart": [{ "hooks": [{ "type": "command", "command": "procrun",
      "args": ["/path/to/parent.lua"], "timeout": 10 }] }] }
]]
local pm = require "procmon"

local session_id = arg[1]
if not session_id then
  -- A payload on stdin if there is one; a short deadline for a terminal.
  local data = pm.session.read{ timeout = 0.2 }
  session_id = data and data.session_id or "no-session"
end

local here = arg[0]:match("^(.*)/[^/]+$") or "."
local env = pm.env.encode{
  session_id = session_id,
  task_id = "example-1",
  config = { greeting = "hello from the parent",
             retries = 2, context_window_size = 200000, tags = { "demo", "env" } },
}
-- The child runs with the same interpreter as this script (procrun or lua5.4).
local r = assert(pm.run({ arg[-1], here .. "/child.lua" }, { env = env, timeout = 10 }))
io.stderr:write(r.stderr or "")
io.stdout:write(r.stdout)
os.exit(r.code or 1)
