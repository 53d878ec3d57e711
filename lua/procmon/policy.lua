--- procmon.policy: what a monitor does around a job's start and exit.
---
--- A policy is a plain table with up to two hooks, called by the monitor:
---
---   policy:before_start(job)        before the job's first start; may
---                                   block (inside a task it yields); may
---                                   return a function, called once the
---                                   start record is written (to release
---                                   what it holds, e.g. a lock)
---   policy:after_exit(job, result)  after each run; returns the seconds
---                                   to wait before restarting, or nil to
---                                   let the job end
---
--- `job` is the MonitoredProcess: job.id, job.record (as last written),
--- job.restarts, job.last_status ("completed", "failed", "timed_out",
--- "killed"), job.monitor. Policies combine: `policy = { a, b }` runs every
--- before_start in order; the first after_exit that returns a delay wins.
--- A job stopped on purpose (job:kill, <close>, `procrun kill`, a replace)
--- is never restarted, whatever the policy says.
local pm = require "procmon"
local md = require "procmon.mondir"

local M = {}

--- Misuse raises at the line that called the policy's constructor;
--- `depth` counts the helpers between that constructor and this function.
local function arg_error(fname, msg, depth)
  error(("bad argument #1 to '%s' (%s)"):format(fname, msg), 3 + (depth or 0))
end

local function check_num(fname, name, v, default, integer)
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v < 0 or v == math.huge and integer
    or (integer and math.type(v) ~= "integer") then
    arg_error(fname, ("'%s' must be a non-negative %s"):format(name, integer and "integer" or "number"), 1)
  end
  return v
end

-- The options each constructor takes (types/library declares the same:
-- spec/types_spec.lua compares them).
local RESTART_OPTIONS = { max = true, when = true, backoff = true }
local BACKOFF_OPTIONS = { initial = true, factor = true, max = true }
local KEYED_OPTIONS = { key = true, replace = true, limit = true, grace = true }

local function check_options(fname, opts, known, prefix)
  for k in pairs(opts) do
    if not known[k] then
      arg_error(fname, ("unknown option '%s%s'"):format(prefix or "", tostring(k)), 1)
    end
  end
end

-- {=== restart ===}

local Restart = {}
Restart.__index = Restart

--- The delay before restart number `n` (0-based): initial * factor^n,
--- at most `max`.
function Restart:delay(n)
  local b = self.backoff
  return math.min(b.initial * b.factor ^ n, b.max)
end

function Restart:after_exit(job)
  if job.restarts >= self.max then return nil end
  if self.when == "failure" and job.last_status == "completed" then return nil end
  return self:delay(job.restarts)
end

--- restart{ max = 10, when = "failure"|"always", backoff = { initial = 1,
--- factor = 2, max = 30 } }: restarts the job after it exits (on failure:
--- a non-zero exit, a signal, a timeout; always: any exit), waiting
--- initial, initial*factor, ... seconds (at most backoff.max), at most
--- `max` times. One record for the whole job; `restarts` counts.
function M.restart(opts)
  if opts ~= nil and type(opts) ~= "table" then arg_error("restart", "table expected") end
  opts = opts or {}
  check_options("restart", opts, RESTART_OPTIONS)
  local when = opts.when or "failure"
  if when ~= "failure" and when ~= "always" then
    arg_error("restart", "'when' must be \"failure\" or \"always\"")
  end
  local b = opts.backoff or {}
  if type(b) ~= "table" then arg_error("restart", "'backoff' must be a table") end
  check_options("restart", b, BACKOFF_OPTIONS, "backoff.")
  local backoff = {
    initial = check_num("restart", "backoff.initial", b.initial, 1),
    factor = check_num("restart", "backoff.factor", b.factor, 2),
    max = check_num("restart", "backoff.max", b.max, 30),
  }
  return setmetatable({ kind = "restart", when = when, backoff = backoff,
    max = check_num("restart", "max", opts.max, 10, true) }, Restart)
end

-- }===

-- {=== keyed runs ===}

local Keyed = {}
Keyed.__index = Keyed

local function now() return pm.clock and pm.clock() or pm.time() end

--- Waits until none of `recs` runs any more: its process gone and its end
--- recorded (by its owner, or as lost). After `grace` seconds the groups
--- still alive get SIGKILL; an owner that does not record the end within
--- two more seconds is not waited for.
local function wait_gone(mon, recs, grace)
  local start, killed = now(), false
  while true do
    local left = 0
    for _, rec in ipairs(recs) do
      local cur = mon:get(rec.id)
      if cur and cur.status == "running" then
        left = left + 1
        if killed and rec.pid then
          md.kill(rec.pid, rec.start_time or 0, rec.pgid or rec.pid, "KILL")
        end
      end
    end
    local waited = now() - start
    if left == 0 or waited > grace + 2 then return end
    if not killed and waited >= grace then killed = true else pm.sleep(0.02) end
  end
end

--- replace: stop the live runs of the key (any process), then start.
function Keyed:_replace(job)
  local mon = job.monitor
  while true do
    local lock = assert(mon:_lock())
    local live = mon:_live_with_key(self.key)
    if #live == 0 then return function() lock:unlock() end end
    for _, rec in ipairs(live) do
      mon:_stop_record(rec, "replaced by " .. job.id, "TERM")
    end
    lock:unlock()
    wait_gone(mon, live, self.grace)
  end
end

--- limit: wait until fewer than `limit` runs of the key are live.
function Keyed:_limit(job)
  local mon, pause = job.monitor, 0.02
  while true do
    local lock = assert(mon:_lock())
    if #mon:_live_with_key(self.key) < self.limit then
      return function() lock:unlock() end
    end
    lock:unlock()
    pm.sleep(pause)
    pause = math.min(pause * 1.5, 0.5)
  end
end

function Keyed:before_start(job)
  if self.replace then return self:_replace(job) end
  return self:_limit(job)
end

--- keyed{ key = "lint:" .. file, replace = true } or keyed{ key, limit = n }:
--- runs that share a key, across every process using the monitor's
--- directory. replace: a new run stops the live ones first (TERM, then
--- KILL after `grace` seconds, default 2; they end `killed`, reason
--- "replaced"). limit: at most n live at once; a new run waits its turn
--- (blocking, or yielding inside a task). Without either: limit = 1.
--- Checking and starting happen under the directory's lock.
function M.keyed(opts)
  if type(opts) ~= "table" then arg_error("keyed", "table expected") end
  check_options("keyed", opts, KEYED_OPTIONS)
  if type(opts.key) ~= "string" then arg_error("keyed", "'key' must be a string") end
  if opts.replace ~= nil and type(opts.replace) ~= "boolean" then
    arg_error("keyed", "'replace' must be a boolean")
  end
  local limit = check_num("keyed", "limit", opts.limit, 1, true)
  if limit < 1 then arg_error("keyed", "'limit' must be at least 1") end
  if opts.replace and opts.limit then arg_error("keyed", "'replace' and 'limit' exclude each other") end
  return setmetatable({ kind = "keyed", key = opts.key, replace = opts.replace == true,
    limit = limit, grace = check_num("keyed", "grace", opts.grace, 2) }, Keyed)
end

-- }===

return M
