---@meta procmon.policy
-- LuaLS definitions of `require "procmon.policy"` (also `pm.policy`): what a
-- monitor does around a job's start and exit. Checked by spec/types_spec.lua.

--- A policy: a table with up to two hooks, called by the monitor.
---@class procmon.Policy
---@field before_start? fun(self: procmon.Policy, job: procmon.MonitoredProcess): (fun()|nil)
---@field after_exit? fun(self: procmon.Policy, job: procmon.MonitoredProcess, result: procmon.Result): number|nil

---@class procmon.RestartOptions
---@field max? integer restarts at most (default 10)
---@field when? "failure"|"always" default "failure"
---@field backoff? { initial?: number, factor?: number, max?: number } seconds

---@class procmon.KeyedOptions
---@field key string runs that share it, across processes
---@field replace? boolean a new run stops the live ones first
---@field limit? integer at most this many live at once (default 1)
---@field grace? number seconds between TERM and KILL for replace (default 2)

---@class procmon.policy
local policy = {}

--- Restarts the job after it exits, with exponential backoff.
---@param opts? procmon.RestartOptions
---@return procmon.Policy
function policy.restart(opts) end

--- Runs that share a key: replace the live ones, or wait for a free slot.
---@param opts procmon.KeyedOptions
---@return procmon.Policy
function policy.keyed(opts) end

return policy
