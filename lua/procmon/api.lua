-- The public procmon table: the C primitives of procmon.core plus what is
-- simpler in Lua: blocking calls that yield inside tasks, run, run_all,
-- and the lazily loaded submodules.
local core = require "procmon.core"

local M = core
local pack, unpack = table.pack, table.unpack
local co_running, co_yield = coroutine.running, coroutine.yield

-- {=== tasks and blocking ===}

local tasks = setmetatable({}, { __mode = "k" })  -- coroutine -> Task

---@class procmon.Task
local Task = {}
Task.__index = Task

local function finish(task)
  task._done = true
  tasks[task._co] = nil
  local waiters = task._waiters
  task._waiters = nil
  for i = 1, #waiters do waiters[i](unpack(task._results, 1, task._results.n)) end
end

-- Resumes a task. Its error is raised in the resumer (a callback, so the
-- loop stops and the driver re-raises it) with the task's traceback.
local function resume(task, ...)
  local co = task._co
  local ok, err = coroutine.resume(co, ...)
  if not ok then
    task._done = true
    tasks[co] = nil
    core._raise_traced(debug.traceback(co, tostring(err)))
  end
  if coroutine.status(co) == "dead" then finish(task) end
end

--- Blocks until `register(wake)` has `wake(...)` called: in a task by
--- yielding to the loop, elsewhere by running the loop. `register` may
--- return a cancel function, called once woken.
---@return any ...
local check_interrupted = core._check_interrupted

local function await(what, register)
  check_interrupted(2)  -- once the host was signalled, no call blocks
  local task = tasks[co_running()]
  if task then
    local state, early, cancel = "registering", nil, nil
    cancel = register(function(...)
      if state == "woken" then return end
      local was = state
      state = "woken"
      if cancel then cancel() end
      if was == "waiting" then resume(task, ...) else early = pack(...) end
    end)
    if early then
      if cancel then cancel() end
      return unpack(early, 1, early.n)
    end
    state = "waiting"
    return co_yield()
  end
  if core._in_callback() then
    error(what .. ": cannot block inside a callback (use procmon.task)", 3)
  end
  local res
  local cancel = register(function(...) if not res then res = pack(...) end end)
  while not res do
    if not core._run_once() and not res then error(what .. ": nothing left to wait for", 3) end
  end
  if cancel then cancel() end
  return unpack(res, 1, res.n)
end
M._await = await

--- Runs `fn(...)` in a coroutine; blocking calls inside it yield to the loop.
---@param fn function
---@return procmon.Task
function M.task(fn, ...)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'task' (function expected, got " .. type(fn) .. ")", 2)
  end
  local task = setmetatable({ _waiters = {} }, Task)
  task._co = coroutine.create(function(...) task._results = pack(fn(...)) end)
  tasks[task._co] = task
  resume(task, ...)
  return task
end

--- Waits for the task and returns what its function returned.
function Task:wait()
  check_interrupted(1)
  if self._done then return unpack(self._results or {}, 1, self._results and self._results.n or 0) end
  return await("wait", function(wake) self._waiters[#self._waiters + 1] = wake end)
end

function Task:done() return self._done == true end

local function check_seconds(v, n, fname)
  if v ~= nil and (type(v) ~= "number" or v < 0 or v ~= v) then
    error(("bad argument #%d to '%s' (non-negative number expected, got %s)")
      :format(n, fname, type(v) == "number" and tostring(v) or type(v)), 3)
  end
end

--- Sleeps for `seconds`, letting the loop (and other tasks) run.
function M.sleep(seconds)
  check_seconds(seconds, 1, "sleep")
  if seconds == nil then error("bad argument #1 to 'sleep' (number expected, got no value)", 2) end
  return await("sleep", function(wake)
    local t = core._timer(seconds, wake)
    return function() t:stop() end
  end)
end

local loop = core.loop
--- Runs the loop until nothing is pending (procrun does this after the
--- main chunk; a script under a stock lua5.4 calls it).
function M.loop()
  if tasks[co_running()] then error("loop: cannot run the loop inside a task", 2) end
  return loop()
end

-- {=== processes ===}

local Process = core._Process

--- Waits for the Result. With `timeout`, returns nil, msg, "ETIMEDOUT"
--- when it passes (the process keeps running).
---@return table|nil result
function Process:wait(timeout)
  check_seconds(timeout, 1, "wait")
  check_interrupted(1)
  local r = self:_result()
  if r then return r end
  return await("wait", function(wake)
    self:_on_settle(wake)
    if timeout then
      local t = core._timer(timeout, function()
        wake(nil, ("wait: timed out after %gs"):format(timeout), "ETIMEDOUT")
      end)
      return function() t:stop() end
    end
  end)
end

function Process:result() return self:_result() end

--- spawn + wait: the Result (stdout, stderr, code...), or nil, msg, code.
function M.run(cmd, opts)
  local p, err, code = core.spawn(cmd, opts)
  if not p then return nil, err, code end
  return p:wait()
end

local function job_opts(opts, on_exit)
  local o = {}
  if opts ~= nil then
    if type(opts) ~= "table" then error("bad argument #1 to 'run_all' (job options must be a table)", 4) end
    for k, v in pairs(opts) do o[k] = v end
  end
  local user = o.on_exit
  o.on_exit = function(r)
    if user then user(r) end
    on_exit(r)
  end
  return o
end

local function check_jobs(jobs, opts)
  if type(jobs) ~= "table" then
    error("bad argument #1 to 'run_all' (table expected, got " .. type(jobs) .. ")", 3)
  end
  for i = 1, #jobs do
    if type(jobs[i]) ~= "table" then
      error(("bad argument #1 to 'run_all' (job %d: {cmd, opts} expected)"):format(i), 3)
    end
  end
  local limit = opts and opts.concurrency or 8
  if math.type(limit) ~= "integer" or limit < 1 then
    error("bad argument #2 to 'run_all' (concurrency must be a positive integer)", 3)
  end
  return limit
end

--- Runs the jobs {cmd, opts}, at most `concurrency` at once (default 8).
--- Results come back in input order; a job that could not start gets
--- { ok = false, cmd = cmd, error = msg, error_code = code }.
function M.run_all(jobs, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'run_all' (table expected, got " .. type(opts) .. ")", 2)
  end
  local limit = check_jobs(jobs, opts)
  local n, results, started, finished, running = #jobs, {}, 0, 0, 0
  return await("run_all", function(wake)
    local start_more
    local function done(i, r)
      results[i] = r
      running, finished = running - 1, finished + 1
      if finished == n then wake(results) else start_more() end
    end
    function start_more()
      while running < limit and started < n do
        started = started + 1
        running = running + 1
        local i, job = started, jobs[started]
        local p, err, code = core.spawn(job[1], job_opts(job[2], function(r) done(i, r) end))
        if not p then done(i, { ok = false, cmd = job[1], error = err, error_code = code }) end
      end
    end
    if n == 0 then wake(results) else start_more() end
  end)
end

-- {=== lazily loaded parts ===}

local lazy = {
  cache = "procmon.cache", json = "procmon.json", env = "procmon.env",
  session = "procmon.session", hook = "procmon.hook", statusline = "procmon.statusline",
}

function M.state_dir() return require("procmon.sys").state_dir() end

return setmetatable(M, {
  __index = function(t, k)
    local name = lazy[k]
    if name == nil then return nil end
    local mod = require(name)
    rawset(t, k, mod)
    return mod
  end,
})
