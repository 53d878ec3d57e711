-- 1,000 concurrently monitored (or plain) `sleep` children: starts them all,
-- then prints procrun's own peak RSS (VmHWM, KiB) once all run, and the
-- seconds the starts took; then stops them.
--   procrun many.lua [N] [monitor|plain] [DIR]
local pm = require "procmon"
local n, mode, dir = tonumber(arg[1] or 1000), arg[2] or "monitor", arg[3]
local mon = mode == "monitor" and assert(pm.monitor { dir = dir }) or nil
local ps = {}
local t0 = pm.time()
for i = 1, n do
  local opts = { stdout = "null", stderr = "pipe", name = "s" .. i }
  ps[i] = assert(mon and mon:spawn({ "sleep", "30" }, opts) or pm.spawn({ "sleep", "30" }, opts))
end
local dt = pm.time() - t0
if mon then assert(#mon:active() == n, "not all running") end
local hwm
for line in io.lines("/proc/self/status") do
  hwm = hwm or tonumber(line:match("^VmHWM:%s*(%d+)"))
end
print(("%d %.6f"):format(hwm, dt))
for i = 1, n do ps[i]:kill("KILL") end
for i = 1, n do ps[i]:wait() end
