-- Throughput of monitored against plain spawns: N x /bin/true, K at a
-- time (K tasks each running its share), through mon:run or pm.run.
--   procrun spawn.lua N K monitor|plain [DIR]
-- Prints: elapsed seconds, spawns per second.
local pm = require "procmon"
local n, k, mode, dir = tonumber(arg[1] or 1000), tonumber(arg[2] or 8), arg[3] or "plain", arg[4]
local mon = mode == "monitor" and assert(pm.monitor { dir = dir }) or nil
local next_i = 0
local function worker()
  while next_i < n do
    next_i = next_i + 1
    local r = mon and mon:run({ "/bin/true" }) or pm.run({ "/bin/true" })
    assert(r.code == 0)
  end
end
local t0 = pm.time()
local tasks = {}
for i = 1, k do tasks[i] = pm.task(worker) end
for i = 1, k do tasks[i]:wait() end
local dt = pm.time() - t0
print(("%.6f %.1f"):format(dt, n / dt))
