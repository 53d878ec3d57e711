--- procmon.monitor: persisted process records that any process can list.
---
--- `pm.monitor{...}` opens a monitor directory (default: <state dir>/monitor);
--- `mon:spawn` starts a process as `pm.spawn` does and keeps a record of it
--- in that directory: one JSON file, written atomically when it starts,
--- when it restarts and when it ends. Every process using the same
--- directory sees every record (`mon:active()`, `procrun ps`); liveness is
--- pid *and* start time, so a reused pid is never taken for the original,
--- and a record whose process vanished without a recorded end is `lost`.
---
--- The file work, the sort and the /proc checks are C (procmon.mondir);
--- this file holds what a record means, the events and the policies' hooks.
local pm = require "procmon"
local core = require "procmon.core"
local json = require "procmon.json"
local md = require "procmon.mondir"

local M = {}
local null = json.null

local DEFAULT_TTL_DONE = 3600
local DEFAULT_TAIL = 4096
local DEFAULT_LOG_MAX = 10 * 1024 * 1024
local KEEP_RUNS = 10        -- runs kept in a record's history

local EVENTS = { start = true, exit = true, failure = true, timeout = true,
                 restart = true, lost = true }

-- Record fields, in the order they are written (files stay readable).
local FIELDS = { "id", "name", "status", "pid", "pgid", "cmd", "cwd", "started_at",
  "ended_at", "exit_code", "signal", "reason", "restarts", "stderr", "owner_pid",
  "session_id", "task_id", "key", "log", "detached", "start_time",
  "owner_start_time", "boot_id", "expires_at", "next_start_at", "error", "runs" }

-- Jobs this Lua state runs, by record id (all monitors): a record owned by
-- this process whose job is not here any more is lost.
local tracked = {}
local owner_exit

-- {=== records ===}

--- Encodes a record as one line of JSON, fields in a fixed order.
local KEYS = {}
for i, k in ipairs(FIELDS) do KEYS[i] = (i == 1 and '{"' or ',"') .. k .. '":' end

local json_encode, math_type, tostring_ = json.encode, math.type, tostring

--- Encodes a record as one line of JSON, fields in a fixed order (nil is
--- null; integers and booleans need no codec call: a spawn writes two).
local function encode(rec)
  local parts = {}
  for i = 1, #FIELDS do
    local v = rec[FIELDS[i]]
    local s
    if v == nil or v == null then s = "null"
    elseif v == true or v == false or math_type(v) == "integer" then s = tostring_(v)
    else s = json_encode(v) end
    parts[2 * i - 1], parts[2 * i] = KEYS[i], s
  end
  parts[#parts + 1] = "}\n"
  return table.concat(parts)
end
M._encode = encode

local function denull(t)
  for k, v in pairs(t) do
    if v == null then t[k] = nil end
  end
  return t
end

--- Decodes a record file's text; nulls become nil. nil if it is not one.
local function decode(text)
  local rec = json.decode(text)
  if type(rec) ~= "table" or type(rec.id) ~= "string" then return nil end
  denull(rec)
  if type(rec.runs) == "table" then
    for _, run in ipairs(rec.runs) do
      if type(run) == "table" then denull(run) end
    end
  end
  return rec
end
M._decode = decode

-- {=== events ===}

--- Calls every handler of `event`; an error is kept (the first one, with
--- its traceback) and returned, so that the caller finishes its work first.
local function fire(mon, event, ...)
  local first
  for _, fn in ipairs(mon._handlers[event]) do
    local ok, err = xpcall(fn, debug.traceback, ...)
    if not ok and not first then first = err end
  end
  return first
end

--- Raises a handler's error (it carries its traceback already).
local function reraise(err)
  if err then core._raise_traced(err) end
end

-- {=== the Monitor ===}

---@class procmon.Monitor
---@field dir string        the monitor directory
---@field ttl_done number   seconds a finished record is kept
---@field stderr_tail integer bytes of stderr kept in a record
local Monitor = {}
Monitor.__index = Monitor
Monitor.__name = "procmon.Monitor"

local function arg_error(n, fname, msg, level)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), level + 1)
end

