-- Capture benchmark: the child's whole stdout into Result.stdout.
-- usage: procrun capture.lua CMD [ARGS...]
-- Prints: elapsed seconds, bytes, MB/s, own peak RSS (KiB, VmHWM).
local pm = require "procmon"
local cmd = { table.unpack(arg, 1) }
local t0 = pm.time()
local r = assert(pm.run(cmd, { max_buffer = 512 * 1024 * 1024, stderr = "inherit" }))
local dt = pm.time() - t0
assert(r.code == 0 and not r.truncated, "capture failed")
local len = #r.stdout
local f = assert(io.open("/proc/self/status"))
local hwm = f:read("a"):match("VmHWM:%s*(%d+)")
f:close()
print(("%.6f %d %.1f %s"):format(dt, len, len / dt / 1e6, hwm))
