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
    local traced = debug.traceback(co, tostring(err))
    coroutine.close(co)  -- an error does not close its <close> variables
    core._raise_traced(traced)
  end
  if coroutine.status(co) == "dead" then finish(task) end
end

local check_interrupted = core._check_interrupted
local UNWIND = {}  -- resumes a waiting task with the host's interruption

-- What a task's await returns once resumed: the wake(...) values, or the
-- interruption raised at the caller's line (see M._unwind_tasks).
local function woken(task, first, ...)
  task._awaiting = nil
  if first == UNWIND then check_interrupted(1) end
  return first, ...
end

--- Blocks until `register(wake)` has `wake(...)` called: in a task by
--- yielding to the loop, elsewhere by running the loop. `register` may
--- return a cancel function, called once woken, and also when the wait
--- ends in an error (a callback's, raised by the loop): a wait that is
--- over leaves no waiter behind.
---@return any ...
local function await(what, register)
  check_interrupted(1)  -- once the host was signalled, no call blocks
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
    task._awaiting = true
    return woken(task, co_yield())
  end
  if core._in_callback() then
    error(what .. ": cannot block inside a callback (use procmon.task)", 3)
  end
  local res
  local cancel = register(function(...) if not res then res = pack(...) end end)
  local _ <close> = cancel and setmetatable({}, { __close = function() cancel() end })
  while not res do
    if not core._run_once() and not res then error(what .. ": nothing left to wait for", 3) end
  end
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

--- After a stop signal (procrun calls this once the main chunk or the loop
--- has raised the interruption): every task blocked in a call gets the
--- interruption raised there, so that its pcall handlers and <close>
--- variables run. Their errors are dropped (a signal reports none), and
--- tasks waiting for them are unwound in turn, not woken.
function M._unwind_tasks()
  local waiting = {}
  for _, task in pairs(tasks) do
    if task._awaiting then waiting[#waiting + 1] = task end
  end
  for _, task in ipairs(waiting) do
    if task._awaiting then
      task._awaiting = nil
      if not coroutine.resume(task._co, UNWIND) then coroutine.close(task._co) end
      if coroutine.status(task._co) == "dead" then
        task._done = true
        tasks[task._co] = nil
      end
    end
  end
end

--- Raises unless `self` is a Task (t.wait({}) is misuse, not a crash).
local function check_task(self, fname)
  if getmetatable(self) ~= Task then
    error(("bad argument #1 to '%s' (procmon.Task expected, got %s)"):format(fname, type(self)), 3)
  end
end

--- Waits for the task and returns what its function returned.
function Task:wait()
  check_task(self, "wait")
  check_interrupted(1)
  if self._done then return unpack(self._results or {}, 1, self._results and self._results.n or 0) end
  return await("wait", function(wake) self._waiters[#self._waiters + 1] = wake end)
end

function Task:done()
  check_task(self, "done")
  return self._done == true
end

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
local spawn, check_spawn = core.spawn, core._check_spawn

--- Raises unless `self` is a Process (p.wait({}) is misuse, not a crash).
local function check_process(self, fname)
  local mt = type(self) == "userdata" and getmetatable(self)
  if not (mt and mt.methods == Process) then
    error(("bad argument #1 to '%s' (procmon.Process expected, got %s)")
      :format(fname, type(self)), 3)
  end
end

--- Waits for the Result. With `timeout`, returns nil, msg, "ETIMEDOUT"
--- when it passes (the process keeps running).
---@return table|nil result
function Process:wait(timeout)
  check_process(self, "wait")
  check_seconds(timeout, 1, "wait")
  check_interrupted(1)
  local r = self:_result()
  if r then return r end
  return await("wait", function(wake)
    self:_on_settle(wake)
    local t = timeout and core._timer(timeout, function()
      wake(nil, ("wait: timed out after %gs"):format(timeout), "ETIMEDOUT")
    end)
    -- Called once woken, either way: a timed-out wait leaves no waiter.
    return function()
      if t then t:stop() end
      self:_off_settle(wake)
    end
  end)
end

function Process:result()
  check_process(self, "result")
  return self:_result()
end

--- Calls spawn(cmd, opts) for `fname`; misuse raises as `fname`'s own,
--- `level` above this function (spawn's message, under pcall, carries no
--- position and may name spawn oddly: only its argument and text are kept).
local function spawn_as(fname, level, cmd, opts)
  local ok, p, err, code = pcall(spawn, cmd, opts)
  if ok then return p, err, code end
  local n, detail = tostring(p):match("^bad argument #(%d+) to '[^']*' %((.*)%)$")
  if not n then error(p, 0) end
  error(("bad argument #%s to '%s' (%s)"):format(n, fname, detail), level + 1)
end

--- Writes to the child's stdin (stdin = "pipe"). Above 1 MiB queued for a
--- child that does not read, waits for it to read (yielding in a task,
--- running the loop elsewhere); in a plain callback, where it cannot wait,
--- returns nil, msg, "EAGAIN" instead. nil, msg, "EPIPE" once it is gone.
--- self:_write(data), whose misuse (a closed stdin...) raises at the line
--- that called p:write.
local function write_once(self, data)
  local ok, a, b, c = pcall(self._write, self, data)
  if ok then return a, b, c end
  if type(a) ~= "string" then error(a, 0) end
  error((a:gsub("^%[procmon%][^:]*:%d+: ", "")), 3)
end

function Process:write(data)
  check_process(self, "write")
  local t = type(data)
  if t ~= "string" and t ~= "number" then
    error(("bad argument #1 to 'write' (string expected, got %s)"):format(t), 2)
  end
  local ok, err, code = write_once(self, data)
  while ok == false do
    if not tasks[co_running()] and core._in_callback() then
      return nil, "write: the child's stdin queue is full (it does not read)", "EAGAIN"
    end
    await("write", function(wake)
      if not self:_on_drain(function() wake() end) then wake() end
    end)
    ok, err, code = write_once(self, data)
  end
  return ok, err, code
end

--- spawn + wait: the Result (stdout, stderr, code...), or nil, msg, code.
function M.run(cmd, opts)
  local p, err, code = spawn_as("run", 2, cmd, opts)
  if not p then return nil, err, code end
  return p:wait()
end

local run_all_options = { concurrency = true }

--- Checks run_all's arguments, every job included, before any job starts:
--- a misused job raises at the caller's line, and nothing runs.
local function check_run_all(jobs, opts)
  if type(jobs) ~= "table" then
    error("bad argument #1 to 'run_all' (table expected, got " .. type(jobs) .. ")", 3)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'run_all' (table expected, got " .. type(opts) .. ")", 3)
  end
  for k in pairs(opts or {}) do
    if not run_all_options[k] then
      error(("bad argument #2 to 'run_all' (unknown option '%s')"):format(tostring(k)), 3)
    end
  end
  local limit = opts and opts.concurrency or 8
  if math.type(limit) ~= "integer" or limit < 1 then
    error("bad argument #2 to 'run_all' (concurrency must be a positive integer)", 3)
  end
  for i = 1, #jobs do
    local job = jobs[i]
    if type(job) ~= "table" then
      error(("bad argument #1 to 'run_all' (job %d: {cmd, opts} expected)"):format(i), 3)
    end
    if job[2] ~= nil and type(job[2]) ~= "table" then
      error(("bad argument #1 to 'run_all' (job %d: options must be a table, got %s)")
        :format(i, type(job[2])), 3)
    end
    local ok, err = pcall(check_spawn, job[1], job[2])
    if not ok then
      local detail = tostring(err):match("^bad argument #%d+ to '[^']*' %((.*)%)$")
      error(("bad argument #1 to 'run_all' (job %d: %s)"):format(i, detail or tostring(err)), 3)
    end
  end
  return limit
end

--- The job's options with an on_exit that reports to run_all. The user's
--- own on_exit runs first; if it raises, run_all stops (`fail`).
local function job_opts(opts, done, fail)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  local user = o.on_exit
  o.on_exit = function(r)
    if user then
      local ok, err = xpcall(user, debug.traceback, r)
      if not ok then return fail(err) end
    end
    done(r)
  end
  return o
end

local close_process  -- the Process __close: kill_signal, SIGKILL after kill_grace

--- Runs the jobs {cmd, opts}, at most `concurrency` at once (default 8).
--- Results come back in input order; a job that could not start gets
--- { ok = false, cmd = cmd, error = msg, error_code = code }. When a job's
--- on_exit raises (or the wait is interrupted), the jobs still running are
--- stopped, no more start, and the error is raised again.
function M.run_all(jobs, opts)
  local limit = check_run_all(jobs, opts)
  if not tasks[co_running()] and core._in_callback() then
    error("run_all: cannot block inside a callback (use procmon.task)", 2)
  end
  local n, results, procs = #jobs, {}, {}
  local started, finished, running, failure = 0, 0, 0, nil
  local function stop_all()
    for i, p in pairs(procs) do
      procs[i] = nil
      close_process = close_process or getmetatable(p).__close
      close_process(p, nil)
    end
  end
  local ok, err = pcall(await, "run_all", function(wake)
    local start_more
    local function fail(e)
      if failure then return end
      failure = e
      stop_all()
      wake()
    end
    local function done(i, r)
      procs[i], results[i] = nil, r
      running, finished = running - 1, finished + 1
      if failure then return end
      if finished == n then wake() else start_more() end
    end
    function start_more()
      while not failure and running < limit and started < n do
        started = started + 1
        running = running + 1
        local i, job = started, jobs[started]
        local p, err, code = spawn(job[1], job_opts(job[2], function(r) done(i, r) end, fail))
        if p then
          procs[i] = p
        else
          done(i, { ok = false, cmd = job[1], error = err, error_code = code })
        end
      end
    end
    if n == 0 then wake() else start_more() end
  end)
  if not ok then
    stop_all()  -- interrupted, or a callback's error re-raised by the loop
    error(err, 0)
  end
  if failure then core._raise_traced(failure) end
  return results
end

-- {=== lazily loaded parts ===}

local lazy = {
  cache = "procmon.cache", json = "procmon.json", env = "procmon.env",
  session = "procmon.session", hook = "procmon.hook", statusline = "procmon.statusline",
  monitor = "procmon.monitor", policy = "procmon.policy",
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
