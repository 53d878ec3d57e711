---@meta procmon.session
-- LuaLS definitions of `require "procmon.session"` (also `pm.session`):
-- Claude Code sessions, from the JSON on a statusline or hook command's
-- stdin. Checked by spec/types_spec.lua.

---@class procmon.ReadOptions
---@field timeout? number seconds to wait for the first complete JSON value (default 1)
---@field max_bytes? integer refuse a larger payload (default 16 MiB)
---@field input? string parse this instead of stdin
---@field fd? integer read this descriptor (default 0)

--- session.info: the payload's fields, type-checked; nil when missing.
---@class procmon.SessionInfo
---@field session_id? string
---@field event? string hook_event_name (nil for a statusline)
---@field model_id? string
---@field model_name? string
---@field agent_name? string
---@field session_name? string
---@field cwd? string
---@field project_dir? string
---@field transcript_path? string
---@field version? string Claude Code's version
---@field context_usage? number percent, 0-100
---@field context_window_size? number tokens
---@field cost_usd? number
---@field duration_ms? number
---@field lines_added? number
---@field lines_removed? number
---@field vim_mode? string
---@field worktree? string
---@field effort? string
---@field fast_mode? boolean
---@field agent_id? string
---@field agent_type? string

--- A tracked session (tracker:track, :get, :list).
---@class procmon.SessionRecord
---@field session_id string
---@field started_at number epoch seconds, kept from the first track
---@field updated_at number
---@field ended_at? number set by SessionEnd
---@field model_id? string
---@field model_name? string
---@field agent_name? string
---@field session_name? string
---@field cwd? string
---@field project_dir? string
---@field context_usage? number
---@field context_window_size? number
---@field agents table<string, { agent_type?: string, started_at: number }>

---@class procmon.TrackerOptions
---@field ttl? number seconds a session is kept after its last track (default 3600)
---@field cache? procmon.Cache
---@field dir? string a cache directory (default: the default cache)
---@field prefix? string of the cache keys (default "procmon:")
---@field refresh? number seconds after which an unchanged record is written again (default ttl / 60, at most 60)

---@class procmon.SessionTracker
---@field ttl number
---@field refresh number
---@field cache procmon.Cache
local Tracker = {}

--- Records a payload for its session and returns the session's record.
---@param data table
---@return procmon.SessionRecord|nil record
---@return string? err
---@return string? code
function Tracker:track(data) end

--- The record of session `id`, or nil when unknown or expired.
---@param id string
---@return procmon.SessionRecord|nil
function Tracker:get(id) end

--- Whether session or subagent `id` is active.
---@param id string
---@return boolean
function Tracker:is_agent_active(id) end

--- Every tracked, unexpired session, most recently updated first.
---@return procmon.SessionRecord[]
function Tracker:list() end

---@class procmon.session
local session = {}

--- Default read deadline, seconds (1).
---@type number
session.default_timeout = 1

--- Default payload limit, bytes (16 MiB).
---@type integer
session.default_max_bytes = 16777216

--- Reads and decodes the payload (never waits for EOF): a table with a
--- usable session_id, or nil, err (one line), code (read failures only).
---@param opts? procmon.ReadOptions
---@return table|nil data
---@return string? err
---@return string? code
function session.read(opts) end

--- Context usage in percent (0-100), or nil when unknown.
---@param data table
---@return number|nil
function session.context_usage(data) end

--- The payload's fields with their types checked, whatever the version.
---@param data table
---@return procmon.SessionInfo
function session.info(data) end

--- A session tracker stored through procmon.cache (shared across processes).
---@param opts? procmon.TrackerOptions
---@return procmon.SessionTracker|nil tracker
---@return string? err
---@return string? code
function session.tracker(opts) end

return session
