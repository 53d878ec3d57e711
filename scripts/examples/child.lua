#!/usr/bin/env procrun
--[[
child.lua: reads the metadata its parent passed (see parent.lua) and prints
it, one field a line. Exits 0 with "no metadata" when there is none, 2 with
an error on stderr when it is malformed. Run by parent.lua; by hand:

  PROCESS_SESSION_ID=s1 PROCESS_CONFIG='{"retries":3}' procrun child.lua
]]
local pm = require "procmon"

local meta, err = pm.env.decode()
if not meta then
  if err then
    io.stderr:write("child.lua: ", err, "\n")
    os.exit(2)
  end
  print("no metadata")
  return
end
print("parent_pid: " .. tostring(meta.parent_pid))
print("session_id: " .. tostring(meta.session_id))
print("task_id: " .. tostring(meta.task_id))
print("config: " .. (meta.config and pm.json.encode(meta.config) or "none"))
if meta.parent_pid then
  -- The parent is alive while it waits for us.
  local alive = io.open("/proc/" .. meta.parent_pid .. "/stat") ~= nil
  print("parent alive: " .. tostring(alive))
end
