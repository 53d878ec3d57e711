-- Line benchmark: every line of the child's stdout through a Lua callback
-- (on_stdout with lines = true) that counts them.
-- usage: procrun lines.lua CMD [ARGS...]
-- BENCH_GC=generational switches the collector first (lua5.4's own default;
-- procrun starts in incremental mode), to show what that costs.
-- Prints: elapsed seconds, lines, lines per second.
local pm = require "procmon"
if os.getenv("BENCH_GC") then collectgarbage(os.getenv("BENCH_GC")) end
local cmd = { table.unpack(arg, 1) }
local n = 0
local t0 = pm.time()
local r = assert(pm.run(cmd, { lines = true, on_stdout = function(line) n = n + 1 end }))
local dt = pm.time() - t0
assert(r.code == 0, "child failed")
print(("%.6f %d %.0f"):format(dt, n, n / dt))
