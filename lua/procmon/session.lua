--- procmon.session: Claude Code sessions, from the JSON that Claude Code
--- writes on a statusline or hook command's stdin.
---
---   local data, err = pm.session.read()           -- stdin, decoded
---   local tracker = assert(pm.session.tracker{ ttl = 3600 })
---   local info = tracker:track(data)              -- started_at kept
---
--- Reading never waits for EOF (Claude Code has kept that pipe open): it
--- stops at the end of the first complete JSON value, at EOF or at a
--- deadline. Every field but session_id is optional, and a field of the
--- wrong type reads as absent (see M.info).

local pm = require "procmon"
local json = require "procmon.json"
local input = require "procmon.input"

local M = {}

M.default_timeout = 1
M.default_max_bytes = 16 * 1024 * 1024

-- {=== reading ===}

local read_options = { timeout = true, max_bytes = true, input = true, fd = true }

local function check_read_opts(opts, fname, level)
  level = level or 3
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(("bad argument #1 to '%s' (table expected, got %s)"):format(fname, type(opts)), level + 1)
  end
  for k in pairs(opts) do
    if not read_options[k] then
      error(("bad argument #1 to '%s' (unknown option '%s')"):format(fname, tostring(k)), level + 1)
    end
  end
  local t, m = opts.timeout, opts.max_bytes
  if t ~= nil and (type(t) ~= "number" or not (t >= 0 and t < math.huge)) then
    error(("bad argument #1 to '%s' (option 'timeout': non-negative number expected)"):format(fname), level + 1)
  end
  if m ~= nil and (math.type(m) ~= "integer" or m < 0) then
    error(("bad argument #1 to '%s' (option 'max_bytes': non-negative integer expected)"):format(fname), level + 1)
  end
  if opts.input ~= nil and type(opts.input) ~= "string" then
    error(("bad argument #1 to '%s' (option 'input': string expected, got %s)")
      :format(fname, type(opts.input)), level + 1)
  end
  return opts
end

-- A short, printable excerpt of bad input for an error message.
local function excerpt(s)
  s = s:match("^%s*(.-)%s*$"):sub(1, 32):gsub("[%z\1-\31\127-\255]", "?")
  return s
end

local kinds = { table = "an object", string = "a string", number = "a number", boolean = "a boolean" }

local function kind(v)
  if v == json.null or v == nil then return "null" end
  if type(v) == "table" and (getmetatable(v) == json.array_mt or v[1] ~= nil) then return "an array" end
  return kinds[type(v)] or type(v)
end

--- Checks the decoded payload: an object with a usable session_id.
local function check_payload(v)
  if kind(v) ~= "an object" then return nil, "stdin: expected a JSON object, got " .. kind(v) end
  local id = v.session_id
  if id == nil then return nil, "stdin: no session_id in the payload" end
  if type(id) ~= "string" then return nil, "stdin: unusable session_id (" .. kind(id) .. ")" end
  if not id:find("%S") then return nil, "stdin: unusable session_id (blank)" end
  return v
end

