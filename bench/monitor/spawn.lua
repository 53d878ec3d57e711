-- Throughput of monitored against plain spawns, measured in one process,
-- alternating: BLOCKS times, N/BLOCKS x /bin/true through pm.run, then
-- through mon:run, K at a time (K tasks sharing the jobs), so that the
-- machine's load drifts alike on both.
--   procrun spawn.lua N K DIR [BLOCKS]
-- Prints: plain seconds, monitored seconds (totals), spawns per second of each.
local pm = require "procmon"
local n, k, dir, blocks = tonumber(arg[1] or 1000), tonumber(arg[2] or 8), arg[3], tonumber(arg[4] or 10)
local mon = assert(pm.monitor { dir = dir })
local function batch(m, count)
  local left = count
  local function worker()
    while left > 0 do
      left = left - 1
      local r = m and m:run({ "/bin/true" }) or pm.run({ "/bin/true" })
      assert(r.code == 0)
    end
  end
  local t0 = pm.clock()
  local tasks = {}
  for i = 1, k do tasks[i] = pm.task(worker) end
  for i = 1, k do tasks[i]:wait() end
  return pm.clock() - t0
end
local plain, monitored = 0, 0
for _ = 1, blocks do
  plain = plain + batch(nil, n // blocks)
  monitored = monitored + batch(mon, n // blocks)
end
local done = n // blocks * blocks
print(("%.6f %.6f %.1f %.1f"):format(plain, monitored, done / plain, done / monitored))