local function check_self(self, fname)
  if getmetatable(self) ~= Monitor then
    error(("calling '%s' on bad self (procmon.Monitor expected, got %s)")
      :format(fname, type(self)), 3)
  end
end

--- The job's log path for `log = true` or a path.
local function log_path(mon, id, log)
  if type(log) == "string" then return log end
  return mon.dir .. "/logs/" .. id .. ".log"
end

--- The records of `texts` (from d:scan) with their liveness resolved: lost
--- ones are rewritten as such. Returns the records and the lost events'
--- first handler error.
function Monitor:_resolve(text, cls)
  local rec = decode(text)
  if not rec then return nil end
  if cls == "self" then cls = tracked[rec.id] and "ending" or "lost" end
  if cls ~= "lost" then return rec end
  return self:_mark_lost(rec)
end

--- Records the end of a job whose process vanished: status lost, or, when
--- its owner is gone and it was told to stop (`procrun kill`, a keyed
--- replace), killed for that reason, as its owner would have recorded it.
--- Another process (or the owner) may record the end first; then that one
--- stands.
function Monitor:_mark_lost(rec)
  local now = pm.time()
  local owner = rec.owner_pid and md.alive(rec.owner_pid, rec.owner_start_time or 0)
  local stop = not owner and self._d:read("running", rec.id, ".stop")
  rec.status = stop and "killed" or "lost"
  rec.ended_at = now
  rec.expires_at = now + self.ttl_done
  rec.reason = stop and (stop:match("^%S+") or "killed") or owner and "gone" or "owner_gone"
  if stop then rec.signal = stop:match(" SIG(%u[%u%d+]*)") or rec.signal end
  local ok = self._d:write("done", rec.id, encode(rec), "create")
  self._d:remove("running", rec.id)
  if ok == false then
    local text = self._d:read("done", rec.id)
    return text and decode(text) or rec
  end
  if ok then self._d:remove("running", rec.id, ".stop") end
  return rec, ok and not stop and fire(self, "lost", rec) or nil
end

--- Scans the directory: the records (decoded, newest first) and the raw
--- texts, lost ones resolved. `all`: finished records too.
function Monitor:_scan(all, want_texts)
  local texts, classes = self._d:scan(all)
  if not texts then return nil, classes end
  local recs, err = {}, nil
  for i = 1, #texts do
    local cls = classes[i]
    if cls == "lost" or cls == "self" or not want_texts then
      local rec, e = self:_resolve(texts[i], cls)
      err = err or e
      if rec and want_texts and rec.status ~= "running" then texts[i] = encode(rec) end
      recs[i] = rec or false
    end
  end
  reraise(err)
  return recs, texts
end

