---@meta procmon.monitor
-- LuaLS definitions of `require "procmon.monitor"` (also `pm.monitor`):
-- persisted process records that any process can list (procrun ps).
-- Checked by spec/types_spec.lua.

---@alias procmon.RecordStatus "running"|"completed"|"failed"|"killed"|"timed_out"|"lost"

---@alias procmon.MonitorEvent "start"|"exit"|"failure"|"timeout"|"restart"|"lost"

--- A persisted record (mon:active, :history, :get; procrun ps --json).
---@class procmon.Record
---@field id string unique, even when pids are reused
---@field name? string
---@field status procmon.RecordStatus
---@field pid? integer
---@field pgid? integer
---@field cmd string[]|string
---@field cwd? string
---@field started_at number epoch seconds
---@field ended_at? number
---@field exit_code? integer
---@field signal? string
---@field reason? string
---@field restarts integer
---@field stderr? string the tail of stderr (stderr_tail bytes)
---@field owner_pid integer the process that runs the job
---@field session_id? string
---@field task_id? string
---@field key? string keyed policy
---@field log? string the log file
---@field detached? boolean
---@field start_time? integer the process's start time (/proc/<pid>/stat), for liveness
---@field owner_start_time? integer
---@field boot_id? string
---@field expires_at? number a finished record's expiry
---@field next_start_at? number a restart's time
---@field error? string why a run could not start
---@field runs? table[] the last runs of a restarted job

---@class procmon.MonitorOptions
---@field dir? string default <state dir>/monitor
---@field ttl_done? number seconds a finished record is kept (default 3600)
---@field stderr_tail? integer bytes of stderr kept in a record (default 4096)
---@field log? boolean|string log every job's stdout and stderr (a path: that file)
---@field log_max? integer log size before its one rotation (default 10 MiB)
---@field policy? procmon.Policy|procmon.Policy[]

---@class procmon.MonitorSpawnOptions: procmon.SpawnOptions
---@field log? boolean|string
---@field log_max? integer
---@field policy? procmon.Policy|procmon.Policy[]
---@field key? string keyed runs (with replace or limit)
---@field replace? boolean stop the live runs of `key` first
---@field limit? integer at most this many live runs of `key`
---@field session_id? string
---@field task_id? string

--- A job started by mon:spawn: a Process with a record (and restarts).
---@class procmon.MonitoredProcess
---@field id string the record id
---@field pid integer the current (or last) process id
---@field name? string
---@field restarts integer
---@field record procmon.Record the record as last written
---@field process procmon.Process the current process
local MonitoredProcess = {}

--- Waits for the job's end (all its restarts): the last Result. With
--- `timeout`: nil, msg, "ETIMEDOUT" when it passes.
---@param timeout? number
---@return procmon.Result|nil result
---@return string? err
---@return string? code
function MonitoredProcess:wait(timeout) end

--- Signals the current process's group (default TERM); an ending signal
--- also ends the job (no restart).
---@param signal? procmon.Signal
---@return true|nil ok
---@return string? err
---@return string? code
function MonitoredProcess:kill(signal) end

---@param data string
---@return true|nil ok
---@return string? err
---@return string? code
function MonitoredProcess:write(data) end

function MonitoredProcess:close_stdin() end

--- Whether the job has not ended (restarts included).
---@return boolean
function MonitoredProcess:running() end

---@return procmon.Result|nil
function MonitoredProcess:result() end

--- Stops the job (kill_signal, then SIGKILL); idempotent.
function MonitoredProcess:close() end

---@class procmon.Monitor
---@field dir string the monitor directory
---@field ttl_done number
---@field stderr_tail integer
local Monitor = {}

--- Starts `cmd` as pm.spawn does, with a persisted record.
---@param cmd string[]|string
---@param opts? procmon.MonitorSpawnOptions
---@return procmon.MonitoredProcess|nil job
---@return string? err
---@return string? code
function Monitor:spawn(cmd, opts) end

--- spawn + wait: the Result (with `id`, the record id).
---@param cmd string[]|string
---@param opts? procmon.MonitorSpawnOptions
---@return procmon.Result|nil result
---@return string? err
---@return string? code
function Monitor:run(cmd, opts) end

--- Running records of every process using this directory, newest first.
---@return procmon.Record[]
function Monitor:active() end

--- Every unexpired record, newest first.
---@return procmon.Record[]
function Monitor:history() end

--- The record `id`, or nil.
---@param id string
---@return procmon.Record|nil
function Monitor:get(id) end

--- Calls fn(record, info) on `event`; returns the monitor.
---@param event procmon.MonitorEvent
---@param fn fun(record: procmon.Record, info: table)
---@return procmon.Monitor
function Monitor:on(event, fn) end

--- Removes a handler; true if it was there.
---@param event procmon.MonitorEvent
---@param fn function
---@return boolean
function Monitor:off(event, fn) end

--- Removes expired finished records and their logs; the number removed.
---@return integer|nil removed
---@return string? err
---@return string? code
function Monitor:purge() end

--- `pm.monitor{...}` is `monitor.new{...}`.
---@class procmon.monitor
---@overload fun(opts?: procmon.MonitorOptions): procmon.Monitor|nil, string?, string?
local monitor = {}

--- The Monitor class (methods), for extension and checks.
monitor.Monitor = Monitor

--- The MonitoredProcess class (methods).
monitor.MonitoredProcess = MonitoredProcess

--- Opens a monitor directory (created 0700), or fail.
---@param opts? procmon.MonitorOptions
---@return procmon.Monitor|nil monitor
---@return string? err
---@return string? code
function monitor.new(opts) end

--- The default monitor directory: <state dir>/monitor, or fail.
---@return string|nil dir
---@return string? err
---@return string? code
function monitor.default_dir() end

return monitor
