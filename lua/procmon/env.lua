--- procmon.env: metadata passed from a parent to its children through the
--- environment, with the variable names the Bun/TypeScript plugins use, so
--- a Bun parent and a procrun child (or the reverse) understand each other:
---   PROCESS_PARENT_PID   decimal pid of the parent
---   PROCESS_SESSION_ID   the Claude Code session the work belongs to
---   PROCESS_TASK_ID      the parent's name for this piece of work
---   PROCESS_CONFIG       a JSON object (at most 8 KiB encoded)
---
---   local env = pm.env.encode{ session_id = data.session_id, config = {...} }
---   pm.spawn(cmd, { env = env })
---   local meta, err = pm.env.decode()   -- in the child

if not package.preload["procmon.input"] then require "procmon" end
local json = require "procmon.json"
local input = require "procmon.input"

local M = {}

--- The variable of each field.
M.names = {
  parent_pid = "PROCESS_PARENT_PID",
  session_id = "PROCESS_SESSION_ID",
  task_id = "PROCESS_TASK_ID",
  config = "PROCESS_CONFIG",
}

--- The largest encoded PROCESS_CONFIG, in bytes.
M.max_config = 8192

-- The helpers raise plain messages; encode turns them into a
-- "bad argument" error at its caller's line.
local function arg_error(msg) error(msg, 0) end

local function check_id(meta, key)
  local v = meta[key]
  if v == nil then return nil end
  if math.type(v) == "integer" then return tostring(v) end
  if type(v) ~= "string" then arg_error(key .. ": string expected, got " .. type(v)) end
  if v == "" or v:find("%z") then arg_error(key .. ": must be non-empty and without NUL bytes") end
  return v
end

local function encode_pid(v)
  if v == nil then return tostring(input.pid()) end
  if v == false then return false end
  if math.type(v) ~= "integer" or v <= 0 then
    arg_error("parent_pid: positive integer expected, got " .. (type(v) == "number" and tostring(v) or type(v)))
  end
  return tostring(v)
end

local function encode_config(v)
  if v == nil then return nil end
  if type(v) ~= "table" then arg_error("config: table expected, got " .. type(v)) end
  local ok, s = pcall(json.encode, v)
  if not ok then arg_error("config: " .. tostring(s):gsub("^bad argument #1 to 'encode' %((.*)%)$", "%1")) end
  if s:sub(1, 1) ~= "{" then arg_error("config: a JSON object expected, got an array") end
  if #s > M.max_config then
    arg_error(("config: %d bytes encoded, over the %d-byte limit of PROCESS_CONFIG")
      :format(#s, M.max_config))
  end
  return s
end

--- The environment table for a child: { PROCESS_PARENT_PID = "1234", ... }.
--- parent_pid defaults to this process's pid (false leaves it out). A field
--- that is absent maps to false, which pm.spawn reads as "remove": a child
--- never inherits stale metadata of this process's own parent. Raises on
--- misuse, a config that is not a JSON object, or one over 8 KiB encoded.
---@param meta {parent_pid?: integer|false, session_id?: string, task_id?: string|integer, config?: table}
---@return table<string, string|false>
local function build(meta)
  if meta == nil then meta = {} end
  if type(meta) ~= "table" then arg_error("table expected, got " .. type(meta)) end
  for k in pairs(meta) do
    if M.names[k] == nil then arg_error("unknown field '" .. tostring(k) .. "'") end
  end
  return {
    PROCESS_PARENT_PID = encode_pid(meta.parent_pid),
    PROCESS_SESSION_ID = check_id(meta, "session_id") or false,
    PROCESS_TASK_ID = check_id(meta, "task_id") or false,
    PROCESS_CONFIG = encode_config(meta.config) or false,
  }
end

function M.encode(meta)
  local ok, env = pcall(build, meta)
  if not ok then error("bad argument #1 to 'encode' (" .. tostring(env) .. ")", 2) end
  return env
end

local function getter(env)
  if env == nil then return os.getenv end
  if type(env) ~= "table" then
    error("bad argument #1 to 'decode' (table expected, got " .. type(env) .. ")", 3)
  end
  return function(name)
    local v = env[name]
    if type(v) == "string" then return v end
    return nil
  end
end

local function decode_config(s)
  local v, msg = json.decode(s)
  if v == nil and msg then return nil, "PROCESS_CONFIG is not valid JSON: " .. msg end
  if type(v) ~= "table" or getmetatable(v) == json.array_mt or (v[1] ~= nil) then
    return nil, "PROCESS_CONFIG is not a JSON object"
  end
  return v
end

--- The metadata in `env` (default: this process's environment):
--- { parent_pid = integer, session_id = string, task_id = string,
---   config = table }, each field nil when its variable is unset or empty.
--- Returns nil when none is set, and nil, err when one is malformed (a pid
--- that is not a positive decimal integer, a config that is not a JSON
--- object).
---@param env? table<string, string>
---@return table|nil meta, string|nil err
function M.decode(env)
  local get = getter(env)
  local raw, any = {}, false
  for field, name in pairs(M.names) do
    local v = get(name)
    if v ~= nil and v ~= "" then raw[field], any = v, true end
  end
  if not any then return nil end
  local meta = { session_id = raw.session_id, task_id = raw.task_id }
  if raw.parent_pid then
    local pid = raw.parent_pid:match("^%s*(%d+)%s*$")
    pid = pid and math.tointeger(tonumber(pid))
    if not pid or pid <= 0 then
      return nil, ("PROCESS_PARENT_PID is not a pid: %q"):format(raw.parent_pid)
    end
    meta.parent_pid = pid
  end
  if raw.config then
    local cfg, err = decode_config(raw.config)
    if not cfg then return nil, err end
    meta.config = cfg
  end
  return meta
end

return M