--- The running records of every process using this directory, newest first,
--- liveness-checked; a vanished one is recorded `lost` (with the event).
---@return table[] records
function Monitor:active()
  check_self(self, "active")
  local recs, msg, code = self:_scan(false)
  if not recs then return nil, msg, code end
  local out = {}
  for _, rec in ipairs(recs) do
    if rec and rec.status == "running" then out[#out + 1] = rec end
  end
  return out
end

--- Every unexpired record, running and finished, newest first.
---@return table[] records
function Monitor:history()
  check_self(self, "history")
  local recs, msg, code = self:_scan(true)
  if not recs then return nil, msg, code end
  local out = {}
  for _, rec in ipairs(recs) do
    if rec then out[#out + 1] = rec end
  end
  return out
end

--- The record `id` (liveness-checked), or nil when there is none.
function Monitor:get(id)
  check_self(self, "get")
  if type(id) ~= "string" then arg_error(1, "get", "string expected, got " .. type(id), 2) end
  if not id:match("^[%w_-]+$") or #id > 32 then return nil end
  local text = self._d:read("done", id)
  if text then return decode(text) end
  local cls
  text, cls = self._d:read("running", id)
  if not text then return nil end
  local rec, err = self:_resolve(text, cls)
  reraise(err)
  return rec
end

--- Calls fn(record, info) on `event`: start, exit, failure, timeout,
--- restart, lost. Returns the monitor.
function Monitor:on(event, fn)
  check_self(self, "on")
  if not EVENTS[event] then arg_error(1, "on", "unknown event '" .. tostring(event) .. "'", 2) end
  if type(fn) ~= "function" then arg_error(2, "on", "function expected, got " .. type(fn), 2) end
  table.insert(self._handlers[event], fn)
  return self
end

--- Removes a handler added with on(). Returns true if it was there.
function Monitor:off(event, fn)
  check_self(self, "off")
  local list = self._handlers[event] or {}
  for i = #list, 1, -1 do
    if list[i] == fn then
      table.remove(list, i)
      return true
    end
  end
  return false
end

--- Removes expired finished records with their logs (and leftovers);
--- vanished running ones are recorded lost first. Returns the number.
function Monitor:purge()
  check_self(self, "purge")
  local recs, msg, code = self:_scan(false)
  if not recs then return nil, msg, code end
  return self._d:purge()
end

--- Holds the directory lock (keyed runs) until the returned lock is
--- unlocked or closed.
function Monitor:_lock()
  return self._d:lock()
end

--- The live records of `key`, across processes (for keyed policies). A
--- record told to stop whose process is gone does not count.
function Monitor:_live_with_key(key)
  local recs = assert(self:_scan(false))
  local out = {}
  for _, rec in ipairs(recs) do
    if rec and rec.status == "running" and rec.key == key then
      local alive = rec.pid and md.alive(rec.pid, rec.start_time or 0)
      if alive or not self._d:exists("running", rec.id, ".stop") then
        out[#out + 1] = rec
      end
    end
  end
  return out
end

--- Tells the job of `rec` to stop for `reason` (no restart) and signals its
--- process group. Returns true if a live process was signalled.
function Monitor:_stop_record(rec, reason, signal)
  self._d:write("running", rec.id, reason, nil, ".stop")
  local job = tracked[rec.id]
  if job then job._stopping = job._stopping or reason end
  if not rec.pid then return false end
  return md.kill(rec.pid, rec.start_time or 0, rec.pgid or rec.pid, signal or "TERM") == true
end

-- }===

-- {=== jobs: the process a monitor runs ===}

---@class procmon.MonitoredProcess
---@field id string        the record id
---@field pid integer      the current (or last) process id
---@field name string|nil
---@field restarts integer
---@field record table     the record as last written
---@field process userdata the current procmon Process
local Job = {}
Job.__index = Job
Job.__name = "procmon.MonitoredProcess"

local MON_SPAWN_OPTS = { log = true, log_max = true, policy = true, key = true,
  replace = true, limit = true, session_id = true, task_id = true }

--- Appends to a bounded tail (the last `max` bytes of a stream).
local function tail_add(t, s)
  if t.max == 0 or #s == 0 then return end
  local parts = t.parts
  parts[#parts + 1] = s
  t.n = t.n + #s
  if t.n > 2 * t.max or #parts > 64 then
    local all = table.concat(parts)
    all = all:sub(-t.max)
    t.parts, t.n = { all }, #all
  end
end

local function tail_get(t)
  if t.n == 0 then return nil end
  return table.concat(t.parts):sub(-t.max)
end

local function is_pipe(v) return v == nil or v == "pipe" end

--- The child's environment: the user's, over the PROCESS_* metadata of
--- the record (this process as parent, the session, the task) when the
--- record has a session or a task, so the child can pm.env.decode() it.
--- PROCESS_CONFIG is left as it is: it is the user's to pass.
local function with_metadata(env, rec)
  if rec.session_id == nil and rec.task_id == nil then return env end
  local meta = require("procmon.env").encode{ session_id = rec.session_id,
    task_id = rec.task_id }
  meta.PROCESS_CONFIG = nil
  for k, v in pairs(env or {}) do meta[k] = v end
  return meta
end

--- The pm.spawn options of one run: the user's, with the monitor's stream
--- and exit hooks around theirs.
function Job:_spawn_opts()
  local o = {}
  for k, v in pairs(self._opts) do o[k] = v end
  o.env = with_metadata(o.env, self.record)
  local log, tail, lines = self._log, self._tail, o.lines
  local nl = lines and "\n" or ""
  local user_out, user_err, user_exit = o.on_stdout, o.on_stderr, o.on_exit
  if log and is_pipe(o.stdout) then
    o.on_stdout = function(chunk)
      log:write(chunk .. nl)
      if user_out then user_out(chunk) end
    end
  end
  if is_pipe(o.stderr) and (log or user_err) then
    o.on_stderr = function(chunk)
      tail_add(tail, chunk .. nl)
      if log then log:write(chunk .. nl) end
      if user_err then user_err(chunk) end
    end
  end
  o.on_exit = function(r)
    local err
    if user_exit then
      local ok, e = xpcall(user_exit, debug.traceback, r)
      if not ok then err = e end
    end
    reraise(self:_exited(r) or err)
  end
  return o
end

--- pm.spawn, raising misuse at the user's line (level) as 'spawn'.
local function spawn_checked(cmd, opts, level)
  local r = table.pack(pcall(core.spawn, cmd, opts))
  if not r[1] then
    local msg = tostring(r[2]):gsub("^bad argument (#%d+) to '[^']*'", "bad argument %1 to 'spawn'")
    error(msg, level)
  end
  return r[2], r[3], r[4]
end

--- Starts one run; fills the record's process fields.
function Job:_start_run(level)
  local opts = self:_spawn_opts()
  local before = md.ticks()
  local p, err, code = spawn_checked(self.cmd, opts, level + 1)
  if not p then return nil, err, code end
  local rec = self.record
  self.process, self.pid = p, p.pid
  if #self._waiters > 0 then self:_hold(true) end
  rec.pid, rec.pgid = p.pid, p.pid
  rec.start_time = md.start_time(p.pid, before) or 0
  rec.status, rec.next_start_at = "running", nil
  self._run_started = pm.time()
  return p
end

local function status_of(r, stopping)
  if stopping then return "killed" end
  local reason = r.reason
  if reason == "exit" then return r.code == 0 and "completed" or "failed" end
  if reason == "timeout" or reason == "idle_timeout" then return "timed_out" end
  if reason == "killed" then return "killed" end
  return "failed"
end

local function add_run(rec, r, started)
  local runs = rec.runs or setmetatable({}, json.array_mt)
  runs[#runs + 1] = { pid = r.pid, started_at = started, ended_at = r.ended_at,
    exit_code = r.code, signal = r.signal, reason = r.reason }
  if #runs > KEEP_RUNS then table.remove(runs, 1) end
  rec.runs = runs
end

--- A run ended: restart (policy) or finish. Returns the first handler error.
function Job:_exited(r)
  local d = self.monitor._d
  local marker = d:read("running", self.id, ".stop")
  if marker then self._stop_seen = true end
  if marker and not self._stopping then self._stopping = marker end
  local status = status_of(r, self._stopping)
  self.last_status, self.last_result = status, r
  add_run(self.record, r, self._run_started)
  local delay
  if not self._stopping and status ~= "killed" then
    for _, pol in ipairs(self._policies) do
      if pol.after_exit then delay = pol:after_exit(self, r) end
      if delay then break end
    end
  end
  if delay then return self:_schedule_restart(delay, r) end
  return self:_finish(r, status)
end

-- A job waiting to restart looks for a stop marker (`procrun kill` from
-- another process) this often, so that it ends at once, not after its
-- backoff.
local STOP_POLL = 0.25

--- Writes the waiting record and arms the restart timer.
function Job:_schedule_restart(delay, r)
  local rec = self.record
  rec.pid, rec.start_time, rec.next_start_at = nil, nil, pm.time() + delay
  rec.exit_code, rec.signal, rec.reason = r.code, r.signal, r.reason
  self.monitor._d:write("running", self.id, encode(rec))
  local due = pm.clock() + delay
  local function tick()
    self._timer = nil
    local left = due - pm.clock()
    if left > 0 and not self.monitor._d:exists("running", self.id, ".stop") then
      self._timer = core._timer(math.min(left, STOP_POLL), tick)
    else
      reraise(self:_restart(delay, r))
    end
  end
  self._timer = core._timer(math.min(delay, STOP_POLL), tick)
end

--- The restart timer fired: start the next run (unless told to stop).
function Job:_restart(delay, last)
  local d = self.monitor._d
  local marker = d:read("running", self.id, ".stop")
  if marker then self._stop_seen = true end
  if marker or self._stopping then
    self._stopping = self._stopping or marker
    return self:_finish(last, "killed")
  end
  local p, err = self:_start_run(1)
  if not p then
    self.record.error = err
    return self:_finish(last, "failed")
  end
  self.restarts = self.restarts + 1
  self.record.restarts = self.restarts
  self.record.exit_code, self.record.signal, self.record.reason = nil, nil, nil
  -- Handlers first: a log line "restarting" then comes before what the new
  -- run prints (a record write can take milliseconds on a busy ext4).
  local err = fire(self.monitor, "restart", self.record,
    { delay = delay, restarts = self.restarts, result = last })
  d:write("running", self.id, encode(self.record))
  return err
end

--- The job is over: final record, events, waiters.
function Job:_finish(r, status)
  local mon, rec = self.monitor, self.record
  rec.status = status
  rec.ended_at = r.ended_at or pm.time()
  rec.exit_code, rec.signal = r.code, r.signal
  rec.reason = self._stopping and self._stopping:match("^%S+") or r.reason
  rec.stderr = tail_get(self._tail) or (type(r.stderr) == "string" and #r.stderr > 0
    and r.stderr:sub(-self._tail.max) or nil)
  if self._tail.max == 0 then rec.stderr = nil end
  rec.expires_at = rec.ended_at + mon.ttl_done
  rec.next_start_at = nil
  local ok, msg = mon._d:write("done", self.id, encode(rec))
  if ok then
    mon._d:remove("running", self.id)
    if self._stop_seen then mon._d:remove("running", self.id, ".stop") end
  end
  tracked[self.id] = nil
  if self._log then self._log:close() end
  r.id = self.id
  self._result, self._done = r, true
  local err = fire(mon, "exit", rec, r)
  if status == "failed" then err = fire(mon, "failure", rec, r) or err end
  if status == "timed_out" then err = fire(mon, "timeout", rec, r) or err end
  local waiters = self._waiters
  self._waiters = {}
  for _, wake in ipairs(waiters) do wake(r) end
  -- The record could not be written (disk full...): the Result says so;
  -- a callback has nobody to return a failure to.
  if not ok then r.record_error = msg end
  return err
end

--- While someone waits for the job, its current process keeps the loop
--- alive, as a waited-on Process does (a detached one does not otherwise).
local function hold_mark() end

function Job:_hold(on)
  local p = self.process
  if not p or p:_result() ~= nil then return end
  if on then p:_on_settle(hold_mark) else p:_off_settle(hold_mark) end
end

--- Waits for the job's end (all its restarts) and returns the last Result.
--- With `timeout`: nil, msg, "ETIMEDOUT" when it passes (the job goes on).
function Job:wait(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    arg_error(1, "wait", "non-negative number expected", 2)
  end
  if self._done then return self._result end
  return pm._await("wait", function(wake)
    table.insert(self._waiters, wake)
    if #self._waiters == 1 then self:_hold(true) end
    local t = timeout and core._timer(timeout, function()
      wake(nil, ("wait: timed out after %gs"):format(timeout), "ETIMEDOUT")
    end)
    -- Called once woken, or when the wait ended in an error: a wait that
    -- is over leaves no waiter, and no hold on a detached process.
    return function()
      if t then t:stop() end
      for i, w in ipairs(self._waiters) do
        if w == wake then table.remove(self._waiters, i) break end
      end
      if #self._waiters == 0 then self:_hold(false) end
    end
  end)
end

local ENDING = { TERM = true, KILL = true, INT = true, HUP = true, QUIT = true,
  SIGTERM = true, SIGKILL = true, SIGINT = true, SIGHUP = true, SIGQUIT = true,
  [15] = true, [9] = true, [2] = true, [1] = true, [3] = true }

--- Signals the current process's group (default TERM). A signal that ends
--- processes also ends the job: no restart follows. true | fail.
function Job:kill(signal)
  if self._done then return nil, ("kill %d: ESRCH: no such process"):format(self.pid or 0), "ESRCH" end
  local ending = signal == nil or ENDING[type(signal) == "string" and signal:upper() or signal]
  if ending then self._stopping = self._stopping or "killed" end
  if self._timer then   -- waiting to restart: nothing runs
    if not ending then return true end
    self._timer:stop()
    self._timer = nil
    reraise(self:_finish(self.last_result, "killed"))
    return true
  end
  return self.process:kill(signal)
end

function Job:write(data) return self.process:write(data) end
function Job:close_stdin() return self.process:close_stdin() end
function Job:running() return not self._done end
function Job:result() return self._result end

--- Stops the job (kill_signal, then SIGKILL after kill_grace); idempotent.
function Job:close()
  if self._done or self._closed then return end
  self._closed = true
  self._stopping = self._stopping or "killed"
  if self._timer then
    self._timer:stop()
    self._timer = nil
    reraise(self:_finish(self.last_result, "killed"))
  elseif self.process then
    getmetatable(self.process).__close(self.process, nil)
  end
end
Job.__close = Job.close

function Job:__tostring()
  return ("procmon.MonitoredProcess (id %s, pid %s, %s)"):format(self.id,
    tostring(self.pid), self._done and (self.record.status or "done") or "running")
end

-- }===

-- {=== spawn ===}

local function shallow_copy(t)
  local o = {}
  for k, v in pairs(t or {}) do o[k] = v end
  return o
end

--- A policy, or a list of policies, as a list.
local function policy_list(p, list, level)
  if p == nil then return end
  if type(p) ~= "table" then arg_error(2, "spawn", "option 'policy': table expected", level) end
  if p.before_start or p.after_exit then
    list[#list + 1] = p
    return
  end
  for i, q in ipairs(p) do
    if type(q) ~= "table" or not (q.before_start or q.after_exit) then
      arg_error(2, "spawn", ("option 'policy': element %d is not a policy"):format(i), level)
    end
    list[#list + 1] = q
  end
end

--- The policies of a spawn: the monitor's, the spawn's, and key/replace/limit.
local function collect_policies(mon, mopts, level)
  local list = {}
  policy_list(mon.policy, list, level + 1)
  policy_list(mopts.policy, list, level + 1)
  if mopts.key ~= nil then
    local policy = require "procmon.policy"
    list[#list + 1] = policy.keyed { key = mopts.key, replace = mopts.replace, limit = mopts.limit }
  elseif mopts.replace ~= nil or mopts.limit ~= nil then
    arg_error(2, "spawn", "options 'replace' and 'limit' need 'key'", level)
  end
  return list
end

--- The record of a new job (fields of the process come at start).
local function new_record(mon, job, mopts, o)
  local pid, start, boot = md.self()
  local cwd = o.cwd
  if cwd == nil or cwd:sub(1, 1) ~= "/" then
    local here = md.cwd() or "."
    cwd = cwd and (here .. "/" .. cwd) or here
  end
  local cmd = job.cmd
  if o.shell then cmd = { "/bin/sh", "-c", cmd } end
  return {
    id = job.id, name = o.name, status = "running", cmd = cmd, cwd = cwd,
    started_at = pm.time(), restarts = 0, owner_pid = pid, owner_start_time = start,
    boot_id = boot, detached = o.detached == true,
    session_id = mopts.session_id or os.getenv("PROCESS_SESSION_ID"),
    task_id = mopts.task_id or os.getenv("PROCESS_TASK_ID"),
    key = mopts.key, log = job._log_path, runs = setmetatable({}, json.array_mt),
  }
end

--- A fresh id: not used by any record of this directory.
local function fresh_id(d)
  for _ = 1, 100 do
    local id = md.new_id()
    -- running/ is checked by the exclusive create of the start record
    if not d:exists("done", id) then return id end
  end
  error("monitor: cannot find a free record id")
end

--- Splits the options into the monitor's and pm.spawn's; validates ours.
local function split_opts(mon, opts, level)
  if opts ~= nil and type(opts) ~= "table" then
    arg_error(2, "spawn", "table expected, got " .. type(opts), level)
  end
  local o, mopts = {}, {}
  for k, v in pairs(opts or {}) do
    if MON_SPAWN_OPTS[k] then mopts[k] = v else o[k] = v end
  end
  if mopts.log == nil then mopts.log = mon.log end
  local log = mopts.log
  if log ~= nil and log ~= false and log ~= true and type(log) ~= "string" then
    arg_error(2, "spawn", "option 'log': boolean or path expected", level)
  end
  local max = mopts.log_max or mon.log_max
  if math.type(max) ~= "integer" or max <= 0 then
    arg_error(2, "spawn", "option 'log_max': positive integer expected", level)
  end
  mopts.log_max = max
  if mopts.key ~= nil and type(mopts.key) ~= "string" then
    arg_error(2, "spawn", "option 'key': string expected", level)
  end
  if mopts.replace ~= nil and type(mopts.replace) ~= "boolean" then
    arg_error(2, "spawn", "option 'replace': boolean expected", level)
  end
  local limit = mopts.limit
  if limit ~= nil and (math.type(limit) ~= "integer" or limit < 1) then
    arg_error(2, "spawn", "option 'limit': positive integer expected", level)
  end
  for _, k in ipairs({ "session_id", "task_id" }) do
    local v = mopts[k]
    if v ~= nil and not (math.type(v) == "integer" or (type(v) == "string" and v ~= "" and not v:find("%z"))) then
      arg_error(2, "spawn", ("option '%s': non-empty string expected"):format(k), level)
    end
  end
  if limit and mopts.replace then
    arg_error(2, "spawn", "options 'replace' and 'limit' exclude each other", level)
  end
  return o, mopts
end

--- Opens the job's log (or, for a detached job, hands the file to the child).
local function setup_log(mon, job, o, mopts)
  if not mopts.log then return true end
  local path = log_path(mon, job.id, mopts.log)
  job._log_path = path
  if o.detached then
    -- created here, 0600 as every log, before the child appends to it
    local log, msg, code = md.log_open(path, mopts.log_max)
    if not log then return nil, msg, code end
    log:close()
    if o.stdout == nil then o.stdout = { file = path, append = true } end
    if o.stderr == nil then o.stderr = { file = path, append = true } end
    return true
  end
  local log, msg, code = md.log_open(path, mopts.log_max)
  if not log then return nil, msg, code end
  job._log = log
  return true
end

--- Runs every policy's before_start; returns the functions to call once
--- the record is written (they release what the policies hold).
local function admit(job)
  local releases = {}
  for _, pol in ipairs(job._policies) do
    if pol.before_start then
      local release = pol:before_start(job)
      if type(release) == "function" then releases[#releases + 1] = release end
    end
  end
  return releases
end

local function release_all(releases)
  for i = #releases, 1, -1 do releases[i]() end
end

--- Writes the start record under a new name (the id is taken again in the
--- very unlikely case that another process took it meanwhile).
function Monitor:_create_record(job)
  for _ = 1, 10 do
    tracked[job.id] = job
    local ok, msg, code = self._d:write("running", job.id, encode(job.record), "create")
    if ok ~= false then return ok, msg, code end
    tracked[job.id] = nil
    job.id = fresh_id(self._d)
    job.record.id = job.id
  end
  return nil, "monitor: cannot find a free record id", "EEXIST"
end

function Monitor:_spawn(cmd, opts, level)
  local o, mopts = split_opts(self, opts, level + 1)
  local job = setmetatable({ monitor = self, cmd = cmd, name = o.name, restarts = 0,
    _waiters = {}, _opts = o, _tail = { parts = {}, n = 0, max = self.stderr_tail } }, Job)
  job._policies = collect_policies(self, mopts, level + 1)
  job.id = fresh_id(self._d)
  local ok, msg, code = setup_log(self, job, o, mopts)
  if not ok then return nil, msg, code end
  job.record = new_record(self, job, mopts, o)
  local releases = admit(job)
  local started = table.pack(pcall(job._start_run, job, level + 2))
  if started[1] and started[2] then
    job.record.started_at = job._run_started
    ok, msg, code = self:_create_record(job)
  end
  release_all(releases)
  if not started[1] then error(started[2], 0) end
  if not started[2] then
    if job._log then job._log:close() end
    return nil, started[3], started[4]
  end
  if not ok then   -- no record, no job: stop the process
    job._stopping = "killed"
    tracked[job.id] = nil
    job:close()
    return nil, msg, code
  end
  reraise(fire(self, "start", job.record))
  return job
end

--- Starts cmd as pm.spawn does, with a persisted record. Options: every
--- pm.spawn option, plus log, log_max, policy, key, replace, limit,
--- session_id, task_id. Returns a MonitoredProcess, or nil, msg, code.
---@return procmon.MonitoredProcess|nil
function Monitor:spawn(cmd, opts)
  check_self(self, "spawn")
  return self:_spawn(cmd, opts, 2)
end

--- spawn + wait: the Result (with `id`, the record id), or nil, msg, code.
function Monitor:run(cmd, opts)
  check_self(self, "run")
  local job, msg, code = self:_spawn(cmd, opts, 2)
  if not job then return nil, msg, code end
  return job:wait()
end

-- }===

-- {=== opening ===}

--- The Lua state closes (procrun's end, after it stopped the children, or
--- lua_close under lua5.4) while jobs of `mon` run: their end is recorded
--- as killed (reason "owner_exit") rather than left to be found lost. No
--- events: handlers cannot run safely at that point.
function owner_exit(mon)
  local now = pm.time()
  for id, job in pairs(tracked) do
    if job.monitor == mon and not job._done and not job.record.detached then
      local rec = job.record
      rec.status, rec.reason, rec.ended_at = "killed", "owner_exit", now
      rec.expires_at, rec.next_start_at = now + mon.ttl_done, nil
      pcall(function()
        if mon._d:write("done", id, encode(rec), "create") then mon._d:remove("running", id) end
      end)
      tracked[id] = nil
    end
  end
end

local MON_OPTS = { dir = true, ttl_done = true, stderr_tail = true, log = true,
  log_max = true, policy = true }

local function check_number(opts, k, integer)
  local v = opts[k]
  if v == nil then return end
  if type(v) ~= "number" or v < 0 or v ~= v or (integer and math.type(v) ~= "integer") then
    arg_error(1, "monitor", ("option '%s': non-negative %s expected"):format(k,
      integer and "integer" or "number"), 3)
  end
end

--- The default monitor directory: <state dir>/monitor.
function M.default_dir()
  local state, msg, code = require("procmon.sys").state_dir()
  if not state then return nil, msg, code end
  return state .. "/monitor"
end

--- Opens a monitor: pm.monitor{ dir, ttl_done, stderr_tail, log, log_max,
--- policy }. Returns the Monitor, or nil, msg, code.
---@return procmon.Monitor|nil
function M.new(opts)
  if opts ~= nil and type(opts) ~= "table" then
    arg_error(1, "monitor", "table expected, got " .. type(opts), 2)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not MON_OPTS[k] then arg_error(1, "monitor", "unknown option '" .. tostring(k) .. "'", 2) end
  end
  check_number(opts, "ttl_done")
  check_number(opts, "stderr_tail", true)
  check_number(opts, "log_max", true)
  if opts.dir ~= nil and type(opts.dir) ~= "string" then
    arg_error(1, "monitor", "option 'dir': string expected", 2)
  end
  local dir, msg, code = opts.dir, nil, nil
  if not dir then
    dir, msg, code = M.default_dir()
    if not dir then return nil, msg, code end
  end
  dir = dir:gsub("(.)/+$", "%1")
  local d
  d, msg, code = md.open(dir)
  if not d then return nil, msg, code end
  local handlers = {}
  for e in pairs(EVENTS) do handlers[e] = {} end
  local mon = setmetatable({ dir = dir, _d = d, ttl_done = opts.ttl_done or DEFAULT_TTL_DONE,
    stderr_tail = opts.stderr_tail or DEFAULT_TAIL, log = opts.log,
    log_max = opts.log_max or DEFAULT_LOG_MAX, policy = opts.policy,
    _handlers = handlers }, Monitor)
  -- Created after the directory object, so finalized before it (Lua calls
  -- finalizers in reverse order), at the latest when the state closes.
  mon._sentinel = setmetatable({}, { __gc = function() owner_exit(mon) end })
  return mon
end

M.Monitor, M.MonitoredProcess = Monitor, Job

-- }===

return setmetatable(M, { __call = function(_, opts) return M.new(opts) end })
