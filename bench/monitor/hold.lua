-- Runs K monitored `sleep S` children in DIR and waits for them (the
-- running records that `ps` lists while the benchmark runs).
--   procrun hold.lua DIR K S
local pm = require "procmon"
local dir, k, s = arg[1], tonumber(arg[2] or 20), arg[3] or "60"
local mon = assert(pm.monitor { dir = dir })
for i = 1, k do assert(mon:spawn({ "sleep", s }, { name = "held" .. i, stdout = "null" })) end
io.stdout:write("ready\n")
io.stdout:flush()