--- Decodes what the reader got; `how` is the C reader's verdict.
local function parse(raw, how, timeout)
  if not raw:find("%S") then
    if how == "timeout" then
      return nil, ("stdin: no input within %gs (stdin still open)"):format(timeout)
    end
    return nil, "stdin: empty input"
  end
  if how == "invalid" then return nil, "stdin: not JSON: " .. excerpt(raw) end
  local v, msg, code = json.decode(raw)
  if v == nil and msg then
    if how == "timeout" then
      return nil, ("stdin: incomplete JSON after %gs (stdin still open)"):format(timeout)
    end
    if how == "eof" and (code == "EINCOMPLETE" or raw:find("^%s*[{[]")) then
      return nil, ("stdin: truncated JSON (%d bytes, then EOF)"):format(#raw)
    end
    return nil, "stdin: invalid JSON: " .. tostring(msg)
  end
  return check_payload(v)
end

--- The raw bytes of the first JSON value on stdin (or opts.input), and the
--- reader's verdict ("value", "eof", "timeout", "invalid"); fail on a read
--- error or past max_bytes.
local function read_raw(opts)
  local max = opts.max_bytes or M.default_max_bytes
  if opts.input then
    if #opts.input > max then
      return nil, ("stdin: input larger than %d bytes"):format(max), "EFBIG"
    end
    local how, len = input.scan(opts.input)
    return opts.input:sub(1, len), how
  end
  return input.read(max, opts.timeout or M.default_timeout, opts.fd)
end
M._read_raw = read_raw

--- Reads and decodes the payload: an object with a usable session_id, or
--- nil, err (a one-line message starting with "stdin: "), code (only for
--- read failures: "EFBIG", "ECANCELED"...). Options: timeout (seconds,
--- default 1), max_bytes (default 16 MiB), input (a string to parse
--- instead of stdin), fd (default 0).
---@param opts? {timeout?: number, max_bytes?: integer, input?: string, fd?: integer}
---@return table|nil data, string|nil err, string|nil code
function M.read(opts)
  opts = check_read_opts(opts, "read")
  local raw, how, code = read_raw(opts)
  if not raw then
    if code ~= "EFBIG" and code ~= "ECANCELED" then how = "stdin: " .. how end
    return nil, how, code
  end
  return parse(raw, how, opts.timeout or M.default_timeout)
end
M._check_read_opts = check_read_opts
M._parse = parse

-- {=== the fields, type-checked ===}

local function obj(v)
  if type(v) == "table" and kind(v) == "an object" then return v end
  return nil
end

local function str(v)
  if type(v) == "string" and v:find("%S") then return v end
  return nil
end

-- Numbers, also as strings (wrappers rewrite payloads), finite only.
local function num(v)
  if type(v) == "string" then v = tonumber(v) end
  if type(v) == "number" and v == v and v > -math.huge and v < math.huge then return v end
  return nil
end

local function bool(v)
  if type(v) == "boolean" then return v end
  return nil
end

local function field(t, ...)
  for i = 1, select("#", ...) do
    t = obj(t)
    if not t then return nil end
    t = t[select(i, ...)]
  end
  return t
end

--- Context usage in percent (0-100), or nil when unknown: Claude Code's own
--- used_percentage when it is a number, else computed from current_usage
--- (input + cache creation + cache read tokens over the window size). Never
--- from total_input_tokens, which was a session-long total before 2.1.132.
---@param data table
---@return number|nil
function M.context_usage(data)
  local cw = obj(obj(data) and data.context_window)
  if not cw then return nil end
  local pct = num(cw.used_percentage)
  if pct then return pct end
  local u, size = obj(cw.current_usage), num(cw.context_window_size)
  if not u or not size or size <= 0 then return nil end
  local used = (num(u.input_tokens) or 0) + (num(u.cache_creation_input_tokens) or 0)
    + (num(u.cache_read_input_tokens) or 0)
  return used * 100 / size
end

local function model_fields(data)
  local m = data.model
  if type(m) == "string" then return str(m), nil end  -- a wrapper's plain string
  return str(field(data, "model", "id")), str(field(data, "model", "display_name"))
end

--- The payload's fields with their types checked, whatever the Claude Code
--- version: a missing, null or wrongly typed field is nil.
---@param data table
---@return table
function M.info(data)
  data = obj(data) or {}
  local model_id, model_name = model_fields(data)
  local event = str(data.hook_event_name)
  return {
    session_id = str(data.session_id),
    event = event ~= "Status" and event or nil,
    model_id = model_id,
    model_name = model_name,
    -- agent_type names the session's agent only on the main thread of an
    -- --agent session; with an agent_id it is a subagent's type.
    agent_name = str(field(data, "agent", "name")) or (data.agent_id == nil and str(data.agent_type) or nil),
    session_name = str(data.session_name),
    cwd = str(field(data, "workspace", "current_dir")) or str(data.cwd),
    project_dir = str(field(data, "workspace", "project_dir")),
    transcript_path = str(data.transcript_path),
    version = str(data.version),
    context_usage = M.context_usage(data),
    context_window_size = num(field(data, "context_window", "context_window_size")),
    cost_usd = num(field(data, "cost", "total_cost_usd")),
    duration_ms = num(field(data, "cost", "total_duration_ms")),
    lines_added = num(field(data, "cost", "total_lines_added")),
    lines_removed = num(field(data, "cost", "total_lines_removed")),
    vim_mode = str(field(data, "vim", "mode")),
    worktree = str(field(data, "worktree", "name")) or str(field(data, "workspace", "git_worktree")),
    effort = str(field(data, "effort", "level")),
    fast_mode = bool(data.fast_mode),
    agent_id = str(data.agent_id),
    agent_type = str(data.agent_type),
  }
end

-- {=== the tracker ===}

---@class procmon.SessionTracker
---@field ttl number
---@field refresh number
---@field cache procmon.Cache
local Tracker = {}
Tracker.__index = Tracker
Tracker.__name = "procmon.SessionTracker"

local function self_check(self, fname)
  if getmetatable(self) ~= Tracker then
    error(("calling '%s' on bad self (procmon.SessionTracker expected, got %s)")
      :format(fname, type(self)), 3)
  end
end

local function check_id(id, fname)
  if type(id) ~= "string" then
    error(("bad argument #1 to '%s' (string expected, got %s)"):format(fname, type(id)), 3)
  end
end

-- What a payload says about the session, merged over the stored record.
local remembered = { "model_id", "model_name", "agent_name", "session_name", "cwd",
  "project_dir", "context_window_size", "transcript_path" }

local function merge(old, d, now)
  local rec = {
    session_id = d.session_id,
    started_at = old and num(old.started_at) or now,
    updated_at = now,
    agents = {},
  }
  -- A copy: the old record must stay as read (track compares the two).
  for id, a in pairs(old and obj(old.agents) or {}) do rec.agents[id] = a end
  for _, k in ipairs(remembered) do
    local v = d[k]
    if v == nil and old then v = old[k] end
    rec[k] = v
  end
  -- A payload that carries a context window (a statusline's) decides;
  -- a hook's payload has none and keeps the last known figure.
  if d.context_usage ~= nil or d.context_window_size ~= nil then
    rec.context_usage = d.context_usage
  elseif old then
    rec.context_usage = num(old.context_usage)
  end
  if old and old.ended_at ~= nil and d.event ~= "SessionStart" then rec.ended_at = old.ended_at end
  return rec
end

-- Whether two records differ only in updated_at.
local function same_value(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if k ~= "updated_at" and not same_value(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil and k ~= "updated_at" then return false end
  end
  return true
end
local same_record = same_value

local function apply_event(rec, d, now)
  local ev, agent = d.event, d.agent_id
  if ev == "SubagentStart" and agent then
    rec.agents[agent] = { agent_type = d.agent_type, started_at = now }
  elseif ev == "SubagentStop" and agent then
    rec.agents[agent] = nil
  elseif ev == "SessionEnd" then
    rec.ended_at = now
    rec.agents = {}
  elseif ev == "SessionStart" then
    rec.ended_at = nil
  end
end

--- Records a payload (statusline or hook) for its session and returns the
--- session's record: { session_id, started_at (kept from the first track),
--- updated_at, model_id, model_name, agent_name, session_name, cwd,
--- project_dir, context_usage, context_window_size, agents = { [agent_id]
--- = { agent_type, started_at } }, ended_at? }. Each write starts the
--- record's TTL again. SubagentStart / SubagentStop add and remove
--- agents; SessionEnd marks the session ended. The record is written when
--- it changed, or when its last write is `refresh` seconds old (a statusline
--- renders several times a second: most renders then cost one read);
--- each write starts the TTL again. The returned record's updated_at is
--- always now. nil, err for a payload
--- without a usable session_id; fail on a cache failure.
---@param data table
---@return table|nil record, string|nil err, string|nil code
function Tracker:track(data)
  self_check(self, "track")
  if type(data) ~= "table" then
    error("bad argument #1 to 'track' (table expected, got " .. type(data) .. ")", 2)
  end
  local d = M.info(data)
  if not d.session_id then return nil, "track: no usable session_id" end
  local now = pm.time()
  local key = self._prefix .. "session:" .. d.session_id
  local function next_rec(old)
    local r = merge(obj(old), d, now)
    apply_event(r, d, now)
    return r
  end
  -- The common case (a statusline rendering again): nothing changed and
  -- the record was written less than `refresh` seconds ago. Then no write,
  -- no lock: one read.
  local old = obj((self.cache:get(key)))
  if old and now - (num(old.updated_at) or 0) < self.refresh then
    local r = next_rec(old)
    if same_record(old, r) then return r end
  end
  local rec, msg, code = self.cache:update(key, next_rec, self.ttl)
  if not rec then return nil, msg, code end
  if d.agent_id and (d.event == "SubagentStart" or d.event == "SubagentStop") then
    local v = d.event == "SubagentStart" and d.session_id or nil
    local ok, amsg, acode = self.cache:set(self._prefix .. "agent:" .. d.agent_id, v, self.ttl)
    if not ok then return nil, amsg, acode end
  end
  return rec
end

--- The record of session `id`, or nil when unknown or expired.
---@param id string
---@return table|nil
function Tracker:get(id)
  self_check(self, "get")
  check_id(id, "get")
  return obj((self.cache:get(self._prefix .. "session:" .. id)))
end

--- Whether `id` is active: a tracked session that has not expired or
--- ended, or a subagent (agent_id) started and not yet stopped in one.
---@param id string
---@return boolean
function Tracker:is_agent_active(id)
  self_check(self, "is_agent_active")
  check_id(id, "is_agent_active")
  local rec = self:get(id)
  if rec then return rec.ended_at == nil end
  local sid = self.cache:get(self._prefix .. "agent:" .. id)
  rec = type(sid) == "string" and self:get(sid)
  return rec and rec.ended_at == nil and obj(rec.agents) and rec.agents[id] ~= nil or false
end

--- The records of every tracked, unexpired session, most recently
--- updated first.
---@return table[]
function Tracker:list()
  self_check(self, "list")
  local prefix = self._prefix .. "session:"
  local out = {}
  for _, key in ipairs(self.cache:keys(prefix) or {}) do
    local rec = obj((self.cache:get(key)))
    if rec then out[#out + 1] = rec end
  end
  table.sort(out, function(a, b) return (num(a.updated_at) or 0) > (num(b.updated_at) or 0) end)
  return out
end

local tracker_options = { ttl = true, cache = true, dir = true, prefix = true, refresh = true }

--- A session tracker stored through procmon.cache, so a later invocation
--- (another process) sees what this one tracked. Options: ttl (seconds a
--- session is kept after its last track, default 3600), cache (an open
--- procmon.Cache) or dir (a cache directory; default: the default cache),
--- prefix (of the cache keys, default "procmon:"), refresh (seconds after
--- which an unchanged record is written again to restart its TTL; default
--- ttl / 60, at most 60; 0: at every track). Fail when the cache
--- cannot be opened.
---@param opts? {ttl?: number, cache?: procmon.Cache, dir?: string, prefix?: string, refresh?: number}
---@return procmon.SessionTracker|nil tracker, string|nil err, string|nil code
function M.tracker(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #1 to 'tracker' (table expected, got " .. type(opts) .. ")", 2)
  end
  for k in pairs(opts) do
    if not tracker_options[k] then
      error("bad argument #1 to 'tracker' (unknown option '" .. tostring(k) .. "')", 2)
    end
  end
  local ttl = opts.ttl or 3600
  if type(ttl) ~= "number" or not (ttl > 0 and ttl < math.huge) then
    error("bad argument #1 to 'tracker' (option 'ttl': positive number of seconds expected)", 2)
  end
  local refresh = opts.refresh or math.min(ttl / 60, 60)
  if type(refresh) ~= "number" or not (refresh >= 0 and refresh < math.huge) then
    error("bad argument #1 to 'tracker' (option 'refresh': non-negative number of seconds expected)", 2)
  end
  local prefix = opts.prefix or "procmon:"
  if type(prefix) ~= "string" then
    error("bad argument #1 to 'tracker' (option 'prefix': string expected)", 2)
  end
  local cache, msg, code = opts.cache, nil, nil
  if cache == nil then
    cache, msg, code = pm.cache.open(opts.dir)
    if not cache then return nil, msg, code end
  end
  return setmetatable({ ttl = ttl, refresh = refresh, cache = cache, _prefix = prefix }, Tracker)
end

return M
