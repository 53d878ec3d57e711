#!/usr/bin/env procrun
--[[
session-end.lua: the plugin's SessionEnd hook. Marks the session ended in
the tracker, then starts the cache clean-up (expired entries) as a detached
background job and exits at once: all SessionEnd hooks share a 1.5 s budget,
and Claude Code waits for a hook's stdout and stderr to reach EOF, so the job
runs in its own session with its stdio on /dev/null.

In hooks/hooks.json:
  "SessionEnd": [{ "hooks": [{ "type": "command", "command": "procrun",
      "args": ["${CLAUDE_PLUGIN_ROOT}/scripts/session-end.lua"], "timeout": 2 }] }]
]]
local pm = require "procmon"

pm.hook.run(function(ev)
  local tracker = assert(pm.session.tracker{ ttl = 6 * 3600 })
  assert(tracker:track(ev))
  -- The same interpreter (procrun, or lua5.4 with procmon.so) purges the cache.
  assert(pm.spawn({ arg[-1], "-e", "assert(require('procmon').cache.open()):purge()" },
    { detached = true, name = "procrun cache purge" }))
  return nil
end, { name = "session-end.lua" })
