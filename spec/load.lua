-- The load check (make check-load): 16 procrun processes at once, each
-- running 200 monitored children 8 at a time and counting every exit in
-- shared cache keys (cross-process locked updates). Afterwards every
-- record is consistent and every counter exact. Prints the figures;
-- exits 1 on the first inconsistency.
--   procrun spec/load.lua [WORKERS] [CHILDREN]
local pm = require "procmon"
local json = require "procmon.json"
local workers, children = tonumber(arg[1] or 16), tonumber(arg[2] or 200)
local here = arg[0]:match("^(.*)/[^/]*$") or "."
local lua = arg[-1]
local root = os.tmpname()
os.remove(root)
assert(os.execute("mkdir -m 700 " .. root))
local mon_dir, cache_dir = root .. "/mon", root .. "/cache"

local failures = 0
local function check(ok, what)
  if not ok then
    failures = failures + 1
    io.stderr:write("load: ", what, "\n")
    if failures > 20 then os.exit(1) end
  end
end

local t0 = pm.clock()
local jobs = {}
for w = 1, workers do
  jobs[w] = { { lua, here .. "/fixtures/load_worker.lua", mon_dir, cache_dir, tostring(w),
    tostring(children) } }
end
local results = pm.run_all(jobs, { concurrency = workers })
local elapsed = pm.clock() - t0

-- Every worker finished and listed its records.
local owner_of, n_ids = {}, 0
for w, r in ipairs(results) do
  check(r.ok, ("worker %d: %s %s"):format(w, r.reason, r.stderr))
  local out = r.ok and json.decode(r.stdout)
  if out then
    check(#out.ids == children, ("worker %d listed %d ids"):format(w, #out.ids))
    for i, id in ipairs(out.ids) do
      check(owner_of[id] == nil, "id used twice: " .. id)
      owner_of[id] = { pid = out.pid, i = i, w = w }
      n_ids = n_ids + 1
    end
  end
end

-- Counters: exact.
local cache = assert(pm.cache.open(cache_dir))
local total = workers * children
local failed_each = children // 5
check(cache:get("total") == total, ("total %s, want %d"):format(cache:get("total"), total))
check(cache:get("failed") == workers * failed_each,
  ("failed %s, want %d"):format(cache:get("failed"), workers * failed_each))
for w = 1, workers do
  check(cache:get("w" .. w) == children, ("w%d = %s"):format(w, cache:get("w" .. w)))
end

-- Records: one per child, finished, consistent with what the child did.
local mon = assert(pm.monitor { dir = mon_dir })
local history = mon:history()
check(#history == total, ("%d records, want %d"):format(#history, total))
check(#mon:active() == 0, "records still active")
for _, rec in ipairs(history) do
  local o = owner_of[rec.id]
  check(o ~= nil, "a record nobody started: " .. tostring(rec.id))
  if o then
    local code = o.i % 5 == 0 and 1 or 0
    check(rec.exit_code == code, ("%s: exit_code %s, want %d"):format(rec.id, rec.exit_code, code))
    check(rec.status == (code == 0 and "completed" or "failed"), rec.id .. ": status " .. rec.status)
    check(rec.reason == "exit", rec.id .. ": reason " .. tostring(rec.reason))
    check(rec.owner_pid == o.pid, rec.id .. ": owner_pid")
    check(rec.name == ("w%d-%d"):format(o.w, o.i), rec.id .. ": name " .. tostring(rec.name))
    check(type(rec.pid) == "number" and rec.started_at <= rec.ended_at, rec.id .. ": times")
  end
end
local p = io.popen("ls -A " .. mon_dir .. "/running")
local left = p:read("a")
p:close()
check(left == "", "files left in running/: " .. left)
os.execute("rm -rf " .. root)

print(("load: %d workers x %d monitored children = %d records, %d cache updates, in %.1f s "
  .. "(%.0f children/s, %.0f updates/s); %s"):format(workers, children, n_ids,
  total * 2 + workers * failed_each, elapsed, n_ids / elapsed,
  (total * 2 + workers * failed_each) / elapsed, failures == 0 and "all consistent" or "FAILED"))
os.exit(failures == 0 and 0 or 1)
