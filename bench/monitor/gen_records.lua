-- Writes N finished records (expiring in a day) into the monitor directory
-- DIR, in the monitor's own format, as files the monitor would write.
--   procrun gen_records.lua DIR N
local pm = require "procmon"
local monitor = require "procmon.monitor"
local json = require "procmon.json"
local md = require "procmon.mondir"
local dir, n = arg[1], tonumber(arg[2] or 10000)
local mon = assert(pm.monitor { dir = dir })
local d = mon._d
local pid, start, boot = md.self()
local now = pm.time()
for i = 1, n do
  local t0 = now - 3600 + i * 0.1
  local id = md.new_id()
  local rec = { id = id, name = "job" .. i, status = i % 7 == 0 and "failed" or "completed",
    pid = 100000 + i, pgid = 100000 + i, cmd = { "make", "-C", "dir" .. i, "all" },
    cwd = "/home/user/src/project", started_at = t0, ended_at = t0 + 2.5,
    exit_code = i % 7 == 0 and 2 or 0, reason = "exit", restarts = 0,
    stderr = i % 7 == 0 and "make: *** [all] Error 2\n" or nil, owner_pid = pid,
    owner_start_time = start, start_time = start + i, boot_id = boot, detached = false,
    expires_at = now + 86400,
    runs = { { pid = 100000 + i, started_at = t0, ended_at = t0 + 2.5, exit_code = 0, reason = "exit" } } }
  assert(d:write("done", id, monitor._encode(rec), "create"))
end
