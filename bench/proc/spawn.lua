-- Spawn benchmark: N x /bin/true through pm.run_all, K at a time.
-- usage: procrun spawn.lua [N] [K] [default|null]
--   default: the options a user writes ({}: stdout and stderr captured)
--   null:    stdout = "null", stderr = "null" (no pipes at all)
-- Prints: elapsed seconds, spawns per second.
local pm = require "procmon"
local n, k, mode = tonumber(arg[1] or 1000), tonumber(arg[2] or 8), arg[3] or "default"
local opts = mode == "null" and { stdout = "null", stderr = "null" } or nil
local jobs = {}
for i = 1, n do jobs[i] = { { "/bin/true" }, opts } end
local t0 = pm.time()
local rs = pm.run_all(jobs, { concurrency = k })
local dt = pm.time() - t0
for i = 1, n do assert(rs[i].code == 0, "child failed") end
print(("%.6f %.1f"):format(dt, n / dt))
