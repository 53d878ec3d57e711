---@meta procmon.json
-- LuaLS definitions of `require "procmon.json"` (also `pm.json`): the
-- project's one JSON codec. Checked by spec/types_spec.lua.

---@class procmon.json
local json = {}

--- The JSON null (the same value everywhere in procmon, cjson.null too).
---@type lightuserdata
json.null = nil

--- Metatable that marks an empty table as a JSON array ([]).
---@type table
json.array_mt = {}

--- Encodes a value: integers stay integers, floats round-trip exactly.
--- Raises on values JSON cannot hold (functions, NaN, cycles...).
---@param value any
---@return string
function json.encode(value) end

--- Decodes one JSON value starting at `init` (default 1): the value and the
--- position after it, or nil, msg, code ("EINCOMPLETE" when more bytes
--- could complete the input, "EINVAL" when they cannot).
---@param s string
---@param init? integer
---@return any value
---@return integer|string next_pos_or_err
---@return string? code
function json.decode(s, init) end

return json
