---@meta procmon.env
-- LuaLS definitions of `require "procmon.env"` (also `pm.env`): metadata a
-- parent passes to its children in PROCESS_* variables (the names the
-- Bun/TypeScript plugins use). Checked by spec/types_spec.lua.

---@class procmon.EnvMeta
---@field parent_pid? integer|false default: this process's pid (false leaves it out)
---@field session_id? string
---@field task_id? string|integer
---@field config? table a JSON object, at most 8 KiB encoded

---@class procmon.env
local env = {}

--- The variable of each field: PROCESS_PARENT_PID, PROCESS_SESSION_ID,
--- PROCESS_TASK_ID, PROCESS_CONFIG.
---@type { parent_pid: string, session_id: string, task_id: string, config: string }
env.names = {}

--- The largest encoded PROCESS_CONFIG, in bytes (8192).
---@type integer
env.max_config = 8192

--- The environment table for a child's `env` option; absent fields map to
--- false (removed), so a child never inherits stale metadata. Raises on
--- misuse or a config over max_config.
---@param meta procmon.EnvMeta
---@return table<string, string|false>
function env.encode(meta) end

--- The metadata in `vars` (default: this process's environment): nil when
--- none is set; nil, err when one is malformed.
---@param vars? table<string, string>
---@return procmon.EnvMeta|nil meta
---@return string? err
function env.decode(vars) end

return env
