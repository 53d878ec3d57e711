-- Cache benchmark: N sets, then N gets, of a small record over KEYS keys,
-- through procmon.cache (the same work as cache_floor.c plus encoding,
-- decoding, expiry and the checks).
--   cache_bench.lua DIR N KEYS [durable]  ->  "<set seconds> <get seconds>"
require "procmon"
local cache = require "procmon.cache"
local store = require "procmon.store"

local dir, n, nkeys = arg[1], tonumber(arg[2]), tonumber(arg[3])
local c = assert(cache.open(dir, { durable = arg[4] == "durable" }))
local keys = {}
for i = 0, nkeys - 1 do keys[i] = "key:" .. i end
local record = { pid = 4242, name = "build", status = "running",
  started_at = 1732600000.25, cmd = { "make", "-j8" } }

local t0 = store.now()
for i = 0, n - 1 do
  assert(c:set(keys[i % nkeys], record, 3600))
end
local t1 = store.now()
for i = 0, n - 1 do
  if not c:get(keys[i % nkeys]) then error("miss") end
end
local t2 = store.now()
io.write(("%.6f %.6f\n"):format(t1 - t0, t2 - t1))
